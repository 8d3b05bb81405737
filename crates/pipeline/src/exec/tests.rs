//! Executor tests on a small two-network, one-router topology built with the IR builders.
//!
//! ```text
//!  tap-a (a, untagged) ─┐                           ┌─ tap-d (d, untagged)
//!  tap-b (b, vlan 10) ──┤ net1 (vni 1001) ── r1 ── net2 (vni 1002)
//!  host h2 (c, remote) ─┘   10.0.1.0/24             10.0.2.0/24 ── tap-b (e, QinQ 20.30)
//!                                         r1: 10.9.0.0/16 via ECMP over two tunnels
//! ```

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::ir::*;
use crate::wire::build::{L3Spec, L4Spec, PacketSpec};
use crate::wire::{self, checksum, parse};

const A: MacAddr = MacAddr::new(2, 0, 0, 0, 0, 0x0a);
const B: MacAddr = MacAddr::new(2, 0, 0, 0, 0, 0x0b);
const C: MacAddr = MacAddr::new(2, 0, 0, 0, 0, 0x0c);
const D: MacAddr = MacAddr::new(2, 0, 0, 0, 0, 0x0d);
const E: MacAddr = MacAddr::new(2, 0, 0, 0, 0, 0x0e);
const R1: MacAddr = MacAddr::new(2, 0, 0, 0, 1, 1);
const R2: MacAddr = MacAddr::new(2, 0, 0, 0, 1, 2);
const NH1: MacAddr = MacAddr::new(2, 0, 0, 0, 9, 1);
const NH2: MacAddr = MacAddr::new(2, 0, 0, 0, 9, 2);

