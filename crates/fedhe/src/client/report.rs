//! What a client's run reports: progress events while it runs
//! ([`ClientEvent`]), each finished round ([`ClientRound`], shown through
//! [`RoundFigures`]) and the result ([`ClientOutcome`]).

use serde::{Deserialize, Serialize};

use crate::data::{Encoder, Standardizer};
use crate::model::{Model, TargetScaling};

use super::exchange::{ExchangeCost, RoundSum};

/// Events for progress displays (the GUI draws live plots from them).
#[derive(Debug, Clone)]
pub enum ClientEvent {
    /// Federated standardization done.
    Standardized {
        /// The preprocessing fitted on the federation's statistics.
        encoder: Encoder,
        scaler: Standardizer,
        /// A regression target's federated scaling.
        target_scaling: Option<TargetScaling>,
        global_rows: f64,
        cost: ExchangeCost,
    },
    /// One local epoch of a training round.
    Epoch(EpochPoint),
    /// A training round finished: the new global model is known.
    Round(ClientRound),
    /// Gradient-boosted trees: the bins round, or one boosting iteration
    /// (its trees: one per class), finished.
    Tree(TreeRecord),
}

/// One boosting iteration of a gradient-boosted trees run at one site (or
/// the bins round before them, `iteration` 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeRecord {
    /// Boosting iteration, 1-based; 0 for the bins round.
    pub iteration: u64,
    /// Of the plan's iterations.
    pub iterations: u64,
    /// Server rounds the iteration took (its levels).
    pub rounds: u64,
    /// Values this site uploaded (limbs included, the sum tag not).
    pub values: usize,
    /// Wall time of the iteration at this site, in milliseconds.
    pub ms: f64,
    /// The exchanges' costs, summed over the rounds.
    pub cost: ExchangeCost,
    /// Whether this site's updates were masked.
    pub masked: bool,
    /// The levels the iteration's trees kept when a level's sum held other
    /// sites than its roots' (that sum left unread, the trees closed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<u32>,
    /// Sites summed in the roots but not in the level that closed it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left: Vec<String>,
    /// Sites summed in the level that closed it but not in the roots.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub joined: Vec<String>,
}

impl TreeRecord {
    /// Iteration 1 of `iterations`, nothing spent yet.
    pub fn first(iterations: u64) -> TreeRecord {
        TreeRecord {
            iteration: 1,
            iterations,
            rounds: 0,
            values: 0,
            ms: 0.0,
            cost: Default::default(),
            masked: false,
            closed_at: None,
            left: Vec::new(),
            joined: Vec::new(),
        }
    }

    /// "closed at depth 2: its next level summed other sites (without d)",
    /// when the iteration was closed early.
    pub fn closed_note(&self) -> Option<String> {
        let depth = self.closed_at?;
        let mut who = Vec::new();
        if !self.left.is_empty() {
            who.push(format!("without {}", self.left.join(", ")));
        }
        if !self.joined.is_empty() {
            who.push(format!("with {}", self.joined.join(", ")));
        }
        Some(format!(
            "closed at depth {depth}: its next level summed other sites ({})",
            who.join("; ")
        ))
    }
}

/// One local epoch, whatever produced it (local training, the federated
/// client loop, a simulated client): what every progress display plots.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochPoint {
    /// Training round (1-based); 0 for plain local training.
    pub round: u64,
    /// Epoch within the round (1-based).
    pub epoch: usize,
    /// Mean training loss (without the L2 term).
    pub loss: f64,
    /// The task's main figure on the training rows: accuracy, or R².
    pub score: f64,
}

impl EpochPoint {
    /// The model's figures of one epoch, in round `round`.
    pub fn of(round: u64, s: &crate::model::EpochStats) -> EpochPoint {
        EpochPoint {
            round,
            epoch: s.epoch,
            loss: s.loss,
            score: s.score,
        }
    }
}

