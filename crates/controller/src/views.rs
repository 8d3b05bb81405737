//! Host views for the southbound: the compiled pipeline cut per host into
//! records, with a bounded history of per-host deltas.
//!
//! ```text
//!  CompileService ──CompiledBatch──► follower ──► hosts whose datapaths changed
//!  TunnelDirectory ──changed──────►      │          recompute their view, diff
//!                                        ▼
//!                          per-host records + deltas ──► ViewSource (southbound)
//! ```
//!
//! A record is one owner's fragment as this host sees it (key = the owner's
//! key, value = the fragment in JSON), so a one-port change updates a few
//! records on the hosts that see that port. Only hosts that asked for their
//! view are tracked.
//!
//! Revisions are the intent revision shifted left by 16 bits plus a counter
//! of changes that did not come from intent (routes learned by BGP, tunnel
//! addresses): monotonic across controller restarts, as agents need.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use weft_southbound::{Record, ViewDelta, ViewSource};

use crate::compile::CompileService;

/// Deltas kept per host; older resumes reconcile instead.
const HISTORY: usize = 512;

pub use weft_compiler::view::{decode_records as decode, encode_record as encode};

struct Tracked {
    dps: BTreeSet<String>,
    records: BTreeMap<String, Vec<u8>>,
    history: VecDeque<ViewDelta>,
    /// Deltas cover revisions after this one.
    base: u64,
}

struct Inner {
    revision: u64,
    intent_revision: u64,
    extra: u64,
    hosts: HashMap<String, Tracked>,
    by_dp: HashMap<String, HashSet<String>>,
}

/// The southbound's [`ViewSource`] over the compile loop.
pub struct HostViews {
    compile: CompileService,
    inner: Mutex<Inner>,
    notify: watch::Sender<u64>,
}

fn compose(intent: u64, extra: u64) -> u64 {
    (intent << 16) | extra.min(0xffff)
}

