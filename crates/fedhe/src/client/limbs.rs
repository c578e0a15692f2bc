//! Limb encoding: a number too wide for a key's fixed-point budget (a sum of
//! squares, a row count) travels as [`STAT_LIMBS`] base-2^b digits that add
//! without overflow and recombine after the sum.

use super::error::SumError;

pub use crate::plan::STAT_LIMBS;
/// Default limb size for exchanges without a fixed-point budget (plaintext).
pub const LIMB_BITS: i32 = 15;

/// Limb size for a key: one bit below the per-client budget of
/// `|weight × value|` (`2^(client_budget - scale_bits)`), so every limb
/// encodes without overflow and the lowest keeps `scale_bits` fraction bits.
pub fn limb_bits_for(params: crate::crypto::ParamSet, scale_bits: u8, max_clients: u32) -> i32 {
    let budget = i64::from(params.client_budget_log2(max_clients)) - i64::from(scale_bits);
    i32::try_from(budget - 1).unwrap_or(1).clamp(1, 30)
}

/// Splits `value` into [`STAT_LIMBS`] base-2^b digits of `value * 2^b`
/// (`b = limb_bits`): the top digits are integers, the lowest keeps the
/// fraction. Exact in f64; the range is |value| < 2^(b·(STAT_LIMBS-1)). The
/// encoder rounds the lowest digit to `2^-scale_bits`, so a sum of digits
/// recombines to the sum of values within `2^-(b+scale_bits+1)` per
/// contributor (Standard64: 2^-32; Compact32: 2^-18).
pub fn to_limbs(value: f64, limb_bits: i32, out: &mut Vec<f64>) {
    let base = f64::powi(2.0, limb_bits);
    let mut rest = value * base;
    let mut digits = [0.0; STAT_LIMBS];
    for l in (1..STAT_LIMBS).rev() {
        let unit = base.powi(l as i32);
        let d = (rest / unit).trunc();
        digits[l] = d;
        rest -= d * unit;
    }
    digits[0] = rest;
    out.extend_from_slice(&digits);
}

/// Inverse of [`to_limbs`] (also for summed digits).
pub fn from_limbs(limbs: &[f64], limb_bits: i32) -> f64 {
    let base = f64::powi(2.0, limb_bits);
    let mut v = 0.0;
    for (l, d) in limbs.iter().enumerate() {
        v += d * base.powi(l as i32);
    }
    v / base
}

/// `values` as [`STAT_LIMBS`] limbs each (see [`to_limbs`]).
pub fn encode_limbs(values: &[f64], limb_bits: i32) -> Vec<f64> {
    let mut out = Vec::with_capacity(values.len() * STAT_LIMBS);
    for v in values {
        to_limbs(*v, limb_bits, &mut out);
    }
    out
}

/// Inverse of [`encode_limbs`] (also for summed limbs).
pub fn decode_limbs(limbs: &[f64], limb_bits: i32) -> Result<Vec<f64>, SumError> {
    if !limbs.len().is_multiple_of(STAT_LIMBS) {
        return Err(SumError::Limbs(limbs.len()));
    }
    Ok(limbs
        .chunks(STAT_LIMBS)
        .map(|c| from_limbs(c, limb_bits))
        .collect())
}

/// Integers as `limbs` signed base-2^b digits each (`b = limb_bits`),
/// lowest first: `v = Σ d_l · 2^(b·l)` with every `|d_l| < 2^b` and of
/// `v`'s sign, so digits of many sites add without overflow (as the
/// statistics' limbs) and the summed digits recombine exactly. The range is
/// `|v| < 2^(b·limbs)`: `None` names the first value beyond it.
pub fn encode_int_limbs(values: &[i64], limb_bits: i32, limbs: usize) -> Result<Vec<f64>, i64> {
    let b = limb_bits.clamp(1, 30) as u32;
    let range = 1i128 << (b as usize * limbs).min(126);
    let mut out = Vec::with_capacity(values.len() * limbs);
    let mask = (1u64 << b) - 1;
    for &v in values {
        if i128::from(v).abs() >= range {
            return Err(v);
        }
        // The digits of |v|, each given v's sign: the truncating division
        // and remainder by 2^b, by shifts (no 128-bit division).
        let sign = if v < 0 { -1 } else { 1 };
        let mut rest = v.unsigned_abs();
        for _ in 0..limbs {
            // Below 2^30: exact as i64 and as f64 (+0.0 for a zero digit).
            let d = (rest & mask) as i64;
            out.push((sign * d) as f64);
            rest >>= b;
        }
    }
    Ok(out)
}

