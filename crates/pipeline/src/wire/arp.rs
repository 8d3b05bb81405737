//! ARP for IPv4 over Ethernet (RFC 826).

use std::net::Ipv4Addr;

use super::{ParseError, field};
use crate::mac::MacAddr;

/// Length of an Ethernet/IPv4 ARP packet.
pub const LEN: usize = 28;
/// ARP request.
pub const OP_REQUEST: u16 = 1;
/// ARP reply.
pub const OP_REPLY: u16 = 2;

/// A view of an Ethernet/IPv4 ARP packet; no accessor panics after `new_checked`.
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Checks length and that hardware/protocol types are Ethernet/IPv4.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let b = buffer.as_ref();
        if b.len() < LEN {
            return Err(ParseError::Truncated {
                layer: "arp",
                need: LEN,
                have: b.len(),
            });
        }
        if field::be16(b, 0) != Some(1)
            || field::be16(b, 2) != Some(0x0800)
            || b[4] != 6
            || b[5] != 4
        {
            return Err(ParseError::Malformed {
                layer: "arp",
                what: "not Ethernet/IPv4 (htype 1, ptype 0x0800, hlen 6, plen 4)",
            });
        }
        Ok(ArpPacket { buffer })
    }

    /// Operation (1 request, 2 reply).
    pub fn op(&self) -> u16 {
        field::be16(self.buffer.as_ref(), 6).unwrap_or(0)
    }
    /// Sender hardware address.
    pub fn sha(&self) -> MacAddr {
        field::mac(self.buffer.as_ref(), 8)
    }
    /// Sender protocol address.
    pub fn spa(&self) -> Ipv4Addr {
        field::arr4(self.buffer.as_ref(), 14).into()
    }
    /// Target hardware address.
    pub fn tha(&self) -> MacAddr {
        field::mac(self.buffer.as_ref(), 18)
    }
    /// Target protocol address.
    pub fn tpa(&self) -> Ipv4Addr {
        field::arr4(self.buffer.as_ref(), 24).into()
    }
}

/// Appends an Ethernet/IPv4 ARP packet to `out`.
pub fn emit(out: &mut Vec<u8>, op: u16, sha: MacAddr, spa: Ipv4Addr, tha: MacAddr, tpa: Ipv4Addr) {
    out.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
    out.extend_from_slice(&op.to_be_bytes());
    out.extend_from_slice(&sha.0);
    out.extend_from_slice(&spa.octets());
    out.extend_from_slice(&tha.0);
    out.extend_from_slice(&tpa.octets());
}

#[cfg(test)]
mod tests {
    use super::*;

    // An ARP request "who has 10.0.0.1 tell 10.0.0.5" from 02:00:00:00:00:05.
    const REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x05, 10, 0,
        0, 5, 0, 0, 0, 0, 0, 0, 10, 0, 0, 1,
    ];

    #[test]
    fn parse_request() {
        let p = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(p.op(), OP_REQUEST);
        assert_eq!(p.sha(), MacAddr::new(2, 0, 0, 0, 0, 5));
        assert_eq!(p.spa(), Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(p.tha(), MacAddr::ZERO);
        assert_eq!(p.tpa(), Ipv4Addr::new(10, 0, 0, 1));
    }

    #[test]
    fn emit_matches_bytes() {
        let mut out = Vec::new();
        emit(
            &mut out,
            OP_REQUEST,
            MacAddr::new(2, 0, 0, 0, 0, 5),
            Ipv4Addr::new(10, 0, 0, 5),
            MacAddr::ZERO,
            Ipv4Addr::new(10, 0, 0, 1),
        );
        assert_eq!(out, REQUEST);
    }

    #[test]
    fn rejects_non_ipv4_arp() {
        let mut b = REQUEST;
        b[3] = 0xdd;
        assert!(ArpPacket::new_checked(&b[..]).is_err());
        assert!(ArpPacket::new_checked(&REQUEST[..27]).is_err());
    }
}
