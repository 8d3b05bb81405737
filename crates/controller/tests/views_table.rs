//! Host views maintained incrementally ([`weft_controller::views::Table`]) equal views
//! computed from scratch (`Compiler::host_view`), record for record, after every step of
//! random change sequences (the compiler's incremental test's generator: creates, updates,
//! deletes of every kind, host moves, VRF attachments, route targets, security groups),
//! with tunnel addresses changing on the way and hosts starting to be tracked late; and an
//! agent following the table's `changes_since` from its last revision always holds exactly
//! the table's view.

use std::collections::BTreeMap;
use std::net::IpAddr;

use proptest::prelude::*;
use serde_json::{Value, json};
use weft_compiler::Compiler;
use weft_controller::compile::CompiledBatch;
use weft_controller::views::{Cx, Table, encode};
use weft_model::{Command, CountingIds, Id, Intent, Kind, PortStatus, Spec};

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

fn expected(
    compiler: &Compiler,
    intent: &Intent,
    host: &str,
    dir: &BTreeMap<String, IpAddr>,
) -> BTreeMap<String, Vec<u8>> {
    compiler
        .host_view(intent, host, dir)
        .fragments
        .iter()
        .map(|(k, f)| (k.clone(), encode(f)))
        .collect()
}

/// The keys that differ, with both values as text.
fn diff(got: &BTreeMap<String, Vec<u8>>, want: &BTreeMap<String, Vec<u8>>) -> String {
    let mut out = String::new();
    for k in got
        .keys()
        .chain(want.keys())
        .collect::<std::collections::BTreeSet<_>>()
    {
        let (g, w) = (got.get(k), want.get(k));
        if g != w {
            let t = |v: Option<&Vec<u8>>| {
                v.map_or(
                    "(none)".to_string(),
                    |v| match weft_compiler::view::decode_record(v) {
                        Ok(f) => serde_json::to_string(&f).unwrap(),
                        Err(e) => format!("(does not decode: {e})"),
                    },
                )
            };
            out.push_str(&format!("\n  {k}:\n    got  {}\n    want {}", t(g), t(w)));
        }
    }
    out
}

fn run(seed: u64, steps: usize) -> Result<(), TestCaseError> {
    let mut r = Rng(seed);
    let mut intent = Intent::new();
    let mut ids = CountingIds::default();
    let mut compiler = Compiler::default();
    let mut table = Table::default();
    let mut dir: BTreeMap<String, IpAddr> = [("h1", "192.0.2.1"), ("h2", "192.0.2.2")]
        .into_iter()
        .map(|(h, ip)| (h.to_string(), ip.parse().unwrap()))
        .collect();
    // h3 is tracked later; h4 never holds a port.
    let mut tracked = vec!["h1", "h2", "h4"];
    let mut agents: BTreeMap<&str, (u64, BTreeMap<String, Vec<u8>>)> = BTreeMap::new();
    let mut rev = 1u64;
    for h in &tracked {
        let cx = Cx {
            intent: &intent,
            compiler: &compiler,
            dir: &dir,
        };
        table.track(&cx, h, rev);
    }
    let mut applied = 0;
    for _ in 0..steps * 3 {
        if applied == steps {
            break;
        }
        let Some(cmd) = random_command(&mut r, &intent) else {
            continue;
        };
        let text = format!("{cmd:?}");
        let Ok(a) = intent.apply(cmd, &mut ids) else {
            continue;
        };
        let last = text;
        applied += 1;
        rev += 1;
        let delta = compiler.apply(&intent, &a.changes);
        let batch = CompiledBatch::new(rev, Some(delta), &a.changes, &intent);
        let cx = Cx {
            intent: &intent,
            compiler: &compiler,
            dir: &dir,
        };
        table.apply(&cx, &batch, rev);
        if applied % 7 == 0 {
            // A host's tunnel address appears or moves; h3's appears late.
            rev += 1;
            let h = if applied % 14 == 0 { "h3" } else { "h2" };
            dir.insert(
                h.to_string(),
                format!("198.51.100.{}", applied % 250 + 1).parse().unwrap(),
            );
            let cx = Cx {
                intent: &intent,
                compiler: &compiler,
                dir: &dir,
            };
            table.tunnel_changed(&cx, h, rev);
        }
        if applied == steps / 2 {
            tracked.push("h3");
            let cx = Cx {
                intent: &intent,
                compiler: &compiler,
                dir: &dir,
            };
            table.track(&cx, "h3", rev);
        }
        for h in &tracked {
            let want = expected(&compiler, &intent, h, &dir);
            let got: BTreeMap<String, Vec<u8>> = table
                .records(h)
                .expect("tracked")
                .into_iter()
                .map(|r| (r.key, r.value))
                .collect();
            prop_assert!(
                got == want,
                "host {} after step {} ({:?}): {}",
                h,
                applied,
                last,
                diff(&got, &want)
            );
            // The agent catches up from the revision it holds.
            let (arev, aview) = agents.entry(h).or_insert_with(|| (0, BTreeMap::new()));
            match table.changes_since(h, *arev) {
                Some(deltas) if *arev > 0 => {
                    for d in deltas {
                        for k in d.deleted {
                            aview.remove(&k);
                        }
                        for u in d.upserts {
                            aview.insert(u.key, u.value);
                        }
                        prop_assert!(d.revision > *arev);
                        *arev = d.revision;
                    }
                }
                _ => {
                    *aview = got.clone();
                    *arev = rev;
                }
            }
            prop_assert!(
                *aview == want,
                "agent of {} after step {}: {}",
                h,
                applied,
                diff(aview, &want)
            );
        }
    }
    // A full recompile (the compile loop fell behind) gives the same views.
    rev += 1;
    let cx = Cx {
        intent: &intent,
        compiler: &compiler,
        dir: &dir,
    };
    let everything = CompiledBatch {
        revision: rev,
        delta: None,
        hosts: Vec::new(),
        relocated: true,
        topology: true,
    };
    table.apply(&cx, &everything, rev);
    for h in &tracked {
        let got: BTreeMap<String, Vec<u8>> = table
            .records(h)
            .expect("tracked")
            .into_iter()
            .map(|r| (r.key, r.value))
            .collect();
        prop_assert_eq!(
            &got,
            &expected(&compiler, &intent, h, &dir),
            "host {} after a full recompile",
            h
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn incremental_views_equal_full_views(seed in any::<u64>(), steps in 5usize..60) {
        run(seed, steps)?;
    }
}

#[test]
fn long_random_history() {
    for seed in 0..3u64 {
        run(seed * 7919 + 1, 300).unwrap();
    }
}
