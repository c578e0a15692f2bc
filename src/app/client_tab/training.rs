//! Section 4, Training: the settings (the plan's own `Training`), local or
//! federated training with live plots and a per-round log, saving the
//! model.

use std::ops::ControlFlow;
use std::sync::Arc;

use egui::{RichText, Ui};

use super::{ClientTab, JoinedSite};
use crate::app::error::AppError;
use crate::app::jobs::{EpochPoint, Job, Progress, TrainMsg, poll_slot};
use crate::app::plots::{Series, epoch_series, line_plot_ui, round_plots_ui, round_table_ui};
use crate::app::settings::Settings;
use crate::app::widgets::{self, DialogKind, ENCRYPTED_COLOR, FileDialog, Note, OK_COLOR};
use crate::app::{LatestModel, Shared};
use fedhe::client::ClientEvent;
use fedhe::data::Dataset;
use fedhe::model::{Architecture, GbdtSettings, ModelFile, Optimizer, OptimizerKind, Schedule};
use fedhe::plan::Training;
use fedhe::session::{self, SessionError};

/// What the training plots and log show.
#[derive(Default)]
pub struct RunView {
    pub federated: bool,
    pub epochs_per_round: usize,
    pub epochs: Vec<EpochPoint>,
    pub rounds: Vec<fedhe::client::ClientRound>,
    pub progress: f32,
    pub status: String,
    /// The task being trained (names the plotted figures).
    pub task: fedhe::data::TaskKind,
}

/// The section's own state: the training job and the save dialog.
#[derive(Default)]
pub(super) struct TrainingPanel {
    job: Option<Job<TrainMsg>>,
    save_dialog: FileDialog,
    log_dialog: FileDialog,
}

impl ClientTab {
    pub fn is_training(&self) -> bool {
        self.training.job.is_some()
    }

    pub(super) fn take_save_dialog(&mut self, ctx: &egui::Context) {
        if let Some(p) = self.training.save_dialog.take(ctx)
            && let Some(m) = &self.model
        {
            let note = match m.save(&p) {
                Ok(()) => Note::Info(format!("Model saved to {}", p.display())),
                Err(e) => Note::Error(format!("Could not save the model: {e}")),
            };
            widgets::push_note(&mut self.notes, note);
        }
        if let Some(p) = self.training.log_dialog.take(ctx) {
            let note =
                match crate::app::export::write_round_log(&p, self.run.task, &self.run.rounds) {
                    Ok(()) => Note::Info(format!("Round log written to {}", p.display())),
                    Err(e) => Note::from(e),
                };
            widgets::push_note(&mut self.notes, note);
        }
    }

    pub(super) fn poll_training(&mut self, shared: &mut Shared) {
        let (msgs, failure) = poll_slot(&mut self.training.job);
        for m in msgs {
            match m {
                TrainMsg::Status(s) => self.run.status = s,
                TrainMsg::Progress(f) => self.run.progress = f,
                TrainMsg::Epoch(e) => self.run.epochs.push(e),
                TrainMsg::Round(r) => self.run.rounds.push(r),
                TrainMsg::Done(Ok(model)) => {
                    let kind = model.provenance.kind.clone();
                    shared.latest_model = Some(LatestModel {
                        model: (*model).clone(),
                        source: format!("the Client tab ({kind} training)"),
                        test_csv: None,
                    });
                    self.model = Some(*model);
                    self.run.progress = 1.0;
                }
                TrainMsg::Done(Err(e)) => {
                    self.run.status = "Training did not finish.".into();
                    widgets::push_note(&mut self.notes, Note::from(e));
                }
            }
        }
        self.failure(failure);
    }

