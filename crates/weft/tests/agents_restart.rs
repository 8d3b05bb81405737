//! Host agents and a real `weft up` process that is killed with SIGKILL and
//! restarted while the agents run: the agents keep their last view while it
//! is gone, reconnect with backoff, and converge on every change made after
//! the restart.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use weft_agent::{AgentOptions, MemoryBackend, MemoryViewStore};
use weft_client::{Client, Method};
use weft_model::Kind;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn up(data: &std::path::Path, rest: u16, sb: u16) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("--data-dir")
        .arg(data)
        .args([
            "up",
            "--listen",
            &format!("127.0.0.1:{rest}"),
            "--southbound",
            &format!("127.0.0.1:{sb}"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let l = lines.next().expect("weft up exited").unwrap();
        if l.contains("Stop with Ctrl-C") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    child
}

async fn until(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_survive_a_killed_controller() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (rest, sbp) = (free_port(), free_port());
    let mut ctl = up(&data, rest, sbp);
    let token = std::fs::read_to_string(data.join("admin-token"))
        .unwrap()
        .trim()
        .to_string();
    let api = Client::new(format!("http://127.0.0.1:{rest}"), Some(token));
    let p = api
        .create(Kind::Project, &json!({"name": "p"}))
        .await
        .unwrap();
    let p = p["id"].as_str().unwrap().to_string();
    let net = api
        .create(
            Kind::L2Network,
            &json!({"project": p, "subnets": [{"cidr": "10.0.0.0/24"}]}),
        )
        .await
        .unwrap();
    let net = net["id"].as_str().unwrap().to_string();
    let sb = format!("127.0.0.1:{sbp}");
    let mut agents = Vec::new();
    for (i, h) in ["h1", "h2", "h3"].iter().enumerate() {
        api.create(Kind::InstancePort, &json!({"project": p, "name": format!("{h}-vm"), "host": h, "bindings": [{"service": net}]}))
            .await
            .unwrap();
        let (_, _, t) = api
            .request(
                Method::POST,
                "/v1/join-tokens",
                &[],
                Some(&json!({"host": h})),
                None,
            )
            .await
            .unwrap();
        let state = tempfile::tempdir().unwrap();
        let id = weft_agent::enroll(&sb, t["token"].as_str().unwrap(), h, state.path())
            .await
            .unwrap();
        let mut opts = AgentOptions::new(vec![sb.clone()]);
        opts.tunnel_address = Some(format!("192.0.2.{}", i + 1).parse().unwrap());
        opts.backoff_initial = Duration::from_millis(50);
        opts.backoff_max = Duration::from_millis(500);
        opts.jitter_seed = i as u64 + 1;
        let backend = MemoryBackend::new();
        let handle = weft_agent::start(
            id,
            opts,
            Box::new(MemoryViewStore::default()),
            Box::new(backend.clone()),
        )
        .await
        .unwrap();
        agents.push((handle, backend, state));
    }
    // Each host sees the three ports of the network.
    let ports_seen = |b: &MemoryBackend| {
        b.current()
            .keys()
            .filter(|k| k.starts_with("port/"))
            .count()
    };
    for (_, b, _) in &agents {
        until("agents to see the three ports", 10, || ports_seen(b) == 3).await;
    }

    // SIGKILL: agents keep their view and retry.
    ctl.kill().unwrap();
    ctl.wait().unwrap();
    for (h, _, _) in &agents {
        until("agents to notice", 10, || !h.status().connected).await;
    }
    for (_, b, _) in &agents {
        assert_eq!(
            ports_seen(b),
            3,
            "a view was lost while the controller was down"
        );
    }

    // Restarted: changes made now reach everyone.
    let mut ctl = up(&data, rest, sbp);
    for i in 0..4 {
        api.create(Kind::InstancePort, &json!({"project": p, "name": format!("late{i}"), "host": "h2", "bindings": [{"service": net}]}))
            .await
            .unwrap();
    }
    for (h, b, _) in &agents {
        until("agents to converge after the restart", 20, || {
            ports_seen(b) == 7 && h.status().synced
        })
        .await;
    }
    for (h, _, _) in agents {
        h.shutdown().await;
    }
    ctl.kill().unwrap();
    ctl.wait().unwrap();
}
