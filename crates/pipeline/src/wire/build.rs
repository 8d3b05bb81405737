//! Building packets: the replies and errors the pipeline generates, and whole frames from a
//! [`PacketSpec`] for tests and `weft trace`. Every builder fills in correct checksums.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::ethernet::emit_header;
use super::icmp::{self, v4, v6};
use super::ip::{IPV4_MIN_LEN, IPV6_LEN, emit_ipv4, emit_ipv6};
use super::key::{Frag, Parsed, prereq};
use super::l4::{TcpSegment, emit_tcp, emit_udp};
use super::{arp, checksum};
use crate::ir::{IcmpErrorKind, Unreachable, ethertype, ip_proto, tcp_flags};
use crate::mac::MacAddr;

/// TTL / hop limit of packets this crate generates.
pub const GENERATED_TTL: u8 = 64;
/// Largest ICMPv4 error (RFC 1812 section 4.3.2.3).
pub const ICMP4_ERROR_MAX: usize = 576;
/// Largest ICMPv6 error (RFC 4443 section 2.4: the IPv6 minimum MTU).
pub const ICMP6_ERROR_MAX: usize = 1280;

/// A whole frame, described field by field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketSpec {
    /// Ethernet source.
    pub eth_src: MacAddr,
    /// Ethernet destination.
    pub eth_dst: MacAddr,
    /// VLAN ids, outermost first.
    pub vlans: Vec<u16>,
    /// What follows the Ethernet header.
    pub l3: L3Spec,
}

/// The network layer of a [`PacketSpec`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L3Spec {
    /// A raw payload under an arbitrary ethertype.
    Raw {
        /// Ethertype.
        eth_type: u16,
        /// Bytes after the Ethernet header.
        payload: Vec<u8>,
    },
    /// An Ethernet/IPv4 ARP packet.
    Arp {
        /// Operation.
        op: u16,
        /// Sender hardware address.
        sha: MacAddr,
        /// Sender protocol address.
        spa: Ipv4Addr,
        /// Target hardware address.
        tha: MacAddr,
        /// Target protocol address.
        tpa: Ipv4Addr,
    },
    /// IPv4 or IPv6 (chosen by the address family; `src` and `dst` must agree).
    Ip {
        /// Source.
        src: IpAddr,
        /// Destination.
        dst: IpAddr,
        /// TTL / hop limit.
        ttl: u8,
        /// Transport.
        l4: L4Spec,
    },
}

/// The transport layer of an IP [`PacketSpec`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum L4Spec {
    /// TCP without options.
    Tcp {
        /// Source port.
        src: u16,
        /// Destination port.
        dst: u16,
        /// Flags (12 bits).
        flags: u16,
        /// Sequence number.
        seq: u32,
        /// Acknowledgment number.
        ack: u32,
        /// Payload.
        payload: Vec<u8>,
    },
    /// UDP.
    Udp {
        /// Source port.
        src: u16,
        /// Destination port.
        dst: u16,
        /// Payload.
        payload: Vec<u8>,
    },
    /// ICMPv4 (over IPv4) or ICMPv6 (over IPv6).
    Icmp {
        /// Type.
        ty: u8,
        /// Code.
        code: u8,
        /// Bytes 4..8 of the header (echo id and sequence, MTU, unused).
        rest: [u8; 4],
        /// Body.
        payload: Vec<u8>,
    },
    /// An ICMPv6 neighbour solicitation (`advert: false`) or advertisement (`advert: true`)
    /// with an optional link-layer address option.
    Nd {
        /// Advertisement instead of solicitation.
        advert: bool,
        /// Target.
        target: Ipv6Addr,
        /// Source (NS) / target (NA) link-layer address option.
        ll: Option<MacAddr>,
        /// NA flags byte (R 0x80, S 0x40, O 0x20).
        flags: u8,
    },
    /// Any other protocol.
    Raw {
        /// IP protocol number.
        proto: u8,
        /// Payload.
        payload: Vec<u8>,
    },
}

impl PacketSpec {
    /// Serializes the frame.
    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        match &self.l3 {
            L3Spec::Raw { eth_type, payload } => {
                emit_header(&mut out, self.eth_dst, self.eth_src, &self.vlans, *eth_type);
                out.extend_from_slice(payload);
            }
            L3Spec::Arp {
                op,
                sha,
                spa,
                tha,
                tpa,
            } => {
                emit_header(
                    &mut out,
                    self.eth_dst,
                    self.eth_src,
                    &self.vlans,
                    ethertype::ARP,
                );
                arp::emit(&mut out, *op, *sha, *spa, *tha, *tpa);
            }
            L3Spec::Ip { src, dst, ttl, l4 } => {
                let v6 = src.is_ipv6();
                let et = if v6 { ethertype::IPV6 } else { ethertype::IPV4 };
                emit_header(&mut out, self.eth_dst, self.eth_src, &self.vlans, et);
                let (proto, seg) = l4.emit(*src, *dst);
                emit_ip(&mut out, *src, *dst, proto, *ttl, seg.len());
                out.extend_from_slice(&seg);
            }
        }
        out
    }
}

