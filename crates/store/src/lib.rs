//! The `Store` trait and its backends.
//!
//! A store is an ordered key/value map with one global, monotonically
//! increasing revision, shaped after etcd's v3 API so that the embedded
//! backend and an etcd backend are interchangeable behind `Arc<dyn Store>`:
//!
//! - every committed transaction gets the next revision; every key written by
//!   it carries that revision as its `mod_revision`. As in etcd, a committed
//!   transaction that changes nothing (no ops, or only deletes of absent keys)
//!   takes no revision and reports the current one;
//! - a transaction is a list of compares (all must hold) and a list of
//!   operations applied atomically when they do;
//! - range reads return a consistent snapshot and the revision it reflects;
//! - a watch delivers, in revision order, every change under a prefix after a
//!   given revision, or says the history was compacted.
//!
//! This crate knows nothing of Weft's model: keys are strings, values bytes.

use std::fmt;

use async_trait::async_trait;
use futures::stream::BoxStream;

pub mod conformance;
pub mod embedded;
pub mod observed;

pub use embedded::{EmbeddedOptions, EmbeddedStore};
pub use observed::Observed;

/// A store revision. Revisions start at 1; 0 means "none" (an absent key).
pub type Revision = u64;

/// One key with its value and revisions.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key.
    pub key: String,
    /// The value, opaque to the store.
    pub value: Vec<u8>,
    /// Revision of the transaction that created the key.
    pub create_revision: Revision,
    /// Revision of the last transaction that wrote the key.
    pub mod_revision: Revision,
}

impl fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyValue")
            .field("key", &self.key)
            .field("value_len", &self.value.len())
            .field("create_revision", &self.create_revision)
            .field("mod_revision", &self.mod_revision)
            .finish()
    }
}

/// A condition a transaction checks before it applies its operations.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compare {
    /// The key's `mod_revision` equals `revision`; `0` means the key must be absent.
    ModRevision {
        /// The key to check.
        key: String,
        /// The expected revision, 0 for "absent".
        revision: Revision,
    },
}

/// One write inside a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Create or replace a key.
    Put {
        /// The key.
        key: String,
        /// The new value.
        value: Vec<u8>,
    },
    /// Remove a key; removing an absent key is not an error.
    Delete {
        /// The key.
        key: String,
    },
}

/// An atomic, conditional batch of writes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Txn {
    /// Conditions that must all hold.
    pub compares: Vec<Compare>,
    /// Writes applied, in order, when they do. A key may appear in at most
    /// one op (etcd refuses duplicates): backends return [`StoreError::Invalid`].
    pub ops: Vec<Op>,
}

impl Txn {
    /// An empty transaction.
    pub fn new() -> Self {
        Self::default()
    }
    /// Adds a compare on a key's mod revision (0 = must be absent).
    pub fn when_mod_revision(mut self, key: impl Into<String>, revision: Revision) -> Self {
        self.compares.push(Compare::ModRevision {
            key: key.into(),
            revision,
        });
        self
    }
    /// Adds a put.
    pub fn put(mut self, key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.ops.push(Op::Put {
            key: key.into(),
            value: value.into(),
        });
        self
    }
    /// Adds a delete.
    pub fn delete(mut self, key: impl Into<String>) -> Self {
        self.ops.push(Op::Delete { key: key.into() });
        self
    }
}

/// What became of a transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnOutcome {
    /// Compares held; the writes are durable at this revision.
    Committed {
        /// The revision of this transaction (the current revision if it
        /// changed nothing).
        revision: Revision,
    },
    /// A compare failed; nothing was written.
    Failed {
        /// The store's current revision when the compare was evaluated.
        revision: Revision,
    },
}

/// A range read: the keys under `prefix`, in key order, after `start_after`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeRequest {
    /// Only keys starting with this prefix.
    pub prefix: String,
    /// Only keys strictly greater than this one (for pagination).
    pub start_after: Option<String>,
    /// At most this many keys; 0 means no limit.
    pub limit: usize,
}

/// The answer to a range read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeResponse {
    /// The keys, in key order.
    pub kvs: Vec<KeyValue>,
    /// The revision the snapshot reflects.
    pub revision: Revision,
    /// More keys match beyond `limit`.
    pub more: bool,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A key was created or replaced.
    Put(KeyValue),
    /// A key was removed.
    Delete {
        /// The removed key.
        key: String,
        /// The revision of the transaction that removed it.
        mod_revision: Revision,
    },
}

impl Event {
    /// The key this event is about.
    pub fn key(&self) -> &str {
        match self {
            Event::Put(kv) => &kv.key,
            Event::Delete { key, .. } => key,
        }
    }
    /// The revision at which this change happened.
    pub fn revision(&self) -> Revision {
        match self {
            Event::Put(kv) => kv.mod_revision,
            Event::Delete { mod_revision, .. } => *mod_revision,
        }
    }
}

/// All changes under the watched prefix made by one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchBatch {
    /// The transaction's revision.
    pub revision: Revision,
    /// Its changes under the prefix, in the order the transaction made them.
    pub events: Vec<Event>,
}

/// A stream of watch batches in strictly increasing revision order.
pub type WatchStream = BoxStream<'static, Result<WatchBatch, StoreError>>;

/// Errors of a store backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The requested revision is older than the oldest history kept.
    #[error(
        "revision {requested} was compacted; the oldest revision still kept is {compacted}: re-read the whole range and watch from there"
    )]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// History before this revision is gone.
        compacted: Revision,
    },
    /// The store cannot be reached or answered with an error.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The on-disk data is damaged or of an unknown format.
    #[error("store data is corrupt: {0}")]
    Corrupt(String),
    /// Input the store refuses (for example an oversized key or value).
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// The store was closed.
    #[error("store is closed")]
    Closed,
}

/// An ordered, revisioned, watchable key/value store.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies `txn` atomically if all its compares hold. When this returns
    /// `Committed`, the writes are durable.
    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError>;

    /// Reads one key at the current revision; also returns that revision.
    async fn get(&self, key: &str) -> Result<(Option<KeyValue>, Revision), StoreError>;

    /// Reads a consistent snapshot of a key range.
    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError>;

    /// Streams every change under `prefix` with a revision `>= from_revision`,
    /// batch by batch, then follows new commits. Errors with
    /// [`StoreError::Compacted`] if that history is no longer kept.
    /// `from_revision` 0 means the same as 1: all history kept. Transactions
    /// with no change under `prefix` yield no batch.
    async fn watch(&self, prefix: &str, from_revision: Revision)
    -> Result<WatchStream, StoreError>;

    /// The current (latest committed) revision.
    async fn revision(&self) -> Result<Revision, StoreError>;

    /// Forgets the change history before `revision` (watches from older
    /// revisions then fail with `Compacted`). Current values are kept.
    async fn compact(&self, revision: Revision) -> Result<(), StoreError>;

    /// When this store last answered any request successfully, if it keeps track
    /// ([`Observed`] does; stores themselves answer `None`). Lets a health probe tell a
    /// busy store, whose queue delays the probe, from an unreachable one.
    fn last_answer(&self) -> Option<std::time::Instant> {
        None
    }
}
