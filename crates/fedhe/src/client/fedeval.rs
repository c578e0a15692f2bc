//! Encrypted federated evaluation: a site's evaluation sums of a model on
//! its rows (counts, histograms and limb-encoded sums, laid out as
//! [`FedEvaluation::block_len`] says), and the pooled figures read back from
//! the federation's sum of them. The sums travel in the same masked,
//! encrypted update as everything else, so nobody reads one site's own.
//!
//! - binary: `[tp, fp, fn, tn]`, the log-loss sum (limbs), the positives'
//!   then the negatives' score histogram (`auc_bins` bins of equal width
//!   over 0..1); the AUC is Mann–Whitney's over the bins, pairs in one bin
//!   counting half;
//! - multi-class: the K×K confusion counts (actual-major), the log-loss sum;
//! - regression: the row count, then Σr, Σr², Σ|r|, Σy, Σy² (r = prediction
//!   − target, in the target's unit).
//!
//! Counts are whole numbers, each within the key's per-site bound, so that
//! they add exactly; sums are limb-encoded (see [`super::limbs`]).

use ndarray::Array2;

use crate::model::{
    ConfusionMatrix, Evaluation, Head, Metrics, MulticlassMetrics, RegressionMetrics,
};
use crate::plan::{FedEvaluation, STAT_LIMBS};

use super::error::{LoopError, SiteError, SumError};
use super::limbs::{from_limbs, to_limbs};

/// How one block of evaluation sums is laid out and encoded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EvalSums {
    pub head: Head,
    pub plan: FedEvaluation,
    pub limb_bits: i32,
    /// Largest value one site may contribute (`None`: unbounded).
    pub bound: Option<f64>,
}

impl EvalSums {
    /// Slots of one block.
    pub fn len(&self) -> usize {
        self.plan.block_len(self.head)
    }

    /// This site's sums of `predictions` (from `model::predictions`, a
    /// regression's in the target's unit) against `y`; zeros without rows.
    pub fn encode(
        &self,
        what: &'static str,
        y: &[f64],
        predictions: Option<&Array2<f64>>,
    ) -> Result<Vec<f64>, LoopError> {
        let Some(p) = predictions else {
            return Ok(vec![0.0; self.len()]);
        };
        if let Some(bound) = self.bound
            && y.len() as f64 >= bound
        {
            return Err(SiteError::EvaluationRows {
                what,
                rows: y.len(),
                bound,
            }
            .into());
        }
        let b = self.limb_bits;
        let mut out = Vec::with_capacity(self.len());
        match self.head {
            Head::Logistic => {
                let probs = p.column(0).to_vec();
                let m = Metrics::compute(y, &probs);
                let c = m.confusion;
                out.extend([c.tp, c.fp, c.fn_, c.tn].map(|v| v as f64));
                to_limbs(m.log_loss * m.rows as f64, b, &mut out);
                let bins = self.plan.auc_bins;
                let mut hist = vec![0.0; 2 * bins];
                for (&t, &q) in y.iter().zip(&probs) {
                    let bin = ((q * bins as f64).floor().max(0.0) as usize).min(bins - 1);
                    let negative = usize::from(t != 1.0);
                    hist[negative * bins + bin] += 1.0;
                }
                out.extend(hist);
            }
            Head::Softmax { classes } => {
                let rows: Vec<Vec<f64>> = p.rows().into_iter().map(|r| r.to_vec()).collect();
                let m = MulticlassMetrics::compute(y, &rows, classes);
                out.extend(m.confusion.iter().flatten().map(|&v| v as f64));
                to_limbs(m.log_loss * m.rows as f64, b, &mut out);
            }
            Head::Squared => {
                out.push(y.len() as f64);
                let mut s = [0.0; 5];
                for (&t, &q) in y.iter().zip(p.column(0)) {
                    let r = q - t;
                    s[0] += r;
                    s[1] += r * r;
                    s[2] += r.abs();
                    s[3] += t;
                    s[4] += t * t;
                }
                for v in s {
                    to_limbs(v, b, &mut out);
                }
            }
        }
        Ok(out)
    }

    /// The pooled figures of a summed block; `None` when no site had rows.
    pub fn decode(&self, block: &[f64]) -> Result<Option<Evaluation>, SumError> {
        if block.len() != self.len() {
            return Err(SumError::EvaluationLength {
                got: block.len(),
                want: self.len(),
            });
        }
        let b = self.limb_bits;
        let limbs = |at: usize| from_limbs(&block[at..at + STAT_LIMBS], b);
        Ok(match self.head {
            Head::Logistic => {
                let [tp, fp, fn_, tn] = [
                    count(block[0])?,
                    count(block[1])?,
                    count(block[2])?,
                    count(block[3])?,
                ];
                let rows = (tp + fp + fn_ + tn) as usize;
                if rows == 0 {
                    return Ok(None);
                }
                let c = ConfusionMatrix { tn, fp, fn_, tp };
                let hist = &block[4 + STAT_LIMBS..];
                let auc = histogram_auc(hist, self.plan.auc_bins)?;
                Some(Evaluation::Binary(Metrics::from_counts(
                    c,
                    rows,
                    limbs(4),
                    auc,
                )))
            }
            Head::Softmax { classes } => {
                let k = classes;
                let mut confusion = vec![vec![0u64; k]; k];
                for (i, row) in confusion.iter_mut().enumerate() {
                    for (j, v) in row.iter_mut().enumerate() {
                        *v = count(block[i * k + j])?;
                    }
                }
                let rows: u64 = confusion.iter().flatten().sum();
                if rows == 0 {
                    return Ok(None);
                }
                Some(Evaluation::Multiclass(MulticlassMetrics::from_confusion(
                    confusion,
                    rows as usize,
                    limbs(k * k),
                )))
            }
            Head::Squared => {
                let n = count(block[0])?;
                if n == 0 {
                    return Ok(None);
                }
                let at = |i: usize| limbs(1 + i * STAT_LIMBS);
                let (sse, sae, sy, syy) = (at(1), at(2), at(3), at(4));
                let nf = n as f64;
                let sst = (syy - sy * sy / nf).max(0.0);
                Some(Evaluation::Regression(RegressionMetrics::from_sums(
                    n as usize, sse, sae, sst,
                )))
            }
        })
    }
}

