//! Receive-side coalescing (software GRO) of TCP segments into super-frames.
//!
//! Frames decapsulated from one receive batch are pushed in arrival order.
//! Consecutive in-sequence data segments of one TCP flow (from the same
//! tunnel key) are merged into one super-frame with [`Offload`] metadata
//! (`gso` = TCP, `csum` = partial), which the TAP accepts in one write and the
//! guest's stack handles as a single packet. This is what Linux GRO,
//! wireguard-go and tailscale do; the merge rules follow `tcp_gro_receive`:
//! same addresses, ports, ACK, window, flags (PSH allowed on the last) and
//! TCP options, IPv4 id +1 or fixed, equal segment sizes with a possibly
//! shorter last one, and a total that fits the IP length field.
//!
//! Every segment's TCP checksum is verified before it is merged, because the
//! merged frame is handed on with the checksum marked as not yet computed
//! and the guest will not check it again. Frames that cannot be merged pass
//! through untouched, and a non-mergeable segment of a flow closes that
//! flow's open group, so no flow is ever reordered.

use crate::csum::Checksum;
use crate::frame::{self, IpVersion, PROTO_TCP, be16, be32, put16, tcp_flags};
use crate::vnet::{CsumOffload, Gso, GsoKind, Offload};

/// Default limit of flows coalesced at once per batch.
pub const DEFAULT_MAX_GROUPS: usize = 64;

/// One entry of the coalesced batch, in arrival order of its first segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item {
    /// A frame passed through unchanged; the caller's token.
    Single(u32),
    /// A coalesced group; read it with [`Coalescer::merged_mut`].
    Merged(usize),
}

/// A coalesced frame of the batch.
#[derive(Debug)]
pub struct Merged<'a, K> {
    /// The key its segments were pushed with.
    pub key: K,
    /// The frame (headers of the first segment, all payloads).
    pub frame: &'a mut [u8],
    /// Offload state: TCP GSO + partial checksum, or `data_valid` for a single segment.
    pub offload: Offload,
    /// Segments merged into it.
    pub segments: u32,
}

#[derive(Debug, Clone, Copy)]
struct Seg {
    l3: usize,
    version: IpVersion,
    l4: usize,
    hdr_len: usize,
    seq: u32,
    flags: u8,
    ip_id: u16,
    payload: usize,
}

#[derive(Debug)]
struct Group<K> {
    key: K,
    seg: Seg,
    count: u32,
    gso_size: usize,
    next_seq: u32,
    last_ip_id: u16,
    psh: bool,
    offload: Offload,
}

/// Coalesces the TCP segments of one receive batch. `K` tells tunnels apart
/// (e.g. remote address and VNI): segments with different keys never merge.
#[derive(Debug)]
pub struct Coalescer<K> {
    groups: Vec<Group<K>>,
    bufs: Vec<Vec<u8>>,
    open: Vec<usize>,
    items: Vec<Item>,
    max_groups: usize,
    finished: bool,
}

impl<K: Copy + Eq> Default for Coalescer<K> {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_GROUPS)
    }
}

impl<K: Copy + Eq> Coalescer<K> {
    /// A coalescer that merges at most `max_groups` frames per batch; more
    /// flows than that pass through unmerged.
    pub fn new(max_groups: usize) -> Self {
        Coalescer {
            groups: Vec::new(),
            bufs: Vec::new(),
            open: Vec::new(),
            items: Vec::new(),
            max_groups,
            finished: false,
        }
    }

    /// Forgets the batch, keeping buffers for reuse.
    pub fn clear(&mut self) {
        self.groups.clear();
        self.open.clear();
        self.items.clear();
        self.finished = false;
    }

    /// Adds a frame that may be merged. `token` comes back in [`Item::Single`]
    /// if the frame is passed through.
    pub fn push(&mut self, key: K, token: u32, frame: &[u8]) {
        self.finished = false;
        let Some((seg, eligible)) = parse(frame) else {
            self.items.push(Item::Single(token));
            return;
        };
        let open = self.find_open(key, frame, &seg);
        if eligible {
            if let Some(pos) = open {
                let g = self.open[pos];
                if self.can_merge(g, frame, &seg) {
                    self.append(pos, frame, &seg);
                    return;
                }
                self.open.swap_remove(pos);
            }
            if self.groups.len() < self.max_groups {
                self.start(key, frame, seg);
                return;
            }
        } else if let Some(pos) = open {
            self.open.swap_remove(pos);
        }
        self.items.push(Item::Single(token));
    }

