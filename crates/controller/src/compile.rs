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

use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::{info, warn};
use weft_compiler::trace::{TraceError, TraceReport};
use weft_compiler::{Compiler, Delta, HostDirectory, HostView};
use weft_store::{Event, RangeRequest, Store, StoreError, Txn};

use crate::intent::IntentService;

/// Store prefix of hosts' tunnel addresses: `<prefix><host>` holds the address as text.
pub const TUNNELS: &str = "southbound/tunnels/";

/// Where each host's tunnel endpoint is, as hosts report it. Once attached to the store
/// ([`TunnelDirectory::attach`]) the addresses live there too, so that every replica, and a
/// replica restarted, resolves every host's ports to the same tunnel: without that, views
/// differ between replicas and after a restart until each host has reconnected, and agents
/// that fail over or resync are sent those differences.
#[derive(Default)]
pub struct TunnelDirectory {
    tunnels: RwLock<BTreeMap<String, IpAddr>>,
    // Hook (BGP integration): bumped on every change, so exports follow.
    version: watch::Sender<u64>,
    store: std::sync::OnceLock<Arc<dyn Store>>,
    /// Hosts' announcements on their way to the store, written in batches.
    announcements: std::sync::OnceLock<mpsc::UnboundedSender<Announcement>>,
}

/// One host's announced address, and who waits for it to be stored.
type Announcement = (String, IpAddr, oneshot::Sender<Result<(), String>>);

/// Most announcements in one store transaction (etcd refuses more than 128 operations).
const ANNOUNCE_BATCH: usize = 100;

impl std::fmt::Debug for TunnelDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TunnelDirectory")
            .field("tunnels", &self.tunnels)
            .field("stored", &self.store.get().is_some())
            .finish()
    }
}

impl TunnelDirectory {
    /// Records a host's tunnel address (here only; see [`TunnelDirectory::announce`]).
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

    /// A host announced where its tunnel ends: recorded here and, when attached, in the
    /// store (written only when it changed).
    pub async fn announce(&self, host: &str, ip: IpAddr) {
        if self.tunnel_ip(host) == Some(ip) {
            return;
        }
        self.set(host, ip);
        if let Some(tx) = self.announcements.get() {
            let (done, stored) = oneshot::channel();
            let _ = tx.send((host.to_string(), ip, done));
            let outcome = stored
                .await
                .unwrap_or_else(|_| Err("the directory was dropped".into()));
            if let Err(e) = outcome {
                warn!(%host, %ip, error = %e, "could not store the host's tunnel address; other replicas learn it when the host connects to them");
            }
        }
    }

    /// An operator set a host's tunnel address (`PUT /v1/hosts/{name}/tunnel`, for hosts
    /// without a Weft agent): stored first when attached, so replicas and restarts know it
    /// too, then recorded here. A store failure changes nothing.
    pub async fn put(&self, host: &str, ip: IpAddr) -> Result<(), StoreError> {
        if let Some(store) = self.store.get() {
            store
                .txn(Txn::new().put(format!("{TUNNELS}{host}"), ip.to_string()))
                .await?;
        }
        self.set(host, ip);
        Ok(())
    }

    /// Forgets a host's tunnel address here and, when attached, in the store (every
    /// replica follows). A store failure changes nothing.
    pub async fn withdraw(&self, host: &str) -> Result<(), StoreError> {
        if let Some(store) = self.store.get() {
            store
                .txn(Txn::new().delete(format!("{TUNNELS}{host}")))
                .await?;
        }
        self.remove(host);
        Ok(())
    }

    /// Loads the addresses kept in `store` and follows changes made by any replica, for as
    /// long as the directory lives.
    pub async fn attach(self: &Arc<Self>, store: Arc<dyn Store>) -> Result<(), StoreError> {
        let from = self.reload(store.as_ref()).await?;
        let _ = self.store.set(store.clone());
        let (tx, rx) = mpsc::unbounded_channel();
        if self.announcements.set(tx).is_ok() {
            tokio::spawn(store_announcements(store.clone(), rx));
        }
        tokio::spawn(follow_tunnels(Arc::downgrade(self), store, from));
        Ok(())
    }

