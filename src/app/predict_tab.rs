//! Predict tab: a model file (or the latest global model), a test CSV,
//! metrics, confusion matrix, ROC curve, predictions export.

use std::path::{Path, PathBuf};

use egui::{RichText, Ui};

use super::error::AppError;
use super::jobs::{Job, poll_slot};
use super::plots::{
    IMPORTANCE_TOP, confusion_heatmap_ui, importance_plot_ui, regression_plots_ui, roc_plot_ui,
    top_importance,
};
use super::widgets::{self, DialogKind, FileDialog, Note};
use super::{LatestModel, Shared};
use fedhe::data::Target;
use fedhe::model::{Evaluation, ModelFile, Scored, roc_curve, score_csv, write_predictions};

/// A scored test file.
pub struct ScoredView {
    pub scored: Scored,
    pub path: PathBuf,
    pub roc: Vec<(f64, f64)>,
}

enum PredictMsg {
    Model(Result<Box<(ModelFile, String)>, AppError>),
    Scored(Result<Box<ScoredView>, AppError>),
    Exported(Result<PathBuf, AppError>),
    /// The model written as ONNX.
    Onnx(Result<PathBuf, AppError>),
}

#[derive(Default)]
pub struct PredictTab {
    pub model: Option<LatestModel>,
    pub scored: Option<ScoredView>,
    job: Option<Job<PredictMsg>>,
    pub notes: Vec<Note>,
    model_dialog: FileDialog,
    csv_dialog: FileDialog,
    export_dialog: FileDialog,
    onnx_dialog: FileDialog,
    metrics_dialog: FileDialog,
    /// Score this file once the model is loaded.
    pending_csv: Option<PathBuf>,
}

impl PredictTab {
    pub fn is_busy(&self) -> bool {
        self.job.is_some()
    }

    fn spawn(
        &mut self,
        ctx: &egui::Context,
        name: &str,
        f: impl FnOnce() -> PredictMsg + Send + 'static,
    ) {
        match Job::spawn(name, ctx, move |p| p.send(f())) {
            Ok(j) => self.job = Some(j),
            Err(e) => widgets::push_note(&mut self.notes, Note::from(e)),
        }
    }

    /// Loads a model file (typed, chosen, or dropped path).
    pub fn load_model(&mut self, ctx: &egui::Context, path: &Path) {
        let path = path.to_path_buf();
        self.spawn(ctx, "load-model", move || {
            PredictMsg::Model(
                ModelFile::load(&path)
                    .map(|m| Box::new((m, path.display().to_string())))
                    .map_err(|source| AppError::Model {
                        action: "load the model",
                        source: Box::new(source),
                    }),
            )
        });
    }

    /// Scores a test CSV with the current model (typed, chosen, or dropped path).
    pub fn load_test_csv(&mut self, ctx: &egui::Context, path: &Path) {
        let Some(m) = &self.model else {
            self.pending_csv = Some(path.to_path_buf());
            widgets::push_note(
                &mut self.notes,
                Note::Info("Load a model first; the test file will be scored then.".into()),
            );
            return;
        };
        let model = m.model.clone();
        let path = path.to_path_buf();
        self.spawn(ctx, "score", move || {
            PredictMsg::Scored(
                score_csv(&model, &path)
                    .map(|scored| {
                        let roc = match (&scored.labels, &model.target) {
                            (Some(y), Target::Binary(_)) => {
                                roc_curve(y, &scored.predictions.column(0).to_vec())
                            }
                            _ => Vec::new(),
                        };
                        Box::new(ScoredView { scored, path, roc })
                    })
                    .map_err(|source| AppError::Model {
                        action: "score the test file",
                        source: Box::new(source),
                    }),
            )
        });
    }