impl L4Spec {
    /// The protocol number and the serialized segment with its checksum.
    fn emit(&self, src: IpAddr, dst: IpAddr) -> (u8, Vec<u8>) {
        let mut seg = Vec::new();
        match self {
            L4Spec::Tcp {
                src: sp,
                dst: dp,
                flags,
                seq,
                ack,
                payload,
            } => {
                emit_tcp(
                    &mut seg, src, dst, *sp, *dp, *seq, *ack, *flags, 64240, payload,
                );
                (ip_proto::TCP, seg)
            }
            L4Spec::Udp {
                src: sp,
                dst: dp,
                payload,
            } => {
                emit_udp(&mut seg, src, dst, *sp, *dp, payload);
                (ip_proto::UDP, seg)
            }
            L4Spec::Icmp {
                ty,
                code,
                rest,
                payload,
            } => {
                seg.extend_from_slice(&[*ty, *code, 0, 0]);
                seg.extend_from_slice(rest);
                seg.extend_from_slice(payload);
                let proto = icmp_fill_checksum(&mut seg, src, dst);
                (proto, seg)
            }
            L4Spec::Nd {
                advert,
                target,
                ll,
                flags,
            } => {
                let ty = if *advert {
                    v6::NEIGHBOR_ADVERT
                } else {
                    v6::NEIGHBOR_SOLICIT
                };
                seg.extend_from_slice(&[ty, 0, 0, 0, if *advert { *flags } else { 0 }, 0, 0, 0]);
                seg.extend_from_slice(&target.octets());
                if let Some(m) = ll {
                    let opt = if *advert {
                        v6::OPT_TARGET_LL
                    } else {
                        v6::OPT_SOURCE_LL
                    };
                    seg.extend_from_slice(&[opt, 1]);
                    seg.extend_from_slice(&m.0);
                }
                let proto = icmp_fill_checksum(&mut seg, src, dst);
                (proto, seg)
            }
            L4Spec::Raw { proto, payload } => (*proto, payload.clone()),
        }
    }
}

/// Fills the checksum of an ICMP message (bytes 2..4): plain for ICMPv4, with the pseudo-header
/// for ICMPv6. Returns the IP protocol number to use.
fn icmp_fill_checksum(msg: &mut [u8], src: IpAddr, dst: IpAddr) -> u8 {
    if msg.len() < 4 {
        return if src.is_ipv6() {
            ip_proto::ICMPV6
        } else {
            ip_proto::ICMP
        };
    }
    msg[2] = 0;
    msg[3] = 0;
    let (proto, c) = if src.is_ipv6() {
        (
            ip_proto::ICMPV6,
            checksum::upper_layer(src, dst, ip_proto::ICMPV6, msg),
        )
    } else {
        (ip_proto::ICMP, checksum::checksum(msg))
    };
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    proto
}

fn emit_ip(out: &mut Vec<u8>, src: IpAddr, dst: IpAddr, proto: u8, ttl: u8, len: usize) {
    match (src, dst) {
        (IpAddr::V6(s), IpAddr::V6(d)) => emit_ipv6(out, s, d, proto, ttl, len),
        (IpAddr::V4(s), IpAddr::V4(d)) => emit_ipv4(out, s, d, proto, ttl, len),
        // Mixed families: map the odd one so the builder stays total.
        (IpAddr::V6(s), IpAddr::V4(d)) => emit_ipv6(out, s, d.to_ipv6_mapped(), proto, ttl, len),
        (IpAddr::V4(s), IpAddr::V6(d)) => emit_ipv4(
            out,
            s,
            d.to_ipv4().unwrap_or(Ipv4Addr::UNSPECIFIED),
            proto,
            ttl,
            len,
        ),
    }
}

/// The ARP reply to the request in `p`: "target protocol address is at `mac`". Sent to the
/// requester with the frame's remaining VLAN tags.
pub fn arp_reply(p: &Parsed, mac: MacAddr) -> Vec<u8> {
    let k = &p.key;
    PacketSpec {
        eth_src: mac,
        eth_dst: k.eth_src,
        vlans: k.vlan_ids().to_vec(),
        l3: L3Spec::Arp {
            op: arp::OP_REPLY,
            sha: mac,
            spa: k.arp_tpa,
            tha: k.arp_sha,
            tpa: k.arp_spa,
        },
    }
    .build()
}

