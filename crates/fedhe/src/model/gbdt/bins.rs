//! Global bins: a fine histogram per numeric column over the federated
//! mean ± 5σ, summed over the sites, gives every site the same cut points.

use ndarray::ArrayView2;
use serde::{Deserialize, Serialize};

use crate::data::{ColumnStats, RawColumn, RawStats};

/// Equal-width buckets of a numeric column's fine histogram (plus one
/// overflow bucket on each side).
pub const FINE_BUCKETS: usize = 4096;
/// The fine histogram spans the column's mean ± this many σ.
pub const FINE_SIGMAS: f64 = 5.0;
/// A fine histogram's slots per numeric column.
const FINE_SLOTS: usize = FINE_BUCKETS + 2;
/// A missing cell's bin.
pub(crate) const MISSING: u16 = u16::MAX;

/// One column's fine-histogram range, or its categories.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeatureBins {
    /// Buckets `[lo + i·width, lo + (i+1)·width)`, i < [`FINE_BUCKETS`].
    Numeric { lo: f64, width: f64 },
    /// Codes `0..categories`, and "(other)" for any code above.
    Categorical { categories: usize },
}

/// Per raw column how the bin round buckets it (the same at every site:
/// from the federated statistics).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinPlan {
    pub features: Vec<FeatureBins>,
}

/// `x` rounded to 20 significant bits: sums that differ in their last bits
/// (a federation's and the pooled rows') give the same range.
fn coarse(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return 0.0;
    }
    let q = (x.abs().log2().floor() - 20.0).exp2();
    (x / q).round() * q
}

impl BinPlan {
    /// The plan of raw `columns` from their statistics (one site's, or the
    /// federation's sum).
    pub fn new(columns: &[RawColumn], stats: &RawStats) -> BinPlan {
        let features = columns
            .iter()
            .zip(&stats.columns)
            .map(|(c, s)| match (c, s) {
                (
                    RawColumn::Numeric { .. },
                    ColumnStats::Numeric {
                        sum,
                        sum_sq,
                        present,
                    },
                ) if *present > 0.0 => {
                    let mean = sum / present;
                    let var = (sum_sq / present - mean * mean).max(0.0);
                    let mut sd = coarse(var.sqrt());
                    if sd <= 0.0 || !sd.is_finite() {
                        sd = 1.0;
                    }
                    let mean = coarse(mean);
                    FeatureBins::Numeric {
                        lo: mean - FINE_SIGMAS * sd,
                        width: 2.0 * FINE_SIGMAS * sd / FINE_BUCKETS as f64,
                    }
                }
                (RawColumn::Categorical { categories, .. }, _) => FeatureBins::Categorical {
                    categories: categories.len(),
                },
                _ => FeatureBins::Numeric {
                    lo: -FINE_SIGMAS,
                    width: 2.0 * FINE_SIGMAS / FINE_BUCKETS as f64,
                },
            })
            .collect();
        BinPlan { features }
    }

    /// Slots of one node's histogram per feature with `bins` bins per
    /// numeric column: its bins, then the missing slot.
    pub fn slot_widths(&self, bins: usize) -> Vec<usize> {
        self.features
            .iter()
            .map(|f| match f {
                FeatureBins::Numeric { .. } => bins + 1,
                FeatureBins::Categorical { categories } => categories + 2,
            })
            .collect()
    }
}

/// Length of the bin round's vector: [`FINE_BUCKETS`] + 2 per numeric column.
pub fn fine_len(plan: &BinPlan) -> usize {
    plan.features
        .iter()
        .filter(|f| matches!(f, FeatureBins::Numeric { .. }))
        .count()
        * FINE_SLOTS
}

