//! Encrypted model updates: packed, seeded GLWE ciphertexts (tfhe::core_crypto).
//!
//! API contract shared with the server and client modules. Bodies are filled
//! in by the crypto work; names and signatures below are the agreed surface.

use std::path::Path;

/// Errors from key handling, encoding, encryption and wire decoding.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("{0}")]
    Todo(String),
}

/// Identifies the secret key a ciphertext was made with (hash of public info).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Fingerprint(pub [u8; 16]);

/// Named parameter sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ParamSet {
    /// GLWE k=1, N=2048, native 2^64 modulus (TFHE-rs 128-bit parameters).
    Standard64,
    /// 32-bit modulus, compact wire format.
    Compact32,
}

/// What the aggregator may know: parameters, scale, fingerprint.
#[derive(Debug, Clone, PartialEq)]
pub struct PublicKeyFile {}

impl PublicKeyFile {
    pub fn load(_path: &Path) -> Result<Self, CryptoError> {
        todo!()
    }
    /// Parses a public key file; a secret key file is refused with an explanation.
    pub fn from_bytes(_bytes: &[u8]) -> Result<Self, CryptoError> {
        todo!()
    }
    pub fn to_bytes(&self) -> Vec<u8> {
        todo!()
    }
    pub fn fingerprint(&self) -> Fingerprint {
        todo!()
    }
    pub fn params(&self) -> ParamSet {
        todo!()
    }
}

/// The clients' shared secret key. Never leaves their machines.
pub struct SecretKey {}

impl SecretKey {
    pub fn generate(_params: ParamSet) -> Self {
        todo!()
    }
    /// Loads a secret key file; a public key file is refused with an explanation.
    pub fn load(_path: &Path) -> Result<Self, CryptoError> {
        todo!()
    }
    /// Writes owner-only; refuses to overwrite unless `force`.
    pub fn save(&self, _path: &Path, _force: bool) -> Result<(), CryptoError> {
        todo!()
    }
    pub fn public(&self) -> PublicKeyFile {
        todo!()
    }
}

/// One client's encrypted, sample-weighted update.
pub struct EncryptedUpdate {}

impl EncryptedUpdate {
    /// Number of packed values (the model values plus the weight slot).
    pub fn len(&self) -> usize {
        todo!()
    }
    pub fn is_empty(&self) -> bool {
        todo!()
    }
    pub fn to_bytes(&self) -> Vec<u8> {
        todo!()
    }
    /// Strict decoding of untrusted bytes; `max_values` bounds allocation.
    pub fn from_bytes(_bytes: &[u8], _max_values: usize) -> Result<Self, CryptoError> {
        todo!()
    }
}

/// Running encrypted sum; memory O(model), adds updates as they arrive.
pub struct Accumulator {}

impl Accumulator {
    pub fn new(_public: &PublicKeyFile, _len: usize) -> Self {
        todo!()
    }
    /// Adds one update; on error the sum is unchanged.
    pub fn add(&mut self, _update: &EncryptedUpdate) -> Result<(), CryptoError> {
        todo!()
    }
    /// Absorbs another partial sum (tree-shaped aggregation).
    pub fn merge(&mut self, _other: &Accumulator) -> Result<(), CryptoError> {
        todo!()
    }
    pub fn contributors(&self) -> u32 {
        todo!()
    }
    pub fn to_bytes(&self) -> Vec<u8> {
        todo!()
    }
    pub fn from_bytes(_bytes: &[u8], _max_values: usize) -> Result<Self, CryptoError> {
        todo!()
    }
}

/// Decrypted weighted mean of the contributors' values.
pub struct WeightedMean {
    pub values: Vec<f64>,
    pub total_weight: f64,
    pub contributors: u32,
}

/// Encrypts `weight * values` together with `weight` in one packed ciphertext.
pub fn encrypt_weighted(
    _key: &SecretKey,
    _values: &[f64],
    _weight: f64,
) -> Result<EncryptedUpdate, CryptoError> {
    todo!()
}

/// Decrypts a sum and divides by the summed weight.
pub fn decrypt_mean(_key: &SecretKey, _sum: &Accumulator) -> Result<WeightedMean, CryptoError> {
    todo!()
}
