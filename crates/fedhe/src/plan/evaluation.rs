//! `[evaluation]`: encrypted federated evaluation (validation sums in every
//! training round, a final round that evaluates the last global model, a
//! federated test) and early stopping. The sums' slot counts live here, so
//! that the clients and the aggregator agree on every round's length.

use serde::{Deserialize, Serialize};

use super::STAT_LIMBS;
use crate::model::Head;

/// Bins of a binary model's score histograms unless the plan says.
pub const DEFAULT_AUC_BINS: usize = 1024;

/// The plan's `[evaluation]` section. Present: every training round's
/// update carries the site's validation sums of the global model it
/// started from, and one more round after the last training round carries
/// the last model's (and, with `test`, the test rows' sums).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FedEvaluation {
    /// Bins of the score histograms (positives and negatives) a binary
    /// model's AUC is read from.
    #[serde(default = "default_bins")]
    pub auc_bins: usize,
    /// The final round also carries every site's test sums (a site without
    /// test rows contributes zeros).
    #[serde(default, skip_serializing_if = "is_false")]
    pub test: bool,
    /// Stop training once the global validation loss has not improved for
    /// `patience` rounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stopping: Option<EarlyStopping>,
}

/// `early_stopping = { patience = N }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStopping {
    pub patience: u64,
}

fn default_bins() -> usize {
    DEFAULT_AUC_BINS
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Default for FedEvaluation {
    fn default() -> Self {
        FedEvaluation {
            auc_bins: DEFAULT_AUC_BINS,
            test: false,
            early_stopping: None,
        }
    }
}

impl FedEvaluation {
    /// Slots of one block of evaluation sums for a model with `head`:
    /// binary: the confusion counts (4), the log-loss sum (limbs) and the
    /// positives' and negatives' score histograms; multi-class: the K×K
    /// confusion counts and the log-loss sum (limbs); regression: the row
    /// count and Σr, Σr², Σ|r|, Σy, Σy² (limbs each).
    pub fn block_len(&self, head: Head) -> usize {
        match head {
            Head::Logistic => 4 + STAT_LIMBS + 2 * self.auc_bins,
            Head::Softmax { classes } => classes * classes + STAT_LIMBS,
            Head::Squared => 1 + 5 * STAT_LIMBS,
        }
    }

    /// Slots of the final round: the last model's validation sums, then
    /// (with `test`) its test sums and those of the best model before it.
    pub fn final_len(&self, head: Head) -> usize {
        let tests = if self.test { 2 } else { 0 };
        (1 + tests) * self.block_len(head)
    }

    /// Slots of a gradient-boosted trees plan's evaluation round (after the
    /// last tree): the trees' validation sums, then (with `test`) their
    /// test sums. The trees have no earlier model to fall back on, so no
    /// second test block.
    pub fn tree_final_len(&self, head: Head) -> usize {
        (1 + usize::from(self.test)) * self.block_len(head)
    }

    /// The refusal of a bad setting: (field, why).
    pub(crate) fn check(&self) -> Result<(), (&'static str, String)> {
        if !(2..=65_536).contains(&self.auc_bins) {
            return Err((
                "evaluation.auc_bins",
                format!("{} is not from 2 to 65536", self.auc_bins),
            ));
        }
        if self.early_stopping.is_some_and(|e| e.patience == 0) {
            return Err((
                "evaluation.early_stopping.patience",
                "must be at least 1 round".into(),
            ));
        }
        Ok(())
    }
}
