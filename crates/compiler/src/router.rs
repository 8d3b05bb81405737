//! Logical routers (one per l3vpn, i.e. one per VRF), their routes, and the
//! ports bound directly to them (routed ports, with no L2 semantics).
//!
//! Routing is distributed: the source host routes. A route to a port of an
//! attached subnet rewrites the MACs and continues in that subnet's switch
//! (which delivers locally or tunnels with the switch's VNI); a route to a
//! routed port goes to that port's delivery stage (tunnelling with the
//! VRF's VNI). Routes of VRFs whose export targets a VRF imports are copied
//! into it, carrying the same actions. In a hub-and-spoke VRF, packets from
//! spokes are routed in a context that only knows the hubs' addresses and
//! otherwise goes to a hub.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use weft_model::{AnycastMode, Id, Intent, Kind, L3vpn, PortStatus, Role, ServicePort};
use weft_pipeline::ir::{
    Action, DatapathKind, EcmpGroup, EcmpMember, Flow, IcmpErrorKind, Match, Origin, TunnelEntry,
    Unreachable,
};

use crate::deps::leak_targets;
use crate::names::{self, lr_table as t, mac, prio, reg, route_prio, router_mac};
use crate::port::{self, PortCtx};
use crate::{Binding, DatapathDecl, Fragment, PortDecl, Scope};

fn vrf_label(v: &L3vpn) -> String {
    if v.name.is_empty() {
        format!("l3vpn {}", v.id)
    } else {
        format!("l3vpn {} ({})", v.name, v.id)
    }
}

/// The address ICMP errors of a VRF come from when no leg is involved: the
/// first gateway of that family, else a link-local address.
fn router_ip(intent: &Intent, v: &L3vpn, v6: bool) -> IpAddr {
    for sid in &v.subnets {
        if let Some((_, s)) = intent.subnet(sid.as_str())
            && let Some(gw) = s.gateway
            && gw.is_ipv6() == v6
        {
            return gw;
        }
    }
    if v6 {
        IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1))
    } else {
        IpAddr::V4(Ipv4Addr::new(169, 254, 0, 1))
    }
}

fn echo_request(ip: IpAddr) -> Match {
    match ip {
        IpAddr::V4(_) => Match::new().ip_dst(IpNet::from(ip)).icmp4().icmp_type(8),
        IpAddr::V6(_) => Match::new().ip_dst(IpNet::from(ip)).icmp6().icmp_type(128),
    }
}

/// One way to reach an address: a port holding it.
struct Holder<'a> {
    sp: &'a ServicePort,
    live: bool,
    preference: u32,
    /// Actions after the TTL decrement and source MAC rewrite.
    actions: Vec<Action>,
    label: String,
}

fn holders<'a>(intent: &'a Intent, v: &'a L3vpn, ip: IpAddr) -> Vec<Holder<'a>> {
    let mut out = Vec::new();
    let mut push = |sp: &'a ServicePort, actions: Vec<Action>| {
        let Some(p) = intent.port_of_interface(sp.interface.as_str()) else {
            return;
        };
        out.push(Holder {
            sp,
            live: p.admin_up && p.status == PortStatus::Up,
            preference: sp.preference,
            label: if p.name.is_empty() {
                format!("service-port {}", sp.id)
            } else {
                format!("port {} ({})", p.name, sp.id)
            },
            actions,
        });
    };
    for sp in intent.service_ports_of_service(v.id.as_str()) {
        if sp.fixed_ips.iter().any(|f| f.ip == ip)
            && let Some(p) = intent.port_of_interface(sp.interface.as_str())
        {
            push(
                sp,
                vec![
                    Action::SetEthDst(mac(p.mac)),
                    Action::SetOutPort(sp.id.to_string()),
                    Action::goto(names::lr(&v.id), t::DISPATCH),
                ],
            );
        }
    }
    for sid in &v.subnets {
        let Some((net, subnet)) = intent.subnet(sid.as_str()) else {
            continue;
        };
        if !subnet.cidr.contains(&ip) {
            continue;
        }
        for sp in intent.service_ports_of_service(net.id.as_str()) {
            if sp
                .fixed_ips
                .iter()
                .any(|f| f.ip == ip && f.subnet.as_ref() == Some(sid))
                && let Some(p) = intent.port_of_interface(sp.interface.as_str())
            {
                push(
                    sp,
                    vec![
                        Action::SetEthDst(mac(p.mac)),
                        Action::SetInPort(names::leg_switch(sid)),
                        Action::goto(names::ls(&net.id), names::ls_table::L2_LKUP),
                    ],
                );
            }
        }
    }
    out.sort_by(|a, b| a.sp.id.cmp(&b.sp.id));
    out
}

