//! The agent's tokio driver around the sans-IO [`AgentSession`].
//!
//! ```text
//!  start(): local store ─load─► view ─► backend.apply (rebuild without a controller)
//!  task:  loop over controllers ─dial (TLS)─► Session stream
//!           ├─ controller msg ─► AgentSession ─► Commit ─► store (fsync) ─► backend ─► Applied
//!           ├─ reports (mpsc from AgentHandle) ─► PortStatus / Bindings / Liveness / Counters
//!           └─ lost: keep the last view; sleep Backoff::next_delay(rng) and dial the next one
//! ```

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, error, info, warn};
use weft_proto as pb;
use weft_southbound::writes::PeerLiveness;
use weft_southbound::{
    AgentAction, AgentSession, Backoff, Binding, Commit, LocalView, PortState, SplitMix64,
};

use crate::Backend;
use crate::store::ViewStore;
use crate::tls::{DialOptions, Identity, client_config, dial, error_chain};

/// How the agent connects.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// Controller addresses (`host:port`), tried in turn.
    pub controllers: Vec<String>,
    /// First reconnect delay.
    pub backoff_initial: Duration,
    /// Longest reconnect delay.
    pub backoff_max: Duration,
    /// Seed of the reconnect jitter (give each agent its own).
    pub jitter_seed: u64,
    /// Connect and keepalive timeouts.
    pub dial: DialOptions,
    /// Largest message accepted from the controller.
    pub max_message: usize,
    /// Reports queued while the controller is unreachable.
    pub report_queue: usize,
    /// This host's VXLAN tunnel endpoint, announced to the controller.
    pub tunnel_address: Option<std::net::IpAddr>,
}

impl AgentOptions {
    /// Defaults for some controllers.
    pub fn new(controllers: Vec<String>) -> Self {
        AgentOptions {
            controllers,
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            jitter_seed: 0,
            dial: DialOptions::default(),
            max_message: 32 * 1024 * 1024,
            report_queue: 1024,
            tunnel_address: None,
        }
    }
}

/// What the agent is doing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentStatus {
    /// A session is open.
    pub connected: bool,
    /// The open session has brought the view up to date.
    pub synced: bool,
    /// The controller of the open session.
    pub controller: Option<String>,
    /// Revision of the view held (persisted and handed to the backend).
    pub revision: u64,
    /// Records in the view.
    pub records: usize,
    /// How the last session synced: `snapshot`, `resume` or `reconcile`.
    pub sync_mode: Option<&'static str>,
    /// Sessions that reached sync since start.
    pub sessions: u64,
    /// Connection attempts since start.
    pub attempts: u64,
    /// Requests the controller refused.
    pub refused: u64,
    /// Backend failures.
    pub backend_errors: u64,
    /// The last connection error.
    pub last_error: Option<String>,
}

/// Something the host reports about its own rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// Status of a port bound to this host.
    PortStatus {
        /// The port.
        port_id: String,
        /// Its state.
        state: PortState,
        /// Free text.
        detail: String,
    },
    /// Bindings learned on one of this host's ports.
    Bindings {
        /// The port.
        port_id: String,
        /// The bindings.
        bindings: Vec<Binding>,
    },
    /// Tunnel liveness towards peers.
    Liveness(Vec<PeerLiveness>),
    /// Counters.
    Counters(Vec<(String, u64)>),
}

impl Report {
    fn into_message(self, request_id: u64) -> pb::AgentMessage {
        use pb::agent_message::Body;
        let body = match self {
            Report::PortStatus {
                port_id,
                state,
                detail,
            } => Body::PortStatus(pb::PortStatus {
                request_id,
                host: String::new(),
                port_id,
                state: match state {
                    PortState::Up => pb::PortState::Up,
                    PortState::Down => pb::PortState::Down,
                    PortState::Error => pb::PortState::Error,
                } as i32,
                detail,
            }),
            Report::Bindings { port_id, bindings } => Body::LearnedBindings(pb::LearnedBindings {
                request_id,
                host: String::new(),
                port_id,
                bindings: bindings
                    .into_iter()
                    .map(|b| pb::Binding {
                        mac: b.mac.to_vec(),
                        ip: match b.ip {
                            std::net::IpAddr::V4(a) => a.octets().to_vec(),
                            std::net::IpAddr::V6(a) => a.octets().to_vec(),
                        },
                    })
                    .collect(),
            }),
            Report::Liveness(peers) => Body::Liveness(pb::LivenessReport {
                request_id,
                host: String::new(),
                peers: peers
                    .into_iter()
                    .map(|p| pb::PeerLiveness {
                        peer: p.peer,
                        up: p.up,
                        rtt_micros: p.rtt_micros,
                    })
                    .collect(),
            }),
            Report::Counters(c) => Body::Counters(pb::CounterReport {
                request_id,
                host: String::new(),
                counters: c
                    .into_iter()
                    .map(|(name, value)| pb::Counter { name, value })
                    .collect(),
            }),
        };
        pb::AgentMessage { body: Some(body) }
    }
}

