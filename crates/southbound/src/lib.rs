//! The southbound session logic shared by the controller and the agent, free of I/O.
//!
//! A host's view is a set of [`Record`]s (key, opaque value) at a revision. The controller
//! reads views from a [`ViewSource`] (the compile loop) and runs one [`ControllerSession`]
//! per connected host: a snapshot for a new agent, the deltas after the agent's revision
//! when the source still holds them, otherwise set reconciliation ([`weft_reconcile`]) so
//! that only the difference travels. The agent runs an [`AgentSession`] per connection and
//! a [`Backoff`] between connections. [`writes`] and [`limits`] check what a host may write.
//!
//! Nothing here opens sockets, reads clocks or draws random numbers: time and randomness come
//! in as arguments, messages are the `weft-proto` types, and thin tokio drivers in the
//! controller and the agent do the I/O. This crate knows nothing of what records mean (that
//! is the compiler's and the backends' business), of TLS or of certificates: the host name
//! a session is given is the one its verified certificate carries.

pub mod agent;
pub mod controller;
pub mod join;
pub mod limits;
pub mod memory;
pub mod view;
pub mod writes;

pub use agent::{AgentAction, AgentError, AgentSession, Backoff, SplitMix64};
pub use controller::{Action, ControllerSession, SessionConfig, SessionError};
pub use join::JoinToken;
pub use limits::{Binding, BindingLimits, BindingRefusal, BindingTable, LearnedBinding};
pub use memory::{HostChange, MemoryViewSource};
pub use view::{Commit, LocalView, Record, ViewDelta, ViewSource, record_id};
pub use writes::{HostWrite, PortState, Refusal, validate_host_name};
