//! End to end on the namespace lab (`weft-lab`): a real controller (`weft
//! up`), one `weft agent` with its userspace forwarder per host namespace,
//! VMs as namespaces holding the TAPs their host made, everything configured
//! through the REST API or the `weft` CLI, and judged by real traffic (ping,
//! TCP, UDP) and by who actually received it.
//!
//! Scenarios (seed 001 and the issue's list): any-to-any with overlapping
//! Red/Blue, hub-and-spoke through a forwarding hub VM, anycast ECMP with a
//! port going down, DHCP with busybox `udhcpc`, security groups (default
//! deny, allow, reject → RST), a service function on one vNIC in three
//! networks through VLAN interfaces, and a host running the Linux kernel's
//! own VXLAN + bridge instead of Weft.
//!
//! Needs root; every namespace and process is gone when a test ends.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use weft_lab::lab::Options;
use weft_lab::traffic::{
    Endpoint, TcpServer, UdpServer, ip_counter, ping, probe_matrix, rx_packets, snmp_counter,
    tcp_request, udp_request, wait_ping,
};
use weft_lab::{Lab, VmNet, seed};
use weft_model::Kind;

const SECOND: Duration = Duration::from_secs(1);

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn sock(s: &str, port: u16) -> SocketAddr {
    SocketAddr::from((ip(s), port))
}

/// A lab with one controller and agents on `hosts`.
fn lab_with(hosts: &[&str], agent_args: &[&str]) -> Lab {
    let mut lab = Lab::new(Options::new(env!("CARGO_BIN_EXE_weft"))).expect("lab");
    lab.start_controller().expect("controller");
    for h in hosts {
        lab.add_host(h, &[0], agent_args).expect("host");
    }
    lab
}

/// A project with an allow-all security group; returns (project, group).
fn project(lab: &Lab, name: &str) -> (String, String) {
    let p = lab
        .api()
        .create_id(Kind::Project, json!({"name": name}))
        .unwrap();
    let sg = lab
        .api()
        .create_id(
            Kind::SecurityGroup,
            json!({"project": p, "name": "open",
                   "rules": [{"direction": "ingress"}, {"direction": "egress"}]}),
        )
        .unwrap();
    (p, sg)
}

/// An l2-network with one subnet; returns (network, subnet, the network's JSON).
fn network(lab: &Lab, p: &str, name: &str, cidr: &str) -> (String, String, Value) {
    let n = lab
        .api()
        .create(
            Kind::L2Network,
            json!({"project": p, "name": name, "subnets": [{"cidr": cidr}]}),
        )
        .unwrap();
    (
        n["id"].as_str().unwrap().to_string(),
        n["subnets"][0]["id"].as_str().unwrap().to_string(),
        n,
    )
}

#[test]
fn any_to_any_overlapping_red_and_blue() {
    let mut lab = lab_with(&seed::HOSTS, &[]);
    let s = seed::build_any_to_any(&mut lab).expect("scenario");
    let (m, text, bad) = s.matrix(&lab).expect("matrix");
    println!("{text}");
    assert_eq!(bad, 0, "unexpected cells:\n{text}");
    // The overlapping addresses are really answered by the same tenant.
    assert!(m[&("G1".into(), "G6".into())].received_by.contains("G3"));
    assert!(m[&("G5".into(), "G3".into())].received_by.contains("G6"));

    // TCP and UDP, routed across subnets and hosts (G1 on host-a → G4 on host-b).
    let g4 = lab.vm_ns("G4");
    let _t = TcpServer::start(g4, sock("10.3.7.10", 8080), "G4").unwrap();
    let _u = UdpServer::start(g4, sock("10.3.7.10", 5353), "G4:").unwrap();
    let g1 = lab.vm_ns("G1");
    assert_eq!(
        tcp_request(g1, sock("10.3.7.10", 8080), 3 * SECOND).unwrap(),
        Ok("G4".to_string())
    );
    assert_eq!(
        udp_request(g1, sock("10.3.7.10", 5353), b"hello", SECOND).unwrap(),
        Some(b"G4:hello".to_vec())
    );
    // Red's G5 (same address as G1) asking for Blue's 10.3.7.10 gets nothing from G4.
    let red = tcp_request(lab.vm_ns("G5"), sock("10.3.7.10", 8080), SECOND).unwrap();
    assert!(red.is_err(), "Red reached Blue's G4: {red:?}");

    // The same path as `weft trace` shows it (through the CLI).
    let trace = lab
        .cli(&["trace", "--from", "g1", "icmp4 && ip4.dst == 10.3.7.10"])
        .unwrap();
    println!("{trace}");
    assert!(trace.contains("host-b"), "{trace}");
}

