//! Which owners exist, and which owners a change dirties.
//!
//! The rules here are the whole of incrementality: an owner must be dirtied
//! by every change to anything its `compute` reads. The property test in
//! `tests/incremental.rs` checks them against full recompilation.

use std::collections::BTreeSet;
use std::net::IpAddr;

use weft_model::{Change, Id, Intent, Kind, L3vpn, Object, ServicePort};

use crate::Owner;

/// Every owner of the intent.
pub fn all_owners(intent: &Intent) -> BTreeSet<Owner> {
    let mut out = BTreeSet::new();
    out.extend(intent.l2_networks().keys().cloned().map(Owner::Network));
    out.extend(intent.l3vpns().keys().cloned().map(Owner::Vrf));
    out.extend(intent.l3vpns().keys().cloned().map(Owner::Imported));
    out.extend(intent.service_ports().keys().cloned().map(Owner::Port));
    for g in intent.security_groups().keys() {
        out.insert(Owner::SgAddrs(g.clone(), Id::default()));
        for sp in intent.service_ports_of_security_group(g.as_str()) {
            out.insert(Owner::SgAddrs(g.clone(), sp.service.clone()));
        }
    }
    for vrf in intent.l3vpns().values() {
        for ip in vrf_ips(intent, vrf) {
            out.insert(Owner::VrfIp(vrf.id.clone(), ip));
        }
    }
    out
}

/// Every address held in a VRF: routed ports' addresses and the addresses
/// of ports in its attached subnets.
pub fn vrf_ips(intent: &Intent, vrf: &L3vpn) -> BTreeSet<IpAddr> {
    let mut ips = BTreeSet::new();
    for sp in intent.service_ports_of_service(vrf.id.as_str()) {
        ips.extend(sp.fixed_ips.iter().map(|f| f.ip));
    }
    for sid in &vrf.subnets {
        if let Some((net, subnet)) = intent.subnet(sid.as_str()) {
            for sp in intent.service_ports_of_service(net.id.as_str()) {
                ips.extend(
                    sp.fixed_ips
                        .iter()
                        .filter(|f| f.subnet.as_ref() == Some(&subnet.id))
                        .map(|f| f.ip),
                );
            }
        }
    }
    ips
}

/// VRFs that export at least one of `targets`.
fn exporters<'a>(
    intent: &'a Intent,
    targets: &'a BTreeSet<weft_model::RouteTarget>,
) -> impl Iterator<Item = &'a L3vpn> {
    intent
        .l3vpns()
        .values()
        .filter(move |w| w.export_targets.iter().any(|t| targets.contains(t)))
}

fn dirty_vrf_all(intent: &Intent, vrf: &Id, out: &mut BTreeSet<Owner>) {
    out.insert(Owner::Vrf(vrf.clone()));
    out.insert(Owner::Imported(vrf.clone()));
    if let Some(v) = intent.l3vpns().get(vrf) {
        for ip in vrf_ips(intent, v) {
            out.insert(Owner::VrfIp(vrf.clone(), ip));
        }
    }
}

fn dirty_service_port(intent: &Intent, sp: &ServicePort, out: &mut BTreeSet<Owner>) {
    out.insert(Owner::Port(sp.id.clone()));
    match sp.service_kind {
        Kind::L3vpn => {
            out.insert(Owner::Vrf(sp.service.clone()));
            for f in &sp.fixed_ips {
                out.insert(Owner::VrfIp(sp.service.clone(), f.ip));
            }
        }
        _ => {
            out.insert(Owner::Network(sp.service.clone()));
            for f in &sp.fixed_ips {
                if let Some(v) = f
                    .subnet
                    .as_ref()
                    .and_then(|s| intent.l3vpn_of_subnet(s.as_str()))
                {
                    out.insert(Owner::Vrf(v.id.clone()));
                    out.insert(Owner::VrfIp(v.id.clone(), f.ip));
                }
            }
        }
    }
    for g in &sp.security_groups {
        out.insert(Owner::SgAddrs(g.clone(), sp.service.clone()));
    }
}

