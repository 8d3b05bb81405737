//! Splitting one received UDP message into VXLAN datagrams and their inner
//! frames. Pure: the socket layer hands over bytes and the GRO segment size.

use std::ops::Range;

use crate::error::WireError;
use crate::vnet::Offload;
use crate::vxlan::{self, Vni};

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
