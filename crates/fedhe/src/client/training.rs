//! The training rounds: each starts from the global model, trains locally
//! (DP-SGD within the site's budget), contributes the FedAvg update, takes
//! the new global model from the sum and evaluates it on the site's
//! validation rows.

use std::ops::ControlFlow;

use ndarray::{Array1, Array2};

use crate::data::{Dataset, Encoder, Standardizer};
use crate::model::{Evaluation, Head, Model, ModelError, ServerState, TargetScaling, TrainConfig};

use super::budget::Spending;
use super::error::LoopError;
use super::exchange::RoundSum;
use super::fedeval::EvalSums;
use super::report::{ClientEvent, ClientOutcome, ClientRound, EpochPoint};
use super::round_loop::{LoopConfig, Next, RoundCtx, RoundKind};
use super::shares::{fedavg, shared_update, site_share, weight_unit};
use super::statistics::Prepared;
use crate::model::FederatedFigures;

/// `cfg.rounds` training rounds; leaves the run's [`ClientOutcome`].
pub(crate) struct TrainingRounds<'a> {
    cfg: &'a LoopConfig,
    prepared: Prepared,
    /// The site's training rows, preprocessed.
    x: Array2<f64>,
    y: Array1<f64>,
    /// Validation rows (raw) and their labels.
    hold: Option<(Array2<f64>, Vec<f64>)>,
    global: Box<dyn Model>,
    /// This site's FedAvg share.
    share: f64,
    /// The largest parameter magnitude this site's update can carry.
    param_limit: Option<f64>,
    spending: Spending,
    /// The next training round, 1-based.
    k: u64,
    /// What this site sent in the round being built.
    sent: Sent,
    rounds: Vec<ClientRound>,
    /// Every site is out of its privacy budget.
    exhausted: bool,
    /// With `[evaluation]`: how the validation sums are laid out, and what
    /// they told so far.
    eval: Option<EvalSums>,
    fed: FederatedFigures,
    /// Early stopping (or, with evaluation, every site out of budget): the
    /// remaining rounds carry zeros, so that the aggregator's rounds close
    /// up to the plan's last.
    stopped: bool,
    /// The server optimizer's state (the same at every site).
    server: ServerState,
}

/// What a site sends in a training round.
#[derive(Clone, Copy)]
enum Sent {
    /// Its update after local training (with the last epoch's loss).
    Trained { local_loss: Option<f64> },
    /// An empty update: it is out of its privacy budget.
    Empty,
}

impl<'a> TrainingRounds<'a> {
    /// Training on `site`'s rows (and validation on `held`) with the
    /// federation's preprocessing, from the plan's initial model.
    pub(crate) fn new(
        site: &Dataset,
        held: Option<&Dataset>,
        prepared: Prepared,
        cfg: &'a LoopConfig,
        value_bound: Option<f64>,
        limb_bits: i32,
    ) -> Result<Self, LoopError> {
        let x = prepared
            .scaler
            .transformed(&prepared.encoder.transform(&site.x));
        let y = match &prepared.target_scaling {
            Some(t) => site.y.mapv(|v| t.scale(v)),
            None => site.y.clone(),
        };
        let head = Head::for_target(&site.label);
        let eval = cfg.evaluation.map(|plan| EvalSums {
            head,
            plan,
            limb_bits,
            bound: value_bound,
        });
        let features = prepared.encoder.output_len();
        let global = crate::model::build(&cfg.architecture, features, head, cfg.init_seed)?;
        let share = site_share(site.rows(), weight_unit(prepared.global_rows));
        // DP-SGD over every round of this site's training.
        let t = &cfg.train;
        let spending = Spending::new(
            cfg.dp.as_ref(),
            site.rows(),
            t.batch_size,
            cfg.rounds,
            t.epochs,
        )?
        .with_secret(cfg.dp_secret.clone());
        Ok(TrainingRounds {
            // The update carries `share × parameter`.
            param_limit: value_bound.map(|b| b / share.max(f64::MIN_POSITIVE)),
            cfg,
            prepared,
            x,
            y,
            hold: held.map(|h| (h.x.clone(), h.y.to_vec())),
            global,
            share,
            spending,
            k: 1,
            sent: Sent::Empty,
            rounds: Vec::new(),
            exhausted: false,
            eval,
            fed: FederatedFigures {
                validation: Vec::new(),
                best_round: None,
                stopped_after: None,
                last_round: 0,
                test: None,
                best_params: None,
            },
            stopped: false,
            server: ServerState::default(),
        })
    }

