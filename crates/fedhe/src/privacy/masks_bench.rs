//! `fedhe bench masks`: what pairwise masking costs one client per round.

use std::time::Instant;

use serde::Serialize;

use super::masks::{AttemptSecret, Identity, MaskContext, MaskError};
use crate::crypto::{
    CryptoError, ParamSet, SecretKey, encrypt_weighted, encrypt_weighted_masked, plaintext_bits,
};

/// Medians over the repeats, for one client among `clients`.
#[derive(Debug, Clone, Serialize)]
pub struct MaskBench {
    pub clients: usize,
    pub values: usize,
    pub repeats: usize,
    /// Key agreement: X25519 and HKDF with every partner, keystreams keyed.
    pub agree_ms: f64,
    /// Adding every partner's mask to the update's encoded integers.
    pub mask_ms: f64,
    /// Encryption of the update without masks, and with them.
    pub encrypt_ms: f64,
    pub encrypt_masked_ms: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum MaskBenchError {
    #[error(transparent)]
    Mask(#[from] MaskError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Measures masking for one client of a round of `clients` with updates of
/// `values` values (default key: Standard64 for 64 clients).
pub fn run_mask_bench(
    clients: usize,
    values: usize,
    repeats: usize,
) -> Result<MaskBench, MaskBenchError> {
    let key = SecretKey::generate(ParamSet::Standard64);
    let ctx = MaskContext {
        plan: "bench",
        round: 1,
        attempt: 1,
    };
    let ids: Vec<String> = (0..clients.max(2))
        .map(|i| format!("site-{i:03}"))
        .collect();
    let who = ids
        .iter()
        .map(|_| Identity::generate())
        .collect::<Result<Vec<_>, _>>()?;
    // One attempt secret for every simulated site: the cost is the same.
    let secret = AttemptSecret::generate()?;
    let keys: Vec<(String, [u8; 32])> = ids
        .iter()
        .zip(&who)
        .map(|(id, w)| (id.clone(), w.announce(&ctx, id, &secret).public))
        .collect();
    let update: Vec<f64> = (0..values)
        .map(|i| ((i % 97) as f64 - 48.0) / 64.0)
        .collect();
    let shift = 64 - plaintext_bits(&key.layout());
    let repeats = repeats.max(1);
    let (mut agree, mut mask, mut enc, mut enc_masked) = (vec![], vec![], vec![], vec![]);
    for _ in 0..repeats {
        let t = Instant::now();
        let masks = secret.pair_masks(&ctx, &ids[0], &keys)?;
        agree.push(ms(t));
        let mut slots = vec![0u64; values + 1];
        let t = Instant::now();
        masks.apply_all(shift, &mut slots);
        mask.push(ms(t));
        std::hint::black_box(&slots);
        let t = Instant::now();
        std::hint::black_box(encrypt_weighted(&key, &update, 1.0)?);
        enc.push(ms(t));
        let t = Instant::now();
        std::hint::black_box(encrypt_weighted_masked(&key, &update, 1.0, &masks)?);
        enc_masked.push(ms(t));
    }
    Ok(MaskBench {
        clients,
        values,
        repeats,
        agree_ms: median(agree),
        mask_ms: median(mask),
        encrypt_ms: median(enc),
        encrypt_masked_ms: median(enc_masked),
    })
}
