//! Client tab: identity, CSV (open / drop / command line → one code path),
//! preview and schema, keys, aggregator connection and registration,
//! training settings, local or federated training with live plots and a
//! per-round log, saving the model.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use egui::{RichText, Ui};

use super::error::AppError;
use super::jobs::{EpochPoint, Job, Progress, TrainMsg, poll_slot};
use super::plots::{Series, epoch_series, line_plot_ui, round_plots_ui, round_table_ui};
use super::settings::{Settings, TrainingSettings};
use super::widgets::{self, DialogKind, ENCRYPTED_COLOR, FileDialog, Note, OK_COLOR};
use super::{LatestModel, Shared};
use fedhe::client::ClientEvent;
use fedhe::crypto::{ParamSet, SecretKey};
use fedhe::data::{CsvOptions, Dataset, LoadedCsv, load_csv};
use fedhe::model::{ModelFile, TrainConfig};
use fedhe::session::{self, ConnectOptions, Joined, Notifier, SessionError};

/// Rows shown in the preview.
const PREVIEW_ROWS: usize = 5;

/// A CSV file as the tab shows it: a raw preview and the result of loading
/// it with the chosen schema.
pub struct CsvView {
    pub path: PathBuf,
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub total_rows: usize,
    /// Per header column: its kind as read ("numeric", "categorical (3)",
    /// "label", "ignored") and its count of missing cells.
    pub kinds: Vec<(String, usize)>,
    /// The loaded data, or why it cannot be used (in words).
    pub loaded: Result<LoadedCsv, fedhe::data::DataError>,
}

impl CsvView {
    pub fn dataset(&self) -> Option<&Dataset> {
        self.loaded.as_ref().ok().map(|l| &l.dataset)
    }
}

/// The schema chosen in the UI.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Schema {
    pub label: Option<String>,
    pub task: Option<fedhe::data::TaskKind>,
    pub positive: Option<String>,
    pub ignored: Vec<String>,
}

enum KeyMsg {
    Loaded(Result<(Arc<SecretKey>, String), AppError>),
}

enum ConnectMsg {
    Status(String),
    Joined(Result<Box<JoinedSite>, AppError>),
}

/// A federation joined from this tab: the session and this site's data,
/// read by the plan's column names.
#[derive(Clone)]
pub struct JoinedSite {
    pub joined: Joined,
    pub data: Dataset,
    pub source: String,
}

/// What the training plots and log show.
#[derive(Default)]
pub struct RunView {
    pub federated: bool,
    pub epochs_per_round: usize,
    pub epochs: Vec<EpochPoint>,
    pub rounds: Vec<fedhe::client::ClientRound>,
    pub progress: f32,
    pub status: String,
    /// The task being trained (names the plotted figures).
    pub task: fedhe::data::TaskKind,
}

#[derive(Default)]
pub struct ClientTab {
    pub csv: Option<CsvView>,
    csv_job: Option<Job<Result<CsvView, AppError>>>,
    key_job: Option<Job<KeyMsg>>,
    connect_job: Option<Job<ConnectMsg>>,
    train_job: Option<Job<TrainMsg>>,
    pub key: Option<Arc<SecretKey>>,
    pub key_info: String,
    pub federation: Option<JoinedSite>,
    pub registered: Option<String>,
    pub run: RunView,
    pub model: Option<ModelFile>,
    pub notes: Vec<Note>,
    csv_dialog: FileDialog,
    key_dialog: FileDialog,
    save_dialog: FileDialog,
    /// What joining is doing right now ("waiting for the plan", retries).
    join_status: String,
}

impl ClientTab {
    pub fn is_training(&self) -> bool {
        self.train_job.is_some()
    }

    pub fn is_loading_csv(&self) -> bool {
        self.csv_job.is_some()
    }

    /// The one way a CSV gets in: file dialog, drop, or command line.
    pub fn open_csv(&mut self, ctx: &egui::Context, path: &Path, settings: &mut Settings) {
        settings.last_csv = Some(path.to_path_buf());
        let schema = Schema {
            label: settings.label.clone(),
            task: settings.task,
            positive: settings.positive.clone(),
            ignored: settings.ignored.clone(),
        };
        let path = path.to_path_buf();
        match Job::spawn("load-csv", ctx, move |p| p.send(read_csv(&path, &schema))) {
            Ok(j) => self.csv_job = Some(j),
            Err(e) => widgets::push_note(&mut self.notes, Note::from(e)),
        }
    }

