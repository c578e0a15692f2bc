//! The one-click demo: an embedded aggregator and N virtual clients made from
//! the bundled sample data, talking real HTTP on loopback with real TFHE-rs
//! encryption (`federation::simulate`), optionally next to plaintext FedAvg.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use egui::{RichText, Ui};

use super::error::AppError;
use super::jobs::{EpochPoint, Job, Progress, poll_slot};
use super::plots::{Series, epoch_series, line_plot_ui, round_plots_ui, round_table_ui};
use super::settings::{DemoSettings, DemoSplit};
use super::widgets::{self, ENCRYPTED_COLOR, Note, OK_COLOR};
use super::{LatestModel, Shared};
use fedhe::client::ClientEvent;
use fedhe::crypto::ParamSet;
use fedhe::data::split::{Partition, write_csv};
use fedhe::data::{CsvOptions, TargetSpec, TaskKind};
use fedhe::federation::{
    RoundRecord, SimData, SimEvent, SimulationConfig, SimulationError, SimulationResult,
    load_sim_data, simulate, simulate_gbdt,
};
use fedhe::model::{Evaluation, ModelFile, TrainConfig};

/// The bundled sample data sets the demo can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum DemoDataset {
    /// Wisconsin breast cancer: binary.
    #[default]
    BreastCancer,
    /// Wine recognition: three cultivars.
    Wine,
    /// Diabetes progression: a numeric target.
    Diabetes,
    /// Palmer penguins: three species, categorical columns, missing cells.
    Penguins,
}

impl DemoDataset {
    pub const ALL: [DemoDataset; 4] = [
        DemoDataset::BreastCancer,
        DemoDataset::Wine,
        DemoDataset::Diabetes,
        DemoDataset::Penguins,
    ];

    /// The file name in `sample_data/`.
    pub fn file_name(self) -> &'static str {
        match self {
            DemoDataset::BreastCancer => "breast_cancer_wdbc.csv",
            DemoDataset::Wine => "wine.csv",
            DemoDataset::Diabetes => "diabetes.csv",
            DemoDataset::Penguins => "penguins.csv",
        }
    }

    /// The CSV, bundled so the demo works from any folder.
    fn contents(self) -> &'static str {
        match self {
            DemoDataset::BreastCancer => include_str!("../../sample_data/breast_cancer_wdbc.csv"),
            DemoDataset::Wine => include_str!("../../sample_data/wine.csv"),
            DemoDataset::Diabetes => include_str!("../../sample_data/diabetes.csv"),
            DemoDataset::Penguins => include_str!("../../sample_data/penguins.csv"),
        }
    }

    /// "breast cancer (binary)".
    pub fn title(self) -> &'static str {
        match self {
            DemoDataset::BreastCancer => "breast cancer (binary, 569 rows)",
            DemoDataset::Wine => "wine (3 classes, 178 rows)",
            DemoDataset::Diabetes => "diabetes (regression, 442 rows)",
            DemoDataset::Penguins => "penguins (3 species; categories, missing cells)",
        }
    }

    /// How the demo reads it: the label column and its task.
    pub fn csv_options(self) -> CsvOptions {
        let (label, target) = match self {
            DemoDataset::BreastCancer => ("diagnosis", TargetSpec::Binary),
            DemoDataset::Wine => ("cultivar", TargetSpec::Classes(None)),
            DemoDataset::Diabetes => ("progression", TargetSpec::Numeric),
            DemoDataset::Penguins => ("species", TargetSpec::Classes(None)),
        };
        CsvOptions {
            label: Some(label.into()),
            target,
            ..CsvOptions::default()
        }
    }

    /// What centralized scikit-learn reaches on the demo's test split
    /// (docs/models.md; scripts/sklearn_reference.py).
    pub fn reference(self) -> &'static str {
        match self {
            DemoDataset::BreastCancer => {
                "centralized scikit-learn on the same split: logistic regression 0.982, MLP 0.974 accuracy"
            }
            DemoDataset::Wine => {
                "centralized scikit-learn on the same split: softmax regression 0.972, MLP 0.972 accuracy"
            }
            DemoDataset::Diabetes => {
                "centralized scikit-learn on the same split: linear regression R² 0.551, MLP R² 0.462"
            }
            DemoDataset::Penguins => {
                "centralized scikit-learn (imputer, one-hot, scaler) on the same split: logistic regression 1.000, MLP 0.986 accuracy"
            }
        }
    }

    /// Where the bundled copy is cached: a cache of bundled data, not a
    /// user's file, so the temp folder is right.
    fn cache_path(self) -> PathBuf {
        #[allow(clippy::disallowed_methods)]
        std::env::temp_dir()
            .join(format!("fedhe-{}", env!("CARGO_PKG_VERSION")))
            .join(self.file_name())
    }
}

