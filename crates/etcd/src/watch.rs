//! Watch streams: one etcd watch per [`Store::watch`](weft_store::Store::watch), pumped
//! into a bounded channel by its own task, resumed on another endpoint when its
//! connection breaks.
//!
//! ```text
//!  etcd Watch stream ── pump task ── group events by revision ──► mpsc ──► WatchStream
//!        ▲                 │ stream broken / member lost its leader
//!        └── re-create ◄───┘ on the next endpoint, from the next undelivered revision
//! ```
//!
//! etcd cuts watch responses at revision boundaries (fragmenting is not requested), so
//! the events of one response, grouped by `mod_revision`, are whole transactions.
//!
//! Compaction: etcd compacted at `c` keeps the puts made at `c` but not the deletes
//! (their tombstones go with the compaction), so only history *after* `c` is whole.
//! [`EtcdStore::compact`](crate::EtcdStore::compact)`(r)` therefore compacts etcd at
//! `r - 1`, and a watch from `r` asks etcd for `r - 1` and drops that revision: etcd
//! then reports compaction exactly when revision `r` is no longer whole, and the
//! [`StoreError::Compacted`] it yields names `c + 1` as the oldest revision kept.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use weft_store::{Event, Revision, StoreError, WatchBatch, WatchStream};

use crate::client::{Conn, Current, Failure, answer_error, classify, error_chain, request};
use crate::pb::etcdserverpb::watch_client::WatchClient;
use crate::pb::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse, watch_request};
use crate::pb::mvccpb;
use crate::store::{etcd_revision, key_string, key_value, revision};

/// Batches buffered between the pump and a slow reader; beyond this the pump stops
/// reading and etcd holds the rest (it never drops events for a slow watcher).
const CAPACITY: usize = 64;

/// Starts a watch of `[key, range_end)` from `from` (0 means 1). Returns once etcd
/// has created the watch, so that failures to reach etcd surface here.
pub(crate) async fn watch(
    conn: Arc<Conn>,
    key: Vec<u8>,
    range_end: Vec<u8>,
    from: Revision,
) -> Result<WatchStream, StoreError> {
    let from = from.max(1);
    let retry_for = conn.options.retry_for;
    let opened = open(&conn, &key, &range_end, from, retry_for).await?;
    let (tx, rx) = mpsc::channel(CAPACITY);
    let pump = Pump {
        conn,
        key,
        range_end,
        next: from,
        tx,
    };
    tokio::spawn(pump.run(opened));
    Ok(ReceiverStream::new(rx).boxed())
}

/// A created etcd watch.
struct Opened {
    current: Current,
    responses: tonic::Streaming<WatchResponse>,
    /// Keeps the request side of the gRPC stream open.
    _requests: mpsc::Sender<WatchRequest>,
}

enum OpenError {
    /// The endpoint failed; another may do.
    Endpoint(Current, String),
    /// A final answer: compacted history, refused request, no endpoint at all.
    Final(StoreError),
}

/// Creates the watch on the endpoint in use, once.
async fn open_once(
    conn: &Conn,
    key: &[u8],
    range_end: &[u8],
    start: Revision,
) -> Result<Opened, OpenError> {
    let current = conn.current().await.map_err(OpenError::Final)?;
    let create = WatchCreateRequest {
        key: key.to_vec(),
        range_end: range_end.to_vec(),
        start_revision: etcd_revision(etcd_start(start)).map_err(OpenError::Final)?,
        // Progress notifications move the resume point forward while nothing under
        // the prefix changes, so a resumed watch does not ask for compacted history.
        progress_notify: true,
        ..Default::default()
    };
    let (req_tx, req_rx) = mpsc::channel(1);
    req_tx
        .try_send(WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
        })
        .expect("a fresh channel of capacity 1 has room");
    let call = async {
        let mut client = WatchClient::new(current.channel.clone());
        let mut responses = client
            .watch(request(ReceiverStream::new(req_rx)))
            .await?
            .into_inner();
        let first = responses.message().await?;
        Ok::<_, tonic::Status>((responses, first))
    };
    let timeout = conn.options.request_timeout;
    let (responses, first) = match tokio::time::timeout(timeout, call).await {
        Err(_) => {
            return Err(OpenError::Endpoint(
                current,
                format!("watch not created within {timeout:?}"),
            ));
        }
        Ok(Err(status)) => {
            return Err(match classify(status) {
                Failure::Answer(status) => OpenError::Final(answer_error("the watch", status)),
                Failure::NotSent(why) | Failure::Ambiguous(why) => {
                    OpenError::Endpoint(current, why)
                }
            });
        }
        Ok(Ok((_, None))) => {
            return Err(OpenError::Endpoint(
                current,
                "the watch stream ended before etcd created the watch".into(),
            ));
        }
        Ok(Ok((responses, Some(first)))) => (responses, first),
    };
    if first.compact_revision > 0 {
        return Err(OpenError::Final(compacted(start, first.compact_revision)));
    }
    if !first.created || first.canceled {
        return Err(OpenError::Endpoint(
            current,
            format!("etcd did not create the watch: {:?}", first.cancel_reason),
        ));
    }
    Ok(Opened {
        current,
        responses,
        _requests: req_tx,
    })
}

