//! The logical pipeline IR: what the compiler emits and a host agent loads.
//!
//! A [`Program`] is everything one host needs to forward: logical datapaths (one per L2 network,
//! one per router/VRF) made of staged [`Table`]s of prioritized [`Flow`]s, the location of every
//! logical port it may send to, flood and ECMP groups, address sets and tunnel entry points.
//!
//! Names (ports, datapaths, tables, groups, sets) are strings so programs, traces and tests stay
//! readable; [`crate::exec::Loaded`] interns them into integer ids for the executor.
//!
//! Every IR type is `serde`-serializable (programs travel to host agents) and flows are
//! `Clone + Eq + Hash + Ord`, so a compiler can keep flow sets in `BTreeSet`s and send deltas.
//! [`Origin`] is part of a flow's identity on purpose: when the intent behind a flow changes
//! (a rule is renamed or re-described) the flow is resent, so traces on hosts never show stale
//! explanations. The cost is a remove/add pair for a text-only change, which is rare.
//!
//! # Semantics the executor gives these types
//!
//! * A packet enters at a logical port (its datapath's first table) or from a tunnel (the
//!   [`TunnelEntry`] for its VNI). Tables are searched for the highest-priority matching flow;
//!   equal priorities are broken by the flow's `Ord` (smaller first), so results never depend on
//!   the order of `Table::flows`. No match means drop.
//! * Actions run in order. `next`, `goto`, `ecmp`, `drop` and `reject` end the action list
//!   (the loader refuses actions after them). `output`, `tunnel` and `flood` send a copy of the
//!   packet as it is at that point and continue, so one flow can send to several places.
//! * Sending to the port the packet came in on (the current `inport`) is suppressed, like OVN.
//!   Flooding never sends back to a tunnel when the packet came from a tunnel (split horizon),
//!   and sends one copy per remote host and VNI.
//! * Generated packets (ARP/ND replies, ICMP errors, echo replies, TCP RST) go back where the
//!   original packet entered this host, without another pipeline pass.

mod builder;
mod display;

pub use display::{Actions, tcp_flag_names};

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

pub use crate::mac::MacAddr;

/// Number of general-purpose 32-bit registers (`reg0` .. `reg7`) a flow can set and match.
pub const NUM_REGS: usize = 8;

/// Everything one host needs to run the logical pipeline.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(default)]
pub struct Program {
    /// The host this program was compiled for (for traces: "on host H").
    pub host: String,
    /// Logical switches and routers. Names are unique.
    pub datapaths: Vec<Datapath>,
    /// Every logical port this host may receive from or send to. Names are unique.
    pub ports: Vec<LogicalPort>,
    /// Named sets of ports a packet can be flooded to.
    pub flood_groups: Vec<FloodGroup>,
    /// Named weighted ECMP groups.
    pub ecmp_groups: Vec<EcmpGroup>,
    /// Named sets of IP prefixes (security-group remote groups, port security address pairs).
    pub address_sets: Vec<AddressSet>,
    /// Where a packet arriving from a tunnel with a given VNI enters the pipeline.
    pub tunnel_entries: Vec<TunnelEntry>,
}

/// What a datapath models.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatapathKind {
    /// An L2 broadcast domain (one per `l2-network`).
    Switch,
    /// An L3 router or VRF (one per router / `l3vpn`).
    Router,
}

/// One logical datapath: a pipeline of tables.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Datapath {
    /// Unique name, e.g. `"net-blue"` or `"vrf-red"`.
    pub name: String,
    /// Switch or router.
    pub kind: DatapathKind,
    /// The VXLAN network identifier packets of this datapath carry between hosts (24 bits).
    pub vni: u32,
    /// The router MAC(s) this host answers for on this datapath (distributed router MACs).
    /// Informational for traces and the forwarder; flows carry the MACs they match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub router_macs: Vec<MacAddr>,
    /// Tables in pipeline order; table 0 is where ports of this datapath enter.
    pub tables: Vec<Table>,
}

/// One stage of a datapath's pipeline.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Table {
    /// Stage name, unique within its datapath, e.g. `"ls_in_acl"`.
    pub name: String,
    /// The flows; order is irrelevant (see the module docs for tie-breaking).
    pub flows: Vec<Flow>,
}

