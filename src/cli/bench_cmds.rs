//! `fedhe bench ...`: release-build benchmarks printing medians.

#[derive(Debug, clap::Subcommand)]
pub enum BenchWhat {
    /// CSV parse throughput and one training epoch on a large synthetic set.
    Data(DataBenchArgs),
}

#[derive(Debug, clap::Args)]
pub struct DataBenchArgs {
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: usize,
    #[arg(long, default_value_t = 30)]
    pub features: usize,
    /// Runs per measurement (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(what: BenchWhat) -> anyhow::Result<()> {
    match what {
        BenchWhat::Data(a) => data(a),
    }
}

fn data(a: DataBenchArgs) -> anyhow::Result<()> {
    let r = fedhe::model::run_data_bench(a.rows, a.features, a.repeats, &mut |m| eprintln!("{m}"))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "data benchmark: {} rows × {} features, {:.1} MB CSV, median of {}",
        r.rows,
        r.features,
        r.file_bytes as f64 / 1e6,
        r.repeats
    );
    println!("| measurement | median |");
    println!("|---|---:|");
    println!(
        "| CSV parse | {:.0} ms ({:.0} MB/s) |",
        r.parse_ms_median, r.parse_mb_per_s
    );
    println!(
        "| logistic regression: one epoch with its evaluation (batch {}) | {:.0} ms |",
        r.batch_size, r.epoch_ms_median
    );
    println!(
        "| softmax regression, 10 classes: one SGD pass (batch {}) | {:.0} ms |",
        r.batch_size, r.softmax10_epoch_ms_median
    );
    println!(
        "| MLP, hidden 64: one SGD pass (batch {}) | {:.0} ms |",
        r.batch_size, r.mlp64_epoch_ms_median
    );
    println!(
        "| MLP, hidden 64: scoring every row | {:.0} ms |",
        r.mlp64_predict_ms_median
    );
    Ok(())
}
