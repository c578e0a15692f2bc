//! Simulation: an embedded aggregator plus N client threads speaking real
//! HTTP on loopback with real encryption — or, with `plain`, the same client
//! loop with an in-memory plaintext FedAvg exchange (the baseline).

mod gbdt;
mod gbdt_bench;

pub use gbdt::{GbdtSimulation, simulate_gbdt};
pub use gbdt_bench::{
    GbdtBench, GbdtBenchFiles, run_gbdt_bench, synthetic_binary, write_gbdt_bench_files,
};

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::client::{ClientEvent, ClientOutcome, Exchange, ExchangeCost, LoopError, RoundSum};
use crate::crypto::{CryptoError, ParamSet, SecretKey};
use crate::data::split::{Partition, partition, stratified_split};
use crate::data::{CsvOptions, Dataset, RawColumn, Standardizer, Target, TargetSpec, load_csv};
use crate::model::{Architecture, Evaluation, Head, Model, TargetScaling, TrainConfig};
use crate::plan::{ModelSpec, Plan, Quorum, Training};
use crate::server::{EmbeddedServer, ServerConfig};
use crate::session::{self, ConnectOptions, Joined, RunRecord, SessionError};

/// Where the clients' data comes from.
#[derive(Debug, Clone)]
pub enum SimData {
    /// One CSV, split into a stratified test set and `clients` parts.
    Split {
        data: PathBuf,
        clients: usize,
        partition: Partition,
        test_fraction: f64,
        seed: u64,
    },
    /// One CSV per client and a test CSV.
    Files {
        clients: Vec<PathBuf>,
        test: PathBuf,
    },
    /// One CSV per client and one test CSV per client (in the same order):
    /// the federated test pools them under encryption; the per-round table
    /// shows the global model on all of them together.
    SiteTests {
        clients: Vec<PathBuf>,
        tests: Vec<PathBuf>,
    },
}

#[derive(Debug, Clone)]
pub struct SimulationConfig {
    pub data: SimData,
    pub csv: CsvOptions,
    /// Training rounds.
    pub rounds: u64,
    /// Local training per round (epochs, lr, batch size, L2, seed).
    pub train: TrainConfig,
    /// The model every client trains.
    pub architecture: Architecture,
    /// DP-SGD in every client's local training.
    pub dp: Option<crate::privacy::DpSettings>,
    /// Pairwise masks (the plan's `privacy.masks`; they apply with 3 or
    /// more clients).
    pub masks: bool,
    /// Plaintext FedAvg instead of encryption + HTTP.
    pub plain: bool,
    pub params: ParamSet,
    /// Longest wait for one round.
    pub round_timeout: Duration,
    /// Encrypted federated evaluation (the plan's `[evaluation]`): the
    /// sites then hold out the plan's default validation share.
    pub evaluation: Option<crate::plan::FedEvaluation>,
}

/// One training round of a simulation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundRecord {
    pub round: u64,
    pub plain: bool,
    pub contributors: u32,
    /// Global model on the test set: log-loss (RMSE for regression) and the
    /// task's score (accuracy, or R²).
    pub global_loss: f64,
    pub global_score: f64,
    /// Ciphertext bytes uploaded / downloaded by all clients together.
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// Mean per client.
    pub encrypt_ms: f64,
    /// Server time adding the updates of this round.
    pub aggregate_ms: f64,
    /// Mean per client.
    pub decrypt_ms: f64,
    /// Wall time since the simulation started.
    pub elapsed_ms: f64,
    /// The global model's flat parameters.
    pub params: Vec<f64>,
    /// With DP-SGD: the largest ε any client has spent so far.
    #[serde(default)]
    pub epsilon: Option<f64>,
    /// Every client's update of this round was pairwise-masked.
    #[serde(default)]
    pub masked: bool,
    /// With federated evaluation: the pooled validation loss and score of
    /// the global model this round started from (round − 1's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federated_loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federated_score: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct SimulationResult {
    pub records: Vec<RoundRecord>,
    pub model: Box<dyn Model>,
    /// The preprocessing the clients agreed on.
    pub encoder: crate::data::Encoder,
    pub scaler: Standardizer,
    pub target_scaling: Option<TargetScaling>,
    /// DP-SGD's spending on the first client's rows, when on.
    pub privacy: Option<crate::privacy::PrivacyRecord>,
    /// Why training stopped before the last round (the privacy budget).
    pub stopped: Option<String>,
    /// The global model on the test split.
    pub test: Evaluation,
    pub feature_names: Vec<String>,
    /// The task and classes of the data (for saving a model file).
    pub label: Target,
    /// Training rows summed over the clients.
    pub train_rows: usize,
    pub total_ms: f64,
    pub standardization: ExchangeCost,
    /// Fingerprint of the plan the simulation served.
    pub plan_fingerprint: String,
    /// With federated evaluation: the pooled figures (the first site's;
    /// every site's are the same).
    pub federated: Option<crate::model::FederatedFigures>,
    /// The per-site test files' rows, when given (`SimData::SiteTests`).
    pub site_tests: Option<usize>,
}

