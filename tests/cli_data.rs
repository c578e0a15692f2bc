//! The CLI on real files: split, train, predict.

use std::path::Path;
use std::process::{Command, Output};

fn fedhe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fedhe"))
        .args(args)
        .output()
        .expect("run fedhe")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn split_into(dir: &Path, extra: &[&str]) -> Output {
    let out = dir.to_str().unwrap();
    let mut args = vec![
        "split",
        "--data",
        "sample_data/breast_cancer_wdbc.csv",
        "--clients",
        "4",
        "--test-fraction",
        "0.2",
        "--seed",
        "42",
        "--out",
        out,
    ];
    args.extend_from_slice(extra);
    fedhe(&args)
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn label_counts(p: &Path) -> (usize, usize) {
    let text = read(p);
    let rows: Vec<&str> = text.lines().skip(1).collect();
    let pos = rows.iter().filter(|l| l.starts_with("1,")).count();
    (rows.len(), pos)
}

#[test]
fn help_describes_every_command() {
    let o = fedhe(&["--help"]);
    assert!(o.status.success());
    let text = stdout(&o);
    for cmd in ["split", "train", "predict", "bench"] {
        assert!(text.contains(cmd), "--help lacks {cmd}: {text}");
    }
}

#[test]
fn split_is_reproducible_stratified_and_matches_the_committed_sample() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let oa = split_into(a.path(), &[]);
    assert!(oa.status.success(), "{}", stderr(&oa));
    assert!(split_into(b.path(), &[]).status.success());
    let mut files = vec!["test.csv".to_string(), "train.csv".to_string()];
    files.extend((1..=4).map(|i| format!("clients/client_{i}.csv")));
    for f in &files {
        let fa = read(&a.path().join(f));
        assert_eq!(fa, read(&b.path().join(f)), "{f} differs between runs");
        assert_eq!(
            fa,
            read(&Path::new("sample_data").join(f)),
            "sample_data/{f} is stale"
        );
    }
    // Stratified: 569 rows, 212 positive -> test gets round(212 * 0.2) = 42
    // positives and round(357 * 0.2) = 71 negatives.
    assert_eq!(label_counts(&a.path().join("test.csv")), (113, 42));
    let mut total = (0, 0);
    for i in 1..=4 {
        let (n, p) = label_counts(&a.path().join(format!("clients/client_{i}.csv")));
        assert!((113..=114).contains(&n), "client {i}: {n} rows");
        assert!((42..=43).contains(&p), "client {i}: {p} positives");
        total = (total.0 + n, total.1 + p);
    }
    assert_eq!(total, (456, 170));
}

#[test]
fn dirichlet_split_skews_labels() {
    let d = tempfile::tempdir().unwrap();
    let o = split_into(d.path(), &["--split", "dirichlet:0.3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let fractions: Vec<f64> = (1..=4)
        .map(|i| {
            let (n, p) = label_counts(&d.path().join(format!("clients/client_{i}.csv")));
            p as f64 / n as f64
        })
        .collect();
    let spread = fractions.iter().cloned().fold(f64::MIN, f64::max)
        - fractions.iter().cloned().fold(f64::MAX, f64::min);
    assert!(spread > 0.2, "label fractions {fractions:?} are not skewed");
    let bad = split_into(d.path(), &["--split", "dirichlet:-1"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("alpha"));
}

#[test]
fn train_then_predict_reaches_the_accuracy_target() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("model.json");
    let preds = d.path().join("predictions.csv");
    let o = fedhe(&[
        "train",
        "--data",
        "sample_data/train.csv",
        "--label",
        "diagnosis",
        "--out",
        model.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("model written to"));
    let o = fedhe(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--data",
        "sample_data/test.csv",
        "--out",
        preds.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    let acc: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("accuracy"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no accuracy line in {text}"));
    assert!(acc >= 0.95, "test accuracy {acc}");
    let p = read(&preds);
    assert!(p.starts_with("row,probability,predicted,actual\n"));
    assert_eq!(p.lines().count(), 114);
}

#[test]
fn bad_csv_fails_with_a_located_message() {
    let d = tempfile::tempdir().unwrap();
    let csv = d.path().join("bad.csv");
    // The reproduction: a cell of 1e308 trained to a NaN model and exit 0.
    // Three rows of whole numbers: the column must not pass for an id.
    std::fs::write(&csv, "diagnosis,a\n1,2\n0,1e308\n1,4\n").unwrap();
    let o = fedhe(&[
        "train",
        "--data",
        csv.to_str().unwrap(),
        "--out",
        d.path().join("m.json").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(
        e.contains("bad.csv:3") && e.contains("1e308") && e.contains("±1e150"),
        "{e}"
    );
    assert!(!d.path().join("m.json").exists());
}

#[test]
fn simulate_saves_a_federated_model_that_predict_scores() {
    let d = tempfile::tempdir().unwrap();
    let model = d.path().join("federated.json");
    let metrics = d.path().join("rounds.csv");
    let o = fedhe(&[
        "simulate",
        "--data",
        "sample_data/breast_cancer_wdbc.csv",
        "--clients",
        "3",
        "--rounds",
        "5",
        "--epochs",
        "3",
        "--model-out",
        model.to_str().unwrap(),
        "--metrics-out",
        metrics.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read(&metrics).lines().count(), 6, "header + 5 rounds");
    let saved = fedhe::model::ModelFile::load(&model).unwrap();
    assert_eq!(saved.feature_names.len(), 30);
    assert_eq!(saved.target.column(), "diagnosis");
    assert!(saved.provenance.kind.starts_with("federated"));
    assert_eq!(saved.provenance.rows, 456);
    let o = fedhe(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--data",
        "sample_data/test.csv",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let acc: f64 = stdout(&o)
        .lines()
        .find_map(|l| l.strip_prefix("accuracy"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(acc >= 0.95, "federated model accuracy {acc}");
}

#[test]
fn split_never_overwrites_its_input_and_asks_before_replacing_outputs() {
    let d = tempfile::tempdir().unwrap();
    let o = split_into(d.path(), &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let train = d.path().join("train.csv");
    let before = read(&train);
    // Splitting d/train.csv into d/ would write d/train.csv: refused.
    let o = fedhe(&[
        "split",
        "--data",
        train.to_str().unwrap(),
        "--out",
        d.path().to_str().unwrap(),
        "--force",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("is the same file as --data"),
        "{}",
        stderr(&o)
    );
    assert_eq!(read(&train), before, "the input is untouched");
    // Existing outputs are only replaced with --force.
    let client_1 = d.path().join("clients/client_1.csv");
    let first = read(&client_1);
    let o = split_into(d.path(), &["--split", "dirichlet:0.3"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("--force"), "{}", stderr(&o));
    assert_eq!(read(&client_1), first);
    let o = split_into(d.path(), &["--split", "dirichlet:0.3", "--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(read(&client_1), first);
}
