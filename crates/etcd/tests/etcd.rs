//! What the etcd backend does beyond the shared conformance suite, on real
//! single-member etcd processes: connecting and failing over, watch corner cases and
//! resumption across a restart, compaction at a delete (compared with the embedded
//! store), leases, and the leader lock.

use std::net::{Ipv4Addr, TcpListener};
use std::time::{Duration, Instant};

use futures::StreamExt;
use weft_etcd::testing::EtcdCluster;
use weft_etcd::{EtcdOptions, EtcdStore};
use weft_store::{
    EmbeddedStore, Event, Revision, Store, StoreError, Txn, TxnOutcome, WatchBatch, WatchStream,
};

const WAIT: Duration = Duration::from_secs(20);

fn start() -> EtcdCluster {
    EtcdCluster::single().expect("start etcd")
}

async fn connect(etcd: &EtcdCluster) -> EtcdStore {
    EtcdStore::connect(&etcd.endpoints())
        .await
        .unwrap_or_else(|e| panic!("connecting to {:?}: {e}", etcd.endpoints()))
}

async fn commit(store: &dyn Store, txn: Txn) -> Revision {
    match store.txn(txn).await {
        Ok(TxnOutcome::Committed { revision }) => revision,
        other => panic!("expected a commit, got {other:?}"),
    }
}

async fn next(stream: &mut WatchStream) -> Result<WatchBatch, StoreError> {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("watch batch within the wait")
        .expect("watch stream ended")
}

/// A loopback port nobody listens on.
fn dead_endpoint() -> String {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    format!("127.0.0.1:{}", listener.local_addr().unwrap().port())
}

