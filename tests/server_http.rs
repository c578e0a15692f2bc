//! The aggregator over real HTTP on 127.0.0.1 ephemeral ports.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fedhe::client::{AggregatorClient, ClientError, RetryPolicy};
use fedhe::crypto::{self, Accumulator, ParamSet, SecretKey};
use fedhe::protocol::{RegisterRequest, RoundState};
use fedhe::server::{EmbeddedServer, ServerConfig, TlsPem};

const LEN: usize = 10;

fn new_key() -> SecretKey {
    SecretKey::generate(ParamSet::Standard64)
}

fn start(key: &SecretKey, auto: bool, min_clients: Option<usize>) -> EmbeddedServer {
    EmbeddedServer::start(ServerConfig {
        public_key: Some(key.public()),
        max_len: Some(LEN),
        auto_aggregate: auto,
        min_clients,
        ..ServerConfig::default()
    })
    .expect("server starts")
}

fn register(key: &SecretKey, url: &str, id: &str) -> AggregatorClient {
    let mut c = AggregatorClient::new(url).with_retry(RetryPolicy {
        attempts: 1,
        ..RetryPolicy::default()
    });
    c.register(&crate::common::registration(
        key,
        url,
        None,
        id,
        format!("Client {id}"),
        Some(LEN),
    ))
    .expect("registers");
    c
}

fn values(seed: u64) -> Vec<f64> {
    (0..LEN)
        .map(|i| ((seed * 31 + i as u64 * 7) % 23) as f64 / 7.0 - 1.5)
        .collect()
}

fn weighted_mean(updates: &[(Vec<f64>, f64)]) -> Vec<f64> {
    let total: f64 = updates.iter().map(|u| u.1).sum();
    (0..LEN)
        .map(|i| updates.iter().map(|(v, w)| v[i] * w).sum::<f64>() / total)
        .collect()
}

fn update_bytes(key: &SecretKey, v: &[f64], w: f64) -> Vec<u8> {
    crypto::encrypt_weighted(key, v, w)
        .expect("encrypts")
        .to_bytes()
}

/// Decrypted mean, contributors and the documented error bound of the mean.
fn decrypt_round(key: &SecretKey, c: &AggregatorClient, round: u64) -> (Vec<f64>, u32, f64) {
    let (bytes, contributors) = c.download_sum(round).expect("sum");
    let acc = Accumulator::from_bytes(&bytes, LEN).expect("decodes");
    let m = crypto::decrypt_mean(key, &acc).expect("decrypts");
    assert_eq!(m.contributors, contributors);
    let bound = m.error_bound(acc.scale_bits());
    (m.values, contributors, bound)
}

fn assert_close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() <= tol, "{a:?} vs {b:?}");
    }
}

fn status_of(e: &ClientError) -> (u16, String) {
    match e {
        ClientError::Refused { status, code, .. } => (*status, code.to_string()),
        other => panic!("expected a refusal, got {other}"),
    }
}

#[test]
fn three_clients_weighted_mean() {
    let key = new_key();
    let srv = start(&key, true, None);
    let clients: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|id| register(&key, srv.url(), id))
        .collect();
    let mut plain = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let v = values(i as u64);
        let w = 10.0 + i as f64 * 5.0;
        let r = c.upload(1, &update_bytes(&key, &v, w)).expect("upload");
        assert_eq!(r.contributors, i as u32 + 1);
        assert_eq!(r.round_closed, i == 2);
        plain.push((v, w));
    }
    let info = clients[0].round(1, None).expect("round");
    assert_eq!(info.state, RoundState::Closed);
    assert_eq!(info.len, Some(LEN));
    let (mean, n, tol) = decrypt_round(&key, &clients[1], 1);
    assert_eq!(n, 3);
    assert_close(&mean, &weighted_mean(&plain), tol);
    let st = clients[0].status().expect("status");
    assert_eq!(st.round, 2);
    assert_eq!(st.last_closed, Some(1));
    let list = clients[0].clients().expect("clients");
    assert_eq!(list.len(), 3);
    assert!(list.iter().all(|c| c.last_round == Some(1)));
    srv.shutdown();
}

