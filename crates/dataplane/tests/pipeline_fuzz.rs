//! The packet path never panics on hostile input: random bytes and mutated
//! real frames, with random offload metadata (checksum offsets, GSO types and
//! sizes), from every TAP slot (mapped or not) and from tunnels (known and
//! unknown peers, known and random VNIs), into processors running the real
//! compiled programs of both hosts. Every output must also survive the
//! forwarder's segmentation code, and go only to TAPs the program maps or to
//! tunnel peers the program knows.

mod world;

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use weft_dataplane::pipeline::{PipelineConfig, PipelineShared, ProgramState};
use weft_dataplane::vnet::{CsumOffload, Gso, GsoKind};
use weft_dataplane::{
    Endpoint, Input, Offload, OutputSink, PacketProcessor, PipelineProcessor, VifId, Vni, gso,
};
use weft_pipeline::MacAddr;
use weft_pipeline::wire::build::{L3Spec, L4Spec, PacketSpec};
use world::{UL_A, UL_B, World};

struct Host {
    proc: PipelineProcessor,
    shared: Arc<PipelineShared>,
    slots: usize,
    vnis: Vec<u32>,
    peers: HashSet<IpAddr>,
    t0: Instant,
    n: u64,
}

struct Fixture {
    hosts: Vec<Mutex<Host>>,
    templates: Vec<Vec<u8>>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let w = World::two_hosts();
        let hosts = ["host-a", "host-b"]
            .iter()
            .map(|h| {
                let (program, services) = w.program(h);
                let vnis = program.datapaths.iter().map(|d| d.vni).collect();
                let shared = PipelineShared::new(PipelineConfig {
                    flow_cache_entries: 64,
                    ..PipelineConfig::default()
                });
                let loaded = weft_pipeline::exec::Loaded::load(&program).unwrap();
                let names: Vec<String> = loaded.vifs().map(|(_, n)| n.to_string()).collect();
                let st = ProgramState::new(loaded, services, |v| {
                    names.iter().position(|n| n == v).map(|i| VifId(i as u32))
                });
                let peers = st.peers().clone();
                shared.swap(st);
                Mutex::new(Host {
                    proc: shared.processor(),
                    shared,
                    slots: names.len(),
                    vnis,
                    peers,
                    t0: Instant::now(),
                    n: 0,
                })
            })
            .collect();
        let (a1, b1, b2) = (w.vm("a1").clone(), w.vm("b1").clone(), w.vm("b2").clone());
        let rmac = w.router_mac("host-a");
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let spec = |dst_mac: MacAddr, dst: &str, l4: L4Spec, vlans: Vec<u16>| {
            PacketSpec {
                eth_src: a1.mac,
                eth_dst: dst_mac,
                vlans,
                l3: L3Spec::Ip {
                    src: ip(a1.ip),
                    dst: ip(dst),
                    ttl: 64,
                    l4,
                },
            }
            .build()
        };
        let tcp = |flags, payload: usize| L4Spec::Tcp {
            src: 40000,
            dst: 80,
            flags,
            seq: 1,
            ack: 1,
            payload: vec![7; payload],
        };
        let udp = |dport, payload: Vec<u8>| L4Spec::Udp {
            src: 33333,
            dst: dport,
            payload,
        };
        let templates = vec![
            spec(b1.mac, b1.ip, tcp(0x002, 0), vec![]),
            spec(rmac, b2.ip, tcp(0x010, 3000), vec![]),
            spec(rmac, b2.ip, udp(5000, vec![1; 100]), vec![]),
            spec(
                rmac,
                "10.1.0.1",
                udp(
                    53,
                    vec![
                        0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, b'a', 0, 0, 1, 0, 1,
                    ],
                ),
                vec![],
            ),
            spec(b1.mac, b1.ip, udp(67, vec![1; 300]), vec![100]),
            spec(
                rmac,
                "10.1.0.1",
                L4Spec::Icmp {
                    ty: 8,
                    code: 0,
                    rest: [0, 1, 0, 1],
                    payload: vec![0; 64],
                },
                vec![],
            ),
            PacketSpec {
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
            .build(),
            PacketSpec {
                eth_src: a1.mac,
                eth_dst: MacAddr::new(0x33, 0x33, 0, 0, 0, 2),
                vlans: vec![],
                l3: L3Spec::Ip {
                    src: ip("fe80::1"),
                    dst: ip("ff02::2"),
                    ttl: 255,
                    l4: L4Spec::Icmp {
                        ty: 133,
                        code: 0,
                        rest: [0; 4],
                        payload: vec![1, 1, 2, 0, 0, 0, 0xa, 1],
                    },
                },
            }
            .build(),
        ];
        Fixture { hosts, templates }
    })
}

#[derive(Debug, Clone)]
enum From {
    Tap(usize),
    Tunnel {
        remote: u8,
        vni: Option<usize>,
        random_vni: u32,
    },
}

