//! The flow key: a compact, hashable summary of every header field the pipeline can match.

use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::arp::ArpPacket;
use super::ethernet::EthernetFrame;
use super::icmp::{self, IcmpMessage};
use super::ip::{Ipv4Packet, Ipv6Packet, walk_ipv6_extensions};
use super::l4::{TcpSegment, UdpDatagram};
use super::{ParseError, field};
use crate::ir::{ethertype, ip_proto};
use crate::mac::MacAddr;

/// Bits of [`FlowKey::prereq`]: which protocols the packet carries, so implied match
/// prerequisites (`tcp.dst` implies `tcp`) are one mask test.
pub mod prereq {
    /// IPv4 header parsed.
    pub const IP4: u16 = 0x001;
    /// IPv6 header parsed.
    pub const IP6: u16 = 0x002;
    /// ARP packet parsed.
    pub const ARP: u16 = 0x004;
    /// TCP, UDP or SCTP ports present (not a later fragment).
    pub const L4_PORTS: u16 = 0x008;
    /// TCP header parsed.
    pub const TCP: u16 = 0x010;
    /// ICMPv4 header parsed.
    pub const ICMP4: u16 = 0x020;
    /// ICMPv6 header parsed.
    pub const ICMP6: u16 = 0x040;
    /// ICMPv6 neighbour solicitation or advertisement parsed.
    pub const ND: u16 = 0x080;
    /// Any IP.
    pub const IP: u16 = 0x100;
    /// UDP header parsed.
    pub const UDP: u16 = 0x200;
    /// ICMPv4 or ICMPv6 header parsed.
    pub const ICMP: u16 = 0x400;
}

/// Fragmentation state of an IP packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Frag {
    /// Not a fragment.
    #[default]
    No,
    /// First fragment (carries the L4 header).
    First,
    /// Later fragment (no L4 header; ports read as 0).
    Later,
}

/// Every header field the pipeline matches on, for one frame. Fields a packet does not have
/// are zero. This is the exact key a flow cache can hash: two frames with equal keys entering
/// at the same place take the same path through the same program (see `exec::Decision` for
/// the two things it does not cover: conntrack state and packet length).
///
/// `Hash` packs the fields into a few machine words (flow caches hash one key per packet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowKey {
    /// VLAN ids on the frame, outermost first (only the first `n_vlans` are meaningful).
    pub vlans: [u16; 2],
    /// Number of VLAN tags (0..=2).
    pub n_vlans: u8,
    /// Ethernet destination.
    pub eth_dst: MacAddr,
    /// Ethernet source.
    pub eth_src: MacAddr,
    /// Ethertype after the tags.
    pub eth_type: u16,
    /// IPv4/IPv6 source (0.0.0.0 when not IP).
    pub ip_src: IpAddr,
    /// IPv4/IPv6 destination (0.0.0.0 when not IP).
    pub ip_dst: IpAddr,
    /// IP protocol / IPv6 upper-layer header.
    pub ip_proto: u8,
    /// TTL / hop limit.
    pub ip_ttl: u8,
    /// Fragment state.
    pub frag: Frag,
    /// TCP/UDP/SCTP source port; the identifier for ICMP echo request/reply.
    pub l4_src: u16,
    /// TCP/UDP/SCTP destination port.
    pub l4_dst: u16,
    /// TCP flags (12 bits).
    pub tcp_flags: u16,
    /// ICMP/ICMPv6 type.
    pub icmp_type: u8,
    /// ICMP/ICMPv6 code.
    pub icmp_code: u8,
    /// ARP operation.
    pub arp_op: u16,
    /// ARP sender hardware address.
    pub arp_sha: MacAddr,
    /// ARP sender protocol address.
    pub arp_spa: Ipv4Addr,
    /// ARP target hardware address.
    pub arp_tha: MacAddr,
    /// ARP target protocol address.
    pub arp_tpa: Ipv4Addr,
    /// ND target address.
    pub nd_target: Ipv6Addr,
    /// ND source (NS) or target (NA) link-layer address option.
    pub nd_ll: MacAddr,
    /// Protocol presence bits, see [`prereq`].
    pub prereq: u16,
}