impl SimulationConfig {
    /// The plan a simulation serves: the data's columns and classes, these
    /// training settings, a quorum of every simulated client (masks only
    /// with three or more).
    pub fn plan(&self, data: &Dataset, clients: usize) -> Plan {
        let numeric: Vec<String> = data
            .columns
            .iter()
            .filter(|c| matches!(c, RawColumn::Numeric { .. }))
            .map(|c| c.name().to_string())
            .collect();
        let mut plan = Plan::for_target(&data.label, numeric, Vec::new());
        plan.columns.categorical = data
            .columns
            .iter()
            .filter_map(|c| match c {
                RawColumn::Categorical {
                    name, categories, ..
                } => Some(crate::plan::CategoricalColumn {
                    name: name.clone(),
                    categories: categories.clone(),
                }),
                RawColumn::Numeric { .. } => None,
            })
            .collect();
        // Categories proposed from a file (no plan) take "(other)", as
        // `fedhe train`'s do: a file scored later may hold new values.
        if data
            .columns
            .iter()
            .any(|c| matches!(c, RawColumn::Categorical { other: true, .. }))
        {
            plan.preprocessing.unknown_categories = crate::plan::UnknownCategories::Other;
        }
        if !self.csv.missing_tokens.is_empty() {
            plan.preprocessing.missing = self.csv.missing_tokens.clone();
        }
        plan.name = "fedhe simulate".into();
        plan.model = ModelSpec::of(&self.architecture);
        plan.privacy.dp = self.dp;
        // Masks need three members: with fewer clients the simulated plan
        // says masks = false (a pair's masks would hide nothing).
        plan.privacy.masks = self.masks && clients >= crate::plan::MIN_MASKED_MEMBERS;
        plan.training = Training {
            rounds: self.rounds,
            sgd: self.train.sgd(),
            // The simulation evaluates on its own test split; federated
            // evaluation validates on each site's held-out rows.
            validation_share: if self.evaluation.is_some() {
                Training::default().validation_share
            } else {
                0.0
            },
        };
        plan.evaluation = self.evaluation;
        plan.quorum = Quorum {
            min_clients: clients.max(1),
            roster: Vec::new(),
            round_deadline_secs: self.round_timeout.as_secs().max(1),
            allow_single_contributor: clients <= 1,
        };
        plan
    }

    fn data_files(&self) -> Vec<String> {
        match &self.data {
            SimData::Split { data, .. } => vec![data.display().to_string()],
            SimData::Files { clients, .. } | SimData::SiteTests { clients, .. } => {
                clients.iter().map(|c| c.display().to_string()).collect()
            }
        }
    }
}

impl SimulationResult {
    /// The federated model as a self-describing model file.
    pub fn model_file(&self, cfg: &SimulationConfig) -> crate::model::ModelFile {
        let mut file = crate::model::ModelFile::new(
            self.encoder.clone(),
            self.scaler.clone(),
            self.label.clone(),
            self.target_scaling,
            &*self.model,
            crate::model::Provenance::federated(
                crate::model::SIMULATED,
                cfg.data_files(),
                self.train_rows,
                cfg.train.clone(),
                cfg.rounds,
                self.plan_fingerprint.clone(),
                None,
            ),
        );
        file.provenance.privacy = self.privacy;
        file.provenance.federated = self.federated.clone().map(|mut f| {
            f.best_params = None;
            f
        });
        file
    }
}

