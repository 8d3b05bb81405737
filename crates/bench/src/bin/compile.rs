//! Issue 3 benchmark, Weft's side: the OVN northd topology (`bench/ovn`)
//! compiled by Weft. S l2-networks × P ports, R = S/10 VRFs of K = 10
//! networks each, one security group on every port allowing egress and
//! ingress from the same group (stateful). Prints `key=value` lines with
//! the same meaning as `bench/ovn/northd_scale.sh`, so `bench/compile/run.sh`
//! can put both side by side.
//!
//! `cargo run --release -p weft-bench --bin compile -- S P`

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::json;
use weft_bench::{loadavg, rss_kib};
use weft_compiler::Compiler;
use weft_model::{Command, CountingIds, Id, Intent, Kind, Spec};

fn create(
    intent: &mut Intent,
    ids: &mut CountingIds,
    kind: Kind,
    project: Option<&Id>,
    body: serde_json::Value,
) -> Result<(Id, Vec<weft_model::Change>)> {
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

/// `10.(i/256).(i%256)` like the OVN harness.
fn prefix(i: usize) -> String {
    format!("10.{}.{}", i / 256, i % 256)
}

fn mac(i: usize, j: usize) -> String {
    format!("0a:00:00:{:02x}:{:02x}:{:02x}", i / 256, i % 256, j)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let s: usize = args.get(1).map_or(Ok(200), |v| v.parse())?;
    let p: usize = args.get(2).map_or(Ok(100), |v| v.parse())?;
    let r = (s / 10).max(1);
    let k = s.min(10);
    eprintln!(
        "weft compile: S={s} P={p} R={r} K={k}, load average {}",
        loadavg()
    );

    let mut intent = Intent::new();
    let mut ids = CountingIds::default();
    let t_load = Instant::now();
    let (proj, _) = create(
        &mut intent,
        &mut ids,
        Kind::Project,
        None,
        json!({"name": "bench"}),
    )?;
    let (sg, _) = create(
        &mut intent,
        &mut ids,
        Kind::SecurityGroup,
        Some(&proj),
        json!({"name": "pg_all"}),
    )?;
    intent
        .apply(
            Command::Update {
                kind: Kind::SecurityGroup,
                id: sg.clone(),
                patch: json!({"rules": [
                    {"direction": "egress", "ethertype": "IPv4"},
                    {"direction": "ingress", "ethertype": "IPv4", "remote_group": sg}
                ]}),
                if_match: None,
            },
            &mut ids,
        )
        .context("security group rules")?;
    let mut nets = Vec::with_capacity(s);
    for i in 1..=s {
        let (n, _) = create(
            &mut intent,
            &mut ids,
            Kind::L2Network,
            Some(&proj),
            json!({"name": format!("ls{i}"), "subnets": [{"cidr": format!("{}.0/24", prefix(i)), "gateway": format!("{}.1", prefix(i))}]}),
        )?;
        for j in 1..=p {
            create(
                &mut intent,
                &mut ids,
                Kind::InstancePort,
                Some(&proj),
                json!({"name": format!("ls{i}-p{j}"), "mac": mac(i, j),
                       "bindings": [{"service": n, "fixed_ips": [{"ip": format!("{}.{}", prefix(i), 10 + j)}], "security_groups": [sg]}]}),
            )?;
        }
        nets.push(n);
    }
    for ri in 1..=r {
        let subnets: Vec<String> = (1..=k)
            .map(|kk| {
                let si = ((ri - 1) * k + kk - 1) % s;
                intent.l2_networks()[&nets[si]].subnets[0].id.to_string()
            })
            .collect();
        create(
            &mut intent,
            &mut ids,
            Kind::L3vpn,
            Some(&proj),
            json!({"name": format!("lr{ri}"), "route_distinguisher": format!("64512:{ri}"), "route_targets": [format!("64512:{ri}")], "subnets": subnets}),
        )?;
    }
    let load_s = t_load.elapsed().as_secs_f64();

    let rss0 = rss_kib();
    let t0 = Instant::now();
    let mut compiler = Compiler::full(&intent);
    let full = t0.elapsed();
    let rss1 = rss_kib();

    // One more port on ls1, the incremental change OVN's harness measures.
    let mut adds = Vec::new();
    let mut changed = 0;
    for n in 0..21 {
        let t = Instant::now();
        let (_, changes) = create(
            &mut intent,
            &mut ids,
            Kind::InstancePort,
            Some(&proj),
            json!({"name": format!("ls1-pnew{n}"), "bindings": [{"service": nets[0], "fixed_ips": [{"ip": format!("{}.{}", prefix(1), 250 - n)}]}]}),
        )?;
        let d = compiler.apply(&intent, &changes);
        adds.push(t.elapsed());
        changed = d.changed.len();
    }
    adds.sort();
    // Put a new port into the security group (OVN: add to the port group).
    let sp = intent
        .service_ports()
        .values()
        .find(|sp| sp.security_groups.is_empty())
        .map(|sp| sp.id.clone())
        .context("a port without group")?;
    let t = Instant::now();
    let a = intent
        .apply(
            Command::Update {
                kind: Kind::ServicePort,
                id: sp,
                patch: json!({"security_groups": [sg]}),
                if_match: None,
            },
            &mut ids,
        )
        .context("add to group")?;
    compiler.apply(&intent, &a.changes);
    let to_group = t.elapsed();
    // Incremental must still equal full.
    let check = Compiler::full(&intent);
    assert_eq!(
        check.fragments(),
        compiler.fragments(),
        "incremental drifted from full"
    );

    let median = |v: &[Duration]| v[v.len() / 2];
    println!("weft_ports={}", intent.service_ports().len());
    println!("weft_intent_load_s={load_s:.3}");
    println!("weft_full_compile_s={:.4}", full.as_secs_f64());
    println!("weft_flows={}", compiler.flow_count());
    println!("weft_owners={}", compiler.fragments().len());
    println!("weft_rss_kb={rss1}");
    println!("weft_compile_rss_delta_kb={}", rss1.saturating_sub(rss0));
    println!(
        "weft_incr_add_port_ms={:.3}",
        median(&adds).as_secs_f64() * 1e3
    );
    println!(
        "weft_incr_add_port_max_ms={:.3}",
        adds.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
    println!("weft_incr_add_port_owners_changed={changed}");
    println!(
        "weft_incr_add_port_to_group_ms={:.3}",
        to_group.as_secs_f64() * 1e3
    );
    Ok(())
}
