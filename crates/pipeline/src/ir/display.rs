//! OVN-like readable rendering of matches, actions, flows and programs, used by traces,
//! documentation and golden tests.
//!
//! Matches: conditions joined by ` && ` in a fixed field order, e.g.
//! `inport == "p1" && ip4.dst == 10.1.1.0/24 && tcp.dst == 80 && ct.est && !ct.new`;
//! the empty match prints as `1`. Implied prerequisites are not repeated (`ip4.dst == ...`
//! already says `ip4`). Actions: each ends with `;`, e.g. `ct_commit(zone=1); output("p1");`.

use std::fmt::{self, Display, Formatter, Write as _};

use ipnet::IpNet;

use super::*;

/// `tcp.flags` mask that covers every flag bit.
const TCP_FLAGS_ALL: u16 = 0x0fff;

fn net(f: &mut Formatter<'_>, n: &IpNet) -> fmt::Result {
    if n.prefix_len() == n.max_prefix_len() {
        write!(f, "{}", n.addr())
    } else {
        write!(f, "{}/{}", n.network(), n.prefix_len())
    }
}

fn range<T: Display + PartialEq + Copy>(
    f: &mut Formatter<'_>,
    name: &str,
    r: &ValueRange<T>,
    min: T,
    max: T,
) -> fmt::Result {
    if r.lo == r.hi {
        write!(f, "{name} == {}", r.lo)
    } else if r.lo == min {
        write!(f, "{name} <= {}", r.hi)
    } else if r.hi == max {
        write!(f, "{name} >= {}", r.lo)
    } else {
        write!(f, "{name} >= {} && {name} <= {}", r.lo, r.hi)
    }
}

/// Renders TCP flag bits as `syn|ack`, or hex when unnamed bits are set.
pub fn tcp_flag_names(bits: u16) -> String {
    if bits == 0 {
        return "0".to_string();
    }
    let named: u16 = tcp_flags::NAMES.iter().map(|(_, b)| b).sum();
    if bits & !named != 0 {
        return format!("{bits:#05x}");
    }
    let mut s = String::new();
    for (name, bit) in tcp_flags::NAMES {
        if bits & bit != 0 {
            if !s.is_empty() {
                s.push('|');
            }
            s.push_str(name);
        }
    }
    s
}

impl Match {
    fn family_prefix(&self, m: &IpMatch) -> &'static str {
        match m {
            IpMatch::Prefix(IpNet::V4(_)) => "ip4",
            IpMatch::Prefix(IpNet::V6(_)) => "ip6",
            IpMatch::Set(_) => match self.eth_type {
                Some(ethertype::IPV4) => "ip4",
                Some(ethertype::IPV6) => "ip6",
                _ => "ip",
            },
        }
    }

    fn l4_name(&self) -> &'static str {
        match self.ip_proto {
            Some(ip_proto::TCP) => "tcp",
            Some(ip_proto::UDP) => "udp",
            Some(ip_proto::SCTP) => "sctp",
            _ => "l4",
        }
    }

    /// True when another printed condition already implies `eth.type`.
    fn eth_type_implied(&self) -> bool {
        let v4 = |m: &Option<IpMatch>| matches!(m, Some(IpMatch::Prefix(IpNet::V4(_))));
        let v6 = |m: &Option<IpMatch>| matches!(m, Some(IpMatch::Prefix(IpNet::V6(_))));
        match self.eth_type {
            Some(ethertype::IPV4) => {
                v4(&self.ip_src) || v4(&self.ip_dst) || self.ip_proto == Some(ip_proto::ICMP)
            }
            Some(ethertype::IPV6) => {
                v6(&self.ip_src)
                    || v6(&self.ip_dst)
                    || self.ip_proto == Some(ip_proto::ICMPV6)
                    || self.nd_target.is_some()
            }
            Some(ethertype::ARP) => {
                self.arp_op.is_some()
                    || self.arp_spa.is_some()
                    || self.arp_tpa.is_some()
                    || self.arp_sha.is_some()
            }
            _ => false,
        }
    }
}

