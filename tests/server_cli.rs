//! `fedhe plan init`, `fedhe serve --plan` and `fedhe client` processes: the
//! multi-machine setup on one machine. Clients that start before the
//! operator loads the key and the plan wait for them; a client killed and
//! restarted resumes under its id; an aggregator killed with SIGKILL for
//! 30 s mid-round is ridden out, and the federation ends with exactly the
//! model of an uninterrupted run.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{reordered, sample};
use fedhe::crypto::{ParamSet, SecretKey};
use fedhe::model::ModelFile;

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

/// Writes a key pair into `dir`: (secret, public).
fn keys(dir: &Path) -> (PathBuf, PathBuf) {
    let sk = SecretKey::generate(ParamSet::Standard64);
    let sk_path = dir.join("secret.key");
    sk.save(&sk_path, false).unwrap();
    let pk_path = dir.join("public.key");
    std::fs::write(&pk_path, sk.public().to_bytes()).unwrap();
    (sk_path, pk_path)
}

/// `fedhe plan init` from the bundled training split, with `extra` flags.
fn plan_init(dir: &Path, extra: &[&str]) -> PathBuf {
    let plan = dir.join("plan.toml");
    let out = fedhe()
        .args(["plan", "init", "--rounds", "3", "--epochs", "2"])
        .args(extra)
        .arg("--data")
        .arg(sample("train.csv"))
        .arg("--out")
        .arg(&plan)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("30 numeric and 0 categorical feature columns"),
        "{stdout}"
    );
    plan
}

/// Starts `fedhe serve` with `args`; returns the process and its URL.
fn serve(args: &[&str], state: &Path, bind: &str) -> (Killed, String) {
    serve_logged(args, state, bind, None)
}

/// [`serve`], its info log redirected into the file `log`, if given.
fn serve_logged(args: &[&str], state: &Path, bind: &str, log: Option<&Path>) -> (Killed, String) {
    let mut cmd = fedhe();
    cmd.args(["serve", "--bind", bind])
        .env("RUST_LOG", if log.is_some() { "info" } else { "warn" })
        .args(args)
        .arg("--state-dir")
        .arg(state)
        .stdout(Stdio::piped());
    if let Some(path) = log {
        cmd.stderr(std::fs::File::create(path).unwrap());
    }
    let mut child = Killed(cmd.spawn().unwrap());
    let url = crate::common::serve_url(&mut child.0);
    (child, url)
}

fn client(url: &str, key: &Path, data: &Path, id: &str, out: &Path) -> Killed {
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

/// Waits for a client to end: (success, stdout + stderr).
fn finish(mut c: Killed, timeout: Duration) -> (bool, String) {
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = c.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "client did not finish");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut text = String::new();
    // A test that watched stdout live (`watch_stdout`) took it already.
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

/// Reads a client's stdout live on a thread: the receiver gets a message
/// when a line contains `needle`; the thread returns the whole stdout.
fn watch_stdout(
    c: &mut Killed,
    needle: &'static str,
) -> (
    std::sync::mpsc::Receiver<()>,
    std::thread::JoinHandle<String>,
) {
    use std::io::BufRead;
    let out = c.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
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
    });
    (rx, reader)
}

fn operator(state: &Path, url: &str) -> fedhe::client::AggregatorClient {
    let token = std::fs::read_to_string(state.join("../operator.token")).unwrap();
    fedhe::client::AggregatorClient::new(url).with_token(token.trim())
}

