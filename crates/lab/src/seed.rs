//! The seed's any-to-any scenario (seed 001 "L3VPN any-to-any", the same
//! topology as `shared/bench/ovn-e2e` and the compiler's `any_to_any`
//! scenario), built through the REST API on a lab with hosts `host-a` and
//! `host-b`; shared by the end-to-end test and `weft demo`.
//!
//! ```text
//!        host-a                               host-b
//!  G1 blue 10.1.1.5   G2 blue 10.3.7.9    G3 blue 10.1.1.6   G4 blue 10.3.7.10
//!  G5 red  10.1.1.5                       G6 red  10.1.1.6
//!  blue VRF: net1 10.1.1.0/24 + net2 10.3.7.0/24;  red VRF: net3 10.1.1.0/24
//! ```

use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::json;
use weft_model::Kind;

use crate::lab::{Lab, VmNet};
use crate::traffic::{Endpoint, Matrix, format_matrix, probe_matrix};
use crate::{LabError, Result};

/// One VM of the scenario.
#[derive(Debug, Clone)]
pub struct SeedVm {
    /// VM name (`G1`..`G6`).
    pub name: &'static str,
    /// Port name (`g1`..`g6`).
    pub port_name: &'static str,
    /// `blue` or `red`.
    pub tenant: &'static str,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its host.
    pub host: &'static str,
    /// The instance port id.
    pub port: String,
}

/// The scenario as built.
#[derive(Debug, Clone)]
pub struct AnyToAny {
    /// The VMs, G1..G6.
    pub vms: Vec<SeedVm>,
}

/// The host names the scenario binds ports to.
pub const HOSTS: [&str; 2] = ["host-a", "host-b"];

/// Creates the projects, networks, VRFs, security groups and ports through
/// the API, and plugs the VMs.
pub fn build_any_to_any(lab: &mut Lab) -> Result<AnyToAny> {
    let api = lab.api().clone();
    let project = |name: &str| api.create_id(Kind::Project, json!({"name": name}));
    let (blue, red) = (project("blue")?, project("red")?);
    let network = |p: &str, name: &str, cidr: &str| -> Result<(String, String)> {
        let n = api.create(
            Kind::L2Network,
            json!({"project": p, "name": name, "subnets": [{"cidr": cidr}]}),
        )?;
        let id = n["id"].as_str().unwrap_or_default().to_string();
        let subnet = n["subnets"][0]["id"]
            .as_str()
            .ok_or_else(|| LabError::Api(format!("network {name} has no subnet: {n}")))?
            .to_string();
        Ok((id, subnet))
    };
    let (net1, s1) = network(&blue, "net1", "10.1.1.0/24")?;
    let (net2, s2) = network(&blue, "net2", "10.3.7.0/24")?;
    let (net3, s3) = network(&red, "net3", "10.1.1.0/24")?;
    let open = |p: &str| {
        api.create_id(
            Kind::SecurityGroup,
            json!({"project": p, "name": "open",
                   "rules": [{"direction": "ingress"}, {"direction": "egress"}]}),
        )
    };
    let (blue_open, red_open) = (open(&blue)?, open(&red)?);
    api.create(
        Kind::L3vpn,
        json!({"project": blue, "name": "blue", "route_distinguisher": "64512:1",
               "route_targets": ["64512:1"], "subnets": [s1, s2]}),
    )?;
    api.create(
        Kind::L3vpn,
        json!({"project": red, "name": "red", "route_distinguisher": "64512:2",
               "route_targets": ["64512:2"], "subnets": [s3]}),
    )?;
    let plan = [
        (
            "G1", "g1", "blue", "10.1.1.5", "host-a", &net1, &blue, &blue_open, "10.1.1.1",
        ),
        (
            "G2", "g2", "blue", "10.3.7.9", "host-a", &net2, &blue, &blue_open, "10.3.7.1",
        ),
        (
            "G3", "g3", "blue", "10.1.1.6", "host-b", &net1, &blue, &blue_open, "10.1.1.1",
        ),
        (
            "G4",
            "g4",
            "blue",
            "10.3.7.10",
            "host-b",
            &net2,
            &blue,
            &blue_open,
            "10.3.7.1",
        ),
        (
            "G5", "g5", "red", "10.1.1.5", "host-a", &net3, &red, &red_open, "10.1.1.1",
        ),
        (
            "G6", "g6", "red", "10.1.1.6", "host-b", &net3, &red, &red_open, "10.1.1.1",
        ),
    ];
    let mut vms = Vec::new();
    for (name, port_name, tenant, ip, host, net, project, sg, gw) in plan {
        let port = lab.port(
            project,
            port_name,
            host,
            json!({"service": net, "fixed_ips": [{"ip": ip}], "security_groups": [sg]}),
        )?;
        lab.add_vm(
            name,
            host,
            &port,
            VmNet::simple(&format!("{ip}/24"), Some(gw)),
        )?;
        vms.push(SeedVm {
            name,
            port_name,
            tenant,
            ip: ip.parse().expect("a literal address"),
            host,
            port,
        });
    }
    Ok(AnyToAny { vms })
}

impl AnyToAny {
    /// Whether `src` should reach `dst` (same tenant).
    pub fn expected(&self, src: &str, dst: &str) -> bool {
        let t = |n: &str| self.vms.iter().find(|v| v.name == n).map(|v| v.tenant);
        t(src) == t(dst)
    }

    /// Measures the reachability matrix with real pings; returns it, its
    /// text (deviating cells marked `!`) and the number of deviating cells.
    pub fn matrix(&self, lab: &Lab) -> Result<(Matrix, String, usize)> {
        let eps: Vec<Endpoint<'_>> = self
            .vms
            .iter()
            .map(|v| Endpoint {
                name: v.name.to_string(),
                ns: lab.vm_ns(v.name),
                ip: v.ip,
            })
            .collect();
        let m = probe_matrix(&eps, Duration::from_millis(700))?;
        let names: Vec<(String, String)> = self
            .vms
            .iter()
            .map(|v| (v.name.to_string(), v.tenant[..1].to_uppercase()))
            .collect();
        let text = format_matrix(&names, &m, |s, d| self.expected(s, d));
        let bad = m
            .iter()
            .filter(|((s, d), c)| c.ok(d) != self.expected(s, d))
            .count();
        Ok((m, text, bad))
    }
}
