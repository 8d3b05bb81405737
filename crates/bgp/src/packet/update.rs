//! UPDATE messages: packing many routes that share path attributes into as
//! few messages as fit 4096 bytes, and reading received ones into Weft's
//! route types.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use ipnet::IpNet;
use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::community::ExtendedCommunity;
use netgauze_bgp_pkt::nlri::{
    EthernetSegmentIdentifier, EthernetTag, Ipv4MplsVpnUnicastAddress, Ipv4Unicast, L2EvpnAddress,
    L2EvpnIpPrefixRoute, L2EvpnIpv4PrefixRoute, L2EvpnIpv6PrefixRoute, L2EvpnRoute,
    LabeledIpv4NextHop, LabeledNextHop, MacAddress, MacIpAdvertisement,
};
use netgauze_bgp_pkt::path_attribute::{
    As2PathSegment, As4PathSegment, AsPath, AsPathSegmentType, ExtendedCommunities,
    LocalPreference, MpReach, MpUnreach, MultiExitDiscriminator, Origin, PathAttribute,
    PathAttributeValue,
};
use netgauze_bgp_pkt::update::BgpUpdateMessage;
use netgauze_parse_utils::WritablePdu;

use super::ext::{
    decode_ext_communities, encap_to_wire, mpls_label, mpls_label_value, rd_from_wire, rd_to_wire,
    router_mac_to_wire, rt_to_wire, vni_label, vni_value, withdraw_label,
};
use super::open::{AS_TRANS, family};
use super::{MAX_MESSAGE_LEN, Notification, codes, encode};
use crate::route::{Encapsulation, Family, NlriKey, RouteKey, RouteKind, RouteTarget, VpnRoute};

/// What the session is, for building attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionParams {
    /// Our AS.
    pub local_as: u32,
    /// The peer is in another AS.
    pub ebgp: bool,
    /// 4-byte AS numbers were negotiated.
    pub asn4: bool,
}

/// Path attributes shared by the routes packed into one UPDATE.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct AttrKey {
    family: Family,
    next_hop: IpAddr,
    route_targets: Vec<RouteTarget>,
    encap: Option<Encapsulation>,
    router_mac: Option<[u8; 6]>,
    local_pref: Option<u32>,
    med: Option<u32>,
}

fn family_of(route: &VpnRoute) -> Family {
    match route.kind {
        RouteKind::Vpn => Family::Vpnv4,
        RouteKind::EvpnPrefix { .. } | RouteKind::EvpnMacIp { .. } => Family::Evpn,
    }
}

/// Appends UPDATE messages announcing `routes` to `out`; routes whose
/// family is not in `families` are skipped. Routes must have passed
/// [`VpnRoute::key`]. Returns the number of messages written.
pub fn encode_announcements<'a>(
    routes: impl IntoIterator<Item = &'a Arc<VpnRoute>>,
    params: SessionParams,
    families: &[Family],
    out: &mut Vec<u8>,
) -> usize {
    let mut groups: BTreeMap<AttrKey, Vec<&VpnRoute>> = BTreeMap::new();
    for r in routes {
        let family = family_of(r);
        if !families.contains(&family) {
            continue;
        }
        let mut route_targets = r.route_targets.clone();
        route_targets.sort();
        route_targets.dedup();
        let key = AttrKey {
            family,
            next_hop: r.next_hop,
            route_targets,
            encap: r.encap,
            router_mac: r.router_mac,
            local_pref: r.local_pref,
            med: r.med,
        };
        groups.entry(key).or_default().push(r);
    }
    let mut count = 0;
    for (attrs, routes) in groups {
        let base = base_attributes(&attrs, params);
        let empty = announcement(&attrs, base.clone(), &[]);
        let base_len = empty.len();
        let mut start = 0;
        while start < routes.len() {
            let mut len = base_len;
            let mut end = start;
            while end < routes.len() {
                let n = nlri_len(routes[end]);
                if len + n > MAX_MESSAGE_LEN {
                    break;
                }
                len += n;
                end += 1;
            }
            // One NLRI always fits an otherwise empty message.
            let end = end.max(start + 1);
            count += push_checked(announcement(&attrs, base.clone(), &routes[start..end]), out);
            start = end;
        }
    }
    count
}

