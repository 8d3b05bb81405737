//! `EmbeddedStore`: the default, crash-safe, single-file backend on `redb`.
//!
//! ```text
//!  txn() ──┐ bounded mpsc (validated requests)
//!  txn() ──┼──────────────► committer thread ── one redb write txn per batch,
//!  txn() ──┘                 (std::thread)       one fsync'd commit, then
//!                                 │              answers every caller
//!                                 └─ broadcast<Arc<Committed>> ──► watch streams
//!  get()/range()/watch replay: redb read transactions (MVCC snapshots) on
//!  tokio's blocking pool; they never wait for the committer's fsync.
//! ```
//!
//! Tables in the file:
//! - `kv`: key → `create_revision (u64 LE) | mod_revision (u64 LE) | value`;
//! - `meta`: `format`, `revision` (latest committed), `compacted` (oldest
//!   revision whose change-log entry is still kept);
//! - `log`: revision → the events of that transaction, so that a watch can
//!   replay history after a restart.
//!
//! Like etcd, a transaction whose compares hold but which changes nothing
//! (no ops, or only deletes of absent keys) takes no new revision.

use std::collections::{HashSet, VecDeque};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Instant;

use async_trait::async_trait;
use futures::StreamExt;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::{
    Compare, Event, KeyValue, Op, RangeRequest, RangeResponse, Revision, Store, StoreError, Txn,
    TxnOutcome, WatchBatch, WatchStream,
};

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");

const META_FORMAT: &str = "format";
const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";
const FORMAT_VERSION: u64 = 1;

/// How many change-log entries a watch reads per snapshot while replaying.
const REPLAY_CHUNK: usize = 512;

/// Tunables of an [`EmbeddedStore`]. `Default` gives the documented values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbeddedOptions {
    /// Longest key accepted, in bytes (default 4 KiB).
    pub max_key_len: usize,
    /// Largest value accepted, in bytes (default 1 MiB).
    pub max_value_len: usize,
    /// Most operations in one transaction (default 1024; etcd's default is 128).
    pub max_txn_ops: usize,
    /// Revisions of change history kept for watches (default 100,000). Older
    /// history is compacted automatically, a few thousand revisions at a time.
    pub history: u64,
    /// Most transactions written by one durable commit (default 1024).
    pub max_batch_txns: usize,
    /// Most key+value bytes written by one durable commit (default 64 MiB);
    /// a single larger transaction still gets a commit of its own.
    pub max_batch_bytes: usize,
    /// Transactions that may wait for the committer before `txn` callers are
    /// held back (default 4096).
    pub queue_len: usize,
    /// Committed transactions buffered for live watchers (default 1024). A
    /// watcher further behind than this is replayed from the change log.
    /// Each buffered entry holds its transaction's values, so this bounds
    /// memory at about `watch_buffer` times the typical transaction size.
    pub watch_buffer: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            max_key_len: 4 * 1024,
            max_value_len: 1024 * 1024,
            max_txn_ops: 1024,
            history: 100_000,
            max_batch_txns: 1024,
            max_batch_bytes: 64 * 1024 * 1024,
            queue_len: 4096,
            watch_buffer: 1024,
        }
    }
}

impl EmbeddedOptions {
    fn validate(&self) -> Result<(), StoreError> {
        let positive = [
            ("max_key_len", self.max_key_len as u64),
            ("max_value_len", self.max_value_len as u64),
            ("max_txn_ops", self.max_txn_ops as u64),
            ("history", self.history),
            ("max_batch_txns", self.max_batch_txns as u64),
            ("max_batch_bytes", self.max_batch_bytes as u64),
            ("queue_len", self.queue_len as u64),
            ("watch_buffer", self.watch_buffer as u64),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(StoreError::Invalid(format!(
                    "EmbeddedOptions::{name} is 0; it must be at least 1"
                )));
            }
        }
        Ok(())
    }

    /// How far past `history` the log may grow before it is trimmed, so that
    /// trimming happens in runs rather than on every commit.
    fn compaction_step(&self) -> u64 {
        (self.history / 16).clamp(1, 4096)
    }
}