    pub fn poll(&mut self, ctx: &egui::Context, test_path: &mut String) {
        let (msgs, failure) = poll_slot(&mut self.job);
        for m in msgs {
            match m {
                PredictMsg::Model(Ok(loaded)) => {
                    let (model, source) = *loaded;
                    let model = LatestModel {
                        model,
                        source,
                        test_csv: None,
                    };
                    self.set_model(ctx, model, test_path);
                }
                PredictMsg::Scored(Ok(view)) => {
                    // An earlier file's failure no longer applies.
                    self.notes.retain(|n| !n.is_error());
                    *test_path = view.path.display().to_string();
                    for n in &view.scored.notices {
                        widgets::push_note(&mut self.notes, Note::Info(n.clone()));
                    }
                    if view.scored.evaluation.is_none() {
                        widgets::push_note(
                            &mut self.notes,
                            Note::Info(
                                "This file has no label column: predictions only, no metrics."
                                    .into(),
                            ),
                        );
                    }
                    self.scored = Some(*view);
                }
                PredictMsg::Exported(Ok(p)) => widgets::push_note(
                    &mut self.notes,
                    Note::Info(format!("Predictions written to {}", p.display())),
                ),
                PredictMsg::Onnx(Ok(p)) => widgets::push_note(
                    &mut self.notes,
                    Note::Info(format!("Model exported to ONNX: {}", p.display())),
                ),
                PredictMsg::Model(Err(e))
                | PredictMsg::Scored(Err(e))
                | PredictMsg::Exported(Err(e))
                | PredictMsg::Onnx(Err(e)) => {
                    widgets::push_note(&mut self.notes, Note::from(e));
                }
            }
        }
        if let Some(e) = failure {
            widgets::push_note(&mut self.notes, Note::from(e));
        }
    }

    /// Uses `model`; re-scores the test file if one is loaded or pending.
    pub fn set_model(&mut self, ctx: &egui::Context, model: LatestModel, test_path: &str) {
        self.notes.retain(|n| !n.is_error());
        let again = self
            .pending_csv
            .take()
            .or_else(|| (!test_path.trim().is_empty()).then(|| PathBuf::from(test_path.trim())));
        self.model = Some(model);
        self.scored = None;
        if let Some(p) = again
            && self.job.is_none()
        {
            self.load_test_csv(ctx, &p);
        }
    }

    pub fn ui(
        &mut self,
        ui: &mut Ui,
        model_path: &mut String,
        test_path: &mut String,
        shared: &mut Shared,
    ) {
        let ctx = ui.ctx().clone();
        self.take_dialogs(&ctx, model_path, test_path);
        if shared.predict_latest {
            shared.predict_latest = false;
            if let Some(m) = shared.latest_model.clone() {
                self.use_latest(&ctx, m, test_path, shared);
            }
        }
        ui.heading("Predict");
        ui.label("Score a labelled CSV with a saved model or the latest global model. You can also drop a model (.json) or a CSV onto this window.");
        // One answer for the whole frame, whatever a click starts.
        let busy = self.is_busy();
        widgets::section_heading(ui, "Model");
        self.model_ui(ui, busy, model_path, test_path, shared);
        if let Some(m) = &self.model {
            model_info_ui(ui, m);
        }
        widgets::section_heading(ui, "Test data");
        self.test_data_ui(ui, busy, test_path, shared);
        self.results_ui(ui);
        if let Some(m) = &self.model {
            importance_ui(ui, &m.model);
        }
    }

    /// A path chosen in one of the dialogs: load, score or export.
    fn take_dialogs(
        &mut self,
        ctx: &egui::Context,
        model_path: &mut String,
        test_path: &mut String,
    ) {
        if let Some(p) = self.model_dialog.take(ctx) {
            *model_path = p.display().to_string();
            self.load_model(ctx, &p);
        }
        if let Some(p) = self.csv_dialog.take(ctx) {
            *test_path = p.display().to_string();
            self.load_test_csv(ctx, &p);
        }
        if let Some(p) = self.export_dialog.take(ctx)
            && let (Some(m), Some(s)) = (&self.model, &self.scored)
        {
            let model = m.model.clone();
            let scored = s.scored.clone();
            self.spawn(ctx, "export", move || {
                PredictMsg::Exported(write_predictions(&model, &scored, &p).map(|()| p).map_err(
                    |source| AppError::Model {
                        action: "export the predictions",
                        source: Box::new(source),
                    },
                ))
            });
        }
        if let Some(p) = self.metrics_dialog.take(ctx)
            && let Some(e) = self
                .scored
                .as_ref()
                .and_then(|s| s.scored.evaluation.as_ref())
        {
            let note = match super::export::write_metrics(&p, e) {
                Ok(()) => Note::Info(format!("Metrics written to {}", p.display())),
                Err(e) => Note::from(e),
            };
            widgets::push_note(&mut self.notes, note);
        }
        if let Some(p) = self.onnx_dialog.take(ctx)
            && let Some(m) = &self.model
        {
            let model = m.model.clone();
            self.spawn(ctx, "onnx export", move || {
                PredictMsg::Onnx(
                    fedhe::export::write_onnx(&model, &p)
                        .map(|_| p)
                        .map_err(|e| AppError::Onnx(Box::new(e))),
                )
            });
        }
    }

