//! Southbound scale benchmark against the real controller (issue 4 item 8 with one
//! `weft up` on the embedded store; issue 7 item 4 with `weft up` replicas on etcd).
//!
//! ```text
//!  driver ──spawns──► etcd members (0, 1 or 3)            ┌────────────────────────────┐
//!         ──spawns──► weft up × R (--store embedded|etcd) │ agents processes (K each): │
//!         ──REST────► projects, l2-networks, l3vpns,      │ weft_agent::start per host,│
//!                     security groups, H × P ports bound  │ one TLS connection each,   │
//!                     to hosts; join tokens               │ stdout lines:              │
//!         ──Enroll──► every host (real RPC, real certs)   │  S host sessions unix_ns   │
//!         ──spawns──► agents processes ─────────────────► │  P host sample unix_ns     │
//!  measures: cold start, controller RSS/CPU per idle host,└────────────────────────────┘
//!  port POST → agents holding the port (p50/p99), reconnect storm (time, bytes), etcd load
//! ```
//!
//! Topology ("a realistic mix"): tenants of about 60 ports; each tenant has two l2-networks
//! routed by its VRF (an l3vpn with its own route target), one isolated l2-network, routed
//! ports in the VRF itself, and a stateful security group (ingress from its own members) on
//! its routed-network ports; every fifth tenant's VRF also imports the next tenant's routes
//! (extranet). Each host holds P ports (default 4) of two tenants: 40% on the first network,
//! 30% on the second, 15% isolated, 15% routed VRF ports.
//!
//! A latency sample creates one port through the API (POST) bound to a random host, with a
//! marker MAC `02:ee:00:xx:xx:xx`; every agent's backend reports when it is first handed a
//! view holding that port (the agents' clock is the same machine's). The hosts the port
//! concerns are computed from the topology with the compiler's neighbourhood rule (the
//! port's host, and every host whose neighbourhood holds the port's datapath); a sample is
//! complete when all of them reported. Reported: per host p50/p99 and the time to the last
//! concerned host, from the POST's return and from its start.
//!
//! Run through `bench/southbound/run-controller.sh` (sizes, replicas) or directly:
//! `southbound-scale --hosts 1000 [--replicas 1] [--etcd 0] [--ports 4] [--samples 200]
//!  [--per-process 500] [--weft target/release/weft] [--storm restart|kill-one|none]`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use weft_agent::{AgentOptions, Backend, Identity, View, ViewStore};
use weft_client::{Client, Method};
use weft_model::Kind;
use weft_southbound::{Commit, LocalView, SplitMix64};

// ------------------------------------------------------------------ options

#[derive(Clone, Debug)]
struct Opts {
    hosts: usize,
    replicas: usize,
    etcd: usize,
    ports: usize,
    samples: usize,
    per_process: usize,
    weft: PathBuf,
    storm: String,
    seed: u64,
    tenant_ports: usize,
}

fn parse_opts(args: &[String]) -> Result<Opts> {
    let mut o = Opts {
        hosts: 100,
        replicas: 1,
        etcd: 0,
        ports: 4,
        samples: 200,
        per_process: 500,
        weft: PathBuf::from("target/release/weft"),
        storm: String::new(),
        seed: 7,
        tenant_ports: 60,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut v = || {
            it.next()
                .cloned()
                .ok_or_else(|| anyhow!("{a} needs a value"))
        };
        match a.as_str() {
            "--hosts" => o.hosts = v()?.parse()?,
            "--replicas" => o.replicas = v()?.parse()?,
            "--etcd" => o.etcd = v()?.parse()?,
            "--ports" => o.ports = v()?.parse()?,
            "--samples" => o.samples = v()?.parse()?,
            "--per-process" => o.per_process = v()?.parse()?,
            "--weft" => o.weft = PathBuf::from(v()?),
            "--storm" => o.storm = v()?,
            "--seed" => o.seed = v()?.parse()?,
            "--tenant-ports" => o.tenant_ports = v()?.parse()?,
            "--bench" => {}
            other => bail!("unknown argument {other}"),
        }
    }
    if o.replicas > 1 && o.etcd == 0 {
        bail!(
            "--replicas {} needs --etcd 1 or 3 (replicas share an etcd)",
            o.replicas
        );
    }
    if o.storm.is_empty() {
        o.storm = if o.replicas > 1 {
            "kill-one"
        } else {
            "restart"
        }
        .into();
    }
    Ok(o)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("agents") {
        return agents_main(&args[1..]);
    }
    let opts = parse_opts(&args)?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(driver(opts))
}

fn host(i: usize) -> String {
    format!("sim-{i:05}")
}

fn tunnel_ip(i: usize) -> Ipv4Addr {
    // 100.64.0.0/10 (shared address space): room for every simulated host; no packets flow.
    Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + i as u32 + 1)
}

fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

// ------------------------------------------------------------ agents process

/// Keeps nothing: the agent holds its view in memory already, and a second copy per
/// simulated host would only measure the benchmark.
struct NoStore;

