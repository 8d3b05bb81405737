//! The resource commands of the CLI: one subcommand per resource kind, each
//! with create / list / show / update / delete. References (networks,
//! interfaces, security groups, ...) may be given by name or id.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};
use weft_client::Client;
use weft_model::Kind;

use crate::Opts;
use crate::output::{Format, print_list, print_object};

/// Resource commands.
#[derive(Subcommand, Debug)]
pub enum ResourceCmd {
    /// Projects (tenants).
    Project {
        #[command(subcommand)]
        verb: Verb<ProjectCreate>,
    },
    /// Instance ports (vNICs).
    #[command(visible_alias = "instance-port")]
    Port {
        #[command(subcommand)]
        verb: Verb<PortCreate>,
    },
    /// Interfaces: untagged or VLAN slices of a port.
    Interface {
        #[command(subcommand)]
        verb: Verb<InterfaceCreate>,
    },
    /// L2 networks with their subnets.
    #[command(visible_alias = "l2-network")]
    Network {
        #[command(subcommand)]
        verb: Verb<NetworkCreate>,
    },
    /// L3 VPNs (VRFs).
    L3vpn {
        #[command(subcommand)]
        verb: Verb<L3vpnCreate>,
    },
    /// Security groups and their rules.
    #[command(visible_alias = "sg")]
    SecurityGroup {
        #[command(subcommand)]
        verb: SgVerb,
    },
    /// Inter-site links.
    SiteLink {
        #[command(subcommand)]
        verb: Verb<SiteLinkCreate>,
    },
    /// Service ports: bindings of interfaces to services.
    ServicePort {
        #[command(subcommand)]
        verb: Verb<ServicePortCreate>,
    },
    /// API tokens.
    Token {
        #[command(subcommand)]
        verb: TokenVerb,
    },
    /// Show the token in use: its project and roles.
    Whoami,
    /// Trace a packet from a port through the compiled pipelines.
    ///
    /// EXPRESSION sets packet fields, OVN-style, joined with `&&`:
    /// `ip4.dst == 10.1.1.6 && tcp.dst == 80`, `icmp4 && ip4.dst == 10.3.7.1`,
    /// `udp && udp.dst == 53`, `ip.ttl == 1`, `ct.est` (pretend an
    /// established connection). Unset fields come from the source port.
    Trace {
        /// Source: a service port id or name, or an instance port (name or id) with one binding.
        #[arg(long)]
        from: String,
        /// The packet, e.g. 'ip4.dst == 10.1.1.6 && tcp.dst == 80'.
        expression: String,
    },
}

/// The verbs every resource has.
#[derive(Subcommand, Debug)]
pub enum Verb<C: Args> {
    /// Create one.
    Create(C),
    /// List them.
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show one.
    Show {
        /// Name or id.
        id: String,
    },
    /// Change fields (a JSON merge patch).
    Update(UpdateArgs),
    /// Delete one.
    #[command(visible_alias = "rm")]
    Delete {
        /// Name or id.
        id: String,
    },
}

/// Options of `list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only objects whose FIELD equals VALUE, e.g. --filter host=compute-1.
    #[arg(long = "filter", short = 'f', value_name = "FIELD=VALUE")]
    pub filters: Vec<String>,
}

/// Options of `update`.
#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// Name or id.
    pub id: String,
    /// Set FIELD to VALUE (VALUE is parsed as JSON when it is JSON, else a string; `null` removes).
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    pub set: Vec<String>,
    /// A JSON merge patch to apply.
    #[arg(long)]
    pub json: Option<String>,
    /// Only if the object is still at this revision.
    #[arg(long)]
    pub if_match: Option<u64>,
}

/// Free-form fields for any create.
#[derive(Args, Debug, Default)]
pub struct Extra {
    /// Extra body fields as a JSON object, merged last.
    #[arg(long)]
    pub json: Option<String>,
}

/// `project create`.
#[derive(Args, Debug)]
pub struct ProjectCreate {
    /// Unique name.
    pub name: String,
    /// Description.
    #[arg(long, default_value = "")]
    pub description: String,
}

