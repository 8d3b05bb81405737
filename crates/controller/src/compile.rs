//! The compile loop: keeps a [`Compiler`] in step with the intent and
//! answers traces and host views from it.
//!
//! ```text
//!  IntentService ──ChangeBatch──► compile task ──apply──► Compiler (Mutex)
//!                                      │ compiled revision (watch)
//!                                      ▼
//!                          trace API, southbound views
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{broadcast, watch};
use tracing::{info, warn};
use weft_compiler::trace::{TraceError, TraceReport};
use weft_compiler::{Compiler, Delta, HostDirectory, HostView};

use crate::intent::IntentService;

/// Where each host's tunnel endpoint is, as hosts report it.
#[derive(Default, Debug)]
pub struct TunnelDirectory {
    tunnels: RwLock<BTreeMap<String, IpAddr>>,
    // Hook (BGP integration): bumped on every change, so exports follow.
    version: watch::Sender<u64>,
}

impl TunnelDirectory {
    /// Records a host's tunnel address.
    pub fn set(&self, host: &str, ip: IpAddr) {
        let old = self
            .tunnels
            .write()
            .expect("tunnel lock")
            .insert(host.to_string(), ip);
        if old != Some(ip) {
            self.version.send_modify(|v| *v += 1); // Hook (BGP integration).
        }
    }

    /// Forgets a host.
    pub fn remove(&self, host: &str) {
        let removed = self.tunnels.write().expect("tunnel lock").remove(host);
        if removed.is_some() {
            self.version.send_modify(|v| *v += 1); // Hook (BGP integration).
        }
    }

    /// Follows changes: the value is a version bumped by every change.
    /// (Hook: BGP integration.)
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// A copy of the whole directory.
    pub fn snapshot(&self) -> BTreeMap<String, IpAddr> {
        self.tunnels.read().expect("tunnel lock").clone()
    }
}

impl HostDirectory for TunnelDirectory {
    fn tunnel_ip(&self, host: &str) -> Option<IpAddr> {
        self.tunnels.read().expect("tunnel lock").get(host).copied()
    }
}

/// A compiled delta, published to view builders.
#[derive(Clone, Debug)]
pub struct CompiledBatch {
    /// Intent revision compiled.
    pub revision: u64,
    /// What changed (`None` after a full recompile).
    pub delta: Option<Delta>,
    /// Hosts whose own ports changed (their neighbourhood may have moved).
    pub hosts: Vec<String>,
}

/// The compile loop's handle.
#[derive(Clone)]
pub struct CompileService {
    intent: IntentService,
    compiler: Arc<Mutex<Compiler>>,
    compiled: watch::Receiver<u64>,
    batches: broadcast::Sender<Arc<CompiledBatch>>,
    /// Tunnel endpoints of hosts.
    pub tunnels: Arc<TunnelDirectory>,
}

/// Hosts an intent change touches directly (a port moved, appeared, went).
fn hosts_of(changes: &[weft_model::Change], intent: &weft_model::Intent) -> Vec<String> {
    let mut hosts = Vec::new();
    for ch in changes {
        for obj in [&ch.before, &ch.after].into_iter().flatten() {
            match obj {
                weft_model::Object::InstancePort(p) => hosts.extend(p.host.clone()),
                weft_model::Object::ServicePort(sp) => {
                    if let Some(h) = intent
                        .port_of_interface(sp.interface.as_str())
                        .and_then(|p| p.host.clone())
                    {
                        hosts.push(h);
                    }
                }
                _ => {}
            }
        }
    }
    hosts.sort();
    hosts.dedup();
    hosts
}

impl CompileService {
    /// Compiles the current intent and follows its changes.
    pub fn start(intent: IntentService) -> Self {
        let (snapshot, revision, rx) = intent.subscribe();
        let started = std::time::Instant::now();
        let compiler = Arc::new(Mutex::new(Compiler::full(&snapshot)));
        drop(snapshot);
        info!(
            revision,
            flows = compiler.lock().expect("compiler lock").flow_count(),
            ms = started.elapsed().as_millis() as u64,
            "intent compiled"
        );
        let (tx, compiled) = watch::channel(revision);
        let (batches, _) = broadcast::channel(1024);
        let svc = CompileService {
            intent: intent.clone(),
            compiler: compiler.clone(),
            compiled,
            batches: batches.clone(),
            tunnels: Arc::new(TunnelDirectory::default()),
        };
        tokio::spawn(run(intent, compiler, rx, tx, batches));
        svc
    }

