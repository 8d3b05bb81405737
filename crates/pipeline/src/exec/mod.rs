//! The pure executor: runs a [`Loaded`] program on one packet.
//!
//! ```text
//!  Program ──Loaded::load──► Loaded (ids, classifiers)
//!                               │
//!  frame + Ingress + now ──► execute(&Loaded, &mut Conntrack, ..) ──► Outcome
//!                               │   outputs (target + bytes), generated replies,
//!                               │   service hand-offs, logs, drop reason,
//!                               │   Decision (if cacheable), Trace (if asked)
//!                               ▼
//!  later frames with the same FlowKey ──► apply(&Loaded, &Decision, ..) ──► emit(target, bytes)
//! ```
//!
//! [`execute`] walks the tables; [`apply`] replays a cached [`Decision`] without walking them.
//! Both share the same packet-editing code, and a proptest checks they produce the same bytes.
//!
//! # Flow cache contract
//!
//! A decision may be reused for a later frame when (1) it arrived at the same [`Ingress`],
//! (2) its [`crate::wire::FlowKey`] is equal, and (3) `apply` accepts it: `apply` itself
//! checks the program generation, the frame length (when the pipeline tested `l3.len`) and that
//! every conntrack lookup would give the state recorded at execute time; on any difference it
//! returns [`Stale`] without touching the frame or conntrack, and the caller runs `execute`.
//! Decisions are not produced for packets that generate replies, go to local services, or loop.

mod conntrack;
mod decision;
mod hash;
mod load;
mod run;
mod trace;

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::sync::Arc;

pub use conntrack::{ConnInfo, Conntrack, ConntrackConfig, ConntrackStats, CtTuple, TcpState};
pub use decision::{Decision, Frame, Stale, apply};
/// A fast, deterministic hasher for flow-cache maps keyed by `(Ingress, FlowKey)` (FxHash;
/// not DoS-resistant, so bound the cache's size).
pub use hash::FxBuild as FxBuildHasher;
pub use load::{
    DpId, FlowRef, LoadError, LoadWarning, Loaded, MAX_TABLE_VISITS, PortId, TableRef, VifId,
};
pub use run::execute;
pub use trace::{Delivery, Trace, TraceStep, TracedFlow, Verdict, Via};

use crate::ir::{IcmpErrorKind, Service};
use crate::wire::ParseError;

/// Where a frame entered this host's pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ingress {
    /// From a local vNIC; the frame's leading VLAN tags select the logical port.
    Vif(VifId),
    /// Directly at a logical port, tags already removed (used by `weft trace`).
    Port(PortId),
    /// From a VXLAN tunnel: the VNI and the sending host's tunnel address.
    Tunnel {
        /// VNI from the VXLAN header.
        vni: u32,
        /// Outer source address (replies go back there).
        remote: IpAddr,
    },
}

/// Per-call options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecOptions {
    /// Record a step-by-step [`Trace`].
    pub trace: bool,
    /// Pretend every `ct_lookup` returns this `ct_state` and skip commits (for `weft trace`
    /// with `ct.est` and friends). Results are not cacheable.
    pub ct_override: Option<u8>,
}

/// Where a packet leaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// A local vNIC. The bytes already carry the port's VLAN tags.
    Vif {
        /// The vNIC.
        vif: VifId,
        /// The logical port it was sent to.
        port: Option<PortId>,
    },
    /// A VXLAN tunnel; the forwarder adds the outer headers.
    Tunnel {
        /// Remote tunnel endpoint.
        remote: IpAddr,
        /// VNI for the VXLAN header.
        vni: u32,
        /// The logical port it was sent to, if any.
        port: Option<PortId>,
    },
}

/// A copy of the packet sent somewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// Where.
    pub target: Target,
    /// The frame as sent (inner frame for tunnels).
    pub bytes: Vec<u8>,
}

/// What kind of packet the pipeline generated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeneratedKind {
    /// ARP reply.
    ArpReply,
    /// Neighbour advertisement.
    NdAdvert,
    /// ICMP/ICMPv6 error from an `icmp_error` action.
    IcmpError(IcmpErrorKind),
    /// ICMP/ICMPv6 echo reply.
    EchoReply,
    /// TCP RST from `reject`.
    TcpRst,
    /// ICMP/ICMPv6 unreachable from `reject`.
    RejectUnreachable,
}

/// A packet the pipeline generated, sent back where the original came in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generated {
    /// What it is.
    pub kind: GeneratedKind,
    /// Where it goes (the original's ingress).
    pub target: Target,
    /// The frame.
    pub bytes: Vec<u8>,
    /// The flow whose action generated it.
    pub flow: FlowRef,
}

/// A packet handed to a local service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handoff {
    /// Which service.
    pub service: Service,
    /// The compiler's context key for the service's configuration.
    pub context: Arc<str>,
    /// Where the packet came in (answers go back there).
    pub ingress: Ingress,
    /// Where the service's answers go (the original's ingress).
    pub reply_to: Option<Target>,
    /// The logical inport at the time of the hand-off.
    pub in_port: Option<PortId>,
    /// The frame at the time of the hand-off (port tags removed).
    pub bytes: Vec<u8>,
    /// The flow whose action handed it off.
    pub flow: FlowRef,
}

/// A `log` action fired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// The rule id from the action.
    pub rule: Arc<str>,
    /// The flow whose action logged.
    pub flow: FlowRef,
}

/// Why the original packet went nowhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The frame could not be parsed.
    Malformed(ParseError),
    /// The vif id is not in the program.
    UnknownVif,
    /// No port of the vif has a tag stack that prefixes the frame's tags.
    NoPortForTags {
        /// The vif.
        vif: VifId,
        /// The frame's tags, outermost first.
        vlans: Vec<u16>,
    },
    /// The port id is not in the program.
    UnknownPort,
    /// No tunnel entry for the VNI.
    UnknownVni(u32),
    /// No flow matched in a table (the default drop).
    NoFlowMatched(TableRef),
    /// A `drop` action or an empty action list.
    Dropped(FlowRef),
    /// The flow's actions ended without sending the packet anywhere.
    EndOfActions(FlowRef),
    /// `ip.ttl--` on a TTL of 0 or 1.
    TtlExpired(FlowRef),
    /// `next` in a datapath's last table (from an ECMP member).
    NextFromLastTable(FlowRef),
    /// `push_vlan` on a frame that already has two tags.
    VlanOverflow(FlowRef),
    /// More than [`MAX_TABLE_VISITS`] table visits.
    LoopLimit(TableRef),
}

/// Everything that happened to one packet.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    /// Copies sent to ports and tunnels.
    pub outputs: Vec<Output>,
    /// Replies and errors generated.
    pub generated: Vec<Generated>,
    /// Hand-offs to local services.
    pub handoffs: Vec<Handoff>,
    /// Log records.
    pub logs: Vec<LogRecord>,
    /// Set when the packet was not sent anywhere (it may still have been answered).
    pub drop: Option<DropReason>,
    /// The cacheable decision, when there is one.
    pub decision: Option<Decision>,
    /// Why there is no decision.
    pub uncacheable: Option<&'static str>,
    /// The trace, when asked for.
    pub trace: Option<Trace>,
}
