//! The virtio-net header (`struct virtio_net_hdr`, virtio spec §5.1.6) that a
//! TAP opened with `IFF_VNET_HDR` puts in front of every frame, and the
//! [`Offload`] metadata it carries: checksum still to be computed and TCP/UDP
//! segmentation still to be done.
//!
//! The forwarder sets the TAP to little-endian headers (`TUNSETVNETLE`), so the
//! encoding here is little-endian on every host.
//!
//! ```text
//!  byte 0: flags (1 NEEDS_CSUM, 2 DATA_VALID)   byte 1: gso_type (0x80 = ECN bit)
//!  2..4: hdr_len   4..6: gso_size   6..8: csum_start   8..10: csum_offset
//! ```

use crate::error::WireError;

/// Length of the header (without the `num_buffers` field of the mergeable variant).
pub const HEADER_LEN: usize = 10;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum at `csum_start + csum_offset`
/// holds only the pseudo-header sum; the rest is still to be added.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksum was already verified.
pub const F_DATA_VALID: u8 = 2;

/// `VIRTIO_NET_HDR_GSO_NONE`.
pub const GSO_NONE: u8 = 0;
/// `VIRTIO_NET_HDR_GSO_TCPV4`.
pub const GSO_TCPV4: u8 = 1;
/// `VIRTIO_NET_HDR_GSO_UDP` (UFO, IP fragmentation; not supported).
pub const GSO_UDP_UFO: u8 = 3;
/// `VIRTIO_NET_HDR_GSO_TCPV6`.
pub const GSO_TCPV6: u8 = 4;
/// `VIRTIO_NET_HDR_GSO_UDP_L4` (USO, one UDP datagram per segment).
pub const GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_ECN`: the TCP super-frame carries ECN (CWR) state.
pub const GSO_ECN: u8 = 0x80;

/// Which segmentation a super-frame still needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GsoKind {
    /// TCP over IPv4 (TSO4).
    Tcp4,
    /// TCP over IPv6 (TSO6).
    Tcp6,
    /// UDP, one datagram per segment, either IP version (USO).
    UdpL4,
}

/// Segmentation metadata of a super-frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gso {
    /// The kind of segmentation.
    pub kind: GsoKind,
    /// Payload bytes per segment (the MSS for TCP).
    pub size: u16,
    /// Length of all headers (Ethernet through L4), a hint for the kernel.
    pub hdr_len: u16,
    /// The ECN flag of the GSO type.
    pub ecn: bool,
}

/// A checksum the sender left to the next hop (`CHECKSUM_PARTIAL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsumOffload {
    /// Where checksumming starts (the L4 header), from the frame start.
    pub start: u16,
    /// Where the checksum field is, from `start` (16 for TCP, 6 for UDP).
    pub offset: u16,
}

/// Offload state of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Offload {
    /// A checksum to complete, if any.
    pub csum: Option<CsumOffload>,
    /// Segmentation to perform, if the frame is a super-frame.
    pub gso: Option<Gso>,
    /// The L4 checksum is known to be good.
    pub data_valid: bool,
}

impl Offload {
    /// A plain frame: complete checksums, no segmentation.
    pub const NONE: Offload = Offload {
        csum: None,
        gso: None,
        data_valid: false,
    };

    /// Whether the frame needs neither checksum completion nor segmentation.
    pub fn is_none(&self) -> bool {
        self.csum.is_none() && self.gso.is_none()
    }

