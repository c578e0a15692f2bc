//! Server tab: start / stop the embedded aggregator or watch a remote one;
//! load the session's public key (never a secret key); registered clients,
//! round state, "Aggregate now", auto-aggregate, round history with a plot.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use egui::{RichText, Ui};

use super::Shared;
use super::error::AppError;
use super::jobs::{Job, Progress, human_bytes, human_ms, poll_slot};
use super::plots::{Series, line_plot_ui};
use super::settings::Settings;
use super::widgets::{self, DialogKind, ENCRYPTED_COLOR, FileDialog, Note, OK_COLOR};
use fedhe::client::AggregatorClient;
use fedhe::crypto::{CryptoError, PublicKeyFile};
use fedhe::plan::{Plan, ProposeOptions, Quorum};
use fedhe::protocol::{ClientInfo, RoundInfo, RoundPhase, RoundState, StatusResponse};
use fedhe::server::{EmbeddedServer, ServerConfig};

mod keep;
pub use keep::{Answer, Confirm};

/// How often the embedded aggregator's state is read.
const EMBEDDED_POLL: Duration = Duration::from_millis(250);
/// How often a remote aggregator is asked.
const REMOTE_POLL: Duration = Duration::from_secs(1);

/// What the tab shows of an aggregator.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub status: StatusResponse,
    pub clients: Vec<ClientInfo>,
    /// The client list was refused (a remote aggregator without a token).
    pub clients_hidden: bool,
}

enum RemoteMsg {
    Snapshot(Box<Snapshot>, Vec<RoundInfo>),
    Error(String),
}

enum OpMsg {
    Done(Result<String, AppError>),
}

#[derive(Default)]
pub struct ServerTab {
    pub server: Option<EmbeddedServer>,
    pub public_key: Option<(PublicKeyFile, String)>,
    /// The federation plan and where it came from.
    pub plan: Option<(Plan, String)>,
    plan_dialog: FileDialog,
    plan_save_dialog: FileDialog,
    pub snapshot: Option<Snapshot>,
    pub history: Vec<RoundInfo>,
    pub remote: bool,
    /// Operator token of a remote aggregator (kept in memory only).
    pub remote_token: String,
    remote_job: Option<Job<RemoteMsg>>,
    op_job: Option<Job<OpMsg>>,
    last_poll: Option<Instant>,
    key_dialog: FileDialog,
    pub notes: Vec<Note>,
    /// A question before stopping (what it would interrupt).
    pub confirm: Option<(Confirm, String)>,
    /// The round a restarted aggregator's federation was interrupted in.
    pub interrupted: Option<u64>,
    /// Whether the aggregator running at the last exit was started again.
    restarted: bool,
    history_dialog: FileDialog,
}

/// Explains a refused key in words, and why a secret key must never go here.
fn key_error(path: &Path, e: &CryptoError) -> String {
    let inner = match e {
        CryptoError::InFile { source, .. } => source.as_ref(),
        e => e,
    };
    if let CryptoError::WrongKeyKind { found, .. } = inner
        && *found == "secret"
    {
        return format!(
            "{} is a SECRET key file and was refused. The aggregator must only hold the public \
             part: with the secret key it could read every client's update. Load the public key \
             file instead (public.key, written next to the secret key by “Generate new key” in \
             the Client tab).",
            path.display()
        );
    }
    format!("Could not load the public key {}: {e}", path.display())
}

impl ServerTab {
    pub fn is_running(&self) -> bool {
        self.server.is_some()
    }

    pub fn url(&self) -> Option<String> {
        self.server.as_ref().map(|s| s.url().to_string())
    }

    /// Loads the session's public key (typed, chosen or dropped path).
    pub fn load_public_key(&mut self, path: &Path, settings: &mut Settings) {
        match PublicKeyFile::load(path) {
            Ok(k) => {
                settings.public_key_path = path.display().to_string();
                self.set_public_key(k, path.display().to_string());
            }
            Err(e) => widgets::push_note(&mut self.notes, Note::Error(key_error(path, &e))),
        }
    }

    fn set_public_key(&mut self, key: PublicKeyFile, source: String) {
        if let Some(s) = &self.server {
            match s.load_public_key(key.clone(), None) {
                Ok(info) => widgets::push_note(
                    &mut self.notes,
                    Note::Info(format!(
                        "Session key loaded: fingerprint {}, {}, up to {} clients per round",
                        info.fingerprint, info.params, info.max_clients
                    )),
                ),
                Err(e) => {
                    widgets::push_note(
                        &mut self.notes,
                        Note::Error(format!("The aggregator refused the key: {e}")),
                    );
                    return;
                }
            }
        }
        self.public_key = Some((key, source));
        // A plan chosen before the key goes to the aggregator now.
        if let Some((plan, source)) = self.plan.clone() {
            self.set_plan(plan, source);
        }
    }

    /// Loads a plan file (typed or chosen path).
    pub fn load_plan(&mut self, path: &Path, settings: &mut Settings) {
        match Plan::load(path) {
            Ok(p) => {
                settings.plan_path = path.display().to_string();
                self.set_plan(p, path.display().to_string());
            }
            Err(e) => widgets::push_note(&mut self.notes, Note::Error(e.to_string())),
        }
    }

