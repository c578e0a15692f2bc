//! The app's errors, typed: each says in words what failed and why, and
//! becomes a note in the window (`Note::from`).

use std::path::PathBuf;

use fedhe::client::ClientError;
use fedhe::crypto::CryptoError;
use fedhe::federation::SimulationError;
use fedhe::model::ModelError;
use fedhe::session::SessionError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The user stopped a job.
    #[error("{0} was stopped.")]
    Stopped(&'static str),
    #[error("Could not start a background thread for {job}: {source}")]
    Thread { job: String, source: std::io::Error },
    /// A file or folder could not be used.
    #[error("Could not {action} {}: {reason}", .path.display())]
    File {
        action: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("Could not {action}: {source}")]
    Key {
        action: &'static str,
        source: Box<CryptoError>,
    },
    /// A secret key file others can replace.
    #[error("{0}; it was not loaded.")]
    KeyPermissions(String),
    #[error("Could not join the federation: {0}")]
    Join(Box<SessionError>),
    #[error("Your CSV does not fit the federation's plan {plan}: {source}")]
    PlanMismatch {
        plan: String,
        source: Box<SessionError>,
    },
    #[error("Registration failed: {0}")]
    Register(Box<SessionError>),
    #[error("Training failed: {0}")]
    Training(Box<SessionError>),
    #[error("Federated training failed: {0}")]
    Federated(Box<SessionError>),
    #[error("The demo failed: {0}")]
    Demo(Box<SimulationError>),
    #[error("Could not {action}: {source}")]
    Model {
        action: &'static str,
        source: Box<ModelError>,
    },
    #[error("Could not export the model to ONNX: {0}")]
    Onnx(Box<fedhe::export::ExportError>),
    #[error("Could not {action}: {source}")]
    Aggregator {
        action: String,
        source: Box<ClientError>,
    },
}

impl AppError {
    /// A file error from an I/O error, in words.
    pub fn file(action: &'static str, path: impl Into<PathBuf>, e: &std::io::Error) -> Self {
        let reason = match e.kind() {
            std::io::ErrorKind::NotFound => "it does not exist".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => e.to_string(),
        };
        AppError::File {
            action,
            path: path.into(),
            reason,
        }
    }
}

impl From<AppError> for super::widgets::Note {
    fn from(e: AppError) -> Self {
        super::widgets::Note::Error(e.to_string())
    }
}

/// A job that died (a bug), reported by the job layer in words.
impl From<String> for super::widgets::Note {
    fn from(e: String) -> Self {
        super::widgets::Note::Error(e)
    }
}
