//! Loading a [`Program`] into the executor's form: names interned into ids, matches compiled
//! into field tests, tables indexed by a tuple-space classifier.
//!
//! The classifier groups a table's flows by the *shape* of their exact/masked conditions
//! (which fields, under which masks; e.g. "inport + eth.dst" or "ip4.dst/24"). Each group is a
//! hash table from the masked field values to the flows with those values, in priority order.
//! A lookup probes each group once, best groups first, and stops as soon as no remaining group
//! can hold a better flow. So a table of a thousand routes over a handful of prefix lengths
//! costs a handful of hash probes, and an L2 table of a thousand MACs one probe. Conditions a
//! hash cannot express (ranges, address sets, packet length) are checked on the candidates.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use prefix_trie::PrefixSet;

use super::hash::{FxBuild, IdBuild, fnv1a, mix64};
use crate::ir::*;
use crate::wire::{FlowKey, prereq};

/// Most table visits one packet may make before the executor drops it (loop guard).
pub const MAX_TABLE_VISITS: usize = 256;

/// Id of a logical port in a [`Loaded`] program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortId(pub u32);

/// Id of a vif (local vNIC) in a [`Loaded`] program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VifId(pub u32);

/// Id of a datapath in a [`Loaded`] program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DpId(pub u32);

/// One table of one datapath.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TableRef {
    /// Datapath.
    pub datapath: DpId,
    /// Table index in the datapath.
    pub table: u32,
}

/// One flow of one table, by its index in the IR's `Table::flows`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowRef {
    /// Datapath.
    pub datapath: DpId,
    /// Table index in the datapath.
    pub table: u32,
    /// Flow index in the IR table's `flows`.
    pub flow: u32,
}

/// A program that could not be loaded. The agent keeps running its previous program.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// Two objects of one kind share a name.
    #[error("duplicate {kind} name {name:?}; names must be unique within a program")]
    DuplicateName {
        /// Kind of object.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// A name refers to nothing in the program.
    #[error("{context}: unknown {kind} {name:?}; add it to the program or drop the reference")]
    Unknown {
        /// Where the reference is.
        context: String,
        /// Kind of object referred to.
        kind: &'static str,
        /// The name.
        name: String,
    },
    /// An action follows one that ends the list (`next`, `goto`, `ecmp`, `drop`, `reject`).
    #[error("{context}: action `{action}` follows `{terminal}`, which ends the action list")]
    ActionAfterTerminal {
        /// Where.
        context: String,
        /// The unreachable action.
        action: String,
        /// The terminal action before it.
        terminal: String,
    },
    /// `next` in the last table of a datapath.
    #[error("{context}: `next;` in the last table; use `goto(...)` or end with an output")]
    NextFromLastTable {
        /// Where.
        context: String,
    },
    /// A value out of its field's range.
    #[error("{context}: {what}")]
    OutOfRange {
        /// Where.
        context: String,
        /// What was out of range, with the value and the limit.
        what: String,
    },
    /// Two ports claim the same vif and VLAN tags.
    #[error("ports {first:?} and {second:?} both sit on vif {vif:?} with VLAN tags {vlans:?}")]
    DuplicateVifTags {
        /// The vif.
        vif: String,
        /// The tag stack.
        vlans: Vec<u16>,
        /// One port.
        first: String,
        /// The other port.
        second: String,
    },
    /// An ECMP member uses `ecmp` itself.
    #[error("ecmp group {group:?}: a member uses `ecmp`; nest groups by flattening them")]
    NestedEcmp {
        /// The group.
        group: String,
    },
    /// A datapath packets can enter has no tables.
    #[error("datapath {datapath:?} has no tables, but ports or tunnels enter it")]
    EmptyDatapath {
        /// The datapath.
        datapath: String,
    },
}

/// Something suspicious but loadable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadWarning {
    /// Where.
    pub context: String,
    /// What.
    pub message: String,
}

/// A field the compiled matches test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Fld {
    Prereq,
    InPort,
    OutPort,
    Vlan,
    EthSrc,
    EthDst,
    EthType,
    ArpOp,
    ArpSpa,
    ArpTpa,
    ArpSha,
    IpSrc,
    IpDst,
    IpProto,
    IpTtl,
    L4Src,
    L4Dst,
    TcpFlags,
    IcmpType,
    IcmpCode,
    NdTarget,
    CtState,
    Reg(u8),
}

/// Per-packet pipeline metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Meta {
    pub in_port: u32,
    pub out_port: u32,
    pub regs: [u32; NUM_REGS],
    pub ct_state: u8,
}

/// "No port" in [`Meta`].
pub(crate) const NO_PORT: u32 = u32::MAX;

