//! The table walk.

use std::net::IpAddr;
use std::time::Duration;

use super::conntrack::Conntrack;
use super::decision::{Decision, Frame, Op, target_vlans};
use super::hash::{combine, mix64};
use super::load::{
    CAction, Cond, Fld, FlowRef, LFlow, LLoc, Loaded, MAX_TABLE_VISITS, Meta, NO_PORT, PortId,
    TableRef, get,
};
use super::trace::{Trace, TraceStep, TracedFlow, delivery};
use super::{
    DropReason, ExecOptions, Generated, GeneratedKind, Handoff, Ingress, LogRecord, Outcome,
    Output, Target,
};
use crate::ir::{Action, IcmpErrorKind, Unreachable, ct_state, ip_proto};
use crate::wire::{self, FlowKey, Parsed, build, prereq};

enum Control {
    Goto(TableRef),
    Stop,
}

struct Exec<'a> {
    l: &'a Loaded,
    ct: &'a mut Conntrack,
    opts: ExecOptions,
    now: Duration,
    ingress: Ingress,
    input: &'a [u8],
    /// The input's parse with the port's tags removed (offsets still into `input`).
    orig: Parsed,
    /// Tags removed at ingress.
    stripped: usize,
    /// L3 length of the input, for `l3.len` tests.
    l3_len: usize,
    frame: Frame,
    p: Parsed,
    meta: Meta,
    out: Outcome,
    ops: Vec<Op>,
    l3_bounds: (usize, usize),
    uncacheable: Option<&'static str>,
    committed: Vec<u16>,
    reply_target: Option<Target>,
    steps: Option<Vec<TraceStep>>,
    sent: bool,
}

/// Runs `loaded` on one frame entering at `ingress` at time `now`.
///
/// Never panics, whatever the bytes. Conntrack is updated by `ct_lookup`/`ct_commit` (unless
/// `opts.ct_override` is set).
pub fn execute(
    loaded: &Loaded,
    ct: &mut Conntrack,
    ingress: Ingress,
    frame: &[u8],
    now: Duration,
    opts: &ExecOptions,
) -> Outcome {
    let parsed = match wire::parse(frame) {
        Ok(p) => p,
        Err(e) => {
            let mut out = Outcome {
                drop: Some(DropReason::Malformed(e.clone())),
                uncacheable: Some("frame could not be parsed"),
                ..Outcome::default()
            };
            if opts.trace {
                out.trace = Some(Trace {
                    steps: vec![TraceStep::Note(format!("parse error: {e}"))],
                    verdict: out.verdict(loaded),
                });
            }
            return out;
        }
    };
    let mut x = Exec {
        l: loaded,
        ct,
        opts: *opts,
        now,
        ingress,
        input: frame,
        orig: parsed,
        stripped: 0,
        l3_len: frame.len().saturating_sub(parsed.layout.l3),
        frame: Frame::new(frame),
        p: parsed,
        meta: Meta::default(),
        out: Outcome::default(),
        ops: Vec::new(),
        l3_bounds: (0, usize::MAX),
        uncacheable: None,
        committed: Vec::new(),
        reply_target: None,
        steps: opts.trace.then(Vec::new),
        sent: false,
    };
    if opts.ct_override.is_some() {
        x.uncacheable = Some("conntrack state overridden");
    }
    x.run();
    x.finish()
}

impl<'a> Exec<'a> {
    fn step(&mut self, s: impl FnOnce() -> TraceStep) {
        if let Some(steps) = &mut self.steps {
            steps.push(s());
        }
    }

    fn note(&mut self, s: impl FnOnce() -> String) {
        self.step(|| TraceStep::Note(s()));
    }

    fn no_cache(&mut self, why: &'static str) {
        if self.uncacheable.is_none() {
            self.uncacheable = Some(why);
        }
    }

    fn drop(&mut self, r: DropReason) {
        if self.out.drop.is_none() {
            self.out.drop = Some(r);
        }
    }

