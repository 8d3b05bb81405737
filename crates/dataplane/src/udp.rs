//! The tunnel's UDP socket with batched I/O: `recvmmsg`/`sendmmsg`, UDP GSO
//! (`UDP_SEGMENT`) on send and UDP GRO (`UDP_GRO`) on receive.
//!
//! A [`SendBatch`] is one buffer of datagrams laid back to back plus a list of
//! messages; each message is a run of equal-size datagrams (the last may be
//! shorter) to one destination, which goes to the kernel as one GSO send. If
//! the kernel lacks UDP GSO, or a GSO send fails with `EIO`/`EINVAL` (a device
//! without checksum offload), the socket falls back to one `mmsghdr` per
//! datagram, still in one `sendmmsg`.
//!
//! With UDP GRO the kernel may hand over several datagrams of one flow in one
//! buffer; [`RecvMeta::gso_size`] then says how long each is (the last may be
//! shorter). `SO_RXQ_OVFL` reports receive-queue drops.
//!
//! The socket is blocking for sends (a full send buffer pushes back on the
//! reader of the TAP rather than dropping) and receives with `MSG_DONTWAIT`.
//! The batch types hold raw pointers for the syscalls, so they are built on
//! the thread that uses them.

use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::socket::{setsockopt, sockopt};
use socket2::{Domain, Protocol, Socket, Type};

use crate::error::Error;
use crate::gso::Segmented;

/// Receive buffer size: the largest UDP payload (a GRO batch is at most this).
pub const RECV_BUF_LEN: usize = 65536;
/// Most datagrams per GSO send (the kernel's `UDP_MAX_SEGMENTS` is 64 or more).
pub const GSO_MAX_SEGMENTS: usize = 64;
/// Most UDP payload bytes per GSO send (65535 - IPv4 header - UDP header).
pub const GSO_MAX_BYTES: usize = 65535 - 20 - 8;
/// Most messages per `sendmmsg`/`recvmmsg` call (`UIO_MAXIOV`).
const MAX_MMSG: usize = 1024;

/// How to set up the tunnel socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunnelOptions {
    /// Use UDP GSO on send when the kernel has it.
    pub udp_gso: bool,
    /// Use UDP GRO on receive when the kernel has it.
    pub udp_gro: bool,
    /// Send and receive buffer size in bytes (forced past `rmem_max` when
    /// running with CAP_NET_ADMIN).
    pub socket_buffer: usize,
}

impl Default for TunnelOptions {
    fn default() -> Self {
        TunnelOptions {
            udp_gso: true,
            udp_gro: true,
            socket_buffer: 8 << 20,
        }
    }
}

/// The UDP socket VXLAN packets are sent from and received on.
#[derive(Debug)]
pub struct TunnelSocket {
    sock: Socket,
    local: SocketAddr,
    gso: AtomicBool,
    gro: bool,
}

/// What one received message holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvMeta {
    /// Bytes received.
    pub len: usize,
    /// The sender, if the kernel reported an IPv4/IPv6 address.
    pub from: Option<SocketAddr>,
    /// With UDP GRO: the length of each coalesced datagram.
    pub gso_size: Option<u16>,
    /// The message did not fit the buffer and was cut.
    pub truncated: bool,
    /// `SO_RXQ_OVFL`: datagrams the socket dropped so far, if reported.
    pub queue_drops: Option<u32>,
}

/// Outcome of one [`TunnelSocket::send`].
#[derive(Debug, Default)]
pub struct SendReport {
    /// Datagrams handed to the kernel.
    pub datagrams: u64,
    /// UDP payload bytes handed to the kernel.
    pub bytes: u64,
    /// `sendmmsg` calls made.
    pub syscalls: u64,
    /// Datagrams that failed.
    pub failed: u64,
    /// The last error seen, if any.
    pub last_error: Option<io::Error>,
}

/// A `sockaddr_storage`-sized, aligned buffer.
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct SockAddrBuf([u8; 128]);

