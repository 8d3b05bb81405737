//! A host's forwarder as the agent runs it: the [`Forwarder`] with a
//! [`PipelineProcessor`](crate::pipeline::PipelineProcessor) per worker, the TAP set kept equal to the program's
//! vifs, atomic program swaps, and a timer thread for periodic work.
//!
//! ```text
//!  apply_view(HostView) ─► to_program + services ─► Loaded::load ──error──► Err (old program runs on)
//!                                                        │ ok
//!      new vifs ─► create TAPs (in the host's netns) ─► ProgramState (vif ↔ TAP slot) ─► swap
//!      gone vifs ◄──────────────────────── remove TAPs ◄──────────────────────────────┘
//!  timer thread: every second conntrack sweep; every 30 s router advertisements
//! ```
//!
//! # TAP names
//!
//! A vif is an instance port id; its TAP is named [`tap_name`]`(vif)`: `wt`
//! and 11 hex digits of a stable hash (FNV-1a) of the id, 13 characters, under
//! the kernel's 15. The name is the same on every host and after every
//! restart, so a harness (or Nova-like compute side) can find the TAP of a
//! port without asking. [`HostForwarder::taps`] gives the mapping too.
//!
//! TAPs are created in the network namespace the forwarder was started in,
//! whichever thread calls [`HostForwarder::apply_view`]. The compute side may
//! then move the TAP's kernel side into the guest's namespace and rename it;
//! the forwarder keeps working through its file descriptor.
//!
//! # Restarts
//!
//! TAPs are not persistent: when the forwarder stops (or its process dies),
//! the kernel deletes them, in whatever namespace they were moved to. A
//! restarted forwarder (the agent rebuilding from its local view) cannot
//! re-attach to a TAP that lives in another namespace, so it creates fresh
//! TAPs with the same names in its own namespace; the compute side must move
//! them into the guests' namespaces again. Connections survive in the guests
//! but conntrack starts empty, so established TCP flows through stateful
//! security groups are refused until they reconnect unless
//! `ConntrackConfig::tcp_loose` is set.
//!
//! # MTU
//!
//! A TAP gets its port's MTU when the view carries it (today: the DHCPv4
//! configuration of ports on subnets with DHCP), else
//! [`HostConfig::default_mtu`] (the model's default, 1450).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use weft_compiler::{HostView, ServiceConfig};
use weft_pipeline::exec::{LoadError, Loaded};
use weft_pipeline::ir::{PortLocation, Program};

use crate::error::Error;
use crate::forwarder::{Forwarder, ForwarderConfig, ForwarderHandle, RunningForwarder, TapConfig};
use crate::pipeline::{PipelineConfig, PipelineShared, PipelineStats, ProgramState, push_vlans};
use crate::processor::{Endpoint, VifId};
use crate::stats::Stats;
use crate::tap::TapOptions;

/// The MTU a TAP gets when the view does not say (`weft_model::DEFAULT_MTU`).
pub const DEFAULT_MTU: u16 = 1450;

/// The TAP name of a vif: `wt` and 11 hex digits of the FNV-1a hash of its id.
pub fn tap_name(vif: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in vif.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("wt{:011x}", h >> 20)
}

/// How a host forwarder runs.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Tunnel socket, threads and batching (its `taps` list must be empty:
    /// TAPs follow the program).
    pub forwarder: ForwarderConfig,
    /// How TAPs are opened.
    pub tap_options: TapOptions,
    /// Flow cache, conntrack and logging.
    pub pipeline: PipelineConfig,
    /// TAP MTU when the view does not carry the port's; `None` leaves the
    /// kernel's default.
    pub default_mtu: Option<u16>,
    /// Interval of unsolicited router advertisements.
    pub router_advert_interval: Duration,
    /// Interval of conntrack sweeps.
    pub maintenance_interval: Duration,
}

