//! TAP devices: the guest end of a port.
//!
//! A [`Tap`] is `/dev/net/tun` opened as `IFF_TAP | IFF_NO_PI`, by default
//! with `IFF_VNET_HDR` and offloads enabled (`TUNSETOFFLOAD`: checksum,
//! TSO4/6 with ECN, and USO when the kernel has it), so the guest hands over
//! 64 KiB TCP super-frames with partial checksums and accepts them back. Every
//! frame read or written is then preceded by a 10-byte little-endian
//! virtio-net header (see [`crate::vnet`]).
//!
//! The interface is created in the network namespace of the calling thread.
//! Its kernel side may afterwards be moved to another namespace (the guest's)
//! and renamed; the file descriptor stays valid and keeps working.
//!
//! The descriptor is non-blocking: [`Tap::read`] returns `WouldBlock` when the
//! queue is empty, for use with epoll. Only the ioctls need `unsafe`.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use crate::error::Error;
use crate::vnet;

/// Largest frame a TAP with offloads may hand out, plus its virtio-net header:
/// a 64 KiB IP packet behind an Ethernet header with two VLAN tags.
pub const MAX_FRAME: usize = vnet::HEADER_LEN + 18 + 65535 + 256;

/// Offloads the guest may leave to us (`TUNSETOFFLOAD` flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TapOffloads {
    /// Partial checksums (`TUN_F_CSUM`); required by all the others.
    pub csum: bool,
    /// TCP over IPv4 segmentation (`TUN_F_TSO4`).
    pub tso4: bool,
    /// TCP over IPv6 segmentation (`TUN_F_TSO6`).
    pub tso6: bool,
    /// TSO with ECN bits (`TUN_F_TSO_ECN`).
    pub tso_ecn: bool,
    /// UDP segmentation, IPv4 and IPv6 (`TUN_F_USO4 | TUN_F_USO6`, Linux ≥ 6.2);
    /// dropped silently if the kernel refuses it.
    pub uso: bool,
}

impl TapOffloads {
    /// Everything this crate can segment.
    pub const ALL: TapOffloads = TapOffloads {
        csum: true,
        tso4: true,
        tso6: true,
        tso_ecn: true,
        uso: true,
    };
    /// No offloads: the guest computes checksums and segments itself.
    pub const NONE: TapOffloads = TapOffloads {
        csum: false,
        tso4: false,
        tso6: false,
        tso_ecn: false,
        uso: false,
    };

    fn bits(&self) -> libc::c_uint {
        if !self.csum {
            return 0;
        }
        let mut b = libc::TUN_F_CSUM;
        if self.tso4 {
            b |= libc::TUN_F_TSO4;
        }
        if self.tso6 {
            b |= libc::TUN_F_TSO6;
        }
        if self.tso_ecn && (self.tso4 || self.tso6) {
            b |= libc::TUN_F_TSO_ECN;
        }
        if self.uso {
            b |= libc::TUN_F_USO4 | libc::TUN_F_USO6;
        }
        b
    }
}

/// How to open a TAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TapOptions {
    /// Frames carry a virtio-net header (`IFF_VNET_HDR`); needed for offloads.
    pub vnet_hdr: bool,
    /// Offloads to enable (ignored without `vnet_hdr`).
    pub offloads: TapOffloads,
}

impl Default for TapOptions {
    fn default() -> Self {
        TapOptions {
            vnet_hdr: true,
            offloads: TapOffloads::ALL,
        }
    }
}

/// An open TAP device.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
    vnet_hdr: bool,
    offloads: TapOffloads,
}

/// `struct ifreq` with the `ifr_flags` member of its union (40 bytes on Linux).
#[repr(C)]
struct IfReqFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// `struct ifreq` with the `ifr_mtu` member of its union.
#[repr(C)]
struct IfReqMtu {
    name: [libc::c_char; libc::IFNAMSIZ],
    mtu: libc::c_int,
    _pad: [u8; 20],
}

