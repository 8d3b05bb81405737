//! Table-driven validation tests of the intent model: each case builds a
//! small world through commands, then applies one more command and checks
//! the outcome (the error code, the field blamed and words of the message,
//! or success). A refused command must leave the database unchanged.

use serde_json::{Value, json};
use weft_model::*;

/// A small world built through the same commands the API issues.
struct World {
    intent: Intent,
    ids: CountingIds,
}

impl World {
    fn new() -> Self {
        World {
            intent: Intent::new(),
            ids: CountingIds::default(),
        }
    }

    fn run(&mut self, cmd: Command) -> Result<Option<Object>, ModelError> {
        let before = self.intent.clone();
        let r = self.intent.apply(cmd, &mut self.ids);
        match r {
            Ok(a) => {
                assert!(self.intent.indexes_consistent(), "indexes drifted");
                Ok(a.object)
            }
            Err(e) => {
                assert_eq!(
                    self.intent, before,
                    "a refused command changed the database: {e}"
                );
                Err(e)
            }
        }
    }

    fn create(
        &mut self,
        kind: Kind,
        project: Option<&Id>,
        body: Value,
    ) -> Result<Object, ModelError> {
        let spec = Spec::parse(kind, body.to_string().as_bytes())?;
        Ok(self
            .run(Command::Create {
                project: project.cloned(),
                spec,
            })?
            .expect("create returns the object"))
    }

    fn ok(&mut self, kind: Kind, project: &Id, body: Value) -> Id {
        match self.create(kind, Some(project), body.clone()) {
            Ok(o) => o.id().clone(),
            Err(e) => panic!("creating {kind} {body} failed: {e}"),
        }
    }

    fn project(&mut self, name: &str) -> Id {
        self.create(Kind::Project, None, json!({"name": name}))
            .unwrap()
            .id()
            .clone()
    }

    fn update(
        &mut self,
        kind: Kind,
        id: &Id,
        patch: Value,
        if_match: Option<u64>,
    ) -> Result<Object, ModelError> {
        Ok(self
            .run(Command::Update {
                kind,
                id: id.clone(),
                patch,
                if_match,
            })?
            .unwrap())
    }

    fn delete(&mut self, kind: Kind, id: &Id) -> Result<(), ModelError> {
        self.run(Command::Delete {
            kind,
            id: id.clone(),
            if_match: None,
        })
        .map(|_| ())
    }

    /// A network with one subnet, a port with an untagged interface.
    fn net(&mut self, p: &Id, cidr: &str) -> Id {
        self.ok(
            Kind::L2Network,
            p,
            json!({"name": "net", "subnets": [{"cidr": cidr}]}),
        )
    }

    fn iface(&mut self, p: &Id) -> Id {
        let port = self.ok(Kind::InstancePort, p, json!({"name": "vm"}));
        self.ok(Kind::Interface, p, json!({"parent": port}))
    }

    fn bind(&mut self, p: &Id, svc: &Id, ips: Value) -> Result<Object, ModelError> {
        let i = self.iface(p);
        self.create(
            Kind::ServicePort,
            Some(p),
            json!({"interface": i, "service": svc, "fixed_ips": ips}),
        )
    }
}

fn subnet_id(w: &World, net: &Id, n: usize) -> Id {
    w.intent.l2_networks()[net].subnets[n].id.clone()
}

#[track_caller]
fn expect_err(
    r: Result<impl std::fmt::Debug, ModelError>,
    code: ErrorCode,
    field: Option<&str>,
    words: &str,
) {
    match r {
        Ok(v) => panic!("expected {code:?} ({words}), got success: {v:?}"),
        Err(e) => {
            assert_eq!(e.code, code, "wrong code for: {e}");
            assert_eq!(e.field.as_deref(), field, "wrong field for: {e}");
            assert!(
                e.message.contains(words),
                "message {:?} lacks {words:?}",
                e.message
            );
        }
    }
}

