//! End to end: two hosts and two VMs as network namespaces, a veth underlay on
//! TEST-NET-1, the forwarder on each host (or Linux's own VXLAN on one of
//! them), and real traffic between the VMs: ping, TCP transfers checked by
//! SHA-256, UDP echoes of every size class (including IP fragments).
//!
//! Needs root. Every namespace is removed when the test ends, pass or fail.

mod common;

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Netns, Topology, UL_A, UL_B, VM_A, VM_B, ip_snmp, ping, tcp_transfer, udp_echo};
use weft_dataplane::{
    BridgeLink, Forwarder, ForwarderConfig, RunningForwarder, StaticBridge, Stats, TapOffloads,
    TapOptions, Threading, VifId, Vni,
};

/// UDP payload sizes: tiny, around the VM MTU (1422 is the largest unfragmented
/// at MTU 1450), and fragmented.
const UDP_SIZES: &[usize] = &[1, 18, 100, 1000, 1400, 1422, 1423, 3000, 8000, 20000];

fn start(
    host: &Netns,
    local: &str,
    remote: &str,
    tweak: impl FnOnce(&mut ForwarderConfig),
) -> RunningForwarder {
    let mut cfg = ForwarderConfig::new(
        ["wtap0".to_string()],
        format!("{local}:4789").parse().unwrap(),
    );
    tweak(&mut cfg);
    let fwd = host
        .run(move || Forwarder::open(cfg))
        .expect("open forwarder");
    let bridge = StaticBridge::new(&[BridgeLink {
        vif: VifId(0),
        remote: remote.parse().unwrap(),
        vni: Vni::new(100).unwrap(),
    }]);
    fwd.start(move |_| bridge.clone()).expect("start forwarder")
}

/// Ping, 32 MiB A→B and 8 MiB B→A over TCP, UDP echoes A→B→A.
fn traffic(t: &Topology) {
    ping(&t.vm_a, VM_B, 5);
    let (sent, got) = tcp_transfer(&t.vm_a, &t.vm_b, VM_B, 5001, 32 << 20);
    assert_eq!(sent, got, "TCP A→B data differs");
    let (sent, got) = tcp_transfer(&t.vm_b, &t.vm_a, VM_A, 5002, 8 << 20);
    assert_eq!(sent, got, "TCP B→A data differs");
    udp_echo(&t.vm_a, &t.vm_b, VM_B, 5003, UDP_SIZES);
}

fn assert_clean(s: &Stats) {
    assert_eq!(s.drops.offload, 0, "offload errors:\n{s}");
    assert_eq!(s.drops.no_such_vif, 0, "{s}");
    assert_eq!(s.tunnel.rx_malformed, 0, "malformed datagrams:\n{s}");
    assert_eq!(s.tunnel.tx_failed, 0, "failed sends:\n{s}");
    assert_eq!(
        s.vifs[0].tx_errors + s.vifs[0].rx_errors,
        0,
        "TAP errors:\n{s}"
    );
}

#[test]
fn weft_to_weft_with_offloads() {
    let t = Topology::new();
    let a = start(&t.host_a, UL_A, UL_B, |_| {});
    let b = start(&t.host_b, UL_B, UL_A, |_| {});
    Topology::plug_tap(&t.host_a, &t.vm_a, "wtap0", VM_A);
    Topology::plug_tap(&t.host_b, &t.vm_b, "wtap0", VM_B);
    traffic(&t);
    let (sa, sb) = (a.stop().unwrap(), b.stop().unwrap());
    assert_clean(&sa);
    assert_clean(&sb);
    // The fast paths really ran: guest TSO, software segmentation, coalescing.
    assert!(
        sa.vifs[0].rx_gso_frames > 0,
        "no TSO super-frame from VM A:\n{sa}"
    );
    assert!(sa.tunnel.tx_segmented_frames > 0, "{sa}");
    assert!(
        sb.tunnel.rx_coalesced_frames > 0,
        "no coalescing on B:\n{sb}"
    );
    assert!(sb.vifs[0].tx_gso_frames > 0, "{sb}");
    // Fewer syscalls than datagrams: sendmmsg/UDP GSO and recvmmsg/UDP GRO batch.
    assert!(sa.tunnel.tx_syscalls * 4 < sa.tunnel.tx_datagrams, "{sa}");
    assert!(sb.tunnel.rx_syscalls * 4 < sb.tunnel.rx_datagrams, "{sb}");
    assert_eq!(
        sa.tunnel.tx_datagrams, sb.tunnel.rx_datagrams,
        "A sent what B received"
    );
}

