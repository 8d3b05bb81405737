//! In-memory harness: two sessions (or a session and a scripted raw peer)
//! joined by a virtual TCP connection, on virtual time.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use weft_bgp::neighbor::{Action, Event, Neighbor, NeighborConfig, Offer, State};
use weft_bgp::packet::{self, Message, Notification};
use weft_bgp::rib::RibChange;
use weft_bgp::{ImportedRoute, RouteKey, VpnRoute};

pub fn cfg(
    local_as: u32,
    id: [u8; 4],
    remote_as: u32,
    remote: [u8; 4],
    passive: bool,
) -> NeighborConfig {
    NeighborConfig {
        local_as,
        router_id: Ipv4Addr::from(id),
        remote_addr: IpAddr::V4(Ipv4Addr::from(remote)),
        remote_as,
        hold_time: 9,
        connect_retry: Duration::from_secs(5),
        passive,
        stale_routes_time: Duration::from_secs(60),
    }
}

/// One side's view: the session, what it imported, what it sent.
pub struct Side {
    pub n: Neighbor,
    pub routes: HashMap<RouteKey, Arc<ImportedRoute>>,
    pub sent_notifications: Vec<Notification>,
    pub closes: usize,
}

impl Side {
    pub fn new(n: Neighbor) -> Self {
        Self {
            n,
            routes: HashMap::new(),
            sent_notifications: Vec::new(),
            closes: 0,
        }
    }
}

/// Two sessions and the connection between them. `a` connects, `b` is
/// passive.
pub struct Pair {
    pub a: Side,
    pub b: Side,
    pub now: Instant,
    pub connected: bool,
    /// Drop what `a` sends (a dead peer that keeps its socket open).
    pub blackhole_a: bool,
}

enum Out {
    Bytes(Vec<u8>),
    Close,
    Connect,
}

fn drain(side: &mut Side) -> Vec<Out> {
    let mut out = Vec::new();
    while let Some(a) = side.n.poll_action() {
        match a {
            Action::Send(b) => {
                // Record the NOTIFICATIONs a side sends, for assertions.
                let mut rest = &b[..];
                while let Ok(Some(len)) = packet::frame(rest) {
                    if rest[18] == 3 {
                        side.sent_notifications
                            .push(Notification::parse_body(&rest[19..len]).unwrap());
                    }
                    rest = &rest[len..];
                }
                out.push(Out::Bytes(b));
            }
            Action::Close => {
                side.closes += 1;
                out.push(Out::Close);
            }
            Action::Connect => out.push(Out::Connect),
            Action::Routes(changes) => {
                for c in changes {
                    match c {
                        RibChange::Learned(r) => {
                            side.routes.insert(r.key(), r);
                        }
                        RibChange::Withdrawn(k) => {
                            side.routes.remove(&k);
                        }
                    }
                }
            }
            Action::StartTimer(..) | Action::StopTimer(..) | Action::StateChange { .. } => {}
        }
    }
    out
}

impl Pair {
    pub fn new(a: NeighborConfig, b: NeighborConfig) -> Self {
        let mut p = Self {
            a: Side::new(Neighbor::new(a)),
            b: Side::new(Neighbor::new(b)),
            now: Instant::now(),
            connected: false,
            blackhole_a: false,
        };
        let now = p.now;
        p.b.n.handle(now, Event::Start);
        p.a.n.handle(now, Event::Start);
        p.pump();
        p
    }

    /// Delivers queued actions until both sides are quiet.
    pub fn pump(&mut self) {
        for _ in 0..10_000 {
            let now = self.now;
            let from_a = drain(&mut self.a);
            let from_b = drain(&mut self.b);
            if from_a.is_empty() && from_b.is_empty() {
                return;
            }
            for o in from_a {
                match o {
                    Out::Connect => {
                        if !self.connected && self.b.n.offer(true) == Offer::Accept {
                            self.connected = true;
                            self.b.n.handle(now, Event::Connected);
                            self.a.n.handle(now, Event::Connected);
                        } else {
                            self.a.n.handle(now, Event::ConnectFailed);
                        }
                    }
                    Out::Bytes(b) if self.connected && !self.blackhole_a => {
                        self.b.n.handle(now, Event::Data(&b));
                    }
                    Out::Bytes(_) => {}
                    Out::Close => {
                        if self.connected {
                            self.connected = false;
                            self.b.n.handle(now, Event::Closed);
                        }
                    }
                }
            }
            for o in from_b {
                match o {
                    Out::Connect => self.b.n.handle(now, Event::ConnectFailed),
                    Out::Bytes(b) if self.connected => self.a.n.handle(now, Event::Data(&b)),
                    Out::Bytes(_) => {}
                    Out::Close => {
                        if self.connected {
                            self.connected = false;
                            self.a.n.handle(now, Event::Closed);
                        }
                    }
                }
            }
        }
        panic!("sessions did not settle");
    }

    /// Moves virtual time forward, firing timers in order.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let next = [self.a.n.poll_timeout(), self.b.n.poll_timeout()]
                .into_iter()
                .flatten()
                .map(|(_, at)| at)
                .filter(|at| *at <= end)
                .min();
            let Some(at) = next else { break };
            self.now = self.now.max(at);
            let now = self.now;
            self.a.n.handle_timeout(now);
            self.b.n.handle_timeout(now);
            self.pump();
        }
        self.now = end;
    }

    pub fn both(&self, s: State) -> bool {
        self.a.n.state() == s && self.b.n.state() == s
    }

    pub fn export_a(&mut self, routes: Vec<VpnRoute>) {
        let set = weft_bgp::rib::build_export_set(routes).unwrap();
        let now = self.now;
        self.a.n.handle(now, Event::Exports(Arc::new(set)));
        self.pump();
    }
}

/// A VPNv4 host route for index `i` (10.x.y.z/32, label 1000+i).
pub fn host_route(i: u32) -> VpnRoute {
    let addr = Ipv4Addr::from(0x0a00_0000 + i);
    let mut r = VpnRoute::vpnv4(
        "65000:1".parse().unwrap(),
        ipnet::Ipv4Net::new(addr, 32).unwrap(),
        1000 + (i % 1000),
        "192.0.2.10".parse().unwrap(),
        vec!["65000:1".parse().unwrap()],
    );
    r.encap = Some(weft_bgp::Encapsulation::Vxlan);
    r
}

/// Decodes every message in a byte buffer.
pub fn messages(mut bytes: &[u8]) -> Vec<Message> {
    let mut ctx = packet::parsing_context(true);
    let mut out = Vec::new();
    while let Ok(Some(len)) = packet::frame(bytes) {
        out.push(packet::decode(&bytes[..len], &mut ctx).unwrap());
        bytes = &bytes[len..];
    }
    out
}
