//! Regression metrics, in the target's original unit.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RegressionMetrics {
    pub rows: usize,
    /// Root mean squared error, in the target's unit.
    pub rmse: f64,
    /// Mean absolute error, in the target's unit.
    pub mae: f64,
    /// 1 − SSE / SST (for a constant target: 1 if predicted exactly, else 0).
    pub r2: f64,
    /// RMSE divided by the target's standard deviation on these rows (the
    /// error in standard units).
    pub rmse_std: f64,
}

impl RegressionMetrics {
    /// Metrics of predictions against actual values (same unit).
    pub fn compute(actual: &[f64], predicted: &[f64]) -> RegressionMetrics {
        let rows = actual.len().min(predicted.len());
        if rows == 0 {
            return RegressionMetrics {
                rows,
                rmse: 0.0,
                mae: 0.0,
                r2: 0.0,
                rmse_std: 0.0,
            };
        }
        let n = rows as f64;
        let mean = actual[..rows].iter().sum::<f64>() / n;
        let (mut sse, mut sae, mut sst) = (0.0, 0.0, 0.0);
        for (&t, &p) in actual.iter().zip(predicted) {
            sse += (p - t) * (p - t);
            sae += (p - t).abs();
            sst += (t - mean) * (t - mean);
        }
        RegressionMetrics::from_sums(rows, sse, sae, sst)
    }

    /// The figures from the sums of squared and absolute residuals and the
    /// target's sum of squared deviations over `rows` rows (as a
    /// federation's pooled sums give them).
    pub fn from_sums(rows: usize, sse: f64, sae: f64, sst: f64) -> RegressionMetrics {
        if rows == 0 {
            return RegressionMetrics {
                rows,
                rmse: 0.0,
                mae: 0.0,
                r2: 0.0,
                rmse_std: 0.0,
            };
        }
        let n = rows as f64;
        let rmse = (sse / n).sqrt();
        let sd = (sst / n).sqrt();
        RegressionMetrics {
            rows,
            rmse,
            mae: sae / n,
            // As scikit-learn: a constant target predicted exactly scores 1.
            r2: if sst > 0.0 {
                1.0 - sse / sst
            } else if sse == 0.0 {
                1.0
            } else {
                0.0
            },
            rmse_std: if sd > 0.0 { rmse / sd } else { 0.0 },
        }
    }
}