/// One prioritized rule: if `match` holds, run `actions`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Flow {
    /// Higher wins.
    pub priority: u16,
    /// Conjunction of conditions; the empty match matches everything.
    pub r#match: Match,
    /// Actions, run in order. Empty means drop.
    pub actions: Vec<Action>,
    /// Which intent produced this flow (for traces).
    pub origin: Origin,
}

/// Which intent produced a flow, shown in traces.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Origin {
    /// Kind of intent, e.g. `"security-group-rule"`, `"port-security"`, `"l2-lookup"`.
    pub kind: String,
    /// Id of the intent object, e.g. the rule's UUID.
    pub id: String,
    /// One human line, e.g. `"sg web rule 2: ingress tcp 80 from 10.0.0.0/8"`.
    pub detail: String,
}

/// Where a logical port is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortLocation {
    /// On this host, behind a vNIC (`vif`, e.g. a TAP name). Several logical ports can share one
    /// vif, told apart by their 802.1Q tags: `vlans` is the tag stack outermost first (empty =
    /// untagged, two tags = QinQ). Tags are stripped on ingress and pushed on output.
    Local {
        /// The vNIC name as the forwarder knows it.
        vif: String,
        /// VLAN ids, outermost first.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        vlans: Vec<u16>,
    },
    /// On another host, reached through a VXLAN tunnel with the port's datapath VNI.
    Remote {
        /// The host's name (for traces).
        host: String,
        /// The host's tunnel endpoint.
        tunnel_ip: IpAddr,
    },
    /// No place of its own: a router's leg on a datapath (or any purely logical port), named
    /// so flows can set and match `inport`/`outport`. Packets cross to the peer datapath with
    /// `inport = "..."; goto(...);`; `output` to an internal port sends nothing.
    Internal,
}

/// A logical port.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LogicalPort {
    /// Unique name, e.g. the interface id.
    pub name: String,
    /// The datapath whose first table a packet from this port enters.
    pub datapath: String,
    /// Where the port is.
    pub location: PortLocation,
    /// The port's MAC, if it has one (for traces and local services; flows carry what they match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<MacAddr>,
    /// The port's fixed IPs (for traces and local services).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpAddr>,
}

/// A named set of ports to flood to (broadcast, unknown unicast, multicast).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FloodGroup {
    /// Unique name.
    pub name: String,
    /// Member port names; local members get a copy each, remote ones one copy per host.
    pub ports: Vec<String>,
}

/// A named weighted ECMP group.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EcmpGroup {
    /// Unique name.
    pub name: String,
    /// The members; one is chosen per flow by a hash of the 5-tuple.
    pub members: Vec<EcmpMember>,
}

/// One ECMP member: its weight and the actions run when it is chosen.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct EcmpMember {
    /// Relative share of flows (0 = never chosen).
    pub weight: u16,
    /// Actions run in place of the `ecmp` action, e.g. `eth.dst = M; output("p");`.
    pub actions: Vec<Action>,
}

/// A named set of IP prefixes, matched with `ip4.src == $name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AddressSet {
    /// Unique name.
    pub name: String,
    /// IPv4 and IPv6 prefixes; host addresses are /32 or /128.
    pub prefixes: Vec<IpNet>,
}

/// Where packets arriving from a tunnel with `vni` enter the pipeline.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TunnelEntry {
    /// The VXLAN network identifier (24 bits).
    pub vni: u32,
    /// Datapath to enter.
    pub datapath: String,
    /// Table to start at, e.g. the L2 lookup stage, skipping ingress port security.
    pub table: String,
}

// ---------------------------------------------------------------------------------------------
// Matches
// ---------------------------------------------------------------------------------------------

