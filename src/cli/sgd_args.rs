//! The local training flags (`--epochs --lr --batch-size --l2 --momentum
//! --seed`, and the optimizer's: `--optimizer --beta1 --beta2 --eps
//! --weight-decay --schedule --step-every --step-gamma --grad-clip`), one
//! struct for every command that trains: `fedhe train` with one machine's
//! defaults, `simulate` and `plan init` with a federation's; and a
//! federation's server optimizer and FedProx flags ([`ServerArgs`]).

use std::marker::PhantomData;

use fedhe::model::{
    LocalSgd, Optimizer, OptimizerKind, Schedule, ServerOptimizer, ServerOptimizerKind, TrainConfig,
};

/// Where [`SgdArgs`] takes its defaults from.
pub trait SgdDefaults {
    /// What `--epochs` counts.
    const EPOCHS_HELP: &'static str;
    /// What `--seed` seeds.
    const SEED_HELP: &'static str;
    /// The defaults shown in `--help` and used without a flag.
    fn defaults() -> LocalSgd;
    /// The defaults with DP-SGD, whose step is SGD whatever the optimizer.
    fn dp_defaults() -> LocalSgd {
        Self::defaults()
    }
    /// `--lr`'s, `--l2`'s, `--optimizer`'s and `--schedule`'s defaults in
    /// words (they differ with DP-SGD).
    const DEFAULTS_HELP: &'static str;
}

/// A federation's defaults: `plan::Training::default()`.
#[derive(Debug, Clone, Copy)]
pub struct Federation;

impl SgdDefaults for Federation {
    const EPOCHS_HELP: &'static str = "Local epochs per round";
    const SEED_HELP: &'static str = "Seed of the MLP's initial weights (the same at every site), of \
        the validation split, and, mixed with the round and the site's id, of shuffling";
    fn defaults() -> LocalSgd {
        fedhe::plan::Training::default().sgd
    }
    /// DP-SGD's step is SGD: plain SGD at lr 0.1 (the settings its
    /// accuracy figures were measured with).
    fn dp_defaults() -> LocalSgd {
        fedhe::plan::Training::LEGACY.sgd
    }
    const DEFAULTS_HELP: &'static str = "Without a flag: --optimizer adam --lr 0.005 --l2 0.001 \
        --schedule cosine; with DP-SGD (--dp-clip) or a --server-optimizer other than fedavg \
        --optimizer sgd --lr 0.1 --l2 0 --schedule constant";
}

/// One machine's defaults (`fedhe train`): `TrainConfig::default()`.
#[derive(Debug, Clone, Copy)]
pub struct OneMachine;

impl SgdDefaults for OneMachine {
    const EPOCHS_HELP: &'static str = "Passes over the training data";
    const SEED_HELP: &'static str = "Seed for shuffling (runs are deterministic given the seed)";
    fn defaults() -> LocalSgd {
        TrainConfig::default().sgd()
    }
    const DEFAULTS_HELP: &'static str =
        "Without a flag: --optimizer sgd --lr 0.05 --l2 0.001 --schedule constant";
}

/// The local SGD flags, flattened into a command (`#[command(flatten)]`).
#[derive(Debug, Clone, clap::Args)]
pub struct SgdArgs<D: SgdDefaults + Send + Sync + 'static> {
    // `default_value` strings, not `default_value_t`: clap keeps the latter
    // in one static per field, which every `D` would share.
    #[arg(long, default_value = D::defaults().epochs.to_string(), help = D::EPOCHS_HELP)]
    pub epochs: usize,
    /// Learning rate (see --optimizer for the defaults).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Rows per mini-batch.
    #[arg(long, default_value = D::defaults().batch_size.to_string())]
    pub batch_size: usize,
    /// L2 penalty (l2/2 · |w|²; see --optimizer for the defaults).
    #[arg(long)]
    pub l2: Option<f64>,
    /// SGD momentum (0: plain SGD).
    #[arg(long, default_value = D::defaults().momentum.to_string())]
    pub momentum: f64,
    #[arg(long, default_value = D::defaults().seed.to_string(), help = D::SEED_HELP)]
    pub seed: u64,
    /// Local step rule: sgd (with --momentum), nesterov, adam or adamw.
    #[arg(long, long_help = format!("Local step rule: sgd (with --momentum), nesterov, adam or \
          adamw. {}", D::DEFAULTS_HELP),
          value_parser = clap::builder::PossibleValuesParser::new(OptimizerKind::ALL.map(OptimizerKind::name)))]
    pub optimizer: Option<String>,
    /// Adam's first-moment decay β1.
    #[arg(long, default_value = D::defaults().optimizer.beta1.to_string())]
    pub beta1: f64,
    /// Adam's second-moment decay β2.
    #[arg(long, default_value = D::defaults().optimizer.beta2.to_string())]
    pub beta2: f64,
    /// Adam's ε.
    #[arg(long, default_value = D::defaults().optimizer.eps.to_string())]
    pub eps: f64,
    /// Weight decay of the weights (decoupled with adamw, added to the
    /// gradient otherwise).
    #[arg(long, default_value = D::defaults().optimizer.weight_decay.to_string())]
    pub weight_decay: f64,
    /// Learning-rate schedule over the rounds (one machine: the epochs):
    /// constant, step (× --step-gamma every --step-every) or cosine.
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(Schedule::NAMES))]
    pub schedule: Option<String>,
    /// A step schedule's period, in rounds (or epochs).
    #[arg(long, default_value = "10")]
    pub step_every: u64,
    /// A step schedule's factor.
    #[arg(long, default_value = "0.5")]
    pub step_gamma: f64,
    /// Clip every example's gradient to this L2 norm (0: off; robustness to
    /// outlying rows, not DP).
    #[arg(long, default_value = D::defaults().optimizer.clip.to_string())]
    pub grad_clip: f64,
    #[arg(skip)]
    defaults: PhantomData<D>,
}

