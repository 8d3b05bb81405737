//! End to end with the real pipeline: two hosts as network namespaces on a
//! veth underlay (TEST-NET-1), each running a `HostForwarder` fed with the
//! view the compiler makes for it from real intent (`world`), VMs as
//! namespaces holding the TAPs, and real traffic: ping and TCP on one subnet
//! and routed across subnets (VRF), security groups dropping, allowing and
//! rejecting, DHCP with busybox's `udhcpc`, DNS with `dig` and busybox
//! `nslookup`, packet-too-big answers, TAPs following the view, program swaps
//! under traffic and periodic router advertisements.
//!
//! Needs root. Every namespace is removed when the test ends, pass or fail.

mod common;
mod world;

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Netns, Topology, ping, sh, tcp_transfer};
use serde_json::json;
use weft_dataplane::{HostConfig, HostForwarder, tap_name};
use weft_model::Kind;
use world::{UL_A, UL_B, World};

/// Two hosts with their forwarders and one namespace per VM.
struct Bed {
    // Forwarders first: they stop before the namespaces go.
    fa: HostForwarder,
    fb: HostForwarder,
    vms: BTreeMap<&'static str, Netns>,
    t: Topology,
    w: World,
}

/// Hands both forwarders their current view as the agent's records.
fn apply(fa: &mut HostForwarder, fb: &mut HostForwarder, w: &World) {
    fa.apply_records("host-a", &w.records("host-a"))
        .expect("host-a applies its view");
    fb.apply_records("host-b", &w.records("host-b"))
        .expect("host-b applies its view");
}

fn start(host: &Netns, ul: &str, tweak: impl FnOnce(&mut HostConfig) + Send) -> HostForwarder {
    let mut cfg = HostConfig::new(format!("{ul}:4789").parse().unwrap());
    tweak(&mut cfg);
    host.run(move || HostForwarder::start(cfg))
        .expect("start host forwarder")
}

impl Bed {
    fn new(w: World) -> Bed {
        Self::with(w, |_| {})
    }

    fn with(w: World, tweak: impl Fn(&mut HostConfig) + Send + Sync) -> Bed {
        let t = Topology::new();
        let fa = start(&t.host_a, UL_A, &tweak);
        let fb = start(&t.host_b, UL_B, &tweak);
        let mut b = Bed {
            fa,
            fb,
            vms: BTreeMap::new(),
            t,
            w,
        };
        b.apply();
        for name in b.w.vms.keys().copied().collect::<Vec<_>>() {
            b.vms.insert(name, Netns::new(name));
            b.plug(name);
        }
        b
    }

    /// Hands both forwarders their current view, as the agent does.
    fn apply(&mut self) {
        apply(&mut self.fa, &mut self.fb, &self.w);
    }

    fn host_ns(&self, host: &str) -> &Netns {
        if host == "host-a" {
            &self.t.host_a
        } else {
            &self.t.host_b
        }
    }

    fn fwd(&self, host: &str) -> &HostForwarder {
        if host == "host-a" { &self.fa } else { &self.fb }
    }

    /// Moves the VM's TAP into its namespace as eth0 with the port's MAC,
    /// its address and a default route via its gateway.
    fn plug(&self, name: &str) {
        let vm = self.w.vm(name).clone();
        let ns = &self.vms[name];
        let tap = self
            .fwd(vm.host)
            .tap(&vm.vif)
            .unwrap_or_else(|| panic!("no TAP for {name}"));
        assert_eq!(tap.tap, tap_name(&vm.vif));
        self.host_ns(vm.host)
            .ip(&["link", "set", &tap.tap, "netns", &ns.name]);
        ns.ip(&["link", "set", &tap.tap, "name", "eth0"]);
        ns.ip(&["link", "set", "eth0", "address", &vm.mac.to_string()]);
        if name == "a3" {
            // a3 is configured by DHCP.
            ns.ip(&["link", "set", "eth0", "up"]);
            return;
        }
        ns.ip(&["addr", "add", &format!("{}/24", vm.ip), "dev", "eth0"]);
        ns.ip(&["link", "set", "eth0", "up"]);
        ns.ip(&["route", "add", "default", "via", vm.gateway]);
    }

    fn vm(&self, name: &str) -> &Netns {
        &self.vms[name]
    }