/// Writes a bundled sample data set to a temporary folder (once) and
/// returns its path.
pub fn sample_path(dataset: DemoDataset) -> Result<PathBuf, AppError> {
    let path = dataset.cache_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| AppError::file("create the folder", dir, &e))?;
    }
    let contents = dataset.contents();
    let fresh = std::fs::metadata(&path).is_ok_and(|m| m.len() == contents.len() as u64);
    if !fresh {
        std::fs::write(&path, contents)
            .map_err(|e| AppError::file("write the sample data to", &path, &e))?;
    }
    Ok(path)
}

/// The breast-cancer sample's path (the whole file).
pub fn sample_csv_path() -> Result<PathBuf, AppError> {
    sample_path(DemoDataset::BreastCancer)
}

/// The four sites' shares of the breast-cancer training rows
/// (`sample_data/clients/`; the test rows are in none of them).
const SITE_SAMPLES: [&str; 4] = [
    include_str!("../../sample_data/clients/client_1.csv"),
    include_str!("../../sample_data/clients/client_2.csv"),
    include_str!("../../sample_data/clients/client_3.csv"),
    include_str!("../../sample_data/clients/client_4.csv"),
];

/// Which site's share a client id takes: its last letter a–d or digit 1–4
/// ("client-b" → 2), else the first.
pub fn site_of(client_id: &str) -> usize {
    match client_id.trim().chars().last() {
        Some(c @ 'a'..='d') => c as usize - 'a' as usize + 1,
        Some(c @ 'A'..='D') => c as usize - 'A' as usize + 1,
        Some(c @ '1'..='4') => c as usize - '1' as usize + 1,
        _ => 1,
    }
}

/// This site's sample file ("Use sample data"): `client_N.csv` of the
/// bundled training rows, written to the cache folder once.
pub fn site_sample_path(client_id: &str) -> Result<PathBuf, AppError> {
    let n = site_of(client_id);
    let path = site_sample_path_of(n);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| AppError::file("create the folder", dir, &e))?;
    }
    let contents = SITE_SAMPLES[n - 1];
    let fresh = std::fs::metadata(&path).is_ok_and(|m| m.len() == contents.len() as u64);
    if !fresh {
        std::fs::write(&path, contents)
            .map_err(|e| AppError::file("write the sample data to", &path, &e))?;
    }
    Ok(path)
}

/// The bundled data set whose cached copy this is (no file access: the
/// Client tab asks every frame).
fn sample_of(path: &std::path::Path) -> Option<DemoDataset> {
    DemoDataset::ALL
        .into_iter()
        .find(|d| path == d.cache_path())
}

/// How a data file is named to the user: the bundled sample data lives in
/// a cache folder, so it is named, not shown by path.
pub fn describe(path: &std::path::Path) -> String {
    if let Some(d) = sample_of(path) {
        return format!("the bundled sample data ({})", d.file_name());
    }
    let site = (1..=SITE_SAMPLES.len()).find(|n| site_sample_path_of(*n) == path);
    match site {
        Some(n) => format!("the bundled sample data (client_{n}.csv)"),
        None => path.display().to_string(),
    }
}

