//! Model families over real federations: multi-class and regression with
//! linear models and MLPs, encrypted over HTTP, against plaintext FedAvg and
//! scikit-learn's centralized figures (tests/fixtures/sklearn_*.json, made
//! by scripts/sklearn_comparison.sh on the same split); sites without some
//! classes; a 50,000-row site under a default key.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::common::{fedhe, sample, sklearn};
use fedhe::crypto::{ParamSet, SecretKey};
use fedhe::data::split::{Partition, write_csv};
use fedhe::data::{CsvOptions, Dataset, LabelMapping, Target, TargetSpec};
use fedhe::federation::{SimData, SimulationConfig, max_param_diff, simulate};
use fedhe::model::{Architecture, Evaluation, TrainConfig};
use fedhe::plan::{ModelKind, Plan, ProposeOptions, Quorum, Task, Training};
use fedhe::server::{EmbeddedServer, ServerConfig};
use fedhe::session::{self, ConnectOptions};

fn config(data: &str, label: &str, arch: Architecture, train: TrainConfig) -> SimulationConfig {
    SimulationConfig {
        data: SimData::Split {
            data: sample(data),
            clients: 4,
            partition: Partition::Iid,
            test_fraction: 0.2,
            seed: 42,
        },
        csv: CsvOptions {
            label: Some(label.into()),
            target: TargetSpec::Auto,
            ..CsvOptions::default()
        },
        rounds: 20,
        train,
        architecture: arch,
        dp: None,
        masks: true,
        plain: false,
        params: ParamSet::Standard64,
        round_timeout: Duration::from_secs(60),
        evaluation: None,
    }
}

fn run(cfg: &SimulationConfig) -> fedhe::federation::SimulationResult {
    simulate(cfg, &mut |_| {}, Arc::new(AtomicBool::new(false))).expect("simulation runs")
}

/// Encrypted over HTTP vs plaintext FedAvg (≤ 1e-6 per parameter, every
/// round) and vs centralized scikit-learn (within 0.02), for the
/// multi-class and regression examples with both model kinds.
#[test]
fn model_families_match_plaintext_fedavg_and_scikit_learn() {
    let mlp = Architecture::Mlp { hidden: vec![32] };
    // Plain SGD at lr 0.1 (the settings before issue 20's defaults), as
    // docs/models.md reports them: wine needs more local epochs to
    // converge; diabetes' MLP needs some L2 not to overfit. The defaults
    // are checked in `defaults_*` below and docs/models.md's table.
    let wine = TrainConfig {
        epochs: 20,
        ..Training::LEGACY.local()
    };
    let diabetes = TrainConfig {
        l2: 0.03,
        ..Training::LEGACY.local()
    };
    let cases = [
        (
            "wine.csv",
            "cultivar",
            Architecture::Linear,
            &wine,
            "sklearn_wine.json",
            "LogisticRegression (L2, C=1)",
            "accuracy",
        ),
        (
            "wine.csv",
            "cultivar",
            mlp.clone(),
            &wine,
            "sklearn_wine.json",
            "MLPClassifier(32)",
            "accuracy",
        ),
        (
            "diabetes.csv",
            "progression",
            Architecture::Linear,
            &diabetes,
            "sklearn_diabetes.json",
            "LinearRegression",
            "r2",
        ),
        (
            "diabetes.csv",
            "progression",
            mlp,
            &diabetes,
            "sklearn_diabetes.json",
            "MLPRegressor(32)",
            "r2",
        ),
    ];
    for (data, label, arch, train, fixture, model, figure) in cases {
        let what = format!("{data} {arch}");
        let cfg = config(data, label, arch, train.clone());
        let enc = run(&cfg);
        let plain = run(&SimulationConfig {
            plain: true,
            ..cfg.clone()
        });
        assert_eq!(enc.records.len(), 20, "{what}");
        for (round, d) in max_param_diff(&enc.records, &plain.records)
            .iter()
            .enumerate()
        {
            assert!(
                *d <= 1e-6,
                "{what}: round {}: parameter difference {d}",
                round + 1
            );
        }
        let gap = (enc.test.score() - plain.test.score()).abs();
        assert!(gap < 1e-6, "{what}: test score differs by {gap}");
        let reference = sklearn(fixture, model, figure);
        let ours = enc.test.score();
        eprintln!("{what}: federated {ours:.4}, scikit-learn {model} {reference:.4}");
        assert!(
            ours >= reference - 0.02,
            "{what}: federated {ours:.4} vs scikit-learn {reference:.4}"
        );
        match (&enc.test, figure) {
            (Evaluation::Multiclass(m), "accuracy") => assert_eq!(m.confusion.len(), 3),
            (Evaluation::Regression(m), "r2") => {
                // RMSE in the target's unit (diabetes progression, SD ≈ 77).
                assert!(m.rmse > 20.0 && m.rmse < 80.0, "{what}: RMSE {}", m.rmse);
            }
            (e, _) => panic!("{what}: unexpected {e:?}"),
        }
    }
}

