//! One client's encrypted update and the encryption entry point.

use super::encoding;
use super::glwe;
use super::keys::{SecretKey, check_layout};
use super::masking::Masks;
use super::params::ParamSet;
use super::prng::fresh_seed;
use super::sum_tag::{TagField, TagScope};
use super::wire::{self, MAX_UPDATE_HEADER, PLAN_BINDING_BYTES, UPDATE_MAGIC, UpdateHeader};
use super::{CryptoError, Fingerprint, KeyLayout};

/// One client's encrypted, sample-weighted update: `len` value slots plus the
/// weight slot, as one body word each, and the seed its mask regenerates from.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptedUpdate {
    pub(crate) layout: KeyLayout,
    pub(crate) seed: u128,
    /// `len + 1` body words; below 2^32 for Compact32.
    pub(crate) words: Vec<u64>,
    /// The round and attempt it was made for (0, 0: unbound).
    pub(crate) bound: (u64, u32),
    /// The plan binding: the first bytes of the fingerprint of the plan it
    /// was made for (zeros: unbound).
    pub(crate) plan: PlanBinding,
}

/// What an update's header names of the plan it was made for: the first
/// [`PLAN_BINDING_BYTES`] of its fingerprint (zeros: unbound).
pub type PlanBinding = [u8; PLAN_BINDING_BYTES];

/// The binding of a plan fingerprint.
pub fn plan_binding(fingerprint: &[u8; 16]) -> PlanBinding {
    let mut out = [0u8; PLAN_BINDING_BYTES];
    out.copy_from_slice(&fingerprint[..PLAN_BINDING_BYTES]);
    out
}

impl std::fmt::Debug for EncryptedUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedUpdate")
            .field("layout", &self.layout)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// What the accumulator checks of an update before adding it.
pub(crate) struct UpdateMeta {
    pub layout: KeyLayout,
    pub len: usize,
    pub seed: u128,
}

impl EncryptedUpdate {
    /// Parameters, scale, client limit and fingerprint of the key it was made with.
    pub fn layout(&self) -> KeyLayout {
        self.layout
    }

    pub(crate) fn meta(&self) -> UpdateMeta {
        UpdateMeta {
            layout: self.layout,
            len: self.len(),
            seed: self.seed,
        }
    }

    /// The same update, its header naming the round and attempt it was made
    /// for: an aggregator refuses it in any other (a replay). The binding is
    /// in the clear header; masked updates are also bound by their masks,
    /// which are derived for one round and attempt.
    pub fn bound_to(mut self, round: u64, attempt: u32) -> Self {
        self.bound = (round, attempt);
        self
    }

    /// The round and attempt named in the header (0, 0: unbound).
    pub fn binding(&self) -> (u64, u32) {
        self.bound
    }

    /// The same update, its header naming the plan (fingerprint) it was
    /// made for: an aggregator serving another plan refuses it. A tagged
    /// update ([`encrypt_tagged`]) is bound to its plan by its tag too.
    pub fn for_plan(mut self, plan: [u8; 16]) -> Self {
        self.plan = plan_binding(&plan);
        self
    }

    /// The plan binding named in the header (zeros: unbound).
    pub fn plan(&self) -> PlanBinding {
        self.plan
    }

    /// Number of model values (the weight slot is not counted). Matches
    /// [`Accumulator::len`](super::Accumulator::len) and the `len` given to
    /// [`Accumulator::new`](super::Accumulator::new).
    pub fn len(&self) -> usize {
        self.words.len() - 1
    }

    /// True if the update carries no model values (only the weight slot).
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

    /// The key's limit of contributors per sum.
    pub fn max_clients(&self) -> u32 {
        self.layout.max_clients
    }

    /// Wire encoding (see [`wire`](super::wire)).
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = UpdateHeader {
            layout: self.layout,
            len: self.len() as u64,
            seed: self.seed.to_le_bytes(),
            round: self.bound.0,
            attempt: self.bound.1,
            plan: self.plan,
        };
        wire::encode(
            UPDATE_MAGIC,
            &header,
            MAX_UPDATE_HEADER,
            self.layout.params,
            &self.words,
        )
    }

    /// Strict decoding of untrusted bytes; `max_values` bounds the number of
    /// model values (and therefore the allocation).
    pub fn from_bytes(bytes: &[u8], max_values: usize) -> Result<Self, CryptoError> {
        let view = UpdateRef::parse(bytes, max_values)?;
        Ok(Self {
            layout: view.layout,
            seed: view.seed,
            words: wire::read_words(view.layout.params, view.payload),
            bound: view.bound,
            plan: view.plan,
        })
    }
}

/// An encoded update checked in place: the header decoded and validated, the
/// payload borrowed. The aggregator adds it into the sum without copying the
/// body words ([`Accumulator::add_ref`](super::Accumulator::add_ref)).
#[derive(Debug, Clone, Copy)]
pub struct UpdateRef<'a> {
    pub(crate) layout: KeyLayout,
    pub(crate) seed: u128,
    bound: (u64, u32),
    plan: PlanBinding,
    len: usize,
    /// `(len + 1) * word_bytes` little-endian body words.
    pub(crate) payload: &'a [u8],
}

impl<'a> UpdateRef<'a> {
    pub(crate) fn meta(&self) -> UpdateMeta {
        UpdateMeta {
            layout: self.layout,
            len: self.len,
            seed: self.seed,
        }
    }

