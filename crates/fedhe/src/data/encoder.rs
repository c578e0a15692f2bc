//! The preprocessing every site of a federation applies the same way, and a
//! model file keeps for Predict: missing numbers imputed with the mean
//! (optionally with a missing-indicator column), categories one-hot
//! encoded in a fixed order (missing cells as their own category, or the
//! most frequent one), then standardization. Fitted from [`RawStats`] —
//! one site's, or the federation's encrypted sum — so a federation agrees
//! on it without revealing any site's figures.

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::{ColumnStats, RawColumn, RawStats, Standardizer};

/// What a missing categorical cell becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CategoricalMissing {
    /// Its own one-hot column, "missing".
    #[default]
    Category,
    /// The federation's most frequent category.
    MostFrequent,
}

/// How missing cells are filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MissingPolicy {
    pub categorical: CategoricalMissing,
    /// A 0/1 column after each numeric column: 1 where the cell was missing.
    pub indicators: bool,
}

/// One raw column's part of the encoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EncodedColumn {
    Numeric {
        name: String,
        /// What a missing cell becomes (the mean of the present cells).
        fill: f64,
        /// Followed by a missing-indicator column.
        #[serde(default)]
        indicator: bool,
    },
    Categorical {
        name: String,
        categories: Vec<String>,
        /// An "other" column for values outside `categories`.
        #[serde(default)]
        other: bool,
        missing: CategoricalMissing,
        /// With `MostFrequent`: the category a missing cell becomes.
        #[serde(default)]
        fill: usize,
    },
}

/// The fitted encoding of a table's raw columns into model features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Encoder {
    pub columns: Vec<EncodedColumn>,
    /// Cell texts read as missing (empty: none; a missing cell is an error).
    #[serde(default)]
    pub missing_tokens: Vec<String>,
}

impl Encoder {
    /// An unfitted encoder of these raw columns (fills are set by [`fit`](Self::fit)).
    pub fn new(raw: &[RawColumn], policy: MissingPolicy, missing_tokens: Vec<String>) -> Encoder {
        let columns = raw
            .iter()
            .map(|c| match c {
                RawColumn::Numeric { name } => EncodedColumn::Numeric {
                    name: name.clone(),
                    fill: 0.0,
                    indicator: policy.indicators,
                },
                RawColumn::Categorical {
                    name,
                    categories,
                    other,
                } => EncodedColumn::Categorical {
                    name: name.clone(),
                    categories: categories.clone(),
                    other: *other,
                    missing: policy.categorical,
                    fill: 0,
                },
            })
            .collect();
        Encoder {
            columns,
            missing_tokens,
        }
    }

    /// An encoder that passes numeric columns through (model files from
    /// before preprocessing; tables without missing cells or categories).
    pub fn numeric(names: &[String]) -> Encoder {
        let raw: Vec<RawColumn> = names.iter().map(|n| RawColumn::numeric(n)).collect();
        Encoder::new(&raw, MissingPolicy::default(), Vec::new())
    }

    /// The raw columns this encoder reads.
    pub fn raw_columns(&self) -> Vec<RawColumn> {
        self.columns
            .iter()
            .map(|c| match c {
                EncodedColumn::Numeric { name, .. } => RawColumn::numeric(name),
                EncodedColumn::Categorical {
                    name,
                    categories,
                    other,
                    ..
                } => RawColumn::Categorical {
                    name: name.clone(),
                    categories: categories.clone(),
                    other: *other,
                },
            })
            .collect()
    }

    /// Names of the model's input features, in order: `age`,
    /// `age=missing`, `sex=female`, `sex=male`, `sex=(other)`, `sex=(missing)`.
    pub fn output_names(&self) -> Vec<String> {
        let mut out = Vec::new();
        for c in &self.columns {
            match c {
                EncodedColumn::Numeric {
                    name, indicator, ..
                } => {
                    out.push(name.clone());
                    if *indicator {
                        out.push(format!("{name}=(missing)"));
                    }
                }
                EncodedColumn::Categorical {
                    name,
                    categories,
                    other,
                    missing,
                    ..
                } => {
                    out.extend(categories.iter().map(|k| format!("{name}={k}")));
                    if *other {
                        out.push(format!("{name}=(other)"));
                    }
                    if *missing == CategoricalMissing::Category {
                        out.push(format!("{name}=(missing)"));
                    }
                }
            }
        }
        out
    }

