//! Weft's compiler: intent → logical pipelines, incrementally.
//!
//! The compiled state is a map from *owners* — the units of recomputation —
//! to [`Fragment`]s of pipeline (flows with their scope, port declarations,
//! groups, address sets, service configurations):
//!
//! | owner | what it emits |
//! |---|---|
//! | `Network(n)` | the switch skeleton, default flows, flood group, gateways, DNS |
//! | `Vrf(v)` | the router skeleton, legs, ping/TTL, subnet and static routes (and their leaks) |
//! | `Port(sp)` | everything of one service port: port security, ACLs, ARP, lookup, delivery |
//! | `VrfIp(v, ip)` | the host route of one address of a VRF (anycast: ECMP), and its leaks |
//! | `SgAddrs(g)` | the address sets of a security group's members |
//!
//! A change to the intent dirties a few owners ([`Compiler::apply`]); only
//! those are recomputed. [`Compiler::full`] computes every owner; a property
//! test checks that both agree, fragment for fragment.
//!
//! Host views ([`view`]) pick from the fragments what one host needs: the
//! datapaths of its neighbourhood, the ingress and egress flows of its own
//! ports only, and the location of every port it may send to.
//!
//! This crate is pure: it reads an [`Intent`] and produces data.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use weft_model::{Change, Id, Intent, Kind};
use weft_pipeline::ir::{
    AddressSet, DatapathKind, EcmpGroup, FloodGroup, Flow, MacAddr, TunnelEntry,
};

mod deps;
pub mod names;
mod port;
mod router;
mod switch;
pub mod trace;
pub mod view;

pub use view::{HostDirectory, HostView};

/// A unit of recomputation.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Owner {
    /// An l2-network's switch.
    Network(Id),
    /// An l3vpn's router.
    Vrf(Id),
    /// A service port.
    Port(Id),
    /// One address of a VRF.
    VrfIp(Id, IpAddr),
    /// Routes learned from BGP peers that a VRF imports.
    Imported(Id),
    /// A security group's member addresses among the ports of one service
    /// (sharding by service keeps a one-port change from recomputing a set
    /// of every port). The shard with an empty service id always exists, so
    /// a set is never missing.
    SgAddrs(Id, Id),
}

impl Owner {
    /// A stable text key (record keys of host views).
    pub fn key(&self) -> String {
        match self {
            Owner::Network(id) => format!("net/{id}"),
            Owner::Vrf(id) => format!("vrf/{id}"),
            Owner::Port(id) => format!("port/{id}"),
            Owner::VrfIp(id, ip) => format!("vrfip/{id}/{ip}"),
            Owner::SgAddrs(id, svc) => format!("sg/{id}/{svc}"),
            Owner::Imported(id) => format!("imported/{id}"),
        }
    }
}

/// Which hosts get a flow.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// Every host that has the datapath.
    All,
    /// Only the host of this port (flows matching `inport == port`).
    Ingress(String),
    /// Only the host of this port (its egress filtering and delivery).
    EgressLocal(String),
    /// Every host that has the datapath but not the port (send it over).
    EgressRemote(String),
}

/// A flow with the datapath and table it belongs to and who gets it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ScopedFlow {
    /// Datapath name.
    pub dp: String,
    /// Table name.
    pub table: std::borrow::Cow<'static, str>,
    /// Which hosts get it.
    pub scope: Scope,
    /// The flow.
    pub flow: Flow,
}

/// A datapath an owner declares.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DatapathDecl {
    /// Name.
    pub name: String,
    /// Switch or router.
    pub kind: DatapathKind,
    /// VNI between hosts.
    pub vni: u32,
    /// Router MACs answered on it.
    pub router_macs: Vec<MacAddr>,
}

/// Where a declared port is bound.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Binding {
    /// Behind a vNIC on a host (the vif is the instance port id).
    Vif {
        /// The host it is bound to, if any.
        host: Option<String>,
        /// The vNIC (instance port id).
        vif: String,
        /// VLAN tags, outermost first.
        vlans: Vec<u16>,
    },
    /// On another host, reached through a tunnel to its address (resolved
    /// in host views).
    Remote {
        /// The host.
        host: String,
        /// Its tunnel endpoint.
        tunnel_ip: IpAddr,
    },
    /// A router leg, or a port whose host is unknown or unreachable.
    Internal,
}

