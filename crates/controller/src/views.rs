//! Host views for the southbound: the compiled pipeline cut per host into
//! records, kept up to date incrementally, with per-host notification.
//!
//! ```text
//!  CompileService ──CompiledBatch──► follower ──► Table::apply: hosts whose datapaths or
//!  TunnelDirectory ──changed──────►     │          address sets the changed owners touch
//!                                       │          recompute those owners' records only
//!                                       ▼
//!        per-host records (shared values, revision per record, tombstones)
//!          ──► ViewSource (southbound): snapshot, changes_since, subscribe_host
//! ```
//!
//! A record is one owner's fragment as this host sees it (key = the owner's
//! key, value = the fragment encoded by the compiler). Most hosts that see an
//! owner see the same record (every host but the port's own sees a port the
//! same way): a record depends on a host only through the inputs
//! [`weft_compiler::view::RecordInputs`] names, so it is computed once per
//! distinct input signature and its bytes are shared by every host holding
//! it. A change recomputes the changed owners' records on the hosts that see
//! them, not whole views; a whole view is computed only for a new host, a host
//! whose own ports changed, or one whose neighbourhood moved.
//!
//! Instead of a history of deltas per host, every record carries the revision
//! that last changed it and removed keys leave a tombstone (a bounded number
//! per host): the changes after a revision are the records newer than it and
//! the tombstones newer than it, one merged delta. Only hosts that asked for
//! their view are tracked, and only their sessions are woken when it changes.
//!
//! Revisions are the intent revision shifted left by 16 bits plus a counter
//! of changes that did not come from intent (routes learned by BGP, tunnel
//! addresses): monotonic across controller restarts, as agents need.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use weft_compiler::view::{RecordInputs, named_sets, neighbourhood, record_inputs};
use weft_compiler::{Compiler, HostDirectory, Owner};
use weft_model::Intent;
use weft_southbound::{Record, ViewDelta, ViewSource};

use crate::compile::{CompileService, CompiledBatch};

/// Removed keys remembered per host; a resume from before the oldest one forgotten
/// reconciles instead.
const TOMBSTONES: usize = 256;

pub use weft_compiler::view::{decode_records as decode, encode_record as encode};

/// One computed record, shared by every host with the same inputs.
#[derive(Debug)]
struct Computed {
    value: Arc<[u8]>,
    /// Address sets its flows name.
    sets: Box<[Arc<str>]>,
}

type Variant = Option<Arc<Computed>>;

/// What a record of one owner reads of a host (see [`RecordInputs`]): bit i of `dps` is
/// set when the host's neighbourhood holds the owner's i-th input datapath, same for
/// `sets`; `local` names the host when it is one the record treats as local.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sig {
    dps: u64,
    sets: u64,
    local: Option<u32>,
}

/// What the table knows of one owner's current fragment.
struct OwnerInfo {
    key: Arc<str>,
    dps: Box<[Arc<str>]>,
    sets: Box<[Arc<str>]>,
    ports: Box<[String]>,
    vif_hosts: Box<[String]>,
    /// Hosts of `ports` (read from the intent when first needed; dropped when ports move).
    port_hosts: Option<Box<[String]>>,
    /// Records computed so far, by signature (a handful: remote hosts share one).
    variants: Vec<(Sig, Variant)>,
}

impl OwnerInfo {
    fn new(owner: &Owner, inputs: RecordInputs, key: Option<Arc<str>>) -> OwnerInfo {
        OwnerInfo {
            key: key.unwrap_or_else(|| owner.key().into()),
            dps: inputs.datapaths.into_iter().map(Arc::from).collect(),
            sets: inputs.sets.into_iter().map(Arc::from).collect(),
            ports: inputs.ports.into_iter().collect(),
            vif_hosts: inputs.hosts.into_iter().collect(),
            port_hosts: None,
            variants: Vec::new(),
        }
    }

    fn cacheable(&self) -> bool {
        self.dps.len() <= 64 && self.sets.len() <= 64
    }
}