#[test]
fn hub_and_spoke_through_a_forwarding_hub() {
    let mut lab = lab_with(&seed::HOSTS, &[]);
    let (p, open) = project(&lab, "blue");
    let vpn = lab
        .api()
        .create_id(
            Kind::L3vpn,
            json!({"project": p, "name": "blue", "route_distinguisher": "64512:30",
                   "route_targets": ["64512:30"]}),
        )
        .unwrap();
    let plan = [
        ("vfw", "host-a", "hub", "10.1.1.5"),
        ("vnf1", "host-a", "spoke", "10.3.7.9"),
        ("vnf2", "host-b", "spoke", "10.1.1.6"),
        ("vnf3", "host-b", "spoke", "10.3.7.10"),
    ];
    for (name, host, role, addr) in plan {
        let mut b = json!({"service": vpn, "role": role, "fixed_ips": [{"ip": addr}],
                           "security_groups": [open]});
        if role == "hub" {
            // The hub forwards traffic with the spokes' source addresses.
            b["allowed_address_pairs"] = json!([{"ip": "0.0.0.0/0"}]);
        }
        let port = lab.port(&p, name, host, b).unwrap();
        lab.add_vm(name, host, &port, VmNet::routed(addr)).unwrap();
    }
    let hub = lab.vm_ns("vfw");
    // Redirects would tell spokes to go direct; this hub just routes.
    hub.sysctl("net.ipv4.conf.all.send_redirects", "0").unwrap();
    hub.sysctl("net.ipv4.conf.eth0.send_redirects", "0")
        .unwrap();
    // Spokes reach the hub directly.
    for s in ["vnf1", "vnf2", "vnf3"] {
        wait_ping(lab.vm_ns(s), ip("10.1.1.5"), 5 * SECOND).unwrap();
    }

    // Hub not forwarding: spoke → spoke lands on the hub, which drops it,
    // and never reaches the other spoke directly.
    let echo_in = |vm: &str| snmp_counter(lab.vm_ns(vm), "Icmp", "InEchos").unwrap();
    let (addr_err0, vnf2_in0) = (ip_counter(hub, "InAddrErrors").unwrap(), echo_in("vnf2"));
    let got = ping(lab.vm_ns("vnf1"), ip("10.1.1.6"), 10, SECOND).unwrap();
    assert_eq!(got, 0, "spoke reached spoke with the hub not forwarding");
    assert_eq!(echo_in("vnf2"), vnf2_in0, "vnf2 was reached directly");
    assert!(
        ip_counter(hub, "InAddrErrors").unwrap() >= addr_err0 + 10,
        "the hub did not see the spoke's packets"
    );

    // Hub forwarding: the spokes talk, every packet through the hub (across
    // hosts: vnf1 on host-a → hub on host-a → vnf2 on host-b; and vnf2 →
    // vnf3, both on host-b, through the hub on host-a).
    hub.sysctl("net.ipv4.ip_forward", "1").unwrap();
    for (src, dst) in [("vnf1", "10.1.1.6"), ("vnf2", "10.3.7.10")] {
        wait_ping(lab.vm_ns(src), ip(dst), 5 * SECOND).unwrap();
        let fwd0 = ip_counter(hub, "ForwDatagrams").unwrap();
        let got = ping(lab.vm_ns(src), ip(dst), 20, SECOND).unwrap();
        let fwd = ip_counter(hub, "ForwDatagrams").unwrap() - fwd0;
        if dst == "10.1.1.6" {
            assert!(
                echo_in("vnf2") >= vnf2_in0 + 20,
                "vnf2 answered the forwarded echoes"
            );
        }
        println!("{src} -> {dst}: {got}/20 answered, hub forwarded {fwd} packets");
        assert_eq!(got, 20);
        assert!(
            fwd >= 40,
            "requests and replies through the hub: {fwd} < 40"
        );
    }
    // TCP spoke → spoke across hosts, through the hub.
    let _srv = TcpServer::start(lab.vm_ns("vnf2"), sock("10.1.1.6", 7000), "vnf2").unwrap();
    assert_eq!(
        tcp_request(lab.vm_ns("vnf1"), sock("10.1.1.6", 7000), 3 * SECOND).unwrap(),
        Ok("vnf2".to_string())
    );
}