    pub(super) fn training_ui(
        &mut self,
        ui: &mut Ui,
        settings: &mut Settings,
        shared: &mut Shared,
        ctx: &egui::Context,
    ) {
        widgets::section_heading(ui, "4. Training");
        let training = self.is_training();
        ui.add_enabled_ui(!training, |ui| {
            settings_ui(
                ui,
                &mut settings.training,
                &mut settings.architecture,
                &mut settings.gbdt,
            );
        });
        if let Some(f) = &self.federation {
            plan_note_ui(ui, &f.joined.plan.training);
        }
        ui.horizontal_wrapped(|ui| {
            if training {
                if ui.button("■ Stop").clicked()
                    && let Some(j) = &self.training.job
                {
                    j.cancel();
                    self.run.status = "Stopping…".into();
                }
                ui.spinner();
            } else {
                self.start_buttons_ui(ui, settings, ctx);
            }
            ui.label(self.status_line.show(&self.run.status, ctx));
        });
        if training && self.run.federated {
            self.watch.ui(ui);
        }
        if training || self.run.progress > 0.0 {
            ui.add(egui::ProgressBar::new(self.run.progress).show_percentage());
        }
        self.model_ui(ui, shared, ctx);
        self.run_ui(ui);
    }

    fn start_buttons_ui(&mut self, ui: &mut Ui, settings: &Settings, ctx: &egui::Context) {
        let dataset = self.csv.as_ref().and_then(|c| c.dataset()).cloned();
        let source = self
            .csv
            .as_ref()
            .map(|c| c.path.display().to_string())
            .unwrap_or_default();
        if ui
            .add_enabled(
                dataset.is_some(),
                egui::Button::new("Train locally (plaintext)"),
            )
            .on_hover_text("Train on this file only, no federation: a baseline")
            .on_disabled_hover_text("Load a CSV first")
            .clicked()
            && let Some(ds) = dataset
        {
            let architecture = (settings.architecture.clone(), settings.gbdt);
            self.start_training(
                ctx,
                ds,
                settings.training,
                architecture,
                source.clone(),
                None,
            );
        }
        let start = egui::Button::new(
            RichText::new("🔒 Start federated training").color(egui::Color32::WHITE),
        )
        .fill(ENCRYPTED_COLOR);
        if ui
            .add_enabled(self.federation.is_some(), start)
            .on_disabled_hover_text("Join a federation first (section 3)")
            .clicked()
        {
            self.start_federated(ctx, settings);
        }
    }

    /// Starts federated training in the federation joined (the button, or
    /// the Server tab's Resume once joined).
    pub(super) fn start_federated(&mut self, ctx: &egui::Context, settings: &Settings) {
        let Some(site) = self.federation.clone() else {
            return;
        };
        let source = self
            .csv
            .as_ref()
            .map(|c| c.path.display().to_string())
            .unwrap_or_default();
        let (t, architecture) = (
            settings.training,
            (settings.architecture.clone(), settings.gbdt),
        );
        self.start_training(ctx, site.data.clone(), t, architecture, source, Some(site));
    }

    /// The trained model: save it, or score with it in Predict.
    fn model_ui(&mut self, ui: &mut Ui, shared: &mut Shared, ctx: &egui::Context) {
        let Some(m) = &self.model else {
            return;
        };
        ui.horizontal(|ui| {
            ui.label(
                RichText::new(format!("Model ready ({} training).", m.provenance.kind))
                    .color(OK_COLOR),
            );
            if ui.button("Save model…").clicked() {
                self.training.save_dialog.open(
                    ctx,
                    DialogKind::Save,
                    "Save the model",
                    ("FedHE model", &["json"]),
                    Some("model.json"),
                );
            }
            if ui.button("Open in Predict »").clicked() {
                shared.goto = Some(crate::app::Tab::Predict);
                shared.predict_latest = true;
            }
        });
    }

    /// Loss per epoch; with a federation, the rounds' plots and log.
    fn run_ui(&mut self, ui: &mut Ui) {
        let run = &self.run;
        if run.epochs.is_empty() && run.rounds.is_empty() {
            return;
        }
        ui.label("Local training loss per epoch");
        let pts = epoch_series(&run.epochs, run.epochs_per_round);
        line_plot_ui(
            ui,
            "client-local",
            "epoch",
            run.task.loss_name(),
            150.0,
            vec![Series::new("local training loss", pts, ENCRYPTED_COLOR)],
            None,
        );
        if run.federated {
            round_plots_ui(ui, "client-rounds", run.task, &run.rounds, None, 160.0);
            ui.horizontal(|ui| {
                ui.label("Per-round log (this client)");
                if ui.small_button("Export round log (CSV)…").clicked() {
                    self.training.log_dialog.open(
                        ui.ctx(),
                        DialogKind::Save,
                        "Export this client's round log",
                        ("CSV", &["csv"]),
                        Some("round_log.csv"),
                    );
                }
            });
            round_table_ui(ui, "client-round-log", run.task, &run.rounds, false);
        }
    }

