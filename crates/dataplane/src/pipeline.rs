//! The host's logical pipeline on every frame: [`PipelineProcessor`].
//!
//! ```text
//!  Input: TAP slot ──tap_to_vif──► Ingress::Vif ─┐       (unmapped TAP: drop)
//!         tunnel remote + VNI ─────► Ingress::Tunnel     (unknown peer: drop)
//!                                                │
//!   super-frame? ─► representative segment (headers + one gso_size of payload)
//!                                                │
//!   parse ─► flow cache (ingress, FlowKey, generation) ──hit──► apply(Decision) ──┐
//!                     └───miss──► execute(tables, conntrack) ─► insert decision   │
//!                                   ├─ generated replies (ARP/ND, ICMP, RST) ─────┤
//!                                   ├─ local services (DHCP, DNS, RA) answers ────┤
//!                                   └─ logs                                        ▼
//!   outputs: Target ──vif_to_tap──► Endpoint; single unchanged-length output is
//!   written back in place (offload state kept), others are copied (offsets fixed)
//! ```
//!
//! **One consistent program per packet.** Everything a packet needs to know
//! about the program (the [`Loaded`] program, the service configurations and
//! the TAP ↔ vif mapping) is one [`ProgramState`], swapped as a whole with
//! `arc-swap` ([`PipelineShared::swap`]). A worker picks up a new state between
//! two frames, never in the middle of one. Flow-cache entries remember the
//! generation of the program that made them; entries of an older program are
//! never applied (the cache checks the generation, and
//! [`apply`](weft_pipeline::exec::apply) refuses stale decisions anyway).
//!
//! **Super-frames** (TSO from a guest, TCP segments coalesced on receive) get
//! one decision for the whole frame, taken on a *representative segment*: the
//! headers plus one segment's worth of payload, with the IP (and UDP) length
//! fields set to that segment's. So the pipeline's MTU checks (`l3.len`) see
//! what will be on the wire after segmentation, not the 64 KiB super-frame,
//! and the parse, key and conntrack state are those every segment shares.
//! The decision only rewrites headers; the rewritten headers are put back in
//! front of the untouched payload with the original lengths and a fresh IPv4
//! header checksum, and the offload state (checksum start, header length)
//! moves with any VLAN tags pushed or popped.
//!
//! **Shared state.** Conntrack is shared by all workers, split into
//! [`CT_SHARDS`] tables behind their own mutexes (cache-line aligned). A
//! connection lives in the shard of a direction-independent hash of its
//! 5-tuple; an ICMP error is looked up in the shard of the connection it
//! quotes. Decisions without conntrack operations take no lock at all.
//! (Measured on the benchmark box: one uncontended lock is ~5% of a cached
//! frame; one table for two workers made two threads slower than one.) The
//! flow cache is per worker (no lock), bounded, 4-way set associative with
//! LRU replacement inside a set. Counters are per worker with one writer each.
//!
//! This module decides nothing itself: all policy is in the program.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Cache};
use weft_compiler::ServiceConfig;
use weft_pipeline::exec::{
    self as px, Conntrack, ConntrackConfig, ConntrackStats, Decision, DropReason, ExecOptions,
    Frame, Ingress, LoadError, Loaded, LogRecord, Outcome, Target,
};
use weft_pipeline::ir::{Action, PortLocation, Program};
use weft_pipeline::wire::{self, FlowKey, Parsed, prereq};
use weft_services::LocalServices;

use crate::csum;
use crate::frame::{self, IpVersion, PROTO_TCP, PROTO_UDP, be16, put16};
use crate::processor::{Endpoint, Input, OutputSink, PacketProcessor, VifId};
use crate::stats::counters;
use crate::vnet::{Gso, Offload};
use crate::vxlan::Vni;

/// Ways per flow-cache set.
const WAYS: usize = 4;
/// Conntrack shards (a power of two); each holds `max_entries / CT_SHARDS`.
pub const CT_SHARDS: usize = 16;
/// Log records a worker copies into the shared ring per second, at most.
const LOG_RING_PER_SEC: u32 = 100;

/// Sizes and policies of the pipeline runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineConfig {
    /// Flow-cache entries per worker (rounded up to a power of two, at least 4).
    /// An entry takes about 300 bytes plus its decision's operations.
    pub flow_cache_entries: usize,
    /// Conntrack size and timeouts (one table shared by all workers).
    pub conntrack: ConntrackConfig,
    /// Accept tunnel frames from hosts the program never sends to. Off by
    /// default: a VXLAN packet from a stranger is dropped before the pipeline.
    pub accept_unknown_peers: bool,
    /// Recent log records kept for inspection.
    pub log_ring: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            flow_cache_entries: 16_384,
            conntrack: ConntrackConfig::default(),
            accept_unknown_peers: false,
            log_ring: 256,
        }
    }
}

/// A loaded program with everything a packet needs besides it: local service
/// configurations and the mapping between the forwarder's TAP slots and the
/// program's vifs. Swapped as one piece.
pub struct ProgramState {
    loaded: Loaded,
    services: LocalServices,
    configs: Vec<ServiceConfig>,
    /// Program vif of each TAP slot.
    tap_to_vif: Vec<Option<px::VifId>>,
    /// TAP slot of each program vif.
    vif_to_tap: Vec<Option<VifId>>,
    /// Tunnel endpoints the program sends to: the only ones it accepts from.
    peers: HashSet<IpAddr>,
}

impl fmt::Debug for ProgramState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProgramState")
            .field("host", &self.loaded.program().host)
            .field("generation", &self.loaded.generation())
            .field("vif_to_tap", &self.vif_to_tap)
            .field("peers", &self.peers)
            .finish_non_exhaustive()
    }
}

impl ProgramState {
    /// No program: every frame is dropped.
    pub fn empty() -> Self {
        let loaded = Loaded::load(&Program::default()).expect("the empty program loads");
        Self::new(loaded, Vec::new(), |_| None)
    }

    /// Loads `program`; see [`ProgramState::new`].
    pub fn load(
        program: &Program,
        services: Vec<ServiceConfig>,
        tap_of: impl Fn(&str) -> Option<VifId>,
    ) -> Result<Self, LoadError> {
        Ok(Self::new(Loaded::load(program)?, services, tap_of))
    }

