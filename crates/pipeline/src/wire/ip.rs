//! IPv4 (RFC 791) and IPv6 (RFC 8200) headers, with IPv6 extension header walking.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{ParseError, checksum, field};

/// Minimum IPv4 header length.
pub const IPV4_MIN_LEN: usize = 20;
/// IPv6 fixed header length.
pub const IPV6_LEN: usize = 40;
/// Most IPv6 extension headers [`walk_ipv6_extensions`] follows.
pub const MAX_EXT_HEADERS: usize = 8;

/// A view of an IPv4 packet; no accessor panics after `new_checked`.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Checks version, header length and total length against the buffer.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let b = buffer.as_ref();
        if b.len() < IPV4_MIN_LEN {
            return Err(ParseError::Truncated {
                layer: "ipv4",
                need: IPV4_MIN_LEN,
                have: b.len(),
            });
        }
        if b[0] >> 4 != 4 {
            return Err(ParseError::Malformed {
                layer: "ipv4",
                what: "version is not 4",
            });
        }
        let ihl = usize::from(b[0] & 0x0f) * 4;
        if ihl < IPV4_MIN_LEN {
            return Err(ParseError::Malformed {
                layer: "ipv4",
                what: "header length below 20 bytes",
            });
        }
        let total = usize::from(u16::from_be_bytes([b[2], b[3]]));
        if total < ihl {
            return Err(ParseError::Malformed {
                layer: "ipv4",
                what: "total length smaller than header length",
            });
        }
        if total > b.len() {
            return Err(ParseError::Truncated {
                layer: "ipv4",
                need: total,
                have: b.len(),
            });
        }
        Ok(Ipv4Packet { buffer })
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    /// Header length in bytes.
    pub fn header_len(&self) -> usize {
        usize::from(self.b()[0] & 0x0f) * 4
    }
    /// Type of service byte (DSCP + ECN).
    pub fn tos(&self) -> u8 {
        self.b()[1]
    }
    /// Total length from the header.
    pub fn total_len(&self) -> usize {
        usize::from(field::be16(self.b(), 2).unwrap_or(0))
    }
    /// Identification.
    pub fn ident(&self) -> u16 {
        field::be16(self.b(), 4).unwrap_or(0)
    }
    /// Don't fragment flag.
    pub fn dont_frag(&self) -> bool {
        self.b()[6] & 0x40 != 0
    }
    /// More fragments flag.
    pub fn more_frags(&self) -> bool {
        self.b()[6] & 0x20 != 0
    }
    /// Fragment offset in 8-byte units.
    pub fn frag_offset(&self) -> u16 {
        field::be16(self.b(), 6).unwrap_or(0) & 0x1fff
    }
    /// Time to live.
    pub fn ttl(&self) -> u8 {
        self.b()[8]
    }
    /// Protocol.
    pub fn protocol(&self) -> u8 {
        self.b()[9]
    }
    /// Header checksum field.
    pub fn checksum(&self) -> u16 {
        field::be16(self.b(), 10).unwrap_or(0)
    }
    /// Source address.
    pub fn src(&self) -> Ipv4Addr {
        field::arr4(self.b(), 12).into()
    }
    /// Destination address.
    pub fn dst(&self) -> Ipv4Addr {
        field::arr4(self.b(), 16).into()
    }
    /// True when the header checksum is correct.
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(&self.b()[..self.header_len()]) == 0
    }
    /// The payload (up to the total length; Ethernet padding excluded).
    pub fn payload(&self) -> &[u8] {
        &self.b()[self.header_len()..self.total_len()]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    /// Recomputes the header checksum.
    pub fn fill_checksum(&mut self) {
        let hl = self.header_len();
        let b = self.buffer.as_mut();
        b[10] = 0;
        b[11] = 0;
        let c = checksum::checksum(&b[..hl]);
        b[10..12].copy_from_slice(&c.to_be_bytes());
    }
}