#[test]
fn malformed_values_are_refused_with_the_field_named() {
    let mut w = World::new();
    let p = w.project("blue");
    let cases: Vec<(Kind, Value, Option<&str>, &str)> = vec![
        (
            Kind::L2Network,
            json!({"subnets": [{"cidr": "10.1.1.0/33"}]}),
            Some("subnets[0].cidr"),
            "invalid CIDR",
        ),
        (
            Kind::L2Network,
            json!({"subnets": [{"cidr": "10.1.1.7/24"}]}),
            Some("subnets[0].cidr"),
            "did you mean 10.1.1.0/24",
        ),
        (
            Kind::L2Network,
            json!({"subnets": [{"cidr": "banana"}]}),
            Some("subnets[0].cidr"),
            "invalid CIDR",
        ),
        (
            Kind::L2Network,
            json!({"subnets": [{"cidr": "10.1.1.0/24", "gateway": "10.1.2.1"}]}),
            Some("subnets[0].gateway"),
            "not a host address",
        ),
        (
            Kind::L2Network,
            json!({"subnets": [{"cidr": "10.1.1.0/24"}, {"cidr": "10.1.0.0/16"}]}),
            Some("subnets[1].cidr"),
            "overlap",
        ),
        (
            Kind::L2Network,
            json!({"vni": 0}),
            Some("vni"),
            "out of range",
        ),
        (
            Kind::L2Network,
            json!({"vni": 16777216}),
            Some("vni"),
            "out of range",
        ),
        (
            Kind::L2Network,
            json!({"provider": {"physical_network": "phys", "network_type": "vlan"}}),
            Some("provider.segmentation_id"),
            "1-4094",
        ),
        (
            Kind::L2Network,
            json!({"subnets": [{"cidr": "10.1.1.0/24", "allocation_pools": [{"start": "10.1.1.1", "end": "10.1.1.9"}]}]}),
            Some("subnets[0].allocation_pools[0]"),
            "contains the gateway",
        ),
        (
            Kind::L2Network,
            json!({"colour": "blue"}),
            Some("colour"),
            "unknown field",
        ),
        (
            Kind::L2Network,
            json!({"subnets": "10.0.0.0/8"}),
            Some("subnets"),
            "invalid type",
        ),
        (
            Kind::InstancePort,
            json!({"mac": "fa:16:3e:00:00"}),
            Some("mac"),
            "invalid MAC",
        ),
        (
            Kind::InstancePort,
            json!({"mac": "01:00:5e:00:00:01"}),
            Some("mac"),
            "multicast",
        ),
        (
            Kind::InstancePort,
            json!({"mtu": 20}),
            Some("mtu"),
            "out of range",
        ),
        (
            Kind::InstancePort,
            json!({"mtu": "big"}),
            Some("mtu"),
            "invalid type",
        ),
        (
            Kind::InstancePort,
            json!({"host": "bad host!"}),
            Some("host"),
            "host name",
        ),
        (
            Kind::L3vpn,
            json!({"name": "x"}),
            Some("route_distinguisher"),
            "required",
        ),
        (
            Kind::L3vpn,
            json!({"route_distinguisher": "64512"}),
            Some("route_distinguisher"),
            "missing ':'",
        ),
        (
            Kind::L3vpn,
            json!({"route_distinguisher": "192.0.2.1:70000"}),
            Some("route_distinguisher"),
            "16 bits",
        ),
        (
            Kind::L3vpn,
            json!({"route_distinguisher": "4200000000:70000"}),
            Some("route_distinguisher"),
            "16 bits",
        ),
        (
            Kind::L3vpn,
            json!({"route_distinguisher": "1:1", "route_targets": ["1:x"]}),
            Some("route_targets[0]"),
            "not a decimal",
        ),
        (
            Kind::L3vpn,
            json!({"route_distinguisher": "1:1", "import_targets": ["300.1.1.1:1"]}),
            Some("import_targets[0]"),
            "route target",
        ),
        (
            Kind::L3vpn,
            json!({"route_distinguisher": "1:1", "static_routes": [{"prefix": "10.1.1.5/24", "nexthops": [{"ip": "5.1.1.1"}]}]}),
            Some("static_routes[0].prefix"),
            "host bits",
        ),
        (
            Kind::L3vpn,
            json!({"route_distinguisher": "1:1", "static_routes": [{"prefix": "10.1.1.5/32", "nexthops": []}]}),
            Some("static_routes[0].nexthops"),
            "at least one",
        ),
        (
            Kind::L3vpn,
            json!({"route_distinguisher": "1:1", "static_routes": [{"prefix": "10.1.1.5/32", "nexthops": [{"ip": "2001:db8::1"}]}]}),
            Some("static_routes[0].nexthops[0]"),
            "IP version",
        ),
        (
            Kind::SecurityGroup,
            json!({"rules": [{"direction": "ingress", "protocol": "tcp", "port_range_min": 90, "port_range_max": 80}]}),
            Some("rules[0].port_range_min"),
            "greater than",
        ),
        (
            Kind::SecurityGroup,
            json!({"rules": [{"direction": "ingress", "protocol": "icmp", "port_range_min": 80}]}),
            Some("rules[0].port_range_min"),
            "do not apply",
        ),
        (
            Kind::SecurityGroup,
            json!({"rules": [{"direction": "ingress", "port_range_min": 80}]}),
            Some("rules[0].protocol"),
            "tcp or udp",
        ),
        (
            Kind::SecurityGroup,
            json!({"rules": [{"direction": "ingress", "remote_prefix": "2001:db8::/32"}]}),
            Some("rules[0].remote_prefix"),
            "ethertype",
        ),
        (
            Kind::SecurityGroup,
            json!({"rules": [{"direction": "sideways"}]}),
            Some("rules[0].direction"),
            "unknown variant",
        ),
        (
            Kind::SecurityGroup,
            json!({"rules": [{"direction": "ingress", "protocol": "gre"}]}),
            Some("rules[0].protocol"),
            "invalid protocol",
        ),
        (
            Kind::SecurityGroup,
            json!({"rules": [{"direction": "ingress", "remote_group": "nope"}]}),
            Some("rules[0].remote_group"),
            "does not exist",
        ),
        (
            Kind::SiteLink,
            json!({"site": "a", "remote_site": "a", "local_endpoint": "192.0.2.1", "remote_endpoint": "192.0.2.2"}),
            Some("remote_site"),
            "two different sites",
        ),
        (
            Kind::SiteLink,
            json!({"site": "a", "remote_site": "b", "local_endpoint": "192.0.2.1", "remote_endpoint": "2001:db8::1"}),
            Some("remote_endpoint"),
            "same IP version",
        ),
        (
            Kind::Interface,
            json!({"parent": "nope"}),
            Some("parent"),
            "neither an instance port nor an interface",
        ),
        (
            Kind::ServicePort,
            json!({"interface": "nope", "service": "nope"}),
            Some("interface"),
            "does not exist",
        ),
    ];
    for (kind, body, field, words) in cases {
        let r = w.create(kind, Some(&p), body.clone());
        match r {
            Ok(o) => panic!("{kind} {body} was accepted: {o:?}"),
            Err(e) => {
                assert_eq!(
                    e.code,
                    ErrorCode::InvalidArgument.min(e.code),
                    "{body}: {e}"
                );
                assert_eq!(e.field.as_deref(), field, "{body}: {e}");
                assert!(
                    e.message.contains(words),
                    "{body}: message {:?} lacks {words:?}",
                    e.message
                );
            }
        }
    }
}