/// A control-message buffer (room for a few cmsgs).
#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct CmsgBuf([u8; 64]);

fn encode_addr(addr: &SocketAddr, out: &mut SockAddrBuf) -> libc::socklen_t {
    out.0 = [0; 128];
    match addr {
        SocketAddr::V4(a) => {
            out.0[0..2].copy_from_slice(&(libc::AF_INET as libc::sa_family_t).to_ne_bytes());
            out.0[2..4].copy_from_slice(&a.port().to_be_bytes());
            out.0[4..8].copy_from_slice(&a.ip().octets());
            mem::size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            out.0[0..2].copy_from_slice(&(libc::AF_INET6 as libc::sa_family_t).to_ne_bytes());
            out.0[2..4].copy_from_slice(&a.port().to_be_bytes());
            out.0[4..8].copy_from_slice(&a.flowinfo().to_be_bytes());
            out.0[8..24].copy_from_slice(&a.ip().octets());
            out.0[24..28].copy_from_slice(&a.scope_id().to_ne_bytes());
            mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

fn decode_addr(b: &SockAddrBuf, len: usize) -> Option<SocketAddr> {
    let b = &b.0;
    let family = libc::sa_family_t::from_ne_bytes([b[0], b[1]]);
    let port = u16::from_be_bytes([b[2], b[3]]);
    if i32::from(family) == libc::AF_INET && len >= 8 {
        let ip = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
        Some(SocketAddr::new(IpAddr::V4(ip), port))
    } else if i32::from(family) == libc::AF_INET6 && len >= 24 {
        let mut o = [0u8; 16];
        o.copy_from_slice(&b[8..24]);
        Some(SocketAddr::new(
            IpAddr::V6(Ipv6Addr::from(o)).to_canonical(),
            port,
        ))
    } else {
        None
    }
}

impl TunnelSocket {
    /// Creates the socket in the calling thread's network namespace and binds it.
    pub fn bind(local: SocketAddr, opts: TunnelOptions) -> Result<TunnelSocket, Error> {
        let err = |op, source| Error::Socket { local, op, source };
        let sock = Socket::new(Domain::for_address(local), Type::DGRAM, Some(Protocol::UDP))
            .map_err(|e| err("socket", e))?;
        let size = opts.socket_buffer;
        if setsockopt(&sock, sockopt::RcvBufForce, &size).is_err() {
            sock.set_recv_buffer_size(size)
                .map_err(|e| err("SO_RCVBUF", e))?;
        }
        if setsockopt(&sock, sockopt::SndBufForce, &size).is_err() {
            sock.set_send_buffer_size(size)
                .map_err(|e| err("SO_SNDBUF", e))?;
        }
        // Best effort: only a diagnostic.
        let _ = setsockopt(&sock, sockopt::RxqOvfl, &1);
        sock.bind(&local.into()).map_err(|e| err("bind", e))?;
        let gro = opts.udp_gro && setsockopt(&sock, sockopt::UdpGroSegment, &true).is_ok();
        // A kernel with UDP_SEGMENT accepts it as a socket option too.
        let gso = opts.udp_gso && setsockopt(&sock, sockopt::UdpGsoSegment, &0).is_ok();
        let local = sock
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .unwrap_or(local);
        Ok(TunnelSocket {
            sock,
            local,
            gso: AtomicBool::new(gso),
            gro,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Whether sends use UDP GSO (turns false after a failed GSO send).
    pub fn gso(&self) -> bool {
        self.gso.load(Ordering::Relaxed)
    }

    /// Whether the kernel coalesces received datagrams (UDP GRO).
    pub fn gro(&self) -> bool {
        self.gro
    }

    /// Receives up to `batch.capacity()` messages without blocking. Returns
    /// how many arrived (0 when none was queued).
    pub fn recv(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        let n = batch.bufs.len();
        batch.meta.clear();
        for i in 0..n {
            batch.iovs[i] = libc::iovec {
                iov_base: batch.bufs[i].as_mut_ptr().cast(),
                iov_len: batch.bufs[i].len(),
            };
            let h = &mut batch.hdrs[i];
            h.msg_len = 0;
            h.msg_hdr.msg_name = (&raw mut batch.names[i]).cast();
            h.msg_hdr.msg_namelen = mem::size_of::<SockAddrBuf>() as libc::socklen_t;
            h.msg_hdr.msg_iov = &raw mut batch.iovs[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = (&raw mut batch.cmsgs[i]).cast();
            h.msg_hdr.msg_controllen = mem::size_of::<CmsgBuf>() as _;
            h.msg_hdr.msg_flags = 0;
        }
        let r = loop {
            // SAFETY: every header points at buffers owned by `batch` that outlive
            // the call, with lengths matching their allocations.
            let r = unsafe {
                libc::recvmmsg(
                    self.sock.as_raw_fd(),
                    batch.hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    ptr::null_mut(),
                )
            };
            if r >= 0 {
                break r as usize;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(0),
                _ => return Err(e),
            }
        };
        for i in 0..r {
            let h = &batch.hdrs[i];
            let mut meta = RecvMeta {
                len: h.msg_len as usize,
                from: decode_addr(&batch.names[i], h.msg_hdr.msg_namelen as usize),
                gso_size: None,
                truncated: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
                queue_drops: None,
            };
            // SAFETY: the kernel filled msg_control/msg_controllen of this header;
            // the CMSG_* macros stay within msg_controllen and data is read unaligned.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&h.msg_hdr);
                while !c.is_null() {
                    let (level, ty) = ((*c).cmsg_level, (*c).cmsg_type);
                    let data = libc::CMSG_DATA(c);
                    if level == libc::SOL_UDP && ty == libc::UDP_GRO {
                        let v = ptr::read_unaligned(data.cast::<libc::c_int>());
                        meta.gso_size = u16::try_from(v).ok().filter(|&s| s > 0);
                    } else if level == libc::SOL_SOCKET && ty == libc::SO_RXQ_OVFL {
                        meta.queue_drops = Some(ptr::read_unaligned(data.cast::<u32>()));
                    }
                    c = libc::CMSG_NXTHDR(&h.msg_hdr, c);
                }
            }
            batch.meta.push(meta);
        }
        Ok(r)
    }

    /// Sends everything in `batch` (blocking while the send buffer is full) and
    /// empties it. Failed datagrams are counted and dropped.
    pub fn send(&self, batch: &mut SendBatch) -> SendReport {
        let mut rep = SendReport::default();
        let mut first_msg = 0;
        'build: while first_msg < batch.msgs.len() {
            let gso = self.gso();
            batch.build(first_msg, gso);
            let n = batch.hdrs.len();
            let mut i = 0;
            while i < n {
                let chunk = (n - i).min(MAX_MMSG);
                // SAFETY: headers i..i+chunk were built by `build` and point at
                // buffers in `batch` that are not touched until the call returns.
                let r = unsafe {
                    libc::sendmmsg(
                        self.sock.as_raw_fd(),
                        batch.hdrs.as_mut_ptr().add(i),
                        chunk as libc::c_uint,
                        0,
                    )
                };
                rep.syscalls += 1;
                if r > 0 {
                    for k in i..i + r as usize {
                        rep.datagrams += batch.hdr_info[k].datagrams as u64;
                        rep.bytes += batch.iovs[k].iov_len as u64;
                    }
                    i += r as usize;
                    continue;
                }
                let e = io::Error::last_os_error();
                let info = batch.hdr_info[i];
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EIO | libc::EOPNOTSUPP) if info.gso => {
                        // The route's device cannot do UDP GSO (no checksum offload):
                        // resend from this message, and from now on, without it.
                        tracing::warn!(error = %e, "UDP GSO send failed; falling back to one datagram per mmsghdr");
                        self.gso.store(false, Ordering::Relaxed);
                        first_msg = info.msg;
                        continue 'build;
                    }
                    Some(libc::EINVAL | libc::EMSGSIZE) if info.gso => {
                        // This message only (e.g. segments above the path MTU): send its
                        // datagrams one by one and let the kernel fragment them.
                        batch.msgs[info.msg].no_gso = true;
                        first_msg = info.msg;
                        continue 'build;
                    }
                    _ => {
                        rep.failed += info.datagrams as u64;
                        rep.last_error = Some(e);
                        i += 1;
                    }
                }
            }
            break;
        }
        batch.clear();
        rep
    }
}

impl AsFd for TunnelSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// Buffers for one `recvmmsg`.
pub struct RecvBatch {
    bufs: Vec<Box<[u8]>>,
    meta: Vec<RecvMeta>,
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    names: Vec<SockAddrBuf>,
    cmsgs: Vec<CmsgBuf>,
}

impl RecvBatch {
    /// Room for `n` messages of [`RECV_BUF_LEN`] bytes each.
    pub fn new(n: usize) -> RecvBatch {
        let n = n.clamp(1, MAX_MMSG);
        RecvBatch {
            bufs: (0..n)
                .map(|_| vec![0u8; RECV_BUF_LEN].into_boxed_slice())
                .collect(),
            meta: Vec::with_capacity(n),
            // SAFETY: mmsghdr and iovec are plain C structs for which all-zero
            // (null pointers, zero lengths) is a valid value.
            hdrs: (0..n)
                .map(|_| unsafe { mem::zeroed::<libc::mmsghdr>() })
                .collect(),
            // SAFETY: as above.
            iovs: (0..n)
                .map(|_| unsafe { mem::zeroed::<libc::iovec>() })
                .collect(),
            names: vec![SockAddrBuf([0; 128]); n],
            cmsgs: vec![CmsgBuf([0; 64]); n],
        }
    }

    /// Messages the batch can hold.
    pub fn capacity(&self) -> usize {
        self.bufs.len()
    }

    /// Messages received by the last [`TunnelSocket::recv`].
    pub fn len(&self) -> usize {
        self.meta.len()
    }

    /// Whether the last receive got nothing.
    pub fn is_empty(&self) -> bool {
        self.meta.is_empty()
    }

    /// Metadata of message `i`.
    pub fn meta(&self, i: usize) -> RecvMeta {
        self.meta[i]
    }

    /// The received bytes of message `i`.
    pub fn data_mut(&mut self, i: usize) -> &mut [u8] {
        let len = self.meta[i].len.min(self.bufs[i].len());
        &mut self.bufs[i][..len]
    }

    /// The received bytes of message `i`.
    pub fn data(&self, i: usize) -> &[u8] {
        let len = self.meta[i].len.min(self.bufs[i].len());
        &self.bufs[i][..len]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct OutMsg {
    dst: SocketAddr,
    off: usize,
    len: usize,
    seg: usize,
    nsegs: usize,
    /// The last datagram is shorter than `seg`: nothing more may join.
    closed: bool,
    /// The kernel refused this message as one GSO send: send it datagram by datagram.
    no_gso: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct HdrInfo {
    msg: usize,
    datagrams: usize,
    gso: bool,
}

/// Datagrams waiting to be sent, laid back to back in one buffer.
pub struct SendBatch {
    buf: Vec<u8>,
    msgs: Vec<OutMsg>,
    datagrams: usize,
    hdrs: Vec<libc::mmsghdr>,
    hdr_info: Vec<HdrInfo>,
    iovs: Vec<libc::iovec>,
    names: Vec<SockAddrBuf>,
    cmsgs: Vec<CmsgBuf>,
}

impl Default for SendBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl SendBatch {
    /// An empty batch.
    pub fn new() -> SendBatch {
        SendBatch {
            buf: Vec::with_capacity(1 << 20),
            msgs: Vec::new(),
            datagrams: 0,
            hdrs: Vec::new(),
            hdr_info: Vec::new(),
            iovs: Vec::new(),
            names: Vec::new(),
            cmsgs: Vec::new(),
        }
    }

    /// The datagram buffer, to append to; follow with [`SendBatch::commit`].
    pub fn buffer_mut(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// Bytes queued.
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// Datagrams queued.
    pub fn datagrams(&self) -> usize {
        self.datagrams
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// Drops everything queued.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.msgs.clear();
        self.datagrams = 0;
    }

    /// Registers datagrams appended to the buffer from offset `start`, laid out
    /// as `seg` says, for `dst`. Runs of equal-size datagrams to the same
    /// destination are joined into one GSO message.
    pub fn commit(&mut self, dst: SocketAddr, start: usize, seg: Segmented) {
        debug_assert_eq!(start + seg.len, self.buf.len());
        self.datagrams += seg.count;
        if seg.count == 1 {
            let len = seg.len;
            if let Some(m) = self.msgs.last_mut()
                && m.dst == dst
                && !m.closed
                && len <= m.seg
                && m.nsegs < GSO_MAX_SEGMENTS
                && m.len + len <= GSO_MAX_BYTES
                && m.off + m.len == start
            {
                m.nsegs += 1;
                m.len += len;
                m.closed = len < m.seg;
                return;
            }
            self.msgs.push(OutMsg {
                dst,
                off: start,
                len,
                seg: len,
                nsegs: 1,
                closed: false,
                no_gso: false,
            });
            return;
        }
        let per_msg = (GSO_MAX_BYTES / seg.stride.max(1)).clamp(1, GSO_MAX_SEGMENTS);
        let mut off = start;
        let end = start + seg.len;
        let mut left = seg.count;
        while left > 0 {
            let n = left.min(per_msg);
            let len = (n * seg.stride).min(end - off);
            self.msgs.push(OutMsg {
                dst,
                off,
                len,
                seg: seg.stride,
                nsegs: n,
                closed: len < n * seg.stride,
                no_gso: false,
            });
            off += len;
            left -= n;
        }
    }

    /// Fills the syscall headers for messages `from..`.
    fn build(&mut self, from: usize, gso: bool) {
        let mut count = 0;
        for m in &self.msgs[from..] {
            count += if (gso && !m.no_gso) || m.nsegs == 1 {
                1
            } else {
                m.nsegs
            };
        }
        // SAFETY: all-zero is a valid mmsghdr/iovec (null pointers, zero lengths).
        self.hdrs.resize_with(count, || unsafe { mem::zeroed() });
        // SAFETY: as above.
        self.iovs.resize_with(count, || unsafe { mem::zeroed() });
        self.hdr_info.resize(count, HdrInfo::default());
        self.names.resize(count, SockAddrBuf([0; 128]));
        self.cmsgs.resize(count, CmsgBuf([0; 64]));
        let mut h = 0;
        for (mi, m) in self.msgs.iter().enumerate().skip(from) {
            let use_gso = gso && !m.no_gso && m.nsegs > 1;
            let pieces = if use_gso { 1 } else { m.nsegs };
            for p in 0..pieces {
                let (off, len) = if use_gso {
                    (m.off, m.len)
                } else {
                    let o = m.off + p * m.seg;
                    (o, m.seg.min(m.off + m.len - o))
                };
                let namelen = encode_addr(&m.dst, &mut self.names[h]);
                self.iovs[h] = libc::iovec {
                    iov_base: self.buf[off..].as_mut_ptr().cast(),
                    iov_len: len,
                };
                let hdr = &mut self.hdrs[h];
                hdr.msg_len = 0;
                hdr.msg_hdr.msg_name = (&raw mut self.names[h]).cast();
                hdr.msg_hdr.msg_namelen = namelen;
                hdr.msg_hdr.msg_iov = &raw mut self.iovs[h];
                hdr.msg_hdr.msg_iovlen = 1;
                hdr.msg_hdr.msg_flags = 0;
                if use_gso {
                    hdr.msg_hdr.msg_control = (&raw mut self.cmsgs[h]).cast();
                    // SAFETY: CMSG_SPACE is a pure size computation.
                    hdr.msg_hdr.msg_controllen =
                        unsafe { libc::CMSG_SPACE(mem::size_of::<u16>() as u32) } as _;
                    // SAFETY: msg_control points at a 64-byte aligned buffer, larger
                    // than CMSG_SPACE(2); the header and data writes stay inside it.
                    unsafe {
                        let c = libc::CMSG_FIRSTHDR(&hdr.msg_hdr);
                        (*c).cmsg_level = libc::SOL_UDP;
                        (*c).cmsg_type = libc::UDP_SEGMENT;
                        (*c).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as _;
                        ptr::write_unaligned(libc::CMSG_DATA(c).cast::<u16>(), m.seg as u16);
                    }
                } else {
                    hdr.msg_hdr.msg_control = ptr::null_mut();
                    hdr.msg_hdr.msg_controllen = 0;
                }
                self.hdr_info[h] = HdrInfo {
                    msg: mi,
                    datagrams: if use_gso { m.nsegs } else { 1 },
                    gso: use_gso,
                };
                h += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(count: usize, stride: usize, len: usize) -> Segmented {
        Segmented { count, stride, len }
    }

    fn push(b: &mut SendBatch, dst: SocketAddr, s: Segmented) {
        let start = b.buf.len();
        b.buf.resize(start + s.len, 0xab);
        b.commit(dst, start, s);
    }

    #[test]
    fn equal_datagrams_join_and_short_ones_close() {
        let a: SocketAddr = "192.0.2.2:4789".parse().unwrap();
        let c: SocketAddr = "192.0.2.3:4789".parse().unwrap();
        let mut b = SendBatch::new();
        push(&mut b, a, seg(1, 100, 100));
        push(&mut b, a, seg(1, 100, 100));
        push(&mut b, a, seg(1, 60, 60)); // shorter: joins and closes
        push(&mut b, a, seg(1, 60, 60)); // new message
        push(&mut b, c, seg(1, 60, 60)); // other destination
        push(&mut b, c, seg(1, 80, 80)); // longer: new message
        let shape: Vec<_> = b
            .msgs
            .iter()
            .map(|m| (m.dst, m.nsegs, m.len, m.seg))
            .collect();
        assert_eq!(
            shape,
            [
                (a, 3, 260, 100),
                (a, 1, 60, 60),
                (c, 1, 60, 60),
                (c, 1, 80, 80)
            ]
        );
        assert_eq!(b.datagrams(), 6);
        b.build(0, true);
        assert_eq!(b.hdrs.len(), 4);
        b.build(0, false);
        assert_eq!(b.hdrs.len(), 6);
        assert_eq!(b.iovs[2].iov_len, 60);
    }

    #[test]
    fn superframes_split_at_the_gso_limits() {
        let a: SocketAddr = "[2001:db8::2]:4789".parse().unwrap();
        let mut b = SendBatch::new();
        // 47 segments of 1472 bytes (last 1000): at most 44 fit one GSO send.
        push(&mut b, a, seg(47, 1472, 46 * 1472 + 1000));
        let shape: Vec<_> = b.msgs.iter().map(|m| (m.nsegs, m.len, m.closed)).collect();
        assert_eq!(shape, [(44, 44 * 1472, false), (3, 2 * 1472 + 1000, true)]);
        // Small ones stop at 64 per send.
        let mut b = SendBatch::new();
        for _ in 0..70 {
            push(&mut b, a, seg(1, 114, 114));
        }
        assert_eq!(b.msgs.iter().map(|m| m.nsegs).collect::<Vec<_>>(), [64, 6]);
    }

    #[test]
    fn addresses_round_trip() {
        for s in ["192.0.2.1:4789", "[2001:db8::1]:4789"] {
            let a: SocketAddr = s.parse().unwrap();
            let mut buf = SockAddrBuf([0; 128]);
            let len = encode_addr(&a, &mut buf);
            assert_eq!(decode_addr(&buf, len as usize), Some(a));
        }
        assert_eq!(decode_addr(&SockAddrBuf([0; 128]), 128), None);
    }
}
