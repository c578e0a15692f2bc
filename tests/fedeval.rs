//! Issue 20 parts 4–6: encrypted federated validation in every round, the
//! federated test, the best round and early stopping. Real keys, a real
//! aggregator on loopback, pairwise masks (three sites).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use fedhe::crypto::ParamSet;
use fedhe::data::split::stratified_split;
use fedhe::data::{CsvOptions, Dataset, TargetSpec};
use fedhe::federation::{SimData, SimulationConfig, SimulationResult, load_sim_data, simulate};
use fedhe::model::{Architecture, Evaluation, TrainConfig};
use fedhe::plan::{EarlyStopping, FedEvaluation, Training};

use crate::common::sample;

/// `src` split by rows into three sites' training files and three test
/// files (every fifth row a test row; rows dealt round-robin, so that every
/// site sees every class of a sorted file).
fn site_files(src: &Path, dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let text = std::fs::read_to_string(src).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let mut train = vec![String::from(header) + "\n"; 3];
    let mut test = train.clone();
    for (i, l) in lines.enumerate() {
        let part = if i % 5 == 4 { &mut test } else { &mut train };
        part[i % 3].push_str(l);
        part[i % 3].push('\n');
    }
    let write = |kind: &str, texts: Vec<String>| -> Vec<PathBuf> {
        texts
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                let p = dir.join(format!("{kind}-{i}.csv"));
                std::fs::write(&p, t).unwrap();
                p
            })
            .collect()
    };
    (write("train", train), write("test", test))
}

fn config(file: &str, label: &str, dir: &Path, rounds: u64) -> SimulationConfig {
    let (clients, tests) = site_files(&sample(file), dir);
    let target = match file {
        "wine.csv" => TargetSpec::Classes(None),
        "diabetes.csv" => TargetSpec::Numeric,
        _ => TargetSpec::Auto,
    };
    SimulationConfig {
        data: SimData::SiteTests { clients, tests },
        csv: CsvOptions {
            label: Some(label.into()),
            target,
            ..CsvOptions::default()
        },
        rounds,
        train: TrainConfig {
            epochs: 2,
            ..Training::default().local()
        },
        architecture: Architecture::Linear,
        dp: None,
        masks: true,
        plain: false,
        params: ParamSet::Standard64,
        round_timeout: Duration::from_secs(60),
        evaluation: Some(FedEvaluation {
            test: true,
            ..FedEvaluation::default()
        }),
    }
}

fn run(cfg: &SimulationConfig) -> SimulationResult {
    simulate(cfg, &mut |_| {}, Arc::new(AtomicBool::new(false))).expect("simulation runs")
}

/// Every site's validation rows, split as each site splits them, in one.
fn pooled_validation(cfg: &SimulationConfig) -> Dataset {
    let (parts, _) = load_sim_data(&cfg.data, &cfg.csv).unwrap();
    let share = Training::default().validation_share;
    let held: Vec<Dataset> = parts
        .iter()
        .map(|p| stratified_split(p, share, cfg.train.seed).unwrap().1)
        .collect();
    let mut all = held[0].clone();
    for h in &held[1..] {
        all.x.append(ndarray::Axis(0), h.x.view()).unwrap();
        let mut y = all.y.to_vec();
        y.extend(h.y.iter());
        all.y = ndarray::Array1::from(y);
    }
    all
}

/// The pooled figures against the same metrics on the pooled rows: counts
/// exact, sums to rounding, AUC within 1e-3.
fn assert_same(what: &str, pooled: &Evaluation, real: &Evaluation) {
    assert_eq!(pooled.rows(), real.rows(), "{what}: rows");
    let close = |a: f64, b: f64, name: &str| {
        assert!(
            (a - b).abs() <= 1e-9 * b.abs().max(1.0),
            "{what}: {name} {a} vs {b}"
        );
    };
    match (pooled, real) {
        (Evaluation::Binary(p), Evaluation::Binary(r)) => {
            assert_eq!(p.confusion, r.confusion, "{what}: confusion counts");
            assert_eq!(
                (p.accuracy, p.precision, p.recall, p.f1),
                (r.accuracy, r.precision, r.recall, r.f1),
                "{what}"
            );
            close(p.log_loss, r.log_loss, "log-loss");
            let (a, b) = (p.roc_auc.unwrap(), r.roc_auc.unwrap());
            assert!((a - b).abs() < 1e-3, "{what}: AUC {a} vs exact {b}");
        }
        (Evaluation::Multiclass(p), Evaluation::Multiclass(r)) => {
            assert_eq!(p.confusion, r.confusion, "{what}: confusion counts");
            assert_eq!(
                (p.accuracy, p.macro_f1, p.weighted_f1),
                (r.accuracy, r.macro_f1, r.weighted_f1),
                "{what}"
            );
            close(p.log_loss, r.log_loss, "log-loss");
        }
        (Evaluation::Regression(p), Evaluation::Regression(r)) => {
            close(p.rmse, r.rmse, "RMSE");
            close(p.mae, r.mae, "MAE");
            close(p.r2, r.r2, "R²");
        }
        _ => panic!("{what}: different tasks"),
    }
}

