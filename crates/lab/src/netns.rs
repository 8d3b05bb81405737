//! Network namespaces the lab creates, named `wl<pid>-<role><n>` so that two
//! runs never collide and leftovers of a killed run can be recognised (their
//! pid is gone) and removed. The plumbing follows `weft-dataplane`'s
//! namespace tests (`crates/dataplane/tests/common`): `ip` for links, a
//! thread that entered the namespace for sockets and TAPs.

use std::fs::File;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sched::{CloneFlags, setns};

use crate::{LabError, Result};

/// Prefix of every namespace the lab creates.
pub const PREFIX: &str = "wl";

/// Runs a command and returns its stdout; a failure carries the command and its output.
pub fn sh(args: &[&str]) -> Result<String> {
    let out = run(args)?;
    if !out.status.success() {
        return Err(LabError::Command {
            command: args.join(" "),
            detail: format!(
                "{}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command and returns its output whatever its exit status.
pub fn run(args: &[&str]) -> Result<Output> {
    Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| LabError::Command {
            command: args.join(" "),
            detail: format!("cannot start it: {e}"),
        })
}

/// Fails unless the process runs as root (namespaces need CAP_SYS_ADMIN).
pub fn require_root() -> Result<()> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(LabError::NotRoot)
    }
}

/// A network namespace created by the lab, deleted when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

impl Netns {
    /// A new namespace `wl<pid>-<role><n>` with loopback up and IPv6 off (no
    /// neighbour discovery chatter in the measurements).
    pub fn new(role: &str) -> Result<Netns> {
        let name = format!(
            "{PREFIX}{}-{role}{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        sh(&["ip", "netns", "add", &name])?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")?;
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")?;
        Ok(ns)
    }

    /// Its name (for `ip netns exec` and `ip link set ... netns`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME ARGS...`
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut v = vec!["ip", "-n", &self.name];
        v.extend_from_slice(args);
        sh(&v)
    }

    /// `ip netns exec NAME ARGS...`
    pub fn exec(&self, args: &[&str]) -> Result<String> {
        sh(&self.exec_args(args))
    }

    /// `ip netns exec NAME ARGS...`, returning the output whatever the exit status.
    pub fn exec_output(&self, args: &[&str]) -> Result<Output> {
        run(&self.exec_args(args))
    }

    fn exec_args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec!["ip", "netns", "exec", &self.name];
        v.extend_from_slice(args);
        v
    }

    /// Sets a sysctl inside the namespace (written through `/proc/sys` by a
    /// thread that entered it, without starting a process).
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let value = value.to_string();
        self.run(move || std::fs::write(&path, value))?
            .map_err(|e| LabError::Io {
                what: format!("setting {key} in {}", self.name),
                source: e,
            })
    }

    /// Runs `f` on a new thread that entered this namespace (sockets and TAPs it
    /// opens belong to the namespace) and returns its result.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let path = self.path();
        std::thread::scope(|s| {
            s.spawn(|| {
                enter(&path)?;
                Ok(f())
            })
            .join()
            .map_err(|_| LabError::Thread(format!("a thread in {} panicked", self.name)))?
        })
    }

    /// Spawns a thread inside this namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<Result<T>> {
        let path = self.path();
        std::thread::spawn(move || {
            enter(&path)?;
            Ok(f())
        })
    }

    /// The namespace's file, for `setns`.
    pub fn path(&self) -> String {
        format!("/var/run/netns/{}", self.name)
    }
}

/// Moves the calling thread into the namespace at `path`.
pub fn enter(path: &str) -> Result<()> {
    let fd = File::open(path).map_err(|e| LabError::Io {
        what: format!("opening {path}"),
        source: e,
    })?;
    setns(&fd, CloneFlags::CLONE_NEWNET).map_err(|e| LabError::Io {
        what: format!("entering {path}"),
        source: e.into(),
    })
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace removes its links (and their veth peers) too.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Removes namespaces left by lab runs whose process is gone (killed before
/// their destructors ran). Returns the names removed.
pub fn remove_stale() -> Vec<String> {
    let Ok(list) = sh(&["ip", "netns", "list"]) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        let Some(pid) = owner_pid(name) else { continue };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).output();
            removed.push(name.to_string());
        }
    }
    removed
}

/// The pid in a lab namespace name `wl<pid>-...`.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, _) = rest.split_once('-')?;
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_names_carry_their_pid() {
        assert_eq!(owner_pid("wl1234-h0"), Some(1234));
        assert_eq!(owner_pid("wl-h0"), None);
        assert_eq!(owner_pid("whA"), None);
        assert_eq!(owner_pid("wlx-1"), None);
    }
}
