//! Packet-level tests: static frames parsed field by field, generated packets checked with
//! etherparse (an independent implementation) for structure and checksums, and proptests.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use proptest::prelude::*;

use super::build::*;
use super::*;
use crate::ir::{IcmpErrorKind, Unreachable, ethertype, ip_proto, tcp_flags};
use crate::mac::MacAddr;

const VM: MacAddr = MacAddr::new(0x02, 0, 0, 0, 0, 0x05);
const GW: MacAddr = MacAddr::new(0x02, 0, 0, 0, 0, 0x01);

/// Checks every checksum in `frame` with etherparse and returns the parsed slices' transport
/// kind for further assertions. Panics (failing the test) on any mismatch.
fn verify_checksums(frame: &[u8]) -> &'static str {
    let p = SlicedPacket::from_ethernet(frame).expect("etherparse parses the frame");
    let (src4, dst4, src6, dst6) = match &p.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header();
            assert_eq!(
                h.header_checksum(),
                h.to_header().calc_header_checksum(),
                "ipv4 header checksum"
            );
            (h.source(), h.destination(), [0; 16], [0; 16])
        }
        Some(NetSlice::Ipv6(ip)) => {
            let h = ip.header();
            ([0; 4], [0; 4], h.source(), h.destination())
        }
        Some(NetSlice::Arp(_)) => return "arp",
        None => return "none",
    };
    let v6 = matches!(p.net, Some(NetSlice::Ipv6(_)));
    match &p.transport {
        Some(TransportSlice::Tcp(t)) => {
            let c = if v6 {
                t.calc_checksum_ipv6(src6, dst6).unwrap()
            } else {
                t.calc_checksum_ipv4(src4, dst4).unwrap()
            };
            assert_eq!(t.checksum(), c, "tcp checksum");
            "tcp"
        }
        Some(TransportSlice::Udp(u)) => {
            let h = u.to_header();
            let c = if v6 {
                h.calc_checksum_ipv6_raw(src6, dst6, u.payload()).unwrap()
            } else {
                h.calc_checksum_ipv4_raw(src4, dst4, u.payload()).unwrap()
            };
            assert_eq!(u.checksum(), c, "udp checksum");
            "udp"
        }
        Some(TransportSlice::Icmpv4(i)) => {
            // etherparse's typed checksum assumes "unused" bytes are zero, so sum the raw
            // message with its generic one's-complement adder instead.
            let sum = etherparse::checksum::Sum16BitWords::new().add_slice(i.slice());
            assert_eq!(sum.ones_complement(), 0, "icmp checksum");
            "icmp4"
        }
        Some(TransportSlice::Icmpv6(i)) => {
            assert!(i.is_checksum_valid(src6, dst6), "icmpv6 checksum");
            "icmp6"
        }
        _ => "other",
    }
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

fn syn_spec() -> PacketSpec {
    PacketSpec {
        eth_src: VM,
        eth_dst: GW,
        vlans: vec![],
        l3: L3Spec::Ip {
            src: v4(10, 0, 0, 5),
            dst: v4(10, 1, 1, 6),
            ttl: 64,
            l4: L4Spec::Tcp {
                src: 40000,
                dst: 80,
                flags: tcp_flags::SYN,
                seq: 1000,
                ack: 0,
                payload: vec![],
            },
        },
    }
}

// A tagged (VLAN 100) IPv4 UDP DNS query 10.0.0.5:5353 -> 10.0.0.1:53, 4 payload bytes.
const TAGGED_UDP: [u8; 50] = [
    0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x05, 0x81, 0x00, 0x00, 0x64, 0x08,
    0x00, // eth+tag
    0x45, 0x00, 0x00, 0x20, 0x12, 0x34, 0x00, 0x00, 0x40, 0x11, 0x00, 0x00, 10, 0, 0, 5, 10, 0, 0,
    1, // ipv4 (checksum left 0: the parser does not verify it)
    0x14, 0xe9, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, // udp
    0xde, 0xad, 0xbe, 0xef,
];

