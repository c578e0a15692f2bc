//! The statistics a federation shares (encrypted) to agree on one
//! preprocessing: per numeric column the sum, the sum of squares and the
//! count of present cells; per categorical column the count of each
//! category, of "other" and of missing cells; the row count; and a
//! regression target's sum and sum of squares.

use ndarray::{Array1, Array2};

use super::RawColumn;

/// Statistics of one raw column.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnStats {
    Numeric {
        sum: f64,
        sum_sq: f64,
        present: f64,
    },
    /// Counts of each category, then "other", then missing.
    Categorical {
        counts: Vec<f64>,
    },
}

/// Statistics of a table (one site's, or the federation's sum).
#[derive(Debug, Clone, PartialEq)]
pub struct RawStats {
    pub rows: f64,
    pub columns: Vec<ColumnStats>,
    /// A regression target's sum and sum of squares.
    pub target: Option<(f64, f64)>,
}

impl RawStats {
    /// Statistics of the raw matrix `x` laid out as `columns`.
    pub fn of(columns: &[RawColumn], x: &Array2<f64>, target: Option<&Array1<f64>>) -> RawStats {
        let stats = columns
            .iter()
            .enumerate()
            .map(|(j, c)| {
                let col = x.column(j);
                match c {
                    RawColumn::Numeric { .. } => {
                        let (mut sum, mut sum_sq, mut present) = (0.0, 0.0, 0.0);
                        for &v in col.iter().filter(|v| !v.is_nan()) {
                            sum += v;
                            sum_sq += v * v;
                            present += 1.0;
                        }
                        ColumnStats::Numeric {
                            sum,
                            sum_sq,
                            present,
                        }
                    }
                    RawColumn::Categorical { categories, .. } => {
                        let k = categories.len();
                        let mut counts = vec![0.0; k + 2];
                        for &v in &col {
                            let slot = if v.is_nan() {
                                k + 1
                            } else {
                                (v as usize).min(k)
                            };
                            counts[slot] += 1.0;
                        }
                        ColumnStats::Categorical { counts }
                    }
                }
            })
            .collect();
        RawStats {
            rows: x.nrows() as f64,
            columns: stats,
            target: target.map(|y| (y.sum(), y.iter().map(|v| v * v).sum())),
        }
    }

    /// Values of the statistics vector for this layout (before limbs).
    pub fn len(columns: &[RawColumn], with_target: bool) -> usize {
        let cols: usize = columns
            .iter()
            .map(|c| match c {
                RawColumn::Numeric { .. } => 3,
                RawColumn::Categorical { categories, .. } => categories.len() + 2,
            })
            .sum();
        cols + 1 + if with_target { 2 } else { 0 }
    }

    /// The statistics as one flat vector: per column its figures, then the
    /// row count, then the target's sum and sum of squares.
    pub fn to_vec(&self) -> Vec<f64> {
        let mut out = Vec::new();
        for c in &self.columns {
            match c {
                ColumnStats::Numeric {
                    sum,
                    sum_sq,
                    present,
                } => out.extend([*sum, *sum_sq, *present]),
                ColumnStats::Categorical { counts } => out.extend_from_slice(counts),
            }
        }
        out.push(self.rows);
        if let Some((s, q)) = self.target {
            out.extend([s, q]);
        }
        out
    }

    /// Inverse of [`to_vec`](Self::to_vec) for this layout.
    pub fn from_vec(
        columns: &[RawColumn],
        with_target: bool,
        values: &[f64],
    ) -> Result<RawStats, String> {
        let want = Self::len(columns, with_target);
        if values.len() != want {
            return Err(format!(
                "the statistics hold {} values; this table's layout needs {want}",
                values.len()
            ));
        }
        let mut at = 0;
        let mut stats = Vec::with_capacity(columns.len());
        for c in columns {
            match c {
                RawColumn::Numeric { .. } => {
                    stats.push(ColumnStats::Numeric {
                        sum: values[at],
                        sum_sq: values[at + 1],
                        present: values[at + 2],
                    });
                    at += 3;
                }
                RawColumn::Categorical { categories, .. } => {
                    let n = categories.len() + 2;
                    stats.push(ColumnStats::Categorical {
                        counts: values[at..at + n].to_vec(),
                    });
                    at += n;
                }
            }
        }
        let rows = values[at];
        let target = with_target.then(|| (values[at + 1], values[at + 2]));
        Ok(RawStats {
            rows,
            columns: stats,
            target,
        })
    }

    /// Adds another table's statistics (same layout).
    pub fn add(&mut self, other: &RawStats) {
        self.rows += other.rows;
        for (a, b) in self.columns.iter_mut().zip(&other.columns) {
            match (a, b) {
                (
                    ColumnStats::Numeric {
                        sum,
                        sum_sq,
                        present,
                    },
                    ColumnStats::Numeric {
                        sum: s2,
                        sum_sq: q2,
                        present: p2,
                    },
                ) => {
                    *sum += s2;
                    *sum_sq += q2;
                    *present += p2;
                }
                (ColumnStats::Categorical { counts }, ColumnStats::Categorical { counts: c2 }) => {
                    for (x, y) in counts.iter_mut().zip(c2) {
                        *x += y;
                    }
                }
                _ => {}
            }
        }
        if let (Some((s, q)), Some((s2, q2))) = (&mut self.target, other.target) {
            *s += s2;
            *q += q2;
        }
    }
}
