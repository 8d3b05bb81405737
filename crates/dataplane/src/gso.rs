//! Software segmentation and checksum completion for frames that a TAP hands
//! out with offloads pending (TSO/USO super-frames, `CHECKSUM_PARTIAL`).
//!
//! [`segment`] turns one frame plus its [`Offload`] into wire-ready frames,
//! each preceded by a caller-given prefix (the VXLAN header), appended back
//! to back to one buffer. Every segment but the last has the same length, so
//! the buffer can go to the kernel as one UDP GSO send (`UDP_SEGMENT` equal
//! to [`Segmented::stride`]).
//!
//! Per segment it rewrites what Linux's `tcp_gso_segment`/`__udp_gso_segment`
//! rewrite: IPv4 total length, identification (+1 per segment) and header
//! checksum, IPv6 payload length, TCP sequence number, FIN/PSH only on the
//! last segment, CWR only on the first, UDP length, and a full L4 checksum.

use crate::csum::Checksum;
use crate::error::{OffloadError, WireError};
use crate::frame::{self, IpVersion, PROTO_TCP, PROTO_UDP, be16, be32, put16, put32, tcp_flags};
use crate::vnet::{CsumOffload, GsoKind, Offload};

/// The most segments one super-frame may produce; bounds the work a
/// misbehaving guest can cause with a tiny `gso_size`.
pub const MAX_SEGMENTS: usize = 2048;

/// Where [`segment`] put its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segmented {
    /// Number of segments (datagrams) appended.
    pub count: usize,
    /// Length of each segment but the last, prefix included.
    pub stride: usize,
    /// Total bytes appended.
    pub len: usize,
}

/// Header layout of a frame that is to be segmented.
#[derive(Debug, Clone, Copy)]
struct Layout {
    l3: usize,
    version: IpVersion,
    l4: usize,
    /// End of the transport header: where the payload starts.
    hdr_len: usize,
    tcp: bool,
}

/// Appends `frame` to `out` as wire-ready segments, each preceded by `prefix`.
///
/// A frame without GSO yields one segment (its checksum completed if the
/// offload asks for it). On error nothing is appended.
pub fn segment(
    frame: &[u8],
    offload: &Offload,
    prefix: &[u8],
    out: &mut Vec<u8>,
) -> Result<Segmented, OffloadError> {
    segment_within(frame, offload, prefix, usize::MAX, out)
}

