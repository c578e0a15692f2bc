//! Binary wire format of updates and sums.
//!
//! ```text
//! magic     4 bytes  "FHEU" (update) or "FHEA" (accumulated sum)
//! version   u8       WIRE_VERSION (updates: 5, with the round and plan binding) or
//!                    SUM_WIRE_VERSION (sums: 2)
//! header    bincode 2 (standard config, size-limited) of UpdateHeader / SumHeader
//! payload   (len + 1) body words, little-endian, 8 bytes (Standard64) or
//!           4 bytes (Compact32) each; the last word is the weight slot
//! ```
//!
//! Decoding is strict and allocation-safe: the header is decoded under a byte
//! limit (so a lying `Vec` length cannot allocate), `len` is checked against
//! the caller's `max_values` and the payload length against the bytes actually
//! present before anything proportional to `len` is allocated, and trailing
//! bytes are an error.

use serde::{Deserialize, Serialize};

use super::params::{MAX_CLIENTS_LIMIT, ParamSet};
use super::{CryptoError, KeyLayout};

/// Version of the update wire format (3: the header binds round and
/// attempt; 4: and the plan; 5: by 8 bytes of its fingerprint, not 16).
pub const WIRE_VERSION: u8 = 5;

/// Bytes of the plan fingerprint an update's header names: its first 8
/// (the binding only guards against honest mistakes; against an adversary
/// the sum tag binds the whole fingerprint, see `crypto::sum_tag`).
pub const PLAN_BINDING_BYTES: usize = 8;
/// Version of the sum wire format (unchanged since 2).
pub const SUM_WIRE_VERSION: u8 = 2;
pub(crate) const UPDATE_MAGIC: &[u8; 4] = b"FHEU";
pub(crate) const SUM_MAGIC: &[u8; 4] = b"FHEA";
/// Upper bound of an encoded update header (actual: at most 71 bytes).
pub(crate) const MAX_UPDATE_HEADER: usize = 96;
/// Upper bound of an encoded sum header of a sum of up to `max_clients`
/// (16-byte seeds + fields).
pub(crate) const fn sum_header_bound(max_clients: u32) -> usize {
    64 + max_clients as usize * 16
}
/// Decoding limit of any sum header (the largest key's); each sum is then
/// held to its own key's `max_clients`.
pub(crate) const MAX_SUM_HEADER: usize = sum_header_bound(MAX_CLIENTS_LIMIT);
const PREFIX: usize = 5;

#[derive(Serialize, Deserialize)]
pub(crate) struct UpdateHeader {
    // A nested struct encodes exactly as its fields would (bincode): the
    // wire format is unchanged.
    pub layout: KeyLayout,
    pub len: u64,
    pub seed: [u8; 16],
    /// The round and attempt the update was made for (0: unbound).
    pub round: u64,
    pub attempt: u32,
    /// The first [`PLAN_BINDING_BYTES`] of the fingerprint of the plan the
    /// update was made for (zeros: unbound).
    pub plan: [u8; PLAN_BINDING_BYTES],
}

/// The format version of an object with this magic.
fn version_of(magic: &[u8; 4]) -> u8 {
    if magic == UPDATE_MAGIC {
        WIRE_VERSION
    } else {
        SUM_WIRE_VERSION
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct SumHeader {
    pub layout: KeyLayout,
    pub len: u64,
    pub seeds: Vec<[u8; 16]>,
}

/// Largest encoded size of an update of `len` model values (for HTTP body limits).
pub fn max_update_bytes(params: ParamSet, len: usize) -> usize {
    PREFIX
        .saturating_add(MAX_UPDATE_HEADER)
        .saturating_add(len.saturating_add(1).saturating_mul(params.word_bytes()))
}

/// Largest encoded size of an accumulated sum of `len` model values made
/// with a key for up to `max_clients` contributors.
pub fn max_sum_bytes(params: ParamSet, max_clients: u32, len: usize) -> usize {
    PREFIX
        .saturating_add(sum_header_bound(max_clients))
        .saturating_add(len.saturating_add(1).saturating_mul(params.word_bytes()))
}

pub(crate) fn encode<H: Serialize>(
    magic: &[u8; 4],
    header: &H,
    limit_hint: usize,
    params: ParamSet,
    words: &[u64],
) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, magic, header, limit_hint, params, words);
    out
}

