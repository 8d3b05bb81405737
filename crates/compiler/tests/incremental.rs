//! Incremental compilation equals full recompilation, flow for flow: random
//! sequences of changes (creates, updates, deletes of every kind, port
//! status, host moves, VRF attachments, route targets, security groups) are
//! applied through the model; after each, the incrementally maintained
//! compiler must equal a fresh full compile. At the end every host's
//! program must load into the executor.

use std::collections::BTreeMap;
use std::net::IpAddr;

use proptest::prelude::*;
use serde_json::{Value, json};
use weft_compiler::Compiler;
use weft_model::{Command, CountingIds, Id, Intent, Kind, PortStatus, Spec};
use weft_pipeline::exec::Loaded;

/// splitmix64: a tiny deterministic generator driven by the proptest seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> Option<&'a T> {
        if v.is_empty() {
            None
        } else {
            Some(&v[self.below(v.len())])
        }
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn ids(intent: &Intent, kind: Kind) -> Vec<Id> {
    intent.ids(kind).cloned().collect()
}

fn create(kind: Kind, project: &Id, body: Value) -> Command {
    Command::Create {
        project: Some(project.clone()),
        spec: Spec::parse(kind, body.to_string().as_bytes()).expect("generated bodies parse"),
    }
}

fn random_command(r: &mut Rng, intent: &Intent) -> Option<Command> {
    let projects = ids(intent, Kind::Project);
    if projects.is_empty() || (projects.len() < 2 && r.chance(5)) {
        return Some(Command::Create {
            project: None,
            spec: Spec::Project(weft_model::ProjectSpec {
                name: format!("p{}", r.next() % 1000),
                description: String::new(),
            }),
        });
    }
    let p = r.pick(&projects)?.clone();
    let in_p = |kind: Kind| -> Vec<Id> {
        intent
            .ids(kind)
            .filter(|id| {
                intent
                    .owner_of(kind, id.as_str())
                    .is_some_and(|(o, _)| *o == p)
            })
            .cloned()
            .collect()
    };
    let nets = in_p(Kind::L2Network);
    let vpns = in_p(Kind::L3vpn);
    let sgs = in_p(Kind::SecurityGroup);
    let ports = in_p(Kind::InstancePort);
    let sps = in_p(Kind::ServicePort);
    let hosts = ["h1", "h2", "h3"];
    let rts = ["64512:1", "64512:2", "64512:3"];
    Some(match r.below(20) {
        0 | 1 => create(
            Kind::L2Network,
            &p,
            json!({"subnets": [{"cidr": format!("10.{}.{}.0/24", r.below(3), r.below(4))}]}),
        ),
        2 => create(
            Kind::L3vpn,
            &p,
            json!({"route_distinguisher": format!("64512:{}", r.next() % 100000),
                   "import_targets": [r.pick(&rts)?], "export_targets": [r.pick(&rts)?],
                   "anycast_mode": if r.chance(50) { "load-split" } else { "fail-over" }}),
        ),
        3 => {
            // Attach or detach subnets.
            let v = r.pick(&vpns)?;
            let mut subnets = Vec::new();
            for n in &nets {
                if r.chance(50) {
                    subnets.push(intent.l2_networks()[n].subnets.first()?.id.to_string());
                }
            }
            Command::Update {
                kind: Kind::L3vpn,
                id: v.clone(),
                patch: json!({"subnets": subnets}),
                if_match: None,
            }
        }
        4 => {
            let v = r.pick(&vpns)?;
            Command::Update {
                kind: Kind::L3vpn,
                id: v.clone(),
                patch: json!({"import_targets": [r.pick(&rts)?], "export_targets": [r.pick(&rts)?]}),
                if_match: None,
            }
        }
        5 => {
            let v = r.pick(&vpns)?;
            let nh = format!("10.{}.{}.{}", r.below(3), r.below(4), 2 + r.below(6));
            Command::Update {
                kind: Kind::L3vpn,
                id: v.clone(),
                patch: json!({"static_routes": [{"prefix": "172.16.0.0/16", "nexthops": [{"ip": nh}, {"ip": "10.0.0.3"}]}]}),
                if_match: None,
            }
        }
        6 => {
            let mut rules = vec![json!({"direction": "egress"})];
            if r.chance(60) {
                let mut rule =
                    json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 80});
                if let Some(g) = r.pick(&sgs) {
                    rule["remote_group"] = json!(g);
                }
                rules.push(rule);
            }
            if r.chance(30) {
                rules.push(json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 23, "action": "reject", "log": true}));
            }
            if r.chance(50) && !sgs.is_empty() {
                Command::Update {
                    kind: Kind::SecurityGroup,
                    id: r.pick(&sgs)?.clone(),
                    patch: json!({"rules": rules}),
                    if_match: None,
                }
            } else {
                create(
                    Kind::SecurityGroup,
                    &p,
                    json!({"rules": rules, "stateful": r.chance(80)}),
                )
            }
        }
        7..=9 => {
            // A port with a binding to a network (auto or explicit address) or a VRF.
            let mut b = if r.chance(70) || vpns.is_empty() {
                let n = r.pick(&nets)?;
                let mut b = json!({"service": n});
                if r.chance(40) {
                    let s = intent.l2_networks()[n].subnets.first()?;
                    if let IpAddr::V4(a) = s.cidr.addr() {
                        let o = a.octets();
                        b["fixed_ips"] = json!([{"ip": format!("{}.{}.{}.{}", o[0], o[1], o[2], 2 + r.below(6))}]);
                    }
                }
                b
            } else {
                let role = if r.chance(30) {
                    json!("hub")
                } else if r.chance(40) {
                    json!("spoke")
                } else {
                    Value::Null
                };
                json!({"service": r.pick(&vpns)?, "fixed_ips": [{"ip": format!("192.168.{}.{}", r.below(2), 1 + r.below(4))}], "role": role})
            };
            if let Some(g) = r.pick(&sgs) {
                b["security_groups"] = json!([g]);
            }
            create(
                Kind::InstancePort,
                &p,
                json!({"host": r.pick(&hosts)?, "bindings": [b]}),
            )
        }
        10 => {
            // A VLAN interface and a service port on it.
            let port = r.pick(&ports)?;
            Command::Create {
                project: Some(p.clone()),
                spec: Spec::parse(
                    Kind::Interface,
                    json!({"parent": port, "vlan": 10 + r.below(5)})
                        .to_string()
                        .as_bytes(),
                )
                .ok()?,
            }
        }
        11 => {
            let ifaces: Vec<Id> = in_p(Kind::Interface)
                .into_iter()
                .filter(|i| intent.service_port_of_interface(i.as_str()).is_none())
                .collect();
            let i = r.pick(&ifaces)?;
            let n = r.pick(&nets)?;
            create(Kind::ServicePort, &p, json!({"interface": i, "service": n}))
        }
        12 => {
            let port = r.pick(&ports)?;
            let patch = match r.below(3) {
                0 => json!({"host": r.pick(&hosts)?}),
                1 => json!({"admin_up": r.chance(50)}),
                _ => json!({"host": null}),
            };
            Command::Update {
                kind: Kind::InstancePort,
                id: port.clone(),
                patch,
                if_match: None,
            }
        }
        13 => Command::SetPortStatus {
            id: r.pick(&ports)?.clone(),
            status: if r.chance(50) {
                PortStatus::Up
            } else {
                PortStatus::Down
            },
        },
        14 => {
            let sp = r.pick(&sps)?;
            let patch = match r.below(3) {
                0 => json!({"security_groups": sgs.iter().take(r.below(3)).collect::<Vec<_>>()}),
                1 => json!({"preference": r.below(300)}),
                _ => json!({"port_security": r.chance(70), "security_groups": []}),
            };
            Command::Update {
                kind: Kind::ServicePort,
                id: sp.clone(),
                patch,
                if_match: None,
            }
        }
        15 | 16 => Command::Delete {
            kind: Kind::ServicePort,
            id: r.pick(&sps)?.clone(),
            if_match: None,
        },
        17 => Command::Delete {
            kind: Kind::Interface,
            id: r.pick(&in_p(Kind::Interface))?.clone(),
            if_match: None,
        },
        18 => Command::Delete {
            kind: Kind::InstancePort,
            id: r.pick(&ports)?.clone(),
            if_match: None,
        },
        _ => {
            let kind = *r.pick(&[Kind::L2Network, Kind::L3vpn, Kind::SecurityGroup])?;
            Command::Delete {
                kind,
                id: r.pick(&in_p(kind))?.clone(),
                if_match: None,
            }
        }
    })
}

