//! The FedHE desktop app (eframe/egui): Client, Server and Predict tabs and a
//! one-click demo. UI only: every piece of real work is a library call made
//! on a background thread ([`jobs`]).
//!
//! Entry point: [`run`]. Tests drive [`FedheApp`] headless with egui_kittest.

mod client_tab;
mod demo;
pub mod error;
mod export;
pub mod jobs;
mod plots;
mod predict_tab;
mod server_tab;
pub mod settings;
mod widgets;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use egui::{RichText, Ui};

pub use client_tab::ClientTab;
pub use demo::{DemoDataset, DemoPanel, sample_csv_path};
pub use predict_tab::PredictTab;
pub use server_tab::ServerTab;
pub use settings::{Settings, Tab};
pub use widgets::Note;

use fedhe::crypto::PublicKeyFile;
use fedhe::model::ModelFile;

/// Window title and persistence name.
pub const APP_NAME: &str = "FedHE";
/// Application id (Wayland app id / X11 WM class; matches icons/fedhe.desktop).
pub const APP_ID: &str = "fedhe";

/// The window icon (icons/fedhe.png, 256×256 RGBA).
const ICON_PNG: &[u8] = include_bytes!("../../icons/fedhe.png");

/// Why the window could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("cannot open the FedHE window: {0}")]
    Window(String),
}

/// Opens the desktop app; `initial_csv` is loaded into the Client tab.
pub fn run(initial_csv: Option<PathBuf>) -> Result<(), AppError> {
    let mut viewport = egui::ViewportBuilder::default()
        .with_title("FedHE — encrypted federated learning")
        .with_app_id(APP_ID)
        .with_inner_size([1280.0, 860.0])
        .with_min_inner_size([860.0, 560.0])
        .with_drag_and_drop(true);
    // A broken icon is not worth failing the app for: the window just has none.
    if let Ok(icon) = eframe::icon_data::from_png_bytes(ICON_PNG) {
        viewport = viewport.with_icon(Arc::new(icon));
    }
    let options = eframe::NativeOptions {
        viewport,
        ..eframe::NativeOptions::default()
    };
    eframe::run_native(
        APP_NAME,
        options,
        Box::new(move |cc| Ok(Box::new(FedheApp::new(cc, initial_csv)))),
    )
    .map_err(|e| AppError::Window(e.to_string()))
}

/// The latest global model and where it came from.
#[derive(Debug, Clone)]
pub struct LatestModel {
    pub model: ModelFile,
    pub source: String,
    /// The rows held out from its training (the demo's), which "Open in
    /// Predict" scores; `None`: Predict asks for a test file.
    pub test_csv: Option<PathBuf>,
}

/// What the tabs share.
#[derive(Default)]
pub struct Shared {
    /// The newest global model (demo or Client tab), for Predict.
    pub latest_model: Option<LatestModel>,
    /// The demo's held-out rows, written to a temporary file.
    pub demo_test_csv: Option<PathBuf>,
    /// URL of the embedded aggregator while it runs.
    pub embedded_url: Option<String>,
    /// Public part of the Client tab's key, offered to the Server tab.
    pub client_public_key: Option<PublicKeyFile>,
    /// The Client tab's CSV, from which the Server tab can propose a plan.
    pub client_csv: Option<PathBuf>,
    /// Switch to this tab after the frame.
    pub goto: Option<Tab>,
    /// Predict should take the latest model now.
    pub predict_latest: bool,
    /// The Server tab's Resume: the Client tab joins again and starts
    /// federated training as soon as it has joined.
    pub resume: bool,
}

/// The whole app.
pub struct FedheApp {
    pub settings: Settings,
    pub client: ClientTab,
    pub server: ServerTab,
    pub predict: PredictTab,
    pub demo: DemoPanel,
    pub shared: Shared,
    /// A file given on the command line, loaded on the first frame.
    pending_csv: Option<PathBuf>,
    /// Messages about dropped files that fit nowhere.
    pub drop_notes: Vec<Note>,
    /// The operator said yes to closing with a federation running.
    close_confirmed: bool,
    /// Plots saved as PNG (any tab's "Save plot as PNG…").
    plot_export: export::PlotExport,
    /// Where the last frame drew the tab in view, and the notes bar under
    /// it.
    pub tab_rect: Option<egui::Rect>,
    pub notes_rect: Option<egui::Rect>,
}

