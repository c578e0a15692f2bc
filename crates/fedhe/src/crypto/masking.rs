//! Pairwise masks under the encryption (secure aggregation inside the
//! plaintext).
//!
//! Before encryption, client `i` adds to every encoded integer of its update
//! (each value slot and the weight slot) `Σ_j ±PRG(seed_ij, slot)` over its
//! partners `j` of the round: `+` when `i < j`, `−` otherwise. The PRG is the
//! AES-128-CTR keystream the ciphertext masks already use ([`super::prng`]),
//! keyed by the pair's 128-bit seed; slot `s` takes keystream word `s`. The
//! addition is modulo the plaintext's integer range `2^(64−D)` (`D` the
//! fixed-point shift: a mask word shifted left by `D` wraps exactly there),
//! so in the sum of all partners' updates every mask meets its negation and
//! the decrypted sum is bit for bit the unmasked one. One update alone, even
//! decrypted with the umbrella key, is its integers plus a uniform mask: it
//! reads as uniform unless every one of its partners' seeds is known.
//!
//! Seeds come from the key agreement in `privacy::masks`; this module only
//! adds them.

use super::params::POLY_SIZE;
use super::prng::AesCtr;

/// The masks one client adds to one update: a keystream per partner and
/// whether it is added (`+`, this client's id sorts first) or subtracted.
#[derive(Clone, Default)]
pub struct Masks {
    pairs: Vec<(AesCtr, bool)>,
}

impl std::fmt::Debug for Masks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The seeds are secrets: only their number is shown.
        f.debug_struct("Masks")
            .field("partners", &self.pairs.len())
            .finish_non_exhaustive()
    }
}

impl Masks {
    /// Masks from `(pair seed, add)` per partner.
    pub fn new(pairs: impl IntoIterator<Item = (u128, bool)>) -> Self {
        Masks {
            pairs: pairs
                .into_iter()
                .map(|(seed, add)| (AesCtr::new(seed), add))
                .collect(),
        }
    }

    /// No masks (an unmasked update).
    pub fn none() -> Self {
        Masks::default()
    }

    /// Number of partners.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Adds the masks of slots `first .. first + out.len()` (a whole GLWE
    /// block: `first` is a multiple of [`POLY_SIZE`]) into encoded
    /// plaintexts that sit at `2^shift`.
    pub(crate) fn apply(&self, shift: u32, first: usize, out: &mut [u64]) {
        debug_assert_eq!(first % POLY_SIZE, 0);
        debug_assert!(out.len() <= POLY_SIZE);
        let mut words = [0u64; POLY_SIZE];
        for (stream, add) in &self.pairs {
            // A clone per block: the keystream is addressed by block, so the
            // blocks are masked independently (and in parallel).
            stream.clone().mask(first / POLY_SIZE, &mut words);
            if *add {
                for (o, w) in out.iter_mut().zip(&words) {
                    *o = o.wrapping_add(w << shift);
                }
            } else {
                for (o, w) in out.iter_mut().zip(&words) {
                    *o = o.wrapping_sub(w << shift);
                }
            }
        }
    }

    /// Adds the masks to `slots` encoded integers at `2^shift` (the whole
    /// update, block by block, in parallel); what encryption does, without
    /// the encryption (benchmarks, tests).
    pub fn apply_all(&self, shift: u32, slots: &mut [u64]) {
        use rayon::prelude::*;
        slots
            .par_chunks_mut(POLY_SIZE)
            .enumerate()
            .for_each(|(j, block)| self.apply(shift, j * POLY_SIZE, block));
    }
}
