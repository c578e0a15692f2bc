//! The federation plan: one versioned, human-editable TOML file that defines
//! what a federation trains — columns by name, the task, preprocessing, the
//! model, the training settings and the quorum. The aggregator serves it;
//! every site maps its CSV to it by column name and every update carries its
//! fingerprint.
//!
//! Training defaults for a federation live here ([`Training::default`]) and
//! nowhere else.

mod evaluation;
mod gbdt;
mod init;
mod layout;
mod validate;
pub use validate::{LARGEST_SITE_ROWS, within_key};

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use evaluation::{DEFAULT_AUC_BINS, EarlyStopping, FedEvaluation};
pub use gbdt::GBDT_LIMBS;
pub use init::{ProposeOptions, propose};
pub use layout::{
    MAX_SUM_TAG_SLOTS, NAME_BYTES, RoundLayout, RoundPhase, STANDARDIZATION_ROUNDS, STAT_LIMBS,
    TreeRounds,
};

use crate::data::{
    CategoricalMissing, CategoricalSpec, CsvOptions, Encoder, FeatureSelection, LabelMapping,
    MissingPolicy, RawColumn, RawStats, Target, TargetSpec,
};
use crate::model::{
    Architecture, Head, LocalSgd, Optimizer, OptimizerKind, Schedule, ServerOptimizer,
    ServerOptimizerKind, TrainConfig,
};

/// Value of the `format` field.
pub const PLAN_FORMAT: &str = "fedhe-plan";
/// Current `version`.
pub const PLAN_VERSION: u32 = 1;
/// Largest plan file accepted (also the aggregator's body limit).
pub const MAX_PLAN_BYTES: usize = 1 << 20;

/// A federation plan. See the module documentation and `docs/plan.md`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub format: String,
    pub version: u32,
    /// Free text for people (shown by the app); part of the fingerprint.
    #[serde(default)]
    pub name: String,
    pub task: Task,
    pub columns: Columns,
    #[serde(default)]
    pub preprocessing: Preprocessing,
    #[serde(default)]
    pub model: ModelSpec,
    #[serde(default)]
    pub training: Training,
    #[serde(default)]
    pub quorum: Quorum,
    #[serde(default, skip_serializing_if = "Privacy::is_off")]
    pub privacy: Privacy,
    /// Identity keys the named roster pins (`[identities]`, `id =
    /// "1a2b:…"`, the fingerprint `fedhe client` prints): the aggregator
    /// refuses a registration of a pinned id with another identity, and
    /// every site refuses to mask with a partner whose relayed identity is
    /// not the pinned one. Ids must be on `quorum.roster`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub identities: std::collections::BTreeMap<String, String>,
    /// Encrypted federated evaluation and early stopping (left out of the
    /// canonical form when absent, so older plans keep their fingerprints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evaluation: Option<FedEvaluation>,
}

/// Privacy against the other sites (pairwise masks) and for the rows of
/// every site (DP-SGD).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Privacy {
    /// Pairwise masks under the encryption in every round of three or more
    /// sites (see `crypto::masking`): no one holding the umbrella key can
    /// read one site's update. On unless the plan says `masks = false`.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub masks: bool,
    /// DP-SGD in every site's local training (see `privacy::DpSettings`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp: Option<crate::privacy::DpSettings>,
    /// With masks on, allow rounds of fewer than three members (which go
    /// unmasked: the other member's update is the sum minus one's own).
    /// Off: a masked plan needs `quorum.min_clients` of at least 3, and a
    /// client refuses a masked round of two. Left out of the canonical form
    /// when off, so plans written before it keep their fingerprints.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_unmasked_pairs: bool,
}

/// Fewest members of a masked round unless the plan allows unmasked pairs:
/// with two, each member's update is the sum minus its own.
pub const MIN_MASKED_MEMBERS: usize = 3;

impl Default for Privacy {
    fn default() -> Self {
        Privacy {
            masks: true,
            dp: None,
            allow_unmasked_pairs: false,
        }
    }
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Privacy {
    /// The defaults (masks on, no DP): left out of the plan's canonical form,
    /// so plans written before these settings keep their fingerprints.
    fn is_off(&self) -> bool {
        self.masks && self.dp.is_none() && !self.allow_unmasked_pairs
    }
}

/// The prediction task, on the label column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Task {
    /// Two classes; `positive` is class 1.
    Binary { positive: String, negative: String },
    /// An ordered class list: class `i` is output `i`.
    Multiclass { classes: Vec<String> },
    /// A numeric target, standardized federatedly like the features.
    Regression,
}