#[test]
fn plan_init_serve_and_two_clients_one_with_reordered_columns() {
    let dir = tempfile::tempdir().unwrap();
    let (sk, pk) = keys(dir.path());
    // With masks, plan init's quorum is 3 (a round of two masks nothing);
    // two sites need the quorum of two in words.
    let other = tempfile::tempdir().unwrap();
    let three = plan_init(other.path(), &[]);
    let text = std::fs::read_to_string(&three).unwrap();
    assert!(text.contains("min_clients = 3"), "{text}");
    assert!(!text.contains("allow_unmasked_pairs"), "{text}");
    let plan = plan_init(
        dir.path(),
        &["--min-clients", "2", "--allow-unmasked-pairs"],
    );
    let text = std::fs::read_to_string(&plan).unwrap();
    assert!(text.starts_with("# FedHE federation plan"), "{text}");
    assert!(text.contains("kind = \"binary\""), "{text}");
    assert!(text.contains("min_clients = 2"), "{text}");
    assert!(text.contains("allow_unmasked_pairs = true"), "{text}");
    let state = dir.path().join("state");
    let token = dir.path().join("operator.token");
    // No key and no plan yet: the clients start first and wait.
    let (_server, url) = serve(
        &["--operator-token-file", token.to_str().unwrap()],
        &state,
        "127.0.0.1:0",
    );
    let b_csv = dir.path().join("b.csv");
    reordered(&sample("clients/client_2.csv"), &b_csv);
    let mut a = client(&url, &sk, &sample("clients/client_1.csv"), "a", dir.path());
    let mut b = client(&url, &sk, &b_csv, "b", dir.path());
    // The operator acts only once both clients say they wait for it (a
    // fixed sleep raced a loaded machine's process start).
    let waiting = "waiting for the aggregator's operator";
    let watched = [watch_stdout(&mut a, waiting), watch_stdout(&mut b, waiting)];
    for (seen, _) in &watched {
        seen.recv_timeout(Duration::from_secs(60))
            .expect("a client never said it waits for the operator");
    }
    let op = operator(&state, &url);
    assert_eq!(op.status().unwrap().registered, 0);
    op.load_public_key(&std::fs::read(&pk).unwrap(), None)
        .unwrap();
    let put = ureq::put(format!("{url}/api/v1/plan"))
        .header("authorization", format!("Bearer {}", op.token().unwrap()))
        .send(std::fs::read(&plan).unwrap())
        .unwrap();
    assert_eq!(put.status(), 200);
    let mut outs = Vec::new();
    for (c, (_, reader)) in [a, b].into_iter().zip(watched) {
        let (ok, rest) = finish(c, Duration::from_secs(60));
        let out = reader.join().unwrap() + &rest;
        assert!(ok, "client failed:\n{out}");
        assert!(out.contains(waiting), "{out}");
        assert!(out.contains("round   3: 2 contributors (a, b)"), "{out}");
        assert!(out.contains("done: global logistic regression"), "{out}");
        outs.push(out);
    }
    assert!(
        outs[1].contains("site_note"),
        "extra column noted: {}",
        outs[1]
    );
    // Both sites hold the same global model, whatever their column order.
    let ma = ModelFile::load(&dir.path().join("a.json")).unwrap();
    let mb = ModelFile::load(&dir.path().join("b.json")).unwrap();
    assert_eq!(ma.params, mb.params);
    assert_eq!(ma.feature_names, mb.feature_names);
    // Matched by name, b's reversed columns help instead of scrambling the
    // model (taken by position they cost about 6 points of accuracy).
    let scored = fedhe::model::score_csv(&ma, &sample("test.csv")).unwrap();
    let accuracy = scored.evaluation.unwrap().score();
    assert!(accuracy >= 0.96, "test accuracy {accuracy}");
    assert_eq!(
        ma.provenance.plan.as_deref(),
        Some(
            fedhe::plan::Plan::load(&plan)
                .unwrap()
                .fingerprint()
                .to_string()
                .as_str()
        )
    );
}

#[test]
fn a_finished_federation_says_so_and_refuses_a_late_site() {
    let dir = tempfile::tempdir().unwrap();
    let (sk, pk) = keys(dir.path());
    // Two sites: a masked plan of two must say so in words.
    let plan = plan_init(
        dir.path(),
        &["--min-clients", "2", "--allow-unmasked-pairs"],
    );
    let state = dir.path().join("state");
    let log = dir.path().join("serve.log");
    let args = [
        "--public-key",
        pk.to_str().unwrap(),
        "--plan",
        plan.to_str().unwrap(),
    ];
    let (_server, url) = serve_logged(&args, &state, "127.0.0.1:0", Some(&log));
    let mut outs = Vec::new();
    let a = client(&url, &sk, &sample("clients/client_1.csv"), "a", dir.path());
    let b = client(&url, &sk, &sample("clients/client_2.csv"), "b", dir.path());
    for c in [a, b] {
        let (ok, out) = finish(c, Duration::from_secs(60));
        assert!(ok, "client failed:\n{out}");
        // The sites are told too (the last one to finish at least: the
        // first may ask before the close is recorded).
        outs.push(out);
    }
    assert!(
        outs.iter()
            .any(|o| o.contains("federation complete: 3 of 3 rounds, 2 sites")),
        "{outs:?}"
    );
    // The status says so: the last round (3 training rounds after the
    // statistics round), closed, nobody awaited, no round 5.
    let status = crate::common::member(&url, &sk).status().unwrap();
    let done = status.complete.clone().expect("complete");
    assert_eq!(
        (done.training_rounds, done.last_round, done.sites),
        (3, 4, 2)
    );
    assert_eq!(status.round, 4);
    assert_eq!(status.round_state, fedhe::protocol::RoundState::Closed);
    assert!(status.missing.is_empty() && status.deadline_unix.is_none());
    // The log (a file, not a terminal) says it, without colour codes.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("federation complete: 3 of 3 rounds, 2 sites"),
        "{text}"
    );
    assert!(!text.contains('\u{1b}'), "ANSI codes in a redirected log");
    // A site that comes afterwards is told, with the status code.
    let late = client(&url, &sk, &sample("clients/client_3.csv"), "c", dir.path());
    let (ok, out) = finish(late, Duration::from_secs(60));
    assert!(!ok, "{out}");
    assert!(
        out.contains("410, federation_complete") && out.contains("federation is complete"),
        "{out}"
    );
}

