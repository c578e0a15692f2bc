//! Section 2, Umbrella key: load (typed, chosen or dropped path) or
//! generate the federation's secret key; its public part goes to the Server
//! tab.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use egui::{RichText, Ui};

use super::ClientTab;
use crate::app::Shared;
use crate::app::error::AppError;
use crate::app::jobs::{Job, poll_slot};
use crate::app::settings::Settings;
use crate::app::widgets::{self, DialogKind, FileDialog, Note, OK_COLOR};
use fedhe::crypto::{ParamSet, SecretKey};

/// A key read or made, with a line about it.
type KeyResult = Result<(Arc<SecretKey>, String), AppError>;

/// The section's own state: the key job and the file dialog.
#[derive(Default)]
pub(super) struct KeyPanel {
    job: Option<Job<KeyResult>>,
    dialog: FileDialog,
}

impl ClientTab {
    /// Loads a secret key file (typed, chosen or dropped path).
    pub fn load_key(&mut self, ctx: &egui::Context, path: &Path) {
        let path = path.to_path_buf();
        self.spawn_key_job(ctx, "load-key", move || load_secret_key(&path));
    }

    fn spawn_key_job(
        &mut self,
        ctx: &egui::Context,
        name: &str,
        work: impl FnOnce() -> KeyResult + Send + 'static,
    ) {
        match Job::spawn(name, ctx, move |p| p.send(work())) {
            Ok(j) => self.keys.job = Some(j),
            Err(e) => widgets::push_note(&mut self.notes, Note::from(e)),
        }
    }

    pub(super) fn take_key_dialog(&mut self, ctx: &egui::Context, settings: &mut Settings) {
        if let Some(p) = self.keys.dialog.take(ctx) {
            settings.key_path = p.display().to_string();
            self.load_key(ctx, &p);
        }
    }

    pub(super) fn poll_keys(&mut self, shared: &mut Shared) {
        let (msgs, failure) = poll_slot(&mut self.keys.job);
        for r in msgs {
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
    }

    pub(super) fn keys_ui(&mut self, ui: &mut Ui, settings: &mut Settings, ctx: &egui::Context) {
        widgets::section_heading(ui, "2. Umbrella key");
        ui.label("All clients of the federation share one secret key. It never leaves the clients' machines; the aggregator only gets its public part.");
        let busy = self.keys.job.is_some();
        ui.horizontal(|ui| {
            widgets::text_field(ui, "Key file", &mut settings.key_path, "keys/secret.key");
            let path = PathBuf::from(settings.key_path.trim());
            if ui.add_enabled(!busy, egui::Button::new("Load")).clicked() {
                self.load_key(ctx, &path);
            }
            if ui
                .add_enabled(!busy, egui::Button::new("Browse…"))
                .clicked()
            {
                self.keys.dialog.open(
                    ctx,
                    DialogKind::Open,
                    "Open the umbrella secret key",
                    ("", &[]),
                    None,
                );
            }
            if ui
                .add_enabled(!busy, egui::Button::new("Generate new key"))
                .on_hover_text(
                    "Writes the secret key and, next to it, public.key for the aggregator",
                )
                .clicked()
            {
                self.generate_key_at(ctx, path);
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

    /// Generates a key at `path` unless a file is there already.
    fn generate_key_at(&mut self, ctx: &egui::Context, path: PathBuf) {
        if path.exists() {
            widgets::push_note(
                &mut self.notes,
                Note::Error(format!(
                    "{} already exists: load it, or type another file name to generate a new key (an existing key is never overwritten).",
                    path.display()
                )),
            );
        } else {
            self.spawn_key_job(ctx, "keygen", move || generate_key(&path));
        }
    }
}

/// Loads a secret key, refusing one others can replace and warning about one
/// others can read.
fn load_secret_key(path: &Path) -> KeyResult {
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

fn generate_key(path: &Path) -> KeyResult {
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
