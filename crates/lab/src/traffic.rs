//! Real traffic between VM namespaces, generated in this process by threads
//! that entered a namespace (no `ping`/`nc` processes to start):
//!
//! - [`probe_matrix`]: every VM pings every other VM's address, and the
//!   verdict comes from *who actually received* the echo requests (a raw
//!   ICMP socket in every VM records them), as the OVN end-to-end harness in
//!   `shared/bench/ovn-e2e` does with its InEchos counters: with overlapping
//!   addresses, "G1 pinging Red's 10.1.1.6" is answered by Blue's G3.
//! - [`Pinger`]: a continuous ping with a short interval, with per-window loss.
//! - [`TcpServer`] / [`tcp_request`] and [`UdpServer`] / [`udp_request`]:
//!   servers that answer with their own name, so a client learns which
//!   instance served it (anycast), and clients that report how a connection
//!   ended (refused, timed out).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::netns::Netns;
use crate::{LabError, Result};

/// A raw ICMPv4 socket opened in `ns` (it sees every ICMP packet the
/// namespace receives, echo requests included).
pub fn icmp_socket(ns: &Netns) -> Result<UdpSocket> {
    ns.run(|| Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).map(UdpSocket::from))?
        .map_err(|e| LabError::Io {
            what: format!("opening a raw ICMP socket in {}", ns.name()),
            source: e,
        })
}

/// An ICMP echo message (type 8 request, 0 reply).
pub fn echo(kind: u8, id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(payload);
    let c = checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ICMP echo seen by a raw socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Echo {
    /// 8 request, 0 reply.
    pub kind: u8,
    /// Source address.
    pub src: Ipv4Addr,
    /// Identifier.
    pub id: u16,
    /// Sequence number.
    pub seq: u16,
}

/// Parses an IPv4 packet as a raw ICMP socket returns it; `None` unless it is an echo.
pub fn parse_echo(pkt: &[u8]) -> Option<Echo> {
    let ihl = usize::from(pkt.first()? & 0x0f) * 4;
    if pkt.len() < ihl + 8 || pkt[9] != 1 {
        return None;
    }
    let icmp = &pkt[ihl..];
    if icmp[0] != 0 && icmp[0] != 8 {
        return None;
    }
    Some(Echo {
        kind: icmp[0],
        src: Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]),
        id: u16::from_be_bytes([icmp[4], icmp[5]]),
        seq: u16::from_be_bytes([icmp[6], icmp[7]]),
    })
}

/// Sends `count` echoes from `ns` to `dst`, 50 ms apart, and returns how
/// many were answered within `timeout` after the last one.
pub fn ping(ns: &Netns, dst: Ipv4Addr, count: u16, timeout: Duration) -> Result<usize> {
    let sock = icmp_socket(ns)?;
    sock.set_read_timeout(Some(Duration::from_millis(10)))
        .map_err(|e| LabError::Io {
            what: "raw socket timeout".into(),
            source: e,
        })?;
    let id = (std::process::id() as u16).wrapping_add(u16::from(dst.octets()[3]) << 8) ^ 0x5a5a;
    let to = SocketAddr::V4(SocketAddrV4::new(dst, 0));
    let mut answered = BTreeSet::new();
    let mut buf = [0u8; 2048];
    let mut recv = |answered: &mut BTreeSet<u16>| {
        while let Ok(n) = sock.recv(&mut buf) {
            if let Some(e) = parse_echo(&buf[..n])
                && e.kind == 0
                && e.id == id
                && e.src == dst
            {
                answered.insert(e.seq);
            }
        }
    };
    for seq in 0..count {
        let _ = sock.send_to(&echo(8, id, seq, b"weft-lab ping"), to);
        let next = Instant::now() + Duration::from_millis(50);
        while Instant::now() < next {
            recv(&mut answered);
        }
    }
    let deadline = Instant::now() + timeout;
    while answered.len() < usize::from(count) && Instant::now() < deadline {
        recv(&mut answered);
    }
    Ok(answered.len())
}