/// Progress of a simulation.
#[derive(Debug, Clone)]
pub enum SimEvent {
    Client { index: usize, event: ClientEvent },
    Round(RoundRecord),
}

impl From<crate::server::StartError> for SimulationError {
    fn from(e: crate::server::StartError) -> Self {
        SimulationError::Server(e)
    }
}

impl From<crate::data::DataError> for SimulationError {
    fn from(e: crate::data::DataError) -> Self {
        SimulationError::Data(Box::new(e))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimulationError {
    #[error("data: {0}")]
    Data(Box<crate::data::DataError>),
    #[error("client-{}: {error}", .index + 1)]
    Client { index: usize, error: SessionError },
    #[error("client-{}: client thread panicked", .index + 1)]
    Panicked { index: usize },
    #[error("aggregator: {0}")]
    Server(crate::server::StartError),
    #[error("key generation: {0}")]
    KeyGeneration(CryptoError),
    #[error("{0}")]
    Plan(Box<crate::plan::PlanError>),
    #[error("no client files")]
    NoClientFiles,
    #[error("no test file")]
    NoTestFile,
    #[error("cancelled")]
    Cancelled,
}

/// Loads and splits the data: (per-client training sets, test set).
pub fn load_sim_data(
    data: &SimData,
    csv: &CsvOptions,
) -> Result<(Vec<Dataset>, Dataset), SimulationError> {
    match data {
        SimData::Split {
            data,
            clients,
            partition: how,
            test_fraction,
            seed,
        } => {
            let ds = load_csv(data, csv)?.dataset;
            let (train, test) = stratified_split(&ds, *test_fraction, *seed)?;
            let parts = partition(&train, *clients, *how, *seed)?;
            Ok((parts, test))
        }
        SimData::Files { clients, test } => {
            let mut all = load_files(clients, std::slice::from_ref(test), csv)?;
            let test = all.pop().ok_or(SimulationError::NoTestFile)?;
            Ok((all, test))
        }
        SimData::SiteTests { clients, tests } => {
            let mut all = load_files(clients, tests, csv)?;
            let tests = all.split_off(clients.len());
            Ok((all, pooled(&tests).ok_or(SimulationError::NoTestFile)?))
        }
    }
}

/// Each site's own test rows (`SimData::SiteTests`), read as
/// [`load_sim_data`] reads them.
pub fn load_site_tests(
    data: &SimData,
    csv: &CsvOptions,
) -> Result<Option<Vec<Dataset>>, SimulationError> {
    let SimData::SiteTests { clients, tests } = data else {
        return Ok(None);
    };
    let mut all = load_files(clients, tests, csv)?;
    Ok(Some(all.split_off(clients.len())))
}

/// Rows of every dataset in one (same columns after harmonizing).
fn pooled(parts: &[Dataset]) -> Option<Dataset> {
    let first = parts.first()?;
    let mut x = first.x.clone();
    let mut y = first.y.to_vec();
    for p in &parts[1..] {
        x.append(ndarray::Axis(0), p.x.view()).ok()?;
        y.extend(p.y.iter());
    }
    Some(Dataset {
        x,
        y: ndarray::Array1::from(y),
        ..first.clone()
    })
}

/// The client files and then `extra`, read with the first file's columns
/// by name, the task of all together, their categories harmonized.
fn load_files(
    clients: &[PathBuf],
    extra: &[PathBuf],
    csv: &CsvOptions,
) -> Result<Vec<Dataset>, SimulationError> {
    if clients.is_empty() {
        return Err(SimulationError::NoClientFiles);
    }
    let first = load_csv(&clients[0], csv)?.dataset;
    let mut opts = csv.clone();
    // Every file is read with the first file's columns, by name.
    opts.features = crate::data::FeatureSelection::Named(
        first
            .columns
            .iter()
            .filter(|c| matches!(c, RawColumn::Numeric { .. }))
            .map(|c| c.name().to_string())
            .collect(),
    );
    // Categories are discovered per file, then unified.
    opts.categorical = first
        .columns
        .iter()
        .filter_map(|c| match c {
            RawColumn::Categorical { name, other, .. } => Some(crate::data::CategoricalSpec {
                name: name.clone(),
                categories: None,
                other: *other,
            }),
            RawColumn::Numeric { .. } => None,
        })
        .collect();
    // The task comes from all files together: a site may hold one
    // class, or two of three.
    let mut paths: Vec<&PathBuf> = clients.iter().collect();
    paths.extend(extra);
    opts.target = task_of_files(&paths, &opts, &first)?;
    if let (TargetSpec::Binary, Target::Binary(m)) = (&opts.target, &first.label) {
        opts.mapping = Some(m.clone());
    }
    let mut all = Vec::with_capacity(paths.len());
    for p in &paths {
        all.push(load_csv(p, &opts)?.dataset);
    }
    crate::data::harmonize_columns(&mut all);
    Ok(all)
}

/// How every file of a simulation reads its label: the first file's task,
/// with the classes of all files together (a site may hold one class, or
/// two of three).
fn task_of_files(
    paths: &[&PathBuf],
    opts: &CsvOptions,
    first: &Dataset,
) -> Result<TargetSpec, SimulationError> {
    if let Target::Regression { .. } = first.label {
        return Ok(TargetSpec::Numeric);
    }
    if let (Target::Binary(_), false) = (&first.label, matches!(opts.target, TargetSpec::Auto)) {
        return Ok(TargetSpec::Binary);
    }
    let mut values: Vec<String> = first.label.classes();
    for p in paths.iter().skip(1) {
        let probe = CsvOptions {
            target: TargetSpec::Classes(None),
            ..opts.clone()
        };
        match load_csv(p, &probe) {
            Ok(l) => {
                for c in l.dataset.label.classes() {
                    if !values.contains(&c) {
                        values.push(c);
                    }
                }
            }
            // Discovery refuses a file of one class; that class still counts.
            Err(crate::data::DataError::SingleClass { value, .. }) => {
                if !values.contains(&value) {
                    values.push(value);
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    if values.len() == 2 && matches!(first.label, Target::Binary(_)) {
        return Ok(TargetSpec::Binary);
    }
    crate::data::sort_classes(&mut values);
    Ok(TargetSpec::Classes(Some(values)))
}

/// Plaintext FedAvg: contributions of each round, summed in client order
/// once all have arrived.
/// Per client: its values.
type Contributions = Vec<Option<Vec<f64>>>;

struct PlainHub {
    clients: usize,
    rounds: Mutex<std::collections::BTreeMap<u64, Contributions>>,
    cv: Condvar,
}

/// One simulated site: the plaintext exchange, or a joined session.
enum SimSite {
    Plain(PlainExchange),
    Joined(Box<Joined>),
}

struct PlainExchange {
    hub: Arc<PlainHub>,
    index: usize,
    timeout: Duration,
}

/// The plaintext exchange's own failure.
#[derive(Debug, thiserror::Error)]
enum PlainError {
    #[error("plain round {0} timed out")]
    TimedOut(u64),
}

impl Exchange for PlainExchange {
    fn contribute(
        &mut self,
        round: u64,
        values: &[f64],
        cancel: &AtomicBool,
    ) -> Result<RoundSum, LoopError> {
        let hub = &self.hub;
        let mut g = hub.rounds.lock().unwrap_or_else(|p| p.into_inner());
        let empty = || vec![None; hub.clients];
        g.entry(round).or_insert_with(empty)[self.index] = Some(values.to_vec());
        hub.cv.notify_all();
        let start = Instant::now();
        loop {
            let slots = g.entry(round).or_insert_with(empty);
            if slots.iter().all(Option::is_some) {
                let mut sum = vec![0.0; values.len()];
                for v in slots.iter().flatten() {
                    for (s, x) in sum.iter_mut().zip(v) {
                        *s += x;
                    }
                }
                return Ok(RoundSum {
                    values: sum,
                    contributors: hub.clients as u32,
                    contributed: true,
                    counted: Vec::new(),
                    cost: ExchangeCost::default(),
                    masked: false,
                });
            }
            if cancel.load(Ordering::Relaxed) {
                return Err(LoopError::Cancelled);
            }
            if start.elapsed() > self.timeout {
                return Err(LoopError::Exchange(Box::new(PlainError::TimedOut(round))));
            }
            g = hub
                .cv
                .wait_timeout(g, Duration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// Per client: the plaintext exchange, or a session joined to an embedded
/// aggregator (returned too).
fn start_sites(
    cfg: &SimulationConfig,
    plan: &Plan,
    ids: &[String],
) -> Result<(Vec<SimSite>, Option<EmbeddedServer>), SimulationError> {
    let n = ids.len();
    let mut sites: Vec<SimSite> = Vec::new();
    if cfg.plain {
        let hub = Arc::new(PlainHub {
            clients: n,
            rounds: Mutex::new(Default::default()),
            cv: Condvar::new(),
        });
        for index in 0..n {
            sites.push(SimSite::Plain(PlainExchange {
                hub: hub.clone(),
                index,
                timeout: cfg.round_timeout,
            }));
        }
        return Ok((sites, None));
    }
    let key = SecretKey::generate_for(cfg.params, crate::crypto::max_clients_for(n), None)
        .map_err(SimulationError::KeyGeneration)?;
    let key = Arc::new(key);
    let srv = EmbeddedServer::start(ServerConfig {
        public_key: Some(key.public()),
        plan: Some(plan.clone()),
        max_len: Some(plan.max_update_len()),
        auto_aggregate: true,
        ..ServerConfig::default()
    })?;
    let never = AtomicBool::new(false);
    for (index, id) in ids.iter().enumerate() {
        let client_err = |error: SessionError| SimulationError::Client { index, error };
        let connected = session::connect(
            &ConnectOptions {
                server: srv.url().to_string(),
                ca_cert_pem: None,
                wait: Duration::from_secs(30),
            },
            key.clone(),
            None,
            &never,
        )
        .map_err(client_err)?;
        let j = connected
            .join(id, &format!("Simulated client {}", index + 1), None)
            .map_err(client_err)?;
        sites.push(SimSite::Joined(Box::new(j)));
    }
    Ok((sites, Some(srv)))
}

/// Runs a simulation; `on_event` sees every client event and every finished
/// round. Setting `cancel` stops all clients.
pub fn simulate(
    cfg: &SimulationConfig,
    on_event: &mut dyn FnMut(&SimEvent),
    cancel: Arc<AtomicBool>,
) -> Result<SimulationResult, SimulationError> {
    let start = Instant::now();
    let (parts, test) = load_sim_data(&cfg.data, &cfg.csv)?;
    let site_tests = load_site_tests(&cfg.data, &cfg.csv)?;
    let n = parts.len();
    let feature_names = test.feature_names.clone();
    let label = test.label.clone();
    let train_rows = parts.iter().map(Dataset::rows).sum();
    let plan = cfg.plan(&test, n);
    // The settings a federation would refuse (no rounds, a bad rate).
    plan.validate("the simulation's settings")
        .map_err(|e| SimulationError::Plan(Box::new(e)))?;
    let plan_fp = plan.fingerprint().to_string();
    let ids: Vec<String> = (1..=n).map(|i| format!("client-{i}")).collect();

    let (sites, server) = start_sites(cfg, &plan, &ids)?;

    let (tx, rx) = mpsc::channel::<(usize, ClientEvent)>();
    // Per client: its outcome, or `None` if its thread panicked.
    type Outcomes = Vec<Option<Result<ClientOutcome, SessionError>>>;
    let (outcomes, records, std_cost): (Outcomes, _, _) = std::thread::scope(|scope| {
        let mut handles = Vec::new();
        let sites = sites.into_iter().zip(&parts).zip(&ids);
        for (index, ((site, part), id)) in sites.enumerate() {
            let site_test = site_tests.as_ref().and_then(|t| t.get(index));
            let tx = tx.clone();
            let cancel = cancel.clone();
            let (plan, plan_fp) = (&plan, &plan_fp);
            let files = cfg.data_files();
            handles.push(scope.spawn(move || {
                let mut send = |e: &ClientEvent| {
                    // The receiver outlives the clients; a send only fails
                    // once it stopped listening, when events no longer matter.
                    let _ = tx.send((index, e.clone()));
                };
                let run = match site {
                    SimSite::Plain(mut ex) => session::run_plan_with(
                        &mut ex,
                        plan,
                        plan_fp,
                        session::site_seed(plan.training.sgd.seed, id),
                        None,
                        (part, site_test),
                        RunRecord {
                            kind: crate::model::SIMULATED,
                            data_files: files,
                            server: None,
                            site: id.clone(),
                        },
                        Default::default(),
                        &mut send,
                        &cancel,
                    ),
                    SimSite::Joined(j) => j.run_tested(part, site_test, files, &mut send, &cancel),
                };
                let r = run.map(|r| r.outcome);
                if r.is_err() {
                    // One client failing stops the others instead of
                    // leaving them waiting for a round that cannot close.
                    cancel.store(true, Ordering::Relaxed);
                }
                r
            }));
        }
        drop(tx);
        let (records, std_cost) = collect_rounds(
            &rx,
            n,
            &test,
            cfg.plain,
            server.as_ref(),
            start,
            on_event,
            &plan,
        );
        let outcomes = handles.into_iter().map(|h| h.join().ok()).collect();
        (outcomes, records, std_cost)
    });
    if let Some(s) = server {
        s.shutdown();
    }
    let mut first = None;
    for (index, o) in outcomes.into_iter().enumerate() {
        match o {
            None => return Err(SimulationError::Panicked { index }),
            Some(Ok(o)) => {
                if first.is_none() {
                    first = Some(o);
                }
            }
            Some(Err(SessionError::Cancelled | SessionError::Loop(LoopError::Cancelled))) => {}
            Some(Err(error)) => return Err(SimulationError::Client { index, error }),
        }
    }
    let outcome = first.ok_or(SimulationError::Cancelled)?;
    if outcome.cancelled {
        return Err(SimulationError::Cancelled);
    }
    let test_metrics = crate::client::evaluate_raw(
        &*outcome.model,
        &outcome.encoder,
        &outcome.scaler,
        outcome.target_scaling.as_ref(),
        &test.x,
        &test.y.to_vec(),
    );
    Ok(SimulationResult {
        records,
        model: outcome.model,
        encoder: outcome.encoder,
        privacy: outcome.privacy,
        stopped: outcome.stopped,
        scaler: outcome.scaler,
        target_scaling: outcome.target_scaling,
        test: test_metrics,
        feature_names,
        label,
        train_rows,
        total_ms: start.elapsed().as_secs_f64() * 1e3,
        standardization: std_cost,
        plan_fingerprint: plan_fp,
        federated: outcome.federated,
        site_tests: site_tests.map(|t| t.iter().map(Dataset::rows).sum()),
    })
}

/// Receives client events until all clients are done; builds a record when
/// every client has finished a round.
#[allow(clippy::too_many_arguments)]
fn collect_rounds(
    rx: &mpsc::Receiver<(usize, ClientEvent)>,
    n: usize,
    test: &Dataset,
    plain: bool,
    server: Option<&EmbeddedServer>,
    start: Instant,
    on_event: &mut dyn FnMut(&SimEvent),
    plan: &Plan,
) -> (Vec<RoundRecord>, ExchangeCost) {
    let head: Head = plan.head();
    let architecture = plan.model.architecture();
    let mut target_scaling: Option<TargetScaling> = None;
    let mut pending: std::collections::BTreeMap<u64, Vec<crate::client::ClientRound>> =
        Default::default();
    let mut scaler: Option<(crate::data::Encoder, Standardizer)> = None;
    let mut std_cost = ExchangeCost::default();
    let mut records = Vec::new();
    while let Ok((index, event)) = rx.recv() {
        match &event {
            ClientEvent::Standardized {
                encoder,
                scaler: s,
                target_scaling: t,
                cost,
                ..
            } => {
                scaler.get_or_insert_with(|| (encoder.clone(), s.clone()));
                if target_scaling.is_none() {
                    target_scaling = *t;
                }
                std_cost.encrypt_ms += cost.encrypt_ms / n as f64;
                std_cost.decrypt_ms += cost.decrypt_ms / n as f64;
                std_cost.bytes_up += cost.bytes_up;
                std_cost.bytes_down += cost.bytes_down;
            }
            ClientEvent::Round(r) => {
                let list = pending.entry(r.round).or_default();
                list.push(r.clone());
                if list.len() == n {
                    let list = pending.remove(&r.round).unwrap_or_default();
                    let params = list[0].global_params.clone();
                    let inputs = scaler.as_ref().map_or(0, |(e, _)| e.output_len());
                    let model = crate::model::build(&architecture, inputs, head, 0)
                        .and_then(|mut m| m.set_params(&params).map(|()| m));
                    let (loss, acc) = match (model, &scaler) {
                        (Ok(m), Some((enc, s))) => {
                            let e = crate::client::evaluate_raw(
                                &*m,
                                enc,
                                s,
                                target_scaling.as_ref(),
                                &test.x,
                                &test.y.to_vec(),
                            );
                            (e.loss(), e.score())
                        }
                        _ => (f64::NAN, f64::NAN),
                    };
                    let aggregate_ms = server
                        .and_then(|s| s.round_info(plan.layout().training_round(r.round)).ok())
                        .map_or(0.0, |i| i.aggregate_ms);
                    let rec = RoundRecord {
                        round: r.round,
                        plain,
                        contributors: list[0].contributors,
                        global_loss: loss,
                        global_score: acc,
                        bytes_up: list.iter().map(|c| c.cost.bytes_up).sum(),
                        bytes_down: list.iter().map(|c| c.cost.bytes_down).sum(),
                        encrypt_ms: list.iter().map(|c| c.cost.encrypt_ms).sum::<f64>() / n as f64,
                        aggregate_ms,
                        decrypt_ms: list.iter().map(|c| c.cost.decrypt_ms).sum::<f64>() / n as f64,
                        elapsed_ms: start.elapsed().as_secs_f64() * 1e3,
                        params,
                        epsilon: list
                            .iter()
                            .filter_map(|c| c.epsilon)
                            .fold(None, |m: Option<f64>, e| Some(m.map_or(e, |m| m.max(e)))),
                        masked: list.iter().all(|c| c.masked),
                        federated_loss: list[0].federated_validation.as_ref().map(|e| e.loss()),
                        federated_score: list[0].federated_validation.as_ref().map(|e| e.score()),
                    };
                    on_event(&SimEvent::Round(rec.clone()));
                    records.push(rec);
                }
            }
            ClientEvent::Epoch(_) | ClientEvent::Tree(_) => {}
        }
        on_event(&SimEvent::Client { index, event });
    }
    (records, std_cost)
}

impl crate::client::RoundFigures for RoundRecord {
    fn round(&self) -> u64 {
        self.round
    }
    fn contributors(&self) -> u32 {
        self.contributors
    }
    fn loss(&self) -> Option<f64> {
        Some(self.global_loss).filter(|v| v.is_finite())
    }
    fn score(&self) -> Option<f64> {
        Some(self.global_score).filter(|v| v.is_finite())
    }
    fn bytes(&self) -> (u64, u64) {
        (self.bytes_up, self.bytes_down)
    }
    fn times_ms(&self) -> (f64, f64, f64) {
        (self.encrypt_ms, self.decrypt_ms, self.aggregate_ms)
    }
    fn epsilon(&self) -> Option<f64> {
        self.epsilon
    }
}

/// Largest absolute difference between two runs' global parameters, per round.
pub fn max_param_diff(a: &[RoundRecord], b: &[RoundRecord]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            x.params
                .iter()
                .zip(&y.params)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f64::max)
        })
        .collect()
}

/// Per-round figures as CSV (the csv crate's serializer: one header row,
/// then one row per round, without the parameter vectors).
pub fn records_csv(records: &[RoundRecord]) -> Result<String, csv::Error> {
    #[derive(Serialize)]
    struct Row {
        round: u64,
        plain: bool,
        contributors: u32,
        global_loss: f64,
        global_score: f64,
        bytes_up: u64,
        bytes_down: u64,
        encrypt_ms: f64,
        aggregate_ms: f64,
        decrypt_ms: f64,
        elapsed_ms: f64,
        federated_loss: Option<f64>,
        federated_score: Option<f64>,
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in records {
        w.serialize(Row {
            round: r.round,
            plain: r.plain,
            contributors: r.contributors,
            global_loss: r.global_loss,
            global_score: r.global_score,
            bytes_up: r.bytes_up,
            bytes_down: r.bytes_down,
            encrypt_ms: r.encrypt_ms,
            aggregate_ms: r.aggregate_ms,
            decrypt_ms: r.decrypt_ms,
            elapsed_ms: r.elapsed_ms,
            federated_loss: r.federated_loss,
            federated_score: r.federated_score,
        })?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