/// Each site lacks one of the three classes; every site still builds the
/// same three-output model, and the federation learns all three.
#[test]
fn sites_without_some_classes_train_one_softmax() {
    let ds = fedhe::data::load_csv(
        &sample("wine.csv"),
        &CsvOptions {
            label: Some("cultivar".into()),
            target: TargetSpec::Classes(None),
            ..CsvOptions::default()
        },
    )
    .unwrap()
    .dataset;
    let (train, test) = fedhe::data::split::stratified_split(&ds, 0.2, 42).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for missing in 0..3 {
        let rows: Vec<usize> = (0..train.rows())
            .filter(|&i| train.y[i] as usize != missing)
            .collect();
        let path = dir.path().join(format!("site_{missing}.csv"));
        write_csv(&train.select_rows(&rows), &path).unwrap();
        files.push(path);
    }
    let test_path = dir.path().join("test.csv");
    write_csv(&test, &test_path).unwrap();
    let cfg = SimulationConfig {
        data: SimData::Files {
            clients: files,
            test: test_path,
        },
        csv: CsvOptions {
            label: Some("cultivar".into()),
            target: TargetSpec::Classes(None),
            ..CsvOptions::default()
        },
        rounds: 10,
        train: TrainConfig {
            epochs: 10,
            ..Training::default().local()
        },
        architecture: Architecture::Linear,
        dp: None,
        masks: true,
        plain: false,
        params: ParamSet::Standard64,
        round_timeout: Duration::from_secs(60),
        evaluation: None,
    };
    let res = run(&cfg);
    assert_eq!(
        res.label.classes(),
        vec!["cultivar_1", "cultivar_2", "cultivar_3"]
    );
    let Evaluation::Multiclass(m) = &res.test else {
        panic!("{:?}", res.test)
    };
    assert!(m.accuracy > 0.9, "{m:?}");
    assert!(
        m.per_class.iter().all(|c| c.recall > 0.8),
        "every class is learned: {m:?}"
    );
}

/// A 50,000-row site under a default key (64 clients, 16 fraction bits):
/// with FedAvg weights in rows, `|rows × parameter|` passed the key's 2^16
/// budget at the first upload. Now a federation of two such sites trains.
#[test]
fn a_fifty_thousand_row_site_trains_under_a_default_key() {
    let key = Arc::new(SecretKey::generate(ParamSet::Standard64));
    assert_eq!(key.max_clients(), 64);
    // Two sites, 50,000 rows each, a strongly separable label (large weights).
    let site = |seed: u64| {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n = 50_000;
        let x = ndarray::Array2::from_shape_fn((n, 3), |_| rng.random_range(-3.0..3.0));
        let y = x.column(0).mapv(|v| f64::from(u8::from(v > 0.0)));
        Dataset {
            x,
            y,
            feature_names: vec!["a".into(), "b".into(), "c".into()],
            columns: ["a", "b", "c"]
                .map(fedhe::data::RawColumn::numeric)
                .to_vec(),
            label: Target::Binary(LabelMapping {
                column: "y".into(),
                positive: "1".into(),
                negative: "0".into(),
            }),
        }
    };
    let mut plan = Plan::binary(
        site(0).label.binary().unwrap().clone(),
        vec!["a".into(), "b".into(), "c".into()],
        Vec::new(),
    );
    plan.training = Training {
        rounds: 3,
        sgd: fedhe::model::LocalSgd {
            epochs: 2,
            ..Training::default().sgd
        },
        validation_share: 0.0,
    };
    plan.quorum = Quorum {
        min_clients: 2,
        ..Quorum::default()
    };
    // Two sites: rounds of two go unmasked, and the plan says so.
    plan.privacy.allow_unmasked_pairs = true;
    let srv = EmbeddedServer::start(ServerConfig {
        public_key: Some(key.public()),
        plan: Some(plan),
        ..ServerConfig::default()
    })
    .unwrap();
    let handles: Vec<_> = ["big-a", "big-b"]
        .into_iter()
        .enumerate()
        .map(|(i, id)| {
            let key = key.clone();
            let url = srv.url().to_string();
            let data = site(i as u64 + 1);
            std::thread::spawn(move || {
                let connected = session::connect(
                    &ConnectOptions {
                        server: url,
                        ca_cert_pem: None,
                        wait: Duration::from_secs(10),
                    },
                    key,
                    None,
                    &AtomicBool::new(false),
                )
                .unwrap();
                let joined = connected.join(id, id, None).unwrap();
                joined
                    .run(&data, vec![], &mut |_| {}, &AtomicBool::new(false))
                    .map(|r| r.model)
            })
        })
        .collect();
    for h in handles {
        let model = h.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(model.provenance.rows, 100_000);
        // The rule is x_a > 0: its weight dominates and is large.
        assert!(model.params[0] > 3.0, "{:?}", model.params);
        let x = ndarray::array![[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]];
        let p = model.predict(&x).unwrap();
        assert!(p[[0, 0]] > 0.9 && p[[1, 0]] < 0.1, "{p:?}");
    }
}