#[test]
fn parse_tagged_udp() {
    let p = parse(&TAGGED_UDP).unwrap();
    let k = p.key;
    assert_eq!(k.n_vlans, 1);
    assert_eq!(k.vlan_ids(), &[100]);
    assert_eq!(k.eth_src, VM);
    assert_eq!(k.eth_dst, GW);
    assert_eq!(k.eth_type, ethertype::IPV4);
    assert_eq!(k.ip_src, v4(10, 0, 0, 5));
    assert_eq!(k.ip_dst, v4(10, 0, 0, 1));
    assert_eq!(k.ip_proto, ip_proto::UDP);
    assert_eq!(k.ip_ttl, 64);
    assert_eq!((k.l4_src, k.l4_dst), (5353, 53));
    assert_eq!(
        k.prereq,
        prereq::IP | prereq::IP4 | prereq::UDP | prereq::L4_PORTS
    );
    assert_eq!(p.layout.l3, 18);
    assert_eq!(p.layout.l4, Some(38));
    assert_eq!(p.layout.end, 50);
    // Truncating the frame anywhere inside the headers is an error, never a panic.
    for n in 0..46 {
        assert!(parse(&TAGGED_UDP[..n]).is_err(), "prefix of {n} bytes");
    }
}

#[test]
fn parse_ipv6_icmp_echo_after_hop_by_hop() {
    let mut f = Vec::new();
    ethernet::emit_header(&mut f, GW, VM, &[], ethertype::IPV6);
    let src: Ipv6Addr = "fd00::5".parse().unwrap();
    let dst: Ipv6Addr = "fd00:1::6".parse().unwrap();
    let hbh = [58u8, 0, 1, 4, 0, 0, 0, 0];
    let echo = [128u8, 0, 0, 0, 0x12, 0x34, 0, 1];
    ip::emit_ipv6(&mut f, src, dst, 0, 7, hbh.len() + echo.len());
    f.extend_from_slice(&hbh);
    f.extend_from_slice(&echo);
    let p = parse(&f).unwrap();
    assert_eq!(p.key.ip_proto, ip_proto::ICMPV6);
    assert_eq!(p.key.icmp_type, 128);
    assert_eq!(p.key.l4_src, 0x1234);
    assert_eq!(p.key.ip_ttl, 7);
    assert_eq!(p.layout.l4, Some(14 + 40 + 8));
    assert_eq!(p.key.prereq & prereq::ICMP6, prereq::ICMP6);
}

#[test]
fn parse_ipv4_later_fragment_has_no_ports() {
    let mut f = syn_spec().build();
    // Fragment offset 185 (1480 bytes): no TCP header in this packet.
    f[14 + 6] = 0x00;
    f[14 + 7] = 0xb9;
    let p = parse(&f).unwrap();
    assert_eq!(p.key.frag, Frag::Later);
    assert_eq!((p.key.l4_src, p.key.l4_dst), (0, 0));
    assert_eq!(p.key.prereq & prereq::L4_PORTS, 0);
    assert_eq!(p.layout.l4, None);
}

#[test]
fn built_syn_is_valid_and_parses_back() {
    let f = syn_spec().build();
    assert_eq!(verify_checksums(&f), "tcp");
    let k = parse(&f).unwrap().key;
    assert_eq!(k.tcp_flags, tcp_flags::SYN);
    assert_eq!((k.l4_src, k.l4_dst), (40000, 80));
}

#[test]
fn arp_reply_bytes() {
    let req = PacketSpec {
        eth_src: VM,
        eth_dst: MacAddr::BROADCAST,
        vlans: vec![7],
        l3: L3Spec::Arp {
            op: arp::OP_REQUEST,
            sha: VM,
            spa: Ipv4Addr::new(10, 0, 0, 5),
            tha: MacAddr::ZERO,
            tpa: Ipv4Addr::new(10, 0, 0, 1),
        },
    }
    .build();
    let p = parse(&req).unwrap();
    let reply = arp_reply(&p, GW);
    #[rustfmt::skip]
    let expected: [u8; 46] = [
        0x02, 0, 0, 0, 0, 0x05, 0x02, 0, 0, 0, 0, 0x01, 0x81, 0x00, 0x00, 0x07, 0x08, 0x06,
        0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x02,
        0x02, 0, 0, 0, 0, 0x01, 10, 0, 0, 1,
        0x02, 0, 0, 0, 0, 0x05, 10, 0, 0, 5,
    ];
    assert_eq!(reply, expected);
    assert_eq!(verify_checksums(&reply), "arp");
}

