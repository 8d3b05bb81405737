//! Logical switches (one per l2-network) and the ports on them.

use std::net::IpAddr;

use ipnet::IpNet;
use weft_model::{Intent, L2Network, SecurityGroup, ServicePort};
use weft_pipeline::ir::{
    Action, AddressSet, DatapathKind, EthMatch, FloodGroup, Flow, Match, Origin, Service,
    TunnelEntry, ValueRange, ip_proto,
};

use crate::names::{self, ls_table as t, mac, reg, router_mac};
use crate::port::{self, PortCtx};
use crate::{Binding, DatapathDecl, Fragment, PortDecl, Scope, ServiceConfig};

fn net_label(n: &L2Network) -> String {
    if n.name.is_empty() {
        format!("network {}", n.id)
    } else {
        format!("network {} ({})", n.name, n.id)
    }
}

/// DNS domain of a network's names.
pub(crate) fn domain(n: &L2Network) -> String {
    let base = if n.name.is_empty() {
        n.id.as_str()
    } else {
        &n.name
    };
    format!("{base}.weft.internal")
}

/// The switch of an l2-network: skeleton, defaults, flooding, gateways of
/// subnets attached to VRFs, DNS.
pub(crate) fn network(intent: &Intent, n: &L2Network) -> Fragment {
    let mut f = Fragment::default();
    let dp = names::ls(&n.id);
    let label = net_label(n);
    let o = |kind: &str, detail: String| Origin::new(kind, n.id.as_str(), detail);
    f.datapaths.push(DatapathDecl {
        name: dp.clone(),
        kind: DatapathKind::Switch,
        vni: n.vni,
        router_macs: Vec::new(),
    });
    f.tunnel_entries.push(TunnelEntry {
        vni: n.vni,
        datapath: dp.clone(),
        table: t::TUNNEL.to_string(),
    });
    f.flow(
        &dp,
        t::TUNNEL,
        Scope::All,
        Flow::new(
            0,
            Match::new(),
            vec![
                Action::SetReg {
                    reg: reg::FLAGS,
                    value: reg::FROM_TUNNEL,
                    mask: reg::FROM_TUNNEL,
                },
                Action::goto(dp.clone(), t::L2_LKUP),
            ],
        )
        .origin(o(
            "tunnel",
            format!("from a tunnel with VNI {} into {label}", n.vni),
        )),
    );
    port::stage_defaults(&mut f, &dp, &port::LS, "l2-network", n.id.as_str());
    port::acl_defaults(&mut f, &dp, &port::LS, "l2-network", n.id.as_str());
    for table in [t::ARP_RSP, t::SERVICES] {
        f.flow(
            &dp,
            table,
            Scope::All,
            Flow::new(0, Match::new(), vec![Action::Next]).origin(o("l2-network", label.clone())),
        );
    }
    f.flow(
        &dp,
        t::L2_LKUP,
        Scope::All,
        Flow::new(
            80,
            Match::new().eth_dst_is(EthMatch::Multicast),
            vec![Action::Flood(names::flood(&n.id))],
        )
        .origin(o(
            "flood",
            format!("broadcast and multicast go to every port of {label}"),
        )),
    );
    f.flow(
        &dp,
        t::L2_LKUP,
        Scope::All,
        Flow::new(0, Match::new(), vec![Action::Drop])
            .origin(o("l2-lookup", format!("no port of {label} has this MAC"))),
    );
    let mut members: Vec<String> = intent
        .service_ports_of_service(n.id.as_str())
        .map(|sp| sp.id.to_string())
        .collect();
    members.sort();
    f.flood_groups.push(FloodGroup {
        name: names::flood(&n.id),
        ports: members,
    });

    // Gateways: subnets attached to a VRF answer ARP for their gateway with
    // the VRF's router MAC and hand packets for it to the router.
    for s in &n.subnets {
        let Some(gw) = s.gateway else { continue };
        // DNS for the network's names, answered on the gateway address.
        if gw.is_ipv4() {
            f.flow(
                &dp,
                t::SERVICES,
                Scope::All,
                Flow::new(
                    100,
                    Match::new().ip_dst(IpNet::from(gw)).udp_dst(53),
                    vec![Action::LocalService {
                        service: Service::Dns,
                        context: n.id.to_string(),
                    }],
                )
                .origin(o("dns", format!("DNS of {label} answered on {gw}"))),
            );
            f.flow(
                &dp,
                t::ACL,
                Scope::All,
                Flow::new(
                    names::prio::ACL_DHCP,
                    Match::new().ip_dst(IpNet::from(gw)).udp_dst(53),
                    vec![Action::Next],
                )
                .origin(o("dns", format!("DNS to the local server on {gw}"))),
            );
        }
        let Some(vrf) = intent.l3vpn_of_subnet(s.id.as_str()) else {
            continue;
        };
        let rmac = router_mac(&vrf.id);
        let leg = names::leg_switch(&s.id);
        f.ports.push(PortDecl {
            name: leg.clone(),
            datapath: dp.clone(),
            binding: Binding::Internal,
            mac: Some(rmac),
            ips: vec![gw],
        });
        let gw_detail = format!(
            "gateway {gw} of {} routes in l3vpn {}",
            s.cidr,
            if vrf.name.is_empty() {
                vrf.id.as_str()
            } else {
                &vrf.name
            }
        );
        match gw {
            IpAddr::V4(g4) => f.flow(
                &dp,
                t::ARP_RSP,
                Scope::All,
                Flow::new(
                    100,
                    Match::new().arp().arp_op(1).arp_tpa(g4),
                    vec![Action::ArpReply { mac: rmac }],
                )
                .origin(Origin::new("gateway", s.id.as_str(), gw_detail.clone())),
            ),
            IpAddr::V6(g6) => {
                f.flow(
                    &dp,
                    t::ARP_RSP,
                    Scope::All,
                    Flow::new(
                        100,
                        Match::new().icmp6().icmp_type(135).nd_target(g6),
                        vec![Action::NdAdvert {
                            mac: rmac,
                            router: true,
                        }],
                    )
                    .origin(Origin::new(
                        "gateway",
                        s.id.as_str(),
                        gw_detail.clone(),
                    )),
                );
                if let IpNet::V6(prefix) = s.cidr {
                    f.flow(
                        &dp,
                        t::SERVICES,
                        Scope::All,
                        Flow::new(
                            100,
                            Match::new().icmp6().icmp_type(133),
                            vec![Action::LocalService {
                                service: Service::RouterAdvert,
                                context: s.id.to_string(),
                            }],
                        )
                        .origin(Origin::new(
                            "router-advert",
                            s.id.as_str(),
                            gw_detail.clone(),
                        )),
                    );
                    f.services.push(ServiceConfig::RouterAdvert {
                        context: s.id.to_string(),
                        datapath: dp.clone(),
                        router_mac: rmac,
                        prefix,
                        mtu: weft_model::DEFAULT_MTU,
                    });
                }
            }
        }
        f.flow(
            &dp,
            t::L2_LKUP,
            Scope::All,
            Flow::new(
                60,
                Match::new().eth_dst(rmac).ip_src(s.cidr),
                vec![
                    Action::SetInPort(names::leg_router(&s.id)),
                    Action::goto(names::lr(&vrf.id), names::lr_table::IP_INPUT),
                ],
            )
            .origin(Origin::new(
                "gateway",
                s.id.as_str(),
                format!("to the router: {gw_detail}"),
            )),
        );
    }

    // DNS records: instance port names of the network's ports.
    let mut records: Vec<(String, Vec<IpAddr>)> = Vec::new();
    for sp in intent.service_ports_of_service(n.id.as_str()) {
        if let Some(p) = intent.port_of_interface(sp.interface.as_str())
            && !p.name.is_empty()
            && !sp.fixed_ips.is_empty()
        {
            records.push((p.name.clone(), sp.fixed_ips.iter().map(|x| x.ip).collect()));
        }
    }
    records.sort();
    f.services.push(ServiceConfig::Dns {
        context: n.id.to_string(),
        domain: domain(n),
        records,
    });
    f
}

