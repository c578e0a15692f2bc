//! Exports: CSV written by the csv crate's serializer (quoting, one header
//! row) — the Server tab's round history, a round log (the Client tab's or
//! the demo's), a scored model's metrics — and plots as PNG, cropped from
//! a screenshot of the window (`ViewportCommand::Screenshot`).

use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::error::AppError;
use fedhe::client::RoundFigures;
use fedhe::data::TaskKind;
use fedhe::model::Evaluation;
use fedhe::protocol::RoundInfo;

/// The error of a failed write to `path`.
fn write_error(what: &'static str, path: &Path, e: &dyn std::fmt::Display) -> AppError {
    AppError::File {
        action: what,
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// One closed round, as a CSV row.
#[derive(Serialize)]
struct HistoryRow<'a> {
    round: u64,
    phase: &'a str,
    contributors: u32,
    /// The contributors' ids, separated by spaces.
    submitted: String,
    values: Option<usize>,
    bytes_received: u64,
    aggregation_ms: f64,
}

/// Writes the closed rounds to `path`, each with its `phase(round)`.
pub fn write_history(
    path: &Path,
    history: &[RoundInfo],
    phase: &dyn Fn(u64) -> String,
) -> Result<(), AppError> {
    let fail = |e: &dyn std::fmt::Display| AppError::File {
        action: "write the round history to",
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut w = csv::Writer::from_path(path).map_err(|e| fail(&e))?;
    for r in history {
        let phase = phase(r.round);
        w.serialize(HistoryRow {
            round: r.round,
            phase: &phase,
            contributors: r.contributors,
            submitted: r.submitted.join(" "),
            values: r.len,
            bytes_received: r.bytes_accepted,
            aggregation_ms: r.aggregate_ms,
        })
        .map_err(|e| fail(&e))?;
    }
    w.flush().map_err(|e| fail(&e))
}

/// One round of a round log, as a CSV row (after a header naming the
/// task's figures).
#[derive(Serialize)]
struct LogRow {
    round: u64,
    contributors: u32,
    score: Option<f64>,
    loss: Option<f64>,
    bytes_sent: u64,
    bytes_received: u64,
    encrypt_ms: f64,
    aggregate_ms: f64,
    decrypt_ms: f64,
    epsilon: Option<f64>,
}

/// Writes a round log (the Client tab's, or the demo's) to `path`: one row
/// per round, its score and loss named by `task` ("accuracy", "log_loss").
pub fn write_round_log<R: RoundFigures>(
    path: &Path,
    task: TaskKind,
    rows: &[R],
) -> Result<(), AppError> {
    let fail = |e: &dyn std::fmt::Display| write_error("write the round log to", path, e);
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_path(path)
        .map_err(|e| fail(&e))?;
    let (score, loss) = match task {
        TaskKind::Regression => ("r2", "rmse"),
        _ => ("accuracy", "log_loss"),
    };
    w.write_record([
        "round",
        "contributors",
        score,
        loss,
        "bytes_sent",
        "bytes_received",
        "encrypt_ms",
        "aggregate_ms",
        "decrypt_ms",
        "epsilon",
    ])
    .map_err(|e| fail(&e))?;
    for r in rows {
        let (bytes_sent, bytes_received) = r.bytes();
        let (encrypt_ms, decrypt_ms, aggregate_ms) = r.times_ms();
        w.serialize(LogRow {
            round: r.round(),
            contributors: r.contributors(),
            score: r.score(),
            loss: r.loss(),
            bytes_sent,
            bytes_received,
            encrypt_ms,
            aggregate_ms,
            decrypt_ms,
            epsilon: r.epsilon(),
        })
        .map_err(|e| fail(&e))?;
    }
    w.flush().map_err(|e| fail(&e))
}

/// One figure of a model's metrics.
#[derive(Serialize)]
struct MetricRow<'a> {
    metric: &'a str,
    value: String,
}

/// Writes a scored model's metrics to `path`: one `metric,value` row per
/// figure, nested figures named by their path ("confusion.tp",
/// "per_class.0.f1"), the task first.
pub fn write_metrics(path: &Path, evaluation: &Evaluation) -> Result<(), AppError> {
    let fail = |e: &dyn std::fmt::Display| write_error("write the metrics to", path, e);
    let value = serde_json::to_value(evaluation).map_err(|e| fail(&e))?;
    let mut rows = Vec::new();
    flatten("", &value, &mut rows);
    let mut w = csv::Writer::from_path(path).map_err(|e| fail(&e))?;
    for (metric, value) in &rows {
        w.serialize(MetricRow {
            metric,
            value: value.clone(),
        })
        .map_err(|e| fail(&e))?;
    }
    w.flush().map_err(|e| fail(&e))
}

/// Every scalar of `v` as (its dotted path, its text); empty figures
/// (null) are left out.
fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                flatten(&key(k), v, out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                flatten(&key(&i.to_string()), v, out);
            }
        }
        serde_json::Value::Null => {}
        serde_json::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// Asks for a plot as PNG: the plot's `name` (the file name offered) and
/// its rect on screen. Written by the plot's button, taken by
/// [`PlotExport::run`] at the end of the frame.
#[derive(Debug, Clone)]
pub struct PlotRequest {
    pub name: String,
    pub rect: egui::Rect,
}

/// Where the plot buttons leave their request in egui's memory.
fn request_id() -> egui::Id {
    egui::Id::unique("fedhe-plot-png-request")
}

