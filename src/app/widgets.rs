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

/// Seconds an information note stays; errors stay until dismissed.
const INFO_SECONDS: f64 = 12.0;

/// Shows the notes one under the other, in the window's notes bar (a
/// panel along its bottom edge, outside every tab's controls: a note
/// appearing never moves them, and never covers them). Errors stay until
/// dismissed; information fades after a few seconds.
pub fn notes_ui(ui: &mut Ui, notes: &mut Vec<Note>) {
    if notes.is_empty() {
        return;
    }
    let ctx = ui.ctx().clone();
    let now = ctx.input(|i| i.time);
    let id = egui::Id::unique("fedhe-notes");
    let mut keep = Vec::with_capacity(notes.len());
    for n in notes.drain(..) {
        // When this note was first shown, kept in egui's memory.
        let key = id.with(format!("{n:?}"));
        let shown = ctx.memory_mut(|m| *m.data.get_temp_mut_or_insert_with(key, || now));
        let expired = !n.is_error() && now - shown > INFO_SECONDS;
        let dismissed = note_ui(ui, &n);
        if !(dismissed || expired) {
            keep.push(n);
        }
    }
    if keep.iter().any(|n| !n.is_error()) {
        ctx.request_repaint_after(std::time::Duration::from_secs(1));
    }
    *notes = keep;
}

/// Adds `note`, keeping only the last few and never the same one twice.
pub fn push_note(notes: &mut Vec<Note>, note: Note) {
    let note = match note {
        Note::Info(t) => Note::Info(app_words(&t)),
        Note::Error(t) => Note::Error(app_words(&t)),
    };
    notes.retain(|n| n != &note);
    notes.push(note);
    if notes.len() > 4 {
        notes.remove(0);
    }
}

/// A first-run checklist: each step ticked when done; open while any is not.
pub fn checklist_ui(ui: &mut Ui, id: &str, title: &str, steps: &[(bool, &str)]) {
    let all = steps.iter().all(|(done, _)| *done);
    egui::CollapsingHeader::new(title)
        .id_salt(id)
        .default_open(!all)
        .show(ui, |ui| {
            for (done, step) in steps {
                ui.horizontal_wrapped(|ui| {
                    if *done {
                        ui.label(RichText::new("✔").color(OK_COLOR));
                    } else {
                        ui.label("○");
                    }
                    ui.label(*step);
                });
            }
        });
}

/// The library's words for the command line, as the app's controls say
/// them: "(choose with --task)" becomes "(choose it in the Task box)".
/// Every `--flag` the library's messages name, where the app has a control
/// for it; where it has none, the message says so in words.
pub fn app_words(text: &str) -> String {
    const WORDS: [(&str, &str); 19] = [
        ("(choose with --task)", "(choose it in the Task box)"),
        (
            "(choose with --positive)",
            "(choose it in the Positive class box)",
        ),
        (
            "for more classes use --task multiclass (or auto), for a numeric target --task \
             regression",
            "for more classes pick multiclass (or auto) in the Task box, for a numeric target \
             regression",
        ),
        ("(--task regression)", "(pick regression in the Task box)"),
        ("--positive ", "the positive class "),
        ("--label ", "the label column "),
        (
            "(fedhe serve --public-key … --plan …)",
            "(the Server tab's session key and plan)",
        ),
        (
            "(fedhe serve --public-key, or PUT /api/v1/session)",
            "(the Server tab's session key)",
        ),
        (
            "(fedhe serve --plan, or PUT /api/v1/plan)",
            "(the Server tab's plan)",
        ),
        ("give --state-dir a folder", "choose a folder"),
        (
            "; stop it, or give this one another --state-dir",
            "; stop it (another FedHE window, or a `fedhe serve`), then start this one again",
        ),
        ("choose another --bind port", "choose another Port"),
        ("(e.g. --momentum 0.9)", "(e.g. Momentum 0.9)"),
        ("(--lr ", "(Learning rate "),
        (
            " (--delimiter sets the separator)",
            " (the separator is found from the header)",
        ),
        (
            "pass --force (force = true) to overwrite it",
            "choose another file, or move this one away first",
        ),
        (
            "a key made with a smaller --scale-bits or --max-clients has more room",
            "a key made for fewer clients or with fewer scale bits, on the command line, has \
             more room",
        ),
        (
            "(see `fedhe keygen --max-clients`)",
            "(keys for more clients are made on the command line)",
        ),
        (
            "open it without --sum-in-database",
            "open it with `fedhe serve`, which keeps the sum in that file",
        ),
    ];
    // "(use --keep age to use it as a feature)": the app leaves such a
    // column out, and says where it shows it.
    let text = cut_span(
        text,
        "(use --keep ",
        " to use it as a feature)",
        "(left out automatically: see Feature columns)",
    );
    WORDS.iter().fold(text, |t, (cli, app)| t.replace(cli, app))
}