#[test]
fn weft_to_weft_ipv6_overlay_uses_tso6() {
    let t = Topology::new();
    let a = start(&t.host_a, UL_A, UL_B, |c| {
        c.threading = Threading::PerDirection
    });
    let b = start(&t.host_b, UL_B, UL_A, |_| {});
    Topology::plug_tap(&t.host_a, &t.vm_a, "wtap0", VM_A);
    Topology::plug_tap(&t.host_b, &t.vm_b, "wtap0", VM_B);
    for (vm, addr) in [(&t.vm_a, "fd00::1/64"), (&t.vm_b, "fd00::2/64")] {
        vm.exec(&[
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=0",
            "net.ipv6.conf.eth0.disable_ipv6=0",
        ]);
        vm.ip(&["-6", "addr", "add", addr, "dev", "eth0", "nodad"]);
    }
    ping(&t.vm_a, "fd00::2", 3);
    let (sent, got) = tcp_transfer(&t.vm_a, &t.vm_b, "[fd00::2]", 5011, 16 << 20);
    assert_eq!(sent, got, "TCP over IPv6 A→B data differs");
    udp_echo(&t.vm_b, &t.vm_a, "[fd00::1]", 5012, &[1, 1000, 1402, 5000]);
    let (sa, sb) = (a.stop().unwrap(), b.stop().unwrap());
    assert_clean(&sa);
    assert_clean(&sb);
    assert!(
        sa.vifs[0].rx_gso_frames > 0,
        "no TSO6 super-frame from VM A:\n{sa}"
    );
    assert!(sb.tunnel.rx_coalesced_frames > 0, "{sb}");
}

#[test]
fn guest_mtu_above_the_tunnel_mtu_is_resegmented_not_fragmented() {
    let t = Topology::new();
    let a = start(&t.host_a, UL_A, UL_B, |_| {});
    let b = start(&t.host_b, UL_B, UL_A, |_| {});
    // MTU 1500 in the VMs: their segments are 50 bytes too big for the 1500-byte underlay.
    Topology::plug_tap_mtu(&t.host_a, &t.vm_a, "wtap0", VM_A, "1500");
    Topology::plug_tap_mtu(&t.host_b, &t.vm_b, "wtap0", VM_B, "1500");
    ping(&t.vm_a, VM_B, 2);
    let frags_before = ip_snmp(&t.host_a, "FragCreates") + ip_snmp(&t.host_b, "FragCreates");
    let (sent, got) = tcp_transfer(&t.vm_a, &t.vm_b, VM_B, 5021, 16 << 20);
    assert_eq!(sent, got);
    let (sent, got) = tcp_transfer(&t.vm_b, &t.vm_a, VM_A, 5022, 4 << 20);
    assert_eq!(sent, got);
    let frags =
        ip_snmp(&t.host_a, "FragCreates") + ip_snmp(&t.host_b, "FragCreates") - frags_before;
    assert_eq!(frags, 0, "the underlay fragmented VXLAN packets");
    let (sa, sb) = (a.stop().unwrap(), b.stop().unwrap());
    assert_clean(&sa);
    assert_clean(&sb);
}

#[test]
fn weft_fallbacks_plain_tap_single_thread_no_udp_offloads() {
    let t = Topology::new();
    // A: TAP without virtio-net headers, one thread, no UDP GSO/GRO, no coalescing.
    let a = start(&t.host_a, UL_A, UL_B, |c| {
        c.taps[0].options = TapOptions {
            vnet_hdr: false,
            offloads: TapOffloads::NONE,
        };
        c.threading = Threading::Single;
        c.tunnel.udp_gso = false;
        c.tunnel.udp_gro = false;
        c.coalesce = false;
    });
    // B: everything on (one thread per direction), so super-frames from B must be
    // segmented for A's plain TAP.
    let b = start(&t.host_b, UL_B, UL_A, |c| {
        c.threading = Threading::PerDirection
    });
    Topology::plug_tap(&t.host_a, &t.vm_a, "wtap0", VM_A);
    Topology::plug_tap(&t.host_b, &t.vm_b, "wtap0", VM_B);
    traffic(&t);
    let (sa, sb) = (a.stop().unwrap(), b.stop().unwrap());
    assert_clean(&sa);
    assert_clean(&sb);
    assert_eq!(
        sa.vifs[0].rx_gso_frames, 0,
        "a plain TAP cannot hand out super-frames"
    );
    assert_eq!(sa.tunnel.rx_coalesced_frames, 0);
    assert!(sb.vifs[0].rx_gso_frames > 0, "{sb}");
    assert!(sa.tunnel.tx_datagrams > 1000 && sb.tunnel.tx_datagrams > 1000);
}

