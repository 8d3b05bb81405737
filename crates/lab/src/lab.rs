//! The [`Lab`]: switch, controllers, hosts, VMs, and the operator's API and
//! CLI (see the crate docs for the picture and the addressing). Set
//! `WEFT_LAB_KEEP=1` to keep the lab's directory (logs, data) after it is dropped.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use weft_client::{Client, Method};
use weft_model::Kind;

use crate::daemon::Daemon;
use crate::etcd::Etcd;
use crate::netns::{self, Netns};
use crate::vlan::VlanRelay;
use crate::{LabError, Result, wait_until};

/// The management bridge (198.51.100.0/24): REST, southbound, the operator.
pub const MGMT_BRIDGE: &str = "brmg";
/// The underlay bridge (192.0.2.0/24): VXLAN between hosts.
pub const UNDERLAY_BRIDGE: &str = "brul";
/// The store bridge (203.0.113.0/24): controllers to etcd.
pub const STORE_BRIDGE: &str = "brst";
/// The operator's address on the management network (REST and CLI calls come from here).
pub const OPERATOR_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 254);
/// Controllers' REST port.
pub const REST_PORT: u16 = 9797;
/// Controllers' southbound port.
pub const SOUTHBOUND_PORT: u16 = 9798;
/// The MTU VMs get unless told otherwise (the model's default port MTU).
pub const VM_MTU: u16 = 1450;

/// A veth from `bridge` in `switch` (end `sw_end`) to `ns` (end `ns_end`), both up.
pub fn veth(switch: &Netns, bridge: &str, sw_end: &str, ns: &Netns, ns_end: &str) -> Result<()> {
    switch.ip(&[
        "link",
        "add",
        sw_end,
        "type",
        "veth",
        "peer",
        "name",
        ns_end,
        "netns",
        ns.name(),
    ])?;
    switch.ip(&["link", "set", sw_end, "master", bridge])?;
    switch.ip(&["link", "set", sw_end, "up"])?;
    ns.ip(&["link", "set", ns_end, "up"])?;
    Ok(())
}

/// How the lab runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `weft` binary (controllers, agents, CLI).
    pub weft: PathBuf,
    /// `WEFT_LOG` of controllers and agents.
    pub log: String,
}

impl Options {
    /// Defaults with `weft` at that path.
    pub fn new(weft: impl Into<PathBuf>) -> Self {
        Options {
            weft: weft.into(),
            log: "info".into(),
        }
    }
}

/// The REST API as the operator calls it (from the switch namespace), blocking.
#[derive(Clone, Debug)]
pub struct Api {
    client: Client,
    token: String,
    rt: tokio::runtime::Handle,
}

impl Api {
    /// The underlying async client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The admin token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The controller's endpoint.
    pub fn endpoint(&self) -> &str {
        self.client.endpoint()
    }

    /// Runs `f` on the lab's runtime (whose threads live in the switch
    /// namespace) and waits for it, for at most 30 s.
    pub fn call<T: Send + 'static>(
        &self,
        f: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Result<T> {
        let task = self
            .rt
            .spawn(async move { tokio::time::timeout(Duration::from_secs(30), f).await });
        self.rt
            .block_on(task)
            .map_err(|e| LabError::Thread(format!("API task: {e}")))?
            .map_err(|_| LabError::Api("no answer within 30 s".into()))
    }

    /// `POST` a new object; returns it.
    pub fn create(&self, kind: Kind, body: Value) -> Result<Value> {
        let c = self.client.clone();
        self.call(async move { c.create(kind, &body).await })?
            .map_err(|e| LabError::Api(format!("create {kind}: {e}")))
    }

    /// `GET` one object.
    pub fn get(&self, kind: Kind, id: &str) -> Result<Value> {
        let (c, id) = (self.client.clone(), id.to_string());
        self.call(async move { c.get(kind, &id).await })?
            .map_err(|e| LabError::Api(format!("get {kind}: {e}")))
    }

    /// `PATCH` one object with a merge patch.
    pub fn update(&self, kind: Kind, id: &str, patch: Value) -> Result<Value> {
        let (c, id) = (self.client.clone(), id.to_string());
        self.call(async move { c.update(kind, &id, &patch, None).await })?
            .map_err(|e| LabError::Api(format!("update {kind}: {e}")))
    }