trait MinCode {
    fn min(self, other: ErrorCode) -> ErrorCode;
}
impl MinCode for ErrorCode {
    /// Malformed input is 400, a missing reference is 404: both are fine
    /// answers to a bad body; what matters is the field and the message.
    fn min(self, other: ErrorCode) -> ErrorCode {
        match other {
            ErrorCode::NotFound => ErrorCode::NotFound,
            _ => self,
        }
    }
}

#[test]
fn addresses_in_one_network() {
    let mut w = World::new();
    let p = w.project("blue");
    let net = w.net(&p, "10.1.1.0/24");
    let s = subnet_id(&w, &net, 0);
    expect_err(
        w.bind(&p, &net, json!([{"ip": "10.2.0.5"}])),
        ErrorCode::InvalidArgument,
        Some("fixed_ips[0].ip"),
        "outside every subnet",
    );
    expect_err(
        w.bind(&p, &net, json!([{"subnet": s, "ip": "10.2.0.5"}])),
        ErrorCode::InvalidArgument,
        Some("fixed_ips[0].ip"),
        "outside subnet",
    );
    expect_err(
        w.bind(&p, &net, json!([{"ip": "10.1.1.255"}])),
        ErrorCode::InvalidArgument,
        Some("fixed_ips[0].ip"),
        "broadcast",
    );
    expect_err(
        w.bind(&p, &net, json!([{"ip": "10.1.1.1"}])),
        ErrorCode::Conflict,
        Some("fixed_ips[0].ip"),
        "gateway",
    );
    let first = w.bind(&p, &net, json!([{"ip": "10.1.1.5"}])).unwrap();
    expect_err(
        w.bind(&p, &net, json!([{"ip": "10.1.1.5"}])),
        ErrorCode::Conflict,
        Some("fixed_ips[0].ip"),
        &format!(
            "already used in l2-network {net} by service-port {}",
            first.id()
        ),
    );
    expect_err(
        w.bind(&p, &net, json!([{"ip": "10.1.1.6"}, {"ip": "10.1.1.6"}])),
        ErrorCode::InvalidArgument,
        Some("fixed_ips[1].ip"),
        "listed twice",
    );
    // Automatic allocation takes the lowest free address, skipping used ones.
    let a = w.bind(&p, &net, json!([{"subnet": s}])).unwrap();
    let Object::ServicePort(a) = a else {
        unreachable!()
    };
    assert_eq!(a.fixed_ips[0].ip.to_string(), "10.1.1.2");
    // No fixed_ips at all: one address from the first IPv4 subnet.
    let i = w.iface(&p);
    let b = w
        .create(
            Kind::ServicePort,
            Some(&p),
            json!({"interface": i, "service": net}),
        )
        .unwrap();
    let Object::ServicePort(b) = b else {
        unreachable!()
    };
    assert_eq!(b.fixed_ips.len(), 1);
    assert_eq!(b.fixed_ips[0].ip.to_string(), "10.1.1.3");
    // The same address is fine in another network and in another project.
    let net2 = w.net(&p, "10.1.1.0/24");
    w.bind(&p, &net2, json!([{"ip": "10.1.1.5"}])).unwrap();
    let red = w.project("red");
    let rnet = w.net(&red, "10.1.1.0/24");
    w.bind(&red, &rnet, json!([{"ip": "10.1.1.5"}])).unwrap();
}

