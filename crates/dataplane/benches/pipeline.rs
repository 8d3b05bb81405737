//! Frames per second through `PipelineProcessor::process` in memory, on the
//! program the compiler makes for the test topology (`tests/world`: two
//! networks routed by a VRF, stateful security groups, port security), beside
//! two baselines measured in the same run: copying the frame into the input
//! buffer (every case does it, since processing rewrites in place) and the
//! static bridge (no pipeline at all).
//!
//! * `hit/*`: the same flow again and again: flow-cache hit, `apply` with the
//!   conntrack check and update (a conntrack shard's lock), output;
//!   `hit/stateless-*` from a port whose security group is stateless: no
//!   conntrack, no lock.
//! * `miss/new-flows`: a new 5-tuple every frame: the table walk, a
//!   conntrack commit (the table full and evicting after a while), a cache
//!   insert evicting an older entry.
//! * `hit/tso-64k`: a 64 KiB TSO super-frame (one decision on its first segment).
//! * `hit/two-threads`: two workers on one shared pipeline (conntrack lock
//!   contention), total frames per second.
//!
//! `cargo bench -p weft-dataplane --bench pipeline`

#[path = "../tests/world/mod.rs"]
mod world;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use weft_dataplane::pipeline::{PipelineConfig, PipelineShared, ProgramState};
use weft_dataplane::vnet::{CsumOffload, Gso, GsoKind};
use weft_dataplane::{
    BridgeLink, Endpoint, Input, Offload, OutputSink, PacketProcessor, StaticBridge, VifId, Vni,
};
use weft_pipeline::MacAddr;
use weft_pipeline::exec::{ConntrackConfig, Loaded};
use weft_pipeline::wire::build::{L3Spec, L4Spec, PacketSpec};
use world::{UL_A, World};

fn shared(w: &World, host: &str) -> Arc<PipelineShared> {
    let (program, services) = w.program(host);
    let loaded = Loaded::load(&program).unwrap();
    let names: Vec<String> = loaded.vifs().map(|(_, n)| n.to_string()).collect();
    let s = PipelineShared::new(PipelineConfig {
        conntrack: ConntrackConfig {
            max_entries: 100_000,
            ..ConntrackConfig::default()
        },
        ..PipelineConfig::default()
    });
    s.swap(ProgramState::new(loaded, services, |v| {
        names.iter().position(|n| n == v).map(|i| VifId(i as u32))
    }));
    s
}

fn frame(src_mac: MacAddr, dst_mac: MacAddr, src: &str, dst: &str, l4: L4Spec) -> Vec<u8> {
    PacketSpec {
        eth_src: src_mac,
        eth_dst: dst_mac,
        vlans: vec![],
        l3: L3Spec::Ip {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            ttl: 64,
            l4,
        },
    }
    .build()
}

fn udp(payload: usize) -> L4Spec {
    L4Spec::Udp {
        src: 40000,
        dst: 5001,
        payload: vec![0; payload],
    }
}

/// Runs one frame through `p` from a fresh copy of `template`.
#[inline]
fn run(
    p: &mut impl PacketProcessor,
    from: Endpoint,
    template: &[u8],
    buf: &mut [u8],
    offload: Offload,
    sink: &mut OutputSink,
    now: Instant,
) {
    buf.copy_from_slice(template);
    sink.clear();
    p.process(
        Input {
            from,
            frame: buf,
            offload,
            now,
        },
        sink,
    );
}

