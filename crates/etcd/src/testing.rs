//! Real etcd processes for tests, in this crate and in others (controller failure
//! tests): one member or a cluster on loopback ports chosen here, each with a data
//! directory under one temporary directory. Dropping the [`EtcdCluster`] kills every
//! member and removes the directory, also when a test panics.
//!
//! The binary is `$WEFT_ETCD_BIN`, else `etcd` on `PATH` (Debian's `etcd-server`, 3.4).
//! Members are started through `setpriv --pdeathsig KILL`, so that they die with the
//! thread that started them even when the test process is killed and no destructor
//! runs: start members from a thread that outlives them (the test's own thread, or a
//! runtime worker), not from `spawn_blocking`.
//!
//! Everything here blocks the calling thread (process start, health polling); in an
//! async test that is a second or two on one worker, which is fine.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long members get to elect a leader and answer `/health`.
const HEALTHY_WITHIN: Duration = Duration::from_secs(30);

/// Why a test etcd could not be started or driven.
#[derive(thiserror::Error)]
pub enum TestEtcdError {
    /// The etcd binary is missing.
    #[error(
        "etcd binary {0:?} not found: install Debian's etcd-server (apt-get install -y etcd-server) or set WEFT_ETCD_BIN"
    )]
    NotFound(String),
    /// A process could not be started or signalled.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A member exited or did not become healthy in time.
    #[error("etcd member {member} {problem}; last lines of {log}:\n{tail}")]
    Unhealthy {
        /// The member's name.
        member: String,
        /// What went wrong.
        problem: String,
        /// The member's log file.
        log: String,
        /// The end of that log.
        tail: String,
    },
}

// Tests `expect()` these, which prints `Debug`: make that the full message.
impl std::fmt::Debug for TestEtcdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TestEtcdError {
    let what = what.into();
    move |source| TestEtcdError::Io { what, source }
}

/// The etcd binary to run.
pub fn etcd_binary() -> Result<PathBuf, TestEtcdError> {
    let name = std::env::var_os("WEFT_ETCD_BIN").unwrap_or_else(|| "etcd".into());
    let path = PathBuf::from(&name);
    if path.components().count() > 1 {
        return if path.is_file() {
            Ok(path)
        } else {
            Err(TestEtcdError::NotFound(path.display().to_string()))
        };
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(&name))
        .find(|p| p.is_file())
        .ok_or_else(|| TestEtcdError::NotFound(path.display().to_string()))
}

/// One etcd member process.
#[derive(Debug)]
pub struct EtcdMember {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    args: Vec<String>,
    binary: PathBuf,
    child: Option<Child>,
}