impl Default for Meta {
    fn default() -> Self {
        Meta {
            in_port: NO_PORT,
            out_port: NO_PORT,
            regs: [0; NUM_REGS],
            ct_state: 0,
        }
    }
}

fn ip_u128(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => u128::from(a),
    }
}

fn mac_u128(m: MacAddr) -> u128 {
    u128::from(m.to_u64())
}

/// Reads field `f` of the packet as an integer.
#[inline]
pub(crate) fn get(f: Fld, k: &FlowKey, m: &Meta) -> u128 {
    match f {
        Fld::Prereq => u128::from(k.prereq),
        Fld::InPort => u128::from(m.in_port),
        Fld::OutPort => u128::from(m.out_port),
        Fld::Vlan => {
            if k.n_vlans > 0 {
                0x1000 | u128::from(k.vlans[0] & 0x0fff)
            } else {
                0
            }
        }
        Fld::EthSrc => mac_u128(k.eth_src),
        Fld::EthDst => mac_u128(k.eth_dst),
        Fld::EthType => u128::from(k.eth_type),
        Fld::ArpOp => u128::from(k.arp_op),
        Fld::ArpSpa => u128::from(u32::from(k.arp_spa)),
        Fld::ArpTpa => u128::from(u32::from(k.arp_tpa)),
        Fld::ArpSha => mac_u128(k.arp_sha),
        Fld::IpSrc => ip_u128(k.ip_src),
        Fld::IpDst => ip_u128(k.ip_dst),
        Fld::IpProto => u128::from(k.ip_proto),
        Fld::IpTtl => u128::from(k.ip_ttl),
        Fld::L4Src => u128::from(k.l4_src),
        Fld::L4Dst => u128::from(k.l4_dst),
        Fld::TcpFlags => u128::from(k.tcp_flags),
        Fld::IcmpType => u128::from(k.icmp_type),
        Fld::IcmpCode => u128::from(k.icmp_code),
        Fld::NdTarget => u128::from(k.nd_target),
        Fld::CtState => u128::from(m.ct_state),
        Fld::Reg(r) => u128::from(m.regs[usize::from(r) % NUM_REGS]),
    }
}

/// One compiled condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Cond {
    /// `field & mask == value`.
    Masked { f: Fld, mask: u128, value: u128 },
    /// `lo <= field <= hi`.
    Range { f: Fld, lo: u128, hi: u128 },
    /// Field (an IP address) inside address set `set`.
    InSet { f: Fld, set: u32 },
    /// L3 length greater than `n`.
    LenGt(u16),
}

/// A compiled action: names resolved to ids.
#[derive(Clone, Debug)]
pub(crate) enum CAction {
    Next,
    Goto(DpId, u32),
    SetInPort(u32),
    SetOutPort(u32),
    Output(u32),
    OutputOutPort,
    Tunnel(IpAddr, u32),
    Flood(u32),
    Ecmp(u32),
    SetEthSrc(MacAddr),
    SetEthDst(MacAddr),
    DecTtl,
    SetReg(u8, u32, u32),
    PushVlan(u16),
    PopVlan,
    CtLookup(u16),
    CtCommit(u16),
    Drop,
    Reject,
    Log(Arc<str>),
    ArpReply(MacAddr),
    NdAdvert(MacAddr, bool),
    LocalService(Service, Arc<str>),
    IcmpError(IcmpErrorKind, IpAddr),
    IcmpEchoReply,
}

pub(crate) struct LFlow {
    pub conds: Vec<Cond>,
    pub actions: Vec<CAction>,
    /// Index of the flow in the IR table (for traces and [`FlowRef`]).
    pub ir_index: u32,
}

struct Subtable {
    fields: Vec<(Fld, u128)>,
    min_rank: u32,
    buckets: HashMap<u64, Vec<u32>, IdBuild>,
}

pub(crate) struct LTable {
    /// Flows by rank: priority descending, then IR `Ord`.
    pub flows: Vec<LFlow>,
    subtables: Vec<Subtable>,
}

pub(crate) struct LDatapath {
    pub tables: Vec<LTable>,
}

#[derive(Clone, Debug)]
pub(crate) enum LLoc {
    Local { vif: VifId, vlans: Vec<u16> },
    Remote { tunnel_ip: IpAddr, vni: u32 },
    Internal,
}

pub(crate) struct LPort {
    pub dp: DpId,
    pub loc: LLoc,
}

pub(crate) struct LEcmpMember {
    pub weight: u16,
    pub seed: u64,
    pub actions: Vec<CAction>,
}

#[derive(Default)]
pub(crate) struct LSet {
    v4: PrefixSet<Ipv4Net>,
    v6: PrefixSet<Ipv6Net>,
}

