//! Helpers shared by the test modules.

use std::path::{Path, PathBuf};

/// A file of the bundled sample data.
pub fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("sample_data")
        .join(name)
}

/// A copy of `src` with its columns in reverse order and an extra column.
pub fn reordered(src: &Path, dst: &Path) {
    let mut r = csv::Reader::from_path(src).unwrap();
    let mut w = csv::Writer::from_path(dst).unwrap();
    let mut header: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    header.reverse();
    header.push("site_note".into());
    w.write_record(&header).unwrap();
    for rec in r.records() {
        let mut row: Vec<String> = rec.unwrap().iter().map(String::from).collect();
        row.reverse();
        row.push("x".into());
        w.write_record(&row).unwrap();
    }
    w.flush().unwrap();
}

/// Runs the `fedhe` binary.
pub fn fedhe(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_fedhe"))
        .args(args)
        .output()
        .expect("run fedhe")
}

/// scikit-learn's `figure` for `model` in a fixture written by
/// scripts/sklearn_comparison.sh.
pub fn sklearn(fixture: &str, model: &str, figure: &str) -> f64 {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(fixture);
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["model"] == model)
        .and_then(|r| r[figure].as_f64())
        .unwrap_or_else(|| panic!("{fixture}: no {figure} for {model}"))
}

/// Every site joins the aggregator at `url` with `key`, reads its file by the
/// served plan and runs it; returns each site's global model file.
pub fn run_sites(
    url: &str,
    key: &std::sync::Arc<fedhe::crypto::SecretKey>,
    files: &[PathBuf],
) -> Vec<fedhe::model::ModelFile> {
    use std::sync::atomic::AtomicBool;
    let handles: Vec<_> = files
        .iter()
        .enumerate()
        .map(|(i, file)| {
            let (key, url, file) = (key.clone(), url.to_string(), file.clone());
            std::thread::spawn(move || {
                let c = connect(&url, &key);
                let data = c.load_site(&file).unwrap();
                let id = format!("site-{i}");
                let j = c.join(&id, &id, None).unwrap();
                j.run(&data.dataset, vec![], &mut |_| {}, &AtomicBool::new(false))
                    .map(|r| r.model)
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().unwrap().unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

/// An embedded aggregator serving `plan` under `key`'s public part.
pub fn serve_plan(
    key: &fedhe::crypto::SecretKey,
    plan: fedhe::plan::Plan,
) -> fedhe::server::EmbeddedServer {
    fedhe::server::EmbeddedServer::start(fedhe::server::ServerConfig {
        public_key: Some(key.public()),
        plan: Some(plan),
        ..fedhe::server::ServerConfig::default()
    })
    .unwrap()
}

/// A site connected to the aggregator at `url` (key and plan checked).
pub fn connect(
    url: &str,
    key: &std::sync::Arc<fedhe::crypto::SecretKey>,
) -> fedhe::session::Connected {
    fedhe::session::connect(
        &fedhe::session::ConnectOptions {
            server: url.to_string(),
            ca_cert_pem: None,
            wait: std::time::Duration::from_secs(10),
        },
        key.clone(),
        None,
        &std::sync::atomic::AtomicBool::new(false),
    )
    .unwrap()
}

/// Site `id` joined (registered) at `srv`, without a state file.
pub fn join(
    srv: &fedhe::server::EmbeddedServer,
    key: &std::sync::Arc<fedhe::crypto::SecretKey>,
    id: &str,
) -> fedhe::session::Joined {
    connect(srv.url(), key).join(id, id, None).unwrap()
}

/// A registration for the aggregator at `url` (signed for its session id,
/// from `GET /health`, and `plan`), with a fresh identity key.
pub fn registration(
    key: &fedhe::crypto::SecretKey,
    url: &str,
    plan: Option<&str>,
    id: impl Into<String>,
    name: impl Into<String>,
    max_len: Option<usize>,
) -> fedhe::protocol::RegisterRequest {
    let identity = fedhe::privacy::masks::Identity::generate().unwrap();
    registration_as(key, url, plan, id, name, max_len, &identity)
}

/// [`registration`] with `identity`.
pub fn registration_as(
    key: &fedhe::crypto::SecretKey,
    url: &str,
    plan: Option<&str>,
    id: impl Into<String>,
    name: impl Into<String>,
    max_len: Option<usize>,
    identity: &fedhe::privacy::masks::Identity,
) -> fedhe::protocol::RegisterRequest {
    let session = fedhe::client::AggregatorClient::new(url)
        .health()
        .unwrap()
        .session;
    let aud = fedhe::crypto::Audience {
        session: &session,
        plan,
    };
    fedhe::protocol::RegisterRequest::signed(key, &aud, id, name, max_len, identity)
}

/// A client of the aggregator at `url` that signs its reads with the secret
/// key in the file `key` (a member before it registers).
pub fn member(url: &str, key: &Path) -> fedhe::client::AggregatorClient {
    let key = fedhe::crypto::SecretKey::load(key).unwrap();
    let api = fedhe::client::AggregatorClient::new(url);
    let session = api.health().unwrap().session;
    api.with_session(session)
        .with_member_key(std::sync::Arc::new(key))
}

/// The URL a `fedhe serve` child prints, read from its stdout up to its
/// "state folder" line; the rest of its stdout is drained on a thread so
/// that it never blocks on a full pipe.
pub fn serve_url(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut url = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(u) = line.strip_prefix("FedHE aggregator listening on ") {
            url = Some(u.trim().to_string());
        }
        if line.starts_with("state folder") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    url.expect("listening line")
}
