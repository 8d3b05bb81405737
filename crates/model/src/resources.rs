//! The resources of the intent model (DESIGN.md, "Data model").
//!
//! Each kind has a full object type (what the API returns and the store
//! keeps) and a `*Spec` type (what a user may set: the body of a create, and
//! what an update's merge patch applies to). Server-owned fields (id,
//! project, revision, status, derived fields) are only on the object.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::types::{Id, Mac, RouteDistinguisher, RouteTarget};

/// The kinds of objects in the intent model.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// A tenant.
    Project,
    /// A vNIC.
    InstancePort,
    /// A slice of an instance port (untagged or a VLAN).
    Interface,
    /// A broadcast domain with subnets.
    L2Network,
    /// A VRF.
    L3vpn,
    /// A set of stateful filtering rules.
    SecurityGroup,
    /// A programmable inter-site connection.
    SiteLink,
    /// A binding of an interface to a service.
    ServicePort,
}

impl Kind {
    /// Every kind, in dependency order (a kind only references kinds before it,
    /// except security groups referencing each other).
    pub const ALL: [Kind; 8] = [
        Kind::Project,
        Kind::InstancePort,
        Kind::Interface,
        Kind::L2Network,
        Kind::L3vpn,
        Kind::SecurityGroup,
        Kind::SiteLink,
        Kind::ServicePort,
    ];

    /// The plural, kebab-case name used in URLs and store keys.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Project => "projects",
            Kind::InstancePort => "instance-ports",
            Kind::Interface => "interfaces",
            Kind::L2Network => "l2-networks",
            Kind::L3vpn => "l3vpns",
            Kind::SecurityGroup => "security-groups",
            Kind::SiteLink => "site-links",
            Kind::ServicePort => "service-ports",
        }
    }

    /// The singular name used in messages.
    pub fn singular(self) -> &'static str {
        match self {
            Kind::Project => "project",
            Kind::InstancePort => "instance-port",
            Kind::Interface => "interface",
            Kind::L2Network => "l2-network",
            Kind::L3vpn => "l3vpn",
            Kind::SecurityGroup => "security-group",
            Kind::SiteLink => "site-link",
            Kind::ServicePort => "service-port",
        }
    }

    /// Parses a plural or singular kind name.
    pub fn from_name(s: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.plural() == s || k.singular() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.singular())
    }
}

// ---------------------------------------------------------------- projects

/// A tenant: every other object belongs to exactly one project.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Project {
    /// Stable id.
    pub id: Id,
    /// Unique name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Store revision of the last change.
    #[serde(default)]
    pub revision: u64,
}

/// What a caller sets on a project.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectSpec {
    /// Unique name (letters, digits, `-`, `_`, `.`; 1-63 characters).
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

// ---------------------------------------------------------- instance ports

/// Link state of an instance port as reported by its host.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PortStatus {
    /// Not bound, not reported, or reported down.
    #[default]
    Down,
    /// The host reports the port up and programmed.
    Up,
}

/// A vNIC: the hand-off point between the compute side and the network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InstancePort {
    /// Stable id.
    pub id: Id,
    /// Owning project.
    pub project: Id,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// MAC address (generated when not given).
    pub mac: Mac,
    /// MTU of the vNIC.
    pub mtu: u16,
    /// The host the port is bound to; set by the compute side, never by a host.
    #[serde(default)]
    pub host: Option<String>,
    /// Administrative state.
    pub admin_up: bool,
    /// Operational state, reported by the host.
    #[serde(default)]
    pub status: PortStatus,
    /// Store revision of the last change.
    #[serde(default)]
    pub revision: u64,
}

/// Default MTU of an instance port: 1500 minus the 50 bytes of VXLAN over IPv4.
pub const DEFAULT_MTU: u16 = 1450;

/// What a caller sets on an instance port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstancePortSpec {
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// MAC address; generated when absent.
    #[serde(default)]
    pub mac: Option<Mac>,
    /// MTU (68-9000), default 1450.
    #[serde(default)]
    pub mtu: Option<u16>,
    /// Host the port is bound to (compute side).
    #[serde(default)]
    pub host: Option<String>,
    /// Administrative state, default up.
    #[serde(default)]
    pub admin_up: Option<bool>,
    /// Services to bind at creation, each through a new untagged interface
    /// (one-shot "port on a network" for callers that want Neutron's shape).
    /// Only valid on create.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bindings: Vec<BindingSpec>,
}

