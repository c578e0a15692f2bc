//! The running encrypted sum held by the aggregator, and its decryption.
//!
//! Design (measured, see `docs/crypto.md`): the aggregator adds only the
//! bodies — one wrapping add per value per update — and keeps the mask seeds
//! of the updates it absorbed (16 bytes each, at most the key's `max_clients`). The
//! decrypting clients regenerate and add the masks themselves. Memory is one
//! word per value plus the seed list: O(model + clients). The alternative,
//! regenerating every mask into an expanded sum on the server, costs the server
//! an AES keystream of 8 bytes per value per update and doubles the size of
//! the published sum; `fedhe bench crypto` reports both timings.

use super::encoding;
use super::glwe;
use super::keys::check_layout;
use super::keys::{PublicKeyFile, SecretKey};
use super::masking::Masks;
use super::params::{POLY_SIZE, ParamSet};
use super::sum_tag::{TagField, TagScope};
use super::update::{EncryptedUpdate, UpdateMeta, UpdateRef};
use super::wire::{self, MAX_SUM_HEADER, SUM_MAGIC, SumHeader, sum_header_bound};
use super::{CryptoError, Fingerprint, KeyLayout};

/// Running encrypted sum; memory O(model), adds updates as they arrive.
#[derive(Clone, PartialEq, Eq)]
pub struct Accumulator {
    /// The key's parameters, scale, client limit and fingerprint.
    layout: KeyLayout,
    /// Mask seeds of the absorbed updates, one per contributor, all distinct.
    seeds: Vec<u128>,
    /// `len + 1` summed body words (weight slot last).
    words: Vec<u64>,
}

impl std::fmt::Debug for Accumulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accumulator")
            .field("layout", &self.layout)
            .field("len", &self.len())
            .field("contributors", &self.contributors())
            .finish_non_exhaustive()
    }
}

impl Accumulator {
    /// The key's parameters, scale, client limit and fingerprint.
    pub fn layout(&self) -> KeyLayout {
        self.layout
    }

    /// An empty sum for updates of `len` model values (without the weight slot)
    /// made with the key described by `public`. Allocates `len + 1` words
    /// (like `Vec`, panics only if that allocation is impossible).
    pub fn new(public: &PublicKeyFile, len: usize) -> Self {
        Self {
            layout: public.layout(),
            seeds: Vec::new(),
            words: vec![0; len.saturating_add(1)],
        }
    }

    /// Number of model values (the weight slot is not counted).
    pub fn len(&self) -> usize {
        self.words.len() - 1
    }

