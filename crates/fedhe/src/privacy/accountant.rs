//! The RDP accountant of the Poisson-subsampled Gaussian mechanism
//! (Mironov, Talwar & Zhang, "Rényi Differential Privacy of the Sampled
//! Gaussian Mechanism", 2019), as computed by Google's `dp-accounting` and
//! Opacus: RDP at integer and fractional orders, composed over steps, and
//! converted to (ε, δ) with the conversion of Balle et al. (2020):
//! ε = RDP(α) + ln(1 − 1/α) − ln(δ·α)/(α − 1), minimised over α.
//! `tests/fixtures/dp_reference.csv` holds dp-accounting's answers on a grid
//! (made by `scripts/dp_reference.py`); the tests require 1 % agreement.

use super::PrivacyError;

/// The orders dp-accounting's `RdpAccountant` uses by default.
pub const DEFAULT_ORDERS: [f64; 156] = default_orders();

const fn default_orders() -> [f64; 156] {
    let mut o = [0.0; 156];
    let mut i = 0;
    // 1.1, 1.2, …, 10.9
    while i < 99 {
        o[i] = 1.0 + (i as f64 + 1.0) / 10.0;
        i += 1;
    }
    // 11, …, 63
    let mut k = 11;
    while k < 64 {
        o[i] = k as f64;
        i += 1;
        k += 1;
    }
    o[152] = 128.0;
    o[153] = 256.0;
    o[154] = 512.0;
    o[155] = 1024.0;
    o
}

/// ε spent, and the order that gave it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrivacySpent {
    pub epsilon: f64,
    pub delta: f64,
    pub order: f64,
}

fn check(
    name: &'static str,
    value: f64,
    ok: bool,
    bound: &'static str,
) -> Result<(), PrivacyError> {
    if ok && value.is_finite() {
        Ok(())
    } else {
        Err(PrivacyError::OutOfRange { name, value, bound })
    }
}

/// ln(e^a + e^b).
fn log_add(a: f64, b: f64) -> f64 {
    let (hi, lo) = if a > b { (a, b) } else { (b, a) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    hi + (lo - hi).exp().ln_1p()
}

/// ln(erfc(x)), accurate for large positive x (no underflow): the Chebyshev
/// fit of Numerical Recipes (`erfcc`, relative error < 1.2e-7), taken in
/// log space.
fn log_erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let log_erfc_abs = t.ln() + poly;
    if x >= 0.0 {
        log_erfc_abs
    } else {
        // erfc(−z) = 2 − erfc(z)
        (2.0 - log_erfc_abs.exp()).ln()
    }
}

/// ln A_α for an integer order (the finite binomial sum).
fn log_a_int(q: f64, sigma: f64, alpha: u64) -> f64 {
    let mut log_a = f64::NEG_INFINITY;
    let mut log_binom = 0.0; // ln C(α, 0)
    for i in 0..=alpha {
        let fi = i as f64;
        let fa = alpha as f64;
        let log_coef = log_binom + fi * q.ln() + (fa - fi) * (-q).ln_1p();
        let s = log_coef + (fi * fi - fi) / (2.0 * sigma * sigma);
        log_a = log_add(log_a, s);
        // C(α, i+1) = C(α, i) · (α − i) / (i + 1)
        if i < alpha {
            log_binom += (fa - fi).ln() - (fi + 1.0).ln();
        }
    }
    log_a
}

/// Most terms of the fractional-order series before the order is given up
/// (dp-accounting's limit; it then leaves the order out).
const MAX_FRAC_TERMS: u32 = 1000;

