//! DHCPv4 server (RFC 2131) for one port at a time: the address is fixed
//! by intent, so the server answers DISCOVER with an OFFER and REQUEST with
//! an ACK of that address (a NAK for any other), with the subnet's mask,
//! gateway, DNS servers, MTU, classless static routes (RFC 3442, which then
//! also carry the default route), host name and domain.

use std::net::{IpAddr, Ipv4Addr};

use dhcproto::v4::{DhcpOption, DhcpOptions, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use weft_compiler::ServiceConfig;
use weft_pipeline::MacAddr;

use crate::{LEASE_SECS, Request, udp_frame};

fn mask(prefix_len: u8) -> Ipv4Addr {
    let bits = if prefix_len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix_len.min(32)))
    };
    Ipv4Addr::from(bits)
}

/// Answers a DHCP request from the configured port, or `None`.
pub fn answer(cfg: &ServiceConfig, req: &Request<'_>) -> Option<Vec<u8>> {
    let ServiceConfig::Dhcp4 {
        mac,
        ip,
        prefix_len,
        gateway,
        server,
        server_mac,
        dns,
        mtu,
        routes,
        hostname,
        domain,
        ..
    } = cfg
    else {
        return None;
    };
    if req.udp != Some((68, 67)) {
        return None;
    }
    let msg = Message::decode(&mut Decoder::new(req.payload)).ok()?;
    if msg.opcode() != Opcode::BootRequest || msg.chaddr().get(..6)? != mac.0 {
        return None;
    }
    let kind = match msg.opts().msg_type()? {
        MessageType::Discover => MessageType::Offer,
        MessageType::Request => {
            let asked = match msg.opts().get(OptionCode::RequestedIpAddress) {
                Some(DhcpOption::RequestedIpAddress(a)) => Some(*a),
                _ => None,
            }
            .or_else(|| (!msg.ciaddr().is_unspecified()).then_some(msg.ciaddr()));
            if asked.is_some_and(|a| a != *ip) {
                MessageType::Nak
            } else {
                MessageType::Ack
            }
        }
        MessageType::Inform => MessageType::Ack,
        // Release and decline need no answer: the address stays the port's.
        _ => return None,
    };
    let mut reply = Message::default();
    reply
        .set_opcode(Opcode::BootReply)
        .set_xid(msg.xid())
        .set_flags(msg.flags())
        .set_chaddr(&mac.0)
        .set_giaddr(msg.giaddr());
    let mut opts = DhcpOptions::new();
    opts.insert(DhcpOption::MessageType(kind));
    opts.insert(DhcpOption::ServerIdentifier(*server));
    if kind != MessageType::Nak {
        if msg.opts().msg_type() != Some(MessageType::Inform) {
            reply.set_yiaddr(*ip);
            opts.insert(DhcpOption::AddressLeaseTime(LEASE_SECS));
            opts.insert(DhcpOption::Renewal(LEASE_SECS / 2));
            opts.insert(DhcpOption::Rebinding(LEASE_SECS * 7 / 8));
        }
        opts.insert(DhcpOption::SubnetMask(mask(*prefix_len)));
        if let Some(g) = gateway {
            opts.insert(DhcpOption::Router(vec![*g]));
        }
        if !dns.is_empty() {
            opts.insert(DhcpOption::DomainNameServer(dns.clone()));
        }
        opts.insert(DhcpOption::InterfaceMtu(*mtu));
        if !routes.is_empty() {
            // With option 121 clients ignore option 3: repeat the default route.
            let mut all = routes.clone();
            if let Some(g) = gateway {
                all.push(("0.0.0.0/0".parse().expect("valid"), *g));
            }
            opts.insert(DhcpOption::ClasslessStaticRoute(all));
        }
        if !hostname.is_empty() {
            opts.insert(DhcpOption::Hostname(hostname.clone()));
        }
        if !domain.is_empty() {
            opts.insert(DhcpOption::DomainName(domain.clone()));
        }
    }
    reply.set_opts(opts);
    let mut payload = Vec::with_capacity(300);
    reply.encode(&mut Encoder::new(&mut payload)).ok()?;
    // Clients without an address yet get broadcast IP; the MAC is theirs.
    let broadcast = msg.flags().broadcast() || msg.ciaddr().is_unspecified();
    let (dst_ip, dst_mac) = if broadcast || kind == MessageType::Nak {
        (
            Ipv4Addr::BROADCAST,
            if msg.flags().broadcast() {
                MacAddr::BROADCAST
            } else {
                *mac
            },
        )
    } else {
        (msg.ciaddr(), *mac)
    };
    Some(udp_frame(
        *server_mac,
        dst_mac,
        IpAddr::V4(*server),
        IpAddr::V4(dst_ip),
        67,
        68,
        payload,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    fn cfg() -> ServiceConfig {
        ServiceConfig::Dhcp4 {
            context: "sp-1".into(),
            mac: MacAddr([0xfa, 0x16, 0x3e, 0, 0, 1]),
            ip: "10.1.1.5".parse().unwrap(),
            prefix_len: 24,
            gateway: Some("10.1.1.1".parse().unwrap()),
            server: "10.1.1.1".parse().unwrap(),
            server_mac: MacAddr([0x02, 0x57, 0, 0, 0, 1]),
            dns: vec!["10.1.1.1".parse().unwrap()],
            mtu: 1450,
            routes: vec![(
                "192.0.2.0/24".parse().unwrap(),
                "10.1.1.254".parse().unwrap(),
            )],
            hostname: "g1".into(),
            domain: "net1.weft.internal".into(),
        }
    }

    fn request(kind: MessageType, requested: Option<Ipv4Addr>, mac: [u8; 6]) -> Vec<u8> {
        let mut m = Message::default();
        m.set_opcode(Opcode::BootRequest)
            .set_xid(0x1234_5678)
            .set_chaddr(&mac);
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        if let Some(r) = requested {
            m.opts_mut().insert(DhcpOption::RequestedIpAddress(r));
        }
        let mut payload = Vec::new();
        m.encode(&mut Encoder::new(&mut payload)).unwrap();
        udp_frame(
            MacAddr(mac),
            MacAddr::BROADCAST,
            "0.0.0.0".parse().unwrap(),
            "255.255.255.255".parse().unwrap(),
            68,
            67,
            payload,
        )
    }

    fn decode(frame: &[u8]) -> Message {
        let r = parse(frame).unwrap();
        assert_eq!(r.udp, Some((67, 68)));
        Message::decode(&mut Decoder::new(r.payload)).unwrap()
    }

    #[test]
    fn discover_gets_an_offer_with_every_option() {
        let f = request(MessageType::Discover, None, [0xfa, 0x16, 0x3e, 0, 0, 1]);
        let reply = answer(&cfg(), &parse(&f).unwrap()).unwrap();
        let m = decode(&reply);
        assert_eq!(m.opts().msg_type(), Some(MessageType::Offer));
        assert_eq!(m.xid(), 0x1234_5678);
        assert_eq!(m.yiaddr(), "10.1.1.5".parse::<Ipv4Addr>().unwrap());
        let o = m.opts();
        assert_eq!(
            o.get(OptionCode::SubnetMask),
            Some(&DhcpOption::SubnetMask("255.255.255.0".parse().unwrap()))
        );
        assert_eq!(
            o.get(OptionCode::Router),
            Some(&DhcpOption::Router(vec!["10.1.1.1".parse().unwrap()]))
        );
        assert_eq!(
            o.get(OptionCode::InterfaceMtu),
            Some(&DhcpOption::InterfaceMtu(1450))
        );
        match o.get(OptionCode::ClasslessStaticRoute) {
            Some(DhcpOption::ClasslessStaticRoute(r)) => {
                assert_eq!(r.len(), 2, "host route plus the default route: {r:?}");
            }
            other => panic!("no classless routes: {other:?}"),
        }
        assert_eq!(
            o.get(OptionCode::Hostname),
            Some(&DhcpOption::Hostname("g1".into()))
        );
        // Sent from the gateway to the broadcast address, to the client's MAC.
        assert_eq!(&reply[0..6], &[0xfa, 0x16, 0x3e, 0, 0, 1]);
        let p = parse(&reply).unwrap();
        assert_eq!(p.ip_src, "10.1.1.1".parse::<IpAddr>().unwrap());
        assert_eq!(p.ip_dst, "255.255.255.255".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn request_for_the_right_address_is_acked_any_other_naked() {
        let mac = [0xfa, 0x16, 0x3e, 0, 0, 1];
        let ok = request(MessageType::Request, Some("10.1.1.5".parse().unwrap()), mac);
        let m = decode(&answer(&cfg(), &parse(&ok).unwrap()).unwrap());
        assert_eq!(m.opts().msg_type(), Some(MessageType::Ack));
        let bad = request(MessageType::Request, Some("10.1.1.9".parse().unwrap()), mac);
        let m = decode(&answer(&cfg(), &parse(&bad).unwrap()).unwrap());
        assert_eq!(m.opts().msg_type(), Some(MessageType::Nak));
        assert_eq!(m.yiaddr(), Ipv4Addr::UNSPECIFIED);
    }

    #[test]
    fn strangers_and_garbage_get_nothing() {
        let other = request(MessageType::Discover, None, [0xfa, 0x16, 0x3e, 0, 0, 9]);
        assert!(answer(&cfg(), &parse(&other).unwrap()).is_none());
        let release = request(MessageType::Release, None, [0xfa, 0x16, 0x3e, 0, 0, 1]);
        assert!(answer(&cfg(), &parse(&release).unwrap()).is_none());
        let mut junk = request(MessageType::Discover, None, [0xfa, 0x16, 0x3e, 0, 0, 1]);
        let n = junk.len();
        junk.truncate(n - 200);
        let _ = parse(&junk).and_then(|r| answer(&cfg(), &r));
    }
}
