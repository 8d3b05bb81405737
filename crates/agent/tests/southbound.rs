//! The southbound end to end over real TLS on loopback: enrolment, snapshot then deltas to
//! several agents, resume, reconciliation, agent restart without a controller, controller
//! restart under load, revocation and the host list.

mod common;

use std::time::Duration;

use common::*;
use weft_agent::{MemoryBackend, Report};
use weft_southbound::{HostChange, PortState, Record};

fn fill(h: &Harness, host: &str, n: usize, value_len: usize) -> u64 {
    h.view.apply(vec![HostChange {
        host: host.into(),
        upserts: (0..n)
            .map(|i| Record::new(format!("rec/{i:06}"), vec![(i % 251) as u8; value_len]))
            .collect(),
        deletes: vec![],
    }])
}

fn host_info(h: &Harness, name: &str) -> weft_controller::southbound::HostInfo {
    h.sb()
        .admin()
        .hosts()
        .into_iter()
        .find(|i| i.name == name)
        .unwrap_or_else(|| panic!("host {name} not listed"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_end_to_end_then_revocation_closes_the_connection() {
    let h = Harness::start(64).await;
    fill(&h, "en-1", 20, 30);
    let token = h.token(Some("en-1")).await;
    let dir = h.state_dir("en-1");
    // A token bound to en-1 does not enrol another name, and is not spent by trying.
    let err = weft_agent::enroll(&h.addr.to_string(), &token, "en-2", &dir)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("is for host en-1"), "{err}");
    let id = weft_agent::enroll(&h.addr.to_string(), &token, "en-1", &dir)
        .await
        .unwrap();
    assert_eq!(id.host, "en-1");
    // The identity is on disk, key private.
    let loaded = weft_agent::Identity::load(&dir).unwrap();
    assert_eq!(loaded.cert_pem, id.cert_pem);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("host.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let backend = MemoryBackend::new();
    let agent = h.agent(&id, &dir, backend.clone(), 1).await;
    converged(&h.view, "en-1", &backend).await;
    let st = agent.wait_for(|s| s.synced).await;
    assert_eq!(st.sync_mode, Some("snapshot"));
    let info = host_info(&h, "en-1");
    assert_eq!(info.state, "connected");
    assert!(info.last_seen.is_some());
    assert_eq!(
        h.sb().admin().join_tokens().await.unwrap()[0]
            .used_by
            .as_deref(),
        Some("en-1")
    );

    // Revocation closes the session at once and the certificate is refused afterwards.
    let mark = log_mark();
    assert!(h.sb().admin().revoke("en-1").await.unwrap());
    agent.wait_for(|s| !s.connected).await;
    expect_log(mark, &["en-1", "refused", "was revoked"]).await;
    let st = agent.status();
    assert!(!st.synced);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!agent.status().connected, "a revoked host reconnected");
    assert_eq!(host_info(&h, "en-1").state, "revoked");
    // It keeps forwarding with its last view.
    assert_eq!(backend.current(), h.view.records("en-1"));
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_then_deltas_to_several_agents_whole_views_only() {
    let h = Harness::start(64).await;
    let hosts = ["sd-1", "sd-2", "sd-3"];
    for (i, host) in hosts.iter().enumerate() {
        fill(&h, host, 10 + i * 10, 20);
    }
    let mut agents = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        let (id, dir) = h.enroll(host).await;
        let b = MemoryBackend::new();
        agents.push((h.agent(&id, &dir, b.clone(), i as u64).await, b));
    }
    for (host, (_, b)) in hosts.iter().zip(&agents) {
        converged(&h.view, host, b).await;
    }
    // Batches of ten keys written together with one tag: every view a backend was ever
    // handed must have all ten with the same tag (never half an update).
    for round in 0..30u8 {
        let changes = hosts
            .iter()
            .map(|host| HostChange {
                host: host.to_string(),
                upserts: (0..10)
                    .map(|k| Record::new(format!("batch/{k}"), vec![round]))
                    .collect(),
                deletes: if round % 3 == 0 {
                    vec!["rec/000001".into()]
                } else {
                    vec![]
                },
            })
            .collect();
        h.view.apply(changes);
        if round % 5 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    for (host, (agent, b)) in hosts.iter().zip(&agents) {
        converged(&h.view, host, b).await;
        for v in b.views() {
            let tags: std::collections::BTreeSet<_> = (0..10)
                .filter_map(|k| v.get(&format!("batch/{k}")))
                .collect();
            assert!(
                tags.len() <= 1,
                "{host} was handed half an update: {tags:?}"
            );
            let present = (0..10)
                .filter(|k| v.contains_key(&format!("batch/{k}")))
                .count();
            assert!(
                present == 0 || present == 10,
                "{host}: {present} of 10 batch keys"
            );
        }
        // Nothing of another host ever reached it.
        let own = h.view.records(host);
        for v in b.views() {
            assert!(
                v.keys()
                    .all(|k| own.contains_key(k) || k.starts_with("rec/"))
            );
        }
        // Every round changed every host, so each ends at the source's last revision.
        let last = h.view.revision();
        tokio::time::timeout(
            Duration::from_secs(5),
            agent.wait_for(|s| s.revision == last),
        )
        .await
        .expect("agent reaches the last revision");
    }
    let infos = h.sb().admin().hosts();
    assert_eq!(infos.iter().filter(|i| i.state == "connected").count(), 3);
    for (a, _) in agents {
        a.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_from_revision_after_reconnect_and_reconcile_when_history_is_gone() {
    let mut h = Harness::start(64).await;
    fill(&h, "rs-1", 2000, 100);
    let (id, dir) = h.enroll("rs-1").await;
    let b = MemoryBackend::new();
    let agent = h.agent(&id, &dir, b.clone(), 7).await;
    converged(&h.view, "rs-1", &b).await;
    let snapshot_bytes = host_info(&h, "rs-1").bytes_sent;

    // Controller restarts; the view source kept its history: resume.
    h.kill().await;
    agent.wait_for(|s| !s.connected).await;
    for i in 0..10 {
        h.view.put("rs-1", &format!("rec/{i:06}"), vec![42; 100]);
    }
    h.restart().await;
    let st = agent.wait_for(|s| s.synced).await;
    converged(&h.view, "rs-1", &b).await;
    assert_eq!(st.sync_mode, Some("resume"));
    let resume_bytes = host_info(&h, "rs-1").bytes_sent;

    // Controller restarts and has lost the history: reconcile.
    h.kill().await;
    agent.wait_for(|s| !s.connected).await;
    for i in 10..20 {
        h.view.put("rs-1", &format!("rec/{i:06}"), vec![43; 100]);
    }
    h.view.delete("rs-1", "rec/001999");
    h.view.forget_history();
    h.restart().await;
    let st = agent
        .wait_for(|s| s.synced && s.sync_mode == Some("reconcile"))
        .await;
    converged(&h.view, "rs-1", &b).await;
    let info = host_info(&h, "rs-1");
    let reconcile_bytes = info.bytes_sent + info.bytes_received;
    println!(
        "2000 records of 100 B over TLS: full snapshot sent {snapshot_bytes} B; resume after 10 changes {resume_bytes} B; \
         reconcile after 11 changes (history gone) {reconcile_bytes} B both ways ({:.1}% of the snapshot)",
        100.0 * reconcile_bytes as f64 / snapshot_bytes as f64
    );
    assert!(st.revision >= h.view.revision() - 1);
    assert!(
        resume_bytes * 20 < snapshot_bytes,
        "resume {resume_bytes} vs {snapshot_bytes}"
    );
    assert!(
        reconcile_bytes * 5 < snapshot_bytes,
        "reconcile {reconcile_bytes} vs {snapshot_bytes}"
    );
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_restarted_without_a_controller_rebuilds_from_its_file() {
    let mut h = Harness::start(64).await;
    fill(&h, "ar-1", 300, 50);
    let (id, dir) = h.enroll("ar-1").await;
    let b1 = MemoryBackend::new();
    let agent = h.agent(&id, &dir, b1.clone(), 3).await;
    converged(&h.view, "ar-1", &b1).await;
    agent.wait_for(|s| s.revision == h.view.revision()).await;
    // The agent dies mid-flight, then the controller goes away.
    agent.kill().await;
    h.kill().await;
    let b2 = MemoryBackend::new();
    let agent = h.agent(&id, &dir, b2.clone(), 4).await;
    // Its backend holds the last view at once, with no controller reachable.
    assert_eq!(b2.views().len(), 1, "rebuilt once from the file");
    assert_eq!(b2.current(), h.view.records("ar-1"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let st = agent.status();
    assert!(!st.connected);
    assert!(st.attempts >= 2, "kept dialling: {st:?}");
    assert!(st.last_error.is_some());
    assert_eq!(
        b2.current(),
        h.view.records("ar-1"),
        "still forwarding the last view"
    );
    // The controller comes back with changes: the agent catches up.
    h.view.put("ar-1", "new", b"x".to_vec());
    h.restart().await;
    converged(&h.view, "ar-1", &b2).await;
    assert_eq!(agent.wait_for(|s| s.synced).await.sync_mode, Some("resume"));
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_restarts_under_load_and_agents_converge_with_nothing_lost() {
    let mut h = Harness::start(10_000).await;
    let hosts: Vec<String> = (0..6).map(|i| format!("cr-{i}")).collect();
    for host in &hosts {
        fill(&h, host, 50, 20);
    }
    let mut agents = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        let (id, dir) = h.enroll(host).await;
        let b = MemoryBackend::new();
        agents.push((h.agent(&id, &dir, b.clone(), 100 + i as u64).await, b));
    }
    for (host, (_, b)) in hosts.iter().zip(&agents) {
        converged(&h.view, host, b).await;
    }
    // A writer keeps changing every host's view while the controller dies and comes back,
    // twice; the second time it also loses its history.
    let view = h.view.clone();
    let writer_hosts = hosts.clone();
    let writer = tokio::spawn(async move {
        for i in 0..300u32 {
            let host = &writer_hosts[i as usize % writer_hosts.len()];
            view.apply(vec![HostChange {
                host: host.clone(),
                upserts: vec![Record::new(
                    format!("live/{}", i % 40),
                    i.to_le_bytes().to_vec(),
                )],
                deletes: if i % 7 == 0 {
                    vec![format!("rec/{:06}", i % 50)]
                } else {
                    vec![]
                },
            }]);
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
    });
    for round in 0..2 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        h.kill().await;
        for (a, b) in &agents {
            a.wait_for(|s| !s.connected).await;
            assert!(
                !b.current().is_empty(),
                "an agent lost its view with the controller"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if round == 1 {
            h.view.forget_history();
        }
        h.restart().await;
    }
    writer.await.unwrap();
    for (host, (a, b)) in hosts.iter().zip(&agents) {
        converged(&h.view, host, b).await;
        let st = a.status();
        assert!(st.sessions >= 3, "{host}: {st:?}");
        // The last value of every key the writer touched arrived.
        let held = b.current();
        for (k, v) in h
            .view
            .records(host)
            .iter()
            .filter(|(k, _)| k.starts_with("live/"))
        {
            assert_eq!(held.get(k), Some(v), "{host} {k}");
        }
    }
    for (a, _) in agents {
        a.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_tries_each_controller_address_in_turn() {
    let h = Harness::start(64).await;
    fill(&h, "ma-1", 5, 5);
    let (id, dir) = h.enroll("ma-1").await;
    // A port nothing listens on, then the real one.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let mut opts = h.options(9);
    opts.controllers = vec![dead_addr.to_string(), h.addr.to_string()];
    let b = MemoryBackend::new();
    let store = weft_agent::RedbViewStore::open(&dir.join("view.redb")).unwrap();
    let agent = weft_agent::start(id, opts, Box::new(store), Box::new(b.clone()))
        .await
        .unwrap();
    converged(&h.view, "ma-1", &b).await;
    let st = agent.wait_for(|s| s.synced).await;
    assert_eq!(st.controller.as_deref(), Some(h.addr.to_string().as_str()));
    assert!(st.attempts >= 2);
    agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_reports_reach_the_controller_for_its_own_ports() {
    let h = Harness::start(64).await;
    let (id, dir) = h.enroll("rp-1").await;
    h.sink.bind_port("port-a", "rp-1");
    let b = MemoryBackend::new();
    let agent = h.agent(&id, &dir, b.clone(), 11).await;
    agent.wait_for(|s| s.synced).await;
    let mut answers = agent.answers();
    agent
        .report(Report::PortStatus {
            port_id: "port-a".into(),
            state: PortState::Up,
            detail: "tap up".into(),
        })
        .unwrap();
    agent
        .report(Report::Bindings {
            port_id: "port-a".into(),
            bindings: vec![weft_southbound::Binding {
                mac: [2, 0, 0, 0, 0, 1],
                ip: "203.0.113.5".parse().unwrap(),
            }],
        })
        .unwrap();
    agent
        .report(Report::Counters(vec![("rx_packets".into(), 12)]))
        .unwrap();
    for _ in 0..3 {
        let a = tokio::time::timeout(Duration::from_secs(5), answers.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.code, 0, "{a:?}");
    }
    assert_eq!(
        h.sink.status("port-a"),
        Some(("rp-1".into(), PortState::Up, "tap up".into()))
    );
    assert_eq!(h.sb().admin().learned_bindings("port-a").len(), 1);
    assert_eq!(h.sink.bindings("port-a").len(), 1);
    let info = host_info(&h, "rp-1");
    assert_eq!(info.counters.get("rx_packets"), Some(&12));
    assert_eq!(info.learned_bindings, 1);
    agent.shutdown().await;
}
