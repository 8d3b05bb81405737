//! The controller's BGP speaker end to end: a real controller (REST on
//! loopback, embedded store in a temp dir) builds the seed's any-to-any
//! topology through the API and talks MP-BGP to FRR 8.4 (Debian's `frr`)
//! in a network namespace (see `bgp_lab`):
//!
//! - FRR's VPNv4 table holds every VM host route with the VRF's RD, route
//!   targets, VNI as label, the host's tunnel address as next hop, the
//!   VXLAN encapsulation and the router MAC; a port going down, admin down
//!   or deleted withdraws its route;
//! - a VPNv4 prefix FRR originates with a route target Blue imports lands
//!   in Blue's VRF: `POST /v1/trace` from G1 leaves through a tunnel to
//!   FRR's next hop with the route's VNI and names the peer;
//! - a session flap through the API (peer removed, added again) and an FRR
//!   restart converge again.
//!
//! `config_api_policy_persistence_and_exports_without_a_peer` needs no
//! root: the API's checks, policy, persistence across a restart, and the
//! export set for the topology, with passive peers only (no packet leaves).

mod bgp_lab;

use std::collections::BTreeMap;
use std::time::Duration;

use bgp_lab::{Lab, wait_for};
use serde_json::{Value, json};
use weft_client::{Client, ClientError, Method};
use weft_controller::{Controller, ControllerConfig};
use weft_model::{Command, Id, Kind, PortStatus};

struct Env {
    rt: tokio::runtime::Runtime,
    ctl: Option<Controller>,
    admin: Client,
    dir: tempfile::TempDir,
}

impl Env {
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    fn new() -> Env {
        let rt = Self::runtime();
        let dir = tempfile::tempdir().unwrap();
        let (ctl, admin) = Self::boot(&rt, dir.path());
        Env {
            rt,
            ctl: Some(ctl),
            admin,
            dir,
        }
    }

    fn boot(rt: &tokio::runtime::Runtime, dir: &std::path::Path) -> (Controller, Client) {
        let mut cfg = ControllerConfig::new(dir);
        cfg.southbound = Some(weft_controller::southbound::SouthboundConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..Default::default()
        });
        cfg.listen = "127.0.0.1:0".parse().unwrap();
        let ctl = rt.block_on(Controller::start(cfg)).unwrap();
        let token = std::fs::read_to_string(&ctl.admin_token_file).unwrap();
        let admin = Client::new(format!("http://{}", ctl.addr), Some(token.trim().into()));
        (ctl, admin)
    }

    /// Stops the controller and starts it again on the same data directory.
    fn restart(&mut self) {
        let ctl = self.ctl.take().unwrap();
        self.rt.block_on(ctl.shutdown());
        // Dropping the runtime drops every task, and with them the store.
        drop(std::mem::replace(&mut self.rt, Self::runtime()));
        let (ctl, admin) = Self::boot(&self.rt, self.dir.path());
        self.ctl = Some(ctl);
        self.admin = admin;
    }

    fn ctl(&self) -> &Controller {
        self.ctl.as_ref().unwrap()
    }

    fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, ClientError> {
        self.call_as(&self.admin, method, path, body, None)
    }

    fn call_as(
        &self,
        c: &Client,
        method: Method,
        path: &str,
        body: Option<Value>,
        if_match: Option<u64>,
    ) -> Result<Value, ClientError> {
        self.rt
            .block_on(c.request(method, path, &[], body.as_ref(), if_match))
            .map(|(_, _, v)| v)
    }

    fn ok(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let what = format!("{method} {path}");
        self.call(method, path, body)
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    fn create(&self, kind: Kind, body: Value) -> Value {
        self.rt
            .block_on(self.admin.create(kind, &body))
            .unwrap_or_else(|e| panic!("creating {kind} {body}: {e}"))
    }

    fn set_status(&self, port: &str, status: PortStatus) {
        self.rt
            .block_on(self.ctl().intent().submit(Command::SetPortStatus {
                id: Id::new(port),
                status,
            }))
            .unwrap();
    }

    /// Runs a client call on the controller's runtime; it must succeed.
    fn run<T>(&self, f: impl std::future::Future<Output = Result<T, ClientError>>) -> T {
        self.rt.block_on(f).unwrap_or_else(|e| panic!("{e}"))
    }

    fn trace(&self, from: &str, expr: &str) -> Value {
        self.ok(
            Method::POST,
            "/v1/trace",
            Some(json!({"from": from, "expression": expr})),
        )
    }

    fn bgp(&self) -> Value {
        self.ok(Method::GET, "/v1/bgp", None)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Cease to peers and free the listen socket before the lab goes.
        if let Some(ctl) = self.ctl.take() {
            self.rt.block_on(ctl.shutdown());
        }
    }
}

