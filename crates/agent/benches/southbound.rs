//! Southbound benchmark: one controller process, one process of lightweight agents (each on
//! its own real TLS connection), on loopback.
//!
//! ```text
//!  main ──spawns per size──► controller process (southbound + MemoryViewSource)
//!                                   │ spawns                 ▲ stdout lines:
//!                                   ▼                        │ synced <i> <sessions>
//!                            agents process (N agents) ──────┘ applied <i> <marker>
//! ```
//!
//! Per size (1 agent as the in-run baseline, then 100 and 1,000 by default):
//! - cold start: all agents dial at once; time until every one holds its snapshot;
//! - controller memory per connected host: RSS of the controller process, idle, with the
//!   agents connected minus before they came (agents live in the other process);
//! - latency from a view change to the concerned agent holding it (its backend was handed
//!   the new view): one host at a time, and all hosts in one revision; p50/p99; the time
//!   includes the agents process writing a line to a pipe, so it is an upper bound;
//! - reconnect storm: the southbound is killed and restarted on the same port while 10% of
//!   the views change; time from restart until every agent is in sync again, and TCP bytes
//!   on the port (TLS handshakes included), once resuming from revisions and once
//!   reconciling (history lost).
//!
//! Run: `cargo bench -p weft-agent --bench southbound` (sizes: `WEFT_BENCH_AGENTS=100,1000`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use weft_agent::{AgentOptions, Backend, Identity, MemoryViewStore, View};
use weft_controller::southbound::{MemoryWriteSink, Southbound, SouthboundConfig};
use weft_southbound::{HostChange, MemoryViewSource, Record, SplitMix64};
use weft_store::{EmbeddedStore, Store};

/// Records per host view (`WEFT_BENCH_RECORDS`, default 20) of `RECORD_BYTES` each.
fn records_per_host() -> usize {
    std::env::var("WEFT_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20)
}
const RECORD_BYTES: usize = 64;

/// The allocator of the `weft` binary (mimalloc), wrapped to count live heap bytes: RSS
/// alone mixes what an allocator keeps reserved with what the controller holds.
#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

#[allow(unsafe_code)]
mod counting {
    use std::alloc::{GlobalAlloc, Layout};
    use std::sync::atomic::{AtomicIsize, Ordering};

    /// Live heap bytes of this process.
    pub static LIVE: AtomicIsize = AtomicIsize::new(0);

    /// mimalloc plus a live-bytes counter.
    pub struct Counting;

    // SAFETY: every call is forwarded unchanged to mimalloc, which upholds the GlobalAlloc
    // contract; the counter only observes sizes.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: same layout, forwarded.
            let p = unsafe { mimalloc::MiMalloc.alloc(layout) };
            if !p.is_null() {
                LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
            }
            p
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
            // SAFETY: ptr was allocated by this allocator with this layout.
            unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: same layout, forwarded.
            let p = unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) };
            if !p.is_null() {
                LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
            }
            p
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            // SAFETY: ptr was allocated by this allocator with this layout.
            let p = unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                LIVE.fetch_add(
                    new_size as isize - layout.size() as isize,
                    Ordering::Relaxed,
                );
            }
            p
        }
    }

    /// Live heap KiB.
    pub fn live_kib() -> f64 {
        LIVE.load(Ordering::Relaxed) as f64 / 1024.0
    }
}
const MARKER: &str = "bench/marker";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--agents-process") {
        return agents_process(&args[i + 1..]);
    }
    if let Some(i) = args.iter().position(|a| a == "--controller-process") {
        let n: usize = args[i + 1].parse().expect("agent count");
        return tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
            .block_on(controller_process(n));
    }
    // `cargo bench` passes `--bench`; a filter argument is not used.
    let sizes: Vec<usize> = std::env::var("WEFT_BENCH_AGENTS")
        .unwrap_or_else(|_| "100,1000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("WEFT_BENCH_AGENTS: comma-separated counts")
        })
        .collect();
    let exe = std::env::current_exe().unwrap();
    let mut rows = Vec::new();
    for n in std::iter::once(1).chain(sizes) {
        eprintln!("== {n} agents");
        let out = Command::new(&exe)
            .args(["--controller-process", &n.to_string()])
            .stderr(Stdio::inherit())
            .output()
            .expect("running the controller process");
        assert!(out.status.success(), "controller process for {n} failed");
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find(|l| l.starts_with("RESULT "))
            .expect("a RESULT line")
            .to_string();
        rows.push(line);
    }
    println!();
    println!(
        "Southbound benchmark (loopback, real TLS, 2 shared cores; agents in a separate process; {} records of {RECORD_BYTES} B per view)",
        records_per_host()
    );
    println!(
        "{:>6} | {:>9} | {:>15} | {:>17} | {:>17} | {:>21} | {:>21} | {:>10}",
        "agents",
        "cold (ms)",
        "KiB/host heap/RSS",
        "one host p50/p99",
        "all hosts p50/p99",
        "storm resume ms/KiB",
        "storm reconcile ms/KiB",
        "snapshot KiB"
    );
    for row in rows {
        let kv: HashMap<&str, &str> = row
            .split_whitespace()
            .skip(1)
            .filter_map(|p| p.split_once('='))
            .collect();
        println!(
            "{:>6} | {:>9} | {:>15} | {:>17} | {:>17} | {:>21} | {:>21} | {:>10}",
            kv["n"],
            kv["cold_ms"],
            format!("{} / {}", kv["kib_per_host"], kv["rss_per_host"]),
            format!("{} / {} ms", kv["one_p50"], kv["one_p99"]),
            format!("{} / {} ms", kv["all_p50"], kv["all_p99"]),
            format!("{} / {}", kv["resume_ms"], kv["resume_kib"]),
            format!("{} / {}", kv["reconcile_ms"], kv["reconcile_kib"]),
            kv["cold_kib"],
        );
    }
    println!(
        "(latencies: change in the view source → agent's backend handed the view, seen through a pipe;"
    );
    println!(
        " KiB/host: controller live heap (and RSS) growth per idle connected agent; storm: kill + restart on the same"
    );
    println!(
        " port with 10% of views changed meanwhile, time to all in sync and TCP KiB both ways incl. TLS)"
    );
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn host(i: usize) -> String {
    format!("bench-{i:04}")
}