    /// Uses the latest global model: on its own held-out rows (the demo's),
    /// whatever file was scored before; a model without any (the Client
    /// tab's) asks for a test file instead of scoring a stale one.
    fn use_latest(
        &mut self,
        ctx: &egui::Context,
        model: LatestModel,
        test_path: &mut String,
        _shared: &Shared,
    ) {
        self.pending_csv = None;
        match model.test_csv.clone() {
            Some(t) => {
                *test_path = t.display().to_string();
                self.set_model(ctx, model, test_path);
            }
            None => {
                test_path.clear();
                self.set_model(ctx, model, test_path);
                widgets::push_note(
                    &mut self.notes,
                    Note::Info(
                        "Choose a test CSV for this model (Test CSV, then Score): one with \
                         the columns it was trained on, ideally rows no site trained on."
                            .into(),
                    ),
                );
            }
        }
    }

    fn model_ui(
        &mut self,
        ui: &mut Ui,
        busy: bool,
        model_path: &mut String,
        test_path: &mut String,
        shared: &Shared,
    ) {
        let ctx = ui.ctx().clone();
        ui.horizontal(|ui| {
            widgets::text_field(ui, "Model file", model_path, "path/to/model.json");
            if ui.add_enabled(!busy, egui::Button::new("Load")).clicked() {
                let p = PathBuf::from(model_path.trim());
                self.load_model(&ctx, &p);
            }
            if ui.button("Browse…").clicked() {
                self.model_dialog.open(
                    &ctx,
                    DialogKind::Open,
                    "Open a FedHE model",
                    ("FedHE model", &["json"]),
                    None,
                );
            }
            let latest = shared.latest_model.clone();
            let hover = latest.as_ref().map_or_else(
                || "No global model yet: run the demo or a federated training".to_string(),
                |m| format!("From {}", m.source),
            );
            if ui
                .add_enabled(
                    latest.is_some() && !busy,
                    egui::Button::new("Use latest global model"),
                )
                .on_hover_text(hover)
                .on_disabled_hover_text("No global model yet: run the demo or a federated training")
                .clicked()
                && let Some(m) = latest
            {
                self.use_latest(&ctx, m, test_path, shared);
            }
            if ui
                .add_enabled(
                    self.model.is_some() && !busy,
                    egui::Button::new("Export ONNX…"),
                )
                .on_hover_text(
                    "The model with its preprocessing, for ONNX runtimes: one input per CSV column",
                )
                .on_disabled_hover_text("Load a model first")
                .clicked()
            {
                self.onnx_dialog.open(
                    &ctx,
                    DialogKind::Save,
                    "Export the model to ONNX",
                    ("ONNX model", &["onnx"]),
                    Some("model.onnx"),
                );
            }
        });
    }

    fn test_data_ui(&mut self, ui: &mut Ui, busy: bool, test_path: &mut String, shared: &Shared) {
        let ctx = ui.ctx().clone();
        ui.horizontal(|ui| {
            widgets::text_field(ui, "Test CSV", test_path, "path/to/test.csv");
            let can = self.model.is_some() && !busy;
            if ui
                .add_enabled(can, egui::Button::new("Score"))
                .on_disabled_hover_text("Load a model first")
                .clicked()
            {
                let p = PathBuf::from(test_path.trim());
                self.load_test_csv(&ctx, &p);
            }
            if ui
                .add_enabled(self.model.is_some(), egui::Button::new("Browse…"))
                .clicked()
            {
                self.csv_dialog.open(
                    &ctx,
                    DialogKind::Open,
                    "Open a test CSV",
                    ("CSV", &["csv"]),
                    None,
                );
            }
            if let Some(t) = shared.demo_test_csv.clone()
                && ui
                    .add_enabled(can, egui::Button::new("Demo's held-out rows"))
                    .on_hover_text("The 20 % of the sample data the demo never trained on")
                    .clicked()
            {
                *test_path = t.display().to_string();
                self.load_test_csv(&ctx, &t);
            }
            if busy {
                ui.spinner();
            }
        });
    }