    /// Adds a frame that must pass through as is (for example one that is
    /// already a super-frame); it still ends its flow's open group.
    pub fn push_unmergeable(&mut self, key: K, token: u32, frame: &[u8]) {
        self.finished = false;
        if let Some((seg, _)) = parse(frame)
            && let Some(pos) = self.find_open(key, frame, &seg)
        {
            self.open.swap_remove(pos);
        }
        self.items.push(Item::Single(token));
    }

    /// Fixes the headers of merged frames; call once after the last push.
    pub fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.open.clear();
        for (g, group) in self.groups.iter_mut().enumerate() {
            let buf = &mut self.bufs[g];
            if group.count == 1 {
                // Verified but unchanged: the guest need not check it again.
                group.offload = Offload {
                    data_valid: true,
                    ..Offload::NONE
                };
                continue;
            }
            let s = group.seg;
            let len = buf.len();
            let l4_len = (len - s.l4) as u32;
            let pseudo = match s.version {
                IpVersion::V4 => {
                    put16(buf, s.l3 + 2, (len - s.l3) as u16);
                    put16(buf, s.l3 + 10, 0);
                    let c = crate::csum::checksum(&buf[s.l3..s.l3 + 20]);
                    put16(buf, s.l3 + 10, c);
                    let (a, b) = frame::ipv4_addrs(buf, s.l3);
                    Checksum::pseudo_v4(a, b, PROTO_TCP, l4_len)
                }
                IpVersion::V6 => {
                    put16(buf, s.l3 + 4, (len - s.l3 - 40) as u16);
                    let (a, b) = frame::ipv6_addrs(buf, s.l3);
                    Checksum::pseudo_v6(a, b, PROTO_TCP, l4_len)
                }
            };
            if group.psh {
                buf[s.l4 + 13] |= tcp_flags::PSH;
            }
            // CHECKSUM_PARTIAL convention: the field holds the folded pseudo-header sum.
            put16(buf, s.l4 + 16, pseudo.fold());
            group.offload = Offload {
                csum: Some(CsumOffload {
                    start: s.l4 as u16,
                    offset: 16,
                }),
                gso: Some(Gso {
                    kind: match s.version {
                        IpVersion::V4 => GsoKind::Tcp4,
                        IpVersion::V6 => GsoKind::Tcp6,
                    },
                    size: group.gso_size as u16,
                    hdr_len: s.hdr_len as u16,
                    ecn: false,
                }),
                data_valid: false,
            };
        }
    }

    /// The batch in order. Call [`Coalescer::finish`] first.
    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// A merged frame. Call [`Coalescer::finish`] first.
    pub fn merged_mut(&mut self, group: usize) -> Option<Merged<'_, K>> {
        let g = self.groups.get(group)?;
        let (key, offload, segments) = (g.key, g.offload, g.count);
        Some(Merged {
            key,
            frame: self.bufs.get_mut(group)?.as_mut_slice(),
            offload,
            segments,
        })
    }

    fn find_open(&self, key: K, frame: &[u8], seg: &Seg) -> Option<usize> {
        self.open.iter().position(|&g| {
            let group = &self.groups[g];
            group.key == key && same_flow(&self.bufs[g], &group.seg, frame, seg)
        })
    }

    fn can_merge(&self, g: usize, frame: &[u8], seg: &Seg) -> bool {
        let group = &self.groups[g];
        let first = &self.bufs[g];
        let f = &group.seg;
        if seg.seq != group.next_seq || seg.payload > group.gso_size || seg.hdr_len != f.hdr_len {
            return false;
        }
        let ip_len_after =
            first.len() + seg.payload - f.l3 - if f.version == IpVersion::V6 { 40 } else { 0 };
        if ip_len_after > usize::from(u16::MAX) {
            return false;
        }
        // ACK number, data offset + flags (PSH aside) + window, and all options.
        let (a, b) = (&first[f.l4..f.hdr_len], &frame[seg.l4..seg.hdr_len]);
        if a[8..13] != b[8..13]
            || (a[13] & !tcp_flags::PSH) != (b[13] & !tcp_flags::PSH)
            || a[14..16] != b[14..16]
        {
            return false;
        }
        if a[20..] != b[20..] {
            return false;
        }
        match f.version {
            IpVersion::V4 => {
                let (x, y) = (&first[f.l3..], &frame[seg.l3..]);
                // TOS, flags (DF), TTL must match; the id must count up (or stay fixed with DF).
                let df = x[6] & 0x40 != 0;
                x[1] == y[1]
                    && x[6] == y[6]
                    && x[8] == y[8]
                    && (seg.ip_id == group.last_ip_id.wrapping_add(1)
                        || (df && seg.ip_id == group.last_ip_id))
            }
            IpVersion::V6 => {
                let (x, y) = (&first[f.l3..], &frame[seg.l3..]);
                x[..4] == y[..4] && x[7] == y[7]
            }
        }
    }

    fn append(&mut self, pos: usize, frame: &[u8], seg: &Seg) {
        let g = self.open[pos];
        self.bufs[g].extend_from_slice(&frame[seg.hdr_len..seg.hdr_len + seg.payload]);
        let group = &mut self.groups[g];
        group.count += 1;
        group.next_seq = group.next_seq.wrapping_add(seg.payload as u32);
        group.last_ip_id = seg.ip_id;
        let psh = seg.flags & tcp_flags::PSH != 0;
        group.psh |= psh;
        if psh || seg.payload < group.gso_size {
            self.open.swap_remove(pos);
        }
    }

    fn start(&mut self, key: K, frame: &[u8], seg: Seg) {
        let g = self.groups.len();
        if self.bufs.len() <= g {
            self.bufs
                .push(Vec::with_capacity(usize::from(u16::MAX) + 256));
        }
        let buf = &mut self.bufs[g];
        buf.clear();
        buf.extend_from_slice(&frame[..seg.hdr_len + seg.payload]);
        let psh = seg.flags & tcp_flags::PSH != 0;
        self.groups.push(Group {
            key,
            seg,
            count: 1,
            gso_size: seg.payload,
            next_seq: seg.seq.wrapping_add(seg.payload as u32),
            last_ip_id: seg.ip_id,
            psh,
            offload: Offload::NONE,
        });
        self.items.push(Item::Merged(g));
        if !psh {
            self.open.push(g);
        }
    }
}