/// The neighbour advertisement answering the solicitation in `p` with `mac`. A solicitation
/// from `::` (duplicate address detection) is answered to all-nodes without the S flag.
pub fn nd_advert(p: &Parsed, mac: MacAddr, router: bool) -> Vec<u8> {
    let k = &p.key;
    let target = k.nd_target;
    let (dst, eth_dst, solicited) = match k.ip_src {
        IpAddr::V6(s) if !s.is_unspecified() => (s, k.eth_src, true),
        _ => {
            let all = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
            (all, MacAddr::ipv6_multicast(all), false)
        }
    };
    let flags = (if router { 0x80 } else { 0 }) | (if solicited { 0x40 } else { 0 }) | 0x20;
    PacketSpec {
        eth_src: mac,
        eth_dst,
        vlans: k.vlan_ids().to_vec(),
        l3: L3Spec::Ip {
            src: IpAddr::V6(target),
            dst: IpAddr::V6(dst),
            ttl: 255,
            l4: L4Spec::Nd {
                advert: true,
                target,
                ll: Some(mac),
                flags,
            },
        },
    }
    .build()
}

/// Why no ICMP error may be sent about a packet (RFC 1122 3.2.2, RFC 4443 2.4 (e)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NoReply {
    /// Not an IP packet, or the error's source family differs from the packet's.
    #[error("not an IP packet of the error source's family")]
    NotIp,
    /// The packet is itself an ICMP error.
    #[error("packet is an ICMP error; never answer errors with errors")]
    AboutIcmpError,
    /// Sent to a multicast or broadcast address.
    #[error("packet was multicast or broadcast")]
    Multicast,
    /// A non-first fragment.
    #[error("packet is a later fragment")]
    LaterFragment,
    /// The source address cannot be answered (unspecified, multicast).
    #[error("packet's source address cannot be answered")]
    BadSource,
    /// The packet is not the kind this reply answers (e.g. echo reply to a non-echo).
    #[error("packet is not of the kind this reply answers")]
    WrongKind,
}

fn may_answer(p: &Parsed) -> Result<(), NoReply> {
    let k = &p.key;
    if !k.is_ip() {
        return Err(NoReply::NotIp);
    }
    if k.eth_dst.is_multicast() {
        return Err(NoReply::Multicast);
    }
    match (k.ip_src, k.ip_dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            if d.is_multicast() || d.is_broadcast() {
                return Err(NoReply::Multicast);
            }
            if s.is_unspecified() || s.is_multicast() || s.is_broadcast() {
                return Err(NoReply::BadSource);
            }
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            if d.is_multicast() {
                return Err(NoReply::Multicast);
            }
            if s.is_unspecified() || s.is_multicast() {
                return Err(NoReply::BadSource);
            }
        }
        _ => return Err(NoReply::NotIp),
    }
    if k.frag == Frag::Later {
        return Err(NoReply::LaterFragment);
    }
    Ok(())
}

/// The ICMP/ICMPv6 error `kind` about the packet in `frame` (parsed as `p`), from `src`, sent
/// back to the packet's source with Ethernet source `eth_src`. Quotes as much of the original
/// packet as fits in 576 (IPv4) or 1280 (IPv6) bytes.
pub fn icmp_error(
    frame: &[u8],
    p: &Parsed,
    kind: IcmpErrorKind,
    src: IpAddr,
    eth_src: MacAddr,
) -> Result<Vec<u8>, NoReply> {
    may_answer(p)?;
    let k = &p.key;
    let v6 = k.prereq & prereq::IP6 != 0;
    if v6 != src.is_ipv6() {
        return Err(NoReply::NotIp);
    }
    let is_err = if v6 {
        k.prereq & prereq::ICMP6 != 0 && icmp::is_error_v6(k.icmp_type)
    } else {
        k.prereq & prereq::ICMP4 != 0 && icmp::is_error_v4(k.icmp_type)
    };
    if is_err {
        return Err(NoReply::AboutIcmpError);
    }
    let (ty, code, rest) = if v6 {
        match kind {
            IcmpErrorKind::TimeExceeded => (v6::TIME_EXCEEDED, 0, [0; 4]),
            IcmpErrorKind::PacketTooBig { mtu } => {
                (v6::PACKET_TOO_BIG, 0, u32::from(mtu).to_be_bytes())
            }
            IcmpErrorKind::Unreachable(u) => (
                v6::DEST_UNREACHABLE,
                match u {
                    Unreachable::Net => 0,
                    Unreachable::AdminProhibited => 1,
                    Unreachable::Host => 3,
                    Unreachable::Port => 4,
                },
                [0; 4],
            ),
        }
    } else {
        match kind {
            IcmpErrorKind::TimeExceeded => (v4::TIME_EXCEEDED, 0, [0; 4]),
            IcmpErrorKind::PacketTooBig { mtu } => {
                let m = mtu.to_be_bytes();
                (
                    v4::DEST_UNREACHABLE,
                    v4::CODE_FRAG_NEEDED,
                    [0, 0, m[0], m[1]],
                )
            }
            IcmpErrorKind::Unreachable(u) => (
                v4::DEST_UNREACHABLE,
                match u {
                    Unreachable::Net => 0,
                    Unreachable::Host => 1,
                    Unreachable::Port => 3,
                    Unreachable::AdminProhibited => 13,
                },
                [0; 4],
            ),
        }
    };
    let max = if v6 {
        ICMP6_ERROR_MAX - IPV6_LEN
    } else {
        ICMP4_ERROR_MAX - IPV4_MIN_LEN
    };
    let quote_end = p.layout.end.min(frame.len());
    let quote = frame.get(p.layout.l3..quote_end).unwrap_or(&[]);
    let quote = &quote[..quote.len().min(max - icmp::HEADER_LEN)];
    Ok(PacketSpec {
        eth_src,
        eth_dst: k.eth_src,
        vlans: k.vlan_ids().to_vec(),
        l3: L3Spec::Ip {
            src,
            dst: k.ip_src,
            ttl: GENERATED_TTL,
            l4: L4Spec::Icmp {
                ty,
                code,
                rest,
                payload: quote.to_vec(),
            },
        },
    }
    .build())
}

