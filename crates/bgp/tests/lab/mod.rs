//! A lab of network namespaces for tests against real BGP daemons.
//!
//! Everything the lab creates (namespaces, veth links, daemon processes,
//! state directories) is removed when it is dropped, also when a test
//! panics. Tests need root and fail loudly without it.

#![allow(dead_code)]

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use weft_bgp::{Speaker, SpeakerConfig, SpeakerHandle};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test builds network namespaces and runs BGP daemons: run it as root"
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

pub struct Lab {
    tag: String,
    namespaces: Vec<String>,
    children: Vec<Child>,
    dirs: Vec<PathBuf>,
    speakers: Vec<(
        tokio::sync::oneshot::Sender<()>,
        std::thread::JoinHandle<()>,
    )>,
}

impl Lab {
    pub fn new() -> Self {
        require_root();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        Self {
            tag: format!("wb{}x{n}", std::process::id()),
            namespaces: Vec::new(),
            children: Vec::new(),
            dirs: Vec::new(),
            speakers: Vec::new(),
        }
    }

    /// Creates a namespace with loopback up; returns its name.
    pub fn ns(&mut self, name: &str) -> String {
        let full = format!("{}{name}", self.tag);
        run("ip", &["netns", "add", &full]);
        self.namespaces.push(full.clone());
        run("ip", &["-n", &full, "link", "set", "lo", "up"]);
        full
    }

    /// Links two namespaces with a veth pair named `ifname` on both ends,
    /// addressing each end (CIDR form).
    pub fn link(&self, a: &str, a_addr: &str, b: &str, b_addr: &str, ifname: &str) {
        run(
            "ip",
            &[
                "link", "add", ifname, "netns", a, "type", "veth", "peer", "name", ifname, "netns",
                b,
            ],
        );
        for (ns, addr) in [(a, a_addr), (b, b_addr)] {
            run("ip", &["-n", ns, "addr", "add", addr, "dev", ifname]);
            run("ip", &["-n", ns, "link", "set", ifname, "up"]);
        }
    }

    pub fn add_addr(&self, ns: &str, addr: &str, ifname: &str) {
        run("ip", &["-n", ns, "addr", "add", addr, "dev", ifname]);
    }

    pub fn dir(&mut self, name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("{}-{name}", self.tag));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        self.dirs.push(d.clone());
        d
    }

    pub fn spawn(&mut self, ns: &str, cmd: &str, args: &[&str], log: &std::path::Path) -> u32 {
        let log = File::create(log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", ns, cmd])
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

    /// Starts a speaker on a runtime whose thread lives in namespace `ns`.
    pub fn speaker(&mut self, ns: &str, cfg: SpeakerConfig) -> SpeakerHandle {
        let path = format!("/var/run/netns/{ns}");
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let t = std::thread::spawn(move || {
            let f = File::open(&path).unwrap();
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let h = Speaker::start(cfg).unwrap();
                tx.send(h.clone()).unwrap();
                let _ = stop_rx.await;
                h.shutdown().await;
            });
        });
        let h = rx.recv().unwrap();
        self.speakers.push((stop_tx, t));
        h
    }

    /// Runs `f` on a thread inside namespace `ns`.
    pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/var/run/netns/{ns}");
        std::thread::spawn(move || {
            let file = File::open(&path).unwrap();
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (stop, t) in self.speakers.drain(..) {
            let _ = stop.send(());
            let _ = t.join();
        }
        for c in &mut self.children {
            // `ip netns exec` execs the daemon, so the child is the daemon.
            let _ = c.kill();
            let _ = c.wait();
        }
        for ns in &self.namespaces {
            // Daemons that forked away from their child are found by netns.
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
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        if std::env::var_os("WEFT_BGP_KEEP_LOGS").is_none() {
            for d in &self.dirs {
                let _ = std::fs::remove_dir_all(d);
            }
        }
    }
}

/// An FRR instance (zebra + bgpd) in a namespace, with private sockets.
pub struct Frr {
    pub dir: PathBuf,
    pub ns: String,
    pub bgpd_pid: u32,
}

impl Frr {
    pub fn start(lab: &mut Lab, ns: &str, name: &str, config: &str) -> Frr {
        let dir = lab.dir(name);
        std::fs::write(dir.join("bgpd.conf"), config).unwrap();
        run("chown", &["-R", "frr:frr", dir.to_str().unwrap()]);
        let d = dir.to_str().unwrap().to_string();
        let zserv = format!("{d}/zserv.api");
        lab.spawn(
            ns,
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
        wait_for(Duration::from_secs(10), || {
            std::path::Path::new(&zserv).exists()
        });
        let mut frr = Frr {
            dir: dir.clone(),
            ns: ns.to_string(),
            bgpd_pid: 0,
        };
        frr.bgpd_pid = frr.start_bgpd(lab);
        frr
    }

    pub fn start_bgpd(&self, lab: &mut Lab) -> u32 {
        let d = self.dir.to_str().unwrap().to_string();
        let _ = std::fs::remove_file(self.dir.join("bgpd.vty"));
        let pid = lab.spawn(
            &self.ns,
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
            &self.dir.join("bgpd.out"),
        );
        let vty = self.dir.join("bgpd.vty");
        wait_for(Duration::from_secs(10), || vty.exists());
        pid
    }

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

    /// Total VPNv4 prefixes received from a neighbor.
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

/// gobgpd in a namespace, driven by the `gobgp` CLI inside the namespace.
pub struct GoBgp {
    pub ns: String,
}

impl GoBgp {
    pub fn start(lab: &mut Lab, ns: &str, name: &str, config: &str) -> GoBgp {
        let dir = lab.dir(name);
        let conf = dir.join("gobgpd.toml");
        std::fs::write(&conf, config).unwrap();
        lab.spawn(
            ns,
            "gobgpd",
            &["-f", conf.to_str().unwrap(), "-p", "--pprof-disable"],
            &dir.join("gobgpd.out"),
        );
        let g = GoBgp { ns: ns.to_string() };
        assert!(
            wait_for(Duration::from_secs(10), || g
                .cli(&["global"])
                .contains("AS")),
            "gobgpd did not start"
        );
        g
    }

    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "gobgp"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["-j"];
        a.extend_from_slice(args);
        serde_json::from_str(&self.cli(&a)).unwrap_or(serde_json::Value::Null)
    }
}
