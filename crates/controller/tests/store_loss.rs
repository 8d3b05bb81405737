//! A replica that cannot reach its store stops serving host agents: its views
//! no longer follow intent, so after `store_loss_grace` it closes their
//! sessions and refuses new ones (they move to a replica that reaches the
//! store), and serves them again once the store answers. Here the only
//! etcd member is frozen (SIGSTOP) and thawed.

use std::time::{Duration, Instant};

use serde_json::json;
use weft_agent::{AgentOptions, MemoryBackend, MemoryViewStore};
use weft_client::{Client, Method};
use weft_controller::{Controller, ControllerConfig, StoreConfig};
use weft_etcd::testing::EtcdCluster;
use weft_model::Kind;

async fn until(what: &str, secs: u64, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out after {secs} s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_are_shed_while_the_store_is_unreachable() {
    let mut etcd = EtcdCluster::single().expect("etcd-server is installed");
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ControllerConfig::new(dir.path());
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.store = StoreConfig::Etcd(etcd.endpoints());
    cfg.southbound = Some(weft_controller::southbound::SouthboundConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        store_loss_grace: Duration::from_secs(1),
        ..Default::default()
    });
    let ctl = Controller::start(cfg).await.unwrap();
    let api = Client::new(format!("http://{}", ctl.addr), ctl.new_admin_token.clone());
    let sb = ctl.southbound_addr.unwrap().to_string();
    let (_, _, t) = api
        .request(
            Method::POST,
            "/v1/join-tokens",
            &[],
            Some(&json!({"host": "h1"})),
            None,
        )
        .await
        .unwrap();
    let state = tempfile::tempdir().unwrap();
    let id = weft_agent::enroll(&sb, t["token"].as_str().unwrap(), "h1", state.path())
        .await
        .unwrap();
    let mut opts = AgentOptions::new(vec![sb.clone()]);
    opts.backoff_initial = Duration::from_millis(50);
    opts.backoff_max = Duration::from_millis(300);
    let agent = weft_agent::start(
        id,
        opts,
        Box::new(MemoryViewStore::default()),
        Box::new(MemoryBackend::new()),
    )
    .await
    .unwrap();
    until("the agent to sync", 10, || agent.status().synced).await;
    let sessions = agent.status().sessions;

    // The store stops answering: the session is closed after the grace
    // period and reconnecting is refused, with a reason.
    etcd.member(0).pause().unwrap();
    let shed = until("the session to be closed", 10, || !agent.status().connected).await;
    println!("session closed {shed:?} after the store froze");
    // The last good read may precede the pause by one probe period (grace / 4).
    assert!(
        shed >= Duration::from_millis(700),
        "closed before the grace period: {shed:?}"
    );
    until("a refused reconnection", 10, || {
        agent
            .status()
            .last_error
            .is_some_and(|e| e.contains("cannot reach its store"))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !agent.status().synced,
        "a replica without its store served a view"
    );

    // The store answers again: the agent is served again.
    etcd.member(0).resume().unwrap();
    let back = until("the agent to sync again", 15, || {
        let s = agent.status();
        s.synced && s.sessions > sessions
    })
    .await;
    println!("in sync again {back:?} after the store came back");

    // Intent still flows to it.
    api.create(Kind::Project, &json!({"name": "after"}))
        .await
        .unwrap();
    agent.shutdown().await;
    ctl.shutdown().await;
}
