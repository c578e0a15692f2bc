//! The embedded aggregator keeps its federation: its state folder lives in
//! the app's data folder and it comes back on the port it had; stopping it
//! (or closing the window) with sites registered asks first; a reopened
//! app starts it again over the same folder, with its key and its plan,
//! and says where training was interrupted.

use std::path::PathBuf;

use egui::{RichText, Ui};

use super::ServerTab;
use crate::app::settings::Settings;
use crate::app::widgets::{self, Note, PLAIN_COLOR};

/// What waits for the operator's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    /// ■ Stop aggregator.
    Stop,
    /// The window's close button.
    CloseWindow,
}

/// The operator's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Stop,
    CloseWindow,
}

impl ServerTab {
    /// What stopping now would interrupt ("2 sites registered, round 3
    /// open"); `None` when nothing would be (no site, or complete).
    pub fn would_interrupt(&self) -> Option<String> {
        // The live state, not the last snapshot (a site may just have joined).
        let st = self.server.as_ref()?.status();
        if st.registered == 0 || st.complete.is_some() {
            return None;
        }
        Some(format!(
            "{} site{} registered, round {} open",
            st.registered,
            if st.registered == 1 { "" } else { "s" },
            st.round
        ))
    }

    /// Stops now, or asks first when sites are registered (the answer
    /// comes through [`confirm_ui`](Self::confirm_ui)). True if stopped.
    pub fn request_stop(&mut self, settings: &mut Settings, why: Confirm) -> bool {
        if let Some(what) = self.would_interrupt() {
            self.confirm = Some((why, what));
            return false;
        }
        self.stop_kept(settings);
        true
    }

    /// Asks before the window closes on `what` (training running, sites
    /// registered).
    pub fn ask_before_closing(&mut self, what: String) {
        self.confirm = Some((Confirm::CloseWindow, what));
    }

    /// The window closes: stops the aggregator and waits for it (its state
    /// folder free for the next start), to be started again on reopening.
    pub fn stop_for_exit(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown();
        }
    }

    /// Stops on purpose: the next start of the app does not restart it.
    pub fn stop_kept(&mut self, settings: &mut Settings) {
        settings.server_was_running = false;
        self.stop();
    }

    /// The question, while one is open; the operator's answer once given.
    pub fn confirm_ui(&mut self, ctx: &egui::Context, settings: &mut Settings) -> Option<Answer> {
        let (why, what) = self.confirm.clone()?;
        let dir = settings.server_state_dir.clone();
        let mut answer = None;
        let mut keep = false;
        egui::Modal::new(egui::Id::unique("fedhe-confirm-stop")).show(ctx, |ui| {
            ui.heading(match why {
                Confirm::Stop => "Stop the aggregator?",
                Confirm::CloseWindow => "Close FedHE while the aggregator runs?",
            });
            ui.label(RichText::new(format!("{what}.")).color(PLAIN_COLOR));
            ui.label(format!(
                "The sites wait for it and retry until the round's deadline. Its state stays in \
                 {dir}: starting it again (or reopening FedHE) continues the open round on the \
                 same port."
            ));
            ui.horizontal(|ui| {
                let (label, a) = match why {
                    Confirm::Stop => ("Stop aggregator", Answer::Stop),
                    Confirm::CloseWindow => ("Close FedHE", Answer::CloseWindow),
                };
                if ui.button(label).clicked() {
                    answer = Some(a);
                }
                if ui.button("Keep running").clicked() {
                    keep = true;
                }
            });
        });
        if keep || answer.is_some() {
            self.confirm = None;
        }
        if answer == Some(Answer::Stop) {
            self.stop_kept(settings);
        }
        answer
    }

    /// The state folder (created if missing), or a note why not.
    pub(super) fn state_dir(&mut self, settings: &Settings) -> Option<PathBuf> {
        let dir = PathBuf::from(settings.server_state_dir.trim());
        if settings.server_state_dir.trim().is_empty() {
            return None;
        }
        match std::fs::create_dir_all(&dir) {
            Ok(()) => Some(dir),
            Err(e) => {
                widgets::push_note(
                    &mut self.notes,
                    Note::Error(format!(
                        "The aggregator's state folder {} cannot be created ({e}): it runs in \
                         memory, and stopping it loses its federation",
                        dir.display()
                    )),
                );
                None
            }
        }
    }

    /// After a start over a state folder: the key and the plan it holds,
    /// and where an interrupted federation stands.
    pub(super) fn restore_from_state(&mut self, settings: &mut Settings) {
        let Some(server) = &self.server else {
            return;
        };
        settings.server_last_port = server.addr().port();
        settings.server_was_running = true;
        let status = server.status();
        if self.plan.is_none()
            && let Some(plan) = server.plan()
        {
            self.plan = Some((plan, "restored from the aggregator's state folder".into()));
        }
        if self.public_key.is_none()
            && let Some(k) = server.public_key()
        {
            self.public_key = Some((k, "restored from the aggregator's state folder".into()));
        }
        if status.registered > 0 && status.complete.is_none() {
            self.interrupted = Some(status.round);
        }
    }

    /// "Training was interrupted in round N": what the restarted aggregator
    /// continues, and what the sites do.
    pub(super) fn interrupted_ui(&mut self, ui: &mut Ui, shared: &mut crate::app::Shared) {
        let Some(round) = self.interrupted else {
            return;
        };
        let live = self
            .snapshot
            .as_ref()
            .is_some_and(|s| s.status.round > round || s.status.complete.is_some());
        if live || self.server.is_none() {
            self.interrupted = None;
            return;
        }
        ui.horizontal_wrapped(|ui| {
            ui.label(
                RichText::new(format!(
                    "Training was interrupted in round {round}: the aggregator is back with \
                     its federation, and round {round} continues once the sites join again \
                     (`fedhe client` sites resume by themselves)."
                ))
                .color(PLAIN_COLOR),
            );
            if ui
                .button("▶ Resume")
                .on_hover_text(
                    "This app's site joins again under its id (its state file resumes it) \
                     and goes on training: the Client tab's Join federation and Start \
                     federated training in one step",
                )
                .clicked()
            {
                shared.resume = true;
                shared.goto = Some(crate::app::settings::Tab::Client);
            }
        });
    }

    /// The running embedded aggregator's operator token.
    pub fn operator_token(&self) -> Option<String> {
        self.server.as_ref().map(|s| s.operator_token().to_string())
    }

    /// The operator token kept in the state folder (`operator.token`,
    /// owner-only), made on the first start: the same token across
    /// restarts of the app, so that a `fedhe` command line given it keeps
    /// working. `None` (a fresh token for this run only) when the folder
    /// cannot keep one, with a note why.
    pub(super) fn kept_token(&mut self, dir: &std::path::Path) -> Option<String> {
        let path = dir.join(TOKEN_FILE);
        if let Ok(t) = std::fs::read_to_string(&path) {
            let t = t.trim();
            if t.len() >= 16 {
                return Some(t.to_string());
            }
        }
        let t = fedhe::server::new_token();
        match fedhe::fsutil::write_atomic(&path, format!("{t}\n").as_bytes(), true, true) {
            Ok(()) => Some(t),
            Err(e) => {
                widgets::push_note(
                    &mut self.notes,
                    Note::Error(format!(
                        "The operator token cannot be kept in {} ({e}): this run has its own, and                          the next start another",
                        path.display()
                    )),
                );
                None
            }
        }
    }
}

/// The operator token's file in the aggregator's state folder (the name
/// `fedhe serve --operator-token-file` users give it too).
pub const TOKEN_FILE: &str = "operator.token";
