//! Compiles the dataplane benchmark's topology into the two hosts' views, as
//! files `weft-fwd --view` reads (one record per line, `KEY JSON`):
//!
//! ```text
//!  vmA 10.0.0.1 (host-a) ──── l2-network "bench" 10.0.0.0/24 ──── vmB 10.0.0.2 (host-b)
//!  both in security group "all": any protocol in and out, stateful (conntrack)
//! ```
//!
//! `cargo run -p weft-dataplane --example bench-view -- OUT_DIR UL_A UL_B VM_A VM_B`
//! writes `OUT_DIR/host-a.view`, `OUT_DIR/host-b.view` and `OUT_DIR/bench.env`
//! (`TAP_A`, `TAP_B`: the TAP names; `MAC_A`, `MAC_B`: the ports' MACs, which
//! port security requires the VMs to use).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use weft_compiler::Compiler;
use weft_model::{Command, CountingIds, Id, Intent, Kind, Spec};

const MAC_A: &str = "02:00:00:be:00:01";
const MAC_B: &str = "02:00:00:be:00:02";

fn create(
    intent: &mut Intent,
    ids: &mut CountingIds,
    kind: Kind,
    project: Option<&Id>,
    body: Value,
) -> anyhow::Result<Id> {
    let spec = Spec::parse(kind, body.to_string().as_bytes())
        .map_err(|e| anyhow::anyhow!("{kind:?} {body}: {e}"))?;
    let a = intent
        .apply(
            Command::Create {
                project: project.cloned(),
                spec,
            },
            ids,
        )
        .map_err(|e| anyhow::anyhow!("creating {kind:?}: {e}"))?;
    Ok(a.object.context("created object")?.id().clone())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [out, ul_a, ul_b, vm_a, vm_b] = args.as_slice() else {
        bail!("usage: bench-view OUT_DIR UL_A UL_B VM_A VM_B");
    };
    let (ul_a, ul_b): (IpAddr, IpAddr) = (ul_a.parse()?, ul_b.parse()?);
    let mut intent = Intent::new();
    let mut ids = CountingIds::default();
    let i = &mut intent;
    let d = &mut ids;
    let p = create(i, d, Kind::Project, None, json!({"name": "bench"}))?;
    let net = create(
        i,
        d,
        Kind::L2Network,
        Some(&p),
        json!({"name": "bench", "subnets": [{"cidr": "10.0.0.0/24", "gateway": "10.0.0.254"}]}),
    )?;
    let sg = create(
        i,
        d,
        Kind::SecurityGroup,
        Some(&p),
        json!({"name": "all", "rules": [{"direction": "ingress"}, {"direction": "egress"}]}),
    )?;
    let mut vifs = Vec::new();
    for (name, host, ip, mac) in [
        ("vmA", "host-a", vm_a, MAC_A),
        ("vmB", "host-b", vm_b, MAC_B),
    ] {
        vifs.push(create(
            i,
            d,
            Kind::InstancePort,
            Some(&p),
            json!({"name": name, "host": host, "mac": mac, "bindings": [{"service": net, "fixed_ips": [{"ip": ip}], "security_groups": [sg]}]}),
        )?);
    }
    let dir: BTreeMap<String, IpAddr> =
        [("host-a".to_string(), ul_a), ("host-b".to_string(), ul_b)].into();
    let compiler = Compiler::full(&intent);
    std::fs::create_dir_all(out)?;
    for host in ["host-a", "host-b"] {
        let view = compiler.host_view(&intent, host, &dir);
        let mut text = String::new();
        for (key, f) in &view.fragments {
            let json = serde_json::to_string(f)?;
            writeln!(text, "{key} {json}")?;
        }
        std::fs::write(format!("{out}/{host}.view"), text)?;
    }
    let env = format!(
        "TAP_A={}\nTAP_B={}\nMAC_A={MAC_A}\nMAC_B={MAC_B}\n",
        weft_dataplane::tap_name(vifs[0].as_str()),
        weft_dataplane::tap_name(vifs[1].as_str()),
    );
    std::fs::write(format!("{out}/bench.env"), env)?;
    Ok(())
}