/// A service binding created together with an instance port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BindingSpec {
    /// The service (l2-network or l3vpn) to bind.
    pub service: Id,
    /// Fixed IPs, as for a service port.
    #[serde(default)]
    pub fixed_ips: Option<Vec<FixedIpSpec>>,
    /// Allowed address pairs.
    #[serde(default)]
    pub allowed_address_pairs: Vec<AddressPair>,
    /// Hub or spoke (l3vpn only).
    #[serde(default)]
    pub role: Option<Role>,
    /// Security groups.
    #[serde(default)]
    pub security_groups: Vec<Id>,
}

// -------------------------------------------------------------- interfaces

/// A slice of an instance port: the whole port (untagged) or one VLAN on a
/// parent port or interface. Nesting (QinQ) is allowed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Interface {
    /// Stable id.
    pub id: Id,
    /// Owning project.
    pub project: Id,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// The parent: an instance port or another interface.
    pub parent: Id,
    /// VLAN id (1-4094) on the parent; absent for the untagged interface.
    #[serde(default)]
    pub vlan: Option<u16>,
    /// The instance port at the root of the parent chain (derived).
    pub port: Id,
    /// The VLAN tags from the port down to this interface, outer first (derived).
    #[serde(default)]
    pub vlan_path: Vec<u16>,
    /// Store revision of the last change.
    #[serde(default)]
    pub revision: u64,
}

/// What a caller sets on an interface.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InterfaceSpec {
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// The parent instance port or interface.
    pub parent: Id,
    /// VLAN id (1-4094); absent for untagged.
    #[serde(default)]
    pub vlan: Option<u16>,
}

// ------------------------------------------------------------- l2-networks

/// An IP address range inside a subnet, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllocationPool {
    /// First address.
    #[schema(value_type = String)]
    pub start: IpAddr,
    /// Last address.
    #[schema(value_type = String)]
    pub end: IpAddr,
}

/// A route handed to VMs by DHCP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HostRoute {
    /// Destination prefix.
    #[schema(value_type = String)]
    pub destination: IpNet,
    /// Next hop inside the subnet.
    #[schema(value_type = String)]
    pub nexthop: IpAddr,
}

/// A subnet of an l2-network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Subnet {
    /// Stable id (generated).
    pub id: Id,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// The prefix, e.g. 10.1.1.0/24 (host bits must be zero).
    #[schema(value_type = String)]
    pub cidr: IpNet,
    /// Gateway address; `null` for a subnet without gateway.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub gateway: Option<IpAddr>,
    /// Whether the host agents serve DHCP on this subnet.
    pub dhcp: bool,
    /// DNS servers handed out by DHCP.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub dns_servers: Vec<IpAddr>,
    /// Ranges automatic allocation draws from.
    #[serde(default)]
    pub allocation_pools: Vec<AllocationPool>,
    /// Extra routes handed out by DHCP.
    #[serde(default)]
    pub host_routes: Vec<HostRoute>,
}

/// What a caller sets on a subnet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubnetSpec {
    /// Keep this id when updating a network's subnet list; absent for a new subnet.
    #[serde(default)]
    pub id: Option<Id>,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// The prefix.
    #[schema(value_type = String)]
    pub cidr: String,
    /// Gateway address; default the first host address of the subnet.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub gateway: Option<IpAddr>,
    /// True for a subnet without gateway.
    #[serde(default)]
    pub no_gateway: bool,
    /// Serve DHCP (default true for IPv4, false for IPv6).
    #[serde(default)]
    pub dhcp: Option<bool>,
    /// DNS servers handed out by DHCP.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub dns_servers: Vec<IpAddr>,
    /// Allocation ranges; default the whole subnet minus network, broadcast and gateway.
    #[serde(default)]
    pub allocation_pools: Vec<AllocationPool>,
    /// Extra routes handed out by DHCP.
    #[serde(default)]
    pub host_routes: Vec<HostRoute>,
}

