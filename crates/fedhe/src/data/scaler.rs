//! Per-feature standardization, fitted on training data only.

use ndarray::{Array2, Axis};
use serde::{Deserialize, Serialize};

/// Subtracts each feature's mean and divides by its standard deviation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    pub mean: Vec<f64>,
    /// Population standard deviation; a constant feature gets 1 so it maps to 0.
    pub std: Vec<f64>,
}

impl Standardizer {
    /// Fits on the rows of `x`.
    pub fn fit(x: &Array2<f64>) -> Self {
        let n = x.nrows() as f64;
        let sums: Vec<f64> = x.sum_axis(Axis(0)).to_vec();
        let sums_sq: Vec<f64> = x.map(|v| v * v).sum_axis(Axis(0)).to_vec();
        Self::from_moments(n, &sums, &sums_sq)
    }

    /// Builds the scaler from a row count and per-feature sums and sums of
    /// squares, which is all a federation shares (encrypted) to agree on one.
    pub fn from_moments(count: f64, sums: &[f64], sums_sq: &[f64]) -> Self {
        let count = count.max(1.0);
        let mean: Vec<f64> = sums.iter().map(|s| s / count).collect();
        let std = sums_sq
            .iter()
            .zip(&mean)
            .map(|(sq, m)| {
                let var = (sq / count - m * m).max(0.0);
                let sd = var.sqrt();
                if sd > 1e-12 { sd } else { 1.0 }
            })
            .collect();
        Self { mean, std }
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.mean.len()
    }

    /// True when fitted on no features.
    pub fn is_empty(&self) -> bool {
        self.mean.is_empty()
    }

    /// Standardizes `x` in place.
    pub fn transform(&self, x: &mut Array2<f64>) {
        for mut row in x.rows_mut() {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *v = (*v - m) / s;
            }
        }
    }

    /// A standardized copy of `x`.
    pub fn transformed(&self, x: &Array2<f64>) -> Array2<f64> {
        let mut out = x.clone();
        self.transform(&mut out);
        out
    }
}