/// Columns by name. The raw columns are `numeric` then `categorical`, in
/// these orders; the model's inputs are their encoding (see
/// [`Plan::encoder`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Columns {
    pub label: String,
    pub numeric: Vec<String>,
    /// Categorical columns with their categories (one-hot encoded in this order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categorical: Vec<CategoricalColumn>,
    /// Columns sites may have that are never used (identifiers, free text).
    #[serde(default)]
    pub ignored: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CategoricalColumn {
    pub name: String,
    pub categories: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Standardization {
    /// Sites agree on one mean and deviation per feature from encrypted
    /// sums, sums of squares and row counts (the first round).
    #[default]
    Federated,
}

/// What a value outside a categorical column's categories is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownCategories {
    /// A located error (file, line, column, value) before anything is sent.
    #[default]
    Error,
    /// An "other" one-hot column.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preprocessing {
    #[serde(default)]
    pub standardize: Standardization,
    /// Cell texts that mean "missing" (after trimming spaces).
    #[serde(default = "crate::data::default_missing_tokens")]
    pub missing: Vec<String>,
    /// A missing numeric cell is the federation's mean of the column; a
    /// missing categorical cell is its own category, or the most frequent.
    #[serde(default)]
    pub categorical_missing: CategoricalMissing,
    /// A 0/1 column after each numeric column: 1 where the cell was missing.
    #[serde(default)]
    pub missing_indicators: bool,
    #[serde(default)]
    pub unknown_categories: UnknownCategories,
    /// Discover the categories of the categorical columns listed without
    /// any, in two encrypted rounds before the statistics (see
    /// `client::vocabulary`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vocabulary: Option<Vocabulary>,
}

/// The encrypted vocabulary rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vocabulary {
    /// A value becomes a category when the federation holds it at least
    /// this often (each site counts at most this many).
    #[serde(default = "default_min_count")]
    pub min_count: u32,
    /// Hashed buckets per column (a power of two from 16 to 65,536).
    #[serde(default = "default_buckets")]
    pub buckets: usize,
}

fn default_min_count() -> u32 {
    5
}

fn default_buckets() -> usize {
    4096
}

impl Default for Vocabulary {
    fn default() -> Self {
        Vocabulary {
            min_count: default_min_count(),
            buckets: default_buckets(),
        }
    }
}