/// One record of a tracked host.
#[derive(Clone, Debug)]
struct Rec {
    key: Arc<str>,
    value: Arc<[u8]>,
    /// Revision of its last change.
    rev: u64,
}

struct Tracked {
    name: Arc<str>,
    dps: BTreeSet<String>,
    /// Address sets named by the flows of its records (the union of `refs`).
    sets: BTreeSet<String>,
    /// Records whose flows name address sets, with those sets.
    refs: BTreeMap<Arc<str>, Box<[Arc<str>]>>,
    /// Sorted by key.
    records: Vec<Rec>,
    /// Keys removed, oldest first, with the revision that removed them.
    tombstones: VecDeque<(Arc<str>, u64)>,
    /// Changes are known after this revision only.
    base: u64,
    /// Revision of the last change.
    last: u64,
}

impl Tracked {
    fn find(&self, key: &str) -> Result<usize, usize> {
        self.records.binary_search_by(|r| (*r.key).cmp(key))
    }

    /// Sets `key` to `value` (or removes it) at `rev`; true when something changed.
    fn put(&mut self, key: &Arc<str>, value: Option<&Arc<[u8]>>, rev: u64) -> bool {
        match (self.find(key), value) {
            (Ok(i), Some(v)) => {
                let r = &mut self.records[i];
                if Arc::ptr_eq(&r.value, v) || r.value == *v {
                    return false;
                }
                r.value = v.clone();
                r.rev = rev;
            }
            (Err(i), Some(v)) => {
                self.records.insert(
                    i,
                    Rec {
                        key: key.clone(),
                        value: v.clone(),
                        rev,
                    },
                );
                self.tombstones.retain(|(k, _)| k != key);
            }
            (Ok(i), None) => {
                self.records.remove(i);
                self.tombstone(key.clone(), rev);
            }
            (Err(_), None) => return false,
        }
        self.last = rev;
        true
    }

    fn tombstone(&mut self, key: Arc<str>, rev: u64) {
        self.tombstones.push_back((key, rev));
        while self.tombstones.len() > TOMBSTONES {
            if let Some((_, r)) = self.tombstones.pop_front() {
                self.base = self.base.max(r);
            }
        }
    }

    /// Replaces every record with `new` (sorted by key) at `rev`, in one pass; records whose
    /// value is unchanged keep their revision. True when something changed.
    fn replace_all(&mut self, new: Vec<(Arc<str>, Arc<[u8]>)>, rev: u64) -> bool {
        let old = std::mem::take(&mut self.records);
        let mut out = Vec::with_capacity(new.len());
        let mut changed = false;
        let mut old = old.into_iter().peekable();
        for (key, value) in new {
            while let Some(o) = old.next_if(|o| o.key < key) {
                self.tombstone(o.key, rev);
                changed = true;
            }
            match old.next_if(|o| o.key == key) {
                Some(o) if Arc::ptr_eq(&o.value, &value) || o.value == value => out.push(o),
                found => {
                    if found.is_none() && !self.tombstones.is_empty() {
                        self.tombstones.retain(|(k, _)| *k != key);
                    }
                    out.push(Rec { key, value, rev });
                    changed = true;
                }
            }
        }
        for o in old {
            self.tombstone(o.key, rev);
            changed = true;
        }
        self.records = out;
        if changed {
            self.last = rev;
        }
        changed
    }
}

/// What a table computation reads: the intent, the compiler and the tunnel directory, seen
/// consistently (under the compile loop's locks).
pub struct Cx<'a> {
    /// The intent.
    pub intent: &'a Intent,
    /// The compiled fragments.
    pub compiler: &'a Compiler,
    /// Tunnel endpoints of hosts.
    pub dir: &'a dyn HostDirectory,
}

/// The per-host views, maintained incrementally (pure: no locks, no I/O).
#[derive(Default)]
pub struct Table {
    ids: HashMap<Arc<str>, u32>,
    hosts: Vec<Tracked>,
    by_dp: HashMap<String, HashSet<u32>>,
    by_set: HashMap<String, HashSet<u32>>,
    owners: HashMap<Owner, OwnerInfo>,
    /// Owners declaring a vNIC on each host (their records hold its tunnel address).
    vif: HashMap<String, HashSet<Owner>>,
}

