//! Training on one machine: the federation of one site, through the same
//! bin plan, cuts and [`Grower`].

use std::ops::ControlFlow;

use ndarray::ArrayView2;

use super::{BinPlan, Ensemble, GbdtSettings, Grower, SiteRows, cuts, fine_histogram};
use crate::data::{RawColumn, RawStats};
use crate::model::{Head, ModelError};

/// A pooled run's result.
#[derive(Debug, Clone)]
pub struct PooledRun {
    pub ensemble: Ensemble,
    /// Histogram rounds it took (as a federation would).
    pub rounds: u64,
    /// Numeric columns' cut counts, categorical columns' bins.
    pub bins: Vec<usize>,
}

/// Trains on raw rows `x` (columns as `columns`, statistics `stats` of the
/// same rows) with labels `y` (0/1, class index, or the standardized
/// value). `on_iteration(done, total)` may stop the run early (`Break`):
/// the trees so far are kept.
pub fn train_pooled(
    settings: &GbdtSettings,
    head: Head,
    columns: &[RawColumn],
    stats: &RawStats,
    x: ArrayView2<f64>,
    y: &[f64],
    on_iteration: &mut dyn FnMut(usize, usize) -> ControlFlow<()>,
) -> Result<PooledRun, ModelError> {
    settings.validate()?;
    let plan = BinPlan::new(columns, stats);
    let fine = fine_histogram(&plan, x);
    let cuts = cuts(&plan, &fine, settings.bins);
    let bins = cuts
        .features
        .iter()
        .map(|f| match f {
            super::FeatureCuts::Numeric { cuts } => cuts.len() + 1,
            super::FeatureCuts::Categorical { categories } => categories + 1,
        })
        .collect();
    let mut grower = Grower::new(*settings, head, cuts)?;
    let mut site = SiteRows::new(&grower, x, y)?;
    let mut rounds = 0;
    while grower.round_len().is_some() {
        let local = grower.local(&site);
        let done = grower.iterations_done();
        grower.take(&local, &mut site)?;
        rounds += 1;
        if grower.iterations_done() > done
            && on_iteration(grower.iterations_done(), settings.trees).is_break()
        {
            break;
        }
    }
    Ok(PooledRun {
        ensemble: grower.finish(),
        rounds,
        bins,
    })
}

/// A model file trained on one machine, and its figures on the training rows.
#[derive(Debug, Clone)]
pub struct PooledModel {
    pub model: crate::model::ModelFile,
    pub run: PooledRun,
    /// Metrics on the training rows.
    pub training: crate::model::Evaluation,
}

/// `fedhe train --model gbdt`: the statistics, bins and trees of dataset
/// `ds` (a regression target standardized, as for the other kinds), as a
/// model file with its provenance.
pub fn fit_dataset(
    ds: &crate::data::Dataset,
    settings: &GbdtSettings,
    missing_tokens: Vec<String>,
    data_files: Vec<String>,
    on_iteration: &mut dyn FnMut(usize, usize) -> ControlFlow<()>,
) -> Result<PooledModel, ModelError> {
    use crate::data::{Encoder, MissingPolicy, TaskKind};
    use crate::model::{Provenance, TargetScaling};
    let regression = ds.label.kind() == TaskKind::Regression;
    let stats = RawStats::of(&ds.columns, &ds.x, regression.then_some(&ds.y));
    let mut encoder = Encoder::new(&ds.columns, MissingPolicy::default(), missing_tokens);
    encoder.fit(&stats);
    let scaling = stats
        .target
        .map(|(sum, sum_sq)| TargetScaling::from_moments(stats.rows, sum, sum_sq));
    let y: Vec<f64> = match &scaling {
        Some(t) => ds.y.iter().map(|&v| t.scale(v)).collect(),
        None => ds.y.to_vec(),
    };
    let head = Head::for_target(&ds.label);
    let run = train_pooled(
        settings,
        head,
        &ds.columns,
        &stats,
        ds.x.view(),
        &y,
        on_iteration,
    )?;
    let mut provenance = Provenance::centralized(data_files, ds.rows(), Default::default());
    provenance.train = None;
    provenance.settings = serde_json::to_value(settings).unwrap_or_default();
    let model = crate::model::ModelFile::gbdt(
        encoder,
        ds.label.clone(),
        scaling,
        run.ensemble.clone(),
        provenance,
    );
    let training = model.evaluate(&ds.x, &ds.y.to_vec())?;
    Ok(PooledModel {
        model,
        run,
        training,
    })
}