#[test]
fn weft_interoperates_with_linux_vxlan() {
    let t = Topology::new();
    // Host A runs weft; host B runs the kernel's vxlan device + bridge (iproute2).
    let a = start(&t.host_a, UL_A, UL_B, |_| {});
    Topology::plug_tap(&t.host_a, &t.vm_a, "wtap0", VM_A);
    Topology::kernel_vtep(&t.host_b, &t.vm_b, UL_B, UL_A, VM_B);
    traffic(&t);
    let sa = a.stop().unwrap();
    assert_clean(&sa);
    assert!(
        sa.tunnel.rx_datagrams > 1000 && sa.tunnel.tx_datagrams > 1000,
        "{sa}"
    );
    // The kernel learned VM A's MAC behind our VTEP: its FDB points at 192.0.2.1.
    let fdb = t.host_b.exec(&["bridge", "fdb", "show", "dev", "vxlan100"]);
    assert!(fdb.contains(&format!("dst {UL_A}")), "kernel FDB:\n{fdb}");
}

/// Kills and reaps a child process when dropped (a failing test must not leak it).
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_weft_fwd(host: &Netns, local: &str, remote: &str) -> Reap {
    let child = Command::new("ip")
        .args(["netns", "exec", &host.name, env!("CARGO_BIN_EXE_weft-fwd")])
        .args([
            "--tap", "wtap0", "--local", local, "--remote", remote, "--vni", "100",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn weft-fwd");
    let reap = Reap(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Command::new("ip")
        .args(["-n", &host.name, "link", "show", "wtap0"])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "weft-fwd did not create its TAP");
        std::thread::sleep(Duration::from_millis(20));
    }
    reap
}

/// Stops weft-fwd with SIGTERM and returns the counters it prints.
fn stop_weft_fwd(mut r: Reap) -> String {
    let pid = nix::unistd::Pid::from_raw(r.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let status = r.0.wait().expect("wait weft-fwd");
    assert!(status.success(), "weft-fwd exited with {status}");
    let mut out = String::new();
    r.0.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    out
}

fn counter(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
}

#[test]
fn weft_fwd_binary_bridges_and_reports_counters() {
    let t = Topology::new();
    let a = spawn_weft_fwd(&t.host_a, UL_A, UL_B);
    let b = spawn_weft_fwd(&t.host_b, UL_B, UL_A);
    Topology::plug_tap(&t.host_a, &t.vm_a, "wtap0", VM_A);
    Topology::plug_tap(&t.host_b, &t.vm_b, "wtap0", VM_B);
    ping(&t.vm_a, VM_B, 3);
    let (sent, got) = tcp_transfer(&t.vm_a, &t.vm_b, VM_B, 5001, 4 << 20);
    assert_eq!(sent, got);
    let (ta, tb) = (stop_weft_fwd(a), stop_weft_fwd(b));
    assert!(counter(&ta, "vif0.rx_bytes") >= 4 << 20, "{ta}");
    assert!(counter(&tb, "vif0.tx_bytes") >= 4 << 20, "{tb}");
    assert_eq!(
        counter(&ta, "tunnel.tx_datagrams"),
        counter(&tb, "tunnel.rx_datagrams")
    );
}

#[test]
fn a_vanished_tap_is_dropped_without_spinning() {
    let t = Topology::new();
    let a = start(&t.host_a, UL_A, UL_B, |c| c.threading = Threading::Single);
    let b = start(&t.host_b, UL_B, UL_A, |_| {});
    Topology::plug_tap(&t.host_a, &t.vm_a, "wtap0", VM_A);
    Topology::plug_tap(&t.host_b, &t.vm_b, "wtap0", VM_B);
    ping(&t.vm_a, VM_B, 2);
    // Deleting the VM's namespace deletes the TAP under the forwarder's descriptor.
    let Topology {
        host_a,
        host_b,
        vm_a,
        vm_b,
    } = t;
    drop(vm_a);
    std::thread::sleep(Duration::from_millis(300));
    let errors = a.stats().vifs[0].rx_errors;
    std::thread::sleep(Duration::from_millis(700));
    let sa = a.stop().expect("the forwarder stops cleanly");
    // A worker spinning on the dead descriptor would fail a read per iteration.
    assert_eq!(
        sa.vifs[0].rx_errors, errors,
        "reads kept failing after the TAP vanished"
    );
    assert!(errors >= 1, "the failed read was not seen:\n{sa}");
    drop(b);
    drop((host_a, host_b, vm_b));
}
