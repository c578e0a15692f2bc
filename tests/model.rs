//! Logistic regression, metrics and model files.

use std::ops::ControlFlow;

use fedhe::data::{LabelMapping, Standardizer};
use fedhe::model::{
    ClassWeight, LogisticRegression, Metrics, ModelFile, Provenance, TrainConfig, roc_auc,
    roc_curve, train,
};
use ndarray::{Array1, Array2, array};

fn toy() -> (Array2<f64>, Array1<f64>) {
    let x = array![
        [0.5, -1.2, 0.3],
        [1.5, 0.2, -0.7],
        [-0.3, 0.8, 1.1],
        [2.0, -0.4, 0.0],
        [-1.1, -0.9, 0.6],
        [0.1, 1.7, -1.3],
    ];
    let y = array![1.0, 1.0, 0.0, 1.0, 0.0, 0.0];
    (x, y)
}

#[test]
fn gradient_matches_finite_differences() {
    let (x, y) = toy();
    let model = LogisticRegression {
        weights: array![0.3, -0.2, 0.5],
        bias: 0.1,
    };
    let rw = [2.0, 1.0, 0.5, 1.0, 1.5, 1.0];
    for (l2, w) in [(0.0, None), (0.1, Some(&rw[..]))] {
        let (gw, gb) = model.gradient(&x, &y, l2, w);
        let h = 1e-6;
        for j in 0..3 {
            let mut plus = model.clone();
            plus.weights[j] += h;
            let mut minus = model.clone();
            minus.weights[j] -= h;
            let fd = (plus.objective(&x, &y, l2, w) - minus.objective(&x, &y, l2, w)) / (2.0 * h);
            assert!((fd - gw[j]).abs() < 1e-7, "weight {j}: {fd} vs {}", gw[j]);
        }
        let mut plus = model.clone();
        plus.bias += h;
        let mut minus = model.clone();
        minus.bias -= h;
        let fd = (plus.objective(&x, &y, l2, w) - minus.objective(&x, &y, l2, w)) / (2.0 * h);
        assert!((fd - gb).abs() < 1e-7, "bias: {fd} vs {gb}");
    }
}

#[test]
fn full_batch_sgd_step_is_a_gradient_step() {
    let (x, y) = toy();
    let start = LogisticRegression {
        weights: array![0.3, -0.2, 0.5],
        bias: 0.1,
    };
    let cfg = TrainConfig {
        epochs: 1,
        lr: 0.5,
        batch_size: 6,
        l2: 0.01,
        seed: 1,
        class_weight: ClassWeight::None,
    };
    let (gw, gb) = start.gradient(&x, &y, cfg.l2, None);
    let mut m = start.clone();
    train(&mut m, &x, &y, &cfg, &mut |_| ControlFlow::Continue(())).unwrap();
    for j in 0..3 {
        let expected = start.weights[j] - cfg.lr * gw[j];
        assert!((m.weights[j] - expected).abs() < 1e-12);
    }
    assert!((m.bias - (start.bias - cfg.lr * gb)).abs() < 1e-12);
}

#[test]
fn training_is_deterministic_under_a_seed() {
    let (x, y) = toy();
    let cfg = TrainConfig {
        epochs: 20,
        batch_size: 2,
        ..TrainConfig::default()
    };
    let run = |cfg: &TrainConfig| {
        let mut m = LogisticRegression::zeros(3);
        train(&mut m, &x, &y, cfg, &mut |_| ControlFlow::Continue(())).unwrap();
        m
    };
    let a = run(&cfg);
    let b = run(&cfg);
    assert_eq!(a, b);
    let c = run(&TrainConfig { seed: 7, ..cfg });
    assert_ne!(a, c, "another seed shuffles differently");
}

