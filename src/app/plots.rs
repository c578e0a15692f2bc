//! Plots (egui_plot): live training curves, ROC curve, round history.

use egui::{Color32, Ui};
use egui_plot::{Bar, BarChart, Line, LineStyle, Plot, Points};

use super::jobs::EpochPoint;
use super::widgets::{ENCRYPTED_COLOR, PLAIN_COLOR};
use fedhe::client::RoundFigures;
use fedhe::data::TaskKind;

/// One named series of (x, y) points.
pub struct Series {
    pub name: String,
    pub points: Vec<[f64; 2]>,
    pub color: Color32,
    pub dashed: bool,
}

impl Series {
    pub fn new(name: impl Into<String>, points: Vec<[f64; 2]>, color: Color32) -> Self {
        Self {
            name: name.into(),
            points,
            color,
            dashed: false,
        }
    }

    pub fn dashed(mut self) -> Self {
        self.dashed = true;
        self
    }
}

/// A line plot, markers when there are few points; its legend and a
/// "Save plot as PNG…" button on a row under it, outside the plot, so that
/// the legend never covers the last points and nothing touches the title
/// above.
pub fn line_plot_ui(
    ui: &mut Ui,
    id: &str,
    x_label: &str,
    y_label: &str,
    height: f32,
    series: Vec<Series>,
    y_range: Option<(f64, f64)>,
) {
    let mut plot = Plot::new(id)
        .height(height)
        .x_axis_label(x_label)
        .y_axis_label(y_label)
        .allow_scroll(false)
        .include_x(0.0);
    if let Some((lo, hi)) = y_range {
        plot = plot.include_y(lo).include_y(hi);
    }
    let legend: Vec<(String, Color32, bool)> = series
        .iter()
        .map(|s| (s.name.clone(), s.color, s.dashed))
        .collect();
    let rect = ui
        .scope(|ui| {
            plot.show(ui, |plot_ui| {
                for s in series {
                    let few = s.points.len() <= 30;
                    let mut line = Line::new(s.name.clone(), s.points.clone())
                        .color(s.color)
                        .width(2.0);
                    if s.dashed {
                        line = line.style(LineStyle::dashed_loose());
                    }
                    plot_ui.line(line);
                    if few {
                        plot_ui.points(Points::new(s.name, s.points).color(s.color).radius(3.0));
                    }
                }
            });
        })
        .response
        .rect;
    legend_row_ui(ui, id, &legend, rect);
}

/// The legend (a swatch and a name per series) and the PNG button of the
/// plot drawn in `rect`.
fn legend_row_ui(ui: &mut Ui, id: &str, legend: &[(String, Color32, bool)], rect: egui::Rect) {
    ui.horizontal_wrapped(|ui| {
        for (name, color, dashed) in legend {
            let swatch = if *dashed { "- -" } else { "——" };
            ui.label(egui::RichText::new(swatch).color(*color).strong());
            ui.label(name);
            ui.add_space(8.0);
        }
        super::export::plot_png_button(ui, &super::export::plot_file_name(id), rect);
    });
    ui.add_space(4.0);
}

/// Local training loss per epoch, epochs numbered across rounds.
pub fn epoch_series(points: &[EpochPoint], epochs_per_round: usize) -> Vec<[f64; 2]> {
    points
        .iter()
        .map(|p| {
            let x = p.round.saturating_sub(1) as f64 * epochs_per_round as f64 + p.epoch as f64;
            [x, p.loss]
        })
        .collect()
}

/// Name of a round's loss figure for a task.
pub fn loss_name(task: TaskKind) -> &'static str {
    match task {
        TaskKind::Regression => "RMSE",
        _ => "log-loss",
    }
}

/// Validation loss and the task's score (accuracy, or R²) of the global
/// model per round.
pub fn round_plots_ui<R: RoundFigures>(
    ui: &mut Ui,
    id: &str,
    task: TaskKind,
    rows: &[R],
    plain: Option<&[R]>,
    height: f32,
) {
    let acc = |rows: &[R]| -> Vec<[f64; 2]> {
        rows.iter()
            .filter_map(|r| r.score().map(|a| [r.round() as f64, a]))
            .collect()
    };
    let loss = |rows: &[R]| -> Vec<[f64; 2]> {
        rows.iter()
            .filter_map(|r| r.loss().map(|l| [r.round() as f64, l]))
            .collect()
    };
    // `columns(2)` hands the closure exactly 2 columns.
    ui.columns(2, |cols| {
        let mut s = vec![Series::new("encrypted FedAvg", acc(rows), ENCRYPTED_COLOR)];
        if let Some(p) = plain {
            s.push(Series::new("plaintext FedAvg", acc(p), PLAIN_COLOR).dashed());
        }
        let score = task.score_name();
        cols[0].label(format!("Global {score} per round"));
        line_plot_ui(
            &mut cols[0],
            &format!("{id}-acc"),
            "round",
            score,
            height,
            s,
            Some(match task {
                TaskKind::Binary => (0.5, 1.0),
                _ => (0.0, 1.0),
            }),
        );
        let mut s = vec![Series::new("encrypted FedAvg", loss(rows), ENCRYPTED_COLOR)];
        if let Some(p) = plain {
            s.push(Series::new("plaintext FedAvg", loss(p), PLAIN_COLOR).dashed());
        }
        cols[1].label(format!("Global {} per round", loss_name(task)));
        line_plot_ui(
            &mut cols[1],
            &format!("{id}-loss"),
            "round",
            loss_name(task),
            height,
            s,
            Some((0.0, 0.0)),
        );
    });
    epsilon_plot_ui(ui, id, rows, height * 0.6);
}