/// A conjunction of typed conditions. `None`/empty fields are wildcards.
///
/// Fields imply their prerequisites, as in OVN: `tcp.dst` implies `tcp`, an IPv4 prefix implies
/// `ip4`, `arp.*` implies `arp`, `icmp_type` implies ICMPv4 or ICMPv6 (whichever `ip_proto`
/// says, either if unset), `nd_target` implies an ICMPv6 neighbour solicitation/advertisement,
/// `l4_src`/`l4_dst` without `ip_proto` match TCP, UDP or SCTP ports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(default)]
pub struct Match {
    /// Logical input port (`inport == "p1"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_port: Option<String>,
    /// Logical output port set by an earlier `outport = ...` (`outport == "p2"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_port: Option<String>,
    /// The outermost VLAN tag still on the packet after the port's own tags were stripped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlan: Option<VlanMatch>,
    /// Ethernet source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eth_src: Option<EthMatch>,
    /// Ethernet destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eth_dst: Option<EthMatch>,
    /// Ethertype (after VLAN tags): 0x0800 `ip4`, 0x86dd `ip6`, 0x0806 `arp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eth_type: Option<u16>,
    /// ARP operation (1 request, 2 reply).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arp_op: Option<u16>,
    /// ARP sender protocol address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arp_spa: Option<Ipv4Net>,
    /// ARP target protocol address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arp_tpa: Option<Ipv4Net>,
    /// ARP sender hardware address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arp_sha: Option<MacAddr>,
    /// IPv4 or IPv6 source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_src: Option<IpMatch>,
    /// IPv4 or IPv6 destination.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_dst: Option<IpMatch>,
    /// IP protocol / IPv6 upper-layer next header (6 tcp, 17 udp, 1 icmp4, 58 icmp6).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_proto: Option<u8>,
    /// IPv4 TTL or IPv6 hop limit, inclusive range (`ip.ttl <= 1` is `0..=1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_ttl: Option<ValueRange<u8>>,
    /// TCP/UDP/SCTP source port range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub l4_src: Option<ValueRange<u16>>,
    /// TCP/UDP/SCTP destination port range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub l4_dst: Option<ValueRange<u16>>,
    /// TCP flags (12 bits, FIN = 0x001 .. CWR = 0x080) under a mask.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_flags: Option<Masked<u16>>,
    /// ICMPv4/ICMPv6 type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    /// ICMPv4/ICMPv6 code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
    /// Target address of an IPv6 neighbour solicitation or advertisement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nd_target: Option<Ipv6Addr>,
    /// Connection tracking state bits under a mask, see [`ct_state`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ct_state: Option<Masked<u8>>,
    /// Registers `reg0`..`reg7` under masks, keyed by register index.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub regs: BTreeMap<u8, Masked<u32>>,
    /// Packet length from the IP header on (the L3 length, tags and Ethernet header excluded)
    /// is greater than this many bytes: the MTU check.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub l3_len_gt: Option<u16>,
}

/// A condition on the VLAN tag left on the packet after the port's own tags were stripped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VlanMatch {
    /// No tag left.
    Untagged,
    /// Outermost remaining tag has this VLAN id.
    Vid(u16),
}

/// A condition on an Ethernet address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EthMatch {
    /// Exactly this address.
    Exact(MacAddr),
    /// `ff:ff:ff:ff:ff:ff`.
    Broadcast,
    /// Group bit set (includes broadcast).
    Multicast,
    /// Group bit clear.
    Unicast,
}

/// A condition on an IP address.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IpMatch {
    /// Inside this prefix (a host address is a /32 or /128). The prefix's family implies
    /// `ip4` or `ip6`.
    Prefix(IpNet),
    /// Inside any prefix of the named [`AddressSet`] (either family).
    Set(String),
}

/// An inclusive range of values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ValueRange<T> {
    /// Smallest value matched.
    pub lo: T,
    /// Largest value matched.
    pub hi: T,
}

impl<T: Copy> ValueRange<T> {
    /// Exactly `v`.
    pub fn exact(v: T) -> Self {
        ValueRange { lo: v, hi: v }
    }

    /// `lo..=hi`.
    pub fn new(lo: T, hi: T) -> Self {
        ValueRange { lo, hi }
    }
}

/// A value under a mask: matches when `field & mask == value`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Masked<T> {
    /// Expected value of the masked bits (bits outside `mask` must be 0).
    pub value: T,
    /// Which bits are compared.
    pub mask: T,
}

impl<T: Copy> Masked<T> {
    /// `field & mask == value`.
    pub fn new(value: T, mask: T) -> Self {
        Masked { value, mask }
    }
}