/// The seed's any-to-any topology, built through the API.
struct Topo {
    blue: Value,
    red: Value,
    /// Instance port ids by name.
    ports: BTreeMap<String, String>,
}

/// (port, host, VRF, address).
const PORTS: [(&str, &str, &str, &str); 6] = [
    ("g1", "host-a", "blue", "10.1.1.5"),
    ("g2", "host-a", "blue", "10.3.7.9"),
    ("g3", "host-b", "blue", "10.1.1.6"),
    ("g4", "host-b", "blue", "10.3.7.10"),
    ("g5", "host-a", "red", "10.1.1.5"),
    ("g6", "host-b", "red", "10.1.1.6"),
];

fn tunnel_of(host: &str) -> &'static str {
    if host == "host-a" {
        "192.0.2.1"
    } else {
        "192.0.2.2"
    }
}

fn build_topology(env: &Env) -> Topo {
    let blue = env.create(Kind::Project, json!({"name": "blue"}));
    let red = env.create(Kind::Project, json!({"name": "red"}));
    let net = |p: &Value, name: &str, cidr: &str| {
        env.create(
            Kind::L2Network,
            json!({"project": p["id"], "name": name, "subnets": [{"cidr": cidr}]}),
        )
    };
    let net1 = net(&blue, "net1", "10.1.1.0/24");
    let net2 = net(&blue, "net2", "10.3.7.0/24");
    let net3 = net(&red, "net3", "10.1.1.0/24");
    let sg = |p: &Value| {
        env.create(
            Kind::SecurityGroup,
            json!({"project": p["id"], "name": "open", "rules": [{"direction": "ingress"}, {"direction": "egress"}]}),
        )
    };
    let (blue_sg, red_sg) = (sg(&blue), sg(&red));
    let blue_vpn = env.create(
        Kind::L3vpn,
        json!({"project": blue["id"], "name": "blue", "route_distinguisher": "64512:1", "route_targets": ["64512:1"],
               "subnets": [net1["subnets"][0]["id"], net2["subnets"][0]["id"]]}),
    );
    let red_vpn = env.create(
        Kind::L3vpn,
        json!({"project": red["id"], "name": "red", "route_distinguisher": "64512:2", "route_targets": ["64512:2"],
               "subnets": [net3["subnets"][0]["id"]]}),
    );
    let mut ports = BTreeMap::new();
    for (name, host, vrf, ip) in PORTS {
        let (project, sg, network) = match (vrf, ip.starts_with("10.3.")) {
            ("blue", false) => (&blue, &blue_sg, &net1),
            ("blue", true) => (&blue, &blue_sg, &net2),
            _ => (&red, &red_sg, &net3),
        };
        let p = env.create(
            Kind::InstancePort,
            json!({"project": project["id"], "name": name, "host": host,
                   "bindings": [{"service": network["id"], "fixed_ips": [{"ip": ip}], "security_groups": [sg["id"]]}]}),
        );
        ports.insert(name.to_string(), p["id"].as_str().unwrap().to_string());
    }
    for host in ["host-a", "host-b"] {
        env.ok(
            Method::PUT,
            &format!("/v1/hosts/{host}/tunnel"),
            Some(json!({"address": tunnel_of(host)})),
        );
    }
    Topo {
        blue: blue_vpn,
        red: red_vpn,
        ports,
    }
}

/// One route FRR must hold.
#[derive(Debug, Clone)]
struct Expected {
    port: &'static str,
    rd: &'static str,
    prefix: String,
    label: u64,
    next_hop: &'static str,
    rt: &'static str,
    router_mac: String,
}

