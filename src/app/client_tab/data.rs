//! Section 1, Data: a CSV (open / drop / command line → one code path), its
//! preview with each column's kind, and the schema choices (label, task,
//! positive class, ignored columns); any change reloads the file.

use std::path::{Path, PathBuf};

use egui::{RichText, Ui};

use super::ClientTab;
use crate::app::error::AppError;
use crate::app::jobs::{Job, poll_slot};
use crate::app::settings::Settings;
use crate::app::widgets::{self, DialogKind, FileDialog, Note, OK_COLOR};
use fedhe::data::profile::{TableProfile, auto_schema, preview_csv};
use fedhe::data::{
    CsvOptions, DataError, Dataset, LoadedCsv, RawColumn, Target, TargetSpec, TaskKind, load_csv,
};

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
    pub loaded: Result<LoadedCsv, DataError>,
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
    pub task: Option<TaskKind>,
    pub positive: Option<String>,
    pub ignored: Vec<String>,
}

/// The section's own state: the loading job and the file dialog.
#[derive(Default)]
pub(super) struct DataPanel {
    job: Option<Job<Result<CsvView, AppError>>>,
    dialog: FileDialog,
}

impl ClientTab {
    pub fn is_loading_csv(&self) -> bool {
        self.data.job.is_some()
    }

    /// The one way a CSV gets in: file dialog, drop, or command line.
    pub fn open_csv(&mut self, ctx: &egui::Context, path: &Path, settings: &mut Settings) {
        if settings.last_csv.as_deref() != Some(path) {
            self.forget_file(settings);
        }
        settings.last_csv = Some(path.to_path_buf());
        let schema = Schema {
            label: settings.label.clone(),
            task: settings.task,
            positive: settings.positive.clone(),
            ignored: settings.ignored.clone(),
        };
        let path = path.to_path_buf();
        match Job::spawn("load-csv", ctx, move |p| p.send(read_csv(&path, &schema))) {
            Ok(j) => self.data.job = Some(j),
            Err(e) => widgets::push_note(&mut self.notes, Note::from(e)),
        }
    }

    /// Another file: what depended on the old one goes. Its schema (the
    /// new file's is proposed afresh), the federation joined with its rows
    /// (join again to use the new file) and the notes about it.
    fn forget_file(&mut self, settings: &mut Settings) {
        settings.label = None;
        settings.task = None;
        settings.positive = None;
        settings.ignored.clear();
        if !self.is_training() {
            self.federation = None;
            self.registered = None;
        }
        self.notes.clear();
    }

    pub(super) fn take_csv_dialog(&mut self, ctx: &egui::Context, settings: &mut Settings) {
        if let Some(p) = self.data.dialog.take(ctx) {
            self.open_csv(ctx, &p, settings);
        }
    }

    /// A loaded file replaces the one shown; its label becomes the setting.
    pub(super) fn poll_data(&mut self, settings: &mut Settings) {
        let (msgs, failure) = poll_slot(&mut self.data.job);
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
    }

    pub(super) fn data_ui(&mut self, ui: &mut Ui, settings: &mut Settings, ctx: &egui::Context) {
        widgets::section_heading(ui, "1. Data");
        self.open_buttons_ui(ui, settings, ctx);
        let Some(view) = &self.csv else {
            return;
        };
        let shown = crate::app::demo::describe(&view.path);
        ui.label(format!(
            "{shown}: {} rows, {} columns",
            view.total_rows,
            view.header.len()
        ));
        preview_ui(ui, view);
        // Schema choices; any change reloads the file with the new schema.
        let changed = schema_ui(ui, view, settings) | features_ui(ui, view, settings);
        loaded_ui(ui, &view.loaded);
        if changed && let Some(p) = self.csv.as_ref().map(|c| c.path.clone()) {
            self.open_csv(ctx, &p, settings);
        }
    }

