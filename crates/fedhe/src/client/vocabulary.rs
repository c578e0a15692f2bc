//! The encrypted vocabulary: sites agree on the categories of a column
//! without a list in the plan, and without revealing a value that is rare
//! across the federation in the category list or the model.
//!
//! 1. Each site hashes each of its values (SHA-256 of the column and the
//!    value) into one of `buckets` buckets and uploads, per bucket, its count
//!    (at most `min_count`), whether it holds any value there, and a 48-bit
//!    fingerprint of the value (another hash, in three 16-bit slots). The
//!    aggregator adds the encrypted vectors; the sites decrypt the sums.
//! 2. A bucket whose summed count reaches `min_count` survives. For each
//!    surviving bucket, a site holding a value there uploads the value's
//!    UTF-8 bytes (up to [`NAME_BYTES`]) — only if the summed fingerprint is
//!    its own times the number of holders, i.e. every holder holds the same
//!    value; the sum divided by the number of holders is the name, kept
//!    only if its fingerprint matches. Names of rare values are never
//!    uploaded, nor are values that share a bucket with another value at
//!    another site (a collision): those go to "other".
//!
//! What it reveals, to every key holder (the sites), not to the aggregator:
//! the summed, per-site-capped counts of every bucket and how many sites hold
//! each — so a site can test a guessed value (hash it, look at its bucket)
//! and learn that some site holds it and roughly how often; and the names of
//! the surviving values. Two values in one bucket (a collision) at
//! different sites produce an undecodable name: that bucket's values go to
//! "other". See docs/tabular.md.

use std::sync::atomic::AtomicBool;

use sha2::{Digest, Sha256};

use super::{Exchange, LoopError};
use crate::data::{Dataset, RawColumn};
use crate::plan::RoundLayout;
use crate::plan::Vocabulary;

pub use crate::plan::NAME_BYTES;

/// Slots per bucket in the first round: count, presence, fingerprint (3).
const SLOTS: usize = 5;

/// A value's 48-bit fingerprint as three 16-bit digits.
fn fingerprint(column: &str, value: &str) -> [f64; 3] {
    let mut h = Sha256::new();
    h.update(b"FedHE vocabulary fingerprint v1\0");
    h.update(column.as_bytes());
    h.update([0u8]);
    h.update(value.as_bytes());
    let d = h.finalize();
    [0, 2, 4].map(|i| f64::from(u16::from_le_bytes([d[i], d[i + 1]])))
}

