//! The seam between packet I/O and forwarding decisions.
//!
//! The [`Forwarder`](crate::Forwarder) reads frames from TAPs and the tunnel
//! socket and hands each one, with its [`Offload`] state, to a
//! [`PacketProcessor`]; the processor says where it goes through an
//! [`OutputSink`]. [`PipelineProcessor`](crate::pipeline::PipelineProcessor)
//! runs the host's logical pipeline; [`StaticBridge`] is a fixed VXLAN
//! point-to-point bridge used for tests and benchmarks.
//!
//! Super-frames (TSO from a guest, or TCP segments coalesced on receive) reach
//! the processor as one frame: headers are those every segment will carry, so
//! one decision covers them all (the kernel's GSO model). A processor that
//! rewrites headers in place keeps this property.

use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;
use std::time::Instant;

use crate::vnet::Offload;
use crate::vxlan::Vni;

/// Index of a local virtual interface (a TAP), in the order the forwarder was
/// configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VifId(pub u32);

/// A place a frame comes from or goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A local TAP.
    Tap(VifId),
    /// A VXLAN tunnel: the remote underlay address and the VNI.
    Tunnel {
        /// Remote tunnel endpoint (VTEP) address.
        remote: IpAddr,
        /// VXLAN Network Identifier.
        vni: Vni,
    },
}

/// One frame handed to a processor.
#[derive(Debug)]
pub struct Input<'a> {
    /// Where the frame came from.
    pub from: Endpoint,
    /// The Ethernet frame; the processor may rewrite it in place.
    pub frame: &'a mut [u8],
    /// Checksum/segmentation work still pending on the frame.
    pub offload: Offload,
    /// When the frame's batch was read: the clock for connection tracking and
    /// flow-cache aging (processors read no clock themselves).
    pub now: Instant,
}

/// Collects a processor's decisions for the current frame.
#[derive(Debug, Default)]
pub struct OutputSink {
    forwards: Vec<Endpoint>,
    emitted: Vec<(Endpoint, Range<usize>, Offload)>,
    arena: Vec<u8>,
}

impl OutputSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends the input frame (as possibly rewritten in place, with its offload
    /// state) to `to`. May be called several times to replicate it.
    pub fn forward(&mut self, to: Endpoint) {
        self.forwards.push(to);
    }

    /// Sends a frame the processor built itself (an ARP reply, an ICMP error):
    /// the bytes are copied and carry no offload.
    pub fn emit(&mut self, to: Endpoint, frame: &[u8]) {
        self.emit_parts(to, &[frame], Offload::NONE);
    }

    /// Sends a frame made of `parts` (copied back to back) with offload work
    /// still pending on it (e.g. a rewritten copy of a TSO super-frame whose
    /// headers changed length). Returns the copy, for last fix-ups.
    pub fn emit_parts(&mut self, to: Endpoint, parts: &[&[u8]], offload: Offload) -> &mut [u8] {
        let start = self.arena.len();
        for p in parts {
            self.arena.extend_from_slice(p);
        }
        let end = self.arena.len();
        self.emitted.push((to, start..end, offload));
        &mut self.arena[start..end]
    }

    /// Whether nothing was decided (the input is dropped).
    pub fn is_empty(&self) -> bool {
        self.forwards.is_empty() && self.emitted.is_empty()
    }

    /// Destinations of the input frame.
    pub fn forwards(&self) -> &[Endpoint] {
        &self.forwards
    }

    /// Frames built by the processor.
    pub fn emitted(&self) -> impl Iterator<Item = (Endpoint, &[u8])> {
        self.emitted
            .iter()
            .map(|(e, r, _)| (*e, &self.arena[r.clone()]))
    }

    /// Frames built by the processor, with their offload state.
    pub fn emitted_with_offload(&self) -> impl Iterator<Item = (Endpoint, &[u8], &Offload)> {
        self.emitted
            .iter()
            .map(|(e, r, o)| (*e, &self.arena[r.clone()], o))
    }

    /// Forgets the decisions of the previous frame.
    pub fn clear(&mut self) {
        self.forwards.clear();
        self.emitted.clear();
        self.arena.clear();
    }
}