    /// Number of model inputs.
    pub fn output_len(&self) -> usize {
        self.columns
            .iter()
            .map(|c| match c {
                EncodedColumn::Numeric { indicator, .. } => 1 + usize::from(*indicator),
                EncodedColumn::Categorical {
                    categories,
                    other,
                    missing,
                    ..
                } => {
                    categories.len()
                        + usize::from(*other)
                        + usize::from(*missing == CategoricalMissing::Category)
                }
            })
            .sum()
    }

    /// Sets the fills from `stats` (mean of the present cells; most
    /// frequent category) and returns the standardization of the encoded
    /// features, computed from the same statistics: exactly what
    /// [`Standardizer::fit`] gives on the encoded rows.
    pub fn fit(&mut self, stats: &RawStats) -> Standardizer {
        let rows = stats.rows.max(1.0);
        let mut mean = Vec::with_capacity(self.output_len());
        let mut sums_sq = Vec::with_capacity(self.output_len());
        // Each encoded column as (mean, mean of squares).
        let mut push = |m: f64, m2: f64| {
            mean.push(m);
            sums_sq.push(m2);
        };
        for (c, s) in self.columns.iter_mut().zip(&stats.columns) {
            match (c, s) {
                (
                    EncodedColumn::Numeric {
                        fill, indicator, ..
                    },
                    ColumnStats::Numeric {
                        sum,
                        sum_sq,
                        present,
                    },
                ) => {
                    let mu = if *present > 0.0 { sum / present } else { 0.0 };
                    *fill = mu;
                    // Missing cells are the mean: they add mu² each.
                    let missing = (stats.rows - present).max(0.0);
                    push(mu, (sum_sq + missing * mu * mu) / rows);
                    if *indicator {
                        let p = missing / rows;
                        push(p, p);
                    }
                }
                (
                    EncodedColumn::Categorical {
                        categories,
                        other,
                        missing,
                        fill,
                        ..
                    },
                    ColumnStats::Categorical { counts },
                ) => {
                    let k = categories.len();
                    let mut shares: Vec<f64> = counts.iter().map(|c| c / rows).collect();
                    shares.resize(k + 2, 0.0);
                    if *missing == CategoricalMissing::MostFrequent {
                        let best = (0..k)
                            .max_by(|&a, &b| {
                                shares[a].total_cmp(&shares[b]).then_with(|| b.cmp(&a))
                            })
                            .unwrap_or(0);
                        *fill = best;
                        shares[best] += shares[k + 1];
                    }
                    for p in &shares[..k] {
                        push(*p, *p);
                    }
                    if *other {
                        push(shares[k], shares[k]);
                    }
                    if *missing == CategoricalMissing::Category {
                        push(shares[k + 1], shares[k + 1]);
                    }
                }
                _ => {}
            }
        }
        // Standardizer::from_moments with count 1 takes means directly.
        Standardizer::from_moments(1.0, &mean, &sums_sq)
    }

    /// The encoded rows (before standardization) of raw rows `x`.
    pub fn transform(&self, x: &Array2<f64>) -> Array2<f64> {
        let n = x.nrows();
        let mut out = Array2::zeros((n, self.output_len()));
        let mut at = 0;
        for (j, c) in self.columns.iter().enumerate() {
            let col = x.column(j);
            match c {
                EncodedColumn::Numeric {
                    fill, indicator, ..
                } => {
                    for (i, &v) in col.iter().enumerate() {
                        out[[i, at]] = if v.is_nan() { *fill } else { v };
                        if *indicator {
                            out[[i, at + 1]] = f64::from(u8::from(v.is_nan()));
                        }
                    }
                    at += 1 + usize::from(*indicator);
                }
                EncodedColumn::Categorical {
                    categories,
                    other,
                    missing,
                    fill,
                    ..
                } => {
                    let k = categories.len();
                    let width = k
                        + usize::from(*other)
                        + usize::from(*missing == CategoricalMissing::Category);
                    for (i, &v) in col.iter().enumerate() {
                        let slot = if v.is_nan() {
                            match missing {
                                CategoricalMissing::Category => Some(width - 1),
                                CategoricalMissing::MostFrequent => Some(*fill),
                            }
                        } else {
                            let idx = v as usize;
                            if idx < k {
                                Some(idx)
                            } else if *other {
                                Some(k)
                            } else {
                                None
                            }
                        };
                        if let Some(s) = slot.filter(|s| *s < width) {
                            out[[i, at + s]] = 1.0;
                        }
                    }
                    at += width;
                }
            }
        }
        out
    }
}
