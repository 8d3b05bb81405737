//! BGP interop: the controller runs a [`weft_bgp`] speaker, advertises the
//! host routes of every l3vpn to WAN gateways and installs the routes they
//! send into the VRFs that import them.
//!
//! ```text
//!  PUT /v1/bgp ──► BgpService::set_config ──► store (bgp/config) ──► Speaker
//!                                                                     ▲   │
//!  CompileService batches ─┐                           set_exports    │   │ imports
//!  TunnelDirectory changes ┼─► sync task: compute_exports ────────────┘   │ (watch)
//!  speaker (re)started ────┘             external_routes ◄────────────────┘
//!                                               │
//!                                               ▼
//!                               CompileService::set_external (VRF pipelines)
//! ```
//!
//! [`compute_exports`] and [`external_routes`] are pure functions of the
//! intent, the tunnel directory and the speaker's imports; the sync task
//! only moves their results between the compiler and the speaker. This
//! module never writes intent: routes learned from peers live in the
//! compiler, not in the store.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};
use weft_bgp::{
    Encapsulation, ImportedRoute, PeerConfig, PeerStatus, RouteKey, RouteKind, Speaker,
    SpeakerConfig, SpeakerHandle, VpnRoute,
};
use weft_compiler::ExternalRoute;
use weft_model::{AnycastMode, Id, Intent, L3vpn, PortStatus, ServicePort};
use weft_store::{Revision, Store, StoreError, Txn, TxnOutcome};

use crate::compile::CompileService;
use crate::intent::IntentService;

/// Store key of the BGP configuration (prefix `bgp/`).
pub const CONFIG_KEY: &str = "bgp/config";

/// Largest MPLS label: VPNv4 carries the VRF's VNI in a 20-bit label.
const MAX_LABEL: u32 = 0xF_FFFF;

// ------------------------------------------------------------ configuration

/// The BGP configuration as stored and shown by the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpConfig {
    /// Our AS number (1-4294967295).
    pub local_as: u32,
    /// Our BGP identifier, an IPv4 address.
    pub router_id: Ipv4Addr,
    /// Where to accept connections (`IP:PORT`); absent: connect out only.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// The peers (WAN gateways).
    #[serde(default)]
    pub peers: Vec<BgpPeer>,
}

/// One configured peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpPeer {
    /// The peer's address.
    pub address: IpAddr,
    /// The peer's AS (ours for iBGP).
    pub remote_as: u32,
    /// TCP port to connect to (179).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Hold time to propose in seconds: 0, or 3-65535 (90 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_time: Option<u16>,
    /// Seconds between connection attempts (5 when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_retry: Option<u64>,
    /// Only wait for the peer to connect.
    #[serde(default)]
    pub passive: bool,
}

fn default_port() -> u16 {
    179
}

impl BgpConfig {
    /// The speaker's configuration.
    pub fn speaker_config(&self) -> SpeakerConfig {
        SpeakerConfig {
            local_as: self.local_as,
            router_id: self.router_id,
            listen: self.listen,
            peers: self
                .peers
                .iter()
                .map(|p| PeerConfig {
                    port: p.port,
                    hold_time: p.hold_time,
                    connect_retry: p.connect_retry,
                    passive: p.passive,
                    ..PeerConfig::new(p.address, p.remote_as)
                })
                .collect(),
        }
    }
}

/// A configuration as a caller sends it (`PUT /v1/bgp`), before checks.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BgpConfigRequest {
    /// Our AS number.
    pub local_as: Option<u64>,
    /// Our router id (IPv4).
    pub router_id: Option<String>,
    /// Listen address: `IP`, `IP:PORT` or `[IPv6]:PORT`; null for none.
    #[serde(default)]
    pub listen: Option<String>,
    /// The peers.
    #[serde(default)]
    pub peers: Vec<PeerRequest>,
}

/// A peer as a caller sends it, before checks.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerRequest {
    /// The peer's address.
    pub address: Option<String>,
    /// The peer's AS.
    pub remote_as: Option<u64>,
    /// TCP port (179).
    #[serde(default)]
    pub port: Option<u64>,
    /// Hold time in seconds.
    #[serde(default)]
    pub hold_time: Option<u64>,
    /// Seconds between connection attempts.
    #[serde(default)]
    pub connect_retry: Option<u64>,
    /// Only wait for the peer to connect.
    #[serde(default)]
    pub passive: bool,
}

/// Why a BGP request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum BgpError {
    /// A value is missing or out of range.
    #[error("{message}")]
    Invalid {
        /// The offending field, e.g. `peers[1].remote_as`.
        field: String,
        /// What was wrong and what to do.
        message: String,
    },
    /// A peer with this address is already configured.
    #[error("peer {0} is already configured; remove it first or change it with PUT /v1/bgp")]
    PeerExists(IpAddr),
    /// No peer with this address is configured.
    #[error("no BGP peer {0} is configured")]
    NoSuchPeer(IpAddr),
    /// Peers were given before the speaker itself was configured.
    #[error("BGP is not configured: set the local AS and router id first (weft bgp set)")]
    NotConfigured,
    /// The configuration changed since the caller read it.
    #[error(
        "the BGP configuration is at revision {current}, not {expected}: read it again and retry"
    )]
    Stale {
        /// The revision the caller expected.
        expected: Revision,
        /// The current revision.
        current: Revision,
    },
    /// The speaker refused the configuration (e.g. the listen address).
    #[error(transparent)]
    Speaker(#[from] weft_bgp::ConfigError),
    /// The store could not be read or written.
    #[error("the store could not keep the BGP configuration: {0}")]
    Store(#[from] StoreError),
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> BgpError {
    BgpError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

fn asn(value: Option<u64>, field: &str) -> Result<u32, BgpError> {
    let v = value.ok_or_else(|| {
        invalid(
            field,
            format!("{field} is required: an AS number from 1 to 4294967295"),
        )
    })?;
    match u32::try_from(v) {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(invalid(
            field,
            format!("{field} {v} is not an AS number: use 1 to 4294967295"),
        )),
    }
}

/// Parses `IP`, `IP:PORT` or `[IPv6]:PORT` (port 179 when absent).
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 179));
    }
    Err(format!(
        "listen address {s:?} is not IP, IP:PORT or [IPv6]:PORT, e.g. 0.0.0.0:179"
    ))
}

