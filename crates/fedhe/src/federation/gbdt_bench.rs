//! `fedhe bench gbdt`: time per tree of a gradient-boosted trees federation
//! in-process (one thread per site; encrypted and masked through an
//! embedded aggregator on loopback, or in plaintext), on a synthetic table
//! the size of a9a (32,561 rows × 123 binary features).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::client::TreeRecord;
use crate::crypto::ParamSet;
use crate::data::{CsvOptions, Dataset, LabelMapping, RawColumn, Target};
use crate::model::gbdt::GbdtSettings;
use crate::model::{Architecture, TrainConfig};
use crate::plan::{ModelKind, ModelSpec, Plan, Quorum};

use super::gbdt::run_sites;
use super::{SimData, SimulationConfig, SimulationError};

/// What a gbdt benchmark measured (at the first site; every site does the
/// same work).
#[derive(Debug, Clone, Serialize)]
pub struct GbdtBench {
    pub rows: usize,
    pub features: usize,
    pub sites: usize,
    pub trees: usize,
    pub depth: usize,
    pub bins: usize,
    pub plain: bool,
    pub masked: bool,
    /// Median wall time of one boosting iteration (one tree), ms.
    pub tree_ms_median: f64,
    pub tree_ms_min: f64,
    pub tree_ms_max: f64,
    /// Server rounds per tree (its levels).
    pub rounds_per_tree: f64,
    /// Values one site uploads per tree (limbs included).
    pub values_per_tree: f64,
    /// Ciphertext bytes one site sends and receives per tree (0 in plaintext).
    pub bytes_up_per_tree: f64,
    pub bytes_down_per_tree: f64,
    /// The bins round (fine histograms, cuts), ms.
    pub bins_ms: f64,
    /// The whole run, key generation, statistics and bins included, ms.
    pub total_ms: f64,
    /// Whether every site ended with the same trees.
    pub same_at_every_site: bool,
}

/// A synthetic binary table of `rows` × `features` 0/1 columns (densities
/// from 2% to 22%, as sparse as a9a's) whose label depends on ten of them.
pub fn synthetic_binary(rows: usize, features: usize, seed: u64) -> Dataset {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let density: Vec<f64> = (0..features)
        .map(|_| 0.02 + 0.2 * rng.random::<f64>())
        .collect();
    let weight: Vec<f64> = (0..features.min(10))
        .map(|_| rng.random::<f64>() * 4.0 - 2.0)
        .collect();
    let mut x = Array2::zeros((rows, features));
    let mut y = Array1::zeros(rows);
    for i in 0..rows {
        let mut z = rng.random::<f64>() - 0.5;
        for j in 0..features {
            if rng.random::<f64>() < density[j] {
                x[[i, j]] = 1.0;
                z += weight.get(j).copied().unwrap_or(0.0);
            }
        }
        y[i] = f64::from(u8::from(z > 0.0));
    }
    let feature_names: Vec<String> = (1..=features).map(|j| format!("f{j}")).collect();
    Dataset {
        x,
        y,
        columns: feature_names
            .iter()
            .map(|n| RawColumn::numeric(n))
            .collect(),
        feature_names,
        label: Target::Binary(LabelMapping {
            column: "label".into(),
            positive: "1".into(),
            negative: "0".into(),
        }),
    }
}

/// The plan of the benchmark: every column numeric, the trees' settings,
/// a quorum of every site, masks with three or more.
fn bench_plan(data: &Dataset, sites: usize, settings: GbdtSettings, masks: bool) -> Plan {
    let mut plan = Plan::for_target(&data.label, data.feature_names.clone(), Vec::new());
    plan.name = "fedhe bench gbdt".into();
    plan.model = ModelSpec {
        kind: ModelKind::Gbdt,
        hidden: Vec::new(),
        gbdt: Some(settings),
    };
    plan.training.validation_share = 0.0;
    plan.privacy.masks = masks && sites >= crate::plan::MIN_MASKED_MEMBERS;
    plan.quorum = Quorum {
        min_clients: sites.max(1),
        roster: Vec::new(),
        round_deadline_secs: 600,
        allow_single_contributor: sites <= 1,
    };
    plan
}

/// The rows of `data` dealt in turn to `sites` sites.
fn deal(data: &Dataset, sites: usize) -> Vec<Dataset> {
    (0..sites)
        .map(|k| {
            let idx: Vec<usize> = (k..data.x.nrows()).step_by(sites).collect();
            Dataset {
                x: data.x.select(ndarray::Axis(0), &idx),
                y: data.y.select(ndarray::Axis(0), &idx),
                ..data.clone()
            }
        })
        .collect()
}