/// `text` with each span from `open` to the next `close` replaced by `with`.
fn cut_span(text: &str, open: &str, close: &str, with: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(open) {
        let Some(j) = rest[i..].find(close) else {
            break;
        };
        out.push_str(&rest[..i]);
        out.push_str(with);
        rest = &rest[i + j + close.len()..];
    }
    out.push_str(rest);
    out
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

/// A file picker that never blocks the window and never leaves the user
/// stuck: the system dialog runs on its own thread (except on macOS, where
/// dialogs must run on the main thread), and when it cannot help — it did
/// not start, or it came back empty at once, as rfd's portal backend does on
/// a desktop without an XDG desktop portal — an in-app path field with
/// completion takes over. The chosen path comes back through the same code
/// path as a typed or dropped one.
pub struct FileDialog {
    rx: Option<std::sync::mpsc::Receiver<Option<PathBuf>>>,
    opened: Option<std::time::Instant>,
    request: Option<DialogRequest>,
    prompt: Option<PathPrompt>,
}

/// What was asked for, kept for the fallback.
#[derive(Debug, Clone)]
struct DialogRequest {
    kind: DialogKind,
    title: String,
    extensions: Vec<String>,
    file_name: Option<String>,
}

/// The in-app fallback: a path field with completion.
#[derive(Debug, Clone)]
struct PathPrompt {
    request: DialogRequest,
    text: String,
    why: String,
    error: Option<String>,
}

/// What kind of dialog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogKind {
    Open,
    Save,
}

/// A system dialog silent this long may never open: the path field is
/// offered.
const OFFER_PATH_AFTER: std::time::Duration = std::time::Duration::from_secs(3);

/// A system dialog that answers faster than this did not ask anyone.
const NOBODY_ANSWERS_THAT_FAST: std::time::Duration = std::time::Duration::from_millis(400);

impl FileDialog {
    pub const fn new() -> Self {
        Self {
            rx: None,
            opened: None,
            request: None,
            prompt: None,
        }
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
        let request = DialogRequest {
            kind,
            title: title.to_string(),
            extensions: filter.1.iter().map(|e| e.to_string()).collect(),
            file_name: file_name.map(str::to_string),
        };
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
        self.opened = Some(std::time::Instant::now());
        if cfg!(target_os = "macos") {
            // The receiver is in this scope: the send cannot fail.
            let _ = tx.send(run());
        } else {
            let repaint = ctx.clone();
            let spawned = std::thread::Builder::new()
                .name("fedhe-file-dialog".into())
                .spawn(move || {
                    // A closed window dropped the receiver: nothing to tell.
                    let _ = tx.send(run());
                    repaint.request_repaint();
                });
            if let Err(e) = spawned {
                self.fall_back(
                    request,
                    format!("The system file dialog could not start ({e})."),
                );
                return;
            }
        }
        self.request = Some(request);
        self.rx = Some(rx);
    }

    fn fall_back(&mut self, request: DialogRequest, why: String) {
        let text = std::env::current_dir()
            .map(|d| {
                let mut p = d.display().to_string();
                p.push(std::path::MAIN_SEPARATOR);
                if let Some(n) = &request.file_name {
                    p.push_str(n);
                }
                p
            })
            .unwrap_or_default();
        self.prompt = Some(PathPrompt {
            request,
            text,
            why,
            error: None,
        });
    }

    /// The chosen path, once (None while open, cancelled, or idle). Draws
    /// the in-app path field while it is needed: call it every frame.
    pub fn take(&mut self, ctx: &egui::Context) -> Option<PathBuf> {
        if let Some(rx) = self.rx.as_ref() {
            match rx.try_recv() {
                Ok(Some(path)) => {
                    self.rx = None;
                    return Some(path);
                }
                Ok(None) => {
                    self.rx = None;
                    let quick = self
                        .opened
                        .is_some_and(|t| t.elapsed() < NOBODY_ANSWERS_THAT_FAST);
                    if quick && let Some(r) = self.request.take() {
                        self.fall_back(
                            r,
                            "The system file dialog did not open (this desktop may have no file \
                             chooser portal). Type or paste the path instead:"
                                .into(),
                        );
                    }
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => {}
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    self.rx = None;
                    if let Some(r) = self.request.take() {
                        self.fall_back(
                            r,
                            "The system file dialog stopped without an answer.".into(),
                        );
                    }
                }
            }
        }
        self.waiting_ui(ctx);
        self.prompt_ui(ctx)
    }