impl ViewStore for NoStore {
    fn load(&mut self) -> anyhow::Result<LocalView> {
        Ok(LocalView::default())
    }
    fn commit(&mut self, _: &Commit) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Reports the first view holding each marked port.
struct PortWatch {
    idx: usize,
    seen: HashSet<u64>,
    dumped: bool,
    out: std::sync::mpsc::Sender<String>,
}

const MARK: &[u8] = b"\"02:ee:00:";

fn marker(record: &[u8]) -> Option<u32> {
    // Records travel deflated: look in the JSON the agent decodes them to.
    let f = weft_compiler::view::decode_record(record).ok()?;
    let v = serde_json::to_vec(&f).ok()?;
    let at = v.windows(MARK.len()).position(|w| w == MARK)? + MARK.len();
    let s = std::str::from_utf8(v.get(at..at + 8)?).ok()?;
    u32::from_str_radix(&s.replace(':', ""), 16).ok()
}

fn key_hash(k: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one(k)
}

impl Backend for PortWatch {
    fn apply(&mut self, view: &View) -> anyhow::Result<()> {
        let now = now_ns();
        if !self.dumped
            && std::env::var("WEFT_BENCH_DUMP")
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                == Some(self.idx)
        {
            self.dumped = true;
            let mut by: BTreeMap<String, (usize, usize)> = BTreeMap::new();
            for (k, v) in view {
                let e = by
                    .entry(k.split('/').next().unwrap_or("").to_string())
                    .or_default();
                e.0 += 1;
                e.1 += v.len();
            }
            eprintln!("view of {}: {by:?}", host(self.idx));
            if let Some((k, v)) = view.iter().find(|(k, _)| k.starts_with("port/")) {
                let f = weft_compiler::view::decode_record(v).map_err(anyhow::Error::msg)?;
                eprintln!("{k}: {}", serde_json::to_string(&f)?);
            }
        }
        for (k, v) in view.range::<str, _>((
            std::ops::Bound::Included("port/"),
            std::ops::Bound::Unbounded,
        )) {
            if !k.starts_with("port/") {
                break;
            }
            if self.seen.insert(key_hash(k))
                && let Some(s) = marker(v)
            {
                let _ = self.out.send(format!("P {} {s} {now}\n", self.idx));
            }
        }
        Ok(())
    }
}

fn agents_main(args: &[String]) -> Result<()> {
    let ids = PathBuf::from(&args[0]);
    let from: usize = args[1].parse()?;
    let to: usize = args[2].parse()?;
    let controllers: Vec<String> = args[3].split(',').map(str::to_string).collect();
    // Agents log to stderr at WEFT_AGENTS_LOG (default: errors only).
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEFT_AGENTS_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let (out, lines) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        let stdout = std::io::stdout();
        let mut w = std::io::BufWriter::new(stdout.lock());
        while let Ok(l) = lines.recv() {
            let _ = w.write_all(l.as_bytes());
            while let Ok(l) = lines.try_recv() {
                let _ = w.write_all(l.as_bytes());
            }
            let _ = w.flush();
        }
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut handles = Vec::new();
        for i in from..to {
            let id = Identity::load(&ids.join(host(i)))?;
            let mut order = controllers.clone();
            order.rotate_left(i % controllers.len());
            let mut opts = AgentOptions::new(order);
            opts.jitter_seed = i as u64 * 7919 + 1;
            opts.tunnel_address = Some(tunnel_ip(i).into());
            let backend = PortWatch {
                idx: i,
                seen: HashSet::new(),
                dumped: false,
                out: out.clone(),
            };
            let agent = weft_agent::start(id, opts, Box::new(NoStore), Box::new(backend)).await?;
            let mut st = agent.watch_status();
            let out = out.clone();
            tokio::spawn(async move {
                let mut seen = 0;
                loop {
                    let (s, ctl) = {
                        let st = st.borrow_and_update();
                        (st.sessions, st.controller.clone().unwrap_or_default())
                    };
                    if s > seen {
                        seen = s;
                        let _ = out.send(format!("S {i} {s} {} {ctl}\n", now_ns()));
                    }
                    if st.changed().await.is_err() {
                        break;
                    }
                }
            });
            handles.push(agent);
        }
        // Until the driver closes our stdin.
        let _ = tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            let _ = std::io::stdin().read_line(&mut s);
        })
        .await;
        drop(handles);
        anyhow::Ok(())
    })
}

// ---------------------------------------------------------------- topology

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Dp {
    /// Network k (0, 1 routed; 2 isolated) of tenant t.
    Net(usize, u8),
    /// The VRF of tenant t.
    Vrf(usize),
}

#[derive(Clone, Debug, Default)]
struct Tenant {
    project: String,
    nets: [String; 3],
    vrf: String,
    sg: String,
    /// Tenants whose VRF routes this tenant's VRF imports.
    imports: Vec<usize>,
    routed_next: u32,
}

struct Topo {
    tenants: Vec<Tenant>,
    /// Per host: datapaths of its own ports.
    ports: Vec<Vec<Dp>>,
    /// Datapath → hosts whose neighbourhood holds it.
    seen_by: HashMap<Dp, HashSet<usize>>,
    nbhd: Vec<HashSet<Dp>>,
}

impl Topo {
    fn tenant_base(t: usize) -> u32 {
        u32::from(Ipv4Addr::new(10, 0, 0, 0)) + (t as u32) * 1024
    }

    /// The compiler's neighbourhood rule over this topology (weft_compiler::view).
    fn neighbourhood(&self, h: usize) -> HashSet<Dp> {
        let mut switches = HashSet::new();
        let mut vrfs = HashSet::new();
        for d in &self.ports[h] {
            match *d {
                Dp::Net(t, k) => {
                    switches.insert((t, k));
                    if k < 2 {
                        vrfs.insert(t);
                    }
                }
                Dp::Vrf(t) => {
                    vrfs.insert(t);
                }
            }
        }
        let mut todo: Vec<usize> = vrfs.iter().copied().collect();
        while let Some(v) = todo.pop() {
            for &x in &self.tenants[v].imports {
                if vrfs.insert(x) {
                    todo.push(x);
                }
            }
        }
        for &v in &vrfs {
            switches.insert((v, 0));
            switches.insert((v, 1));
        }
        let mut out: HashSet<Dp> = switches.into_iter().map(|(t, k)| Dp::Net(t, k)).collect();
        out.extend(vrfs.into_iter().map(Dp::Vrf));
        out
    }

    fn recompute(&mut self, h: usize) {
        let new = self.neighbourhood(h);
        for d in &self.nbhd[h] {
            if let Some(s) = self.seen_by.get_mut(d) {
                s.remove(&h);
            }
        }
        for d in &new {
            self.seen_by.entry(*d).or_default().insert(h);
        }
        self.nbhd[h] = new;
    }

    /// Hosts a new port on `dp` bound to `h` concerns.
    fn concerned(&self, dp: Dp, h: usize) -> HashSet<usize> {
        let mut s = self.seen_by.get(&dp).cloned().unwrap_or_default();
        s.insert(h);
        s
    }

