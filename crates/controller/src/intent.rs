//! The intent service: the single writer of intent, with group commit.
//!
//! ```text
//!  API handlers ──submit(Command)──► mpsc ──► writer task
//!                                             │ drain a batch
//!                                             │ apply each to Intent (validate)
//!                                             │ one store Txn for the batch
//!                                             │   (compare meta/intent-seq)
//!                                             │ stamp revisions, answer callers
//!                                             ▼
//!                                  broadcast<ChangeBatch> ──► compiler, views
//! ```
//!
//! Validation runs against the in-memory [`Intent`], in submission order,
//! so two requests in one batch see each other. The whole batch is one
//! durable store transaction; if it fails, every command of the batch is
//! undone and its caller gets the error. Readers take a short read lock on
//! the shared `Intent` and clone what they return.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::{debug, info, warn};
use weft_model::{Applied, Change, Command, IdSource, Intent, Kind, ModelError, Object};
use weft_store::{Revision, Store, StoreError, Txn, TxnOutcome};

use crate::keys;

/// Commands drained into one store transaction at most.
const MAX_BATCH: usize = 512;

/// All the intent changes committed by one store transaction.
#[derive(Clone, Debug)]
pub struct ChangeBatch {
    /// The store revision of the transaction.
    pub revision: Revision,
    /// The objects written or removed, in order, with revisions stamped.
    pub changes: Vec<Change>,
}

/// Why a submitted command did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The model refused it; nothing changed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The store could not commit it; nothing changed.
    #[error("the intent store could not commit the change: {0}")]
    Store(#[from] StoreError),
    /// The writer is gone (the controller is shutting down).
    #[error("the controller is shutting down")]
    Closed,
}

struct Request {
    cmd: Command,
    reply: oneshot::Sender<Result<Option<Object>, SubmitError>>,
}

/// Random UUIDs for new objects.
struct UuidIds;

impl IdSource for UuidIds {
    fn new_id(&mut self, _kind: Kind) -> weft_model::Id {
        weft_model::Id::new(uuid::Uuid::new_v4().to_string())
    }
}

/// Handle to the intent: read snapshots, submit commands, follow changes.
#[derive(Clone)]
pub struct IntentService {
    /// Held by the writer from commit to publish and by the store follower
    /// while it applies a batch, so the follower never replays this
    /// replica's own commits.
    commit_lock: Arc<tokio::sync::Mutex<()>>,
    intent: Arc<RwLock<Intent>>,
    revision: Arc<std::sync::atomic::AtomicU64>,
    tx: mpsc::Sender<Request>,
    changes: broadcast::Sender<Arc<ChangeBatch>>,
}

impl IntentService {
    /// Loads all intent from the store and starts the writer task.
    pub async fn start(store: Arc<dyn Store>) -> Result<Self, StoreError> {
        let (intent, revision) = load(store.as_ref()).await?;
        info!(objects = intent.len(), revision, "intent loaded");
        let seq_revision = store
            .get(keys::INTENT_SEQ)
            .await?
            .0
            .map_or(0, |kv| kv.mod_revision);
        let intent = Arc::new(RwLock::new(intent));
        let revision = Arc::new(std::sync::atomic::AtomicU64::new(revision));
        let (tx, rx) = mpsc::channel(4096);
        let (changes, _) = broadcast::channel(1024);
        let commit_lock = Arc::new(tokio::sync::Mutex::new(()));
        let svc = IntentService {
            commit_lock: commit_lock.clone(),
            intent: intent.clone(),
            revision: revision.clone(),
            tx,
            changes: changes.clone(),
        };
        tokio::spawn(follow(store.clone(), svc.clone(), svc.revision()));
        let writer = Writer {
            commit_lock,
            store,
            intent,
            revision,
            seq_revision,
            changes,
            ids: UuidIds,
        };
        tokio::spawn(writer.run(rx));
        Ok(svc)
    }

