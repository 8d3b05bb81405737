//! Commands against the intent database: validation and application.
//!
//! [`Intent::apply`] validates a command against the current state and, if
//! it holds, applies it and returns the changed objects plus an undo record.
//! A refused command changes nothing. Compound commands (an instance port
//! created with bindings) are all or nothing.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ModelError, Result};
use crate::intent::Intent;
use crate::ipam;
use crate::resources::*;
use crate::types::{Id, Mac, RouteDistinguisher, RouteTarget};

/// Where fresh ids come from (the controller uses random UUIDs; tests use
/// counters). Keeping this outside makes the model deterministic.
pub trait IdSource {
    /// A new, never used id for an object of `kind` (subnets and rules use
    /// the kind of their parent).
    fn new_id(&mut self, kind: Kind) -> Id;
}

/// Sequential ids (`port-1`, `port-2`, ...) for tests and examples.
#[derive(Debug, Default)]
pub struct CountingIds {
    next: u64,
}

impl IdSource for CountingIds {
    fn new_id(&mut self, kind: Kind) -> Id {
        self.next += 1;
        Id::new(format!("{}-{}", kind.singular(), self.next))
    }
}

/// A typed create body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spec {
    /// A project.
    Project(ProjectSpec),
    /// An instance port.
    InstancePort(InstancePortSpec),
    /// An interface.
    Interface(InterfaceSpec),
    /// An l2-network.
    L2Network(L2NetworkSpec),
    /// An l3vpn.
    L3vpn(L3vpnSpec),
    /// A security group.
    SecurityGroup(SecurityGroupSpec),
    /// A site link.
    SiteLink(SiteLinkSpec),
    /// A service port.
    ServicePort(ServicePortSpec),
}

fn parse_json<T: DeserializeOwned>(kind: Kind, body: &[u8]) -> Result<T> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let err = ModelError::invalid(format!("invalid {kind} body: {}", e.inner()));
        if path == "." { err } else { err.at(path) }
    })?;
    de.end()
        .map_err(|e| ModelError::invalid(format!("invalid {kind} body: {e}")))?;
    Ok(value)
}

impl Spec {
    /// The kind this spec creates.
    pub fn kind(&self) -> Kind {
        match self {
            Spec::Project(_) => Kind::Project,
            Spec::InstancePort(_) => Kind::InstancePort,
            Spec::Interface(_) => Kind::Interface,
            Spec::L2Network(_) => Kind::L2Network,
            Spec::L3vpn(_) => Kind::L3vpn,
            Spec::SecurityGroup(_) => Kind::SecurityGroup,
            Spec::SiteLink(_) => Kind::SiteLink,
            Spec::ServicePort(_) => Kind::ServicePort,
        }
    }

    /// Parses a JSON body for `kind`, naming the offending field on error.
    /// A `project` member is ignored here (the caller resolves it).
    pub fn parse(kind: Kind, body: &[u8]) -> Result<Spec> {
        Self::parse_value(kind, &strip_project(body)?)
    }

    fn parse_value(kind: Kind, body: &[u8]) -> Result<Spec> {
        Ok(match kind {
            Kind::Project => Spec::Project(parse_json(kind, body)?),
            Kind::InstancePort => Spec::InstancePort(parse_json(kind, body)?),
            Kind::Interface => Spec::Interface(parse_json(kind, body)?),
            Kind::L2Network => Spec::L2Network(parse_json(kind, body)?),
            Kind::L3vpn => Spec::L3vpn(parse_json(kind, body)?),
            Kind::SecurityGroup => Spec::SecurityGroup(parse_json(kind, body)?),
            Kind::SiteLink => Spec::SiteLink(parse_json(kind, body)?),
            Kind::ServicePort => Spec::ServicePort(parse_json(kind, body)?),
        })
    }

    /// True if this spec asks for a provider mapping (its own policy entry).
    pub fn has_provider(&self) -> bool {
        matches!(self, Spec::L2Network(n) if n.provider.is_some())
    }
}

/// Removes a top-level `project` member from a JSON object body.
fn strip_project(body: &[u8]) -> Result<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(body)
        .map_err(|e| ModelError::invalid(format!("request body is not valid JSON: {e}")))?;
    match &mut v {
        Value::Object(m) => {
            m.remove("project");
        }
        _ => {
            return Err(ModelError::invalid("request body must be a JSON object"));
        }
    }
    Ok(serde_json::to_vec(&v).expect("JSON values serialize"))
}

/// A change to the intent database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Create an object; `project` is the owner (ignored for projects).
    Create {
        /// Owning project.
        project: Option<Id>,
        /// What to create.
        spec: Spec,
    },
    /// Apply a JSON merge patch (RFC 7396) to an object's settable fields.
    Update {
        /// Kind of the object.
        kind: Kind,
        /// Its id.
        id: Id,
        /// The merge patch.
        patch: Value,
        /// Refuse unless the object is at this revision.
        if_match: Option<u64>,
    },
    /// Delete an object.
    Delete {
        /// Kind of the object.
        kind: Kind,
        /// Its id.
        id: Id,
        /// Refuse unless the object is at this revision.
        if_match: Option<u64>,
    },
    /// A host reports a port's status (the controller checks the host owns it).
    SetPortStatus {
        /// The instance port.
        id: Id,
        /// Its new status.
        status: PortStatus,
    },
}

/// One object written or removed by a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Kind of the object.
    pub kind: Kind,
    /// Its id.
    pub id: Id,
    /// The object before the command, or `None` when created.
    pub before: Option<Object>,
    /// The new object, or `None` when removed.
    pub after: Option<Object>,
}

/// The result of an applied command.
#[derive(Clone, Debug)]
pub struct Applied {
    /// The primary object after the command (`None` after a delete).
    pub object: Option<Object>,
    /// Every object written or removed, in order.
    pub changes: Vec<Change>,
    /// Previous states, to roll back with [`Intent::undo`].
    undo: Vec<(Kind, Id, Option<Object>)>,
}

/// Accumulates the writes of one command so it can be rolled back.
struct Tx {
    changes: Vec<Change>,
    undo: Vec<(Kind, Id, Option<Object>)>,
}

impl Intent {
    /// Validates and applies a command. On error nothing changed.
    pub fn apply(&mut self, cmd: Command, ids: &mut dyn IdSource) -> Result<Applied> {
        let mut tx = Tx {
            changes: Vec::new(),
            undo: Vec::new(),
        };
        let result = self.apply_in(&mut tx, cmd, ids);
        match result {
            Ok(primary) => {
                let object = primary.and_then(|(k, id)| self.get(k, id.as_str()));
                Ok(Applied {
                    object,
                    changes: tx.changes,
                    undo: tx.undo,
                })
            }
            Err(e) => {
                self.rollback(tx.undo);
                Err(e)
            }
        }
    }

    /// Rolls back an applied command (the most recent first when undoing several).
    pub fn undo(&mut self, applied: Applied) {
        self.rollback(applied.undo);
    }

    fn rollback(&mut self, undo: Vec<(Kind, Id, Option<Object>)>) {
        for (kind, id, before) in undo.into_iter().rev() {
            match before {
                Some(obj) => self.put(obj),
                None => {
                    self.remove(kind, id.as_str());
                }
            }
        }
    }

    fn stage(&mut self, tx: &mut Tx, obj: Object) {
        let before = self.get(obj.kind(), obj.id().as_str());
        tx.undo.push((obj.kind(), obj.id().clone(), before.clone()));
        tx.changes.push(Change {
            kind: obj.kind(),
            id: obj.id().clone(),
            before,
            after: Some(obj.clone()),
        });
        self.put(obj);
    }

    fn stage_remove(&mut self, tx: &mut Tx, kind: Kind, id: &Id) {
        let before = self.remove(kind, id.as_str());
        tx.undo.push((kind, id.clone(), before.clone()));
        tx.changes.push(Change {
            kind,
            id: id.clone(),
            before,
            after: None,
        });
    }

