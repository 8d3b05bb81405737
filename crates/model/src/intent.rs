//! The in-memory intent database: every object by kind and id, plus the
//! indexes validation and the compiler need. All mutation goes through
//! [`Intent::put`] and [`Intent::remove`], which keep the indexes exact, so
//! the indexes are always derivable from the objects (a test checks it).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use crate::resources::*;
use crate::types::{Id, Mac, RouteDistinguisher};

/// Secondary indexes, all derived from the objects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Indexes {
    pub project_names: HashMap<String, Id>,
    /// Objects per project (projects themselves excluded).
    pub per_project: HashMap<Id, BTreeSet<(Kind, Id)>>,
    /// Interfaces by parent (port or interface).
    pub children: HashMap<Id, BTreeSet<Id>>,
    /// Service port by interface (at most one).
    pub sp_by_interface: HashMap<Id, Id>,
    /// Service ports by service.
    pub sp_by_service: HashMap<Id, BTreeSet<Id>>,
    /// Service ports by security group.
    pub sp_by_sg: HashMap<Id, BTreeSet<Id>>,
    /// Security groups whose rules name a group as remote group.
    pub sg_referrers: HashMap<Id, BTreeSet<Id>>,
    /// Network of each subnet.
    pub subnet_network: HashMap<Id, Id>,
    /// L3vpn each subnet is attached to.
    pub subnet_vpn: HashMap<Id, Id>,
    /// Addresses used by l2 service ports, per network.
    pub net_ips: HashMap<Id, HashMap<IpAddr, Id>>,
    /// MACs used by l2 service ports, per network.
    pub net_macs: HashMap<Id, HashMap<Mac, Id>>,
    /// Addresses of routed ports per l3vpn (several ports may share one: anycast).
    pub vpn_ips: HashMap<Id, HashMap<IpAddr, BTreeSet<Id>>>,
    /// VNIs in use (networks and l3vpns share one space).
    pub vnis: HashMap<u32, Id>,
    /// Route distinguishers in use.
    pub rds: HashMap<RouteDistinguisher, Id>,
    /// Provider segments in use.
    pub provider_segments: HashMap<(String, ProviderType, Option<u32>), Id>,
    /// Site links by carried service.
    pub links_by_service: HashMap<Id, BTreeSet<Id>>,
    /// Instance ports by bound host.
    pub ports_by_host: HashMap<String, BTreeSet<Id>>,
    /// How many instance ports use each MAC (MACs may repeat across networks).
    pub port_macs: HashMap<Mac, usize>,
}

/// Every object of the intent model, with indexes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Intent {
    pub(crate) projects: BTreeMap<Id, Project>,
    pub(crate) instance_ports: BTreeMap<Id, InstancePort>,
    pub(crate) interfaces: BTreeMap<Id, Interface>,
    pub(crate) l2_networks: BTreeMap<Id, L2Network>,
    pub(crate) l3vpns: BTreeMap<Id, L3vpn>,
    pub(crate) security_groups: BTreeMap<Id, SecurityGroup>,
    pub(crate) site_links: BTreeMap<Id, SiteLink>,
    pub(crate) service_ports: BTreeMap<Id, ServicePort>,
    pub(crate) idx: Indexes,
}

fn add<K: std::hash::Hash + Eq, V: Ord>(m: &mut HashMap<K, BTreeSet<V>>, k: K, v: V) {
    m.entry(k).or_default().insert(v);
}

fn del<K: std::hash::Hash + Eq, V: Ord>(m: &mut HashMap<K, BTreeSet<V>>, k: &K, v: &V) {
    if let Some(set) = m.get_mut(k) {
        set.remove(v);
        if set.is_empty() {
            m.remove(k);
        }
    }
}

impl Intent {
    /// An empty database.
    pub fn new() -> Self {
        Self::default()
    }

    // ----------------------------------------------------------- reading

    /// All projects.
    pub fn projects(&self) -> &BTreeMap<Id, Project> {
        &self.projects
    }
    /// All instance ports.
    pub fn instance_ports(&self) -> &BTreeMap<Id, InstancePort> {
        &self.instance_ports
    }
    /// All interfaces.
    pub fn interfaces(&self) -> &BTreeMap<Id, Interface> {
        &self.interfaces
    }
    /// All l2-networks.
    pub fn l2_networks(&self) -> &BTreeMap<Id, L2Network> {
        &self.l2_networks
    }
    /// All l3vpns.
    pub fn l3vpns(&self) -> &BTreeMap<Id, L3vpn> {
        &self.l3vpns
    }
    /// All security groups.
    pub fn security_groups(&self) -> &BTreeMap<Id, SecurityGroup> {
        &self.security_groups
    }
    /// All site links.
    pub fn site_links(&self) -> &BTreeMap<Id, SiteLink> {
        &self.site_links
    }
    /// All service ports.
    pub fn service_ports(&self) -> &BTreeMap<Id, ServicePort> {
        &self.service_ports
    }

