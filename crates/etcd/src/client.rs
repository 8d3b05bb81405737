//! The connection to etcd: one gRPC channel to the endpoint in use, failover to the
//! next endpoint when it fails, and the retry rules for unary calls.
//!
//! Retry rules (after etcd's own clientv3): reads are retried on any endpoint trouble;
//! writes only when the request provably never reached a server (the connection could
//! not be made, or etcd refused it up front because the member has no leader). Any other
//! failure of a write is reported as unavailable with an unknown outcome, because
//! repeating it could apply it twice.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Mutex;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use weft_store::StoreError;

use crate::store::EtcdOptions;

/// etcd's metadata key asking a member to refuse requests while it has no leader, so
/// that a member cut off from the others fails fast instead of timing out.
const REQUIRE_LEADER_KEY: &str = "hasleader";

/// Builds a request with the require-leader metadata set.
pub(crate) fn request<T>(message: T) -> tonic::Request<T> {
    let mut req = tonic::Request::new(message);
    req.metadata_mut().insert(
        REQUIRE_LEADER_KEY,
        tonic::metadata::MetadataValue::from_static("true"),
    );
    req
}

/// Whether a call may be repeated after an ambiguous failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Reads and other calls that do no harm when repeated.
    Idempotent,
    /// Writes: repeated only when they provably never reached a server.
    Mutation,
}

/// The channel in use and which endpoint it goes to.
#[derive(Clone)]
pub(crate) struct Current {
    pub(crate) channel: Channel,
    pub(crate) index: usize,
    generation: u64,
}

struct State {
    /// The endpoint to dial first when no channel is up.
    next: usize,
    current: Option<Current>,
    generation: u64,
}

/// A failover connection to a list of etcd endpoints.
pub(crate) struct Conn {
    endpoints: Vec<(String, Endpoint)>,
    pub(crate) options: EtcdOptions,
    state: Mutex<State>,
    /// Connections made so far (the first one and every reconnection).
    connects: AtomicU64,
}

/// How a failed call is classified.
pub(crate) enum Failure {
    /// etcd answered with an error: the caller maps it.
    Answer(Status),
    /// The endpoint failed before the request reached a server: safe to repeat anywhere.
    NotSent(String),
    /// The endpoint failed and the request may or may not have been applied.
    Ambiguous(String),
}