#[test]
fn pools_run_dry_with_a_clear_error() {
    let mut w = World::new();
    let p = w.project("blue");
    let net = w.net(&p, "10.9.9.0/30");
    // A /30 has two host addresses, one of them the gateway.
    let s = subnet_id(&w, &net, 0);
    w.bind(&p, &net, json!([{"subnet": s}])).unwrap();
    expect_err(
        w.bind(&p, &net, json!([{"subnet": s}])),
        ErrorCode::Conflict,
        Some("fixed_ips[0]"),
        "no free address",
    );
}

#[test]
fn anycast_is_allowed_only_for_routed_ports_of_one_l3vpn() {
    let mut w = World::new();
    let p = w.project("blue");
    let vpn = w.ok(
        Kind::L3vpn,
        &p,
        json!({"route_distinguisher": "64512:1", "route_targets": ["64512:1"]}),
    );
    for _ in 0..3 {
        w.bind(&p, &vpn, json!([{"ip": "10.1.1.5"}])).unwrap();
    }
    assert_eq!(w.intent.service_ports_of_service(vpn.as_str()).count(), 3);
    // A routed port needs explicit addresses without subnet.
    let i = w.iface(&p);
    expect_err(
        w.create(
            Kind::ServicePort,
            Some(&p),
            json!({"interface": i, "service": vpn}),
        ),
        ErrorCode::InvalidArgument,
        Some("fixed_ips"),
        "explicit addresses",
    );
    // An address of an l2 port in a subnet attached to the VRF is not anycast.
    let net = w.net(&p, "10.3.7.0/24");
    let s = subnet_id(&w, &net, 0);
    w.bind(&p, &net, json!([{"ip": "10.3.7.9"}])).unwrap();
    w.update(Kind::L3vpn, &vpn, json!({"subnets": [s]}), None)
        .unwrap();
    expect_err(
        w.bind(&p, &vpn, json!([{"ip": "10.3.7.9"}])),
        ErrorCode::Conflict,
        Some("fixed_ips[0].ip"),
        "only by routed ports",
    );
    // Overlapping space in another VRF is fine.
    let vpn2 = w.ok(Kind::L3vpn, &p, json!({"route_distinguisher": "64512:2"}));
    w.bind(&p, &vpn2, json!([{"ip": "10.3.7.9"}])).unwrap();
}