/// How a provider network meets the physical network.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ProviderType {
    /// Untagged on the physical network.
    Flat,
    /// 802.1Q VLAN on the physical network.
    Vlan,
    /// A VXLAN segment with a given VNI.
    Vxlan,
}

/// Mapping of an l2-network onto a physical network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// Name of the physical network (as configured on hosts).
    pub physical_network: String,
    /// Segmentation type.
    pub network_type: ProviderType,
    /// VLAN id (1-4094) or VNI; absent for flat.
    #[serde(default)]
    pub segmentation_id: Option<u32>,
}

/// A broadcast domain with its subnets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct L2Network {
    /// Stable id.
    pub id: Id,
    /// Owning project.
    pub project: Id,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// VXLAN network identifier used between hosts.
    pub vni: u32,
    /// Subnets.
    #[serde(default)]
    pub subnets: Vec<Subnet>,
    /// Provider mapping, for provider networks.
    #[serde(default)]
    pub provider: Option<Provider>,
    /// Store revision of the last change.
    #[serde(default)]
    pub revision: u64,
}

/// What a caller sets on an l2-network.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct L2NetworkSpec {
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// VNI (1-16777215); allocated when absent.
    #[serde(default)]
    pub vni: Option<u32>,
    /// Subnets; an update replaces the whole list (keep `id`s to keep subnets).
    #[serde(default)]
    pub subnets: Vec<SubnetSpec>,
    /// Provider mapping (its own policy entry: `create_provider_network`).
    #[serde(default)]
    pub provider: Option<Provider>,
}

// ------------------------------------------------------------------ l3vpns

/// How traffic to an IP held by several routed ports is spread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AnycastMode {
    /// Flows are spread over all up ports by a 5-tuple hash.
    #[default]
    LoadSplit,
    /// All flows go to the up port with the highest preference.
    FailOver,
}

/// One next hop of a static route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NextHop {
    /// Next-hop address, reachable in the VRF.
    #[schema(value_type = String)]
    pub ip: IpAddr,
    /// ECMP weight (1-255), default 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Preference; only next hops with the highest value are used; default 100.
    #[serde(default = "default_local_pref")]
    pub local_pref: u32,
}

fn default_weight() -> u32 {
    1
}
fn default_local_pref() -> u32 {
    100
}

/// A static route of a VRF.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StaticRoute {
    /// Destination prefix.
    #[schema(value_type = String)]
    pub prefix: IpNet,
    /// One or more next hops (ECMP among those with the best local_pref).
    pub nexthops: Vec<NextHop>,
}

/// A VRF: an L3 VPN instance (RFC 4364).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct L3vpn {
    /// Stable id.
    pub id: Id,
    /// Owning project.
    pub project: Id,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Route distinguisher.
    pub route_distinguisher: RouteDistinguisher,
    /// Route targets this VRF imports.
    #[serde(default)]
    pub import_targets: Vec<RouteTarget>,
    /// Route targets this VRF's routes carry.
    #[serde(default)]
    pub export_targets: Vec<RouteTarget>,
    /// VNI (label) of the VRF for routed traffic between hosts.
    pub vni: u32,
    /// Static routes.
    #[serde(default)]
    pub static_routes: Vec<StaticRoute>,
    /// Behaviour for IPs held by several routed ports.
    #[serde(default)]
    pub anycast_mode: AnycastMode,
    /// Subnets (of l2-networks) attached to this VRF; their gateways route here.
    #[serde(default)]
    pub subnets: Vec<Id>,
    /// Store revision of the last change.
    #[serde(default)]
    pub revision: u64,
}

/// What a caller sets on an l3vpn.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct L3vpnSpec {
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Route distinguisher (required), e.g. 64512:100.
    #[schema(value_type = String)]
    pub route_distinguisher: Option<String>,
    /// Shorthand: these targets are both imported and exported.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub route_targets: Vec<String>,
    /// Route targets imported.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub import_targets: Vec<String>,
    /// Route targets exported.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub export_targets: Vec<String>,
    /// VNI; allocated when absent.
    #[serde(default)]
    pub vni: Option<u32>,
    /// Static routes.
    #[serde(default)]
    pub static_routes: Vec<StaticRoute>,
    /// load-split (default) or fail-over.
    #[serde(default)]
    pub anycast_mode: AnycastMode,
    /// Subnet ids to attach.
    #[serde(default)]
    pub subnets: Vec<Id>,
}