    /// A system dialog that has not answered for a while may never open
    /// (a portal that hangs, a desktop without one that does not fail
    /// fast): the in-app path field is offered, so that nobody is stuck
    /// with a button that seems to do nothing.
    fn waiting_ui(&mut self, ctx: &egui::Context) {
        let (Some(opened), Some(_)) = (self.opened, self.rx.as_ref()) else {
            return;
        };
        if opened.elapsed() < OFFER_PATH_AFTER {
            ctx.request_repaint_after(OFFER_PATH_AFTER);
            return;
        }
        let mut instead = false;
        egui::Window::new("Waiting for the file dialog")
            .id(egui::Id::unique("fedhe-dialog-wait"))
            .collapsible(false)
            .resizable(false)
            .anchor(egui::Align2::CENTER_TOP, egui::vec2(0.0, 80.0))
            .show(ctx, |ui| {
                ui.label(
                    "The system file dialog has not answered. If none is open, type the path \
                     instead.",
                );
                if ui.button("Type the path instead").clicked() {
                    instead = true;
                }
            });
        if instead {
            // The dialog's thread, if it ever answers, finds nobody listening.
            self.rx = None;
            if let Some(r) = self.request.take() {
                self.fall_back(
                    r,
                    "The system file dialog did not answer. Type or paste the path:".into(),
                );
            }
        }
    }

    fn prompt_ui(&mut self, ctx: &egui::Context) -> Option<PathBuf> {
        let prompt = self.prompt.as_mut()?;
        let mut chosen = None;
        let mut close = false;
        let title = prompt.request.title.clone();
        egui::Window::new(&title)
            .id(egui::Id::unique(("fedhe-path-prompt", &title)))
            .collapsible(false)
            .resizable(false)
            // Anchored by its top, at a fixed width: completions appearing
            // below never move what is above them.
            .anchor(egui::Align2::CENTER_TOP, egui::vec2(0.0, 80.0))
            .show(ctx, |ui| {
                ui.set_width(520.0);
                ui.label(&prompt.why);
                let l = ui.label("Path");
                let field = ui
                    .add(egui::TextEdit::singleline(&mut prompt.text).desired_width(420.0))
                    .labelled_by(l.id);
                let enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                // Completion: entries of the typed folder that start with
                // what follows its last separator.
                for c in completions(&prompt.text, &prompt.request.extensions) {
                    if ui.small_button(&c).clicked() {
                        prompt.text = c;
                    }
                }
                if let Some(e) = &prompt.error {
                    ui.label(RichText::new(e).color(ERROR_COLOR));
                }
                ui.horizontal(|ui| {
                    let verb = match prompt.request.kind {
                        DialogKind::Open => "Open",
                        DialogKind::Save => "Save",
                    };
                    if ui.button(verb).clicked() || enter {
                        let path = PathBuf::from(prompt.text.trim());
                        match check_path(&path, prompt.request.kind) {
                            Ok(()) => chosen = Some(path),
                            Err(e) => prompt.error = Some(e.to_string()),
                        }
                    }
                    if ui.button("Cancel").clicked() {
                        close = true;
                    }
                });
            });
        if chosen.is_some() || close {
            self.prompt = None;
        }
        chosen
    }
}

/// Why `path` cannot be used for `kind`, in words.
fn check_path(path: &std::path::Path, kind: DialogKind) -> Result<(), super::error::AppError> {
    let (action, problem) = match kind {
        DialogKind::Open if !path.is_file() => ("open", Some("it is not a file")),
        DialogKind::Open => ("open", None),
        DialogKind::Save if path.as_os_str().is_empty() || path.is_dir() => {
            ("save to", Some("it is a folder: add a file name"))
        }
        DialogKind::Save
            if path
                .parent()
                .is_some_and(|d| !d.as_os_str().is_empty() && !d.is_dir()) =>
        {
            ("save to", Some("its folder does not exist"))
        }
        DialogKind::Save => ("save to", None),
    };
    match problem {
        None => Ok(()),
        Some(reason) => Err(super::error::AppError::File {
            action,
            path: path.to_path_buf(),
            reason: reason.into(),
        }),
    }
}

