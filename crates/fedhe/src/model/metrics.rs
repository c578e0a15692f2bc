//! Classification metrics at a 0.5 threshold, plus ROC curve and AUC.

use serde::{Deserialize, Serialize};

/// Counts of predicted vs actual classes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    pub tn: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
    pub tp: u64,
}

/// The usual binary-classification figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub rows: usize,
    pub accuracy: f64,
    /// tp / (tp + fp); 0 when nothing is predicted positive.
    pub precision: f64,
    /// tp / (tp + fn); 0 when there are no positives.
    pub recall: f64,
    pub f1: f64,
    /// `None` when only one class is present.
    pub roc_auc: Option<f64>,
    /// Mean log-loss with probabilities clipped to [1e-15, 1 - 1e-15].
    pub log_loss: f64,
    pub confusion: ConfusionMatrix,
}

impl Metrics {
    /// Metrics of probabilities `probs` against 0/1 labels `y`.
    pub fn compute(y: &[f64], probs: &[f64]) -> Metrics {
        let mut c = ConfusionMatrix::default();
        let mut loss = 0.0;
        for (&t, &p) in y.iter().zip(probs) {
            let pos = t == 1.0;
            match (p >= 0.5, pos) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, true) => c.fn_ += 1,
                (false, false) => c.tn += 1,
            }
            let q = p.clamp(1e-15, 1.0 - 1e-15);
            loss -= if pos { q.ln() } else { (1.0 - q).ln() };
        }
        let rows = y.len().min(probs.len());
        Metrics::from_counts(c, rows, loss, roc_auc(y, probs))
    }

    /// The figures from the confusion counts over `rows` rows, the summed
    /// log-loss and the AUC (as a federation's pooled sums give them).
    pub fn from_counts(
        c: ConfusionMatrix,
        rows: usize,
        loss_sum: f64,
        auc: Option<f64>,
    ) -> Metrics {
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let precision = ratio(c.tp, c.tp + c.fp);
        let recall = ratio(c.tp, c.tp + c.fn_);
        let f1 = if precision + recall == 0.0 {
            0.0
        } else {
            2.0 * precision * recall / (precision + recall)
        };
        Metrics {
            rows,
            accuracy: ratio(c.tp + c.tn, rows as u64),
            precision,
            recall,
            f1,
            roc_auc: auc,
            log_loss: if rows == 0 {
                0.0
            } else {
                loss_sum / rows as f64
            },
            confusion: c,
        }
    }
}

/// Area under the ROC curve (Mann–Whitney, ties count half); `None` when a
/// class is missing.
pub fn roc_auc(y: &[f64], probs: &[f64]) -> Option<f64> {
    let mut pairs: Vec<(f64, bool)> = probs.iter().zip(y).map(|(&p, &t)| (p, t == 1.0)).collect();
    let pos = pairs.iter().filter(|p| p.1).count() as f64;
    let neg = pairs.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return None;
    }
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i;
        while j + 1 < pairs.len() && pairs[j + 1].0 == pairs[i].0 {
            j += 1;
        }
        // Tied scores share the mean of their 1-based ranks i+1 ..= j+1.
        let rank = (i + j + 2) as f64 / 2.0;
        rank_sum += rank * pairs[i..=j].iter().filter(|p| p.1).count() as f64;
        i = j + 1;
    }
    Some((rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg))
}

/// ROC curve points (false-positive rate, true-positive rate), from (0, 0)
/// to (1, 1), one point per distinct score.
pub fn roc_curve(y: &[f64], probs: &[f64]) -> Vec<(f64, f64)> {
    let mut pairs: Vec<(f64, bool)> = probs.iter().zip(y).map(|(&p, &t)| (p, t == 1.0)).collect();
    let pos = pairs.iter().filter(|p| p.1).count().max(1) as f64;
    let neg = (pairs.len() as f64 - pairs.iter().filter(|p| p.1).count() as f64).max(1.0);
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut points = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut i = 0;
    while i < pairs.len() {
        let score = pairs[i].0;
        while i < pairs.len() && pairs[i].0 == score {
            if pairs[i].1 {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            i += 1;
        }
        points.push((fp / neg, tp / pos));
    }
    if points.last() != Some(&(1.0, 1.0)) {
        points.push((1.0, 1.0));
    }
    points
}
