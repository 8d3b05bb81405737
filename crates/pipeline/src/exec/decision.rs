//! Cacheable decisions and the frame-editing primitives `execute` and `apply` share.

use std::time::Duration;

use super::conntrack::Conntrack;
use super::load::Loaded;
use super::{LogRecord, Target};
use crate::ir::ethertype;
use crate::mac::MacAddr;
use crate::wire::ethernet::TAG_LEN;
use crate::wire::{Parsed, ip, prereq};

/// A frame buffer with headroom, so VLAN tags can be pushed and stripped without moving the
/// payload (only the 12 address bytes move).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    buf: Vec<u8>,
    start: usize,
}

impl Frame {
    /// Headroom [`Frame::new`] reserves: room for four tags.
    pub const HEADROOM: usize = 4 * TAG_LEN;

    /// Copies `bytes` into a new buffer with [`Frame::HEADROOM`] bytes of headroom.
    pub fn new(bytes: &[u8]) -> Frame {
        let mut buf = Vec::with_capacity(Self::HEADROOM + bytes.len());
        buf.resize(Self::HEADROOM, 0);
        buf.extend_from_slice(bytes);
        Frame {
            buf,
            start: Self::HEADROOM,
        }
    }

    /// Wraps a buffer whose frame starts at `start` (the bytes before are headroom). The
    /// forwarder reads packets into `buf[start..]` to avoid a copy.
    pub fn from_parts(buf: Vec<u8>, start: usize) -> Frame {
        let start = start.min(buf.len());
        Frame { buf, start }
    }

    /// Replaces the frame with `bytes`, reusing the allocation and restoring the headroom
    /// (what a forwarder does with its receive buffer for each packet).
    pub fn load(&mut self, bytes: &[u8]) {
        self.buf.clear();
        self.buf.resize(Self::HEADROOM, 0);
        self.buf.extend_from_slice(bytes);
        self.start = Self::HEADROOM;
    }

    /// The frame.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// The frame, writable.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..]
    }

    /// Frame length.
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    /// True for an empty frame.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The buffer and the frame's start offset.
    pub fn into_parts(self) -> (Vec<u8>, usize) {
        (self.buf, self.start)
    }

    /// Removes `n` outer VLAN tags (the caller checked they exist).
    pub(crate) fn strip_vlans(&mut self, n: usize) {
        let d = n * TAG_LEN;
        if d == 0 || self.len() < 12 + d {
            return;
        }
        let s = self.start;
        self.buf.copy_within(s..s + 12, s + d);
        self.start += d;
    }

    /// Pushes an 802.1Q tag with `vid` outermost.
    pub(crate) fn push_vlan(&mut self, vid: u16) {
        if self.len() < 12 {
            return;
        }
        if self.start < TAG_LEN {
            // No headroom left: grow it once by a generous amount.
            let grow = Self::HEADROOM;
            self.buf.splice(0..0, std::iter::repeat_n(0u8, grow));
            self.start += grow;
        }
        let s = self.start;
        self.buf.copy_within(s..s + 12, s - TAG_LEN);
        self.start -= TAG_LEN;
        let t = self.start + 12;
        self.buf[t..t + 2].copy_from_slice(&ethertype::VLAN.to_be_bytes());
        self.buf[t + 2..t + 4].copy_from_slice(&(vid & 0x0fff).to_be_bytes());
    }

    /// Pushes a port's tag stack (outermost first), so the frame leaves with them.
    pub(crate) fn push_port_vlans(&mut self, vlans: &[u16]) {
        for v in vlans.iter().rev() {
            self.push_vlan(*v);
        }
    }

    pub(crate) fn set_eth_src(&mut self, m: MacAddr) {
        if let Some(b) = self.as_mut_slice().get_mut(6..12) {
            b.copy_from_slice(&m.0);
        }
    }

    pub(crate) fn set_eth_dst(&mut self, m: MacAddr) {
        if let Some(b) = self.as_mut_slice().get_mut(0..6) {
            b.copy_from_slice(&m.0);
        }
    }

    /// Decrements TTL / hop limit of the IP header at `l3`.
    pub(crate) fn dec_ttl(&mut self, l3: usize, v6: bool) {
        let f = self.as_mut_slice();
        if v6 {
            if let Some(h) = f.get_mut(l3 + 7) {
                *h = h.wrapping_sub(1);
            }
        } else if let Some(h) = f.get_mut(l3..) {
            ip::ipv4_dec_ttl(h);
        }
    }
}