    fn ip(&self, name: &str) -> &'static str {
        self.w.vm(name).ip
    }
}

/// Tries a TCP connection from `ns` and returns how it ended.
fn connect(ns: &Netns, addr: &str, port: u16) -> Result<(), ErrorKind> {
    let addr: SocketAddr = format!("{addr}:{port}").parse().unwrap();
    ns.run(move || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .map(drop)
            .map_err(|e| e.kind())
    })
}

/// A listener in `ns` that accepts connections until the test ends.
fn listen(ns: &Netns, addr: &str, port: u16) {
    let addr: SocketAddr = format!("{addr}:{port}").parse().unwrap();
    let l = ns.run(move || std::net::TcpListener::bind(addr).expect("bind"));
    std::thread::spawn(move || for _ in l.incoming() {});
}

#[test]
fn ping_and_tcp_switched_and_routed_across_hosts() {
    let b = Bed::new(World::two_hosts());
    // TAPs got the ports' MTU from the view.
    let link = b.vm("a1").ip(&["link", "show", "eth0"]);
    assert!(link.contains("mtu 1450"), "{link}");
    ping(b.vm("a1"), "10.1.0.1", 3); // the gateway answers
    ping(b.vm("a1"), b.ip("b1"), 5); // same subnet, other host
    ping(b.vm("a1"), b.ip("b2"), 5); // routed, other host
    ping(b.vm("a1"), b.ip("a2"), 5); // routed, same host
    ping(b.vm("b2"), b.ip("a1"), 3);

    let (sent, got) = tcp_transfer(b.vm("a1"), b.vm("b2"), b.ip("b2"), 5001, 16 << 20);
    assert_eq!(sent, got, "routed TCP a1→b2 data differs");
    let (sent, got) = tcp_transfer(b.vm("b2"), b.vm("a1"), b.ip("a1"), 5002, 8 << 20);
    assert_eq!(sent, got, "routed TCP b2→a1 data differs");
    let (sent, got) = tcp_transfer(b.vm("a1"), b.vm("b1"), b.ip("b1"), 80, 8 << 20);
    assert_eq!(sent, got, "switched TCP a1→b1:80 data differs");
    let (sent, got) = tcp_transfer(b.vm("a2"), b.vm("a1"), b.ip("a1"), 5003, 4 << 20);
    assert_eq!(sent, got, "local routed TCP a2→a1 data differs");

    let (sa, sb) = (b.fa.stats(), b.fb.stats());
    for s in [&sa, &sb] {
        let c = &s.pipeline.counters;
        assert!(
            c.cache_hits > c.cache_misses,
            "the flow cache carries the load:\n{s}"
        );
        assert!(
            c.gso_frames > 0,
            "super-frames went through the pipeline:\n{s}"
        );
        assert_eq!(c.drop_malformed, 0, "{s}");
        assert_eq!(s.forwarder.drops.offload, 0, "{s}");
        assert_eq!(s.forwarder.tunnel.tx_failed, 0, "{s}");
    }
    assert!(sa.pipeline.conntrack_entries > 0, "{sa}");
    let text = sa.to_string();
    let a1 = &b.w.vm("a1").vif;
    assert!(text.contains(&format!("tap.{a1}.rx_gso_frames=")), "{text}");
}

#[test]
fn security_groups_drop_then_allow_and_reject_with_rst() {
    let mut b = Bed::new(World::two_hosts());
    let b1 = b.ip("b1");
    listen(b.vm("b1"), b1, 8080);
    listen(b.vm("b1"), b1, 80);
    ping(b.vm("a1"), b1, 1);
    assert_eq!(connect(b.vm("a1"), b1, 80), Ok(()), "port 80 is allowed");
    // Default deny: nothing comes back.
    assert_eq!(connect(b.vm("a1"), b1, 8080), Err(ErrorKind::TimedOut));
    // Reject: the forwarder answers with a RST: connection refused, at once.
    assert_eq!(
        connect(b.vm("a1"), b1, 23),
        Err(ErrorKind::ConnectionRefused)
    );
    let rejected = b.fb.stats().pipeline.counters.generated;
    assert!(rejected >= 1);

    // Allow 8080: both hosts get their new view; the connection now opens.
    let web = b.w.web_sg.clone();
    b.w.update(
        Kind::SecurityGroup,
        &web,
        json!({"rules": [
            {"direction": "ingress", "protocol": "tcp", "port_range_min": 80},
            {"direction": "ingress", "protocol": "tcp", "port_range_min": 8080},
            {"direction": "ingress", "protocol": "tcp", "port_range_min": 23, "action": "reject"},
            {"direction": "ingress", "protocol": "icmp"},
            {"direction": "egress"}]}),
    );
    b.apply();
    assert_eq!(connect(b.vm("a1"), b1, 8080), Ok(()), "8080 is allowed now");
    assert_eq!(
        connect(b.vm("a1"), b1, 23),
        Err(ErrorKind::ConnectionRefused)
    );
}