    /// Submits a command and waits for it to be durable (or refused).
    /// Returns the primary object after the change (`None` for a delete).
    pub async fn submit(&self, cmd: Command) -> Result<Option<Object>, SubmitError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request { cmd, reply })
            .await
            .map_err(|_| SubmitError::Closed)?;
        rx.await.map_err(|_| SubmitError::Closed)?
    }

    /// Runs `f` on the current intent under a read lock.
    pub fn read<R>(&self, f: impl FnOnce(&Intent) -> R) -> R {
        let guard = self.intent.read().expect("intent lock poisoned");
        f(&guard)
    }

    /// The store revision the in-memory intent reflects.
    pub fn revision(&self) -> Revision {
        self.revision.load(std::sync::atomic::Ordering::Acquire)
    }

    /// A consistent copy of the intent and a receiver of every change batch
    /// committed after it.
    pub fn subscribe(&self) -> (Intent, Revision, broadcast::Receiver<Arc<ChangeBatch>>) {
        // Taking the read lock while subscribing orders the copy before any
        // batch the receiver will see: the writer publishes under the write lock.
        let guard = self.intent.read().expect("intent lock poisoned");
        let rx = self.changes.subscribe();
        (guard.clone(), self.revision(), rx)
    }
}

/// Reads every intent object from the store.
async fn load(store: &dyn Store) -> Result<(Intent, Revision), StoreError> {
    let resp = store
        .range(weft_store::RangeRequest {
            prefix: keys::INTENT.to_string(),
            start_after: None,
            limit: 0,
        })
        .await?;
    let mut intent = Intent::new();
    for kv in resp.kvs {
        let Some((kind, _id)) = keys::parse_object(&kv.key) else {
            warn!(key = %kv.key, "ignoring unknown key under intent/");
            continue;
        };
        let mut obj = Object::from_json(kind, &kv.value)
            .map_err(|e| StoreError::Corrupt(format!("{}: {e}", kv.key)))?;
        obj.set_revision(kv.mod_revision);
        intent.put(obj);
    }
    // Cross-object indexes (MACs per network) depend on load order.
    intent.reindex();
    Ok((intent, resp.revision))
}

