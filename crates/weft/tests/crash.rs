//! Every acknowledged write survives `kill -9`: writers create objects
//! through the REST API of a real `weft up` process, the process is killed
//! with SIGKILL in the middle of the stream, restarted on the same data
//! directory, and every object whose create was answered must be there.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use weft_client::Client;
use weft_model::Kind;

struct Server {
    child: Child,
    endpoint: String,
}

fn start(data: &std::path::Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["--data-dir"])
        .arg(data)
        .args([
            "up",
            "--listen",
            "127.0.0.1:0",
            "--southbound",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("weft up starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let endpoint = loop {
        assert!(
            Instant::now() < deadline,
            "weft up did not report its address"
        );
        let line = lines.next().expect("weft up exited early").unwrap();
        if let Some(rest) = line.trim().strip_prefix("REST API") {
            let url = rest.split_whitespace().next().unwrap();
            break url.trim_end_matches("/v1").to_string();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, endpoint }
}

fn admin_token(data: &std::path::Path) -> String {
    std::fs::read_to_string(data.join("admin-token"))
        .unwrap()
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut acked: Vec<(String, String)> = Vec::new();
    let mut project = String::new();

    for round in 0..3 {
        let mut server = start(&data);
        let c = Client::new(server.endpoint.clone(), Some(admin_token(&data)));
        if round == 0 {
            let p = c
                .create(Kind::Project, &json!({"name": "crash"}))
                .await
                .unwrap();
            project = p["id"].as_str().unwrap().to_string();
        }
        // Everything acknowledged so far, in any earlier round, is present.
        let ports = c.list(Kind::InstancePort, &[]).await.unwrap();
        let have: std::collections::HashMap<&str, &str> = ports
            .iter()
            .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
            .collect();
        for (id, name) in &acked {
            assert_eq!(
                have.get(id.as_str()),
                Some(&name.as_str()),
                "round {round}: acknowledged port {id} lost"
            );
        }

        // Eight writers create ports as fast as they can; the server is
        // killed while they are at it.
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut writers = Vec::new();
        for w in 0..8 {
            let c = c.clone();
            let log = log.clone();
            let project = project.clone();
            writers.push(tokio::spawn(async move {
                for i in 0.. {
                    let name = format!("r{round}-w{w}-{i}");
                    match c
                        .create(
                            Kind::InstancePort,
                            &json!({"name": name, "project": project}),
                        )
                        .await
                    {
                        Ok(v) => log
                            .lock()
                            .unwrap()
                            .push((v["id"].as_str().unwrap().to_string(), name)),
                        Err(_) => break,
                    }
                }
            }));
        }
        let start = Instant::now();
        while log.lock().unwrap().len() < 150 + 100 * round {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "writers made no progress"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // SIGKILL: no chance to flush anything.
        server.child.kill().unwrap();
        server.child.wait().unwrap();
        for w in writers {
            w.await.unwrap();
        }
        let new = std::mem::take(&mut *log.lock().unwrap());
        assert!(
            new.len() >= 150,
            "round {round}: only {} writes acknowledged",
            new.len()
        );
        acked.extend(new);
    }

    let mut server = start(&data);
    let c = Client::new(server.endpoint.clone(), Some(admin_token(&data)));
    let ports = c.list(Kind::InstancePort, &[]).await.unwrap();
    let have: std::collections::HashMap<&str, &str> = ports
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    for (id, name) in &acked {
        assert_eq!(
            have.get(id.as_str()),
            Some(&name.as_str()),
            "acknowledged port {id} lost"
        );
    }
    println!(
        "{} acknowledged writes over 3 kills, all present ({} ports stored)",
        acked.len(),
        ports.len()
    );
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}