    /// Resolves the ingress: strips the port's tags and returns where to start.
    fn enter(&mut self) -> Option<TableRef> {
        let l = self.l;
        match self.ingress {
            Ingress::Vif(vif) => {
                let Some(list) = l.vif_ports.get(vif.0 as usize) else {
                    self.drop(DropReason::UnknownVif);
                    return None;
                };
                let tags = self.p.key.vlan_ids();
                // Longest tag stack first; compared element-wise (at most two tags).
                let Some((vlans, port)) = list.iter().find(|(v, _)| {
                    v.len() <= tags.len() && v.iter().zip(tags).all(|(a, b)| a == b)
                }) else {
                    let vlans = tags.to_vec();
                    self.note(|| {
                        format!("vif {:?} has no port for tags {vlans:?}", l.vif_name(vif))
                    });
                    self.drop(DropReason::NoPortForTags { vif, vlans });
                    return None;
                };
                let n = vlans.len();
                if n > 0 {
                    self.frame.strip_vlans(n);
                    self.p.strip_vlans(n);
                    self.orig.strip_vlans(n);
                    self.stripped = n;
                    self.ops.push(Op::StripVlans(n as u8));
                }
                self.meta.in_port = port.0;
                self.reply_target = Some(Target::Vif {
                    vif,
                    port: Some(*port),
                });
                let port = *port;
                self.step(|| {
                    TraceStep::Ingress(format!(
                        "vif {:?} tags {:?} -> port {:?} on datapath {:?}",
                        l.vif_name(vif),
                        vlans,
                        l.port_name(port),
                        l.datapath(l.ports[port.0 as usize].dp)
                            .map_or("?", |d| d.name.as_str())
                    ))
                });
                Some(TableRef {
                    datapath: l.ports[port.0 as usize].dp,
                    table: 0,
                })
            }
            Ingress::Port(port) => {
                let Some(lp) = l.ports.get(port.0 as usize) else {
                    self.drop(DropReason::UnknownPort);
                    return None;
                };
                self.meta.in_port = port.0;
                self.reply_target = port_target(lp, port);
                self.step(|| {
                    TraceStep::Ingress(format!(
                        "port {:?} on datapath {:?}",
                        l.port_name(port),
                        l.datapath(lp.dp).map_or("?", |d| d.name.as_str())
                    ))
                });
                Some(TableRef {
                    datapath: lp.dp,
                    table: 0,
                })
            }
            Ingress::Tunnel { vni, remote } => {
                let Some(entry) = l.tunnel_entries.get(&vni).copied() else {
                    self.note(|| format!("no tunnel entry for VNI {vni}"));
                    self.drop(DropReason::UnknownVni(vni));
                    return None;
                };
                self.reply_target = Some(Target::Tunnel {
                    remote,
                    vni,
                    port: None,
                });
                self.step(|| {
                    TraceStep::Ingress(format!(
                        "tunnel from {remote} VNI {vni} -> {}",
                        l.table_name(entry)
                    ))
                });
                Some(entry)
            }
        }
    }

