//! Userspace forwarder: TAP devices with virtio-net offloads, a VXLAN
//! (RFC 7348) tunnel socket with batched UDP I/O (`recvmmsg`/`sendmmsg`, UDP
//! GSO/GRO), software segmentation and coalescing, and a [`Forwarder`]
//! runtime that moves frames between them through a [`PacketProcessor`].
//!
//! Forwarding decisions are made by the processor: [`PipelineProcessor`] runs
//! the host's logical pipeline (`weft-pipeline`'s executor behind a flow
//! cache, shared conntrack, local services from `weft-services`), and
//! [`StaticBridge`] is a fixed bridge for tests and benchmarks.
//! [`HostForwarder`] is what an agent drives: it applies host views (TAPs
//! follow the program's vifs, programs swap atomically). This crate must not
//! grow policy of its own: every forwarding rule comes from the program; it
//! is the edge where packets meet syscalls. `unsafe` is allowed only in
//! [`tap`] and [`udp`] (ioctls, `recvmmsg`/`sendmmsg`, control messages).
//!
//! Module map:
//! - wire formats (pure): [`vxlan`], [`vnet`], [`csum`], `frame`
//! - offload work (pure): [`gso`] segmentation, [`gro`] coalescing, [`decap`]
//! - devices: [`tap`], [`udp`]
//! - runtime: [`processor`] (the seam), [`forwarder`] (workers, control path
//!   for TAPs), [`stats`]
//! - pipeline: [`pipeline`] (the processor, flow cache, program state),
//!   [`host`] (host forwarder, TAP naming, views, timers)

pub mod csum;
pub mod decap;
pub mod error;
pub mod forwarder;
mod frame;
pub mod gro;
pub mod gso;
pub mod host;
pub mod pipeline;
pub mod processor;
pub mod stats;
#[allow(unsafe_code)]
pub mod tap;
#[allow(unsafe_code)]
pub mod udp;
pub mod vnet;
pub mod vxlan;

pub use error::{Error, OffloadError, WireError};
pub use forwarder::{
    Forwarder, ForwarderConfig, ForwarderHandle, RunningForwarder, TapConfig, Threading,
};
pub use host::{HostConfig, HostForwarder, HostMonitor, HostStats, TapInfo, tap_name};
pub use pipeline::{
    PipelineConfig, PipelineProcessor, PipelineShared, PipelineStats, ProgramState,
};
pub use processor::{
    BridgeLink, Endpoint, Input, OutputSink, PacketProcessor, StaticBridge, VifId,
};
pub use stats::Stats;
pub use tap::{Tap, TapOffloads, TapOptions};
pub use udp::{TunnelOptions, TunnelSocket};
pub use vnet::Offload;
pub use vxlan::Vni;