impl PeerRequest {
    /// Checks one peer; `at` is its field path.
    pub fn validate(&self, at: &str) -> Result<BgpPeer, BgpError> {
        let f = |name: &str| format!("{at}{name}");
        let text = self
            .address
            .as_deref()
            .ok_or_else(|| invalid(f("address"), "a peer needs an address (IPv4 or IPv6)"))?;
        let address: IpAddr = text.trim().parse().map_err(|_| {
            invalid(
                f("address"),
                format!("peer address {text:?} is not an IP address"),
            )
        })?;
        if address.is_unspecified() || address.is_multicast() {
            return Err(invalid(
                f("address"),
                format!("peer address {address} cannot be a BGP peer: give its unicast address"),
            ));
        }
        let remote_as = asn(self.remote_as, &f("remote_as"))?;
        let port = match self.port {
            None => 179,
            Some(p) => u16::try_from(p).ok().filter(|p| *p > 0).ok_or_else(|| {
                invalid(
                    f("port"),
                    format!("port {p} is not a TCP port: use 1 to 65535"),
                )
            })?,
        };
        let hold_time = match self.hold_time {
            None => None,
            Some(h) => Some(
                u16::try_from(h)
                    .ok()
                    .filter(|h| *h == 0 || *h >= 3)
                    .ok_or_else(|| {
                        invalid(
                            f("hold_time"),
                            format!("hold time {h} is invalid: use 0 (no keepalives) or 3 to 65535 seconds"),
                        )
                    })?,
            ),
        };
        if let Some(c) = self.connect_retry
            && !(1..=3600).contains(&c)
        {
            return Err(invalid(
                f("connect_retry"),
                format!("connect retry {c} is invalid: use 1 to 3600 seconds"),
            ));
        }
        Ok(BgpPeer {
            address,
            remote_as,
            port,
            hold_time,
            connect_retry: self.connect_retry,
            passive: self.passive,
        })
    }
}

impl BgpConfigRequest {
    /// Checks the request and builds the configuration.
    pub fn validate(&self) -> Result<BgpConfig, BgpError> {
        let local_as = asn(self.local_as, "local_as")?;
        let text = self.router_id.as_deref().ok_or_else(|| {
            invalid(
                "router_id",
                "router_id is required: an IPv4 address, e.g. 198.51.100.1",
            )
        })?;
        let router_id: Ipv4Addr = text.trim().parse().map_err(|_| {
            invalid(
                "router_id",
                format!("router id {text:?} must be an IPv4 address (BGP identifiers are 32 bits), e.g. 198.51.100.1"),
            )
        })?;
        if router_id.is_unspecified() || router_id.is_broadcast() || router_id.is_multicast() {
            return Err(invalid(
                "router_id",
                format!("router id {router_id} is not usable: give a unicast IPv4 address"),
            ));
        }
        let listen = match &self.listen {
            None => None,
            Some(s) => Some(parse_listen(s).map_err(|m| invalid("listen", m))?),
        };
        let mut peers = Vec::new();
        let mut seen = HashSet::new();
        for (i, p) in self.peers.iter().enumerate() {
            let peer = p.validate(&format!("peers[{i}]."))?;
            if !seen.insert(peer.address.to_canonical()) {
                return Err(invalid(
                    format!("peers[{i}].address"),
                    format!("peer {} is listed twice: give each peer once", peer.address),
                ));
            }
            peers.push(peer);
        }
        let cfg = BgpConfig {
            local_as,
            router_id,
            listen,
            peers,
        };
        cfg.speaker_config().validate()?;
        Ok(cfg)
    }
}

// ------------------------------------------------------------------ exports

/// One route Weft advertises, with where it comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExportedRoute {
    /// The route as sent to peers.
    pub route: VpnRoute,
    /// The VRF (l3vpn id).
    pub vrf: Id,
    /// What holds the address: ports and hosts, or the static route.
    pub source: String,
}

/// The export set and the addresses that could not be advertised.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Exports {
    /// Routes in key order.
    pub routes: Vec<ExportedRoute>,
    /// Why some addresses are not advertised (no tunnel address yet, ...).
    pub problems: Vec<String>,
}

/// A port holding an address of a VRF.
struct Holder<'a> {
    sp: &'a ServicePort,
    host: Option<&'a str>,
    live: bool,
    label: String,
}

/// Every address held in a VRF (routed ports' addresses and the addresses
/// of ports in its attached subnets, the compiler's notion) with the ports
/// holding it, in one pass over the VRF's ports.
fn vrf_holders<'a>(intent: &'a Intent, v: &L3vpn) -> BTreeMap<IpAddr, Vec<Holder<'a>>> {
    let mut out: BTreeMap<IpAddr, Vec<Holder<'a>>> = BTreeMap::new();
    let mut push = |sp: &'a ServicePort, ip: IpAddr| {
        if let Some(p) = intent.port_of_interface(sp.interface.as_str()) {
            let hs = out.entry(ip).or_default();
            if hs.iter().any(|h| h.sp.id == sp.id) {
                return;
            }
            hs.push(Holder {
                sp,
                host: p.host.as_deref(),
                live: p.admin_up && p.status == PortStatus::Up,
                label: if p.name.is_empty() {
                    format!("port {}", p.id)
                } else {
                    format!("port {}", p.name)
                },
            });
        }
    };
    for sp in intent.service_ports_of_service(v.id.as_str()) {
        for f in &sp.fixed_ips {
            push(sp, f.ip);
        }
    }
    for sid in &v.subnets {
        if let Some((net, _)) = intent.subnet(sid.as_str()) {
            for sp in intent.service_ports_of_service(net.id.as_str()) {
                for f in sp
                    .fixed_ips
                    .iter()
                    .filter(|f| f.subnet.as_ref() == Some(sid))
                {
                    push(sp, f.ip);
                }
            }
        }
    }
    for hs in out.values_mut() {
        hs.sort_by(|a, b| a.sp.id.cmp(&b.sp.id));
    }
    out
}

/// The live holders that carry traffic: all of them (load-split), or those
/// with the best preference (fail-over), as the compiler chooses.
fn chosen<'h, 'a>(v: &L3vpn, hs: &'h [Holder<'a>]) -> Vec<&'h Holder<'a>> {
    let live: Vec<&Holder> = hs.iter().filter(|h| h.live).collect();
    match v.anycast_mode {
        AnycastMode::LoadSplit => live,
        AnycastMode::FailOver => {
            let best = live.iter().map(|h| h.sp.preference).max().unwrap_or(0);
            live.into_iter()
                .filter(|h| h.sp.preference == best)
                .collect()
        }
    }
}

/// The RD of the second and later next hops of one prefix: BGP keeps one
/// path per RD and prefix, so anycast holders on other hosts advertise
/// under `<their tunnel address>:<the VRF's RD number>` (type 1), and a
/// gateway importing the VRF's targets sees every path (ECMP).
fn anycast_rd(
    next_hop: IpAddr,
    rd: weft_bgp::RouteDistinguisher,
) -> Option<weft_bgp::RouteDistinguisher> {
    let IpAddr::V4(addr) = next_hop else {
        return None;
    };
    let number = match rd {
        weft_bgp::RouteDistinguisher::As2 { number, .. } => (number & 0xFFFF) as u16,
        weft_bgp::RouteDistinguisher::Ipv4 { number, .. }
        | weft_bgp::RouteDistinguisher::As4 { number, .. } => number,
    };
    Some(weft_bgp::RouteDistinguisher::Ipv4 { addr, number })
}