/// Where site `n`'s sample file is cached (no file access).
fn site_sample_path_of(n: usize) -> PathBuf {
    #[allow(clippy::disallowed_methods)]
    let dir = std::env::temp_dir().join(format!("fedhe-{}", env!("CARGO_PKG_VERSION")));
    dir.join(format!("client_{n}.csv"))
}

/// How the demo ended.
#[derive(Debug, Clone)]
pub struct DemoOutcome {
    pub dataset: DemoDataset,
    pub test: Evaluation,
    pub plain_test: Option<Evaluation>,
    pub clients: usize,
    pub rounds: u64,
    /// Gradient-boosted trees: the iterations grown (else none).
    pub trees: Option<usize>,
    pub total_ms: f64,
    pub model: ModelFile,
    /// The held-out test rows, written for the Predict tab.
    pub test_csv: Option<PathBuf>,
    /// Largest difference between encrypted and plaintext global weights.
    pub max_diff: Option<f64>,
}

#[derive(Debug)]
enum DemoMsg {
    Status(String),
    Plain(RoundRecord),
    Encrypted(RoundRecord),
    Epoch {
        client: usize,
        point: EpochPoint,
    },
    /// Gradient-boosted trees: `done` of `of` iterations grown.
    Tree {
        done: u64,
        of: u64,
    },
    Done(Result<Box<DemoOutcome>, AppError>),
}

/// State of the demo view.
#[derive(Default)]
pub struct DemoPanel {
    job: Option<Job<DemoMsg>>,
    pub encrypted: Vec<RoundRecord>,
    pub plain: Vec<RoundRecord>,
    /// Local training loss per virtual client.
    pub epochs: Vec<Vec<EpochPoint>>,
    /// Gradient-boosted trees: (iterations grown, of).
    pub trees: Option<(u64, u64)>,
    pub status: String,
    pub outcome: Option<DemoOutcome>,
    pub notes: Vec<Note>,
    /// Settings of the run shown (not the ones being edited).
    run: Option<DemoSettings>,
    save_dialog: widgets::FileDialog,
    log_dialog: widgets::FileDialog,
}

impl DemoPanel {
    pub fn is_running(&self) -> bool {
        self.job.is_some()
    }

    /// Starts a run with `cfg`.
    pub fn start(&mut self, ctx: &egui::Context, cfg: &DemoSettings) {
        self.encrypted.clear();
        self.plain.clear();
        self.epochs = vec![Vec::new(); cfg.clients];
        self.trees = is_gbdt(cfg).then_some((0, cfg.gbdt.trees as u64));
        self.outcome = None;
        self.notes.clear();
        self.status = "Starting the embedded aggregator and the virtual clients…".into();
        self.run = Some(cfg.clone());
        let cfg = cfg.clone();
        match Job::spawn("demo", ctx, move |p| run_demo(&cfg, &p)) {
            Ok(job) => self.job = Some(job),
            Err(e) => widgets::push_note(&mut self.notes, Note::from(e)),
        }
    }

    /// Another data set picked: the last run's plots and outcome were of
    /// the old one, so they go (not shown under the new one's name).
    fn forget_other_dataset(&mut self, cfg: &DemoSettings) {
        let shown = self.run.as_ref().map(|r| r.dataset);
        if self.is_running() || shown.is_none_or(|d| d == cfg.dataset) {
            return;
        }
        self.encrypted.clear();
        self.plain.clear();
        self.epochs.clear();
        self.trees = None;
        self.outcome = None;
        self.status.clear();
        self.run = None;
    }

    pub fn stop(&mut self) {
        if let Some(j) = &self.job {
            j.cancel();
            self.status = "Stopping…".into();
        }
    }