impl<D: SgdDefaults + Send + Sync + 'static> SgdArgs<D> {
    /// The settings these flags give; `dp`: with DP-SGD (or a server
    /// optimizer), whose defaults are plain SGD's.
    pub fn sgd_for(&self, dp: bool) -> LocalSgd {
        let d = if dp { D::dp_defaults() } else { D::defaults() };
        let kind = self.optimizer.as_deref().and_then(OptimizerKind::from_name);
        let schedule = self
            .schedule
            .as_deref()
            .unwrap_or(d.optimizer.schedule.name());
        LocalSgd {
            epochs: self.epochs,
            lr: self.lr.unwrap_or(d.lr),
            batch_size: self.batch_size,
            l2: self.l2.unwrap_or(d.l2),
            momentum: self.momentum,
            seed: self.seed,
            optimizer: Optimizer {
                kind: kind.unwrap_or(d.optimizer.kind),
                beta1: self.beta1,
                beta2: self.beta2,
                eps: self.eps,
                weight_decay: self.weight_decay,
                schedule: match schedule {
                    "step" => Schedule::Step {
                        every: self.step_every,
                        gamma: self.step_gamma,
                    },
                    "cosine" => Schedule::Cosine,
                    _ => Schedule::Constant,
                },
                clip: self.grad_clip,
                ..d.optimizer
            },
        }
    }
}

/// A federation's server optimizer and FedProx flags (`simulate`, `plan
/// init`): how every site moves the global model by a round's mean.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// How every site moves the global model by a round's decrypted mean:
    /// fedavg (the mean), fedavgm (server momentum), fedadam, fedyogi or
    /// fedadagrad (Reddi et al. 2021).
    #[arg(long, default_value = "fedavg",
          value_parser = clap::builder::PossibleValuesParser::new(ServerOptimizerKind::ALL.map(ServerOptimizerKind::name)))]
    pub server_optimizer: String,
    /// Server learning rate η (default: 1 for fedavg and fedavgm, 0.1 for
    /// fedadam and fedyogi, 0.3 for fedadagrad). Every rule but fedavg
    /// makes the local defaults plain SGD at lr 0.1 (--optimizer sgd --lr
    /// 0.1 --l2 0 --schedule constant), as Reddi et al.'s clients.
    #[arg(long)]
    pub server_lr: Option<f64>,
    /// fedavgm's server momentum β.
    #[arg(long, default_value = ServerOptimizer::FEDAVG.momentum.to_string())]
    pub server_momentum: f64,
    /// fedadam's and fedyogi's β1 (first moment; also fedadagrad's).
    #[arg(long, default_value = ServerOptimizer::FEDAVG.beta1.to_string())]
    pub server_beta1: f64,
    /// fedadam's and fedyogi's β2 (second moment).
    #[arg(long, default_value = ServerOptimizer::FEDAVG.beta2.to_string())]
    pub server_beta2: f64,
    /// The adaptive server optimizers' τ.
    #[arg(long, default_value = ServerOptimizer::FEDAVG.tau.to_string())]
    pub server_tau: f64,
    /// FedProx: the proximal term μ/2 · |w − w_global|² in local training
    /// (0: off), for sites whose rows differ.
    #[arg(long, default_value = "0")]
    pub prox_mu: f64,
}

impl ServerArgs {
    /// Whether the local flags' defaults are plain SGD's (every server
    /// optimizer but fedavg).
    pub fn plain_local(&self) -> bool {
        ServerOptimizerKind::from_name(&self.server_optimizer)
            .is_some_and(ServerOptimizerKind::wants_plain_sgd)
    }

    /// A federation's local settings from `sgd`'s flags (plain SGD's
    /// defaults with DP-SGD, `dp`, or a server optimizer) with these server
    /// optimizer and FedProx settings.
    pub fn local(&self, sgd: &SgdArgs<Federation>, dp: bool) -> LocalSgd {
        self.apply(sgd.sgd_for(dp || self.plain_local()))
    }

    /// `sgd` with these server optimizer and FedProx settings.
    pub fn apply(&self, mut sgd: LocalSgd) -> LocalSgd {
        let kind = ServerOptimizerKind::from_name(&self.server_optimizer).unwrap_or_default();
        sgd.optimizer.server = ServerOptimizer {
            kind,
            lr: self.server_lr.unwrap_or(kind.default_lr()),
            momentum: self.server_momentum,
            beta1: self.server_beta1,
            beta2: self.server_beta2,
            tau: self.server_tau,
        };
        sgd.optimizer.prox_mu = self.prox_mu;
        sgd
    }
}