/// The federated validation and test figures of the model kept equal the
/// same metrics computed on every site's rows pooled in the clear, for a
/// binary, a multi-class and a regression federation; every round carries
/// the figures of the model it started from.
#[test]
fn pooled_figures_equal_the_metrics_of_the_pooled_rows() {
    for (file, label) in [
        ("breast_cancer_wdbc.csv", "diagnosis"),
        ("wine.csv", "cultivar"),
        ("diabetes.csv", "progression"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(file, label, dir.path(), 3);
        let res = run(&cfg);
        let f = res.federated.as_ref().expect("federated figures");
        // Models 0 (initial) to 3: each round's sums, then the final round's.
        let models: Vec<u64> = f.validation.iter().map(|(m, _)| *m).collect();
        assert_eq!(models, vec![0, 1, 2, 3], "{file}");
        assert_eq!(res.records.len(), 3);
        assert!(
            res.records
                .iter()
                .all(|r| r.masked && r.federated_loss.is_some())
        );
        let best = f.best_round.unwrap();
        let lowest = f
            .validation
            .iter()
            .map(|(_, e)| e.loss())
            .fold(f64::INFINITY, f64::min);
        assert_eq!(f.validation_of(best).unwrap().loss(), lowest, "{file}");
        if best > 0 {
            assert_eq!(
                res.model.params(),
                &res.records[best as usize - 1].params[..]
            );
        }
        // Validation: the kept model on every site's held-out rows.
        let held = pooled_validation(&cfg);
        let real = fedhe::client::evaluate_raw(
            &*res.model,
            &res.encoder,
            &res.scaler,
            res.target_scaling.as_ref(),
            &held.x,
            &held.y.to_vec(),
        );
        assert_same(file, f.validation_of(best).unwrap(), &real);
        // Test: the simulation's own test figures are the kept model on the
        // sites' test files together.
        assert_eq!(res.site_tests, Some(res.test.rows()));
        assert_same(file, f.test.as_ref().unwrap(), &res.test);
        // The model file records them.
        let saved = res.model_file(&cfg).provenance.federated.unwrap();
        assert_eq!(saved.best_round, Some(best));
        assert_eq!(saved.test, f.test);
        assert_eq!(saved.validation, f.validation);
    }
}

/// With `early_stopping = { patience = 1 }` every site stops at the same
/// round, the remaining rounds close with zeros (the aggregator reaches its
/// last round and the run ends instead of waiting), and the model kept is
/// the best round's.
#[test]
fn early_stopping_stops_every_site_at_the_same_round() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config("breast_cancer_wdbc.csv", "diagnosis", dir.path(), 12);
    // A step far too large: the validation loss soon stops improving.
    cfg.train.lr = 0.5;
    cfg.train.epochs = 5;
    cfg.evaluation = Some(FedEvaluation {
        early_stopping: Some(EarlyStopping { patience: 1 }),
        test: true,
        ..FedEvaluation::default()
    });
    let res = run(&cfg);
    let f = res.federated.as_ref().unwrap();
    let stop = f.stopped_after.expect("training stopped early");
    assert!(stop < 12, "stopped after {stop}");
    // Every site finished a round up to the stop, and none after it.
    assert_eq!(res.records.len() as u64, stop);
    // Round `stop` carried model stop − 1's figures, one round past the best.
    let before = f.validation.iter().filter(|(m, _)| *m < stop).count() as u64;
    assert_eq!(before, stop);
    assert_eq!(f.last_round, stop);
    let best = f.best_round.unwrap();
    if best > 0 {
        assert_eq!(
            res.model.params(),
            &res.records[best as usize - 1].params[..]
        );
    }
    assert_eq!(f.test.as_ref().unwrap().rows(), res.test.rows());
}

/// A site's own validation sums ride in its masked update: decrypted alone
/// with the umbrella key, the validation slots read as uniform (the check
/// of `privacy::masks`), and none of the site's counts shows.
mod one_site_unreadable {
    use std::sync::atomic::AtomicBool;

    use fedhe::client::{Exchange, LoopError, RoundSum};
    use fedhe::crypto::{
        Accumulator, Masks, ParamSet, SecretKey, decrypt_integers, encrypt_weighted_masked,
        plaintext_bits,
    };
    use fedhe::privacy::masks::{AttemptSecret, Identity, MaskContext};

    /// Three identical sites in memory: records this site's vectors.
    struct Triple {
        sent: Vec<(u64, Vec<f64>)>,
    }