    /// Loads a secret key file (typed, chosen or dropped path).
    pub fn load_key(&mut self, ctx: &egui::Context, path: &Path) {
        let path = path.to_path_buf();
        let job = Job::spawn("load-key", ctx, move |p| {
            p.send(KeyMsg::Loaded(load_secret_key(&path)));
        });
        match job {
            Ok(j) => self.key_job = Some(j),
            Err(e) => widgets::push_note(&mut self.notes, Note::from(e)),
        }
    }

    fn generate_key(&mut self, ctx: &egui::Context, path: &Path) {
        let path = path.to_path_buf();
        let job = Job::spawn("keygen", ctx, move |p| {
            p.send(KeyMsg::Loaded(generate_key(&path)));
        });
        match job {
            Ok(j) => self.key_job = Some(j),
            Err(e) => widgets::push_note(&mut self.notes, Note::from(e)),
        }
    }

    pub fn poll(&mut self, settings: &mut Settings, shared: &mut Shared) {
        shared.client_csv = self.csv.as_ref().map(|c| c.path.clone());
        let (msgs, failure) = poll_slot(&mut self.csv_job);
        for m in msgs {
            match m {
                Ok(view) => {
                    self.notes.retain(|n| !n.is_error());
                    match &view.loaded {
                        Ok(l) => {
                            settings.label = Some(l.dataset.label.column().to_string());
                            settings.positive =
                                l.dataset.label.binary().map(|m| m.positive.clone());
                            for n in &l.notices {
                                widgets::push_note(&mut self.notes, Note::Info(n.clone()));
                            }
                        }
                        Err(e) => widgets::push_note(&mut self.notes, Note::Error(e.to_string())),
                    }
                    self.csv = Some(view);
                }
                Err(e) => {
                    self.csv = None;
                    widgets::push_note(&mut self.notes, Note::from(e));
                }
            }
        }
        self.failure(failure);

        let (msgs, failure) = poll_slot(&mut self.key_job);
        for KeyMsg::Loaded(r) in msgs {
            match r {
                Ok((k, info)) => {
                    shared.client_public_key = Some(k.public());
                    self.key = Some(k);
                    self.key_info = info;
                }
                Err(e) => widgets::push_note(&mut self.notes, Note::from(e)),
            }
        }
        self.failure(failure);

        let (msgs, failure) = poll_slot(&mut self.connect_job);
        for m in msgs {
            match m {
                ConnectMsg::Status(s) => self.join_status = s,
                ConnectMsg::Joined(Ok(site)) => {
                    let j = &site.joined;
                    let info = format!(
                        "{} {} at {}: plan {}, {} rows of {} read by column name",
                        if j.resumed {
                            "Resumed as"
                        } else {
                            "Registered as"
                        },
                        j.id,
                        j.server,
                        j.plan_fingerprint,
                        site.data.rows(),
                        site.source
                    );
                    widgets::push_note(&mut self.notes, Note::Info(info.clone()));
                    self.join_status.clear();
                    self.registered = Some(info);
                    self.federation = Some(*site);
                }
                ConnectMsg::Joined(Err(e)) => {
                    self.join_status.clear();
                    widgets::push_note(&mut self.notes, Note::from(e));
                }
            }
        }
        self.failure(failure);

        let (msgs, failure) = poll_slot(&mut self.train_job);
        for m in msgs {
            match m {
                TrainMsg::Status(s) => self.run.status = s,
                TrainMsg::Progress(f) => self.run.progress = f,
                TrainMsg::Epoch(e) => self.run.epochs.push(e),
                TrainMsg::Round(r) => self.run.rounds.push(r),
                TrainMsg::Done(Ok(model)) => {
                    let kind = model.provenance.kind.clone();
                    shared.latest_model = Some(LatestModel {
                        model: (*model).clone(),
                        source: format!("the Client tab ({kind} training)"),
                    });
                    self.model = Some(*model);
                    self.run.progress = 1.0;
                }
                TrainMsg::Done(Err(e)) => {
                    self.run.status = "Training did not finish.".into();
                    widgets::push_note(&mut self.notes, Note::from(e));
                }
            }
        }
        self.failure(failure);
    }

    fn failure(&mut self, failure: Option<String>) {
        if let Some(e) = failure {
            widgets::push_note(&mut self.notes, Note::from(e));
        }
    }

    fn reload(&mut self, ctx: &egui::Context, settings: &mut Settings) {
        if let Some(p) = self.csv.as_ref().map(|c| c.path.clone()) {
            self.open_csv(ctx, &p, settings);
        }
    }

