//! `fedhe split`, `fedhe train`, `fedhe predict`.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use fedhe::data::profile::MissingNumbers;
use fedhe::data::split::{Partition, partition, stratified_split, write_csv};
use fedhe::data::{CsvOptions, LoadedCsv, Target, TargetSpec, TaskKind, load_csv};
use fedhe::model::{
    Architecture, ClassWeight, Evaluation, Metrics, ModelFile, TrainConfig, score_csv,
    write_predictions,
};

use super::sgd_args::{OneMachine, SgdArgs};

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
    /// The task: auto (from the label's values: two → binary, up to 20
    /// integers or any text → multiclass, other numbers → regression),
    /// binary, multiclass or regression.
    #[arg(long, default_value = "auto", value_parser = parse_task)]
    pub task: TaskArg,
    /// Field separator: one character, or `tab` (default: comma, or what the
    /// header shows when it has semicolons or tabs and no comma).
    #[arg(long, value_parser = parse_delimiter)]
    pub delimiter: Option<u8>,
    /// Cell texts that mean "missing", comma-separated (default: empty
    /// cell, NA, NaN, null, ?). Linear and MLP models impute a number with
    /// the mean and give a category a "missing" category; trees send a
    /// missing cell down each split's learned default branch. Rows without a
    /// label are skipped.
    #[arg(long, value_delimiter = ',')]
    pub missing: Vec<String>,
}

/// `--task`: `auto`, or a task kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskArg(pub Option<TaskKind>);

pub fn parse_task(s: &str) -> Result<TaskArg, String> {
    if s.trim().eq_ignore_ascii_case("auto") {
        return Ok(TaskArg(None));
    }
    s.parse::<TaskKind>()
        .map(|t| TaskArg(Some(t)))
        .map_err(|e| format!("{e} (or auto)"))
}

impl TaskArg {
    /// How the loader reads the label for this task.
    pub fn spec(self) -> TargetSpec {
        match self.0 {
            None => TargetSpec::Auto,
            Some(TaskKind::Binary) => TargetSpec::Binary,
            Some(TaskKind::Multiclass) => TargetSpec::Classes(None),
            Some(TaskKind::Regression) => TargetSpec::Numeric,
        }
    }
}

/// DP-SGD flags of `fedhe train`, `simulate` and `plan init`.
#[derive(Debug, Clone, clap::Args)]
pub struct DpArgs {
    /// DP-SGD: clip every example's gradient to this norm (turns DP on).
    #[arg(long)]
    pub dp_clip: Option<f64>,
    /// DP-SGD noise multiplier σ (or give --dp-epsilon).
    #[arg(long, requires = "dp_clip", conflicts_with = "dp_epsilon")]
    pub dp_noise: Option<f64>,
    /// DP-SGD: the ε all of training may spend; σ is chosen to reach it.
    #[arg(long, requires = "dp_clip")]
    pub dp_epsilon: Option<f64>,
    /// With --dp-noise: stop training before ε would pass this.
    #[arg(long, requires = "dp_noise")]
    pub dp_max_epsilon: Option<f64>,
    /// DP δ (default 1 / training rows).
    #[arg(long, requires = "dp_clip")]
    pub dp_delta: Option<f64>,
}

impl DpArgs {
    pub fn settings(&self) -> anyhow::Result<Option<fedhe::privacy::DpSettings>> {
        let Some(clip) = self.dp_clip else {
            return Ok(None);
        };
        let s = fedhe::privacy::DpSettings {
            clip,
            noise_multiplier: self.dp_noise,
            target_epsilon: self.dp_epsilon,
            max_epsilon: self.dp_max_epsilon,
            delta: self.dp_delta,
        };
        s.validate().map_err(|e| anyhow::anyhow!("DP-SGD: {e}"))?;
        Ok(Some(s))
    }
}

