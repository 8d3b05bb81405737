//! Host views: what one host receives.
//!
//! A host gets the datapaths of its *neighbourhood* — the switches of its
//! ports, the VRFs those switches' subnets are attached to (and the VRFs it
//! holds routed ports in), the VRFs whose routes those import, and the
//! switches attached to all of these — and, within them, every flow except
//! other hosts' ingress and egress filtering. Nothing of any other project
//! or network reaches it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use weft_model::{Id, Intent, Kind};
use weft_pipeline::ir::{Action, Datapath, IpMatch, LogicalPort, PortLocation, Program, Table};

use crate::names::{self, lr_table, ls_table};
use crate::{Binding, Compiler, Fragment, Owner, Scope, ServiceConfig};

/// Where hosts' tunnel endpoints are.
pub trait HostDirectory {
    /// The tunnel (VXLAN) address of a host, if known.
    fn tunnel_ip(&self, host: &str) -> Option<IpAddr>;
}

impl HostDirectory for BTreeMap<String, IpAddr> {
    fn tunnel_ip(&self, host: &str) -> Option<IpAddr> {
        self.get(host).copied()
    }
}

/// One host's view: the owners' fragments filtered and resolved for it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostView {
    /// The host.
    pub host: String,
    /// Owner key → the part of that owner's fragment this host gets.
    pub fragments: BTreeMap<String, Fragment>,
}

/// The datapaths a host needs.
pub fn neighbourhood(intent: &Intent, host: &str) -> BTreeSet<String> {
    let mut switches: BTreeSet<Id> = BTreeSet::new();
    let mut vrfs: BTreeSet<Id> = BTreeSet::new();
    for port in intent.ports_on_host(host) {
        let mut stack = vec![port.id.clone()];
        while let Some(parent) = stack.pop() {
            for iface in intent.children_of(parent.as_str()) {
                if let Some(sp) = intent.service_port_of_interface(iface.id.as_str()) {
                    match sp.service_kind {
                        Kind::L2Network => {
                            switches.insert(sp.service.clone());
                        }
                        _ => {
                            vrfs.insert(sp.service.clone());
                        }
                    }
                }
                stack.push(iface.id.clone());
            }
        }
    }
    // VRFs of the local switches' subnets.
    for n in &switches {
        if let Some(net) = intent.l2_networks().get(n) {
            for s in &net.subnets {
                if let Some(v) = intent.l3vpn_of_subnet(s.id.as_str()) {
                    vrfs.insert(v.id.clone());
                }
            }
        }
    }
    // VRFs whose routes are imported into those, transitively: a VRF's
    // table holds the routes leaked into it, whose actions lead into their
    // exporters' datapaths.
    let mut all_vrfs = vrfs.clone();
    let mut todo: Vec<Id> = vrfs.iter().cloned().collect();
    while let Some(v) = todo.pop() {
        if let Some(vrf) = intent.l3vpns().get(&v) {
            for x in crate::router::exporters_to(intent, vrf) {
                if all_vrfs.insert(x.clone()) {
                    todo.push(x.clone());
                }
            }
        }
    }
    // Switches behind every leg of those VRFs.
    for v in &all_vrfs {
        if let Some(vrf) = intent.l3vpns().get(v) {
            for sid in &vrf.subnets {
                if let Some((net, _)) = intent.subnet(sid.as_str()) {
                    switches.insert(net.id.clone());
                }
            }
        }
    }
    let mut out: BTreeSet<String> = switches.iter().map(names::ls).collect();
    out.extend(all_vrfs.iter().map(names::lr));
    out
}

fn port_host<'a>(intent: &'a Intent, name: &str) -> Option<&'a str> {
    let sp = intent.service_ports().get(name)?;
    intent
        .port_of_interface(sp.interface.as_str())?
        .host
        .as_deref()
}

