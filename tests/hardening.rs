//! The aggregator and the CLI against attackers and careless users: stalled
//! bodies, a second server on one state folder, a busy port, HTTP details,
//! messages that say what and where once, and secret keys others can read.

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use fedhe::client::{AggregatorClient, ClientError};
use fedhe::crypto::{self, ParamSet, SecretKey};
use fedhe::server::{EmbeddedServer, ServerConfig};

const LEN: usize = 10;

fn fedhe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fedhe"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn start(key: &SecretKey, cfg: ServerConfig) -> EmbeddedServer {
    EmbeddedServer::start(ServerConfig {
        public_key: Some(key.public()),
        max_len: Some(LEN),
        allow_single_contributor: true,
        ..cfg
    })
    .unwrap()
}

fn register(key: &SecretKey, url: &str, id: &str) -> AggregatorClient {
    let mut c = AggregatorClient::new(url);
    c.register(&crate::common::registration(
        key,
        url,
        None,
        id,
        id,
        Some(LEN),
    ))
    .unwrap();
    c
}

fn update(key: &SecretKey) -> Vec<u8> {
    crypto::encrypt_weighted(key, &[0.25; LEN], 2.0)
        .unwrap()
        .to_bytes()
}

fn status_of(e: &ClientError) -> (u16, String) {
    (
        e.status().unwrap_or(0),
        e.code().map(ToString::to_string).unwrap_or_default(),
    )
}

/// Sends the headers of an upload of `len` bytes and 4 bytes of its body,
/// then stalls.
fn stalled_upload(addr: std::net::SocketAddr, token: &str, len: usize) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "PUT /api/v1/rounds/1/update HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {len}\r\n\r\nFHEU"
    )
    .unwrap();
    s.flush().unwrap();
    s
}

#[test]
fn stalled_bodies_do_not_hold_the_aggregator() {
    let key = SecretKey::generate(ParamSet::Standard64);
    let srv = start(
        &key,
        ServerConfig {
            body_idle_timeout: Duration::from_secs(1),
            ..ServerConfig::default()
        },
    );
    let mallory = register(&key, srv.url(), "mallory");
    let honest = register(&key, srv.url(), "honest");
    let token = mallory.token().unwrap().to_string();
    // Four stalled bodies from one client (there are four upload slots).
    let len = update(&key).len();
    let mut stalled: Vec<TcpStream> = (0..4)
        .map(|_| stalled_upload(srv.addr(), &token, len))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // Another client's upload goes through at once.
    let t = Instant::now();
    honest.upload(1, &update(&key)).expect("honest upload");
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    // Of mallory's four, three were refused at once (one upload per client)
    // and the fourth is answered 408 and closed once its body stalls.
    let mut answers = Vec::new();
    for s in &mut stalled {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut text = String::new();
        // The server closes the connection after answering.
        let _ = s.read_to_string(&mut text);
        answers.push(text);
    }
    let busy = answers.iter().filter(|a| a.contains(" 429 ")).count();
    let timed_out = answers.iter().filter(|a| a.contains(" 408 ")).count();
    assert_eq!((busy, timed_out), (3, 1), "{answers:#?}");
    assert!(
        answers.iter().all(|a| a.contains("\"error\":")),
        "{answers:#?}"
    );
    // Nothing of mallory's was counted; mallory can still upload properly.
    assert_eq!(srv.round_info(1).unwrap().contributors, 1);
    mallory.upload(1, &update(&key)).expect("a whole upload");
    assert_eq!(srv.round_info(1).unwrap().contributors, 2);
}