impl FedheApp {
    /// The app with the settings saved by a previous run, if any.
    pub fn new(cc: &eframe::CreationContext<'_>, initial_csv: Option<PathBuf>) -> Self {
        let settings = cc
            .storage
            .and_then(|s| eframe::get_value::<Settings>(s, eframe::APP_KEY))
            .unwrap_or_default();
        Self::with_settings(settings, initial_csv)
    }

    /// The app with explicit settings (tests, first run). The CSV of the
    /// last session is reopened unless another one is given.
    pub fn with_settings(mut settings: Settings, initial_csv: Option<PathBuf>) -> Self {
        if initial_csv.is_some() {
            settings.tab = Tab::Client;
        }
        let initial_csv = initial_csv.or_else(|| settings.last_csv.clone().filter(|p| p.is_file()));
        Self {
            settings,
            client: ClientTab::default(),
            server: ServerTab::default(),
            predict: PredictTab::default(),
            demo: DemoPanel::default(),
            shared: Shared::default(),
            pending_csv: initial_csv,
            drop_notes: Vec::new(),
            close_confirmed: false,
            plot_export: export::PlotExport::default(),
            tab_rect: None,
            notes_rect: None,
        }
    }

    /// Routes a dropped file by its kind and the tab in view: a model goes
    /// to Predict, a CSV to Predict (as test data) or the Client tab, a key
    /// file to the Server tab (public key) or the Client tab (secret key).
    pub fn open_path(&mut self, ctx: &egui::Context, path: &Path) {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        match (ext.as_str(), self.settings.tab) {
            ("json", _) => {
                self.settings.tab = Tab::Predict;
                self.settings.model_path = path.display().to_string();
                self.predict.load_model(ctx, path);
            }
            ("csv", Tab::Predict) => {
                self.settings.test_csv_path = path.display().to_string();
                self.predict.load_test_csv(ctx, path);
            }
            ("csv", _) => {
                self.settings.tab = Tab::Client;
                self.client.open_csv(ctx, path, &mut self.settings);
            }
            ("key", Tab::Server) => self.server.load_public_key(path, &mut self.settings),
            ("key", _) => {
                self.settings.tab = Tab::Client;
                self.settings.key_path = path.display().to_string();
                self.client.load_key(ctx, path);
            }
            _ => widgets::push_note(
                &mut self.drop_notes,
                Note::Error(format!(
                    "{}: FedHE opens CSV data (.csv), models (.json) and key files (.key).",
                    path.display()
                )),
            ),
        }
    }

    fn handle_drops(&mut self, ctx: &egui::Context) {
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .map(|f| f.path().to_path_buf())
                .collect()
        });
        for p in dropped {
            self.open_path(ctx, &p);
        }
    }

    fn poll_jobs(&mut self, ctx: &egui::Context) {
        if let Some(p) = self.pending_csv.take() {
            self.client.open_csv(ctx, &p, &mut self.settings);
        }
        self.client.poll(&mut self.settings, &mut self.shared);
        self.server.poll(ctx, &mut self.settings, &mut self.shared);
        self.predict.poll(ctx, &mut self.settings.test_csv_path);
        self.demo.poll(&mut self.shared);
    }

    fn top_bar_ui(&mut self, ui: &mut Ui) {
        ui.horizontal(|ui| {
            ui.label(RichText::new("FedHE").strong().size(20.0));
            ui.separator();
            for (tab, name) in [
                (Tab::Client, "Client"),
                (Tab::Server, "Server"),
                (Tab::Predict, "Predict"),
            ] {
                let text = RichText::new(name).size(16.0);
                if ui
                    .selectable_label(self.settings.tab == tab, text)
                    .clicked()
                {
                    self.settings.tab = tab;
                }
            }
            ui.separator();
            let demo = egui::Button::new(
                RichText::new("▶ Run demo")
                    .size(16.0)
                    .strong()
                    .color(egui::Color32::WHITE),
            )
            .fill(widgets::ENCRYPTED_COLOR)
            .selected(self.settings.tab == Tab::Demo);
            if ui
                .add(demo)
                .on_hover_text("Encrypted federated learning with virtual clients, in one click")
                .clicked()
            {
                self.settings.tab = Tab::Demo;
            }
            ui.separator();
            ui.menu_button(RichText::new("Help").size(16.0), help_menu_ui);
            ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                self.activity_ui(ui);
            });
        });
    }

    /// What runs in the background, at a glance.
    fn activity_ui(&self, ui: &mut Ui) {
        let mut busy = Vec::new();
        if self.demo.is_running() {
            busy.push("demo");
        }
        if self.client.is_training() {
            busy.push("training");
        }
        if self.client.is_loading_csv() {
            busy.push("loading CSV");
        }
        if self.predict.is_busy() {
            busy.push("scoring");
        }
        if self.server.is_running() {
            ui.label(RichText::new("✔ aggregator running").color(widgets::OK_COLOR));
        }
        if !busy.is_empty() {
            ui.label(busy.join(", "));
            ui.spinner();
        }
    }
}