    async fn reload(&self, store: &dyn Store) -> Result<u64, StoreError> {
        let r = store
            .range(RangeRequest {
                prefix: TUNNELS.into(),
                ..Default::default()
            })
            .await?;
        let mut seen = std::collections::BTreeSet::new();
        for kv in &r.kvs {
            if let Some((host, ip)) = parse_tunnel(&kv.key, &kv.value) {
                self.set(host, ip);
                seen.insert(host.to_string());
            }
        }
        let gone: Vec<String> = self
            .tunnels
            .read()
            .expect("tunnel lock")
            .keys()
            .filter(|h| !seen.contains(*h))
            .cloned()
            .collect();
        for h in gone {
            self.remove(&h);
        }
        Ok(r.revision)
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

/// Writes hosts' announced addresses, one transaction at a time, each carrying every
/// announcement queued meanwhile (up to [`ANNOUNCE_BATCH`]). When thousands of agents connect
/// at once (a cold start, a replica's failover), one transaction per host left thousands in
/// flight: each waited behind the others past its deadline, and the store seemed not to
/// answer at all.
async fn store_announcements(store: Arc<dyn Store>, mut rx: mpsc::UnboundedReceiver<Announcement>) {
    let mut batch = Vec::with_capacity(ANNOUNCE_BATCH);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < ANNOUNCE_BATCH {
            match rx.try_recv() {
                Ok(a) => batch.push(a),
                Err(_) => break,
            }
        }
        // A host announcing twice in one batch: its last address wins.
        let latest: BTreeMap<&str, IpAddr> =
            batch.iter().map(|(h, ip, _)| (h.as_str(), *ip)).collect();
        let txn = latest.iter().fold(Txn::new(), |txn, (host, ip)| {
            txn.put(format!("{TUNNELS}{host}"), ip.to_string())
        });
        let outcome = store.txn(txn).await.map(|_| ()).map_err(|e| e.to_string());
        for (_, _, done) in batch.drain(..) {
            let _ = done.send(outcome.clone());
        }
    }
}

fn parse_tunnel<'a>(key: &'a str, value: &[u8]) -> Option<(&'a str, IpAddr)> {
    let host = key.strip_prefix(TUNNELS)?;
    let ip = std::str::from_utf8(value).ok()?.parse().ok()?;
    Some((host, ip))
}

