//! Controller and agent sessions connected in memory on virtual time: every sync path
//! (snapshot, resume, reconcile, fallback, history lost while live) converges to the
//! source's view, and reconciliation moves far fewer bytes than a snapshot.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use prost::Message;
use weft_proto as pb;
use weft_southbound::{
    Action, AgentAction, AgentSession, ControllerSession, HostChange, LocalView, MemoryViewSource,
    Record, SessionConfig, SplitMix64,
};

/// One connection between a controller session and an agent session.
struct Link {
    ctrl: ControllerSession,
    agent: AgentSession,
    to_agent: VecDeque<pb::ControllerMessage>,
    to_ctrl: VecDeque<pb::AgentMessage>,
    down_bytes: usize,
    up_bytes: usize,
    modes: Vec<i32>,
}

impl Link {
    fn open(host: &str, view: &LocalView, now: Instant) -> Link {
        let agent = AgentSession::new(host, "test");
        let hello = agent.hello(view);
        Link {
            ctrl: ControllerSession::new(host, SessionConfig::default(), now),
            agent,
            to_agent: VecDeque::new(),
            to_ctrl: VecDeque::from([hello]),
            down_bytes: 0,
            up_bytes: 0,
            modes: Vec::new(),
        }
    }

    fn push_actions(&mut self, actions: Vec<Action>) {
        for a in actions {
            match a {
                Action::Send(m) => {
                    if let Some(pb::controller_message::Body::Welcome(w)) = &m.body {
                        self.modes.push(w.mode);
                    }
                    self.down_bytes += m.encoded_len();
                    self.to_agent.push_back(m);
                }
                Action::Write { request_id, .. } => {
                    self.to_agent.push_back(pb::ControllerMessage {
                        body: Some(pb::controller_message::Body::Answer(pb::Answer {
                            request_id,
                            ..Default::default()
                        })),
                    })
                }
                Action::Refused(r) => panic!("unexpected refusal: {r}"),
            }
        }
    }

    /// Delivers messages both ways until both queues are empty. `between` runs after each
    /// message the controller handles (to change the source mid-exchange).
    fn pump(
        &mut self,
        src: &MemoryViewSource,
        view: &mut LocalView,
        now: Instant,
        mut between: impl FnMut(&MemoryViewSource),
    ) {
        loop {
            if let Some(m) = self.to_ctrl.pop_front() {
                self.up_bytes += m.encoded_len();
                let actions = self.ctrl.handle_message(m, src, now).expect("controller");
                self.push_actions(actions);
                between(src);
                continue;
            }
            if let Some(m) = self.to_agent.pop_front() {
                for a in self.agent.handle(m, view).expect("agent") {
                    match a {
                        AgentAction::Send(m) => self.to_ctrl.push_back(m),
                        AgentAction::Commit(c) => view.apply(&c),
                        AgentAction::Synced | AgentAction::Answer(_) => {}
                    }
                }
                continue;
            }
            // Quiet: deliver the view-change notification the driver would.
            let actions = self.ctrl.handle_view_changed(src, now);
            if actions.is_empty() {
                return;
            }
            self.push_actions(actions);
        }
    }
}

fn fill(src: &MemoryViewSource, host: &str, n: usize, value_len: usize) {
    let upserts = (0..n)
        .map(|i| Record::new(format!("rec/{i:06}"), vec![(i % 251) as u8; value_len]))
        .collect();
    src.apply(vec![HostChange {
        host: host.into(),
        upserts,
        deletes: vec![],
    }]);
}

fn assert_converged(src: &MemoryViewSource, host: &str, view: &LocalView) {
    assert_eq!(
        view.records,
        src.records(host),
        "agent view differs from the source"
    );
}

#[test]
fn snapshot_then_deltas() {
    let now = Instant::now();
    let src = MemoryViewSource::new(100, 64);
    fill(&src, "h1", 50, 40);
    fill(&src, "h2", 50, 40);
    let mut view = LocalView::default();
    let mut link = Link::open("h1", &view, now);
    link.pump(&src, &mut view, now, |_| {});
    assert_eq!(link.modes, vec![pb::SyncMode::Snapshot as i32]);
    assert_converged(&src, "h1", &view);
    assert_eq!(view.revision, src.revision());
    for i in 0..20 {
        src.put("h1", &format!("rec/{i:06}"), vec![i; 10]);
        src.put("h2", "other", vec![i]);
        link.pump(&src, &mut view, now, |_| {});
        assert_converged(&src, "h1", &view);
    }
    assert_eq!(link.ctrl.applied_revision(), view.revision);
    assert!(
        !view.records.contains_key("other"),
        "h2's record leaked to h1"
    );
}

#[test]
fn resume_after_reconnect_sends_only_the_changes() {
    let now = Instant::now();
    let src = MemoryViewSource::new(0, 64);
    fill(&src, "h1", 1000, 100);
    let mut view = LocalView::default();
    let mut first = Link::open("h1", &view, now);
    first.pump(&src, &mut view, now, |_| {});
    let snapshot_bytes = first.down_bytes;
    drop(first);
    // Changes while the agent is away.
    for i in 0..10 {
        src.put("h1", &format!("rec/{i:06}"), vec![7; 100]);
    }
    src.delete("h1", "rec/000500");
    let mut again = Link::open("h1", &view, now);
    again.pump(&src, &mut view, now, |_| {});
    assert_eq!(again.modes, vec![pb::SyncMode::Resume as i32]);
    assert_converged(&src, "h1", &view);
    assert!(
        again.down_bytes * 50 < snapshot_bytes,
        "resume {} bytes vs snapshot {snapshot_bytes}",
        again.down_bytes
    );
}

