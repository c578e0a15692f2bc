//! The per-round client loop: federated standardization, then for each round
//! start from the global model, train locally, contribute the sample-weighted
//! update, receive the weighted mean, evaluate on the local validation rows.
//!
//! The loop talks to the federation through [`Exchange`]: [`HeExchange`]
//! encrypts, uploads to the aggregator and decrypts the published sum; the
//! plaintext FedAvg baseline of `federation` uses the same loop with an
//! in-memory exchange, so both runs do exactly the same arithmetic apart from
//! the encryption.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ndarray::Array2;
use serde::{Deserialize, Serialize};

use crate::crypto::{self, Accumulator, CryptoError, SecretKey};
use crate::data::{Dataset, Encoder, MissingPolicy, RawStats, Standardizer, TaskKind};
use crate::model::{Architecture, Evaluation, Head, Model, ModelError, TargetScaling, TrainConfig};
use crate::plan::{RoundLayout, RoundPhase};
use crate::protocol::{RoundInfo, RoundState};

use super::api::{AggregatorClient, ClientError};

pub use crate::plan::STAT_LIMBS;
/// Default limb size for exchanges without a fixed-point budget (plaintext).
pub const LIMB_BITS: i32 = 15;

/// Limb size for a key: one bit below the per-client budget of
/// `|weight × value|` (`2^(client_budget - scale_bits)`), so every limb
/// encodes without overflow and the lowest keeps `scale_bits` fraction bits.
pub fn limb_bits_for(params: crate::crypto::ParamSet, scale_bits: u8, max_clients: u32) -> i32 {
    let budget = i64::from(params.client_budget_log2(max_clients)) - i64::from(scale_bits);
    i32::try_from(budget - 1).unwrap_or(1).clamp(1, 30)
}

/// Training rows per unit of a site's FedAvg share, from the federation's
/// row count `global_rows`: the power of two that puts the summed share in
/// 256..512. A site uploads `share × parameters` and `share`, where
/// `share = rows / unit`, so that the mean of the first over the mean of the
/// second is exactly the row-weighted mean (FedAvg), whatever the sites'
/// sizes. Because a share is at most 512 (see [`site_share`]),
/// `|share × parameter|` stays within a key's fixed-point budget for
/// parameters up to 2^(budget − scale − 9) (128 with the default key) at any
/// site size, and the shares' sum keeps the rounding of the mean below
/// clients × 2^-(scale + 9).
pub fn weight_unit(global_rows: f64) -> f64 {
    let rows = global_rows.max(1.0);
    (rows.log2().ceil() - 9.0).exp2()
}

/// Largest share a site uploads: a site that joined after the statistics
/// round (its rows are not in the federation's count) is capped here, so
/// that it weighs at most as a 512-unit site instead of overflowing.
pub const MAX_SHARE: f64 = 512.0;

/// A site's FedAvg share: `rows` in units of [`weight_unit`], at most
/// [`MAX_SHARE`].
pub fn site_share(rows: usize, unit: f64) -> f64 {
    (rows as f64 / unit).min(MAX_SHARE)
}

/// Refuses statistics beyond what [`STAT_LIMBS`] limbs of `limb_bits` hold
/// (a sum of squares of very large values), naming the column.
fn check_statistics_range(
    values: &[f64],
    columns: &[crate::data::RawColumn],
    limb_bits: i32,
) -> Result<(), LoopError> {
    let limit = f64::powi(2.0, limb_bits * (STAT_LIMBS as i32 - 1));
    let Some(i) = values.iter().position(|v| v.is_nan() || v.abs() >= limit) else {
        return Ok(());
    };
    // Which column the value belongs to, in `RawStats::to_vec`'s layout.
    let mut at = 0;
    let mut what = "the target's sum or sum of squares".to_string();
    for c in columns {
        let n = match c {
            crate::data::RawColumn::Numeric { .. } => 3,
            crate::data::RawColumn::Categorical { categories, .. } => categories.len() + 2,
        };
        if i < at + n {
            what = format!("column {:?}", c.name());
            break;
        }
        at += n;
    }
    Err(LoopError::Other(format!(
        "the statistics of {what} reach {:e}, beyond the ±2^{} the statistics round can add \
         without overflow; express the column in a larger unit (thousands instead of units)",
        values[i],
        limb_bits * (STAT_LIMBS as i32 - 1)
    )))
}

