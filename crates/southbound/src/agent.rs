//! The agent end of one session, sans-IO, and the reconnect backoff.
//!
//! ```text
//!  hello() ─► AwaitWelcome ─ Welcome(SNAPSHOT) ─► chunks… last ─► Commit(Replace) ─┐
//!                          ├ Welcome(RESUME) ───► (deltas as they come) ───────────┤
//!                          └ Welcome(RECONCILE) ► ReconcileNeeded ► strata ►       │
//!                              table ► peel ► Fetch ► chunks… ► Commit(Patch) ─────┤
//!   Live: Delta chunks… last ─► Commit(Patch), Applied ◄───────────────────────────┘
//! ```
//!
//! Updates are applied only when their last chunk arrives, as one [`Commit`]: the driver
//! persists it and hands the backend the whole new view, then sends the `Applied` that
//! follows it in the returned actions.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use thiserror::Error;
use weft_proto as pb;
use weft_reconcile::Iblt;
use weft_reconcile::protocol::{self, Response, Step};

use crate::view::{Commit, LocalView, Record};

/// What the agent driver does next, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentAction {
    /// Send this to the controller.
    Send(pb::AgentMessage),
    /// Persist this update and hand the backend the whole new view (one transaction).
    Commit(Commit),
    /// The view is current for the first time in this session: the connection is good
    /// (reset the backoff).
    Synced,
    /// The controller answered a request (a refusal is logged; the agent obeys it).
    Answer(pb::Answer),
}

/// The controller broke the protocol; the driver drops the connection and reconnects.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AgentError {
    /// A message arrived that the session did not expect now.
    #[error("controller protocol violation: {0}; reconnecting")]
    Protocol(String),
}

#[derive(Debug)]
struct PendingUpdate {
    kind: pb::UpdateKind,
    revision: u64,
    upserts: Vec<Record>,
    deletes: Vec<String>,
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    AwaitWelcome,
    Syncing,
    Live,
}

/// One session, agent side.
#[derive(Debug)]
pub struct AgentSession {
    claimed_host: String,
    agent_version: String,
    tunnel_address: String,
    reconcile: protocol::Config,
    phase: Phase,
    mode: Option<pb::SyncMode>,
    host: Option<String>,
    pending: Option<PendingUpdate>,
    /// Ids of the local records while reconciling, with their keys.
    ids: Option<HashMap<u64, String>>,
    /// Keys to drop when the reconciled records arrive.
    drop: Option<Vec<String>>,
    /// Bytes of reconciliation messages sent and received (for measurements).
    reconcile_bytes: usize,
}

fn send(body: pb::agent_message::Body) -> AgentAction {
    AgentAction::Send(pb::AgentMessage { body: Some(body) })
}

impl AgentSession {
    /// Announces this host's tunnel endpoint in Hello.
    pub fn with_tunnel_address(mut self, addr: Option<std::net::IpAddr>) -> Self {
        self.tunnel_address = addr.map(|a| a.to_string()).unwrap_or_default();
        self
    }

    /// A session. `claimed_host` may be empty; if not, the controller checks it against the
    /// certificate.
    pub fn new(claimed_host: impl Into<String>, agent_version: impl Into<String>) -> Self {
        AgentSession {
            claimed_host: claimed_host.into(),
            agent_version: agent_version.into(),
            tunnel_address: String::new(),
            reconcile: protocol::Config::default(),
            phase: Phase::AwaitWelcome,
            mode: None,
            host: None,
            pending: None,
            ids: None,
            drop: None,
            reconcile_bytes: 0,
        }
    }

    /// The host name the controller read from the certificate, once welcomed.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// How the controller chose to bring the view up to date in this session.
    pub fn sync_mode(&self) -> Option<pb::SyncMode> {
        self.mode
    }

    /// True once the view is current and deltas flow.
    pub fn is_live(&self) -> bool {
        self.phase == Phase::Live
    }

    /// Bytes of reconciliation payload (estimators and tables) exchanged in this session.
    pub fn reconcile_bytes(&self) -> usize {
        self.reconcile_bytes
    }

    /// The first message of the session.
    pub fn hello(&self, view: &LocalView) -> pb::AgentMessage {
        pb::AgentMessage {
            body: Some(pb::agent_message::Body::Hello(pb::Hello {
                protocol_version: pb::PROTOCOL_VERSION,
                host: self.claimed_host.clone(),
                revision: view.revision,
                record_count: view.records.len() as u64,
                agent_version: self.agent_version.clone(),
                tunnel_address: self.tunnel_address.clone(),
            })),
        }
    }

    fn synced(&mut self, out: &mut Vec<AgentAction>) {
        if self.phase != Phase::Live {
            self.phase = Phase::Live;
            out.push(AgentAction::Synced);
        }
    }