    pub fn ui(&mut self, ui: &mut Ui, settings: &mut Settings, shared: &mut Shared) {
        let ctx = ui.ctx().clone();
        if let Some(p) = self.csv_dialog.take(&ctx) {
            self.open_csv(&ctx, &p, settings);
        }
        if let Some(p) = self.key_dialog.take(&ctx) {
            settings.key_path = p.display().to_string();
            self.load_key(&ctx, &p);
        }
        if let Some(p) = self.save_dialog.take(&ctx)
            && let Some(m) = &self.model
        {
            match m.save(&p) {
                Ok(()) => widgets::push_note(
                    &mut self.notes,
                    Note::Info(format!("Model saved to {}", p.display())),
                ),
                Err(e) => widgets::push_note(
                    &mut self.notes,
                    Note::Error(format!("Could not save the model: {e}")),
                ),
            }
        }

        egui::ScrollArea::vertical()
            .id_salt("client-scroll")
            .show(ui, |ui| {
                ui.heading("Client");
                ui.horizontal(|ui| {
                    widgets::text_field(ui, "Name", &mut settings.client_name, "Hospital A");
                    widgets::text_field(ui, "Client id", &mut settings.client_id, "client-a")
                        .on_hover_text("1–64 characters: letters, digits, '_', '.', '-'");
                });
                widgets::notes_ui(ui, &mut self.notes);
                self.data_ui(ui, settings, &ctx);
                self.keys_ui(ui, settings, &ctx);
                self.connect_ui(ui, settings, shared, &ctx);
                self.training_ui(ui, settings, shared, &ctx);
            });
    }

    fn data_ui(&mut self, ui: &mut Ui, settings: &mut Settings, ctx: &egui::Context) {
        widgets::section_heading(ui, "1. Data");
        ui.horizontal(|ui| {
            if ui.button("Open CSV…").clicked() {
                self.csv_dialog.open(
                    ctx,
                    DialogKind::Open,
                    "Open a training CSV",
                    ("CSV", &["csv"]),
                    None,
                );
            }
            if ui
                .button("Use sample data")
                .on_hover_text("The Wisconsin breast-cancer data bundled with FedHE")
                .clicked()
            {
                match super::demo::sample_csv_path() {
                    Ok(p) => self.open_csv(ctx, &p, settings),
                    Err(e) => widgets::push_note(&mut self.notes, Note::from(e)),
                }
            }
            ui.weak("or drop a CSV file onto the window");
            if self.is_loading_csv() {
                ui.spinner();
            }
        });
        let Some(view) = &self.csv else {
            return;
        };
        let shown = super::demo::describe(&view.path);
        ui.label(format!(
            "{shown}: {} rows, {} columns",
            view.total_rows,
            view.header.len()
        ));
        preview_ui(ui, view);

        // Schema choices; any change reloads the file with the new schema.
        let mut changed = false;
        let header = view.header.clone();
        let target = view.dataset().map(|d| d.label.clone());
        let mapping = target.as_ref().and_then(|t| t.binary().cloned());
        let features = view
            .dataset()
            .map(|d| d.feature_names.clone())
            .unwrap_or_default();
        ui.horizontal_wrapped(|ui| {
            let current = settings
                .label
                .clone()
                .unwrap_or_else(|| "(automatic)".into());
            // Caption first, then the box (from_label puts it after).
            let caption = ui.label("Label column");
            egui::ComboBox::from_id_salt("label-column")
                .selected_text(current)
                .show_ui(ui, |ui| {
                    for h in &header {
                        if ui
                            .selectable_label(settings.label.as_deref() == Some(h), h)
                            .clicked()
                        {
                            settings.label = Some(h.clone());
                            settings.positive = None;
                            settings.task = None;
                            settings.ignored.retain(|c| c != h);
                            changed = true;
                        }
                    }
                })
                .response
                .labelled_by(caption.id);
            let caption = ui.label("Task");
            let task_text = |t: Option<fedhe::data::TaskKind>| match t {
                None => "automatic".to_string(),
                Some(k) => k.to_string(),
            };
            egui::ComboBox::from_id_salt("task-kind")
                .selected_text(match (settings.task, &target) {
                    (None, Some(t)) => format!("automatic ({})", t.kind()),
                    (t, _) => task_text(t),
                })
                .show_ui(ui, |ui| {
                    use fedhe::data::TaskKind;
                    for t in [
                        None,
                        Some(TaskKind::Binary),
                        Some(TaskKind::Multiclass),
                        Some(TaskKind::Regression),
                    ] {
                        if ui
                            .selectable_label(settings.task == t, task_text(t))
                            .clicked()
                            && settings.task != t
                        {
                            settings.task = t;
                            changed = true;
                        }
                    }
                })
                .response
                .labelled_by(caption.id);
            if let Some(m) = &mapping {
                let caption = ui.label("Positive class");
                egui::ComboBox::from_id_salt("positive-class")
                    .selected_text(m.positive.clone())
                    .show_ui(ui, |ui| {
                        for v in [&m.positive, &m.negative] {
                            if ui.selectable_label(&m.positive == v, v.as_str()).clicked()
                                && &m.positive != v
                            {
                                settings.positive = Some(v.clone());
                                changed = true;
                            }
                        }
                    })
                    .response
                    .labelled_by(caption.id);
            }
        });
        ui.collapsing("Feature columns (untick to ignore)", |ui| {
            ui.horizontal_wrapped(|ui| {
                for h in &header {
                    if settings.label.as_deref() == Some(h.as_str()) || h.is_empty() {
                        continue;
                    }
                    let mut used = !settings.ignored.contains(h);
                    let auto_dropped = used && !features.contains(h) && target.is_some();
                    let text = if auto_dropped {
                        format!("{h} (left out automatically)")
                    } else {
                        h.clone()
                    };
                    if ui.checkbox(&mut used, text).changed() {
                        if used {
                            settings.ignored.retain(|c| c != h);
                        } else {
                            settings.ignored.push(h.clone());
                        }
                        changed = true;
                    }
                }
            });
        });
        match &view.loaded {
            Ok(l) => {
                let d = &l.dataset;
                let about = match &d.label {
                    fedhe::data::Target::Binary(m) => format!(
                        "{} positive ({}) / {} negative ({})",
                        d.positives(),
                        m.positive,
                        d.rows() - d.positives(),
                        m.negative
                    ),
                    fedhe::data::Target::Multiclass { classes, .. } => format!(
                        "{} classes ({})",
                        classes.len(),
                        fedhe::data::shorten(&classes.join(", "), 80)
                    ),
                    fedhe::data::Target::Regression { column } => {
                        let (lo, hi) =
                            d.y.iter()
                                .fold((f64::INFINITY, f64::NEG_INFINITY), |a, &v| {
                                    (a.0.min(v), a.1.max(v))
                                });
                        format!("numeric target {column:?} from {lo} to {hi}")
                    }
                };
                ui.label(
                    RichText::new(format!(
                        "✔ {} rows, {} features; {about}",
                        d.rows(),
                        d.feature_names.len(),
                    ))
                    .color(OK_COLOR),
                );
            }
            Err(e) => {
                ui.label(
                    RichText::new(format!("✖ This CSV cannot be used: {e}"))
                        .color(widgets::ERROR_COLOR),
                );
            }
        }
        if changed {
            self.reload(ctx, settings);
        }
    }