/// The FedAvg mean of a training round's sum: the parameters' weighted sum
/// over the shares' sum. Returns the parameters and the summed share.
fn fedavg(mean: &RoundMean, params: usize) -> Result<(Vec<f64>, f64), LoopError> {
    if mean.values.len() != params + 1 {
        return Err(LoopError::Other(format!(
            "the round's sum holds {} values; the model has {params} parameters and a share",
            mean.values.len()
        )));
    }
    let total = mean.values[params];
    if !(total.is_finite() && total > 0.0) {
        return Err(LoopError::Other(format!(
            "the round's summed share is {total}; no site contributed rows"
        )));
    }
    Ok((
        mean.values[..params].iter().map(|v| v / total).collect(),
        total * mean.total_weight,
    ))
}

/// Splits `value` into [`STAT_LIMBS`] base-2^b digits of `value * 2^b`
/// (`b = limb_bits`): the top digits are integers, the lowest keeps the
/// fraction. Exact in f64; the range is |value| < 2^(b·(STAT_LIMBS-1)). The
/// encoder rounds the lowest digit to `2^-scale_bits`, so a sum of digits
/// recombines to the sum of values within `2^-(b+scale_bits+1)` per
/// contributor (Standard64: 2^-32; Compact32: 2^-18).
pub fn to_limbs(value: f64, limb_bits: i32, out: &mut Vec<f64>) {
    let base = f64::powi(2.0, limb_bits);
    let mut rest = value * base;
    let mut digits = [0.0; STAT_LIMBS];
    for l in (1..STAT_LIMBS).rev() {
        let unit = base.powi(l as i32);
        let d = (rest / unit).trunc();
        digits[l] = d;
        rest -= d * unit;
    }
    digits[0] = rest;
    out.extend_from_slice(&digits);
}

/// Inverse of [`to_limbs`] (also for summed digits).
pub fn from_limbs(limbs: &[f64], limb_bits: i32) -> f64 {
    let base = f64::powi(2.0, limb_bits);
    let mut v = 0.0;
    for (l, d) in limbs.iter().enumerate() {
        v += d * base.powi(l as i32);
    }
    v / base
}

/// `values` as [`STAT_LIMBS`] limbs each (see [`to_limbs`]).
pub fn encode_limbs(values: &[f64], limb_bits: i32) -> Vec<f64> {
    let mut out = Vec::with_capacity(values.len() * STAT_LIMBS);
    for v in values {
        to_limbs(*v, limb_bits, &mut out);
    }
    out
}

/// Inverse of [`encode_limbs`] (also for summed limbs).
pub fn decode_limbs(limbs: &[f64], limb_bits: i32) -> Result<Vec<f64>, String> {
    if !limbs.len().is_multiple_of(STAT_LIMBS) {
        return Err(format!(
            "the statistics hold {} values, not a multiple of {STAT_LIMBS}",
            limbs.len()
        ));
    }
    Ok(limbs
        .chunks(STAT_LIMBS)
        .map(|c| from_limbs(c, limb_bits))
        .collect())
}

impl From<CryptoError> for LoopError {
    fn from(e: CryptoError) -> Self {
        LoopError::Crypto(e)
    }
}

impl From<ModelError> for LoopError {
    fn from(e: ModelError) -> Self {
        LoopError::Model(Box::new(e))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("encryption: {0}")]
    Crypto(CryptoError),
    #[error("training: {0}")]
    Model(Box<ModelError>),
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Other(String),
}