/// The crash-safe embedded store: one `redb` file, group-committed.
///
/// Every `txn` that returns [`TxnOutcome::Committed`] was written by an
/// fsync'd redb commit (`Durability::Immediate`), so it survives `kill -9` and
/// power loss. Concurrent `txn` calls are batched into one commit each.
///
/// A watcher that falls more than [`EmbeddedOptions::watch_buffer`] commits
/// behind is replayed from the change log, transparently; only when the
/// history it still needs was compacted meanwhile does its stream yield
/// [`StoreError::Compacted`] and end (re-read the range and watch again).
///
/// A `txn` call cancelled after it was queued may still commit, as an etcd
/// request whose answer is lost may: re-read before retrying.
///
/// Dropping the store lets the committer finish the transactions already
/// queued, then waits for it and closes the file; open watch streams then end
/// with [`StoreError::Closed`].
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    requests: Option<mpsc::Sender<Request>>,
    committer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.shared.path)
            .field("revision", &self.shared.revision.load(Ordering::Acquire))
            .finish_non_exhaustive()
    }
}

/// State shared by the handle, the committer and the readers.
struct Shared {
    db: Database,
    path: PathBuf,
    options: EmbeddedOptions,
    /// Latest durable revision; stored after the commit, before the events
    /// are broadcast.
    revision: AtomicU64,
    /// Oldest revision whose change-log entry is still kept.
    compacted: AtomicU64,
    events: broadcast::Sender<Arc<Committed>>,
}

/// The events of one committed transaction, as broadcast to watchers.
#[derive(Debug)]
struct Committed {
    revision: Revision,
    events: Vec<Event>,
}