    fn keys_ui(&mut self, ui: &mut Ui, settings: &mut Settings, ctx: &egui::Context) {
        widgets::section_heading(ui, "2. Umbrella key");
        ui.label("All clients of the federation share one secret key. It never leaves the clients' machines; the aggregator only gets its public part.");
        let busy = self.key_job.is_some();
        ui.horizontal(|ui| {
            widgets::text_field(ui, "Key file", &mut settings.key_path, "keys/secret.key");
            let path = PathBuf::from(settings.key_path.trim());
            if ui.add_enabled(!busy, egui::Button::new("Load")).clicked() {
                self.load_key(ctx, &path);
            }
            if ui.add_enabled(!busy, egui::Button::new("Browse…")).clicked() {
                self.key_dialog.open(
                    ctx,
                    DialogKind::Open,
                    "Open the umbrella secret key",
                    ("", &[]),
                    None,
                );
            }
            if ui
                .add_enabled(!busy, egui::Button::new("Generate new key"))
                .on_hover_text("Writes the secret key and, next to it, public.key for the aggregator")
                .clicked()
            {
                if path.exists() {
                    widgets::push_note(
                        &mut self.notes,
                        Note::Error(format!(
                            "{} already exists: load it, or type another file name to generate a new key (an existing key is never overwritten).",
                            path.display()
                        )),
                    );
                } else {
                    self.generate_key(ctx, &path);
                }
            }
            if busy {
                ui.spinner();
            }
        });
        if self.key.is_some() {
            ui.label(RichText::new(format!("🔑 {}", self.key_info)).color(OK_COLOR));
        } else {
            ui.weak("No key loaded.");
        }
    }

