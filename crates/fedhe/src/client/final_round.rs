//! The evaluation round after the last training round (with `[evaluation]`):
//! one masked, encrypted vector of this site's validation sums of the last
//! global model and, with `evaluation.test`, its test sums of the last
//! model and of the best model before it. From the sum every site learns
//! the last model's pooled validation figures, keeps the model with the
//! lowest pooled validation loss, and reads that model's pooled test
//! figures: the federated test.

use ndarray::Array2;

use super::error::{LoopError, SiteError, SumError};
use super::exchange::RoundSum;
use super::fedeval::EvalSums;
use super::report::ClientOutcome;
use super::round_loop::{Next, RoundCtx, RoundKind};
use super::training::predict_raw;
use crate::model::{Evaluation, Model};

/// Raw rows and their labels.
pub(crate) type Rows = (Array2<f64>, Vec<f64>);

/// One round: the evaluation of the run's last and best models.
pub(crate) struct FinalRound {
    outcome: ClientOutcome,
    eval: EvalSums,
    hold: Option<Rows>,
    test: Option<Rows>,
    done: bool,
}

impl FinalRound {
    /// The round after training's `outcome`, on the site's validation rows
    /// `hold` and test rows `test`.
    pub(crate) fn new(
        outcome: ClientOutcome,
        eval: EvalSums,
        hold: Option<Rows>,
        test: Option<Rows>,
    ) -> Result<Self, LoopError> {
        if test.is_some() && !eval.plan.test {
            return Err(SiteError::NoTestRound.into());
        }
        Ok(FinalRound {
            outcome,
            eval,
            hold,
            test,
            done: false,
        })
    }

    /// The best model before the last (the last one without figures yet).
    fn best_before(&self) -> Result<Box<dyn Model>, LoopError> {
        let mut m = self.outcome.model.clone();
        if let Some(p) = self
            .outcome
            .federated
            .as_ref()
            .and_then(|f| f.best_params.as_ref())
        {
            m.set_params(p)?;
        }
        Ok(m)
    }

    fn sums(
        &self,
        what: &'static str,
        model: &dyn Model,
        rows: Option<&Rows>,
    ) -> Result<Vec<f64>, LoopError> {
        let Some((x, y)) = rows else {
            return self.eval.encode(what, &[], None);
        };
        let o = &self.outcome;
        let p = predict_raw(model, &o.encoder, &o.scaler, o.target_scaling.as_ref(), x);
        self.eval.encode(what, y, Some(&p))
    }
}

impl RoundKind for FinalRound {
    type Output = ClientOutcome;

    fn next(self, ctx: &RoundCtx<'_>) -> Next<Self> {
        if self.done || ctx.cancelled() {
            let mut o = self.outcome;
            o.cancelled |= !self.done;
            Next::Done(o)
        } else {
            Next::Round(self)
        }
    }

    fn len(&self) -> usize {
        self.eval.plan.final_len(self.eval.head)
    }

    fn build(&mut self, _ctx: &mut RoundCtx<'_>) -> Result<Vec<f64>, LoopError> {
        let mut v = self.sums("validation", &*self.outcome.model, self.hold.as_ref())?;
        if self.eval.plan.test {
            v.extend(self.sums("test", &*self.outcome.model, self.test.as_ref())?);
            let best = self.best_before()?;
            v.extend(self.sums("test", &*best, self.test.as_ref())?);
        }
        Ok(v)
    }

    fn take(&mut self, sum: RoundSum, _ctx: &mut RoundCtx<'_>) -> Result<(), LoopError> {
        let n = self.eval.len();
        if sum.values.len() != self.len() {
            return Err(SumError::EvaluationLength {
                got: sum.values.len(),
                want: self.len(),
            }
            .into());
        }
        let best_before = self.best_before()?;
        let last_params = self.outcome.model.params().to_vec();
        let decode = |i: usize| self.eval.decode(&sum.values[i * n..(i + 1) * n]);
        let (validation, last_test, best_test) = if self.eval.plan.test {
            (decode(0)?, decode(1)?, decode(2)?)
        } else {
            (decode(0)?, None, None)
        };
        let Some(fed) = self.outcome.federated.as_mut() else {
            self.done = true;
            return Ok(());
        };
        let last = fed.last_round;
        let last_is_best = match validation {
            Some(e) => fed.record(last, e, &last_params),
            // No site held rows out: the last model is kept.
            None => true,
        };
        if last_is_best || fed.best_round.is_none() {
            fed.best_round = Some(last);
            fed.test = last_test;
        } else {
            fed.test = best_test;
            self.outcome.model = best_before;
        }
        self.done = true;
        Ok(())
    }
}

/// The pooled test figures' line: "federated test (model of round 7, 569
/// rows): accuracy …", the metric names of `fedhe predict`.
pub fn federated_test_line(best_round: Option<u64>, test: &Evaluation) -> String {
    let of = best_round.map_or(String::new(), |r| format!("model of round {r}, "));
    format!(
        "federated test ({of}{} rows): {}",
        test.rows(),
        test.summary()
    )
}
