//! Microflow expressions for `weft trace`: a packet described as field assignments, turned into
//! real bytes that the executor then runs.
//!
//! # Syntax
//!
//! A microflow is a conjunction of terms joined by `&&`. A term is `field == value` or a bare
//! keyword. Each field may appear once.
//!
//! | term | meaning | default when absent |
//! |------|---------|---------------------|
//! | `inport == "p1"` | logical port the packet enters at | chosen by the caller |
//! | `eth.src == 02:00:00:00:00:01` | Ethernet source | the port's MAC (caller's default) |
//! | `eth.dst == 02:00:00:00:00:01` | Ethernet destination | caller's default (gateway MAC); broadcast for ARP requests; solicited-node multicast for ND |
//! | `vlan == 100` | one 802.1Q tag left on the frame (after the port's own tags) | untagged |
//! | `ip4`, `ip6`, `arp` | network protocol | implied by the fields used; `ip4` otherwise |
//! | `ip4.src == 10.0.0.5`, `ip4.dst == ...` | IPv4 addresses | source: caller's default; destination: required |
//! | `ip6.src == fd00::5`, `ip6.dst == ...` | IPv6 addresses | as for IPv4; ND defaults to the target's solicited-node group |
//! | `ip.ttl == 1` | TTL / hop limit | 64 (255 for ND) |
//! | `tcp`, `udp`, `icmp4`, `icmp6` | transport protocol | implied by the fields used; none otherwise |
//! | `tcp.src == 40000`, `tcp.dst == 80` | TCP ports | source 49152; destination required |
//! | `tcp.flags == syn`, `tcp.flags == syn\|ack`, `tcp.flags == 0x12` | TCP flags (fin, syn, rst, psh, ack, urg, ece, cwr) | syn |
//! | `udp.src == 68`, `udp.dst == 67` | UDP ports | source 49152; destination required |
//! | `icmp4.type == 8`, `icmp4.code == 0` (and `icmp6.`) | ICMP type and code | echo request (8 / 128), code 0 |
//! | `arp.op == 1`, `arp.spa`, `arp.tpa`, `arp.sha`, `arp.tha` | ARP fields | request; sender = the packet's source; `arp.tpa` required |
//! | `nd.target == fd00::1` | an ICMPv6 neighbour solicitation for this target | |
//! | `ct.new`, `ct.est`, `ct.rel`, `ct.rpl`, `ct.inv` | pretend conntrack returns these bits (see [`Microflow::ct_state`]) | real conntrack |
//! | `l3.len == 1500` | pad the payload so the packet from the IP header on is this long | no payload |
//!
//! Example: `inport == "p1" && ip4.dst == 10.1.1.6 && tcp.dst == 80 && tcp.flags == syn`.
//!
//! Errors say where: `at column 22 (`ip4.dts`): unknown field; known fields are ...`.

use std::fmt::{self, Display, Formatter};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::exec::{Conntrack, ExecOptions, Ingress, Loaded, Outcome, execute};
use crate::ir::{ct_state, tcp_flags};
use crate::mac::MacAddr;
use crate::wire::build::{L3Spec, L4Spec, PacketSpec};

/// A microflow that could not be parsed or built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MicroflowError {
    /// Byte offset of the offending token in the input (the input length at the end of input;
    /// [`MicroflowError::NO_POSITION`] for errors found while building, such as a missing
    /// required field).
    pub position: usize,
    /// The offending token (empty at the end of input or when building).
    pub token: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl MicroflowError {
    /// `position` of errors that are about the whole microflow, not one token.
    pub const NO_POSITION: usize = usize::MAX;
}

impl Display for MicroflowError {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.position == Self::NO_POSITION {
            write!(f, "{}", self.message)
        } else if self.token.is_empty() {
            write!(
                f,
                "at end of input (column {}): {}",
                self.position + 1,
                self.message
            )
        } else {
            write!(
                f,
                "at column {} (`{}`): {}",
                self.position + 1,
                self.token,
                self.message
            )
        }
    }
}

impl std::error::Error for MicroflowError {}

/// Network protocol of a microflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetProto {
    /// IPv4.
    Ip4,
    /// IPv6.
    Ip6,
    /// ARP.
    Arp,
}

/// Transport protocol of a microflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportProto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// ICMPv4.
    Icmp4,
    /// ICMPv6.
    Icmp6,
}

/// A parsed microflow: the fields the user set. Unset fields take defaults when built.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Microflow {
    /// `inport`.
    pub inport: Option<String>,
    /// `eth.src`.
    pub eth_src: Option<MacAddr>,
    /// `eth.dst`.
    pub eth_dst: Option<MacAddr>,
    /// `vlan`.
    pub vlan: Option<u16>,
    /// `ip4` / `ip6` / `arp`, explicit or implied.
    pub net: Option<NetProto>,
    /// `ip4.src` / `ip6.src`.
    pub ip_src: Option<IpAddr>,
    /// `ip4.dst` / `ip6.dst`.
    pub ip_dst: Option<IpAddr>,
    /// `ip.ttl`.
    pub ttl: Option<u8>,
    /// `tcp` / `udp` / `icmp4` / `icmp6`, explicit or implied.
    pub transport: Option<TransportProto>,
    /// `tcp.src` / `udp.src`.
    pub l4_src: Option<u16>,
    /// `tcp.dst` / `udp.dst`.
    pub l4_dst: Option<u16>,
    /// `tcp.flags`.
    pub tcp_flags: Option<u16>,
    /// `icmp4.type` / `icmp6.type`.
    pub icmp_type: Option<u8>,
    /// `icmp4.code` / `icmp6.code`.
    pub icmp_code: Option<u8>,
    /// `arp.op`.
    pub arp_op: Option<u16>,
    /// `arp.spa`.
    pub arp_spa: Option<Ipv4Addr>,
    /// `arp.tpa`.
    pub arp_tpa: Option<Ipv4Addr>,
    /// `arp.sha`.
    pub arp_sha: Option<MacAddr>,
    /// `arp.tha`.
    pub arp_tha: Option<MacAddr>,
    /// `nd.target`.
    pub nd_target: Option<Ipv6Addr>,
    /// `ct.*` bits (without `trk`).
    pub ct_bits: u8,
    /// `l3.len`.
    pub l3_len: Option<u16>,
}