    fn start_training(
        &mut self,
        ctx: &egui::Context,
        ds: Dataset,
        t: Training,
        architecture: (Architecture, GbdtSettings),
        source: String,
        federated: Option<JoinedSite>,
    ) {
        self.run = RunView {
            task: federated
                .as_ref()
                .map_or(ds.label.kind(), |f| f.joined.plan.target().kind()),
            federated: federated.is_some(),
            epochs_per_round: federated
                .as_ref()
                .map_or(t.sgd.epochs, |f| f.joined.plan.training.sgd.epochs),
            status: match &federated {
                Some(f) if f.joined.plan.gbdt().is_some() => {
                    "Federated statistics: waiting for every client's encrypted column sums…".into()
                }
                Some(_) => {
                    "Statistics round: waiting for every client's encrypted feature sums…".into()
                }
                None => "Training…".into(),
            },
            ..RunView::default()
        };
        self.model = None;
        if let Some(site) = &federated {
            self.watch.start(ctx, site.joined.api.clone());
        }
        let job = Job::spawn("train", ctx, move |p| {
            let p = Arc::new(p);
            let r = match federated {
                Some(site) => federated_training(site, &p),
                None => local_training(&ds, &t, architecture, &source, &p),
            };
            p.send(TrainMsg::Done(r.map(Box::new)));
        });
        match job {
            Ok(j) => self.training.job = Some(j),
            Err(e) => widgets::push_note(&mut self.notes, Note::from(e)),
        }
    }
}

/// Every setting of a plan's training section, and the model.
fn settings_ui(
    ui: &mut Ui,
    t: &mut Training,
    architecture: &mut Architecture,
    gbdt: &mut GbdtSettings,
) {
    if *architecture == Architecture::Gbdt {
        ui.horizontal_wrapped(|ui| {
            widgets::model_picker(ui, "client-model", architecture, true);
            widgets::number_field(ui, "Trees", &mut gbdt.trees, 1..=1000, 0.1)
                .on_hover_text("Boosting iterations (multi-class: one tree per class each)");
            widgets::number_field(ui, "Depth", &mut gbdt.depth, 1..=12, 0.05)
                .on_hover_text("Levels of splits: one encrypted round per level");
            widgets::number_field(ui, "Bins", &mut gbdt.bins, 2..=256, 0.5);
            widgets::real_field(ui, "Learning rate", &mut gbdt.learning_rate, 0.001..=1.0);
        });
        return;
    }
    ui.horizontal_wrapped(|ui| {
        widgets::model_picker(ui, "client-model", architecture, true);
        widgets::number_field(ui, "Rounds", &mut t.rounds, 1..=1000, 0.1);
        widgets::number_field(ui, "Epochs", &mut t.sgd.epochs, 1..=1000, 0.1);
        widgets::real_field(ui, "Learning rate", &mut t.sgd.lr, 1e-6..=10.0);
        widgets::number_field(ui, "Batch size", &mut t.sgd.batch_size, 1..=100_000, 0.5);
        widgets::real_field(ui, "L2", &mut t.sgd.l2, 0.0..=10.0);
        widgets::number_field(ui, "Momentum", &mut t.sgd.momentum, 0.0..=0.99, 0.01)
            .on_hover_text("0: plain SGD; it restarts every round");
        widgets::real_field(ui, "Validation share", &mut t.validation_share, 0.05..=0.5)
            .on_hover_text("Rows kept aside to validate the global model");
    });
    optimizer_ui(ui, &mut t.sgd.optimizer);
}