/// Appends UPDATE messages withdrawing `keys` to `out`, skipping families
/// not in `families`. Returns the number of messages written.
pub fn encode_withdrawals<'a>(
    keys: impl IntoIterator<Item = &'a RouteKey>,
    families: &[Family],
    out: &mut Vec<u8>,
) -> usize {
    let mut by_family: BTreeMap<Family, Vec<&RouteKey>> = BTreeMap::new();
    for k in keys {
        let f = k.nlri.family();
        if families.contains(&f) {
            by_family.entry(f).or_default().push(k);
        }
    }
    let mut count = 0;
    for (f, keys) in by_family {
        let base_len = withdrawal(f, &[]).len();
        let mut start = 0;
        while start < keys.len() {
            let mut len = base_len;
            let mut end = start;
            while end < keys.len() {
                let n = key_nlri_len(keys[end]);
                if len + n > MAX_MESSAGE_LEN {
                    break;
                }
                len += n;
                end += 1;
            }
            let end = end.max(start + 1);
            count += push_checked(withdrawal(f, &keys[start..end]), out);
            start = end;
        }
    }
    count
}

/// Appends the End-of-RIB marker of a family (RFC 4724 section 2).
pub fn encode_end_of_rib(f: Family, out: &mut Vec<u8>) {
    push_checked(withdrawal(f, &[]), out);
}

/// Writes a message, splitting it in two when our size estimate was short
/// (it should never be; this keeps an estimate bug from producing a message
/// the peer must reject).
fn push_checked(msg: BgpMessage, out: &mut Vec<u8>) -> usize {
    if msg.len() <= MAX_MESSAGE_LEN {
        match encode(&msg) {
            Ok(bytes) => {
                out.extend_from_slice(&bytes);
                return 1;
            }
            Err(e) => {
                tracing::error!("dropping an UPDATE we could not encode: {e}");
                return 0;
            }
        }
    }
    let BgpMessage::Update(u) = msg else {
        return 0;
    };
    let attrs = u.path_attributes();
    let mut halves: Vec<BgpMessage> = Vec::new();
    for a in attrs {
        let split = |v: PathAttributeValue| attr(true, false, true, v);
        match a.value() {
            PathAttributeValue::MpReach(MpReach::Ipv4MplsVpnUnicast { next_hop, nlri })
                if nlri.len() > 1 =>
            {
                let (x, y) = nlri.split_at(nlri.len() / 2);
                for part in [x, y] {
                    let mut v: Vec<PathAttribute> = attrs
                        .iter()
                        .filter(|o| !matches!(o.value(), PathAttributeValue::MpReach(_)))
                        .cloned()
                        .collect();
                    v.extend(split(PathAttributeValue::MpReach(
                        MpReach::Ipv4MplsVpnUnicast {
                            next_hop: *next_hop,
                            nlri: part.into(),
                        },
                    )));
                    halves.push(BgpMessage::Update(BgpUpdateMessage::new(vec![], v, vec![])));
                }
            }
            PathAttributeValue::MpReach(MpReach::L2Evpn { next_hop, nlri }) if nlri.len() > 1 => {
                let (x, y) = nlri.split_at(nlri.len() / 2);
                for part in [x, y] {
                    let mut v: Vec<PathAttribute> = attrs
                        .iter()
                        .filter(|o| !matches!(o.value(), PathAttributeValue::MpReach(_)))
                        .cloned()
                        .collect();
                    v.extend(split(PathAttributeValue::MpReach(MpReach::L2Evpn {
                        next_hop: *next_hop,
                        nlri: part.into(),
                    })));
                    halves.push(BgpMessage::Update(BgpUpdateMessage::new(vec![], v, vec![])));
                }
            }
            _ => {}
        }
    }
    if halves.is_empty() {
        tracing::error!(
            "dropping an UPDATE of {} bytes that cannot be split",
            u.len()
        );
        return 0;
    }
    halves.into_iter().map(|m| push_checked(m, out)).sum()
}