    /// True if the sum is over zero model values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn params(&self) -> ParamSet {
        self.layout.params
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.layout.fingerprint
    }

    pub fn scale_bits(&self) -> u8 {
        self.layout.scale_bits
    }

    /// The most contributors this sum may hold (the key's limit).
    pub fn max_clients(&self) -> u32 {
        self.layout.max_clients
    }

    /// Number of updates summed so far.
    pub fn contributors(&self) -> u32 {
        // infallible: at most max_clients (a u32) seeds, checked on every add/merge/decode
        self.seeds.len() as u32
    }

    fn check_compatible(&self, layout: &KeyLayout, len: usize) -> Result<(), CryptoError> {
        self.layout.check_same(layout)?;
        if len != self.len() {
            return Err(CryptoError::LenMismatch {
                expected: self.len(),
                found: len,
            });
        }
        Ok(())
    }

    fn check_room(&self, extra: &[u128]) -> Result<(), CryptoError> {
        let total = self.seeds.len() + extra.len();
        if total > self.layout.max_clients as usize {
            return Err(CryptoError::TooManyContributors {
                found: total,
                max: self.layout.max_clients,
            });
        }
        if let Some(dup) = extra.iter().find(|s| self.seeds.contains(s)) {
            return Err(CryptoError::DuplicateUpdate {
                seed_prefix: format!("{:08x}", (*dup >> 96) as u32),
            });
        }
        Ok(())
    }

    fn word_mask(&self) -> u64 {
        if self.layout.params.word_bytes() == 8 {
            u64::MAX
        } else {
            u32::MAX as u64
        }
    }

    fn add_words(&mut self, other: &[u64]) {
        let mask = self.word_mask();
        for (a, b) in self.words.iter_mut().zip(other) {
            *a = a.wrapping_add(*b) & mask;
        }
    }

    /// Everything `add`, `add_ref` and `merge` check before touching the sum:
    /// same key, layout and length, room for `seeds`, no seed twice.
    fn admit(&self, layout: &KeyLayout, len: usize, seeds: &[u128]) -> Result<(), CryptoError> {
        self.check_compatible(layout, len)?;
        self.check_room(seeds)
    }

    fn admit_update(&self, m: &UpdateMeta) -> Result<(), CryptoError> {
        self.admit(&m.layout, m.len, &[m.seed])
    }

    /// Adds one update; on error the sum is unchanged.
    pub fn add(&mut self, update: &EncryptedUpdate) -> Result<(), CryptoError> {
        self.admit_update(&update.meta())?;
        self.add_words(&update.words);
        self.seeds.push(update.seed);
        Ok(())
    }

    /// Adds an update checked in place ([`UpdateRef::parse`]) without copying
    /// its words first; on error the sum is unchanged.
    pub fn add_ref(&mut self, update: &UpdateRef<'_>) -> Result<(), CryptoError> {
        self.admit_update(&update.meta())?;
        let mask = self.word_mask();
        let mut sum = self.words.iter_mut();
        wire::for_each_word(self.layout.params, update.payload, |w| {
            // `check_compatible` made the lengths equal
            if let Some(a) = sum.next() {
                *a = a.wrapping_add(w) & mask;
            }
        });
        self.seeds.push(update.seed);
        Ok(())
    }

    /// Absorbs another partial sum (tree-shaped aggregation); on error the sum is unchanged.
    pub fn merge(&mut self, other: &Accumulator) -> Result<(), CryptoError> {
        self.admit(&other.layout, other.len(), &other.seeds)?;
        self.add_words(&other.words);
        self.seeds.extend_from_slice(&other.seeds);
        Ok(())
    }

    /// Adds `masks` to the sum as a plaintext the aggregator knows (the
    /// double masks' unmask step, `privacy::secagg::unmask`): every slot,
    /// the weight slot included, gains the masks' keystreams at the
    /// fixed-point shift, exactly as if an update had carried them. The
    /// contributors are unchanged.
    pub fn add_masks(&mut self, masks: &Masks) {
        use rayon::prelude::*;
        let shift = self.layout.params.delta_log2(self.layout.max_clients);
        // The masks sit at 2^D with D above the dropped bits: exact.
        let dropped = self.layout.params.dropped_bits();
        let mask = self.word_mask();
        self.words
            .par_chunks_mut(POLY_SIZE)
            .enumerate()
            .for_each_init(
                || vec![0u64; POLY_SIZE],
                |plain, (j, block)| {
                    let plain = &mut plain[..block.len()];
                    plain.fill(0);
                    masks.apply(shift, j * POLY_SIZE, plain);
                    for (w, p) in block.iter_mut().zip(plain.iter()) {
                        *w = w.wrapping_add(p >> dropped) & mask;
                    }
                },
            );
    }

    /// Wire encoding (see [`wire`](super::wire)).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_bytes(&mut out);
        out
    }

    /// [`Accumulator::to_bytes`] into a reused buffer (cleared first), so a
    /// server that persists the sum after every update does not allocate a
    /// fresh copy each time.
    pub fn write_bytes(&self, out: &mut Vec<u8>) {
        let header = SumHeader {
            layout: self.layout,
            len: self.len() as u64,
            seeds: self.seeds.iter().map(|s| s.to_le_bytes()).collect(),
        };
        let header_hint = sum_header_bound(self.contributors());
        wire::encode_into(
            out,
            SUM_MAGIC,
            &header,
            header_hint,
            self.layout.params,
            &self.words,
        );
    }

    /// Strict decoding of untrusted bytes; `max_values` bounds the number of model values.
    pub fn from_bytes(bytes: &[u8], max_values: usize) -> Result<Self, CryptoError> {
        const WHAT: &str = "encrypted sum";
        let (h, payload) =
            wire::decode_header::<SumHeader, MAX_SUM_HEADER>(bytes, SUM_MAGIC, WHAT)?;
        check_layout(h.layout.params, h.layout.scale_bits, h.layout.max_clients)?;
        let (_, words) = wire::decode_payload(WHAT, h.layout.params, h.len, max_values, payload)?;
        let mut acc = Self {
            layout: h.layout,
            seeds: Vec::new(),
            words: vec![0; 0],
        };
        let seeds: Vec<u128> = h.seeds.iter().map(|s| u128::from_le_bytes(*s)).collect();
        for (i, s) in seeds.iter().enumerate() {
            if seeds[..i].contains(s) {
                return Err(CryptoError::Malformed {
                    what: WHAT,
                    detail: format!("mask seed {i} appears twice"),
                });
            }
        }
        acc.check_room(&seeds)?;
        acc.seeds = seeds;
        acc.words = words;
        Ok(acc)
    }

    /// Mask seeds of the contributors (for measurements).
    pub(crate) fn seeds(&self) -> &[u128] {
        &self.seeds
    }
}

