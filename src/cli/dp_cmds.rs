//! `fedhe dp epsilon | noise`: the RDP accountant of DP-SGD's subsampled
//! Gaussian mechanism (agrees with Google's dp-accounting to 1 %).

use fedhe::privacy::{epsilon, noise_multiplier_for};

#[derive(Debug, clap::Subcommand)]
pub enum DpCommand {
    /// ε after T steps of Poisson sampling at rate Q with noise multiplier S.
    Epsilon {
        /// Poisson sampling rate of a batch (batch size / rows).
        #[arg(long)]
        sample_rate: f64,
        /// Gaussian noise standard deviation / clipping norm.
        #[arg(long)]
        noise_multiplier: f64,
        /// Noisy steps (all local steps of all rounds).
        #[arg(long)]
        steps: u64,
        #[arg(long, default_value_t = 1e-5)]
        delta: f64,
    },
    /// The noise multiplier that keeps ε within a target after T steps.
    Noise {
        #[arg(long)]
        sample_rate: f64,
        #[arg(long)]
        steps: u64,
        #[arg(long, default_value_t = 1e-5)]
        delta: f64,
        /// The target ε.
        #[arg(long)]
        epsilon: f64,
    },
}

pub fn run(cmd: DpCommand) -> anyhow::Result<()> {
    match cmd {
        DpCommand::Epsilon {
            sample_rate,
            noise_multiplier,
            steps,
            delta,
        } => {
            let p = epsilon(sample_rate, noise_multiplier, steps, delta)?;
            println!(
                "epsilon {:.4} at delta {} (RDP order {}; q {sample_rate}, sigma {noise_multiplier}, {steps} steps)",
                p.epsilon, p.delta, p.order
            );
        }
        DpCommand::Noise {
            sample_rate,
            steps,
            delta,
            epsilon: target,
        } => {
            let s = noise_multiplier_for(sample_rate, steps, delta, target)?;
            let spent = epsilon(sample_rate, s, steps, delta)?;
            println!(
                "noise multiplier {s:.4} keeps epsilon at {:.4} <= {target} (delta {delta}, q {sample_rate}, {steps} steps)",
                spent.epsilon
            );
        }
    }
    Ok(())
}
