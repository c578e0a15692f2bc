//! The ONNX export against onnxruntime: tests/fixtures/onnx_reference.json
//! (scripts/onnx_reference.py) holds onnxruntime's outputs for the ONNX
//! files `fedhe export` makes of the committed models in
//! tests/fixtures/onnx/, on the raw CSVs. Here the real `fedhe export`
//! makes them again — byte for byte what onnxruntime ran — and FedHE's own
//! scoring (`fedhe predict`'s) must give the same outputs within 1e-5.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use fedhe::data::{CategoricalMissing, EncodedColumn, Target, TaskKind};
use fedhe::export::{ExportError, InputKind, to_onnx};
use fedhe::model::gbdt::{Node, Rule};
use fedhe::model::{Architecture, ModelFile, score_csv};
use sha2::{Digest, Sha256};

use crate::common::fedhe;

const TOLERANCE: f64 = 1e-5;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture() -> serde_json::Value {
    let path = root().join("tests/fixtures/onnx_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<Vec<f64>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        })
        .collect()
}

/// `fedhe export` of `model` into `dir`; the ONNX bytes.
fn export_cli(model: &Path, dir: &Path, name: &str) -> Vec<u8> {
    let onnx = dir.join(format!("{name}.onnx"));
    let out = fedhe(&[
        "export",
        "--model",
        model.to_str().unwrap(),
        "--onnx",
        onnx.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "fedhe export {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("outputs: "), "{stdout}");
    std::fs::read(onnx).unwrap()
}

/// The largest difference between onnxruntime's outputs for one case and
/// FedHE's scoring of the same raw CSV; label mismatches fail at once.
fn max_difference(name: &str, model: &ModelFile, data: &Path, outputs: &serde_json::Value) -> f64 {
    let scored = score_csv(model, data).unwrap();
    let p = &scored.predictions;
    let mut worst: f64 = 0.0;
    match &model.target {
        Target::Regression { .. } => {
            let onnx = floats(&outputs["prediction"]);
            assert_eq!(onnx.len(), p.nrows(), "{name}: rows");
            for (i, row) in onnx.iter().enumerate() {
                worst = worst.max((row[0] - p[[i, 0]]).abs());
            }
        }
        target => {
            let onnx = floats(&outputs["probabilities"]);
            let labels = outputs["label"].as_array().unwrap();
            assert_eq!(onnx.len(), p.nrows(), "{name}: rows");
            for (i, row) in onnx.iter().enumerate() {
                // FedHE: binary P(positive); multi-class one per class.
                let fedhe: Vec<f64> = match target {
                    Target::Binary(_) => vec![1.0 - p[[i, 0]], p[[i, 0]]],
                    _ => p.row(i).to_vec(),
                };
                assert_eq!(row.len(), fedhe.len(), "{name}: classes");
                for (a, b) in row.iter().zip(&fedhe) {
                    worst = worst.max((a - b).abs());
                }
                let predicted = target.value_name(scored.predicted(i, target));
                assert_eq!(
                    labels[i],
                    predicted.as_str(),
                    "{name}: label of row {}",
                    i + 1
                );
            }
        }
    }
    worst
}

#[test]
fn onnxruntime_outputs_equal_fedhe_predict() {
    let fx = fixture();
    let dir = tempfile::tempdir().unwrap();
    let mut covered = BTreeSet::new();
    let (mut categories, mut missing) = (false, false);
    // The preprocessing choices of a plan: indicators, most frequent, other.
    let (mut indicator, mut most_frequent, mut other) = (false, false, false);
    let (mut category_split, mut tree_missing, mut tree_other) = (false, false, false);
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let model_path = root().join(case["model"].as_str().unwrap());
        let data = root().join(case["data"].as_str().unwrap());
        let bytes = export_cli(&model_path, dir.path(), name);
        let digest = format!("{:x}", Sha256::digest(&bytes));
        assert_eq!(
            digest, case["onnx_sha256"],
            "{name}: `fedhe export` no longer makes the ONNX file onnxruntime ran (a new \
             graph, or a new crate version in producer_version); run \
             scripts/onnx_reference.py to check it and refresh the fixture"
        );
        let model = ModelFile::load(&model_path).unwrap();
        let worst = max_difference(name, &model, &data, &case["outputs"]);
        // The figures of docs/export.md (`-- --nocapture`).
        println!("{name}: largest difference {worst:e}");
        assert!(
            worst <= TOLERANCE,
            "{name}: onnxruntime and fedhe differ by {worst:e}"
        );
        let kind = match model.architecture {
            Architecture::Linear => "linear",
            Architecture::Mlp { .. } => "MLP",
            Architecture::Gbdt => "gbdt",
        };
        covered.insert((model.target.kind().to_string(), kind));
        if let Some(e) = &model.ensemble {
            category_split |= e.trees.iter().flat_map(|t| &t.nodes).any(|n| {
                matches!(
                    n,
                    Node::Split {
                        rule: Rule::In { .. },
                        ..
                    }
                )
            });
        }
        let encoder = model.encoder();
        for c in &encoder.columns {
            match c {
                EncodedColumn::Numeric { indicator: i, .. } => indicator |= i,
                EncodedColumn::Categorical {
                    other: o, missing, ..
                } => {
                    categories = true;
                    other |= o;
                    most_frequent |= *missing == CategoricalMissing::MostFrequent;
                }
            }
        }
        let loaded = fedhe::data::load_csv(&data, &model.csv_options()).unwrap();
        let nan = loaded.dataset.x.iter().any(|v| v.is_nan());
        missing |= nan;
        tree_missing |= nan && model.ensemble.is_some();
        // An "(other)" code in the rows the trees read.
        tree_other |= model.ensemble.is_some()
            && encoder.columns.iter().enumerate().any(|(j, c)| match c {
                EncodedColumn::Categorical {
                    categories,
                    other: true,
                    ..
                } => loaded
                    .dataset
                    .x
                    .column(j)
                    .iter()
                    .any(|&v| v == categories.len() as f64),
                _ => false,
            });
    }
    for task in [TaskKind::Binary, TaskKind::Multiclass, TaskKind::Regression] {
        for kind in ["linear", "MLP", "gbdt"] {
            assert!(
                covered.contains(&(task.to_string(), kind)),
                "no {task} {kind} case in the fixture"
            );
        }
    }
    assert!(
        category_split && tree_missing && tree_other,
        "a gbdt case with a categorical split, missing cells and an (other) category"
    );
    assert!(
        categories && missing,
        "a case with categories and missing cells"
    );
    assert!(
        indicator && most_frequent && other,
        "a case with missing indicators, most-frequent imputation and an (other) slot"
    );
}

#[test]
fn export_declares_one_input_per_raw_column() {
    let model =
        ModelFile::load(&root().join("tests/fixtures/onnx/penguins_species_mlp.json")).unwrap();
    let export = to_onnx(&model).unwrap();
    let encoder = model.encoder();
    assert_eq!(export.inputs.len(), encoder.columns.len());
    for (input, column) in export.inputs.iter().zip(&encoder.columns) {
        let (name, kind) = match column {
            EncodedColumn::Numeric { name, .. } => (name, InputKind::Number),
            EncodedColumn::Categorical { name, .. } => (name, InputKind::Category),
        };
        assert_eq!((&input.name, input.kind), (name, kind));
    }
    assert!(export.inputs.iter().any(|i| i.kind == InputKind::Category));
    assert_eq!(export.outputs, vec!["label", "probabilities"]);
}

#[test]
fn export_refuses_a_column_named_like_an_output() {
    let path = root().join("tests/fixtures/onnx/diabetes_linear.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    json["preprocessing"]["columns"][0]["name"] = "prediction".into();
    let model = ModelFile::from_json(&json.to_string(), "renamed.json").unwrap();
    match to_onnx(&model) {
        Err(ExportError::NameClash { name, .. }) => assert_eq!(name, "prediction"),
        other => panic!("expected a name clash, got {other:?}"),
    }
}

#[test]
fn export_never_writes_over_the_model_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.json");
    std::fs::copy(root().join("tests/fixtures/onnx/wdbc_linear.json"), &model).unwrap();
    let before = std::fs::read(&model).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    // The same file spelled another way.
    let other = dir.path().join("sub/../m.json");
    let out = fedhe(&[
        "export",
        "--model",
        model.to_str().unwrap(),
        "--onnx",
        other.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is the same file as --model"), "{stderr}");
    assert_eq!(std::fs::read(&model).unwrap(), before);
}

#[test]
fn export_refuses_a_threshold_on_a_categorical_column() {
    let path = root().join("tests/fixtures/onnx/penguins_mass_gbdt.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    // Tree 0's root splits column 3 (species) by a category set.
    let root_rule = &mut json["ensemble"]["trees"][0]["nodes"][0]["rule"];
    assert_eq!(root_rule["kind"], "in");
    *root_rule = serde_json::json!({"kind": "below", "threshold": 1.5});
    let model = ModelFile::from_json(&json.to_string(), "edited.json").unwrap();
    match to_onnx(&model) {
        Err(ExportError::Shape(what)) => {
            assert!(
                what.contains("tree 0, node 0: a threshold on column 3 (\"species\")"),
                "{what}"
            );
        }
        other => panic!("expected a shape error, got {other:?}"),
    }
}