/// A plot's "Save as PNG…" button, under the plot of `rect`.
pub fn plot_png_button(ui: &mut egui::Ui, name: &str, rect: egui::Rect) {
    // In a row of its own: a justified column does not stretch it.
    let clicked = ui
        .horizontal(|ui| {
            ui.small_button("Save plot as PNG…")
                .on_hover_text("This plot as it is on screen, as a PNG image")
                .clicked()
        })
        .inner;
    if clicked {
        let request = PlotRequest {
            name: name.to_string(),
            rect,
        };
        ui.ctx()
            .data_mut(|d| d.insert_temp(request_id(), Some(request)));
    }
}

/// A plot captured, waiting for its file name.
struct Captured {
    name: String,
    image: egui::ColorImage,
}

/// Plots saved as PNG: a button's request becomes a screenshot of the
/// window, cropped to the plot, then a save dialog, then the file.
#[derive(Default)]
pub struct PlotExport {
    /// Filled by the screenshot's callback (another thread may run it).
    arrived: Arc<Mutex<Option<Captured>>>,
    /// The capture whose file name is being asked for.
    pending: Option<Captured>,
    dialog: super::widgets::FileDialog,
}

impl PlotExport {
    /// Call once per frame after the tabs: sends the screenshot a plot
    /// button asked for, opens the save dialog once it arrived, and writes
    /// the PNG once a path is chosen. Returns what to tell the user.
    pub fn run(&mut self, ctx: &egui::Context) -> Option<super::widgets::Note> {
        use super::widgets::Note;
        if let Some(req) = ctx
            .data_mut(|d| d.remove_temp::<Option<PlotRequest>>(request_id()))
            .flatten()
        {
            let arrived = self.arrived.clone();
            let repaint = ctx.clone();
            let ppp = ctx.pixels_per_point();
            let callback = egui::ScreenshotCallback::new(move |image| {
                let image = crop(&image, req.rect, ppp);
                if let Ok(mut slot) = arrived.lock() {
                    *slot = Some(Captured {
                        name: req.name,
                        image,
                    });
                }
                repaint.request_repaint();
            });
            ctx.send_viewport_cmd(egui::ViewportCommand::Screenshot(callback));
        }
        let arrived = self.arrived.lock().ok().and_then(|mut s| s.take());
        if let Some(c) = arrived {
            let file = format!("{}.png", c.name);
            self.dialog.open(
                ctx,
                super::widgets::DialogKind::Save,
                "Save the plot as PNG",
                ("PNG image", &["png"]),
                Some(&file),
            );
            self.pending = Some(c);
        }
        let path = self.dialog.take(ctx)?;
        let c = self.pending.take()?;
        Some(match write_png(&path, &c.image) {
            Ok(()) => Note::Info(format!(
                "Plot saved to {} ({}×{} pixels)",
                path.display(),
                c.image.width(),
                c.image.height()
            )),
            Err(e) => Note::from(e),
        })
    }
}

/// `rect` (in points) of a screenshot taken at `ppp` pixels per point,
/// clamped to the image.
pub fn crop(image: &egui::ColorImage, rect: egui::Rect, ppp: f32) -> egui::ColorImage {
    let [w, h] = image.size;
    let px = |v: f32, max: usize| ((v * ppp).round().max(0.0) as usize).min(max);
    let (x0, x1) = (px(rect.min.x, w), px(rect.max.x, w));
    let (y0, y1) = (px(rect.min.y, h), px(rect.max.y, h));
    image.region_by_pixels([x0, y0], [x1.saturating_sub(x0), y1.saturating_sub(y0)])
}

/// Writes `image` to `path` as an RGBA PNG.
pub fn write_png(path: &Path, image: &egui::ColorImage) -> Result<(), AppError> {
    let bytes: Vec<u8> = image.pixels.iter().flat_map(|c| c.to_array()).collect();
    image::save_buffer_with_format(
        path,
        &bytes,
        image.width() as u32,
        image.height() as u32,
        image::ExtendedColorType::Rgba8,
        image::ImageFormat::Png,
    )
    .map_err(|e| write_error("save the plot to", path, &e))
}

/// The file a plot is offered under: its title in lower case, words joined
/// by '_' ("Global accuracy per round" → "global_accuracy_per_round").
pub fn plot_file_name(title: &str) -> String {
    let words: Vec<String> = title
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    words.join("_")
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedhe::protocol::RoundState;

    #[test]
    fn the_history_is_a_csv_with_one_row_per_round() {
        let round = |r: u64, who: &[&str]| RoundInfo {
            round: r,
            state: RoundState::Closed,
            len: Some(32),
            contributors: who.len() as u32,
            submitted: who.iter().map(|s| s.to_string()).collect(),
            aggregate_ms: 1.5,
            bytes_accepted: 1000,
            roster: Vec::new(),
            missing: Vec::new(),
            min_contributors: 0,
            deadline_unix: None,
            attempt: 0,
            mask_phase: None,
            masked: false,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.csv");
        let history = [round(1, &["a", "b"]), round(2, &["a"])];
        let phase = |r: u64| format!("phase, {r}");
        write_history(&path, &history, &phase).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "round,phase,contributors,submitted,values,bytes_received,aggregation_ms\n\
             1,\"phase, 1\",2,a b,32,1000,1.5\n\
             2,\"phase, 2\",1,a,32,1000,1.5\n"
        );
    }
}
