//! `fedhe split`, `fedhe train`, `fedhe predict`.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use fedhe::data::split::{Partition, partition, stratified_split, write_csv};
use fedhe::data::{CsvOptions, LoadedCsv, load_csv};
use fedhe::model::{ClassWeight, Metrics, ModelFile, TrainConfig, score_csv, write_predictions};

/// Column choices shared by every command that reads a training CSV.
#[derive(Debug, Clone, clap::Args)]
pub struct SchemaArgs {
    /// Label column (default: the first of diagnosis, label, target, class, y).
    #[arg(long)]
    pub label: Option<String>,
    /// Columns to leave out of the features (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub ignore: Vec<String>,
    /// Columns to keep as features even if they look like ids (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub keep: Vec<String>,
    /// The label value that means the positive class (e.g. M).
    #[arg(long)]
    pub positive: Option<String>,
    /// Field separator: one character, or `tab` (default: comma, or what the
    /// header shows when it has semicolons or tabs and no comma).
    #[arg(long, value_parser = parse_delimiter)]
    pub delimiter: Option<u8>,
}

/// `--delimiter` value: one ASCII character, or `tab`.
pub fn parse_delimiter(s: &str) -> Result<u8, String> {
    match s {
        "tab" | "\\t" | "\t" => Ok(b'\t'),
        _ if s.len() == 1 && s.is_ascii() && s != "\"" && s != "\n" => Ok(s.as_bytes()[0]),
        _ => Err(format!(
            "{s:?} is not a field separator: give one character such as ; or |, or `tab`"
        )),
    }
}

impl SchemaArgs {
    pub fn options(&self) -> CsvOptions {
        CsvOptions {
            label: self.label.clone(),
            ignore: self.ignore.clone(),
            keep: self.keep.clone(),
            positive: self.positive.clone(),
            delimiter: self.delimiter,
            ..CsvOptions::default()
        }
    }
}

/// Settings of `fedhe train` (one machine); a federation's come from its plan.
#[derive(Debug, Clone, clap::Args)]
pub struct TrainingArgs {
    /// Passes over the training data.
    #[arg(long, default_value_t = TrainConfig::default().epochs)]
    pub epochs: usize,
    /// SGD learning rate.
    #[arg(long, default_value_t = TrainConfig::default().lr)]
    pub lr: f64,
    /// Rows per mini-batch.
    #[arg(long, default_value_t = TrainConfig::default().batch_size)]
    pub batch_size: usize,
    /// L2 penalty (l2/2 · |w|²).
    #[arg(long, default_value_t = TrainConfig::default().l2)]
    pub l2: f64,
    /// Seed for shuffling (runs are deterministic given the seed).
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    pub seed: u64,
    /// Weight classes inversely to their frequency.
    #[arg(long)]
    pub balanced: bool,
}

