//! REST API tests against a real controller on a loopback port, through the
//! same client the CLI uses: round trips for every resource, optimistic
//! concurrency, pagination and filters, policy (admin, owner, other
//! project, reader, provider networks both ways), bad input, and that the
//! OpenAPI document describes every resource.

use proptest::prelude::*;
use serde_json::{Value, json};
use weft_client::{Client, ClientError, Method};
use weft_controller::{Controller, ControllerConfig};
use weft_model::Kind;

struct Env {
    ctl: Controller,
    admin: Client,
    _dir: tempfile::TempDir,
}

async fn start_with_policy(policy: Option<&str>) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ControllerConfig::new(dir.path());
    cfg.southbound = Some(weft_controller::southbound::SouthboundConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    });
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    if let Some(p) = policy {
        let path = dir.path().join("custom-policy.yaml");
        std::fs::write(&path, p).unwrap();
        cfg.policy_file = Some(path);
    }
    let ctl = Controller::start(cfg).await.unwrap();
    let token = ctl
        .new_admin_token
        .clone()
        .expect("first start makes an admin token");
    let admin = Client::new(format!("http://{}", ctl.addr), Some(token));
    Env {
        ctl,
        admin,
        _dir: dir,
    }
}

async fn start() -> Env {
    start_with_policy(None).await
}

impl Env {
    /// A token bound to a project with the given roles.
    async fn token(&self, project: &str, roles: &[&str]) -> Client {
        let t = self
            .admin
            .create_token(Some(project), roles, "test")
            .await
            .unwrap();
        self.admin.with_token(t["token"].as_str().unwrap())
    }

    async fn project(&self, name: &str) -> String {
        let p = self
            .admin
            .create(Kind::Project, &json!({"name": name}))
            .await
            .unwrap();
        p["id"].as_str().unwrap().to_string()
    }

    /// Everything the admin sees, to compare before/after refused calls.
    async fn dump(&self) -> Vec<Value> {
        let mut all = Vec::new();
        for k in Kind::ALL {
            all.extend(self.admin.list(k, &[]).await.unwrap());
        }
        all
    }
}

#[track_caller]
fn api_err(r: Result<Value, ClientError>, status: u16) -> (String, Option<String>) {
    match r {
        Err(ClientError::Api {
            status: s,
            message,
            field,
            ..
        }) => {
            assert_eq!(s, status, "wrong status: {message}");
            (message, field)
        }
        other => panic!("expected HTTP {status}, got {other:?}"),
    }
}

