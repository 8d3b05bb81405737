//! What every service port gets, whether it sits on a switch (l2-network)
//! or directly on a router (routed l3vpn port): its declaration, port
//! security, security-group filtering in both directions with connection
//! tracking, and delivery (local, or over a tunnel to its host).

use ipnet::IpNet;
use weft_model::{
    Direction, Ethertype, InstancePort, Intent, Interface, Protocol, Rule, RuleAction,
    SecurityGroup, ServicePort,
};
use weft_pipeline::ir::{Action, Flow, Match, Origin, ValueRange, ct_state, ethertype, ip_proto};

use crate::names::{self, mac, prio, reg, zone};
use crate::{Binding, Fragment, PortDecl, Scope};

/// The tables a port's flows go to (a switch's or a router's).
pub(crate) struct Tables {
    pub port_sec: &'static str,
    pub pre_acl: &'static str,
    pub acl: &'static str,
    pub dispatch: &'static str,
    pub out_pre_acl: &'static str,
    pub out_acl: &'static str,
    pub output: &'static str,
}

pub(crate) const LS: Tables = Tables {
    port_sec: names::ls_table::PORT_SEC,
    pre_acl: names::ls_table::PRE_ACL,
    acl: names::ls_table::ACL,
    dispatch: names::ls_table::DISPATCH,
    out_pre_acl: names::ls_table::OUT_PRE_ACL,
    out_acl: names::ls_table::OUT_ACL,
    output: names::ls_table::OUTPUT,
};

pub(crate) const LR: Tables = Tables {
    port_sec: names::lr_table::PORT_SEC,
    pre_acl: names::lr_table::PRE_ACL,
    acl: names::lr_table::ACL,
    dispatch: names::lr_table::DISPATCH,
    out_pre_acl: names::lr_table::OUT_PRE_ACL,
    out_acl: names::lr_table::OUT_ACL,
    output: names::lr_table::OUTPUT,
};

/// The objects a service port's flows are built from.
pub(crate) struct PortCtx<'a> {
    pub sp: &'a ServicePort,
    pub iface: &'a Interface,
    pub port: &'a InstancePort,
    pub groups: Vec<&'a SecurityGroup>,
}

impl<'a> PortCtx<'a> {
    pub fn new(intent: &'a Intent, sp: &'a ServicePort) -> Option<Self> {
        let iface = intent.interfaces().get(&sp.interface)?;
        let port = intent.instance_ports().get(&iface.port)?;
        let groups = sp
            .security_groups
            .iter()
            .filter_map(|g| intent.security_groups().get(g))
            .collect();
        Some(PortCtx {
            sp,
            iface,
            port,
            groups,
        })
    }

    pub fn name(&self) -> &str {
        self.sp.id.as_str()
    }

    fn label(&self) -> String {
        if self.port.name.is_empty() {
            format!("service-port {}", self.sp.id)
        } else {
            format!("port {} ({})", self.port.name, self.sp.id)
        }
    }

    fn origin(&self, kind: &str, detail: impl Into<String>) -> Origin {
        Origin::new(kind, self.sp.id.as_str(), detail)
    }

    /// Stateful filtering is on when the port filters and any group is stateful.
    fn stateful(&self) -> bool {
        self.sp.port_security && self.groups.iter().any(|g| g.stateful)
    }
}

fn ip_is_v6(ip: &IpNet) -> bool {
    matches!(ip, IpNet::V6(_))
}

