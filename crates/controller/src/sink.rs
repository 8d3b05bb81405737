//! Host writes into the intent: a host reports the status of ports bound to
//! it (never which host a port is on: that is the compute side's, through
//! the API) and where its tunnel ends.

use std::net::IpAddr;

use async_trait::async_trait;
use tracing::info;
use weft_model::{Command, Id, PortStatus};
use weft_southbound::PortState;

use crate::compile::CompileService;
use crate::intent::IntentService;
use crate::southbound::HostWriteSink;

/// The controller's [`HostWriteSink`].
pub struct IntentWriteSink {
    /// The intent.
    pub intent: IntentService,
    /// Where tunnel addresses go.
    pub compile: CompileService,
}

#[async_trait]
impl HostWriteSink for IntentWriteSink {
    fn port_host(&self, port_id: &str) -> Option<String> {
        self.intent
            .read(|i| i.instance_ports().get(port_id).and_then(|p| p.host.clone()))
    }

    async fn set_port_status(
        &self,
        host: &str,
        port_id: &str,
        state: PortState,
        detail: &str,
    ) -> Result<(), String> {
        let status = match state {
            PortState::Up => PortStatus::Up,
            PortState::Down | PortState::Error => PortStatus::Down,
        };
        let unchanged = self.intent.read(|i| {
            i.instance_ports()
                .get(port_id)
                .is_some_and(|p| p.status == status)
        });
        if unchanged {
            return Ok(());
        }
        info!(%host, port = %port_id, ?state, %detail, "port status from host");
        self.intent
            .submit(Command::SetPortStatus {
                id: Id::new(port_id),
                status,
            })
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn host_tunnel(&self, host: &str, tunnel: IpAddr) {
        if weft_compiler::HostDirectory::tunnel_ip(self.compile.tunnels.as_ref(), host)
            != Some(tunnel)
        {
            info!(%host, %tunnel, "host tunnel endpoint");
            self.compile.tunnels.announce(host, tunnel).await;
        }
    }
}