    /// Number of objects of every kind.
    pub fn len(&self) -> usize {
        self.projects.len()
            + self.instance_ports.len()
            + self.interfaces.len()
            + self.l2_networks.len()
            + self.l3vpns.len()
            + self.security_groups.len()
            + self.site_links.len()
            + self.service_ports.len()
    }

    /// True when there are no objects.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Looks up an object of a given kind.
    pub fn get(&self, kind: Kind, id: &str) -> Option<Object> {
        Some(match kind {
            Kind::Project => Object::Project(self.projects.get(id)?.clone()),
            Kind::InstancePort => Object::InstancePort(self.instance_ports.get(id)?.clone()),
            Kind::Interface => Object::Interface(self.interfaces.get(id)?.clone()),
            Kind::L2Network => Object::L2Network(self.l2_networks.get(id)?.clone()),
            Kind::L3vpn => Object::L3vpn(self.l3vpns.get(id)?.clone()),
            Kind::SecurityGroup => Object::SecurityGroup(self.security_groups.get(id)?.clone()),
            Kind::SiteLink => Object::SiteLink(self.site_links.get(id)?.clone()),
            Kind::ServicePort => Object::ServicePort(self.service_ports.get(id)?.clone()),
        })
    }

    /// The project (owner) and revision of an object, without cloning it.
    pub fn owner_of(&self, kind: Kind, id: &str) -> Option<(&Id, u64)> {
        Some(match kind {
            Kind::Project => {
                let o = self.projects.get(id)?;
                (&o.id, o.revision)
            }
            Kind::InstancePort => {
                let o = self.instance_ports.get(id)?;
                (&o.project, o.revision)
            }
            Kind::Interface => {
                let o = self.interfaces.get(id)?;
                (&o.project, o.revision)
            }
            Kind::L2Network => {
                let o = self.l2_networks.get(id)?;
                (&o.project, o.revision)
            }
            Kind::L3vpn => {
                let o = self.l3vpns.get(id)?;
                (&o.project, o.revision)
            }
            Kind::SecurityGroup => {
                let o = self.security_groups.get(id)?;
                (&o.project, o.revision)
            }
            Kind::SiteLink => {
                let o = self.site_links.get(id)?;
                (&o.project, o.revision)
            }
            Kind::ServicePort => {
                let o = self.service_ports.get(id)?;
                (&o.project, o.revision)
            }
        })
    }