struct Writer {
    commit_lock: Arc<tokio::sync::Mutex<()>>,
    store: Arc<dyn Store>,
    intent: Arc<RwLock<Intent>>,
    revision: Arc<std::sync::atomic::AtomicU64>,
    seq_revision: Revision,
    changes: broadcast::Sender<Arc<ChangeBatch>>,
    ids: UuidIds,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = rx.recv().await {
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            self.commit_batch(std::mem::take(&mut batch)).await;
        }
        debug!("intent writer stopped");
    }

    async fn commit_batch(&mut self, batch: Vec<Request>) {
        let mut attempts = 0;
        let mut pending = batch;
        loop {
            attempts += 1;
            // Validate and apply, in order, under one write lock.
            let mut accepted: Vec<(Request, Applied)> = Vec::with_capacity(pending.len());
            {
                let mut intent = self.intent.write().expect("intent lock poisoned");
                for req in pending {
                    match intent.apply(req.cmd.clone(), &mut self.ids) {
                        Ok(applied) => accepted.push((req, applied)),
                        Err(e) => {
                            let _ = req.reply.send(Err(e.into()));
                        }
                    }
                }
            }
            if accepted.is_empty() {
                return;
            }
            // A store transaction names each key once: keep the last write
            // of every object touched by the batch.
            let mut last: HashMap<String, Option<&Object>> = HashMap::new();
            let mut order: Vec<String> = Vec::new();
            for (_, applied) in &accepted {
                for ch in &applied.changes {
                    let key = keys::object(ch.kind, ch.id.as_str());
                    if last.insert(key.clone(), ch.after.as_ref()).is_none() {
                        order.push(key);
                    }
                }
            }
            let mut txn = Txn::new().when_mod_revision(keys::INTENT_SEQ, self.seq_revision);
            for key in order {
                txn = match last[&key] {
                    Some(obj) => txn.put(key, serde_json::to_vec(obj).expect("objects serialize")),
                    None => txn.delete(key),
                };
            }
            txn = txn.put(keys::INTENT_SEQ, Vec::new());
            let guard = self.commit_lock.clone().lock_owned().await;
            let outcome = self.store.txn(txn).await;
            match outcome {
                Ok(TxnOutcome::Committed { revision }) => {
                    self.seq_revision = revision;
                    self.publish(accepted, revision);
                    drop(guard);
                    return;
                }
                Ok(TxnOutcome::Failed { .. }) if attempts < 3 => {
                    // Another replica wrote intent: undo, catch up, retry. The follower
                    // applies that write under the commit lock: release it first.
                    drop(guard);
                    warn!(
                        attempts,
                        "intent sequence moved under us; catching up and retrying"
                    );
                    pending = self.undo_all(accepted);
                    if let Err(e) = self.catch_up().await {
                        for req in pending {
                            let _ =
                                req.reply
                                    .send(Err(SubmitError::Store(StoreError::Unavailable(
                                        e.to_string(),
                                    ))));
                        }
                        return;
                    }
                }
                Ok(TxnOutcome::Failed { revision }) => {
                    for req in self.undo_all(accepted) {
                        let _ = req.reply.send(Err(SubmitError::Store(StoreError::Unavailable(
                            format!("intent kept changing concurrently (store at revision {revision}); retry"),
                        ))));
                    }
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "intent commit failed");
                    let msg = e.to_string();
                    for req in self.undo_all(accepted) {
                        let _ = req
                            .reply
                            .send(Err(SubmitError::Store(StoreError::Unavailable(
                                msg.clone(),
                            ))));
                    }
                    // Give a failing store a moment before the next batch.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    return;
                }
            }
        }
    }

    fn undo_all(&self, accepted: Vec<(Request, Applied)>) -> Vec<Request> {
        let mut intent = self.intent.write().expect("intent lock poisoned");
        let mut reqs = Vec::with_capacity(accepted.len());
        for (req, applied) in accepted.into_iter().rev() {
            intent.undo(applied);
            reqs.push(req);
        }
        reqs.reverse();
        reqs
    }

    /// Waits until the store follower has applied everything up to the
    /// store's current revision, after another replica committed.
    async fn catch_up(&mut self) -> Result<(), StoreError> {
        // The last intent commit, not the store's revision: writes outside intent/ (tokens,
        // hosts, tunnel addresses, leases) move that too, and the follower never sees them.
        let target = self
            .store
            .get(keys::INTENT_SEQ)
            .await?
            .0
            .map_or(0, |kv| kv.mod_revision);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.revision.load(std::sync::atomic::Ordering::Acquire) < target {
            if tokio::time::Instant::now() > deadline {
                return Err(StoreError::Unavailable(format!(
                    "intent did not catch up with the store's revision {target}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        self.seq_revision = target;
        Ok(())
    }

    fn publish(&self, accepted: Vec<(Request, Applied)>, revision: Revision) {
        let mut changes = Vec::new();
        let mut replies = Vec::with_capacity(accepted.len());
        {
            let mut intent = self.intent.write().expect("intent lock poisoned");
            for (req, applied) in accepted {
                for ch in &applied.changes {
                    if ch.after.is_some() {
                        intent.set_revision(ch.kind, ch.id.as_str(), revision);
                    }
                }
                let primary = applied
                    .object
                    .as_ref()
                    .and_then(|o| intent.get(o.kind(), o.id().as_str()));
                for mut ch in applied.changes {
                    if let Some(obj) = ch.after.as_mut() {
                        obj.set_revision(revision);
                    }
                    changes.push(ch);
                }
                replies.push((req.reply, primary));
            }
            self.revision
                .store(revision, std::sync::atomic::Ordering::Release);
            // Published under the lock: a subscriber's snapshot is either
            // before this batch (and it receives it) or after it.
            let _ = self
                .changes
                .send(Arc::new(ChangeBatch { revision, changes }));
        }
        for (reply, primary) in replies {
            let _ = reply.send(Ok(primary));
        }
    }
}

/// Follows the store: applies intent written by other controller replicas
/// (on etcd) and publishes it like local changes, so every replica's
/// compiler and hosts follow every write.
async fn follow(store: Arc<dyn Store>, svc: IntentService, from: Revision) {
    use futures::StreamExt;
    let mut next = from + 1;
    loop {
        let mut stream = match store.watch(keys::INTENT, next).await {
            Ok(s) => s,
            Err(e) => {
                warn!(error = %e, "cannot watch intent; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        while let Some(item) = stream.next().await {
            let batch = match item {
                Ok(b) => b,
                Err(StoreError::Compacted { .. }) => {
                    // History is gone: reload everything and publish the difference.
                    warn!("intent history compacted under the follower; reloading");
                    let _guard = svc.commit_lock.lock().await;
                    match load(store.as_ref()).await {
                        Ok((fresh, revision)) => {
                            let mut intent = svc.intent.write().expect("intent lock poisoned");
                            let changes = diff(&intent, &fresh);
                            *intent = fresh;
                            svc.revision
                                .store(revision, std::sync::atomic::Ordering::Release);
                            let _ = svc
                                .changes
                                .send(Arc::new(ChangeBatch { revision, changes }));
                            next = revision + 1;
                        }
                        Err(e) => warn!(error = %e, "reloading intent failed; retrying"),
                    }
                    break;
                }
                Err(e) => {
                    warn!(error = %e, "intent watch ended; watching again");
                    break;
                }
            };
            let _guard = svc.commit_lock.lock().await;
            next = batch.revision + 1;
            if batch.revision <= svc.revision() {
                // This replica's own commit, already applied and published.
                continue;
            }
            let mut changes = Vec::new();
            {
                let mut intent = svc.intent.write().expect("intent lock poisoned");
                for ev in &batch.events {
                    let Some((kind, id)) = keys::parse_object(ev.key()) else {
                        continue;
                    };
                    let before = intent.get(kind, id);
                    let after = match ev {
                        weft_store::Event::Put(kv) => match Object::from_json(kind, &kv.value) {
                            Ok(mut o) => {
                                o.set_revision(kv.mod_revision);
                                intent.put(o.clone());
                                Some(o)
                            }
                            Err(e) => {
                                warn!(key = %kv.key, error = %e, "ignoring an undecodable intent object");
                                continue;
                            }
                        },
                        weft_store::Event::Delete { .. } => {
                            intent.remove(kind, id);
                            None
                        }
                    };
                    changes.push(Change {
                        kind,
                        id: weft_model::Id::new(id),
                        before,
                        after,
                    });
                }
                svc.revision
                    .store(batch.revision, std::sync::atomic::Ordering::Release);
                debug!(
                    revision = batch.revision,
                    changes = changes.len(),
                    "applied intent from another replica"
                );
                let _ = svc.changes.send(Arc::new(ChangeBatch {
                    revision: batch.revision,
                    changes,
                }));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every object that differs between two intents, as changes from `a` to `b`.
fn diff(a: &Intent, b: &Intent) -> Vec<Change> {
    let mut out = Vec::new();
    for kind in weft_model::Kind::ALL {
        let ids: std::collections::BTreeSet<&weft_model::Id> =
            a.ids(kind).chain(b.ids(kind)).collect();
        for id in ids {
            let before = a.get(kind, id.as_str());
            let after = b.get(kind, id.as_str());
            if before != after {
                out.push(Change {
                    kind,
                    id: id.clone(),
                    before,
                    after,
                });
            }
        }
    }
    out
}
