//! Set reconciliation for resuming a host agent's view after its revision history is gone.
//!
//! Each record of a view is reduced to a 64-bit element id ([`element_id`]). The agent sends a
//! [`StrataEstimator`] of its ids; the controller estimates the size of the symmetric
//! difference and answers with an invertible Bloom lookup table ([`Iblt`]) of its own ids
//! sized for that difference; the agent subtracts its ids and peels the table into the ids it
//! must drop and the ids it must fetch (Eppstein, Goodrich, Uyeda, Varghese, "What's the
//! Difference?", SIGCOMM 2011). [`protocol`] packages these steps and says when a full
//! snapshot is the better choice.
//!
//! This crate is pure: no sockets, files, clocks or randomness. Wire bytes come in and go out
//! as slices; the southbound carries them. It knows nothing of records, keys or revisions
//! beyond the ids it is given.

mod iblt;
pub mod protocol;
mod strata;
mod wire;

pub use iblt::{DecodeError, Difference, Iblt, MAX_CELLS, ParamError};
pub use strata::{MAX_STRATA, MAX_STRATUM_CELLS, StrataEstimator, StrataParams};
pub use wire::WireError;

use sha2::{Digest, Sha256};

/// The 64-bit element id of a record: SHA-256 over a domain tag, the length-prefixed key and
/// the content hash, truncated to its first 8 bytes (little endian).
///
/// SHA-256 rather than a fast mixer because both ends must agree bit for bit across builds
/// and platforms (which rules out `std`'s unspecified `DefaultHasher`), because a tenant
/// who shapes record contents must not be able to make two records share an id (a collision
/// would hide a difference), and because `sha2` is already in the workspace. The cost, about
/// a microsecond per record, is paid once per record change if the caller caches ids.
pub fn element_id(key: &[u8], content_hash: &[u8]) -> u64 {
    let mut h = Sha256::new();
    h.update(b"weft-reconcile/element/v1\0");
    // The length prefix keeps (key, content) pairs that concatenate alike apart.
    h.update((key.len() as u64).to_le_bytes());
    h.update(key);
    h.update(content_hash);
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// The splitmix64 finalizer: a bijection on `u64` with full avalanche. Element ids are
/// already uniform (they come from SHA-256), so one keyed round is enough to derive the
/// table's independent-looking hash functions.
pub(crate) fn mix64(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The `n`-th key of a splitmix64 sequence started at `seed`; distinct `n` give unrelated keys.
pub(crate) fn derive_key(seed: u64, n: u64) -> u64 {
    mix64(seed.wrapping_add(0x9e37_79b9_7f4a_7c15u64.wrapping_mul(n + 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_id_separates_key_from_content() {
        // Same concatenation, different split: must not collide.
        assert_ne!(element_id(b"ab", b"c"), element_id(b"a", b"bc"));
        assert_ne!(element_id(b"k", b"v1"), element_id(b"k", b"v2"));
        assert_eq!(element_id(b"k", b"v1"), element_id(b"k", b"v1"));
    }

    #[test]
    fn element_id_is_the_documented_sha256_prefix() {
        // Recompute from the definition so a change of recipe is caught.
        let mut h = Sha256::new();
        h.update(b"weft-reconcile/element/v1\0");
        h.update(3u64.to_le_bytes());
        h.update(b"key");
        h.update(b"content");
        let d = h.finalize();
        let want = u64::from_le_bytes(d[..8].try_into().unwrap());
        assert_eq!(element_id(b"key", b"content"), want);
    }

    #[test]
    fn mix64_avalanches() {
        // Flipping one input bit flips about half the output bits on average.
        let mut total = 0u32;
        for i in 0..64 {
            total += (mix64(0x1234_5678) ^ mix64(0x1234_5678 ^ (1 << i))).count_ones();
        }
        let mean = f64::from(total) / 64.0;
        assert!((26.0..38.0).contains(&mean), "mean flipped bits {mean}");
    }
}
