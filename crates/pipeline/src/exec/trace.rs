//! Traces (what each table did to a packet) and verdicts (what became of it), with
//! human-readable renderings for `weft trace`.

use std::fmt::{self, Display, Formatter};
use std::net::IpAddr;

use super::load::Loaded;
use super::{DropReason, GeneratedKind, Outcome, Target};
use crate::ir::{Actions, IcmpErrorKind, Origin, PortLocation, Service};

/// A step-by-step account of one packet's walk through the pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    /// The steps, in order.
    pub steps: Vec<TraceStep>,
    /// The final verdict.
    pub verdict: Verdict,
}

/// One step of a [`Trace`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceStep {
    /// Where the packet entered and which logical port that is.
    Ingress(String),
    /// A table lookup and the flow that matched, if any.
    Table {
        /// Datapath name.
        datapath: String,
        /// Table name.
        table: String,
        /// Table index.
        index: u32,
        /// The matching flow; `None` is the default drop.
        matched: Option<TracedFlow>,
    },
    /// One action and what it did.
    Action {
        /// The action in display syntax.
        action: String,
        /// Its effect, when there is more to say than the action itself.
        effect: Option<String>,
    },
    /// Anything else worth saying.
    Note(String),
}

/// The flow a table lookup found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TracedFlow {
    /// Index in the IR table's flows.
    pub index: u32,
    /// Priority.
    pub priority: u16,
    /// Match in display syntax.
    pub r#match: String,
    /// Actions in display syntax.
    pub actions: String,
    /// Where the flow came from.
    pub origin: Origin,
}

/// Where one copy of the packet went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The logical port, when the output named one.
    pub port: Option<String>,
    /// How it left the host.
    pub via: Via,
}

/// How a copy left the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Via {
    /// A local vNIC, with the tags pushed.
    Local {
        /// vNIC name.
        vif: String,
        /// Tags, outermost first.
        vlans: Vec<u16>,
    },
    /// A VXLAN tunnel.
    Tunnel {
        /// The remote host's name, when the port names it.
        host: Option<String>,
        /// Remote tunnel endpoint.
        remote: IpAddr,
        /// VNI.
        vni: u32,
    },
}

/// What finally became of a packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Sent to one or more places.
    Delivered(Vec<Delivery>),
    /// Dropped and answered with a TCP RST or ICMP unreachable.
    Rejected {
        /// Which answer.
        kind: GeneratedKind,
        /// The rejecting flow's origin.
        origin: Origin,
    },
    /// Answered by the pipeline (ARP, ND, echo reply, ICMP error), not forwarded.
    Replied(Vec<(GeneratedKind, Origin)>),
    /// Given to local services.
    HandedOff(Vec<Service>),
    /// Dropped.
    Dropped {
        /// Why, in words.
        reason: String,
        /// The flow responsible, when a flow was.
        origin: Option<Origin>,
    },
}

fn origin_of(l: &Loaded, r: super::FlowRef) -> Origin {
    l.flow(r)
        .map(|(_, _, f)| f.origin.clone())
        .unwrap_or_default()
}

fn flow_name(l: &Loaded, r: super::FlowRef) -> String {
    match l.flow(r) {
        Some((d, t, f)) => format!("{}.{} priority {}", d.name, t.name, f.priority),
        None => "?".to_string(),
    }
}

/// The readable form of a target.
pub(crate) fn delivery(l: &Loaded, t: &Target) -> Delivery {
    match t {
        Target::Vif { vif, port } => Delivery {
            port: port.map(|p| l.port_name(p).to_string()),
            via: Via::Local {
                vif: l.vif_name(*vif).to_string(),
                vlans: port.map(|p| l.port_vlans(p).to_vec()).unwrap_or_default(),
            },
        },
        Target::Tunnel { remote, vni, port } => Delivery {
            port: port.map(|p| l.port_name(p).to_string()),
            via: Via::Tunnel {
                host: port.and_then(|p| match &l.port(p)?.location {
                    PortLocation::Remote { host, .. } => Some(host.clone()),
                    PortLocation::Local { .. } | PortLocation::Internal => None,
                }),
                remote: *remote,
                vni: *vni,
            },
        },
    }
}

impl DropReason {
    /// The reason in words, with names resolved.
    pub fn describe(&self, l: &Loaded) -> String {
        match self {
            DropReason::Malformed(e) => format!("malformed frame: {e}"),
            DropReason::UnknownVif => "frame from a vif this program does not know".to_string(),
            DropReason::NoPortForTags { vif, vlans } => format!(
                "no logical port on vif {:?} for VLAN tags {vlans:?}",
                l.vif_name(*vif)
            ),
            DropReason::UnknownPort => "ingress port not in the program".to_string(),
            DropReason::UnknownVni(v) => format!("no tunnel entry for VNI {v}"),
            DropReason::NoFlowMatched(t) => {
                format!("no flow matched in {} (default drop)", l.table_name(*t))
            }
            DropReason::Dropped(f) => format!("dropped by {}", flow_name(l, *f)),
            DropReason::EndOfActions(f) => format!(
                "actions of {} ended without sending the packet anywhere",
                flow_name(l, *f)
            ),
            DropReason::TtlExpired(f) => format!("TTL expired at {}", flow_name(l, *f)),
            DropReason::NextFromLastTable(f) => {
                format!("`next;` from the last table at {}", flow_name(l, *f))
            }
            DropReason::VlanOverflow(f) => {
                format!("push_vlan on a frame with two tags at {}", flow_name(l, *f))
            }
            DropReason::LoopLimit(t) => format!(
                "more than {} table visits (loop?), last at {}",
                super::MAX_TABLE_VISITS,
                l.table_name(*t)
            ),
        }
    }