/// What one exchange cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ExchangeCost {
    pub encrypt_ms: f64,
    pub decrypt_ms: f64,
    pub wait_ms: f64,
    pub bytes_up: u64,
    pub bytes_down: u64,
}

/// The weighted mean of a round.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundMean {
    pub values: Vec<f64>,
    pub total_weight: f64,
    pub contributors: u32,
    /// False if this client could not contribute (joined after the round
    /// closed, or resumed after it).
    pub contributed: bool,
    /// Ids of the clients whose updates the sum holds (empty in plaintext).
    pub counted: Vec<String>,
    pub cost: ExchangeCost,
    /// Whether this client's update was masked (pairwise masks).
    pub masked: bool,
}

/// One contribution per round; blocks until the round's mean is known.
pub trait Exchange {
    /// Limb size for the standardization vector (see [`limb_bits_for`]).
    fn limb_bits(&self) -> i32 {
        LIMB_BITS
    }

    fn exchange(
        &mut self,
        round: u64,
        values: &[f64],
        weight: f64,
        cancel: &AtomicBool,
    ) -> Result<RoundMean, LoopError>;

    /// The mean of `round` if it was already published (a client resuming
    /// after a restart, or joining late): the loop then skips its local
    /// work for that round. `len` is the vector length.
    fn published(&mut self, _round: u64, _len: usize) -> Result<Option<RoundMean>, LoopError> {
        Ok(None)
    }
}

/// Called while a client waits for a round to close, whenever who has
/// submitted changes.
pub type WaitNotifier = Arc<dyn Fn(&RoundInfo) + Send + Sync>;

/// Told a note in words (which identities a client masks with).
pub type NoteNotifier = Arc<dyn Fn(&str) + Send + Sync>;

/// The encrypted exchange through an aggregator.
pub struct HeExchange {
    pub api: AggregatorClient,
    pub key: Arc<SecretKey>,
    /// Longest wait for a round to close.
    pub round_timeout: Duration,
    /// Told who the round still waits for.
    pub on_wait: Option<WaitNotifier>,
    /// Pairwise masks (a plan with masks on): who this client is.
    pub masking: Option<super::masking::Masking>,
    /// Partners' identities, checked once per registration.
    pub(crate) identities: super::masking::Identities,
    /// Told, in words, which identities this client masks with.
    pub on_note: Option<NoteNotifier>,
}

impl HeExchange {
    /// An exchange through `api` with `key`, without masks.
    pub fn new(api: AggregatorClient, key: Arc<SecretKey>, round_timeout: Duration) -> Self {
        HeExchange {
            api,
            key,
            round_timeout,
            on_wait: None,
            masking: None,
            identities: Default::default(),
            on_note: None,
        }
    }

    /// Waits until `round` closes, telling `on_wait` who is missing.
    fn wait_closed(&self, round: u64, cancel: &AtomicBool) -> Result<RoundInfo, LoopError> {
        self.wait_round(round, None, cancel)
    }