    /// Handles one message from the controller. `view` is the view as committed so far.
    pub fn handle(
        &mut self,
        message: pb::ControllerMessage,
        view: &LocalView,
    ) -> Result<Vec<AgentAction>, AgentError> {
        use pb::controller_message::Body;
        let mut out = Vec::new();
        let body = message
            .body
            .ok_or_else(|| AgentError::Protocol("empty message".into()))?;
        if self.phase == Phase::AwaitWelcome && !matches!(body, Body::Welcome(_)) {
            return Err(AgentError::Protocol(
                "the first message must be Welcome".into(),
            ));
        }
        match body {
            Body::Welcome(w) => {
                if self.phase != Phase::AwaitWelcome {
                    return Err(AgentError::Protocol("Welcome sent twice".into()));
                }
                self.host = Some(w.host);
                self.mode = pb::SyncMode::try_from(w.mode).ok();
                self.phase = Phase::Syncing;
                if w.mode == pb::SyncMode::Resume as i32 {
                    self.synced(&mut out);
                }
            }
            Body::Update(u) => self.on_update(u, view, &mut out)?,
            Body::ReconcileNeeded(_) => {
                let ids: HashMap<u64, String> = view
                    .ids()
                    .into_iter()
                    .map(|(id, k)| (id, k.to_string()))
                    .collect();
                let list: Vec<u64> = ids.keys().copied().collect();
                self.ids = Some(ids);
                self.drop = None;
                self.pending = None;
                if self.phase == Phase::Live {
                    self.phase = Phase::Syncing;
                }
                match protocol::agent_request(&self.reconcile, &list, 0) {
                    Ok(req) => out.push(self.reconcile_request(req)),
                    Err(_) => out.push(send(pb::agent_message::Body::SnapshotRequest(
                        pb::SnapshotRequest::default(),
                    ))),
                }
            }
            Body::ReconcileResponse(r) => self.on_reconcile_response(r, &mut out)?,
            Body::Answer(a) => out.push(AgentAction::Answer(a)),
        }
        Ok(out)
    }

    fn reconcile_request(&mut self, req: protocol::Request) -> AgentAction {
        let strata = req.strata.to_bytes();
        self.reconcile_bytes += strata.len();
        send(pb::agent_message::Body::ReconcileRequest(
            pb::ReconcileRequest {
                attempt: req.attempt,
                set_len: req.set_len,
                strata,
            },
        ))
    }

    fn on_reconcile_response(
        &mut self,
        r: pb::ReconcileResponse,
        out: &mut Vec<AgentAction>,
    ) -> Result<(), AgentError> {
        let Some(ids) = &self.ids else {
            return Err(AgentError::Protocol(
                "ReconcileResponse without a reconciliation".into(),
            ));
        };
        let table = match r.body {
            Some(pb::reconcile_response::Body::Table(t)) => t,
            // A snapshot follows.
            Some(pb::reconcile_response::Body::FullSnapshot(_)) | None => {
                self.ids = None;
                return Ok(());
            }
        };
        self.reconcile_bytes += table.iblt.len();
        let step = match Iblt::from_bytes(&table.iblt) {
            Ok(iblt) => {
                let resp = Response::Iblt {
                    attempt: table.attempt,
                    estimate: usize::try_from(table.estimate).unwrap_or(usize::MAX),
                    iblt,
                };
                let list: Vec<u64> = ids.keys().copied().collect();
                protocol::agent_resolve(&self.reconcile, &resp, &list)
            }
            Err(_) => Step::FullSnapshot(protocol::Fallback::DecodeFailed {
                attempts: table.attempt + 1,
            }),
        };
        match step {
            Step::Done(delta) => {
                let drop = delta
                    .drop
                    .iter()
                    .filter_map(|id| ids.get(id).cloned())
                    .collect();
                self.drop = Some(drop);
                self.ids = None;
                out.push(send(pb::agent_message::Body::FetchRequest(
                    pb::FetchRequest { ids: delta.fetch },
                )));
            }
            Step::Retry(req) => out.push(self.reconcile_request(req)),
            Step::FullSnapshot(_) => {
                self.ids = None;
                out.push(send(pb::agent_message::Body::SnapshotRequest(
                    pb::SnapshotRequest::default(),
                )));
            }
        }
        Ok(())
    }

