//! A real controller and real host agents over real TLS, with views compiled
//! from intent: each agent receives exactly its neighbourhood (a host with
//! only Red ports never receives anything of Blue), views follow intent
//! changes and shrink when a host's last port in a network goes, hosts
//! report their ports' status and tunnel endpoint into the intent, and a
//! removed host is cut off at once.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde_json::{Value, json};
use weft_agent::{AgentOptions, MemoryBackend, MemoryViewStore, Report};
use weft_client::{Client, Method};
use weft_controller::{Controller, ControllerConfig};
use weft_model::Kind;
use weft_southbound::PortState;

struct Lab {
    ctl: Controller,
    admin: Client,
    _dir: tempfile::TempDir,
}

impl Lab {
    async fn start() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = ControllerConfig::new(dir.path());
        cfg.listen = "127.0.0.1:0".parse().unwrap();
        cfg.southbound = Some(weft_controller::southbound::SouthboundConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        });
        let ctl = Controller::start(cfg).await.unwrap();
        let admin = Client::new(format!("http://{}", ctl.addr), ctl.new_admin_token.clone());
        Lab {
            ctl,
            admin,
            _dir: dir,
        }
    }

    /// Enrols `name` with a join token from the REST API and starts its agent.
    async fn agent(
        &self,
        name: &str,
        tunnel: &str,
    ) -> (weft_agent::AgentHandle, MemoryBackend, tempfile::TempDir) {
        let (_, _, t) = self
            .admin
            .request(
                Method::POST,
                "/v1/join-tokens",
                &[],
                Some(&json!({"host": name})),
                None,
            )
            .await
            .unwrap();
        let token = t["token"].as_str().unwrap();
        let sb = self.ctl.southbound_addr.unwrap().to_string();
        let state = tempfile::tempdir().unwrap();
        let id = weft_agent::enroll(&sb, token, name, state.path())
            .await
            .unwrap();
        let mut opts = AgentOptions::new(vec![sb]);
        opts.tunnel_address = Some(tunnel.parse().unwrap());
        opts.backoff_initial = Duration::from_millis(50);
        let backend = MemoryBackend::new();
        let h = weft_agent::start(
            id,
            opts,
            Box::new(MemoryViewStore::default()),
            Box::new(backend.clone()),
        )
        .await
        .unwrap();
        (h, backend, state)
    }
}

