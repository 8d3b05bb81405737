//! Small constructors so compilers and tests write flows tersely:
//! `Match::new().in_port("p1").ip4_dst("10.0.0.0/24".parse()?).tcp_dst(80)`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::*;

impl Match {
    /// The empty match (matches everything).
    pub fn new() -> Self {
        Self::default()
    }

    /// `inport == "name"`.
    pub fn in_port(mut self, name: impl Into<String>) -> Self {
        self.in_port = Some(name.into());
        self
    }

    /// `outport == "name"`.
    pub fn out_port(mut self, name: impl Into<String>) -> Self {
        self.out_port = Some(name.into());
        self
    }

    /// `vlan.vid == vid`, or untagged with `None`.
    pub fn vlan(mut self, vid: Option<u16>) -> Self {
        self.vlan = Some(match vid {
            Some(v) => VlanMatch::Vid(v),
            None => VlanMatch::Untagged,
        });
        self
    }

    /// `eth.src == mac`.
    pub fn eth_src(mut self, mac: MacAddr) -> Self {
        self.eth_src = Some(EthMatch::Exact(mac));
        self
    }

    /// `eth.dst == mac`.
    pub fn eth_dst(mut self, mac: MacAddr) -> Self {
        self.eth_dst = Some(EthMatch::Exact(mac));
        self
    }

    /// Any condition on `eth.dst`.
    pub fn eth_dst_is(mut self, m: EthMatch) -> Self {
        self.eth_dst = Some(m);
        self
    }

    /// Any condition on `eth.src`.
    pub fn eth_src_is(mut self, m: EthMatch) -> Self {
        self.eth_src = Some(m);
        self
    }

    /// `eth.type == t`.
    pub fn eth_type(mut self, t: u16) -> Self {
        self.eth_type = Some(t);
        self
    }

    /// `ip4`.
    pub fn ip4(self) -> Self {
        self.eth_type(ethertype::IPV4)
    }

    /// `ip6`.
    pub fn ip6(self) -> Self {
        self.eth_type(ethertype::IPV6)
    }

    /// `arp`.
    pub fn arp(self) -> Self {
        self.eth_type(ethertype::ARP)
    }

    /// `arp.op == op`.
    pub fn arp_op(mut self, op: u16) -> Self {
        self.arp_op = Some(op);
        self
    }

    /// `arp.tpa == addr`.
    pub fn arp_tpa(mut self, addr: Ipv4Addr) -> Self {
        self.arp_tpa = Some(Ipv4Net::from(addr));
        self
    }

    /// `arp.spa == prefix`.
    pub fn arp_spa(mut self, net: Ipv4Net) -> Self {
        self.arp_spa = Some(net);
        self
    }

    /// `arp.sha == mac`.
    pub fn arp_sha(mut self, mac: MacAddr) -> Self {
        self.arp_sha = Some(mac);
        self
    }

    /// `ip4.src == prefix` / `ip6.src == prefix`.
    pub fn ip_src(mut self, net: impl Into<IpNet>) -> Self {
        self.ip_src = Some(IpMatch::Prefix(net.into()));
        self
    }

    /// `ip4.dst == prefix` / `ip6.dst == prefix`.
    pub fn ip_dst(mut self, net: impl Into<IpNet>) -> Self {
        self.ip_dst = Some(IpMatch::Prefix(net.into()));
        self
    }

    /// `ip.src == addr` (a host prefix).
    pub fn ip_src_addr(self, addr: IpAddr) -> Self {
        self.ip_src(IpNet::from(addr))
    }

    /// `ip.dst == addr` (a host prefix).
    pub fn ip_dst_addr(self, addr: IpAddr) -> Self {
        self.ip_dst(IpNet::from(addr))
    }

    /// `ip4.dst == prefix`.
    pub fn ip4_dst(self, net: Ipv4Net) -> Self {
        self.ip_dst(net)
    }

    /// `ip6.dst == prefix`.
    pub fn ip6_dst(self, net: Ipv6Net) -> Self {
        self.ip_dst(net)
    }

    /// `ip.src == $set`.
    pub fn ip_src_set(mut self, set: impl Into<String>) -> Self {
        self.ip_src = Some(IpMatch::Set(set.into()));
        self
    }