#[test]
fn every_error_status_leaves_the_sum_unchanged() {
    let key = new_key();
    let other_key = new_key();
    let srv = start(&key, false, None);
    let url = srv.url().to_string();
    let a_registration = crate::common::registration(&key, &url, None, "a", "Client a", Some(LEN));
    let mut a = AggregatorClient::new(&url);
    a.register(&a_registration).expect("registers");
    let b = register(&key, &url, "b");
    let good = values(1);
    a.upload(1, &update_bytes(&key, &good, 3.0))
        .expect("first upload");

    let check = |r: Result<fedhe::protocol::UploadResponse, ClientError>, want: u16, code: &str| {
        let e = r.expect_err("must be refused");
        let (s, c) = status_of(&e);
        assert_eq!((s, c.as_str()), (want, code), "{e}");
    };
    let b_update = update_bytes(&key, &values(2), 1.0);
    // 401: no token, bad token.
    check(
        AggregatorClient::new(&url).upload(1, &b_update),
        401,
        "unauthorized",
    );
    check(
        AggregatorClient::new(&url)
            .with_token("nope")
            .upload(1, &b_update),
        401,
        "unauthorized",
    );
    // 404: unknown round.
    check(b.upload(7, &b_update), 404, "not_found");
    // 409: duplicate submission.
    check(
        a.upload(1, &update_bytes(&key, &good, 3.0)),
        409,
        "duplicate_submission",
    );
    // 400: garbage.
    check(
        b.upload(1, b"definitely not a ciphertext"),
        400,
        "malformed",
    );
    // 413: above the session's limit.
    let limit = b
        .status()
        .unwrap()
        .session
        .unwrap()
        .max_update_bytes
        .unwrap();
    check(b.upload(1, &vec![0u8; limit + 1]), 413, "too_large");
    // 422: another key; another length than the round's.
    check(
        b.upload(1, &update_bytes(&other_key, &values(2), 1.0)),
        422,
        "unprocessable",
    );
    check(
        b.upload(1, &update_bytes(&key, &values(2)[..4], 1.0)),
        422,
        "unprocessable",
    );
    // 409: a replayed registration of a known id; 400: bad id; malformed JSON.
    let mut dup = AggregatorClient::new(&url);
    let e = dup
        .register(&a_registration)
        .expect_err("replayed registration");
    assert_eq!(status_of(&e), (409, "duplicate_client".into()));
    let e = dup
        .register(&crate::common::registration(
            &key,
            &url,
            None,
            "../../etc",
            "x",
            None,
        ))
        .expect_err("bad id");
    assert_eq!(status_of(&e).0, 400);
    // 401: registration without a membership proof, with a proof made with
    // another key, or with a proof for another name; 400: a proof that is not hex.
    let mut unsigned = crate::common::registration(&key, &url, None, "d", "Client d", None);
    unsigned.proof.clear();
    let e = dup.register(&unsigned).expect_err("no proof");
    assert_eq!(status_of(&e), (401, "unauthorized".into()));
    assert!(e.to_string().contains("secret key"), "{e}");
    let e = dup
        .register(&crate::common::registration(
            &other_key, &url, None, "d", "Client d", None,
        ))
        .expect_err("outsider");
    assert_eq!(status_of(&e), (401, "unauthorized".into()));
    assert!(
        e.to_string()
            .contains("does not hold the federation's secret key"),
        "{e}"
    );
    let mut renamed = crate::common::registration(&key, &url, None, "d", "Client d", None);
    renamed.name = "Mallory".into();
    assert_eq!(status_of(&dup.register(&renamed).unwrap_err()).0, 401);
    let mut garbled = crate::common::registration(&key, &url, None, "d", "Client d", None);
    garbled.proof.replace_range(0..2, "zz");
    assert_eq!(status_of(&dup.register(&garbled).unwrap_err()).0, 400);
    assert_eq!(
        srv.status().registered,
        2,
        "refused registrations leave no client"
    );
    let raw = ureq::post(format!("{url}/api/v1/clients"))
        .config()
        .http_status_as_error(false)
        .build()
        .send("{not json")
        .unwrap();
    assert_eq!(raw.status(), 400);
    let raw = ureq::get(format!("{url}/nowhere"))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap();
    assert_eq!(raw.status(), 404);
    // Operator endpoints need the operator token.
    let e = b.close_round(1).expect_err("client cannot close");
    assert_eq!(status_of(&e).0, 403);
    // The sum of an open round is not published.
    let e = b.download_sum(1).expect_err("open round");
    assert_eq!(status_of(&e), (409, "wrong_round".into()));

    // State untouched: one contributor; b can still submit.
    let info = a.round(1, None).unwrap();
    assert_eq!(
        (info.contributors, info.submitted.clone()),
        (1, vec!["a".to_string()])
    );
    let bv = values(2);
    b.upload(1, &update_bytes(&key, &bv, 1.0))
        .expect("valid upload still accepted");
    let op = AggregatorClient::new(&url).with_token(srv.operator_token());
    let closed = op.close_round(1).expect("operator closes");
    assert_eq!((closed.contributors, closed.next_round), (2, 2));
    // 409: upload to a closed round; 409 closing twice.
    check(
        b.upload(1, &update_bytes(&key, &bv, 1.0)),
        409,
        "wrong_round",
    );
    assert_eq!(status_of(&op.close_round(1).unwrap_err()).0, 409);
    let (mean, n, tol) = decrypt_round(&key, &a, 1);
    assert_eq!(n, 2);
    assert_close(&mean, &weighted_mean(&[(good, 3.0), (bv, 1.0)]), tol);
    srv.shutdown();
}

