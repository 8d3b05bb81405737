//! Minimal Ethernet/IP/L4 header access shared by segmentation and coalescing.
//!
//! Only what the offload code needs: where the IP header starts (after up to
//! two VLAN tags), where the transport header starts, and the fields that
//! segmentation rewrites. Every accessor checks lengths first, so untrusted
//! frames cannot make it panic.

use crate::error::WireError;

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;

/// IP protocol number of TCP.
pub const PROTO_TCP: u8 = 6;
/// IP protocol number of UDP.
pub const PROTO_UDP: u8 = 17;

/// TCP flag bits (byte 13 of the TCP header).
pub mod tcp_flags {
    /// No more data from sender.
    pub const FIN: u8 = 0x01;
    /// Push.
    pub const PSH: u8 = 0x08;
    /// Acknowledgment field is significant.
    pub const ACK: u8 = 0x10;
    /// Congestion window reduced.
    pub const CWR: u8 = 0x80;
}

/// IP version of a frame's network header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpVersion {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

/// Offset of the network header and its version, after up to two VLAN tags.
/// `None` when the frame is not IP.
pub fn l3(frame: &[u8]) -> Result<Option<(usize, IpVersion)>, WireError> {
    let mut off = 12;
    for _ in 0..3 {
        let et = be16(frame, off).ok_or(WireError::Truncated {
            what: "Ethernet header",
            need: off + 2,
            got: frame.len(),
        })?;
        match et {
            ETHERTYPE_VLAN | ETHERTYPE_QINQ => off += 4,
            ETHERTYPE_IPV4 => return Ok(Some((off + 2, IpVersion::V4))),
            ETHERTYPE_IPV6 => return Ok(Some((off + 2, IpVersion::V6))),
            _ => return Ok(None),
        }
    }
    Ok(None)
}

/// Reads a big-endian u16 at `off`, if in range.
#[inline]
pub fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(off)?, *b.get(off + 1)?]))
}

/// Reads a big-endian u32 at `off`, if in range.
#[inline]
pub fn be32(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Writes a big-endian u16 at `off` (caller checked the range).
#[inline]
pub fn put16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_be_bytes());
}

/// Writes a big-endian u32 at `off` (caller checked the range).
#[inline]
pub fn put32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_be_bytes());
}

/// Source and destination addresses of the IP header at `l3` as byte arrays,
/// for pseudo-header sums. The caller checked the header is complete.
pub fn ipv4_addrs(frame: &[u8], l3: usize) -> ([u8; 4], [u8; 4]) {
    let mut s = [0; 4];
    let mut d = [0; 4];
    s.copy_from_slice(&frame[l3 + 12..l3 + 16]);
    d.copy_from_slice(&frame[l3 + 16..l3 + 20]);
    (s, d)
}

/// IPv6 counterpart of [`ipv4_addrs`].
pub fn ipv6_addrs(frame: &[u8], l3: usize) -> ([u8; 16], [u8; 16]) {
    let mut s = [0; 16];
    let mut d = [0; 16];
    s.copy_from_slice(&frame[l3 + 8..l3 + 24]);
    d.copy_from_slice(&frame[l3 + 24..l3 + 40]);
    (s, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_ip_after_vlan_tags() {
        let mut f = [0u8; 22];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(l3(&f).unwrap(), Some((14, IpVersion::V4)));
        f[12..18].copy_from_slice(&[0x81, 0x00, 0x00, 0x05, 0x86, 0xdd]);
        assert_eq!(l3(&f).unwrap(), Some((18, IpVersion::V6)));
        f[12..22].copy_from_slice(&[0x88, 0xa8, 0, 1, 0x81, 0x00, 0, 2, 0x08, 0x00]);
        assert_eq!(l3(&f).unwrap(), Some((22, IpVersion::V4)));
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(l3(&f).unwrap(), None, "ARP is not IP");
        assert!(l3(&f[..13]).is_err());
    }
}
