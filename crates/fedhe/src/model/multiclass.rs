//! Multi-class metrics: accuracy, macro and weighted F1, per-class
//! precision and recall, the K × K confusion matrix and log-loss.

use serde::{Deserialize, Serialize};

/// One class's figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassFigures {
    /// tp / (tp + fp); 0 when the class is never predicted.
    pub precision: f64,
    /// tp / (tp + fn); 0 when the class never occurs.
    pub recall: f64,
    pub f1: f64,
    /// Rows of this class.
    pub support: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MulticlassMetrics {
    pub rows: usize,
    pub accuracy: f64,
    /// Unweighted mean of the per-class F1 (classes absent from both the
    /// labels and the predictions are left out, as scikit-learn does with
    /// `labels` unset).
    pub macro_f1: f64,
    /// Mean of the per-class F1 weighted by support.
    pub weighted_f1: f64,
    /// Mean cross-entropy with probabilities clipped to [1e-15, 1].
    pub log_loss: f64,
    pub per_class: Vec<ClassFigures>,
    /// `confusion[actual][predicted]`.
    pub confusion: Vec<Vec<u64>>,
}

impl MulticlassMetrics {
    /// Metrics of class-probability rows `probs` (K per row) against class
    /// indices `y`.
    pub fn compute(y: &[f64], probs: &[Vec<f64>], classes: usize) -> MulticlassMetrics {
        let k = classes.max(1);
        let mut confusion = vec![vec![0u64; k]; k];
        let mut loss = 0.0;
        for (&t, p) in y.iter().zip(probs) {
            let actual = (t as usize).min(k - 1);
            let predicted = super::argmax(p).min(k - 1);
            confusion[actual][predicted] += 1;
            loss -= p.get(actual).copied().unwrap_or(0.0).clamp(1e-15, 1.0).ln();
        }
        let rows = y.len().min(probs.len());
        MulticlassMetrics::from_confusion(confusion, rows, loss)
    }

    /// The figures from `confusion[actual][predicted]` over `rows` rows and
    /// the summed cross-entropy (as a federation's pooled sums give them).
    pub fn from_confusion(confusion: Vec<Vec<u64>>, rows: usize, loss: f64) -> MulticlassMetrics {
        let k = confusion.len();
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let mut per_class = Vec::with_capacity(k);
        let mut correct = 0;
        for c in 0..k {
            let tp = confusion[c][c];
            correct += tp;
            let support: u64 = confusion[c].iter().sum();
            let predicted: u64 = confusion.iter().map(|r| r[c]).sum();
            let precision = ratio(tp, predicted);
            let recall = ratio(tp, support);
            let f1 = if precision + recall == 0.0 {
                0.0
            } else {
                2.0 * precision * recall / (precision + recall)
            };
            per_class.push(ClassFigures {
                precision,
                recall,
                f1,
                support,
            });
        }
        let present: Vec<(usize, &ClassFigures)> = per_class
            .iter()
            .enumerate()
            .filter(|(c, f)| f.support > 0 || confusion.iter().any(|r| r[*c] > 0))
            .collect();
        let macro_f1 = if present.is_empty() {
            0.0
        } else {
            present.iter().map(|(_, f)| f.f1).sum::<f64>() / present.len() as f64
        };
        let weighted_f1 = if rows == 0 {
            0.0
        } else {
            per_class
                .iter()
                .map(|f| f.f1 * f.support as f64)
                .sum::<f64>()
                / rows as f64
        };
        MulticlassMetrics {
            rows,
            accuracy: ratio(correct, rows as u64),
            macro_f1,
            weighted_f1,
            log_loss: if rows == 0 { 0.0 } else { loss / rows as f64 },
            per_class,
            confusion,
        }
    }
}