#[test]
fn route_distinguishers_vnis_and_attachments_are_unique() {
    let mut w = World::new();
    let p = w.project("blue");
    let v1 = w.ok(
        Kind::L3vpn,
        &p,
        json!({"route_distinguisher": "64512:1", "vni": 5000}),
    );
    expect_err(
        w.create(
            Kind::L3vpn,
            Some(&p),
            json!({"route_distinguisher": "64512:1"}),
        ),
        ErrorCode::Conflict,
        Some("route_distinguisher"),
        &format!("used by l3vpn {v1}"),
    );
    expect_err(
        w.create(Kind::L2Network, Some(&p), json!({"vni": 5000})),
        ErrorCode::Conflict,
        Some("vni"),
        "already used",
    );
    let n1 = w.net(&p, "10.1.1.0/24");
    let n2 = w.net(&p, "10.1.0.0/16");
    let (s1, s2) = (subnet_id(&w, &n1, 0), subnet_id(&w, &n2, 0));
    w.update(Kind::L3vpn, &v1, json!({"subnets": [s1]}), None)
        .unwrap();
    expect_err(
        w.update(Kind::L3vpn, &v1, json!({"subnets": [s1, s2]}), None),
        ErrorCode::Conflict,
        Some("subnets[1]"),
        "overlap",
    );
    let v2 = w.ok(Kind::L3vpn, &p, json!({"route_distinguisher": "64512:2"}));
    expect_err(
        w.update(Kind::L3vpn, &v2, json!({"subnets": [s1]}), None),
        ErrorCode::Conflict,
        Some("subnets[0]"),
        "already attached",
    );
    let nogw = w.ok(
        Kind::L2Network,
        &p,
        json!({"subnets": [{"cidr": "10.7.0.0/24", "no_gateway": true}]}),
    );
    let s3 = subnet_id(&w, &nogw, 0);
    expect_err(
        w.update(Kind::L3vpn, &v2, json!({"subnets": [s3]}), None),
        ErrorCode::InvalidArgument,
        Some("subnets[0]"),
        "no gateway",
    );
    // Deleting the network of an attached subnet is refused, naming the VRF.
    expect_err(
        w.delete(Kind::L2Network, &n1),
        ErrorCode::Conflict,
        None,
        &format!("l3vpn {v1}"),
    );
}

