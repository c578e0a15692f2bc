//! Data met at predict time that training did not show: integer columns
//! whose site file samples a wider range (digits' pixels), a category the
//! training file lacks, and the notes on missing cells per model kind. The
//! real `fedhe` binary on real files.

use std::path::Path;
use std::process::Output;

use fedhe::data::{CategoricalSpec, CsvOptions, TargetSpec, load_csv};
use fedhe::model::{ModelFile, score_csv};

use super::common::fedhe;

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The `accuracy` figure `fedhe predict` prints.
fn accuracy(o: &Output) -> f64 {
    let text = stdout(o);
    text.lines()
        .find_map(|l| l.strip_prefix("accuracy"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no accuracy line in {text}"))
}

/// The reproduction: digits split as the comparison scripts split it, a
/// model trained on one site's file, the test file scored. The site file's
/// pixel columns (integers 0..16) were proposed as categories from the few
/// values that file holds, and `fedhe predict` stopped at the first test
/// value outside them, for every model kind.
#[test]
fn digits_trained_on_a_site_file_scores_the_test_file() {
    let d = tempfile::tempdir().unwrap();
    let o = fedhe(&[
        "split",
        "--data",
        "sample_data/digits.csv",
        "--label",
        "digit",
        "--task",
        "multiclass",
        "--clients",
        "4",
        "--seed",
        "42",
        "--out",
        path(d.path()),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let site = d.path().join("clients/client_1.csv");
    let test = d.path().join("test.csv");
    let kinds: [(&str, &[&str], f64); 2] = [
        ("linear", &[], 0.9),
        ("gbdt", &["--trees", "20", "--depth", "4"], 0.8),
    ];
    for (kind, extra, floor) in kinds {
        let model = d.path().join(format!("{kind}.json"));
        let mut args = vec![
            "train",
            "--data",
            path(&site),
            "--label",
            "digit",
            "--model",
            kind,
            "--out",
            path(&model),
        ];
        args.extend_from_slice(extra);
        let o = fedhe(&args);
        let notes = stderr(&o);
        assert!(o.status.success(), "{kind}: {notes}");
        assert!(
            !notes.contains("categorical"),
            "{kind}: a pixel column was made categorical: {notes}"
        );
        let saved = ModelFile::load(&model).unwrap();
        let categorical = saved
            .encoder()
            .columns
            .iter()
            .filter(|c| matches!(c, fedhe::data::EncodedColumn::Categorical { .. }))
            .count();
        assert_eq!(categorical, 0, "{kind}");
        let o = fedhe(&["predict", "--model", path(&model), "--data", path(&test)]);
        assert!(o.status.success(), "{kind}: {}", stderr(&o));
        let acc = accuracy(&o);
        assert!(acc >= floor, "{kind}: test accuracy {acc}");
    }
}

/// A few-valued integer column whose values each fill many rows (a year, a
/// code) is still proposed as categories; one with rare values is a number.
#[test]
fn integer_columns_are_categories_only_when_every_value_is_common() {
    let d = tempfile::tempdir().unwrap();
    let csv = d.path().join("t.csv");
    let mut text = String::from("year,score,label\n");
    for i in 0..60 {
        // year: 3 values, 20 rows each; score: mostly 0, a few rare values.
        let year = 2007 + i % 3;
        let score = match i {
            7 => 5,
            19 => 9,
            33 => 2,
            _ => 0,
        };
        text.push_str(&format!("{year},{score},{}\n", i % 2));
    }
    std::fs::write(&csv, text).unwrap();
    let schema = fedhe::data::profile::auto_schema(
        &csv,
        &CsvOptions {
            label: Some("label".into()),
            ..CsvOptions::default()
        },
        Some("label"),
    )
    .unwrap();
    let cats: Vec<&str> = schema
        .options
        .categorical
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(cats, ["year"], "{}", schema.notes.join("\n"));
    // Proposed from one file: a value another file holds is "(other)".
    assert!(schema.options.categorical[0].other);
}

/// A training table with a text column, and a file to score holding a
/// value of that column the training rows never had (line 3, "Paris").
fn city_tables(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let train = dir.join("train.csv");
    let mut text = String::from("age,city,label\n");
    for i in 0..80 {
        let city = ["Oslo", "Bergen", "Tromso"][i % 3];
        let age = 20 + (i * 7) % 50;
        let label = u8::from(age > 40 || city == "Oslo");
        text.push_str(&format!("{age},{city},{label}\n"));
    }
    std::fs::write(&train, text).unwrap();
    let test = dir.join("new.csv");
    std::fs::write(
        &test,
        "age,city,label\n30,Oslo,1\n55,Paris,1\n25,Bergen,0\n61,Paris,1\n",
    )
    .unwrap();
    (train, test)
}

/// A model trained without a plan reads a category its training file
/// lacked as "(other)" (every kind); trees do so even from a model file
/// without an "(other)" input.
#[test]
fn an_unseen_category_is_scored_as_other() {
    let d = tempfile::tempdir().unwrap();
    let (train, test) = city_tables(d.path());
    for kind in ["linear", "mlp", "gbdt"] {
        let model = d.path().join(format!("{kind}.json"));
        let preds = d.path().join(format!("{kind}.csv"));
        let o = fedhe(&[
            "train",
            "--data",
            path(&train),
            "--label",
            "label",
            "--model",
            kind,
            "--out",
            path(&model),
        ]);
        assert!(o.status.success(), "{kind}: {}", stderr(&o));
        let o = fedhe(&[
            "predict",
            "--model",
            path(&model),
            "--data",
            path(&test),
            "--out",
            path(&preds),
        ]);
        assert!(o.status.success(), "{kind}: {}", stderr(&o));
        let rows = std::fs::read_to_string(&preds).unwrap();
        assert_eq!(rows.lines().count(), 5, "{kind}: {rows}");
        if kind != "gbdt" {
            let saved = ModelFile::load(&model).unwrap();
            assert!(
                saved.feature_names.iter().any(|f| f == "city=(other)"),
                "{kind}: {:?}",
                saved.feature_names
            );
        }
    }
    // Trees from a table read with a closed category list (as a plan with
    // unknown_categories = "error" reads it): a split sends every code past
    // the categories the "(other)" way, so the new value is scored.
    let closed = CsvOptions {
        label: Some("label".into()),
        target: TargetSpec::Binary,
        categorical: vec![CategoricalSpec {
            name: "city".into(),
            categories: None,
            other: false,
        }],
        ..CsvOptions::default()
    };
    let ds = load_csv(&train, &closed).unwrap().dataset;
    let settings = fedhe::model::GbdtSettings {
        trees: 10,
        depth: 3,
        ..fedhe::model::GbdtSettings::default()
    };
    let fit = fedhe::model::gbdt::fit_dataset(&ds, &settings, Vec::new(), vec![], &mut |_, _| {
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    let scored = score_csv(&fit.model, &test).unwrap();
    assert_eq!(scored.rows(), 4);
}

/// A linear model without an "(other)" input (trained under a plan that
/// refuses unknown categories) refuses the new value once, naming the
/// file, line, column and value, and what the model lacks.
#[test]
fn an_unseen_category_without_other_is_one_located_error() {
    let d = tempfile::tempdir().unwrap();
    let (train, test) = city_tables(d.path());
    let closed = CsvOptions {
        label: Some("label".into()),
        target: TargetSpec::Binary,
        categorical: vec![CategoricalSpec {
            name: "city".into(),
            categories: None,
            other: false,
        }],
        ..CsvOptions::default()
    };
    let ds = load_csv(&train, &closed).unwrap().dataset;
    let settings = fedhe::session::LocalTraining {
        architecture: fedhe::model::Architecture::Linear,
        train: fedhe::model::TrainConfig::default(),
        validation_share: 0.0,
        missing: fedhe::data::MissingPolicy::default(),
        missing_tokens: Vec::new(),
        dp: None,
    };
    let run = fedhe::session::train_local(&ds, &settings, vec![], &mut |_| {
        std::ops::ControlFlow::Continue(())
    })
    .unwrap();
    assert!(
        !run.model
            .feature_names
            .iter()
            .any(|f| f.contains("(other)"))
    );
    let model = d.path().join("closed.json");
    run.model.save(&model).unwrap();
    let o = fedhe(&["predict", "--model", path(&model), "--data", path(&test)]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("new.csv:3")
            && e.contains("column 2 (\"city\")")
            && e.contains("\"Paris\"")
            && e.contains("the model was trained on")
            && e.contains("no \"(other)\" input"),
        "{e}"
    );
    assert_eq!(e.matches("Paris").count(), 1, "said once: {e}");
    assert!(!e.contains("plan's categories"), "not a plan's error: {e}");
}

/// The note on a numeric column with missing cells says what the model
/// does with them: the mean for linear models, the trees' default branch
/// for gradient-boosted trees, both when the model is not chosen (split).
#[test]
fn the_missing_cells_note_follows_the_model_kind() {
    let d = tempfile::tempdir().unwrap();
    let csv = d.path().join("m.csv");
    let mut text = String::from("a,b,label\n");
    for i in 0..40 {
        let a = if i % 10 == 3 {
            String::new()
        } else {
            format!("{}.5", i % 17)
        };
        text.push_str(&format!("{a},{}.25,{}\n", (i * 3) % 11, i % 2));
    }
    std::fs::write(&csv, text).unwrap();
    let train = |kind: &str| {
        let o = fedhe(&[
            "train",
            "--data",
            path(&csv),
            "--label",
            "label",
            "--model",
            kind,
            "--trees",
            "5",
            "--out",
            path(&d.path().join(format!("{kind}.json"))),
        ]);
        assert!(o.status.success(), "{kind}: {}", stderr(&o));
        stderr(&o)
    };
    let linear = train("linear");
    assert!(
        linear.contains("column \"a\" numeric, 4 missing (imputed with the federation's mean)"),
        "{linear}"
    );
    let gbdt = train("gbdt");
    assert!(
        gbdt.contains("column \"a\" numeric, 4 missing (left missing: the trees send it down each split's learned default branch)"),
        "{gbdt}"
    );
    assert!(!gbdt.contains("mean"), "{gbdt}");
    let o = fedhe(&[
        "split",
        "--data",
        path(&csv),
        "--label",
        "label",
        "--clients",
        "2",
        "--out",
        path(&d.path().join("split")),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("linear and MLP models impute the federation's mean")
            && e.contains("default branch"),
        "{e}"
    );
}
