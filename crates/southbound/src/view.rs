//! The view model: what a host receives is a set of records with revisions.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

/// One record of a host's view. The value is opaque to the southbound: the compiler encodes
/// it, the agent's backend decodes it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Record {
    /// Unique within one host's view.
    pub key: String,
    /// Opaque bytes.
    pub value: Vec<u8>,
}

impl Record {
    /// A record.
    pub fn new(key: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        Record {
            key: key.into(),
            value: value.into(),
        }
    }

    /// Bytes this record takes on the wire, roughly (key, value and framing).
    pub fn wire_len(&self) -> usize {
        self.key.len() + self.value.len() + 8
    }

    /// The record's reconciliation id (see [`record_id`]).
    pub fn id(&self) -> u64 {
        record_id(&self.key, &self.value)
    }
}

impl From<Record> for weft_proto::Record {
    fn from(r: Record) -> Self {
        weft_proto::Record {
            key: r.key,
            value: r.value,
        }
    }
}

impl From<weft_proto::Record> for Record {
    fn from(r: weft_proto::Record) -> Self {
        Record {
            key: r.key,
            value: r.value,
        }
    }
}

/// The changes of one host's view made at one revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ViewDelta {
    /// The revision these changes produced.
    pub revision: u64,
    /// Records created or replaced.
    pub upserts: Vec<Record>,
    /// Keys removed.
    pub deleted: Vec<String>,
}

/// Where the controller's southbound reads host views from; implemented by the compile loop.
///
/// Revisions must be monotonic across controller restarts (the store revision is a good
/// choice): an agent resumes from the revision it holds, and a source that reused numbers
/// would make it skip changes.
pub trait ViewSource: Send + Sync + 'static {
    /// The host's current view and the revision it reflects.
    fn snapshot(&self, host: &str) -> (u64, Vec<Record>);

    /// The changes to that host's view after `revision`, in revision order, if this source
    /// still holds them: `Some(vec![])` when nothing changed for the host, `None` when that
    /// history is gone or `revision` is not one this source produced (newer than its
    /// current revision). `None` makes the session reconcile instead.
    fn changes_since(&self, host: &str, revision: u64) -> Option<Vec<ViewDelta>>;

    /// Notified (with the newest revision) whenever any host's view may have changed.
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64>;

    /// Notified whenever `host`'s view may have changed. By default any host's change
    /// notifies ([`ViewSource::subscribe`]); a source that knows which hosts a change
    /// concerns wakes only their sessions, so one change does not cost every session a
    /// `changes_since` call.
    fn subscribe_host(&self, host: &str) -> tokio::sync::watch::Receiver<u64> {
        let _ = host;
        self.subscribe()
    }
}

/// The 64-bit reconciliation id of a record: [`weft_reconcile::element_id`] over the key and
/// the SHA-256 of the value. Both ends compute it the same way.
pub fn record_id(key: &str, value: &[u8]) -> u64 {
    weft_reconcile::element_id(key.as_bytes(), &Sha256::digest(value))
}

/// A view as an agent holds it: records by key and the revision they reflect.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LocalView {
    /// The revision; 0 when the agent holds no view.
    pub revision: u64,
    /// Records by key.
    pub records: BTreeMap<String, Vec<u8>>,
}

/// A whole update the agent applies in one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Commit {
    /// Replace the whole view.
    Replace {
        /// The new revision.
        revision: u64,
        /// The whole view.
        records: BTreeMap<String, Vec<u8>>,
    },
    /// Remove `deletes` first, then insert or replace `upserts`.
    Patch {
        /// The new revision.
        revision: u64,
        /// Records created or replaced.
        upserts: Vec<Record>,
        /// Keys removed.
        deletes: Vec<String>,
    },
}

impl Commit {
    /// The revision the view reflects after this commit.
    pub fn revision(&self) -> u64 {
        match self {
            Commit::Replace { revision, .. } | Commit::Patch { revision, .. } => *revision,
        }
    }
}

impl LocalView {
    /// Applies a commit in memory.
    pub fn apply(&mut self, commit: &Commit) {
        match commit {
            Commit::Replace { revision, records } => {
                self.records = records.clone();
                self.revision = *revision;
            }
            Commit::Patch {
                revision,
                upserts,
                deletes,
            } => {
                for k in deletes {
                    self.records.remove(k);
                }
                for r in upserts {
                    self.records.insert(r.key.clone(), r.value.clone());
                }
                self.revision = *revision;
            }
        }
    }

    /// The reconciliation ids of every record, with the key each stands for.
    pub fn ids(&self) -> Vec<(u64, &str)> {
        self.records
            .iter()
            .map(|(k, v)| (record_id(k, v), k.as_str()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_deletes_before_upserting() {
        let mut v = LocalView::default();
        v.apply(&Commit::Patch {
            revision: 3,
            upserts: vec![
                Record::new("a", b"1".to_vec()),
                Record::new("b", b"2".to_vec()),
            ],
            deletes: vec![],
        });
        v.apply(&Commit::Patch {
            revision: 5,
            upserts: vec![Record::new("a", b"9".to_vec())],
            deletes: vec!["a".into(), "b".into()],
        });
        assert_eq!(v.revision, 5);
        assert_eq!(v.records.len(), 1);
        assert_eq!(v.records["a"], b"9");
    }

    #[test]
    fn record_ids_depend_on_key_and_value() {
        assert_eq!(record_id("k", b"v"), Record::new("k", b"v".to_vec()).id());
        assert_ne!(record_id("k", b"v"), record_id("k", b"w"));
        assert_ne!(record_id("k", b"v"), record_id("j", b"v"));
    }
}
