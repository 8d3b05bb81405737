//! Against GoBGP 3 (Debian's `gobgpd`), each side in its own namespace:
//!
//! ```text
//!   ns weft: our speaker, AS 65000   ns gobgp: gobgpd, AS 65002
//!   192.0.2.1/24 ───────────veth──── 192.0.2.3/24
//! ```

mod lab;

use std::net::IpAddr;
use std::time::Duration;

use lab::{GoBgp, Lab, wait_for};
use weft_bgp::{Encapsulation, PeerConfig, SpeakerConfig, VpnRoute};

const GOBGP_CONF: &str = r#"
[global.config]
  as = 65002
  router-id = "192.0.2.3"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "192.0.2.1"
    peer-as = 65000
  [neighbors.timers.config]
    connect-retry = 1
    hold-time = 9
    keepalive-interval = 3
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "l3vpn-ipv4-unicast"
"#;

#[test]
fn routes_flow_both_ways_with_gobgp() {
    let mut lab = Lab::new();
    let w = lab.ns("w");
    let g = lab.ns("g");
    lab.link(&w, "192.0.2.1/24", &g, "192.0.2.3/24", "veth0");
    let gobgp = GoBgp::start(&mut lab, &g, "gobgp", GOBGP_CONF);
    let weft = lab.speaker(
        &w,
        SpeakerConfig {
            local_as: 65000,
            router_id: "192.0.2.1".parse().unwrap(),
            listen: Some("0.0.0.0:179".parse().unwrap()),
            peers: vec![PeerConfig {
                connect_retry: Some(1),
                ..PeerConfig::new("192.0.2.3".parse().unwrap(), 65002)
            }],
        },
    );
    let routes: Vec<VpnRoute> = (1..=10)
        .map(|i| {
            let mut r = VpnRoute::vpnv4(
                "65000:5".parse().unwrap(),
                format!("10.9.0.{i}/32").parse().unwrap(),
                500 + i,
                "192.0.2.20".parse().unwrap(),
                vec!["65000:5".parse().unwrap()],
            );
            r.encap = Some(Encapsulation::Vxlan);
            r
        })
        .collect();
    weft.set_exports(routes.clone()).unwrap();
    assert!(
        wait_for(Duration::from_secs(30), || gobgp
            .json(&["global", "rib", "-a", "vpnv4"])
            .as_object()
            .is_some_and(|m| m.len() == 10)),
        "GoBGP's VPNv4 table: {}",
        gobgp.cli(&["global", "rib", "-a", "vpnv4"])
    );
    let rib = gobgp.json(&["global", "rib", "-a", "vpnv4"]);
    for r in &routes {
        let key = format!("{}:{}", r.rd, r.prefix);
        let path = &rib[&key][0];
        assert_eq!(
            path["nlri"]["labels"][0].as_u64(),
            Some(u64::from(r.label_or_vni)),
            "{key}: {path}"
        );
        let text = path["attrs"].to_string();
        assert!(text.contains("\"nexthop\":\"192.0.2.20\""), "{key}: {text}");
        assert!(
            text.contains("\"value\":\"65000:5\""),
            "{key} lacks its RT: {text}"
        );
    }

    // GoBGP originates a route; we import it.
    gobgp.cli(&[
        "global",
        "rib",
        "-a",
        "vpnv4",
        "add",
        "198.51.100.0/24",
        "label",
        "300",
        "rd",
        "65002:9",
        "rt",
        "65002:9",
        "nexthop",
        "192.0.2.3",
    ]);
    let imports = weft.imports();
    assert!(wait_for(Duration::from_secs(20), || imports
        .borrow()
        .routes
        .len()
        == 1));
    let got = imports.borrow().routes[0].clone();
    assert_eq!(got.route.prefix.to_string(), "198.51.100.0/24");
    assert_eq!(got.route.rd.to_string(), "65002:9");
    assert_eq!(got.route.label_or_vni, 300);
    assert_eq!(got.route.route_targets, vec!["65002:9".parse().unwrap()]);
    assert_eq!(got.route.next_hop, "192.0.2.3".parse::<IpAddr>().unwrap());
    assert_eq!(got.peer_as, 65002);

    // Withdrawals both ways.
    weft.set_exports(routes[..4].to_vec()).unwrap();
    assert!(wait_for(Duration::from_secs(20), || gobgp
        .json(&["global", "rib", "-a", "vpnv4"])
        .as_object()
        .is_some_and(|m| m.len() == 5)));
    gobgp.cli(&[
        "global",
        "rib",
        "-a",
        "vpnv4",
        "del",
        "198.51.100.0/24",
        "label",
        "300",
        "rd",
        "65002:9",
    ]);
    assert!(wait_for(Duration::from_secs(20), || imports
        .borrow()
        .routes
        .is_empty()));
}
