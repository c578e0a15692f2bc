//! Privacy against the other sites (identity keys and the key agreement of
//! the pairwise masks, [`masks`]) and differential privacy for the rows: the Rényi-DP accountant of the
//! subsampled Gaussian mechanism (DP-SGD's noise), composed over steps and
//! converted to (ε, δ); and DP-SGD's settings (per-example clipping, Gaussian
//! noise, Poisson sampling; the training step is `model::dp_epoch`).

mod accountant;
mod dpsgd;
pub mod masks;
mod masks_bench;
mod noise;
pub mod secagg;
pub mod shamir;

pub use accountant::{
    DEFAULT_ORDERS, MAX_NOISE_MULTIPLIER, PrivacySpent, epsilon, noise_multiplier_for, rdp,
};
pub use dpsgd::{
    DpBudget, DpSettings, DpSgd, PrivacyRecord, clip_gradient, sample_rate, steps_per_epoch,
};
pub use masks::{AttemptSecret, Identity, KeyAnnouncement, MaskContext, MaskError, masks_apply};
pub use masks_bench::{MaskBench, MaskBenchError, run_mask_bench};
pub use noise::{DpRng, DpSeed, NoiseGrid, SiteSecret, os_bytes};

#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    #[error("{name} = {value} is out of range: {bound}")]
    OutOfRange {
        name: &'static str,
        value: f64,
        bound: &'static str,
    },
    #[error(
        "no noise multiplier up to {max} reaches ε = {target} with these settings (ε at {max} is {reached}); use fewer steps, a lower sample rate, or a larger ε"
    )]
    Unreachable { target: f64, max: f64, reached: f64 },
    #[error("the operating system's random generator failed")]
    Entropy,
}