impl Default for FlowKey {
    fn default() -> Self {
        FlowKey {
            vlans: [0; 2],
            n_vlans: 0,
            eth_dst: MacAddr::ZERO,
            eth_src: MacAddr::ZERO,
            eth_type: 0,
            ip_src: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            ip_dst: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            ip_proto: 0,
            ip_ttl: 0,
            frag: Frag::No,
            l4_src: 0,
            l4_dst: 0,
            tcp_flags: 0,
            icmp_type: 0,
            icmp_code: 0,
            arp_op: 0,
            arp_sha: MacAddr::ZERO,
            arp_spa: Ipv4Addr::UNSPECIFIED,
            arp_tha: MacAddr::ZERO,
            arp_tpa: Ipv4Addr::UNSPECIFIED,
            nd_target: Ipv6Addr::UNSPECIFIED,
            nd_ll: MacAddr::ZERO,
            prereq: 0,
        }
    }
}

/// An address as one integer (IPv4 mapped into IPv6), for hashing.
#[inline]
pub(crate) fn ip_word(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(u32::from(a)) | (0xffff << 32),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl Hash for FlowKey {
    #[inline]
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(self.hash64());
    }
}

/// Odd multipliers for [`FlowKey::hash64`]'s lanes.
const LANES: [u64; 9] = [
    0x9e37_79b9_7f4a_7c15,
    0xc2b2_ae3d_27d4_eb4f,
    0x1656_67b1_9e37_79f9,
    0x85eb_ca77_c2b2_ae63,
    0x27d4_eb2f_1656_67c5,
    0xff51_afd7_ed55_8ccd,
    0xc4ce_b9fe_1a85_ec53,
    0x94d0_49bb_1331_11eb,
    0xbf58_476d_1ce4_e5b9,
];

#[inline]
fn fold128(v: u128) -> u64 {
    (v as u64) ^ ((v >> 64) as u64).rotate_left(32)
}

/// The splitmix64 finalizer: spreads every input bit over the whole word.
#[inline]
fn finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl FlowKey {
    /// A well-mixed 64-bit hash of every field, computed with independent multiplies so it
    /// costs a few nanoseconds (flow caches hash one key per packet). Equal keys hash equal.
    #[inline]
    pub fn hash64(&self) -> u64 {
        let w = [
            (self.eth_dst.to_u64() << 16) | u64::from(self.eth_type),
            (self.eth_src.to_u64() << 16)
                | (u64::from(self.n_vlans) << 14)
                | u64::from(self.prereq & 0x3fff),
            (u64::from(self.vlans[0]) << 16)
                | u64::from(self.vlans[1])
                | (u64::from(self.tcp_flags) << 32)
                | (u64::from(self.icmp_code) << 48),
            fold128(ip_word(self.ip_src)),
            fold128(ip_word(self.ip_dst)),
            u64::from(self.ip_proto)
                | (u64::from(self.ip_ttl) << 8)
                | ((self.frag as u64) << 16)
                | (u64::from(self.l4_src) << 24)
                | (u64::from(self.l4_dst) << 40)
                | (u64::from(self.icmp_type) << 56),
        ];
        let mut acc = 0u64;
        for (x, k) in w.iter().zip(LANES) {
            acc = acc.wrapping_add(x.wrapping_mul(k));
        }
        // ARP and ND fields are zero unless those protocols are present.
        if self.prereq & prereq::ARP != 0 {
            acc = acc
                .wrapping_add(
                    ((self.arp_sha.to_u64() << 16) | u64::from(self.arp_op)).wrapping_mul(LANES[6]),
                )
                .wrapping_add(
                    (self.arp_tha.to_u64()
                        ^ (u64::from(u32::from(self.arp_spa)) << 32)
                        ^ u64::from(u32::from(self.arp_tpa)).rotate_left(48))
                    .wrapping_mul(LANES[7]),
                );
        }
        if self.prereq & prereq::ND != 0 {
            acc = acc
                .wrapping_add(fold128(u128::from(self.nd_target)).wrapping_mul(LANES[8]))
                .wrapping_add(self.nd_ll.to_u64().wrapping_mul(LANES[6]));
        }
        finalize(acc)
    }
}