fn set_refs(f: &Fragment, out: &mut BTreeSet<String>) {
    for sf in &f.flows {
        for m in [&sf.flow.r#match.ip_src, &sf.flow.r#match.ip_dst]
            .into_iter()
            .flatten()
        {
            if let IpMatch::Set(s) = m {
                out.insert(s.clone());
            }
        }
    }
}

/// Filters one fragment for `host`; `None` when nothing of it applies.
fn filter(
    intent: &Intent,
    host: &str,
    dps: &BTreeSet<String>,
    dir: &dyn HostDirectory,
    f: &Fragment,
) -> Option<Fragment> {
    let local = |p: &str| port_host(intent, p) == Some(host);
    let mut out = Fragment::default();
    for sf in &f.flows {
        if !dps.contains(&sf.dp) {
            continue;
        }
        let keep = match &sf.scope {
            Scope::All => true,
            Scope::Ingress(p) | Scope::EgressLocal(p) => local(p),
            Scope::EgressRemote(p) => !local(p),
        };
        if keep {
            out.flows.push(sf.clone());
        }
    }
    for d in &f.datapaths {
        if dps.contains(&d.name) {
            out.datapaths.push(d.clone());
        }
    }
    for p in &f.ports {
        if !dps.contains(&p.datapath) {
            continue;
        }
        let mut p = p.clone();
        // Resolved here; the binding then says where, for this host.
        if let Binding::Vif {
            host: h,
            vif,
            vlans,
        } = &p.binding
        {
            p.binding = match h.as_deref() {
                Some(h) if h == host => Binding::Vif {
                    host: Some(host.to_string()),
                    vif: vif.clone(),
                    vlans: vlans.clone(),
                },
                Some(h) => match dir.tunnel_ip(h) {
                    Some(tunnel_ip) => Binding::Remote {
                        host: h.to_string(),
                        tunnel_ip,
                    },
                    None => Binding::Internal,
                },
                None => Binding::Internal,
            };
        }
        out.ports.push(p);
    }
    for t in &f.tunnel_entries {
        if dps.contains(&t.datapath) {
            out.tunnel_entries.push(t.clone());
        }
    }
    let relevant = !out.flows.is_empty() || !out.ports.is_empty() || !out.datapaths.is_empty();
    if relevant {
        out.flood_groups = f.flood_groups.clone();
        out.ecmp_groups = f.ecmp_groups.clone();
    }
    for s in &f.services {
        let keep = match s {
            ServiceConfig::Dhcp4 { context, .. } => local(context),
            ServiceConfig::Dns { context, .. } => {
                dps.contains(&names::ls(&Id::new(context.clone())))
            }
            ServiceConfig::RouterAdvert { .. } => relevant,
        };
        if keep {
            out.services.push(s.clone());
        }
    }
    (!out.is_empty()).then_some(out)
}

/// What one record of a host's view ([`Compiler::host_record`]) reads of the host besides
/// the owner's fragment: which of `datapaths` its neighbourhood holds, which of `ports` are
/// bound to it, whether it is one of `hosts` (and those hosts' tunnel addresses), and which
/// of `sets` its flows name. Hosts that agree on all of these get the same record, so a view
/// builder may compute it once and share it among them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordInputs {
    /// Datapaths whose presence in the neighbourhood matters.
    pub datapaths: BTreeSet<String>,
    /// Service ports whose host matters (flow scopes, DHCP contexts).
    pub ports: BTreeSet<String>,
    /// Hosts of the vNIC bindings declared (local to them, remote through their tunnel).
    pub hosts: BTreeSet<String>,
    /// Address sets the fragment contributes.
    pub sets: BTreeSet<String>,
}

/// What a host's record of `f` depends on (see [`RecordInputs`]); kept next to `filter`,
/// which it mirrors.
pub fn record_inputs(f: &Fragment) -> RecordInputs {
    let mut r = RecordInputs::default();
    r.datapaths
        .extend(f.touched_datapaths().into_iter().map(str::to_string));
    r.datapaths
        .extend(f.tunnel_entries.iter().map(|t| t.datapath.clone()));
    for sf in &f.flows {
        match &sf.scope {
            Scope::All => {}
            Scope::Ingress(p) | Scope::EgressLocal(p) | Scope::EgressRemote(p) => {
                r.ports.insert(p.clone());
            }
        }
    }
    for p in &f.ports {
        if let Binding::Vif { host: Some(h), .. } = &p.binding {
            r.hosts.insert(h.clone());
        }
    }
    for s in &f.services {
        match s {
            ServiceConfig::Dhcp4 { context, .. } => {
                r.ports.insert(context.clone());
            }
            ServiceConfig::Dns { context, .. } => {
                r.datapaths.insert(names::ls(&Id::new(context.clone())));
            }
            ServiceConfig::RouterAdvert { .. } => {}
        }
    }
    r.sets.extend(f.address_sets.iter().map(|s| s.name.clone()));
    r
}