    /// A state for `loaded`; `tap_of(vif name)` gives the TAP slot that carries
    /// each of the program's vifs (vifs without one are unreachable).
    pub fn new(
        loaded: Loaded,
        services: Vec<ServiceConfig>,
        tap_of: impl Fn(&str) -> Option<VifId>,
    ) -> Self {
        let mut vif_to_tap = Vec::new();
        let mut tap_to_vif: Vec<Option<px::VifId>> = Vec::new();
        for (id, name) in loaded.vifs() {
            let slot = tap_of(name);
            vif_to_tap.push(slot);
            if let Some(s) = slot {
                let i = s.0 as usize;
                if tap_to_vif.len() <= i {
                    tap_to_vif.resize(i + 1, None);
                }
                tap_to_vif[i] = Some(id);
            }
        }
        let peers = program_peers(loaded.program());
        ProgramState {
            services: LocalServices::new(services.iter().cloned()),
            configs: services,
            loaded,
            tap_to_vif,
            vif_to_tap,
            peers,
        }
    }

    /// The loaded program.
    pub fn loaded(&self) -> &Loaded {
        &self.loaded
    }

    /// The program's load generation.
    pub fn generation(&self) -> u64 {
        self.loaded.generation()
    }

    /// The local service configurations.
    pub fn services(&self) -> &[ServiceConfig] {
        &self.configs
    }

    /// The TAP slot carrying the program's vif `name`.
    pub fn tap_of_vif(&self, name: &str) -> Option<VifId> {
        let id = self.loaded.vif_id(name)?;
        self.vif_to_tap.get(id.0 as usize).copied().flatten()
    }

    /// The tunnel endpoints the program knows.
    pub fn peers(&self) -> &HashSet<IpAddr> {
        &self.peers
    }

    /// The local ports of datapath `dp`: their TAP slot and VLAN tags.
    pub fn local_ports(&self, dp: &str) -> Vec<(VifId, Vec<u16>)> {
        self.loaded
            .program()
            .ports
            .iter()
            .filter(|p| p.datapath == dp)
            .filter_map(|p| match &p.location {
                PortLocation::Local { vif, vlans } => {
                    self.tap_of_vif(vif).map(|s| (s, vlans.clone()))
                }
                _ => None,
            })
            .collect()
    }

    fn endpoint(&self, t: &Target) -> Option<Endpoint> {
        match *t {
            Target::Vif { vif, .. } => self
                .vif_to_tap
                .get(vif.0 as usize)
                .copied()
                .flatten()
                .map(Endpoint::Tap),
            Target::Tunnel { remote, vni, .. } => Some(Endpoint::Tunnel {
                remote,
                vni: Vni::new(vni).ok()?,
            }),
        }
    }
}

/// Every tunnel endpoint a program may send to: remote ports' hosts and
/// `tunnel(...)` actions (routes learned from outside, ECMP members).
fn program_peers(p: &Program) -> HashSet<IpAddr> {
    let mut peers = HashSet::new();
    for port in &p.ports {
        if let PortLocation::Remote { tunnel_ip, .. } = &port.location {
            peers.insert(*tunnel_ip);
        }
    }
    let mut scan = |actions: &[Action]| {
        for a in actions {
            if let Action::Tunnel { remote, .. } = a {
                peers.insert(*remote);
            }
        }
    };
    for d in &p.datapaths {
        for t in &d.tables {
            for f in &t.flows {
                scan(&f.actions);
            }
        }
    }
    for g in &p.ecmp_groups {
        for m in &g.members {
            scan(&m.actions);
        }
    }
    peers
}

counters! {
    /// Pipeline counters, summed over the workers. A super-frame counts once.
    PipelineCounters => PipelineCounterStats {
        /// Frames handed to the pipeline.
        frames,
        /// Of those, super-frames decided on a representative segment.
        gso_frames,
        /// Frames whose cached decision was applied.
        cache_hits,
        /// Frames that walked the tables.
        cache_misses,
        /// Cached decisions refused because conntrack state or length changed.
        cache_stale,
        /// Decisions stored.
        cache_inserts,
        /// Live entries replaced to make room.
        cache_evictions,
        /// Entries held now (a gauge).
        cache_entries,
        /// Table walks that gave no cacheable decision.
        uncacheable,
        /// Copies sent to TAPs and tunnels.
        outputs,
        /// Replies the pipeline generated (ARP/ND, ICMP errors, echo replies, RST).
        generated,
        /// Frames handed to local services.
        handoffs,
        /// Answers of local services sent.
        service_replies,
        /// Hand-offs no service answered.
        service_unanswered,
        /// `log` actions that fired.
        logs,
        /// Frames that could not be parsed.
        drop_malformed,
        /// Frames from a TAP the program has no vif for.
        drop_unmapped_tap,
        /// Tunnel frames from an endpoint the program does not know.
        drop_unknown_peer,
        /// Outputs to a vif without a TAP.
        drop_unmapped_vif,
        /// Frames whose VLAN tags match no port of their vif.
        drop_no_port_for_tags,
        /// Tunnel frames with a VNI the program does not enter.
        drop_unknown_vni,
        /// Frames no flow matched in some table.
        drop_no_flow,
        /// Frames dropped (or ended) by a flow's actions.
        drop_by_flow,
        /// Frames whose TTL ran out.
        drop_ttl,
        /// Frames dropped by a cached decision.
        drop_cached,
        /// Other drops (loop guard, VLAN overflow, ...).
        drop_other,
    }
}

/// One worker's counters and log totals.
#[derive(Debug, Default)]
struct WorkerBlock {
    ctr: PipelineCounters,
    logs: Mutex<HashMap<Arc<str>, u64>>,
}

/// A recent `log` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The rule id of the `log` action.
    pub rule: String,
    /// Where the packet entered (a vif name or `tunnel REMOTE vni N`).
    pub ingress: String,
    /// The packet's addresses and ports.
    pub flow: String,
    /// When, since the pipeline started.
    pub at: Duration,
}

