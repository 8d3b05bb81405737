//! The Weft host agent (`weft agent`): it dials out to the controller over TLS with the
//! certificate it got at enrolment (`weft host enroll`), receives its view (a snapshot, then
//! deltas, or a reconciliation after a long absence), keeps it in a crash-safe local file
//! and hands its [`Backend`] the whole new view as one transaction, never half of one.
//! Without a controller it keeps forwarding with the last view, rebuilds from the local file
//! at start, and reconnects with exponential backoff and jitter. It reports only its own
//! rows: port status, learned bindings, liveness, counters.
//!
//! The session logic is the sans-IO `weft-southbound`; this crate does the I/O (TLS, files,
//! timers). It knows nothing of what records mean: that is the backend's business.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

pub mod cli;
pub mod enroll;
pub mod forwarding;
pub mod runtime;
pub mod store;
pub mod tls;

pub use enroll::enroll;
pub use runtime::{AgentHandle, AgentOptions, AgentStatus, Report, start};
pub use store::{MemoryViewStore, RedbViewStore, ViewStore};
pub use tls::{DialOptions, Identity};

/// What executes the view: the forwarder, or a test double. It receives the whole view each
/// time and must swap its program in as one transaction.
pub trait Backend: Send {
    /// Replaces the running program with the one `view` describes.
    fn apply(&mut self, view: &BTreeMap<String, Vec<u8>>) -> anyhow::Result<()>;
}

/// A backend that does nothing (used while a real one is being moved).
pub struct NullBackend;

impl Backend for NullBackend {
    fn apply(&mut self, _view: &BTreeMap<String, Vec<u8>>) -> anyhow::Result<()> {
        Ok(())
    }
}

/// A whole view as a backend receives it.
pub type View = BTreeMap<String, Vec<u8>>;

/// An in-memory backend that records every view it is handed, until the forwarder lands.
#[derive(Clone)]
pub struct MemoryBackend {
    views: Arc<Mutex<Vec<View>>>,
    applied: watch::Sender<usize>,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        MemoryBackend {
            views: Arc::default(),
            applied: watch::channel(0).0,
        }
    }
}

impl MemoryBackend {
    /// A backend with no view.
    pub fn new() -> Self {
        Self::default()
    }

    /// The view applied last (empty if none).
    pub fn current(&self) -> BTreeMap<String, Vec<u8>> {
        self.views
            .lock()
            .expect("backend lock")
            .last()
            .cloned()
            .unwrap_or_default()
    }

    /// Every view applied, oldest first.
    pub fn views(&self) -> Vec<BTreeMap<String, Vec<u8>>> {
        self.views.lock().expect("backend lock").clone()
    }

    /// A receiver of the number of views applied.
    pub fn watch_applied(&self) -> watch::Receiver<usize> {
        self.applied.subscribe()
    }
}

impl Backend for MemoryBackend {
    fn apply(&mut self, view: &BTreeMap<String, Vec<u8>>) -> anyhow::Result<()> {
        let n = {
            let mut views = self.views.lock().expect("backend lock");
            views.push(view.clone());
            views.len()
        };
        self.applied.send_replace(n);
        Ok(())
    }
}
