//! Failure tests on a real 3-member etcd cluster on loopback: members die (the one the
//! client uses, then the raft leader) while a writer keeps committing and a watch keeps
//! following; every acknowledged write must be there and be seen, in order. Then the
//! leader lock through a member loss and through the loss of quorum.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use weft_etcd::testing::EtcdCluster;
use weft_etcd::{EtcdOptions, EtcdStore};
use weft_store::{Event, RangeRequest, Revision, Store, StoreError, Txn, TxnOutcome};

/// The whole test must finish within this.
const LIMIT: Duration = Duration::from_secs(150);

/// What the writer was told about each of its writes.
#[derive(Default)]
struct Log {
    /// Key and revision of every acknowledged write.
    acked: Vec<(String, Revision)>,
    /// Writes whose outcome is unknown (the error said so), with the error.
    uncertain: Vec<(String, String)>,
    /// The longest time between two acknowledgements.
    longest_stall: Duration,
}

/// Commits `log/NNNNNN` one after another until told to stop.
async fn writer(store: EtcdStore, stop: Arc<AtomicBool>, log: Arc<Mutex<Log>>) {
    let mut last_ack = Instant::now();
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let key = format!("log/{i:06}");
        match store.txn(Txn::new().put(&key, i.to_string())).await {
            Ok(TxnOutcome::Committed { revision }) => {
                let mut log = log.lock().unwrap();
                log.acked.push((key, revision));
                log.longest_stall = log.longest_stall.max(last_ack.elapsed());
                last_ack = Instant::now();
            }
            Ok(other) => panic!("an unconditional put cannot fail its compares: {other:?}"),
            Err(StoreError::Unavailable(msg)) => {
                log.lock().unwrap().uncertain.push((key, msg));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(other) => panic!("unexpected error for {key}: {other}"),
        }
        i += 1;
    }
}

fn acked(log: &Mutex<Log>) -> usize {
    log.lock().unwrap().acked.len()
}

