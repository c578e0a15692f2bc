//! Client tab: identity, CSV (open / drop / command line → one code path),
//! preview and schema, keys, aggregator connection and registration,
//! training settings, local or federated training with live plots and a
//! per-round log, saving the model.
//!
//! One file per section, each owning its background job (and dialog), its
//! `poll` and its `ui`: [`data`], [`keys`], [`connect`], [`training`]. What
//! the sections share — the CSV, the key, the federation joined, the run and
//! its model, the notes — lives on [`ClientTab`].

mod connect;
mod data;
mod keys;
mod training;
mod watch;

use std::sync::Arc;

use egui::Ui;

use super::Shared;
use super::settings::Settings;
use super::widgets::{self, Note};
use fedhe::crypto::SecretKey;
use fedhe::model::ModelFile;

pub use connect::JoinedSite;
pub use data::CsvView;
pub use training::RunView;

#[derive(Default)]
pub struct ClientTab {
    pub csv: Option<CsvView>,
    pub key: Option<Arc<SecretKey>>,
    pub key_info: String,
    pub federation: Option<JoinedSite>,
    pub registered: Option<String>,
    pub run: RunView,
    pub model: Option<ModelFile>,
    pub notes: Vec<Note>,
    data: data::DataPanel,
    keys: keys::KeyPanel,
    connect: connect::ConnectPanel,
    training: training::TrainingPanel,
    /// The training status line, its countdowns ticking.
    status_line: widgets::LiveLine,
    /// The aggregator's open round, live, while federated training runs.
    watch: watch::RoundWatch,
    /// Resume (Server tab): start federated training once joined.
    start_when_joined: bool,
}

impl ClientTab {
    /// Applies what the sections' jobs sent. Called every frame.
    pub fn poll(&mut self, settings: &mut Settings, shared: &mut Shared) {
        shared.client_csv = self.csv.as_ref().map(|c| c.path.clone());
        self.poll_data(settings);
        self.poll_keys(shared);
        self.poll_connect();
        self.poll_training(shared);
        if !self.is_training() {
            self.watch.stop();
        }
        self.watch.poll();
        self.follow_embedded(settings, shared);
    }

    /// The embedded aggregator came back at another address: the federation
    /// joined at the old one is let go (join again), rather than retried
    /// at an address nobody answers.
    fn follow_embedded(&mut self, settings: &Settings, shared: &Shared) {
        let (Some(url), Some(f)) = (&shared.embedded_url, &self.federation) else {
            return;
        };
        if !settings.use_embedded || &f.joined.server == url || self.is_training() {
            return;
        }
        widgets::push_note(
            &mut self.notes,
            Note::Info(format!(
                "The embedded aggregator is now at {url} (it was at {}): join again to \
                 continue there.",
                f.joined.server
            )),
        );
        self.federation = None;
        self.registered = None;
    }

    /// The aggregator's open round as the Client tab shows it, while
    /// federated training runs ("Aggregator, round 2: in: client-a …").
    pub fn waiting_line(&self) -> Option<String> {
        self.watch.line()
    }

    /// A job that died (a bug), in words.
    fn failure(&mut self, failure: Option<String>) {
        if let Some(e) = failure {
            widgets::push_note(&mut self.notes, Note::from(e));
        }
    }

    pub fn ui(&mut self, ui: &mut Ui, settings: &mut Settings, shared: &mut Shared) {
        let ctx = ui.ctx().clone();
        self.take_csv_dialog(&ctx, settings);
        self.take_key_dialog(&ctx, settings);
        self.take_save_dialog(&ctx);
        if std::mem::take(&mut shared.resume) {
            self.resume(&ctx, settings, shared);
        }
        if self.start_when_joined && self.federation.is_some() && !self.is_training() {
            self.start_when_joined = false;
            self.start_federated(&ctx, settings);
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
                self.checklist_ui(ui, shared, settings);
                self.data_ui(ui, settings, &ctx);
                self.keys_ui(ui, settings, &ctx);
                self.connect_ui(ui, settings, shared, &ctx);
                self.training_ui(ui, settings, shared, &ctx);
            });
    }
}

impl ClientTab {
    /// What this site needs, and which file goes where.
    fn checklist_ui(&self, ui: &mut Ui, shared: &Shared, settings: &Settings) {
        let url = if settings.use_embedded {
            shared.embedded_url.is_some()
        } else {
            !settings.server_url.trim().is_empty()
        };
        widgets::checklist_ui(
            ui,
            "client-checklist",
            "First steps: what this site needs",
            &[
                (
                    self.csv.is_some(),
                    "1. This site's CSV, with the federation's columns (it never leaves this \
                     machine).",
                ),
                (
                    self.key.is_some(),
                    "2. The federation's secret.key: the same file at every site, handed over \
                     in person or by a secure channel; never to the aggregator.",
                ),
                (
                    url,
                    "3. The aggregator's address (Server tab, or the operator's URL), then \
                     Join federation and Start federated training.",
                ),
                (
                    self.registered.is_some(),
                    "4. Joined: the plan says the model, rounds and columns.",
                ),
            ],
        );
    }
}

/// What a finished federated run says: the federation's completion as the
/// aggregator records it ("Federation complete: 20 of 20 rounds, 3
/// sites"), else the rounds this site ran.
fn done_words(joined: &fedhe::session::Joined, rounds: usize) -> String {
    match joined.api.status().ok().and_then(|s| s.complete) {
        Some(c) => format!(
            "✔ Federation complete: {}; the global model is ready.",
            c.describe()
        ),
        None => format!("Done: {rounds} rounds; the global model is ready."),
    }
}
