//! The strata estimator: how large is the difference, before sizing the table that carries it.

use crate::iblt::{Cell, Iblt, ParamError};
use crate::{derive_key, mix64};

/// The most strata the wire decoder accepts; 64-bit hashes have no more trailing-zero levels.
pub const MAX_STRATA: usize = 64;

/// The most cells per stratum the wire decoder accepts.
pub const MAX_STRATUM_CELLS: usize = 4096;

/// Shape of a [`StrataEstimator`]. Both sides must use the same; the controller takes it from
/// the agent's estimator ([`StrataEstimator::empty_like`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StrataParams {
    /// Number of strata; stratum `i` holds ids whose hash has `i` trailing zeros (the last
    /// one also holds all deeper ones).
    pub strata: u8,
    /// Cells of each stratum's table.
    pub cells: u16,
    /// Hash functions of each stratum's table (3 or 4).
    pub k: u8,
    /// Seed of the stratum assignment and of the tables' hash functions.
    pub seed: u64,
}

impl StrataParams {
    /// Checks the bounds that [`StrataEstimator::new`] and the wire decoder enforce.
    pub(crate) fn check(&self) -> Result<(), ParamError> {
        if !(3..=4).contains(&self.k) {
            return Err(ParamError::BadK(self.k));
        }
        if self.strata == 0 || usize::from(self.strata) > MAX_STRATA {
            return Err(ParamError::BadStrata {
                strata: self.strata,
                max: MAX_STRATA,
            });
        }
        // Cell counts must be multiples of k so that the shape survives the wire unchanged.
        let cells = usize::from(self.cells);
        if cells == 0 || cells > MAX_STRATUM_CELLS || !cells.is_multiple_of(usize::from(self.k)) {
            return Err(ParamError::BadCells {
                cells,
                max: MAX_STRATUM_CELLS,
            });
        }
        Ok(())
    }
}

impl Default for StrataParams {
    /// The paper's shape: 32 strata of 80 cells, 4 hash functions. 32 strata suffice for
    /// differences up to billions; 80 cells peel up to about 50 ids per stratum.
    fn default() -> Self {
        Self {
            strata: 32,
            cells: 80,
            k: 4,
            seed: 0x5745_4654_5354_5241, // "WEFTSTRA"
        }
    }
}

/// A stack of small IBLTs, one per stratum, from which the size of the symmetric difference of
/// two sets can be estimated without knowing either set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StrataEstimator {
    params: StrataParams,
    strata: Vec<Iblt>,
    level_key: u64,
}

impl StrataEstimator {
    /// An empty estimator of the given shape.
    pub fn new(params: StrataParams) -> Result<Self, ParamError> {
        params.check()?;
        let strata = (0..params.strata)
            .map(|_| Iblt::new(usize::from(params.cells), params.k, params.seed))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::from_strata(params, strata))
    }

    /// Assembles validated strata (all built with `params`).
    pub(crate) fn from_strata(params: StrataParams, strata: Vec<Iblt>) -> Self {
        // A key distinct from the tables' keys so that levels and cells are independent.
        let level_key = derive_key(params.seed, 0x5354_5241);
        Self {
            params,
            strata,
            level_key,
        }
    }

    /// An estimator of the default shape ([`StrataParams::default`]) holding `ids`.
    pub fn from_ids(ids: impl IntoIterator<Item = u64>) -> Self {
        let mut est = Self::new(StrataParams::default()).expect("the default shape is valid");
        est.extend(ids);
        est
    }

    /// An empty estimator of the same shape, to fill with the other side's ids.
    pub fn empty_like(&self) -> Self {
        let strata = self.strata.iter().map(Iblt::empty_like).collect();
        Self::from_strata(self.params, strata)
    }

    /// The shape of this estimator.
    pub fn params(&self) -> StrataParams {
        self.params
    }

    /// Adds an id to the stratum chosen by the trailing zeros of its hash.
    pub fn insert(&mut self, id: u64) {
        let last = self.strata.len() - 1;
        let level = (mix64(id ^ self.level_key).trailing_zeros() as usize).min(last);
        self.strata[level].insert(id);
    }

    /// Inserts every id of an iterator.
    pub fn extend(&mut self, ids: impl IntoIterator<Item = u64>) {
        for id in ids {
            self.insert(id);
        }
    }

    /// Estimates the size of the symmetric difference between this set and `other`'s.
    ///
    /// Peels the strata from the sparsest down; at the first stratum `i` that does not peel,
    /// the ids counted so far are a sample of rate 2^-(i+1) and are scaled up accordingly. If
    /// every stratum peels the count is exact.
    pub fn estimate(&self, other: &StrataEstimator) -> Result<usize, ParamError> {
        if self.params != other.params {
            let (a, b) = (self.params, other.params);
            return Err(ParamError::Mismatch {
                a_cells: usize::from(a.cells) * usize::from(a.strata),
                b_cells: usize::from(b.cells) * usize::from(b.strata),
                a_k: a.k,
                b_k: b.k,
                same_seed: a.seed == b.seed,
            });
        }
        let mut count = 0usize;
        for (i, (a, b)) in self.strata.iter().zip(&other.strata).enumerate().rev() {
            match a.subtract(b)?.decode() {
                Ok(diff) => count += diff.len(),
                Err(_) => {
                    // Saturating: hostile estimators may fail at any stratum, even the 64th.
                    let scale = 1usize.checked_shl(i as u32 + 1).unwrap_or(usize::MAX);
                    return Ok(count.saturating_mul(scale));
                }
            }
        }
        Ok(count)
    }

    pub(crate) fn cells_of(&self, stratum: usize) -> &[Cell] {
        self.strata[stratum].raw_cells()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_sets_estimate_zero() {
        let a = StrataEstimator::from_ids(0..5000);
        assert_eq!(a.estimate(&a.clone()).unwrap(), 0);
    }

    #[test]
    fn small_differences_are_counted_exactly() {
        let a = StrataEstimator::from_ids(0..5000);
        let b = StrataEstimator::from_ids(7..5010);
        assert_eq!(a.estimate(&b).unwrap(), 7 + 10);
    }

    #[test]
    fn large_difference_is_within_a_factor() {
        let a = StrataEstimator::from_ids(0..20_000);
        let b = StrataEstimator::from_ids(10_000..30_000);
        let est = a.estimate(&b).unwrap() as f64;
        assert!(
            (10_000.0..40_000.0).contains(&est),
            "estimate {est} for 20000"
        );
    }

    #[test]
    fn levels_halve() {
        let a = StrataEstimator::from_ids(0..1 << 16);
        let counts: Vec<i32> = (0..4)
            .map(|s| a.cells_of(s).iter().map(|c| c.count).sum::<i32>() / 4)
            .collect();
        for (i, &c) in counts.iter().enumerate() {
            let want = f64::from(1 << (15 - i));
            assert!(
                (f64::from(c) - want).abs() < want * 0.05,
                "stratum {i}: {c}"
            );
        }
    }

    #[test]
    fn rejects_bad_shapes_and_mismatches() {
        let p = StrataParams::default();
        assert!(StrataEstimator::new(StrataParams { strata: 0, ..p }).is_err());
        assert!(StrataEstimator::new(StrataParams { strata: 65, ..p }).is_err());
        assert!(StrataEstimator::new(StrataParams { cells: 81, ..p }).is_err());
        assert!(StrataEstimator::new(StrataParams { k: 2, ..p }).is_err());
        let a = StrataEstimator::new(p).unwrap();
        let b = StrataEstimator::new(StrataParams { seed: 1, ..p }).unwrap();
        assert!(a.estimate(&b).is_err());
    }
}
