//! Gradient-boosted trees (issue 24, the core): pooled training on real
//! files, the seam a federation drives (sites' integer histograms summed),
//! determinism, missing cells and categories, the model file, the real
//! binary, and quality against the committed XGBoost fixture.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use fedhe::data::{CsvOptions, Dataset, RawStats, load_csv};
use fedhe::model::gbdt::{
    BinPlan, GbdtSettings, Grower, Node, SiteRows, cuts, fine_histogram, fit_dataset,
};
use fedhe::model::{Head, ModelFile};

use crate::common::{fedhe, sample};

fn load(path: &Path, label: &str) -> Dataset {
    let opts = fedhe::data::profile::auto_schema(
        path,
        &CsvOptions {
            label: Some(label.into()),
            target: fedhe::data::TargetSpec::Auto,
            ..CsvOptions::default()
        },
        Some(label),
    )
    .unwrap()
    .options;
    load_csv(path, &opts).unwrap().dataset
}

fn small() -> GbdtSettings {
    GbdtSettings {
        trees: 20,
        depth: 4,
        ..GbdtSettings::default()
    }
}

fn fit(ds: &Dataset, s: &GbdtSettings) -> ModelFile {
    fit_dataset(ds, s, Vec::new(), vec!["x.csv".into()], &mut |_, _| {
        ControlFlow::Continue(())
    })
    .unwrap()
    .model
}

/// The pooled binary classifier learns the sample data: test accuracy and
/// AUC of a linear model's order (0.96+), on the raw columns.
#[test]
fn pooled_binary_learns_the_sample_data() {
    let train = load(&sample("train.csv"), "diagnosis");
    let test = load(&sample("test.csv"), "diagnosis");
    let m = fit(&train, &GbdtSettings::default());
    let e = m.evaluate(&test.x, &test.y.to_vec()).unwrap();
    let fedhe::model::Evaluation::Binary(b) = e else {
        panic!("not binary: {e:?}")
    };
    assert!(b.accuracy >= 0.93, "accuracy {}", b.accuracy);
    assert!(b.roc_auc.unwrap() >= 0.98, "auc {:?}", b.roc_auc);
    let ens = m.ensemble.as_ref().unwrap();
    assert_eq!(ens.trees.len(), 100);
    assert!(ens.trees.iter().all(|t| t.nodes.len() <= 127));
}

/// Same input, same settings: the same model, bit for bit; another seed
/// with subsampling gives another model.
#[test]
fn training_is_deterministic() {
    let train = load(&sample("train.csv"), "diagnosis");
    let s = GbdtSettings {
        subsample: 0.8,
        colsample: 0.5,
        seed: 3,
        ..small()
    };
    let a = fit(&train, &s);
    let b = fit(&train, &s);
    assert_eq!(
        serde_json::to_string(&a.ensemble).unwrap(),
        serde_json::to_string(&b.ensemble).unwrap()
    );
    let c = fit(&train, &GbdtSettings { seed: 4, ..s });
    assert_ne!(a.ensemble, c.ensemble);
}

