//! The client loop's errors, each with its typed source: the aggregator's
//! answers ([`ClientError`]), the crypto, training and privacy layers, and
//! the three ways a round itself can fail — this site's data
//! ([`SiteError`]), a sum that does not fit ([`SumError`]), and a relay the
//! masking checks refuse ([`RelayError`]).

use crate::crypto::CryptoError;
use crate::model::ModelError;
use crate::privacy::{MaskError, PrivacyError};

use super::api::ClientError;
use super::limbs::STAT_LIMBS;

/// Why the client loop (or one exchange) stopped.
#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error(transparent)]
    Client(ClientError),
    #[error("encryption: {0}")]
    Crypto(#[from] CryptoError),
    #[error("training: {0}")]
    Model(Box<ModelError>),
    /// Local training diverged: named where it happened, never blamed on
    /// the encryption it would otherwise fail in.
    #[error(
        "training diverged at site {site}, round {round}, epoch {epoch}: {cause}; try a smaller \
         learning rate than {lr} (--lr {}, or lr = {} in the plan's [training]), or check the \
         data for extreme values",
        crate::model::suggested_lr(*.lr),
        crate::model::suggested_lr(*.lr)
    )]
    Diverged {
        site: String,
        round: u64,
        epoch: usize,
        lr: f64,
        cause: crate::model::Divergence,
    },
    /// DP-SGD settings this site's rows cannot meet.
    #[error("privacy: {0}")]
    Privacy(#[from] PrivacyError),
    /// A partner's mask key fails its signature, or the masks cannot be made.
    #[error(transparent)]
    Masks(#[from] MaskError),
    #[error(transparent)]
    Relay(#[from] RelayError),
    /// A mask would be used twice, or the mask ledger cannot be kept.
    #[error(transparent)]
    Ledger(#[from] super::ledger::LedgerError),
    /// Double masking: the roster, the masks or the shares cannot be made.
    #[error(transparent)]
    SecAgg(#[from] crate::privacy::secagg::SecAggError),
    #[error(transparent)]
    Sum(#[from] SumError),
    #[error(transparent)]
    Site(#[from] SiteError),
    /// The failure of an [`Exchange`](super::Exchange) that is not
    /// [`HeExchange`](super::HeExchange) (e.g. the plaintext baseline's).
    #[error(transparent)]
    Exchange(Box<dyn std::error::Error + Send + Sync>),
    /// The server optimizer's state could not be saved (the client state
    /// file): a restart could not resume it.
    #[error("saving the server optimizer's state: {0}")]
    Checkpoint(Box<dyn std::error::Error + Send + Sync>),
    /// A saved server optimizer state that does not fit this model.
    #[error(
        "the saved server optimizer state (round {round}) holds {got} parameters; the model has \
         {params}"
    )]
    CheckpointShape {
        round: u64,
        got: usize,
        params: usize,
    },
    #[error("cancelled")]
    Cancelled,
}

impl LoopError {
    /// Whether this site stops for a reason of its own (its data, its
    /// training, its privacy budget, its user's Stop), with the federation
    /// able to go on without it: it then leaves the open round.
    pub fn leaves_federation(&self) -> bool {
        matches!(
            self,
            LoopError::Site(_)
                | LoopError::Diverged { .. }
                | LoopError::Model(_)
                | LoopError::Privacy(_)
                | LoopError::Cancelled
        )
    }
}

impl From<ClientError> for LoopError {
    /// A wait the user cancelled is the loop's cancellation.
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Cancelled => LoopError::Cancelled,
            e => LoopError::Client(e),
        }
    }
}

impl From<ModelError> for LoopError {
    fn from(e: ModelError) -> Self {
        LoopError::Model(Box::new(e))
    }
}

/// This site's data cannot take part as it is.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error("the local training set is empty")]
    EmptyTrainingSet,
    /// A column the vocabulary rounds discover is not a categorical column
    /// of the site's table.
    #[error("no categorical column {0:?}")]
    NoCategoricalColumn(String),
    /// A statistic beyond what [`STAT_LIMBS`] limbs hold (a sum of squares
    /// of very large values); `column` is `None` for the target's.
    #[error(
        "the statistics of {} reach {value:e}, beyond the ±2^{limit_log2} the statistics round \
         can add without overflow; express the column in a larger unit (thousands instead of \
         units)",
        statistic_of(.column)
    )]
    StatisticsRange {
        column: Option<String>,
        value: f64,
        limit_log2: i32,
    },
    /// The loop's round layout disagrees with the rounds its kinds ran (a
    /// hand-built `LoopConfig` whose `layout` does not match `discovered`).
    #[error("the {what} round is server round {ran}, but the layout puts it at {layout}")]
    LayoutMismatch {
        what: &'static str,
        ran: u64,
        layout: u64,
    },
    /// More evaluation rows than one encrypted count can carry exactly.
    #[error(
        "{rows} {what} rows are more than the {bound} one site's evaluation counts can carry \
         under this key; hold out fewer rows"
    )]
    EvaluationRows {
        what: &'static str,
        rows: usize,
        bound: f64,
    },
    /// `--test` rows for a plan without a federated test round.
    #[error(
        "the plan has no federated test round: test rows need `[evaluation] test = true` in the \
         plan"
    )]
    NoTestRound,
    /// A gradient-boosted trees round whose vector at this site differs
    /// from the plan's length for it (the plan's columns differ from the
    /// site's table's).
    #[error("the {what} round's vector holds {site} integers at this site; the plan says {plan}")]
    TreeLayout {
        what: &'static str,
        site: usize,
        plan: usize,
    },
    /// An integer sum of this site's histograms beyond what the trees'
    /// limbs carry under this key.
    #[error(
        "the {what} round's sums of this site reach {value}, beyond the ±2^{limit_log2} its          limbs carry under this key; split the site's rows, or use a key with wider limbs          (Standard64)"
    )]
    TreeRange {
        what: &'static str,
        value: i64,
        limit_log2: i32,
    },
}