    fn apply_in(
        &mut self,
        tx: &mut Tx,
        cmd: Command,
        ids: &mut dyn IdSource,
    ) -> Result<Option<(Kind, Id)>> {
        match cmd {
            Command::Create { project, spec } => {
                let kind = spec.kind();
                let project = match (kind, project) {
                    (Kind::Project, _) => None,
                    (_, Some(p)) => {
                        if !self.projects.contains_key(&p) {
                            return Err(ModelError::not_found(format!(
                                "project {p} does not exist"
                            ))
                            .at("project"));
                        }
                        Some(p)
                    }
                    (_, None) => {
                        return Err(
                            ModelError::invalid(format!("a {kind} needs a project")).at("project")
                        );
                    }
                };
                let id = ids.new_id(kind);
                self.create(tx, id.clone(), project, spec, ids)?;
                Ok(Some((kind, id)))
            }
            Command::Update {
                kind,
                id,
                patch,
                if_match,
            } => {
                let existing = self
                    .get(kind, id.as_str())
                    .ok_or_else(|| not_found(kind, &id))?;
                check_if_match(kind, &id, existing.revision(), if_match)?;
                let spec = self.patched_spec(&existing, &patch)?;
                let project = Some(existing.project().clone());
                self.build_and_stage(tx, id.clone(), project, spec, Some(&existing), ids)?;
                Ok(Some((kind, id)))
            }
            Command::Delete { kind, id, if_match } => {
                let existing = self
                    .get(kind, id.as_str())
                    .ok_or_else(|| not_found(kind, &id))?;
                check_if_match(kind, &id, existing.revision(), if_match)?;
                self.check_unused(kind, &id)?;
                self.stage_remove(tx, kind, &id);
                Ok(None)
            }
            Command::SetPortStatus { id, status } => {
                let mut port = self
                    .instance_ports
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| not_found(Kind::InstancePort, &id))?;
                if port.status != status {
                    port.status = status;
                    self.stage(tx, Object::InstancePort(port));
                }
                Ok(Some((Kind::InstancePort, id)))
            }
        }
    }

    fn create(
        &mut self,
        tx: &mut Tx,
        id: Id,
        project: Option<Id>,
        spec: Spec,
        ids: &mut dyn IdSource,
    ) -> Result<()> {
        // An instance port may bring bindings: port, untagged interface and
        // service ports are created together or not at all.
        if let Spec::InstancePort(mut port) = spec {
            let bindings = std::mem::take(&mut port.bindings);
            if bindings.len() > 1 {
                return Err(ModelError::invalid(
                    "an instance port can be created with at most one binding (its untagged interface carries one service); add VLAN interfaces and service ports for more",
                )
                .at("bindings"));
            }
            self.build_and_stage(
                tx,
                id.clone(),
                project.clone(),
                Spec::InstancePort(port),
                None,
                ids,
            )?;
            for (i, b) in bindings.into_iter().enumerate() {
                let iface = ids.new_id(Kind::Interface);
                self.build_and_stage(
                    tx,
                    iface.clone(),
                    project.clone(),
                    Spec::Interface(InterfaceSpec {
                        name: String::new(),
                        parent: id.clone(),
                        vlan: None,
                    }),
                    None,
                    ids,
                )
                .map_err(|e| e.within(format!("bindings[{i}]")))?;
                let sp = ids.new_id(Kind::ServicePort);
                self.build_and_stage(
                    tx,
                    sp,
                    project.clone(),
                    Spec::ServicePort(ServicePortSpec {
                        name: String::new(),
                        interface: iface,
                        service: b.service,
                        fixed_ips: b.fixed_ips,
                        allowed_address_pairs: b.allowed_address_pairs,
                        role: b.role,
                        security_groups: b.security_groups,
                        port_security: None,
                        preference: None,
                    }),
                    None,
                    ids,
                )
                .map_err(|e| e.within(format!("bindings[{i}]")))?;
            }
            return Ok(());
        }
        self.build_and_stage(tx, id, project, spec, None, ids)
    }

    /// The settable fields of `existing` with a merge patch applied.
    fn patched_spec(&self, existing: &Object, patch: &Value) -> Result<Spec> {
        let kind = existing.kind();
        let Value::Object(members) = patch else {
            return Err(ModelError::invalid(
                "an update body must be a JSON object (a merge patch of the fields to change)",
            ));
        };
        for key in members.keys() {
            if let Some(why) = read_only(kind, key) {
                return Err(ModelError::invalid(format!(
                    "field {key} of a {kind} cannot be set: {why}"
                ))
                .at(key.clone()));
            }
        }
        let mut current = spec_json(existing);
        merge_patch(&mut current, patch);
        let bytes = serde_json::to_vec(&current).expect("JSON values serialize");
        Spec::parse_value(kind, &bytes)
    }

    fn build_and_stage(
        &mut self,
        tx: &mut Tx,
        id: Id,
        project: Option<Id>,
        spec: Spec,
        existing: Option<&Object>,
        ids: &mut dyn IdSource,
    ) -> Result<()> {
        let obj = match spec {
            Spec::Project(s) => Object::Project(self.build_project(id, s, existing)?),
            Spec::InstancePort(s) => {
                Object::InstancePort(self.build_port(id, need(project)?, s, existing)?)
            }
            Spec::Interface(s) => {
                Object::Interface(self.build_interface(id, need(project)?, s, existing)?)
            }
            Spec::L2Network(s) => {
                Object::L2Network(self.build_network(id, need(project)?, s, existing, ids)?)
            }
            Spec::L3vpn(s) => Object::L3vpn(self.build_l3vpn(id, need(project)?, s, existing)?),
            Spec::SecurityGroup(s) => Object::SecurityGroup(self.build_security_group(
                id,
                need(project)?,
                s,
                existing,
                ids,
            )?),
            Spec::SiteLink(s) => {
                Object::SiteLink(self.build_site_link(id, need(project)?, s, existing)?)
            }
            Spec::ServicePort(s) => {
                Object::ServicePort(self.build_service_port(id, need(project)?, s, existing)?)
            }
        };
        self.stage(tx, obj);
        Ok(())
    }

    // --------------------------------------------------------- projects

    fn build_project(&self, id: Id, s: ProjectSpec, existing: Option<&Object>) -> Result<Project> {
        check_project_name(&s.name)?;
        if let Some(other) = self.project_by_name(&s.name)
            && other.id != id
        {
            return Err(ModelError::conflict(format!(
                "a project named {:?} already exists ({})",
                s.name, other.id
            ))
            .at("name"));
        }
        check_text(&s.description, "description", 1024)?;
        Ok(Project {
            id,
            name: s.name,
            description: s.description,
            revision: existing.map_or(0, |e| e.revision()),
        })
    }

    // --------------------------------------------------- instance ports

    fn build_port(
        &self,
        id: Id,
        project: Id,
        s: InstancePortSpec,
        existing: Option<&Object>,
    ) -> Result<InstancePort> {
        let old = match existing {
            Some(Object::InstancePort(p)) => Some(p),
            _ => None,
        };
        if !s.bindings.is_empty() && old.is_some() {
            return Err(ModelError::invalid(
                "bindings can only be given when creating an instance port; create service ports to bind more services",
            )
            .at("bindings"));
        }
        check_text(&s.name, "name", 255)?;
        let mac = match s.mac {
            Some(mac) => {
                if mac.is_multicast() || mac.is_zero() {
                    return Err(ModelError::invalid(format!(
                        "MAC {mac} is a multicast or zero address; a vNIC needs a unicast MAC"
                    ))
                    .at("mac"));
                }
                mac
            }
            None => match old {
                Some(p) => p.mac,
                None => self.generate_mac(&id),
            },
        };
        if let Some(old) = old
            && old.mac != mac
            && self.port_is_bound(&old.id)
        {
            return Err(ModelError::conflict(format!(
                "the MAC of instance port {} cannot change while service ports are bound to it; delete them first",
                old.id
            ))
            .at("mac"));
        }
        let mtu = s.mtu.unwrap_or(DEFAULT_MTU);
        if !(68..=9000).contains(&mtu) {
            return Err(ModelError::invalid(format!(
                "MTU {mtu} is out of range: use 68-9000 (1450 fits VXLAN over a 1500-byte underlay)"
            ))
            .at("mtu"));
        }
        if let Some(h) = &s.host {
            check_host_name(h).map_err(|e| e.at("host"))?;
        }
        Ok(InstancePort {
            id,
            project,
            name: s.name,
            mac,
            mtu,
            host: s.host,
            admin_up: s.admin_up.unwrap_or(true),
            status: old.map_or(PortStatus::Down, |p| p.status),
            revision: old.map_or(0, |p| p.revision),
        })
    }

    /// A locally administered MAC derived from the id (deterministic; the
    /// model has no randomness), skipping any already in use.
    fn generate_mac(&self, id: &Id) -> Mac {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in id.as_str().bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        loop {
            let b = h.to_be_bytes();
            // fa:16:3e is the prefix OpenStack uses; it is locally administered.
            let mac = Mac([0xfa, 0x16, 0x3e, b[5], b[6], b[7]]);
            if !self.mac_in_use(&mac) {
                return mac;
            }
            h = h.wrapping_add(1);
        }
    }

    fn port_is_bound(&self, port: &Id) -> bool {
        let mut stack = vec![port.clone()];
        while let Some(p) = stack.pop() {
            for c in self.children_of(p.as_str()) {
                if self.idx.sp_by_interface.contains_key(&c.id) {
                    return true;
                }
                stack.push(c.id.clone());
            }
        }
        false
    }

    // ------------------------------------------------------- interfaces

    fn build_interface(
        &self,
        id: Id,
        project: Id,
        s: InterfaceSpec,
        existing: Option<&Object>,
    ) -> Result<Interface> {
        check_text(&s.name, "name", 255)?;
        if let Some(Object::Interface(old)) = existing {
            if old.parent != s.parent {
                return Err(immutable("interface", "parent"));
            }
            if old.vlan != s.vlan {
                return Err(immutable("interface", "vlan"));
            }
        }
        let (port, mut vlan_path) = if let Some(p) = self.instance_ports.get(&s.parent) {
            same_project(&project, &p.project, "parent", &s.parent)?;
            (p.id.clone(), Vec::new())
        } else if let Some(i) = self.interfaces.get(&s.parent) {
            same_project(&project, &i.project, "parent", &s.parent)?;
            if s.vlan.is_none() {
                return Err(ModelError::invalid(format!(
                    "an untagged interface must sit directly on an instance port, not on interface {}; give a vlan",
                    s.parent
                ))
                .at("vlan"));
            }
            (i.port.clone(), i.vlan_path.clone())
        } else {
            return Err(ModelError::not_found(format!(
                "parent {} is neither an instance port nor an interface",
                s.parent
            ))
            .at("parent"));
        };
        if let Some(v) = s.vlan {
            if !(1..=4094).contains(&v) {
                return Err(ModelError::invalid(format!(
                    "VLAN id {v} is out of range: use 1-4094"
                ))
                .at("vlan"));
            }
            vlan_path.push(v);
        }
        if vlan_path.len() > 2 {
            return Err(
                ModelError::invalid("at most two VLAN tags (QinQ) can be nested").at("parent"),
            );
        }
        if let Some(sib) = self
            .children_of(s.parent.as_str())
            .find(|c| c.vlan == s.vlan && c.id != id)
        {
            let what = s
                .vlan
                .map_or("an untagged interface".to_string(), |v| format!("VLAN {v}"));
            return Err(ModelError::conflict(format!(
                "{} already has {what}: interface {}",
                s.parent, sib.id
            ))
            .at("vlan"));
        }
        Ok(Interface {
            id,
            project,
            name: s.name,
            parent: s.parent,
            vlan: s.vlan,
            port,
            vlan_path,
            revision: existing.map_or(0, |e| e.revision()),
        })
    }

    // ----------------------------------------------------- l2-networks

    fn build_network(
        &self,
        id: Id,
        project: Id,
        s: L2NetworkSpec,
        existing: Option<&Object>,
        ids: &mut dyn IdSource,
    ) -> Result<L2Network> {
        let old = match existing {
            Some(Object::L2Network(n)) => Some(n),
            _ => None,
        };
        check_text(&s.name, "name", 255)?;
        if let Some(p) = &s.provider {
            check_provider(p)?;
            if let Some(other) = self.idx.provider_segments.get(&(
                p.physical_network.clone(),
                p.network_type,
                p.segmentation_id,
            )) && *other != id
            {
                return Err(ModelError::conflict(format!(
                    "provider segment {} {:?} {} is already used by l2-network {other}",
                    p.physical_network,
                    p.network_type,
                    p.segmentation_id.map_or("-".into(), |v| v.to_string())
                ))
                .at("provider"));
            }
        }
        let provider_vni = match &s.provider {
            Some(Provider {
                network_type: ProviderType::Vxlan,
                segmentation_id,
                ..
            }) => *segmentation_id,
            _ => None,
        };
        if let (Some(a), Some(b)) = (s.vni, provider_vni)
            && a != b
        {
            return Err(ModelError::invalid(format!(
                "vni {a} differs from the provider segmentation id {b}; a VXLAN provider network uses its segmentation id as VNI"
            ))
            .at("vni"));
        }
        let vni = self.pick_vni(&id, s.vni.or(provider_vni).or(old.map(|o| o.vni)))?;

        let mut subnets = Vec::with_capacity(s.subnets.len());
        let mut seen_ids = HashSet::new();
        for (i, ss) in s.subnets.into_iter().enumerate() {
            let at = format!("subnets[{i}]");
            let sid = match &ss.id {
                Some(sid) => {
                    let known = old.is_some_and(|o| o.subnets.iter().any(|x| &x.id == sid));
                    if !known {
                        return Err(ModelError::invalid(format!(
                            "subnet id {sid} is not a subnet of this network; omit id for a new subnet"
                        ))
                        .at(format!("{at}.id")));
                    }
                    sid.clone()
                }
                None => ids.new_id(Kind::L2Network),
            };
            if !seen_ids.insert(sid.clone()) {
                return Err(ModelError::invalid(format!("subnet {sid} is listed twice")).at(at));
            }
            let subnet = build_subnet(sid, ss).map_err(|e| e.within(&at))?;
            if let Some(prev) = old.and_then(|o| o.subnets.iter().find(|x| x.id == subnet.id))
                && prev.cidr != subnet.cidr
            {
                return Err(ModelError::invalid(format!(
                    "the CIDR of subnet {} cannot change ({} → {}); add a new subnet instead",
                    subnet.id, prev.cidr, subnet.cidr
                ))
                .at(format!("{at}.cidr")));
            }
            if let Some(other) = subnets
                .iter()
                .find(|o: &&Subnet| o.cidr.contains(&subnet.cidr) || subnet.cidr.contains(&o.cidr))
            {
                return Err(ModelError::invalid(format!(
                    "subnets {} and {} of this network overlap",
                    other.cidr, subnet.cidr
                ))
                .at(format!("{at}.cidr")));
            }
            subnets.push(subnet);
        }
        if let Some(old) = old {
            let used = self.idx.net_ips.get(&old.id);
            for gone in old
                .subnets
                .iter()
                .filter(|o| !subnets.iter().any(|n| n.id == o.id))
            {
                if let Some(vpn) = self.idx.subnet_vpn.get(&gone.id) {
                    return Err(ModelError::conflict(format!(
                        "subnet {} ({}) is attached to l3vpn {vpn}; detach it first",
                        gone.id, gone.cidr
                    ))
                    .at("subnets"));
                }
                if let Some((ip, sp)) = used
                    .into_iter()
                    .flatten()
                    .find(|(ip, _)| gone.cidr.contains(*ip))
                {
                    return Err(ModelError::conflict(format!(
                        "subnet {} ({}) still has address {ip} used by service-port {sp}; delete it first",
                        gone.id, gone.cidr
                    ))
                    .at("subnets"));
                }
            }
            for new in &subnets {
                if let Some(vpn) = self.idx.subnet_vpn.get(&new.id)
                    && new.gateway.is_none()
                {
                    return Err(ModelError::conflict(format!(
                        "subnet {} is attached to l3vpn {vpn} and needs a gateway",
                        new.id
                    ))
                    .at("subnets"));
                }
                // Gateway or pools may not take an address already in use.
                if let (Some(gw), Some(used)) = (new.gateway, used)
                    && let Some(sp) = used.get(&gw)
                {
                    return Err(ModelError::conflict(format!(
                        "gateway {gw} of subnet {} is used by service-port {sp}",
                        new.id
                    ))
                    .at("subnets"));
                }
            }
        }
        Ok(L2Network {
            id,
            project,
            name: s.name,
            vni,
            subnets,
            provider: s.provider,
            revision: old.map_or(0, |o| o.revision),
        })
    }

    fn pick_vni(&self, id: &Id, wanted: Option<u32>) -> Result<u32> {
        match wanted {
            Some(v) => {
                if !(1..=0xff_ffff).contains(&v) {
                    return Err(ModelError::invalid(format!(
                        "VNI {v} is out of range: use 1-16777215"
                    ))
                    .at("vni"));
                }
                match self.idx.vnis.get(&v) {
                    Some(other) if other != id => Err(ModelError::conflict(format!(
                        "VNI {v} is already used by {other}"
                    ))
                    .at("vni")),
                    _ => Ok(v),
                }
            }
            None => (VNI_AUTO_START..=0xff_ffff)
                .find(|v| !self.idx.vnis.contains_key(v))
                .ok_or_else(|| ModelError::conflict("no free VNI left")),
        }
    }

    // ----------------------------------------------------------- l3vpns

    fn build_l3vpn(
        &self,
        id: Id,
        project: Id,
        s: L3vpnSpec,
        existing: Option<&Object>,
    ) -> Result<L3vpn> {
        check_text(&s.name, "name", 255)?;
        let rd_text = s.route_distinguisher.ok_or_else(|| {
            ModelError::invalid(
                "route_distinguisher is required, e.g. 64512:100 (ASN16:NN32, IPv4:NN16 or ASN32:NN16)",
            )
            .at("route_distinguisher")
        })?;
        let rd: RouteDistinguisher =
            rd_text
                .parse()
                .map_err(|e: crate::types::AdminValueParseError| {
                    ModelError::invalid(e.to_string()).at("route_distinguisher")
                })?;
        if let Some(other) = self.idx.rds.get(&rd)
            && *other != id
        {
            return Err(ModelError::conflict(format!(
                "route distinguisher {rd} is already used by l3vpn {other}"
            ))
            .at("route_distinguisher"));
        }
        let parse_rts = |list: &[String], field: &str| -> Result<Vec<RouteTarget>> {
            list.iter()
                .enumerate()
                .map(|(i, t)| {
                    t.parse::<RouteTarget>()
                        .map_err(|e| ModelError::invalid(e.to_string()).at(format!("{field}[{i}]")))
                })
                .collect()
        };
        let both = parse_rts(&s.route_targets, "route_targets")?;
        let mut import_targets = parse_rts(&s.import_targets, "import_targets")?;
        let mut export_targets = parse_rts(&s.export_targets, "export_targets")?;
        import_targets.extend(both.iter().copied());
        export_targets.extend(both.iter().copied());
        dedup(&mut import_targets);
        dedup(&mut export_targets);
        let vni = self.pick_vni(
            &id,
            s.vni.or(existing.and_then(|e| match e {
                Object::L3vpn(v) => Some(v.vni),
                _ => None,
            })),
        )?;
        for (i, r) in s.static_routes.iter().enumerate() {
            check_static_route(r).map_err(|e| e.within(format!("static_routes[{i}]")))?;
        }
        let mut attached: Vec<&Subnet> = Vec::new();
        let mut seen = HashSet::new();
        for (i, sid) in s.subnets.iter().enumerate() {
            let at = format!("subnets[{i}]");
            if !seen.insert(sid) {
                return Err(ModelError::invalid(format!("subnet {sid} is listed twice")).at(at));
            }
            let (net, subnet) = self.subnet(sid.as_str()).ok_or_else(|| {
                ModelError::not_found(format!("subnet {sid} does not exist")).at(at.clone())
            })?;
            same_project(&project, &net.project, &at, sid)?;
            if let Some(vpn) = self.idx.subnet_vpn.get(sid)
                && *vpn != id
            {
                return Err(ModelError::conflict(format!(
                    "subnet {sid} ({}) is already attached to l3vpn {vpn}",
                    subnet.cidr
                ))
                .at(at));
            }
            if subnet.gateway.is_none() {
                return Err(ModelError::invalid(format!(
                    "subnet {sid} ({}) has no gateway; a subnet attached to an l3vpn routes through its gateway",
                    subnet.cidr
                ))
                .at(at));
            }
            if let Some(o) = attached
                .iter()
                .find(|o| o.cidr.contains(&subnet.cidr) || subnet.cidr.contains(&o.cidr))
            {
                return Err(ModelError::conflict(format!(
                    "subnets {} and {} overlap; subnets attached to one l3vpn must not",
                    o.cidr, subnet.cidr
                ))
                .at(at));
            }
            attached.push(subnet);
        }
        // Routed ports of this VRF must not take addresses of attached subnets' ports.
        if let Some(routed) = self.idx.vpn_ips.get(&id) {
            for sid in &s.subnets {
                let Some((net, subnet)) = self.subnet(sid.as_str()) else {
                    continue;
                };
                let l2 = self.idx.net_ips.get(&net.id);
                for ip in routed.keys().filter(|ip| subnet.cidr.contains(*ip)) {
                    if let Some(sp) = l2.and_then(|m| m.get(ip)) {
                        return Err(ModelError::conflict(format!(
                            "address {ip} is held by routed ports of this l3vpn and by service-port {sp} in subnet {sid}"
                        ))
                        .at("subnets"));
                    }
                }
            }
        }
        Ok(L3vpn {
            id,
            project,
            name: s.name,
            route_distinguisher: rd,
            import_targets,
            export_targets,
            vni,
            static_routes: s.static_routes,
            anycast_mode: s.anycast_mode,
            subnets: s.subnets,
            revision: existing.map_or(0, |e| e.revision()),
        })
    }

    // -------------------------------------------------- security groups

    fn build_security_group(
        &self,
        id: Id,
        project: Id,
        s: SecurityGroupSpec,
        existing: Option<&Object>,
        ids: &mut dyn IdSource,
    ) -> Result<SecurityGroup> {
        check_text(&s.name, "name", 255)?;
        let old_rules: HashSet<&Id> = match existing {
            Some(Object::SecurityGroup(g)) => g.rules.iter().map(|r| &r.id).collect(),
            _ => HashSet::new(),
        };
        let mut rules = Vec::with_capacity(s.rules.len());
        let mut seen = HashSet::new();
        for (i, r) in s.rules.into_iter().enumerate() {
            let at = format!("rules[{i}]");
            let rid = match &r.id {
                Some(rid) if old_rules.contains(rid) => rid.clone(),
                Some(rid) => {
                    return Err(ModelError::invalid(format!(
                        "rule id {rid} is not a rule of this group; omit id for a new rule"
                    ))
                    .at(format!("{at}.id")));
                }
                None => ids.new_id(Kind::SecurityGroup),
            };
            if !seen.insert(rid.clone()) {
                return Err(ModelError::invalid(format!("rule {rid} is listed twice")).at(at));
            }
            let rule = self
                .build_rule(rid, r, &id, &project)
                .map_err(|e| e.within(&at))?;
            rules.push(rule);
        }
        Ok(SecurityGroup {
            id,
            project,
            name: s.name,
            stateful: s.stateful.unwrap_or(true),
            rules,
            revision: existing.map_or(0, |e| e.revision()),
        })
    }

    fn build_rule(&self, id: Id, r: RuleSpec, group: &Id, project: &Id) -> Result<Rule> {
        check_text(&r.description, "description", 255)?;
        let remote_prefix = match &r.remote_prefix {
            Some(p) => {
                let net = ipam::parse_prefix(p).map_err(|e| e.at("remote_prefix"))?;
                let v6 = matches!(net, IpNet::V6(_));
                if v6 != (r.ethertype == Ethertype::IPv6) {
                    return Err(ModelError::invalid(format!(
                        "remote prefix {net} is not {:?}; set ethertype to match",
                        r.ethertype
                    ))
                    .at("remote_prefix"));
                }
                Some(net)
            }
            None => None,
        };
        if remote_prefix.is_some() && r.remote_group.is_some() {
            return Err(
                ModelError::invalid("give remote_prefix or remote_group, not both")
                    .at("remote_group"),
            );
        }
        if let Some(rg) = &r.remote_group
            && rg != group
        {
            let g = self.security_groups.get(rg).ok_or_else(|| {
                ModelError::not_found(format!("remote group {rg} does not exist"))
                    .at("remote_group")
            })?;
            same_project(project, &g.project, "remote_group", rg)?;
        }
        let has_ports = r.port_range_min.is_some() || r.port_range_max.is_some();
        let has_icmp = r.icmp_type.is_some() || r.icmp_code.is_some();
        match r.protocol {
            Some(p) if p.has_ports() => {
                if has_icmp {
                    return Err(ModelError::invalid(format!(
                        "icmp_type/icmp_code do not apply to protocol {p}"
                    ))
                    .at("icmp_type"));
                }
            }
            Some(p) if p.is_icmp() => {
                if has_ports {
                    return Err(ModelError::invalid(format!(
                        "port ranges do not apply to protocol {p}; use icmp_type/icmp_code"
                    ))
                    .at("port_range_min"));
                }
                let v6 = p == Protocol::Icmpv6;
                if v6 != (r.ethertype == Ethertype::IPv6) {
                    return Err(ModelError::invalid(format!(
                        "protocol {p} does not go with ethertype {:?}",
                        r.ethertype
                    ))
                    .at("protocol"));
                }
                if r.icmp_code.is_some() && r.icmp_type.is_none() {
                    return Err(ModelError::invalid("icmp_code needs icmp_type").at("icmp_code"));
                }
            }
            _ => {
                if has_ports || has_icmp {
                    return Err(ModelError::invalid(
                        "ports need protocol tcp or udp; icmp type/code need protocol icmp or icmpv6",
                    )
                    .at("protocol"));
                }
            }
        }
        let (min, max) = match (r.port_range_min, r.port_range_max) {
            (Some(a), Some(b)) => (Some(a), Some(b)),
            (Some(a), None) => (Some(a), Some(a)),
            (None, Some(b)) => (Some(b), Some(b)),
            (None, None) => (None, None),
        };
        if let (Some(a), Some(b)) = (min, max)
            && a > b
        {
            return Err(ModelError::invalid(format!(
                "port_range_min {a} is greater than port_range_max {b}"
            ))
            .at("port_range_min"));
        }
        Ok(Rule {
            id,
            direction: r.direction,
            ethertype: r.ethertype,
            protocol: r.protocol,
            port_range_min: min,
            port_range_max: max,
            icmp_type: r.icmp_type,
            icmp_code: r.icmp_code,
            remote_prefix,
            remote_group: r.remote_group,
            action: r.action,
            log: r.log,
            description: r.description,
        })
    }

    // ------------------------------------------------------- site links

    fn build_site_link(
        &self,
        id: Id,
        project: Id,
        s: SiteLinkSpec,
        existing: Option<&Object>,
    ) -> Result<SiteLink> {
        check_text(&s.name, "name", 255)?;
        for (v, f) in [(&s.site, "site"), (&s.remote_site, "remote_site")] {
            if v.trim().is_empty() {
                return Err(ModelError::invalid(format!("{f} is required: name the site")).at(f));
            }
            check_text(v, f, 255)?;
        }
        if s.site == s.remote_site {
            return Err(ModelError::invalid(format!(
                "site and remote_site are both {:?}; a site link joins two different sites",
                s.site
            ))
            .at("remote_site"));
        }
        for (ip, f) in [
            (s.local_endpoint, "local_endpoint"),
            (s.remote_endpoint, "remote_endpoint"),
        ] {
            if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
                return Err(ModelError::invalid(format!(
                    "{f} {ip} is not a unicast underlay address"
                ))
                .at(f));
            }
        }
        if s.local_endpoint.is_ipv4() != s.remote_endpoint.is_ipv4() {
            return Err(ModelError::invalid(
                "local_endpoint and remote_endpoint must be of the same IP version",
            )
            .at("remote_endpoint"));
        }
        if s.local_endpoint == s.remote_endpoint {
            return Err(ModelError::invalid(
                "local_endpoint and remote_endpoint are the same address",
            )
            .at("remote_endpoint"));
        }
        let mut seen = HashSet::new();
        for (i, svc) in s.services.iter().enumerate() {
            let at = format!("services[{i}]");
            if !seen.insert(svc) {
                return Err(ModelError::invalid(format!("service {svc} is listed twice")).at(at));
            }
            let owner = if let Some(n) = self.l2_networks.get(svc) {
                &n.project
            } else if let Some(v) = self.l3vpns.get(svc) {
                &v.project
            } else {
                return Err(ModelError::not_found(format!(
                    "service {svc} is neither an l2-network nor an l3vpn"
                ))
                .at(at));
            };
            same_project(&project, owner, &at, svc)?;
        }
        Ok(SiteLink {
            id,
            project,
            name: s.name,
            site: s.site,
            remote_site: s.remote_site,
            local_endpoint: s.local_endpoint,
            remote_endpoint: s.remote_endpoint,
            services: s.services,
            admin_up: s.admin_up.unwrap_or(true),
            revision: existing.map_or(0, |e| e.revision()),
        })
    }

    // ---------------------------------------------------- service ports

    fn build_service_port(
        &self,
        id: Id,
        project: Id,
        s: ServicePortSpec,
        existing: Option<&Object>,
    ) -> Result<ServicePort> {
        let old = match existing {
            Some(Object::ServicePort(sp)) => Some(sp),
            _ => None,
        };
        check_text(&s.name, "name", 255)?;
        if let Some(old) = old {
            if old.interface != s.interface {
                return Err(immutable("service-port", "interface"));
            }
            if old.service != s.service {
                return Err(immutable("service-port", "service"));
            }
        }
        let iface = self.interfaces.get(&s.interface).ok_or_else(|| {
            ModelError::not_found(format!("interface {} does not exist", s.interface))
                .at("interface")
        })?;
        same_project(&project, &iface.project, "interface", &s.interface)?;
        if let Some(other) = self.idx.sp_by_interface.get(&s.interface)
            && *other != id
        {
            let svc = &self.service_ports[other].service;
            return Err(ModelError::conflict(format!(
                "interface {} is already bound to service {svc} by service-port {other}; an interface carries one service (add a VLAN interface for another)",
                s.interface
            ))
            .at("interface"));
        }
        let service_kind = if let Some(n) = self.l2_networks.get(&s.service) {
            same_project(&project, &n.project, "service", &s.service)?;
            Kind::L2Network
        } else if let Some(v) = self.l3vpns.get(&s.service) {
            same_project(&project, &v.project, "service", &s.service)?;
            Kind::L3vpn
        } else if let Some(k) = self.kind_of(s.service.as_str()) {
            let hint = if k == Kind::SecurityGroup {
                "; security groups are applied with the security_groups attribute of a service port"
            } else {
                ""
            };
            return Err(ModelError::invalid(format!(
                "service {} is a {k}; a service port binds an l2-network or an l3vpn{hint}",
                s.service
            ))
            .at("service"));
        } else {
            return Err(
                ModelError::not_found(format!("service {} does not exist", s.service))
                    .at("service"),
            );
        };
        let port_security = s.port_security.unwrap_or(true);
        if !port_security && !s.security_groups.is_empty() {
            return Err(ModelError::invalid(
                "security groups need port_security; drop them or enable port_security",
            )
            .at("security_groups"));
        }
        let mut seen = HashSet::new();
        for (i, g) in s.security_groups.iter().enumerate() {
            let at = format!("security_groups[{i}]");
            if !seen.insert(g) {
                return Err(
                    ModelError::invalid(format!("security group {g} is listed twice")).at(at),
                );
            }
            let sg = self.security_groups.get(g).ok_or_else(|| {
                ModelError::not_found(format!("security group {g} does not exist")).at(at.clone())
            })?;
            same_project(&project, &sg.project, &at, g)?;
        }
        for (i, pair) in s.allowed_address_pairs.iter().enumerate() {
            if pair.ip.trunc() != pair.ip {
                return Err(ModelError::invalid(format!(
                    "allowed address {} has host bits set; did you mean {}?",
                    pair.ip,
                    pair.ip.trunc()
                ))
                .at(format!("allowed_address_pairs[{i}].ip")));
            }
            if let Some(m) = pair.mac
                && (m.is_multicast() || m.is_zero())
            {
                return Err(
                    ModelError::invalid(format!("MAC {m} is not a unicast address"))
                        .at(format!("allowed_address_pairs[{i}].mac")),
                );
            }
        }
        let fixed_ips = match service_kind {
            Kind::L2Network => {
                if s.role.is_some() {
                    return Err(ModelError::invalid(
                        "role (hub/spoke) applies to routed ports of an l3vpn, not to l2-network ports",
                    )
                    .at("role"));
                }
                let net = &self.l2_networks[&s.service];
                // The MAC must be unique in the broadcast domain.
                let mac = self.instance_ports[&iface.port].mac;
                if let Some(other) = self.idx.net_macs.get(&net.id).and_then(|m| m.get(&mac))
                    && *other != id
                {
                    return Err(ModelError::conflict(format!(
                        "MAC {mac} of instance port {} is already used in l2-network {} by service-port {other}",
                        iface.port, net.id
                    ))
                    .at("interface"));
                }
                self.l2_fixed_ips(&id, net, s.fixed_ips, old)?
            }
            _ => self.routed_fixed_ips(&id, &s.service, s.fixed_ips)?,
        };
        Ok(ServicePort {
            id,
            project,
            name: s.name,
            interface: s.interface,
            service: s.service,
            service_kind,
            fixed_ips,
            allowed_address_pairs: s.allowed_address_pairs,
            role: s.role,
            security_groups: s.security_groups,
            port_security,
            preference: s.preference.unwrap_or(100),
            revision: old.map_or(0, |o| o.revision),
        })
    }

    fn l2_fixed_ips(
        &self,
        id: &Id,
        net: &L2Network,
        wanted: Option<Vec<FixedIpSpec>>,
        old: Option<&ServicePort>,
    ) -> Result<Vec<FixedIp>> {
        let used = self.idx.net_ips.get(&net.id);
        let taken_by_other = |ip: &IpAddr| used.and_then(|u| u.get(ip)).filter(|o| *o != id);
        let wanted = match wanted {
            Some(w) => w,
            None => match old {
                Some(o) => o
                    .fixed_ips
                    .iter()
                    .map(|f| FixedIpSpec {
                        subnet: f.subnet.clone(),
                        ip: Some(f.ip),
                    })
                    .collect(),
                None => {
                    // Default: one address from the first IPv4 and the first IPv6 subnet.
                    let mut d = Vec::new();
                    for v6 in [false, true] {
                        if let Some(s) = net.subnets.iter().find(|s| s.cidr.addr().is_ipv6() == v6)
                        {
                            d.push(FixedIpSpec {
                                subnet: Some(s.id.clone()),
                                ip: None,
                            });
                        }
                    }
                    d
                }
            },
        };
        let mut out: Vec<FixedIp> = Vec::with_capacity(wanted.len());
        // Addresses picked earlier in this request count as used.
        let mut picked: HashMap<IpAddr, Id> = HashMap::new();
        for (i, f) in wanted.into_iter().enumerate() {
            let at = format!("fixed_ips[{i}]");
            let subnet = match (&f.subnet, f.ip) {
                (Some(sid), _) => net.subnets.iter().find(|s| &s.id == sid).ok_or_else(|| {
                    ModelError::invalid(format!(
                        "subnet {sid} is not a subnet of l2-network {}",
                        net.id
                    ))
                    .at(format!("{at}.subnet"))
                })?,
                (None, Some(ip)) => net
                    .subnets
                    .iter()
                    .find(|s| s.cidr.contains(&ip))
                    .ok_or_else(|| {
                        ModelError::invalid(format!(
                            "IP {ip} is outside every subnet of l2-network {} ({})",
                            net.id,
                            net.subnets
                                .iter()
                                .map(|s| s.cidr.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                        .at(format!("{at}.ip"))
                    })?,
                (None, None) => {
                    return Err(ModelError::invalid("give a subnet, an ip, or both").at(at));
                }
            };
            let ip = match f.ip {
                Some(ip) => {
                    if !subnet.cidr.contains(&ip) {
                        return Err(ModelError::invalid(format!(
                            "IP {ip} is outside subnet {} ({})",
                            subnet.id, subnet.cidr
                        ))
                        .at(format!("{at}.ip")));
                    }
                    if ipam::is_reserved_in(&subnet.cidr, ip) {
                        return Err(ModelError::invalid(format!(
                            "IP {ip} is the network or broadcast address of {}",
                            subnet.cidr
                        ))
                        .at(format!("{at}.ip")));
                    }
                    if Some(ip) == subnet.gateway {
                        return Err(ModelError::conflict(format!(
                            "IP {ip} is the gateway of subnet {}",
                            subnet.cidr
                        ))
                        .at(format!("{at}.ip")));
                    }
                    if let Some(other) = taken_by_other(&ip) {
                        return Err(ModelError::conflict(format!(
                            "IP {ip} is already used in l2-network {} by service-port {other}",
                            net.id
                        ))
                        .at(format!("{at}.ip")));
                    }
                    if picked.contains_key(&ip) {
                        return Err(ModelError::invalid(format!("IP {ip} is listed twice"))
                            .at(format!("{at}.ip")));
                    }
                    ip
                }
                None => {
                    let mut merged: HashMap<IpAddr, Id> = used
                        .map(|u| {
                            u.iter()
                                .filter(|(_, o)| *o != id)
                                .map(|(k, v)| (*k, v.clone()))
                                .collect()
                        })
                        .unwrap_or_default();
                    merged.extend(picked.iter().map(|(k, v)| (*k, v.clone())));
                    ipam::allocate(subnet, Some(&merged)).ok_or_else(|| {
                        ModelError::conflict(format!(
                            "subnet {} ({}) has no free address left in its allocation pools",
                            subnet.id, subnet.cidr
                        ))
                        .at(at.clone())
                    })?
                }
            };
            picked.insert(ip, id.clone());
            out.push(FixedIp {
                subnet: Some(subnet.id.clone()),
                ip,
            });
        }
        Ok(out)
    }

    fn routed_fixed_ips(
        &self,
        id: &Id,
        vpn: &Id,
        wanted: Option<Vec<FixedIpSpec>>,
    ) -> Result<Vec<FixedIp>> {
        let Some(wanted) = wanted else {
            return Err(ModelError::invalid(
                "a routed port of an l3vpn needs fixed_ips with explicit addresses",
            )
            .at("fixed_ips"));
        };
        let l3 = &self.l3vpns[vpn];
        let mut out = Vec::with_capacity(wanted.len());
        let mut seen = HashSet::new();
        for (i, f) in wanted.into_iter().enumerate() {
            let at = format!("fixed_ips[{i}]");
            if f.subnet.is_some() {
                return Err(ModelError::invalid(
                    "a routed port's addresses belong to the l3vpn, not to a subnet; omit subnet",
                )
                .at(format!("{at}.subnet")));
            }
            let ip = f.ip.ok_or_else(|| {
                ModelError::invalid("a routed port's address must be given").at(format!("{at}.ip"))
            })?;
            if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
                return Err(
                    ModelError::invalid(format!("IP {ip} is not a unicast address"))
                        .at(format!("{at}.ip")),
                );
            }
            if !seen.insert(ip) {
                return Err(
                    ModelError::invalid(format!("IP {ip} is listed twice")).at(format!("{at}.ip"))
                );
            }
            // Anycast among routed ports is allowed; clashing with an l2 port
            // of a subnet attached to this VRF is not.
            for sid in &l3.subnets {
                if let Some((net, subnet)) = self.subnet(sid.as_str())
                    && subnet.cidr.contains(&ip)
                    && let Some(sp) = self.idx.net_ips.get(&net.id).and_then(|m| m.get(&ip))
                    && sp != id
                {
                    return Err(ModelError::conflict(format!(
                        "IP {ip} is already used by service-port {sp} in subnet {} attached to this l3vpn; the same address may be shared only by routed ports (anycast)",
                        subnet.cidr
                    ))
                    .at(format!("{at}.ip")));
                }
            }
            out.push(FixedIp { subnet: None, ip });
        }
        Ok(out)
    }

    // ------------------------------------------------------------ delete

    /// Refuses deleting an object something else still holds (409 naming it).
    fn check_unused(&self, kind: Kind, id: &Id) -> Result<()> {
        let held = |what: String| {
            Err(ModelError::conflict(format!(
                "{kind} {id} is still in use by {what}; delete or change that first"
            )))
        };
        match kind {
            Kind::Project => {
                if let Some((k, o)) = self.objects_in_project(id.as_str()).next() {
                    let n = self.objects_in_project(id.as_str()).count();
                    return held(format!("{k} {o} ({n} objects in the project)"));
                }
            }
            Kind::InstancePort | Kind::Interface => {
                if let Some(c) = self.children_of(id.as_str()).next() {
                    return held(format!("interface {}", c.id));
                }
                if let Some(sp) = self.idx.sp_by_interface.get(id) {
                    return held(format!("service-port {sp}"));
                }
            }
            Kind::L2Network | Kind::L3vpn => {
                if let Some(sp) = self.service_ports_of_service(id.as_str()).next() {
                    return held(format!("service-port {}", sp.id));
                }
                if let Some(l) = self.site_links_of_service(id.as_str()).next() {
                    return held(format!("site-link {}", l.id));
                }
                if let Some(n) = self.l2_networks.get(id) {
                    for s in &n.subnets {
                        if let Some(v) = self.idx.subnet_vpn.get(&s.id) {
                            return held(format!("l3vpn {v} (subnet {} is attached)", s.cidr));
                        }
                    }
                }
            }
            Kind::SecurityGroup => {
                if let Some(sp) = self.service_ports_of_security_group(id.as_str()).next() {
                    return held(format!("service-port {}", sp.id));
                }
                if let Some(g) = self
                    .security_groups_referencing(id.as_str())
                    .find(|g| *g != id)
                {
                    return held(format!("security-group {g} (remote group of a rule)"));
                }
            }
            Kind::SiteLink | Kind::ServicePort => {}
        }
        Ok(())
    }
}

/// First VNI handed out automatically; lower ones are left for operators.
pub const VNI_AUTO_START: u32 = 1000;

fn need(project: Option<Id>) -> Result<Id> {
    project.ok_or_else(|| ModelError::invalid("a project is required").at("project"))
}

fn not_found(kind: Kind, id: &Id) -> ModelError {
    ModelError::not_found(format!("{kind} {id} does not exist"))
}

fn immutable(kind: &str, field: &str) -> ModelError {
    ModelError::invalid(format!(
        "the {field} of a {kind} cannot change after creation; delete it and create a new one"
    ))
    .at(field)
}

fn check_if_match(kind: Kind, id: &Id, current: u64, if_match: Option<u64>) -> Result<()> {
    match if_match {
        Some(want) if want != current => Err(ModelError::precondition(format!(
            "{kind} {id} is at revision {current}, not {want}: re-read it and retry"
        ))),
        _ => Ok(()),
    }
}

fn same_project(project: &Id, owner: &Id, field: &str, id: &Id) -> Result<()> {
    if project != owner {
        // Said as "does not exist": other projects' objects are not visible.
        return Err(
            ModelError::not_found(format!("{id} does not exist in this project")).at(field),
        );
    }
    Ok(())
}

fn dedup<T: Ord + Copy>(v: &mut Vec<T>) {
    let mut seen = BTreeSet::new();
    v.retain(|x| seen.insert(*x));
}

fn check_text(s: &str, field: &str, max: usize) -> Result<()> {
    if s.len() > max {
        return Err(ModelError::invalid(format!(
            "{field} is {} bytes long; at most {max} are allowed",
            s.len()
        ))
        .at(field));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(ModelError::invalid(format!("{field} contains control characters")).at(field));
    }
    Ok(())
}

fn check_project_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !ok {
        return Err(ModelError::invalid(format!(
            "project name {name:?} is invalid: use 1-63 letters, digits, '-', '_' or '.'"
        ))
        .at("name"));
    }
    Ok(())
}

