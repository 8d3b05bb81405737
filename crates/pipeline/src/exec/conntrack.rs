//! Connection tracking: a pure, bounded table of connections per zone.
//!
//! Semantics follow Open vSwitch's `ct_state`: a lookup sets `trk` plus one of
//! `new` (no committed connection), `est` (a committed connection, either direction; `rpl` in
//! the reply direction), `rel` (an ICMP/ICMPv6 error quoting a committed connection) or `inv`
//! (a TCP segment that cannot open a connection, an unrelated ICMP error, an echo reply
//! without a request, a non-first fragment, a non-IP packet). Only `commit` creates entries,
//! so lookups of dropped packets leave no state behind.
//!
//! TCP is tracked enough for timeouts: SYN-SENT, SYN-RECEIVED, ESTABLISHED, FIN-WAIT (one
//! FIN), TIME-WAIT (both FINs) and CLOSED (RST); a new SYN on a closed or timed-wait
//! connection opens a fresh one. Sequence numbers are not checked.
//!
//! Time is an argument (`now`, any monotonic origin). The table holds at most
//! `max_entries` connections; when full, a commit evicts an expired or unreplied connection
//! among the oldest few, else the oldest. [`Conntrack::sweep`] removes expired entries in
//! bounded steps; lookups also drop expired entries they meet.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::hash::FxBuild;
use crate::ir::{ct_state, ip_proto, tcp_flags};
use crate::wire::icmp::{self, v4, v6};
use crate::wire::{Frag, Parsed, field, prereq};

/// Timeouts and size of a [`Conntrack`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConntrackConfig {
    /// Most connections held (each takes two index slots).
    pub max_entries: usize,
    /// TCP after SYN, before the reply.
    pub tcp_syn_sent: Duration,
    /// TCP after SYN+ACK, before the final ACK.
    pub tcp_syn_recv: Duration,
    /// Established TCP.
    pub tcp_established: Duration,
    /// TCP with a FIN seen from one side.
    pub tcp_fin_wait: Duration,
    /// TCP with FINs seen from both sides.
    pub tcp_time_wait: Duration,
    /// TCP after RST.
    pub tcp_closed: Duration,
    /// UDP (and other ported protocols) before a reply.
    pub udp_single: Duration,
    /// UDP after a reply.
    pub udp_stream: Duration,
    /// ICMP echo.
    pub icmp: Duration,
    /// Any other IP protocol.
    pub other: Duration,
    /// Accept TCP segments without SYN as `new` (picking up connections mid-stream, e.g.
    /// after a forwarder restart). Off by default: such segments are `inv`.
    pub tcp_loose: bool,
}

impl Default for ConntrackConfig {
    fn default() -> Self {
        ConntrackConfig {
            max_entries: 262_144,
            tcp_syn_sent: Duration::from_secs(120),
            tcp_syn_recv: Duration::from_secs(60),
            tcp_established: Duration::from_secs(86_400),
            tcp_fin_wait: Duration::from_secs(120),
            tcp_time_wait: Duration::from_secs(120),
            tcp_closed: Duration::from_secs(10),
            udp_single: Duration::from_secs(30),
            udp_stream: Duration::from_secs(180),
            icmp: Duration::from_secs(30),
            other: Duration::from_secs(600),
            tcp_loose: false,
        }
    }
}

/// Counters, for the forwarder's metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConntrackStats {
    /// Lookups done.
    pub lookups: u64,
    /// Lookups that found a committed connection (`est` or `rel`).
    pub hits: u64,
    /// Lookups that returned `new`.
    pub misses: u64,
    /// Lookups that returned `inv`.
    pub invalid: u64,
    /// Connections created by commits.
    pub commits: u64,
    /// Connections removed to make room.
    pub evictions: u64,
    /// Connections removed because they expired.
    pub expirations: u64,
}

/// One direction of a connection: zone and 5-tuple. ICMP echo uses the identifier as the
/// source port and 0 as the destination port in both directions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtTuple {
    /// Zone.
    pub zone: u16,
    /// IP protocol.
    pub proto: u8,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (echo identifier for ICMP echo).
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
}