impl HostConfig {
    /// Defaults, with the tunnel socket bound to `tunnel_local` (the host's
    /// tunnel address and VXLAN port, 4789 by default).
    pub fn new(tunnel_local: SocketAddr) -> Self {
        HostConfig {
            forwarder: ForwarderConfig::new(Vec::<String>::new(), tunnel_local),
            tap_options: TapOptions::default(),
            pipeline: PipelineConfig::default(),
            default_mtu: Some(DEFAULT_MTU),
            router_advert_interval: Duration::from_secs(30),
            maintenance_interval: Duration::from_secs(1),
        }
    }
}

/// One TAP the forwarder holds for a vif.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapInfo {
    /// The vif (instance port id).
    pub vif: String,
    /// The TAP's name as created.
    pub tap: String,
    /// Its slot in the forwarder.
    pub slot: VifId,
    /// The MTU it was given.
    pub mtu: Option<u16>,
}

/// A view or program the forwarder refused; the previous program runs on.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The view's records do not decode.
    #[error("the view does not decode: {0}; the previous program keeps running")]
    Decode(String),
    /// The program does not load.
    #[error("the program does not load: {0}; the previous program keeps running")]
    Load(#[from] LoadError),
    /// A TAP could not be created.
    #[error(
        "TAP {tap:?} for vif {vif:?} cannot be created: {source}; the previous program keeps running"
    )]
    Tap {
        /// The vif.
        vif: String,
        /// The TAP name.
        tap: String,
        /// Why.
        source: Error,
    },
    /// Two vifs hash to the same TAP name.
    #[error(
        "vifs {vif:?} and {other:?} both map to TAP name {tap:?}; rename one port (the previous program keeps running)"
    )]
    NameClash {
        /// The new vif.
        vif: String,
        /// The vif already holding the name.
        other: String,
        /// The name.
        tap: String,
    },
}

/// What an accepted program changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Generation of the program now running.
    pub generation: u64,
    /// TAPs created for new vifs.
    pub added: Vec<TapInfo>,
    /// TAPs removed with their vifs.
    pub removed: Vec<TapInfo>,
}

/// Counters of a host forwarder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostStats {
    /// Packet I/O (TAPs by slot, tunnel socket, drops).
    pub forwarder: Stats,
    /// Pipeline, flow cache, conntrack, logs.
    pub pipeline: PipelineStats,
    /// The TAPs, to name the slots.
    pub taps: Vec<TapInfo>,
}

impl fmt::Display for HostStats {
    /// `key=value` lines: `tap.<vif>.<counter>`, `tunnel.*`, `drops.*`, then
    /// the pipeline's.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for t in &self.taps {
            if let Some(v) = self.forwarder.vifs.get(t.slot.0 as usize) {
                for (k, n) in v.fields() {
                    writeln!(f, "tap.{}.{k}={n}", t.vif)?;
                }
            }
        }
        for (k, n) in self.forwarder.tunnel.fields() {
            writeln!(f, "tunnel.{k}={n}")?;
        }
        for (k, n) in self.forwarder.drops.fields() {
            writeln!(f, "drops.{k}={n}")?;
        }
        write!(f, "{}", self.pipeline)
    }
}

/// A cloneable, thread-safe view of a running host forwarder (for agents and
/// harnesses that hand the forwarder itself to someone else).
#[derive(Debug, Clone)]
pub struct HostMonitor {
    handle: ForwarderHandle,
    shared: Arc<PipelineShared>,
    registry: Arc<Mutex<BTreeMap<String, TapInfo>>>,
}

impl HostMonitor {
    /// The TAPs, by vif.
    pub fn taps(&self) -> Vec<TapInfo> {
        lock(&self.registry).values().cloned().collect()
    }

    /// The TAP of one vif.
    pub fn tap(&self, vif: &str) -> Option<TapInfo> {
        lock(&self.registry).get(vif).cloned()
    }

    /// All counters.
    pub fn stats(&self) -> HostStats {
        HostStats {
            forwarder: self.handle.stats(),
            pipeline: self.shared.stats(),
            taps: self.taps(),
        }
    }

    /// The pipeline's shared state (program, conntrack, logs).
    pub fn pipeline(&self) -> &Arc<PipelineShared> {
        &self.shared
    }

    /// The forwarder's control handle.
    pub fn forwarder(&self) -> &ForwarderHandle {
        &self.handle
    }