fn mask(of: &[Arc<str>], set: &BTreeSet<String>) -> u64 {
    let mut m = 0u64;
    for (i, x) in of.iter().enumerate().take(64) {
        if set.contains(&**x) {
            m |= 1 << i;
        }
    }
    m
}

impl Table {
    /// Number of hosts tracked.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// True when no host is tracked.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Shared record values kept per kind of owner (the key's first segment): owners,
    /// distinct records, and their bytes. For benchmarks and diagnostics.
    pub fn shared_records(&self) -> BTreeMap<String, (usize, usize, usize)> {
        let mut out: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
        for info in self.owners.values() {
            let kind = info.key.split('/').next().unwrap_or("").to_string();
            let e = out.entry(kind).or_default();
            e.0 += 1;
            for (_, v) in &info.variants {
                if let Some(c) = v {
                    e.1 += 1;
                    e.2 += c.value.len();
                }
            }
        }
        out
    }

    /// The records of a tracked host, in key order.
    pub fn records(&self, host: &str) -> Option<Vec<Record>> {
        let t = &self.hosts[*self.ids.get(host)? as usize];
        Some(
            t.records
                .iter()
                .map(|r| Record::new(r.key.to_string(), r.value.to_vec()))
                .collect(),
        )
    }

    /// The changes of a tracked host's view after `revision`, merged into one delta;
    /// `None` when the host is not tracked or a removal after `revision` was forgotten.
    pub fn changes_since(&self, host: &str, revision: u64) -> Option<Vec<ViewDelta>> {
        let t = &self.hosts[*self.ids.get(host)? as usize];
        if revision < t.base {
            return None;
        }
        if t.last <= revision {
            return Some(Vec::new());
        }
        let upserts: Vec<Record> = t
            .records
            .iter()
            .filter(|r| r.rev > revision)
            .map(|r| Record::new(r.key.to_string(), r.value.to_vec()))
            .collect();
        let deleted: Vec<String> = t
            .tombstones
            .iter()
            .filter(|(_, r)| *r > revision)
            .map(|(k, _)| k.to_string())
            .collect();
        Some(vec![ViewDelta {
            revision: t.last,
            upserts,
            deleted,
        }])
    }

    fn info(&mut self, cx: &Cx, owner: &Owner) -> bool {
        if self.owners.contains_key(owner) {
            return true;
        }
        let Some(f) = cx.compiler.fragment(owner) else {
            return false;
        };
        let info = OwnerInfo::new(owner, record_inputs(f), None);
        for h in info.vif_hosts.iter() {
            self.vif.entry(h.clone()).or_default().insert(owner.clone());
        }
        self.owners.insert(owner.clone(), info);
        true
    }

    fn forget(&mut self, owner: &Owner) -> Option<OwnerInfo> {
        let info = self.owners.remove(owner)?;
        for h in info.vif_hosts.iter() {
            if let Some(s) = self.vif.get_mut(h) {
                s.remove(owner);
                if s.is_empty() {
                    self.vif.remove(h);
                }
            }
        }
        Some(info)
    }