/// Decrements the TTL of the IPv4 header at the start of `hdr` and patches its checksum
/// incrementally. Returns the new TTL, or `None` when the header is too short.
pub fn ipv4_dec_ttl(hdr: &mut [u8]) -> Option<u8> {
    if hdr.len() < IPV4_MIN_LEN {
        return None;
    }
    let old = u16::from_be_bytes([hdr[8], hdr[9]]);
    hdr[8] = hdr[8].wrapping_sub(1);
    let new = u16::from_be_bytes([hdr[8], hdr[9]]);
    let c = checksum::update16(u16::from_be_bytes([hdr[10], hdr[11]]), old, new);
    hdr[10..12].copy_from_slice(&c.to_be_bytes());
    Some(hdr[8])
}

/// Appends a 20-byte IPv4 header (no options, DF clear, checksum filled).
pub fn emit_ipv4(
    out: &mut Vec<u8>,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    ttl: u8,
    payload_len: usize,
) {
    let start = out.len();
    let total = (IPV4_MIN_LEN + payload_len).min(usize::from(u16::MAX)) as u16;
    out.extend_from_slice(&[0x45, 0]);
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0, ttl, proto, 0, 0]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    let c = checksum::checksum(&out[start..]);
    out[start + 10..start + 12].copy_from_slice(&c.to_be_bytes());
}

/// A view of an IPv6 packet; no accessor panics after `new_checked`.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Checks version and payload length against the buffer. A zero payload length (a
    /// jumbogram) reads as an empty payload.
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let b = buffer.as_ref();
        if b.len() < IPV6_LEN {
            return Err(ParseError::Truncated {
                layer: "ipv6",
                need: IPV6_LEN,
                have: b.len(),
            });
        }
        if b[0] >> 4 != 6 {
            return Err(ParseError::Malformed {
                layer: "ipv6",
                what: "version is not 6",
            });
        }
        let plen = usize::from(u16::from_be_bytes([b[4], b[5]]));
        if IPV6_LEN + plen > b.len() {
            return Err(ParseError::Truncated {
                layer: "ipv6",
                need: IPV6_LEN + plen,
                have: b.len(),
            });
        }
        Ok(Ipv6Packet { buffer })
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    /// Payload length from the header.
    pub fn payload_len(&self) -> usize {
        usize::from(field::be16(self.b(), 4).unwrap_or(0))
    }
    /// First next-header value.
    pub fn next_header(&self) -> u8 {
        self.b()[6]
    }
    /// Hop limit.
    pub fn hop_limit(&self) -> u8 {
        self.b()[7]
    }
    /// Source address.
    pub fn src(&self) -> Ipv6Addr {
        field::arr16(self.b(), 8).into()
    }
    /// Destination address.
    pub fn dst(&self) -> Ipv6Addr {
        field::arr16(self.b(), 24).into()
    }
    /// The payload (extension headers included; padding excluded).
    pub fn payload(&self) -> &[u8] {
        &self.b()[IPV6_LEN..IPV6_LEN + self.payload_len()]
    }
}

/// Appends a 40-byte IPv6 header.
pub fn emit_ipv6(
    out: &mut Vec<u8>,
    src: Ipv6Addr,
    dst: Ipv6Addr,
    next_header: u8,
    hop_limit: u8,
    payload_len: usize,
) {
    out.extend_from_slice(&[0x60, 0, 0, 0]);
    out.extend_from_slice(&(payload_len.min(usize::from(u16::MAX)) as u16).to_be_bytes());
    out.push(next_header);
    out.push(hop_limit);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
}

/// Where the upper layer of an IPv6 packet is, after the extension headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Upper {
    /// The upper-layer protocol (the last next-header value).
    pub proto: u8,
    /// Offset of the upper-layer header inside the IPv6 payload.
    pub offset: usize,
    /// A fragment header was present.
    pub fragment: bool,
    /// The fragment offset was not zero: no upper-layer header in this packet.
    pub later_fragment: bool,
}