#[test]
fn anycast_ecmp_spreads_flows_and_avoids_a_down_port() {
    let mut lab = lab_with(&seed::HOSTS, &[]);
    let (p, open) = project(&lab, "blue");
    let vpn = lab
        .api()
        .create_id(
            Kind::L3vpn,
            json!({"project": p, "name": "blue", "route_distinguisher": "64512:10",
                   "route_targets": ["64512:10"]}),
        )
        .unwrap();
    let plan = [
        ("vnf1.1", "host-a", "10.1.1.5"),
        ("vnf1.2", "host-a", "10.1.1.5"),
        ("vnf1.3", "host-b", "10.1.1.5"),
        ("vnf2", "host-a", "10.1.1.6"),
        ("vnf3", "host-b", "10.1.1.3"),
    ];
    let mut ports = BTreeMap::new();
    for (name, host, addr) in plan {
        let port = lab
            .port(
                &p,
                name,
                host,
                json!({"service": vpn, "fixed_ips": [{"ip": addr}], "security_groups": [open]}),
            )
            .unwrap();
        lab.add_vm(name, host, &port, VmNet::routed(addr)).unwrap();
        ports.insert(name, port);
    }
    // Agents report their ports up (anycast counts only up holders).
    for n in ["vnf1.1", "vnf1.2", "vnf1.3"] {
        lab.wait_port_status(&ports[n], "up").unwrap();
    }
    let servers: Vec<TcpServer> = ["vnf1.1", "vnf1.2", "vnf1.3"]
        .iter()
        .map(|n| TcpServer::start(lab.vm_ns(n), sock("10.1.1.5", 80), n).unwrap())
        .collect();
    // Each connection has its own source port: a new 5-tuple, a new hash.
    let flows = |from: &str, n: usize| -> BTreeMap<String, usize> {
        let mut by = BTreeMap::new();
        for _ in 0..n {
            let who = tcp_request(lab.vm_ns(from), sock("10.1.1.5", 80), 2 * SECOND)
                .unwrap()
                .unwrap_or_else(|e| format!("error:{e:?}"));
            *by.entry(who).or_insert(0) += 1;
        }
        by
    };
    for client in ["vnf2", "vnf3"] {
        wait_ping(lab.vm_ns(client), ip("10.1.1.5"), 5 * SECOND).unwrap();
        let by = flows(client, 30);
        println!("{client}: 30 flows to 10.1.1.5 landed on {by:?}");
        assert_eq!(
            by.keys().collect::<Vec<_>>(),
            ["vnf1.1", "vnf1.2", "vnf1.3"],
            "{client}: every flow served, spread over all three instances"
        );
    }
    // vnf1.2 goes down (admin state, through the CLI): new flows avoid it.
    let t0 = Instant::now();
    lab.cli(&[
        "port",
        "update",
        &ports["vnf1.2"],
        "--set",
        "admin_up=false",
    ])
    .unwrap();
    let mut last = BTreeMap::new();
    weft_lab::wait_until("new flows to avoid vnf1.2", 10 * SECOND, || {
        last = flows("vnf2", 10);
        Ok(!last.contains_key("vnf1.2"))
    })
    .unwrap_or_else(|e| panic!("{e}: last batch {last:?}"));
    println!("flows avoid vnf1.2 {:?} after the update", t0.elapsed());
    for client in ["vnf2", "vnf3"] {
        let by = flows(client, 30);
        println!("{client}: 30 flows with vnf1.2 down landed on {by:?}");
        assert_eq!(
            by.keys().collect::<Vec<_>>(),
            ["vnf1.1", "vnf1.3"],
            "{client}: every flow served by the two up instances"
        );
    }
    let served: Vec<usize> = servers.iter().map(TcpServer::accepted).collect();
    println!("connections accepted per instance: {served:?}");
}