struct VrfExport<'a> {
    v: &'a L3vpn,
    label: String,
    rd: weft_bgp::RouteDistinguisher,
    rts: Vec<weft_bgp::RouteTarget>,
    rmac: [u8; 6],
}

impl VrfExport<'_> {
    /// Emits one route per next hop for `prefix`.
    fn emit(
        &self,
        prefix: IpNet,
        hops: BTreeMap<IpAddr, Vec<String>>,
        what: &str,
        keys: &mut HashMap<RouteKey, Id>,
        out: &mut Exports,
    ) {
        for (i, (nh, by)) in hops.into_iter().enumerate() {
            let rd = if i == 0 {
                Some(self.rd)
            } else {
                anycast_rd(nh, self.rd)
            };
            let Some(rd) = rd else {
                out.problems.push(format!(
                    "{what} {prefix} in {}: next hop {nh} is IPv6, which cannot make the RD of an extra anycast path; only the first path is advertised",
                    self.label
                ));
                continue;
            };
            let (kind, problem) = match prefix {
                IpNet::V4(_) if self.v.vni > MAX_LABEL => (
                    RouteKind::Vpn,
                    Some(format!(
                        "VNI {} does not fit a 20-bit VPNv4 label; give the l3vpn a VNI up to {MAX_LABEL}",
                        self.v.vni
                    )),
                ),
                IpNet::V4(_) if !nh.is_ipv4() => (
                    RouteKind::Vpn,
                    Some(format!(
                        "the tunnel address {nh} is IPv6 but VPNv4 needs an IPv4 next hop"
                    )),
                ),
                IpNet::V4(_) => (RouteKind::Vpn, None),
                // VPNv6 is not spoken: IPv6 addresses go out as EVPN type 5.
                IpNet::V6(_) => (RouteKind::EvpnPrefix { eth_tag: 0 }, None),
            };
            if let Some(p) = problem {
                out.problems
                    .push(format!("{what} {prefix} in {}: {p}", self.label));
                continue;
            }
            let route = VpnRoute {
                kind,
                rd,
                prefix,
                label_or_vni: self.v.vni,
                next_hop: nh,
                route_targets: self.rts.clone(),
                encap: Some(Encapsulation::Vxlan),
                router_mac: Some(self.rmac),
                local_pref: None,
                med: None,
            };
            let key = match route.key() {
                Ok(k) => k,
                Err(e) => {
                    out.problems
                        .push(format!("{what} {prefix} in {}: {e}", self.label));
                    continue;
                }
            };
            if let Some(other) = keys.get(&key)
                && *other != self.v.id
            {
                out.problems.push(format!(
                    "{what} {prefix} in {}: l3vpn {other} already advertises {key}; give the l3vpns distinct route distinguishers",
                    self.label
                ));
                continue;
            }
            keys.insert(key, self.v.id.clone());
            out.routes.push(ExportedRoute {
                route,
                vrf: self.v.id.clone(),
                source: format!("{what} {}", by.join(", ")),
            });
        }
    }
}

/// Next hops (host tunnel addresses) of the chosen holders of an address.
fn next_hops(
    hs: &[&Holder],
    tunnels: &BTreeMap<String, IpAddr>,
    what: &str,
    problems: &mut Vec<String>,
) -> BTreeMap<IpAddr, Vec<String>> {
    let mut hops: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
    for h in hs {
        match h.host {
            None => problems.push(format!(
                "{what}: {} is bound to no host, so it has no next hop",
                h.label
            )),
            Some(host) => match tunnels.get(host) {
                Some(ip) => hops
                    .entry(*ip)
                    .or_default()
                    .push(format!("{} on {host}", h.label)),
                None => problems.push(format!(
                    "{what}: host {host} of {} has no tunnel address yet (PUT /v1/hosts/{host}/tunnel or wait for its agent)",
                    h.label
                )),
            },
        }
    }
    hops
}

/// The routes Weft advertises: for every address of every l3vpn with
/// export targets, held by a port that is up, a host route (/32 VPNv4;
/// /128 as EVPN type 5) with the VRF's RD, export targets, the VRF's VNI
/// as label, the holder's host tunnel address as next hop, the VXLAN
/// encapsulation (RFC 9012) and the VRF's router MAC; static routes with
/// the host addresses of their live next hops.
pub fn compute_exports(intent: &Intent, tunnels: &BTreeMap<String, IpAddr>) -> Exports {
    let mut out = Exports::default();
    let mut keys: HashMap<RouteKey, Id> = HashMap::new();
    for v in intent.l3vpns().values() {
        if v.export_targets.is_empty() {
            continue;
        }
        let label = if v.name.is_empty() {
            format!("l3vpn {}", v.id)
        } else {
            format!("l3vpn {} ({})", v.name, v.id)
        };
        // The model and the speaker write RDs and RTs the same way.
        let rd = match v.route_distinguisher.to_string().parse() {
            Ok(rd) => rd,
            Err(e) => {
                out.problems.push(format!("{label}: {e}"));
                continue;
            }
        };
        let rts = v
            .export_targets
            .iter()
            .filter_map(|t| t.to_string().parse().ok())
            .collect();
        let x = VrfExport {
            v,
            label,
            rd,
            rts,
            rmac: weft_compiler::names::router_mac(&v.id).0,
        };
        let held = vrf_holders(intent, v);
        for (ip, hs) in &held {
            let live = chosen(v, hs);
            let what = format!("address {ip} of {}", x.label);
            let hops = next_hops(&live, tunnels, &what, &mut out.problems);
            x.emit(IpNet::from(*ip), hops, "host route", &mut keys, &mut out);
        }
        for r in &v.static_routes {
            let best = r.nexthops.iter().map(|n| n.local_pref).max().unwrap_or(0);
            let mut hops: BTreeMap<IpAddr, Vec<String>> = BTreeMap::new();
            for nh in r.nexthops.iter().filter(|n| n.local_pref == best) {
                let hs = held.get(&nh.ip).map_or(&[][..], Vec::as_slice);
                let live = chosen(v, hs);
                let what = format!(
                    "next hop {} of static route {} in {}",
                    nh.ip, r.prefix, x.label
                );
                for (ip, by) in next_hops(&live, tunnels, &what, &mut out.problems) {
                    hops.entry(ip)
                        .or_default()
                        .extend(by.into_iter().map(|b| format!("{} via {b}", nh.ip)));
                }
            }
            x.emit(r.prefix.trunc(), hops, "static route", &mut keys, &mut out);
        }
    }
    out.routes.sort_by_key(|r| r.route.key().ok());
    out
}

// ------------------------------------------------------------------ imports

/// A route learned from a peer, and what Weft did with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ImportView {
    /// The route as received (best path over all peers).
    pub route: ImportedRoute,
    /// Why it is not installed, if it is not.
    pub ignored: Option<String>,
}

