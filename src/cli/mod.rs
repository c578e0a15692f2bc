//! Command-line interface: argument parsing and dispatch. Each command group
//! lives in its own file; all real work is done by the library.
//!
//! Printing is this module's job (the library and the app never print).
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod bench_cmds;
mod bench_processes;
mod crypto_cmds;
mod data_cmds;
mod dp_cmds;
mod export_cmds;
mod fed_cmds;
mod gbdt_args;
mod gbdt_cmds;
mod plan_cmds;
mod sgd_args;

use clap::{Parser, Subcommand};

/// FedHE: federated learning (logistic, softmax and linear regression, MLPs) with TFHE-rs encrypted updates.
///
/// Run without a command to open the desktop app.
#[derive(Debug, Parser)]
#[command(
    name = "fedhe",
    version,
    about,
    long_about = None,
    args_conflicts_with_subcommands = true,
    after_help = "Run `fedhe` without a command to open the desktop app; `fedhe data.csv` opens it with that CSV loaded."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Open the desktop app with this CSV loaded in the Client tab.
    #[arg(value_name = "CSV")]
    pub csv: Option<std::path::PathBuf>,
}

// Parsed once per process and matched at once: the variants' sizes do not
// matter, and boxing them would only obscure clap's derive.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Split a CSV into a stratified test set and per-client training files.
    Split(data_cmds::SplitArgs),
    /// Train a linear model, an MLP or gradient-boosted trees on a CSV (plaintext, one machine).
    Train(data_cmds::TrainArgs),
    /// Score a CSV with a saved model and print its metrics.
    Predict(data_cmds::PredictArgs),
    /// Export a model file to ONNX: the raw columns in, preprocessing and model inside.
    Export(export_cmds::ExportArgs),
    /// Write or check a federation plan (columns, task, model, training, quorum).
    Plan {
        #[command(subcommand)]
        what: plan_cmds::PlanCommand,
    },
    /// Differential privacy: ε of DP-SGD settings, or the noise for a target ε.
    Dp {
        #[command(subcommand)]
        what: dp_cmds::DpCommand,
    },
    /// Generate a TFHE key pair: DIR/secret.key (trusted clients) and DIR/public.key (aggregator).
    Keygen(crypto_cmds::KeygenArgs),
    /// Run the aggregator (HTTP; holds only the public key).
    Serve(fed_cmds::ServeArgs),
    /// Take part in a federation as one client.
    Client(fed_cmds::ClientArgs),
    /// Simulate a federation: embedded aggregator + N client threads.
    Simulate(fed_cmds::SimulateArgs),
    /// Benchmarks (run in a release build).
    Bench {
        #[command(subcommand)]
        what: BenchWhat,
    },
}

/// `fedhe bench data | crypto | federation`: each group's own benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchWhat {
    #[command(flatten)]
    Data(bench_cmds::BenchWhat),
    #[command(flatten)]
    Crypto(crypto_cmds::BenchWhat),
    /// Many clients, one large round through the HTTP aggregator (`fedhe serve` child process).
    Federation(fed_cmds::BenchFederationArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => open_app(cli.csv),
        Some(Command::Split(a)) => data_cmds::split(a),
        Some(Command::Train(a)) => data_cmds::train(a),
        Some(Command::Predict(a)) => data_cmds::predict(a),
        Some(Command::Export(a)) => export_cmds::export(a),
        Some(Command::Plan { what }) => plan_cmds::run(what),
        Some(Command::Dp { what }) => dp_cmds::run(what),
        Some(Command::Keygen(a)) => crypto_cmds::keygen(a),
        Some(Command::Serve(a)) => fed_cmds::serve(a),
        Some(Command::Client(a)) => fed_cmds::client(a),
        Some(Command::Simulate(a)) => fed_cmds::simulate_cmd(a),
        Some(Command::Bench { what }) => {
            // Figures from a shared machine mean little without its load.
            if let Some(load) = bench_cmds::load_line() {
                eprintln!("{load}");
            }
            match what {
                BenchWhat::Data(w) => bench_cmds::run(w),
                BenchWhat::Crypto(w) => crypto_cmds::bench(w),
                BenchWhat::Federation(a) => fed_cmds::bench_federation(a),
            }
        }
    }
}

#[cfg(feature = "gui")]
fn open_app(csv: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    // `fedhe typo` should not open a window on a file that is not there.
    if let Some(p) = &csv
        && !p.is_file()
    {
        anyhow::bail!(
            "{} is neither a command nor a CSV file; run `fedhe --help`",
            p.display()
        );
    }
    fedhe_app::app::run(csv)?;
    Ok(())
}

#[cfg(not(feature = "gui"))]
fn open_app(_csv: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    anyhow::bail!("this build has no desktop app (built without feature `gui`); run `fedhe --help`")
}
