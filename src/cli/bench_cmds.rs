//! `fedhe bench ...`: release-build benchmarks printing medians.

#[derive(Debug, clap::Subcommand)]
pub enum BenchWhat {
    /// CSV parse throughput and one training epoch on a large synthetic set.
    Data(DataBenchArgs),
    /// Pairwise and double masking: one client's and the aggregator's cost per round.
    Masks(MaskBenchArgs),
    /// Gradient-boosted trees federated in-process: time, rounds and bytes per tree.
    Gbdt(GbdtBenchArgs),
}

#[derive(Debug, clap::Args)]
pub struct GbdtBenchArgs {
    /// Rows of the synthetic table (a9a's size by default).
    #[arg(long, default_value_t = 32_561)]
    pub rows: usize,
    /// Binary feature columns (a9a's 123 by default).
    #[arg(long, default_value_t = 123)]
    pub features: usize,
    /// Sites the rows are dealt to (one thread each).
    #[arg(long, default_value_t = 3)]
    pub sites: usize,
    /// Boosting iterations to time.
    #[arg(long, default_value_t = 10)]
    pub trees: usize,
    #[arg(long, default_value_t = 6)]
    pub depth: usize,
    #[arg(long, default_value_t = 256)]
    pub bins: usize,
    /// Parameter set: standard64 or compact32.
    #[arg(long, default_value = "standard64")]
    pub params: fedhe::crypto::ParamSet,
    /// The plaintext exchange (no encryption, no HTTP).
    #[arg(long)]
    pub plain: bool,
    /// No pairwise masks.
    #[arg(long)]
    pub no_masks: bool,
    /// Separate processes, as a federation runs: `fedhe serve` with a state
    /// folder and one `fedhe client` per site (state file, mask ledger),
    /// over loopback HTTP, in a temporary folder.
    #[arg(long, conflicts_with = "plain")]
    pub processes: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// "machine: load average 0.35 / 0.41 / 0.60 (1, 5, 15 min) on 2 cores,
/// before the run" (Linux `/proc/loadavg`; `None` elsewhere).
pub fn load_line() -> Option<String> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let avg: Vec<&str> = text.split_whitespace().take(3).collect();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    (avg.len() == 3).then(|| {
        format!(
            "machine: load average {} (1, 5, 15 min) on {cores} cores, before the run",
            avg.join(" / ")
        )
    })
}

/// The process's peak resident memory (Linux `VmHWM`), in MB.
fn peak_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn gbdt(a: GbdtBenchArgs) -> anyhow::Result<()> {
    let settings = fedhe::model::gbdt::GbdtSettings {
        trees: a.trees,
        depth: a.depth,
        bins: a.bins,
        ..Default::default()
    };
    if a.processes {
        return super::bench_processes::run(&a, settings);
    }
    let r = fedhe::federation::run_gbdt_bench(
        a.rows,
        a.features,
        a.sites,
        settings,
        a.params,
        a.plain,
        !a.no_masks,
    )?;
    let peak = peak_mb();
    if a.json {
        let mut v = serde_json::to_value(&r)?;
        v["peak_mb"] = serde_json::json!(peak);
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let how = match (r.plain, r.masked) {
        (true, _) => "plaintext exchange",
        (false, true) => "encrypted and masked, over loopback HTTP",
        (false, false) => "encrypted, unmasked, over loopback HTTP",
    };
    println!(
        "gbdt benchmark: {} rows × {} binary features over {} sites ({how}), {} trees of depth {}, {} bins",
        r.rows, r.features, r.sites, r.trees, r.depth, r.bins
    );
    println!("| measurement (one site; every site does the same) | value |");
    println!("|---|---:|");
    println!(
        "| time per tree, median (min – max) | {:.0} ms ({:.0} – {:.0}) |",
        r.tree_ms_median, r.tree_ms_min, r.tree_ms_max
    );
    println!("| rounds per tree | {:.0} |", r.rounds_per_tree);
    println!(
        "| values uploaded per tree (4 limbs each) | {:.0} |",
        r.values_per_tree
    );
    println!(
        "| bytes up / down per tree | {:.1} MB / {:.1} MB |",
        r.bytes_up_per_tree / 1e6,
        r.bytes_down_per_tree / 1e6
    );
    println!("| bins round | {:.0} ms |", r.bins_ms);
    println!(
        "| whole run (keys, statistics, bins, trees) | {:.1} s |",
        r.total_ms / 1e3
    );
    if let Some(p) = peak {
        println!("| peak memory of the process (all sites and the aggregator) | {p:.0} MB |");
    }
    println!(
        "| the same trees at every site | {} |",
        if r.same_at_every_site { "yes" } else { "NO" }
    );
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct MaskBenchArgs {
    /// Clients in the round (each client masks with all the others).
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Values per update.
    #[arg(long, default_value_t = 1_000_000)]
    pub values: usize,
    /// Runs per measurement (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn masks(a: MaskBenchArgs) -> anyhow::Result<()> {
    let r = fedhe::privacy::run_mask_bench(a.clients, a.values, a.repeats)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    println!(
        "mask benchmark: one client of {} masking {} values, median of {}",
        r.clients, r.values, r.repeats
    );
    println!("| measurement | median |");
    println!("|---|---:|");
    println!(
        "| key agreement with {} partners (X25519 + HKDF) | {:.1} ms |",
        r.clients.saturating_sub(1),
        r.agree_ms
    );
    println!(
        "| masks added to the encoded update | {:.0} ms |",
        r.mask_ms
    );
    println!(
        "| masking per client per round (both) | {:.0} ms |",
        r.agree_ms + r.mask_ms
    );
    println!(
        "| encryption without / with masks | {:.0} ms / {:.0} ms |",
        r.encrypt_ms, r.encrypt_masked_ms
    );
    print_double(&r);
    Ok(())
}

fn print_double(r: &fedhe::privacy::MaskBench) {
    println!(
        "| double masks: pair + self masks added to the encoded update | {:.0} ms |",
        r.double_mask_ms
    );
    println!(
        "| double masks: sealing the share bundles for {} members | {:.1} ms |",
        r.clients, r.seal_ms
    );
    println!(
        "| double masks: checking the survivors, opening the bundles, revealing | {:.1} ms |",
        r.reveal_ms
    );
    println!(
        "| double masks per site per round (all three) | {:.0} ms |",
        r.double_mask_ms + r.seal_ms + r.reveal_ms
    );
    println!(
        "| aggregator: reconstructing the seeds (one member dropped) | {:.1} ms |",
        r.reconstruct_ms
    );
    println!(
        "| aggregator: taking the masks off the encrypted sum | {:.0} ms |",
        r.unmask_sum_ms
    );
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
        BenchWhat::Masks(a) => masks(a),
        BenchWhat::Gbdt(a) => gbdt(a),
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
