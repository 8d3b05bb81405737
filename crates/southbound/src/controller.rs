//! The controller end of one host session, sans-IO.
//!
//! ```text
//!             Hello(rev)
//!  AwaitHello ──────────┬─ rev = 0 ─────────────► Snapshot ────────────┐
//!                       ├─ history held ────────► Deltas after rev ────┤
//!                       └─ history gone ──► Reconciling ─ Fetch ───────┤
//!                                            (IBLT, or a snapshot)     ▼
//!   Live: on view change, deltas after the last revision sent ◄──── Live
//!         (history gone → ReconcileNeeded → Reconciling)
//! ```
//!
//! The driver feeds agent messages, view-change notifications and timeouts in, with the
//! current time, and carries out the returned [`Action`]s in order. The host name comes from
//! the verified client certificate, given to [`ControllerSession::new`]; nothing the agent
//! sends can change it.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use thiserror::Error;
use weft_proto as pb;
use weft_reconcile::StrataEstimator;
use weft_reconcile::protocol::{self, Response};

use crate::view::{Record, ViewDelta, ViewSource};
use crate::writes::{HostWrite, Refusal, check_claim, parse_write};

/// Tuning of a controller session.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Bytes of records per update message; larger updates go in several chunks. Small
    /// chunks keep the per-stream encode buffer (which keeps its peak size for the life of
    /// the session) small.
    pub chunk_bytes: usize,
    /// A session that has not said Hello within this delay is closed.
    pub hello_timeout: Duration,
    /// A reconciliation not finished within this delay is abandoned and the session closed.
    pub reconcile_timeout: Duration,
    /// A host may ask for a full snapshot at most this often.
    pub snapshot_interval: Duration,
    /// When the history is gone and the whole view is at most this many bytes, send it
    /// rather than reconcile: an estimator alone costs a kilobyte or more.
    pub snapshot_below_bytes: usize,
    /// The reconciliation exchange.
    pub reconcile: protocol::Config,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            chunk_bytes: 16 * 1024,
            hello_timeout: Duration::from_secs(10),
            reconcile_timeout: Duration::from_secs(30),
            snapshot_interval: Duration::from_secs(1),
            snapshot_below_bytes: 16 * 1024,
            reconcile: protocol::Config::default(),
        }
    }
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send this message to the agent.
    Send(pb::ControllerMessage),
    /// Check ownership, apply the write, and answer `request_id` (the shape and the
    /// identity fields are already checked).
    Write {
        /// The request to answer.
        request_id: u64,
        /// The write.
        write: HostWrite,
    },
    /// Something was refused (the answer is already queued): log it with the host name.
    Refused(Refusal),
}

/// A protocol violation that ends the session.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SessionError {
    /// The first message was not Hello, or Hello came twice.
    #[error("protocol violation by host {host}: {detail}")]
    Protocol {
        /// The host.
        host: String,
        /// What it did.
        detail: String,
    },
    /// Hello named another host.
    #[error("host {host} refused: {refusal}")]
    Refused {
        /// The host.
        host: String,
        /// Why.
        refusal: Refusal,
    },
    /// The agent did not answer in time.
    #[error("host {host} timed out {what}")]
    Timeout {
        /// The host.
        host: String,
        /// What it did not finish.
        what: &'static str,
    },
}

#[derive(Debug)]
enum Phase {
    AwaitHello {
        deadline: Instant,
    },
    Reconciling {
        deadline: Instant,
        pending: Option<Pending>,
    },
    Live,
}

/// The controller's records at the revision a reconciliation table was built from.
#[derive(Debug)]
struct Pending {
    revision: u64,
    by_id: HashMap<u64, Record>,
}

/// One host's session, controller side.
#[derive(Debug)]
pub struct ControllerSession {
    host: String,
    cfg: SessionConfig,
    phase: Phase,
    /// The revision the agent holds once it applied everything sent.
    sent: u64,
    /// The revision the agent says it applied.
    applied: u64,
    last_snapshot: Option<Instant>,
}

