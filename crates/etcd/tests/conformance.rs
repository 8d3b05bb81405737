//! The store conformance suite (`weft_store::conformance`, the one the embedded store
//! passes) against real etcd processes: one fresh single-member etcd per check, then the
//! whole suite in order on one etcd that already holds other data.

use std::time::Duration;

use weft_etcd::EtcdStore;
use weft_etcd::testing::EtcdCluster;
use weft_store::{Store, Txn, TxnOutcome, conformance};

/// Every check must finish well within this, or the test fails instead of hanging.
const LIMIT: Duration = Duration::from_secs(120);

async fn connect(etcd: &EtcdCluster) -> EtcdStore {
    EtcdStore::connect(&etcd.endpoints())
        .await
        .unwrap_or_else(|e| panic!("connecting to {:?}: {e}", etcd.endpoints()))
}

macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let etcd = EtcdCluster::single().expect("start etcd");
            let store = connect(&etcd).await;
            tokio::time::timeout(LIMIT, conformance::$name(&store, stringify!($name)))
                .await
                .expect("conformance check timed out");
        }
    )*};
}

conformance_tests!(
    check_revisions,
    check_compares,
    check_create_and_mod_revision,
    check_noop_txns,
    check_invalid_txns,
    check_get_revision,
    check_range,
    check_watch_replay,
    check_watch_from_future,
    check_watch_concurrent_writes,
    check_compaction,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_run_all_on_one_etcd_already_in_use() {
    assert_eq!(
        conformance::CHECKS.len(),
        11,
        "a check was added: list it above too"
    );
    let etcd = EtcdCluster::single().expect("start etcd");
    // The checks must not assume an empty store at its first revision.
    let store = connect(&etcd).await;
    for i in 0..10 {
        let out = store
            .txn(Txn::new().put(format!("other/{i}"), "x"))
            .await
            .unwrap();
        assert!(matches!(out, TxnOutcome::Committed { .. }));
    }
    // A new client per check, on the same etcd; compaction runs last.
    let run = conformance::run_all(|| connect(&etcd));
    tokio::time::timeout(LIMIT * 3, run)
        .await
        .expect("conformance suite timed out");
}