    /// The record of `owner` for host `id`, given its neighbourhood and address sets.
    fn variant(
        &mut self,
        cx: &Cx,
        id: u32,
        dps: &BTreeSet<String>,
        sets: &BTreeSet<String>,
        owner: &Owner,
    ) -> Variant {
        if !self.info(cx, owner) {
            return None;
        }
        let name = self.hosts[id as usize].name.clone();
        let info = self.owners.get_mut(owner).expect("info just ensured");
        if info.port_hosts.is_none() {
            let hosts: BTreeSet<String> = info
                .ports
                .iter()
                .filter_map(|p| weft_compiler::view::service_port_host(cx.intent, p))
                .map(str::to_string)
                .collect();
            info.port_hosts = Some(hosts.into_iter().collect());
        }
        let local = info.vif_hosts.iter().any(|h| **h == *name)
            || info
                .port_hosts
                .as_ref()
                .is_some_and(|hs| hs.iter().any(|h| **h == *name));
        let sig = Sig {
            dps: mask(&info.dps, dps),
            sets: mask(&info.sets, sets),
            local: local.then_some(id),
        };
        let cacheable = info.cacheable();
        if cacheable && let Some((_, v)) = info.variants.iter().find(|(s, _)| *s == sig) {
            return v.clone();
        }
        let v = cx
            .compiler
            .host_record(cx.intent, &name, dps, sets, cx.dir, owner)
            .map(|r| {
                Arc::new(Computed {
                    value: encode(&r).into(),
                    sets: named_sets(&r).into_iter().map(Arc::from).collect(),
                })
            });
        if cacheable {
            info.variants.push((sig, v.clone()));
        }
        v
    }

    fn key_of(&self, owner: &Owner) -> Arc<str> {
        self.owners
            .get(owner)
            .map_or_else(|| owner.key().into(), |i| i.key.clone())
    }

    /// Updates the datapath and address-set indexes of host `id` (its old neighbourhood,
    /// `None` when unchanged, and its old sets).
    fn index(&mut self, id: u32, old_dps: Option<&BTreeSet<String>>, old_sets: &BTreeSet<String>) {
        let t = &self.hosts[id as usize];
        if let Some(old_dps) = old_dps {
            for d in old_dps.difference(&t.dps) {
                if let Some(s) = self.by_dp.get_mut(d) {
                    s.remove(&id);
                    if s.is_empty() {
                        self.by_dp.remove(d);
                    }
                }
            }
            for d in t.dps.difference(old_dps) {
                self.by_dp.entry(d.clone()).or_default().insert(id);
            }
        }
        for x in old_sets.difference(&t.sets) {
            if let Some(s) = self.by_set.get_mut(x) {
                s.remove(&id);
                if s.is_empty() {
                    self.by_set.remove(x);
                }
            }
        }
        for x in t.sets.difference(old_sets) {
            self.by_set.entry(x.clone()).or_default().insert(id);
        }
    }

    /// Starts tracking `host` (its whole view computed at `rev`), if not tracked yet.
    pub fn track(&mut self, cx: &Cx, host: &str, rev: u64) {
        if self.ids.contains_key(host) {
            return;
        }
        let id = self.hosts.len() as u32;
        let name: Arc<str> = host.into();
        self.ids.insert(name.clone(), id);
        self.hosts.push(Tracked {
            name,
            dps: BTreeSet::new(),
            sets: BTreeSet::new(),
            refs: BTreeMap::new(),
            records: Vec::new(),
            tombstones: VecDeque::new(),
            base: rev,
            last: rev,
        });
        self.full(cx, id, rev);
        let t = &mut self.hosts[id as usize];
        // A new host's records all date from its snapshot.
        for r in &mut t.records {
            r.rev = rev;
        }
        t.tombstones.clear();
        t.base = rev;
        t.last = rev;
    }