    /// Sends an unsolicited router advertisement to every local port of every
    /// switch with an RA configuration now (the timer does it periodically).
    /// Returns how many frames were queued.
    pub fn send_router_adverts(&self) -> usize {
        let st = self.shared.current();
        let mut n = 0;
        for cfg in st.services() {
            let ServiceConfig::RouterAdvert { datapath, .. } = cfg else {
                continue;
            };
            let Some(frame) = weft_services::ra::unsolicited(cfg) else {
                continue;
            };
            for (slot, vlans) in st.local_ports(datapath) {
                let f = push_vlans(frame.clone(), &vlans);
                if self.handle.inject(Endpoint::Tap(slot), &f) {
                    n += 1;
                }
            }
        }
        n
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running host forwarder. Dropping it stops it (and deletes its TAPs).
#[derive(Debug)]
pub struct HostForwarder {
    running: Option<RunningForwarder>,
    monitor: HostMonitor,
    /// The network namespace TAPs are created in.
    netns: File,
    cfg: HostConfig,
    timer: Option<(JoinHandle<()>, mpsc::Sender<()>)>,
}

impl HostForwarder {
    /// Binds the tunnel socket and starts the workers with no program (every
    /// frame dropped) in the calling thread's network namespace, which is
    /// also where TAPs will be created.
    pub fn start(cfg: HostConfig) -> Result<HostForwarder, Error> {
        if !cfg.forwarder.taps.is_empty() {
            return Err(Error::Config(
                "a host forwarder creates its TAPs from the program; leave ForwarderConfig::taps empty"
                    .into(),
            ));
        }
        let netns = File::open("/proc/thread-self/ns/net").map_err(|e| Error::Runtime {
            op: "open /proc/thread-self/ns/net",
            source: e,
        })?;
        let shared = PipelineShared::new(cfg.pipeline.clone());
        let fwd = Forwarder::open(cfg.forwarder.clone())?;
        let running = fwd.start(|_| shared.processor())?;
        let monitor = HostMonitor {
            handle: running.handle(),
            shared,
            registry: Arc::default(),
        };
        let (stop_tx, stop_rx) = mpsc::channel();
        let timer = {
            let m = monitor.clone();
            let (tick, ra) = (cfg.maintenance_interval, cfg.router_advert_interval);
            std::thread::Builder::new()
                .name("weft-fwd-timer".into())
                .spawn(move || timer_loop(&m, &stop_rx, tick, ra))
                .map_err(|e| Error::Runtime {
                    op: "spawn timer thread",
                    source: e,
                })?
        };
        Ok(HostForwarder {
            running: Some(running),
            monitor,
            netns,
            cfg,
            timer: Some((timer, stop_tx)),
        })
    }

    /// A cloneable view for other threads.
    pub fn monitor(&self) -> HostMonitor {
        self.monitor.clone()
    }

    /// The TAPs, by vif.
    pub fn taps(&self) -> Vec<TapInfo> {
        self.monitor.taps()
    }

    /// The TAP of one vif.
    pub fn tap(&self, vif: &str) -> Option<TapInfo> {
        self.monitor.tap(vif)
    }

    /// All counters.
    pub fn stats(&self) -> HostStats {
        self.monitor.stats()
    }

    /// The pipeline's shared state.
    pub fn pipeline(&self) -> &Arc<PipelineShared> {
        &self.monitor.shared
    }

    /// The bound tunnel address.
    pub fn tunnel_local(&self) -> SocketAddr {
        self.cfg.forwarder.tunnel_local
    }

    /// Decodes an agent's view records (see `weft_compiler::view`) and applies them.
    pub fn apply_records(
        &mut self,
        host: &str,
        records: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Applied, ApplyError> {
        let view =
            weft_compiler::view::decode_records(host, records).map_err(ApplyError::Decode)?;
        self.apply_view(&view)
    }

    /// Applies a host view: its program and local services.
    pub fn apply_view(&mut self, view: &HostView) -> Result<Applied, ApplyError> {
        self.apply_program(&view.to_program(), view.services())
    }

    /// Loads `program` fully, creates TAPs for its new vifs, swaps it in as
    /// one piece, then removes the TAPs of vifs it no longer has. On any
    /// error before the swap nothing changed and the old program runs on.
    /// The same program and services as the running ones change nothing (the
    /// flow caches stay warm).
    pub fn apply_program(
        &mut self,
        program: &Program,
        services: Vec<ServiceConfig>,
    ) -> Result<Applied, ApplyError> {
        let current = self.monitor.shared.current();
        if current.loaded().program() == program && current.services() == services.as_slice() {
            return Ok(Applied {
                generation: current.generation(),
                ..Applied::default()
            });
        }
        drop(current);
        let loaded = Loaded::load(program)?;
        let mtus = port_mtus(program, &services);
        let wanted: BTreeMap<String, Option<u16>> = loaded
            .vifs()
            .map(|(_, v)| (v.to_string(), mtus.get(v).copied().or(self.cfg.default_mtu)))
            .collect();
        let current = lock(&self.monitor.registry).clone();
        let mut to_add = Vec::new();
        let mut names: HashMap<String, String> = current
            .values()
            .map(|t| (t.tap.clone(), t.vif.clone()))
            .collect();
        for (vif, mtu) in &wanted {
            if current.contains_key(vif) {
                continue;
            }
            let tap = tap_name(vif);
            if let Some(other) = names.get(&tap)
                && other != vif
                && wanted.contains_key(other)
            {
                return Err(ApplyError::NameClash {
                    vif: vif.clone(),
                    other: other.clone(),
                    tap,
                });
            }
            names.insert(tap.clone(), vif.clone());
            to_add.push((vif.clone(), tap, *mtu));
        }
        let mtu_changes: Vec<(String, u16)> = wanted
            .iter()
            .filter_map(|(vif, mtu)| {
                let t = current.get(vif)?;
                match mtu {
                    Some(m) if t.mtu != Some(*m) => Some((t.tap.clone(), *m)),
                    _ => None,
                }
            })
            .collect();
        let added = self.create_taps(&to_add, &mtu_changes)?;
        let applied = {
            let mut reg = lock(&self.monitor.registry);
            for t in &added {
                reg.insert(t.vif.clone(), t.clone());
            }
            for (tap, m) in &mtu_changes {
                if let Some(t) = reg.values_mut().find(|t| &t.tap == tap) {
                    t.mtu = Some(*m);
                }
            }
            let state = ProgramState::new(loaded, services, |vif| reg.get(vif).map(|t| t.slot));
            let generation = state.generation();
            self.monitor.shared.swap(state);
            let gone: Vec<String> = reg
                .keys()
                .filter(|v| !wanted.contains_key(*v))
                .cloned()
                .collect();
            let removed: Vec<TapInfo> = gone.iter().filter_map(|v| reg.remove(v)).collect();
            Applied {
                generation,
                added,
                removed,
            }
        };
        for t in &applied.removed {
            if let Err(e) = self.monitor.handle.remove_tap(t.slot) {
                tracing::error!(tap = t.tap, vif = t.vif, error = %e, "cannot remove TAP");
            }
        }
        for t in &applied.added {
            tracing::info!(vif = t.vif, tap = t.tap, slot = t.slot.0, mtu = ?t.mtu, "TAP created");
        }
        for t in &applied.removed {
            tracing::info!(vif = t.vif, tap = t.tap, "TAP removed");
        }
        Ok(applied)
    }

    /// Creates TAPs in the forwarder's namespace (on a helper thread that
    /// entered it); on failure removes those created and returns the error.
    fn create_taps(
        &self,
        to_add: &[(String, String, Option<u16>)],
        mtu_changes: &[(String, u16)],
    ) -> Result<Vec<TapInfo>, ApplyError> {
        if to_add.is_empty() && mtu_changes.is_empty() {
            return Ok(Vec::new());
        }
        let handle = &self.monitor.handle;
        let options = self.cfg.tap_options;
        let netns = &self.netns;
        std::thread::scope(|s| {
            s.spawn(move || {
                if let Err(e) = setns(netns, CloneFlags::CLONE_NEWNET) {
                    let (vif, tap) = to_add
                        .first()
                        .map(|(v, t, _)| (v.clone(), t.clone()))
                        .unwrap_or_default();
                    return Err(ApplyError::Tap {
                        vif,
                        tap,
                        source: Error::Runtime {
                            op: "setns into the forwarder's network namespace",
                            source: e.into(),
                        },
                    });
                }
                for (tap, mtu) in mtu_changes {
                    // Fails once the TAP was moved to a guest; the guest owns it then.
                    if let Some((_, t)) = handle.taps().into_iter().find(|(_, t)| t.name() == tap)
                        && let Err(e) = t.set_mtu(*mtu)
                    {
                        tracing::debug!(tap, error = %e, "MTU not changed");
                    }
                }
                let mut added: Vec<TapInfo> = Vec::new();
                for (vif, tap, mtu) in to_add {
                    let cfg = TapConfig {
                        name: tap.clone(),
                        options,
                        mtu: *mtu,
                    };
                    match handle.add_tap(&cfg) {
                        Ok((slot, t)) => added.push(TapInfo {
                            vif: vif.clone(),
                            tap: t.name().to_string(),
                            slot,
                            mtu: *mtu,
                        }),
                        Err(source) => {
                            for t in &added {
                                let _ = handle.remove_tap(t.slot);
                            }
                            return Err(ApplyError::Tap {
                                vif: vif.clone(),
                                tap: tap.clone(),
                                source,
                            });
                        }
                    }
                }
                Ok(added)
            })
            .join()
            .unwrap_or_else(|_| {
                Err(ApplyError::Decode(
                    "the TAP helper thread panicked".to_string(),
                ))
            })
        })
    }

    /// Sends router advertisements now (see [`HostMonitor::send_router_adverts`]).
    pub fn send_router_adverts(&self) -> usize {
        self.monitor.send_router_adverts()
    }

    /// Stops the workers and the timer, closes the TAPs and returns the final counters.
    pub fn stop(mut self) -> Result<HostStats, Error> {
        self.stop_timer();
        let taps = self.taps();
        let pipeline = self.monitor.shared.stats();
        let forwarder = match self.running.take() {
            Some(r) => r.stop()?,
            None => Stats::default(),
        };
        Ok(HostStats {
            forwarder,
            pipeline,
            taps,
        })
    }

    fn stop_timer(&mut self) {
        if let Some((h, stop)) = self.timer.take() {
            drop(stop);
            let _ = h.join();
        }
    }
}

impl Drop for HostForwarder {
    fn drop(&mut self) {
        self.stop_timer();
    }
}

/// The MTU of each local vif the view carries (ports with DHCP).
fn port_mtus(program: &Program, services: &[ServiceConfig]) -> HashMap<String, u16> {
    let vif_of: HashMap<&str, &str> = program
        .ports
        .iter()
        .filter_map(|p| match &p.location {
            PortLocation::Local { vif, vlans } if vlans.is_empty() => {
                Some((p.name.as_str(), vif.as_str()))
            }
            _ => None,
        })
        .collect();
    services
        .iter()
        .filter_map(|s| match s {
            ServiceConfig::Dhcp4 { context, mtu, .. } => {
                vif_of.get(context.as_str()).map(|v| (v.to_string(), *mtu))
            }
            _ => None,
        })
        .collect()
}

fn timer_loop(m: &HostMonitor, stop: &mpsc::Receiver<()>, tick: Duration, ra: Duration) {
    let mut last_ra = Instant::now();
    loop {
        match stop.recv_timeout(tick) {
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let now = Instant::now();
        m.shared.maintain(now);
        if now.duration_since(last_ra) >= ra {
            last_ra = now;
            let n = m.send_router_adverts();
            tracing::trace!(frames = n, "periodic router advertisements");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tap_names_are_stable_and_short() {
        let a = tap_name("instance-port-23");
        assert_eq!(a, tap_name("instance-port-23"));
        assert_eq!(a.len(), 13);
        assert!(a.starts_with("wt"));
        assert!(a[2..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, tap_name("instance-port-24"));
        // FNV-1a of the empty string, top 44 bits: fixed forever.
        assert_eq!(tap_name(""), "wtcbf29ce4842");
    }
}