/// What `fedhe serve` and one `fedhe client` per site need to grow the
/// benchmark's trees as separate processes (`fedhe bench gbdt
/// --processes`).
#[derive(Debug, Clone)]
pub struct GbdtBenchFiles {
    /// One training CSV per site.
    pub sites: Vec<PathBuf>,
    pub plan: PathBuf,
    /// The sites' shared secret key (owner-only).
    pub secret_key: PathBuf,
    /// The aggregator's public key.
    pub public_key: PathBuf,
}

/// Writes into `dir` the benchmark's synthetic table dealt into one CSV per
/// site, its plan and a fresh key pair: the same federation as
/// [`run_gbdt_bench`]'s, for separate processes.
pub fn write_gbdt_bench_files(
    dir: &Path,
    (rows, features, sites): (usize, usize, usize),
    settings: GbdtSettings,
    params: ParamSet,
    masks: bool,
) -> Result<GbdtBenchFiles, SimulationError> {
    let data = synthetic_binary(rows, features, 7);
    let sites = sites.max(1);
    let mut files = Vec::with_capacity(sites);
    for (k, part) in deal(&data, sites).iter().enumerate() {
        let path = dir.join(format!("site_{}.csv", k + 1));
        crate::data::split::write_csv(part, &path)
            .map_err(|e| SimulationError::Data(Box::new(e)))?;
        files.push(path);
    }
    let plan = bench_plan(&data, sites, settings, masks);
    let plan_path = dir.join("plan.toml");
    plan.save(&plan_path, &["fedhe bench gbdt --processes".to_string()])
        .map_err(|e| SimulationError::Plan(Box::new(e)))?;
    let max = crate::crypto::max_clients_for(sites);
    let key = crate::crypto::SecretKey::generate_for(params, max, None)
        .map_err(SimulationError::KeyGeneration)?;
    let (secret_key, public_key) = (dir.join("secret.key"), dir.join("public.key"));
    key.save(&secret_key, false)
        .and_then(|()| key.public().save(&public_key, false))
        .map_err(SimulationError::KeyGeneration)?;
    Ok(GbdtBenchFiles {
        sites: files,
        plan: plan_path,
        secret_key,
        public_key,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Grows `settings.trees` trees over `sites` sites holding `rows` synthetic
/// rows of `features` binary columns between them (rows dealt in turn).
pub fn run_gbdt_bench(
    rows: usize,
    features: usize,
    sites: usize,
    settings: GbdtSettings,
    params: ParamSet,
    plain: bool,
    masks: bool,
) -> Result<GbdtBench, SimulationError> {
    let start = Instant::now();
    let data = synthetic_binary(rows, features, 7);
    let sites = sites.max(1);
    let parts = deal(&data, sites);
    let plan = bench_plan(&data, sites, settings, masks);
    plan.validate("the benchmark's settings")
        .map_err(|e| SimulationError::Plan(Box::new(e)))?;
    let cfg = SimulationConfig {
        data: SimData::Files {
            clients: Vec::new(),
            test: std::path::PathBuf::new(),
        },
        csv: CsvOptions::default(),
        rounds: 1,
        train: TrainConfig::default(),
        architecture: Architecture::Linear,
        dp: None,
        masks,
        plain,
        params,
        round_timeout: Duration::from_secs(600),
        evaluation: None,
    };
    let runs = run_sites(
        &cfg,
        &plan,
        (&parts, None),
        &mut |_| {},
        Arc::new(AtomicBool::new(false)),
    )?;
    let total_ms = start.elapsed().as_secs_f64() * 1e3;
    let first = runs.first().ok_or(SimulationError::Cancelled)?;
    let same = runs
        .iter()
        .all(|r| r.model.ensemble == first.model.ensemble);
    let trees: Vec<&TreeRecord> = first
        .outcome
        .trees
        .iter()
        .filter(|r| r.iteration > 0)
        .collect();
    let n = trees.len().max(1) as f64;
    let per = |f: &dyn Fn(&TreeRecord) -> f64| trees.iter().map(|r| f(r)).sum::<f64>() / n;
    let ms: Vec<f64> = trees.iter().map(|r| r.ms).collect();
    Ok(GbdtBench {
        rows,
        features,
        sites,
        trees: settings.trees,
        depth: settings.depth,
        bins: settings.bins,
        plain,
        masked: trees.iter().any(|r| r.masked),
        tree_ms_median: median(ms.clone()),
        tree_ms_min: ms.iter().copied().fold(f64::INFINITY, f64::min),
        tree_ms_max: ms.iter().copied().fold(0.0, f64::max),
        rounds_per_tree: per(&|r| r.rounds as f64),
        values_per_tree: per(&|r| r.values as f64),
        bytes_up_per_tree: per(&|r| r.cost.bytes_up as f64),
        bytes_down_per_tree: per(&|r| r.cost.bytes_down as f64),
        bins_ms: first
            .outcome
            .trees
            .iter()
            .find(|r| r.iteration == 0)
            .map_or(0.0, |r| r.ms),
        total_ms,
        same_at_every_site: same,
    })
}
