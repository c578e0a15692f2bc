//! The evaluation round of a gradient-boosted trees plan (with
//! `[evaluation]`): after the last tree, one masked, encrypted vector of
//! this site's evaluation sums of the finished trees on its held-out rows
//! and, with `evaluation.test`, on its test rows (zeros for a site without
//! such rows; see [`super::fedeval`] for the sums). From the sum every site
//! reads the trees' pooled validation and test figures: the federated test.
//! The trees have no earlier model to fall back on, so there is no "best
//! model before" block as in [`super::final_round`].

use crate::model::gbdt::Ensemble;
use crate::model::{Evaluation, FederatedFigures, Head, TargetScaling};

use super::error::{LoopError, SiteError, SumError};
use super::exchange::RoundSum;
use super::fedeval::EvalSums;
use super::final_round::Rows;
use super::round_loop::{Next, RoundCtx, RoundKind};

/// One round: the finished trees on the site's validation and test rows.
pub(crate) struct TreeEvaluation<'a> {
    ensemble: &'a Ensemble,
    head: Head,
    target_scaling: Option<&'a TargetScaling>,
    eval: EvalSums,
    hold: Option<Rows>,
    test: Option<Rows>,
    /// The server round whose sums finished the trees.
    last_round: u64,
    figures: Option<FederatedFigures>,
}

impl<'a> TreeEvaluation<'a> {
    /// The round after the trees `ensemble` (finished in server round
    /// `last_round`), on this site's held-out rows `hold` and test rows
    /// `test`.
    pub(crate) fn new(
        (ensemble, target_scaling): (&'a Ensemble, Option<&'a TargetScaling>),
        eval: EvalSums,
        (hold, test): (Option<Rows>, Option<Rows>),
        last_round: u64,
    ) -> Result<Self, LoopError> {
        if test.is_some() && !eval.plan.test {
            return Err(SiteError::NoTestRound.into());
        }
        Ok(TreeEvaluation {
            ensemble,
            head: eval.head,
            target_scaling,
            eval,
            hold,
            test,
            last_round,
            figures: None,
        })
    }

    fn sums(&self, what: &'static str, rows: Option<&Rows>) -> Result<Vec<f64>, LoopError> {
        let Some((x, y)) = rows else {
            return self.eval.encode(what, &[], None);
        };
        let p = self
            .ensemble
            .predictions(self.head, self.target_scaling, x.view());
        self.eval.encode(what, y, Some(&p))
    }
}

impl RoundKind for TreeEvaluation<'_> {
    type Output = FederatedFigures;

    fn next(mut self, _ctx: &RoundCtx<'_>) -> Next<Self> {
        match self.figures.take() {
            Some(f) => Next::Done(f),
            None => Next::Round(self),
        }
    }

    fn len(&self) -> usize {
        self.eval.plan.tree_final_len(self.head)
    }

    fn build(&mut self, _ctx: &mut RoundCtx<'_>) -> Result<Vec<f64>, LoopError> {
        let mut v = self.sums("validation", self.hold.as_ref())?;
        if self.eval.plan.test {
            v.extend(self.sums("test", self.test.as_ref())?);
        }
        Ok(v)
    }

    fn take(&mut self, sum: RoundSum, _ctx: &mut RoundCtx<'_>) -> Result<(), LoopError> {
        if sum.values.len() != self.len() {
            return Err(SumError::EvaluationLength {
                got: sum.values.len(),
                want: self.len(),
            }
            .into());
        }
        let n = self.eval.len();
        let validation: Option<Evaluation> = self.eval.decode(&sum.values[..n])?;
        let test = if self.eval.plan.test {
            self.eval.decode(&sum.values[n..2 * n])?
        } else {
            None
        };
        let last = self.last_round;
        self.figures = Some(FederatedFigures {
            validation: validation.map(|e| vec![(last, e)]).unwrap_or_default(),
            best_round: Some(last),
            stopped_after: None,
            last_round: last,
            test,
            best_params: None,
        });
        Ok(())
    }
}