    impl Exchange for Triple {
        fn contribute(
            &mut self,
            round: u64,
            values: &[f64],
            _cancel: &AtomicBool,
        ) -> Result<RoundSum, LoopError> {
            self.sent.push((round, values.to_vec()));
            Ok(RoundSum {
                values: values.iter().map(|v| 3.0 * v).collect(),
                contributors: 3,
                contributed: true,
                counted: Vec::new(),
                cost: Default::default(),
                masked: true,
            })
        }
    }

    fn masks_of_three() -> Vec<Masks> {
        let ctx = MaskContext {
            plan: "0123456789abcdef",
            round: 2,
            attempt: 1,
        };
        let ids: Vec<String> = (0..3).map(|i| format!("site-{i}")).collect();
        let who: Vec<Identity> = (0..3).map(|_| Identity::generate().unwrap()).collect();
        let secrets: Vec<AttemptSecret> =
            (0..3).map(|_| AttemptSecret::generate().unwrap()).collect();
        let keys: Vec<(String, [u8; 32])> = ids
            .iter()
            .zip(who.iter().zip(&secrets))
            .map(|(id, (w, s))| (id.clone(), w.announce(&ctx, id, s).public))
            .collect();
        ids.iter()
            .zip(&secrets)
            .map(|(id, s)| s.pair_masks(&ctx, id, &keys).unwrap())
            .collect()
    }

    #[test]
    fn one_sites_validation_slots_read_as_uniform_under_its_masks() {
        let file = crate::common::sample("breast_cancer_wdbc.csv");
        let (mut plan, _) = fedhe::plan::propose(
            &file,
            &fedhe::plan::ProposeOptions {
                label: Some("diagnosis".into()),
                ..fedhe::plan::ProposeOptions::default()
            },
        )
        .unwrap();
        plan.training.rounds = 1;
        plan.training.sgd.epochs = 1;
        plan.evaluation = Some(fedhe::plan::FedEvaluation::default());
        let data = fedhe::data::load_csv(&file, &plan.csv_options())
            .unwrap()
            .dataset;
        let fp = plan.fingerprint().to_string();
        let mut ex = Triple { sent: Vec::new() };
        fedhe::session::run_plan(
            &mut ex,
            &plan,
            &fp,
            fedhe::session::site_seed(plan.training.sgd.seed, "a"),
            None,
            &data,
            fedhe::session::RunRecord {
                kind: fedhe::model::FEDERATED,
                data_files: Vec::new(),
                server: None,
                site: "a".into(),
            },
            &mut |_| {},
            &AtomicBool::new(false),
        )
        .unwrap();
        // Round 2 is training round 1: parameters, share, validation sums.
        let (round, v) = ex.sent[1].clone();
        assert_eq!(round, 2);
        let at = plan.param_count() + 1;
        assert_eq!(v.len(), at + plan.validation_slots());
        // The exchange's vector: the round kind's, before the sum tag.
        assert_eq!(
            v.len(),
            plan.kind_len(plan.layout().phase(2).unwrap()).unwrap()
        );
        let counts = &v[at..at + 4];
        assert!(
            counts.iter().sum::<f64>() > 50.0,
            "the site's counts: {counts:?}"
        );

        let key = SecretKey::generate(ParamSet::Standard64);
        let bits = plaintext_bits(&key.layout());
        let masks = masks_of_three();
        let read = |m: &Masks| {
            let mut one = Accumulator::new(&key.public(), v.len());
            one.add(&encrypt_weighted_masked(&key, &v, 1.0, m).unwrap())
                .unwrap();
            decrypt_integers(&key, &one).unwrap()
        };
        let clear = read(&Masks::none());
        let scale = f64::from(key.scale_bits()).exp2();
        assert_eq!(
            clear[at],
            (v[at] * scale) as i64,
            "the clear slots hold the counts"
        );
        let seen = read(&masks[0]);
        let slots = &seen[at..v.len()];
        let mut buckets = [0f64; 16];
        for x in slots {
            let u = (*x as i128 + (1i128 << (bits - 1))) as u128;
            buckets[(u >> (bits - 4)) as usize] += 1.0;
        }
        let e = slots.len() as f64 / 16.0;
        let chi2: f64 = buckets.iter().map(|o| (o - e) * (o - e) / e).sum();
        assert!(chi2 < 50.0, "χ² {chi2}: {buckets:?}");
        let shown = slots
            .iter()
            .zip(&clear[at..v.len()])
            .filter(|(s, c)| s == c)
            .count();
        assert!(shown <= 1, "{shown} validation slots readable");
    }
}

/// `fedhe plan init`, `fedhe serve --plan` and three `fedhe client … --test`
/// processes: a plan with `[evaluation] test = true` and early stopping.
/// Every site prints the same `federated test` line, the aggregator
/// completes at the evaluation round, and the saved models are one.
mod cli {
    use std::io::Read;
    use std::path::Path;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use crate::common::sample;
    use fedhe::crypto::{ParamSet, SecretKey};