/// State shared by all workers: the current program, conntrack, counters and logs.
#[derive(Debug)]
pub struct PipelineShared {
    state: Arc<ArcSwap<ProgramState>>,
    ct: Vec<CtShard>,
    epoch: Instant,
    cfg: PipelineConfig,
    workers: Mutex<Vec<Arc<WorkerBlock>>>,
    ring: Mutex<VecDeque<LogEntry>>,
    swaps: AtomicU64,
}

impl PipelineShared {
    /// An empty pipeline (every frame dropped until a program is swapped in).
    pub fn new(cfg: PipelineConfig) -> Arc<Self> {
        Arc::new(PipelineShared {
            state: Arc::new(ArcSwap::from_pointee(ProgramState::empty())),
            ct: (0..CT_SHARDS)
                .map(|_| {
                    CtShard(Mutex::new(Conntrack::new(ConntrackConfig {
                        max_entries: cfg.conntrack.max_entries.div_ceil(CT_SHARDS).max(1),
                        ..cfg.conntrack.clone()
                    })))
                })
                .collect(),
            epoch: Instant::now(),
            cfg,
            workers: Mutex::new(Vec::new()),
            ring: Mutex::new(VecDeque::new()),
            swaps: AtomicU64::new(0),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &PipelineConfig {
        &self.cfg
    }

    /// A processor for one worker thread.
    pub fn processor(self: &Arc<Self>) -> PipelineProcessor {
        let block = Arc::new(WorkerBlock::default());
        lock(&self.workers).push(block.clone());
        PipelineProcessor {
            state: Cache::new(self.state.clone()),
            shared: self.clone(),
            w: Work {
                block,
                cache: FlowCache::new(self.cfg.flow_cache_entries),
                frame: Frame::new(&[]),
                outbuf: Vec::new(),
                outs: Vec::new(),
                scratch_ct: Conntrack::new(ConntrackConfig {
                    max_entries: 1,
                    ..ConntrackConfig::default()
                }),
                ring_second: 0,
                ring_used: 0,
            },
        }
    }

    /// Makes `state` the program every worker uses from its next frame on, and
    /// returns the previous one.
    pub fn swap(&self, state: ProgramState) -> Arc<ProgramState> {
        let old = self.state.swap(Arc::new(state));
        self.swaps.fetch_add(1, Ordering::Relaxed);
        old
    }

    /// The current program state.
    pub fn current(&self) -> Arc<ProgramState> {
        self.state.load_full()
    }

    /// Time as conntrack sees it: since the pipeline was created.
    pub fn clock(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.epoch)
    }

    /// Periodic upkeep: removes expired connections (a bounded step, about an
    /// eighth of the table). Returns how many were removed.
    pub fn maintain(&self, now: Instant) -> usize {
        let budget = (self.cfg.conntrack.max_entries / 8 / CT_SHARDS).max(256);
        let now = self.clock(now);
        self.ct.iter().map(|c| lock(&c.0).sweep(now, budget)).sum()
    }

    /// Connections tracked now.
    pub fn conntrack_len(&self) -> usize {
        self.ct.iter().map(|c| lock(&c.0).len()).sum()
    }

    /// The most recent log records, oldest first.
    pub fn recent_logs(&self) -> Vec<LogEntry> {
        lock(&self.ring).iter().cloned().collect()
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> PipelineStats {
        let mut s = PipelineStats::default();
        let mut logs: BTreeMap<String, u64> = BTreeMap::new();
        let workers = lock(&self.workers).clone();
        for w in &workers {
            w.ctr.add_to(&mut s.counters);
            for (rule, n) in lock(&w.logs).iter() {
                *logs.entry(rule.to_string()).or_default() += n;
            }
        }
        s.logs = logs;
        s.flow_cache_capacity =
            (FlowCache::capacity_for(self.cfg.flow_cache_entries) * workers.len()) as u64;
        for c in &self.ct {
            let ct = lock(&c.0);
            let (a, b) = (&mut s.conntrack, ct.stats());
            a.lookups += b.lookups;
            a.hits += b.hits;
            a.misses += b.misses;
            a.invalid += b.invalid;
            a.commits += b.commits;
            a.evictions += b.evictions;
            a.expirations += b.expirations;
            s.conntrack_entries += ct.len() as u64;
        }
        s.conntrack_max = self.cfg.conntrack.max_entries as u64;
        let st = self.state.load();
        s.generation = st.generation();
        s.vifs = st.loaded.vifs().count() as u64;
        s.swaps = self.swaps.load(Ordering::Relaxed);
        s
    }

    fn push_log(&self, e: LogEntry) {
        if self.cfg.log_ring == 0 {
            return;
        }
        let mut ring = lock(&self.ring);
        if ring.len() >= self.cfg.log_ring {
            ring.pop_front();
        }
        ring.push_back(e);
    }
}

/// One conntrack shard, alone on its cache lines so workers locking
/// different shards do not contend.
#[derive(Debug)]
#[repr(align(128))]
struct CtShard(Mutex<Conntrack>);

/// The conntrack shard of a packet: a hash of its 5-tuple that is the same in
/// both directions; for an ICMP error, of the packet it quotes.
fn ct_shard(p: &Parsed, frame: &[u8]) -> usize {
    let k = &p.key;
    let is_err = (k.prereq & prereq::ICMP4 != 0 && matches!(k.icmp_type, 3 | 4 | 5 | 11 | 12))
        || (k.prereq & prereq::ICMP6 != 0 && (1..=4).contains(&k.icmp_type));
    if is_err && let Some(h) = quoted_shard(p, frame) {
        return h;
    }
    let ports = if k.prereq & prereq::L4_PORTS != 0 {
        (k.l4_src, k.l4_dst)
    } else if k.prereq & (prereq::ICMP4 | prereq::ICMP6) != 0
        && matches!(k.icmp_type, 0 | 8 | 128 | 129)
    {
        (k.l4_src, 0)
    } else {
        (0, 0)
    };
    symmetric_shard(ip_word(k.ip_src), ip_word(k.ip_dst), k.ip_proto, ports)
}

/// The shard of the packet an ICMP error quotes (its tuple as sent).
fn quoted_shard(p: &Parsed, frame: &[u8]) -> Option<usize> {
    let body = frame.get(p.layout.l4? + 8..)?;
    let (src, dst, proto, l4) = match body.first()? >> 4 {
        4 => {
            let ihl = usize::from(body[0] & 0x0f) * 4;
            let h = body.get(..20)?;
            let w = |o: usize| u64::from(u32::from_be_bytes([h[o], h[o + 1], h[o + 2], h[o + 3]]));
            (w(12), w(16), h[9], body.get(ihl..)?)
        }
        6 => {
            let h = body.get(..40)?;
            let w = |o: usize| {
                let v = u128::from_be_bytes(h[o..o + 16].try_into().unwrap_or([0; 16]));
                (v as u64) ^ ((v >> 64) as u64)
            };
            (w(8), w(24), h[6], body.get(40..)?)
        }
        _ => return None,
    };
    let port = |o: usize| {
        l4.get(o..o + 2)
            .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
    };
    let ports = match proto {
        6 | 17 | 132 => (port(0), port(2)),
        // An echo: its identifier, as the forward hash takes it.
        1 | 58 if matches!(l4.first(), Some(0 | 8 | 128 | 129)) => (port(4), 0),
        _ => (0, 0),
    };
    Some(symmetric_shard(src, dst, proto, ports))
}

fn ip_word(a: IpAddr) -> u64 {
    match a {
        IpAddr::V4(a) => u64::from(u32::from(a)),
        IpAddr::V6(a) => {
            let v = u128::from(a);
            (v as u64) ^ ((v >> 64) as u64)
        }
    }
}

fn symmetric_shard(a: u64, b: u64, proto: u8, (p1, p2): (u16, u16)) -> usize {
    let mix = |z: u64| {
        let z = (z ^ (z >> 31)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 29)
    };
    let (lo, hi) = (a.min(b), a.max(b));
    let ports = (u64::from(p1.min(p2)) << 16) | u64::from(p1.max(p2)) | (u64::from(proto) << 32);
    let h = mix(lo.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ hi.wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
        ^ ports.wrapping_mul(0x1656_67b1_9e37_79f9));
    (h as usize) & (CT_SHARDS - 1)
}

/// Locks a mutex; a poisoned one (a panicking holder) is still usable, since
/// every critical section leaves its data consistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A snapshot of the pipeline's counters and gauges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipelineStats {
    /// Per-frame counters, summed over the workers.
    pub counters: PipelineCounterStats,
    /// Flow-cache entries all workers may hold.
    pub flow_cache_capacity: u64,
    /// Conntrack counters.
    pub conntrack: ConntrackStats,
    /// Connections tracked now.
    pub conntrack_entries: u64,
    /// Conntrack's limit.
    pub conntrack_max: u64,
    /// Generation of the program running.
    pub generation: u64,
    /// Program swaps so far.
    pub swaps: u64,
    /// Vifs of the program running.
    pub vifs: u64,
    /// Packets logged, by rule.
    pub logs: BTreeMap<String, u64>,
}

impl fmt::Display for PipelineStats {
    /// One `key=value` per line, e.g. `pipeline.cache_hits=12`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, n) in self.counters.fields() {
            writeln!(f, "pipeline.{k}={n}")?;
        }
        writeln!(f, "pipeline.cache_capacity={}", self.flow_cache_capacity)?;
        let c = &self.conntrack;
        for (k, n) in [
            ("entries", self.conntrack_entries),
            ("max_entries", self.conntrack_max),
            ("lookups", c.lookups),
            ("hits", c.hits),
            ("misses", c.misses),
            ("invalid", c.invalid),
            ("commits", c.commits),
            ("evictions", c.evictions),
            ("expirations", c.expirations),
        ] {
            writeln!(f, "conntrack.{k}={n}")?;
        }
        writeln!(f, "program.generation={}", self.generation)?;
        writeln!(f, "program.swaps={}", self.swaps)?;
        writeln!(f, "program.vifs={}", self.vifs)?;
        for (rule, n) in &self.logs {
            writeln!(f, "log.{rule}={n}")?;
        }
        Ok(())
    }
}