/// What a progress display shows of a finished round, whoever reports it:
/// one client ([`ClientRound`]) or a whole simulation
/// ([`RoundRecord`](crate::federation::RoundRecord)).
pub trait RoundFigures {
    /// Training round, 1-based.
    fn round(&self) -> u64;
    fn contributors(&self) -> u32;
    /// Loss (log-loss, or RMSE in the target's unit) and the task's main
    /// figure (accuracy, or R²) of the new global model on held-out rows (a
    /// site's validation rows, or a simulation's test split), when known.
    fn loss(&self) -> Option<f64>;
    fn score(&self) -> Option<f64>;
    /// Ciphertext bytes sent and received.
    fn bytes(&self) -> (u64, u64);
    /// Encryption and decryption time (per client), aggregation time on the
    /// server (0 when unknown), in milliseconds.
    fn times_ms(&self) -> (f64, f64, f64);
    /// With DP-SGD: ε spent on the rows so far.
    fn epsilon(&self) -> Option<f64> {
        None
    }
}

impl RoundFigures for ClientRound {
    fn round(&self) -> u64 {
        self.round
    }
    fn contributors(&self) -> u32 {
        self.contributors
    }
    fn loss(&self) -> Option<f64> {
        self.validation_loss
    }
    fn score(&self) -> Option<f64> {
        self.validation_score
    }
    fn bytes(&self) -> (u64, u64) {
        (self.cost.bytes_up, self.cost.bytes_down)
    }
    fn times_ms(&self) -> (f64, f64, f64) {
        (self.cost.encrypt_ms, self.cost.decrypt_ms, 0.0)
    }
    fn epsilon(&self) -> Option<f64> {
        self.epsilon
    }
}

/// One training round as seen by one client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientRound {
    /// Training round, 1-based (server round = this + 1).
    pub round: u64,
    pub contributors: u32,
    pub total_weight: f64,
    /// Last local epoch's training loss.
    pub local_loss: Option<f64>,
    /// Global parameters after this round: weights then bias.
    pub global_params: Vec<f64>,
    /// Whether this client's update is in this round's sum (false when the
    /// round had closed before it resumed or joined).
    pub contributed: bool,
    /// Ids of the clients whose updates the sum holds (empty in plaintext).
    pub counted: Vec<String>,
    /// Validation loss (log-loss, or RMSE) and score (accuracy, or R²) of
    /// the global model, if rows were held out.
    pub validation_loss: Option<f64>,
    pub validation_score: Option<f64>,
    pub cost: ExchangeCost,
    /// Whether this site's update was masked (pairwise masks).
    #[serde(default)]
    pub masked: bool,
    /// ε this site has spent on its rows so far (with DP-SGD).
    #[serde(default)]
    pub epsilon: Option<f64>,
    /// With `[evaluation]`: the federation's pooled validation figures of
    /// the global model this round started from (round `round − 1`'s, the
    /// initial model's in round 1), read from the round's sum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federated_validation: Option<Box<crate::model::Evaluation>>,
}

impl ClientRound {
    /// Training round `round` as its published mean shows it; local figures
    /// (loss, validation, ε) are added by the caller.
    pub(crate) fn of(
        round: u64,
        sum: RoundSum,
        global_params: Vec<f64>,
        total_weight: f64,
    ) -> ClientRound {
        ClientRound {
            round,
            contributors: sum.contributors,
            total_weight,
            local_loss: None,
            global_params,
            contributed: sum.contributed,
            counted: sum.counted,
            validation_loss: None,
            validation_score: None,
            cost: sum.cost,
            masked: sum.masked,
            epsilon: None,
            federated_validation: None,
        }
    }
}

/// Result of a client's run.
#[derive(Debug, Clone)]
pub struct ClientOutcome {
    pub model: Box<dyn Model>,
    /// DP-SGD's spending on this site's rows, when on.
    pub privacy: Option<crate::privacy::PrivacyRecord>,
    /// Why training stopped before the plan's last round (the privacy budget).
    pub stopped: Option<String>,
    /// The preprocessing every site fitted on the federation's statistics.
    pub encoder: Encoder,
    pub scaler: Standardizer,
    /// A regression target's federated scaling.
    pub target_scaling: Option<TargetScaling>,
    /// Training rows of the whole federation (from the statistics round).
    pub global_rows: f64,
    pub rounds: Vec<ClientRound>,
    pub cancelled: bool,
    /// With `[evaluation]`: the federation's pooled figures.
    pub federated: Option<crate::model::FederatedFigures>,
}