    fn on_update(
        &mut self,
        u: pb::ViewUpdate,
        view: &LocalView,
        out: &mut Vec<AgentAction>,
    ) -> Result<(), AgentError> {
        let kind = pb::UpdateKind::try_from(u.kind)
            .map_err(|_| AgentError::Protocol(format!("unknown update kind {}", u.kind)))?;
        match (&mut self.pending, u.first) {
            (Some(_), true) => {
                return Err(AgentError::Protocol(
                    "a new update started before the last one ended".into(),
                ));
            }
            (None, false) => {
                return Err(AgentError::Protocol(
                    "an update chunk arrived without its first chunk".into(),
                ));
            }
            (Some(p), false) if p.kind != kind || p.revision != u.revision => {
                return Err(AgentError::Protocol(
                    "an update chunk does not match the update it continues".into(),
                ));
            }
            (None, true) => {
                self.pending = Some(PendingUpdate {
                    kind,
                    revision: u.revision,
                    upserts: Vec::new(),
                    deletes: Vec::new(),
                });
            }
            (Some(_), false) => {}
        }
        let p = self.pending.as_mut().expect("pending set above");
        p.upserts.extend(u.upserts.into_iter().map(Record::from));
        p.deletes.extend(u.deletes);
        if !u.last {
            return Ok(());
        }
        let p = self.pending.take().expect("pending set above");
        let commit = match p.kind {
            pb::UpdateKind::Snapshot => {
                self.ids = None;
                self.drop = None;
                Commit::Replace {
                    revision: p.revision,
                    records: p
                        .upserts
                        .into_iter()
                        .map(|r| (r.key, r.value))
                        .collect::<BTreeMap<_, _>>(),
                }
            }
            pb::UpdateKind::Delta => {
                if self.phase != Phase::Live || p.revision <= view.revision {
                    return Err(AgentError::Protocol(format!(
                        "delta to revision {} while holding revision {} ({:?})",
                        p.revision, view.revision, self.phase
                    )));
                }
                Commit::Patch {
                    revision: p.revision,
                    upserts: p.upserts,
                    deletes: p.deletes,
                }
            }
            pb::UpdateKind::Reconcile => {
                let Some(drop) = self.drop.take() else {
                    return Err(AgentError::Protocol(
                        "reconciled records arrived without a decoded table".into(),
                    ));
                };
                Commit::Patch {
                    revision: p.revision,
                    upserts: p.upserts,
                    deletes: drop,
                }
            }
            pb::UpdateKind::Unspecified => {
                return Err(AgentError::Protocol("update kind missing".into()));
            }
        };
        let revision = commit.revision();
        out.push(AgentAction::Commit(commit));
        out.push(send(pb::agent_message::Body::Applied(pb::Applied {
            revision,
        })));
        self.synced(out);
        Ok(())
    }
}

/// Exponential backoff with jitter for reconnects. The randomness comes in as an argument,
/// so that tests are deterministic and the caller picks the source.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Delays start at `initial` and double up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            attempt: 0,
        }
    }

    /// The delay before the next attempt: the capped exponential delay `d`, jittered
    /// uniformly in `[d/2, d]` by `random` (any 64-bit random value). The lower bound keeps
    /// a crowd of agents from hammering a restarting controller; the spread keeps them
    /// from arriving together.
    pub fn next_delay(&mut self, random: u64) -> Duration {
        let factor = 1u32 << self.attempt.min(20);
        let d = self.initial.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = d / 2;
        let span = u64::try_from((d - half).as_nanos()).unwrap_or(u64::MAX);
        half + Duration::from_nanos(if span == 0 { 0 } else { random % (span + 1) })
    }

    /// Back to the initial delay, after a session got its view.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// A small deterministic generator (splitmix64) for jitter, seeded by the caller.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next value.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_jitters_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut rng = SplitMix64::new(7);
        let mut delays = Vec::new();
        for _ in 0..8 {
            delays.push(b.next_delay(rng.next()));
        }
        let caps = [100, 200, 400, 800, 1600, 2000, 2000, 2000];
        for (d, cap) in delays.iter().zip(caps) {
            let cap = Duration::from_millis(cap);
            assert!(
                *d >= cap / 2 && *d <= cap,
                "{d:?} outside [{:?}, {cap:?}]",
                cap / 2
            );
        }
        b.reset();
        assert!(b.next_delay(u64::MAX) <= Duration::from_millis(100));
        // Different random values give different delays: the jitter is real.
        let mut spread = std::collections::BTreeSet::new();
        for i in 0..50 {
            let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
            spread.insert(b.next_delay(SplitMix64::new(i).next()));
        }
        assert!(spread.len() > 40, "{} distinct delays", spread.len());
    }

    #[test]
    fn chunks_out_of_order_are_protocol_errors() {
        let view = LocalView::default();
        let mut s = AgentSession::new("", "test");
        let welcome = pb::ControllerMessage {
            body: Some(pb::controller_message::Body::Welcome(pb::Welcome {
                host: "h".into(),
                mode: pb::SyncMode::Snapshot as i32,
            })),
        };
        let update = |first, last, revision| pb::ControllerMessage {
            body: Some(pb::controller_message::Body::Update(pb::ViewUpdate {
                kind: pb::UpdateKind::Snapshot as i32,
                revision,
                first,
                last,
                ..Default::default()
            })),
        };
        assert!(
            s.handle(update(true, true, 1), &view).is_err(),
            "before Welcome"
        );
        s.handle(welcome, &view).unwrap();
        assert!(
            s.handle(update(false, true, 1), &view).is_err(),
            "no first chunk"
        );
        let mut s2 = AgentSession::new("", "test");
        s2.phase = Phase::Syncing;
        s2.handle(update(true, false, 1), &view).unwrap();
        assert!(
            s2.handle(update(false, true, 2), &view).is_err(),
            "revision changed"
        );
    }
}