/// Whether two TCP segments belong to the same flow: same Ethernet header, IP
/// addresses and ports.
fn same_flow(a: &[u8], sa: &Seg, b: &[u8], sb: &Seg) -> bool {
    if sa.l3 != sb.l3 || sa.version != sb.version || a[..sa.l3] != b[..sb.l3] {
        return false;
    }
    let addrs = match sa.version {
        IpVersion::V4 => 12..20,
        IpVersion::V6 => 8..40,
    };
    a[sa.l3 + addrs.start..sa.l3 + addrs.end] == b[sb.l3 + addrs.start..sb.l3 + addrs.end]
        && a[sa.l4..sa.l4 + 4] == b[sb.l4..sb.l4 + 4]
}

/// Parses a TCP segment: its layout and whether it may be merged. `None` for
/// anything that is not a complete IPv4/IPv6 TCP segment.
fn parse(frame: &[u8]) -> Option<(Seg, bool)> {
    let (l3, version) = frame::l3(frame).ok()??;
    let (l4, ip_len_ok, ip_simple, ip_id) = match version {
        IpVersion::V4 => {
            let ip = frame.get(l3..l3 + 20)?;
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            if ip[0] >> 4 != 4 || ihl < 20 || ip[9] != PROTO_TCP {
                return None;
            }
            let frag = be16(ip, 6)? & 0x3fff;
            let tot = usize::from(be16(ip, 2)?);
            (
                l3 + ihl,
                tot == frame.len() - l3,
                ihl == 20 && frag == 0,
                be16(ip, 4)?,
            )
        }
        IpVersion::V6 => {
            let ip = frame.get(l3..l3 + 40)?;
            if ip[0] >> 4 != 6 || ip[6] != PROTO_TCP {
                return None;
            }
            let plen = usize::from(be16(ip, 4)?);
            (l3 + 40, plen + 40 == frame.len() - l3, true, 0)
        }
    };
    let tcp = frame.get(l4..l4 + 20)?;
    let thl = usize::from(tcp[12] >> 4) * 4;
    let hdr_len = l4 + thl;
    if thl < 20 || hdr_len > frame.len() {
        return None;
    }
    let flags = tcp[13];
    let seg = Seg {
        l3,
        version,
        l4,
        hdr_len,
        seq: be32(tcp, 4)?,
        flags,
        ip_id,
        payload: frame.len() - hdr_len,
    };
    let eligible = ip_len_ok
        && ip_simple
        && seg.payload > 0
        && flags & tcp_flags::ACK != 0
        && flags & !(tcp_flags::ACK | tcp_flags::PSH) == 0
        && tcp_checksum_ok(frame, &seg);
    Some((seg, eligible))
}