    fn len_of_update(&self) -> usize {
        self.params() + 1 + self.eval.map_or(0, |e| e.len())
    }

    /// This site's validation sums of the global model it starts the round
    /// from (empty without `[evaluation]`).
    fn validation_sums(&self) -> Result<Vec<f64>, LoopError> {
        let Some(e) = &self.eval else {
            return Ok(Vec::new());
        };
        let Some((hx, hy)) = &self.hold else {
            return e.encode("validation", &[], None);
        };
        let p = &self.prepared;
        let pred = predict_raw(
            &*self.global,
            &p.encoder,
            &p.scaler,
            p.target_scaling.as_ref(),
            hx,
        );
        e.encode("validation", hy, Some(&pred))
    }

    /// Splits the validation sums off a round's sum and reads them: the
    /// pooled figures of the model this round started from (`before`'s
    /// parameters), recorded for the best round and early stopping.
    fn take_validation(
        &mut self,
        sum: &mut RoundSum,
        before: &[f64],
    ) -> Result<Option<Evaluation>, LoopError> {
        let Some(e) = self.eval else {
            return Ok(None);
        };
        let at = self.params() + 1;
        if sum.values.len() != at + e.len() {
            return Err(super::error::SumError::EvaluationLength {
                got: sum.values.len(),
                want: at + e.len(),
            }
            .into());
        }
        let block = sum.values.split_off(at);
        let Some(figures) = e.decode(&block)? else {
            return Ok(None);
        };
        // Round k's sums are of model k − 1.
        self.fed.record(self.k - 1, figures.clone(), before);
        if let Some(es) = e.plan.early_stopping
            && self.fed.since_best(self.k - 1) >= es.patience
        {
            self.stop();
        }
        Ok(Some(figures))
    }

    /// No more training: this round's model is the last.
    fn stop(&mut self) {
        if !self.stopped {
            self.stopped = true;
            self.fed.stopped_after = Some(self.k);
        }
    }

    fn params(&self) -> usize {
        self.global.params().len()
    }

    /// The global model from a round's sum.
    fn follow(&mut self, sum: &RoundSum) -> Result<(Vec<f64>, f64), LoopError> {
        let (mean, total_share) = fedavg(sum, self.params())?;
        Ok((self.server_step(&mean)?, total_share))
    }

    /// The server optimizer's step from the round's `mean` (every site
    /// takes the same), then its state saved. A state an earlier run saved
    /// after this round is taken as it is (a resumed site goes on exactly
    /// where it stopped). Returns the new global model.
    fn server_step(&mut self, mean: &[f64]) -> Result<Vec<f64>, LoopError> {
        let k = self.k;
        let cp = &self.cfg.checkpoint;
        let mut global = self.global.params().to_vec();
        self.cfg
            .train
            .optimizer
            .server
            .step(&mut self.server, k, &mut global, mean);
        if let Some(saved) = cp.resume.as_ref().filter(|s| s.round == k) {
            if saved.global.len() != global.len() {
                return Err(LoopError::CheckpointShape {
                    round: k,
                    got: saved.global.len(),
                    params: global.len(),
                });
            }
            self.server = saved.clone();
            global.clone_from(&saved.global);
        }
        self.global.set_params(&global)?;
        if let Some(save) = &cp.save {
            self.server.global.clone_from(&global);
            save(&self.server).map_err(LoopError::Checkpoint)?;
        }
        Ok(global)
    }