/// Creates the watch on any endpoint, trying for `retry_for`.
async fn open(
    conn: &Conn,
    key: &[u8],
    range_end: &[u8],
    start: Revision,
    retry_for: Duration,
) -> Result<Opened, StoreError> {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(25);
    loop {
        let why = match open_once(conn, key, range_end, start).await {
            Ok(opened) => return Ok(opened),
            Err(OpenError::Final(StoreError::Unavailable(why))) => why,
            Err(OpenError::Final(err)) => return Err(err),
            Err(OpenError::Endpoint(current, why)) => {
                conn.failed(&current, &why).await;
                format!("{}: {why}", conn.url(current.index))
            }
        };
        if started.elapsed() + backoff > retry_for {
            return Err(StoreError::Unavailable(format!(
                "cannot watch from revision {start} on any etcd endpoint for {:?} (last: {why})",
                started.elapsed()
            )));
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(500));
    }
}

/// The etcd revision to watch from for store revision `from`: one earlier, so that
/// etcd reports a compaction at `from` itself (see the module docs). etcd has no
/// transaction at revision 1, so a watch from 1 starts there.
fn etcd_start(from: Revision) -> Revision {
    from.saturating_sub(1).max(1)
}

/// The store's error for etcd's "compacted at `compact_revision`".
fn compacted(requested: Revision, compact_revision: i64) -> StoreError {
    StoreError::Compacted {
        requested,
        compacted: revision(compact_revision) + 1,
    }
}

/// Groups a response's events into one batch per revision, in order.
fn batches(events: Vec<mvccpb::Event>) -> Result<Vec<WatchBatch>, StoreError> {
    use mvccpb::event::EventType;
    let mut out: Vec<WatchBatch> = Vec::new();
    for event in events {
        let kv = event.kv.unwrap_or_default();
        let rev = revision(kv.mod_revision);
        let event = match EventType::try_from(event.r#type) {
            Ok(EventType::Put) => Event::Put(key_value(kv)?),
            Ok(EventType::Delete) => Event::Delete {
                key: key_string(kv.key)?,
                mod_revision: rev,
            },
            Err(_) => {
                return Err(StoreError::Corrupt(format!(
                    "etcd sent a watch event of unknown type {} at revision {rev}",
                    event.r#type
                )));
            }
        };
        match out.last_mut() {
            Some(batch) if batch.revision == rev => batch.events.push(event),
            _ => out.push(WatchBatch {
                revision: rev,
                events: vec![event],
            }),
        }
    }
    Ok(out)
}

struct Pump {
    conn: Arc<Conn>,
    key: Vec<u8>,
    range_end: Vec<u8>,
    /// The first revision not delivered yet.
    next: Revision,
    tx: mpsc::Sender<Result<WatchBatch, StoreError>>,
}

impl Pump {
    async fn run(mut self, mut opened: Opened) {
        loop {
            let message = tokio::select! {
                biased;
                () = self.tx.closed() => return,
                message = opened.responses.message() => message,
            };
            let broken = match message {
                Ok(Some(resp)) => match self.deliver(resp).await {
                    Ok(None) => continue,
                    Ok(Some(why)) => why,
                    // The reader left or the stream ended with an error it was given.
                    Err(()) => return,
                },
                Ok(None) => "etcd ended the watch stream".to_owned(),
                Err(status) => error_chain(&status),
            };
            self.conn.failed(&opened.current, &broken).await;
            tracing::info!(from = self.next, why = %broken, "etcd watch broken, resuming");
            let retry_for = self.conn.options.watch_retry_for;
            let reopened = tokio::select! {
                biased;
                () = self.tx.closed() => return,
                r = open(&self.conn, &self.key, &self.range_end, self.next, retry_for) => r,
            };
            match reopened {
                Ok(o) => opened = o,
                Err(err) => {
                    let _ = self.tx.send(Err(err)).await;
                    return;
                }
            }
        }
    }

    /// Hands one response's batches to the reader. `Ok(Some(why))`: the watch must be
    /// re-created; `Err(())`: the stream is over.
    async fn deliver(&mut self, resp: WatchResponse) -> Result<Option<String>, ()> {
        if resp.compact_revision > 0 {
            let _ = self
                .tx
                .send(Err(compacted(self.next, resp.compact_revision)))
                .await;
            return Err(());
        }
        if resp.canceled {
            return Ok(Some(format!(
                "etcd canceled the watch: {}",
                resp.cancel_reason
            )));
        }
        if resp.events.is_empty() {
            // A progress notification: every change up to its revision was delivered.
            if !resp.created
                && let Some(header) = resp.header
            {
                self.next = self.next.max(revision(header.revision) + 1);
            }
            return Ok(None);
        }
        let batches = match batches(resp.events) {
            Ok(b) => b,
            Err(err) => {
                let _ = self.tx.send(Err(err)).await;
                return Err(());
            }
        };
        for batch in batches {
            // A resumed watch starts at `next`; anything older was delivered already.
            if batch.revision < self.next {
                continue;
            }
            let rev = batch.revision;
            self.tx.send(Ok(batch)).await.map_err(|_| ())?;
            self.next = rev + 1;
        }
        Ok(None)
    }
}
