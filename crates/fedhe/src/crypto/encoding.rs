//! Fixed-point encoding of sample-weighted values, and decoding of sums.
//!
//! A client with values `v_i` and sample weight `w` (its row count: a
//! non-negative integer) packs `len + 1` integers:
//!
//! - slot `i < len`: `m_i = round(w · v_i · 2^f)`, `f` = the key's `scale_bits`;
//! - slot `len` (the weight slot): `m = w`, exact.
//!
//! Every `m` must satisfy `|m| < 2^B` with `B` = [`ParamSet::client_budget_log2`]
//! of the key's `max_clients` (for the default 64: 32 for Standard64, 18 for
//! Compact32), i.e. `|w · v_i| < 2^(B - f)` and `w < 2^B`. Then any sum of up
//! to `max_clients` such updates decodes exactly; otherwise encoding fails
//! with [`CryptoError::ValueOutOfRange`] naming the value and the bound.
//!
//! Decoding the sum gives `Σ m_i` exactly (the noise is rounded away), so the
//! only error of the weighted mean is the encoding rounding:
//! `|mean - exact| ≤ n · 2^-(f+1) / Σw` for `n` contributors (plus f64
//! rounding of the final division). With integer weights `Σw ≥ n`, so the
//! error never exceeds `2^-(f+1)`.

use rayon::prelude::*;

use super::CryptoError;
use super::params::ParamSet;

/// Checks `values` and `weight` against the bounds (in parallel); the error
/// names the first offending value.
pub(crate) fn check(
    params: ParamSet,
    scale_bits: u8,
    max_clients: u32,
    values: &[f64],
    weight: f64,
) -> Result<(), CryptoError> {
    let budget = params.client_budget_log2(max_clients);
    let limit = (1u64 << budget) as f64;
    if !weight.is_finite() || weight < 0.0 || weight.fract() != 0.0 || weight >= limit {
        return Err(CryptoError::InvalidWeight {
            weight,
            max: (1u64 << budget) - 1,
            max_clients,
        });
    }
    let scale = f64::from(scale_bits).exp2();
    // |x| < 2^B - 1/2 is exactly "x rounds to an integer of magnitude below
    // 2^B"; NaN and infinities fail it too.
    let ok = |x: f64| x.is_finite() && x.abs() < limit - 0.5;
    let bad = |v: &f64| !ok(v * weight * scale);
    // Chunked: rayon's per-item `position_first` pays an atomic per value.
    const CHUNK: usize = 1 << 14;
    let first_bad_chunk = values
        .par_chunks(CHUNK)
        .position_first(|chunk| chunk.iter().any(bad));
    let first_bad = first_bad_chunk.and_then(|c| {
        values[c * CHUNK..]
            .iter()
            .position(bad)
            .map(|i| c * CHUNK + i)
    });
    if let Some(index) = first_bad {
        return Err(CryptoError::ValueOutOfRange {
            index,
            value: values[index],
            weight,
            bound: (f64::from(budget) - f64::from(scale_bits)).exp2(),
            max_clients,
        });
    }
    Ok(())
}

/// Writes the plaintext coefficients `first .. first + out.len()` of an
/// update (values, then the weight slot at index `values.len()`), shifted by
/// `2^D`. Call [`check`] first: out-of-range values would wrap.
pub(crate) fn encode_into(
    shift: u32,
    scale_bits: u8,
    values: &[f64],
    weight: f64,
    first: usize,
    out: &mut [u64],
) {
    encode_tagged_into(shift, scale_bits, values, &[], weight, first, out);
}

/// [`encode_into`] with `tail` integers (a sum tag's limbs, each below the
/// budget) in the slots between the values and the weight slot.
pub(crate) fn encode_tagged_into(
    shift: u32,
    scale_bits: u8,
    values: &[f64],
    tail: &[i64],
    weight: f64,
    first: usize,
    out: &mut [u64],
) {
    let scale = f64::from(scale_bits).exp2();
    let n = values.len();
    for (i, o) in out.iter_mut().enumerate() {
        let index = first + i;
        let m = match values.get(index) {
            // exact after `check`: an integer-valued f64 below 2^44 in magnitude
            Some(v) => round_ties_even(v * weight * scale) as i64,
            None => match tail.get(index - n) {
                Some(t) => *t,
                // exact after `check`: an integer weight below 2^44
                None => weight as i64,
            },
        };
        *o = (m as u64) << shift;
    }
}

/// The encoded integers of an update (after [`check`]): the value slots,
/// then the weight slot.
pub(crate) fn integers(scale_bits: u8, values: &[f64], weight: f64) -> Vec<i64> {
    let scale = f64::from(scale_bits).exp2();
    let mut out: Vec<i64> = values
        .par_iter()
        .with_min_len(1 << 14)
        .map(|v| round_ties_even(v * weight * scale) as i64)
        .collect();
    out.push(weight as i64);
    out
}

/// Rounds to the nearest integer (ties to even) for |x| < 2^51 with plain
/// SSE2 arithmetic, so the encoding loop vectorizes (`f64::round` is a libm call).
#[inline]
fn round_ties_even(x: f64) -> f64 {
    const MAGIC: f64 = 6_755_399_441_055_744.0; // 1.5 · 2^52
    (x + MAGIC) - MAGIC
}

/// Rounds a phase (plaintext + noise, shifted by `2^shift`) to the signed encoded integer.
#[inline]
pub(crate) fn decode_one(shift: u32, phase: u64) -> i64 {
    (phase.wrapping_add(1u64 << (shift - 1)) as i64) >> shift
}

/// Turns decoded sums (`len` value slots + the weight slot) into the weighted mean.
pub(crate) fn weighted_mean(
    shift: u32,
    scale_bits: u8,
    phases: &[u64],
) -> Result<(Vec<f64>, f64), CryptoError> {
    let Some((&weight_phase, value_phases)) = phases.split_last() else {
        return Err(CryptoError::Malformed {
            what: "encrypted sum",
            detail: "no weight slot".into(),
        });
    };
    let total_weight = decode_one(shift, weight_phase);
    if total_weight <= 0 {
        return Err(CryptoError::ZeroTotalWeight {
            found: total_weight,
        });
    }
    let total_weight = total_weight as f64;
    let denom = total_weight * f64::from(scale_bits).exp2();
    let values = value_phases
        .par_iter()
        .map(|&p| decode_one(shift, p) as f64 / denom)
        .collect();
    Ok((values, total_weight))
}

/// The documented worst-case error of a decrypted mean.
pub fn mean_error_bound(scale_bits: u8, contributors: u32, total_weight: f64) -> f64 {
    f64::from(contributors) * (-(f64::from(scale_bits) + 1.0)).exp2() / total_weight
}