#[test]
fn no_session_until_a_public_key_is_loaded() {
    let key = new_key();
    let srv = EmbeddedServer::start(ServerConfig::default()).unwrap();
    let url = srv.url().to_string();
    // Registration needs the session key (it checks the membership proof).
    let mut c = AggregatorClient::new(&url);
    let e = c
        .register(&crate::common::registration(
            &key,
            &url,
            None,
            "early",
            "Early",
            Some(LEN),
        ))
        .unwrap_err();
    let ClientError::Refused {
        status,
        code,
        detail,
    } = e
    else {
        panic!("refusal expected")
    };
    assert_eq!((status, code.as_str()), (409, "no_session"));
    assert!(detail.contains("public key"), "{detail}");
    assert_eq!(srv.status().registered, 0);
    let op = AggregatorClient::new(&url).with_token(srv.operator_token());
    // A secret key file is refused with an explanation.
    let dir = tempfile::tempdir().unwrap();
    let sk_path = dir.path().join("secret.key");
    key.save(&sk_path, false).unwrap();
    let e = op
        .load_public_key(&std::fs::read(&sk_path).unwrap(), Some(LEN))
        .unwrap_err();
    assert_eq!(status_of(&e).0, 422, "{e}");
    let s = op
        .load_public_key(&key.public().to_bytes(), Some(LEN))
        .unwrap();
    assert_eq!(s.session.max_len, Some(LEN));
    c.register(&crate::common::registration(
        &key,
        &url,
        None,
        "early",
        "Early",
        Some(LEN),
    ))
    .expect("registers now");
    // Only the operator loads keys.
    assert_eq!(
        status_of(
            &c.load_public_key(&key.public().to_bytes(), None)
                .unwrap_err()
        )
        .0,
        403
    );
    c.upload(1, &update_bytes(&key, &values(0), 1.0))
        .expect("accepted now");
    srv.shutdown();
}

