//! Host views are neighbour-scoped: a host gets its own ports' datapaths and
//! what forwarding to its neighbours needs, nothing of other projects, and
//! its view shrinks when its last port in a network goes away.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use serde_json::json;
use weft_compiler::Compiler;
use weft_model::{Command, CountingIds, Id, Intent, Kind, Spec};
use weft_pipeline::exec::Loaded;

struct W {
    intent: Intent,
    ids: CountingIds,
}

impl W {
    fn create(&mut self, kind: Kind, project: Option<&Id>, body: serde_json::Value) -> Id {
        let spec = Spec::parse(kind, body.to_string().as_bytes()).unwrap();
        let a = self
            .intent
            .apply(
                Command::Create {
                    project: project.cloned(),
                    spec,
                },
                &mut self.ids,
            )
            .unwrap();
        a.object.unwrap().id().clone()
    }
}

fn dir() -> BTreeMap<String, IpAddr> {
    ["host-a", "host-b", "host-c"]
        .iter()
        .enumerate()
        .map(|(i, h)| (h.to_string(), format!("192.0.2.{}", i + 1).parse().unwrap()))
        .collect()
}

/// Every id of a project's objects (and the datapaths named after them).
fn project_names(intent: &Intent, project: &Id) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (kind, id) in intent.objects_in_project(project.as_str()) {
        out.insert(id.to_string());
        match kind {
            Kind::L2Network => {
                out.insert(format!("ls:{id}"));
                for s in &intent.l2_networks()[id].subnets {
                    out.insert(format!("rps:{}", s.id));
                    out.insert(format!("rpr:{}", s.id));
                }
            }
            Kind::L3vpn => {
                out.insert(format!("lr:{id}"));
            }
            _ => {}
        }
    }
    out
}

#[test]
fn a_red_only_host_never_sees_blue() {
    let mut w = W {
        intent: Intent::new(),
        ids: CountingIds::default(),
    };
    let blue = w.create(Kind::Project, None, json!({"name": "blue"}));
    let red = w.create(Kind::Project, None, json!({"name": "red"}));
    let b1 = w.create(
        Kind::L2Network,
        Some(&blue),
        json!({"subnets": [{"cidr": "10.1.1.0/24"}]}),
    );
    let b2 = w.create(
        Kind::L2Network,
        Some(&blue),
        json!({"subnets": [{"cidr": "10.3.7.0/24"}]}),
    );
    let r1 = w.create(
        Kind::L2Network,
        Some(&red),
        json!({"subnets": [{"cidr": "10.1.1.0/24"}]}),
    );
    let r2 = w.create(
        Kind::L2Network,
        Some(&red),
        json!({"subnets": [{"cidr": "10.9.0.0/24"}]}),
    );
    let s = |w: &W, n: &Id| w.intent.l2_networks()[n].subnets[0].id.to_string();
    let (sb1, sb2, sr1) = (s(&w, &b1), s(&w, &b2), s(&w, &r1));
    w.create(
        Kind::L3vpn,
        Some(&blue),
        json!({"route_distinguisher": "1:1", "route_targets": ["1:1"], "subnets": [sb1, sb2]}),
    );
    // Red's VRF even shares Blue's route target value space but not Blue's targets.
    w.create(
        Kind::L3vpn,
        Some(&red),
        json!({"route_distinguisher": "1:2", "route_targets": ["1:2"], "subnets": [sr1]}),
    );
    let bsg = w.create(
        Kind::SecurityGroup,
        Some(&blue),
        json!({"rules": [{"direction": "ingress", "remote_group": null}]}),
    );
    for (host, net, ip) in [
        ("host-a", &b1, "10.1.1.5"),
        ("host-b", &b2, "10.3.7.10"),
        ("host-a", &b2, "10.3.7.9"),
    ] {
        w.create(Kind::InstancePort, Some(&blue), json!({"host": host, "bindings": [{"service": net, "fixed_ips": [{"ip": ip}], "security_groups": [bsg]}]}));
    }
    let r_port = w.create(
        Kind::InstancePort,
        Some(&red),
        json!({"host": "host-c", "bindings": [{"service": r1, "fixed_ips": [{"ip": "10.1.1.5"}]}]}),
    );
    let r_port2 = w.create(
        Kind::InstancePort,
        Some(&red),
        json!({"host": "host-c", "bindings": [{"service": r2}]}),
    );
    w.create(
        Kind::InstancePort,
        Some(&red),
        json!({"host": "host-a", "bindings": [{"service": r1, "fixed_ips": [{"ip": "10.1.1.6"}]}]}),
    );

    let c = Compiler::full(&w.intent);
    let d = dir();
    let view_c = c.host_view(&w.intent, "host-c", &d);
    let mentions = view_c.mentions();
    let blue_names = project_names(&w.intent, &blue);
    let leaked: Vec<_> = mentions.intersection(&blue_names).collect();
    assert!(
        leaked.is_empty(),
        "host-c (red only) sees blue objects: {leaked:?}"
    );
    // Nor does any flow, port or service config carry Blue's ids anywhere.
    let text = format!("{view_c:?}");
    for name in &blue_names {
        assert!(
            !text.contains(name.as_str()),
            "host-c's view mentions blue {name}"
        );
    }
    assert!(mentions.contains(&format!("ls:{r1}")));
    Loaded::load(&view_c.to_program()).unwrap();

    // host-a has Blue and Red ports: it sees both, but not Red's r2 (no neighbour there).
    let view_a = c.host_view(&w.intent, "host-a", &d);
    assert!(view_a.mentions().contains(&format!("ls:{b1}")));
    assert!(view_a.mentions().contains(&format!("ls:{r1}")));
    assert!(!view_a.mentions().contains(&format!("ls:{r2}")));
    // host-b only has a port on b2, but b2's VRF has a leg to b1: it needs b1's switch too.
    let view_b = c.host_view(&w.intent, "host-b", &d);
    assert!(view_b.mentions().contains(&format!("ls:{b1}")));
    assert!(!view_b.mentions().iter().any(|m| m.contains(r1.as_str())));
    // Only the host's own ports' ingress and egress filtering reach it.
    let bsp_a: Vec<String> = w
        .intent
        .service_ports()
        .values()
        .filter(|sp| {
            w.intent
                .port_of_interface(sp.interface.as_str())
                .and_then(|p| p.host.as_deref())
                == Some("host-a")
        })
        .map(|sp| sp.id.to_string())
        .collect();
    let prog_b = view_b.to_program();
    for dp in &prog_b.datapaths {
        for t in &dp.tables {
            for f in &t.flows {
                if let Some(p) = &f.r#match.in_port {
                    assert!(!bsp_a.contains(p), "host-b got host-a's ingress flow {f:?}");
                }
            }
        }
    }

    // The view shrinks when host-c's last port in r2 goes away.
    let before = c.host_view(&w.intent, "host-c", &d);
    assert!(before.mentions().contains(&format!("ls:{r2}")));
    let mut c = c;
    let iface = w
        .intent
        .children_of(r_port2.as_str())
        .next()
        .unwrap()
        .id
        .clone();
    let sp = w
        .intent
        .service_port_of_interface(iface.as_str())
        .unwrap()
        .id
        .clone();
    let a = w
        .intent
        .apply(
            Command::Delete {
                kind: Kind::ServicePort,
                id: sp,
                if_match: None,
            },
            &mut w.ids,
        )
        .unwrap();
    c.apply(&w.intent, &a.changes);
    let after = c.host_view(&w.intent, "host-c", &d);
    assert!(
        !after.mentions().contains(&format!("ls:{r2}")),
        "r2 still in host-c's view"
    );
    assert!(after.mentions().contains(&format!("ls:{r1}")));
    assert!(after.fragments.len() < before.fragments.len());
    let _ = r_port;
}