/// A path attribute with the flags RFC 4271/4760 prescribe for it; `None`
/// only if netgauze disagrees with those flags, which would be a bug here.
fn attr(
    optional: bool,
    transitive: bool,
    extended: bool,
    v: PathAttributeValue,
) -> Option<PathAttribute> {
    match PathAttribute::from(optional, transitive, false, extended, v) {
        Ok(a) => Some(a),
        Err((v, e)) => {
            tracing::error!("path attribute {v:?} rejected: {e:?}");
            None
        }
    }
}

fn base_attributes(a: &AttrKey, p: SessionParams) -> Vec<PathAttribute> {
    let mut v: Vec<PathAttribute> = Vec::new();
    v.extend(attr(
        false,
        true,
        false,
        PathAttributeValue::Origin(Origin::IGP),
    ));
    let as_path = if !p.ebgp {
        if p.asn4 {
            AsPath::As4PathSegments(Box::new([]))
        } else {
            AsPath::As2PathSegments(Box::new([]))
        }
    } else if p.asn4 {
        AsPath::As4PathSegments(Box::new([As4PathSegment::new(
            AsPathSegmentType::AsSequence,
            vec![p.local_as],
        )]))
    } else {
        AsPath::As2PathSegments(Box::new([As2PathSegment::new(
            AsPathSegmentType::AsSequence,
            vec![u16::try_from(p.local_as).unwrap_or(AS_TRANS)],
        )]))
    };
    v.extend(attr(
        false,
        true,
        false,
        PathAttributeValue::AsPath(as_path),
    ));
    if let Some(med) = a.med {
        v.extend(attr(
            true,
            false,
            false,
            PathAttributeValue::MultiExitDiscriminator(MultiExitDiscriminator::new(med)),
        ));
    }
    if !p.ebgp {
        v.extend(attr(
            false,
            true,
            false,
            PathAttributeValue::LocalPreference(LocalPreference::new(a.local_pref.unwrap_or(100))),
        ));
    }
    let mut ext: Vec<ExtendedCommunity> =
        a.route_targets.iter().map(|rt| rt_to_wire(*rt)).collect();
    if let Some(e) = a.encap {
        ext.push(encap_to_wire(e));
    }
    if let Some(mac) = a.router_mac {
        ext.push(router_mac_to_wire(mac));
    }
    if !ext.is_empty() {
        let extended = ext.len() * 8 > 255;
        v.extend(attr(
            true,
            true,
            extended,
            PathAttributeValue::ExtendedCommunities(ExtendedCommunities::new(ext)),
        ));
    }
    v
}

fn announcement(a: &AttrKey, mut attrs: Vec<PathAttribute>, routes: &[&VpnRoute]) -> BgpMessage {
    let reach = match a.family {
        Family::Vpnv4 => {
            let nh = match a.next_hop {
                IpAddr::V4(v4) => v4,
                // Rejected by VpnRoute::key before we get here.
                IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
            };
            MpReach::Ipv4MplsVpnUnicast {
                next_hop: LabeledNextHop::Ipv4(LabeledIpv4NextHop::new(
                    netgauze_bgp_pkt::nlri::RouteDistinguisher::As2Administrator {
                        asn2: 0,
                        number: 0,
                    },
                    nh,
                )),
                nlri: routes.iter().filter_map(|r| vpnv4_nlri(r, false)).collect(),
            }
        }
        Family::Evpn => MpReach::L2Evpn {
            next_hop: a.next_hop,
            nlri: routes.iter().filter_map(|r| evpn_nlri(r)).collect(),
        },
    };
    attrs.extend(attr(true, false, true, PathAttributeValue::MpReach(reach)));
    BgpMessage::Update(BgpUpdateMessage::new(vec![], attrs, vec![]))
}