#[test]
fn dropout_operator_closes_with_fewer_submissions() {
    let key = new_key();
    let srv = start(&key, true, None);
    let cs: Vec<_> = ["x", "y", "z"]
        .iter()
        .map(|id| register(&key, srv.url(), id))
        .collect();
    let u0 = (values(5), 7.0);
    let u1 = (values(6), 2.0);
    cs[0].upload(1, &update_bytes(&key, &u0.0, u0.1)).unwrap();
    cs[1].upload(1, &update_bytes(&key, &u1.0, u1.1)).unwrap();
    // z dropped out; auto-aggregate waits for it, the operator does not.
    assert_eq!(srv.status().round, 1);
    srv.close_round(1).unwrap();
    let (mean, n, tol) = decrypt_round(&key, &cs[2], 1);
    assert_eq!(n, 2);
    assert_close(&mean, &weighted_mean(&[u0, u1]), tol);
    srv.shutdown();
}

#[test]
fn thirty_two_concurrent_uploads() {
    let key = Arc::new(new_key());
    let srv = start(&key, true, Some(32));
    let url = srv.url().to_string();
    let clients: Vec<_> = (0..32)
        .map(|i| register(&key, &url, &format!("c{i}")))
        .collect();
    let updates: Vec<(Vec<f64>, f64)> =
        (0..32).map(|i| (values(i), 1.0 + (i % 5) as f64)).collect();
    let bodies: Vec<Vec<u8>> = updates
        .iter()
        .map(|(v, w)| update_bytes(&key, v, *w))
        .collect();
    let barrier = std::sync::Barrier::new(32);
    std::thread::scope(|s| {
        for (c, b) in clients.iter().zip(&bodies) {
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                c.upload(1, b).expect("concurrent upload");
            });
        }
    });
    let info = clients[0]
        .wait_closed(1, None, Duration::from_secs(10))
        .unwrap();
    assert_eq!(info.contributors, 32);
    let (mean, _, tol) = decrypt_round(&key, &clients[0], 1);
    assert_close(&mean, &weighted_mean(&updates), tol);
    srv.shutdown();
}

#[test]
fn https_with_a_generated_certificate() {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".into()])
        .unwrap();
    let cert_pem = ck.cert.pem();
    let key_pem = ck.signing_key.serialize_pem();
    let key = new_key();
    let srv = EmbeddedServer::start(ServerConfig {
        public_key: Some(key.public()),
        max_len: Some(LEN),
        auto_aggregate: true,
        // One client here: this test is about TLS, not the quorum.
        allow_single_contributor: true,
        tls: Some(TlsPem {
            cert_pem: cert_pem.clone().into_bytes(),
            key_pem: key_pem.into_bytes(),
        }),
        ..ServerConfig::default()
    })
    .unwrap();
    assert!(srv.url().starts_with("https://127.0.0.1:"));
    // Without trusting the certificate: refused by the client.
    let untrusted = AggregatorClient::new(srv.url()).with_retry(RetryPolicy {
        attempts: 1,
        ..RetryPolicy::default()
    });
    assert!(untrusted.status().is_err());
    let mut c = AggregatorClient::with_root_cert_pem(srv.url(), cert_pem.as_bytes()).unwrap();
    let session = c.health().unwrap().session;
    let aud = fedhe::crypto::Audience {
        session: &session,
        plan: None,
    };
    c.register(&RegisterRequest::signed(
        &key,
        &aud,
        "tls",
        "TLS client",
        Some(LEN),
        &fedhe::privacy::masks::Identity::generate().unwrap(),
    ))
    .unwrap();
    let v = values(9);
    c.upload(1, &update_bytes(&key, &v, 2.0)).unwrap();
    let (mean, n, tol) = decrypt_round(&key, &c, 1);
    assert_eq!(n, 1);
    assert_close(&mean, &v, tol);
    srv.shutdown();
}

/// `fedhe serve` as a child process; killed with SIGKILL on drop.
struct Served {
    child: Child,
    url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &std::path::Path, pk: &std::path::Path, token: &std::path::Path) -> Served {
    serve_on("127.0.0.1:0", &["--auto-aggregate"], dir, pk, token)
}