#[test]
fn reconcile_when_history_is_gone_moves_only_the_difference() {
    let now = Instant::now();
    for (records, changes) in [
        (1000usize, 10usize),
        (10_000, 10),
        (10_000, 100),
        (10_000, 1000),
    ] {
        let src = MemoryViewSource::new(0, 16);
        fill(&src, "h1", records, 100);
        let mut view = LocalView::default();
        let mut first = Link::open("h1", &view, now);
        first.pump(&src, &mut view, now, |_| {});
        let snapshot_bytes = first.down_bytes + first.up_bytes;
        drop(first);
        let mut rng = SplitMix64::new(records as u64 * 31 + changes as u64);
        for _ in 0..changes {
            let i = rng.next() as usize % (records * 2);
            if rng.next().is_multiple_of(4) {
                src.delete("h1", &format!("rec/{i:06}"));
            } else {
                src.put("h1", &format!("rec/{i:06}"), vec![rng.next() as u8; 100]);
            }
        }
        src.forget_history();
        let mut again = Link::open("h1", &view, now);
        again.pump(&src, &mut view, now, |_| {});
        assert_eq!(again.modes, vec![pb::SyncMode::Reconcile as i32]);
        assert_converged(&src, "h1", &view);
        let bytes = again.down_bytes + again.up_bytes;
        println!(
            "reconnect after {changes} changes to {records} records: reconcile {bytes} bytes \
             ({} of them estimator and table) vs full snapshot {snapshot_bytes} bytes ({:.1}%)",
            again.agent.reconcile_bytes(),
            100.0 * bytes as f64 / snapshot_bytes as f64
        );
        assert!(
            bytes * 4 < snapshot_bytes,
            "reconcile {bytes} vs snapshot {snapshot_bytes}"
        );
    }
}

#[test]
fn reconcile_falls_back_to_a_snapshot_when_the_sets_differ_too_much() {
    let now = Instant::now();
    let src = MemoryViewSource::new(0, 4);
    fill(&src, "h1", 1000, 100);
    let mut view = LocalView::default();
    Link::open("h1", &view, now).pump(&src, &mut view, now, |_| {});
    for i in 0..750 {
        src.delete("h1", &format!("rec/{i:06}"));
    }
    src.forget_history();
    let mut again = Link::open("h1", &view, now);
    again.pump(&src, &mut view, now, |_| {});
    assert_eq!(again.modes, vec![pb::SyncMode::Reconcile as i32]);
    assert_converged(&src, "h1", &view);
    assert_eq!(view.records.len(), 250);
}

#[test]
fn changes_during_reconciliation_are_not_lost() {
    let now = Instant::now();
    let src = MemoryViewSource::new(0, 4);
    fill(&src, "h1", 500, 40);
    let mut view = LocalView::default();
    Link::open("h1", &view, now).pump(&src, &mut view, now, |_| {});
    src.put("h1", "rec/000001", b"changed".to_vec());
    src.forget_history();
    let mut again = Link::open("h1", &view, now);
    let mut n = 0;
    again.pump(&src, &mut view, now, |s| {
        // After each message the controller handles, the view moves on.
        // (Four times, so that the exchange ends.)
        if n < 4 {
            n += 1;
            s.put("h1", &format!("during/{n}"), vec![n as u8]);
        }
    });
    assert_converged(&src, "h1", &view);
    assert!(view.records.contains_key("during/2"));
}

#[test]
fn history_lost_while_live_triggers_reconciliation() {
    let now = Instant::now();
    let src = MemoryViewSource::new(0, 2);
    fill(&src, "h1", 300, 20);
    let mut view = LocalView::default();
    let mut link = Link::open("h1", &view, now);
    link.pump(&src, &mut view, now, |_| {});
    // More changes than the history holds before the session looks again.
    for i in 0..5 {
        src.put("h1", &format!("rec/{i:06}"), vec![9; 20]);
    }
    link.pump(&src, &mut view, now, |_| {});
    assert_converged(&src, "h1", &view);
    assert!(link.ctrl.is_live());
}

#[test]
fn random_schedules_always_converge() {
    let t0 = Instant::now();
    for seed in 0..40u64 {
        let mut rng = SplitMix64::new(seed);
        let src = MemoryViewSource::new(seed * 1000, 1 + (seed % 5) as usize);
        fill(&src, "h1", 100 + (seed as usize % 7) * 30, 16);
        let mut view = LocalView::default();
        let mut link = Link::open("h1", &view, t0);
        for step in 0..60 {
            let now = t0 + Duration::from_secs(step * 2);
            match rng.next() % 10 {
                0 => {
                    // Disconnect; maybe the controller restarts and loses its history.
                    if rng.next().is_multiple_of(2) {
                        src.forget_history();
                    }
                    link = Link::open("h1", &view, now);
                }
                1 => {
                    let key = format!("rec/{:06}", rng.next() % 300);
                    src.delete("h1", &key);
                }
                _ => {
                    let n = 1 + rng.next() % 5;
                    let upserts = (0..n)
                        .map(|_| {
                            Record::new(
                                format!("rec/{:06}", rng.next() % 300),
                                vec![rng.next() as u8; 16],
                            )
                        })
                        .collect();
                    src.apply(vec![HostChange {
                        host: "h1".into(),
                        upserts,
                        deletes: vec![],
                    }]);
                }
            }
            if !rng.next().is_multiple_of(3) {
                link.pump(&src, &mut view, now, |_| {});
            }
        }
        link.pump(&src, &mut view, t0 + Duration::from_secs(1000), |_| {});
        assert_converged(&src, "h1", &view);
    }
}