fn run(seed: u64, steps: usize) -> Result<(), TestCaseError> {
    let mut r = Rng(seed);
    let mut intent = Intent::new();
    let mut ids = CountingIds::default();
    let mut compiler = Compiler::default();
    let mut applied = 0;
    for _ in 0..steps * 3 {
        if applied == steps {
            break;
        }
        let Some(cmd) = random_command(&mut r, &intent) else {
            continue;
        };
        let Ok(a) = intent.apply(cmd, &mut ids) else {
            continue;
        };
        applied += 1;
        let delta = compiler.apply(&intent, &a.changes);
        prop_assert!(
            delta.recomputed <= weft_compiler::Compiler::full(&intent).fragments().len() + 64
        );
        let full = Compiler::full(&intent);
        prop_assert_eq!(full.fragments(), compiler.fragments(), "step {}", applied);
    }
    let dir: BTreeMap<String, IpAddr> = [
        ("h1", "192.0.2.1"),
        ("h2", "192.0.2.2"),
        ("h3", "192.0.2.3"),
    ]
    .into_iter()
    .map(|(h, ip)| (h.to_string(), ip.parse().unwrap()))
    .collect();
    check_records(&compiler, &intent, &dir)?;
    for h in dir.keys() {
        let prog = compiler.host_view(&intent, h, &dir).to_program();
        if let Err(e) = Loaded::load(&prog) {
            return Err(TestCaseError::fail(format!(
                "host {h} program does not load: {e}"
            )));
        }
    }
    Ok(())
}

