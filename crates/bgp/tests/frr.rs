//! Against FRR 8.4 (Debian's `frr`), each side in its own network namespace:
//!
//! ```text
//!   ns weft: our speaker            ns frr: zebra + bgpd
//!   AS 65000, 192.0.2.1/24 ──veth── 192.0.2.2/24, AS 65001
//!   (listens on :179)               originates 203.0.113.0/24 in VPNv4
//! ```
//!
//! FRR originates a VPNv4 route without a kernel VRF (this kernel has
//! none) through `network PREFIX rd RD label N route-map SETRT` under
//! `address-family ipv4 vpn`, the route map setting the route target.

mod lab;

use std::net::IpAddr;
use std::time::Duration;

use lab::{Frr, Lab, wait_for};
use weft_bgp::{Encapsulation, PeerConfig, SpeakerConfig, SpeakerHandle, State, VpnRoute};

fn frr_conf(gr: bool) -> String {
    format!(
        "frr defaults traditional
hostname frr
!
route-map SETRT permit 10
 set extcommunity rt 65001:7
!
router bgp 65001
 bgp router-id 192.0.2.2
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 {gr}
 neighbor 192.0.2.1 remote-as 65000
 neighbor 192.0.2.1 timers 3 9
 neighbor 192.0.2.1 timers connect 1
 address-family ipv4 vpn
  neighbor 192.0.2.1 activate
  network 203.0.113.0/24 rd 65001:7 label 200 route-map SETRT
 exit-address-family
 address-family l2vpn evpn
  neighbor 192.0.2.1 activate
 exit-address-family
!
",
        gr = if gr {
            "bgp graceful-restart\n bgp graceful-restart preserve-fw-state\n bgp graceful-restart restart-time 60"
        } else {
            ""
        }
    )
}

struct Setup {
    lab: Lab,
    frr: Frr,
    weft: SpeakerHandle,
    weft_ns: String,
}

fn setup(gr: bool, extra_peers: Vec<PeerConfig>) -> Setup {
    let mut lab = Lab::new();
    let w = lab.ns("w");
    let f = lab.ns("f");
    lab.link(&w, "192.0.2.1/24", &f, "192.0.2.2/24", "veth0");
    let frr = Frr::start(&mut lab, &f, "frr", &frr_conf(gr));
    let mut peers = vec![PeerConfig {
        hold_time: Some(9),
        connect_retry: Some(1),
        ..PeerConfig::new("192.0.2.2".parse().unwrap(), 65001)
    }];
    peers.extend(extra_peers);
    let weft = lab.speaker(
        &w,
        SpeakerConfig {
            local_as: 65000,
            router_id: "192.0.2.1".parse().unwrap(),
            listen: Some("0.0.0.0:179".parse().unwrap()),
            peers,
        },
    );
    let s = Setup {
        lab,
        frr,
        weft,
        weft_ns: w,
    };
    assert!(
        wait_for(Duration::from_secs(30), || s
            .frr
            .neighbor_state("192.0.2.1")
            == "Established"),
        "FRR never established with us: {}",
        s.frr.vtysh("show bgp summary")
    );
    s
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Host routes as the controller would export them for VM ports.
fn host_routes(n: u32) -> Vec<VpnRoute> {
    (0..n)
        .map(|i| {
            let rd = if i % 2 == 0 {
                "65000:100"
            } else {
                "192.0.2.1:200"
            };
            let mut r = VpnRoute::vpnv4(
                rd.parse().unwrap(),
                format!("10.1.{}.{}/32", i / 200, i % 200 + 1)
                    .parse()
                    .unwrap(),
                100 + i,
                format!("192.0.2.{}", 10 + i % 3).parse().unwrap(),
                vec![
                    "65000:100".parse().unwrap(),
                    format!("65000:{}", 1000 + i % 2).parse().unwrap(),
                ],
            );
            r.encap = Some(Encapsulation::Vxlan);
            r
        })
        .collect()
}

#[test]
fn frr_receives_our_vpnv4_host_routes_with_rd_rt_label_and_next_hop() {
    let s = setup(false, vec![]);
    let routes = host_routes(40);
    s.weft.set_exports(routes.clone()).unwrap();
    assert!(
        wait_for(Duration::from_secs(20), || s.frr.vpn_received("192.0.2.1")
            == 40),
        "FRR has {} routes",
        s.frr.vpn_received("192.0.2.1")
    );
    let table = s.frr.json("show bgp ipv4 vpn json");
    for r in &routes {
        let rd = r.rd.to_string();
        let prefix = r.prefix.to_string();
        let paths = &table["routes"]["routeDistinguishers"][&rd][&prefix];
        assert!(paths.is_array(), "{rd} {prefix} missing from FRR's table");
        let nh = &paths[0]["nexthops"][0]["ip"];
        assert_eq!(
            nh.as_str(),
            Some(r.next_hop.to_string().as_str()),
            "{rd} {prefix}"
        );
        // Labels and communities are in the per-prefix detail.
        let detail = s
            .frr
            .json(&format!("show bgp ipv4 vpn rd {rd} {prefix} json"));
        let text = detail.to_string();
        assert!(
            text.contains(&format!("\"remoteLabel\":{}", r.label_or_vni)),
            "{rd} {prefix}: {text}"
        );
        for t in &r.route_targets {
            assert!(
                text.contains(&format!("RT:{t}")),
                "{rd} {prefix} lacks RT {t}: {text}"
            );
        }
        assert!(
            text.contains("ET:8"),
            "{rd} {prefix} lacks the VXLAN encapsulation: {text}"
        );
    }
    // Withdraw on delete: drop ten, FRR drops them.
    s.weft.set_exports(routes[10..].to_vec()).unwrap();
    assert!(
        wait_for(Duration::from_secs(20), || s.frr.vpn_received("192.0.2.1")
            == 30),
        "FRR still has {}",
        s.frr.vpn_received("192.0.2.1")
    );
    let table = s.frr.json("show bgp ipv4 vpn json");
    let gone = &table["routes"]["routeDistinguishers"][routes[0].rd.to_string()]
        [routes[0].prefix.to_string()];
    assert!(gone.is_null(), "withdrawn route still listed");
}

#[test]
fn a_prefix_frr_originates_in_vpnv4_is_imported_with_its_rt_and_next_hop() {
    let s = setup(false, vec![]);
    let mut imports = s.weft.imports();
    let got = rt().block_on(async {
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let cur = imports.borrow_and_update().clone();
                if let Some(r) = cur
                    .routes
                    .iter()
                    .find(|r| r.route.prefix.to_string() == "203.0.113.0/24")
                {
                    return r.clone();
                }
                imports.changed().await.unwrap();
            }
        })
        .await
        .expect("FRR's route never arrived")
    });
    assert_eq!(got.route.rd.to_string(), "65001:7");
    assert_eq!(got.route.label_or_vni, 200);
    assert_eq!(got.route.route_targets, vec!["65001:7".parse().unwrap()]);
    assert_eq!(got.route.next_hop, "192.0.2.2".parse::<IpAddr>().unwrap());
    assert_eq!(got.peer, "192.0.2.2".parse::<IpAddr>().unwrap());
    assert_eq!(got.peer_as, 65001);
    assert_eq!(got.as_path, vec![65001]);
    assert!(!got.stale);
    let peers = rt().block_on(s.weft.peers());
    assert_eq!(peers[0].state, State::Established);
    assert_eq!(peers[0].prefixes_in, 1);
}

