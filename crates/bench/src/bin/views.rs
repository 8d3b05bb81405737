//! Per-host views without the network: what `weft_controller::views::Table` costs in time
//! and memory for the southbound-scale topology (tenants of about 60 ports: two routed
//! networks, an isolated one, routed VRF ports, a security group; each host has P ports of
//! two tenants), beside the baseline measured in the same run: recomputing and encoding the
//! whole view of every concerned host on every change (what the controller did before).
//!
//! `cargo run --release -p weft-bench --bin views -- [HOSTS] [PORTS_PER_HOST] [CHANGES]`
//! (run with `MIMALLOC_PURGE_DELAY=0` so that RSS follows live memory).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use weft_bench::{loadavg, ms, percentile, rss_kib};
use weft_compiler::Compiler;
use weft_controller::compile::CompiledBatch;
use weft_controller::views::{Cx, Table, encode};
use weft_model::{Change, Command, CountingIds, Id, Intent, Kind, Spec};
use weft_southbound::SplitMix64;

fn create(
    intent: &mut Intent,
    ids: &mut CountingIds,
    kind: Kind,
    project: Option<&Id>,
    body: Value,
) -> Result<(Id, Vec<Change>)> {
    let spec = Spec::parse(kind, body.to_string().as_bytes())?;
    let a = intent
        .apply(
            Command::Create {
                project: project.cloned(),
                spec,
            },
            ids,
        )
        .with_context(|| format!("{kind} {body}"))?;
    Ok((
        a.object.map(|o| o.id().clone()).unwrap_or_default(),
        a.changes,
    ))
}

struct Tenant {
    project: Id,
    nets: [Id; 3],
    vrf: Id,
    sg: Id,
    routed: u32,
}

fn host(i: usize) -> String {
    format!("sim-{i:05}")
}

