//! Plots (egui_plot): live training curves, ROC curve, round history.

use egui::{Color32, Ui};
use egui_plot::{Legend, Line, LineStyle, Plot, Points};

use super::jobs::EpochPoint;
use super::widgets::{ENCRYPTED_COLOR, PLAIN_COLOR};
use fedhe::client::RoundFigures;

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

/// A line plot with a legend; markers when there are few points.
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
        .legend(Legend::default())
        .x_axis_label(x_label)
        .y_axis_label(y_label)
        .allow_scroll(false)
        .include_x(0.0);
    if let Some((lo, hi)) = y_range {
        plot = plot.include_y(lo).include_y(hi);
    }
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

/// Validation loss and accuracy of the global model per round.
pub fn round_plots_ui<R: RoundFigures>(
    ui: &mut Ui,
    id: &str,
    rows: &[R],
    plain: Option<&[R]>,
    height: f32,
) {
    let acc = |rows: &[R]| -> Vec<[f64; 2]> {
        rows.iter()
            .filter_map(|r| r.accuracy().map(|a| [r.round() as f64, a]))
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
        cols[0].label("Global accuracy per round");
        line_plot_ui(
            &mut cols[0],
            &format!("{id}-acc"),
            "round",
            "accuracy",
            height,
            s,
            Some((0.5, 1.0)),
        );
        let mut s = vec![Series::new("encrypted FedAvg", loss(rows), ENCRYPTED_COLOR)];
        if let Some(p) = plain {
            s.push(Series::new("plaintext FedAvg", loss(p), PLAIN_COLOR).dashed());
        }
        cols[1].label("Global log-loss per round");
        line_plot_ui(
            &mut cols[1],
            &format!("{id}-loss"),
            "round",
            "log-loss",
            height,
            s,
            Some((0.0, 0.0)),
        );
    });
}

/// The per-round log as a table.
pub fn round_table_ui<R: RoundFigures>(ui: &mut Ui, id: &str, rows: &[R], with_server: bool) {
    use super::jobs::{human_bytes, human_ms};
    egui::ScrollArea::vertical()
        .id_salt(id)
        .max_height(180.0)
        .show(ui, |ui| {
            egui::Grid::new(id).striped(true).show(ui, |ui| {
                ui.strong("round");
                ui.strong("clients");
                ui.strong("val. accuracy");
                ui.strong("val. loss");
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
                    ui.label(r.accuracy().map_or("–".into(), |a| format!("{a:.3}")));
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
    Plot::new("roc")
        .height(height)
        .legend(Legend::default())
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