fn pipeline(c: &mut Criterion) {
    let mut w = World::two_hosts();
    // a4: a port on host-a whose (allow-all) group is stateless.
    let p = w.project.clone();
    let net1 = w.net1.clone();
    let sg = w.create(
        weft_model::Kind::SecurityGroup,
        Some(&p),
        serde_json::json!({"name": "stateless", "stateful": false, "rules": [{"direction": "ingress"}, {"direction": "egress"}]}),
    );
    let a4_mac: MacAddr = "02:00:00:0a:00:14".parse().unwrap();
    let a4 = w.create(
        weft_model::Kind::InstancePort,
        Some(&p),
        serde_json::json!({"name": "a4", "host": "host-a", "mac": a4_mac.to_string(), "bindings": [{"service": net1, "fixed_ips": [{"ip": "10.1.0.14"}], "security_groups": [sg]}]}),
    );
    let (a1, b1, b2) = (w.vm("a1").clone(), w.vm("b1").clone(), w.vm("b2").clone());
    let rmac = w.router_mac("host-a");
    let sa = shared(&w, "host-a");
    let sb = shared(&w, "host-b");
    let slot_a1 = Endpoint::Tap(sa.current().tap_of_vif(&a1.vif).expect("a1 has a TAP slot"));
    let now = Instant::now();
    let mut sink = OutputSink::new();

    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(1));

    let switched = frame(a1.mac, b1.mac, a1.ip, b1.ip, udp(22)); // 64-byte frame
    let mut buf = switched.clone();
    g.bench_function("baseline/copy-64B", |b| {
        b.iter(|| {
            buf.copy_from_slice(black_box(&switched));
            black_box(&buf);
        })
    });
    let mut bridge = StaticBridge::new(&[BridgeLink {
        vif: VifId(0),
        remote: UL_A.parse().unwrap(),
        vni: Vni::new(100).unwrap(),
    }]);
    g.bench_function("baseline/static-bridge-64B", |b| {
        b.iter(|| {
            run(
                &mut bridge,
                Endpoint::Tap(VifId(0)),
                &switched,
                &mut buf,
                Offload::NONE,
                &mut sink,
                now,
            );
            black_box(&sink);
        })
    });

    // The executor alone on the same frame: parse, load the frame, apply the
    // cached decision against a private conntrack (no flow cache, no lock,
    // no output mapping): what the processor adds is the difference.
    {
        use weft_pipeline::exec::{Conntrack, ExecOptions, Frame, Ingress, apply, execute};
        let st = sa.current();
        let l = st.loaded();
        let ingress = Ingress::Vif(l.vif_id(&a1.vif).unwrap());
        let mut ct = Conntrack::default();
        let t = Duration::from_secs(1);
        execute(l, &mut ct, ingress, &switched, t, &ExecOptions::default());
        let d = execute(l, &mut ct, ingress, &switched, t, &ExecOptions::default())
            .decision
            .expect("an established flow's decision");
        let mut f = Frame::new(&switched);
        g.bench_function("baseline/executor-apply-64B", |b| {
            b.iter(|| {
                let p = weft_pipeline::wire::parse(black_box(&switched)).unwrap();
                f.load(&switched);
                let mut n = 0;
                apply(l, &d, &mut ct, &p, &mut f, t, |_, bytes| n += bytes.len()).unwrap();
                black_box(n);
            })
        });
    }

    let mut pa = sa.processor();
    run(
        &mut pa,
        slot_a1,
        &switched,
        &mut buf,
        Offload::NONE,
        &mut sink,
        now,
    );
    assert_eq!(sink.forwards().len(), 1, "switched frame forwarded");
    g.bench_function("hit/switched-udp-64B", |b| {
        b.iter(|| {
            run(
                &mut pa,
                slot_a1,
                &switched,
                &mut buf,
                Offload::NONE,
                &mut sink,
                now,
            );
        })
    });
    let slot_a4 = Endpoint::Tap(sa.current().tap_of_vif(a4.as_str()).expect("a4's slot"));
    let stateless = frame(a4_mac, b1.mac, "10.1.0.14", b1.ip, udp(22));
    run(
        &mut pa,
        slot_a4,
        &stateless,
        &mut buf,
        Offload::NONE,
        &mut sink,
        now,
    );
    assert_eq!(sink.forwards().len(), 1, "stateless frame forwarded");
    g.bench_function("hit/stateless-switched-udp-64B", |b| {
        b.iter(|| {
            run(
                &mut pa,
                slot_a4,
                &stateless,
                &mut buf,
                Offload::NONE,
                &mut sink,
                now,
            );
        })
    });
    let routed = frame(a1.mac, rmac, a1.ip, b2.ip, udp(22));
    run(
        &mut pa,
        slot_a1,
        &routed,
        &mut buf,
        Offload::NONE,
        &mut sink,
        now,
    );
    assert_eq!(sink.forwards().len(), 1, "routed frame forwarded");
    g.bench_function("hit/routed-udp-64B", |b| {
        b.iter(|| {
            run(
                &mut pa,
                slot_a1,
                &routed,
                &mut buf,
                Offload::NONE,
                &mut sink,
                now,
            );
        })
    });
    let mut pb = sb.processor();
    let vni = {
        let st = sb.current();
        let p = st.loaded().program();
        let port = p.ports.iter().find(|x| x.name == b2.port).unwrap();
        p.datapaths
            .iter()
            .find(|d| d.name == port.datapath)
            .unwrap()
            .vni
    };
    let from_a = Endpoint::Tunnel {
        remote: UL_A.parse().unwrap(),
        vni: Vni::new(vni).unwrap(),
    };
    let arriving = frame(rmac, b2.mac, a1.ip, b2.ip, udp(22));
    run(
        &mut pb,
        from_a,
        &arriving,
        &mut buf,
        Offload::NONE,
        &mut sink,
        now,
    );
    assert_eq!(sink.forwards().len(), 1, "tunnel frame delivered");
    g.bench_function("hit/from-tunnel-udp-64B", |b| {
        b.iter(|| {
            run(
                &mut pb,
                from_a,
                &arriving,
                &mut buf,
                Offload::NONE,
                &mut sink,
                now,
            );
        })
    });

    // A new flow per frame: vary both ports over 2^32 tuples.
    let mut fresh = switched.clone();
    let l4 = 14 + 20;
    let mut n: u32 = 0;
    g.bench_function("miss/new-flows-64B", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            fresh[l4..l4 + 2].copy_from_slice(&((n >> 16) as u16 | 1).to_be_bytes());
            fresh[l4 + 2..l4 + 4].copy_from_slice(&(n as u16).to_be_bytes());
            run(
                &mut pa,
                slot_a1,
                &fresh,
                &mut buf,
                Offload::NONE,
                &mut sink,
                now,
            );
        })
    });

    // A 64 KiB TSO super-frame, switched: one decision, headers written back.
    let tso = frame(
        a1.mac,
        b1.mac,
        a1.ip,
        b1.ip,
        L4Spec::Tcp {
            src: 40001,
            dst: 80,
            flags: 0x010,
            seq: 1,
            ack: 1,
            payload: vec![0; 65_000],
        },
    );
    let syn = {
        let mut f = tso[..54].to_vec();
        f[16..18].copy_from_slice(&40u16.to_be_bytes());
        f[47] = 0x02;
        f
    };
    let mut sbuf = syn.clone();
    run(
        &mut pa,
        slot_a1,
        &syn,
        &mut sbuf,
        Offload::NONE,
        &mut sink,
        now,
    );
    let off = Offload {
        csum: Some(CsumOffload {
            start: 34,
            offset: 16,
        }),
        gso: Some(Gso {
            kind: GsoKind::Tcp4,
            size: 1398,
            hdr_len: 54,
            ecn: false,
        }),
        data_valid: false,
    };
    let mut big = tso.clone();
    sink.clear();
    pa.process(
        Input {
            from: slot_a1,
            frame: &mut big,
            offload: off,
            now,
        },
        &mut sink,
    );
    assert_eq!(sink.forwards().len(), 1, "super-frame forwarded whole");
    g.bench_function("hit/tso-64k", |b| {
        b.iter(|| {
            // Only the headers change; rewriting them is enough between frames.
            big[..64].copy_from_slice(&tso[..64]);
            sink.clear();
            pa.process(
                Input {
                    from: slot_a1,
                    frame: &mut big,
                    offload: off,
                    now,
                },
                &mut sink,
            );
        })
    });

    // Two workers on one pipeline: the conntrack lock is shared.
    for threads in [1usize, 2] {
        g.bench_function(format!("hit/switched-udp-64B-{threads}-threads"), |b| {
            b.iter_custom(|iters| {
                let per = iters / threads as u64 + 1;
                let start = Instant::now();
                std::thread::scope(|s| {
                    for t in 0..threads {
                        let sa = sa.clone();
                        let mut f = switched.clone();
                        // One flow per thread, as two guests would send.
                        f[l4..l4 + 2].copy_from_slice(&(50000 + t as u16).to_be_bytes());
                        s.spawn(move || {
                            let mut p = sa.processor();
                            let mut buf = f.clone();
                            let mut sink = OutputSink::new();
                            for _ in 0..per {
                                run(&mut p, slot_a1, &f, &mut buf, Offload::NONE, &mut sink, now);
                            }
                        });
                    }
                });
                let el = start.elapsed();
                // Report time per frame of all threads together.
                Duration::from_secs_f64(
                    el.as_secs_f64() * iters as f64 / (per * threads as u64) as f64,
                )
            })
        });
    }
    g.finish();
    let s = sa.stats();
    eprintln!(
        "host-a pipeline after the run: hits {} misses {} stale {} evictions {} conntrack {} (evicted {})",
        s.counters.cache_hits,
        s.counters.cache_misses,
        s.counters.cache_stale,
        s.counters.cache_evictions,
        s.conntrack_entries,
        s.conntrack.evictions
    );
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