fn withdrawal(f: Family, keys: &[&RouteKey]) -> BgpMessage {
    let unreach = match f {
        Family::Vpnv4 => MpUnreach::Ipv4MplsVpnUnicast {
            nlri: keys
                .iter()
                .filter_map(|k| match k.nlri {
                    NlriKey::Vpnv4(p) => Some(Ipv4MplsVpnUnicastAddress::new_no_path_id(
                        rd_to_wire(k.rd),
                        vec![withdraw_label()],
                        Ipv4Unicast::from_net(p).ok()?,
                    )),
                    _ => None,
                })
                .collect(),
        },
        Family::Evpn => MpUnreach::L2Evpn {
            nlri: keys.iter().filter_map(|k| evpn_key_nlri(k)).collect(),
        },
    };
    let attrs: Vec<PathAttribute> = attr(true, false, true, PathAttributeValue::MpUnreach(unreach))
        .into_iter()
        .collect();
    BgpMessage::Update(BgpUpdateMessage::new(vec![], attrs, vec![]))
}

fn vpnv4_nlri(r: &VpnRoute, withdraw: bool) -> Option<Ipv4MplsVpnUnicastAddress> {
    let IpNet::V4(p) = r.prefix else { return None };
    let label = if withdraw {
        withdraw_label()
    } else {
        mpls_label(r.label_or_vni)
    };
    Some(Ipv4MplsVpnUnicastAddress::new_no_path_id(
        rd_to_wire(r.rd),
        vec![label],
        Ipv4Unicast::from_net(p.trunc()).ok()?,
    ))
}

fn evpn_nlri(r: &VpnRoute) -> Option<L2EvpnAddress> {
    let rd = rd_to_wire(r.rd);
    let esi = EthernetSegmentIdentifier::new([0; 10]);
    let label = vni_label(r.label_or_vni);
    let route = match r.kind {
        RouteKind::Vpn => return None,
        RouteKind::EvpnPrefix { eth_tag } => L2EvpnRoute::IpPrefixRoute(match r.prefix.trunc() {
            IpNet::V4(p) => L2EvpnIpPrefixRoute::V4(L2EvpnIpv4PrefixRoute::new(
                rd,
                esi,
                EthernetTag::new(eth_tag),
                p,
                Ipv4Addr::UNSPECIFIED,
                label,
            )),
            IpNet::V6(p) => L2EvpnIpPrefixRoute::V6(L2EvpnIpv6PrefixRoute::new(
                rd,
                esi,
                EthernetTag::new(eth_tag),
                p,
                std::net::Ipv6Addr::UNSPECIFIED,
                label,
            )),
        }),
        RouteKind::EvpnMacIp { eth_tag, mac } => {
            L2EvpnRoute::MacIpAdvertisement(MacIpAdvertisement::new(
                rd,
                esi,
                EthernetTag::new(eth_tag),
                MacAddress::new(mac),
                Some(r.prefix.addr()),
                label,
                None,
            ))
        }
    };
    Some(L2EvpnAddress::new(None, route))
}

fn evpn_key_nlri(k: &RouteKey) -> Option<L2EvpnAddress> {
    let (kind, prefix) = match k.nlri {
        NlriKey::Vpnv4(_) => return None,
        NlriKey::EvpnPrefix { eth_tag, prefix } => (RouteKind::EvpnPrefix { eth_tag }, prefix),
        NlriKey::EvpnMacIp { eth_tag, mac, ip } => {
            (RouteKind::EvpnMacIp { eth_tag, mac }, IpNet::from(ip))
        }
    };
    let r = VpnRoute {
        kind,
        rd: k.rd,
        prefix,
        label_or_vni: 0,
        next_hop: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        route_targets: vec![],
        encap: None,
        router_mac: None,
        local_pref: None,
        med: None,
    };
    evpn_nlri(&r)
}

fn nlri_len(r: &VpnRoute) -> usize {
    match r.key() {
        Ok(k) => key_nlri_len(&k),
        Err(_) => 0,
    }
}

/// Bytes one NLRI takes on the wire (one label, no ADD-PATH).
fn key_nlri_len(k: &RouteKey) -> usize {
    match k.nlri {
        NlriKey::Vpnv4(p) => 1 + 3 + 8 + usize::from(p.prefix_len()).div_ceil(8),
        NlriKey::EvpnPrefix { prefix, .. } => match prefix {
            IpNet::V4(_) => 2 + 34,
            IpNet::V6(_) => 2 + 58,
        },
        NlriKey::EvpnMacIp { ip, .. } => 2 + 33 + if ip.is_ipv4() { 4 } else { 16 },
    }
}