/// Three sites, each with its own rows, summing their integer vectors (bin
/// round and every histogram round), grow exactly the pooled trees: the
/// seam a federation drives. Every round's length is the one the settings
/// and the columns give in advance; halfway, site 0 restarts from its
/// serialized grower and its rows rebuilt.
fn federate(ds: &Dataset, s: GbdtSettings) -> fedhe::model::Ensemble {
    let head = Head::for_target(&ds.label);
    let regression = head == Head::Squared;
    let stats = RawStats::of(&ds.columns, &ds.x, regression.then_some(&ds.y));
    let y: Vec<f64> = match stats.target {
        Some((sum, sq)) => {
            let t = fedhe::model::TargetScaling::from_moments(stats.rows, sum, sq);
            ds.y.iter().map(|&v| t.scale(v)).collect()
        }
        None => ds.y.to_vec(),
    };
    let plan = BinPlan::new(&ds.columns, &stats);
    let parts: Vec<Vec<usize>> = (0..3)
        .map(|p| (0..ds.rows()).filter(|i| i % 3 == p).collect())
        .collect();
    let mut fine = vec![0i64; fedhe::model::gbdt::fine_len(&plan)];
    for p in &parts {
        let x = ds.x.select(ndarray::Axis(0), p);
        for (a, b) in fine.iter_mut().zip(fine_histogram(&plan, x.view())) {
            *a += b;
        }
    }
    assert_eq!(fine, fine_histogram(&plan, ds.x.view()));
    let c = cuts(&plan, &fine, s.bins);
    let mut growers: Vec<Grower> = (0..3)
        .map(|_| Grower::new(s, head, c.clone()).unwrap())
        .collect();
    let site_rows = |g: &Grower, p: &[usize]| {
        let x = ds.x.select(ndarray::Axis(0), p);
        let ys: Vec<f64> = p.iter().map(|&i| y[i]).collect();
        SiteRows::new(g, x.view(), &ys).unwrap()
    };
    let mut rows: Vec<SiteRows> = parts
        .iter()
        .zip(&growers)
        .map(|(p, g)| site_rows(g, p))
        .collect();
    let widths = plan.slot_widths(s.bins);
    let mut rounds = 0;
    while let Some(len) = growers[0].round_len() {
        let level = (rounds % s.depth as u64) as usize;
        assert_eq!(len, Grower::level_len(head, &widths, level));
        assert!(len <= Grower::max_round_len(&s, head, &widths));
        let mut sum = vec![0i64; len];
        for (g, r) in growers.iter().zip(&rows) {
            for (a, b) in sum.iter_mut().zip(g.local(r)) {
                *a += b;
            }
        }
        for (g, r) in growers.iter_mut().zip(rows.iter_mut()) {
            g.take(&sum, r).unwrap();
        }
        rounds += 1;
        if rounds == Grower::rounds(&s) / 2 + 1 {
            let json = serde_json::to_string(&growers[0]).unwrap();
            growers[0] = serde_json::from_str(&json).unwrap();
            rows[0] = site_rows(&growers[0], &parts[0]);
        }
    }
    assert_eq!(rounds, Grower::rounds(&s));
    let federated: Vec<_> = growers.into_iter().map(Grower::finish).collect();
    assert!(federated.iter().all(|e| *e == federated[0]));
    federated.into_iter().next().unwrap()
}

/// Three sites' trees when site 2 leaves at `(iteration, level)` (0-based):
/// with `close`, sites 0 and 1 take that level's sum as the sign to close
/// the iteration at the levels before it ([`Grower::close_iteration`]), as
/// the federation's tree rounds do; without it they go on with the levels
/// summed so far (what a federation did before).
fn leave(ds: &Dataset, s: GbdtSettings, at: (usize, usize), close: bool) -> fedhe::model::Ensemble {
    let head = Head::for_target(&ds.label);
    let stats = RawStats::of(&ds.columns, &ds.x, (head == Head::Squared).then_some(&ds.y));
    let plan = BinPlan::new(&ds.columns, &stats);
    let c = cuts(&plan, &fine_histogram(&plan, ds.x.view()), s.bins);
    let y: Vec<f64> = match stats.target {
        Some((sum, sq)) => {
            let t = fedhe::model::TargetScaling::from_moments(stats.rows, sum, sq);
            ds.y.iter().map(|&v| t.scale(v)).collect()
        }
        None => ds.y.to_vec(),
    };
    let parts: Vec<Vec<usize>> = (0..3)
        .map(|p| (0..ds.rows()).filter(|i| i % 3 == p).collect())
        .collect();
    let mut growers: Vec<Grower> = (0..3)
        .map(|_| Grower::new(s, head, c.clone()).unwrap())
        .collect();
    let mut rows: Vec<SiteRows> = parts
        .iter()
        .zip(&growers)
        .map(|(p, g)| {
            let x = ds.x.select(ndarray::Axis(0), p);
            let ys: Vec<f64> = p.iter().map(|&i| y[i]).collect();
            SiteRows::new(g, x.view(), &ys).unwrap()
        })
        .collect();
    let (mut level, mut gone, mut closed) = (0, false, false);
    while let Some(len) = growers[0].round_len() {
        let iteration = growers[0].iterations_done();
        gone |= (iteration, level) >= at;
        let active = if gone { 2 } else { 3 };
        if close && !closed && (iteration, level) == at && level > 0 {
            closed = true;
            for (g, r) in growers.iter_mut().zip(rows.iter_mut()).take(2) {
                g.close_iteration(r);
            }
            level = 0;
            assert!(growers[0].at_roots());
            assert_eq!(growers[0].iterations_done(), iteration + 1);
            continue;
        }
        let mut sum = vec![0i64; len];
        for (g, r) in growers.iter().zip(&rows).take(active) {
            for (a, b) in sum.iter_mut().zip(g.local(r)) {
                *a += b;
            }
        }
        for (g, r) in growers.iter_mut().zip(rows.iter_mut()).take(active) {
            g.take(&sum, r).unwrap();
        }
        level = if growers[0].at_roots() { 0 } else { level + 1 };
    }
    growers.swap_remove(0).finish()
}

