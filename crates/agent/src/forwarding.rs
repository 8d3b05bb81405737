//! The default backend: the userspace forwarder. [`ForwarderBackend`] hands
//! every view the agent commits to `weft-dataplane`'s [`HostForwarder`],
//! which decodes the records into the host's program and local services,
//! loads the program fully, creates TAPs for new vifs and swaps the program in
//! as one piece; a view that does not decode or load is refused with an error
//! and the previous program keeps forwarding.
//!
//! `weft agent` takes [`ForwardingArgs`] and runs a [`PortStatusReporter`]
//! next to the agent: a port is reported up once its TAP exists (the
//! compiler counts only up ports as anycast holders) and down once removed.
//!
//! TAPs are named [`weft_dataplane::tap_name`]`(instance port id)` and created
//! in the agent's network namespace; the compute side moves them into guests.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, Result};
use clap::Args;
use tracing::info;
use weft_dataplane::{HostConfig, HostForwarder, HostMonitor};

use crate::runtime::{AgentHandle, Report};
use crate::{Backend, MemoryBackend};
use weft_southbound::PortState;

/// The userspace forwarder as the agent's backend.
#[derive(Debug)]
pub struct ForwarderBackend {
    host: String,
    fwd: HostForwarder,
}

impl ForwarderBackend {
    /// Starts the forwarder of `host` with its VXLAN endpoint at
    /// `tunnel_ip:4789`, in the calling thread's network namespace.
    pub fn start(host: impl Into<String>, tunnel_ip: IpAddr) -> Result<Self> {
        Self::with_config(
            host,
            HostConfig::new(SocketAddr::new(
                tunnel_ip,
                weft_dataplane::vxlan::DEFAULT_PORT,
            )),
        )
    }

    /// Starts the forwarder with a full configuration.
    pub fn with_config(host: impl Into<String>, cfg: HostConfig) -> Result<Self> {
        let local = cfg.forwarder.tunnel_local;
        let fwd = HostForwarder::start(cfg)
            .with_context(|| format!("starting the forwarder with its tunnel socket on {local}"))?;
        Ok(ForwarderBackend {
            host: host.into(),
            fwd,
        })
    }

    /// A thread-safe view of the forwarder: TAPs, counters, the pipeline.
    pub fn monitor(&self) -> HostMonitor {
        self.fwd.monitor()
    }

    /// The forwarder.
    pub fn forwarder(&self) -> &HostForwarder {
        &self.fwd
    }

    /// The counters as `(name, value)` pairs, for `Report::Counters`.
    pub fn counters(&self) -> Vec<(String, u64)> {
        counters(&self.fwd.monitor())
    }
}

