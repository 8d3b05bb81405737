//! The local services a host answers itself (DESIGN.md: "local services:
//! DHCP, ARP/ND, DNS, ICMP errors, TCP RST"): DHCPv4 for the ports of
//! subnets with DHCP on, DNS for the names of ports in the same network, and
//! IPv6 router advertisements. ARP/ND, ICMP errors and resets are answered
//! by the pipeline itself; this crate answers what the pipeline hands off
//! (`LocalService` actions) with the configuration the compiler produced
//! (`weft_compiler::ServiceConfig`).
//!
//! Pure: a frame and a configuration in, a reply frame out. The forwarder
//! sends the reply where the request came from.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use weft_compiler::ServiceConfig;
use weft_pipeline::MacAddr;
use weft_pipeline::ir::Service;
use weft_pipeline::wire::build::{L3Spec, L4Spec, PacketSpec};

pub mod dhcp;
pub mod dns;
pub mod ra;

/// Lease handed out by DHCP, in seconds. Addresses are fixed by intent, so
/// a long lease only means fewer renewals.
pub const LEASE_SECS: u32 = 86_400;

/// The headers of a request the services need to answer it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request<'a> {
    /// Ethernet source.
    pub eth_src: MacAddr,
    /// Ethernet destination.
    pub eth_dst: MacAddr,
    /// IP source.
    pub ip_src: IpAddr,
    /// IP destination.
    pub ip_dst: IpAddr,
    /// UDP ports (source, destination), for UDP.
    pub udp: Option<(u16, u16)>,
    /// The ICMPv6 type, for ICMPv6.
    pub icmp6_type: Option<u8>,
    /// The L4 payload (UDP payload, or the ICMPv6 message).
    pub payload: &'a [u8],
}

/// Splits an untagged Ethernet/IP frame into what the services need.
pub fn parse(frame: &[u8]) -> Option<Request<'_>> {
    if frame.len() < 14 {
        return None;
    }
    let eth_dst = MacAddr(frame[0..6].try_into().ok()?);
    let eth_src = MacAddr(frame[6..12].try_into().ok()?);
    let et = u16::from_be_bytes([frame[12], frame[13]]);
    let ip = &frame[14..];
    let (src, dst, proto, l4) = match et {
        0x0800 => {
            if ip.len() < 20 || ip[0] >> 4 != 4 {
                return None;
            }
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
            if ihl < 20 || total < ihl {
                return None;
            }
            let src = IpAddr::V4(Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]));
            let dst = IpAddr::V4(Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]));
            (src, dst, ip[9], &ip[ihl..total])
        }
        0x86dd => {
            if ip.len() < 40 || ip[0] >> 4 != 6 {
                return None;
            }
            let plen = usize::from(u16::from_be_bytes([ip[4], ip[5]])).min(ip.len() - 40);
            let src = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&ip[8..24]).ok()?));
            let dst = IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&ip[24..40]).ok()?));
            // Extension headers are not expected on DNS, DHCP or RS.
            (src, dst, ip[6], &ip[40..40 + plen])
        }
        _ => return None,
    };
    let mut r = Request {
        eth_src,
        eth_dst,
        ip_src: src,
        ip_dst: dst,
        udp: None,
        icmp6_type: None,
        payload: &[],
    };
    match proto {
        17 => {
            if l4.len() < 8 {
                return None;
            }
            r.udp = Some((
                u16::from_be_bytes([l4[0], l4[1]]),
                u16::from_be_bytes([l4[2], l4[3]]),
            ));
            let ulen = usize::from(u16::from_be_bytes([l4[4], l4[5]])).clamp(8, l4.len());
            r.payload = &l4[8..ulen];
        }
        58 => {
            r.icmp6_type = l4.first().copied();
            r.payload = l4;
        }
        _ => return None,
    }
    Some(r)
}

/// Builds a UDP reply frame.
pub(crate) fn udp_frame(
    eth_src: MacAddr,
    eth_dst: MacAddr,
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    payload: Vec<u8>,
) -> Vec<u8> {
    PacketSpec {
        eth_src,
        eth_dst,
        vlans: Vec::new(),
        l3: L3Spec::Ip {
            src,
            dst,
            ttl: 64,
            l4: L4Spec::Udp {
                src: sport,
                dst: dport,
                payload,
            },
        },
    }
    .build()
}

/// The services of one host, by the context keys of `LocalService` actions.
#[derive(Clone, Debug, Default)]
pub struct LocalServices {
    by_context: HashMap<String, ServiceConfig>,
}

/// Counters of answered and refused requests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Answered {
    /// Replies produced.
    pub replies: u64,
    /// Requests that got no reply (malformed, unknown context, not ours).
    pub ignored: u64,
}

impl LocalServices {
    /// Services from a host view's configurations.
    pub fn new(configs: impl IntoIterator<Item = ServiceConfig>) -> Self {
        LocalServices {
            by_context: configs
                .into_iter()
                .map(|c| (c.context().to_string(), c))
                .collect(),
        }
    }

    /// Number of configurations.
    pub fn len(&self) -> usize {
        self.by_context.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.by_context.is_empty()
    }

    /// Answers a frame the pipeline handed to `service` with `context`;
    /// `None` when there is nothing to answer.
    pub fn answer(&self, service: Service, context: &str, frame: &[u8]) -> Option<Vec<u8>> {
        let cfg = self.by_context.get(context)?;
        let req = parse(frame)?;
        match (service, cfg) {
            (Service::Dhcp4, ServiceConfig::Dhcp4 { .. }) => dhcp::answer(cfg, &req),
            (Service::Dns, ServiceConfig::Dns { .. }) => dns::answer(cfg, &req),
            (Service::RouterAdvert, ServiceConfig::RouterAdvert { .. }) => ra::answer(cfg, &req),
            _ => None,
        }
    }

    /// Unsolicited router advertisements to send periodically (OVN to-do:
    /// "IPv6 router ports should periodically send ND Router Advertisements").
    pub fn periodic_adverts(&self) -> Vec<Vec<u8>> {
        let mut v: Vec<Vec<u8>> = self
            .by_context
            .values()
            .filter_map(ra::unsolicited)
            .collect();
        v.sort();
        v
    }
}
