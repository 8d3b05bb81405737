//! IPv6 router advertisements (RFC 4861) for subnets attached to a VRF:
//! answers to router solicitations, and unsolicited ones to send
//! periodically, carrying the prefix (on-link, autonomous), the MTU and the
//! router's link-layer address.

use std::net::{IpAddr, Ipv6Addr};

use weft_compiler::ServiceConfig;
use weft_pipeline::MacAddr;
use weft_pipeline::wire::build::{L3Spec, L4Spec, PacketSpec};

use crate::Request;

/// Router lifetime advertised, in seconds.
pub const ROUTER_LIFETIME: u16 = 1800;
/// Prefix valid and preferred lifetimes, in seconds.
pub const PREFIX_LIFETIME: u32 = 86_400;

/// The link-local address of a router MAC (modified EUI-64).
pub fn link_local(mac: MacAddr) -> Ipv6Addr {
    let m = mac.0;
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([m[0] ^ 0x02, m[1]]),
        u16::from_be_bytes([m[2], 0xff]),
        u16::from_be_bytes([0xfe, m[3]]),
        u16::from_be_bytes([m[4], m[5]]),
    )
}

fn advert(cfg: &ServiceConfig, dst_mac: MacAddr, dst: Ipv6Addr) -> Option<Vec<u8>> {
    let ServiceConfig::RouterAdvert {
        router_mac,
        prefix,
        mtu,
        ..
    } = cfg
    else {
        return None;
    };
    // Reachable time and retrans timer (0: unspecified), then options.
    let mut body = vec![0u8; 8];
    // Source link-layer address.
    body.extend_from_slice(&[1, 1]);
    body.extend_from_slice(&router_mac.0);
    // MTU.
    body.extend_from_slice(&[5, 1, 0, 0]);
    body.extend_from_slice(&u32::from(*mtu).to_be_bytes());
    // Prefix information: on-link and autonomous.
    body.extend_from_slice(&[3, 4, prefix.prefix_len(), 0xc0]);
    body.extend_from_slice(&PREFIX_LIFETIME.to_be_bytes());
    body.extend_from_slice(&PREFIX_LIFETIME.to_be_bytes());
    body.extend_from_slice(&[0; 4]);
    body.extend_from_slice(&prefix.network().octets());
    let lifetime = ROUTER_LIFETIME.to_be_bytes();
    Some(
        PacketSpec {
            eth_src: *router_mac,
            eth_dst: dst_mac,
            vlans: Vec::new(),
            l3: L3Spec::Ip {
                src: IpAddr::V6(link_local(*router_mac)),
                dst: IpAddr::V6(dst),
                ttl: 255,
                l4: L4Spec::Icmp {
                    ty: 134,
                    code: 0,
                    // Cur hop limit 64, no M/O flags, router lifetime.
                    rest: [64, 0, lifetime[0], lifetime[1]],
                    payload: body,
                },
            },
        }
        .build(),
    )
}

/// Answers a router solicitation.
pub fn answer(cfg: &ServiceConfig, req: &Request<'_>) -> Option<Vec<u8>> {
    if req.icmp6_type != Some(133) {
        return None;
    }
    let dst = match req.ip_src {
        IpAddr::V6(a) if !a.is_unspecified() => a,
        _ => Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
    };
    advert(cfg, req.eth_src, dst)
}

/// An unsolicited advertisement to all nodes.
pub fn unsolicited(cfg: &ServiceConfig) -> Option<Vec<u8>> {
    advert(
        cfg,
        MacAddr([0x33, 0x33, 0, 0, 0, 1]),
        Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn cfg() -> ServiceConfig {
        ServiceConfig::RouterAdvert {
            context: "s1".into(),
            datapath: "ls:n".into(),
            router_mac: MacAddr([0x02, 0x57, 1, 2, 3, 4]),
            prefix: "2001:db8:1::/64".parse().unwrap(),
            mtu: 1450,
        }
    }

    #[test]
    fn solicitation_gets_an_advert_with_prefix_and_mtu() {
        let rs = PacketSpec {
            eth_src: MacAddr([0xfa, 0x16, 0x3e, 0, 0, 1]),
            eth_dst: MacAddr([0x33, 0x33, 0, 0, 0, 2]),
            vlans: Vec::new(),
            l3: L3Spec::Ip {
                src: "fe80::1".parse().unwrap(),
                dst: "ff02::2".parse().unwrap(),
                ttl: 255,
                l4: L4Spec::Icmp {
                    ty: 133,
                    code: 0,
                    rest: [0; 4],
                    payload: Vec::new(),
                },
            },
        }
        .build();
        let ra = answer(&cfg(), &parse(&rs).unwrap()).unwrap();
        let p = parse(&ra).unwrap();
        assert_eq!(p.icmp6_type, Some(134));
        assert_eq!(
            p.ip_src,
            IpAddr::V6(link_local(MacAddr([0x02, 0x57, 1, 2, 3, 4])))
        );
        assert_eq!(p.ip_dst, "fe80::1".parse::<IpAddr>().unwrap());
        let msg = p.payload;
        // Prefix option carries 2001:db8:1::/64.
        let prefix = [0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0];
        assert!(msg.windows(8).any(|w| w == prefix), "{msg:02x?}");
        // MTU option carries 1450.
        assert!(msg.windows(8).any(|w| w == [5, 1, 0, 0, 0, 0, 0x05, 0xaa]));
        // The ICMPv6 checksum verifies (etherparse recomputes it).
        let sliced = etherparse::SlicedPacket::from_ethernet(&ra).unwrap();
        match sliced.transport {
            Some(etherparse::TransportSlice::Icmpv6(icmp)) => {
                let ip = match sliced.net {
                    Some(etherparse::NetSlice::Ipv6(ip)) => ip,
                    _ => panic!("not ipv6"),
                };
                let want = icmp
                    .icmp_type()
                    .calc_checksum(
                        ip.header().source(),
                        ip.header().destination(),
                        icmp.payload(),
                    )
                    .unwrap();
                assert_eq!(icmp.checksum(), want);
            }
            _ => panic!("not icmpv6"),
        }
        assert!(unsolicited(&cfg()).is_some());
    }
}
