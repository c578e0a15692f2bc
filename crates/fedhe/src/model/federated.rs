//! What encrypted federated evaluation told every site of a run: the
//! pooled validation figures of each global model, the best round, early
//! stopping and the federated test. The same at every site, since they come
//! from the same sums; recorded in the model file's provenance.

use serde::{Deserialize, Serialize};

use super::Evaluation;

/// What encrypted federated evaluation told every site: the same figures at
/// every site, since they come from the same sums.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FederatedFigures {
    /// Pooled validation figures per global model: `(m, figures)` for the
    /// model after training round `m` (0: the initial model).
    pub validation: Vec<(u64, Evaluation)>,
    /// The model with the lowest pooled validation loss, the one kept.
    pub best_round: Option<u64>,
    /// Early stopping: the training round after which training stopped.
    pub stopped_after: Option<u64>,
    /// The last global model's round (the plan's last, or where it stopped).
    pub last_round: u64,
    /// Pooled test figures of the kept model (with `evaluation.test`).
    pub test: Option<Evaluation>,
    /// Parameters of the best model seen so far.
    #[serde(skip)]
    pub best_params: Option<Vec<f64>>,
}

impl FederatedFigures {
    /// The pooled validation figures of model `m`.
    pub fn validation_of(&self, m: u64) -> Option<&Evaluation> {
        self.validation
            .iter()
            .find(|(r, _)| *r == m)
            .map(|(_, e)| e)
    }

    /// Records model `m`'s figures with its parameters; true if it is the
    /// best so far (strictly lower validation loss).
    pub fn record(&mut self, m: u64, e: Evaluation, params: &[f64]) -> bool {
        let best = self
            .best_round
            .and_then(|b| self.validation_of(b))
            .map(Evaluation::loss);
        let better = best.is_none_or(|l| e.loss() < l);
        self.validation.push((m, e));
        if better {
            self.best_round = Some(m);
            self.best_params = Some(params.to_vec());
        }
        better
    }

    /// Rounds since the best model (for early stopping), at model `m`.
    pub fn since_best(&self, m: u64) -> u64 {
        self.best_round.map_or(0, |b| m.saturating_sub(b))
    }
}