    fn run(&mut self) {
        let Some(mut at) = self.enter() else {
            self.no_cache("ingress not resolved");
            return;
        };
        let l = self.l;
        let mut visits = 0;
        loop {
            visits += 1;
            if visits > MAX_TABLE_VISITS {
                self.note(|| format!("loop guard: more than {MAX_TABLE_VISITS} table visits"));
                self.drop(DropReason::LoopLimit(at));
                self.no_cache("loop guard hit");
                return;
            }
            let Some(table) = l
                .dps
                .get(at.datapath.0 as usize)
                .and_then(|d| d.tables.get(at.table as usize))
            else {
                self.drop(DropReason::NoFlowMatched(at));
                return;
            };
            let rank = {
                let key = self.p.key;
                let meta = self.meta;
                let l3_len = self.l3_len;
                let bounds = &mut self.l3_bounds;
                table.lookup(&key, &meta, &mut |fl| {
                    eval(l, fl, &key, &meta, l3_len, bounds)
                })
            };
            let Some(rank) = rank else {
                self.step(|| {
                    let d = l.datapath(at.datapath);
                    TraceStep::Table {
                        datapath: d.map_or("?", |d| d.name.as_str()).to_string(),
                        table: d
                            .and_then(|d| d.tables.get(at.table as usize))
                            .map_or("?", |t| t.name.as_str())
                            .to_string(),
                        index: at.table,
                        matched: None,
                    }
                });
                self.drop(DropReason::NoFlowMatched(at));
                return;
            };
            let flow = &table.flows[rank as usize];
            let fref = FlowRef {
                datapath: at.datapath,
                table: at.table,
                flow: flow.ir_index,
            };
            let ir_actions: &'a [Action] = match l.flow(fref) {
                Some((_, _, f)) => &f.actions,
                None => &[],
            };
            self.step(|| {
                let (d, t, f) = l.flow(fref).expect("flow ref from the loaded program");
                TraceStep::Table {
                    datapath: d.name.clone(),
                    table: t.name.clone(),
                    index: at.table,
                    matched: Some(TracedFlow::from_ir(fref.flow, f)),
                }
            });
            if flow.actions.is_empty() {
                self.step(|| TraceStep::Action {
                    action: "drop;".to_string(),
                    effect: Some("empty action list".to_string()),
                });
                self.drop(DropReason::Dropped(fref));
                return;
            }
            match self.run_actions(&flow.actions, ir_actions, at, fref) {
                Control::Goto(next) => at = next,
                Control::Stop => {
                    if !self.sent && self.out.drop.is_none() {
                        self.drop(DropReason::EndOfActions(fref));
                    }
                    return;
                }
            }
        }
    }

    fn action_step(&mut self, ir: &[Action], i: usize, effect: Option<String>) {
        self.step(|| TraceStep::Action {
            action: ir.get(i).map_or_else(|| "?".to_string(), Action::to_string),
            effect,
        });
    }

    fn run_actions(
        &mut self,
        actions: &'a [CAction],
        ir: &'a [Action],
        at: TableRef,
        fref: FlowRef,
    ) -> Control {
        let l = self.l;
        let tracing = self.steps.is_some();
        for (i, a) in actions.iter().enumerate() {
            match a {
                CAction::Next => {
                    self.action_step(ir, i, None);
                    let n = l.dps[at.datapath.0 as usize].tables.len() as u32;
                    if at.table + 1 >= n {
                        self.drop(DropReason::NextFromLastTable(fref));
                        return Control::Stop;
                    }
                    return Control::Goto(TableRef {
                        datapath: at.datapath,
                        table: at.table + 1,
                    });
                }
                CAction::Goto(d, t) => {
                    self.action_step(ir, i, None);
                    return Control::Goto(TableRef {
                        datapath: *d,
                        table: *t,
                    });
                }
                CAction::SetInPort(p) => {
                    self.meta.in_port = *p;
                    self.action_step(ir, i, None);
                }
                CAction::SetOutPort(p) => {
                    self.meta.out_port = *p;
                    self.action_step(ir, i, None);
                }
                CAction::Output(p) => {
                    self.action_step(ir, i, None);
                    self.output_port(PortId(*p));
                }
                CAction::OutputOutPort => {
                    self.action_step(ir, i, None);
                    if self.meta.out_port == NO_PORT {
                        self.note(|| "output; with no outport set: nothing sent".to_string());
                    } else {
                        self.output_port(PortId(self.meta.out_port));
                    }
                }
                CAction::Tunnel(remote, vni) => {
                    self.action_step(ir, i, None);
                    self.emit(Target::Tunnel {
                        remote: *remote,
                        vni: *vni,
                        port: None,
                    });
                }
                CAction::Flood(g) => {
                    self.action_step(ir, i, None);
                    self.flood(*g as usize);
                }
                CAction::Ecmp(g) => {
                    let members = &l.ecmps[*g as usize];
                    let h = flow_hash(&self.p.key);
                    let Some(m) = choose(members, h) else {
                        self.action_step(ir, i, Some("no member with weight > 0: drop".into()));
                        self.drop(DropReason::Dropped(fref));
                        return Control::Stop;
                    };
                    self.action_step(
                        ir,
                        i,
                        tracing.then(|| {
                            format!("member {m} of {} (flow hash {h:#018x})", members.len())
                        }),
                    );
                    let group = &l.program().ecmp_groups[*g as usize];
                    return self.run_actions(
                        &members[m].actions,
                        &group.members[m].actions,
                        at,
                        fref,
                    );
                }
                CAction::SetEthSrc(m) => {
                    self.frame.set_eth_src(*m);
                    self.p.key.eth_src = *m;
                    self.ops.push(Op::SetEthSrc(*m));
                    self.action_step(ir, i, None);
                }
                CAction::SetEthDst(m) => {
                    self.frame.set_eth_dst(*m);
                    self.p.key.eth_dst = *m;
                    self.ops.push(Op::SetEthDst(*m));
                    self.action_step(ir, i, None);
                }
                CAction::DecTtl => {
                    let k = &self.p.key;
                    if !k.is_ip() {
                        self.action_step(ir, i, Some("not IP: no TTL".into()));
                        continue;
                    }
                    let ttl = k.ip_ttl;
                    if ttl <= 1 {
                        self.action_step(ir, i, Some(format!("TTL {ttl}: expired, drop")));
                        self.drop(DropReason::TtlExpired(fref));
                        return Control::Stop;
                    }
                    let v6 = k.prereq & prereq::IP6 != 0;
                    self.frame.dec_ttl(self.p.layout.l3, v6);
                    self.p.key.ip_ttl = ttl - 1;
                    self.ops.push(Op::DecTtl);
                    self.action_step(ir, i, tracing.then(|| format!("TTL {ttl} -> {}", ttl - 1)));
                }
                CAction::SetReg(r, v, mask) => {
                    let reg = &mut self.meta.regs[usize::from(*r)];
                    *reg = (*reg & !mask) | v;
                    self.action_step(ir, i, None);
                }
                CAction::PushVlan(v) => {
                    if self.p.key.n_vlans >= 2 {
                        self.action_step(ir, i, Some("already two tags: drop".into()));
                        self.drop(DropReason::VlanOverflow(fref));
                        return Control::Stop;
                    }
                    self.frame.push_vlan(*v);
                    self.p.push_vlan(*v);
                    self.ops.push(Op::PushVlan(*v));
                    self.action_step(ir, i, None);
                }
                CAction::PopVlan => {
                    if self.p.key.n_vlans > 0 {
                        self.frame.strip_vlans(1);
                        self.p.strip_vlans(1);
                        self.ops.push(Op::PopVlan);
                        self.action_step(ir, i, None);
                    } else {
                        self.action_step(ir, i, Some("no tag to pop".into()));
                    }
                }
                CAction::CtLookup(zone) => {
                    if self.committed.contains(zone) {
                        self.no_cache("ct_lookup after ct_commit in the same zone");
                    }
                    let state = match self.opts.ct_override {
                        Some(s) => s | ct_state::TRK,
                        None => self
                            .ct
                            .lookup(*zone, &self.p, self.frame.as_slice(), self.now),
                    };
                    self.meta.ct_state = state;
                    self.ops.push(Op::CtLookup {
                        zone: *zone,
                        expect: state,
                    });
                    self.action_step(
                        ir,
                        i,
                        tracing.then(|| format!("ct_state = {}", ct_names(state))),
                    );
                }
                CAction::CtCommit(zone) => {
                    let created = match self.opts.ct_override {
                        Some(_) => false,
                        None => self
                            .ct
                            .commit(*zone, &self.p, self.frame.as_slice(), self.now),
                    };
                    self.committed.push(*zone);
                    self.ops.push(Op::CtCommit { zone: *zone });
                    self.action_step(
                        ir,
                        i,
                        tracing.then(|| {
                            if created {
                                "new connection committed".to_string()
                            } else {
                                "nothing to commit (already committed, related or invalid)"
                                    .to_string()
                            }
                        }),
                    );
                }
                CAction::Drop => {
                    self.action_step(ir, i, None);
                    self.drop(DropReason::Dropped(fref));
                    return Control::Stop;
                }
                CAction::Reject => {
                    self.action_step(ir, i, None);
                    self.reject(fref);
                    return Control::Stop;
                }
                CAction::Log(rule) => {
                    self.out.logs.push(LogRecord {
                        rule: rule.clone(),
                        flow: fref,
                    });
                    self.action_step(ir, i, None);
                }
                CAction::ArpReply(mac) => {
                    let k = &self.orig.key;
                    if k.prereq & prereq::ARP == 0 || k.arp_op != wire::arp::OP_REQUEST {
                        self.action_step(ir, i, Some("not an ARP request: ignored".into()));
                        continue;
                    }
                    let bytes = build::arp_reply(&self.orig, *mac);
                    self.action_step(ir, i, tracing.then(|| format!("{} is at {mac}", k.arp_tpa)));
                    self.generate(GeneratedKind::ArpReply, bytes, fref);
                }
                CAction::NdAdvert(mac, router) => {
                    let k = &self.orig.key;
                    if k.prereq & prereq::ND == 0 || k.icmp_type != wire::icmp::v6::NEIGHBOR_SOLICIT
                    {
                        self.action_step(
                            ir,
                            i,
                            Some("not a neighbour solicitation: ignored".into()),
                        );
                        continue;
                    }
                    let bytes = build::nd_advert(&self.orig, *mac, *router);
                    self.action_step(
                        ir,
                        i,
                        tracing.then(|| format!("{} is at {mac}", k.nd_target)),
                    );
                    self.generate(GeneratedKind::NdAdvert, bytes, fref);
                }
                CAction::LocalService(service, context) => {
                    self.action_step(ir, i, None);
                    self.no_cache("handed to a local service");
                    let in_port =
                        (self.meta.in_port != NO_PORT).then_some(PortId(self.meta.in_port));
                    self.out.handoffs.push(Handoff {
                        service: *service,
                        context: context.clone(),
                        ingress: self.ingress,
                        reply_to: self.reply_target,
                        in_port,
                        bytes: self.frame.as_slice().to_vec(),
                        flow: fref,
                    });
                    self.sent = true;
                }
                CAction::IcmpError(kind, src) => {
                    let (bytes, p) = self.original();
                    let eth_src = p.key.eth_dst;
                    match build::icmp_error(&bytes, &p, *kind, *src, eth_src) {
                        Ok(b) => {
                            self.action_step(ir, i, None);
                            self.generate(GeneratedKind::IcmpError(*kind), b, fref);
                        }
                        Err(e) => {
                            self.action_step(ir, i, Some(format!("no ICMP error sent: {e}")));
                            self.no_cache("icmp_error refused");
                        }
                    }
                }
                CAction::IcmpEchoReply => {
                    let (bytes, p) = self.original();
                    match build::icmp_echo_reply(&bytes, &p) {
                        Ok(b) => {
                            self.action_step(ir, i, None);
                            self.generate(GeneratedKind::EchoReply, b, fref);
                        }
                        Err(e) => {
                            self.action_step(ir, i, Some(format!("no echo reply: {e}")));
                            self.no_cache("echo reply refused");
                        }
                    }
                }
            }
        }
        Control::Stop
    }

    /// The frame as it arrived, with the port's tags removed, and its parse.
    fn original(&self) -> (Vec<u8>, Parsed) {
        let n = self.stripped * wire::ethernet::TAG_LEN;
        let mut v = Vec::with_capacity(self.input.len());
        v.extend_from_slice(self.input.get(..12).unwrap_or(self.input));
        v.extend_from_slice(self.input.get(12 + n..).unwrap_or(&[]));
        (v, self.orig)
    }

    fn generate(&mut self, kind: GeneratedKind, bytes: Vec<u8>, flow: FlowRef) {
        self.no_cache("generates a reply");
        let Some(target) = self.reply_target else {
            return;
        };
        let vlans = target_vlans(self.l, &target);
        let bytes = if vlans.is_empty() {
            bytes
        } else {
            let mut f = Frame::new(&bytes);
            f.push_port_vlans(vlans);
            f.as_slice().to_vec()
        };
        self.out.generated.push(Generated {
            kind,
            target,
            bytes,
            flow,
        });
    }

    fn reject(&mut self, fref: FlowRef) {
        let (bytes, p) = self.original();
        let k = &p.key;
        let res = if k.prereq & prereq::TCP != 0 {
            build::tcp_rst(&bytes, &p).map(|b| (GeneratedKind::TcpRst, b))
        } else {
            let code = if k.ip_proto == ip_proto::UDP {
                Unreachable::Port
            } else {
                Unreachable::AdminProhibited
            };
            build::icmp_error(
                &bytes,
                &p,
                IcmpErrorKind::Unreachable(code),
                k.ip_dst,
                k.eth_dst,
            )
            .map(|b| (GeneratedKind::RejectUnreachable, b))
        };
        match res {
            Ok((kind, b)) => {
                self.note(|| format!("rejected with {kind}"));
                self.generate(kind, b, fref);
            }
            Err(e) => {
                self.note(|| format!("reject could not answer ({e}): dropped silently"));
                self.no_cache("reject refused");
                self.drop(DropReason::Dropped(fref));
            }
        }
    }

    fn output_port(&mut self, port: PortId) {
        let l = self.l;
        if port.0 == self.meta.in_port {
            self.note(|| format!("not sent back to inport {:?}", l.port_name(port)));
            return;
        }
        let Some(target) = l
            .ports
            .get(port.0 as usize)
            .and_then(|lp| port_target(lp, port))
        else {
            self.note(|| format!("port {:?} is internal: nothing sent", l.port_name(port)));
            return;
        };
        self.emit(target);
    }

    fn flood(&mut self, g: usize) {
        let l = self.l;
        let from_tunnel = matches!(self.ingress, Ingress::Tunnel { .. });
        let mut remotes: Vec<(IpAddr, u32)> = Vec::new();
        for &port in &l.floods[g] {
            if port.0 == self.meta.in_port {
                continue;
            }
            let lp = &l.ports[port.0 as usize];
            match &lp.loc {
                LLoc::Internal => {}
                LLoc::Local { vif, .. } => self.emit(Target::Vif {
                    vif: *vif,
                    port: Some(port),
                }),
                LLoc::Remote { tunnel_ip, vni } => {
                    // Split horizon: what came from a tunnel is flooded locally only.
                    if from_tunnel || remotes.contains(&(*tunnel_ip, *vni)) {
                        continue;
                    }
                    remotes.push((*tunnel_ip, *vni));
                    self.emit(Target::Tunnel {
                        remote: *tunnel_ip,
                        vni: *vni,
                        port: Some(port),
                    });
                }
            }
        }
    }

    fn emit(&mut self, target: Target) {
        let vlans = target_vlans(self.l, &target);
        let bytes = if vlans.is_empty() {
            self.frame.as_slice().to_vec()
        } else {
            let mut f = self.frame.clone();
            f.push_port_vlans(vlans);
            f.as_slice().to_vec()
        };
        let l = self.l;
        self.note(|| format!("sent to {}", delivery(l, &target)));
        self.ops.push(Op::Output(target));
        self.out.outputs.push(Output { target, bytes });
        self.sent = true;
    }

    fn finish(mut self) -> Outcome {
        if self.uncacheable.is_none() {
            self.out.decision = Some(Decision::new(
                self.l.generation(),
                std::mem::take(&mut self.ops),
                self.l3_bounds,
                self.out.logs.clone(),
            ));
        }
        self.out.uncacheable = self.uncacheable;
        if let Some(steps) = self.steps.take() {
            let verdict = self.out.verdict(self.l);
            self.out.trace = Some(Trace { steps, verdict });
        }
        self.out
    }
}