/// Declares the port and emits port security, both ACL directions and
/// delivery. `ingress_extra` runs on packets that pass port security (e.g.
/// setting the routing context of a spoke).
pub(crate) fn common(
    f: &mut Fragment,
    c: &PortCtx,
    dp: &str,
    t: &Tables,
    ingress_extra: &[Action],
) {
    let p = c.name();
    let m = mac(c.port.mac);
    f.ports.push(PortDecl {
        name: p.to_string(),
        datapath: dp.to_string(),
        binding: Binding::Vif {
            host: c.port.host.clone(),
            vif: c.port.id.to_string(),
            vlans: c.iface.vlan_path.clone(),
        },
        mac: Some(m),
        ips: c.sp.fixed_ips.iter().map(|x| x.ip).collect(),
    });
    let ing = || Scope::Ingress(p.to_string());
    let eg = || Scope::EgressLocal(p.to_string());
    let label = c.label();

    if !c.port.admin_up {
        f.flow(
            dp,
            t.port_sec,
            ing(),
            Flow::new(200, Match::new().in_port(p), vec![Action::Drop]).origin(c.origin(
                "port-admin-down",
                format!("{label} is administratively down"),
            )),
        );
    }

    // Port security: only the port's own MAC and addresses may send.
    let pass: Vec<Action> = ingress_extra
        .iter()
        .cloned()
        .chain(std::iter::once(Action::Next))
        .collect();
    if !c.sp.port_security {
        f.flow(
            dp,
            t.port_sec,
            ing(),
            Flow::new(100, Match::new().in_port(p), pass.clone())
                .origin(c.origin("port-security", format!("{label}: port security off"))),
        );
    } else {
        let mut allowed: Vec<(weft_pipeline::MacAddr, IpNet)> =
            c.sp.fixed_ips
                .iter()
                .map(|x| (m, IpNet::from(x.ip)))
                .collect();
        for pair in &c.sp.allowed_address_pairs {
            allowed.push((pair.mac.map(mac).unwrap_or(m), pair.ip));
        }
        let mut macs: Vec<weft_pipeline::MacAddr> = allowed.iter().map(|(m, _)| *m).collect();
        macs.push(m);
        macs.sort();
        macs.dedup();
        for (sm, net) in &allowed {
            let o = || {
                c.origin(
                    "port-security",
                    format!("{label}: may send from {sm} {net}"),
                )
            };
            f.flow(
                dp,
                t.port_sec,
                ing(),
                Flow::new(
                    100,
                    Match::new().in_port(p).eth_src(*sm).ip_src(*net),
                    pass.clone(),
                )
                .origin(o()),
            );
            if let IpNet::V4(n4) = net {
                f.flow(
                    dp,
                    t.port_sec,
                    ing(),
                    Flow::new(
                        100,
                        Match::new()
                            .in_port(p)
                            .eth_src(*sm)
                            .arp()
                            .arp_sha(*sm)
                            .arp_spa(*n4),
                        pass.clone(),
                    )
                    .origin(o()),
                );
            }
        }
        for sm in &macs {
            // DHCP discovery before the VM has an address.
            f.flow(
                dp,
                t.port_sec,
                ing(),
                Flow::new(
                    100,
                    Match::new()
                        .in_port(p)
                        .eth_src(*sm)
                        .ip_src("0.0.0.0/32".parse::<IpNet>().expect("valid"))
                        .udp_dst(67),
                    pass.clone(),
                )
                .origin(c.origin(
                    "port-security",
                    format!("{label}: DHCP discovery from {sm}"),
                )),
            );
            // IPv6 link-local and duplicate address detection.
            let has_v6 = allowed.iter().any(|(_, n)| ip_is_v6(n));
            for src in ["fe80::/10", "::/128"].into_iter().filter(|_| has_v6) {
                f.flow(
                    dp,
                    t.port_sec,
                    ing(),
                    Flow::new(
                        100,
                        Match::new()
                            .in_port(p)
                            .eth_src(*sm)
                            .ip_src(src.parse::<IpNet>().expect("valid")),
                        pass.clone(),
                    )
                    .origin(c.origin("port-security", format!("{label}: IPv6 {src} from {sm}"))),
                );
            }
        }
        f.flow(
            dp,
            t.port_sec,
            ing(),
            Flow::new(50, Match::new().in_port(p), vec![Action::Drop]).origin(c.origin(
                "port-security",
                format!("{label}: source MAC or address not allowed (anti-spoofing)"),
            )),
        );
    }

    // Connection tracking in the port's zone, both directions.
    let z = zone(&c.sp.id);
    if !c.sp.port_security {
        f.flow(
            dp,
            t.pre_acl,
            ing(),
            Flow::new(
                100,
                Match::new().in_port(p),
                vec![
                    Action::SetReg {
                        reg: reg::NOSEC,
                        value: reg::NOSEC_IN,
                        mask: reg::NOSEC_IN,
                    },
                    Action::Next,
                ],
            )
            .origin(c.origin("port-security", format!("{label}: no filtering"))),
        );
        f.flow(
            dp,
            t.out_pre_acl,
            eg(),
            Flow::new(
                100,
                Match::new().out_port(p),
                vec![
                    Action::SetReg {
                        reg: reg::NOSEC,
                        value: reg::NOSEC_OUT,
                        mask: reg::NOSEC_OUT,
                    },
                    Action::Next,
                ],
            )
            .origin(c.origin("port-security", format!("{label}: no filtering"))),
        );
    } else if c.stateful() {
        // Non-IP packets come out of the lookup invalid; ARP and ND pass the
        // ACL stage above the invalid-drop, anything else has no business.
        f.flow(
            dp,
            t.pre_acl,
            ing(),
            Flow::new(
                100,
                Match::new().in_port(p),
                vec![Action::CtLookup { zone: z }, Action::Next],
            )
            .origin(c.origin(
                "conntrack",
                format!("{label}: track connections (zone {z})"),
            )),
        );
        f.flow(
            dp,
            t.out_pre_acl,
            eg(),
            Flow::new(
                100,
                Match::new().out_port(p),
                vec![Action::CtLookup { zone: z }, Action::Next],
            )
            .origin(c.origin(
                "conntrack",
                format!("{label}: track connections (zone {z})"),
            )),
        );
    }

    // Security group rules; what no rule allows falls to the default deny.
    if c.sp.port_security {
        let stateful = c.stateful();
        for g in &c.groups {
            for (i, r) in g.rules.iter().enumerate() {
                let (table, scope, base) = match r.direction {
                    Direction::Egress => (t.acl, ing(), Match::new().in_port(p)),
                    Direction::Ingress => (t.out_acl, eg(), Match::new().out_port(p)),
                };
                let Some(mut mt) = rule_match(base, r) else {
                    continue;
                };
                if stateful {
                    mt = mt.ct(ct_state::NEW | ct_state::TRK, ct_state::NEW | ct_state::TRK);
                }
                let mut actions = Vec::new();
                if r.log {
                    actions.push(Action::Log {
                        rule: r.id.to_string(),
                    });
                }
                let priority = match r.action {
                    RuleAction::Allow => {
                        if stateful {
                            actions.push(Action::CtCommit { zone: z });
                        }
                        actions.push(Action::Next);
                        prio::ACL_ALLOW
                    }
                    RuleAction::Reject => {
                        actions.push(Action::Reject);
                        prio::ACL_DENY
                    }
                    RuleAction::Drop => {
                        actions.push(Action::Drop);
                        prio::ACL_DENY
                    }
                };
                let detail = format!(
                    "security group {} rule {} on {label}: {}",
                    if g.name.is_empty() {
                        g.id.as_str()
                    } else {
                        &g.name
                    },
                    i + 1,
                    describe_rule(r)
                );
                f.flow(
                    dp,
                    table,
                    scope,
                    Flow::new(priority, mt, actions).origin(Origin::new(
                        "security-group-rule",
                        r.id.as_str(),
                        detail,
                    )),
                );
            }
        }
    }

    // Delivery: continue on the port's host, tunnel to it elsewhere.
    f.flow(
        dp,
        t.dispatch,
        eg(),
        Flow::new(100, Match::new().out_port(p), vec![Action::Next])
            .origin(c.origin("delivery", format!("{label} is on this host"))),
    );
    f.flow(
        dp,
        t.dispatch,
        Scope::EgressRemote(p.to_string()),
        Flow::new(
            100,
            Match::new()
                .out_port(p)
                .reg(reg::FLAGS, 0, reg::FROM_TUNNEL),
            vec![Action::Output(p.to_string())],
        )
        .origin(c.origin(
            "delivery",
            format!(
                "{label} is on host {}",
                c.port.host.as_deref().unwrap_or("(unbound)")
            ),
        )),
    );
    if c.port.admin_up {
        f.flow(
            dp,
            t.output,
            eg(),
            Flow::new(
                100,
                Match::new().out_port(p),
                vec![Action::Output(p.to_string())],
            )
            .origin(c.origin("delivery", format!("deliver to {label}"))),
        );
    }
}