fn expected(topo: &Topo) -> Vec<Expected> {
    PORTS
        .iter()
        .map(|(port, host, vrf, ip)| {
            let v = if *vrf == "blue" {
                &topo.blue
            } else {
                &topo.red
            };
            let id = Id::new(v["id"].as_str().unwrap());
            Expected {
                port,
                rd: if *vrf == "blue" { "64512:1" } else { "64512:2" },
                prefix: format!("{ip}/32"),
                label: v["vni"].as_u64().unwrap(),
                next_hop: tunnel_of(host),
                rt: if *vrf == "blue" { "64512:1" } else { "64512:2" },
                router_mac: weft_compiler::names::router_mac(&id).to_string(),
            }
        })
        .collect()
}

fn frr_conf(lab: &Lab) -> String {
    let weft = lab.weft_addr();
    format!(
        "frr defaults traditional
hostname wan-gw
!
route-map SETRT permit 10
 set extcommunity rt 64512:1
!
router bgp 65001
 bgp router-id {frr}
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor {weft} remote-as 64512
 neighbor {weft} timers 3 9
 neighbor {weft} timers connect 1
 neighbor {weft} disable-connected-check
 address-family ipv4 vpn
  neighbor {weft} activate
  network 203.0.113.0/24 rd 65001:7 label 200 route-map SETRT
 exit-address-family
!
",
        frr = lab.frr_addr()
    )
}

fn configure_bgp(env: &Env, lab: &Lab) {
    let v = env.ok(
        Method::PUT,
        "/v1/bgp",
        Some(json!({
            "local_as": 64512,
            "router_id": lab.weft_addr().to_string(),
            "listen": lab.weft_addr().to_string(),
            "peers": [{"address": lab.frr_addr().to_string(), "remote_as": 65001, "hold_time": 9, "connect_retry": 1}]
        })),
    );
    assert_eq!(v["running"], json!(true), "{v}");
}

/// Every route of `want` is in FRR's table with its attributes, and FRR
/// holds nothing else from us.
fn frr_holds(frr: &bgp_lab::Frr, lab: &Lab, want: &[Expected]) -> Result<(), String> {
    let peer = lab.weft_addr().to_string();
    let n = frr.vpn_received(&peer);
    if n != want.len() as u64 {
        return Err(format!("FRR has {n} routes from us, want {}", want.len()));
    }
    let table = frr.json("show bgp ipv4 vpn json");
    for w in want {
        let paths = &table["routes"]["routeDistinguishers"][w.rd][&w.prefix];
        let Some(paths) = paths.as_array() else {
            return Err(format!(
                "{} {} ({}) missing from FRR's table",
                w.rd, w.prefix, w.port
            ));
        };
        let nh = paths[0]["nexthops"][0]["ip"].as_str().unwrap_or("");
        if nh != w.next_hop {
            return Err(format!(
                "{} {}: next hop {nh}, want {}",
                w.rd, w.prefix, w.next_hop
            ));
        }
        let detail = frr
            .json(&format!("show bgp ipv4 vpn rd {} {} json", w.rd, w.prefix))
            .to_string();
        for needle in [
            format!("\"remoteLabel\":{}", w.label),
            format!("RT:{}", w.rt),
            "ET:8".to_string(),
            "\"valid\":true".to_string(),
            format!("Rmac:{}", w.router_mac),
        ] {
            if !detail.contains(&needle) {
                return Err(format!(
                    "{} {} ({}) lacks {needle}: {detail}",
                    w.rd, w.prefix, w.port
                ));
            }
        }
    }
    Ok(())
}

fn wait_frr_holds(frr: &bgp_lab::Frr, lab: &Lab, want: &[Expected], secs: u64) {
    let mut last = String::new();
    let ok = wait_for(Duration::from_secs(secs), || {
        match frr_holds(frr, lab, want) {
            Ok(()) => true,
            Err(e) => {
                last = e;
                false
            }
        }
    });
    assert!(ok, "{last}\n{}", frr.vtysh("show bgp ipv4 vpn"));
}