/// Work for the committer.
enum Request {
    Txn {
        txn: Txn,
        reply: oneshot::Sender<Result<TxnOutcome, StoreError>>,
    },
    Compact {
        revision: Revision,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

impl Request {
    fn bytes(&self) -> usize {
        match self {
            Request::Txn { txn, .. } => txn_bytes(txn),
            Request::Compact { .. } => 0,
        }
    }
}

/// The committer's answer to one request of a batch.
enum Answer {
    Txn(Result<TxnOutcome, StoreError>),
    Compact(Result<(), StoreError>),
}

fn txn_bytes(txn: &Txn) -> usize {
    txn.ops
        .iter()
        .map(|op| match op {
            Op::Put { key, value } => key.len() + value.len(),
            Op::Delete { key } => key.len(),
        })
        .sum()
}

/// Maps any redb error to a store error, keeping corruption distinct.
fn db_err(context: &str, err: impl Into<redb::Error>) -> StoreError {
    match err.into() {
        redb::Error::Corrupted(msg) => StoreError::Corrupt(format!("{context}: {msg}")),
        other => StoreError::Unavailable(format!("{context}: {other}")),
    }
}

impl EmbeddedStore {
    /// Creates the database file at `path`, or opens it if it exists, with
    /// the default [`EmbeddedOptions`]. A file left by a crash is repaired
    /// by redb on open. Blocks while opening.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, EmbeddedOptions::default())
    }

    /// Like [`EmbeddedStore::open`], with explicit options.
    pub fn open_with(path: &Path, options: EmbeddedOptions) -> Result<Self, StoreError> {
        options.validate()?;
        let db = Database::create(path).map_err(|err| match err {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Unavailable(format!(
                "{} is already open by another process or another EmbeddedStore; close that one first",
                path.display()
            )),
            other => db_err(&format!("opening {}", path.display()), other),
        })?;
        let (revision, compacted) = init_tables(&db, path)?;
        let (events, _) = broadcast::channel(options.watch_buffer);
        let (requests, queue) = mpsc::channel(options.queue_len);
        let shared = Arc::new(Shared {
            db,
            path: path.to_owned(),
            options,
            revision: AtomicU64::new(revision),
            compacted: AtomicU64::new(compacted),
            events,
        });
        let committer = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("weft-store-commit".into())
                .spawn(move || run_committer(shared, queue))
                .map_err(|err| {
                    StoreError::Unavailable(format!("cannot start the committer thread: {err}"))
                })?
        };
        tracing::debug!(path = %path.display(), revision, compacted, "embedded store open");
        Ok(Self {
            shared,
            requests: Some(requests),
            committer: Some(committer),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &EmbeddedOptions {
        &self.shared.options
    }

    /// The oldest revision a watch may still start from.
    pub fn compacted_revision(&self) -> Revision {
        self.shared.compacted.load(Ordering::Acquire)
    }

    fn validate(&self, txn: &Txn) -> Result<(), StoreError> {
        let opts = &self.shared.options;
        if txn.ops.len() > opts.max_txn_ops {
            return Err(StoreError::Invalid(format!(
                "transaction has {} operations, more than the limit of {} (max_txn_ops): split it",
                txn.ops.len(),
                opts.max_txn_ops
            )));
        }
        let check_key = |key: &str| -> Result<(), StoreError> {
            if key.is_empty() {
                return Err(StoreError::Invalid(
                    "empty key: keys must not be empty".into(),
                ));
            }
            if key.len() > opts.max_key_len {
                return Err(StoreError::Invalid(format!(
                    "key of {} bytes starting {:?} exceeds the limit of {} bytes (max_key_len): use a shorter key",
                    key.len(),
                    key.chars().take(64).collect::<String>(),
                    opts.max_key_len
                )));
            }
            Ok(())
        };
        for Compare::ModRevision { key, .. } in &txn.compares {
            check_key(key)?;
        }
        let mut seen = HashSet::with_capacity(txn.ops.len());
        for op in &txn.ops {
            let key = match op {
                Op::Put { key, value } => {
                    if value.len() > opts.max_value_len {
                        return Err(StoreError::Invalid(format!(
                            "value of {} bytes for key {key:?} exceeds the limit of {} bytes (max_value_len): store it in pieces or elsewhere",
                            value.len(),
                            opts.max_value_len
                        )));
                    }
                    key
                }
                Op::Delete { key } => key,
            };
            check_key(key)?;
            if !seen.insert(key.as_str()) {
                return Err(StoreError::Invalid(format!(
                    "key {key:?} is written twice in one transaction (etcd refuses this too): merge the operations"
                )));
            }
        }
        Ok(())
    }

    async fn submit<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Request,
    ) -> Result<T, StoreError> {
        let requests = self.requests.as_ref().ok_or(StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        requests
            .send(make(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| {
            StoreError::Unavailable(
                "the embedded store's committer stopped before answering; see the log".into(),
            )
        })?
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // Closing the queue lets the committer drain it and exit; waiting for
        // it means the file is closed (and reopenable) once drop returns.
        drop(self.requests.take());
        if let Some(handle) = self.committer.take()
            && handle.join().is_err()
        {
            tracing::error!(path = %self.shared.path.display(), "store committer thread panicked");
        }
    }
}

/// Creates the tables of a new file, or checks those of an existing one.
/// Returns the current and the compacted revision.
fn init_tables(db: &Database, path: &Path) -> Result<(Revision, Revision), StoreError> {
    let ctx = format!("initializing {}", path.display());
    let wtx = db.begin_write().map_err(|e| db_err(&ctx, e))?;
    let found = {
        let mut meta = wtx.open_table(META).map_err(|e| db_err(&ctx, e))?;
        let kv = wtx.open_table(KV).map_err(|e| db_err(&ctx, e))?;
        wtx.open_table(LOG).map_err(|e| db_err(&ctx, e))?;
        let format = meta
            .get(META_FORMAT)
            .map_err(|e| db_err(&ctx, e))?
            .map(|g| g.value());
        match format {
            Some(FORMAT_VERSION) => {
                let get = |name: &str| -> Result<u64, StoreError> {
                    meta.get(name)
                        .map_err(|e| db_err(&ctx, e))?
                        .map(|g| g.value())
                        .ok_or_else(|| {
                            StoreError::Corrupt(format!(
                                "{}: meta entry {name:?} is missing",
                                path.display()
                            ))
                        })
                };
                Some((get(META_REVISION)?, get(META_COMPACTED)?))
            }
            Some(other) => {
                return Err(StoreError::Corrupt(format!(
                    "{} has store format {other}, this build reads format {FORMAT_VERSION}: use a matching build",
                    path.display()
                )));
            }
            None => {
                if !kv.is_empty().map_err(|e| db_err(&ctx, e))? {
                    return Err(StoreError::Corrupt(format!(
                        "{} holds keys but no store format marker: it was not written by weft-store",
                        path.display()
                    )));
                }
                meta.insert(META_FORMAT, FORMAT_VERSION)
                    .map_err(|e| db_err(&ctx, e))?;
                meta.insert(META_REVISION, 0).map_err(|e| db_err(&ctx, e))?;
                meta.insert(META_COMPACTED, 1)
                    .map_err(|e| db_err(&ctx, e))?;
                None
            }
        }
    };
    match found {
        Some(revs) => {
            wtx.abort().map_err(|e| db_err(&ctx, e))?;
            Ok(revs)
        }
        None => {
            wtx.commit().map_err(|e| db_err(&ctx, e))?;
            Ok((0, 1))
        }
    }
}

/// The committer: drains the queue into batches, one durable commit each.
fn run_committer(shared: Arc<Shared>, mut queue: mpsc::Receiver<Request>) {
    let opts = shared.options.clone();
    while let Some(first) = queue.blocking_recv() {
        let mut bytes = first.bytes();
        let mut batch = vec![first];
        while batch.len() < opts.max_batch_txns && bytes < opts.max_batch_bytes {
            match queue.try_recv() {
                Ok(req) => {
                    bytes += req.bytes();
                    batch.push(req);
                }
                Err(_) => break,
            }
        }
        commit_batch(&shared, batch);
    }
    tracing::debug!(path = %shared.path.display(), "store committer stopped");
}

/// Commits one batch and answers its callers.
fn commit_batch(shared: &Shared, batch: Vec<Request>) {
    let started = Instant::now();
    let len = batch.len();
    let mut bodies = Vec::with_capacity(len);
    let mut replies = Vec::with_capacity(len);
    for req in batch {
        match req {
            Request::Txn { txn, reply } => {
                bodies.push(Body::Txn(txn));
                replies.push(Reply::Txn(reply));
            }
            Request::Compact { revision, reply } => {
                bodies.push(Body::Compact(revision));
                replies.push(Reply::Compact(reply));
            }
        }
    }
    let revision = shared.revision.load(Ordering::Acquire);
    let compacted = shared.compacted.load(Ordering::Acquire);
    match write_batch(shared, revision, compacted, bodies) {
        Ok(done) => {
            shared.revision.store(done.revision, Ordering::Release);
            shared.compacted.store(done.compacted, Ordering::Release);
            // Nobody listening is fine; a slow listener lags, it never blocks us.
            for committed in done.committed {
                let _ = shared.events.send(committed);
            }
            for (reply, answer) in replies.into_iter().zip(done.answers) {
                reply.send(answer);
            }
            tracing::trace!(
                txns = len,
                revision = done.revision,
                micros = started.elapsed().as_micros() as u64,
                "batch committed"
            );
        }
        Err(err) => {
            // Nothing of the batch is on disk; the in-memory revision was not
            // advanced, so the next batch starts from the last durable state.
            tracing::error!(path = %shared.path.display(), error = %err, txns = len, "batch commit failed");
            let msg = err.to_string();
            for reply in replies {
                let err = match &err {
                    StoreError::Corrupt(_) => StoreError::Corrupt(msg.clone()),
                    _ => StoreError::Unavailable(msg.clone()),
                };
                match reply {
                    Reply::Txn(tx) => drop(tx.send(Err(err))),
                    Reply::Compact(tx) => drop(tx.send(Err(err))),
                }
            }
        }
    }
}

enum Body {
    Txn(Txn),
    Compact(Revision),
}

enum Reply {
    Txn(oneshot::Sender<Result<TxnOutcome, StoreError>>),
    Compact(oneshot::Sender<Result<(), StoreError>>),
}

impl Reply {
    fn send(self, answer: Answer) {
        // A caller that went away no longer wants its answer; the write
        // stands either way, as with a lost etcd response.
        match (self, answer) {
            (Reply::Txn(tx), Answer::Txn(a)) => drop(tx.send(a)),
            (Reply::Compact(tx), Answer::Compact(a)) => drop(tx.send(a)),
            (Reply::Txn(tx), Answer::Compact(_)) => drop(tx.send(Err(StoreError::Unavailable(
                "internal error: answer of the wrong kind".into(),
            )))),
            (Reply::Compact(tx), Answer::Txn(_)) => drop(tx.send(Err(StoreError::Unavailable(
                "internal error: answer of the wrong kind".into(),
            )))),
        }
    }
}

/// The outcome of a durably written batch.
struct Written {
    revision: Revision,
    compacted: Revision,
    answers: Vec<Answer>,
    committed: Vec<Arc<Committed>>,
}

/// Applies a batch in one redb write transaction and commits it durably.
/// Each transaction's compares see the writes of the earlier ones.
fn write_batch(
    shared: &Shared,
    mut revision: Revision,
    mut compacted: Revision,
    bodies: Vec<Body>,
) -> Result<Written, StoreError> {
    const CTX: &str = "writing a batch";
    let mut wtx = shared.db.begin_write().map_err(|err| db_err(CTX, err))?;
    wtx.set_durability(Durability::Immediate)
        .map_err(|err| db_err(CTX, err))?;
    let mut answers = Vec::with_capacity(bodies.len());
    let mut committed = Vec::new();
    {
        let mut kv = wtx.open_table(KV).map_err(|err| db_err(CTX, err))?;
        let mut log = wtx.open_table(LOG).map_err(|err| db_err(CTX, err))?;
        let mut meta = wtx.open_table(META).map_err(|err| db_err(CTX, err))?;
        for body in bodies {
            match body {
                Body::Txn(txn) => {
                    let mut holds = true;
                    for Compare::ModRevision {
                        key,
                        revision: want,
                    } in &txn.compares
                    {
                        let have = match kv.get(key.as_str()).map_err(|err| db_err(CTX, err))? {
                            Some(g) => decode_record(key, g.value())?.1,
                            None => 0,
                        };
                        if have != *want {
                            holds = false;
                            break;
                        }
                    }
                    if !holds {
                        answers.push(Answer::Txn(Ok(TxnOutcome::Failed { revision })));
                        continue;
                    }
                    let next = revision + 1;
                    let mut events = Vec::with_capacity(txn.ops.len());
                    for op in txn.ops {
                        match op {
                            Op::Put { key, value } => {
                                let create =
                                    match kv.get(key.as_str()).map_err(|err| db_err(CTX, err))? {
                                        Some(g) => decode_record(&key, g.value())?.0,
                                        None => next,
                                    };
                                let record = encode_record(create, next, &value);
                                kv.insert(key.as_str(), record.as_slice())
                                    .map_err(|err| db_err(CTX, err))?;
                                events.push(Event::Put(KeyValue {
                                    key,
                                    value,
                                    create_revision: create,
                                    mod_revision: next,
                                }));
                            }
                            Op::Delete { key } => {
                                let existed = kv
                                    .remove(key.as_str())
                                    .map_err(|err| db_err(CTX, err))?
                                    .is_some();
                                if existed {
                                    events.push(Event::Delete {
                                        key,
                                        mod_revision: next,
                                    });
                                }
                            }
                        }
                    }
                    if events.is_empty() {
                        // Nothing changed: no new revision, as in etcd.
                        answers.push(Answer::Txn(Ok(TxnOutcome::Committed { revision })));
                        continue;
                    }
                    revision = next;
                    log.insert(revision, encode_events(&events).as_slice())
                        .map_err(|err| db_err(CTX, err))?;
                    committed.push(Arc::new(Committed { revision, events }));
                    answers.push(Answer::Txn(Ok(TxnOutcome::Committed { revision })));
                }
                Body::Compact(target) => {
                    if target > revision {
                        answers.push(Answer::Compact(Err(StoreError::Invalid(format!(
                            "cannot compact to revision {target}: the current revision is {revision}"
                        )))));
                        continue;
                    }
                    if target > compacted {
                        log.retain_in(compacted..target, |_, _| false)
                            .map_err(|err| db_err(CTX, err))?;
                        compacted = target;
                    }
                    answers.push(Answer::Compact(Ok(())));
                }
            }
        }
        // Automatic compaction: keep the last `history` revisions.
        let opts = &shared.options;
        let kept = (revision + 1).saturating_sub(compacted);
        if kept > opts.history + opts.compaction_step() {
            let floor = revision + 1 - opts.history;
            log.retain_in(compacted..floor, |_, _| false)
                .map_err(|err| db_err(CTX, err))?;
            tracing::debug!(from = compacted, to = floor, "change log compacted");
            compacted = floor;
        }
        meta.insert(META_REVISION, revision)
            .map_err(|err| db_err(CTX, err))?;
        meta.insert(META_COMPACTED, compacted)
            .map_err(|err| db_err(CTX, err))?;
    }
    wtx.commit()
        .map_err(|err| db_err("committing a batch", err))?;
    Ok(Written {
        revision,
        compacted,
        answers,
        committed,
    })
}

fn encode_record(create: Revision, modified: Revision, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + value.len());
    out.extend_from_slice(&create.to_le_bytes());
    out.extend_from_slice(&modified.to_le_bytes());
    out.extend_from_slice(value);
    out
}

/// Splits a `kv` record into (create_revision, mod_revision, value).
fn decode_record<'a>(
    key: &str,
    data: &'a [u8],
) -> Result<(Revision, Revision, &'a [u8]), StoreError> {
    if data.len() < 16 {
        return Err(StoreError::Corrupt(format!(
            "record of key {key:?} is {} bytes, shorter than its 16-byte header",
            data.len()
        )));
    }
    let (create, rest) = data.split_at(8);
    let (modified, value) = rest.split_at(8);
    Ok((
        u64::from_le_bytes(create.try_into().unwrap_or_default()),
        u64::from_le_bytes(modified.try_into().unwrap_or_default()),
        value,
    ))
}

const TAG_PUT: u8 = 1;
const TAG_DELETE: u8 = 2;

/// Encodes a transaction's events for the change log:
/// per event `tag u8 | key_len u32 | key | [create u64 | value_len u32 | value]`.
fn encode_events(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::new();
    for event in events {
        match event {
            Event::Put(kv) => {
                out.push(TAG_PUT);
                out.extend_from_slice(&(kv.key.len() as u32).to_le_bytes());
                out.extend_from_slice(kv.key.as_bytes());
                out.extend_from_slice(&kv.create_revision.to_le_bytes());
                out.extend_from_slice(&(kv.value.len() as u32).to_le_bytes());
                out.extend_from_slice(&kv.value);
            }
            Event::Delete { key, .. } => {
                out.push(TAG_DELETE);
                out.extend_from_slice(&(key.len() as u32).to_le_bytes());
                out.extend_from_slice(key.as_bytes());
            }
        }
    }
    out
}

/// Decodes the change-log entry of `revision`.
fn decode_events(revision: Revision, mut data: &[u8]) -> Result<Vec<Event>, StoreError> {
    let corrupt = |what: &str| {
        StoreError::Corrupt(format!("change-log entry of revision {revision}: {what}"))
    };
    fn take<'a>(data: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if data.len() < n {
            return None;
        }
        let (head, tail) = data.split_at(n);
        *data = tail;
        Some(head)
    }
    let mut events = Vec::new();
    while let Some(tag) = take(&mut data, 1) {
        let key_len = take(&mut data, 4).ok_or_else(|| corrupt("truncated key length"))?;
        let key_len = u32::from_le_bytes(key_len.try_into().unwrap_or_default()) as usize;
        let key = take(&mut data, key_len).ok_or_else(|| corrupt("truncated key"))?;
        let key = String::from_utf8(key.to_vec()).map_err(|_| corrupt("key is not UTF-8"))?;
        match tag[0] {
            TAG_PUT => {
                let create = take(&mut data, 8).ok_or_else(|| corrupt("truncated revision"))?;
                let create = u64::from_le_bytes(create.try_into().unwrap_or_default());
                let len = take(&mut data, 4).ok_or_else(|| corrupt("truncated value length"))?;
                let len = u32::from_le_bytes(len.try_into().unwrap_or_default()) as usize;
                let value = take(&mut data, len).ok_or_else(|| corrupt("truncated value"))?;
                events.push(Event::Put(KeyValue {
                    key,
                    value: value.to_vec(),
                    create_revision: create,
                    mod_revision: revision,
                }));
            }
            TAG_DELETE => events.push(Event::Delete {
                key,
                mod_revision: revision,
            }),
            other => return Err(corrupt(&format!("unknown event tag {other}"))),
        }
    }
    Ok(events)
}