impl Default for Preprocessing {
    fn default() -> Self {
        Preprocessing {
            standardize: Standardization::Federated,
            missing: crate::data::default_missing_tokens(),
            categorical_missing: CategoricalMissing::Category,
            missing_indicators: false,
            unknown_categories: UnknownCategories::Error,
            vocabulary: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Logistic, softmax or linear regression, by task (`logistic` is
    /// accepted for plans written before the model families).
    #[default]
    #[serde(alias = "logistic")]
    Linear,
    /// A multilayer perceptron with `hidden` layer sizes.
    Mlp,
    /// Gradient-boosted trees (`[model.gbdt]`), grown on encrypted, masked
    /// histograms instead of FedAvg training rounds.
    Gbdt,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    #[serde(default)]
    pub kind: ModelKind,
    /// Hidden layer sizes of an MLP (1 to 3 layers), e.g. `[64]` or `[64, 32]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hidden: Vec<usize>,
    /// Gradient-boosted trees' settings (`kind = "gbdt"`; left out: the
    /// defaults). Left out of the canonical form when absent, so plans of
    /// the other kinds keep their fingerprints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gbdt: Option<crate::model::gbdt::GbdtSettings>,
}

impl ModelSpec {
    /// The model's architecture.
    pub fn architecture(&self) -> Architecture {
        match self.kind {
            ModelKind::Linear => Architecture::Linear,
            // The trees' settings: `Plan::gbdt`.
            ModelKind::Gbdt => Architecture::Gbdt,
            ModelKind::Mlp => Architecture::Mlp {
                hidden: self.hidden.clone(),
            },
        }
    }

    /// The spec of an architecture.
    pub fn of(architecture: &Architecture) -> ModelSpec {
        match architecture {
            Architecture::Linear => ModelSpec::default(),
            Architecture::Gbdt => ModelSpec {
                kind: ModelKind::Gbdt,
                ..ModelSpec::default()
            },
            Architecture::Mlp { hidden } => ModelSpec {
                kind: ModelKind::Mlp,
                hidden: hidden.clone(),
                gbdt: None,
            },
        }
    }
}

/// Training settings of a federation (every site uses the same).
///
/// In the file, the local SGD settings sit beside `rounds` in one flat
/// `[training]` section ([`TrainingSection`]), so plans, their fingerprints
/// and the errors locating a bad key or value are unchanged. (serde's
/// `flatten` would buffer the section: every error would point at its
/// header, and an unknown key would no longer list the known ones.)
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(from = "TrainingSection", into = "TrainingSection")]
pub struct Training {
    /// Training rounds (after the standardization round).
    pub rounds: u64,
    /// Each round's local SGD. Its momentum restarts every round; its seed
    /// is mixed with the round and the site's id, and seeds an MLP's
    /// initial weights (the same at every site).
    pub sgd: LocalSgd,
    /// Share of each site's rows held out to validate the global model.
    pub validation_share: f64,
}

impl Default for Training {
    /// A new federation's settings, for every model kind: Adam at lr 0.005
    /// with a cosine schedule over the rounds and L2 0.001, 5 local epochs
    /// of batches of 32, 20 rounds. Chosen by measurement (docs/models.md):
    /// on every table of the scikit-learn comparison, linear and MLP alike,
    /// within 0.01 of scikit-learn but for one test row of wine's linear
    /// model, and no table diverges (plain SGD at lr 0.1, the settings
    /// before, diverged on outlying rows). Adam's steps are bounded by its
    /// learning rate whatever the gradient, so rows far out cannot throw
    /// the model off.
    fn default() -> Self {
        Training {
            rounds: 20,
            sgd: LocalSgd {
                epochs: 5,
                lr: 0.005,
                batch_size: 32,
                l2: 0.001,
                momentum: 0.0,
                seed: 42,
                optimizer: Optimizer {
                    kind: OptimizerKind::Adam,
                    schedule: Schedule::Cosine,
                    ..Optimizer::PLAIN
                },
            },
            validation_share: 0.2,
        }
    }
}

impl Training {
    /// What a `[training]` key left out means: the settings before the
    /// optimizer keys existed (plain SGD at lr 0.1), so that a plan written
    /// then trains as it did and keeps its fingerprint.
    pub const LEGACY: Training = Training {
        rounds: 20,
        sgd: LocalSgd {
            epochs: 5,
            lr: 0.1,
            batch_size: 32,
            l2: 0.0,
            momentum: 0.0,
            seed: 42,
            optimizer: Optimizer::PLAIN,
        },
        validation_share: 0.2,
    };

    /// Local SGD settings of one round.
    pub fn local(&self) -> TrainConfig {
        TrainConfig::from(self.sgd)
    }
}

/// `[training]` as written: [`Training`] with its `sgd` spread out. The
/// optimizer's keys are left out at plain SGD's values, so plans written
/// before them keep their fingerprints.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TrainingSection {
    rounds: u64,
    epochs: usize,
    lr: f64,
    batch_size: usize,
    l2: f64,
    /// Left out at 0, so plans written before momentum keep their
    /// fingerprints.
    #[serde(skip_serializing_if = "is_zero")]
    momentum: f64,
    seed: u64,
    validation_share: f64,
    #[serde(skip_serializing_if = "is_sgd")]
    optimizer: OptimizerKind,
    #[serde(skip_serializing_if = "is_beta1")]
    beta1: f64,
    #[serde(skip_serializing_if = "is_beta2")]
    beta2: f64,
    #[serde(skip_serializing_if = "is_eps")]
    eps: f64,
    #[serde(skip_serializing_if = "is_zero")]
    weight_decay: f64,
    #[serde(skip_serializing_if = "is_constant")]
    schedule: ScheduleName,
    /// A step schedule: rounds per step, and the factor of each step.
    #[serde(skip_serializing_if = "Option::is_none")]
    step_every: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    step_gamma: Option<f64>,
    /// Per-example gradient clipping (0: off; not DP-SGD's clip).
    #[serde(skip_serializing_if = "is_zero")]
    grad_clip: f64,
    /// FedProx's μ (0: off).
    #[serde(skip_serializing_if = "is_zero")]
    prox_mu: f64,
    /// The server optimizer every site applies to a round's mean; left out
    /// at FedAvg's values, so plans written before it keep their
    /// fingerprints. `server_lr` left out: the optimizer's default.
    #[serde(skip_serializing_if = "is_fedavg")]
    server_optimizer: ServerOptimizerKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    server_lr: Option<f64>,
    #[serde(skip_serializing_if = "is_server_momentum")]
    server_momentum: f64,
    #[serde(skip_serializing_if = "is_server_beta1")]
    server_beta1: f64,
    #[serde(skip_serializing_if = "is_server_beta2")]
    server_beta2: f64,
    #[serde(skip_serializing_if = "is_server_tau")]
    server_tau: f64,
}

fn is_fedavg(k: &ServerOptimizerKind) -> bool {
    *k == ServerOptimizerKind::FedAvg
}

fn is_server_momentum(v: &f64) -> bool {
    *v == ServerOptimizer::FEDAVG.momentum
}

fn is_server_beta1(v: &f64) -> bool {
    *v == ServerOptimizer::FEDAVG.beta1
}

fn is_server_beta2(v: &f64) -> bool {
    *v == ServerOptimizer::FEDAVG.beta2
}

fn is_server_tau(v: &f64) -> bool {
    *v == ServerOptimizer::FEDAVG.tau
}

/// `schedule` in a plan (a string, in every format).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
enum ScheduleName {
    #[default]
    Constant,
    Step,
    Cosine,
}

impl From<ScheduleName> for String {
    fn from(s: ScheduleName) -> String {
        match s {
            ScheduleName::Constant => "constant",
            ScheduleName::Step => "step",
            ScheduleName::Cosine => "cosine",
        }
        .to_string()
    }
}

impl TryFrom<String> for ScheduleName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        match s.as_str() {
            "constant" => Ok(ScheduleName::Constant),
            "step" => Ok(ScheduleName::Step),
            "cosine" => Ok(ScheduleName::Cosine),
            _ => Err(format!(
                "unknown schedule {s:?}; expected one of {}",
                Schedule::NAMES.join(", ")
            )),
        }
    }
}