    /// Applies the worker's messages; returns true when a run just finished.
    pub fn poll(&mut self, shared: &mut Shared) -> bool {
        let (msgs, failure) = poll_slot(&mut self.job);
        let mut finished = false;
        for m in msgs {
            match m {
                DemoMsg::Status(s) => self.status = s,
                DemoMsg::Plain(r) => self.plain.push(r),
                DemoMsg::Encrypted(r) => self.encrypted.push(r),
                DemoMsg::Epoch { client, point } => {
                    if let Some(v) = self.epochs.get_mut(client) {
                        v.push(point);
                    }
                }
                DemoMsg::Tree { done, of } => self.trees = Some((done, of)),
                DemoMsg::Done(Ok(o)) => {
                    let shape = match o.trees {
                        Some(t) => format!("{} clients × {t} trees", o.clients),
                        None => format!("{} clients × {} rounds", o.clients, o.rounds),
                    };
                    self.status = format!("Done: {shape} in {:.1} s.", o.total_ms / 1e3);
                    shared.latest_model = Some(LatestModel {
                        model: o.model.clone(),
                        source: format!("demo ({shape})"),
                        test_csv: o.test_csv.clone(),
                    });
                    shared.demo_test_csv = o.test_csv.clone();
                    self.outcome = Some(*o);
                    finished = true;
                }
                DemoMsg::Done(Err(e)) => {
                    self.status = "The demo did not finish.".into();
                    widgets::push_note(&mut self.notes, Note::from(e));
                    finished = true;
                }
            }
        }
        if let Some(e) = failure {
            widgets::push_note(&mut self.notes, Note::from(e));
        }
        finished
    }

    pub fn ui(&mut self, ui: &mut Ui, cfg: &mut DemoSettings, shared: &mut Shared) {
        ui.heading("Encrypted federated learning in one click");
        ui.label(
            "Virtual hospitals train on their own share of a bundled data set, encrypt their \
             model updates with TFHE-rs and send them over HTTP to an embedded aggregator, which \
             adds the ciphertexts without being able to read them. Each client decrypts the sum \
             and continues from the new global model.",
        );
        ui.add_space(4.0);
        let running = self.is_running();
        ui.add_enabled_ui(!running, |ui| settings_ui(ui, cfg));
        self.forget_other_dataset(cfg);
        ui.add_space(4.0);
        self.controls_ui(ui, running, cfg);
        self.take_log_dialog(ui.ctx(), cfg);
        if let Some(o) = &self.outcome {
            outcome_ui(ui, o, shared);
        }
        self.save_ui(ui);
        if self.trees.is_some() {
            ui.add_space(12.0);
            ui.weak(
                "Trees: each level of each tree is one encrypted round (the sites' gradient \
                 histograms summed); the outcome above scores the whole ensemble on the \
                 held-out rows. Open it in Predict for the feature importance.",
            );
            return;
        }
        if self.encrypted.is_empty() && self.plain.is_empty() && !running {
            ui.add_space(20.0);
            ui.weak("Press “Start demo”: the plots fill in live, one point per round.");
            return;
        }
        self.plots_ui(ui, cfg);
    }

    /// Start or stop, the status and the rounds done.
    fn controls_ui(&mut self, ui: &mut Ui, running: bool, cfg: &DemoSettings) {
        ui.horizontal(|ui| {
            if running {
                let stop = egui::Button::new(RichText::new("■ Stop demo").size(18.0));
                if ui.add(stop).clicked() {
                    self.stop();
                }
                ui.spinner();
            } else {
                let start = egui::Button::new(
                    RichText::new("▶ Start demo")
                        .size(18.0)
                        .color(egui::Color32::WHITE),
                )
                .fill(ENCRYPTED_COLOR);
                if ui.add(start).clicked() {
                    self.start(ui.ctx(), cfg);
                }
            }
            ui.label(&self.status);
        });
        if let Some((done, of)) = self.trees {
            ui.add(
                egui::ProgressBar::new(done as f32 / of.max(1) as f32)
                    .text(format!("tree {done} of {of}")),
            );
            return;
        }
        let total = self.run.as_ref().map_or(cfg.rounds, |r| r.rounds).max(1);
        if running || !self.encrypted.is_empty() {
            let frac = self.encrypted.len() as f32 / total as f32;
            ui.add(
                egui::ProgressBar::new(frac)
                    .text(format!("round {} of {total}", self.encrypted.len())),
            );
        }
    }