// --------------------------------------------------------- security groups

/// Traffic direction as seen from the VM.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Towards the VM.
    Ingress,
    /// From the VM.
    Egress,
}

/// IP version a rule applies to.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
)]
pub enum Ethertype {
    /// IPv4.
    #[default]
    IPv4,
    /// IPv6.
    IPv6,
}

/// An IP protocol selector of a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// ICMP (1).
    Icmp,
    /// ICMPv6 (58).
    Icmpv6,
    /// Any other protocol by number.
    Number(u8),
}

impl Protocol {
    /// The IP protocol number.
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Icmp => 1,
            Protocol::Icmpv6 => 58,
            Protocol::Number(n) => n,
        }
    }
    /// True for protocols with port numbers.
    pub fn has_ports(self) -> bool {
        matches!(self.number(), 6 | 17 | 132)
    }
    /// True for ICMP and ICMPv6.
    pub fn is_icmp(self) -> bool {
        matches!(self.number(), 1 | 58)
    }
}

/// An unknown protocol name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid protocol {0:?}: expected tcp, udp, icmp, icmpv6 or a number 0-255")]
pub struct ProtocolParseError(pub String);

impl FromStr for Protocol {
    type Err = ProtocolParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "icmp" => Protocol::Icmp,
            "icmpv6" | "ipv6-icmp" => Protocol::Icmpv6,
            other => match other.parse::<u8>() {
                Ok(6) => Protocol::Tcp,
                Ok(17) => Protocol::Udp,
                Ok(1) => Protocol::Icmp,
                Ok(58) => Protocol::Icmpv6,
                Ok(n) => Protocol::Number(n),
                Err(_) => return Err(ProtocolParseError(s.to_string())),
            },
        })
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protocol::Tcp => f.write_str("tcp"),
            Protocol::Udp => f.write_str("udp"),
            Protocol::Icmp => f.write_str("icmp"),
            Protocol::Icmpv6 => f.write_str("icmpv6"),
            Protocol::Number(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for Protocol {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u8),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => n.to_string().parse(),
            Raw::S(s) => s.parse(),
        }
        .map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for Protocol {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("tcp, udp, icmp, icmpv6 or a protocol number"))
            .into()
    }
}
impl utoipa::ToSchema for Protocol {}

/// What a matching rule does.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// Let the traffic (and, when stateful, its replies) through.
    #[default]
    Allow,
    /// Refuse it actively: TCP RST or ICMP unreachable.
    Reject,
    /// Drop it silently (useful with `log`, ahead of broader allows).
    Drop,
}

/// One rule of a security group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Rule {
    /// Stable id (generated).
    pub id: Id,
    /// Direction as seen from the VM.
    pub direction: Direction,
    /// IP version.
    #[serde(default)]
    pub ethertype: Ethertype,
    /// Protocol; absent for any.
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// First port of the range (tcp/udp).
    #[serde(default)]
    pub port_range_min: Option<u16>,
    /// Last port of the range (tcp/udp).
    #[serde(default)]
    pub port_range_max: Option<u16>,
    /// ICMP type (icmp/icmpv6).
    #[serde(default)]
    pub icmp_type: Option<u8>,
    /// ICMP code (icmp/icmpv6).
    #[serde(default)]
    pub icmp_code: Option<u8>,
    /// Remote prefix; with neither this nor `remote_group`, any address.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub remote_prefix: Option<IpNet>,
    /// Remote security group: the addresses of the ports in that group.
    #[serde(default)]
    pub remote_group: Option<Id>,
    /// allow (default), reject or drop.
    #[serde(default)]
    pub action: RuleAction,
    /// Log matching packets with this rule's id.
    #[serde(default)]
    pub log: bool,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