/// Inverse of [`encode_int_limbs`] for summed digits: every summed digit
/// must be a whole number (exact under the key's fixed point and in
/// plaintext), and the recombined sum must fit 64 bits; `what` names the
/// round in the error.
pub fn decode_int_limbs(
    sum: &[f64],
    limb_bits: i32,
    limbs: usize,
    what: &'static str,
) -> Result<Vec<i64>, SumError> {
    let b = limb_bits.clamp(1, 30) as u32;
    if limbs == 0 || !sum.len().is_multiple_of(limbs) {
        return Err(SumError::TreeLength {
            what,
            got: sum.len(),
            want: sum.len().next_multiple_of(limbs.max(1)),
        });
    }
    let bad = |value: f64| SumError::IntegerLimb { what, value };
    sum.chunks(limbs)
        .map(|c| {
            let mut v: i128 = 0;
            for (l, d) in c.iter().enumerate() {
                let r = d.round();
                if (r - d).abs() > 1e-6 || r.abs() >= 2f64.powi(62) {
                    return Err(bad(*d));
                }
                v += (r as i128) << (b as usize * l);
            }
            i64::try_from(v).map_err(|_| bad(v as f64))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limbs_round_trip_and_add() {
        use crate::crypto::ParamSet;
        assert_eq!(limb_bits_for(ParamSet::Standard64, 16, 64), 15);
        assert_eq!(limb_bits_for(ParamSet::Compact32, 6, 64), 11);
        // 128 clients: two bits less per client, the default scale gives them up
        assert_eq!(limb_bits_for(ParamSet::Standard64, 14, 128), 15);
        assert_eq!(limb_bits_for(ParamSet::Standard64, 16, 128), 13);
        for bits in [15, 11] {
            for v in [0.0, 1.5, -3.25, 74556.0, 8.2e9, -1e13, 0.1234567891] {
                let mut l = Vec::new();
                to_limbs(v, bits, &mut l);
                assert_eq!(l.len(), STAT_LIMBS);
                assert!(
                    l.iter().all(|d| d.abs() < f64::powi(2.0, bits)),
                    "{v}: {l:?}"
                );
                let back = from_limbs(&l, bits);
                assert!((back - v).abs() <= v.abs() * 1e-15 + 1e-12, "{v}");
            }
            let (a, b) = (12345.678, -98.5);
            let (mut la, mut lb) = (Vec::new(), Vec::new());
            to_limbs(a, bits, &mut la);
            to_limbs(b, bits, &mut lb);
            let s: Vec<f64> = la.iter().zip(&lb).map(|(x, y)| x + y).collect();
            assert!((from_limbs(&s, bits) - (a + b)).abs() < 1e-9);
        }
    }

    #[test]
    fn integer_limbs_add_exactly_and_refuse_out_of_range() {
        for bits in [15, 11] {
            let a = [0i64, 1, -1, 123_456_789, -(1 << 40), (1 << 43) - 1, -7];
            let b = [5i64, -1, 2, -123_456_788, 3, 1, -(1 << 42)];
            let la = encode_int_limbs(&a, bits, 4).unwrap();
            let lb = encode_int_limbs(&b, bits, 4).unwrap();
            assert_eq!(la.len(), a.len() * 4);
            assert!(la.iter().all(|d| d.abs() < f64::powi(2.0, bits)));
            let s: Vec<f64> = la.iter().zip(&lb).map(|(x, y)| x + y).collect();
            let back = decode_int_limbs(&s, bits, 4, "tree").unwrap();
            let want: Vec<i64> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
            assert_eq!(back, want);
        }
        assert_eq!(encode_int_limbs(&[1 << 44], 11, 4), Err(1 << 44));
        // The digits are those of the truncating 128-bit division and
        // remainder, bit for bit (a zero digit is +0.0, never -0.0).
        let vals = [
            0i64,
            1,
            -1,
            32767,
            -32768,
            -(1 << 59) + 3,
            (1 << 59) - 1,
            -1 << 30,
        ];
        for (bits, limbs) in [(15, 4), (11, 4), (30, 4), (7, 9)] {
            // The values within this encoding's range.
            let vals: Vec<i64> = vals
                .iter()
                .copied()
                .filter(|v| i128::from(*v).abs() < 1i128 << (bits * limbs as i32))
                .collect();
            assert!(vals.len() >= 6, "{bits} bits × {limbs}");
            let got = encode_int_limbs(&vals, bits, limbs).unwrap();
            let mut want = Vec::new();
            for &v in &vals {
                let mut rest = i128::from(v);
                for _ in 0..limbs {
                    want.push((rest % (1i128 << bits)) as f64);
                    rest /= 1i128 << bits;
                }
            }
            let bitwise = |v: &[f64]| v.iter().map(|d| d.to_bits()).collect::<Vec<_>>();
            assert_eq!(bitwise(&got), bitwise(&want), "{bits} bits × {limbs}");
        }
        assert_eq!(encode_int_limbs(&[i64::MIN], 15, 4), Err(i64::MIN));
        assert!(matches!(
            decode_int_limbs(&[0.5, 0.0], 15, 2, "bins"),
            Err(SumError::IntegerLimb { what: "bins", .. })
        ));
        assert!(decode_int_limbs(&[1.0; 3], 15, 2, "bins").is_err());
    }

    #[test]
    fn statistics_round_trip_through_limbs() {
        use crate::data::{RawColumn, RawStats};
        let x = ndarray::array![[1.0, 0.0], [f64::NAN, 1.0], [5.0, f64::NAN]];
        let columns = vec![
            RawColumn::numeric("a"),
            RawColumn::Categorical {
                name: "b".into(),
                categories: vec!["u".into(), "v".into()],
                other: false,
            },
        ];
        let stats = RawStats::of(&columns, &x, None);
        let values = stats.to_vec();
        assert_eq!(values, vec![6.0, 26.0, 2.0, 1.0, 1.0, 0.0, 1.0, 3.0]);
        let back = decode_limbs(&encode_limbs(&values, 15), 15).unwrap();
        let back = RawStats::from_vec(&columns, false, &back).unwrap();
        assert_eq!(back, stats);
    }
}