impl Display for Match {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let mut first = true;
        // Writes the ` && ` separator before every condition but the first.
        let mut sep = |f: &mut Formatter<'_>| -> fmt::Result {
            if !first {
                f.write_str(" && ")?;
            }
            first = false;
            Ok(())
        };
        if let Some(p) = &self.in_port {
            sep(f)?;
            write!(f, "inport == {p:?}")?;
        }
        if let Some(p) = &self.out_port {
            sep(f)?;
            write!(f, "outport == {p:?}")?;
        }
        if let Some(v) = &self.vlan {
            sep(f)?;
            match v {
                VlanMatch::Untagged => f.write_str("!vlan.present")?,
                VlanMatch::Vid(id) => write!(f, "vlan.vid == {id}")?,
            }
        }
        for (field, m) in [("src", &self.eth_src), ("dst", &self.eth_dst)] {
            if let Some(m) = m {
                sep(f)?;
                match (m, field) {
                    (EthMatch::Exact(mac), _) => write!(f, "eth.{field} == {mac}")?,
                    (EthMatch::Broadcast, "dst") => f.write_str("eth.bcast")?,
                    (EthMatch::Multicast, "dst") => f.write_str("eth.mcast")?,
                    (EthMatch::Unicast, "dst") => f.write_str("!eth.mcast")?,
                    (EthMatch::Broadcast, _) => write!(f, "eth.{field} == {}", MacAddr::BROADCAST)?,
                    (EthMatch::Multicast, _) => write!(f, "eth.{field}[40]")?,
                    (EthMatch::Unicast, _) => write!(f, "!eth.{field}[40]")?,
                }
            }
        }
        if let Some(t) = self.eth_type
            && !self.eth_type_implied()
        {
            sep(f)?;
            match t {
                ethertype::IPV4 => f.write_str("ip4")?,
                ethertype::IPV6 => f.write_str("ip6")?,
                ethertype::ARP => f.write_str("arp")?,
                other => write!(f, "eth.type == {other:#06x}")?,
            }
        }
        if let Some(op) = self.arp_op {
            sep(f)?;
            write!(f, "arp.op == {op}")?;
        }
        if let Some(n) = &self.arp_spa {
            sep(f)?;
            f.write_str("arp.spa == ")?;
            net(f, &IpNet::V4(*n))?;
        }
        if let Some(n) = &self.arp_tpa {
            sep(f)?;
            f.write_str("arp.tpa == ")?;
            net(f, &IpNet::V4(*n))?;
        }
        if let Some(m) = &self.arp_sha {
            sep(f)?;
            write!(f, "arp.sha == {m}")?;
        }
        for (field, m) in [("src", &self.ip_src), ("dst", &self.ip_dst)] {
            if let Some(m) = m {
                sep(f)?;
                write!(f, "{}.{field} == ", self.family_prefix(m))?;
                match m {
                    IpMatch::Prefix(n) => net(f, n)?,
                    IpMatch::Set(s) => write!(f, "${s}")?,
                }
            }
        }
        if let Some(p) = self.ip_proto {
            sep(f)?;
            match p {
                ip_proto::TCP => f.write_str("tcp")?,
                ip_proto::UDP => f.write_str("udp")?,
                ip_proto::SCTP => f.write_str("sctp")?,
                ip_proto::ICMP => f.write_str("icmp4")?,
                ip_proto::ICMPV6 => f.write_str("icmp6")?,
                other => write!(f, "ip.proto == {other}")?,
            }
        }
        if let Some(r) = &self.ip_ttl {
            sep(f)?;
            range(f, "ip.ttl", r, 0, u8::MAX)?;
        }
        let l4 = self.l4_name();
        if let Some(r) = &self.l4_src {
            sep(f)?;
            range(f, &format!("{l4}.src"), r, 0, u16::MAX)?;
        }
        if let Some(r) = &self.l4_dst {
            sep(f)?;
            range(f, &format!("{l4}.dst"), r, 0, u16::MAX)?;
        }
        if let Some(m) = &self.tcp_flags {
            sep(f)?;
            if m.mask & TCP_FLAGS_ALL == TCP_FLAGS_ALL {
                write!(f, "tcp.flags == {}", tcp_flag_names(m.value))?;
            } else {
                let mut any = false;
                for (name, bit) in tcp_flags::NAMES {
                    if m.mask & bit != 0 {
                        if any {
                            f.write_str(" && ")?;
                        }
                        any = true;
                        let neg = if m.value & bit != 0 { "" } else { "!" };
                        write!(f, "{neg}tcp.flags.{name}")?;
                    }
                }
                let named: u16 = tcp_flags::NAMES.iter().map(|(_, b)| b).sum();
                if m.mask & !named != 0 || !any {
                    if any {
                        f.write_str(" && ")?;
                    }
                    write!(
                        f,
                        "tcp.flags & {:#05x} == {:#05x}",
                        m.mask & !named,
                        m.value & !named
                    )?;
                }
            }
        }
        let icmp = match self.ip_proto {
            Some(ip_proto::ICMP) => "icmp4",
            Some(ip_proto::ICMPV6) => "icmp6",
            _ => "icmp",
        };
        if let Some(t) = self.icmp_type {
            sep(f)?;
            write!(f, "{icmp}.type == {t}")?;
        }
        if let Some(c) = self.icmp_code {
            sep(f)?;
            write!(f, "{icmp}.code == {c}")?;
        }
        if let Some(t) = &self.nd_target {
            sep(f)?;
            write!(f, "nd.target == {t}")?;
        }
        if let Some(m) = &self.ct_state {
            let mut any = false;
            for (name, bit) in ct_state::NAMES {
                if m.mask & bit != 0 {
                    sep(f)?;
                    any = true;
                    let neg = if m.value & bit != 0 { "" } else { "!" };
                    write!(f, "{neg}ct.{name}")?;
                }
            }
            if !any {
                sep(f)?;
                write!(f, "ct_state & {:#04x} == {:#04x}", m.mask, m.value)?;
            }
        }
        for (r, m) in &self.regs {
            sep(f)?;
            if m.mask == u32::MAX {
                write!(f, "reg{r} == {:#x}", m.value)?;
            } else {
                write!(f, "reg{r} & {:#x} == {:#x}", m.mask, m.value)?;
            }
        }
        if let Some(n) = self.l3_len_gt {
            sep(f)?;
            write!(f, "l3.len > {n}")?;
        }
        if first {
            f.write_str("1")?;
        }
        Ok(())
    }
}