/// Turns the speaker's best paths into routes for the compiler. Routes
/// carrying our own AS in their path (RFC 4271 loop detection) and our own
/// routes reflected back are left out.
pub fn external_routes(
    imports: &[Arc<ImportedRoute>],
    local_as: u32,
    exported: &HashSet<RouteKey>,
) -> (Vec<ExternalRoute>, Vec<ImportView>) {
    let mut routes = Vec::new();
    let mut views = Vec::new();
    for r in imports {
        let ignored = if r.as_path.contains(&local_as) {
            Some(format!(
                "its AS path {:?} holds our AS {local_as} (a loop)",
                r.as_path
            ))
        } else if exported.contains(&r.key()) {
            Some("it is one of our own routes, reflected back".to_string())
        } else {
            None
        };
        if ignored.is_none() {
            routes.push(ExternalRoute {
                prefix: r.route.prefix,
                next_hop: r.route.next_hop,
                vni: r.route.label_or_vni,
                router_mac: r.route.router_mac.map(weft_pipeline::MacAddr),
                route_targets: r
                    .route
                    .route_targets
                    .iter()
                    .filter_map(|t| t.to_string().parse().ok())
                    .collect(),
                local_pref: r.route.local_pref.unwrap_or(100),
                source: format!(
                    "peer {} AS {} RD {}{}",
                    r.peer,
                    r.peer_as,
                    r.route.rd,
                    if r.stale {
                        ", stale: peer restarting"
                    } else {
                        ""
                    }
                ),
            });
        }
        views.push(ImportView {
            route: (**r).clone(),
            ignored,
        });
    }
    (routes, views)
}

// ------------------------------------------------------------------ service

/// What the sync task last computed and installed.
#[derive(Default)]
struct Shared {
    config: Option<BgpConfig>,
    revision: Revision,
    /// This replica runs the speaker (always, on the embedded store; the
    /// holder of the singleton lock, on etcd).
    active: bool,
    speaker: Option<SpeakerHandle>,
    /// Why the speaker is not running although configured.
    error: Option<String>,
    exports: Arc<Exports>,
    imports: Arc<Vec<ImportView>>,
}

/// The controller's BGP side: configuration, speaker and route sync.
#[derive(Clone)]
pub struct BgpService {
    store: Arc<dyn Store>,
    intent: IntentService,
    shared: Arc<Mutex<Shared>>,
    /// Serializes configuration changes.
    update: Arc<tokio::sync::Mutex<()>>,
    /// The running speaker, for the sync task.
    speaker_tx: Arc<watch::Sender<Option<SpeakerHandle>>>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

/// Peer status as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct PeerView {
    /// The peer's address.
    pub address: IpAddr,
    /// Its AS.
    pub remote_as: u32,
    /// Session state (Idle, Connect, Active, OpenSent, OpenConfirm, Established).
    pub state: weft_bgp::State,
    /// Seconds since the session came up.
    pub uptime_seconds: Option<u64>,
    /// Routes held from the peer.
    pub prefixes_in: usize,
    /// Of those, stale during a graceful restart.
    pub prefixes_stale: usize,
    /// Routes advertised to the peer.
    pub prefixes_out: usize,
    /// What last took the session down.
    pub last_error: Option<String>,
    /// The peer's router id while up.
    pub peer_router_id: Option<Ipv4Addr>,
    /// Negotiated families.
    pub families: Vec<weft_bgp::Family>,
    /// Times the session came up.
    pub established_count: u64,
    /// UPDATEs received.
    pub updates_in: u64,
    /// UPDATEs sent.
    pub updates_out: u64,
}

impl From<PeerStatus> for PeerView {
    fn from(s: PeerStatus) -> Self {
        PeerView {
            address: s.address,
            remote_as: s.remote_as,
            state: s.state,
            uptime_seconds: s.uptime.map(|d| d.as_secs()),
            prefixes_in: s.prefixes_in,
            prefixes_stale: s.prefixes_stale,
            prefixes_out: s.prefixes_out,
            last_error: s.last_error,
            peer_router_id: s.peer_router_id,
            families: s.families,
            established_count: s.established_count,
            updates_in: s.updates_in,
            updates_out: s.updates_out,
        }
    }
}

/// `GET /v1/bgp`.
#[derive(Clone, Debug, Serialize)]
pub struct BgpStatus {
    /// The configuration; null when BGP is off.
    pub config: Option<BgpConfig>,
    /// Store revision of the configuration (for If-Match); 0 when none.
    pub revision: Revision,
    /// True while the speaker runs.
    pub running: bool,
    /// Why a configured speaker is not running.
    pub error: Option<String>,
    /// Peers, in configuration order.
    pub peers: Vec<PeerView>,
    /// Routes advertised.
    pub exported: usize,
    /// Best paths received.
    pub imported: usize,
    /// Of those, installed into the compiler (not ignored).
    pub installed: usize,
    /// Addresses that could not be advertised, and why.
    pub export_problems: Vec<String>,
}

/// An imported route with the VRFs it lands in.
#[derive(Clone, Debug, Serialize)]
pub struct ImportedRouteView {
    /// The route.
    #[serde(flatten)]
    pub import: ImportView,
    /// l3vpns importing one of its route targets.
    pub vrfs: Vec<Id>,
}

/// `GET /v1/bgp/routes`.
#[derive(Clone, Debug, Serialize)]
pub struct BgpRoutes {
    /// Routes Weft advertises.
    pub exported: Vec<ExportedRoute>,
    /// Routes learned from peers.
    pub imported: Vec<ImportedRouteView>,
}

impl BgpService {
    /// Loads the configuration from the store, starts the speaker if one is
    /// configured, and starts following intent, tunnels and imports.
    pub async fn start(
        store: Arc<dyn Store>,
        intent: IntentService,
        compile: CompileService,
    ) -> Result<Self, BgpError> {
        Self::start_with(store, intent, compile, true).await
    }