/// Decrypted weighted mean of the contributors' values.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedMean {
    pub values: Vec<f64>,
    pub total_weight: f64,
    pub contributors: u32,
}

impl WeightedMean {
    /// Documented worst-case absolute error of each value for this sum:
    /// `contributors · 2^-(scale_bits+1) / total_weight`.
    pub fn error_bound(&self, scale_bits: u8) -> f64 {
        encoding::mean_error_bound(scale_bits, self.contributors, self.total_weight)
    }
}

/// Decrypts a sum and divides by the summed weight.
pub fn decrypt_mean(key: &SecretKey, sum: &Accumulator) -> Result<WeightedMean, CryptoError> {
    let (phases, shift) = phases(key, sum)?;
    let (values, total_weight) = encoding::weighted_mean(shift, sum.layout.scale_bits, &phases)?;
    Ok(WeightedMean {
        values,
        total_weight,
        contributors: sum.contributors(),
    })
}

/// The summed encoded integers of a sum (value slots, then the weight slot),
/// as the umbrella key reads them: `round(weight · value · 2^scale)` summed
/// over the contributors, modulo the plaintext range `2^(64−D)` as a signed
/// number. For one masked update this is what another key holder would see.
pub fn decrypt_integers(key: &SecretKey, sum: &Accumulator) -> Result<Vec<i64>, CryptoError> {
    let (phases, shift) = phases(key, sum)?;
    Ok(phases
        .iter()
        .map(|&p| encoding::decode_one(shift, p))
        .collect())
}

/// A tagged sum that passed its check: the summed encoded integers without
/// the tag, and the attempt whose tag it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSum {
    /// The value slots' summed integers (the tag's slots left off).
    pub values: Vec<i64>,
    /// The summed weight slot.
    pub weight: i64,
    pub attempt: u32,
}

/// Decrypts a tagged sum (updates of [`encrypt_tagged`](super::encrypt_tagged))
/// and checks its tag in `scope` with each of `attempts` in turn, over the
/// announced contributors `sites`: the sum must be exactly the sum of their
/// updates for that plan, round and attempt.
pub fn decrypt_verified(
    key: &SecretKey,
    sum: &Accumulator,
    scope: &TagScope,
    attempts: &[u32],
    sites: &[String],
) -> Result<VerifiedSum, CryptoError> {
    let mut ints = decrypt_integers(key, sum)?;
    let Some(weight) = ints.pop() else {
        return Err(CryptoError::Malformed {
            what: "encrypted sum",
            detail: "no weight slot".into(),
        });
    };
    let field = TagField::for_key(key.params(), key.max_clients());
    let Some(values_len) = ints.len().checked_sub(field.slots) else {
        return Err(CryptoError::Malformed {
            what: "tagged sum",
            detail: format!(
                "{} values, fewer than the tag's {}",
                ints.len(),
                field.slots
            ),
        });
    };
    let tag: Vec<i64> = ints.split_off(values_len);
    ints.push(weight);
    let tag_key = key.tag_key();
    let attempt = attempts.iter().copied().find(|&attempt| {
        let scope = TagScope { attempt, ..*scope };
        tag_key.verify(&field, &scope, sites, &ints, &tag)
    });
    let Some(attempt) = attempt else {
        return Err(CryptoError::SumTagMismatch {
            round: scope.round,
            contributors: sites.len(),
        });
    };
    ints.pop();
    Ok(VerifiedSum {
        values: ints,
        weight,
        attempt,
    })
}

/// The decrypted phases of a sum and the fixed-point shift they sit at.
fn phases(key: &SecretKey, sum: &Accumulator) -> Result<(Vec<u64>, u32), CryptoError> {
    key.layout().check_same(&sum.layout)?;
    if sum.seeds.is_empty() {
        return Err(CryptoError::EmptySum);
    }
    let phases = glwe::decrypt_phases(
        &key.fourier,
        &sum.words,
        &sum.seeds,
        sum.layout.params.dropped_bits(),
    );
    Ok((phases, sum.layout.params.delta_log2(sum.layout.max_clients)))
}

/// Bits of the plaintext's integer range, `64 − D`, for a key's layout.
pub fn plaintext_bits(layout: &super::KeyLayout) -> u32 {
    64 - layout.params.delta_log2(layout.max_clients)
}