/// The model of `fedhe train` and `fedhe simulate`.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// linear (logistic, softmax or linear regression, by task), mlp, or
    /// gbdt (gradient-boosted trees: `fedhe train`, `fedhe simulate`,
    /// `fedhe plan init`).
    #[arg(long = "model", default_value = "linear", value_parser = ["linear", "mlp", "gbdt"])]
    pub kind: String,
    /// Hidden layer sizes of the MLP, e.g. 64 or 64,32 (1 to 3 layers).
    #[arg(long, value_delimiter = ',', default_value = "32")]
    pub hidden: Vec<usize>,
}

impl ModelArgs {
    pub fn architecture(&self) -> anyhow::Result<Architecture> {
        Ok(match self.kind.as_str() {
            "mlp" => {
                fedhe::model::mlp::check_hidden(&self.hidden)
                    .map_err(|e| anyhow::anyhow!("--hidden: {e}"))?;
                Architecture::Mlp {
                    hidden: self.hidden.clone(),
                }
            }
            "gbdt" => anyhow::bail!(
                "--model gbdt: gradient-boosted trees have no SGD architecture (a caller's bug: check is_gbdt first)"
            ),
            _ => Architecture::Linear,
        })
    }

    /// `--model gbdt` (gradient-boosted trees: no SGD model).
    pub fn is_gbdt(&self) -> bool {
        self.kind == "gbdt"
    }

