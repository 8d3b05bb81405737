//! Host writes: the seam to the rest of the controller ([`HostWriteSink`]) and the checks
//! that keep a host to its own rows (its ports, its bindings, its reports).

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::Instant;

use async_trait::async_trait;
use weft_southbound::{BindingTable, HostWrite, LearnedBinding, PortState, Refusal};

use super::hosts::Registry;

/// Where accepted host writes go; implemented by the controller over its intent (the port's
/// host binding is set by the compute side through the API, never by the host).
#[async_trait]
pub trait HostWriteSink: Send + Sync + 'static {
    /// The host a port is bound to, if any.
    fn port_host(&self, port_id: &str) -> Option<String>;

    /// Records the status `host` reports for one of its ports (ownership already checked).
    async fn set_port_status(
        &self,
        host: &str,
        port_id: &str,
        state: PortState,
        detail: &str,
    ) -> Result<(), String>;

    /// The learned bindings of a port changed (learned, refreshed with news, or expired).
    async fn bindings_changed(&self, _port_id: &str, _bindings: &[LearnedBinding]) {}

    /// A host announced its tunnel endpoint (its own row).
    async fn host_tunnel(&self, _host: &str, _tunnel: std::net::IpAddr) {}
}

/// A [`HostWriteSink`] over in-memory maps: port bindings set by the caller (standing in for
/// the compute side) and the statuses hosts reported. For tests, benchmarks and a controller
/// without intent wiring.
#[derive(Default)]
pub struct MemoryWriteSink {
    ports: RwLock<HashMap<String, String>>,
    statuses: Mutex<HashMap<String, (String, PortState, String)>>,
    bindings: Mutex<HashMap<String, Vec<LearnedBinding>>>,
}

impl MemoryWriteSink {
    /// Binds a port to a host (what the compute side does through the API).
    pub fn bind_port(&self, port_id: &str, host: &str) {
        self.ports
            .write()
            .expect("sink lock")
            .insert(port_id.into(), host.into());
    }

    /// The status last reported for a port: (host, state, detail).
    pub fn status(&self, port_id: &str) -> Option<(String, PortState, String)> {
        self.statuses
            .lock()
            .expect("sink lock")
            .get(port_id)
            .cloned()
    }

    /// The learned bindings last published for a port.
    pub fn bindings(&self, port_id: &str) -> Vec<LearnedBinding> {
        self.bindings
            .lock()
            .expect("sink lock")
            .get(port_id)
            .cloned()
            .unwrap_or_default()
    }
}

#[async_trait]
impl HostWriteSink for MemoryWriteSink {
    fn port_host(&self, port_id: &str) -> Option<String> {
        self.ports.read().expect("sink lock").get(port_id).cloned()
    }

    async fn set_port_status(
        &self,
        host: &str,
        port_id: &str,
        state: PortState,
        detail: &str,
    ) -> Result<(), String> {
        self.statuses
            .lock()
            .expect("sink lock")
            .insert(port_id.into(), (host.into(), state, detail.into()));
        Ok(())
    }

    async fn bindings_changed(&self, port_id: &str, bindings: &[LearnedBinding]) {
        self.bindings
            .lock()
            .expect("sink lock")
            .insert(port_id.into(), bindings.to_vec());
    }
}

/// Checks that `port_id` is bound to `host`. The refusal does not say which host holds the
/// port: that is another host's business.
fn own_port(sink: &dyn HostWriteSink, host: &str, port_id: &str) -> Result<(), Refusal> {
    match sink.port_host(port_id) {
        Some(h) if h == host => Ok(()),
        _ => Err(Refusal::Forbidden(format!(
            "port {port_id} is not bound to host {host}; a host writes only its own ports (the compute side binds ports through the API)"
        ))),
    }
}

/// Applies one checked write of `host`.
pub async fn apply(
    sink: &dyn HostWriteSink,
    registry: &Registry,
    bindings: &Mutex<BindingTable>,
    host: &str,
    write: HostWrite,
    now: Instant,
) -> Result<(), Refusal> {
    match write {
        HostWrite::PortStatus {
            port_id,
            state,
            detail,
        } => {
            own_port(sink, host, &port_id)?;
            sink.set_port_status(host, &port_id, state, &detail)
                .await
                .map_err(Refusal::Unavailable)
        }
        HostWrite::Bindings {
            port_id,
            bindings: learned,
        } => {
            own_port(sink, host, &port_id)?;
            let (new, current) = {
                let mut table = bindings.lock().expect("binding table lock");
                let new = table
                    .learn(host, &port_id, &learned, now)
                    .map_err(|e| Refusal::Limited(e.to_string()))?;
                (new, table.of_port(&port_id))
            };
            if new > 0 {
                sink.bindings_changed(&port_id, &current).await;
            }
            Ok(())
        }
        HostWrite::Liveness(peers) => {
            registry.set_liveness(host, peers);
            Ok(())
        }
        HostWrite::Counters(counters) => {
            registry.set_counters(host, counters);
            Ok(())
        }
    }
}