impl eframe::App for FedheApp {
    /// Runs before every frame and also while the window is hidden, so that
    /// background jobs are drained and the embedded aggregator keeps
    /// auto-aggregating when the window is minimized.
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        self.poll_jobs(ctx);
    }

    fn ui(&mut self, ui: &mut Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        // Drops are read here, not in `logic`: while the window is hidden,
        // `logic` sees the last shown frame's input again.
        self.handle_drops(&ctx);
        self.guard_close(&ctx);

        egui::Panel::top("fedhe-top").show(ui, |ui| {
            ui.add_space(4.0);
            self.top_bar_ui(ui);
            ui.add_space(2.0);
        });
        self.notes_bar_ui(ui);
        let notes = self.notes_count();
        self.tab_rect = Some(
            egui::CentralPanel::default()
                .show(ui, |ui| match self.settings.tab {
                    Tab::Demo => {
                        egui::ScrollArea::vertical()
                            .id_salt("demo-scroll")
                            .show(ui, |ui| {
                                self.demo.ui(ui, &mut self.settings.demo, &mut self.shared);
                            });
                    }
                    Tab::Client => self.client.ui(ui, &mut self.settings, &mut self.shared),
                    Tab::Server => self.server.ui(ui, &mut self.settings, &mut self.shared),
                    Tab::Predict => {
                        egui::ScrollArea::vertical()
                            .id_salt("predict-scroll")
                            .show(ui, |ui| {
                                self.predict.ui(
                                    ui,
                                    &mut self.settings.model_path,
                                    &mut self.settings.test_csv_path,
                                    &mut self.shared,
                                );
                            });
                    }
                })
                .response
                .rect,
        );
        if let Some(note) = self.plot_export.run(&ctx) {
            widgets::push_note(&mut self.drop_notes, note);
        }
        if self.notes_count() != notes {
            ctx.request_repaint();
        }
        drop_overlay_ui(&ctx);
        if let Some(t) = self.shared.goto.take() {
            self.settings.tab = t;
            ctx.request_repaint();
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        // Saved while it runs: a reopened app starts it again.
        self.settings.server_was_running |= self.server.is_running();
        eframe::set_value(storage, eframe::APP_KEY, &self.settings);
    }

    fn on_exit(&mut self) {
        self.server.stop_for_exit();
    }
}

