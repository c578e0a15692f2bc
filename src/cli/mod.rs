//! Command-line interface: argument parsing and dispatch. Each command group
//! lives in its own file; all real work is done by the library.

mod bench_cmds;
mod data_cmds;
mod fed_cmds;

use clap::{Parser, Subcommand};

/// FedHE: federated logistic regression with TFHE-rs encrypted updates.
///
/// Run without a command to open the desktop app.
#[derive(Debug, Parser)]
#[command(
    name = "fedhe",
    version,
    about,
    long_about = None,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Open the desktop app with this CSV loaded in the Client tab.
    #[arg(value_name = "CSV")]
    pub csv: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Split a CSV into a stratified test set and per-client training files.
    Split(data_cmds::SplitArgs),
    /// Train a logistic-regression model on a CSV (plaintext, one machine).
    Train(data_cmds::TrainArgs),
    /// Score a CSV with a saved model and print its metrics.
    Predict(data_cmds::PredictArgs),
    /// Run the aggregator (HTTP; holds only the public key).
    Serve(fed_cmds::ServeArgs),
    /// Take part in a federation as one client.
    Client(fed_cmds::ClientArgs),
    /// Simulate a federation: embedded aggregator + N client threads.
    Simulate(fed_cmds::SimulateArgs),
    /// Benchmark: many clients, one large round through the HTTP aggregator.
    BenchFederation(fed_cmds::BenchFederationArgs),
    /// Benchmarks (run in a release build).
    Bench {
        #[command(subcommand)]
        what: bench_cmds::BenchWhat,
    },
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => open_app(cli.csv),
        Some(Command::Split(a)) => data_cmds::split(a),
        Some(Command::Train(a)) => data_cmds::train(a),
        Some(Command::Predict(a)) => data_cmds::predict(a),
        Some(Command::Serve(a)) => fed_cmds::serve(a),
        Some(Command::Client(a)) => fed_cmds::client(a),
        Some(Command::Simulate(a)) => fed_cmds::simulate_cmd(a),
        Some(Command::BenchFederation(a)) => fed_cmds::bench_federation(a),
        Some(Command::Bench { what }) => bench_cmds::run(what),
    }
}

#[cfg(feature = "gui")]
fn open_app(csv: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    fedhe::app::run(csv)?;
    Ok(())
}

#[cfg(not(feature = "gui"))]
fn open_app(_csv: Option<std::path::PathBuf>) -> anyhow::Result<()> {
    anyhow::bail!("this build has no desktop app (built without feature `gui`); run `fedhe --help`")
}