/// The host a service port is bound to (through its interface's instance port).
pub fn service_port_host<'a>(intent: &'a Intent, service_port: &str) -> Option<&'a str> {
    port_host(intent, service_port)
}

/// The address sets a record's flows name (what makes a host need those sets' records).
pub fn named_sets(f: &Fragment) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    set_refs(f, &mut out);
    out
}

impl Compiler {
    /// The view of one host.
    pub fn host_view(&self, intent: &Intent, host: &str, dir: &dyn HostDirectory) -> HostView {
        let dps = neighbourhood(intent, host);
        let mut owners: BTreeSet<&Owner> = BTreeSet::new();
        for dp in &dps {
            owners.extend(self.owners_of_datapath(dp));
        }
        let mut view = HostView {
            host: host.to_string(),
            fragments: BTreeMap::new(),
        };
        let mut sets = BTreeSet::new();
        for owner in owners {
            if let Some(f) = self.fragment(owner)
                && let Some(filtered) = filter(intent, host, &dps, dir, f)
            {
                set_refs(&filtered, &mut sets);
                view.fragments.insert(owner.key(), filtered);
            }
        }
        // Address sets the kept flows name (every shard of each).
        for set in &sets {
            for owner in self.owners_of_set(set) {
                if let Some(f) = self.fragment(owner) {
                    let entry = view.fragments.entry(owner.key()).or_default();
                    for s in f.address_sets.iter().filter(|s| sets.contains(&s.name)) {
                        if !entry.address_sets.contains(s) {
                            entry.address_sets.push(s.clone());
                        }
                    }
                }
            }
        }
        view
    }
}

impl Compiler {
    /// One record of `host`'s view, exactly as [`Compiler::host_view`] holds it under
    /// `owner.key()`: the owner's fragment filtered for the host when it touches one of the
    /// neighbourhood's datapaths `dps`, plus the address sets it contributes among `sets`
    /// (the sets named by the flows of the host's records, see [`named_sets`]). `None` when
    /// the host gets nothing of this owner.
    pub fn host_record(
        &self,
        intent: &Intent,
        host: &str,
        dps: &BTreeSet<String>,
        sets: &BTreeSet<String>,
        dir: &dyn HostDirectory,
        owner: &Owner,
    ) -> Option<Fragment> {
        let f = self.fragment(owner)?;
        let mut out = if f.touched_datapaths().iter().any(|d| dps.contains(*d)) {
            filter(intent, host, dps, dir, f)
        } else {
            None
        };
        for s in f.address_sets.iter().filter(|s| sets.contains(&s.name)) {
            let entry = out.get_or_insert_with(Fragment::default);
            if !entry.address_sets.contains(s) {
                entry.address_sets.push(s.clone());
            }
        }
        out
    }
}

impl HostView {
    /// Assembles the host's program from its fragments.
    pub fn to_program(&self) -> Program {
        let mut prog = Program::new(self.host.clone());
        let mut dps: BTreeMap<String, Datapath> = BTreeMap::new();
        for f in self.fragments.values() {
            for d in &f.datapaths {
                let tables: &[&str] = match d.kind {
                    weft_pipeline::ir::DatapathKind::Switch => &ls_table::ALL,
                    weft_pipeline::ir::DatapathKind::Router => &lr_table::ALL,
                };
                let mut dp = Datapath::new(d.name.clone(), d.kind, d.vni, tables);
                dp.router_macs = d.router_macs.clone();
                dps.insert(d.name.clone(), dp);
            }
        }
        for f in self.fragments.values() {
            for sf in &f.flows {
                if let Some(dp) = dps.get_mut(&sf.dp)
                    && let Some(t) = dp
                        .tables
                        .iter_mut()
                        .find(|t: &&mut Table| t.name == sf.table)
                {
                    t.flows.push(sf.flow.clone());
                }
            }
            for p in &f.ports {
                let location = match &p.binding {
                    Binding::Vif {
                        host: Some(h),
                        vif,
                        vlans,
                    } if *h == self.host => PortLocation::Local {
                        vif: vif.clone(),
                        vlans: vlans.clone(),
                    },
                    Binding::Remote { host, tunnel_ip } => PortLocation::Remote {
                        host: host.clone(),
                        tunnel_ip: *tunnel_ip,
                    },
                    _ => PortLocation::Internal,
                };
                prog.ports.push(LogicalPort {
                    name: p.name.clone(),
                    datapath: p.datapath.clone(),
                    location,
                    mac: p.mac,
                    ips: p.ips.clone(),
                });
            }
            prog.flood_groups.extend(f.flood_groups.iter().cloned());
            prog.ecmp_groups.extend(f.ecmp_groups.iter().cloned());
            prog.address_sets.extend(f.address_sets.iter().cloned());
            prog.tunnel_entries.extend(f.tunnel_entries.iter().cloned());
        }
        // Shards of one address set become one set.
        let mut sets: BTreeMap<String, Vec<ipnet::IpNet>> = BTreeMap::new();
        for s in prog.address_sets.drain(..) {
            sets.entry(s.name).or_default().extend(s.prefixes);
        }
        prog.address_sets = sets
            .into_iter()
            .map(|(name, mut prefixes)| {
                prefixes.sort();
                prefixes.dedup();
                weft_pipeline::ir::AddressSet { name, prefixes }
            })
            .collect();
        // Flood groups only name ports this host knows.
        let known: BTreeSet<String> = prog.ports.iter().map(|p| p.name.clone()).collect();
        for g in &mut prog.flood_groups {
            g.ports.retain(|p| known.contains(p));
        }
        prog.datapaths = dps.into_values().collect();
        prog.canonicalize();
        prog
    }