/// The bucket of `value` in `column`.
pub fn bucket(column: &str, value: &str, buckets: usize) -> usize {
    let mut h = Sha256::new();
    h.update(b"FedHE vocabulary v1\0");
    h.update(column.as_bytes());
    h.update([0u8]);
    h.update(value.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    (u64::from_le_bytes(b) % buckets.max(1) as u64) as usize
}

/// A site's values of `column` (index `j` of `ds.columns`) with their counts.
fn local_values(ds: &Dataset, j: usize) -> Vec<(String, usize)> {
    let Some(RawColumn::Categorical { categories, .. }) = ds.columns.get(j) else {
        return Vec::new();
    };
    let mut counts = vec![0usize; categories.len()];
    for &v in ds.x.column(j) {
        if !v.is_nan()
            && let Some(c) = counts.get_mut(v as usize)
        {
            *c += 1;
        }
    }
    categories
        .iter()
        .cloned()
        .zip(counts)
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// Runs the two vocabulary rounds for the `discovered` columns of `ds` (read
/// with their own values) and returns each column's agreed categories, sorted.
pub fn agree(
    exchange: &mut dyn Exchange,
    ds: &Dataset,
    discovered: &[String],
    vocabulary: Vocabulary,
    cancel: &AtomicBool,
) -> Result<Vec<(String, Vec<String>)>, LoopError> {
    let layout = RoundLayout { vocabulary: true };
    let b = vocabulary.buckets;
    let cap = f64::from(vocabulary.min_count);
    let mut columns = Vec::with_capacity(discovered.len());
    for name in discovered {
        let j = ds
            .columns
            .iter()
            .position(|c| c.name() == name)
            .ok_or_else(|| LoopError::Other(format!("no categorical column {name:?}")))?;
        columns.push((name.clone(), local_values(ds, j)));
    }
    // Round 1: per bucket the capped count, presence and the fingerprint
    // of the site's most frequent value there.
    let mut counts = vec![0.0; SLOTS * b * columns.len()];
    for (k, (name, values)) in columns.iter().enumerate() {
        let base = SLOTS * b * k;
        let mut best = vec![0usize; b];
        for (v, n) in values {
            let i = bucket(name, v, b);
            let slot = &mut counts[base + SLOTS * i];
            *slot = (*slot + *n as f64).min(cap);
            counts[base + SLOTS * i + 1] = 1.0;
            if *n > best[i] {
                best[i] = *n;
                counts[base + SLOTS * i + 2..base + SLOTS * i + 5]
                    .copy_from_slice(&fingerprint(name, v));
            }
        }
    }
    let round = 1;
    debug_assert_eq!(
        layout.phase(round),
        Some(crate::plan::RoundPhase::Vocabulary)
    );
    let (mean, contributed) = match exchange.published(round, counts.len())? {
        // Resumed after round 1 closed: whether this site's counts are in
        // the sum is not known here, so it names nothing below.
        Some(m) => (m, false),
        None => {
            let m = exchange.exchange(round, &counts, 1.0, cancel)?;
            let c = m.contributed;
            (m, c)
        }
    };
    let sums: Vec<f64> = mean.values.iter().map(|v| v * mean.total_weight).collect();
    if sums.len() != counts.len() {
        return Err(LoopError::Other(format!(
            "the vocabulary sum holds {} values, expected {}",
            sums.len(),
            counts.len()
        )));
    }
    // The buckets every site now knows survive, in bucket order.
    let slot = |k: usize, i: usize, s: usize| sums[SLOTS * b * k + SLOTS * i + s];
    let survivors: Vec<Vec<usize>> = (0..columns.len())
        .map(|k| (0..b).filter(|&i| slot(k, i, 0).round() >= cap).collect())
        .collect();
    // Every holder of bucket `i` holds `value`: the summed fingerprint is
    // its fingerprint times the holders.
    let agrees = |k: usize, i: usize, column: &str, value: &str| {
        let holders = slot(k, i, 1).round();
        fingerprint(column, value)
            .iter()
            .enumerate()
            .all(|(d, f)| (slot(k, i, 2 + d) - holders * f).abs() < 0.5)
    };
    // Round 2: the names of the surviving buckets this site holds.
    let total: usize = survivors.iter().map(Vec::len).sum();
    let mut names = vec![0.0; total * NAME_BYTES];
    let mut at = 0;
    for (k, ((name, values), surv)) in columns.iter().zip(&survivors).enumerate() {
        for &i in surv {
            // The site's most frequent value in this bucket, when every
            // holder holds the same one and it fits.
            let mine = values
                .iter()
                .filter(|(v, _)| bucket(name, v, b) == i)
                .max_by_key(|(_, n)| *n);
            if let Some((v, _)) = mine
                && contributed
                && v.len() <= NAME_BYTES
                && agrees(k, i, name, v)
            {
                for (cell, byte) in names[at..at + NAME_BYTES].iter_mut().zip(v.bytes()) {
                    *cell = f64::from(byte);
                }
            }
            at += NAME_BYTES;
        }
    }
    let round = 2;
    let named = match exchange.published(round, names.len())? {
        Some(m) => m,
        None => exchange.exchange(round, &names, 1.0, cancel)?,
    };
    let name_sums: Vec<f64> = named
        .values
        .iter()
        .map(|v| v * named.total_weight)
        .collect();
    let mut agreed = Vec::with_capacity(columns.len());
    let mut at = 0;
    for (k, ((name, _), surv)) in columns.iter().zip(&survivors).enumerate() {
        let mut categories = Vec::new();
        for &i in surv {
            let holders = slot(k, i, 1).round();
            let cells = name_sums.get(at..at + NAME_BYTES).unwrap_or(&[]);
            at += NAME_BYTES;
            // A name counts only if every holder sent it: its fingerprint
            // matches the summed one.
            if let Some(n) = decode_name(cells, holders)
                && agrees(k, i, name, &n)
                && !categories.contains(&n)
            {
                categories.push(n);
            }
        }
        crate::data::sort_classes(&mut categories);
        agreed.push((name.clone(), categories));
    }
    Ok(agreed)
}

/// A name from summed bytes over `holders` sites, or `None` when the sites
/// held different values in the bucket (the bytes do not divide evenly).
fn decode_name(summed: &[f64], holders: f64) -> Option<String> {
    if holders < 1.0 {
        return None;
    }
    let mut bytes = Vec::with_capacity(summed.len());
    for s in summed {
        let v = s / holders;
        let r = v.round();
        if (v - r).abs() > 1e-3 || !(0.0..=255.0).contains(&r) {
            return None;
        }
        bytes.push(r as u8);
    }
    while bytes.last() == Some(&0) {
        bytes.pop();
    }
    if bytes.is_empty() || bytes.contains(&0) {
        return None;
    }
    String::from_utf8(bytes).ok()
}

/// Maps `ds`'s own values of the agreed columns to the agreed categories;
/// a value not among them goes to "other".
pub fn apply(ds: &mut Dataset, agreed: &[(String, Vec<String>)]) {
    for (name, categories) in agreed {
        let Some(j) = ds.columns.iter().position(|c| c.name() == name) else {
            continue;
        };
        let local = match &ds.columns[j] {
            RawColumn::Categorical { categories, .. } => categories.clone(),
            RawColumn::Numeric { .. } => continue,
        };
        let other = categories.len() as f64;
        let map: Vec<f64> = local
            .iter()
            .map(|v| {
                categories
                    .iter()
                    .position(|c| c == v)
                    .map_or(other, |i| i as f64)
            })
            .collect();
        ds.x.column_mut(j).mapv_inplace(|v| {
            if v.is_nan() {
                v
            } else {
                map.get(v as usize).copied().unwrap_or(other)
            }
        });
        ds.columns[j] = RawColumn::Categorical {
            name: name.clone(),
            categories: categories.clone(),
            other: true,
        };
    }
}