    /// Proposes a plan from the Client tab's CSV, with the Client tab's
    /// column choices and training settings and this tab's quorum.
    pub fn propose_plan(&mut self, csv: &Path, settings: &Settings) {
        // The plan would refuse it naming its fields; say it with this tab's
        // controls (a masked round of two masks nothing).
        if settings.masks && settings.quorum_min_clients < 3 && !settings.allow_single_contributor {
            widgets::push_note(
                &mut self.notes,
                Note::Error(format!(
                    "A plan with pairwise masks needs rounds of at least 3 sites (in a round \
                     of two, each site's update is the sum minus the other's): set \
                     \u{201c}At least\u{201d} to 3, or untick \u{201c}Pairwise masks\u{201d} \
                     for a federation of {} sites.",
                    settings.quorum_min_clients
                )),
            );
            return;
        }
        let opts = ProposeOptions {
            label: settings.label.clone(),
            positive: settings.positive.clone(),
            task: settings.task,
            model: fedhe::plan::ModelSpec {
                gbdt: (settings.architecture == fedhe::model::Architecture::Gbdt)
                    .then_some(settings.gbdt),
                ..fedhe::plan::ModelSpec::of(&settings.architecture)
            },
            ignore: settings.ignored.clone(),
            keep: Vec::new(),
            delimiter: None,
            missing: Vec::new(),
            vocabulary: None,
            training: settings.training,
            quorum: Quorum {
                min_clients: settings.quorum_min_clients,
                roster: Vec::new(),
                round_deadline_secs: settings.round_deadline_secs,
                allow_single_contributor: settings.allow_single_contributor,
            },
            privacy: fedhe::plan::Privacy {
                masks: settings.masks,
                ..fedhe::plan::Privacy::default()
            },
            name: String::new(),
        };
        match fedhe::plan::propose(csv, &opts) {
            Ok((mut plan, _notes)) => {
                plan.privacy.masks = settings.masks;
                // DP-SGD at every site, clip 1, σ chosen for the target ε.
                plan.privacy.dp = settings.dp_epsilon.map(|e| fedhe::privacy::DpSettings {
                    clip: 1.0,
                    noise_multiplier: None,
                    target_epsilon: Some(e),
                    max_epsilon: None,
                    delta: None,
                });
                if plan.privacy.dp.is_some() {
                    plan.training.sgd = dp_sgd(plan.training.sgd);
                }
                let from = super::demo::describe(csv);
                self.set_plan(plan, format!("proposed from {from}"));
            }
            Err(e) => widgets::push_note(
                &mut self.notes,
                Note::Error(format!("Could not propose a plan: {e}")),
            ),
        }
    }

    fn set_plan(&mut self, plan: Plan, source: String) {
        if let Some(s) = &self.server
            && self.public_key.is_some()
        {
            match s.load_plan(plan.clone()) {
                Ok(_) => widgets::push_note(
                    &mut self.notes,
                    Note::Info(format!("Plan {} served to the clients", plan.fingerprint())),
                ),
                Err(e) => {
                    widgets::push_note(
                        &mut self.notes,
                        Note::Error(format!("The aggregator refused the plan: {e}")),
                    );
                    return;
                }
            }
        }
        self.plan = Some((plan, source));
    }

    pub fn start(&mut self, settings: &mut Settings) {
        let ip = if settings.server_public {
            [0, 0, 0, 0]
        } else {
            [127, 0, 0, 1]
        };
        // The port it had, so that sites find it again.
        let port = match settings.server_port {
            0 => settings.server_last_port,
            p => p,
        };
        let state_dir = self.state_dir(settings);
        let operator_token = state_dir.as_deref().and_then(|d| self.kept_token(d));
        let cfg = ServerConfig {
            bind: SocketAddr::from((ip, port)),
            state_dir,
            operator_token,
            public_key: self.public_key.as_ref().map(|k| k.0.clone()),
            plan: self
                .plan
                .as_ref()
                .filter(|_| self.public_key.is_some())
                .map(|p| p.0.clone()),
            // Switched on and off from this tab while the aggregator runs.
            auto_aggregate: settings.auto_aggregate,
            manual_close: !settings.auto_aggregate,
            ..ServerConfig::default()
        };
        let started = EmbeddedServer::start(cfg.clone()).or_else(|e| {
            // The last port taken by another program: any free one.
            if settings.server_port == 0 && port != 0 {
                EmbeddedServer::start(ServerConfig {
                    bind: SocketAddr::from((ip, 0)),
                    ..cfg
                })
            } else {
                Err(e)
            }
        });
        match started {
            Ok(s) => {
                self.history.clear();
                self.snapshot = None;
                self.last_poll = None;
                self.server = Some(s);
                self.restore_from_state(settings);
            }
            Err(e) => widgets::push_note(
                &mut self.notes,
                Note::Error(format!(
                    "Could not start the aggregator: {e}. Its state folder holds another \
                     federation? \"Start a new federation\" clears it."
                )),
            ),
        }
    }