/// Runs the host's pipeline for one forwarder worker. Build one per worker
/// with [`PipelineShared::processor`].
pub struct PipelineProcessor {
    shared: Arc<PipelineShared>,
    state: Cache<Arc<ArcSwap<ProgramState>>, Arc<ProgramState>>,
    w: Work,
}

impl fmt::Debug for PipelineProcessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PipelineProcessor")
            .field("cache_entries", &self.w.cache.len)
            .finish_non_exhaustive()
    }
}

/// The per-worker scratch state.
struct Work {
    block: Arc<WorkerBlock>,
    cache: FlowCache,
    /// The frame the pipeline works on (the input, or its representative segment).
    frame: Frame,
    /// Output bytes collected from `apply`.
    outbuf: Vec<u8>,
    outs: Vec<(Target, Range<usize>)>,
    /// Never touched: decisions without conntrack operations run against it
    /// instead of taking the shared table's lock.
    scratch_ct: Conntrack,
    ring_second: u64,
    ring_used: u32,
}

impl PacketProcessor for PipelineProcessor {
    fn process(&mut self, input: Input<'_>, out: &mut OutputSink) {
        let st = self.state.load();
        self.w.process(&self.shared, st, input, out);
    }
}

impl PipelineProcessor {
    /// Entries in this worker's flow cache.
    pub fn cache_len(&self) -> usize {
        self.w.cache.len
    }
}

/// Where a super-frame's representative segment ends and what was patched.
#[derive(Debug, Clone, Copy)]
struct Seg {
    l3: usize,
    l4: usize,
    v4: bool,
    udp: bool,
    /// End of the transport header.
    hdr_end: usize,
    /// Length of the representative segment.
    rep_len: usize,
    /// Original IPv4 total length / IPv6 payload length.
    ip_len: u16,
    /// Original UDP length (USO).
    udp_len: u16,
}