/// Connection tracking state bits (the same values as Open vSwitch's `ct_state`).
pub mod ct_state {
    /// First packet of a connection that is not committed.
    pub const NEW: u8 = 0x01;
    /// Part of a committed connection.
    pub const EST: u8 = 0x02;
    /// Related to a committed connection (an ICMP error about it).
    pub const REL: u8 = 0x04;
    /// Travelling in the reply direction of its connection.
    pub const RPL: u8 = 0x08;
    /// Invalid (e.g. a TCP segment without SYN and no connection, or an unrelated ICMP error).
    pub const INV: u8 = 0x10;
    /// Conntrack was consulted (set by every `ct_lookup`).
    pub const TRK: u8 = 0x20;

    /// Names and bits in display order.
    pub const NAMES: [(&str, u8); 6] = [
        ("new", NEW),
        ("est", EST),
        ("rel", REL),
        ("rpl", RPL),
        ("inv", INV),
        ("trk", TRK),
    ];
}

/// TCP flag bits as they appear in `tcp.flags`.
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u16 = 0x001;
    /// SYN.
    pub const SYN: u16 = 0x002;
    /// RST.
    pub const RST: u16 = 0x004;
    /// PSH.
    pub const PSH: u16 = 0x008;
    /// ACK.
    pub const ACK: u16 = 0x010;
    /// URG.
    pub const URG: u16 = 0x020;
    /// ECE.
    pub const ECE: u16 = 0x040;
    /// CWR.
    pub const CWR: u16 = 0x080;

    /// Names and bits in display order.
    pub const NAMES: [(&str, u16); 8] = [
        ("fin", FIN),
        ("syn", SYN),
        ("rst", RST),
        ("psh", PSH),
        ("ack", ACK),
        ("urg", URG),
        ("ece", ECE),
        ("cwr", CWR),
    ];
}

/// Ethertypes the IR and wire code name.
pub mod ethertype {
    /// IPv4.
    pub const IPV4: u16 = 0x0800;
    /// ARP.
    pub const ARP: u16 = 0x0806;
    /// IPv6.
    pub const IPV6: u16 = 0x86dd;
    /// 802.1Q VLAN tag.
    pub const VLAN: u16 = 0x8100;
    /// 802.1ad service VLAN tag (QinQ outer).
    pub const QINQ: u16 = 0x88a8;
}

/// IP protocol numbers the IR and wire code name.
pub mod ip_proto {
    /// ICMP for IPv4.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// SCTP.
    pub const SCTP: u8 = 132;
}

// ---------------------------------------------------------------------------------------------
// Actions
// ---------------------------------------------------------------------------------------------