impl std::hash::Hash for CtTuple {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        let a = u64::from(self.zone)
            | (u64::from(self.proto) << 16)
            | (u64::from(self.sport) << 24)
            | (u64::from(self.dport) << 40);
        let s = crate::wire::key_ip_word(self.src);
        let d = crate::wire::key_ip_word(self.dst);
        let acc = a
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .wrapping_add(
                ((s as u64) ^ ((s >> 64) as u64).rotate_left(32))
                    .wrapping_mul(0xc2b2_ae3d_27d4_eb4f),
            )
            .wrapping_add(
                ((d as u64) ^ ((d >> 64) as u64).rotate_left(32))
                    .wrapping_mul(0x1656_67b1_9e37_79f9),
            );
        h.write_u64(super::hash::mix64(acc));
    }
}

impl CtTuple {
    fn reverse(&self) -> CtTuple {
        let echo = matches!(self.proto, ip_proto::ICMP | ip_proto::ICMPV6);
        CtTuple {
            zone: self.zone,
            proto: self.proto,
            src: self.dst,
            dst: self.src,
            sport: if echo { self.sport } else { self.dport },
            dport: if echo { self.dport } else { self.sport },
        }
    }
}

/// TCP connection states tracked for timeouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpState {
    /// SYN seen.
    SynSent,
    /// SYN+ACK seen.
    SynRecv,
    /// Handshake done (or picked up mid-stream).
    Established,
    /// FIN seen from one side.
    FinWait,
    /// FINs seen from both sides.
    TimeWait,
    /// RST seen.
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Orig,
    Reply,
}

#[derive(Clone, Debug)]
struct Entry {
    orig: CtTuple,
    epoch: u32,
    last_seen: Duration,
    tcp: Option<TcpState>,
    fin_orig: bool,
    fin_reply: bool,
    seen_reply: bool,
}

/// A read-only view of one connection, for tests, metrics and debugging.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnInfo {
    /// The original direction.
    pub orig: CtTuple,
    /// TCP state, for TCP.
    pub tcp: Option<TcpState>,
    /// A packet was seen in the reply direction.
    pub seen_reply: bool,
    /// When the connection expires if nothing more is seen.
    pub expires: Duration,
}

/// What a lookup found, before any state change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Classified {
    state: u8,
    found: Option<(u32, Dir)>,
    /// The forward tuple of the packet, when it has one.
    tuple: Option<CtTuple>,
}

/// The connection tracking table. The forwarder owns one per host; `weft trace` uses a
/// scratch one.
#[derive(Clone, Debug)]
pub struct Conntrack {
    cfg: ConntrackConfig,
    index: HashMap<CtTuple, (u32, Dir), FxBuild>,
    slots: Vec<Option<Entry>>,
    epochs: Vec<u32>,
    free: Vec<u32>,
    order: VecDeque<(u32, u32)>,
    len: usize,
    stats: ConntrackStats,
    sweep_cursor: usize,
}

impl Default for Conntrack {
    fn default() -> Self {
        Self::new(ConntrackConfig::default())
    }
}

/// How many of the oldest entries a full table inspects for an expired or unreplied one to
/// evict before evicting the oldest.
const EVICT_SCAN: usize = 8;

