//! The namespace lab: Weft deployed for real on one machine. An underlay
//! switch namespace with Linux bridges, controllers (`weft up`) in their own
//! namespaces, hosts as namespaces each running `weft agent` with its
//! userspace forwarder, VMs as namespaces holding the TAP their host's
//! forwarder made for their port, and real traffic between them. The
//! end-to-end tests (`crates/weft/tests/e2e.rs`, `failover.rs`) and
//! `weft demo` are built on it.
//!
//! ```text
//!  switch namespace (wl<pid>-sw<n>):  brmg 198.51.100.254/24 (the operator: REST and CLI calls)
//!     brmg ── mc0 ─ controller c0 mgmt0 198.51.100.1  (REST :9797, southbound :9798)
//!          ── mh0 ─ host h0 mgmt0 198.51.100.10 ...
//!     brul ── uh0 ─ host h0 ul0 192.0.2.10 (VXLAN) ...
//!     brst ── sc0 ─ controller c0 st0 203.0.113.1 ;  se0 ─ etcd st0 203.0.113.11-13
//!  host h0: weft agent, TAPs wt<hash> ──moved──► VM namespace as eth0 (MAC, MTU, addresses, routes)
//! ```
//!
//! Everything is configured through the REST API and the `weft` CLI, as an
//! operator would. Child processes are started with a parent-death signal
//! and every namespace is deleted when the [`Lab`] is dropped, also when a
//! test panics; namespaces left by a killed run are removed by the next one.
//! Needs root. The lab must not touch the root namespace's links or anything
//! it did not create.

use std::sync::atomic::{AtomicBool, Ordering};

pub mod daemon;
pub mod etcd;
pub mod lab;
pub mod netns;
pub mod seed;
pub mod traffic;
pub mod vlan;

pub use lab::{Api, Controller, Host, Lab, Vm, VmNet};
pub use netns::Netns;

/// What went wrong in the lab.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// Not running as root.
    #[error("the lab builds network namespaces: run it as root")]
    NotRoot,
    /// A command failed.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line.
        command: String,
        /// Exit status and output.
        detail: String,
    },
    /// A system call or file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// A child process misbehaved.
    #[error("{name} {problem}; its log ends with:\n{tail}")]
    Daemon {
        /// Which one.
        name: String,
        /// What happened.
        problem: String,
        /// The end of its log.
        tail: String,
    },
    /// A REST call failed.
    #[error("API: {0}")]
    Api(String),
    /// A condition was not met in time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        after: std::time::Duration,
    },
    /// A helper thread failed.
    #[error("{0}")]
    Thread(String),
    /// Ctrl-C or SIGTERM arrived ([`cancel`]).
    #[error("interrupted")]
    Cancelled,
}

/// The lab's result.
pub type Result<T, E = LabError> = std::result::Result<T, E>;

static CANCELLED: AtomicBool = AtomicBool::new(false);

/// Makes every wait of the lab fail with [`LabError::Cancelled`] from now on
/// (a signal handler calls it; the caller then drops the lab, which cleans up).
pub fn cancel() {
    CANCELLED.store(true, Ordering::SeqCst);
}

/// Fails if [`cancel`] was called.
pub fn check_cancelled() -> Result<()> {
    if CANCELLED.load(Ordering::SeqCst) {
        Err(LabError::Cancelled)
    } else {
        Ok(())
    }
}

/// Polls `f` every 20 ms until it returns true, for at most `timeout`.
pub fn wait_until(
    what: &str,
    timeout: std::time::Duration,
    mut f: impl FnMut() -> Result<bool>,
) -> Result<std::time::Duration> {
    let start = std::time::Instant::now();
    loop {
        if f()? {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            return Err(LabError::Timeout {
                what: what.to_string(),
                after: timeout,
            });
        }
        check_cancelled()?;
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