    /// The same strict checks as [`EncryptedUpdate::from_bytes`], without
    /// allocating anything proportional to the update.
    pub fn parse(bytes: &'a [u8], max_values: usize) -> Result<Self, CryptoError> {
        Self::parse_inner(bytes, max_values, None)
    }

    /// [`parse`](Self::parse) for a session whose key has this layout: a
    /// header with other parameters is a parameter mismatch, reported before
    /// the payload length (which depends on the parameters) is checked.
    pub fn parse_for(
        bytes: &'a [u8],
        max_values: usize,
        layout: &KeyLayout,
    ) -> Result<Self, CryptoError> {
        Self::parse_inner(bytes, max_values, Some(layout))
    }

    fn parse_inner(
        bytes: &'a [u8],
        max_values: usize,
        expected: Option<&KeyLayout>,
    ) -> Result<Self, CryptoError> {
        const WHAT: &str = "encrypted update";
        let (h, payload) =
            wire::decode_header::<UpdateHeader, MAX_UPDATE_HEADER>(bytes, UPDATE_MAGIC, WHAT)?;
        if let Some(layout) = expected {
            layout.check_params(&h.layout)?;
        }
        check_layout(h.layout.params, h.layout.scale_bits, h.layout.max_clients)?;
        let len = wire::check_payload(WHAT, h.layout.params, h.len, max_values, payload)?;
        Ok(Self {
            layout: h.layout,
            seed: u128::from_le_bytes(h.seed),
            bound: (h.round, h.attempt),
            plan: h.plan,
            len,
            payload,
        })
    }

    /// Number of model values (the weight slot is not counted).
    pub fn len(&self) -> usize {
        self.len
    }

    /// The round and attempt named in the header (0, 0: unbound).
    pub fn binding(&self) -> (u64, u32) {
        self.bound
    }

    /// The plan binding named in the header (zeros: unbound).
    pub fn plan(&self) -> PlanBinding {
        self.plan
    }

    /// True if the update carries no model values (only the weight slot).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Encrypts `weight * values` together with `weight` in one packed ciphertext.
///
/// `weight` is the client's sample count (a non-negative integer); see
/// [`encoding`](super::encoding) for the bounds. Every call draws a fresh mask
/// seed and fresh noise.
pub fn encrypt_weighted(
    key: &SecretKey,
    values: &[f64],
    weight: f64,
) -> Result<EncryptedUpdate, CryptoError> {
    encrypt_weighted_masked(key, values, weight, &Masks::none())
}

/// [`encrypt_weighted`] with pairwise masks added to the encoded integers
/// before encryption (see [`masking`](super::masking)): the update alone
/// decrypts to uniform noise; the sum of every partner's update decrypts to
/// the exact unmasked sum.
pub fn encrypt_weighted_masked(
    key: &SecretKey,
    values: &[f64],
    weight: f64,
    masks: &Masks,
) -> Result<EncryptedUpdate, CryptoError> {
    let params = key.params();
    let scale_bits = key.scale_bits();
    let max_clients = key.max_clients();
    encoding::check(params, scale_bits, max_clients, values, weight)?;
    let shift = params.delta_log2(max_clients);
    let seed = fresh_seed();
    let words = glwe::encrypt_bodies(
        &key.fourier,
        values.len() + 1,
        |first, out| {
            encoding::encode_into(shift, scale_bits, values, weight, first, out);
            masks.apply(shift, first, out);
        },
        seed,
        fresh_seed(),
        params.dropped_bits(),
    );
    Ok(EncryptedUpdate {
        layout: key.layout(),
        seed,
        words,
        bound: (0, 0),
        plan: [0; PLAN_BINDING_BYTES],
    })
}

/// [`encrypt_weighted_masked`] with a sum tag (see
/// [`sum_tag`](super::sum_tag)): `values`, then the [`TagField::slots`]
/// limbs of site `site`'s tag in `scope` (the key's
/// [`KeyLayout::tag_slots`]), then the weight slot, all masked. The
/// update's length is `values.len() + tag_slots`, and its header names
/// the scope's round, attempt and plan.
pub fn encrypt_tagged(
    key: &SecretKey,
    values: &[f64],
    weight: f64,
    masks: &Masks,
    scope: &TagScope,
    site: &str,
) -> Result<EncryptedUpdate, CryptoError> {
    let params = key.params();
    let scale_bits = key.scale_bits();
    let max_clients = key.max_clients();
    encoding::check(params, scale_bits, max_clients, values, weight)?;
    let field = TagField::for_key(params, max_clients);
    let ints = encoding::integers(scale_bits, values, weight);
    let tag = key.tag_key().tag(&field, scope, site, &ints);
    drop(ints);
    let shift = params.delta_log2(max_clients);
    let seed = fresh_seed();
    let words = glwe::encrypt_bodies(
        &key.fourier,
        values.len() + tag.len() + 1,
        |first, out| {
            encoding::encode_tagged_into(shift, scale_bits, values, &tag, weight, first, out);
            masks.apply(shift, first, out);
        },
        seed,
        fresh_seed(),
        params.dropped_bits(),
    );
    Ok(EncryptedUpdate {
        layout: key.layout(),
        seed,
        words,
        bound: (scope.round, scope.attempt),
        plan: plan_binding(&scope.plan),
    })
}

/// Convenience for `f32` models: converts and calls [`encrypt_weighted`].
pub fn encrypt_weighted_f32(
    key: &SecretKey,
    values: &[f32],
    weight: f64,
) -> Result<EncryptedUpdate, CryptoError> {
    let values: Vec<f64> = values.iter().map(|v| f64::from(*v)).collect();
    encrypt_weighted(key, &values, weight)
}