fn serve_on(
    bind: &str,
    extra: &[&str],
    dir: &std::path::Path,
    pk: &std::path::Path,
    token: &std::path::Path,
) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fedhe"))
        .args(["serve", "--bind", bind])
        .args(extra)
        .env("RUST_LOG", "warn")
        .arg("--public-key")
        .arg(pk)
        .arg("--state-dir")
        .arg(dir)
        .arg("--operator-token-file")
        .arg(token)
        .stdout(Stdio::piped())
        .spawn()
        .expect("fedhe serve starts");
    let out = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(out).lines();
    let url = loop {
        let line = lines.next().expect("output").expect("utf-8");
        if let Some(u) = line.strip_prefix("FedHE aggregator listening on ") {
            break u.trim().to_string();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Served { child, url }
}

#[test]
fn killed_server_resumes_the_open_round() {
    let key = new_key();
    let dir = tempfile::tempdir().unwrap();
    let pk = dir.path().join("public.key");
    std::fs::write(&pk, key.public().to_bytes()).unwrap();
    let token = dir.path().join("operator.token");
    let state = dir.path().join("state");

    let s1 = serve(&state, &pk, &token);
    let mut cs: Vec<AggregatorClient> = ["p", "q", "r"]
        .iter()
        .map(|id| register(&key, &s1.url, id))
        .collect();
    let ups: Vec<(Vec<f64>, f64)> = (0..3).map(|i| (values(10 + i), 1.0 + i as f64)).collect();
    cs[0]
        .upload(1, &update_bytes(&key, &ups[0].0, ups[0].1))
        .unwrap();
    cs[1]
        .upload(1, &update_bytes(&key, &ups[1].0, ups[1].1))
        .unwrap();
    drop(s1); // SIGKILL with round 1 open and two updates in it

    let s2 = serve(&state, &pk, &token);
    for c in &mut cs {
        let t = c.token().unwrap().to_string();
        *c = AggregatorClient::new(&s2.url).with_token(t);
    }
    let info = cs[0].round(1, None).unwrap();
    assert_eq!(info.state, RoundState::Open);
    assert_eq!(info.contributors, 2);
    // The accepted update is still there: a second one is a duplicate.
    let e = cs[1]
        .upload(1, &update_bytes(&key, &ups[1].0, ups[1].1))
        .unwrap_err();
    assert_eq!(status_of(&e).1, "duplicate_submission");
    let r = cs[2]
        .upload(1, &update_bytes(&key, &ups[2].0, ups[2].1))
        .unwrap();
    assert!(r.round_closed);
    let (mean, n, tol) = decrypt_round(&key, &cs[0], 1);
    assert_eq!(n, 3);
    assert_close(&mean, &weighted_mean(&ups), tol);
    // The operator token survives in its file.
    let op_token = std::fs::read_to_string(&token).unwrap();
    let op = AggregatorClient::new(&s2.url).with_token(op_token.trim());
    assert_eq!(op.clients().unwrap().len(), 3);
}

/// A key made for 100 clients: 100 uploads over HTTP make one round whose sum
/// decrypts to the weighted mean (the default key stops at 64).
#[test]
fn one_hundred_clients_in_one_round() {
    let key = Arc::new(SecretKey::generate_for(ParamSet::Standard64, 100, None).unwrap());
    let srv = start(&key, true, Some(100));
    let url = srv.url().to_string();
    let st = srv.status();
    let session = st.session.expect("session");
    assert_eq!((session.max_clients, session.scale_bits), (100, 14));
    let clients: Vec<_> = (0..100)
        .map(|i| register(&key, &url, &format!("c{i}")))
        .collect();
    let updates: Vec<(Vec<f64>, f64)> = (0..100)
        .map(|i| (values(i), 1.0 + (i % 7) as f64))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((v, w)) = updates.get(i) else { break };
                    clients[i]
                        .upload(1, &update_bytes(&key, v, *w))
                        .expect("upload");
                }
            });
        }
    });
    let info = clients[0]
        .wait_closed(1, None, Duration::from_secs(10))
        .unwrap();
    assert_eq!(info.contributors, 100);
    let (mean, n, tol) = decrypt_round(&key, &clients[99], 1);
    assert_eq!(n, 100);
    assert!(tol < 1e-5, "{tol}");
    assert_close(&mean, &weighted_mean(&updates), tol);
    srv.shutdown();
}