    /// The scored file: export, then the task's metrics and plots.
    fn results_ui(&mut self, ui: &mut Ui) {
        let Some(view) = &self.scored else {
            return;
        };
        let Some(model) = self.model.as_ref().map(|m| &m.model) else {
            return;
        };
        ui.horizontal(|ui| {
            ui.label(format!(
                "{} rows scored from {}",
                view.scored.rows(),
                view.path.display()
            ));
            if ui.button("Export predictions as CSV…").clicked() {
                self.export_dialog.open(
                    ui.ctx(),
                    DialogKind::Save,
                    "Save predictions",
                    ("CSV", &["csv"]),
                    Some("predictions.csv"),
                );
            }
            if view.scored.evaluation.is_some() && ui.button("Export metrics (CSV)…").clicked() {
                self.metrics_dialog.open(
                    ui.ctx(),
                    DialogKind::Save,
                    "Save the metrics",
                    ("CSV", &["csv"]),
                    Some("metrics.csv"),
                );
            }
        });
        let Some(evaluation) = &view.scored.evaluation else {
            return;
        };
        match evaluation {
            Evaluation::Binary(metrics) => binary_ui(ui, model, metrics, &view.roc),
            Evaluation::Multiclass(metrics) => {
                multiclass_ui(ui, &model.target.classes(), metrics);
            }
            Evaluation::Regression(metrics) => {
                let predicted: Vec<f64> = view.scored.predictions.column(0).to_vec();
                let actual = view.scored.labels.clone().unwrap_or_default();
                regression_ui(ui, metrics, &actual, &predicted);
            }
        }
    }
}

/// A two-column grid of named figures.
fn figures_grid(ui: &mut Ui, id: &str, rows: &[(&str, String)]) {
    egui::Grid::new(id)
        .striped(true)
        .num_columns(2)
        .show(ui, |ui| {
            for (name, value) in rows {
                ui.label(*name);
                ui.label(RichText::new(value).monospace());
                ui.end_row();
            }
        });
}

fn binary_ui(ui: &mut Ui, model: &ModelFile, metrics: &fedhe::model::Metrics, roc: &[(f64, f64)]) {
    let (positive, negative) = model.target.binary().map_or(("1".into(), "0".into()), |m| {
        (m.positive.clone(), m.negative.clone())
    });
    // `columns(2)` hands the closure exactly 2 columns.
    ui.columns(2, |cols| {
        let ui = &mut cols[0];
        widgets::section_heading(ui, "Metrics");
        figures_grid(
            ui,
            "metrics",
            &[
                ("Accuracy", format!("{:.3}", metrics.accuracy)),
                ("Precision", format!("{:.3}", metrics.precision)),
                ("Recall", format!("{:.3}", metrics.recall)),
                ("F1", format!("{:.3}", metrics.f1)),
                (
                    "ROC AUC",
                    metrics.roc_auc.map_or("–".into(), |a| format!("{a:.3}")),
                ),
                ("Log-loss", format!("{:.4}", metrics.log_loss)),
                ("Rows", metrics.rows.to_string()),
            ],
        );
        widgets::section_heading(ui, "Confusion matrix");
        let c = metrics.confusion;
        egui::Grid::new("confusion")
            .striped(true)
            .num_columns(3)
            .show(ui, |ui| {
                ui.label("");
                ui.strong(format!("predicted {negative}"));
                ui.strong(format!("predicted {positive}"));
                ui.end_row();
                ui.strong(format!("actual {negative}"));
                ui.label(RichText::new(c.tn.to_string()).monospace());
                ui.label(RichText::new(c.fp.to_string()).monospace());
                ui.end_row();
                ui.strong(format!("actual {positive}"));
                ui.label(RichText::new(c.fn_.to_string()).monospace());
                ui.label(RichText::new(c.tp.to_string()).monospace());
                ui.end_row();
            });
        let ui = &mut cols[1];
        widgets::section_heading(ui, "ROC curve");
        roc_plot_ui(ui, roc, metrics.roc_auc, 280.0);
    });
}

fn multiclass_ui(ui: &mut Ui, classes: &[String], metrics: &fedhe::model::MulticlassMetrics) {
    ui.columns(2, |cols| {
        let ui = &mut cols[0];
        widgets::section_heading(ui, "Metrics");
        figures_grid(
            ui,
            "metrics",
            &[
                ("Accuracy", format!("{:.3}", metrics.accuracy)),
                ("Macro F1", format!("{:.3}", metrics.macro_f1)),
                ("Weighted F1", format!("{:.3}", metrics.weighted_f1)),
                ("Log-loss", format!("{:.4}", metrics.log_loss)),
                ("Rows", metrics.rows.to_string()),
            ],
        );
        widgets::section_heading(ui, "Per class");
        egui::Grid::new("per-class")
            .striped(true)
            .num_columns(5)
            .show(ui, |ui| {
                for h in ["class", "precision", "recall", "F1", "rows"] {
                    ui.strong(h);
                }
                ui.end_row();
                for (name, f) in classes.iter().zip(&metrics.per_class) {
                    ui.label(fedhe::data::shorten(name, 24));
                    ui.label(RichText::new(format!("{:.3}", f.precision)).monospace());
                    ui.label(RichText::new(format!("{:.3}", f.recall)).monospace());
                    ui.label(RichText::new(format!("{:.3}", f.f1)).monospace());
                    ui.label(RichText::new(f.support.to_string()).monospace());
                    ui.end_row();
                }
            });
        let ui = &mut cols[1];
        widgets::section_heading(ui, "Confusion matrix");
        confusion_heatmap_ui(ui, classes, &metrics.confusion);
    });
}