/// The actions that send to one of `chosen`: inline for one, ECMP for more.
fn to_holders(
    f: &mut Fragment,
    group: String,
    rmac: weft_pipeline::MacAddr,
    chosen: &[&Holder],
) -> Vec<Action> {
    let mut actions = vec![Action::DecTtl, Action::SetEthSrc(rmac)];
    if chosen.len() == 1 {
        actions.extend(chosen[0].actions.iter().cloned());
    } else {
        f.ecmp_groups.push(EcmpGroup {
            name: group.clone(),
            members: chosen
                .iter()
                .map(|h| EcmpMember {
                    weight: 1,
                    actions: h.actions.clone(),
                })
                .collect(),
        });
        actions.push(Action::Ecmp(group));
    }
    actions
}

/// The router of a VRF: legs to attached subnets, ping and TTL handling,
/// connected and static routes (also leaked into importing VRFs), and the
/// spoke context's way to the hubs.
pub(crate) fn vrf(intent: &Intent, v: &L3vpn) -> Fragment {
    let mut f = Fragment::default();
    let dp = names::lr(&v.id);
    let rmac = router_mac(&v.id);
    let label = vrf_label(v);
    let o = |kind: &str, detail: String| Origin::new(kind, v.id.as_str(), detail);
    f.datapaths.push(DatapathDecl {
        name: dp.clone(),
        kind: DatapathKind::Router,
        vni: v.vni,
        router_macs: vec![rmac],
    });
    f.tunnel_entries.push(TunnelEntry {
        vni: v.vni,
        datapath: dp.clone(),
        table: t::TUNNEL.to_string(),
    });
    port::stage_defaults(&mut f, &dp, &port::LR, "l3vpn", v.id.as_str());
    port::acl_defaults(&mut f, &dp, &port::LR, "l3vpn", v.id.as_str());
    f.flow(
        &dp,
        t::TUNNEL,
        Scope::All,
        Flow::new(0, Match::new(), vec![Action::Drop]).origin(o(
            "tunnel",
            format!("no routed port of {label} has this MAC here"),
        )),
    );
    let mtu = weft_model::DEFAULT_MTU;
    for v6 in [false, true] {
        let m = if v6 {
            Match::new().ip6()
        } else {
            Match::new().ip4()
        };
        f.flow(
            &dp,
            t::MTU,
            Scope::All,
            Flow::new(
                10,
                m.l3_len_gt(mtu),
                vec![Action::IcmpError {
                    error: IcmpErrorKind::PacketTooBig { mtu },
                    src: router_ip(intent, v, v6),
                }],
            )
            .origin(o(
                "mtu",
                format!("routed packets larger than the default MTU {mtu} in {label}"),
            )),
        );
    }
    for table in [t::ARP, t::IP_INPUT, t::MTU] {
        f.flow(
            &dp,
            table,
            Scope::All,
            Flow::new(0, Match::new(), vec![Action::Next]).origin(o("l3vpn", label.clone())),
        );
    }
    f.flow(
        &dp,
        t::ROUTING,
        Scope::All,
        Flow::new(
            0,
            Match::new(),
            vec![Action::IcmpError {
                error: IcmpErrorKind::Unreachable(Unreachable::Net),
                src: router_ip(intent, v, false),
            }],
        )
        .origin(o("route", format!("no route in {label}"))),
    );
    // TTL expiry of packets from routed ports (legs have their own below).
    for v6 in [false, true] {
        let m = if v6 {
            Match::new().ip6()
        } else {
            Match::new().ip4()
        };
        f.flow(
            &dp,
            t::IP_INPUT,
            Scope::All,
            Flow::new(
                40,
                m.ttl_at_most(1),
                vec![Action::IcmpError {
                    error: IcmpErrorKind::TimeExceeded,
                    src: router_ip(intent, v, v6),
                }],
            )
            .origin(o("ttl", format!("TTL expired in {label}"))),
        );
    }

    let importers = leak_targets(intent, v);
    let route = |f: &mut Fragment, m: Match, prio: u16, actions: Vec<Action>, origin: Origin| {
        f.flow(
            &dp,
            t::ROUTING,
            Scope::All,
            Flow::new(prio, m.clone(), actions.clone()).origin(origin.clone()),
        );
        for w in &importers {
            let detail = format!("{} (leaked from {label} by route target)", origin.detail);
            f.flow(
                &names::lr(&w.id),
                t::ROUTING,
                Scope::All,
                Flow::new(prio, m.clone(), actions.clone()).origin(Origin::new(
                    origin.kind.clone(),
                    origin.id.clone(),
                    detail,
                )),
            );
        }
    };

    for sid in &v.subnets {
        let Some((net, s)) = intent.subnet(sid.as_str()) else {
            continue;
        };
        let Some(gw) = s.gateway else { continue };
        let leg = names::leg_router(sid);
        f.ports.push(PortDecl {
            name: leg.clone(),
            datapath: dp.clone(),
            binding: Binding::Internal,
            mac: Some(rmac),
            ips: vec![gw],
        });
        let detail = format!("gateway {gw} of {} (network {})", s.cidr, net.id);
        f.flow(
            &dp,
            t::IP_INPUT,
            Scope::All,
            Flow::new(100, echo_request(gw), vec![Action::IcmpEchoReply]).origin(Origin::new(
                "gateway",
                sid.as_str(),
                format!("{detail} answers ping"),
            )),
        );
        f.flow(
            &dp,
            t::IP_INPUT,
            Scope::All,
            Flow::new(90, Match::new().ip_dst(IpNet::from(gw)), vec![Action::Drop]).origin(
                Origin::new(
                    "gateway",
                    sid.as_str(),
                    format!("{detail}: only ping is answered"),
                ),
            ),
        );
        let m = if gw.is_ipv6() {
            Match::new().ip6()
        } else {
            Match::new().ip4()
        };
        f.flow(
            &dp,
            t::IP_INPUT,
            Scope::All,
            Flow::new(
                50,
                m.in_port(&leg).ttl_at_most(1),
                vec![Action::IcmpError {
                    error: IcmpErrorKind::TimeExceeded,
                    src: gw,
                }],
            )
            .origin(Origin::new(
                "ttl",
                sid.as_str(),
                format!("TTL expired entering {label} from {}", s.cidr),
            )),
        );
        route(
            &mut f,
            Match::new().ip_dst(s.cidr),
            route_prio(&s.cidr) + 1,
            vec![Action::IcmpError {
                error: IcmpErrorKind::Unreachable(Unreachable::Host),
                src: gw,
            }],
            Origin::new(
                "route",
                sid.as_str(),
                format!(
                    "connected subnet {} of {label}: no port holds this address",
                    s.cidr
                ),
            ),
        );
    }

    for (i, r) in v.static_routes.iter().enumerate() {
        let best = r.nexthops.iter().map(|n| n.local_pref).max().unwrap_or(0);
        let mut members = Vec::new();
        let mut via = Vec::new();
        for nh in r.nexthops.iter().filter(|n| n.local_pref == best) {
            let hs = holders(intent, v, nh.ip);
            // Prefer a live holder; a next hop held by several ports (anycast)
            // contributes one member per holder.
            for h in &hs {
                members.push(EcmpMember {
                    weight: nh.weight.min(u16::MAX as u32) as u16,
                    actions: h.actions.clone(),
                });
                via.push(format!("{} via {}", nh.ip, h.label));
            }
        }
        let origin_id = format!("{}#{}", v.id, i);
        let detail = format!(
            "static route {} of {label} via {}",
            r.prefix,
            r.nexthops
                .iter()
                .map(|n| n.ip.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let actions = if members.is_empty() {
            vec![Action::IcmpError {
                error: IcmpErrorKind::Unreachable(Unreachable::Net),
                src: router_ip(intent, v, r.prefix.addr().is_ipv6()),
            }]
        } else if members.len() == 1 {
            let mut a = vec![Action::DecTtl, Action::SetEthSrc(rmac)];
            a.extend(members.remove(0).actions);
            a
        } else {
            let group = names::static_group(&v.id, &r.prefix, &v.id);
            f.ecmp_groups.push(EcmpGroup {
                name: group.clone(),
                members,
            });
            vec![Action::DecTtl, Action::SetEthSrc(rmac), Action::Ecmp(group)]
        };
        let detail = if via.is_empty() {
            format!("{detail}: no next hop is reachable")
        } else {
            format!("{detail} ({})", via.join("; "))
        };
        route(
            &mut f,
            Match::new().ip_dst(r.prefix),
            route_prio(&r.prefix),
            actions,
            Origin::new("static-route", origin_id, detail),
        );
    }

    // Hub and spoke: from a spoke, whatever has no hub route goes to a hub.
    let hubs: Vec<&ServicePort> = intent
        .service_ports_of_service(v.id.as_str())
        .filter(|sp| sp.role == Some(Role::Hub))
        .collect();
    if !hubs.is_empty() {
        let members: Vec<EcmpMember> = hubs
            .iter()
            .filter_map(|sp| {
                let p = intent.port_of_interface(sp.interface.as_str())?;
                Some(EcmpMember {
                    weight: 1,
                    actions: vec![
                        Action::SetEthDst(mac(p.mac)),
                        Action::SetOutPort(sp.id.to_string()),
                        Action::goto(dp.clone(), t::DISPATCH),
                    ],
                })
            })
            .collect();
        let actions = if members.len() == 1 {
            let mut a = vec![Action::DecTtl, Action::SetEthSrc(rmac)];
            a.extend(members[0].actions.iter().cloned());
            a
        } else {
            let group = format!("hubs:{}", v.id);
            f.ecmp_groups.push(EcmpGroup {
                name: group.clone(),
                members,
            });
            vec![Action::DecTtl, Action::SetEthSrc(rmac), Action::Ecmp(group)]
        };
        let hub_names = hubs
            .iter()
            .map(|h| h.id.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        for m in [Match::new().ip4(), Match::new().ip6()] {
            f.flow(
                &dp,
                t::ROUTING,
                Scope::All,
                Flow::new(
                    prio::SPOKE_BASE,
                    m.reg(reg::CTX, reg::CTX_SPOKE, u32::MAX),
                    actions.clone(),
                )
                .origin(o(
                    "hub-and-spoke",
                    format!(
                        "from a spoke of {label}: everything goes through the hub ({hub_names})"
                    ),
                )),
            );
        }
    }
    f
}

/// The route to one address of a VRF: one holder, or several (anycast,
/// load-split or fail-over among live ports), copied into importing VRFs.
pub(crate) fn vrf_ip(intent: &Intent, v: &L3vpn, ip: IpAddr) -> Option<Fragment> {
    let hs = holders(intent, v, ip);
    if hs.is_empty() {
        return None;
    }
    let mut f = Fragment::default();
    let dp = names::lr(&v.id);
    let rmac = router_mac(&v.id);
    let label = vrf_label(v);
    let host = IpNet::from(ip);
    let prio = route_prio(&host) + 1;
    let chosen: Vec<&Holder> = if hs.len() == 1 {
        hs.iter().collect()
    } else {
        let live: Vec<&Holder> = hs.iter().filter(|h| h.live).collect();
        match v.anycast_mode {
            AnycastMode::LoadSplit => live,
            AnycastMode::FailOver => {
                let best = live.iter().map(|h| h.preference).max().unwrap_or(0);
                live.into_iter().filter(|h| h.preference == best).collect()
            }
        }
    };
    let names_of = |hs: &[&Holder]| {
        hs.iter()
            .map(|h| h.label.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (actions, detail) = if chosen.is_empty() {
        (
            vec![Action::IcmpError {
                error: IcmpErrorKind::Unreachable(Unreachable::Host),
                src: router_ip(intent, v, ip.is_ipv6()),
            }],
            format!(
                "{ip} in {label}: every holder is down ({})",
                names_of(&hs.iter().collect::<Vec<_>>())
            ),
        )
    } else {
        let mode = if hs.len() == 1 {
            String::new()
        } else {
            match v.anycast_mode {
                AnycastMode::LoadSplit => format!(
                    " (anycast load-split over {} of {} holders)",
                    chosen.len(),
                    hs.len()
                ),
                AnycastMode::FailOver => {
                    format!(" (anycast fail-over: preference {})", chosen[0].preference)
                }
            }
        };
        (
            to_holders(&mut f, names::anycast_group(&v.id, ip, ""), rmac, &chosen),
            format!("host route {ip} in {label} to {}{mode}", names_of(&chosen)),
        )
    };
    let origin = Origin::new("host-route", format!("{}/{}", v.id, ip), detail.clone());
    let importers = leak_targets(intent, v);
    let mtu = hs
        .iter()
        .filter_map(|h| {
            intent
                .port_of_interface(h.sp.interface.as_str())
                .map(|p| p.mtu)
        })
        .min()
        .unwrap_or(weft_model::DEFAULT_MTU);
    let mut dps = vec![(dp.clone(), origin.clone())];
    for w in &importers {
        dps.push((
            names::lr(&w.id),
            Origin::new(
                "host-route",
                format!("{}/{}", v.id, ip),
                format!("{detail} (leaked from {label} by route target)"),
            ),
        ));
    }
    for (d, o) in &dps {
        f.flow(
            d,
            t::ROUTING,
            Scope::All,
            Flow::new(prio, Match::new().ip_dst(host), actions.clone()).origin(o.clone()),
        );
        // Too big for the destination's MTU: tell the sender (path MTU
        // discovery). The VRF answers for the default MTU; only ports with
        // another MTU need flows of their own.
        if mtu != weft_model::DEFAULT_MTU {
            f.flow(
                d,
                t::MTU,
                Scope::All,
                Flow::new(
                    100,
                    Match::new().ip_dst(host).l3_len_gt(mtu),
                    vec![Action::IcmpError {
                        error: IcmpErrorKind::PacketTooBig { mtu },
                        src: router_ip(intent, v, ip.is_ipv6()),
                    }],
                )
                .origin(Origin::new(
                    "mtu",
                    o.id.clone(),
                    format!("{ip} is behind an MTU of {mtu}"),
                )),
            );
            f.flow(
                d,
                t::MTU,
                Scope::All,
                Flow::new(90, Match::new().ip_dst(host), vec![Action::Next]).origin(Origin::new(
                    "mtu",
                    o.id.clone(),
                    format!("{ip} is behind an MTU of {mtu}"),
                )),
            );
        }
    }
    // Spokes reach hubs directly.
    let hub_holders: Vec<&Holder> = chosen
        .iter()
        .copied()
        .filter(|h| h.sp.service_kind == Kind::L3vpn && h.sp.role == Some(Role::Hub))
        .collect();
    if !hub_holders.is_empty() {
        let actions = to_holders(
            &mut f,
            names::anycast_group(&v.id, ip, ":spoke"),
            rmac,
            &hub_holders,
        );
        f.flow(
            &dp,
            t::ROUTING,
            Scope::All,
            Flow::new(
                prio::SPOKE_BASE + prio,
                Match::new()
                    .ip_dst(host)
                    .reg(reg::CTX, reg::CTX_SPOKE, u32::MAX),
                actions,
            )
            .origin(Origin::new(
                "hub-and-spoke",
                format!("{}/{}", v.id, ip),
                format!("from a spoke of {label}: hub {ip} is reached directly"),
            )),
        );
    }
    Some(f)
}

/// A port bound directly to a VRF: no L2 semantics, the router answers ARP
/// for every address.
pub(crate) fn routed_port(intent: &Intent, sp: &ServicePort) -> Option<Fragment> {
    let v = intent.l3vpns().get(&sp.service)?;
    let c = PortCtx::new(intent, sp)?;
    let mut f = Fragment::default();
    let dp = names::lr(&v.id);
    let rmac = router_mac(&v.id);
    let p = c.name().to_string();
    let extra = if sp.role == Some(Role::Spoke) {
        vec![Action::SetReg {
            reg: reg::CTX,
            value: reg::CTX_SPOKE,
            mask: u32::MAX,
        }]
    } else {
        Vec::new()
    };
    port::common(&mut f, &c, &dp, &port::LR, &extra);
    let lbl = if c.port.name.is_empty() {
        format!("routed port {}", sp.id)
    } else {
        format!("routed port {} ({})", c.port.name, sp.id)
    };
    let o = |kind: &str, detail: String| Origin::new(kind, sp.id.as_str(), detail);
    for ip in sp.fixed_ips.iter().map(|x| x.ip) {
        if let IpAddr::V4(a) = ip {
            f.flow(
                &dp,
                t::ARP,
                Scope::Ingress(p.clone()),
                Flow::new(
                    110,
                    Match::new().in_port(&p).arp().arp_op(1).arp_tpa(a),
                    vec![Action::Drop],
                )
                .origin(o(
                    "arp",
                    format!("{lbl} probing its own address {a}: no answer"),
                )),
            );
        }
    }
    f.flow(
        &dp,
        t::ARP,
        Scope::Ingress(p.clone()),
        Flow::new(
            100,
            Match::new().in_port(&p).arp().arp_op(1),
            vec![Action::ArpReply { mac: rmac }],
        )
        .origin(o("arp", format!("the router answers every ARP of {lbl}"))),
    );
    f.flow(
        &dp,
        t::ARP,
        Scope::Ingress(p.clone()),
        Flow::new(
            100,
            Match::new().in_port(&p).icmp6().icmp_type(135),
            vec![Action::NdAdvert {
                mac: rmac,
                router: true,
            }],
        )
        .origin(o(
            "nd",
            format!("the router answers every neighbour solicitation of {lbl}"),
        )),
    );
    f.flow(
        &dp,
        t::TUNNEL,
        Scope::All,
        Flow::new(
            100,
            Match::new().eth_dst(mac(c.port.mac)),
            vec![
                Action::SetReg {
                    reg: reg::FLAGS,
                    value: reg::FROM_TUNNEL,
                    mask: reg::FROM_TUNNEL,
                },
                Action::SetOutPort(p.clone()),
                Action::goto(dp.clone(), t::DISPATCH),
            ],
        )
        .origin(o("tunnel", format!("from a tunnel to {lbl}"))),
    );
    Some(f)
}

/// Ids of the VRFs a host's VRFs import routes from (for neighbourhoods).
pub(crate) fn exporters_to<'a>(intent: &'a Intent, v: &L3vpn) -> impl Iterator<Item = &'a Id> + 'a {
    let imports = v.import_targets.clone();
    let id = v.id.clone();
    intent
        .l3vpns()
        .values()
        .filter(move |w| w.id != id && w.export_targets.iter().any(|t| imports.contains(t)))
        .map(|w| &w.id)
}

/// Routes learned from outside that this VRF imports (one of its import
/// targets): sent through a tunnel to the advertising next hop with the
/// route's VNI. Several routes for one prefix share the flows by ECMP among
/// those with the best local preference.
pub(crate) fn imported(v: &L3vpn, external: &[crate::ExternalRoute]) -> Option<Fragment> {
    let mut by_prefix: std::collections::BTreeMap<IpNet, Vec<&crate::ExternalRoute>> =
        Default::default();
    for r in external
        .iter()
        .filter(|r| r.route_targets.iter().any(|t| v.import_targets.contains(t)))
    {
        by_prefix.entry(r.prefix).or_default().push(r);
    }
    if by_prefix.is_empty() {
        return None;
    }
    let mut f = Fragment::default();
    let dp = names::lr(&v.id);
    let rmac = router_mac(&v.id);
    let label = vrf_label(v);
    for (prefix, routes) in by_prefix {
        let best = routes.iter().map(|r| r.local_pref).max().unwrap_or(0);
        let chosen: Vec<&&crate::ExternalRoute> =
            routes.iter().filter(|r| r.local_pref == best).collect();
        let member = |r: &crate::ExternalRoute| {
            vec![
                Action::SetEthDst(r.router_mac.unwrap_or(rmac)),
                Action::Tunnel {
                    remote: r.next_hop,
                    vni: r.vni,
                },
            ]
        };
        let mut actions = vec![Action::DecTtl, Action::SetEthSrc(rmac)];
        if chosen.len() == 1 {
            actions.extend(member(chosen[0]));
        } else {
            let group = format!("imported:{}:{prefix}", v.id);
            f.ecmp_groups.push(EcmpGroup {
                name: group.clone(),
                members: chosen
                    .iter()
                    .map(|r| EcmpMember {
                        weight: 1,
                        actions: member(r),
                    })
                    .collect(),
            });
            actions.push(Action::Ecmp(group));
        }
        let detail = format!(
            "route {prefix} imported into {label}: {}",
            chosen
                .iter()
                .map(|r| format!("via {} VNI {} ({})", r.next_hop, r.vni, r.source))
                .collect::<Vec<_>>()
                .join("; ")
        );
        f.flow(
            &dp,
            t::ROUTING,
            Scope::All,
            Flow::new(route_prio(&prefix), Match::new().ip_dst(prefix), actions).origin(
                Origin::new("imported-route", format!("{}/{prefix}", v.id), detail),
            ),
        );
    }
    Some(f)
}