/// One recorded step of a decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    StripVlans(u8),
    SetEthSrc(MacAddr),
    SetEthDst(MacAddr),
    DecTtl,
    PushVlan(u16),
    PopVlan,
    CtLookup { zone: u16, expect: u8 },
    CtCommit { zone: u16 },
    Output(Target),
}

impl Decision {
    pub(crate) fn new(
        generation: u64,
        ops: Vec<Op>,
        l3_len: (usize, usize),
        logs: Vec<LogRecord>,
    ) -> Self {
        let mut lookups = 0;
        let mut commit_before = false;
        for o in &ops {
            match o {
                Op::CtLookup { .. } => lookups += 1,
                Op::CtCommit { .. } if lookups == 0 => commit_before = true,
                _ => {}
            }
        }
        Decision {
            generation,
            ops,
            l3_len,
            single_lookup: lookups == 1 && !commit_before,
            logs,
        }
    }
}

/// What the pipeline decided for one flow key, replayable by [`apply`] without walking the
/// tables: header rewrites, conntrack operations (with the states they must return) and
/// outputs, in order. Valid only for the [`Loaded`] it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub(crate) generation: u64,
    pub(crate) ops: Vec<Op>,
    /// Allowed L3 length range (inclusive) when the pipeline tested `l3.len`.
    pub(crate) l3_len: (usize, usize),
    /// Exactly one conntrack lookup and no commit before it: `apply` can check and update in
    /// one step.
    pub(crate) single_lookup: bool,
    /// Log records to report for every packet the decision is applied to.
    pub logs: Vec<LogRecord>,
}

impl Decision {
    /// Number of outputs (0 = the decision is a drop).
    pub fn outputs(&self) -> usize {
        self.ops
            .iter()
            .filter(|o| matches!(o, Op::Output(_)))
            .count()
    }

    /// True when the decision drops the packet.
    pub fn is_drop(&self) -> bool {
        self.outputs() == 0
    }

    /// Conntrack zones the decision looks up and commits in, in order.
    pub fn ct_zones(&self) -> impl Iterator<Item = (u16, bool)> + '_ {
        self.ops.iter().filter_map(|o| match o {
            Op::CtLookup { zone, .. } => Some((*zone, false)),
            Op::CtCommit { zone } => Some((*zone, true)),
            _ => None,
        })
    }
}

/// Why [`apply`] refused a decision; the caller runs [`super::execute`] instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Stale {
    /// The decision came from another program load.
    #[error("decision belongs to another program generation")]
    Program,
    /// The frame's L3 length is outside the range the pipeline's `l3.len` tests allow.
    #[error("frame length outside the range the decision was made for")]
    Length,
    /// A conntrack lookup would now return a different state.
    #[error("conntrack state in zone {zone} changed since the decision was made")]
    Conntrack {
        /// The zone.
        zone: u16,
    },
}

