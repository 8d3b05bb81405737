//! Names, table layouts, registers and derived values shared by every part
//! of the compiler. Names are built from ids (not display names) so that a
//! rename changes no flow.

use std::net::IpAddr;

use weft_model::{Id, Mac};
use weft_pipeline::MacAddr;

/// The logical switch of an l2-network.
pub fn ls(net: &Id) -> String {
    format!("ls:{net}")
}

/// The logical router of an l3vpn (its VRF).
pub fn lr(vrf: &Id) -> String {
    format!("lr:{vrf}")
}

/// The switch-side leg of the router port of a subnet.
pub fn leg_switch(subnet: &Id) -> String {
    format!("rps:{subnet}")
}

/// The router-side leg of the router port of a subnet.
pub fn leg_router(subnet: &Id) -> String {
    format!("rpr:{subnet}")
}

/// The flood group of a switch.
pub fn flood(net: &Id) -> String {
    format!("flood:{net}")
}

/// The address set of a security group's members, per IP version.
pub fn sg_set(sg: &Id, v6: bool) -> String {
    format!("sg:{sg}:{}", if v6 { "ip6" } else { "ip4" })
}

/// The ECMP group of the holders of an address in a VRF (anycast).
pub fn anycast_group(vrf: &Id, ip: IpAddr, ctx: &str) -> String {
    format!("anycast:{vrf}:{ip}{ctx}")
}

/// The ECMP group of a static route's next hops.
pub fn static_group(vrf: &Id, prefix: &ipnet::IpNet, into: &Id) -> String {
    format!("static:{vrf}:{prefix}@{into}")
}

/// Converts a model MAC into the pipeline's.
pub fn mac(m: Mac) -> MacAddr {
    MacAddr(m.0)
}

fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The distributed router MAC of a VRF: locally administered, derived from
/// its id, the same on every host.
pub fn router_mac(vrf: &Id) -> MacAddr {
    let b = fnv(vrf.as_str()).to_be_bytes();
    MacAddr([0x02, 0x57, b[4], b[5], b[6], b[7]])
}

/// The MAC local services of a network without a router answer from.
pub fn service_mac(net: &Id) -> MacAddr {
    let b = fnv(net.as_str()).to_be_bytes();
    MacAddr([0x02, 0x58, b[4], b[5], b[6], b[7]])
}

/// The connection-tracking zone of a port. Zones only need to differ among
/// the ports of one host; a hash of the id does that with overwhelming
/// probability and is the same whatever order ports were created in.
pub fn zone(port: &Id) -> u16 {
    let z = (fnv(port.as_str()) % 65_000) as u16;
    z + 1
}

/// Tables of a logical switch, in pipeline order.
pub mod ls_table {
    /// Ingress port security (anti-spoofing).
    pub const PORT_SEC: &str = "ls_in_port_sec";
    /// Connection tracking lookup for the source port.
    pub const PRE_ACL: &str = "ls_in_pre_acl";
    /// The source port's security groups (egress rules, from the VM).
    pub const ACL: &str = "ls_in_acl";
    /// ARP and ND answered from known bindings.
    pub const ARP_RSP: &str = "ls_in_arp_rsp";
    /// Local services: DHCP, DNS, router advertisements.
    pub const SERVICES: &str = "ls_in_services";
    /// Destination lookup by Ethernet address.
    pub const L2_LKUP: &str = "ls_in_l2_lkup";
    /// Local destinations continue, remote ones go to their host.
    pub const DISPATCH: &str = "ls_out_dispatch";
    /// Connection tracking lookup for the destination port.
    pub const OUT_PRE_ACL: &str = "ls_out_pre_acl";
    /// The destination port's security groups (ingress rules, to the VM).
    pub const OUT_ACL: &str = "ls_out_acl";
    /// Delivery to the destination port.
    pub const OUTPUT: &str = "ls_out_output";
    /// Entry of packets from tunnels (marks them, then looks up).
    pub const TUNNEL: &str = "ls_in_tunnel";
    /// All, in order.
    pub const ALL: [&str; 11] = [
        PORT_SEC,
        PRE_ACL,
        ACL,
        ARP_RSP,
        SERVICES,
        L2_LKUP,
        DISPATCH,
        OUT_PRE_ACL,
        OUT_ACL,
        OUTPUT,
        TUNNEL,
    ];
}