impl Seg {
    /// The layout of a TCP or UDP super-frame; `None` for anything else (which
    /// is then decided on as a whole).
    fn of(f: &[u8], g: &Gso) -> Option<Seg> {
        if g.size == 0 {
            return None;
        }
        let (l3, ver) = frame::l3(f).ok()??;
        let (v4, l4, proto, ip_len) = match ver {
            IpVersion::V4 => {
                let h = f.get(l3..l3 + 20)?;
                let ihl = usize::from(h[0] & 0x0f) * 4;
                if h[0] >> 4 != 4 || ihl < 20 {
                    return None;
                }
                (true, l3 + ihl, h[9], be16(h, 2)?)
            }
            IpVersion::V6 => {
                let h = f.get(l3..l3 + 40)?;
                if h[0] >> 4 != 6 {
                    return None;
                }
                (false, l3 + 40, h[6], be16(h, 4)?)
            }
        };
        let (udp, hdr_end) = match proto {
            PROTO_TCP => {
                let doff = usize::from(*f.get(l4 + 12)? >> 4) * 4;
                if doff < 20 {
                    return None;
                }
                (false, l4 + doff)
            }
            PROTO_UDP => (true, l4 + 8),
            _ => return None,
        };
        if hdr_end > f.len() {
            return None;
        }
        let udp_len = if udp { be16(f, l4 + 4)? } else { 0 };
        Some(Seg {
            l3,
            l4,
            v4,
            udp,
            hdr_end,
            rep_len: (hdr_end + usize::from(g.size)).min(f.len()),
            ip_len,
            udp_len,
        })
    }

    /// Gives the representative segment (the first `rep_len` bytes) its own lengths.
    fn patch_rep(&self, rep: &mut [u8]) {
        let n = rep.len();
        if self.v4 {
            put16(rep, self.l3 + 2, (n - self.l3) as u16);
        } else {
            put16(rep, self.l3 + 4, (n - self.l3 - 40) as u16);
        }
        if self.udp {
            put16(rep, self.l4 + 4, (n - self.l4) as u16);
        }
    }

    /// Restores the super-frame's lengths in an output whose headers moved by
    /// `delta` bytes, and recomputes the IPv4 header checksum.
    fn restore(&self, f: &mut [u8], delta: isize) {
        let at = |x: usize| x.checked_add_signed(delta);
        let (Some(l3), Some(l4)) = (at(self.l3), at(self.l4)) else {
            return;
        };
        if l4 + 8 > f.len() {
            return;
        }
        if self.v4 {
            put16(f, l3 + 2, self.ip_len);
            let ihl = usize::from(f[l3] & 0x0f) * 4;
            if ihl >= 20 && l3 + ihl <= f.len() {
                put16(f, l3 + 10, 0);
                let c = csum::checksum(&f[l3..l3 + ihl]);
                put16(f, l3 + 10, c);
            }
        } else {
            put16(f, l3 + 4, self.ip_len);
        }
        if self.udp {
            put16(f, l4 + 4, self.udp_len);
        }
    }
}

/// The input's offload state for an output whose headers moved by `delta` bytes.
fn shift_offload(o: &Offload, delta: isize) -> Offload {
    let mv = |x: u16| {
        (usize::from(x))
            .checked_add_signed(delta)
            .and_then(|v| u16::try_from(v).ok())
            .unwrap_or(x)
    };
    let mut o = *o;
    if let Some(c) = &mut o.csum {
        c.start = mv(c.start);
    }
    if let Some(g) = &mut o.gso
        && g.hdr_len != 0
    {
        g.hdr_len = mv(g.hdr_len);
    }
    o
}

/// Pushes 802.1Q tags (outermost first) onto an untagged frame.
pub(crate) fn push_vlans(frame: Vec<u8>, vlans: &[u16]) -> Vec<u8> {
    if vlans.is_empty() || frame.len() < 12 {
        return frame;
    }
    let mut v = Vec::with_capacity(frame.len() + 4 * vlans.len());
    v.extend_from_slice(&frame[..12]);
    for vid in vlans {
        v.extend_from_slice(&0x8100u16.to_be_bytes());
        v.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    }
    v.extend_from_slice(&frame[12..]);
    v
}

/// What one frame's outputs need to know about the input.
struct Delivery<'a, 'b> {
    st: &'a ProgramState,
    ctr: &'a PipelineCounters,
    input: &'b mut [u8],
    offload: Offload,
    seg: Option<Seg>,
    rep_len: usize,
}

impl Delivery<'_, '_> {
    /// Sends one output of the pipeline (bytes of the representative frame as
    /// rewritten). `only` says it is the frame's single output, which may then
    /// reuse the input buffer.
    fn output(&mut self, out: &mut OutputSink, target: &Target, bytes: &[u8], only: bool) {
        let Some(ep) = self.st.endpoint(target) else {
            self.ctr.drop_unmapped_vif.add(1);
            return;
        };
        let delta = bytes.len() as isize - self.rep_len as isize;
        self.ctr.outputs.add(1);
        match self.seg {
            None => {
                if only && delta == 0 {
                    self.input.copy_from_slice(bytes);
                    out.forward(ep);
                } else {
                    out.emit_parts(ep, &[bytes], shift_offload(&self.offload, delta));
                }
            }
            Some(sg) => {
                let Some(hdr_out) = sg.hdr_end.checked_add_signed(delta) else {
                    self.ctr.drop_other.add(1);
                    return;
                };
                if hdr_out > bytes.len() || sg.hdr_end > self.input.len() {
                    self.ctr.drop_other.add(1);
                    return;
                }
                if only && delta == 0 {
                    self.input[..sg.hdr_end].copy_from_slice(&bytes[..sg.hdr_end]);
                    sg.restore(self.input, 0);
                    out.forward(ep);
                } else {
                    let f = out.emit_parts(
                        ep,
                        &[&bytes[..hdr_out], &self.input[sg.hdr_end..]],
                        shift_offload(&self.offload, delta),
                    );
                    sg.restore(f, delta);
                }
            }
        }
    }
}