#[test]
fn a_client_with_a_missing_column_stops_before_registering() {
    let dir = tempfile::tempdir().unwrap();
    let (sk, pk) = keys(dir.path());
    let plan = plan_init(dir.path(), &[]);
    let state = dir.path().join("state");
    let (_server, url) = serve(
        &[
            "--public-key",
            pk.to_str().unwrap(),
            "--plan",
            plan.to_str().unwrap(),
        ],
        &state,
        "127.0.0.1:0",
    );
    // Drop one column from a site's file.
    let bad = dir.path().join("bad.csv");
    let text = std::fs::read_to_string(sample("clients/client_3.csv")).unwrap();
    let cut: String = text
        .lines()
        .map(|l| l.rsplit_once(',').map_or(l, |(head, _)| head).to_string() + "\n")
        .collect();
    std::fs::write(&bad, cut).unwrap();
    let (ok, out) = finish(
        client(&url, &sk, &bad, "c", dir.path()),
        Duration::from_secs(30),
    );
    assert!(!ok, "{out}");
    assert!(out.contains("bad.csv"), "{out}");
    assert!(out.contains("worst_fractal_dimension"), "{out}");
    let status = crate::common::member(&url, &sk).status().unwrap();
    assert_eq!(status.registered, 0, "nothing was sent");
}

/// Runs a, b and c over `fedhe serve` with a plan whose roster is a, b, c;
/// `disrupt` is called once a and b have announced their mask keys for
/// round 1 (c not started: the round waits for its key).
fn three_sites(
    dir: &Path,
    disrupt: impl FnOnce(&Path, &str, &mut Option<Killed>),
) -> (Vec<f64>, String) {
    let (sk, pk) = keys(dir);
    let plan = plan_init(dir, &["--roster", "a,b,c"]);
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
    let files =
        ["client_1.csv", "client_2.csv", "client_3.csv"].map(|f| sample(&format!("clients/{f}")));
    let a = client(&url, &sk, &files[0], "a", dir);
    let b = client(&url, &sk, &files[1], "b", dir);
    let op = operator(&state, &url);
    let start = Instant::now();
    while op.key_set(1, None).unwrap().keys.len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "a and b announce"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Round 1 waits for c's key (a roster of three is masked).
    assert_eq!(op.key_set(1, None).unwrap().missing, vec!["c".to_string()]);
    disrupt(dir, &url, &mut server);
    if server.is_none() {
        let port = url.rsplit(':').next().unwrap();
        server = Some(serve(&args, &state, &format!("127.0.0.1:{port}")).0);
    }
    let c = client(&url, &sk, &files[2], "c", dir);
    let mut outs = String::new();
    for p in [a, b, c] {
        let (ok, out) = finish(p, Duration::from_secs(120));
        assert!(ok, "client failed:\n{out}");
        assert!(out.contains("round   3: 3 contributors (a, b, c)"), "{out}");
        outs += &out;
    }
    drop(server);
    let m = ModelFile::load(&dir.join("c.json")).unwrap();
    let mut v = m.params.clone();
    v.extend(m.standardization.mean);
    (v, outs)
}

#[test]
fn aggregator_killed_for_30_s_mid_round_gives_the_uninterrupted_model() {
    let (reference, _) = three_sites(tempfile::tempdir().unwrap().path(), |_, _, _| {});
    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let (disrupted, out) = three_sites(dir.path(), |_, _, server| {
        // SIGKILL with round 1 open and two accepted updates; 30 s outage.
        drop(server.take());
        std::thread::sleep(Duration::from_secs(30));
    });
    assert!(t.elapsed() >= Duration::from_secs(30));
    // The clients said what they were doing while the aggregator was down.
    assert!(
        out.contains("aggregator unreachable") && out.contains("retrying in"),
        "{out}"
    );
    // Bit for bit: every weight, the bias and the agreed means.
    assert_eq!(disrupted, reference);
}

