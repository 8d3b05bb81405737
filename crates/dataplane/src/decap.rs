//! The receive side of the tunnel, minus the syscalls: splitting received UDP
//! messages into VXLAN datagrams, decoding their headers and coalescing the
//! inner TCP segments ([`crate::gro`]). Pure, so property tests drive exactly
//! the code the forwarder runs.

use std::ops::Range;

use crate::error::WireError;
use crate::gro::{Coalescer, Item, Merged};
use crate::vnet::Offload;
use crate::vxlan::{self, Vni};

/// A datagram of the current batch that passes through uncoalesced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token<R> {
    /// Index of the message it came in (as given to [`Decapsulator::push`]).
    pub msg: usize,
    /// Where the inner frame is in that message.
    pub inner: Range<usize>,
    /// The sender.
    pub remote: R,
    /// The VNI.
    pub vni: Vni,
    /// Offload state of the inner frame.
    pub offload: Offload,
}

/// Counts of one [`Decapsulator::push`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushCounts {
    /// Datagrams found in the message.
    pub datagrams: u64,
    /// Of those, not valid VXLAN.
    pub malformed: u64,
}

/// Turns a batch of received messages into inner frames, in order.
/// `R` identifies the sender (an IP address in the forwarder).
#[derive(Debug)]
pub struct Decapsulator<R> {
    coalescer: Coalescer<(R, Vni)>,
    tokens: Vec<Token<R>>,
    decoded: Vec<Result<Datagram, WireError>>,
    items: Vec<Item>,
    coalesce: bool,
}

impl<R: Copy + Eq> Decapsulator<R> {
    /// A decapsulator; `coalesce` turns TCP coalescing on.
    pub fn new(coalesce: bool) -> Self {
        Decapsulator {
            coalescer: Coalescer::default(),
            tokens: Vec::new(),
            decoded: Vec::new(),
            items: Vec::new(),
            coalesce,
        }
    }

    /// Starts a new batch.
    pub fn clear(&mut self) {
        self.coalescer.clear();
        self.tokens.clear();
        self.items.clear();
    }

    /// Adds message number `msg` of the batch: `data` from `remote`, with the
    /// UDP GRO segment size if the kernel reported one.
    pub fn push(
        &mut self,
        msg: usize,
        data: &[u8],
        remote: R,
        gso_size: Option<u16>,
    ) -> PushCounts {
        let mut counts = PushCounts::default();
        self.decoded.clear();
        datagrams(data, gso_size, &mut self.decoded);
        for d in self.decoded.drain(..) {
            counts.datagrams += 1;
            let Ok(d) = d else {
                counts.malformed += 1;
                continue;
            };
            let token = self.tokens.len() as u32;
            let key = (remote, d.vni);
            let inner = &data[d.inner.clone()];
            if self.coalesce && d.offload.is_none() {
                self.coalescer.push(key, token, inner);
            } else {
                self.coalescer.push_unmergeable(key, token, inner);
            }
            self.tokens.push(Token {
                msg,
                inner: d.inner,
                remote,
                vni: d.vni,
                offload: d.offload,
            });
        }
        counts
    }

    /// Ends the batch: merged frames get their final headers.
    pub fn finish(&mut self) {
        self.coalescer.finish();
        self.items.clear();
        self.items.extend_from_slice(self.coalescer.items());
    }

    /// The frames of the batch in order (after [`Decapsulator::finish`]).
    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// A pass-through frame: where to find it.
    pub fn token(&self, token: u32) -> Option<&Token<R>> {
        self.tokens.get(token as usize)
    }

    /// A coalesced frame, keyed by sender and VNI.
    pub fn merged_mut(&mut self, group: usize) -> Option<Merged<'_, (R, Vni)>> {
        self.coalescer.merged_mut(group)
    }
}

/// One VXLAN datagram of a received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Where the inner Ethernet frame is in the message.
    pub inner: Range<usize>,
    /// The VNI of its header.
    pub vni: Vni,
    /// Offload state of the inner frame.
    pub offload: Offload,
}

/// Splits `msg` (a UDP payload, or several back to back when the kernel
/// coalesced them with UDP GRO and reported `gso_size`) and decodes each
/// VXLAN header. Invalid datagrams come out as errors, in order.
pub fn datagrams(msg: &[u8], gso_size: Option<u16>, out: &mut Vec<Result<Datagram, WireError>>) {
    let step = match gso_size {
        Some(s) if s > 0 => usize::from(s),
        _ => msg.len().max(1),
    };
    let mut start = 0;
    while start < msg.len() {
        let end = (start + step).min(msg.len());
        out.push(decode(msg, start..end));
        start = end;
    }
}

fn decode(msg: &[u8], range: Range<usize>) -> Result<Datagram, WireError> {
    let packet = vxlan::Packet::new_checked(&msg[range.clone()])?;
    let repr = vxlan::Repr::parse(&packet)?;
    Ok(Datagram {
        inner: range.start + vxlan::HEADER_LEN..range.end,
        vni: repr.vni,
        offload: Offload::NONE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_gro_batches() {
        let mut msg = Vec::new();
        for (vni, len) in [(100u8, 20usize), (100, 20), (101, 12)] {
            msg.extend_from_slice(&[0x08, 0, 0, 0, 0, 0, vni, 0]);
            msg.resize(msg.len() + len - 8, 0xee);
        }
        let mut out = Vec::new();
        datagrams(&msg, Some(20), &mut out);
        let got: Vec<_> = out
            .into_iter()
            .map(|d| d.map(|d| (d.inner, d.vni.get())))
            .collect();
        assert_eq!(
            got,
            [Ok((8..20, 100)), Ok((28..40, 100)), Ok((48..52, 101))]
        );
    }

    #[test]
    fn bad_datagrams_are_reported_in_place() {
        let msg = [
            0x08, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0x08, 0, 0,
        ];
        let mut out = Vec::new();
        datagrams(&msg, Some(8), &mut out);
        assert!(matches!(&out[0], Ok(d) if d.inner == (8..8)));
        assert_eq!(out[1], Err(WireError::NoVni { flags: 0 }));
        assert!(matches!(out[2], Err(WireError::Truncated { got: 3, .. })));
        out.clear();
        datagrams(&[], None, &mut out);
        assert!(out.is_empty());
    }
}