/// A step schedule's defaults: halve the rate every 10 rounds.
const STEP_EVERY: u64 = 10;
const STEP_GAMMA: f64 = 0.5;

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

fn is_sgd(k: &OptimizerKind) -> bool {
    *k == OptimizerKind::Sgd
}

fn is_beta1(v: &f64) -> bool {
    *v == Optimizer::PLAIN.beta1
}

fn is_beta2(v: &f64) -> bool {
    *v == Optimizer::PLAIN.beta2
}

fn is_eps(v: &f64) -> bool {
    *v == Optimizer::PLAIN.eps
}

fn is_constant(s: &ScheduleName) -> bool {
    *s == ScheduleName::Constant
}

impl Default for TrainingSection {
    fn default() -> Self {
        Training::LEGACY.into()
    }
}

impl From<Training> for TrainingSection {
    fn from(t: Training) -> Self {
        let LocalSgd {
            epochs,
            lr,
            batch_size,
            l2,
            momentum,
            seed,
            optimizer: o,
        } = t.sgd;
        let (schedule, step_every, step_gamma) = match o.schedule {
            Schedule::Constant => (ScheduleName::Constant, None, None),
            Schedule::Cosine => (ScheduleName::Cosine, None, None),
            Schedule::Step { every, gamma } => (ScheduleName::Step, Some(every), Some(gamma)),
        };
        TrainingSection {
            rounds: t.rounds,
            epochs,
            lr,
            batch_size,
            l2,
            momentum,
            seed,
            validation_share: t.validation_share,
            optimizer: o.kind,
            beta1: o.beta1,
            beta2: o.beta2,
            eps: o.eps,
            weight_decay: o.weight_decay,
            schedule,
            step_every,
            step_gamma,
            grad_clip: o.clip,
            prox_mu: o.prox_mu,
            server_optimizer: o.server.kind,
            server_lr: (o.server.lr != 1.0 || o.server.kind != ServerOptimizerKind::FedAvg)
                .then_some(o.server.lr),
            server_momentum: o.server.momentum,
            server_beta1: o.server.beta1,
            server_beta2: o.server.beta2,
            server_tau: o.server.tau,
        }
    }
}

