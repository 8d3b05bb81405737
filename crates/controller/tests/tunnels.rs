//! Hosts' tunnel addresses live in the store (a real etcd here): a controller started later
//! (a restart, a new replica) resolves remote ports to the same tunnels before any host
//! reconnects, and a replica follows the addresses hosts announce to another, so views agree
//! between replicas.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use weft_compiler::HostDirectory;
use weft_controller::{Controller, ControllerConfig, StoreConfig};
use weft_etcd::testing::EtcdCluster;

async fn controller(dir: &std::path::Path, store: StoreConfig) -> Controller {
    let mut cfg = ControllerConfig::new(dir);
    cfg.southbound = None;
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.store = store;
    Controller::start(cfg).await.unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_tunnel_addresses() {
    let etcd =
        EtcdCluster::single().expect("etcd-server is installed (scripts/test.sh installs it)");
    let store = StoreConfig::Etcd(etcd.endpoints());
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = controller(d1.path(), store.clone()).await;
    a.compile().tunnels.announce("h1", ip("192.0.2.2")).await;
    a.compile().tunnels.announce("h1", ip("192.0.2.1")).await;
    // B starts after the writes (loads the last) and follows A's later writes.
    let b = controller(d2.path(), store).await;
    assert_eq!(b.compile().tunnels.tunnel_ip("h1"), Some(ip("192.0.2.1")));
    a.compile().tunnels.announce("h2", ip("192.0.2.2")).await;
    a.compile().tunnels.announce("h1", ip("198.51.100.1")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = &b.compile().tunnels;
        if t.tunnel_ip("h2") == Some(ip("192.0.2.2"))
            && t.tunnel_ip("h1") == Some(ip("198.51.100.1"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica B did not follow A's tunnel addresses: {:?}",
            t.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intent_writes_follow_other_writes_on_another_replica() {
    // A replica whose intent write races another replica's catches up with the last intent
    // commit; writes outside intent/ (a tunnel address here) move the store's revision
    // past it and must not make it wait for intent that never comes.
    let etcd =
        EtcdCluster::single().expect("etcd-server is installed (scripts/test.sh installs it)");
    let store = StoreConfig::Etcd(etcd.endpoints());
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = controller(d1.path(), store.clone()).await;
    let token = a.new_admin_token.clone().unwrap();
    let b = controller(d2.path(), store).await;
    let ca = weft_client::Client::new(format!("http://{}", a.addr), Some(token.clone()));
    let cb = weft_client::Client::new(format!("http://{}", b.addr), Some(token));
    ca.create(
        weft_model::Kind::Project,
        &serde_json::json!({"name": "p1"}),
    )
    .await
    .unwrap();
    a.compile().tunnels.announce("h1", ip("192.0.2.1")).await;
    let t = Instant::now();
    cb.create(
        weft_model::Kind::Project,
        &serde_json::json!({"name": "p2"}),
    )
    .await
    .unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the write waited {:?}",
        t.elapsed()
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnel_addresses_set_through_the_api_reach_every_replica() {
    // A host without a Weft agent (another vendor's VTEP) gets its address by hand:
    // through replica A, and every replica (also one started later) must know it.
    use weft_client::{Client, Method};
    let etcd =
        EtcdCluster::single().expect("etcd-server is installed (scripts/test.sh installs it)");
    let store = StoreConfig::Etcd(etcd.endpoints());
    let (d1, d2, d3) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let a = controller(d1.path(), store.clone()).await;
    let b = controller(d2.path(), store.clone()).await;
    let api = Client::new(format!("http://{}", a.addr), a.new_admin_token.clone());
    let put = serde_json::json!({"address": "192.0.2.99"});
    api.request(Method::PUT, "/v1/hosts/kern/tunnel", &[], Some(&put), None)
        .await
        .unwrap();
    until("B to learn kern's address", || {
        b.compile().tunnels.tunnel_ip("kern") == Some(ip("192.0.2.99"))
    })
    .await;
    let c = controller(d3.path(), store).await;
    assert_eq!(
        c.compile().tunnels.tunnel_ip("kern"),
        Some(ip("192.0.2.99")),
        "a replica started later loads it"
    );
    api.request(Method::DELETE, "/v1/hosts/kern/tunnel", &[], None, None)
        .await
        .unwrap();
    until("B and C to forget it", || {
        b.compile().tunnels.tunnel_ip("kern").is_none()
            && c.compile().tunnels.tunnel_ip("kern").is_none()
    })
    .await;
    a.shutdown().await;
    b.shutdown().await;
    c.shutdown().await;
}

async fn until(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A cold start or a failover: a thousand hosts announce at once. Every address reaches the
/// store (in batches under etcd's 128-operation limit per transaction), and a replica
/// started afterwards knows them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_announcements_is_stored_whole() {
    let etcd =
        EtcdCluster::single().expect("etcd-server is installed (scripts/test.sh installs it)");
    let store = StoreConfig::Etcd(etcd.endpoints());
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = controller(d1.path(), store.clone()).await;
    let addr = |i: usize| -> IpAddr { format!("198.51.100.{}", i % 250 + 1).parse().unwrap() };
    let tunnels = a.compile().tunnels.clone();
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let t = tunnels.clone();
            tokio::spawn(async move { t.announce(&format!("burst-{i}"), addr(i)).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let b = controller(d2.path(), store).await;
    let known = b.compile().tunnels.snapshot();
    for i in 0..1000 {
        assert_eq!(
            known.get(&format!("burst-{i}")),
            Some(&addr(i)),
            "burst-{i} is not in the store"
        );
    }
    a.shutdown().await;
    b.shutdown().await;
}
