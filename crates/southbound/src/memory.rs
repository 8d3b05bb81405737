//! [`MemoryViewSource`]: a [`ViewSource`] over in-memory maps, one per host, with a bounded
//! change history per host. Tests and benchmarks feed it directly; it is also the shape the
//! compile loop's source can take (per-host history, so that an idle host can always resume).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::RwLock;

use tokio::sync::watch;

use crate::view::{Record, ViewDelta, ViewSource};

/// One host's view and its recent history.
#[derive(Default)]
struct HostView {
    records: BTreeMap<String, Vec<u8>>,
    history: VecDeque<ViewDelta>,
    /// Every change after this revision is still in `history`.
    floor: u64,
}

struct Inner {
    revision: u64,
    hosts: HashMap<String, HostView>,
}

/// One change to one host's view, for [`MemoryViewSource::apply`].
#[derive(Clone, Debug, Default)]
pub struct HostChange {
    /// The host.
    pub host: String,
    /// Records to create or replace.
    pub upserts: Vec<Record>,
    /// Keys to remove.
    pub deletes: Vec<String>,
}

/// Per-host views in memory with the last `history_per_host` deltas of each host.
pub struct MemoryViewSource {
    inner: RwLock<Inner>,
    tx: watch::Sender<u64>,
    history_per_host: usize,
}

impl MemoryViewSource {
    /// An empty source at revision `start_revision` keeping `history_per_host` deltas per host.
    pub fn new(start_revision: u64, history_per_host: usize) -> Self {
        let (tx, _) = watch::channel(start_revision);
        MemoryViewSource {
            inner: RwLock::new(Inner {
                revision: start_revision,
                hosts: HashMap::new(),
            }),
            tx,
            history_per_host,
        }
    }

    /// The current revision.
    pub fn revision(&self) -> u64 {
        self.inner.read().expect("view source lock").revision
    }

    /// Applies changes to several hosts' views as one new revision, returned. Changes that
    /// change nothing (same value, absent key) are dropped; the revision advances anyway.
    pub fn apply(&self, changes: Vec<HostChange>) -> u64 {
        let revision = {
            let mut inner = self.inner.write().expect("view source lock");
            inner.revision += 1;
            let revision = inner.revision;
            for change in changes {
                let hv = inner.hosts.entry(change.host).or_default();
                let mut delta = ViewDelta {
                    revision,
                    ..ViewDelta::default()
                };
                for k in change.deletes {
                    if hv.records.remove(&k).is_some() {
                        delta.deleted.push(k);
                    }
                }
                for r in change.upserts {
                    if hv.records.get(&r.key) != Some(&r.value) {
                        hv.records.insert(r.key.clone(), r.value.clone());
                        delta.deleted.retain(|k| *k != r.key);
                        delta.upserts.push(r);
                    }
                }
                if delta.upserts.is_empty() && delta.deleted.is_empty() {
                    continue;
                }
                // Two changes to one host in one batch merge into the same revision's delta.
                match hv.history.back_mut() {
                    Some(last) if last.revision == revision => {
                        last.deleted
                            .retain(|k| !delta.upserts.iter().any(|r| &r.key == k));
                        last.upserts.retain(|r| {
                            !delta.deleted.contains(&r.key)
                                && !delta.upserts.iter().any(|u| u.key == r.key)
                        });
                        last.upserts.append(&mut delta.upserts);
                        last.deleted.append(&mut delta.deleted);
                    }
                    _ => hv.history.push_back(delta),
                }
                while hv.history.len() > self.history_per_host {
                    if let Some(old) = hv.history.pop_front() {
                        hv.floor = old.revision;
                    }
                }
            }
            revision
        };
        self.tx.send_replace(revision);
        revision
    }

    /// Sets one record of one host.
    pub fn put(&self, host: &str, key: &str, value: impl Into<Vec<u8>>) -> u64 {
        self.apply(vec![HostChange {
            host: host.into(),
            upserts: vec![Record::new(key, value)],
            deletes: vec![],
        }])
    }

    /// Removes one record of one host.
    pub fn delete(&self, host: &str, key: &str) -> u64 {
        self.apply(vec![HostChange {
            host: host.into(),
            upserts: vec![],
            deletes: vec![key.into()],
        }])
    }

    /// Forgets every host's history, as a controller that restarted would have.
    pub fn forget_history(&self) {
        let mut inner = self.inner.write().expect("view source lock");
        let revision = inner.revision;
        for hv in inner.hosts.values_mut() {
            hv.history.clear();
            hv.floor = revision;
        }
    }

    /// The host's records (for checking what agents should hold).
    pub fn records(&self, host: &str) -> BTreeMap<String, Vec<u8>> {
        let inner = self.inner.read().expect("view source lock");
        inner
            .hosts
            .get(host)
            .map(|h| h.records.clone())
            .unwrap_or_default()
    }
}

impl ViewSource for MemoryViewSource {
    fn snapshot(&self, host: &str) -> (u64, Vec<Record>) {
        let inner = self.inner.read().expect("view source lock");
        let records = inner
            .hosts
            .get(host)
            .map(|h| {
                h.records
                    .iter()
                    .map(|(k, v)| Record::new(k.clone(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        (inner.revision, records)
    }

    fn changes_since(&self, host: &str, revision: u64) -> Option<Vec<ViewDelta>> {
        let inner = self.inner.read().expect("view source lock");
        if revision > inner.revision {
            return None;
        }
        match inner.hosts.get(host) {
            None => Some(Vec::new()),
            Some(h) if revision < h.floor => None,
            Some(h) => Some(
                h.history
                    .iter()
                    .filter(|d| d.revision > revision)
                    .cloned()
                    .collect(),
            ),
        }
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_bounded_per_host() {
        let s = MemoryViewSource::new(0, 2);
        let r1 = s.put("a", "k1", b"1".to_vec());
        let r2 = s.put("a", "k2", b"2".to_vec());
        let r3 = s.put("b", "k", b"x".to_vec());
        let r4 = s.put("a", "k1", b"3".to_vec());
        // Host a keeps its last two deltas (r2, r4): resuming from r1 is still possible,
        // from 0 it is not.
        let since_r1 = s.changes_since("a", r1).unwrap();
        assert_eq!(
            since_r1.iter().map(|d| d.revision).collect::<Vec<_>>(),
            vec![r2, r4]
        );
        assert!(s.changes_since("a", 0).is_none());
        assert_eq!(s.changes_since("a", r4), Some(vec![]));
        // A change to b does not touch a's history.
        assert_eq!(s.changes_since("b", 0).unwrap()[0].revision, r3);
        assert!(s.changes_since("a", r4 + 1).is_none(), "future revision");
        assert_eq!(s.changes_since("nobody", 0), Some(vec![]));
        s.forget_history();
        assert!(s.changes_since("a", r2).is_none());
        assert_eq!(s.changes_since("a", r4), Some(vec![]));
    }

    #[test]
    fn no_op_changes_leave_no_delta() {
        let s = MemoryViewSource::new(10, 8);
        let r = s.put("a", "k", b"v".to_vec());
        s.put("a", "k", b"v".to_vec());
        s.delete("a", "absent");
        assert_eq!(s.changes_since("a", 10).unwrap().len(), 1);
        assert_eq!(s.changes_since("a", r), Some(vec![]));
        assert_eq!(
            s.snapshot("a"),
            (r + 2, vec![Record::new("k", b"v".to_vec())])
        );
        assert_eq!(*s.subscribe().borrow(), r + 2);
    }
}