impl LSet {
    pub fn contains(&self, a: IpAddr) -> bool {
        match a {
            IpAddr::V4(a) => self.v4.get_spm(&Ipv4Net::from(a)).is_some(),
            IpAddr::V6(a) => self.v6.get_spm(&Ipv6Net::from(a)).is_some(),
        }
    }
}

/// A [`Program`] compiled for execution. Immutable; share it behind an `Arc` and swap in a
/// new one atomically when the program changes (cached decisions of the old one then go
/// stale on their own, see [`super::Decision`]).
pub struct Loaded {
    program: Program,
    generation: u64,
    pub(crate) dps: Vec<LDatapath>,
    dp_by_name: HashMap<String, DpId, FxBuild>,
    pub(crate) ports: Vec<LPort>,
    port_by_name: HashMap<String, PortId, FxBuild>,
    vifs: Vec<String>,
    vif_by_name: HashMap<String, VifId, FxBuild>,
    /// Per vif: its ports' tag stacks, longest first.
    pub(crate) vif_ports: Vec<Vec<(Vec<u16>, PortId)>>,
    pub(crate) tunnel_entries: HashMap<u32, TableRef, FxBuild>,
    pub(crate) floods: Vec<Vec<PortId>>,
    pub(crate) ecmps: Vec<Vec<LEcmpMember>>,
    pub(crate) sets: Vec<LSet>,
    warnings: Vec<LoadWarning>,
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

fn index_names<'a>(
    kind: &'static str,
    names: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, u32, FxBuild>, LoadError> {
    let mut m = HashMap::with_hasher(FxBuild);
    for (i, n) in names.enumerate() {
        if m.insert(n.to_string(), i as u32).is_some() {
            return Err(LoadError::DuplicateName {
                kind,
                name: n.to_string(),
            });
        }
    }
    Ok(m)
}

struct Names {
    dps: HashMap<String, u32, FxBuild>,
    tables: Vec<HashMap<String, u32, FxBuild>>,
    ports: HashMap<String, u32, FxBuild>,
    floods: HashMap<String, u32, FxBuild>,
    ecmps: HashMap<String, u32, FxBuild>,
    sets: HashMap<String, u32, FxBuild>,
}

impl Names {
    fn lookup(
        m: &HashMap<String, u32, FxBuild>,
        kind: &'static str,
        name: &str,
        ctx: &dyn Fn() -> String,
    ) -> Result<u32, LoadError> {
        m.get(name).copied().ok_or_else(|| LoadError::Unknown {
            context: ctx(),
            kind,
            name: name.to_string(),
        })
    }
}

fn is_terminal(a: &Action) -> bool {
    matches!(
        a,
        Action::Next | Action::Goto { .. } | Action::Ecmp(_) | Action::Drop | Action::Reject
    )
}

fn compile_actions(
    actions: &[Action],
    names: &Names,
    dp: Option<(u32, usize)>,
    ctx: &dyn Fn() -> String,
) -> Result<Vec<CAction>, LoadError> {
    let mut out = Vec::with_capacity(actions.len());
    for (i, a) in actions.iter().enumerate() {
        if i > 0 && is_terminal(&actions[i - 1]) {
            return Err(LoadError::ActionAfterTerminal {
                context: ctx(),
                action: a.to_string(),
                terminal: actions[i - 1].to_string(),
            });
        }
        let port = |n: &str| Names::lookup(&names.ports, "port", n, ctx);
        let range = |what: String| LoadError::OutOfRange {
            context: ctx(),
            what,
        };
        out.push(match a {
            Action::Next => match dp {
                Some((d, t)) => {
                    if t + 1 >= names.tables[d as usize].len() {
                        return Err(LoadError::NextFromLastTable { context: ctx() });
                    }
                    CAction::Next
                }
                // ECMP member lists are checked where they run; `next` there is fine.
                None => CAction::Next,
            },
            Action::Goto { datapath, table } => {
                let d = Names::lookup(&names.dps, "datapath", datapath, ctx)?;
                let t = Names::lookup(&names.tables[d as usize], "table", table, &|| {
                    format!("{} (in datapath {datapath:?})", ctx())
                })?;
                CAction::Goto(DpId(d), t)
            }
            Action::SetInPort(p) => CAction::SetInPort(port(p)?),
            Action::SetOutPort(p) => CAction::SetOutPort(port(p)?),
            Action::Output(p) => CAction::Output(port(p)?),
            Action::OutputOutPort => CAction::OutputOutPort,
            Action::Tunnel { remote, vni } => {
                if *vni > crate::wire::vxlan::MAX_VNI {
                    return Err(range(format!("tunnel VNI {vni} exceeds 24 bits")));
                }
                CAction::Tunnel(*remote, *vni)
            }
            Action::Flood(g) => {
                CAction::Flood(Names::lookup(&names.floods, "flood group", g, ctx)?)
            }
            Action::Ecmp(g) => CAction::Ecmp(Names::lookup(&names.ecmps, "ecmp group", g, ctx)?),
            Action::SetEthSrc(m) => CAction::SetEthSrc(*m),
            Action::SetEthDst(m) => CAction::SetEthDst(*m),
            Action::DecTtl => CAction::DecTtl,
            Action::SetReg { reg, value, mask } => {
                if usize::from(*reg) >= NUM_REGS {
                    return Err(range(format!(
                        "register reg{reg} does not exist (reg0..reg7)"
                    )));
                }
                CAction::SetReg(*reg, value & mask, *mask)
            }
            Action::PushVlan(v) => {
                if *v > 4095 {
                    return Err(range(format!("VLAN id {v} exceeds 4095")));
                }
                CAction::PushVlan(*v)
            }
            Action::PopVlan => CAction::PopVlan,
            Action::CtLookup { zone } => CAction::CtLookup(*zone),
            Action::CtCommit { zone } => CAction::CtCommit(*zone),
            Action::Drop => CAction::Drop,
            Action::Reject => CAction::Reject,
            Action::Log { rule } => CAction::Log(Arc::from(rule.as_str())),
            Action::ArpReply { mac } => CAction::ArpReply(*mac),
            Action::NdAdvert { mac, router } => CAction::NdAdvert(*mac, *router),
            Action::LocalService { service, context } => {
                CAction::LocalService(*service, Arc::from(context.as_str()))
            }
            Action::IcmpError { error, src } => CAction::IcmpError(*error, *src),
            Action::IcmpEchoReply => CAction::IcmpEchoReply,
        });
    }
    Ok(out)
}

fn mac_cond(f: Fld, m: &EthMatch) -> Cond {
    const ALL: u128 = 0xffff_ffff_ffff;
    const GROUP: u128 = 0x0100_0000_0000;
    let (mask, value) = match m {
        EthMatch::Exact(mac) => (ALL, mac_u128(*mac)),
        EthMatch::Broadcast => (ALL, ALL),
        EthMatch::Multicast => (GROUP, GROUP),
        EthMatch::Unicast => (GROUP, 0),
    };
    Cond::Masked { f, mask, value }
}

fn prefix_mask(bits: u8, width: u8) -> u128 {
    if bits == 0 {
        0
    } else {
        (u128::MAX << (128 - u32::from(bits))) >> (128 - u32::from(width))
    }
}

fn compile_match(
    m: &Match,
    names: &Names,
    ctx: &dyn Fn() -> String,
) -> Result<Vec<Cond>, LoadError> {
    let mut conds = Vec::new();
    let mut pre: u16 = 0;
    let exact = |f: Fld, v: u128| Cond::Masked {
        f,
        mask: u128::MAX,
        value: v,
    };
    let range = |what: String| LoadError::OutOfRange {
        context: ctx(),
        what,
    };
    if let Some(p) = &m.in_port {
        conds.push(exact(
            Fld::InPort,
            u128::from(Names::lookup(&names.ports, "port", p, ctx)?),
        ));
    }
    if let Some(p) = &m.out_port {
        conds.push(exact(
            Fld::OutPort,
            u128::from(Names::lookup(&names.ports, "port", p, ctx)?),
        ));
    }
    if let Some(v) = &m.vlan {
        conds.push(match v {
            VlanMatch::Untagged => Cond::Masked {
                f: Fld::Vlan,
                mask: 0x1000,
                value: 0,
            },
            VlanMatch::Vid(id) => {
                if *id > 4095 {
                    return Err(range(format!("VLAN id {id} exceeds 4095")));
                }
                Cond::Masked {
                    f: Fld::Vlan,
                    mask: 0x1fff,
                    value: 0x1000 | u128::from(*id),
                }
            }
        });
    }
    if let Some(e) = &m.eth_src {
        conds.push(mac_cond(Fld::EthSrc, e));
    }
    if let Some(e) = &m.eth_dst {
        conds.push(mac_cond(Fld::EthDst, e));
    }
    if let Some(t) = m.eth_type {
        conds.push(exact(Fld::EthType, u128::from(t)));
    }
    if let Some(op) = m.arp_op {
        pre |= prereq::ARP;
        conds.push(exact(Fld::ArpOp, u128::from(op)));
    }
    for (f, n) in [(Fld::ArpSpa, &m.arp_spa), (Fld::ArpTpa, &m.arp_tpa)] {
        if let Some(n) = n {
            pre |= prereq::ARP;
            let mask = prefix_mask(n.prefix_len(), 32);
            conds.push(Cond::Masked {
                f,
                mask,
                value: u128::from(u32::from(n.network())) & mask,
            });
        }
    }
    if let Some(sha) = m.arp_sha {
        pre |= prereq::ARP;
        conds.push(exact(Fld::ArpSha, mac_u128(sha)));
    }
    for (f, ipm) in [(Fld::IpSrc, &m.ip_src), (Fld::IpDst, &m.ip_dst)] {
        match ipm {
            None => {}
            Some(IpMatch::Prefix(IpNet::V4(n))) => {
                pre |= prereq::IP4;
                let mask = prefix_mask(96 + n.prefix_len(), 128);
                conds.push(Cond::Masked {
                    f,
                    mask,
                    value: ip_u128(IpAddr::V4(n.network())) & mask,
                });
            }
            Some(IpMatch::Prefix(IpNet::V6(n))) => {
                pre |= prereq::IP6;
                let mask = prefix_mask(n.prefix_len(), 128);
                conds.push(Cond::Masked {
                    f,
                    mask,
                    value: u128::from(n.network()) & mask,
                });
            }
            Some(IpMatch::Set(s)) => {
                pre |= prereq::IP;
                conds.push(Cond::InSet {
                    f,
                    set: Names::lookup(&names.sets, "address set", s, ctx)?,
                });
            }
        }
    }
    if let Some(p) = m.ip_proto {
        pre |= prereq::IP;
        conds.push(exact(Fld::IpProto, u128::from(p)));
    }
    if let Some(r) = &m.ip_ttl {
        pre |= prereq::IP;
        conds.push(Cond::Range {
            f: Fld::IpTtl,
            lo: u128::from(r.lo),
            hi: u128::from(r.hi),
        });
    }
    for (f, r) in [(Fld::L4Src, &m.l4_src), (Fld::L4Dst, &m.l4_dst)] {
        if let Some(r) = r {
            pre |= prereq::L4_PORTS;
            conds.push(if r.lo == r.hi {
                exact(f, u128::from(r.lo))
            } else {
                Cond::Range {
                    f,
                    lo: u128::from(r.lo),
                    hi: u128::from(r.hi),
                }
            });
        }
    }
    if let Some(fl) = &m.tcp_flags {
        pre |= prereq::TCP;
        let mask = u128::from(fl.mask & 0x0fff);
        conds.push(Cond::Masked {
            f: Fld::TcpFlags,
            mask,
            value: u128::from(fl.value) & mask,
        });
    }
    let icmp_pre = match m.ip_proto {
        Some(ip_proto::ICMP) => prereq::ICMP4,
        Some(ip_proto::ICMPV6) => prereq::ICMP6,
        _ => 0,
    };
    for (f, v) in [(Fld::IcmpType, m.icmp_type), (Fld::IcmpCode, m.icmp_code)] {
        if let Some(v) = v {
            pre |= if icmp_pre == 0 {
                prereq::ICMP
            } else {
                icmp_pre
            };
            conds.push(exact(f, u128::from(v)));
        }
    }
    if let Some(t) = m.nd_target {
        pre |= prereq::ND;
        conds.push(exact(Fld::NdTarget, u128::from(t)));
    }
    if let Some(c) = &m.ct_state {
        let mask = u128::from(c.mask);
        conds.push(Cond::Masked {
            f: Fld::CtState,
            mask,
            value: u128::from(c.value) & mask,
        });
    }
    for (r, mv) in &m.regs {
        if usize::from(*r) >= NUM_REGS {
            return Err(range(format!(
                "register reg{r} does not exist (reg0..reg7)"
            )));
        }
        let mask = u128::from(mv.mask);
        conds.push(Cond::Masked {
            f: Fld::Reg(*r),
            mask,
            value: u128::from(mv.value) & mask,
        });
    }
    if let Some(n) = m.l3_len_gt {
        conds.push(Cond::LenGt(n));
    }
    if pre != 0 {
        // Protocol presence first: it is the cheapest test that fails most often.
        conds.insert(
            0,
            Cond::Masked {
                f: Fld::Prereq,
                mask: u128::from(pre),
                value: u128::from(pre),
            },
        );
    }
    // A zero mask tests nothing; drop it so it does not split the classifier's shapes.
    conds.retain(|c| !matches!(c, Cond::Masked { mask: 0, .. }));
    Ok(conds)
}

/// Hash of a subtable's masked field values: one multiply per field, one final mix.
#[inline]
fn subtable_hash(fields: &[(Fld, u128)], vals: impl Iterator<Item = u128>) -> u64 {
    let mut h = fields.len() as u64;
    for v in vals {
        let w = (v as u64) ^ ((v >> 64) as u64).rotate_left(32);
        h = (h.rotate_left(23) ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    mix64(h)
}

impl LTable {
    fn build(flows: Vec<LFlow>) -> LTable {
        let mut shapes: Vec<Subtable> = Vec::new();
        let mut by_shape: HashMap<Vec<(Fld, u128)>, usize> = HashMap::new();
        for (rank, fl) in flows.iter().enumerate() {
            let mut fields: Vec<(Fld, u128, u128)> = fl
                .conds
                .iter()
                .filter_map(|c| match c {
                    Cond::Masked { f, mask, value } => Some((*f, *mask, *value)),
                    _ => None,
                })
                .collect();
            fields.sort_by_key(|(f, _, _)| *f);
            let shape: Vec<(Fld, u128)> = fields.iter().map(|(f, m, _)| (*f, *m)).collect();
            let h = subtable_hash(&shape, fields.iter().map(|(_, _, v)| *v));
            let i = *by_shape.entry(shape.clone()).or_insert_with(|| {
                shapes.push(Subtable {
                    fields: shape,
                    min_rank: rank as u32,
                    buckets: HashMap::with_hasher(IdBuild),
                });
                shapes.len() - 1
            });
            shapes[i].buckets.entry(h).or_default().push(rank as u32);
        }
        shapes.sort_by_key(|s| s.min_rank);
        LTable {
            flows,
            subtables: shapes,
        }
    }

    /// Number of classifier groups (for tests and benchmarks).
    pub fn shapes(&self) -> usize {
        self.subtables.len()
    }

    /// The best matching flow's rank.
    #[inline]
    pub fn lookup(
        &self,
        k: &FlowKey,
        m: &Meta,
        eval: &mut impl FnMut(&LFlow) -> bool,
    ) -> Option<u32> {
        let mut best = u32::MAX;
        for st in &self.subtables {
            if st.min_rank >= best {
                break;
            }
            let h = subtable_hash(
                &st.fields,
                st.fields.iter().map(|(f, mask)| get(*f, k, m) & mask),
            );
            if let Some(ranks) = st.buckets.get(&h) {
                for &r in ranks {
                    if r >= best {
                        break;
                    }
                    if eval(&self.flows[r as usize]) {
                        best = r;
                        break;
                    }
                }
            }
        }
        (best != u32::MAX).then_some(best)
    }
}

impl Loaded {
    /// Validates and compiles `program`. Errors name the offending object and reference.
    pub fn load(program: &Program) -> Result<Loaded, LoadError> {
        let p = program;
        let dp_names = index_names("datapath", p.datapaths.iter().map(|d| d.name.as_str()))?;
        let mut tables = Vec::new();
        for d in &p.datapaths {
            tables.push(
                index_names("table", d.tables.iter().map(|t| t.name.as_str())).map_err(
                    |e| match e {
                        LoadError::DuplicateName { name, .. } => LoadError::DuplicateName {
                            kind: "table",
                            name: format!("{}/{name}", d.name),
                        },
                        e => e,
                    },
                )?,
            );
            if d.vni > crate::wire::vxlan::MAX_VNI {
                return Err(LoadError::OutOfRange {
                    context: format!("datapath {:?}", d.name),
                    what: format!("VNI {} exceeds 24 bits", d.vni),
                });
            }
        }
        let names = Names {
            dps: dp_names,
            tables,
            ports: index_names("port", p.ports.iter().map(|x| x.name.as_str()))?,
            floods: index_names(
                "flood group",
                p.flood_groups.iter().map(|x| x.name.as_str()),
            )?,
            ecmps: index_names("ecmp group", p.ecmp_groups.iter().map(|x| x.name.as_str()))?,
            sets: index_names(
                "address set",
                p.address_sets.iter().map(|x| x.name.as_str()),
            )?,
        };
        let mut warnings = Vec::new();

        // Ports and vifs.
        let mut vifs: Vec<String> = Vec::new();
        let mut vif_by_name: HashMap<String, VifId, FxBuild> = HashMap::with_hasher(FxBuild);
        let mut vif_ports: Vec<Vec<(Vec<u16>, PortId)>> = Vec::new();
        let mut ports = Vec::with_capacity(p.ports.len());
        for (i, port) in p.ports.iter().enumerate() {
            let ctx = || format!("port {:?}", port.name);
            let dp = Names::lookup(&names.dps, "datapath", &port.datapath, &ctx)?;
            if p.datapaths[dp as usize].tables.is_empty() {
                return Err(LoadError::EmptyDatapath {
                    datapath: port.datapath.clone(),
                });
            }
            let loc = match &port.location {
                PortLocation::Local { vif, vlans } => {
                    if let Some(v) = vlans.iter().find(|v| **v > 4095) {
                        return Err(LoadError::OutOfRange {
                            context: ctx(),
                            what: format!("VLAN id {v} exceeds 4095"),
                        });
                    }
                    if vlans.len() > crate::wire::ethernet::MAX_TAGS {
                        return Err(LoadError::OutOfRange {
                            context: ctx(),
                            what: format!("{} VLAN tags; at most 2 (QinQ)", vlans.len()),
                        });
                    }
                    let id = *vif_by_name.entry(vif.clone()).or_insert_with(|| {
                        vifs.push(vif.clone());
                        vif_ports.push(Vec::new());
                        VifId((vifs.len() - 1) as u32)
                    });
                    let list = &mut vif_ports[id.0 as usize];
                    if let Some((_, other)) = list.iter().find(|(v, _)| v == vlans) {
                        return Err(LoadError::DuplicateVifTags {
                            vif: vif.clone(),
                            vlans: vlans.clone(),
                            first: p.ports[other.0 as usize].name.clone(),
                            second: port.name.clone(),
                        });
                    }
                    list.push((vlans.clone(), PortId(i as u32)));
                    LLoc::Local {
                        vif: id,
                        vlans: vlans.clone(),
                    }
                }
                PortLocation::Remote { tunnel_ip, .. } => LLoc::Remote {
                    tunnel_ip: *tunnel_ip,
                    vni: p.datapaths[dp as usize].vni,
                },
                PortLocation::Internal => LLoc::Internal,
            };
            ports.push(LPort { dp: DpId(dp), loc });
        }
        for list in &mut vif_ports {
            list.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
        }

        // Groups and sets.
        let mut floods = Vec::new();
        for g in &p.flood_groups {
            let ctx = || format!("flood group {:?}", g.name);
            let mut members = Vec::new();
            for m in &g.ports {
                members.push(PortId(Names::lookup(&names.ports, "port", m, &ctx)?));
            }
            floods.push(members);
        }
        let mut ecmps = Vec::new();
        for g in &p.ecmp_groups {
            let mut members = Vec::new();
            for (i, m) in g.members.iter().enumerate() {
                if m.actions.iter().any(|a| matches!(a, Action::Ecmp(_))) {
                    return Err(LoadError::NestedEcmp {
                        group: g.name.clone(),
                    });
                }
                let ctx = || format!("ecmp group {:?} member {i}", g.name);
                let actions = compile_actions(&m.actions, &names, None, &ctx)?;
                // The seed is the member's content, so adding or removing other members moves
                // only the flows that must move (weighted rendezvous hashing).
                let seed = fnv1a(Actions(&m.actions).to_string().as_bytes());
                members.push(LEcmpMember {
                    weight: m.weight,
                    seed,
                    actions,
                });
            }
            ecmps.push(members);
        }
        let mut sets = Vec::new();
        for s in &p.address_sets {
            let mut l = LSet::default();
            for n in &s.prefixes {
                match n {
                    IpNet::V4(n) => {
                        l.v4.insert(n.trunc());
                    }
                    IpNet::V6(n) => {
                        l.v6.insert(n.trunc());
                    }
                }
            }
            sets.push(l);
        }

        // Tables.
        let mut dps = Vec::new();
        for (di, d) in p.datapaths.iter().enumerate() {
            let mut ltables = Vec::new();
            for (ti, t) in d.tables.iter().enumerate() {
                let mut order: Vec<usize> = (0..t.flows.len()).collect();
                order.sort_by(|&a, &b| {
                    t.flows[b]
                        .priority
                        .cmp(&t.flows[a].priority)
                        .then_with(|| t.flows[a].cmp(&t.flows[b]))
                });
                let mut flows = Vec::with_capacity(order.len());
                for (pos, &fi) in order.iter().enumerate() {
                    let fl = &t.flows[fi];
                    let ctx = || {
                        format!(
                            "datapath {:?} table {:?} flow #{fi} (priority {}, {})",
                            d.name, t.name, fl.priority, fl.r#match
                        )
                    };
                    if pos > 0 {
                        let prev = &t.flows[order[pos - 1]];
                        if prev.priority == fl.priority && prev.r#match == fl.r#match {
                            warnings.push(LoadWarning {
                                context: ctx(),
                                message: format!(
                                    "same priority and match as another flow ({}); only the first in flow order can match",
                                    prev.origin
                                ),
                            });
                        }
                    }
                    flows.push(LFlow {
                        conds: compile_match(&fl.r#match, &names, &ctx)?,
                        actions: compile_actions(&fl.actions, &names, Some((di as u32, ti)), &ctx)?,
                        ir_index: fi as u32,
                    });
                }
                ltables.push(LTable::build(flows));
            }
            dps.push(LDatapath { tables: ltables });
        }

        let mut tunnel_entries = HashMap::with_hasher(FxBuild);
        for e in &p.tunnel_entries {
            let ctx = || format!("tunnel entry for VNI {}", e.vni);
            let d = Names::lookup(&names.dps, "datapath", &e.datapath, &ctx)?;
            let t = Names::lookup(&names.tables[d as usize], "table", &e.table, &ctx)?;
            if tunnel_entries
                .insert(
                    e.vni,
                    TableRef {
                        datapath: DpId(d),
                        table: t,
                    },
                )
                .is_some()
            {
                return Err(LoadError::DuplicateName {
                    kind: "tunnel entry VNI",
                    name: e.vni.to_string(),
                });
            }
        }

        let port_by_name = names
            .ports
            .iter()
            .map(|(k, v)| (k.clone(), PortId(*v)))
            .collect();
        let dp_by_name = names
            .dps
            .iter()
            .map(|(k, v)| (k.clone(), DpId(*v)))
            .collect();
        Ok(Loaded {
            program: program.clone(),
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            dps,
            dp_by_name,
            ports,
            port_by_name,
            vifs,
            vif_by_name,
            vif_ports,
            tunnel_entries,
            floods,
            ecmps,
            sets,
            warnings,
        })
    }

    /// The program this was loaded from.
    pub fn program(&self) -> &Program {
        &self.program
    }

    /// A process-unique number for this load; decisions remember it.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Suspicious but loadable things found while loading.
    pub fn warnings(&self) -> &[LoadWarning] {
        &self.warnings
    }

    /// The id of the vif named `name`.
    pub fn vif_id(&self, name: &str) -> Option<VifId> {
        self.vif_by_name.get(name).copied()
    }

    /// The name of vif `id`.
    pub fn vif_name(&self, id: VifId) -> &str {
        self.vifs.get(id.0 as usize).map_or("?", String::as_str)
    }

    /// All vifs with their ids; the forwarder opens one TAP per vif.
    pub fn vifs(&self) -> impl Iterator<Item = (VifId, &str)> {
        self.vifs
            .iter()
            .enumerate()
            .map(|(i, n)| (VifId(i as u32), n.as_str()))
    }

    /// The id of the port named `name`.
    pub fn port_id(&self, name: &str) -> Option<PortId> {
        self.port_by_name.get(name).copied()
    }

    /// Port `id` as written in the program.
    pub fn port(&self, id: PortId) -> Option<&LogicalPort> {
        self.program.ports.get(id.0 as usize)
    }

    /// The name of port `id`.
    pub fn port_name(&self, id: PortId) -> &str {
        self.port(id).map_or("?", |p| p.name.as_str())
    }

    /// The VLAN tags pushed when sending to port `id` (empty for remote ports).
    pub fn port_vlans(&self, id: PortId) -> &[u16] {
        match self.ports.get(id.0 as usize).map(|p| &p.loc) {
            Some(LLoc::Local { vlans, .. }) => vlans,
            _ => &[],
        }
    }

    /// The id of the datapath named `name`.
    pub fn datapath_id(&self, name: &str) -> Option<DpId> {
        self.dp_by_name.get(name).copied()
    }

    /// Datapath `id` as written in the program.
    pub fn datapath(&self, id: DpId) -> Option<&Datapath> {
        self.program.datapaths.get(id.0 as usize)
    }

    /// The IR flow a [`FlowRef`] points at, with its datapath and table.
    pub fn flow(&self, r: FlowRef) -> Option<(&Datapath, &Table, &Flow)> {
        let d = self.program.datapaths.get(r.datapath.0 as usize)?;
        let t = d.tables.get(r.table as usize)?;
        Some((d, t, t.flows.get(r.flow as usize)?))
    }

    /// Readable `datapath.table` for a table.
    pub fn table_name(&self, r: TableRef) -> String {
        match self.datapath(r.datapath) {
            Some(d) => format!(
                "{}.{}",
                d.name,
                d.tables
                    .get(r.table as usize)
                    .map_or("?", |t| t.name.as_str())
            ),
            None => "?".to_string(),
        }
    }

    /// Number of classifier groups in a table (how many hash probes a miss costs).
    pub fn table_shapes(&self, r: TableRef) -> usize {
        self.dps
            .get(r.datapath.0 as usize)
            .and_then(|d| d.tables.get(r.table as usize))
            .map_or(0, LTable::shapes)
    }
}