impl Conntrack {
    /// An empty table.
    pub fn new(cfg: ConntrackConfig) -> Self {
        Conntrack {
            cfg,
            index: HashMap::with_hasher(FxBuild),
            slots: Vec::new(),
            epochs: Vec::new(),
            free: Vec::new(),
            order: VecDeque::new(),
            len: 0,
            stats: ConntrackStats::default(),
            sweep_cursor: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ConntrackConfig {
        &self.cfg
    }

    /// Number of connections held (expired ones not yet removed included).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no connection is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Counters.
    pub fn stats(&self) -> ConntrackStats {
        self.stats
    }

    /// All live connections at `now`, in no particular order.
    pub fn connections(&self, now: Duration) -> Vec<ConnInfo> {
        self.slots
            .iter()
            .flatten()
            .filter(|e| !self.expired(e, now))
            .map(|e| ConnInfo {
                orig: e.orig,
                tcp: e.tcp,
                seen_reply: e.seen_reply,
                expires: e.last_seen + self.timeout(e),
            })
            .collect()
    }

    fn timeout(&self, e: &Entry) -> Duration {
        let c = &self.cfg;
        match e.tcp {
            Some(TcpState::SynSent) => c.tcp_syn_sent,
            Some(TcpState::SynRecv) => c.tcp_syn_recv,
            Some(TcpState::Established) => c.tcp_established,
            Some(TcpState::FinWait) => c.tcp_fin_wait,
            Some(TcpState::TimeWait) => c.tcp_time_wait,
            Some(TcpState::Closed) => c.tcp_closed,
            None => match e.orig.proto {
                ip_proto::UDP | ip_proto::SCTP if e.seen_reply => c.udp_stream,
                ip_proto::UDP | ip_proto::SCTP => c.udp_single,
                ip_proto::ICMP | ip_proto::ICMPV6 => c.icmp,
                _ => c.other,
            },
        }
    }

    fn expired(&self, e: &Entry, now: Duration) -> bool {
        now >= e.last_seen + self.timeout(e)
    }

    /// The `ct_state` a lookup of this packet in `zone` would return at `now`, without
    /// changing anything. The flow cache uses it to check a cached decision still holds.
    pub fn peek(&self, zone: u16, p: &Parsed, frame: &[u8], now: Duration) -> u8 {
        self.classify(zone, p, frame, now).state
    }

    /// Looks the packet up in `zone`, updates the connection it belongs to (TCP state,
    /// last-seen time) and returns `ct_state`.
    pub fn lookup(&mut self, zone: u16, p: &Parsed, frame: &[u8], now: Duration) -> u8 {
        let c = self.classify(zone, p, frame, now);
        self.finish_lookup(zone, p, &c, now);
        c.state
    }

    /// [`Conntrack::lookup`], but only if it returns `expect`; otherwise nothing changes and
    /// the state it would have returned is the error.
    pub fn lookup_if(
        &mut self,
        zone: u16,
        p: &Parsed,
        frame: &[u8],
        now: Duration,
        expect: u8,
    ) -> Result<(), u8> {
        let c = self.classify(zone, p, frame, now);
        if c.state != expect {
            return Err(c.state);
        }
        self.finish_lookup(zone, p, &c, now);
        Ok(())
    }

    fn finish_lookup(&mut self, zone: u16, p: &Parsed, c: &Classified, now: Duration) {
        self.stats.lookups += 1;
        if c.found.is_none() {
            // Classification skips expired entries; remove the one it may have skipped.
            self.drop_expired_for(zone, p, now);
        }
        if c.state & ct_state::INV != 0 {
            self.stats.invalid += 1;
        } else if c.state & ct_state::NEW != 0 {
            self.stats.misses += 1;
        } else {
            self.stats.hits += 1;
        }
        // Related ICMP errors refresh nothing: they are not part of the connection's flow.
        if c.state & ct_state::EST != 0
            && let Some((slot, dir)) = c.found
        {
            self.update(slot, dir, &p.key, now);
        }
    }

    /// Commits the packet's connection in `zone`: creates it if it does not exist. Invalid
    /// and related packets commit nothing. Returns true when a connection was created.
    pub fn commit(&mut self, zone: u16, p: &Parsed, frame: &[u8], now: Duration) -> bool {
        self.drop_expired_for(zone, p, now);
        let c = self.classify(zone, p, frame, now);
        if c.state & (ct_state::INV | ct_state::REL) != 0 || c.state & ct_state::NEW == 0 {
            return false;
        }
        let Some(orig) = c.tuple else { return false };
        // A SYN reusing a closed connection's tuple replaces it.
        if let Some((slot, _)) = c.found {
            self.remove(slot);
        }
        if self.len >= self.cfg.max_entries.max(1) {
            self.evict(now);
        }
        let tcp = (orig.proto == ip_proto::TCP).then_some(
            if p.key.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN {
                TcpState::SynSent
            } else {
                TcpState::Established
            },
        );
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(None);
                self.epochs.push(0);
                (self.slots.len() - 1) as u32
            }
        };
        let epoch = self.epochs[slot as usize].wrapping_add(1);
        self.epochs[slot as usize] = epoch;
        self.slots[slot as usize] = Some(Entry {
            orig,
            epoch,
            last_seen: now,
            tcp,
            fin_orig: false,
            fin_reply: false,
            seen_reply: false,
        });
        self.index.insert(orig, (slot, Dir::Orig));
        let rev = orig.reverse();
        if rev != orig {
            self.index.insert(rev, (slot, Dir::Reply));
        }
        self.order.push_back((slot, epoch));
        // Entries removed by expiry stay queued until eviction reaches them; compact the
        // queue when they outnumber live ones so it stays proportional to the table.
        if self.order.len() > 2 * self.len + 64 {
            let slots = &self.slots;
            self.order
                .retain(|&(s, e)| slots[s as usize].as_ref().is_some_and(|x| x.epoch == e));
        }
        self.len += 1;
        self.stats.commits += 1;
        true
    }