/// Skips hop-by-hop, routing, fragment, destination options and AH headers.
pub fn walk_ipv6_extensions(first: u8, payload: &[u8]) -> Result<Ipv6Upper, ParseError> {
    let mut nh = first;
    let mut off = 0usize;
    let mut fragment = false;
    for _ in 0..MAX_EXT_HEADERS {
        let hdr_len = match nh {
            0 | 43 | 60 => {
                let b = payload.get(off..off + 2).ok_or(ParseError::Truncated {
                    layer: "ipv6 extension",
                    need: off + 2,
                    have: payload.len(),
                })?;
                (usize::from(b[1]) + 1) * 8
            }
            51 => {
                let b = payload.get(off..off + 2).ok_or(ParseError::Truncated {
                    layer: "ipv6 authentication header",
                    need: off + 2,
                    have: payload.len(),
                })?;
                (usize::from(b[1]) + 2) * 4
            }
            44 => 8,
            _ => {
                return Ok(Ipv6Upper {
                    proto: nh,
                    offset: off,
                    fragment,
                    later_fragment: false,
                });
            }
        };
        let h = payload
            .get(off..off + hdr_len)
            .ok_or(ParseError::Truncated {
                layer: "ipv6 extension",
                need: off + hdr_len,
                have: payload.len(),
            })?;
        let next = h[0];
        if nh == 44 {
            fragment = true;
            let frag_off = u16::from_be_bytes([h[2], h[3]]) >> 3;
            if frag_off != 0 {
                return Ok(Ipv6Upper {
                    proto: next,
                    offset: off + hdr_len,
                    fragment,
                    later_fragment: true,
                });
            }
        }
        nh = next;
        off += hdr_len;
    }
    Err(ParseError::TooManyExtensionHeaders(MAX_EXT_HEADERS))
}

#[cfg(test)]
mod tests {
    use super::*;

    // IPv4 UDP packet 192.168.0.1 -> 192.168.0.199, ttl 64, checksum 0xb861, 95 bytes payload.
    fn v4_header() -> Vec<u8> {
        let mut h = vec![
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        h.resize(0x73, 0xaa);
        h
    }

    #[test]
    fn ipv4_fields() {
        let b = v4_header();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 0x73);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), 17);
        assert_eq!(p.src(), Ipv4Addr::new(192, 168, 0, 1));
        assert_eq!(p.dst(), Ipv4Addr::new(192, 168, 0, 199));
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 0x73 - 20);
    }

    #[test]
    fn ipv4_errors() {
        let b = v4_header();
        assert!(Ipv4Packet::new_checked(&b[..0x72]).is_err());
        let mut bad = b.clone();
        bad[0] = 0x44;
        assert!(Ipv4Packet::new_checked(&bad[..]).is_err());
        let mut bad = b.clone();
        bad[0] = 0x65;
        assert!(Ipv4Packet::new_checked(&bad[..]).is_err());
        let mut bad = b;
        bad[2] = 0;
        bad[3] = 10;
        assert!(Ipv4Packet::new_checked(&bad[..]).is_err());
    }

    #[test]
    fn emit_ipv4_checksum_is_valid() {
        let mut out = Vec::new();
        emit_ipv4(
            &mut out,
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 2),
            6,
            64,
            20,
        );
        out.resize(40, 0);
        let p = Ipv4Packet::new_checked(&out[..]).unwrap();
        assert!(p.verify_checksum());
        let mut out2 = out.clone();
        assert_eq!(ipv4_dec_ttl(&mut out2), Some(63));
        assert!(
            Ipv4Packet::new_checked(&out2[..])
                .unwrap()
                .verify_checksum()
        );
    }

    #[test]
    fn ipv6_extension_walk() {
        // Hop-by-hop (8 bytes) -> fragment (offset 0) -> TCP.
        let mut payload = vec![44, 0, 1, 4, 0, 0, 0, 0];
        payload.extend_from_slice(&[6, 0, 0, 1, 0, 0, 0, 7]);
        payload.extend_from_slice(&[0u8; 20]);
        let u = walk_ipv6_extensions(0, &payload).unwrap();
        assert_eq!(
            u,
            Ipv6Upper {
                proto: 6,
                offset: 16,
                fragment: true,
                later_fragment: false
            }
        );
        // A later fragment has no upper-layer header.
        payload[10] = 0x01;
        payload[11] = 0x00;
        assert!(walk_ipv6_extensions(0, &payload).unwrap().later_fragment);
        // Truncated and looping chains are errors, not panics.
        assert!(walk_ipv6_extensions(0, &payload[..4]).is_err());
        let looping = [0u8; 8 * 9];
        assert_eq!(
            walk_ipv6_extensions(0, &looping),
            Err(ParseError::TooManyExtensionHeaders(MAX_EXT_HEADERS))
        );
    }
}