/// What a caller sets on a rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Keep this id when updating; absent for a new rule.
    #[serde(default)]
    pub id: Option<Id>,
    /// ingress or egress.
    pub direction: Direction,
    /// IPv4 (default) or IPv6.
    #[serde(default)]
    pub ethertype: Ethertype,
    /// tcp, udp, icmp, icmpv6 or a number; absent for any.
    #[serde(default)]
    pub protocol: Option<Protocol>,
    /// First port (tcp/udp).
    #[serde(default)]
    pub port_range_min: Option<u16>,
    /// Last port (tcp/udp); default = min.
    #[serde(default)]
    pub port_range_max: Option<u16>,
    /// ICMP type.
    #[serde(default)]
    pub icmp_type: Option<u8>,
    /// ICMP code.
    #[serde(default)]
    pub icmp_code: Option<u8>,
    /// Remote prefix.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub remote_prefix: Option<String>,
    /// Remote group id.
    #[serde(default)]
    pub remote_group: Option<Id>,
    /// allow, reject or drop.
    #[serde(default)]
    pub action: RuleAction,
    /// Log matches.
    #[serde(default)]
    pub log: bool,
    /// Free text.
    #[serde(default)]
    pub description: String,
}

/// A set of stateful filtering rules; ports with no allowing rule drop
/// everything (default deny).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SecurityGroup {
    /// Stable id.
    pub id: Id,
    /// Owning project.
    pub project: Id,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Whether replies to allowed traffic are allowed (connection tracking).
    pub stateful: bool,
    /// Rules.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Store revision of the last change.
    #[serde(default)]
    pub revision: u64,
}

/// What a caller sets on a security group.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecurityGroupSpec {
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Stateful (default true).
    #[serde(default)]
    pub stateful: Option<bool>,
    /// Rules; an update replaces the list (keep `id`s to keep rule ids).
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

// -------------------------------------------------------------- site links

/// A programmable connection between two sites (cells, regions, clouds)
/// carrying some of this project's services (seed "Georedundancy").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SiteLink {
    /// Stable id.
    pub id: Id,
    /// Owning project.
    pub project: Id,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// The site this call configures (the local end).
    pub site: String,
    /// The site at the other end.
    pub remote_site: String,
    /// Underlay address of the local end.
    #[schema(value_type = String)]
    pub local_endpoint: IpAddr,
    /// Underlay address of the remote end.
    #[schema(value_type = String)]
    pub remote_endpoint: IpAddr,
    /// The l2-networks and l3vpns stretched over the link.
    #[serde(default)]
    pub services: Vec<Id>,
    /// Administrative state.
    pub admin_up: bool,
    /// Store revision of the last change.
    #[serde(default)]
    pub revision: u64,
}

/// What a caller sets on a site link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteLinkSpec {
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// The local site (required).
    pub site: String,
    /// The remote site (required).
    pub remote_site: String,
    /// Underlay address of the local end.
    #[schema(value_type = String)]
    pub local_endpoint: IpAddr,
    /// Underlay address of the remote end.
    #[schema(value_type = String)]
    pub remote_endpoint: IpAddr,
    /// Services carried over the link.
    #[serde(default)]
    pub services: Vec<Id>,
    /// Administrative state, default up.
    #[serde(default)]
    pub admin_up: Option<bool>,
}

// ----------------------------------------------------------- service ports

/// Role of a routed port in a hub-and-spoke l3vpn.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Sees every route; spokes reach each other through it.
    Hub,
    /// Sees only the hubs' routes.
    Spoke,
}

/// An address (and optionally a MAC) a port may also send from, for VMs
/// that route or hold virtual IPs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressPair {
    /// Address or prefix.
    #[schema(value_type = String)]
    pub ip: IpNet,
    /// MAC; default the port's MAC.
    #[serde(default)]
    pub mac: Option<Mac>,
}

/// An address of a service port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FixedIp {
    /// The subnet the address is in (absent for routed l3vpn ports).
    #[serde(default)]
    pub subnet: Option<Id>,
    /// The address.
    #[schema(value_type = String)]
    pub ip: IpAddr,
}

/// A requested address of a service port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FixedIpSpec {
    /// The subnet to allocate from or to check against.
    #[serde(default)]
    pub subnet: Option<Id>,
    /// The address; allocated from the subnet when absent.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub ip: Option<IpAddr>,
}

