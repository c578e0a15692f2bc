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