impl FlowKey {
    /// True when the packet is IPv4 or IPv6.
    pub fn is_ip(&self) -> bool {
        self.prereq & prereq::IP != 0
    }

    /// The VLAN ids present, outermost first.
    pub fn vlan_ids(&self) -> &[u16] {
        &self.vlans[..usize::from(self.n_vlans.min(2))]
    }
}

/// Header offsets inside the frame the key was parsed from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Layout {
    /// Ethernet header length including tags; the L3 header starts here.
    pub l3: usize,
    /// Start of the L4 header, when one was parsed.
    pub l4: Option<usize>,
    /// End of the L3 packet (IP total length; Ethernet padding excluded). Equals the frame
    /// length for non-IP frames.
    pub end: usize,
}

/// A parsed frame: its key and its layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Parsed {
    /// The header summary.
    pub key: FlowKey,
    /// Where the headers are.
    pub layout: Layout,
}

impl Parsed {
    /// Adjusts key and layout after the outermost `n` VLAN tags were removed from the frame.
    pub fn strip_vlans(&mut self, n: usize) {
        let n = n.min(usize::from(self.key.n_vlans));
        if n == 0 {
            return;
        }
        let k = &mut self.key;
        if n == 1 {
            k.vlans = [k.vlans[1], 0];
        } else {
            k.vlans = [0, 0];
        }
        k.n_vlans -= n as u8;
        let d = n * super::ethernet::TAG_LEN;
        self.layout.l3 -= d;
        self.layout.l4 = self.layout.l4.map(|x| x - d);
        self.layout.end -= d;
    }

    /// Adjusts key and layout after one tag with `vid` was pushed outermost.
    pub fn push_vlan(&mut self, vid: u16) {
        let k = &mut self.key;
        k.vlans = [vid & 0x0fff, k.vlans[0]];
        k.n_vlans = (k.n_vlans + 1).min(2);
        let d = super::ethernet::TAG_LEN;
        self.layout.l3 += d;
        self.layout.l4 = self.layout.l4.map(|x| x + d);
        self.layout.end += d;
    }
}