impl FedheApp {
    /// The notes of the tab in view (and of dropped files), in a bar of a
    /// fixed height along the window's bottom edge: outside the tab, so
    /// that they never cover its controls, and always there, so that a
    /// note coming or going never moves them. More notes than fit scroll
    /// in the bar, the newest in view.
    fn notes_bar_ui(&mut self, ui: &mut Ui) {
        let tab = match self.settings.tab {
            Tab::Demo => &mut self.demo.notes,
            Tab::Client => &mut self.client.notes,
            Tab::Server => &mut self.server.notes,
            Tab::Predict => &mut self.predict.notes,
        };
        let drop_notes = &mut self.drop_notes;
        let shown = egui::Panel::bottom("fedhe-notes")
            .resizable(false)
            .exact_size(NOTES_BAR_HEIGHT)
            .show(ui, |ui| {
                egui::ScrollArea::vertical()
                    .id_salt("fedhe-notes-scroll")
                    .auto_shrink(false)
                    .stick_to_bottom(true)
                    .show(ui, |ui| {
                        ui.add_space(2.0);
                        if tab.is_empty() && drop_notes.is_empty() {
                            ui.weak("Messages appear here.");
                        }
                        widgets::notes_ui(ui, drop_notes);
                        widgets::notes_ui(ui, tab);
                    });
            });
        self.notes_rect = Some(shown.response.rect);
    }

    /// How many notes the tabs hold: a note added while a tab draws is
    /// shown by the next frame, which this asks for.
    fn notes_count(&self) -> usize {
        self.drop_notes.len()
            + self.demo.notes.len()
            + self.client.notes.len()
            + self.server.notes.len()
            + self.predict.notes.len()
    }

    /// Asks before the window closes while training runs or sites are
    /// registered with the embedded aggregator; shows the question.
    fn guard_close(&mut self, ctx: &egui::Context) {
        if ctx.input(|i| i.viewport().close_requested()) && !self.close_confirmed {
            let what = self.server.would_interrupt().or_else(|| {
                self.client
                    .is_training()
                    .then(|| "Federated training is running in the Client tab".to_string())
            });
            if let Some(what) = what {
                ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
                self.server.ask_before_closing(what);
            }
        }
        if self.server.confirm_ui(ctx, &mut self.settings) == Some(server_tab::Answer::CloseWindow)
        {
            self.close_confirmed = true;
            ctx.send_viewport_cmd(egui::ViewportCommand::Close);
        }
    }
}

/// The notes bar's height: two one-line notes, or one of three lines.
const NOTES_BAR_HEIGHT: f32 = 72.0;

/// The guides shipped with FedHE (`docs/` of the source tree).
const DOCS: [(&str, &str); 5] = [
    ("The app, tab by tab", "app.md"),
    ("Federation plans", "plan.md"),
    ("Privacy: masks and DP-SGD", "privacy.md"),
    ("The aggregator's HTTP API", "api.md"),
    ("Models and metrics", "models.md"),
];

/// Help: the guides, the keyboard shortcuts (zoom), the theme, the version.
fn help_menu_ui(ui: &mut Ui) {
    ui.strong("Guides");
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    for (title, file) in DOCS {
        let path = docs.join(file);
        if path.is_file() {
            ui.hyperlink_to(title, format!("file://{}", path.display()));
        } else {
            ui.label(format!("{title}: docs/{file} in the FedHE sources"));
        }
    }
    ui.separator();
    ui.strong("Zoom");
    ui.label("Ctrl + and Ctrl − zoom in and out, Ctrl 0 resets (⌘ on a Mac).");
    egui::gui_zoom::zoom_menu_buttons(ui);
    ui.separator();
    ui.strong("Theme");
    egui::widgets::global_theme_preference_buttons(ui);
    ui.separator();
    ui.weak(format!(
        "FedHE {}: federated learning on homomorphically encrypted updates.",
        env!("CARGO_PKG_VERSION")
    ));
}

/// Darkens the window while files are dragged over it.
fn drop_overlay_ui(ctx: &egui::Context) {
    let hovering = ctx.input(|i| !i.raw.hovered_files.is_empty());
    if !hovering {
        return;
    }
    let painter = ctx.layer_painter(egui::LayerId::new(
        egui::Order::Foreground,
        egui::Id::unique("fedhe-drop"),
    ));
    let rect = ctx.content_rect();
    painter.rect_filled(rect, 0.0, egui::Color32::from_black_alpha(160));
    painter.text(
        rect.center(),
        egui::Align2::CENTER_CENTER,
        "Drop a CSV, a model (.json) or a key file",
        egui::FontId::proportional(24.0),
        egui::Color32::WHITE,
    );
}
