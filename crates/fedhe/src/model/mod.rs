//! Models: one abstraction ([`Model`]: a flat parameter vector for
//! aggregation plus fit-epoch, outputs and loss), the task heads, the
//! training loop, metrics per task, and the self-describing model file.
//!
//! Adding a model kind is one file (a `build` function, or a type
//! implementing [`Model`]) plus one arm in [`Architecture`] and [`build`].

mod bench;
mod dpsgd;
mod evaluation;
mod federated;
mod fedopt;
mod file;
pub mod gbdt;
mod head;
pub mod linear;
mod metrics;
pub mod mlp;
mod multiclass;
mod network;
mod optim;
mod regression;
mod scoring;
mod train;

use ndarray::Array2;
use serde::{Deserialize, Serialize};

pub use bench::{DataBench, run_data_bench};
pub use dpsgd::dp_epoch;
pub use evaluation::Evaluation;
pub use federated::FederatedFigures;
pub use fedopt::{ServerOptimizer, ServerOptimizerKind, ServerState};
pub use file::{
    CENTRALIZED, FEDERATED, FORMAT_NAME, FORMAT_VERSION, ModelFile, Provenance, SIMULATED,
    TargetScaling,
};
pub use gbdt::{Ensemble, GbdtSettings};
pub use head::{Head, argmax, sigmoid};
pub use metrics::{ConfusionMatrix, Metrics, roc_auc, roc_curve};
pub use multiclass::{ClassFigures, MulticlassMetrics};
pub use network::Network;
pub use optim::{Optimizer, OptimizerKind, Schedule};
pub use regression::RegressionMetrics;
pub use scoring::{Scored, score_csv, write_predictions};
pub use train::{
    ClassWeight, Divergence, EXPLODED, EpochStats, LocalSgd, TrainConfig, TrainSummary,
    class_weights, train, train_within,
};

/// The learning rate to suggest after a run at `lr` diverged: a tenth.
pub fn suggested_lr(lr: f64) -> f64 {
    let s = lr / 10.0;
    // Print 0.01, not 0.010000000000000002.
    format!("{s:.3e}").parse().unwrap_or(s)
}

/// The model kinds and their shape (stored in model files and plans).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Architecture {
    /// Logistic, softmax or linear regression, by task.
    #[default]
    Linear,
    /// ReLU hidden layers of these sizes, then the task's output layer.
    Mlp { hidden: Vec<usize> },
    /// Gradient-boosted trees ([`gbdt`]): no parameter vector, no SGD; the
    /// model file holds the trees, the settings are the run's
    /// ([`gbdt::GbdtSettings`]).
    Gbdt,
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Architecture::Linear => f.write_str("linear"),
            Architecture::Mlp { hidden } => {
                let h: Vec<String> = hidden.iter().map(usize::to_string).collect();
                write!(f, "mlp (hidden {})", h.join(","))
            }
            Architecture::Gbdt => f.write_str("gbdt"),
        }
    }
}

impl Architecture {
    /// The model's name for a task: "logistic regression", "MLP", ...
    pub fn describe(&self, head: Head) -> String {
        match (self, head) {
            (Architecture::Linear, Head::Logistic) => "logistic regression".into(),
            (Architecture::Linear, Head::Softmax { .. }) => "softmax regression".into(),
            (Architecture::Linear, Head::Squared) => "linear regression".into(),
            (Architecture::Mlp { hidden }, _) => {
                let h: Vec<String> = hidden.iter().map(usize::to_string).collect();
                format!("MLP, hidden layers {}", h.join(" × "))
            }
            (Architecture::Gbdt, _) => "gradient-boosted trees".into(),
        }
    }
}

/// A trainable model: a flat parameter vector (what a federation averages)
/// and the operations training, scoring and tests need.
pub trait Model: Send + Sync + std::fmt::Debug {
    fn architecture(&self) -> Architecture;
    fn head(&self) -> Head;
    /// Number of input features.
    fn inputs(&self) -> usize;
    fn params(&self) -> &[f64];
    /// Replaces the parameters (same length).
    fn set_params(&mut self, params: &[f64]) -> Result<(), ModelError>;
    /// Raw outputs (logits or values), rows × `head().outputs()`.
    fn outputs(&self, x: &Array2<f64>) -> Array2<f64>;
    /// Mean loss plus `l2 / 2 · |weights|²`, and its gradient.
    fn objective_gradient(&self, x: &Array2<f64>, y: &[f64], l2: f64) -> (f64, Vec<f64>);
    /// One epoch of mini-batch SGD over the rows in `order`.
    fn fit_epoch(
        &mut self,
        x: &Array2<f64>,
        y: &[f64],
        row_weights: Option<&[f64]>,
        order: &[usize],
        cfg: &TrainConfig,
    );
    /// Adds `l2 · w` for every weight (not the biases) to `grad`; returns
    /// `l2 / 2 · |w|²`.
    fn add_l2(&self, l2: f64, grad: &mut [f64]) -> f64;
    fn clone_box(&self) -> Box<dyn Model>;
}

impl Clone for Box<dyn Model> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}

/// Predictions from raw outputs: per row the probability of class 1
/// (binary), the class probabilities (multi-class), or the value.
pub fn predictions(model: &dyn Model, x: &Array2<f64>) -> Array2<f64> {
    let head = model.head();
    let mut z = model.outputs(x);
    let mut out = vec![0.0; head.outputs()];
    for mut row in z.rows_mut() {
        if let Some(r) = row.as_slice_mut() {
            head.predict_into(r, &mut out);
            r.copy_from_slice(&out);
        }
    }
    z
}

/// The registry: a new model of `architecture` for `features` inputs and the
/// task's `head`. `seed` initializes models that do not start from zero.
pub fn build(
    architecture: &Architecture,
    features: usize,
    head: Head,
    seed: u64,
) -> Result<Box<dyn Model>, ModelError> {
    Ok(match architecture {
        Architecture::Linear => Box::new(linear::build(features, head)?),
        Architecture::Mlp { hidden } => Box::new(mlp::build(features, hidden, head, seed)?),
        Architecture::Gbdt => {
            return Err(ModelError::Setting(
                "gradient-boosted trees have no parameter vector: they are grown by model::gbdt, not trained by SGD".into(),
            ));
        }
    })
}

/// Errors from training, model files and scoring.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("invalid training setting: {0}")]
    Setting(String),
    #[error("shape mismatch: {0}")]
    Shape(String),
    #[error(
        "training diverged at epoch {epoch}: {cause}; try a smaller learning rate than {lr} (--lr {}), or check the data for extreme values",
        suggested_lr(*.lr)
    )]
    Diverged {
        epoch: usize,
        lr: f64,
        cause: Divergence,
    },
    #[error("cannot read model file {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("cannot write {file}: {source}")]
    Write {
        file: String,
        source: std::io::Error,
    },
    #[error("{file} is not a valid FedHE model file: {reason}")]
    Format { file: String, reason: String },
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// DP-SGD's secret randomness could not be drawn.
    #[error(transparent)]
    Privacy(#[from] crate::privacy::PrivacyError),
}
