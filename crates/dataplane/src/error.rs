//! Error types of the dataplane: wire parsing, offload handling and device I/O.

use std::io;

use crate::vnet::GsoKind;

/// A header that cannot be parsed from untrusted bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer is shorter than the header (or the length it announces) needs.
    #[error(
        "{what}: buffer of {got} bytes is shorter than the {need} bytes needed; drop the packet"
    )]
    Truncated {
        /// Which header was being read.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        got: usize,
    },
    /// A VXLAN header whose I flag is clear carries no valid VNI (RFC 7348 §5).
    #[error(
        "VXLAN header flags {flags:#04x} lack the I flag (0x08), so the VNI is not valid; drop the packet"
    )]
    NoVni {
        /// The flags byte received.
        flags: u8,
    },
    /// A VNI value above 24 bits.
    #[error("VNI {0} does not fit in 24 bits (max 16777215); use a smaller VNI")]
    VniRange(u32),
    /// A virtio-net header with a GSO type this forwarder does not handle.
    #[error(
        "virtio-net header gso_type {0:#04x} is not supported (only none, TCPv4, TCPv6, UDP L4)"
    )]
    UnsupportedGso(u8),
}

/// A frame whose offload metadata cannot be carried out (segmentation or checksum).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OffloadError {
    /// The frame is not parseable far enough (Ethernet, IP or L4 header).
    #[error("{0}; the frame cannot be segmented or checksummed, drop it")]
    Wire(#[from] WireError),
    /// The GSO type does not match the frame's IP version or transport.
    #[error("gso type {gso:?} does not match the frame ({found}); drop it")]
    GsoMismatch {
        /// GSO type from the offload metadata.
        gso: GsoKind,
        /// What the frame really is.
        found: &'static str,
    },
    /// A GSO frame with a segment size of zero.
    #[error("gso_size is 0; a GSO frame needs a positive segment size")]
    ZeroSegmentSize,
    /// Segmentation would produce more segments than allowed.
    #[error(
        "segmenting would produce {count} segments, more than the limit of {max}; drop the frame"
    )]
    TooManySegments {
        /// Segments the frame would need.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The checksum start/offset point outside the frame.
    #[error("checksum start {start} + offset {offset} is outside the {len}-byte frame")]
    ChecksumOutOfRange {
        /// csum_start of the metadata.
        start: usize,
        /// csum_offset of the metadata.
        offset: usize,
        /// Frame length.
        len: usize,
    },
    /// The transport header starts before the end of the IP header or overlaps it.
    #[error("transport header offset {l4} is inconsistent with the IP header ending at {ip_end}")]
    BadL4Offset {
        /// Transport header offset (csum_start or derived).
        l4: usize,
        /// Where the fixed IP header ends.
        ip_end: usize,
    },
}

/// An I/O failure of a TAP device, the tunnel socket or the forwarder runtime.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The TAP device could not be created or configured.
    #[error("TAP device {name:?}: {op} failed: {source} (needs CAP_NET_ADMIN and /dev/net/tun)")]
    Tap {
        /// Requested interface name.
        name: String,
        /// The step that failed (open, TUNSETIFF, TUNSETOFFLOAD, ...).
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A TAP interface name that the kernel would refuse.
    #[error(
        "TAP name {0:?} is invalid: it must be 1 to 15 bytes without '/', ':', NUL or whitespace"
    )]
    TapName(String),
    /// The tunnel UDP socket could not be created, configured or bound.
    #[error("tunnel socket {local}: {op} failed: {source}")]
    Socket {
        /// The local address being bound.
        local: std::net::SocketAddr,
        /// The step that failed.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The event loop (epoll, eventfd, threads) failed.
    #[error("forwarder runtime: {op} failed: {source}")]
    Runtime {
        /// The step that failed.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A configuration that cannot work.
    #[error("invalid forwarder configuration: {0}")]
    Config(String),
}
