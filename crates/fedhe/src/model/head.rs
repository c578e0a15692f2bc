//! The output layer of every model: how raw outputs become predictions, the
//! loss, and the loss's gradient with respect to the raw outputs.

use serde::{Deserialize, Serialize};

use crate::data::{Target, TaskKind};

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

/// `-log p(t | z)` of a logistic output, computed from the logit without
/// overflow.
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

/// The task's output layer and loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Head {
    /// One logit; log-loss; `y` is 0 or 1.
    Logistic,
    /// One logit per class; cross-entropy of the softmax; `y` is the index.
    Softmax { classes: usize },
    /// One value; half squared error; `y` is the (standardized) target.
    Squared,
}

impl Head {
    /// The head of a task.
    pub fn for_target(target: &Target) -> Head {
        match target {
            Target::Binary(_) => Head::Logistic,
            Target::Multiclass { classes, .. } => Head::Softmax {
                classes: classes.len(),
            },
            Target::Regression { .. } => Head::Squared,
        }
    }

    pub fn task(self) -> TaskKind {
        match self {
            Head::Logistic => TaskKind::Binary,
            Head::Softmax { .. } => TaskKind::Multiclass,
            Head::Squared => TaskKind::Regression,
        }
    }

    /// Raw outputs per row.
    pub fn outputs(self) -> usize {
        match self {
            Head::Logistic | Head::Squared => 1,
            Head::Softmax { classes } => classes,
        }
    }

    /// Loss of one row's raw outputs `z` against `y`; writes `d loss / d z`
    /// into `grad` (same length as `z`).
    #[inline]
    pub fn loss_grad(self, z: &[f64], y: f64, grad: &mut [f64]) -> f64 {
        match self {
            Head::Logistic => {
                grad[0] = sigmoid(z[0]) - y;
                log_loss_of_logit(z[0], y)
            }
            Head::Squared => {
                let e = z[0] - y;
                grad[0] = e;
                0.5 * e * e
            }
            Head::Softmax { .. } => {
                let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let mut sum = 0.0;
                for (g, &v) in grad.iter_mut().zip(z) {
                    *g = (v - max).exp();
                    sum += *g;
                }
                let t = y as usize;
                for g in grad.iter_mut() {
                    *g /= sum;
                }
                let lse = max + sum.ln();
                if let Some(g) = grad.get_mut(t) {
                    *g -= 1.0;
                }
                lse - z.get(t).copied().unwrap_or(0.0)
            }
        }
    }

    /// Loss of one row (the training loss without the L2 term).
    #[inline]
    pub fn loss(self, z: &[f64], y: f64) -> f64 {
        match self {
            Head::Logistic => log_loss_of_logit(z[0], y),
            Head::Squared => 0.5 * (z[0] - y) * (z[0] - y),
            Head::Softmax { .. } => {
                let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let lse = max + z.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
                lse - z.get(y as usize).copied().unwrap_or(0.0)
            }
        }
    }

    /// Probabilities (binary: of class 1; multi-class: one per class) or the
    /// predicted value, from one row's raw outputs.
    pub fn predict_into(self, z: &[f64], out: &mut [f64]) {
        match self {
            Head::Logistic => out[0] = sigmoid(z[0]),
            Head::Squared => out[0] = z[0],
            Head::Softmax { .. } => {
                let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let mut sum = 0.0;
                for (o, &v) in out.iter_mut().zip(z) {
                    *o = (v - max).exp();
                    sum += *o;
                }
                for o in out.iter_mut() {
                    *o /= sum;
                }
            }
        }
    }

    /// The predicted `y`: class 0/1, the class index, or the value.
    #[inline]
    pub fn decide(self, z: &[f64]) -> f64 {
        match self {
            Head::Logistic => f64::from(u8::from(z[0] >= 0.0)),
            Head::Squared => z[0],
            Head::Softmax { .. } => argmax(z) as f64,
        }
    }
}

/// Index of the largest value (the first of ties).
pub fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}