    fn port_body(&mut self, dp: Dp, h: usize, name: String, mac: Option<String>) -> Value {
        let (t, svc) = match dp {
            Dp::Net(t, k) => {
                let mut b = json!({"service": self.tenants[t].nets[k as usize]});
                if k < 2 {
                    b["security_groups"] = json!([self.tenants[t].sg]);
                }
                (t, b)
            }
            Dp::Vrf(t) => {
                let n = self.tenants[t].routed_next;
                self.tenants[t].routed_next += 1;
                // Routed addresses live in the tenant's fourth /24, then beyond its block in
                // 172.16.0.0/12 if a tenant ever needs more than 254.
                let ip = if n < 254 {
                    Ipv4Addr::from(Self::tenant_base(t) + 768 + 1 + n)
                } else {
                    Ipv4Addr::from(u32::from(Ipv4Addr::new(172, 16, 0, 0)) + (t as u32) * 4096 + n)
                };
                (
                    t,
                    json!({"service": self.tenants[t].vrf, "fixed_ips": [{"ip": ip.to_string()}]}),
                )
            }
        };
        let mut body = json!({
            "project": self.tenants[t].project,
            "name": name,
            "host": host(h),
            "bindings": [svc],
        });
        if let Some(m) = mac {
            body["mac"] = json!(m);
        }
        body
    }
}

/// Draws the port datapaths of every host.
fn plan(opts: &Opts) -> (usize, Vec<Vec<Dp>>) {
    let tenants = (opts.hosts * opts.ports).div_ceil(opts.tenant_ports).max(2);
    let mut rng = SplitMix64::new(opts.seed);
    let mut ports = Vec::with_capacity(opts.hosts);
    for _ in 0..opts.hosts {
        let t1 = (rng.next() % tenants as u64) as usize;
        let mut t2 = (rng.next() % tenants as u64) as usize;
        if t2 == t1 {
            t2 = (t1 + 1) % tenants;
        }
        let mut mine = Vec::new();
        for j in 0..opts.ports {
            let t = if j % 2 == 0 { t1 } else { t2 };
            mine.push(draw_dp(&mut rng, t));
        }
        ports.push(mine);
    }
    (tenants, ports)
}

fn draw_dp(rng: &mut SplitMix64, t: usize) -> Dp {
    match rng.next() % 100 {
        0..40 => Dp::Net(t, 0),
        40..70 => Dp::Net(t, 1),
        70..85 => Dp::Net(t, 2),
        _ => Dp::Vrf(t),
    }
}

