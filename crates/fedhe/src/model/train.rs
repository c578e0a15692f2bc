//! Mini-batch SGD with a per-epoch callback for progress, plots and cancel,
//! for every model kind.

use std::ops::ControlFlow;

use ndarray::{Array1, Array2};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Head, Model, ModelError, Optimizer};

/// How rows are weighted in the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassWeight {
    /// Every row counts once.
    #[default]
    None,
    /// Rows of class c weigh `n / (K · n_c)`, as scikit-learn's "balanced".
    Balanced,
}

/// The six settings of local mini-batch SGD, in one shape for a
/// federation's plan (`plan::Training` embeds it), [`TrainConfig`], the
/// CLI's flags and the app. A federation's defaults are in
/// `plan::Training::default()`, one machine's in [`TrainConfig::default`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalSgd {
    /// Passes over the local data (per round, in a federation).
    pub epochs: usize,
    pub lr: f64,
    pub batch_size: usize,
    /// L2 penalty `l2 / 2 · |w|²` (biases are not penalized).
    pub l2: f64,
    /// SGD momentum (0: plain SGD; also Nesterov's).
    pub momentum: f64,
    /// Seed of the shuffling.
    pub seed: u64,
    /// The step rule (SGD, Nesterov, Adam, AdamW), the learning-rate
    /// schedule and per-example clipping.
    pub optimizer: Optimizer,
}

/// Training settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub lr: f64,
    pub batch_size: usize,
    /// L2 penalty `l2 / 2 · |w|²` (biases are not penalized).
    pub l2: f64,
    /// SGD momentum (0: plain SGD).
    #[serde(default)]
    pub momentum: f64,
    pub seed: u64,
    /// The step rule, schedule and clipping; left out of files when plain
    /// SGD (as before they existed).
    #[serde(default, skip_serializing_if = "Optimizer::is_plain")]
    pub optimizer: Optimizer,
    #[serde(default)]
    pub class_weight: ClassWeight,
    /// DP-SGD: Poisson batches, clipped per-example gradients, noise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp: Option<crate::privacy::DpSgd>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            epochs: 50,
            lr: 0.05,
            batch_size: 32,
            l2: 1e-3,
            momentum: 0.0,
            seed: 42,
            optimizer: Optimizer::default(),
            class_weight: ClassWeight::None,
            dp: None,
        }
    }
}

impl From<LocalSgd> for TrainConfig {
    /// These SGD settings, every row counted once, without DP.
    fn from(s: LocalSgd) -> Self {
        TrainConfig {
            epochs: s.epochs,
            lr: s.lr,
            batch_size: s.batch_size,
            l2: s.l2,
            momentum: s.momentum,
            seed: s.seed,
            optimizer: s.optimizer,
            class_weight: ClassWeight::None,
            dp: None,
        }
    }
}

impl TrainConfig {
    /// Its SGD settings.
    pub fn sgd(&self) -> LocalSgd {
        LocalSgd {
            epochs: self.epochs,
            lr: self.lr,
            batch_size: self.batch_size,
            l2: self.l2,
            momentum: self.momentum,
            seed: self.seed,
            optimizer: self.optimizer,
        }
    }

    /// Checks every setting (before any data is read, by the CLI).
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Setting(m));
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch size must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("learning rate must be positive, got {}", self.lr));
        }
        if !(self.l2.is_finite() && self.l2 >= 0.0) {
            return bad(format!("L2 must be zero or positive, got {}", self.l2));
        }
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return bad(format!("momentum must be in [0, 1), got {}", self.momentum));
        }
        if self.dp.is_some() && self.optimizer.prox_mu > 0.0 {
            return bad(
                "FedProx (prox_mu) does not apply to DP-SGD's steps; set prox_mu = 0".into(),
            );
        }
        self.optimizer.validate(self.momentum)
    }
}

/// Figures after one epoch, on the whole training set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// 1-based.
    pub epoch: usize,
    /// Mean training loss (without the L2 term): log-loss for
    /// classification, half the squared error of the standardized target
    /// for regression.
    pub loss: f64,
    /// The task's main figure: accuracy, or R² for regression.
    pub score: f64,
}

/// What a training run did.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainSummary {
    pub epochs_run: usize,
    /// DP-SGD steps taken (for the accountant).
    pub dp_steps: u64,
    pub cancelled: bool,
    pub last: Option<EpochStats>,
}

