//! A backend-agnostic conformance suite for [`Store`] implementations.
//!
//! Every backend (embedded, etcd, ...) runs the same checks, through the
//! trait only. Each `check_*` function takes a store and a key root it may
//! use alone (keys `{root}/...` are "inside", keys such as `{root}~x` are
//! siblings outside the watched prefix), and panics with a message on the
//! first violation, so it is meant to be called from tests.
//!
//! What the checks assume of the store: nobody else writes to it while a
//! check runs (revisions are global, and the checks count them); it may be
//! non-empty and at any revision. [`check_compaction`] compacts the whole
//! store's history, so give it a store of its own. [`run_all`] gives every
//! check a fresh store from a factory.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use futures::future::{BoxFuture, join_all};

use crate::{
    Event, KeyValue, RangeRequest, Revision, Store, StoreError, Txn, TxnOutcome, WatchBatch,
    WatchStream,
};

/// How long a check waits for a watch batch before it declares it missing.
const WAIT: Duration = Duration::from_secs(20);

/// A check as a plain function pointer: `(store, root)`.
pub type Check = for<'a> fn(&'a dyn Store, &'a str) -> BoxFuture<'a, ()>;

macro_rules! checks {
    ($($name:ident),* $(,)?) => {
        /// Every check, by name, in the order [`run_all`] runs them.
        pub const CHECKS: &[(&str, Check)] = &[$(
            (stringify!($name), {
                fn boxed<'a>(store: &'a dyn Store, root: &'a str) -> BoxFuture<'a, ()> {
                    Box::pin($name(store, root))
                }
                boxed
            }),
        )*];
    };
}

