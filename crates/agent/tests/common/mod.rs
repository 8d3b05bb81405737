//! Test harness: a southbound server on loopback over an `EmbeddedStore` in a temporary
//! directory, a `MemoryViewSource`, a `MemoryWriteSink`, enrolment of agents, and a log
//! capture to check that refusals are logged with the host's identity.

#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use weft_agent::{AgentHandle, AgentOptions, Identity, MemoryBackend, RedbViewStore};
use weft_controller::southbound::{MemoryWriteSink, Southbound, SouthboundConfig};
use weft_southbound::MemoryViewSource;
use weft_store::{EmbeddedStore, Store};

/// Everything logged by this test binary.
static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the log capture (once per binary).
pub fn init_logs() {
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let w = Capture(buf.clone());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "info".into()),
            )
            .with_ansi(false)
            .with_writer(move || w.clone())
            .try_init();
        buf
    });
}

/// The captured log.
pub fn logs() -> String {
    String::from_utf8_lossy(&LOGS.get().expect("init_logs first").lock().unwrap()).into_owned()
}

/// Length of the log now (a mark to search after).
pub fn log_mark() -> usize {
    LOGS.get().expect("init_logs first").lock().unwrap().len()
}

/// Waits until a log line after `mark` contains every one of `needles`.
pub async fn expect_log(mark: usize, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let all = logs();
        let tail = &all[mark.min(all.len())..];
        if let Some(line) = tail.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            return line.to_string();
        }
        if Instant::now() > deadline {
            panic!("no log line with {needles:?} after mark; log tail:\n{tail}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `f` holds, polling.
pub async fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A controller's southbound on loopback.
pub struct Harness {
    pub dir: TempDir,
    pub store: Arc<dyn Store>,
    pub view: Arc<MemoryViewSource>,
    pub sink: Arc<MemoryWriteSink>,
    pub cfg: SouthboundConfig,
    pub sb: Option<Southbound>,
    pub addr: SocketAddr,
}

impl Harness {
    /// Starts a southbound with a view source keeping `history` deltas per host.
    pub async fn start(history: usize) -> Harness {
        Self::start_with(history, SouthboundConfig::default()).await
    }

    /// Starts with a given configuration (its listen address is replaced by loopback).
    pub async fn start_with(history: usize, mut cfg: SouthboundConfig) -> Harness {
        init_logs();
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(&dir.path().join("intent.redb")).unwrap());
        let view = Arc::new(MemoryViewSource::new(1000, history));
        let sink = Arc::new(MemoryWriteSink::default());
        cfg.listen = "127.0.0.1:0".parse().unwrap();
        let sb = Southbound::start(cfg.clone(), store.clone(), view.clone(), sink.clone())
            .await
            .unwrap();
        let addr = sb.addr();
        cfg.listen = addr;
        Harness {
            dir,
            store,
            view,
            sink,
            cfg,
            sb: Some(sb),
            addr,
        }
    }

    /// Stops the southbound at once (the controller "dies"): listener and connections close.
    pub async fn kill(&mut self) {
        if let Some(sb) = self.sb.take() {
            sb.shutdown().await;
        }
    }

    /// Starts it again on the same port, with the same store and view source.
    pub async fn restart(&mut self) {
        self.kill().await;
        let mut tries = 0;
        loop {
            match Southbound::start(
                self.cfg.clone(),
                self.store.clone(),
                self.view.clone(),
                self.sink.clone(),
            )
            .await
            {
                Ok(sb) => {
                    self.sb = Some(sb);
                    return;
                }
                Err(e) if tries < 50 => {
                    tries += 1;
                    eprintln!("restart: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("restart failed: {e}"),
            }
        }
    }

    pub fn sb(&self) -> &Southbound {
        self.sb.as_ref().expect("southbound running")
    }

    /// Creates a join token (for one host name if given).
    pub async fn token(&self, host: Option<&str>) -> String {
        self.sb()
            .admin()
            .create_join_token(
                host.map(str::to_string),
                Duration::from_secs(600),
                "test".into(),
            )
            .await
            .unwrap()
            .1
    }

    /// A fresh state directory.
    pub fn state_dir(&self, name: &str) -> PathBuf {
        let d = self.dir.path().join("agents").join(name);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// Enrols a host through the real `Enroll` RPC.
    pub async fn enroll(&self, name: &str) -> (Identity, PathBuf) {
        let token = self.token(None).await;
        let dir = self.state_dir(name);
        let id = weft_agent::enroll(&self.addr.to_string(), &token, name, &dir)
            .await
            .unwrap();
        (id, dir)
    }

    /// Agent options pointing at this harness, with short backoff.
    pub fn options(&self, seed: u64) -> AgentOptions {
        let mut o = AgentOptions::new(vec![self.addr.to_string()]);
        o.backoff_initial = Duration::from_millis(50);
        o.backoff_max = Duration::from_millis(800);
        o.jitter_seed = seed;
        o
    }

    /// Starts an agent with its view file in `dir`.
    pub async fn agent(
        &self,
        id: &Identity,
        dir: &std::path::Path,
        backend: MemoryBackend,
        seed: u64,
    ) -> AgentHandle {
        let store = RedbViewStore::open(&dir.join("view.redb")).unwrap();
        weft_agent::start(
            id.clone(),
            self.options(seed),
            Box::new(store),
            Box::new(backend),
        )
        .await
        .unwrap()
    }
}

/// Waits until the backend holds exactly the source's view of `host`.
pub async fn converged(view: &MemoryViewSource, host: &str, backend: &MemoryBackend) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if backend.current() == view.records(host) {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "{host} did not converge: backend has {} records, source {}",
                backend.current().len(),
                view.records(host).len()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
