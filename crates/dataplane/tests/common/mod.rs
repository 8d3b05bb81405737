//! Namespace plumbing for the end-to-end tests: hosts and VMs as network
//! namespaces joined by a veth underlay on TEST-NET-1, traffic generators
//! that run inside a namespace on a dedicated thread, and cleanup on drop
//! (also when a test fails and unwinds).

#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};
use sha2::{Digest, Sha256};

/// Fails the test loudly unless it runs as root (namespaces need CAP_SYS_ADMIN).
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test builds network namespaces and must run as root"
    );
}

/// Runs a command, panicking with its output if it fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace created by the test and deleted when dropped.
pub struct Netns {
    pub name: String,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl Netns {
    /// A new namespace with a name unique to this process, loopback up.
    pub fn new(role: &str) -> Netns {
        let name = format!(
            "wdp{}{}{role}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        sh(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        // Quiet namespaces: no IPv6 chatter during the tests.
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        ns
    }

    /// `ip -n NAME ARGS...`
    pub fn ip(&self, args: &[&str]) -> String {
        let mut v = vec!["ip", "-n", &self.name];
        v.extend_from_slice(args);
        sh(&v)
    }

    /// `ip netns exec NAME ARGS...`
    pub fn exec(&self, args: &[&str]) -> String {
        let mut v = vec!["ip", "netns", "exec", &self.name];
        v.extend_from_slice(args);
        sh(&v)
    }

    /// Runs `f` on a new thread that has entered this namespace (sockets and
    /// TAPs it creates belong to the namespace).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let fd = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                setns(&fd, CloneFlags::CLONE_NEWNET).expect("setns");
                f()
            })
            .join()
            .expect("namespace thread panicked")
        })
    }

    /// Spawns a thread inside this namespace and returns its handle.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let fd = File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
            setns(&fd, CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Best effort: deleting the namespace removes its links too.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Two hosts on a veth underlay (192.0.2.1 and 192.0.2.2, MTU 1500) and two VM
/// namespaces. VM interfaces are added by the test.
pub struct Topology {
    pub host_a: Netns,
    pub host_b: Netns,
    pub vm_a: Netns,
    pub vm_b: Netns,
}

pub const UL_A: &str = "192.0.2.1";
pub const UL_B: &str = "192.0.2.2";
pub const VM_A: &str = "10.0.0.1";
pub const VM_B: &str = "10.0.0.2";
pub const VM_MTU: &str = "1450";

impl Topology {
    pub fn new() -> Topology {
        require_root();
        let t = Topology {
            host_a: Netns::new("ha"),
            host_b: Netns::new("hb"),
            vm_a: Netns::new("va"),
            vm_b: Netns::new("vb"),
        };
        t.host_a.ip(&[
            "link",
            "add",
            "ul0",
            "mtu",
            "1500",
            "type",
            "veth",
            "peer",
            "name",
            "ul0",
            "netns",
            &t.host_b.name,
        ]);
        for (h, addr) in [(&t.host_a, UL_A), (&t.host_b, UL_B)] {
            h.ip(&["addr", "add", &format!("{addr}/24"), "dev", "ul0"]);
            h.ip(&["link", "set", "ul0", "up"]);
        }
        t
    }

    /// Moves the TAP `tap` from `host` into `vm` as `eth0` with `addr`.
    pub fn plug_tap(host: &Netns, vm: &Netns, tap: &str, addr: &str) {
        Self::plug_tap_mtu(host, vm, tap, addr, VM_MTU);
    }

    /// [`Topology::plug_tap`] with a given MTU.
    pub fn plug_tap_mtu(host: &Netns, vm: &Netns, tap: &str, addr: &str, mtu: &str) {
        host.ip(&["link", "set", tap, "netns", &vm.name]);
        vm.ip(&["link", "set", tap, "name", "eth0"]);
        Self::vm_up_mtu(vm, addr, mtu);
    }

    /// Gives `vm`'s `eth0` its MTU and address and brings it up.
    pub fn vm_up(vm: &Netns, addr: &str) {
        Self::vm_up_mtu(vm, addr, VM_MTU);
    }

    fn vm_up_mtu(vm: &Netns, addr: &str, mtu: &str) {
        vm.ip(&["link", "set", "eth0", "mtu", mtu]);
        vm.ip(&["addr", "add", &format!("{addr}/24"), "dev", "eth0"]);
        vm.ip(&["link", "set", "eth0", "up"]);
    }

    /// Linux's own VXLAN path on `host`: vxlan100 + bridge br0 + a veth to `vm`.
    ///
    /// The host's underlay veth gets checksum offload off, so it behaves like a
    /// wire: a veth otherwise hands the peer namespace packets whose inner TCP
    /// and UDP checksums were never computed (`CHECKSUM_PARTIAL` travels with the
    /// skb), which no receiver outside that kernel can verify.
    pub fn kernel_vtep(host: &Netns, vm: &Netns, local: &str, remote: &str, vm_addr: &str) {
        host.exec(&["ethtool", "-K", "ul0", "tx", "off"]);
        host.ip(&[
            "link", "add", "vxlan100", "mtu", VM_MTU, "type", "vxlan", "id", "100", "local", local,
            "remote", remote, "dstport", "4789", "dev", "ul0",
        ]);
        host.ip(&["link", "add", "br0", "mtu", VM_MTU, "type", "bridge"]);
        host.ip(&[
            "link", "add", "vport0", "mtu", VM_MTU, "type", "veth", "peer", "name", "eth0",
            "netns", &vm.name,
        ]);
        for l in ["vxlan100", "vport0"] {
            host.ip(&["link", "set", l, "master", "br0"]);
            host.ip(&["link", "set", l, "up"]);
        }
        host.ip(&["link", "set", "br0", "up"]);
        Self::vm_up(vm, vm_addr);
    }
}

/// A counter of the `Ip:` line of `/proc/net/snmp` in `ns` (e.g. `FragCreates`).
pub fn ip_snmp(ns: &Netns, name: &str) -> u64 {
    let text = ns.exec(&["cat", "/proc/net/snmp"]);
    let mut lines = text.lines().filter(|l| l.starts_with("Ip:"));
    let (keys, values) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    keys.split_whitespace()
        .zip(values.split_whitespace())
        .find_map(|(k, v)| (k == name).then(|| v.parse().ok()).flatten())
        .unwrap_or_else(|| panic!("no Ip counter {name} in {}:\n{text}", ns.name))
}

/// Pings `dst` from `vm` until one answer arrives (ARP and forwarder start-up)
/// or `timeout` passes; then `count` pings must all succeed.
pub fn ping(vm: &Netns, dst: &str, count: u32) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = Command::new("ip")
            .args([
                "netns", "exec", &vm.name, "ping", "-n", "-c", "1", "-W", "1", dst,
            ])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{dst} never answered a ping from {}",
            vm.name
        );
    }
    vm.exec(&[
        "ping",
        "-n",
        "-c",
        &count.to_string(),
        "-i",
        "0.05",
        "-W",
        "2",
        dst,
    ])
}