#[test]
fn http_details_bearer_case_json_errors_parameters_and_names() {
    let key = SecretKey::generate(ParamSet::Standard64);
    let srv = start(&key, ServerConfig::default());
    let c = register(&key, srv.url(), "a");
    let token = c.token().unwrap().to_string();
    let url = srv.url();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let json = |r: ureq::http::Response<ureq::Body>| {
        let status = r.status().as_u16();
        let body: serde_json::Value =
            serde_json::from_slice(&r.into_body().read_to_vec().unwrap()).unwrap();
        (status, body["error"].as_str().unwrap_or("").to_string())
    };
    // The scheme is case-insensitive.
    let r = agent
        .get(format!("{url}/api/v1/clients"))
        .header("authorization", format!("bearer {token}"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    // 404, 405, 414 and 431 answer with the JSON error body.
    assert_eq!(
        json(agent.get(format!("{url}/nowhere")).call().unwrap()),
        (404, "not_found".into())
    );
    assert_eq!(
        json(agent.delete(format!("{url}/api/v1/status")).call().unwrap()),
        (405, "method_not_allowed".into())
    );
    let long = "a".repeat(10_000);
    assert_eq!(
        json(
            agent
                .get(format!("{url}/api/v1/status?{long}"))
                .call()
                .unwrap()
        ),
        (414, "uri_too_long".into())
    );
    let big = "b".repeat(40_000);
    assert_eq!(
        json(
            agent
                .get(format!("{url}/api/v1/status"))
                .header("x-padding", &big)
                .call()
                .unwrap()
        ),
        (431, "headers_too_large".into())
    );
    // A changed parameter byte is a parameter mismatch, not a length error.
    let mut bytes = update(&key);
    assert_eq!(bytes[5], 0, "the params byte of a Standard64 update");
    bytes[5] = 1;
    let e = c.upload(1, &bytes).unwrap_err();
    assert_eq!(status_of(&e), (422, "unprocessable".into()));
    assert!(e.to_string().contains("parameter mismatch"), "{e}");
    assert_eq!(srv.round_info(1).unwrap().contributors, 0);
    // Names that would spoof another in the clients table are refused.
    for name in ["Clinic\u{202E}A", "Clinic\u{200B}A", "\u{2066}B\u{2069}"] {
        let e = AggregatorClient::new(url)
            .register(&crate::common::registration(
                &key, url, None, "spoof", name, None,
            ))
            .unwrap_err();
        assert_eq!(status_of(&e).0, 400, "{name:?}");
    }
    assert_eq!(srv.status().registered, 1);
}

/// `fedhe serve` as a child; returns it and its first stdout lines (or its
/// stderr if it exited).
fn serve(args: &[&str]) -> (std::process::Child, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fedhe"))
        .arg("serve")
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    for line in out.lines() {
        let line = line.unwrap();
        let last = line.starts_with("state folder");
        lines.push(line);
        if last {
            break;
        }
    }
    (child, lines)
}

#[test]
fn one_state_folder_one_aggregator_and_a_busy_port_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate(ParamSet::Standard64);
    let pk = dir.path().join("public.key");
    std::fs::write(&pk, key.public().to_bytes()).unwrap();
    let state = dir.path().join("state");
    let (mut first, lines) = serve(&[
        "--bind",
        "127.0.0.1:0",
        "--public-key",
        pk.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert!(
        lines[0].starts_with("FedHE aggregator listening on"),
        "{lines:?}"
    );
    let url = lines[0].rsplit(' ').next().unwrap().to_string();
    // A second aggregator on the same folder refuses, naming it and the pid.
    let o = fedhe(&[
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--public-key",
        pk.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains(state.to_str().unwrap())
            && err.contains(&format!("pid {}", first.id()))
            && err.contains("in use"),
        "{err}"
    );
    // The port of the first: a new state folder is not even created.
    let port = url.rsplit(':').next().unwrap();
    let fresh = dir.path().join("fresh");
    let o = fedhe(&[
        "serve",
        "--bind",
        &format!("127.0.0.1:{port}"),
        "--state-dir",
        fresh.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("another --bind port"), "{}", stderr(&o));
    assert!(!fresh.exists(), "a busy port leaves no state folder behind");
    // A state folder that is a file is explained.
    let file = dir.path().join("afile");
    std::fs::write(&file, "x").unwrap();
    let o = fedhe(&[
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--state-dir",
        file.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("is a file, not a folder"),
        "{}",
        stderr(&o)
    );
    // Killed, the first releases the folder: the next one opens it.
    first.kill().unwrap();
    first.wait().unwrap();
    let (mut again, lines) = serve(&[
        "--bind",
        "127.0.0.1:0",
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert!(
        lines[0].starts_with("FedHE aggregator listening on"),
        "{lines:?}"
    );
    again.kill().unwrap();
    again.wait().unwrap();
}

#[test]
fn serve_logs_one_json_line_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fedhe"))
        .args(["serve", "--bind", "127.0.0.1:0", "--log-format", "json"])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = out.next().unwrap().unwrap();
        if let Some(u) = line.strip_prefix("FedHE aggregator listening on ") {
            break u.to_string();
        }
    };
    std::thread::spawn(move || for _ in out {});
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    // (/status needs a member now: the public route is /health.)
    agent.get(format!("{url}/api/v1/health")).call().unwrap();
    agent
        .post(format!("{url}/api/v1/rounds/1/close"))
        .send_empty()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    child.kill().unwrap();
    child.wait().unwrap();
    let mut text = String::new();
    child.stderr.unwrap().read_to_string(&mut text).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let requests: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "request")
        .collect();
    assert_eq!(requests.len(), 2, "{text}");
    assert_eq!(requests[0]["fields"]["path"], "/api/v1/health");
    assert_eq!(requests[0]["fields"]["status"], 200);
    assert_eq!(requests[1]["fields"]["status"], 401);
    // The refusal is logged with its cause.
    assert!(
        lines.iter().any(|l| l["fields"]["code"] == "unauthorized"),
        "{text}"
    );
}

#[test]
fn messages_say_what_and_where_once() {
    let dir = tempfile::tempdir().unwrap();
    // A 50 MB cell is not printed whole.
    let huge = dir.path().join("huge.csv");
    let mut text = String::from("diagnosis,a,b\n1,1,2\n");
    text.push_str(&"9x".repeat(25_000_000));
    text.push_str(",2,3\n0,4,5\n");
    std::fs::write(&huge, text).unwrap();
    let o = fedhe(&[
        "train",
        "--task",
        "binary",
        "--data",
        huge.to_str().unwrap(),
        "--out",
        dir.path().join("m.json").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = stderr(&o);
    // Notes and the error: a 50 MB label value is refused by its length
    // (issue 21), never printed whole.
    assert!(err.len() < 700, "{} bytes of error", err.len());
    assert!(
        err.contains("huge.csv:3") && err.contains("a label value of 50000000 bytes"),
        "{err}"
    );
    // Each cause once.
    let o = fedhe(&[
        "train",
        "--data",
        dir.path().join("missing.csv").to_str().unwrap(),
        "--out",
        "m.json",
    ]);
    let err = stderr(&o);
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
    // A semicolon-separated file is read as such, with a note.
    let semi = dir.path().join("semi.csv");
    let mut text = String::from("diagnosis;a;b\n");
    for i in 0..40 {
        text.push_str(&format!("{};{};{}\n", i % 2, i, (i * 7) % 11));
    }
    std::fs::write(&semi, text).unwrap();
    let o = fedhe(&[
        "train",
        "--data",
        semi.to_str().unwrap(),
        "--keep",
        "a",
        "--out",
        dir.path().join("semi.json").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("semicolon-separated"), "{}", stderr(&o));
    // An aggregator address without a scheme.
    let key = SecretKey::generate(ParamSet::Standard64);
    let sk = dir.path().join("secret.key");
    key.save(&sk, false).unwrap();
    let o = fedhe(&[
        "client",
        "--server",
        "127.0.0.1:8080",
        "--key",
        sk.to_str().unwrap(),
        "--data",
        semi.to_str().unwrap(),
        "--name",
        "A",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("add http:// or https://"),
        "{}",
        stderr(&o)
    );
}

#[cfg(unix)]
#[test]
fn a_secret_key_others_can_read_is_flagged_and_one_they_can_write_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate(ParamSet::Standard64);
    let sk = dir.path().join("secret.key");
    key.save(&sk, false).unwrap();
    assert_eq!(SecretKey::permission_problem(&sk), None);
    let client = |path: &Path| {
        fedhe(&[
            "client",
            "--server",
            "http://127.0.0.1:9",
            "--wait",
            "1",
            "--key",
            path.to_str().unwrap(),
            "--data",
            "sample_data/test.csv",
            "--name",
            "A",
        ])
    };
    std::fs::set_permissions(&sk, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = client(&sk);
    let err = stderr(&o);
    assert!(
        err.contains("WARNING") && err.contains("644") && err.contains("chmod 600"),
        "{err}"
    );
    std::fs::set_permissions(&sk, std::fs::Permissions::from_mode(0o666)).unwrap();
    let o = client(&sk);
    let err = stderr(&o);
    assert!(!o.status.success());
    assert!(err.contains("refusing to use it"), "{err}");
}

/// Tried as a new user would: a cell of 1e308 trained to a NaN model and
/// `fedhe train` still exited 0.
#[test]
fn an_extreme_value_is_a_located_error_and_divergence_is_never_saved() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("extreme.csv");
    let mut text = String::from("diagnosis,a,b\n");
    for i in 0..20 {
        text.push_str(&format!("{},{},{}\n", i % 2, i, (i * 3) % 7));
    }
    text.push_str("1,1e308,2\n");
    std::fs::write(&csv, text).unwrap();
    let out = dir.path().join("m.json");
    let o = fedhe(&[
        "train",
        "--data",
        csv.to_str().unwrap(),
        "--keep",
        "a",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("extreme.csv:22") && err.contains("\"a\"") && err.contains("1e150"),
        "{err}"
    );
    assert!(!out.exists(), "no model is written");
    // Training that blows up stops with an error that suggests a smaller
    // learning rate, instead of returning NaN weights.
    use fedhe::model::{Architecture, Head, ModelError, TrainConfig, build, train};
    // The same point with both labels: the loss cannot go to zero, and
    // steps of 1e200 overflow the logits.
    let x = ndarray::array![[1e200, 1.0], [1e200, 1.0], [-1e200, 2.0]];
    let y = ndarray::array![1.0, 0.0, 1.0];
    let mut m = build(&Architecture::Linear, 2, Head::Logistic, 0).unwrap();
    let cfg = TrainConfig {
        lr: 10.0,
        epochs: 20,
        ..TrainConfig::default()
    };
    let e = train(&mut *m, &x, &y, &cfg, &mut |_| {
        std::ops::ControlFlow::Continue(())
    })
    .unwrap_err();
    assert!(matches!(e, ModelError::Diverged { .. }), "{e}");
    assert!(e.to_string().contains("smaller learning rate"), "{e}");
}
