//! Encrypted model updates: packed, seeded GLWE ciphertexts (tfhe::core_crypto).
//!
//! A client packs its sample-weighted values and its sample count into one
//! update — 2048 values per GLWE block, the mask sent as a 16-byte seed, one
//! body word per value — with the umbrella's shared [`SecretKey`]. The
//! aggregator holds only the [`PublicKeyFile`] (parameters, scale,
//! fingerprint); it adds updates into an [`Accumulator`] without being able to
//! read them. Clients decrypt the sum with [`decrypt_mean`] and get the
//! sample-weighted mean directly.
//!
//! ```no_run
//! use fedhe::crypto::*;
//! let key = SecretKey::generate(ParamSet::Standard64);
//! let public = key.public();
//! let mut sum = Accumulator::new(&public, 3);
//! for (values, rows) in [(&[0.5, -1.0, 2.0][..], 100.0), (&[1.5, 1.0, 0.0][..], 300.0)] {
//!     let bytes = encrypt_weighted(&key, values, rows)?.to_bytes();      // client
//!     sum.add(&EncryptedUpdate::from_bytes(&bytes, 3)?)?;                // aggregator
//! }
//! let mean = decrypt_mean(&key, &sum)?;                                  // clients
//! assert!((mean.values[0] - 1.25).abs() < 1e-4);
//! # Ok::<(), CryptoError>(())
//! ```
//!
//! Conventions: `len` always counts model values only; every update and sum
//! carries one more slot, the weight slot. Bounds of the fixed-point encoding
//! and the error of the mean are in [`encoding`]; parameter sets in [`params`];
//! formats in [`wire`] and [`keys`]; the security argument in `docs/crypto.md`.

mod accumulator;
pub mod bench;
pub mod encoding;
mod glwe;
pub mod keys;
pub mod masking;
pub mod membership;
pub mod params;
mod prng;
pub mod sum_tag;
mod update;
pub mod wire;

use std::path::{Path, PathBuf};

pub use accumulator::{
    Accumulator, VerifiedSum, WeightedMean, decrypt_integers, decrypt_mean, decrypt_verified,
    plaintext_bits,
};
pub use encoding::mean_error_bound;
pub use keys::KeyPermissions;
pub use keys::{KEY_FORMAT_VERSION, PublicKeyFile, SecretKey};
pub use masking::Masks;
pub use membership::Audience;
pub use params::{DEFAULT_MAX_CLIENTS, MAX_CLIENTS_LIMIT, POLY_SIZE, ParamSet, max_clients_for};
pub(crate) use prng::hkdf_expand;
pub use sum_tag::{MAX_SUM_TAG_SLOTS, TagField, TagScope, sum_tag_slots};
pub use update::{
    EncryptedUpdate, PlanBinding, UpdateRef, encrypt_tagged, encrypt_weighted,
    encrypt_weighted_f32, encrypt_weighted_masked, plan_binding,
};
pub use wire::{PLAN_BINDING_BYTES, WIRE_VERSION, max_sum_bytes, max_update_bytes};