/// Deterministic pseudo-random bytes (xorshift), so data errors show up.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Sends `len` bytes over TCP from `src` to a listener in `dst` at
/// `dst_addr:port`; the receiver hashes what it got and sends the SHA-256
/// back. Returns (sent digest, received digest).
pub fn tcp_transfer(
    src: &Netns,
    dst: &Netns,
    dst_addr: &str,
    port: u16,
    len: usize,
) -> ([u8; 32], [u8; 32]) {
    let addr: SocketAddr = format!("{dst_addr}:{port}").parse().unwrap();
    let listener = dst.run(|| TcpListener::bind(addr).expect("bind listener"));
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = s.read(&mut buf).expect("server read");
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let d: [u8; 32] = h.finalize().into();
        s.write_all(&d).expect("server write digest");
        d
    });
    let data = pattern(len, port as u64);
    let sent: [u8; 32] = Sha256::digest(&data).into();
    let echoed = src.run(move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.write_all(&data).expect("client write");
        s.shutdown(Shutdown::Write).unwrap();
        let mut d = [0u8; 32];
        s.read_exact(&mut d).expect("read digest");
        d
    });
    let received = server.join().expect("server thread");
    assert_eq!(echoed, received);
    (sent, received)
}

/// Echoes UDP datagrams of the given sizes from `src` off a server in `dst`;
/// every datagram must come back intact (sent one at a time, 3 tries each).
pub fn udp_echo(src: &Netns, dst: &Netns, dst_addr: &str, port: u16, sizes: &[usize]) {
    let addr: SocketAddr = format!("{dst_addr}:{port}").parse().unwrap();
    let server_sock = dst.run(|| UdpSocket::bind(addr).expect("bind udp"));
    server_sock
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let server = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let mut buf = vec![0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, from)) = server_sock.recv_from(&mut buf) {
                    server_sock.send_to(&buf[..n], from).expect("echo");
                }
            }
        }
    });
    let sizes = sizes.to_vec();
    let result = src.run(move || {
        let any = if addr.is_ipv6() {
            "[::]:0"
        } else {
            "0.0.0.0:0"
        };
        let s = UdpSocket::bind(any).expect("bind client");
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = vec![0u8; 65536];
        for (i, len) in sizes.into_iter().enumerate() {
            let data = pattern(len, 1000 + i as u64);
            let mut ok = false;
            'tries: for _ in 0..3 {
                s.send_to(&data, addr).expect("send");
                // Skip late echoes of earlier datagrams; a wrong echo of this one is a failure.
                while let Ok((n, _)) = s.recv_from(&mut buf) {
                    if n == data.len() {
                        if buf[..n] != data[..] {
                            return Err(format!("datagram {i} ({len} bytes) came back changed"));
                        }
                        ok = true;
                        break 'tries;
                    }
                }
            }
            if !ok {
                return Err(format!("datagram {i} ({len} bytes) never came back"));
            }
        }
        Ok(())
    });
    stop.store(true, Ordering::Relaxed);
    server.join().expect("udp server");
    result.unwrap();
}
