//! Routes learned from BGP peers: installed in the VRFs that import one of
//! their route targets, sent through a tunnel to the advertising next hop,
//! shown by traces with where they came from, and incremental updates equal
//! a full compile.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use serde_json::json;
use weft_compiler::{Compiler, ExternalRoute, trace};
use weft_model::{Command, CountingIds, Intent, Kind, Spec};

#[test]
fn imported_routes_reach_their_next_hop() {
    let mut intent = Intent::new();
    let mut ids = CountingIds::default();
    let mut mk = |intent: &mut Intent,
                  kind: Kind,
                  project: Option<&weft_model::Id>,
                  body: serde_json::Value| {
        let spec = Spec::parse(kind, body.to_string().as_bytes()).unwrap();
        intent
            .apply(
                Command::Create {
                    project: project.cloned(),
                    spec,
                },
                &mut ids,
            )
            .unwrap()
            .object
            .unwrap()
            .id()
            .clone()
    };
    let p = mk(&mut intent, Kind::Project, None, json!({"name": "blue"}));
    let net = mk(
        &mut intent,
        Kind::L2Network,
        Some(&p),
        json!({"subnets": [{"cidr": "10.1.1.0/24"}]}),
    );
    let s = intent.l2_networks()[&net].subnets[0].id.clone();
    mk(
        &mut intent,
        Kind::L3vpn,
        Some(&p),
        json!({"route_distinguisher": "64512:1", "import_targets": ["64512:1", "65001:7"], "export_targets": ["64512:1"], "subnets": [s]}),
    );
    mk(
        &mut intent,
        Kind::L3vpn,
        Some(&p),
        json!({"route_distinguisher": "64512:2", "route_targets": ["64512:2"]}),
    );
    let sg = mk(
        &mut intent,
        Kind::SecurityGroup,
        Some(&p),
        json!({"rules": [{"direction": "egress"}]}),
    );
    mk(
        &mut intent,
        Kind::InstancePort,
        Some(&p),
        json!({"name": "g1", "host": "h1", "bindings": [{"service": net, "fixed_ips": [{"ip": "10.1.1.5"}], "security_groups": [sg]}]}),
    );

    let mut c = Compiler::full(&intent);
    let routes = vec![ExternalRoute {
        prefix: "203.0.113.0/24".parse().unwrap(),
        next_hop: "192.0.2.254".parse().unwrap(),
        vni: 7000,
        router_mac: None,
        route_targets: vec!["65001:7".parse().unwrap()],
        local_pref: 100,
        source: "peer 192.0.2.254 AS 65001 RD 65001:7".into(),
    }];
    let d = c.set_external(&intent, routes.clone());
    assert_eq!(d.changed.len(), 1, "only the importing VRF changes: {d:?}");
    assert_eq!(
        Compiler::full_with(&intent, Arc::new(routes.clone())).fragments(),
        c.fragments()
    );

    let dir: BTreeMap<String, IpAddr> = [("h1".to_string(), "192.0.2.1".parse().unwrap())].into();
    let by_ip: BTreeMap<IpAddr, String> = [("192.0.2.1".parse().unwrap(), "h1".to_string())].into();
    let r = trace::trace(
        &c,
        &intent,
        &dir,
        &by_ip,
        "g1",
        "ip4.dst == 203.0.113.9 && tcp.dst == 443",
    )
    .unwrap();
    let text = r.to_string();
    assert!(text.contains("imported into"), "{text}");
    assert!(text.contains("AS 65001"), "{text}");
    assert!(
        r.verdicts
            .iter()
            .any(|v| v.contains("192.0.2.254 via VNI 7000")),
        "{text}"
    );

    // Withdrawn: the VRF has no route any more.
    c.set_external(&intent, Vec::new());
    let r = trace::trace(
        &c,
        &intent,
        &dir,
        &by_ip,
        "g1",
        "ip4.dst == 203.0.113.9 && tcp.dst == 443",
    )
    .unwrap();
    assert!(
        r.verdicts.iter().any(|v| v.contains("net unreachable")),
        "{}",
        r
    );
}
