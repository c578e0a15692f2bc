//! Logistic regression: the model, its training loop, metrics, and the
//! self-describing model file.

mod bench;
mod file;
mod logistic;
mod metrics;
mod scoring;
mod train;

pub use bench::{DataBench, run_data_bench};
pub use file::{
    CENTRALIZED, FEDERATED, FORMAT_NAME, FORMAT_VERSION, ModelFile, Provenance, SIMULATED,
};
pub use logistic::{LogisticRegression, sigmoid};
pub use metrics::{ConfusionMatrix, Metrics, roc_auc, roc_curve};
pub use scoring::{Scored, score_csv, write_predictions};
pub use train::{ClassWeight, EpochStats, TrainConfig, TrainSummary, class_weights, train};

/// Errors from training, model files and scoring.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("invalid training setting: {0}")]
    Setting(String),
    #[error("shape mismatch: {0}")]
    Shape(String),
    #[error(
        "training diverged at epoch {epoch}: the loss is no longer a finite number; try a smaller learning rate than {lr} (--lr), or check the data for extreme values"
    )]
    Diverged { epoch: usize, lr: f64 },
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
}