#[tokio::test]
async fn round_trip_of_every_resource() {
    let env = start().await;
    let p = env.project("blue").await;
    let c = env.token(&p, &["member"]).await;

    let net = c
        .create(Kind::L2Network, &json!({"name": "net1", "subnets": [{"cidr": "10.1.1.0/24", "dns_servers": ["192.0.2.53"]}, {"cidr": "10.3.7.0/24"}]}))
        .await
        .unwrap();
    let net_id = net["id"].as_str().unwrap();
    let subnet = net["subnets"][0]["id"].as_str().unwrap();
    assert_eq!(net["project"], json!(p));
    assert_eq!(net["subnets"][0]["gateway"], json!("10.1.1.1"));
    assert!(net["revision"].as_u64().unwrap() > 0);

    let vpn = c
        .create(Kind::L3vpn, &json!({"name": "blue", "route_distinguisher": "64512:1", "route_targets": ["64512:1"], "subnets": [subnet]}))
        .await
        .unwrap();
    let sg = c
        .create(Kind::SecurityGroup, &json!({"name": "web", "rules": [
            {"direction": "ingress", "protocol": "tcp", "port_range_min": 80, "remote_prefix": "0.0.0.0/0"},
            {"direction": "egress"}]}))
        .await
        .unwrap();
    let port = c
        .create(
            Kind::InstancePort,
            &json!({"name": "g1", "host": "compute-a", "mtu": 1400}),
        )
        .await
        .unwrap();
    let iface = c
        .create(
            Kind::Interface,
            &json!({"name": "g1-0", "parent": port["id"]}),
        )
        .await
        .unwrap();
    let sp = c
        .create(
            Kind::ServicePort,
            &json!({"name": "g1-net1", "interface": iface["id"], "service": net_id,
            "fixed_ips": [{"ip": "10.1.1.5"}], "security_groups": [sg["id"]]}),
        )
        .await
        .unwrap();
    assert_eq!(sp["service_kind"], json!("l2-network"));
    assert_eq!(sp["fixed_ips"][0]["subnet"], json!(subnet));
    let link = c
        .create(Kind::SiteLink, &json!({"name": "dc-b-to-d", "site": "dc-b", "remote_site": "dc-d",
            "local_endpoint": "192.0.2.10", "remote_endpoint": "198.51.100.10", "services": [vpn["id"]]}))
        .await
        .unwrap();

    // Every object reads back as created.
    for (kind, obj) in [
        (Kind::L2Network, &net),
        (Kind::L3vpn, &vpn),
        (Kind::SecurityGroup, &sg),
        (Kind::InstancePort, &port),
        (Kind::Interface, &iface),
        (Kind::ServicePort, &sp),
        (Kind::SiteLink, &link),
    ] {
        let got = c.get(kind, obj["id"].as_str().unwrap()).await.unwrap();
        assert_eq!(&got, obj, "{kind}");
        let listed = c.list(kind, &[]).await.unwrap();
        assert!(listed.contains(obj), "{kind} missing from list");
    }

    // Update with If-Match: the right revision wins, a stale one gets 412.
    let rev = port["revision"].as_u64().unwrap();
    let updated = c
        .update(
            Kind::InstancePort,
            port["id"].as_str().unwrap(),
            &json!({"name": "g1-renamed"}),
            Some(rev),
        )
        .await
        .unwrap();
    assert_eq!(updated["name"], json!("g1-renamed"));
    assert_eq!(updated["mtu"], json!(1400));
    assert!(updated["revision"].as_u64().unwrap() > rev);
    let (msg, _) = api_err(
        c.update(
            Kind::InstancePort,
            port["id"].as_str().unwrap(),
            &json!({"name": "late"}),
            Some(rev),
        )
        .await,
        412,
    );
    assert!(msg.contains("re-read"), "{msg}");
    // The ETag header carries the revision.
    let (_, etag, _) = c
        .request(
            Method::GET,
            &format!("/v1/instance-ports/{}", port["id"].as_str().unwrap()),
            &[],
            None,
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        etag.as_deref(),
        Some(updated["revision"].to_string().as_str())
    );

    // Delete of something still bound names the holder, then works in order.
    let (msg, _) = api_err(
        c.delete(Kind::L2Network, net_id).await.map(|_| Value::Null),
        409,
    );
    assert!(msg.contains(sp["id"].as_str().unwrap()), "{msg}");
    for (kind, obj) in [
        (Kind::SiteLink, &link),
        (Kind::ServicePort, &sp),
        (Kind::Interface, &iface),
        (Kind::InstancePort, &port),
        (Kind::SecurityGroup, &sg),
        (Kind::L3vpn, &vpn),
        (Kind::L2Network, &net),
    ] {
        c.delete(kind, obj["id"].as_str().unwrap()).await.unwrap();
        api_err(c.get(kind, obj["id"].as_str().unwrap()).await, 404);
    }
    env.ctl.shutdown().await;
}

