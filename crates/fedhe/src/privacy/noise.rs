//! DP-SGD's secret randomness and its noise sampler.
//!
//! **Secret.** The Poisson batches and the noise of DP-SGD come from a
//! ChaCha20 stream keyed by a 256-bit [`DpSeed`], never from the plan's
//! public seed (which only shuffles non-DP training and initializes the
//! model). A federated site derives each training round's seed from its
//! [`SiteSecret`] (32 bytes from the operating system, kept owner-only in
//! its client state file from registration on, before its first upload), so
//! a site restarted in the middle of a round retrains exactly the same
//! values; anything else (local training, a site without a state file)
//! draws a fresh seed from the operating system for every run.
//!
//! **Sampler.** Floating-point Gaussian samplers leak through the low bits
//! of their outputs (Mironov 2012; Jin et al. 2021). DP-SGD here adds
//! *integer* noise on a grid: every clipped gradient is rounded to the grid
//! `γ = C · 2^-k` first (after clipping to `C − γ√p / 2`, so that the
//! rounded gradient's L2 norm is still at most `C`: the accountant's
//! sensitivity is unchanged), the batch's sum is an integer vector, and the
//! noise is the discrete Gaussian `N_Z(0, ⌈(σ·2^k)²⌉)` sampled exactly with
//! integer arithmetic (Canonne, Kamath and Steinke, "The Discrete Gaussian
//! for Differential Privacy", NeurIPS 2020, Algorithm 3). The noisy sum is
//! an integer times `γ`, exact in `f64`; no floating-point operation touches
//! the noise before it is added.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use ring::rand::SecureRandom;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A 256-bit key of DP-SGD's randomness (a secret: redacted in `Debug`,
/// wiped on drop).
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct DpSeed([u8; 32]);

impl std::fmt::Debug for DpSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DpSeed(…)")
    }
}

/// 32 bytes from the operating system's generator (getrandom), mixed with
/// nothing weaker.
pub fn os_bytes() -> Result<[u8; 32], super::PrivacyError> {
    let mut out = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| super::PrivacyError::Entropy)?;
    Ok(out)
}

impl DpSeed {
    /// A fresh seed from the operating system.
    pub fn fresh() -> Result<DpSeed, super::PrivacyError> {
        os_bytes().map(DpSeed)
    }

    /// A seed of these bytes (tests; a real seed is [`fresh`](Self::fresh)
    /// or derived from a [`SiteSecret`]).
    pub fn from_bytes(bytes: [u8; 32]) -> DpSeed {
        DpSeed(bytes)
    }

    /// The randomness of one DP-SGD run.
    pub fn rng(&self) -> DpRng {
        DpRng(ChaCha20Rng::from_seed(self.0))
    }
}

/// A site's long-term DP secret for one run of a federation: each training
/// round's [`DpSeed`] is HKDF-SHA256 of it with the plan and the round, so a
/// restarted site retrains the same values, and no one without it (the plan
/// and the site's id are public) can replay the site's training.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct SiteSecret([u8; 32]);

impl std::fmt::Debug for SiteSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SiteSecret(…)")
    }
}

impl SiteSecret {
    /// A fresh secret from the operating system.
    pub fn generate() -> Result<SiteSecret, super::PrivacyError> {
        os_bytes().map(SiteSecret)
    }

    /// The secret stored as 64 hex digits (client state file).
    pub fn from_hex(text: &str) -> Option<SiteSecret> {
        crate::hex::parse_hex_array(text).map(SiteSecret)
    }

    /// Hex of the secret (for the owner-only client state file only).
    pub fn to_hex(&self) -> String {
        crate::hex::hex(&self.0)
    }

    /// The DP seed of training round `round` of the plan `plan` (hex
    /// fingerprint).
    pub fn round_seed(&self, plan: &str, round: u64) -> DpSeed {
        let mut info = Vec::with_capacity(plan.len() + 16);
        info.extend_from_slice(&(plan.len() as u64).to_le_bytes());
        info.extend_from_slice(plan.as_bytes());
        info.extend_from_slice(&round.to_le_bytes());
        let mut out = [0u8; 32];
        super::masks::hkdf_expand(b"FedHE DP seed v1", &self.0, &info, &mut out);
        let seed = DpSeed(out);
        out.zeroize();
        seed
    }
}

/// DP-SGD's random stream (ChaCha20).
pub struct DpRng(ChaCha20Rng);

impl DpRng {
    /// Whether a row is in this step's Poisson sample (probability `q`).
    pub fn sampled(&mut self, q: f64) -> bool {
        self.0.random::<f64>() < q
    }

    /// Bernoulli(num / den), exactly (`num ≤ den`, `den > 0`).
    fn bernoulli(&mut self, num: u128, den: u128) -> bool {
        num >= den || self.0.random_range(0..den) < num
    }

    /// Bernoulli(exp(−num/den)), exactly (CKS 2020, Algorithm 1).
    fn bernoulli_exp(&mut self, num: u128, den: u128) -> bool {
        let whole = num / den;
        for _ in 0..whole {
            if !self.bernoulli_exp_le1(1, 1) {
                return false;
            }
        }
        self.bernoulli_exp_le1(num - whole * den, den)
    }

    /// Bernoulli(exp(−γ)) for γ = num/den in [0, 1].
    fn bernoulli_exp_le1(&mut self, num: u128, den: u128) -> bool {
        let mut k: u128 = 1;
        while self.bernoulli(num, den.saturating_mul(k)) {
            k += 1;
        }
        k % 2 == 1
    }