impl Work {
    fn process(
        &mut self,
        shared: &PipelineShared,
        st: &ProgramState,
        input: Input<'_>,
        out: &mut OutputSink,
    ) {
        let ctr = &self.block.ctr;
        ctr.frames.add(1);
        let ingress = match input.from {
            Endpoint::Tap(slot) => match st.tap_to_vif.get(slot.0 as usize).copied().flatten() {
                Some(v) => Ingress::Vif(v),
                None => {
                    ctr.drop_unmapped_tap.add(1);
                    return;
                }
            },
            Endpoint::Tunnel { remote, vni } => {
                if !shared.cfg.accept_unknown_peers && !st.peers.contains(&remote) {
                    ctr.drop_unknown_peer.add(1);
                    return;
                }
                Ingress::Tunnel {
                    vni: vni.get(),
                    remote,
                }
            }
        };
        let seg = input.offload.gso.as_ref().and_then(|g| {
            ctr.gso_frames.add(1);
            Seg::of(input.frame, g)
        });
        let load = |frame: &mut Frame, input: &[u8]| match &seg {
            Some(sg) => {
                frame.load(&input[..sg.rep_len]);
                sg.patch_rep(frame.as_mut_slice());
            }
            None => frame.load(input),
        };
        load(&mut self.frame, input.frame);
        let rep_len = self.frame.len();
        let Ok(parsed) = wire::parse(self.frame.as_slice()) else {
            ctr.drop_malformed.add(1);
            return;
        };
        let now = shared.clock(input.now);
        let generation = st.generation();
        let hash = cache_hash(&ingress, &parsed.key);
        self.outs.clear();
        self.outbuf.clear();

        // Fast path: a cached decision.
        let mut logs: Vec<LogRecord> = Vec::new();
        let mut hit = false;
        if let Some(d) = self.cache.get(hash, &ingress, &parsed.key, generation) {
            let outbuf = &mut self.outbuf;
            let outs = &mut self.outs;
            // The usual case, one output of the input's length: write it
            // straight back into the input buffer (marked by an empty range).
            let direct = seg.is_none() && d.outputs() == 1;
            let input_frame = &mut *input.frame;
            let mut wrote_input = false;
            let collect = |t: &Target, b: &[u8]| {
                if direct && b.len() == input_frame.len() {
                    input_frame.copy_from_slice(b);
                    wrote_input = true;
                    outs.push((*t, 0..0));
                    return;
                }
                let start = outbuf.len();
                outbuf.extend_from_slice(b);
                outs.push((*t, start..outbuf.len()));
            };
            let r = if d.ct_zones().next().is_some() {
                let mut ct = lock(&shared.ct[ct_shard(&parsed, self.frame.as_slice())].0);
                px::apply(
                    &st.loaded,
                    d,
                    &mut ct,
                    &parsed,
                    &mut self.frame,
                    now,
                    collect,
                )
            } else {
                px::apply(
                    &st.loaded,
                    d,
                    &mut self.scratch_ct,
                    &parsed,
                    &mut self.frame,
                    now,
                    collect,
                )
            };
            match r {
                Ok(()) => {
                    hit = true;
                    if !d.logs.is_empty() {
                        logs = d.logs.clone();
                    }
                }
                Err(_) => {
                    ctr.cache_stale.add(1);
                    if wrote_input {
                        // An output came before the refused check and the
                        // input is no longer the original: drop, never guess.
                        ctr.drop_other.add(1);
                        return;
                    }
                    self.outs.clear();
                    self.outbuf.clear();
                    // Ops before a refused conntrack check may have edited it.
                    load(&mut self.frame, input.frame);
                }
            }
        }

        let mut d = Delivery {
            st,
            ctr,
            input: input.frame,
            offload: input.offload,
            seg,
            rep_len,
        };
        if hit {
            ctr.cache_hits.add(1);
            let only = self.outs.len() == 1;
            if self.outs.is_empty() {
                ctr.drop_cached.add(1);
            }
            for (t, r) in &self.outs {
                if r.is_empty() {
                    // Already written into the input buffer.
                    match st.endpoint(t) {
                        Some(ep) => {
                            ctr.outputs.add(1);
                            out.forward(ep);
                        }
                        None => ctr.drop_unmapped_vif.add(1),
                    }
                    continue;
                }
                d.output(out, t, &self.outbuf[r.clone()], only);
            }
        } else {
            ctr.cache_misses.add(1);
            let outcome = {
                let mut ct = lock(&shared.ct[ct_shard(&parsed, self.frame.as_slice())].0);
                px::execute(
                    &st.loaded,
                    &mut ct,
                    ingress,
                    self.frame.as_slice(),
                    now,
                    &ExecOptions::default(),
                )
            };
            let Outcome {
                outputs,
                generated,
                handoffs,
                logs: fired,
                drop,
                decision,
                ..
            } = outcome;
            let only = outputs.len() == 1;
            for o in &outputs {
                d.output(out, &o.target, &o.bytes, only);
            }
            for g in &generated {
                match st.endpoint(&g.target) {
                    Some(ep) => {
                        out.emit(ep, &g.bytes);
                        ctr.generated.add(1);
                    }
                    None => ctr.drop_unmapped_vif.add(1),
                }
            }
            for h in &handoffs {
                ctr.handoffs.add(1);
                let reply = st.services.answer(h.service, &h.context, &h.bytes);
                let (Some(reply), Some(target)) = (reply, h.reply_to) else {
                    ctr.service_unanswered.add(1);
                    continue;
                };
                let vlans = match target {
                    Target::Vif { port: Some(p), .. } => st.loaded.port_vlans(p),
                    _ => &[],
                };
                let reply = push_vlans(reply, vlans);
                match st.endpoint(&target) {
                    Some(ep) => {
                        out.emit(ep, &reply);
                        ctr.service_replies.add(1);
                    }
                    None => ctr.drop_unmapped_vif.add(1),
                }
            }
            if outputs.is_empty() && generated.is_empty() && handoffs.is_empty() {
                count_drop(ctr, drop.as_ref());
            }
            logs = fired;
            match decision {
                Some(dec) => {
                    ctr.cache_inserts.add(1);
                    if self
                        .cache
                        .insert(hash, ingress, parsed.key, generation, dec)
                    {
                        ctr.cache_evictions.add(1);
                    }
                    ctr.cache_entries.set(self.cache.len as u64);
                }
                None => ctr.uncacheable.add(1),
            }
        }
        if !logs.is_empty() {
            self.record_logs(shared, st, &logs, &ingress, &parsed.key, now);
        }
    }

