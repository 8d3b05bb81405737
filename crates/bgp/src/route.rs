//! Route types of the public API: route distinguishers, route targets, the
//! routes Weft exports and the routes it imports.
//!
//! These are Weft's own types (not the codec's) so the controller depends on
//! nothing but this crate; `packet/` converts them to and from the wire.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ParseError;

/// A route distinguisher (RFC 4364 section 4.2), written `ASN16:NN32`,
/// `IPv4:NN16` or `ASN32:NN16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteDistinguisher {
    /// Type 0: a 2-byte AS number and a 4-byte assigned number.
    As2 {
        /// Administrator AS number.
        asn: u16,
        /// Assigned number.
        number: u32,
    },
    /// Type 1: an IPv4 address and a 2-byte assigned number.
    Ipv4 {
        /// Administrator address.
        addr: Ipv4Addr,
        /// Assigned number.
        number: u16,
    },
    /// Type 2: a 4-byte AS number and a 2-byte assigned number.
    As4 {
        /// Administrator AS number.
        asn: u32,
        /// Assigned number.
        number: u16,
    },
}

/// A route target extended community (RFC 4360 / RFC 5668), written like a
/// route distinguisher: `ASN16:NN32`, `IPv4:NN16` or `ASN32:NN16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteTarget {
    /// Two-octet AS specific route target.
    As2 {
        /// Global administrator (AS number).
        asn: u16,
        /// Local administrator.
        number: u32,
    },
    /// IPv4 address specific route target.
    Ipv4 {
        /// Global administrator (address).
        addr: Ipv4Addr,
        /// Local administrator.
        number: u16,
    },
    /// Four-octet AS specific route target.
    As4 {
        /// Global administrator (AS number).
        asn: u32,
        /// Local administrator.
        number: u16,
    },
}

/// The three administrator/number shapes shared by RDs and RTs.
enum AdminNumber {
    As2(u16, u32),
    Ipv4(Ipv4Addr, u16),
    As4(u32, u16),
}

fn parse_admin_number(what: &'static str, s: &str) -> Result<AdminNumber, ParseError> {
    let bad = |reason: &'static str| ParseError::AdminNumber {
        what,
        value: s.to_string(),
        reason,
    };
    let (admin, number) = s
        .trim()
        .rsplit_once(':')
        .ok_or_else(|| bad("expected ADMIN:NUMBER"))?;
    if admin.contains('.') {
        let addr: Ipv4Addr = admin.parse().map_err(|_| bad("bad IPv4 administrator"))?;
        let number: u16 = number
            .parse()
            .map_err(|_| bad("number after an IPv4 administrator must fit 16 bits"))?;
        return Ok(AdminNumber::Ipv4(addr, number));
    }
    let asn: u32 = admin
        .parse()
        .map_err(|_| bad("administrator must be an AS number or an IPv4 address"))?;
    let number: u64 = number
        .parse()
        .map_err(|_| bad("number is not an integer"))?;
    match (u16::try_from(asn), number) {
        (Ok(asn16), n) if n <= u64::from(u32::MAX) => Ok(AdminNumber::As2(asn16, n as u32)),
        (Err(_), n) if n <= u64::from(u16::MAX) => Ok(AdminNumber::As4(asn, n as u16)),
        (Ok(_), _) => Err(bad("number after a 2-byte AS must fit 32 bits")),
        (Err(_), _) => Err(bad("number after a 4-byte AS must fit 16 bits")),
    }
}

impl FromStr for RouteDistinguisher {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match parse_admin_number("route distinguisher", s)? {
            AdminNumber::As2(asn, number) => Self::As2 { asn, number },
            AdminNumber::Ipv4(addr, number) => Self::Ipv4 { addr, number },
            AdminNumber::As4(asn, number) => Self::As4 { asn, number },
        })
    }
}

impl FromStr for RouteTarget {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match parse_admin_number("route target", s)? {
            AdminNumber::As2(asn, number) => Self::As2 { asn, number },
            AdminNumber::Ipv4(addr, number) => Self::Ipv4 { addr, number },
            AdminNumber::As4(asn, number) => Self::As4 { asn, number },
        })
    }
}

impl fmt::Display for RouteDistinguisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::As2 { asn, number } => write!(f, "{asn}:{number}"),
            Self::Ipv4 { addr, number } => write!(f, "{addr}:{number}"),
            Self::As4 { asn, number } => write!(f, "{asn}:{number}"),
        }
    }
}

