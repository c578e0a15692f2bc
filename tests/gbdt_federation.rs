//! Gradient-boosted trees federated (issue 24): the trees of an encrypted,
//! masked federation are those of the same federation in plaintext and of
//! the pooled rows (`model::gbdt::train_pooled`), at every site; over real
//! HTTP too.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use fedhe::crypto::ParamSet;
use fedhe::data::split::Partition;
use fedhe::data::{CsvOptions, Dataset, RawStats, TaskKind};
use fedhe::federation::{
    GbdtSimulation, SimData, SimEvent, SimulationConfig, load_sim_data, simulate_gbdt,
};
use fedhe::model::gbdt::{Ensemble, GbdtSettings, train_pooled};
use fedhe::model::{Architecture, Head, TrainConfig};

use super::common::{connect, sample, serve_plan};

fn config(data: PathBuf, label: &str, clients: usize, plain: bool) -> SimulationConfig {
    SimulationConfig {
        data: SimData::Split {
            data,
            clients,
            partition: Partition::Iid,
            test_fraction: 0.2,
            seed: 42,
        },
        csv: csv(label),
        rounds: 1,
        train: TrainConfig::default(),
        architecture: Architecture::Linear,
        dp: None,
        masks: true,
        plain,
        params: ParamSet::Standard64,
        round_timeout: Duration::from_secs(120),
        evaluation: None,
    }
}

/// Penguins: species from 3, island and sex categorical, "NA" missing.
fn csv(label: &str) -> CsvOptions {
    let cat = |name: &str| fedhe::data::CategoricalSpec {
        name: name.into(),
        categories: None,
        other: false,
    };
    match label {
        "species" => CsvOptions {
            label: Some(label.into()),
            target: fedhe::data::TargetSpec::Classes(None),
            categorical: vec![cat("island"), cat("sex")],
            missing_tokens: fedhe::data::default_missing_tokens(),
            ..CsvOptions::default()
        },
        "progression" => CsvOptions {
            label: Some(label.into()),
            target: fedhe::data::TargetSpec::Numeric,
            ..CsvOptions::default()
        },
        _ => CsvOptions {
            label: Some(label.into()),
            ..CsvOptions::default()
        },
    }
}

fn settings(trees: usize, depth: usize, bins: usize) -> GbdtSettings {
    GbdtSettings {
        trees,
        depth,
        bins,
        ..GbdtSettings::default()
    }
}