    /// `ip.dst == $set`.
    pub fn ip_dst_set(mut self, set: impl Into<String>) -> Self {
        self.ip_dst = Some(IpMatch::Set(set.into()));
        self
    }

    /// `ip.proto == p`.
    pub fn ip_proto(mut self, p: u8) -> Self {
        self.ip_proto = Some(p);
        self
    }

    /// `tcp`.
    pub fn tcp(self) -> Self {
        self.ip_proto(ip_proto::TCP)
    }

    /// `udp`.
    pub fn udp(self) -> Self {
        self.ip_proto(ip_proto::UDP)
    }

    /// `icmp4` (also sets `ip4`).
    pub fn icmp4(self) -> Self {
        self.ip4().ip_proto(ip_proto::ICMP)
    }

    /// `icmp6` (also sets `ip6`).
    pub fn icmp6(self) -> Self {
        self.ip6().ip_proto(ip_proto::ICMPV6)
    }

    /// `ip.ttl <= max`.
    pub fn ttl_at_most(mut self, max: u8) -> Self {
        self.ip_ttl = Some(ValueRange::new(0, max));
        self
    }

    /// `tcp.dst == port` (also sets `tcp`).
    pub fn tcp_dst(self, port: u16) -> Self {
        self.tcp().l4_dst(ValueRange::exact(port))
    }

    /// `udp.dst == port` (also sets `udp`).
    pub fn udp_dst(self, port: u16) -> Self {
        self.udp().l4_dst(ValueRange::exact(port))
    }

    /// L4 destination port range.
    pub fn l4_dst(mut self, r: ValueRange<u16>) -> Self {
        self.l4_dst = Some(r);
        self
    }

    /// L4 source port range.
    pub fn l4_src(mut self, r: ValueRange<u16>) -> Self {
        self.l4_src = Some(r);
        self
    }

    /// `tcp.flags & mask == value`.
    pub fn tcp_flags(mut self, value: u16, mask: u16) -> Self {
        self.tcp_flags = Some(Masked::new(value, mask));
        self
    }

    /// `icmp.type == t`.
    pub fn icmp_type(mut self, t: u8) -> Self {
        self.icmp_type = Some(t);
        self
    }

    /// `icmp.code == c`.
    pub fn icmp_code(mut self, c: u8) -> Self {
        self.icmp_code = Some(c);
        self
    }

    /// `nd.target == addr`.
    pub fn nd_target(mut self, addr: Ipv6Addr) -> Self {
        self.nd_target = Some(addr);
        self
    }

    /// `ct_state & mask == value`, e.g. `ct(ct_state::TRK | ct_state::EST, ct_state::TRK |
    /// ct_state::EST | ct_state::INV)` for `ct.trk && ct.est && !ct.inv`.
    pub fn ct(mut self, value: u8, mask: u8) -> Self {
        self.ct_state = Some(Masked::new(value, mask));
        self
    }

    /// `regN & mask == value`.
    pub fn reg(mut self, reg: u8, value: u32, mask: u32) -> Self {
        self.regs.insert(reg, Masked::new(value, mask));
        self
    }

    /// `l3.len > n`.
    pub fn l3_len_gt(mut self, n: u16) -> Self {
        self.l3_len_gt = Some(n);
        self
    }
}

impl Origin {
    /// An origin from its three parts.
    pub fn new(kind: impl Into<String>, id: impl Into<String>, detail: impl Into<String>) -> Self {
        Origin {
            kind: kind.into(),
            id: id.into(),
            detail: detail.into(),
        }
    }
}

impl Flow {
    /// A flow with an empty origin; chain [`Flow::origin`] to set it.
    pub fn new(priority: u16, r#match: Match, actions: Vec<Action>) -> Self {
        Flow {
            priority,
            r#match,
            actions,
            origin: Origin::default(),
        }
    }

    /// Sets the origin.
    pub fn origin(mut self, origin: Origin) -> Self {
        self.origin = origin;
        self
    }
}

impl Action {
    /// `output("port");`
    pub fn output(port: impl Into<String>) -> Self {
        Action::Output(port.into())
    }

