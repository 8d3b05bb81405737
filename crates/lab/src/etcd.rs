//! Real etcd members for the lab's store network: one namespace, one
//! address per member (203.0.113.11, .12, ...), client port 2379 and peer
//! port 2380 on each, so controllers in their own namespaces reach them over
//! a link the test can cut. (`weft_etcd::testing::EtcdCluster` binds the
//! loopback of the caller's namespace, which other namespaces cannot reach.)
//!
//! The binary is `$WEFT_ETCD_BIN`, else `etcd` on `PATH` (Debian's `etcd-server`).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::daemon::Daemon;
use crate::netns::Netns;
use crate::{LabError, Result};

/// The client port of every member.
pub const CLIENT_PORT: u16 = 2379;

/// etcd members in one namespace.
pub struct Etcd {
    // Members die before their namespace goes.
    members: Vec<Daemon>,
    ips: Vec<Ipv4Addr>,
    /// The namespace (its `st0` link is on the store bridge).
    pub ns: Netns,
}

impl Etcd {
    /// Starts `size` members in a new namespace attached to `bridge` of
    /// `switch`, data and logs under `dir`, and waits until all are healthy.
    pub fn start(switch: &Netns, bridge: &str, dir: &Path, size: usize) -> Result<Etcd> {
        let ns = Netns::new("etcd")?;
        crate::lab::veth(switch, bridge, "se0", &ns, "st0")?;
        let ips: Vec<Ipv4Addr> = (0..size)
            .map(|i| Ipv4Addr::new(203, 0, 113, 11 + i as u8))
            .collect();
        for ip in &ips {
            ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "st0"])?;
        }
        let binary = std::env::var("WEFT_ETCD_BIN").unwrap_or_else(|_| "etcd".into());
        let cluster = ips
            .iter()
            .enumerate()
            .map(|(i, ip)| format!("m{i}=http://{ip}:2380"))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("weft-lab-{}-{}", std::process::id(), ns.name());
        let mut members = Vec::new();
        for (i, ip) in ips.iter().enumerate() {
            let client = format!("http://{ip}:{CLIENT_PORT}");
            let peer = format!("http://{ip}:2380");
            let data = dir.join(format!("etcd-m{i}"));
            let argv = [
                binary.as_str(),
                "--name",
                &format!("m{i}"),
                "--data-dir",
                &data.display().to_string(),
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
                "--initial-cluster",
                &cluster,
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                &token,
                "--logger",
                "zap",
            ]
            .map(str::to_owned)
            .to_vec();
            members.push(Daemon::start(
                format!("etcd m{i}"),
                &ns,
                argv,
                Vec::new(),
                dir.join(format!("etcd-m{i}.log")),
            )?);
        }
        let etcd = Etcd { members, ips, ns };
        for i in 0..size {
            etcd.wait_healthy(i, Duration::from_secs(30))?;
        }
        Ok(etcd)
    }

    /// `etcd://ip:2379,...` for `weft up --store`.
    pub fn store_url(&self) -> String {
        let hosts: Vec<String> = self
            .ips
            .iter()
            .map(|ip| format!("{ip}:{CLIENT_PORT}"))
            .collect();
        format!("etcd://{}", hosts.join(","))
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Kills member `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        self.members[i].kill();
    }

    /// Starts member `i` again on its data and waits until it is healthy.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.members[i].restart()?;
        self.wait_healthy(i, Duration::from_secs(30))
    }

    /// Whether member `i` answers `/health` with a leader.
    pub fn is_healthy(&self, i: usize) -> bool {
        let addr = SocketAddr::from((self.ips[i], CLIENT_PORT));
        self.ns
            .run(move || health(addr).unwrap_or(false))
            .unwrap_or(false)
    }

    fn wait_healthy(&self, i: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while !self.is_healthy(i) {
            if Instant::now() > deadline {
                return Err(LabError::Daemon {
                    name: self.members[i].name().to_string(),
                    problem: format!("not healthy within {timeout:?}"),
                    tail: self.members[i].log_tail(20),
                });
            }
            crate::check_cancelled()?;
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }
}

/// `GET /health`, answered `{"health":"true"...}` by a member with a leader.
fn health(addr: SocketAddr) -> std::io::Result<bool> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(b"GET /health HTTP/1.1\r\nHost: etcd\r\nConnection: close\r\n\r\n")?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    Ok(answer.starts_with("HTTP/1.1 200") && answer.contains(r#""health":"true""#))
}
