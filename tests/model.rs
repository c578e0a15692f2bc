//! Models of every kind and task, metrics and model files.

use std::ops::ControlFlow;

use fedhe::data::{LabelMapping, Standardizer, Target};
use fedhe::model::{
    Architecture, ClassWeight, Evaluation, Head, Metrics, Model, ModelFile, MulticlassMetrics,
    Provenance, RegressionMetrics, TargetScaling, TrainConfig, build, roc_auc, roc_curve, train,
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

/// Labels of the toy rows for each head.
fn labels(head: Head) -> Array1<f64> {
    match head {
        Head::Logistic => toy().1,
        Head::Softmax { .. } => array![2.0, 0.0, 1.0, 2.0, 0.0, 1.0],
        // Nearly 0.8 a − 0.5 b + 0.3 c + 0.1.
        Head::Squared => array![1.2, 1.0, -0.2, 1.9, -0.1, -1.1],
    }
}

/// Every model kind with every task head.
fn every_model() -> Vec<(Architecture, Head)> {
    let heads = [Head::Logistic, Head::Softmax { classes: 3 }, Head::Squared];
    let archs = [
        Architecture::Linear,
        Architecture::Mlp { hidden: vec![4] },
        Architecture::Mlp { hidden: vec![5, 3] },
    ];
    archs
        .iter()
        .flat_map(|a| heads.iter().map(move |h| (a.clone(), *h)))
        .collect()
}

/// A model with non-trivial parameters (linear models start at zero).
fn jittered(arch: &Architecture, head: Head) -> Box<dyn Model> {
    let mut m = build(arch, 3, head, 11).unwrap();
    let p: Vec<f64> = m
        .params()
        .iter()
        .enumerate()
        .map(|(i, v)| v + 0.3 * ((i as f64 * 1.7).sin()))
        .collect();
    m.set_params(&p).unwrap();
    m
}

#[test]
fn every_model_gradient_matches_finite_differences() {
    let (x, _) = toy();
    for (arch, head) in every_model() {
        let y = labels(head).to_vec();
        let m = jittered(&arch, head);
        for l2 in [0.0, 0.1] {
            let (_, grad) = m.objective_gradient(&x, &y, l2);
            let h = 1e-6;
            for (j, g) in grad.iter().enumerate() {
                let mut plus = m.clone();
                let mut minus = m.clone();
                let mut p = m.params().to_vec();
                p[j] += h;
                plus.set_params(&p).unwrap();
                p[j] -= 2.0 * h;
                minus.set_params(&p).unwrap();
                let fd = (plus.objective_gradient(&x, &y, l2).0
                    - minus.objective_gradient(&x, &y, l2).0)
                    / (2.0 * h);
                assert!(
                    (fd - g).abs() < 1e-6 * (1.0 + g.abs()),
                    "{arch} {head:?} l2 {l2}, parameter {j}: finite difference {fd} vs gradient {g}"
                );
            }
        }
    }
}

#[test]
fn full_batch_sgd_step_is_a_gradient_step() {
    let (x, _) = toy();
    for (arch, head) in every_model() {
        let y = labels(head);
        let start = jittered(&arch, head);
        let cfg = TrainConfig {
            epochs: 1,
            lr: 0.5,
            batch_size: 6,
            l2: 0.01,
            momentum: 0.0,
            seed: 1,
            optimizer: Default::default(),
            class_weight: ClassWeight::None,
            dp: None,
        };
        let (_, g) = start.objective_gradient(&x, &y.to_vec(), cfg.l2);
        let mut m = start.clone();
        train(&mut *m, &x, &y, &cfg, &mut |_| ControlFlow::Continue(())).unwrap();
        for (j, (after, before)) in m.params().iter().zip(start.params()).enumerate() {
            let expected = before - cfg.lr * g[j];
            assert!(
                (after - expected).abs() < 1e-12,
                "{arch} {head:?} parameter {j}: {after} vs {expected}"
            );
        }
    }
}

#[test]
fn every_model_is_deterministic_under_a_seed() {
    let (x, _) = toy();
    for (arch, head) in every_model() {
        let y = labels(head);
        let cfg = TrainConfig {
            epochs: 20,
            batch_size: 2,
            momentum: 0.5,
            ..TrainConfig::default()
        };
        let run = |cfg: &TrainConfig, init: u64| {
            let mut m = build(&arch, 3, head, init).unwrap();
            train(&mut *m, &x, &y, cfg, &mut |_| ControlFlow::Continue(())).unwrap();
            m.params().to_vec()
        };
        let a = run(&cfg, 5);
        assert_eq!(a, run(&cfg, 5), "{arch} {head:?}: same seeds, same model");
        assert_ne!(
            a,
            run(
                &TrainConfig {
                    seed: 7,
                    ..cfg.clone()
                },
                5
            ),
            "{arch} {head:?}: another shuffling seed"
        );
        if arch != Architecture::Linear {
            assert_ne!(
                a,
                run(&cfg, 6),
                "{arch} {head:?}: another initialization seed"
            );
            let m1 = build(&arch, 3, head, 9).unwrap();
            let m2 = build(&arch, 3, head, 9).unwrap();
            assert_eq!(
                m1.params(),
                m2.params(),
                "every site starts from the same MLP"
            );
        }
    }
}

#[test]
fn callback_sees_every_epoch_and_can_cancel() {
    let (x, y) = toy();
    let cfg = TrainConfig {
        epochs: 10,
        ..TrainConfig::default()
    };
    let mut seen = Vec::new();
    let mut m = build(&Architecture::Linear, 3, Head::Logistic, 0).unwrap();
    let s = train(&mut *m, &x, &y, &cfg, &mut |e| {
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
fn every_model_learns_its_toy_task() {
    let (x, _) = toy();
    for (arch, head) in every_model() {
        let y = labels(head);
        let cfg = TrainConfig {
            epochs: 300,
            lr: 0.2,
            batch_size: 2,
            l2: 0.0,
            ..TrainConfig::default()
        };
        let mut losses = Vec::new();
        let mut m = build(&arch, 3, head, 3).unwrap();
        train(&mut *m, &x, &y, &cfg, &mut |e| {
            losses.push(e.loss);
            ControlFlow::Continue(())
        })
        .unwrap();
        // A smoke test (the gradients are checked above): the loss falls
        // well below where it started for every model and task.
        assert!(
            losses[299] < losses[0] * 0.8,
            "{arch} {head:?}: {} -> {}",
            losses[0],
            losses[299]
        );
    }
}

#[test]
fn a_client_without_some_classes_still_trains_all_outputs() {
    // Only classes 0 and 2 of 3: the softmax still has 3 outputs and class
    // 1's probability is driven down, not left undefined.
    let (x, _) = toy();
    let y = array![0.0, 2.0, 0.0, 2.0, 0.0, 2.0];
    let mut m = build(&Architecture::Linear, 3, Head::Softmax { classes: 3 }, 0).unwrap();
    train(&mut *m, &x, &y, &TrainConfig::default(), &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(m.params().len(), 3 * 3 + 3);
    let p = fedhe::model::predictions(&*m, &x);
    for row in p.rows() {
        assert!((row.sum() - 1.0).abs() < 1e-12);
        assert!(
            row[1] < 0.34,
            "absent class 1 gets less than its prior: {row}"
        );
    }
}

#[test]
fn bad_settings_are_refused() {
    let (x, y) = toy();
    let mut m = build(&Architecture::Linear, 3, Head::Logistic, 0).unwrap();
    let cfg = TrainConfig {
        batch_size: 0,
        ..TrainConfig::default()
    };
    let e = train(&mut *m, &x, &y, &cfg, &mut |_| ControlFlow::Continue(())).unwrap_err();
    assert!(e.to_string().contains("batch size"));
    let mut wrong = build(&Architecture::Linear, 2, Head::Logistic, 0).unwrap();
    let e = train(&mut *wrong, &x, &y, &TrainConfig::default(), &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap_err();
    assert!(e.to_string().contains("shape"));
    let e = build(&Architecture::Mlp { hidden: vec![] }, 3, Head::Logistic, 0).unwrap_err();
    assert!(e.to_string().contains("1 to 3 hidden layers"), "{e}");
    let e = build(
        &Architecture::Mlp {
            hidden: vec![4, 4, 4, 4],
        },
        3,
        Head::Squared,
        0,
    )
    .unwrap_err();
    assert!(e.to_string().contains("got 4"), "{e}");
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
fn multiclass_metrics_equal_hand_computed_values() {
    // actual:    0 0 1 1 1 2
    // predicted: 0 1 1 1 0 2
    let y = [0.0, 0.0, 1.0, 1.0, 1.0, 2.0];
    let p = vec![
        vec![0.7, 0.2, 0.1],
        vec![0.3, 0.6, 0.1],
        vec![0.1, 0.8, 0.1],
        vec![0.2, 0.5, 0.3],
        vec![0.5, 0.4, 0.1],
        vec![0.1, 0.1, 0.8],
    ];
    let m = MulticlassMetrics::compute(&y, &p, 3);
    assert_eq!(
        m.confusion,
        vec![vec![1, 1, 0], vec![1, 2, 0], vec![0, 0, 1]]
    );
    assert!((m.accuracy - 4.0 / 6.0).abs() < 1e-12);
    // class 0: precision 1/2, recall 1/2, F1 1/2; class 1: 2/3, 2/3, 2/3;
    // class 2: 1, 1, 1.
    let f = |c: usize| m.per_class[c];
    assert!((f(0).precision - 0.5).abs() < 1e-12 && (f(0).recall - 0.5).abs() < 1e-12);
    assert!((f(1).f1 - 2.0 / 3.0).abs() < 1e-12);
    assert_eq!((f(2).f1, f(2).support), (1.0, 1));
    assert!((m.macro_f1 - (0.5 + 2.0 / 3.0 + 1.0) / 3.0).abs() < 1e-12);
    assert!((m.weighted_f1 - (2.0 * 0.5 + 3.0 * 2.0 / 3.0 + 1.0) / 6.0).abs() < 1e-12);
    let ll =
        -(0.7f64.ln() + 0.3f64.ln() + 0.8f64.ln() + 0.5f64.ln() + 0.4f64.ln() + 0.8f64.ln()) / 6.0;
    assert!((m.log_loss - ll).abs() < 1e-12);
}

#[test]
fn regression_metrics_equal_hand_computed_values() {
    let actual = [1.0, 2.0, 3.0, 4.0];
    let predicted = [1.5, 1.5, 3.0, 5.0];
    let m = RegressionMetrics::compute(&actual, &predicted);
    // errors 0.5, -0.5, 0, 1: SSE 1.5, SAE 2; mean 2.5, SST 5.
    assert!((m.rmse - (1.5f64 / 4.0).sqrt()).abs() < 1e-12);
    assert!((m.mae - 0.5).abs() < 1e-12);
    assert!((m.r2 - (1.0 - 1.5 / 5.0)).abs() < 1e-12);
    assert!((m.rmse_std - (1.5f64 / 4.0).sqrt() / (5.0f64 / 4.0).sqrt()).abs() < 1e-12);
}

fn binary_target() -> Target {
    Target::Binary(LabelMapping {
        column: "label".into(),
        positive: "1".into(),
        negative: "0".into(),
    })
}

/// A trained model file of this kind and task over the toy rows.
fn toy_file(arch: &Architecture, target: Target) -> ModelFile {
    let (x, _) = toy();
    let head = Head::for_target(&target);
    let scaler = Standardizer::fit(&x);
    let mut y = labels(head);
    let scaling = (head == Head::Squared).then(|| TargetScaling::fit(&y.to_vec()));
    if let Some(t) = &scaling {
        y.mapv_inplace(|v| t.scale(v));
    }
    let mut m = build(arch, 3, head, 4).unwrap();
    train(
        &mut *m,
        &scaler.transformed(&x),
        &y,
        &TrainConfig::default(),
        &mut |_| ControlFlow::Continue(()),
    )
    .unwrap();
    ModelFile::new(
        fedhe::data::Encoder::numeric(&["a".into(), "b".into(), "c".into()]),
        scaler,
        target,
        scaling,
        &*m,
        Provenance::centralized(vec!["toy".into()], 6, TrainConfig::default()),
    )
}

#[test]
fn model_file_round_trips_and_scores_identically() {
    let (x, y) = toy();
    let file = toy_file(&Architecture::Linear, binary_target());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.json");
    file.save(&path).unwrap();
    let back = ModelFile::load(&path).unwrap();
    assert_eq!(back, file);
    let p1 = file.predict(&x).unwrap();
    assert_eq!(p1, back.predict(&x).unwrap());
    assert!(back.provenance.created.ends_with('Z'));

    // Scoring a CSV matches columns by name, in any order, extra columns ignored.
    let csv = dir.path().join("score.csv");
    let mut text = String::from("c,extra,label,a,b\n");
    for (r, t) in x.rows().into_iter().zip(&y) {
        text += &format!("{},9,{},{},{}\n", r[2], t, r[0], r[1]);
    }
    std::fs::write(&csv, text).unwrap();
    let scored = fedhe::model::score_csv(&back, &csv).unwrap();
    assert_eq!(scored.predictions, p1);
    assert!(scored.notices.join(" ").contains("extra"));
    assert!(matches!(scored.evaluation, Some(Evaluation::Binary(_))));

    // A missing feature column is named.
    std::fs::write(&csv, "a,c,label\n1,2,1\n").unwrap();
    let e = fedhe::model::score_csv(&back, &csv)
        .unwrap_err()
        .to_string();
    assert!(e.contains("feature column \"b\""), "{e}");
}

#[test]
fn every_kind_and_task_round_trips_through_the_model_file() {
    let (x, _) = toy();
    let classes = vec!["low".to_string(), "mid".into(), "high".into()];
    let targets = [
        binary_target(),
        Target::Multiclass {
            column: "label".into(),
            classes: classes.clone(),
        },
        Target::Regression {
            column: "label".into(),
        },
    ];
    let dir = tempfile::tempdir().unwrap();
    for arch in [
        Architecture::Linear,
        Architecture::Mlp { hidden: vec![6, 4] },
    ] {
        for target in &targets {
            let file = toy_file(&arch, target.clone());
            let path = dir.path().join("m.json");
            file.save(&path).unwrap();
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.contains("\"version\": 2"), "{text}");
            let back = ModelFile::load(&path).unwrap();
            assert_eq!(back, file, "{arch} {target:?}");
            assert_eq!(back.predict(&x).unwrap(), file.predict(&x).unwrap());

            // Predictions CSV by task.
            let csv = dir.path().join("s.csv");
            let head = Head::for_target(target);
            let y = labels(head);
            let mut text = String::from("a,b,c,label\n");
            for (r, t) in x.rows().into_iter().zip(&y) {
                text += &format!("{},{},{},{}\n", r[0], r[1], r[2], target.value_name(*t));
            }
            std::fs::write(&csv, text).unwrap();
            let scored = fedhe::model::score_csv(&back, &csv).unwrap();
            let out = dir.path().join("p.csv");
            fedhe::model::write_predictions(&back, &scored, &out).unwrap();
            let written = std::fs::read_to_string(&out).unwrap();
            let header = written.lines().next().unwrap();
            match target {
                Target::Binary(_) => assert_eq!(header, "row,probability,predicted,actual"),
                Target::Multiclass { .. } => {
                    assert_eq!(header, "row,predicted,p_low,p_mid,p_high,actual");
                    assert!(written.lines().nth(1).unwrap().ends_with(",high"));
                }
                Target::Regression { .. } => {
                    assert_eq!(header, "row,predicted,actual");
                    // Predictions are in the target's unit, not standardized:
                    // a trained regression lands near the labels' scale.
                    let e = scored.evaluation.clone().unwrap();
                    assert!(e.score() > 0.0, "{e:?}");
                }
            }
        }
    }
}

#[test]
fn version_1_files_still_load_and_score() {
    // A binary logistic model as FedHE wrote it before the model families.
    let text = r#"{"format":"fedhe-model","version":1,"feature_names":["a","b"],"standardization":{"mean":[0.5,1.0],"std":[2.0,1.0]},"label":{"column":"y","positive":"M","negative":"B"},"weights":[1.5,-0.5],"bias":-0.25,"provenance":{"kind":"federated","data":["x.csv"],"rows":10,"settings":{"rounds":3},"created":"2026-11-01T00:00:00Z","tool":"fedhe 0.1.0"}}"#;
    let m = ModelFile::from_json(text, "old.json").unwrap();
    assert_eq!(m.architecture, Architecture::Linear);
    assert_eq!(m.params, vec![1.5, -0.5, -0.25]);
    assert_eq!(m.target.binary().unwrap().positive, "M");
    // p = sigmoid(1.5 · (2.5 − 0.5)/2 − 0.5 · (3 − 1)/1 − 0.25) = sigmoid(0.25).
    let p = m.predict(&array![[2.5, 3.0]]).unwrap();
    assert!((p[[0, 0]] - fedhe::model::sigmoid(0.25)).abs() < 1e-15);
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
            "3 parameters, but a linear over 1 features has 2",
        ),
        (
            r#"{"format":"fedhe-model","version":2,"feature_names":["a"],"standardization":{"mean":[0],"std":[1]},"target":{"task":"regression","column":"y"},"architecture":{"kind":"linear"},"params":[1,2],"provenance":{"kind":"x","data":[],"rows":0,"created":"","tool":""}}"#,
            "target_scaling",
        ),
        (
            r#"{"format":"fedhe-model","version":2,"feature_names":["a"],"standardization":{"mean":[0],"std":[1]},"target":{"task":"multiclass","column":"y","classes":["a","b","c"]},"architecture":{"kind":"mlp","hidden":[2]},"params":[1,2],"provenance":{"kind":"x","data":[],"rows":0,"created":"","tool":""}}"#,
            "has 13",
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
    assert_eq!(m.params, vec![1.5, -0.25]);
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

/// A parameter leaving the range an update can carry, or a loss that
/// explodes, stops training at the epoch it happens with a
/// `ModelError::Diverged` naming the cause.
#[test]
fn divergence_is_caught_at_the_epoch_it_happens() {
    use fedhe::model::{Divergence, ModelError, train_within};
    let (x, _) = toy();
    let y = labels(Head::Squared);
    let go = &mut |_: &fedhe::model::EpochStats| ControlFlow::Continue(());
    // A tight range: the first epoch already leaves it.
    let mut m = build(&Architecture::Linear, 3, Head::Squared, 0).unwrap();
    let cfg = TrainConfig {
        epochs: 5,
        lr: 0.5,
        batch_size: 2,
        ..TrainConfig::default()
    };
    let e = train_within(&mut *m, &x, &y, &cfg, Some(1e-3), go).unwrap_err();
    let ModelError::Diverged { epoch, lr, cause } = e else {
        panic!("{e}")
    };
    assert_eq!((epoch, lr), (1, 0.5));
    assert!(matches!(cause, Divergence::OutOfRange { limit, .. } if limit == 1e-3));
    // Without a range, the same settings train.
    let mut m = build(&Architecture::Linear, 3, Head::Squared, 0).unwrap();
    assert!(train_within(&mut *m, &x, &y, &cfg, None, go).is_ok());
    // A step far too large: the loss explodes long before it overflows.
    let mut m = build(&Architecture::Linear, 3, Head::Squared, 0).unwrap();
    let wild = TrainConfig {
        lr: 40.0,
        batch_size: 1,
        ..cfg
    };
    let e = train_within(&mut *m, &x, &y, &wild, None, go).unwrap_err();
    assert!(
        matches!(
            e,
            ModelError::Diverged {
                cause: Divergence::LossExploded { .. },
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("--lr 4)"), "{e}");
}

/// A plan written by `fedhe plan init` before the optimizer keys existed
/// (tests/fixtures/plan_before_optimizers.toml) keeps the fingerprint that
/// build printed, and means plain SGD; a plan naming Adam and a schedule
/// reads back the same and has another fingerprint.
#[test]
fn plans_written_before_the_optimizer_keys_keep_their_fingerprint() {
    use fedhe::model::{Optimizer, OptimizerKind, Schedule};
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/plan_before_optimizers.toml");
    let text = std::fs::read_to_string(path).unwrap();
    // Since the quorum of three with masks (issue 23), this masked plan of
    // `min_clients = 2` is refused, naming the field; its training section
    // (what this test is about) reads as that build wrote it.
    let refused = fedhe::plan::Plan::from_toml(&text, "plan_before_optimizers.toml").unwrap_err();
    assert!(
        refused.to_string().contains("quorum.min_clients"),
        "{refused}"
    );
    let plan: fedhe::plan::Plan = toml::from_str(&text).unwrap();
    assert_eq!(
        plan.fingerprint().to_string(),
        "21d2dc62436b8c76e157709531a33bdb"
    );
    assert_eq!(plan.training, fedhe::plan::Training::LEGACY);
    assert!(plan.training.sgd.optimizer.is_plain());
    let mut adam = plan.clone();
    adam.quorum.min_clients = 3;
    adam.training.sgd.optimizer = Optimizer {
        kind: OptimizerKind::AdamW,
        weight_decay: 0.01,
        schedule: Schedule::Step {
            every: 5,
            gamma: 0.5,
        },
        clip: 2.0,
        ..Optimizer::PLAIN
    };
    let written = adam.to_toml();
    for key in [
        "optimizer = \"adamw\"",
        "weight_decay = 0.01",
        "schedule = \"step\"",
        "step_every = 5",
        "grad_clip = 2.0",
    ] {
        assert!(written.contains(key), "{key} in\n{written}");
    }
    let back = fedhe::plan::Plan::from_toml(&written, "written").unwrap();
    assert_eq!(back.training, adam.training);
    assert_ne!(back.fingerprint(), plan.fingerprint());
}

/// The step rules: Adam's first step moves every parameter with a gradient
/// by the learning rate (bias correction), Nesterov's first step is
/// `lr (1 + μ) g`, and the schedules give their rates.
#[test]
fn optimizers_take_their_documented_steps() {
    use fedhe::model::{Optimizer, OptimizerKind, Schedule};
    let (x, _) = toy();
    let y = labels(Head::Squared);
    let start = build(&Architecture::Linear, 3, Head::Squared, 0).unwrap();
    let (_, g) = start.objective_gradient(&x, &y.to_vec(), 0.0);
    let step = |kind: OptimizerKind| {
        let cfg = TrainConfig {
            epochs: 1,
            lr: 0.01,
            batch_size: 6,
            l2: 0.0,
            momentum: 0.5,
            optimizer: Optimizer {
                kind,
                ..Optimizer::PLAIN
            },
            ..TrainConfig::default()
        };
        let mut m = start.clone();
        train(&mut *m, &x, &y, &cfg, &mut |_| ControlFlow::Continue(())).unwrap();
        m.params().to_vec()
    };
    let adam = step(OptimizerKind::Adam);
    let nesterov = step(OptimizerKind::Nesterov);
    for j in 0..g.len() {
        let sign = g[j].signum();
        assert!((adam[j] + 0.01 * sign).abs() < 1e-9, "adam {j}");
        assert!(
            (nesterov[j] + 0.01 * 1.5 * g[j]).abs() < 1e-12,
            "nesterov {j}"
        );
    }
    let cosine = Schedule::Cosine;
    assert_eq!(cosine.lr(0.1, 1, 20), 0.1);
    assert!((cosine.lr(0.1, 11, 20) - 0.05).abs() < 1e-12);
    let stepped = Schedule::Step {
        every: 10,
        gamma: 0.5,
    };
    assert_eq!(
        (stepped.lr(0.1, 10, 20), stepped.lr(0.1, 11, 20)),
        (0.1, 0.05)
    );
    // Nesterov without momentum is refused by name.
    let mut m = start.clone();
    let bad = TrainConfig {
        momentum: 0.0,
        optimizer: Optimizer {
            kind: OptimizerKind::Nesterov,
            ..Optimizer::PLAIN
        },
        ..TrainConfig::default()
    };
    let e = train(&mut *m, &x, &y, &bad, &mut |_| ControlFlow::Continue(())).unwrap_err();
    assert!(e.to_string().contains("nesterov needs a momentum"), "{e}");
}

/// Per-example clipping bounds every row's pull: one row fifty times
/// far out moves the model no more than a clipped normal row would.
#[test]
fn per_example_clipping_bounds_an_outlying_row() {
    use fedhe::model::Optimizer;
    let x = array![[1.0], [1.0], [50.0]];
    let y = array![1.0, 1.0, 1.0];
    let cfg = TrainConfig {
        epochs: 1,
        lr: 0.1,
        batch_size: 3,
        l2: 0.0,
        optimizer: Optimizer {
            clip: 1.0,
            ..Optimizer::PLAIN
        },
        ..TrainConfig::default()
    };
    let mut m = build(&Architecture::Linear, 1, Head::Squared, 0).unwrap();
    train(&mut *m, &x, &y, &cfg, &mut |_| ControlFlow::Continue(())).unwrap();
    // Each row's gradient (weight, bias) is clipped to norm 1; the mean of
    // three has norm at most 1, so the step is at most lr.
    let norm = m.params().iter().map(|p| p * p).sum::<f64>().sqrt();
    assert!(norm <= 0.1 + 1e-12, "step {norm}");
    assert!(norm > 0.05, "step {norm}");
}