#[test]
fn session_flap_by_config_removes_and_restores_routes() {
    let s = setup(false, vec![]);
    s.weft.set_exports(host_routes(20)).unwrap();
    assert!(wait_for(Duration::from_secs(20), || s
        .frr
        .vpn_received("192.0.2.1")
        == 20));
    let cfg = |peers| SpeakerConfig {
        local_as: 65000,
        router_id: "192.0.2.1".parse().unwrap(),
        listen: Some("0.0.0.0:179".parse().unwrap()),
        peers,
    };
    let peer = PeerConfig {
        hold_time: Some(9),
        connect_retry: Some(1),
        ..PeerConfig::new("192.0.2.2".parse().unwrap(), 65001)
    };
    rt().block_on(s.weft.update_config(cfg(vec![]))).unwrap();
    assert!(
        wait_for(Duration::from_secs(20), || s
            .frr
            .neighbor_state("192.0.2.1")
            != "Established"),
        "session stayed up after the peer was removed"
    );
    assert_eq!(s.frr.vpn_received("192.0.2.1"), 0);
    let imports = s.weft.imports();
    assert!(wait_for(Duration::from_secs(5), || imports
        .borrow()
        .routes
        .is_empty()));
    rt().block_on(s.weft.update_config(cfg(vec![peer])))
        .unwrap();
    assert!(wait_for(Duration::from_secs(30), || s
        .frr
        .vpn_received("192.0.2.1")
        == 20));
    assert!(wait_for(Duration::from_secs(10), || imports
        .borrow()
        .routes
        .len()
        == 1));
}

#[test]
fn peer_restart_keeps_its_routes_stale_until_it_is_back() {
    let mut s = setup(true, vec![]);
    s.weft.set_exports(host_routes(5)).unwrap();
    let imports = s.weft.imports();
    assert!(wait_for(Duration::from_secs(20), || imports
        .borrow()
        .routes
        .len()
        == 1));
    let peers = rt().block_on(s.weft.peers());
    assert!(peers[0].families.contains(&weft_bgp::Family::Vpnv4));
    // bgpd dies without a NOTIFICATION: its routes stay, marked stale.
    s.frr.kill_bgpd();
    assert!(
        wait_for(Duration::from_secs(20), || imports
            .borrow()
            .routes
            .first()
            .is_some_and(|r| r.stale)),
        "routes not marked stale: {:?}",
        imports.borrow().routes
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        imports.borrow().routes.len(),
        1,
        "stale route kept during restart"
    );
    // It comes back, resends, and sends End-of-RIB: the route is fresh.
    let pid = s.frr.start_bgpd(&mut s.lab);
    s.frr.bgpd_pid = pid;
    assert!(
        wait_for(Duration::from_secs(40), || imports
            .borrow()
            .routes
            .first()
            .is_some_and(|r| !r.stale)),
        "route still stale after restart: {:?} {:?}",
        imports.borrow().routes,
        rt().block_on(s.weft.peers())
    );
    assert!(wait_for(Duration::from_secs(20), || s
        .frr
        .vpn_received("192.0.2.1")
        == 5));
}