#[tokio::test]
async fn connect_fails_fast_and_names_the_endpoint_when_nothing_answers() {
    let dead = dead_endpoint();
    let options = EtcdOptions {
        retry_for: Duration::from_secs(1),
        ..Default::default()
    };
    let started = Instant::now();
    let err = EtcdStore::connect_with(std::slice::from_ref(&dead), options)
        .await
        .expect_err("nothing listens there");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    match err {
        StoreError::Unavailable(msg) => assert!(msg.contains(&dead), "{msg}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(matches!(
        EtcdStore::connect(&[]).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(matches!(
        EtcdStore::connect(&["https://127.0.0.1:2379".into()]).await,
        Err(StoreError::Invalid(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_skips_a_dead_endpoint_and_reports_the_one_in_use() {
    let etcd = start();
    let live = etcd.endpoints()[0].clone();
    let store = EtcdStore::connect(&[dead_endpoint(), live.clone()])
        .await
        .expect("the second endpoint answers");
    assert_eq!(
        store.endpoint_in_use().await.as_deref(),
        Some(live.as_str())
    );
    let rev = commit(&store, Txn::new().put("k", "v")).await;
    assert_eq!(store.get("k").await.unwrap().1, rev);
    let status = store.member_status().await.unwrap();
    assert!(status.is_leader(), "a single member leads: {status:?}");
    assert!(status.version.starts_with("3."), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_from_zero_replays_all_history_like_from_one() {
    let etcd = start();
    let store = connect(&etcd).await;
    let r1 = commit(&store, Txn::new().put("w/a", "1")).await;
    let r2 = commit(&store, Txn::new().delete("w/a").put("w/b", "2")).await;
    let mut zero = store.watch("w/", 0).await.unwrap();
    let mut one = store.watch("w/", 1).await.unwrap();
    for want in [r1, r2] {
        let (a, b) = (
            next(&mut zero).await.unwrap(),
            next(&mut one).await.unwrap(),
        );
        assert_eq!(a, b);
        assert_eq!(a.revision, want);
    }
    // The whole key space, with the empty prefix.
    let mut all = store.watch("", 0).await.unwrap();
    assert_eq!(next(&mut all).await.unwrap().revision, r1);
}

/// The same scenario on both backends: a delete at exactly the compaction revision is
/// replayed by a watch from that revision (etcd alone would drop its tombstone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_at_a_delete_keeps_it_replayable_on_both_backends() {
    async fn scenario(store: &dyn Store) -> Vec<Result<WatchBatch, String>> {
        let base = store.revision().await.unwrap();
        commit(store, Txn::new().put("c/a", "1")).await;
        commit(store, Txn::new().put("c/b", "1")).await;
        let del = commit(store, Txn::new().delete("c/a")).await;
        commit(store, Txn::new().put("c/c", "1").delete("c/b")).await;
        store.compact(del).await.unwrap();
        let mut out = Vec::new();
        // Revisions relative to the base, so both backends compare equal.
        let rel = |b: WatchBatch| {
            let shift = |r: Revision| r - base;
            WatchBatch {
                revision: shift(b.revision),
                events: b
                    .events
                    .into_iter()
                    .map(|e| match e {
                        Event::Put(mut kv) => {
                            kv.create_revision = shift(kv.create_revision);
                            kv.mod_revision = shift(kv.mod_revision);
                            Event::Put(kv)
                        }
                        Event::Delete { key, mod_revision } => Event::Delete {
                            key,
                            mod_revision: shift(mod_revision),
                        },
                    })
                    .collect(),
            }
        };
        let mut stream = store.watch("c/", del).await.unwrap();
        for _ in 0..2 {
            out.push(next(&mut stream).await.map(rel).map_err(|e| e.to_string()));
        }
        // Either backend may refuse at once or as the stream's first item.
        let before = match store.watch("c/", del - 1).await {
            Ok(mut stream) => next(&mut stream).await,
            Err(err) => Err(err),
        };
        out.push(match before {
            Err(StoreError::Compacted {
                requested,
                compacted,
            }) => Err(format!(
                "compacted {} {}",
                requested - base,
                compacted - base
            )),
            other => Ok(rel(other.expect("a Compacted error, not a stream error"))),
        });
        out
    }
    let dir = tempfile::tempdir().unwrap();
    let embedded = EmbeddedStore::open(&dir.path().join("s.redb")).unwrap();
    let etcd = start();
    let store = connect(&etcd).await;
    let want = scenario(&embedded).await;
    assert_eq!(scenario(&store).await, want);
    assert!(
        matches!(&want[0], Ok(b) if b.events == [Event::Delete { key: "c/a".into(), mod_revision: 3 }]),
        "{want:?}"
    );
    assert_eq!(want[2], Err("compacted 2 3".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_edges_beyond_the_conformance_suite() {
    let etcd = start();
    let store = connect(&etcd).await;
    let rev = commit(&store, Txn::new().put("r/\u{7f}", "a").put("r/a", "b")).await;
    // start_after past the prefix's end: nothing, but the revision.
    let resp = store
        .range(weft_store::RangeRequest {
            prefix: "r/".into(),
            start_after: Some("s".into()),
            limit: 0,
        })
        .await
        .unwrap();
    assert!(resp.kvs.is_empty() && !resp.more);
    assert_eq!(resp.revision, rev);
    // The empty prefix is every key.
    let all = store
        .range(weft_store::RangeRequest::default())
        .await
        .unwrap();
    let keys: Vec<_> = all.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["r/a", "r/\u{7f}"]);
    assert!(matches!(store.get("").await, Err(StoreError::Invalid(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_without_gaps_across_a_restart_of_etcd() {
    let mut etcd = start();
    let options = EtcdOptions {
        retry_for: Duration::from_secs(2),
        ..Default::default()
    };
    let store = EtcdStore::connect_with(&etcd.endpoints(), options)
        .await
        .unwrap();
    let first = commit(&store, Txn::new().put("x/0", "0")).await;
    let mut stream = store.watch("x/", first).await.unwrap();
    assert_eq!(next(&mut stream).await.unwrap().revision, first);

    etcd.member(0).kill();
    // While etcd is down a write cannot be applied: refused, never half-done.
    match store.txn(Txn::new().put("x/down", "d")).await {
        Err(StoreError::Unavailable(msg)) => assert!(!msg.is_empty()),
        other => panic!("expected Unavailable while etcd is down, got {other:?}"),
    }
    etcd.member(0).restart().expect("restart etcd");

    let mut revs = Vec::new();
    for i in 1..=5 {
        revs.push(commit(&store, Txn::new().put(format!("x/{i}"), "v")).await);
    }
    for want in revs {
        assert_eq!(next(&mut stream).await.unwrap().revision, want);
    }
    assert_eq!(store.get("x/down").await.unwrap().0, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_grant_renew_and_revoke_with_their_keys() {
    let etcd = start();
    let store = connect(&etcd).await;
    let lease = store.grant_lease(Duration::from_secs(10)).await.unwrap();
    assert_eq!(lease.ttl, Duration::from_secs(10));
    let left = store.lease_time_to_live(lease.id).await.unwrap().unwrap();
    assert!(
        left <= lease.ttl && left >= Duration::from_secs(8),
        "{left:?}"
    );
    assert_eq!(
        store.keep_alive_once(lease.id).await.unwrap(),
        Some(lease.ttl)
    );
    let rev = store.put_with_lease("l/k", "v", lease.id).await.unwrap();
    assert_eq!(store.get("l/k").await.unwrap().0.unwrap().mod_revision, rev);

    store.revoke_lease(lease.id).await.unwrap();
    assert_eq!(
        store.get("l/k").await.unwrap().0,
        None,
        "revoking deletes the key"
    );
    assert_eq!(store.lease_time_to_live(lease.id).await.unwrap(), None);
    assert_eq!(store.keep_alive_once(lease.id).await.unwrap(), None);
    store
        .revoke_lease(lease.id)
        .await
        .expect("revoking twice is fine");
    assert!(store.put_with_lease("l/k", "v", lease.id).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_lease_outlives_its_ttl_and_expires_once_dropped() {
    let etcd = start();
    let store = connect(&etcd).await;
    let lease = store.grant_lease(Duration::from_secs(2)).await.unwrap();
    store.put_with_lease("e/k", "v", lease.id).await.unwrap();
    let keeper = store.keep_lease_alive(lease);
    tokio::time::sleep(lease.ttl * 2 + Duration::from_secs(1)).await;
    assert!(!keeper.is_lost());
    assert!(store.get("e/k").await.unwrap().0.is_some(), "kept alive");

    drop(keeper);
    let dropped = Instant::now();
    let mut watch = store
        .watch("e/", store.revision().await.unwrap() + 1)
        .await
        .unwrap();
    let batch = next(&mut watch).await.unwrap();
    assert!(matches!(&batch.events[..], [Event::Delete { key, .. }] if key == "e/k"));
    let took = dropped.elapsed();
    assert!(
        took <= lease.ttl + Duration::from_secs(2),
        "the key outlived its lease by too much: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_is_exclusive_and_passes_on_when_resigned_or_dropped() {
    let etcd = start();
    let store = connect(&etcd).await;
    let ttl = Duration::from_secs(5);
    let a = store.campaign("lock/bgp", "a", ttl).await.unwrap();
    assert_eq!(a.id(), "a");
    let (kv, _) = store.get("lock/bgp").await.unwrap();
    let kv = kv.unwrap();
    assert_eq!(kv.value, b"a");
    assert_eq!(kv.mod_revision, a.revision());

    let b = tokio::spawn({
        let store = store.clone();
        async move { store.campaign("lock/bgp", "b", ttl).await }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!b.is_finished(), "b must wait while a holds the lock");
    assert!(!a.is_lost());

    let resigned = Instant::now();
    a.resign().await.unwrap();
    let b = tokio::time::timeout(WAIT, b)
        .await
        .expect("b takes over")
        .unwrap()
        .unwrap();
    assert!(
        resigned.elapsed() < Duration::from_secs(2),
        "{:?}",
        resigned.elapsed()
    );
    assert_eq!(store.get("lock/bgp").await.unwrap().0.unwrap().value, b"b");

    let c = tokio::spawn({
        let store = store.clone();
        async move { store.campaign("lock/bgp", "c", ttl).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!c.is_finished());
    drop(b);
    let c = tokio::time::timeout(WAIT, c)
        .await
        .expect("c takes over")
        .unwrap()
        .unwrap();
    assert!(!c.is_lost());
    assert_eq!(store.get("lock/bgp").await.unwrap().0.unwrap().value, b"c");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_learns_it_lost_the_lock_when_its_key_goes_and_is_fenced() {
    let etcd = start();
    let store = connect(&etcd).await;
    let guard = store
        .campaign("lock/house", "a", Duration::from_secs(5))
        .await
        .unwrap();
    let fenced = |v: &str| {
        Txn::new()
            .when_mod_revision(guard.key(), guard.revision())
            .put("data/x", v.to_owned())
    };
    assert!(matches!(
        store.txn(fenced("1")).await.unwrap(),
        TxnOutcome::Committed { .. }
    ));
    // Someone (an operator) deletes the lock key.
    commit(&store, Txn::new().delete("lock/house")).await;
    tokio::time::timeout(WAIT, guard.lost())
        .await
        .expect("lost is signalled");
    assert!(guard.is_lost());
    assert!(matches!(
        store.txn(fenced("2")).await.unwrap(),
        TxnOutcome::Failed { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_etcd_learns_it_within_its_ttl() {
    let mut etcd = start();
    let options = EtcdOptions {
        request_timeout: Duration::from_millis(500),
        ..Default::default()
    };
    let store = EtcdStore::connect_with(&etcd.endpoints(), options)
        .await
        .unwrap();
    let ttl = Duration::from_secs(2);
    let guard = store.campaign("lock/cut", "a", ttl).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!guard.is_lost(), "kept alive while etcd answers");

    etcd.member(0).pause().unwrap();
    let paused = Instant::now();
    let lost = tokio::time::timeout(WAIT, guard.lost()).await;
    let took = paused.elapsed();
    etcd.member(0).resume().unwrap();
    lost.expect("lost is signalled while etcd is frozen");
    // It must give up no later than etcd could expire the lease (a TTL after the last
    // renewal), and not before the last renewal's TTL has run out.
    assert!(took <= ttl + Duration::from_millis(200), "{took:?}");
    assert!(took >= ttl / 3, "{took:?}");
}

/// etcd closes a connection whose client pings more often than its
/// `--grpc-keepalive-min-time` (5 s), which makes a write in flight at that moment
/// end with an unknown outcome: with the default options, an idle connection with a
/// watch open must stay the same connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_with_a_watch_open_is_not_closed_by_etcd() {
    let etcd = start();
    let store = connect(&etcd).await;
    let mut stream = store.watch("idle/", 0).await.unwrap();
    let connects = store.connects();
    assert_eq!(connects, 1);
    tokio::time::sleep(Duration::from_secs(25)).await;
    let rev = commit(&store, Txn::new().put("idle/k", "v")).await;
    assert_eq!(next(&mut stream).await.unwrap().revision, rev);
    assert_eq!(
        store.connects(),
        connects,
        "etcd closed the connection while idle"
    );
}