fn port_target(lp: &super::load::LPort, port: PortId) -> Option<Target> {
    match &lp.loc {
        LLoc::Local { vif, .. } => Some(Target::Vif {
            vif: *vif,
            port: Some(port),
        }),
        LLoc::Remote { tunnel_ip, vni } => Some(Target::Tunnel {
            remote: *tunnel_ip,
            vni: *vni,
            port: Some(port),
        }),
        LLoc::Internal => None,
    }
}

/// Evaluates every condition of `fl`; records the `l3.len` tests' outcomes in `bounds`.
#[inline]
fn eval(
    l: &Loaded,
    fl: &LFlow,
    k: &FlowKey,
    m: &Meta,
    l3_len: usize,
    bounds: &mut (usize, usize),
) -> bool {
    for c in &fl.conds {
        let ok = match c {
            Cond::Masked { f, mask, value } => get(*f, k, m) & mask == *value,
            Cond::Range { f, lo, hi } => {
                let v = get(*f, k, m);
                *lo <= v && v <= *hi
            }
            Cond::InSet { f, set } => {
                let a = if *f == Fld::IpSrc { k.ip_src } else { k.ip_dst };
                l.sets[*set as usize].contains(a)
            }
            Cond::LenGt(n) => {
                let n = usize::from(*n);
                let r = l3_len > n;
                if r {
                    bounds.0 = bounds.0.max(n + 1);
                } else {
                    bounds.1 = bounds.1.min(n);
                }
                r
            }
        };
        if !ok {
            return false;
        }
    }
    true
}