#[test]
fn foreign_objects_are_invisible() {
    let mut w = World::new();
    let blue = w.project("blue");
    let red = w.project("red");
    let rnet = w.net(&red, "10.1.1.0/24");
    let rsg = w.ok(Kind::SecurityGroup, &red, json!({"rules": []}));
    let i = w.iface(&blue);
    expect_err(
        w.create(
            Kind::ServicePort,
            Some(&blue),
            json!({"interface": i, "service": rnet}),
        ),
        ErrorCode::NotFound,
        Some("service"),
        "does not exist in this project",
    );
    let bnet = w.net(&blue, "10.1.1.0/24");
    expect_err(
        w.create(
            Kind::ServicePort,
            Some(&blue),
            json!({"interface": i, "service": bnet, "security_groups": [rsg]}),
        ),
        ErrorCode::NotFound,
        Some("security_groups[0]"),
        "does not exist in this project",
    );
    let rport = w.ok(Kind::InstancePort, &red, json!({}));
    expect_err(
        w.create(Kind::Interface, Some(&blue), json!({"parent": rport})),
        ErrorCode::NotFound,
        Some("parent"),
        "does not exist in this project",
    );
}

#[test]
fn deleting_what_is_held_names_the_holder() {
    let mut w = World::new();
    let p = w.project("blue");
    let net = w.net(&p, "10.1.1.0/24");
    let sg = w.ok(
        Kind::SecurityGroup,
        &p,
        json!({"rules": [{"direction": "ingress", "remote_group": null}]}),
    );
    let sg2 = w.ok(
        Kind::SecurityGroup,
        &p,
        json!({"rules": [{"direction": "ingress", "remote_group": sg}]}),
    );
    let port = w.ok(Kind::InstancePort, &p, json!({}));
    let iface = w.ok(Kind::Interface, &p, json!({"parent": port}));
    let sp = w.ok(
        Kind::ServicePort,
        &p,
        json!({"interface": iface, "service": net, "security_groups": [sg]}),
    );
    expect_err(
        w.delete(Kind::L2Network, &net),
        ErrorCode::Conflict,
        None,
        &format!("service-port {sp}"),
    );
    expect_err(
        w.delete(Kind::Interface, &iface),
        ErrorCode::Conflict,
        None,
        &format!("service-port {sp}"),
    );
    expect_err(
        w.delete(Kind::InstancePort, &port),
        ErrorCode::Conflict,
        None,
        &format!("interface {iface}"),
    );
    expect_err(
        w.delete(Kind::SecurityGroup, &sg),
        ErrorCode::Conflict,
        None,
        &format!("service-port {sp}"),
    );
    expect_err(
        w.delete(Kind::Project, &p),
        ErrorCode::Conflict,
        None,
        "objects in the project",
    );
    w.delete(Kind::ServicePort, &sp).unwrap();
    expect_err(
        w.delete(Kind::SecurityGroup, &sg),
        ErrorCode::Conflict,
        None,
        &format!("security-group {sg2}"),
    );
    w.delete(Kind::SecurityGroup, &sg2).unwrap();
    w.delete(Kind::SecurityGroup, &sg).unwrap();
    w.delete(Kind::Interface, &iface).unwrap();
    w.delete(Kind::InstancePort, &port).unwrap();
    w.delete(Kind::L2Network, &net).unwrap();
    w.delete(Kind::Project, &p).unwrap();
    assert!(w.intent.is_empty());
    expect_err(
        w.delete(Kind::Project, &p),
        ErrorCode::NotFound,
        None,
        "does not exist",
    );
}