    /// The rounds (encrypted, and plaintext when compared), each client's
    /// loss per epoch, and the per-round log.
    fn plots_ui(&mut self, ui: &mut Ui, cfg: &DemoSettings) {
        let plain = (!self.plain.is_empty()).then_some(self.plain.as_slice());
        let task = self.task(cfg);
        round_plots_ui(ui, "demo", task, &self.encrypted, plain, 190.0);
        let epochs = self.run.as_ref().map_or(cfg.epochs, |r| r.epochs);
        let series: Vec<Series> = self
            .epochs
            .iter()
            .enumerate()
            .map(|(i, pts)| {
                let hue = i as f32 / self.epochs.len().max(1) as f32;
                let color: egui::Color32 = egui::epaint::Hsva::new(hue, 0.7, 0.8, 1.0).into();
                Series::new(
                    format!("client {}", i + 1),
                    epoch_series(pts, epochs),
                    color,
                )
            })
            .collect();
        ui.label("Local training loss per epoch (each virtual client, on its own data)");
        line_plot_ui(
            ui,
            "demo-local",
            "epoch",
            task.loss_name(),
            150.0,
            series,
            None,
        );
        ui.horizontal(|ui| {
            ui.label("Per-round log (all clients together; times are means per client)");
            if ui.small_button("Export round log (CSV)…").clicked() {
                self.log_dialog.open(
                    ui.ctx(),
                    widgets::DialogKind::Save,
                    "Export the demo's round log",
                    ("CSV", &["csv"]),
                    Some("demo_round_log.csv"),
                );
            }
        });
        round_table_ui(ui, "demo-rounds", task, &self.encrypted, true);
    }

    /// The round log written to the path chosen in its dialog.
    fn take_log_dialog(&mut self, ctx: &egui::Context, cfg: &DemoSettings) {
        if let Some(p) = self.log_dialog.take(ctx) {
            let note = match super::export::write_round_log(&p, self.task(cfg), &self.encrypted) {
                Ok(()) => Note::Info(format!("Round log written to {}", p.display())),
                Err(e) => Note::from(e),
            };
            widgets::push_note(&mut self.notes, note);
        }
    }

    /// The task of the run shown (or of the data set picked).
    fn task(&self, cfg: &DemoSettings) -> TaskKind {
        match self.run.as_ref().map_or(cfg.dataset, |r| r.dataset) {
            DemoDataset::BreastCancer => TaskKind::Binary,
            DemoDataset::Wine | DemoDataset::Penguins => TaskKind::Multiclass,
            DemoDataset::Diabetes => TaskKind::Regression,
        }
    }
}

/// The demo's settings on two rows of their own: the data and the model
/// (an MLP adds its width at the end of the first), then the run's shape,
/// so that picking MLP neither wraps the rows nor moves "Start demo".
fn settings_ui(ui: &mut Ui, cfg: &mut DemoSettings) {
    ui.horizontal(|ui| {
        let l = ui.label("Data");
        egui::ComboBox::from_id_salt("demo-dataset")
            .selected_text(cfg.dataset.title())
            .show_ui(ui, |ui| {
                for d in DemoDataset::ALL {
                    ui.selectable_value(&mut cfg.dataset, d, d.title());
                }
            })
            .response
            .labelled_by(l.id);
        ui.separator();
        widgets::model_picker(ui, "demo-model", &mut cfg.architecture, true);
    });
    ui.horizontal_wrapped(|ui| {
        widgets::number_field(ui, "Clients", &mut cfg.clients, 2..=10, 0.05);
        ui.separator();
        ui.label("Split:");
        ui.radio_value(&mut cfg.split, DemoSplit::Iid, "IID")
            .on_hover_text("Every client gets the same class balance");
        ui.radio_value(&mut cfg.split, DemoSplit::Dirichlet, "Dirichlet")
            .on_hover_text("Label skew: each class is shared out unevenly");
        if cfg.split == DemoSplit::Dirichlet {
            widgets::real_field(ui, "α", &mut cfg.alpha, 0.05..=100.0)
                .on_hover_text("Small α = very uneven clients");
        }
        ui.separator();
        if is_gbdt(cfg) {
            widgets::number_field(ui, "Trees", &mut cfg.gbdt.trees, 1..=200, 0.1)
                .on_hover_text("Boosting iterations (multi-class: one tree per class each)");
            widgets::number_field(ui, "Depth", &mut cfg.gbdt.depth, 1..=8, 0.05)
                .on_hover_text("Levels of splits: one encrypted round per level");
            return;
        }
        widgets::number_field(ui, "Rounds", &mut cfg.rounds, 1..=100, 0.1);
        widgets::number_field(ui, "Epochs per round", &mut cfg.epochs, 1..=100, 0.1);
        ui.separator();
        ui.checkbox(&mut cfg.overlay_plain, "Compare with plaintext FedAvg");
    });
}