/// Values the caller supplies for fields the microflow leaves unset, usually from the inport:
/// its MAC and addresses, and the MAC of its gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MicroflowDefaults {
    /// Ethernet source (the port's MAC).
    pub eth_src: MacAddr,
    /// Ethernet destination for IP packets (the gateway's MAC, or the peer's).
    pub eth_dst: MacAddr,
    /// IPv4 source (the port's address).
    pub ip4_src: Ipv4Addr,
    /// IPv6 source (the port's address).
    pub ip6_src: Ipv6Addr,
}

impl Default for MicroflowDefaults {
    fn default() -> Self {
        MicroflowDefaults {
            eth_src: MacAddr::new(0x02, 0, 0, 0, 0, 0x01),
            eth_dst: MacAddr::new(0x02, 0, 0, 0, 0, 0x02),
            ip4_src: Ipv4Addr::new(192, 0, 2, 1),
            ip6_src: "2001:db8::1".parse().unwrap_or(Ipv6Addr::LOCALHOST),
        }
    }
}

impl MicroflowDefaults {
    /// Defaults from a port of `program`: its MAC and first IPv4/IPv6 address; `gateway`
    /// becomes the Ethernet destination of IP packets.
    pub fn from_port(
        program: &crate::ir::Program,
        port: &str,
        gateway: MacAddr,
    ) -> Option<MicroflowDefaults> {
        let p = program.port(port)?;
        let base = MicroflowDefaults::default();
        Some(MicroflowDefaults {
            eth_src: p.mac.unwrap_or(base.eth_src),
            eth_dst: gateway,
            ip4_src: p
                .ips
                .iter()
                .find_map(|a| match a {
                    IpAddr::V4(a) => Some(*a),
                    IpAddr::V6(_) => None,
                })
                .unwrap_or(base.ip4_src),
            ip6_src: p
                .ips
                .iter()
                .find_map(|a| match a {
                    IpAddr::V6(a) => Some(*a),
                    IpAddr::V4(_) => None,
                })
                .unwrap_or(base.ip6_src),
        })
    }
}

/// Source port used when the microflow sets none.
pub const DEFAULT_SRC_PORT: u16 = 49152;

/// Every field name the parser knows, for error messages.
const FIELDS: &[&str] = &[
    "inport",
    "eth.src",
    "eth.dst",
    "vlan",
    "ip4.src",
    "ip4.dst",
    "ip6.src",
    "ip6.dst",
    "ip.ttl",
    "tcp.src",
    "tcp.dst",
    "tcp.flags",
    "udp.src",
    "udp.dst",
    "icmp4.type",
    "icmp4.code",
    "icmp6.type",
    "icmp6.code",
    "arp.op",
    "arp.spa",
    "arp.tpa",
    "arp.sha",
    "arp.tha",
    "nd.target",
    "l3.len",
];
const KEYWORDS: &[&str] = &[
    "ip4", "ip6", "arp", "tcp", "udp", "icmp4", "icmp6", "ct.new", "ct.est", "ct.rel", "ct.rpl",
    "ct.inv",
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    And,
    Eq,
    Str(String),
    Word(String),
}

fn tokenize(s: &str) -> Result<Vec<(usize, Tok)>, MicroflowError> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if s[i..].starts_with("&&") {
            out.push((i, Tok::And));
            i += 2;
        } else if s[i..].starts_with("==") {
            out.push((i, Tok::Eq));
            i += 2;
        } else if c == b'"' {
            let start = i;
            let Some(end) = s[i + 1..].find('"') else {
                return Err(MicroflowError {
                    position: start,
                    token: s[start..].to_string(),
                    message: "unterminated string; close it with \"".to_string(),
                });
            };
            out.push((start, Tok::Str(s[i + 1..i + 1 + end].to_string())));
            i += end + 2;
        } else if c == b'&' || c == b'=' || c == b'!' || c == b'(' || c == b')' {
            let end = s[i..].char_indices().nth(1).map_or(s.len(), |(n, _)| i + n);
            return Err(MicroflowError {
                position: i,
                token: s[i..end].to_string(),
                message:
                    "unexpected character; a microflow is `field == value` terms joined by `&&`"
                        .to_string(),
            });
        } else {
            let start = i;
            while i < b.len() {
                let c = b[i];
                if c.is_ascii_whitespace() || matches!(c, b'&' | b'=' | b'"' | b'!' | b'(' | b')') {
                    break;
                }
                i += 1;
            }
            // Multi-byte characters are kept whole: the loop only stops on ASCII bytes.
            out.push((start, Tok::Word(s[start..i].to_string())));
        }
    }
    Ok(out)
}

struct Cursor<'a> {
    toks: &'a [(usize, Tok)],
    i: usize,
    len: usize,
}

