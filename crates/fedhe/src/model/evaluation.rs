//! The metrics of whichever task a model has.

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::{Head, Metrics, MulticlassMetrics, RegressionMetrics};

/// Metrics of one model on labelled rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "task", rename_all = "snake_case")]
pub enum Evaluation {
    Binary(Metrics),
    Multiclass(MulticlassMetrics),
    Regression(RegressionMetrics),
}

impl Evaluation {
    /// Metrics of `predictions` (from [`super::predictions`], with a
    /// regression's values in the target's original unit) against `y`
    /// (class indices, or original values).
    pub fn compute(head: Head, y: &[f64], predictions: &Array2<f64>) -> Evaluation {
        match head {
            Head::Logistic => {
                let p: Vec<f64> = predictions.column(0).to_vec();
                Evaluation::Binary(Metrics::compute(y, &p))
            }
            Head::Softmax { classes } => {
                let p: Vec<Vec<f64>> = predictions.rows().into_iter().map(|r| r.to_vec()).collect();
                Evaluation::Multiclass(MulticlassMetrics::compute(y, &p, classes))
            }
            Head::Squared => {
                let p: Vec<f64> = predictions.column(0).to_vec();
                Evaluation::Regression(RegressionMetrics::compute(y, &p))
            }
        }
    }

    /// The task's main figure: accuracy, or R².
    pub fn score(&self) -> f64 {
        match self {
            Evaluation::Binary(m) => m.accuracy,
            Evaluation::Multiclass(m) => m.accuracy,
            Evaluation::Regression(m) => m.r2,
        }
    }

    /// "accuracy" or "R²".
    pub fn score_name(&self) -> &'static str {
        match self {
            Evaluation::Regression(_) => "R²",
            _ => "accuracy",
        }
    }

    /// Log-loss for classification, RMSE for regression.
    pub fn loss(&self) -> f64 {
        match self {
            Evaluation::Binary(m) => m.log_loss,
            Evaluation::Multiclass(m) => m.log_loss,
            Evaluation::Regression(m) => m.rmse,
        }
    }

    pub fn rows(&self) -> usize {
        match self {
            Evaluation::Binary(m) => m.rows,
            Evaluation::Multiclass(m) => m.rows,
            Evaluation::Regression(m) => m.rows,
        }
    }

    /// One line: "accuracy 0.9735, F1 0.9639, AUC 0.9950, log-loss 0.0812".
    pub fn summary(&self) -> String {
        match self {
            Evaluation::Binary(m) => format!(
                "accuracy {:.4}, precision {:.4}, recall {:.4}, F1 {:.4}, AUC {}, log-loss {:.4}",
                m.accuracy,
                m.precision,
                m.recall,
                m.f1,
                m.roc_auc.map_or("n/a".to_string(), |a| format!("{a:.4}")),
                m.log_loss
            ),
            Evaluation::Multiclass(m) => format!(
                "accuracy {:.4}, macro F1 {:.4}, weighted F1 {:.4}, log-loss {:.4}",
                m.accuracy, m.macro_f1, m.weighted_f1, m.log_loss
            ),
            Evaluation::Regression(m) => format!(
                "R² {:.4}, RMSE {:.4}, MAE {:.4} (RMSE {:.4} standard deviations)",
                m.r2, m.rmse, m.mae, m.rmse_std
            ),
        }
    }

    pub fn binary(&self) -> Option<&Metrics> {
        match self {
            Evaluation::Binary(m) => Some(m),
            _ => None,
        }
    }
}