impl fmt::Display for RouteTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::As2 { asn, number } => write!(f, "{asn}:{number}"),
            Self::Ipv4 { addr, number } => write!(f, "{addr}:{number}"),
            Self::As4 { asn, number } => write!(f, "{asn}:{number}"),
        }
    }
}

macro_rules! serde_as_string {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_as_string!(RouteDistinguisher);
serde_as_string!(RouteTarget);

/// Tunnel encapsulation announced with a route (RFC 9012 section 4.1,
/// Encapsulation Extended Community), by IANA tunnel type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encapsulation {
    /// VXLAN (tunnel type 8); the label field then carries the VNI.
    Vxlan,
    /// NVGRE (tunnel type 9).
    Nvgre,
    /// MPLS (tunnel type 10).
    Mpls,
    /// MPLS in GRE (tunnel type 11).
    MplsInGre,
    /// VXLAN-GPE (tunnel type 12).
    VxlanGpe,
    /// MPLS in UDP (tunnel type 13).
    MplsInUdp,
    /// Any other IANA tunnel type.
    Other(u16),
}

impl Encapsulation {
    /// The IANA BGP tunnel type code.
    pub fn tunnel_type(self) -> u16 {
        match self {
            Self::Vxlan => 8,
            Self::Nvgre => 9,
            Self::Mpls => 10,
            Self::MplsInGre => 11,
            Self::VxlanGpe => 12,
            Self::MplsInUdp => 13,
            Self::Other(t) => t,
        }
    }

    /// The encapsulation for an IANA tunnel type code.
    pub fn from_tunnel_type(t: u16) -> Self {
        match t {
            8 => Self::Vxlan,
            9 => Self::Nvgre,
            10 => Self::Mpls,
            11 => Self::MplsInGre,
            12 => Self::VxlanGpe,
            13 => Self::MplsInUdp,
            t => Self::Other(t),
        }
    }
}

/// Which NLRI carries a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "type")]
pub enum RouteKind {
    /// VPNv4 unicast (AFI 1 / SAFI 128, RFC 4364). `label_or_vni` is a
    /// 20-bit MPLS label (with VXLAN encapsulation, the VNI placed there).
    Vpn,
    /// EVPN IP prefix route, type 5 (AFI 25 / SAFI 70, RFC 9136).
    /// `label_or_vni` is the 24-bit VNI (RFC 8365) or MPLS label.
    EvpnPrefix {
        /// Ethernet tag (usually 0).
        eth_tag: u32,
    },
    /// EVPN MAC/IP advertisement, type 2 (RFC 7432); imported only when it
    /// carries an IP address, whose host route is `prefix`.
    EvpnMacIp {
        /// Ethernet tag.
        eth_tag: u32,
        /// The advertised MAC address.
        mac: [u8; 6],
    },
}

/// One route of a VRF as exported to (or imported from) BGP peers.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VpnRoute {
    /// Which NLRI carries it; defaults to VPNv4.
    #[serde(default = "default_kind")]
    pub kind: RouteKind,
    /// The VRF's route distinguisher.
    pub rd: RouteDistinguisher,
    /// The prefix (IPv4 for VPNv4; IPv4 or IPv6 for EVPN).
    pub prefix: IpNet,
    /// MPLS label (20 bits for VPNv4) or VXLAN VNI (24 bits for EVPN).
    pub label_or_vni: u32,
    /// BGP next hop: for Weft's exports, the host's tunnel address.
    pub next_hop: IpAddr,
    /// Route targets (export RTs on export, carried RTs on import).
    #[serde(default)]
    pub route_targets: Vec<RouteTarget>,
    /// Encapsulation extended community (RFC 9012), e.g. VXLAN.
    #[serde(default)]
    pub encap: Option<Encapsulation>,
    /// EVPN Router's MAC extended community (RFC 9135), for type 5 routes.
    #[serde(default)]
    pub router_mac: Option<[u8; 6]>,
    /// LOCAL_PREF (sent to iBGP peers only; 100 when absent).
    #[serde(default)]
    pub local_pref: Option<u32>,
    /// MULTI_EXIT_DISC.
    #[serde(default)]
    pub med: Option<u32>,
}

