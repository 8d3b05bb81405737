//! The southbound wire contract: the protobuf messages and the `Southbound` gRPC service
//! between the controller and its host agents, generated at build time from
//! `proto/southbound.proto` by protox and tonic-prost-build (no `protoc` binary).
//!
//! This crate holds generated types only: no session logic (that is `weft-southbound`), no
//! TLS, no sockets. The `.proto` file is a compatibility contract: fields are added, never
//! renumbered.

#![allow(missing_docs, clippy::all)]

pub mod codec;

/// Version 1 of the southbound protocol (`weft.southbound.v1`).
pub mod v1 {
    tonic::include_proto!("weft.southbound.v1");
}

pub use v1::*;

/// The protocol version an agent states in `Hello`.
pub const PROTOCOL_VERSION: u32 = 1;

/// The TLS server name every controller certificate carries and every agent verifies,
/// whatever address it dialled (addresses change across NAT; the CA is Weft's own).
pub const SERVER_NAME: &str = "weft-controller";

/// The default southbound port.
pub const DEFAULT_PORT: u16 = 9798;
