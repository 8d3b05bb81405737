//! VLAN sub-interfaces for a VM whose kernel has no 802.1Q devices (no
//! `8021q` module, no bridge VLAN filtering on this machine's kernel).
//!
//! ```text
//!   VM namespace
//!   eth0 (the forwarder's TAP) ──┐
//!                                br0 (plain Linux bridge: forwards tagged frames as they are)
//!   trunk0 (TAP, fd held here) ──┘
//!       │  relay thread: trunk0 ─tag N─► strip ─► sfN ;  sfN ─► push tag N ─► trunk0
//!   sf10, sf20, sf30 (TAPs, fds held here): the VM's "eth0.10/20/30", with addresses
//! ```
//!
//! The bridge is needed because the forwarder holds eth0's file descriptor:
//! the only ways to read eth0's frames in userspace are a packet socket or a
//! bridge to a TAP of our own; the TAP keeps the code free of `unsafe`. The
//! kernel moves a received tag into packet metadata and the TAP driver puts
//! it back in the bytes it hands the relay, so the relay sees real 802.1Q
//! frames both ways. The sub-interfaces share the vNIC's MAC, as VLAN devices do.

use std::io::IoSlice;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use weft_dataplane::{Tap, TapOffloads, TapOptions};

use crate::netns::Netns;
use crate::{LabError, Result};

/// The relay of one VM; stopped (and its TAPs gone) when dropped.
pub struct VlanRelay {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The name of the sub-interface for `vlan`.
pub fn sub_name(vlan: u16) -> String {
    format!("sf{vlan}")
}

impl VlanRelay {
    /// Builds the bridge and one sub-interface `sf<vlan>` per `(vlan, cidr)`
    /// with the vNIC's `mac`, and starts relaying. `eth0` must already be in
    /// the VM namespace (and have no address).
    pub fn start(vm: &Netns, mac: &str, vlans: &[(u16, &str)]) -> Result<VlanRelay> {
        let opts = TapOptions {
            vnet_hdr: false,
            offloads: TapOffloads::NONE,
        };
        let open = |name: String| {
            vm.run(move || Tap::open(&name, opts))?
                .map_err(|e| LabError::Io {
                    what: format!("opening a TAP in {}", vm.name()),
                    source: std::io::Error::other(e.to_string()),
                })
        };
        let trunk = open("trunk0".into())?;
        let subs: Vec<(u16, Tap)> = vlans
            .iter()
            .map(|(v, _)| Ok((*v, open(sub_name(*v))?)))
            .collect::<Result<_>>()?;
        // A bridge keeps its ports' own MACs as local addresses and delivers
        // frames for them to itself: eth0 and the bridge must not carry the
        // vNIC's MAC, which belongs to the sub-interfaces behind trunk0.
        vm.ip(&["link", "set", "eth0", "down"])?;
        vm.ip(&["link", "set", "eth0", "address", "02:57:4c:00:00:01"])?;
        vm.ip(&[
            "link",
            "add",
            "br0",
            "address",
            "02:57:4c:00:00:02",
            "type",
            "bridge",
        ])?;
        for l in ["eth0", "trunk0"] {
            vm.ip(&["link", "set", l, "master", "br0"])?;
            vm.ip(&["link", "set", l, "up"])?;
        }
        vm.ip(&["link", "set", "br0", "up"])?;
        for (v, cidr) in vlans {
            let n = sub_name(*v);
            vm.ip(&["link", "set", &n, "address", mac, "mtu", "1400"])?;
            vm.ip(&["addr", "add", cidr, "dev", &n])?;
            vm.ip(&["link", "set", &n, "up"])?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || relay(&trunk, &subs, &stop)
        });
        Ok(VlanRelay {
            stop,
            thread: Some(thread),
        })
    }
}

fn relay(trunk: &Tap, subs: &[(u16, Tap)], stop: &AtomicBool) {
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let mut fds: Vec<PollFd> = std::iter::once(trunk)
            .chain(subs.iter().map(|(_, t)| t))
            .map(|t| PollFd::new(t.as_fd(), PollFlags::POLLIN))
            .collect();
        if poll(&mut fds, PollTimeout::from(50u16)).unwrap_or(0) <= 0 {
            continue;
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| r.contains(PollFlags::POLLIN)))
            .collect();
        if ready[0] {
            while let Ok(n) = trunk.read(&mut buf) {
                if let Some((vid, untagged)) = untag(&buf[..n])
                    && let Some((_, t)) = subs.iter().find(|(v, _)| *v == vid)
                {
                    let _ = t.write(&[IoSlice::new(&untagged)]);
                }
            }
        }
        for (k, (vid, t)) in subs.iter().enumerate() {
            if ready[k + 1] {
                while let Ok(n) = t.read(&mut buf) {
                    if n >= 14 {
                        let _ = trunk.write(&[IoSlice::new(&tag(&buf[..n], *vid))]);
                    }
                }
            }
        }
    }
}

/// The VLAN id and the frame without its 802.1Q tag; `None` if untagged.
pub fn untag(frame: &[u8]) -> Option<(u16, Vec<u8>)> {
    if frame.len() < 18 || frame[12..14] != [0x81, 0x00] {
        return None;
    }
    let vid = u16::from_be_bytes([frame[14], frame[15]]) & 0x0fff;
    let mut out = frame[..12].to_vec();
    out.extend_from_slice(&frame[16..]);
    Some((vid, out))
}

/// The frame with an 802.1Q tag for `vid` after its MAC addresses.
pub fn tag(frame: &[u8], vid: u16) -> Vec<u8> {
    let mut out = frame[..12].to_vec();
    out.extend_from_slice(&[0x81, 0x00]);
    out.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    out.extend_from_slice(&frame[12..]);
    out
}

impl Drop for VlanRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        let frame: Vec<u8> = (0u8..60).collect();
        let tagged = tag(&frame, 30);
        assert_eq!(&tagged[12..16], &[0x81, 0x00, 0x00, 30]);
        assert_eq!(untag(&tagged), Some((30, frame.clone())));
        assert_eq!(untag(&frame), None, "untagged frames are not relayed");
    }
}