    /// Recomputes the whole view of host `id`; true when it changed.
    fn full(&mut self, cx: &Cx, id: u32, rev: u64) -> bool {
        let name = self.hosts[id as usize].name.clone();
        let dps = neighbourhood(cx.intent, &name);
        let mut owners: Vec<Owner> = Vec::new();
        for dp in &dps {
            owners.extend(cx.compiler.owners_of_datapath(dp).cloned());
        }
        owners.sort_unstable();
        owners.dedup();
        let none = BTreeSet::new();
        let mut base: Vec<Variant> = Vec::with_capacity(owners.len());
        let mut sets = BTreeSet::new();
        let mut refs = BTreeMap::new();
        for o in &owners {
            let v = self.variant(cx, id, &dps, &none, o);
            if let Some(c) = &v
                && !c.sets.is_empty()
            {
                sets.extend(c.sets.iter().map(|s| s.to_string()));
                refs.insert(self.key_of(o), c.sets.clone());
            }
            base.push(v);
        }
        // Owners of the address sets the flows name, beyond those of the datapaths.
        let mut extra: Vec<Owner> = Vec::new();
        for s in &sets {
            extra.extend(
                cx.compiler
                    .owners_of_set(s)
                    .filter(|o| owners.binary_search(o).is_err())
                    .cloned(),
            );
        }
        extra.sort_unstable();
        extra.dedup();
        let mut records: Vec<(Arc<str>, Arc<[u8]>)> = Vec::with_capacity(owners.len());
        for (o, v) in owners
            .iter()
            .zip(base)
            .chain(extra.iter().map(|o| (o, None)))
        {
            let (key, needs_sets) = match self.owners.get(o) {
                Some(i) => (i.key.clone(), mask(&i.sets, &sets) != 0),
                None => (o.key().into(), true),
            };
            let v = if needs_sets {
                self.variant(cx, id, &dps, &sets, o)
            } else {
                v
            };
            if let Some(c) = v {
                records.push((key, c.value.clone()));
            }
        }
        records.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let t = &mut self.hosts[id as usize];
        let changed = t.replace_all(records, rev);
        let old_dps = std::mem::replace(&mut t.dps, dps);
        let old_sets = std::mem::replace(&mut t.sets, sets);
        t.refs = refs;
        self.index(id, Some(&old_dps), &old_sets);
        changed
    }

    /// Recomputes the records of `changed` owners on host `id` (and of the owners of address
    /// sets it gains or loses); the whole view when its neighbourhood moved.
    fn partial(&mut self, cx: &Cx, id: u32, changed: &BTreeSet<Owner>, rev: u64) -> bool {
        let name = self.hosts[id as usize].name.clone();
        let dps = neighbourhood(cx.intent, &name);
        if dps != self.hosts[id as usize].dps {
            return self.full(cx, id, rev);
        }
        let none = BTreeSet::new();
        let mut refs = std::mem::take(&mut self.hosts[id as usize].refs);
        for o in changed {
            let key = self.key_of(o);
            match self.variant(cx, id, &dps, &none, o) {
                Some(c) if !c.sets.is_empty() => {
                    refs.insert(key, c.sets.clone());
                }
                _ => {
                    refs.remove(&key);
                }
            }
        }
        let sets: BTreeSet<String> = refs
            .values()
            .flat_map(|v| v.iter().map(|s| s.to_string()))
            .collect();
        let mut todo: BTreeSet<Owner> = changed.clone();
        let old_sets = self.hosts[id as usize].sets.clone();
        for s in sets.symmetric_difference(&old_sets) {
            todo.extend(cx.compiler.owners_of_set(s).cloned());
        }
        let mut any = false;
        for o in &todo {
            let key = self.key_of(o);
            let v = self.variant(cx, id, &dps, &sets, o);
            any |= self.hosts[id as usize].put(&key, v.as_ref().map(|c| &c.value), rev);
        }
        let t = &mut self.hosts[id as usize];
        t.refs = refs;
        t.sets = sets;
        self.index(id, None, &old_sets);
        any
    }