    fn connect_ui(
        &mut self,
        ui: &mut Ui,
        settings: &mut Settings,
        shared: &mut Shared,
        ctx: &egui::Context,
    ) {
        widgets::section_heading(ui, "3. Aggregator");
        ui.horizontal(|ui| {
            ui.radio_value(&mut settings.use_embedded, true, "Embedded (Server tab)");
            ui.radio_value(&mut settings.use_embedded, false, "Remote");
            if settings.use_embedded {
                match &shared.embedded_url {
                    Some(u) => {
                        ui.monospace(u);
                    }
                    None => {
                        ui.weak("not running: start it in the Server tab");
                    }
                }
            } else {
                widgets::text_field(ui, "URL", &mut settings.server_url, "http://host:8080");
            }
        });
        let url = if settings.use_embedded {
            shared.embedded_url.clone()
        } else {
            Some(settings.server_url.trim().to_string()).filter(|u| !u.is_empty())
        };
        let csv = self.csv.as_ref().map(|c| c.path.clone());
        let busy = self.connect_job.is_some();
        ui.horizontal(|ui| {
            let ready = url.is_some()
                && csv.is_some()
                && self.key.is_some()
                && !busy
                && !self.is_training();
            let resp = ui
                .add_enabled(ready, egui::Button::new("Join federation"))
                .on_hover_text(
                    "Fetches the aggregator's plan, reads your CSV by its column names, and \
                     registers (or resumes under your id)",
                )
                .on_disabled_hover_text(
                    "Needs a CSV, the federation's secret key (it signs the registration) and an aggregator URL",
                );
            if resp.clicked()
                && let (Some(url), Some(csv), Some(key)) = (url.clone(), csv, self.key.clone())
            {
                let id = settings.client_id.trim().to_string();
                let name = settings.client_name.trim().to_string();
                let key_path = settings.key_path.trim().to_string();
                self.federation = None;
                self.registered = None;
                let job = Job::spawn("join", ctx, move |p| {
                    let p = Arc::new(p);
                    let r = join_federation(&url, key, &key_path, &csv, &id, &name, &p);
                    p.send(ConnectMsg::Joined(r.map(Box::new)));
                });
                match job {
                    Ok(j) => self.connect_job = Some(j),
                    Err(e) => widgets::push_note(&mut self.notes, Note::from(e)),
                }
            }
            if busy {
                ui.spinner();
                ui.label(&self.join_status);
            }
            match &self.registered {
                Some(r) => {
                    ui.label(RichText::new(format!("✔ {r}")).color(OK_COLOR));
                }
                None if !busy => {
                    ui.weak("Not joined.");
                }
                None => {}
            }
        });
    }

    fn training_ui(
        &mut self,
        ui: &mut Ui,
        settings: &mut Settings,
        shared: &mut Shared,
        ctx: &egui::Context,
    ) {
        widgets::section_heading(ui, "4. Training");
        let training = self.is_training();
        ui.add_enabled_ui(!training, |ui| {
            training_settings_ui(ui, &mut settings.training);
        });
        if let Some(f) = &self.federation {
            let t = &f.joined.plan.training;
            ui.weak(format!(
                "Federated training follows the plan: {} rounds × {} local epochs, learning rate \
                 {}, batch {}, L2 {}, {}% held out for validation. The settings above are for \
                 local training.",
                t.rounds,
                t.epochs,
                t.lr,
                t.batch_size,
                t.l2,
                t.validation_share * 100.0
            ));
        }
        let dataset = self.csv.as_ref().and_then(|c| c.dataset()).cloned();
        let source = self
            .csv
            .as_ref()
            .map(|c| c.path.display().to_string())
            .unwrap_or_default();
        ui.horizontal(|ui| {
            if training {
                if ui.button("■ Stop").clicked()
                    && let Some(j) = &self.train_job
                {
                    j.cancel();
                    self.run.status = "Stopping…".into();
                }
            } else {
                let can_local = dataset.is_some();
                if ui
                    .add_enabled(can_local, egui::Button::new("Train locally (plaintext)"))
                    .on_hover_text("Train on this file only, no federation: a baseline")
                    .on_disabled_hover_text("Load a CSV first")
                    .clicked()
                    && let Some(ds) = dataset.clone()
                {
                    self.start_training(ctx, ds, settings.training.clone(), source.clone(), None);
                }
                let can_fed = self.federation.is_some();
                let start = egui::Button::new(
                    RichText::new("🔒 Start federated training").color(egui::Color32::WHITE),
                )
                .fill(ENCRYPTED_COLOR);
                if ui
                    .add_enabled(can_fed, start)
                    .on_disabled_hover_text("Join a federation first (section 3)")
                    .clicked()
                    && let Some(site) = self.federation.clone()
                {
                    let t = settings.training.clone();
                    self.start_training(ctx, site.data.clone(), t, source.clone(), Some(site));
                }
            }
            if training {
                ui.spinner();
            }
            ui.label(&self.run.status);
        });
        if training || self.run.progress > 0.0 {
            ui.add(egui::ProgressBar::new(self.run.progress).show_percentage());
        }
        if let Some(m) = &self.model {
            ui.horizontal(|ui| {
                ui.label(
                    RichText::new(format!("Model ready ({} training).", m.provenance.kind))
                        .color(OK_COLOR),
                );
                if ui.button("Save model…").clicked() {
                    self.save_dialog.open(
                        ctx,
                        DialogKind::Save,
                        "Save the model",
                        ("FedHE model", &["json"]),
                        Some("model.json"),
                    );
                }
                if ui.button("Open in Predict »").clicked() {
                    shared.goto = Some(super::Tab::Predict);
                    shared.predict_latest = true;
                }
            });
        }
        if self.run.epochs.is_empty() && self.run.rounds.is_empty() {
            return;
        }
        ui.label("Local training loss per epoch");
        let pts = epoch_series(&self.run.epochs, self.run.epochs_per_round);
        line_plot_ui(
            ui,
            "client-local",
            "epoch",
            self.run.task.loss_name(),
            150.0,
            vec![Series::new("local training loss", pts, ENCRYPTED_COLOR)],
            None,
        );
        if self.run.federated {
            round_plots_ui(
                ui,
                "client-rounds",
                self.run.task,
                &self.run.rounds,
                None,
                160.0,
            );
            ui.label("Per-round log (this client)");
            round_table_ui(
                ui,
                "client-round-log",
                self.run.task,
                &self.run.rounds,
                false,
            );
        }
    }

