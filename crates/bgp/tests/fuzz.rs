//! Property tests of the decoder path: random and mutated bytes never panic
//! and always end in either a valid message or a NOTIFICATION and a close;
//! what we encode decodes to the same routes.

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::{Side, cfg, messages};
use ipnet::{IpNet, Ipv4Net};
use netgauze_bgp_pkt::BgpMessage;
use proptest::prelude::*;
use weft_bgp::neighbor::{Action, Event, Neighbor, State};
use weft_bgp::packet::update::{
    SessionParams, decode_update, encode_announcements, encode_withdrawals,
};
use weft_bgp::packet::{self, Message};
use weft_bgp::{Encapsulation, Family, RouteDistinguisher, RouteKind, RouteTarget, VpnRoute};

fn established() -> Side {
    let mut s = Side::new(Neighbor::new(cfg(
        65000,
        [192, 0, 2, 1],
        65001,
        [192, 0, 2, 2],
        true,
    )));
    let now = Instant::now();
    s.n.handle(now, Event::Start);
    s.n.handle(now, Event::Connected);
    let open = packet::encode(&weft_bgp::packet::open::build_open(
        65001,
        90,
        "192.0.2.2".parse().unwrap(),
    ))
    .unwrap();
    s.n.handle(now, Event::Data(&open));
    s.n.handle(now, Event::Data(&packet::keepalive()));
    assert_eq!(s.n.state(), State::Established);
    while s.n.poll_action().is_some() {}
    s
}

fn feed(s: &mut Side, bytes: &[u8]) -> (Vec<u8>, bool) {
    s.n.handle(Instant::now(), Event::Data(bytes));
    let mut out = Vec::new();
    let mut closed = false;
    while let Some(a) = s.n.poll_action() {
        match a {
            Action::Send(b) => out.extend(b),
            Action::Close => closed = true,
            _ => {}
        }
    }
    (out, closed)
}

fn route_strategy() -> impl Strategy<Value = VpnRoute> {
    (
        any::<u32>(),
        0u8..=32,
        0u32..=0xF_FFFF,
        any::<[u8; 4]>(),
        prop::collection::vec((any::<u16>(), any::<u32>()), 0..4),
        prop::option::of(Just(Encapsulation::Vxlan)),
        any::<bool>(),
        any::<(u16, u32)>(),
    )
        .prop_map(|(addr, len, label, nh, rts, encap, evpn, (asn, num))| {
            let prefix = Ipv4Net::new(addr.into(), len).unwrap().trunc();
            let mut r = VpnRoute::vpnv4(
                RouteDistinguisher::As2 { asn, number: num },
                prefix,
                label,
                std::net::IpAddr::from(nh),
                rts.into_iter()
                    .map(|(asn, number)| RouteTarget::As2 { asn, number })
                    .collect(),
            );
            r.encap = encap;
            if evpn {
                r.kind = RouteKind::EvpnPrefix { eth_tag: 0 };
                r.router_mac = Some([2, 0, 0, 0, 0, 1]);
            }
            r
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let mut ctx = packet::parsing_context(true);
        if let Ok(Some(len)) = packet::frame(&bytes) {
            let _ = packet::decode(&bytes[..len], &mut ctx);
        }
    }

    #[test]
    fn random_bodies_behind_a_valid_header_never_panic_a_session(
        msg_type in 1u8..=5,
        body in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut s = established();
        let mut m = vec![0xff; 16];
        m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
        m.push(msg_type);
        m.extend(&body);
        let (out, closed) = feed(&mut s, &m);
        if s.n.state() == State::Established {
            prop_assert!(!closed);
        } else {
            // Down: either we sent a NOTIFICATION, or the peer's was read.
            prop_assert!(closed);
            let sent = messages(&out);
            prop_assert!(msg_type == 3 || matches!(sent.last(), Some(Message::Notification(_))));
        }
    }

    #[test]
    fn mutated_updates_never_panic_a_session(
        routes in prop::collection::vec(route_strategy(), 1..20),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let routes: Vec<_> = routes.into_iter().map(Arc::new).collect();
        let mut bytes = Vec::new();
        let params = SessionParams { local_as: 65001, ebgp: true, asn4: true };
        encode_announcements(routes.iter(), params, &[Family::Vpnv4, Family::Evpn], &mut bytes);
        for (i, v) in flips {
            let i = i.index(bytes.len());
            bytes[i] ^= v;
        }
        let mut s = established();
        let (_, closed) = feed(&mut s, &bytes);
        prop_assert_eq!(closed, s.n.state() != State::Established);
    }

    #[test]
    fn encode_then_decode_gives_back_the_routes(routes in prop::collection::vec(route_strategy(), 1..50)) {
        let mut by_key = std::collections::BTreeMap::new();
        for r in routes {
            // Multicast ranges are refused by key(); the rest must roundtrip.
            if let Ok(k) = r.key() {
                by_key.insert(k, Arc::new(r));
            }
        }
        let mut bytes = Vec::new();
        let params = SessionParams { local_as: 65001, ebgp: true, asn4: true };
        encode_announcements(by_key.values(), params, &[Family::Vpnv4, Family::Evpn], &mut bytes);
        encode_withdrawals(by_key.keys().take(3), &[Family::Vpnv4, Family::Evpn], &mut bytes);
        let mut got = std::collections::BTreeMap::new();
        let mut withdrawn = Vec::new();
        for m in messages(&bytes) {
            let Message::Bgp(BgpMessage::Update(u)) = m else { panic!("not an update") };
            let d = decode_update(&u, 65000, 65001).unwrap();
            if !d.announced.is_empty() { prop_assert_eq!(&d.as_path, &vec![65001]); }
            for mut r in d.announced {
                r.route_targets.sort();
                got.insert(r.key().unwrap(), r);
            }
            withdrawn.extend(d.withdrawn);
        }
        prop_assert_eq!(got.len(), by_key.len());
        for (k, r) in &by_key {
            let mut want = (**r).clone();
            want.route_targets.sort();
            want.route_targets.dedup();
            if let IpNet::V4(p) = want.prefix { want.prefix = IpNet::V4(p.trunc()); }
            prop_assert_eq!(&got[k], &want);
        }
        let expect: Vec<_> = by_key.keys().take(3).copied().collect();
        withdrawn.sort();
        let mut expect_sorted = expect.clone();
        expect_sorted.sort();
        prop_assert_eq!(withdrawn, expect_sorted);
    }
}