#[test]
fn nd_advert_answers_solicitation() {
    let target: Ipv6Addr = "fd00::1".parse().unwrap();
    let src: Ipv6Addr = "fd00::5".parse().unwrap();
    let ns = PacketSpec {
        eth_src: VM,
        eth_dst: MacAddr::ipv6_multicast("ff02::1:ff00:1".parse().unwrap()),
        vlans: vec![],
        l3: L3Spec::Ip {
            src: IpAddr::V6(src),
            dst: "ff02::1:ff00:1".parse().unwrap(),
            ttl: 255,
            l4: L4Spec::Nd {
                advert: false,
                target,
                ll: Some(VM),
                flags: 0,
            },
        },
    }
    .build();
    assert_eq!(verify_checksums(&ns), "icmp6");
    let p = parse(&ns).unwrap();
    assert_eq!(p.key.nd_target, target);
    assert_eq!(p.key.nd_ll, VM);
    let na = nd_advert(&p, GW, true);
    assert_eq!(verify_checksums(&na), "icmp6");
    let q = parse(&na).unwrap();
    assert_eq!(q.key.icmp_type, icmp::v6::NEIGHBOR_ADVERT);
    assert_eq!(q.key.nd_target, target);
    assert_eq!(q.key.nd_ll, GW);
    assert_eq!(q.key.ip_src, IpAddr::V6(target));
    assert_eq!(q.key.ip_dst, IpAddr::V6(src));
    assert_eq!(q.key.eth_dst, VM);
    assert_eq!(q.key.ip_ttl, 255);
    // Router, solicited and override flags.
    assert_eq!(na[14 + 40 + 4], 0xe0);
}

#[test]
fn icmp_time_exceeded_quotes_the_packet() {
    let f = syn_spec().build();
    let p = parse(&f).unwrap();
    let e = icmp_error(&f, &p, IcmpErrorKind::TimeExceeded, v4(10, 0, 0, 1), GW).unwrap();
    assert_eq!(verify_checksums(&e), "icmp4");
    let q = parse(&e).unwrap();
    assert_eq!((q.key.icmp_type, q.key.icmp_code), (11, 0));
    assert_eq!(q.key.ip_src, v4(10, 0, 0, 1));
    assert_eq!(q.key.ip_dst, v4(10, 0, 0, 5));
    assert_eq!(q.key.eth_dst, VM);
    // The quoted packet is the original IP packet, byte for byte.
    assert_eq!(&e[14 + 20 + 8..], &f[14..]);
}

#[test]
fn packet_too_big_v4_and_v6_carry_the_mtu() {
    let mut spec = syn_spec();
    spec.l3 = L3Spec::Ip {
        src: v4(10, 0, 0, 5),
        dst: v4(10, 1, 1, 6),
        ttl: 64,
        l4: L4Spec::Udp {
            src: 1,
            dst: 2,
            payload: vec![0x55; 1400],
        },
    };
    let f = spec.build();
    let p = parse(&f).unwrap();
    let e = icmp_error(
        &f,
        &p,
        IcmpErrorKind::PacketTooBig { mtu: 1400 },
        v4(10, 0, 0, 1),
        GW,
    )
    .unwrap();
    assert_eq!(verify_checksums(&e), "icmp4");
    assert_eq!(e.len(), 14 + ICMP4_ERROR_MAX);
    assert_eq!((e[34], e[35]), (3, 4));
    assert_eq!(u16::from_be_bytes([e[40], e[41]]), 1400);

    spec.l3 = L3Spec::Ip {
        src: "fd00::5".parse().unwrap(),
        dst: "fd00:1::6".parse().unwrap(),
        ttl: 64,
        l4: L4Spec::Udp {
            src: 1,
            dst: 2,
            payload: vec![0x55; 1400],
        },
    };
    let f = spec.build();
    let p = parse(&f).unwrap();
    let e = icmp_error(
        &f,
        &p,
        IcmpErrorKind::PacketTooBig { mtu: 1280 },
        "fd00::1".parse().unwrap(),
        GW,
    )
    .unwrap();
    assert_eq!(verify_checksums(&e), "icmp6");
    assert_eq!(e.len(), 14 + ICMP6_ERROR_MAX);
    assert_eq!(e[54], 2);
    assert_eq!(u32::from_be_bytes([e[58], e[59], e[60], e[61]]), 1280);
    // Wrong family for the source is refused.
    assert_eq!(
        icmp_error(&f, &p, IcmpErrorKind::TimeExceeded, v4(1, 1, 1, 1), GW),
        Err(NoReply::NotIp)
    );
}