    /// Loss and score of the global model on the validation rows.
    fn validate(&self) -> (Option<f64>, Option<f64>) {
        let Some((hx, hy)) = &self.hold else {
            return (None, None);
        };
        let p = &self.prepared;
        let e = evaluate_raw(
            &*self.global,
            &p.encoder,
            &p.scaler,
            p.target_scaling.as_ref(),
            hx,
            hy,
        );
        (Some(e.loss()), Some(e.score()))
    }

    fn finish_round(&mut self, rec: ClientRound, ctx: &mut RoundCtx<'_>) {
        ctx.emit(&ClientEvent::Round(rec.clone()));
        self.rounds.push(rec);
        self.k += 1;
    }

    fn outcome(self, cancelled: bool) -> ClientOutcome {
        let p = self.prepared;
        let spent = !cancelled;
        ClientOutcome {
            privacy: self.spending.record().filter(|_| spent),
            stopped: self.spending.stopped().filter(|_| spent),
            model: self.global,
            encoder: p.encoder,
            scaler: p.scaler,
            target_scaling: p.target_scaling,
            global_rows: p.global_rows,
            rounds: self.rounds,
            cancelled,
            federated: self.eval.map(|_| self.fed),
        }
    }

    /// Local training from the global model for round `k`; the update.
    fn train_locally(&mut self, ctx: &mut RoundCtx<'_>) -> Result<Vec<f64>, LoopError> {
        let k = self.k;
        let mut local = self.global.clone();
        let base = &self.cfg.train;
        // The schedule runs over the rounds; each round at one rate.
        let mut tcfg = TrainConfig {
            lr: base.optimizer.schedule.lr(base.lr, k, self.cfg.rounds),
            seed: round_seed(base.seed, k),
            dp: self.spending.dp_for(k),
            ..base.clone()
        };
        tcfg.optimizer.schedule = crate::model::Schedule::Constant;
        let mut last_loss = None;
        let mut on_epoch = |s: &crate::model::EpochStats| {
            last_loss = Some(s.loss);
            ctx.emit(&ClientEvent::Epoch(EpochPoint::of(k, s)));
            if ctx.cancelled() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let trained = crate::model::train_within(
            &mut *local,
            &self.x,
            &self.y,
            &tcfg,
            self.param_limit,
            &mut on_epoch,
        );
        let summary = match trained {
            Err(ModelError::Diverged { epoch, lr, cause }) => {
                return Err(LoopError::Diverged {
                    site: self.cfg.site.clone(),
                    round: k,
                    epoch,
                    lr,
                    cause,
                });
            }
            r => r?,
        };
        if ctx.cancelled() {
            return Err(LoopError::Cancelled);
        }
        self.spending.add(summary.dp_steps);
        self.sent = Sent::Trained {
            local_loss: last_loss,
        };
        // FedAvg: the parameters times this site's share of the rows, and
        // the share itself; the sums of both give the weighted mean exactly.
        Ok(shared_update(local.params(), self.share))
    }
}

impl RoundKind for TrainingRounds<'_> {
    type Output = ClientOutcome;

    fn next(self, ctx: &RoundCtx<'_>) -> Next<Self> {
        if self.k > self.cfg.rounds || self.exhausted {
            Next::Done(self.outcome(false))
        } else if ctx.cancelled() {
            Next::Done(self.outcome(true))
        } else {
            Next::Round(self)
        }
    }

    fn len(&self) -> usize {
        self.len_of_update()
    }

    fn build(&mut self, ctx: &mut RoundCtx<'_>) -> Result<Vec<f64>, LoopError> {
        if self.stopped {
            // Stopped early: zeros keep the aggregator's rounds closing.
            self.sent = Sent::Empty;
            return Ok(vec![0.0; self.len_of_update()]);
        }
        let validation = self.validation_sums()?;
        // The privacy budget: stop before a round would pass it.
        let mut update = if self.spending.allows(self.k)? {
            self.train_locally(ctx)?
        } else {
            // Out of budget: keep the round's quorum with an empty update
            // (share 0: it adds nothing and costs no privacy) and follow the
            // global model.
            self.sent = Sent::Empty;
            vec![0.0; self.params() + 1]
        };
        update.extend(validation);
        Ok(update)
    }