impl From<TrainingSection> for Training {
    fn from(s: TrainingSection) -> Self {
        let schedule = match s.schedule {
            ScheduleName::Constant => Schedule::Constant,
            ScheduleName::Cosine => Schedule::Cosine,
            ScheduleName::Step => Schedule::Step {
                every: s.step_every.unwrap_or(STEP_EVERY),
                gamma: s.step_gamma.unwrap_or(STEP_GAMMA),
            },
        };
        Training {
            rounds: s.rounds,
            sgd: LocalSgd {
                epochs: s.epochs,
                lr: s.lr,
                batch_size: s.batch_size,
                l2: s.l2,
                momentum: s.momentum,
                seed: s.seed,
                optimizer: Optimizer {
                    kind: s.optimizer,
                    beta1: s.beta1,
                    beta2: s.beta2,
                    eps: s.eps,
                    weight_decay: s.weight_decay,
                    schedule,
                    clip: s.grad_clip,
                    prox_mu: s.prox_mu,
                    server: ServerOptimizer {
                        kind: s.server_optimizer,
                        lr: s.server_lr.unwrap_or(s.server_optimizer.default_lr()),
                        momentum: s.server_momentum,
                        beta1: s.server_beta1,
                        beta2: s.server_beta2,
                        tau: s.server_tau,
                    },
                },
            },
            validation_share: s.validation_share,
        }
    }
}

/// Who must contribute before a round closes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quorum {
    /// Fewest contributors a round may close with (at its deadline).
    pub min_clients: usize,
    /// Client ids allowed to join; empty: anyone holding the key. A named
    /// roster also makes every round wait for all of them until its deadline.
    pub roster: Vec<String>,
    /// Seconds after a round opens at which it closes with whoever
    /// submitted, if at least `min_clients` did. The standardization round
    /// has no deadline: it waits for the whole roster.
    pub round_deadline_secs: u64,
    /// Allow publishing a sum of one update (which shows that client's
    /// update to every key holder).
    pub allow_single_contributor: bool,
}

/// `quorum.min_clients` when a plan does not say: 3 with masks (a round of
/// two cannot hide either update from the other), 2 without.
pub fn default_min_clients(masks: bool) -> usize {
    if masks { MIN_MASKED_MEMBERS } else { 2 }
}

impl Default for Quorum {
    /// The quorum of a plan with masks (the default).
    fn default() -> Self {
        Quorum {
            min_clients: default_min_clients(true),
            roster: Vec::new(),
            round_deadline_secs: 600,
            allow_single_contributor: false,
        }
    }
}

/// A plan's fingerprint: SHA-256 of its canonical form, first 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PlanFingerprint(pub [u8; 16]);

impl std::fmt::Display for PlanFingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read plan {file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("cannot write plan {file}: {source}")]
    Write {
        file: String,
        source: std::io::Error,
    },
    #[error("{file} is not a valid plan: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: plan field `{field}`: {message}")]
    Invalid {
        file: String,
        field: String,
        message: String,
    },
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
}

impl Plan {
    /// A plan for this target over these numeric columns with default
    /// settings.
    pub fn for_target(target: &Target, numeric: Vec<String>, ignored: Vec<String>) -> Plan {
        let task = match target {
            Target::Binary(m) => Task::Binary {
                positive: m.positive.clone(),
                negative: m.negative.clone(),
            },
            Target::Multiclass { classes, .. } => Task::Multiclass {
                classes: classes.clone(),
            },
            Target::Regression { .. } => Task::Regression,
        };
        Plan {
            format: PLAN_FORMAT.to_string(),
            version: PLAN_VERSION,
            name: String::new(),
            task,
            columns: Columns {
                label: target.column().to_string(),
                numeric,
                categorical: Vec::new(),
                ignored,
            },
            preprocessing: Preprocessing::default(),
            model: ModelSpec::default(),
            training: Training::default(),
            quorum: Quorum::default(),
            privacy: Privacy::default(),
            identities: Default::default(),
            evaluation: None,
        }
    }

