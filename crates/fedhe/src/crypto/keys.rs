//! Key generation and the two self-describing key files.
//!
//! Both files share one layout (all integers little-endian):
//!
//! ```text
//! magic        8 bytes   "FEDHE-SK" (secret) or "FEDHE-PK" (public)
//! version      u16       KEY_FORMAT_VERSION
//! header_len   u32       length of the header, at most MAX_KEY_HEADER
//! header       bincode 2 (standard config) of the file's header struct
//! key          256 bytes secret file only: the 2048 key bits, LSB first
//! checksum     32 bytes  SHA-256 of everything above
//! ```
//!
//! The public header holds the parameter set, the scale, the number of
//! contributors a sum may hold (`max_clients`), the fingerprint and the
//! membership key — nothing that helps decrypt. The secret header adds a
//! random 32-byte salt. Version 1 files (before `max_clients` and the
//! membership key) are refused with a request to run keygen again.
//!
//! Membership: every holder of the secret key can sign with an Ed25519 key
//! whose seed is `SHA-256("FedHE membership key v1" || salt || key bits)`; its
//! public half is in the public file. The aggregator thus checks that a
//! registering client belongs to the federation (holds the secret key)
//! without holding anything secret itself. The seed is a one-way function of
//! the salted key, like the fingerprint, so the public half reveals nothing
//! about the GLWE key.
//!
//! Fingerprint = first 16 bytes of
//! `SHA-256("FedHE key fingerprint v1" || params || salt || key bits)`.
//! It is a hiding commitment to the key: the salt is fresh, secret and 256
//! bits long, and SHA-256 is modelled as a random oracle, so the 128-bit output
//! is indistinguishable from random to anyone without the secret file, and
//! recovering key bits from it would need a preimage. It is binding: two
//! different keys collide only with probability ~2^-64 (birthday bound on 128
//! bits), enough to catch a wrong key file. It is never derived from
//! ciphertexts, so it leaks nothing about the noise either.

use std::fs;
use std::path::Path;

use ring::signature::{self, KeyPair as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tfhe::core_crypto::commons::math::random::{DefaultRandomGenerator, Seed};
use tfhe::core_crypto::prelude::{
    GlweDimension, PolynomialSize, SecretRandomGenerator,
    allocate_and_generate_new_binary_glwe_secret_key,
};

use super::glwe::KeyFourier;
use super::params::{DEFAULT_MAX_CLIENTS, POLY_SIZE, ParamSet};
use super::prng::fresh_seed;

/// The most a key file may have: keys are a few hundred bytes, and a file
/// read whole must not be `/dev/zero`.
pub const MAX_KEY_FILE_BYTES: u64 = 1 << 20;
use super::{CryptoError, Fingerprint, KeyLayout};

/// Version of the key file layout.
pub const KEY_FORMAT_VERSION: u16 = 2;
const SECRET_MAGIC: &[u8; 8] = b"FEDHE-SK";
const PUBLIC_MAGIC: &[u8; 8] = b"FEDHE-PK";
const MAX_KEY_HEADER: usize = 256;
const KEY_BYTES: usize = POLY_SIZE / 8;
const CHECKSUM_BYTES: usize = 32;
const PREFIX_BYTES: usize = 8 + 2 + 4;

#[derive(Serialize, Deserialize)]
struct PublicHeader {
    layout: KeyLayout,
    member_key: [u8; 32],
}

#[derive(Serialize, Deserialize)]
struct SecretHeader {
    layout: KeyLayout,
    salt: [u8; 32],
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_KEY_HEADER>()
}

/// What the aggregator may know: parameters, scale, capacity, fingerprint
/// and the membership key that checks registrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyFile {
    layout: KeyLayout,
    member_key: [u8; 32],
}

impl PublicKeyFile {
    /// Parameters, scale, client limit and fingerprint.
    pub fn layout(&self) -> KeyLayout {
        self.layout
    }