/// Pings `dst` from `ns` until one echo is answered (ARP, program updates),
/// for at most `timeout`; returns how long it took.
pub fn wait_ping(ns: &Netns, dst: Ipv4Addr, timeout: Duration) -> Result<Duration> {
    let start = Instant::now();
    loop {
        if ping(ns, dst, 1, Duration::from_millis(200))? == 1 {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            return Err(LabError::Timeout {
                what: format!("an answer from {dst} to pings from {}", ns.name()),
                after: timeout,
            });
        }
        crate::check_cancelled()?;
    }
}

/// A counter of the `Ip:` line of `/proc/net/snmp` in `ns` (`ForwDatagrams`,
/// `InAddrErrors`, ...), read by a thread in the namespace.
pub fn ip_counter(ns: &Netns, name: &str) -> Result<u64> {
    snmp_counter(ns, "Ip", name)
}

/// A counter of `/proc/net/snmp` in `ns`: `group` is the line's prefix
/// (`Ip`, `Icmp`, `Tcp`, `Udp`), `name` the column (`InEchos`, ...).
pub fn snmp_counter(ns: &Netns, group: &str, name: &str) -> Result<u64> {
    let text = ns
        .run(|| std::fs::read_to_string("/proc/thread-self/net/snmp"))?
        .map_err(|e| LabError::Io {
            what: format!("reading /proc/net/snmp of {}", ns.name()),
            source: e,
        })?;
    let prefix = format!("{group}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    let (keys, values) = (lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    keys.split_whitespace()
        .zip(values.split_whitespace())
        .find_map(|(k, v)| (k == name).then(|| v.parse().ok()).flatten())
        .ok_or_else(|| LabError::Thread(format!("no {group} counter {name} in {}", ns.name())))
}

/// Packets received by interface `dev` of `ns` (from `/proc/net/dev`).
pub fn rx_packets(ns: &Netns, dev: &str) -> Result<u64> {
    let text = ns
        .run(|| std::fs::read_to_string("/proc/thread-self/net/dev"))?
        .map_err(|e| LabError::Io {
            what: format!("reading /proc/net/dev of {}", ns.name()),
            source: e,
        })?;
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim() == dev)
        .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok())
        .ok_or_else(|| LabError::Thread(format!("no interface {dev} in {}", ns.name())))
}

/// One VM of a reachability matrix.
#[derive(Debug, Clone)]
pub struct Endpoint<'a> {
    /// Display name.
    pub name: String,
    /// Its namespace.
    pub ns: &'a Netns,
    /// The address others ping.
    pub ip: Ipv4Addr,
}

/// What happened to the probes from one VM to another's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// VMs whose namespace received the echo requests (by name).
    pub received_by: BTreeSet<String>,
    /// The source got an echo reply.
    pub replied: bool,
}

impl Cell {
    /// The intended destination, and only it, received them, and answered.
    pub fn ok(&self, dst: &str) -> bool {
        self.replied && self.received_by.len() == 1 && self.received_by.contains(dst)
    }

    /// `ok`, or `--` followed by who received instead (`--(G3)`, `--(self)`).
    pub fn label(&self, src: &str, dst: &str) -> String {
        if self.ok(dst) {
            return "ok".into();
        }
        if self.received_by.is_empty() {
            return "--".into();
        }
        let who: Vec<&str> = self
            .received_by
            .iter()
            .map(|n| if n == src { "self" } else { n.as_str() })
            .collect();
        format!("--({})", who.join(","))
    }
}

/// The reachability matrix: `(src, dst)` → cell, for every ordered pair.
pub type Matrix = BTreeMap<(String, String), Cell>;