/// The step rule, the learning-rate schedule and per-example clipping (the
/// plan's `optimizer`, `schedule` and `grad_clip`).
fn optimizer_ui(ui: &mut Ui, o: &mut Optimizer) {
    ui.horizontal_wrapped(|ui| {
        ui.label("Optimizer");
        egui::ComboBox::from_id_salt("client-optimizer")
            .selected_text(o.kind.name())
            .show_ui(ui, |ui| {
                for k in OptimizerKind::ALL {
                    ui.selectable_value(&mut o.kind, k, k.name());
                }
            })
            .response
            .on_hover_text("Its state (momentum, Adam's moments) restarts every round");
        if matches!(o.kind, OptimizerKind::Adam | OptimizerKind::AdamW) {
            widgets::real_field(ui, "β1", &mut o.beta1, 0.0..=0.999);
            widgets::real_field(ui, "β2", &mut o.beta2, 0.0..=0.99999);
        }
        widgets::real_field(ui, "Weight decay", &mut o.weight_decay, 0.0..=1.0);
        ui.label("Schedule");
        let steps = Schedule::Step {
            every: 10,
            gamma: 0.5,
        };
        egui::ComboBox::from_id_salt("client-schedule")
            .selected_text(o.schedule.name())
            .show_ui(ui, |ui| {
                for s in [Schedule::Constant, steps, Schedule::Cosine] {
                    let on = o.schedule.name() == s.name();
                    if ui.selectable_label(on, s.name()).clicked() && !on {
                        o.schedule = s;
                    }
                }
            })
            .response
            .on_hover_text(
                "The learning rate over the rounds: constant, halved every 10, or cosine",
            );
        widgets::real_field(ui, "Gradient clip", &mut o.clip, 0.0..=1000.0)
            .on_hover_text("Clip every row's gradient to this norm (0: off); robustness, not DP");
    });
}

/// A joined federation trains by its plan, not by the settings above.
fn plan_note_ui(ui: &mut Ui, t: &Training) {
    ui.weak(format!(
        "Federated training follows the plan: {} rounds × {} local epochs, {} at learning \
         rate {} ({}), batch {}, L2 {}, {}% held out for validation. The settings above are \
         for local training.",
        t.rounds,
        t.sgd.epochs,
        t.sgd.optimizer.kind,
        t.sgd.lr,
        t.sgd.optimizer.schedule.name(),
        t.sgd.batch_size,
        t.sgd.l2,
        t.validation_share * 100.0
    ));
}