fn default_kind() -> RouteKind {
    RouteKind::Vpn
}

/// The identity of a route in a RIB: what a later UPDATE replaces or
/// withdraws.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RouteKey {
    /// Route distinguisher.
    pub rd: RouteDistinguisher,
    /// Family-specific part of the NLRI.
    pub nlri: NlriKey,
}

/// Family-specific part of a [`RouteKey`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum NlriKey {
    /// A VPNv4 prefix.
    Vpnv4(Ipv4Net),
    /// An EVPN type 5 prefix.
    EvpnPrefix {
        /// Ethernet tag.
        eth_tag: u32,
        /// The prefix.
        prefix: IpNet,
    },
    /// An EVPN type 2 MAC/IP pair.
    EvpnMacIp {
        /// Ethernet tag.
        eth_tag: u32,
        /// MAC address.
        mac: [u8; 6],
        /// IP address.
        ip: IpAddr,
    },
}

/// Address family a route or an End-of-RIB belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Family {
    /// AFI 1 / SAFI 128.
    Vpnv4,
    /// AFI 25 / SAFI 70.
    Evpn,
}

impl NlriKey {
    /// The address family of this NLRI.
    pub fn family(&self) -> Family {
        match self {
            Self::Vpnv4(_) => Family::Vpnv4,
            Self::EvpnPrefix { .. } | Self::EvpnMacIp { .. } => Family::Evpn,
        }
    }
}

impl fmt::Display for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.nlri {
            NlriKey::Vpnv4(p) => write!(f, "vpnv4 {} {}", self.rd, p),
            NlriKey::EvpnPrefix { eth_tag, prefix } => {
                write!(f, "evpn type-5 {} [{}] {}", self.rd, eth_tag, prefix)
            }
            NlriKey::EvpnMacIp { eth_tag, mac, ip } => write!(
                f,
                "evpn type-2 {} [{}] {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x} {}",
                self.rd, eth_tag, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], ip
            ),
        }
    }
}

impl VpnRoute {
    /// A VPNv4 route with no encapsulation, router MAC, LOCAL_PREF or MED.
    pub fn vpnv4(
        rd: RouteDistinguisher,
        prefix: Ipv4Net,
        label: u32,
        next_hop: IpAddr,
        route_targets: Vec<RouteTarget>,
    ) -> Self {
        Self {
            kind: RouteKind::Vpn,
            rd,
            prefix: IpNet::V4(prefix),
            label_or_vni: label,
            next_hop,
            route_targets,
            encap: None,
            router_mac: None,
            local_pref: None,
            med: None,
        }
    }

    /// The RIB key of this route, or why it cannot be carried.
    pub fn key(&self) -> Result<RouteKey, crate::error::ExportError> {
        use crate::error::ExportError;
        let nlri = match (self.kind, self.prefix) {
            (RouteKind::Vpn, IpNet::V4(p)) => {
                if self.label_or_vni > 0xF_FFFF {
                    return Err(ExportError::LabelTooLarge {
                        prefix: self.prefix,
                        value: self.label_or_vni,
                        max: 0xF_FFFF,
                    });
                }
                let p = p.trunc();
                let last = p.hosts().last().unwrap_or(p.addr());
                if [p.addr(), last]
                    .iter()
                    .any(|a| a.is_multicast() || a.is_broadcast())
                {
                    return Err(ExportError::UnsupportedPrefix {
                        prefix: self.prefix,
                        reason: "a VPNv4 unicast prefix must not cover multicast or broadcast addresses",
                    });
                }
                NlriKey::Vpnv4(p)
            }
            (RouteKind::Vpn, IpNet::V6(_)) => {
                return Err(ExportError::UnsupportedPrefix {
                    prefix: self.prefix,
                    reason: "VPNv6 is not supported; use an EVPN type 5 route for IPv6",
                });
            }
            (RouteKind::EvpnPrefix { eth_tag }, prefix) => {
                if self.label_or_vni > 0xFF_FFFF {
                    return Err(ExportError::LabelTooLarge {
                        prefix: self.prefix,
                        value: self.label_or_vni,
                        max: 0xFF_FFFF,
                    });
                }
                NlriKey::EvpnPrefix {
                    eth_tag,
                    prefix: prefix.trunc(),
                }
            }
            (RouteKind::EvpnMacIp { eth_tag, mac }, prefix) => {
                if prefix.prefix_len() != prefix.max_prefix_len() {
                    return Err(ExportError::UnsupportedPrefix {
                        prefix,
                        reason: "an EVPN MAC/IP route carries a host address (/32 or /128)",
                    });
                }
                NlriKey::EvpnMacIp {
                    eth_tag,
                    mac,
                    ip: prefix.addr(),
                }
            }
        };
        if matches!(nlri, NlriKey::Vpnv4(_)) && !self.next_hop.is_ipv4() {
            return Err(ExportError::UnsupportedPrefix {
                prefix: self.prefix,
                reason: "a VPNv4 route needs an IPv4 next hop",
            });
        }
        Ok(RouteKey { rd: self.rd, nlri })
    }
}

