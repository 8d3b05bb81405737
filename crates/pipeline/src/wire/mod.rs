//! Packet parsing and building.
//!
//! Views follow smoltcp's shape: `Packet<T: AsRef<[u8]>>` wrappers whose `new_checked` validates
//! lengths once, after which no accessor panics. [`parse`] walks a whole frame into a
//! [`FlowKey`] (the compact header summary the executor matches on and the forwarder's flow
//! cache keys on) plus a [`Layout`] of header offsets for rewrites. [`build`] makes the packets
//! the pipeline generates (ARP replies, ND advertisements, ICMP errors, echo replies, TCP RST)
//! and arbitrary test/trace packets from a [`build::PacketSpec`], always with correct checksums.
//!
//! The VXLAN header codec (RFC 7348) lives here too ([`vxlan`]); the outer IP/UDP headers are
//! the forwarder's job (it sends through a kernel UDP socket).
//!
//! Nothing here panics on any input: every decoder is fuzzed by proptests.

pub mod arp;
pub mod build;
pub mod checksum;
pub mod ethernet;
pub mod icmp;
pub mod ip;
mod key;
pub mod l4;
pub mod vxlan;

pub(crate) use key::ip_word as key_ip_word;
pub use key::{FlowKey, Frag, Layout, Parsed, parse, prereq};

#[cfg(test)]
mod tests;

/// Why a frame could not be parsed. The executor drops such frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// A header was cut short.
    #[error("truncated {layer} header: need {need} bytes, frame has {have}")]
    Truncated {
        /// Which header.
        layer: &'static str,
        /// Bytes needed from the header's start.
        need: usize,
        /// Bytes available from the header's start.
        have: usize,
    },
    /// More than two VLAN tags.
    #[error("more than 2 VLAN tags; only single tags and QinQ are supported")]
    TooManyVlanTags,
    /// A header field held an impossible value.
    #[error("malformed {layer} header: {what}")]
    Malformed {
        /// Which header.
        layer: &'static str,
        /// What was wrong.
        what: &'static str,
    },
    /// More IPv6 extension headers than the parser walks.
    #[error("more than {0} IPv6 extension headers")]
    TooManyExtensionHeaders(usize),
}

/// Byte-range helpers shared by the views; all are total (never panic).
pub(crate) mod field {
    use crate::mac::MacAddr;

    /// A byte range inside a header.
    pub type Field = core::ops::Range<usize>;

    /// Big-endian u16 at `at`, if the bytes exist.
    #[inline]
    pub fn be16(b: &[u8], at: usize) -> Option<u16> {
        b.get(at..at + 2).map(|s| u16::from_be_bytes([s[0], s[1]]))
    }

    /// Big-endian u32 at `at`, if the bytes exist.
    #[inline]
    pub fn be32(b: &[u8], at: usize) -> Option<u32> {
        b.get(at..at + 4)
            .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    /// MAC at `at`, or zero if the bytes do not exist.
    #[inline]
    pub fn mac(b: &[u8], at: usize) -> MacAddr {
        match b.get(at..at + 6) {
            Some(s) => MacAddr([s[0], s[1], s[2], s[3], s[4], s[5]]),
            None => MacAddr::ZERO,
        }
    }

    /// 4 bytes at `at`, or zero.
    #[inline]
    pub fn arr4(b: &[u8], at: usize) -> [u8; 4] {
        match b.get(at..at + 4) {
            Some(s) => [s[0], s[1], s[2], s[3]],
            None => [0; 4],
        }
    }

    /// 16 bytes at `at`, or zero.
    #[inline]
    pub fn arr16(b: &[u8], at: usize) -> [u8; 16] {
        let mut out = [0u8; 16];
        if let Some(s) = b.get(at..at + 16) {
            out.copy_from_slice(s);
        }
        out
    }
}