    struct Killed(std::process::Child);

    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn fedhe() -> Command {
        Command::new(env!("CARGO_BIN_EXE_fedhe"))
    }

    fn output(c: &mut Command) -> String {
        let out = c.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        text
    }

    fn serve(dir: &Path, pk: &Path, plan: &Path) -> (Killed, String) {
        let mut child = Killed(
            fedhe()
                .args(["serve", "--bind", "127.0.0.1:0", "--public-key"])
                .arg(pk)
                .arg("--plan")
                .arg(plan)
                .arg("--state-dir")
                .arg(dir.join("state"))
                .arg("--operator-token-file")
                .arg(dir.join("operator.token"))
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let url = crate::common::serve_url(&mut child.0);
        (child, url)
    }

    fn finish(mut c: Killed) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        let status = loop {
            if let Some(s) = c.0.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "client did not finish");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut text = String::new();
        c.0.stdout
            .as_mut()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        c.0.stderr
            .as_mut()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert!(status.success(), "client failed:\n{text}");
        text
    }

    #[test]
    fn three_clients_with_their_test_files_print_one_federated_test() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let sk = SecretKey::generate(ParamSet::Standard64);
        sk.save(&d.join("secret.key"), false).unwrap();
        std::fs::write(d.join("public.key"), sk.public().to_bytes()).unwrap();
        let plan = d.join("plan.toml");
        output(
            fedhe()
                .args(["plan", "init", "--rounds", "6", "--epochs", "2"])
                .args(["--federated-test", "--early-stopping", "1"])
                .arg("--data")
                .arg(sample("train.csv"))
                .arg("--out")
                .arg(&plan),
        );
        let text = std::fs::read_to_string(&plan).unwrap();
        assert!(
            text.contains("[evaluation]") && text.contains("patience = 1"),
            "{text}"
        );
        // Each site's own test rows: a third of the bundled test split.
        let test = std::fs::read_to_string(sample("test.csv")).unwrap();
        let mut lines = test.lines();
        let header = lines.next().unwrap();
        let mut parts = vec![format!("{header}\n"); 3];
        for (i, l) in lines.enumerate() {
            parts[i % 3].push_str(l);
            parts[i % 3].push('\n');
        }
        let (_server, url) = serve(d, &d.join("public.key"), &plan);
        let clients: Vec<Killed> = (0..3)
            .map(|i| {
                let t = d.join(format!("test-{i}.csv"));
                std::fs::write(&t, &parts[i]).unwrap();
                let id = format!("site-{i}");
                Killed(
                    fedhe()
                        .args(["client", "--server", &url, "--name", &id, "--id", &id])
                        .arg("--key")
                        .arg(d.join("secret.key"))
                        .arg("--data")
                        .arg(sample(&format!("clients/client_{}.csv", i + 1)))
                        .arg("--test")
                        .arg(&t)
                        .arg("--model-out")
                        .arg(d.join(format!("{id}.json")))
                        .stdout(Stdio::piped())
                        .stderr(Stdio::piped())
                        .spawn()
                        .unwrap(),
                )
            })
            .collect();
        let outs: Vec<String> = clients.into_iter().map(finish).collect();
        let line = |o: &str| {
            o.lines()
                .find(|l| l.starts_with("federated test ("))
                .unwrap_or_else(|| panic!("no federated test line:\n{o}"))
                .to_string()
        };
        let first = line(&outs[0]);
        assert!(
            first.contains("113 rows") && first.contains("AUC"),
            "{first}"
        );
        for o in &outs[1..] {
            assert_eq!(line(o), first);
        }
        assert!(outs.iter().all(|o| o.contains("roc_auc")), "{outs:?}");
        // The aggregator completes at its last round: the evaluation round
        // after the plan's 6 training rounds, whether or not they stopped.
        // Only /health is public: the status is read as the operator.
        let token = std::fs::read_to_string(dir.path().join("operator.token")).unwrap();
        let status = fedhe::client::AggregatorClient::new(&url)
            .with_token(token.trim())
            .status()
            .unwrap();
        let done = status.complete.expect("complete");
        assert_eq!(
            (done.training_rounds, done.last_round, done.sites),
            (6, 8, 3)
        );
        let models: Vec<String> = (0..3)
            .map(|i| std::fs::read_to_string(d.join(format!("site-{i}.json"))).unwrap())
            .map(|t| {
                let m: fedhe::model::ModelFile = serde_json::from_str(&t).unwrap();
                format!("{:?}", (m.params, m.provenance.federated))
            })
            .collect();
        assert!(models.iter().all(|m| *m == models[0]), "different models");
    }
}