/// The match of a rule on top of `base` (which names the port), or `None`
/// for rules that cannot match anything.
fn rule_match(base: Match, r: &Rule) -> Option<Match> {
    let v6 = r.ethertype == Ethertype::IPv6;
    let mut m = base.eth_type(if v6 { ethertype::IPV6 } else { ethertype::IPV4 });
    if let Some(p) = r.protocol {
        m = m.ip_proto(p.number());
        if p.has_ports()
            && let (Some(lo), Some(hi)) = (r.port_range_min, r.port_range_max)
        {
            m = m.l4_dst(ValueRange::new(lo, hi));
        }
        if p.is_icmp() {
            if let Some(t) = r.icmp_type {
                m = m.icmp_type(t);
            }
            if let Some(code) = r.icmp_code {
                m = m.icmp_code(code);
            }
        }
    }
    let remote_dst = r.direction == Direction::Egress;
    if let Some(prefix) = r.remote_prefix {
        if ip_is_v6(&prefix) != v6 {
            return None;
        }
        m = if remote_dst {
            m.ip_dst(prefix)
        } else {
            m.ip_src(prefix)
        };
    } else if let Some(g) = &r.remote_group {
        let set = names::sg_set(g, v6);
        m = if remote_dst {
            m.ip_dst_set(set)
        } else {
            m.ip_src_set(set)
        };
    }
    Some(m)
}

