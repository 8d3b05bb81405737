//! The Internet checksum (RFC 1071) with IPv4/IPv6 pseudo-headers and RFC 1624 incremental
//! updates.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Adds `data` as big-endian 16-bit words (an odd last byte is padded with zero) to `acc`.
pub fn sum(mut acc: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc = acc.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
        // Fold early so long inputs cannot overflow the accumulator.
        if acc >= 0x8000_0000 {
            acc = (acc & 0xffff) + (acc >> 16);
        }
    }
    if let [last] = chunks.remainder() {
        acc = acc.wrapping_add(u32::from(*last) << 8);
    }
    acc
}

/// Folds a 32-bit accumulator into the final one's-complement 16-bit checksum.
pub fn finish(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// The checksum of `data` alone (IPv4 header, ICMPv4).
pub fn checksum(data: &[u8]) -> u16 {
    finish(sum(0, data))
}

/// The pseudo-header sum for an upper-layer checksum (TCP, UDP, ICMPv6).
pub fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: u32) -> u32 {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => pseudo_v4(s, d, proto, len as u16),
        (IpAddr::V6(s), IpAddr::V6(d)) => pseudo_v6(s, d, proto, len),
        // Mixed families cannot occur in one packet; sum both addresses anyway.
        (s, d) => {
            let acc = sum(0, &ip_bytes(s));
            let acc = sum(acc, &ip_bytes(d));
            acc + u32::from(proto) + len
        }
    }
}

fn ip_bytes(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// IPv4 pseudo-header sum: source, destination, zero, protocol, upper-layer length.
pub fn pseudo_v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: u16) -> u32 {
    let acc = sum(0, &src.octets());
    let acc = sum(acc, &dst.octets());
    acc + u32::from(proto) + u32::from(len)
}

/// IPv6 pseudo-header sum (RFC 8200 section 8.1).
pub fn pseudo_v6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, len: u32) -> u32 {
    let acc = sum(0, &src.octets());
    let acc = sum(acc, &dst.octets());
    acc + (len >> 16) + (len & 0xffff) + u32::from(proto)
}

/// The checksum of an upper-layer message with its pseudo-header; the message's own checksum
/// field must be zero (or be skipped by the caller).
pub fn upper_layer(src: IpAddr, dst: IpAddr, proto: u8, msg: &[u8]) -> u16 {
    finish(sum(pseudo_header(src, dst, proto, msg.len() as u32), msg))
}

/// RFC 1624 eqn. 3: the new checksum after one 16-bit word changed from `old` to `new`.
pub fn update16(csum: u16, old: u16, new: u16) -> u16 {
    let acc = u32::from(!csum) + u32::from(!old) + u32::from(new);
    finish(acc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // The example words of RFC 1071 section 3: sum 0xddf2, checksum 0x220d.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&data), !0xddf2);
    }

    #[test]
    fn ipv4_header_from_wikipedia() {
        // A classic IPv4 header whose checksum is 0xb861.
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&h), 0xb861);
        h[10] = 0xb8;
        h[11] = 0x61;
        assert_eq!(checksum(&h), 0);
    }

    #[test]
    fn incremental_update_matches_recomputation() {
        let mut h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        for _ in 0..70 {
            let old = u16::from_be_bytes([h[8], h[9]]);
            h[8] = h[8].wrapping_sub(1);
            let new = u16::from_be_bytes([h[8], h[9]]);
            let c = update16(u16::from_be_bytes([h[10], h[11]]), old, new);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            assert_eq!(checksum(&h), 0, "ttl {}", h[8]);
        }
    }
}