/// Service ports under an instance port (through any interface).
fn service_ports_under<'a>(intent: &'a Intent, port: &Id) -> Vec<&'a ServicePort> {
    let mut out = Vec::new();
    let mut stack = vec![port.clone()];
    while let Some(p) = stack.pop() {
        for c in intent.children_of(p.as_str()) {
            if let Some(sp) = intent.service_port_of_interface(c.id.as_str()) {
                out.push(sp);
            }
            stack.push(c.id.clone());
        }
    }
    out
}

/// Adds to `out` every owner whose fragment may differ after `ch`.
pub fn dirty_owners(intent: &Intent, ch: &Change, out: &mut BTreeSet<Owner>) {
    let versions = [ch.before.as_ref(), ch.after.as_ref()];
    match ch.kind {
        Kind::Project | Kind::SiteLink => {}
        Kind::InstancePort => {
            for sp in service_ports_under(intent, &ch.id) {
                dirty_service_port(intent, sp, out);
            }
        }
        Kind::Interface => {
            if let Some(sp) = intent.service_port_of_interface(ch.id.as_str()) {
                out.insert(Owner::Port(sp.id.clone()));
            }
        }
        Kind::L2Network => {
            out.insert(Owner::Network(ch.id.clone()));
            for sp in intent.service_ports_of_service(ch.id.as_str()) {
                dirty_service_port(intent, sp, out);
            }
            for v in versions.into_iter().flatten() {
                if let Object::L2Network(n) = v {
                    for s in &n.subnets {
                        if let Some(vrf) = intent.l3vpn_of_subnet(s.id.as_str()) {
                            dirty_vrf_all(intent, &vrf.id, out);
                        }
                    }
                }
            }
        }
        Kind::L3vpn => {
            dirty_vrf_all(intent, &ch.id, out);
            let mut imports = BTreeSet::new();
            for v in versions.into_iter().flatten() {
                if let Object::L3vpn(v) = v {
                    imports.extend(v.import_targets.iter().copied());
                    // Addresses of subnets attached before the change.
                    for sid in &v.subnets {
                        if let Some((net, subnet)) = intent.subnet(sid.as_str()) {
                            out.insert(Owner::Network(net.id.clone()));
                            for sp in intent.service_ports_of_service(net.id.as_str()) {
                                // DHCP answers from the router's MAC when routed.
                                out.insert(Owner::Port(sp.id.clone()));
                                for f in sp.fixed_ips.iter().filter(|f| subnet.cidr.contains(&f.ip))
                                {
                                    out.insert(Owner::VrfIp(ch.id.clone(), f.ip));
                                }
                            }
                        }
                    }
                    for sp in intent.service_ports_of_service(ch.id.as_str()) {
                        for f in &sp.fixed_ips {
                            out.insert(Owner::VrfIp(ch.id.clone(), f.ip));
                        }
                    }
                }
            }
            // Routes other VRFs leak into this one follow its import targets.
            let exporting: Vec<Id> = exporters(intent, &imports).map(|x| x.id.clone()).collect();
            for x in exporting {
                dirty_vrf_all(intent, &x, out);
            }
        }
        Kind::SecurityGroup => {
            out.insert(Owner::SgAddrs(ch.id.clone(), Id::default()));
            for sp in intent.service_ports_of_security_group(ch.id.as_str()) {
                out.insert(Owner::Port(sp.id.clone()));
            }
        }
        Kind::ServicePort => {
            for v in versions.into_iter().flatten() {
                if let Object::ServicePort(sp) = v {
                    dirty_service_port(intent, sp, out);
                }
            }
        }
    }
}

/// VRFs a VRF's routes are leaked into (they import one of its export targets).
pub fn leak_targets<'a>(intent: &'a Intent, vrf: &L3vpn) -> Vec<&'a L3vpn> {
    intent
        .l3vpns()
        .values()
        .filter(|w| {
            w.id != vrf.id
                && w.import_targets
                    .iter()
                    .any(|t| vrf.export_targets.contains(t))
        })
        .collect()
}
