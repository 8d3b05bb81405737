//! Byte formats of [`Iblt`] and [`StrataEstimator`], hand-rolled so that empty cells cost one
//! bit and every length is checked before anything is allocated.
//!
//! ```text
//! IBLT:   'I' | version=1 | k: u8 | cells: varint | seed: u64 LE | body
//! strata: 'S' | version=1 | strata: u8 | k: u8 | cells: varint | seed: u64 LE | body * strata
//! body:   bitmap of non-empty cells, ceil(cells/8) bytes, cell i is bit i%8 of byte i/8;
//!         then for each non-empty cell in order:
//!         count: zigzag varint (i32) | key_sum: u64 LE | hash_sum: u32 LE
//! ```
//!
//! A non-empty cell costs 13 to 17 bytes; a table of `m` cells at most `m * 17 + m/8 + 16`.

use crate::iblt::{Cell, Iblt, MAX_CELLS, ParamError};
use crate::strata::{MAX_STRATUM_CELLS, StrataEstimator, StrataParams};
use thiserror::Error;

const IBLT_MAGIC: u8 = b'I';
const STRATA_MAGIC: u8 = b'S';
const VERSION: u8 = 1;

/// Bytes could not be decoded into a table or an estimator.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// The input ended before the value did.
    #[error(
        "reconciliation message truncated: needed {needed} more bytes at offset {at}; the sender and receiver disagree on the format or the message was cut"
    )]
    Truncated {
        /// Bytes missing.
        needed: usize,
        /// Offset where they were needed.
        at: usize,
    },
    /// The first two bytes were not the expected magic and version.
    #[error(
        "reconciliation message starts with {magic:#04x} version {version}, expected {expected:#04x} version 1; upgrade the older side"
    )]
    BadHeader {
        /// Magic byte found.
        magic: u8,
        /// Version byte found.
        version: u8,
        /// Magic byte expected.
        expected: u8,
    },
    /// A varint was longer than five bytes or did not fit its type.
    #[error("malformed varint at offset {at}; the message is corrupt")]
    BadVarint {
        /// Offset of the varint.
        at: usize,
    },
    /// The header's parameters are out of range.
    #[error("reconciliation message has bad parameters: {0}")]
    Params(#[from] ParamError),
    /// The bitmap marks cells past the last one, so the encoding is not the canonical one.
    #[error(
        "reconciliation message sets bitmap bits past the last cell at offset {at}; the message is corrupt"
    )]
    StrayBits {
        /// Offset of the last bitmap byte.
        at: usize,
    },
    /// Bytes remained after the value.
    #[error("reconciliation message has {extra} trailing bytes; the message is corrupt")]
    TrailingBytes {
        /// Bytes left over.
        extra: usize,
    },
}

impl Iblt {
    /// Encodes the table (see the module docs for the format).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend([IBLT_MAGIC, VERSION, self.k()]);
        put_varint(&mut out, self.cells() as u32);
        out.extend(self.seed().to_le_bytes());
        put_body(&mut out, self.raw_cells());
        out
    }

    /// Decodes a table from untrusted bytes: never panics, allocates at most [`MAX_CELLS`]
    /// cells and no more than 8 cells per input byte (the
    /// bitmap must be present before the cells are allocated).
    pub fn from_bytes(bytes: &[u8]) -> Result<Iblt, WireError> {
        let mut r = Reader::new(bytes);
        r.header(IBLT_MAGIC)?;
        let k = r.u8()?;
        let cells = r.varint()? as usize;
        if !(3..=4).contains(&k) {
            return Err(ParamError::BadK(k).into());
        }
        if cells == 0 || cells > MAX_CELLS || !cells.is_multiple_of(usize::from(k)) {
            return Err(ParamError::BadCells {
                cells,
                max: MAX_CELLS,
            }
            .into());
        }
        let seed = r.u64()?;
        let body = r.body(cells)?;
        r.finish()?;
        Ok(Iblt::with_cells(k, seed, body))
    }
}