    /// Like [`BgpService::start`]; with `active` false the speaker waits for
    /// [`BgpService::set_active`] (replicas on etcd wait for the singleton lock).
    pub async fn start_with(
        store: Arc<dyn Store>,
        intent: IntentService,
        compile: CompileService,
        active: bool,
    ) -> Result<Self, BgpError> {
        let (kv, _) = store.get(CONFIG_KEY).await?;
        let (speaker_tx, speaker_rx) = watch::channel(None);
        let svc = BgpService {
            store,
            intent,
            shared: Arc::new(Mutex::new(Shared {
                active,
                ..Shared::default()
            })),
            update: Arc::new(tokio::sync::Mutex::new(())),
            speaker_tx: Arc::new(speaker_tx),
            task: Arc::new(Mutex::new(None)),
        };
        let task = tokio::spawn(sync(svc.clone(), compile, speaker_rx));
        *svc.task.lock().expect("bgp task lock") = Some(task);
        if let Some(kv) = kv {
            match serde_json::from_slice::<BgpConfig>(&kv.value) {
                Ok(cfg) => {
                    let _guard = svc.update.lock().await;
                    svc.shared.lock().expect("bgp lock").revision = kv.mod_revision;
                    if let Err(e) = svc.apply(Some(cfg.clone())).await {
                        warn!(error = %e, "the stored BGP configuration could not be applied");
                        {
                            let mut s = svc.shared.lock().expect("bgp lock");
                            s.config = Some(cfg);
                            s.error = Some(e.to_string());
                        }
                        // Wake the sync task: the exports are shown all the same.
                        svc.speaker_tx.send_modify(|_| ());
                    }
                }
                Err(e) => {
                    warn!(error = %e, key = CONFIG_KEY, "ignoring an unreadable BGP configuration")
                }
            }
        }
        Ok(svc)
    }

    /// Makes this replica run the speaker or not (the BGP speaker is a
    /// singleton among controller replicas: the holder of the etcd lock
    /// runs it). Activation reloads the stored configuration.
    pub async fn set_active(&self, active: bool) -> Result<(), BgpError> {
        let _guard = self.update.lock().await;
        self.shared.lock().expect("bgp lock").active = active;
        if active {
            self.reload_locked().await
        } else {
            let cfg = self.config();
            self.apply(None).await?;
            // Keep showing the configuration in force elsewhere.
            self.shared.lock().expect("bgp lock").config = cfg;
            Ok(())
        }
    }

    /// Reloads the stored configuration (another replica may have changed it).
    pub async fn reload(&self) -> Result<(), BgpError> {
        let _guard = self.update.lock().await;
        self.reload_locked().await
    }

    async fn reload_locked(&self) -> Result<(), BgpError> {
        let (kv, _) = self.store.get(CONFIG_KEY).await?;
        let (cfg, revision) = match kv {
            Some(kv) => (
                serde_json::from_slice::<BgpConfig>(&kv.value).ok(),
                kv.mod_revision,
            ),
            None => (None, 0),
        };
        if self.shared.lock().expect("bgp lock").revision == revision && revision != 0 {
            let running = self.shared.lock().expect("bgp lock").speaker.is_some();
            let active = self.shared.lock().expect("bgp lock").active;
            if running == active {
                return Ok(());
            }
        }
        self.shared.lock().expect("bgp lock").revision = revision;
        self.apply(cfg).await
    }

    /// Starts, reconfigures or stops the speaker for `cfg`.
    async fn apply(&self, cfg: Option<BgpConfig>) -> Result<(), BgpError> {
        let current = self.shared.lock().expect("bgp lock").speaker.clone();
        let active = self.shared.lock().expect("bgp lock").active;
        if !active {
            // Another replica runs the speaker; remember the configuration only.
            if let Some(h) = current {
                h.shutdown().await;
            }
            let mut s = self.shared.lock().expect("bgp lock");
            s.speaker = None;
            s.config = cfg;
            s.error = None;
            drop(s);
            self.speaker_tx.send_replace(None);
            return Ok(());
        }
        match (cfg, current) {
            (Some(cfg), Some(h)) => {
                h.update_config(cfg.speaker_config()).await?;
                let mut s = self.shared.lock().expect("bgp lock");
                s.config = Some(cfg);
                s.error = None;
            }
            (Some(cfg), None) => {
                let h = Speaker::start(cfg.speaker_config())?;
                // Start with what is known; the sync task keeps it current.
                let exports = self.shared.lock().expect("bgp lock").exports.clone();
                let _ = h.set_exports(exports.routes.iter().map(|r| r.route.clone()).collect());
                info!(local_as = cfg.local_as, router_id = %cfg.router_id, peers = cfg.peers.len(), "BGP speaker started");
                {
                    let mut s = self.shared.lock().expect("bgp lock");
                    s.config = Some(cfg);
                    s.speaker = Some(h.clone());
                    s.error = None;
                }
                self.speaker_tx.send_replace(Some(h));
            }
            (None, current) => {
                {
                    let mut s = self.shared.lock().expect("bgp lock");
                    s.config = None;
                    s.speaker = None;
                    s.error = None;
                }
                self.speaker_tx.send_replace(None);
                if let Some(h) = current {
                    h.shutdown().await;
                    info!("BGP speaker stopped");
                }
            }
        }
        Ok(())
    }

    /// Replaces the configuration (checked, applied, then stored). With
    /// `if_match`, refuses unless the stored configuration is at that revision.
    pub async fn set_config(
        &self,
        cfg: BgpConfig,
        if_match: Option<Revision>,
    ) -> Result<BgpStatus, BgpError> {
        let _guard = self.update.lock().await;
        self.replace(Some(cfg), if_match).await?;
        Ok(self.status().await)
    }

    /// Removes the configuration and stops the speaker.
    pub async fn clear(&self, if_match: Option<Revision>) -> Result<(), BgpError> {
        let _guard = self.update.lock().await;
        self.replace(None, if_match).await
    }

    /// Adds one peer.
    pub async fn add_peer(&self, peer: BgpPeer) -> Result<BgpStatus, BgpError> {
        let _guard = self.update.lock().await;
        let mut cfg = self.config().ok_or(BgpError::NotConfigured)?;
        if cfg
            .peers
            .iter()
            .any(|p| p.address.to_canonical() == peer.address.to_canonical())
        {
            return Err(BgpError::PeerExists(peer.address));
        }
        cfg.peers.push(peer);
        cfg.speaker_config().validate()?;
        self.replace(Some(cfg), None).await?;
        Ok(self.status().await)
    }

    /// Removes one peer (its session ends with a Cease NOTIFICATION).
    pub async fn remove_peer(&self, address: IpAddr) -> Result<BgpStatus, BgpError> {
        let _guard = self.update.lock().await;
        let mut cfg = self.config().ok_or(BgpError::NotConfigured)?;
        let before = cfg.peers.len();
        cfg.peers
            .retain(|p| p.address.to_canonical() != address.to_canonical());
        if cfg.peers.len() == before {
            return Err(BgpError::NoSuchPeer(address));
        }
        self.replace(Some(cfg), None).await?;
        Ok(self.status().await)
    }