async fn create(c: &Client, kind: Kind, body: Value) -> Result<Value> {
    let mut tries = 0;
    loop {
        match c.create(kind, &body).await {
            Ok(v) => return Ok(v),
            Err(e) if tries < 20 && e.status().is_none_or(|s| s >= 500) => {
                tries += 1;
                if tries > 3 {
                    eprintln!("retrying {kind}: {e}");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(anyhow!("creating {kind} {body}: {e}")),
        }
    }
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_default().to_string()
}

async fn build_topology(opts: &Opts, clients: &[Client]) -> Result<Topo> {
    let (n_tenants, ports) = plan(opts);
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let sem = Arc::new(tokio::sync::Semaphore::new(16));
    for t in 0..n_tenants {
        // Set-up goes through the first replica: replicas serialize intent writes with an
        // optimistic lock, and set-up is not what is measured.
        let c = clients[0].clone();
        let sem = sem.clone();
        tasks.spawn(async move {
            let _p = sem.acquire().await?;
            let project = id(&create(&c, Kind::Project, json!({"name": format!("tenant-{t:04}")})).await?);
            let base = Topo::tenant_base(t);
            let cidr = |k: u32| format!("{}/24", Ipv4Addr::from(base + k * 256));
            let mut nets: [String; 3] = Default::default();
            let mut subnets = Vec::new();
            for k in 0..3u32 {
                let n = create(
                    &c,
                    Kind::L2Network,
                    json!({"project": project, "name": format!("t{t}-net{k}"), "subnets": [{"cidr": cidr(k)}]}),
                )
                .await?;
                if k < 2 {
                    subnets.push(n["subnets"][0]["id"].as_str().unwrap_or_default().to_string());
                }
                nets[k as usize] = id(&n);
            }
            let rt = format!("64512:{}", t + 1);
            let mut import = Vec::new();
            let mut imports = Vec::new();
            if t % 5 == 0 && t + 1 < n_tenants {
                import.push(format!("64512:{}", t + 2));
                imports.push(t + 1);
            }
            let vrf = id(&create(
                &c,
                Kind::L3vpn,
                json!({"project": project, "name": format!("t{t}-vrf"), "route_distinguisher": rt,
                       "route_targets": [rt], "import_targets": import, "subnets": subnets}),
            )
            .await?);
            let sg = id(&create(
                &c,
                Kind::SecurityGroup,
                json!({"project": project, "name": format!("t{t}-default"),
                       "rules": [{"direction": "egress"},
                                 {"direction": "ingress", "protocol": "tcp", "port_range_min": 22, "remote_prefix": "0.0.0.0/0"}]}),
            )
            .await?);
            let rules = json!({"rules": [{"direction": "egress"},
                              {"direction": "ingress", "protocol": "tcp", "port_range_min": 22, "remote_prefix": "0.0.0.0/0"},
                              {"direction": "ingress", "remote_group": sg}]});
            let mut tries = 0;
            while let Err(e) = c.update(Kind::SecurityGroup, &sg, &rules, None).await {
                tries += 1;
                if tries > 20 || e.status().is_some_and(|s| s < 500) {
                    bail!("security group rules: {e}");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            anyhow::Ok((t, Tenant { project, nets, vrf, sg, imports, routed_next: 0 }))
        });
    }
    let mut tenants = vec![Tenant::default(); n_tenants];
    while let Some(r) = tasks.join_next().await {
        let (t, ten) = r??;
        tenants[t] = ten;
    }
    eprintln!(
        "{n_tenants} tenants (3 networks, 1 VRF, 1 security group each) in {:.1?}",
        t0.elapsed()
    );
    let mut topo = Topo {
        tenants,
        ports: vec![Vec::new(); opts.hosts],
        seen_by: HashMap::new(),
        nbhd: vec![HashSet::new(); opts.hosts],
    };
    // Ports, bound to their hosts, 32 requests in flight.
    let t0 = Instant::now();
    let mut bodies = Vec::new();
    for (h, dps) in ports.iter().enumerate() {
        for (j, dp) in dps.iter().enumerate() {
            bodies.push(topo.port_body(*dp, h, format!("{}-p{j}", host(h)), None));
        }
    }
    let total = bodies.len();
    let queue = Arc::new(std::sync::Mutex::new(bodies));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..32 {
        let c = clients[0].clone();
        let queue = queue.clone();
        tasks.spawn(async move {
            loop {
                let Some(b) = queue.lock().expect("queue").pop() else {
                    break;
                };
                create(&c, Kind::InstancePort, b).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    eprintln!(
        "{total} ports created through the API in {:.1?} ({:.0}/s)",
        t0.elapsed(),
        total as f64 / t0.elapsed().as_secs_f64()
    );
    topo.ports = ports;
    for h in 0..opts.hosts {
        topo.recompute(h);
    }
    Ok(topo)
}

// ----------------------------------------------------------- processes, stats

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

struct Ctl {
    data: PathBuf,
    rest: SocketAddr,
    sb: SocketAddr,
    store: String,
    child: Option<Child>,
}

impl Ctl {
    fn spawn(&mut self, weft: &Path) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data.join("weft-up.log"))?;
        // Through setpriv: the controller dies with the thread that started it, even when
        // the driver is killed before its destructors run.
        let child = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "--"])
            .arg(weft)
            .args(["--data-dir"])
            .arg(&self.data)
            .args(["up", "--listen", &self.rest.to_string(), "--southbound"])
            .arg(self.sb.to_string())
            .args(["--store", &self.store])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", weft.display()))?;
        self.child = Some(child);
        Ok(())
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    async fn wait_healthy(&self, token: Option<String>) -> Result<()> {
        let c = Client::new(format!("http://{}", self.rest), token);
        let t = Instant::now();
        loop {
            if c.health().await.is_ok() {
                return Ok(());
            }
            if t.elapsed() > Duration::from_secs(120) {
                bail!(
                    "controller at {} not healthy within 120 s (log: {}/weft-up.log)",
                    self.rest,
                    self.data.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Ctl {
    fn drop(&mut self) {
        self.kill();
    }
}

/// RSS (KiB) and CPU seconds (user + system) of a process.
fn proc_stat(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat; index 0 here is field 3.
    (rss, (ticks(11) + ticks(12)) / 100.0)
}

/// TCP bytes (agent → controller, controller → agent) of established connections to `port`,
/// TLS included, from the kernel's per-socket counters.
fn socket_bytes(port: u16) -> (u64, u64, usize) {
    let out = Command::new("ss")
        .args([
            "-tinH",
            "state",
            "established",
            &format!("( dport = :{port} )"),
        ])
        .output();
    let Ok(out) = out else { return (0, 0, 0) };
    let text = String::from_utf8_lossy(&out.stdout);
    let (mut sent, mut recv, mut n) = (0, 0, 0);
    for tok in text.split_whitespace() {
        if let Some(v) = tok.strip_prefix("bytes_sent:") {
            sent += v.parse::<u64>().unwrap_or(0);
            n += 1;
        } else if let Some(v) = tok.strip_prefix("bytes_received:") {
            recv += v.parse::<u64>().unwrap_or(0);
        }
    }
    (sent, recv, n)
}

/// etcd's Prometheus counters of interest (one member).
fn etcd_metrics(client_port: u16) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", client_port)) else {
        return out;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    const WANT: &[&str] = &[
        "etcd_mvcc_put_total",
        "etcd_mvcc_range_total",
        "etcd_mvcc_txn_total",
        "etcd_mvcc_delete_total",
        "etcd_debugging_mvcc_watcher_total",
        "etcd_debugging_mvcc_watch_stream_total",
        "etcd_debugging_mvcc_events_total",
        "etcd_network_client_grpc_received_bytes_total",
        "etcd_network_client_grpc_sent_bytes_total",
        "etcd_mvcc_db_total_size_in_bytes",
        "etcd_server_proposals_committed_total",
        "grpc_server_handled_total",
    ];
    for line in body.lines() {
        if line.starts_with('#') {
            continue;
        }
        let Some((name_labels, val)) = line.rsplit_once(' ') else {
            continue;
        };
        let name = name_labels.split('{').next().unwrap_or("");
        if WANT.contains(&name)
            && let Ok(v) = val.parse::<f64>()
        {
            *out.entry(name.to_string()).or_default() += v;
        }
    }
    out
}

// ------------------------------------------------------------------ events

enum Ev {
    Synced {
        host: usize,
        sessions: u64,
        ns: i128,
        controller: String,
    },
    Port {
        host: usize,
        sample: u32,
        ns: i128,
    },
}

fn spawn_agents(
    exe: &Path,
    ids: &Path,
    from: usize,
    to: usize,
    controllers: &str,
    tx: mpsc::UnboundedSender<Ev>,
) -> Result<Child> {
    let mut child = Command::new(exe)
        .args(["agents"])
        .arg(ids)
        .args([&from.to_string(), &to.to_string(), controllers])
        .env("WEFT_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let p: Vec<&str> = line.split_whitespace().collect();
            let ev = match p.as_slice() {
                ["S", h, s, ns, ctl] => Ev::Synced {
                    host: h.parse().unwrap_or(0),
                    sessions: s.parse().unwrap_or(0),
                    ns: ns.parse().unwrap_or(0),
                    controller: ctl.to_string(),
                },
                ["P", h, s, ns] => Ev::Port {
                    host: h.parse().unwrap_or(0),
                    sample: s.parse().unwrap_or(0),
                    ns: ns.parse().unwrap_or(0),
                },
                _ => continue,
            };
            if tx.send(ev).is_err() {
                break;
            }
        }
    });
    Ok(child)
}

/// Per-host session counts, fed by the agents' events; port events are queued for samples.
struct Hosts {
    rx: mpsc::UnboundedReceiver<Ev>,
    sessions: Vec<u64>,
    last_sync_ns: Vec<i128>,
    /// The controller (southbound address) of each host's last synced session.
    controller: Vec<String>,
    ports: Vec<(usize, u32, i128)>,
}

impl Hosts {
    fn absorb(&mut self, ev: Ev) {
        match ev {
            Ev::Synced {
                host,
                sessions,
                ns,
                controller,
            } => {
                if sessions > self.sessions[host] {
                    self.sessions[host] = sessions;
                    self.last_sync_ns[host] = ns;
                    self.controller[host] = controller;
                }
            }
            Ev::Port { host, sample, ns } => self.ports.push((host, sample, ns)),
        }
    }

    /// Waits until every host in `which` has at least `want(host)` sessions; returns the
    /// agents' time of the last one, or an error naming how many are missing.
    async fn wait_synced(
        &mut self,
        which: &[usize],
        want: impl Fn(usize) -> u64,
        limit: Duration,
    ) -> Result<i128> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let missing = which
                .iter()
                .filter(|h| self.sessions[**h] < want(**h))
                .count();
            if missing == 0 {
                return Ok(which
                    .iter()
                    .map(|h| self.last_sync_ns[*h])
                    .max()
                    .unwrap_or(0));
            }
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(ev)) => self.absorb(ev),
                Ok(None) => bail!("agents processes are gone"),
                Err(_) => bail!(
                    "{missing} of {} hosts not in sync after {limit:?}",
                    which.len()
                ),
            }
        }
    }

    /// Drains what arrived.
    fn drain(&mut self) {
        while let Ok(ev) = self.rx.try_recv() {
            self.absorb(ev);
        }
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[(((sorted.len() - 1) as f64) * p / 100.0).round() as usize]
}

fn summary(v: &mut [f64]) -> String {
    v.sort_by(f64::total_cmp);
    format!(
        "p50 {:.1} / p99 {:.1} / max {:.1} ms (n={})",
        pct(v, 50.0),
        pct(v, 99.0),
        pct(v, 100.0),
        v.len()
    )
}

// ------------------------------------------------------------------ driver

struct Phase {
    name: &'static str,
    at: Instant,
    ctl: Vec<(u64, f64)>,
    etcd: Vec<(u64, f64)>,
    metrics: BTreeMap<String, f64>,
}

async fn driver(opts: Opts) -> Result<()> {
    let started_at = SystemTime::now();
    eprintln!("southbound-scale {opts:?}");
    let work = tempfile::Builder::new().prefix("weft-sbscale-").tempdir()?;
    let keep = std::env::var_os("WEFT_BENCH_KEEP").is_some();
    let exe = std::env::current_exe()?;
    let weft = std::fs::canonicalize(&opts.weft).with_context(|| {
        format!(
            "{} (build it: cargo build --release -p weft)",
            opts.weft.display()
        )
    })?;

    // etcd, then the controllers.
    let etcd = if opts.etcd > 0 {
        // Started from this runtime worker, which outlives the members (they die with the
        // thread that started them).
        let c = weft_etcd::testing::EtcdCluster::start(opts.etcd).map_err(|e| anyhow!("{e}"))?;
        eprintln!("etcd: {}", c.store_url());
        Some(c)
    } else {
        None
    };
    let store = etcd
        .as_ref()
        .map_or("embedded".to_string(), |c| c.store_url());
    let mut ctls = Vec::new();
    for r in 0..opts.replicas {
        let data = work.path().join(format!("ctl{r}"));
        std::fs::create_dir_all(&data)?;
        let mut c = Ctl {
            data,
            rest: SocketAddr::from(([127, 0, 0, 1], free_port())),
            sb: SocketAddr::from(([127, 0, 0, 1], free_port())),
            store: store.clone(),
            child: None,
        };
        c.spawn(&weft)?;
        c.wait_healthy(None).await?;
        ctls.push(c);
    }
    let token = std::fs::read_to_string(ctls[0].data.join("admin-token"))
        .context("reading the admin token of the first controller")?
        .trim()
        .to_string();
    let clients: Vec<Client> = ctls
        .iter()
        .map(|c| Client::new(format!("http://{}", c.rest), Some(token.clone())))
        .collect();
    let sb_list = ctls
        .iter()
        .map(|c| c.sb.to_string())
        .collect::<Vec<_>>()
        .join(",");
    eprintln!("controllers up: {sb_list} (store {store})");

    let mut topo = build_topology(&opts, &clients).await?;

    // Join tokens through the API and enrolment through the real RPC.
    let t0 = Instant::now();
    let ids = work.path().join("ids");
    let sem = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..opts.hosts {
        let c = clients[i % clients.len()].clone();
        let sb = ctls[i % ctls.len()].sb.to_string();
        let d = ids.join(host(i));
        let sem = sem.clone();
        tasks.spawn(async move {
            let _p = sem.acquire().await?;
            let (_, _, t) = c
                .request(
                    Method::POST,
                    "/v1/join-tokens",
                    &[],
                    Some(&json!({"host": host(i), "ttl_seconds": 3600})),
                    None,
                )
                .await
                .map_err(|e| anyhow!("join token for {}: {e}", host(i)))?;
            let token = t["token"].as_str().unwrap_or_default().to_string();
            weft_agent::enroll(&sb, &token, &host(i), &d).await?;
            anyhow::Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    eprintln!(
        "{} hosts enrolled (join token via REST + Enroll RPC) in {:.1?}",
        opts.hosts,
        t0.elapsed()
    );

    let mut phases: Vec<Phase> = Vec::new();
    let snap = |name: &'static str, ctls: &[Ctl]| {
        let p = Phase {
            name,
            at: Instant::now(),
            ctl: ctls.iter().map(|c| proc_stat(c.pid())).collect(),
            etcd: etcd
                .as_ref()
                .map(|e| {
                    e.members()
                        .iter()
                        .map(|m| proc_stat(m.pid().unwrap_or(0)))
                        .collect()
                })
                .unwrap_or_default(),
            metrics: etcd
                .as_ref()
                .map(|e| etcd_metrics(e.members()[0].client_port()))
                .unwrap_or_default(),
        };
        let ctl: Vec<String> = p
            .ctl
            .iter()
            .map(|(rss, cpu)| format!("{rss} KiB/{cpu:.1} s"))
            .collect();
        eprintln!("phase {}: controllers RSS/CPU {}", p.name, ctl.join(", "));
        p
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    phases.push(snap("no agents", &ctls));

    // The agents.
    let (tx, rx) = mpsc::unbounded_channel();
    let mut hosts = Hosts {
        rx,
        sessions: vec![0; opts.hosts],
        last_sync_ns: vec![0; opts.hosts],
        controller: vec![String::new(); opts.hosts],
        ports: Vec::new(),
    };
    let t_cold = Instant::now();
    let cold_ns = now_ns();
    let mut children = Vec::new();
    let mut from = 0;
    while from < opts.hosts {
        let to = (from + opts.per_process).min(opts.hosts);
        children.push(spawn_agents(&exe, &ids, from, to, &sb_list, tx.clone())?);
        from = to;
    }
    drop(tx);
    let all: Vec<usize> = (0..opts.hosts).collect();
    let last = hosts
        .wait_synced(&all, |_| 1, Duration::from_secs(900))
        .await?;
    let cold_ms = (last - cold_ns) as f64 / 1e6;
    eprintln!(
        "cold start: {} agents in sync after {cold_ms:.0} ms ({:.1?} wall)",
        opts.hosts,
        t_cold.elapsed()
    );
    let cold_bytes: Vec<(u64, u64, usize)> =
        ctls.iter().map(|c| socket_bytes(c.sb.port())).collect();

    // Idle: memory and CPU per connected host.
    tokio::time::sleep(Duration::from_secs(10)).await;
    hosts.drain();
    phases.push(snap("idle start", &ctls));
    let idle_on: Vec<usize> = ctls
        .iter()
        .map(|c| {
            let a = c.sb.to_string();
            hosts.controller.iter().filter(|x| **x == a).count()
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(20)).await;
    hosts.drain();
    phases.push(snap("idle end", &ctls));
    let agents_rss: u64 = children.iter().map(|c| proc_stat(c.id()).0).sum();

    // Latency samples.
    let mut rng = SplitMix64::new(opts.seed ^ 0x5eed);
    let mut per_host = Vec::new();
    let mut per_host_sent = Vec::new();
    let mut to_all = Vec::new();
    let mut to_own = Vec::new();
    let mut post_ms = Vec::new();
    let mut fanout = Vec::new();
    let (mut missing_total, mut extra_total, mut early) = (0usize, 0usize, 0usize);
    for s in 0..opts.samples as u32 {
        let h = (rng.next() % opts.hosts as u64) as usize;
        let own = topo.ports[h].clone();
        let t = match own[(rng.next() % own.len() as u64) as usize] {
            Dp::Net(t, _) | Dp::Vrf(t) => t,
        };
        let dp = draw_dp(&mut rng, t);
        let mac = format!(
            "02:ee:00:{:02x}:{:02x}:{:02x}",
            (s >> 16) & 0xff,
            (s >> 8) & 0xff,
            s & 0xff
        );
        let body = topo.port_body(dp, h, format!("sample-{s}"), Some(mac));
        let c = &clients[(s as usize) % clients.len()];
        let sent = now_ns();
        create(c, Kind::InstancePort, body).await?;
        let ret = now_ns();
        post_ms.push((ret - sent) as f64 / 1e6);
        topo.ports[h].push(dp);
        topo.recompute(h);
        let want = topo.concerned(dp, h);
        fanout.push(want.len() as f64);
        let mut got: HashMap<usize, i128> = HashMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            hosts.drain();
            for (hh, ss, ns) in hosts.ports.drain(..) {
                if ss == s {
                    got.entry(hh).or_insert(ns);
                }
            }
            if want.iter().all(|x| got.contains_key(x)) || tokio::time::Instant::now() > deadline {
                break;
            }
            match tokio::time::timeout_at(deadline, hosts.rx.recv()).await {
                Ok(Some(ev)) => hosts.absorb(ev),
                _ => break,
            }
        }
        // Late and unexpected reporters show up within a short grace period.
        tokio::time::sleep(Duration::from_millis(50)).await;
        hosts.drain();
        for (hh, ss, ns) in hosts.ports.drain(..) {
            if ss == s {
                got.entry(hh).or_insert(ns);
            }
        }
        let missing = want.iter().filter(|x| !got.contains_key(x)).count();
        let extra = got.keys().filter(|x| !want.contains(x)).count();
        missing_total += missing;
        extra_total += extra;
        let mut last = 0.0f64;
        for (hh, ns) in &got {
            if !want.contains(hh) {
                continue;
            }
            if *ns < ret {
                early += 1;
            }
            let ms = ((*ns - ret).max(0)) as f64 / 1e6;
            per_host.push(ms);
            per_host_sent.push((*ns - sent) as f64 / 1e6);
            last = last.max(ms);
            if *hh == h {
                to_own.push(ms);
            }
        }
        if missing == 0 {
            to_all.push(last);
        }
        if s % 20 == 0 {
            eprintln!(
                "sample {s}: {} hosts concerned, last after {last:.1} ms, missing {missing}, unexpected {extra}",
                want.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    phases.push(snap("after samples", &ctls));

    // Reconnect storm.
    let agents_cpu =
        |children: &[Child]| -> f64 { children.iter().map(|c| proc_stat(c.id()).1).sum() };
    let agents_cpu0 = agents_cpu(&children);
    let before_storm: Vec<(u64, u64, usize)> =
        ctls.iter().map(|c| socket_bytes(c.sb.port())).collect();
    hosts.drain();
    let sessions_before = hosts.sessions.clone();
    let storm_hosts: Vec<usize>;
    let storm_start_ns;
    let mut restart_ms = f64::NAN;
    let storm_bytes;
    if opts.storm == "restart" {
        // Every controller is killed (SIGKILL) and started again on the same ports.
        storm_hosts = all.clone();
        storm_start_ns = now_ns();
        for c in ctls.iter_mut() {
            c.kill();
        }
        let t_restart = now_ns();
        for c in ctls.iter_mut() {
            c.spawn(&weft)?;
        }
        for c in &ctls {
            c.wait_healthy(Some(token.clone())).await?;
        }
        restart_ms = (now_ns() - t_restart) as f64 / 1e6;
        hosts
            .wait_synced(
                &storm_hosts,
                |h| sessions_before[h] + 1,
                Duration::from_secs(900),
            )
            .await?;
        let after: Vec<(u64, u64, usize)> =
            ctls.iter().map(|c| socket_bytes(c.sb.port())).collect();
        storm_bytes = after
            .iter()
            .fold((0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2));
    } else if opts.storm == "kill-one" {
        // The last replica dies; its agents fail over to the others.
        let dead = ctls.len() - 1;
        // The hosts whose session is on that replica now (agents move between replicas
        // when one refuses or drops them, so not necessarily those that dialled it first).
        hosts.drain();
        let dead_addr = ctls[dead].sb.to_string();
        storm_hosts = (0..opts.hosts)
            .filter(|h| hosts.controller[*h] == dead_addr)
            .collect();
        storm_start_ns = now_ns();
        ctls[dead].kill();
        hosts
            .wait_synced(
                &storm_hosts,
                |h| sessions_before[h] + 1,
                Duration::from_secs(900),
            )
            .await?;
        let after: Vec<(u64, u64, usize)> = ctls[..dead]
            .iter()
            .map(|c| socket_bytes(c.sb.port()))
            .collect();
        let mut b = (0u64, 0u64, 0usize);
        for (i, a) in after.iter().enumerate() {
            b.0 += a.0.saturating_sub(before_storm[i].0);
            b.1 += a.1.saturating_sub(before_storm[i].1);
            b.2 += a.2;
        }
        storm_bytes = b;
    } else {
        storm_hosts = Vec::new();
        storm_start_ns = now_ns();
        storm_bytes = (0, 0, 0);
    }
    let storm_ms = if storm_hosts.is_empty() {
        f64::NAN
    } else {
        (storm_hosts
            .iter()
            .map(|h| hosts.last_sync_ns[*h])
            .max()
            .unwrap_or(0)
            - storm_start_ns) as f64
            / 1e6
    };
    let mut resync: Vec<f64> = storm_hosts
        .iter()
        .map(|h| (hosts.last_sync_ns[*h] - storm_start_ns) as f64 / 1e6)
        .collect();
    tokio::time::sleep(Duration::from_secs(5)).await;
    hosts.drain();
    phases.push(snap("after storm", &ctls));
    let storm_agents_cpu = agents_cpu(&children) - agents_cpu0;

    // Stop the agents.
    for mut c in children.drain(..) {
        drop(c.stdin.take());
        let _ = c.wait();
    }

    // ---------------------------------------------------------------- report
    let date = humantime_utc(started_at);
    let live = |p: &Phase, r: usize| p.ctl.get(r).copied().unwrap_or((0, 0.0));
    let idle0 = &phases[0];
    let idle1 = &phases[1];
    let idle2 = &phases[2];
    println!();
    println!(
        "## southbound-scale {} hosts, {} replica(s), store {}, {date}",
        opts.hosts,
        opts.replicas,
        if opts.etcd > 0 {
            format!("etcd ({} member(s))", opts.etcd)
        } else {
            "embedded".into()
        }
    );
    println!();
    println!(
        "topology: {} tenants, {} ports on hosts ({} per host) + {} sample ports; load average {}",
        topo.tenants.len(),
        opts.hosts * opts.ports,
        opts.ports,
        opts.samples,
        weft_bench::loadavg()
    );
    println!();
    println!("| figure | value |");
    println!("|---|---|");
    println!("| cold start: all agents connected and in sync | {cold_ms:.0} ms |");
    let cb = cold_bytes
        .iter()
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    println!(
        "| cold start bytes on the wire (TCP, TLS incl., agent→ctl / ctl→agent) | {:.0} / {:.0} KiB ({:.1} KiB per host) |",
        cb.0 as f64 / 1024.0,
        cb.1 as f64 / 1024.0,
        (cb.0 + cb.1) as f64 / 1024.0 / opts.hosts as f64
    );
    let mut rss_total = 0i64;
    for (r, on) in idle_on.iter().enumerate() {
        let (a, _) = live(idle0, r);
        let (b, _) = live(idle1, r);
        let n = (*on).max(1);
        rss_total += b as i64 - a as i64;
        println!(
            "| replica {r} RSS: no agents → {n} idle agents | {a} → {b} KiB ({:.1} KiB per host) |",
            (b as f64 - a as f64) / n as f64
        );
    }
    println!(
        "| controller RSS per connected idle host (all replicas) | **{:.1} KiB** |",
        rss_total as f64 / opts.hosts as f64
    );
    println!(
        "| agents processes RSS (for scale: the simulated hosts, not the controller) | {:.0} MiB ({:.0} KiB per agent) |",
        agents_rss as f64 / 1024.0,
        agents_rss as f64 / opts.hosts as f64
    );
    let idle_s = idle2.at.duration_since(idle1.at).as_secs_f64();
    let idle_cpu: f64 = (0..ctls.len())
        .map(|r| live(idle2, r).1 - live(idle1, r).1)
        .sum();
    println!(
        "| controller CPU, idle (keepalives) | {:.2}% of a core ({:.1} µs/s per host) |",
        idle_cpu / idle_s * 100.0,
        idle_cpu / idle_s / opts.hosts as f64 * 1e6
    );
    let smp = &phases[3];
    let smp_s = smp.at.duration_since(idle2.at).as_secs_f64();
    let smp_cpu: f64 = (0..ctls.len())
        .map(|r| live(smp, r).1 - live(idle2, r).1)
        .sum();
    println!(
        "| controller CPU during the samples ({} port creates in {smp_s:.0} s) | {:.1}% of a core ({:.1} ms per change) |",
        opts.samples,
        smp_cpu / smp_s * 100.0,
        smp_cpu / opts.samples.max(1) as f64 * 1000.0
    );
    println!(
        "| POST /v1/instance-ports latency | {} |",
        summary(&mut post_ms)
    );
    println!("| hosts concerned per change (fan-out) | {} |", {
        fanout.sort_by(f64::total_cmp);
        format!(
            "p50 {:.0} / max {:.0}",
            pct(&fanout, 50.0),
            pct(&fanout, 100.0)
        )
    });
    println!(
        "| POST returned → the port's own agent holds it | {} |",
        summary(&mut to_own)
    );
    println!(
        "| POST returned → each concerned agent holds it | {} |",
        summary(&mut per_host)
    );
    println!(
        "| POST returned → **every** concerned agent holds it (per change) | {} |",
        summary(&mut to_all)
    );
    println!(
        "| POST sent → each concerned agent holds it | {} |",
        summary(&mut per_host_sent)
    );
    println!(
        "| deliveries before the POST returned / missing / unexpected | {early} / {missing_total} / {extra_total} |"
    );
    if !storm_hosts.is_empty() {
        println!(
            "| reconnect storm ({}): {} agents back in sync after | **{storm_ms:.0} ms**{} |",
            opts.storm,
            storm_hosts.len(),
            if restart_ms.is_nan() {
                String::new()
            } else {
                format!(" (controller restart to healthy REST: {restart_ms:.0} ms)")
            }
        );
        resync.sort_by(f64::total_cmp);
        println!(
            "| storm: agents back in sync after p50 / p90 / p99 (agents retry after 0.1-0.2, 0.3-0.6, 0.7-1.4, 1.5-3.0, 3.1-6.2 s) | {:.0} / {:.0} / {:.0} ms |",
            pct(&resync, 50.0),
            pct(&resync, 90.0),
            pct(&resync, 99.0)
        );
        let (a, b) = (&phases[3], &phases[4]);
        // A restarted controller is a new process: its CPU counts from its start. A dead
        // replica's last seconds are not counted.
        let cpu: f64 = if opts.storm == "restart" {
            (0..ctls.len()).map(|r| live(b, r).1).sum()
        } else {
            (0..ctls.len() - 1)
                .map(|r| live(b, r).1 - live(a, r).1)
                .sum()
        };
        println!(
            "| controller CPU for the storm (restarted process from its start, or surviving replicas), until 5 s after | {cpu:.1} s |"
        );
        println!(
            "| agents processes' CPU over the same time (the simulated hosts share the controller's 2 cores) | {storm_agents_cpu:.1} s |"
        );
        println!(
            "| storm bytes on the wire (TCP, TLS incl., agent→ctl / ctl→agent) | {:.0} / {:.0} KiB ({:.1} KiB per reconnected host) |",
            storm_bytes.0 as f64 / 1024.0,
            storm_bytes.1 as f64 / 1024.0,
            (storm_bytes.0 + storm_bytes.1) as f64 / 1024.0 / storm_hosts.len() as f64
        );
        let st = &phases[4];
        for r in 0..ctls.len() {
            let (rss, _) = live(st, r);
            println!("| replica {r} RSS after the storm | {rss} KiB |");
        }
    }
    if etcd.is_some() {
        for (name, a, b) in [("idle", 1, 2), ("samples", 2, 3), ("storm", 3, 4)] {
            let (pa, pb) = (&phases[a], &phases[b]);
            let secs = pb.at.duration_since(pa.at).as_secs_f64();
            let cpu: f64 = pb.etcd.iter().zip(&pa.etcd).map(|(x, y)| x.1 - y.1).sum();
            let rss: Vec<String> = pb.etcd.iter().map(|x| x.0.to_string()).collect();
            let d = |k: &str| {
                pb.metrics.get(k).copied().unwrap_or(0.0)
                    - pa.metrics.get(k).copied().unwrap_or(0.0)
            };
            println!(
                "| etcd during {name} ({secs:.0} s): CPU, RSS, puts/txns/ranges, gRPC bytes in/out (member 0) | {:.1}% of a core, {} KiB, {:.0}/{:.0}/{:.0}, {:.0}/{:.0} KiB |",
                cpu / secs * 100.0,
                rss.join("+"),
                d("etcd_mvcc_put_total"),
                d("etcd_mvcc_txn_total"),
                d("etcd_mvcc_range_total"),
                d("etcd_network_client_grpc_received_bytes_total") / 1024.0,
                d("etcd_network_client_grpc_sent_bytes_total") / 1024.0,
            );
        }
        let m = &phases[4].metrics;
        println!(
            "| etcd watchers / watch streams / db size (member 0, end) | {:.0} / {:.0} / {:.1} MiB |",
            m.get("etcd_debugging_mvcc_watcher_total")
                .copied()
                .unwrap_or(0.0),
            m.get("etcd_debugging_mvcc_watch_stream_total")
                .copied()
                .unwrap_or(0.0),
            m.get("etcd_mvcc_db_total_size_in_bytes")
                .copied()
                .unwrap_or(0.0)
                / 1048576.0
        );
    }
    if keep {
        let p = work.keep();
        eprintln!("kept {}", p.display());
    }
    drop(ctls);
    drop(etcd);
    Ok(())
}

/// `YYYY-MM-DD HH:MM UTC` without a date crate.
fn humantime_utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}