impl Cursor<'_> {
    fn err(&self, at: Option<&(usize, Tok)>, message: impl Into<String>) -> MicroflowError {
        let (position, token) = match at {
            Some((p, t)) => (
                *p,
                match t {
                    Tok::And => "&&".to_string(),
                    Tok::Eq => "==".to_string(),
                    Tok::Str(s) => format!("\"{s}\""),
                    Tok::Word(w) => w.clone(),
                },
            ),
            None => (self.len, String::new()),
        };
        MicroflowError {
            position,
            token,
            message: message.into(),
        }
    }
}

fn parse_u<T: TryFrom<u64>>(s: &str) -> Option<T> {
    let v = if let Some(h) = s.strip_prefix("0x") {
        u64::from_str_radix(h, 16).ok()?
    } else {
        s.parse::<u64>().ok()?
    };
    T::try_from(v).ok()
}

fn parse_flags(s: &str) -> Option<u16> {
    if let Some(v) = parse_u::<u16>(s) {
        return (v <= 0x0fff).then_some(v);
    }
    let mut bits = 0;
    for part in s.split('|') {
        let (_, b) = tcp_flags::NAMES.iter().find(|(n, _)| *n == part)?;
        bits |= b;
    }
    Some(bits)
}

/// Parses a microflow expression (syntax in the module docs).
pub fn parse_microflow(s: &str) -> Result<Microflow, MicroflowError> {
    let toks = tokenize(s)?;
    let mut c = Cursor {
        toks: &toks,
        i: 0,
        len: s.len(),
    };
    let mut m = Microflow::default();
    if toks.is_empty() {
        return Err(c.err(
            None,
            "empty microflow; write e.g. `inport == \"p1\" && ip4.dst == 10.0.0.1`",
        ));
    }
    loop {
        let Some(t) = c.toks.get(c.i) else {
            return Err(c.err(None, "expected a term after `&&`"));
        };
        let Tok::Word(name) = &t.1 else {
            return Err(c.err(Some(t), "expected a field name or keyword"));
        };
        c.i += 1;
        let name_tok = t;
        let next_is_eq = matches!(c.toks.get(c.i), Some((_, Tok::Eq)));
        if next_is_eq {
            c.i += 1;
            let Some(vt) = c.toks.get(c.i) else {
                return Err(c.err(None, format!("expected a value after `{name} ==`")));
            };
            c.i += 1;
            assign(&mut m, &c, name_tok, name, vt)?;
        } else {
            keyword(&mut m, &c, name_tok, name)?;
        }
        match c.toks.get(c.i) {
            None => break,
            Some((_, Tok::And)) => c.i += 1,
            Some(t) => return Err(c.err(Some(t), "expected `&&` between terms")),
        }
    }
    Ok(m)
}

fn set<T: PartialEq + Copy>(
    slot: &mut Option<T>,
    v: T,
    c: &Cursor<'_>,
    at: &(usize, Tok),
    what: &str,
) -> Result<(), MicroflowError> {
    match slot {
        Some(old) if *old != v => Err(c.err(
            Some(at),
            format!("{what} is already set to a different value; set each field once"),
        )),
        _ => {
            *slot = Some(v);
            Ok(())
        }
    }
}

fn set_net(
    m: &mut Microflow,
    c: &Cursor<'_>,
    at: &(usize, Tok),
    n: NetProto,
) -> Result<(), MicroflowError> {
    set(&mut m.net, n, c, at, "the network protocol (ip4/ip6/arp)")
}

fn set_transport(
    m: &mut Microflow,
    c: &Cursor<'_>,
    at: &(usize, Tok),
    t: TransportProto,
) -> Result<(), MicroflowError> {
    match t {
        TransportProto::Icmp4 => set_net(m, c, at, NetProto::Ip4)?,
        TransportProto::Icmp6 => set_net(m, c, at, NetProto::Ip6)?,
        _ => {
            if m.net == Some(NetProto::Arp) {
                return Err(c.err(Some(at), "ARP packets have no transport layer"));
            }
        }
    }
    set(
        &mut m.transport,
        t,
        c,
        at,
        "the transport protocol (tcp/udp/icmp4/icmp6)",
    )
}

fn keyword(
    m: &mut Microflow,
    c: &Cursor<'_>,
    at: &(usize, Tok),
    name: &str,
) -> Result<(), MicroflowError> {
    match name {
        "ip4" => set_net(m, c, at, NetProto::Ip4),
        "ip6" => set_net(m, c, at, NetProto::Ip6),
        "arp" => {
            if m.transport.is_some() {
                return Err(c.err(Some(at), "ARP packets have no transport layer"));
            }
            set_net(m, c, at, NetProto::Arp)
        }
        "tcp" => set_transport(m, c, at, TransportProto::Tcp),
        "udp" => set_transport(m, c, at, TransportProto::Udp),
        "icmp4" => set_transport(m, c, at, TransportProto::Icmp4),
        "icmp6" => set_transport(m, c, at, TransportProto::Icmp6),
        "ct.new" => {
            m.ct_bits |= ct_state::NEW;
            Ok(())
        }
        "ct.est" => {
            m.ct_bits |= ct_state::EST;
            Ok(())
        }
        "ct.rel" => {
            m.ct_bits |= ct_state::REL;
            Ok(())
        }
        "ct.rpl" => {
            m.ct_bits |= ct_state::RPL;
            Ok(())
        }
        "ct.inv" => {
            m.ct_bits |= ct_state::INV;
            Ok(())
        }
        _ if FIELDS.contains(&name) => {
            Err(c.err(Some(at), format!("`{name}` needs a value: `{name} == ...`")))
        }
        _ => Err(c.err(
            Some(at),
            format!(
                "unknown keyword; keywords are {}, fields are {}",
                KEYWORDS.join(", "),
                FIELDS.join(", ")
            ),
        )),
    }
}