/// A sum holds at most the key's `max_clients`: the next upload is refused
/// with 422 and a hint, the sum is untouched; with auto-aggregate a full sum
/// closes the round even if more clients are registered.
#[test]
fn a_full_sum_refuses_more_and_auto_closes() {
    let key = SecretKey::generate_for(ParamSet::Standard64, 2, None).unwrap();
    let ups = [(values(1), 2.0), (values(2), 5.0)];

    let srv = start(&key, false, None);
    let cs: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|id| register(&key, srv.url(), id))
        .collect();
    for (c, (v, w)) in cs.iter().zip(&ups) {
        c.upload(1, &update_bytes(&key, v, *w)).unwrap();
    }
    let e = cs[2]
        .upload(1, &update_bytes(&key, &values(3), 1.0))
        .unwrap_err();
    assert_eq!(status_of(&e), (422, "unprocessable".into()));
    assert!(e.to_string().contains("--max-clients"), "{e}");
    assert_eq!(srv.status().submitted, ["a", "b"]);
    srv.close_round(1).unwrap();
    let (mean, n, tol) = decrypt_round(&key, &cs[2], 1);
    assert_eq!(n, 2);
    assert_close(&mean, &weighted_mean(&ups), tol);
    srv.shutdown();

    let srv = start(&key, true, None);
    let cs: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|id| register(&key, srv.url(), id))
        .collect();
    let r = cs[0]
        .upload(1, &update_bytes(&key, &ups[0].0, ups[0].1))
        .unwrap();
    assert!(!r.round_closed);
    let r = cs[1]
        .upload(1, &update_bytes(&key, &ups[1].0, ups[1].1))
        .unwrap();
    assert!(r.round_closed, "a full sum closes the round");
    let (mean, n, tol) = decrypt_round(&key, &cs[2], 1);
    assert_eq!(n, 2);
    assert_close(&mean, &weighted_mean(&ups), tol);
    srv.shutdown();
}

#[test]
fn registering_again_rotates_the_token_and_a_replay_is_refused() {
    let key = new_key();
    let srv = start(&key, false, None);
    let url = srv.url().to_string();
    let who = fedhe::privacy::masks::Identity::generate().unwrap();
    let first = crate::common::registration_as(&key, &url, None, "a", "Clinic A", Some(LEN), &who);
    let mut old = AggregatorClient::new(&url);
    old.register(&first).expect("registers");
    old.clients().expect("the first token works");
    // The same request again (as an eavesdropper would replay it): refused.
    let e = AggregatorClient::new(&url)
        .register(&first)
        .expect_err("replay");
    assert_eq!(status_of(&e), (409, "duplicate_client".into()));
    assert!(e.to_string().contains("before its last one"), "{e}");
    old.clients()
        .expect("a refused replay leaves the token alone");
    // A fresh proof for the same id (a restarted client): a new token, and
    // the old one stops working.
    std::thread::sleep(Duration::from_millis(5));
    let mut new = AggregatorClient::new(&url);
    new.register(&crate::common::registration_as(
        &key,
        &url,
        None,
        "a",
        "Clinic A",
        Some(LEN),
        &who,
    ))
    .expect("registering again");
    assert_ne!(new.token(), old.token());
    assert_eq!(status_of(&old.clients().unwrap_err()).0, 401);
    assert_eq!(new.clients().expect("the new token works").len(), 1);
    assert_eq!(srv.status().registered, 1);
}