fn regression_ui(
    ui: &mut Ui,
    metrics: &fedhe::model::RegressionMetrics,
    actual: &[f64],
    predicted: &[f64],
) {
    widgets::section_heading(ui, "Metrics");
    figures_grid(
        ui,
        "metrics",
        &[
            ("R²", format!("{:.3}", metrics.r2)),
            ("RMSE", format!("{:.4}", metrics.rmse)),
            ("MAE", format!("{:.4}", metrics.mae)),
            (
                "RMSE in standard deviations",
                format!("{:.3}", metrics.rmse_std),
            ),
            ("Rows", metrics.rows.to_string()),
        ],
    );
    regression_plots_ui(ui, actual, predicted, 260.0);
}

fn model_info_ui(ui: &mut Ui, m: &LatestModel) {
    let p = &m.model.provenance;
    ui.label(format!(
        "{} {} from {}: {} features, {}; {}, created {}",
        p.kind,
        m.model.architecture.describe(m.model.head()),
        m.source,
        m.model.feature_names.len(),
        m.model.target.describe(),
        rows_words(p),
        p.created
    ));
    if let Some(d) = gbdt_description(&m.model) {
        ui.label(d);
    }
}

/// A gradient-boosted model's trees and settings: "60 trees (20 iterations
/// × 3 classes), 412 splits; depth ≤ 4, 64 bins, learning rate 0.3, λ 1".
pub fn gbdt_description(model: &ModelFile) -> Option<String> {
    let e = model.ensemble.as_ref()?;
    let splits = e
        .trees
        .iter()
        .flat_map(|t| &t.nodes)
        .filter(|n| matches!(n, fedhe::model::gbdt::Node::Split { .. }))
        .count();
    let trees = if e.outputs > 1 {
        format!(
            "{} trees ({} iterations × {} classes)",
            e.trees.len(),
            e.iterations(),
            e.outputs
        )
    } else {
        format!("{} trees", e.trees.len())
    };
    let settings =
        serde_json::from_value::<fedhe::model::GbdtSettings>(model.provenance.settings.clone())
            .ok()
            .map(|s| {
                format!(
                    "; depth ≤ {}, {} bins, learning rate {}, λ {}, min child weight {}",
                    s.depth, s.bins, s.learning_rate, s.lambda, s.min_child_weight
                )
            })
            .unwrap_or_default();
    Some(format!("{trees}, {splits} splits{settings}"))
}

/// The chart's title: how many of the features it shows (the top 20, or
/// those the trees split on).
pub fn importance_title(shown: usize, features: usize) -> String {
    if shown >= features {
        "Feature importance (gain)".to_string()
    } else if shown == IMPORTANCE_TOP {
        format!("Feature importance (gain), top {shown} of {features} features")
    } else {
        format!(
            "Feature importance (gain) of the {shown} features the trees split on, of {features}"
        )
    }
}

/// A gradient-boosted model's gain importance per feature, largest first
/// (the library's [`fedhe::model::Ensemble::importance`]).
fn importance_ui(ui: &mut Ui, model: &ModelFile) {
    let Some(e) = &model.ensemble else {
        return;
    };
    let rows = top_importance(&model.feature_names, &e.importance(), IMPORTANCE_TOP);
    let title = importance_title(rows.len(), e.features());
    widgets::section_heading(ui, &title);
    ui.label(
        "Each feature's share of the total gain of the splits on it: how much the trees \
         rely on it, not the direction of its effect.",
    );
    importance_plot_ui(ui, &rows);
}

/// Where the training rows were: a federated model's count is the whole
/// federation's, its file this site's only.
fn rows_words(p: &fedhe::model::Provenance) -> String {
    let files = p.data.join(", ");
    if p.kind == fedhe::model::FEDERATED {
        format!(
            "trained on {} rows across the federation's sites (this site's file: {files})",
            p.rows
        )
    } else {
        format!("trained on {} rows ({files})", p.rows)
    }
}