/// With DP-SGD: the privacy spent on the site's rows, round by round.
fn epsilon_plot_ui<R: RoundFigures>(ui: &mut Ui, id: &str, rows: &[R], height: f32) {
    let eps: Vec<[f64; 2]> = rows
        .iter()
        .filter_map(|r| r.epsilon().map(|e| [r.round() as f64, e]))
        .collect();
    if eps.is_empty() {
        return;
    }
    ui.label("Privacy spent (DP-SGD ε) per round");
    line_plot_ui(
        ui,
        &format!("{id}-eps"),
        "round",
        "ε",
        height,
        vec![Series::new("ε so far", eps, ENCRYPTED_COLOR)],
        Some((0.0, 0.0)),
    );
}

/// The per-round log as a table.
pub fn round_table_ui<R: RoundFigures>(
    ui: &mut Ui,
    id: &str,
    task: TaskKind,
    rows: &[R],
    with_server: bool,
) {
    use super::jobs::{human_bytes, human_ms};
    egui::ScrollArea::vertical()
        .id_salt(id)
        .max_height(180.0)
        .show(ui, |ui| {
            egui::Grid::new(id).striped(true).show(ui, |ui| {
                ui.strong("round");
                ui.strong("clients");
                ui.strong(format!("val. {}", task.score_name()));
                ui.strong(format!("val. {}", loss_name(task)));
                ui.strong("sent");
                ui.strong("received");
                ui.strong("encrypt");
                if with_server {
                    ui.strong("aggregate");
                }
                ui.strong("decrypt");
                ui.end_row();
                for r in rows {
                    let (up, down) = r.bytes();
                    let (encrypt, decrypt, aggregate) = r.times_ms();
                    ui.label(r.round().to_string());
                    ui.label(r.contributors().to_string());
                    ui.label(r.score().map_or("–".into(), |a| format!("{a:.3}")));
                    ui.label(r.loss().map_or("–".into(), |l| format!("{l:.4}")));
                    ui.label(human_bytes(up));
                    ui.label(human_bytes(down));
                    ui.label(human_ms(encrypt));
                    if with_server {
                        ui.label(human_ms(aggregate));
                    }
                    ui.label(human_ms(decrypt));
                    ui.end_row();
                }
            });
        });
}

/// A ROC curve with the chance diagonal.
pub fn roc_plot_ui(ui: &mut Ui, points: &[(f64, f64)], auc: Option<f64>, height: f32) {
    let name = match auc {
        Some(a) => format!("ROC (AUC {a:.3})"),
        None => "ROC".into(),
    };
    let pts: Vec<[f64; 2]> = points.iter().map(|&(x, y)| [x, y]).collect();
    let legend = [
        ("chance".to_string(), Color32::GRAY, true),
        (name.clone(), ENCRYPTED_COLOR, false),
    ];
    let rect = ui
        .scope(|ui| {
            roc_plot(ui, &name, pts, height);
        })
        .response
        .rect;
    legend_row_ui(ui, "roc", &legend, rect);
}

fn roc_plot(ui: &mut Ui, name: &str, pts: Vec<[f64; 2]>, height: f32) {
    Plot::new("roc")
        .height(height)
        .x_axis_label("false-positive rate")
        .y_axis_label("true-positive rate")
        .include_x(0.0)
        .include_x(1.0)
        .include_y(0.0)
        .include_y(1.0)
        .allow_scroll(false)
        .show(ui, |plot_ui| {
            plot_ui.line(
                Line::new("chance", vec![[0.0, 0.0], [1.0, 1.0]])
                    .color(Color32::GRAY)
                    .style(LineStyle::dashed_loose()),
            );
            plot_ui.line(Line::new(name, pts).color(ENCRYPTED_COLOR).width(2.0));
        });
}