/// Fault injection: `fedhe serve` killed with SIGKILL at random moments of a
/// long upload sequence and restarted on the same state folder. Every
/// acknowledged update must be in the sum exactly once.
#[test]
fn killed_at_random_points_keeps_every_acknowledged_update_once() {
    const N: usize = 64;
    const WIDE: usize = 20_000;
    let key = new_key();
    let dir = tempfile::tempdir().unwrap();
    let pk = dir.path().join("public.key");
    std::fs::write(&pk, key.public().to_bytes()).unwrap();
    let token = dir.path().join("operator.token");
    let state = dir.path().join("state");
    let max_len = WIDE.to_string();
    let extra = ["--max-len", max_len.as_str()];
    let first = serve_on("127.0.0.1:0", &extra, &state, &pk, &token);
    let bind = first.url.trim_start_matches("http://").to_string();
    let url = first.url.clone();
    let retry = RetryPolicy {
        attempts: u32::MAX,
        give_up_after: Duration::from_secs(30),
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
    };
    let clients: Vec<AggregatorClient> = (0..N)
        .map(|i| {
            let mut c = AggregatorClient::new(&url).with_retry(retry);
            c.register(&crate::common::registration(
                &key,
                &url,
                None,
                format!("c{i}"),
                "c",
                None,
            ))
            .unwrap();
            c
        })
        .collect();
    let ups: Vec<(Vec<f64>, f64)> = (0..N)
        .map(|i| {
            let v: Vec<f64> = (0..WIDE)
                .map(|j| ((i * 31 + j * 7) % 23) as f64 / 7.0 - 1.5)
                .collect();
            (v, 1.0 + (i % 5) as f64)
        })
        .collect();
    let bodies: Vec<Vec<u8>> = ups
        .iter()
        .map(|(v, w)| crypto::encrypt_weighted(&key, v, *w).unwrap().to_bytes())
        .collect();
    // Random kill points; the seed is printed so a failure can be replayed.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.subsec_nanos() as u64 | 1);
    eprintln!("fault-injection seed {seed}");
    let mut rand_ms = move |lo: u64, hi: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        lo + seed % (hi - lo)
    };
    let done = std::sync::atomic::AtomicBool::new(false);
    let start = std::time::Instant::now();
    let mut kills = 0;
    std::thread::scope(|s| {
        let uploader = s.spawn(|| {
            for (c, body) in clients.iter().zip(&bodies) {
                loop {
                    match c.upload(1, body) {
                        Ok(_) => break,
                        // Accepted before a kill hid the answer.
                        Err(e) if status_of(&e).1 == "duplicate_submission" => break,
                        Err(ClientError::Unreachable { .. }) => continue,
                        Err(e) => panic!("upload refused: {e}"),
                    }
                }
                // A steady stream, so that the kills land all along it.
                std::thread::sleep(Duration::from_millis(8));
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let mut server = Some(first);
        while !done.load(std::sync::atomic::Ordering::SeqCst) && !uploader.is_finished() {
            std::thread::sleep(Duration::from_millis(rand_ms(5, 60)));
            if uploader.is_finished() || kills >= 6 {
                continue;
            }
            drop(server.take()); // SIGKILL
            kills += 1;
            server = Some(serve_on(&bind, &extra, &state, &pk, &token));
        }
        uploader.join().unwrap();
        assert!(kills >= 2, "only {kills} kills landed");
        let op_token = std::fs::read_to_string(&token).unwrap();
        let op = AggregatorClient::new(&url).with_token(op_token.trim());
        let info = op.round(1, None).unwrap();
        assert_eq!(info.contributors as usize, N, "each update exactly once");
        assert_eq!(info.submitted.len(), N);
        op.close_round(1).unwrap();
        let (bytes, contributors) = clients[0].download_sum(1).unwrap();
        assert_eq!(contributors as usize, N);
        let acc = Accumulator::from_bytes(&bytes, WIDE).unwrap();
        let m = crypto::decrypt_mean(&key, &acc).unwrap();
        let total: f64 = ups.iter().map(|u| u.1).sum();
        assert_eq!(m.total_weight, total);
        let want: Vec<f64> = (0..WIDE)
            .map(|j| ups.iter().map(|(v, w)| v[j] * w).sum::<f64>() / total)
            .collect();
        let tol = m.error_bound(acc.scale_bits());
        for (a, b) in m.values.iter().zip(&want) {
            assert!((a - b).abs() <= tol, "{a} vs {b} (bound {tol})");
        }
        drop(server);
    });
    eprintln!(
        "{N} uploads, {kills} SIGKILLs, {:.1} s",
        start.elapsed().as_secs_f64()
    );
}