/// Per-row weights for `class_weight` over `classes` classes (regression:
/// none), or `None` when all are 1.
pub fn class_weights(y: &Array1<f64>, how: ClassWeight, head: Head) -> Option<Vec<f64>> {
    let classes = match head {
        Head::Squared => return None,
        Head::Logistic => 2,
        Head::Softmax { classes } => classes,
    };
    match how {
        ClassWeight::None => None,
        ClassWeight::Balanced => {
            let n = y.len() as f64;
            let mut counts = vec![0usize; classes];
            for &v in y {
                if let Some(c) = counts.get_mut(v as usize) {
                    *c += 1;
                }
            }
            let w: Vec<f64> = counts
                .iter()
                .map(|&c| {
                    if c > 0 {
                        n / (classes as f64 * c as f64)
                    } else {
                        1.0
                    }
                })
                .collect();
            Some(
                y.iter()
                    .map(|&v| w.get(v as usize).copied().unwrap_or(1.0))
                    .collect(),
            )
        }
    }
}

/// Trains `model` in place. `on_epoch` sees each epoch's figures and may
/// return `ControlFlow::Break(())` to stop early (cancel).
///
/// Deterministic: the same data, settings and seed give the same parameters
/// — with DP-SGD, only under the same secret `dp.seed` (without one, every
/// call draws fresh batches and noise from the operating system).
pub fn train(
    model: &mut dyn Model,
    x: &Array2<f64>,
    y: &Array1<f64>,
    cfg: &TrainConfig,
    on_epoch: &mut dyn FnMut(&EpochStats) -> ControlFlow<()>,
) -> Result<TrainSummary, ModelError> {
    train_within(model, x, y, cfg, None, on_epoch)
}

/// How training went wrong (see [`ModelError::Diverged`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Divergence {
    /// The loss or a parameter is NaN or infinite.
    NotFinite,
    /// The training loss grew to more than [`EXPLODED`] times (and 1
    /// above) that of a model that knows nothing (predicting 0 for the
    /// standardized target, chance for classes).
    LossExploded { loss: f64, start: f64 },
    /// Parameter `index` left the range an update can carry (`limit`, the
    /// key's fixed-point range over this site's share).
    OutOfRange {
        index: usize,
        value: f64,
        limit: f64,
    },
}

/// A training loss this many times the starting one is divergence, not
/// learning: no sensible run climbs that far.
pub const EXPLODED: f64 = 1e3;

impl std::fmt::Display for Divergence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Divergence::NotFinite => f.write_str("the loss is no longer a finite number"),
            Divergence::LossExploded { loss, start } => write!(
                f,
                "the training loss reached {loss:.4e}, over {EXPLODED}× the {start:.4} of predicting \
                 nothing"
            ),
            Divergence::OutOfRange {
                index,
                value,
                limit,
            } => write!(
                f,
                "parameter {index} reached {value:.4e}, beyond the ±{limit:.4e} an encrypted \
                 update can carry"
            ),
        }
    }
}

/// The loss of a model that knows nothing: predicting 0 for a
/// (standardized) regression target, chance for classification.
fn baseline_loss(head: Head, y: &[f64]) -> f64 {
    match head {
        Head::Squared => 0.5 * y.iter().map(|t| t * t).sum::<f64>() / y.len().max(1) as f64,
        Head::Logistic => std::f64::consts::LN_2,
        Head::Softmax { classes } => (classes.max(2) as f64).ln(),
    }
}

/// Where a run stands against [`Divergence`]: `start` is the baseline
/// loss, `limit` the largest magnitude a parameter may reach.
fn diverged(model: &dyn Model, loss: f64, start: f64, limit: Option<f64>) -> Option<Divergence> {
    let params = model.params();
    if !loss.is_finite() || params.iter().any(|v| !v.is_finite()) {
        return Some(Divergence::NotFinite);
    }
    if loss > 1.0 && loss > EXPLODED * start {
        return Some(Divergence::LossExploded { loss, start });
    }
    let limit = limit?;
    let index = params.iter().position(|v| v.abs() >= limit)?;
    Some(Divergence::OutOfRange {
        index,
        value: params[index],
        limit,
    })
}