    /// The kind of the object with this id, if any (ids are unique across kinds).
    pub fn kind_of(&self, id: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| self.contains(*k, id))
    }

    /// True if an object of `kind` has this id.
    pub fn contains(&self, kind: Kind, id: &str) -> bool {
        match kind {
            Kind::Project => self.projects.contains_key(id),
            Kind::InstancePort => self.instance_ports.contains_key(id),
            Kind::Interface => self.interfaces.contains_key(id),
            Kind::L2Network => self.l2_networks.contains_key(id),
            Kind::L3vpn => self.l3vpns.contains_key(id),
            Kind::SecurityGroup => self.security_groups.contains_key(id),
            Kind::SiteLink => self.site_links.contains_key(id),
            Kind::ServicePort => self.service_ports.contains_key(id),
        }
    }

    /// Ids of objects of `kind` in id order, starting after `after`.
    pub fn ids(&self, kind: Kind) -> Box<dyn Iterator<Item = &Id> + '_> {
        match kind {
            Kind::Project => Box::new(self.projects.keys()),
            Kind::InstancePort => Box::new(self.instance_ports.keys()),
            Kind::Interface => Box::new(self.interfaces.keys()),
            Kind::L2Network => Box::new(self.l2_networks.keys()),
            Kind::L3vpn => Box::new(self.l3vpns.keys()),
            Kind::SecurityGroup => Box::new(self.security_groups.keys()),
            Kind::SiteLink => Box::new(self.site_links.keys()),
            Kind::ServicePort => Box::new(self.service_ports.keys()),
        }
    }

    /// The project named `name`.
    pub fn project_by_name(&self, name: &str) -> Option<&Project> {
        self.idx
            .project_names
            .get(name)
            .and_then(|id| self.projects.get(id))
    }

    /// The service port bound to an interface.
    pub fn service_port_of_interface(&self, interface: &str) -> Option<&ServicePort> {
        self.idx
            .sp_by_interface
            .get(interface)
            .and_then(|id| self.service_ports.get(id))
    }

    /// Service ports bound to a service.
    pub fn service_ports_of_service(&self, service: &str) -> impl Iterator<Item = &ServicePort> {
        self.idx
            .sp_by_service
            .get(service)
            .into_iter()
            .flatten()
            .filter_map(|id| self.service_ports.get(id))
    }

    /// Service ports using a security group.
    pub fn service_ports_of_security_group(&self, sg: &str) -> impl Iterator<Item = &ServicePort> {
        self.idx
            .sp_by_sg
            .get(sg)
            .into_iter()
            .flatten()
            .filter_map(|id| self.service_ports.get(id))
    }

    /// Security groups whose rules reference `sg` as remote group.
    pub fn security_groups_referencing(&self, sg: &str) -> impl Iterator<Item = &Id> {
        self.idx.sg_referrers.get(sg).into_iter().flatten()
    }

    /// Child interfaces of a port or interface.
    pub fn children_of(&self, parent: &str) -> impl Iterator<Item = &Interface> {
        self.idx
            .children
            .get(parent)
            .into_iter()
            .flatten()
            .filter_map(|id| self.interfaces.get(id))
    }

    /// The network owning a subnet, and the subnet.
    pub fn subnet(&self, subnet: &str) -> Option<(&L2Network, &Subnet)> {
        let net = self.l2_networks.get(self.idx.subnet_network.get(subnet)?)?;
        let s = net.subnets.iter().find(|s| s.id.as_str() == subnet)?;
        Some((net, s))
    }

    /// The l3vpn a subnet is attached to.
    pub fn l3vpn_of_subnet(&self, subnet: &str) -> Option<&L3vpn> {
        self.idx
            .subnet_vpn
            .get(subnet)
            .and_then(|id| self.l3vpns.get(id))
    }

    /// Instance ports bound to a host.
    pub fn ports_on_host(&self, host: &str) -> impl Iterator<Item = &InstancePort> {
        self.idx
            .ports_by_host
            .get(host)
            .into_iter()
            .flatten()
            .filter_map(|id| self.instance_ports.get(id))
    }

    /// Every host that has at least one port bound to it.
    pub fn hosts(&self) -> impl Iterator<Item = &String> {
        self.idx.ports_by_host.keys()
    }

    /// Site links carrying a service.
    pub fn site_links_of_service(&self, service: &str) -> impl Iterator<Item = &SiteLink> {
        self.idx
            .links_by_service
            .get(service)
            .into_iter()
            .flatten()
            .filter_map(|id| self.site_links.get(id))
    }

    /// Objects in a project (projects excluded), by kind and id.
    pub fn objects_in_project(&self, project: &str) -> impl Iterator<Item = &(Kind, Id)> {
        self.idx.per_project.get(project).into_iter().flatten()
    }

    /// True if some instance port uses this MAC.
    pub fn mac_in_use(&self, mac: &Mac) -> bool {
        self.idx.port_macs.contains_key(mac)
    }

    /// The instance port at the root of an interface, and the VLAN path.
    pub fn port_of_interface(&self, interface: &str) -> Option<&InstancePort> {
        let i = self.interfaces.get(interface)?;
        self.instance_ports.get(&i.port)
    }

    // ---------------------------------------------------------- writing

    /// Inserts or replaces an object, keeping the indexes exact.
    pub fn put(&mut self, obj: Object) {
        if let Some(old) = self.get(obj.kind(), obj.id().as_str()) {
            self.unindex(&old);
        }
        self.index(&obj);
        match obj {
            Object::Project(o) => {
                self.projects.insert(o.id.clone(), o);
            }
            Object::InstancePort(o) => {
                self.instance_ports.insert(o.id.clone(), o);
            }
            Object::Interface(o) => {
                self.interfaces.insert(o.id.clone(), o);
            }
            Object::L2Network(o) => {
                self.l2_networks.insert(o.id.clone(), o);
            }
            Object::L3vpn(o) => {
                self.l3vpns.insert(o.id.clone(), o);
            }
            Object::SecurityGroup(o) => {
                self.security_groups.insert(o.id.clone(), o);
            }
            Object::SiteLink(o) => {
                self.site_links.insert(o.id.clone(), o);
            }
            Object::ServicePort(o) => {
                self.service_ports.insert(o.id.clone(), o);
            }
        }
    }

    /// Removes an object, keeping the indexes exact; returns it.
    pub fn remove(&mut self, kind: Kind, id: &str) -> Option<Object> {
        let old = self.get(kind, id)?;
        self.unindex(&old);
        match kind {
            Kind::Project => {
                self.projects.remove(id);
            }
            Kind::InstancePort => {
                self.instance_ports.remove(id);
            }
            Kind::Interface => {
                self.interfaces.remove(id);
            }
            Kind::L2Network => {
                self.l2_networks.remove(id);
            }
            Kind::L3vpn => {
                self.l3vpns.remove(id);
            }
            Kind::SecurityGroup => {
                self.security_groups.remove(id);
            }
            Kind::SiteLink => {
                self.site_links.remove(id);
            }
            Kind::ServicePort => {
                self.service_ports.remove(id);
            }
        }
        Some(old)
    }

    /// Sets the revision of an object in place (after its commit).
    pub fn set_revision(&mut self, kind: Kind, id: &str, revision: u64) {
        match kind {
            Kind::Project => self.projects.get_mut(id).map(|o| o.revision = revision),
            Kind::InstancePort => self
                .instance_ports
                .get_mut(id)
                .map(|o| o.revision = revision),
            Kind::Interface => self.interfaces.get_mut(id).map(|o| o.revision = revision),
            Kind::L2Network => self.l2_networks.get_mut(id).map(|o| o.revision = revision),
            Kind::L3vpn => self.l3vpns.get_mut(id).map(|o| o.revision = revision),
            Kind::SecurityGroup => self
                .security_groups
                .get_mut(id)
                .map(|o| o.revision = revision),
            Kind::SiteLink => self.site_links.get_mut(id).map(|o| o.revision = revision),
            Kind::ServicePort => self
                .service_ports
                .get_mut(id)
                .map(|o| o.revision = revision),
        };
    }

    /// Rebuilds every index from the objects (used by tests to check the
    /// incremental maintenance, and after bulk loads).
    pub fn reindex(&mut self) {
        self.idx = Indexes::default();
        let all: Vec<Object> = Kind::ALL
            .into_iter()
            .flat_map(|k| {
                self.ids(k)
                    .cloned()
                    .collect::<Vec<_>>()
                    .into_iter()
                    .map(move |id| (k, id))
            })
            .filter_map(|(k, id)| self.get(k, id.as_str()))
            .collect();
        for o in &all {
            self.index(o);
        }
    }

    /// True when the indexes equal a fresh rebuild.
    pub fn indexes_consistent(&self) -> bool {
        let mut fresh = self.clone();
        fresh.reindex();
        fresh.idx == self.idx
    }

    /// The MAC of the instance port under an interface.
    fn mac_of_interface(&self, interface: &Id) -> Option<Mac> {
        self.port_of_interface(interface.as_str()).map(|p| p.mac)
    }

    fn index(&mut self, obj: &Object) {
        if !matches!(obj, Object::Project(_)) {
            add(
                &mut self.idx.per_project,
                obj.project().clone(),
                (obj.kind(), obj.id().clone()),
            );
        }
        match obj {
            Object::Project(p) => {
                self.idx.project_names.insert(p.name.clone(), p.id.clone());
            }
            Object::InstancePort(p) => {
                if let Some(h) = &p.host {
                    add(&mut self.idx.ports_by_host, h.clone(), p.id.clone());
                }
                *self.idx.port_macs.entry(p.mac).or_default() += 1;
            }
            Object::Interface(i) => add(&mut self.idx.children, i.parent.clone(), i.id.clone()),
            Object::L2Network(n) => {
                self.idx.vnis.insert(n.vni, n.id.clone());
                for s in &n.subnets {
                    self.idx.subnet_network.insert(s.id.clone(), n.id.clone());
                }
                if let Some(p) = &n.provider {
                    self.idx.provider_segments.insert(
                        (
                            p.physical_network.clone(),
                            p.network_type,
                            p.segmentation_id,
                        ),
                        n.id.clone(),
                    );
                }
            }
            Object::L3vpn(v) => {
                self.idx.vnis.insert(v.vni, v.id.clone());
                self.idx.rds.insert(v.route_distinguisher, v.id.clone());
                for s in &v.subnets {
                    self.idx.subnet_vpn.insert(s.clone(), v.id.clone());
                }
            }
            Object::SecurityGroup(g) => {
                for r in &g.rules {
                    if let Some(rg) = &r.remote_group {
                        add(&mut self.idx.sg_referrers, rg.clone(), g.id.clone());
                    }
                }
            }
            Object::SiteLink(l) => {
                for s in &l.services {
                    add(&mut self.idx.links_by_service, s.clone(), l.id.clone());
                }
            }
            Object::ServicePort(sp) => {
                self.idx
                    .sp_by_interface
                    .insert(sp.interface.clone(), sp.id.clone());
                add(
                    &mut self.idx.sp_by_service,
                    sp.service.clone(),
                    sp.id.clone(),
                );
                for g in &sp.security_groups {
                    add(&mut self.idx.sp_by_sg, g.clone(), sp.id.clone());
                }
                match sp.service_kind {
                    Kind::L2Network => {
                        let ips = self.idx.net_ips.entry(sp.service.clone()).or_default();
                        for f in &sp.fixed_ips {
                            ips.insert(f.ip, sp.id.clone());
                        }
                        if let Some(mac) = self.mac_of_interface(&sp.interface) {
                            self.idx
                                .net_macs
                                .entry(sp.service.clone())
                                .or_default()
                                .insert(mac, sp.id.clone());
                        }
                    }
                    _ => {
                        let ips = self.idx.vpn_ips.entry(sp.service.clone()).or_default();
                        for f in &sp.fixed_ips {
                            ips.entry(f.ip).or_default().insert(sp.id.clone());
                        }
                    }
                }
            }
        }
    }

    fn unindex(&mut self, obj: &Object) {
        if !matches!(obj, Object::Project(_)) {
            del(
                &mut self.idx.per_project,
                obj.project(),
                &(obj.kind(), obj.id().clone()),
            );
        }
        match obj {
            Object::Project(p) => {
                self.idx.project_names.remove(&p.name);
            }
            Object::InstancePort(p) => {
                if let Some(h) = &p.host {
                    del(&mut self.idx.ports_by_host, h, &p.id);
                }
                if let Some(n) = self.idx.port_macs.get_mut(&p.mac) {
                    *n -= 1;
                    if *n == 0 {
                        self.idx.port_macs.remove(&p.mac);
                    }
                }
            }
            Object::Interface(i) => del(&mut self.idx.children, &i.parent, &i.id),
            Object::L2Network(n) => {
                self.idx.vnis.remove(&n.vni);
                for s in &n.subnets {
                    self.idx.subnet_network.remove(&s.id);
                }
                if let Some(p) = &n.provider {
                    self.idx.provider_segments.remove(&(
                        p.physical_network.clone(),
                        p.network_type,
                        p.segmentation_id,
                    ));
                }
            }
            Object::L3vpn(v) => {
                self.idx.vnis.remove(&v.vni);
                self.idx.rds.remove(&v.route_distinguisher);
                for s in &v.subnets {
                    self.idx.subnet_vpn.remove(s);
                }
            }
            Object::SecurityGroup(g) => {
                for r in &g.rules {
                    if let Some(rg) = &r.remote_group {
                        del(&mut self.idx.sg_referrers, rg, &g.id);
                    }
                }
            }
            Object::SiteLink(l) => {
                for s in &l.services {
                    del(&mut self.idx.links_by_service, s, &l.id);
                }
            }
            Object::ServicePort(sp) => {
                self.idx.sp_by_interface.remove(&sp.interface);
                del(&mut self.idx.sp_by_service, &sp.service, &sp.id);
                for g in &sp.security_groups {
                    del(&mut self.idx.sp_by_sg, g, &sp.id);
                }
                match sp.service_kind {
                    Kind::L2Network => {
                        if let Some(ips) = self.idx.net_ips.get_mut(&sp.service) {
                            for f in &sp.fixed_ips {
                                ips.remove(&f.ip);
                            }
                            if ips.is_empty() {
                                self.idx.net_ips.remove(&sp.service);
                            }
                        }
                        if let Some(mac) = self.mac_of_interface(&sp.interface)
                            && let Some(macs) = self.idx.net_macs.get_mut(&sp.service)
                        {
                            macs.remove(&mac);
                            if macs.is_empty() {
                                self.idx.net_macs.remove(&sp.service);
                            }
                        }
                    }
                    _ => {
                        if let Some(ips) = self.idx.vpn_ips.get_mut(&sp.service) {
                            for f in &sp.fixed_ips {
                                if let Some(set) = ips.get_mut(&f.ip) {
                                    set.remove(&sp.id);
                                    if set.is_empty() {
                                        ips.remove(&f.ip);
                                    }
                                }
                            }
                            if ips.is_empty() {
                                self.idx.vpn_ips.remove(&sp.service);
                            }
                        }
                    }
                }
            }
        }
    }
}