    /// What this model does with a missing number (for the notes).
    pub fn missing(&self) -> MissingNumbers {
        MissingNumbers::for_model(self.is_gbdt())
    }
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
            target: self.task.spec(),
            delimiter: self.delimiter,
            missing_tokens: self.missing.clone(),
            ..CsvOptions::default()
        }
    }

    /// The options for reading `path` without a plan: each column's kind
    /// (number, categories, left out) from a first look at the file, with a
    /// note per decision printed to stderr; `missing` (what the model does
    /// with a missing number) words the notes.
    pub fn options_for(
        &self,
        path: &std::path::Path,
        missing: MissingNumbers,
    ) -> anyhow::Result<CsvOptions> {
        let schema = fedhe::data::profile::auto_schema_for(
            path,
            &self.options(),
            self.label.as_deref(),
            missing,
        )?;
        for n in &schema.notes {
            eprintln!("note: {n}");
        }
        Ok(schema.options)
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
    // One machine's defaults; a federation's come from its plan.
    #[command(flatten)]
    pub sgd: SgdArgs<OneMachine>,
    /// Weight classes inversely to their frequency.
    #[arg(long)]
    pub balanced: bool,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub gbdt: super::gbdt_args::GbdtArgs,
    #[command(flatten)]
    pub dp: DpArgs,
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

pub fn split(a: SplitArgs) -> anyhow::Result<()> {
    let clients_dir = a.out.join("clients");
    let mut outputs = vec![a.out.join("test.csv"), a.out.join("train.csv")];
    outputs.extend((1..=a.clients).map(|i| clients_dir.join(format!("client_{i}.csv"))));
    let named: Vec<(&str, &std::path::Path)> =
        outputs.iter().map(|p| ("--out", p.as_path())).collect();
    fedhe::fsutil::check_outputs(&named, &[("--data", &a.data)])?;
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
    fedhe::data::split::check_split(a.test_fraction, a.clients)?;
    let opts = a.schema.options_for(&a.data, MissingNumbers::Unknown)?;
    let loaded = load_csv(&a.data, &opts)?;
    print_notices(&loaded);
    let ds = loaded.dataset;
    let (train_set, test_set) = stratified_split(&ds, a.test_fraction, a.seed)?;
    let parts = partition(&train_set, a.clients, a.split, a.seed)?;
    std::fs::create_dir_all(&clients_dir)
        .with_context(|| format!("cannot create {}", clients_dir.display()))?;
    write_csv(&test_set, &a.out.join("test.csv"))?;
    write_csv(&train_set, &a.out.join("train.csv"))?;
    let describe = |name: &str, d: &fedhe::data::Dataset| match &d.label {
        Target::Binary(_) => println!(
            "{name:<28} {:>5} rows  {:>4} positive ({:.1}%)",
            d.rows(),
            d.positives(),
            100.0 * d.positives() as f64 / d.rows().max(1) as f64
        ),
        Target::Multiclass { classes, .. } => {
            let mut counts = vec![0usize; classes.len()];
            for &v in &d.y {
                if let Some(c) = counts.get_mut(v as usize) {
                    *c += 1;
                }
            }
            let per: Vec<String> = counts.iter().map(usize::to_string).collect();
            println!(
                "{name:<28} {:>5} rows  per class {}",
                d.rows(),
                per.join(" / ")
            );
        }
        Target::Regression { .. } => {
            let mean = d.y.mean().unwrap_or(0.0);
            println!("{name:<28} {:>5} rows  target mean {mean:.4}", d.rows());
        }
    };
    describe(&a.out.join("test.csv").display().to_string(), &test_set);
    describe(&a.out.join("train.csv").display().to_string(), &train_set);
    for (i, p) in parts.iter().enumerate() {
        let path = clients_dir.join(format!("client_{}.csv", i + 1));
        write_csv(p, &path)?;
        describe(&path.display().to_string(), p);
    }
    println!(
        "split {} ({} rows, {}) with --split {} --seed {}",
        a.data.display(),
        ds.rows(),
        ds.label.describe(),
        a.split,
        a.seed
    );
    Ok(())
}

pub fn train(a: TrainArgs) -> anyhow::Result<()> {
    fedhe::fsutil::check_outputs(&[("--out", &a.out)], &[("--data", &a.data)])?;
    if a.model.is_gbdt() {
        return super::gbdt_args::train(&a);
    }
    let cfg = TrainConfig {
        class_weight: if a.balanced {
            ClassWeight::Balanced
        } else {
            ClassWeight::None
        },
        ..TrainConfig::from(a.sgd.sgd_for(a.dp.dp_clip.is_some()))
    };
    let architecture = a.model.architecture()?;
    // Settings first: a bad flag is refused before any note on the data.
    cfg.validate()?;
    let dp = a.dp.settings()?;
    if let Some(d) = &dp {
        // Unreachable at any size: refused before the data is read.
        d.check_reachable(
            fedhe::plan::LARGEST_SITE_ROWS,
            cfg.batch_size,
            cfg.epochs as u64,
        )?;
    }
    fedhe::fsutil::check_output_folder("--out", &a.out)?;
    let opts = a.schema.options_for(&a.data, a.model.missing())?;
    let loaded = load_csv(&a.data, &opts)?;
    print_notices(&loaded);
    let ds = loaded.dataset;
    let head = fedhe::model::Head::for_target(&ds.label);
    eprintln!(
        "training {} on {} rows × {} features ({})",
        architecture.describe(head),
        ds.rows(),
        ds.feature_names.len(),
        ds.label.describe()
    );
    let score = ds.label.kind().score_name();
    let bar = indicatif::ProgressBar::new(cfg.epochs as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} epoch {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let start = Instant::now();
    let settings = fedhe::session::LocalTraining {
        architecture,
        train: cfg.clone(),
        validation_share: 0.0,
        missing: fedhe::data::MissingPolicy::default(),
        missing_tokens: opts.missing_tokens.clone(),
        dp,
    };
    let run = fedhe::session::train_local(
        &ds,
        &settings,
        vec![a.data.display().to_string()],
        &mut |s| {
            bar.set_position(s.epoch as u64);
            bar.set_message(format!("loss {:.4} {score} {:.4}", s.loss, s.score));
            ControlFlow::Continue(())
        },
    )?;
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    if let Some(last) = run.summary.last {
        println!(
            "trained {} epochs in {:.0} ms: training loss {:.4}, {score} {:.4}",
            run.summary.epochs_run,
            secs * 1e3,
            last.loss,
            last.score
        );
    }
    if let Some(p) = &run.model.provenance.privacy {
        println!(
            "DP-SGD: ε = {:.3} at δ = {:e} (σ {:.3}, clip {}, sample rate {:.4}, {} steps)",
            p.epsilon, p.delta, p.noise_multiplier, p.clip, p.sample_rate, p.steps
        );
    }
    run.model.save(&a.out)?;
    println!(
        "on the training rows: {}; model written to {}",
        run.training.summary(),
        a.out.display()
    );
    Ok(())
}

pub fn predict(a: PredictArgs) -> anyhow::Result<()> {
    if let Some(out) = &a.out {
        fedhe::fsutil::check_outputs(
            &[("--out", out)],
            &[("--model", &a.model), ("--data", &a.data)],
        )?;
        fedhe::fsutil::check_output_folder("--out", out)?;
    }
    let model = ModelFile::load(&a.model)?;
    let scored = score_csv(&model, &a.data)?;
    for n in &scored.notices {
        eprintln!("note: {n}");
    }
    println!(
        "scored {} rows of {} with {} ({})",
        scored.rows(),
        a.data.display(),
        a.model.display(),
        model.architecture.describe(model.head())
    );
    match &scored.evaluation {
        Some(e) => print!("{}", evaluation_table(e, &model)),
        None => println!(
            "(no label column {:?} in the file: predictions only, no metrics)",
            model.target.column()
        ),
    }
    if let Some(out) = &a.out {
        write_predictions(&model, &scored, out)?;
        println!("predictions written to {}", out.display());
    }
    Ok(())
}

/// The metrics of any task as `predict` (and `simulate`) print them.
pub fn evaluation_table(e: &Evaluation, model: &ModelFile) -> String {
    match e {
        Evaluation::Binary(m) => {
            let (p, n) = model
                .target
                .binary()
                .map_or(("1", "0"), |m| (m.positive.as_str(), m.negative.as_str()));
            metrics_table(m, p, n)
        }
        Evaluation::Multiclass(m) => {
            let classes = model.target.classes();
            let mut out = format!(
                "metric        value\n\
                 accuracy      {:.4}\n\
                 macro_f1      {:.4}\n\
                 weighted_f1   {:.4}\n\
                 log_loss      {:.4}\n\
                 \n\
                 class         precision  recall      f1  support\n",
                m.accuracy, m.macro_f1, m.weighted_f1, m.log_loss
            );
            for (c, f) in classes.iter().zip(&m.per_class) {
                out.push_str(&format!(
                    "{:<12} {:>10.4} {:>7.4} {:>7.4} {:>8}\n",
                    trunc(c),
                    f.precision,
                    f.recall,
                    f.f1,
                    f.support
                ));
            }
            out.push_str("\nconfusion matrix (rows: actual, columns: predicted)\n");
            out.push_str(&format!("{:>12}", ""));
            for c in &classes {
                out.push_str(&format!(" {:>12}", trunc(c)));
            }
            out.push('\n');
            for (c, row) in classes.iter().zip(&m.confusion) {
                out.push_str(&format!("{:>12}", trunc(c)));
                for v in row {
                    out.push_str(&format!(" {v:>12}"));
                }
                out.push('\n');
            }
            out
        }
        Evaluation::Regression(m) => format!(
            "metric        value (in {:?}'s unit)\n\
             r2            {:.4}\n\
             rmse          {:.4}\n\
             mae           {:.4}\n\
             rmse_std      {:.4} (RMSE in standard deviations of the target)\n",
            model.target.column(),
            m.r2,
            m.rmse,
            m.mae,
            m.rmse_std
        ),
    }
}

/// The binary metrics table.
pub fn metrics_table(m: &Metrics, p: &str, n: &str) -> String {
    let c = m.confusion;
    let auc = m.roc_auc.map_or("n/a".to_string(), |v| format!("{v:.4}"));
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