    /// Follows a compiled batch (see [`CompiledBatch`]: changed owners, `None` after a full
    /// recompile; hosts whose own ports changed; ports moved; networks or VRFs changed).
    /// Returns the hosts whose view changed.
    pub fn apply(&mut self, cx: &Cx, batch: &CompiledBatch, rev: u64) -> Vec<Arc<str>> {
        let changed = batch.delta.as_ref().map(|d| &d.changed);
        let (own_hosts, relocated) = (&batch.hosts, batch.relocated);
        let Some(changed) = changed else {
            self.owners.clear();
            self.vif.clear();
            let all: Vec<u32> = (0..self.hosts.len() as u32).collect();
            return self.recompute(cx, &all, &[], &BTreeSet::new(), rev);
        };
        if relocated {
            for info in self.owners.values_mut() {
                info.port_hosts = None;
                info.variants.clear();
            }
        }
        let mut touched: HashSet<u32> = HashSet::new();
        let reach = |t: &Table, info: &OwnerInfo, out: &mut HashSet<u32>| {
            for d in info.dps.iter() {
                out.extend(t.by_dp.get(&**d).into_iter().flatten());
            }
            for s in info.sets.iter() {
                out.extend(t.by_set.get(&**s).into_iter().flatten());
            }
        };
        for o in changed {
            let old = self.forget(o);
            if let Some(old) = &old {
                reach(self, old, &mut touched);
            }
            if let Some(f) = cx.compiler.fragment(o) {
                let info = OwnerInfo::new(o, record_inputs(f), old.map(|i| i.key));
                reach(self, &info, &mut touched);
                for h in info.vif_hosts.iter() {
                    self.vif.entry(h.clone()).or_default().insert(o.clone());
                }
                self.owners.insert(o.clone(), info);
            }
        }
        let mut full: Vec<u32> = own_hosts
            .iter()
            .filter_map(|h| self.ids.get(h.as_str()).copied())
            .collect();
        if batch.topology {
            // Route targets and subnet attachments move neighbourhoods that no changed
            // owner's datapaths point to (a new exporter into a VRF a host sees).
            for id in 0..self.hosts.len() as u32 {
                let t = &self.hosts[id as usize];
                if !full.contains(&id) && neighbourhood(cx.intent, &t.name) != t.dps {
                    full.push(id);
                }
            }
        }
        let partial: Vec<u32> = touched.into_iter().filter(|i| !full.contains(i)).collect();
        let mut out = self.recompute(cx, &full, &partial, changed, rev);
        out.sort();
        out.dedup();
        out
    }

    fn recompute(
        &mut self,
        cx: &Cx,
        full: &[u32],
        partial: &[u32],
        changed: &BTreeSet<Owner>,
        rev: u64,
    ) -> Vec<Arc<str>> {
        let mut out = Vec::new();
        for &id in full {
            if self.full(cx, id, rev) {
                out.push(self.hosts[id as usize].name.clone());
            }
        }
        for &id in partial {
            if self.partial(cx, id, changed, rev) {
                out.push(self.hosts[id as usize].name.clone());
            }
        }
        out
    }

    /// Follows a change of `host`'s tunnel address: the records declaring its vNICs change
    /// on the hosts that see them.
    pub fn tunnel_changed(&mut self, cx: &Cx, host: &str, rev: u64) -> Vec<Arc<str>> {
        let owners: BTreeSet<Owner> = self
            .vif
            .get(host)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        let mut touched = HashSet::new();
        for o in &owners {
            if let Some(info) = self.owners.get_mut(o) {
                info.variants.clear();
                for d in info.dps.iter() {
                    touched.extend(self.by_dp.get(&**d).into_iter().flatten());
                }
            }
        }
        let partial: Vec<u32> = touched.into_iter().collect();
        self.recompute(cx, &[], &partial, &owners, rev)
    }
}

struct Inner {
    revision: u64,
    intent_revision: u64,
    extra: u64,
    table: Table,
    /// The tunnel addresses the table's records were computed with.
    tunnels: BTreeMap<String, IpAddr>,
}

/// The southbound's [`ViewSource`] over the compile loop.
pub struct HostViews {
    compile: CompileService,
    inner: Mutex<Inner>,
    notify: watch::Sender<u64>,
    hosts: Mutex<HashMap<String, watch::Sender<u64>>>,
}

fn compose(intent: u64, extra: u64) -> u64 {
    (intent << 16) | extra.min(0xffff)
}

