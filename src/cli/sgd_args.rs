//! The local training flags (`--epochs --lr --batch-size --l2 --momentum
//! --seed`, and the optimizer's: `--optimizer --beta1 --beta2 --eps
//! --weight-decay --schedule --step-every --step-gamma --grad-clip`), one
//! struct for every command that trains: `fedhe train` with one machine's
//! defaults, `simulate` and `plan init` with a federation's.

use std::marker::PhantomData;

use fedhe::model::{LocalSgd, Optimizer, OptimizerKind, Schedule, TrainConfig};

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
        --schedule cosine; with DP-SGD (--dp-clip) --optimizer sgd --lr 0.1 --l2 0 --schedule \
        constant";
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
    /// The settings these flags give; `dp`: with DP-SGD, whose defaults
    /// differ.
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
            },
        }
    }
}