/// The echo reply to the echo request in `frame`, from the address that was pinged.
pub fn icmp_echo_reply(frame: &[u8], p: &Parsed) -> Result<Vec<u8>, NoReply> {
    may_answer(p)?;
    let k = &p.key;
    let v6 = k.prereq & prereq::IP6 != 0;
    let is_req = if v6 {
        k.prereq & prereq::ICMP6 != 0 && k.icmp_type == v6::ECHO_REQUEST
    } else {
        k.prereq & prereq::ICMP4 != 0 && k.icmp_type == v4::ECHO_REQUEST
    };
    let (true, Some(l4)) = (is_req, p.layout.l4) else {
        return Err(NoReply::WrongKind);
    };
    let msg = frame.get(l4..p.layout.end.min(frame.len())).unwrap_or(&[]);
    if msg.len() < icmp::HEADER_LEN {
        return Err(NoReply::WrongKind);
    }
    let mut rest = [0u8; 4];
    rest.copy_from_slice(&msg[4..8]);
    Ok(PacketSpec {
        eth_src: k.eth_dst,
        eth_dst: k.eth_src,
        vlans: k.vlan_ids().to_vec(),
        l3: L3Spec::Ip {
            src: k.ip_dst,
            dst: k.ip_src,
            ttl: GENERATED_TTL,
            l4: L4Spec::Icmp {
                ty: if v6 { v6::ECHO_REPLY } else { v4::ECHO_REPLY },
                code: 0,
                rest,
                payload: msg[8..].to_vec(),
            },
        },
    }
    .build())
}

/// The TCP RST answering the segment in `frame` (RFC 9293 section 3.10.7.1), as if sent by its
/// destination.
pub fn tcp_rst(frame: &[u8], p: &Parsed) -> Result<Vec<u8>, NoReply> {
    may_answer(p)?;
    let k = &p.key;
    let Some(l4) = p.layout.l4.filter(|_| k.prereq & prereq::TCP != 0) else {
        return Err(NoReply::WrongKind);
    };
    let seg_bytes = frame.get(l4..p.layout.end.min(frame.len())).unwrap_or(&[]);
    let seg = TcpSegment::new_checked(seg_bytes).map_err(|_| NoReply::WrongKind)?;
    if seg.flags() & tcp_flags::RST != 0 {
        return Err(NoReply::WrongKind);
    }
    let (seq, ack, flags) = if seg.flags() & tcp_flags::ACK != 0 {
        (seg.ack(), 0, tcp_flags::RST)
    } else {
        let mut len = seg.payload().len() as u32;
        if seg.flags() & tcp_flags::SYN != 0 {
            len += 1;
        }
        if seg.flags() & tcp_flags::FIN != 0 {
            len += 1;
        }
        (
            0,
            seg.seq().wrapping_add(len),
            tcp_flags::RST | tcp_flags::ACK,
        )
    };
    let mut seg_out = Vec::new();
    emit_tcp(
        &mut seg_out,
        k.ip_dst,
        k.ip_src,
        k.l4_dst,
        k.l4_src,
        seq,
        ack,
        flags,
        0,
        &[],
    );
    Ok(PacketSpec {
        eth_src: k.eth_dst,
        eth_dst: k.eth_src,
        vlans: k.vlan_ids().to_vec(),
        l3: L3Spec::Ip {
            src: k.ip_dst,
            dst: k.ip_src,
            ttl: GENERATED_TTL,
            l4: L4Spec::Raw {
                proto: ip_proto::TCP,
                payload: seg_out,
            },
        },
    }
    .build())
}
