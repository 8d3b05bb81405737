//! A compromised host: more than twenty distinct attempts to read or write what is not its
//! own, to forge or reuse identities, and to break the port. Each is refused, answered with
//! an error, and logged with the host's identity (or, before any identity is established,
//! the peer address); the well-behaved agents next to it are not disturbed.

mod common;

use std::io::Write as _;
use std::time::Duration;

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use rustls::pki_types::pem::PemObject;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use weft_agent::tls::{DialOptions, client_config, dial, enroll_config};
use weft_agent::{Identity, MemoryBackend, Report};
use weft_controller::southbound::{CertificateAuthority, SouthboundConfig};
use weft_proto as pb;
use weft_southbound::{BindingLimits, HostChange, PortState, Record, record_id};

/// A hand-driven session: whatever a compromised host may send.
struct Raw {
    tx: mpsc::Sender<pb::AgentMessage>,
    rx: tonic::Streaming<pb::ControllerMessage>,
}

fn msg(body: pb::agent_message::Body) -> pb::AgentMessage {
    pb::AgentMessage { body: Some(body) }
}

fn hello(revision: u64, host: &str) -> pb::AgentMessage {
    msg(pb::agent_message::Body::Hello(pb::Hello {
        protocol_version: 1,
        host: host.into(),
        revision,
        ..Default::default()
    }))
}

