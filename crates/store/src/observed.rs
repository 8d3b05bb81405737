//! [`Observed`]: a store that remembers when it last answered.
//!
//! A controller that probes its store to decide whether it is still reachable must not take a
//! busy store for a lost one: when thousands of requests are queued (a cold start of thousands
//! of agents, each writing its tunnel address), the probe waits behind them and times out while
//! the store keeps answering the others. Any answer, to anyone, proves the store is there.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::{
    KeyValue, RangeRequest, RangeResponse, Revision, Store, StoreError, Txn, TxnOutcome,
    WatchStream,
};

/// Wraps a store and records the time of its last successful answer (a transaction that
/// committed or failed its compares, a read, a watch opened, ...). Errors are not answers.
pub struct Observed {
    inner: Arc<dyn Store>,
    epoch: Instant,
    /// Nanoseconds after `epoch` of the last answer, plus one (0: never answered).
    last: AtomicU64,
}

impl Observed {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>) -> Observed {
        Observed {
            inner,
            epoch: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn saw<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if r.is_ok() {
            let ns = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
            self.last.fetch_max(ns + 1, Ordering::Relaxed);
        }
        r
    }
}

#[async_trait]
impl Store for Observed {
    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        self.saw(self.inner.txn(txn).await)
    }

    async fn get(&self, key: &str) -> Result<(Option<KeyValue>, Revision), StoreError> {
        self.saw(self.inner.get(key).await)
    }

    async fn range(&self, req: RangeRequest) -> Result<RangeResponse, StoreError> {
        self.saw(self.inner.range(req).await)
    }

    async fn watch(
        &self,
        prefix: &str,
        from_revision: Revision,
    ) -> Result<WatchStream, StoreError> {
        self.saw(self.inner.watch(prefix, from_revision).await)
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        self.saw(self.inner.revision().await)
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.saw(self.inner.compact(revision).await)
    }

    fn last_answer(&self) -> Option<Instant> {
        match self.last.load(Ordering::Relaxed) {
            0 => None,
            ns => Some(self.epoch + Duration::from_nanos(ns - 1)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EmbeddedStore;

    #[tokio::test]
    async fn answers_are_remembered_and_errors_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let inner = Arc::new(EmbeddedStore::open(&dir.path().join("s.redb")).unwrap());
        let store = Observed::new(inner);
        assert_eq!(store.last_answer(), None);
        let before = Instant::now();
        store.txn(Txn::new().put("k", b"v".to_vec())).await.unwrap();
        let first = store.last_answer().expect("a commit is an answer");
        assert!(first >= before && first <= Instant::now());
        tokio::time::sleep(Duration::from_millis(5)).await;
        store.get("k").await.unwrap();
        let second = store.last_answer().unwrap();
        assert!(second > first, "a read is an answer too");
        // A refused request is no answer.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let too_long = "k".repeat(64 * 1024);
        assert!(
            store
                .txn(Txn::new().put(too_long, Vec::new()))
                .await
                .is_err()
        );
        assert_eq!(store.last_answer(), Some(second));
    }
}