/// Decides where frames go. The forwarder calls it from its worker threads;
/// each worker owns one instance (see [`Forwarder::start`](crate::Forwarder::start)),
/// so state shared between workers (flow tables, conntrack) must live behind
/// `Arc`s inside the processor.
pub trait PacketProcessor: Send {
    /// Decides the fate of one frame. Pushing nothing into `out` drops it.
    fn process(&mut self, input: Input<'_>, out: &mut OutputSink);
}

/// One link of a [`StaticBridge`]: a TAP paired with a remote VTEP and VNI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeLink {
    /// The local TAP.
    pub vif: VifId,
    /// The remote VTEP.
    pub remote: IpAddr,
    /// The VNI on the wire.
    pub vni: Vni,
}

/// A fixed VXLAN point-to-point bridge: every frame from a link's TAP goes to
/// its remote with its VNI; every tunnel frame with that VNI from that remote
/// goes to the TAP. Everything else is dropped.
#[derive(Debug, Clone, Default)]
pub struct StaticBridge {
    by_vif: HashMap<VifId, Endpoint>,
    by_tunnel: HashMap<(IpAddr, Vni), VifId>,
}

impl StaticBridge {
    /// A bridge over `links`.
    pub fn new(links: &[BridgeLink]) -> Self {
        let mut b = StaticBridge::default();
        for l in links {
            b.by_vif.insert(
                l.vif,
                Endpoint::Tunnel {
                    remote: l.remote,
                    vni: l.vni,
                },
            );
            b.by_tunnel.insert((l.remote, l.vni), l.vif);
        }
        b
    }
}

impl PacketProcessor for StaticBridge {
    fn process(&mut self, input: Input<'_>, out: &mut OutputSink) {
        let to = match input.from {
            Endpoint::Tap(vif) => self.by_vif.get(&vif).copied(),
            Endpoint::Tunnel { remote, vni } => self
                .by_tunnel
                .get(&(remote, vni))
                .map(|v| Endpoint::Tap(*v)),
        };
        if let Some(to) = to {
            out.forward(to);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_bridge_maps_both_ways_and_drops_strangers() {
        let remote: IpAddr = "192.0.2.2".parse().unwrap();
        let vni = Vni::new(100).unwrap();
        let mut b = StaticBridge::new(&[BridgeLink {
            vif: VifId(0),
            remote,
            vni,
        }]);
        let mut out = OutputSink::new();
        let mut frame = [0u8; 60];
        let mut run = |from| {
            out.clear();
            b.process(
                Input {
                    from,
                    frame: &mut frame,
                    offload: Offload::NONE,
                    now: Instant::now(),
                },
                &mut out,
            );
            out.forwards().to_vec()
        };
        assert_eq!(
            run(Endpoint::Tap(VifId(0))),
            [Endpoint::Tunnel { remote, vni }]
        );
        assert_eq!(
            run(Endpoint::Tunnel { remote, vni }),
            [Endpoint::Tap(VifId(0))]
        );
        assert!(run(Endpoint::Tap(VifId(1))).is_empty());
        let stranger = "192.0.2.99".parse().unwrap();
        assert!(
            run(Endpoint::Tunnel {
                remote: stranger,
                vni
            })
            .is_empty()
        );
        let other_vni = Vni::new(101).unwrap();
        assert!(
            run(Endpoint::Tunnel {
                remote,
                vni: other_vni
            })
            .is_empty()
        );
    }

    #[test]
    fn sink_keeps_emitted_frames() {
        let mut out = OutputSink::new();
        assert!(out.is_empty());
        out.emit(Endpoint::Tap(VifId(3)), b"abc");
        out.emit(Endpoint::Tap(VifId(4)), b"de");
        let got: Vec<_> = out.emitted().map(|(e, f)| (e, f.to_vec())).collect();
        assert_eq!(
            got,
            [
                (Endpoint::Tap(VifId(3)), b"abc".to_vec()),
                (Endpoint::Tap(VifId(4)), b"de".to_vec())
            ]
        );
        out.clear();
        assert!(out.is_empty());
    }
}