/// Depth of a tree's deepest leaf (the root's depth 0).
fn depth(t: &fedhe::model::gbdt::Tree, at: u32) -> usize {
    match &t.nodes[at as usize] {
        Node::Split { left, right, .. } => 1 + depth(t, *left).max(depth(t, *right)),
        Node::Leaf { .. } => 0,
    }
}

/// A site that leaves mid-tree: the others close that iteration at the
/// levels summed by every root site (leaves from the sums its last split
/// gave), so its trees are the first levels of the trees all three sites
/// would have grown; the iterations before are untouched, the ones after
/// sum the two; going on with the levels summed so far gives other trees.
#[test]
fn an_iteration_closed_without_a_site_keeps_the_levels_every_site_summed() {
    let s = GbdtSettings {
        trees: 6,
        depth: 4,
        ..GbdtSettings::default()
    };
    for (file, label) in [
        ("train.csv", "diagnosis"),
        ("wine.csv", "cultivar"),
        ("penguins.csv", "body_mass_g"),
    ] {
        let ds = load(&sample(file), label);
        let closed = leave(&ds, s, (2, 2), true);
        let mixed = leave(&ds, s, (2, 2), false);
        let all = leave(&ds, s, (usize::MAX, 0), false);
        let k = closed.outputs;
        assert_eq!(closed.trees.len(), 6 * k, "{file}");
        assert_eq!(closed.trees[..2 * k], all.trees[..2 * k], "{file}");
        assert_ne!(closed, mixed, "{file}");
        for t in 2 * k..3 * k {
            let c = &closed.trees[t];
            assert!(depth(c, 0) <= 2, "{file}: tree {t}");
            // Its splits are the levels every site summed, node for node.
            for (i, n) in c.nodes.iter().enumerate() {
                if matches!(n, Node::Split { .. }) {
                    assert_eq!(
                        Some(n),
                        all.trees[t].nodes.get(i),
                        "{file}: tree {t} node {i}"
                    );
                }
            }
        }
        assert!(
            closed.trees[2 * k..3 * k] != all.trees[2 * k..3 * k],
            "{file}"
        );
    }
}

/// Binary, multi-class and regression (with categories and missing cells):
/// three sites' summed histograms give the pooled trees, bit for bit.
#[test]
fn sites_summing_histograms_grow_the_pooled_trees() {
    let s = small();
    for (file, label) in [
        ("train.csv", "diagnosis"),
        ("wine.csv", "cultivar"),
        ("penguins.csv", "body_mass_g"),
    ] {
        let ds = load(&sample(file), label);
        let federated = federate(&ds, s);
        let pooled = fit(&ds, &s);
        assert_eq!(pooled.ensemble.as_ref(), Some(&federated), "{file}");
    }
}