    /// Reads and checks a public key file.
    pub fn load(path: &Path) -> Result<Self, CryptoError> {
        let bytes = crate::fsutil::read_capped(path, MAX_KEY_FILE_BYTES, "key file")
            .map_err(|e| CryptoError::io("read public key file", path, e))?;
        Self::from_bytes(&bytes).map_err(|e| e.in_file(path))
    }

    /// Parses a public key file; a secret key file is refused with an explanation.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let header = open_envelope(bytes, KeyKind::Public)?;
        let h: PublicHeader = decode_header(header)?;
        check_layout(h.layout.params, h.layout.scale_bits, h.layout.max_clients)?;
        Ok(Self {
            layout: h.layout,
            member_key: h.member_key,
        })
    }

    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = PublicHeader {
            layout: self.layout,
            member_key: self.member_key,
        };
        seal_envelope(KeyKind::Public, &encode_header(&header), &[])
    }

    /// Writes the file; refuses to overwrite unless `force`.
    pub fn save(&self, path: &Path, force: bool) -> Result<(), CryptoError> {
        write_file(path, &self.to_bytes(), force, false)
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.layout.fingerprint
    }

    pub fn params(&self) -> ParamSet {
        self.layout.params
    }

    /// Fixed-point fractional bits: values are scaled by `2^scale_bits`.
    pub fn scale_bits(&self) -> u8 {
        self.layout.scale_bits
    }

    /// The most contributors one sum made with this key may hold.
    pub fn max_clients(&self) -> u32 {
        self.layout.max_clients
    }

    /// Checks a signature by the membership key (see [`super::membership`]).
    pub(super) fn member_verify(
        &self,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError> {
        signature::UnparsedPublicKey::new(&signature::ED25519, &self.member_key)
            .verify(message, signature)
            .map_err(|_| CryptoError::BadMembershipProof)
    }
}

/// A secret key file that others may read (or write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPermissions {
    /// Unix permission bits.
    pub mode: u32,
    /// Others could replace the key (then it is refused, not just warned).
    pub writable_by_others: bool,
}

impl KeyPermissions {
    /// The warning, naming the file and the fix.
    pub fn explain(&self, path: &Path) -> String {
        format!(
            "secret key {} has permissions {:03o}: other users of this machine can {} it \
             (run `chmod 600 {}`)",
            path.display(),
            self.mode,
            if self.writable_by_others {
                "replace"
            } else {
                "read"
            },
            path.display()
        )
    }
}

/// The clients' shared secret key. Never leaves their machines.
pub struct SecretKey {
    layout: KeyLayout,
    salt: [u8; 32],
    /// N coefficients, each 0 or 1.
    bits: Vec<u64>,
    /// Seed of the Ed25519 membership key (see the module docs).
    member_seed: [u8; 32],
    member_key: [u8; 32],
    pub(crate) fourier: KeyFourier,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKey")
            .field("params", &self.layout.params)
            .field("scale_bits", &self.layout.scale_bits)
            .field("max_clients", &self.layout.max_clients)
            .field("fingerprint", &self.layout.fingerprint)
            .finish_non_exhaustive()
    }
}