fn tcp_checksum_ok(frame: &[u8], seg: &Seg) -> bool {
    let l4_len = (frame.len() - seg.l4) as u32;
    let mut c = match seg.version {
        IpVersion::V4 => {
            let (a, b) = frame::ipv4_addrs(frame, seg.l3);
            Checksum::pseudo_v4(a, b, PROTO_TCP, l4_len)
        }
        IpVersion::V6 => {
            let (a, b) = frame::ipv6_addrs(frame, seg.l3);
            Checksum::pseudo_v6(a, b, PROTO_TCP, l4_len)
        }
    };
    c.add_bytes(&frame[seg.l4..]);
    c.finish() == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gso::{segment, tests::tcp4_superframe, tests::tso4};

    /// Segments a super-frame with the real segmenter (checksums complete).
    fn wire_segments(payload: &[u8], mss: u16, flags: u8) -> Vec<Vec<u8>> {
        let f = tcp4_superframe(payload, 5000, flags);
        let mut out = Vec::new();
        let s = segment(&f, &tso4(mss), &[], &mut out).unwrap();
        out.chunks(s.stride).map(<[u8]>::to_vec).collect()
    }

    #[test]
    fn merges_a_segmented_superframe_back() {
        let payload: Vec<u8> = (0..10_000u32).map(|i| (i * 31) as u8).collect();
        let original = tcp4_superframe(&payload, 5000, tcp_flags::ACK | tcp_flags::PSH);
        let segs = wire_segments(&payload, 1400, tcp_flags::ACK | tcp_flags::PSH);
        assert_eq!(segs.len(), 8);
        let mut c = Coalescer::new(8);
        for (i, s) in segs.iter().enumerate() {
            c.push(7u8, i as u32, s);
        }
        c.finish();
        assert_eq!(c.items(), &[Item::Merged(0)]);
        let m = c.merged_mut(0).unwrap();
        let (f, off, n) = (m.frame, m.offload, m.segments);
        assert_eq!(n, 8);
        assert_eq!(off, tso4(1400), "same metadata a TAP would give");
        // Byte for byte the super-frame the sender's TAP handed out.
        assert_eq!(f, &original[..]);
    }

    #[test]
    fn flows_and_keys_stay_apart_and_order_is_kept() {
        let a = wire_segments(&[1; 2800], 1400, tcp_flags::ACK);
        let mut other_flow = a.clone();
        for s in &mut other_flow {
            s[35] ^= 1; // another source port: checksum breaks, so it passes through
        }
        let mut c = Coalescer::new(8);
        c.push(1u8, 0, &a[0]);
        c.push(2u8, 1, &a[1]); // other tunnel key: new group
        c.push(1u8, 2, &other_flow[0]);
        c.push(1u8, 3, &a[1]);
        c.finish();
        assert_eq!(
            c.items(),
            &[Item::Merged(0), Item::Merged(1), Item::Single(2)]
        );
        assert_eq!(c.merged_mut(0).unwrap().segments, 2);
        let m = c.merged_mut(1).unwrap();
        assert_eq!((m.segments, m.key), (1, 2));
        assert!(m.offload.data_valid);
    }

    #[test]
    fn gap_or_bad_checksum_or_fin_breaks_the_group() {
        let segs = wire_segments(&[7; 1400 * 4], 1400, tcp_flags::ACK | tcp_flags::FIN);
        let mut c = Coalescer::new(8);
        c.push((), 0, &segs[0]);
        c.push((), 1, &segs[2]); // gap: starts a new group
        c.push((), 2, &segs[3]); // FIN: not mergeable, closes group 1
        let mut bad = segs[1].clone();
        bad[70] ^= 0xff;
        c.push((), 3, &bad);
        c.finish();
        assert_eq!(
            c.items(),
            &[
                Item::Merged(0),
                Item::Merged(1),
                Item::Single(2),
                Item::Single(3)
            ]
        );
    }

    #[test]
    fn non_tcp_passes_through() {
        let mut c = Coalescer::new(8);
        c.push((), 0, &[0u8; 10]);
        c.push((), 1, &[0xffu8; 60]);
        c.push_unmergeable((), 2, &[0u8; 60]);
        c.finish();
        assert_eq!(
            c.items(),
            &[Item::Single(0), Item::Single(1), Item::Single(2)]
        );
        c.clear();
        assert!(c.items().is_empty());
    }
}
