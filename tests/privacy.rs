//! The RDP accountant against Google's dp-accounting (the reference table
//! tests/fixtures/dp_reference.csv, made by scripts/dp_reference.py), and
//! `fedhe dp epsilon | noise`.

use fedhe::privacy::{epsilon, noise_multiplier_for};

fn rows() -> Vec<(String, f64, f64, u64, f64, f64)> {
    let text = include_str!("fixtures/dp_reference.csv");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("kind"))
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (
                f[0].to_string(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
                f[4].parse().unwrap(),
                f[5].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn epsilon_agrees_with_dp_accounting_within_one_percent() {
    let mut checked = 0;
    let mut worst: f64 = 0.0;
    for (kind, q, sigma, steps, delta, want) in rows() {
        if kind != "epsilon" {
            continue;
        }
        let got = epsilon(q, sigma, steps, delta).unwrap().epsilon;
        let err = (got - want).abs() / want.max(1e-3);
        worst = worst.max(err);
        assert!(
            err <= 0.01,
            "q {q} σ {sigma} T {steps} δ {delta}: ε {got} vs dp-accounting {want}"
        );
        checked += 1;
    }
    assert_eq!(checked, 120);
    eprintln!("largest relative difference from dp-accounting: {worst:.2e}");
}

#[test]
fn noise_for_a_target_agrees_with_dp_accounting_within_one_percent() {
    let mut checked = 0;
    for (kind, q, sigma, steps, delta, target) in rows() {
        if kind != "noise" {
            continue;
        }
        let got = noise_multiplier_for(q, steps, delta, target).unwrap();
        assert!(
            (got - sigma).abs() / sigma <= 0.01,
            "q {q} T {steps} δ {delta} ε {target}: σ {got} vs dp-accounting {sigma}"
        );
        checked += 1;
    }
    assert_eq!(checked, 12);
}

#[test]
fn dp_commands_print_epsilon_and_noise() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fedhe"))
        .args([
            "dp",
            "epsilon",
            "--sample-rate",
            "0.01",
            "--noise-multiplier",
            "1.0",
        ])
        .args(["--steps", "1000", "--delta", "1e-5"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let want = epsilon(0.01, 1.0, 1000, 1e-5).unwrap().epsilon;
    assert!(text.contains(&format!("epsilon {want:.4}")), "{text}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fedhe"))
        .args(["dp", "noise", "--sample-rate", "0.01", "--steps", "1000"])
        .args(["--delta", "1e-5", "--epsilon", "3"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("noise multiplier"), "{text}");
    // Out of range: a clear error, exit 1.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fedhe"))
        .args([
            "dp",
            "epsilon",
            "--sample-rate",
            "2",
            "--noise-multiplier",
            "1",
        ])
        .args(["--steps", "10"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sample rate"));
}

mod dp_sgd {
    use std::ops::ControlFlow;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    use fedhe::crypto::ParamSet;
    use fedhe::data::split::Partition;
    use fedhe::data::{CsvOptions, TargetSpec};
    use fedhe::federation::{SimData, SimulationConfig, simulate};
    use fedhe::model::{Architecture, Head, TrainConfig, build, train};
    use fedhe::plan::Training;
    use fedhe::privacy::{DpSettings, DpSgd, clip_gradient};
    use ndarray::array;

    #[test]
    fn clipping_bounds_every_example_and_the_step() {
        let mut g = vec![3.0, 4.0];
        assert_eq!(clip_gradient(&mut g, 1.0), 5.0);
        assert!((g[0] - 0.6).abs() < 1e-15 && (g[1] - 0.8).abs() < 1e-15);
        let mut small = vec![0.3, 0.4];
        clip_gradient(&mut small, 1.0);
        assert_eq!(small, vec![0.3, 0.4], "a small gradient is left alone");

        // Huge features: every example's gradient is far above the clip, so
        // a plain SGD step is huge; DP-SGD's step (no noise, every row
        // sampled: batch = rows) is at most lr · C.
        let x = array![[1e3, -2e3], [5e2, 1e3], [-1e3, 4e2], [2e3, 1e3]];
        let y = array![1.0, 0.0, 1.0, 0.0];
        let step = |dp: Option<DpSgd>| {
            let mut m = build(&Architecture::Linear, 2, Head::Logistic, 1).unwrap();
            let before = m.params().to_vec();
            let cfg = TrainConfig {
                epochs: 1,
                lr: 0.5,
                batch_size: 4,
                l2: 0.0,
                dp,
                ..TrainConfig::default()
            };
            let s = train(&mut *m, &x, &y, &cfg, &mut |_| ControlFlow::Continue(())).unwrap();
            let moved: f64 = m
                .params()
                .iter()
                .zip(&before)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f64>()
                .sqrt();
            (moved, s.dp_steps)
        };
        let (plain, steps) = step(None);
        assert_eq!(steps, 0);
        let clip = 0.1;
        let (dp, steps) = step(Some(DpSgd {
            clip,
            noise_multiplier: 0.0,
        }));
        assert_eq!(steps, 1, "4 rows, batch 4: one Poisson step per epoch");
        assert!(plain > 10.0 * 0.5 * clip, "plain SGD moved {plain}");
        // Poisson sampling at q = 1 takes every row: the mean of clipped
        // gradients has norm ≤ C.
        assert!(dp <= 0.5 * clip + 1e-12, "DP-SGD moved {dp}");
        assert!(dp > 0.0);
    }

    #[test]
    fn noise_is_seeded_and_settings_are_checked() {
        let x = array![[0.5, -1.0], [1.5, 0.2], [-0.3, 0.8], [2.0, -0.4]];
        let y = array![1.0, 1.0, 0.0, 1.0];
        let run = |seed: u64| {
            let mut m = build(&Architecture::Linear, 2, Head::Logistic, 0).unwrap();
            let cfg = TrainConfig {
                epochs: 3,
                batch_size: 2,
                seed,
                dp: Some(DpSgd {
                    clip: 1.0,
                    noise_multiplier: 1.0,
                }),
                ..TrainConfig::default()
            };
            train(&mut *m, &x, &y, &cfg, &mut |_| ControlFlow::Continue(())).unwrap();
            m.params().to_vec()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
        let both = DpSettings {
            clip: 1.0,
            noise_multiplier: Some(1.0),
            target_epsilon: Some(3.0),
            max_epsilon: None,
            delta: None,
        };
        assert!(both.validate().unwrap_err().contains("either"));
        let mut plan = fedhe::plan::Plan::binary(
            fedhe::data::LabelMapping {
                column: "y".into(),
                positive: "1".into(),
                negative: "0".into(),
            },
            vec!["a".into()],
            vec![],
        );
        plan.privacy.dp = Some(both);
        let e = plan.validate("p.toml").unwrap_err().to_string();
        assert!(e.contains("privacy.dp"), "{e}");
    }

    fn wdbc(dp: DpSettings, rounds: u64) -> SimulationConfig {
        SimulationConfig {
            data: SimData::Split {
                data: crate::common::sample("breast_cancer_wdbc.csv"),
                clients: 4,
                partition: Partition::Iid,
                test_fraction: 0.2,
                seed: 42,
            },
            csv: CsvOptions {
                label: Some("diagnosis".into()),
                target: TargetSpec::Binary,
                ..CsvOptions::default()
            },
            rounds,
            train: Training::default().local(),
            architecture: Architecture::Linear,
            dp: Some(dp),
            plain: false,
            params: ParamSet::Standard64,
            round_timeout: Duration::from_secs(60),
        }
    }

    /// DP-SGD at a target ε over an encrypted federation (real HTTP): ε
    /// grows every round and ends at the target, and the model still
    /// classifies WDBC well.
    #[test]
    fn a_dp_federation_spends_its_budget_and_converges_on_wdbc() {
        let dp = DpSettings {
            clip: 1.0,
            noise_multiplier: None,
            target_epsilon: Some(8.0),
            max_epsilon: None,
            delta: Some(1e-5),
        };
        let res = simulate(&wdbc(dp, 20), &mut |_| {}, Arc::new(AtomicBool::new(false))).unwrap();
        let eps: Vec<f64> = res.records.iter().map(|r| r.epsilon.unwrap()).collect();
        assert_eq!(eps.len(), 20);
        assert!(eps.windows(2).all(|w| w[1] > w[0]), "{eps:?}");
        let last = eps[19];
        assert!(last <= 8.0 + 1e-9 && last > 7.9, "{last}");
        assert!(res.test.score() >= 0.95, "accuracy {}", res.test.score());
        // The model file records the spending.
        let file = res.model_file(&wdbc(dp, 20));
        let p = file.provenance.privacy.expect("privacy record");
        assert!((p.epsilon - last).abs() < 1e-9 && p.delta == 1e-5);
        let back = fedhe::model::ModelFile::from_json(&file.to_json().unwrap(), "m").unwrap();
        assert_eq!(back.provenance.privacy, Some(p));
    }

    /// With a noise multiplier and a budget, training stops before a round
    /// would pass the budget.
    #[test]
    fn training_stops_before_the_budget_is_exceeded() {
        let dp = DpSettings {
            clip: 1.0,
            noise_multiplier: Some(2.0),
            target_epsilon: None,
            max_epsilon: Some(8.0),
            delta: Some(1e-5),
        };
        let res = simulate(&wdbc(dp, 20), &mut |_| {}, Arc::new(AtomicBool::new(false))).unwrap();
        let n = res.records.len();
        assert!((1..20).contains(&n), "{n} rounds");
        let last = res.records[n - 1].epsilon.unwrap();
        assert!(last <= 8.0, "ε {last}");
        // One more round would have passed 8.
        let budget = dp.budget(114, 32, 20 * 5).unwrap();
        let per_round = budget.steps_per_epoch * 5;
        assert!(budget.epsilon(per_round * (n as u64 + 1)).unwrap() > 8.0);
    }
}