    fn record_logs(
        &mut self,
        shared: &PipelineShared,
        st: &ProgramState,
        logs: &[LogRecord],
        ingress: &Ingress,
        key: &FlowKey,
        now: Duration,
    ) {
        let ctr = &self.block.ctr;
        ctr.logs.add(logs.len() as u64);
        {
            let mut totals = lock(&self.block.logs);
            for r in logs {
                *totals.entry(r.rule.clone()).or_default() += 1;
            }
        }
        let second = now.as_secs();
        if second != self.ring_second {
            self.ring_second = second;
            self.ring_used = 0;
        }
        for r in logs {
            if self.ring_used >= LOG_RING_PER_SEC {
                break;
            }
            self.ring_used += 1;
            shared.push_log(LogEntry {
                rule: r.rule.to_string(),
                ingress: match ingress {
                    Ingress::Vif(v) => st.loaded.vif_name(*v).to_string(),
                    Ingress::Port(p) => st.loaded.port_name(*p).to_string(),
                    Ingress::Tunnel { vni, remote } => format!("tunnel {remote} vni {vni}"),
                },
                flow: format!(
                    "proto {} {}:{} -> {}:{}",
                    key.ip_proto, key.ip_src, key.l4_src, key.ip_dst, key.l4_dst
                ),
                at: now,
            });
        }
    }
}

fn count_drop(ctr: &PipelineCounters, r: Option<&DropReason>) {
    let c = match r {
        Some(DropReason::Malformed(_)) => &ctr.drop_malformed,
        Some(DropReason::UnknownVif) => &ctr.drop_unmapped_tap,
        Some(DropReason::NoPortForTags { .. }) => &ctr.drop_no_port_for_tags,
        Some(DropReason::UnknownVni(_)) => &ctr.drop_unknown_vni,
        Some(DropReason::NoFlowMatched(_)) => &ctr.drop_no_flow,
        Some(DropReason::Dropped(_) | DropReason::EndOfActions(_)) => &ctr.drop_by_flow,
        Some(DropReason::TtlExpired(_)) => &ctr.drop_ttl,
        _ => &ctr.drop_other,
    };
    c.add(1);
}

/// The flow-cache hash of a frame: its key's hash mixed with the ingress.
#[inline]
fn cache_hash(ingress: &Ingress, key: &FlowKey) -> u64 {
    let i = match *ingress {
        Ingress::Vif(v) => u64::from(v.0).wrapping_add(1),
        Ingress::Port(p) => u64::from(p.0) | (1 << 40),
        Ingress::Tunnel { vni, remote } => {
            let r = match remote {
                IpAddr::V4(a) => u64::from(u32::from(a)),
                IpAddr::V6(a) => {
                    let v = u128::from(a);
                    (v as u64) ^ ((v >> 64) as u64)
                }
            };
            (u64::from(vni) << 32) ^ r.rotate_left(17) ^ (1 << 41)
        }
    };
    let mut z = key.hash64() ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 31)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z ^ (z >> 29)
}

/// One cached decision.
struct CacheEntry {
    ingress: Ingress,
    key: FlowKey,
    generation: u64,
    stamp: u64,
    decision: Decision,
}

/// A bounded, set-associative map from (ingress, flow key) to decisions.
/// Hashes live in their own array so a probe touches one cache line until a
/// hash matches.
struct FlowCache {
    hashes: Vec<u64>,
    entries: Vec<Option<Box<CacheEntry>>>,
    /// Sets - 1 (the number of sets is a power of two).
    mask: usize,
    tick: u64,
    len: usize,
}

impl FlowCache {
    /// Entries a cache asked for `n` holds.
    fn capacity_for(n: usize) -> usize {
        n.max(WAYS).next_power_of_two()
    }

    fn new(n: usize) -> FlowCache {
        let cap = Self::capacity_for(n);
        FlowCache {
            hashes: vec![0; cap],
            entries: (0..cap).map(|_| None).collect(),
            mask: cap / WAYS - 1,
            tick: 0,
            len: 0,
        }
    }

    #[inline]
    fn set(&self, hash: u64) -> Range<usize> {
        let s = (hash as usize & self.mask) * WAYS;
        s..s + WAYS
    }

    /// The decision for (ingress, key) made by program `generation`.
    #[inline]
    fn get(
        &mut self,
        hash: u64,
        ingress: &Ingress,
        key: &FlowKey,
        generation: u64,
    ) -> Option<&Decision> {
        self.tick += 1;
        let tick = self.tick;
        for i in self.set(hash) {
            if self.hashes[i] != hash {
                continue;
            }
            if let Some(e) = &mut self.entries[i]
                && e.generation == generation
                && e.ingress == *ingress
                && e.key == *key
            {
                e.stamp = tick;
                return self.entries[i].as_ref().map(|e| &e.decision);
            }
        }
        None
    }