fn run(cfg: &SimulationConfig, s: GbdtSettings) -> GbdtSimulation {
    simulate_gbdt(cfg, s, &mut |_| {}, Arc::new(AtomicBool::new(false)))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The pooled rows of every site: one machine's training through the same
/// bins and grower.
fn pooled(parts: &[Dataset], s: &GbdtSettings) -> Ensemble {
    let first = &parts[0];
    let views: Vec<_> = parts.iter().map(|p| p.x.view()).collect();
    let x = ndarray::concatenate(ndarray::Axis(0), &views).unwrap();
    let y: Vec<f64> = parts.iter().flat_map(|p| p.y.iter().copied()).collect();
    let stats = RawStats::of(&first.columns, &x, None);
    let head = Head::for_target(&first.label);
    train_pooled(
        s,
        head,
        &first.columns,
        &stats,
        x.view(),
        &y,
        &mut |_, _| std::ops::ControlFlow::Continue(()),
    )
    .unwrap()
    .ensemble
}

fn ensemble(r: &GbdtSimulation) -> &Ensemble {
    r.model
        .ensemble
        .as_ref()
        .expect("a gbdt model holds its trees")
}

/// Identical splits; leaves within 1e-6.
fn assert_same_trees(a: &Ensemble, b: &Ensemble, what: &str) {
    assert_eq!(a.trees.len(), b.trees.len(), "{what}: tree count");
    for (i, (ta, tb)) in a.trees.iter().zip(&b.trees).enumerate() {
        assert_eq!(ta.nodes.len(), tb.nodes.len(), "{what}: tree {i}'s nodes");
        for (na, nb) in ta.nodes.iter().zip(&tb.nodes) {
            use fedhe::model::gbdt::Node;
            match (na, nb) {
                (Node::Leaf { value: va }, Node::Leaf { value: vb }) => {
                    assert!((va - vb).abs() <= 1e-6, "{what}: tree {i}: {va} vs {vb}")
                }
                _ => assert_eq!(na, nb, "{what}: tree {i}"),
            }
        }
    }
}

#[test]
fn encrypted_masked_trees_equal_plaintext_and_pooled_trees() {
    let s = settings(4, 4, 64);
    let enc_cfg = config(sample("breast_cancer_wdbc.csv"), "diagnosis", 3, false);
    let mut seen = Vec::new();
    let enc = simulate_gbdt(
        &enc_cfg,
        s,
        &mut |e| {
            if let SimEvent::Client {
                index: 0,
                event: fedhe::client::ClientEvent::Tree(r),
            } = e
            {
                seen.push(r.clone());
            }
        },
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap();
    let plain = run(
        &config(sample("breast_cancer_wdbc.csv"), "diagnosis", 3, true),
        s,
    );
    assert!(enc.same_at_every_site && plain.same_at_every_site);
    assert_eq!(enc.sites.len(), 3);
    // Bitwise: every sum is of integers.
    assert_eq!(ensemble(&enc), ensemble(&plain));
    let (parts, _) = load_sim_data(&enc_cfg.data, &enc_cfg.csv).unwrap();
    let pooled = pooled(&parts, &s);
    assert_same_trees(ensemble(&enc), &pooled, "encrypted vs pooled");
    assert_eq!(ensemble(&enc).trees, pooled.trees);
    // The trees split, and predict well.
    assert!(ensemble(&enc).trees[0].nodes.len() > 3);
    assert!(enc.test.score() > 0.9, "{}", enc.test.summary());
    // The bins round, then one record per iteration, each of `depth`
    // masked rounds.
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[0].iteration, 0);
    assert!(seen[1..].iter().all(|r| r.rounds == 4 && r.masked));
    assert!(seen[1..].iter().all(|r| r.cost.bytes_up > 0));
    let t = enc.totals();
    assert_eq!((t.iterations, t.rounds), (4, 16));
    // The plan's rounds: statistics, bins, 4 × 4 levels.
    assert_eq!(enc.plan.last_round(), 18);
}

#[test]
fn multiclass_trees_with_categories_and_missing_cells_match_the_pooled_trees() {
    // Penguins: 3 species, two categorical columns (island, sex), missing
    // cells in numeric and categorical columns.
    let s = settings(3, 3, 32);
    let cfg = config(sample("penguins.csv"), "species", 3, false);
    let enc = run(&cfg, s);
    assert!(enc.same_at_every_site);
    let (parts, _) = load_sim_data(&cfg.data, &cfg.csv).unwrap();
    assert!(parts.iter().any(|p| p.x.iter().any(|v| v.is_nan())));
    let e = ensemble(&enc);
    assert_eq!(e.outputs, 3);
    // One tree per class per iteration.
    assert_eq!(e.trees.len(), 9);
    assert_eq!(e.trees, pooled(&parts, &s).trees);
    assert!(enc.test.score() > 0.9, "{}", enc.test.summary());
}

#[test]
fn regression_trees_are_the_same_at_every_site() {
    let s = settings(5, 3, 64);
    let cfg = config(sample("diabetes.csv"), "progression", 3, true);
    let r = run(&cfg, s);
    assert!(r.same_at_every_site);
    assert_eq!(r.model.target.kind(), TaskKind::Regression);
    assert!(r.model.target_scaling.is_some());
    assert!(r.test.score() > 0.2, "{}", r.test.summary());
}

/// `rows` of `src` (header kept) written to `dst`.
fn write_rows(src: &Path, dst: &Path, keep: impl Fn(usize) -> bool) {
    let text = std::fs::read_to_string(src).unwrap();
    let mut lines = text.lines();
    let mut out = String::from(lines.next().unwrap());
    out.push('\n');
    for (i, l) in lines.enumerate().filter(|(i, _)| keep(*i)) {
        let _ = i;
        out.push_str(l);
        out.push('\n');
    }
    std::fs::write(dst, out).unwrap();
}

#[test]
fn three_sites_over_http_hold_the_plaintext_trees() {
    let dir = tempfile::tempdir().unwrap();
    let src = sample("penguins.csv");
    let files: Vec<PathBuf> = (0..3)
        .map(|k| {
            let f = dir.path().join(format!("site-{k}.csv"));
            write_rows(&src, &f, |i| i % 3 == k);
            f
        })
        .collect();
    let s = settings(2, 3, 32);
    let plain_cfg = SimulationConfig {
        data: SimData::Files {
            clients: files.clone(),
            test: src.clone(),
        },
        ..config(src.clone(), "species", 3, true)
    };
    let plain = run(&plain_cfg, s);
    // The plan a federation would write for it, served by an aggregator.
    let key =
        Arc::new(fedhe::crypto::SecretKey::generate_for(ParamSet::Standard64, 8, None).unwrap());
    let srv = serve_plan(&key, plain.plan.clone());
    let handles: Vec<_> = files
        .iter()
        .enumerate()
        .map(|(i, file)| {
            let (key, url, file) = (key.clone(), srv.url().to_string(), file.clone());
            std::thread::spawn(move || {
                let c = connect(&url, &key);
                let data = c.load_site(&file).unwrap();
                let id = format!("site-{i}");
                let j = c.join(&id, &id, None).unwrap();
                j.run_gbdt(&data.dataset, vec![], &mut |_| {}, &AtomicBool::new(false))
                    .unwrap_or_else(|e| panic!("{e}"))
            })
        })
        .collect();
    let runs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for r in &runs {
        assert_eq!(r.model.ensemble.as_ref(), Some(ensemble(&plain)));
        assert!(r.outcome.trees[1..].iter().all(|t| t.masked));
    }
    // The model file round-trips and predicts as the plaintext one.
    let path = dir.path().join("trees.json");
    runs[0].model.save(&path).unwrap();
    let back = fedhe::model::ModelFile::load(&path).unwrap();
    let (_, test) = load_sim_data(&plain_cfg.data, &plain_cfg.csv).unwrap();
    assert_eq!(
        back.predict(&test.x).unwrap(),
        plain.model.predict(&test.x).unwrap()
    );
    srv.shutdown();
}

#[test]
fn the_cli_simulates_and_plans_trees() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("trees.json");
    let data = sample("breast_cancer_wdbc.csv");
    let out = super::common::fedhe(&[
        "simulate",
        "--data",
        data.to_str().unwrap(),
        "--label",
        "diagnosis",
        "--clients",
        "3",
        "--model",
        "gbdt",
        "--trees",
        "2",
        "--depth",
        "3",
        "--compare",
        "--model-out",
        model.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("tree 2/2: 3 rounds"), "{text}");
    assert!(text.contains("masked"), "{text}");
    assert!(
        text.contains("encrypted and plaintext trees: identical"),
        "{text}"
    );
    let m = fedhe::model::ModelFile::load(&model).unwrap();
    assert_eq!(m.ensemble.unwrap().trees.len(), 2);
    // plan init writes the trees' settings; plan check reads them.
    let plan = dir.path().join("p.toml");
    let out = super::common::fedhe(&[
        "plan",
        "init",
        "--data",
        data.to_str().unwrap(),
        "--label",
        "diagnosis",
        "--model",
        "gbdt",
        "--trees",
        "7",
        "--out",
        plan.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = fedhe::plan::Plan::load(&plan).unwrap();
    assert_eq!(p.gbdt().unwrap().trees, 7);
    assert_eq!(p.last_round(), 1 + 1 + 7 * 6);
    let out = super::common::fedhe(&["plan", "check", plan.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("gradient-boosted trees: 7 × depth 6"),
        "{text}"
    );
}

/// Real `fedhe serve` and `fedhe client` processes (issue 24, real runs):
/// a helper set after tests/server_cli.rs's.
mod processes {
    use std::io::Read;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use fedhe::crypto::{ParamSet, SecretKey};

    /// A child killed with SIGKILL when dropped.
    pub struct Killed(pub std::process::Child);

    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    pub fn fedhe() -> Command {
        Command::new(env!("CARGO_BIN_EXE_fedhe"))
    }

    fn run_ok(cmd: &mut Command) -> String {
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    /// A key pair in `dir`: (secret, public).
    pub fn keys(dir: &Path) -> (PathBuf, PathBuf) {
        let sk = SecretKey::generate(ParamSet::Standard64);
        let sk_path = dir.join("secret.key");
        sk.save(&sk_path, false).unwrap();
        let pk_path = dir.join("public.key");
        std::fs::write(&pk_path, sk.public().to_bytes()).unwrap();
        (sk_path, pk_path)
    }

    /// `fedhe split` of WDBC into `sites` client files; `fedhe plan init
    /// --model gbdt` from its training rows with `extra` flags. Returns
    /// the client files and the plan.
    pub fn split_and_plan(dir: &Path, sites: usize, extra: &[&str]) -> (Vec<PathBuf>, PathBuf) {
        let split = dir.join("split");
        run_ok(
            fedhe()
                .args(["split", "--label", "diagnosis", "--clients"])
                .arg(sites.to_string())
                .arg("--data")
                .arg(crate::common::sample("breast_cancer_wdbc.csv"))
                .arg("--out")
                .arg(&split),
        );
        let plan = dir.join("plan.toml");
        let text = run_ok(
            fedhe()
                .args(["plan", "init", "--label", "diagnosis", "--model", "gbdt"])
                .args(["--trees", "5", "--depth", "3", "--bins", "32"])
                .args(extra)
                .arg("--data")
                .arg(split.join("train.csv"))
                .arg("--out")
                .arg(&plan),
        );
        assert!(!text.is_empty());
        let files = (1..=sites)
            .map(|i| split.join(format!("clients/client_{i}.csv")))
            .collect();
        (files, plan)
    }

    /// `fedhe serve` with `args` on `state` at `bind`: the process, its URL.
    pub fn serve(args: &[&str], state: &Path, bind: &str) -> (Killed, String) {
        let mut cmd = fedhe();
        cmd.args(["serve", "--bind", bind])
            .env("RUST_LOG", "warn")
            .args(args)
            .arg("--state-dir")
            .arg(state)
            .stdout(Stdio::piped());
        let mut child = Killed(cmd.spawn().unwrap());
        let url = crate::common::serve_url(&mut child.0);
        (child, url)
    }

    pub fn client(url: &str, key: &Path, data: &Path, id: &str, out: &Path) -> Killed {
        Killed(
            fedhe()
                .args(["client", "--server", url, "--name", id, "--id", id])
                .arg("--key")
                .arg(key)
                .arg("--data")
                .arg(data)
                .arg("--model-out")
                .arg(out.join(format!("{id}.json")))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    }

    /// Reads a client's stdout live: the receiver hears of the first line
    /// that contains `needle`; the thread returns the whole stdout.
    pub fn watch_stdout(
        c: &mut Killed,
        needle: &'static str,
    ) -> (
        std::sync::mpsc::Receiver<()>,
        std::thread::JoinHandle<String>,
    ) {
        use std::io::BufRead;
        let out = c.0.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::Builder::new()
            .name("watch-stdout".into())
            .spawn(move || {
                let mut text = String::new();
                for line in std::io::BufReader::new(out).lines() {
                    let line = line.unwrap();
                    if line.contains(needle) {
                        let _ = tx.send(());
                    }
                    text.push_str(&line);
                    text.push('\n');
                }
                text
            })
            .unwrap();
        (rx, reader)
    }

    /// Waits for a client to end: (success, stdout + stderr).
    pub fn finish(mut c: Killed, timeout: Duration) -> (bool, String) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = c.0.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "client did not finish");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut text = String::new();
        if let Some(out) = c.0.stdout.as_mut() {
            out.read_to_string(&mut text).unwrap();
        }
        c.0.stderr
            .as_mut()
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        (status.success(), text)
    }

    pub fn operator(token: &Path, url: &str) -> fedhe::client::AggregatorClient {
        let token = std::fs::read_to_string(token).unwrap();
        fedhe::client::AggregatorClient::new(url).with_token(token.trim())
    }
}

/// What [`three_tree_sites`] kills (SIGKILL) once a reports its second
/// tree, and then restarts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kill {
    Nothing,
    /// `fedhe serve`, restarted on the same state folder and port.
    Server,
    /// Site b's `fedhe client`, restarted with the same state file (and
    /// mask ledger).
    SiteB,
}

/// Three `fedhe client` processes a, b, c over `fedhe serve`; `kill` one
/// of them once a reports its second tree (the third tree's level rounds
/// under way) and restart it. Returns the three model files' trees and the
/// clients' output.
fn three_tree_sites(dir: &Path, kill: Kill) -> (Vec<Ensemble>, String) {
    use processes::*;
    let (sk, pk) = keys(dir);
    let (files, plan) = split_and_plan(dir, 3, &["--roster", "a,b,c"]);
    let state = dir.join("state");
    let token = dir.join("operator.token");
    let args = [
        "--public-key",
        pk.to_str().unwrap(),
        "--plan",
        plan.to_str().unwrap(),
        "--operator-token-file",
        token.to_str().unwrap(),
    ];
    let (server, url) = serve(&args, &state, "127.0.0.1:0");
    let mut server = Some(server);
    let ids = ["a", "b", "c"];
    let mut clients: Vec<Killed> = ids
        .iter()
        .zip(&files)
        .map(|(id, f)| client(&url, &sk, f, id, dir))
        .collect();
    let (seen, reader) = watch_stdout(&mut clients[0], "tree 2/5");
    let mut reader = Some(reader);
    if kill != Kill::Nothing {
        seen.recv_timeout(Duration::from_secs(120))
            .expect("a reports its second tree");
        let round = operator(&token, &url).status().unwrap().round;
        assert!(round > 2 + 2 * 3, "killed in the third tree: round {round}");
        if kill == Kill::Server {
            drop(server.take()); // SIGKILL mid-tree
            std::thread::sleep(Duration::from_secs(3));
            let port = url.rsplit(':').next().unwrap();
            server = Some(serve(&args, &state, &format!("127.0.0.1:{port}")).0);
        } else {
            clients[1].0.kill().unwrap(); // SIGKILL mid-tree
            clients[1].0.wait().unwrap();
            std::thread::sleep(Duration::from_secs(1));
            clients[1] = client(&url, &sk, &files[1], "b", dir);
        }
    }
    let mut outs = String::new();
    for (i, c) in clients.into_iter().enumerate() {
        let (ok, mut out) = finish(c, Duration::from_secs(180));
        if let Some(r) = reader.take().filter(|_| i == 0) {
            out = r.join().unwrap() + &out;
        }
        assert!(ok, "client {} failed:\n{out}", ids[i]);
        assert!(out.contains("done: 5 trees of 5 iterations"), "{out}");
        outs += &out;
    }
    drop(server);
    let trees = ids
        .iter()
        .map(|id| {
            fedhe::model::ModelFile::load(&dir.join(format!("{id}.json")))
                .unwrap()
                .ensemble
                .expect("a gbdt model file holds its trees")
        })
        .collect();
    (trees, outs)
}

#[test]
fn a_server_killed_mid_tree_gives_the_uninterrupted_trees() {
    let reference = uninterrupted_trees();
    let dir = tempfile::tempdir().unwrap();
    let (disrupted, out) = three_tree_sites(dir.path(), Kill::Server);
    assert!(
        out.contains("aggregator unreachable") && out.contains("retrying in"),
        "{out}"
    );
    // Bit for bit: every split and every leaf, at every site.
    for e in &disrupted {
        assert_eq!(*e, reference);
    }
}

/// The trees of three sites run without a kill (the same at every site).
fn uninterrupted_trees() -> Ensemble {
    let (reference, _) = three_tree_sites(tempfile::tempdir().unwrap().path(), Kill::Nothing);
    assert!(reference.iter().all(|e| *e == reference[0]));
    assert_eq!(reference[0].trees.len(), 5);
    assert!(reference[0].trees[0].nodes.len() > 3, "the trees split");
    reference[0].clone()
}

/// A site SIGKILLed mid-tree and restarted resumes from its state file and
/// mask ledger (a ledger line may be torn): it replays the published sums
/// of the trees it had, takes part again with the keys it announced, and
/// every site ends with the trees of an uninterrupted run, bit for bit.
#[test]
fn a_site_killed_mid_tree_resumes_and_gives_the_uninterrupted_trees() {
    let reference = uninterrupted_trees();
    let dir = tempfile::tempdir().unwrap();
    let (disrupted, out) = three_tree_sites(dir.path(), Kill::SiteB);
    assert!(out.contains("resumed as `b`"), "{out}");
    for e in &disrupted {
        assert_eq!(*e, reference);
    }
}

#[test]
fn a_site_that_drops_out_mid_tree_leaves_the_others_to_finish() {
    use processes::*;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (sk, pk) = keys(dir);
    let (files, plan) = split_and_plan(
        dir,
        4,
        &[
            "--roster",
            "a,b,c,d",
            "--min-clients",
            "3",
            "--deadline",
            "4",
        ],
    );
    let state = dir.join("state");
    let token = dir.join("operator.token");
    let args = [
        "--public-key",
        pk.to_str().unwrap(),
        "--plan",
        plan.to_str().unwrap(),
        "--operator-token-file",
        token.to_str().unwrap(),
    ];
    let (_server, url) = serve(&args, &state, "127.0.0.1:0");
    let ids = ["a", "b", "c", "d"];
    let mut clients: Vec<Killed> = ids
        .iter()
        .zip(&files)
        .map(|(id, f)| client(&url, &sk, f, id, dir))
        .collect();
    // d is killed mid-tree: while the second (or a later) tree's level 1
    // is open, after its root summed d; the tree must close at the levels
    // d was summed in (depth 3: d's update reaches level 1 at most, so
    // level 2 at the latest holds a, b and c only).
    let p = fedhe::plan::Plan::load(&plan).unwrap();
    let layout = p.layout();
    let op = operator(&token, &url);
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let (killed_at, tree) = loop {
        assert!(std::time::Instant::now() < deadline, "no second tree");
        let round = op.status().unwrap().round;
        if let Some(fedhe::plan::RoundPhase::Tree {
            iteration,
            level: 1,
        }) = layout.phase(round)
            && iteration >= 2
        {
            break (round, iteration);
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    drop(clients.pop()); // SIGKILL
    // The open round's key set, read while the federation runs (a
    // complete federation answers no more key reads).
    let watcher = {
        let op = operator(&token, &url);
        std::thread::Builder::new()
            .name("key-sets".into())
            .spawn(move || {
                let mut sets = std::collections::BTreeMap::new();
                while let Ok(s) = op.status() {
                    if s.complete.is_some() {
                        break;
                    }
                    // The open round's key set, its latest phase kept.
                    if let Ok(k) = op.key_set(s.round, None) {
                        let seen: &mut fedhe::protocol::KeySet =
                            sets.entry(s.round).or_insert(k.clone());
                        if !k.survivors.is_empty() || seen.survivors.is_empty() {
                            *seen = k;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                sets
            })
            .unwrap()
    };
    let (mut models, mut closed_at) = (Vec::new(), Vec::new());
    for (i, c) in clients.into_iter().enumerate() {
        let (ok, out) = finish(c, Duration::from_secs(300));
        assert!(ok, "client {} failed:\n{out}", ids[i]);
        assert!(out.contains("done: 5 trees of 5 iterations"), "{out}");
        let closed = format!("tree {tree}/5: ");
        let line = out.lines().find(|l| l.starts_with(&closed)).unwrap();
        let (_, note) = line.split_once("; closed at depth ").expect(line);
        let (depth, rest) = note.split_once(':').unwrap();
        assert_eq!(
            rest, " its next level summed other sites (without d)",
            "{out}"
        );
        closed_at.push(depth.parse::<u32>().unwrap());
        assert!(
            out.contains("(1 closed early: the sites summed changed mid-tree)"),
            "{out}"
        );
        let m = fedhe::model::ModelFile::load(&dir.join(format!("{}.json", ids[i]))).unwrap();
        models.push(m.ensemble.expect("trees"));
    }
    assert!(models.iter().all(|e| *e == models[0]), "identical trees");
    assert_eq!(models[0].trees.len(), 5);
    // Exactly the trees of a federation whose trees before `tree` sum a,
    // b, c and d, `tree` closed where d's updates end (level 1 or 2, as
    // the kill fell), the later ones a, b and c only.
    assert!(
        closed_at.iter().all(|d| *d == closed_at[0]),
        "{closed_at:?}"
    );
    let at = layout.tree_round(3, tree, closed_at[0]);
    let reference = hub::run(&p, &files, at);
    assert_eq!(models[0], reference.ensembles[0]);
    // The rounds after d left hold a, b and c only, masked by the double
    // masking flow (d's self mask never asked for: its update is in no sum).
    let status = op.status().unwrap();
    assert!(status.complete.is_some(), "the federation completed");
    let last = status.round;
    let sets = watcher.join().unwrap();
    assert!(sets.len() >= 4, "{sets:?}");
    for (r, keys) in &sets {
        // Whenever d's update is in no sum, d is no survivor: the others
        // reveal shares of d's pair seeds only, never of its self seed.
        let info = op.round(*r, None).unwrap();
        if keys.phase != fedhe::protocol::MaskPhase::Keys {
            assert!(keys.masked, "round {r}");
        }
        if !info.submitted.iter().any(|s| s == "d") {
            assert!(!keys.survivors.iter().any(|s| s == "d"), "round {r}");
        }
    }
    for r in killed_at + 2..=last {
        let info = op.round(r, None).unwrap();
        assert_eq!(info.contributors, 3, "round {r}: {info:?}");
        let mut who = info.submitted.clone();
        who.sort();
        assert_eq!(who, vec!["a", "b", "c"], "round {r}");
        if let Some(keys) = sets.get(&r).filter(|k| !k.survivors.is_empty()) {
            assert_eq!(keys.survivors, vec!["a", "b", "c"], "round {r}");
        }
    }
    let seen: Vec<_> = sets
        .iter()
        .map(|(r, k)| (*r, k.phase, k.roster.clone(), k.survivors.clone()))
        .collect();
    assert!(
        seen.iter()
            .any(|(r, _, _, s)| *r >= killed_at + 2 && !s.is_empty()),
        "{seen:?}"
    );
}

/// A site that leaves in tree 2's level 1 (5 trees of depth 3, four
/// sites): the other three close tree 2 at depth 1, leave that level's sum
/// unused, and grow trees 3 to 5 over themselves; the rounds the closed
/// tree leaves over run empty, so every site ends at the plan's last
/// round. No site is asked the same histogram twice (growing tree 2 again
/// from its root would send the root histograms again, and the two sums'
/// difference would be d's).
#[test]
fn a_site_leaving_mid_tree_closes_it_and_no_histogram_is_asked_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (files, plan) = processes::split_and_plan(dir.path(), 4, &[]);
    let p = fedhe::plan::Plan::load(&plan).unwrap();
    assert_eq!(p.last_round(), 1 + 1 + 5 * 3);
    let run = hub::run(&p, &files, p.layout().tree_round(3, 2, 1));
    let e = &run.ensembles[0];
    assert_eq!(e.trees.len(), 5);
    let closed: Vec<_> = run
        .records
        .iter()
        .filter(|r| r.closed_at.is_some())
        .collect();
    assert_eq!(closed.len(), 1, "{:?}", run.records);
    assert_eq!((closed[0].iteration, closed[0].closed_at), (2, Some(1)));
    assert_eq!(closed[0].left, vec!["d".to_string()]);
    assert_eq!(
        closed[0].closed_note().unwrap(),
        "closed at depth 1: its next level summed other sites (without d)"
    );
    // Two rounds for tree 2 (its root and the unused level), so one round
    // of its three runs empty at the end.
    assert_eq!(closed[0].rounds, 2);
    for site in ["a", "b", "c"] {
        let mine: Vec<&Vec<f64>> = run
            .sent
            .values()
            .flat_map(|v| v.iter().filter(|(id, _)| id == site).map(|(_, x)| x))
            .collect();
        let empty = mine
            .iter()
            .filter(|v| v.len() == fedhe::plan::GBDT_LIMBS)
            .count();
        assert_eq!(empty, 1, "{site}");
        for (i, x) in mine.iter().enumerate() {
            if x.len() > fedhe::plan::GBDT_LIMBS {
                assert!(!mine[..i].contains(x), "{site} sent a vector twice");
            }
        }
    }
}

/// A plaintext federation of site threads summing through one in-memory
/// hub, whose last site leaves at a chosen round: the reference for a site
/// that drops out mid-tree.
mod hub {
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, Condvar, Mutex};

    use fedhe::client::{ClientEvent, Exchange, ExchangeCost, LoopError, RoundSum, TreeRecord};
    use fedhe::model::gbdt::Ensemble;
    use fedhe::plan::Plan;
    use fedhe::session::{RunRecord, run_gbdt_plan};

    #[derive(Default)]
    struct State {
        /// Sites still in the federation.
        active: Vec<String>,
        /// Per round: who sent what.
        sent: BTreeMap<u64, Vec<(String, Vec<f64>)>>,
    }

    #[derive(Default)]
    struct Hub {
        state: Mutex<State>,
        changed: Condvar,
    }

    struct Site {
        hub: Arc<Hub>,
        id: String,
        leave_at: Option<u64>,
    }

    impl Exchange for Site {
        fn contribute(
            &mut self,
            round: u64,
            values: &[f64],
            _cancel: &AtomicBool,
        ) -> Result<RoundSum, LoopError> {
            let mut st = self.hub.state.lock().unwrap();
            if self.leave_at == Some(round) {
                st.active.retain(|s| *s != self.id);
                self.hub.changed.notify_all();
                return Err(LoopError::Cancelled);
            }
            st.sent
                .entry(round)
                .or_default()
                .push((self.id.clone(), values.to_vec()));
            self.hub.changed.notify_all();
            let st = self
                .hub
                .changed
                .wait_while(st, |st| {
                    let sent = st.sent.get(&round).map_or(0, Vec::len);
                    sent < st.active.len()
                })
                .unwrap();
            let sent = &st.sent[&round];
            let mut sum = vec![0.0; values.len()];
            for (_, v) in sent {
                for (a, b) in sum.iter_mut().zip(v) {
                    *a += b;
                }
            }
            Ok(RoundSum {
                values: sum,
                contributors: sent.len() as u32,
                contributed: true,
                counted: sent.iter().map(|(id, _)| id.clone()).collect(),
                cost: ExchangeCost::default(),
                masked: false,
            })
        }
    }

    /// What a run left: the survivors' trees, site a's tree records, and
    /// every upload per round.
    pub struct Run {
        pub ensembles: Vec<Ensemble>,
        pub records: Vec<TreeRecord>,
        pub sent: BTreeMap<u64, Vec<(String, Vec<f64>)>>,
    }

    /// The federation of sites a, b, c (and d, which leaves at `leave_at`)
    /// on `files` under `plan`.
    pub fn run(plan: &Plan, files: &[PathBuf], leave_at: u64) -> Run {
        let ids = ["a", "b", "c", "d"];
        let hub = Arc::new(Hub::default());
        hub.state.lock().unwrap().active = ids.iter().map(|s| s.to_string()).collect();
        let fingerprint = plan.fingerprint().to_string();
        let threads: Vec<_> = ids
            .iter()
            .zip(files)
            .map(|(id, file)| {
                let data = fedhe::data::load_csv(file, &plan.csv_options())
                    .unwrap()
                    .dataset;
                let mut site = Site {
                    hub: hub.clone(),
                    id: id.to_string(),
                    leave_at: (*id == "d").then_some(leave_at),
                };
                let (plan, fingerprint, id) = (plan.clone(), fingerprint.clone(), id.to_string());
                std::thread::spawn(move || {
                    let record = RunRecord {
                        kind: fedhe::model::FEDERATED,
                        data_files: Vec::new(),
                        server: None,
                        site: id,
                    };
                    let cancel = AtomicBool::new(false);
                    let mut records = Vec::new();
                    let run = run_gbdt_plan(
                        &mut site,
                        &plan,
                        &fingerprint,
                        (&data, None),
                        record,
                        &mut |e| {
                            if let ClientEvent::Tree(r) = e {
                                records.push(r.clone());
                            }
                        },
                        &cancel,
                    );
                    run.map(|r| (r, records))
                })
            })
            .collect();
        let (mut out, mut records) = (Vec::new(), Vec::new());
        for (id, t) in ids.iter().zip(threads) {
            match t.join().unwrap() {
                Ok((run, r)) => {
                    out.push(run.model.ensemble.unwrap());
                    if *id == "a" {
                        records = r;
                    }
                }
                Err(e) => assert_eq!(*id, "d", "{id}: {e}"),
            }
        }
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|e| *e == out[0]));
        let sent = std::mem::take(&mut hub.state.lock().unwrap().sent);
        Run {
            ensembles: out,
            records,
            sent,
        }
    }
}

/// Issue 24's label skew: Dirichlet(0.5) shares of every class over 4
/// sites. The bins and histograms are exact sums whatever the partition,
/// so the encrypted, masked federation's trees are the pooled rows' bit for
/// bit: binary WDBC and multi-class penguins (categories, missing cells).
#[test]
fn dirichlet_label_skew_over_four_masked_sites_gives_the_pooled_trees() {
    let s = settings(3, 4, 64);
    for (file, label) in [
        ("breast_cancer_wdbc.csv", "diagnosis"),
        ("penguins.csv", "species"),
    ] {
        let mut cfg = config(sample(file), label, 4, false);
        if let SimData::Split { partition, .. } = &mut cfg.data {
            *partition = Partition::Dirichlet(0.5);
        }
        let (parts, _) = load_sim_data(&cfg.data, &cfg.csv).unwrap();
        assert_eq!(parts.len(), 4);
        // The skew is real: class 0's share differs widely between sites.
        let share =
            |p: &Dataset| p.y.iter().filter(|&&v| v == 0.0).count() as f64 / p.rows() as f64;
        let shares: Vec<f64> = parts.iter().map(share).collect();
        let spread = shares.iter().cloned().fold(f64::MIN, f64::max)
            - shares.iter().cloned().fold(f64::MAX, f64::min);
        assert!(spread > 0.3, "{file}: class 0 shares {shares:?}");
        let enc = run(&cfg, s);
        assert!(enc.same_at_every_site, "{file}");
        assert!(enc.trees[1..].iter().all(|r| r.masked), "{file}");
        let pooled = pooled(&parts, &s);
        assert!(pooled.trees[0].nodes.len() > 3, "{file}: the trees split");
        assert_eq!(ensemble(&enc).trees, pooled.trees, "{file}");
        assert_eq!(ensemble(&enc).base, pooled.base, "{file}");
    }
}

/// The pooled figures of the federated test equal the metrics of the
/// pooled rows: counts exactly, log-loss to 1e-9, AUC (from 1,024-bin
/// histograms) to 1e-3, regression sums to 1e-9.
fn assert_pooled(what: &str, fed: &fedhe::model::Evaluation, all: &fedhe::model::Evaluation) {
    use fedhe::model::Evaluation as E;
    assert_eq!(fed.rows(), all.rows(), "{what}: rows");
    match (fed, all) {
        (E::Binary(f), E::Binary(a)) => {
            assert_eq!(f.confusion, a.confusion, "{what}");
            assert_eq!((f.accuracy, f.f1), (a.accuracy, a.f1), "{what}");
            assert!((f.log_loss - a.log_loss).abs() < 1e-9, "{what}");
            let (x, y) = (f.roc_auc.unwrap(), a.roc_auc.unwrap());
            assert!((x - y).abs() < 1e-3, "{what}: AUC {x} vs {y}");
        }
        (E::Multiclass(f), E::Multiclass(a)) => {
            assert_eq!(f.accuracy, a.accuracy, "{what}");
            assert!((f.log_loss - a.log_loss).abs() < 1e-9, "{what}");
        }
        (E::Regression(f), E::Regression(a)) => {
            assert!((f.rmse - a.rmse).abs() < 1e-9, "{what}");
            assert!((f.r2 - a.r2).abs() < 1e-9, "{what}");
        }
        _ => panic!("{what}: {fed:?} vs {all:?}"),
    }
}

/// `fedhe simulate --model gbdt --client-test …` in the library: after the
/// last tree one masked evaluation round gives every site the same pooled
/// test figures, those of the trees on all the sites' test rows together;
/// the plan's last round is that round. Regression on diabetes.
#[test]
fn the_trees_federated_test_pools_every_sites_test_rows() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (clients, tests): (Vec<PathBuf>, Vec<PathBuf>) = (0..3)
        .map(|i| {
            let (c, t) = (d.join(format!("c{i}.csv")), d.join(format!("t{i}.csv")));
            // Rows 5k + 4 are test rows, spread over the three sites.
            write_rows(&sample("diabetes.csv"), &c, |r| r % 3 == i && r % 5 != 4);
            write_rows(&sample("diabetes.csv"), &t, |r| r % 3 == i && r % 5 == 4);
            (c, t)
        })
        .unzip();
    let cfg = SimulationConfig {
        data: SimData::SiteTests { clients, tests },
        evaluation: Some(fedhe::plan::FedEvaluation {
            test: true,
            ..Default::default()
        }),
        ..config(sample("diabetes.csv"), "progression", 3, false)
    };
    let r = run(&cfg, settings(4, 3, 64));
    assert!(r.same_at_every_site);
    let f = r
        .federated
        .as_ref()
        .expect("the evaluation round's figures");
    let test = f.test.as_ref().expect("a federated test");
    // `r.test`: the trees on the three test files together.
    let rows: usize = (0..3)
        .map(|i| {
            std::fs::read_to_string(d.join(format!("t{i}.csv")))
                .unwrap()
                .lines()
                .count()
                - 1
        })
        .sum();
    assert!(rows > 80, "{rows} test rows");
    assert_eq!(test.rows(), rows);
    assert_pooled("federated test", test, &r.test);
    // Every site held out the plan's validation share: pooled too.
    assert!(f.validation_of(f.last_round).is_some_and(|v| v.rows() > 0));
    let layout = r.plan.layout();
    assert_eq!(
        layout.phase(r.plan.last_round()),
        Some(fedhe::plan::RoundPhase::Evaluate)
    );
    assert_eq!(f.last_round + 1, r.plan.last_round());
    assert_eq!(r.model.provenance.federated.as_ref(), Some(f));
    for m in &r.sites {
        assert_eq!(m.provenance.federated.as_ref(), Some(f));
    }
    // Test rows for a plan without a test round: refused, saying why.
    let no_test = SimulationConfig {
        evaluation: None,
        plain: true,
        ..cfg.clone()
    };
    let e = simulate_gbdt(
        &no_test,
        settings(2, 2, 16),
        &mut |_| {},
        Arc::new(AtomicBool::new(false)),
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(e.contains("`[evaluation] test = true`"), "{e}");
}

/// `fedhe plan init --model gbdt --federated-test`, `fedhe serve` and three
/// `fedhe client … --test` processes: every site prints the same
/// `federated test` line, whose figures are `fedhe predict`'s on the three
/// test files together; the aggregator completes at the plan's evaluation
/// round.
#[test]
fn three_tree_sites_with_their_test_files_print_the_pooled_test() {
    use processes::*;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (sk, pk) = keys(dir);
    let (files, plan) = split_and_plan(dir, 3, &["--roster", "a,b,c", "--federated-test"]);
    let p = fedhe::plan::Plan::load(&plan).unwrap();
    assert!(p.evaluation.is_some_and(|e| e.test), "{p:?}");
    // Each site's test rows: a third of the split's test rows.
    let pooled_test = dir.join("split/test.csv");
    let text = std::fs::read_to_string(&pooled_test).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let mut parts = vec![format!("{header}\n"); 3];
    for (i, l) in lines.enumerate() {
        parts[i % 3].push_str(l);
        parts[i % 3].push('\n');
    }
    let token = dir.join("operator.token");
    let args = [
        "--public-key",
        pk.to_str().unwrap(),
        "--plan",
        plan.to_str().unwrap(),
        "--operator-token-file",
        token.to_str().unwrap(),
    ];
    let (_server, url) = serve(&args, &dir.join("state"), "127.0.0.1:0");
    let ids = ["a", "b", "c"];
    let clients: Vec<Killed> = ids
        .iter()
        .zip(&files)
        .zip(&parts)
        .map(|((id, f), rows)| {
            let t = dir.join(format!("test-{id}.csv"));
            std::fs::write(&t, rows).unwrap();
            Killed(
                fedhe()
                    .args(["client", "--server", &url, "--name", id, "--id", id])
                    .arg("--key")
                    .arg(&sk)
                    .arg("--data")
                    .arg(f)
                    .arg("--test")
                    .arg(&t)
                    .arg("--model-out")
                    .arg(dir.join(format!("{id}.json")))
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    let outs: Vec<String> = clients
        .into_iter()
        .zip(ids)
        .map(|(c, id)| {
            let (ok, out) = finish(c, Duration::from_secs(300));
            assert!(ok, "client {id} failed:\n{out}");
            out
        })
        .collect();
    let line = |o: &str, start: &str| {
        o.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no {start:?} line:\n{o}"))
            .to_string()
    };
    let first = line(&outs[0], "federated test (");
    let rows = text.lines().count() - 1;
    assert!(first.contains(&format!("{rows} rows")), "{first}");
    for o in &outs {
        assert_eq!(line(o, "federated test ("), first);
        assert!(o.contains("done: 5 trees of 5 iterations"), "{o}");
    }
    // `fedhe predict` on the pooled test rows: the same table figures (the
    // AUC read from the pooled histograms, to 1e-3).
    let model = dir.join("a.json");
    let out = super::common::fedhe(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--data",
        pooled_test.to_str().unwrap(),
    ]);
    let predicted = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{predicted}");
    for metric in ["accuracy ", "precision ", "recall ", "f1 ", "log_loss "] {
        assert_eq!(
            line(&outs[0], metric),
            line(&predicted, metric),
            "{metric}\n{}\n{predicted}",
            outs[0]
        );
    }
    let auc = |o: &str| -> f64 {
        line(o, "roc_auc ")
            .split_whitespace()
            .last()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!((auc(&outs[0]) - auc(&predicted)).abs() <= 1e-3 + 1e-9);
    // The figures in every model file: those of the pooled rows.
    let m = fedhe::model::ModelFile::load(&model).unwrap();
    let all = fedhe::data::load_csv(&pooled_test, &m.csv_options())
        .unwrap()
        .dataset;
    let fed = m.provenance.federated.clone().expect("federated figures");
    let expected = m.evaluate(&all.x, &all.y.to_vec()).unwrap();
    assert_pooled("CLI federated test", fed.test.as_ref().unwrap(), &expected);
    for id in ids {
        let o = fedhe::model::ModelFile::load(&dir.join(format!("{id}.json"))).unwrap();
        assert_eq!(o.ensemble, m.ensemble);
        assert_eq!(o.provenance.federated, m.provenance.federated);
    }
    // The aggregator completes at the evaluation round, after the trees'.
    let status = operator(&token, &url).status().unwrap();
    let done = status.complete.expect("complete");
    assert_eq!(done.last_round, p.last_round());
    assert_eq!(p.layout().evaluation_round(), Some(p.last_round()));
    assert_eq!((done.training_rounds, done.sites), (p.work_rounds(), 3));
}

/// `fedhe bench gbdt --processes`: `fedhe serve` and three `fedhe client`
/// processes grow the benchmark's trees (masked, over loopback HTTP, state
/// on disk); the bench reads site 1's own per-tree lines, finds the same
/// trees at every site, and leaves no temporary folder behind. With
/// `--plain` it is refused.
#[test]
fn the_process_benchmark_grows_the_same_trees_in_separate_processes() {
    let args = [
        "bench",
        "gbdt",
        "--processes",
        "--rows",
        "600",
        "--features",
        "6",
        "--trees",
        "3",
        "--depth",
        "2",
        "--bins",
        "16",
        "--json",
    ];
    let out = super::common::fedhe(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["trees"], 3, "{v}");
    assert_eq!(v["rounds_per_tree"], 2.0, "{v}");
    assert_eq!(v["sites"], 3, "{v}");
    assert_eq!(v["masked"], true, "{v}");
    assert_eq!(v["same_at_every_site"], true, "{v}");
    let ms = v["tree_ms_median"].as_f64().unwrap();
    assert!(ms > 0.0 && ms <= v["tree_ms_max"].as_f64().unwrap(), "{v}");
    assert!(v["total_s"].as_f64().unwrap() > 0.0, "{v}");
    // Its folder (named by its pid) is gone.
    let leftover = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("fedhe-bench-gbdt-")
        });
    assert!(
        !leftover,
        "a fedhe-bench-gbdt-* folder was left in the temp dir"
    );
    let mut plain = args.to_vec();
    plain.push("--plain");
    let out = super::common::fedhe(&plain);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--plain"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
