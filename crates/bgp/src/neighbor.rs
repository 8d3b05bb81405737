//! The BGP session state machine of one peer (RFC 4271 section 8), sans-IO.
//!
//! A [`Neighbor`] takes [`Event`]s with the current time and queues
//! [`Action`]s for its driver: connect, send bytes, close, start or stop a
//! timer, routes learned or withdrawn. It holds the peer's Adj-RIB-In and
//! Adj-RIB-Out. It never touches a socket or a clock, so tests run two of
//! them back to back on virtual time.
//!
//! Simplifications (each one RFC-legal or documented):
//! - automatic start and restart: after an error the session waits one
//!   ConnectRetry interval in Idle, then starts again (no damping);
//! - collision (section 6.8): an inbound connection is taken in Idle,
//!   Connect and Active; in OpenConfirm it replaces ours only if the peer's
//!   identifier is higher; in OpenSent it is refused (ConnectRetry jitter
//!   in the driver breaks the rare symmetric case);
//! - graceful restart, helper side only (RFC 4724): routes are kept stale
//!   when the TCP session drops without a NOTIFICATION, for the families
//!   the peer listed, until its End-of-RIB, the restart time, or the
//!   stale-routes time after it comes back;
//! - no route is re-advertised to other peers: the speaker exports only
//!   what Weft sets, and imports everything (VRFs filter by route target).

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::iana::RouteRefreshSubcode;
use netgauze_bgp_pkt::route_refresh::BgpRouteRefreshMessage;
use netgauze_bgp_pkt::wire::deserializer::BgpParsingContext;
use serde::{Deserialize, Serialize};

use crate::packet::open::{FAMILIES, PeerOpen, address_type, build_open, check_open, family};
use crate::packet::update::{
    SessionParams, decode_update, encode_announcements, encode_end_of_rib, encode_withdrawals,
};
use crate::packet::{self, Message, Notification, codes};
use crate::rib::{AdjRibIn, AdjRibOut, ExportSet, RibChange};
use crate::route::{Family, ImportedRoute};

/// Hold time used in OpenSent, before one is negotiated (RFC 4271 8.2.2).
pub const LARGE_HOLD_TIME: Duration = Duration::from_secs(240);

/// Session states (RFC 4271 section 8.2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum State {
    /// Not trying; waiting for start or for the idle hold to pass.
    Idle,
    /// Waiting for our outbound TCP connection.
    Connect,
    /// Waiting for the peer to connect (or for the next retry).
    Active,
    /// OPEN sent, waiting for the peer's.
    OpenSent,
    /// OPENs exchanged, waiting for KEEPALIVE.
    OpenConfirm,
    /// Session up: routes flow.
    Established,
}

/// Timers the session asks its driver to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Timer {
    /// Time between connection attempts, and the idle hold after an error.
    ConnectRetry,
    /// The peer must send something before this expires.
    Hold,
    /// Time to send our next KEEPALIVE.
    Keepalive,
    /// Graceful restart: the peer must come back before this expires.
    GracefulRestart,
    /// Graceful restart: the peer must send End-of-RIB before this expires.
    StaleRoutes,
}

const TIMERS: usize = 5;

impl Timer {
    fn index(self) -> usize {
        match self {
            Self::ConnectRetry => 0,
            Self::Hold => 1,
            Self::Keepalive => 2,
            Self::GracefulRestart => 3,
            Self::StaleRoutes => 4,
        }
    }
}

/// Inputs of the state machine.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    /// Start the session (ManualStart / AutomaticStart).
    Start,
    /// Stop it with a Cease NOTIFICATION of this subcode
    /// (2 administrative shutdown, 3 peer de-configured, 6 other
    /// configuration change); routes from the peer are withdrawn.
    Stop(u8),
    /// The driver's TCP connection is up (outbound, or an inbound one the
    /// session accepted through [`Neighbor::offer`]).
    Connected,
    /// The outbound connection attempt failed.
    ConnectFailed,
    /// The connection was closed or reset by the peer.
    Closed,
    /// Bytes received on the connection.
    Data(&'a [u8]),
    /// A timer expired.
    Timer(Timer),
    /// The desired export set changed.
    Exports(Arc<ExportSet>),
    /// Ask the peer to resend its routes of a family (RFC 2918).
    SendRouteRefresh(Family),
    /// The driver accepted a colliding inbound connection that wins over
    /// the current one ([`Offer::ReplaceCurrent`]): drop the current one.
    CollisionReplace,
}

