//! A network namespace running FRR (zebra + bgpd), linked to the test's
//! own namespace by a veth pair on TEST-NET-2 addresses, so a controller
//! started by the test talks BGP to a real daemon:
//!
//! ```text
//!   test process (controller)            ns wbgpc-sN: zebra + bgpd
//!   198.51.100.(128+4N+1)/30 ──veth wbcN── 198.51.100.(128+4N+2)/30
//!                                         route 192.0.2.0/24 via the veth
//! ```
//!
//! Concurrent tests (nextest runs each in its own process) take distinct
//! slots N by `flock` on a per-slot file, released by the kernel even if
//! the process dies. A slot's leftovers from a killed run are removed when
//! the slot is taken; everything else is removed on drop, also when a test
//! panics. Needs root, and says so.
//!
//! The FRR helpers follow `crates/bgp/tests/lab` (private sockets per
//! instance, vtysh on them).

#![allow(dead_code)]

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

/// Slots in 198.51.100.128/25, one /30 each.
const SLOTS: u8 = 32;

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test builds a network namespace and runs FRR: run it as root"
    );
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn quiet(cmd: &str, args: &[&str]) {
    let _ = Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

fn kill_ns_pids(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

pub struct Lab {
    pub ns: String,
    pub veth: String,
    pub slot: u8,
    pub dir: PathBuf,
    children: Vec<Child>,
    _lock: Flock<File>,
}

impl Lab {
    pub fn new() -> Lab {
        require_root();
        let (slot, lock) = (0..SLOTS)
            .find_map(|s| {
                let f = File::create(std::env::temp_dir().join(format!("weft-bgp-lab-{s}.lock")))
                    .ok()?;
                Flock::lock(f, FlockArg::LockExclusiveNonblock)
                    .ok()
                    .map(|l| (s, l))
            })
            .expect("every lab slot is taken: too many BGP lab tests at once");
        let ns = format!("wbgpc-s{slot}");
        let veth = format!("wbc{slot}");
        // Leftovers of a run that was killed.
        kill_ns_pids(&ns);
        quiet("ip", &["netns", "del", &ns]);
        quiet("ip", &["link", "del", &veth]);
        let dir = std::env::temp_dir().join(format!("weft-bgp-lab-{slot}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let lab = Lab {
            ns: ns.clone(),
            veth: veth.clone(),
            slot,
            dir,
            children: Vec::new(),
            _lock: lock,
        };
        run("ip", &["netns", "add", &ns]);
        run("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        run(
            "ip",
            &[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
        );
        let weft = format!("{}/30", lab.weft_addr());
        let frr = format!("{}/30", lab.frr_addr());
        run("ip", &["addr", "add", &weft, "dev", &veth]);
        run("ip", &["link", "set", &veth, "up"]);
        run("ip", &["-n", &ns, "addr", "add", &frr, "dev", "eth0"]);
        run("ip", &["-n", &ns, "link", "set", "eth0", "up"]);
        // The hosts' tunnel addresses (next hops of our routes) resolve
        // through the controller's side, so FRR takes the routes as valid.
        run(
            "ip",
            &[
                "-n",
                &ns,
                "route",
                "add",
                "192.0.2.0/24",
                "via",
                &lab.weft_addr().to_string(),
            ],
        );
        lab
    }

    /// The test namespace's end of the veth: the controller's BGP address.
    pub fn weft_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 51, 100, 128 + 4 * self.slot + 1)
    }

    /// FRR's address.
    pub fn frr_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(198, 51, 100, 128 + 4 * self.slot + 2)
    }

    fn spawn(&mut self, cmd: &str, args: &[&str], log: &Path) -> u32 {
        let log = File::create(log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns, cmd])
            .args(args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd}: {e}"));
        let pid = child.id();
        self.children.push(child);
        pid
    }

    /// Starts zebra and bgpd with `config`.
    pub fn start_frr(&mut self, config: &str) -> Frr {
        let dir = self.dir.clone();
        std::fs::write(dir.join("bgpd.conf"), config).unwrap();
        run("chown", &["-R", "frr:frr", dir.to_str().unwrap()]);
        let d = dir.to_str().unwrap().to_string();
        let zserv = format!("{d}/zserv.api");
        self.spawn(
            "/usr/lib/frr/zebra",
            &[
                "-i",
                &format!("{d}/zebra.pid"),
                "-z",
                &zserv,
                "--vty_socket",
                &d,
                "-u",
                "frr",
                "-g",
                "frr",
                "-f",
                "/dev/null",
            ],
            &dir.join("zebra.out"),
        );
        assert!(
            wait_for(Duration::from_secs(10), || Path::new(&zserv).exists()),
            "zebra did not start; see {}",
            dir.join("zebra.out").display()
        );
        let mut frr = Frr { dir, bgpd_pid: 0 };
        frr.bgpd_pid = self.start_bgpd(&frr);
        frr
    }

    /// Starts (or restarts) bgpd.
    pub fn start_bgpd(&mut self, frr: &Frr) -> u32 {
        let d = frr.dir.to_str().unwrap().to_string();
        let _ = std::fs::remove_file(frr.dir.join("bgpd.vty"));
        let pid = self.spawn(
            "/usr/lib/frr/bgpd",
            &[
                "-i",
                &format!("{d}/bgpd.pid"),
                "-z",
                &format!("{d}/zserv.api"),
                "--vty_socket",
                &d,
                "-u",
                "frr",
                "-g",
                "frr",
                "-f",
                &format!("{d}/bgpd.conf"),
            ],
            &frr.dir.join("bgpd.out"),
        );
        let vty = frr.dir.join("bgpd.vty");
        assert!(
            wait_for(Duration::from_secs(10), || vty.exists()),
            "bgpd did not start; see {}",
            frr.dir.join("bgpd.out").display()
        );
        pid
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            // `ip netns exec` execs the daemon, so the child is the daemon.
            let _ = c.kill();
            let _ = c.wait();
        }
        kill_ns_pids(&self.ns);
        // Deleting the namespace deletes its veth end, and so the pair.
        quiet("ip", &["netns", "del", &self.ns]);
        quiet("ip", &["link", "del", &self.veth]);
        if std::env::var_os("WEFT_BGP_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// An FRR instance of a lab.
pub struct Frr {
    pub dir: PathBuf,
    pub bgpd_pid: u32,
}

impl Frr {
    pub fn kill_bgpd(&self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.bgpd_pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }

    pub fn vtysh(&self, cmd: &str) -> String {
        let out = Command::new("vtysh")
            .args(["--vty_socket", self.dir.to_str().unwrap(), "-c", cmd])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn json(&self, cmd: &str) -> serde_json::Value {
        serde_json::from_str(&self.vtysh(cmd)).unwrap_or(serde_json::Value::Null)
    }

    /// VPNv4 prefixes received from a neighbor.
    pub fn vpn_received(&self, neighbor: &str) -> u64 {
        let v = self.json("show bgp ipv4 vpn summary json");
        v["peers"][neighbor]["pfxRcd"].as_u64().unwrap_or(0)
    }

    pub fn neighbor_state(&self, neighbor: &str) -> String {
        let v = self.json(&format!("show bgp neighbors {neighbor} json"));
        v[neighbor]["bgpState"].as_str().unwrap_or("").to_string()
    }
}

pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}
