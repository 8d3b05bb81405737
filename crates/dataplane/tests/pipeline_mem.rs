//! The pipeline processor in memory, on programs the real compiler made from
//! real intent (`world`): what goes where, what is answered, what is cached,
//! super-frames against the MTU, program swaps, and bounded memory under a
//! flood of new flows. No sockets or TAPs: frames go straight into
//! `PacketProcessor::process`, as the forwarder's workers hand them.

mod world;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weft_dataplane::pipeline::{PipelineConfig, PipelineShared, ProgramState};
use weft_dataplane::vnet::{CsumOffload, Gso, GsoKind};
use weft_dataplane::{Endpoint, Input, Offload, OutputSink, PacketProcessor, VifId, Vni};
use weft_pipeline::MacAddr;
use weft_pipeline::exec::ConntrackConfig;
use weft_pipeline::wire::build::{L3Spec, L4Spec, PacketSpec};
use weft_pipeline::wire::parse;
use world::{UL_A, UL_B, World};

/// One host's pipeline with TAP slots given in the program's vif order.
struct Rig {
    shared: Arc<PipelineShared>,
    proc: weft_dataplane::PipelineProcessor,
    slots: HashMap<String, VifId>,
    sink: OutputSink,
    t0: Instant,
    now: Duration,
}

/// What one frame produced.
#[derive(Debug)]
struct Out {
    forwards: Vec<Endpoint>,
    /// The input buffer after processing (what `forwards` send).
    frame: Vec<u8>,
    emitted: Vec<(Endpoint, Vec<u8>, Offload)>,
}

impl Out {
    fn only_emitted(&self) -> (Endpoint, &[u8]) {
        assert!(self.forwards.is_empty(), "{self:?}");
        assert_eq!(self.emitted.len(), 1, "{self:?}");
        (self.emitted[0].0, &self.emitted[0].1)
    }
}

impl Rig {
    fn new(w: &World, host: &str, cfg: PipelineConfig) -> Rig {
        let shared = PipelineShared::new(cfg);
        let proc = shared.processor();
        let mut r = Rig {
            shared,
            proc,
            slots: HashMap::new(),
            sink: OutputSink::new(),
            t0: Instant::now(),
            now: Duration::from_secs(1),
        };
        r.swap(w, host);
        r
    }

    fn swap(&mut self, w: &World, host: &str) -> u64 {
        let (program, services) = w.program(host);
        let loaded = weft_pipeline::exec::Loaded::load(&program).expect("program loads");
        for (_, vif) in loaded.vifs() {
            let n = self.slots.len() as u32;
            self.slots.entry(vif.to_string()).or_insert(VifId(n));
        }
        let slots = self.slots.clone();
        let st = ProgramState::new(loaded, services, |v| slots.get(v).copied());
        let generation = st.generation();
        self.shared.swap(st);
        generation
    }

    fn slot(&self, w: &World, vm: &str) -> VifId {
        self.slots[&w.vm(vm).vif]
    }

    fn send_with(&mut self, from: Endpoint, frame: &[u8], offload: Offload) -> Out {
        let mut buf = frame.to_vec();
        self.sink.clear();
        self.now += Duration::from_millis(1);
        self.proc.process(
            Input {
                from,
                frame: &mut buf,
                offload,
                now: self.t0 + self.now,
            },
            &mut self.sink,
        );
        Out {
            forwards: self.sink.forwards().to_vec(),
            frame: buf,
            emitted: self
                .sink
                .emitted_with_offload()
                .map(|(e, f, o)| (e, f.to_vec(), *o))
                .collect(),
        }
    }

    fn send(&mut self, from: Endpoint, frame: &[u8]) -> Out {
        self.send_with(from, frame, Offload::NONE)
    }