fn msg(body: pb::controller_message::Body) -> Action {
    Action::Send(pb::ControllerMessage { body: Some(body) })
}

/// Splits an update into messages of about `budget` bytes of records each.
pub fn chunk_update(
    kind: pb::UpdateKind,
    revision: u64,
    upserts: Vec<Record>,
    deletes: Vec<String>,
    budget: usize,
) -> Vec<pb::ViewUpdate> {
    let mut out = Vec::new();
    let mut cur = pb::ViewUpdate {
        kind: kind as i32,
        revision,
        first: true,
        ..Default::default()
    };
    let mut size = 0;
    let mut push = |cur: &mut pb::ViewUpdate, size: &mut usize, len: usize| {
        if *size > 0 && *size + len > budget {
            let next = pb::ViewUpdate {
                kind: kind as i32,
                revision,
                ..Default::default()
            };
            out.push(std::mem::replace(cur, next));
            *size = 0;
        }
        *size += len;
    };
    for k in deletes {
        push(&mut cur, &mut size, k.len() + 4);
        cur.deletes.push(k);
    }
    for r in upserts {
        push(&mut cur, &mut size, r.wire_len());
        cur.upserts.push(r.into());
    }
    cur.last = true;
    out.push(cur);
    out
}

/// Merges consecutive deltas into one: the later change of a key wins.
pub fn merge_deltas(deltas: Vec<ViewDelta>) -> Option<(u64, Vec<Record>, Vec<String>)> {
    let revision = deltas.last()?.revision;
    let mut net: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
    for d in deltas {
        for k in d.deleted {
            net.insert(k, None);
        }
        for r in d.upserts {
            net.insert(r.key, Some(r.value));
        }
    }
    let mut upserts = Vec::new();
    let mut deletes = Vec::new();
    for (k, v) in net {
        match v {
            Some(value) => upserts.push(Record { key: k, value }),
            None => deletes.push(k),
        }
    }
    Some((revision, upserts, deletes))
}

impl ControllerSession {
    /// A session for `host` (the name in its verified certificate), opened at `now`.
    pub fn new(host: impl Into<String>, cfg: SessionConfig, now: Instant) -> Self {
        let deadline = now + cfg.hello_timeout;
        ControllerSession {
            host: host.into(),
            cfg,
            phase: Phase::AwaitHello { deadline },
            sent: 0,
            applied: 0,
            last_snapshot: None,
        }
    }

    /// The host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The revision the agent holds once it has applied everything sent so far.
    pub fn sent_revision(&self) -> u64 {
        self.sent
    }

    /// The revision the agent last said it applied.
    pub fn applied_revision(&self) -> u64 {
        self.applied
    }

    /// True once the agent has its view and gets deltas.
    pub fn is_live(&self) -> bool {
        matches!(self.phase, Phase::Live)
    }