/// A K × K confusion matrix as a heat map: rows are the actual classes,
/// columns the predicted ones; each cell shows its count, shaded by its
/// share of the actual class.
pub fn confusion_heatmap_ui(ui: &mut Ui, classes: &[String], confusion: &[Vec<u64>]) {
    let k = classes.len().min(confusion.len());
    if k == 0 {
        return;
    }
    let cell = (ui.available_width() / (k as f32 + 2.0)).clamp(22.0, 64.0);
    let label_w = cell * 2.0;
    let size = egui::vec2(label_w + cell * k as f32, cell * (k as f32 + 1.0));
    let (rect, response) = ui.allocate_exact_size(size, egui::Sense::hover());
    let painter = ui.painter_at(rect);
    let font = egui::FontId::proportional((cell * 0.32).clamp(9.0, 14.0));
    let text_color = ui.visuals().text_color();
    let short = |s: &str| fedhe::data::shorten(s, 10);
    // The corner names the axes: rows are actual classes, columns predicted.
    painter.text(
        rect.min + egui::vec2(label_w - 4.0, cell * 0.5),
        egui::Align2::RIGHT_CENTER,
        "actual \\ predicted",
        egui::FontId::proportional((cell * 0.26).clamp(8.0, 11.0)),
        ui.visuals().weak_text_color(),
    );
    for (j, name) in classes.iter().take(k).enumerate() {
        let pos = rect.min + egui::vec2(label_w + cell * (j as f32 + 0.5), cell * 0.5);
        painter.text(
            pos,
            egui::Align2::CENTER_CENTER,
            short(name),
            font.clone(),
            text_color,
        );
    }
    for (i, row) in confusion.iter().take(k).enumerate() {
        let y = rect.min.y + cell * (i as f32 + 1.0);
        painter.text(
            egui::pos2(rect.min.x + label_w - 4.0, y + cell * 0.5),
            egui::Align2::RIGHT_CENTER,
            short(&classes[i]),
            font.clone(),
            text_color,
        );
        let total: u64 = row.iter().sum::<u64>().max(1);
        for (j, &count) in row.iter().take(k).enumerate() {
            let share = count as f32 / total as f32;
            let r = egui::Rect::from_min_size(
                egui::pos2(rect.min.x + label_w + cell * j as f32, y),
                egui::vec2(cell, cell),
            )
            .shrink(1.0);
            let base = if i == j {
                ENCRYPTED_COLOR
            } else {
                Color32::from_rgb(200, 80, 60)
            };
            heat_cell(&painter, r, base, count, share, &font, text_color);
        }
    }
    let rect = response.rect;
    response.on_hover_text("rows: actual class · columns: predicted class");
    super::export::plot_png_button(ui, "confusion_matrix", rect);
}

/// One cell: shaded by `share`, with its count (white on dark shades).
fn heat_cell(
    painter: &egui::Painter,
    r: egui::Rect,
    base: Color32,
    count: u64,
    share: f32,
    font: &egui::FontId,
    text_color: Color32,
) {
    painter.rect_filled(r, 2.0, base.gamma_multiply(0.08 + 0.92 * share));
    painter.text(
        r.center(),
        egui::Align2::CENTER_CENTER,
        count.to_string(),
        font.clone(),
        if share > 0.55 {
            Color32::WHITE
        } else {
            text_color
        },
    );
}

/// Predicted against actual values with the identity line, and the
/// residuals (actual − predicted) against the prediction.
pub fn regression_plots_ui(ui: &mut Ui, actual: &[f64], predicted: &[f64], height: f32) {
    let pts: Vec<[f64; 2]> = actual
        .iter()
        .zip(predicted)
        .map(|(&a, &p)| [a, p])
        .collect();
    let (lo, hi) = actual
        .iter()
        .chain(predicted)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    let residuals: Vec<[f64; 2]> = actual
        .iter()
        .zip(predicted)
        .map(|(&a, &p)| [p, a - p])
        .collect();
    ui.columns(2, |cols| {
        cols[0].label("Predicted vs actual");
        let mut plot = Plot::new("pred-vs-actual")
            .height(height)
            .x_axis_label("actual")
            .y_axis_label("predicted")
            .allow_scroll(false);
        if lo.is_finite() && hi.is_finite() {
            // The same range on both axes, so the identity line is the diagonal.
            plot = plot.include_x(lo).include_x(hi).include_y(lo).include_y(hi);
        }
        let rect = cols[0]
            .scope(|ui| {
                plot.show(ui, |plot_ui| {
                    if lo.is_finite() && hi.is_finite() {
                        plot_ui.line(
                            Line::new("y = x", vec![[lo, lo], [hi, hi]])
                                .color(Color32::GRAY)
                                .style(LineStyle::dashed_loose()),
                        );
                    }
                    plot_ui.points(Points::new("rows", pts).color(ENCRYPTED_COLOR).radius(2.0));
                })
            })
            .response
            .rect;
        super::export::plot_png_button(&mut cols[0], "predicted_vs_actual", rect);
        cols[1].label("Residuals (actual − predicted)");
        let residuals_plot = Plot::new("residuals")
            .height(height)
            .x_axis_label("predicted")
            .y_axis_label("residual")
            .allow_scroll(false);
        let rect = cols[1]
            .scope(|ui| {
                residuals_plot.show(ui, |plot_ui| {
                    if lo.is_finite() && hi.is_finite() {
                        plot_ui.line(
                            Line::new("zero", vec![[lo, 0.0], [hi, 0.0]])
                                .color(Color32::GRAY)
                                .style(LineStyle::dashed_loose()),
                        );
                    }
                    plot_ui.points(
                        Points::new("residual", residuals)
                            .color(PLAIN_COLOR)
                            .radius(2.0),
                    );
                })
            })
            .response
            .rect;
        super::export::plot_png_button(&mut cols[1], "residuals", rect);
    });
}