/// Waits until the backend's view equals what the controller computes for the host.
async fn converged(lab: &Lab, host: &str, backend: &MemoryBackend) -> BTreeMap<String, Vec<u8>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let want: BTreeMap<String, Vec<u8>> = lab
            .ctl
            .compile()
            .host_view(host)
            .fragments
            .iter()
            .map(|(k, f)| (k.clone(), weft_compiler::view::encode_record(f)))
            .collect();
        let got = backend.current();
        if got == want && !want.is_empty() {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{host} did not converge: {} records held, {} wanted",
            got.len(),
            want.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn text(view: &BTreeMap<String, Vec<u8>>) -> String {
    view.iter()
        .map(|(k, v)| {
            let f = weft_compiler::view::decode_record(v).expect("records decode");
            format!("{k} {}", serde_json::to_string(&f).unwrap())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn mk(c: &Client, kind: Kind, body: Value) -> String {
    c.create(kind, &body).await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_receive_exactly_their_neighbourhood() {
    let lab = Lab::start().await;
    let a = &lab.admin;
    let blue = mk(a, Kind::Project, json!({"name": "blue"})).await;
    let red = mk(a, Kind::Project, json!({"name": "red"})).await;
    let bnet = mk(
        a,
        Kind::L2Network,
        json!({"project": blue, "name": "bnet", "subnets": [{"cidr": "10.1.1.0/24"}]}),
    )
    .await;
    let rnet = mk(
        a,
        Kind::L2Network,
        json!({"project": red, "name": "rnet", "subnets": [{"cidr": "10.1.1.0/24"}]}),
    )
    .await;
    let rnet2 = mk(
        a,
        Kind::L2Network,
        json!({"project": red, "name": "rnet2", "subnets": [{"cidr": "10.9.0.0/24"}]}),
    )
    .await;
    let bsg = mk(
        a,
        Kind::SecurityGroup,
        json!({"project": blue, "rules": [{"direction": "egress"}, {"direction": "ingress"}]}),
    )
    .await;
    let rsg = mk(
        a,
        Kind::SecurityGroup,
        json!({"project": red, "rules": [{"direction": "egress"}, {"direction": "ingress"}]}),
    )
    .await;

    let (ha, ba, _sa) = lab.agent("host-a", "192.0.2.1").await;
    let (hc, bc, _sc) = lab.agent("host-c", "192.0.2.3").await;
    // host-a: Blue and Red; host-c: Red only (two Red networks).
    let g1 = mk(a, Kind::InstancePort, json!({"project": blue, "name": "g1", "host": "host-a", "bindings": [{"service": bnet, "fixed_ips": [{"ip": "10.1.1.5"}], "security_groups": [bsg]}]})).await;
    mk(a, Kind::InstancePort, json!({"project": red, "name": "g5", "host": "host-a", "bindings": [{"service": rnet, "fixed_ips": [{"ip": "10.1.1.5"}], "security_groups": [rsg]}]})).await;
    mk(a, Kind::InstancePort, json!({"project": red, "name": "g6", "host": "host-c", "bindings": [{"service": rnet, "fixed_ips": [{"ip": "10.1.1.6"}], "security_groups": [rsg]}]})).await;
    let g7 = mk(a, Kind::InstancePort, json!({"project": red, "name": "g7", "host": "host-c", "bindings": [{"service": rnet2, "security_groups": [rsg]}]})).await;

    let view_c = converged(&lab, "host-c", &bc).await;
    let view_a = converged(&lab, "host-a", &ba).await;
    let tc = text(&view_c);
    for blue_id in [&blue, &bnet, &bsg, &g1] {
        assert!(
            !tc.contains(blue_id.as_str()),
            "host-c received Blue's {blue_id}"
        );
    }
    assert!(tc.contains(&format!("ls:{rnet}")) && tc.contains(&format!("ls:{rnet2}")));
    let ta = text(&view_a);
    assert!(ta.contains(&format!("ls:{bnet}")) && ta.contains(&format!("ls:{rnet}")));
    assert!(
        !ta.contains(&format!("ls:{rnet2}")),
        "host-a has no port on rnet2"
    );
    // host-a reaches g6 on host-c through host-c's announced tunnel endpoint.
    assert!(
        ta.contains("192.0.2.3"),
        "host-c's tunnel address is in host-a's view"
    );

    // The view shrinks when host-c's last port on rnet2 goes.
    let iface = a
        .list(Kind::Interface, &[("parent", g7.as_str())])
        .await
        .unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let sp = a
        .list(Kind::ServicePort, &[("interface", iface.as_str())])
        .await
        .unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    a.delete(Kind::ServicePort, &sp).await.unwrap();
    let view_c2 = converged(&lab, "host-c", &bc).await;
    assert!(
        !text(&view_c2).contains(&format!("ls:{rnet2}")),
        "rnet2 is still in host-c's view"
    );
    assert!(view_c2.len() < view_c.len());

    // Hosts report their ports' status into the intent; another host's port is refused.
    hc.report(Report::PortStatus {
        port_id: g1.clone(),
        state: PortState::Up,
        detail: "claimed".into(),
    })
    .unwrap();
    ha.report(Report::PortStatus {
        port_id: g1.clone(),
        state: PortState::Up,
        detail: "vm booted".into(),
    })
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let p = a.get(Kind::InstancePort, &g1).await.unwrap();
        if p["status"] == "up" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "g1 never came up: {p}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hosts = lab.ctl.hosts().unwrap().hosts();
    let c = hosts.iter().find(|h| h.name == "host-c").unwrap();
    assert!(
        c.refusals >= 1,
        "host-c's claim on host-a's port was not refused"
    );

    // Tunnel endpoints announced by the hosts.
    let tun: IpAddr = "192.0.2.1".parse().unwrap();
    assert_eq!(
        weft_compiler::HostDirectory::tunnel_ip(lab.ctl.compile().tunnels.as_ref(), "host-a"),
        Some(tun)
    );

    // Removing a host closes its connection at once.
    a.request(Method::DELETE, "/v1/hosts/host-c", &[], None, None)
        .await
        .unwrap();
    let st = tokio::time::timeout(Duration::from_secs(5), hc.wait_for(|s| !s.connected)).await;
    assert!(st.is_ok(), "host-c still connected after removal");
    ha.shutdown().await;
    hc.kill().await;
    lab.ctl.shutdown().await;
}