    /// When [`ControllerSession::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.phase {
            Phase::AwaitHello { deadline } | Phase::Reconciling { deadline, .. } => Some(*deadline),
            Phase::Live => None,
        }
    }

    /// Checks the deadlines.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), SessionError> {
        let what = match &self.phase {
            Phase::AwaitHello { deadline } if now >= *deadline => "before saying Hello",
            Phase::Reconciling { deadline, .. } if now >= *deadline => "during reconciliation",
            _ => return Ok(()),
        };
        Err(SessionError::Timeout {
            host: self.host.clone(),
            what,
        })
    }

    fn protocol(&self, detail: impl Into<String>) -> SessionError {
        SessionError::Protocol {
            host: self.host.clone(),
            detail: detail.into(),
        }
    }

    fn snapshot(&mut self, view: &dyn ViewSource, now: Instant, out: &mut Vec<Action>) {
        let (revision, records) = view.snapshot(&self.host);
        self.send_snapshot(revision, records, now, out);
    }

    fn send_snapshot(
        &mut self,
        revision: u64,
        records: Vec<Record>,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        for u in chunk_update(
            pb::UpdateKind::Snapshot,
            revision,
            records,
            Vec::new(),
            self.cfg.chunk_bytes,
        ) {
            out.push(msg(pb::controller_message::Body::Update(u)));
        }
        self.sent = revision;
        self.last_snapshot = Some(now);
        self.phase = Phase::Live;
    }

    fn start_reconcile(&mut self, now: Instant, out: &mut Vec<Action>) {
        out.push(msg(pb::controller_message::Body::ReconcileNeeded(
            pb::ReconcileNeeded {},
        )));
        self.phase = Phase::Reconciling {
            deadline: now + self.cfg.reconcile_timeout,
            pending: None,
        };
    }

    /// Sends what changed after the last revision sent, if the session is live.
    fn catch_up(&mut self, view: &dyn ViewSource, now: Instant, out: &mut Vec<Action>) {
        if !self.is_live() {
            return;
        }
        match view.changes_since(&self.host, self.sent) {
            Some(deltas) => {
                if let Some((revision, upserts, deletes)) = merge_deltas(deltas) {
                    for u in chunk_update(
                        pb::UpdateKind::Delta,
                        revision,
                        upserts,
                        deletes,
                        self.cfg.chunk_bytes,
                    ) {
                        out.push(msg(pb::controller_message::Body::Update(u)));
                    }
                    self.sent = revision;
                }
            }
            None => {
                self.resync(view, now, out);
            }
        }
    }

    /// The agent's revision cannot be served from history: reconcile, or send a small view
    /// whole. Returns the mode chosen.
    fn resync(
        &mut self,
        view: &dyn ViewSource,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> pb::SyncMode {
        let (revision, records) = view.snapshot(&self.host);
        let bytes: usize = records.iter().map(Record::wire_len).sum();
        if bytes <= self.cfg.snapshot_below_bytes {
            self.send_snapshot(revision, records, now, out);
            pb::SyncMode::Snapshot
        } else {
            self.start_reconcile(now, out);
            pb::SyncMode::Reconcile
        }
    }

    /// The view source says some view changed: send this host's changes, if any.
    pub fn handle_view_changed(&mut self, view: &dyn ViewSource, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        self.catch_up(view, now, &mut out);
        out
    }

    /// Handles one message from the agent.
    pub fn handle_message(
        &mut self,
        message: pb::AgentMessage,
        view: &dyn ViewSource,
        now: Instant,
    ) -> Result<Vec<Action>, SessionError> {
        use pb::agent_message::Body;
        let mut out = Vec::new();
        let Some(body) = message.body else {
            return Err(self.protocol("empty message"));
        };
        if let Phase::AwaitHello { .. } = self.phase {
            let Body::Hello(hello) = body else {
                return Err(self.protocol("the first message must be Hello"));
            };
            self.on_hello(hello, view, now, &mut out)?;
            return Ok(out);
        }
        if let Some((request_id, parsed)) = parse_write(&body, &self.host) {
            match parsed {
                Ok(write) => out.push(Action::Write { request_id, write }),
                Err(refusal) => self.refuse(request_id, refusal, &mut out),
            }
            return Ok(out);
        }
        match body {
            Body::Hello(_) => return Err(self.protocol("Hello sent twice")),
            Body::ReconcileRequest(req) => self.on_reconcile_request(req, view, now, &mut out)?,
            Body::FetchRequest(req) => self.on_fetch(req, view, now, &mut out)?,
            Body::SnapshotRequest(req) => {
                if let Err(refusal) = check_claim(&req.host, &self.host) {
                    self.refuse(req.request_id, refusal, &mut out);
                } else if self
                    .last_snapshot
                    .is_some_and(|t| now.saturating_duration_since(t) < self.cfg.snapshot_interval)
                    && self.is_live()
                {
                    let refusal = Refusal::Limited(format!(
                        "snapshots are limited to one per {:?}; retry later",
                        self.cfg.snapshot_interval
                    ));
                    self.refuse(req.request_id, refusal, &mut out);
                } else {
                    self.snapshot(view, now, &mut out);
                    self.catch_up(view, now, &mut out);
                }
            }
            Body::Applied(a) => {
                if a.revision > self.sent {
                    let refusal = Refusal::Invalid {
                        what: "applied revision",
                        detail: format!(
                            "revision {} was never sent (last sent {})",
                            a.revision, self.sent
                        ),
                    };
                    self.refuse(0, refusal, &mut out);
                } else {
                    self.applied = self.applied.max(a.revision);
                }
            }
            Body::PortStatus(_)
            | Body::LearnedBindings(_)
            | Body::Liveness(_)
            | Body::Counters(_) => {
                unreachable!("writes are parsed above")
            }
        }
        Ok(out)
    }

    fn refuse(&self, request_id: u64, refusal: Refusal, out: &mut Vec<Action>) {
        out.push(msg(pb::controller_message::Body::Answer(
            refusal.answer(request_id),
        )));
        out.push(Action::Refused(refusal));
    }

    fn on_hello(
        &mut self,
        hello: pb::Hello,
        view: &dyn ViewSource,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> Result<(), SessionError> {
        if hello.protocol_version != pb::PROTOCOL_VERSION {
            return Err(self.protocol(format!(
                "protocol version {} is not supported (this controller speaks {}); upgrade the agent",
                hello.protocol_version,
                pb::PROTOCOL_VERSION
            )));
        }
        check_claim(&hello.host, &self.host).map_err(|refusal| SessionError::Refused {
            host: self.host.clone(),
            refusal,
        })?;
        let host = self.host.clone();
        let welcome = move |mode: pb::SyncMode| {
            msg(pb::controller_message::Body::Welcome(pb::Welcome {
                host: host.clone(),
                mode: mode as i32,
            }))
        };
        if hello.revision == 0 {
            out.push(welcome(pb::SyncMode::Snapshot));
            self.snapshot(view, now, out);
            return Ok(());
        }
        match view.changes_since(&self.host, hello.revision) {
            Some(deltas) => {
                out.push(welcome(pb::SyncMode::Resume));
                self.sent = hello.revision;
                self.applied = hello.revision;
                self.phase = Phase::Live;
                let _ = deltas; // Fetched again by catch_up, which also sends them.
                self.catch_up(view, now, out);
            }
            None => {
                let mut rest = Vec::new();
                let mode = self.resync(view, now, &mut rest);
                out.push(welcome(mode));
                out.append(&mut rest);
                if mode == pb::SyncMode::Snapshot {
                    self.catch_up(view, now, out);
                }
            }
        }
        Ok(())
    }

    fn on_reconcile_request(
        &mut self,
        req: pb::ReconcileRequest,
        view: &dyn ViewSource,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> Result<(), SessionError> {
        let Phase::Reconciling { deadline, .. } = self.phase else {
            return Err(self.protocol("ReconcileRequest outside a reconciliation"));
        };
        let (revision, records) = view.snapshot(&self.host);
        let strata = match StrataEstimator::from_bytes(&req.strata) {
            Ok(s) => s,
            Err(e) => {
                // A broken estimator costs the host a snapshot, not the session.
                out.push(Action::Refused(Refusal::Invalid {
                    what: "reconcile request",
                    detail: e.to_string(),
                }));
                out.push(msg(pb::controller_message::Body::ReconcileResponse(
                    pb::ReconcileResponse {
                        body: Some(pb::reconcile_response::Body::FullSnapshot(format!(
                            "the estimator could not be read ({e}); taking a full snapshot"
                        ))),
                    },
                )));
                self.send_snapshot(revision, records, now, out);
                self.catch_up(view, now, out);
                return Ok(());
            }
        };
        let request = protocol::Request {
            attempt: req.attempt,
            set_len: req.set_len,
            strata,
        };
        let by_id: HashMap<u64, Record> = records.iter().map(|r| (r.id(), r.clone())).collect();
        let ids: Vec<u64> = by_id.keys().copied().collect();
        match protocol::controller_respond(&self.cfg.reconcile, &request, &ids) {
            Response::Iblt {
                attempt,
                estimate,
                iblt,
            } => {
                out.push(msg(pb::controller_message::Body::ReconcileResponse(
                    pb::ReconcileResponse {
                        body: Some(pb::reconcile_response::Body::Table(pb::ReconcileTable {
                            attempt,
                            estimate: estimate as u64,
                            iblt: iblt.to_bytes(),
                        })),
                    },
                )));
                self.phase = Phase::Reconciling {
                    deadline,
                    pending: Some(Pending { revision, by_id }),
                };
            }
            Response::FullSnapshot(fallback) => {
                out.push(msg(pb::controller_message::Body::ReconcileResponse(
                    pb::ReconcileResponse {
                        body: Some(pb::reconcile_response::Body::FullSnapshot(
                            fallback.to_string(),
                        )),
                    },
                )));
                self.send_snapshot(revision, records, now, out);
                self.catch_up(view, now, out);
            }
        }
        Ok(())
    }

    fn on_fetch(
        &mut self,
        req: pb::FetchRequest,
        view: &dyn ViewSource,
        now: Instant,
        out: &mut Vec<Action>,
    ) -> Result<(), SessionError> {
        let Phase::Reconciling {
            pending: Some(pending),
            ..
        } = std::mem::replace(&mut self.phase, Phase::Live)
        else {
            return Err(self.protocol("FetchRequest without a reconciliation table"));
        };
        let mut records = Vec::with_capacity(req.ids.len());
        for id in &req.ids {
            match pending.by_id.get(id) {
                Some(r) => records.push(r.clone()),
                None => {
                    return Err(SessionError::Refused {
                        host: self.host.clone(),
                        refusal: Refusal::Forbidden(format!(
                            "asked for record id {id:#018x}, which is not in its own view; a host reads only its own view"
                        )),
                    });
                }
            }
        }
        for u in chunk_update(
            pb::UpdateKind::Reconcile,
            pending.revision,
            records,
            Vec::new(),
            self.cfg.chunk_bytes,
        ) {
            out.push(msg(pb::controller_message::Body::Update(u)));
        }
        self.sent = pending.revision;
        self.catch_up(view, now, out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryViewSource;

    fn hello(revision: u64) -> pb::AgentMessage {
        pb::AgentMessage {
            body: Some(pb::agent_message::Body::Hello(pb::Hello {
                protocol_version: 1,
                revision,
                ..Default::default()
            })),
        }
    }

    fn updates(actions: &[Action]) -> Vec<&pb::ViewUpdate> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(pb::ControllerMessage {
                    body: Some(pb::controller_message::Body::Update(u)),
                }) => Some(u),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn chunks_respect_the_budget_and_mark_first_and_last() {
        let records: Vec<Record> = (0..10)
            .map(|i| Record::new(format!("k{i}"), vec![0; 100]))
            .collect();
        let chunks = chunk_update(pb::UpdateKind::Snapshot, 5, records, vec![], 250);
        assert_eq!(chunks.len(), 5);
        assert!(chunks[0].first && !chunks[0].last);
        assert!(chunks[4].last && !chunks[4].first);
        assert_eq!(chunks.iter().map(|c| c.upserts.len()).sum::<usize>(), 10);
        let empty = chunk_update(pb::UpdateKind::Snapshot, 5, vec![], vec![], 250);
        assert_eq!(empty.len(), 1);
        assert!(empty[0].first && empty[0].last);
    }

    #[test]
    fn merged_deltas_keep_the_last_change_of_each_key() {
        let d = |rev, up: &[(&str, &str)], del: &[&str]| ViewDelta {
            revision: rev,
            upserts: up
                .iter()
                .map(|(k, v)| Record::new(*k, v.as_bytes()))
                .collect(),
            deleted: del.iter().map(|k| k.to_string()).collect(),
        };
        let (rev, up, del) = merge_deltas(vec![
            d(3, &[("a", "1"), ("b", "1")], &[]),
            d(4, &[], &["a"]),
            d(6, &[("b", "2"), ("c", "1")], &[]),
        ])
        .unwrap();
        assert_eq!(rev, 6);
        assert_eq!(
            up,
            vec![
                Record::new("b", b"2".to_vec()),
                Record::new("c", b"1".to_vec())
            ]
        );
        assert_eq!(del, vec!["a".to_string()]);
        assert!(merge_deltas(vec![]).is_none());
    }

    #[test]
    fn first_message_must_be_hello_and_identity_is_the_certificate() {
        let view = MemoryViewSource::new(0, 8);
        let now = Instant::now();
        let mut s = ControllerSession::new("h1", SessionConfig::default(), now);
        let applied = pb::AgentMessage {
            body: Some(pb::agent_message::Body::Applied(pb::Applied {
                revision: 1,
            })),
        };
        assert!(matches!(
            s.handle_message(applied, &view, now),
            Err(SessionError::Protocol { .. })
        ));
        let mut s = ControllerSession::new("h1", SessionConfig::default(), now);
        let mut forged = hello(0);
        if let Some(pb::agent_message::Body::Hello(h)) = &mut forged.body {
            h.host = "h2".into();
        }
        assert!(matches!(
            s.handle_message(forged, &view, now),
            Err(SessionError::Refused {
                refusal: Refusal::ForgedIdentity { .. },
                ..
            })
        ));
        let mut s = ControllerSession::new("h1", SessionConfig::default(), now);
        assert!(s.handle_timeout(now + Duration::from_secs(1)).is_ok());
        assert!(s.handle_timeout(now + Duration::from_secs(11)).is_err());
    }

    #[test]
    fn resume_sends_only_the_changes_after_the_agent_revision() {
        let view = MemoryViewSource::new(0, 8);
        let r1 = view.put("h1", "a", b"1".to_vec());
        view.put("h2", "x", b"1".to_vec());
        let r3 = view.put("h1", "b", b"1".to_vec());
        let now = Instant::now();
        let mut s = ControllerSession::new("h1", SessionConfig::default(), now);
        let out = s.handle_message(hello(r1), &view, now).unwrap();
        let ups = updates(&out);
        assert_eq!(ups.len(), 1);
        assert_eq!(ups[0].kind, pb::UpdateKind::Delta as i32);
        assert_eq!(ups[0].revision, r3);
        assert_eq!(ups[0].upserts.len(), 1);
        assert_eq!(ups[0].upserts[0].key, "b");
        assert_eq!(s.sent_revision(), r3);
        // A change for another host sends nothing to h1.
        view.put("h2", "y", b"1".to_vec());
        assert!(s.handle_view_changed(&view, now).is_empty());
        let r5 = view.delete("h1", "a");
        let out = s.handle_view_changed(&view, now);
        assert_eq!(updates(&out)[0].deletes, vec!["a".to_string()]);
        assert_eq!(s.sent_revision(), r5);
    }

    #[test]
    fn small_views_are_sent_whole_when_history_is_gone() {
        let view = MemoryViewSource::new(10, 8);
        let r = view.put("h1", "a", vec![0; 100]);
        view.forget_history();
        let now = Instant::now();
        let mut s = ControllerSession::new("h1", SessionConfig::default(), now);
        let out = s.handle_message(hello(r - 1), &view, now).unwrap();
        assert_eq!(updates(&out)[0].kind, pb::UpdateKind::Snapshot as i32);
        assert!(s.is_live());
        let cfg = SessionConfig {
            snapshot_below_bytes: 0,
            ..SessionConfig::default()
        };
        let mut s = ControllerSession::new("h1", cfg, now);
        let out = s.handle_message(hello(r - 1), &view, now).unwrap();
        assert!(updates(&out).is_empty());
        assert!(matches!(
            &out[1],
            Action::Send(pb::ControllerMessage {
                body: Some(pb::controller_message::Body::ReconcileNeeded(_))
            })
        ));
    }
}
