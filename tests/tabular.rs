//! Real tables: categorical columns, missing cells of every token, rows
//! without a label, preprocessing agreed over an encrypted federation and
//! kept in the model file; the penguins data against scikit-learn's
//! pipeline (tests/fixtures/sklearn_penguins*.json, made by
//! scripts/sklearn_comparison.sh on the same split).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::common::{fedhe, run_sites, sample, sklearn};
use fedhe::crypto::{ParamSet, SecretKey};
use fedhe::data::split::Partition;
use fedhe::data::{CsvOptions, EncodedColumn, RawColumn, RawStats, TargetSpec, load_csv};
use fedhe::federation::{SimData, SimulationConfig, max_param_diff, simulate};
use fedhe::model::{Architecture, ModelFile};
use fedhe::plan::{CategoricalColumn, Plan, Quorum, Task, Training};
use fedhe::server::{EmbeddedServer, ServerConfig};

/// Penguins with its categorical columns and missing cells, 4 IID clients,
/// 20 rounds, encrypted over HTTP: equal to plaintext FedAvg and within
/// 0.02 of scikit-learn's SimpleImputer + OneHotEncoder + StandardScaler
/// pipeline, for species (3 classes) and body mass (regression; the two
/// rows without a body mass are skipped).
#[test]
fn penguins_federations_match_plaintext_and_scikit_learn() {
    let cases = [
        (
            "species",
            Architecture::Linear,
            "sklearn_penguins.json",
            "LogisticRegression (L2, C=1)",
            "accuracy",
        ),
        (
            "species",
            Architecture::Mlp { hidden: vec![32] },
            "sklearn_penguins.json",
            "MLPClassifier(32)",
            "accuracy",
        ),
        (
            "body_mass_g",
            Architecture::Linear,
            "sklearn_penguins_mass.json",
            "LinearRegression",
            "r2",
        ),
        (
            "body_mass_g",
            Architecture::Mlp { hidden: vec![32] },
            "sklearn_penguins_mass.json",
            "MLPRegressor(32)",
            "r2",
        ),
    ];
    for (label, arch, fixture, model, figure) in cases {
        let path = sample("penguins.csv");
        let schema = fedhe::data::profile::auto_schema(
            &path,
            &CsvOptions {
                label: Some(label.into()),
                target: TargetSpec::Auto,
                ..CsvOptions::default()
            },
            Some(label),
        )
        .unwrap();
        let cats: Vec<&str> = schema
            .options
            .categorical
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        let expected: &[&str] = if label == "species" {
            &["island", "sex", "year"]
        } else {
            &["species", "island", "sex", "year"]
        };
        assert_eq!(cats, expected, "{}", schema.notes.join("\n"));
        let cfg = SimulationConfig {
            data: SimData::Split {
                data: path,
                clients: 4,
                partition: Partition::Iid,
                test_fraction: 0.2,
                seed: 42,
            },
            csv: schema.options,
            rounds: 20,
            train: Training::default().local(),
            architecture: arch.clone(),
            dp: None,
            masks: true,
            plain: false,
            params: ParamSet::Standard64,
            round_timeout: Duration::from_secs(60),
            evaluation: None,
        };
        let enc = simulate(&cfg, &mut |_| {}, Arc::new(AtomicBool::new(false))).unwrap();
        let plain = simulate(
            &SimulationConfig {
                plain: true,
                ..cfg.clone()
            },
            &mut |_| {},
            Arc::new(AtomicBool::new(false)),
        )
        .unwrap();
        let what = format!("{label} {arch}");
        // The first round differs by the fixed-point rounding only; later
        // rounds start local training from slightly different models, which
        // an MLP on separable data amplifies (to about 2e-5 by round 20).
        let diffs = max_param_diff(&enc.records, &plain.records);
        assert!(diffs[0] <= 1e-6, "{what}: round 1: {}", diffs[0]);
        for (r, d) in diffs.iter().enumerate() {
            assert!(*d <= 1e-4, "{what}: round {}: {d}", r + 1);
        }
        assert!(
            (enc.test.score() - plain.test.score()).abs() < 1e-6,
            "{what}"
        );
        // The agreed (encrypted) preprocessing equals the plaintext one.
        for (a, b) in enc.scaler.mean.iter().zip(&plain.scaler.mean) {
            assert!(
                (a - b).abs() <= 1e-9 * a.abs().max(1.0),
                "{what}: {a} vs {b}"
            );
        }
        let reference = sklearn(fixture, model, figure);
        let ours = enc.test.score();
        eprintln!("{what}: federated {ours:.4}, scikit-learn {model} {reference:.4}");
        assert!(ours >= reference - 0.02, "{what}: {ours} vs {reference}");
        assert!(
            enc.encoder
                .output_names()
                .contains(&"sex=(missing)".to_string())
        );
    }
}