/// `port create`.
#[derive(Args, Debug)]
pub struct PortCreate {
    /// Name.
    pub name: String,
    /// MAC (generated when absent).
    #[arg(long)]
    pub mac: Option<String>,
    /// MTU.
    #[arg(long)]
    pub mtu: Option<u16>,
    /// Host the port is bound to.
    #[arg(long)]
    pub host: Option<String>,
    /// Also bind the port's untagged interface to this network or l3vpn.
    #[arg(long, visible_alias = "service")]
    pub network: Option<String>,
    /// Fixed IP on that service (repeatable).
    #[arg(long = "ip")]
    pub ips: Vec<String>,
    /// Security group for that binding (repeatable).
    #[arg(long = "sg")]
    pub security_groups: Vec<String>,
    /// hub or spoke (l3vpn binding).
    #[arg(long)]
    pub role: Option<String>,
    #[command(flatten)]
    pub extra: Extra,
}

/// `interface create`.
#[derive(Args, Debug)]
pub struct InterfaceCreate {
    /// Name.
    pub name: String,
    /// Parent instance port or interface.
    #[arg(long)]
    pub parent: String,
    /// VLAN id (absent: untagged).
    #[arg(long)]
    pub vlan: Option<u16>,
    #[command(flatten)]
    pub extra: Extra,
}

/// `network create`.
#[derive(Args, Debug)]
pub struct NetworkCreate {
    /// Name.
    pub name: String,
    /// Subnet CIDR (repeatable).
    #[arg(long = "subnet")]
    pub subnets: Vec<String>,
    /// Turn DHCP off on the subnets.
    #[arg(long)]
    pub no_dhcp: bool,
    /// DNS server handed out by DHCP (repeatable).
    #[arg(long = "dns")]
    pub dns: Vec<String>,
    /// VNI (allocated when absent).
    #[arg(long)]
    pub vni: Option<u32>,
    /// Provider mapping PHYSNET:TYPE[:SEGMENTATION_ID], e.g. physnet1:vlan:100.
    #[arg(long)]
    pub provider: Option<String>,
    #[command(flatten)]
    pub extra: Extra,
}

/// `l3vpn create`.
#[derive(Args, Debug)]
pub struct L3vpnCreate {
    /// Name.
    pub name: String,
    /// Route distinguisher, e.g. 64512:100.
    #[arg(long)]
    pub rd: String,
    /// Route target imported and exported (repeatable).
    #[arg(long = "rt")]
    pub rts: Vec<String>,
    /// Route target imported only (repeatable).
    #[arg(long = "import-rt")]
    pub import_rts: Vec<String>,
    /// Route target exported only (repeatable).
    #[arg(long = "export-rt")]
    pub export_rts: Vec<String>,
    /// VNI (allocated when absent).
    #[arg(long)]
    pub vni: Option<u32>,
    /// Attach a subnet: its id, or NETWORK (all its subnets), or NETWORK/CIDR.
    #[arg(long = "subnet")]
    pub subnets: Vec<String>,
    /// Static route PREFIX=NEXTHOP[,NEXTHOP...], a next hop optionally IP*WEIGHT.
    #[arg(long = "route")]
    pub routes: Vec<String>,
    /// load-split or fail-over for IPs held by several ports.
    #[arg(long)]
    pub anycast_mode: Option<String>,
    #[command(flatten)]
    pub extra: Extra,
}

/// `site-link create`.
#[derive(Args, Debug)]
pub struct SiteLinkCreate {
    /// Name.
    pub name: String,
    /// The local site.
    #[arg(long)]
    pub site: String,
    /// The remote site.
    #[arg(long)]
    pub remote_site: String,
    /// Local underlay endpoint.
    #[arg(long)]
    pub local_endpoint: String,
    /// Remote underlay endpoint.
    #[arg(long)]
    pub remote_endpoint: String,
    /// Service carried (network or l3vpn; repeatable).
    #[arg(long = "service")]
    pub services: Vec<String>,
    #[command(flatten)]
    pub extra: Extra,
}

/// `service-port create`.
#[derive(Args, Debug)]
pub struct ServicePortCreate {
    /// Name.
    pub name: String,
    /// The interface to bind.
    #[arg(long)]
    pub interface: String,
    /// The service (network or l3vpn).
    #[arg(long)]
    pub service: String,
    /// Fixed IP (repeatable).
    #[arg(long = "ip")]
    pub ips: Vec<String>,
    /// Security group (repeatable).
    #[arg(long = "sg")]
    pub security_groups: Vec<String>,
    /// hub or spoke (l3vpn).
    #[arg(long)]
    pub role: Option<String>,
    /// Allowed address pair CIDR (repeatable).
    #[arg(long = "allowed-address")]
    pub allowed: Vec<String>,
    /// Disable anti-spoofing and security groups.
    #[arg(long)]
    pub no_port_security: bool,
    /// Anycast fail-over preference.
    #[arg(long)]
    pub preference: Option<u32>,
    #[command(flatten)]
    pub extra: Extra,
}