    /// The intent revision compiled so far.
    pub fn compiled_revision(&self) -> u64 {
        *self.compiled.borrow()
    }

    /// Waits until the compiler has caught up with `revision`.
    pub async fn wait_for(&self, revision: u64) {
        let mut rx = self.compiled.clone();
        let _ = rx.wait_for(|r| *r >= revision).await;
    }

    /// Follows compiled batches.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<CompiledBatch>> {
        self.batches.subscribe()
    }

    /// Runs `f` with the intent and the compiler, consistently.
    pub fn with<R>(&self, f: impl FnOnce(&weft_model::Intent, &Compiler) -> R) -> R {
        self.intent.read(|i| {
            let c = self.compiler.lock().expect("compiler lock");
            f(i, &c)
        })
    }

    /// Traces a packet (see `weft_compiler::trace`).
    pub fn trace(&self, from: &str, expr: &str) -> Result<TraceReport, TraceError> {
        let by_ip: BTreeMap<IpAddr, String> = self
            .tunnels
            .snapshot()
            .into_iter()
            .map(|(h, ip)| (ip, h))
            .collect();
        self.with(|i, c| {
            weft_compiler::trace::trace(c, i, self.tunnels.as_ref(), &by_ip, from, expr)
        })
    }

    /// The view of one host.
    pub fn host_view(&self, host: &str) -> HostView {
        self.with(|i, c| c.host_view(i, host, self.tunnels.as_ref()))
    }

    /// Replaces the routes learned from outside (BGP), recompiles the VRFs
    /// importing them and publishes the delta like an intent change.
    /// (Hook: BGP integration.)
    pub fn set_external(&self, routes: Vec<weft_compiler::ExternalRoute>) -> Delta {
        let revision = self.compiled_revision();
        let delta = self.intent.read(|i| {
            let mut c = self.compiler.lock().expect("compiler lock");
            c.set_external(i, routes)
        });
        let _ = self.batches.send(Arc::new(CompiledBatch {
            revision,
            delta: Some(delta.clone()),
            hosts: Vec::new(),
        }));
        delta
    }
}

async fn run(
    intent: IntentService,
    compiler: Arc<Mutex<Compiler>>,
    mut rx: broadcast::Receiver<Arc<crate::ChangeBatch>>,
    compiled: watch::Sender<u64>,
    batches: broadcast::Sender<Arc<CompiledBatch>>,
) {
    loop {
        match rx.recv().await {
            Ok(batch) => {
                let (delta, hosts) = intent.read(|i| {
                    let mut c = compiler.lock().expect("compiler lock");
                    (c.apply(i, &batch.changes), hosts_of(&batch.changes, i))
                });
                let _ = batches.send(Arc::new(CompiledBatch {
                    revision: batch.revision,
                    delta: Some(delta),
                    hosts,
                }));
                compiled.send_replace(batch.revision);
            }
            Err(broadcast::error::RecvError::Lagged(n)) => {
                warn!(
                    missed = n,
                    "compile loop fell behind; recompiling everything"
                );
                let (snapshot, revision) = intent.read(|i| (i.clone(), intent.revision()));
                let fresh = tokio::task::spawn_blocking(move || Compiler::full(&snapshot))
                    .await
                    .expect("full compile does not panic");
                // Batches after the snapshot are still queued and re-applied.
                intent.read(|i| {
                    let mut c = compiler.lock().expect("compiler lock");
                    // Hook (BGP integration): keep the routes learned from outside.
                    let external = c.external().to_vec();
                    *c = fresh;
                    if !external.is_empty() {
                        c.set_external(i, external);
                    }
                });
                let _ = batches.send(Arc::new(CompiledBatch {
                    revision,
                    delta: None,
                    hosts: Vec::new(),
                }));
                compiled.send_replace(revision);
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
