//! VXLAN header (RFC 7348 §5), smoltcp style: a [`Packet`] view over bytes and a
//! validated [`Repr`] with `parse`/`emit`.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Reserved bits are sent as zero and ignored on receipt, as the RFC says; a
//! header without the I flag has no valid VNI and is rejected.

use std::fmt;

use crate::error::WireError;

/// The IANA-assigned VXLAN UDP port.
pub const DEFAULT_PORT: u16 = 4789;
/// Length of the VXLAN header.
pub const HEADER_LEN: usize = 8;
/// Bytes VXLAN over IPv4 adds to an inner Ethernet frame on the underlay:
/// outer IPv4 (20) + UDP (8) + VXLAN (8). The inner Ethernet header (14) is
/// what makes the usual "50 bytes" figure.
pub const IPV4_OVERHEAD: usize = 20 + 8 + HEADER_LEN;
/// Same for an IPv6 underlay: outer IPv6 (40) + UDP (8) + VXLAN (8).
pub const IPV6_OVERHEAD: usize = 40 + 8 + HEADER_LEN;

/// The I flag: the VNI field is valid.
pub const FLAG_I: u8 = 0x08;

mod field {
    use std::ops::{Range, RangeFrom};
    pub const FLAGS: usize = 0;
    pub const RESERVED1: Range<usize> = 1..4;
    pub const VNI: Range<usize> = 4..7;
    pub const RESERVED2: usize = 7;
    pub const PAYLOAD: RangeFrom<usize> = 8..;
}

/// A 24-bit VXLAN Network Identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vni(u32);

impl Vni {
    /// The largest VNI.
    pub const MAX: u32 = 0x00ff_ffff;

    /// A VNI, if `value` fits in 24 bits.
    pub const fn new(value: u32) -> Result<Vni, WireError> {
        if value > Self::MAX {
            Err(WireError::VniRange(value))
        } else {
            Ok(Vni(value))
        }
    }

    /// The numeric value.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Vni {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A read/write view of a VXLAN header followed by its inner Ethernet frame.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking its length; accessors may panic on a
    /// short buffer. Use [`Packet::new_checked`] for untrusted input.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after checking it holds a full header.
    pub fn new_checked(buffer: T) -> Result<Packet<T>, WireError> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the buffer holds a full header; after this no accessor panics.
    pub fn check_len(&self) -> Result<(), WireError> {
        let got = self.buffer.as_ref().len();
        if got < HEADER_LEN {
            Err(WireError::Truncated {
                what: "VXLAN header",
                need: HEADER_LEN,
                got,
            })
        } else {
            Ok(())
        }
    }

    /// Returns the underlying buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The flags byte.
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    /// Whether the I flag (valid VNI) is set.
    pub fn vni_valid(&self) -> bool {
        self.flags() & FLAG_I != 0
    }

    /// The VNI field (meaningful only when [`Packet::vni_valid`]).
    pub fn vni(&self) -> Vni {
        let b = &self.buffer.as_ref()[field::VNI];
        Vni(u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]))
    }

    /// The inner Ethernet frame.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the flags byte.
    pub fn set_flags(&mut self, flags: u8) {
        self.buffer.as_mut()[field::FLAGS] = flags;
    }

    /// Sets the VNI field.
    pub fn set_vni(&mut self, vni: Vni) {
        let v = vni.0;
        self.buffer.as_mut()[field::VNI].copy_from_slice(&[
            (v >> 16) as u8,
            (v >> 8) as u8,
            v as u8,
        ]);
    }

    /// Zeroes both reserved fields.
    pub fn clear_reserved(&mut self) {
        let b = self.buffer.as_mut();
        b[field::RESERVED1].fill(0);
        b[field::RESERVED2] = 0;
    }

    /// The inner Ethernet frame, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

/// A validated VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    /// The VXLAN Network Identifier.
    pub vni: Vni,
}

impl Repr {
    /// Parses a header; rejects one without the I flag and ignores reserved bits.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr, WireError> {
        packet.check_len()?;
        if !packet.vni_valid() {
            return Err(WireError::NoVni {
                flags: packet.flags(),
            });
        }
        Ok(Repr { vni: packet.vni() })
    }

    /// Length of the emitted header.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header: I flag set, reserved fields zero.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_flags(FLAG_I);
        packet.clear_reserved();
        packet.set_vni(self.vni);
    }

    /// The header as an array, for use as a per-datagram prefix.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        self.emit(&mut Packet::new_unchecked(&mut b[..]));
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// VNI 100, followed by the first bytes of a broadcast Ethernet frame
    /// (the shape `tcpdump -X` shows for Linux VXLAN traffic).
    static PACKET_VNI_100: [u8; 14] = [
        0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x64, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    ];

    /// Reserved bits set by a sloppy sender; VNI 0xabcdef.
    static PACKET_RESERVED_SET: [u8; 8] = [0xff, 0x12, 0x34, 0x56, 0xab, 0xcd, 0xef, 0x99];

    /// The I flag clear.
    static PACKET_NO_I: [u8; 8] = [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x64, 0x00];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&PACKET_VNI_100[..]).unwrap();
        assert_eq!(p.flags(), 0x08);
        assert!(p.vni_valid());
        assert_eq!(p.vni().get(), 100);
        assert_eq!(p.payload(), &[0xff; 6]);
        assert_eq!(Repr::parse(&p).unwrap().vni, Vni::new(100).unwrap());
    }

    #[test]
    fn reserved_bits_are_ignored() {
        let p = Packet::new_checked(&PACKET_RESERVED_SET[..]).unwrap();
        assert_eq!(Repr::parse(&p).unwrap().vni.get(), 0xabcdef);
        assert!(p.payload().is_empty());
    }

    #[test]
    fn missing_i_flag_is_rejected() {
        let p = Packet::new_checked(&PACKET_NO_I[..]).unwrap();
        assert_eq!(Repr::parse(&p), Err(WireError::NoVni { flags: 0 }));
    }

    #[test]
    fn truncated_is_rejected() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&PACKET_VNI_100[..len]).unwrap_err(),
                WireError::Truncated {
                    what: "VXLAN header",
                    need: 8,
                    got: len
                }
            );
        }
    }

    #[test]
    fn construct_matches_wire_bytes() {
        let mut buf = [0xaau8; 14];
        buf[8..].copy_from_slice(&[0xff; 6]);
        let repr = Repr {
            vni: Vni::new(100).unwrap(),
        };
        let mut p = Packet::new_unchecked(&mut buf[..]);
        repr.emit(&mut p);
        assert_eq!(buf, PACKET_VNI_100);
        assert_eq!(repr.to_bytes(), PACKET_VNI_100[..8]);
        assert_eq!(repr.buffer_len(), 8);
    }

    #[test]
    fn vni_range() {
        assert_eq!(Vni::new(Vni::MAX).unwrap().get(), 0xff_ffff);
        assert_eq!(Vni::new(1 << 24), Err(WireError::VniRange(1 << 24)));
    }
}
