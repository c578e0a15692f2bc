//! Binary wire format of updates and sums.
//!
//! ```text
//! magic     4 bytes  "FHEU" (update) or "FHEA" (accumulated sum)
//! version   u8       WIRE_VERSION
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

use super::params::{MAX_CLIENTS, ParamSet};
use super::{CryptoError, Fingerprint};

/// Version of the update / sum wire format.
pub const WIRE_VERSION: u8 = 1;
pub(crate) const UPDATE_MAGIC: &[u8; 4] = b"FHEU";
pub(crate) const SUM_MAGIC: &[u8; 4] = b"FHEA";
/// Upper bound of an encoded update header (actual: at most 44 bytes).
pub(crate) const MAX_UPDATE_HEADER: usize = 64;
/// Upper bound of an encoded sum header (64 seeds of 16 bytes + fields).
pub(crate) const MAX_SUM_HEADER: usize = 64 + MAX_CLIENTS as usize * 17;
const PREFIX: usize = 5;

#[derive(Serialize, Deserialize)]
pub(crate) struct UpdateHeader {
    pub params: ParamSet,
    pub scale_bits: u8,
    pub fingerprint: Fingerprint,
    pub len: u64,
    pub seed: [u8; 16],
}

#[derive(Serialize, Deserialize)]
pub(crate) struct SumHeader {
    pub params: ParamSet,
    pub scale_bits: u8,
    pub fingerprint: Fingerprint,
    pub len: u64,
    pub seeds: Vec<[u8; 16]>,
}

/// Largest encoded size of an update of `len` model values (for HTTP body limits).
pub fn max_update_bytes(params: ParamSet, len: usize) -> usize {
    PREFIX
        .saturating_add(MAX_UPDATE_HEADER)
        .saturating_add(len.saturating_add(1).saturating_mul(params.word_bytes()))
}

/// Largest encoded size of an accumulated sum of `len` model values.
pub fn max_sum_bytes(params: ParamSet, len: usize) -> usize {
    PREFIX
        .saturating_add(MAX_SUM_HEADER)
        .saturating_add(len.saturating_add(1).saturating_mul(params.word_bytes()))
}

pub(crate) fn encode<H: Serialize>(
    magic: &[u8; 4],
    header: &H,
    limit_hint: usize,
    params: ParamSet,
    words: &[u64],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREFIX + limit_hint + words.len() * params.word_bytes());
    out.extend_from_slice(magic);
    out.push(WIRE_VERSION);
    // infallible: headers are plain data and Vec<u8> writes cannot fail
    let _ = bincode::serde::encode_into_std_write(header, &mut out, bincode::config::standard());
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
    out
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
    if bytes[4] != WIRE_VERSION {
        return Err(CryptoError::UnsupportedVersion {
            what,
            found: u32::from(bytes[4]),
            expected: u32::from(WIRE_VERSION),
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
    let words = match word {
        8 => payload
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                u64::from_le_bytes(b)
            })
            .collect(),
        _ => payload
            .chunks_exact(4)
            .map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
    };
    Ok((len, words))
}