impl StrataEstimator {
    /// Encodes the estimator (see the module docs for the format).
    pub fn to_bytes(&self) -> Vec<u8> {
        let p = self.params();
        let mut out = Vec::new();
        out.extend([STRATA_MAGIC, VERSION, p.strata, p.k]);
        put_varint(&mut out, u32::from(p.cells));
        out.extend(p.seed.to_le_bytes());
        for s in 0..usize::from(p.strata) {
            put_body(&mut out, self.cells_of(s));
        }
        out
    }

    /// Decodes an estimator from untrusted bytes: never panics, and the shape is bounded by
    /// [`crate::MAX_STRATA`] strata of [`MAX_STRATUM_CELLS`] cells.
    pub fn from_bytes(bytes: &[u8]) -> Result<StrataEstimator, WireError> {
        let mut r = Reader::new(bytes);
        r.header(STRATA_MAGIC)?;
        let strata = r.u8()?;
        let k = r.u8()?;
        let at = r.pos;
        let cells = r.varint()?;
        let cells = u16::try_from(cells)
            .ok()
            .filter(|&c| usize::from(c) <= MAX_STRATUM_CELLS)
            .ok_or(WireError::BadVarint { at })?;
        let seed = r.u64()?;
        let params = StrataParams {
            strata,
            cells,
            k,
            seed,
        };
        params.check()?;
        let mut tables = Vec::with_capacity(usize::from(strata));
        for _ in 0..strata {
            let body = r.body(usize::from(cells))?;
            tables.push(Iblt::with_cells(k, seed, body));
        }
        r.finish()?;
        Ok(StrataEstimator::from_strata(params, tables))
    }
}

