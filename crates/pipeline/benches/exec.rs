//! Packets per second of the executor on a realistic program: a switch with 100 ports
//! (port security, stateful ACL of 50 rules, L2 lookup) and a router with 1,000 routes.
//!
//! Run: `cargo bench -p weft-pipeline --bench exec`. Each group prints baselines measured in
//! the same run (parsing alone, copying the frame) beside the full walk and the cached path.
//!
//! * `walk/*`: `execute` (parse, ingress, every table, conntrack, outputs).
//! * `cached/*`: what a forwarder does on a flow-cache hit: parse, look the (ingress, key) up
//!   in a hash map, `apply` the decision (conntrack check and update, rewrites, emit).

use std::collections::HashMap;
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use weft_pipeline::exec::{
    Conntrack, Decision, ExecOptions, Frame, FxBuildHasher, Ingress, Loaded, apply, execute,
};
use weft_pipeline::ir::*;
use weft_pipeline::wire::build::{L3Spec, L4Spec, PacketSpec};
use weft_pipeline::wire::{FlowKey, parse};

const PORTS: u8 = 100;
const ACL_RULES: u16 = 50;
const ROUTES: u32 = 1000;

fn port_mac(i: u8) -> MacAddr {
    MacAddr::new(2, 0, 0, 0, 1, i)
}
fn port_ip(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, 10 + i)
}
const ROUTER_MAC: MacAddr = MacAddr::new(2, 0, 0, 0, 0xff, 1);