/// Host names as hosts enroll with them: DNS-like labels.
pub fn check_host_name(h: &str) -> Result<()> {
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if !ok {
        return Err(ModelError::invalid(format!(
            "host name {h:?} is invalid: use letters, digits, '-', '_' and '.', starting with a letter or digit"
        )));
    }
    Ok(())
}

fn check_provider(p: &Provider) -> Result<()> {
    if p.physical_network.trim().is_empty() {
        return Err(ModelError::invalid("provider.physical_network is required")
            .at("provider.physical_network"));
    }
    check_text(&p.physical_network, "provider.physical_network", 255)?;
    match (p.network_type, p.segmentation_id) {
        (ProviderType::Flat, Some(_)) => Err(ModelError::invalid(
            "a flat provider network has no segmentation_id",
        )
        .at("provider.segmentation_id")),
        (ProviderType::Vlan, Some(v)) if (1..=4094).contains(&v) => Ok(()),
        (ProviderType::Vlan, _) => Err(ModelError::invalid(
            "a vlan provider network needs segmentation_id 1-4094",
        )
        .at("provider.segmentation_id")),
        (ProviderType::Vxlan, Some(v)) if (1..=0xff_ffff).contains(&v) => Ok(()),
        (ProviderType::Vxlan, _) => Err(ModelError::invalid(
            "a vxlan provider network needs segmentation_id 1-16777215",
        )
        .at("provider.segmentation_id")),
        (ProviderType::Flat, None) => Ok(()),
    }
}

