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
//! Both the shift `D` and the budget depend on how many contributors a sum
//! may hold, `max_clients`, chosen at key generation (default
//! [`DEFAULT_MAX_CLIENTS`] = 64) and stored in the key files. With
//! `c = ceil(log2(max_clients))` (the table above is `c = 6`):
//!
//! - Correct decoding: a sum of up to `2^c` encryptions has an error of at most
//!   `2^c` times the per-encryption bound, which must stay strictly below half
//!   a step `2^(D-1)`: Standard64 `D = 19 + c` (2^(17+c) < 2^(18+c)),
//!   Compact32 `D = 33 + c` (2^(31+c) + 2^(17+c) < 2^(32+c)).
//! - No overflow: the sum of the encoded integers must fit in `64 - D` signed
//!   bits, so each client's integer `m` gets `B = 63 - D - c` bits: Standard64
//!   `B = 44 - 2c`, Compact32 `B = 30 - 2c`.
//!
//! Each doubling of `max_clients` therefore costs two bits per client: one of
//! noise headroom, one of sum headroom. The default scale gives those bits up
//! from the fraction, not from the integer range (see
//! [`ParamSet::default_scale_bits`]).

use serde::{Deserialize, Serialize};

/// GLWE polynomial size N: values packed per ciphertext block.
pub const POLY_SIZE: usize = 2048;

/// Contributors per sum of a key generated without an explicit `max_clients`.
pub const DEFAULT_MAX_CLIENTS: u32 = 64;

/// The largest `max_clients` a key may declare (Standard64 then leaves 12 bits
/// per client; Compact32 stops earlier, see [`ParamSet::check_max_clients`]).
pub const MAX_CLIENTS_LIMIT: u32 = 1 << 16;

/// Smallest per-client budget `B` a key may be generated with: below it a
/// client's `|weight × value|` range is too narrow to be useful.
pub const MIN_CLIENT_BUDGET_LOG2: u32 = 8;

/// The `max_clients` for a key of a federation of `clients`: at least
/// [`DEFAULT_MAX_CLIENTS`], so small federations keep the default scale.
pub fn max_clients_for(clients: usize) -> u32 {
    u32::try_from(clients)
        .unwrap_or(u32::MAX)
        .max(DEFAULT_MAX_CLIENTS)
}

/// `ceil(log2(max_clients))`, the `c` of the module docs (0 for 0 or 1).
pub fn clients_log2(max_clients: u32) -> u32 {
    max_clients.max(1).next_power_of_two().trailing_zeros()
}

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

    /// The fixed-point shift `D` for sums of up to `max_clients`: an encoded
    /// integer `m` sits at `m * 2^D`.
    pub(crate) fn delta_log2(self, max_clients: u32) -> u32 {
        let c = clients_log2(max_clients);
        match self {
            // 2^c * 2^17 = 2^(17+c) < 2^(18+c) = 2^(D-1)
            ParamSet::Standard64 => 19 + c,
            // 2^c * (2^17 + 2^31) < 2^(32+c) = 2^(D-1)
            ParamSet::Compact32 => 33 + c,
        }
    }

    /// Each client's encoded integer must satisfy `|m| < 2^client_budget_log2`
    /// so that a sum of `max_clients` of them fits in `64 - D` signed bits.
    /// Standard64: 32 for 64 clients, 30 for 128; Compact32: 18 and 16. Zero
    /// if `max_clients` is beyond what the set supports (see
    /// [`ParamSet::check_max_clients`]).
    pub fn client_budget_log2(self, max_clients: u32) -> u32 {
        63u32
            .saturating_sub(self.delta_log2(max_clients))
            .saturating_sub(clients_log2(max_clients))
    }

    /// Checks that keys for sums of `max_clients` leave each client at least
    /// [`MIN_CLIENT_BUDGET_LOG2`] bits.
    pub fn check_max_clients(self, max_clients: u32) -> Result<(), super::CryptoError> {
        let largest = self.largest_max_clients();
        if max_clients == 0 || max_clients > largest {
            return Err(super::CryptoError::InvalidMaxClients {
                params: self,
                max_clients,
                largest,
            });
        }
        Ok(())
    }

    /// The largest `max_clients` [`ParamSet::check_max_clients`] accepts:
    /// 65,536 for Standard64, 2,048 for Compact32.
    pub fn largest_max_clients(self) -> u32 {
        let mut c = clients_log2(MAX_CLIENTS_LIMIT);
        while c > 0 && self.client_budget_log2(1 << c) < MIN_CLIENT_BUDGET_LOG2 {
            c -= 1;
        }
        1 << c
    }

    /// Default fixed-point fractional bits (`scale = 2^scale_bits`) chosen at keygen.
    ///
    /// Standard64 keeps an integer range of 16 bits, |weight × value| < 65,536
    /// per client, and spends what is left on the fraction, at most 16 bits
    /// (16 for 64 clients, 14 for 128). Compact32 keeps 12 bits
    /// (|weight × value| < 4,096) and at most 6 fraction bits (6 for 64
    /// clients, 4 for 128). The mean is off by at most
    /// `clients × 2^-(scale_bits+1) / total_weight`.
    pub fn default_scale_bits(self, max_clients: u32) -> u8 {
        let (integer_bits, most) = match self {
            ParamSet::Standard64 => (16, 16),
            ParamSet::Compact32 => (12, 6),
        };
        let fraction = self
            .client_budget_log2(max_clients)
            .saturating_sub(integer_bits)
            .min(most);
        // infallible: at most 16
        fraction as u8
    }

    /// Largest accepted `scale_bits` (leaves at least one integer bit).
    pub fn max_scale_bits(self, max_clients: u32) -> u8 {
        // infallible: budgets are at most 44
        self.client_budget_log2(max_clients).saturating_sub(1) as u8
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
