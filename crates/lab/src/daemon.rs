//! Long-running child processes inside a namespace (controllers, agents, etcd
//! members): started through `ip netns exec NS setpriv --pdeathsig KILL --`,
//! so they die with the thread that started them even when the lab's process
//! is killed and no destructor runs; stdout and stderr go to a log file;
//! killed when dropped.
//!
//! Start daemons from a thread that outlives them (a test's own thread, the
//! main thread of `weft demo`): the kernel sends the death signal when the
//! *thread* that forked the child exits.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::netns::Netns;
use crate::{LabError, Result};

/// A child process in a namespace, with its log.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    netns: String,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    /// Log length when the current process started: readiness is looked for after it.
    log_start: u64,
    child: Option<Child>,
}

impl Daemon {
    /// Starts `argv` in `netns`, logging to `log`.
    pub fn start(
        name: impl Into<String>,
        netns: &Netns,
        argv: Vec<String>,
        env: Vec<(String, String)>,
        log: PathBuf,
    ) -> Result<Daemon> {
        let mut d = Daemon {
            name: name.into(),
            netns: netns.name().to_string(),
            argv,
            env,
            log,
            log_start: 0,
            child: None,
        };
        d.spawn()?;
        Ok(d)
    }

    fn spawn(&mut self) -> Result<()> {
        let io = |what: String| move |e| LabError::Io { what, source: e };
        let out = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io(format!("opening {}", self.log.display())))?;
        self.log_start = out.metadata().map(|m| m.len()).unwrap_or(0);
        let err = out
            .try_clone()
            .map_err(io("duplicating a log file".into()))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns]);
        if Path::new("/usr/bin/setpriv").is_file() {
            cmd.args(["/usr/bin/setpriv", "--pdeathsig", "KILL", "--"]);
        }
        // Its own process group: a Ctrl-C in the terminal reaches the lab's
        // owner, which stops its daemons in order, not every daemon at once.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd.args(&self.argv)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let child = cmd
            .spawn()
            .map_err(io(format!("starting {}: {:?}", self.name, self.argv)))?;
        self.child = Some(child);
        Ok(())
    }

    /// Its name in messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Its pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it still runs.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Waits until the log of the current process contains `needle`; fails
    /// early when the process exits, and at `timeout`.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.log_since_start();
            if text.contains(needle) {
                return Ok(text);
            }
            if !self.is_running() {
                return Err(LabError::Daemon {
                    name: self.name.clone(),
                    problem: format!("exited before logging {needle:?}"),
                    tail: self.log_tail(30),
                });
            }
            if Instant::now() > deadline {
                return Err(LabError::Daemon {
                    name: self.name.clone(),
                    problem: format!("did not log {needle:?} within {timeout:?}"),
                    tail: self.log_tail(30),
                });
            }
            crate::check_cancelled()?;
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the current process logged so far.
    pub fn log_since_start(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        let start = (self.log_start as usize).min(text.len());
        text.get(start..).unwrap_or_default().to_string()
    }

    /// The last `n` lines of the log (all runs).
    pub fn log_tail(&self, n: usize) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Kills it at once (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Asks it to stop (SIGTERM), waits up to `grace`, then kills it.
    pub fn stop(&mut self, grace: Duration) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
    }

    /// Sends SIGTERM without waiting (see [`wait_exit`](Self::wait_exit)).
    pub fn terminate(&self) {
        if let Some(c) = &self.child {
            let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
        }
    }

    /// Waits up to `timeout` for the process to exit and reaps it; returns
    /// how long it took, or `None` (still running) at the timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<Duration> {
        let start = Instant::now();
        loop {
            match &mut self.child {
                None => return Some(start.elapsed()),
                Some(c) => {
                    if let Ok(Some(_)) = c.try_wait() {
                        self.child = None;
                        return Some(start.elapsed());
                    }
                }
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts it again with the same arguments (after [`kill`](Self::kill) or
    /// [`stop`](Self::stop); kills a running one first).
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}
