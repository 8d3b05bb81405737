//! Weft's intent model: the resources users describe networks with (the
//! service binding pattern of DESIGN.md), their validation, and [`Intent`],
//! the in-memory database of all objects with the indexes validation and the
//! compiler need.
//!
//! This crate is pure: no sockets, files, clocks or randomness (fresh ids
//! come from an [`IdSource`] the caller provides). It knows nothing of HTTP,
//! the store or the dataplane; the controller turns requests into
//! [`Command`]s, applies them here, and persists the resulting [`Change`]s.

pub mod apply;
pub mod error;
pub mod intent;
pub mod ipam;
pub mod resources;
pub mod types;

pub use apply::{Applied, Change, Command, CountingIds, IdSource, Spec, merge_patch};
pub use error::{ErrorCode, ModelError};
pub use intent::Intent;
pub use resources::*;
pub use types::{AdminValue, Id, Mac, RouteDistinguisher, RouteTarget};