impl Display for IcmpErrorKind {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            IcmpErrorKind::TimeExceeded => f.write_str("time-exceeded"),
            IcmpErrorKind::PacketTooBig { mtu } => write!(f, "packet-too-big, mtu={mtu}"),
            IcmpErrorKind::Unreachable(u) => write!(f, "unreachable, code={u}"),
        }
    }
}

impl Display for Unreachable {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Unreachable::Net => "net",
            Unreachable::Host => "host",
            Unreachable::Port => "port",
            Unreachable::AdminProhibited => "admin-prohibited",
        })
    }
}

impl Display for Service {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::Dhcp4 => "dhcp4",
            Service::Dhcp6 => "dhcp6",
            Service::Dns => "dns",
            Service::RouterAdvert => "router-advert",
        })
    }
}

impl Display for Action {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Action::Next => f.write_str("next;"),
            Action::Goto { datapath, table } => write!(f, "goto({datapath:?}, {table:?});"),
            Action::SetInPort(p) => write!(f, "inport = {p:?};"),
            Action::SetOutPort(p) => write!(f, "outport = {p:?};"),
            Action::Output(p) => write!(f, "output({p:?});"),
            Action::OutputOutPort => f.write_str("output;"),
            Action::Tunnel { remote, vni } => write!(f, "tunnel({remote}, vni={vni});"),
            Action::Flood(g) => write!(f, "flood({g:?});"),
            Action::Ecmp(g) => write!(f, "ecmp({g:?});"),
            Action::SetEthSrc(m) => write!(f, "eth.src = {m};"),
            Action::SetEthDst(m) => write!(f, "eth.dst = {m};"),
            Action::DecTtl => f.write_str("ip.ttl--;"),
            Action::SetReg { reg, value, mask } => {
                if *mask == u32::MAX {
                    write!(f, "reg{reg} = {value:#x};")
                } else {
                    write!(f, "reg{reg} = {value:#x}/{mask:#x};")
                }
            }
            Action::PushVlan(v) => write!(f, "push_vlan({v});"),
            Action::PopVlan => f.write_str("pop_vlan;"),
            Action::CtLookup { zone } => write!(f, "ct_lookup(zone={zone});"),
            Action::CtCommit { zone } => write!(f, "ct_commit(zone={zone});"),
            Action::Drop => f.write_str("drop;"),
            Action::Reject => f.write_str("reject;"),
            Action::Log { rule } => write!(f, "log(rule={rule:?});"),
            Action::ArpReply { mac } => write!(f, "arp_reply({mac});"),
            Action::NdAdvert { mac, router } => {
                if *router {
                    write!(f, "nd_na({mac}, router);")
                } else {
                    write!(f, "nd_na({mac});")
                }
            }
            Action::LocalService { service, context } => {
                write!(f, "service({service}, {context:?});")
            }
            Action::IcmpError { error, src } => write!(f, "icmp_error({error}, src={src});"),
            Action::IcmpEchoReply => f.write_str("icmp_echo_reply;"),
        }
    }
}