fn outcome_ui(ui: &mut Ui, o: &DemoOutcome, shared: &mut Shared) {
    let name = o.test.score_name();
    egui::Frame::group(ui.style())
        .stroke(egui::Stroke::new(1.5, OK_COLOR))
        .show(ui, |ui| {
            ui.horizontal_wrapped(|ui| {
                ui.label(
                    RichText::new(format!(
                        "Final test {name} (encrypted): {:.3}",
                        o.test.score()
                    ))
                    .strong()
                    .size(18.0)
                    .color(OK_COLOR),
                );
                match &o.test {
                    Evaluation::Binary(m) => {
                        if let Some(auc) = m.roc_auc {
                            ui.label(format!("ROC AUC {auc:.3}"));
                        }
                    }
                    Evaluation::Multiclass(m) => {
                        ui.label(format!("macro F1 {:.3}", m.macro_f1));
                    }
                    Evaluation::Regression(m) => {
                        ui.label(format!("RMSE {:.2}", m.rmse));
                    }
                }
                if let Some(p) = &o.plain_test {
                    ui.label(format!("plaintext FedAvg: {:.3}", p.score()));
                }
                if let Some(d) = o.max_diff {
                    ui.label(format!(
                        "largest parameter difference vs plaintext: {d:.1e}"
                    ))
                    .on_hover_text(
                        "Encryption is exact up to the fixed-point rounding of the updates",
                    );
                }
            });
            ui.horizontal(|ui| {
                ui.label(format!(
                    "{} rows held out for testing; {}.",
                    o.test.rows(),
                    o.dataset.reference()
                ));
                if ui.button("Open in Predict »").clicked() {
                    shared.goto = Some(super::Tab::Predict);
                    shared.predict_latest = true;
                }
            });
        });
}

impl DemoPanel {
    /// "Save model…" for the demo's global model, and the save itself.
    fn save_ui(&mut self, ui: &mut Ui) {
        let ctx = ui.ctx().clone();
        if let Some(p) = self.save_dialog.take(&ctx)
            && let Some(o) = &self.outcome
        {
            let note = match o.model.save(&p) {
                Ok(()) => Note::Info(format!("Model saved to {}", p.display())),
                Err(e) => Note::Error(format!("Could not save the model: {e}")),
            };
            widgets::push_note(&mut self.notes, note);
        }
        if self.outcome.is_some()
            && ui
                .button("Save model…")
                .on_hover_text("The demo's global model, for Predict or `fedhe predict`")
                .clicked()
        {
            self.save_dialog.open(
                &ctx,
                widgets::DialogKind::Save,
                "Save the demo's model",
                ("FedHE model", &["json"]),
                Some("demo_model.json"),
            );
        }
    }
}

fn explain(e: SimulationError) -> AppError {
    match e {
        SimulationError::Cancelled => AppError::Stopped("The demo"),
        e => AppError::Demo(Box::new(e)),
    }
}

