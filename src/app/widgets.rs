//! Small UI pieces shared by the tabs. Every input gets an accessible name
//! (screen readers, and the egui_kittest accessibility check).

use std::path::PathBuf;

use egui::{Color32, RichText, Ui};

pub const ERROR_COLOR: Color32 = Color32::from_rgb(220, 60, 60);
pub const OK_COLOR: Color32 = Color32::from_rgb(40, 160, 90);
pub const ENCRYPTED_COLOR: Color32 = Color32::from_rgb(13, 148, 136);
pub const PLAIN_COLOR: Color32 = Color32::from_rgb(234, 140, 30);

/// A message shown in a tab: an error (red) or information.
#[derive(Debug, Clone, PartialEq)]
pub enum Note {
    Info(String),
    Error(String),
}

impl Note {
    pub fn is_error(&self) -> bool {
        matches!(self, Note::Error(_))
    }
}

/// Shows `note` in a frame; returns true when the user dismissed it.
pub fn note_ui(ui: &mut Ui, note: &Note) -> bool {
    let (icon, text, color) = match note {
        Note::Info(t) => ("ℹ", t, ui.visuals().text_color()),
        Note::Error(t) => ("⚠", t, ERROR_COLOR),
    };
    let mut dismissed = false;
    egui::Frame::group(ui.style())
        .stroke(egui::Stroke::new(1.0, color))
        .show(ui, |ui| {
            ui.horizontal_wrapped(|ui| {
                ui.label(RichText::new(icon).color(color).strong());
                ui.label(RichText::new(text).color(color));
                if ui.small_button("✖").on_hover_text("Dismiss").clicked() {
                    dismissed = true;
                }
            });
        });
    dismissed
}

/// Shows the notes, dropping those the user dismissed.
pub fn notes_ui(ui: &mut Ui, notes: &mut Vec<Note>) {
    let mut keep = Vec::with_capacity(notes.len());
    for n in notes.drain(..) {
        if !note_ui(ui, &n) {
            keep.push(n);
        }
    }
    *notes = keep;
}

/// Adds `note`, keeping only the last few and never the same one twice.
pub fn push_note(notes: &mut Vec<Note>, note: Note) {
    notes.retain(|n| n != &note);
    notes.push(note);
    if notes.len() > 4 {
        notes.remove(0);
    }
}

/// `label: [text field]`, the field named by the label.
pub fn text_field(ui: &mut Ui, label: &str, value: &mut String, hint: &str) -> egui::Response {
    let l = ui.label(label);
    ui.add(egui::TextEdit::singleline(value).hint_text(hint))
        .labelled_by(l.id)
}

/// `label: [number]`, the field named by the label.
pub fn number_field<N: egui::emath::Numeric>(
    ui: &mut Ui,
    label: &str,
    value: &mut N,
    range: std::ops::RangeInclusive<N>,
    speed: f64,
) -> egui::Response {
    let l = ui.label(label);
    ui.add(egui::DragValue::new(value).range(range).speed(speed))
        .labelled_by(l.id)
}

/// A log-scale-friendly field for small positive reals (learning rate, L2).
pub fn real_field(
    ui: &mut Ui,
    label: &str,
    value: &mut f64,
    range: std::ops::RangeInclusive<f64>,
) -> egui::Response {
    let l = ui.label(label);
    let speed = (value.abs() * 0.01).max(1e-6);
    ui.add(
        egui::DragValue::new(value)
            .range(range)
            .speed(speed)
            .max_decimals(6),
    )
    .labelled_by(l.id)
}

/// A file picker that never blocks the window: the system dialog runs on its
/// own thread (except on macOS, where dialogs must run on the main thread)
/// and the chosen path comes back through the same code path as a typed or
/// dropped one.
pub struct FileDialog {
    rx: Option<std::sync::mpsc::Receiver<Option<PathBuf>>>,
}

/// What kind of dialog.
#[derive(Debug, Clone, Copy)]
pub enum DialogKind {
    Open,
    Save,
}

impl FileDialog {
    pub const fn new() -> Self {
        Self { rx: None }
    }

    /// Opens a dialog filtered to `extensions` (empty: any file).
    pub fn open(
        &mut self,
        ctx: &egui::Context,
        kind: DialogKind,
        title: &str,
        filter: (&str, &[&str]),
        file_name: Option<&str>,
    ) {
        let mut dialog = rfd::FileDialog::new().set_title(title);
        if !filter.1.is_empty() {
            dialog = dialog.add_filter(filter.0, filter.1);
        }
        if let Some(name) = file_name {
            dialog = dialog.set_file_name(name);
        }
        if let Ok(dir) = std::env::current_dir() {
            dialog = dialog.set_directory(dir);
        }
        let run = move || match kind {
            DialogKind::Open => dialog.pick_file(),
            DialogKind::Save => dialog.save_file(),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        if cfg!(target_os = "macos") {
            let _ = tx.send(run());
        } else {
            let repaint = ctx.clone();
            let spawned = std::thread::Builder::new()
                .name("fedhe-file-dialog".into())
                .spawn(move || {
                    let _ = tx.send(run());
                    repaint.request_repaint();
                });
            if spawned.is_err() {
                return;
            }
        }
        self.rx = Some(rx);
    }

    /// The chosen path, once (None while open, cancelled, or idle).
    pub fn take(&mut self) -> Option<PathBuf> {
        let rx = self.rx.as_ref()?;
        match rx.try_recv() {
            Ok(choice) => {
                self.rx = None;
                choice
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => None,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                self.rx = None;
                None
            }
        }
    }
}

impl Default for FileDialog {
    fn default() -> Self {
        Self::new()
    }
}

/// A value with a copy button.
pub fn copyable_ui(ui: &mut Ui, label: &str, value: &str) {
    ui.horizontal(|ui| {
        ui.label(label);
        ui.monospace(value);
        if ui
            .small_button("📋 Copy")
            .on_hover_text("Copy to the clipboard")
            .clicked()
        {
            ui.ctx().copy_text(value.to_string());
        }
    });
}

/// A heading for a section of a tab.
pub fn section_heading(ui: &mut Ui, text: &str) {
    ui.add_space(6.0);
    ui.label(RichText::new(text).strong().size(16.0));
}

#[cfg(test)]
mod tests {
    /// Every symbol the app draws exists in the fonts bundled with it
    /// (a missing glyph panics egui in debug and shows tofu in release).
    #[test]
    fn every_symbol_has_a_glyph() {
        let sources = [
            include_str!("mod.rs"),
            include_str!("client_tab.rs"),
            include_str!("server_tab.rs"),
            include_str!("predict_tab.rs"),
            include_str!("demo.rs"),
            include_str!("plots.rs"),
            include_str!("widgets.rs"),
        ];
        let ctx = egui::Context::default();
        let _ = ctx.run_ui(egui::RawInput::default(), |_| {});
        let mut missing = Vec::new();
        for src in sources {
            for line in src.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for c in line.chars().filter(|c| !c.is_ascii()) {
                    for font in [
                        egui::FontId::proportional(14.0),
                        egui::FontId::monospace(14.0),
                    ] {
                        if !ctx.fonts_mut(|f| f.has_glyph(&font, c)) {
                            missing.push((c, font.family));
                        }
                    }
                }
            }
        }
        missing.dedup();
        assert!(missing.is_empty(), "no glyph for {missing:?}");
    }
}