fn program() -> Program {
    let mut p = Program::new("bench");
    p.datapaths.push(Datapath::new(
        "net",
        DatapathKind::Switch,
        100,
        &["port_sec", "pre_acl", "acl", "l2"],
    ));
    p.datapaths.push(Datapath::new(
        "r",
        DatapathKind::Router,
        200,
        &["ip_input", "route"],
    ));
    p.ports.push(LogicalPort::internal("rp", "r"));
    for i in 0..PORTS {
        let name = format!("p{i}");
        p.ports.push(
            LogicalPort::local(&name, "net", format!("tap{i}"), vec![])
                .with_addresses(port_mac(i), vec![port_ip(i).into()]),
        );
        p.add_flow(
            "net",
            "port_sec",
            Flow::new(
                100,
                Match::new().in_port(&name).eth_src(port_mac(i)),
                vec![Action::Next],
            ),
        );
        p.add_flow(
            "net",
            "port_sec",
            Flow::new(50, Match::new().in_port(&name), vec![Action::Drop]),
        );
        p.add_flow(
            "net",
            "l2",
            Flow::new(
                100,
                Match::new().eth_dst(port_mac(i)),
                vec![Action::output(&name)],
            ),
        );
    }
    p.add_flow(
        "net",
        "l2",
        Flow::new(
            100,
            Match::new().eth_dst(ROUTER_MAC),
            vec![
                Action::SetInPort("rp".into()),
                Action::goto("r", "ip_input"),
            ],
        ),
    );
    p.add_flow(
        "net",
        "pre_acl",
        Flow::new(
            100,
            Match::new().ip4(),
            vec![Action::CtLookup { zone: 1 }, Action::Next],
        ),
    );
    p.add_flow(
        "net",
        "pre_acl",
        Flow::new(0, Match::new(), vec![Action::Next]),
    );
    // ACL: established/related first, then 50 rules of assorted shapes, then default deny.
    p.add_flow(
        "net",
        "acl",
        Flow::new(
            1000,
            Match::new().ct(ct_state::EST, ct_state::EST | ct_state::INV),
            vec![Action::Next],
        ),
    );
    p.add_flow(
        "net",
        "acl",
        Flow::new(
            900,
            Match::new().ct(ct_state::INV, ct_state::INV),
            vec![Action::Drop],
        ),
    );
    for r in 0..ACL_RULES {
        let m = match r % 3 {
            0 => Match::new()
                .ip_src(
                    format!("10.{}.0.0/16", r)
                        .parse::<ipnet::Ipv4Net>()
                        .unwrap(),
                )
                .tcp_dst(1000 + r),
            1 => Match::new()
                .ip_dst(ipnet::Ipv4Net::from(port_ip((r % 100) as u8)))
                .udp()
                .l4_dst(ValueRange::new(2000 + r, 2100 + r)),
            _ => Match::new().ip4().tcp_dst(3000 + r),
        };
        p.add_flow(
            "net",
            "acl",
            Flow::new(500, m, vec![Action::CtCommit { zone: 1 }, Action::Next]).origin(
                Origin::new("security-group-rule", format!("r{r}"), "bench rule"),
            ),
        );
    }
    // Web traffic anywhere, and everything from the VMs outwards.
    p.add_flow(
        "net",
        "acl",
        Flow::new(
            400,
            Match::new().ip_src("10.0.0.0/24".parse::<ipnet::Ipv4Net>().unwrap()),
            vec![Action::CtCommit { zone: 1 }, Action::Next],
        ),
    );
    p.add_flow(
        "net",
        "acl",
        Flow::new(100, Match::new().ip4(), vec![Action::Drop]),
    );
    p.add_flow("net", "acl", Flow::new(0, Match::new(), vec![Action::Next]));
    // Router.
    p.add_flow(
        "r",
        "ip_input",
        Flow::new(
            50,
            Match::new().ip4().ttl_at_most(1),
            vec![Action::IcmpError {
                error: IcmpErrorKind::TimeExceeded,
                src: "10.0.0.1".parse().unwrap(),
            }],
        ),
    );
    p.add_flow(
        "r",
        "ip_input",
        Flow::new(0, Match::new().ip4(), vec![Action::DecTtl, Action::Next]),
    );
    for i in 0..ROUTES {
        // Lengths /16, /20, /24 and /32 spread over 172.16.0.0/12 and 100.64.0.0/10.
        let len = [16u8, 20, 24, 32][(i % 4) as usize];
        let base = if i % 2 == 0 {
            0xac10_0000u32
        } else {
            0x6440_0000u32
        };
        let addr = base + (i << 12);
        let net = ipnet::Ipv4Net::new(Ipv4Addr::from(addr), len)
            .unwrap()
            .trunc();
        let nh = (i % 50) as u8;
        p.add_flow(
            "r",
            "route",
            Flow::new(
                u16::from(len),
                Match::new().ip_dst(net),
                vec![
                    Action::SetEthSrc(ROUTER_MAC),
                    Action::SetEthDst(MacAddr::new(2, 0, 0, 0, 0xee, nh)),
                    Action::Tunnel {
                        remote: Ipv4Addr::new(192, 0, 2, 100 + nh).into(),
                        vni: 300,
                    },
                ],
            ),
        );
    }
    p
}

fn tcp(src: u8, dst_mac: MacAddr, dst: Ipv4Addr, sport: u16, flags: u16) -> Vec<u8> {
    PacketSpec {
        eth_src: port_mac(src),
        eth_dst: dst_mac,
        vlans: vec![],
        l3: L3Spec::Ip {
            src: port_ip(src).into(),
            dst: dst.into(),
            ttl: 64,
            l4: L4Spec::Tcp {
                src: sport,
                dst: 80,
                flags,
                seq: 1,
                ack: 1,
                payload: vec![0x5a; 64],
            },
        },
    }
    .build()
}

struct Case {
    name: &'static str,
    ingress: Ingress,
    frame: Vec<u8>,
}

fn cases(l: &Loaded) -> Vec<Case> {
    let tap0 = Ingress::Vif(l.vif_id("tap0").unwrap());
    vec![
        Case {
            name: "switch_acl",
            ingress: tap0,
            frame: tcp(0, port_mac(57), port_ip(57), 40000, tcp_flags::ACK),
        },
        Case {
            name: "routed_1000",
            ingress: tap0,
            frame: tcp(
                0,
                ROUTER_MAC,
                Ipv4Addr::new(172, 16, 0x2a, 7),
                40001,
                tcp_flags::ACK,
            ),
        },
    ]
}

