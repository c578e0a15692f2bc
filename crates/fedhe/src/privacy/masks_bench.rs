//! `fedhe bench masks`: what pairwise masking costs one client per round,
//! and what double masking (`privacy::secagg`) costs one site and the
//! aggregator.

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
    /// Double masking (`privacy::secagg`), one site: the pair seeds, the
    /// self seed and the masks added to the encoded update.
    pub double_mask_ms: f64,
    /// One site sealing its share bundles for every member.
    pub seal_ms: f64,
    /// One site opening its bundles, checking the signed survivor set and
    /// revealing its shares (one member dropped).
    pub reveal_ms: f64,
    /// The aggregator: reconstructing the self seeds and the dropped
    /// member's pair seeds from the threshold's reveals.
    pub reconstruct_ms: f64,
    /// The aggregator: adding the reconstructed masks to the encrypted sum.
    pub unmask_sum_ms: f64,
}

/// The double-masking figures of one round of `ids` (the last one drops
/// before its upload), for site `ids[0]` and the aggregator.
struct DoubleFigures {
    mask: f64,
    seal: f64,
    reveal: f64,
    reconstruct: f64,
    unmask_sum: f64,
}

fn double_masking(
    key: &SecretKey,
    ids: &[String],
    values: usize,
) -> Result<DoubleFigures, MaskBenchError> {
    use super::secagg::{SecAggRound, double_masks, seal_shares, unmask};
    let ctx = MaskContext {
        plan: "bench",
        round: 2,
        attempt: 1,
    };
    let round = SecAggRound::new(ctx, ids, 3)?;
    let who = ids
        .iter()
        .map(|_| Ok((Identity::generate()?, AttemptSecret::generate()?)))
        .collect::<Result<Vec<_>, MaskError>>()?;
    let keys: Vec<(String, [u8; 32])> = ids
        .iter()
        .zip(&who)
        .map(|(id, (w, s))| (id.clone(), w.announce(&ctx, id, s).public))
        .collect();
    let shift = 64 - plaintext_bits(&key.layout());
    let mut slots = vec![0u64; values + 1];
    let t = Instant::now();
    let masks = double_masks(&who[0].1, &round, &ids[0], &keys)?;
    masks.apply_all(shift, &mut slots);
    let mask = ms(t);
    std::hint::black_box(&slots);
    let t = Instant::now();
    std::hint::black_box(seal_shares(&who[0].1, &round, &ids[0], &keys)?);
    let seal = ms(t);
    let survivors: Vec<String> = ids[..ids.len() - 1].to_vec();
    let mut bundles = Vec::new();
    for (id, (_, s)) in survivors.iter().zip(&who) {
        bundles.extend(seal_shares(s, &round, id, &keys)?);
    }
    let (reveals, reveal_ms) = reveals_of(&round, &survivors, &who, &keys, &bundles)?;
    let t = Instant::now();
    let correction = unmask(&round, &survivors, &reveals)?;
    let reconstruct = ms(t);
    let mut sum = crate::crypto::Accumulator::new(&key.public(), values);
    let t = Instant::now();
    sum.add_masks(&correction);
    let unmask_sum = ms(t);
    std::hint::black_box(&sum);
    Ok(DoubleFigures {
        mask,
        seal,
        reveal: median(reveal_ms),
        reconstruct,
        unmask_sum,
    })
}

/// The threshold's survivors checking, opening and revealing (each timed).
fn reveals_of(
    round: &super::secagg::SecAggRound<'_>,
    survivors: &[String],
    who: &[(Identity, AttemptSecret)],
    keys: &[(String, [u8; 32])],
    bundles: &[super::secagg::SealedShares],
) -> Result<(Vec<super::secagg::Reveal>, Vec<f64>), MaskBenchError> {
    use super::secagg::{SecAggError, check_survivors, open_shares, reveal, sign_survivors};
    let identities = round
        .roster
        .iter()
        .zip(who)
        .map(|(id, (w, _))| (id.clone(), w.public()))
        .collect();
    let sigs: Vec<(String, [u8; 64])> = survivors
        .iter()
        .zip(who)
        .map(|(id, (w, _))| (id.clone(), sign_survivors(w, round, id, survivors)))
        .collect();
    let mut reveals = Vec::new();
    let mut reveal_ms = Vec::new();
    for (id, (_, s)) in survivors.iter().zip(who).take(round.threshold) {
        let t = Instant::now();
        check_survivors(round, id, &identities, survivors, &sigs)?;
        let held = bundles
            .iter()
            .filter(|b| b.to == *id)
            .map(|b| {
                let from = keys.iter().find(|(k, _)| *k == b.from);
                let from = from.ok_or_else(|| SecAggError::NoKey { id: b.from.clone() })?;
                open_shares(s, round, id, from, b)
            })
            .collect::<Result<Vec<_>, _>>()?;
        reveals.push(reveal(round, id, survivors, &held)?);
        reveal_ms.push(ms(t));
    }
    Ok((reveals, reveal_ms))
}

#[derive(Debug, thiserror::Error)]
pub enum MaskBenchError {
    #[error(transparent)]
    Mask(#[from] MaskError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    SecAgg(#[from] super::secagg::SecAggError),
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
    let mut double = Vec::new();
    for _ in 0..repeats {
        if ids.len() >= 3 {
            double.push(double_masking(&key, &ids, values)?);
        }
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
        double_mask_ms: median(double.iter().map(|d| d.mask).collect()),
        seal_ms: median(double.iter().map(|d| d.seal).collect()),
        reveal_ms: median(double.iter().map(|d| d.reveal).collect()),
        reconstruct_ms: median(double.iter().map(|d| d.reconstruct).collect()),
        unmask_sum_ms: median(double.iter().map(|d| d.unmask_sum).collect()),
    })
}