/// A summed count: a whole, non-negative number (the fixed-point sum of
/// whole numbers is exact; anything else is a broken sum).
fn count(v: f64) -> Result<u64, SumError> {
    let r = v.round();
    if !(r >= 0.0 && (v - r).abs() < 1e-3) {
        return Err(SumError::EvaluationCount(v));
    }
    Ok(r as u64)
}

/// Mann–Whitney's AUC over the positives' and negatives' histograms (the
/// first `bins` slots, then the next): every positive above a negative's
/// bin counts 1, in the same bin ½. `None` when a class is missing.
fn histogram_auc(hist: &[f64], bins: usize) -> Result<Option<f64>, SumError> {
    let mut pos = Vec::with_capacity(bins);
    let mut neg = Vec::with_capacity(bins);
    for i in 0..bins {
        pos.push(count(hist[i])? as f64);
        neg.push(count(hist[bins + i])? as f64);
    }
    let (p, n): (f64, f64) = (pos.iter().sum(), neg.iter().sum());
    if p == 0.0 || n == 0.0 {
        return Ok(None);
    }
    let mut below = 0.0;
    let mut wins = 0.0;
    for i in 0..bins {
        wins += pos[i] * (below + 0.5 * neg[i]);
        below += neg[i];
    }
    Ok(Some(wins / (p * n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums(head: Head) -> EvalSums {
        EvalSums {
            head,
            plan: FedEvaluation::default(),
            limb_bits: 15,
            bound: Some(32_768.0),
        }
    }

    fn add(a: &[f64], b: &[f64]) -> Vec<f64> {
        a.iter().zip(b).map(|(x, y)| x + y).collect()
    }

    #[test]
    fn two_halves_pool_to_the_figures_of_all_rows() {
        // Binary: scores spread over 0..1 with ties across the halves.
        let n = 400;
        let y: Vec<f64> = (0..n).map(|i| f64::from(u8::from(i % 3 == 0))).collect();
        let p: Vec<f64> = (0..n)
            .map(|i| ((i * 37 % 101) as f64 / 100.0 + if i % 3 == 0 { 0.3 } else { 0.0 }).min(1.0))
            .collect();
        let preds = Array2::from_shape_vec((n, 1), p.clone()).unwrap();
        let s = sums(Head::Logistic);
        let half = n / 2;
        let a = s
            .encode(
                "validation",
                &y[..half],
                Some(&preds.slice(ndarray::s![..half, ..]).to_owned()),
            )
            .unwrap();
        let b = s
            .encode(
                "validation",
                &y[half..],
                Some(&preds.slice(ndarray::s![half.., ..]).to_owned()),
            )
            .unwrap();
        let Some(Evaluation::Binary(pooled)) = s.decode(&add(&a, &b)).unwrap() else {
            panic!("no binary figures");
        };
        let all = Metrics::compute(&y, &p);
        assert_eq!(pooled.confusion, all.confusion);
        assert_eq!(pooled.accuracy, all.accuracy);
        assert_eq!(pooled.f1, all.f1);
        assert!((pooled.log_loss - all.log_loss).abs() < 1e-9);
        let (fa, ea) = (pooled.roc_auc.unwrap(), all.roc_auc.unwrap());
        assert!((fa - ea).abs() < 1e-3, "{fa} vs {ea}");

        // Regression.
        let y: Vec<f64> = (0..n).map(|i| 1000.0 + (i * 13 % 97) as f64).collect();
        let q: Vec<f64> = y
            .iter()
            .enumerate()
            .map(|(i, v)| v + (i % 7) as f64 - 3.0)
            .collect();
        let preds = Array2::from_shape_vec((n, 1), q.clone()).unwrap();
        let s = sums(Head::Squared);
        let a = s
            .encode(
                "test",
                &y[..half],
                Some(&preds.slice(ndarray::s![..half, ..]).to_owned()),
            )
            .unwrap();
        let b = s
            .encode(
                "test",
                &y[half..],
                Some(&preds.slice(ndarray::s![half.., ..]).to_owned()),
            )
            .unwrap();
        let Some(Evaluation::Regression(pooled)) = s.decode(&add(&a, &b)).unwrap() else {
            panic!("no regression figures");
        };
        let all = RegressionMetrics::compute(&y, &q);
        assert_eq!(pooled.rows, all.rows);
        for (f, e) in [
            (pooled.rmse, all.rmse),
            (pooled.mae, all.mae),
            (pooled.r2, all.r2),
        ] {
            assert!((f - e).abs() < 1e-9, "{f} vs {e}");
        }
        // No rows anywhere: no figures.
        let zeros = s.encode("test", &[], None).unwrap();
        assert_eq!(s.decode(&add(&zeros, &zeros)).unwrap(), None);
    }
}