    /// Clears the state folder (the federation it held is forgotten) and
    /// starts the aggregator.
    pub fn start_new(&mut self, settings: &mut Settings) {
        let dir = std::path::PathBuf::from(settings.server_state_dir.trim());
        if dir.is_dir()
            && let Err(e) = std::fs::remove_dir_all(&dir)
        {
            widgets::push_note(
                &mut self.notes,
                Note::Error(format!("Could not clear {}: {e}", dir.display())),
            );
            return;
        }
        self.interrupted = None;
        self.start(settings);
    }

    /// Stops the embedded aggregator without blocking the window.
    pub fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            let spawned = std::thread::Builder::new()
                .name("fedhe-aggregator-stop".into())
                .spawn(move || s.shutdown());
            if let Err(e) = spawned {
                widgets::push_note(
                    &mut self.notes,
                    Note::Error(format!("Could not stop the aggregator cleanly: {e}")),
                );
            }
        }
        self.snapshot = None;
    }

    /// Reads the aggregator's state; closes the round when auto-aggregate is
    /// on and every registered client has submitted. Called every frame.
    pub fn poll(&mut self, ctx: &egui::Context, settings: &mut Settings, shared: &mut Shared) {
        if !self.restarted {
            // Reopened: the aggregator that ran at the last exit, again.
            self.restarted = true;
            if settings.server_was_running && !self.remote && self.server.is_none() {
                self.start(settings);
            }
        }
        shared.embedded_url = self.url();
        let (msgs, failure) = poll_slot(&mut self.remote_job);
        for m in msgs {
            match m {
                RemoteMsg::Snapshot(s, infos) => {
                    self.snapshot = Some(*s);
                    merge_history(&mut self.history, infos);
                }
                RemoteMsg::Error(e) => widgets::push_note(&mut self.notes, Note::from(e)),
            }
        }
        if let Some(e) = failure {
            widgets::push_note(&mut self.notes, Note::from(e));
        }
        let (msgs, failure) = poll_slot(&mut self.op_job);
        for OpMsg::Done(r) in msgs {
            match r {
                Ok(s) => widgets::push_note(&mut self.notes, Note::Info(s)),
                Err(e) => widgets::push_note(&mut self.notes, Note::from(e)),
            }
        }
        if let Some(e) = failure {
            widgets::push_note(&mut self.notes, Note::from(e));
        }

        let Some(server) = &self.server else {
            return;
        };
        ctx.request_repaint_after(EMBEDDED_POLL);
        if self.last_poll.is_some_and(|t| t.elapsed() < EMBEDDED_POLL) {
            return;
        }
        self.last_poll = Some(Instant::now());
        // The aggregator closes rounds by the plan's quorum itself.
        server.set_auto_aggregate(settings.auto_aggregate);
        let status = server.status();
        let first = self.history.len() as u64 + 1;
        let infos: Vec<RoundInfo> = (first..=status.last_closed.unwrap_or(0))
            .filter_map(|r| server.round_info(r).ok())
            .collect();
        merge_history(&mut self.history, infos);
        self.snapshot = Some(Snapshot {
            clients_hidden: false,
            clients: server.clients(),
            status,
        });
    }

    fn aggregate_now(&mut self, ctx: &egui::Context, settings: &Settings) {
        let Some(snap) = &self.snapshot else {
            return;
        };
        let round = snap.status.round;
        if let Some(s) = &self.server {
            match s.close_round(round) {
                Ok(r) => widgets::push_note(
                    &mut self.notes,
                    Note::Info(format!(
                        "Round {} closed with {} contributors; round {} is open.",
                        r.round, r.contributors, r.next_round
                    )),
                ),
                Err(e) => widgets::push_note(
                    &mut self.notes,
                    Note::Error(format!("Could not close round {round}: {e}")),
                ),
            }
            self.last_poll = None;
            return;
        }
        let api = AggregatorClient::new(settings.remote_url.trim())
            .with_token(self.remote_token.trim().to_string());
        self.spawn_op(ctx, "close-round", move || {
            api.close_round(round)
                .map(|r| {
                    format!(
                        "Round {} closed with {} contributors.",
                        r.round, r.contributors
                    )
                })
                .map_err(|source| AppError::Aggregator {
                    action: format!("close round {round}"),
                    source: Box::new(source),
                })
        });
    }

    fn watch_remote(&mut self, ctx: &egui::Context, url: &str) {
        self.history.clear();
        self.snapshot = None;
        let token = self.remote_token.trim().to_string();
        let mut api = AggregatorClient::new(url);
        if !token.is_empty() {
            api = api.with_token(token);
        }
        let job = Job::spawn("watch-remote", ctx, move |p: Progress<RemoteMsg>| {
            let mut known = 0u64;
            while !p.cancelled() {
                match remote_snapshot(&api, known) {
                    Ok((snap, infos)) => {
                        known += infos.len() as u64;
                        p.send(RemoteMsg::Snapshot(Box::new(snap), infos));
                    }
                    Err(e) => {
                        p.send(RemoteMsg::Error(e));
                        return;
                    }
                }
                let t = Instant::now();
                while t.elapsed() < REMOTE_POLL && !p.cancelled() {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        });
        match job {
            Ok(j) => self.remote_job = Some(j),
            Err(e) => widgets::push_note(&mut self.notes, Note::from(e)),
        }
    }

    pub fn ui(&mut self, ui: &mut Ui, settings: &mut Settings, shared: &mut Shared) {
        let ctx = ui.ctx().clone();
        if let Some(p) = self.key_dialog.take(&ctx) {
            self.load_public_key(&p, settings);
        }
        if let Some(p) = self.plan_dialog.take(&ctx) {
            self.load_plan(&p, settings);
        }
        if let Some(p) = self.plan_save_dialog.take(&ctx)
            && let Some((plan, _)) = &self.plan
        {
            let note = match plan.save(&p, &[]) {
                Ok(()) => Note::Info(format!("Plan saved to {}", p.display())),
                Err(e) => Note::Error(e.to_string()),
            };
            widgets::push_note(&mut self.notes, note);
        }
        egui::ScrollArea::vertical()
            .id_salt("server-scroll")
            .show(ui, |ui| {
                ui.heading("Aggregator");
                ui.label("The aggregator adds the clients' encrypted updates and publishes the sum. It holds only the public key: it can read neither an update, nor the sum, nor the model.");
                ui.horizontal(|ui| {
                    ui.add_enabled_ui(!self.is_running() && self.remote_job.is_none(), |ui| {
                        ui.radio_value(&mut self.remote, false, "Embedded (this app)");
                        ui.radio_value(&mut self.remote, true, "Remote");
                    });
                });
                if !self.remote {
                    self.checklist_ui(ui);
                }
                if self.remote {
                    self.remote_ui(ui, settings, &ctx);
                } else {
                    self.embedded_ui(ui, settings, shared);
                }
                self.key_ui(ui, settings, shared, &ctx);
                if !self.remote {
                    self.plan_ui(ui, settings, shared, &ctx);
                }
                self.state_ui(ui, settings, &ctx);
            });
    }

    fn embedded_ui(&mut self, ui: &mut Ui, settings: &mut Settings, shared: &mut Shared) {
        ui.horizontal(|ui| {
            if let Some(s) = &self.server {
                let url = s.url().to_string();
                if ui.button("■ Stop aggregator").clicked() {
                    self.request_stop(settings, Confirm::Stop);
                    return;
                }
                ui.label(RichText::new("✔ running").color(OK_COLOR));
                widgets::copyable_ui(ui, "Address:", &url);
            } else {
                ui.add_enabled_ui(true, |ui| {
                    widgets::number_field(ui, "Port", &mut settings.server_port, 0..=65535, 1.0)
                        .on_hover_text("0 = any free port");
                    ui.checkbox(&mut settings.server_public, "Reachable from other machines")
                        .on_hover_text("Listen on every network interface instead of this machine only (plain HTTP: use it on a trusted network, or run `fedhe serve` with TLS)");
                });
                let start = egui::Button::new(
                    RichText::new("▶ Start aggregator").color(egui::Color32::WHITE),
                )
                .fill(ENCRYPTED_COLOR);
                if ui.add(start).clicked() {
                    self.start(settings);
                }
                if ui
                    .button("Start a new federation")
                    .on_hover_text(format!(
                        "Clears the aggregator's state folder ({}) and starts it: the \
                         federation it held (sites, rounds) is forgotten",
                        settings.server_state_dir
                    ))
                    .clicked()
                {
                    self.start_new(settings);
                }
            }
        });
        self.interrupted_ui(ui, shared);
        if let Some(s) = &self.server {
            let token = s.operator_token().to_string();
            ui.collapsing("Operator token (for `fedhe` on the command line)", |ui| {
                widgets::copyable_ui(ui, "Token:", &token);
            });
            if settings.server_public {
                ui.weak(
                    "Other machines reach it at this machine's network address and the port above.",
                );
            }
        }
    }

    fn remote_ui(&mut self, ui: &mut Ui, settings: &mut Settings, ctx: &egui::Context) {
        ui.horizontal(|ui| {
            let watching = self.remote_job.is_some();
            ui.add_enabled_ui(!watching, |ui| {
                widgets::text_field(ui, "URL", &mut settings.remote_url, "https://host:8443");
                let l = ui.label("Operator token");
                ui.add(
                    egui::TextEdit::singleline(&mut self.remote_token)
                        .password(true)
                        .hint_text("needed for Aggregate now"),
                )
                .labelled_by(l.id);
            });
            if watching {
                if ui.button("Disconnect").clicked()
                    && let Some(j) = &self.remote_job
                {
                    j.cancel();
                }
                ui.spinner();
            } else if ui.button("Connect").clicked() {
                let url = settings.remote_url.trim().to_string();
                self.watch_remote(ctx, &url);
            }
        });
    }

    fn key_ui(
        &mut self,
        ui: &mut Ui,
        settings: &mut Settings,
        shared: &mut Shared,
        ctx: &egui::Context,
    ) {
        widgets::section_heading(ui, "Session public key");
        ui.horizontal(|ui| {
            widgets::text_field(
                ui,
                "Public key file",
                &mut settings.public_key_path,
                "keys/public.key",
            );
            if ui.button("Load").clicked() {
                let p = PathBuf::from(settings.public_key_path.trim());
                self.load_public_key(&p, settings);
            }
            if ui.button("Browse…").clicked() {
                self.key_dialog.open(
                    ctx,
                    DialogKind::Open,
                    "Open the session's public key",
                    ("", &[]),
                    None,
                );
            }
            if let Some(k) = shared.client_public_key.clone()
                && ui
                    .button("Use the Client tab's key")
                    .on_hover_text("Only the public part is passed to the aggregator")
                    .clicked()
            {
                self.set_public_key(k, "the Client tab's key (public part)".into());
            }
        });
        if self.remote {
            self.send_key_ui(ui, settings, ctx);
        }
        self.key_status_ui(ui);
    }

    /// A remote aggregator gets the key over HTTP (with the operator token).
    fn send_key_ui(&mut self, ui: &mut Ui, settings: &Settings, ctx: &egui::Context) {
        let Some((k, _)) = &self.public_key else {
            return;
        };
        let send = ui
            .add_enabled(
                !self.remote_token.trim().is_empty() && self.op_job.is_none(),
                egui::Button::new("Send the public key to the remote aggregator"),
            )
            .on_disabled_hover_text("Needs the operator token")
            .clicked();
        if !send {
            return;
        }
        let bytes = k.to_bytes();
        let api = AggregatorClient::new(settings.remote_url.trim())
            .with_token(self.remote_token.trim().to_string());
        self.spawn_op(ctx, "send-key", move || {
            api.load_public_key(&bytes, None)
                .map(|s| format!("Session key loaded: fingerprint {}", s.session.fingerprint))
                .map_err(|source| AppError::Aggregator {
                    action: "load the key into the aggregator".into(),
                    source: Box::new(source),
                })
        });
    }

    /// Runs one operation against a remote aggregator on a job; its line
    /// becomes a note.
    fn spawn_op(
        &mut self,
        ctx: &egui::Context,
        name: &str,
        op: impl FnOnce() -> Result<String, AppError> + Send + 'static,
    ) {
        match Job::spawn(name, ctx, move |p: Progress<OpMsg>| {
            p.send(OpMsg::Done(op()))
        }) {
            Ok(j) => self.op_job = Some(j),
            Err(e) => widgets::push_note(&mut self.notes, Note::from(e)),
        }
    }

    /// The key the aggregator holds, else the one chosen here.
    fn key_status_ui(&self, ui: &mut Ui) {
        let session = self
            .snapshot
            .as_ref()
            .and_then(|s| s.status.session.as_ref());
        match (&self.public_key, session) {
            (_, Some(session)) => {
                ui.label(
                    RichText::new(format!(
                        "🔑 Session key fingerprint {} ({}, up to {} clients per round){}",
                        session.fingerprint,
                        session.params,
                        session.max_clients,
                        session
                            .max_len
                            .map_or(String::new(), |n| format!(", up to {n} values per update"))
                    ))
                    .color(OK_COLOR),
                );
            }
            (Some((k, source)), None) => {
                ui.label(format!("🔑 {source}: fingerprint {}", k.fingerprint()));
            }
            (None, None) => {
                ui.weak("No public key yet: clients can register and upload once it is loaded (it checks that they hold the secret key).");
            }
        }
    }

    fn plan_ui(
        &mut self,
        ui: &mut Ui,
        settings: &mut Settings,
        shared: &mut Shared,
        ctx: &egui::Context,
    ) {
        widgets::section_heading(ui, "Federation plan");
        ui.horizontal(|ui| {
            widgets::text_field(ui, "Plan file", &mut settings.plan_path, "plan.toml");
            if ui.button("Load plan").clicked() {
                let p = PathBuf::from(settings.plan_path.trim());
                self.load_plan(&p, settings);
            }
            if ui.button("Browse plans…").clicked() {
                self.plan_dialog.open(
                    ctx,
                    DialogKind::Open,
                    "Open a federation plan",
                    ("FedHE plan", &["toml"]),
                    None,
                );
            }
        });
        ui.horizontal_wrapped(|ui| {
            quorum_ui(ui, settings);
            privacy_ui(ui, settings);
            let csv = shared.client_csv.clone();
            if ui
                .add_enabled(
                    csv.is_some(),
                    egui::Button::new("Propose from the Client tab's CSV"),
                )
                .on_hover_text(
                    "Columns, label and classes from that CSV; training settings from the Client \
                     tab; the quorum above",
                )
                .on_disabled_hover_text("Load a CSV in the Client tab first")
                .clicked()
                && let Some(csv) = csv
            {
                self.propose_plan(&csv, settings);
            }
        });
        self.plan_summary_ui(ui, ctx);
    }

    /// The plan served, with its fingerprint; saving it.
    fn plan_summary_ui(&mut self, ui: &mut Ui, ctx: &egui::Context) {
        let Some((plan, source)) = &self.plan else {
            ui.weak("No plan yet: clients join once the aggregator serves one (it names the columns, the task, the training settings and the quorum).");
            return;
        };
        let q = &plan.quorum;
        ui.label(
            RichText::new(format!(
                "📋 Plan {} ({source}): {}; rounds close when every client submitted, \
                 or after {} s with at least {}; {}",
                plan.fingerprint(),
                plan.summary(),
                q.round_deadline_secs,
                q.min_clients,
                if plan.privacy.masks {
                    "pairwise masks on (3 or more clients)"
                } else {
                    "no pairwise masks"
                }
            ))
            .color(OK_COLOR),
        );
        if ui.button("Save plan…").clicked() {
            self.plan_save_dialog.open(
                ctx,
                DialogKind::Save,
                "Save the plan",
                ("FedHE plan", &["toml"]),
                Some("plan.toml"),
            );
        }
    }

    fn state_ui(&mut self, ui: &mut Ui, settings: &mut Settings, ctx: &egui::Context) {
        let Some(snap) = self.snapshot.clone() else {
            if !self.is_running() && self.remote_job.is_none() {
                ui.add_space(10.0);
                ui.weak("Start the embedded aggregator, or connect to a remote one, to see its clients and rounds.");
            }
            return;
        };
        let layout = self
            .plan
            .as_ref()
            .map(|(p, _)| p.layout())
            .unwrap_or_default();
        let phase = |round| {
            layout
                .phase(round)
                .map_or_else(|| "–".to_string(), RoundPhase::describe)
        };
        widgets::section_heading(ui, "Round");
        round_ui(ui, &snap.status, &phase);
        self.aggregate_ui(ui, &snap.status, settings, ctx);
        widgets::section_heading(ui, "Registered clients");
        clients_ui(ui, &snap);
        widgets::section_heading(ui, "Round history");
        if self.history.is_empty() {
            ui.weak("No round closed yet.");
            return;
        }
        if let Some(p) = self.history_dialog.take(ctx) {
            let note = match super::export::write_history(&p, &self.history, &phase) {
                Ok(()) => Note::Info(format!("Round history written to {}", p.display())),
                Err(e) => Note::from(e),
            };
            widgets::push_note(&mut self.notes, note);
        }
        if ui
            .button("Export history (CSV)…")
            .on_hover_text("Every closed round: phase, contributors, bytes, aggregation time")
            .clicked()
        {
            self.history_dialog.open(
                ctx,
                DialogKind::Save,
                "Export the round history",
                ("CSV", &["csv"]),
                Some("round_history.csv"),
            );
        }
        history_ui(ui, &self.history, &phase);
    }

    /// "Aggregate now", and auto-aggregate (a setting here, the server's
    /// when remote).
    fn aggregate_ui(
        &mut self,
        ui: &mut Ui,
        st: &StatusResponse,
        settings: &mut Settings,
        ctx: &egui::Context,
    ) {
        ui.horizontal(|ui| {
            let can = st.round_state == RoundState::Open
                && !st.submitted.is_empty()
                && self.op_job.is_none();
            if ui
                .add_enabled(can, egui::Button::new("Aggregate now"))
                .on_hover_text(
                    "Close the round with the updates received so far and publish the sum",
                )
                .on_disabled_hover_text("No update received in this round yet")
                .clicked()
            {
                self.aggregate_now(ctx, settings);
            }
            if self.remote {
                ui.weak(if st.auto_aggregate {
                    "auto-aggregate: on (server setting)"
                } else {
                    "auto-aggregate: off (server setting)"
                });
            } else {
                ui.checkbox(&mut settings.auto_aggregate, "Auto-aggregate")
                    .on_hover_text(
                        "Close each round as soon as every registered client has submitted",
                    );
            }
        });
    }
}

impl ServerTab {
    /// What the aggregator needs, and which file goes where.
    fn checklist_ui(&self, ui: &mut Ui) {
        let registered = self
            .snapshot
            .as_ref()
            .is_some_and(|s| s.status.registered > 0);
        widgets::checklist_ui(
            ui,
            "server-checklist",
            "First steps: what the aggregator needs",
            &[
                (
                    self.is_running(),
                    "1. ▶ Start aggregator (its address is shown).",
                ),
                (
                    self.public_key.is_some(),
                    "2. The session's public.key (never secret.key: the aggregator must not \
                     read the updates).",
                ),
                (
                    self.plan.is_some(),
                    "3. A plan: propose it from a CSV with the federation's columns, or load \
                     plan.toml.",
                ),
                (
                    registered,
                    "4. The sites: each has its own CSV and the federation's secret.key, and \
                     joins at the address above.",
                ),
            ],
        );
    }
}

/// Fewest contributors, deadline and single contributors of a proposed plan.
fn quorum_ui(ui: &mut Ui, settings: &mut Settings) {
    widgets::number_field(
        ui,
        "At least",
        &mut settings.quorum_min_clients,
        1..=10_000,
        0.1,
    )
    .on_hover_text("Fewest contributors a round may close with at its deadline");
    widgets::number_field(
        ui,
        "Round deadline (s)",
        &mut settings.round_deadline_secs,
        1..=604_800,
        1.0,
    );
    ui.checkbox(
        &mut settings.allow_single_contributor,
        "Allow a single contributor",
    )
    .on_hover_text(
        "A sum of one update shows that update to every key holder: only for trying \
         FedHE with one client",
    );
}

/// Pairwise masks and DP-SGD of a proposed plan.
fn privacy_ui(ui: &mut Ui, settings: &mut Settings) {
    ui.checkbox(&mut settings.masks, "Pairwise masks")
        .on_hover_text(
            "In rounds of three or more clients, every update is masked so that no one \
         holding the federation key can read one client's update alone; the masks \
         cancel exactly in the sum",
        );
    let mut dp = settings.dp_epsilon.is_some();
    if ui
        .checkbox(&mut dp, "DP-SGD")
        .on_hover_text(
            "Differential privacy for every site's rows: clipped, noised gradients; \
             each site's ε is shown per round",
        )
        .changed()
    {
        settings.dp_epsilon = dp.then_some(3.0);
    }
    if let Some(e) = &mut settings.dp_epsilon {
        widgets::real_field(ui, "ε", e, 0.1..=100.0)
            .on_hover_text("The ε all of training may spend at each site (δ 1e-5 or less)");
    }
}

/// The round open now: its phase, who submitted, the roster and the masks;
/// or, once the plan's last round closed, that the federation is complete.
fn round_ui(ui: &mut Ui, st: &StatusResponse, phase: &dyn Fn(u64) -> String) {
    if let Some(done) = &st.complete {
        ui.label(RichText::new(complete_line(done)).strong().color(OK_COLOR));
        ui.label(
            "No further round opens. Every site holds the final model (each one's Client \
             tab says so); a site that joins now is told the federation is complete.",
        );
        return;
    }
    ui.horizontal(|ui| {
        let phase = phase(st.round);
        let state = match st.round_state {
            RoundState::Open => "open",
            RoundState::Closed => "closed",
        };
        ui.label(
            RichText::new(format!(
                "Round {} ({phase}): {state}, {} of {} registered clients submitted",
                st.round,
                st.submitted.len(),
                st.registered
            ))
            .strong(),
        );
    });
    if !st.roster.is_empty() {
        ui.label(roster_line(st));
    }
    if let Some(phase) = st.mask_phase {
        ui.label(mask_line(st, phase));
    }
}

/// "✔ Federation complete: 20 of 20 rounds, 3 sites (last round 21)".
pub(crate) fn complete_line(done: &fedhe::protocol::Completion) -> String {
    format!(
        "✔ Federation complete: {} (last round {})",
        done.describe(),
        done.last_round
    )
}

/// The roster, who is missing, and the deadline.
fn roster_line(st: &StatusResponse) -> String {
    let mut line = format!("Roster: {}", st.roster.join(", "));
    if !st.missing.is_empty() {
        line.push_str(&format!("; missing: {}", st.missing.join(", ")));
    }
    if let Some(d) = st.deadline_unix {
        let now = fedhe::protocol::now_ms() / 1000;
        line.push_str(&format!("; deadline in {} s", d.saturating_sub(now)));
    } else if st.round == 1 {
        line.push_str("; the statistics round waits for every roster member");
    }
    line
}

/// Where a masked round's attempt stands.
fn mask_line(st: &StatusResponse, phase: fedhe::protocol::MaskPhase) -> String {
    let attempt = if st.attempt > 1 {
        format!(
            "attempt {} (a member dropped out; the others mask again)",
            st.attempt
        )
    } else {
        format!("attempt {}", st.attempt)
    };
    match phase {
        fedhe::protocol::MaskPhase::Keys => {
            format!("Pairwise masks, {attempt}: collecting the clients' mask keys")
        }
        fedhe::protocol::MaskPhase::Upload if st.masked => format!(
            "Pairwise masks, {attempt}: roster fixed, updates masked (unreadable alone, \
             even with the federation key)"
        ),
        fedhe::protocol::MaskPhase::Upload => {
            format!("Pairwise masks, {attempt}: fewer than three clients, updates not masked")
        }
        fedhe::protocol::MaskPhase::Consistency => {
            format!("Double masks, {attempt}: updates in; the survivors sign who is in the sum")
        }
        fedhe::protocol::MaskPhase::Unmask => format!(
            "Double masks, {attempt}: the survivors reveal shares; the aggregator removes the masks"
        ),
    }
}

/// Each registered client and whether it submitted this round.
fn clients_ui(ui: &mut Ui, snap: &Snapshot) {
    let st = &snap.status;
    if snap.clients_hidden {
        ui.weak("The operator token is needed to list the clients.");
        return;
    }
    if snap.clients.is_empty() {
        ui.weak("No client has registered yet.");
        return;
    }
    egui::Grid::new("server-clients")
        .striped(true)
        .show(ui, |ui| {
            ui.strong("id");
            ui.strong("name");
            ui.strong("this round");
            ui.strong("last round submitted");
            ui.end_row();
            for c in &snap.clients {
                ui.monospace(&c.id);
                ui.label(&c.name);
                if st.submitted.contains(&c.id) {
                    ui.label(RichText::new("✔ submitted").color(OK_COLOR));
                } else if st.round_state == RoundState::Open {
                    ui.label("waiting");
                } else {
                    ui.label("–");
                }
                ui.label(c.last_round.map_or("–".into(), |r| r.to_string()));
                ui.end_row();
            }
        });
}

/// The closed rounds: a table, then their times, bytes and contributors.
fn history_ui(ui: &mut Ui, history: &[RoundInfo], phase: &dyn Fn(u64) -> String) {
    egui::ScrollArea::vertical()
        .id_salt("server-history")
        .max_height(160.0)
        .show(ui, |ui| {
            egui::Grid::new("server-history-grid")
                .striped(true)
                .show(ui, |ui| {
                    ui.strong("round");
                    ui.strong("phase");
                    ui.strong("contributors");
                    ui.strong("bytes received");
                    ui.strong("aggregation");
                    ui.end_row();
                    for r in history {
                        ui.label(r.round.to_string());
                        ui.label(phase(r.round));
                        ui.label(r.contributors.to_string());
                        ui.label(human_bytes(r.bytes_accepted));
                        ui.label(human_ms(r.aggregate_ms));
                        ui.end_row();
                    }
                });
        });
    history_plots_ui(ui, history);
}

fn history_plots_ui(ui: &mut Ui, history: &[RoundInfo]) {
    let per_round = |f: fn(&RoundInfo) -> f64| -> Vec<[f64; 2]> {
        history.iter().map(|r| [r.round as f64, f(r)]).collect()
    };
    let ms = per_round(|r| r.aggregate_ms * 1e3);
    let kb = per_round(|r| r.bytes_accepted as f64 / 1e3);
    let contributors = per_round(|r| f64::from(r.contributors));
    // `columns(3)` hands the closure exactly 3 columns.
    ui.columns(3, |cols| {
        cols[0].label("Aggregation time per round");
        line_plot_ui(
            &mut cols[0],
            "server-ms",
            "round",
            "µs",
            140.0,
            vec![Series::new("aggregation µs", ms, ENCRYPTED_COLOR)],
            Some((0.0, 0.0)),
        );
        cols[1].label("Ciphertext received per round");
        line_plot_ui(
            &mut cols[1],
            "server-kb",
            "round",
            "KB",
            140.0,
            vec![Series::new("KB received", kb, widgets::PLAIN_COLOR)],
            Some((0.0, 0.0)),
        );
        cols[2].label("Contributors per round");
        line_plot_ui(
            &mut cols[2],
            "server-contributors",
            "round",
            "clients",
            140.0,
            vec![Series::new("contributors", contributors, OK_COLOR)],
            Some((0.0, 0.0)),
        );
    });
}

fn merge_history(history: &mut Vec<RoundInfo>, infos: Vec<RoundInfo>) {
    for i in infos {
        if history.last().is_none_or(|l| l.round < i.round) {
            history.push(i);
        }
    }
}

/// Status, clients and the closed rounds after `known` of a remote aggregator.
fn remote_snapshot(
    api: &AggregatorClient,
    known: u64,
) -> Result<(Snapshot, Vec<RoundInfo>), String> {
    let status = api
        .status()
        .map_err(|e| format!("Could not read the aggregator's status: {e}"))?;
    // The client list needs a token; without one, say so instead.
    let (clients, clients_hidden) = match api.clients() {
        Ok(c) => (c, false),
        Err(e) if e.status() == Some(401) => (Vec::new(), true),
        Err(e) => return Err(format!("Could not list the clients: {e}")),
    };
    let mut infos = Vec::new();
    for r in (known + 1)..=status.last_closed.unwrap_or(0) {
        infos.push(
            api.round(r, None)
                .map_err(|e| format!("Could not read round {r}: {e}"))?,
        );
    }
    Ok((
        Snapshot {
            status,
            clients,
            clients_hidden,
        },
        infos,
    ))
}

/// DP-SGD's step is SGD whatever the optimizer: with the federation's
/// default optimizer settings untouched, a DP plan takes plain SGD's (lr
/// 0.1, no L2, a constant rate), as `fedhe plan init --dp-clip` does;
/// settings the user changed are kept.
fn dp_sgd(sgd: fedhe::model::LocalSgd) -> fedhe::model::LocalSgd {
    let default = fedhe::plan::Training::default().sgd;
    let plain = fedhe::plan::Training::LEGACY.sgd;
    if (sgd.lr, sgd.l2, sgd.optimizer) == (default.lr, default.l2, default.optimizer) {
        fedhe::model::LocalSgd {
            lr: plain.lr,
            l2: plain.l2,
            optimizer: plain.optimizer,
            ..sgd
        }
    } else {
        sgd
    }
}

#[cfg(test)]
mod tests {
    use super::dp_sgd;

    #[test]
    fn a_dp_plan_trains_with_plain_sgd_unless_the_user_chose_otherwise() {
        let default = fedhe::plan::Training::default().sgd;
        let plain = fedhe::plan::Training::LEGACY.sgd;
        let dp = dp_sgd(default);
        assert_eq!((dp.lr, dp.l2, dp.optimizer), (0.1, 0.0, plain.optimizer));
        assert_eq!(
            (dp.epochs, dp.batch_size, dp.seed),
            (default.epochs, 32, 42)
        );
        let chosen = fedhe::model::LocalSgd {
            lr: 0.02,
            ..default
        };
        assert_eq!(dp_sgd(chosen), chosen);
    }
}