/// udhcpc's script: records the lease, then configures the interface.
fn dhcp_script(dir: &std::path::Path) -> (String, std::path::PathBuf) {
    let script = dir.join("udhcpc.sh");
    let lease = dir.join("lease.env");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             [ \"$1\" = bound ] || exit 0\n\
             env | grep -E '^(ip|subnet|router|mtu|dns|domain)=' > {lease}\n\
             ip addr add \"$ip/$subnet\" dev \"$interface\"\n\
             [ -n \"$mtu\" ] && ip link set \"$interface\" mtu \"$mtu\"\n\
             for r in $router; do ip route add default via \"$r\"; break; done\n",
            lease = lease.display()
        ),
    )
    .unwrap();
    let mut perm = std::fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&script, perm).unwrap();
    (script.display().to_string(), lease)
}

#[test]
fn dhcp_with_busybox_udhcpc() {
    let mut lab = lab_with(&seed::HOSTS, &[]);
    let (p, open) = project(&lab, "edge");
    let (net, subnet, _) = network(&lab, &p, "net", "10.9.0.0/24");
    // A VRF on the subnet: its gateway (the router DHCP hands out) answers.
    lab.api()
        .create(
            Kind::L3vpn,
            json!({"project": p, "name": "vrf", "route_distinguisher": "64512:9",
                   "route_targets": ["64512:9"], "subnets": [subnet]}),
        )
        .unwrap();
    // The DHCP client's port gets its address allocated by Weft.
    let d = lab
        .port(
            &p,
            "d1",
            "host-a",
            json!({"service": net, "security_groups": [open]}),
        )
        .unwrap();
    let s1 = lab
        .port(
            &p,
            "s1",
            "host-b",
            json!({"service": net, "fixed_ips": [{"ip": "10.9.0.50"}], "security_groups": [open]}),
        )
        .unwrap();
    lab.add_vm("D1", "host-a", &d, VmNet::none()).unwrap();
    lab.add_vm(
        "S1",
        "host-b",
        &s1,
        VmNet::simple("10.9.0.50/24", Some("10.9.0.1")),
    )
    .unwrap();
    let (script, lease) = dhcp_script(lab.dir());
    let t0 = Instant::now();
    lab.vm_ns("D1")
        .exec(&[
            "timeout", "20", "busybox", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "5", "-T",
            "1", "-O", "mtu", "-s", &script,
        ])
        .expect("udhcpc gets a lease");
    println!("lease in {:?}", t0.elapsed());
    let env = std::fs::read_to_string(lease).unwrap();
    println!("{env}");
    let field = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(str::to_string)
    };
    // The address is the one Weft allocated (the API shows it on d1's
    // service port: the one that is not s1's).
    let sps = lab.api().list(Kind::ServicePort).unwrap();
    let addr = sps
        .iter()
        .filter_map(|s| s["fixed_ips"][0]["ip"].as_str())
        .find(|a| *a != "10.9.0.50")
        .unwrap()
        .to_string();
    assert_eq!(field("ip").as_deref(), Some(addr.as_str()));
    assert_eq!(field("router").as_deref(), Some("10.9.0.1"));
    assert_eq!(field("mtu").as_deref(), Some("1450"));
    // The configured VM talks across hosts and to its gateway.
    let d1 = lab.vm_ns("D1");
    wait_ping(d1, ip("10.9.0.50"), 5 * SECOND).unwrap();
    assert_eq!(ping(d1, ip("10.9.0.1"), 3, SECOND).unwrap(), 3);
    assert_eq!(ping(lab.vm_ns("S1"), ip(&addr), 3, SECOND).unwrap(), 3);
}