/// The ECMP hash: the 5-tuple for IP, the MAC pair otherwise.
pub(crate) fn flow_hash(k: &FlowKey) -> u64 {
    if k.is_ip() {
        let ip = |a: IpAddr| match a {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        let ports =
            (u128::from(k.ip_proto) << 32) | (u128::from(k.l4_src) << 16) | u128::from(k.l4_dst);
        combine(combine(combine(0, ip(k.ip_src)), ip(k.ip_dst)), ports)
    } else {
        combine(
            combine(1, u128::from(k.eth_src.to_u64())),
            u128::from(k.eth_dst.to_u64()),
        )
    }
}

/// Weighted rendezvous hashing: each member scores `weight / -ln(u)` with `u` uniform from the
/// flow hash and the member's seed; the best score wins. Flows spread in proportion to weight,
/// and adding or removing a member only moves flows to or from that member.
fn choose(members: &[super::load::LEcmpMember], h: u64) -> Option<usize> {
    let mut best: Option<(f64, usize)> = None;
    for (i, m) in members.iter().enumerate() {
        if m.weight == 0 {
            continue;
        }
        let r = mix64(h ^ m.seed);
        let u = ((r >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let score = f64::from(m.weight) / -u.ln();
        if best.is_none_or(|(s, _)| score > s) {
            best = Some((score, i));
        }
    }
    best.map(|(_, i)| i)
}

fn ct_names(s: u8) -> String {
    let names: Vec<&str> = ct_state::NAMES
        .iter()
        .filter(|(_, b)| s & b != 0)
        .map(|(n, _)| *n)
        .collect();
    if names.is_empty() {
        "0".to_string()
    } else {
        names.join("|")
    }
}
