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

use sha2::{Digest, Sha256};

use super::error::{LoopError, SiteError, SumError};
use super::exchange::RoundSum;
use super::round_loop::{Next, RoundCtx, RoundKind};
use crate::data::{Dataset, RawColumn};
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

/// The two vocabulary rounds for the discovered columns of a site's table
/// (read with its own values); leaves each column's agreed categories,
/// sorted.
pub(crate) struct VocabularyRounds {
    /// Per discovered column: its name and the site's values with counts.
    columns: Vec<(String, Vec<(String, usize)>)>,
    buckets: usize,
    /// A bucket survives with this summed count (each site's count is
    /// capped here).
    cap: f64,
    stage: Stage,
}

/// Where the vocabulary rounds are.
enum Stage {
    /// Round 1 next: the bucket counts.
    Counts,
    /// Round 2 next: the names of the surviving buckets.
    Names {
        counted: Counted,
        /// Whether this site's counts are in round 1's sum: it names only
        /// then.
        contributed: bool,
    },
    Agreed(Vec<(String, Vec<String>)>),
}

/// Round 1's sum: per column and bucket, the capped count, the holders and
/// the summed fingerprint.
struct Counted {
    sums: Vec<f64>,
    buckets: usize,
    /// Per column, the buckets every site now knows, in bucket order.
    survivors: Vec<Vec<usize>>,
}

impl Counted {
    fn new(sums: Vec<f64>, columns: usize, buckets: usize, cap: f64) -> Counted {
        let mut c = Counted {
            sums,
            buckets,
            survivors: Vec::new(),
        };
        c.survivors = (0..columns)
            .map(|k| {
                (0..buckets)
                    .filter(|&i| c.slot(k, i, 0).round() >= cap)
                    .collect()
            })
            .collect();
        c
    }

    fn slot(&self, k: usize, i: usize, s: usize) -> f64 {
        self.sums[SLOTS * self.buckets * k + SLOTS * i + s]
    }

    /// Sites holding a value in bucket `i` of column `k`.
    fn holders(&self, k: usize, i: usize) -> f64 {
        self.slot(k, i, 1).round()
    }

    /// Every holder of bucket `i` holds `value`: the summed fingerprint is
    /// its fingerprint times the holders.
    fn agrees(&self, k: usize, i: usize, column: &str, value: &str) -> bool {
        let holders = self.holders(k, i);
        fingerprint(column, value)
            .iter()
            .enumerate()
            .all(|(d, f)| (self.slot(k, i, 2 + d) - holders * f).abs() < 0.5)
    }

    fn names_len(&self) -> usize {
        self.survivors.iter().map(Vec::len).sum::<usize>() * NAME_BYTES
    }
}

impl VocabularyRounds {
    /// The rounds for the `discovered` columns of `ds`.
    pub(crate) fn new(
        ds: &Dataset,
        discovered: &[String],
        vocabulary: Vocabulary,
    ) -> Result<Self, SiteError> {
        let mut columns = Vec::with_capacity(discovered.len());
        for name in discovered {
            let j = ds
                .columns
                .iter()
                .position(|c| c.name() == name)
                .ok_or_else(|| SiteError::NoCategoricalColumn(name.clone()))?;
            columns.push((name.clone(), local_values(ds, j)));
        }
        Ok(VocabularyRounds {
            columns,
            buckets: vocabulary.buckets,
            cap: f64::from(vocabulary.min_count),
            stage: Stage::Counts,
        })
    }

    /// Round 1: per bucket the capped count, presence and the fingerprint
    /// of the site's most frequent value there.
    fn counts(&self) -> Vec<f64> {
        let b = self.buckets;
        let mut counts = vec![0.0; SLOTS * b * self.columns.len()];
        for (k, (name, values)) in self.columns.iter().enumerate() {
            let base = SLOTS * b * k;
            let mut best = vec![0usize; b];
            for (v, n) in values {
                let i = bucket(name, v, b);
                let slot = &mut counts[base + SLOTS * i];
                *slot = (*slot + *n as f64).min(self.cap);
                counts[base + SLOTS * i + 1] = 1.0;
                if *n > best[i] {
                    best[i] = *n;
                    counts[base + SLOTS * i + 2..base + SLOTS * i + 5]
                        .copy_from_slice(&fingerprint(name, v));
                }
            }
        }
        counts
    }