    /// Fewest members a round of this plan may have on the client's side:
    /// with masks, 3 ([`MIN_MASKED_MEMBERS`]) unless the plan says in words
    /// that smaller rounds may go unmasked (`privacy.allow_unmasked_pairs`,
    /// or `quorum.allow_single_contributor`, which already lets one site's
    /// update be read by every key holder); 1 without masks.
    pub fn min_round_members(&self) -> usize {
        let p = &self.privacy;
        if p.masks && !p.allow_unmasked_pairs && !self.quorum.allow_single_contributor {
            MIN_MASKED_MEMBERS
        } else {
            1
        }
    }

    /// A binary plan over these numeric columns with default settings.
    pub fn binary(label: LabelMapping, numeric: Vec<String>, ignored: Vec<String>) -> Plan {
        Plan::for_target(&Target::Binary(label), numeric, ignored)
    }

    /// Reads and validates a plan file.
    pub fn load(path: &Path) -> Result<Plan, PlanError> {
        let file = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| PlanError::Read {
            file: file.clone(),
            source,
        })?;
        if meta.len() > MAX_PLAN_BYTES as u64 {
            return Err(PlanError::Parse {
                file,
                message: format!(
                    "{} bytes; a plan is at most {MAX_PLAN_BYTES} bytes",
                    meta.len()
                ),
            });
        }
        let text = crate::fsutil::read_capped_text(path, MAX_PLAN_BYTES as u64, "plan file")
            .map_err(|source| PlanError::Read {
                file: file.clone(),
                source,
            })?;
        Plan::from_toml(&text, &file)
    }

    /// Parses and validates plan text (TOML); `file` names it in errors.
    pub fn from_toml(text: &str, file: &str) -> Result<Plan, PlanError> {
        let probe: toml::Table = toml::from_str(text).map_err(|e| PlanError::Parse {
            file: file.to_string(),
            message: e.to_string(),
        })?;
        check_header(
            probe.get("format").and_then(|v| v.as_str()),
            probe.get("version").and_then(|v| v.as_integer()),
            file,
        )?;
        let mut plan: Plan = toml::from_str(text).map_err(|e| PlanError::Parse {
            file: file.to_string(),
            message: e.to_string(),
        })?;
        let quorum = probe.get("quorum").and_then(|q| q.as_table());
        if quorum.is_none_or(|q| !q.contains_key("min_clients")) {
            plan.quorum.min_clients = default_min_clients(plan.privacy.masks);
        }
        plan.validate(file)?;
        Ok(plan)
    }

    /// Parses and validates a plan in JSON (as the aggregator serves it).
    pub fn from_json(text: &[u8], source: &str) -> Result<Plan, PlanError> {
        let plan: Plan = serde_json::from_slice(text).map_err(|e| PlanError::Parse {
            file: source.to_string(),
            message: e.to_string(),
        })?;
        check_header(
            Some(plan.format.as_str()),
            Some(i64::from(plan.version)),
            source,
        )?;
        plan.validate(source)?;
        Ok(plan)
    }

    /// The plan as TOML.
    pub fn to_toml(&self) -> String {
        // Plain data (strings, numbers, lists, tables) always serializes; the
        // only failure toml knows is a value it cannot represent, such as a
        // NaN, which `validate` refuses.
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot write the plan: {e}\n"))
    }

    /// Writes the plan as TOML, after `header` comment lines.
    pub fn save(&self, path: &Path, header: &[String]) -> Result<(), PlanError> {
        let mut text = String::new();
        for line in header {
            text.push_str("# ");
            text.push_str(line);
            text.push('\n');
        }
        if !header.is_empty() {
            text.push('\n');
        }
        text.push_str(&self.to_toml());
        std::fs::write(path, text).map_err(|source| PlanError::Write {
            file: path.display().to_string(),
            source,
        })
    }

    /// Canonical form: compact JSON of the parsed plan (field order fixed by
    /// the types), so comments and layout of the file do not matter.
    pub fn canonical(&self) -> Vec<u8> {
        // Provably infallible: a plan is strings, numbers and lists (no map
        // with non-string keys, which is JSON's only failure).
        #[allow(clippy::expect_used)]
        serde_json::to_vec(self).expect("a plan serializes to JSON")
    }

    pub fn fingerprint(&self) -> PlanFingerprint {
        let mut h = Sha256::new();
        h.update(b"FedHE plan v1\0");
        h.update(self.canonical());
        let d = h.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&d[..16]);
        PlanFingerprint(out)
    }

    /// One line for people: "multiclass on \"cultivar\": 3 classes (…), 13
    /// feature columns, MLP, hidden layers 32, 20 rounds × 20 epochs".
    pub fn summary(&self) -> String {
        if let Some(g) = self.gbdt() {
            return format!(
                "{}, {} feature columns, gradient-boosted trees: {} × depth {}, {} bins, \
                 learning rate {}",
                self.target().describe(),
                self.columns.numeric.len() + self.columns.categorical.len(),
                g.trees,
                g.depth,
                g.bins,
                g.learning_rate
            );
        }
        format!(
            "{}, {} feature columns, {}, {} rounds × {} epochs",
            self.target().describe(),
            self.features(),
            self.model.architecture().describe(self.head()),
            self.training.rounds,
            self.training.sgd.epochs
        )
    }

    /// Number of model inputs: the encoded features' count.
    pub fn features(&self) -> usize {
        self.encoder().output_len()
    }

    /// Categorical columns whose categories the vocabulary rounds discover.
    pub fn discovered_columns(&self) -> Vec<String> {
        if self.preprocessing.vocabulary.is_none() {
            return Vec::new();
        }
        self.columns
            .categorical
            .iter()
            .filter(|c| c.categories.is_empty())
            .map(|c| c.name.clone())
            .collect()
    }

    /// The raw columns every site reads: `numeric`, then `categorical`
    /// (a discovered column's categories are empty until the vocabulary
    /// rounds agree on them).
    pub fn raw_columns(&self) -> Vec<RawColumn> {
        let other = self.preprocessing.unknown_categories == UnknownCategories::Other;
        let discovered = self.preprocessing.vocabulary.is_some();
        let mut out: Vec<RawColumn> = self
            .columns
            .numeric
            .iter()
            .map(|n| RawColumn::numeric(n))
            .collect();
        out.extend(
            self.columns
                .categorical
                .iter()
                .map(|c| RawColumn::Categorical {
                    name: c.name.clone(),
                    categories: c.categories.clone(),
                    // Values too rare to be agreed on go to "other".
                    other: other || (discovered && c.categories.is_empty()),
                }),
        );
        out
    }

    /// The (unfitted) encoding of the raw columns into model inputs.
    pub fn encoder(&self) -> Encoder {
        let p = &self.preprocessing;
        Encoder::new(
            &self.raw_columns(),
            MissingPolicy {
                categorical: p.categorical_missing,
                indicators: p.missing_indicators,
            },
            p.missing.clone(),
        )
    }

    /// The label mapping of a binary task.
    pub fn label_mapping(&self) -> Option<LabelMapping> {
        match &self.task {
            Task::Binary { positive, negative } => Some(LabelMapping {
                column: self.columns.label.clone(),
                positive: positive.clone(),
                negative: negative.clone(),
            }),
            _ => None,
        }
    }

    /// The label column's meaning under this plan.
    pub fn target(&self) -> Target {
        let column = self.columns.label.clone();
        match &self.task {
            Task::Binary { positive, negative } => Target::Binary(LabelMapping {
                column,
                positive: positive.clone(),
                negative: negative.clone(),
            }),
            Task::Multiclass { classes } => Target::Multiclass {
                column,
                classes: classes.clone(),
            },
            Task::Regression => Target::Regression { column },
        }
    }

    pub fn head(&self) -> Head {
        Head::for_target(&self.target())
    }

    /// Values (before limbs) of the statistics round: per numeric column
    /// its sum, sum of squares and present count, per categorical column
    /// its category, other and missing counts, the rows, and a regression
    /// target's sum and sum of squares.
    pub fn statistics_values(&self) -> usize {
        RawStats::len(&self.raw_columns(), matches!(self.task, Task::Regression))
    }

    /// Values of the model's flat parameter vector.
    pub fn param_count(&self) -> usize {
        let mut sizes = vec![self.features()];
        if self.model.kind == ModelKind::Mlp {
            sizes.extend_from_slice(&self.model.hidden);
        }
        sizes.push(self.head().outputs());
        sizes.windows(2).map(|w| w[0] * w[1] + w[1]).sum()
    }

    /// How a site reads its CSV for this plan: features and label by name,
    /// in the plan's order; extra columns are ignored with a note.
    pub fn csv_options(&self) -> CsvOptions {
        let target = match &self.task {
            Task::Binary { .. } => TargetSpec::Binary,
            Task::Multiclass { classes } => TargetSpec::Classes(Some(classes.clone())),
            Task::Regression => TargetSpec::Numeric,
        };
        let other = self.preprocessing.unknown_categories == UnknownCategories::Other;
        CsvOptions {
            label: Some(self.columns.label.clone()),
            features: FeatureSelection::Named(self.columns.numeric.clone()),
            categorical: self
                .columns
                .categorical
                .iter()
                .map(|c| {
                    let discovered =
                        self.preprocessing.vocabulary.is_some() && c.categories.is_empty();
                    CategoricalSpec {
                        name: c.name.clone(),
                        // A site reads its own values; the vocabulary
                        // rounds then map them to the agreed categories.
                        categories: (!discovered).then(|| c.categories.clone()),
                        other: other || discovered,
                    }
                })
                .collect(),
            missing_tokens: self.preprocessing.missing.clone(),
            target,
            mapping: self.label_mapping(),
            auto_ignore_ids: false,
            ..CsvOptions::default()
        }
    }

    /// Loads a site's CSV by this plan. Every mismatch is an error naming
    /// the file (and line and column where there is one).
    pub fn load_site_data(&self, path: &Path) -> Result<crate::data::LoadedCsv, PlanError> {
        Ok(crate::data::load_csv(path, &self.csv_options())?)
    }
}

