//! IP address helpers: parsing CIDRs strictly, subnet arithmetic and
//! allocation of free addresses from pools.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::error::{ModelError, Result};
use crate::resources::{AllocationPool, Subnet};
use crate::types::Id;

/// Parses a CIDR, refusing host bits (`10.1.1.5/24`) and bare addresses.
pub fn parse_cidr(s: &str) -> Result<IpNet> {
    let net: IpNet = s.trim().parse().map_err(|_| {
        ModelError::invalid(format!(
            "invalid CIDR {s:?}: expected an address and prefix length like 10.1.1.0/24 or 2001:db8::/64"
        ))
    })?;
    if net.trunc() != net {
        return Err(ModelError::invalid(format!(
            "CIDR {s} has host bits set; did you mean {}?",
            net.trunc()
        )));
    }
    Ok(net)
}

/// Parses a prefix for matching (host bits must be zero), e.g. a remote prefix.
pub fn parse_prefix(s: &str) -> Result<IpNet> {
    if !s.contains('/') {
        // A bare address means a host route.
        let ip: IpAddr = s.trim().parse().map_err(|_| {
            ModelError::invalid(format!(
                "invalid prefix {s:?}: expected a CIDR like 10.0.0.0/8 or an address"
            ))
        })?;
        return Ok(IpNet::from(ip));
    }
    parse_cidr(s)
}

/// Converts an address to a number for arithmetic.
pub fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

/// Converts a number back into an address of the same family as `like`.
pub fn u128_to_ip(n: u128, like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(n as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

/// True if `ip` is the network or (IPv4) broadcast address of `net`, which
/// cannot be given to a port.
pub fn is_reserved_in(net: &IpNet, ip: IpAddr) -> bool {
    if ip == net.network() {
        return net.prefix_len() < net.max_prefix_len();
    }
    matches!(net, IpNet::V4(n) if n.prefix_len() < 31 && IpAddr::V4(n.broadcast()) == ip)
}

/// The first usable host address of a subnet (the default gateway).
pub fn first_host(net: &IpNet) -> IpAddr {
    u128_to_ip(ip_to_u128(net.network()) + 1, net.network())
}

/// The default allocation pool: every host address but the gateway.
pub fn default_pools(net: &IpNet, gateway: Option<IpAddr>) -> Vec<AllocationPool> {
    let first = ip_to_u128(net.network()) + 1;
    let last = match net {
        IpNet::V4(n) => u32::from(n.broadcast()) as u128 - 1,
        IpNet::V6(n) => u128::from(n.broadcast()),
    };
    if first > last {
        return Vec::new();
    }
    let like = net.network();
    let mut pools = Vec::new();
    match gateway.map(ip_to_u128) {
        Some(g) if g >= first && g <= last => {
            if g > first {
                pools.push((first, g - 1));
            }
            if g < last {
                pools.push((g + 1, last));
            }
        }
        _ => pools.push((first, last)),
    }
    pools
        .into_iter()
        .map(|(a, b)| AllocationPool {
            start: u128_to_ip(a, like),
            end: u128_to_ip(b, like),
        })
        .collect()
}

/// At most this many candidates are examined per allocation, so a huge,
/// nearly full IPv6 pool cannot stall the writer.
const MAX_SCAN: u128 = 1 << 20;

/// Finds the lowest free address in the subnet's pools.
pub fn allocate(subnet: &Subnet, used: Option<&HashMap<IpAddr, Id>>) -> Option<IpAddr> {
    for pool in &subnet.allocation_pools {
        let (start, end) = (ip_to_u128(pool.start), ip_to_u128(pool.end));
        let mut n = start;
        while n <= end && n - start < MAX_SCAN {
            let ip = u128_to_ip(n, pool.start);
            let taken = used.is_some_and(|u| u.contains_key(&ip)) || Some(ip) == subnet.gateway;
            if !taken {
                return Some(ip);
            }
            n += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_parsing() {
        assert_eq!(
            parse_cidr("10.1.1.0/24").unwrap().to_string(),
            "10.1.1.0/24"
        );
        let e = parse_cidr("10.1.1.5/24").unwrap_err();
        assert!(e.message.contains("did you mean 10.1.1.0/24"), "{e}");
        assert!(parse_cidr("10.1.1.0").is_err());
        assert!(parse_cidr("10.1.1.0/33").is_err());
        assert!(parse_cidr("banana").is_err());
        assert_eq!(parse_prefix("10.0.0.1").unwrap().to_string(), "10.0.0.1/32");
    }

    #[test]
    fn pools_and_allocation() {
        let net: IpNet = "10.1.1.0/29".parse().unwrap();
        let gw = first_host(&net);
        assert_eq!(gw.to_string(), "10.1.1.1");
        let pools = default_pools(&net, Some(gw));
        assert_eq!(pools.len(), 1);
        assert_eq!(pools[0].start.to_string(), "10.1.1.2");
        assert_eq!(pools[0].end.to_string(), "10.1.1.6");
        assert!(is_reserved_in(&net, "10.1.1.0".parse().unwrap()));
        assert!(is_reserved_in(&net, "10.1.1.7".parse().unwrap()));
        assert!(!is_reserved_in(&net, "10.1.1.6".parse().unwrap()));
        let subnet = Subnet {
            id: Id::new("s"),
            name: String::new(),
            cidr: net,
            gateway: Some(gw),
            dhcp: true,
            dns_servers: vec![],
            allocation_pools: pools,
            host_routes: vec![],
        };
        let mut used = HashMap::new();
        for want in ["10.1.1.2", "10.1.1.3", "10.1.1.4", "10.1.1.5", "10.1.1.6"] {
            let ip = allocate(&subnet, Some(&used)).unwrap();
            assert_eq!(ip.to_string(), want);
            used.insert(ip, Id::new("p"));
        }
        assert_eq!(allocate(&subnet, Some(&used)), None);
    }

    #[test]
    fn gateway_in_the_middle_splits_the_pool() {
        let net: IpNet = "10.0.0.0/28".parse().unwrap();
        let pools = default_pools(&net, Some("10.0.0.5".parse().unwrap()));
        let text: Vec<_> = pools
            .iter()
            .map(|p| format!("{}-{}", p.start, p.end))
            .collect();
        assert_eq!(text, ["10.0.0.1-10.0.0.4", "10.0.0.6-10.0.0.14"]);
    }
}
