//! Conversions between Weft's route attributes and netgauze's: route
//! distinguishers, route targets, the Encapsulation extended community
//! (RFC 9012 section 4.1, done here: netgauze has no typed variant for it)
//! and the EVPN Router's MAC extended community.

use netgauze_bgp_pkt::community::{
    EvpnExtendedCommunity, ExtendedCommunity, TransitiveFourOctetExtendedCommunity,
    TransitiveIpv4ExtendedCommunity, TransitiveOpaqueExtendedCommunity,
    TransitiveTwoOctetExtendedCommunity,
};
use netgauze_bgp_pkt::nlri::{MacAddress, MplsLabel, RouteDistinguisher as NgRd};

use crate::route::{Encapsulation, RouteDistinguisher, RouteTarget};

/// Sub-type of the Encapsulation extended community (transitive opaque).
pub const ENCAPSULATION_SUBTYPE: u8 = 0x0c;

/// Weft RD to netgauze RD.
pub fn rd_to_wire(rd: RouteDistinguisher) -> NgRd {
    match rd {
        RouteDistinguisher::As2 { asn, number } => NgRd::As2Administrator { asn2: asn, number },
        RouteDistinguisher::Ipv4 { addr, number } => NgRd::Ipv4Administrator { ip: addr, number },
        RouteDistinguisher::As4 { asn, number } => NgRd::As4Administrator { asn4: asn, number },
    }
}

/// netgauze RD to Weft RD; the RFC 7524 "leaf A-D" value is not a VPN RD.
pub fn rd_from_wire(rd: NgRd) -> Option<RouteDistinguisher> {
    match rd {
        NgRd::As2Administrator { asn2, number } => {
            Some(RouteDistinguisher::As2 { asn: asn2, number })
        }
        NgRd::Ipv4Administrator { ip, number } => {
            Some(RouteDistinguisher::Ipv4 { addr: ip, number })
        }
        NgRd::As4Administrator { asn4, number } => {
            Some(RouteDistinguisher::As4 { asn: asn4, number })
        }
        NgRd::LeafAdRoutes => None,
    }
}

/// A route target as an extended community.
pub fn rt_to_wire(rt: RouteTarget) -> ExtendedCommunity {
    match rt {
        RouteTarget::As2 { asn, number } => ExtendedCommunity::TransitiveTwoOctet(
            TransitiveTwoOctetExtendedCommunity::RouteTarget {
                global_admin: asn,
                local_admin: number,
            },
        ),
        RouteTarget::Ipv4 { addr, number } => {
            ExtendedCommunity::TransitiveIpv4(TransitiveIpv4ExtendedCommunity::RouteTarget {
                global_admin: addr,
                local_admin: number,
            })
        }
        RouteTarget::As4 { asn, number } => ExtendedCommunity::TransitiveFourOctet(
            TransitiveFourOctetExtendedCommunity::RouteTarget {
                global_admin: asn,
                local_admin: number,
            },
        ),
    }
}

/// The Encapsulation extended community for a tunnel type.
pub fn encap_to_wire(encap: Encapsulation) -> ExtendedCommunity {
    let t = encap.tunnel_type().to_be_bytes();
    ExtendedCommunity::TransitiveOpaque(TransitiveOpaqueExtendedCommunity::Unassigned {
        sub_type: ENCAPSULATION_SUBTYPE,
        value: [0, 0, 0, 0, t[0], t[1]],
    })
}

/// The EVPN Router's MAC extended community.
pub fn router_mac_to_wire(mac: [u8; 6]) -> ExtendedCommunity {
    ExtendedCommunity::Evpn(EvpnExtendedCommunity::EvpnRoutersMac {
        mac: MacAddress::new(mac),
    })
}

/// What the extended communities of a received route say.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DecodedExtCommunities {
    /// Route targets, in the order received.
    pub route_targets: Vec<RouteTarget>,
    /// The first Encapsulation extended community.
    pub encap: Option<Encapsulation>,
    /// The EVPN Router's MAC.
    pub router_mac: Option<[u8; 6]>,
}