/// What one wake-up of the follower has to do.
enum Step {
    Batch(Arc<CompiledBatch>),
    Everything(u64),
    Tunnels,
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
                table: Table::default(),
                tunnels: compile.tunnels.snapshot(),
            }),
            notify,
            hosts: Mutex::new(HashMap::new()),
        });
        let mut batches = compile.subscribe();
        let mut tunnels = compile.tunnels.watch();
        let weak = Arc::downgrade(&views);
        tokio::spawn(async move {
            loop {
                let step = tokio::select! {
                    b = batches.recv() => match b {
                        Ok(b) => Step::Batch(b),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Step::Everything(compile.compiled_revision()),
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                    r = tunnels.changed() => match r {
                        Ok(()) => Step::Tunnels,
                        Err(_) => return,
                    },
                };
                let Some(views) = weak.upgrade() else { return };
                views.step(step);
            }
        });
        views
    }

    fn step(&self, step: Step) {
        let mut g = self.inner.lock().expect("views lock");
        let inner = &mut *g;
        let intent_rev = match &step {
            Step::Batch(b) => b.revision,
            Step::Everything(r) => *r,
            Step::Tunnels => inner.intent_revision,
        };
        if intent_rev > inner.intent_revision {
            inner.intent_revision = intent_rev;
            inner.extra = 0;
        } else {
            inner.extra += 1;
        }
        let rev = compose(inner.intent_revision, inner.extra).max(inner.revision + 1);
        let changed = self.compile.with(|intent, compiler| {
            let cx = Cx {
                intent,
                compiler,
                dir: self.compile.tunnels.as_ref(),
            };
            match &step {
                Step::Batch(b) => inner.table.apply(&cx, b, rev),
                Step::Everything(r) => inner.table.apply(
                    &cx,
                    &CompiledBatch {
                        revision: *r,
                        delta: None,
                        hosts: Vec::new(),
                        relocated: true,
                        topology: true,
                    },
                    rev,
                ),
                Step::Tunnels => {
                    let now = self.compile.tunnels.snapshot();
                    let mut hosts: BTreeSet<&String> = BTreeSet::new();
                    for (h, ip) in &now {
                        if inner.tunnels.get(h) != Some(ip) {
                            hosts.insert(h);
                        }
                    }
                    for h in inner.tunnels.keys() {
                        if !now.contains_key(h) {
                            hosts.insert(h);
                        }
                    }
                    let mut out = Vec::new();
                    for h in hosts {
                        out.extend(inner.table.tunnel_changed(&cx, h, rev));
                    }
                    inner.tunnels = now;
                    out.sort();
                    out.dedup();
                    out
                }
            }
        });
        inner.revision = rev;
        drop(g);
        if !changed.is_empty() {
            let hosts = self.hosts.lock().expect("views notify lock");
            for h in &changed {
                if let Some(tx) = hosts.get(&**h) {
                    tx.send_replace(rev);
                }
            }
            drop(hosts);
            self.notify.send_replace(rev);
        }
    }

    /// Number of hosts whose views are tracked.
    pub fn tracked(&self) -> usize {
        self.inner.lock().expect("views lock").table.len()
    }
}

impl ViewSource for HostViews {
    fn snapshot(&self, host: &str) -> (u64, Vec<Record>) {
        let mut g = self.inner.lock().expect("views lock");
        let inner = &mut *g;
        if let Some(recs) = inner.table.records(host) {
            return (inner.revision, recs);
        }
        // Tracked from now on, computed under the views lock so that no batch slips
        // between the computation and the revision it is labelled with.
        let rev = inner.revision;
        self.compile.with(|intent, compiler| {
            let cx = Cx {
                intent,
                compiler,
                dir: self.compile.tunnels.as_ref(),
            };
            inner.table.track(&cx, host, rev);
        });
        (rev, inner.table.records(host).unwrap_or_default())
    }

    fn changes_since(&self, host: &str, revision: u64) -> Option<Vec<ViewDelta>> {
        let g = self.inner.lock().expect("views lock");
        if revision > g.revision {
            return None;
        }
        g.table.changes_since(host, revision)
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.notify.subscribe()
    }

    fn subscribe_host(&self, host: &str) -> watch::Receiver<u64> {
        let mut hosts = self.hosts.lock().expect("views notify lock");
        match hosts.get(host) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(0);
                hosts.insert(host.to_string(), tx);
                rx
            }
        }
    }
}
