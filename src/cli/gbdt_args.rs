//! The flags of gradient-boosted trees (`--model gbdt`): `--trees --depth
//! --bins --lambda --min-child-weight --min-split-gain --subsample
//! --colsample`; the learning rate is `--lr` (0.1 for this kind) and the
//! sampling seed `--seed`. Defaults are XGBoost's.

use std::ops::ControlFlow;
use std::time::Instant;

use fedhe::model::GbdtSettings;

fn d() -> GbdtSettings {
    GbdtSettings::default()
}

/// Gradient-boosted trees' settings, flattened into a command.
#[derive(Debug, Clone, clap::Args)]
pub struct GbdtArgs {
    /// gbdt: boosting iterations (multi-class: one tree per class each).
    #[arg(long, default_value = d().trees.to_string())]
    pub trees: usize,
    /// gbdt: maximum tree depth.
    #[arg(long, default_value = d().depth.to_string())]
    pub depth: usize,
    /// gbdt: most bins per numeric column (2 to 256).
    #[arg(long, default_value = d().bins.to_string())]
    pub bins: usize,
    /// gbdt: L2 regularization of leaf weights (XGBoost's lambda).
    #[arg(long, default_value = d().lambda.to_string())]
    pub lambda: f64,
    /// gbdt: smallest hessian sum of a child.
    #[arg(long, default_value = d().min_child_weight.to_string())]
    pub min_child_weight: f64,
    /// gbdt: smallest gain of a split (XGBoost's gamma).
    #[arg(long, default_value = d().min_split_gain.to_string())]
    pub min_split_gain: f64,
    /// gbdt: share of the rows each iteration uses (seeded by --seed).
    #[arg(long, default_value = d().subsample.to_string())]
    pub subsample: f64,
    /// gbdt: share of the columns each tree uses (seeded by --seed).
    #[arg(long, default_value = d().colsample.to_string())]
    pub colsample: f64,
}

impl GbdtArgs {
    /// The settings, with `--lr` (default 0.1) and `--seed`.
    pub fn settings(&self, lr: Option<f64>, seed: u64) -> anyhow::Result<GbdtSettings> {
        let s = GbdtSettings {
            trees: self.trees,
            depth: self.depth,
            bins: self.bins,
            learning_rate: lr.unwrap_or(d().learning_rate),
            lambda: self.lambda,
            min_child_weight: self.min_child_weight,
            min_split_gain: self.min_split_gain,
            subsample: self.subsample,
            colsample: self.colsample,
            seed,
        };
        s.validate()?;
        Ok(s)
    }
}

/// `fedhe train --model gbdt`: pooled boosting, the federation of one site.
pub fn train(a: &super::data_cmds::TrainArgs) -> anyhow::Result<()> {
    let settings = a.gbdt.settings(a.sgd.lr, a.sgd.seed)?;
    if a.balanced {
        anyhow::bail!(
            "--balanced weights SGD's loss; gradient-boosted trees have no class weights yet"
        );
    }
    if a.dp.dp_clip.is_some() {
        anyhow::bail!(
            "DP-SGD (--dp-clip) trains SGD models; gradient-boosted trees have no DP yet"
        );
    }
    fedhe::fsutil::check_output_folder("--out", &a.out)?;
    let opts = a.schema.options_for(&a.data, a.model.missing())?;
    let loaded = fedhe::data::load_csv(&a.data, &opts)?;
    for n in &loaded.notices {
        eprintln!("note: {n}");
    }
    let ds = loaded.dataset;
    eprintln!(
        "training gradient-boosted trees ({} iterations, depth {}, {} bins, lr {}) on {} rows × {} columns ({})",
        settings.trees,
        settings.depth,
        settings.bins,
        settings.learning_rate,
        ds.rows(),
        ds.feature_names.len(),
        ds.label.describe()
    );
    let bar = indicatif::ProgressBar::new(settings.trees as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} tree {pos}/{len}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let start = Instant::now();
    let fit = fedhe::model::gbdt::fit_dataset(
        &ds,
        &settings,
        opts.missing_tokens.clone(),
        vec![a.data.display().to_string()],
        &mut |done, _| {
            bar.set_position(done as u64);
            ControlFlow::Continue(())
        },
    )?;
    bar.finish_and_clear();
    let e = &fit.model.ensemble;
    let trees = e.as_ref().map_or(0, |e| e.trees.len());
    let splits: usize = e.as_ref().map_or(0, |e| {
        e.trees
            .iter()
            .flat_map(|t| &t.nodes)
            .filter(|n| matches!(n, fedhe::model::gbdt::Node::Split { .. }))
            .count()
    });
    println!(
        "grew {trees} trees ({splits} splits) in {} histogram rounds, {:.0} ms",
        fit.run.rounds,
        start.elapsed().as_secs_f64() * 1e3
    );
    fit.model.save(&a.out)?;
    println!(
        "on the training rows: {}; model written to {}",
        fit.training.summary(),
        a.out.display()
    );
    Ok(())
}