/// Up to 8 completions of a typed path: folders, and files with one of
/// `extensions` (any file when empty).
fn completions(typed: &str, extensions: &[String]) -> Vec<String> {
    let (dir, prefix) = match typed.rfind(std::path::is_separator) {
        Some(i) => (&typed[..=i], &typed[i + 1..]),
        None => ("./", typed),
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with(prefix) || name.starts_with('.') && !prefix.starts_with('.') {
                return None;
            }
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir());
            let fits = is_dir
                || extensions.is_empty()
                || extensions
                    .iter()
                    .any(|x| name.to_lowercase().ends_with(&format!(".{x}")));
            let base = if dir == "./" { "" } else { dir };
            fits.then(|| {
                let sep = if is_dir {
                    std::path::MAIN_SEPARATOR_STR
                } else {
                    ""
                };
                format!("{base}{name}{sep}")
            })
        })
        .collect();
    out.sort();
    out.truncate(8);
    out
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

/// Picks the model: linear (logistic, softmax or linear regression by task)
/// or an MLP with one hidden layer of the chosen width (plans and the CLI
/// allow up to three); with `trees`, gradient-boosted trees too. Returns
/// true when the choice changed.
pub fn model_picker(
    ui: &mut Ui,
    id: &str,
    arch: &mut fedhe::model::Architecture,
    trees: bool,
) -> bool {
    use fedhe::model::Architecture;
    let before = arch.clone();
    let l = ui.label("Model");
    egui::ComboBox::from_id_salt(id)
        .selected_text(match arch {
            Architecture::Linear => "linear",
            Architecture::Mlp { .. } => "MLP",
            Architecture::Gbdt => "gradient-boosted trees",
        })
        .show_ui(ui, |ui| {
            if ui
                .selectable_label(matches!(arch, Architecture::Linear), "linear")
                .on_hover_text("Logistic, softmax or linear regression, by task")
                .clicked()
            {
                *arch = Architecture::Linear;
            }
            if ui
                .selectable_label(matches!(arch, Architecture::Mlp { .. }), "MLP")
                .on_hover_text("A multilayer perceptron with a ReLU hidden layer")
                .clicked()
                && !matches!(arch, Architecture::Mlp { .. })
            {
                *arch = Architecture::Mlp { hidden: vec![32] };
            }
            if trees
                && ui
                    .selectable_label(matches!(arch, Architecture::Gbdt), "gradient-boosted trees")
                    .on_hover_text(
                        "XGBoost-style histogram trees: each level's gradient histograms \
                         are summed encrypted",
                    )
                    .clicked()
            {
                *arch = Architecture::Gbdt;
            }
        })
        .response
        .labelled_by(l.id);
    if let Architecture::Mlp { hidden } = arch {
        if hidden.is_empty() {
            hidden.push(32);
        }
        number_field(ui, "Hidden units", &mut hidden[0], 1..=1024, 0.2);
    }
    *arch != before
}