fn check_header(format: Option<&str>, version: Option<i64>, file: &str) -> Result<(), PlanError> {
    let invalid = |field: &str, message: String| PlanError::Invalid {
        file: file.to_string(),
        field: field.to_string(),
        message,
    };
    if format != Some(PLAN_FORMAT) {
        return Err(invalid("format", format!("must be {PLAN_FORMAT:?}")));
    }
    match version {
        Some(v) if v == i64::from(PLAN_VERSION) => Ok(()),
        Some(v) => Err(invalid(
            "version",
            format!("plan version {v}; this fedhe reads version {PLAN_VERSION}"),
        )),
        None => Err(invalid("version", "missing".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan::binary(
            LabelMapping {
                column: "y".into(),
                positive: "1".into(),
                negative: "0".into(),
            },
            vec!["a".into(), "b".into()],
            vec!["id".into()],
        )
    }

    #[test]
    fn toml_round_trip_and_fingerprint() {
        let p = plan();
        let text = p.to_toml();
        let back = Plan::from_toml(&text, "p.toml").unwrap();
        assert_eq!(back, p);
        assert_eq!(back.fingerprint(), p.fingerprint());
        // Comments and layout do not change the fingerprint; a setting does.
        let commented = format!("# a comment\n\n{text}");
        assert_eq!(
            Plan::from_toml(&commented, "c").unwrap().fingerprint(),
            p.fingerprint()
        );
        let mut q = p.clone();
        q.training.rounds = 3;
        assert_ne!(q.fingerprint(), p.fingerprint());
        assert_eq!(p.fingerprint().to_string().len(), 32);
    }

    #[test]
    fn validation_names_the_field() {
        let mut p = plan();
        p.training.sgd.lr = -1.0;
        let e = p.validate("p.toml").unwrap_err().to_string();
        assert!(e.contains("`training.lr`") && e.contains("p.toml"), "{e}");
        let mut p = plan();
        p.quorum.min_clients = 1;
        let e = p.validate("p.toml").unwrap_err().to_string();
        assert!(e.contains("allow_single_contributor"), "{e}");
        let mut p = plan();
        p.columns.ignored.push("a".into());
        let e = p.validate("p.toml").unwrap_err().to_string();
        assert!(
            e.contains("`columns.ignored`") && e.contains("columns.numeric"),
            "{e}"
        );
        let e = Plan::from_toml("format = \"fedhe-plan\"\nversion = 9\n", "v.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("version 9"), "{e}");
        let text = plan()
            .to_toml()
            .replace("rounds = 20", "rounds = 20\nround = 3");
        let e = Plan::from_toml(&text, "u.toml").unwrap_err().to_string();
        assert!(e.contains("round"), "{e}");
    }
}
