//! The tokio driver: sockets, timers and tasks around the sans-IO core.
//!
//! ```text
//!   controller ── SpeakerHandle ──────────────┐ Command (mpsc)
//!        ▲  imports: watch<Arc<Imports>>      ▼
//!        └──────────────────────────── speaker task ◄─── listener (accept)
//!                                      owns Loc-RIB,       routes inbound
//!                                      peer table          TcpStreams by
//!                                       │      ▲           source address
//!                      PeerCommand(mpsc)│      │PeerReport (mpsc):
//!                  Exports/Inbound/Stop │      │ status, RibChanges
//!                                       ▼      │
//!                      peer task (one per peer): owns Neighbor (FSM),
//!                      sleeps until the FSM's next timer
//!                        │ spawns            ▲ ConnEvent (mpsc)
//!                        ▼                   │ connected / data / closed
//!               connect attempt ─────────────┤
//!               reader task (per connection) ┘
//!               writer task (per connection) ◄── bytes (mpsc), flushes
//!                                               then FIN when dropped
//! ```
//!
//! Every socket is created by the task that runs on the caller's runtime,
//! so a speaker started on a runtime whose threads live in a network
//! namespace speaks inside that namespace.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::error::{ConfigError, ExportError};
use crate::events::{Command, PeerCommand, PeerConfig, PeerReport, PeerStatus, SpeakerConfig};
use crate::neighbor::{
    Action, Event, Neighbor, NeighborConfig, Offer, State, Timer, collision_notification,
};
use crate::packet::{Notification, codes};
use crate::rib::{ExportSet, LocRib, build_export_set};
use crate::route::{Family, ImportedRoute, VpnRoute};

/// The imported routes: the best path of every RD + NLRI over all peers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imports {
    /// Increases with every published change.
    pub revision: u64,
    /// Best paths in key order.
    pub routes: Vec<Arc<ImportedRoute>>,
}

/// Entry point: starts a speaker on the current tokio runtime.
#[derive(Debug)]
pub struct Speaker;

/// The controller's handle on a running speaker. Cloning it is cheap; the
/// speaker runs until [`SpeakerHandle::shutdown`] or until every handle is
/// dropped.
#[derive(Debug, Clone)]
pub struct SpeakerHandle {
    cmd: mpsc::UnboundedSender<Command>,
    imports: watch::Receiver<Arc<Imports>>,
}

impl Speaker {
    /// Validates `config`, binds the listen socket (if any) and starts the
    /// speaker's tasks on the current tokio runtime.
    pub fn start(config: SpeakerConfig) -> Result<SpeakerHandle, ConfigError> {
        config.validate()?;
        let listener = match config.listen {
            Some(addr) => Some(bind(addr)?),
            None => None,
        };
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (imports_tx, imports_rx) = watch::channel(Arc::new(Imports::default()));
        let (report_tx, report_rx) = mpsc::unbounded_channel();
        let mut task = SpeakerTask {
            loc_rib: LocRib::new(config.local_as),
            config: SpeakerConfig {
                peers: Vec::new(),
                ..config.clone()
            },
            listener,
            peers: HashMap::new(),
            exports: Arc::new(ExportSet::new()),
            imports_tx,
            report_tx,
            next_generation: 0,
            revision: 0,
        };
        for p in &config.peers {
            task.add_peer(p.clone());
        }
        task.config.peers = config.peers;
        tokio::spawn(task.run(cmd_rx, report_rx));
        Ok(SpeakerHandle {
            cmd: cmd_tx,
            imports: imports_rx,
        })
    }
}

fn bind(addr: SocketAddr) -> Result<TcpListener, ConfigError> {
    let err = |e: std::io::Error| ConfigError::Listen {
        addr,
        reason: e.to_string(),
    };
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .map_err(err)?;
    // A restarted speaker must be able to bind while old connections linger
    // in TIME_WAIT.
    socket.set_reuseaddr(true).map_err(err)?;
    socket.bind(addr).map_err(err)?;
    socket.listen(128).map_err(err)
}

impl SpeakerHandle {
    /// Replaces the whole desired export set. Each peer is sent only the
    /// difference from what it holds. Fails without changing anything if a
    /// route cannot be carried.
    pub fn set_exports(&self, routes: Vec<VpnRoute>) -> Result<(), ExportError> {
        let set = build_export_set(routes)?;
        self.cmd
            .send(Command::SetExports(Arc::new(set)))
            .map_err(|_| ExportError::ShutDown)
    }