#[tokio::test]
async fn list_filters_and_pagination() {
    let env = start().await;
    let p = env.project("blue").await;
    let c = env.token(&p, &["member"]).await;
    for i in 0..25 {
        let host = if i % 2 == 0 { "compute-a" } else { "compute-b" };
        c.create(
            Kind::InstancePort,
            &json!({"name": format!("vm{i}"), "host": host}),
        )
        .await
        .unwrap();
    }
    // Pages of 10 follow next_page_token and see everything once.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut q = vec![("limit", "10")];
        if let Some(t) = &token {
            q.push(("page_token", t.as_str()));
        }
        let (_, _, v) = c
            .request(Method::GET, "/v1/instance-ports", &q, None, None)
            .await
            .unwrap();
        let items = v["items"].as_array().unwrap();
        assert!(items.len() <= 10);
        seen.extend(
            items
                .iter()
                .map(|i| i["name"].as_str().unwrap().to_string()),
        );
        match v["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 25);
    assert_eq!(
        c.list(Kind::InstancePort, &[("host", "compute-a")])
            .await
            .unwrap()
            .len(),
        13
    );
    assert_eq!(
        c.list(Kind::InstancePort, &[("name", "vm7")])
            .await
            .unwrap()
            .len(),
        1
    );
    let (msg, field) = api_err(
        c.request(
            Method::GET,
            "/v1/instance-ports",
            &[("colour", "red")],
            None,
            None,
        )
        .await
        .map(|r| r.2),
        400,
    );
    assert!(msg.contains("cannot filter"), "{msg}");
    assert_eq!(field.as_deref(), Some("colour"));
    api_err(
        c.request(
            Method::GET,
            "/v1/instance-ports",
            &[("limit", "0")],
            None,
            None,
        )
        .await
        .map(|r| r.2),
        400,
    );
    env.ctl.shutdown().await;
}

#[tokio::test]
async fn policy_admin_owner_other_project_and_reader() {
    let env = start().await;
    let blue = env.project("blue").await;
    let red = env.project("red").await;
    let blue_member = env.token(&blue, &["member"]).await;
    let blue_reader = env.token(&blue, &["reader"]).await;
    let red_member = env.token(&red, &["member"]).await;

    let net = blue_member
        .create(
            Kind::L2Network,
            &json!({"name": "n", "subnets": [{"cidr": "10.0.0.0/24"}]}),
        )
        .await
        .unwrap();
    let id = net["id"].as_str().unwrap();

    // The owner's reader can read but not write.
    assert_eq!(
        blue_reader.get(Kind::L2Network, id).await.unwrap()["id"],
        net["id"]
    );
    api_err(
        blue_reader
            .create(Kind::L2Network, &json!({"name": "x"}))
            .await,
        403,
    );
    api_err(
        blue_reader
            .update(Kind::L2Network, id, &json!({"name": "y"}), None)
            .await,
        403,
    );
    api_err(
        blue_reader
            .delete(Kind::L2Network, id)
            .await
            .map(|_| Value::Null),
        403,
    );

    // Another project sees nothing: 404, not 403, and lists are filtered.
    api_err(red_member.get(Kind::L2Network, id).await, 404);
    api_err(
        red_member
            .update(Kind::L2Network, id, &json!({"name": "y"}), None)
            .await,
        404,
    );
    api_err(
        red_member
            .delete(Kind::L2Network, id)
            .await
            .map(|_| Value::Null),
        404,
    );
    assert!(
        red_member
            .list(Kind::L2Network, &[])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(red_member.list(Kind::Project, &[]).await.unwrap().len(), 1);
    // Creating in someone else's project is refused; referencing their objects is 404.
    api_err(
        red_member
            .create(Kind::L2Network, &json!({"name": "x", "project": blue}))
            .await,
        403,
    );
    let port = red_member
        .create(Kind::InstancePort, &json!({}))
        .await
        .unwrap();
    let iface = red_member
        .create(Kind::Interface, &json!({"parent": port["id"]}))
        .await
        .unwrap();
    let (_, field) = api_err(
        red_member
            .create(
                Kind::ServicePort,
                &json!({"interface": iface["id"], "service": id}),
            )
            .await,
        404,
    );
    assert_eq!(field.as_deref(), Some("service"));

    // Members can't manage projects or tokens; the admin can, in any project.
    api_err(
        blue_member
            .create(Kind::Project, &json!({"name": "green"}))
            .await,
        403,
    );
    api_err(
        blue_member.create_token(Some(&blue), &["admin"], "").await,
        403,
    );
    let admin_net = env
        .admin
        .create(
            Kind::L2Network,
            &json!({"name": "by-admin", "project": "red"}),
        )
        .await
        .unwrap();
    assert_eq!(admin_net["project"], json!(red));
    assert_eq!(env.admin.list(Kind::L2Network, &[]).await.unwrap().len(), 2);
    // An admin without a project must name one.
    let (_, field) = api_err(
        env.admin
            .create(Kind::L2Network, &json!({"name": "x"}))
            .await,
        400,
    );
    assert_eq!(field.as_deref(), Some("project"));

    // No token, or a bad one: 401.
    let anon = Client::new(env.admin.endpoint().to_string(), None);
    api_err(
        anon.list(Kind::L2Network, &[]).await.map(|_| Value::Null),
        401,
    );
    let forged = anon.with_token("weft_0123456789abcdef_0123456789abcdef0123456789abcdef");
    api_err(
        forged.list(Kind::L2Network, &[]).await.map(|_| Value::Null),
        401,
    );

    // A revoked token stops working at once on this replica.
    let t = env
        .admin
        .create_token(Some(&blue), &["member"], "")
        .await
        .unwrap();
    let c = env.admin.with_token(t["token"].as_str().unwrap());
    c.whoami().await.unwrap();
    env.admin
        .request(
            Method::DELETE,
            &format!("/v1/tokens/{}", t["id"].as_str().unwrap()),
            &[],
            None,
            None,
        )
        .await
        .unwrap();
    api_err(c.whoami().await, 401);
    env.ctl.shutdown().await;
}

const PROVIDER_NET: &str = r#"{"name": "prov", "provider": {"physical_network": "physnet1", "network_type": "vlan", "segmentation_id": 100}}"#;

#[tokio::test]
async fn provider_networks_by_default_policy_owner_allowed() {
    // Seed "Programmable Provisioning of Provider Networks": default admin_or_owner.
    let env = start().await;
    let p = env.project("vnf").await;
    let vnfm = env.token(&p, &["member"]).await;
    let body: Value = serde_json::from_str(PROVIDER_NET).unwrap();
    let n = vnfm.create(Kind::L2Network, &body).await.unwrap();
    assert_eq!(n["provider"]["segmentation_id"], json!(100));
    env.ctl.shutdown().await;
}

#[tokio::test]
async fn provider_networks_restricted_by_an_edited_policy() {
    let env = start_with_policy(Some(
        "create_provider_network: \"rule:admin or role:vnfm\"\nupdate_provider_network: \"rule:admin or role:vnfm\"\n",
    ))
    .await;
    let p = env.project("vnf").await;
    let member = env.token(&p, &["member"]).await;
    let vnfm = env.token(&p, &["member", "vnfm"]).await;
    let body: Value = serde_json::from_str(PROVIDER_NET).unwrap();
    let (msg, _) = api_err(member.create(Kind::L2Network, &body).await, 403);
    assert!(msg.contains("create_provider_network"), "{msg}");
    // The same member may still create ordinary networks...
    let plain = member
        .create(Kind::L2Network, &json!({"name": "plain"}))
        .await
        .unwrap();
    // ...but not turn one into a provider network.
    api_err(
        member
            .update(
                Kind::L2Network,
                plain["id"].as_str().unwrap(),
                &json!({"provider": body["provider"]}),
                None,
            )
            .await,
        403,
    );
    // The VNF manager's role is allowed by the edited rule.
    vnfm.create(Kind::L2Network, &body).await.unwrap();
    env.ctl.shutdown().await;
}

#[tokio::test]
async fn bad_input_gets_4xx_and_changes_nothing() {
    let env = start().await;
    let p = env.project("blue").await;
    let c = env.token(&p, &["member"]).await;
    c.create(
        Kind::L2Network,
        &json!({"name": "n", "subnets": [{"cidr": "10.0.0.0/24"}]}),
    )
    .await
    .unwrap();
    let before = env.dump().await;
    let http = reqwest::Client::new();
    let token = {
        let t = env
            .admin
            .create_token(Some(&p), &["member"], "raw")
            .await
            .unwrap();
        t["token"].as_str().unwrap().to_string()
    };
    let base = format!("http://{}", env.ctl.addr);
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let cases: Vec<(&str, String, Option<&str>, u16)> = vec![
        (
            "/v1/l2-networks",
            "{\"name\": ".into(),
            Some("application/json"),
            400,
        ),
        (
            "/v1/l2-networks",
            "[1, 2]".into(),
            Some("application/json"),
            400,
        ),
        (
            "/v1/l2-networks",
            "{\"name\": 5}".into(),
            Some("application/json"),
            400,
        ),
        (
            "/v1/l2-networks",
            "{\"subnets\": [{\"cidr\": 10}]}".into(),
            Some("application/json"),
            400,
        ),
        ("/v1/l2-networks", "".into(), Some("application/json"), 400),
        ("/v1/l2-networks", "{}".into(), Some("text/plain"), 415),
        ("/v1/l2-networks", huge, Some("application/json"), 413),
        (
            "/v1/no-such-things",
            "{}".into(),
            Some("application/json"),
            404,
        ),
        (
            "/v1/instance-ports",
            "{\"mac\": \"zz:zz\"}".into(),
            Some("application/json"),
            400,
        ),
        (
            "/v1/instance-ports",
            "{\"mtu\": 1e9}".into(),
            Some("application/json"),
            400,
        ),
        (
            "/v1/l3vpns",
            "{\"route_distinguisher\": \"1:2:3\"}".into(),
            Some("application/json"),
            400,
        ),
    ];
    for (path, body, ct, want) in cases {
        let mut req = http
            .post(format!("{base}{path}"))
            .bearer_auth(&token)
            .body(body.clone());
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(status, want, "{path} {}: {v}", &body[..body.len().min(60)]);
        assert!(
            v["code"].is_string() && v["message"].is_string(),
            "error body not JSON: {v}"
        );
    }
    assert_eq!(env.dump().await, before, "refused requests changed state");
    env.ctl.shutdown().await;
}

/// Random JSON values, nested a little.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-z0-9:./ -]{0,20}".prop_map(Value::String),
        prop_oneof![
            Just("10.1.1.0/24"),
            Just("10.1.1.5"),
            Just("64512:1"),
            Just("fa:16:3e:00:00:01"),
            Just("ingress"),
            Just("tcp")
        ]
        .prop_map(|s| Value::String(s.into())),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("name".to_string()),
                    Just("subnets".to_string()),
                    Just("cidr".to_string()),
                    Just("fixed_ips".to_string()),
                    Just("ip".to_string()),
                    Just("mac".to_string()),
                    Just("rules".to_string()),
                    Just("direction".to_string()),
                    Just("vni".to_string()),
                    Just("route_distinguisher".to_string()),
                    Just("interface".to_string()),
                    Just("service".to_string()),
                    Just("parent".to_string()),
                    Just("vlan".to_string()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn random_bodies_never_cause_a_server_error() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let env = rt.block_on(start());
    let p = rt.block_on(env.project("fuzz"));
    let c = rt.block_on(env.token(&p, &["member"]));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 300,
        ..ProptestConfig::default()
    });
    runner
        .run(&(0..Kind::ALL.len(), arb_json()), |(k, body)| {
            let kind = Kind::ALL[k];
            let r = rt.block_on(c.create(kind, &body));
            if let Err(e) = &r {
                match e.status() {
                    Some(s) => prop_assert!((400..500).contains(&s), "{kind} {body}: {e}"),
                    None => prop_assert!(false, "{kind} {body}: {e}"),
                }
            }
            Ok(())
        })
        .unwrap();
    rt.block_on(env.ctl.shutdown());
}

