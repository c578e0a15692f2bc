//! Gradient-boosted trees federated (issue 24): the trees of an encrypted,
//! masked federation are those of the same federation in plaintext and of
//! the pooled rows (`model::gbdt::train_pooled`), at every site; over real
//! HTTP too.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use fedhe::crypto::ParamSet;
use fedhe::data::split::Partition;
use fedhe::data::{CsvOptions, Dataset, RawStats, TaskKind};
use fedhe::federation::{
    GbdtSimulation, SimData, SimEvent, SimulationConfig, load_sim_data, simulate_gbdt,
};
use fedhe::model::gbdt::{Ensemble, GbdtSettings, train_pooled};
use fedhe::model::{Architecture, Head, TrainConfig};

use super::common::{connect, sample, serve_plan};

fn config(data: PathBuf, label: &str, clients: usize, plain: bool) -> SimulationConfig {
    SimulationConfig {
        data: SimData::Split {
            data,
            clients,
            partition: Partition::Iid,
            test_fraction: 0.2,
            seed: 42,
        },
        csv: csv(label),
        rounds: 1,
        train: TrainConfig::default(),
        architecture: Architecture::Linear,
        dp: None,
        masks: true,
        plain,
        params: ParamSet::Standard64,
        round_timeout: Duration::from_secs(120),
        evaluation: None,
    }
}

/// Penguins: species from 3, island and sex categorical, "NA" missing.
fn csv(label: &str) -> CsvOptions {
    let cat = |name: &str| fedhe::data::CategoricalSpec {
        name: name.into(),
        categories: None,
        other: false,
    };
    match label {
        "species" => CsvOptions {
            label: Some(label.into()),
            target: fedhe::data::TargetSpec::Classes(None),
            categorical: vec![cat("island"), cat("sex")],
            missing_tokens: fedhe::data::default_missing_tokens(),
            ..CsvOptions::default()
        },
        "progression" => CsvOptions {
            label: Some(label.into()),
            target: fedhe::data::TargetSpec::Numeric,
            ..CsvOptions::default()
        },
        _ => CsvOptions {
            label: Some(label.into()),
            ..CsvOptions::default()
        },
    }
}

fn settings(trees: usize, depth: usize, bins: usize) -> GbdtSettings {
    GbdtSettings {
        trees,
        depth,
        bins,
        ..GbdtSettings::default()
    }
}