/// A one-line description of a rule for traces.
pub(crate) fn describe_rule(r: &Rule) -> String {
    let mut s = format!(
        "{} {}",
        match r.direction {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        },
        match r.ethertype {
            Ethertype::IPv4 => "ipv4",
            Ethertype::IPv6 => "ipv6",
        }
    );
    match r.protocol {
        Some(p) => {
            s.push(' ');
            s.push_str(&p.to_string());
            if let (Some(a), Some(b)) = (r.port_range_min, r.port_range_max) {
                if a == b {
                    s.push_str(&format!(" port {a}"));
                } else {
                    s.push_str(&format!(" ports {a}-{b}"));
                }
            }
            if let Some(t) = r.icmp_type {
                s.push_str(&format!(" type {t}"));
            }
            if p == Protocol::Icmp && r.icmp_code.is_some() {
                s.push_str(&format!(" code {}", r.icmp_code.unwrap_or(0)));
            }
        }
        None => s.push_str(" any protocol"),
    }
    let dir = if r.direction == Direction::Egress {
        "to"
    } else {
        "from"
    };
    match (&r.remote_prefix, &r.remote_group) {
        (Some(p), _) => s.push_str(&format!(" {dir} {p}")),
        (None, Some(g)) => s.push_str(&format!(" {dir} group {g}")),
        (None, None) => s.push_str(&format!(" {dir} anywhere")),
    }
    s.push_str(match r.action {
        RuleAction::Allow => ": allow",
        RuleAction::Reject => ": reject",
        RuleAction::Drop => ": drop",
    });
    if r.log {
        s.push_str(", logged");
    }
    s
}