/// Views assembled record by record (`host_record`) equal `host_view`, and two hosts that
/// agree on a record's inputs (`record_inputs`) get the same record.
fn check_records(
    compiler: &Compiler,
    intent: &Intent,
    dir: &BTreeMap<String, IpAddr>,
) -> Result<(), TestCaseError> {
    use std::collections::BTreeSet;
    use weft_compiler::view::{named_sets, neighbourhood, record_inputs, service_port_host};
    let hosts = ["h1", "h2", "h3", "h-none"];
    let mut ctx = Vec::new();
    for h in hosts {
        let full = compiler.host_view(intent, h, dir);
        let dps = neighbourhood(intent, h);
        let mut sets = BTreeSet::new();
        for owner in compiler.fragments().keys() {
            if let Some(r) = compiler.host_record(intent, h, &dps, &BTreeSet::new(), dir, owner) {
                sets.extend(named_sets(&r));
            }
        }
        let mut assembled = BTreeMap::new();
        for owner in compiler.fragments().keys() {
            if let Some(r) = compiler.host_record(intent, h, &dps, &sets, dir, owner) {
                assembled.insert(owner.key(), r);
            }
        }
        prop_assert_eq!(&full.fragments, &assembled, "host {}", h);
        ctx.push((h, dps, sets));
    }
    for (owner, f) in compiler.fragments() {
        let inputs = record_inputs(f);
        let local = |h: &str| {
            inputs.hosts.contains(h)
                || inputs
                    .ports
                    .iter()
                    .any(|p| service_port_host(intent, p) == Some(h))
        };
        for (a, da, sa) in &ctx {
            for (b, db, sb) in &ctx {
                let same = !local(a)
                    && !local(b)
                    && inputs
                        .datapaths
                        .iter()
                        .all(|d| da.contains(d) == db.contains(d))
                    && inputs.sets.iter().all(|s| sa.contains(s) == sb.contains(s));
                if same {
                    prop_assert_eq!(
                        compiler.host_record(intent, a, da, sa, dir, owner),
                        compiler.host_record(intent, b, db, sb, dir, owner),
                        "owner {:?}, hosts {} and {}",
                        owner,
                        a,
                        b
                    );
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]
    #[test]
    fn incremental_equals_full(seed in any::<u64>(), steps in 5usize..60) {
        run(seed, steps)?;
    }
}

#[test]
fn long_random_history() {
    for seed in 0..5u64 {
        run(seed * 7919 + 1, 300).unwrap();
    }
}