/// `fedhe plan init` proposes the task from the label column, with a note,
/// and the operator can override it.
#[test]
fn plan_init_proposes_the_task_and_the_model() {
    let propose = |data: &str, label: &str, task| {
        fedhe::plan::propose(
            &sample(data),
            &ProposeOptions {
                label: Some(label.into()),
                task,
                ..ProposeOptions::default()
            },
        )
        .unwrap()
    };
    let (wine, notes) = propose("wine.csv", "cultivar", None);
    assert_eq!(
        wine.task,
        Task::Multiclass {
            classes: vec![
                "cultivar_1".into(),
                "cultivar_2".into(),
                "cultivar_3".into()
            ]
        }
    );
    let notes = notes.join("\n");
    assert!(notes.contains("3 distinct text values"), "{notes}");
    assert!(notes.contains("softmax regression"), "{notes}");
    let (diabetes, notes) = propose("diabetes.csv", "progression", None);
    assert_eq!(diabetes.task, Task::Regression);
    assert!(notes.join("\n").contains("more than 20 distinct values"));
    // The plan's statistics round carries the target; its parameters are a
    // linear model's.
    // 10 numeric columns × (sum, sum of squares, present), the rows, the
    // target's sum and sum of squares.
    assert_eq!(diabetes.statistics_values(), 10 * 3 + 1 + 2);
    assert_eq!(diabetes.param_count(), 11);
    // An integer label with few values is classes; `sex` (1/2) forced to
    // regression is a numeric target.
    let (sex, _) = propose("diabetes.csv", "sex", None);
    assert_eq!(
        sex.task,
        Task::Binary {
            positive: "2.0".into(),
            negative: "1.0".into()
        }
    );
    let (forced, notes) = propose(
        "diabetes.csv",
        "sex",
        Some(fedhe::data::TaskKind::Regression),
    );
    assert_eq!(forced.task, Task::Regression);
    assert!(
        !notes.join("\n").contains("because"),
        "no automatic choice was made"
    );
    // The plan round-trips with an MLP.
    let mut mlp = wine.clone();
    mlp.model = fedhe::plan::ModelSpec {
        kind: ModelKind::Mlp,
        hidden: vec![64, 32],
        gbdt: None,
    };
    let back = Plan::from_toml(&mlp.to_toml(), "mlp.toml").unwrap();
    assert_eq!(back, mlp);
    assert_eq!(back.param_count(), 13 * 64 + 64 + 64 * 32 + 32 + 32 * 3 + 3);
    let mut bad = mlp;
    bad.model.hidden = vec![];
    let e = Plan::from_toml(&bad.to_toml(), "bad.toml")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("model.hidden") && e.contains("1 to 3 hidden layers"),
        "{e}"
    );
}