/// Parses an Ethernet frame into its flow key and layout. Never panics; frames the pipeline
/// could misjudge (truncated or malformed headers) are errors.
pub fn parse(frame: &[u8]) -> Result<Parsed, ParseError> {
    let eth = EthernetFrame::new_checked(frame)?;
    let mut key = FlowKey {
        eth_dst: eth.dst(),
        eth_src: eth.src(),
        eth_type: eth.ethertype(),
        n_vlans: eth.tag_count() as u8,
        vlans: [eth.vid(0).unwrap_or(0), eth.vid(1).unwrap_or(0)],
        ..FlowKey::default()
    };
    let l3 = eth.header_len();
    let mut layout = Layout {
        l3,
        l4: None,
        end: frame.len(),
    };
    let payload = eth.payload();
    match key.eth_type {
        ethertype::ARP => {
            let a = ArpPacket::new_checked(payload)?;
            key.arp_op = a.op();
            key.arp_sha = a.sha();
            key.arp_spa = a.spa();
            key.arp_tha = a.tha();
            key.arp_tpa = a.tpa();
            key.prereq |= prereq::ARP;
        }
        ethertype::IPV4 => {
            let ip = Ipv4Packet::new_checked(payload)?;
            key.ip_src = IpAddr::V4(ip.src());
            key.ip_dst = IpAddr::V4(ip.dst());
            key.ip_proto = ip.protocol();
            key.ip_ttl = ip.ttl();
            key.prereq |= prereq::IP | prereq::IP4;
            layout.end = l3 + ip.total_len();
            key.frag = if ip.frag_offset() != 0 {
                Frag::Later
            } else if ip.more_frags() {
                Frag::First
            } else {
                Frag::No
            };
            if key.frag != Frag::Later {
                let l4 = l3 + ip.header_len();
                layout.l4 = Some(l4);
                parse_l4(&mut key, false, ip.payload())?;
            }
        }
        ethertype::IPV6 => {
            let ip = Ipv6Packet::new_checked(payload)?;
            key.ip_src = IpAddr::V6(ip.src());
            key.ip_dst = IpAddr::V6(ip.dst());
            key.ip_ttl = ip.hop_limit();
            key.prereq |= prereq::IP | prereq::IP6;
            layout.end = l3 + super::ip::IPV6_LEN + ip.payload_len();
            let up = walk_ipv6_extensions(ip.next_header(), ip.payload())?;
            key.ip_proto = up.proto;
            key.frag = match (up.fragment, up.later_fragment) {
                (_, true) => Frag::Later,
                (true, false) => Frag::First,
                _ => Frag::No,
            };
            if !up.later_fragment {
                layout.l4 = Some(l3 + super::ip::IPV6_LEN + up.offset);
                let upper = ip.payload().get(up.offset..).unwrap_or(&[]);
                parse_l4(&mut key, true, upper)?;
            }
        }
        _ => {}
    }
    Ok(Parsed { key, layout })
}

fn parse_l4(key: &mut FlowKey, v6: bool, b: &[u8]) -> Result<(), ParseError> {
    match key.ip_proto {
        ip_proto::TCP => {
            let t = TcpSegment::new_checked(b)?;
            key.l4_src = t.src_port();
            key.l4_dst = t.dst_port();
            key.tcp_flags = t.flags();
            key.prereq |= prereq::TCP | prereq::L4_PORTS;
        }
        ip_proto::UDP => {
            let u = UdpDatagram::new_checked(b)?;
            key.l4_src = u.src_port();
            key.l4_dst = u.dst_port();
            key.prereq |= prereq::UDP | prereq::L4_PORTS;
        }
        ip_proto::SCTP => {
            if b.len() < 12 {
                return Err(ParseError::Truncated {
                    layer: "sctp",
                    need: 12,
                    have: b.len(),
                });
            }
            key.l4_src = field::be16(b, 0).unwrap_or(0);
            key.l4_dst = field::be16(b, 2).unwrap_or(0);
            key.prereq |= prereq::L4_PORTS;
        }
        ip_proto::ICMP if !v6 => {
            let m = IcmpMessage::new_checked(b)?;
            key.icmp_type = m.msg_type();
            key.icmp_code = m.code();
            key.prereq |= prereq::ICMP4 | prereq::ICMP;
            if matches!(key.icmp_type, icmp::v4::ECHO_REQUEST | icmp::v4::ECHO_REPLY) {
                key.l4_src = m.echo_ident();
            }
        }
        ip_proto::ICMPV6 if v6 => {
            let m = IcmpMessage::new_checked(b)?;
            key.icmp_type = m.msg_type();
            key.icmp_code = m.code();
            key.prereq |= prereq::ICMP6 | prereq::ICMP;
            match key.icmp_type {
                icmp::v6::ECHO_REQUEST | icmp::v6::ECHO_REPLY => key.l4_src = m.echo_ident(),
                icmp::v6::NEIGHBOR_SOLICIT | icmp::v6::NEIGHBOR_ADVERT => {
                    let nd = icmp::parse_nd(b)?;
                    key.nd_target = nd.target;
                    key.nd_ll = nd.link_layer.unwrap_or(MacAddr::ZERO);
                    key.prereq |= prereq::ND;
                }
                _ => {}
            }
        }
        _ => {}
    }
    Ok(())
}