/// The worker: plaintext baseline first (fast), then the encrypted run.
/// Whether the demo grows gradient-boosted trees.
fn is_gbdt(cfg: &DemoSettings) -> bool {
    cfg.architecture == fedhe::model::Architecture::Gbdt
}

fn run_demo(cfg: &DemoSettings, p: &Progress<DemoMsg>) {
    if is_gbdt(cfg) {
        let outcome = demo_config(cfg).and_then(|(data, sim)| gbdt_run(cfg, &data, &sim, p));
        p.send(DemoMsg::Done(outcome.map(Box::new)));
        return;
    }
    let outcome = demo_config(cfg).and_then(|(data, sim)| {
        let cancel: Arc<_> = p.cancel_flag();
        let plain = if cfg.overlay_plain {
            Some(plain_baseline(&sim, p, cancel.clone())?)
        } else {
            None
        };
        let result = encrypted_run(cfg, &sim, p, cancel)?;
        Ok(outcome(cfg, &data, &sim, result, plain))
    });
    p.send(DemoMsg::Done(outcome.map(Box::new)));
}

/// The sample file and the simulation of `cfg` over it (encrypted, with a
/// federation's training defaults).
fn demo_config(cfg: &DemoSettings) -> Result<(PathBuf, SimulationConfig), AppError> {
    let data = sample_path(cfg.dataset)?;
    // Each column's kind (numbers, categories) and missing cells, as
    // training without a plan reads any file.
    let csv = fedhe::data::profile::auto_schema(&data, &cfg.dataset.csv_options(), None)
        .map_err(|e| AppError::Demo(Box::new(SimulationError::Data(Box::new(e)))))?
        .options;
    let partition = match cfg.split {
        DemoSplit::Iid => Partition::Iid,
        DemoSplit::Dirichlet => Partition::Dirichlet(cfg.alpha),
    };
    let sim = SimulationConfig {
        data: SimData::Split {
            data: data.clone(),
            clients: cfg.clients,
            partition,
            test_fraction: 0.2,
            seed: 42,
        },
        csv,
        rounds: cfg.rounds,
        // A federation's training defaults (one place: `plan::Training`).
        train: TrainConfig {
            epochs: cfg.epochs,
            ..fedhe::plan::Training::default().local()
        },
        architecture: cfg.architecture.clone(),
        dp: None,
        masks: true,
        plain: false,
        params: ParamSet::Standard64,
        round_timeout: Duration::from_secs(120),
        evaluation: None,
    };
    Ok((data, sim))
}

/// Plaintext FedAvg with the same seeds, for the comparison.
fn plain_baseline(
    sim: &SimulationConfig,
    p: &Progress<DemoMsg>,
    cancel: Arc<AtomicBool>,
) -> Result<SimulationResult, AppError> {
    p.send(DemoMsg::Status(
        "Plaintext FedAvg baseline (no encryption)…".into(),
    ));
    let plain = SimulationConfig {
        plain: true,
        ..sim.clone()
    };
    let mut on_event = |e: &SimEvent| {
        if let SimEvent::Round(r) = e {
            p.send(DemoMsg::Plain(r.clone()));
        }
    };
    simulate(&plain, &mut on_event, cancel).map_err(explain)
}