/// A logical port an owner declares.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortDecl {
    /// Name (a service port id, or a leg name).
    pub name: String,
    /// Its datapath.
    pub datapath: String,
    /// Where it is.
    pub binding: Binding,
    /// MAC.
    pub mac: Option<MacAddr>,
    /// Addresses.
    pub ips: Vec<IpAddr>,
}

/// Configuration of a local service, looked up by the context key the
/// `LocalService` action carries.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ServiceConfig {
    /// DHCPv4 for one port.
    Dhcp4 {
        /// Context key (the service port id).
        context: String,
        /// The client's MAC.
        mac: MacAddr,
        /// The address to hand out.
        ip: std::net::Ipv4Addr,
        /// Its prefix length.
        prefix_len: u8,
        /// Default gateway, if the subnet has one.
        gateway: Option<std::net::Ipv4Addr>,
        /// The server's address (the gateway, or the subnet's first address).
        server: std::net::Ipv4Addr,
        /// The server's MAC (the router's when the subnet is routed).
        server_mac: MacAddr,
        /// DNS servers.
        dns: Vec<std::net::Ipv4Addr>,
        /// Interface MTU.
        mtu: u16,
        /// Classless static routes (destination, next hop).
        routes: Vec<(ipnet::Ipv4Net, std::net::Ipv4Addr)>,
        /// Host name (the instance port's name).
        hostname: String,
        /// Domain searched.
        domain: String,
    },
    /// DNS answers for the ports of one network.
    Dns {
        /// Context key (the network id).
        context: String,
        /// Domain of the network's names.
        domain: String,
        /// Name → addresses.
        records: Vec<(String, Vec<IpAddr>)>,
    },
    /// Router advertisements for an IPv6 subnet.
    RouterAdvert {
        /// Context key (the subnet id).
        context: String,
        /// The switch whose local ports get periodic adverts.
        datapath: String,
        /// The router's MAC.
        router_mac: MacAddr,
        /// The prefix advertised.
        prefix: ipnet::Ipv6Net,
        /// Link MTU.
        mtu: u16,
    },
}

impl ServiceConfig {
    /// The context key.
    pub fn context(&self) -> &str {
        match self {
            ServiceConfig::Dhcp4 { context, .. }
            | ServiceConfig::Dns { context, .. }
            | ServiceConfig::RouterAdvert { context, .. } => context,
        }
    }
}

/// Everything one owner contributes to the pipeline.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fragment {
    /// Datapaths declared.
    pub datapaths: Vec<DatapathDecl>,
    /// Flows.
    pub flows: Vec<ScopedFlow>,
    /// Ports declared.
    pub ports: Vec<PortDecl>,
    /// Flood groups.
    pub flood_groups: Vec<FloodGroup>,
    /// ECMP groups.
    pub ecmp_groups: Vec<EcmpGroup>,
    /// Address sets.
    pub address_sets: Vec<AddressSet>,
    /// Tunnel entry points.
    pub tunnel_entries: Vec<TunnelEntry>,
    /// Local service configurations.
    pub services: Vec<ServiceConfig>,
}

impl Fragment {
    /// Adds a flow.
    pub(crate) fn flow(&mut self, dp: &str, table: &'static str, scope: Scope, flow: Flow) {
        self.flows.push(ScopedFlow {
            dp: dp.to_string(),
            table: std::borrow::Cow::Borrowed(table),
            scope,
            flow,
        });
    }

    /// Sorts every list so equal content compares equal.
    pub fn canonicalize(&mut self) {
        self.datapaths.sort();
        self.flows.sort();
        self.ports.sort();
        self.flood_groups.sort();
        for g in &mut self.flood_groups {
            g.ports.sort();
        }
        self.ecmp_groups.sort();
        self.address_sets.sort();
        for s in &mut self.address_sets {
            s.prefixes.sort();
            s.prefixes.dedup();
        }
        self.tunnel_entries.sort();
        self.services.sort();
    }