impl HostViews {
    /// Views over `compile`, following its batches and tunnel changes.
    pub fn start(compile: CompileService) -> Arc<HostViews> {
        let rev = compile.compiled_revision();
        let (notify, _) = watch::channel(compose(rev, 0));
        let views = Arc::new(HostViews {
            compile: compile.clone(),
            inner: Mutex::new(Inner {
                revision: compose(rev, 0),
                intent_revision: rev,
                extra: 0,
                hosts: HashMap::new(),
                by_dp: HashMap::new(),
            }),
            notify,
        });
        let mut batches = compile.subscribe();
        let mut tunnels = compile.tunnels.watch();
        let weak = Arc::downgrade(&views);
        tokio::spawn(async move {
            loop {
                let changed: Option<(u64, Option<BTreeSet<String>>, Vec<String>)> = tokio::select! {
                    b = batches.recv() => match b {
                        Ok(b) => {
                            let dps = b.delta.as_ref().map(|d| {
                                let mut s = BTreeSet::new();
                                compile.with(|_, c| {
                                    for o in &d.changed {
                                        if let Some(f) = c.fragment(o) {
                                            s.extend(f.touched_datapaths().into_iter().map(str::to_string));
                                        }
                                    }
                                });
                                // Owners that vanished: their datapath is in the key.
                                for o in &d.changed {
                                    if let weft_compiler::Owner::Network(n) = o {
                                        s.insert(weft_compiler::names::ls(n));
                                    }
                                    if let weft_compiler::Owner::Vrf(v) | weft_compiler::Owner::Imported(v) = o {
                                        s.insert(weft_compiler::names::lr(v));
                                    }
                                }
                                s
                            });
                            // Removed owners leave no fragment: recompute
                            // every host when anything disappeared.
                            let removed = b.delta.as_ref().is_some_and(|d| {
                                compile.with(|_, c| d.changed.iter().any(|o| c.fragment(o).is_none()))
                            });
                            Some((b.revision, if removed { None } else { dps }, b.hosts.clone()))
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Some((compile.compiled_revision(), None, Vec::new())),
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                    r = tunnels.changed() => match r {
                        Ok(()) => Some((compile.compiled_revision(), None, Vec::new())),
                        Err(_) => return,
                    },
                };
                let Some(views) = weak.upgrade() else { return };
                if let Some((rev, dps, hosts)) = changed {
                    views.update(rev, dps, &hosts);
                }
            }
        });
        views
    }

    fn compute(&self, host: &str) -> (BTreeSet<String>, BTreeMap<String, Vec<u8>>) {
        self.compile.with(|intent, c| {
            let dps = weft_compiler::view::neighbourhood(intent, host);
            let v = c.host_view(intent, host, self.compile.tunnels.as_ref());
            let records = v
                .fragments
                .iter()
                .map(|(k, f)| (k.clone(), encode(f)))
                .collect();
            (dps, records)
        })
    }

    fn update(&self, intent_rev: u64, dps: Option<BTreeSet<String>>, hosts: &[String]) {
        let mut g = self.inner.lock().expect("views lock");
        let inner = &mut *g;
        if intent_rev > inner.intent_revision {
            inner.intent_revision = intent_rev;
            inner.extra = 0;
        } else {
            inner.extra += 1;
        }
        let rev = compose(inner.intent_revision, inner.extra).max(inner.revision + 1);
        // Which tracked hosts may see a difference.
        let affected: Vec<String> = match &dps {
            None => inner.hosts.keys().cloned().collect(),
            Some(dps) => {
                let mut a: HashSet<String> = hosts
                    .iter()
                    .filter(|h| inner.hosts.contains_key(*h))
                    .cloned()
                    .collect();
                for dp in dps {
                    if let Some(hs) = inner.by_dp.get(dp) {
                        a.extend(hs.iter().cloned());
                    }
                }
                a.into_iter().collect()
            }
        };
        let mut any = false;
        for host in affected {
            let (dps, records) = self.compute(&host);
            let Some(t) = inner.hosts.get_mut(&host) else {
                continue;
            };
            let mut delta = ViewDelta {
                revision: rev,
                upserts: Vec::new(),
                deleted: Vec::new(),
            };
            for (k, v) in &records {
                if t.records.get(k) != Some(v) {
                    delta.upserts.push(Record::new(k.clone(), v.clone()));
                }
            }
            for k in t.records.keys() {
                if !records.contains_key(k) {
                    delta.deleted.push(k.clone());
                }
            }
            if dps != t.dps {
                for dp in &t.dps {
                    if let Some(s) = inner.by_dp.get_mut(dp) {
                        s.remove(&host);
                    }
                }
                for dp in &dps {
                    inner
                        .by_dp
                        .entry(dp.clone())
                        .or_default()
                        .insert(host.clone());
                }
                t.dps = dps;
            }
            if delta.upserts.is_empty() && delta.deleted.is_empty() {
                continue;
            }
            t.records = records;
            t.history.push_back(delta);
            while t.history.len() > HISTORY {
                if let Some(d) = t.history.pop_front() {
                    t.base = d.revision;
                }
            }
            any = true;
        }
        inner.revision = rev;
        drop(g);
        if any {
            self.notify.send_replace(rev);
        }
    }

    /// Number of hosts whose views are tracked.
    pub fn tracked(&self) -> usize {
        self.inner.lock().expect("views lock").hosts.len()
    }
}

impl ViewSource for HostViews {
    fn snapshot(&self, host: &str) -> (u64, Vec<Record>) {
        {
            let g = self.inner.lock().expect("views lock");
            if let Some(t) = g.hosts.get(host) {
                let recs = t
                    .records
                    .iter()
                    .map(|(k, v)| Record::new(k.clone(), v.clone()))
                    .collect();
                return (g.revision, recs);
            }
        }
        let (dps, records) = self.compute(host);
        let mut g = self.inner.lock().expect("views lock");
        let rev = g.revision;
        for dp in &dps {
            g.by_dp
                .entry(dp.clone())
                .or_default()
                .insert(host.to_string());
        }
        let recs: Vec<Record> = records
            .iter()
            .map(|(k, v)| Record::new(k.clone(), v.clone()))
            .collect();
        g.hosts.insert(
            host.to_string(),
            Tracked {
                dps,
                records,
                history: VecDeque::new(),
                base: rev,
            },
        );
        (rev, recs)
    }

    fn changes_since(&self, host: &str, revision: u64) -> Option<Vec<ViewDelta>> {
        let g = self.inner.lock().expect("views lock");
        if revision > g.revision {
            return None;
        }
        let t = g.hosts.get(host)?;
        if revision < t.base {
            return None;
        }
        Some(
            t.history
                .iter()
                .filter(|d| d.revision > revision)
                .cloned()
                .collect(),
        )
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }
}