/// Errors from key handling, encoding, encryption and wire decoding.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", .path.display())]
    InFile {
        path: PathBuf,
        source: Box<CryptoError>,
    },
    #[error("{} already exists; pass --force (force = true) to overwrite it", .path.display())]
    WouldOverwrite { path: PathBuf },
    #[error("this is a {found} key file, but a {expected} key file is needed{}", kind_hint(.found))]
    WrongKeyKind {
        expected: &'static str,
        found: &'static str,
    },
    #[error("not a FedHE {expected} key file ({detail})")]
    NotAKeyFile {
        expected: &'static str,
        detail: String,
    },
    #[error("truncated key file: expected {expected} bytes, found {found}")]
    TruncatedKeyFile { expected: usize, found: usize },
    #[error("corrupted key file: {detail}")]
    CorruptKeyFile { detail: String },
    #[error(
        "key file format version {found} is from an older FedHE (before keys carried their client limit); generate new keys with `fedhe keygen` (this build reads version {expected})"
    )]
    OldKeyFile { found: u16, expected: u16 },
    #[error("{what} has format version {found}; this build reads version {expected}")]
    UnsupportedVersion {
        what: &'static str,
        found: u32,
        expected: u32,
    },
    #[error(
        "scale_bits {scale_bits} is too large for {params} with up to {max_clients} clients (at most {max})"
    )]
    InvalidScale {
        params: ParamSet,
        scale_bits: u8,
        max_clients: u32,
        max: u8,
    },
    #[error(
        "max_clients {max_clients} is out of range for {params}: it must be between 1 and {largest} (each doubling costs every client two bits of its fixed-point range)"
    )]
    InvalidMaxClients {
        params: ParamSet,
        max_clients: u32,
        largest: u32,
    },
    #[error(
        "sample weight {weight} is not an integer in [0, {max}] (weights are sample counts; the bound keeps the sum of {max_clients} weights exact)"
    )]
    InvalidWeight {
        weight: f64,
        max: u64,
        max_clients: u32,
    },
    #[error(
        "value {index} ({value}) times weight {weight} is out of range: |weight × value| must be below {bound} for this key's scale, so that a sum of {max_clients} updates cannot overflow (a key made with a smaller --scale-bits or --max-clients has more room; model parameters this large usually mean training diverged: try a smaller learning rate or some L2)"
    )]
    ValueOutOfRange {
        index: usize,
        value: f64,
        weight: f64,
        bound: f64,
        max_clients: u32,
    },
    #[error("malformed {what}: {detail}")]
    Malformed { what: &'static str, detail: String },
    #[error(
        "{what} declares {declared_values} values, i.e. {expected_bytes} payload bytes, but {found_bytes} bytes follow the header"
    )]
    LengthMismatch {
        what: &'static str,
        declared_values: usize,
        expected_bytes: usize,
        found_bytes: usize,
    },
    #[error("{found} values exceed the limit of {limit}")]
    TooManyValues { found: u64, limit: usize },
    #[error("key fingerprint mismatch: expected {expected}, found {found} (made with another key)")]
    FingerprintMismatch {
        expected: Fingerprint,
        found: Fingerprint,
    },
    #[error(
        "parameter mismatch: expected {expected} with scale 2^{expected_scale_bits} for up to {expected_max_clients} clients, found {found} with scale 2^{found_scale_bits} for up to {found_max_clients}"
    )]
    ParamsMismatch {
        expected: ParamSet,
        expected_scale_bits: u8,
        expected_max_clients: u32,
        found: ParamSet,
        found_scale_bits: u8,
        found_max_clients: u32,
    },
    #[error("length mismatch: the sum holds {expected} values, the update {found}")]
    LenMismatch { expected: usize, found: usize },
    #[error(
        "{found} contributors exceed the maximum of {max} one sum can hold without overflow (the key was generated for at most {max} clients per round; see `fedhe keygen --max-clients`)"
    )]
    TooManyContributors { found: usize, max: u32 },
    #[error("this update (mask seed {seed_prefix}…) is already in the sum")]
    DuplicateUpdate { seed_prefix: String },
    #[error(
        "the membership signature does not verify against the session key: the signer does not hold the federation's secret key (or signed another id, name, identity, plan or aggregator session)"
    )]
    BadMembershipProof,
    #[error("the sum has no contributors")]
    EmptySum,
    #[error("the summed sample weight is {found}; a mean needs a positive total weight")]
    ZeroTotalWeight { found: i64 },
    /// A tagged sum is not the sum of the announced contributors' updates
    /// of its plan, round and attempt.
    #[error(
        "the sum of round {round} fails its tag check: it is not the sum of this round's updates \
         from the {contributors} announced contributors (replayed, modified or short of an update)"
    )]
    SumTagMismatch { round: u64, contributors: usize },
}

fn kind_hint(found: &str) -> &'static str {
    if found == "public" {
        " (the public file holds no key material and cannot decrypt or encrypt)"
    } else {
        " (never give the secret key file to the aggregator)"
    }
}

impl CryptoError {
    fn io(action: &'static str, path: &Path, source: std::io::Error) -> Self {
        CryptoError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    fn in_file(self, path: &Path) -> Self {
        CryptoError::InFile {
            path: path.to_path_buf(),
            source: Box::new(self),
        }
    }

    /// The underlying error if this one only adds a file name.
    pub fn root(&self) -> &CryptoError {
        match self {
            CryptoError::InFile { source, .. } => source.root(),
            other => other,
        }
    }
}

/// What every key, update and sum carries, and what two of them must share
/// to be combined: the parameter set, the fixed-point scale, the client
/// limit (the fixed-point layout derives from it) and the key's fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct KeyLayout {
    pub params: ParamSet,
    pub scale_bits: u8,
    pub max_clients: u32,
    pub fingerprint: Fingerprint,
}

impl KeyLayout {
    /// An error unless `found` has this layout's parameters, scale and
    /// client limit (the fingerprint is checked separately, with its own error).
    pub fn check_params(&self, found: &KeyLayout) -> Result<(), CryptoError> {
        if (self.params, self.scale_bits, self.max_clients)
            != (found.params, found.scale_bits, found.max_clients)
        {
            return Err(CryptoError::ParamsMismatch {
                expected: self.params,
                expected_scale_bits: self.scale_bits,
                expected_max_clients: self.max_clients,
                found: found.params,
                found_scale_bits: found.scale_bits,
                found_max_clients: found.max_clients,
            });
        }
        Ok(())
    }

    /// [`check_params`](Self::check_params), after the fingerprint.
    pub fn check_same(&self, found: &KeyLayout) -> Result<(), CryptoError> {
        if found.fingerprint != self.fingerprint {
            return Err(CryptoError::FingerprintMismatch {
                expected: self.fingerprint,
                found: found.fingerprint,
            });
        }
        self.check_params(found)
    }

    /// The slots a sum tag takes with this key (see [`sum_tag`]): 2 for
    /// Standard64 up to 1,024 clients, up to [`MAX_SUM_TAG_SLOTS`].
    pub fn tag_slots(&self) -> usize {
        sum_tag_slots(self.params, self.max_clients)
    }
}

/// Identifies the secret key a ciphertext was made with (a salted hash; see [`keys`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Fingerprint(pub [u8; 16]);

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}