/// The datapath-wide flows of both ACL stages: bypass for unfiltered ports,
/// ARP/ND, invalid, established/related, and the default deny.
pub(crate) fn acl_defaults(f: &mut Fragment, dp: &str, t: &Tables, what: &str, id: &str) {
    let o = |detail: &str| Origin::new(what, id, detail);
    for (table, bit, side) in [
        (t.acl, reg::NOSEC_IN, "from"),
        (t.out_acl, reg::NOSEC_OUT, "to"),
    ] {
        f.flow(
            dp,
            table,
            Scope::All,
            Flow::new(
                prio::ACL_BYPASS,
                Match::new().reg(reg::NOSEC, bit, bit),
                vec![Action::Next],
            )
            .origin(o(&format!(
                "traffic {side} a port without port security is not filtered"
            ))),
        );
        f.flow(
            dp,
            table,
            Scope::All,
            Flow::new(prio::ACL_L2_CONTROL, Match::new().arp(), vec![Action::Next])
                .origin(o("ARP is not filtered by security groups")),
        );
        for nd in 133..=136u8 {
            f.flow(
                dp,
                table,
                Scope::All,
                Flow::new(
                    prio::ACL_L2_CONTROL,
                    Match::new().icmp6().icmp_type(nd),
                    vec![Action::Next],
                )
                .origin(o("neighbour discovery is not filtered by security groups")),
            );
        }
        f.flow(
            dp,
            table,
            Scope::All,
            Flow::new(
                prio::ACL_INVALID,
                Match::new().ct(ct_state::INV | ct_state::TRK, ct_state::INV | ct_state::TRK),
                vec![Action::Drop],
            )
            .origin(o("connection tracking says invalid")),
        );
        for bit in [ct_state::EST, ct_state::REL] {
            f.flow(
                dp,
                table,
                Scope::All,
                Flow::new(
                    prio::ACL_ESTABLISHED,
                    Match::new().ct(bit | ct_state::TRK, bit | ct_state::TRK),
                    vec![Action::Next],
                )
                .origin(o("part of (or related to) a connection a rule allowed")),
            );
        }
        f.flow(
            dp,
            table,
            Scope::All,
            Flow::new(0, Match::new(), vec![Action::Drop]).origin(o(
                "default deny: no security group rule allows this traffic",
            )),
        );
    }
    // DHCP to the local server works before any rule allows it.
    f.flow(
        dp,
        t.acl,
        Scope::All,
        Flow::new(
            prio::ACL_DHCP,
            Match::new()
                .ip4()
                .ip_proto(ip_proto::UDP)
                .l4_src(ValueRange::exact(68))
                .l4_dst(ValueRange::exact(67)),
            vec![Action::Next],
        )
        .origin(o("DHCP to the local server")),
    );
}

/// The defaults of the other per-port stages of a datapath.
pub(crate) fn stage_defaults(f: &mut Fragment, dp: &str, t: &Tables, what: &str, id: &str) {
    let o = |detail: &str| Origin::new(what, id, detail);
    f.flow(
        dp,
        t.port_sec,
        Scope::All,
        Flow::new(0, Match::new(), vec![Action::Drop]).origin(o("packet from an unknown port")),
    );
    for table in [t.pre_acl, t.out_pre_acl] {
        f.flow(
            dp,
            table,
            Scope::All,
            Flow::new(0, Match::new(), vec![Action::Next]).origin(o("not tracked")),
        );
    }
    f.flow(
        dp,
        t.dispatch,
        Scope::All,
        Flow::new(0, Match::new(), vec![Action::Drop]).origin(o(
            "no such destination here (or a tunnelled packet for another host: never re-tunnelled)",
        )),
    );
    f.flow(
        dp,
        t.output,
        Scope::All,
        Flow::new(0, Match::new(), vec![Action::Drop]).origin(o("destination port is down")),
    );
}