/// Like [`segment`], but TCP segments are made small enough that no segment
/// frame exceeds `max_frame` bytes (prefix excluded), even if the guest's MSS
/// is larger: the forwarder passes the underlay MTU minus the encapsulation
/// overhead, so a guest whose MTU is too large for the tunnel still gets
/// unfragmented segments. UDP segment sizes are the guest's datagram
/// boundaries and are never changed.
pub fn segment_within(
    frame: &[u8],
    offload: &Offload,
    prefix: &[u8],
    max_frame: usize,
    out: &mut Vec<u8>,
) -> Result<Segmented, OffloadError> {
    let start = out.len();
    let result = match offload.gso {
        None if frame.len() > max_frame => match oversized_tcp(frame, offload) {
            // A full-size guest segment that does not fit the tunnel: split it too.
            Some((as_gso, kind)) => {
                segment_gso(frame, &as_gso, kind, usize::MAX, max_frame, prefix, out)
            }
            // Anything else is left to IP fragmentation on the underlay.
            None => single(frame, offload, prefix, out, start),
        },
        None => single(frame, offload, prefix, out, start),
        Some(g) => segment_gso(
            frame,
            offload,
            g.kind,
            usize::from(g.size),
            max_frame,
            prefix,
            out,
        ),
    };
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn single(
    frame: &[u8],
    offload: &Offload,
    prefix: &[u8],
    out: &mut Vec<u8>,
    start: usize,
) -> Result<Segmented, OffloadError> {
    out.extend_from_slice(prefix);
    out.extend_from_slice(frame);
    if let Some(c) = offload.csum {
        finish_checksum(&mut out[start + prefix.len()..], c)?;
    }
    Ok(Segmented {
        count: 1,
        stride: prefix.len() + frame.len(),
        len: prefix.len() + frame.len(),
    })
}

/// If `frame` is a plain (non-fragment) TCP segment, the GSO kind to split it with.
fn oversized_tcp(frame: &[u8], offload: &Offload) -> Option<(Offload, GsoKind)> {
    let (l3, version) = frame::l3(frame).ok()??;
    let kind = match version {
        IpVersion::V4 => {
            let ip = frame.get(l3..l3 + 20)?;
            // Fragments cannot be resegmented.
            (ip[9] == PROTO_TCP && be16(ip, 6)? & 0x3fff == 0).then_some(GsoKind::Tcp4)?
        }
        IpVersion::V6 => (*frame.get(l3 + 6)? == PROTO_TCP).then_some(GsoKind::Tcp6)?,
    };
    let mut o = *offload;
    o.gso = Some(crate::vnet::Gso {
        kind,
        size: u16::MAX,
        hdr_len: 0,
        ecn: false,
    });
    layout(frame, &o, kind).ok()?;
    Some((o, kind))
}

/// Completes a partial checksum in place: the field at `start + offset` holds the
/// pseudo-header sum, and the sum of everything from `start` is stored there.
pub fn finish_checksum(frame: &mut [u8], c: CsumOffload) -> Result<(), OffloadError> {
    let start = usize::from(c.start);
    let field = start + usize::from(c.offset);
    if field + 2 > frame.len() {
        return Err(OffloadError::ChecksumOutOfRange {
            start,
            offset: usize::from(c.offset),
            len: frame.len(),
        });
    }
    let mut sum = Checksum::new();
    sum.add_bytes(&frame[start..]);
    // As Linux's skb_checksum_help: a computed 0 is sent as 0xffff, which
    // matters for UDP where 0 means "no checksum".
    let v = match sum.finish() {
        0 => 0xffff,
        v => v,
    };
    put16(frame, field, v);
    Ok(())
}

fn layout(frame: &[u8], offload: &Offload, kind: GsoKind) -> Result<Layout, OffloadError> {
    let truncated = |what, need| {
        OffloadError::Wire(WireError::Truncated {
            what,
            need,
            got: frame.len(),
        })
    };
    let Some((l3, version)) = frame::l3(frame)? else {
        return Err(OffloadError::GsoMismatch {
            gso: kind,
            found: "not an IP frame",
        });
    };
    let tcp = match (kind, version) {
        (GsoKind::Tcp4, IpVersion::V4) | (GsoKind::Tcp6, IpVersion::V6) => true,
        (GsoKind::UdpL4, _) => false,
        (GsoKind::Tcp4, IpVersion::V6) => {
            return Err(OffloadError::GsoMismatch {
                gso: kind,
                found: "an IPv6 frame",
            });
        }
        (GsoKind::Tcp6, IpVersion::V4) => {
            return Err(OffloadError::GsoMismatch {
                gso: kind,
                found: "an IPv4 frame",
            });
        }
    };
    let want_proto = if tcp { PROTO_TCP } else { PROTO_UDP };
    let l4 = match version {
        IpVersion::V4 => {
            if frame.len() < l3 + 20 {
                return Err(truncated("IPv4 header", l3 + 20));
            }
            let ihl = usize::from(frame[l3] & 0x0f) * 4;
            if frame[l3] >> 4 != 4 || ihl < 20 {
                return Err(OffloadError::GsoMismatch {
                    gso: kind,
                    found: "a bad IPv4 version/IHL",
                });
            }
            if frame[l3 + 9] != want_proto {
                return Err(OffloadError::GsoMismatch {
                    gso: kind,
                    found: "another IPv4 protocol",
                });
            }
            l3 + ihl
        }
        IpVersion::V6 => {
            if frame.len() < l3 + 40 {
                return Err(truncated("IPv6 header", l3 + 40));
            }
            match offload.csum {
                // With extension headers only csum_start says where L4 is.
                Some(c) if usize::from(c.start) != l3 + 40 => usize::from(c.start),
                _ => {
                    if frame[l3 + 6] != want_proto {
                        return Err(OffloadError::GsoMismatch {
                            gso: kind,
                            found: "another IPv6 next header",
                        });
                    }
                    l3 + 40
                }
            }
        }
    };
    let ip_end = l3 + if version == IpVersion::V4 { 20 } else { 40 };
    if l4 < ip_end {
        return Err(OffloadError::BadL4Offset { l4, ip_end });
    }
    let hdr_len = if tcp {
        let doff = frame
            .get(l4 + 12)
            .ok_or_else(|| truncated("TCP header", l4 + 20))?;
        let thl = usize::from(doff >> 4) * 4;
        if thl < 20 {
            return Err(OffloadError::GsoMismatch {
                gso: kind,
                found: "a TCP data offset below 5",
            });
        }
        l4 + thl
    } else {
        l4 + 8
    };
    if frame.len() < hdr_len {
        return Err(truncated(
            if tcp { "TCP header" } else { "UDP header" },
            hdr_len,
        ));
    }
    Ok(Layout {
        l3,
        version,
        l4,
        hdr_len,
        tcp,
    })
}

fn segment_gso(
    frame: &[u8],
    offload: &Offload,
    kind: GsoKind,
    mss: usize,
    max_frame: usize,
    prefix: &[u8],
    out: &mut Vec<u8>,
) -> Result<Segmented, OffloadError> {
    let lay = layout(frame, offload, kind)?;
    if mss == 0 {
        return Err(OffloadError::ZeroSegmentSize);
    }
    let mss = if lay.tcp && max_frame > lay.hdr_len {
        mss.min(max_frame - lay.hdr_len)
    } else {
        mss
    };
    let payload = &frame[lay.hdr_len..];
    let count = payload.len().div_ceil(mss).max(1);
    if count > MAX_SEGMENTS {
        return Err(OffloadError::TooManySegments {
            count,
            max: MAX_SEGMENTS,
        });
    }
    let full = if count == 1 { payload.len() } else { mss };
    let stride = prefix.len() + lay.hdr_len + full;
    out.reserve(count * (prefix.len() + lay.hdr_len) + payload.len());

    let (seq0, ip_id0) = (
        if lay.tcp {
            be32(frame, lay.l4 + 4).unwrap_or(0)
        } else {
            0
        },
        if lay.version == IpVersion::V4 {
            be16(frame, lay.l3 + 4).unwrap_or(0)
        } else {
            0
        },
    );
    let start = out.len();
    for (i, chunk) in payload
        .chunks(mss)
        .chain(payload.is_empty().then_some(&[][..]))
        .enumerate()
    {
        let seg_start = out.len() + prefix.len();
        out.extend_from_slice(prefix);
        out.extend_from_slice(&frame[..lay.hdr_len]);
        out.extend_from_slice(chunk);
        let seg = &mut out[seg_start..];
        let last = i + 1 == count;
        fix_segment(seg, &lay, i, last, seq0, ip_id0, mss);
    }
    Ok(Segmented {
        count,
        stride,
        len: out.len() - start,
    })
}

/// Rewrites the headers of segment `i` (already holding copied headers + its payload).
fn fix_segment(
    seg: &mut [u8],
    lay: &Layout,
    i: usize,
    last: bool,
    seq0: u32,
    ip_id0: u16,
    mss: usize,
) {
    let l4_len = seg.len() - lay.l4;
    let mut sum = match lay.version {
        IpVersion::V4 => {
            let ihl = lay.l4 - lay.l3;
            put16(seg, lay.l3 + 2, (seg.len() - lay.l3) as u16);
            put16(seg, lay.l3 + 4, ip_id0.wrapping_add(i as u16));
            put16(seg, lay.l3 + 10, 0);
            let c = crate::csum::checksum(&seg[lay.l3..lay.l3 + ihl]);
            put16(seg, lay.l3 + 10, c);
            let (s, d) = frame::ipv4_addrs(seg, lay.l3);
            Checksum::pseudo_v4(
                s,
                d,
                if lay.tcp { PROTO_TCP } else { PROTO_UDP },
                l4_len as u32,
            )
        }
        IpVersion::V6 => {
            put16(seg, lay.l3 + 4, (seg.len() - lay.l3 - 40) as u16);
            let (s, d) = frame::ipv6_addrs(seg, lay.l3);
            Checksum::pseudo_v6(
                s,
                d,
                if lay.tcp { PROTO_TCP } else { PROTO_UDP },
                l4_len as u32,
            )
        }
    };
    let csum_field = if lay.tcp {
        put32(seg, lay.l4 + 4, seq0.wrapping_add((i * mss) as u32));
        let mut flags = seg[lay.l4 + 13];
        if !last {
            flags &= !(tcp_flags::FIN | tcp_flags::PSH);
        }
        if i > 0 {
            flags &= !tcp_flags::CWR;
        }
        seg[lay.l4 + 13] = flags;
        lay.l4 + 16
    } else {
        put16(seg, lay.l4 + 4, l4_len as u16);
        lay.l4 + 6
    };
    put16(seg, csum_field, 0);
    sum.add_bytes(&seg[lay.l4..]);
    let v = match sum.finish() {
        0 if !lay.tcp => 0xffff,
        v => v,
    };
    put16(seg, csum_field, v);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::vnet::Gso;

    /// Builds an Ethernet + IPv4 + TCP frame (timestamps option) carrying `payload`,
    /// with the TCP checksum left as the pseudo-header sum (what a TAP hands out).
    pub(crate) fn tcp4_superframe(payload: &[u8], seq: u32, flags: u8) -> Vec<u8> {
        let mut f = vec![
            0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00, // Ethernet
            0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, // IPv4
            0x9c, 0x40, 0x14, 0x51, 0, 0, 0, 0, 0, 0, 0, 7, 0x80, 0, 0x01, 0xf5, 0, 0, 0,
            0, // TCP
            1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, // NOP NOP TS
        ];
        f.extend_from_slice(payload);
        let len = f.len();
        put16(&mut f, 16, (len - 14) as u16);
        let ip_csum = crate::csum::checksum(&f[14..34]);
        put16(&mut f, 24, ip_csum);
        put32(&mut f, 38, seq);
        f[47] = flags;
        let pseudo = Checksum::pseudo_v4([10, 0, 0, 1], [10, 0, 0, 2], 6, (len - 34) as u32);
        put16(&mut f, 50, pseudo.fold());
        f
    }

    pub(crate) fn tso4(mss: u16) -> Offload {
        Offload {
            csum: Some(CsumOffload {
                start: 34,
                offset: 16,
            }),
            gso: Some(Gso {
                kind: GsoKind::Tcp4,
                size: mss,
                hdr_len: 66,
                ecn: false,
            }),
            data_valid: false,
        }
    }

    fn tcp_ok(seg: &[u8]) -> bool {
        let (s, d) = frame::ipv4_addrs(seg, 14);
        let mut c = Checksum::pseudo_v4(s, d, 6, (seg.len() - 34) as u32);
        c.add_bytes(&seg[34..]);
        c.finish() == 0 && crate::csum::checksum(&seg[14..34]) == 0
    }

    #[test]
    fn tso4_splits_into_mss_segments() {
        let payload: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let f = tcp4_superframe(
            &payload,
            1000,
            tcp_flags::ACK | tcp_flags::PSH | tcp_flags::FIN,
        );
        let mut out = Vec::new();
        let s = segment(&f, &tso4(1400), &[0xee; 8], &mut out).unwrap();
        assert_eq!(s.count, 3);
        assert_eq!(s.stride, 8 + 66 + 1400);
        assert_eq!(s.len, out.len());
        assert_eq!(out.len(), 3 * (8 + 66) + 3000);
        let segs: Vec<&[u8]> = out.chunks(s.stride).collect();
        let mut joined = Vec::new();
        for (i, seg) in segs.iter().enumerate() {
            assert_eq!(&seg[..8], &[0xee; 8]);
            let seg = &seg[8..];
            assert!(tcp_ok(seg), "segment {i} checksums");
            assert_eq!(be16(seg, 16).unwrap() as usize, seg.len() - 14);
            assert_eq!(be16(seg, 18).unwrap(), 0x1234 + i as u16);
            assert_eq!(be32(seg, 38).unwrap(), 1000 + 1400 * i as u32);
            let want = if i == 2 {
                tcp_flags::ACK | tcp_flags::PSH | tcp_flags::FIN
            } else {
                tcp_flags::ACK
            };
            assert_eq!(seg[47], want);
            joined.extend_from_slice(&seg[66..]);
        }
        assert_eq!(joined, payload);
    }

    #[test]
    fn tcp_segments_are_clamped_to_the_tunnel_mtu() {
        let payload = vec![3u8; 4000];
        let f = tcp4_superframe(&payload, 1, tcp_flags::ACK);
        let mut out = Vec::new();
        // Guest MSS 1448 (MTU 1500) but only 1464-byte frames fit a 1500-byte underlay.
        let s = segment_within(&f, &tso4(1448), &[], 1464, &mut out).unwrap();
        assert_eq!((s.count, s.stride), (3, 1464));
        let mut joined = Vec::new();
        for seg in out.chunks(s.stride) {
            assert!(seg.len() <= 1464 && tcp_ok(seg));
            joined.extend_from_slice(&seg[66..]);
        }
        assert_eq!(joined, payload);
        // A plain full-size segment of that guest is split as well.
        let one = tcp4_superframe(&[4u8; 1448], 9, tcp_flags::ACK | tcp_flags::PSH);
        let plain = Offload {
            gso: None,
            ..tso4(0)
        };
        out.clear();
        let s = segment_within(&one, &plain, &[], 1464, &mut out).unwrap();
        assert_eq!((s.count, s.len), (2, 2 * 66 + 1448));
        let segs: Vec<&[u8]> = out.chunks(s.stride).collect();
        assert!(segs.iter().all(|g| tcp_ok(g)));
        assert_eq!(be32(segs[1], 38), Some(9 + 1398));
        assert_eq!(
            (segs[0][47], segs[1][47]),
            (tcp_flags::ACK, tcp_flags::ACK | tcp_flags::PSH)
        );
    }

    #[test]
    fn csum_only_frame_is_completed() {
        let f = tcp4_superframe(b"hello", 1, tcp_flags::ACK);
        let off = Offload {
            gso: None,
            ..tso4(0)
        };
        let mut out = Vec::new();
        let s = segment(&f, &off, &[], &mut out).unwrap();
        assert_eq!((s.count, s.len), (1, f.len()));
        assert!(tcp_ok(&out));
        // Without offload the bytes pass through unchanged.
        out.clear();
        segment(&f, &Offload::NONE, &[1, 2], &mut out).unwrap();
        assert_eq!(&out[2..], &f[..]);
    }

    #[test]
    fn errors_leave_output_untouched() {
        let f = tcp4_superframe(&[0; 100], 1, tcp_flags::ACK);
        let mut out = vec![9];
        let mut off = tso4(0);
        assert_eq!(
            segment(&f, &off, &[], &mut out),
            Err(OffloadError::ZeroSegmentSize)
        );
        off.gso.as_mut().unwrap().kind = GsoKind::Tcp6;
        assert!(matches!(
            segment(&f, &off, &[], &mut out),
            Err(OffloadError::GsoMismatch { .. })
        ));
        let off = tso4(1);
        assert!(segment(&f[..40], &off, &[], &mut out).is_err());
        assert_eq!(out, [9]);
        let big = tcp4_superframe(&[0; 4000], 1, tcp_flags::ACK);
        assert_eq!(
            segment(&big, &off, &[], &mut out),
            Err(OffloadError::TooManySegments {
                count: 4000,
                max: MAX_SEGMENTS
            })
        );
    }
}
