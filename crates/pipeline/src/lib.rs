//! Weft's logical pipeline: the IR the compiler emits, packet parsing and building, the pure
//! executor the userspace forwarder and `weft trace` share, connection tracking and traces.
//!
//! This crate is pure: it must not open sockets or files, spawn threads or read clocks. Time is
//! always an argument. Everything here can be tested with static bytes.
//!
//! # Module map
//!
//! * [`ir`]: [`ir::Program`] and everything in it (datapaths, tables, flows with typed
//!   [`ir::Match`]es and [`ir::Action`]s, ports and their locations, groups, address sets,
//!   tunnel entries), serde-serializable, with an OVN-like `Display`. What the compiler emits.
//! * [`wire`]: smoltcp-style packet views, [`wire::parse`] into a [`wire::FlowKey`],
//!   [`wire::build`] for generated packets, the VXLAN header codec.
//! * [`exec`]: [`exec::Loaded`] (a program compiled for lookup), [`exec::execute`] (one packet
//!   through the tables), [`exec::Conntrack`], cacheable [`exec::Decision`]s and
//!   [`exec::apply`], [`exec::Trace`] and [`exec::Verdict`]. What the forwarder runs.
//! * [`microflow`]: `inport == "p1" && ip4.dst == 10.1.1.6 && tcp.dst == 80` into packet
//!   bytes and a trace. What `weft trace` runs.
//!
//! # A compiler emits a program
//!
//! ```
//! use weft_pipeline::ir::*;
//!
//! let mut p = Program::new("host-1");
//! p.datapaths.push(Datapath::new("net1", DatapathKind::Switch, 5001, &["acl", "l2"]));
//! p.ports.push(LogicalPort::local("vm1", "net1", "tap1", vec![]));
//! p.ports.push(LogicalPort::remote("vm2", "net1", "host-2", "192.0.2.2".parse().unwrap()));
//! p.add_flow("net1", "acl", Flow::new(10, Match::new().tcp_dst(22), vec![Action::Drop])
//!     .origin(Origin::new("security-group-rule", "r1", "no ssh")));
//! p.add_flow("net1", "acl", Flow::new(0, Match::new(), vec![Action::Next]));
//! p.add_flow("net1", "l2", Flow::new(
//!     10,
//!     Match::new().eth_dst("02:00:00:00:00:02".parse().unwrap()),
//!     vec![Action::output("vm2")],
//! ));
//! p.canonicalize();
//! let json = serde_json::to_string(&p).unwrap(); // travels to the host agent
//! assert_eq!(
//!     p.datapaths[0].tables[0].flows[1].to_string(),
//!     "priority=10, match=(tcp && tcp.dst == 22), actions=(drop;) [security-group-rule r1: no ssh]",
//! );
//! # let _ = json;
//! ```
//!
//! # A forwarder executes it, then replays cached decisions
//!
//! ```
//! # use weft_pipeline::ir::*;
//! # let mut p = Program::new("host-1");
//! # p.datapaths.push(Datapath::new("net1", DatapathKind::Switch, 5001, &["l2"]));
//! # p.ports.push(LogicalPort::local("vm1", "net1", "tap1", vec![]));
//! # p.ports.push(LogicalPort::remote("vm2", "net1", "host-2", "192.0.2.2".parse().unwrap()));
//! # p.add_flow("net1", "l2", Flow::new(10, Match::new().eth_dst("02:00:00:00:00:02".parse().unwrap()), vec![Action::output("vm2")]));
//! use std::time::Duration;
//! use weft_pipeline::exec::*;
//! use weft_pipeline::microflow::{parse_microflow, MicroflowDefaults};
//!
//! let loaded = Loaded::load(&p).unwrap();
//! let mut ct = Conntrack::default();
//! let frame = parse_microflow("ip4.dst == 10.0.0.2 && udp.dst == 53")
//!     .unwrap()
//!     .build(&MicroflowDefaults {
//!         eth_dst: "02:00:00:00:00:02".parse().unwrap(),
//!         ..MicroflowDefaults::default()
//!     })
//!     .unwrap();
//! let tap1 = Ingress::Vif(loaded.vif_id("tap1").unwrap());
//! let now = Duration::from_secs(1);
//! let out = execute(&loaded, &mut ct, tap1, &frame, now, &ExecOptions::default());
//! assert!(matches!(out.outputs[0].target, Target::Tunnel { vni: 5001, .. }));
//!
//! // Later frames with the same key: no table walk.
//! let decision = out.decision.unwrap();
//! let parsed = weft_pipeline::wire::parse(&frame).unwrap();
//! let mut buf = Frame::new(&frame);
//! let mut sent = Vec::new();
//! apply(&loaded, &decision, &mut ct, &parsed, &mut buf, now, |target, bytes| {
//!     sent.push((*target, bytes.to_vec()));
//! })
//! .unwrap();
//! assert_eq!(sent[0].1, out.outputs[0].bytes);
//! ```

pub mod exec;
pub mod ir;
mod mac;
pub mod microflow;
pub mod wire;

pub use mac::{MacAddr, MacParseError};