/// Records travel deflated; an agent decodes them back to the same view, still reads plain
/// JSON records (hand-written views, files of earlier agents), and refuses anything else
/// with an error naming what is wrong.
#[test]
fn records_round_trip_compressed() {
    use weft_compiler::view::{decode_record, decode_records, encode_record};
    let mut w = W {
        intent: Intent::default(),
        ids: CountingIds::default(),
    };
    let p = w.create(Kind::Project, None, json!({"name": "p"}));
    let net = w.create(
        Kind::L2Network,
        Some(&p),
        json!({"subnets": [{"cidr": "10.1.1.0/24"}]}),
    );
    for i in 0..20 {
        w.create(
            Kind::InstancePort,
            Some(&p),
            json!({"name": format!("vm{i}"), "host": if i % 2 == 0 { "host-a" } else { "host-b" }, "bindings": [{"service": net}]}),
        );
    }
    let c = Compiler::full(&w.intent);
    let view = c.host_view(&w.intent, "host-a", &dir());
    assert!(!view.fragments.is_empty());
    let (mut json_bytes, mut wire_bytes) = (0, 0);
    let mut records = BTreeMap::new();
    for (k, f) in &view.fragments {
        let json = serde_json::to_vec(f).unwrap();
        let wire = encode_record(f);
        assert_ne!(wire.first(), Some(&b'{'), "{k} is not compressed");
        assert_eq!(&decode_record(&wire).unwrap(), f, "{k}");
        assert_eq!(&decode_record(&json).unwrap(), f, "{k} as plain JSON");
        json_bytes += json.len();
        wire_bytes += wire.len();
        records.insert(k.clone(), wire);
    }
    assert!(
        wire_bytes * 3 < json_bytes,
        "records compress: {wire_bytes} B on the wire for {json_bytes} B of JSON"
    );
    let back = decode_records("host-a", &records).unwrap();
    assert_eq!(back.fragments, view.fragments);

    let e = decode_record(&[7, 1, 2]).unwrap_err();
    assert!(e.contains("unknown record encoding"), "{e}");
    let e = decode_record(&[1, 0xff, 0xff, 0xff]).unwrap_err();
    assert!(e.contains("does not inflate"), "{e}");
    assert!(decode_record(&[]).unwrap_err().contains("empty"));
    let mut bad = records.clone();
    bad.insert("port/x".into(), vec![1, 0xff]);
    let e = decode_records("host-a", &bad).unwrap_err();
    assert!(e.contains("record port/x does not decode"), "{e}");
}