#[test]
fn interfaces_nest_vlans_and_one_vnic_joins_three_networks() {
    let mut w = World::new();
    let p = w.project("blue");
    let port = w.ok(Kind::InstancePort, &p, json!({"name": "sf"}));
    let nets: Vec<Id> = ["10.10.0.0/24", "10.20.0.0/24", "10.30.0.0/24"]
        .iter()
        .map(|c| w.net(&p, c))
        .collect();
    for (i, net) in nets.iter().enumerate() {
        let vlan = 10 * (i as u16 + 1);
        let iface = w.ok(Kind::Interface, &p, json!({"parent": port, "vlan": vlan}));
        w.ok(
            Kind::ServicePort,
            &p,
            json!({"interface": iface, "service": net}),
        );
    }
    expect_err(
        w.create(
            Kind::Interface,
            Some(&p),
            json!({"parent": port, "vlan": 10}),
        ),
        ErrorCode::Conflict,
        Some("vlan"),
        "already has VLAN 10",
    );
    expect_err(
        w.create(
            Kind::Interface,
            Some(&p),
            json!({"parent": port, "vlan": 4095}),
        ),
        ErrorCode::InvalidArgument,
        Some("vlan"),
        "1-4094",
    );
    let outer = w
        .intent
        .children_of(port.as_str())
        .find(|c| c.vlan == Some(10))
        .unwrap()
        .id
        .clone();
    let inner = w.ok(Kind::Interface, &p, json!({"parent": outer, "vlan": 100}));
    let Object::Interface(inner_obj) = w.intent.get(Kind::Interface, inner.as_str()).unwrap()
    else {
        unreachable!()
    };
    assert_eq!(inner_obj.vlan_path, vec![10, 100]);
    assert_eq!(inner_obj.port, port);
    expect_err(
        w.create(
            Kind::Interface,
            Some(&p),
            json!({"parent": inner, "vlan": 5}),
        ),
        ErrorCode::InvalidArgument,
        Some("parent"),
        "at most two VLAN tags",
    );
    expect_err(
        w.create(Kind::Interface, Some(&p), json!({"parent": outer})),
        ErrorCode::InvalidArgument,
        Some("vlan"),
        "untagged",
    );
    // The MAC can't change while bound.
    expect_err(
        w.update(
            Kind::InstancePort,
            &port,
            json!({"mac": "fa:16:3e:00:00:99"}),
            None,
        ),
        ErrorCode::Conflict,
        Some("mac"),
        "while service ports are bound",
    );
    // One interface carries one service.
    let iface = w
        .intent
        .service_ports()
        .values()
        .next()
        .unwrap()
        .interface
        .clone();
    expect_err(
        w.create(
            Kind::ServicePort,
            Some(&p),
            json!({"interface": iface, "service": nets[1]}),
        ),
        ErrorCode::Conflict,
        Some("interface"),
        "already bound",
    );
}

#[test]
fn updates_merge_patch_check_revisions_and_refuse_read_only_fields() {
    let mut w = World::new();
    let p = w.project("blue");
    let port = w.ok(Kind::InstancePort, &p, json!({"name": "vm1", "mtu": 1400}));
    // Revisions come from the store; stamp one as the controller would.
    w.intent.set_revision(Kind::InstancePort, port.as_str(), 7);
    expect_err(
        w.update(Kind::InstancePort, &port, json!({"name": "x"}), Some(6)),
        ErrorCode::PreconditionFailed,
        None,
        "revision 7, not 6",
    );
    let o = w
        .update(
            Kind::InstancePort,
            &port,
            json!({"host": "compute-1"}),
            Some(7),
        )
        .unwrap();
    let Object::InstancePort(o) = o else {
        unreachable!()
    };
    assert_eq!(
        (o.name.as_str(), o.mtu, o.host.as_deref()),
        ("vm1", 1400, Some("compute-1"))
    );
    assert_eq!(w.intent.ports_on_host("compute-1").count(), 1);
    let o = w
        .update(Kind::InstancePort, &port, json!({"host": null}), None)
        .unwrap();
    let Object::InstancePort(o) = o else {
        unreachable!()
    };
    assert_eq!(o.host, None);
    assert_eq!(w.intent.ports_on_host("compute-1").count(), 0);
    expect_err(
        w.update(Kind::InstancePort, &port, json!({"status": "up"}), None),
        ErrorCode::InvalidArgument,
        Some("status"),
        "reported by the host",
    );
    expect_err(
        w.update(Kind::InstancePort, &port, json!({"id": "x"}), None),
        ErrorCode::InvalidArgument,
        Some("id"),
        "assigned by the controller",
    );
    expect_err(
        w.update(
            Kind::InstancePort,
            &port,
            json!({"bindings": [{"service": "x"}]}),
            None,
        ),
        ErrorCode::InvalidArgument,
        Some("bindings"),
        "only be given when creating",
    );
    expect_err(
        w.update(Kind::InstancePort, &port, json!(["name"]), None),
        ErrorCode::InvalidArgument,
        None,
        "JSON object",
    );
    // Subnets keep their ids across updates; new ones get ids.
    let net = w.net(&p, "10.1.1.0/24");
    let s0 = subnet_id(&w, &net, 0);
    let n = w
        .update(
            Kind::L2Network,
            &net,
            json!({"subnets": [{"id": s0, "cidr": "10.1.1.0/24"}, {"cidr": "10.1.2.0/24"}]}),
            None,
        )
        .unwrap();
    let Object::L2Network(n) = n else {
        unreachable!()
    };
    assert_eq!(n.subnets[0].id, s0);
    assert_eq!(n.subnets.len(), 2);
    expect_err(
        w.update(
            Kind::L2Network,
            &net,
            json!({"subnets": [{"id": s0, "cidr": "10.1.0.0/16"}]}),
            None,
        ),
        ErrorCode::InvalidArgument,
        Some("subnets[0].cidr"),
        "cannot change",
    );
    // Removing a subnet with a used address is refused.
    w.bind(&p, &net, json!([{"ip": "10.1.2.9"}])).unwrap();
    expect_err(
        w.update(
            Kind::L2Network,
            &net,
            json!({"subnets": [{"id": s0, "cidr": "10.1.1.0/24"}]}),
            None,
        ),
        ErrorCode::Conflict,
        Some("subnets"),
        "10.1.2.9",
    );
}

