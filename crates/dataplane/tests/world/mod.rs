//! Intent for the pipeline tests, built with the model's own commands and
//! compiled by the real compiler (no controller): two hosts, two subnets
//! routed by one VRF, and VMs with stateful security groups.
//!
//! ```text
//!   net1 10.1.0.0/24 ──┐                      ┌── net2 10.2.0.0/24
//!   (gw 10.1.0.1)      └──── l3vpn "vrf" ─────┘   (gw 10.2.0.1)
//!   host-a: a1 10.1.0.11 (open)   a2 10.2.0.12 (open)   a3 10.1.0.13 (open, DHCP client)
//!   host-b: b1 10.1.0.21 (web)    b2 10.2.0.22 (open)
//!   web: ingress tcp 80 allow, tcp 23 reject, egress any; open: any both ways
//! ```

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::{Value, json};
use weft_compiler::{Compiler, HostView, ServiceConfig};
use weft_model::{Command, CountingIds, Id, Intent, Kind, Spec};
use weft_pipeline::MacAddr;
use weft_pipeline::ir::Program;

pub const UL_A: &str = "192.0.2.1";
pub const UL_B: &str = "192.0.2.2";

/// A VM of the scenario.
#[derive(Clone, Debug)]
pub struct Vm {
    /// Display name (also its DNS name).
    pub name: &'static str,
    /// Host it is bound to.
    pub host: &'static str,
    /// Instance port id = the vif.
    pub vif: String,
    /// Service port id = the logical port.
    pub port: String,
    pub mac: MacAddr,
    pub ip: &'static str,
    pub gateway: &'static str,
}

pub struct World {
    pub intent: Intent,
    ids: CountingIds,
    pub project: Id,
    pub net1: Id,
    pub net2: Id,
    pub web_sg: Id,
    pub vms: BTreeMap<&'static str, Vm>,
}

