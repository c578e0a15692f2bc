//! Simulation of a gradient-boosted trees federation: the same sites as
//! [`simulate`](super::simulate) (an embedded aggregator and one thread per
//! site, encrypted and masked over loopback HTTP; or, with `plain`, the
//! in-memory plaintext exchange), each running the trees' rounds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use crate::client::{ClientEvent, TreeRecord, TreeTotals};
use crate::data::Dataset;
use crate::model::gbdt::GbdtSettings;
use crate::model::{Evaluation, ModelFile};
use crate::plan::{ModelKind, ModelSpec, Plan};
use crate::session::{self, GbdtRun, RunRecord, SessionError};

use super::{SimEvent, SimSite, SimulationConfig, SimulationError, load_sim_data, start_sites};

/// What a gradient-boosted trees simulation gives.
#[derive(Debug, Clone)]
pub struct GbdtSimulation {
    /// The first site's model file (every site's trees are the same:
    /// `same_at_every_site`).
    pub model: ModelFile,
    /// Whether every site ended with the same trees.
    pub same_at_every_site: bool,
    /// The trees on the simulation's test split (with one test file per
    /// site: on all of them together).
    pub test: Evaluation,
    /// With `[evaluation]` (`--federated-validation`, `--client-test`): the
    /// trees' pooled figures from the evaluation round (the first site's;
    /// every site's are the same).
    pub federated: Option<crate::model::FederatedFigures>,
    /// The first site's bins round (iteration 0) and iterations.
    pub trees: Vec<TreeRecord>,
    /// Training rows summed over the sites.
    pub train_rows: usize,
    pub total_ms: f64,
    /// The plan the simulation served.
    pub plan: Plan,
    pub plan_fingerprint: String,
    /// Every site's model file, in site order.
    pub sites: Vec<ModelFile>,
}

impl GbdtSimulation {
    /// The first site's iterations, summed.
    pub fn totals(&self) -> TreeTotals {
        TreeTotals::of(&self.trees)
    }
}

impl SimulationConfig {
    /// The plan of a gradient-boosted trees simulation: [`plan`](Self::plan)'s
    /// columns, quorum, masks and `[evaluation]` (the hold-out only with
    /// it: the simulation tests on its own split), with the trees'
    /// settings.
    pub fn gbdt_plan(&self, data: &Dataset, clients: usize, settings: GbdtSettings) -> Plan {
        let mut plan = self.plan(data, clients);
        plan.model = ModelSpec {
            kind: ModelKind::Gbdt,
            hidden: Vec::new(),
            gbdt: Some(settings),
        };
        plan.privacy.dp = None;
        plan
    }
}

/// Runs a gradient-boosted trees simulation with `settings` (the rest of
/// `cfg` as [`simulate`](super::simulate) reads it: data, masks, plain,
/// key parameters, round timeout); `on_event` sees every site's events.
pub fn simulate_gbdt(
    cfg: &SimulationConfig,
    settings: GbdtSettings,
    on_event: &mut dyn FnMut(&SimEvent),
    cancel: Arc<AtomicBool>,
) -> Result<GbdtSimulation, SimulationError> {
    let start = Instant::now();
    let (parts, test) = load_sim_data(&cfg.data, &cfg.csv)?;
    let site_tests = super::load_site_tests(&cfg.data, &cfg.csv)?;
    let n = parts.len();
    let plan = cfg.gbdt_plan(&test, n, settings);
    plan.validate("the simulation's settings")
        .map_err(|e| SimulationError::Plan(Box::new(e)))?;
    let plan_fp = plan.fingerprint().to_string();
    let done = run_sites(
        cfg,
        &plan,
        (&parts, site_tests.as_deref()),
        on_event,
        cancel,
    )?;
    let first = done.first().ok_or(SimulationError::Cancelled)?;
    let same = done
        .iter()
        .all(|r| r.model.ensemble == first.model.ensemble);
    let test_metrics = first
        .model
        .evaluate(&test.x, &test.y.to_vec())
        .map_err(|e| SimulationError::Client {
            index: 0,
            error: e.into(),
        })?;
    Ok(GbdtSimulation {
        model: first.model.clone(),
        same_at_every_site: same,
        test: test_metrics,
        federated: first.outcome.federated.clone(),
        trees: first.outcome.trees.clone(),
        train_rows: parts.iter().map(Dataset::rows).sum(),
        total_ms: start.elapsed().as_secs_f64() * 1e3,
        plan,
        plan_fingerprint: plan_fp,
        sites: done.into_iter().map(|r| r.model).collect(),
    })
}

/// Runs `plan` at one site per part (threads), with that site's test rows
/// when given, through the exchanges of `cfg` (plaintext, or encrypted and
/// masked through an embedded aggregator); every site's run, in order.
pub(super) fn run_sites(
    cfg: &SimulationConfig,
    plan: &Plan,
    (parts, tests): (&[Dataset], Option<&[Dataset]>),
    on_event: &mut dyn FnMut(&SimEvent),
    cancel: Arc<AtomicBool>,
) -> Result<Vec<GbdtRun>, SimulationError> {
    let plan_fp = plan.fingerprint().to_string();
    let ids: Vec<String> = (1..=parts.len()).map(|i| format!("client-{i}")).collect();
    let (sites, server) = start_sites(cfg, plan, &ids)?;
    let (tx, rx) = mpsc::channel::<(usize, ClientEvent)>();
    let runs: Vec<Option<Result<GbdtRun, SessionError>>> = std::thread::scope(|scope| {
        let mut handles = Vec::new();
        for (index, ((site, part), id)) in sites.into_iter().zip(parts).zip(&ids).enumerate() {
            let site_test = tests.and_then(|t| t.get(index));
            let tx = tx.clone();
            let cancel = cancel.clone();
            let plan_fp = &plan_fp;
            let files = cfg.data_files();
            let thread = std::thread::Builder::new()
                .name(format!("gbdt-site-{}", index + 1))
                .spawn_scoped(scope, move || {
                    let mut send = |e: &ClientEvent| {
                        // The receiver outlives the sites.
                        let _ = tx.send((index, e.clone()));
                    };
                    let run = match site {
                        SimSite::Plain(mut ex) => session::run_gbdt_plan(
                            &mut ex,
                            plan,
                            plan_fp,
                            (part, site_test),
                            RunRecord {
                                kind: crate::model::SIMULATED,
                                data_files: files,
                                server: None,
                                site: id.clone(),
                            },
                            &mut send,
                            &cancel,
                        ),
                        SimSite::Joined(j) => {
                            j.run_gbdt_tested(part, site_test, files, &mut send, &cancel)
                        }
                    };
                    if run.is_err() {
                        // One site failing stops the others.
                        cancel.store(true, Ordering::Relaxed);
                    }
                    run
                });
            handles.push(thread);
        }
        drop(tx);
        for (index, event) in rx.iter() {
            on_event(&SimEvent::Client { index, event });
        }
        handles
            .into_iter()
            .map(|h| h.ok().and_then(|h| h.join().ok()))
            .collect()
    });
    if let Some(s) = server {
        s.shutdown();
    }
    let mut done = Vec::new();
    for (index, r) in runs.into_iter().enumerate() {
        match r {
            None => return Err(SimulationError::Panicked { index }),
            Some(Ok(run)) => done.push(run),
            Some(Err(SessionError::Cancelled)) => return Err(SimulationError::Cancelled),
            Some(Err(error)) => return Err(SimulationError::Client { index, error }),
        }
    }
    Ok(done)
}