/// Most features the importance chart shows.
pub const IMPORTANCE_TOP: usize = 20;

/// The `top` largest of `importance` (shares per feature) with their
/// names, largest first; ties keep the features' order, zeros are left out.
pub fn top_importance(names: &[String], importance: &[f64], top: usize) -> Vec<(String, f64)> {
    let mut rows: Vec<(String, f64)> = names
        .iter()
        .zip(importance)
        .filter(|(_, v)| v.is_finite() && **v > 0.0)
        .map(|(n, v)| (n.clone(), *v))
        .collect();
    // A stable sort: equal shares stay in column order.
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    rows.truncate(top);
    rows
}

/// Gain importance as horizontal bars (percent of the total gain), the
/// largest on top, the features named on the y axis; the PNG button under it.
pub fn importance_plot_ui(ui: &mut Ui, rows: &[(String, f64)]) {
    if rows.is_empty() {
        ui.label("No tree has a split: every feature's importance is 0.");
        return;
    }
    let n = rows.len();
    // Bar i (largest first) at y = n − 1 − i, so the largest is on top.
    let bars: Vec<Bar> = rows
        .iter()
        .enumerate()
        .map(|(i, (name, share))| {
            Bar::new((n - 1 - i) as f64, share * 100.0)
                .name(name)
                .width(0.7)
                .fill(ENCRYPTED_COLOR)
        })
        .collect();
    let labels: Vec<String> = rows
        .iter()
        .rev()
        .map(|(name, _)| fedhe::data::shorten(name, 22))
        .collect();
    let label_w = labels.iter().map(|l| l.chars().count()).max().unwrap_or(4) as f32 * 7.0;
    let height = (50.0 + 22.0 * n as f32).clamp(120.0, 500.0);
    let rect = ui
        .scope(|ui| {
            Plot::new("importance")
                .height(height)
                .x_axis_label("share of the total gain (%)")
                .include_x(0.0)
                .include_y(-0.6)
                .include_y(n as f64 - 0.4)
                .allow_scroll(false)
                .allow_drag(false)
                .allow_zoom(false)
                .allow_boxed_zoom(false)
                .show_grid([true, false])
                // The names as tick labels, one per bar: shown at the bars'
                // spacing (egui_plot hides y labels closer than 20 points).
                .custom_y_axes(vec![
                    egui_plot::AxisHints::new_y()
                        .min_thickness(label_w)
                        .label_spacing(egui::Rangef::new(8.0, 12.0))
                        .formatter(move |mark, _| {
                            let i = mark.value.round();
                            if (mark.value - i).abs() > 1e-6 || i < 0.0 {
                                return String::new();
                            }
                            labels.get(i as usize).cloned().unwrap_or_default()
                        }),
                ])
                .y_grid_spacer(move |_| {
                    (0..n)
                        .map(|i| egui_plot::GridMark {
                            value: i as f64,
                            step_size: 1.0,
                        })
                        .collect()
                })
                .show(ui, |plot_ui| {
                    plot_ui.bar_chart(
                        BarChart::new("gain importance", bars)
                            .horizontal()
                            .color(ENCRYPTED_COLOR),
                    );
                });
        })
        .response
        .rect;
    super::export::plot_png_button(ui, "feature_importance", rect);
}

#[cfg(test)]
mod tests {
    use super::top_importance;

    #[test]
    fn importance_is_sorted_largest_first_without_zeros_and_cut_to_the_top() {
        let names: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        let shares = [0.1, 0.0, 0.4, 0.1, 0.4];
        let top = top_importance(&names, &shares, 3);
        let got: Vec<(&str, f64)> = top.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        // Ties stay in column order; "b" (0) is never shown.
        assert_eq!(got, vec![("c", 0.4), ("e", 0.4), ("a", 0.1)]);
        assert_eq!(top_importance(&names, &shares, 10).len(), 4);
    }
}