    /// The discrete Laplace distribution of scale `t` (CKS 2020, Algorithm 2).
    fn discrete_laplace(&mut self, t: u128) -> i128 {
        loop {
            let u = self.0.random_range(0..t);
            if !self.bernoulli_exp(u, t) {
                continue;
            }
            let mut v: u128 = 0;
            while self.bernoulli_exp(1, 1) {
                v += 1;
            }
            let x = (u + t * v) as i128;
            let negative = self.0.random::<bool>();
            if negative && x == 0 {
                continue;
            }
            return if negative { -x } else { x };
        }
    }

    /// One draw of the discrete Gaussian `N_Z(0, variance)` (CKS 2020,
    /// Algorithm 3): P(x) ∝ exp(−x² / (2·variance)) over the integers.
    pub fn discrete_gaussian(&mut self, variance: u128) -> i128 {
        if variance == 0 {
            return 0;
        }
        let t = (variance as f64).sqrt().floor() as u128 + 1;
        loop {
            let y = self.discrete_laplace(t);
            // Accept with exp(−(|y| − σ²/t)² / (2σ²)) = exp(−(|y|·t − σ²)² / (2σ²t²)).
            let a = (y.unsigned_abs() * t).abs_diff(variance);
            let (Some(num), Some(den)) = (
                a.checked_mul(a),
                variance
                    .checked_mul(2)
                    .and_then(|v| v.checked_mul(t))
                    .and_then(|v| v.checked_mul(t)),
            ) else {
                // A draw so far in the tail that the product overflows:
                // its acceptance is below exp(−2^60); rejecting it changes
                // no probability a double can tell.
                continue;
            };
            if self.bernoulli_exp(num, den) {
                return y;
            }
        }
    }
}

/// The grid of DP-SGD's integer arithmetic for clip `clip`, noise
/// multiplier `sigma` and `params` parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoiseGrid {
    /// γ: one grid unit.
    pub unit: f64,
    /// The clip applied before rounding (`C − γ√p / 2`): rounded, a
    /// gradient's norm is at most `C`.
    pub clip: f64,
    /// The noise's variance in grid units, `⌈(σ·C/γ)²⌉`.
    pub variance: u128,
}

impl NoiseGrid {
    /// The finest grid (up to 2^-20 of the clip) whose arithmetic fits:
    /// σ·C/γ at most 2^28, so every product of the sampler fits in 128 bits.
    pub fn new(clip: f64, sigma: f64, params: usize) -> NoiseGrid {
        let bits = (28.0 - sigma.max(1.0).log2()).floor().clamp(8.0, 20.0);
        let mut unit = clip * (-bits).exp2();
        let mut shrink = unit * (params.max(1) as f64).sqrt() / 2.0;
        // Very many parameters on a coarse grid: a finer grid keeps the
        // clip positive (the variance then grows, still in range).
        while shrink > clip / 2.0 {
            unit /= 4.0;
            shrink /= 4.0;
        }
        let sd = sigma.max(0.0) * clip / unit;
        NoiseGrid {
            unit,
            clip: clip - shrink,
            variance: (sd * sd).ceil() as u128,
        }
    }

    /// `v` in grid units (round to nearest).
    pub fn to_units(&self, v: f64) -> i64 {
        (v / self.unit).round() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_discrete_gaussian_has_its_variance_and_no_bias() {
        let mut rng = DpSeed([7; 32]).rng();
        let variance: u128 = 1 << 40;
        let n = 20_000;
        let draws: Vec<f64> = (0..n)
            .map(|_| rng.discrete_gaussian(variance) as f64)
            .collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|d| (d - mean) * (d - mean)).sum::<f64>() / n as f64;
        let sd = (variance as f64).sqrt();
        assert!(mean.abs() < 4.0 * sd / (n as f64).sqrt(), "mean {mean}");
        assert!((var / variance as f64 - 1.0).abs() < 0.05, "variance {var}");
        // Small variances are exact too: at σ² = 1, P(0) = 1 / Σ_k e^(−k²/2) ≈ 0.3989.
        let zeros = (0..n).filter(|_| rng.discrete_gaussian(1) == 0).count() as f64 / n as f64;
        assert!((zeros - 0.3989).abs() < 0.02, "P(0) at σ² = 1: {zeros}");
    }

    #[test]
    fn rounded_clipped_gradients_stay_within_the_clip() {
        let g = NoiseGrid::new(1.0, 3.7, 1_000_000);
        assert!(g.clip < 1.0 && g.clip > 0.99, "{g:?}");
        let g = NoiseGrid::new(1.0, 22.8, 31);
        assert_eq!(g.unit, (-20f64).exp2());
        let sd = (g.variance as f64).sqrt() * g.unit;
        assert!((sd - 22.8).abs() < 1e-6, "{sd}");
    }

    #[test]
    fn round_seeds_differ_by_round_plan_and_secret() {
        let s = SiteSecret([1; 32]);
        let t = SiteSecret([2; 32]);
        assert_eq!(s.round_seed("ab", 1), s.round_seed("ab", 1));
        assert_ne!(s.round_seed("ab", 1), s.round_seed("ab", 2));
        assert_ne!(s.round_seed("ab", 1), s.round_seed("ac", 1));
        assert_ne!(s.round_seed("ab", 1), t.round_seed("ab", 1));
        assert_eq!(SiteSecret::from_hex(&s.to_hex()), Some(s));
    }
}