    /// Waits until `round` closes or (with `attempt`) moves to another
    /// attempt, telling `on_wait` who is missing.
    fn wait_round(
        &self,
        round: u64,
        attempt: Option<u32>,
        cancel: &AtomicBool,
    ) -> Result<RoundInfo, LoopError> {
        let start = Instant::now();
        let mut last_seen: Option<(Vec<String>, Vec<String>)> = None;
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(LoopError::Cancelled);
            }
            let left = self.round_timeout.saturating_sub(start.elapsed());
            if left.is_zero() {
                return Err(LoopError::Client(ClientError::Timeout(format!(
                    "round {round} did not close within {} s",
                    self.round_timeout.as_secs()
                ))));
            }
            // Short polls so that cancellation stays responsive.
            let info = self
                .api
                .round(round, Some(left.min(Duration::from_millis(500))))?;
            if info.state == RoundState::Closed || attempt.is_some_and(|a| a != info.attempt) {
                return Ok(info);
            }
            let seen = (info.submitted.clone(), info.missing.clone());
            if last_seen.as_ref() != Some(&seen) {
                if let Some(notify) = &self.on_wait {
                    notify(&info);
                }
                last_seen = Some(seen);
            }
        }
    }

    fn decrypt_published(
        &self,
        round: u64,
        len: usize,
        mut cost: ExchangeCost,
        contributed: bool,
        mut counted: Vec<String>,
    ) -> Result<RoundMean, LoopError> {
        counted.sort();
        let (sum, contributors) = self.api.download_sum(round)?;
        cost.bytes_down = sum.len() as u64;
        let t = Instant::now();
        let acc = Accumulator::from_bytes(&sum, len)?;
        drop(sum);
        let mean = crypto::decrypt_mean(&self.key, &acc)?;
        cost.decrypt_ms = ms(t);
        if mean.contributors != contributors {
            return Err(LoopError::Other(format!(
                "round {round}: the aggregator announced {contributors} contributors, the sum holds {}",
                mean.contributors
            )));
        }
        Ok(RoundMean {
            values: mean.values,
            total_weight: mean.total_weight,
            contributors: mean.contributors,
            contributed,
            counted,
            cost,
            masked: false,
        })
    }
}

impl Exchange for HeExchange {
    fn limb_bits(&self) -> i32 {
        limb_bits_for(
            self.key.params(),
            self.key.scale_bits(),
            self.key.max_clients(),
        )
    }

    fn exchange(
        &mut self,
        round: u64,
        values: &[f64],
        weight: f64,
        cancel: &AtomicBool,
    ) -> Result<RoundMean, LoopError> {
        if self.masking.is_some() {
            return self.masked_exchange(round, values, weight, cancel);
        }
        let mut cost = ExchangeCost::default();
        let t = Instant::now();
        let update = crypto::encrypt_weighted(&self.key, values, weight)?.bound_to(round, 0);
        let bytes = update.to_bytes();
        cost.encrypt_ms = ms(t);
        let t = Instant::now();
        let contributed = match self.api.upload(round, &bytes) {
            Ok(_) => true,
            // Resumed after a restart: our update of this round is in.
            Err(e) if e.code() == Some("duplicate_submission") => true,
            // Joined late: the round closed without us; use its result.
            Err(e) if e.code() == Some("wrong_round") => false,
            Err(e) => return Err(e.into()),
        };
        if contributed {
            cost.bytes_up = bytes.len() as u64;
        }
        drop(bytes);
        let info = self.wait_closed(round, cancel)?;
        cost.wait_ms = ms(t);
        self.decrypt_published(round, values.len(), cost, contributed, info.submitted)
    }

    fn published(&mut self, round: u64, len: usize) -> Result<Option<RoundMean>, LoopError> {
        let info = self.api.round(round, None)?;
        if info.state != RoundState::Closed {
            return Ok(None);
        }
        self.decrypt_published(round, len, ExchangeCost::default(), false, info.submitted)
            .map(Some)
    }
}