fn assign(
    m: &mut Microflow,
    c: &Cursor<'_>,
    at: &(usize, Tok),
    name: &str,
    vt: &(usize, Tok),
) -> Result<(), MicroflowError> {
    let word = match &vt.1 {
        Tok::Word(w) => Some(w.as_str()),
        _ => None,
    };
    let bad = |what: &str| c.err(Some(vt), format!("`{name}` needs {what}"));
    let mac = || {
        word.and_then(|w| w.parse::<MacAddr>().ok())
            .ok_or_else(|| bad("a MAC like 02:00:00:00:00:01"))
    };
    let v4 = || {
        word.and_then(|w| w.parse::<Ipv4Addr>().ok())
            .ok_or_else(|| bad("an IPv4 address"))
    };
    let v6 = || {
        word.and_then(|w| w.parse::<Ipv6Addr>().ok())
            .ok_or_else(|| bad("an IPv6 address"))
    };
    let u8v = || {
        word.and_then(parse_u::<u8>)
            .ok_or_else(|| bad("a number 0..=255"))
    };
    let u16v = || {
        word.and_then(parse_u::<u16>)
            .ok_or_else(|| bad("a number 0..=65535"))
    };
    match name {
        "inport" => match &vt.1 {
            Tok::Str(s) => {
                if m.inport.as_ref().is_some_and(|o| o != s) {
                    return Err(c.err(Some(at), "inport is already set; set each field once"));
                }
                m.inport = Some(s.clone());
                Ok(())
            }
            _ => Err(c.err(Some(vt), "`inport` needs a quoted port name, e.g. \"p1\"")),
        },
        "eth.src" => set(&mut m.eth_src, mac()?, c, at, name),
        "eth.dst" => set(&mut m.eth_dst, mac()?, c, at, name),
        "vlan" | "vlan.vid" => {
            let v = u16v()?;
            if v > 4095 {
                return Err(bad("a VLAN id 0..=4095"));
            }
            set(&mut m.vlan, v, c, at, name)
        }
        "ip4.src" | "ip4.dst" => {
            set_net(m, c, at, NetProto::Ip4)?;
            let a = IpAddr::V4(v4()?);
            let slot = if name == "ip4.src" {
                &mut m.ip_src
            } else {
                &mut m.ip_dst
            };
            set(slot, a, c, at, name)
        }
        "ip6.src" | "ip6.dst" => {
            set_net(m, c, at, NetProto::Ip6)?;
            let a = IpAddr::V6(v6()?);
            let slot = if name == "ip6.src" {
                &mut m.ip_src
            } else {
                &mut m.ip_dst
            };
            set(slot, a, c, at, name)
        }
        "ip.ttl" | "ip.hlim" => set(&mut m.ttl, u8v()?, c, at, name),
        "tcp.src" | "tcp.dst" | "udp.src" | "udp.dst" => {
            let t = if name.starts_with("tcp") {
                TransportProto::Tcp
            } else {
                TransportProto::Udp
            };
            set_transport(m, c, at, t)?;
            let v = u16v()?;
            let slot = if name.ends_with("src") {
                &mut m.l4_src
            } else {
                &mut m.l4_dst
            };
            set(slot, v, c, at, name)
        }
        "tcp.flags" => {
            set_transport(m, c, at, TransportProto::Tcp)?;
            let f = word.and_then(parse_flags).ok_or_else(|| {
                bad("flags like syn, syn|ack or 0x12 (fin syn rst psh ack urg ece cwr)")
            })?;
            set(&mut m.tcp_flags, f, c, at, name)
        }
        "icmp4.type" | "icmp4.code" | "icmp6.type" | "icmp6.code" => {
            let t = if name.starts_with("icmp4") {
                TransportProto::Icmp4
            } else {
                TransportProto::Icmp6
            };
            set_transport(m, c, at, t)?;
            let v = u8v()?;
            let slot = if name.ends_with("type") {
                &mut m.icmp_type
            } else {
                &mut m.icmp_code
            };
            set(slot, v, c, at, name)
        }
        "arp.op" | "arp.spa" | "arp.tpa" | "arp.sha" | "arp.tha" => {
            if m.transport.is_some() {
                return Err(c.err(Some(at), "ARP packets have no transport layer"));
            }
            set_net(m, c, at, NetProto::Arp)?;
            match name {
                "arp.op" => set(&mut m.arp_op, u16v()?, c, at, name),
                "arp.spa" => set(&mut m.arp_spa, v4()?, c, at, name),
                "arp.tpa" => set(&mut m.arp_tpa, v4()?, c, at, name),
                "arp.sha" => set(&mut m.arp_sha, mac()?, c, at, name),
                _ => set(&mut m.arp_tha, mac()?, c, at, name),
            }
        }
        "nd.target" => {
            set_transport(m, c, at, TransportProto::Icmp6)?;
            set(&mut m.nd_target, v6()?, c, at, name)
        }
        "l3.len" => set(&mut m.l3_len, u16v()?, c, at, name),
        _ => Err(c.err(
            Some(at),
            format!("unknown field; known fields are {}", FIELDS.join(", ")),
        )),
    }
}

impl Microflow {
    /// The `ct_state` to pretend conntrack returns (for `ExecOptions::ct_override`), when the
    /// microflow set any `ct.*` keyword.
    pub fn ct_state(&self) -> Option<u8> {
        (self.ct_bits != 0).then_some(self.ct_bits | ct_state::TRK)
    }

    /// Builds the frame, filling unset fields from `d`. The frame carries only the `vlan` tag
    /// the microflow asked for; it enters at the logical port, after the port's own tags.
    pub fn build(&self, d: &MicroflowDefaults) -> Result<Vec<u8>, MicroflowError> {
        Ok(self.spec(d)?.build())
    }