/// Plain local training (worker side): a baseline without any federation.
fn local_training(
    ds: &Dataset,
    t: &Training,
    (architecture, gbdt): (Architecture, GbdtSettings),
    source: &str,
    p: &Progress<TrainMsg>,
) -> Result<ModelFile, AppError> {
    if architecture == Architecture::Gbdt {
        return local_trees(ds, &gbdt, source, p);
    }
    let cfg = t.local();
    let epochs = cfg.epochs.max(1);
    let settings = session::LocalTraining {
        architecture,
        train: cfg,
        validation_share: t.validation_share,
        missing: fedhe::data::MissingPolicy::default(),
        missing_tokens: fedhe::data::default_missing_tokens(),
        dp: None,
    };
    let run = session::train_local(ds, &settings, vec![source.to_string()], &mut |s| {
        p.send(TrainMsg::Epoch(EpochPoint::of(0, s)));
        p.send(TrainMsg::Progress(s.epoch as f32 / epochs as f32));
        if p.cancelled() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .map_err(|e| match e {
        SessionError::Cancelled => AppError::Stopped("Training"),
        e => AppError::Training(Box::new(e)),
    })?;
    if let Some(m) = &run.validation {
        p.send(TrainMsg::Status(format!(
            "Done: validation {} {:.3} on {} rows kept aside.",
            ds.label.kind().score_name(),
            m.score(),
            m.rows()
        )));
    }
    Ok(run.model)
}

/// Gradient-boosted trees on this file only (`model::gbdt::fit_dataset`,
/// what `fedhe train --model gbdt` runs): "tree k of N" as they grow.
fn local_trees(
    ds: &Dataset,
    gbdt: &GbdtSettings,
    source: &str,
    p: &Progress<TrainMsg>,
) -> Result<ModelFile, AppError> {
    let fit = fedhe::model::gbdt::fit_dataset(
        ds,
        gbdt,
        fedhe::data::default_missing_tokens(),
        vec![source.to_string()],
        &mut |done, of| {
            p.send(TrainMsg::Progress(done as f32 / of.max(1) as f32));
            p.send(TrainMsg::Status(format!("Tree {done} of {of} grown")));
            if p.cancelled() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )
    .map_err(|e| AppError::Model {
        action: "grow the trees",
        source: Box::new(e),
    })?;
    if p.cancelled() {
        return Err(AppError::Stopped("Training"));
    }
    p.send(TrainMsg::Status(format!(
        "Done: {} of {} trees; on the training rows {} {:.3}.",
        fit.run.ensemble.iterations(),
        gbdt.trees,
        ds.label.kind().score_name(),
        fit.training.score()
    )));
    Ok(fit.model)
}

/// Federated training (worker side): the library's session runs the plan's
/// rounds; every event becomes a [`TrainMsg`].
fn federated_training(
    site: JoinedSite,
    p: &Arc<Progress<TrainMsg>>,
) -> Result<ModelFile, AppError> {
    let mut joined = site.joined.clone();
    // A Stop also ends a retry's backoff (an aggregator gone away).
    joined.api = joined.api.clone().with_cancel(p.cancel_flag());
    let pn = p.clone();
    joined.set_notifier(Some(Arc::new(move |s: &str| {
        pn.send(TrainMsg::Status(s.to_string()));
    })));
    let t = joined.plan.training;
    let score_name = joined.plan.target().kind().score_name();
    let cancel = p.cancel_flag();
    if joined.plan.gbdt().is_some() {
        let run = joined
            .run_gbdt(
                &site.data,
                vec![site.source.clone()],
                &mut |e| report(e, (&t, true), score_name, p),
                &cancel,
            )
            .map_err(|e| match e {
                SessionError::Cancelled => AppError::Stopped("Training"),
                e => AppError::Federated(Box::new(e)),
            })?;
        return Ok(run.model);
    }
    let run = joined
        .run(
            &site.data,
            vec![site.source.clone()],
            &mut |e| report(e, (&t, false), score_name, p),
            &cancel,
        )
        .map_err(|e| match e {
            SessionError::Cancelled => AppError::Stopped("Training"),
            e => AppError::Federated(Box::new(e)),
        })?;
    p.send(TrainMsg::Status(super::done_words(
        &joined,
        run.outcome.rounds.len(),
    )));
    Ok(run.model)
}

/// One event of a federated run as messages: status, progress, points;
/// `trees`: the plan grows gradient-boosted trees.
fn report(
    e: &ClientEvent,
    (t, trees): (&Training, bool),
    score_name: &str,
    p: &Progress<TrainMsg>,
) {
    let total = (t.rounds.max(1) as f32) * (t.sgd.epochs.max(1) as f32);
    let epochs = t.sgd.epochs.max(1) as f32;
    match e {
        // Trees are not standardized: the round gives their bins' statistics.
        ClientEvent::Standardized { global_rows: g, .. } if trees => {
            p.send(TrainMsg::Status(format!(
                "Column statistics agreed over {g} rows of the federation; the bins, then tree 1…"
            )));
        }
        ClientEvent::Standardized { global_rows: g, .. } => {
            p.send(TrainMsg::Status(format!(
                "Standardization agreed over {g} rows of the federation; training round 1…"
            )));
        }
        ClientEvent::Epoch(pt) => {
            p.send(TrainMsg::Epoch(*pt));
            let done = (pt.round as f32 - 1.0) * epochs + pt.epoch as f32;
            p.send(TrainMsg::Progress((done / total).min(1.0)));
            if pt.epoch == t.sgd.epochs {
                p.send(TrainMsg::Status(format!(
                    "Round {}: update encrypted and sent; waiting for the aggregate…",
                    pt.round
                )));
            }
        }
        ClientEvent::Tree(r) => {
            p.send(TrainMsg::Progress(
                (r.iteration as f32 / r.iterations.max(1) as f32).min(1.0),
            ));
            let again = r.closed_note().map_or(String::new(), |n| format!("; {n}"));
            p.send(TrainMsg::Status(format!(
                "Tree {} of {} grown ({} rounds){again}",
                r.iteration, r.iterations, r.rounds
            )));
        }
        ClientEvent::Round(r) => {
            p.send(TrainMsg::Round(r.clone()));
            p.send(TrainMsg::Status(format!(
                "Round {} done: {} contributors ({}){}, validation {} {}",
                r.round,
                r.contributors,
                r.counted.join(", "),
                if r.masked { ", masked" } else { "" },
                score_name,
                r.validation_score.map_or("–".into(), |a| format!("{a:.3}"))
            )));
        }
    }
}