/// Displays an action list as `a; b; c;` (the empty list as `drop;`, which is what it means).
pub struct Actions<'a>(pub &'a [Action]);

impl Display for Actions<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("drop;");
        }
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_char(' ')?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

impl Display for Origin {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if self.kind.is_empty() && self.id.is_empty() && self.detail.is_empty() {
            return f.write_str("(no origin)");
        }
        f.write_str(&self.kind)?;
        if !self.id.is_empty() {
            write!(f, " {}", self.id)?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

impl Display for Flow {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "priority={}, match=({}), actions=({}) [{}]",
            self.priority,
            self.r#match,
            Actions(&self.actions),
            self.origin
        )
    }
}

impl Display for DatapathKind {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DatapathKind::Switch => "switch",
            DatapathKind::Router => "router",
        })
    }
}

impl Display for PortLocation {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            PortLocation::Local { vif, vlans } if vlans.is_empty() => {
                write!(f, "local vif {vif:?} untagged")
            }
            PortLocation::Local { vif, vlans } => {
                let tags: Vec<String> = vlans.iter().map(u16::to_string).collect();
                write!(f, "local vif {vif:?} vlan {}", tags.join("."))
            }
            PortLocation::Remote { host, tunnel_ip } => {
                write!(f, "remote host {host:?} via {tunnel_ip}")
            }
            PortLocation::Internal => f.write_str("internal"),
        }
    }
}