    /// Round 2: the names of the surviving buckets this site holds — its
    /// most frequent value in the bucket, when every holder holds the same
    /// one and it fits.
    fn names(&self, counted: &Counted, contributed: bool) -> Vec<f64> {
        let mut names = vec![0.0; counted.names_len()];
        let mut at = 0;
        for (k, ((name, values), surv)) in self.columns.iter().zip(&counted.survivors).enumerate() {
            for &i in surv {
                let mine = values
                    .iter()
                    .filter(|(v, _)| bucket(name, v, self.buckets) == i)
                    .max_by_key(|(_, n)| *n);
                if let Some((v, _)) = mine
                    && contributed
                    && v.len() <= NAME_BYTES
                    && counted.agrees(k, i, name, v)
                {
                    for (cell, byte) in names[at..at + NAME_BYTES].iter_mut().zip(v.bytes()) {
                        *cell = f64::from(byte);
                    }
                }
                at += NAME_BYTES;
            }
        }
        names
    }

    /// Each column's categories from round 2's summed names: a name counts
    /// only if every holder sent it (its fingerprint matches the summed one).
    fn agreed(&self, counted: &Counted, name_sums: &[f64]) -> Vec<(String, Vec<String>)> {
        let mut agreed = Vec::with_capacity(self.columns.len());
        let mut at = 0;
        for (k, ((name, _), surv)) in self.columns.iter().zip(&counted.survivors).enumerate() {
            let mut categories = Vec::new();
            for &i in surv {
                let cells = name_sums.get(at..at + NAME_BYTES).unwrap_or(&[]);
                at += NAME_BYTES;
                if let Some(n) = decode_name(cells, counted.holders(k, i))
                    && counted.agrees(k, i, name, &n)
                    && !categories.contains(&n)
                {
                    categories.push(n);
                }
            }
            crate::data::sort_classes(&mut categories);
            agreed.push((name.clone(), categories));
        }
        agreed
    }

    /// Round 1's sum; `contributed`: this site's counts are in it.
    fn take_counts(&mut self, sum: RoundSum, contributed: bool) -> Result<(), LoopError> {
        let want = SLOTS * self.buckets * self.columns.len();
        if sum.values.len() != want {
            return Err(SumError::VocabularyLength {
                got: sum.values.len(),
                want,
            }
            .into());
        }
        let counted = Counted::new(sum.values, self.columns.len(), self.buckets, self.cap);
        self.stage = Stage::Names {
            counted,
            contributed,
        };
        Ok(())
    }
}

impl RoundKind for VocabularyRounds {
    type Output = Vec<(String, Vec<String>)>;

    fn next(self, _ctx: &RoundCtx<'_>) -> Next<Self> {
        match self.stage {
            Stage::Agreed(agreed) => Next::Done(agreed),
            _ => Next::Round(self),
        }
    }

    fn len(&self) -> usize {
        match &self.stage {
            Stage::Counts => SLOTS * self.buckets * self.columns.len(),
            Stage::Names { counted, .. } => counted.names_len(),
            Stage::Agreed(_) => 0,
        }
    }

    fn build(&mut self, _ctx: &mut RoundCtx<'_>) -> Result<Vec<f64>, LoopError> {
        Ok(match &self.stage {
            Stage::Counts => self.counts(),
            Stage::Names {
                counted,
                contributed,
            } => self.names(counted, *contributed),
            Stage::Agreed(_) => Vec::new(),
        })
    }

    fn take(&mut self, sum: RoundSum, _ctx: &mut RoundCtx<'_>) -> Result<(), LoopError> {
        match &self.stage {
            Stage::Counts => {
                let contributed = sum.contributed;
                self.take_counts(sum, contributed)
            }
            Stage::Names { counted, .. } => {
                let agreed = self.agreed(counted, &sum.values);
                self.stage = Stage::Agreed(agreed);
                Ok(())
            }
            Stage::Agreed(_) => Ok(()),
        }
    }

    /// Resumed after round 1 closed: the exchange says whether this site's
    /// counts are in the sum (its id among the round's contributors). A
    /// site restarted between uploading its names and round 2's close must
    /// name exactly as before: masking zeros instead, under the masks it
    /// already used for its names, would hand the names to any key holder
    /// (and the mask ledger refuses it).
    fn take_published(&mut self, sum: RoundSum, ctx: &mut RoundCtx<'_>) -> Result<(), LoopError> {
        self.take(sum, ctx)
    }
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
