//! ICMPv4 (RFC 792) and ICMPv6 (RFC 4443) messages, including neighbour discovery
//! (RFC 4861) solicitations and advertisements.

use std::net::Ipv6Addr;

use super::{ParseError, field};
use crate::mac::MacAddr;

/// ICMPv4 types.
pub mod v4 {
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 0;
    /// Destination unreachable.
    pub const DEST_UNREACHABLE: u8 = 3;
    /// Source quench (deprecated, still an error).
    pub const SOURCE_QUENCH: u8 = 4;
    /// Redirect.
    pub const REDIRECT: u8 = 5;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 8;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 11;
    /// Parameter problem.
    pub const PARAM_PROBLEM: u8 = 12;
    /// Code of "fragmentation needed and DF set" under destination unreachable.
    pub const CODE_FRAG_NEEDED: u8 = 4;
}

/// ICMPv6 types.
pub mod v6 {
    /// Destination unreachable.
    pub const DEST_UNREACHABLE: u8 = 1;
    /// Packet too big.
    pub const PACKET_TOO_BIG: u8 = 2;
    /// Time exceeded.
    pub const TIME_EXCEEDED: u8 = 3;
    /// Parameter problem.
    pub const PARAM_PROBLEM: u8 = 4;
    /// Echo request.
    pub const ECHO_REQUEST: u8 = 128;
    /// Echo reply.
    pub const ECHO_REPLY: u8 = 129;
    /// Router solicitation.
    pub const ROUTER_SOLICIT: u8 = 133;
    /// Router advertisement.
    pub const ROUTER_ADVERT: u8 = 134;
    /// Neighbour solicitation.
    pub const NEIGHBOR_SOLICIT: u8 = 135;
    /// Neighbour advertisement.
    pub const NEIGHBOR_ADVERT: u8 = 136;
    /// ND option: source link-layer address.
    pub const OPT_SOURCE_LL: u8 = 1;
    /// ND option: target link-layer address.
    pub const OPT_TARGET_LL: u8 = 2;
}

/// True when an ICMPv4 type is an error that quotes the offending packet.
pub fn is_error_v4(t: u8) -> bool {
    matches!(
        t,
        v4::DEST_UNREACHABLE
            | v4::SOURCE_QUENCH
            | v4::REDIRECT
            | v4::TIME_EXCEEDED
            | v4::PARAM_PROBLEM
    )
}

/// True when an ICMPv6 type is an error that quotes the offending packet.
pub fn is_error_v6(t: u8) -> bool {
    t < 128
}

/// Length of the fixed ICMP header (type, code, checksum, 4 bytes of rest).
pub const HEADER_LEN: usize = 8;
/// Length of an NS/NA before its options.
pub const ND_LEN: usize = 24;

/// A view of an ICMPv4 or ICMPv6 message; no accessor panics after `new_checked`.
#[derive(Debug, Clone)]
pub struct IcmpMessage<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IcmpMessage<T> {
    /// Checks the 8-byte header is present.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let have = buffer.as_ref().len();
        if have < HEADER_LEN {
            return Err(ParseError::Truncated {
                layer: "icmp",
                need: HEADER_LEN,
                have,
            });
        }
        Ok(IcmpMessage { buffer })
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    /// Type.
    pub fn msg_type(&self) -> u8 {
        self.b()[0]
    }
    /// Code.
    pub fn code(&self) -> u8 {
        self.b()[1]
    }
    /// Checksum field.
    pub fn checksum(&self) -> u16 {
        field::be16(self.b(), 2).unwrap_or(0)
    }
    /// Echo identifier (bytes 4..6).
    pub fn echo_ident(&self) -> u16 {
        field::be16(self.b(), 4).unwrap_or(0)
    }
    /// Echo sequence number (bytes 6..8).
    pub fn echo_seq(&self) -> u16 {
        field::be16(self.b(), 6).unwrap_or(0)
    }
    /// Everything after the 8-byte header (the quoted packet of an error, echo data).
    pub fn body(&self) -> &[u8] {
        &self.b()[HEADER_LEN..]
    }
}

/// A parsed neighbour solicitation or advertisement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NdMessage {
    /// Target address.
    pub target: Ipv6Addr,
    /// Source link-layer option (NS) or target link-layer option (NA), if present.
    pub link_layer: Option<MacAddr>,
    /// NA flags byte (R = 0x80, S = 0x40, O = 0x20); 0 for NS.
    pub flags: u8,
}

/// Parses an NS (type 135) or NA (136) message starting at its ICMPv6 header.
pub fn parse_nd(msg: &[u8]) -> Result<NdMessage, ParseError> {
    if msg.len() < ND_LEN {
        return Err(ParseError::Truncated {
            layer: "neighbour discovery",
            need: ND_LEN,
            have: msg.len(),
        });
    }
    let want = if msg[0] == v6::NEIGHBOR_SOLICIT {
        v6::OPT_SOURCE_LL
    } else {
        v6::OPT_TARGET_LL
    };
    let target = Ipv6Addr::from(field::arr16(msg, 8));
    let mut link_layer = None;
    let mut off = ND_LEN;
    while off < msg.len() {
        let (Some(&t), Some(&l)) = (msg.get(off), msg.get(off + 1)) else {
            return Err(ParseError::Malformed {
                layer: "neighbour discovery",
                what: "option header cut short",
            });
        };
        let len = usize::from(l) * 8;
        if len == 0 || off + len > msg.len() {
            return Err(ParseError::Malformed {
                layer: "neighbour discovery",
                what: "option length is zero or runs past the message",
            });
        }
        if t == want && len >= 8 {
            link_layer = Some(field::mac(msg, off + 2));
        }
        off += len;
    }
    Ok(NdMessage {
        target,
        link_layer,
        flags: if msg[0] == v6::NEIGHBOR_ADVERT {
            msg[4]
        } else {
            0
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbour_solicitation_with_source_ll() {
        let mut ns = vec![135, 0, 0, 0, 0, 0, 0, 0];
        ns.extend_from_slice(&"fd00::1".parse::<Ipv6Addr>().unwrap().octets());
        ns.extend_from_slice(&[1, 1, 2, 0, 0, 0, 0, 9]);
        let nd = parse_nd(&ns).unwrap();
        assert_eq!(nd.target, "fd00::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(nd.link_layer, Some(MacAddr::new(2, 0, 0, 0, 0, 9)));
        // A zero-length option must not loop or panic.
        let mut bad = ns.clone();
        bad[25] = 0;
        assert!(parse_nd(&bad).is_err());
        assert!(parse_nd(&ns[..20]).is_err());
        let mut odd = ns;
        odd.push(1);
        assert!(parse_nd(&odd).is_err());
    }

    #[test]
    fn echo_fields() {
        let b = [8u8, 0, 0xf7, 0xfd, 0x00, 0x01, 0x00, 0x01];
        let m = IcmpMessage::new_checked(&b[..]).unwrap();
        assert_eq!(m.msg_type(), v4::ECHO_REQUEST);
        assert_eq!(m.echo_ident(), 1);
        assert_eq!(m.echo_seq(), 1);
        assert_eq!(super::super::checksum::checksum(&b), 0);
        assert!(IcmpMessage::new_checked(&b[..7]).is_err());
        assert!(is_error_v4(11) && !is_error_v4(8) && is_error_v6(2) && !is_error_v6(135));
    }
}