/// A forwarder's counters as `(name, value)` pairs (`tap.<vif>.rx_frames`,
/// `pipeline.cache_hits`, `conntrack.entries`, ...).
pub fn counters(m: &HostMonitor) -> Vec<(String, u64)> {
    m.stats()
        .to_string()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

impl Backend for ForwarderBackend {
    fn apply(&mut self, view: &BTreeMap<String, Vec<u8>>) -> Result<()> {
        let applied = self
            .fwd
            .apply_records(&self.host, view)
            .context("the forwarder refused the view")?;
        info!(
            generation = applied.generation,
            added = applied.added.len(),
            removed = applied.removed.len(),
            records = view.len(),
            "forwarder runs the new program"
        );
        Ok(())
    }
}

/// `weft agent` options of the forwarder backend.
#[derive(Args, Debug, Clone)]
pub struct ForwardingArgs {
    /// VXLAN UDP port, local and remote.
    #[arg(long, default_value_t = weft_dataplane::vxlan::DEFAULT_PORT, env = "WEFT_VXLAN_PORT")]
    pub vxlan_port: u16,
    /// MTU of the underlay; TCP segments are sized so VXLAN packets fit it.
    #[arg(long, default_value_t = 1500, env = "WEFT_UNDERLAY_MTU")]
    pub underlay_mtu: u16,
    /// Accept VXLAN packets from hosts the program never sends to (by
    /// default they are dropped before the pipeline).
    #[arg(long)]
    pub accept_unknown_peers: bool,
    /// Run without a forwarder: views are only recorded (tests, dry runs).
    #[arg(long)]
    pub no_forwarder: bool,
}

impl ForwardingArgs {
    /// The backend these options ask for: the forwarder bound to
    /// `tunnel_ip`, or the in-memory recorder with `--no-forwarder` (or
    /// without a tunnel address, which the forwarder needs).
    pub fn backend(&self, host: &str, tunnel_ip: Option<IpAddr>) -> Result<Box<dyn Backend>> {
        Ok(match self.forwarder(host, tunnel_ip)? {
            Some(f) => Box::new(f),
            None => Box::new(MemoryBackend::new()),
        })
    }

    /// The forwarder these options ask for, started in the calling thread's
    /// network namespace; `None` with `--no-forwarder`.
    pub fn forwarder(
        &self,
        host: &str,
        tunnel_ip: Option<IpAddr>,
    ) -> Result<Option<ForwarderBackend>> {
        match (self.no_forwarder, tunnel_ip) {
            (false, Some(ip)) => {
                let mut cfg = HostConfig::new(SocketAddr::new(ip, self.vxlan_port));
                cfg.forwarder.underlay_mtu = self.underlay_mtu;
                cfg.pipeline.accept_unknown_peers = self.accept_unknown_peers;
                Ok(Some(ForwarderBackend::with_config(host, cfg)?))
            }
            (false, None) => anyhow::bail!(
                "the forwarder needs this host's tunnel address: pass --tunnel-ip (or --no-forwarder)"
            ),
            (true, _) => Ok(None),
        }
    }
}

/// Reports the status of local ports as the forwarder sees them: up once the
/// port's TAP exists, down once it is removed. The compiler counts only up
/// ports as anycast holders, so a port is usable for ECMP once its host said so.
#[derive(Debug)]
pub struct PortStatusReporter {
    monitor: HostMonitor,
    reported: BTreeSet<String>,
}

impl PortStatusReporter {
    /// A reporter over `monitor` that has reported nothing yet.
    pub fn new(monitor: HostMonitor) -> Self {
        PortStatusReporter {
            monitor,
            reported: BTreeSet::new(),
        }
    }

    /// The status changes since the last call, as reports.
    pub fn changes(&mut self) -> Vec<Report> {
        let taps: BTreeMap<String, String> = self
            .monitor
            .taps()
            .into_iter()
            .map(|t| (t.vif, t.tap))
            .collect();
        let mut out = Vec::new();
        for (vif, tap) in &taps {
            if self.reported.insert(vif.clone()) {
                out.push(Report::PortStatus {
                    port_id: vif.clone(),
                    state: PortState::Up,
                    detail: format!("TAP {tap} created"),
                });
            }
        }
        let gone: Vec<String> = self
            .reported
            .iter()
            .filter(|v| !taps.contains_key(*v))
            .cloned()
            .collect();
        for vif in gone {
            self.reported.remove(&vif);
            out.push(Report::PortStatus {
                port_id: vif,
                state: PortState::Down,
                detail: "TAP removed".into(),
            });
        }
        out
    }

    /// Queues the changes for the controller (sent once a session is in sync).
    /// A change the queue refuses is offered again at the next call.
    pub fn poll(&mut self, agent: &AgentHandle) {
        for r in self.changes() {
            if let Report::PortStatus { port_id, state, .. } = &r {
                let (port_id, up) = (port_id.clone(), *state == PortState::Up);
                if let Err(e) = agent.report(r) {
                    tracing::warn!(port = %port_id, error = %e, "port status not queued; retrying");
                    // Undo the bookkeeping so the next poll offers it again.
                    if up {
                        self.reported.remove(&port_id);
                    } else {
                        self.reported.insert(port_id);
                    }
                }
            }
        }
    }
}