/// Picks route targets, encapsulation and router MAC out of a community list;
/// other communities are ignored.
pub fn decode_ext_communities(list: &[ExtendedCommunity]) -> DecodedExtCommunities {
    let mut out = DecodedExtCommunities::default();
    for c in list {
        match c {
            ExtendedCommunity::TransitiveTwoOctet(
                TransitiveTwoOctetExtendedCommunity::RouteTarget {
                    global_admin,
                    local_admin,
                },
            ) => out.route_targets.push(RouteTarget::As2 {
                asn: *global_admin,
                number: *local_admin,
            }),
            ExtendedCommunity::TransitiveIpv4(TransitiveIpv4ExtendedCommunity::RouteTarget {
                global_admin,
                local_admin,
            }) => out.route_targets.push(RouteTarget::Ipv4 {
                addr: *global_admin,
                number: *local_admin,
            }),
            ExtendedCommunity::TransitiveFourOctet(
                TransitiveFourOctetExtendedCommunity::RouteTarget {
                    global_admin,
                    local_admin,
                },
            ) => out.route_targets.push(RouteTarget::As4 {
                asn: *global_admin,
                number: *local_admin,
            }),
            ExtendedCommunity::TransitiveOpaque(
                TransitiveOpaqueExtendedCommunity::Unassigned {
                    sub_type: ENCAPSULATION_SUBTYPE,
                    value,
                },
            ) if out.encap.is_none() => {
                out.encap = Some(Encapsulation::from_tunnel_type(u16::from_be_bytes([
                    value[4], value[5],
                ])));
            }
            ExtendedCommunity::Evpn(EvpnExtendedCommunity::EvpnRoutersMac { mac }) => {
                out.router_mac = Some(*mac.value());
            }
            _ => {}
        }
    }
    out
}

/// An MPLS label field (20-bit label, bottom of stack) for VPNv4.
pub fn mpls_label(label: u32) -> MplsLabel {
    let v = (label << 4) | 1;
    MplsLabel::new([(v >> 16) as u8, (v >> 8) as u8, v as u8])
}

/// The 20-bit label in an MPLS label field.
pub fn mpls_label_value(l: &MplsLabel) -> u32 {
    let b = l.value();
    ((u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2])) >> 4
}

/// A 24-bit VNI in a label field, as EVPN over VXLAN encodes it (RFC 8365
/// section 5.1.3).
pub fn vni_label(vni: u32) -> MplsLabel {
    MplsLabel::new([(vni >> 16) as u8, (vni >> 8) as u8, vni as u8])
}

/// The 24-bit value of a label field.
pub fn vni_value(l: &MplsLabel) -> u32 {
    let b = l.value();
    (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2])
}

/// The label value used in VPNv4 withdrawals (RFC 8277 section 2.4).
pub fn withdraw_label() -> MplsLabel {
    MplsLabel::new([0x80, 0, 0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_roundtrip() {
        for l in [0, 16, 100, 0xF_FFFF] {
            assert_eq!(mpls_label_value(&mpls_label(l)), l);
            assert!(mpls_label(l).is_bottom());
        }
        assert_eq!(mpls_label(100).value(), &[0x00, 0x06, 0x41]);
        assert_eq!(vni_value(&vni_label(0xABCDEF)), 0xABCDEF);
    }

    #[test]
    fn ext_communities_roundtrip() {
        let rts: Vec<RouteTarget> = ["65000:1", "192.0.2.1:5", "4200000000:7"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let mut list: Vec<_> = rts.iter().map(|rt| rt_to_wire(*rt)).collect();
        list.push(encap_to_wire(Encapsulation::Vxlan));
        list.push(router_mac_to_wire([2, 0, 0, 0, 0, 1]));
        let d = decode_ext_communities(&list);
        assert_eq!(d.route_targets, rts);
        assert_eq!(d.encap, Some(Encapsulation::Vxlan));
        assert_eq!(d.router_mac, Some([2, 0, 0, 0, 0, 1]));
    }
}