fn ip(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

const IP_A: [u8; 4] = [10, 0, 1, 10];
const IP_B: [u8; 4] = [10, 0, 1, 11];
const IP_C: [u8; 4] = [10, 0, 1, 12];
const IP_D: [u8; 4] = [10, 0, 2, 10];
const H2: [u8; 4] = [192, 0, 2, 2];

fn o(kind: &str, id: &str, detail: &str) -> Origin {
    Origin::new(kind, id, detail)
}

fn net(s: &str) -> ipnet::IpNet {
    s.parse().unwrap()
}

/// The test topology.
fn program() -> Program {
    let mut p = Program::new("h1");
    p.datapaths.push(Datapath::new(
        "net1",
        DatapathKind::Switch,
        1001,
        &["port_sec", "pre_acl", "acl", "l2"],
    ));
    p.datapaths.push(Datapath::new(
        "net2",
        DatapathKind::Switch,
        1002,
        &["port_sec", "l2"],
    ));
    let mut r1 = Datapath::new(
        "r1",
        DatapathKind::Router,
        2001,
        &["ip_input", "route", "mtu", "arp_resolve"],
    );
    r1.router_macs = vec![R1, R2];
    p.datapaths.push(r1);

    p.ports = vec![
        LogicalPort::local("a", "net1", "tap-a", vec![]).with_addresses(A, vec![IP_A.into()]),
        LogicalPort::local("b", "net1", "tap-b", vec![10]).with_addresses(B, vec![IP_B.into()]),
        LogicalPort::remote("c", "net1", "h2", H2.into()).with_addresses(C, vec![IP_C.into()]),
        LogicalPort::local("d", "net2", "tap-d", vec![]).with_addresses(D, vec![IP_D.into()]),
        LogicalPort::local("e", "net2", "tap-b", vec![20, 30]).with_addresses(E, vec![]),
        LogicalPort::internal("rp-net1", "r1"),
        LogicalPort::internal("rp-net2", "r1"),
        LogicalPort::internal("net1-rp", "net1"),
        LogicalPort::internal("net2-rp", "net2"),
    ];
    p.flood_groups = vec![
        FloodGroup {
            name: "net1-all".into(),
            ports: vec!["a".into(), "b".into(), "c".into(), "net1-rp".into()],
        },
        FloodGroup {
            name: "net2-all".into(),
            ports: vec!["d".into(), "e".into()],
        },
    ];
    p.ecmp_groups = vec![EcmpGroup {
        name: "wan".into(),
        members: vec![
            EcmpMember {
                weight: 1,
                actions: vec![
                    Action::SetEthDst(NH1),
                    Action::Tunnel {
                        remote: ip(192, 0, 2, 21).into(),
                        vni: 3001,
                    },
                ],
            },
            EcmpMember {
                weight: 3,
                actions: vec![
                    Action::SetEthDst(NH2),
                    Action::Tunnel {
                        remote: ip(192, 0, 2, 22).into(),
                        vni: 3001,
                    },
                ],
            },
        ],
    }];
    p.address_sets = vec![AddressSet {
        name: "admins".into(),
        prefixes: vec![net("10.0.2.0/24"), net("fd00::/64")],
    }];
    p.tunnel_entries = vec![
        TunnelEntry {
            vni: 1001,
            datapath: "net1".into(),
            table: "pre_acl".into(),
        },
        TunnelEntry {
            vni: 1002,
            datapath: "net2".into(),
            table: "l2".into(),
        },
    ];

    // net1: port security.
    for (port, mac) in [("a", A), ("b", B)] {
        let ps = o(
            "port-security",
            port,
            &format!("port {port} may send from {mac} only"),
        );
        p.add_flow(
            "net1",
            "port_sec",
            Flow::new(
                100,
                Match::new().in_port(port).eth_src(mac),
                vec![Action::Next],
            )
            .origin(ps.clone()),
        );
        p.add_flow(
            "net1",
            "port_sec",
            Flow::new(50, Match::new().in_port(port), vec![Action::Drop]).origin(ps),
        );
    }
    // net1: conntrack for IP.
    p.add_flow(
        "net1",
        "pre_acl",
        Flow::new(
            100,
            Match::new().ip4(),
            vec![Action::CtLookup { zone: 1 }, Action::Next],
        )
        .origin(o("acl", "pre", "track IPv4 connections")),
    );
    p.add_flow(
        "net1",
        "pre_acl",
        Flow::new(0, Match::new(), vec![Action::Next]),
    );
    // net1: stateful ACL protecting port a (and letting a talk out).
    let ct = |v: u8, m: u8| Match::new().ct(v, m);
    p.add_flow(
        "net1",
        "acl",
        Flow::new(
            1000,
            ct(ct_state::EST, ct_state::EST | ct_state::INV),
            vec![Action::Next],
        )
        .origin(o("acl", "established", "allow established")),
    );
    p.add_flow(
        "net1",
        "acl",
        Flow::new(
            1000,
            ct(ct_state::REL, ct_state::REL | ct_state::INV),
            vec![Action::Next],
        )
        .origin(o("acl", "related", "allow related")),
    );
    p.add_flow(
        "net1",
        "acl",
        Flow::new(900, ct(ct_state::INV, ct_state::INV), vec![Action::Drop]).origin(o(
            "acl",
            "invalid",
            "drop invalid",
        )),
    );
    p.add_flow(
        "net1",
        "acl",
        Flow::new(
            500,
            Match::new()
                .ip_dst(ipnet::Ipv4Net::from(ip(10, 0, 1, 10)))
                .ip_src(net("10.0.0.0/8"))
                .tcp_dst(22),
            vec![Action::CtCommit { zone: 1 }, Action::Next],
        )
        .origin(o(
            "security-group-rule",
            "sg-a-1",
            "sg a rule 1: ingress tcp 22 from 10.0.0.0/8",
        )),
    );
    p.add_flow(
        "net1",
        "acl",
        Flow::new(
            500,
            Match::new()
                .ip_dst(ipnet::Ipv4Net::from(ip(10, 0, 1, 10)))
                .tcp_dst(23),
            vec![
                Action::Log {
                    rule: "deny-telnet".into(),
                },
                Action::Reject,
            ],
        )
        .origin(o(
            "security-group-rule",
            "sg-a-2",
            "sg a rule 2: reject telnet",
        )),
    );
    p.add_flow(
        "net1",
        "acl",
        Flow::new(
            500,
            Match::new()
                .ip_dst(ipnet::Ipv4Net::from(ip(10, 0, 1, 10)))
                .ip_src_set("admins")
                .icmp4(),
            vec![Action::CtCommit { zone: 1 }, Action::Next],
        )
        .origin(o(
            "security-group-rule",
            "sg-a-3",
            "sg a rule 3: icmp from $admins",
        )),
    );
    p.add_flow(
        "net1",
        "acl",
        Flow::new(
            400,
            Match::new().ip_src(ipnet::Ipv4Net::from(ip(10, 0, 1, 10))),
            vec![Action::CtCommit { zone: 1 }, Action::Next],
        )
        .origin(o("security-group-rule", "sg-a-egress", "sg a: egress any")),
    );
    p.add_flow(
        "net1",
        "acl",
        Flow::new(
            100,
            Match::new()
                .ip4()
                .ip_dst(ipnet::Ipv4Net::from(ip(10, 0, 1, 10))),
            vec![Action::Drop],
        )
        .origin(o("security-group", "sg-a", "default deny to a")),
    );
    p.add_flow(
        "net1",
        "acl",
        Flow::new(0, Match::new(), vec![Action::Next]),
    );
    // net1: L2.
    p.add_flow(
        "net1",
        "l2",
        Flow::new(
            110,
            Match::new().arp().arp_op(1).arp_tpa(ip(10, 0, 1, 1)),
            vec![Action::ArpReply { mac: R1 }],
        )
        .origin(o("arp-responder", "r1", "router r1 answers for 10.0.1.1")),
    );
    for (port, mac) in [("a", A), ("b", B), ("c", C)] {
        p.add_flow(
            "net1",
            "l2",
            Flow::new(100, Match::new().eth_dst(mac), vec![Action::output(port)]).origin(o(
                "l2-lookup",
                port,
                &format!("{mac} is port {port}"),
            )),
        );
    }
    p.add_flow(
        "net1",
        "l2",
        Flow::new(
            100,
            Match::new().eth_dst(R1),
            vec![
                Action::SetInPort("rp-net1".into()),
                Action::goto("r1", "ip_input"),
            ],
        )
        .origin(o("l2-lookup", "r1", "router MAC: to r1")),
    );
    p.add_flow(
        "net1",
        "l2",
        Flow::new(
            90,
            Match::new().eth_dst_is(EthMatch::Multicast),
            vec![Action::Flood("net1-all".into())],
        )
        .origin(o("l2-lookup", "flood", "broadcast and multicast")),
    );
    // net2.
    p.add_flow(
        "net2",
        "port_sec",
        Flow::new(
            100,
            Match::new().in_port("d").eth_src(D),
            vec![Action::Next],
        ),
    );
    p.add_flow(
        "net2",
        "port_sec",
        Flow::new(100, Match::new().in_port("e"), vec![Action::Next]),
    );
    for (port, mac) in [("d", D), ("e", E)] {
        p.add_flow(
            "net2",
            "l2",
            Flow::new(100, Match::new().eth_dst(mac), vec![Action::output(port)]),
        );
    }
    p.add_flow(
        "net2",
        "l2",
        Flow::new(
            100,
            Match::new().eth_dst(R2),
            vec![
                Action::SetInPort("rp-net2".into()),
                Action::goto("r1", "ip_input"),
            ],
        ),
    );
    p.add_flow(
        "net2",
        "l2",
        Flow::new(
            90,
            Match::new().eth_dst_is(EthMatch::Multicast),
            vec![Action::Flood("net2-all".into())],
        ),
    );
    // r1.
    p.add_flow(
        "r1",
        "ip_input",
        Flow::new(
            100,
            Match::new()
                .ip_dst(ipnet::Ipv4Net::from(ip(10, 0, 1, 1)))
                .icmp4()
                .icmp_type(8),
            vec![Action::IcmpEchoReply],
        )
        .origin(o("router", "r1", "r1 answers ping on 10.0.1.1")),
    );
    for (rp, addr) in [("rp-net1", ip(10, 0, 1, 1)), ("rp-net2", ip(10, 0, 2, 1))] {
        p.add_flow(
            "r1",
            "ip_input",
            Flow::new(
                50,
                Match::new().in_port(rp).ip4().ttl_at_most(1),
                vec![Action::IcmpError {
                    error: IcmpErrorKind::TimeExceeded,
                    src: addr.into(),
                }],
            )
            .origin(o("router", "r1", "TTL expired")),
        );
    }
    p.add_flow(
        "r1",
        "ip_input",
        Flow::new(0, Match::new().ip4(), vec![Action::DecTtl, Action::Next]),
    );
    for (dst, rp, mac) in [
        ("10.0.1.0/24", "rp-net1", R1),
        ("10.0.2.0/24", "rp-net2", R2),
    ] {
        p.add_flow(
            "r1",
            "route",
            Flow::new(
                24,
                Match::new().ip_dst(net(dst)),
                vec![
                    Action::SetOutPort(rp.into()),
                    Action::SetEthSrc(mac),
                    Action::Next,
                ],
            )
            .origin(o("route", dst, &format!("connected {dst}"))),
        );
    }
    p.add_flow(
        "r1",
        "route",
        Flow::new(
            16,
            Match::new().ip_dst(net("10.9.0.0/16")),
            vec![Action::SetEthSrc(R2), Action::Ecmp("wan".into())],
        )
        .origin(o("route", "wan", "static route 10.9.0.0/16 via ECMP")),
    );
    p.add_flow(
        "r1",
        "mtu",
        Flow::new(
            100,
            Match::new().out_port("rp-net2").l3_len_gt(1400),
            vec![Action::IcmpError {
                error: IcmpErrorKind::PacketTooBig { mtu: 1400 },
                src: ip(10, 0, 1, 1).into(),
            }],
        )
        .origin(o("mtu", "net2", "net2 MTU is 1400")),
    );
    p.add_flow("r1", "mtu", Flow::new(0, Match::new(), vec![Action::Next]));
    for (rp, dst, mac, dp, sw_port) in [
        ("rp-net2", IP_D, D, "net2", "net2-rp"),
        ("rp-net1", IP_A, A, "net1", "net1-rp"),
    ] {
        p.add_flow(
            "r1",
            "arp_resolve",
            Flow::new(
                100,
                Match::new()
                    .out_port(rp)
                    .ip_dst(ipnet::Ipv4Net::from(Ipv4Addr::from(dst))),
                vec![
                    Action::SetEthDst(mac),
                    Action::SetInPort(sw_port.into()),
                    Action::goto(dp, "l2"),
                ],
            ),
        );
    }
    p
}

struct World {
    l: Loaded,
    ct: Conntrack,
    now: Duration,
}

impl World {
    fn new() -> World {
        World {
            l: Loaded::load(&program()).expect("test program loads"),
            ct: Conntrack::default(),
            now: Duration::from_secs(1000),
        }
    }

    fn vif(&self, name: &str) -> Ingress {
        Ingress::Vif(self.l.vif_id(name).unwrap())
    }

    fn tunnel(&self, vni: u32) -> Ingress {
        Ingress::Tunnel {
            vni,
            remote: H2.into(),
        }
    }

    fn run(&mut self, ingress: Ingress, frame: &[u8]) -> Outcome {
        execute(
            &self.l,
            &mut self.ct,
            ingress,
            frame,
            self.now,
            &ExecOptions {
                trace: true,
                ct_override: None,
            },
        )
    }

    fn vif_target(&self, vif: &str, port: &str) -> Target {
        Target::Vif {
            vif: self.l.vif_id(vif).unwrap(),
            port: self.l.port_id(port),
        }
    }
}

fn tcp(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: [u8; 4],
    dst: [u8; 4],
    sp: u16,
    dp: u16,
    flags: u16,
) -> PacketSpec {
    PacketSpec {
        eth_src: src_mac,
        eth_dst: dst_mac,
        vlans: vec![],
        l3: L3Spec::Ip {
            src: src.into(),
            dst: dst.into(),
            ttl: 64,
            l4: L4Spec::Tcp {
                src: sp,
                dst: dp,
                flags,
                seq: 100,
                ack: if flags & tcp_flags::ACK != 0 { 555 } else { 0 },
                payload: vec![],
            },
        },
    }
}

fn arp_request(src_mac: MacAddr, spa: [u8; 4], tpa: [u8; 4]) -> PacketSpec {
    PacketSpec {
        eth_src: src_mac,
        eth_dst: MacAddr::BROADCAST,
        vlans: vec![],
        l3: L3Spec::Arp {
            op: 1,
            sha: src_mac,
            spa: spa.into(),
            tha: MacAddr::ZERO,
            tpa: tpa.into(),
        },
    }
}

fn with_ttl(mut s: PacketSpec, ttl: u8) -> PacketSpec {
    if let L3Spec::Ip { ttl: t, .. } = &mut s.l3 {
        *t = ttl;
    }
    s
}

fn ipv4_checksum_ok(frame: &[u8], l3: usize) -> bool {
    let ihl = usize::from(frame[l3] & 0x0f) * 4;
    checksum::checksum(&frame[l3..l3 + ihl]) == 0
}

fn trace_text(out: &Outcome) -> String {
    out.trace
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default()
}

#[test]
fn program_serializes_and_loads() {
    let p = program();
    let json = serde_json::to_string(&p).unwrap();
    let back: Program = serde_json::from_str(&json).unwrap();
    assert_eq!(back, p);
    let l = Loaded::load(&back).unwrap();
    assert!(l.warnings().is_empty(), "{:?}", l.warnings());
    // The route table indexes by prefix length: two shapes, not one per route.
    let r1 = l.datapath_id("r1").unwrap();
    assert_eq!(
        l.table_shapes(TableRef {
            datapath: r1,
            table: 1
        }),
        2
    );
}

#[test]
fn l2_unicast_to_trunk_port_pushes_its_tag() {
    let mut w = World::new();
    let f = tcp(A, B, IP_A, IP_B, 40000, 80, tcp_flags::SYN).build();
    let out = w.run(w.vif("tap-a"), &f);
    assert_eq!(out.drop, None, "{}", trace_text(&out));
    assert_eq!(out.outputs.len(), 1);
    let o = &out.outputs[0];
    assert_eq!(o.target, w.vif_target("tap-b", "b"));
    // Same frame with an 802.1Q tag for VLAN 10 inserted after the MACs.
    assert_eq!(&o.bytes[..12], &f[..12]);
    assert_eq!(&o.bytes[12..16], &[0x81, 0x00, 0x00, 0x0a]);
    assert_eq!(&o.bytes[16..], &f[12..]);
    // Egress from a was committed in zone 1.
    assert_eq!(w.ct.len(), 1);
    assert!(out.decision.is_some());
}

#[test]
fn tagged_ingress_selects_the_port_by_tags() {
    let mut w = World::new();
    // From tap-b with VLAN 10: port b, which is on net1, so it reaches a untagged.
    let mut s = tcp(B, A, IP_B, IP_A, 40000, 22, tcp_flags::SYN);
    s.vlans = vec![10];
    let out = w.run(w.vif("tap-b"), &s.build());
    assert_eq!(out.outputs.len(), 1, "{}", trace_text(&out));
    assert_eq!(out.outputs[0].target, w.vif_target("tap-a", "a"));
    let mut plain = s.clone();
    plain.vlans.clear();
    assert_eq!(out.outputs[0].bytes, plain.build());
    // From tap-b with QinQ 20.30: port e on net2; to d untagged.
    let mut s = tcp(E, D, [10, 0, 2, 20], IP_D, 1, 2, tcp_flags::SYN);
    s.vlans = vec![20, 30];
    let out = w.run(w.vif("tap-b"), &s.build());
    assert_eq!(out.outputs.len(), 1, "{}", trace_text(&out));
    assert_eq!(out.outputs[0].target, w.vif_target("tap-d", "d"));
    // And back from d to e: both tags pushed, outer first.
    let s = tcp(D, E, IP_D, [10, 0, 2, 20], 2, 1, tcp_flags::SYN);
    let out = w.run(w.vif("tap-d"), &s.build());
    assert_eq!(out.outputs[0].target, w.vif_target("tap-b", "e"));
    assert_eq!(
        &out.outputs[0].bytes[12..20],
        &[0x81, 0, 0, 20, 0x81, 0, 0, 30]
    );
    // Unknown tag on tap-b: no port.
    let mut s = tcp(B, A, IP_B, IP_A, 1, 2, tcp_flags::SYN);
    s.vlans = vec![99];
    let out = w.run(w.vif("tap-b"), &s.build());
    assert!(matches!(out.drop, Some(DropReason::NoPortForTags { .. })));
    assert!(out.outputs.is_empty());
}

#[test]
fn broadcast_floods_with_split_horizon() {
    let mut w = World::new();
    let f = arp_request(A, IP_A, IP_B).build();
    let out = w.run(w.vif("tap-a"), &f);
    let targets: Vec<Target> = out.outputs.iter().map(|o| o.target).collect();
    assert_eq!(
        targets,
        vec![
            w.vif_target("tap-b", "b"),
            Target::Tunnel {
                remote: H2.into(),
                vni: 1001,
                port: w.l.port_id("c"),
            },
        ],
        "{}",
        trace_text(&out)
    );
    // The tunnel copy is the untagged frame; the tap-b copy carries VLAN 10.
    assert_eq!(out.outputs[1].bytes, f);
    assert_eq!(out.outputs[0].bytes.len(), f.len() + 4);
    // The same broadcast from the tunnel is flooded to local ports only.
    let f = arp_request(C, IP_C, IP_B).build();
    let out = w.run(w.tunnel(1001), &f);
    let targets: Vec<Target> = out.outputs.iter().map(|o| o.target).collect();
    assert_eq!(
        targets,
        vec![w.vif_target("tap-a", "a"), w.vif_target("tap-b", "b")]
    );
}

#[test]
fn port_security_drops_spoofed_source() {
    let mut w = World::new();
    let f = tcp(C, B, IP_A, IP_B, 1, 80, tcp_flags::SYN).build();
    let out = w.run(w.vif("tap-a"), &f);
    assert!(out.outputs.is_empty());
    let v = out.verdict(&w.l);
    match &v {
        Verdict::Dropped {
            origin: Some(origin),
            ..
        } => assert_eq!(origin.kind, "port-security"),
        other => panic!("unexpected verdict {other}"),
    }
    assert!(
        v.to_string()
            .starts_with("dropped: dropped by net1.port_sec priority 50")
    );
    // A drop decision is cacheable too.
    assert!(out.decision.as_ref().is_some_and(Decision::is_drop));
}

#[test]
fn arp_reply_for_router_address() {
    let mut w = World::new();
    let f = arp_request(A, IP_A, [10, 0, 1, 1]).build();
    let out = w.run(w.vif("tap-a"), &f);
    assert!(out.outputs.is_empty());
    assert_eq!(out.generated.len(), 1, "{}", trace_text(&out));
    let g = &out.generated[0];
    assert_eq!(g.kind, GeneratedKind::ArpReply);
    assert_eq!(g.target, w.vif_target("tap-a", "a"));
    let k = parse(&g.bytes).unwrap().key;
    assert_eq!((k.eth_src, k.eth_dst), (R1, A));
    assert_eq!(k.arp_op, 2);
    assert_eq!((k.arp_sha, k.arp_spa), (R1, ip(10, 0, 1, 1)));
    assert_eq!((k.arp_tha, k.arp_tpa), (A, Ipv4Addr::from(IP_A)));
    assert!(out.decision.is_none());
    assert!(matches!(out.verdict(&w.l), Verdict::Replied(_)));
}

#[test]
fn router_hop_decrements_ttl_and_rewrites_macs() {
    let mut w = World::new();
    let f = tcp(A, R1, IP_A, IP_D, 40000, 80, tcp_flags::SYN).build();
    let out = w.run(w.vif("tap-a"), &f);
    assert_eq!(out.outputs.len(), 1, "{}", trace_text(&out));
    let o = &out.outputs[0];
    assert_eq!(o.target, w.vif_target("tap-d", "d"));
    let k = parse(&o.bytes).unwrap().key;
    assert_eq!((k.eth_src, k.eth_dst), (R2, D));
    assert_eq!(k.ip_ttl, 63);
    assert!(ipv4_checksum_ok(&o.bytes, 14));
    // Nothing but MACs, TTL and the IP checksum changed.
    assert_eq!(&o.bytes[14..22], &f[14..22]);
    assert_eq!(&o.bytes[23..24], &f[23..24]);
    assert_eq!(&o.bytes[26..], &f[26..]);
    let text = trace_text(&out);
    assert!(text.contains("r1.ip_input"), "{text}");
    assert!(text.contains("TTL 64 -> 63"), "{text}");
    assert!(
        text.ends_with(r#"verdict: delivered to port "d" (local vif "tap-d")"#),
        "{text}"
    );
}

#[test]
fn ttl_one_gets_time_exceeded() {
    let mut w = World::new();
    let f = with_ttl(tcp(A, R1, IP_A, IP_D, 40000, 80, tcp_flags::SYN), 1).build();
    let out = w.run(w.vif("tap-a"), &f);
    assert!(out.outputs.is_empty());
    assert_eq!(out.generated.len(), 1, "{}", trace_text(&out));
    let g = &out.generated[0];
    assert_eq!(
        g.kind,
        GeneratedKind::IcmpError(IcmpErrorKind::TimeExceeded)
    );
    assert_eq!(g.target, w.vif_target("tap-a", "a"));
    let k = parse(&g.bytes).unwrap().key;
    assert_eq!((k.icmp_type, k.icmp_code), (11, 0));
    assert_eq!(k.ip_src, IpAddr::from(ip(10, 0, 1, 1)));
    assert_eq!(k.ip_dst, IpAddr::from(IP_A));
    assert_eq!((k.eth_src, k.eth_dst), (R1, A));
    assert!(ipv4_checksum_ok(&g.bytes, 14));
    assert_eq!(checksum::checksum(&g.bytes[34..]), 0);
    // The quoted packet is the original one, TTL 1.
    assert_eq!(&g.bytes[42..], &f[14..]);
}

#[test]
fn oversized_packet_gets_packet_too_big() {
    let mut w = World::new();
    let mut s = tcp(A, R1, IP_A, IP_D, 40000, 80, tcp_flags::SYN);
    if let L3Spec::Ip {
        l4: L4Spec::Tcp { payload, .. },
        ..
    } = &mut s.l3
    {
        *payload = vec![0x42; 1400];
    }
    let out = w.run(w.vif("tap-a"), &s.build());
    assert!(out.outputs.is_empty(), "{}", trace_text(&out));
    assert_eq!(out.generated.len(), 1, "{}", trace_text(&out));
    let g = &out.generated[0];
    assert_eq!(
        g.kind,
        GeneratedKind::IcmpError(IcmpErrorKind::PacketTooBig { mtu: 1400 })
    );
    let k = parse(&g.bytes).unwrap().key;
    assert_eq!((k.icmp_type, k.icmp_code), (3, 4));
    assert_eq!(u16::from_be_bytes([g.bytes[40], g.bytes[41]]), 1400);
    assert_eq!(g.bytes.len(), 14 + 576);
    // A packet of exactly the MTU passes.
    if let L3Spec::Ip {
        l4: L4Spec::Tcp { payload, .. },
        ..
    } = &mut s.l3
    {
        *payload = vec![0x42; 1400 - 40];
    }
    let out = w.run(w.vif("tap-a"), &s.build());
    assert_eq!(out.outputs.len(), 1, "{}", trace_text(&out));
}

#[test]
fn ecmp_spreads_by_weight_and_is_stable() {
    let mut w = World::new();
    let mut counts = [0usize; 2];
    for port in 0..4000u16 {
        let f = tcp(
            A,
            R1,
            IP_A,
            [10, 9, (port % 7) as u8, 1],
            1024 + port,
            443,
            tcp_flags::SYN,
        )
        .build();
        let out = w.run(w.vif("tap-a"), &f);
        assert_eq!(out.outputs.len(), 1, "{}", trace_text(&out));
        let o = &out.outputs[0];
        let k = parse(&o.bytes).unwrap().key;
        let i = match o.target {
            Target::Tunnel {
                remote,
                vni: 3001,
                port: None,
            } if remote == IpAddr::from(ip(192, 0, 2, 21)) => {
                assert_eq!(k.eth_dst, NH1);
                0
            }
            Target::Tunnel {
                remote,
                vni: 3001,
                port: None,
            } if remote == IpAddr::from(ip(192, 0, 2, 22)) => {
                assert_eq!(k.eth_dst, NH2);
                1
            }
            t => panic!("unexpected target {t:?}"),
        };
        counts[i] += 1;
        // The same 5-tuple always takes the same member.
        let again = w.run(w.vif("tap-a"), &f);
        assert_eq!(again.outputs[0].target, o.target);
    }
    // Weights 1:3 give about 1000:3000.
    assert!((800..1200).contains(&counts[0]), "{counts:?}");
    assert!((2800..3200).contains(&counts[1]), "{counts:?}");
}

#[test]
fn ecmp_member_removal_moves_only_its_flows() {
    let w = World::new();
    let mut p = program();
    p.ecmp_groups[0].members.push(EcmpMember {
        weight: 2,
        actions: vec![Action::Tunnel {
            remote: ip(192, 0, 2, 23).into(),
            vni: 3001,
        }],
    });
    let l3 = Loaded::load(&p).unwrap();
    let mut ct = Conntrack::default();
    let mut moved_wrongly = 0;
    for port in 0..2000u16 {
        let f = tcp(A, R1, IP_A, [10, 9, 0, 1], 1024 + port, 443, tcp_flags::SYN).build();
        let opts = ExecOptions::default();
        let two = execute(&w.l, &mut ct, w.vif("tap-a"), &f, w.now, &opts);
        let three = execute(
            &l3,
            &mut ct,
            Ingress::Vif(l3.vif_id("tap-a").unwrap()),
            &f,
            w.now,
            &opts,
        );
        let t3 = three.outputs[0].target;
        let to_new = matches!(t3, Target::Tunnel { remote, .. } if remote == IpAddr::from(ip(192, 0, 2, 23)));
        if !to_new && t3 != two.outputs[0].target {
            moved_wrongly += 1;
        }
    }
    assert_eq!(moved_wrongly, 0);
}

#[test]
fn conntrack_allows_related_return_traffic_only() {
    let mut w = World::new();
    // c (remote) -> a on port 80: no rule allows it.
    let syn_in = tcp(C, A, IP_C, IP_A, 5555, 80, tcp_flags::SYN).build();
    let out = w.run(w.tunnel(1001), &syn_in);
    assert!(out.outputs.is_empty());
    assert!(
        trace_text(&out).contains("default deny to a"),
        "{}",
        trace_text(&out)
    );
    // a -> c on port 80: allowed out, committed.
    let syn_out = tcp(A, C, IP_A, IP_C, 40000, 80, tcp_flags::SYN).build();
    let out = w.run(w.vif("tap-a"), &syn_out);
    assert_eq!(
        out.outputs[0].target,
        Target::Tunnel {
            remote: H2.into(),
            vni: 1001,
            port: w.l.port_id("c")
        }
    );
    // c -> a SYN+ACK from port 80: established reply, delivered.
    let synack = tcp(C, A, IP_C, IP_A, 80, 40000, tcp_flags::SYN | tcp_flags::ACK).build();
    let out = w.run(w.tunnel(1001), &synack);
    assert_eq!(out.outputs.len(), 1, "{}", trace_text(&out));
    assert_eq!(out.outputs[0].target, w.vif_target("tap-a", "a"));
    assert!(trace_text(&out).contains("ct_state = est|rpl|trk"));
    // An ICMP error about a's connection is related and delivered too.
    let p = parse(&syn_out).unwrap();
    let err = wire::build::icmp_error(
        &syn_out,
        &p,
        IcmpErrorKind::Unreachable(Unreachable::Host),
        IpAddr::from(IP_C),
        C,
    )
    .unwrap();
    let out = w.run(w.tunnel(1001), &err);
    assert_eq!(out.outputs.len(), 1, "{}", trace_text(&out));
    assert!(trace_text(&out).contains("rel"));
    // A SYN+ACK for a connection nobody opened is invalid and dropped.
    let stray = tcp(C, A, IP_C, IP_A, 81, 40000, tcp_flags::SYN | tcp_flags::ACK).build();
    let out = w.run(w.tunnel(1001), &stray);
    assert!(out.outputs.is_empty());
    assert!(
        trace_text(&out).contains("drop invalid"),
        "{}",
        trace_text(&out)
    );
}

#[test]
fn address_set_membership() {
    let mut w = World::new();
    let mk = |src: [u8; 4]| PacketSpec {
        eth_src: C,
        eth_dst: A,
        vlans: vec![],
        l3: L3Spec::Ip {
            src: src.into(),
            dst: IP_A.into(),
            ttl: 64,
            l4: L4Spec::Icmp {
                ty: 8,
                code: 0,
                rest: [0, 1, 0, 1],
                payload: vec![],
            },
        },
    };
    let out = w.run(w.tunnel(1001), &mk([10, 0, 2, 77]).build());
    assert_eq!(out.outputs.len(), 1, "{}", trace_text(&out));
    let out = w.run(w.tunnel(1001), &mk([10, 0, 3, 77]).build());
    assert!(out.outputs.is_empty());
}

#[test]
fn reject_sends_a_correct_rst_and_logs() {
    let mut w = World::new();
    let syn = tcp(C, A, IP_C, IP_A, 6000, 23, tcp_flags::SYN).build();
    let out = w.run(w.tunnel(1001), &syn);
    assert!(out.outputs.is_empty());
    assert_eq!(out.logs.len(), 1);
    assert_eq!(&*out.logs[0].rule, "deny-telnet");
    assert_eq!(out.generated.len(), 1);
    let g = &out.generated[0];
    assert_eq!(g.kind, GeneratedKind::TcpRst);
    assert_eq!(
        g.target,
        Target::Tunnel {
            remote: H2.into(),
            vni: 1001,
            port: None
        }
    );
    let p = parse(&g.bytes).unwrap();
    let k = p.key;
    assert_eq!((k.eth_src, k.eth_dst), (A, C));
    assert_eq!(
        (k.ip_src, k.ip_dst),
        (IpAddr::from(IP_A), IpAddr::from(IP_C))
    );
    assert_eq!((k.l4_src, k.l4_dst), (23, 6000));
    assert_eq!(k.tcp_flags, tcp_flags::RST | tcp_flags::ACK);
    let seg = &g.bytes[p.layout.l4.unwrap()..];
    assert_eq!(u32::from_be_bytes([seg[4], seg[5], seg[6], seg[7]]), 0);
    assert_eq!(u32::from_be_bytes([seg[8], seg[9], seg[10], seg[11]]), 101);
    assert_eq!(checksum::upper_layer(k.ip_src, k.ip_dst, 6, seg), 0);
    assert!(ipv4_checksum_ok(&g.bytes, 14));
    let v = out.verdict(&w.l);
    assert!(matches!(
        v,
        Verdict::Rejected {
            kind: GeneratedKind::TcpRst,
            ..
        }
    ));
    assert_eq!(
        v.to_string(),
        "rejected with TCP RST by security-group-rule sg-a-2: sg a rule 2: reject telnet"
    );
}

#[test]
fn router_answers_ping() {
    let mut w = World::new();
    let f = PacketSpec {
        eth_src: A,
        eth_dst: R1,
        vlans: vec![],
        l3: L3Spec::Ip {
            src: IP_A.into(),
            dst: [10, 0, 1, 1].into(),
            ttl: 64,
            l4: L4Spec::Icmp {
                ty: 8,
                code: 0,
                rest: [0, 7, 0, 1],
                payload: b"ping".to_vec(),
            },
        },
    }
    .build();
    let out = w.run(w.vif("tap-a"), &f);
    assert_eq!(out.generated.len(), 1, "{}", trace_text(&out));
    let k = parse(&out.generated[0].bytes).unwrap().key;
    assert_eq!((k.icmp_type, k.l4_src), (0, 7));
    assert_eq!(k.ip_src, IpAddr::from(ip(10, 0, 1, 1)));
}

#[test]
fn loop_guard_stops_a_looping_program() {
    let mut p = Program::new("h");
    p.datapaths
        .push(Datapath::new("dp", DatapathKind::Switch, 1, &["t0", "t1"]));
    p.ports.push(LogicalPort::local("p", "dp", "tap", vec![]));
    p.add_flow("dp", "t0", Flow::new(0, Match::new(), vec![Action::Next]));
    p.add_flow(
        "dp",
        "t1",
        Flow::new(0, Match::new(), vec![Action::goto("dp", "t0")]),
    );
    let l = Loaded::load(&p).unwrap();
    let f = tcp(A, B, IP_A, IP_B, 1, 2, tcp_flags::SYN).build();
    let out = execute(
        &l,
        &mut Conntrack::default(),
        Ingress::Vif(l.vif_id("tap").unwrap()),
        &f,
        Duration::ZERO,
        &ExecOptions::default(),
    );
    assert!(matches!(out.drop, Some(DropReason::LoopLimit(_))));
    assert!(out.decision.is_none());
}

#[test]
fn load_errors_name_the_problem() {
    let mut p = program();
    p.add_flow(
        "net1",
        "l2",
        Flow::new(1, Match::new().in_port("nope"), vec![Action::Drop]),
    );
    let e = Loaded::load(&p).err().unwrap();
    assert!(
        matches!(&e, LoadError::Unknown { kind: "port", name, .. } if name == "nope"),
        "{e}"
    );
    assert!(e.to_string().contains("table \"l2\""), "{e}");

    let mut p = program();
    p.add_flow(
        "net1",
        "l2",
        Flow::new(1, Match::new(), vec![Action::Next, Action::Drop]),
    );
    assert!(matches!(
        Loaded::load(&p),
        Err(LoadError::NextFromLastTable { .. }) | Err(LoadError::ActionAfterTerminal { .. })
    ));

    let mut p = program();
    p.add_flow(
        "net1",
        "acl",
        Flow::new(1, Match::new(), vec![Action::Drop, Action::Next]),
    );
    assert!(matches!(
        Loaded::load(&p),
        Err(LoadError::ActionAfterTerminal { .. })
    ));

    let mut p = program();
    p.ports
        .push(LogicalPort::local("b2", "net1", "tap-b", vec![10]));
    assert!(matches!(
        Loaded::load(&p),
        Err(LoadError::DuplicateVifTags { .. })
    ));

    let mut p = program();
    p.ports
        .push(LogicalPort::local("a", "net1", "tap-z", vec![]));
    assert!(matches!(
        Loaded::load(&p),
        Err(LoadError::DuplicateName { kind: "port", .. })
    ));

    let mut p = program();
    p.add_flow(
        "net1",
        "acl",
        Flow::new(
            1,
            Match::new(),
            vec![Action::SetReg {
                reg: 9,
                value: 1,
                mask: 1,
            }],
        ),
    );
    assert!(matches!(
        Loaded::load(&p),
        Err(LoadError::OutOfRange { .. })
    ));
}

#[test]
fn trace_renders_every_table() {
    let mut w = World::new();
    let f = tcp(A, R1, IP_A, IP_D, 40000, 80, tcp_flags::SYN).build();
    let out = w.run(w.vif("tap-a"), &f);
    let text = trace_text(&out);
    let expected_tables = [
        "net1.port_sec",
        "net1.pre_acl",
        "net1.acl",
        "net1.l2",
        "r1.ip_input",
        "r1.route",
        "r1.mtu",
        "r1.arp_resolve",
        "net2.l2",
    ];
    let mut last = 0;
    for t in expected_tables {
        let at = text[last..]
            .find(t)
            .unwrap_or_else(|| panic!("{t} missing or out of order:\n{text}"));
        last += at;
    }
    assert!(
        text.starts_with("ingress: vif \"tap-a\" tags [] -> port \"a\" on datapath \"net1\""),
        "{text}"
    );
    assert!(
        text.contains("origin: security-group-rule sg-a-egress: sg a: egress any"),
        "{text}"
    );
    assert!(
        text.contains("ct_commit(zone=1);  -> new connection committed"),
        "{text}"
    );
    // A default drop names the table.
    let out = w.run(
        w.vif("tap-d"),
        &tcp(D, B, IP_D, IP_B, 1, 2, tcp_flags::SYN).build(),
    );
    let text = trace_text(&out);
    assert!(
        text.contains("net2.l2 (table 1): no flow matched -> default drop"),
        "{text}"
    );
    assert!(
        text.ends_with("verdict: dropped: no flow matched in net2.l2 (default drop)"),
        "{text}"
    );
}

#[test]
fn ct_override_pretends_established() {
    let mut w = World::new();
    let f = tcp(C, A, IP_C, IP_A, 80, 40000, tcp_flags::ACK).build();
    let ingress = w.tunnel(1001);
    let out = execute(
        &w.l,
        &mut w.ct,
        ingress,
        &f,
        w.now,
        &ExecOptions {
            trace: true,
            ct_override: Some(ct_state::EST | ct_state::RPL),
        },
    );
    assert_eq!(out.outputs.len(), 1, "{}", trace_text(&out));
    assert!(out.decision.is_none());
    assert!(w.ct.is_empty());
}

/// A one-switch IPv6 network with an ND responder, a DHCP service port and VLAN games.
fn v6_program() -> Program {
    let mut p = Program::new("h1");
    p.datapaths
        .push(Datapath::new("v6", DatapathKind::Switch, 7, &["in", "out"]));
    p.ports.push(LogicalPort::local("x", "v6", "tap-x", vec![]));
    p.ports.push(LogicalPort::local("y", "v6", "tap-y", vec![]));
    p.ports.push(LogicalPort::internal("gw", "v6"));
    p.add_flow(
        "v6",
        "in",
        Flow::new(
            100,
            Match::new()
                .nd_target("fd00::1".parse().unwrap())
                .icmp_type(135),
            vec![Action::NdAdvert {
                mac: R1,
                router: true,
            }],
        )
        .origin(o("nd-responder", "gw", "router answers for fd00::1")),
    );
    p.add_flow(
        "v6",
        "in",
        Flow::new(
            90,
            Match::new().udp().l4_dst(ValueRange::exact(547)),
            vec![Action::LocalService {
                service: Service::Dhcp6,
                context: "subnet-v6".into(),
            }],
        ),
    );
    // x -> y through the egress table, tagged 5 on the way and untagged again.
    p.add_flow(
        "v6",
        "in",
        Flow::new(
            10,
            Match::new().in_port("x"),
            vec![
                Action::SetOutPort("y".into()),
                Action::PushVlan(5),
                Action::Next,
            ],
        ),
    );
    p.add_flow(
        "v6",
        "out",
        Flow::new(
            10,
            Match::new().out_port("y").vlan(Some(5)),
            vec![Action::PopVlan, Action::OutputOutPort, Action::output("gw")],
        ),
    );
    p
}

#[test]
fn nd_advert_service_handoff_and_vlan_actions() {
    let l = Loaded::load(&v6_program()).unwrap();
    let mut ct = Conntrack::default();
    let tap_x = Ingress::Vif(l.vif_id("tap-x").unwrap());
    let opts = ExecOptions {
        trace: true,
        ct_override: None,
    };
    let d = crate::microflow::MicroflowDefaults {
        eth_src: A,
        eth_dst: B,
        ip4_src: ip(10, 0, 0, 1),
        ip6_src: "fd00::5".parse().unwrap(),
    };
    let frame = |s: &str| {
        crate::microflow::parse_microflow(s)
            .unwrap()
            .build(&d)
            .unwrap()
    };

    let out = execute(
        &l,
        &mut ct,
        tap_x,
        &frame("nd.target == fd00::1"),
        Duration::ZERO,
        &opts,
    );
    assert_eq!(out.generated.len(), 1, "{}", trace_text(&out));
    let g = &out.generated[0];
    assert_eq!(g.kind, GeneratedKind::NdAdvert);
    let k = parse(&g.bytes).unwrap().key;
    assert_eq!(
        (k.icmp_type, k.nd_target, k.nd_ll),
        (136, "fd00::1".parse().unwrap(), R1)
    );
    assert_eq!(k.ip_dst, "fd00::5".parse::<IpAddr>().unwrap());

    let dhcp = frame("ip6.dst == ff02::1:2 && udp.src == 546 && udp.dst == 547");
    let out = execute(&l, &mut ct, tap_x, &dhcp, Duration::ZERO, &opts);
    assert_eq!(out.handoffs.len(), 1);
    let h = &out.handoffs[0];
    assert_eq!((h.service, &*h.context), (Service::Dhcp6, "subnet-v6"));
    assert_eq!(h.bytes, dhcp);
    assert_eq!(h.in_port, l.port_id("x"));
    assert_eq!(
        h.reply_to,
        Some(Target::Vif {
            vif: l.vif_id("tap-x").unwrap(),
            port: l.port_id("x")
        })
    );
    assert!(out.decision.is_none());
    assert!(matches!(out.verdict(&l), Verdict::HandedOff(_)));

    let f = frame("ip6.dst == fd00::9 && tcp.dst == 443");
    let out = execute(&l, &mut ct, tap_x, &f, Duration::ZERO, &opts);
    assert_eq!(out.outputs.len(), 1, "{}", trace_text(&out));
    assert_eq!(out.outputs[0].bytes, f, "tag pushed then popped");
    assert!(trace_text(&out).contains("port \"gw\" is internal: nothing sent"));
}

#[test]
fn loaded_and_conntrack_can_move_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Loaded>();
    send_sync::<Conntrack>();
    send_sync::<Decision>();
}

// ---------------------------------------------------------------------------------------------
// Decisions and apply
// ---------------------------------------------------------------------------------------------

fn apply_collect(
    w: &World,
    d: &Decision,
    ct: &mut Conntrack,
    f: &[u8],
) -> Result<Vec<(Target, Vec<u8>)>, Stale> {
    let p = parse(f).unwrap();
    let mut frame = Frame::new(f);
    let mut got = Vec::new();
    apply(&w.l, d, ct, &p, &mut frame, w.now, |t, b| {
        got.push((*t, b.to_vec()))
    })?;
    Ok(got)
}

#[test]
fn apply_replays_a_router_hop() {
    let mut w = World::new();
    let f = tcp(A, R1, IP_A, IP_D, 40000, 80, tcp_flags::SYN).build();
    // The first SYN commits its connection, so its decision (expecting `new`) is stale for
    // the next one; the second run's decision expects `est` and stays valid.
    let first = w.run(w.vif("tap-a"), &f).decision.unwrap();
    let mut ct = w.ct.clone();
    assert_eq!(
        apply_collect(&w, &first, &mut ct, &f),
        Err(Stale::Conntrack { zone: 1 })
    );
    let out = w.run(w.vif("tap-a"), &f);
    let d = out.decision.clone().unwrap();
    let got = apply_collect(&w, &d, &mut ct, &f).unwrap();
    let want: Vec<(Target, Vec<u8>)> = out
        .outputs
        .iter()
        .map(|o| (o.target, o.bytes.clone()))
        .collect();
    assert_eq!(got, want);
    // A decision from another load is stale.
    let other = World::new();
    let p = parse(&f).unwrap();
    assert_eq!(
        apply(
            &other.l,
            &d,
            &mut ct,
            &p,
            &mut Frame::new(&f),
            w.now,
            |_, _| {}
        ),
        Err(Stale::Program)
    );
}

#[test]
fn apply_notices_conntrack_changes() {
    let mut w = World::new();
    // First SYN from c to a:22 is new and committed; its decision expects `new`.
    let syn = tcp(C, A, IP_C, IP_A, 7000, 22, tcp_flags::SYN).build();
    let out = w.run(w.tunnel(1001), &syn);
    assert_eq!(out.outputs.len(), 1, "{}", trace_text(&out));
    let d = out.decision.unwrap();
    // A retransmitted SYN now finds the connection: the cached decision is stale.
    let mut ct = w.ct.clone();
    assert_eq!(
        apply_collect(&w, &d, &mut ct, &syn),
        Err(Stale::Conntrack { zone: 1 })
    );
    assert_eq!(ct.stats(), w.ct.stats(), "a refused apply changes nothing");
}

#[test]
fn apply_checks_length_when_the_pipeline_did() {
    let mut w = World::new();
    let mk = |n: usize| {
        let mut s = tcp(A, R1, IP_A, IP_D, 40000, 80, tcp_flags::SYN);
        if let L3Spec::Ip {
            l4: L4Spec::Tcp { payload, .. },
            ..
        } = &mut s.l3
        {
            *payload = vec![7; n];
        }
        s.build()
    };
    let small = mk(100);
    w.run(w.vif("tap-a"), &small);
    let out = w.run(w.vif("tap-a"), &small);
    assert_eq!(out.outputs.len(), 1, "{}", trace_text(&out));
    let d = out.decision.unwrap();
    let mut ct = w.ct.clone();
    assert!(apply_collect(&w, &d, &mut ct, &mk(200)).is_ok());
    assert_eq!(
        apply_collect(&w, &d, &mut ct, &mk(1500)),
        Err(Stale::Length)
    );
}

/// Packets of the test topology: random flows between its addresses, entering anywhere.
fn arb_case() -> impl Strategy<Value = (usize, PacketSpec)> {
    let macs = prop::sample::select(vec![A, B, C, D, E, R1, R2, MacAddr::BROADCAST]);
    let ips = prop::sample::select(vec![
        IP_A,
        IP_B,
        IP_C,
        IP_D,
        [10, 9, 1, 1],
        [10, 0, 1, 1],
        [10, 0, 2, 20],
    ]);
    let flags = prop::sample::select(vec![
        tcp_flags::SYN,
        tcp_flags::SYN | tcp_flags::ACK,
        tcp_flags::ACK,
        tcp_flags::RST,
        tcp_flags::FIN | tcp_flags::ACK,
    ]);
    let l4 = prop_oneof![
        (
            prop::sample::select(vec![22u16, 23, 80, 40000]),
            prop::sample::select(vec![22u16, 23, 80, 40000]),
            flags,
            prop::collection::vec(any::<u8>(), 0..1500)
        )
            .prop_map(|(src, dst, flags, payload)| L4Spec::Tcp {
                src,
                dst,
                flags,
                seq: 1,
                ack: 2,
                payload
            }),
        (
            any::<u16>(),
            prop::sample::select(vec![53u16, 67, 80]),
            prop::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(src, dst, payload)| L4Spec::Udp { src, dst, payload }),
        (
            prop::sample::select(vec![0u8, 3, 8, 11]),
            prop::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(ty, payload)| L4Spec::Icmp {
                ty,
                code: 0,
                rest: [0, 1, 0, 1],
                payload
            }),
    ];
    let l3 = prop_oneof![
        4 => (ips.clone(), ips.clone(), prop::sample::select(vec![1u8, 2, 64]), l4)
            .prop_map(|(s, d, ttl, l4)| L3Spec::Ip { src: s.into(), dst: d.into(), ttl, l4 }),
        1 => (ips.clone(), ips).prop_map(|(s, t)| L3Spec::Arp {
            op: 1,
            sha: A,
            spa: s.into(),
            tha: MacAddr::ZERO,
            tpa: t.into()
        }),
    ];
    let vlans = prop::sample::select(vec![vec![], vec![10], vec![20, 30], vec![99]]);
    // Mostly consistent senders (the port's own MAC, tags and address), sometimes anything.
    let senders = prop::sample::select(vec![
        (0usize, A, vec![], IP_A),
        (1, B, vec![10], IP_B),
        (1, E, vec![20, 30], [10, 0, 2, 20]),
        (2, D, vec![], IP_D),
        (3, C, vec![], IP_C),
        (4, C, vec![], IP_C),
    ]);
    let consistent = (
        senders,
        prop::sample::select(vec![A, B, C, D, E, R1, R2, MacAddr::BROADCAST]),
        l3.clone(),
    )
        .prop_map(|((ing, mac, vlans, src), dst_mac, mut l3)| {
            if let L3Spec::Ip { src: s, .. } = &mut l3 {
                *s = src.into();
            }
            (
                ing,
                PacketSpec {
                    eth_src: mac,
                    eth_dst: dst_mac,
                    vlans,
                    l3,
                },
            )
        });
    let random = (0usize..5, macs.clone(), macs, vlans, l3).prop_map(|(ing, s, d, vlans, l3)| {
        (
            ing,
            PacketSpec {
                eth_src: s,
                eth_dst: d,
                vlans,
                l3,
            },
        )
    });
    prop_oneof![6 => consistent, 1 => random]
}

fn ingress_of(w: &World, i: usize) -> Ingress {
    match i {
        0 => w.vif("tap-a"),
        1 => w.vif("tap-b"),
        2 => w.vif("tap-d"),
        3 => w.tunnel(1001),
        _ => Ingress::Port(w.l.port_id("c").unwrap()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The executor never panics on random bytes from any ingress.
    #[test]
    fn execute_never_panics_on_random_bytes(i in 0usize..7, bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut w = World::new();
        let ingress = match i {
            5 => Ingress::Tunnel { vni: 77, remote: H2.into() },
            6 => Ingress::Vif(VifId(99)),
            i => ingress_of(&w, i),
        };
        let _ = w.run(ingress, &bytes);
    }

    /// Nor on mutated realistic frames.
    #[test]
    fn execute_never_panics_on_mutated_frames((i, spec) in arb_case(), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4)) {
        let mut w = World::new();
        let mut f = spec.build();
        for (at, x) in flips {
            let n = f.len();
            f[at % n] ^= x;
        }
        let out = w.run(ingress_of(&w, i), &f);
        let _ = out.verdict(&w.l).to_string();
    }

}

proptest! {
    // Most random cases end in drops; run enough that a few hundred forward.
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    /// Applying the decision of packet 1 to packet 2 (same flow key, other payload) gives the
    /// same outputs and conntrack effects as executing packet 2, or is refused as stale.
    #[test]
    fn apply_equals_execute((i, spec) in arb_case(), first_payload in prop::collection::vec(any::<u8>(), 0..1500), warmup in any::<bool>()) {
        let mut w = World::new();
        let ingress = ingress_of(&w, i);
        let second = spec.build();
        let mut first_spec = spec.clone();
        if let L3Spec::Ip { l4: L4Spec::Tcp { payload, .. } | L4Spec::Udp { payload, .. } | L4Spec::Icmp { payload, .. }, .. } = &mut first_spec.l3 {
            *payload = first_payload;
        }
        let first = first_spec.build();
        if warmup {
            let _ = w.run(ingress, &first);
        }
        let out1 = w.run(ingress, &first);
        let Some(d) = out1.decision else { return Ok(()) };
        if parse(&second).map(|p| p.key) != parse(&first).map(|p| p.key) {
            return Ok(());
        }
        let mut ct_exec = w.ct.clone();
        let mut ct_apply = w.ct.clone();
        let full = execute(&w.l, &mut ct_exec, ingress, &second, w.now, &ExecOptions::default());
        match apply_collect(&w, &d, &mut ct_apply, &second) {
            Ok(got) => {
                let want: Vec<(Target, Vec<u8>)> = full.outputs.iter().map(|o| (o.target, o.bytes.clone())).collect();
                prop_assert_eq!(got, want);
                prop_assert!(full.generated.is_empty() && full.handoffs.is_empty());
                prop_assert_eq!(&d.logs, &full.logs);
                let mut a = ct_apply.connections(w.now);
                let mut b = ct_exec.connections(w.now);
                a.sort_by_key(|c| format!("{c:?}"));
                b.sort_by_key(|c| format!("{c:?}"));
                prop_assert_eq!(a, b);
            }
            Err(_) => {
                prop_assert_eq!(ct_apply.stats(), w.ct.stats());
            }
        }
    }
}