fn statistic_of(column: &Option<String>) -> String {
    match column {
        Some(name) => format!("column {name:?}"),
        None => "the target's sum or sum of squares".to_string(),
    }
}

/// A round's sum that does not fit what this site expects of it.
#[derive(Debug, thiserror::Error)]
pub enum SumError {
    #[error("the round's sum holds {got} values; the model has {params} parameters and a share")]
    TrainingLength { got: usize, params: usize },
    /// No site contributed rows (every site is out of its privacy budget).
    #[error("the round's summed share is {total}; no site contributed rows")]
    NoShare { total: f64 },
    #[error("the statistics hold {0} values, not a multiple of {STAT_LIMBS}")]
    Limbs(usize),
    #[error("the statistics hold {got} values; this table's layout needs {want}")]
    StatisticsLayout { got: usize, want: usize },
    #[error("the round's evaluation sums hold {got} values, expected {want}")]
    EvaluationLength { got: usize, want: usize },
    /// Summed counts that are not whole non-negative numbers.
    #[error("the round's evaluation sums hold a count of {0}, not a whole number of rows")]
    EvaluationCount(f64),
    #[error("the vocabulary sum holds {got} values, expected {want}")]
    VocabularyLength { got: usize, want: usize },
    /// A gradient-boosted trees round's sum of the wrong length.
    #[error("the {what} round's sum holds {got} values, expected {want}")]
    TreeLength {
        what: &'static str,
        got: usize,
        want: usize,
    },
    /// A summed integer limb that is not a whole number, or an integer sum
    /// beyond 64 bits: the sum is not one of integer vectors.
    #[error("the {what} round's sum holds {value}, not a sum of integer limbs")]
    IntegerLimb { what: &'static str, value: f64 },
    #[error(
        "round {round}: the aggregator announced {announced} contributors, the sum holds {holds}"
    )]
    Contributors {
        round: u64,
        announced: u32,
        holds: u32,
    },
    /// The sum fails its tag check on every download: the site does not
    /// use it (see `crypto::sum_tag`).
    #[error(
        "round {round}: refusing the aggregator's sum after {tries} downloads: {source}; this \
         site does not use it (the aggregator, or a relay between it and this site, altered or \
         replayed the sum)"
    )]
    Unverified {
        round: u64,
        tries: u32,
        source: CryptoError,
    },
    /// This site's update was accepted, but the aggregator does not list it
    /// among the round's contributors.
    #[error(
        "round {round}: the aggregator accepted the update of `{site}` but does not list it among \
         the round's contributors; refusing the sum"
    )]
    OwnUpdateMissing { round: u64, site: String },
}

/// What the aggregator relayed for a masked round fails this client's
/// checks: it refuses to mask with it, or to upload at all.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("client `{id}` has no identity key bound to its registration; cannot mask with it")]
    NoIdentity { id: String },
    #[error(
        "the aggregator relayed an identity for `{id}` that fails the check: {what}; refusing to \
         mask with it"
    )]
    BadIdentity { id: String, what: &'static str },
    #[error(
        "the aggregator relayed an identity for `{id}` ({relayed}) that is not the one the plan \
         pins ({pinned}): refusing to mask with it"
    )]
    NotPinned {
        id: String,
        pinned: String,
        relayed: String,
    },
    #[error(
        "partner `{id}`'s identity key changed: first seen as {first}, now {relayed}; refusing to \
         mask with it. If `{id}` lost its state file and the operator reset it, compare the new \
         fingerprint with `{id}` out of band and remove `{id}` from `partners` in {file}"
    )]
    ChangedIdentity {
        id: String,
        first: String,
        relayed: String,
        file: String,
    },
    #[error("no mask key relayed for `{id}`")]
    NoMaskKey { id: String },
    #[error(
        "the aggregator carried round {origin}'s mask keys over to round {round}: keys are only \
         carried forward, from an earlier round; refusing to mask with them"
    )]
    CarriedForward { round: u64, origin: u64 },
    #[error(
        "the aggregator fixed round {round} with a repeated member ({}): refusing to upload",
        .roster.join(", ")
    )]
    RepeatedMember { round: u64, roster: Vec<String> },
    #[error(
        "the aggregator fixed round {round} with `{id}`, who is not on the plan's roster: \
         refusing to upload"
    )]
    NotOnRoster { round: u64, id: String },
    #[error(
        "the aggregator fixed round {round} with {} members ({}); the plan's quorum is {quorum}: \
         refusing to upload",
        .roster.len(),
        .roster.join(", ")
    )]
    BelowQuorum {
        round: u64,
        roster: Vec<String>,
        quorum: usize,
    },
    #[error(
        "the aggregator says round {round} with {members} members is {}masked; the plan masks \
         every round of three or more: refusing to upload",
        if *.masked { "" } else { "not " }
    )]
    MaskingMismatch {
        round: u64,
        members: usize,
        masked: bool,
    },
}