#[test]
fn frr_holds_every_vm_host_route_and_loses_it_when_the_port_goes() {
    let mut lab = Lab::new();
    let frr = lab.start_frr(&frr_conf(&lab));
    let env = Env::new();
    let topo = build_topology(&env);
    configure_bgp(&env, &lab);
    // Nothing is up yet: nothing is advertised.
    let peer = lab.weft_addr().to_string();
    assert!(
        wait_for(Duration::from_secs(30), || frr.neighbor_state(&peer)
            == "Established"),
        "FRR never established with the controller: {}",
        frr.vtysh("show bgp summary")
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(frr.vpn_received(&peer), 0, "routes of ports that are down");
    for id in topo.ports.values() {
        env.set_status(id, PortStatus::Up);
    }
    let mut want = expected(&topo);
    wait_frr_holds(&frr, &lab, &want, 20);
    let st = env.bgp();
    assert_eq!(st["exported"], json!(6), "{st}");
    assert_eq!(st["peers"][0]["state"], json!("Established"), "{st}");
    assert_eq!(st["peers"][0]["prefixes_out"], json!(6), "{st}");

    // G1 goes down (the host reports it): only Blue's 10.1.1.5 goes.
    env.set_status(&topo.ports["g1"], PortStatus::Down);
    want.retain(|w| w.port != "g1");
    wait_frr_holds(&frr, &lab, &want, 20);
    assert!(
        frr.json("show bgp ipv4 vpn json")["routes"]["routeDistinguishers"]["64512:2"]["10.1.1.5/32"]
            .is_array(),
        "Red's 10.1.1.5 went with Blue's"
    );
    // Back up: back in.
    env.set_status(&topo.ports["g1"], PortStatus::Up);
    want = expected(&topo);
    wait_frr_holds(&frr, &lab, &want, 20);

    // G3 set admin down through the API.
    env.ok(
        Method::PATCH,
        &format!("/v1/instance-ports/{}", topo.ports["g3"]),
        Some(json!({"admin_up": false})),
    );
    want.retain(|w| w.port != "g3");
    wait_frr_holds(&frr, &lab, &want, 20);

    // G6 deleted: its binding, its interface, then the port.
    let g6 = topo.ports["g6"].as_str();
    let ifaces = env.run(env.admin.list(Kind::Interface, &[("parent", g6)]));
    assert_eq!(ifaces.len(), 1, "{ifaces:?}");
    let iface = ifaces[0]["id"].as_str().unwrap();
    let sps = env.run(env.admin.list(Kind::ServicePort, &[("interface", iface)]));
    assert_eq!(sps.len(), 1, "{sps:?}");
    env.run(
        env.admin
            .delete(Kind::ServicePort, sps[0]["id"].as_str().unwrap()),
    );
    env.run(env.admin.delete(Kind::Interface, iface));
    env.run(env.admin.delete(Kind::InstancePort, g6));
    want.retain(|w| w.port != "g6");
    wait_frr_holds(&frr, &lab, &want, 20);

    // A host moving its tunnel endpoint re-advertises its routes.
    env.ok(
        Method::PUT,
        "/v1/hosts/host-a/tunnel",
        Some(json!({"address": "192.0.2.11"})),
    );
    for w in want.iter_mut().filter(|w| w.next_hop == "192.0.2.1") {
        w.next_hop = "192.0.2.11";
    }
    wait_frr_holds(&frr, &lab, &want, 20);
}

fn trace_reaches_frr(env: &Env, lab: &Lab) -> Result<String, String> {
    let t = env.trace("g1", "ip4.dst == 203.0.113.9 && tcp.dst == 443");
    let text = t["text"].as_str().unwrap_or_default().to_string();
    let verdicts = t["verdicts"].to_string();
    let want = format!("sent to {} via VNI 200", lab.frr_addr());
    let peer = format!("peer {} AS 65001 RD 65001:7", lab.frr_addr());
    if verdicts.contains(&want) && text.contains(&peer) {
        Ok(text)
    } else {
        Err(text)
    }
}

fn wait_trace(env: &Env, lab: &Lab, secs: u64) -> String {
    let mut last = String::new();
    let ok = wait_for(Duration::from_secs(secs), || {
        match trace_reaches_frr(env, lab) {
            Ok(t) => {
                last = t;
                true
            }
            Err(t) => {
                last = t;
                false
            }
        }
    });
    assert!(ok, "G1's trace to 203.0.113.9 does not reach FRR:\n{last}");
    last
}

#[test]
fn a_prefix_frr_originates_lands_in_blue_and_survives_flap_and_restart() {
    let mut lab = Lab::new();
    let mut frr = lab.start_frr(&frr_conf(&lab));
    let env = Env::new();
    let topo = build_topology(&env);
    for id in topo.ports.values() {
        env.set_status(id, PortStatus::Up);
    }
    configure_bgp(&env, &lab);
    let want = expected(&topo);
    wait_frr_holds(&frr, &lab, &want, 30);

    // FRR's 203.0.113.0/24 (RT 64512:1) is in Blue, not in Red.
    let text = wait_trace(&env, &lab, 20);
    assert!(text.contains("imported into"), "{text}");
    let red = env.trace("g5", "ip4.dst == 203.0.113.9 && tcp.dst == 443");
    assert!(
        !red["verdicts"].to_string().contains("via VNI 200"),
        "Red imports 64512:2 only, yet: {}",
        red["text"]
    );
    let routes = env.ok(Method::GET, "/v1/bgp/routes", None);
    let imported = routes["imported"].as_array().unwrap();
    let r = imported
        .iter()
        .find(|r| r["route"]["route"]["prefix"] == json!("203.0.113.0/24"))
        .unwrap_or_else(|| panic!("imported routes: {routes}"));
    assert_eq!(r["vrfs"], json!([topo.blue["id"]]), "{r}");
    assert_eq!(r["route"]["route"]["label_or_vni"], json!(200), "{r}");
    assert_eq!(r["route"]["peer_as"], json!(65001), "{r}");
    assert!(r["ignored"].is_null(), "{r}");
    let st = env.bgp();
    assert_eq!(st["peers"][0]["prefixes_in"], json!(1), "{st}");
    assert_eq!(st["installed"], json!(1), "{st}");

    // Flap through the API: the peer removed, then added again.
    let peer = lab.weft_addr().to_string();
    env.ok(
        Method::DELETE,
        &format!("/v1/bgp/peers/{}", lab.frr_addr()),
        None,
    );
    assert!(
        wait_for(Duration::from_secs(20), || frr.neighbor_state(&peer)
            != "Established"),
        "the session stayed up after the peer was removed"
    );
    assert!(
        wait_for(Duration::from_secs(10), || trace_reaches_frr(&env, &lab)
            .is_err()),
        "the imported route outlived its peer"
    );
    let unrouted = env.trace("g1", "ip4.dst == 203.0.113.9 && tcp.dst == 443");
    assert!(
        unrouted["verdicts"].to_string().contains("unreachable"),
        "{}",
        unrouted["text"]
    );
    assert_eq!(frr.vpn_received(&peer), 0);
    let st = env.ok(
        Method::POST,
        "/v1/bgp/peers",
        Some(json!({"address": lab.frr_addr().to_string(), "remote_as": 65001, "hold_time": 9, "connect_retry": 1})),
    );
    assert_eq!(st["peers"].as_array().unwrap().len(), 1, "{st}");
    wait_frr_holds(&frr, &lab, &want, 30);
    wait_trace(&env, &lab, 20);

    // FRR's bgpd dies and comes back: both directions converge again.
    frr.kill_bgpd();
    assert!(
        wait_for(Duration::from_secs(20), || env.bgp()["peers"][0]["state"]
            != json!("Established")),
        "the controller did not notice bgpd dying: {}",
        env.bgp()
    );
    let pid = lab.start_bgpd(&frr);
    frr.bgpd_pid = pid;
    wait_frr_holds(&frr, &lab, &want, 40);
    wait_trace(&env, &lab, 20);
    let st = env.bgp();
    assert!(
        st["peers"][0]["established_count"].as_u64().unwrap() >= 2,
        "{st}"
    );
}

#[test]
fn config_api_policy_persistence_and_exports_without_a_peer() {
    let mut env = Env::new();
    // Off by default.
    let st = env.bgp();
    assert!(st["config"].is_null(), "{st}");
    assert_eq!(st["running"], json!(false));

    // Checks, with the field named.
    let base = json!({"local_as": 64512, "router_id": "198.51.100.1", "peers": []});
    for (patch, field) in [
        (json!({"router_id": "2001:db8::1"}), "router_id"),
        (json!({"local_as": 0}), "local_as"),
        (json!({"local_as": 4294967296u64}), "local_as"),
        (json!({"listen": "here"}), "listen"),
        (
            json!({"peers": [{"address": "192.0.2.9", "remote_as": 65001}, {"address": "192.0.2.9", "remote_as": 65002}]}),
            "peers[1].address",
        ),
        (
            json!({"peers": [{"address": "192.0.2.9", "remote_as": 65001, "hold_time": 1}]}),
            "peers[0].hold_time",
        ),
        (
            json!({"peers": [{"address": "192.0.2.9"}]}),
            "peers[0].remote_as",
        ),
        (json!({"colour": "blue"}), ""),
    ] {
        let mut body = base.clone();
        weft_model::merge_patch(&mut body, &patch);
        match env.call(Method::PUT, "/v1/bgp", Some(body)) {
            Err(ClientError::Api {
                status: 400,
                field: f,
                message,
                ..
            }) => {
                if !field.is_empty() {
                    assert_eq!(f.as_deref(), Some(field), "{message}");
                }
            }
            other => panic!("{patch}: expected 400, got {other:?}"),
        }
    }
    // Peers before the speaker: refused.
    match env.call(
        Method::POST,
        "/v1/bgp/peers",
        Some(json!({"address": "192.0.2.9", "remote_as": 65001})),
    ) {
        Err(ClientError::Api { status: 409, .. }) => {}
        other => panic!("expected 409, got {other:?}"),
    }

    // Passive peers only: nothing is sent anywhere.
    let st = env.ok(
        Method::PUT,
        "/v1/bgp",
        Some(json!({"local_as": 64512, "router_id": "198.51.100.1",
                     "peers": [{"address": "192.0.2.9", "remote_as": 65001, "passive": true, "hold_time": 30}]})),
    );
    assert_eq!(st["running"], json!(true), "{st}");
    let rev = st["revision"].as_u64().unwrap();
    assert!(rev > 0);
    let st = env.ok(
        Method::POST,
        "/v1/bgp/peers",
        Some(json!({"address": "192.0.2.10", "remote_as": 65002, "passive": true})),
    );
    assert_eq!(st["peers"].as_array().unwrap().len(), 2, "{st}");
    assert_eq!(st["peers"][1]["address"], json!("192.0.2.10"), "{st}");
    match env.call(
        Method::POST,
        "/v1/bgp/peers",
        Some(json!({"address": "192.0.2.10", "remote_as": 65002, "passive": true})),
    ) {
        Err(ClientError::Api { status: 409, .. }) => {}
        other => panic!("expected 409 for a second 192.0.2.10, got {other:?}"),
    }
    match env.call(Method::DELETE, "/v1/bgp/peers/192.0.2.77", None) {
        Err(ClientError::Api { status: 404, .. }) => {}
        other => panic!("expected 404, got {other:?}"),
    }
    // A stale If-Match is refused and changes nothing.
    let body = json!({"local_as": 64513, "router_id": "198.51.100.1", "peers": []});
    match env.call_as(&env.admin, Method::PUT, "/v1/bgp", Some(body), Some(rev)) {
        Err(ClientError::Api { status: 412, .. }) => {}
        other => panic!("expected 412, got {other:?}"),
    }
    assert_eq!(env.bgp()["config"]["local_as"], json!(64512));

    // Admin only: a project member neither reads nor writes it.
    let p = env.create(Kind::Project, json!({"name": "tenant"}));
    let t = env
        .rt
        .block_on(env.admin.create_token(p["id"].as_str(), &["member"], "t"))
        .unwrap();
    let member = env.admin.with_token(t["token"].as_str().unwrap());
    for (m, path, body) in [
        (Method::GET, "/v1/bgp", None),
        (Method::GET, "/v1/bgp/routes", None),
        (
            Method::PUT,
            "/v1/bgp",
            Some(json!({"local_as": 1, "router_id": "198.51.100.9"})),
        ),
        (Method::DELETE, "/v1/bgp/peers/192.0.2.9", None),
        (
            Method::PUT,
            "/v1/hosts/host-a/tunnel",
            Some(json!({"address": "192.0.2.1"})),
        ),
    ] {
        match env.call_as(&member, m.clone(), path, body, None) {
            Err(ClientError::Api { status: 403, .. }) => {}
            other => panic!("{m} {path} as a member: expected 403, got {other:?}"),
        }
    }
    let doc = env.ok(Method::GET, "/v1/openapi.json", None);
    for path in [
        "/v1/bgp",
        "/v1/bgp/peers",
        "/v1/bgp/routes",
        "/v1/hosts/{name}/tunnel",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} not in the OpenAPI document"
        );
    }

    // Exports follow the topology, port status and tunnel addresses.
    let topo = build_topology(&env);
    let exported = |env: &Env| env.ok(Method::GET, "/v1/bgp/routes", None)["exported"].clone();
    assert_eq!(exported(&env), json!([]), "ports are down");
    for id in topo.ports.values() {
        env.set_status(id, PortStatus::Up);
    }
    let want = expected(&topo);
    let check = |env: &Env, want: &[Expected]| -> Result<(), String> {
        let got = exported(env);
        let got = got.as_array().unwrap();
        if got.len() != want.len() {
            return Err(format!(
                "{} routes, want {}: {got:?}",
                got.len(),
                want.len()
            ));
        }
        for w in want {
            let Some(r) = got.iter().find(|r| {
                r["route"]["rd"] == json!(w.rd) && r["route"]["prefix"] == json!(w.prefix)
            }) else {
                return Err(format!("{} {} missing: {got:?}", w.rd, w.prefix));
            };
            let r = &r["route"];
            let want_route = json!({"kind": {"type": "vpn"}, "rd": w.rd, "prefix": w.prefix,
                "label_or_vni": w.label, "next_hop": w.next_hop, "route_targets": [w.rt],
                "encap": "vxlan", "router_mac": r["router_mac"], "local_pref": null, "med": null});
            if *r != want_route {
                return Err(format!("{r} != {want_route}"));
            }
            let mac: Vec<String> = r["router_mac"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| format!("{:02x}", b.as_u64().unwrap()))
                .collect();
            if mac.join(":") != w.router_mac {
                return Err(format!("router MAC {mac:?} != {}", w.router_mac));
            }
        }
        Ok(())
    };
    let mut last = String::new();
    assert!(
        wait_for(Duration::from_secs(10), || check(&env, &want)
            .map_err(|e| last = e)
            .is_ok()),
        "{last}"
    );
    // A host without a tunnel address: its routes are held back, and said so.
    env.ok(Method::DELETE, "/v1/hosts/host-b/tunnel", None);
    let on_a: Vec<Expected> = want
        .iter()
        .filter(|w| w.next_hop == "192.0.2.1")
        .cloned()
        .collect();
    assert!(
        wait_for(Duration::from_secs(10), || check(&env, &on_a).is_ok()),
        "{:?}",
        exported(&env)
    );
    let problems = env.bgp()["export_problems"].to_string();
    assert!(
        problems.contains("host host-b") && problems.contains("no tunnel address"),
        "{problems}"
    );

    // The configuration survives a restart; the speaker comes back.
    let before = env.bgp()["config"].clone();
    env.restart();
    let st = env.bgp();
    assert_eq!(st["config"], before, "{st}");
    assert_eq!(st["running"], json!(true), "{st}");
    assert_eq!(st["peers"].as_array().unwrap().len(), 2, "{st}");

    // Disabled: the speaker stops and the configuration is gone, also after a restart.
    env.ok(Method::DELETE, "/v1/bgp", None);
    env.restart();
    let st = env.bgp();
    assert!(st["config"].is_null(), "{st}");
    assert_eq!(st["running"], json!(false), "{st}");
}