/// A service port on a switch.
pub(crate) fn port(intent: &Intent, sp: &ServicePort) -> Option<Fragment> {
    let n = intent.l2_networks().get(&sp.service)?;
    let c = PortCtx::new(intent, sp)?;
    let mut f = Fragment::default();
    let dp = names::ls(&n.id);
    let p = c.name().to_string();
    port::common(&mut f, &c, &dp, &port::LS, &[]);
    let m = mac(c.port.mac);
    let lbl = if c.port.name.is_empty() {
        format!("service-port {}", sp.id)
    } else {
        format!("port {} ({})", c.port.name, sp.id)
    };
    let o = |kind: &str, detail: String| Origin::new(kind, sp.id.as_str(), detail);

    // ARP/ND answered from the binding; a VM probing its own address gets no answer.
    for ip in sp.fixed_ips.iter().map(|x| x.ip) {
        match ip {
            IpAddr::V4(a) => {
                f.flow(
                    &dp,
                    t::ARP_RSP,
                    Scope::All,
                    Flow::new(
                        100,
                        Match::new().arp().arp_op(1).arp_tpa(a),
                        vec![Action::ArpReply { mac: m }],
                    )
                    .origin(o("arp", format!("{a} is at {m} ({lbl})"))),
                );
                f.flow(
                    &dp,
                    t::ARP_RSP,
                    Scope::Ingress(p.clone()),
                    Flow::new(
                        110,
                        Match::new().in_port(&p).arp().arp_tpa(a),
                        vec![Action::Next],
                    )
                    .origin(o("arp", format!("{lbl} probing its own address {a}"))),
                );
            }
            IpAddr::V6(a) => {
                f.flow(
                    &dp,
                    t::ARP_RSP,
                    Scope::All,
                    Flow::new(
                        100,
                        Match::new().icmp6().icmp_type(135).nd_target(a),
                        vec![Action::NdAdvert {
                            mac: m,
                            router: false,
                        }],
                    )
                    .origin(o("nd", format!("{a} is at {m} ({lbl})"))),
                );
                f.flow(
                    &dp,
                    t::ARP_RSP,
                    Scope::Ingress(p.clone()),
                    Flow::new(
                        110,
                        Match::new().in_port(&p).icmp6().icmp_type(135).nd_target(a),
                        vec![Action::Next],
                    )
                    .origin(o("nd", format!("{lbl} probing its own address {a}"))),
                );
            }
        }
    }

    // DHCPv4 from the first IPv4 address's subnet, if it serves DHCP.
    let v4 = sp.fixed_ips.iter().find_map(|x| match x.ip {
        IpAddr::V4(a) => Some((a, x.subnet.clone())),
        _ => None,
    });
    if let Some((ip, Some(sid))) = v4
        && let Some(s) = n.subnets.iter().find(|s| s.id == sid)
        && s.dhcp
        && let IpNet::V4(cidr) = s.cidr
    {
        let gateway = match s.gateway {
            Some(IpAddr::V4(g)) => Some(g),
            _ => None,
        };
        let mut dns: Vec<std::net::Ipv4Addr> = s
            .dns_servers
            .iter()
            .filter_map(|d| match d {
                IpAddr::V4(a) => Some(*a),
                _ => None,
            })
            .collect();
        if dns.is_empty()
            && let Some(g) = gateway
        {
            dns.push(g);
        }
        let routes = s
            .host_routes
            .iter()
            .filter_map(|r| match (r.destination, r.nexthop) {
                (IpNet::V4(d), IpAddr::V4(nh)) => Some((d, nh)),
                _ => None,
            })
            .collect();
        f.services.push(ServiceConfig::Dhcp4 {
            context: sp.id.to_string(),
            mac: m,
            ip,
            prefix_len: cidr.prefix_len(),
            gateway,
            server: gateway.unwrap_or_else(|| {
                std::net::Ipv4Addr::from(u32::from(cidr.network()).wrapping_add(1))
            }),
            server_mac: intent
                .l3vpn_of_subnet(sid.as_str())
                .map(|v| router_mac(&v.id))
                .unwrap_or_else(|| names::service_mac(&n.id)),
            dns,
            mtu: c.port.mtu,
            routes,
            hostname: c.port.name.clone(),
            domain: domain(n),
        });
        f.flow(
            &dp,
            t::SERVICES,
            Scope::Ingress(p.clone()),
            Flow::new(
                100,
                Match::new()
                    .in_port(&p)
                    .ip4()
                    .ip_proto(ip_proto::UDP)
                    .l4_src(ValueRange::exact(68))
                    .l4_dst(ValueRange::exact(67)),
                vec![Action::LocalService {
                    service: Service::Dhcp4,
                    context: sp.id.to_string(),
                }],
            )
            .origin(o(
                "dhcp",
                format!("DHCP for {lbl}: {ip}/{}", cidr.prefix_len()),
            )),
        );
    }

    // Destination lookup by MAC (and by the MACs of allowed address pairs).
    let mut macs = vec![m];
    macs.extend(
        sp.allowed_address_pairs
            .iter()
            .filter_map(|a| a.mac.map(mac)),
    );
    macs.sort();
    macs.dedup();
    for dm in macs {
        f.flow(
            &dp,
            t::L2_LKUP,
            Scope::All,
            Flow::new(
                50,
                Match::new().eth_dst(dm),
                vec![Action::SetOutPort(p.clone()), Action::Next],
            )
            .origin(o("l2-lookup", format!("{dm} is {lbl}"))),
        );
    }
    Some(f)
}