fn build_subnet(id: Id, s: SubnetSpec) -> Result<Subnet> {
    check_text(&s.name, "name", 255)?;
    let cidr = ipam::parse_cidr(&s.cidr).map_err(|e| e.at("cidr"))?;
    let too_small = match cidr {
        IpNet::V4(n) => n.prefix_len() > 30,
        IpNet::V6(n) => n.prefix_len() > 126,
    };
    if too_small {
        return Err(ModelError::invalid(format!(
            "subnet {cidr} is too small to hold ports: use at most /30 for IPv4, /126 for IPv6"
        ))
        .at("cidr"));
    }
    let gateway = match (s.gateway, s.no_gateway) {
        (Some(_), true) => {
            return Err(
                ModelError::invalid("give gateway or no_gateway, not both").at("no_gateway")
            );
        }
        (Some(gw), false) => {
            if !cidr.contains(&gw) || ipam::is_reserved_in(&cidr, gw) {
                return Err(ModelError::invalid(format!(
                    "gateway {gw} is not a host address of {cidr}"
                ))
                .at("gateway"));
            }
            Some(gw)
        }
        (None, false) => Some(ipam::first_host(&cidr)),
        (None, true) => None,
    };
    let pools = if s.allocation_pools.is_empty() {
        ipam::default_pools(&cidr, gateway)
    } else {
        let mut pools = s.allocation_pools;
        for (i, p) in pools.iter().enumerate() {
            let at = format!("allocation_pools[{i}]");
            for ip in [p.start, p.end] {
                if !cidr.contains(&ip) || ipam::is_reserved_in(&cidr, ip) {
                    return Err(ModelError::invalid(format!(
                        "pool address {ip} is not a host address of {cidr}"
                    ))
                    .at(at));
                }
            }
            if ipam::ip_to_u128(p.start) > ipam::ip_to_u128(p.end) {
                return Err(ModelError::invalid(format!(
                    "pool start {} is after its end {}",
                    p.start, p.end
                ))
                .at(at));
            }
            if let Some(gw) = gateway {
                let g = ipam::ip_to_u128(gw);
                if ipam::ip_to_u128(p.start) <= g && g <= ipam::ip_to_u128(p.end) {
                    return Err(ModelError::invalid(format!(
                        "pool {}-{} contains the gateway {gw}",
                        p.start, p.end
                    ))
                    .at(at));
                }
            }
        }
        pools.sort_by_key(|p| ipam::ip_to_u128(p.start));
        for w in pools.windows(2) {
            if ipam::ip_to_u128(w[0].end) >= ipam::ip_to_u128(w[1].start) {
                return Err(ModelError::invalid(format!(
                    "pools {}-{} and {}-{} overlap",
                    w[0].start, w[0].end, w[1].start, w[1].end
                ))
                .at("allocation_pools"));
            }
        }
        pools
    };
    for (i, d) in s.dns_servers.iter().enumerate() {
        if d.is_unspecified() || d.is_multicast() {
            return Err(
                ModelError::invalid(format!("DNS server {d} is not a unicast address"))
                    .at(format!("dns_servers[{i}]")),
            );
        }
    }
    for (i, r) in s.host_routes.iter().enumerate() {
        let at = format!("host_routes[{i}]");
        if r.destination.trunc() != r.destination {
            return Err(ModelError::invalid(format!(
                "host route destination {} has host bits set; did you mean {}?",
                r.destination,
                r.destination.trunc()
            ))
            .at(at));
        }
        if !cidr.contains(&r.nexthop) {
            return Err(ModelError::invalid(format!(
                "host route next hop {} is outside {cidr}",
                r.nexthop
            ))
            .at(at));
        }
    }
    let v6 = cidr.addr().is_ipv6();
    Ok(Subnet {
        id,
        name: s.name,
        cidr,
        gateway,
        dhcp: s.dhcp.unwrap_or(!v6),
        dns_servers: s.dns_servers,
        allocation_pools: pools,
        host_routes: s.host_routes,
    })
}

