//! Userspace forwarder I/O: TAP devices with virtio-net offloads, a VXLAN
//! (RFC 7348) tunnel socket with batched UDP I/O (`recvmmsg`/`sendmmsg`, UDP
//! GSO/GRO), software segmentation and coalescing, and a [`Forwarder`]
//! runtime that moves frames between them through a [`PacketProcessor`].
//!
//! Forwarding decisions are not made here: they belong to the processor (the
//! pipeline executor, or the [`StaticBridge`] used for tests and benchmarks).
//! This crate must not grow policy, tables or control-plane logic; it is the
//! edge where packets meet syscalls. `unsafe` is allowed only in [`tap`] and
//! [`udp`] (ioctls, `recvmmsg`/`sendmmsg`, control messages).
//!
//! Module map:
//! - wire formats (pure): [`vxlan`], [`vnet`], [`csum`], `frame`
//! - offload work (pure): [`gso`] segmentation, [`gro`] coalescing, [`decap`]
//! - devices: [`tap`], [`udp`]
//! - runtime: [`processor`] (the seam), [`forwarder`], [`stats`]

pub mod csum;
pub mod decap;
pub mod error;
pub mod forwarder;
mod frame;
pub mod gro;
pub mod gso;
pub mod processor;
pub mod stats;
#[allow(unsafe_code)]
pub mod tap;
#[allow(unsafe_code)]
pub mod udp;
pub mod vnet;
pub mod vxlan;

pub use error::{Error, OffloadError, WireError};
pub use forwarder::{Forwarder, ForwarderConfig, RunningForwarder, TapConfig, Threading};
pub use processor::{
    BridgeLink, Endpoint, Input, OutputSink, PacketProcessor, StaticBridge, VifId,
};
pub use stats::Stats;
pub use tap::{Tap, TapOffloads, TapOptions};
pub use udp::{TunnelOptions, TunnelSocket};
pub use vnet::Offload;
pub use vxlan::Vni;