    /// Removes up to `budget` expired connections, resuming where the last sweep stopped.
    /// Returns how many were removed. Call it periodically (e.g. every second).
    pub fn sweep(&mut self, now: Duration, budget: usize) -> usize {
        let n = self.slots.len();
        if n == 0 {
            return 0;
        }
        let mut removed = 0;
        for _ in 0..budget.min(n) {
            let i = self.sweep_cursor % n;
            self.sweep_cursor = (i + 1) % n;
            if let Some(e) = &self.slots[i]
                && self.expired(e, now)
            {
                self.remove(i as u32);
                self.stats.expirations += 1;
                removed += 1;
            }
        }
        removed
    }

    fn remove(&mut self, slot: u32) {
        if let Some(e) = self.slots.get_mut(slot as usize).and_then(Option::take) {
            self.index.remove(&e.orig);
            self.index.remove(&e.orig.reverse());
            self.free.push(slot);
            self.len -= 1;
        }
    }

    fn drop_expired_for(&mut self, zone: u16, p: &Parsed, now: Duration) {
        if let Some(t) = forward_tuple(zone, p)
            && let Some(&(slot, _)) = self.index.get(&t)
            && let Some(e) = &self.slots[slot as usize]
            && self.expired(e, now)
        {
            self.remove(slot);
            self.stats.expirations += 1;
        }
    }

    fn evict(&mut self, now: Duration) {
        // Forget queue entries whose slot was freed or reused.
        while let Some(&(slot, epoch)) = self.order.front() {
            if self.slots[slot as usize]
                .as_ref()
                .is_some_and(|e| e.epoch == epoch)
            {
                break;
            }
            self.order.pop_front();
        }
        let mut victim = None;
        for (i, &(slot, epoch)) in self.order.iter().take(EVICT_SCAN).enumerate() {
            if let Some(e) = &self.slots[slot as usize]
                && e.epoch == epoch
                && (self.expired(e, now) || !e.seen_reply)
            {
                victim = Some(i);
                break;
            }
        }
        let i = victim.unwrap_or(0);
        if let Some((slot, epoch)) = self.order.remove(i)
            && self.slots[slot as usize]
                .as_ref()
                .is_some_and(|e| e.epoch == epoch)
        {
            self.remove(slot);
            self.stats.evictions += 1;
        }
    }

    fn update(&mut self, slot: u32, dir: Dir, key: &crate::wire::FlowKey, now: Duration) {
        let Some(e) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        e.last_seen = now;
        if dir == Dir::Reply {
            e.seen_reply = true;
        }
        let Some(state) = e.tcp else { return };
        let f = key.tcp_flags;
        let next = if f & tcp_flags::RST != 0 {
            TcpState::Closed
        } else if f & tcp_flags::FIN != 0 {
            match dir {
                Dir::Orig => e.fin_orig = true,
                Dir::Reply => e.fin_reply = true,
            }
            if e.fin_orig && e.fin_reply {
                TcpState::TimeWait
            } else {
                TcpState::FinWait
            }
        } else {
            match (state, dir) {
                (TcpState::SynSent, Dir::Reply)
                    if f & (tcp_flags::SYN | tcp_flags::ACK) == tcp_flags::SYN | tcp_flags::ACK =>
                {
                    TcpState::SynRecv
                }
                (TcpState::SynRecv, Dir::Orig) if f & tcp_flags::ACK != 0 => TcpState::Established,
                (s, _) => s,
            }
        };
        e.tcp = Some(next);
    }

