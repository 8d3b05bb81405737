//! `weft trace`: a packet described by a microflow expression is run
//! through the real host programs — the source port's host first, then,
//! for every copy sent into a tunnel, the receiving host — and each step is
//! reported with the flow that matched and the intent it came from.
//!
//! Syntax: the microflow expressions of `weft_pipeline::microflow`, e.g.
//! `ip4.dst == 10.1.1.6 && tcp.dst == 80` or `icmp4 && ip4.dst == 10.3.7.9`;
//! `ct.est` and friends pretend a connection state. Unset fields come from
//! the source port: its MAC and first address; the Ethernet destination is
//! the destination's MAC when it is on the same network, else the router.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;
use weft_model::{Id, Intent, Kind, ServicePort};
use weft_pipeline::exec::{Conntrack, ExecOptions, Ingress, Loaded, Target, execute};
use weft_pipeline::microflow::{MicroflowDefaults, parse_microflow};

use crate::Compiler;
use crate::names::{mac, router_mac};
use crate::view::HostDirectory;

/// Hosts visited at most (a packet crossing more tunnels is a loop).
const MAX_HOPS: usize = 4;

/// What went wrong before the packet could be traced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    /// The source port does not exist (or is ambiguous).
    #[error("{0}")]
    Source(String),
    /// The expression does not parse.
    #[error("bad expression at character {position} ({token:?}): {message}")]
    Expression {
        /// Where.
        position: usize,
        /// The offending token.
        token: String,
        /// Why.
        message: String,
    },
    /// The host program could not be loaded (a compiler bug).
    #[error("the program of host {host} does not load: {message}")]
    Program {
        /// The host.
        host: String,
        /// The loader's error.
        message: String,
    },
}

/// One host's part of a trace.
#[derive(Clone, Debug, Serialize)]
pub struct HopTrace {
    /// The host.
    pub host: String,
    /// How the packet entered it.
    pub ingress: String,
    /// Every step, rendered.
    pub steps: Vec<String>,
    /// What became of the packet on this host.
    pub verdict: String,
}

/// The whole trace.
#[derive(Clone, Debug, Serialize)]
pub struct TraceReport {
    /// The source port.
    pub from: String,
    /// The expression traced.
    pub expression: String,
    /// Hosts visited, in order.
    pub hops: Vec<HopTrace>,
    /// Final verdicts (one per copy that ended somewhere).
    pub verdicts: Vec<String>,
}

impl std::fmt::Display for TraceReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "trace from {}: {}", self.from, self.expression)?;
        for h in &self.hops {
            writeln!(f, "\n== host {} ({})", h.host, h.ingress)?;
            for s in &h.steps {
                writeln!(f, "  {s}")?;
            }
            writeln!(f, "  => {}", h.verdict)?;
        }
        writeln!(f)?;
        for v in &self.verdicts {
            writeln!(f, "verdict: {v}")?;
        }
        Ok(())
    }
}