/// Applies tunnel addresses written by any replica (its own writes come back too, and
/// change nothing).
async fn follow_tunnels(
    dir: std::sync::Weak<TunnelDirectory>,
    store: Arc<dyn Store>,
    mut from: u64,
) {
    use futures::StreamExt;
    loop {
        let mut stream = match store.watch(TUNNELS, from + 1).await {
            Ok(s) => s,
            Err(StoreError::Closed) => return,
            Err(e) => {
                if let StoreError::Compacted { .. } = e {
                    let Some(d) = dir.upgrade() else { return };
                    if let Ok(r) = d.reload(store.as_ref()).await {
                        from = r;
                        continue;
                    }
                }
                warn!(error = %e, "watching host tunnel addresses failed; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(batch) = stream.next().await {
            let Some(d) = dir.upgrade() else { return };
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    warn!(error = %e, "host tunnel watch ended; restarting it");
                    break;
                }
            };
            from = batch.revision;
            for ev in batch.events {
                match ev {
                    Event::Put(kv) => {
                        if let Some((host, ip)) = parse_tunnel(&kv.key, &kv.value) {
                            d.set(host, ip);
                        }
                    }
                    Event::Delete { key, .. } => {
                        if let Some(host) = key.strip_prefix(TUNNELS) {
                            d.remove(host);
                        }
                    }
                }
            }
        }
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
    /// An existing port moved between hosts (or an interface or service port was
    /// re-parented): which host a port is local to changed for records that did not change.
    pub relocated: bool,
    /// An l2-network or l3vpn changed: any host's neighbourhood may have moved (route
    /// targets, subnet attachments), not only those of hosts whose ports changed.
    pub topology: bool,
}

impl CompiledBatch {
    /// The batch publishing `delta`, compiled from intent `changes` at `revision`; `intent`
    /// is the state after them.
    pub fn new(
        revision: u64,
        delta: Option<Delta>,
        changes: &[weft_model::Change],
        intent: &weft_model::Intent,
    ) -> CompiledBatch {
        CompiledBatch {
            revision,
            delta,
            hosts: hosts_of(changes, intent),
            relocated: relocated(changes),
            topology: changes.iter().any(|c| {
                matches!(
                    c.kind,
                    weft_model::Kind::L2Network | weft_model::Kind::L3vpn
                )
            }),
        }
    }
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

/// Whether an existing port changed host, or an existing interface or service port changed
/// what it hangs from.
fn relocated(changes: &[weft_model::Change]) -> bool {
    use weft_model::Object;
    changes.iter().any(|ch| match (&ch.before, &ch.after) {
        (Some(Object::InstancePort(a)), Some(Object::InstancePort(b))) => a.host != b.host,
        (Some(Object::Interface(a)), Some(Object::Interface(b))) => {
            a.parent != b.parent || a.port != b.port
        }
        (Some(Object::ServicePort(a)), Some(Object::ServicePort(b))) => a.interface != b.interface,
        _ => false,
    })
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
            relocated: false,
            topology: false,
        }));
        delta
    }
}

/// Most intent changes compiled in one round when batches queue up.
const MAX_MERGED_CHANGES: usize = 4096;
/// A compile round longer than this is followed by a pause as long as itself.
const SLOW_ROUND: std::time::Duration = std::time::Duration::from_millis(2);
/// The longest such pause.
const MAX_ROUND_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);

async fn run(
    intent: IntentService,
    compiler: Arc<Mutex<Compiler>>,
    mut rx: broadcast::Receiver<Arc<crate::ChangeBatch>>,
    compiled: watch::Sender<u64>,
    batches: broadcast::Sender<Arc<CompiledBatch>>,
) {
    loop {
        match rx.recv().await {
            Ok(first) => {
                // Batches committed while the last one compiled are compiled together:
                // under a stream of writes a busy network's datapath is then recomputed
                // once per round instead of once per commit (the intent read below is
                // already at least as new as every queued batch).
                let mut revision = first.revision;
                let mut merged: Option<Vec<weft_model::Change>> = None;
                while let Ok(next) = rx.try_recv() {
                    let changes = merged.get_or_insert_with(|| first.changes.clone());
                    changes.extend(next.changes.iter().cloned());
                    revision = next.revision;
                    if changes.len() >= MAX_MERGED_CHANGES {
                        break;
                    }
                }
                let changes = merged.as_deref().unwrap_or(&first.changes);
                let started = std::time::Instant::now();
                let out = intent.read(|i| {
                    let mut c = compiler.lock().expect("compiler lock");
                    let delta = c.apply(i, changes);
                    CompiledBatch::new(revision, Some(delta), changes, i)
                });
                let _ = batches.send(Arc::new(out));
                compiled.send_replace(revision);
                // A round that took long (a network of thousands of ports is recomputed
                // whole) leaves as much time to the writers before the next one, so a
                // stream of writes is compiled in fewer, larger rounds instead of one
                // core recompiling that network after every commit. Small rounds (the
                // usual case) do not wait.
                let took = started.elapsed();
                if took > SLOW_ROUND {
                    tokio::time::sleep(took.min(MAX_ROUND_PAUSE)).await;
                }
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
                    relocated: true,
                    topology: true,
                }));
                compiled.send_replace(revision);
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}
