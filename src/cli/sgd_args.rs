//! The local SGD flags (`--epochs --lr --batch-size --l2 --momentum
//! --seed`), one struct for every command that trains: `fedhe train` with
//! one machine's defaults, `simulate` and `plan init` with a federation's.

use std::marker::PhantomData;

use fedhe::model::{LocalSgd, TrainConfig};

/// Where [`SgdArgs`] takes its defaults from.
pub trait SgdDefaults {
    /// What `--epochs` counts.
    const EPOCHS_HELP: &'static str;
    /// What `--seed` seeds.
    const SEED_HELP: &'static str;
    /// The defaults shown in `--help` and used without a flag.
    fn defaults() -> LocalSgd;
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
}

/// The local SGD flags, flattened into a command (`#[command(flatten)]`).
#[derive(Debug, Clone, clap::Args)]
pub struct SgdArgs<D: SgdDefaults + Send + Sync + 'static> {
    // `default_value` strings, not `default_value_t`: clap keeps the latter
    // in one static per field, which every `D` would share.
    #[arg(long, default_value = D::defaults().epochs.to_string(), help = D::EPOCHS_HELP)]
    pub epochs: usize,
    /// SGD learning rate.
    #[arg(long, default_value = D::defaults().lr.to_string())]
    pub lr: f64,
    /// Rows per mini-batch.
    #[arg(long, default_value = D::defaults().batch_size.to_string())]
    pub batch_size: usize,
    /// L2 penalty (l2/2 · |w|²).
    #[arg(long, default_value = D::defaults().l2.to_string())]
    pub l2: f64,
    /// SGD momentum (0: plain SGD).
    #[arg(long, default_value = D::defaults().momentum.to_string())]
    pub momentum: f64,
    #[arg(long, default_value = D::defaults().seed.to_string(), help = D::SEED_HELP)]
    pub seed: u64,
    #[arg(skip)]
    defaults: PhantomData<D>,
}

impl<D: SgdDefaults + Send + Sync + 'static> SgdArgs<D> {
    /// The settings these flags give.
    pub fn sgd(&self) -> LocalSgd {
        LocalSgd {
            epochs: self.epochs,
            lr: self.lr,
            batch_size: self.batch_size,
            l2: self.l2,
            momentum: self.momentum,
            seed: self.seed,
        }
    }
}