checks!(
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

/// Runs every check in [`CHECKS`], each on a fresh store from `make`, with
/// the check's name as its key root. Prints the name of each check to
/// stderr first, so that a panic is easy to place.
pub async fn run_all<S, F, Fut>(mut make: F)
where
    S: Store,
    F: FnMut() -> Fut,
    Fut: Future<Output = S>,
{
    for (name, check) in CHECKS {
        eprintln!("conformance: {name}");
        let store = make().await;
        check(&store, name).await;
    }
}

// Helpers. They panic with what was expected and what came instead.

async fn commit(store: &dyn Store, txn: Txn) -> Revision {
    let shown = format!("{txn:?}");
    match store.txn(txn).await {
        Ok(TxnOutcome::Committed { revision }) => revision,
        other => panic!("expected {shown} to commit, got {other:?}"),
    }
}

async fn current(store: &dyn Store) -> Revision {
    store.revision().await.expect("revision() failed")
}

async fn get(store: &dyn Store, key: &str) -> (Option<KeyValue>, Revision) {
    store
        .get(key)
        .await
        .unwrap_or_else(|e| panic!("get({key:?}) failed: {e}"))
}

async fn must_get(store: &dyn Store, key: &str) -> KeyValue {
    match get(store, key).await {
        (Some(kv), _) => kv,
        (None, rev) => panic!("expected key {key:?} to exist at revision {rev}, it is absent"),
    }
}

async fn watch(store: &dyn Store, prefix: &str, from: Revision) -> WatchStream {
    store
        .watch(prefix, from)
        .await
        .unwrap_or_else(|e| panic!("watch({prefix:?}, {from}) failed: {e}"))
}

async fn next_batch(stream: &mut WatchStream, what: &str) -> WatchBatch {
    match tokio::time::timeout(WAIT, stream.next()).await {
        Ok(Some(Ok(batch))) => batch,
        Ok(Some(Err(e))) => panic!("{what}: watch failed: {e}"),
        Ok(None) => panic!("{what}: watch stream ended"),
        Err(_) => panic!("{what}: no watch batch within {WAIT:?}"),
    }
}

fn put_event(key: &str, value: &[u8], create: Revision, modified: Revision) -> Event {
    Event::Put(KeyValue {
        key: key.into(),
        value: value.to_vec(),
        create_revision: create,
        mod_revision: modified,
    })
}

fn delete_event(key: &str, revision: Revision) -> Event {
    Event::Delete {
        key: key.into(),
        mod_revision: revision,
    }
}

/// Asserts that a watch from `from` reports `Compacted` for `from`, either
/// at once or as the first stream item (etcd reports it asynchronously).
async fn expect_compacted(store: &dyn Store, prefix: &str, from: Revision, at_least: Revision) {
    let err = match store.watch(prefix, from).await {
        Err(e) => e,
        Ok(mut stream) => match tokio::time::timeout(WAIT, stream.next()).await {
            Ok(Some(Err(e))) => e,
            other => panic!(
                "watch from compacted revision {from}: expected a Compacted error, got {other:?}"
            ),
        },
    };
    match err {
        StoreError::Compacted {
            requested,
            compacted,
        } => {
            assert_eq!(requested, from, "Compacted error names the wrong revision");
            assert!(
                compacted >= at_least,
                "Compacted says history is kept from {compacted}, but it was compacted to {at_least}"
            );
        }
        other => panic!("watch from compacted revision {from}: expected Compacted, got {other}"),
    }
}

// The checks.

/// Each committed transaction takes the next revision, shared by all its
/// keys; `revision()`, `get` and `range` report it.
pub async fn check_revisions(store: &dyn Store, root: &str) {
    let (a, b, c) = (
        format!("{root}/a"),
        format!("{root}/b"),
        format!("{root}/c"),
    );
    let base = current(store).await;

    let r1 = commit(store, Txn::new().put(&a, "a1").put(&b, "b1")).await;
    assert_eq!(r1, base + 1, "first txn must take revision base+1");
    assert_eq!(current(store).await, r1);
    for key in [&a, &b] {
        let (kv, rev) = get(store, key).await;
        let kv = kv.unwrap_or_else(|| panic!("{key} missing after commit"));
        assert_eq!((kv.create_revision, kv.mod_revision), (r1, r1), "{key}");
        assert_eq!(rev, r1, "get must return the current revision");
    }

    let r2 = commit(store, Txn::new().put(&a, "a2")).await;
    assert_eq!(r2, r1 + 1);
    let r3 = commit(store, Txn::new().put(&c, "c3").delete(&b)).await;
    assert_eq!(r3, r2 + 1);
    assert_eq!(current(store).await, r3);
    assert_eq!(get(store, &b).await, (None, r3), "deleted key must be gone");
    let kv = must_get(store, &c).await;
    assert_eq!((kv.create_revision, kv.mod_revision), (r3, r3));
    assert_eq!(kv.value, b"c3");

    let resp = store
        .range(RangeRequest {
            prefix: format!("{root}/"),
            ..Default::default()
        })
        .await
        .expect("range failed");
    assert_eq!(resp.revision, r3, "range must report the current revision");
    let seen: Vec<_> = resp
        .kvs
        .iter()
        .map(|kv| (kv.key.as_str(), kv.mod_revision))
        .collect();
    assert_eq!(seen, vec![(a.as_str(), r2), (c.as_str(), r3)]);
}

/// Compares: absent (0), equal, stale and future revisions; a failed
/// compare writes nothing at all and reports the current revision.
pub async fn check_compares(store: &dyn Store, root: &str) {
    let (x, y, z) = (
        format!("{root}/x"),
        format!("{root}/y"),
        format!("{root}/z"),
    );

    let r1 = commit(store, Txn::new().put(&x, "x1")).await;

    // "Absent" on a present key fails, and the other ops are not applied.
    let out = store
        .txn(Txn::new().when_mod_revision(&x, 0).put(&y, "no").delete(&x))
        .await
        .expect("txn failed");
    assert_eq!(out, TxnOutcome::Failed { revision: r1 });
    assert_eq!(
        current(store).await,
        r1,
        "a failed txn must not take a revision"
    );
    assert_eq!(get(store, &y).await.0, None, "failed txn wrote {y}");
    assert_eq!(
        must_get(store, &x).await.value,
        b"x1",
        "failed txn deleted {x}"
    );

    // "Absent" on an absent key holds.
    let r2 = commit(store, Txn::new().when_mod_revision(&y, 0).put(&y, "y2")).await;
    assert_eq!(r2, r1 + 1);

    // Equal holds; the stale revision then fails.
    let r3 = commit(store, Txn::new().when_mod_revision(&x, r1).put(&x, "x3")).await;
    assert_eq!(r3, r2 + 1);
    let out = store
        .txn(Txn::new().when_mod_revision(&x, r1).put(&x, "stale"))
        .await
        .expect("txn failed");
    assert_eq!(out, TxnOutcome::Failed { revision: r3 });
    assert_eq!(must_get(store, &x).await.value, b"x3");

    // A revision from the future fails too.
    let out = store
        .txn(Txn::new().when_mod_revision(&x, r3 + 100).put(&x, "future"))
        .await
        .expect("txn failed");
    assert_eq!(out, TxnOutcome::Failed { revision: r3 });

    // All compares must hold: one good, one stale -> nothing written.
    let out = store
        .txn(
            Txn::new()
                .when_mod_revision(&y, r2)
                .when_mod_revision(&x, r1)
                .delete(&y)
                .put(&z, "no"),
        )
        .await
        .expect("txn failed");
    assert_eq!(out, TxnOutcome::Failed { revision: r3 });
    assert_eq!(
        must_get(store, &y).await.mod_revision,
        r2,
        "{y} was touched"
    );
    assert_eq!(get(store, &z).await.0, None, "{z} was written");

    // Both good -> applied.
    let r4 = commit(
        store,
        Txn::new()
            .when_mod_revision(&y, r2)
            .when_mod_revision(&x, r3)
            .delete(&y)
            .put(&z, "z4"),
    )
    .await;
    assert_eq!(r4, r3 + 1);

    // A deleted key compares as absent.
    let r5 = commit(store, Txn::new().when_mod_revision(&y, 0).put(&y, "y5")).await;
    assert_eq!(r5, r4 + 1);
    assert_eq!(current(store).await, r5);
}

/// `create_revision` stays while a key lives, `mod_revision` follows each
/// write, and a key re-created after a delete starts afresh.
pub async fn check_create_and_mod_revision(store: &dyn Store, root: &str) {
    let k = format!("{root}/k");
    let r1 = commit(store, Txn::new().put(&k, "1")).await;
    let kv = must_get(store, &k).await;
    assert_eq!((kv.create_revision, kv.mod_revision), (r1, r1));

    let r2 = commit(store, Txn::new().put(&k, "2")).await;
    let kv = must_get(store, &k).await;
    assert_eq!((kv.create_revision, kv.mod_revision), (r1, r2));
    assert_eq!(kv.value, b"2");

    let r3 = commit(store, Txn::new().delete(&k)).await;
    assert_eq!(r3, r2 + 1, "deleting a present key takes a revision");
    assert_eq!(get(store, &k).await, (None, r3));

    let r4 = commit(store, Txn::new().put(&k, "4")).await;
    let kv = must_get(store, &k).await;
    assert_eq!((kv.create_revision, kv.mod_revision), (r4, r4));

    // An empty value is a value, not a delete.
    let r5 = commit(store, Txn::new().put(&k, Vec::new())).await;
    let kv = must_get(store, &k).await;
    assert_eq!((kv.create_revision, kv.mod_revision), (r4, r5));
    assert!(kv.value.is_empty());
}

/// Transactions that change nothing (deleting an absent key, no ops, only
/// compares) commit without an error, take no revision and wake no watcher.
pub async fn check_noop_txns(store: &dyn Store, root: &str) {
    let (absent, end) = (format!("{root}/absent"), format!("{root}/end"));
    let base = current(store).await;

    let noops = [
        Txn::new().delete(&absent),
        Txn::new(),
        Txn::new().when_mod_revision(&absent, 0),
        Txn::new().when_mod_revision(&absent, 0).delete(&absent),
    ];
    for txn in noops {
        let shown = format!("{txn:?}");
        let out = store.txn(txn).await.expect("txn failed");
        assert_eq!(
            out,
            TxnOutcome::Committed { revision: base },
            "{shown} changes nothing: it must commit at the current revision"
        );
    }
    assert_eq!(current(store).await, base);
    assert_eq!(get(store, &absent).await, (None, base));

    let mut stream = watch(store, &format!("{root}/"), base + 1).await;
    let r1 = commit(store, Txn::new().put(&end, "end")).await;
    assert_eq!(r1, base + 1);
    let batch = next_batch(&mut stream, "after no-op txns").await;
    assert_eq!(
        batch.revision, r1,
        "no-op txns must not produce watch batches"
    );
}

/// Malformed transactions are refused with `Invalid` and write nothing:
/// an empty key, a key written twice.
pub async fn check_invalid_txns(store: &dyn Store, root: &str) {
    let k = format!("{root}/k");
    let base = current(store).await;
    let bad = [
        Txn::new().put("", "v"),
        Txn::new().put(&k, "1").put(&k, "2"),
        Txn::new().put(&k, "1").delete(&k),
    ];
    for txn in bad {
        let shown = format!("{txn:?}");
        match store.txn(txn).await {
            Err(StoreError::Invalid(msg)) => assert!(!msg.is_empty()),
            other => panic!("{shown} must be refused as Invalid, got {other:?}"),
        }
    }
    assert_eq!(current(store).await, base, "a refused txn took a revision");
    assert_eq!(get(store, &k).await.0, None, "a refused txn wrote {k}");
}

/// `get` returns the store's current revision, not the key's.
pub async fn check_get_revision(store: &dyn Store, root: &str) {
    let (a, b) = (format!("{root}/a"), format!("{root}/b"));
    let r1 = commit(store, Txn::new().put(&a, "a")).await;
    let r2 = commit(store, Txn::new().put(&b, "b")).await;
    let (kv, rev) = get(store, &a).await;
    assert_eq!(rev, r2, "get must report the store revision");
    assert_eq!(kv.map(|kv| kv.mod_revision), Some(r1));
    assert_eq!(get(store, &format!("{root}/none")).await, (None, r2));
}

/// Range reads: byte order, prefix bounds, `start_after`, `limit`, `more`,
/// and the snapshot revision.
pub async fn check_range(store: &dyn Store, root: &str) {
    let inside = ["B", "a", "b", "b/c", "c", "é"].map(|s| format!("{root}/{s}"));
    let outside = [root.to_owned(), format!("{root}0"), format!("{root}.x")];
    // Write in an order unlike the key order, over two txns.
    let r1 = commit(
        store,
        Txn::new()
            .put(&inside[4], "v4")
            .put(&outside[0], "out")
            .put(&inside[0], "v0")
            .put(&inside[5], "v5"),
    )
    .await;
    let r2 = commit(
        store,
        Txn::new()
            .put(&inside[3], "v3")
            .put(&outside[1], "out")
            .put(&inside[1], "v1")
            .put(&outside[2], "out")
            .put(&inside[2], "v2"),
    )
    .await;

    let prefix = format!("{root}/");
    let range = |start_after: Option<String>, limit: usize| {
        let req = RangeRequest {
            prefix: prefix.clone(),
            start_after,
            limit,
        };
        async move {
            let shown = format!("{req:?}");
            store
                .range(req)
                .await
                .unwrap_or_else(|e| panic!("range {shown} failed: {e}"))
        }
    };
    let keys = |kvs: &[KeyValue]| kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>();

    let all = range(None, 0).await;
    assert_eq!(
        keys(&all.kvs),
        inside.to_vec(),
        "keys in byte order, prefix only"
    );
    assert!(!all.more);
    assert_eq!(all.revision, r2);
    for (i, kv) in all.kvs.iter().enumerate() {
        assert_eq!(kv.value, format!("v{i}").as_bytes(), "{}", kv.key);
        let rev = if [0, 4, 5].contains(&i) { r1 } else { r2 };
        assert_eq!(
            (kv.create_revision, kv.mod_revision),
            (rev, rev),
            "{}",
            kv.key
        );
    }

    let two = range(None, 2).await;
    assert_eq!(keys(&two.kvs), inside[..2].to_vec());
    assert!(two.more, "limit 2 of 6 must say more");
    let exact = range(None, inside.len()).await;
    assert_eq!(keys(&exact.kvs), inside.to_vec());
    assert!(!exact.more, "limit equal to the count must not say more");

    for page in 1..=inside.len() + 1 {
        let mut got = Vec::new();
        let mut after = None;
        loop {
            let resp = range(after.clone(), page).await;
            assert!(resp.kvs.len() <= page);
            got.extend(keys(&resp.kvs));
            if !resp.more {
                break;
            }
            after = resp.kvs.last().map(|kv| kv.key.clone());
        }
        assert_eq!(got, inside.to_vec(), "pagination by {page}");
    }

    let after_b = range(Some(inside[2].clone()), 0).await;
    assert_eq!(keys(&after_b.kvs), inside[3..].to_vec());
    let after_absent = range(Some(format!("{root}/bb")), 0).await;
    assert_eq!(keys(&after_absent.kvs), inside[4..].to_vec());
    let before_prefix = range(Some("\u{1}".into()), 0).await;
    assert_eq!(keys(&before_prefix.kvs), inside.to_vec());
    let past_end = range(Some(format!("{root}/ÿ")), 0).await;
    assert!(past_end.kvs.is_empty() && !past_end.more);

    let sub = store
        .range(RangeRequest {
            prefix: format!("{root}/b"),
            ..Default::default()
        })
        .await
        .expect("range failed");
    assert_eq!(keys(&sub.kvs), inside[2..4].to_vec());
    let none = store
        .range(RangeRequest {
            prefix: format!("{root}/nothing/"),
            ..Default::default()
        })
        .await
        .expect("range failed");
    assert!(none.kvs.is_empty() && !none.more);
    assert_eq!(
        none.revision, r2,
        "an empty range still reports the revision"
    );
}

/// A watch replays history from a revision (all of it from the first one),
/// one batch per transaction with changes under the prefix, events in the
/// transaction's order, then follows new commits.
pub async fn check_watch_replay(store: &dyn Store, root: &str) {
    let p = format!("{root}/");
    let (a, b, end) = (
        format!("{root}/a"),
        format!("{root}/b"),
        format!("{root}/end"),
    );
    let (out1, out2) = (format!("{root}~x"), format!("{root}~y"));
    let base = current(store).await;

    let r1 = commit(store, Txn::new().put(&out1, "o").put(&a, "a1")).await;
    let r2 = commit(store, Txn::new().put(&out2, "o")).await;
    let r3 = commit(store, Txn::new().put(&b, "b3").delete(&a).delete(&out1)).await;
    let r4 = commit(store, Txn::new().put(&a, "a4")).await;
    assert_eq!(r4, base + 4);
    let _ = r2;

    let expected = [
        WatchBatch {
            revision: r1,
            events: vec![put_event(&a, b"a1", r1, r1)],
        },
        WatchBatch {
            revision: r3,
            events: vec![put_event(&b, b"b3", r3, r3), delete_event(&a, r3)],
        },
        WatchBatch {
            revision: r4,
            events: vec![put_event(&a, b"a4", r4, r4)],
        },
    ];

    let mut from_start = watch(store, &p, base + 1).await;
    let mut from_middle = watch(store, &p, r3).await;
    let mut from_r2 = watch(store, &p, r2).await;
    for want in &expected {
        assert_eq!(
            &next_batch(&mut from_start, "replay from start").await,
            want
        );
    }
    for want in &expected[1..] {
        assert_eq!(
            &next_batch(&mut from_middle, "replay from middle").await,
            want
        );
        assert_eq!(&next_batch(&mut from_r2, "replay from r2").await, want);
    }
    let mut live = watch(store, &p, r4 + 1).await;

    // After the replay, every stream follows new commits.
    let r5 = commit(store, Txn::new().put(&end, "e")).await;
    let want = WatchBatch {
        revision: r5,
        events: vec![put_event(&end, b"e", r5, r5)],
    };
    for (stream, what) in [
        (&mut from_start, "start"),
        (&mut from_middle, "middle"),
        (&mut from_r2, "r2"),
        (&mut live, "live"),
    ] {
        assert_eq!(next_batch(stream, what).await, want, "{what}");
    }

    // A prefix that is a sibling sees only its own keys.
    let mut siblings = watch(store, &format!("{root}~"), base + 1).await;
    let got = next_batch(&mut siblings, "sibling prefix").await;
    assert_eq!(got.revision, r1);
    assert_eq!(got.events, vec![put_event(&out1, b"o", r1, r1)]);
    assert_eq!(next_batch(&mut siblings, "sibling").await.revision, r2);
    let got = next_batch(&mut siblings, "sibling").await;
    assert_eq!(got.events, vec![delete_event(&out1, r3)]);
}

/// A watch from a revision not reached yet starts delivering at it.
pub async fn check_watch_from_future(store: &dyn Store, root: &str) {
    let p = format!("{root}/");
    let base = current(store).await;
    let mut stream = watch(store, &p, base + 3).await;
    for i in 1..=4u64 {
        commit(store, Txn::new().put(format!("{root}/k{i}"), "v")).await;
    }
    assert_eq!(next_batch(&mut stream, "future").await.revision, base + 3);
    assert_eq!(next_batch(&mut stream, "future").await.revision, base + 4);
}

/// Many concurrent writers: every commit gets a unique revision, together
/// consecutive; a watch opened before them sees exactly the transactions
/// that touched its prefix, each as one batch, in revision order.
pub async fn check_watch_concurrent_writes(store: &dyn Store, root: &str) {
    const WRITERS: usize = 8;
    const TXNS: usize = 25;
    let p = format!("{root}/");
    let base = current(store).await;
    let mut stream = watch(store, &p, base + 1).await;

    let writer = |w: usize| async move {
        let mut mine = Vec::new();
        for i in 0..TXNS {
            let inside = format!("{root}/w{w}/{i}");
            let outside = format!("{root}~w{w}/{i}");
            // Every third transaction writes only outside the prefix.
            let touches = i % 3 != 0;
            let txn = if touches {
                Txn::new()
                    .put(&outside, "o")
                    .put(&inside, format!("{w}.{i}"))
            } else {
                Txn::new().put(&outside, "o")
            };
            let rev = commit(store, txn).await;
            mine.push((rev, touches.then_some((inside, format!("{w}.{i}")))));
        }
        mine
    };

    let expected_batches = WRITERS * (TXNS - TXNS.div_ceil(3));
    let reader = async {
        let mut got = Vec::new();
        while got.len() < expected_batches {
            got.push(next_batch(&mut stream, "concurrent writes").await);
        }
        got
    };
    let (written, got) = futures::join!(join_all((0..WRITERS).map(writer)), reader);

    let all: BTreeSet<Revision> = written.iter().flatten().map(|(rev, _)| *rev).collect();
    let total = (WRITERS * TXNS) as u64;
    assert_eq!(all.len() as u64, total, "revisions must be unique");
    assert_eq!(
        all.iter().copied().collect::<Vec<_>>(),
        (base + 1..=base + total).collect::<Vec<_>>(),
        "revisions must be consecutive"
    );

    let mut want: Vec<WatchBatch> = written
        .into_iter()
        .flatten()
        .filter_map(|(rev, inside)| {
            inside.map(|(key, value)| WatchBatch {
                revision: rev,
                events: vec![put_event(&key, value.as_bytes(), rev, rev)],
            })
        })
        .collect();
    want.sort_by_key(|b| b.revision);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w, "watch batches must match the inside txns, in order");
    }
    assert_eq!(current(store).await, base + total);
}