/// Every VM pings every other VM's address (3 echoes each, 100 ms apart,
/// all pairs at once, each pair with its own ICMP id) and every VM's raw
/// socket records which requests reached it; settles for `settle`.
pub fn probe_matrix(vms: &[Endpoint<'_>], settle: Duration) -> Result<Matrix> {
    let socks: Vec<UdpSocket> = vms
        .iter()
        .map(|v| icmp_socket(v.ns))
        .collect::<Result<_>>()?;
    for s in &socks {
        s.set_nonblocking(true).map_err(|e| LabError::Io {
            what: "non-blocking raw socket".into(),
            source: e,
        })?;
    }
    // Pair index → (src, dst); the ICMP id is a random base plus the index.
    let base = (std::process::id() as u16).wrapping_mul(7919);
    let mut pairs = Vec::new();
    for (i, _) in vms.iter().enumerate() {
        for (j, _) in vms.iter().enumerate() {
            if i != j {
                pairs.push((i, j));
            }
        }
    }
    let id_of = |k: usize| base.wrapping_add(k as u16);
    let mut seen: Vec<(usize, Echo)> = Vec::new();
    let drain = |seen: &mut Vec<(usize, Echo)>| {
        let mut buf = [0u8; 2048];
        for (v, s) in socks.iter().enumerate() {
            while let Ok(n) = s.recv(&mut buf) {
                if let Some(e) = parse_echo(&buf[..n]) {
                    seen.push((v, e));
                }
            }
        }
    };
    for seq in 1..=3u16 {
        for (k, &(i, j)) in pairs.iter().enumerate() {
            let msg = echo(8, id_of(k), seq, b"weft-lab matrix");
            let to = SocketAddr::V4(SocketAddrV4::new(vms[j].ip, 0));
            // An unreachable destination may refuse the send (ICMP error
            // cached on the socket): that is a probe lost, not a failure.
            let _ = socks[i].send_to(&msg, to);
        }
        drain(&mut seen);
        std::thread::sleep(Duration::from_millis(100));
    }
    let deadline = Instant::now() + settle;
    while Instant::now() < deadline {
        drain(&mut seen);
        std::thread::sleep(Duration::from_millis(20));
    }
    drain(&mut seen);
    let mut m = Matrix::new();
    for (k, &(i, j)) in pairs.iter().enumerate() {
        let id = id_of(k);
        let received_by = seen
            .iter()
            .filter(|(_, e)| e.kind == 8 && e.id == id)
            .map(|(v, _)| vms[*v].name.clone())
            .collect();
        let replied = seen
            .iter()
            .any(|(v, e)| *v == i && e.kind == 0 && e.id == id);
        m.insert(
            (vms[i].name.clone(), vms[j].name.clone()),
            Cell {
                received_by,
                replied,
            },
        );
    }
    Ok(m)
}

/// Formats a matrix like the OVN harness's `matrix.txt`; `expect` says
/// which cells should be `ok`, and deviating cells are marked `!`.
pub fn format_matrix(
    names: &[(String, String)],
    m: &Matrix,
    expect: impl Fn(&str, &str) -> bool,
) -> String {
    let mut out = format!("{:<10}", "src\\dst");
    for (n, _) in names {
        out.push_str(&format!("{n:<10}"));
    }
    out.push('\n');
    for (s, tag) in names {
        out.push_str(&format!("{:<10}", format!("{s}({tag})")));
        for (d, _) in names {
            let cell = if s == d {
                ".".to_string()
            } else {
                let c = &m[&(s.clone(), d.clone())];
                let mut l = c.label(s, d);
                if c.ok(d) != expect(s, d) {
                    l.push('!');
                }
                l
            };
            out.push_str(&format!("{cell:<10}"));
        }
        out.push('\n');
    }
    out
}

/// One echo of a [`Pinger`].
#[derive(Debug, Clone, Copy)]
pub struct Ping {
    /// When it was sent.
    pub sent: Instant,
    /// When its reply came, if it did.
    pub replied: Option<Instant>,
}

/// What a [`Pinger`] saw in a window of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loss {
    /// Echoes sent in the window (and old enough to have been answered).
    pub sent: usize,
    /// Of those, never answered.
    pub lost: usize,
}

impl Loss {
    /// Lost as a percentage of sent.
    pub fn percent(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            100.0 * self.lost as f64 / self.sent as f64
        }
    }
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} lost ({:.1} %)",
            self.lost,
            self.sent,
            self.percent()
        )
    }
}

/// A continuous ping from a VM namespace (one echo every `interval`), run
/// by a thread until stopped or dropped.
pub struct Pinger {
    log: Arc<Mutex<Vec<Ping>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// How long an echo may take to be answered.
    pub timeout: Duration,
}