    fn start_training(
        &mut self,
        ctx: &egui::Context,
        ds: Dataset,
        t: TrainingSettings,
        source: String,
        federated: Option<JoinedSite>,
    ) {
        self.run = RunView {
            task: federated
                .as_ref()
                .map_or(ds.label.kind(), |f| f.joined.plan.target().kind()),
            federated: federated.is_some(),
            epochs_per_round: federated
                .as_ref()
                .map_or(t.epochs, |f| f.joined.plan.training.epochs),
            status: if federated.is_some() {
                "Federated standardization: waiting for every client's encrypted feature sums…"
                    .into()
            } else {
                "Training…".into()
            },
            ..RunView::default()
        };
        self.model = None;
        let job = Job::spawn("train", ctx, move |p| {
            let p = Arc::new(p);
            let r = match federated {
                Some(site) => federated_training(site, &p),
                None => local_training(&ds, &t, &source, &p),
            };
            p.send(TrainMsg::Done(r.map(Box::new)));
        });
        match job {
            Ok(j) => self.train_job = Some(j),
            Err(e) => widgets::push_note(&mut self.notes, Note::from(e)),
        }
    }
}

fn training_settings_ui(ui: &mut Ui, t: &mut TrainingSettings) {
    ui.horizontal_wrapped(|ui| {
        widgets::model_picker(ui, "client-model", &mut t.architecture);
        widgets::number_field(ui, "Rounds", &mut t.rounds, 1..=1000, 0.1);
        widgets::number_field(ui, "Epochs", &mut t.epochs, 1..=1000, 0.1);
        widgets::real_field(ui, "Learning rate", &mut t.lr, 1e-6..=10.0);
        widgets::number_field(ui, "Batch size", &mut t.batch_size, 1..=100_000, 0.5);
        widgets::real_field(ui, "L2", &mut t.l2, 0.0..=10.0);
        widgets::real_field(ui, "Validation share", &mut t.validation_share, 0.05..=0.5)
            .on_hover_text("Rows kept aside to validate the global model");
    });
}

fn preview_ui(ui: &mut Ui, view: &CsvView) {
    egui::ScrollArea::horizontal()
        .id_salt("csv-preview")
        .show(ui, |ui| {
            egui::Grid::new("csv-preview-grid")
                .striped(true)
                .show(ui, |ui| {
                    for h in &view.header {
                        ui.strong(h);
                    }
                    ui.end_row();
                    // Each column's kind and missing cells, as training reads it.
                    for (kind, missing) in &view.kinds {
                        let text = if *missing > 0 {
                            format!("{kind}, {missing} missing")
                        } else {
                            kind.clone()
                        };
                        ui.weak(text);
                    }
                    ui.end_row();
                    for row in &view.rows {
                        for cell in row {
                            ui.monospace(cell);
                        }
                        ui.end_row();
                    }
                });
        });
}