#[test]
fn no_error_about_errors_multicast_or_fragments() {
    let f = syn_spec().build();
    let p = parse(&f).unwrap();
    let e = icmp_error(&f, &p, IcmpErrorKind::TimeExceeded, v4(10, 0, 0, 1), GW).unwrap();
    let q = parse(&e).unwrap();
    let unreach = IcmpErrorKind::Unreachable(Unreachable::Port);
    assert_eq!(
        icmp_error(&e, &q, unreach, v4(10, 0, 0, 1), GW),
        Err(NoReply::AboutIcmpError)
    );
    let mut spec = syn_spec();
    spec.eth_dst = MacAddr::BROADCAST;
    let b = spec.build();
    assert_eq!(
        icmp_error(&b, &parse(&b).unwrap(), unreach, v4(10, 0, 0, 1), GW),
        Err(NoReply::Multicast)
    );
}

#[test]
fn tcp_rst_answers_syn_and_ack() {
    let f = syn_spec().build();
    let p = parse(&f).unwrap();
    let r = tcp_rst(&f, &p).unwrap();
    assert_eq!(verify_checksums(&r), "tcp");
    let s = SlicedPacket::from_ethernet(&r).unwrap();
    let Some(TransportSlice::Tcp(t)) = s.transport else {
        panic!("not tcp")
    };
    assert!(t.rst() && t.ack() && !t.syn());
    assert_eq!(t.sequence_number(), 0);
    assert_eq!(t.acknowledgment_number(), 1001);
    assert_eq!((t.source_port(), t.destination_port()), (80, 40000));

    let mut spec = syn_spec();
    if let L3Spec::Ip { l4, .. } = &mut spec.l3 {
        *l4 = L4Spec::Tcp {
            src: 40000,
            dst: 80,
            flags: tcp_flags::ACK | tcp_flags::PSH,
            seq: 5,
            ack: 777,
            payload: vec![1, 2, 3],
        };
    }
    let f = spec.build();
    let r = tcp_rst(&f, &parse(&f).unwrap()).unwrap();
    assert_eq!(verify_checksums(&r), "tcp");
    let s = SlicedPacket::from_ethernet(&r).unwrap();
    let Some(TransportSlice::Tcp(t)) = s.transport else {
        panic!("not tcp")
    };
    assert!(t.rst() && !t.ack());
    assert_eq!(t.sequence_number(), 777);
}

#[test]
fn echo_reply_swaps_and_keeps_data() {
    let spec = PacketSpec {
        eth_src: VM,
        eth_dst: GW,
        vlans: vec![],
        l3: L3Spec::Ip {
            src: v4(10, 0, 0, 5),
            dst: v4(10, 0, 0, 1),
            ttl: 64,
            l4: L4Spec::Icmp {
                ty: 8,
                code: 0,
                rest: [0, 9, 0, 1],
                payload: b"abcdefgh".to_vec(),
            },
        },
    };
    let f = spec.build();
    assert_eq!(verify_checksums(&f), "icmp4");
    let r = icmp_echo_reply(&f, &parse(&f).unwrap()).unwrap();
    assert_eq!(verify_checksums(&r), "icmp4");
    let q = parse(&r).unwrap().key;
    assert_eq!((q.icmp_type, q.l4_src), (0, 9));
    assert_eq!((q.ip_src, q.ip_dst), (v4(10, 0, 0, 1), v4(10, 0, 0, 5)));
    assert_eq!((q.eth_src, q.eth_dst), (GW, VM));
    assert!(r.ends_with(b"abcdefgh"));
}

fn arb_mac() -> impl Strategy<Value = MacAddr> {
    any::<[u8; 6]>().prop_map(MacAddr)
}

fn arb_l4(v6: bool) -> impl Strategy<Value = L4Spec> {
    let icmp_ty = if v6 {
        prop_oneof![Just(128u8), Just(129u8), Just(1u8), Just(133u8)].boxed()
    } else {
        prop_oneof![Just(8u8), Just(0u8), Just(3u8), Just(11u8)].boxed()
    };
    prop_oneof![
        (
            any::<u16>(),
            any::<u16>(),
            0u16..0x0fff,
            any::<u32>(),
            any::<u32>(),
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(src, dst, flags, seq, ack, payload)| L4Spec::Tcp {
                src,
                dst,
                flags,
                seq,
                ack,
                payload
            }),
        (
            any::<u16>(),
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(src, dst, payload)| L4Spec::Udp { src, dst, payload }),
        (
            icmp_ty,
            any::<u8>(),
            any::<[u8; 4]>(),
            proptest::collection::vec(any::<u8>(), 0..32)
        )
            .prop_map(|(ty, code, rest, payload)| L4Spec::Icmp {
                ty,
                code,
                rest,
                payload
            }),
    ]
}