impl HeExchange {
    /// One round with pairwise masks: per attempt, announce a key, wait for
    /// the roster, mask, upload, wait; an attempt that loses a member is
    /// redone with the same values and fresh masks.
    fn masked_exchange(
        &mut self,
        round: u64,
        values: &[f64],
        weight: f64,
        cancel: &AtomicBool,
    ) -> Result<RoundMean, LoopError> {
        use super::masking::{KeyPhase, key_phase};
        let Some(me) = self.masking.clone() else {
            return Err(LoopError::Other("no masking identity".into()));
        };
        let public = self.key.public();
        let mut cost = ExchangeCost::default();
        let t = Instant::now();
        let mut masked = false;
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(LoopError::Cancelled);
            }
            let info = self.api.round(round, None)?;
            if info.state == RoundState::Closed {
                cost.wait_ms = ms(t);
                let contributed = info.submitted.contains(&me.id);
                let mean =
                    self.decrypt_published(round, values.len(), cost, contributed, info.submitted)?;
                return Ok(RoundMean {
                    masked: masked && contributed,
                    ..mean
                });
            }
            let attempt = info.attempt;
            if info.submitted.contains(&me.id) {
                // Resumed after a restart: our update of this attempt is in.
                self.wait_round(round, Some(attempt), cancel)?;
                continue;
            }
            let phase = key_phase(
                &self.api,
                &me,
                &mut self.identities,
                &public,
                round,
                attempt,
                self.round_timeout,
                self.on_wait.as_ref(),
                cancel,
            )?;
            let KeyPhase::Ready { masks } = phase else {
                // Not in this attempt: wait for the round or the attempt to move.
                self.wait_round(round, Some(attempt), cancel)?;
                continue;
            };
            let new = self.identities.take_new();
            if let Some(note) = &self.on_note
                && !new.is_empty()
            {
                let list: Vec<String> = new
                    .iter()
                    .map(|(id, key)| format!("{id} ({})", crate::privacy::masks::fingerprint(key)))
                    .collect();
                note(&format!(
                    "masking with the identity keys of {}",
                    list.join(", ")
                ));
            }
            let te = Instant::now();
            masked = !masks.is_empty();
            let update = crypto::encrypt_weighted_masked(&self.key, values, weight, &masks)?
                .bound_to(round, attempt);
            let bytes = update.to_bytes();
            cost.encrypt_ms += ms(te);
            match self.api.upload_for(round, Some(attempt), &bytes) {
                Ok(_) => cost.bytes_up += bytes.len() as u64,
                Err(e) if e.code() == Some("duplicate_submission") => {}
                Err(e) if matches!(e.code(), Some("wrong_round" | "wrong_attempt")) => continue,
                // Not taken in this attempt (its roster or phase moved on):
                // wait for the attempt or the round to change.
                Err(e) if e.code() == Some("conflict") => {
                    self.wait_round(round, Some(attempt), cancel)?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            drop(bytes);
            // Closed, or restarted without a member (then: mask again).
            self.wait_round(round, Some(attempt), cancel)?;
        }
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Settings of the client loop.
#[derive(Debug, Clone)]
pub struct LoopConfig {
    /// Training rounds (after standardization).
    pub rounds: u64,
    /// Local training per round; `seed` is mixed with the round number.
    pub train: TrainConfig,
    /// The model every site trains.
    pub architecture: Architecture,
    /// Seed of the initial global model (the same at every site).
    pub init_seed: u64,
    /// How missing cells are filled (the plan's preprocessing).
    pub missing: MissingPolicy,
    /// Cell texts read as missing (recorded in the model file).
    pub missing_tokens: Vec<String>,
    /// The rounds before training.
    pub layout: RoundLayout,
    /// Categorical columns whose categories the vocabulary rounds discover,
    /// and the rounds' settings.
    pub discovered: Vec<String>,
    pub vocabulary: Option<crate::plan::Vocabulary>,
    /// DP-SGD for this site's rows.
    pub dp: Option<crate::privacy::DpSettings>,
}

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
}

impl ClientRound {
    /// Training round `round` as its published mean shows it; local figures
    /// (loss, validation, ε) are added by the caller.
    fn of(round: u64, mean: RoundMean, global_params: Vec<f64>, total_weight: f64) -> ClientRound {
        ClientRound {
            round,
            contributors: mean.contributors,
            total_weight,
            local_loss: None,
            global_params,
            contributed: mean.contributed,
            counted: mean.counted,
            validation_loss: None,
            validation_score: None,
            cost: mean.cost,
            masked: mean.masked,
            epsilon: None,
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
}

/// Seed of local training in round `round`.
pub fn round_seed(seed: u64, round: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(round.wrapping_mul(0xD1B5_4A32_D192_ED03))
}

/// Runs standardization and `cfg.rounds` training rounds.
pub fn run_client_loop(
    exchange: &mut dyn Exchange,
    train: &Dataset,
    validation: Option<&Dataset>,
    cfg: &LoopConfig,
    on_event: &mut dyn FnMut(&ClientEvent),
    cancel: &AtomicBool,
) -> Result<ClientOutcome, LoopError> {
    if train.rows() == 0 {
        return Err(LoopError::Other("the local training set is empty".into()));
    }
    // Discovered categories first: every site maps its values to them.
    let mut site = train.clone();
    let mut held = validation.cloned();
    if let Some(v) = cfg.vocabulary
        && !cfg.discovered.is_empty()
    {
        let agreed = super::vocabulary::agree(exchange, &site, &cfg.discovered, v, cancel)?;
        super::vocabulary::apply(&mut site, &agreed);
        if let Some(h) = held.as_mut() {
            super::vocabulary::apply(h, &agreed);
        }
    }
    let (train, validation) = (&site, held.as_ref());
    let head = Head::for_target(&train.label);
    let regression = train.label.kind() == TaskKind::Regression;
    // Round 1: the statistics every site's preprocessing is fitted on
    // (encrypted, summed by the aggregator): numeric sums, sums of squares
    // and present counts, category counts, rows, a regression's target.
    let local = RawStats::of(&train.columns, &train.x, regression.then_some(&train.y));
    let std_round = cfg.layout.statistics_round();
    debug_assert_eq!(cfg.layout.phase(std_round), Some(RoundPhase::Standardize));
    let limb_bits = exchange.limb_bits();
    let values = local.to_vec();
    check_statistics_range(&values, &train.columns, limb_bits)?;
    let std_len = values.len() * STAT_LIMBS;
    let mean = match exchange.published(std_round, std_len)? {
        Some(m) => m,
        None => exchange.exchange(std_round, &encode_limbs(&values, limb_bits), 1.0, cancel)?,
    };
    let summed: Vec<f64> = mean.values.iter().map(|v| v * mean.total_weight).collect();
    let global = decode_limbs(&summed, limb_bits)
        .and_then(|v| RawStats::from_vec(&train.columns, regression, &v))
        .map_err(LoopError::Other)?;
    let mut encoder = Encoder::new(&train.columns, cfg.missing, cfg.missing_tokens.clone());
    let scaler = encoder.fit(&global);
    let target_scaling = global
        .target
        .map(|(sum, sum_sq)| TargetScaling::from_moments(global.rows, sum, sum_sq));
    on_event(&ClientEvent::Standardized {
        encoder: encoder.clone(),
        scaler: scaler.clone(),
        target_scaling,
        global_rows: global.rows,
        cost: mean.cost,
    });
    let x = scaler.transformed(&encoder.transform(&train.x));
    let y = match &target_scaling {
        Some(t) => train.y.mapv(|v| t.scale(v)),
        None => train.y.clone(),
    };
    let hold = validation.map(|h| (h.x.clone(), h.y.to_vec()));
    let features = encoder.output_len();

    let mut global_model = crate::model::build(&cfg.architecture, features, head, cfg.init_seed)?;
    let params = global_model.params().len();
    let mut rounds = Vec::new();
    let unit = weight_unit(global.rows);
    let share = site_share(train.rows(), unit);
    // DP-SGD over every round of this site's training.
    let budget = match &cfg.dp {
        Some(d) => Some(
            d.budget(
                train.rows(),
                cfg.train.batch_size,
                cfg.rounds.saturating_mul(cfg.train.epochs as u64),
            )
            .map_err(|e| LoopError::Other(format!("privacy: {e}")))?,
        ),
        None => None,
    };
    let mut dp_steps = 0u64;
    let mut stopped = None;
    let record = |steps: u64| budget.and_then(|b| b.record(steps));
    let outcome =
        |model: Box<dyn Model>, rounds: Vec<ClientRound>, cancelled: bool| ClientOutcome {
            model,
            privacy: None,
            stopped: None,
            encoder: encoder.clone(),
            scaler: scaler.clone(),
            target_scaling,
            global_rows: global.rows,
            rounds,
            cancelled,
        };
    for k in 1..=cfg.rounds {
        if cancel.load(Ordering::Relaxed) {
            return Ok(outcome(global_model, rounds, true));
        }
        let server_round = cfg.layout.training_round(k);
        // Resuming: a round that closed while this client was away is taken
        // as published, without training for it.
        if let Some(mean) = exchange.published(server_round, params + 1)? {
            // This site may have trained on its rows for this round before
            // a restart: counted as spent, the safe side of the accountant.
            if let Some(b) = &budget {
                dp_steps += b.steps_per_epoch * cfg.train.epochs as u64;
            }
            let (global_params, total_share) = fedavg(&mean, params)?;
            global_model.set_params(&global_params)?;
            let rec = ClientRound {
                contributed: false,
                ..ClientRound::of(k, mean, global_params, total_share)
            };
            on_event(&ClientEvent::Round(rec.clone()));
            rounds.push(rec);
            continue;
        }
        // The privacy budget: stop before a round would pass it.
        if let Some(b) = &budget {
            let next = dp_steps + b.steps_per_epoch * cfg.train.epochs as u64;
            let eps = b
                .epsilon(next)
                .map_err(|e| LoopError::Other(e.to_string()))?;
            if let Some(max) = b.max_epsilon
                && eps > max * (1.0 + 1e-9)
                && stopped.is_none()
            {
                stopped = Some(format!(
                    "privacy budget: round {k} would bring ε to {eps:.3} > {max}; this site \
                     stopped training after round {} at ε = {:.3}",
                    k - 1,
                    b.epsilon(dp_steps).unwrap_or(0.0)
                ));
            }
        }
        if stopped.is_some() {
            // Out of budget: keep the round's quorum with an empty update
            // (share 0: it adds nothing and costs no privacy) and follow
            // the global model; stop when no site trains any more.
            let zeros = vec![0.0; params + 1];
            let mean = exchange.exchange(server_round, &zeros, 1.0, cancel)?;
            match fedavg(&mean, params) {
                Ok((global_params, total_share)) => {
                    global_model.set_params(&global_params)?;
                    let rec = ClientRound {
                        epsilon: record(dp_steps).map(|r| r.epsilon),
                        ..ClientRound::of(k, mean, global_params, total_share)
                    };
                    on_event(&ClientEvent::Round(rec.clone()));
                    rounds.push(rec);
                    continue;
                }
                // Every site is out of budget.
                Err(_) => break,
            }
        }
        let mut local_model = global_model.clone();
        let tcfg = TrainConfig {
            seed: round_seed(cfg.train.seed, k),
            dp: budget.map(|b| b.dp),
            ..cfg.train.clone()
        };
        let mut last_loss = None;
        let summary = crate::model::train(&mut *local_model, &x, &y, &tcfg, &mut |s| {
            last_loss = Some(s.loss);
            on_event(&ClientEvent::Epoch(EpochPoint::of(k, s)));
            if cancel.load(Ordering::Relaxed) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })?;
        if cancel.load(Ordering::Relaxed) {
            return Err(LoopError::Cancelled);
        }
        dp_steps += summary.dp_steps;
        // FedAvg: the parameters times this site's share of the rows, and
        // the share itself; the mean of both gives the weighted mean exactly.
        let mut update: Vec<f64> = local_model.params().iter().map(|v| v * share).collect();
        update.push(share);
        let mean = exchange.exchange(server_round, &update, 1.0, cancel)?;
        let (global_params, total_share) = fedavg(&mean, params)?;
        global_model.set_params(&global_params)?;
        let (validation_loss, validation_score) = match &hold {
            Some((hx, hy)) => {
                let e = evaluate_raw(
                    &*global_model,
                    &encoder,
                    &scaler,
                    target_scaling.as_ref(),
                    hx,
                    hy,
                );
                (Some(e.loss()), Some(e.score()))
            }
            None => (None, None),
        };
        let rec = ClientRound {
            local_loss: last_loss,
            validation_loss,
            validation_score,
            epsilon: record(dp_steps).map(|r| r.epsilon),
            ..ClientRound::of(k, mean, global_params, total_share)
        };
        on_event(&ClientEvent::Round(rec.clone()));
        rounds.push(rec);
    }
    let mut done = outcome(global_model, rounds, false);
    done.privacy = record(dp_steps);
    done.stopped = stopped;
    Ok(done)
}

/// Metrics of `model` on raw rows `x` with labels `y` (class indices, or
/// values in the target's unit).
pub fn evaluate_raw(
    model: &dyn Model,
    encoder: &Encoder,
    scaler: &Standardizer,
    target_scaling: Option<&TargetScaling>,
    x: &Array2<f64>,
    y: &[f64],
) -> Evaluation {
    let mut p = crate::model::predictions(model, &scaler.transformed(&encoder.transform(x)));
    if let Some(t) = target_scaling {
        p.mapv_inplace(|z| t.unscale(z));
    }
    Evaluation::compute(model.head(), y, &p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limbs_round_trip_and_add() {
        use crate::crypto::ParamSet;
        assert_eq!(limb_bits_for(ParamSet::Standard64, 16, 64), 15);
        assert_eq!(limb_bits_for(ParamSet::Compact32, 6, 64), 11);
        // 128 clients: two bits less per client, the default scale gives them up
        assert_eq!(limb_bits_for(ParamSet::Standard64, 14, 128), 15);
        assert_eq!(limb_bits_for(ParamSet::Standard64, 16, 128), 13);
        for bits in [15, 11] {
            for v in [0.0, 1.5, -3.25, 74556.0, 8.2e9, -1e13, 0.1234567891] {
                let mut l = Vec::new();
                to_limbs(v, bits, &mut l);
                assert_eq!(l.len(), STAT_LIMBS);
                assert!(
                    l.iter().all(|d| d.abs() < f64::powi(2.0, bits)),
                    "{v}: {l:?}"
                );
                let back = from_limbs(&l, bits);
                assert!((back - v).abs() <= v.abs() * 1e-15 + 1e-12, "{v}");
            }
            let (a, b) = (12345.678, -98.5);
            let (mut la, mut lb) = (Vec::new(), Vec::new());
            to_limbs(a, bits, &mut la);
            to_limbs(b, bits, &mut lb);
            let s: Vec<f64> = la.iter().zip(&lb).map(|(x, y)| x + y).collect();
            assert!((from_limbs(&s, bits) - (a + b)).abs() < 1e-9);
        }
    }

    #[test]
    fn statistics_round_trip_through_limbs() {
        use crate::data::{RawColumn, RawStats};
        let x = ndarray::array![[1.0, 0.0], [f64::NAN, 1.0], [5.0, f64::NAN]];
        let columns = vec![
            RawColumn::numeric("a"),
            RawColumn::Categorical {
                name: "b".into(),
                categories: vec!["u".into(), "v".into()],
                other: false,
            },
        ];
        let stats = RawStats::of(&columns, &x, None);
        let values = stats.to_vec();
        assert_eq!(values, vec![6.0, 26.0, 2.0, 1.0, 1.0, 0.0, 1.0, 3.0]);
        let back = decode_limbs(&encode_limbs(&values, 15), 15).unwrap();
        let back = RawStats::from_vec(&columns, false, &back).unwrap();
        assert_eq!(back, stats);
    }
}