impl Tap {
    /// Creates (or attaches to) the TAP `name` in the calling thread's network namespace.
    pub fn open(name: &str, opts: TapOptions) -> Result<Tap, Error> {
        if name.is_empty()
            || name.len() >= libc::IFNAMSIZ
            || name
                .bytes()
                .any(|b| b == b'/' || b == b':' || b == 0 || b.is_ascii_whitespace())
        {
            return Err(Error::TapName(name.to_owned()));
        }
        let err = |op, source| Error::Tap {
            name: name.to_owned(),
            op,
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|e| err("open /dev/net/tun", e))?;
        let fd = file.as_raw_fd();

        let mut req = IfReqFlags {
            name: [0; libc::IFNAMSIZ],
            flags: (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short,
            _pad: [0; 22],
        };
        if opts.vnet_hdr {
            req.flags |= libc::IFF_VNET_HDR as libc::c_short;
        }
        for (dst, src) in req.name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        // SAFETY: `fd` is an open tun descriptor and `req` is a valid, writable ifreq-sized buffer.
        let r = unsafe { libc::ioctl(fd, libc::TUNSETIFF, &mut req as *mut IfReqFlags) };
        if r < 0 {
            return Err(err("ioctl TUNSETIFF", io::Error::last_os_error()));
        }
        let actual: String = req
            .name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8 as char)
            .collect();

        let mut offloads = TapOffloads::NONE;
        if opts.vnet_hdr {
            let size: libc::c_int = vnet::HEADER_LEN as libc::c_int;
            // SAFETY: TUNSETVNETHDRSZ reads one c_int from the pointer, which lives across the call.
            if unsafe { libc::ioctl(fd, libc::TUNSETVNETHDRSZ, &size as *const libc::c_int) } < 0 {
                return Err(err("ioctl TUNSETVNETHDRSZ", io::Error::last_os_error()));
            }
            let le: libc::c_int = 1;
            // SAFETY: TUNSETVNETLE reads one c_int from the pointer, which lives across the call.
            if unsafe { libc::ioctl(fd, libc::TUNSETVNETLE, &le as *const libc::c_int) } < 0 {
                return Err(err("ioctl TUNSETVNETLE", io::Error::last_os_error()));
            }
            offloads = opts.offloads;
            let mut bits = offloads.bits();
            // SAFETY: TUNSETOFFLOAD takes its argument by value; no memory is passed.
            let mut r = unsafe { libc::ioctl(fd, libc::TUNSETOFFLOAD, bits as libc::c_ulong) };
            if r < 0 && offloads.uso {
                // Kernels before 6.2 reject USO; keep the rest.
                offloads.uso = false;
                bits = offloads.bits();
                // SAFETY: as above.
                r = unsafe { libc::ioctl(fd, libc::TUNSETOFFLOAD, bits as libc::c_ulong) };
            }
            if r < 0 {
                return Err(err("ioctl TUNSETOFFLOAD", io::Error::last_os_error()));
            }
            if !offloads.csum {
                offloads = TapOffloads::NONE;
            }
        }
        Ok(Tap {
            file,
            name: actual,
            vnet_hdr: opts.vnet_hdr,
            offloads,
        })
    }

    /// The name the interface was created with (it may since have been renamed
    /// in another namespace).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether frames carry a virtio-net header.
    pub fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }

    /// The offloads in effect.
    pub fn offloads(&self) -> TapOffloads {
        self.offloads
    }

    /// Sets the interface's MTU (`SIOCSIFMTU`). The interface is looked up by
    /// name in the calling thread's network namespace, so call it before the
    /// kernel side is moved to a guest's namespace (the MTU moves with it).
    pub fn set_mtu(&self, mtu: u16) -> Result<(), Error> {
        let err = |op, source| Error::Tap {
            name: self.name.clone(),
            op,
            source,
        };
        // SAFETY: plain socket(2) call; the descriptor is owned by `sock` right after.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(err("socket for SIOCSIFMTU", io::Error::last_os_error()));
        }
        // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut req = IfReqMtu {
            name: [0; libc::IFNAMSIZ],
            mtu: libc::c_int::from(mtu),
            _pad: [0; 20],
        };
        for (dst, src) in req.name.iter_mut().zip(self.name.bytes()) {
            *dst = src as libc::c_char;
        }
        // SAFETY: `sock` is an open socket and `req` a valid ifreq-sized buffer for the call.
        let r = unsafe {
            libc::ioctl(
                sock.as_raw_fd(),
                libc::SIOCSIFMTU,
                &mut req as *mut IfReqMtu,
            )
        };
        if r < 0 {
            return Err(err("ioctl SIOCSIFMTU", io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Reads one frame (with its virtio-net header if enabled) into `buf`,
    /// which should hold [`MAX_FRAME`] bytes. `WouldBlock` when none is queued.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        (&self.file).read(buf)
    }

    /// Writes one frame given as pieces (the first being the virtio-net header
    /// if enabled). The kernel takes the frame whole or not at all.
    pub fn write(&self, parts: &[IoSlice<'_>]) -> io::Result<usize> {
        (&self.file).write_vectored(parts)
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_any_syscall() {
        for bad in ["", "a/b", "a:b", "with space", "sixteen-chars-xx"] {
            assert!(
                matches!(
                    Tap::open(bad, TapOptions::default()),
                    Err(Error::TapName(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn offload_bits() {
        assert_eq!(TapOffloads::NONE.bits(), 0);
        assert_eq!(TapOffloads::ALL.bits(), 0x7f & !libc::TUN_F_UFO);
        let no_csum = TapOffloads {
            csum: false,
            ..TapOffloads::ALL
        };
        assert_eq!(
            no_csum.bits(),
            0,
            "TSO without checksum offload is meaningless"
        );
    }

    #[test]
    fn ifreq_has_the_kernel_size() {
        assert_eq!(std::mem::size_of::<IfReqFlags>(), 40);
        assert_eq!(std::mem::size_of::<IfReqMtu>(), 40);
    }
}
