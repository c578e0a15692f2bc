//! The logistic-regression model: probabilities, loss and gradient.

use ndarray::{Array1, Array2};

use super::ModelError;

/// Numerically stable logistic function.
#[inline]
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// `p(y = 1 | x) = sigmoid(w·x + b)`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticRegression {
    pub weights: Array1<f64>,
    pub bias: f64,
}

impl LogisticRegression {
    /// All-zero model (the global model before round 1).
    pub fn zeros(features: usize) -> Self {
        Self {
            weights: Array1::zeros(features),
            bias: 0.0,
        }
    }

    pub fn features(&self) -> usize {
        self.weights.len()
    }

    /// Weights followed by the bias: the vector a federation averages.
    pub fn params(&self) -> Vec<f64> {
        let mut p = self.weights.to_vec();
        p.push(self.bias);
        p
    }

    /// Inverse of [`params`](Self::params).
    pub fn set_params(&mut self, params: &[f64]) -> Result<(), ModelError> {
        let n = self.features();
        if params.len() != n + 1 {
            return Err(ModelError::Shape(format!(
                "expected {} parameters ({n} weights + bias), got {}",
                n + 1,
                params.len()
            )));
        }
        self.weights.assign(&Array1::from(params[..n].to_vec()));
        self.bias = params[n];
        Ok(())
    }

    /// Linear score of one row.
    #[inline]
    pub fn decision(&self, row: &[f64]) -> f64 {
        let w = self.weights.as_slice().unwrap_or(&[]);
        row.iter().zip(w).map(|(a, b)| a * b).sum::<f64>() + self.bias
    }

    /// Positive-class probability of every row.
    pub fn predict_proba(&self, x: &Array2<f64>) -> Array1<f64> {
        x.rows()
            .into_iter()
            .map(|r| sigmoid(r.dot(&self.weights) + self.bias))
            .collect()
    }

    /// Mean (optionally weighted) log-loss plus `l2 / 2 · |w|²`.
    pub fn objective(
        &self,
        x: &Array2<f64>,
        y: &Array1<f64>,
        l2: f64,
        row_weights: Option<&[f64]>,
    ) -> f64 {
        let n = x.nrows().max(1) as f64;
        let data: f64 = x
            .rows()
            .into_iter()
            .zip(y)
            .enumerate()
            .map(|(i, (r, &t))| {
                let z = r.dot(&self.weights) + self.bias;
                row_weights.map_or(1.0, |w| w[i]) * log_loss_of_logit(z, t)
            })
            .sum();
        data / n + 0.5 * l2 * self.weights.dot(&self.weights)
    }

    /// Gradient of [`objective`](Self::objective): (d/dw, d/db).
    pub fn gradient(
        &self,
        x: &Array2<f64>,
        y: &Array1<f64>,
        l2: f64,
        row_weights: Option<&[f64]>,
    ) -> (Array1<f64>, f64) {
        let n = x.nrows().max(1) as f64;
        let mut gw = Array1::<f64>::zeros(self.features());
        let mut gb = 0.0;
        for (i, (r, &t)) in x.rows().into_iter().zip(y).enumerate() {
            let err =
                row_weights.map_or(1.0, |w| w[i]) * (sigmoid(r.dot(&self.weights) + self.bias) - t);
            gw.scaled_add(err, &r);
            gb += err;
        }
        gw /= n;
        gw.scaled_add(l2, &self.weights);
        (gw, gb / n)
    }
}

/// `-log p(t | z)` computed from the logit without overflow.
#[inline]
pub(crate) fn log_loss_of_logit(z: f64, t: f64) -> f64 {
    // log(1 + e^z) - t z, in a form that never overflows.
    let softplus = if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    };
    softplus - t * z
}