    fn classify(&self, zone: u16, p: &Parsed, frame: &[u8], now: Duration) -> Classified {
        let k = &p.key;
        let inv = Classified {
            state: ct_state::TRK | ct_state::INV,
            found: None,
            tuple: None,
        };
        if !k.is_ip() || k.frag == Frag::Later {
            return inv;
        }
        // ICMP errors are related to the connection they quote, if any.
        let is_err = (k.prereq & prereq::ICMP4 != 0 && icmp::is_error_v4(k.icmp_type))
            || (k.prereq & prereq::ICMP6 != 0 && icmp::is_error_v6(k.icmp_type));
        if is_err {
            let Some(inner) = inner_tuple(zone, p, frame) else {
                return inv;
            };
            return match self.live(&inner, now) {
                Some((slot, dir)) => Classified {
                    // The quoted packet travelled in `dir`; the error travels back.
                    state: ct_state::TRK
                        | ct_state::REL
                        | if dir == Dir::Orig { ct_state::RPL } else { 0 },
                    found: Some((slot, dir)),
                    tuple: None,
                },
                None => inv,
            };
        }
        let Some(t) = forward_tuple(zone, p) else {
            return inv;
        };
        let syn_only =
            k.tcp_flags & (tcp_flags::SYN | tcp_flags::ACK | tcp_flags::RST) == tcp_flags::SYN;
        match self.live(&t, now) {
            Some((slot, dir)) => {
                let entry = self.slots[slot as usize].as_ref();
                let reusable = matches!(
                    entry.and_then(|e| e.tcp),
                    Some(TcpState::Closed | TcpState::TimeWait)
                );
                if t.proto == ip_proto::TCP && dir == Dir::Orig && syn_only && reusable {
                    return Classified {
                        state: ct_state::TRK | ct_state::NEW,
                        found: Some((slot, dir)),
                        tuple: Some(t),
                    };
                }
                Classified {
                    state: ct_state::TRK
                        | ct_state::EST
                        | if dir == Dir::Reply { ct_state::RPL } else { 0 },
                    found: Some((slot, dir)),
                    tuple: Some(t),
                }
            }
            None => {
                let ok = match t.proto {
                    ip_proto::TCP => syn_only || self.cfg.tcp_loose,
                    ip_proto::ICMP => k.icmp_type != v4::ECHO_REPLY,
                    ip_proto::ICMPV6 => k.icmp_type != v6::ECHO_REPLY,
                    _ => true,
                };
                if ok {
                    Classified {
                        state: ct_state::TRK | ct_state::NEW,
                        found: None,
                        tuple: Some(t),
                    }
                } else {
                    inv
                }
            }
        }
    }

    fn live(&self, t: &CtTuple, now: Duration) -> Option<(u32, Dir)> {
        let &(slot, dir) = self.index.get(t)?;
        let e = self.slots.get(slot as usize)?.as_ref()?;
        (!self.expired(e, now)).then_some((slot, dir))
    }
}

/// The packet's own tuple in `zone`.
fn forward_tuple(zone: u16, p: &Parsed) -> Option<CtTuple> {
    let k = &p.key;
    if !k.is_ip() {
        return None;
    }
    let (sport, dport) = if k.prereq & prereq::L4_PORTS != 0 {
        (k.l4_src, k.l4_dst)
    } else if k.prereq & (prereq::ICMP4 | prereq::ICMP6) != 0 {
        let echo = matches!(
            k.icmp_type,
            v4::ECHO_REQUEST | v4::ECHO_REPLY | v6::ECHO_REQUEST | v6::ECHO_REPLY
        );
        if echo { (k.l4_src, 0) } else { (0, 0) }
    } else {
        (0, 0)
    };
    Some(CtTuple {
        zone,
        proto: k.ip_proto,
        src: k.ip_src,
        dst: k.ip_dst,
        sport,
        dport,
    })
}

