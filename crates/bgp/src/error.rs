//! Error types of the speaker.

use std::net::IpAddr;

use ipnet::IpNet;

/// Text that is not a valid route distinguisher or route target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The text is not `ASN16:NN32`, `IPv4:NN16` or `ASN32:NN16`.
    #[error("invalid {what} {value:?}: {reason}; write ASN16:NN32, IPv4:NN16 or ASN32:NN16")]
    AdminNumber {
        /// "route distinguisher" or "route target".
        what: &'static str,
        /// The text given.
        value: String,
        /// What was wrong with it.
        reason: &'static str,
    },
}

/// A route in an export set that cannot be advertised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExportError {
    /// The label or VNI does not fit the field of the route's family.
    #[error(
        "route {prefix}: label/VNI {value} does not fit (max {max}); VPNv4 labels are 20 bits, EVPN VNIs 24 bits"
    )]
    LabelTooLarge {
        /// The route's prefix.
        prefix: IpNet,
        /// The value given.
        value: u32,
        /// The largest value the family allows.
        max: u32,
    },
    /// The prefix or next hop cannot be carried by the route's family.
    #[error("route {prefix}: {reason}")]
    UnsupportedPrefix {
        /// The route's prefix.
        prefix: IpNet,
        /// Why it cannot be carried.
        reason: &'static str,
    },
    /// The speaker task has stopped.
    #[error("the BGP speaker has shut down; start a new one")]
    ShutDown,
}

/// A speaker configuration that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The same peer address appears twice.
    #[error("peer {0} is configured twice; give each peer address once")]
    DuplicatePeer(IpAddr),
    /// AS number 0 is reserved (RFC 7607).
    #[error("AS number 0 is reserved (RFC 7607); use a real AS number for {0}")]
    ZeroAs(&'static str),
    /// The router ID must not be 0.0.0.0 (RFC 6286).
    #[error("router id 0.0.0.0 is invalid; use a non-zero IPv4 address")]
    ZeroRouterId,
    /// A hold time of 1 or 2 seconds is forbidden (RFC 4271 section 4.2).
    #[error("hold time {hold_time}s for peer {peer} is invalid; use 0 or at least 3 seconds")]
    BadHoldTime {
        /// The peer.
        peer: IpAddr,
        /// The value given.
        hold_time: u16,
    },
    /// The listen socket could not be bound.
    #[error(
        "cannot listen on {addr}: {reason}; check the address and that no other process uses the port"
    )]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        reason: String,
    },
    /// The speaker task has stopped.
    #[error("the BGP speaker has shut down; start a new one")]
    ShutDown,
}