/// Outputs of the state machine, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open an outbound TCP connection (dropping any attempt in progress).
    Connect,
    /// Write these bytes on the current connection.
    Send(Vec<u8>),
    /// Close the current connection after the bytes already sent.
    Close,
    /// (Re)start a timer to expire at an instant.
    StartTimer(Timer, Instant),
    /// Stop a timer.
    StopTimer(Timer),
    /// The state changed.
    StateChange {
        /// Previous state.
        from: State,
        /// New state.
        to: State,
    },
    /// Routes learned from or withdrawn by the peer.
    Routes(Vec<RibChange>),
}

/// What to do with a new connection (see [`Neighbor::offer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Make it the session's connection, then send [`Event::Connected`].
    Accept,
    /// Refuse it: send [`collision_notification`] on it and close it.
    Reject,
    /// Send [`Event::CollisionReplace`], then accept it as with `Accept`.
    ReplaceCurrent,
}

/// The NOTIFICATION to send on a refused colliding connection.
pub fn collision_notification() -> Vec<u8> {
    Notification::new(codes::CEASE, codes::CEASE_COLLISION).to_bytes()
}

/// Configuration of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NeighborConfig {
    /// Our AS.
    pub local_as: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// The peer's address (for the routes' origin).
    pub remote_addr: IpAddr,
    /// The peer's AS.
    pub remote_as: u32,
    /// Hold time we propose (0 or >= 3).
    pub hold_time: u16,
    /// Interval between connection attempts.
    pub connect_retry: Duration,
    /// Never connect out; wait for the peer.
    pub passive: bool,
    /// After a restarting peer is back, how long to wait for its End-of-RIB.
    pub stale_routes_time: Duration,
}

/// Counters and facts about a session, for status reports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Counters {
    /// UPDATE messages received.
    pub updates_in: u64,
    /// UPDATE messages sent.
    pub updates_out: u64,
    /// Times the session reached Established.
    pub established_count: u64,
}

/// One peer's session.
#[derive(Debug)]
pub struct Neighbor {
    cfg: NeighborConfig,
    state: State,
    admin_up: bool,
    timers: [Option<Instant>; TIMERS],
    rx: Vec<u8>,
    ctx: BgpParsingContext,
    peer: Option<PeerOpen>,
    exports: Arc<ExportSet>,
    adj_out: AdjRibOut,
    adj_in: AdjRibIn,
    /// Families whose stale routes wait for End-of-RIB.
    stale_families: Vec<Family>,
    established_at: Option<Instant>,
    last_error: Option<String>,
    counters: Counters,
    actions: VecDeque<Action>,
    changes: Vec<RibChange>,
}

/// Why a session went down.
enum Down {
    /// We sent this NOTIFICATION.
    Sent(Notification),
    /// The peer sent this NOTIFICATION.
    Received(Notification),
    /// The TCP connection closed without a NOTIFICATION.
    TcpClosed,
    /// We lost a connection collision.
    Collision,
}

impl Neighbor {
    /// A session in Idle; send [`Event::Start`] to start it.
    pub fn new(cfg: NeighborConfig) -> Self {
        Self {
            cfg,
            state: State::Idle,
            admin_up: false,
            timers: [None; TIMERS],
            rx: Vec::new(),
            ctx: packet::parsing_context(true),
            peer: None,
            exports: Arc::new(ExportSet::new()),
            adj_out: AdjRibOut::default(),
            adj_in: AdjRibIn::default(),
            stale_families: Vec::new(),
            established_at: None,
            last_error: None,
            counters: Counters::default(),
            actions: VecDeque::new(),
            changes: Vec::new(),
        }
    }