/// What a flow does. See the module docs for which actions end the list.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Continue at the next table of the current datapath (ends the list).
    Next,
    /// Continue at table `table` of datapath `datapath` (ends the list). This is the
    /// switch → router → switch hop; combine with `SetInPort` to change the logical inport.
    Goto {
        /// Datapath name (may be the current one).
        datapath: String,
        /// Table name in that datapath.
        table: String,
    },
    /// Set the logical input port (`inport = "rp-net1";`), e.g. when entering a router.
    SetInPort(String),
    /// Set the logical output port (`outport = "p2";`) for later `outport ==` matches and `output;`.
    SetOutPort(String),
    /// Send a copy to a logical port: a local vif (with the port's tags pushed) or the port's
    /// host through a tunnel (`output("p2");`).
    Output(String),
    /// Send a copy to the port last set by `SetOutPort` (`output;`); nothing if none was set.
    OutputOutPort,
    /// Send a copy through a VXLAN tunnel (`tunnel(192.0.2.2, vni=5001);`).
    Tunnel {
        /// Remote tunnel endpoint.
        remote: IpAddr,
        /// VNI to put in the VXLAN header.
        vni: u32,
    },
    /// Send a copy to every member of a flood group except the input port (`flood("g");`).
    Flood(String),
    /// Choose one member of an ECMP group by a hash of the 5-tuple and run its actions in place
    /// of this one (`ecmp("g");`, ends the list).
    Ecmp(String),
    /// Rewrite the Ethernet source (`eth.src = M;`).
    SetEthSrc(MacAddr),
    /// Rewrite the Ethernet destination (`eth.dst = M;`).
    SetEthDst(MacAddr),
    /// Decrement the IPv4 TTL or IPv6 hop limit (`ip.ttl--;`); a packet whose TTL would reach 0
    /// is dropped (compile an `ip.ttl <= 1` flow with `icmp_error` before it to answer).
    DecTtl,
    /// Set the bits of register `reg` selected by `mask` to `value` (`reg0 = 0x5;`).
    SetReg {
        /// Register index, below [`NUM_REGS`].
        reg: u8,
        /// New value of the masked bits.
        value: u32,
        /// Which bits to change.
        mask: u32,
    },
    /// Push an 802.1Q tag with this VLAN id, outside any existing tag (`push_vlan(100);`).
    PushVlan(u16),
    /// Remove the outermost VLAN tag, if any (`pop_vlan;`).
    PopVlan,
    /// Look the packet up in connection tracking zone `zone` and set `ct_state`
    /// (`ct_lookup(zone=1);`).
    CtLookup {
        /// Conntrack zone (one per logical port or datapath, chosen by the compiler).
        zone: u16,
    },
    /// Commit the packet's connection in zone `zone` so its replies and ICMP errors are
    /// `est`/`rel` (`ct_commit(zone=1);`).
    CtCommit {
        /// Conntrack zone.
        zone: u16,
    },
    /// Drop the packet (`drop;`, ends the list).
    Drop,
    /// Drop and answer: TCP RST for TCP, ICMP/ICMPv6 port unreachable for UDP, administratively
    /// prohibited otherwise, sourced from the original destination (`reject;`, ends the list).
    Reject,
    /// Record a log entry for this packet with a rule id (`log(rule="sg-web-2");`).
    Log {
        /// Rule id reported in the log record.
        rule: String,
    },
    /// Answer an ARP request for the target address with `mac` (`arp_reply(M);`).
    ArpReply {
        /// The MAC to answer with.
        mac: MacAddr,
    },
    /// Answer an IPv6 neighbour solicitation with an advertisement for `mac`
    /// (`nd_na(M);` / `nd_na(M, router);`).
    NdAdvert {
        /// The MAC to answer with.
        mac: MacAddr,
        /// Set the router flag.
        router: bool,
    },
    /// Hand the packet to a local service the forwarder implements (`service(dhcp4, "ctx");`).
    LocalService {
        /// Which service.
        service: Service,
        /// Opaque key the compiler chose so the service finds its configuration
        /// (e.g. the subnet id).
        context: String,
    },
    /// Answer with an ICMP (IPv4) or ICMPv6 (IPv6) error from `src`
    /// (`icmp_error(time-exceeded, src=10.0.0.1);`).
    IcmpError {
        /// Which error.
        error: IcmpErrorKind,
        /// Source address of the error (the router's address on the ingress side).
        src: IpAddr,
    },
    /// Answer an ICMP/ICMPv6 echo request with an echo reply from its destination
    /// (`icmp_echo_reply;`).
    IcmpEchoReply,
}

/// Local services the forwarder implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    /// DHCPv4 server.
    Dhcp4,
    /// DHCPv6 server.
    Dhcp6,
    /// DNS resolver.
    Dns,
    /// IPv6 router advertisements (answers router solicitations).
    RouterAdvert,
}

/// Which ICMP error to generate; the family follows the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IcmpErrorKind {
    /// ICMP type 11 code 0 / ICMPv6 type 3 code 0.
    TimeExceeded,
    /// ICMP type 3 code 4 "fragmentation needed" / ICMPv6 type 2 "packet too big", with the MTU.
    PacketTooBig {
        /// The MTU to report.
        mtu: u16,
    },
    /// ICMP type 3 / ICMPv6 type 1 with a code.
    Unreachable(Unreachable),
}

/// Destination unreachable codes, mapped to each family's code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unreachable {
    /// No route (ICMP 3/0, ICMPv6 1/0).
    Net,
    /// Host unreachable (ICMP 3/1, ICMPv6 1/3).
    Host,
    /// Port unreachable (ICMP 3/3, ICMPv6 1/4).
    Port,
    /// Administratively prohibited (ICMP 3/13, ICMPv6 1/1).
    AdminProhibited,
}