/// Reads the preview and loads the file with `schema` (worker side).
fn read_csv(path: &Path, schema: &Schema) -> Result<CsvView, AppError> {
    let csv_err = |action, e: csv::Error| match e.kind() {
        csv::ErrorKind::Io(io) => AppError::file(action, path, io),
        _ => AppError::File {
            action,
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_path(path)
        .map_err(|e| csv_err("open", e))?;
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| csv_err("read", e))?
        .iter()
        .map(str::to_string)
        .collect();
    let mut rows = Vec::new();
    let mut total = 0usize;
    for rec in reader.records() {
        let rec = rec.map_err(|e| csv_err("read", e))?;
        if rows.len() < PREVIEW_ROWS {
            rows.push(rec.iter().map(str::to_string).collect());
        }
        total += 1;
    }
    // A schema remembered from another file only applies where it fits.
    let has = |c: &String| header.contains(c);
    let label = schema.label.clone().filter(has);
    let asked = CsvOptions {
        target: match schema.task {
            None => fedhe::data::TargetSpec::Auto,
            Some(fedhe::data::TaskKind::Binary) => fedhe::data::TargetSpec::Binary,
            Some(fedhe::data::TaskKind::Multiclass) => fedhe::data::TargetSpec::Classes(None),
            Some(fedhe::data::TaskKind::Regression) => fedhe::data::TargetSpec::Numeric,
        },
        positive: schema.positive.clone().filter(|_| label.is_some()),
        ignore: schema.ignored.iter().filter(|c| has(c)).cloned().collect(),
        label,
        ..CsvOptions::default()
    };
    // Each column's kind (number, categories, left out) and missing cells.
    let auto = fedhe::data::profile::auto_schema(path, &asked, asked.label.as_deref());
    let (opts, notes, profile) = match auto {
        Ok(a) => (a.options, a.notes, Some(a.profile)),
        Err(_) => (asked.clone(), Vec::new(), None),
    };
    let mut loaded = load_csv(path, &opts);
    if let Err(fedhe::data::DataError::UnknownPositive { .. }) = &loaded {
        loaded = load_csv(
            path,
            &CsvOptions {
                positive: None,
                ..opts
            },
        );
    }
    if let Ok(l) = &mut loaded {
        let mut all = notes;
        all.append(&mut l.notices);
        l.notices = all;
    }
    let kinds = header
        .iter()
        .map(|h| {
            let missing = profile
                .as_ref()
                .and_then(|p| p.columns.iter().find(|c| &c.name == h))
                .map_or(0, |c| c.missing);
            let kind = match &loaded {
                Ok(l) if l.dataset.label.column() == h => "label".to_string(),
                Ok(l) => match l.dataset.columns.iter().find(|c| c.name() == h) {
                    Some(fedhe::data::RawColumn::Numeric { .. }) => "numeric".to_string(),
                    Some(fedhe::data::RawColumn::Categorical { categories, .. }) => {
                        format!("categorical ({})", categories.len())
                    }
                    None => "ignored".to_string(),
                },
                Err(_) => String::new(),
            };
            (kind, missing)
        })
        .collect();
    Ok(CsvView {
        path: path.to_path_buf(),
        header,
        rows,
        total_rows: total,
        kinds,
        loaded,
    })
}

/// Loads a secret key, refusing one others can replace and warning about one
/// others can read.
fn load_secret_key(path: &Path) -> Result<(Arc<SecretKey>, String), AppError> {
    let perms = SecretKey::permission_problem(path);
    if let Some(p) = perms.filter(|p| p.writable_by_others) {
        return Err(AppError::KeyPermissions(p.explain(path)));
    }
    let k = SecretKey::load(path).map_err(|source| AppError::Key {
        action: "load the key",
        source: Box::new(source),
    })?;
    let mut info = format!(
        "Loaded {} (fingerprint {})",
        path.display(),
        k.fingerprint()
    );
    if let Some(p) = perms {
        info.push_str(&format!(". ⚠ {}", p.explain(path)));
    }
    Ok((Arc::new(k), info))
}

fn generate_key(path: &Path) -> Result<(Arc<SecretKey>, String), AppError> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| AppError::file("create the folder", dir, &e))?;
    }
    let key = SecretKey::generate(ParamSet::Standard64);
    key.save(path, false).map_err(|source| AppError::Key {
        action: "save the key",
        source: Box::new(source),
    })?;
    let public = path.with_file_name("public.key");
    let public_note = match key.public().save(&public, false) {
        Ok(()) => format!("; public part for the aggregator: {}", public.display()),
        Err(e) => format!("; the public part was not written ({e})"),
    };
    let info = format!(
        "New key {} (fingerprint {}, up to {} clients per round; `fedhe keygen --max-clients` makes keys for more){public_note}",
        path.display(),
        key.fingerprint(),
        key.max_clients()
    );
    Ok((Arc::new(key), info))
}