/// [`train`], stopping with [`ModelError::Diverged`] as soon as an epoch
/// leaves a parameter of magnitude `limit` or more (what an encrypted
/// update can carry), rather than failing later in the encryption.
pub fn train_within(
    model: &mut dyn Model,
    x: &Array2<f64>,
    y: &Array1<f64>,
    cfg: &TrainConfig,
    limit: Option<f64>,
    on_epoch: &mut dyn FnMut(&EpochStats) -> ControlFlow<()>,
) -> Result<TrainSummary, ModelError> {
    cfg.validate()?;
    let (n, d) = x.dim();
    if y.len() != n || model.inputs() != d {
        return Err(ModelError::Shape(format!(
            "{n} rows × {d} features, {} labels, model of {} features",
            y.len(),
            model.inputs()
        )));
    }
    let x = x.as_standard_layout().into_owned();
    let ys = y.to_vec();
    let rw = class_weights(y, cfg.class_weight, model.head());
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut summary = TrainSummary {
        epochs_run: 0,
        dp_steps: 0,
        cancelled: false,
        last: None,
    };
    let start = baseline_loss(model.head(), &ys);
    // DP-SGD's batches and noise: from its secret seed, or fresh from the
    // operating system; never from the public `cfg.seed`.
    let mut dp_rng = match cfg.dp.as_ref().map(|dp| dp.seed.clone()) {
        Some(Some(seed)) => Some(seed.rng()),
        Some(None) => Some(crate::privacy::DpSeed::fresh()?.rng()),
        None => None,
    };
    for epoch in 1..=cfg.epochs {
        match (&cfg.dp, dp_rng.as_mut()) {
            // Poisson batches of clipped, noised gradients; class weights do
            // not apply (they would change every example's sensitivity).
            (Some(dp), Some(dp_rng)) => {
                summary.dp_steps += super::dp_epoch(model, &x, &ys, cfg, dp, dp_rng);
            }
            _ => {
                order.shuffle(&mut rng);
                model.fit_epoch(&x, &ys, rw.as_deref(), &order, &epoch_config(cfg, epoch));
            }
        }
        let stats = evaluate(&*model, &x, &ys, epoch);
        // A NaN, exploding or out-of-range model: stop with an error naming
        // the epoch instead of returning (and saving, or encrypting) it.
        if let Some(cause) = diverged(&*model, stats.loss, start, limit) {
            return Err(ModelError::Diverged {
                epoch,
                lr: cfg.lr,
                cause,
            });
        }
        summary.epochs_run = epoch;
        summary.last = Some(stats);
        if on_epoch(&stats).is_break() {
            summary.cancelled = epoch < cfg.epochs;
            break;
        }
    }
    Ok(summary)
}

/// The settings of `epoch`: the schedule's learning rate over the epochs
/// (a federation applies it over rounds instead, and trains each round at
/// a constant rate).
fn epoch_config(cfg: &TrainConfig, epoch: usize) -> std::borrow::Cow<'_, TrainConfig> {
    use super::Schedule;
    if cfg.optimizer.schedule == Schedule::Constant {
        return std::borrow::Cow::Borrowed(cfg);
    }
    let mut c = cfg.clone();
    c.lr = cfg
        .optimizer
        .schedule
        .lr(cfg.lr, epoch as u64, cfg.epochs as u64);
    std::borrow::Cow::Owned(c)
}

/// Mean loss and the task's score of `model` on these rows.
pub(crate) fn evaluate(model: &dyn Model, x: &Array2<f64>, y: &[f64], epoch: usize) -> EpochStats {
    let head = model.head();
    let z = model.outputs(x);
    let n = y.len().max(1) as f64;
    let mut loss = 0.0;
    let mut correct = 0usize;
    let mut sse = 0.0;
    for (row, &t) in z.rows().into_iter().zip(y) {
        let r = row.as_slice().unwrap_or(&[]);
        loss += head.loss(r, t);
        let p = head.decide(r);
        correct += usize::from(p == t);
        sse += (p - t) * (p - t);
    }
    let score = match head {
        Head::Squared => {
            let mean = y.iter().sum::<f64>() / n;
            let sst: f64 = y.iter().map(|t| (t - mean) * (t - mean)).sum();
            if sst > 0.0 { 1.0 - sse / sst } else { 0.0 }
        }
        _ => correct as f64 / n,
    };
    EpochStats {
        epoch,
        loss: loss / n,
        score,
    }
}