/// Security group verbs, with rule management.
#[derive(Subcommand, Debug)]
pub enum SgVerb {
    /// Create a group.
    Create {
        /// Name.
        name: String,
        /// No connection tracking (replies need their own rules).
        #[arg(long)]
        stateless: bool,
    },
    /// List groups.
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show a group with its rules.
    Show {
        /// Name or id.
        id: String,
    },
    /// Change fields.
    Update(UpdateArgs),
    /// Delete a group.
    #[command(visible_alias = "rm")]
    Delete {
        /// Name or id.
        id: String,
    },
    /// Add a rule.
    RuleAdd(RuleAdd),
    /// Remove a rule by id.
    RuleDelete {
        /// Group name or id.
        group: String,
        /// Rule id.
        rule: String,
    },
}

/// `security-group rule-add`.
#[derive(Args, Debug)]
pub struct RuleAdd {
    /// Group name or id.
    pub group: String,
    /// ingress or egress.
    #[arg(long)]
    pub direction: String,
    /// IPv4 or IPv6.
    #[arg(long, default_value = "IPv4")]
    pub ethertype: String,
    /// tcp, udp, icmp, icmpv6 or a number.
    #[arg(long)]
    pub protocol: Option<String>,
    /// Port or range MIN-MAX.
    #[arg(long)]
    pub port: Option<String>,
    /// ICMP type.
    #[arg(long)]
    pub icmp_type: Option<u8>,
    /// Remote prefix.
    #[arg(long)]
    pub remote_prefix: Option<String>,
    /// Remote group (name or id).
    #[arg(long)]
    pub remote_group: Option<String>,
    /// allow, reject or drop.
    #[arg(long, default_value = "allow")]
    pub action: String,
    /// Log matches.
    #[arg(long)]
    pub log: bool,
}

/// Token verbs.
#[derive(Subcommand, Debug)]
pub enum TokenVerb {
    /// Create a token (the secret is printed once).
    Create {
        /// Comma-separated roles (default member).
        #[arg(long, value_delimiter = ',')]
        roles: Vec<String>,
        /// Description.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List tokens.
    List,
    /// Revoke a token.
    Delete {
        /// Token id.
        id: String,
    },
}

/// Builds the client: token from the flag/env, else the local admin token.
/// (Hook: shared with `weft bgp`.)
pub(crate) fn client(opts: &Opts) -> Result<Client> {
    let token = match &opts.token {
        Some(t) => Some(t.clone()),
        None => std::fs::read_to_string(opts.data_dir.join("admin-token"))
            .ok()
            .map(|s| s.trim().to_string()),
    };
    if token.is_none() {
        bail!(
            "no API token: pass --token, set WEFT_TOKEN, or run in the directory holding {}/admin-token",
            opts.data_dir.display()
        );
    }
    Ok(Client::new(&opts.endpoint, token))
}

fn merge_extra(body: &mut Value, extra: &Extra) -> Result<()> {
    if let Some(j) = &extra.json {
        let patch: Value = serde_json::from_str(j).context("--json is not valid JSON")?;
        weft_model::merge_patch(body, &patch);
    }
    Ok(())
}

fn parse_value(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
}

fn split_kv(s: &str, what: &str) -> Result<(String, String)> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .with_context(|| format!("{what} {s:?} is not FIELD=VALUE"))
}

/// Resolution of names to ids, within the chosen project when there is one.
struct Ctx<'a> {
    c: Client,
    opts: &'a Opts,
}