impl EtcdMember {
    /// The member's name in the cluster.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Its client endpoint, `http://127.0.0.1:port`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }
    /// Its client port.
    pub fn client_port(&self) -> u16 {
        self.client_port
    }
    /// Its peer (raft) port.
    pub fn peer_port(&self) -> u16 {
        self.peer_port
    }
    /// Its data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
    /// Its log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }
    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    fn spawn(&mut self) -> Result<(), TestEtcdError> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io(format!("opening {}", self.log.display())))?;
        let log2 = log.try_clone().map_err(io("duplicating the log file"))?;
        let mut command = if Path::new("/usr/bin/setpriv").is_file() {
            let mut c = Command::new("/usr/bin/setpriv");
            c.args(["--pdeathsig", "KILL", "--"]).arg(&self.binary);
            c
        } else {
            Command::new(&self.binary)
        };
        let child = command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(io(format!("starting {}", self.binary.display())))?;
        self.child = Some(child);
        Ok(())
    }

    /// Kills the member at once (SIGKILL) and reaps it; its data stays for
    /// [`restart`](Self::restart).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed member again on the same ports and data, and waits until it is
    /// healthy (which needs a quorum of the cluster up).
    pub fn restart(&mut self) -> Result<(), TestEtcdError> {
        self.kill();
        self.spawn()?;
        self.wait_healthy(Instant::now() + HEALTHY_WITHIN)
    }

    /// Freezes the process (SIGSTOP): it keeps its sockets but answers nothing.
    pub fn pause(&self) -> Result<(), TestEtcdError> {
        self.signal("STOP")
    }

    /// Thaws a paused process (SIGCONT).
    pub fn resume(&self) -> Result<(), TestEtcdError> {
        self.signal("CONT")
    }

    fn signal(&self, signal: &str) -> Result<(), TestEtcdError> {
        let pid = self.pid().ok_or_else(|| TestEtcdError::Io {
            what: format!("signalling member {}", self.name),
            source: std::io::Error::other("it is not running"),
        })?;
        let status = Command::new("kill")
            .args(["-s", signal, &pid.to_string()])
            .status()
            .map_err(io("running kill"))?;
        if status.success() {
            Ok(())
        } else {
            Err(TestEtcdError::Io {
                what: format!("kill -s {signal} {pid}"),
                source: std::io::Error::other(format!("exited with {status}")),
            })
        }
    }

    fn unhealthy(&self, problem: String) -> TestEtcdError {
        let mut text = String::new();
        let _ = File::open(&self.log).and_then(|mut f| f.read_to_string(&mut text));
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        TestEtcdError::Unhealthy {
            member: self.name.clone(),
            problem,
            log: self.log.display().to_string(),
            tail,
        }
    }

    /// Whether the member says it is healthy (it has a leader and serves reads).
    pub fn is_healthy(&self) -> bool {
        health(self.client_port).unwrap_or(false)
    }

    fn wait_healthy(&mut self, deadline: Instant) -> Result<(), TestEtcdError> {
        loop {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(self.unhealthy(format!("exited during start-up with {status}")));
            }
            if self.is_healthy() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.unhealthy(format!(
                    "was not healthy within {HEALTHY_WITHIN:?} on port {}",
                    self.client_port
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for EtcdMember {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `GET /health` on a client port, answered `{"health":"true"...}` by a member that has
/// a leader.
fn health(port: u16) -> std::io::Result<bool> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    stream.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer.starts_with("HTTP/1.1 200") && answer.contains(r#""health":"true""#))
}

/// Loopback ports free right now (bound together, then released for etcd to take).
fn free_ports(n: usize) -> Result<Vec<u16>, TestEtcdError> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io("binding a loopback port"))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io("reading a bound port"))
}

/// A set of etcd members forming one cluster, with their directory.
#[derive(Debug)]
pub struct EtcdCluster {
    // Field order matters: members are killed before their directory is removed.
    members: Vec<EtcdMember>,
    dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts a single-member etcd.
    pub fn single() -> Result<Self, TestEtcdError> {
        Self::start(1)
    }

    /// Starts an etcd cluster of `size` members on fresh loopback ports and waits until
    /// every member is healthy. Retries with other ports if one was taken meanwhile.
    pub fn start(size: usize) -> Result<Self, TestEtcdError> {
        assert!(size > 0, "an etcd cluster needs at least one member");
        let binary = etcd_binary()?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::try_start(&binary, size) {
                Err(TestEtcdError::Unhealthy { tail, .. })
                    if attempt < 3 && tail.contains("address already in use") =>
                {
                    continue;
                }
                other => return other,
            }
        }
    }

    fn try_start(binary: &Path, size: usize) -> Result<Self, TestEtcdError> {
        let dir = tempfile::Builder::new()
            .prefix("weft-etcd-")
            .tempdir()
            .map_err(io("creating a temporary directory"))?;
        let ports = free_ports(2 * size)?;
        let names: Vec<String> = (0..size).map(|i| format!("m{i}")).collect();
        let initial_cluster = names
            .iter()
            .enumerate()
            .map(|(i, name)| format!("{name}=http://127.0.0.1:{}", ports[2 * i + 1]))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("weft-test-{}-{}", std::process::id(), ports[0]);
        let mut members = Vec::with_capacity(size);
        for (i, name) in names.iter().enumerate() {
            let (client_port, peer_port) = (ports[2 * i], ports[2 * i + 1]);
            let data_dir = dir.path().join(format!("{name}.etcd"));
            let log = dir.path().join(format!("{name}.log"));
            let client = format!("http://127.0.0.1:{client_port}");
            let peer = format!("http://127.0.0.1:{peer_port}");
            let args = [
                "--name",
                name,
                "--data-dir",
                &data_dir.display().to_string(),
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
                "--initial-cluster",
                &initial_cluster,
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                &token,
                "--logger",
                "zap",
                "--log-outputs",
                &log.display().to_string(),
            ]
            .map(str::to_owned)
            .to_vec();
            let mut member = EtcdMember {
                name: name.clone(),
                client_port,
                peer_port,
                data_dir,
                log,
                args,
                binary: binary.to_owned(),
                child: None,
            };
            member.spawn()?;
            members.push(member);
        }
        let deadline = Instant::now() + HEALTHY_WITHIN;
        for member in &mut members {
            member.wait_healthy(deadline)?;
        }
        Ok(Self { members, dir })
    }

    /// Every member's client endpoint, in member order.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(EtcdMember::endpoint).collect()
    }

    /// The store URL for `weft up --store` naming every member.
    pub fn store_url(&self) -> String {
        let hosts: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect();
        format!("etcd://{}", hosts.join(","))
    }

    /// The members.
    pub fn members(&self) -> &[EtcdMember] {
        &self.members
    }

    /// One member, to kill, pause or restart.
    pub fn member(&mut self, index: usize) -> &mut EtcdMember {
        &mut self.members[index]
    }

    /// The directory holding every member's data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}
