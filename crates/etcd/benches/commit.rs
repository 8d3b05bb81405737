//! Durable commit rate through the `Store` trait: a real single-member etcd on
//! loopback beside the embedded store, same machine, same disk, same run.
//!
//! `cargo bench -p weft-etcd --bench commit` (`WEFT_BENCH_SECS`: seconds per figure,
//! default 3; `WEFT_BENCH_ROUNDS`: interleaved rounds, default 3). One 200-byte put per
//! transaction, from 1, 8 and 64 concurrent committers. Both stores fsync every
//! commit before answering (etcd its WAL, the embedded store its redb file, with group
//! commit in both).

use std::sync::Arc;
use std::time::{Duration, Instant};

use weft_etcd::EtcdStore;
use weft_etcd::testing::EtcdCluster;
use weft_store::{EmbeddedStore, Store, Txn, TxnOutcome};

const VALUE: [u8; 200] = [0xab; 200];
const COMMITTERS: [usize; 3] = [1, 8, 64];

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

struct Run {
    txns_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

async fn run(store: Arc<dyn Store>, tag: &str, committers: usize, length: Duration) -> Run {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..committers {
        let store = Arc::clone(&store);
        let tag = tag.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0u64;
            while start.elapsed() < length {
                let t0 = Instant::now();
                let out = store
                    .txn(Txn::new().put(format!("bench/{tag}/{c}/{i}"), VALUE.to_vec()))
                    .await
                    .expect("commit");
                assert!(matches!(out, TxnOutcome::Committed { .. }));
                lat.push(t0.elapsed());
                i += 1;
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.expect("committer task"));
    }
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let at = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize];
    Run {
        txns_per_sec: lat.len() as f64 / elapsed,
        p50: at(0.50),
        p99: at(0.99),
    }
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then a smoke run.
    let full = std::env::args().any(|a| a == "--bench");
    let length = if full {
        Duration::from_secs_f64(env("WEFT_BENCH_SECS", 3.0))
    } else {
        Duration::from_millis(200)
    };
    let rounds = if full {
        env("WEFT_BENCH_ROUNDS", 3usize)
    } else {
        1
    };

    let etcd = EtcdCluster::single().expect("start etcd (apt-get install -y etcd-server)");
    let dir = tempfile::tempdir().expect("tempdir");
    println!(
        "weft-etcd commit benchmark: {rounds} interleaved rounds of {length:?} per figure; etcd {} (data in {}), embedded store in {}",
        etcd.endpoints()[0],
        etcd.dir().display(),
        dir.path().display()
    );
    println!("(the machine is shared: figures are medians of the rounds, [min..max] beside)");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let etcd_store: Arc<dyn Store> = Arc::new(
            EtcdStore::connect(&etcd.endpoints())
                .await
                .expect("connect"),
        );
        let embedded: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("s.redb")).expect("open"));
        let version = EtcdStore::connect(&etcd.endpoints())
            .await
            .expect("connect")
            .member_status()
            .await
            .map(|s| s.version)
            .unwrap_or_default();
        println!("etcd version {version}");
        println!(
            "{:>10}  {:>28}  {:>14}  {:>28}  {:>14}",
            "committers", "etcd txn/s", "etcd p50/p99", "embedded txn/s", "emb. p50/p99"
        );
        for committers in COMMITTERS {
            let (mut e, mut m) = (Vec::new(), Vec::new());
            let (mut e_lat, mut m_lat) = (Vec::new(), Vec::new());
            for round in 0..rounds {
                let tag = format!("{committers}-{round}");
                let r = run(Arc::clone(&etcd_store), &tag, committers, length).await;
                e.push(r.txns_per_sec);
                e_lat.push((r.p50, r.p99));
                let r = run(Arc::clone(&embedded), &tag, committers, length).await;
                m.push(r.txns_per_sec);
                m_lat.push((r.p50, r.p99));
            }
            let span = |xs: &[f64]| {
                let (lo, hi) = xs
                    .iter()
                    .fold((f64::MAX, 0.0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
                format!("[{lo:.0}..{hi:.0}]")
            };
            let lat = |l: &mut Vec<(Duration, Duration)>| {
                l.sort();
                let (p50, p99) = l[l.len() / 2];
                format!(
                    "{:.1}/{:.1} ms",
                    p50.as_secs_f64() * 1e3,
                    p99.as_secs_f64() * 1e3
                )
            };
            println!(
                "{committers:>10}  {:>10.0} {:>17}  {:>14}  {:>10.0} {:>17}  {:>14}",
                median(&mut e.clone()),
                span(&e),
                lat(&mut e_lat),
                median(&mut m.clone()),
                span(&m),
                lat(&mut m_lat),
            );
        }
    });
}