impl TrainingArgs {
    pub fn config(&self) -> TrainConfig {
        TrainConfig {
            epochs: self.epochs,
            lr: self.lr,
            batch_size: self.batch_size,
            l2: self.l2,
            seed: self.seed,
            class_weight: if self.balanced {
                ClassWeight::Balanced
            } else {
                ClassWeight::None
            },
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct SplitArgs {
    /// CSV file to split.
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub schema: SchemaArgs,
    /// Number of client files to write.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Fraction of rows (per class) held out as test.csv.
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
    /// How training rows are dealt: iid, or dirichlet:ALPHA for label skew.
    #[arg(long, default_value = "iid")]
    pub split: Partition,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Output folder: writes test.csv, train.csv and clients/client_N.csv.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace output files that exist (never the input file).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Training CSV.
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub schema: SchemaArgs,
    #[command(flatten)]
    pub training: TrainingArgs,
    /// Where to write the model (JSON).
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// Model file written by `train`, `simulate` or the app.
    #[arg(long)]
    pub model: PathBuf,
    /// CSV to score (needs the model's feature columns; the label is optional).
    #[arg(long)]
    pub data: PathBuf,
    /// Write one prediction per row to this CSV.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn print_notices(loaded: &LoadedCsv) {
    for n in &loaded.notices {
        eprintln!("note: {n}");
    }
}

/// The same file, whatever the path spelling (`d/train.csv`, `./d/../d/train.csv`).
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

pub fn split(a: SplitArgs) -> anyhow::Result<()> {
    let clients_dir = a.out.join("clients");
    let mut outputs = vec![a.out.join("test.csv"), a.out.join("train.csv")];
    outputs.extend((1..=a.clients).map(|i| clients_dir.join(format!("client_{i}.csv"))));
    if let Some(p) = outputs.iter().find(|p| same_file(p, &a.data)) {
        anyhow::bail!(
            "{} is the input file: splitting it into --out {} would overwrite it; choose another --out",
            p.display(),
            a.out.display()
        );
    }
    let existing: Vec<String> = outputs
        .iter()
        .filter(|p| p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if !existing.is_empty() && !a.force {
        anyhow::bail!(
            "{} output file(s) exist ({}); add --force to replace them, or choose another --out",
            existing.len(),
            existing.join(", ")
        );
    }
    let loaded = load_csv(&a.data, &a.schema.options())?;
    print_notices(&loaded);
    let ds = loaded.dataset;
    let (train_set, test_set) = stratified_split(&ds, a.test_fraction, a.seed)?;
    let parts = partition(&train_set, a.clients, a.split, a.seed)?;
    std::fs::create_dir_all(&clients_dir)
        .with_context(|| format!("cannot create {}", clients_dir.display()))?;
    write_csv(&test_set, &a.out.join("test.csv"))?;
    write_csv(&train_set, &a.out.join("train.csv"))?;
    let describe = |name: &str, d: &fedhe::data::Dataset| {
        println!(
            "{name:<28} {:>5} rows  {:>4} positive ({:.1}%)",
            d.rows(),
            d.positives(),
            100.0 * d.positives() as f64 / d.rows().max(1) as f64
        );
    };
    describe(&a.out.join("test.csv").display().to_string(), &test_set);
    describe(&a.out.join("train.csv").display().to_string(), &train_set);
    for (i, p) in parts.iter().enumerate() {
        let path = clients_dir.join(format!("client_{}.csv", i + 1));
        write_csv(p, &path)?;
        describe(&path.display().to_string(), p);
    }
    println!(
        "split {} ({} rows, label {:?}, positive {:?}) with --split {} --seed {}",
        a.data.display(),
        ds.rows(),
        ds.label.column,
        ds.label.positive,
        a.split,
        a.seed
    );
    Ok(())
}

pub fn train(a: TrainArgs) -> anyhow::Result<()> {
    let cfg = a.training.config();
    let loaded = load_csv(&a.data, &a.schema.options())?;
    print_notices(&loaded);
    let ds = loaded.dataset;
    eprintln!(
        "training on {} rows × {} features (label {:?}, positive {:?})",
        ds.rows(),
        ds.feature_names.len(),
        ds.label.column,
        ds.label.positive
    );
    let bar = indicatif::ProgressBar::new(cfg.epochs as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} epoch {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let start = Instant::now();
    let run = fedhe::session::train_local(
        &ds,
        &cfg,
        0.0,
        vec![a.data.display().to_string()],
        &mut |s| {
            bar.set_position(s.epoch as u64);
            bar.set_message(format!("loss {:.4} accuracy {:.4}", s.loss, s.accuracy));
            ControlFlow::Continue(())
        },
    )?;
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    if let Some(last) = run.summary.last {
        println!(
            "trained {} epochs in {:.0} ms: training loss {:.4}, accuracy {:.4}",
            run.summary.epochs_run,
            secs * 1e3,
            last.loss,
            last.accuracy
        );
    }
    let train_metrics = run.training;
    run.model.save(&a.out)?;
    println!(
        "training ROC AUC {}; model written to {}",
        train_metrics
            .roc_auc
            .map_or("n/a".to_string(), |v| format!("{v:.4}")),
        a.out.display()
    );
    Ok(())
}

pub fn predict(a: PredictArgs) -> anyhow::Result<()> {
    let model = ModelFile::load(&a.model)?;
    let scored = score_csv(&model, &a.data)?;
    for n in &scored.notices {
        eprintln!("note: {n}");
    }
    println!(
        "scored {} rows of {} with {}",
        scored.probs.len(),
        a.data.display(),
        a.model.display()
    );
    match &scored.metrics {
        Some(m) => print!("{}", metrics_table(m, &model)),
        None => println!(
            "(no label column {:?} in the file: predictions only, no metrics)",
            model.label.column
        ),
    }
    if let Some(out) = &a.out {
        write_predictions(&model, &scored, out)?;
        println!("predictions written to {}", out.display());
    }
    Ok(())
}

/// The metrics table printed by `predict` (and `simulate`).
pub fn metrics_table(m: &Metrics, model: &ModelFile) -> String {
    let c = m.confusion;
    let auc = m.roc_auc.map_or("n/a".to_string(), |v| format!("{v:.4}"));
    let (p, n) = (&model.label.positive, &model.label.negative);
    format!(
        "metric      value\n\
         accuracy    {:.4}\n\
         precision   {:.4}\n\
         recall      {:.4}\n\
         f1          {:.4}\n\
         roc_auc     {auc}\n\
         log_loss    {:.4}\n\
         \n\
         confusion matrix (rows: actual, columns: predicted)\n\
         {:>12} {:>8} {:>8}\n\
         {:>12} {:>8} {:>8}\n\
         {:>12} {:>8} {:>8}\n",
        m.accuracy,
        m.precision,
        m.recall,
        m.f1,
        m.log_loss,
        "",
        trunc(n),
        trunc(p),
        trunc(n),
        c.tn,
        c.fp,
        trunc(p),
        c.fn_,
        c.tp,
    )
}

fn trunc(s: &str) -> String {
    s.chars().take(12).collect()
}