/// Replays `d` on a frame whose parse is `parsed` and whose [`crate::wire::FlowKey`] and ingress
/// equal those `d` was made for. Rewrites `frame` in place, updates `ct`, and calls `emit` for
/// every output with its target and bytes. On [`Stale`], nothing was changed.
pub fn apply<F: FnMut(&Target, &[u8])>(
    loaded: &Loaded,
    d: &Decision,
    ct: &mut Conntrack,
    parsed: &Parsed,
    frame: &mut Frame,
    now: Duration,
    mut emit: F,
) -> Result<(), Stale> {
    if d.generation != loaded.generation() {
        return Err(Stale::Program);
    }
    let l3_len = frame.len().saturating_sub(parsed.layout.l3);
    if l3_len < d.l3_len.0 || l3_len > d.l3_len.1 {
        return Err(Stale::Length);
    }
    // A refusal must leave conntrack untouched. With one lookup and no commit before it, the
    // lookup checks its expectation before changing anything; otherwise check every lookup
    // first. Offsets only move with tag edits; track them anyway.
    let mut p = *parsed;
    if !d.single_lookup && d.ops.iter().any(|o| matches!(o, Op::CtLookup { .. })) {
        let mut shift: isize = 0;
        for op in &d.ops {
            match op {
                Op::StripVlans(n) => shift -= (usize::from(*n) * TAG_LEN) as isize,
                Op::PushVlan(_) => shift += TAG_LEN as isize,
                Op::PopVlan => shift -= TAG_LEN as isize,
                Op::CtLookup { zone, expect } => {
                    let q = shifted(parsed, shift);
                    let bytes = shifted_bytes(frame.as_slice(), parsed, shift);
                    if ct.peek(*zone, &q, &bytes, now) != *expect {
                        return Err(Stale::Conntrack { zone: *zone });
                    }
                }
                _ => {}
            }
        }
    }
    let v6 = p.key.prereq & prereq::IP6 != 0;
    for op in &d.ops {
        match op {
            Op::StripVlans(n) => {
                frame.strip_vlans(usize::from(*n));
                p.strip_vlans(usize::from(*n));
            }
            Op::SetEthSrc(m) => frame.set_eth_src(*m),
            Op::SetEthDst(m) => frame.set_eth_dst(*m),
            Op::DecTtl => frame.dec_ttl(p.layout.l3, v6),
            Op::PushVlan(v) => {
                frame.push_vlan(*v);
                p.push_vlan(*v);
            }
            Op::PopVlan => {
                frame.strip_vlans(1);
                p.strip_vlans(1);
            }
            Op::CtLookup { zone, expect } => {
                if d.single_lookup {
                    ct.lookup_if(*zone, &p, frame.as_slice(), now, *expect)
                        .map_err(|_| Stale::Conntrack { zone: *zone })?;
                } else {
                    ct.lookup(*zone, &p, frame.as_slice(), now);
                }
            }
            Op::CtCommit { zone } => {
                ct.commit(*zone, &p, frame.as_slice(), now);
            }
            Op::Output(t) => {
                let vlans = target_vlans(loaded, t);
                if vlans.is_empty() {
                    emit(t, frame.as_slice());
                } else {
                    frame.push_port_vlans(vlans);
                    emit(t, frame.as_slice());
                    frame.strip_vlans(vlans.len());
                }
            }
        }
    }
    Ok(())
}

/// The tags a target's port gets.
pub(crate) fn target_vlans<'a>(loaded: &'a Loaded, t: &Target) -> &'a [u16] {
    match t {
        Target::Vif { port: Some(p), .. } => loaded.port_vlans(*p),
        _ => &[],
    }
}

/// `parsed` as it would be after tag edits totalling `shift` bytes. Conntrack only reads the
/// key and the L4 offsets, which shift together.
fn shifted(parsed: &Parsed, shift: isize) -> Parsed {
    let mut q = *parsed;
    let mv = |x: usize| (x as isize + shift).max(0) as usize;
    q.layout.l3 = mv(q.layout.l3);
    q.layout.l4 = q.layout.l4.map(mv);
    q.layout.end = mv(q.layout.end);
    q
}

/// Frame bytes aligned with [`shifted`]: only the bytes from L3 on matter to conntrack, so
/// pad or trim the front.
fn shifted_bytes<'a>(frame: &'a [u8], parsed: &Parsed, shift: isize) -> std::borrow::Cow<'a, [u8]> {
    if shift == 0 {
        return std::borrow::Cow::Borrowed(frame);
    }
    let l3 = parsed.layout.l3;
    let new_l3 = (l3 as isize + shift).max(0) as usize;
    let mut v = vec![0u8; new_l3];
    v.extend_from_slice(frame.get(l3..).unwrap_or(&[]));
    std::borrow::Cow::Owned(v)
}