fn arb_spec() -> impl Strategy<Value = PacketSpec> {
    let l3 = prop_oneof![
        (
            any::<[u8; 4]>(),
            any::<[u8; 4]>(),
            any::<u8>(),
            arb_l4(false)
        )
            .prop_map(|(s, d, ttl, l4)| L3Spec::Ip {
                src: IpAddr::from(s),
                dst: IpAddr::from(d),
                ttl,
                l4
            }),
        (
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<u8>(),
            arb_l4(true)
        )
            .prop_map(|(s, d, ttl, l4)| L3Spec::Ip {
                src: IpAddr::from(s),
                dst: IpAddr::from(d),
                ttl,
                l4
            }),
        (
            1u16..3,
            arb_mac(),
            any::<[u8; 4]>(),
            arb_mac(),
            any::<[u8; 4]>()
        )
            .prop_map(|(op, sha, spa, tha, tpa)| L3Spec::Arp {
                op,
                sha,
                spa: spa.into(),
                tha,
                tpa: tpa.into()
            }),
    ];
    (
        arb_mac(),
        arb_mac(),
        proptest::collection::vec(0u16..4096, 0..3),
        l3,
    )
        .prop_map(|(eth_src, eth_dst, vlans, l3)| PacketSpec {
            eth_src,
            eth_dst,
            vlans,
            l3,
        })
}

proptest! {
    #[test]
    fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn parse_never_panics_on_mutated_valid_frames(spec in arb_spec(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6), cut in any::<usize>()) {
        let mut f = spec.build();
        for (i, b) in flips {
            let n = f.len();
            f[i % n] ^= b;
        }
        let n = f.len();
        f.truncate(cut % (n + 1));
        if let Ok(p) = parse(&f) {
            let _ = icmp_error(&f, &p, IcmpErrorKind::TimeExceeded, p.key.ip_dst, GW);
            let _ = tcp_rst(&f, &p);
            let _ = icmp_echo_reply(&f, &p);
        }
    }

    /// parse(build(spec)) gives back every field the spec set, and etherparse accepts the
    /// checksums.
    #[test]
    fn parse_of_build_round_trips(spec in arb_spec()) {
        let f = spec.build();
        let p = parse(&f).unwrap();
        let k = p.key;
        prop_assert_eq!(k.eth_src, spec.eth_src);
        prop_assert_eq!(k.eth_dst, spec.eth_dst);
        prop_assert_eq!(k.vlan_ids(), &spec.vlans[..]);
        match &spec.l3 {
            L3Spec::Arp { op, sha, spa, tha, tpa } => {
                prop_assert_eq!((k.arp_op, k.arp_sha, k.arp_spa, k.arp_tha, k.arp_tpa), (*op, *sha, *spa, *tha, *tpa));
            }
            L3Spec::Ip { src, dst, ttl, l4 } => {
                prop_assert_eq!((k.ip_src, k.ip_dst, k.ip_ttl), (*src, *dst, *ttl));
                match l4 {
                    L4Spec::Tcp { src, dst, flags, .. } => {
                        prop_assert_eq!((k.ip_proto, k.l4_src, k.l4_dst, k.tcp_flags), (6, *src, *dst, *flags));
                    }
                    L4Spec::Udp { src, dst, .. } => {
                        prop_assert_eq!((k.ip_proto, k.l4_src, k.l4_dst), (17, *src, *dst));
                    }
                    L4Spec::Icmp { ty, code, .. } => {
                        prop_assert_eq!((k.icmp_type, k.icmp_code), (*ty, *code));
                    }
                    _ => {}
                }
                // etherparse only understands up to the tags it supports; check untagged ones.
                if spec.vlans.is_empty() {
                    verify_checksums(&f);
                }
            }
            L3Spec::Raw { .. } => {}
        }
    }
}

#[test]
fn flow_key_hash_spreads_single_field_changes() {
    let base = parse(&syn_spec().build()).unwrap().key;
    let mut low_bits = std::collections::HashSet::new();
    let mut all = std::collections::HashSet::new();
    for port in 0..=u16::MAX {
        let k = FlowKey {
            l4_src: port,
            ..base
        };
        let h = k.hash64();
        all.insert(h);
        low_bits.insert(h & 0xfff);
    }
    assert_eq!(all.len(), 65536);
    // Every bucket of a 4096-bucket table is used.
    assert_eq!(low_bits.len(), 4096);
    // Swapping source and destination changes the hash.
    let swapped = FlowKey {
        ip_src: base.ip_dst,
        ip_dst: base.ip_src,
        ..base
    };
    assert_ne!(swapped.hash64(), base.hash64());
}