fn raw_exchange(ns: &str, malformed: Vec<u8>) -> (Vec<u8>, bool) {
    lab::Lab::in_ns(ns, move || {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect("127.0.0.1:179").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let open = weft_bgp::packet::encode(&weft_bgp::packet::open::build_open(
            65002,
            30,
            "198.51.100.7".parse().unwrap(),
        ))
        .unwrap();
        c.write_all(&open).unwrap();
        c.write_all(&weft_bgp::packet::keepalive()).unwrap();
        // Wait for OPEN + KEEPALIVE so the session is Established.
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while weft_bgp::packet::frame(&got)
            .ok()
            .flatten()
            .is_none_or(|l| got.len() < l + 19)
        {
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0, "closed before the session came up");
            got.extend_from_slice(&buf[..n]);
        }
        std::thread::sleep(Duration::from_millis(300));
        c.write_all(&malformed).unwrap();
        let mut rest = Vec::new();
        let closed = loop {
            match c.read(&mut buf) {
                Ok(0) => break true,
                Ok(n) => rest.extend_from_slice(&buf[..n]),
                Err(_) => break false,
            }
        };
        (rest, closed)
    })
}

#[test]
fn malformed_messages_from_a_raw_client_get_a_notification_and_other_sessions_stay_up() {
    let raw_peer = PeerConfig {
        passive: true,
        ..PeerConfig::new("127.0.0.1".parse().unwrap(), 65002)
    };
    let s = setup(false, vec![raw_peer]);
    let mut bad_marker = weft_bgp::packet::keepalive();
    bad_marker[5] = 0;
    let mut bad_type = weft_bgp::packet::keepalive();
    bad_type[18] = 77;
    // UPDATE whose attribute length runs past the message.
    let bad_update = vec![
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0, 27, 2, 0, 0, 0, 4, 0x40, 1, 9, 0,
    ];
    for (what, bytes, code) in [
        ("marker", bad_marker, 1u8),
        ("type", bad_type, 1),
        ("update", bad_update, 3),
    ] {
        let (reply, closed) = raw_exchange(&s.weft_ns, bytes);
        // The reply holds the keepalives sent so far, then the NOTIFICATION.
        let mut msgs = Vec::new();
        let mut b = &reply[..];
        while let Ok(Some(l)) = weft_bgp::packet::frame(b) {
            msgs.push(b[..l].to_vec());
            b = &b[l..];
        }
        let last = msgs.last().unwrap_or_else(|| panic!("{what}: no reply"));
        assert_eq!(last[18], 3, "{what}: last message is not a NOTIFICATION");
        assert_eq!(last[19], code, "{what}: wrong code");
        assert!(closed, "{what}: connection not closed");
        assert_eq!(
            s.frr.neighbor_state("192.0.2.1"),
            "Established",
            "{what}: FRR session hurt"
        );
    }
    let peers = rt().block_on(s.weft.peers());
    let raw = peers
        .iter()
        .find(|p| p.address.to_string() == "127.0.0.1")
        .unwrap();
    assert!(
        raw.last_error
            .as_deref()
            .unwrap_or("")
            .contains("UPDATE message error"),
        "{raw:?}"
    );
    assert_eq!(peers[0].state, State::Established);
}

#[test]
fn frr_receives_our_evpn_type5_route_with_vni_and_router_mac() {
    let s = setup(false, vec![]);
    let mut r = VpnRoute::vpnv4(
        "65000:300".parse().unwrap(),
        "10.2.0.0/24".parse().unwrap(),
        0,
        "192.0.2.10".parse().unwrap(),
        vec!["65000:300".parse().unwrap()],
    );
    r.kind = weft_bgp::RouteKind::EvpnPrefix { eth_tag: 0 };
    r.label_or_vni = 5000;
    r.encap = Some(Encapsulation::Vxlan);
    r.router_mac = Some([2, 0, 0, 0, 0, 9]);
    s.weft.set_exports(vec![r]).unwrap();
    let found = wait_for(Duration::from_secs(20), || {
        s.frr
            .vtysh("show bgp l2vpn evpn route type prefix")
            .contains("10.2.0.0")
    });
    let text = s
        .frr
        .vtysh("show bgp l2vpn evpn route rd 65000:300 type prefix");
    assert!(found, "FRR has no type 5 route: {text}");
    assert!(text.contains("RT:65000:300"), "{text}");
    assert!(text.contains("ET:8"), "{text}");
    assert!(text.contains("Rmac:02:00:00:00:00:09"), "{text}");
    assert!(text.contains("5000"), "VNI missing: {text}");
    assert!(text.contains("192.0.2.10"), "next hop missing: {text}");
}