impl Conn {
    pub(crate) fn new(urls: Vec<String>, options: EtcdOptions) -> Result<Self, StoreError> {
        let mut endpoints = Vec::with_capacity(urls.len());
        for url in urls {
            let endpoint = Endpoint::from_shared(url.clone())
                .map_err(|e| StoreError::Invalid(format!("etcd endpoint {url:?}: {e}")))?
                .connect_timeout(options.connect_timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(options.keep_alive_interval)
                .keep_alive_timeout(options.keep_alive_timeout)
                // etcd closes connections that ping while no stream is open, or more
                // often than its --grpc-keepalive-min-time (5 s by default), and a
                // write in flight then has an unknown outcome.
                .keep_alive_while_idle(false);
            endpoints.push((url, endpoint));
        }
        Ok(Self {
            endpoints,
            options,
            state: Mutex::new(State {
                next: 0,
                current: None,
                generation: 0,
            }),
            connects: AtomicU64::new(0),
        })
    }

    pub(crate) fn urls(&self) -> impl Iterator<Item = &str> {
        self.endpoints.iter().map(|(url, _)| url.as_str())
    }

    pub(crate) fn connects(&self) -> u64 {
        self.connects.load(Ordering::Relaxed)
    }

    pub(crate) fn url(&self, index: usize) -> &str {
        &self.endpoints[index].0
    }

    /// The endpoint in use, if a channel is up.
    pub(crate) async fn in_use(&self) -> Option<String> {
        let state = self.state.lock().await;
        state
            .current
            .as_ref()
            .map(|c| self.endpoints[c.index].0.clone())
    }

    /// The channel in use, dialling the endpoints in turn (starting after the last one
    /// that failed) when none is up.
    pub(crate) async fn current(&self) -> Result<Current, StoreError> {
        let mut state = self.state.lock().await;
        if let Some(current) = &state.current {
            return Ok(current.clone());
        }
        let n = self.endpoints.len();
        let mut errors = Vec::new();
        for i in 0..n {
            let index = (state.next + i) % n;
            let (url, endpoint) = &self.endpoints[index];
            match endpoint.connect().await {
                Ok(channel) => {
                    self.connects.fetch_add(1, Ordering::Relaxed);
                    state.generation += 1;
                    state.next = index;
                    let current = Current {
                        channel,
                        index,
                        generation: state.generation,
                    };
                    state.current = Some(current.clone());
                    tracing::debug!(endpoint = %url, "connected to etcd");
                    return Ok(current);
                }
                Err(e) => errors.push(format!("{url}: {}", error_chain(&e))),
            }
        }
        Err(StoreError::Unavailable(format!(
            "no etcd endpoint reachable ({}): check that etcd runs and that the endpoints are right",
            errors.join("; ")
        )))
    }

    /// Drops the channel `failed` if it is still the one in use, so that the next call
    /// dials the next endpoint.
    pub(crate) async fn failed(&self, failed: &Current, why: &str) {
        let mut state = self.state.lock().await;
        if state
            .current
            .as_ref()
            .is_some_and(|c| c.generation == failed.generation)
        {
            tracing::info!(endpoint = %self.endpoints[failed.index].0, %why, "etcd endpoint failed, switching");
            state.current = None;
            state.next = (failed.index + 1) % self.endpoints.len();
        }
    }

    /// Runs a unary call with failover. The outer error is the store's trouble (no
    /// endpoint, unknown outcome); the inner `Err(Status)` is etcd's answer, for the
    /// caller to map.
    pub(crate) async fn unary<T, F, Fut>(
        &self,
        what: &str,
        retry: Retry,
        mut call: F,
    ) -> Result<Result<T, Status>, StoreError>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let started = Instant::now();
        let mut backoff = Duration::from_millis(25);
        loop {
            let current = match self.current().await {
                Ok(current) => current,
                Err(err) if started.elapsed() + backoff > self.options.retry_for => {
                    return Err(err);
                }
                Err(_) => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                    continue;
                }
            };
            let url = self.url(current.index);
            let outcome =
                tokio::time::timeout(self.options.request_timeout, call(current.channel.clone()))
                    .await;
            let failure = match outcome {
                Ok(Ok(response)) => return Ok(Ok(response.into_inner())),
                Ok(Err(status)) => classify(status),
                Err(_) => Failure::Ambiguous(format!(
                    "no answer within {:?}",
                    self.options.request_timeout
                )),
            };
            let (why, repeatable) = match failure {
                Failure::Answer(status) => return Ok(Err(status)),
                Failure::NotSent(why) => (why, true),
                Failure::Ambiguous(why) => (why, retry == Retry::Idempotent),
            };
            self.failed(&current, &why).await;
            if !repeatable {
                return Err(StoreError::Unavailable(format!(
                    "{what} on etcd {url} failed ({why}); it may or may not have been applied: read the keys back before repeating it"
                )));
            }
            if started.elapsed() + backoff > self.options.retry_for {
                return Err(StoreError::Unavailable(format!(
                    "{what} failed on every etcd endpoint for {:?} (last: {url}: {why}); check the etcd cluster's health",
                    started.elapsed()
                )));
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }
}

/// Sorts a failed call into etcd's answer, "never sent" and "unknown outcome".
pub(crate) fn classify(status: Status) -> Failure {
    let message = status.message().to_owned();
    match status.code() {
        Code::Unavailable if never_connected(&status) => {
            Failure::NotSent(format!("cannot connect: {}", error_chain(&status)))
        }
        // Refused by the require-leader check before the request is processed.
        Code::Unavailable if message == "etcdserver: no leader" => Failure::NotSent(message),
        // Refused before it is proposed: the cluster is behind on applying entries.
        Code::ResourceExhausted if message == "etcdserver: too many requests" => {
            Failure::NotSent(message)
        }
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Cancelled
        | Code::Unknown
        | Code::Internal
        | Code::Aborted => {
            Failure::Ambiguous(format!("{:?}: {}", status.code(), error_chain(&status)))
        }
        _ => Failure::Answer(status),
    }
}

/// Whether the call failed while connecting, so nothing was sent.
fn never_connected(status: &Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(status);
    while let Some(err) = source {
        if err.is::<tonic::ConnectError>() {
            return true;
        }
        source = err.source();
    }
    false
}

/// An error and its sources, on one line.
pub(crate) fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        let part = inner.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = inner.source();
    }
    text
}

/// Maps etcd's answer to a store error, for the answers a caller does not handle itself.
pub(crate) fn answer_error(what: &str, status: Status) -> StoreError {
    let message = status.message();
    match status.code() {
        Code::InvalidArgument => StoreError::Invalid(format!("etcd refused {what}: {message}")),
        // etcd's only NotFound is an unknown lease.
        Code::NotFound => StoreError::Invalid(format!(
            "etcd refused {what}: {message} (the lease expired or was revoked: grant a new one)"
        )),
        Code::ResourceExhausted => StoreError::Unavailable(format!(
            "etcd refused {what}: {message} (if the database is full, compact and defragment it, or raise --quota-backend-bytes)"
        )),
        Code::Unauthenticated | Code::PermissionDenied => StoreError::Unavailable(format!(
            "etcd refused {what}: {message} (weft-etcd does not authenticate: disable etcd auth for Weft's endpoint)"
        )),
        _ => StoreError::Unavailable(format!(
            "etcd refused {what}: {:?}: {message}",
            status.code()
        )),
    }
}
