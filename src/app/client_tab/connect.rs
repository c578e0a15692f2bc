//! Section 3, Aggregator: the embedded one (Server tab) or a remote URL, and
//! joining: fetch the plan, read the CSV by its column names, register or
//! resume.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use egui::{RichText, Ui};

use super::ClientTab;
use crate::app::Shared;
use crate::app::error::AppError;
use crate::app::jobs::{Job, Progress, poll_slot};
use crate::app::settings::Settings;
use crate::app::widgets::{self, Note, OK_COLOR};
use fedhe::crypto::SecretKey;
use fedhe::data::Dataset;
use fedhe::session::{self, ConnectOptions, Joined, Notifier, SessionError};

/// A federation joined from this tab: the session and this site's data,
/// read by the plan's column names.
#[derive(Clone)]
pub struct JoinedSite {
    pub joined: Joined,
    pub data: Dataset,
    pub source: String,
}

enum ConnectMsg {
    Status(String),
    Joined(Result<Box<JoinedSite>, AppError>),
}

/// The section's own state: the joining job and what it is doing.
#[derive(Default)]
pub(super) struct ConnectPanel {
    job: Option<Job<ConnectMsg>>,
    /// What joining is doing right now ("waiting for the plan", retries).
    status: String,
    /// `status` with its countdown ticking.
    line: widgets::LiveLine,
}

impl ClientTab {
    pub(super) fn poll_connect(&mut self) {
        let (msgs, failure) = poll_slot(&mut self.connect.job);
        for m in msgs {
            match m {
                ConnectMsg::Status(s) => self.connect.status = s,
                ConnectMsg::Joined(Ok(site)) => {
                    let info = joined_info(&site);
                    widgets::push_note(&mut self.notes, Note::Info(info.clone()));
                    self.connect.status.clear();
                    self.registered = Some(info);
                    self.federation = Some(*site);
                }
                ConnectMsg::Joined(Err(e)) => {
                    self.start_when_joined = false;
                    self.connect.status.clear();
                    widgets::push_note(&mut self.notes, Note::from(e));
                }
            }
        }
        self.failure(failure);
    }

    pub(super) fn connect_ui(
        &mut self,
        ui: &mut Ui,
        settings: &mut Settings,
        shared: &Shared,
        ctx: &egui::Context,
    ) {
        widgets::section_heading(ui, "3. Aggregator");
        aggregator_ui(ui, settings, shared);
        let url = aggregator_url(settings, shared);
        let busy = self.connect.job.is_some();
        ui.horizontal_wrapped(|ui| {
            let csv = self.csv.as_ref().map(|c| c.path.clone());
            let missing = join_needs(url.is_some(), csv.is_some(), self.key.is_some());
            let ready = missing.is_empty() && !busy && !self.is_training();
            let why = if busy {
                "Joining already; Cancel stops it".to_string()
            } else if self.is_training() {
                "Training is running; stop it first".to_string()
            } else {
                format!("Still needed: {}", missing.join(", "))
            };
            let resp = ui
                .add_enabled(ready, egui::Button::new("Join federation"))
                .on_hover_text(
                    "Fetches the aggregator's plan, reads your CSV by its column names, and \
                     registers (or resumes under your id)",
                )
                .on_disabled_hover_text(why);
            if resp.clicked()
                && let (Some(url), Some(csv), Some(key)) = (url, csv, self.key.clone())
            {
                self.join(ctx, settings, url, csv, key);
            }
            if busy {
                if ui
                    .button("Cancel")
                    .on_hover_text("Stop joining (and its retries) now")
                    .clicked()
                {
                    self.cancel_join();
                }
                ui.spinner();
                ui.label(self.connect.line.show(&self.connect.status, ctx));
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

    /// The Server tab's Resume: join again (the state file resumes this
    /// site) and start federated training once joined; what is missing for
    /// it, in a note.
    pub(super) fn resume(&mut self, ctx: &egui::Context, settings: &Settings, shared: &Shared) {
        let url = aggregator_url(settings, shared);
        let csv = self.csv.as_ref().map(|c| c.path.clone());
        let missing = join_needs(url.is_some(), csv.is_some(), self.key.is_some());
        if self.is_training() || self.connect.job.is_some() {
            return;
        }
        match (url, csv, self.key.clone()) {
            (Some(url), Some(csv), Some(key)) => {
                self.start_when_joined = true;
                self.join(ctx, settings, url, csv, key);
            }
            _ => widgets::push_note(
                &mut self.notes,
                Note::Error(format!(
                    "Resume needs this site's {} first (sections 1–3), then press Resume again.",
                    missing.join(", ")
                )),
            ),
        }
    }

    /// Stops joining at once: the job is told to stop (its retries end
    /// within 50 ms) and let go; a request in flight ends on its own.
    fn cancel_join(&mut self) {
        if let Some(job) = self.connect.job.take() {
            job.cancel();
        }
        self.connect.status.clear();
        widgets::push_note(&mut self.notes, Note::Info("Joining cancelled.".into()));
    }

    /// Forgets the federation joined and joins `url` on a job.
    fn join(
        &mut self,
        ctx: &egui::Context,
        settings: &Settings,
        url: String,
        csv: PathBuf,
        key: Arc<SecretKey>,
    ) {
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
            Ok(j) => self.connect.job = Some(j),
            Err(e) => widgets::push_note(&mut self.notes, Note::from(e)),
        }
    }
}

/// The aggregator this tab joins: the embedded one's URL, or the one typed.
fn aggregator_url(settings: &Settings, shared: &Shared) -> Option<String> {
    if settings.use_embedded {
        shared.embedded_url.clone()
    } else {
        Some(settings.server_url.trim().to_string()).filter(|u| !u.is_empty())
    }
}

/// What Join still needs, in the app's words.
fn join_needs(url: bool, csv: bool, key: bool) -> Vec<&'static str> {
    let mut v = Vec::new();
    if !csv {
        v.push("a CSV (section 1)");
    }
    if !key {
        v.push("the federation's secret key (section 2; it signs the registration)");
    }
    if !url {
        v.push("an aggregator: start the Server tab's, or give a remote URL");
    }
    v
}

/// Embedded or remote, and where.
fn aggregator_ui(ui: &mut Ui, settings: &mut Settings, shared: &Shared) {
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
}

/// "Registered as … at …: plan …, N rows of … read by column name".
fn joined_info(site: &JoinedSite) -> String {
    let j = &site.joined;
    format!(
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
    )
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
    let connected = session::connect_cancellable(&opts, key, Some(notify), p.cancel_flag())
        .map_err(|e| match e {
            SessionError::Cancelled => AppError::Stopped("Joining"),
            e => AppError::Join(Box::new(e)),
        })?;
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
        source: crate::app::demo::describe(csv),
    })
}