/// A running agent.
pub struct AgentHandle {
    status: watch::Receiver<AgentStatus>,
    reports: mpsc::Sender<Report>,
    answers: broadcast::Sender<pb::Answer>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl AgentHandle {
    /// The current status.
    pub fn status(&self) -> AgentStatus {
        self.status.borrow().clone()
    }

    /// A receiver of status changes.
    pub fn watch_status(&self) -> watch::Receiver<AgentStatus> {
        self.status.clone()
    }

    /// Waits until the status satisfies `f`.
    pub async fn wait_for(&self, f: impl FnMut(&AgentStatus) -> bool) -> AgentStatus {
        let mut rx = self.status.clone();
        let s = rx
            .wait_for(f)
            .await
            .expect("agent status sender lives in the handle");
        s.clone()
    }

    /// Queues a report for the controller (sent when connected). Errors when the queue is
    /// full (the controller has been unreachable for long).
    pub fn report(&self, report: Report) -> Result<()> {
        self.reports
            .try_send(report)
            .map_err(|e| anyhow!("report not queued: {e}"))
    }

    /// The controller's answers to reports.
    pub fn answers(&self) -> broadcast::Receiver<pb::Answer> {
        self.answers.subscribe()
    }

    /// Stops the agent (the view stays on disk and in the backend).
    pub async fn shutdown(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
    }

    /// Stops the agent at once, as a crash would (the task is aborted mid-flight).
    pub async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// The view with what persists it and what executes it, moved in and out of blocking
/// threads as one piece.
struct Local {
    view: LocalView,
    store: Box<dyn ViewStore>,
    backend: Box<dyn Backend>,
    backend_errors: u64,
}

impl Local {
    /// Persists, then hands the backend the whole new view. A store failure leaves the view
    /// as it was (the session drops and the update comes again); a backend failure is
    /// logged and counted, and the next update hands it the whole view again.
    async fn commit(mut self, commit: Commit) -> (Local, Result<()>) {
        let r = tokio::task::spawn_blocking(move || {
            if let Err(e) = self.store.commit(&commit) {
                return (self, Err(e.context("persisting the view")));
            }
            self.view.apply(&commit);
            if let Err(e) = self.backend.apply(&self.view.records) {
                error!(error = %e, revision = self.view.revision, "backend refused the new view; keeping the previous program");
                self.backend_errors += 1;
            }
            (self, Ok(()))
        })
        .await;
        r.expect("commit task does not panic")
    }
}

/// Starts an agent: loads the persisted view and hands it to the backend (so that a host
/// restarted without a controller forwards as before), then connects.
pub async fn start(
    identity: Identity,
    opts: AgentOptions,
    mut store: Box<dyn ViewStore>,
    mut backend: Box<dyn Backend>,
) -> Result<AgentHandle> {
    anyhow::ensure!(
        !opts.controllers.is_empty(),
        "no controller address given: pass --controller HOST[:PORT]"
    );
    let tls = client_config(&identity)?;
    let (view, backend) = tokio::task::spawn_blocking(move || -> Result<_> {
        let view = store.load().context("loading the local view")?;
        if view.revision > 0 {
            backend
                .apply(&view.records)
                .context("rebuilding the backend from the local view")?;
            info!(
                revision = view.revision,
                records = view.records.len(),
                "rebuilt the dataplane from the local view"
            );
        }
        Ok((view, (store, backend)))
    })
    .await??;
    let (store, backend) = backend;
    let (status_tx, status) = watch::channel(AgentStatus {
        revision: view.revision,
        records: view.records.len(),
        ..AgentStatus::default()
    });
    let (reports, reports_rx) = mpsc::channel(opts.report_queue);
    let (answers, _) = broadcast::channel(256);
    let (stop, stop_rx) = watch::channel(false);
    let local = Local {
        view,
        store,
        backend,
        backend_errors: 0,
    };
    let task = tokio::spawn(run(
        identity,
        opts,
        tls,
        local,
        status_tx,
        reports_rx,
        answers.clone(),
        stop_rx,
    ));
    Ok(AgentHandle {
        status,
        reports,
        answers,
        stop,
        task,
    })
}

enum Ended {
    Stopped,
    Lost(anyhow::Error),
}

#[allow(clippy::too_many_arguments)]
async fn run(
    identity: Identity,
    opts: AgentOptions,
    tls: Arc<rustls::ClientConfig>,
    mut local: Local,
    status: watch::Sender<AgentStatus>,
    mut reports: mpsc::Receiver<Report>,
    answers: broadcast::Sender<pb::Answer>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(opts.backoff_initial, opts.backoff_max);
    let mut rng = SplitMix64::new(opts.jitter_seed);
    let mut next_request = 1u64;
    for attempt in 0u64.. {
        let addr = &opts.controllers[(attempt % opts.controllers.len() as u64) as usize];
        status.send_modify(|s| s.attempts += 1);
        let mut synced = false;
        let ended = session(
            &identity,
            &opts,
            addr,
            tls.clone(),
            &mut local,
            &status,
            &mut reports,
            &answers,
            &mut stop,
            &mut next_request,
            &mut synced,
        )
        .await;
        if synced {
            backoff.reset();
        }
        status.send_modify(|s| {
            s.connected = false;
            s.synced = false;
            s.controller = None;
        });
        match ended {
            Ended::Stopped => return,
            Ended::Lost(e) => {
                let delay = backoff.next_delay(rng.next());
                let msg = error_chain(e.as_ref());
                warn!(host = %identity.host, controller = %addr, error = %msg, retry_in = ?delay, "controller session lost; forwarding with the last view");
                status.send_modify(|s| s.last_error = Some(msg));
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = stopped(&mut stop) => return,
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn session(
    identity: &Identity,
    opts: &AgentOptions,
    addr: &str,
    tls: Arc<rustls::ClientConfig>,
    local_slot: &mut Local,
    status: &watch::Sender<AgentStatus>,
    reports: &mut mpsc::Receiver<Report>,
    answers: &broadcast::Sender<pb::Answer>,
    stop: &mut watch::Receiver<bool>,
    next_request: &mut u64,
    synced: &mut bool,
) -> Ended {
    let channel = tokio::select! {
        c = dial(addr, tls, opts.dial) => match c {
            Ok(c) => c,
            Err(e) => return Ended::Lost(e),
        },
        _ = stopped(stop) => return Ended::Stopped,
    };
    let mut client = pb::southbound_client::SouthboundClient::new(channel)
        .max_decoding_message_size(opts.max_message)
        .max_encoding_message_size(1024 * 1024);
    let (tx, rx) = mpsc::channel::<pb::AgentMessage>(64);
    let mut sess = AgentSession::new(
        identity.host.clone(),
        concat!("weft-agent ", env!("CARGO_PKG_VERSION")),
    )
    .with_tunnel_address(opts.tunnel_address);
    let _ = tx.send(sess.hello(&local_slot.view)).await;
    let mut inbound = tokio::select! {
        r = client.session(ReceiverStream::new(rx)) => match r {
            Ok(r) => r.into_inner(),
            Err(s) => return Ended::Lost(anyhow!("controller refused the session: {}", s.message())),
        },
        _ = stopped(stop) => return Ended::Stopped,
    };
    status.send_modify(|s| {
        s.connected = true;
        s.controller = Some(addr.to_string());
    });
    debug!(host = %identity.host, controller = %addr, "session open");
    loop {
        tokio::select! {
            m = inbound.message() => {
                let m = match m {
                    Ok(Some(m)) => m,
                    Ok(None) => return Ended::Lost(anyhow!("the controller ended the session")),
                    Err(s) => return Ended::Lost(anyhow!("session: {} ({:?})", s.message(), s.code())),
                };
                let actions = match sess.handle(m, &local_slot.view) {
                    Ok(a) => a,
                    Err(e) => return Ended::Lost(e.into()),
                };
                for a in actions {
                    match a {
                        AgentAction::Send(m) => {
                            if tx.send(m).await.is_err() {
                                return Ended::Lost(anyhow!("session stream closed"));
                            }
                        }
                        AgentAction::Commit(c) => {
                            // Move the view out for the blocking commit and back in.
                            let placeholder = Local {
                                view: LocalView::default(),
                                store: Box::new(crate::store::MemoryViewStore::default()),
                                backend: Box::new(crate::NullBackend),
                                backend_errors: 0,
                            };
                            let taken = std::mem::replace(local_slot, placeholder);
                            let (back, r) = taken.commit(c).await;
                            *local_slot = back;
                            let (rev, n, be) = (local_slot.view.revision, local_slot.view.records.len(), local_slot.backend_errors);
                            status.send_modify(|s| {
                                s.revision = rev;
                                s.records = n;
                                s.backend_errors = be;
                            });
                            if let Err(e) = r {
                                return Ended::Lost(e);
                            }
                        }
                        AgentAction::Synced => {
                            *synced = true;
                            let mode = sess.sync_mode().map(|m| match m {
                                pb::SyncMode::Snapshot => "snapshot",
                                pb::SyncMode::Resume => "resume",
                                pb::SyncMode::Reconcile => "reconcile",
                                pb::SyncMode::Unspecified => "unspecified",
                            });
                            status.send_modify(|s| {
                                s.sync_mode = mode;
                                s.synced = true;
                                s.sessions += 1;
                                s.last_error = None;
                            });
                            info!(host = %identity.host, controller = %addr, revision = local_slot.view.revision, "view in sync");
                        }
                        AgentAction::Answer(a) => {
                            if a.code != pb::AnswerCode::Ok as i32 {
                                warn!(host = %identity.host, request = a.request_id, reason = %a.message, "controller refused a request");
                                status.send_modify(|s| s.refused += 1);
                            }
                            let _ = answers.send(a);
                        }
                    }
                }
            }
            r = reports.recv(), if *synced => {
                let Some(r) = r else { continue };
                let id = *next_request;
                *next_request += 1;
                if tx.send(r.into_message(id)).await.is_err() {
                    return Ended::Lost(anyhow!("session stream closed"));
                }
            }
            _ = stopped(stop) => return Ended::Stopped,
        }
    }
}

/// Waits until `stop` flips (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