    /// `goto("datapath", "table");`
    pub fn goto(datapath: impl Into<String>, table: impl Into<String>) -> Self {
        Action::Goto {
            datapath: datapath.into(),
            table: table.into(),
        }
    }
}

impl Datapath {
    /// A datapath with the given tables, all empty.
    pub fn new(name: impl Into<String>, kind: DatapathKind, vni: u32, tables: &[&str]) -> Self {
        Datapath {
            name: name.into(),
            kind,
            vni,
            router_macs: Vec::new(),
            tables: tables
                .iter()
                .map(|t| Table {
                    name: (*t).to_string(),
                    flows: Vec::new(),
                })
                .collect(),
        }
    }

    /// The table named `name`, if any.
    pub fn table_mut(&mut self, name: &str) -> Option<&mut Table> {
        self.tables.iter_mut().find(|t| t.name == name)
    }
}

impl LogicalPort {
    /// A port on this host behind `vif` with the given VLAN tag stack (outermost first).
    pub fn local(
        name: impl Into<String>,
        datapath: impl Into<String>,
        vif: impl Into<String>,
        vlans: Vec<u16>,
    ) -> Self {
        LogicalPort {
            name: name.into(),
            datapath: datapath.into(),
            location: PortLocation::Local {
                vif: vif.into(),
                vlans,
            },
            mac: None,
            ips: Vec::new(),
        }
    }

    /// A port on another host.
    pub fn remote(
        name: impl Into<String>,
        datapath: impl Into<String>,
        host: impl Into<String>,
        tunnel_ip: IpAddr,
    ) -> Self {
        LogicalPort {
            name: name.into(),
            datapath: datapath.into(),
            location: PortLocation::Remote {
                host: host.into(),
                tunnel_ip,
            },
            mac: None,
            ips: Vec::new(),
        }
    }

    /// An internal port (a router leg) of `datapath`.
    pub fn internal(name: impl Into<String>, datapath: impl Into<String>) -> Self {
        LogicalPort {
            name: name.into(),
            datapath: datapath.into(),
            location: PortLocation::Internal,
            mac: None,
            ips: Vec::new(),
        }
    }

    /// Sets the port's MAC and IPs (informational).
    pub fn with_addresses(mut self, mac: MacAddr, ips: Vec<IpAddr>) -> Self {
        self.mac = Some(mac);
        self.ips = ips;
        self
    }
}

impl Program {
    /// An empty program for `host`.
    pub fn new(host: impl Into<String>) -> Self {
        Program {
            host: host.into(),
            ..Default::default()
        }
    }

    /// The datapath named `name`, if any.
    pub fn datapath(&self, name: &str) -> Option<&Datapath> {
        self.datapaths.iter().find(|d| d.name == name)
    }

    /// The datapath named `name`, if any, for editing.
    pub fn datapath_mut(&mut self, name: &str) -> Option<&mut Datapath> {
        self.datapaths.iter_mut().find(|d| d.name == name)
    }

    /// The port named `name`, if any.
    pub fn port(&self, name: &str) -> Option<&LogicalPort> {
        self.ports.iter().find(|p| p.name == name)
    }

    /// Appends `flow` to table `table` of datapath `datapath`; returns false when either does
    /// not exist.
    pub fn add_flow(&mut self, datapath: &str, table: &str, flow: Flow) -> bool {
        match self.datapath_mut(datapath).and_then(|d| d.table_mut(table)) {
            Some(t) => {
                t.flows.push(flow);
                true
            }
            None => false,
        }
    }

    /// Sorts every list (datapaths, ports, groups, sets, entries, flows) into one canonical order,
    /// so two programs with the same content compare and serialize equal. Table order inside a
    /// datapath and action order are meaningful and kept.
    pub fn canonicalize(&mut self) {
        self.datapaths.sort_by(|a, b| a.name.cmp(&b.name));
        for dp in &mut self.datapaths {
            dp.router_macs.sort();
            for t in &mut dp.tables {
                t.flows.sort();
            }
        }
        self.ports.sort();
        self.flood_groups.sort();
        self.ecmp_groups.sort();
        self.address_sets.sort();
        for s in &mut self.address_sets {
            s.prefixes.sort();
        }
        self.tunnel_entries.sort();
    }
}
