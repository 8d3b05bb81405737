//! OPEN messages: the capabilities we send and what we read from the peer's.

use std::net::Ipv4Addr;

use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::capabilities::{
    BgpCapability, FourOctetAsCapability, GracefulRestartCapability,
    MultiProtocolExtensionsCapability,
};
use netgauze_bgp_pkt::open::{BgpOpenMessage, BgpOpenMessageParameter};
use netgauze_iana::address_family::AddressType;

use super::{Notification, codes};
use crate::route::Family;

/// AS_TRANS (RFC 6793), sent in the 2-byte "My AS" field for large ASes.
pub const AS_TRANS: u16 = 23456;

/// The address type netgauze uses for a family.
pub fn address_type(f: Family) -> AddressType {
    match f {
        Family::Vpnv4 => AddressType::Ipv4MplsLabeledVpn,
        Family::Evpn => AddressType::L2VpnBgpEvpn,
    }
}

/// The family of a netgauze address type, if we speak it.
pub fn family(t: AddressType) -> Option<Family> {
    match t {
        AddressType::Ipv4MplsLabeledVpn => Some(Family::Vpnv4),
        AddressType::L2VpnBgpEvpn => Some(Family::Evpn),
        _ => None,
    }
}

/// Families this speaker offers.
pub const FAMILIES: [Family; 2] = [Family::Vpnv4, Family::Evpn];

/// Our OPEN: 4-byte AS, MP VPNv4 and EVPN, route refresh, and graceful
/// restart in helper mode only (no address families, restart time 0: we
/// keep no forwarding state across our own restarts, RFC 4724 section 3).
pub fn build_open(local_as: u32, hold_time: u16, router_id: Ipv4Addr) -> BgpMessage {
    let my_as = u16::try_from(local_as).unwrap_or(AS_TRANS);
    let mut caps: Vec<BgpCapability> = FAMILIES
        .iter()
        .map(|f| {
            BgpCapability::MultiProtocolExtensions(MultiProtocolExtensionsCapability::new(
                address_type(*f),
            ))
        })
        .collect();
    caps.push(BgpCapability::RouteRefresh);
    caps.push(BgpCapability::FourOctetAs(FourOctetAsCapability::new(
        local_as,
    )));
    caps.push(BgpCapability::GracefulRestartCapability(
        GracefulRestartCapability::new(false, false, 0, Vec::new()),
    ));
    BgpMessage::Open(BgpOpenMessage::new(
        my_as,
        hold_time,
        router_id,
        vec![BgpOpenMessageParameter::new_capabilities(caps)],
    ))
}

/// What we learned from the peer's OPEN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerOpen {
    /// The peer's AS (4-byte if it sent the capability).
    pub asn: u32,
    /// Its BGP identifier.
    pub router_id: Ipv4Addr,
    /// Its proposed hold time.
    pub hold_time: u16,
    /// It supports 4-byte AS numbers.
    pub asn4: bool,
    /// Families both sides support.
    pub families: Vec<Family>,
    /// It supports ROUTE-REFRESH.
    pub route_refresh: bool,
    /// Its graceful restart capability: restart time in seconds and the
    /// families whose forwarding state it preserves.
    pub graceful_restart: Option<(u16, Vec<Family>)>,
}

/// Reads and validates a peer's OPEN (RFC 4271 section 6.2).
pub fn check_open(
    open: &BgpOpenMessage,
    expected_as: u32,
    local_id: Ipv4Addr,
    local_as: u32,
) -> Result<PeerOpen, Notification> {
    if open.version() != 4 {
        return Err(Notification::with_data(
            codes::OPEN,
            codes::OPEN_BAD_VERSION,
            4u16.to_be_bytes(),
        ));
    }
    let asn = open.my_asn4();
    if asn != expected_as {
        return Err(Notification::new(codes::OPEN, codes::OPEN_BAD_PEER_AS));
    }
    let id = open.bgp_id();
    // RFC 6286: the identifier must be non-zero, and differ from ours
    // within one AS.
    if id == Ipv4Addr::UNSPECIFIED || (asn == local_as && id == local_id) {
        return Err(Notification::new(codes::OPEN, codes::OPEN_BAD_ID));
    }
    let hold_time = open.hold_time();
    if hold_time == 1 || hold_time == 2 {
        return Err(Notification::new(codes::OPEN, codes::OPEN_BAD_HOLD));
    }
    let mut out = PeerOpen {
        asn,
        router_id: id,
        hold_time,
        asn4: false,
        families: Vec::new(),
        route_refresh: false,
        graceful_restart: None,
    };
    for cap in open.capabilities() {
        match cap {
            BgpCapability::MultiProtocolExtensions(mp) => {
                if let Some(f) = family(mp.address_type())
                    && !out.families.contains(&f)
                {
                    out.families.push(f);
                }
            }
            BgpCapability::RouteRefresh | BgpCapability::EnhancedRouteRefresh => {
                out.route_refresh = true;
            }
            BgpCapability::FourOctetAs(_) => out.asn4 = true,
            BgpCapability::GracefulRestartCapability(gr) => {
                let fams = gr
                    .address_families()
                    .iter()
                    .filter_map(|af| family(af.address_type()))
                    .collect();
                out.graceful_restart = Some((gr.time(), fams));
            }
            _ => {}
        }
    }
    if out.families.is_empty() {
        // Say which families we could have spoken: our MP capabilities.
        let mut data = Vec::new();
        for f in FAMILIES {
            let t = address_type(f);
            let afi: u16 = t.address_family().into();
            let safi: u8 = t.subsequent_address_family().into();
            data.extend_from_slice(&[2, 4]);
            data.extend_from_slice(&afi.to_be_bytes());
            data.extend_from_slice(&[0, safi]);
        }
        return Err(Notification::with_data(
            codes::OPEN,
            codes::OPEN_UNSUPPORTED_CAP,
            data,
        ));
    }
    Ok(out)
}
