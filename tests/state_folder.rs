//! `fedhe serve` and its state folder (issue 21, part 3): a folder removed
//! under a running aggregator is noticed (the next change is refused with
//! `state_lost`, the log says so) and no second `serve` starts on the same
//! path while the first runs.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fedhe::client::{AggregatorClient, RetryPolicy};
use fedhe::crypto::{ParamSet, SecretKey};
use fedhe::protocol::ErrorCode;

struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(pk: &Path, state: &Path, log: &Path) -> (Killed, String) {
    let mut child = Killed(
        Command::new(env!("CARGO_BIN_EXE_fedhe"))
            .args(["serve", "--bind", "127.0.0.1:0", "--max-len", "4"])
            .arg("--public-key")
            .arg(pk)
            .arg("--state-dir")
            .arg(state)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    );
    let url = crate::common::serve_url(&mut child.0);
    (child, url)
}

/// Waits (at most `limit`) for `child` to end: its success and stderr.
fn ended(mut child: Killed, log: &Path, limit: Duration) -> Option<(bool, String)> {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if let Some(status) = child.0.try_wait().unwrap() {
            return Some((status.success(), std::fs::read_to_string(log).unwrap()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

#[test]
fn a_state_folder_removed_under_fedhe_serve_stops_changes_and_keeps_a_second_serve_out() {
    let dir = tempfile::tempdir().unwrap();
    let sk = SecretKey::generate(ParamSet::Standard64);
    let pk = dir.path().join("public.key");
    std::fs::write(&pk, sk.public().to_bytes()).unwrap();
    let state = dir.path().join("state");
    let log = dir.path().join("serve.log");
    let (_server, url) = serve(&pk, &state, &log);
    let once = RetryPolicy {
        attempts: 1,
        ..RetryPolicy::default()
    };
    let mut a = AggregatorClient::new(&url).with_retry(once);
    a.register(&crate::common::registration(
        &sk,
        &url,
        None,
        "a",
        "A",
        Some(4),
    ))
    .unwrap();

    std::fs::remove_dir_all(&state).unwrap();
    let mut b = AggregatorClient::new(&url).with_retry(once);
    let e = b
        .register(&crate::common::registration(
            &sk,
            &url,
            None,
            "b",
            "B",
            Some(4),
        ))
        .unwrap_err();
    assert_eq!(
        (e.status(), e.code()),
        (Some(503), Some(&ErrorCode::StateLost))
    );
    assert!(e.to_string().contains("removed or replaced"), "{e}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("was removed or replaced under this aggregator"),
        "{logged}"
    );
    // Reads still answer; the registration that was refused is not there.
    assert_eq!(a.status().unwrap().registered, 1);

    // A second aggregator on the same path refuses to start.
    let log2 = dir.path().join("second.log");
    let second = Killed(
        Command::new(env!("CARGO_BIN_EXE_fedhe"))
            .args(["serve", "--bind", "127.0.0.1:0"])
            .arg("--state-dir")
            .arg(&state)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log2).unwrap())
            .spawn()
            .unwrap(),
    );
    let (ok, err) =
        ended(second, &log2, Duration::from_secs(30)).expect("a second serve kept running");
    assert!(!ok, "{err}");
    assert!(err.contains("in use by another aggregator"), "{err}");
}