impl World {
    pub fn create(&mut self, kind: Kind, project: Option<&Id>, body: Value) -> Id {
        let spec = Spec::parse(kind, body.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{kind:?} {body}: {e}"));
        let a = self
            .intent
            .apply(
                Command::Create {
                    project: project.cloned(),
                    spec,
                },
                &mut self.ids,
            )
            .unwrap_or_else(|e| panic!("create {kind:?} {body}: {e}"));
        a.object.expect("created object").id().clone()
    }

    pub fn update(&mut self, kind: Kind, id: &Id, patch: Value) {
        self.intent
            .apply(
                Command::Update {
                    kind,
                    id: id.clone(),
                    patch: patch.clone(),
                    if_match: None,
                },
                &mut self.ids,
            )
            .unwrap_or_else(|e| panic!("update {kind:?} {id} {patch}: {e}"));
    }

    /// The scenario in the module docs.
    pub fn two_hosts() -> World {
        let mut w = World {
            intent: Intent::new(),
            ids: CountingIds::default(),
            project: Id::from(""),
            net1: Id::from(""),
            net2: Id::from(""),
            web_sg: Id::from(""),
            vms: BTreeMap::new(),
        };
        let p = w.create(Kind::Project, None, json!({"name": "dp"}));
        w.project = p.clone();
        w.net1 = w.create(
            Kind::L2Network,
            Some(&p),
            json!({"name": "net1", "subnets": [{"cidr": "10.1.0.0/24"}]}),
        );
        w.net2 = w.create(
            Kind::L2Network,
            Some(&p),
            json!({"name": "net2", "subnets": [{"cidr": "10.2.0.0/24"}]}),
        );
        let s1 = w.intent.l2_networks()[&w.net1].subnets[0].id.to_string();
        let s2 = w.intent.l2_networks()[&w.net2].subnets[0].id.to_string();
        w.create(
            Kind::L3vpn,
            Some(&p),
            json!({"name": "vrf", "route_distinguisher": "64512:1", "route_targets": ["64512:1"], "subnets": [s1, s2]}),
        );
        let open = w.create(
            Kind::SecurityGroup,
            Some(&p),
            json!({"name": "open", "rules": [{"direction": "ingress"}, {"direction": "egress"}]}),
        );
        w.web_sg = w.create(
            Kind::SecurityGroup,
            Some(&p),
            json!({"name": "web", "rules": [
                {"direction": "ingress", "protocol": "tcp", "port_range_min": 80},
                {"direction": "ingress", "protocol": "tcp", "port_range_min": 23, "action": "reject"},
                {"direction": "ingress", "protocol": "icmp"},
                {"direction": "egress"}]}),
        );
        let web = w.web_sg.clone();
        let (n1, n2) = (w.net1.clone(), w.net2.clone());
        for (name, host, net, ip, gw, sg, mac) in [
            (
                "a1",
                "host-a",
                &n1,
                "10.1.0.11",
                "10.1.0.1",
                &open,
                "02:00:00:0a:00:11",
            ),
            (
                "a2",
                "host-a",
                &n2,
                "10.2.0.12",
                "10.2.0.1",
                &open,
                "02:00:00:0a:00:12",
            ),
            (
                "a3",
                "host-a",
                &n1,
                "10.1.0.13",
                "10.1.0.1",
                &open,
                "02:00:00:0a:00:13",
            ),
            (
                "b1",
                "host-b",
                &n1,
                "10.1.0.21",
                "10.1.0.1",
                &web,
                "02:00:00:0b:00:21",
            ),
            (
                "b2",
                "host-b",
                &n2,
                "10.2.0.22",
                "10.2.0.1",
                &open,
                "02:00:00:0b:00:22",
            ),
        ] {
            let vif = w.create(
                Kind::InstancePort,
                Some(&p),
                json!({"name": name, "host": host, "mac": mac, "bindings": [{"service": net, "fixed_ips": [{"ip": ip}], "security_groups": [sg]}]}),
            );
            let iface = w
                .intent
                .children_of(vif.as_str())
                .next()
                .expect("interface")
                .id
                .clone();
            let port = w
                .intent
                .service_port_of_interface(iface.as_str())
                .expect("service port")
                .id
                .to_string();
            w.vms.insert(
                name,
                Vm {
                    name,
                    host,
                    vif: vif.to_string(),
                    port,
                    mac: mac.parse().unwrap(),
                    ip,
                    gateway: gw,
                },
            );
        }
        w
    }

    pub fn vm(&self, name: &str) -> &Vm {
        &self.vms[name]
    }

    pub fn hosts() -> BTreeMap<String, IpAddr> {
        [("host-a", UL_A), ("host-b", UL_B)]
            .into_iter()
            .map(|(h, ip)| (h.to_string(), ip.parse().unwrap()))
            .collect()
    }

    /// The view of `host`, compiled from scratch.
    pub fn view(&self, host: &str) -> HostView {
        Compiler::full(&self.intent).host_view(&self.intent, host, &Self::hosts())
    }

    /// The program and services of `host`.
    pub fn program(&self, host: &str) -> (Program, Vec<ServiceConfig>) {
        let v = self.view(host);
        (v.to_program(), v.services())
    }

    /// The view of `host` as the agent's records.
    pub fn records(&self, host: &str) -> BTreeMap<String, Vec<u8>> {
        self.view(host)
            .fragments
            .iter()
            .map(|(k, f)| (k.clone(), weft_compiler::view::encode_record(f)))
            .collect()
    }

    /// The router MAC of the VRF (what the gateways answer ARP with).
    pub fn router_mac(&self, host: &str) -> MacAddr {
        let (p, _) = self.program(host);
        p.datapaths
            .iter()
            .find_map(|d| d.router_macs.first().copied())
            .expect("a router MAC")
    }

    /// The domain of a network's DNS names.
    pub fn domain(&self, net: &Id) -> String {
        format!("{}.weft.internal", self.intent.l2_networks()[net].name)
    }
}