fn check_static_route(r: &StaticRoute) -> Result<()> {
    if r.prefix.trunc() != r.prefix {
        return Err(ModelError::invalid(format!(
            "static route prefix {} has host bits set; did you mean {}?",
            r.prefix,
            r.prefix.trunc()
        ))
        .at("prefix"));
    }
    if r.nexthops.is_empty() {
        return Err(
            ModelError::invalid("a static route needs at least one next hop").at("nexthops"),
        );
    }
    let mut seen = HashSet::new();
    for (i, nh) in r.nexthops.iter().enumerate() {
        let at = format!("nexthops[{i}]");
        if nh.ip.is_ipv4() != r.prefix.addr().is_ipv4() {
            return Err(ModelError::invalid(format!(
                "next hop {} is not of the same IP version as {}",
                nh.ip, r.prefix
            ))
            .at(at));
        }
        if !(1..=255).contains(&nh.weight) {
            return Err(ModelError::invalid(format!(
                "weight {} is out of range: use 1-255",
                nh.weight
            ))
            .at(format!("{at}.weight")));
        }
        if !seen.insert(nh.ip) {
            return Err(ModelError::invalid(format!("next hop {} is listed twice", nh.ip)).at(at));
        }
    }
    Ok(())
}

/// Why a field cannot be set through an update, or `None` if it can.
fn read_only(kind: Kind, field: &str) -> Option<&'static str> {
    match (kind, field) {
        (_, "id") => Some("ids are assigned by the controller"),
        (_, "project") => Some("objects cannot move between projects"),
        (_, "revision") => {
            Some("revisions are assigned by the store; use If-Match for concurrency")
        }
        (Kind::InstancePort, "status") => Some("it is reported by the host"),
        (Kind::Interface, "port" | "vlan_path") => Some("it is derived from the parent"),
        (Kind::ServicePort, "service_kind") => Some("it is derived from the service"),
        _ => None,
    }
}