#[test]
fn security_groups_default_deny_then_allow_and_reject() {
    let mut lab = lab_with(&seed::HOSTS, &[]);
    let (p, open) = project(&lab, "sec");
    let (net, _, _) = network(&lab, &p, "net", "10.20.0.0/24");
    let web = lab
        .api()
        .create_id(
            Kind::SecurityGroup,
            json!({"project": p, "name": "web", "rules": []}),
        )
        .unwrap();
    let c = lab
        .port(
            &p,
            "client",
            "host-a",
            json!({"service": net, "fixed_ips": [{"ip": "10.20.0.10"}], "security_groups": [open]}),
        )
        .unwrap();
    let w = lab
        .port(
            &p,
            "web",
            "host-b",
            json!({"service": net, "fixed_ips": [{"ip": "10.20.0.20"}], "security_groups": [web]}),
        )
        .unwrap();
    lab.add_vm("client", "host-a", &c, VmNet::simple("10.20.0.10/24", None))
        .unwrap();
    lab.add_vm("web", "host-b", &w, VmNet::simple("10.20.0.20/24", None))
        .unwrap();
    let (cl, wb) = (lab.vm_ns("client"), lab.vm_ns("web"));
    let _http = TcpServer::start(wb, sock("10.20.0.20", 80), "web").unwrap();
    let _telnet = TcpServer::start(wb, sock("10.20.0.20", 23), "telnet").unwrap();
    let _udp = UdpServer::start(wb, sock("10.20.0.20", 5000), "web:").unwrap();

    // Default deny: nothing gets in (the client's own group allows all).
    assert_eq!(ping(cl, ip("10.20.0.20"), 3, SECOND).unwrap(), 0);
    assert_eq!(
        tcp_request(cl, sock("10.20.0.20", 80), SECOND).unwrap(),
        Err(ErrorKind::TimedOut)
    );
    assert_eq!(
        udp_request(
            cl,
            sock("10.20.0.20", 5000),
            b"x",
            Duration::from_millis(300)
        )
        .unwrap(),
        None
    );

    // Allow http, udp 5000 and ping; reject telnet (through the CLI).
    lab.cli(&[
        "sg",
        "update",
        &web,
        "--json",
        r#"{"rules": [
            {"direction": "ingress", "protocol": "tcp", "port_range_min": 80},
            {"direction": "ingress", "protocol": "udp", "port_range_min": 5000},
            {"direction": "ingress", "protocol": "icmp"},
            {"direction": "ingress", "protocol": "tcp", "port_range_min": 23, "action": "reject"}]}"#,
    ])
    .unwrap();
    wait_ping(cl, ip("10.20.0.20"), 5 * SECOND).unwrap();
    assert_eq!(
        tcp_request(cl, sock("10.20.0.20", 80), 2 * SECOND).unwrap(),
        Ok("web".to_string())
    );
    assert_eq!(
        udp_request(cl, sock("10.20.0.20", 5000), b"hi", SECOND).unwrap(),
        Some(b"web:hi".to_vec())
    );
    let t0 = Instant::now();
    assert_eq!(
        tcp_request(cl, sock("10.20.0.20", 23), 2 * SECOND).unwrap(),
        Err(ErrorKind::ConnectionRefused),
        "reject answers with a RST"
    );
    assert!(t0.elapsed() < SECOND, "the RST came at once");
    // Egress is denied too: the web VM cannot open connections out.
    let _back = TcpServer::start(cl, sock("10.20.0.10", 8000), "client").unwrap();
    assert_eq!(
        tcp_request(wb, sock("10.20.0.10", 8000), SECOND).unwrap(),
        Err(ErrorKind::TimedOut)
    );
}

