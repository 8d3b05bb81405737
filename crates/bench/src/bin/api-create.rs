//! Issue 2 benchmark: create 10,000 ports with fixed IPs through the REST
//! API on the embedded store with concurrent clients, and, in the same run,
//! the store's raw durable commit rate (the floor the API builds on).
//!
//! `cargo run --release -p weft-bench --bin api-create [-- PORTS CLIENTS]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::json;
use weft_bench::{loadavg, ms, percentile};
use weft_client::Client;
use weft_controller::{Controller, ControllerConfig};
use weft_model::Kind;
use weft_store::{EmbeddedStore, Store, Txn};

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let ports: usize = args.get(1).map_or(Ok(10_000), |s| s.parse())?;
    let clients: usize = args.get(2).map_or(Ok(64), |s| s.parse())?;
    println!(
        "api-create: {ports} ports with fixed IPs, {clients} concurrent clients, load average {}",
        loadavg()
    );

    // Raw store commit rate with the same concurrency, in the same run.
    let raw = {
        let dir = tempfile::tempdir()?;
        let store = Arc::new(EmbeddedStore::open(&dir.path().join("raw.redb"))?);
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut tasks = Vec::new();
        for t in 0..clients {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < deadline {
                    store
                        .txn(Txn::new().put(format!("k/{t}/{n}"), vec![0u8; 200]))
                        .await
                        .expect("commit");
                    n += 1;
                }
                n
            }));
        }
        let mut total = 0;
        for t in tasks {
            total += t.await?;
        }
        total as f64 / 3.0
    };

    let dir = tempfile::tempdir()?;
    let mut cfg = ControllerConfig::new(dir.path());
    cfg.southbound = Some(weft_controller::southbound::SouthboundConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    });
    cfg.listen = "127.0.0.1:0".parse()?;
    let ctl = Controller::start(cfg).await?;
    let admin = Client::new(format!("http://{}", ctl.addr), ctl.new_admin_token.clone());
    let p = admin
        .create(Kind::Project, &json!({"name": "bench"}))
        .await?;
    let project = p["id"].as_str().unwrap_or_default().to_string();
    let member = admin
        .create_token(Some(&project), &["member"], "bench")
        .await?;
    let c = admin.with_token(member["token"].as_str().unwrap_or_default());
    let net = c
        .create(
            Kind::L2Network,
            &json!({"name": "big", "subnets": [{"cidr": "10.0.0.0/16"}]}),
        )
        .await?;
    let net_id = net["id"].as_str().unwrap_or_default().to_string();

    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let c = c.clone();
        let next = next.clone();
        let net_id = net_id.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= ports {
                    break;
                }
                let ip = format!("10.0.{}.{}", 1 + i / 250, 1 + i % 250);
                let t = Instant::now();
                c.create(
                    Kind::InstancePort,
                    &json!({"name": format!("p{i}"), "bindings": [{"service": net_id, "fixed_ips": [{"ip": ip}]}]}),
                )
                .await
                .expect("create");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await?);
    }
    let elapsed = start.elapsed();
    lat.sort();
    let rate = ports as f64 / elapsed.as_secs_f64();
    let stored = c.list(Kind::ServicePort, &[]).await?.len();
    assert_eq!(stored, ports, "every create must be stored");
    println!();
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| durable port creates/s via REST (port + interface + service port, fixed IP) | {rate:.0} |"
    );
    println!(
        "| create latency p50 / p99 / max (ms) | {} / {} / {} |",
        ms(percentile(&lat, 50.0)),
        ms(percentile(&lat, 99.0)),
        ms(*lat.last().unwrap_or(&Duration::ZERO))
    );
    println!(
        "| baseline: raw EmbeddedStore durable commits/s, {clients} committers, 200-byte puts | {raw:.0} |"
    );
    println!("| ratio API creates / raw commits | {:.2} |", rate / raw);
    println!(
        "| wall time for {ports} creates (s) | {:.2} |",
        elapsed.as_secs_f64()
    );
    ctl.shutdown().await;
    Ok(())
}