    /// Parses a little-endian virtio-net header from the first bytes of `hdr`.
    pub fn parse(hdr: &[u8]) -> Result<Offload, WireError> {
        let h: &[u8; HEADER_LEN] = hdr
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(WireError::Truncated {
                what: "virtio-net header",
                need: HEADER_LEN,
                got: hdr.len(),
            })?;
        let le = |i: usize| u16::from_le_bytes([h[i], h[i + 1]]);
        let flags = h[0];
        let gso_type = h[1];
        let kind = match gso_type & !GSO_ECN {
            GSO_NONE => None,
            GSO_TCPV4 => Some(GsoKind::Tcp4),
            GSO_TCPV6 => Some(GsoKind::Tcp6),
            GSO_UDP_L4 => Some(GsoKind::UdpL4),
            _ => return Err(WireError::UnsupportedGso(gso_type)),
        };
        Ok(Offload {
            csum: (flags & F_NEEDS_CSUM != 0).then(|| CsumOffload {
                start: le(6),
                offset: le(8),
            }),
            gso: kind.map(|kind| Gso {
                kind,
                size: le(4),
                hdr_len: le(2),
                ecn: gso_type & GSO_ECN != 0,
            }),
            data_valid: flags & F_DATA_VALID != 0,
        })
    }

    /// The little-endian virtio-net header for this metadata.
    pub fn emit(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        if let Some(c) = self.csum {
            h[0] |= F_NEEDS_CSUM;
            h[6..8].copy_from_slice(&c.start.to_le_bytes());
            h[8..10].copy_from_slice(&c.offset.to_le_bytes());
        }
        if self.data_valid {
            h[0] |= F_DATA_VALID;
        }
        if let Some(g) = self.gso {
            h[1] = match g.kind {
                GsoKind::Tcp4 => GSO_TCPV4,
                GsoKind::Tcp6 => GSO_TCPV6,
                GsoKind::UdpL4 => GSO_UDP_L4,
            } | if g.ecn { GSO_ECN } else { 0 };
            h[2..4].copy_from_slice(&g.hdr_len.to_le_bytes());
            h[4..6].copy_from_slice(&g.size.to_le_bytes());
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a TAP hands out for a TSO4 super-frame: NEEDS_CSUM, TCPV4,
    /// hdr_len 66, gso_size 1398, csum_start 34, csum_offset 16.
    static TSO4: [u8; 10] = [0x01, 0x01, 0x42, 0x00, 0x76, 0x05, 0x22, 0x00, 0x10, 0x00];
    /// A UDP frame with a partial checksum: NEEDS_CSUM, no GSO, start 34, offset 6.
    static UDP_CSUM: [u8; 10] = [0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x22, 0x00, 0x06, 0x00];

    #[test]
    fn parse_tso4() {
        let o = Offload::parse(&TSO4).unwrap();
        assert_eq!(
            o,
            Offload {
                csum: Some(CsumOffload {
                    start: 34,
                    offset: 16
                }),
                gso: Some(Gso {
                    kind: GsoKind::Tcp4,
                    size: 1398,
                    hdr_len: 66,
                    ecn: false
                }),
                data_valid: false,
            }
        );
        assert_eq!(o.emit(), TSO4);
    }

    #[test]
    fn parse_csum_only_and_none() {
        let o = Offload::parse(&UDP_CSUM).unwrap();
        assert!(o.gso.is_none());
        assert_eq!(o.csum.unwrap().offset, 6);
        assert_eq!(o.emit(), UDP_CSUM);
        let none = Offload::parse(&[0u8; 10]).unwrap();
        assert!(none.is_none());
        assert_eq!(none, Offload::NONE);
    }

    #[test]
    fn ecn_and_tcp6() {
        let mut h = TSO4;
        h[1] = GSO_TCPV6 | GSO_ECN;
        let o = Offload::parse(&h).unwrap();
        let g = o.gso.unwrap();
        assert_eq!((g.kind, g.ecn), (GsoKind::Tcp6, true));
        assert_eq!(o.emit(), h);
    }

    #[test]
    fn rejects_ufo_and_short() {
        let mut h = TSO4;
        h[1] = GSO_UDP_UFO;
        assert_eq!(Offload::parse(&h), Err(WireError::UnsupportedGso(3)));
        assert!(matches!(
            Offload::parse(&TSO4[..9]),
            Err(WireError::Truncated { got: 9, .. })
        ));
    }
}