    fn take(&mut self, mut sum: RoundSum, ctx: &mut RoundCtx<'_>) -> Result<(), LoopError> {
        if self.stopped {
            self.k += 1;
            return Ok(());
        }
        let before = self.global.params().to_vec();
        let federated_validation = self.take_validation(&mut sum, &before)?.map(Box::new);
        let Sent::Trained { local_loss } = self.sent else {
            // An empty update: stop when no site trains any more.
            // A sum whose total share is zero: every site is out of budget.
            let Ok((mean, total)) = fedavg(&sum, self.params()) else {
                if self.eval.is_some() {
                    // The evaluation round comes at the plan's last round.
                    self.stop();
                    self.k += 1;
                } else {
                    self.exhausted = true;
                }
                return Ok(());
            };
            self.fed.last_round = self.k;
            let params = self.server_step(&mean)?;
            let rec = ClientRound {
                epsilon: self.spending.epsilon(),
                federated_validation,
                ..ClientRound::of(self.k, sum, params, total)
            };
            self.finish_round(rec, ctx);
            return Ok(());
        };
        let (params, total) = self.follow(&sum)?;
        self.fed.last_round = self.k;
        let (validation_loss, validation_score) = self.validate();
        let rec = ClientRound {
            local_loss,
            validation_loss,
            validation_score,
            epsilon: self.spending.epsilon(),
            federated_validation,
            ..ClientRound::of(self.k, sum, params, total)
        };
        self.finish_round(rec, ctx);
        Ok(())
    }

    /// A round that closed while this client was away is taken as
    /// published, without training for it.
    fn take_published(
        &mut self,
        mut sum: RoundSum,
        ctx: &mut RoundCtx<'_>,
    ) -> Result<(), LoopError> {
        if self.stopped {
            self.k += 1;
            return Ok(());
        }
        self.spending.charge_round();
        let before = self.global.params().to_vec();
        let federated_validation = self.take_validation(&mut sum, &before)?.map(Box::new);
        let (mean, total) = match fedavg(&sum, self.params()) {
            Ok(v) => v,
            // Every site out of budget: with evaluation, the rounds go on
            // with zeros up to the evaluation round.
            Err(_) if self.eval.is_some() => {
                self.stop();
                self.k += 1;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let params = self.server_step(&mean)?;
        self.fed.last_round = self.k;
        let rec = ClientRound {
            contributed: false,
            federated_validation,
            ..ClientRound::of(self.k, sum, params, total)
        };
        self.finish_round(rec, ctx);
        Ok(())
    }
}

/// Seed of local training in round `round`.
pub fn round_seed(seed: u64, round: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(round.wrapping_mul(0xD1B5_4A32_D192_ED03))
}

/// Metrics of `model` on raw rows `x` with labels `y` (class indices, or
/// values in the target's unit).
pub fn evaluate_raw(
    model: &dyn Model,
    encoder: &Encoder,
    scaler: &Standardizer,
    target_scaling: Option<&TargetScaling>,
    x: &Array2<f64>,
    y: &[f64],
) -> Evaluation {
    let p = predict_raw(model, encoder, scaler, target_scaling, x);
    Evaluation::compute(model.head(), y, &p)
}

/// Predictions of `model` on raw rows `x` (a regression's in the target's
/// unit).
pub(crate) fn predict_raw(
    model: &dyn Model,
    encoder: &Encoder,
    scaler: &Standardizer,
    target_scaling: Option<&TargetScaling>,
    x: &Array2<f64>,
) -> Array2<f64> {
    let mut p = crate::model::predictions(model, &scaler.transformed(&encoder.transform(x)));
    if let Some(t) = target_scaling {
        p.mapv_inplace(|z| t.unscale(z));
    }
    p
}