/// Lists the whole program like `ovn-sbctl lflow-list`: datapaths, tables and flows in
/// priority order (highest first), then ports, groups, sets and tunnel entries.
impl Display for Program {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(f, "program for host {:?}", self.host)?;
        for dp in &self.datapaths {
            writeln!(f, "datapath {:?} ({}, vni {}):", dp.name, dp.kind, dp.vni)?;
            for (i, t) in dp.tables.iter().enumerate() {
                let mut flows: Vec<&Flow> = t.flows.iter().collect();
                flows.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.cmp(b)));
                for fl in flows {
                    writeln!(f, "  table={i} ({}), {fl}", t.name)?;
                }
            }
        }
        for p in &self.ports {
            writeln!(f, "port {:?} on {:?}: {}", p.name, p.datapath, p.location)?;
        }
        for g in &self.flood_groups {
            writeln!(f, "flood group {:?}: {:?}", g.name, g.ports)?;
        }
        for g in &self.ecmp_groups {
            write!(f, "ecmp group {:?}:", g.name)?;
            for m in &g.members {
                write!(f, " [weight {}: {}]", m.weight, Actions(&m.actions))?;
            }
            writeln!(f)?;
        }
        for s in &self.address_sets {
            let p: Vec<String> = s.prefixes.iter().map(IpNet::to_string).collect();
            writeln!(f, "address set ${}: {}", s.name, p.join(", "))?;
        }
        for e in &self.tunnel_entries {
            writeln!(
                f,
                "tunnel vni {} enters {:?} at {:?}",
                e.vni, e.datapath, e.table
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn match_display_is_ovn_like() {
        let m = Match::new()
            .in_port("p1")
            .ip4()
            .ip_dst("10.1.1.0/24".parse::<Ipv4Net>().unwrap())
            .tcp_dst(80)
            .ct(
                ct_state::EST | ct_state::TRK,
                ct_state::EST | ct_state::NEW | ct_state::TRK,
            );
        assert_eq!(
            m.to_string(),
            r#"inport == "p1" && ip4.dst == 10.1.1.0/24 && tcp && tcp.dst == 80 && !ct.new && ct.est && ct.trk"#
        );
        assert_eq!(Match::new().to_string(), "1");
        let m = Match::new()
            .ip4()
            .ip_src_set("web")
            .ttl_at_most(1)
            .l4_dst(ValueRange::new(1000, 2000))
            .udp();
        assert_eq!(
            m.to_string(),
            "ip4 && ip4.src == $web && udp && ip.ttl <= 1 && udp.dst >= 1000 && udp.dst <= 2000"
        );
        let m = Match::new()
            .arp()
            .arp_op(1)
            .arp_tpa(Ipv4Addr::new(10, 0, 0, 1))
            .eth_dst_is(EthMatch::Broadcast);
        assert_eq!(
            m.to_string(),
            "eth.bcast && arp.op == 1 && arp.tpa == 10.0.0.1"
        );
        let m = Match::new()
            .tcp()
            .tcp_flags(tcp_flags::SYN, tcp_flags::SYN | tcp_flags::ACK);
        assert_eq!(m.to_string(), "tcp && tcp.flags.syn && !tcp.flags.ack");
        let m = Match::new()
            .tcp()
            .tcp_flags(tcp_flags::SYN | tcp_flags::ACK, 0xfff);
        assert_eq!(m.to_string(), "tcp && tcp.flags == syn|ack");
        let m = Match::new().reg(0, 5, 0xff).l3_len_gt(1500).vlan(None);
        assert_eq!(
            m.to_string(),
            "!vlan.present && reg0 & 0xff == 0x5 && l3.len > 1500"
        );
    }

    #[test]
    fn action_display_is_ovn_like() {
        let a = vec![
            Action::CtCommit { zone: 1 },
            Action::output("p1"),
            Action::SetEthDst(MacAddr::new(2, 0, 0, 0, 0, 1)),
            Action::DecTtl,
            Action::IcmpError {
                error: IcmpErrorKind::PacketTooBig { mtu: 1400 },
                src: "10.0.0.1".parse().unwrap(),
            },
            Action::goto("r1", "ip_input"),
        ];
        assert_eq!(
            Actions(&a).to_string(),
            r#"ct_commit(zone=1); output("p1"); eth.dst = 02:00:00:00:00:01; ip.ttl--; icmp_error(packet-too-big, mtu=1400, src=10.0.0.1); goto("r1", "ip_input");"#
        );
        assert_eq!(Actions(&[]).to_string(), "drop;");
    }

    #[test]
    fn flows_round_trip_through_serde_and_order() {
        let f1 = Flow::new(
            100,
            Match::new().in_port("p1").tcp_dst(22),
            vec![Action::Drop],
        )
        .origin(Origin::new("security-group-rule", "r1", "deny ssh"));
        let json = serde_json::to_string(&f1).unwrap();
        let back: Flow = serde_json::from_str(&json).unwrap();
        assert_eq!(back, f1);
        let f2 = Flow::new(100, Match::new().in_port("p1"), vec![Action::Next]);
        let set: std::collections::BTreeSet<Flow> = [f1.clone(), f2.clone(), f1.clone()].into();
        assert_eq!(set.len(), 2);
    }
}