/// Runs blocking redb reads on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|err| StoreError::Unavailable(format!("store read task failed: {err}")))?
}

fn read_revision(
    meta: &redb::ReadOnlyTable<&'static str, u64>,
    name: &str,
) -> Result<u64, StoreError> {
    meta.get(name)
        .map_err(|err| db_err("reading meta", err))?
        .map(|g| g.value())
        .ok_or_else(|| StoreError::Corrupt(format!("meta entry {name:?} is missing")))
}

fn get_blocking(shared: &Shared, key: &str) -> Result<(Option<KeyValue>, Revision), StoreError> {
    const CTX: &str = "reading a key";
    let rtx = shared.db.begin_read().map_err(|err| db_err(CTX, err))?;
    let meta = rtx.open_table(META).map_err(|err| db_err(CTX, err))?;
    let revision = read_revision(&meta, META_REVISION)?;
    let kv = rtx.open_table(KV).map_err(|err| db_err(CTX, err))?;
    let found = match kv.get(key).map_err(|err| db_err(CTX, err))? {
        Some(g) => {
            let (create, modified, value) = decode_record(key, g.value())?;
            Some(KeyValue {
                key: key.to_owned(),
                value: value.to_vec(),
                create_revision: create,
                mod_revision: modified,
            })
        }
        None => None,
    };
    Ok((found, revision))
}