impl Drop for SecretKey {
    // One of the documented unsafe sites (see KeyFourier's Drop).
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // Best-effort wipe of the key material in memory.
        for b in self.bits.iter_mut() {
            // SAFETY: `b` is a valid, aligned, exclusive reference.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
        for b in self.salt.iter_mut().chain(self.member_seed.iter_mut()) {
            // SAFETY: as above.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

impl SecretKey {
    /// Parameters, scale, client limit and fingerprint.
    pub fn layout(&self) -> KeyLayout {
        self.layout
    }

    /// A fresh key for sums of up to [`DEFAULT_MAX_CLIENTS`] with the
    /// parameter set's default scale.
    pub fn generate(params: ParamSet) -> Self {
        let max_clients = DEFAULT_MAX_CLIENTS;
        Self::generate_inner(params, params.default_scale_bits(max_clients), max_clients)
    }

    /// A fresh key for sums of up to `max_clients` contributors, with the
    /// given scale or the default for that many clients
    /// ([`ParamSet::default_scale_bits`]).
    pub fn generate_for(
        params: ParamSet,
        max_clients: u32,
        scale_bits: Option<u8>,
    ) -> Result<Self, CryptoError> {
        params.check_max_clients(max_clients)?;
        let scale_bits = scale_bits.unwrap_or(params.default_scale_bits(max_clients));
        check_layout(params, scale_bits, max_clients)?;
        Ok(Self::generate_inner(params, scale_bits, max_clients))
    }

    fn generate_inner(params: ParamSet, scale_bits: u8, max_clients: u32) -> Self {
        let mut generator =
            SecretRandomGenerator::<DefaultRandomGenerator>::new(Seed(fresh_seed()));
        let key = allocate_and_generate_new_binary_glwe_secret_key::<u64, _>(
            GlweDimension(1),
            PolynomialSize(POLY_SIZE),
            &mut generator,
        );
        let bits = key.into_container();
        let mut salt = [0u8; 32];
        salt[..16].copy_from_slice(&fresh_seed().to_le_bytes());
        salt[16..].copy_from_slice(&fresh_seed().to_le_bytes());
        Self::from_parts(params, scale_bits, max_clients, salt, bits)
    }

    fn from_parts(
        params: ParamSet,
        scale_bits: u8,
        max_clients: u32,
        salt: [u8; 32],
        bits: Vec<u64>,
    ) -> Self {
        let fingerprint = fingerprint_of(params, &salt, &bits);
        let fourier = KeyFourier::new(&bits);
        let member_seed = member_seed_of(&salt, &bits);
        let mut member_key = [0u8; 32];
        member_key.copy_from_slice(member_key_pair(&member_seed).public_key().as_ref());
        Self {
            layout: KeyLayout {
                params,
                scale_bits,
                max_clients,
                fingerprint,
            },
            salt,
            bits,
            member_seed,
            member_key,
            fourier,
        }
    }

    /// Loads a secret key file; a public key file is refused with an explanation.
    pub fn load(path: &Path) -> Result<Self, CryptoError> {
        // The file's bytes are the key: wiped once parsed.
        let bytes = zeroize::Zeroizing::new(
            crate::fsutil::read_capped(path, MAX_KEY_FILE_BYTES, "key file")
                .map_err(|e| CryptoError::io("read secret key file", path, e))?,
        );
        Self::from_bytes(&bytes).map_err(|e| e.in_file(path))
    }

    /// What is wrong with a secret key file's permissions, as ssh says it:
    /// `None` when only its owner can read and write it (or on platforms
    /// without Unix permissions).
    pub fn permission_problem(path: &Path) -> Option<KeyPermissions> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(path).ok()?.permissions().mode() & 0o777;
            (mode & 0o077 != 0).then_some(KeyPermissions {
                mode,
                writable_by_others: mode & 0o022 != 0,
            })
        }
        #[cfg(not(unix))]
        {
            let _ = path;
            None
        }
    }

    /// Parses a secret key file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let body = open_envelope(bytes, KeyKind::Secret)?;
        let (header, key) = body.split_at(body.len() - KEY_BYTES);
        let h: SecretHeader = decode_header(header)?;
        check_layout(h.layout.params, h.layout.scale_bits, h.layout.max_clients)?;
        let bits: Vec<u64> = (0..POLY_SIZE)
            .map(|i| u64::from(key[i / 8] >> (i % 8) & 1))
            .collect();
        let sk = Self::from_parts(
            h.layout.params,
            h.layout.scale_bits,
            h.layout.max_clients,
            h.salt,
            bits,
        );
        if sk.layout.fingerprint != h.layout.fingerprint {
            return Err(CryptoError::CorruptKeyFile {
                detail: format!(
                    "the key does not match its fingerprint (stored {}, computed {})",
                    h.layout.fingerprint, sk.layout.fingerprint
                ),
            });
        }
        Ok(sk)
    }