#[test]
fn service_function_on_one_vnic_in_three_networks_through_vlans() {
    let mut lab = lab_with(&seed::HOSTS, &[]);
    let (p, open) = project(&lab, "nfv");
    let mut nets = Vec::new();
    for (name, cidr) in [
        ("net-a", "10.10.0.0/24"),
        ("net-b", "10.20.0.0/24"),
        ("net-c", "10.30.0.0/24"),
    ] {
        nets.push(network(&lab, &p, name, cidr).0);
    }
    let api = lab.api().clone();
    let sf = api
        .create_id(
            Kind::InstancePort,
            json!({"project": p, "name": "sf", "host": "host-a"}),
        )
        .unwrap();
    for (k, vlan) in [10u16, 20, 30].into_iter().enumerate() {
        let iface = api
            .create_id(
                Kind::Interface,
                json!({"project": p, "name": format!("sf.{vlan}"), "parent": sf, "vlan": vlan}),
            )
            .unwrap();
        api.create(
            Kind::ServicePort,
            json!({"project": p, "name": format!("sf-{vlan}"), "interface": iface,
                   "service": nets[k], "fixed_ips": [{"ip": format!("10.{vlan}.0.10")}],
                   "security_groups": [open]}),
        )
        .unwrap();
    }
    for (k, c) in ["ca", "cb", "cc"].into_iter().enumerate() {
        let addr = format!("10.{}.0.20", 10 * (k + 1));
        let port = lab
            .port(
                &p,
                c,
                "host-b",
                json!({"service": nets[k], "fixed_ips": [{"ip": addr}], "security_groups": [open]}),
            )
            .unwrap();
        lab.add_vm(
            c,
            "host-b",
            &port,
            VmNet::simple(&format!("{addr}/24"), None),
        )
        .unwrap();
    }
    lab.add_vm("SF", "host-a", &sf, VmNet::none()).unwrap();
    lab.vlan_relay(
        "SF",
        &[
            (10, "10.10.0.10/24"),
            (20, "10.20.0.10/24"),
            (30, "10.30.0.10/24"),
        ],
    )
    .unwrap();
    let sfn = lab.vm_ns("SF");
    // Only answer ARP on the sub-interface that holds the address, so a
    // frame with the wrong tag would go unanswered.
    sfn.sysctl("net.ipv4.conf.all.arp_ignore", "1").unwrap();
    sfn.sysctl("net.ipv4.conf.all.rp_filter", "1").unwrap();

    // Each client reaches the SF on its own network's VLAN, across hosts.
    for (k, c) in ["ca", "cb", "cc"].into_iter().enumerate() {
        let vlan = 10 * (k + 1);
        let dev = format!("sf{vlan}");
        let dst = ip(&format!("10.{vlan}.0.10"));
        wait_ping(lab.vm_ns(c), dst, 5 * SECOND).unwrap();
        let before: Vec<u64> = ["sf10", "sf20", "sf30"]
            .iter()
            .map(|d| rx_packets(sfn, d).unwrap())
            .collect();
        assert_eq!(ping(lab.vm_ns(c), dst, 10, SECOND).unwrap(), 10);
        let after: Vec<u64> = ["sf10", "sf20", "sf30"]
            .iter()
            .map(|d| rx_packets(sfn, d).unwrap())
            .collect();
        for (j, d) in ["sf10", "sf20", "sf30"].iter().enumerate() {
            let got = after[j] - before[j];
            if *d == dev {
                assert!(got >= 10, "{c}'s pings did not arrive on {dev}: {got}");
            } else {
                assert_eq!(got, 0, "{c}'s pings leaked onto {d}");
            }
        }
    }
    // UDP to the SF on VLAN 30, and the SF reaching out on VLAN 20.
    let _u = UdpServer::start(sfn, sock("10.30.0.10", 5000), "sf:").unwrap();
    assert_eq!(
        udp_request(lab.vm_ns("cc"), sock("10.30.0.10", 5000), b"c", SECOND).unwrap(),
        Some(b"sf:c".to_vec())
    );
    assert_eq!(ping(sfn, ip("10.20.0.20"), 3, SECOND).unwrap(), 3);
    // The networks stay apart: client-a cannot reach client-b's address
    // through the shared vNIC, nobody receives its probes.
    lab.vm_ns("ca")
        .ip(&["route", "add", "10.20.0.0/24", "dev", "eth0"])
        .unwrap();
    let eps = vec![
        Endpoint {
            name: "ca".into(),
            ns: lab.vm_ns("ca"),
            ip: ip("10.10.0.20"),
        },
        Endpoint {
            name: "cb".into(),
            ns: lab.vm_ns("cb"),
            ip: ip("10.20.0.20"),
        },
        Endpoint {
            name: "SF".into(),
            ns: sfn,
            ip: ip("10.10.0.10"),
        },
    ];
    let m = probe_matrix(&eps, Duration::from_millis(500)).unwrap();
    let ca_cb = &m[&("ca".to_string(), "cb".to_string())];
    assert!(
        ca_cb.received_by.is_empty(),
        "net-a leaked into net-b: {ca_cb:?}"
    );
    assert!(m[&("ca".to_string(), "SF".to_string())].ok("SF"));
}