    /// The [`PacketSpec`] [`Microflow::build`] serializes.
    pub fn spec(&self, d: &MicroflowDefaults) -> Result<PacketSpec, MicroflowError> {
        let missing = |what: &str| MicroflowError {
            position: MicroflowError::NO_POSITION,
            token: String::new(),
            message: format!("{what} is required; add `&& {what} == ...`"),
        };
        let eth_src = self.eth_src.unwrap_or(d.eth_src);
        let vlans: Vec<u16> = self.vlan.into_iter().collect();
        let net = self.net.unwrap_or(match self.ip_src.or(self.ip_dst) {
            Some(IpAddr::V6(_)) => NetProto::Ip6,
            _ => NetProto::Ip4,
        });
        if net == NetProto::Arp {
            let op = self.arp_op.unwrap_or(1);
            let tpa = self.arp_tpa.ok_or_else(|| missing("arp.tpa"))?;
            let eth_dst = self.eth_dst.unwrap_or(if op == 1 {
                MacAddr::BROADCAST
            } else {
                d.eth_dst
            });
            return Ok(PacketSpec {
                eth_src,
                eth_dst,
                vlans,
                l3: L3Spec::Arp {
                    op,
                    sha: self.arp_sha.unwrap_or(eth_src),
                    spa: self.arp_spa.unwrap_or(d.ip4_src),
                    tha: self.arp_tha.unwrap_or(MacAddr::ZERO),
                    tpa,
                },
            });
        }
        let v6 = net == NetProto::Ip6;
        let src = self.ip_src.unwrap_or(if v6 {
            IpAddr::V6(d.ip6_src)
        } else {
            IpAddr::V4(d.ip4_src)
        });
        let nd_dst = self.nd_target.map(|t| {
            let o = t.octets();
            Ipv6Addr::new(
                0xff02,
                0,
                0,
                0,
                0,
                1,
                0xff00 | u16::from(o[13]),
                u16::from_be_bytes([o[14], o[15]]),
            )
        });
        let dst = match (self.ip_dst, nd_dst) {
            (Some(a), _) => a,
            (None, Some(g)) => IpAddr::V6(g),
            (None, None) => return Err(missing(if v6 { "ip6.dst" } else { "ip4.dst" })),
        };
        let eth_dst = self.eth_dst.unwrap_or(match (dst, self.nd_target) {
            (IpAddr::V6(g), Some(_)) => MacAddr::ipv6_multicast(g),
            _ => d.eth_dst,
        });
        let header = if v6 { 40 } else { 20 };
        let l4_len = match (self.transport, self.nd_target) {
            (_, Some(_)) => 32,
            (Some(TransportProto::Tcp), _) => 20,
            (Some(TransportProto::Udp), _) => 8,
            (Some(TransportProto::Icmp4 | TransportProto::Icmp6), _) => 8,
            (None, _) => 0,
        };
        let payload = match self.l3_len {
            Some(n) if usize::from(n) < header + l4_len => {
                return Err(MicroflowError {
                    position: MicroflowError::NO_POSITION,
                    token: format!("l3.len == {n}"),
                    message: format!(
                        "l3.len must be at least {} (the headers) for this packet",
                        header + l4_len
                    ),
                });
            }
            Some(n) => vec![0u8; usize::from(n) - header - l4_len],
            None => Vec::new(),
        };
        let l4 = if let Some(target) = self.nd_target {
            if !payload.is_empty() {
                return Err(MicroflowError {
                    position: MicroflowError::NO_POSITION,
                    token: "l3.len".to_string(),
                    message: "a neighbour solicitation has a fixed length; drop l3.len".to_string(),
                });
            }
            L4Spec::Nd {
                advert: false,
                target,
                ll: Some(eth_src),
                flags: 0,
            }
        } else {
            match self.transport {
                Some(TransportProto::Tcp) => L4Spec::Tcp {
                    src: self.l4_src.unwrap_or(DEFAULT_SRC_PORT),
                    dst: self.l4_dst.ok_or_else(|| missing("tcp.dst"))?,
                    flags: self.tcp_flags.unwrap_or(tcp_flags::SYN),
                    seq: 1,
                    ack: 0,
                    payload,
                },
                Some(TransportProto::Udp) => L4Spec::Udp {
                    src: self.l4_src.unwrap_or(DEFAULT_SRC_PORT),
                    dst: self.l4_dst.ok_or_else(|| missing("udp.dst"))?,
                    payload,
                },
                Some(t @ (TransportProto::Icmp4 | TransportProto::Icmp6)) => {
                    let ty =
                        self.icmp_type
                            .unwrap_or(if t == TransportProto::Icmp4 { 8 } else { 128 });
                    let mut payload = payload;
                    // An NS/NA without `nd.target` still needs its target field (`::`) to be
                    // a valid message.
                    if t == TransportProto::Icmp6 && (ty == 135 || ty == 136) {
                        let mut p = vec![0u8; 16];
                        p.extend_from_slice(&payload[payload.len().min(16)..]);
                        payload = p;
                    }
                    L4Spec::Icmp {
                        ty,
                        code: self.icmp_code.unwrap_or(0),
                        rest: [0, 1, 0, 1],
                        payload,
                    }
                }
                None => L4Spec::Raw {
                    // 253 is reserved for experimentation (RFC 3692): matches nothing real.
                    proto: 253,
                    payload,
                },
            }
        };
        let ttl = self
            .ttl
            .unwrap_or(if self.nd_target.is_some() { 255 } else { 64 });
        Ok(PacketSpec {
            eth_src,
            eth_dst,
            vlans,
            l3: L3Spec::Ip { src, dst, ttl, l4 },
        })
    }
}