impl Pinger {
    /// Starts pinging `dst` from `ns`.
    pub fn start(ns: &Netns, dst: Ipv4Addr, interval: Duration) -> Result<Pinger> {
        let sock = icmp_socket(ns)?;
        sock.set_read_timeout(Some(Duration::from_millis(5)))
            .map_err(|e| LabError::Io {
                what: "raw socket timeout".into(),
                source: e,
            })?;
        let log: Arc<Mutex<Vec<Ping>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let id = (std::process::id() as u16) ^ u16::from(dst.octets()[3]).rotate_left(8);
        let thread = std::thread::spawn({
            let (log, stop) = (log.clone(), stop.clone());
            move || {
                let to = SocketAddr::V4(SocketAddrV4::new(dst, 0));
                let mut next = Instant::now();
                let mut buf = [0u8; 2048];
                let mut seq: u16 = 0;
                while !stop.load(Ordering::Relaxed) {
                    let now = Instant::now();
                    if now >= next {
                        log.lock().expect("ping log").push(Ping {
                            sent: now,
                            replied: None,
                        });
                        let _ = sock.send_to(&echo(8, id, seq, b"weft-lab ping"), to);
                        seq = seq.wrapping_add(1);
                        next += interval;
                    }
                    if let Ok(n) = sock.recv(&mut buf)
                        && let Some(e) = parse_echo(&buf[..n])
                        && e.kind == 0
                        && e.id == id
                        && e.src == dst
                    {
                        let now = Instant::now();
                        let mut l = log.lock().expect("ping log");
                        // Sequence numbers wrap after 65536 echoes; match the latest one.
                        let len = l.len();
                        if let Some(p) = (0..len)
                            .rev()
                            .find(|k| (*k as u16) == e.seq)
                            .map(|k| &mut l[k])
                            && p.replied.is_none()
                        {
                            p.replied = Some(now);
                        }
                    }
                }
            }
        });
        Ok(Pinger {
            log,
            stop,
            thread: Some(thread),
            timeout: Duration::from_secs(1),
        })
    }

    /// Loss among echoes sent in `[from, to)` (answered within `timeout`).
    pub fn loss(&self, from: Instant, to: Instant) -> Loss {
        let l = self.log.lock().expect("ping log");
        let horizon = Instant::now().checked_sub(self.timeout);
        let mut out = Loss { sent: 0, lost: 0 };
        for p in l.iter().filter(|p| p.sent >= from && p.sent < to) {
            let answered = p
                .replied
                .is_some_and(|r| r.duration_since(p.sent) <= self.timeout);
            // Too recent to judge: not counted.
            if !answered && horizon.is_some_and(|h| p.sent > h) {
                continue;
            }
            out.sent += 1;
            if !answered {
                out.lost += 1;
            }
        }
        out
    }