/// A received UPDATE, in Weft's terms.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DecodedUpdate {
    /// Routes announced (replacing any earlier route with the same key).
    pub announced: Vec<VpnRoute>,
    /// Routes withdrawn.
    pub withdrawn: Vec<RouteKey>,
    /// The message is the End-of-RIB marker of this family.
    pub end_of_rib: Option<Family>,
    /// AS_PATH shared by the announced routes, flattened.
    pub as_path: Vec<u32>,
}

/// Reads a received UPDATE. `peer_as` is checked against the first AS of
/// the path on eBGP sessions; routes whose path holds `local_as` are turned
/// into withdrawals (loop prevention). Errors are the NOTIFICATION to send.
pub fn decode_update(
    u: &BgpUpdateMessage,
    local_as: u32,
    peer_as: u32,
) -> Result<DecodedUpdate, Notification> {
    let mut out = DecodedUpdate::default();
    if let Some(t) = u.end_of_rib() {
        out.end_of_rib = family(t);
        return Ok(out);
    }
    let mut seen = [false; 256];
    let mut origin = false;
    let mut as_path: Option<Vec<u32>> = None;
    let mut local_pref = None;
    let mut med = None;
    let mut ext = Vec::new();
    let mut reach: Option<&MpReach> = None;
    for a in u.path_attributes() {
        let code = match a.path_attribute_type() {
            Ok(t) => t as u8,
            Err(c) => c,
        };
        if std::mem::replace(&mut seen[usize::from(code)], true) {
            return Err(Notification::new(
                codes::UPDATE,
                codes::UPDATE_MALFORMED_ATTRS,
            ));
        }
        match a.value() {
            PathAttributeValue::Origin(_) => origin = true,
            PathAttributeValue::AsPath(p) => as_path = Some(flatten_as_path(p)),
            PathAttributeValue::LocalPreference(l) => local_pref = Some(l.metric()),
            PathAttributeValue::MultiExitDiscriminator(m) => med = Some(m.metric()),
            PathAttributeValue::ExtendedCommunities(c) => ext.extend_from_slice(c.communities()),
            PathAttributeValue::MpReach(r) => reach = Some(r),
            PathAttributeValue::MpUnreach(un) => withdrawn_keys(un, &mut out.withdrawn),
            _ => {}
        }
    }
    let Some(reach) = reach else {
        return Ok(out);
    };
    if family_of_reach(reach).is_none() {
        // A family we did not negotiate: nothing to import.
        return Ok(out);
    }
    if !origin {
        return Err(Notification::with_data(
            codes::UPDATE,
            codes::UPDATE_MISSING_WELL_KNOWN,
            [1],
        ));
    }
    let Some(as_path) = as_path else {
        return Err(Notification::with_data(
            codes::UPDATE,
            codes::UPDATE_MISSING_WELL_KNOWN,
            [2],
        ));
    };
    if peer_as != local_as && as_path.first() != Some(&peer_as) {
        return Err(Notification::new(
            codes::UPDATE,
            codes::UPDATE_MALFORMED_AS_PATH,
        ));
    }
    let looped = as_path.contains(&local_as) && peer_as != local_as;
    let d = decode_ext_communities(&ext);
    let template = |kind, rd, prefix, label_or_vni, next_hop| VpnRoute {
        kind,
        rd,
        prefix,
        label_or_vni,
        next_hop,
        route_targets: d.route_targets.clone(),
        encap: d.encap,
        router_mac: d.router_mac,
        local_pref,
        med,
    };
    match reach {
        MpReach::Ipv4MplsVpnUnicast { next_hop, nlri } => {
            for n in nlri.iter() {
                let Some(rd) = rd_from_wire(n.rd()) else {
                    continue;
                };
                let label = n.label_stack().first().map(mpls_label_value).unwrap_or(0);
                out.announced.push(template(
                    RouteKind::Vpn,
                    rd,
                    IpNet::V4(n.network().address()),
                    label,
                    next_hop.next_hop(),
                ));
            }
        }
        MpReach::L2Evpn { next_hop, nlri } => {
            for n in nlri.iter() {
                match n.route() {
                    L2EvpnRoute::IpPrefixRoute(L2EvpnIpPrefixRoute::V4(p)) => {
                        let Some(rd) = rd_from_wire(p.rd()) else {
                            continue;
                        };
                        out.announced.push(template(
                            RouteKind::EvpnPrefix {
                                eth_tag: p.tag().value(),
                            },
                            rd,
                            IpNet::V4(p.prefix()),
                            vni_value(p.label()),
                            *next_hop,
                        ));
                    }
                    L2EvpnRoute::IpPrefixRoute(L2EvpnIpPrefixRoute::V6(p)) => {
                        let Some(rd) = rd_from_wire(p.rd()) else {
                            continue;
                        };
                        out.announced.push(template(
                            RouteKind::EvpnPrefix {
                                eth_tag: p.tag().value(),
                            },
                            rd,
                            IpNet::V6(p.prefix()),
                            vni_value(p.label()),
                            *next_hop,
                        ));
                    }
                    L2EvpnRoute::MacIpAdvertisement(m) => {
                        // MAC-only routes carry nothing a VRF can route to.
                        let (Some(rd), Some(ip)) = (rd_from_wire(m.rd()), m.ip()) else {
                            continue;
                        };
                        out.announced.push(template(
                            RouteKind::EvpnMacIp {
                                eth_tag: m.tag().value(),
                                mac: *m.mac().value(),
                            },
                            rd,
                            IpNet::from(ip),
                            vni_value(m.mpls_label1()),
                            *next_hop,
                        ));
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    if looped {
        for r in out.announced.drain(..) {
            if let Ok(k) = r.key() {
                out.withdrawn.push(k);
            }
        }
    }
    out.as_path = as_path;
    Ok(out)
}

fn family_of_reach(r: &MpReach) -> Option<Family> {
    r.address_type().ok().and_then(family)
}

fn flatten_as_path(p: &AsPath) -> Vec<u32> {
    match p {
        AsPath::As2PathSegments(s) => s
            .iter()
            .flat_map(|seg| seg.as_numbers().iter().map(|a| u32::from(*a)))
            .collect(),
        AsPath::As4PathSegments(s) => s
            .iter()
            .flat_map(|seg| seg.as_numbers().iter().copied())
            .collect(),
    }
}

fn withdrawn_keys(un: &MpUnreach, out: &mut Vec<RouteKey>) {
    match un {
        MpUnreach::Ipv4MplsVpnUnicast { nlri } => {
            for n in nlri.iter() {
                if let Some(rd) = rd_from_wire(n.rd()) {
                    out.push(RouteKey {
                        rd,
                        nlri: NlriKey::Vpnv4(n.network().address().trunc()),
                    });
                }
            }
        }
        MpUnreach::L2Evpn { nlri } => {
            for n in nlri.iter() {
                let key = match n.route() {
                    L2EvpnRoute::IpPrefixRoute(L2EvpnIpPrefixRoute::V4(p)) => rd_from_wire(p.rd())
                        .map(|rd| RouteKey {
                            rd,
                            nlri: NlriKey::EvpnPrefix {
                                eth_tag: p.tag().value(),
                                prefix: IpNet::V4(p.prefix().trunc()),
                            },
                        }),
                    L2EvpnRoute::IpPrefixRoute(L2EvpnIpPrefixRoute::V6(p)) => rd_from_wire(p.rd())
                        .map(|rd| RouteKey {
                            rd,
                            nlri: NlriKey::EvpnPrefix {
                                eth_tag: p.tag().value(),
                                prefix: IpNet::V6(p.prefix().trunc()),
                            },
                        }),
                    L2EvpnRoute::MacIpAdvertisement(m) => match (rd_from_wire(m.rd()), m.ip()) {
                        (Some(rd), Some(ip)) => Some(RouteKey {
                            rd,
                            nlri: NlriKey::EvpnMacIp {
                                eth_tag: m.tag().value(),
                                mac: *m.mac().value(),
                                ip,
                            },
                        }),
                        _ => None,
                    },
                    _ => None,
                };
                out.extend(key);
            }
        }
        _ => {}
    }
}