impl Ctx<'_> {
    async fn id(&self, kind: Kind, name_or_id: &str) -> Result<String> {
        if let Ok(v) = self.c.get(kind, name_or_id).await {
            return Ok(v["id"].as_str().unwrap_or(name_or_id).to_string());
        }
        let mut filters = vec![("name", name_or_id)];
        if let Some(p) = &self.opts.project {
            filters.push(("project", p.as_str()));
        }
        let found = self.c.list(kind, &filters).await?;
        match found.as_slice() {
            [one] => Ok(one["id"].as_str().unwrap_or_default().to_string()),
            [] => bail!("no {kind} named or with id {name_or_id:?}"),
            many => bail!(
                "{} {kind}s are named {name_or_id:?}; give an id or --project: {}",
                many.len(),
                many.iter()
                    .filter_map(|v| v["id"].as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// A service (network or l3vpn) by name or id.
    async fn service(&self, name_or_id: &str) -> Result<String> {
        match self.id(Kind::L2Network, name_or_id).await {
            Ok(id) => Ok(id),
            Err(_) => self
                .id(Kind::L3vpn, name_or_id)
                .await
                .with_context(|| format!("no l2-network or l3vpn named or with id {name_or_id:?}")),
        }
    }

    async fn ids(&self, kind: Kind, names: &[String]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for n in names {
            out.push(self.id(kind, n).await?);
        }
        Ok(out)
    }

    fn with_project(&self, mut body: Value) -> Value {
        if let (Some(p), Value::Object(m)) = (&self.opts.project, &mut body) {
            m.entry("project").or_insert(Value::String(p.clone()));
        }
        body
    }

    /// Subnet ids from `--subnet` arguments: an id, NETWORK or NETWORK/CIDR.
    async fn subnets(&self, args: &[String]) -> Result<Vec<String>> {
        let mut out = Vec::new();
        for a in args {
            let (net, cidr) = match a.split_once('/') {
                Some((n, rest)) if !n.contains('.') && !n.contains(':') => {
                    (n.to_string(), Some(rest.to_string()))
                }
                _ => (a.clone(), None),
            };
            if let Ok(id) = self.id(Kind::L2Network, &net).await {
                let v = self.c.get(Kind::L2Network, &id).await?;
                let subnets = v["subnets"].as_array().cloned().unwrap_or_default();
                let picked: Vec<String> = subnets
                    .iter()
                    .filter(|s| {
                        cidr.as_deref()
                            .is_none_or(|c| s["cidr"].as_str() == Some(c))
                    })
                    .filter_map(|s| s["id"].as_str().map(str::to_string))
                    .collect();
                if picked.is_empty() {
                    bail!("network {net} has no subnet {}", cidr.unwrap_or_default());
                }
                out.extend(picked);
            } else {
                out.push(a.clone());
            }
        }
        Ok(out)
    }
}

fn fixed_ips(ips: &[String]) -> Option<Value> {
    (!ips.is_empty()).then(|| Value::Array(ips.iter().map(|ip| json!({"ip": ip})).collect()))
}

/// Runs a resource command.
pub async fn run(opts: &Opts, cmd: &ResourceCmd) -> Result<()> {
    let ctx = Ctx {
        c: client(opts)?,
        opts,
    };
    let f = opts.output;
    match cmd {
        ResourceCmd::Whoami => print_object(f, &ctx.c.whoami().await?),
        ResourceCmd::Trace { from, expression } => {
            let (_, _, v) = ctx
                .c
                .request(
                    reqwest_method("POST"),
                    "/v1/trace",
                    &[],
                    Some(&json!({"from": from, "expression": expression})),
                    None,
                )
                .await?;
            match f {
                Format::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                Format::Table => print!("{}", v["text"].as_str().unwrap_or_default()),
            }
        }
        ResourceCmd::Token { verb } => match verb {
            TokenVerb::Create { roles, description } => {
                let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
                let v = ctx
                    .c
                    .create_token(opts.project.as_deref(), &roles, description)
                    .await?;
                print_object(f, &v);
                if f == Format::Table {
                    eprintln!("The token secret is shown only now; keep it safe.");
                }
            }
            TokenVerb::List => {
                let (_, _, v) = ctx
                    .c
                    .request(reqwest_method("GET"), "/v1/tokens", &[], None, None)
                    .await?;
                let items = v["items"].as_array().cloned().unwrap_or_default();
                if f == Format::Json {
                    println!("{}", serde_json::to_string_pretty(&items)?);
                } else {
                    for t in items {
                        println!(
                            "{}  project={}  roles={}  {}",
                            t["id"].as_str().unwrap_or(""),
                            t["project"].as_str().unwrap_or("-"),
                            crate::output::cell(&t["roles"]),
                            t["description"].as_str().unwrap_or("")
                        );
                    }
                }
            }
            TokenVerb::Delete { id } => {
                ctx.c
                    .request(reqwest_method("DELETE"), &format!("/v1/tokens/{id}"), &[], None, None)
                    .await?;
                println!("token {id} revoked");
            }
        },
        ResourceCmd::Project { verb } => {
            generic(&ctx, Kind::Project, verb, |c| {
                let c = c.clone_body();
                async move { Ok(c) }
            })
            .await?
        }
        ResourceCmd::Port { verb } => {
            generic(&ctx, Kind::InstancePort, verb, |c: &PortCreate| async {
                let mut body = json!({"name": c.name});
                if let Some(m) = &c.mac {
                    body["mac"] = json!(m);
                }
                if let Some(m) = c.mtu {
                    body["mtu"] = json!(m);
                }
                if let Some(h) = &c.host {
                    body["host"] = json!(h);
                }
                if let Some(n) = &c.network {
                    let mut b = json!({"service": ctx.service(n).await?});
                    if let Some(ips) = fixed_ips(&c.ips) {
                        b["fixed_ips"] = ips;
                    }
                    b["security_groups"] = json!(ctx.ids(Kind::SecurityGroup, &c.security_groups).await?);
                    if let Some(r) = &c.role {
                        b["role"] = json!(r);
                    }
                    body["bindings"] = json!([b]);
                } else if !c.ips.is_empty() || !c.security_groups.is_empty() || c.role.is_some() {
                    bail!("--ip, --sg and --role need --network (the service to bind)");
                }
                merge_extra(&mut body, &c.extra)?;
                Ok(body)
            })
            .await?
        }
        ResourceCmd::Interface { verb } => {
            generic(&ctx, Kind::Interface, verb, |c: &InterfaceCreate| async {
                let parent = match ctx.id(Kind::InstancePort, &c.parent).await {
                    Ok(id) => id,
                    Err(_) => ctx.id(Kind::Interface, &c.parent).await?,
                };
                let mut body = json!({"name": c.name, "parent": parent});
                if let Some(v) = c.vlan {
                    body["vlan"] = json!(v);
                }
                merge_extra(&mut body, &c.extra)?;
                Ok(body)
            })
            .await?
        }
        ResourceCmd::Network { verb } => {
            generic(&ctx, Kind::L2Network, verb, |c: &NetworkCreate| async {
                let subnets: Vec<Value> = c
                    .subnets
                    .iter()
                    .map(|cidr| {
                        let mut s = json!({"cidr": cidr});
                        if c.no_dhcp {
                            s["dhcp"] = json!(false);
                        }
                        if !c.dns.is_empty() {
                            s["dns_servers"] = json!(c.dns);
                        }
                        s
                    })
                    .collect();
                let mut body = json!({"name": c.name, "subnets": subnets});
                if let Some(v) = c.vni {
                    body["vni"] = json!(v);
                }
                if let Some(p) = &c.provider {
                    let parts: Vec<&str> = p.split(':').collect();
                    let (phys, ty, seg) = match parts.as_slice() {
                        [phys, ty] => (*phys, *ty, None),
                        [phys, ty, seg] => (
                            *phys,
                            *ty,
                            Some(seg.parse::<u32>().with_context(|| format!("segmentation id {seg:?} is not a number"))?),
                        ),
                        _ => bail!("--provider {p:?} is not PHYSNET:TYPE[:SEGMENTATION_ID]"),
                    };
                    body["provider"] = json!({"physical_network": phys, "network_type": ty, "segmentation_id": seg});
                }
                merge_extra(&mut body, &c.extra)?;
                Ok(body)
            })
            .await?
        }
        ResourceCmd::L3vpn { verb } => {
            generic(&ctx, Kind::L3vpn, verb, |c: &L3vpnCreate| async {
                let mut routes = Vec::new();
                for r in &c.routes {
                    let (prefix, nhs) = split_kv(r, "--route")?;
                    let nexthops: Vec<Value> = nhs
                        .split(',')
                        .map(|nh| match nh.split_once('*') {
                            Some((ip, w)) => Ok(json!({"ip": ip, "weight": w.parse::<u32>().with_context(|| format!("weight {w:?} is not a number"))?})),
                            None => Ok(json!({"ip": nh})),
                        })
                        .collect::<Result<_>>()?;
                    routes.push(json!({"prefix": prefix, "nexthops": nexthops}));
                }
                let mut body = json!({
                    "name": c.name,
                    "route_distinguisher": c.rd,
                    "route_targets": c.rts,
                    "import_targets": c.import_rts,
                    "export_targets": c.export_rts,
                    "subnets": ctx.subnets(&c.subnets).await?,
                    "static_routes": routes,
                });
                if let Some(v) = c.vni {
                    body["vni"] = json!(v);
                }
                if let Some(m) = &c.anycast_mode {
                    body["anycast_mode"] = json!(m);
                }
                merge_extra(&mut body, &c.extra)?;
                Ok(body)
            })
            .await?
        }
        ResourceCmd::SiteLink { verb } => {
            generic(&ctx, Kind::SiteLink, verb, |c: &SiteLinkCreate| async {
                let mut services = Vec::new();
                for s in &c.services {
                    services.push(ctx.service(s).await?);
                }
                let mut body = json!({
                    "name": c.name, "site": c.site, "remote_site": c.remote_site,
                    "local_endpoint": c.local_endpoint, "remote_endpoint": c.remote_endpoint,
                    "services": services,
                });
                merge_extra(&mut body, &c.extra)?;
                Ok(body)
            })
            .await?
        }
        ResourceCmd::ServicePort { verb } => {
            generic(&ctx, Kind::ServicePort, verb, |c: &ServicePortCreate| async {
                let mut body = json!({
                    "name": c.name,
                    "interface": ctx.id(Kind::Interface, &c.interface).await?,
                    "service": ctx.service(&c.service).await?,
                    "security_groups": ctx.ids(Kind::SecurityGroup, &c.security_groups).await?,
                    "allowed_address_pairs": c.allowed.iter().map(|a| json!({"ip": a})).collect::<Vec<_>>(),
                });
                if let Some(ips) = fixed_ips(&c.ips) {
                    body["fixed_ips"] = ips;
                }
                if let Some(r) = &c.role {
                    body["role"] = json!(r);
                }
                if c.no_port_security {
                    body["port_security"] = json!(false);
                }
                if let Some(p) = c.preference {
                    body["preference"] = json!(p);
                }
                merge_extra(&mut body, &c.extra)?;
                Ok(body)
            })
            .await?
        }
        ResourceCmd::SecurityGroup { verb } => security_group(&ctx, verb, f).await?,
    }
    Ok(())
}

fn reqwest_method(m: &str) -> weft_client::Method {
    weft_client::Method::from_bytes(m.as_bytes()).expect("valid method")
}

trait CloneBody {
    fn clone_body(&self) -> Value;
}

impl CloneBody for ProjectCreate {
    fn clone_body(&self) -> Value {
        json!({"name": self.name, "description": self.description})
    }
}

async fn generic<'a, C, F, Fut>(
    ctx: &'a Ctx<'a>,
    kind: Kind,
    verb: &'a Verb<C>,
    build: F,
) -> Result<()>
where
    C: Args,
    F: FnOnce(&'a C) -> Fut,
    Fut: std::future::Future<Output = Result<Value>>,
{
    let f = ctx.opts.output;
    match verb {
        Verb::Create(c) => {
            let body = build(c).await?;
            let body = if kind == Kind::Project {
                body
            } else {
                ctx.with_project(body)
            };
            let v = ctx.c.create(kind, &body).await?;
            print_object(f, &v);
        }
        Verb::List(l) => {
            let mut filters: Vec<(String, String)> = l
                .filters
                .iter()
                .map(|s| split_kv(s, "--filter"))
                .collect::<Result<_>>()?;
            if let Some(p) = &ctx.opts.project
                && !filters.iter().any(|(k, _)| k == "project")
            {
                filters.push(("project".into(), p.clone()));
            }
            let refs: Vec<(&str, &str)> = filters
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let items = ctx.c.list(kind, &refs).await?;
            print_list(f, kind, &items);
        }
        Verb::Show { id } => {
            let id = ctx.id(kind, id).await?;
            print_object(f, &ctx.c.get(kind, &id).await?);
        }
        Verb::Update(u) => {
            let id = ctx.id(kind, &u.id).await?;
            let mut patch = Value::Object(Map::new());
            for s in &u.set {
                let (k, v) = split_kv(s, "--set")?;
                patch[k] = parse_value(&v);
            }
            if let Some(j) = &u.json {
                let p: Value = serde_json::from_str(j).context("--json is not valid JSON")?;
                weft_model::merge_patch(&mut patch, &p);
            }
            if patch.as_object().is_some_and(Map::is_empty) {
                bail!("nothing to change: give --set FIELD=VALUE or --json");
            }
            let v = ctx.c.update(kind, &id, &patch, u.if_match).await?;
            print_object(f, &v);
        }
        Verb::Delete { id } => {
            let id = ctx.id(kind, id).await?;
            ctx.c.delete(kind, &id).await?;
            println!("{kind} {id} deleted");
        }
    }
    Ok(())
}

async fn security_group(ctx: &Ctx<'_>, verb: &SgVerb, f: Format) -> Result<()> {
    let kind = Kind::SecurityGroup;
    match verb {
        SgVerb::Create { name, stateless } => {
            let body = ctx.with_project(json!({"name": name, "stateful": !stateless}));
            print_object(f, &ctx.c.create(kind, &body).await?);
        }
        SgVerb::List(l) => {
            return generic(
                ctx,
                kind,
                &Verb::<ProjectCreate>::List(ListArgs {
                    filters: l.filters.clone(),
                }),
                |_| async { Ok(Value::Null) },
            )
            .await;
        }
        SgVerb::Show { id } => {
            let id = ctx.id(kind, id).await?;
            print_object(f, &ctx.c.get(kind, &id).await?);
        }
        SgVerb::Update(u) => {
            let u = UpdateArgs {
                id: u.id.clone(),
                set: u.set.clone(),
                json: u.json.clone(),
                if_match: u.if_match,
            };
            return generic(ctx, kind, &Verb::<ProjectCreate>::Update(u), |_| async {
                Ok(Value::Null)
            })
            .await;
        }
        SgVerb::Delete { id } => {
            let id = ctx.id(kind, id).await?;
            ctx.c.delete(kind, &id).await?;
            println!("security-group {id} deleted");
        }
        SgVerb::RuleAdd(r) => {
            let id = ctx.id(kind, &r.group).await?;
            let g = ctx.c.get(kind, &id).await?;
            let rev = g["revision"].as_u64();
            let mut rules = g["rules"].as_array().cloned().unwrap_or_default();
            let mut rule = json!({"direction": r.direction, "ethertype": r.ethertype, "action": r.action, "log": r.log});
            if let Some(p) = &r.protocol {
                rule["protocol"] = parse_value(p);
            }
            if let Some(p) = &r.port {
                let (a, b) = p.split_once('-').unwrap_or((p, p));
                rule["port_range_min"] = json!(
                    a.parse::<u16>()
                        .with_context(|| format!("port {a:?} is not a number"))?
                );
                rule["port_range_max"] = json!(
                    b.parse::<u16>()
                        .with_context(|| format!("port {b:?} is not a number"))?
                );
            }
            if let Some(t) = r.icmp_type {
                rule["icmp_type"] = json!(t);
            }
            if let Some(p) = &r.remote_prefix {
                rule["remote_prefix"] = json!(p);
            }
            if let Some(g) = &r.remote_group {
                rule["remote_group"] = json!(ctx.id(kind, g).await?);
            }
            rules.push(rule);
            let v = ctx
                .c
                .update(kind, &id, &json!({"rules": rules}), rev)
                .await?;
            print_object(f, &v);
        }
        SgVerb::RuleDelete { group, rule } => {
            let id = ctx.id(kind, group).await?;
            let g = ctx.c.get(kind, &id).await?;
            let rev = g["revision"].as_u64();
            let rules: Vec<Value> = g["rules"].as_array().cloned().unwrap_or_default();
            let before = rules.len();
            let rules: Vec<Value> = rules
                .into_iter()
                .filter(|r| r["id"].as_str() != Some(rule))
                .collect();
            if rules.len() == before {
                bail!("security group {group} has no rule {rule}");
            }
            let v = ctx
                .c
                .update(kind, &id, &json!({"rules": rules}), rev)
                .await?;
            print_object(f, &v);
        }
    }
    Ok(())
}