/// ln A_α for a fractional order: the two series of Mironov et al. §3.3,
/// summed in absolute value as dp-accounting 0.6 does (an upper bound on
/// A_α), stopping when both terms fall and are 30 nats below the total.
/// `None` when that takes more than [`MAX_FRAC_TERMS`] terms.
fn log_a_frac(q: f64, sigma: f64, alpha: f64) -> Option<f64> {
    let (mut log_a0, mut log_a1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let (mut last_s0, mut last_s1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let z0 = sigma * sigma * (1.0 / q - 1.0).ln() + 0.5;
    let mut log_binom = 0.0; // ln |C(α, i)|
    let sqrt2_sigma = std::f64::consts::SQRT_2 * sigma;
    for i in 0..MAX_FRAC_TERMS {
        let fi = f64::from(i);
        let j = alpha - fi;
        let log_t0 = log_binom + fi * q.ln() + j * (-q).ln_1p();
        let log_t1 = log_binom + j * q.ln() + fi * (-q).ln_1p();
        let log_e0 = 0.5f64.ln() + log_erfc((fi - z0) / sqrt2_sigma);
        let log_e1 = 0.5f64.ln() + log_erfc((z0 - j) / sqrt2_sigma);
        let log_s0 = log_t0 + (fi * fi - fi) / (2.0 * sigma * sigma) + log_e0;
        let log_s1 = log_t1 + (j * j - j) / (2.0 * sigma * sigma) + log_e1;
        log_a0 = log_add(log_a0, log_s0);
        log_a1 = log_add(log_a1, log_s1);
        let total = log_add(log_a0, log_a1);
        if log_s0 < last_s0 && log_s1 < last_s1 && log_s0.max(log_s1) < total - 30.0 {
            return Some(total);
        }
        last_s0 = log_s0;
        last_s1 = log_s1;
        // |C(α, i+1)| = |C(α, i)| · |α − i| / (i + 1)
        log_binom += (alpha - fi).abs().ln() - (fi + 1.0).ln();
    }
    None
}

/// RDP of one step at `order`, sampling rate `q`, noise multiplier `sigma`.
fn rdp_one(q: f64, sigma: f64, order: f64) -> f64 {
    if q == 0.0 {
        return 0.0;
    }
    if sigma == 0.0 {
        return f64::INFINITY;
    }
    if q == 1.0 {
        return order / (2.0 * sigma * sigma);
    }
    let log_a = if order.fract() == 0.0 && order <= 1e6 {
        log_a_int(q, sigma, order as u64)
    } else {
        // An order whose series does not settle is left out (infinite RDP).
        match log_a_frac(q, sigma, order) {
            Some(v) => v,
            None => return f64::INFINITY,
        }
    };
    log_a / (order - 1.0)
}

/// RDP after `steps` steps, at each of `orders`.
pub fn rdp(q: f64, sigma: f64, steps: u64, orders: &[f64]) -> Vec<f64> {
    orders
        .iter()
        .map(|&o| rdp_one(q, sigma, o) * steps as f64)
        .collect()
}

/// (ε, δ) from RDP values, minimised over the orders.
fn epsilon_from_rdp(orders: &[f64], rdp: &[f64], delta: f64) -> (f64, f64) {
    let mut best = (f64::INFINITY, f64::NAN);
    for (&a, &r) in orders.iter().zip(rdp) {
        let eps = if delta * delta + (-r).exp_m1() > 0.0 {
            0.0
        } else if a > 1.01 {
            r + (-1.0 / a).ln_1p() - (delta * a).ln() / (a - 1.0)
        } else {
            f64::INFINITY
        };
        if eps < best.0 {
            best = (eps, a);
        }
    }
    (best.0.max(0.0), best.1)
}

/// ε of `steps` Poisson-sampled Gaussian steps (sample rate `q`, noise
/// multiplier `sigma`) at `delta`.
pub fn epsilon(q: f64, sigma: f64, steps: u64, delta: f64) -> Result<PrivacySpent, PrivacyError> {
    check("sample rate", q, (0.0..=1.0).contains(&q), "0 ≤ q ≤ 1")?;
    check("noise multiplier", sigma, sigma >= 0.0, "σ ≥ 0")?;
    check("delta", delta, delta > 0.0 && delta < 1.0, "0 < δ < 1")?;
    let r = rdp(q, sigma, steps, &DEFAULT_ORDERS);
    let (epsilon, order) = epsilon_from_rdp(&DEFAULT_ORDERS, &r, delta);
    Ok(PrivacySpent {
        epsilon,
        delta,
        order,
    })
}

/// The largest noise multiplier [`noise_multiplier_for`] considers.
pub const MAX_NOISE_MULTIPLIER: f64 = 1000.0;

/// The smallest noise multiplier (to 0.1 %) whose ε after `steps` steps is at
/// most `target` (bisection: ε falls as σ grows).
pub fn noise_multiplier_for(
    q: f64,
    steps: u64,
    delta: f64,
    target: f64,
) -> Result<f64, PrivacyError> {
    check("epsilon", target, target > 0.0, "ε > 0")?;
    const MAX: f64 = MAX_NOISE_MULTIPLIER;
    let eps_at = |s: f64| epsilon(q, s, steps, delta).map(|p| p.epsilon);
    let reached = eps_at(MAX)?;
    if reached > target {
        return Err(PrivacyError::Unreachable {
            target,
            max: MAX,
            reached,
        });
    }
    let (mut lo, mut hi) = (0.0f64, MAX);
    while hi - lo > 1e-3 * hi.max(1e-3) {
        let mid = 0.5 * (lo + hi);
        if eps_at(mid)? > target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_erfc_matches_known_values() {
        // erfc(0) = 1, erfc(1) = 0.157299207050285, erfc(5) = 1.5374597944e-12
        assert!(log_erfc(0.0).abs() < 1e-6);
        assert!((log_erfc(1.0) - 0.157_299_207_050_285f64.ln()).abs() < 1e-6);
        assert!((log_erfc(5.0) - 1.537_459_794_428e-12f64.ln()).abs() < 1e-5);
        assert!((log_erfc(-1.0) - 1.842_700_792_949_715f64.ln()).abs() < 1e-6);
        // no underflow far out
        assert!(log_erfc(40.0).is_finite() && log_erfc(40.0) < -1500.0);
    }

    #[test]
    fn full_batch_gaussian_has_the_closed_form() {
        // q = 1: RDP(α) = α / (2σ²) exactly.
        let r = rdp(1.0, 2.0, 3, &[2.0, 10.5]);
        assert!((r[0] - 3.0 * 2.0 / 8.0).abs() < 1e-12);
        assert!((r[1] - 3.0 * 10.5 / 8.0).abs() < 1e-12);
    }

    #[test]
    fn more_noise_spends_less_and_the_search_inverts_it() {
        let a = epsilon(0.01, 1.0, 1000, 1e-5).unwrap().epsilon;
        let b = epsilon(0.01, 2.0, 1000, 1e-5).unwrap().epsilon;
        assert!(a > b && b > 0.0, "{a} {b}");
        let s = noise_multiplier_for(0.01, 1000, 1e-5, a).unwrap();
        assert!((s - 1.0).abs() < 0.01, "{s}");
        assert!(epsilon(2.0, 1.0, 1, 1e-5).is_err());
        assert!(noise_multiplier_for(1.0, 1_000_000, 1e-5, 0.01).is_err());
    }
}