fn range_blocking(shared: &Shared, req: &RangeRequest) -> Result<RangeResponse, StoreError> {
    const CTX: &str = "reading a range";
    let rtx = shared.db.begin_read().map_err(|err| db_err(CTX, err))?;
    let meta = rtx.open_table(META).map_err(|err| db_err(CTX, err))?;
    let revision = read_revision(&meta, META_REVISION)?;
    let kv = rtx.open_table(KV).map_err(|err| db_err(CTX, err))?;
    let lower = match &req.start_after {
        Some(after) if after.as_str() >= req.prefix.as_str() => Bound::Excluded(after.as_str()),
        _ => Bound::Included(req.prefix.as_str()),
    };
    let iter = kv
        .range::<&str>((lower, Bound::Unbounded))
        .map_err(|err| db_err(CTX, err))?;
    let mut kvs = Vec::new();
    let mut more = false;
    for entry in iter {
        let (k, v) = entry.map_err(|err| db_err(CTX, err))?;
        let key = k.value();
        if !key.starts_with(req.prefix.as_str()) {
            break;
        }
        if req.limit != 0 && kvs.len() == req.limit {
            more = true;
            break;
        }
        let (create, modified, value) = decode_record(key, v.value())?;
        kvs.push(KeyValue {
            key: key.to_owned(),
            value: value.to_vec(),
            create_revision: create,
            mod_revision: modified,
        });
    }
    Ok(RangeResponse {
        kvs,
        revision,
        more,
    })
}