    fn counters(&self) -> weft_dataplane::pipeline::PipelineCounterStats {
        self.shared.stats().counters
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn vni_of(w: &World, host: &str, vm: &str) -> Vni {
    // The VNI of the VM's network datapath, from the program.
    let (p, _) = w.program(host);
    let port = p
        .ports
        .iter()
        .find(|x| x.name == w.vm(vm).port)
        .expect("port in program");
    let dp = p
        .datapaths
        .iter()
        .find(|d| d.name == port.datapath)
        .unwrap();
    Vni::new(dp.vni).unwrap()
}

fn udp(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: &str,
    dst: &str,
    sport: u16,
    dport: u16,
) -> Vec<u8> {
    PacketSpec {
        eth_src: src_mac,
        eth_dst: dst_mac,
        vlans: vec![],
        l3: L3Spec::Ip {
            src: ip(src),
            dst: ip(dst),
            ttl: 64,
            l4: L4Spec::Udp {
                src: sport,
                dst: dport,
                payload: b"hello".to_vec(),
            },
        },
    }
    .build()
}

#[allow(clippy::too_many_arguments)]
fn tcp(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: &str,
    dst: &str,
    sport: u16,
    dport: u16,
    flags: u16,
    payload: Vec<u8>,
) -> Vec<u8> {
    PacketSpec {
        eth_src: src_mac,
        eth_dst: dst_mac,
        vlans: vec![],
        l3: L3Spec::Ip {
            src: ip(src),
            dst: ip(dst),
            ttl: 64,
            l4: L4Spec::Tcp {
                src: sport,
                dst: dport,
                flags,
                seq: 1000,
                ack: 0,
                payload,
            },
        },
    }
    .build()
}

const SYN: u16 = 0x002;
const ACK: u16 = 0x010;
const RST: u16 = 0x004;

/// The IPv4 header checksum of a frame's IP header is valid.
fn ipv4_checksum_ok(f: &[u8]) -> bool {
    let ihl = usize::from(f[14] & 0x0f) * 4;
    let mut sum: u32 = 0;
    for c in f[14..14 + ihl].chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

#[test]
fn arp_and_ping_for_the_gateway_are_answered() {
    let w = World::two_hosts();
    let mut r = Rig::new(&w, "host-a", PipelineConfig::default());
    let a1 = w.vm("a1").clone();
    let rmac = w.router_mac("host-a");
    let arp = PacketSpec {
        eth_src: a1.mac,
        eth_dst: MacAddr::BROADCAST,
        vlans: vec![],
        l3: L3Spec::Arp {
            op: 1,
            sha: a1.mac,
            spa: a1.ip.parse().unwrap(),
            tha: MacAddr::ZERO,
            tpa: "10.1.0.1".parse().unwrap(),
        },
    }
    .build();
    let slot = r.slot(&w, "a1");
    let o = r.send(Endpoint::Tap(slot), &arp);
    let reply = o
        .emitted
        .iter()
        .find(|(e, _, _)| *e == Endpoint::Tap(slot))
        .expect("an ARP reply to a1");
    let p = parse(&reply.1).unwrap();
    assert_eq!(p.key.arp_op, 2);
    assert_eq!(p.key.arp_sha, rmac);
    assert_eq!(p.key.eth_dst, a1.mac);

    let ping = PacketSpec {
        eth_src: a1.mac,
        eth_dst: rmac,
        vlans: vec![],
        l3: L3Spec::Ip {
            src: ip(a1.ip),
            dst: ip("10.1.0.1"),
            ttl: 64,
            l4: L4Spec::Icmp {
                ty: 8,
                code: 0,
                rest: [0, 7, 0, 1],
                payload: vec![0xab; 56],
            },
        },
    }
    .build();
    let o = r.send(Endpoint::Tap(slot), &ping);
    let (to, f) = o.only_emitted();
    assert_eq!(to, Endpoint::Tap(slot));
    let p = parse(f).unwrap();
    assert_eq!((p.key.icmp_type, p.key.ip_src), (0, ip("10.1.0.1")));
    assert!(r.counters().generated >= 2);
}

#[test]
fn switched_and_routed_frames_reach_the_right_tunnel_and_are_cached() {
    let w = World::two_hosts();
    let mut r = Rig::new(&w, "host-a", PipelineConfig::default());
    let (a1, b1, b2) = (w.vm("a1").clone(), w.vm("b1").clone(), w.vm("b2").clone());
    let slot = r.slot(&w, "a1");
    let to_b = |vm: &str| Endpoint::Tunnel {
        remote: ip(UL_B),
        vni: vni_of(&w, "host-a", vm),
    };

    // Same subnet, other host: the frame goes unchanged to host B on net1's VNI.
    let f = udp(a1.mac, b1.mac, a1.ip, b1.ip, 4000, 5000);
    let o = r.send(Endpoint::Tap(slot), &f);
    assert_eq!(o.forwards, [to_b("b1")], "{o:?}");
    assert_eq!(o.frame, f, "switching rewrites nothing");
    // The second frame finds its connection committed (new → est): the
    // first decision is refused as stale and the tables are walked again;
    // from the third frame on the cached decision applies.
    let o = r.send(Endpoint::Tap(slot), &f);
    assert_eq!(o.forwards, [to_b("b1")]);
    assert_eq!(r.counters().cache_stale, 1);
    let before = r.counters();
    let o = r.send(Endpoint::Tap(slot), &f);
    assert_eq!(o.forwards, [to_b("b1")]);
    let after = r.counters();
    assert_eq!(
        after.cache_hits,
        before.cache_hits + 1,
        "third frame is a hit"
    );
    assert_eq!(after.cache_misses, before.cache_misses);

    // Routed: to the router MAC, out on net2's VNI with MACs rewritten and TTL-1.
    let rmac = w.router_mac("host-a");
    let f = udp(a1.mac, rmac, a1.ip, b2.ip, 4001, 5001);
    for round in 0..3 {
        let o = r.send(Endpoint::Tap(slot), &f);
        assert_eq!(o.forwards, [to_b("b2")], "round {round}: {o:?}");
        let p = parse(&o.frame).unwrap();
        assert_eq!((p.key.eth_src, p.key.eth_dst), (rmac, b2.mac));
        assert_eq!(p.key.ip_ttl, 63);
        assert!(ipv4_checksum_ok(&o.frame));
    }
    let c = r.counters();
    assert!(c.cache_hits >= 2, "{c:?}");
    assert_eq!(c.cache_stale, 2, "once per new connection");
}

#[test]
fn tunnel_frames_reach_the_vm_and_strangers_are_dropped() {
    let w = World::two_hosts();
    let mut r = Rig::new(&w, "host-b", PipelineConfig::default());
    let (a1, b1) = (w.vm("a1").clone(), w.vm("b1").clone());
    let vni = vni_of(&w, "host-b", "b1");
    let syn = tcp(a1.mac, b1.mac, a1.ip, b1.ip, 40000, 80, SYN, vec![]);
    let o = r.send(
        Endpoint::Tunnel {
            remote: ip(UL_A),
            vni,
        },
        &syn,
    );
    assert_eq!(o.forwards, [Endpoint::Tap(r.slot(&w, "b1"))], "{o:?}");

    let o = r.send(
        Endpoint::Tunnel {
            remote: ip("192.0.2.99"),
            vni,
        },
        &syn,
    );
    assert!(o.forwards.is_empty() && o.emitted.is_empty());
    assert_eq!(r.counters().drop_unknown_peer, 1);

    // Default deny: port 8080 is not allowed by b1's group.
    let syn = tcp(a1.mac, b1.mac, a1.ip, b1.ip, 40001, 8080, SYN, vec![]);
    let o = r.send(
        Endpoint::Tunnel {
            remote: ip(UL_A),
            vni,
        },
        &syn,
    );
    assert!(o.forwards.is_empty() && o.emitted.is_empty(), "{o:?}");
    assert!(r.counters().drop_by_flow + r.counters().drop_cached >= 1);

    // Reject: a RST goes back through the tunnel it came from.
    let syn = tcp(a1.mac, b1.mac, a1.ip, b1.ip, 40002, 23, SYN, vec![]);
    let from = Endpoint::Tunnel {
        remote: ip(UL_A),
        vni,
    };
    let o = r.send(from, &syn);
    let (to, f) = o.only_emitted();
    assert_eq!(to, from);
    let p = parse(f).unwrap();
    assert_eq!(p.key.tcp_flags & RST, RST);
    assert_eq!((p.key.ip_src, p.key.l4_src), (ip(b1.ip), 23));
}

/// A DHCPDISCOVER from `mac`.
fn dhcp_discover(mac: MacAddr) -> Vec<u8> {
    let mut m = vec![0u8; 236];
    m[0] = 1; // BOOTREQUEST
    m[1] = 1; // Ethernet
    m[2] = 6;
    m[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    m[10] = 0x80; // broadcast flag
    m[28..34].copy_from_slice(&mac.0);
    m.extend_from_slice(&[99, 130, 83, 99]); // magic cookie
    m.extend_from_slice(&[53, 1, 1]); // DISCOVER
    m.extend_from_slice(&[55, 4, 1, 3, 6, 26]); // mask, router, dns, mtu
    m.push(255);
    PacketSpec {
        eth_src: mac,
        eth_dst: MacAddr::BROADCAST,
        vlans: vec![],
        l3: L3Spec::Ip {
            src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            dst: IpAddr::V4(Ipv4Addr::BROADCAST),
            ttl: 64,
            l4: L4Spec::Udp {
                src: 68,
                dst: 67,
                payload: m,
            },
        },
    }
    .build()
}

/// The DHCP options of a reply frame (UDP payload after the cookie).
fn dhcp_options(frame: &[u8]) -> HashMap<u8, Vec<u8>> {
    let p = parse(frame).unwrap();
    let l4 = p.layout.l4.unwrap();
    let bootp = &frame[l4 + 8..];
    let mut opts = HashMap::new();
    let mut i = 240;
    while i < bootp.len() && bootp[i] != 255 {
        if bootp[i] == 0 {
            i += 1;
            continue;
        }
        let (code, len) = (bootp[i], usize::from(bootp[i + 1]));
        opts.insert(code, bootp[i + 2..i + 2 + len].to_vec());
        i += 2 + len;
    }
    opts.insert(0, bootp[16..20].to_vec()); // yiaddr under code 0
    opts
}

#[test]
fn dhcp_and_dns_are_answered_on_the_host() {
    let w = World::two_hosts();
    let mut r = Rig::new(&w, "host-a", PipelineConfig::default());
    let a3 = w.vm("a3").clone();
    let slot = r.slot(&w, "a3");
    let o = r.send(Endpoint::Tap(slot), &dhcp_discover(a3.mac));
    let (to, f) = o.only_emitted();
    assert_eq!(to, Endpoint::Tap(slot));
    let opts = dhcp_options(f);
    assert_eq!(opts[&0], [10, 1, 0, 13], "yiaddr");
    assert_eq!(opts[&53], [2], "OFFER");
    assert_eq!(opts[&3], [10, 1, 0, 1], "router");
    assert_eq!(opts[&26], 1450u16.to_be_bytes(), "MTU");
    assert_eq!(r.counters().service_replies, 1);

    // DNS: b1's name in net1's domain, asked on the gateway.
    let name = format!("b1.{}", w.domain(&w.net1));
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let rmac = w.router_mac("host-a");
    let f = PacketSpec {
        eth_src: a3.mac,
        eth_dst: rmac,
        vlans: vec![],
        l3: L3Spec::Ip {
            src: ip(a3.ip),
            dst: ip("10.1.0.1"),
            ttl: 64,
            l4: L4Spec::Udp {
                src: 33333,
                dst: 53,
                payload: q,
            },
        },
    }
    .build();
    let o = r.send(Endpoint::Tap(slot), &f);
    let (to, reply) = o.only_emitted();
    assert_eq!(to, Endpoint::Tap(slot));
    // The answer's last four bytes are b1's address (one A record).
    assert_eq!(&reply[reply.len() - 4..], &[10, 1, 0, 21], "{reply:02x?}");
}

/// A TCP super-frame of `total` bytes as a guest's TSO hands it over.
fn tso_frame(src_mac: MacAddr, dst_mac: MacAddr, src: &str, dst: &str, total: usize) -> Vec<u8> {
    tcp(
        src_mac,
        dst_mac,
        src,
        dst,
        40100,
        5201,
        ACK,
        vec![0x5a; total - 54],
    )
}

fn tso(size: u16) -> Offload {
    Offload {
        csum: Some(CsumOffload {
            start: 34,
            offset: 16,
        }),
        gso: Some(Gso {
            kind: GsoKind::Tcp4,
            size,
            hdr_len: 54,
            ecn: false,
        }),
        data_valid: false,
    }
}

#[test]
fn superframes_meet_the_mtu_per_segment() {
    let w = World::two_hosts();
    let mut r = Rig::new(&w, "host-a", PipelineConfig::default());
    let (a1, b2) = (w.vm("a1").clone(), w.vm("b2").clone());
    let rmac = w.router_mac("host-a");
    let slot = r.slot(&w, "a1");
    let to_b2 = Endpoint::Tunnel {
        remote: ip(UL_B),
        vni: vni_of(&w, "host-a", "b2"),
    };
    // Open the connection (stateful group: the SYN commits it).
    let syn = tcp(a1.mac, rmac, a1.ip, b2.ip, 40100, 5201, SYN, vec![]);
    assert_eq!(r.send(Endpoint::Tap(slot), &syn).forwards, [to_b2]);

    // A 30000-byte super-frame of 1398-byte segments (MTU 1450 guest) is
    // routed whole: each segment's L3 length is 1438.
    let big = tso_frame(a1.mac, rmac, a1.ip, b2.ip, 30_000);
    for round in 0..2 {
        let o = r.send_with(Endpoint::Tap(slot), &big, tso(1398));
        assert_eq!(o.forwards, [to_b2], "round {round}: {o:?}");
        assert!(o.emitted.is_empty(), "no ICMP error for a super-frame");
        let p = parse(&o.frame).unwrap();
        assert_eq!(
            (p.key.eth_src, p.key.eth_dst, p.key.ip_ttl),
            (rmac, b2.mac, 63)
        );
        assert_eq!(u16::from_be_bytes([o.frame[16], o.frame[17]]), 30_000 - 14);
        assert!(ipv4_checksum_ok(&o.frame), "header checksum recomputed");
        assert_eq!(&o.frame[54..], &big[54..], "payload untouched");
    }
    assert!(r.counters().gso_frames >= 2);
    assert!(
        r.counters().cache_hits >= 1,
        "super-frames hit the cache too"
    );

    // The same data in 1460-byte segments (a guest with MTU 1500): each
    // segment is 1500 bytes at L3, too big for the VRF's 1450: answered.
    let o = r.send_with(Endpoint::Tap(slot), &big, tso(1460));
    let (to, f) = o.only_emitted();
    assert_eq!(to, Endpoint::Tap(slot));
    let p = parse(f).unwrap();
    assert_eq!(
        (p.key.icmp_type, p.key.icmp_code),
        (3, 4),
        "fragmentation needed"
    );
    let l4 = p.layout.l4.unwrap();
    assert_eq!(
        u16::from_be_bytes([f[l4 + 6], f[l4 + 7]]),
        1450,
        "next-hop MTU"
    );

    // A single 1500-byte frame is answered the same way.
    let one = tso_frame(a1.mac, rmac, a1.ip, b2.ip, 1514);
    let o = r.send(Endpoint::Tap(slot), &one);
    let (_, f) = o.only_emitted();
    assert_eq!(parse(f).unwrap().key.icmp_type, 3);
}

#[test]
fn a_new_program_is_never_served_from_the_old_cache() {
    let mut w = World::two_hosts();
    let mut r = Rig::new(&w, "host-b", PipelineConfig::default());
    let (a1, b1) = (w.vm("a1").clone(), w.vm("b1").clone());
    let vni = vni_of(&w, "host-b", "b1");
    let from = Endpoint::Tunnel {
        remote: ip(UL_A),
        vni,
    };
    let syn = tcp(a1.mac, b1.mac, a1.ip, b1.ip, 41000, 8080, SYN, vec![]);
    for _ in 0..3 {
        assert!(r.send(from, &syn).forwards.is_empty(), "8080 denied");
    }
    assert!(r.counters().cache_hits >= 2, "the drop was cached");
    // Allow 8080 in b1's group; the new program must be used at once.
    let web = w.web_sg.clone();
    w.update(
        weft_model::Kind::SecurityGroup,
        &web,
        serde_json::json!({"rules": [
            {"direction": "ingress", "protocol": "tcp", "port_range_min": 80},
            {"direction": "ingress", "protocol": "tcp", "port_range_min": 8080},
            {"direction": "egress"}]}),
    );
    let g1 = r.shared.stats().generation;
    let g2 = r.swap(&w, "host-b");
    assert_ne!(g1, g2);
    let misses = r.counters().cache_misses;
    let o = r.send(from, &syn);
    assert_eq!(o.forwards, [Endpoint::Tap(r.slot(&w, "b1"))], "{o:?}");
    assert_eq!(
        r.counters().cache_misses,
        misses + 1,
        "walked the new program"
    );
    assert_eq!(r.shared.stats().swaps, 2);
    assert_eq!(r.shared.stats().generation, g2);
}

#[test]
fn a_flood_of_new_flows_stays_within_the_limits() {
    const FLOWS: u32 = 200_000;
    let w = World::two_hosts();
    let cfg = PipelineConfig {
        flow_cache_entries: 4096,
        conntrack: ConntrackConfig {
            max_entries: 10_000,
            ..ConntrackConfig::default()
        },
        ..PipelineConfig::default()
    };
    let mut r = Rig::new(&w, "host-a", cfg);
    let (a1, b2) = (w.vm("a1").clone(), w.vm("b2").clone());
    let rmac = w.router_mac("host-a");
    let slot = r.slot(&w, "a1");
    let mut f = udp(a1.mac, rmac, a1.ip, b2.ip, 1, 1);
    let l4 = parse(&f).unwrap().layout.l4.unwrap();
    let mut forwarded = 0u32;
    for i in 0..FLOWS {
        // Distinct 5-tuples: both ports vary (UDP checksum is not checked).
        f[l4..l4 + 2].copy_from_slice(&((i >> 16) as u16 + 1).to_be_bytes());
        f[l4 + 2..l4 + 4].copy_from_slice(&(i as u16).to_be_bytes());
        if !r.send(Endpoint::Tap(slot), &f).forwards.is_empty() {
            forwarded += 1;
        }
        assert!(r.proc.cache_len() <= 4096);
    }
    assert_eq!(forwarded, FLOWS, "every new flow is forwarded");
    let s = r.shared.stats();
    let c = &s.counters;
    assert_eq!(c.cache_entries, 4096, "{s}");
    assert!(c.cache_evictions >= u64::from(FLOWS) - 4096, "{s}");
    assert!(s.conntrack_entries <= 10_000, "{s}");
    assert!(s.conntrack.evictions >= u64::from(FLOWS) - 10_000, "{s}");
    assert_eq!(s.conntrack_max, 10_000);
    let text = s.to_string();
    assert!(text.contains("pipeline.cache_evictions="), "{text}");
    assert!(text.contains("conntrack.evictions="), "{text}");
}

#[test]
fn tagged_superframes_keep_their_offload_state_across_vlan_changes() {
    // A service function's vNIC with a VLAN 10 interface on net1, on host-a.
    let mut w = World::two_hosts();
    let p = w.project.clone();
    let sf = w.create(
        weft_model::Kind::InstancePort,
        Some(&p),
        serde_json::json!({"name": "sf", "host": "host-a"}),
    );
    let sf10 = w.create(
        weft_model::Kind::Interface,
        Some(&p),
        serde_json::json!({"name": "sf.10", "parent": sf, "vlan": 10}),
    );
    let open = w
        .intent
        .security_groups()
        .iter()
        .find(|(_, g)| g.name == "open")
        .map(|(id, _)| id.clone())
        .unwrap();
    let net1 = w.net1.clone();
    w.create(
        weft_model::Kind::ServicePort,
        Some(&p),
        serde_json::json!({"name": "sf-a", "interface": sf10, "service": net1, "fixed_ips": [{"ip": "10.1.0.50"}], "security_groups": [open]}),
    );
    let sf_mac = weft_pipeline::MacAddr(w.intent.instance_ports()[&sf].mac.0);
    let b1 = w.vm("b1").clone();
    let mut r = Rig::new(&w, "host-a", PipelineConfig::default());
    let slot = r.slots[sf.as_str()];
    let tagged = |f: &[u8]| {
        let mut t = f[..12].to_vec();
        t.extend_from_slice(&[0x81, 0x00, 0x00, 10]);
        t.extend_from_slice(&f[12..]);
        t
    };
    let to_b = Endpoint::Tunnel {
        remote: ip(UL_B),
        vni: vni_of(&w, "host-a", "b1"),
    };
    // SF opens a connection to b1:80 on its VLAN 10 interface.
    let syn = tagged(&tcp(
        sf_mac,
        b1.mac,
        "10.1.0.50",
        b1.ip,
        40000,
        80,
        SYN,
        vec![],
    ));
    let o = r.send(Endpoint::Tap(slot), &syn);
    assert_eq!(o.emitted.len(), 1, "{o:?}");
    assert_eq!(o.emitted[0].0, to_b);
    // A tagged super-frame: the tag is stripped, offsets move back by 4.
    let big = tso_frame(sf_mac, b1.mac, "10.1.0.50", b1.ip, 20_000);
    let mut big_tagged = tagged(&big);
    // Same ports as the SYN.
    big_tagged[38..40].copy_from_slice(&40000u16.to_be_bytes());
    big_tagged[40..42].copy_from_slice(&80u16.to_be_bytes());
    let mut off = tso(1398);
    off.csum = Some(CsumOffload {
        start: 38,
        offset: 16,
    });
    off.gso.as_mut().unwrap().hdr_len = 58;
    let o = r.send_with(Endpoint::Tap(slot), &big_tagged, off);
    assert_eq!(o.emitted.len(), 1, "{:?}", o.forwards);
    let (to, f, fo) = &o.emitted[0];
    assert_eq!(*to, to_b);
    assert_eq!(f.len(), big_tagged.len() - 4);
    assert_eq!(&f[12..14], &[0x08, 0x00], "untagged");
    assert_eq!(
        u16::from_be_bytes([f[16], f[17]]),
        20_000 - 14,
        "total length restored"
    );
    assert!(ipv4_checksum_ok(f));
    assert_eq!(&f[54..], &big_tagged[58..], "payload");
    assert_eq!(fo.csum.unwrap().start, 34);
    assert_eq!(fo.gso.unwrap().hdr_len, 54);
    assert_eq!(fo.gso.unwrap().size, 1398);

    // b1's answer as a super-frame from the tunnel: tag pushed, offsets +4.
    let mut back = tso_frame(b1.mac, sf_mac, b1.ip, "10.1.0.50", 20_000);
    back[34..36].copy_from_slice(&80u16.to_be_bytes());
    back[36..38].copy_from_slice(&40000u16.to_be_bytes());
    let o = r.send_with(
        Endpoint::Tunnel {
            remote: ip(UL_B),
            vni: vni_of(&w, "host-a", "b1"),
        },
        &back,
        tso(1398),
    );
    assert_eq!(o.emitted.len(), 1, "{o:?}");
    let (to, f, fo) = &o.emitted[0];
    assert_eq!(*to, Endpoint::Tap(slot));
    assert_eq!(
        &f[12..16],
        &[0x81, 0x00, 0x00, 10],
        "tagged for the VLAN 10 interface"
    );
    assert_eq!(u16::from_be_bytes([f[20], f[21]]), 20_000 - 14);
    assert!(ipv4_checksum_ok(&f[4..]));
    assert_eq!(&f[58..], &back[54..]);
    assert_eq!(fo.csum.unwrap().start, 38);
    assert_eq!(fo.gso.unwrap().hdr_len, 58);
}

#[test]
fn logged_rules_are_counted_on_every_packet_and_kept_in_the_ring() {
    let mut w = World::two_hosts();
    let web = w.web_sg.clone();
    w.update(
        weft_model::Kind::SecurityGroup,
        &web,
        serde_json::json!({"rules": [
            {"direction": "ingress", "protocol": "tcp", "port_range_min": 8443, "log": true},
            {"direction": "ingress", "protocol": "tcp", "port_range_min": 6666, "action": "drop", "log": true},
            {"direction": "egress"}]}),
    );
    let mut r = Rig::new(&w, "host-b", PipelineConfig::default());
    let (a1, b1) = (w.vm("a1").clone(), w.vm("b1").clone());
    let from = Endpoint::Tunnel {
        remote: ip(UL_A),
        vni: vni_of(&w, "host-b", "b1"),
    };
    // Allowed and logged: each new connection is logged once.
    for sport in 41000..41003 {
        let syn = tcp(a1.mac, b1.mac, a1.ip, b1.ip, sport, 8443, SYN, vec![]);
        assert_eq!(r.send(from, &syn).forwards.len(), 1);
    }
    // Dropped and logged: every packet, cached decisions included.
    let bad = tcp(a1.mac, b1.mac, a1.ip, b1.ip, 41010, 6666, SYN, vec![]);
    for _ in 0..4 {
        assert!(r.send(from, &bad).forwards.is_empty());
    }
    // Not logged: denied by default.
    let other = tcp(a1.mac, b1.mac, a1.ip, b1.ip, 41001, 9999, SYN, vec![]);
    assert!(r.send(from, &other).forwards.is_empty());
    let s = r.shared.stats();
    assert!(
        s.counters.cache_hits >= 2,
        "the drop was served from the cache: {s}"
    );
    assert_eq!(s.counters.logs, 7, "{s}");
    assert_eq!(s.logs.len(), 2, "{s}");
    let mut counts: Vec<u64> = s.logs.values().copied().collect();
    counts.sort();
    assert_eq!(counts, [3, 4]);
    for (rule, n) in &s.logs {
        assert!(s.to_string().contains(&format!("log.{rule}={n}\n")), "{s}");
    }
    let ring = r.shared.recent_logs();
    assert_eq!(ring.len(), 7);
    assert_eq!(
        ring.iter().filter(|e| e.flow.contains(":6666")).count(),
        4,
        "{ring:?}"
    );
}
