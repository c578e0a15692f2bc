//! Mini-batch SGD with a per-epoch callback for progress, plots and cancel.

use std::ops::ControlFlow;

use ndarray::{Array1, Array2};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::ModelError;
use super::logistic::{LogisticRegression, log_loss_of_logit, sigmoid};

/// How rows are weighted in the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassWeight {
    /// Every row counts once.
    #[default]
    None,
    /// Rows of class c weigh `n / (2 · n_c)`, as scikit-learn's "balanced".
    Balanced,
}

/// Training settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub lr: f64,
    pub batch_size: usize,
    /// L2 penalty `l2 / 2 · |w|²` (the bias is not penalized).
    pub l2: f64,
    pub seed: u64,
    #[serde(default)]
    pub class_weight: ClassWeight,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 50,
            lr: 0.05,
            batch_size: 32,
            l2: 1e-3,
            seed: 42,
            class_weight: ClassWeight::None,
        }
    }
}

impl TrainConfig {
    fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Setting(m));
        if self.batch_size == 0 {
            return bad("batch size must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("learning rate must be positive, got {}", self.lr));
        }
        if !(self.l2.is_finite() && self.l2 >= 0.0) {
            return bad(format!("L2 must be zero or positive, got {}", self.l2));
        }
        Ok(())
    }
}

/// Figures after one epoch, on the whole training set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// 1-based.
    pub epoch: usize,
    /// Mean log-loss (without the L2 term).
    pub loss: f64,
    pub accuracy: f64,
}

/// What a training run did.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSummary {
    pub epochs_run: usize,
    pub cancelled: bool,
    pub last: Option<EpochStats>,
}

/// Per-row weights for `class_weight`, or `None` when all are 1.
pub fn class_weights(y: &Array1<f64>, how: ClassWeight) -> Option<Vec<f64>> {
    match how {
        ClassWeight::None => None,
        ClassWeight::Balanced => {
            let n = y.len() as f64;
            let pos = y.iter().filter(|&&v| v == 1.0).count() as f64;
            let w1 = if pos > 0.0 { n / (2.0 * pos) } else { 1.0 };
            let w0 = if n - pos > 0.0 {
                n / (2.0 * (n - pos))
            } else {
                1.0
            };
            Some(y.iter().map(|&v| if v == 1.0 { w1 } else { w0 }).collect())
        }
    }
}

/// Trains `model` in place. `on_epoch` sees each epoch's figures and may
/// return `ControlFlow::Break(())` to stop early (cancel).
///
/// Deterministic: the same data, settings and seed give the same weights.
pub fn train(
    model: &mut LogisticRegression,
    x: &Array2<f64>,
    y: &Array1<f64>,
    cfg: &TrainConfig,
    on_epoch: &mut dyn FnMut(&EpochStats) -> ControlFlow<()>,
) -> Result<TrainSummary, ModelError> {
    cfg.validate()?;
    let (n, d) = x.dim();
    if y.len() != n || model.features() != d {
        return Err(ModelError::Shape(format!(
            "{n} rows × {d} features, {} labels, model of {} features",
            y.len(),
            model.features()
        )));
    }
    let x = x.as_standard_layout();
    let xs = x.as_slice().unwrap_or(&[]);
    let ys = y.to_vec();
    let rw = class_weights(y, cfg.class_weight);
    let mut w = model.weights.to_vec();
    let mut b = model.bias;
    let mut gw = vec![0.0; d];
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut summary = TrainSummary {
        epochs_run: 0,
        cancelled: false,
        last: None,
    };

    for epoch in 1..=cfg.epochs {
        order.shuffle(&mut rng);
        for batch in order.chunks(cfg.batch_size) {
            gw.iter_mut().for_each(|g| *g = 0.0);
            let mut gb = 0.0;
            for &i in batch {
                let row = &xs[i * d..(i + 1) * d];
                let z = dot(row, &w) + b;
                let err = rw.as_ref().map_or(1.0, |r| r[i]) * (sigmoid(z) - ys[i]);
                for (g, v) in gw.iter_mut().zip(row) {
                    *g += err * v;
                }
                gb += err;
            }
            let scale = cfg.lr / batch.len() as f64;
            for (wj, g) in w.iter_mut().zip(&gw) {
                *wj -= scale * g + cfg.lr * cfg.l2 * *wj;
            }
            b -= scale * gb;
        }
        let stats = evaluate(xs, &ys, d, &w, b, epoch);
        // A NaN or infinite loss means the weights blew up: stop with an
        // error instead of returning (and saving) a NaN model.
        if !stats.loss.is_finite() || !b.is_finite() || w.iter().any(|v| !v.is_finite()) {
            return Err(ModelError::Diverged { epoch, lr: cfg.lr });
        }
        summary.epochs_run = epoch;
        summary.last = Some(stats);
        if on_epoch(&stats).is_break() {
            summary.cancelled = epoch < cfg.epochs;
            break;
        }
    }
    model.weights = Array1::from(w);
    model.bias = b;
    Ok(summary)
}

#[inline]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn evaluate(xs: &[f64], ys: &[f64], d: usize, w: &[f64], b: f64, epoch: usize) -> EpochStats {
    let n = ys.len();
    let mut loss = 0.0;
    let mut correct = 0usize;
    if d > 0 {
        for (row, &t) in xs.chunks_exact(d).zip(ys) {
            let z = dot(row, w) + b;
            loss += log_loss_of_logit(z, t);
            correct += usize::from((z >= 0.0) == (t == 1.0));
        }
    }
    let n = n.max(1) as f64;
    EpochStats {
        epoch,
        loss: loss / n,
        accuracy: correct as f64 / n,
    }
}