/// Reads up to [`REPLAY_CHUNK`] change-log entries in `from..=until` from one
/// snapshot. Errors with `Compacted` if `from` is no longer kept.
fn read_log_chunk(
    shared: &Shared,
    from: Revision,
    until: Revision,
) -> Result<Vec<Arc<Committed>>, StoreError> {
    const CTX: &str = "replaying the change log";
    let rtx = shared.db.begin_read().map_err(|err| db_err(CTX, err))?;
    let meta = rtx.open_table(META).map_err(|err| db_err(CTX, err))?;
    let compacted = read_revision(&meta, META_COMPACTED)?;
    if from < compacted {
        return Err(StoreError::Compacted {
            requested: from,
            compacted,
        });
    }
    let log = rtx.open_table(LOG).map_err(|err| db_err(CTX, err))?;
    let mut out = Vec::new();
    for entry in log
        .range(from..=until)
        .map_err(|err| db_err(CTX, err))?
        .take(REPLAY_CHUNK)
    {
        let (rev, data) = entry.map_err(|err| db_err(CTX, err))?;
        let revision = rev.value();
        out.push(Arc::new(Committed {
            revision,
            events: decode_events(revision, data.value())?,
        }));
    }
    Ok(out)
}

/// The part of `committed` under `prefix`, if any.
fn filter(committed: &Committed, prefix: &str) -> Option<WatchBatch> {
    let events: Vec<Event> = committed
        .events
        .iter()
        .filter(|e| e.key().starts_with(prefix))
        .cloned()
        .collect();
    (!events.is_empty()).then_some(WatchBatch {
        revision: committed.revision,
        events,
    })
}