    /// Lists objects of a kind.
    pub fn list(&self, kind: Kind) -> Result<Vec<Value>> {
        let c = self.client.clone();
        self.call(async move { c.list(kind, &[]).await })?
            .map_err(|e| LabError::Api(format!("list {kind}: {e}")))
    }

    /// Any request; returns the JSON answer.
    pub fn request(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value> {
        let (c, p) = (self.client.clone(), path.to_string());
        let (_, _, v) = self
            .call(async move { c.request(method, &p, &[], body.as_ref(), None).await })?
            .map_err(|e| LabError::Api(format!("{path}: {e}")))?;
        Ok(v)
    }

    /// The id of a new object of `kind` made from `body`.
    pub fn create_id(&self, kind: Kind, body: Value) -> Result<String> {
        let v = self.create(kind, body)?;
        v["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| LabError::Api(format!("created {kind} has no id: {v}")))
    }
}

/// A controller (`weft up`) in its own namespace.
pub struct Controller {
    /// The process.
    pub daemon: Daemon,
    /// Its namespace (`mgmt0`, and `st0` towards etcd when on etcd).
    pub ns: Netns,
    /// Its management address.
    pub mgmt_ip: Ipv4Addr,
    /// Its data directory.
    pub data_dir: PathBuf,
}

impl Controller {
    /// `http://IP:9797`.
    pub fn endpoint(&self) -> String {
        format!("http://{}:{REST_PORT}", self.mgmt_ip)
    }

    /// `IP:9798`.
    pub fn southbound(&self) -> String {
        format!("{}:{SOUTHBOUND_PORT}", self.mgmt_ip)
    }

    /// Starts it again after a kill and waits until it serves.
    pub fn restart(&mut self) -> Result<()> {
        self.daemon.restart()?;
        self.daemon
            .wait_for_log("Stop with Ctrl-C", Duration::from_secs(60))
            .map(drop)
    }
}

/// A host: a namespace with an underlay and a management link, and its agent.
pub struct Host {
    /// Its name (what ports are bound to).
    pub name: String,
    /// The agent, when it runs one.
    pub agent: Option<Daemon>,
    /// Its namespace.
    pub ns: Netns,
    /// Its tunnel (underlay) address.
    pub underlay_ip: Ipv4Addr,
    /// Its management address.
    pub mgmt_ip: Ipv4Addr,
    /// The agent's state directory.
    pub state_dir: PathBuf,
}

/// How a VM's `eth0` is configured.
#[derive(Debug, Clone, Default)]
pub struct VmNet {
    /// Addresses with prefix length, e.g. `10.1.1.5/24`; none for DHCP or VLAN VMs.
    pub addrs: Vec<String>,
    /// `(destination, via)` routes, e.g. `("default", "10.1.1.1")`.
    pub routes: Vec<(String, String)>,
    /// Routes straight out of `eth0` (routed l3vpn ports: the VRF answers every ARP).
    pub device_routes: Vec<String>,
    /// MTU (default [`VM_MTU`]).
    pub mtu: Option<u16>,
}

impl VmNet {
    /// One address and a default route via `gateway`.
    pub fn simple(addr: &str, gateway: Option<&str>) -> VmNet {
        VmNet {
            addrs: vec![addr.to_string()],
            routes: gateway
                .map(|g| vec![("default".to_string(), g.to_string())])
                .unwrap_or_default(),
            ..VmNet::default()
        }
    }

    /// A routed l3vpn port: its address as /32 and a default route out of eth0.
    pub fn routed(ip: &str) -> VmNet {
        VmNet {
            addrs: vec![format!("{ip}/32")],
            device_routes: vec!["default".into()],
            ..VmNet::default()
        }
    }

    /// No configuration (DHCP or VLAN sub-interfaces come later).
    pub fn none() -> VmNet {
        VmNet::default()
    }
}

/// A VM: a namespace holding its port's TAP as `eth0`.
pub struct Vm {
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub ns: Netns,
    /// The host its port is bound to.
    pub host: String,
    /// The instance port (the vif).
    pub port: String,
    /// The port's MAC.
    pub mac: String,
    /// How `eth0` is configured.
    pub net: VmNet,
}

/// The lab. Dropping it stops every process and deletes every namespace.
pub struct Lab {
    opts: Options,
    relays: Vec<VlanRelay>,
    vms: BTreeMap<String, Vm>,
    hosts: BTreeMap<String, Host>,
    controllers: Vec<Controller>,
    etcd: Option<Etcd>,
    rt: Option<tokio::runtime::Runtime>,
    api: Option<Api>,
    /// The switch namespace (bridges, and the operator's address).
    pub switch: Netns,
    dir: tempfile::TempDir,
    next_host: u8,
    next_controller: u8,
}

impl Lab {
    /// Builds the switch (after removing namespaces of dead earlier runs).
    pub fn new(opts: Options) -> Result<Lab> {
        netns::require_root()?;
        netns::remove_stale();
        let dir = tempfile::Builder::new()
            .prefix("weft-lab-")
            .tempdir()
            .map_err(|e| LabError::Io {
                what: "creating the lab directory".into(),
                source: e,
            })?;
        let switch = Netns::new("sw")?;
        for br in [MGMT_BRIDGE, UNDERLAY_BRIDGE, STORE_BRIDGE] {
            switch.ip(&["link", "add", br, "type", "bridge"])?;
            switch.ip(&["link", "set", br, "up"])?;
        }
        switch.ip(&[
            "addr",
            "add",
            &format!("{OPERATOR_IP}/24"),
            "dev",
            MGMT_BRIDGE,
        ])?;
        let path = switch.path();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .on_thread_start(move || {
                // The operator's sockets live in the switch namespace.
                if let Err(e) = netns::enter(&path) {
                    eprintln!("weft-lab: runtime thread cannot enter the switch namespace: {e}");
                }
            })
            .build()
            .map_err(|e| LabError::Io {
                what: "starting the lab's runtime".into(),
                source: e,
            })?;
        Ok(Lab {
            opts,
            relays: Vec::new(),
            vms: BTreeMap::new(),
            hosts: BTreeMap::new(),
            controllers: Vec::new(),
            etcd: None,
            rt: Some(rt),
            api: None,
            switch,
            dir,
            next_host: 0,
            next_controller: 0,
        })
    }

    fn daemon_env(&self) -> Vec<(String, String)> {
        vec![
            ("WEFT_LOG".into(), self.opts.log.clone()),
            ("NO_COLOR".into(), "1".into()),
        ]
    }

    /// The lab's scratch directory (data directories, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn handle(&self) -> tokio::runtime::Handle {
        self.rt
            .as_ref()
            .expect("runtime lives as long as the lab")
            .handle()
            .clone()
    }

    /// Starts `size` etcd members on the store network.
    pub fn start_etcd(&mut self, size: usize) -> Result<&mut Etcd> {
        let e = Etcd::start(&self.switch, STORE_BRIDGE, self.dir.path(), size)?;
        Ok(self.etcd.insert(e))
    }

    /// The etcd members.
    pub fn etcd(&mut self) -> &mut Etcd {
        self.etcd.as_mut().expect("start_etcd first")
    }

    /// Starts a controller in a new namespace: on the embedded store, or on
    /// the lab's etcd when it has one. Returns its index.
    pub fn start_controller(&mut self) -> Result<usize> {
        let k = self.next_controller;
        self.next_controller += 1;
        let ns = Netns::new(&format!("c{k}"))?;
        veth(&self.switch, MGMT_BRIDGE, &format!("mc{k}"), &ns, "mgmt0")?;
        let mgmt_ip = Ipv4Addr::new(198, 51, 100, 1 + k);
        ns.ip(&["addr", "add", &format!("{mgmt_ip}/24"), "dev", "mgmt0"])?;
        let data_dir = self.dir.path().join(format!("controller{k}"));
        let mut argv = vec![
            self.opts.weft.display().to_string(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "up".into(),
            "--listen".into(),
            format!("{mgmt_ip}:{REST_PORT}"),
            "--southbound".into(),
            format!("{mgmt_ip}:{SOUTHBOUND_PORT}"),
        ];
        if let Some(e) = &self.etcd {
            veth(&self.switch, STORE_BRIDGE, &format!("sc{k}"), &ns, "st0")?;
            ns.ip(&[
                "addr",
                "add",
                &format!("{}/24", Ipv4Addr::new(203, 0, 113, 1 + k)),
                "dev",
                "st0",
            ])?;
            argv.extend(["--store".into(), e.store_url()]);
        }
        let mut daemon = Daemon::start(
            format!("controller c{k}"),
            &ns,
            argv,
            self.daemon_env(),
            self.dir.path().join(format!("controller{k}.log")),
        )?;
        daemon.wait_for_log("Stop with Ctrl-C", Duration::from_secs(60))?;
        let c = Controller {
            daemon,
            ns,
            mgmt_ip,
            data_dir,
        };
        if self.api.is_none() {
            let token = std::fs::read_to_string(c.data_dir.join("admin-token"))
                .map_err(|e| LabError::Io {
                    what: "reading the admin token".into(),
                    source: e,
                })?
                .trim()
                .to_string();
            self.api = Some(Api {
                client: Client::new(c.endpoint(), Some(token.clone())),
                token,
                rt: self.handle(),
            });
        }
        self.controllers.push(c);
        Ok(self.controllers.len() - 1)
    }

    /// Controller `k`.
    pub fn controller(&mut self, k: usize) -> &mut Controller {
        &mut self.controllers[k]
    }

    /// The admin API through the first controller.
    pub fn api(&self) -> &Api {
        self.api.as_ref().expect("start a controller first")
    }

    /// Sends the operator's calls ([`api`](Self::api), [`cli`](Self::cli)
    /// and the lab's own) to controller `k` from now on.
    pub fn use_controller(&mut self, k: usize) {
        self.api = Some(self.api_at(k));
    }

    /// The admin API through controller `k`.
    pub fn api_at(&self, k: usize) -> Api {
        let a = self.api();
        Api {
            client: Client::new(self.controllers[k].endpoint(), Some(a.token.clone())),
            token: a.token.clone(),
            rt: a.rt.clone(),
        }
    }

    /// Runs the `weft` CLI as the operator (in the switch namespace, against
    /// the first controller with the admin token) and returns its stdout.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let api = self.api();
        let out = Command::new("ip")
            .args(["netns", "exec", self.switch.name()])
            .arg(&self.opts.weft)
            .args(args)
            .env("WEFT_ENDPOINT", api.endpoint())
            .env("WEFT_TOKEN", &api.token)
            .env("WEFT_DATA_DIR", self.dir.path().join("no-local-controller"))
            .output()
            .map_err(|e| LabError::Io {
                what: "running the weft CLI".into(),
                source: e,
            })?;
        if !out.status.success() {
            return Err(LabError::Command {
                command: format!("weft {}", args.join(" ")),
                detail: format!(
                    "{}: {}{}",
                    out.status,
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn new_host_ns(&mut self, name: &str) -> Result<Host> {
        let i = self.next_host;
        self.next_host += 1;
        let ns = Netns::new(&format!("h{i}"))?;
        veth(&self.switch, UNDERLAY_BRIDGE, &format!("uh{i}"), &ns, "ul0")?;
        veth(&self.switch, MGMT_BRIDGE, &format!("mh{i}"), &ns, "mgmt0")?;
        let underlay_ip = Ipv4Addr::new(192, 0, 2, 10 + i);
        let mgmt_ip = Ipv4Addr::new(198, 51, 100, 10 + i);
        ns.ip(&["addr", "add", &format!("{underlay_ip}/24"), "dev", "ul0"])?;
        ns.ip(&["addr", "add", &format!("{mgmt_ip}/24"), "dev", "mgmt0"])?;
        let state_dir = self.dir.path().join(format!("host-{name}"));
        std::fs::create_dir_all(&state_dir).map_err(|e| LabError::Io {
            what: format!("creating {}", state_dir.display()),
            source: e,
        })?;
        Ok(Host {
            name: name.to_string(),
            agent: None,
            ns,
            underlay_ip,
            mgmt_ip,
            state_dir,
        })
    }

    /// Adds a host running `weft agent`: a join token from the API, `weft
    /// host enroll` against the first of `controllers` (indexes), then the
    /// agent knowing all of them in that order, plus `extra` agent
    /// arguments. Waits until its view is in sync.
    pub fn add_host(&mut self, name: &str, controllers: &[usize], extra: &[&str]) -> Result<()> {
        let mut h = self.new_host_ns(name)?;
        let sbs: Vec<String> = controllers
            .iter()
            .map(|k| self.controllers[*k].southbound())
            .collect();
        let t = self.api().request(
            Method::POST,
            "/v1/join-tokens",
            Some(json!({"host": name, "ttl_seconds": 600})),
        )?;
        let token = t["token"]
            .as_str()
            .ok_or_else(|| LabError::Api(format!("join token answer without token: {t}")))?;
        let weft = self.opts.weft.display().to_string();
        let state = h.state_dir.display().to_string();
        h.ns.exec(&[
            "timeout",
            "60",
            &weft,
            "host",
            "enroll",
            "--controller",
            &sbs[0],
            "--token",
            token,
            "--name",
            name,
            "--state-dir",
            &state,
        ])?;
        let mut argv = vec![
            weft,
            "agent".into(),
            "--controller".into(),
            sbs.join(","),
            "--state-dir".into(),
            state,
            "--tunnel-ip".into(),
            h.underlay_ip.to_string(),
        ];
        argv.extend(extra.iter().map(|s| s.to_string()));
        let mut agent = Daemon::start(
            format!("agent {name}"),
            &h.ns,
            argv,
            self.daemon_env(),
            self.dir.path().join(format!("agent-{name}.log")),
        )?;
        agent.wait_for_log("view in sync", Duration::from_secs(30))?;
        h.agent = Some(agent);
        self.hosts.insert(name.to_string(), h);
        Ok(())
    }

    /// Adds a host namespace with its links and addresses but no agent (for
    /// another vendor's VTEP, set up by the caller).
    pub fn add_bare_host(&mut self, name: &str) -> Result<&Host> {
        let h = self.new_host_ns(name)?;
        Ok(self.hosts.entry(name.to_string()).or_insert(h))
    }

    /// A host.
    pub fn host(&self, name: &str) -> &Host {
        &self.hosts[name]
    }

    /// A host, mutably (its agent).
    pub fn host_mut(&mut self, name: &str) -> &mut Host {
        self.hosts.get_mut(name).expect("no such host")
    }

    /// Kills a host's agent (SIGKILL): its TAPs vanish with it.
    pub fn kill_agent(&mut self, host: &str) {
        if let Some(a) = &mut self.host_mut(host).agent {
            a.kill();
        }
    }

    /// Starts a host's agent again (after [`kill_agent`](Self::kill_agent)),
    /// waits until it forwards from its local view again, and plugs the
    /// fresh TAPs back into the host's VMs. Returns the time until every
    /// VM's `eth0` was back.
    pub fn restart_agent(&mut self, host: &str) -> Result<Duration> {
        let start = std::time::Instant::now();
        let a = self
            .host_mut(host)
            .agent
            .as_mut()
            .ok_or_else(|| LabError::Api(format!("host {host} runs no agent")))?;
        a.restart()?;
        a.wait_for_log("forwarder runs the new program", Duration::from_secs(30))?;
        let names: Vec<String> = self
            .vms
            .values()
            .filter(|v| v.host == host)
            .map(|v| v.name.clone())
            .collect();
        for n in names {
            self.plug(&n)?;
        }
        Ok(start.elapsed())
    }

    /// Creates a VM namespace for instance port `port` (bound to `host`),
    /// waits for the TAP the host's forwarder makes for it, moves it in as
    /// `eth0` with the port's MAC, and configures `net`.
    pub fn add_vm(&mut self, name: &str, host: &str, port: &str, net: VmNet) -> Result<()> {
        let p = self.api().get(Kind::InstancePort, port)?;
        let mac = p["mac"]
            .as_str()
            .ok_or_else(|| LabError::Api(format!("port {port} has no mac: {p}")))?
            .to_string();
        let ns = Netns::new(&format!("v{}", self.vms.len()))?;
        self.vms.insert(
            name.to_string(),
            Vm {
                name: name.to_string(),
                ns,
                host: host.to_string(),
                port: port.to_string(),
                mac,
                net,
            },
        );
        self.plug(name)
    }

    /// Moves the VM's TAP from its host into it as `eth0` and configures it
    /// (again after an agent restart: the old TAP died with the agent).
    pub fn plug(&self, name: &str) -> Result<()> {
        let vm = &self.vms[name];
        let host = &self.hosts[&vm.host];
        let tap = weft_dataplane::tap_name(&vm.port);
        wait_until(
            &format!("TAP {tap} of {name} on {}", vm.host),
            Duration::from_secs(20),
            || Ok(host.ns.ip(&["-o", "link", "show", "dev", &tap]).is_ok()),
        )?;
        host.ns.ip(&["link", "set", &tap, "netns", vm.ns.name()])?;
        let ns = &vm.ns;
        ns.ip(&["link", "set", &tap, "name", "eth0"])?;
        let mtu = vm.net.mtu.unwrap_or(VM_MTU).to_string();
        ns.ip(&["link", "set", "eth0", "address", &vm.mac, "mtu", &mtu])?;
        ns.ip(&["link", "set", "eth0", "up"])?;
        for a in &vm.net.addrs {
            ns.ip(&["addr", "add", a, "dev", "eth0"])?;
        }
        for r in &vm.net.device_routes {
            ns.ip(&["route", "add", r, "dev", "eth0"])?;
        }
        for (dst, via) in &vm.net.routes {
            ns.ip(&["route", "add", dst, "via", via])?;
        }
        Ok(())
    }

    /// A VM.
    pub fn vm(&self, name: &str) -> &Vm {
        self.vms
            .get(name)
            .unwrap_or_else(|| panic!("no VM {name} in the lab"))
    }

    /// A VM's namespace.
    pub fn vm_ns(&self, name: &str) -> &Netns {
        &self.vm(name).ns
    }

    /// Gives a VM VLAN sub-interfaces `sf<vlan>` with these addresses (see [`crate::vlan`]).
    pub fn vlan_relay(&mut self, vm: &str, vlans: &[(u16, &str)]) -> Result<()> {
        let v = &self.vms[vm];
        let r = VlanRelay::start(&v.ns, &v.mac, vlans)?;
        self.relays.push(r);
        Ok(())
    }

    /// Creates an instance port with one binding; returns its id.
    pub fn port(&self, project: &str, name: &str, host: &str, binding: Value) -> Result<String> {
        self.api().create_id(
            Kind::InstancePort,
            json!({"project": project, "name": name, "host": host, "bindings": [binding]}),
        )
    }

    /// Waits until the API says an instance port's status is `status`.
    pub fn wait_port_status(&self, port: &str, status: &str) -> Result<Duration> {
        wait_until(
            &format!("port {port} status {status}"),
            Duration::from_secs(20),
            || Ok(self.api().get(Kind::InstancePort, port)?["status"] == status),
        )
    }

    /// Prints the end of every daemon's log to stderr (for failed tests).
    pub fn dump_logs(&self, lines: usize) {
        let mut daemons: Vec<&Daemon> = self.controllers.iter().map(|c| &c.daemon).collect();
        daemons.extend(self.hosts.values().filter_map(|h| h.agent.as_ref()));
        for d in daemons {
            eprintln!(
                "----- {} ({}) -----\n{}",
                d.name(),
                d.log_path().display(),
                d.log_tail(lines)
            );
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs(40);
        }
        // Relays and agents first (TAPs go with them), then VMs, hosts,
        // controllers, etcd, the runtime; the switch and directory last.
        self.relays.clear();
        for h in self.hosts.values_mut() {
            if let Some(a) = &mut h.agent {
                a.stop(Duration::from_secs(2));
            }
        }
        self.vms.clear();
        self.hosts.clear();
        for c in &mut self.controllers {
            c.daemon.stop(Duration::from_secs(2));
        }
        self.controllers.clear();
        self.etcd = None;
        self.api = None;
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
        if std::env::var_os("WEFT_LAB_KEEP").is_some() {
            self.dir.disable_cleanup(true);
            eprintln!(
                "weft-lab: logs and data kept in {}",
                self.dir.path().display()
            );
        }
    }
}
