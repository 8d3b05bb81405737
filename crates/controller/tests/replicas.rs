//! Controller replicas on one real etcd (Debian's etcd-server): writes
//! through either replica are validated against everything both wrote,
//! every replica's intent and compiled pipelines follow every write, and
//! conflicting writes racing on two replicas give each address once.

use std::time::{Duration, Instant};

use serde_json::json;
use weft_client::Client;
use weft_controller::{Controller, ControllerConfig, StoreConfig};
use weft_etcd::testing::EtcdCluster;
use weft_model::Kind;

async fn replica(endpoints: &[String], dir: &std::path::Path) -> Controller {
    let mut cfg = ControllerConfig::new(dir);
    cfg.southbound = Some(weft_controller::southbound::SouthboundConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    });
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.store = StoreConfig::Etcd(endpoints.to_vec());
    Controller::start(cfg).await.unwrap()
}

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_intent() {
    let etcd =
        EtcdCluster::single().expect("etcd-server is installed (scripts/test.sh installs it)");
    let eps = etcd.endpoints();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = replica(&eps, d1.path()).await;
    // The first replica created the admin token; the second finds tokens and makes none.
    let token = a.new_admin_token.clone().unwrap();
    let b = replica(&eps, d2.path()).await;
    assert!(
        b.new_admin_token.is_none(),
        "tokens live in the shared store"
    );
    let ca = Client::new(format!("http://{}", a.addr), Some(token.clone()));
    let cb = Client::new(format!("http://{}", b.addr), Some(token));

    let p = ca
        .create(Kind::Project, &json!({"name": "blue"}))
        .await
        .unwrap();
    let pid = p["id"].as_str().unwrap().to_string();
    let net = ca
        .create(
            Kind::L2Network,
            &json!({"name": "n", "project": pid, "subnets": [{"cidr": "10.0.0.0/24"}]}),
        )
        .await
        .unwrap();
    let nid = net["id"].as_str().unwrap().to_string();
    // B sees A's writes, and validates against them.
    eventually("B to see the network", || async {
        cb.get(Kind::L2Network, &nid).await.is_ok()
    })
    .await;
    let sg = cb
        .create(Kind::SecurityGroup, &json!({"project": pid, "name": "open", "rules": [{"direction": "egress"}, {"direction": "ingress"}]}))
        .await
        .unwrap();
    let g1 = cb
        .create(Kind::InstancePort, &json!({"project": pid, "name": "g1", "host": "h1",
            "bindings": [{"service": nid, "fixed_ips": [{"ip": "10.0.0.5"}], "security_groups": [sg["id"]]}]}))
        .await
        .unwrap();
    let err = ca
        .create(
            Kind::InstancePort,
            &json!({"project": pid, "name": "dup",
            "bindings": [{"service": nid, "fixed_ips": [{"ip": "10.0.0.5"}]}]}),
        )
        .await
        .expect_err("A must know B's address 10.0.0.5");
    assert_eq!(err.status(), Some(409), "{err}");
    ca.create(Kind::InstancePort, &json!({"project": pid, "name": "g2", "host": "h1",
        "bindings": [{"service": nid, "fixed_ips": [{"ip": "10.0.0.6"}], "security_groups": [sg["id"]]}]}))
        .await
        .unwrap();

    // Both replicas compile everything: a trace on either sees both ports.
    for (c, name) in [(&ca, "A"), (&cb, "B")] {
        eventually(&format!("replica {name} to trace g1 -> g2"), || async {
            let r = c
                .request(
                    weft_client::Method::POST,
                    "/v1/trace",
                    &[],
                    Some(&json!({"from": "g1", "expression": "icmp4 && ip4.dst == 10.0.0.6"})),
                    None,
                )
                .await;
            r.is_ok_and(|(_, _, v)| v["verdicts"].to_string().contains("delivered to port g2"))
        })
        .await;
    }

    // Writes racing on both replicas for the same addresses: each given once.
    let mut tasks = Vec::new();
    for i in 0..32 {
        let c = if i % 2 == 0 { ca.clone() } else { cb.clone() };
        let (pid, nid) = (pid.clone(), nid.clone());
        tasks.push(tokio::spawn(async move {
            c.create(
                Kind::InstancePort,
                &json!({"project": pid, "bindings": [{"service": nid, "fixed_ips": [{"ip": format!("10.0.0.{}", 100 + i % 8)}]}]}),
            )
            .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert!(matches!(e.status(), Some(409) | Some(503)), "{e}"),
        }
    }
    assert!(ok <= 8 && ok > 0, "{ok} creates succeeded for 8 addresses");
    eventually("both replicas to agree", || async {
        let la = ca.list(Kind::ServicePort, &[]).await.unwrap().len();
        let lb = cb.list(Kind::ServicePort, &[]).await.unwrap().len();
        la == lb && la == 2 + ok
    })
    .await;
    let ips: Vec<String> = ca
        .list(Kind::ServicePort, &[])
        .await
        .unwrap()
        .iter()
        .map(|sp| sp["fixed_ips"][0]["ip"].as_str().unwrap().to_string())
        .collect();
    let mut uniq = ips.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), ips.len(), "an address was given twice: {ips:?}");
    let _ = g1;

    // The BGP speaker is a singleton: configured through either replica,
    // it runs on exactly one, and moves when that one goes away. Passive
    // peers: no packet leaves the machine.
    let cfg = json!({"local_as": 64512, "router_id": "192.0.2.100", "listen": null,
        "peers": [{"address": "192.0.2.254", "remote_as": 65001, "passive": true}]});
    cb.request(weft_client::Method::PUT, "/v1/bgp", &[], Some(&cfg), None)
        .await
        .unwrap();
    let running = |c: Client| async move {
        c.request(weft_client::Method::GET, "/v1/bgp", &[], None, None)
            .await
            .map(|(_, _, v)| {
                v["running"].as_bool().unwrap_or(false)
                    && v["peers"].as_array().is_some_and(|p| !p.is_empty())
            })
            .unwrap_or(false)
    };
    eventually("exactly one replica to run the speaker", || {
        let (ca, cb) = (ca.clone(), cb.clone());
        async move { running(ca).await ^ running(cb).await }
    })
    .await;
    let (leader, follower, fc) = if running(ca.clone()).await {
        (a, b, cb.clone())
    } else {
        (b, a, ca.clone())
    };
    leader.shutdown().await;
    eventually("the speaker to move to the other replica", || {
        let fc = fc.clone();
        async move { running(fc).await }
    })
    .await;
    follower.shutdown().await;
}
