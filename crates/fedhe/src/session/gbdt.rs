//! A gradient-boosted trees plan at one site: the hold-out, the rounds of
//! [`run_gbdt_loop`] over any exchange (encrypted and masked through an
//! aggregator, or the simulation's plaintext baseline), and the model file
//! of the trees every site ends with.

use std::sync::atomic::AtomicBool;

use crate::client::{ClientEvent, Exchange, GbdtOutcome, LoopError, run_gbdt_loop};
use crate::data::Dataset;
use crate::model::{Evaluation, ModelFile, Provenance};
use crate::plan::Plan;

use super::{Joined, RunRecord, SessionError, held_out, loop_config};

/// The result of a gradient-boosted trees run at one site.
#[derive(Debug, Clone)]
pub struct GbdtRun {
    /// The trees, ready for `fedhe predict` and the Predict tab.
    pub model: ModelFile,
    pub outcome: GbdtOutcome,
    /// Rows this site grew the trees on (after the validation hold-out).
    pub train_rows: usize,
    /// The trees on this site's held-out rows (with a validation share).
    pub validation: Option<Evaluation>,
}

/// The rounds of the gradient-boosted trees plan `plan` over `exchange`:
/// this site holds out `training.validation_share` of `data` (as every
/// kind does), grows the federation's trees on the rest, and writes them
/// as a model file. With `[evaluation]`, one more round pools the trees'
/// figures on every site's held-out rows and, with `evaluation.test`, on
/// every site's `test` rows (the federated test; in
/// `outcome.federated` and the model file's provenance).
pub fn run_gbdt_plan(
    exchange: &mut dyn Exchange,
    plan: &Plan,
    plan_fingerprint: &str,
    (data, test): (&Dataset, Option<&Dataset>),
    record: RunRecord,
    on_event: &mut dyn FnMut(&ClientEvent),
    cancel: &AtomicBool,
) -> Result<GbdtRun, SessionError> {
    let Some(settings) = plan.gbdt() else {
        return Err(SessionError::NotGbdt);
    };
    let t = &plan.training;
    let (train, held) = held_out(plan, data)?;
    let cfg = loop_config(
        plan,
        plan_fingerprint,
        t.sgd.seed,
        None,
        test,
        &record.site,
        Default::default(),
    );
    let outcome = run_gbdt_loop(exchange, &train, held.as_ref(), &cfg, on_event, cancel).map_err(
        |e| match e {
            LoopError::Cancelled => SessionError::Cancelled,
            e => e.into(),
        },
    )?;
    let mut provenance = Provenance::federated(
        record.kind,
        record.data_files,
        outcome.global_rows.round() as usize,
        cfg.train.clone(),
        plan.last_round(),
        plan_fingerprint.to_string(),
        record.server,
    );
    provenance.train = None;
    provenance.settings = serde_json::to_value(settings).unwrap_or_default();
    provenance.federated = outcome.federated.clone();
    let model = ModelFile::gbdt(
        outcome.encoder.clone(),
        plan.target(),
        outcome.target_scaling,
        outcome.ensemble.clone(),
        provenance,
    );
    let validation = match &held {
        Some(v) => Some(model.evaluate(&v.x, &v.y.to_vec())?),
        None => None,
    };
    Ok(GbdtRun {
        model,
        outcome,
        train_rows: train.rows(),
        validation,
    })
}

impl Joined {
    /// Runs the gradient-boosted trees plan's rounds on `data` (loaded with
    /// [`Connected::load_site`](super::Connected::load_site)), encrypted
    /// and masked through the aggregator.
    pub fn run_gbdt(
        &self,
        data: &Dataset,
        data_files: Vec<String>,
        on_event: &mut dyn FnMut(&ClientEvent),
        cancel: &AtomicBool,
    ) -> Result<GbdtRun, SessionError> {
        self.run_gbdt_tested(data, None, data_files, on_event, cancel)
    }

    /// [`run_gbdt`](Self::run_gbdt), with this site's test rows for the
    /// plan's federated test (`[evaluation] test = true`).
    pub fn run_gbdt_tested(
        &self,
        data: &Dataset,
        test: Option<&Dataset>,
        data_files: Vec<String>,
        on_event: &mut dyn FnMut(&ClientEvent),
        cancel: &AtomicBool,
    ) -> Result<GbdtRun, SessionError> {
        let mut ex = self.exchange();
        run_gbdt_plan(
            &mut ex,
            &self.plan,
            &self.plan_fingerprint,
            (data, test),
            RunRecord {
                kind: crate::model::FEDERATED,
                data_files,
                server: Some(self.server.clone()),
                site: self.id.clone(),
            },
            on_event,
            cancel,
        )
    }
}