/// [`encode`] into `out` (cleared first; its capacity is reused).
pub(crate) fn encode_into<H: Serialize>(
    out: &mut Vec<u8>,
    magic: &[u8; 4],
    header: &H,
    limit_hint: usize,
    params: ParamSet,
    words: &[u64],
) {
    out.clear();
    out.reserve(PREFIX + limit_hint + words.len() * params.word_bytes());
    out.extend_from_slice(magic);
    out.push(version_of(magic));
    // Provably infallible: headers are plain data and writes into a Vec
    // cannot fail; a wire object without its header must never be sent.
    #[allow(clippy::expect_used)]
    bincode::serde::encode_into_std_write(header, &mut *out, bincode::config::standard())
        .expect("bincode encodes a plain wire header into a Vec");
    match params.word_bytes() {
        8 => {
            for w in words {
                out.extend_from_slice(&w.to_le_bytes());
            }
        }
        _ => {
            for w in words {
                // Compact32 words are below 2^32 by construction
                out.extend_from_slice(&(*w as u32).to_le_bytes());
            }
        }
    }
}

/// Splits `bytes` into (header, payload) after checking magic and version.
pub(crate) fn decode_header<'a, H: for<'de> Deserialize<'de>, const LIMIT: usize>(
    bytes: &'a [u8],
    magic: &[u8; 4],
    what: &'static str,
) -> Result<(H, &'a [u8]), CryptoError> {
    if bytes.len() < PREFIX {
        return Err(CryptoError::Malformed {
            what,
            detail: format!("only {} bytes, the prefix alone is {PREFIX}", bytes.len()),
        });
    }
    if &bytes[..4] != magic {
        let other = if magic == UPDATE_MAGIC {
            SUM_MAGIC
        } else {
            UPDATE_MAGIC
        };
        let detail = if &bytes[..4] == other {
            "this is the other kind of object (an encrypted update where a sum was expected, or the reverse)".to_string()
        } else {
            "wrong magic bytes".to_string()
        };
        return Err(CryptoError::Malformed { what, detail });
    }
    if bytes[4] != version_of(magic) {
        return Err(CryptoError::UnsupportedVersion {
            what,
            found: u32::from(bytes[4]),
            expected: u32::from(version_of(magic)),
        });
    }
    let rest = &bytes[PREFIX..];
    let config = bincode::config::standard().with_limit::<LIMIT>();
    let (header, used): (H, usize) =
        bincode::serde::decode_from_slice(rest, config).map_err(|e| CryptoError::Malformed {
            what,
            detail: format!("unreadable header: {e}"),
        })?;
    Ok((header, &rest[used..]))
}

/// Checks `len` against `max_values` and the payload size, then reads the words.
pub(crate) fn decode_payload(
    what: &'static str,
    params: ParamSet,
    len: u64,
    max_values: usize,
    payload: &[u8],
) -> Result<(usize, Vec<u64>), CryptoError> {
    let len = check_payload(what, params, len, max_values, payload)?;
    Ok((len, read_words(params, payload)))
}

/// Checks `len` against `max_values` and that the payload holds exactly
/// `len + 1` words; returns `len`.
pub(crate) fn check_payload(
    what: &'static str,
    params: ParamSet,
    len: u64,
    max_values: usize,
    payload: &[u8],
) -> Result<usize, CryptoError> {
    let len = usize::try_from(len)
        .ok()
        .filter(|l| *l <= max_values)
        .ok_or(CryptoError::TooManyValues {
            found: len,
            limit: max_values,
        })?;
    let word = params.word_bytes();
    let expected =
        len.checked_add(1)
            .and_then(|n| n.checked_mul(word))
            .ok_or(CryptoError::TooManyValues {
                found: len as u64,
                limit: max_values,
            })?;
    if payload.len() != expected {
        return Err(CryptoError::LengthMismatch {
            what,
            declared_values: len,
            expected_bytes: expected,
            found_bytes: payload.len(),
        });
    }
    Ok(len)
}

/// The little-endian body words of a checked payload.
pub(crate) fn read_words(params: ParamSet, payload: &[u8]) -> Vec<u64> {
    let mut words = Vec::with_capacity(payload.len() / params.word_bytes());
    for_each_word(params, payload, |w| words.push(w));
    words
}

/// Calls `f` with each little-endian body word of a checked payload.
#[inline]
pub(crate) fn for_each_word(params: ParamSet, payload: &[u8], mut f: impl FnMut(u64)) {
    match params.word_bytes() {
        8 => {
            for c in payload.chunks_exact(8) {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                f(u64::from_le_bytes(b));
            }
        }
        _ => {
            for c in payload.chunks_exact(4) {
                f(u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])));
            }
        }
    }
}
