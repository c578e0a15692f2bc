//! `fedhe keygen` and `fedhe bench crypto` through the binary.

use std::process::Command;

fn fedhe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fedhe"))
}

#[test]
fn keygen_writes_both_files_and_never_overwrites_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("keys");
    let run = |extra: &[&str]| {
        fedhe()
            .args(["keygen", "--out"])
            .arg(&out)
            .args(extra)
            .output()
            .unwrap()
    };
    let first = run(&[]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let stdout = String::from_utf8_lossy(&first.stdout);
    let secret = fedhe::crypto::SecretKey::load(&out.join("secret.key")).unwrap();
    let public = fedhe::crypto::PublicKeyFile::load(&out.join("public.key")).unwrap();
    assert_eq!(secret.public(), public);
    assert!(
        stdout.contains(&secret.fingerprint().to_string()),
        "{stdout}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("secret.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let second = run(&["--params", "compact32"]);
    assert!(!second.status.success());
    assert!(String::from_utf8_lossy(&second.stderr).contains("--force"));
    assert_eq!(
        fedhe::crypto::SecretKey::load(&out.join("secret.key"))
            .unwrap()
            .fingerprint(),
        secret.fingerprint()
    );

    let forced = run(&["--params", "compact32", "--force"]);
    assert!(forced.status.success());
    let public = fedhe::crypto::PublicKeyFile::load(&out.join("public.key")).unwrap();
    assert_eq!(public.params(), fedhe::crypto::ParamSet::Compact32);
    assert_ne!(public.fingerprint(), secret.fingerprint());
    assert_eq!(public.max_clients(), 64);

    // a federation of 100: the limit is stored in both files and reported
    let big = run(&["--max-clients", "100", "--force"]);
    let stdout = String::from_utf8_lossy(&big.stdout);
    assert!(
        big.status.success(),
        "{}",
        String::from_utf8_lossy(&big.stderr)
    );
    assert!(
        stdout
            .contains("scale 2^14, up to 100 clients per sum; model parameters within ±2^7 = ±128"),
        "{stdout}"
    );
    let public = fedhe::crypto::PublicKeyFile::load(&out.join("public.key")).unwrap();
    let secret = fedhe::crypto::SecretKey::load(&out.join("secret.key")).unwrap();
    assert_eq!((public.max_clients(), secret.max_clients()), (100, 100));

    // out of range: a clear error, the files are left alone
    let bad = run(&["--params", "compact32", "--max-clients", "5000", "--force"]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains("max_clients 5000 is out of range for compact32")
            && stderr.contains("between 1 and 2048"),
        "{stderr}"
    );
    assert_eq!(
        fedhe::crypto::PublicKeyFile::load(&out.join("public.key")).unwrap(),
        public
    );
}

#[test]
fn bench_crypto_small_json() {
    let out = fedhe()
        .args([
            "bench",
            "crypto",
            "--json",
            "--repeats",
            "1",
            "--sizes",
            "31,2049",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The JSON alone on stdout; the machine's load on stderr (Linux).
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    if cfg!(target_os = "linux") {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.starts_with("machine: load average ")
                && stderr.contains(" cores, before the run"),
            "{stderr}"
        );
    }
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    for r in rows {
        assert!(r["max_abs_error"].as_f64().unwrap() <= r["error_bound"].as_f64().unwrap());
    }
}
