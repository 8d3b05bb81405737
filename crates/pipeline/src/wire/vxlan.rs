//! The VXLAN header (RFC 7348): 8 bytes, flags with the I bit, 24-bit VNI. The outer IP/UDP
//! headers are the forwarder's (a kernel UDP socket on port 4789).

use super::ParseError;

/// IANA-assigned VXLAN UDP port.
pub const UDP_PORT: u16 = 4789;
/// VXLAN header length.
pub const HEADER_LEN: usize = 8;
/// The I flag: the VNI is valid.
pub const FLAG_I: u8 = 0x08;
/// Largest VNI (24 bits).
pub const MAX_VNI: u32 = 0x00ff_ffff;

/// Encodes the header for `vni` (only its low 24 bits are used).
pub fn encode(vni: u32) -> [u8; HEADER_LEN] {
    let v = (vni & MAX_VNI).to_be_bytes();
    [FLAG_I, 0, 0, 0, v[1], v[2], v[3], 0]
}

/// Decodes a VXLAN datagram payload into its VNI and the inner Ethernet frame. Reserved bits
/// are ignored on receipt as RFC 7348 requires; a missing I flag is an error.
pub fn decode(datagram: &[u8]) -> Result<(u32, &[u8]), ParseError> {
    if datagram.len() < HEADER_LEN {
        return Err(ParseError::Truncated {
            layer: "vxlan",
            need: HEADER_LEN,
            have: datagram.len(),
        });
    }
    if datagram[0] & FLAG_I == 0 {
        return Err(ParseError::Malformed {
            layer: "vxlan",
            what: "I flag clear (VNI not valid)",
        });
    }
    let vni = u32::from_be_bytes([0, datagram[4], datagram[5], datagram[6]]);
    Ok((vni, &datagram[HEADER_LEN..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wire_bytes() {
        assert_eq!(encode(0x123456), [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
        let mut d = encode(5001).to_vec();
        d.extend_from_slice(&[1, 2, 3]);
        assert_eq!(decode(&d).unwrap(), (5001, &[1u8, 2, 3][..]));
        // Reserved bits set by a peer are ignored.
        d[1] = 0xff;
        d[7] = 0xff;
        assert_eq!(decode(&d).unwrap().0, 5001);
        d[0] = 0;
        assert!(decode(&d).is_err());
        assert!(decode(&d[..7]).is_err());
        assert_eq!(encode(0x0100_0001), encode(1));
    }
}