/// A route learned from a peer, as held in the Loc-RIB.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedRoute {
    /// The route: RD, prefix, label/VNI, next hop (the tunnel endpoint),
    /// the route targets it carries, encapsulation and router MAC.
    pub route: VpnRoute,
    /// Address of the peer it came from.
    pub peer: IpAddr,
    /// AS number of that peer.
    pub peer_as: u32,
    /// BGP identifier of that peer.
    pub peer_router_id: Ipv4Addr,
    /// AS_PATH, flattened (sequences and sets in order).
    pub as_path: Vec<u32>,
    /// True while the peer is restarting (graceful restart) and the route
    /// has not been refreshed yet.
    pub stale: bool,
}

impl ImportedRoute {
    /// The RIB key of the route (imported routes always have one).
    pub fn key(&self) -> RouteKey {
        // Imported routes are built from wire NLRI, so they always have a
        // key; fall back to a VPNv4 default rather than panic.
        self.route.key().unwrap_or(RouteKey {
            rd: self.route.rd,
            nlri: NlriKey::Vpnv4(Ipv4Net::default()),
        })
    }
}

/// Formats a MAC address as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rd_forms_parse_and_display() {
        let cases = [
            (
                "65000:100",
                RouteDistinguisher::As2 {
                    asn: 65000,
                    number: 100,
                },
            ),
            (
                "65000:4294967295",
                RouteDistinguisher::As2 {
                    asn: 65000,
                    number: u32::MAX,
                },
            ),
            (
                "192.0.2.1:7",
                RouteDistinguisher::Ipv4 {
                    addr: Ipv4Addr::new(192, 0, 2, 1),
                    number: 7,
                },
            ),
            (
                "4200000000:9",
                RouteDistinguisher::As4 {
                    asn: 4_200_000_000,
                    number: 9,
                },
            ),
        ];
        for (text, rd) in cases {
            assert_eq!(text.parse::<RouteDistinguisher>().unwrap(), rd, "{text}");
            assert_eq!(rd.to_string(), text);
            let rt: RouteTarget = text.parse().unwrap();
            assert_eq!(rt.to_string(), text);
        }
    }

    #[test]
    fn rd_rejects_out_of_range_values() {
        for bad in [
            "65000",
            "4200000000:70000",
            "192.0.2.1:70000",
            "x:1",
            "65000:4294967296",
            "1.2.3:4",
        ] {
            let err = bad.parse::<RouteDistinguisher>().unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn serde_uses_the_text_form() {
        let rt: RouteTarget = "65000:1".parse().unwrap();
        assert_eq!(serde_json::to_string(&rt).unwrap(), "\"65000:1\"");
        let back: RouteTarget = serde_json::from_str("\"65000:1\"").unwrap();
        assert_eq!(back, rt);
    }

    #[test]
    fn keys_validate_labels_and_families() {
        let rd = "65000:1".parse().unwrap();
        let mut r = VpnRoute::vpnv4(
            rd,
            "10.0.0.1/32".parse().unwrap(),
            100,
            "192.0.2.1".parse().unwrap(),
            vec![],
        );
        assert!(r.key().is_ok());
        r.label_or_vni = 1 << 20;
        assert!(r.key().is_err());
        r.kind = RouteKind::EvpnPrefix { eth_tag: 0 };
        assert!(r.key().is_ok());
        r.kind = RouteKind::Vpn;
        r.label_or_vni = 1;
        r.prefix = "2001:db8::/64".parse().unwrap();
        assert!(r.key().is_err());
    }
}