/// A table whose signal is in a category and in missing cells: the trees
/// find both (categorical set splits, learned default directions).
#[test]
fn categories_and_missing_cells_carry_signal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.csv");
    let mut text = String::from("colour,reading,noise,label\n");
    let colours = ["red", "green", "blue", "amber", "grey"];
    for i in 0..600u32 {
        let c = colours[(i * 7 % 5) as usize];
        let missing = i % 4 == 0;
        let reading = if missing {
            String::new()
        } else {
            format!("{}", (i * 37 % 100) as f64 / 10.0)
        };
        let noise = (i * 53 % 17) as f64;
        // Positive: green or blue, or a missing reading.
        let y = u8::from(c == "green" || c == "blue" || missing);
        text += &format!("{c},{reading},{noise},{y}\n");
    }
    std::fs::write(&path, text).unwrap();
    let ds = load(&path, "label");
    let at = |n: &str| ds.feature_names.iter().position(|f| f == n).unwrap();
    let (colour, reading, noise) = (at("colour"), at("reading"), at("noise"));
    assert!(matches!(
        ds.columns[colour],
        fedhe::data::RawColumn::Categorical { .. }
    ));
    let m = fit(&ds, &small());
    let e = m.evaluate(&ds.x, &ds.y.to_vec()).unwrap();
    let fedhe::model::Evaluation::Binary(b) = e else {
        panic!()
    };
    assert_eq!(b.accuracy, 1.0);
    let ens = m.ensemble.as_ref().unwrap();
    let splits = || ens.trees.iter().flat_map(|t| &t.nodes);
    assert!(splits().any(|n| matches!(
        n,
        Node::Split {
            rule: fedhe::model::gbdt::Rule::In { .. },
            ..
        }
    )));
    assert!(splits().any(|n| matches!(
        n,
        Node::Split {
            feature,
            default_left: true,
            ..
        } if *feature as usize == reading
    )));
    let imp = ens.importance();
    assert!((imp.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    assert!(
        imp[noise] < imp[colour] && imp[noise] < imp[reading],
        "importance {imp:?}"
    );
}

/// The model file holds splits, default directions and leaf values only
/// (no hessian sums, counts or covers), and reads back equal.
#[test]
fn model_file_holds_no_node_statistics() {
    let train = load(&sample("train.csv"), "diagnosis");
    let m = fit(&train, &small());
    let json = m.to_json().unwrap();
    for word in ["hess", "\"h\"", "count", "cover", "\"g\"", "grad", "sum"] {
        assert!(!json.contains(word), "the model file has {word}");
    }
    let back = ModelFile::from_json(&json, "m.json").unwrap();
    assert_eq!(back, m);
    let mut bad: serde_json::Value = serde_json::from_str(&json).unwrap();
    bad["ensemble"]["trees"][0]["nodes"][0]["left"] = 0.into();
    let e = ModelFile::from_json(&bad.to_string(), "bad.json").unwrap_err();
    assert!(e.to_string().contains("out of range"), "{e}");
}

fn fixture() -> Vec<serde_json::Value> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/xgboost_reference.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// `fedhe train --model gbdt` and `fedhe predict` through the real binary
/// on the same splits as the XGBoost fixture; returns the test figures.
fn train_and_predict(dir: &Path, name: &str, data: &str, label: &str, task: &str) -> String {
    let out = dir.join(name);
    let o = fedhe(&[
        "split",
        "--data",
        data,
        "--label",
        label,
        "--task",
        task,
        "--clients",
        "4",
        "--seed",
        "42",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let model = out.join("m.json");
    let o = fedhe(&[
        "train",
        "--data",
        out.join("train.csv").to_str().unwrap(),
        "--label",
        label,
        "--task",
        task,
        "--model",
        "gbdt",
        "--out",
        model.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let so = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(so.contains("600 histogram rounds"), "{so}");
    let preds = out.join("p.csv");
    let o = fedhe(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--data",
        out.join("test.csv").to_str().unwrap(),
        "--out",
        preds.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let test_rows = std::fs::read_to_string(out.join("test.csv"))
        .unwrap()
        .lines()
        .count();
    let pred_rows = std::fs::read_to_string(&preds).unwrap().lines().count();
    assert_eq!(pred_rows, test_rows);
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The figure `key` of a `fedhe predict` table line starting with `label`.
fn figure(table: &str, label: &str) -> f64 {
    table
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {label} in\n{table}"))
}

/// The data sets of the XGBoost fixture: name, file, label, task.
const SETS: [(&str, &str, &str, &str); 7] = [
    ("wdbc", "breast_cancer_wdbc.csv", "diagnosis", "binary"),
    ("wine", "wine.csv", "cultivar", "multiclass"),
    ("digits", "digits.csv", "digit", "multiclass"),
    ("penguins", "penguins.csv", "species", "multiclass"),
    ("diabetes", "diabetes.csv", "progression", "regression"),
    ("penguins_mass", "penguins.csv", "body_mass_g", "regression"),
    (
        "outliers",
        "../tests/fixtures/outliers/diamonds_like.csv",
        "price",
        "regression",
    ),
];

/// XGBoost's figure of a fixture row.
fn xgb(name: &str, key: &str) -> f64 {
    fixture()
        .iter()
        .find(|r| r["name"] == name)
        .and_then(|r| r[key].as_f64())
        .unwrap_or_else(|| panic!("xgboost_reference.json: no {key} for {name}"))
}

/// `ours` is within 0.005 of XGBoost's hist figure `key` on `name`, or of
/// its exact method's (on diabetes the two are 0.043 apart: 88 test rows).
fn near_xgb(name: &str, key: &str, ours: f64) {
    let hist = xgb(name, key);
    let exact = fixture()
        .iter()
        .find(|r| r["name"] == name)
        .and_then(|r| r[format!("exact_{key}")].as_f64());
    let near = |x: f64| (ours - x).abs() <= 0.005 + 1e-9;
    assert!(
        near(hist) || exact.is_some_and(near),
        "{name}: {key} {ours:.4}, XGBoost hist {hist:.4}, exact {exact:?}"
    );
}

/// `fedhe train --model gbdt` then `fedhe predict` through the real binary,
/// on the splits of scripts/xgboost_comparison.sh: exit 0, the metrics
/// table, one prediction per test row, and test figures within 0.005 of
/// centralized XGBoost with the same settings (accuracy and AUC; accuracy;
/// R²). Binary, multi-class and regression; penguins has categorical
/// columns and missing cells. (Digits: below, its pixels are numbers.)
#[test]
fn cli_train_predict_within_half_a_hundredth_of_xgboost() {
    let dir = tempfile::tempdir().unwrap();
    for (name, file, label, task) in SETS {
        if name == "digits" {
            continue;
        }
        let data = sample(file);
        let table = train_and_predict(dir.path(), name, data.to_str().unwrap(), label, task);
        match task {
            "binary" => {
                near_xgb(name, "accuracy", figure(&table, "accuracy"));
                near_xgb(name, "auc", figure(&table, "roc_auc"));
            }
            "multiclass" => near_xgb(name, "accuracy", figure(&table, "accuracy")),
            _ => near_xgb(name, "r2", figure(&table, "r2 ")),
        }
    }
}

/// Digits (10 classes, 64 numeric pixel columns) within 0.005 of XGBoost's
/// accuracy, read with every column numeric (as the reference does).
#[test]
fn digits_within_half_a_hundredth_of_xgboost() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("digits");
    let o = fedhe(&[
        "split",
        "--data",
        sample("digits.csv").to_str().unwrap(),
        "--label",
        "digit",
        "--task",
        "multiclass",
        "--clients",
        "4",
        "--seed",
        "42",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let opts = CsvOptions {
        label: Some("digit".into()),
        target: fedhe::data::TargetSpec::Classes(None),
        ..CsvOptions::default()
    };
    let train = load_csv(&out.join("train.csv"), &opts).unwrap().dataset;
    let m = fit(&train, &GbdtSettings::default());
    let test = load_csv(&out.join("test.csv"), &m.csv_options())
        .unwrap()
        .dataset;
    let fedhe::model::Evaluation::Multiclass(e) = m.evaluate(&test.x, &test.y.to_vec()).unwrap()
    else {
        panic!()
    };
    eprintln!("digits: accuracy {:.4}", e.accuracy);
    near_xgb("digits", "accuracy", e.accuracy);
}