#[cfg(test)]
mod tests {
    /// Every symbol the app draws exists in the fonts bundled with it
    /// (a missing glyph panics egui in debug and shows tofu in release).
    #[test]
    fn every_symbol_has_a_glyph() {
        let sources = [
            include_str!("mod.rs"),
            include_str!("client_tab/mod.rs"),
            include_str!("client_tab/data.rs"),
            include_str!("client_tab/keys.rs"),
            include_str!("client_tab/connect.rs"),
            include_str!("client_tab/training.rs"),
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

/// A status line whose "in N s" counts down as time passes: the line as it
/// came, and when it came. Waiting notices are sent when who is awaited
/// changes; the countdown between them is the window's.
#[derive(Default)]
pub struct LiveLine {
    text: String,
    since: Option<std::time::Instant>,
}

impl LiveLine {
    /// `text` as of now (a new text starts its countdown afresh); asks for
    /// a repaint in a second while it counts.
    pub fn show(&mut self, text: &str, ctx: &egui::Context) -> String {
        if self.text != text || self.since.is_none() {
            self.text = text.to_string();
            self.since = Some(std::time::Instant::now());
        }
        let elapsed = self.since.map_or(0, |t| t.elapsed().as_secs());
        let (line, counting) = count_down(text, elapsed);
        if counting {
            ctx.request_repaint_after(std::time::Duration::from_secs(1));
        }
        line
    }
}

/// Every "in N s" of `text` as "in N−elapsed s" (never below 0); whether
/// there was one.
pub fn count_down(text: &str, elapsed: u64) -> (String, bool) {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut found = false;
    while let Some(i) = rest.find("in ") {
        out.push_str(&rest[..i + 3]);
        rest = &rest[i + 3..];
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits > 0
            && rest[digits..].starts_with(" s")
            && let Ok(n) = rest[..digits].parse::<u64>()
        {
            out.push_str(&n.saturating_sub(elapsed).to_string());
            rest = &rest[digits..];
            found = true;
        }
    }
    out.push_str(rest);
    (out, found)
}

#[cfg(test)]
mod dialog_tests {
    use super::{DialogKind, DialogRequest, FileDialog};
    use egui_kittest::kittest::Queryable;
    use std::time::{Duration, Instant};

    /// A system dialog that never answers (seen under Xvfb: the export
    /// buttons seemed to do nothing) offers the in-app path field.
    #[test]
    fn a_system_dialog_that_never_answers_offers_the_path_field() {
        let (tx, rx) = std::sync::mpsc::channel();
        let mut dialog = FileDialog::new();
        dialog.rx = Some(rx);
        dialog.opened = Instant::now().checked_sub(Duration::from_secs(5));
        dialog.request = Some(DialogRequest {
            kind: DialogKind::Save,
            title: "Save the plot as PNG".into(),
            extensions: vec!["png".into()],
            file_name: Some("plot.png".into()),
        });
        let mut h = egui_kittest::Harness::new_ui_state(
            |ui, d: &mut FileDialog| {
                let _ = d.take(ui.ctx());
            },
            dialog,
        );
        h.run();
        assert!(h.query_by_label("Path").is_none());
        h.get_by_label("Type the path instead").click();
        h.run();
        h.get_by_label("Path");
        h.get_by_label_contains("did not answer");
        drop(tx);
    }
}

#[cfg(test)]
mod countdown_tests {
    use super::count_down;

    #[test]
    fn a_countdown_ticks_and_stops_at_zero() {
        let line = "round 2: 1 of 3 submitted (closes at its deadline, in 119 s); retrying in 8 s";
        let (now, counting) = count_down(line, 5);
        assert!(counting);
        assert_eq!(
            now,
            "round 2: 1 of 3 submitted (closes at its deadline, in 114 s); retrying in 3 s"
        );
        assert_eq!(count_down("in 3 s", 10).0, "in 0 s");
        assert_eq!(
            count_down("joined in time", 10),
            ("joined in time".into(), false)
        );
    }

    #[test]
    fn notes_speak_of_the_apps_controls() {
        let mut notes = Vec::new();
        super::push_note(
            &mut notes,
            super::Note::Info("task: binary, because 2 values (choose with --task)".into()),
        );
        assert_eq!(
            notes[0],
            super::Note::Info("task: binary, because 2 values (choose it in the Task box)".into())
        );
    }

    /// The library's messages that name a `--flag`, as the app shows them:
    /// no flag left where the app has a control.
    #[test]
    fn library_flags_become_the_apps_controls() {
        let cases = [
            (
                "ignored column \"id\": it holds a distinct integer on every row, like an id \
                 (use --keep id to use it as a feature)",
                "ignored column \"id\": it holds a distinct integer on every row, like an id \
                 (left out automatically: see Feature columns)",
            ),
            (
                "training diverged at epoch 3: loss is NaN; try a smaller learning rate than 5 \
                 (--lr 5), or check the data for extreme values",
                "training diverged at epoch 3: loss is NaN; try a smaller learning rate than 5 \
                 (Learning rate 5), or check the data for extreme values",
            ),
            (
                "cannot listen on 127.0.0.1:8080: in use (is another aggregator running there? \
                 choose another --bind port)",
                "cannot listen on 127.0.0.1:8080: in use (is another aggregator running there? \
                 choose another Port)",
            ),
            (
                "a.csv:4: third label value \"x\"; a binary label column holds exactly two values \
                 (seen so far: \"a\", \"b\"); for more classes use --task multiclass (or auto), \
                 for a numeric target --task regression",
                "a.csv:4: third label value \"x\"; a binary label column holds exactly two values \
                 (seen so far: \"a\", \"b\"); for more classes pick multiclass (or auto) in the \
                 Task box, for a numeric target regression",
            ),
        ];
        for (library, app) in cases {
            assert_eq!(super::app_words(library), app);
            assert!(!super::app_words(library).contains("--"));
        }
    }
}
