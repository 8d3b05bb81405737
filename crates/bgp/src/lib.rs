//! BGP speaker for Weft's controller: MP-BGP sessions (VPNv4, EVPN types 2
//! and 5) with WAN gateways, exporting VRF host routes and importing routes
//! by route target.
//!
//! The session state machine ([`neighbor`]), the RIBs ([`rib`]) and the wire
//! format ([`packet`], over `netgauze-bgp-pkt`) are sans-IO: time comes in
//! as an argument, outputs are actions. [`tasks`] is the thin tokio driver
//! (listener, outbound connects, one task per peer, timers) behind
//! [`Speaker`] and [`SpeakerHandle`]. This crate knows nothing of Weft's
//! intent model or other crates: the controller maps its VRFs to
//! [`VpnRoute`]s and reads [`ImportedRoute`]s back.

pub mod error;
pub mod events;
pub mod neighbor;
pub mod packet;
pub mod rib;
pub mod route;
pub mod tasks;

pub use error::{ConfigError, ExportError, ParseError};
pub use events::{PeerConfig, PeerStatus, SpeakerConfig};
pub use neighbor::State;
pub use route::{
    Encapsulation, Family, ImportedRoute, NlriKey, RouteDistinguisher, RouteKey, RouteKind,
    RouteTarget, VpnRoute,
};
pub use tasks::{Imports, Speaker, SpeakerHandle};