    fn open_buttons_ui(&mut self, ui: &mut Ui, settings: &mut Settings, ctx: &egui::Context) {
        ui.horizontal(|ui| {
            if ui.button("Open CSV…").clicked() {
                self.data.dialog.open(
                    ctx,
                    DialogKind::Open,
                    "Open a training CSV",
                    ("CSV", &["csv"]),
                    None,
                );
            }
            if ui
                .button("Use sample data")
                .on_hover_text(
                    "This site's share of the Wisconsin breast-cancer training rows bundled \
                     with FedHE (client-a: client_1.csv … client-d: client_4.csv; the test \
                     rows are in none)",
                )
                .clicked()
            {
                match crate::app::demo::site_sample_path(&settings.client_id) {
                    Ok(p) => self.open_csv(ctx, &p, settings),
                    Err(e) => widgets::push_note(&mut self.notes, Note::from(e)),
                }
            }
            ui.weak("or drop a CSV file onto the window");
            if self.is_loading_csv() {
                ui.spinner();
            }
        });
    }
}

/// Label column, task and positive class; true when one changed.
fn schema_ui(ui: &mut Ui, view: &CsvView, settings: &mut Settings) -> bool {
    let target = view.dataset().map(|d| d.label.clone());
    let mut changed = false;
    ui.horizontal_wrapped(|ui| {
        changed |= label_ui(ui, &view.header, settings);
        changed |= task_ui(ui, target.as_ref(), settings);
        if let Some(m) = target.as_ref().and_then(|t| t.binary()) {
            changed |= positive_ui(ui, m, settings);
        }
    });
    changed
}

