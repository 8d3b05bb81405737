//! Forwarder counters: per TAP, per tunnel socket, and drops by reason.
//!
//! Every worker thread owns its own counter block and is its only writer, so
//! an increment is a relaxed load and store (no locked instruction, no shared
//! cache line). Readers sum the blocks into a plain [`Stats`] snapshot.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// A counter with a single writer thread.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`; only the owning worker calls this.
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    /// Raises the counter to `v` if it is lower (for cumulative values the kernel reports).
    #[inline]
    pub(crate) fn max(&self, v: u64) {
        if v > self.0.load(Ordering::Relaxed) {
            self.0.store(v, Ordering::Relaxed);
        }
    }

    /// Sets the counter (a gauge, or a reset when a slot is reused); only the
    /// owning worker calls this.
    #[inline]
    pub(crate) fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Declares a live counter block (one writer) and its plain snapshot.
macro_rules! counters {
    ($(#[$m:meta])* $live:ident => $snap:ident { $($(#[$fm:meta])* $f:ident,)* }) => {
        #[derive(Debug, Default)]
        pub(crate) struct $live {
            $(pub(crate) $f: $crate::stats::Counter,)*
        }

        $(#[$m])*
        #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
        pub struct $snap {
            $($(#[$fm])* pub $f: u64,)*
        }

        impl $live {
            #[allow(dead_code)]
            pub(crate) fn add_to(&self, s: &mut $snap) {
                $(s.$f += self.$f.get();)*
            }

            #[allow(dead_code)]
            pub(crate) fn reset(&self) {
                $(self.$f.set(0);)*
            }
        }

        impl $snap {
            /// The counters as `(name, value)` pairs, in declaration order.
            pub fn fields(&self) -> impl Iterator<Item = (&'static str, u64)> {
                [$((stringify!($f), self.$f),)*].into_iter()
            }
        }
    };
}

pub(crate) use counters;

counters! {
    /// Counters of one TAP. Frames are what crossed the TAP (a super-frame counts once).
    VifCounters => VifStats {
        /// Frames read from the TAP (sent by the guest).
        rx_frames,
        /// Bytes read, Ethernet header included, virtio-net header excluded.
        rx_bytes,
        /// Of `rx_frames`, TSO/USO super-frames.
        rx_gso_frames,
        /// Frames written to the TAP (delivered to the guest).
        tx_frames,
        /// Bytes written.
        tx_bytes,
        /// Of `tx_frames`, coalesced super-frames.
        tx_gso_frames,
        /// Reads that failed (other than "nothing queued") or had a bad header.
        rx_errors,
        /// Writes that failed.
        tx_errors,
    }
}

counters! {
    /// Counters of the tunnel socket. Datagrams are VXLAN packets on the wire.
    TunnelCounters => TunnelStats {
        /// VXLAN datagrams received.
        rx_datagrams,
        /// UDP payload bytes received.
        rx_bytes,
        /// `recvmmsg` calls that returned data.
        rx_syscalls,
        /// Datagrams that were not valid VXLAN (short, no I flag) or had no sender.
        rx_malformed,
        /// Messages cut short by the receive buffer.
        rx_truncated,
        /// Datagrams the kernel dropped on a full receive queue (SO_RXQ_OVFL).
        rx_queue_drops,
        /// Frames built by coalescing two or more received TCP segments.
        rx_coalesced_frames,
        /// Segments that went into those frames.
        rx_coalesced_segments,
        /// VXLAN datagrams sent.
        tx_datagrams,
        /// UDP payload bytes sent.
        tx_bytes,
        /// `sendmmsg` calls.
        tx_syscalls,
        /// Datagrams the kernel refused.
        tx_failed,
        /// Super-frames segmented in software before sending.
        tx_segmented_frames,
    }
}

counters! {
    /// Drops not tied to one interface.
    DropCounters => DropStats {
        /// Frames the processor sent nowhere.
        processor,
        /// Frames whose offload metadata could not be carried out.
        offload,
        /// Frames sent to a TAP index that does not exist.
        no_such_vif,
    }
}

/// The counter block of one worker.
#[derive(Debug)]
pub(crate) struct WorkerCounters {
    pub(crate) vifs: Vec<VifCounters>,
    pub(crate) tunnel: TunnelCounters,
    pub(crate) drops: DropCounters,
}

impl WorkerCounters {
    pub(crate) fn new(vifs: usize) -> Self {
        WorkerCounters {
            vifs: (0..vifs).map(|_| VifCounters::default()).collect(),
            tunnel: TunnelCounters::default(),
            drops: DropCounters::default(),
        }
    }
}

/// A snapshot of all forwarder counters.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Per TAP slot, indexed by [`VifId`](crate::VifId) (up to the highest slot used).
    pub vifs: Vec<VifStats>,
    /// The TAP name of each slot of `vifs`; empty for a free slot.
    pub names: Vec<String>,
    /// The tunnel socket.
    pub tunnel: TunnelStats,
    /// Drops by reason.
    pub drops: DropStats,
}

impl Stats {
    pub(crate) fn sum<'a>(
        names: Vec<String>,
        blocks: impl IntoIterator<Item = &'a WorkerCounters>,
    ) -> Stats {
        let mut s = Stats {
            vifs: vec![VifStats::default(); names.len()],
            names,
            ..Stats::default()
        };
        for b in blocks {
            for (live, snap) in b.vifs.iter().zip(s.vifs.iter_mut()) {
                live.add_to(snap);
            }
            b.tunnel.add_to(&mut s.tunnel);
            b.drops.add_to(&mut s.drops);
        }
        s
    }
}

impl fmt::Display for Stats {
    /// One `key=value` per line, e.g. `vif0.rx_frames=12`, for logs and scripts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, v) in self.vifs.iter().enumerate() {
            if self.names.get(i).is_some_and(String::is_empty) {
                continue;
            }
            for (k, n) in v.fields() {
                writeln!(f, "vif{i}.{k}={n}")?;
            }
        }
        for (k, n) in self.tunnel.fields() {
            writeln!(f, "tunnel.{k}={n}")?;
        }
        for (k, n) in self.drops.fields() {
            writeln!(f, "drops.{k}={n}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_sum_and_print() {
        let a = WorkerCounters::new(2);
        let b = WorkerCounters::new(2);
        a.vifs[1].rx_frames.add(3);
        b.vifs[1].rx_frames.add(4);
        b.tunnel.tx_datagrams.add(5);
        a.tunnel.rx_queue_drops.max(9);
        a.tunnel.rx_queue_drops.max(2);
        a.drops.processor.add(1);
        let s = Stats::sum(vec!["t0".into(), "t1".into()], [&a, &b]);
        assert_eq!(s.vifs[1].rx_frames, 7);
        assert_eq!(s.vifs[0].rx_frames, 0);
        assert_eq!(s.tunnel.tx_datagrams, 5);
        assert_eq!(s.tunnel.rx_queue_drops, 9);
        let text = s.to_string();
        assert!(text.contains("vif1.rx_frames=7\n"), "{text}");
        assert!(text.contains("tunnel.tx_datagrams=5\n"));
        assert!(text.contains("drops.processor=1\n"));
        // Free slots are not printed.
        let s = Stats::sum(vec![String::new(), "t1".into()], [&a, &b]);
        let text = s.to_string();
        assert!(!text.contains("vif0."), "{text}");
        assert!(text.contains("vif1.rx_frames=7\n"), "{text}");
    }
}
