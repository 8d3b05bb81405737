//! Durable commit rate of `EmbeddedStore`, beside baselines measured in the
//! same run on the same disk.
//!
//! `cargo bench -p weft-store --bench commit` (set `WEFT_BENCH_DIR` to put
//! the files on another disk; `WEFT_BENCH_SECS` to change the duration of
//! each figure, default 3).
//!
//! Figures, all with one 200-byte put per transaction:
//! - fsync baseline: `pwrite` + `fdatasync` of 200 bytes inside a
//!   preallocated plain file;
//! - redb baseline: one redb write transaction with `Durability::Immediate`
//!   per put, from one thread (what a store without group commit gets);
//! - `EmbeddedStore` with 1, 8 and 64 concurrent committers;
//! - `get` latency while 64 committers run (reads must not wait for fsync).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use redb::{Database, Durability, TableDefinition};
use weft_store::{EmbeddedStore, Store, Txn, TxnOutcome};

const VALUE: [u8; 200] = [0xab; 200];

fn secs() -> Duration {
    let s = std::env::var("WEFT_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    Duration::from_secs_f64(s)
}

fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("WEFT_BENCH_DIR") {
        Some(dir) => tempfile::tempdir_in(dir).expect("tempdir in WEFT_BENCH_DIR"),
        None => tempfile::tempdir().expect("tempdir"),
    }
}

fn fsync_baseline(dir: &Path, run: Duration) -> f64 {
    use std::os::unix::fs::FileExt;
    // Overwrite inside a preallocated file, as a database does: appending
    // would also sync the file size (a journal commit) on every call.
    let file = std::fs::File::create(dir.join("fsync.bin")).unwrap();
    file.write_all_at(&vec![0; 1 << 20], 0).unwrap();
    file.sync_all().unwrap();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < run {
        file.write_all_at(&VALUE, (n % 4096) * 200).unwrap();
        file.sync_data().unwrap();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

fn redb_baseline(dir: &Path, run: Duration) -> f64 {
    const T: TableDefinition<&str, &[u8]> = TableDefinition::new("t");
    let db = Database::create(dir.join("redb.redb")).unwrap();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < run {
        let mut wtx = db.begin_write().unwrap();
        wtx.set_durability(Durability::Immediate).unwrap();
        {
            let mut t = wtx.open_table(T).unwrap();
            t.insert(format!("bench/{n}").as_str(), &VALUE[..]).unwrap();
        }
        wtx.commit().unwrap();
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

struct StoreRun {
    txns_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

async fn store_run(path: PathBuf, committers: usize, run: Duration) -> StoreRun {
    let store = Arc::new(EmbeddedStore::open(&path).unwrap());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..committers {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = 0u64;
            while start.elapsed() < run {
                let t0 = Instant::now();
                let out = store
                    .txn(Txn::new().put(format!("bench/{c}/{i}"), VALUE.to_vec()))
                    .await
                    .unwrap();
                assert!(matches!(out, TxnOutcome::Committed { .. }));
                lat.push(t0.elapsed());
                i += 1;
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    let (p50, p99) = percentiles(&mut lat);
    StoreRun {
        txns_per_sec: lat.len() as f64 / elapsed,
        p50,
        p99,
    }
}

/// `get` latency while 64 committers keep the committer busy.
async fn read_under_load(path: PathBuf, run: Duration) -> (Duration, Duration, Duration, f64) {
    let store = Arc::new(EmbeddedStore::open(&path).unwrap());
    store
        .txn(Txn::new().put("bench/read", VALUE.to_vec()))
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for c in 0..64 {
        let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
        writers.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                store
                    .txn(Txn::new().put(format!("bench/{c}/{i}"), VALUE.to_vec()))
                    .await
                    .unwrap();
                i += 1;
            }
            i
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    let mut lat = Vec::new();
    while start.elapsed() < run {
        let t0 = Instant::now();
        let (kv, _) = store.get("bench/read").await.unwrap();
        assert!(kv.is_some());
        lat.push(t0.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    let mut commits = 0;
    for w in writers {
        commits += w.await.unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64() + 0.2;
    let max = lat.iter().copied().max().unwrap_or_default();
    let (p50, p99) = percentiles(&mut lat);
    (p50, p99, max, commits as f64 / elapsed)
}

fn percentiles(lat: &mut [Duration]) -> (Duration, Duration) {
    if lat.is_empty() {
        return (Duration::ZERO, Duration::ZERO);
    }
    lat.sort_unstable();
    let at = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize];
    (at(0.50), at(0.99))
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and
    // then a quick smoke run is enough.
    let full = std::env::args().any(|a| a == "--bench");
    let run = if full {
        secs()
    } else {
        Duration::from_millis(200)
    };
    let rounds: usize = if full {
        std::env::var("WEFT_BENCH_ROUNDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3)
    } else {
        1
    };
    let dir = bench_dir();
    println!(
        "weft-store commit benchmark: {rounds} interleaved rounds of {run:?} per figure, files in {}",
        dir.path().display()
    );
    println!("(the machine is shared: figures are medians of the rounds, [min..max] beside)");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let labels = [
        "baseline: pwrite+fdatasync 200 B".to_owned(),
        "baseline: redb, 1 Immediate commit per put".to_owned(),
        "EmbeddedStore, 1 committer".to_owned(),
        "EmbeddedStore, 8 concurrent committers".to_owned(),
        "EmbeddedStore, 64 concurrent committers".to_owned(),
    ];
    let mut rates = vec![Vec::new(); labels.len()];
    let mut latencies = vec![Vec::new(); labels.len()];
    let mut reads = Vec::new();
    for round in 0..rounds {
        rates[0].push(fsync_baseline(dir.path(), run));
        rates[1].push(redb_baseline(dir.path(), run));
        for (i, committers) in [1, 8, 64].into_iter().enumerate() {
            let path = dir.path().join(format!("store-{committers}-{round}.redb"));
            let r = rt.block_on(store_run(path, committers, run));
            rates[2 + i].push(r.txns_per_sec);
            latencies[2 + i].push((r.p50, r.p99));
        }
        reads.push(rt.block_on(read_under_load(
            dir.path().join(format!("read-{round}.redb")),
            run,
        )));
    }
    for (i, label) in labels.iter().enumerate() {
        let (lo, hi) = rates[i]
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        let mid = median(&mut rates[i]);
        print!("{label:<44} {mid:>8.0} txn/s  [{lo:.0}..{hi:.0}]");
        if let Some((p50, p99)) = latencies[i].get(latencies[i].len() / 2) {
            print!("  latency p50 {p50:.2?} p99 {p99:.2?}");
        }
        println!();
    }
    reads.sort_by_key(|r| r.1);
    let (p50, p99, max, rate) = reads[reads.len() / 2];
    println!(
        "{:<44} p50 {p50:.2?}, p99 {p99:.2?}, max {max:.2?} (commits meanwhile {rate:.0}/s)",
        "get latency under 64 committers"
    );
}