    /// The imported routes, updated as peers send routes (changes are
    /// published at most every 20 ms).
    pub fn imports(&self) -> watch::Receiver<Arc<Imports>> {
        self.imports.clone()
    }

    /// Status of every configured peer, in configuration order.
    pub async fn peers(&self) -> Vec<PeerStatus> {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Command::Peers(tx)).is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// Applies a new configuration: peers added, removed (with a Cease
    /// NOTIFICATION) or restarted if their settings changed.
    pub async fn update_config(&self, config: SpeakerConfig) -> Result<(), ConfigError> {
        config.validate()?;
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Command::UpdateConfig(config, tx))
            .map_err(|_| ConfigError::ShutDown)?;
        rx.await.map_err(|_| ConfigError::ShutDown)?
    }

    /// Asks a peer to resend its routes of a family (ROUTE-REFRESH).
    pub fn route_refresh(&self, peer: IpAddr, family: Family) {
        let _ = self.cmd.send(Command::RouteRefresh(peer, family));
    }

    /// Closes every session with a Cease NOTIFICATION and stops the tasks.
    pub async fn shutdown(&self) {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Command::Shutdown(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

struct PeerEntry {
    config: PeerConfig,
    generation: u64,
    tx: mpsc::UnboundedSender<PeerCommand>,
    status: PeerStatus,
    established_at: Option<Instant>,
    task: JoinHandle<()>,
}

struct SpeakerTask {
    config: SpeakerConfig,
    listener: Option<TcpListener>,
    peers: HashMap<IpAddr, PeerEntry>,
    loc_rib: LocRib,
    exports: Arc<ExportSet>,
    imports_tx: watch::Sender<Arc<Imports>>,
    report_tx: mpsc::UnboundedSender<PeerReport>,
    next_generation: u64,
    revision: u64,
}

/// How long route changes gather before the imports are published.
const PUBLISH_DELAY: Duration = Duration::from_millis(20);

impl SpeakerTask {
    async fn run(
        mut self,
        mut cmd_rx: mpsc::UnboundedReceiver<Command>,
        mut report_rx: mpsc::UnboundedReceiver<PeerReport>,
    ) {
        let mut publish_at: Option<Instant> = None;
        loop {
            let accept = async {
                match &self.listener {
                    Some(l) => l.accept().await,
                    None => std::future::pending().await,
                }
            };
            let publish = async {
                match publish_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = cmd_rx.recv() => match cmd {
                    None => {
                        self.stop_all(codes::CEASE_ADMIN_SHUTDOWN).await;
                        return;
                    }
                    Some(Command::Shutdown(done)) => {
                        self.stop_all(codes::CEASE_ADMIN_SHUTDOWN).await;
                        let _ = done.send(());
                        return;
                    }
                    Some(cmd) => {
                        if self.command(cmd) && publish_at.is_none() {
                            publish_at = Some(Instant::now() + PUBLISH_DELAY);
                        }
                    }
                },
                Some(report) = report_rx.recv() => {
                    if self.report(report) && publish_at.is_none() {
                        publish_at = Some(Instant::now() + PUBLISH_DELAY);
                    }
                }
                res = accept => match res {
                    Ok((stream, from)) => self.inbound(stream, from),
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                () = publish => {
                    publish_at = None;
                    self.publish();
                }
            }
        }
    }

    fn publish(&mut self) {
        self.revision += 1;
        let imports = Imports {
            revision: self.revision,
            routes: self.loc_rib.best(),
        };
        self.imports_tx.send_replace(Arc::new(imports));
    }

    /// Handles a command; returns true if the Loc-RIB changed.
    fn command(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::SetExports(set) => {
                self.exports = set.clone();
                for p in self.peers.values() {
                    let _ = p.tx.send(PeerCommand::Exports(set.clone()));
                }
                false
            }
            Command::UpdateConfig(cfg, done) => {
                // Removed peers may have taken routes with them: republish.
                let res = self.update_config(cfg);
                let changed = res.is_ok();
                let _ = done.send(res);
                changed
            }
            Command::Peers(reply) => {
                let mut out = Vec::new();
                for p in &self.config.peers {
                    if let Some(e) = self.peers.get(&p.address.to_canonical()) {
                        let mut s = e.status.clone();
                        s.uptime = e.established_at.map(|t| t.elapsed());
                        out.push(s);
                    }
                }
                let _ = reply.send(out);
                false
            }
            Command::RouteRefresh(peer, f) => {
                if let Some(p) = self.peers.get(&peer.to_canonical()) {
                    let _ = p.tx.send(PeerCommand::RouteRefresh(f));
                }
                false
            }
            Command::Shutdown(_) => false,
        }
    }

    fn report(&mut self, report: PeerReport) -> bool {
        match report {
            PeerReport::Status(generation, status) => {
                if let Some(p) = self.peers.get_mut(&status.address.to_canonical())
                    && p.generation == generation
                {
                    p.established_at = status.uptime.map(|u| Instant::now() - u);
                    p.status = status;
                }
                false
            }
            PeerReport::Routes(generation, peer, changes) => {
                let current = self
                    .peers
                    .get(&peer.to_canonical())
                    .is_some_and(|p| p.generation == generation);
                if !current {
                    return false;
                }
                let mut changed = false;
                for c in &changes {
                    changed |= self.loc_rib.apply(peer, c);
                }
                changed
            }
        }
    }

    fn inbound(&mut self, stream: TcpStream, from: SocketAddr) {
        let ip = from.ip().to_canonical();
        match self.peers.get(&ip) {
            Some(p) => {
                let _ = p.tx.send(PeerCommand::Inbound(stream));
            }
            None => {
                tracing::info!(%from, "rejecting connection from an unconfigured peer");
                let n = Notification::new(codes::CEASE, codes::CEASE_CONNECTION_REJECTED);
                tokio::spawn(reject(stream, n.to_bytes()));
            }
        }
    }

    fn add_peer(&mut self, cfg: PeerConfig) {
        self.next_generation += 1;
        let generation = self.next_generation;
        let ncfg = NeighborConfig {
            local_as: self.config.local_as,
            router_id: self.config.router_id,
            remote_addr: cfg.address.to_canonical(),
            remote_as: cfg.remote_as,
            hold_time: cfg.hold_time(),
            connect_retry: cfg.connect_retry(),
            passive: cfg.passive,
            stale_routes_time: cfg.stale_routes_time(),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let status = status_of(&Neighbor::new(ncfg.clone()), Instant::now());
        let task = PeerTask::new(ncfg, cfg.port, generation, self.report_tx.clone());
        let handle = tokio::spawn(task.run(rx, self.exports.clone()));
        self.peers.insert(
            cfg.address.to_canonical(),
            PeerEntry {
                config: cfg,
                generation,
                tx,
                status,
                established_at: None,
                task: handle,
            },
        );
    }

    fn remove_peer(&mut self, addr: IpAddr, subcode: u8) -> bool {
        match self.peers.remove(&addr) {
            Some(p) => {
                let _ = p.tx.send(PeerCommand::Stop(subcode));
                self.loc_rib.remove_peer(addr)
            }
            None => false,
        }
    }

    fn update_config(&mut self, cfg: SpeakerConfig) -> Result<(), ConfigError> {
        if cfg.listen != self.config.listen {
            self.listener = match cfg.listen {
                Some(addr) => Some(bind(addr)?),
                None => None,
            };
        }
        let identity_changed =
            cfg.local_as != self.config.local_as || cfg.router_id != self.config.router_id;
        let wanted: HashMap<IpAddr, &PeerConfig> = cfg
            .peers
            .iter()
            .map(|p| (p.address.to_canonical(), p))
            .collect();
        let current: Vec<IpAddr> = self.peers.keys().copied().collect();
        for addr in current {
            match wanted.get(&addr) {
                None => {
                    self.remove_peer(addr, codes::CEASE_PEER_DECONFIGURED);
                }
                Some(p) if identity_changed || self.peers[&addr].config != **p => {
                    self.remove_peer(addr, codes::CEASE_CONFIG_CHANGE);
                }
                Some(_) => {}
            }
        }
        self.config.local_as = cfg.local_as;
        self.config.router_id = cfg.router_id;
        self.config.listen = cfg.listen;
        if identity_changed {
            self.loc_rib = LocRib::new(cfg.local_as);
        }
        for p in &cfg.peers {
            if !self.peers.contains_key(&p.address.to_canonical()) {
                self.add_peer(p.clone());
            }
        }
        self.config.peers = cfg.peers;
        Ok(())
    }

    async fn stop_all(&mut self, subcode: u8) {
        let peers: Vec<PeerEntry> = self.peers.drain().map(|(_, p)| p).collect();
        for p in &peers {
            let _ = p.tx.send(PeerCommand::Stop(subcode));
        }
        for p in peers {
            // A peer task ends right after queueing its NOTIFICATION.
            let _ = tokio::time::timeout(Duration::from_secs(2), p.task).await;
        }
        self.loc_rib = LocRib::new(self.config.local_as);
        self.publish();
    }
}

async fn reject(mut stream: TcpStream, bytes: Vec<u8>) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = stream.write_all(&bytes).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

fn status_of(n: &Neighbor, now: Instant) -> PeerStatus {
    let cfg = n.config();
    PeerStatus {
        address: cfg.remote_addr,
        remote_as: cfg.remote_as,
        state: n.state(),
        uptime: n
            .established_at()
            .map(|at| now.into_std().saturating_duration_since(at)),
        prefixes_in: n.adj_rib_in().len(),
        prefixes_stale: n.adj_rib_in().stale_count(),
        prefixes_out: n.adj_rib_out().len(),
        peer_router_id: n.peer_open().map(|p| p.router_id),
        families: n
            .peer_open()
            .map(|p| p.families.clone())
            .unwrap_or_default(),
        last_error: n.last_error().map(str::to_string),
        updates_in: n.counters().updates_in,
        updates_out: n.counters().updates_out,
        established_count: n.counters().established_count,
    }
}

/// Events from connection tasks to their peer task.
enum ConnEvent {
    Connected(u64, std::io::Result<TcpStream>),
    Data(u64, Vec<u8>),
    Closed(u64),
}

struct Conn {
    id: u64,
    writer: mpsc::UnboundedSender<Vec<u8>>,
    reader: JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        // The writer task flushes what it holds, then sends FIN.
        self.reader.abort();
    }
}

struct PeerTask {
    fsm: Neighbor,
    port: u16,
    generation: u64,
    report_tx: mpsc::UnboundedSender<PeerReport>,
    conn_tx: mpsc::UnboundedSender<ConnEvent>,
    conn_rx: mpsc::UnboundedReceiver<ConnEvent>,
    conn: Option<Conn>,
    connecting: Option<(u64, JoinHandle<()>)>,
    next_id: u64,
    timers: HashMap<Timer, Instant>,
    last_status: Option<PeerStatus>,
}

impl PeerTask {
    fn new(
        cfg: NeighborConfig,
        port: u16,
        generation: u64,
        report_tx: mpsc::UnboundedSender<PeerReport>,
    ) -> Self {
        let (conn_tx, conn_rx) = mpsc::unbounded_channel();
        Self {
            fsm: Neighbor::new(cfg),
            port,
            generation,
            report_tx,
            conn_tx,
            conn_rx,
            conn: None,
            connecting: None,
            next_id: 0,
            timers: HashMap::new(),
            last_status: None,
        }
    }

    async fn run(
        mut self,
        mut cmd_rx: mpsc::UnboundedReceiver<PeerCommand>,
        exports: Arc<ExportSet>,
    ) {
        self.feed(Event::Exports(exports));
        self.feed(Event::Start);
        loop {
            let next = self
                .timers
                .iter()
                .min_by_key(|(_, at)| **at)
                .map(|(t, at)| (*t, *at));
            let sleep = async {
                match next {
                    Some((_, at)) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                cmd = cmd_rx.recv() => match cmd {
                    None => {
                        self.feed(Event::Stop(codes::CEASE_PEER_DECONFIGURED));
                        return;
                    }
                    Some(PeerCommand::Stop(sub)) => {
                        self.feed(Event::Stop(sub));
                        return;
                    }
                    Some(PeerCommand::Exports(set)) => self.feed(Event::Exports(set)),
                    Some(PeerCommand::RouteRefresh(f)) => self.feed(Event::SendRouteRefresh(f)),
                    Some(PeerCommand::Inbound(stream)) => self.offer(stream, true),
                },
                Some(ev) = self.conn_rx.recv() => match ev {
                    ConnEvent::Connected(id, res) => {
                        if self.connecting.as_ref().is_some_and(|(c, _)| *c == id) {
                            self.connecting = None;
                            match res {
                                Ok(stream) => self.offer(stream, false),
                                Err(e) => {
                                    tracing::debug!(peer = %self.fsm.config().remote_addr, "connect failed: {e}");
                                    self.feed(Event::ConnectFailed);
                                }
                            }
                        }
                    }
                    ConnEvent::Data(id, bytes) => {
                        if self.conn.as_ref().is_some_and(|c| c.id == id) {
                            self.feed(Event::Data(&bytes));
                        }
                    }
                    ConnEvent::Closed(id) => {
                        if self.conn.as_ref().is_some_and(|c| c.id == id) {
                            self.conn = None;
                            self.feed(Event::Closed);
                        }
                    }
                },
                () = sleep => {
                    if let Some((t, _)) = next {
                        self.timers.remove(&t);
                        let now = Instant::now().into_std();
                        self.fsm.handle_timer(now, t);
                        self.drain();
                    }
                }
            }
        }
    }

    fn feed(&mut self, ev: Event<'_>) {
        self.fsm.handle(Instant::now().into_std(), ev);
        self.drain();
    }

    fn offer(&mut self, stream: TcpStream, inbound: bool) {
        match self.fsm.offer(inbound) {
            Offer::Reject => {
                tokio::spawn(reject(stream, collision_notification()));
            }
            Offer::Accept => {
                self.install(stream);
                self.feed(Event::Connected);
            }
            Offer::ReplaceCurrent => {
                self.feed(Event::CollisionReplace);
                self.install(stream);
                self.feed(Event::Connected);
            }
        }
    }

    fn install(&mut self, stream: TcpStream) {
        if let Some((_, h)) = self.connecting.take() {
            h.abort();
        }
        let _ = stream.set_nodelay(true);
        self.next_id += 1;
        let id = self.next_id;
        let (mut rd, wr) = stream.into_split();
        let (wtx, wrx) = mpsc::unbounded_channel();
        tokio::spawn(writer(wr, wrx));
        let events = self.conn_tx.clone();
        let reader = tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = events.send(ConnEvent::Closed(id));
                        return;
                    }
                    Ok(n) => {
                        if events.send(ConnEvent::Data(id, buf[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        self.conn = Some(Conn {
            id,
            writer: wtx,
            reader,
        });
    }

    fn connect(&mut self) {
        if let Some((_, h)) = self.connecting.take() {
            h.abort();
        }
        self.next_id += 1;
        let id = self.next_id;
        let addr = SocketAddr::new(self.fsm.config().remote_addr, self.port);
        let timeout = self.fsm.config().connect_retry;
        let events = self.conn_tx.clone();
        let h = tokio::spawn(async move {
            let res = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(r) => r,
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connecting to {addr} timed out"),
                )),
            };
            let _ = events.send(ConnEvent::Connected(id, res));
        });
        self.connecting = Some((id, h));
    }

    fn drain(&mut self) {
        while let Some(a) = self.fsm.poll_action() {
            match a {
                Action::Connect => self.connect(),
                Action::Send(bytes) => {
                    if let Some(c) = &self.conn {
                        let _ = c.writer.send(bytes);
                    }
                }
                Action::Close => self.conn = None,
                Action::StartTimer(t, at) => {
                    self.timers.insert(t, Instant::from_std(at));
                }
                Action::StopTimer(t) => {
                    self.timers.remove(&t);
                }
                Action::StateChange { from, to } => {
                    tracing::info!(peer = %self.fsm.config().remote_addr, ?from, ?to, "state change");
                    if to == State::Idle
                        && let Some((_, h)) = self.connecting.take()
                    {
                        h.abort();
                    }
                }
                Action::Routes(changes) => {
                    let _ = self.report_tx.send(PeerReport::Routes(
                        self.generation,
                        self.fsm.config().remote_addr,
                        changes,
                    ));
                }
            }
        }
        let status = status_of(&self.fsm, Instant::now());
        // Uptime moves on its own; report only when something else changed.
        let same = self.last_status.as_ref().is_some_and(|s| {
            PeerStatus {
                uptime: status.uptime,
                ..s.clone()
            } == status
        });
        if !same {
            let _ = self
                .report_tx
                .send(PeerReport::Status(self.generation, status.clone()));
            self.last_status = Some(status);
        }
    }
}

async fn writer(mut w: tokio::net::tcp::OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Vec<u8>>) {
    while let Some(bytes) = rx.recv().await {
        if w.write_all(&bytes).await.is_err() {
            return;
        }
    }
    let _ = w.shutdown().await;
}