#[test]
fn callback_sees_every_epoch_and_can_cancel() {
    let (x, y) = toy();
    let cfg = TrainConfig {
        epochs: 10,
        ..TrainConfig::default()
    };
    let mut seen = Vec::new();
    let mut m = LogisticRegression::zeros(3);
    let s = train(&mut m, &x, &y, &cfg, &mut |e| {
        seen.push(e.epoch);
        if e.epoch == 4 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .unwrap();
    assert_eq!(seen, vec![1, 2, 3, 4]);
    assert!(s.cancelled);
    assert_eq!(s.epochs_run, 4);
}

#[test]
fn loss_decreases_on_separable_data() {
    let (x, y) = toy();
    let cfg = TrainConfig {
        epochs: 200,
        lr: 0.5,
        batch_size: 2,
        l2: 0.0,
        ..TrainConfig::default()
    };
    let mut losses = Vec::new();
    let mut m = LogisticRegression::zeros(3);
    train(&mut m, &x, &y, &cfg, &mut |e| {
        losses.push(e.loss);
        ControlFlow::Continue(())
    })
    .unwrap();
    assert!(
        losses[199] < losses[0] * 0.5,
        "{} -> {}",
        losses[0],
        losses[199]
    );
    assert_eq!(losses.len(), 200);
}

#[test]
fn bad_settings_are_refused() {
    let (x, y) = toy();
    let mut m = LogisticRegression::zeros(3);
    let cfg = TrainConfig {
        batch_size: 0,
        ..TrainConfig::default()
    };
    let e = train(&mut m, &x, &y, &cfg, &mut |_| ControlFlow::Continue(())).unwrap_err();
    assert!(e.to_string().contains("batch size"));
    let mut wrong = LogisticRegression::zeros(2);
    let e = train(&mut wrong, &x, &y, &TrainConfig::default(), &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap_err();
    assert!(e.to_string().contains("shape"));
}

#[test]
fn metrics_equal_hand_computed_values() {
    let y = [1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0];
    let p = [0.9, 0.6, 0.4, 0.7, 0.2, 0.1, 0.3];
    let m = Metrics::compute(&y, &p);
    // Predicted positive: 0.9, 0.6, 0.7 -> tp 2, fp 1; fn 1 (0.4); tn 3.
    assert_eq!(
        (
            m.confusion.tp,
            m.confusion.fp,
            m.confusion.fn_,
            m.confusion.tn
        ),
        (2, 1, 1, 3)
    );
    assert!((m.accuracy - 5.0 / 7.0).abs() < 1e-12);
    assert!((m.precision - 2.0 / 3.0).abs() < 1e-12);
    assert!((m.recall - 2.0 / 3.0).abs() < 1e-12);
    assert!((m.f1 - 2.0 / 3.0).abs() < 1e-12);
    // Positive/negative pairs ranked correctly: 0.9 beats all 4, 0.6 beats 3,
    // 0.4 beats 2 (0.2, 0.1, 0.3 -> 3)... count: 4 + 3 + 3 = 10 of 12.
    assert!((m.roc_auc.unwrap() - 10.0 / 12.0).abs() < 1e-12);
    let ll: f64 = -(0.9f64.ln()
        + 0.6f64.ln()
        + 0.4f64.ln()
        + 0.3f64.ln()
        + 0.8f64.ln()
        + 0.9f64.ln()
        + 0.7f64.ln())
        / 7.0;
    assert!((m.log_loss - ll).abs() < 1e-12);
}

#[test]
fn auc_counts_ties_as_half_and_needs_both_classes() {
    assert_eq!(roc_auc(&[1.0, 0.0], &[0.5, 0.5]), Some(0.5));
    assert_eq!(roc_auc(&[1.0, 1.0], &[0.5, 0.7]), None);
    let m = Metrics::compute(&[0.0, 0.0], &[0.2, 0.9]);
    assert_eq!(m.roc_auc, None);
    assert_eq!(m.precision, 0.0);
    assert_eq!(m.recall, 0.0);
}

#[test]
fn roc_curve_runs_from_origin_to_one() {
    let pts = roc_curve(&[1.0, 0.0, 1.0, 0.0], &[0.9, 0.8, 0.4, 0.1]);
    assert_eq!(
        pts,
        vec![(0.0, 0.0), (0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (1.0, 1.0)]
    );
}

#[test]
fn model_file_round_trips_and_scores_identically() {
    let (x, y) = toy();
    let scaler = Standardizer::fit(&x);
    let xs = scaler.transformed(&x);
    let mut m = LogisticRegression::zeros(3);
    train(&mut m, &xs, &y, &TrainConfig::default(), &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    let file = ModelFile::new(
        vec!["a".into(), "b".into(), "c".into()],
        scaler,
        LabelMapping {
            column: "label".into(),
            positive: "1".into(),
            negative: "0".into(),
        },
        &m,
        Provenance::centralized(vec!["toy".into()], 6, fedhe::model::TrainConfig::default()),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.json");
    file.save(&path).unwrap();
    let back = ModelFile::load(&path).unwrap();
    assert_eq!(back, file);
    let p1 = file
        .model()
        .predict_proba(&file.standardization.transformed(&x));
    let p2 = back
        .model()
        .predict_proba(&back.standardization.transformed(&x));
    assert_eq!(p1, p2);
    assert!(back.provenance.created.ends_with('Z'));

    // Scoring a CSV matches columns by name, in any order, extra columns ignored.
    let csv = dir.path().join("score.csv");
    let mut text = String::from("c,extra,label,a,b\n");
    for (r, t) in x.rows().into_iter().zip(&y) {
        text += &format!("{},9,{},{},{}\n", r[2], t, r[0], r[1]);
    }
    std::fs::write(&csv, text).unwrap();
    let scored = fedhe::model::score_csv(&back, &csv).unwrap();
    assert_eq!(scored.probs, p1.to_vec());
    assert!(scored.notices.join(" ").contains("extra"));
    assert!(scored.metrics.is_some());

    // A missing feature column is named.
    std::fs::write(&csv, "a,c,label\n1,2,1\n").unwrap();
    let e = fedhe::model::score_csv(&back, &csv)
        .unwrap_err()
        .to_string();
    assert!(e.contains("feature column \"b\""), "{e}");
}

#[test]
fn corrupted_model_files_are_refused_with_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.json");
    for (text, reason) in [
        ("not json", "not JSON"),
        ("{}", "format"),
        (r#"{"format":"fedhe-model","version":99}"#, "version 99"),
        (
            r#"{"format":"fedhe-model","version":1,"feature_names":["a"],"standardization":{"mean":[0],"std":[1]},"label":{"column":"y","positive":"1","negative":"0"},"weights":[1,2],"bias":0,"provenance":{"kind":"x","data":[],"rows":0,"settings":{},"created":"","tool":""}}"#,
            "2 weights",
        ),
    ] {
        std::fs::write(&path, text).unwrap();
        let e = ModelFile::load(&path).unwrap_err().to_string();
        assert!(e.contains(reason), "{e} lacks {reason}");
        assert!(e.contains("m.json"));
    }
}

#[test]
fn model_files_with_free_form_provenance_still_load() {
    // As written by FedHE before typed provenance.
    let text = r#"{"format":"fedhe-model","version":1,"feature_names":["a"],"standardization":{"mean":[0.5],"std":[2.0]},"label":{"column":"y","positive":"1","negative":"0"},"weights":[1.5],"bias":-0.25,"provenance":{"kind":"federated","data":["x.csv"],"rows":10,"settings":{"rounds":3,"lr":0.1},"created":"2026-11-01T00:00:00Z","tool":"fedhe 0.1.0"}}"#;
    let m = ModelFile::from_json(text, "old.json").unwrap();
    assert_eq!(m.provenance.settings["rounds"], 3);
    assert_eq!(m.provenance.train, None);
    assert_eq!(m.weights, vec![1.5]);
    // And a typed one round-trips with its plan fingerprint.
    let p = Provenance::federated(
        fedhe::model::FEDERATED,
        vec!["x.csv".into()],
        10,
        fedhe::model::TrainConfig::default(),
        3,
        "00ff".into(),
        Some("http://agg:8080".into()),
    );
    let m2 = ModelFile {
        provenance: p.clone(),
        ..m
    };
    let back = ModelFile::from_json(&m2.to_json().unwrap(), "new.json").unwrap();
    assert_eq!(back.provenance, p);
    assert!(!m2.to_json().unwrap().contains("\"settings\""));
}