#[test]
fn interop_with_a_linux_kernel_vxlan_host() {
    let mut lab = lab_with(&["host-a"], &["--accept-unknown-peers"]);
    let (p, open) = project(&lab, "mixed");
    let (net, _, n) = network(&lab, &p, "net", "10.5.0.0/24");
    let vni = n["vni"].as_u64().unwrap().to_string();
    let w = lab
        .port(
            &p,
            "w1",
            "host-a",
            json!({"service": net, "fixed_ips": [{"ip": "10.5.0.10"}], "security_groups": [open]}),
        )
        .unwrap();
    lab.add_vm("W1", "host-a", &w, VmNet::simple("10.5.0.10/24", None))
        .unwrap();

    // Host "kern" runs no Weft: the kernel's VXLAN device and a bridge, by iproute2.
    let weft_ul = lab.host("host-a").underlay_ip.to_string();
    let kern = lab.add_bare_host("kern").unwrap();
    let (kns, kern_ul) = (&kern.ns, kern.underlay_ip.to_string());
    // The veth to the bridge hands over partial checksums otherwise (see
    // weft-dataplane's kernel_vtep): make it behave like a wire.
    kns.exec(&["ethtool", "-K", "ul0", "tx", "off"]).unwrap();
    kns.ip(&[
        "link", "add", "vxlan0", "mtu", "1450", "type", "vxlan", "id", &vni, "local", &kern_ul,
        "remote", &weft_ul, "dstport", "4789", "dev", "ul0",
    ])
    .unwrap();
    kns.ip(&["link", "add", "br0", "mtu", "1450", "type", "bridge"])
        .unwrap();
    let vm = weft_lab::Netns::new("k").unwrap();
    kns.ip(&[
        "link",
        "add",
        "vport0",
        "mtu",
        "1450",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        vm.name(),
    ])
    .unwrap();
    for l in ["vxlan0", "vport0"] {
        kns.ip(&["link", "set", l, "master", "br0"]).unwrap();
        kns.ip(&["link", "set", l, "up"]).unwrap();
    }
    kns.ip(&["link", "set", "br0", "up"]).unwrap();

    // Weft learns about the kernel host: its tunnel address, and its VM as an
    // intent port bound to it (with the MAC the VM really has).
    let k = lab
        .port(
            &p,
            "k1",
            "kern",
            json!({"service": net, "fixed_ips": [{"ip": "10.5.0.30"}], "security_groups": [open]}),
        )
        .unwrap();
    let mac = lab.api().get(Kind::InstancePort, &k).unwrap()["mac"]
        .as_str()
        .unwrap()
        .to_string();
    lab.api()
        .request(
            weft_client::Method::PUT,
            "/v1/hosts/kern/tunnel",
            Some(json!({"address": kern_ul})),
        )
        .unwrap();
    vm.ip(&["link", "set", "eth0", "address", &mac, "mtu", "1450", "up"])
        .unwrap();
    vm.ip(&["addr", "add", "10.5.0.30/24", "dev", "eth0"])
        .unwrap();

    let w1 = lab.vm_ns("W1");
    wait_ping(&vm, ip("10.5.0.10"), 10 * SECOND).expect("kernel VM → Weft VM");
    assert_eq!(ping(&vm, ip("10.5.0.10"), 10, SECOND).unwrap(), 10);
    assert_eq!(ping(w1, ip("10.5.0.30"), 10, SECOND).unwrap(), 10);
    // TCP and UDP both ways.
    let _tk = TcpServer::start(&vm, sock("10.5.0.30", 8080), "kernel").unwrap();
    let _tw = TcpServer::start(w1, sock("10.5.0.10", 8080), "weft").unwrap();
    let _uw = UdpServer::start(w1, sock("10.5.0.10", 5000), "weft:").unwrap();
    assert_eq!(
        tcp_request(w1, sock("10.5.0.30", 8080), 3 * SECOND).unwrap(),
        Ok("kernel".to_string())
    );
    assert_eq!(
        tcp_request(&vm, sock("10.5.0.10", 8080), 3 * SECOND).unwrap(),
        Ok("weft".to_string())
    );
    assert_eq!(
        udp_request(&vm, sock("10.5.0.10", 5000), &[7u8; 1200], SECOND).unwrap(),
        Some([b"weft:".as_slice(), &[7u8; 1200]].concat())
    );
}