/// This site's counts of present cells per fine bucket of every numeric
/// column (`x`: raw rows, columns as the plan's).
pub fn fine_histogram(plan: &BinPlan, x: ArrayView2<f64>) -> Vec<i64> {
    let mut out = vec![0i64; fine_len(plan)];
    let mut at = 0;
    for (j, f) in plan.features.iter().enumerate() {
        let FeatureBins::Numeric { lo, width } = *f else {
            continue;
        };
        if j < x.ncols() {
            for &v in x.column(j).iter().filter(|v| !v.is_nan()) {
                let t = (v - lo) / width;
                let slot = if t < 0.0 {
                    0
                } else if t >= FINE_BUCKETS as f64 {
                    FINE_SLOTS - 1
                } else {
                    1 + t as usize
                };
                out[at + slot] += 1;
            }
        }
        at += FINE_SLOTS;
    }
    out
}

/// One column's cut points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeatureCuts {
    /// A value `v` is in bin `#{c ∈ cuts : c ≤ v}` (at most `bins − 1` cuts).
    Numeric { cuts: Vec<f64> },
    /// One bin per category and one for "(other)".
    Categorical { categories: usize },
}

/// Every column's cut points: the same at every site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cuts {
    /// Bins per numeric column (the histogram's fixed width).
    pub bins: usize,
    pub features: Vec<FeatureCuts>,
}

impl Cuts {
    /// Value bins of feature `f` in a node's histogram (without the missing slot).
    pub fn width(&self, f: usize) -> usize {
        match &self.features[f] {
            FeatureCuts::Numeric { .. } => self.bins,
            FeatureCuts::Categorical { categories } => categories + 1,
        }
    }

    /// The bin of value `v` of feature `f` ([`MISSING`] for NaN).
    pub(crate) fn bin(&self, f: usize, v: f64) -> u16 {
        if v.is_nan() {
            return MISSING;
        }
        let b = match &self.features[f] {
            FeatureCuts::Numeric { cuts } => cuts.partition_point(|c| *c <= v),
            FeatureCuts::Categorical { categories } => {
                if v < 0.0 {
                    *categories
                } else {
                    (v as usize).min(*categories)
                }
            }
        };
        b as u16
    }
}

/// The cut points from the summed fine histogram: per numeric column at
/// most `bins − 1` cuts at bucket boundaries, a cut between every two
/// occupied buckets when there are at most `bins` of them, else at the
/// count-weighted quantiles `i/bins`. Integer arithmetic only.
pub fn cuts(plan: &BinPlan, global: &[i64], bins: usize) -> Cuts {
    let bins = bins.clamp(2, super::MAX_BINS);
    let mut at = 0;
    let features = plan
        .features
        .iter()
        .map(|f| match *f {
            FeatureBins::Categorical { categories } => FeatureCuts::Categorical { categories },
            FeatureBins::Numeric { lo, width } => {
                let counts = global.get(at..at + FINE_SLOTS).unwrap_or(&[]);
                at += FINE_SLOTS;
                let boundaries = column_cuts(counts, bins);
                FeatureCuts::Numeric {
                    cuts: boundaries
                        .into_iter()
                        .map(|b| lo + b as f64 * width)
                        .collect(),
                }
            }
        })
        .collect();
    Cuts { bins, features }
}

/// Boundary indices `b` (between slot `b` and `b + 1`) of one column.
fn column_cuts(counts: &[i64], bins: usize) -> Vec<usize> {
    let occupied: Vec<usize> = (0..counts.len()).filter(|&s| counts[s] > 0).collect();
    if occupied.len() <= 1 {
        return Vec::new();
    }
    if occupied.len() <= bins {
        // As XGBoost: the cut just below the next occupied bucket.
        return occupied.windows(2).map(|w| w[1] - 1).collect();
    }
    let total: i128 = counts.iter().map(|&c| i128::from(c.max(0))).sum();
    let last = occupied[occupied.len() - 1];
    let (mut out, mut cum, mut i) = (Vec::new(), 0i128, 1i128);
    let n = bins as i128;
    for (s, &c) in counts.iter().enumerate().take(last) {
        cum += i128::from(c.max(0));
        let mut cut_here = false;
        while i < n && cum * n >= i * total {
            cut_here = true;
            i += 1;
        }
        if cut_here && c > 0 {
            out.push(s);
        }
    }
    out
}