/// Finds the source service port by id, by name, or by its instance port's
/// name or id (when that port carries exactly one service port).
pub fn resolve_source<'a>(intent: &'a Intent, from: &str) -> Result<&'a ServicePort, TraceError> {
    if let Some(sp) = intent.service_ports().get(from) {
        return Ok(sp);
    }
    let mut found: Vec<&ServicePort> = intent
        .service_ports()
        .values()
        .filter(|sp| sp.name == from)
        .collect();
    if found.is_empty() {
        found = intent
            .service_ports()
            .values()
            .filter(|sp| {
                intent
                    .port_of_interface(sp.interface.as_str())
                    .is_some_and(|p| p.name == from || p.id.as_str() == from)
            })
            .collect();
    }
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(TraceError::Source(format!(
            "no service port, or instance port with one binding, named or with id {from:?}"
        ))),
        many => Err(TraceError::Source(format!(
            "{from:?} names {} service ports; give a service port id: {}",
            many.len(),
            many.iter()
                .map(|s| s.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The Ethernet destination a VM would use towards `dst`.
fn dst_mac(
    intent: &Intent,
    sp: &ServicePort,
    dst: Option<IpAddr>,
) -> Option<weft_pipeline::MacAddr> {
    match sp.service_kind {
        Kind::L3vpn => Some(router_mac(&sp.service)),
        _ => {
            let net = intent.l2_networks().get(&sp.service)?;
            let dst = dst?;
            let same_subnet = net.subnets.iter().find(|s| s.cidr.contains(&dst));
            if same_subnet.is_some() {
                for other in intent.service_ports_of_service(net.id.as_str()) {
                    if other.fixed_ips.iter().any(|f| f.ip == dst) {
                        return intent
                            .port_of_interface(other.interface.as_str())
                            .map(|p| mac(p.mac));
                    }
                }
                // The gateway itself.
                if let Some(s) = same_subnet
                    && s.gateway == Some(dst)
                    && let Some(v) = intent.l3vpn_of_subnet(s.id.as_str())
                {
                    return Some(router_mac(&v.id));
                }
                return None;
            }
            // Off-subnet: the router of the source's subnet.
            let src = sp
                .fixed_ips
                .iter()
                .find(|f| f.ip.is_ipv4() == dst.is_ipv4())?;
            let v = intent.l3vpn_of_subnet(src.subnet.as_ref()?.as_str())?;
            Some(router_mac(&v.id))
        }
    }
}

fn load(
    compiler: &Compiler,
    intent: &Intent,
    dir: &dyn HostDirectory,
    host: &str,
) -> Result<Loaded, TraceError> {
    let prog = compiler.host_view(intent, host, dir).to_program();
    Loaded::load(&prog).map_err(|e| TraceError::Program {
        host: host.to_string(),
        message: e.to_string(),
    })
}

/// Traces a packet from a port; see the module docs for the syntax.
pub fn trace(
    compiler: &Compiler,
    intent: &Intent,
    dir: &dyn HostDirectory,
    hosts: &BTreeMap<IpAddr, String>,
    from: &str,
    expr: &str,
) -> Result<TraceReport, TraceError> {
    let sp = resolve_source(intent, from)?;
    let port = intent
        .port_of_interface(sp.interface.as_str())
        .ok_or_else(|| {
            TraceError::Source(format!("service port {} has no instance port", sp.id))
        })?;
    let Some(host) = port.host.clone() else {
        return Err(TraceError::Source(format!(
            "instance port {} is not bound to a host: set its host to trace from it",
            port.id
        )));
    };
    let m = parse_microflow(expr).map_err(|e| TraceError::Expression {
        position: e.position,
        token: e.token.clone(),
        message: e.message.clone(),
    })?;
    let mut d = MicroflowDefaults {
        eth_src: mac(port.mac),
        ..MicroflowDefaults::default()
    };
    for f in &sp.fixed_ips {
        match f.ip {
            IpAddr::V4(a) => {
                if d.ip4_src == MicroflowDefaults::default().ip4_src {
                    d.ip4_src = a;
                }
            }
            IpAddr::V6(a) => {
                if d.ip6_src == MicroflowDefaults::default().ip6_src {
                    d.ip6_src = a;
                }
            }
        }
    }
    if let Some(dm) = dst_mac(intent, sp, m.ip_dst) {
        d.eth_dst = dm;
    }
    let frame = m.build(&d).map_err(|e| TraceError::Expression {
        position: e.position,
        token: e.token.clone(),
        message: e.message.clone(),
    })?;
    let opts = ExecOptions {
        trace: true,
        ct_override: m.ct_state(),
    };
    let now = Duration::from_secs(1);
    let mut report = TraceReport {
        from: format!("{} on host {host}", sp.id),
        expression: expr.to_string(),
        hops: Vec::new(),
        verdicts: Vec::new(),
    };
    // (host, ingress, frame)
    let mut queue: Vec<(String, Ingress, String, Vec<u8>)> = Vec::new();
    let first = load(compiler, intent, dir, &host)?;
    let Some(pid) = first.port_id(sp.id.as_str()) else {
        return Err(TraceError::Program {
            host: host.clone(),
            message: format!("port {} is not in its host's program", sp.id),
        });
    };
    queue.push((
        host.clone(),
        Ingress::Port(pid),
        format!("from port {}", sp.id),
        frame,
    ));
    let mut loaded: BTreeMap<String, Loaded> = BTreeMap::new();
    loaded.insert(host.clone(), first);
    while let Some((h, ingress, how, bytes)) = queue.pop() {
        if report.hops.len() >= MAX_HOPS {
            report
                .verdicts
                .push(format!("stopped after {MAX_HOPS} hosts (loop?)"));
            break;
        }
        if !loaded.contains_key(&h) {
            let l = load(compiler, intent, dir, &h)?;
            loaded.insert(h.clone(), l);
        }
        let l = &loaded[&h];
        let mut ct = Conntrack::new(Default::default());
        let out = execute(l, &mut ct, ingress, &bytes, now, &opts);
        let steps = out
            .trace
            .as_ref()
            .map(|t| t.to_string().lines().map(str::to_string).collect())
            .unwrap_or_default();
        let verdict = out.verdict(l).to_string();
        let src_ip = dir.tunnel_ip(&h);
        for o in &out.outputs {
            match o.target {
                Target::Tunnel { remote, vni, .. } => match hosts.get(&remote) {
                    Some(next) if src_ip.is_some() => queue.push((
                        next.clone(),
                        Ingress::Tunnel {
                            vni,
                            remote: src_ip.unwrap_or(remote),
                        },
                        format!("from host {h} via VNI {vni}"),
                        o.bytes.clone(),
                    )),
                    _ => report
                        .verdicts
                        .push(format!("sent to {remote} via VNI {vni} (not a Weft host)")),
                },
                Target::Vif { port, .. } => {
                    let name = port.map(|p| l.port_name(p).to_string()).unwrap_or_default();
                    report.verdicts.push(format!(
                        "delivered to {} on host {h}",
                        describe_port(intent, &name)
                    ));
                }
            }
        }
        if out.outputs.is_empty() {
            report.verdicts.push(format!("on host {h}: {verdict}"));
        }
        report.hops.push(HopTrace {
            host: h,
            ingress: how,
            steps,
            verdict,
        });
    }
    Ok(report)
}

fn describe_port(intent: &Intent, sp: &str) -> String {
    let Some(s) = intent.service_ports().get(&Id::new(sp)) else {
        return format!("port {sp}");
    };
    let vlans = intent
        .interfaces()
        .get(&s.interface)
        .map(|i| i.vlan_path.clone())
        .unwrap_or_default();
    let tags = if vlans.is_empty() {
        String::new()
    } else {
        format!(
            ", vlan {}",
            vlans
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(".")
        )
    };
    let name = if !s.name.is_empty() {
        Some(s.name.clone())
    } else {
        intent
            .port_of_interface(s.interface.as_str())
            .map(|p| p.name.clone())
            .filter(|n| !n.is_empty())
    };
    match name {
        Some(n) => format!("port {n} ({sp}{tags})"),
        None => format!("port {sp}{tags}"),
    }
}