    /// Applies then stores; on a store failure the old configuration is
    /// put back so the speaker never runs what a restart would not.
    async fn replace(
        &self,
        cfg: Option<BgpConfig>,
        if_match: Option<Revision>,
    ) -> Result<(), BgpError> {
        let (old, revision) = {
            let s = self.shared.lock().expect("bgp lock");
            (s.config.clone(), s.revision)
        };
        if let Some(expected) = if_match
            && expected != revision
        {
            return Err(BgpError::Stale {
                expected,
                current: revision,
            });
        }
        self.apply(cfg.clone()).await?;
        let txn = Txn::new().when_mod_revision(CONFIG_KEY, revision);
        let txn = match &cfg {
            Some(c) => txn.put(
                CONFIG_KEY,
                serde_json::to_vec(c).expect("configs serialize"),
            ),
            None => txn.delete(CONFIG_KEY),
        };
        let failed = match self.store.txn(txn).await {
            Ok(TxnOutcome::Committed { revision, .. }) => {
                self.shared.lock().expect("bgp lock").revision =
                    if cfg.is_some() { revision } else { 0 };
                return Ok(());
            }
            Ok(TxnOutcome::Failed { .. }) => BgpError::Stale {
                expected: revision,
                current: self
                    .store
                    .get(CONFIG_KEY)
                    .await?
                    .0
                    .map_or(0, |kv| kv.mod_revision),
            },
            Err(e) => BgpError::Store(e),
        };
        if let Err(e) = self.apply(old).await {
            warn!(error = %e, "could not restore the previous BGP configuration");
        }
        Err(failed)
    }

    /// The configuration in force.
    pub fn config(&self) -> Option<BgpConfig> {
        self.shared.lock().expect("bgp lock").config.clone()
    }

    /// Configuration, peers and counts.
    pub async fn status(&self) -> BgpStatus {
        let (config, revision, speaker, error, exports, imports) = {
            let s = self.shared.lock().expect("bgp lock");
            (
                s.config.clone(),
                s.revision,
                s.speaker.clone(),
                s.error.clone(),
                s.exports.clone(),
                s.imports.clone(),
            )
        };
        let peers = match &speaker {
            Some(h) => h.peers().await.into_iter().map(PeerView::from).collect(),
            None => Vec::new(),
        };
        BgpStatus {
            config,
            revision,
            running: speaker.is_some(),
            error,
            peers,
            exported: exports.routes.len(),
            imported: imports.len(),
            installed: imports.iter().filter(|i| i.ignored.is_none()).count(),
            export_problems: exports.problems.clone(),
        }
    }

    /// Exported and imported routes.
    pub fn routes(&self) -> BgpRoutes {
        let (exports, imports) = {
            let s = self.shared.lock().expect("bgp lock");
            (s.exports.clone(), s.imports.clone())
        };
        let imported = self.intent.read(|i| {
            imports
                .iter()
                .map(|imp| {
                    let rts: Vec<weft_model::RouteTarget> = imp
                        .route
                        .route
                        .route_targets
                        .iter()
                        .filter_map(|t| t.to_string().parse().ok())
                        .collect();
                    let vrfs = if imp.ignored.is_some() {
                        Vec::new()
                    } else {
                        i.l3vpns()
                            .values()
                            .filter(|v| v.import_targets.iter().any(|t| rts.contains(t)))
                            .map(|v| v.id.clone())
                            .collect()
                    };
                    ImportedRouteView {
                        import: imp.clone(),
                        vrfs,
                    }
                })
                .collect()
        });
        BgpRoutes {
            exported: exports.routes.clone(),
            imported,
        }
    }

    /// Stops the speaker (Cease to every peer) and the sync task.
    pub async fn shutdown(&self) {
        if let Some(t) = self.task.lock().expect("bgp task lock").take() {
            t.abort();
        }
        let h = self.shared.lock().expect("bgp lock").speaker.take();
        if let Some(h) = h {
            h.shutdown().await;
        }
    }
}

