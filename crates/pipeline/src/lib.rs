//! Weft's logical pipeline: the IR the compiler emits, packet parsing and building, the pure
//! executor the userspace forwarder and `weft trace` share, connection tracking and traces.
//!
//! This crate is pure: it must not open sockets or files, spawn threads or read clocks. Time is
//! always an argument. Everything here can be tested with static bytes.

pub mod exec;
pub mod ir;
mod mac;
pub mod microflow;
pub mod wire;

pub use mac::{MacAddr, MacParseError};
