//! The invertible Bloom lookup table: insert, subtract, peel.

use crate::{derive_key, mix64};
use thiserror::Error;

/// The largest table [`Iblt::new`] builds or the wire decoder accepts (16 MiB in memory).
/// At two cells per difference this covers half a million differences, far past the point
/// where a full snapshot is cheaper for a ~100k-record view.
pub const MAX_CELLS: usize = 1 << 20;

/// One cell: how many ids landed here (inserts minus removes), and the XOR of those ids and
/// of their checksums.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Cell {
    pub(crate) count: i32,
    pub(crate) key_sum: u64,
    pub(crate) hash_sum: u32,
}

impl Cell {
    pub(crate) fn is_zero(&self) -> bool {
        *self == Cell::default()
    }
}

/// An invertible Bloom lookup table of 64-bit ids.
///
/// The cells are split into `k` disjoint sub-ranges and every id lands in exactly one cell of
/// each, so its `k` cells are always distinct. Two tables built with the same cell count, `k`
/// and seed can be subtracted; the result peels into the ids only in one side or the other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iblt {
    k: u8,
    seed: u64,
    cells: Vec<Cell>,
    /// Keys of the `k` position hashes (index 0..k) and of the checksum (index 4), derived
    /// from `seed`; not sent on the wire.
    keys: [u64; 5],
}

/// A table's parameters were out of range, or two tables could not be combined.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ParamError {
    /// The number of hash functions must be 3 or 4.
    #[error("IBLT hash count k={0} is not supported; use 3 or 4")]
    BadK(u8),
    /// The cell count was zero, above the bound, or (for decoded tables and strata) not a
    /// multiple of `k`.
    #[error(
        "IBLT cell count {cells} is not accepted: it must be in 1..={max} and, for decoded tables and strata, a multiple of k; size the table from a smaller difference or take a full snapshot"
    )]
    BadCells {
        /// The requested cell count.
        cells: usize,
        /// The largest accepted cell count.
        max: usize,
    },
    /// A strata estimator's stratum count was zero or above the bound.
    #[error("strata count {strata} is outside 1..={max}; use the default strata parameters")]
    BadStrata {
        /// The requested stratum count.
        strata: u8,
        /// The largest accepted stratum count.
        max: usize,
    },
    /// Subtraction or estimation needs tables built with identical parameters.
    #[error(
        "IBLT parameters differ (cells {a_cells} vs {b_cells}, k {a_k} vs {b_k}, seeds equal: {same_seed}); build both sides with the same parameters"
    )]
    Mismatch {
        /// Cell count of the left table.
        a_cells: usize,
        /// Cell count of the right table.
        b_cells: usize,
        /// Hash count of the left table.
        a_k: u8,
        /// Hash count of the right table.
        b_k: u8,
        /// Whether the seeds agree.
        same_seed: bool,
    },
}

/// The result of peeling a subtracted table `a - b`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Difference {
    /// Ids in `a` but not in `b`, in peeling order.
    pub only_in_a: Vec<u64>,
    /// Ids in `b` but not in `a`, in peeling order.
    pub only_in_b: Vec<u64>,
}

impl Difference {
    /// The size of the symmetric difference.
    pub fn len(&self) -> usize {
        self.only_in_a.len() + self.only_in_b.len()
    }

    /// Whether the two sets were equal.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The table could not be fully peeled. Retry with a larger table (another seed helps too)
/// or fall back to a full snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// Peeling stopped with cells left that hold two or more ids: the difference is larger
    /// than this table can carry.
    #[error(
        "IBLT of {cells} cells stuck after recovering {recovered} ids with {nonzero} cells left; retry with a larger table or take a full snapshot"
    )]
    Stuck {
        /// Cells in the table.
        cells: usize,
        /// Ids recovered before peeling stopped.
        recovered: usize,
        /// Cells that were still not empty.
        nonzero: usize,
    },
    /// Peeling went on longer than any consistent table allows; the input was not the
    /// difference of two sets (duplicate ids, or corrupted or hostile bytes).
    #[error(
        "IBLT of {cells} cells is inconsistent (more peels than cells); check that both sides inserted sets without duplicates, then take a full snapshot"
    )]
    Inconsistent {
        /// Cells in the table.
        cells: usize,
    },
}

impl Iblt {
    /// An empty table of at least `cells` cells (rounded up to a multiple of `k`), `k` hash
    /// functions (3 or 4) and the given seed, which selects the hash functions.
    pub fn new(cells: usize, k: u8, seed: u64) -> Result<Self, ParamError> {
        if !(3..=4).contains(&k) {
            return Err(ParamError::BadK(k));
        }
        let rounded = cells.div_ceil(usize::from(k)) * usize::from(k);
        if cells == 0 || rounded > MAX_CELLS {
            return Err(ParamError::BadCells {
                cells,
                max: MAX_CELLS,
            });
        }
        Ok(Self::with_cells(k, seed, vec![Cell::default(); rounded]))
    }