/// Keeps the speaker's exports and the compiler's external routes in step.
async fn sync(
    svc: BgpService,
    compile: CompileService,
    mut speaker_rx: watch::Receiver<Option<SpeakerHandle>>,
) {
    let mut batches = compile.subscribe();
    let mut tunnels = compile.tunnels.watch();
    let mut speaker: Option<SpeakerHandle> = None;
    let mut imports: Option<watch::Receiver<Arc<weft_bgp::Imports>>> = None;
    // What the exports were computed from: (intent revision, tunnel version).
    let mut computed_from: Option<(Revision, u64)> = None;
    let mut sent: Option<Arc<Exports>> = None;
    let mut installed: Vec<ExternalRoute> = Vec::new();
    let mut imports_dirty = false;
    loop {
        let next_import = async {
            match imports.as_mut() {
                Some(rx) => rx.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = batches.recv() => {
                if let Err(tokio::sync::broadcast::error::RecvError::Closed) = r {
                    return;
                }
            }
            r = tunnels.changed() => {
                if r.is_err() {
                    return;
                }
            }
            r = speaker_rx.changed() => {
                if r.is_err() {
                    return;
                }
                speaker = speaker_rx.borrow_and_update().clone();
                imports = speaker.as_ref().map(SpeakerHandle::imports);
                sent = None;
                imports_dirty = true;
            }
            ok = next_import => {
                if !ok {
                    imports = None;
                }
                imports_dirty = true;
            }
        }
        // Exports depend on the intent and the tunnel directory only, and
        // are not computed while BGP is off.
        let from = (svc.intent.revision(), *tunnels.borrow_and_update());
        let exports = if svc.config().is_none() {
            computed_from = None;
            let e = Arc::new(Exports::default());
            svc.shared.lock().expect("bgp lock").exports = e.clone();
            e
        } else if computed_from != Some(from) {
            let dir = compile.tunnels.snapshot();
            let e = Arc::new(svc.intent.read(|i| compute_exports(i, &dir)));
            computed_from = Some(from);
            let changed = svc.shared.lock().expect("bgp lock").exports != e;
            if changed {
                svc.shared.lock().expect("bgp lock").exports = e.clone();
                // Our own routes decide which imports are reflections.
                imports_dirty = true;
            }
            e
        } else {
            svc.shared.lock().expect("bgp lock").exports.clone()
        };
        if let Some(h) = &speaker
            && sent.as_ref() != Some(&exports)
        {
            match h.set_exports(exports.routes.iter().map(|r| r.route.clone()).collect()) {
                Ok(()) => sent = Some(exports.clone()),
                Err(e) => warn!(error = %e, "could not hand the exports to the BGP speaker"),
            }
        }
        if imports_dirty {
            imports_dirty = false;
            let (routes, views) = match (&imports, svc.config()) {
                (Some(rx), Some(cfg)) => {
                    let best = rx.borrow().routes.clone();
                    let keys: HashSet<RouteKey> = exports
                        .routes
                        .iter()
                        .filter_map(|r| r.route.key().ok())
                        .collect();
                    external_routes(&best, cfg.local_as, &keys)
                }
                _ => (Vec::new(), Vec::new()),
            };
            svc.shared.lock().expect("bgp lock").imports = Arc::new(views);
            let mut sorted = routes.clone();
            sorted.sort();
            if sorted != installed {
                compile.set_external(routes);
                installed = sorted;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_requests_are_checked_with_clear_messages() {
        let ok = BgpConfigRequest {
            local_as: Some(64512),
            router_id: Some("198.51.100.1".into()),
            listen: Some("198.51.100.1".into()),
            peers: vec![PeerRequest {
                address: Some("198.51.100.2".into()),
                remote_as: Some(65001),
                hold_time: Some(9),
                ..PeerRequest::default()
            }],
        };
        let cfg = ok.validate().unwrap();
        assert_eq!(cfg.listen, Some("198.51.100.1:179".parse().unwrap()));
        assert_eq!(cfg.peers[0].port, 179);
        let cases: Vec<(BgpConfigRequest, &str, &str)> = vec![
            (
                BgpConfigRequest {
                    router_id: Some("2001:db8::1".into()),
                    ..ok.clone()
                },
                "router_id",
                "must be an IPv4 address",
            ),
            (
                BgpConfigRequest {
                    local_as: Some(0),
                    ..ok.clone()
                },
                "local_as",
                "1 to 4294967295",
            ),
            (
                BgpConfigRequest {
                    local_as: Some(4_294_967_296),
                    ..ok.clone()
                },
                "local_as",
                "4294967296",
            ),
            (
                BgpConfigRequest {
                    local_as: None,
                    ..ok.clone()
                },
                "local_as",
                "required",
            ),
            (
                BgpConfigRequest {
                    listen: Some("nowhere".into()),
                    ..ok.clone()
                },
                "listen",
                "IP:PORT",
            ),
            (
                BgpConfigRequest {
                    peers: vec![ok.peers[0].clone(), ok.peers[0].clone()],
                    ..ok.clone()
                },
                "peers[1].address",
                "listed twice",
            ),
            (
                BgpConfigRequest {
                    peers: vec![PeerRequest {
                        hold_time: Some(2),
                        ..ok.peers[0].clone()
                    }],
                    ..ok.clone()
                },
                "peers[0].hold_time",
                "3 to 65535",
            ),
            (
                BgpConfigRequest {
                    peers: vec![PeerRequest {
                        remote_as: Some(0),
                        ..ok.peers[0].clone()
                    }],
                    ..ok.clone()
                },
                "peers[0].remote_as",
                "AS number",
            ),
            (
                BgpConfigRequest {
                    peers: vec![PeerRequest {
                        port: Some(70000),
                        ..ok.peers[0].clone()
                    }],
                    ..ok.clone()
                },
                "peers[0].port",
                "1 to 65535",
            ),
            (
                BgpConfigRequest {
                    peers: vec![PeerRequest {
                        address: Some("bgp.example".into()),
                        ..ok.peers[0].clone()
                    }],
                    ..ok.clone()
                },
                "peers[0].address",
                "not an IP address",
            ),
        ];
        for (req, field, text) in cases {
            match req.validate() {
                Err(BgpError::Invalid { field: f, message }) => {
                    assert_eq!(f, field, "{message}");
                    assert!(message.contains(text), "{field}: {message}");
                }
                other => panic!("{field}: expected an error, got {other:?}"),
            }
        }
    }

    /// A small intent built through the model, as the writer would.
    struct World {
        intent: Intent,
        ids: weft_model::CountingIds,
        project: Id,
    }

    impl World {
        fn new() -> Self {
            let mut w = World {
                intent: Intent::new(),
                ids: weft_model::CountingIds::default(),
                project: Id::default(),
            };
            w.project = w.create(weft_model::Kind::Project, serde_json::json!({"name": "p"}));
            w
        }

        fn create(&mut self, kind: weft_model::Kind, body: serde_json::Value) -> Id {
            let spec = weft_model::Spec::parse(kind, body.to_string().as_bytes()).unwrap();
            let project = (kind != weft_model::Kind::Project).then(|| self.project.clone());
            self.intent
                .apply(weft_model::Command::Create { project, spec }, &mut self.ids)
                .unwrap_or_else(|e| panic!("{kind} {body}: {e:?}"))
                .object
                .unwrap()
                .id()
                .clone()
        }

        /// A port routed into `vrf` holding `ip`, up unless told otherwise.
        fn routed(&mut self, host: &str, vrf: &Id, ip: &str, preference: u32, up: bool) -> Id {
            use weft_model::Kind;
            let port = self.create(Kind::InstancePort, serde_json::json!({"host": host}));
            let iface = self.create(Kind::Interface, serde_json::json!({"parent": port}));
            self.create(
                Kind::ServicePort,
                serde_json::json!({"interface": iface, "service": vrf,
                    "fixed_ips": [{"ip": ip}], "preference": preference}),
            );
            if up {
                self.set_up(&port, true);
            }
            port
        }

        fn set_up(&mut self, port: &Id, up: bool) {
            let status = if up { PortStatus::Up } else { PortStatus::Down };
            self.intent
                .apply(
                    weft_model::Command::SetPortStatus {
                        id: port.clone(),
                        status,
                    },
                    &mut self.ids,
                )
                .unwrap();
        }
    }

    fn tunnels() -> BTreeMap<String, IpAddr> {
        [
            ("a".to_string(), "192.0.2.1".parse().unwrap()),
            ("b".to_string(), "192.0.2.2".parse().unwrap()),
        ]
        .into()
    }

    /// (rd, prefix, next hop, kind) of every exported route.
    fn summary(e: &Exports) -> Vec<(String, String, String, &'static str)> {
        e.routes
            .iter()
            .map(|r| {
                (
                    r.route.rd.to_string(),
                    r.route.prefix.to_string(),
                    r.route.next_hop.to_string(),
                    match r.route.kind {
                        RouteKind::Vpn => "vpnv4",
                        RouteKind::EvpnPrefix { .. } => "evpn-5",
                        RouteKind::EvpnMacIp { .. } => "evpn-2",
                    },
                )
            })
            .collect()
    }

    fn row(
        rd: &str,
        prefix: &str,
        nh: &str,
        kind: &'static str,
    ) -> (String, String, String, &'static str) {
        (rd.into(), prefix.into(), nh.into(), kind)
    }

    #[test]
    fn anycast_load_split_advertises_one_path_per_host_and_fail_over_only_the_best() {
        let mut w = World::new();
        let vrf = w.create(
            weft_model::Kind::L3vpn,
            serde_json::json!({"route_distinguisher": "64512:9", "route_targets": ["64512:9"], "vni": 4009}),
        );
        w.routed("a", &vrf, "10.9.0.1", 100, true);
        let b1 = w.routed("b", &vrf, "10.9.0.1", 200, true);
        // Two holders on one host make one path.
        w.routed("b", &vrf, "10.9.0.1", 100, true);
        let e = compute_exports(&w.intent, &tunnels());
        assert_eq!(
            summary(&e),
            vec![
                row("64512:9", "10.9.0.1/32", "192.0.2.1", "vpnv4"),
                row("192.0.2.2:9", "10.9.0.1/32", "192.0.2.2", "vpnv4"),
            ],
            "{e:?}"
        );
        let r = &e.routes[0].route;
        assert_eq!(r.label_or_vni, 4009);
        assert_eq!(r.route_targets, vec!["64512:9".parse().unwrap()]);
        assert_eq!(r.encap, Some(Encapsulation::Vxlan));
        assert_eq!(r.router_mac, Some(weft_compiler::names::router_mac(&vrf).0));
        assert!(e.problems.is_empty(), "{:?}", e.problems);

        // Fail-over: only the preferred holder (on b) is advertised, under the VRF's RD.
        let patch = serde_json::json!({"anycast_mode": "fail-over"});
        w.intent
            .apply(
                weft_model::Command::Update {
                    kind: weft_model::Kind::L3vpn,
                    id: vrf.clone(),
                    patch,
                    if_match: None,
                },
                &mut w.ids,
            )
            .unwrap();
        let e = compute_exports(&w.intent, &tunnels());
        assert_eq!(
            summary(&e),
            vec![row("64512:9", "10.9.0.1/32", "192.0.2.2", "vpnv4")]
        );
        // The preferred one goes down: the next preference takes over.
        w.set_up(&b1, false);
        let e = compute_exports(&w.intent, &tunnels());
        assert_eq!(
            summary(&e),
            vec![
                row("64512:9", "10.9.0.1/32", "192.0.2.1", "vpnv4"),
                row("192.0.2.2:9", "10.9.0.1/32", "192.0.2.2", "vpnv4"),
            ]
        );
    }

    #[test]
    fn static_routes_ipv6_down_ports_and_missing_tunnels() {
        let mut w = World::new();
        let vrf = w.create(
            weft_model::Kind::L3vpn,
            serde_json::json!({"route_distinguisher": "64512:3", "export_targets": ["64512:3", "64512:100"],
                "import_targets": ["64512:3"], "vni": 4003,
                "static_routes": [{"prefix": "0.0.0.0/0", "nexthops": [{"ip": "10.3.0.5"}, {"ip": "10.3.0.6", "local_pref": 50}]}]}),
        );
        w.routed("b", &vrf, "10.3.0.5", 100, true);
        w.routed("a", &vrf, "10.3.0.6", 100, true);
        w.routed("a", &vrf, "2001:db8::5", 100, true);
        let down = w.routed("a", &vrf, "10.3.0.7", 100, false);
        w.routed("c", &vrf, "10.3.0.8", 100, true);
        // A VRF without export targets advertises nothing.
        let quiet = w.create(
            weft_model::Kind::L3vpn,
            serde_json::json!({"route_distinguisher": "64512:4", "import_targets": ["64512:4"]}),
        );
        w.routed("a", &quiet, "10.4.0.1", 100, true);
        let e = compute_exports(&w.intent, &tunnels());
        let mut got = summary(&e);
        got.sort();
        assert_eq!(
            got,
            vec![
                row("64512:3", "0.0.0.0/0", "192.0.2.2", "vpnv4"),
                row("64512:3", "10.3.0.5/32", "192.0.2.2", "vpnv4"),
                row("64512:3", "10.3.0.6/32", "192.0.2.1", "vpnv4"),
                row("64512:3", "2001:db8::5/128", "192.0.2.1", "evpn-5"),
            ]
        );
        let st = e
            .routes
            .iter()
            .find(|r| r.route.prefix.prefix_len() == 0)
            .unwrap();
        assert!(
            st.source.contains("static route") && st.source.contains("10.3.0.5 via"),
            "{}",
            st.source
        );
        assert_eq!(st.route.route_targets.len(), 2);
        let problems = e.problems.join("\n");
        assert!(
            problems.contains("host c") && problems.contains("10.3.0.8"),
            "{problems}"
        );
        assert!(
            !problems.contains("10.3.0.7"),
            "a port that is down is no problem: {problems}"
        );
        // Up again: advertised.
        w.set_up(&down, true);
        let e = compute_exports(&w.intent, &tunnels());
        assert!(summary(&e).contains(&row("64512:3", "10.3.0.7/32", "192.0.2.1", "vpnv4")));
    }

    #[test]
    fn a_vni_beyond_twenty_bits_is_reported_not_sent() {
        let mut w = World::new();
        let vrf = w.create(
            weft_model::Kind::L3vpn,
            serde_json::json!({"route_distinguisher": "64512:5", "route_targets": ["64512:5"], "vni": 2_000_000}),
        );
        w.routed("a", &vrf, "10.5.0.1", 100, true);
        let e = compute_exports(&w.intent, &tunnels());
        assert!(e.routes.is_empty());
        assert!(e.problems[0].contains("20-bit"), "{:?}", e.problems);
    }

    #[test]
    fn imports_skip_loops_and_reflections_and_name_their_source() {
        let route = |prefix: &str, as_path: Vec<u32>| {
            let mut r = VpnRoute::vpnv4(
                "65001:7".parse().unwrap(),
                prefix.parse().unwrap(),
                200,
                "198.51.100.2".parse().unwrap(),
                vec!["64512:1".parse().unwrap()],
            );
            r.router_mac = Some([2, 0, 0, 0, 0, 1]);
            Arc::new(ImportedRoute {
                route: r,
                peer: "198.51.100.2".parse().unwrap(),
                peer_as: 65001,
                peer_router_id: "198.51.100.2".parse().unwrap(),
                as_path,
                stale: false,
            })
        };
        let ours = route("10.1.1.5/32", vec![65001]);
        let imports = vec![
            route("203.0.113.0/24", vec![65001]),
            route("10.1.1.6/32", vec![65001, 64512]),
            ours.clone(),
        ];
        let exported: HashSet<RouteKey> = [ours.key()].into();
        let (routes, views) = external_routes(&imports, 64512, &exported);
        assert_eq!(routes.len(), 1);
        let r = &routes[0];
        assert_eq!(r.prefix.to_string(), "203.0.113.0/24");
        assert_eq!(r.vni, 200);
        assert_eq!(r.local_pref, 100);
        assert_eq!(
            r.router_mac,
            Some(weft_pipeline::MacAddr([2, 0, 0, 0, 0, 1]))
        );
        assert_eq!(r.route_targets, vec!["64512:1".parse().unwrap()]);
        assert_eq!(r.source, "peer 198.51.100.2 AS 65001 RD 65001:7");
        assert!(views[1].ignored.as_deref().unwrap().contains("loop"));
        assert!(views[2].ignored.as_deref().unwrap().contains("reflected"));
    }

    #[test]
    fn anycast_paths_after_the_first_get_a_per_host_rd() {
        let rd: weft_bgp::RouteDistinguisher = "64512:7".parse().unwrap();
        assert_eq!(
            anycast_rd("192.0.2.2".parse().unwrap(), rd)
                .unwrap()
                .to_string(),
            "192.0.2.2:7"
        );
        assert_eq!(anycast_rd("2001:db8::1".parse().unwrap(), rd), None);
    }
}