fn from_strategy() -> impl Strategy<Value = From> {
    prop_oneof![
        (0usize..8).prop_map(From::Tap),
        (0u8..3, proptest::option::of(0usize..8), 0u32..0x00ff_ffff).prop_map(
            |(remote, vni, random_vni)| From::Tunnel {
                remote,
                vni,
                random_vni
            }
        ),
    ]
}

fn offload_strategy() -> impl Strategy<Value = Offload> {
    let csum = proptest::option::of(
        (0u16..2000, 0u16..64).prop_map(|(start, offset)| CsumOffload { start, offset }),
    );
    let gso = proptest::option::of((0u8..3, 0u16..3000, 0u16..200, any::<bool>()).prop_map(
        |(k, size, hdr_len, ecn)| Gso {
            kind: [GsoKind::Tcp4, GsoKind::Tcp6, GsoKind::UdpL4][usize::from(k)],
            size,
            hdr_len,
            ecn,
        },
    ));
    (csum, gso, any::<bool>()).prop_map(|(csum, gso, data_valid)| Offload {
        csum,
        gso,
        data_valid,
    })
}

/// A frame: random bytes, or a template with bytes flipped and cut.
fn frame_strategy() -> impl Strategy<Value = Vec<u8>> {
    let n = fixture().templates.len();
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..1600),
        (
            0..n,
            proptest::collection::vec((any::<u16>(), any::<u8>()), 0..6),
            proptest::option::of(any::<u16>())
        )
            .prop_map(move |(t, flips, cut)| {
                let mut f = fixture().templates[t].clone();
                for (at, v) in flips {
                    let i = usize::from(at) % f.len();
                    f[i] ^= v;
                }
                if let Some(c) = cut {
                    f.truncate(usize::from(c) % (f.len() + 1));
                }
                f
            }),
    ]
}

fn run(
    host: usize,
    from: &From,
    mut frame: Vec<u8>,
    offload: Offload,
) -> Result<(), TestCaseError> {
    let fx = fixture();
    let mut h = fx.hosts[host].lock().unwrap_or_else(|e| e.into_inner());
    let remotes: [IpAddr; 3] = [
        UL_A.parse().unwrap(),
        UL_B.parse().unwrap(),
        "203.0.113.9".parse().unwrap(),
    ];
    let from = match *from {
        From::Tap(i) => Endpoint::Tap(VifId((i % (h.slots + 2)) as u32)),
        From::Tunnel {
            remote,
            vni,
            random_vni,
        } => Endpoint::Tunnel {
            remote: remotes[usize::from(remote)],
            vni: Vni::new(match vni {
                Some(i) if !h.vnis.is_empty() => h.vnis[i % h.vnis.len()],
                _ => random_vni,
            })
            .unwrap(),
        },
    };
    h.n += 1;
    let now = h.t0 + Duration::from_millis(h.n);
    let mut out = OutputSink::new();
    h.proc.process(
        Input {
            from,
            frame: &mut frame,
            offload,
            now,
        },
        &mut out,
    );
    let mut scratch = Vec::new();
    let check = |to: Endpoint| -> Result<(), TestCaseError> {
        match to {
            Endpoint::Tap(v) => {
                prop_assert!((v.0 as usize) < h.slots, "output to unmapped slot {v:?}")
            }
            Endpoint::Tunnel { remote, .. } => {
                prop_assert!(h.peers.contains(&remote), "output to unknown peer {remote}")
            }
        }
        Ok(())
    };
    for &to in out.forwards() {
        check(to)?;
        scratch.clear();
        let _ = gso::segment_within(&frame, &offload, &[0; 8], 1450, &mut scratch);
    }
    for (to, f, o) in out.emitted_with_offload() {
        check(to)?;
        scratch.clear();
        let _ = gso::segment_within(f, o, &[0; 8], 1450, &mut scratch);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    #[test]
    fn hostile_frames_never_panic(
        host in 0usize..2,
        from in from_strategy(),
        frame in frame_strategy(),
        offload in offload_strategy(),
    ) {
        run(host, &from, frame, offload)?;
    }

    #[test]
    fn big_superframes_never_panic(
        host in 0usize..2,
        from in from_strategy(),
        t in 0usize..8,
        extra in 0usize..9000,
        offload in offload_strategy(),
    ) {
        let mut f = fixture().templates[t % fixture().templates.len()].clone();
        f.resize(f.len() + extra, 0x5a);
        run(host, &from, f, offload)?;
    }
}

#[test]
fn the_fuzzed_pipelines_kept_their_bounds() {
    // Runs after (or alongside) the properties; either way the counters are sane.
    let fx = fixture();
    for h in &fx.hosts {
        let h = h.lock().unwrap_or_else(|e| e.into_inner());
        let s = h.shared.stats();
        assert!(s.counters.cache_entries <= 64, "{s}");
        assert!(h.proc.cache_len() <= 64);
    }
}