/// The reproductions: `fedhe train` on the 3-class wine data stopped with
/// "third label value", on the diabetes data (a numeric target) the same.
#[test]
fn fedhe_train_and_predict_handle_multiclass_and_regression() {
    let dir = tempfile::tempdir().unwrap();
    let wine = sample("wine.csv");
    let model = dir.path().join("wine.json");
    let o = fedhe(&[
        "train",
        "--data",
        wine.to_str().unwrap(),
        "--label",
        "cultivar",
        "--out",
        model.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("task: multiclass"), "{err}");
    assert!(!err.contains("third label value"), "{err}");
    let o = fedhe(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--data",
        wine.to_str().unwrap(),
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}");
    assert!(
        out.contains("macro_f1") && out.contains("cultivar_3"),
        "{out}"
    );

    let diabetes = sample("diabetes.csv");
    let model = dir.path().join("diabetes.json");
    let o = fedhe(&[
        "train",
        "--data",
        diabetes.to_str().unwrap(),
        "--label",
        "progression",
        "--model",
        "mlp",
        "--hidden",
        "16",
        "--out",
        model.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("task: regression") && err.contains("MLP"),
        "{err}"
    );
    let saved = fedhe::model::ModelFile::load(&model).unwrap();
    assert_eq!(saved.architecture, Architecture::Mlp { hidden: vec![16] });
    assert!(saved.target_scaling.is_some());
    let preds = dir.path().join("p.csv");
    let o = fedhe(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--data",
        diabetes.to_str().unwrap(),
        "--out",
        preds.to_str().unwrap(),
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && out.contains("rmse"), "{out}");
    // Predictions are in the target's unit (progression runs 25..346).
    let text = std::fs::read_to_string(&preds).unwrap();
    let first: Vec<f64> = text
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(first[1] > 25.0 && first[1] < 346.0, "{text:.200}");

    // A binary-only task on wine is still refused with a hint.
    let o = fedhe(&[
        "train",
        "--data",
        wine.to_str().unwrap(),
        "--label",
        "cultivar",
        "--task",
        "binary",
        "--out",
        dir.path().join("x.json").to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("third label value") && err.contains("--task multiclass"),
        "{err}"
    );
}

/// Scoring a file whose label column holds a class the model does not know
/// predicts every row and leaves those rows out of the metrics, with a note.
#[test]
fn predict_scores_rows_with_unknown_labels_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("wine.json");
    let wine = sample("wine.csv");
    let o = fedhe(&[
        "train",
        "--data",
        wine.to_str().unwrap(),
        "--label",
        "cultivar",
        "--out",
        model.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let text = std::fs::read_to_string(&wine).unwrap();
    let mut lines: Vec<String> = text.lines().take(11).map(String::from).collect();
    lines[3] = lines[3].replace("cultivar_1", "cultivar_9");
    let test = dir.path().join("t.csv");
    std::fs::write(&test, lines.join("\n") + "\n").unwrap();
    let preds = dir.path().join("p.csv");
    let o = fedhe(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--data",
        test.to_str().unwrap(),
        "--out",
        preds.to_str().unwrap(),
    ]);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert!(o.status.success(), "{out}{err}");
    assert!(
        err.contains(
            "1 row(s) have a label the model does not know (the first: \"cultivar_9\" at line 4)"
        ),
        "{err}"
    );
    assert!(out.contains("scored 10 rows"), "{out}");
    let csv = std::fs::read_to_string(&preds).unwrap();
    assert_eq!(csv.lines().count(), 11);
    assert!(csv.lines().nth(3).unwrap().ends_with(','), "{csv}");
}

/// Issue 20's "works out of the box": with a federation's default settings
/// (`plan::Training::default()`, no tuning per table), encrypted over HTTP,
/// the diamonds-like outlier table (tests/fixtures/outliers) trains to
/// within 0.01 of scikit-learn's `LinearRegression` instead of diverging,
/// and scikit-learn's digits with an MLP of 32 over 4 IID sites to within
/// 0.01 of `MLPClassifier(32)` on the same split (the references:
/// scripts/sklearn_comparison.sh).
#[test]
fn defaults_train_outliers_and_digits_within_a_hundredth_of_scikit_learn() {
    let outliers = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/outliers/diamonds_like.csv");
    let cases = [
        (
            outliers,
            "price",
            Architecture::Linear,
            "sklearn_outliers.json",
            "LinearRegression",
            "r2",
        ),
        (
            sample("digits.csv"),
            "digit",
            Architecture::Mlp { hidden: vec![32] },
            "sklearn_digits.json",
            "MLPClassifier(32)",
            "accuracy",
        ),
    ];
    for (data, label, arch, fixture, model, figure) in cases {
        let what = format!("{} {arch}", data.display());
        let mut cfg = config("wine.csv", label, arch, Training::default().local());
        if let SimData::Split { data: d, .. } = &mut cfg.data {
            *d = data.clone();
        }
        let enc = run(&cfg);
        let plain = run(&SimulationConfig {
            plain: true,
            ..cfg.clone()
        });
        // Adam divides by the gradients' running deviation, which
        // magnifies the encoding's rounding (2^-41 of a mean) where a
        // gradient is near 0: encrypted and plaintext runs agree to 1e-3
        // (digits MLP: 3e-4), not 1e-6 as with SGD. (Every site of one run still holds the
        // same model bit for bit: they decrypt the same sum.)
        let diff = max_param_diff(&enc.records, &plain.records);
        let worst = diff.iter().copied().fold(0.0, f64::max);
        eprintln!("{what}: largest parameter difference from plaintext {worst:e}");
        assert!(worst <= 1e-3, "{what}: difference {worst}");
        let gap = (enc.test.score() - plain.test.score()).abs();
        assert!(gap <= 0.003, "{what}: test score differs by {gap}");
        let reference = sklearn(fixture, model, figure);
        let ours = enc.test.score();
        eprintln!("{what}: federated {ours:.4}, scikit-learn {model} {reference:.4}");
        assert!(
            ours >= reference - 0.01,
            "{what}: federated {ours:.4} vs scikit-learn {reference:.4}"
        );
    }
}