/// The member addresses of a security group among the ports of one service,
/// for rules naming it as remote group. The shard of the empty service
/// always exists (empty), so the set is never missing; the others exist
/// while they have members. Host programs merge the shards of a set.
pub(crate) fn sg_addrs(
    intent: &Intent,
    g: &SecurityGroup,
    service: &weft_model::Id,
) -> Option<Fragment> {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    if !service.as_str().is_empty() {
        for sp in intent
            .service_ports_of_service(service.as_str())
            .filter(|sp| sp.security_groups.contains(&g.id))
        {
            for ip in sp.fixed_ips.iter().map(|x| IpNet::from(x.ip)) {
                if ip.addr().is_ipv4() {
                    v4.push(ip)
                } else {
                    v6.push(ip)
                }
            }
            for pair in &sp.allowed_address_pairs {
                if pair.ip.addr().is_ipv4() {
                    v4.push(pair.ip)
                } else {
                    v6.push(pair.ip)
                }
            }
        }
        if v4.is_empty() && v6.is_empty() {
            return None;
        }
    }
    let mut f = Fragment::default();
    f.address_sets.push(AddressSet {
        name: names::sg_set(&g.id, false),
        prefixes: v4,
    });
    f.address_sets.push(AddressSet {
        name: names::sg_set(&g.id, true),
        prefixes: v6,
    });
    Some(f)
}