/// The tuple of the packet quoted by an ICMP/ICMPv6 error (the original direction as sent).
fn inner_tuple(zone: u16, p: &Parsed, frame: &[u8]) -> Option<CtTuple> {
    let l4 = p.layout.l4?;
    let body = frame.get(l4 + icmp::HEADER_LEN..p.layout.end.min(frame.len()))?;
    let v6 = p.key.prereq & prereq::IP6 != 0;
    let (src, dst, proto, rest): (IpAddr, IpAddr, u8, &[u8]) = if v6 {
        if body.len() < 40 || body[0] >> 4 != 6 {
            return None;
        }
        let up = crate::wire::ip::walk_ipv6_extensions(body[6], &body[40..]).ok()?;
        if up.later_fragment {
            return None;
        }
        (
            IpAddr::V6(Ipv6Addr::from(field::arr16(body, 8))),
            IpAddr::V6(Ipv6Addr::from(field::arr16(body, 24))),
            up.proto,
            body.get(40 + up.offset..)?,
        )
    } else {
        if body.len() < 20 || body[0] >> 4 != 4 {
            return None;
        }
        let ihl = usize::from(body[0] & 0x0f) * 4;
        if ihl < 20 || field::be16(body, 6)? & 0x1fff != 0 {
            return None;
        }
        (
            IpAddr::V4(Ipv4Addr::from(field::arr4(body, 12))),
            IpAddr::V4(Ipv4Addr::from(field::arr4(body, 16))),
            body[9],
            body.get(ihl..)?,
        )
    };
    let (sport, dport) = match proto {
        ip_proto::TCP | ip_proto::UDP | ip_proto::SCTP => {
            (field::be16(rest, 0)?, field::be16(rest, 2)?)
        }
        ip_proto::ICMP | ip_proto::ICMPV6 => {
            let t = *rest.first()?;
            let echo = matches!(
                t,
                v4::ECHO_REQUEST | v4::ECHO_REPLY | v6::ECHO_REQUEST | v6::ECHO_REPLY
            );
            if echo {
                (field::be16(rest, 4)?, 0)
            } else {
                (0, 0)
            }
        }
        _ => (0, 0),
    };
    Some(CtTuple {
        zone,
        proto,
        src,
        dst,
        sport,
        dport,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::IcmpErrorKind;
    use crate::mac::MacAddr;
    use crate::wire::build::{L3Spec, L4Spec, PacketSpec, icmp_error};
    use crate::wire::parse;

    const A: MacAddr = MacAddr::new(2, 0, 0, 0, 0, 0xa);
    const B: MacAddr = MacAddr::new(2, 0, 0, 0, 0, 0xb);

    fn tcp(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16, flags: u16) -> Vec<u8> {
        PacketSpec {
            eth_src: A,
            eth_dst: B,
            vlans: vec![],
            l3: L3Spec::Ip {
                src: src.into(),
                dst: dst.into(),
                ttl: 64,
                l4: L4Spec::Tcp {
                    src: sp,
                    dst: dp,
                    flags,
                    seq: 1,
                    ack: 1,
                    payload: vec![],
                },
            },
        }
        .build()
    }

    fn udp(src: [u8; 4], dst: [u8; 4], sp: u16, dp: u16) -> Vec<u8> {
        PacketSpec {
            eth_src: A,
            eth_dst: B,
            vlans: vec![],
            l3: L3Spec::Ip {
                src: src.into(),
                dst: dst.into(),
                ttl: 64,
                l4: L4Spec::Udp {
                    src: sp,
                    dst: dp,
                    payload: vec![1, 2, 3],
                },
            },
        }
        .build()
    }

    fn look(ct: &mut Conntrack, zone: u16, f: &[u8], now: u64) -> u8 {
        ct.lookup(zone, &parse(f).unwrap(), f, Duration::from_secs(now))
    }

    fn commit(ct: &mut Conntrack, zone: u16, f: &[u8], now: u64) -> bool {
        ct.commit(zone, &parse(f).unwrap(), f, Duration::from_secs(now))
    }

    const NEW: u8 = ct_state::TRK | ct_state::NEW;
    const EST: u8 = ct_state::TRK | ct_state::EST;
    const EST_RPL: u8 = ct_state::TRK | ct_state::EST | ct_state::RPL;
    const INV: u8 = ct_state::TRK | ct_state::INV;

    #[test]
    fn tcp_handshake_and_reply_direction() {
        let mut ct = Conntrack::default();
        let syn = tcp([10, 0, 0, 1], [10, 0, 0, 2], 1000, 80, tcp_flags::SYN);
        let synack = tcp(
            [10, 0, 0, 2],
            [10, 0, 0, 1],
            80,
            1000,
            tcp_flags::SYN | tcp_flags::ACK,
        );
        let ack = tcp([10, 0, 0, 1], [10, 0, 0, 2], 1000, 80, tcp_flags::ACK);
        assert_eq!(look(&mut ct, 1, &syn, 0), NEW);
        assert_eq!(
            look(&mut ct, 1, &synack, 0),
            INV,
            "uncommitted: SYN+ACK cannot open"
        );
        assert!(commit(&mut ct, 1, &syn, 0));
        assert_eq!(look(&mut ct, 1, &syn, 0), EST);
        assert_eq!(look(&mut ct, 1, &synack, 1), EST_RPL);
        assert_eq!(look(&mut ct, 1, &ack, 1), EST);
        assert_eq!(
            ct.connections(Duration::from_secs(1))[0].tcp,
            Some(TcpState::Established)
        );
        // Other zones are separate.
        assert_eq!(look(&mut ct, 2, &ack, 1), INV);
        assert_eq!(look(&mut ct, 2, &syn, 1), NEW);
        let s = ct.stats();
        assert_eq!((s.commits, s.hits, s.misses, s.invalid), (1, 3, 2, 2));
    }

    #[test]
    fn tcp_rst_closes_and_syn_reopens() {
        let mut ct = Conntrack::default();
        let syn = tcp([10, 0, 0, 1], [10, 0, 0, 2], 1000, 80, tcp_flags::SYN);
        let rst = tcp([10, 0, 0, 2], [10, 0, 0, 1], 80, 1000, tcp_flags::RST);
        commit(&mut ct, 0, &syn, 0);
        assert_eq!(look(&mut ct, 0, &rst, 1), EST_RPL);
        assert_eq!(
            ct.connections(Duration::from_secs(1))[0].tcp,
            Some(TcpState::Closed)
        );
        // The closed connection times out after 10 s, not a day.
        assert!(ct.connections(Duration::from_secs(12)).is_empty());
        // A new SYN on the closed tuple is new and commits a fresh connection.
        assert_eq!(look(&mut ct, 0, &syn, 2), NEW);
        assert!(commit(&mut ct, 0, &syn, 2));
        assert_eq!(ct.len(), 1);
        assert_eq!(
            ct.connections(Duration::from_secs(2))[0].tcp,
            Some(TcpState::SynSent)
        );
    }

    #[test]
    fn udp_timeouts_depend_on_replies() {
        let mut ct = Conntrack::default();
        let out = udp([10, 0, 0, 1], [10, 0, 0, 2], 5000, 53);
        let back = udp([10, 0, 0, 2], [10, 0, 0, 1], 53, 5000);
        commit(&mut ct, 0, &out, 100);
        assert_eq!(look(&mut ct, 0, &out, 129), EST);
        assert_eq!(
            look(&mut ct, 0, &out, 160),
            NEW,
            "30 s without reply: expired"
        );
        assert_eq!(ct.stats().expirations, 1);
        commit(&mut ct, 0, &out, 200);
        assert_eq!(look(&mut ct, 0, &back, 201), EST_RPL);
        assert_eq!(look(&mut ct, 0, &out, 300), EST, "replied: 180 s");
    }

    #[test]
    fn icmp_error_is_related() {
        let mut ct = Conntrack::default();
        let out = udp([10, 0, 0, 1], [10, 9, 9, 9], 5000, 33434);
        commit(&mut ct, 3, &out, 0);
        let p = parse(&out).unwrap();
        let err = icmp_error(
            &out,
            &p,
            IcmpErrorKind::TimeExceeded,
            "10.0.0.254".parse().unwrap(),
            B,
        )
        .unwrap();
        assert_eq!(
            look(&mut ct, 3, &err, 1),
            ct_state::TRK | ct_state::REL | ct_state::RPL
        );
        // An error quoting a connection nobody committed is invalid.
        let other = udp([10, 0, 0, 1], [10, 9, 9, 9], 5001, 33434);
        let p = parse(&other).unwrap();
        let err = icmp_error(
            &other,
            &p,
            IcmpErrorKind::TimeExceeded,
            "10.0.0.254".parse().unwrap(),
            B,
        )
        .unwrap();
        assert_eq!(look(&mut ct, 3, &err, 1), INV);
    }

    #[test]
    fn echo_request_and_reply() {
        let mk = |src: [u8; 4], dst: [u8; 4], ty: u8| {
            PacketSpec {
                eth_src: A,
                eth_dst: B,
                vlans: vec![],
                l3: L3Spec::Ip {
                    src: src.into(),
                    dst: dst.into(),
                    ttl: 64,
                    l4: L4Spec::Icmp {
                        ty,
                        code: 0,
                        rest: [0, 7, 0, 1],
                        payload: vec![],
                    },
                },
            }
            .build()
        };
        let mut ct = Conntrack::default();
        let req = mk([10, 0, 0, 1], [10, 0, 0, 2], 8);
        let rep = mk([10, 0, 0, 2], [10, 0, 0, 1], 0);
        assert_eq!(look(&mut ct, 0, &rep, 0), INV);
        commit(&mut ct, 0, &req, 0);
        assert_eq!(look(&mut ct, 0, &rep, 0), EST_RPL);
    }

    #[test]
    fn bounded_with_eviction_and_sweep() {
        let cfg = ConntrackConfig {
            max_entries: 4,
            ..Default::default()
        };
        let mut ct = Conntrack::new(cfg);
        for i in 0..10u16 {
            let f = udp([10, 0, 0, 1], [10, 0, 0, 2], 1000 + i, 53);
            assert!(commit(&mut ct, 0, &f, u64::from(i)));
            assert!(ct.len() <= 4);
        }
        assert_eq!(ct.stats().evictions, 6);
        // The newest four survive.
        let f = udp([10, 0, 0, 1], [10, 0, 0, 2], 1009, 53);
        assert_eq!(look(&mut ct, 0, &f, 10), EST);
        let f = udp([10, 0, 0, 1], [10, 0, 0, 2], 1000, 53);
        assert_eq!(look(&mut ct, 0, &f, 10), NEW);
        // Everything expires 30 s later; a sweep removes it in bounded steps.
        assert_eq!(ct.sweep(Duration::from_secs(100), 2), 2);
        assert_eq!(ct.sweep(Duration::from_secs(100), 100), 2);
        assert!(ct.is_empty());
    }

    #[test]
    fn eviction_queue_stays_bounded_under_churn() {
        let mut ct = Conntrack::default();
        for i in 0..10_000u32 {
            let f = udp([10, 0, 0, 1], [10, 0, 0, 2], (i % 60_000) as u16, 53);
            commit(&mut ct, 0, &f, u64::from(i) * 100);
            ct.sweep(Duration::from_secs(u64::from(i) * 100), 16);
        }
        assert!(ct.len() <= 2);
        assert!(ct.order.len() <= 2 * ct.len() + 65, "{}", ct.order.len());
    }

    #[test]
    fn peek_changes_nothing() {
        let mut ct = Conntrack::default();
        let syn = tcp([10, 0, 0, 1], [10, 0, 0, 2], 1000, 80, tcp_flags::SYN);
        commit(&mut ct, 0, &syn, 0);
        let fin = tcp(
            [10, 0, 0, 1],
            [10, 0, 0, 2],
            1000,
            80,
            tcp_flags::FIN | tcp_flags::ACK,
        );
        let p = parse(&fin).unwrap();
        assert_eq!(ct.peek(0, &p, &fin, Duration::from_secs(1)), EST);
        assert_eq!(
            ct.connections(Duration::from_secs(1))[0].tcp,
            Some(TcpState::SynSent)
        );
        assert_eq!(ct.stats().lookups, 0);
    }

    #[test]
    fn non_ip_and_later_fragments_are_invalid() {
        let ct = Conntrack::default();
        let arp = PacketSpec {
            eth_src: A,
            eth_dst: B,
            vlans: vec![],
            l3: L3Spec::Arp {
                op: 1,
                sha: A,
                spa: [10, 0, 0, 1].into(),
                tha: MacAddr::ZERO,
                tpa: [10, 0, 0, 2].into(),
            },
        }
        .build();
        assert_eq!(ct.peek(0, &parse(&arp).unwrap(), &arp, Duration::ZERO), INV);
        let mut frag = udp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2);
        frag[14 + 7] = 0x10;
        assert_eq!(
            ct.peek(0, &parse(&frag).unwrap(), &frag, Duration::ZERO),
            INV
        );
    }
}