    /// The secret file's bytes. Handle with care.
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = SecretHeader {
            layout: self.layout,
            salt: self.salt,
        };
        let mut key = zeroize::Zeroizing::new([0u8; KEY_BYTES]);
        for (i, b) in self.bits.iter().enumerate() {
            key[i / 8] |= ((*b & 1) as u8) << (i % 8);
        }
        seal_envelope(KeyKind::Secret, &encode_header(&header), &key[..])
    }

    /// Writes owner-only (0600 on Unix); refuses to overwrite unless `force`.
    pub fn save(&self, path: &Path, force: bool) -> Result<(), CryptoError> {
        let bytes = zeroize::Zeroizing::new(self.to_bytes());
        write_file(path, &bytes, force, true)
    }

    /// The public file for the aggregator.
    pub fn public(&self) -> PublicKeyFile {
        PublicKeyFile {
            layout: self.layout,
            member_key: self.member_key,
        }
    }

    pub fn params(&self) -> ParamSet {
        self.layout.params
    }

    pub fn scale_bits(&self) -> u8 {
        self.layout.scale_bits
    }

    /// The most contributors one sum made with this key may hold.
    pub fn max_clients(&self) -> u32 {
        self.layout.max_clients
    }

    pub fn fingerprint(&self) -> Fingerprint {
        self.layout.fingerprint
    }

    /// The sum tag key (see [`sum_tag`](super::sum_tag)): every site holds
    /// it, the aggregator cannot derive it from the public key.
    pub(crate) fn tag_key(&self) -> super::sum_tag::TagKey {
        super::sum_tag::TagKey::derive(&self.member_seed)
    }

    /// Signs `message` with the membership key (see [`super::membership`]).
    pub(super) fn member_sign(&self, message: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(member_key_pair(&self.member_seed).sign(message).as_ref());
        out
    }

    /// The key as a TFHE-rs GLWE secret key (for cross-checks with TFHE-rs's own algorithms).
    pub fn to_tfhe_glwe_key(&self) -> tfhe::core_crypto::prelude::GlweSecretKeyOwned<u64> {
        tfhe::core_crypto::prelude::GlweSecretKey::from_container(
            self.bits.clone(),
            PolynomialSize(POLY_SIZE),
        )
    }
}

fn member_seed_of(salt: &[u8; 32], bits: &[u64]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"FedHE membership key v1\0");
    h.update(salt);
    for b in bits {
        h.update([(*b & 1) as u8]);
    }
    h.finalize().into()
}

fn member_key_pair(seed: &[u8; 32]) -> signature::Ed25519KeyPair {
    // infallible: ring rejects only seeds that are not 32 bytes long
    signature::Ed25519KeyPair::from_seed_unchecked(seed)
        .expect("a 32-byte Ed25519 seed is always accepted")
}

fn fingerprint_of(params: ParamSet, salt: &[u8; 32], bits: &[u64]) -> Fingerprint {
    let mut h = Sha256::new();
    h.update(b"FedHE key fingerprint v1\0");
    h.update(params.name().as_bytes());
    h.update([0u8]);
    h.update(salt);
    for b in bits {
        h.update([(*b & 1) as u8]);
    }
    let digest = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    Fingerprint(out)
}

/// Checks a key's `max_clients` and `scale_bits` (also for ciphertext headers).
pub(crate) fn check_layout(
    params: ParamSet,
    scale_bits: u8,
    max_clients: u32,
) -> Result<(), CryptoError> {
    params.check_max_clients(max_clients)?;
    let max = params.max_scale_bits(max_clients);
    if scale_bits > max {
        return Err(CryptoError::InvalidScale {
            params,
            scale_bits,
            max_clients,
            max,
        });
    }
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Secret,
    Public,
}

impl KeyKind {
    fn magic(self) -> &'static [u8; 8] {
        match self {
            KeyKind::Secret => SECRET_MAGIC,
            KeyKind::Public => PUBLIC_MAGIC,
        }
    }
    fn name(self) -> &'static str {
        match self {
            KeyKind::Secret => "secret",
            KeyKind::Public => "public",
        }
    }
    fn tail_bytes(self) -> usize {
        match self {
            KeyKind::Secret => KEY_BYTES,
            KeyKind::Public => 0,
        }
    }
}