    /// The session's configuration.
    pub fn config(&self) -> &NeighborConfig {
        &self.cfg
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The next queued action.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The earliest running timer.
    pub fn poll_timeout(&self) -> Option<(Timer, Instant)> {
        [
            Timer::ConnectRetry,
            Timer::Hold,
            Timer::Keepalive,
            Timer::GracefulRestart,
            Timer::StaleRoutes,
        ]
        .into_iter()
        .filter_map(|t| self.timers[t.index()].map(|at| (t, at)))
        .min_by_key(|(_, at)| *at)
    }

    /// Fires every timer due at `now` (for drivers that only track
    /// [`Neighbor::poll_timeout`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some((t, at)) = self.poll_timeout() {
            if at > now {
                break;
            }
            self.handle_timer(now, t);
        }
    }

    /// Routes learned from the peer.
    pub fn adj_rib_in(&self) -> &AdjRibIn {
        &self.adj_in
    }

    /// Routes advertised to the peer.
    pub fn adj_rib_out(&self) -> &AdjRibOut {
        &self.adj_out
    }

    /// What the peer's OPEN said, while a session is up.
    pub fn peer_open(&self) -> Option<&PeerOpen> {
        self.peer.as_ref()
    }

    /// When the session reached Established, if it is.
    pub fn established_at(&self) -> Option<Instant> {
        self.established_at
    }

    /// The last error that took the session down.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Message counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Whether to take a new TCP connection (outbound ones arrive only in
    /// Connect; inbound ones at any time).
    pub fn offer(&self, inbound: bool) -> Offer {
        match self.state {
            State::Idle if !self.admin_up => Offer::Reject,
            State::Idle | State::Connect | State::Active => Offer::Accept,
            State::OpenConfirm
                if inbound
                    && self.peer.as_ref().is_some_and(|p| {
                        u32::from(p.router_id) > u32::from(self.cfg.router_id)
                    }) =>
            {
                Offer::ReplaceCurrent
            }
            State::OpenSent | State::OpenConfirm | State::Established => Offer::Reject,
        }
    }

    /// Feeds one event at time `now`.
    pub fn handle(&mut self, now: Instant, event: Event<'_>) {
        if let Event::Timer(t) = &event {
            // A fired timer is no longer armed unless the handler re-arms it.
            self.timers[t.index()] = None;
        }
        match (self.state, event) {
            (_, Event::Stop(subcode)) => {
                self.admin_up = false;
                if self.connected() {
                    self.down(now, Down::Sent(Notification::new(codes::CEASE, subcode)));
                }
                // An administrative stop ends any graceful restart too.
                self.sweep_stale(None);
                self.stop_timer(Timer::GracefulRestart);
                self.stop_timer(Timer::StaleRoutes);
                self.stop_timer(Timer::ConnectRetry);
                self.set_state(State::Idle);
            }
            (State::Idle, Event::Start) => {
                self.admin_up = true;
                self.start_connecting(now);
            }
            (State::Idle, Event::Timer(Timer::ConnectRetry)) if self.admin_up => {
                self.start_connecting(now);
            }
            (State::Connect | State::Active, Event::Timer(Timer::ConnectRetry)) => {
                self.start_connecting(now);
            }
            (State::Idle | State::Connect | State::Active, Event::Connected) if self.admin_up => {
                self.stop_timer(Timer::ConnectRetry);
                self.rx.clear();
                self.ctx = packet::parsing_context(true);
                match packet::encode(&build_open(
                    self.cfg.local_as,
                    self.cfg.hold_time,
                    self.cfg.router_id,
                )) {
                    Ok(open) => self.send(open),
                    Err(e) => tracing::error!("{e}"),
                }
                self.start_timer(Timer::Hold, now + LARGE_HOLD_TIME);
                self.set_state(State::OpenSent);
            }
            (State::Connect, Event::ConnectFailed) => self.set_state(State::Active),
            (State::OpenSent | State::OpenConfirm | State::Established, Event::Closed) => {
                self.down(now, Down::TcpClosed);
            }
            (State::OpenConfirm, Event::CollisionReplace) => self.down(now, Down::Collision),
            (State::OpenSent | State::OpenConfirm | State::Established, Event::Data(bytes)) => {
                self.receive(now, bytes);
            }
            (
                State::OpenSent | State::OpenConfirm | State::Established,
                Event::Timer(Timer::Hold),
            ) => {
                self.down(
                    now,
                    Down::Sent(Notification::new(codes::HOLD_TIMER_EXPIRED, 0)),
                );
            }
            (State::OpenConfirm | State::Established, Event::Timer(Timer::Keepalive)) => {
                self.send(packet::keepalive());
                self.start_keepalive(now);
            }
            (_, Event::Timer(Timer::GracefulRestart | Timer::StaleRoutes)) => {
                // The peer did not come back, or did not finish in time.
                self.sweep_stale(None);
                self.stop_timer(Timer::GracefulRestart);
                self.stop_timer(Timer::StaleRoutes);
            }
            (state, Event::Exports(set)) => {
                self.exports = set;
                if state == State::Established {
                    self.send_diff();
                }
            }
            (State::Established, Event::SendRouteRefresh(f)) => {
                if self.peer.as_ref().is_some_and(|p| p.route_refresh) {
                    let rr = BgpMessage::RouteRefresh(BgpRouteRefreshMessage::new(
                        address_type(f),
                        RouteRefreshSubcode::NormalRequest,
                    ));
                    match packet::encode(&rr) {
                        Ok(b) => self.send(b),
                        Err(e) => tracing::error!("{e}"),
                    }
                }
            }
            (state, event) => {
                tracing::trace!(peer = %self.cfg.remote_addr, ?state, ?event, "event ignored");
            }
        }
        self.flush_changes();
    }

    fn connected(&self) -> bool {
        matches!(
            self.state,
            State::OpenSent | State::OpenConfirm | State::Established
        )
    }

    fn start_connecting(&mut self, now: Instant) {
        self.start_timer(Timer::ConnectRetry, now + self.cfg.connect_retry);
        if self.cfg.passive {
            self.set_state(State::Active);
        } else {
            self.actions.push_back(Action::Connect);
            self.set_state(State::Connect);
        }
    }

    fn receive(&mut self, now: Instant, bytes: &[u8]) {
        self.rx.extend_from_slice(bytes);
        let mut consumed = 0;
        loop {
            if !self.connected() {
                // An earlier message took the session down: drop the rest.
                self.rx.clear();
                return;
            }
            let len = match packet::frame(&self.rx[consumed..]) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(n) => {
                    self.down(now, Down::Sent(n));
                    self.rx.clear();
                    return;
                }
            };
            let msg = packet::decode(&self.rx[consumed..consumed + len], &mut self.ctx);
            consumed += len;
            // Any message shows the peer is alive (RFC 4271 8.2.2).
            if self.timers[Timer::Hold.index()].is_some() {
                self.restart_hold(now);
            }
            match msg {
                Ok(m) => self.message(now, m),
                Err(n) => self.down(now, Down::Sent(n)),
            }
        }
        self.rx.drain(..consumed);
    }

    fn message(&mut self, now: Instant, msg: Message) {
        let fsm_error = |state: State| {
            let sub = match state {
                State::OpenSent => codes::FSM_OPEN_SENT,
                State::OpenConfirm => codes::FSM_OPEN_CONFIRM,
                _ => codes::FSM_ESTABLISHED,
            };
            Notification::new(codes::FSM, sub)
        };
        match (self.state, msg) {
            (_, Message::Notification(n)) => self.down(now, Down::Received(n)),
            (State::OpenSent, Message::Bgp(BgpMessage::Open(open))) => {
                match check_open(
                    &open,
                    self.cfg.remote_as,
                    self.cfg.router_id,
                    self.cfg.local_as,
                ) {
                    Ok(peer) => self.open_received(now, peer),
                    Err(n) => self.down(now, Down::Sent(n)),
                }
            }
            (State::OpenConfirm, Message::Bgp(BgpMessage::KeepAlive)) => self.established(now),
            (State::Established, Message::Bgp(BgpMessage::KeepAlive)) => {}
            (State::Established, Message::Bgp(BgpMessage::Update(u))) => {
                self.counters.updates_in += 1;
                match decode_update(&u, self.cfg.local_as, self.cfg.remote_as) {
                    Ok(d) => self.apply_update(d),
                    Err(n) => self.down(now, Down::Sent(n)),
                }
            }
            (State::Established, Message::Bgp(BgpMessage::RouteRefresh(rr))) => {
                if rr.operation_type() == RouteRefreshSubcode::NormalRequest
                    && let Some(f) = family(rr.address_type())
                {
                    self.resend(f);
                }
            }
            (State::Established, Message::IgnoredRouteRefresh) => {}
            (state, _) => self.down(now, Down::Sent(fsm_error(state))),
        }
    }

    fn open_received(&mut self, now: Instant, peer: PeerOpen) {
        self.ctx = packet::parsing_context(peer.asn4);
        let hold = self.cfg.hold_time.min(peer.hold_time);
        // A restarting peer that no longer offers graceful restart, or not
        // for a family, loses that family's stale routes now (RFC 4724 4.2).
        let keep: Vec<Family> = match &peer.graceful_restart {
            Some((_, fams)) => fams.clone(),
            None => Vec::new(),
        };
        for f in self.stale_families.clone() {
            if !keep.contains(&f) {
                self.sweep_stale(Some(f));
            }
        }
        self.peer = Some(peer);
        self.send(packet::keepalive());
        if hold > 0 {
            self.start_timer(Timer::Hold, now + Duration::from_secs(u64::from(hold)));
            self.start_keepalive(now);
        } else {
            self.stop_timer(Timer::Hold);
            self.stop_timer(Timer::Keepalive);
        }
        self.set_state(State::OpenConfirm);
    }

    fn negotiated_hold(&self) -> u16 {
        self.peer
            .as_ref()
            .map_or(self.cfg.hold_time, |p| self.cfg.hold_time.min(p.hold_time))
    }

    fn restart_hold(&mut self, now: Instant) {
        let hold = if self.state == State::OpenSent {
            LARGE_HOLD_TIME
        } else {
            Duration::from_secs(u64::from(self.negotiated_hold()))
        };
        self.start_timer(Timer::Hold, now + hold);
    }

    fn start_keepalive(&mut self, now: Instant) {
        let hold = self.negotiated_hold();
        if hold > 0 {
            let every = Duration::from_secs(u64::from(hold)) / 3;
            self.start_timer(Timer::Keepalive, now + every);
        }
    }

    fn families(&self) -> Vec<Family> {
        self.peer
            .as_ref()
            .map(|p| {
                FAMILIES
                    .iter()
                    .copied()
                    .filter(|f| p.families.contains(f))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn params(&self) -> SessionParams {
        SessionParams {
            local_as: self.cfg.local_as,
            ebgp: self.cfg.local_as != self.cfg.remote_as,
            asn4: self.peer.as_ref().is_some_and(|p| p.asn4),
        }
    }

    fn established(&mut self, now: Instant) {
        self.established_at = Some(now);
        self.counters.established_count += 1;
        self.set_state(State::Established);
        if !self.stale_families.is_empty() {
            self.stop_timer(Timer::GracefulRestart);
            self.start_timer(Timer::StaleRoutes, now + self.cfg.stale_routes_time);
        }
        // Initial advertisement, then End-of-RIB for every family.
        self.send_diff();
        let mut buf = Vec::new();
        for f in self.families() {
            encode_end_of_rib(f, &mut buf);
        }
        self.send(buf);
    }

    fn send_diff(&mut self) {
        let families = self.families();
        let diff = self.adj_out.diff(&self.exports, &families);
        if diff.is_empty() {
            return;
        }
        let mut buf = Vec::new();
        let mut n = encode_withdrawals(diff.withdraw.iter(), &families, &mut buf);
        n += encode_announcements(diff.announce.iter(), self.params(), &families, &mut buf);
        self.counters.updates_out += n as u64;
        self.adj_out.apply(&diff);
        self.send(buf);
    }

    fn resend(&mut self, f: Family) {
        let routes = self.adj_out.routes(f);
        let mut buf = Vec::new();
        let n = encode_announcements(routes.iter(), self.params(), &[f], &mut buf);
        self.counters.updates_out += n as u64;
        self.send(buf);
    }

    fn apply_update(&mut self, d: crate::packet::update::DecodedUpdate) {
        for k in &d.withdrawn {
            self.changes.extend(self.adj_in.withdraw(k));
        }
        let Some(peer) = self.peer.as_ref() else {
            return;
        };
        let (peer_as, peer_router_id) = (peer.asn, peer.router_id);
        for route in d.announced {
            let key = match route.key() {
                Ok(k) => k,
                Err(e) => {
                    tracing::debug!(peer = %self.cfg.remote_addr, "ignoring route: {e}");
                    continue;
                }
            };
            let imported = ImportedRoute {
                route,
                peer: self.cfg.remote_addr,
                peer_as,
                peer_router_id,
                as_path: d.as_path.clone(),
                stale: false,
            };
            self.changes.extend(self.adj_in.learn(key, imported));
        }
        if let Some(f) = d.end_of_rib
            && self.stale_families.contains(&f)
        {
            self.sweep_stale(Some(f));
            if self.stale_families.is_empty() {
                self.stop_timer(Timer::StaleRoutes);
            }
        }
    }

    fn sweep_stale(&mut self, f: Option<Family>) {
        let swept = self.adj_in.sweep_stale(f);
        self.changes.extend(swept);
        match f {
            Some(f) => self.stale_families.retain(|x| *x != f),
            None => self.stale_families.clear(),
        }
    }

    fn down(&mut self, now: Instant, why: Down) {
        let was_established = self.state == State::Established;
        let reason = match &why {
            Down::Sent(n) => {
                self.send(n.to_bytes());
                format!("sent NOTIFICATION: {n}")
            }
            Down::Received(n) => format!("received NOTIFICATION: {n}"),
            Down::TcpClosed => "connection closed by peer".to_string(),
            Down::Collision => {
                self.send(collision_notification());
                "connection collision: replaced by the peer's connection".to_string()
            }
        };
        tracing::info!(peer = %self.cfg.remote_addr, state = ?self.state, "session down: {reason}");
        self.last_error = Some(reason);
        self.actions.push_back(Action::Close);
        self.stop_timer(Timer::Hold);
        self.stop_timer(Timer::Keepalive);
        self.rx.clear();
        self.adj_out.clear();
        self.established_at = None;
        if was_established {
            let gr = match (
                &why,
                self.peer.as_ref().and_then(|p| p.graceful_restart.clone()),
            ) {
                (Down::TcpClosed, Some((time, fams))) if time > 0 && !fams.is_empty() => {
                    Some((time, fams))
                }
                _ => None,
            };
            match gr {
                Some((time, fams)) => {
                    // Keep the listed families stale; drop the others.
                    for f in FAMILIES {
                        if !fams.contains(&f) {
                            self.sweep_stale_family_now(f);
                        }
                    }
                    self.changes.extend(self.adj_in.mark_stale());
                    self.stale_families = fams;
                    self.start_timer(
                        Timer::GracefulRestart,
                        now + Duration::from_secs(u64::from(time)),
                    );
                }
                None => {
                    self.changes.extend(self.adj_in.clear());
                    self.stale_families.clear();
                }
            }
        }
        self.peer = None;
        if matches!(why, Down::Collision) {
            // The replacing connection follows at once.
            self.set_state(State::Active);
        } else {
            self.set_state(State::Idle);
            if self.admin_up {
                self.start_timer(Timer::ConnectRetry, now + self.cfg.connect_retry);
            }
        }
    }

    /// Drops every route of a family (fresh or stale).
    fn sweep_stale_family_now(&mut self, f: Family) {
        self.changes.extend(self.adj_in.remove_family(f));
    }

    fn send(&mut self, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        // Coalesce consecutive sends into one write.
        if let Some(Action::Send(last)) = self.actions.back_mut() {
            last.extend_from_slice(&bytes);
        } else {
            self.actions.push_back(Action::Send(bytes));
        }
    }

    fn set_state(&mut self, to: State) {
        if self.state != to {
            let from = self.state;
            self.state = to;
            self.actions.push_back(Action::StateChange { from, to });
        }
    }

    fn start_timer(&mut self, t: Timer, at: Instant) {
        self.timers[t.index()] = Some(at);
        self.actions.push_back(Action::StartTimer(t, at));
    }

    fn stop_timer(&mut self, t: Timer) {
        if self.timers[t.index()].take().is_some() {
            self.actions.push_back(Action::StopTimer(t));
        }
    }

    fn flush_changes(&mut self) {
        if !self.changes.is_empty() {
            let changes = std::mem::take(&mut self.changes);
            self.actions.push_back(Action::Routes(changes));
        }
    }

    /// Feeds a timer expiry, ignoring timers that were stopped or re-armed
    /// for later in the meantime (drivers whose sleeps may be stale).
    pub fn handle_timer(&mut self, now: Instant, t: Timer) {
        if self.timers[t.index()].is_some_and(|at| at <= now) {
            self.handle(now, Event::Timer(t));
        }
    }
}