#[test]
fn a_killed_client_resumes_under_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let (sk, pk) = keys(dir.path());
    let plan = plan_init(
        dir.path(),
        &[
            "--roster",
            "a,b",
            "--min-clients",
            "2",
            "--allow-unmasked-pairs",
        ],
    );
    let state = dir.path().join("state");
    let token = dir.path().join("operator.token");
    let (_server, url) = serve(
        &[
            "--public-key",
            pk.to_str().unwrap(),
            "--plan",
            plan.to_str().unwrap(),
            "--operator-token-file",
            token.to_str().unwrap(),
        ],
        &state,
        "127.0.0.1:0",
    );
    let a_csv = sample("clients/client_1.csv");
    let first = client(&url, &sk, &a_csv, "a", dir.path());
    let op = operator(&state, &url);
    let start = Instant::now();
    while op.key_set(1, None).unwrap().keys.is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "a announces its mask key"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(first); // SIGKILL while it waits for b
    assert!(dir.path().join("client-a.state.json").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("client-a.state.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the credentials file is owner-only");
    }
    let again = client(&url, &sk, &a_csv, "a", dir.path());
    let b = client(&url, &sk, &sample("clients/client_2.csv"), "b", dir.path());
    let (ok, out) = finish(again, Duration::from_secs(60));
    assert!(ok, "{out}");
    assert!(out.contains("resumed as `a`"), "{out}");
    assert!(out.contains("round   3: 2 contributors (a, b)"), "{out}");
    let (ok, out_b) = finish(b, Duration::from_secs(60));
    assert!(ok, "{out_b}");
    assert_eq!(
        op.clients().unwrap().len(),
        2,
        "a counted once, under one id"
    );
    let ma = ModelFile::load(&dir.path().join("a.json")).unwrap();
    let mb = ModelFile::load(&dir.path().join("b.json")).unwrap();
    assert_eq!(ma.params, mb.params);
}

/// Issue 20 part 2: with a server optimizer (FedAdam), a `fedhe client`
/// killed with SIGKILL after it took a training round resumes the
/// optimizer's state from its state file, and all three sites end with
/// bit-identical models.
#[test]
fn a_site_killed_mid_federation_resumes_its_server_optimizer_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let (sk, pk) = keys(dir.path());
    let plan = plan_init(
        dir.path(),
        &["--roster", "a,b,c", "--server-optimizer", "fedadam"],
    );
    let text = std::fs::read_to_string(&plan).unwrap();
    assert!(text.contains("server_optimizer = \"fedadam\""), "{text}");
    let state = dir.path().join("state");
    let (_server, url) = serve(
        &[
            "--public-key",
            pk.to_str().unwrap(),
            "--plan",
            plan.to_str().unwrap(),
        ],
        &state,
        "127.0.0.1:0",
    );
    let data = |i: usize| sample(&format!("clients/client_{i}.csv"));
    let first = client(&url, &sk, &data(1), "a", dir.path());
    let b = client(&url, &sk, &data(2), "b", dir.path());
    let c = client(&url, &sk, &data(3), "c", dir.path());
    // Killed once its state file holds the server optimizer after round 1.
    let state_file = dir.path().join("client-a.state.json");
    let start = Instant::now();
    loop {
        let saved = fedhe::session::ClientState::load(&state_file).unwrap();
        if saved
            .and_then(|s| s.server_optimizer)
            .is_some_and(|s| s.round >= 1)
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "a takes round 1"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(first); // SIGKILL
    let again = client(&url, &sk, &data(1), "a", dir.path());
    let (ok, out) = finish(again, Duration::from_secs(180));
    assert!(ok && out.contains("resumed as `a`"), "{out}");
    for other in [b, c] {
        let (ok, out) = finish(other, Duration::from_secs(180));
        assert!(ok, "{out}");
    }
    let model = |id: &str| ModelFile::load(&dir.path().join(format!("{id}.json"))).unwrap();
    let (ma, mb, mc) = (model("a"), model("b"), model("c"));
    let bits = |m: &ModelFile| m.params.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&ma), bits(&mb));
    assert_eq!(bits(&ma), bits(&mc));
    let end = fedhe::session::ClientState::load(&state_file)
        .unwrap()
        .unwrap();
    let server = end.server_optimizer.unwrap();
    assert_eq!(server.round, 3);
    assert_eq!(
        bits(&ma),
        server
            .global
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>()
    );
}