    /// The flow responsible, when one was.
    pub fn flow(&self) -> Option<super::FlowRef> {
        match self {
            DropReason::Dropped(f)
            | DropReason::EndOfActions(f)
            | DropReason::TtlExpired(f)
            | DropReason::NextFromLastTable(f)
            | DropReason::VlanOverflow(f) => Some(*f),
            _ => None,
        }
    }
}

impl Outcome {
    /// The verdict: delivered if any copy went out, else rejected, replied, handed off or
    /// dropped, in that order.
    pub fn verdict(&self, l: &Loaded) -> Verdict {
        if !self.outputs.is_empty() {
            return Verdict::Delivered(
                self.outputs
                    .iter()
                    .map(|o| delivery(l, &o.target))
                    .collect(),
            );
        }
        if let Some(g) = self.generated.iter().find(|g| {
            matches!(
                g.kind,
                GeneratedKind::TcpRst | GeneratedKind::RejectUnreachable
            )
        }) {
            return Verdict::Rejected {
                kind: g.kind,
                origin: origin_of(l, g.flow),
            };
        }
        if !self.generated.is_empty() {
            return Verdict::Replied(
                self.generated
                    .iter()
                    .map(|g| (g.kind, origin_of(l, g.flow)))
                    .collect(),
            );
        }
        if !self.handoffs.is_empty() {
            return Verdict::HandedOff(self.handoffs.iter().map(|h| h.service).collect());
        }
        match &self.drop {
            Some(r) => Verdict::Dropped {
                reason: r.describe(l),
                origin: r.flow().map(|f| origin_of(l, f)),
            },
            None => Verdict::Dropped {
                reason: "nothing was sent".to_string(),
                origin: None,
            },
        }
    }
}

impl Display for GeneratedKind {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            GeneratedKind::ArpReply => f.write_str("ARP reply"),
            GeneratedKind::NdAdvert => f.write_str("neighbour advertisement"),
            GeneratedKind::IcmpError(IcmpErrorKind::TimeExceeded) => {
                f.write_str("ICMP time exceeded")
            }
            GeneratedKind::IcmpError(IcmpErrorKind::PacketTooBig { mtu }) => {
                write!(f, "ICMP packet too big (MTU {mtu})")
            }
            GeneratedKind::IcmpError(IcmpErrorKind::Unreachable(u)) => {
                write!(f, "ICMP {u} unreachable")
            }
            GeneratedKind::EchoReply => f.write_str("ICMP echo reply"),
            GeneratedKind::TcpRst => f.write_str("TCP RST"),
            GeneratedKind::RejectUnreachable => f.write_str("ICMP unreachable"),
        }
    }
}

impl Display for Delivery {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match &self.port {
            Some(p) => write!(f, "port {p:?}")?,
            None => f.write_str("no port")?,
        }
        match &self.via {
            Via::Local { vif, vlans } if vlans.is_empty() => write!(f, " (local vif {vif:?})"),
            Via::Local { vif, vlans } => write!(f, " (local vif {vif:?}, vlan {vlans:?})"),
            Via::Tunnel { host, remote, vni } => {
                if let Some(h) = host {
                    write!(f, " on host {h:?}")?;
                }
                write!(f, " via VNI {vni} to {remote}")
            }
        }
    }
}

impl Display for Verdict {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Delivered(ds) => {
                f.write_str("delivered to ")?;
                for (i, d) in ds.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{d}")?;
                }
                Ok(())
            }
            Verdict::Rejected { kind, origin } => write!(f, "rejected with {kind} by {origin}"),
            Verdict::Replied(rs) => {
                f.write_str("answered with ")?;
                for (i, (k, o)) in rs.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{k} ({o})")?;
                }
                Ok(())
            }
            Verdict::HandedOff(s) => {
                let names: Vec<String> = s.iter().map(Service::to_string).collect();
                write!(f, "handed to local service {}", names.join(", "))
            }
            Verdict::Dropped { reason, origin } => {
                write!(f, "dropped: {reason}")?;
                if let Some(o) = origin {
                    write!(f, " [{o}]")?;
                }
                Ok(())
            }
        }
    }
}

/// Renders like `ovn-trace`: one block per table, actions indented under the flow.
impl Display for Trace {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let mut n = 0;
        for s in &self.steps {
            match s {
                TraceStep::Ingress(t) => writeln!(f, "ingress: {t}")?,
                TraceStep::Table {
                    datapath,
                    table,
                    index,
                    matched,
                } => {
                    n += 1;
                    write!(f, "{n}. {datapath}.{table} (table {index}): ")?;
                    match matched {
                        Some(m) => {
                            writeln!(f, "priority {}, match ({})", m.priority, m.r#match)?;
                            writeln!(f, "   origin: {}", m.origin)?;
                        }
                        None => writeln!(f, "no flow matched -> default drop")?,
                    }
                }
                TraceStep::Action { action, effect } => match effect {
                    Some(e) => writeln!(f, "   {action}  -> {e}")?,
                    None => writeln!(f, "   {action}")?,
                },
                TraceStep::Note(t) => writeln!(f, "   note: {t}")?,
            }
        }
        write!(f, "verdict: {}", self.verdict)
    }
}

impl TracedFlow {
    pub(crate) fn from_ir(index: u32, flow: &crate::ir::Flow) -> TracedFlow {
        TracedFlow {
            index,
            priority: flow.priority,
            r#match: flow.r#match.to_string(),
            actions: Actions(&flow.actions).to_string(),
            origin: flow.origin.clone(),
        }
    }
}
