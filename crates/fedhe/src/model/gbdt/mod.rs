//! Gradient-boosted trees (XGBoost's histogram method), as a functional
//! core: integer vectors in and out, no I/O.
//!
//! Everything a federation shares is an exact integer sum, so pooled,
//! plaintext-federated and encrypted training give the same trees bit for
//! bit:
//! - [`BinPlan`] → [`fine_histogram`] per site → summed → [`cuts`]: the same
//!   ≤ `bins` cut points per numeric column at every site (weighted
//!   quantiles over 4,096 equal-width buckets around the federated mean ± 5σ);
//!   a categorical column has one bin per category, "(other)" included.
//! - [`Grower`]: per level of the current boosting iteration (multi-class: K
//!   trees grown together) one round: [`Grower::local`] is this site's
//!   histogram of quantized gradients and hessians (integers, 2^-20 units)
//!   of the open nodes — only the smaller child of each split, its sibling
//!   is the parent minus it —, [`Grower::take`] the global sum: the best
//!   split per node (fixed tie-break), leaf weights `−G/(H+λ)` from the
//!   global sums, and the site's rows moved on.
//! - [`Ensemble`]: splits, default directions and leaf values only (no
//!   per-node hessian sums or counts: they enable model inversion).
//!
//! Pooled training ([`train_pooled`]) is the federation of one site.

mod bins;
mod ensemble;
mod grower;
mod pooled;
mod sparse;
mod split;

use serde::{Deserialize, Serialize};

pub use bins::{
    BinPlan, Cuts, FINE_BUCKETS, FINE_SIGMAS, FeatureBins, FeatureCuts, cuts, fine_histogram,
    fine_len,
};
pub use ensemble::{Ensemble, Node, Rule, Tree};
pub use grower::{GRAD_BOUND_REGRESSION, GRAD_SCALE, Grower, SiteRows};
pub use pooled::{PooledModel, PooledRun, fit_dataset, train_pooled};

use super::{Head, ModelError};

/// The settings of one boosting run; the defaults are XGBoost's (with 256
/// bins), so results compare one to one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GbdtSettings {
    /// Boosting iterations (multi-class: K trees each).
    pub trees: usize,
    /// Maximum depth of a tree (levels of splits).
    pub depth: usize,
    /// Most bins per numeric column (2 to 256).
    pub bins: usize,
    /// Shrinkage of every leaf value (XGBoost's `eta`).
    pub learning_rate: f64,
    /// L2 regularization of leaf weights (XGBoost's `lambda`).
    pub lambda: f64,
    /// Smallest hessian sum of a child.
    pub min_child_weight: f64,
    /// Smallest gain of a split (XGBoost's `gamma`).
    pub min_split_gain: f64,
    /// Share of the rows each iteration uses (seeded, per row).
    pub subsample: f64,
    /// Share of the columns each tree uses (seeded).
    pub colsample: f64,
    /// Seed of the row and column sampling.
    pub seed: u64,
}

impl Default for GbdtSettings {
    fn default() -> Self {
        Self {
            trees: 100,
            depth: 6,
            bins: 256,
            learning_rate: 0.1,
            lambda: 1.0,
            min_child_weight: 1.0,
            min_split_gain: 0.0,
            subsample: 1.0,
            colsample: 1.0,
            seed: 0,
        }
    }
}

/// Most trees (iterations) of a run.
pub const MAX_TREES: usize = 10_000;
/// Deepest tree.
pub const MAX_DEPTH: usize = 12;
/// Most bins per numeric column.
pub const MAX_BINS: usize = 256;

impl GbdtSettings {
    /// Every setting in its range, naming the first that is not.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |what: &str| Err(ModelError::Setting(what.to_string()));
        if !(1..=MAX_TREES).contains(&self.trees) {
            return bad(&format!("--trees {} must be 1 to {MAX_TREES}", self.trees));
        }
        if !(1..=MAX_DEPTH).contains(&self.depth) {
            return bad(&format!("--depth {} must be 1 to {MAX_DEPTH}", self.depth));
        }
        if !(2..=MAX_BINS).contains(&self.bins) {
            return bad(&format!("--bins {} must be 2 to {MAX_BINS}", self.bins));
        }
        let lr = self.learning_rate;
        if !(lr.is_finite() && lr > 0.0 && lr <= 1.0) {
            return bad(&format!("the learning rate {lr} must be in (0, 1]"));
        }
        for (name, v) in [
            ("--lambda", self.lambda),
            ("--min-child-weight", self.min_child_weight),
            ("--min-split-gain", self.min_split_gain),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(&format!("{name} {v} must be a finite number ≥ 0"));
            }
        }
        for (name, v) in [
            ("--subsample", self.subsample),
            ("--colsample", self.colsample),
        ] {
            if !(v.is_finite() && v > 0.0 && v <= 1.0) {
                return bad(&format!("{name} {v} must be in (0, 1]"));
            }
        }
        Ok(())
    }
}

/// The trees of one boosting iteration: one per class (multi-class), else one.
pub fn trees_per_iteration(head: Head) -> usize {
    head.outputs()
}