/// Runs a microflow through `loaded` with tracing on, as `weft trace` does: parses it,
/// builds the frame with `defaults`, enters it at its `inport` and executes it against `ct`
/// (pass a scratch [`Conntrack`] to leave the real one alone). `ct.*` keywords override
/// conntrack lookups.
pub fn trace_microflow(
    loaded: &Loaded,
    ct: &mut Conntrack,
    microflow: &str,
    defaults: &MicroflowDefaults,
    now: std::time::Duration,
) -> Result<Outcome, MicroflowError> {
    let m = parse_microflow(microflow)?;
    let Some(inport) = &m.inport else {
        return Err(MicroflowError {
            position: microflow.len(),
            token: String::new(),
            message: "inport is required; add `&& inport == \"<port>\"`".to_string(),
        });
    };
    let Some(port) = loaded.port_id(inport) else {
        let at = microflow.find(&format!("\"{inport}\"")).unwrap_or(0);
        return Err(MicroflowError {
            position: at,
            token: format!("\"{inport}\""),
            message: "no such port in this host's program".to_string(),
        });
    };
    let frame = m.build(defaults)?;
    let opts = ExecOptions {
        trace: true,
        ct_override: m.ct_state(),
    };
    Ok(execute(loaded, ct, Ingress::Port(port), &frame, now, &opts))
}

