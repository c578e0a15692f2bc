//! Parameter sets and the fixed-point budget they leave for the sum.
//!
//! Both sets encrypt with TFHE-rs's own 128-bit GLWE parameters for k = 1,
//! N = 2048 on the native 2^64 modulus (binary secret key, TUniform(17) noise,
//! as in `PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128`). They differ in what
//! is sent:
//!
//! | set          | body word | per-encryption error       | shift `D` | budget per client |
//! |--------------|-----------|----------------------------|-----------|-------------------|
//! | `Standard64` | 64 bits   | noise, \|e\| ≤ 2^17          | 25        | \|m\| < 2^32        |
//! | `Compact32`  | 32 bits   | noise + rounding ≤ 2^17 + 2^31 | 39    | \|m\| < 2^18        |
//!
//! `Compact32` rounds every 64-bit body to its top 32 bits (modulus switching
//! of the body to 2^32) after encrypting with the standard parameters, so the
//! wire carries 4 bytes per value. See `docs/crypto.md` for the security
//! argument.
//!
//! Correct decoding: a sum of up to [`MAX_CLIENTS`] (= 2^6) encryptions has an
//! error of at most 2^6 times the per-encryption bound, which is strictly below
//! half a step `2^(D-1)` (Standard64: 2^23 < 2^24; Compact32: 2^37 + 2^23 <
//! 2^38). The sum of the encoded integers must fit in `64 - D` signed bits, so
//! each client's encoded integer `m` gets `63 - D - 6` bits: 2^32 for
//! Standard64, 2^18 for Compact32.

use serde::{Deserialize, Serialize};

/// GLWE polynomial size N: values packed per ciphertext block.
pub const POLY_SIZE: usize = 2048;

/// The largest number of updates one sum may hold (including merged sums).
/// The fixed-point budget below is derived from it.
pub const MAX_CLIENTS: u32 = 64;

/// log2 of [`MAX_CLIENTS`].
pub(crate) const MAX_CLIENTS_LOG2: u32 = 6;

/// TUniform bound of the GLWE noise: |e| ≤ 2^17 (TFHE-rs 128-bit GLWE noise for k=1, N=2048).
pub(crate) const NOISE_BOUND_LOG2: u32 = 17;

/// Named parameter sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ParamSet {
    /// GLWE k=1, N=2048, native 2^64 modulus (TFHE-rs 128-bit parameters);
    /// 8 bytes per value on the wire.
    Standard64,
    /// Same encryption, body rounded to 32 bits (modulus switched to 2^32);
    /// 4 bytes per value on the wire, less fixed-point headroom.
    Compact32,
}

impl ParamSet {
    /// All parameter sets, in a stable order.
    pub const ALL: [ParamSet; 2] = [ParamSet::Standard64, ParamSet::Compact32];

    /// Lower-case name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            ParamSet::Standard64 => "standard64",
            ParamSet::Compact32 => "compact32",
        }
    }

    /// Parses [`ParamSet::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Bytes per body word on the wire.
    pub fn word_bytes(self) -> usize {
        match self {
            ParamSet::Standard64 => 8,
            ParamSet::Compact32 => 4,
        }
    }

    /// Bits dropped from each 64-bit body before sending (0 or 32).
    pub(crate) fn dropped_bits(self) -> u32 {
        64 - 8 * self.word_bytes() as u32
    }

    /// The fixed-point shift `D`: an encoded integer `m` sits at `m * 2^D`.
    pub(crate) fn delta_log2(self) -> u32 {
        match self {
            // 2^6 * 2^17 = 2^23 < 2^24 = 2^(D-1)
            ParamSet::Standard64 => 25,
            // 2^6 * (2^17 + 2^31) = 2^23 + 2^37 < 2^38 = 2^(D-1)
            ParamSet::Compact32 => 39,
        }
    }

    /// Each client's encoded integer must satisfy `|m| < 2^client_budget_log2`
    /// so that the sum of [`MAX_CLIENTS`] of them fits in `64 - D` signed bits.
    pub fn client_budget_log2(self) -> u32 {
        63 - self.delta_log2() - MAX_CLIENTS_LOG2
    }

    /// Default fixed-point fractional bits (`scale = 2^scale_bits`) chosen at keygen.
    ///
    /// Standard64: 16 bits, so |weight × value| < 2^16 = 65,536 per client and
    /// the mean is off by at most `clients × 2^-17 / total_weight`.
    /// Compact32: 6 bits, so |weight × value| < 2^12 = 4,096 per client and the
    /// mean is off by at most `clients × 2^-7 / total_weight`.
    pub fn default_scale_bits(self) -> u8 {
        match self {
            ParamSet::Standard64 => 16,
            ParamSet::Compact32 => 6,
        }
    }

    /// Largest accepted `scale_bits` (leaves at least one integer bit).
    pub fn max_scale_bits(self) -> u8 {
        // infallible: budgets are 32 and 18, well within u8
        (self.client_budget_log2() - 1) as u8
    }
}

impl std::fmt::Display for ParamSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ParamSet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_name(&s.to_ascii_lowercase()).ok_or_else(|| {
            format!("unknown parameter set `{s}` (expected standard64 or compact32)")
        })
    }
}