fn label_ui(ui: &mut Ui, header: &[String], settings: &mut Settings) -> bool {
    let mut changed = false;
    let current = settings
        .label
        .clone()
        .unwrap_or_else(|| "(automatic)".into());
    // Caption first, then the box (from_label puts it after).
    let caption = ui.label("Label column");
    egui::ComboBox::from_id_salt("label-column")
        .selected_text(current)
        .show_ui(ui, |ui| {
            for h in header {
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
    changed
}

fn task_ui(ui: &mut Ui, target: Option<&Target>, settings: &mut Settings) -> bool {
    let mut changed = false;
    let caption = ui.label("Task");
    let task_text = |t: Option<TaskKind>| match t {
        None => "automatic".to_string(),
        Some(k) => k.to_string(),
    };
    egui::ComboBox::from_id_salt("task-kind")
        .selected_text(match (settings.task, target) {
            (None, Some(t)) => format!("automatic ({})", t.kind()),
            (t, _) => task_text(t),
        })
        .show_ui(ui, |ui| {
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
    changed
}

fn positive_ui(ui: &mut Ui, m: &fedhe::data::LabelMapping, settings: &mut Settings) -> bool {
    let mut changed = false;
    let caption = ui.label("Positive class");
    egui::ComboBox::from_id_salt("positive-class")
        .selected_text(m.positive.clone())
        .show_ui(ui, |ui| {
            for v in [&m.positive, &m.negative] {
                if ui.selectable_label(&m.positive == v, v.as_str()).clicked() && &m.positive != v {
                    settings.positive = Some(v.clone());
                    changed = true;
                }
            }
        })
        .response
        .labelled_by(caption.id);
    changed
}

/// The feature columns, each with a box to untick; true when one changed.
fn features_ui(ui: &mut Ui, view: &CsvView, settings: &mut Settings) -> bool {
    let features = view
        .dataset()
        .map(|d| d.feature_names.clone())
        .unwrap_or_default();
    let loaded = view.dataset().is_some();
    let mut changed = false;
    ui.collapsing("Feature columns (untick to ignore)", |ui| {
        ui.horizontal_wrapped(|ui| {
            for h in &view.header {
                if settings.label.as_deref() == Some(h.as_str()) || h.is_empty() {
                    continue;
                }
                let mut used = !settings.ignored.contains(h);
                let auto_dropped = used && !features.contains(h) && loaded;
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
    changed
}

/// What the loaded data holds, or why the file cannot be used.
fn loaded_ui(ui: &mut Ui, loaded: &Result<LoadedCsv, DataError>) {
    let l = match loaded {
        Ok(l) => l,
        Err(e) => {
            ui.label(
                RichText::new(format!("✖ This CSV cannot be used: {e}"))
                    .color(widgets::ERROR_COLOR),
            );
            return;
        }
    };
    let d = &l.dataset;
    let about = match &d.label {
        Target::Binary(m) => format!(
            "{} positive ({}) / {} negative ({})",
            d.positives(),
            m.positive,
            d.rows() - d.positives(),
            m.negative
        ),
        Target::Multiclass { classes, .. } => format!(
            "{} classes ({})",
            classes.len(),
            fedhe::data::shorten(&classes.join(", "), 80)
        ),
        Target::Regression { column } => {
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
    let preview = preview_csv(path, PREVIEW_ROWS).map_err(|e| match e {
        DataError::Open { source, .. } => AppError::file("open", path, &source),
        DataError::Read { message, .. } => AppError::File {
            action: "read",
            path: path.to_path_buf(),
            reason: message,
        },
        e => AppError::File {
            action: "read",
            path: path.to_path_buf(),
            reason: e.to_string(),
        },
    })?;
    let (loaded, profile) = load_with_schema(path, &preview.header, schema);
    let kinds = column_kinds(&preview.header, &loaded, profile.as_ref());
    Ok(CsvView {
        path: path.to_path_buf(),
        header: preview.header,
        rows: preview.rows,
        total_rows: preview.total_rows,
        kinds,
        loaded,
    })
}

/// Loads the file with `schema` where it fits this header, each column's
/// kind (number, categories, left out) from a first look at the file; and
/// that look, for the missing cells.
fn load_with_schema(
    path: &Path,
    header: &[String],
    schema: &Schema,
) -> (Result<LoadedCsv, DataError>, Option<TableProfile>) {
    // A schema remembered from another file only applies where it fits.
    let has = |c: &String| header.contains(c);
    let label = schema.label.clone().filter(has);
    let asked = CsvOptions {
        target: match schema.task {
            None => TargetSpec::Auto,
            Some(TaskKind::Binary) => TargetSpec::Binary,
            Some(TaskKind::Multiclass) => TargetSpec::Classes(None),
            Some(TaskKind::Regression) => TargetSpec::Numeric,
        },
        positive: schema.positive.clone().filter(|_| label.is_some()),
        ignore: schema.ignored.iter().filter(|c| has(c)).cloned().collect(),
        label,
        ..CsvOptions::default()
    };
    let (opts, notes, profile) = match auto_schema(path, &asked, asked.label.as_deref()) {
        Ok(a) => (a.options, a.notes, Some(a.profile)),
        Err(_) => (asked.clone(), Vec::new(), None),
    };
    let mut loaded = load_csv(path, &opts);
    if let Err(DataError::UnknownPositive { .. }) = &loaded {
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
    (loaded, profile)
}

/// Per header column: its kind as loaded and its missing cells.
fn column_kinds(
    header: &[String],
    loaded: &Result<LoadedCsv, DataError>,
    profile: Option<&TableProfile>,
) -> Vec<(String, usize)> {
    header
        .iter()
        .map(|h| {
            let missing = profile
                .and_then(|p| p.columns.iter().find(|c| &c.name == h))
                .map_or(0, |c| c.missing);
            let kind = match loaded {
                Ok(l) if l.dataset.label.column() == h => "label".to_string(),
                Ok(l) => match l.dataset.columns.iter().find(|c| c.name() == h) {
                    Some(RawColumn::Numeric { .. }) => "numeric".to_string(),
                    Some(RawColumn::Categorical { categories, .. }) => {
                        format!("categorical ({})", categories.len())
                    }
                    None => "ignored".to_string(),
                },
                Err(_) => String::new(),
            };
            (kind, missing)
        })
        .collect()
}
