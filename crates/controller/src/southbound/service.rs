//! The gRPC service: enrolment, and one driver task per host session around the sans-IO
//! [`ControllerSession`].
//!
//! ```text
//!  agent stream ──► driver task ──handle_message──► ControllerSession ──Actions──┐
//!  ViewSource::subscribe_host ──changed──► handle_view_changed                  │
//!  deadline ──────────────────────────► handle_timeout                          │
//!        ◄── mpsc (bounded) ◄── Send / Answer ◄── writes::apply ◄───────────────┘
//! ```

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, error, info, warn};
use weft_proto as pb;
use weft_southbound::{Action, ControllerSession, SessionError};

use super::Shared;
use super::hosts::EnrollError;
use super::tls::ConnInfo;
use super::writes;

/// Seconds since the Unix epoch.
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The tonic service.
#[derive(Clone)]
pub struct Service {
    pub(super) shared: Arc<Shared>,
}

#[tonic::async_trait]
impl pb::southbound_server::Southbound for Service {
    async fn enroll(
        &self,
        request: Request<pb::EnrollRequest>,
    ) -> Result<Response<pb::EnrollResponse>, Status> {
        let remote = request.extensions().get::<ConnInfo>().map(|c| c.remote);
        let r = request.into_inner();
        let shared = &self.shared;
        match shared
            .registry
            .enroll(
                &shared.ca,
                &r.token,
                &r.host_name,
                &r.csr_der,
                shared.cfg.host_cert_validity,
                now_unix(),
            )
            .await
        {
            Ok(issued) => Ok(Response::new(pb::EnrollResponse {
                host_name: r.host_name,
                certificate_pem: issued.pem,
                ca_certificate_pem: shared.ca.cert_pem().to_string(),
                not_after_unix: issued.not_after,
            })),
            Err(EnrollError::Invalid(m)) => {
                warn!(?remote, host = %r.host_name, reason = %m, "refused enrolment");
                Err(Status::invalid_argument(m))
            }
            Err(EnrollError::Refused(m)) => {
                warn!(?remote, host = %r.host_name, reason = %m, "refused enrolment");
                Err(Status::permission_denied(m))
            }
            Err(EnrollError::Internal(e)) => {
                error!(?remote, host = %r.host_name, error = %e, "enrolment failed");
                Err(Status::unavailable(format!(
                    "enrolment failed: {e}; retry later"
                )))
            }
        }
    }

    type SessionStream = Outgoing;

    async fn session(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let info = request.extensions().get::<ConnInfo>().cloned();
        let Some(ConnInfo {
            remote,
            host: Some(host),
            serial: Some(serial),
            ..
        }) = info
        else {
            let remote = info.map(|i| i.remote);
            warn!(
                ?remote,
                "refused session: no client certificate (enrol first)"
            );
            return Err(Status::unauthenticated(
                "a session needs a client certificate issued by this controller: run `weft host enroll` first",
            ));
        };
        if self
            .shared
            .store_lost
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(Status::unavailable(
                "this controller cannot reach its store, so its views are stale: connect to another replica",
            ));
        }
        if let Err(reason) = self.shared.registry.check_cert(&host, &serial) {
            warn!(%host, %remote, %reason, "refused session");
            self.shared.registry.refused(&host);
            return Err(Status::permission_denied(reason));
        }
        let (tx, rx) = mpsc::channel(self.shared.cfg.session_queue);
        let shared = self.shared.clone();
        let incoming = request.into_inner();
        if let Err(reason) = shared.registry.session_started(
            &host,
            Some(remote),
            now_unix(),
            shared.cfg.max_sessions_per_host,
        ) {
            warn!(%host, %remote, %reason, "refused session");
            shared.registry.refused(&host);
            return Err(Status::resource_exhausted(reason));
        }
        tokio::spawn(async move {
            drive(shared.clone(), host.clone(), incoming, tx).await;
            shared.registry.session_ended(&host, now_unix()).await;
        });
        Ok(Response::new(Outgoing(rx)))
    }
}

/// What the driver queues towards the agent. The error is boxed: the queue allocates its
/// slots in blocks of 32 whatever its bound, and a bare `Status` would make each slot (and
/// every idle host's queue) several times larger.
pub enum Out {
    /// A message.
    Msg(pb::ControllerMessage),
    /// The status that ends the session.
    End(Box<Status>),
}

type Tx = mpsc::Sender<Out>;

/// The response stream of a session.
pub struct Outgoing(mpsc::Receiver<Out>);