    /// The longest run of consecutive unanswered echoes in `[from, to)`, as time.
    pub fn longest_gap(&self, from: Instant, to: Instant) -> Duration {
        let l = self.log.lock().expect("ping log");
        let mut gap_start: Option<Instant> = None;
        let mut longest = Duration::ZERO;
        for p in l.iter().filter(|p| p.sent >= from && p.sent < to) {
            let answered = p
                .replied
                .is_some_and(|r| r.duration_since(p.sent) <= self.timeout);
            match (answered, gap_start) {
                (false, None) => gap_start = Some(p.sent),
                (true, Some(s)) => {
                    longest = longest.max(p.sent.duration_since(s));
                    gap_start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = gap_start {
            longest = longest.max(to.min(Instant::now()).duration_since(s));
        }
        longest
    }

    /// Echoes sent so far.
    pub fn sent(&self) -> usize {
        self.log.lock().expect("ping log").len()
    }

    /// Stops the thread.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Pinger {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP server in a namespace that writes `reply` to every connection and
/// closes it; runs until dropped.
pub struct TcpServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    accepted: Arc<Mutex<usize>>,
}

impl TcpServer {
    /// Listens on `addr` in `ns`.
    pub fn start(ns: &Netns, addr: SocketAddr, reply: &str) -> Result<TcpServer> {
        let l = ns
            .run(move || TcpListener::bind(addr))?
            .map_err(|e| LabError::Io {
                what: format!("listening on {addr} in {}", ns.name()),
                source: e,
            })?;
        l.set_nonblocking(true).map_err(|e| LabError::Io {
            what: "non-blocking listener".into(),
            source: e,
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let accepted: Arc<Mutex<usize>> = Arc::default();
        let reply = reply.as_bytes().to_vec();
        let thread = std::thread::spawn({
            let (stop, accepted) = (stop.clone(), accepted.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    match l.accept() {
                        Ok((mut s, _)) => {
                            *accepted.lock().expect("counter") += 1;
                            let _ = s.set_nonblocking(false);
                            let _ = s.write_all(&reply);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            }
        });
        Ok(TcpServer {
            stop,
            thread: Some(thread),
            accepted,
        })
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        *self.accepted.lock().expect("counter")
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects from `ns` to `addr`, reads what the server writes until it
/// closes, and returns it; the error kind says how it failed
/// (`ConnectionRefused` for a RST, `TimedOut` for silence).
pub fn tcp_request(
    ns: &Netns,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<std::result::Result<String, ErrorKind>> {
    ns.run(move || {
        let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.kind())?;
        s.set_read_timeout(Some(timeout)).map_err(|e| e.kind())?;
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(|e| e.kind())?;
        Ok(out)
    })
}

/// A UDP server in a namespace that answers every datagram with `reply`
/// followed by the datagram; runs until dropped.
pub struct UdpServer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl UdpServer {
    /// Binds `addr` in `ns`.
    pub fn start(ns: &Netns, addr: SocketAddr, reply: &str) -> Result<UdpServer> {
        let s = ns
            .run(move || UdpSocket::bind(addr))?
            .map_err(|e| LabError::Io {
                what: format!("binding {addr} in {}", ns.name()),
                source: e,
            })?;
        let _ = s.set_read_timeout(Some(Duration::from_millis(20)));
        let stop = Arc::new(AtomicBool::new(false));
        let reply = reply.as_bytes().to_vec();
        let thread = std::thread::spawn({
            let stop = stop.clone();
            move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = s.recv_from(&mut buf) {
                        let mut out = reply.clone();
                        out.extend_from_slice(&buf[..n]);
                        let _ = s.send_to(&out, from);
                    }
                }
            }
        });
        Ok(UdpServer {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for UdpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends `payload` from `ns` to `addr` over UDP up to 3 times and returns
/// the first answer (`None` if none came within `timeout` per try).
pub fn udp_request(
    ns: &Netns,
    addr: SocketAddr,
    payload: &[u8],
    timeout: Duration,
) -> Result<Option<Vec<u8>>> {
    let payload = payload.to_vec();
    ns.run(move || {
        let s = UdpSocket::bind("0.0.0.0:0").ok()?;
        s.set_read_timeout(Some(timeout)).ok()?;
        let mut buf = vec![0u8; 65536];
        for _ in 0..3 {
            s.send_to(&payload, addr).ok()?;
            if let Ok(n) = s.recv(&mut buf) {
                return Some(buf[..n].to_vec());
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_round_trips_through_the_parser() {
        let m = echo(8, 0x1234, 7, b"abc");
        assert_eq!(checksum(&m), 0, "a correct checksum sums to zero");
        let mut pkt = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 10, 1, 1, 5, 10, 1, 1, 6,
        ];
        pkt.extend_from_slice(&m);
        assert_eq!(
            parse_echo(&pkt),
            Some(Echo {
                kind: 8,
                src: Ipv4Addr::new(10, 1, 1, 5),
                id: 0x1234,
                seq: 7
            })
        );
        pkt[9] = 17;
        assert_eq!(parse_echo(&pkt), None, "not ICMP");
    }

    #[test]
    fn cells_name_who_received() {
        let c = Cell {
            received_by: ["G3".to_string()].into(),
            replied: true,
        };
        assert!(c.ok("G3"));
        assert!(!c.ok("G6"));
        assert_eq!(c.label("G1", "G6"), "--(G3)");
        let me = Cell {
            received_by: ["G1".to_string()].into(),
            replied: true,
        };
        assert_eq!(me.label("G1", "G5"), "--(self)");
        let none = Cell {
            received_by: BTreeSet::new(),
            replied: false,
        };
        assert_eq!(none.label("G5", "G2"), "--");
    }
}