/// A watch: replays the change log from `next` up to `replay_until`, then
/// follows the broadcast of live commits.
struct Watcher {
    shared: Weak<Shared>,
    prefix: String,
    /// Every revision below this one was delivered or skipped.
    next: Revision,
    /// Replay from the log while `next <= replay_until`.
    replay_until: Revision,
    live: broadcast::Receiver<Arc<Committed>>,
    pending: VecDeque<WatchBatch>,
    done: bool,
}

impl Watcher {
    async fn next_batch(&mut self) -> Option<Result<WatchBatch, StoreError>> {
        loop {
            if let Some(batch) = self.pending.pop_front() {
                return Some(Ok(batch));
            }
            if self.done {
                return None;
            }
            if self.next <= self.replay_until {
                let Some(shared) = self.shared.upgrade() else {
                    return self.fail(StoreError::Closed);
                };
                let (from, until) = (self.next, self.replay_until);
                match blocking(move || read_log_chunk(&shared, from, until)).await {
                    Ok(chunk) => {
                        self.next = match chunk.last() {
                            Some(last) if chunk.len() == REPLAY_CHUNK => last.revision + 1,
                            _ => until + 1,
                        };
                        let prefix = &self.prefix;
                        self.pending
                            .extend(chunk.iter().filter_map(|c| filter(c, prefix)));
                    }
                    Err(err) => return self.fail(err),
                }
                continue;
            }
            match self.live.recv().await {
                Ok(committed) if committed.revision < self.next => {}
                Ok(committed) if committed.revision == self.next => {
                    self.next += 1;
                    if let Some(batch) = filter(&committed, &self.prefix) {
                        return Some(Ok(batch));
                    }
                }
                // A gap (or lag): catch up from the change log, which holds
                // every commit up to the revision read after re-subscribing.
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    let Some(shared) = self.shared.upgrade() else {
                        return self.fail(StoreError::Closed);
                    };
                    self.live = shared.events.subscribe();
                    self.replay_until = shared.revision.load(Ordering::Acquire);
                    tracing::debug!(
                        next = self.next,
                        until = self.replay_until,
                        "watcher fell behind; replaying from the change log"
                    );
                }
                Err(broadcast::error::RecvError::Closed) => return self.fail(StoreError::Closed),
            }
        }
    }

    fn fail(&mut self, err: StoreError) -> Option<Result<WatchBatch, StoreError>> {
        self.done = true;
        Some(Err(err))
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        self.validate(&txn)?;
        self.submit(|reply| Request::Txn { txn, reply }).await
    }

    async fn get(&self, key: &str) -> Result<(Option<KeyValue>, Revision), StoreError> {
        let shared = Arc::clone(&self.shared);
        let key = key.to_owned();
        blocking(move || get_blocking(&shared, &key)).await
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError> {
        let shared = Arc::clone(&self.shared);
        blocking(move || range_blocking(&shared, &req)).await
    }

    async fn watch(
        &self,
        prefix: &str,
        from_revision: Revision,
    ) -> Result<WatchStream, StoreError> {
        // Subscribe before reading the revision: every commit after the one
        // read then arrives live, and every one up to it is in the log.
        let live = self.shared.events.subscribe();
        let current = self.shared.revision.load(Ordering::Acquire);
        let compacted = self.shared.compacted.load(Ordering::Acquire);
        let from = from_revision.max(1);
        if from < compacted {
            return Err(StoreError::Compacted {
                requested: from_revision,
                compacted,
            });
        }
        let watcher = Watcher {
            shared: Arc::downgrade(&self.shared),
            prefix: prefix.to_owned(),
            next: from,
            replay_until: current,
            live,
            pending: VecDeque::new(),
            done: false,
        };
        let stream = futures::stream::unfold(watcher, |mut w| async move {
            w.next_batch().await.map(|item| (item, w))
        });
        Ok(stream.boxed())
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        Ok(self.shared.revision.load(Ordering::Acquire))
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.submit(|reply| Request::Compact { revision, reply })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip() {
        let events = vec![
            Event::Put(KeyValue {
                key: "a/ü".into(),
                value: vec![0, 1, 2, 255],
                create_revision: 3,
                mod_revision: 7,
            }),
            Event::Delete {
                key: "b".into(),
                mod_revision: 7,
            },
            Event::Put(KeyValue {
                key: "c".into(),
                value: vec![],
                create_revision: 7,
                mod_revision: 7,
            }),
        ];
        assert_eq!(decode_events(7, &encode_events(&events)).unwrap(), events);
    }

    #[test]
    fn truncated_log_entry_is_corrupt() {
        let events = vec![Event::Put(KeyValue {
            key: "key".into(),
            value: vec![9; 10],
            create_revision: 1,
            mod_revision: 1,
        })];
        let data = encode_events(&events);
        for cut in 1..data.len() {
            match decode_events(1, &data[..cut]) {
                Err(StoreError::Corrupt(msg)) => assert!(msg.contains("revision 1"), "{msg}"),
                other => panic!("cut at {cut}: expected Corrupt, got {other:?}"),
            }
        }
    }

    #[test]
    fn record_round_trip_and_short_record() {
        let rec = encode_record(4, 9, b"value");
        assert_eq!(decode_record("k", &rec).unwrap(), (4, 9, &b"value"[..]));
        assert!(matches!(
            decode_record("k", &rec[..15]),
            Err(StoreError::Corrupt(_))
        ));
    }
}