/// Renders the microflow back in the syntax [`parse_microflow`] reads, fields in a fixed order.
impl Display for Microflow {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let mut terms: Vec<String> = Vec::new();
        if let Some(p) = &self.inport {
            terms.push(format!("inport == {p:?}"));
        }
        if let Some(m) = self.eth_src {
            terms.push(format!("eth.src == {m}"));
        }
        if let Some(m) = self.eth_dst {
            terms.push(format!("eth.dst == {m}"));
        }
        if let Some(v) = self.vlan {
            terms.push(format!("vlan == {v}"));
        }
        let fam = match self.net {
            Some(NetProto::Ip6) => "ip6",
            _ => "ip4",
        };
        match self.net {
            Some(NetProto::Ip4) => terms.push("ip4".into()),
            Some(NetProto::Ip6) => terms.push("ip6".into()),
            Some(NetProto::Arp) => terms.push("arp".into()),
            None => {}
        }
        if let Some(a) = self.ip_src {
            terms.push(format!("{fam}.src == {a}"));
        }
        if let Some(a) = self.ip_dst {
            terms.push(format!("{fam}.dst == {a}"));
        }
        if let Some(t) = self.ttl {
            terms.push(format!("ip.ttl == {t}"));
        }
        let tname = match self.transport {
            Some(TransportProto::Tcp) => "tcp",
            Some(TransportProto::Udp) => "udp",
            Some(TransportProto::Icmp4) => "icmp4",
            Some(TransportProto::Icmp6) => "icmp6",
            None => "",
        };
        if !tname.is_empty() {
            terms.push(tname.to_string());
        }
        if let Some(p) = self.l4_src {
            terms.push(format!("{tname}.src == {p}"));
        }
        if let Some(p) = self.l4_dst {
            terms.push(format!("{tname}.dst == {p}"));
        }
        if let Some(fl) = self.tcp_flags {
            terms.push(format!("tcp.flags == {}", crate::ir::tcp_flag_names(fl)));
        }
        if let Some(t) = self.icmp_type {
            terms.push(format!("{tname}.type == {t}"));
        }
        if let Some(c) = self.icmp_code {
            terms.push(format!("{tname}.code == {c}"));
        }
        if let Some(v) = self.arp_op {
            terms.push(format!("arp.op == {v}"));
        }
        if let Some(v) = self.arp_spa {
            terms.push(format!("arp.spa == {v}"));
        }
        if let Some(v) = self.arp_tpa {
            terms.push(format!("arp.tpa == {v}"));
        }
        if let Some(v) = self.arp_sha {
            terms.push(format!("arp.sha == {v}"));
        }
        if let Some(v) = self.arp_tha {
            terms.push(format!("arp.tha == {v}"));
        }
        if let Some(v) = self.nd_target {
            terms.push(format!("nd.target == {v}"));
        }
        for (name, bit) in ct_state::NAMES {
            if bit != ct_state::TRK && self.ct_bits & bit != 0 {
                terms.push(format!("ct.{name}"));
            }
        }
        if let Some(n) = self.l3_len {
            terms.push(format!("l3.len == {n}"));
        }
        f.write_str(&terms.join(" && "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Frag, parse, prereq};
    use proptest::prelude::*;

    #[test]
    fn the_example_parses() {
        let m = parse_microflow(
            r#"inport == "p1" && ip4.dst == 10.1.1.6 && tcp.dst == 80 && tcp.flags == syn"#,
        )
        .unwrap();
        assert_eq!(m.inport.as_deref(), Some("p1"));
        assert_eq!(m.ip_dst, Some("10.1.1.6".parse().unwrap()));
        assert_eq!(m.net, Some(NetProto::Ip4));
        assert_eq!(m.transport, Some(TransportProto::Tcp));
        assert_eq!(m.l4_dst, Some(80));
        assert_eq!(m.tcp_flags, Some(tcp_flags::SYN));
        let d = MicroflowDefaults::default();
        let f = m.build(&d).unwrap();
        let k = parse(&f).unwrap().key;
        assert_eq!(k.ip_src, IpAddr::V4(d.ip4_src));
        assert_eq!(
            (k.l4_src, k.l4_dst, k.tcp_flags),
            (DEFAULT_SRC_PORT, 80, tcp_flags::SYN)
        );
        assert_eq!((k.eth_src, k.eth_dst), (d.eth_src, d.eth_dst));
    }

    #[test]
    fn errors_point_at_the_token() {
        let e = parse_microflow(r#"inport == "p1" && ip4.dts == 10.0.0.1"#).unwrap_err();
        assert_eq!(e.position, 18);
        assert_eq!(e.token, "ip4.dts");
        assert!(
            e.to_string()
                .starts_with("at column 19 (`ip4.dts`): unknown field"),
            "{e}"
        );
        let e = parse_microflow("ip4.dst == 10.0.0.300").unwrap_err();
        assert_eq!((e.position, e.token.as_str()), (11, "10.0.0.300"));
        let e = parse_microflow("tcp.dst == 80 && udp.src == 1").unwrap_err();
        assert_eq!(e.token, "udp.src");
        let e = parse_microflow("tcp.dst == 80 tcp.src == 1").unwrap_err();
        assert_eq!((e.position, e.token.as_str()), (14, "tcp.src"));
        let e = parse_microflow("tcp.dst ==").unwrap_err();
        assert_eq!(e.position, 10);
        let e = parse_microflow("ip4.dst == 1.2.3.4 && ip6.src == ::1").unwrap_err();
        assert_eq!(e.token, "ip6.src");
        let e = parse_microflow("tcp.flags == syn|fun").unwrap_err();
        assert!(e.message.contains("flags like"), "{e}");
        assert!(parse_microflow("").is_err());
        assert!(parse_microflow("inport == p1").is_err());
        assert!(parse_microflow("!ct.est").is_err());
        let m = parse_microflow("ip4.src == 10.0.0.1 && tcp").unwrap();
        let e = m.build(&MicroflowDefaults::default()).unwrap_err();
        assert!(e.message.contains("ip4.dst is required"), "{e}");
    }

    #[test]
    fn arp_nd_and_lengths() {
        let d = MicroflowDefaults::default();
        let m = parse_microflow("arp.tpa == 10.0.0.1").unwrap();
        let k = parse(&m.build(&d).unwrap()).unwrap().key;
        assert_eq!(
            (k.arp_op, k.arp_tpa, k.arp_spa),
            (1, Ipv4Addr::new(10, 0, 0, 1), d.ip4_src)
        );
        assert!(k.eth_dst.is_broadcast());
        let m = parse_microflow("nd.target == fd00::1").unwrap();
        let k = parse(&m.build(&d).unwrap()).unwrap().key;
        assert_eq!(k.prereq & prereq::ND, prereq::ND);
        assert_eq!(k.ip_dst, "ff02::1:ff00:1".parse::<IpAddr>().unwrap());
        assert_eq!(k.eth_dst, MacAddr::new(0x33, 0x33, 0xff, 0, 0, 1));
        assert_eq!(k.nd_ll, d.eth_src);
        let m =
            parse_microflow("ip4.dst == 10.0.0.9 && udp.dst == 53 && l3.len == 1500 && vlan == 7")
                .unwrap();
        let f = m.build(&d).unwrap();
        let p = parse(&f).unwrap();
        assert_eq!(f.len() - p.layout.l3, 1500);
        assert_eq!(p.key.vlan_ids(), &[7]);
        assert!(
            parse_microflow("ip4.dst == 10.0.0.9 && tcp.dst == 1 && l3.len == 30")
                .unwrap()
                .build(&d)
                .is_err()
        );
        let m = parse_microflow("ip4.dst == 10.0.0.9 && ct.est && ct.rpl && icmp4").unwrap();
        assert_eq!(
            m.ct_state(),
            Some(ct_state::EST | ct_state::RPL | ct_state::TRK)
        );
        let k = parse(&m.build(&d).unwrap()).unwrap().key;
        assert_eq!((k.icmp_type, k.frag), (8, Frag::No));
    }

    #[test]
    fn trace_a_microflow_through_a_program() {
        use crate::exec::Verdict;
        use crate::ir::*;
        let mut p = Program::new("h1");
        p.datapaths.push(Datapath::new(
            "net",
            DatapathKind::Switch,
            5,
            &["pre", "acl", "l2"],
        ));
        p.ports.push(
            LogicalPort::local("p1", "net", "tap1", vec![]).with_addresses(
                MacAddr::new(2, 0, 0, 0, 0, 1),
                vec!["10.1.1.5".parse().unwrap()],
            ),
        );
        p.ports.push(LogicalPort::remote(
            "p2",
            "net",
            "h2",
            "192.0.2.2".parse().unwrap(),
        ));
        p.add_flow(
            "net",
            "pre",
            Flow::new(
                1,
                Match::new(),
                vec![Action::CtLookup { zone: 1 }, Action::Next],
            ),
        );
        p.add_flow(
            "net",
            "acl",
            Flow::new(10, Match::new().tcp_dst(22), vec![Action::Drop]).origin(Origin::new(
                "security-group-rule",
                "r9",
                "no ssh",
            )),
        );
        p.add_flow(
            "net",
            "acl",
            Flow::new(
                5,
                Match::new().ct(ct_state::EST, ct_state::EST),
                vec![Action::Next],
            ),
        );
        p.add_flow(
            "net",
            "acl",
            Flow::new(1, Match::new().tcp(), vec![Action::Drop]),
        );
        p.add_flow(
            "net",
            "l2",
            Flow::new(
                1,
                Match::new().eth_dst(MacAddr::new(2, 0, 0, 0, 0, 2)),
                vec![Action::output("p2")],
            ),
        );
        let l = Loaded::load(&p).unwrap();
        let d = MicroflowDefaults::from_port(&p, "p1", MacAddr::new(2, 0, 0, 0, 0, 2)).unwrap();
        let mut ct = Conntrack::default();
        let now = std::time::Duration::ZERO;
        let out = trace_microflow(
            &l,
            &mut ct,
            r#"inport == "p1" && ip4.dst == 10.1.1.6 && tcp.dst == 22"#,
            &d,
            now,
        )
        .unwrap();
        let t = out.trace.unwrap();
        assert!(
            matches!(&t.verdict, Verdict::Dropped { origin: Some(o), .. } if o.id == "r9"),
            "{t}"
        );
        let out = trace_microflow(
            &l,
            &mut ct,
            r#"inport == "p1" && ip4.dst == 10.1.1.6 && tcp.dst == 80 && ct.est"#,
            &d,
            now,
        )
        .unwrap();
        let t = out.trace.unwrap();
        assert_eq!(
            t.verdict.to_string(),
            r#"delivered to port "p2" on host "h2" via VNI 5 to 192.0.2.2"#,
            "{t}"
        );
        let e = trace_microflow(
            &l,
            &mut ct,
            r#"inport == "nope" && ip4.dst == 1.1.1.1"#,
            &d,
            now,
        )
        .unwrap_err();
        assert_eq!((e.position, e.token.as_str()), (10, "\"nope\""));
    }

    fn arb_microflow() -> impl Strategy<Value = Microflow> {
        let mac = any::<[u8; 6]>().prop_map(MacAddr);
        let ip = prop_oneof![
            (any::<[u8; 4]>(), any::<[u8; 4]>()).prop_map(|(s, d)| (
                NetProto::Ip4,
                IpAddr::from(s),
                IpAddr::from(d)
            )),
            (any::<[u8; 16]>(), any::<[u8; 16]>()).prop_map(|(s, d)| (
                NetProto::Ip6,
                IpAddr::from(s),
                IpAddr::from(d)
            )),
        ];
        let transport = prop_oneof![
            (any::<u16>(), any::<u16>(), 0u16..0x1000).prop_map(|(s, d, f)| (
                Some(TransportProto::Tcp),
                Some(s),
                Some(d),
                Some(f),
                None,
                None
            )),
            (any::<u16>(), any::<u16>()).prop_map(|(s, d)| (
                Some(TransportProto::Udp),
                Some(s),
                Some(d),
                None,
                None,
                None
            )),
            (any::<u8>(), any::<u8>()).prop_map(|(t, c)| (
                None,
                None,
                None,
                None,
                Some(t),
                Some(c)
            )),
        ];
        (
            proptest::option::of("[a-z][a-z0-9-]{0,8}"),
            proptest::option::of(mac.clone()),
            proptest::option::of(mac),
            proptest::option::of(0u16..4096),
            ip,
            proptest::option::of(any::<u8>()),
            transport,
            0u8..32,
        )
            .prop_map(
                |(
                    inport,
                    eth_src,
                    eth_dst,
                    vlan,
                    (net, s, d),
                    ttl,
                    (t, l4s, l4d, fl, it, ic),
                    ct,
                )| {
                    let transport = match (t, it) {
                        (Some(t), _) => Some(t),
                        (None, Some(_)) => Some(if net == NetProto::Ip4 {
                            TransportProto::Icmp4
                        } else {
                            TransportProto::Icmp6
                        }),
                        (None, None) => None,
                    };
                    Microflow {
                        inport,
                        eth_src,
                        eth_dst,
                        vlan,
                        net: Some(net),
                        ip_src: Some(s),
                        ip_dst: Some(d),
                        ttl,
                        transport,
                        l4_src: l4s,
                        l4_dst: l4d,
                        tcp_flags: fl,
                        icmp_type: it,
                        icmp_code: ic,
                        ct_bits: ct & !ct_state::TRK,
                        ..Microflow::default()
                    }
                },
            )
    }

    proptest! {
        /// Display then parse gives the same microflow; build then wire-parse gives back every
        /// field the microflow set.
        #[test]
        fn round_trips(m in arb_microflow()) {
            let text = m.to_string();
            let back = parse_microflow(&text).map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
            prop_assert_eq!(&back, &m);
            let d = MicroflowDefaults::default();
            let f = m.build(&d).unwrap();
            let k = parse(&f).unwrap().key;
            prop_assert_eq!(k.eth_src, m.eth_src.unwrap_or(d.eth_src));
            prop_assert_eq!(k.eth_dst, m.eth_dst.unwrap_or(d.eth_dst));
            prop_assert_eq!(k.vlan_ids(), m.vlan.as_slice());
            prop_assert_eq!(Some(k.ip_src), m.ip_src);
            prop_assert_eq!(Some(k.ip_dst), m.ip_dst);
            prop_assert_eq!(k.ip_ttl, m.ttl.unwrap_or(64));
            match m.transport {
                Some(TransportProto::Tcp) => {
                    prop_assert_eq!((k.l4_src, k.l4_dst, k.tcp_flags), (m.l4_src.unwrap(), m.l4_dst.unwrap(), m.tcp_flags.unwrap()));
                }
                Some(TransportProto::Udp) => {
                    prop_assert_eq!((k.l4_src, k.l4_dst), (m.l4_src.unwrap(), m.l4_dst.unwrap()));
                }
                Some(_) => {
                    prop_assert_eq!((k.icmp_type, k.icmp_code), (m.icmp_type.unwrap(), m.icmp_code.unwrap()));
                }
                None => prop_assert_eq!(k.ip_proto, 253),
            }
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,80}") {
            let _ = parse_microflow(&s);
        }
    }
}