    /// Datapaths this fragment puts flows or ports into.
    pub fn touched_datapaths(&self) -> BTreeSet<&str> {
        let mut s: BTreeSet<&str> = self.flows.iter().map(|f| f.dp.as_str()).collect();
        s.extend(self.ports.iter().map(|p| p.datapath.as_str()));
        s.extend(self.datapaths.iter().map(|d| d.name.as_str()));
        s
    }

    /// Number of flows.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// True when the fragment holds nothing.
    pub fn is_empty(&self) -> bool {
        *self == Fragment::default()
    }
}

/// A route learned from outside (a BGP peer), offered to every VRF that
/// imports one of its route targets.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ExternalRoute {
    /// Destination.
    pub prefix: ipnet::IpNet,
    /// The tunnel endpoint behind which the prefix is (the BGP next hop).
    pub next_hop: IpAddr,
    /// VNI (label) to send with.
    pub vni: u32,
    /// Inner destination MAC (EVPN router MAC), if the peer gave one.
    pub router_mac: Option<MacAddr>,
    /// Route targets it carries.
    pub route_targets: Vec<weft_model::RouteTarget>,
    /// Preference among routes for the same prefix (higher wins).
    pub local_pref: u32,
    /// Where it came from, for traces (peer, AS, RD).
    pub source: String,
}

/// The compiled pipeline: one fragment per owner.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Compiler {
    /// Routes learned from outside, by prefix order.
    external: Arc<Vec<ExternalRoute>>,
    fragments: BTreeMap<Owner, Arc<Fragment>>,
    /// Owners with flows or ports in each datapath.
    by_dp: BTreeMap<String, BTreeSet<Owner>>,
    /// Owners contributing to each address set.
    by_set: BTreeMap<String, BTreeSet<Owner>>,
}

/// What an incremental step did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// Owners whose fragment changed, was added or removed.
    pub changed: BTreeSet<Owner>,
    /// Owners recomputed (including unchanged results).
    pub recomputed: usize,
}

impl Compiler {
    /// Compiles everything from scratch.
    pub fn full(intent: &Intent) -> Compiler {
        Self::full_with(intent, Arc::new(Vec::new()))
    }