/// The settable fields of an object, as JSON (the base an update patches).
fn spec_json(obj: &Object) -> Value {
    let v = match obj {
        Object::Project(p) => serde_json::to_value(ProjectSpec {
            name: p.name.clone(),
            description: p.description.clone(),
        }),
        Object::InstancePort(p) => serde_json::to_value(InstancePortSpec {
            name: p.name.clone(),
            mac: Some(p.mac),
            mtu: Some(p.mtu),
            host: p.host.clone(),
            admin_up: Some(p.admin_up),
            bindings: Vec::new(),
        }),
        Object::Interface(i) => serde_json::to_value(InterfaceSpec {
            name: i.name.clone(),
            parent: i.parent.clone(),
            vlan: i.vlan,
        }),
        Object::L2Network(n) => serde_json::to_value(L2NetworkSpec {
            name: n.name.clone(),
            vni: Some(n.vni),
            subnets: n
                .subnets
                .iter()
                .map(|s| SubnetSpec {
                    id: Some(s.id.clone()),
                    name: s.name.clone(),
                    cidr: s.cidr.to_string(),
                    gateway: s.gateway,
                    no_gateway: s.gateway.is_none(),
                    dhcp: Some(s.dhcp),
                    dns_servers: s.dns_servers.clone(),
                    allocation_pools: s.allocation_pools.clone(),
                    host_routes: s.host_routes.clone(),
                })
                .collect(),
            provider: n.provider.clone(),
        }),
        Object::L3vpn(v) => serde_json::to_value(L3vpnSpec {
            name: v.name.clone(),
            route_distinguisher: Some(v.route_distinguisher.to_string()),
            route_targets: Vec::new(),
            import_targets: v.import_targets.iter().map(|t| t.to_string()).collect(),
            export_targets: v.export_targets.iter().map(|t| t.to_string()).collect(),
            vni: Some(v.vni),
            static_routes: v.static_routes.clone(),
            anycast_mode: v.anycast_mode,
            subnets: v.subnets.clone(),
        }),
        Object::SecurityGroup(g) => serde_json::to_value(SecurityGroupSpec {
            name: g.name.clone(),
            stateful: Some(g.stateful),
            rules: g
                .rules
                .iter()
                .map(|r| RuleSpec {
                    id: Some(r.id.clone()),
                    direction: r.direction,
                    ethertype: r.ethertype,
                    protocol: r.protocol,
                    port_range_min: r.port_range_min,
                    port_range_max: r.port_range_max,
                    icmp_type: r.icmp_type,
                    icmp_code: r.icmp_code,
                    remote_prefix: r.remote_prefix.map(|p| p.to_string()),
                    remote_group: r.remote_group.clone(),
                    action: r.action,
                    log: r.log,
                    description: r.description.clone(),
                })
                .collect(),
        }),
        Object::SiteLink(l) => serde_json::to_value(SiteLinkSpec {
            name: l.name.clone(),
            site: l.site.clone(),
            remote_site: l.remote_site.clone(),
            local_endpoint: l.local_endpoint,
            remote_endpoint: l.remote_endpoint,
            services: l.services.clone(),
            admin_up: Some(l.admin_up),
        }),
        Object::ServicePort(sp) => serde_json::to_value(ServicePortSpec {
            name: sp.name.clone(),
            interface: sp.interface.clone(),
            service: sp.service.clone(),
            fixed_ips: Some(
                sp.fixed_ips
                    .iter()
                    .map(|f| FixedIpSpec {
                        subnet: f.subnet.clone(),
                        ip: Some(f.ip),
                    })
                    .collect(),
            ),
            allowed_address_pairs: sp.allowed_address_pairs.clone(),
            role: sp.role,
            security_groups: sp.security_groups.clone(),
            port_security: Some(sp.port_security),
            preference: Some(sp.preference),
        }),
    };
    v.expect("specs serialize")
}

/// JSON merge patch (RFC 7396): objects merge recursively, `null` removes,
/// anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            let t = target.as_object_mut().expect("just made an object");
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}