fn encode_header<T: Serialize>(header: &T) -> Vec<u8> {
    // Provably infallible: the headers are structs of integers and byte
    // arrays, and this configuration sets no size limit; an empty header
    // would be written as a key file no FedHE could read, so fail loudly.
    #[allow(clippy::expect_used)]
    bincode::serde::encode_to_vec(header, bincode_config())
        .expect("bincode encodes a plain key-file header")
}

fn decode_header<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, CryptoError> {
    let (h, used) = bincode::serde::decode_from_slice(bytes, bincode_config()).map_err(|e| {
        CryptoError::CorruptKeyFile {
            detail: format!("unreadable header: {e}"),
        }
    })?;
    if used != bytes.len() {
        return Err(CryptoError::CorruptKeyFile {
            detail: format!("header is {} bytes but {used} were used", bytes.len()),
        });
    }
    Ok(h)
}

fn seal_envelope(kind: KeyKind, header: &[u8], tail: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREFIX_BYTES + header.len() + tail.len() + CHECKSUM_BYTES);
    out.extend_from_slice(kind.magic());
    out.extend_from_slice(&KEY_FORMAT_VERSION.to_le_bytes());
    // infallible: headers are below MAX_KEY_HEADER
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(tail);
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// Checks magic, version, length and checksum; returns header (+ key bytes).
fn open_envelope(bytes: &[u8], want: KeyKind) -> Result<&[u8], CryptoError> {
    let other = match want {
        KeyKind::Secret => KeyKind::Public,
        KeyKind::Public => KeyKind::Secret,
    };
    if bytes.len() < 8 {
        return Err(CryptoError::NotAKeyFile {
            expected: want.name(),
            detail: format!("only {} bytes", bytes.len()),
        });
    }
    let magic = &bytes[..8];
    if magic == other.magic() {
        return Err(CryptoError::WrongKeyKind {
            expected: want.name(),
            found: other.name(),
        });
    }
    if magic != want.magic() {
        return Err(CryptoError::NotAKeyFile {
            expected: want.name(),
            detail: "unknown magic bytes".into(),
        });
    }
    if bytes.len() < PREFIX_BYTES {
        return Err(CryptoError::TruncatedKeyFile {
            expected: PREFIX_BYTES,
            found: bytes.len(),
        });
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    if version < KEY_FORMAT_VERSION {
        return Err(CryptoError::OldKeyFile {
            found: version,
            expected: KEY_FORMAT_VERSION,
        });
    }
    if version != KEY_FORMAT_VERSION {
        return Err(CryptoError::UnsupportedVersion {
            what: "key file",
            found: u32::from(version),
            expected: u32::from(KEY_FORMAT_VERSION),
        });
    }
    let header_len = u32::from_le_bytes([bytes[10], bytes[11], bytes[12], bytes[13]]) as usize;
    if header_len > MAX_KEY_HEADER {
        return Err(CryptoError::CorruptKeyFile {
            detail: format!("header length {header_len} exceeds {MAX_KEY_HEADER}"),
        });
    }
    let expected = PREFIX_BYTES + header_len + want.tail_bytes() + CHECKSUM_BYTES;
    if bytes.len() < expected {
        return Err(CryptoError::TruncatedKeyFile {
            expected,
            found: bytes.len(),
        });
    }
    if bytes.len() > expected {
        return Err(CryptoError::CorruptKeyFile {
            detail: format!(
                "{} trailing bytes after the checksum",
                bytes.len() - expected
            ),
        });
    }
    let (content, sum) = bytes.split_at(expected - CHECKSUM_BYTES);
    if Sha256::digest(content).as_slice() != sum {
        return Err(CryptoError::CorruptKeyFile {
            detail: "checksum mismatch (the file was altered or damaged)".into(),
        });
    }
    Ok(&content[PREFIX_BYTES..])
}

fn write_file(path: &Path, bytes: &[u8], force: bool, secret: bool) -> Result<(), CryptoError> {
    match crate::fsutil::write_atomic(path, bytes, force, secret) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(CryptoError::WouldOverwrite {
                path: path.to_path_buf(),
            })
        }
        Err(e) => Err(CryptoError::io("write key file", path, e)),
    }
}