fn bench(c: &mut Criterion) {
    let p = program();
    let l = Loaded::load(&p).expect("bench program loads");
    let flows: usize = p
        .datapaths
        .iter()
        .flat_map(|d| &d.tables)
        .map(|t| t.flows.len())
        .sum();
    let mut g = c.benchmark_group("load");
    g.measurement_time(Duration::from_secs(3));
    g.sample_size(20);
    g.bench_function(format!("program_{flows}_flows"), |b| {
        b.iter(|| black_box(Loaded::load(black_box(&p)).unwrap().generation()))
    });
    g.finish();
    let now = Duration::from_secs(10);
    let opts = ExecOptions::default();
    for case in cases(&l) {
        // Open the connection once so the measured packets are established traffic.
        let mut ct = Conntrack::default();
        let syn = {
            let mut f = case.frame.clone();
            let k = parse(&f).unwrap();
            let at = k.layout.l4.unwrap() + 13;
            f[at] = 0x02;
            f
        };
        let out = execute(&l, &mut ct, case.ingress, &syn, now, &opts);
        assert_eq!(
            out.outputs.len(),
            1,
            "{} SYN is forwarded: {:?}",
            case.name,
            out.drop
        );
        let warm = execute(&l, &mut ct, case.ingress, &case.frame, now, &opts);
        assert_eq!(
            warm.outputs.len(),
            1,
            "{} is forwarded: {:?}",
            case.name,
            warm.drop
        );
        let decision = warm
            .decision
            .clone()
            .expect("established traffic is cacheable");

        let mut g = c.benchmark_group(case.name);
        g.throughput(Throughput::Elements(1));
        g.measurement_time(Duration::from_secs(3));
        g.warm_up_time(Duration::from_secs(1));

        g.bench_function("baseline_parse_only", |b| {
            b.iter(|| black_box(parse(black_box(&case.frame)).unwrap().key.l4_dst))
        });
        g.bench_function("baseline_copy_frame", |b| {
            b.iter(|| black_box(Frame::new(black_box(&case.frame)).len()))
        });
        g.bench_function("walk", |b| {
            b.iter(|| {
                let out = execute(
                    &l,
                    &mut ct,
                    case.ingress,
                    black_box(&case.frame),
                    now,
                    &opts,
                );
                black_box(out.outputs.len())
            })
        });

        let mut cache: HashMap<(Ingress, FlowKey), Decision, FxBuildHasher> =
            HashMap::with_hasher(FxBuildHasher);
        let key = parse(&case.frame).unwrap().key;
        cache.insert((case.ingress, key), decision);
        // The forwarder reads into a buffer with headroom and reuses it.
        let mut frame = Frame::new(&case.frame);
        g.bench_function("cached_apply", |b| {
            b.iter(|| {
                frame.load(black_box(&case.frame));
                let parsed = parse(frame.as_slice()).unwrap();
                let d = cache.get(&(case.ingress, parsed.key)).expect("cache hit");
                let mut sent = 0usize;
                apply(&l, d, &mut ct, &parsed, &mut frame, now, |_, bytes| {
                    sent += bytes.len();
                })
                .expect("decision still valid");
                black_box(sent)
            })
        });
        g.bench_function("cached_parse_and_lookup_only", |b| {
            b.iter(|| {
                let parsed = parse(black_box(&case.frame)).unwrap();
                black_box(cache.contains_key(&(case.ingress, parsed.key)))
            })
        });
        let parsed = parse(&case.frame).unwrap();
        let d = cache.get(&(case.ingress, parsed.key)).unwrap().clone();
        g.bench_function("apply_only", |b| {
            b.iter(|| {
                let mut sent = 0usize;
                apply(&l, &d, &mut ct, &parsed, &mut frame, now, |_, bytes| {
                    sent += bytes.len();
                })
                .expect("decision still valid");
                black_box(sent)
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