/// Waits until every agent reports at least `want` sessions; returns when the last did.
async fn wait_sessions(
    rx: &mut mpsc::UnboundedReceiver<(Instant, Ev)>,
    sessions: &mut [u64],
    want: u64,
) -> Instant {
    let mut pending = sessions.iter().filter(|s| **s < want).count();
    let mut last = Instant::now();
    while pending > 0 {
        let (at, ev) = tokio::time::timeout(Duration::from_secs(120), rx.recv())
            .await
            .expect("agents sync within 120 s")
            .expect("agents process alive");
        if let Ev::Synced(i, s) = ev {
            if sessions[i] < want && s >= want {
                pending -= 1;
                last = at;
            }
            sessions[i] = sessions[i].max(s);
        }
    }
    last
}

enum Ev {
    Synced(usize, u64),
    Applied(usize, u64),
}

async fn controller_process(n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(&dir.path().join("store.redb")).unwrap());
    let view = Arc::new(MemoryViewSource::new(1, 256));
    let sink = Arc::new(MemoryWriteSink::default());
    let mut cfg = SouthboundConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..SouthboundConfig::default()
    };
    let sb = Southbound::start(cfg.clone(), store.clone(), view.clone(), sink.clone())
        .await
        .unwrap();
    let addr = sb.addr();
    cfg.listen = addr;
    let mut sb = Some(sb);
    view.apply(
        (0..n)
            .map(|i| HostChange {
                host: host(i),
                upserts: (0..records_per_host())
                    .map(|r| Record::new(format!("nb/{r:03}"), vec![(i + r) as u8; RECORD_BYTES]))
                    .chain(std::iter::once(Record::new(
                        MARKER,
                        0u64.to_le_bytes().to_vec(),
                    )))
                    .collect(),
                deletes: vec![],
            })
            .collect(),
    );

    // Enrol every host through the real RPC, 16 at a time.
    let t = Instant::now();
    let ids_dir = dir.path().join("ids");
    let sem = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let admin = sb.as_ref().unwrap().admin();
        let d = ids_dir.join(host(i));
        let sem = sem.clone();
        tasks.spawn(async move {
            let _p = sem.acquire().await.unwrap();
            let (_, token) = admin
                .create_join_token(Some(host(i)), Duration::from_secs(600), String::new())
                .await
                .unwrap();
            weft_agent::enroll(&addr.to_string(), &token, &host(i), &d)
                .await
                .unwrap();
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    eprintln!("enrolled {n} hosts in {:?}", t.elapsed());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_kib();
    let heap_before = counting::live_kib();
    let (r, s) = sb.as_ref().unwrap().admin().wire_bytes();
    let enrol_bytes = r + s;

    // The agents process.
    let t_cold = Instant::now();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--agents-process",
            ids_dir.to_str().unwrap(),
            &n.to_string(),
            &addr.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let mut parts = line.split_whitespace();
            let (Some(kind), Some(i), Some(v)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            let (i, v): (usize, u64) = (i.parse().unwrap(), v.parse().unwrap());
            let ev = if kind == "synced" {
                Ev::Synced(i, v)
            } else {
                Ev::Applied(i, v)
            };
            if tx.send((Instant::now(), ev)).is_err() {
                break;
            }
        }
    });
    let mut sessions = vec![0u64; n];
    let done = wait_sessions(&mut rx, &mut sessions, 1).await;
    let cold = done - t_cold;
    let (r, s) = sb.as_ref().unwrap().admin().wire_bytes();
    let cold_bytes = r + s - enrol_bytes;
    eprintln!(
        "cold start of {n} agents: {cold:?}, {} KiB on the wire",
        cold_bytes / 1024
    );

    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_after = rss_kib();
    let heap_after = counting::live_kib();
    let kib_per_host = (heap_after - heap_before) / n as f64;
    let rss_per_host = (rss_after.saturating_sub(rss_before)) as f64 / n as f64;
    eprintln!(
        "controller live heap {heap_before:.0} KiB before, {heap_after:.0} KiB with {n} agents ({} connections): {kib_per_host:.1} KiB per host; RSS {rss_before} -> {rss_after} KiB ({rss_per_host:.1} KiB per host)",
        sb.as_ref().unwrap().admin().connection_count()
    );

    // One host at a time.
    let mut marker = 0u64;
    let mut rng = SplitMix64::new(42);
    let mut one = Vec::new();
    let rounds = 200;
    for _ in 0..rounds {
        let i = (rng.next() % n as u64) as usize;
        marker += 1;
        let t = Instant::now();
        view.put(&host(i), MARKER, marker.to_le_bytes().to_vec());
        loop {
            let (at, ev) = rx.recv().await.unwrap();
            if let Ev::Applied(j, m) = ev
                && j == i
                && m == marker
            {
                one.push(at - t);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    one.sort();

    // All hosts in one revision.
    let mut all = Vec::new();
    for _ in 0..5 {
        marker += 1;
        let changes = (0..n)
            .map(|i| HostChange {
                host: host(i),
                upserts: vec![Record::new(MARKER, marker.to_le_bytes().to_vec())],
                deletes: vec![],
            })
            .collect();
        let t = Instant::now();
        view.apply(changes);
        let mut got = 0;
        while got < n {
            let (at, ev) = rx.recv().await.unwrap();
            if let Ev::Applied(_, m) = ev
                && m == marker
            {
                all.push(at - t);
                got += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    all.sort();
    eprintln!(
        "latency one host p50 {:.2} ms p99 {:.2} ms; all hosts p50 {:.2} ms p99 {:.2} ms max {:.2} ms",
        pct(&one, 0.5),
        pct(&one, 0.99),
        pct(&all, 0.5),
        pct(&all, 0.99),
        pct(&all, 1.0)
    );

    // Reconnect storms.
    let (new, t_restart) = restart(sb.take().unwrap(), &view, &cfg, &store, &sink, n, false).await;
    sb = Some(new);
    let done = wait_sessions(&mut rx, &mut sessions, 2).await;
    let resume_ms = (done - t_restart).as_secs_f64() * 1000.0;
    let (r, s) = sb.as_ref().unwrap().admin().wire_bytes();
    let resume_bytes = r + s;
    let (new, t_restart) = restart(sb.take().unwrap(), &view, &cfg, &store, &sink, n, true).await;
    sb = Some(new);
    let done = wait_sessions(&mut rx, &mut sessions, 3).await;
    let reconcile_ms = (done - t_restart).as_secs_f64() * 1000.0;
    let (r, s) = sb.as_ref().unwrap().admin().wire_bytes();
    let reconcile_bytes = r + s;
    eprintln!(
        "storm (resume): {resume_ms:.0} ms, {} KiB; storm (reconcile): {reconcile_ms:.0} ms, {} KiB; cold snapshot {} KiB",
        resume_bytes / 1024,
        reconcile_bytes / 1024,
        cold_bytes / 1024
    );
    // Converged: every agent holds the source's final view (checked through its marker).
    drop(child.stdin.take());
    let _ = child.wait();
    println!(
        "RESULT n={n} cold_ms={:.0} cold_kib={} kib_per_host={kib_per_host:.1} rss_per_host={rss_per_host:.1} one_p50={:.2} one_p99={:.2} all_p50={:.2} all_p99={:.2} resume_ms={resume_ms:.0} resume_kib={} reconcile_ms={reconcile_ms:.0} reconcile_kib={}",
        cold.as_secs_f64() * 1000.0,
        cold_bytes / 1024,
        pct(&one, 0.5),
        pct(&one, 0.99),
        pct(&all, 0.5),
        pct(&all, 0.99),
        resume_bytes / 1024,
        reconcile_bytes / 1024,
    );
    if let Some(s) = sb.take() {
        s.shutdown().await;
    }
}

/// Kills the southbound, changes a tenth of the views (and forgets the history if asked),
/// and starts it again on the same port; returns it and when it was listening.
async fn restart(
    sb: Southbound,
    view: &Arc<MemoryViewSource>,
    cfg: &SouthboundConfig,
    store: &Arc<dyn Store>,
    sink: &Arc<MemoryWriteSink>,
    n: usize,
    forget: bool,
) -> (Southbound, Instant) {
    sb.shutdown().await;
    let changes = (0..n)
        .step_by(10)
        .map(|i| HostChange {
            host: host(i),
            upserts: vec![Record::new("nb/000", vec![0xee; RECORD_BYTES])],
            deletes: vec![format!("nb/{:03}", records_per_host() - 1)],
        })
        .collect();
    view.apply(changes);
    if forget {
        view.forget_history();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut tries = 0;
    loop {
        match Southbound::start(cfg.clone(), store.clone(), view.clone(), sink.clone()).await {
            Ok(s) => return (s, Instant::now()),
            Err(e) if tries < 100 => {
                tries += 1;
                eprintln!("restart: {e}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// A backend that tells the controller process when it was handed a new marker.
struct BenchBackend {
    idx: usize,
    last: u64,
    out: std::sync::mpsc::Sender<String>,
}

impl Backend for BenchBackend {
    fn apply(&mut self, view: &View) -> anyhow::Result<()> {
        if let Some(v) = view.get(MARKER)
            && let Ok(b) = <[u8; 8]>::try_from(v.as_slice())
        {
            let m = u64::from_le_bytes(b);
            if m != self.last {
                self.last = m;
                let _ = self.out.send(format!("applied {} {m}\n", self.idx));
            }
        }
        Ok(())
    }
}

fn agents_process(args: &[String]) {
    let dir = PathBuf::from(&args[0]);
    let n: usize = args[1].parse().unwrap();
    let addr = args[2].clone();
    let (out, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let stdout = std::io::stdout();
        let mut w = stdout.lock();
        for l in lines {
            let _ = w.write_all(l.as_bytes());
            let _ = w.flush();
        }
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut handles = Vec::new();
        for i in 0..n {
            let id = Identity::load(&dir.join(host(i))).unwrap();
            let mut opts = AgentOptions::new(vec![addr.clone()]);
            opts.jitter_seed = i as u64 * 7919 + 1;
            let backend = BenchBackend {
                idx: i,
                last: 0,
                out: out.clone(),
            };
            let agent = weft_agent::start(
                id,
                opts,
                Box::new(MemoryViewStore::default()),
                Box::new(backend),
            )
            .await
            .unwrap();
            let mut st = agent.watch_status();
            let out = out.clone();
            tokio::spawn(async move {
                let mut seen = 0;
                loop {
                    let s = st.borrow_and_update().sessions;
                    if s > seen {
                        seen = s;
                        let _ = out.send(format!("synced {i} {s}\n"));
                    }
                    if st.changed().await.is_err() {
                        break;
                    }
                }
            });
            handles.push(agent);
        }
        // Until the controller process closes our stdin.
        let _ = tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            let _ = std::io::stdin().read_line(&mut s);
        })
        .await;
        drop(handles);
    });
}
