//! `fedhe serve` and two `fedhe client` processes: the two-machine setup on
//! one machine, with the operator loading the session key after the clients
//! started (they wait for it).

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fedhe::crypto::{ParamSet, SecretKey};

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sample(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("sample_data")
        .join(name)
}

#[test]
fn serve_and_two_clients_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let sk = SecretKey::generate(ParamSet::Standard64);
    let sk_path = dir.path().join("secret.key");
    sk.save(&sk_path, false).unwrap();
    let pk_path = dir.path().join("public.key");
    std::fs::write(&pk_path, sk.public().to_bytes()).unwrap();

    let token_path = dir.path().join("operator.token");
    let mut server = Killed(
        Command::new(env!("CARGO_BIN_EXE_fedhe"))
            .args(["serve", "--bind", "127.0.0.1:0", "--auto-aggregate"])
            .args(["--min-clients", "2"])
            .arg("--operator-token-file")
            .arg(&token_path)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = std::io::BufReader::new(server.0.stdout.take().unwrap()).lines();
    let mut url = None;
    let mut token_printed = false;
    let mut no_session = false;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(u) = line.strip_prefix("FedHE aggregator listening on ") {
            url = Some(u.trim().to_string());
        }
        token_printed |= line.starts_with("operator token: ");
        no_session |= line.starts_with("no session yet");
        if line.starts_with("state folder") {
            break;
        }
    }
    assert!(token_printed && no_session);
    let url = url.expect("listening line");
    std::thread::spawn(move || for _ in lines {});

    let start = Instant::now();
    // Both clients run at once: with --min-clients 2 each round needs both.
    let children: Vec<_> = [("client_1.csv", "Clinic A"), ("client_2.csv", "Clinic B")]
        .iter()
        .map(|(file, name)| {
            Killed(
                Command::new(env!("CARGO_BIN_EXE_fedhe"))
                    .args(["client", "--server", &url, "--label", "diagnosis"])
                    .args(["--name", name, "--rounds", "3", "--epochs", "2"])
                    .arg("--key")
                    .arg(&sk_path)
                    .arg("--data")
                    .arg(sample(&format!("clients/{file}")))
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    // The clients wait for the session; then the operator loads the key.
    std::thread::sleep(Duration::from_millis(800));
    let token = std::fs::read_to_string(&token_path).unwrap();
    let op = fedhe::client::AggregatorClient::new(&url).with_token(token.trim());
    assert_eq!(op.status().unwrap().registered, 0);
    op.load_public_key(&sk.public().to_bytes(), None).unwrap();
    for mut c in children {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = c.0.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "client did not finish");
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut out = String::new();
        let mut err = String::new();
        std::io::Read::read_to_string(c.0.stdout.as_mut().unwrap(), &mut out).unwrap();
        std::io::Read::read_to_string(c.0.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert!(status.success(), "client failed:\n{out}\n{err}");
        assert!(
            out.contains("waiting for the aggregator's operator"),
            "{out}"
        );
        assert!(out.contains("round   3: 2 contributors"), "{out}");
        assert!(out.contains("done: global model"), "{out}");
    }
    eprintln!("two CLI clients, 3 rounds: {:?}", start.elapsed());
}