#[tokio::test]
async fn openapi_document_describes_every_resource() {
    let env = start().await;
    let anon = Client::new(env.admin.endpoint().to_string(), None);
    let (_, _, doc) = anon
        .request(Method::GET, "/v1/openapi.json", &[], None, None)
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for k in Kind::ALL {
        let list = &doc["paths"][format!("/v1/{}", k.plural())];
        assert!(list["get"].is_object() && list["post"].is_object(), "{k}");
        let one = &doc["paths"][format!("/v1/{}/{{id}}", k.plural())];
        assert!(one["patch"].is_object() && one["delete"].is_object(), "{k}");
    }
    // Every $ref points at a schema that exists.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r.trim_start_matches("#/components/schemas/");
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling $ref {r}"
        );
    }
    env.ctl.shutdown().await;
}

#[tokio::test]
async fn concurrent_writers_are_serialized_correctly() {
    // Many clients race for the same addresses: each address is given once.
    let env = start().await;
    let p = env.project("blue").await;
    let c = env.token(&p, &["member"]).await;
    let net = c
        .create(
            Kind::L2Network,
            &json!({"name": "n", "subnets": [{"cidr": "10.0.0.0/24"}]}),
        )
        .await
        .unwrap();
    let net_id = net["id"].as_str().unwrap().to_string();
    let mut tasks = Vec::new();
    for i in 0..64 {
        let c = c.clone();
        let net_id = net_id.clone();
        tasks.push(tokio::spawn(async move {
            let ip = format!("10.0.0.{}", 10 + i % 16);
            c.create(
                Kind::InstancePort,
                &json!({"bindings": [{"service": net_id, "fixed_ips": [{"ip": ip}]}]}),
            )
            .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.status(), Some(409), "{e}"),
        }
    }
    assert_eq!(ok, 16, "each of the 16 addresses is given exactly once");
    assert_eq!(c.list(Kind::ServicePort, &[]).await.unwrap().len(), 16);
    assert_eq!(c.list(Kind::InstancePort, &[]).await.unwrap().len(), 16);
    env.ctl.shutdown().await;
}

#[tokio::test]
async fn trace_through_the_api() {
    let env = start().await;
    let p = env.project("blue").await;
    let c = env.token(&p, &["member"]).await;
    let net = c
        .create(
            Kind::L2Network,
            &json!({"name": "n", "subnets": [{"cidr": "10.0.0.0/24"}]}),
        )
        .await
        .unwrap();
    let sg = c
        .create(Kind::SecurityGroup, &json!({"name": "web", "rules": [{"direction": "egress"}, {"direction": "ingress", "protocol": "tcp", "port_range_min": 80}]}))
        .await
        .unwrap();
    for (name, ip) in [("a", "10.0.0.10"), ("b", "10.0.0.11")] {
        c.create(
            Kind::InstancePort,
            &json!({"name": name, "host": "h1", "bindings": [{"service": net["id"], "fixed_ips": [{"ip": ip}], "security_groups": [sg["id"]]}]}),
        )
        .await
        .unwrap();
    }
    let trace = |expr: &str| {
        let c = c.clone();
        let body = json!({"from": "a", "expression": expr});
        async move {
            c.request(Method::POST, "/v1/trace", &[], Some(&body), None)
                .await
                .map(|r| r.2)
        }
    };
    let ok = trace("ip4.dst == 10.0.0.11 && tcp.dst == 80")
        .await
        .unwrap();
    let verdicts = ok["verdicts"].to_string();
    assert!(verdicts.contains("delivered to port b"), "{ok}");
    assert!(
        ok["text"]
            .as_str()
            .unwrap()
            .contains("security group web rule 2"),
        "{}",
        ok["text"]
    );
    let denied = trace("ip4.dst == 10.0.0.11 && tcp.dst == 22")
        .await
        .unwrap();
    assert!(
        denied["verdicts"].to_string().contains("default deny"),
        "{denied}"
    );
    // A bad expression points at the offending token.
    let (msg, field) = api_err(trace("ip4.dst == banana").await, 400);
    assert_eq!(field.as_deref(), Some("expression"));
    assert!(msg.contains("banana"), "{msg}");
    // Other projects' ports do not exist for this caller.
    let red = env.project("red").await;
    let r = env.token(&red, &["member"]).await;
    let (_, field) = api_err(
        r.request(
            Method::POST,
            "/v1/trace",
            &[],
            Some(&json!({"from": "a", "expression": "icmp4"})),
            None,
        )
        .await
        .map(|r| r.2),
        404,
    );
    assert_eq!(field.as_deref(), Some("from"));
    env.ctl.shutdown().await;
}