    /// Stores a decision; returns true when a live entry was evicted for it.
    fn insert(
        &mut self,
        hash: u64,
        ingress: Ingress,
        key: FlowKey,
        generation: u64,
        decision: Decision,
    ) -> bool {
        self.tick += 1;
        let set = self.set(hash);
        // The same key (a refreshed decision), else a free way, else one of an
        // older program, else the least recently used.
        let mut victim = set.start;
        let mut best = (4u8, u64::MAX);
        for i in set {
            let rank = match &self.entries[i] {
                Some(e) if self.hashes[i] == hash && e.ingress == ingress && e.key == key => (0, 0),
                None => (1, 0),
                Some(e) if e.generation != generation => (2, e.stamp),
                Some(e) => (3, e.stamp),
            };
            if rank < best {
                best = rank;
                victim = i;
            }
        }
        let evicted = best.0 == 3;
        if self.entries[victim].is_none() {
            self.len += 1;
        }
        self.hashes[victim] = hash;
        self.entries[victim] = Some(Box::new(CacheEntry {
            ingress,
            key,
            generation,
            stamp: self.tick,
            decision,
        }));
        evicted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_move_with_vlan_changes() {
        let o = Offload {
            csum: Some(crate::vnet::CsumOffload {
                start: 34,
                offset: 16,
            }),
            gso: Some(Gso {
                kind: crate::vnet::GsoKind::Tcp4,
                size: 1398,
                hdr_len: 66,
                ecn: false,
            }),
            data_valid: false,
        };
        let p = shift_offload(&o, 4);
        assert_eq!(p.csum.unwrap().start, 38);
        assert_eq!(p.gso.unwrap().hdr_len, 70);
        let m = shift_offload(&o, -4);
        assert_eq!(m.csum.unwrap().start, 30);
        assert_eq!(shift_offload(&o, 0), o);
    }

    #[test]
    fn vlans_are_pushed_outermost_first() {
        let f: Vec<u8> = (0..20).collect();
        let t = push_vlans(f.clone(), &[100, 200]);
        assert_eq!(&t[..12], &f[..12]);
        assert_eq!(&t[12..20], &[0x81, 0, 0, 100, 0x81, 0, 0, 200]);
        assert_eq!(&t[20..], &f[12..]);
        assert_eq!(push_vlans(f.clone(), &[]), f);
    }

    #[test]
    fn both_directions_and_their_errors_share_a_conntrack_shard() {
        use weft_pipeline::ir::{IcmpErrorKind, Unreachable};
        use weft_pipeline::wire::build::{self, L3Spec, L4Spec, PacketSpec};
        let m = weft_pipeline::MacAddr::new(2, 0, 0, 0, 0, 1);
        let pkt = |src: &str, dst: &str, l4: L4Spec| {
            PacketSpec {
                eth_src: m,
                eth_dst: m,
                vlans: vec![],
                l3: L3Spec::Ip {
                    src: src.parse().unwrap(),
                    dst: dst.parse().unwrap(),
                    ttl: 64,
                    l4,
                },
            }
            .build()
        };
        let udp = |s, d| L4Spec::Udp {
            src: s,
            dst: d,
            payload: vec![1; 20],
        };
        let echo = |ty| L4Spec::Icmp {
            ty,
            code: 0,
            rest: [0x12, 0x34, 0, 1],
            payload: vec![0; 8],
        };
        let mut shards = std::collections::BTreeSet::new();
        for (fwd, rev, v6) in [
            (
                pkt("10.0.0.1", "10.0.0.2", udp(1000, 53)),
                pkt("10.0.0.2", "10.0.0.1", udp(53, 1000)),
                false,
            ),
            (
                pkt("fd00::1", "fd00::2", udp(7, 9)),
                pkt("fd00::2", "fd00::1", udp(9, 7)),
                true,
            ),
            (
                pkt("10.0.0.1", "10.0.0.9", echo(8)),
                pkt("10.0.0.9", "10.0.0.1", echo(0)),
                false,
            ),
        ] {
            let (pf, pr) = (wire::parse(&fwd).unwrap(), wire::parse(&rev).unwrap());
            let s = ct_shard(&pf, &fwd);
            assert_eq!(s, ct_shard(&pr, &rev), "both directions");
            let src: IpAddr = if v6 {
                "fd00::fe".parse().unwrap()
            } else {
                "10.0.0.254".parse().unwrap()
            };
            for (frame, p) in [(&fwd, &pf), (&rev, &pr)] {
                let err = build::icmp_error(
                    frame,
                    p,
                    IcmpErrorKind::Unreachable(Unreachable::Host),
                    src,
                    m,
                )
                .unwrap();
                let pe = wire::parse(&err).unwrap();
                assert_eq!(ct_shard(&pe, &err), s, "an error about either direction");
            }
            shards.insert(s);
        }
        // Many flows spread over the shards.
        for port in 0..200u16 {
            let f = pkt("10.0.0.1", "10.0.0.2", udp(port, 80));
            shards.insert(ct_shard(&wire::parse(&f).unwrap(), &f));
        }
        assert_eq!(shards.len(), CT_SHARDS);
    }

    fn key(n: u16) -> FlowKey {
        FlowKey {
            l4_src: n,
            ..FlowKey::default()
        }
    }

    fn decision() -> Decision {
        // A real decision from a one-flow program.
        use weft_pipeline::ir::{Datapath, DatapathKind, Flow, LogicalPort, Match};
        let mut p = Program::new("h");
        p.datapaths
            .push(Datapath::new("n", DatapathKind::Switch, 5, &["t"]));
        p.ports.push(LogicalPort::local("a", "n", "tap-a", vec![]));
        p.add_flow("n", "t", Flow::new(1, Match::new(), vec![Action::Drop]));
        let l = Loaded::load(&p).unwrap();
        let mut ct = Conntrack::default();
        let frame = [0u8; 60];
        let v = l.vif_id("tap-a").unwrap();
        let o = px::execute(
            &l,
            &mut ct,
            Ingress::Vif(v),
            &frame,
            Duration::ZERO,
            &ExecOptions::default(),
        );
        o.decision.expect("a drop is cacheable")
    }

    #[test]
    fn cache_is_bounded_and_counts_evictions() {
        let mut c = FlowCache::new(16);
        let d = decision();
        let ing = Ingress::Vif(px::VifId(0));
        let mut evictions = 0;
        for n in 0..1000u16 {
            let k = key(n);
            if c.insert(cache_hash(&ing, &k), ing, k, 7, d.clone()) {
                evictions += 1;
            }
            assert!(c.len <= 16);
        }
        assert_eq!(c.len, 16);
        assert_eq!(evictions, 1000 - 16);
        // The most recent key is there; an old generation is not served.
        let k = key(999);
        let h = cache_hash(&ing, &k);
        assert!(c.get(h, &ing, &k, 7).is_some());
        assert!(c.get(h, &ing, &k, 8).is_none());
        // Replacing entries of an older program is not an eviction.
        let k2 = key(5000);
        let mut replaced_live = false;
        for n in 0..64u16 {
            let k = key(6000 + n);
            replaced_live |= c.insert(cache_hash(&ing, &k), ing, k, 8, d.clone());
        }
        assert!(!replaced_live || c.len == 16);
        assert!(c.get(cache_hash(&ing, &k2), &ing, &k2, 8).is_none());
    }

    #[test]
    fn lru_keeps_the_entry_in_use() {
        let mut c = FlowCache::new(4); // one set of four ways
        let d = decision();
        let ing = Ingress::Vif(px::VifId(0));
        let hot = key(1);
        let hh = cache_hash(&ing, &hot);
        c.insert(hh, ing, hot, 1, d.clone());
        for n in 2..100u16 {
            assert!(c.get(hh, &ing, &hot, 1).is_some(), "hot key evicted at {n}");
            let k = key(n);
            c.insert(cache_hash(&ing, &k), ing, k, 1, d.clone());
        }
    }
}