/// Tables of a logical router (VRF), in pipeline order.
pub mod lr_table {
    /// Ingress port security of routed ports.
    pub const PORT_SEC: &str = "lr_in_port_sec";
    /// Connection tracking lookup for a routed source port.
    pub const PRE_ACL: &str = "lr_in_pre_acl";
    /// A routed source port's security groups.
    pub const ACL: &str = "lr_in_acl";
    /// ARP/ND of routed ports: the router answers for every address.
    pub const ARP: &str = "lr_in_arp";
    /// Packets for the router itself: ping, TTL expiry.
    pub const IP_INPUT: &str = "lr_in_ip_input";
    /// MTU check towards the destination.
    pub const MTU: &str = "lr_in_mtu";
    /// Longest-prefix routing.
    pub const ROUTING: &str = "lr_in_routing";
    /// Local destinations continue, remote ones go to their host.
    pub const DISPATCH: &str = "lr_out_dispatch";
    /// Connection tracking lookup for a routed destination port.
    pub const OUT_PRE_ACL: &str = "lr_out_pre_acl";
    /// A routed destination port's security groups.
    pub const OUT_ACL: &str = "lr_out_acl";
    /// Delivery to a routed port.
    pub const OUTPUT: &str = "lr_out_output";
    /// Entry of packets from tunnels with the VRF's VNI.
    pub const TUNNEL: &str = "lr_in_tunnel";
    /// All, in order.
    pub const ALL: [&str; 12] = [
        PORT_SEC,
        PRE_ACL,
        ACL,
        ARP,
        IP_INPUT,
        MTU,
        ROUTING,
        DISPATCH,
        OUT_PRE_ACL,
        OUT_ACL,
        OUTPUT,
        TUNNEL,
    ];
}

/// Register bits the compiler uses.
pub mod reg {
    /// `reg7` bit 0: the packet came from a tunnel (never send it back into one).
    pub const FLAGS: u8 = 7;
    /// Flag: from a tunnel.
    pub const FROM_TUNNEL: u32 = 1;
    /// `reg5`: security bypass for ports without port security.
    pub const NOSEC: u8 = 5;
    /// Bit for the source side.
    pub const NOSEC_IN: u32 = 1;
    /// Bit for the destination side.
    pub const NOSEC_OUT: u32 = 2;
    /// `reg6`: routing context inside a hub-and-spoke VRF.
    pub const CTX: u8 = 6;
    /// Context of packets from spoke ports.
    pub const CTX_SPOKE: u32 = 1;
}

/// Flow priorities of ACL stages.
pub mod prio {
    /// Ports without port security skip filtering.
    pub const ACL_BYPASS: u16 = 65535;
    /// ARP and neighbour discovery pass.
    pub const ACL_L2_CONTROL: u16 = 65534;
    /// Invalid connection-tracking state drops.
    pub const ACL_INVALID: u16 = 65533;
    /// Established and related traffic passes.
    pub const ACL_ESTABLISHED: u16 = 65532;
    /// DHCP to the local server passes.
    pub const ACL_DHCP: u16 = 65531;
    /// Reject and drop rules (win over allows).
    pub const ACL_DENY: u16 = 2000;
    /// Allow rules.
    pub const ACL_ALLOW: u16 = 1000;
    /// Routes in the spoke context of a hub-and-spoke VRF (above every plain route).
    pub const SPOKE_BASE: u16 = 1000;
}

/// The routing priority of a prefix: longer prefixes win.
pub fn route_prio(net: &ipnet::IpNet) -> u16 {
    // IPv4 /32 → 64+..., IPv6 /128 → 256; keep v4 and v6 apart.
    match net {
        ipnet::IpNet::V4(n) => 2 * n.prefix_len() as u16,
        ipnet::IpNet::V6(n) => 2 * n.prefix_len() as u16,
    }
}