/// Joins a federation (worker side): the library's session workflow.
fn join_federation(
    url: &str,
    key: Arc<SecretKey>,
    key_path: &str,
    csv: &Path,
    id: &str,
    name: &str,
    p: &Arc<Progress<ConnectMsg>>,
) -> Result<JoinedSite, AppError> {
    let pn = p.clone();
    let notify: Notifier = Arc::new(move |s: &str| pn.send(ConnectMsg::Status(s.to_string())));
    let opts = ConnectOptions {
        server: url.to_string(),
        ca_cert_pem: None,
        wait: Duration::from_secs(30),
    };
    let cancel = p.cancel_flag();
    let connected = session::connect(&opts, key, Some(notify), &cancel)
        .map_err(|e| AppError::Join(Box::new(e)))?;
    let loaded = connected
        .load_site(csv)
        .map_err(|source| AppError::PlanMismatch {
            plan: connected.plan_fingerprint.clone(),
            source: Box::new(source),
        })?;
    // Credentials beside the key, so that a restarted app resumes as `id`.
    let state =
        (!key_path.is_empty()).then(|| session::default_state_file(Path::new(key_path), id));
    let joined = connected
        .join(id, name, state.as_deref())
        .map_err(|e| AppError::Register(Box::new(e)))?;
    Ok(JoinedSite {
        joined,
        data: loaded.dataset,
        source: super::demo::describe(csv),
    })
}

fn train_config(t: &TrainingSettings) -> TrainConfig {
    t.plan_training().local()
}

/// Plain local training (worker side): a baseline without any federation.
fn local_training(
    ds: &Dataset,
    t: &TrainingSettings,
    source: &str,
    p: &Progress<TrainMsg>,
) -> Result<ModelFile, AppError> {
    let cfg = train_config(t);
    let epochs = cfg.epochs.max(1);
    let settings = session::LocalTraining {
        architecture: t.architecture.clone(),
        train: cfg,
        validation_share: t.validation_share,
        missing: fedhe::data::MissingPolicy::default(),
        missing_tokens: fedhe::data::default_missing_tokens(),
        dp: None,
    };
    let run = session::train_local(ds, &settings, vec![source.to_string()], &mut |s| {
        p.send(TrainMsg::Epoch(EpochPoint::of(0, s)));
        p.send(TrainMsg::Progress(s.epoch as f32 / epochs as f32));
        if p.cancelled() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .map_err(|e| match e {
        SessionError::Cancelled => AppError::Stopped("Training"),
        e => AppError::Training(Box::new(e)),
    })?;
    if let Some(m) = &run.validation {
        p.send(TrainMsg::Status(format!(
            "Done: validation {} {:.3} on {} rows kept aside.",
            ds.label.kind().score_name(),
            m.score(),
            m.rows()
        )));
    }
    Ok(run.model)
}

/// Federated training (worker side): the library's session runs the plan's
/// rounds; every event becomes a [`TrainMsg`].
fn federated_training(
    site: JoinedSite,
    p: &Arc<Progress<TrainMsg>>,
) -> Result<ModelFile, AppError> {
    let mut joined = site.joined.clone();
    let pn = p.clone();
    joined.set_notifier(Some(Arc::new(move |s: &str| {
        pn.send(TrainMsg::Status(s.to_string()));
    })));
    let t = joined.plan.training;
    let score_name = joined.plan.target().kind().score_name();
    let total = (t.rounds.max(1) as f32) * (t.epochs.max(1) as f32);
    let epochs = t.epochs.max(1) as f32;
    let cancel = p.cancel_flag();
    let run = joined
        .run(
            &site.data,
            vec![site.source.clone()],
            &mut |e| match e {
                ClientEvent::Standardized { global_rows: g, .. } => {
                    p.send(TrainMsg::Status(format!(
                        "Standardization agreed over {g} rows of the federation; training round 1…"
                    )));
                }
                ClientEvent::Epoch(pt) => {
                    p.send(TrainMsg::Epoch(*pt));
                    let done = (pt.round as f32 - 1.0) * epochs + pt.epoch as f32;
                    p.send(TrainMsg::Progress((done / total).min(1.0)));
                    if pt.epoch == t.epochs {
                        p.send(TrainMsg::Status(format!(
                            "Round {}: update encrypted and sent; waiting for the aggregate…",
                            pt.round
                        )));
                    }
                }
                ClientEvent::Round(r) => {
                    p.send(TrainMsg::Round(r.clone()));
                    p.send(TrainMsg::Status(format!(
                        "Round {} done: {} contributors ({}){}, validation {} {}",
                        r.round,
                        r.contributors,
                        r.counted.join(", "),
                        if r.masked { ", masked" } else { "" },
                        score_name,
                        r.validation_score.map_or("–".into(), |a| format!("{a:.3}"))
                    )));
                }
            },
            &cancel,
        )
        .map_err(|e| match e {
            SessionError::Cancelled => AppError::Stopped("Training"),
            e => AppError::Federated(Box::new(e)),
        })?;
    p.send(TrainMsg::Status(format!(
        "Done: {} rounds; the global model is ready.",
        run.outcome.rounds.len()
    )));
    Ok(run.model)
}