/// A table with two categorical columns, missing cells of every token and a
/// numeric label (one row without a label).
fn clinic_table(dir: &Path, name: &str, rows: &[(&str, &str, &str, &str)]) -> PathBuf {
    let path = dir.join(name);
    let mut text = String::from("id,age,city,plan,cost\n");
    for (i, (age, city, plan, cost)) in rows.iter().enumerate() {
        text.push_str(&format!("{},{age},{city},{plan},{cost}\n", i + 1));
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// 40 deterministic rows: cost = 100 + 2·age + 50 [city = Oslo] + 20 [plan = gold].
fn clinic_rows(
    seed: u64,
    cities: &[&'static str],
) -> Vec<(String, &'static str, &'static str, String)> {
    let tokens = ["", "NA", "NaN", "null", "?"];
    (0..40u64)
        .map(|i| {
            let k = (i * 7 + seed * 13) % 97;
            let age = 20 + (k % 50);
            let city = cities[(k as usize) % cities.len()];
            let plan = if k.is_multiple_of(3) { "gold" } else { "basic" };
            let cost = 100.0
                + 2.0 * age as f64
                + if city == "Oslo" { 50.0 } else { 0.0 }
                + if plan == "gold" { 20.0 } else { 0.0 }
                + (k % 5) as f64;
            // Every token appears as a missing age, city and plan.
            let t = tokens[(i as usize) % tokens.len()];
            let age = if i % 6 == 1 {
                t.to_string()
            } else {
                age.to_string()
            };
            let city = if i % 8 == 3 {
                tokens[(i as usize / 8) % 5]
            } else {
                city
            };
            let plan = if i % 9 == 4 {
                tokens[(i as usize / 9) % 5]
            } else {
                plan
            };
            let cost = if i == 39 {
                "NA".to_string()
            } else {
                cost.to_string()
            };
            (age, city, plan, cost)
        })
        .collect()
}

fn as_refs<'a>(
    rows: &'a [(String, &'static str, &'static str, String)],
) -> Vec<(&'a str, &'a str, &'a str, &'a str)> {
    rows.iter()
        .map(|(a, c, p, y)| (a.as_str(), *c, *p, y.as_str()))
        .collect()
}

#[test]
fn a_table_with_categories_and_missing_cells_trains_and_predicts_locally() {
    let dir = tempfile::tempdir().unwrap();
    let rows = clinic_rows(1, &["Oslo", "Bergen", "Tromso"]);
    let csv = clinic_table(dir.path(), "clinic.csv", &as_refs(&rows));
    let model = dir.path().join("m.json");
    let o = fedhe(&[
        "train",
        "--data",
        csv.to_str().unwrap(),
        "--label",
        "cost",
        "--epochs",
        "300",
        "--out",
        model.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    // Notes say what each column became, the skipped row, the task.
    assert!(
        err.contains("column \"city\" categorical: text with 3 categories"),
        "{err}"
    );
    assert!(err.contains("column \"age\" numeric,"), "{err}");
    assert!(
        err.contains("skipped 1 row(s) whose label is missing (the first at line 41)"),
        "{err}"
    );
    assert!(err.contains("column \"id\" ignored"), "{err}");
    let saved = ModelFile::load(&model).unwrap();
    let names = saved.feature_names.clone();
    assert_eq!(
        names,
        vec![
            "age",
            "city=Bergen",
            "city=Oslo",
            "city=Tromso",
            "city=(other)",
            "city=(missing)",
            "plan=basic",
            "plan=gold",
            "plan=(other)",
            "plan=(missing)"
        ]
    );
    // The preprocessing round-trips through the file.
    let back = ModelFile::from_json(&saved.to_json().unwrap(), "m.json").unwrap();
    assert_eq!(back, saved);
    let encoder = saved.preprocessing.clone().unwrap();
    assert_eq!(
        encoder.missing_tokens,
        fedhe::data::default_missing_tokens()
    );
    let EncodedColumn::Numeric { fill, .. } = &encoder.columns[0] else {
        panic!("{encoder:?}")
    };
    // The fill is the mean of the present ages of the 39 labelled rows.
    let ages: Vec<f64> = rows[..39]
        .iter()
        .filter_map(|r| r.0.parse::<f64>().ok())
        .filter(|v| v.is_finite())
        .collect();
    let mean = ages.iter().sum::<f64>() / ages.len() as f64;
    assert!((fill - mean).abs() < 1e-9, "{fill} vs {mean}");

    // Predict applies the same preprocessing to new rows with missing
    // cells; a category the training file lacked is "(other)" (the
    // categories were proposed from one file, not a plan).
    let new = clinic_table(
        dir.path(),
        "new.csv",
        &[
            ("NA", "Oslo", "gold", "?"),
            ("40", "?", "basic", "190"),
            ("33", "Bergen", "", ""),
        ],
    );
    let preds = dir.path().join("p.csv");
    let o = fedhe(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--data",
        new.to_str().unwrap(),
        "--out",
        preds.to_str().unwrap(),
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = std::fs::read_to_string(&preds).unwrap();
    // Every row is predicted, also those without a label; metrics use the
    // labelled one.
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(out.contains("scored 3 rows"), "{out}");
    let first = text.lines().nth(1).unwrap();
    assert!(
        first.ends_with(','),
        "no actual value for a missing label: {first}"
    );
    let paris = clinic_table(dir.path(), "paris.csv", &[("40", "Paris", "basic", "190")]);
    let o = fedhe(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--data",
        paris.to_str().unwrap(),
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("scored 1 rows"),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// Two sites with different subsets of a column's categories and missing
/// cells of every token, over real HTTP with a default key: both build the
/// plan's encoding, the encrypted statistics give the plaintext means of
/// both sites together (to 1e-9), and both end with the same model.
#[test]
fn sites_with_different_categories_agree_on_one_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let a_rows = clinic_rows(1, &["Oslo", "Bergen"]);
    let b_rows = clinic_rows(2, &["Bergen", "Tromso"]);
    let a = clinic_table(dir.path(), "a.csv", &as_refs(&a_rows));
    let b = clinic_table(dir.path(), "b.csv", &as_refs(&b_rows));
    let mut plan = Plan::for_target(
        &fedhe::data::Target::Regression {
            column: "cost".into(),
        },
        vec!["age".into()],
        vec!["id".into()],
    );
    plan.columns.categorical = vec![
        CategoricalColumn {
            name: "city".into(),
            categories: vec!["Bergen".into(), "Oslo".into(), "Tromso".into()],
        },
        CategoricalColumn {
            name: "plan".into(),
            categories: vec!["basic".into(), "gold".into()],
        },
    ];
    plan.preprocessing.missing_indicators = true;
    plan.training = Training {
        rounds: 5,
        sgd: fedhe::model::LocalSgd {
            epochs: 20,
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
    plan.validate("plan").unwrap();
    assert_eq!(plan.task, Task::Regression);
    let key = Arc::new(SecretKey::generate(ParamSet::Standard64));
    let srv = EmbeddedServer::start(ServerConfig {
        public_key: Some(key.public()),
        plan: Some(plan.clone()),
        ..ServerConfig::default()
    })
    .unwrap();
    let models = run_sites(srv.url(), &key, &[a.clone(), b.clone()]);
    assert_eq!(models[0].params, models[1].params, "one global model");
    assert_eq!(models[0].preprocessing, models[1].preprocessing);
    assert_eq!(
        models[0].feature_names,
        vec![
            "age",
            "age=(missing)",
            "city=Bergen",
            "city=Oslo",
            "city=Tromso",
            "city=(missing)",
            "plan=basic",
            "plan=gold",
            "plan=(missing)"
        ]
    );
    // The plaintext statistics of both sites together.
    let opts = plan.csv_options();
    let da = load_csv(&a, &opts).unwrap().dataset;
    let db = load_csv(&b, &opts).unwrap().dataset;
    let mut stats = RawStats::of(&da.columns, &da.x, Some(&da.y));
    stats.add(&RawStats::of(&db.columns, &db.x, Some(&db.y)));
    let mut enc = plan.encoder();
    let std = enc.fit(&stats);
    assert_eq!(Some(&enc), models[0].preprocessing.as_ref());
    for (x, y) in std.mean.iter().zip(&models[0].standardization.mean) {
        assert!((x - y).abs() <= 1e-9, "{x} vs {y}");
    }
    for (x, y) in std.std.iter().zip(&models[0].standardization.std) {
        assert!((x - y).abs() <= 1e-9 * x.abs().max(1.0), "{x} vs {y}");
    }
    // Site a never saw Tromso, site b never Oslo: both columns exist, and
    // the model learned Oslo's premium from a's rows.
    assert!(
        matches!(&da.columns[1], RawColumn::Categorical { categories, .. } if categories.len() == 3)
    );
    let x = ndarray::array![[40.0, 1.0, 0.0], [40.0, 0.0, 0.0]];
    let p = models[0].predict(&x).unwrap();
    assert!(
        p[[0, 0]] - p[[1, 0]] > 30.0,
        "Oslo costs about 50 more than Bergen: {p:?}"
    );
}

/// Three sites discover a column's categories in the encrypted vocabulary
/// rounds: values the federation holds at least `min_count` times become
/// categories (in the same order at every site), a value one site holds
/// twice does not appear anywhere (it goes to "other"), and the federation
/// then trains as with a listed vocabulary.
#[test]
fn the_encrypted_vocabulary_agrees_on_common_values_and_hides_rare_ones() {
    let dir = tempfile::tempdir().unwrap();
    let site = |name: &str, cities: &[(&str, usize)]| {
        let mut text = String::from("age,city,cost\n");
        let mut i = 0;
        for (city, n) in cities {
            for _ in 0..*n {
                // Fractional ages: a column of distinct integers reads as an id.
                let age = 20.5 + ((i * 7) % 50) as f64;
                let cost = 100.0 + 2.0 * age + if *city == "Oslo" { 50.0 } else { 0.0 };
                text.push_str(&format!("{age},{city},{cost}\n"));
                i += 1;
            }
        }
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let files = [
        site("a.csv", &[("Oslo", 8), ("Bergen", 3), ("Longyearbyen", 2)]),
        site("b.csv", &[("Bergen", 4), ("Tromso", 3)]),
        site("c.csv", &[("Oslo", 5), ("Tromso", 3), ("Bergen", 1)]),
    ];
    let (mut plan, notes) = fedhe::plan::propose(
        &files[0],
        &fedhe::plan::ProposeOptions {
            label: Some("cost".into()),
            task: Some(fedhe::data::TaskKind::Regression),
            vocabulary: Some(fedhe::plan::Vocabulary {
                min_count: 4,
                buckets: 1024,
            }),
            ..fedhe::plan::ProposeOptions::default()
        },
    )
    .unwrap();
    assert!(
        notes.join("\n").contains("discovered by the sites"),
        "{notes:?}"
    );
    // The operator's file lists no category in the plan.
    assert_eq!(plan.columns.categorical.len(), 1);
    assert!(plan.columns.categorical[0].categories.is_empty());
    assert!(plan.layout().vocabulary);
    plan.training = Training {
        rounds: 3,
        sgd: fedhe::model::LocalSgd {
            epochs: 10,
            ..Training::default().sgd
        },
        validation_share: 0.0,
    };
    plan.quorum = Quorum {
        min_clients: 3,
        ..Quorum::default()
    };
    let back = Plan::from_toml(&plan.to_toml(), "plan.toml").unwrap();
    assert_eq!(back, plan);
    let key = Arc::new(SecretKey::generate(ParamSet::Standard64));
    let srv = EmbeddedServer::start(ServerConfig {
        public_key: Some(key.public()),
        plan: Some(plan.clone()),
        ..ServerConfig::default()
    })
    .unwrap();
    let models = run_sites(srv.url(), &key, &files);
    // Oslo 13, Bergen 8 (capped per site at 4: 3 + 4 + 1), Tromso 6 become
    // categories; Longyearbyen (2, at one site) does not.
    assert_eq!(
        models[0].feature_names,
        vec![
            "age",
            "city=Bergen",
            "city=Oslo",
            "city=Tromso",
            "city=(other)",
            "city=(missing)"
        ]
    );
    for m in &models[1..] {
        assert_eq!(m.params, models[0].params);
        assert_eq!(m.preprocessing, models[0].preprocessing);
    }
    let json = models[0].to_json().unwrap();
    assert!(
        !json.contains("Longyearbyen"),
        "a rare value stays out of the model"
    );
    // Predict maps a rare or new value to "other".
    let x = ndarray::array![[40.0, 1.0], [40.0, 3.0]];
    let p = models[0].predict(&x).unwrap();
    assert!(p.iter().all(|v| v.is_finite()), "{p:?}");
}