fn run(cfg: &SimulationConfig, s: GbdtSettings) -> GbdtSimulation {
    simulate_gbdt(cfg, s, &mut |_| {}, Arc::new(AtomicBool::new(false)))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The pooled rows of every site: one machine's training through the same
/// bins and grower.
fn pooled(parts: &[Dataset], s: &GbdtSettings) -> Ensemble {
    let first = &parts[0];
    let views: Vec<_> = parts.iter().map(|p| p.x.view()).collect();
    let x = ndarray::concatenate(ndarray::Axis(0), &views).unwrap();
    let y: Vec<f64> = parts.iter().flat_map(|p| p.y.iter().copied()).collect();
    let stats = RawStats::of(&first.columns, &x, None);
    let head = Head::for_target(&first.label);
    train_pooled(
        s,
        head,
        &first.columns,
        &stats,
        x.view(),
        &y,
        &mut |_, _| std::ops::ControlFlow::Continue(()),
    )
    .unwrap()
    .ensemble
}

fn ensemble(r: &GbdtSimulation) -> &Ensemble {
    r.model
        .ensemble
        .as_ref()
        .expect("a gbdt model holds its trees")
}

/// Identical splits; leaves within 1e-6.
fn assert_same_trees(a: &Ensemble, b: &Ensemble, what: &str) {
    assert_eq!(a.trees.len(), b.trees.len(), "{what}: tree count");
    for (i, (ta, tb)) in a.trees.iter().zip(&b.trees).enumerate() {
        assert_eq!(ta.nodes.len(), tb.nodes.len(), "{what}: tree {i}'s nodes");
        for (na, nb) in ta.nodes.iter().zip(&tb.nodes) {
            use fedhe::model::gbdt::Node;
            match (na, nb) {
                (Node::Leaf { value: va }, Node::Leaf { value: vb }) => {
                    assert!((va - vb).abs() <= 1e-6, "{what}: tree {i}: {va} vs {vb}")
                }
                _ => assert_eq!(na, nb, "{what}: tree {i}"),
            }
        }
    }
}

#[test]
fn encrypted_masked_trees_equal_plaintext_and_pooled_trees() {
    let s = settings(4, 4, 64);
    let enc_cfg = config(sample("breast_cancer_wdbc.csv"), "diagnosis", 3, false);
    let mut seen = Vec::new();
    let enc = simulate_gbdt(
        &enc_cfg,
        s,
        &mut |e| {
            if let SimEvent::Client {
                index: 0,
                event: fedhe::client::ClientEvent::Tree(r),
            } = e
            {
                seen.push(r.clone());
            }
        },
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    let plain = run(
        &config(sample("breast_cancer_wdbc.csv"), "diagnosis", 3, true),
        s,
    );
    assert!(enc.same_at_every_site && plain.same_at_every_site);
    assert_eq!(enc.sites.len(), 3);
    // Bitwise: every sum is of integers.
    assert_eq!(ensemble(&enc), ensemble(&plain));
    let (parts, _) = load_sim_data(&enc_cfg.data, &enc_cfg.csv).unwrap();
    let pooled = pooled(&parts, &s);
    assert_same_trees(ensemble(&enc), &pooled, "encrypted vs pooled");
    assert_eq!(ensemble(&enc).trees, pooled.trees);
    // The trees split, and predict well.
    assert!(ensemble(&enc).trees[0].nodes.len() > 3);
    assert!(enc.test.score() > 0.9, "{}", enc.test.summary());
    // The bins round, then one record per iteration, each of `depth`
    // masked rounds.
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[0].iteration, 0);
    assert!(seen[1..].iter().all(|r| r.rounds == 4 && r.masked));
    assert!(seen[1..].iter().all(|r| r.cost.bytes_up > 0));
    let t = enc.totals();
    assert_eq!((t.iterations, t.rounds), (4, 16));
    // The plan's rounds: statistics, bins, 4 × 4 levels.
    assert_eq!(enc.plan.last_round(), 18);
}

#[test]
fn multiclass_trees_with_categories_and_missing_cells_match_the_pooled_trees() {
    // Penguins: 3 species, two categorical columns (island, sex), missing
    // cells in numeric and categorical columns.
    let s = settings(3, 3, 32);
    let cfg = config(sample("penguins.csv"), "species", 3, false);
    let enc = run(&cfg, s);
    assert!(enc.same_at_every_site);
    let (parts, _) = load_sim_data(&cfg.data, &cfg.csv).unwrap();
    assert!(parts.iter().any(|p| p.x.iter().any(|v| v.is_nan())));
    let e = ensemble(&enc);
    assert_eq!(e.outputs, 3);
    // One tree per class per iteration.
    assert_eq!(e.trees.len(), 9);
    assert_eq!(e.trees, pooled(&parts, &s).trees);
    assert!(enc.test.score() > 0.9, "{}", enc.test.summary());
}

#[test]
fn regression_trees_are_the_same_at_every_site() {
    let s = settings(5, 3, 64);
    let cfg = config(sample("diabetes.csv"), "progression", 3, true);
    let r = run(&cfg, s);
    assert!(r.same_at_every_site);
    assert_eq!(r.model.target.kind(), TaskKind::Regression);
    assert!(r.model.target_scaling.is_some());
    assert!(r.test.score() > 0.2, "{}", r.test.summary());
}

/// `rows` of `src` (header kept) written to `dst`.
fn write_rows(src: &Path, dst: &Path, keep: impl Fn(usize) -> bool) {
    let text = std::fs::read_to_string(src).unwrap();
    let mut lines = text.lines();
    let mut out = String::from(lines.next().unwrap());
    out.push('\n');
    for (i, l) in lines.enumerate().filter(|(i, _)| keep(*i)) {
        let _ = i;
        out.push_str(l);
        out.push('\n');
    }
    std::fs::write(dst, out).unwrap();
}

#[test]
fn three_sites_over_http_hold_the_plaintext_trees() {
    let dir = tempfile::tempdir().unwrap();
    let src = sample("penguins.csv");
    let files: Vec<PathBuf> = (0..3)
        .map(|k| {
            let f = dir.path().join(format!("site-{k}.csv"));
            write_rows(&src, &f, |i| i % 3 == k);
            f
        })
        .collect();
    let s = settings(2, 3, 32);
    let plain_cfg = SimulationConfig {
        data: SimData::Files {
            clients: files.clone(),
            test: src.clone(),
        },
        ..config(src.clone(), "species", 3, true)
    };
    let plain = run(&plain_cfg, s);
    // The plan a federation would write for it, served by an aggregator.
    let key =
        Arc::new(fedhe::crypto::SecretKey::generate_for(ParamSet::Standard64, 8, None).unwrap());
    let srv = serve_plan(&key, plain.plan.clone());
    let handles: Vec<_> = files
        .iter()
        .enumerate()
        .map(|(i, file)| {
            let (key, url, file) = (key.clone(), srv.url().to_string(), file.clone());
            std::thread::spawn(move || {
                let c = connect(&url, &key);
                let data = c.load_site(&file).unwrap();
                let id = format!("site-{i}");
                let j = c.join(&id, &id, None).unwrap();
                j.run_gbdt(&data.dataset, vec![], &mut |_| {}, &AtomicBool::new(false))
                    .unwrap_or_else(|e| panic!("{e}"))
            })
        })
        .collect();
    let runs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for r in &runs {
        assert_eq!(r.model.ensemble.as_ref(), Some(ensemble(&plain)));
        assert!(r.outcome.trees[1..].iter().all(|t| t.masked));
    }
    // The model file round-trips and predicts as the plaintext one.
    let path = dir.path().join("trees.json");
    runs[0].model.save(&path).unwrap();
    let back = fedhe::model::ModelFile::load(&path).unwrap();
    let (_, test) = load_sim_data(&plain_cfg.data, &plain_cfg.csv).unwrap();
    assert_eq!(
        back.predict(&test.x).unwrap(),
        plain.model.predict(&test.x).unwrap()
    );
    srv.shutdown();
}

#[test]
fn the_cli_simulates_and_plans_trees() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("trees.json");
    let data = sample("breast_cancer_wdbc.csv");
    let out = super::common::fedhe(&[
        "simulate",
        "--data",
        data.to_str().unwrap(),
        "--label",
        "diagnosis",
        "--clients",
        "3",
        "--model",
        "gbdt",
        "--trees",
        "2",
        "--depth",
        "3",
        "--compare",
        "--model-out",
        model.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("tree 2/2: 3 rounds"), "{text}");
    assert!(text.contains("masked"), "{text}");
    assert!(
        text.contains("encrypted and plaintext trees: identical"),
        "{text}"
    );
    let m = fedhe::model::ModelFile::load(&model).unwrap();
    assert_eq!(m.ensemble.unwrap().trees.len(), 2);
    // plan init writes the trees' settings; plan check reads them.
    let plan = dir.path().join("p.toml");
    let out = super::common::fedhe(&[
        "plan",
        "init",
        "--data",
        data.to_str().unwrap(),
        "--label",
        "diagnosis",
        "--model",
        "gbdt",
        "--trees",
        "7",
        "--out",
        plan.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = fedhe::plan::Plan::load(&plan).unwrap();
    assert_eq!(p.gbdt().unwrap().trees, 7);
    assert_eq!(p.last_round(), 1 + 1 + 7 * 6);
    let out = super::common::fedhe(&["plan", "check", plan.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("gradient-boosted trees: 7 × depth 6"),
        "{text}"
    );
}