fn port_body(t: &mut Tenant, ti: usize, kind: u64, h: usize) -> Value {
    let base = u32::from(Ipv4Addr::new(10, 0, 0, 0)) + ti as u32 * 1024;
    let b = match kind {
        0..40 => json!({"service": t.nets[0], "security_groups": [t.sg]}),
        40..70 => json!({"service": t.nets[1], "security_groups": [t.sg]}),
        70..85 => json!({"service": t.nets[2]}),
        _ => {
            t.routed += 1;
            let ip = Ipv4Addr::from(base + 768 + t.routed);
            json!({"service": t.vrf, "fixed_ips": [{"ip": ip.to_string()}]})
        }
    };
    json!({"host": host(h), "bindings": [b]})
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let hosts: usize = args.get(1).map_or(Ok(1000), |v| v.parse())?;
    let ports: usize = args.get(2).map_or(Ok(4), |v| v.parse())?;
    let changes: usize = args.get(3).map_or(Ok(200), |v| v.parse())?;
    eprintln!(
        "views: {hosts} hosts × {ports} ports, {changes} changes, load average {}",
        loadavg()
    );
    let mut intent = Intent::new();
    let mut ids = CountingIds::default();
    let n_tenants = (hosts * ports).div_ceil(60).max(2);
    let mut tenants = Vec::new();
    for t in 0..n_tenants {
        let (project, _) = create(
            &mut intent,
            &mut ids,
            Kind::Project,
            None,
            json!({"name": format!("t{t}")}),
        )?;
        let base = u32::from(Ipv4Addr::new(10, 0, 0, 0)) + t as u32 * 1024;
        let mut nets: Vec<Id> = Vec::new();
        for k in 0..3u32 {
            let cidr = format!("{}/24", Ipv4Addr::from(base + k * 256));
            nets.push(
                create(
                    &mut intent,
                    &mut ids,
                    Kind::L2Network,
                    Some(&project),
                    json!({"subnets": [{"cidr": cidr}]}),
                )?
                .0,
            );
        }
        let subnets: Vec<String> = nets[..2]
            .iter()
            .map(|n| intent.l2_networks()[n].subnets[0].id.to_string())
            .collect();
        let rt = format!("64512:{}", t + 1);
        let import: Vec<String> = if t % 5 == 0 && t + 1 < n_tenants {
            vec![format!("64512:{}", t + 2)]
        } else {
            vec![]
        };
        let (vrf, _) = create(
            &mut intent,
            &mut ids,
            Kind::L3vpn,
            Some(&project),
            json!({"route_distinguisher": rt, "route_targets": [rt], "import_targets": import, "subnets": subnets}),
        )?;
        let (sg, _) = create(
            &mut intent,
            &mut ids,
            Kind::SecurityGroup,
            Some(&project),
            json!({"rules": [{"direction": "egress"}]}),
        )?;
        intent
            .apply(
                Command::Update {
                    kind: Kind::SecurityGroup,
                    id: sg.clone(),
                    patch: json!({"rules": [{"direction": "egress"}, {"direction": "ingress", "protocol": "tcp", "port_range_min": 22, "remote_prefix": "0.0.0.0/0"}, {"direction": "ingress", "remote_group": sg}]}),
                    if_match: None,
                },
                &mut ids,
            )
            .context("security group rules")?;
        tenants.push(Tenant {
            project,
            nets: [nets[0].clone(), nets[1].clone(), nets[2].clone()],
            vrf,
            sg,
            routed: 0,
        });
    }
    let mut rng = SplitMix64::new(7);
    let mut of_host: Vec<[usize; 2]> = Vec::new();
    for h in 0..hosts {
        let t1 = (rng.next() % n_tenants as u64) as usize;
        let mut t2 = (rng.next() % n_tenants as u64) as usize;
        if t2 == t1 {
            t2 = (t1 + 1) % n_tenants;
        }
        of_host.push([t1, t2]);
        for j in 0..ports {
            let t = of_host[h][j % 2];
            let kind = rng.next() % 100;
            let body = port_body(&mut tenants[t], t, kind, h);
            let p = tenants[t].project.clone();
            create(&mut intent, &mut ids, Kind::InstancePort, Some(&p), body)?;
        }
    }
    let dir: BTreeMap<String, IpAddr> = (0..hosts)
        .map(|i| {
            (
                host(i),
                IpAddr::V4(Ipv4Addr::from(
                    u32::from(Ipv4Addr::new(100, 64, 0, 1)) + i as u32,
                )),
            )
        })
        .collect();
    let t = Instant::now();
    let mut compiler = Compiler::full(&intent);
    eprintln!(
        "compiled {} owners in {:.1?}",
        compiler.fragments().len(),
        t.elapsed()
    );

    // Every host's view into the table.
    let rss0 = rss_kib();
    let mut table = Table::default();
    let mut rev = 1;
    // Even hosts first, then odd ones, as a replica that served half the hosts takes over
    // the other half when its peer dies: the records their neighbours share are computed.
    let t = Instant::now();
    let takeover;
    {
        let cx = Cx {
            intent: &intent,
            compiler: &compiler,
            dir: &dir,
        };
        for h in (0..hosts).step_by(2) {
            table.track(&cx, &host(h), rev);
        }
        let t2 = Instant::now();
        for h in (1..hosts).step_by(2) {
            table.track(&cx, &host(h), rev);
        }
        takeover = t2.elapsed();
    }
    let track = t.elapsed();
    let rss1 = rss_kib();
    let records: usize = (0..hosts)
        .map(|h| table.records(&host(h)).map_or(0, |r| r.len()))
        .sum();
    let bytes: usize = (0..hosts)
        .map(|h| {
            table
                .records(&host(h))
                .map_or(0, |r| r.iter().map(|x| x.value.len() + x.key.len()).sum())
        })
        .sum();

    for (kind, (owners, distinct, bytes)) in table.shared_records() {
        eprintln!(
            "  {kind}: {owners} owners, {distinct} distinct records, {:.0} KiB",
            bytes as f64 / 1024.0
        );
    }
    // Baseline: the whole view of one host, computed and encoded.
    let t = Instant::now();
    let sample = hosts.min(200);
    for h in 0..sample {
        let v = compiler.host_view(&intent, &host(h), &dir);
        let _: Vec<Vec<u8>> = v.fragments.values().map(encode).collect();
    }
    let whole_view = t.elapsed() / sample as u32;

    // Changes: one port created on a random host, as the API would.
    let mut inc = Vec::new();
    let mut base = Vec::new();
    let mut fanout = Vec::new();
    for _ in 0..changes {
        let h = (rng.next() % hosts as u64) as usize;
        let t_i = of_host[h][(rng.next() % 2) as usize];
        let kind = rng.next() % 100;
        let body = port_body(&mut tenants[t_i], t_i, kind, h);
        let p = tenants[t_i].project.clone();
        let (_, ch) = create(&mut intent, &mut ids, Kind::InstancePort, Some(&p), body)?;
        rev += 1;
        let delta = compiler.apply(&intent, &ch);
        let batch = CompiledBatch::new(rev, Some(delta), &ch, &intent);
        let cx = Cx {
            intent: &intent,
            compiler: &compiler,
            dir: &dir,
        };
        let t = Instant::now();
        let changed = table.apply(&cx, &batch, rev);
        inc.push(t.elapsed());
        fanout.push(changed.len());
        // Baseline: every changed host's whole view again.
        let t = Instant::now();
        for hh in &changed {
            let v = compiler.host_view(&intent, hh, &dir);
            let _: Vec<Vec<u8>> = v.fragments.values().map(encode).collect();
        }
        base.push(t.elapsed());
    }
    inc.sort();
    base.sort();
    let hosts_changed: usize = fanout.iter().sum();
    let kib = |k: u64| k as f64;
    println!();
    println!(
        "| views: {hosts} hosts, {ports} ports each, {} tenants ({}) | value |",
        n_tenants,
        loadavg()
    );
    println!("|---|---|");
    println!(
        "| records per host / KiB per host view | {:.0} / {:.0} |",
        records as f64 / hosts as f64,
        bytes as f64 / 1024.0 / hosts as f64
    );
    println!(
        "| table: track every host (whole views, shared records) | {:.1?} ({:.0} µs per host) |",
        track,
        track.as_secs_f64() * 1e6 / hosts as f64
    );
    println!(
        "| table: track a host whose neighbours are tracked (a replica taking over its peer's half) | {:.0} µs per host |",
        takeover.as_secs_f64() * 1e6 / (hosts / 2).max(1) as f64
    );
    println!(
        "| baseline: one whole view computed and encoded | {:.0} µs |",
        whole_view.as_secs_f64() * 1e6
    );
    println!(
        "| table memory (RSS growth) per tracked host | {:.1} KiB (view bytes referenced: {:.0} KiB) |",
        (kib(rss1) - kib(rss0)) / hosts as f64,
        bytes as f64 / 1024.0 / hosts as f64
    );
    println!(
        "| one port created: table update p50 / p99 | {} / {} ms ({:.1} hosts changed on average) |",
        ms(percentile(&inc, 50.0)),
        ms(percentile(&inc, 99.0)),
        hosts_changed as f64 / changes.max(1) as f64
    );
    println!(
        "| baseline: whole views of those hosts p50 / p99 | {} / {} ms |",
        ms(percentile(&base, 50.0)),
        ms(percentile(&base, 99.0))
    );
    Ok(())
}