    /// Compiles everything from scratch, with routes learned from outside.
    pub fn full_with(intent: &Intent, external: Arc<Vec<ExternalRoute>>) -> Compiler {
        let owners: Vec<Owner> = deps::all_owners(intent).into_iter().collect();
        let ext = &external;
        // Owners are independent: compute them on every core. The result
        // does not depend on how the work is split.
        let workers = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 8);
        let chunk = owners.len().div_ceil(workers).max(1);
        let computed: Vec<Vec<(Owner, Fragment)>> = std::thread::scope(|s| {
            let handles: Vec<_> = owners
                .chunks(chunk)
                .map(|part| {
                    s.spawn(move || {
                        part.iter()
                            .filter_map(|o| compute_with(intent, ext, o).map(|f| (o.clone(), f)))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("compile workers do not panic"))
                .collect()
        });
        let mut c = Compiler {
            external: external.clone(),
            ..Compiler::default()
        };
        for (owner, f) in computed.into_iter().flatten() {
            c.insert(owner, Arc::new(f));
        }
        c
    }

    /// Applies committed changes incrementally. `intent` is the state after them.
    pub fn apply(&mut self, intent: &Intent, changes: &[Change]) -> Delta {
        let mut dirty = BTreeSet::new();
        for ch in changes {
            deps::dirty_owners(intent, ch, &mut dirty);
        }
        self.recompute(intent, dirty)
    }

    /// Replaces the routes learned from outside; recomputes the VRFs' imports.
    pub fn set_external(&mut self, intent: &Intent, routes: Vec<ExternalRoute>) -> Delta {
        let mut routes = routes;
        routes.sort();
        routes.dedup();
        self.external = Arc::new(routes);
        let dirty = intent
            .l3vpns()
            .keys()
            .cloned()
            .map(Owner::Imported)
            .collect();
        self.recompute(intent, dirty)
    }

    /// The routes learned from outside.
    pub fn external(&self) -> &[ExternalRoute] {
        &self.external
    }

    fn recompute(&mut self, intent: &Intent, dirty: BTreeSet<Owner>) -> Delta {
        let mut delta = Delta {
            recomputed: dirty.len(),
            ..Delta::default()
        };
        let external = self.external.clone();
        for owner in dirty {
            let new = compute_with(intent, &external, &owner);
            let old = self.fragments.get(&owner);
            let same = match (&new, old) {
                (Some(n), Some(o)) => **o == *n,
                (None, None) => true,
                _ => false,
            };
            if same {
                continue;
            }
            self.remove(&owner);
            if let Some(f) = new {
                self.insert(owner.clone(), Arc::new(f));
            }
            delta.changed.insert(owner);
        }
        delta
    }

    fn insert(&mut self, owner: Owner, f: Arc<Fragment>) {
        for dp in f.touched_datapaths() {
            self.by_dp
                .entry(dp.to_string())
                .or_default()
                .insert(owner.clone());
        }
        for s in &f.address_sets {
            self.by_set
                .entry(s.name.clone())
                .or_default()
                .insert(owner.clone());
        }
        self.fragments.insert(owner, f);
    }

    fn remove(&mut self, owner: &Owner) {
        if let Some(f) = self.fragments.remove(owner) {
            for dp in f.touched_datapaths() {
                if let Some(s) = self.by_dp.get_mut(dp) {
                    s.remove(owner);
                    if s.is_empty() {
                        self.by_dp.remove(dp);
                    }
                }
            }
            for set in &f.address_sets {
                if let Some(s) = self.by_set.get_mut(&set.name) {
                    s.remove(owner);
                    if s.is_empty() {
                        self.by_set.remove(&set.name);
                    }
                }
            }
        }
    }

    /// Every owner's fragment.
    pub fn fragments(&self) -> &BTreeMap<Owner, Arc<Fragment>> {
        &self.fragments
    }

    /// The fragment of one owner.
    pub fn fragment(&self, owner: &Owner) -> Option<&Arc<Fragment>> {
        self.fragments.get(owner)
    }

    /// Owners contributing to an address set.
    pub fn owners_of_set(&self, set: &str) -> impl Iterator<Item = &Owner> {
        self.by_set.get(set).into_iter().flatten()
    }

    /// Owners contributing to a datapath.
    pub fn owners_of_datapath(&self, dp: &str) -> impl Iterator<Item = &Owner> {
        self.by_dp.get(dp).into_iter().flatten()
    }

    /// Total number of flows (all scopes).
    pub fn flow_count(&self) -> usize {
        self.fragments.values().map(|f| f.flows.len()).sum()
    }
}

/// Computes one owner's fragment from the intent, or `None` if the owner no
/// longer exists.
pub fn compute(intent: &Intent, owner: &Owner) -> Option<Fragment> {
    compute_with(intent, &[], owner)
}

/// Computes one owner's fragment given the routes learned from outside.
pub fn compute_with(
    intent: &Intent,
    external: &[ExternalRoute],
    owner: &Owner,
) -> Option<Fragment> {
    let mut f = match owner {
        Owner::Imported(id) => router::imported(intent.l3vpns().get(id)?, external)?,
        Owner::Network(id) => switch::network(intent, intent.l2_networks().get(id)?),
        Owner::Vrf(id) => router::vrf(intent, intent.l3vpns().get(id)?),
        Owner::Port(id) => {
            let sp = intent.service_ports().get(id)?;
            match sp.service_kind {
                Kind::L2Network => switch::port(intent, sp)?,
                _ => router::routed_port(intent, sp)?,
            }
        }
        Owner::VrfIp(vrf, ip) => router::vrf_ip(intent, intent.l3vpns().get(vrf)?, *ip)?,
        Owner::SgAddrs(id, svc) => {
            switch::sg_addrs(intent, intent.security_groups().get(id)?, svc)?
        }
    };
    f.canonicalize();
    Some(f)
}
