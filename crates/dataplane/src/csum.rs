//! Internet checksum (RFC 1071) arithmetic for the offload paths.
//!
//! Sums are kept as an unfolded `u64` in the big-endian (network) domain, so
//! pseudo-header words and byte slices can be mixed freely. Byte slices are
//! summed in native byte order (which the compiler vectorises) and swapped
//! once at the end, using RFC 1071's byte-order independence.

/// A running one's complement sum of 16-bit big-endian words.
///
/// Every byte slice added except the last must have an even length, or the
/// following words would be misaligned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checksum(u64);

impl Checksum {
    /// An empty sum.
    pub const fn new() -> Self {
        Checksum(0)
    }

    /// Adds a byte slice (a trailing odd byte is padded with zero).
    #[inline]
    pub fn add_bytes(&mut self, data: &[u8]) {
        self.0 += u64::from(be_sum(data));
    }

    /// Adds one 16-bit word given as a number.
    #[inline]
    pub fn add_u16(&mut self, word: u16) {
        self.0 += u64::from(word);
    }

    /// Adds a 32-bit value as two 16-bit words.
    #[inline]
    pub fn add_u32(&mut self, value: u32) {
        self.0 += u64::from(value >> 16) + u64::from(value & 0xffff);
    }

    /// The folded 16-bit sum, not inverted (what a partial checksum field holds).
    #[inline]
    pub fn fold(self) -> u16 {
        fold64(self.0)
    }

    /// The value to store in a checksum field: the inverted folded sum.
    #[inline]
    pub fn finish(self) -> u16 {
        !self.fold()
    }

    /// The IPv4 pseudo-header sum for `proto` and an upper-layer length.
    pub fn pseudo_v4(src: [u8; 4], dst: [u8; 4], proto: u8, len: u32) -> Self {
        let mut c = Checksum::new();
        c.add_bytes(&src);
        c.add_bytes(&dst);
        c.add_u16(u16::from(proto));
        c.add_u32(len);
        c
    }

    /// The IPv6 pseudo-header sum (RFC 8200 §8.1) for `proto` and an upper-layer length.
    pub fn pseudo_v6(src: [u8; 16], dst: [u8; 16], proto: u8, len: u32) -> Self {
        let mut c = Checksum::new();
        c.add_bytes(&src);
        c.add_bytes(&dst);
        c.add_u32(len);
        c.add_u16(u16::from(proto));
        c
    }
}

#[inline]
fn fold64(mut s: u64) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// Folded big-endian sum of `data`.
#[inline]
fn be_sum(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let v = u64::from_ne_bytes(<[u8; 8]>::try_from(c).unwrap_or([0; 8]));
        acc += (v & 0xffff_ffff) + (v >> 32);
    }
    let rest = chunks.remainder();
    let mut tail = [0u8; 8];
    tail[..rest.len()].copy_from_slice(rest);
    let v = u64::from_ne_bytes(tail);
    acc += (v & 0xffff_ffff) + (v >> 32);
    // A native-order sum equals the big-endian sum with its bytes swapped.
    u16::from_be(fold64(acc))
}

/// The value to store in a checksum field covering just `data` (e.g. an IPv4 header
/// whose checksum field is zero).
pub fn checksum(data: &[u8]) -> u16 {
    let mut c = Checksum::new();
    c.add_bytes(data);
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference implementation straight from RFC 1071.
    fn reference(data: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        let mut i = 0;
        while i + 1 < data.len() {
            sum += u32::from(u16::from_be_bytes([data[i], data[i + 1]]));
            i += 2;
        }
        if i < data.len() {
            sum += u32::from(data[i]) << 8;
        }
        while sum >> 16 != 0 {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 §3 example bytes: sum is 0xddf2, checksum its complement.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        let mut c = Checksum::new();
        c.add_bytes(&data);
        assert_eq!(c.fold(), 0xddf2);
        assert_eq!(c.finish(), !0xddf2);
    }

    #[test]
    fn ipv4_header_from_wire() {
        // A real IPv4 header (checksum 0xb861 at bytes 10..12).
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&hdr), 0, "a valid header sums to zero");
        hdr[10] = 0;
        hdr[11] = 0;
        assert_eq!(checksum(&hdr), 0xb861);
    }

    #[test]
    fn odd_lengths_and_all_sizes_match_reference() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in 0..data.len() {
            assert_eq!(checksum(&data[..len]), reference(&data[..len]), "len {len}");
        }
    }

    #[test]
    fn split_sums_match_whole() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 13 + 5) as u8).collect();
        for cut in (0..data.len()).step_by(2) {
            let mut c = Checksum::new();
            c.add_bytes(&data[..cut]);
            c.add_bytes(&data[cut..]);
            assert_eq!(c.finish(), reference(&data), "cut {cut}");
        }
    }
}