impl futures::Stream for Outgoing {
    type Item = Result<pb::ControllerMessage, Status>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|o| {
            o.map(|o| match o {
                Out::Msg(m) => Ok(m),
                Out::End(s) => Err(*s),
            })
        })
    }
}

/// Carries out a session's actions; false when the agent is gone.
async fn perform(shared: &Shared, host: &str, tx: &Tx, actions: Vec<Action>) -> bool {
    for action in actions {
        match action {
            Action::Send(m) => {
                if tx.send(Out::Msg(m)).await.is_err() {
                    return false;
                }
            }
            Action::Write { request_id, write } => {
                let kind = write.kind();
                let answer = match writes::apply(
                    shared.sink.as_ref(),
                    &shared.registry,
                    &shared.bindings,
                    host,
                    write,
                    Instant::now(),
                )
                .await
                {
                    Ok(()) => pb::Answer {
                        request_id,
                        code: pb::AnswerCode::Ok as i32,
                        message: String::new(),
                    },
                    Err(refusal) => {
                        warn!(host, write = kind, reason = %refusal, "refused host write");
                        shared.registry.refused(host);
                        refusal.answer(request_id)
                    }
                };
                let m = pb::ControllerMessage {
                    body: Some(pb::controller_message::Body::Answer(answer)),
                };
                if tx.send(Out::Msg(m)).await.is_err() {
                    return false;
                }
            }
            Action::Refused(refusal) => {
                warn!(host, reason = %refusal, "refused host request");
                shared.registry.refused(host);
            }
        }
    }
    true
}

fn end_status(e: &SessionError) -> Status {
    match e {
        SessionError::Refused { .. } => Status::permission_denied(e.to_string()),
        SessionError::Protocol { .. } => Status::invalid_argument(e.to_string()),
        SessionError::Timeout { .. } => Status::deadline_exceeded(e.to_string()),
    }
}

async fn drive(
    shared: Arc<Shared>,
    host: String,
    mut incoming: Streaming<pb::AgentMessage>,
    tx: Tx,
) {
    let mut changes = shared.view.subscribe_host(&host);
    let mut session =
        ControllerSession::new(host.clone(), shared.cfg.session.clone(), Instant::now());
    let view = shared.view.clone();
    debug!(%host, "session opened");
    let end: Option<SessionError> = loop {
        let deadline = session.poll_timeout();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                None => std::future::pending().await,
            }
        };
        let actions = tokio::select! {
            m = incoming.message() => match m {
                Ok(Some(m)) => {
                    // A host's own row: where its tunnel ends. Checked to be a
                    // unicast address; identity comes from the certificate.
                    if let Some(pb::agent_message::Body::Hello(h)) = &m.body
                        && !h.tunnel_address.is_empty()
                    {
                        match h.tunnel_address.parse::<std::net::IpAddr>() {
                            Ok(ip) if !ip.is_unspecified() && !ip.is_multicast() => {
                                shared.sink.host_tunnel(&host, ip).await;
                            }
                            _ => {
                                warn!(%host, address = %h.tunnel_address, "refused tunnel address");
                                shared.registry.refused(&host);
                            }
                        }
                    }
                    let r = session.handle_message(m, view.as_ref(), Instant::now());
                    shared.registry.touch(&host, now_unix(), session.applied_revision());
                    match r {
                        Ok(a) => a,
                        Err(e) => break Some(e),
                    }
                }
                Ok(None) => break None,
                Err(status) => {
                    // Oversized or undecodable messages land here; so do broken connections.
                    if matches!(status.code(), tonic::Code::OutOfRange | tonic::Code::ResourceExhausted | tonic::Code::Internal | tonic::Code::InvalidArgument) {
                        warn!(%host, error = %status, "refused host message; closing the session");
                        shared.registry.refused(&host);
                    } else {
                        debug!(%host, error = %status, "session stream ended");
                    }
                    break None;
                }
            },
            r = changes.changed() => {
                if r.is_err() {
                    break None;
                }
                session.handle_view_changed(view.as_ref(), Instant::now())
            }
            _ = sleep => match session.handle_timeout(Instant::now()) {
                Ok(()) => Vec::new(),
                Err(e) => break Some(e),
            },
            _ = tx.closed() => break None,
        };
        if !perform(&shared, &host, &tx, actions).await {
            break None;
        }
    };
    if let Some(e) = end {
        warn!(%host, error = %e, "closing host session");
        shared.registry.refused(&host);
        let _ = tx.send(Out::End(Box::new(end_status(&e)))).await;
    }
    info!(%host, applied = session.applied_revision(), "session closed");
}