    /// The local service configurations of this host.
    pub fn services(&self) -> Vec<ServiceConfig> {
        let mut v: Vec<ServiceConfig> = self
            .fragments
            .values()
            .flat_map(|f| f.services.iter().cloned())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Every datapath and project-visible id this view mentions (for tests
    /// that prove isolation): datapath names, port names, VNIs.
    pub fn mentions(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for f in self.fragments.values() {
            for d in &f.datapaths {
                out.insert(d.name.clone());
            }
            for p in &f.ports {
                out.insert(p.name.clone());
                out.insert(p.datapath.clone());
            }
            for sf in &f.flows {
                out.insert(sf.dp.clone());
                for a in &sf.flow.actions {
                    if let Action::Goto { datapath, .. } = a {
                        out.insert(datapath.clone());
                    }
                }
            }
        }
        out
    }
}

/// First byte of a record compressed by [`encode_record`] (a JSON record starts with `{`).
const DEFLATED: u8 = 1;

/// Largest decoded record accepted (a record is one owner's fragment: tens of KiB at most).
const MAX_RECORD_BYTES: usize = 64 << 20;

/// Encodes one record of a host's view (an owner's fragment as the host
/// sees it) for the southbound: its JSON, deflated (level 1), behind one
/// tag byte. Records are held by the controller for every host that has
/// them and travel in every snapshot, and their JSON (field names, the
/// flows' origin texts) compresses about five-fold.
pub fn encode_record(f: &Fragment) -> Vec<u8> {
    let json = serde_json::to_vec(f).expect("fragments serialize");
    let mut out = Vec::with_capacity(json.len() / 4 + 16);
    out.push(DEFLATED);
    out.extend_from_slice(&miniz_oxide::deflate::compress_to_vec(&json, 1));
    out
}

/// Decodes one record: what [`encode_record`] made, or a plain JSON record
/// (views written by hand for `weft-fwd`, or kept by an agent of an earlier
/// version).
pub fn decode_record(bytes: &[u8]) -> Result<Fragment, String> {
    match bytes.first() {
        Some(&DEFLATED) => {
            let json =
                miniz_oxide::inflate::decompress_to_vec_with_limit(&bytes[1..], MAX_RECORD_BYTES)
                    .map_err(|e| format!("does not inflate ({:?})", e.status))?;
            serde_json::from_slice(&json).map_err(|e| e.to_string())
        }
        Some(b'{') => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
        Some(other) => Err(format!("unknown record encoding (first byte {other:#04x})")),
        None => Err("empty record".to_string()),
    }
}

/// Rebuilds a host's view from its records (the agent's side).
pub fn decode_records(host: &str, records: &BTreeMap<String, Vec<u8>>) -> Result<HostView, String> {
    let mut fragments = BTreeMap::new();
    for (k, v) in records {
        let f = decode_record(v).map_err(|e| format!("record {k} does not decode: {e}"))?;
        fragments.insert(k.clone(), f);
    }
    Ok(HostView {
        host: host.to_string(),
        fragments,
    })
}