#[test]
fn compound_port_create_is_all_or_nothing() {
    let mut w = World::new();
    let p = w.project("blue");
    let net = w.net(&p, "10.1.1.0/24");
    let o = w
        .create(Kind::InstancePort, Some(&p), json!({"name": "g1", "bindings": [{"service": net, "fixed_ips": [{"ip": "10.1.1.5"}]}]}))
        .unwrap();
    let port = o.id().clone();
    let iface = w
        .intent
        .children_of(port.as_str())
        .next()
        .unwrap()
        .id
        .clone();
    assert!(w.intent.service_port_of_interface(iface.as_str()).is_some());
    // The second one asks for a used address: nothing at all is created.
    let before = w.intent.len();
    expect_err(
        w.create(
            Kind::InstancePort,
            Some(&p),
            json!({"bindings": [{"service": net, "fixed_ips": [{"ip": "10.1.1.5"}]}]}),
        ),
        ErrorCode::Conflict,
        Some("bindings[0].fixed_ips[0].ip"),
        "already used",
    );
    assert_eq!(w.intent.len(), before);
}

#[test]
fn undo_restores_the_exact_previous_state() {
    let mut w = World::new();
    let p = w.project("blue");
    let net = w.net(&p, "10.1.1.0/24");
    let before = w.intent.clone();
    let spec = Spec::parse(
        Kind::InstancePort,
        json!({"bindings": [{"service": net}]})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let applied = w
        .intent
        .apply(
            Command::Create {
                project: Some(p.clone()),
                spec,
            },
            &mut w.ids,
        )
        .unwrap();
    assert_eq!(applied.changes.len(), 3);
    w.intent.undo(applied);
    assert_eq!(w.intent, before);
}

#[test]
fn provider_networks_need_unique_segments() {
    let mut w = World::new();
    let p = w.project("blue");
    let provider =
        json!({"physical_network": "physnet1", "network_type": "vlan", "segmentation_id": 100});
    let n = w.ok(Kind::L2Network, &p, json!({"provider": provider}));
    expect_err(
        w.create(Kind::L2Network, Some(&p), json!({"provider": provider})),
        ErrorCode::Conflict,
        Some("provider"),
        &format!("l2-network {n}"),
    );
    let vx = w.ok(Kind::L2Network, &p, json!({"provider": {"physical_network": "x", "network_type": "vxlan", "segmentation_id": 70000}}));
    assert_eq!(w.intent.l2_networks()[&vx].vni, 70000);
}