/// A binding of an interface to a service, with the service's attributes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServicePort {
    /// Stable id.
    pub id: Id,
    /// Owning project.
    pub project: Id,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// The bound interface.
    pub interface: Id,
    /// The service (l2-network or l3vpn).
    pub service: Id,
    /// The kind of the service (derived).
    pub service_kind: Kind,
    /// Addresses.
    #[serde(default)]
    pub fixed_ips: Vec<FixedIp>,
    /// Extra addresses the port may send from.
    #[serde(default)]
    pub allowed_address_pairs: Vec<AddressPair>,
    /// Hub or spoke (l3vpn only).
    #[serde(default)]
    pub role: Option<Role>,
    /// Security groups filtering this port; none means deny all.
    #[serde(default)]
    pub security_groups: Vec<Id>,
    /// Anti-spoofing and security groups on (default). Off: no filtering.
    pub port_security: bool,
    /// Anycast fail-over preference; the highest up port wins.
    pub preference: u32,
    /// Store revision of the last change.
    #[serde(default)]
    pub revision: u64,
}

/// What a caller sets on a service port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServicePortSpec {
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// The interface to bind.
    pub interface: Id,
    /// The service (l2-network or l3vpn).
    pub service: Id,
    /// Addresses; absent: one address allocated from the network's first
    /// IPv4 subnet and one from its first IPv6 subnet; `[]`: none.
    #[serde(default)]
    pub fixed_ips: Option<Vec<FixedIpSpec>>,
    /// Extra addresses the port may send from.
    #[serde(default)]
    pub allowed_address_pairs: Vec<AddressPair>,
    /// hub or spoke (l3vpn only).
    #[serde(default)]
    pub role: Option<Role>,
    /// Security group ids.
    #[serde(default)]
    pub security_groups: Vec<Id>,
    /// Default true.
    #[serde(default)]
    pub port_security: Option<bool>,
    /// Anycast fail-over preference, default 100.
    #[serde(default)]
    pub preference: Option<u32>,
}

// ----------------------------------------------------------------- objects

/// Any object of the model. Serializes as the bare object; parse with
/// [`Object::from_json`], which needs the kind.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Object {
    /// A project.
    Project(Project),
    /// An instance port.
    InstancePort(InstancePort),
    /// An interface.
    Interface(Interface),
    /// An l2-network.
    L2Network(L2Network),
    /// An l3vpn.
    L3vpn(L3vpn),
    /// A security group.
    SecurityGroup(SecurityGroup),
    /// A site link.
    SiteLink(SiteLink),
    /// A service port.
    ServicePort(ServicePort),
}

macro_rules! object_common {
    ($($variant:ident),*) => {
        impl Object {
            /// The object's kind.
            pub fn kind(&self) -> Kind {
                match self { $(Object::$variant(_) => Kind::$variant),* }
            }
            /// The object's id.
            pub fn id(&self) -> &Id {
                match self { $(Object::$variant(o) => &o.id),* }
            }
            /// The object's display name.
            pub fn name(&self) -> &str {
                match self { $(Object::$variant(o) => &o.name),* }
            }
            /// The object's revision.
            pub fn revision(&self) -> u64 {
                match self { $(Object::$variant(o) => o.revision),* }
            }
            /// Sets the object's revision.
            pub fn set_revision(&mut self, revision: u64) {
                match self { $(Object::$variant(o) => o.revision = revision),* }
            }
            /// Serializes the object to JSON.
            pub fn to_json(&self) -> serde_json::Value {
                match self { $(Object::$variant(o) => serde_json::to_value(o).expect("model objects serialize")),* }
            }
            /// Parses an object of `kind` from JSON.
            pub fn from_json(kind: Kind, v: &[u8]) -> Result<Object, serde_json::Error> {
                Ok(match kind { $(Kind::$variant => Object::$variant(serde_json::from_slice(v)?)),* })
            }
        }
    };
}

object_common!(
    Project,
    InstancePort,
    Interface,
    L2Network,
    L3vpn,
    SecurityGroup,
    SiteLink,
    ServicePort
);

impl Object {
    /// The owning project (a project owns itself).
    pub fn project(&self) -> &Id {
        match self {
            Object::Project(o) => &o.id,
            Object::InstancePort(o) => &o.project,
            Object::Interface(o) => &o.project,
            Object::L2Network(o) => &o.project,
            Object::L3vpn(o) => &o.project,
            Object::SecurityGroup(o) => &o.project,
            Object::SiteLink(o) => &o.project,
            Object::ServicePort(o) => &o.project,
        }
    }
}