fn put_body(out: &mut Vec<u8>, cells: &[Cell]) {
    let start = out.len();
    out.resize(start + cells.len().div_ceil(8), 0);
    for (i, c) in cells.iter().enumerate() {
        if !c.is_zero() {
            out[start + i / 8] |= 1 << (i % 8);
        }
    }
    for c in cells.iter().filter(|c| !c.is_zero()) {
        put_varint(out, ((c.count << 1) ^ (c.count >> 31)) as u32);
        out.extend(c.key_sum.to_le_bytes());
        out.extend(c.hash_sum.to_le_bytes());
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A cursor over untrusted bytes whose every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let left = self.buf.len() - self.pos;
        if n > left {
            return Err(WireError::Truncated {
                needed: n - left,
                at: self.pos,
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, WireError> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, WireError> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    fn varint(&mut self) -> Result<u32, WireError> {
        let at = self.pos;
        let mut v: u32 = 0;
        for i in 0..5 {
            let b = self.u8()?;
            // The fifth byte may only carry the top four bits of a u32.
            if i == 4 && b > 0x0f {
                return Err(WireError::BadVarint { at });
            }
            v |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(WireError::BadVarint { at })
    }

    fn header(&mut self, expected: u8) -> Result<(), WireError> {
        let magic = self.u8()?;
        let version = self.u8()?;
        if magic != expected || version != VERSION {
            return Err(WireError::BadHeader {
                magic,
                version,
                expected,
            });
        }
        Ok(())
    }

    /// Reads `cells` cells; the bitmap is checked to be present before the cells are allocated.
    fn body(&mut self, cells: usize) -> Result<Vec<Cell>, WireError> {
        let at = self.pos + cells / 8;
        let bitmap = self.take(cells.div_ceil(8))?;
        let mut out = vec![Cell::default(); cells];
        for (i, cell) in out.iter_mut().enumerate() {
            if bitmap[i / 8] & (1 << (i % 8)) == 0 {
                continue;
            }
            let z = self.varint()?;
            cell.count = ((z >> 1) as i32) ^ -((z & 1) as i32);
            cell.key_sum = self.u64()?;
            cell.hash_sum = self.u32()?;
        }
        // Bits past the last cell must be clear, so that every table has one encoding.
        if !cells.is_multiple_of(8) && bitmap[cells / 8] >> (cells % 8) != 0 {
            return Err(WireError::StrayBits { at });
        }
        Ok(out)
    }

    fn finish(&self) -> Result<(), WireError> {
        match self.buf.len() - self.pos {
            0 => Ok(()),
            extra => Err(WireError::TrailingBytes { extra }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iblt_bytes_follow_the_documented_layout() {
        let mut t = Iblt::new(12, 3, 0x0102_0304_0506_0708).unwrap();
        t.insert(5);
        let b = t.to_bytes();
        assert_eq!(&b[..4], &[b'I', 1, 3, 12]);
        assert_eq!(&b[4..12], &0x0102_0304_0506_0708u64.to_le_bytes());
        // Two bitmap bytes with three bits set, then three cells of count +1 (zigzag 2).
        assert_eq!(b[12].count_ones() + b[13].count_ones(), 3);
        assert_eq!(b.len(), 12 + 2 + 3 * 13);
        assert_eq!(b[14], 2);
        assert_eq!(&b[15..23], &5u64.to_le_bytes());
        assert_eq!(Iblt::from_bytes(&b).unwrap(), t);
    }

    #[test]
    fn negative_and_large_counts_round_trip() {
        let mut a = Iblt::new(12, 3, 1).unwrap();
        let b = a.clone();
        for id in 0..300 {
            a.remove(id);
        }
        let d = a.subtract(&b).unwrap();
        assert_eq!(Iblt::from_bytes(&d.to_bytes()).unwrap(), d);
    }

    #[test]
    fn strata_round_trip() {
        let s = StrataEstimator::from_ids(0..3000);
        assert_eq!(StrataEstimator::from_bytes(&s.to_bytes()).unwrap(), s);
    }

    #[test]
    fn rejects_malformed_input() {
        let good = Iblt::new(12, 3, 1).unwrap().to_bytes();
        let check = |bytes: &[u8], want: fn(&WireError) -> bool| {
            let err = Iblt::from_bytes(bytes).unwrap_err();
            assert!(want(&err), "{bytes:?}: {err}");
        };
        check(&[], |e| matches!(e, WireError::Truncated { .. }));
        check(&good[..good.len() - 1], |e| {
            matches!(e, WireError::Truncated { .. })
        });
        check(&[b'S', 1], |e| matches!(e, WireError::BadHeader { .. }));
        check(&[b'I', 2], |e| matches!(e, WireError::BadHeader { .. }));
        check(&[b'I', 1, 5, 12], |e| {
            matches!(e, WireError::Params(ParamError::BadK(5)))
        });
        check(&[b'I', 1, 3, 13], |e| matches!(e, WireError::Params(_)));
        check(&[b'I', 1, 3, 0xff, 0xff, 0xff, 0xff, 0x7f], |e| {
            matches!(e, WireError::BadVarint { .. })
        });
        // A huge but valid cell count with no bitmap behind it must not allocate first.
        check(
            &[b'I', 1, 4, 0x80, 0x80, 0x40, 0, 0, 0, 0, 0, 0, 0, 0],
            |e| matches!(e, WireError::Truncated { .. }),
        );
        let mut long = good.clone();
        long.push(0);
        check(&long, |e| {
            matches!(e, WireError::TrailingBytes { extra: 1 })
        });
        let mut stray = good.clone();
        stray[13] |= 0x80; // bit 15 of a 12-cell bitmap
        check(&stray, |e| matches!(e, WireError::StrayBits { at: 13 }));
    }

    #[test]
    fn strata_rejects_oversized_shapes() {
        let mut b = StrataEstimator::from_ids(0..10).to_bytes();
        b[2] = 200; // strata
        assert!(matches!(
            StrataEstimator::from_bytes(&b),
            Err(WireError::Params(ParamError::BadStrata { .. }))
        ));
    }
}