async fn open(h: &Harness, id: &Identity, first: pb::AgentMessage) -> Result<Raw, String> {
    let ch = dial(
        &h.addr.to_string(),
        client_config(id).unwrap(),
        DialOptions::default(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut client = pb::southbound_client::SouthboundClient::new(ch);
    let (tx, rx) = mpsc::channel(16);
    tx.send(first).await.unwrap();
    let resp = client
        .session(ReceiverStream::new(rx))
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
    Ok(Raw {
        tx,
        rx: resp.into_inner(),
    })
}

impl Raw {
    async fn send(&self, body: pb::agent_message::Body) {
        let _ = self.tx.send(msg(body)).await;
    }

    /// The next message, or the status that ended the stream.
    async fn next(&mut self) -> Result<pb::ControllerMessage, String> {
        match tokio::time::timeout(Duration::from_secs(5), self.rx.message()).await {
            Err(_) => Err("timeout".into()),
            Ok(Ok(Some(m))) => Ok(m),
            Ok(Ok(None)) => Err("stream ended".into()),
            Ok(Err(s)) => Err(format!("{:?}: {}", s.code(), s.message())),
        }
    }

    /// Reads until the answer to `request_id`; also returns every record key seen on the way.
    async fn answer(&mut self, request_id: u64) -> (pb::Answer, Vec<String>) {
        let mut keys = Vec::new();
        loop {
            match self.next().await.expect("session open").body {
                Some(pb::controller_message::Body::Answer(a)) if a.request_id == request_id => {
                    return (a, keys);
                }
                Some(pb::controller_message::Body::Update(u)) => {
                    keys.extend(u.upserts.into_iter().map(|r| r.key));
                }
                _ => {}
            }
        }
    }

    /// Reads until the session ends; returns the status and every record key seen.
    async fn until_closed(&mut self) -> (String, Vec<String>) {
        let mut keys = Vec::new();
        loop {
            match self.next().await {
                Ok(m) => {
                    if let Some(pb::controller_message::Body::Update(u)) = m.body {
                        keys.extend(u.upserts.into_iter().map(|r| r.key));
                    }
                }
                Err(e) => return (e, keys),
            }
        }
    }

    /// Reads until the view is current (the first update's last chunk).
    async fn synced(&mut self) {
        loop {
            if let Some(pb::controller_message::Body::Update(u)) =
                self.next().await.expect("session open").body
                && u.last
            {
                return;
            }
        }
    }
}

fn status(request_id: u64, host: &str, port: &str) -> pb::agent_message::Body {
    pb::agent_message::Body::PortStatus(pb::PortStatus {
        request_id,
        host: host.into(),
        port_id: port.into(),
        state: pb::PortState::Up as i32,
        detail: "owned".into(),
    })
}

fn bindings(request_id: u64, port: &str, from: u32, n: u32) -> pb::agent_message::Body {
    pb::agent_message::Body::LearnedBindings(pb::LearnedBindings {
        request_id,
        host: String::new(),
        port_id: port.into(),
        bindings: (from..from + n)
            .map(|i| pb::Binding {
                mac: vec![2, 0, 0, 0, (i >> 8) as u8, i as u8],
                ip: vec![198, 51, 100, (i % 250) as u8],
            })
            .collect(),
    })
}

/// An identity signed by a CA the controller never saw.
fn rogue_identity(name: &str, real_ca_pem: &str) -> Identity {
    let ca_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::default();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "Weft southbound CA");
    let ca_cert = p.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(p, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = p.signed_by(&key, &issuer).unwrap();
    let _ = ca_cert;
    Identity {
        host: name.into(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        ca_pem: real_ca_pem.into(),
    }
}

/// The test's tally: each attempt is named and counted once.
struct Attempts(Vec<&'static str>);

impl Attempts {
    fn done(&mut self, name: &'static str) {
        assert!(!self.0.contains(&name), "attempt {name} counted twice");
        eprintln!("refused as expected: {name}");
        self.0.push(name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compromised_host_is_refused_everything_and_others_are_unaffected() {
    let cfg = SouthboundConfig {
        bindings: BindingLimits {
            per_host_rate: 1.0,
            per_host_burst: 200,
            max_per_host: 150,
            max_per_port: 64,
            ttl: Duration::from_secs(300),
        },
        max_agent_message: 256 * 1024,
        ..SouthboundConfig::default()
    };
    let h = Harness::start_with(64, cfg).await;
    let addr = h.addr.to_string();
    let mut t = Attempts(Vec::new());

    // Two honest hosts and the compromised one, each with its own view and ports.
    // The compromised host's view is large enough to be reconciled rather than resent.
    for (host, n) in [("victim-1", 20), ("victim-2", 20), ("evil", 600)] {
        h.view.apply(vec![HostChange {
            host: host.into(),
            upserts: (0..n)
                .map(|i| Record::new(format!("{host}/secret/{i}"), vec![i as u8; 32]))
                .collect(),
            deletes: vec![],
        }]);
    }
    h.sink.bind_port("victim-port", "victim-1");
    for p in ["evil-port-1", "evil-port-2", "evil-port-3", "evil-port-4"] {
        h.sink.bind_port(p, "evil");
    }
    let mut victims = Vec::new();
    for (i, host) in ["victim-1", "victim-2"].into_iter().enumerate() {
        let (id, dir) = h.enroll(host).await;
        let b = MemoryBackend::new();
        let a = h.agent(&id, &dir, b.clone(), i as u64).await;
        converged(&h.view, host, &b).await;
        victims.push((host, a, b));
    }
    victims[0]
        .1
        .report(Report::PortStatus {
            port_id: "victim-port".into(),
            state: PortState::Up,
            detail: "victim's own".into(),
        })
        .unwrap();
    eventually("victim's status", Duration::from_secs(5), || {
        h.sink.status("victim-port").is_some()
    })
    .await;
    let (evil, _evil_dir) = h.enroll("evil").await;
    let victim_ids: Vec<u64> = h
        .view
        .records("victim-1")
        .iter()
        .map(|(k, v)| record_id(k, v))
        .collect();

    let mut s = open(&h, &evil, hello(0, "")).await.unwrap();
    s.synced().await;

    // 1. Write the status of another host's port.
    let mark = log_mark();
    s.send(status(1, "", "victim-port")).await;
    let (a, _) = s.answer(1).await;
    assert_eq!(a.code, pb::AnswerCode::Forbidden as i32, "{a:?}");
    expect_log(
        mark,
        &["refused host write", "host=\"evil\"", "victim-port"],
    )
    .await;
    t.done("write another host's port status");

    // 2. Claim a port bound to nobody by reporting on it.
    let mark = log_mark();
    s.send(status(2, "", "unbound-port")).await;
    assert_eq!(s.answer(2).await.0.code, pb::AnswerCode::Forbidden as i32);
    expect_log(mark, &["refused host write", "evil", "unbound-port"]).await;
    assert_eq!(h.sink.status("unbound-port"), None);
    t.done("claim an unbound port");

    // 3. Learn bindings on another host's port.
    let mark = log_mark();
    s.send(bindings(3, "victim-port", 0, 1)).await;
    assert_eq!(s.answer(3).await.0.code, pb::AnswerCode::Forbidden as i32);
    expect_log(mark, &["refused host write", "evil", "learned bindings"]).await;
    t.done("bindings on another host's port");

    // 4-6. Forge the identity fields of writes, even on its own port.
    for (i, body, name) in [
        (
            4,
            status(4, "victim-1", "evil-port-1"),
            "forged host field in port status",
        ),
        (
            5,
            pb::agent_message::Body::Counters(pb::CounterReport {
                request_id: 5,
                host: "victim-1".into(),
                counters: vec![pb::Counter {
                    name: "rx".into(),
                    value: 1,
                }],
            }),
            "forged host field in counters",
        ),
        (
            6,
            pb::agent_message::Body::Liveness(pb::LivenessReport {
                request_id: 6,
                host: "victim-2".into(),
                peers: vec![],
            }),
            "forged host field in liveness",
        ),
    ] {
        let mark = log_mark();
        s.send(body).await;
        let (a, _) = s.answer(i).await;
        assert_eq!(a.code, pb::AnswerCode::Forbidden as i32, "{a:?}");
        assert!(a.message.contains("certificate is for \"evil\""), "{a:?}");
        expect_log(mark, &["refused host request", "evil", "claims host"]).await;
        t.done(name);
    }

    // 7. Ask for another host's view.
    let mark = log_mark();
    s.send(pb::agent_message::Body::SnapshotRequest(
        pb::SnapshotRequest {
            request_id: 7,
            host: "victim-1".into(),
        },
    ))
    .await;
    let (a, keys) = s.answer(7).await;
    assert_eq!(a.code, pb::AnswerCode::Forbidden as i32);
    assert!(keys.iter().all(|k| k.starts_with("evil/")), "{keys:?}");
    expect_log(mark, &["refused host request", "evil", "victim-1"]).await;
    t.done("ask for another host's view");

    // 8. Malformed binding.
    let mark = log_mark();
    s.send(pb::agent_message::Body::LearnedBindings(
        pb::LearnedBindings {
            request_id: 8,
            port_id: "evil-port-1".into(),
            bindings: vec![pb::Binding {
                mac: vec![2, 0, 0, 0, 0],
                ip: vec![198, 51, 100, 1],
            }],
            ..Default::default()
        },
    ))
    .await;
    assert_eq!(s.answer(8).await.0.code, pb::AnswerCode::Invalid as i32);
    expect_log(mark, &["refused host request", "evil", "MAC"]).await;
    t.done("malformed binding");

    // 9-11. Flood bindings: the port table, the host table, then the rate.
    s.send(bindings(9, "evil-port-1", 0, 64)).await;
    assert_eq!(s.answer(9).await.0.code, 0);
    let mark = log_mark();
    s.send(bindings(10, "evil-port-1", 64, 1)).await;
    assert_eq!(s.answer(10).await.0.code, pb::AnswerCode::Limited as i32);
    expect_log(
        mark,
        &["refused host write", "evil", "evil-port-1 holds 64"],
    )
    .await;
    t.done("binding flood beyond the port table");
    s.send(bindings(11, "evil-port-2", 100, 64)).await;
    assert_eq!(s.answer(11).await.0.code, 0);
    let mark = log_mark();
    s.send(bindings(12, "evil-port-3", 200, 30)).await;
    assert_eq!(s.answer(12).await.0.code, pb::AnswerCode::Limited as i32);
    expect_log(mark, &["refused host write", "evil", "host evil holds 128"]).await;
    t.done("binding flood beyond the host table");
    s.send(bindings(13, "evil-port-3", 200, 20)).await;
    assert_eq!(s.answer(13).await.0.code, 0);
    let mark = log_mark();
    s.send(bindings(14, "evil-port-1", 0, 64)).await;
    assert_eq!(s.answer(14).await.0.code, pb::AnswerCode::Limited as i32);
    expect_log(mark, &["refused host write", "evil", "binding rate"]).await;
    t.done("binding flood beyond the rate");
    let info = h
        .sb()
        .admin()
        .hosts()
        .into_iter()
        .find(|i| i.name == "evil")
        .unwrap();
    assert_eq!(info.learned_bindings, 148);
    assert!(h.sb().admin().learned_bindings("victim-port").is_empty());

    // 12. Snapshot requests in a loop.
    let mark = log_mark();
    for request_id in [15, 16] {
        s.send(pb::agent_message::Body::SnapshotRequest(
            pb::SnapshotRequest {
                request_id,
                host: String::new(),
            },
        ))
        .await;
    }
    let (a, _) = s.answer(16).await;
    assert_eq!(a.code, pb::AnswerCode::Limited as i32, "{a:?}");
    expect_log(
        mark,
        &["refused host request", "evil", "snapshots are limited"],
    )
    .await;
    t.done("snapshot request flood");

    // 13. Claim to have applied a revision never sent.
    let mark = log_mark();
    s.send(pb::agent_message::Body::Applied(pb::Applied {
        revision: u64::MAX,
    }))
    .await;
    expect_log(mark, &["refused host request", "evil", "never sent"]).await;
    t.done("applied revision never sent");

    // 14. A message over the size limit ends the session.
    let mark = log_mark();
    s.send(pb::agent_message::Body::Counters(pb::CounterReport {
        request_id: 17,
        host: String::new(),
        counters: vec![pb::Counter {
            name: "x".repeat(300 * 1024),
            value: 1,
        }],
    }))
    .await;
    let (end, _) = s.until_closed().await;
    assert!(!end.is_empty());
    expect_log(mark, &["refused host message", "evil"]).await;
    t.done("oversized message");

    // 15. Hello naming another host.
    let mark = log_mark();
    s = open(&h, &evil, hello(0, "victim-1")).await.unwrap();
    let (end, keys) = s.until_closed().await;
    assert!(end.contains("PermissionDenied"), "{end}");
    assert!(keys.is_empty());
    expect_log(
        mark,
        &["closing host session", "evil", "claims host \"victim-1\""],
    )
    .await;
    t.done("Hello forging another identity");

    // 16. Messages before Hello.
    let mark = log_mark();
    s = open(
        &h,
        &evil,
        msg(pb::agent_message::Body::FetchRequest(pb::FetchRequest {
            ids: victim_ids.clone(),
        })),
    )
    .await
    .unwrap();
    let (end, keys) = s.until_closed().await;
    assert!(end.contains("InvalidArgument"), "{end}");
    assert!(keys.is_empty());
    expect_log(
        mark,
        &[
            "closing host session",
            "evil",
            "first message must be Hello",
        ],
    )
    .await;
    t.done("fetch before Hello");

    // 17. An unsupported protocol version.
    let mark = log_mark();
    s = open(
        &h,
        &evil,
        msg(pb::agent_message::Body::Hello(pb::Hello {
            protocol_version: 99,
            ..Default::default()
        })),
    )
    .await
    .unwrap();
    assert!(s.until_closed().await.0.contains("InvalidArgument"));
    expect_log(
        mark,
        &["closing host session", "evil", "protocol version 99"],
    )
    .await;
    t.done("bad protocol version");

    // 18. Fetch another host's records by id during a reconciliation it provoked.
    let mark = log_mark();
    s = open(&h, &evil, hello(u64::MAX, "")).await.unwrap();
    loop {
        if let Some(pb::controller_message::Body::ReconcileNeeded(_)) = s.next().await.unwrap().body
        {
            break;
        }
    }
    // Its estimator matches its own view, so the controller answers with a table...
    let own_ids: Vec<u64> = h
        .view
        .records("evil")
        .iter()
        .map(|(k, v)| record_id(k, v))
        .collect();
    let req = weft_reconcile::protocol::agent_request(&Default::default(), &own_ids, 0).unwrap();
    s.send(pb::agent_message::Body::ReconcileRequest(
        pb::ReconcileRequest {
            attempt: 0,
            set_len: req.set_len,
            strata: req.strata.to_bytes(),
        },
    ))
    .await;
    loop {
        if let Some(pb::controller_message::Body::ReconcileResponse(r)) =
            s.next().await.unwrap().body
        {
            assert!(
                matches!(r.body, Some(pb::reconcile_response::Body::Table(_))),
                "{r:?}"
            );
            break;
        }
    }
    // ...and it asks for the victim's records instead of its own.
    s.send(pb::agent_message::Body::FetchRequest(pb::FetchRequest {
        ids: victim_ids.clone(),
    }))
    .await;
    let (end, keys) = s.until_closed().await;
    assert!(end.contains("PermissionDenied"), "{end}");
    assert!(keys.iter().all(|k| k.starts_with("evil/")), "{keys:?}");
    expect_log(
        mark,
        &["closing host session", "evil", "not in its own view"],
    )
    .await;
    t.done("fetch another host's records by id");

    // 19. A session without a client certificate.
    let mark = log_mark();
    let pin: [u8; 32] = {
        use sha2::Digest;
        let der =
            rustls::pki_types::CertificateDer::from_pem_slice(h.sb().admin().ca_pem().as_bytes())
                .unwrap();
        sha2::Sha256::digest(der.as_ref()).into()
    };
    let ch = dial(&addr, enroll_config(pin).unwrap(), DialOptions::default())
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(1);
    tx.send(hello(0, "victim-1")).await.unwrap();
    let r = pb::southbound_client::SouthboundClient::new(ch)
        .session(ReceiverStream::new(rx))
        .await;
    assert_eq!(r.unwrap_err().code(), tonic::Code::Unauthenticated);
    expect_log(mark, &["refused session: no client certificate"]).await;
    t.done("session without a certificate");

    // 20. A certificate from another CA, naming a victim.
    let mark = log_mark();
    let rogue = rogue_identity("victim-1", &h.sb().admin().ca_pem());
    assert!(open(&h, &rogue, hello(0, "")).await.is_err());
    expect_log(
        mark,
        &["refused client certificate", "victim-1", "does not verify"],
    )
    .await;
    t.done("certificate from an unknown CA");

    // 21. The right CA, the wrong purpose: a server certificate as a client certificate.
    let mark = log_mark();
    let ca = CertificateAuthority::load_or_create(&h.store, 1_800_000_000)
        .await
        .unwrap();
    let (server_cert, server_key) = ca
        .issue_server(&[], 1_790_000_000, Duration::from_secs(86_400 * 3650))
        .unwrap();
    let server_id = Identity {
        host: "weft-controller".into(),
        cert_pem: server_cert.pem,
        key_pem: KeyPair::try_from(&server_key).unwrap().serialize_pem(),
        ca_pem: h.sb().admin().ca_pem(),
    };
    assert!(open(&h, &server_id, hello(0, "")).await.is_err());
    expect_log(mark, &["refused client certificate", "weft-controller"]).await;
    t.done("server certificate used as a client certificate");

    // 22. A revoked certificate.
    let (revoked, _) = h.enroll("evil-revoked").await;
    open(&h, &revoked, hello(0, ""))
        .await
        .unwrap()
        .synced()
        .await;
    assert!(h.sb().admin().revoke("evil-revoked").await.unwrap());
    let mark = log_mark();
    assert!(open(&h, &revoked, hello(0, "")).await.is_err());
    expect_log(mark, &["evil-revoked", "was revoked"]).await;
    t.done("revoked certificate");

    // 23. A removed host's certificate.
    let (removed, _) = h.enroll("evil-removed").await;
    assert!(h.sb().admin().remove("evil-removed").await.unwrap());
    let mark = log_mark();
    assert!(open(&h, &removed, hello(0, "")).await.is_err());
    expect_log(mark, &["evil-removed", "not enrolled"]).await;
    t.done("removed host's certificate");

    // Sessions and connections beyond the per-host limits (memory exhaustion).
    let evil_sessions = || {
        h.sb()
            .admin()
            .hosts()
            .into_iter()
            .find(|i| i.name == "evil")
            .map_or(0, |i| i.sessions)
    };
    eventually("evil's old sessions to end", Duration::from_secs(5), || {
        evil_sessions() == 0
    })
    .await;
    // The earlier sessions' connections close; four sessions then fill the session limit
    // and, with four more connections, the connection limit.
    drop(s);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut open_sessions = Vec::new();
    for _ in 0..4 {
        let mut r = open(&h, &evil, hello(0, "")).await.unwrap();
        r.synced().await;
        open_sessions.push(r);
    }
    let mark = log_mark();
    let err = open(&h, &evil, hello(0, ""))
        .await
        .err()
        .expect("fifth session refused");
    assert!(err.contains("ResourceExhausted"), "{err}");
    expect_log(mark, &["refused session", "evil", "already has 4 sessions"]).await;
    t.done("sessions beyond the per-host limit");
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(
            dial(&addr, client_config(&evil).unwrap(), DialOptions::default())
                .await
                .unwrap(),
        );
    }
    let mark = log_mark();
    // The ninth connection completes the client side of TLS 1.3, then the controller drops it.
    if let Ok(ch) = dial(&addr, client_config(&evil).unwrap(), DialOptions::default()).await {
        let (tx, rx) = mpsc::channel(1);
        tx.send(hello(0, "")).await.unwrap();
        assert!(
            pb::southbound_client::SouthboundClient::new(ch)
                .session(ReceiverStream::new(rx))
                .await
                .is_err()
        );
    }
    expect_log(
        mark,
        &["refused southbound connection", "evil", "connections open"],
    )
    .await;
    t.done("connections beyond the per-host limit");
    drop(channels);
    drop(open_sessions);

    // 24. The old certificate after a re-enrolment.
    let token = h.token(Some("evil")).await;
    let new_dir = h.state_dir("evil-again");
    weft_agent::enroll(&addr, &token, "evil", &new_dir)
        .await
        .unwrap();
    let mark = log_mark();
    assert!(open(&h, &evil, hello(0, "")).await.is_err());
    expect_log(mark, &["evil", "was replaced"]).await;
    t.done("superseded certificate");

    // 25. A join token used twice.
    let mark = log_mark();
    let err = weft_agent::enroll(&addr, &token, "evil", &h.state_dir("evil-3"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already used"), "{err}");
    expect_log(mark, &["refused enrolment", "already used"]).await;
    t.done("replayed join token");

    // 26. An expired join token.
    let (_, expired) = h
        .sb()
        .admin()
        .create_join_token(None, Duration::from_secs(1), "short".into())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mark = log_mark();
    let err = weft_agent::enroll(&addr, &expired, "evil-4", &h.state_dir("evil-4"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    expect_log(mark, &["refused enrolment", "evil-4", "expired"]).await;
    t.done("expired join token");

    // 27. An unbound token to take over an enrolled name.
    let mark = log_mark();
    let open_token = h.token(None).await;
    let err = weft_agent::enroll(&addr, &open_token, "victim-1", &h.state_dir("evil-5"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("already enrolled"), "{err}");
    expect_log(mark, &["refused enrolment", "victim-1", "already enrolled"]).await;
    t.done("take over an enrolled name");

    // 28. The controller's reserved name, straight to the RPC (the agent would refuse it).
    let mark = log_mark();
    let csr = {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["weft-controller".to_string()]).unwrap();
        p.distinguished_name
            .push(DnType::CommonName, "weft-controller");
        p.serialize_request(&key).unwrap().der().to_vec()
    };
    let ch = dial(&addr, enroll_config(pin).unwrap(), DialOptions::default())
        .await
        .unwrap();
    let credential = open_token
        .parse::<weft_southbound::JoinToken>()
        .unwrap()
        .credential();
    let err = pb::southbound_client::SouthboundClient::new(ch)
        .enroll(pb::EnrollRequest {
            token: credential,
            host_name: "weft-controller".into(),
            csr_der: csr,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    expect_log(mark, &["refused enrolment", "weft-controller", "reserved"]).await;
    t.done("enrol under the controller's name");

    // 29. A made-up join token.
    let mark = log_mark();
    let fake = format!(
        "weftjoin.{}.0123456789abcdef.{}",
        weft_southbound::join::hex(&pin),
        "a".repeat(40)
    );
    let err = weft_agent::enroll(&addr, &fake, "evil-7", &h.state_dir("evil-7"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown"), "{err}");
    expect_log(mark, &["refused enrolment", "evil-7", "unknown"]).await;
    t.done("guessed join token");

    // 30-31. Garbage and plaintext HTTP/2 on the TLS port.
    for (bytes, name) in [
        (
            vec![0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
            "garbage bytes",
        ),
        (
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            "plaintext HTTP/2",
        ),
    ] {
        let mark = log_mark();
        let mut c = std::net::TcpStream::connect(h.addr).unwrap();
        let local = c.local_addr().unwrap().to_string();
        c.write_all(&bytes).unwrap();
        expect_log(
            mark,
            &[
                "refused southbound connection",
                &local,
                "TLS handshake failed",
            ],
        )
        .await;
        t.done(name);
    }

    assert!(t.0.len() >= 20, "only {} attempts", t.0.len());

    // The honest hosts never noticed.
    for (host, a, b) in &victims {
        let st = a.status();
        assert!(st.connected && st.synced, "{host}: {st:?}");
        assert_eq!(st.sessions, 1, "{host} lost its session");
        assert_eq!(st.refused, 0);
        converged(&h.view, host, b).await;
        assert!(
            b.views()
                .iter()
                .all(|v| v.keys().all(|k| k.starts_with(&format!("{host}/"))))
        );
    }
    h.view.put("victim-2", "after", b"still served".to_vec());
    converged(&h.view, "victim-2", &victims[1].2).await;
    assert_eq!(
        h.sink.status("victim-port"),
        Some(("victim-1".into(), PortState::Up, "victim's own".into()))
    );
    let infos = h.sb().admin().hosts();
    let evil_info = infos.iter().find(|i| i.name == "evil").unwrap();
    assert!(evil_info.refusals >= 15, "{evil_info:?}");
    for (host, ..) in &victims {
        assert_eq!(infos.iter().find(|i| i.name == *host).unwrap().refusals, 0);
    }
    eprintln!("{} attempts refused: {:?}", t.0.len(), t.0);
    for (_, a, _) in victims {
        a.shutdown().await;
    }
}
