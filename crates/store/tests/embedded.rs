//! Tests of `EmbeddedStore`: the shared conformance suite, then what only an
//! embedded file store has (reopen, group commit under load, kill -9, limits,
//! automatic compaction), and a model-based property test.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use proptest::prelude::*;
use tempfile::TempDir;
use weft_store::embedded::EmbeddedOptions;
use weft_store::{
    EmbeddedStore, Event, KeyValue, RangeRequest, Revision, Store, StoreError, Txn, TxnOutcome,
    WatchBatch, WatchStream, conformance,
};

/// A store in a fresh temporary directory, removed when dropped.
struct TempStore {
    // Field order matters: the store closes before its directory goes.
    store: EmbeddedStore,
    dir: TempDir,
}

impl TempStore {
    fn new() -> Self {
        Self::with(EmbeddedOptions::default())
    }
    fn with(options: EmbeddedOptions) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            EmbeddedStore::open_with(&dir.path().join("store.redb"), options).expect("open store");
        Self { store, dir }
    }
    fn file(&self) -> std::path::PathBuf {
        self.dir.path().join("store.redb")
    }
}

async fn commit(store: &dyn Store, txn: Txn) -> Revision {
    match store.txn(txn).await.expect("txn") {
        TxnOutcome::Committed { revision } => revision,
        other => panic!("expected a commit, got {other:?}"),
    }
}

async fn next(stream: &mut WatchStream) -> Result<WatchBatch, StoreError> {
    tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("watch batch within 20 s")
        .expect("watch stream ended")
}

async fn all_kvs(store: &dyn Store) -> (Vec<KeyValue>, Revision) {
    let resp = store.range(RangeRequest::default()).await.expect("range");
    assert!(!resp.more);
    (resp.kvs, resp.revision)
}

// The conformance suite, one test per check so failures are isolated.

macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let s = TempStore::new();
            conformance::$name(&s.store, stringify!($name)).await;
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
async fn conformance_run_all_on_one_store_each() {
    assert_eq!(
        conformance::CHECKS.len(),
        11,
        "a check was added: list it above too"
    );
    let dirs = std::sync::Mutex::new(Vec::new());
    conformance::run_all(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(&dir.path().join("s.redb")).expect("open");
        dirs.lock().unwrap().push(dir);
        async move { store }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_passes_on_a_store_already_in_use() {
    // The checks must not assume an empty store at revision 0.
    let s = TempStore::new();
    for i in 0..10 {
        commit(&s.store, Txn::new().put(format!("other/{i}"), "x")).await;
    }
    for (name, check) in conformance::CHECKS {
        if *name != "check_compaction" {
            check(&s.store, name).await;
        }
    }
}

// Embedded-only behaviour.

#[tokio::test]
async fn reopen_keeps_data_revision_history_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let (kvs, rev) = {
        let store = EmbeddedStore::open(&path).unwrap();
        for i in 0..20u64 {
            let txn = Txn::new()
                .put(format!("k/{}", i % 7), format!("v{i}"))
                .delete(format!("k/{}", (i + 3) % 7));
            commit(&store, txn).await;
        }
        store.compact(5).await.unwrap();
        all_kvs(&store).await
    };
    assert_eq!(rev, 20);

    let store = EmbeddedStore::open(&path).unwrap();
    assert_eq!(store.revision().await.unwrap(), 20);
    assert_eq!(all_kvs(&store).await, (kvs, 20));
    assert_eq!(store.compacted_revision(), 5);
    assert!(matches!(
        store.watch("k/", 4).await,
        Err(StoreError::Compacted {
            requested: 4,
            compacted: 5
        })
    ));
    // History survives the restart: replaying it rebuilds the same state.
    let mut stream = store.watch("k/", 5).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 16 {
        seen.push(next(&mut stream).await.unwrap().revision);
    }
    assert_eq!(seen, (5..=20).collect::<Vec<_>>());
    // And the next commit continues the sequence.
    assert_eq!(commit(&store, Txn::new().put("k/new", "n")).await, 21);
    assert_eq!(next(&mut stream).await.unwrap().revision, 21);
}

#[tokio::test]
async fn a_second_open_of_the_same_file_is_refused() {
    let s = TempStore::new();
    match EmbeddedStore::open(&s.file()) {
        Err(StoreError::Unavailable(msg)) => assert!(msg.contains("already open"), "{msg}"),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn a_file_that_is_not_a_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    assert!(EmbeddedStore::open(&path).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_tasks_commit_with_unique_consecutive_revisions() {
    const TASKS: usize = 64;
    const TXNS: usize = 200;
    let s = TempStore::new();
    let store = Arc::new(s.store);
    let mut handles = Vec::new();
    for t in 0..TASKS {
        let store = Arc::clone(&store);
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::with_capacity(TXNS);
            for i in 0..TXNS {
                let key = format!("c/{t:02}/{i:03}");
                let rev = commit(&*store, Txn::new().put(&key, vec![t as u8; 200])).await;
                mine.push((rev, key));
            }
            mine
        }));
    }
    let mut by_rev = BTreeMap::new();
    for h in handles {
        for (rev, key) in h.await.unwrap() {
            assert!(
                by_rev.insert(rev, key).is_none(),
                "revision {rev} given twice"
            );
        }
    }
    let total = (TASKS * TXNS) as u64;
    assert_eq!(
        by_rev.keys().copied().collect::<Vec<_>>(),
        (1..=total).collect::<Vec<_>>()
    );
    assert_eq!(store.revision().await.unwrap(), total);

    // The change log replays every one of them, in order, one batch each.
    let mut stream = store.watch("c/", 1).await.unwrap();
    for (rev, key) in &by_rev {
        let batch = next(&mut stream).await.unwrap();
        assert_eq!(batch.revision, *rev);
        assert_eq!(batch.events.len(), 1);
        assert_eq!(batch.events[0].key(), key);
    }
    let (kvs, _) = all_kvs(&*store).await;
    assert_eq!(kvs.len(), TASKS * TXNS);
    drop(stream);
    // Unwrap the Arc so the store closes before the temp dir is removed.
    drop(Arc::into_inner(store));
    drop(s.dir);
}

#[tokio::test]
async fn key_and_value_size_limits_name_the_limit() {
    let s = TempStore::new();
    let opts = EmbeddedOptions::default();
    let long_key = "k".repeat(opts.max_key_len + 1);
    match s.store.txn(Txn::new().put(&long_key, "v")).await {
        Err(StoreError::Invalid(msg)) => {
            assert!(msg.contains("4096") && msg.contains("max_key_len"), "{msg}")
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    match s
        .store
        .txn(Txn::new().when_mod_revision(&long_key, 0))
        .await
    {
        Err(StoreError::Invalid(msg)) => assert!(msg.contains("max_key_len"), "{msg}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    let big = vec![7u8; opts.max_value_len + 1];
    match s.store.txn(Txn::new().put("k", big)).await {
        Err(StoreError::Invalid(msg)) => {
            assert!(
                msg.contains("1048576") && msg.contains("max_value_len"),
                "{msg}"
            )
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    let mut too_many = Txn::new();
    for i in 0..=opts.max_txn_ops {
        too_many = too_many.put(format!("k{i}"), "v");
    }
    match s.store.txn(too_many).await {
        Err(StoreError::Invalid(msg)) => assert!(msg.contains("max_txn_ops"), "{msg}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert_eq!(s.store.revision().await.unwrap(), 0);

    // Exactly at the limits is fine, and reads back whole.
    let key = "k".repeat(opts.max_key_len);
    let value: Vec<u8> = (0..opts.max_value_len).map(|i| (i % 251) as u8).collect();
    commit(&s.store, Txn::new().put(&key, value.clone())).await;
    let (kv, _) = s.store.get(&key).await.unwrap();
    assert_eq!(kv.unwrap().value, value);
}

#[tokio::test]
async fn change_log_is_compacted_automatically() {
    let s = TempStore::with(EmbeddedOptions {
        history: 32,
        ..Default::default()
    });
    for i in 0..200u64 {
        commit(
            &s.store,
            Txn::new().put(format!("a/{}", i % 10), format!("{i}")),
        )
        .await;
    }
    let floor = s.store.compacted_revision();
    // At most `history` plus one trimming step (history/16 = 2) is kept.
    assert!(
        floor > 200 - 32 - 3 && floor <= 200 - 32 + 1,
        "floor {floor}"
    );
    match s.store.watch("a/", floor - 1).await {
        Err(StoreError::Compacted { compacted, .. }) => assert_eq!(compacted, floor),
        other => panic!("expected Compacted, got {:?}", other.map(|_| "a stream")),
    }
    let mut stream = s.store.watch("a/", 200 - 31).await.unwrap();
    for rev in 169..=200 {
        assert_eq!(next(&mut stream).await.unwrap().revision, rev);
    }
    // Current values are untouched by compaction.
    let (kvs, _) = all_kvs(&s.store).await;
    assert_eq!(kvs.len(), 10);
    assert!(kvs.iter().all(|kv| kv.mod_revision > 190));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_watcher_is_replayed_from_the_log_and_never_blocks_writers() {
    let s = TempStore::with(EmbeddedOptions {
        watch_buffer: 4,
        ..Default::default()
    });
    let mut slow = s.store.watch("w/", 1).await.unwrap();
    // Read one batch so the watcher is live, then fall far behind.
    commit(&s.store, Txn::new().put("w/0", "0")).await;
    assert_eq!(next(&mut slow).await.unwrap().revision, 1);
    let started = Instant::now();
    for i in 1..300u64 {
        commit(&s.store, Txn::new().put(format!("w/{i}"), format!("{i}"))).await;
    }
    assert!(started.elapsed() < Duration::from_secs(60));
    for rev in 2..=300u64 {
        let batch = next(&mut slow).await.unwrap();
        assert_eq!(batch.revision, rev);
        assert_eq!(batch.events[0].key(), format!("w/{}", rev - 1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_behind_compacted_history_gets_compacted_then_ends() {
    let s = TempStore::with(EmbeddedOptions {
        watch_buffer: 2,
        history: 16,
        ..Default::default()
    });
    let mut slow = s.store.watch("w/", 1).await.unwrap();
    commit(&s.store, Txn::new().put("w/0", "0")).await;
    assert_eq!(next(&mut slow).await.unwrap().revision, 1);
    for i in 1..100u64 {
        commit(&s.store, Txn::new().put(format!("w/{i}"), "x")).await;
    }
    match next(&mut slow).await {
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            assert_eq!(requested, 2);
            assert!(compacted > 2);
        }
        other => panic!("expected Compacted, got {other:?}"),
    }
    assert!(
        slow.next().await.is_none(),
        "the stream ends after the error"
    );
}

#[tokio::test]
async fn watch_streams_end_with_closed_when_the_store_is_dropped() {
    let s = TempStore::new();
    let mut stream = s.store.watch("", 1).await.unwrap();
    let TempStore { store, dir } = s;
    drop(store);
    assert!(matches!(next(&mut stream).await, Err(StoreError::Closed)));
    assert!(stream.next().await.is_none());
    // The file is closed: it can be opened again.
    EmbeddedStore::open(&dir.path().join("store.redb")).unwrap();
}

#[tokio::test]
async fn invalid_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = EmbeddedStore::open_with(
        &dir.path().join("s.redb"),
        EmbeddedOptions {
            history: 0,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("history"), "{err}");
}

// Crash safety: a child process commits in a loop and reports each commit;
// it is killed with SIGKILL; every reported commit must be in the file.

const CRASH_ENV: &str = "WEFT_STORE_CRASH_CHILD";

/// The child half of `kill9_keeps_every_reported_commit`; it only runs when
/// that test re-executes this binary with `WEFT_STORE_CRASH_CHILD` set.
#[test]
#[ignore = "child process of kill9_keeps_every_reported_commit"]
fn crash_child() {
    let Some(path) = std::env::var_os(CRASH_ENV) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let store = Arc::new(EmbeddedStore::open(Path::new(&path)).unwrap());
        let start = store.revision().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut tasks = Vec::new();
        for t in 0..8u64 {
            let store = Arc::clone(&store);
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                // The deadline only guards against an orphaned child.
                while Instant::now() < deadline {
                    let key = format!("crash/{start}/{t}/{i}");
                    let txn = Txn::new()
                        .put(&key, crash_value(&key))
                        .put(format!("crash/last/{t}"), key.clone());
                    let rev = commit(&*store, txn).await;
                    println!("committed {rev} {key}");
                    i += 1;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

fn crash_value(key: &str) -> Vec<u8> {
    key.bytes().cycle().take(200).collect()
}

#[test]
fn kill9_keeps_every_reported_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.redb");
    let exe = std::env::current_exe().unwrap();
    let mut reported: Vec<(Revision, String)> = Vec::new();

    for round in 0..3 {
        let mut child = Command::new(&exe)
            .args([
                "crash_child",
                "--exact",
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CRASH_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let wanted = 200 + round * 150;
        let mut this_round = 0;
        while this_round < wanted {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("child exited after {this_round} commits"))
                .unwrap();
            if let Some(rest) = line.strip_prefix("committed ") {
                let (rev, key) = rest.split_once(' ').unwrap();
                reported.push((rev.parse().unwrap(), key.to_owned()));
                this_round += 1;
            }
        }
        // SIGKILL, while its tasks are committing.
        child.kill().unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "child must have been killed");
        // Lines already in the pipe were reported before death: they count.
        for line in lines {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("committed ") {
                let (rev, key) = rest.split_once(' ').unwrap();
                reported.push((rev.parse().unwrap(), key.to_owned()));
            }
        }
    }

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = EmbeddedStore::open(&path).expect("reopen after kill -9");
        let current = store.revision().await.unwrap();
        let max_reported = reported.iter().map(|(r, _)| *r).max().unwrap();
        assert!(
            current >= max_reported,
            "revision {current} < reported {max_reported}"
        );
        for (rev, key) in &reported {
            let (kv, _) = store.get(key).await.unwrap();
            let kv = kv.unwrap_or_else(|| panic!("{key} reported at {rev} is lost"));
            assert_eq!(kv.mod_revision, *rev, "{key}");
            assert_eq!(kv.value, crash_value(key), "{key}");
        }
        // The change log is whole: revisions 1..=current, each with its key.
        let by_rev: HashMap<Revision, &str> =
            reported.iter().map(|(r, k)| (*r, k.as_str())).collect();
        let mut stream = store.watch("crash/", 1).await.unwrap();
        for rev in 1..=current {
            let batch = next(&mut stream).await.unwrap();
            assert_eq!(batch.revision, rev, "log must hold every revision");
            if let Some(key) = by_rev.get(&rev) {
                assert_eq!(batch.events[0].key(), *key);
            }
        }
        eprintln!(
            "kill -9: {} reported commits checked, store at revision {current}",
            reported.len()
        );
    });
}

// Model-based property test: random transaction sequences give the same
// outcomes, final state and history as a BTreeMap model.

#[derive(Default)]
struct Model {
    revision: Revision,
    kvs: BTreeMap<String, KeyValue>,
    history: Vec<WatchBatch>,
}

impl Model {
    fn mod_revision(&self, key: &str) -> Revision {
        self.kvs.get(key).map_or(0, |kv| kv.mod_revision)
    }

    fn apply(&mut self, txn: &Txn) -> TxnOutcome {
        let holds = txn.compares.iter().all(|c| match c {
            weft_store::Compare::ModRevision { key, revision } => {
                self.mod_revision(key) == *revision
            }
        });
        if !holds {
            return TxnOutcome::Failed {
                revision: self.revision,
            };
        }
        let next = self.revision + 1;
        let mut events = Vec::new();
        for op in &txn.ops {
            match op {
                weft_store::Op::Put { key, value } => {
                    let create = self.kvs.get(key).map_or(next, |kv| kv.create_revision);
                    let kv = KeyValue {
                        key: key.clone(),
                        value: value.clone(),
                        create_revision: create,
                        mod_revision: next,
                    };
                    self.kvs.insert(key.clone(), kv.clone());
                    events.push(Event::Put(kv));
                }
                weft_store::Op::Delete { key } => {
                    if self.kvs.remove(key).is_some() {
                        events.push(Event::Delete {
                            key: key.clone(),
                            mod_revision: next,
                        });
                    }
                }
            }
        }
        if !events.is_empty() {
            self.revision = next;
            self.history.push(WatchBatch {
                revision: next,
                events,
            });
        }
        TxnOutcome::Committed {
            revision: self.revision,
        }
    }
}

/// A compare as generated: resolved against the model when the txn is built.
#[derive(Clone, Debug)]
enum GenCompare {
    Current(usize),
    Absent(usize),
    Off(usize, u64),
}

#[derive(Clone, Debug)]
enum GenOp {
    Put(usize, u8),
    Delete(usize),
}

const KEYS: [&str; 6] = ["a/1", "a/2", "a/2/x", "b/1", "b/2", "c"];

fn gen_txn() -> impl Strategy<Value = (Vec<GenCompare>, Vec<GenOp>)> {
    let cmp = prop_oneof![
        3 => (0..KEYS.len()).prop_map(GenCompare::Current),
        1 => (0..KEYS.len()).prop_map(GenCompare::Absent),
        1 => ((0..KEYS.len()), 1..3u64).prop_map(|(k, d)| GenCompare::Off(k, d)),
    ];
    let op = prop_oneof![
        3 => ((0..KEYS.len()), any::<u8>()).prop_map(|(k, v)| GenOp::Put(k, v)),
        1 => (0..KEYS.len()).prop_map(GenOp::Delete),
    ];
    (
        proptest::collection::vec(cmp, 0..3),
        proptest::collection::vec(op, 0..5),
    )
}

/// Builds concrete txns (compares resolved against the model state in
/// sequence) and the outcomes the model expects.
fn resolve(spec: &[(Vec<GenCompare>, Vec<GenOp>)]) -> (Vec<Txn>, Vec<TxnOutcome>, Model) {
    let mut model = Model::default();
    let mut txns = Vec::new();
    let mut outcomes = Vec::new();
    for (compares, ops) in spec {
        let mut txn = Txn::new();
        for c in compares {
            txn = match *c {
                GenCompare::Current(k) => {
                    txn.when_mod_revision(KEYS[k], model.mod_revision(KEYS[k]))
                }
                GenCompare::Absent(k) => txn.when_mod_revision(KEYS[k], 0),
                GenCompare::Off(k, d) => {
                    txn.when_mod_revision(KEYS[k], model.mod_revision(KEYS[k]) + d)
                }
            };
        }
        let mut used = std::collections::HashSet::new();
        for op in ops {
            txn = match *op {
                GenOp::Put(k, v) if used.insert(k) => txn.put(KEYS[k], vec![v; (v % 5) as usize]),
                GenOp::Delete(k) if used.insert(k) => txn.delete(KEYS[k]),
                _ => txn,
            };
        }
        outcomes.push(model.apply(&txn));
        txns.push(txn);
    }
    (txns, outcomes, model)
}

async fn check_against_model(store: &EmbeddedStore, model: &Model) {
    let (kvs, rev) = all_kvs(store).await;
    assert_eq!(rev, model.revision);
    assert_eq!(kvs, model.kvs.values().cloned().collect::<Vec<_>>());
    for prefix in ["", "a/", "b/"] {
        let mut stream = store.watch(prefix, 1).await.unwrap();
        let want: Vec<WatchBatch> = model
            .history
            .iter()
            .filter_map(|b| {
                let events: Vec<Event> = b
                    .events
                    .iter()
                    .filter(|e| e.key().starts_with(prefix))
                    .cloned()
                    .collect();
                (!events.is_empty()).then_some(WatchBatch {
                    revision: b.revision,
                    events,
                })
            })
            .collect();
        for w in &want {
            assert_eq!(&next(&mut stream).await.unwrap(), w);
        }
    }
}

proptest! {
    // No failure file: a failing case is printed, minimized, in the output.
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_txns_match_a_btreemap_model(
        spec in proptest::collection::vec(gen_txn(), 1..24),
        concurrent in any::<bool>(),
    ) {
        let (txns, expected, model) = resolve(&spec);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("p.redb");
            {
                let store = EmbeddedStore::open(&path).unwrap();
                let got: Vec<TxnOutcome> = if concurrent {
                    // Submitted together, in order: they share commit batches,
                    // so compares must see earlier txns of the same batch.
                    futures::future::join_all(txns.into_iter().map(|t| store.txn(t)))
                        .await
                        .into_iter()
                        .map(|r| r.unwrap())
                        .collect()
                } else {
                    let mut got = Vec::new();
                    for t in txns {
                        got.push(store.txn(t).await.unwrap());
                    }
                    got
                };
                assert_eq!(got, expected);
                check_against_model(&store, &model).await;
            }
            let store = EmbeddedStore::open(&path).unwrap();
            check_against_model(&store, &model).await;
        });
    }
}