/// The encrypted run, each event a message.
fn encrypted_run(
    cfg: &DemoSettings,
    sim: &SimulationConfig,
    p: &Progress<DemoMsg>,
    cancel: Arc<AtomicBool>,
) -> Result<SimulationResult, AppError> {
    p.send(DemoMsg::Status(format!(
        "Encrypted run: generating the umbrella key, starting the aggregator, {} clients…",
        cfg.clients
    )));
    let rounds = cfg.rounds;
    let score_name = match cfg.dataset {
        DemoDataset::Diabetes => "R²",
        _ => "accuracy",
    };
    let mut on_event = |e: &SimEvent| match e {
        SimEvent::Round(r) => {
            p.send(DemoMsg::Encrypted(r.clone()));
            p.send(DemoMsg::Status(format!(
                "Round {} of {rounds}: {} encrypted updates aggregated, global {score_name} {:.3}",
                r.round, r.contributors, r.global_score
            )));
        }
        SimEvent::Client {
            index,
            event: ClientEvent::Epoch(point),
        } => p.send(DemoMsg::Epoch {
            client: *index,
            point: *point,
        }),
        SimEvent::Client {
            index: 0,
            event: ClientEvent::Standardized { global_rows, .. },
        } => p.send(DemoMsg::Status(format!(
            "Federated standardization done: encrypted feature sums over {global_rows} rows"
        ))),
        SimEvent::Client { .. } => {}
    };
    simulate(sim, &mut on_event, cancel).map_err(explain)
}

/// The trees' run (`federation::simulate_gbdt`: encrypted and masked, the
/// same sites and split), each boosting iteration a message.
fn gbdt_run(
    cfg: &DemoSettings,
    data: &std::path::Path,
    sim: &SimulationConfig,
    p: &Progress<DemoMsg>,
) -> Result<DemoOutcome, AppError> {
    p.send(DemoMsg::Status(format!(
        "Encrypted trees: generating the umbrella key, starting the aggregator, {} clients…",
        cfg.clients
    )));
    let mut on_event = |e: &SimEvent| {
        if let SimEvent::Client {
            index: 0,
            event: ClientEvent::Tree(r),
        } = e
        {
            p.send(DemoMsg::Tree {
                done: r.iteration,
                of: r.iterations,
            });
            p.send(DemoMsg::Status(if r.iteration == 0 {
                "Global bins agreed: encrypted histograms of every numeric column summed".into()
            } else {
                format!(
                    "Tree {} of {} grown: {} encrypted rounds (one per level)",
                    r.iteration, r.iterations, r.rounds
                )
            }));
        }
    };
    let result = simulate_gbdt(sim, cfg.gbdt, &mut on_event, p.cancel_flag()).map_err(explain)?;
    Ok(DemoOutcome {
        dataset: cfg.dataset,
        test: result.test,
        plain_test: None,
        clients: cfg.clients,
        rounds: result.plan.last_round(),
        trees: Some(cfg.gbdt.trees),
        total_ms: result.total_ms,
        model: result.model,
        test_csv: held_out_csv(cfg, data, sim),
        max_diff: None,
    })
}

/// The held-out rows of the run's split, written for the Predict tab.
fn held_out_csv(
    cfg: &DemoSettings,
    data: &std::path::Path,
    sim: &SimulationConfig,
) -> Option<PathBuf> {
    let (_, test) = load_sim_data(&sim.data, &sim.csv).ok()?;
    // Named by this process and data set: another FedHE (or a test run)
    // writing its own held-out rows never replaces these.
    let path = data.with_file_name(format!(
        "demo_test_{}_{}",
        std::process::id(),
        cfg.dataset.file_name()
    ));
    write_csv(&test, &path).ok().map(|()| path)
}

/// How the run ended, with the held-out rows written for the Predict tab
/// (the same split as the run).
fn outcome(
    cfg: &DemoSettings,
    data: &std::path::Path,
    sim: &SimulationConfig,
    result: SimulationResult,
    plain: Option<SimulationResult>,
) -> DemoOutcome {
    let max_diff = plain.as_ref().and_then(|pr| {
        fedhe::federation::max_param_diff(&result.records, &pr.records)
            .last()
            .copied()
    });
    let test_csv = held_out_csv(cfg, data, sim);
    let model = result.model_file(sim);
    DemoOutcome {
        dataset: cfg.dataset,
        test: result.test,
        plain_test: plain.map(|r| r.test),
        clients: cfg.clients,
        rounds: cfg.rounds,
        trees: None,
        total_ms: result.total_ms,
        model,
        test_csv,
        max_diff,
    }
}