/// After `compact(r)`, a watch from before `r` fails with `Compacted`, one
/// from `r` replays from there, and current values are all still readable.
/// Compacts the whole store's history.
pub async fn check_compaction(store: &dyn Store, root: &str) {
    let p = format!("{root}/");
    let mut revs = Vec::new();
    for i in 0..5 {
        revs.push(
            commit(
                store,
                Txn::new().put(format!("{root}/k{i}"), format!("v{i}")),
            )
            .await,
        );
    }
    let r3 = revs[2];
    store.compact(r3).await.expect("compact failed");

    expect_compacted(store, &p, revs[1], r3).await;
    expect_compacted(store, &p, revs[0], r3).await;
    if r3 > 1 {
        expect_compacted(store, &p, 1, r3).await;
    }

    let mut stream = watch(store, &p, r3).await;
    for &rev in &revs[2..] {
        assert_eq!(
            next_batch(&mut stream, "after compaction").await.revision,
            rev
        );
    }

    let resp = store
        .range(RangeRequest {
            prefix: p.clone(),
            ..Default::default()
        })
        .await
        .expect("range failed");
    assert_eq!(resp.kvs.len(), 5, "compaction must keep current values");
    for (i, kv) in resp.kvs.iter().enumerate() {
        assert_eq!(kv.value, format!("v{i}").as_bytes());
        assert_eq!(kv.mod_revision, revs[i]);
    }

    let latest = *revs.last().unwrap_or(&r3);
    assert!(
        store.compact(latest + 10).await.is_err(),
        "compacting to a future revision must fail"
    );
    // Compacting everything up to the latest revision still allows watching
    // from it and from the next one.
    store
        .compact(latest)
        .await
        .expect("compact to latest failed");
    expect_compacted(store, &p, latest - 1, latest).await;
    let mut stream = watch(store, &p, latest).await;
    assert_eq!(
        next_batch(&mut stream, "from latest").await.revision,
        latest
    );
    let mut stream = watch(store, &p, latest + 1).await;
    let r = commit(store, Txn::new().put(format!("{root}/after"), "x")).await;
    assert_eq!(
        next_batch(&mut stream, "after full compaction")
            .await
            .revision,
        r
    );
}