async fn wait_acked(log: &Mutex<Log>, at_least: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(40);
    while acked(log) < at_least {
        assert!(
            Instant::now() < deadline,
            "{what}: only {} of {at_least} writes acknowledged in 40 s",
            acked(log)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The index of the member that is the raft leader, asked of each live member.
async fn leader(cluster: &EtcdCluster) -> usize {
    for (i, endpoint) in cluster.endpoints().into_iter().enumerate() {
        let options = EtcdOptions {
            retry_for: Duration::from_secs(1),
            ..Default::default()
        };
        if let Ok(store) = EtcdStore::connect_with(std::slice::from_ref(&endpoint), options).await
            && let Ok(status) = store.member_status().await
            && status.is_leader()
        {
            return i;
        }
    }
    panic!("no member says it leads");
}

async fn index_in_use(cluster: &EtcdCluster, store: &EtcdStore) -> usize {
    // Right after a failure the client may be between connections.
    let deadline = Instant::now() + Duration::from_secs(10);
    let in_use = loop {
        if let Some(endpoint) = store.endpoint_in_use().await {
            break endpoint;
        }
        assert!(Instant::now() < deadline, "no connection up for 10 s");
        store.revision().await.expect("a read reconnects");
    };
    cluster
        .endpoints()
        .iter()
        .position(|e| *e == in_use)
        .expect("the endpoint in use is a member")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_keeps_working_when_members_die_and_loses_no_acknowledged_write() {
    tokio::time::timeout(LIMIT, async {
        let mut cluster = EtcdCluster::start(3).expect("start a 3-member etcd cluster");
        let store = EtcdStore::connect(&cluster.endpoints()).await.unwrap();
        let from = store.revision().await.unwrap() + 1;
        let mut watch = store.watch("log/", from).await.unwrap();

        let (stop, log) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(Mutex::new(Log::default())),
        );
        let writing = tokio::spawn(writer(store.clone(), Arc::clone(&stop), Arc::clone(&log)));
        wait_acked(&log, 100, "before any failure").await;

        // 1. Kill the member the client is talking to.
        let victim = index_in_use(&cluster, &store).await;
        let before = acked(&log);
        cluster.member(victim).kill();
        let killed = Instant::now();
        wait_acked(&log, before + 1, "after killing the member in use").await;
        eprintln!(
            "member in use ({victim}) killed: next write acknowledged after {:?}",
            killed.elapsed()
        );
        wait_acked(&log, before + 100, "after killing the member in use").await;
        assert_ne!(index_in_use(&cluster, &store).await, victim);
        assert!(store.connects() >= 2, "the client moved to another member");

        // 2. Bring it back, then kill the raft leader.
        cluster
            .member(victim)
            .restart()
            .expect("restart the killed member");
        let chief = leader(&cluster).await;
        let before = acked(&log);
        cluster.member(chief).kill();
        let killed = Instant::now();
        wait_acked(&log, before + 1, "after killing the leader").await;
        eprintln!(
            "leader ({chief}) killed: next write acknowledged after {:?}",
            killed.elapsed()
        );
        wait_acked(&log, before + 100, "after killing the leader").await;

        stop.store(true, Ordering::Relaxed);
        writing.await.unwrap();
        let log = Arc::try_unwrap(log).ok().unwrap().into_inner().unwrap();
        eprintln!(
            "{} writes acknowledged, {} with unknown outcome, longest stall {:?}",
            log.acked.len(),
            log.uncertain.len(),
            log.longest_stall
        );
        for (key, why) in &log.uncertain {
            eprintln!("  unknown outcome for {key}: {why}");
        }

        // Every acknowledged write is there, at the revision it was acknowledged with.
        let resp = store
            .range(RangeRequest {
                prefix: "log/".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let stored: BTreeMap<&str, Revision> = resp
            .kvs
            .iter()
            .map(|kv| (kv.key.as_str(), kv.mod_revision))
            .collect();
        for (key, rev) in &log.acked {
            assert_eq!(
                stored.get(key.as_str()),
                Some(rev),
                "acknowledged {key} at {rev}"
            );
        }
        // Nothing is there that the writer was not told about.
        let uncertain: Vec<&str> = log.uncertain.iter().map(|(k, _)| k.as_str()).collect();
        for key in stored.keys() {
            assert!(
                log.acked.iter().any(|(k, _)| k == key) || uncertain.contains(key),
                "{key} is stored but was never written"
            );
        }
        let revs: Vec<Revision> = log.acked.iter().map(|(_, r)| *r).collect();
        assert!(
            revs.windows(2).all(|w| w[0] < w[1]),
            "acknowledged revisions go up"
        );

        // The watch opened before the failures saw every write, once, in order.
        let last = *revs.last().unwrap();
        let mut seen: BTreeMap<String, Revision> = BTreeMap::new();
        let mut previous = 0;
        while previous < last {
            let batch = tokio::time::timeout(Duration::from_secs(20), watch.next())
                .await
                .expect("watch batch within 20 s")
                .expect("watch stream ended")
                .expect("watch failed");
            assert!(batch.revision > previous, "watch batches out of order");
            previous = batch.revision;
            for event in batch.events {
                let Event::Put(kv) = event else {
                    panic!("no deletes were made: {event:?}")
                };
                assert!(
                    seen.insert(kv.key, kv.mod_revision).is_none(),
                    "a write seen twice"
                );
            }
        }
        for (key, rev) in &log.acked {
            assert_eq!(seen.get(key), Some(rev), "the watch missed {key}");
        }
    })
    .await
    .expect("cluster failure test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_keeps_its_lock_through_a_member_loss_and_learns_when_quorum_goes() {
    tokio::time::timeout(LIMIT, async {
        let mut cluster = EtcdCluster::start(3).expect("start a 3-member etcd cluster");
        let store = EtcdStore::connect(&cluster.endpoints()).await.unwrap();
        // Long enough to ride out a raft election (1 to 2 s here, more on a busy box)
        // plus the client's failover to another member.
        let ttl = Duration::from_secs(5);
        let guard = store.campaign("lock/bgp", "replica-1", ttl).await.unwrap();

        let first = index_in_use(&cluster, &store).await;
        cluster.member(first).kill();
        tokio::time::sleep(ttl * 2).await;
        assert!(!guard.is_lost(), "one member down must not cost the lock");
        let (kv, _) = store.get("lock/bgp").await.unwrap();
        let kv = kv.expect("the lock key is still there");
        assert_eq!(
            (kv.value.as_slice(), kv.mod_revision),
            (&b"replica-1"[..], guard.revision())
        );

        // Two of three down: no quorum, no renewal; the holder must find out. Kill the
        // raft leader, so that the survivor cannot renew anything (a leader cut off
        // from quorum would go on renewing leases until it steps down).
        let second = leader(&cluster).await;
        cluster.member(second).kill();
        let cut = Instant::now();
        tokio::time::timeout(Duration::from_secs(20), guard.lost())
            .await
            .expect("the holder learns it lost the lock");
        eprintln!(
            "lock lost {:?} after quorum went (TTL {ttl:?})",
            cut.elapsed()
        );
        // No later than the TTL after the last renewal, which was before the kill.
        assert!(
            cut.elapsed() <= ttl + Duration::from_millis(300),
            "{:?}",
            cut.elapsed()
        );
    })
    .await
    .expect("cluster lock test timed out");
}
