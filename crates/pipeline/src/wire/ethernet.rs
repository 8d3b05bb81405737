//! Ethernet II frames with up to two 802.1Q/802.1ad tags.

use super::{ParseError, field};
use crate::ir::ethertype;
use crate::mac::MacAddr;

/// Length of an untagged Ethernet header.
pub const HEADER_LEN: usize = 14;
/// Length of one VLAN tag.
pub const TAG_LEN: usize = 4;
/// Most tags the parser accepts (QinQ).
pub const MAX_TAGS: usize = 2;

mod f {
    use super::super::field::Field;
    pub const DST: Field = 0..6;
    pub const SRC: Field = 6..12;
}

/// True for the TPIDs the parser treats as VLAN tags (802.1Q, 802.1ad, the old 0x9100).
pub fn is_tpid(t: u16) -> bool {
    t == ethertype::VLAN || t == ethertype::QINQ || t == 0x9100
}

/// A read/write view of an Ethernet frame. After [`EthernetFrame::new_checked`] no accessor
/// panics.
#[derive(Debug, Clone)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
    tags: usize,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Wraps `buffer` after checking it holds the Ethernet header and every VLAN tag it
    /// announces (at most [`MAX_TAGS`]).
    pub fn new_checked(buffer: T) -> Result<Self, ParseError> {
        let b = buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(ParseError::Truncated {
                layer: "ethernet",
                need: HEADER_LEN,
                have: b.len(),
            });
        }
        let mut tags = 0;
        loop {
            let at = 12 + tags * TAG_LEN;
            let t = field::be16(b, at).unwrap_or(0);
            if !is_tpid(t) {
                break;
            }
            if tags == MAX_TAGS {
                return Err(ParseError::TooManyVlanTags);
            }
            tags += 1;
            let need = HEADER_LEN + tags * TAG_LEN;
            if b.len() < need {
                return Err(ParseError::Truncated {
                    layer: "vlan",
                    need,
                    have: b.len(),
                });
            }
        }
        Ok(EthernetFrame { buffer, tags })
    }

    /// Destination address.
    pub fn dst(&self) -> MacAddr {
        field::mac(self.buffer.as_ref(), f::DST.start)
    }

    /// Source address.
    pub fn src(&self) -> MacAddr {
        field::mac(self.buffer.as_ref(), f::SRC.start)
    }

    /// Number of VLAN tags (0..=2).
    pub fn tag_count(&self) -> usize {
        self.tags
    }

    /// VLAN id of tag `i` (0 = outermost), if present.
    pub fn vid(&self, i: usize) -> Option<u16> {
        if i >= self.tags {
            return None;
        }
        field::be16(self.buffer.as_ref(), 14 + i * TAG_LEN).map(|tci| tci & 0x0fff)
    }

    /// Ethertype after the tags.
    pub fn ethertype(&self) -> u16 {
        field::be16(self.buffer.as_ref(), 12 + self.tags * TAG_LEN).unwrap_or(0)
    }

    /// Header length including tags; the payload starts here.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.tags * TAG_LEN
    }

    /// The payload after the header.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    /// Rewrites the destination address.
    pub fn set_dst(&mut self, m: MacAddr) {
        self.buffer.as_mut()[f::DST].copy_from_slice(&m.0);
    }

    /// Rewrites the source address.
    pub fn set_src(&mut self, m: MacAddr) {
        self.buffer.as_mut()[f::SRC].copy_from_slice(&m.0);
    }
}

/// Writes an Ethernet header with `vlans` (outermost first, TPID 0x8100) into `out`.
pub fn emit_header(out: &mut Vec<u8>, dst: MacAddr, src: MacAddr, vlans: &[u16], ethertype: u16) {
    out.extend_from_slice(&dst.0);
    out.extend_from_slice(&src.0);
    for v in vlans {
        out.extend_from_slice(&ethertype::VLAN.to_be_bytes());
        out.extend_from_slice(&(v & 0x0fff).to_be_bytes());
    }
    out.extend_from_slice(&ethertype.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qinq_frame() {
        let bytes: [u8; 22] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 1, 0x88, 0xa8, 0x00, 0x64, 0x81,
            0x00, 0x20, 0x0a, 0x08, 0x06,
        ];
        let f = EthernetFrame::new_checked(&bytes[..]).unwrap();
        assert_eq!(f.tag_count(), 2);
        assert_eq!(f.vid(0), Some(100));
        assert_eq!(f.vid(1), Some(10));
        assert_eq!(f.vid(2), None);
        assert_eq!(f.ethertype(), 0x0806);
        assert!(f.dst().is_broadcast());
        assert_eq!(f.header_len(), 22);
    }

    #[test]
    fn truncated_and_triple_tags_are_errors() {
        assert!(EthernetFrame::new_checked(&[0u8; 13][..]).is_err());
        let mut b = vec![0u8; 12];
        b.extend_from_slice(&[0x81, 0x00, 0x00]);
        assert!(EthernetFrame::new_checked(&b[..]).is_err());
        let mut b = vec![0u8; 12];
        for _ in 0..3 {
            b.extend_from_slice(&[0x81, 0x00, 0x00, 0x01]);
        }
        b.extend_from_slice(&[0x08, 0x00]);
        assert_eq!(
            EthernetFrame::new_checked(&b[..]).unwrap_err(),
            ParseError::TooManyVlanTags
        );
    }
}