    /// Builds a table around cells whose count is already validated (non-zero multiple of `k`).
    pub(crate) fn with_cells(k: u8, seed: u64, cells: Vec<Cell>) -> Self {
        let keys = std::array::from_fn(|i| derive_key(seed, i as u64));
        Self {
            k,
            seed,
            cells,
            keys,
        }
    }

    /// An empty table with the same parameters, ready to be filled and subtracted from this one.
    pub fn empty_like(&self) -> Self {
        Self::with_cells(self.k, self.seed, vec![Cell::default(); self.cells.len()])
    }

    /// Number of cells.
    pub fn cells(&self) -> usize {
        self.cells.len()
    }

    /// Number of hash functions.
    pub fn k(&self) -> u8 {
        self.k
    }

    /// The seed that selects the hash functions.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub(crate) fn raw_cells(&self) -> &[Cell] {
        &self.cells
    }

    /// Adds an id. Callers insert sets: the same id twice makes the table undecodable.
    pub fn insert(&mut self, id: u64) {
        self.apply(id, 1);
    }

    /// Removes an id (the inverse of [`Iblt::insert`]).
    pub fn remove(&mut self, id: u64) {
        self.apply(id, -1);
    }

    /// Inserts every id of an iterator.
    pub fn extend(&mut self, ids: impl IntoIterator<Item = u64>) {
        for id in ids {
            self.insert(id);
        }
    }

    /// Cell-wise `self - other`: the table of the ids only in `self` (positive) and only in
    /// `other` (negative).
    pub fn subtract(&self, other: &Iblt) -> Result<Iblt, ParamError> {
        self.check_same(other)?;
        let mut out = self.clone();
        for (c, o) in out.cells.iter_mut().zip(&other.cells) {
            // Wrapping: counts from untrusted bytes may be at the ends of the range.
            c.count = c.count.wrapping_sub(o.count);
            c.key_sum ^= o.key_sum;
            c.hash_sum ^= o.hash_sum;
        }
        Ok(out)
    }

    pub(crate) fn check_same(&self, other: &Iblt) -> Result<(), ParamError> {
        if self.k == other.k && self.seed == other.seed && self.cells.len() == other.cells.len() {
            return Ok(());
        }
        Err(ParamError::Mismatch {
            a_cells: self.cells.len(),
            b_cells: other.cells.len(),
            a_k: self.k,
            b_k: other.k,
            same_seed: self.seed == other.seed,
        })
    }

    /// Peels the table into the ids with count +1 (`only_in_a`) and -1 (`only_in_b`).
    ///
    /// On a table produced by [`Iblt::subtract`] this is the symmetric difference of the two
    /// sets. Succeeds only if every cell ends empty, so a success is exact up to the chance of
    /// a 32-bit checksum collision that also lands on the right cell.
    pub fn decode(&self) -> Result<Difference, DecodeError> {
        let mut cells = self.cells.clone();
        let mut diff = Difference::default();
        let mut stack: Vec<usize> = (0..cells.len())
            .filter(|&i| self.is_pure(&cells[i], i))
            .collect();
        while let Some(i) = stack.pop() {
            let cell = cells[i];
            // Earlier peels may have changed this cell since it was pushed.
            if !self.is_pure(&cell, i) {
                continue;
            }
            // Each peel empties a cell that no remaining id touches, so a consistent table
            // peels at most once per cell; more means corrupted input.
            if diff.len() == cells.len() {
                return Err(DecodeError::Inconsistent { cells: cells.len() });
            }
            let id = cell.key_sum;
            if cell.count == 1 {
                diff.only_in_a.push(id);
            } else {
                diff.only_in_b.push(id);
            }
            let check = self.checksum(id);
            for j in self.positions(id) {
                let c = &mut cells[j];
                c.count = c.count.wrapping_sub(cell.count);
                c.key_sum ^= id;
                c.hash_sum ^= check;
                if self.is_pure(c, j) {
                    stack.push(j);
                }
            }
        }
        let nonzero = cells.iter().filter(|c| !c.is_zero()).count();
        if nonzero == 0 {
            Ok(diff)
        } else {
            Err(DecodeError::Stuck {
                cells: cells.len(),
                recovered: diff.len(),
                nonzero,
            })
        }
    }

    fn apply(&mut self, id: u64, delta: i32) {
        let check = self.checksum(id);
        for j in self.positions(id) {
            let c = &mut self.cells[j];
            c.count = c.count.wrapping_add(delta);
            c.key_sum ^= id;
            c.hash_sum ^= check;
        }
    }

    /// A cell holds exactly one id if its count is ±1, its checksum matches its key and the
    /// key hashes to this very cell (the last test rejects most checksum collisions for free).
    fn is_pure(&self, c: &Cell, index: usize) -> bool {
        (c.count == 1 || c.count == -1)
            && c.hash_sum == self.checksum(c.key_sum)
            && self.position(c.key_sum, index / self.sub_len()) == index
    }

    fn sub_len(&self) -> usize {
        self.cells.len() / usize::from(self.k)
    }

    /// The cell of `id` in sub-range `r`: Lemire's multiply-shift maps the hash onto the
    /// sub-range without the bias of a modulo's low bits.
    fn position(&self, id: u64, r: usize) -> usize {
        let h = mix64(id ^ self.keys[r]);
        let sub = self.sub_len();
        r * sub + ((u128::from(h) * sub as u128) >> 64) as usize
    }

    /// The `k` cells of `id`, as an owned iterator so that callers may mutate the cells.
    fn positions(&self, id: u64) -> impl Iterator<Item = usize> + use<> {
        let k = usize::from(self.k);
        let all: [usize; 4] = std::array::from_fn(|r| if r < k { self.position(id, r) } else { 0 });
        all.into_iter().take(k)
    }

    fn checksum(&self, id: u64) -> u32 {
        (mix64(id ^ self.keys[4]) >> 32) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(ids: &[u64], cells: usize, k: u8) -> Iblt {
        let mut t = Iblt::new(cells, k, 7).unwrap();
        t.extend(ids.iter().copied());
        t
    }

    #[test]
    fn rejects_bad_parameters() {
        assert_eq!(Iblt::new(30, 5, 0), Err(ParamError::BadK(5)));
        assert!(matches!(
            Iblt::new(0, 3, 0),
            Err(ParamError::BadCells { .. })
        ));
        assert!(matches!(
            Iblt::new(MAX_CELLS + 1, 4, 0),
            Err(ParamError::BadCells { .. })
        ));
        assert_eq!(Iblt::new(10, 3, 0).unwrap().cells(), 12);
    }

    #[test]
    fn empty_table_decodes_to_nothing() {
        assert!(Iblt::new(12, 3, 1).unwrap().decode().unwrap().is_empty());
    }

    #[test]
    fn insert_then_remove_leaves_an_empty_table() {
        let mut t = table(&[1, 2, 3], 12, 3);
        for id in [1, 2, 3] {
            t.remove(id);
        }
        assert!(t.raw_cells().iter().all(Cell::is_zero));
    }

    #[test]
    fn every_id_lands_in_k_distinct_cells() {
        let t = Iblt::new(40, 4, 9).unwrap();
        for id in 0..1000u64 {
            let mut p: Vec<usize> = t.positions(id).collect();
            p.sort_unstable();
            p.dedup();
            assert_eq!(p.len(), 4);
            assert!(p.iter().all(|&i| i < 40));
        }
    }

    #[test]
    fn subtract_recovers_both_sides() {
        let common: Vec<u64> = (1000..3000).collect();
        let a: Vec<u64> = common.iter().copied().chain([1, 2, 3]).collect();
        let b: Vec<u64> = common.iter().copied().chain([4, 5]).collect();
        let d = table(&a, 30, 3).subtract(&table(&b, 30, 3)).unwrap();
        let mut diff = d.decode().unwrap();
        diff.only_in_a.sort_unstable();
        diff.only_in_b.sort_unstable();
        assert_eq!(diff.only_in_a, vec![1, 2, 3]);
        assert_eq!(diff.only_in_b, vec![4, 5]);
    }

    #[test]
    fn too_small_table_reports_stuck() {
        let a: Vec<u64> = (0..200).collect();
        let err = table(&a, 12, 3).decode().unwrap_err();
        assert!(matches!(err, DecodeError::Stuck { cells: 12, .. }), "{err}");
    }

    #[test]
    fn duplicate_insert_does_not_decode() {
        let mut t = table(&[42], 12, 3);
        t.insert(42);
        assert!(t.decode().is_err());
    }

    #[test]
    fn subtract_rejects_mismatched_tables() {
        let a = Iblt::new(12, 3, 1).unwrap();
        for b in [
            Iblt::new(24, 3, 1).unwrap(),
            Iblt::new(12, 4, 1).unwrap(),
            Iblt::new(12, 3, 2).unwrap(),
        ] {
            assert!(matches!(a.subtract(&b), Err(ParamError::Mismatch { .. })));
        }
    }

    #[test]
    fn seed_changes_the_hash_functions() {
        let a = Iblt::new(12, 3, 1).unwrap();
        let b = Iblt::new(12, 3, 2).unwrap();
        let same = (0..100u64)
            .filter(|&id| a.positions(id).eq(b.positions(id)))
            .count();
        assert!(same < 10, "{same} of 100 ids kept their cells");
    }
}
