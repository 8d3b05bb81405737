//! What flows between the controller and the speaker, and between the
//! speaker's tasks: configuration, status reports and the internal
//! command/report messages of [`crate::tasks`].

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::error::ConfigError;
use crate::neighbor::State;
use crate::rib::{ExportSet, RibChange};
use crate::route::Family;

/// Default hold time we propose, in seconds (RFC 4271 suggests 90).
pub const DEFAULT_HOLD_TIME: u16 = 90;
/// Default interval between connection attempts, in seconds. Shorter than
/// RFC 4271's suggested 120 s so a controller restart reconnects quickly.
pub const DEFAULT_CONNECT_RETRY: u64 = 5;

/// The speaker's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpeakerConfig {
    /// Our AS number (4-byte capable).
    pub local_as: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// Where to accept connections from peers (usually `0.0.0.0:179`);
    /// `None` to only connect out.
    pub listen: Option<SocketAddr>,
    /// The peers.
    pub peers: Vec<PeerConfig>,
}

/// One peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerConfig {
    /// The peer's address.
    pub address: IpAddr,
    /// The peer's AS (equal to ours for iBGP).
    pub remote_as: u32,
    /// TCP port to connect to.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Hold time to propose in seconds (0, or at least 3); 90 when absent.
    #[serde(default)]
    pub hold_time: Option<u16>,
    /// Do not connect out; wait for the peer to connect.
    #[serde(default)]
    pub passive: bool,
    /// Seconds between connection attempts; 5 when absent.
    #[serde(default)]
    pub connect_retry: Option<u64>,
    /// After a restarting peer is back, seconds to wait for its End-of-RIB
    /// before dropping its stale routes; 360 when absent (RFC 4724 8).
    #[serde(default)]
    pub stale_routes_time: Option<u64>,
}

fn default_port() -> u16 {
    179
}

impl PeerConfig {
    /// A peer on port 179 with default timers that we connect to.
    pub fn new(address: IpAddr, remote_as: u32) -> Self {
        Self {
            address,
            remote_as,
            port: 179,
            hold_time: None,
            passive: false,
            connect_retry: None,
            stale_routes_time: None,
        }
    }

    /// The hold time to propose.
    pub fn hold_time(&self) -> u16 {
        self.hold_time.unwrap_or(DEFAULT_HOLD_TIME)
    }

    /// The connect retry interval.
    pub fn connect_retry(&self) -> Duration {
        Duration::from_secs(self.connect_retry.unwrap_or(DEFAULT_CONNECT_RETRY).max(1))
    }

    /// The stale-routes time.
    pub fn stale_routes_time(&self) -> Duration {
        Duration::from_secs(self.stale_routes_time.unwrap_or(360))
    }
}

impl SpeakerConfig {
    /// Checks the configuration before it is applied.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.local_as == 0 {
            return Err(ConfigError::ZeroAs("local_as"));
        }
        if self.router_id.is_unspecified() {
            return Err(ConfigError::ZeroRouterId);
        }
        let mut seen = HashSet::new();
        for p in &self.peers {
            if !seen.insert(p.address.to_canonical()) {
                return Err(ConfigError::DuplicatePeer(p.address));
            }
            if p.remote_as == 0 {
                return Err(ConfigError::ZeroAs("a peer's remote_as"));
            }
            if matches!(p.hold_time, Some(1 | 2)) {
                return Err(ConfigError::BadHoldTime {
                    peer: p.address,
                    hold_time: p.hold_time(),
                });
            }
        }
        Ok(())
    }
}

/// A peer's state as the controller sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStatus {
    /// The peer's address.
    pub address: IpAddr,
    /// The peer's AS.
    pub remote_as: u32,
    /// Session state.
    pub state: State,
    /// Time since the session reached Established.
    pub uptime: Option<Duration>,
    /// Routes held from the peer (Adj-RIB-In), stale ones included.
    pub prefixes_in: usize,
    /// Of those, routes kept stale during a graceful restart.
    pub prefixes_stale: usize,
    /// Routes advertised to the peer (Adj-RIB-Out).
    pub prefixes_out: usize,
    /// The peer's BGP identifier while a session is open.
    pub peer_router_id: Option<Ipv4Addr>,
    /// Families negotiated.
    pub families: Vec<Family>,
    /// What last took the session down.
    pub last_error: Option<String>,
    /// UPDATE messages received.
    pub updates_in: u64,
    /// UPDATE messages sent.
    pub updates_out: u64,
    /// Times the session has been established.
    pub established_count: u64,
}

/// Commands from a [`crate::SpeakerHandle`] to the speaker task.
#[derive(Debug)]
pub(crate) enum Command {
    SetExports(Arc<ExportSet>),
    UpdateConfig(SpeakerConfig, oneshot::Sender<Result<(), ConfigError>>),
    Peers(oneshot::Sender<Vec<PeerStatus>>),
    RouteRefresh(IpAddr, Family),
    Shutdown(oneshot::Sender<()>),
}

/// Commands from the speaker task to one peer task.
#[derive(Debug)]
pub(crate) enum PeerCommand {
    Exports(Arc<ExportSet>),
    Inbound(tokio::net::TcpStream),
    RouteRefresh(Family),
    /// Stop with this Cease subcode and end the task.
    Stop(u8),
}

/// Reports from peer tasks to the speaker task, tagged with the peer task's
/// generation so reports of a replaced task are ignored.
#[derive(Debug)]
pub(crate) enum PeerReport {
    Status(u64, PeerStatus),
    Routes(u64, IpAddr, Vec<RibChange>),
}