#[test]
fn dhcp_with_busybox_udhcpc_and_dns_for_port_names() {
    let b = Bed::new(World::two_hosts());
    let ns = b.vm("a3");
    // The client's script records what it was given, then configures eth0.
    let dir = std::env::temp_dir().join(format!("weft-dhcp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("udhcpc.sh");
    let lease = dir.join("lease.env");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             [ \"$1\" = bound ] || exit 0\n\
             env | grep -E '^(ip|subnet|router|mtu|dns|domain|hostname)=' > {lease}\n\
             ip addr add \"$ip/$subnet\" dev \"$interface\"\n\
             [ -n \"$mtu\" ] && ip link set \"$interface\" mtu \"$mtu\"\n\
             for r in $router; do ip route add default via \"$r\"; break; done\n",
            lease = lease.display()
        ),
    )
    .unwrap();
    sh(&["chmod", "+x", script.to_str().unwrap()]);
    ns.exec(&[
        "busybox",
        "udhcpc",
        "-i",
        "eth0",
        "-f",
        "-q",
        "-n",
        "-t",
        "5",
        "-T",
        "1",
        "-O",
        "mtu",
        "-s",
        script.to_str().unwrap(),
    ]);
    let env = std::fs::read_to_string(&lease).expect("the lease was recorded");
    let _ = std::fs::remove_dir_all(&dir);
    let got: BTreeMap<&str, &str> = env.lines().filter_map(|l| l.split_once('=')).collect();
    assert_eq!(got.get("ip"), Some(&"10.1.0.13"), "{env}");
    assert_eq!(got.get("router"), Some(&"10.1.0.1"), "{env}");
    assert_eq!(got.get("subnet"), Some(&"255.255.255.0"), "{env}");
    assert_eq!(got.get("mtu"), Some(&"1450"), "{env}");
    assert_eq!(got.get("dns"), Some(&"10.1.0.1"), "{env}");
    assert_eq!(got.get("hostname"), Some(&"a3"), "{env}");
    let addr = ns.ip(&["addr", "show", "eth0"]);
    assert!(addr.contains("10.1.0.13/24"), "{addr}");
    // The leased address works, on the subnet and through the router.
    ping(ns, b.ip("b1"), 2);
    ping(ns, b.ip("b2"), 2);

    // DNS: names of ports in the same network, answered by the host.
    let domain = b.w.domain(&b.w.net1);
    let dig = ns.exec(&[
        "dig",
        "+short",
        "+time=2",
        "+tries=2",
        "@10.1.0.1",
        &format!("b1.{domain}"),
    ]);
    assert_eq!(dig.trim(), b.ip("b1"), "dig answered {dig:?}");
    let bb = ns.exec(&["busybox", "nslookup", "a1", "10.1.0.1"]);
    assert!(bb.contains(b.ip("a1")), "busybox nslookup: {bb}");
    // Names of another network are not this network's to answer.
    let other = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            "dig",
            "+time=2",
            "+tries=1",
            "@10.1.0.1",
        ])
        .arg(format!("b2.{domain}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&other.stdout);
    assert!(text.contains("NXDOMAIN"), "{text}");
    let s = b.fa.stats().pipeline.counters;
    assert!(s.service_replies >= 4, "{s:?}");
}

#[test]
fn packets_too_big_for_the_route_are_answered() {
    let b = Bed::new(World::two_hosts());
    let a1 = b.vm("a1");
    ping(a1, b.ip("b2"), 1);
    // A guest that believes its link takes 1500 bytes.
    a1.ip(&["link", "set", "eth0", "mtu", "1500"]);
    let out = Command::new("ip")
        .args([
            "netns", "exec", &a1.name, "ping", "-n", "-c", "1", "-W", "2",
        ])
        .args(["-M", "do", "-s", "1472", b.ip("b2")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("mtu = 1450") || text.contains("Frag needed"),
        "no fragmentation-needed answer: {text}"
    );
    // The guest learnt the path MTU and now sends what fits.
    let route = a1.ip(&["route", "get", b.ip("b2")]);
    assert!(route.contains("mtu 1450"), "{route}");
    ping(a1, b.ip("b2"), 3);
    // Switched traffic meets no router: a 1500-byte frame between two guests
    // that both believe in 1500 crosses (the underlay fragments the VXLAN
    // packet). Were b1 at 1450 it would fragment its reply, and later IP
    // fragments are `ct.inv` to the stateful security groups.
    b.vm("b1").ip(&["link", "set", "eth0", "mtu", "1500"]);
    let out = a1.exec(&[
        "ping",
        "-n",
        "-c",
        "2",
        "-M",
        "do",
        "-s",
        "1472",
        b.ip("b1"),
    ]);
    assert!(out.contains(" 0% packet loss"), "{out}");
}

#[test]
fn taps_follow_the_view_and_restarts_rebuild_them() {
    let mut b = Bed::new(World::two_hosts());
    let b2 = b.w.vm("b2").clone();
    let tap = tap_name(&b2.vif);
    ping(b.vm("a1"), b.ip("b2"), 1);
    // The port leaves host-b: its TAP goes (the VM loses eth0).
    b.w.update(
        Kind::InstancePort,
        &b2.vif.as_str().into(),
        json!({"host": "host-c"}),
    );
    b.apply();
    assert!(b.fb.tap(&b2.vif).is_none());
    let links = b.vm("b2").ip(&["-o", "link", "show"]);
    assert!(!links.contains("eth0"), "the TAP is gone: {links}");
    // It comes back: a fresh TAP with the same name appears on the host.
    b.w.update(
        Kind::InstancePort,
        &b2.vif.as_str().into(),
        json!({"host": "host-b"}),
    );
    b.apply();
    let links = b.t.host_b.ip(&["-o", "link", "show"]);
    assert!(links.contains(&tap), "{links}");
    b.plug("b2");
    ping(b.vm("a1"), b.ip("b2"), 3);

    // A restarted forwarder creates its TAPs again in its own namespace.
    let Bed { fa, fb, vms, t, w } = b;
    drop(fb);
    let links = vms["b1"].ip(&["-o", "link", "show"]);
    assert!(
        !links.contains("eth0"),
        "TAPs die with their forwarder: {links}"
    );
    let fb = start(&t.host_b, UL_B, |_| {});
    let mut b = Bed { fa, fb, vms, t, w };
    b.apply();
    b.plug("b1");
    b.plug("b2");
    ping(b.vm("a1"), b.ip("b1"), 3);
    ping(b.vm("a1"), b.ip("b2"), 3);
}

#[test]
fn program_swaps_under_traffic_lose_no_packet() {
    let mut b = Bed::new(World::two_hosts());
    ping(b.vm("a1"), b.ip("b2"), 1);
    let pinger = Command::new("ip")
        .args([
            "netns",
            "exec",
            &b.vm("a1").name,
            "ping",
            "-n",
            "-q",
            "-c",
            "400",
        ])
        .args(["-i", "0.01", "-W", "1", b.ip("b2")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Toggle b1's group while traffic flows: every apply is a new program.
    let web = b.w.web_sg.clone();
    let mut swaps = 0;
    let Bed { fa, fb, vms, w, .. } = &mut b;
    std::thread::scope(|s| {
        let transfer =
            s.spawn(|| tcp_transfer(&vms["a2"], &vms["b2"], "10.2.0.22", 5005, 32 << 20));
        for i in 0..60 {
            let port = 9000 + (i % 7) as u16;
            w.update(
                Kind::SecurityGroup,
                &web,
                json!({"rules": [
                    {"direction": "ingress", "protocol": "tcp", "port_range_min": 80},
                    {"direction": "ingress", "protocol": "tcp", "port_range_min": port},
                    {"direction": "egress"}]}),
            );
            apply(fa, fb, w);
            swaps += 1;
            std::thread::sleep(Duration::from_millis(40));
        }
        let (sent, got) = transfer.join().expect("transfer thread");
        assert_eq!(sent, got, "TCP across program swaps");
    });
    let out = pinger.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(" 0% packet loss"),
        "pings lost during swaps: {text}"
    );
    // Host-b's program changed with every apply (b1's group is there).
    let s = b.fb.stats().pipeline;
    assert!(s.swaps >= swaps, "{s}");
}

#[test]
fn periodic_router_advertisements_configure_guests() {
    let mut w = World::two_hosts();
    let p = w.project.clone();
    let net6 = w.create(
        Kind::L2Network,
        Some(&p),
        json!({"name": "net6", "subnets": [{"cidr": "2001:db8:6::/64"}]}),
    );
    let s6 = w.intent.l2_networks()[&net6].subnets[0].id.to_string();
    let s1 = w.intent.l2_networks()[&w.net1].subnets[0].id.to_string();
    let s2 = w.intent.l2_networks()[&w.net2].subnets[0].id.to_string();
    let vrf = w.intent.l3vpns().keys().next().unwrap().clone();
    w.update(Kind::L3vpn, &vrf, json!({"subnets": [s1, s2, s6]}));
    let v6 = w.create(
        Kind::InstancePort,
        Some(&p),
        json!({"name": "v6", "host": "host-a", "mac": "02:00:00:0a:00:66", "bindings": [{"service": net6, "fixed_ips": [{"ip": "2001:db8:6::66"}]}]}),
    );
    // Adverts every second, and a guest that never solicits one.
    let b = Bed::with(w, |c| c.router_advert_interval = Duration::from_secs(1));
    let tap = b.fa.tap(v6.as_str()).expect("TAP for v6").tap;
    let ns = Netns::new("v6");
    b.t.host_a.ip(&["link", "set", &tap, "netns", &ns.name]);
    ns.ip(&["link", "set", &tap, "name", "eth0"]);
    ns.ip(&["link", "set", "eth0", "address", "02:00:00:0a:00:66"]);
    ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=0"]);
    ns.exec(&["sysctl", "-qw", "net.ipv6.conf.eth0.disable_ipv6=0"]);
    ns.exec(&["sysctl", "-qw", "net.ipv6.conf.eth0.router_solicitations=0"]);
    ns.exec(&["sysctl", "-qw", "net.ipv6.conf.eth0.accept_ra=2"]);
    ns.ip(&["link", "set", "eth0", "up"]);
    let mut seen = String::new();
    for _ in 0..50 {
        seen = ns.ip(&["-6", "addr", "show", "dev", "eth0"]);
        if seen.contains("2001:db8:6:") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        seen.contains("2001:db8:6:"),
        "no SLAAC address from the adverts: {seen}"
    );
    let routes = ns.ip(&["-6", "route", "show", "dev", "eth0"]);
    assert!(routes.contains("default via fe80::"), "{routes}");
    // No solicitation was answered: the timer's adverts did it.
    let c = b.fa.stats().pipeline.counters;
    assert_eq!(c.handoffs, 0, "{c:?}");
}

#[test]
fn a_view_whose_taps_cannot_all_be_created_changes_nothing() {
    let w = World::two_hosts();
    let host = Netns::new("h");
    // Room for two TAPs: host-b's view (b1, b2) fits, host-a's (a1, a2, a3) does not.
    let mut f = start(&host, "127.0.0.1", |c| c.forwarder.max_taps = 2);
    let before = f.stats().pipeline.generation;
    let e = f
        .apply_records("host-a", &w.records("host-a"))
        .expect_err("three vifs in two slots");
    assert!(e.to_string().contains("TAP"), "{e}");
    assert!(
        f.taps().is_empty(),
        "TAPs made for the refused view are gone"
    );
    let links = host.ip(&["-o", "link", "show"]);
    assert!(!links.contains(" wt"), "{links}");
    assert_eq!(
        f.stats().pipeline.generation,
        before,
        "the old program runs on"
    );
    let applied = f
        .apply_records("host-b", &w.records("host-b"))
        .expect("two vifs fit");
    assert_eq!(applied.added.len(), 2);
    assert_eq!(f.taps().len(), 2);
}
