//! The federation plan over real HTTP (embedded aggregator, real keys): the
//! plan served and checked, columns by name, the quorum (roster, minimum,
//! deadline, no single-contributor sums), and sites that fail before they
//! send anything while the others finish.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use crate::common::{connect, join, reordered, sample, serve_plan as start};
use fedhe::client::{AggregatorClient, ClientError};
use fedhe::crypto::{self, ParamSet, SecretKey};
use fedhe::federation::{SimData, SimulationConfig, simulate};
use fedhe::plan::{Plan, ProposeOptions, Quorum, Training};
use fedhe::protocol::{RegisterRequest, RoundState};
use fedhe::server::{EmbeddedServer, ServerConfig};
use fedhe::session::{self, Joined};

fn plan(quorum: Quorum) -> Plan {
    // These tests drive the quorum with raw uploads: no mask keys.
    let (plan, _) = fedhe::plan::propose(
        &sample("train.csv"),
        &ProposeOptions {
            training: Training {
                rounds: 3,
                sgd: fedhe::model::LocalSgd {
                    epochs: 2,
                    ..Training::default().sgd
                },
                ..Training::default()
            },
            quorum,
            privacy: fedhe::plan::Privacy {
                masks: false,
                ..fedhe::plan::Privacy::default()
            },
            ..ProposeOptions::default()
        },
    )
    .unwrap();
    plan
}

fn quorum(min: usize, roster: &[&str], deadline: u64) -> Quorum {
    Quorum {
        min_clients: min,
        roster: roster.iter().map(|s| s.to_string()).collect(),
        round_deadline_secs: deadline,
        allow_single_contributor: false,
    }
}

/// Uploads an arbitrary update of the plan's length for `round` as `j`.
fn upload(j: &Joined, key: &SecretKey, round: u64) -> Result<(), ClientError> {
    let len = if round == 1 {
        j.plan.statistics_values() * fedhe::client::STAT_LIMBS
    } else {
        // The parameters and the site's FedAvg share.
        j.plan.param_count() + 1
    } + key.layout().tag_slots();
    let bytes = crypto::encrypt_weighted(key, &vec![0.5; len], 1.0)
        .unwrap()
        .bound_to(round, 0)
        .to_bytes();
    j.api.upload(round, &bytes).map(|_| ())
}

fn status_of(e: &ClientError) -> (u16, String) {
    (
        e.status().unwrap_or(0),
        e.code().map(ToString::to_string).unwrap_or_default(),
    )
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_plan_is_served_and_a_client_of_another_plan_is_refused() {
    let key = Arc::new(SecretKey::generate(ParamSet::Standard64));
    let p = plan(Quorum::default());
    let srv = start(&key, p.clone());
    let served = AggregatorClient::new(srv.url())
        .with_token(srv.operator_token())
        .plan()
        .unwrap();
    assert_eq!(served.plan, p);
    assert_eq!(served.fingerprint, p.fingerprint().to_string());
    assert_eq!(
        srv.status().session.unwrap().plan.as_deref(),
        Some(served.fingerprint.as_str())
    );
    // A registration for another plan: 422 naming both fingerprints.
    let mut other = p.clone();
    other.training.rounds = 7;
    let mut c = AggregatorClient::new(srv.url());
    let e = c
        .register(&crate::common::registration(
            &key,
            srv.url(),
            Some(&other.fingerprint().to_string()),
            "x",
            "X",
            None,
        ))
        .unwrap_err();
    assert_eq!(status_of(&e), (422, "unprocessable".into()));
    let text = e.to_string();
    assert!(
        text.contains(&other.fingerprint().to_string())
            && text.contains(&p.fingerprint().to_string()),
        "{text}"
    );
    // A registration that names no plan, too.
    let e = c
        .register(&crate::common::registration(
            &key,
            srv.url(),
            None,
            "x",
            "X",
            None,
        ))
        .unwrap_err();
    assert_eq!(status_of(&e).0, 422);
    assert_eq!(srv.status().registered, 0);
    // An update without the plan's fingerprint is refused and not counted.
    let j = join(&srv, &key, "a");
    let bare = AggregatorClient::new(srv.url()).with_token(j.api.token().unwrap());
    let bytes = crypto::encrypt_weighted(&key, &[0.5; 31], 1.0)
        .unwrap()
        .to_bytes();
    let e = bare.upload(1, &bytes).unwrap_err();
    assert_eq!(status_of(&e).0, 422);
    assert!(e.to_string().contains("names no plan"), "{e}");
    assert!(srv.status().submitted.is_empty());
    // The operator may load the same plan again, but not another one once
    // a client has registered.
    let op = AggregatorClient::new(srv.url()).with_token(srv.operator_token());
    let put = |plan: &Plan| {
        ureq::put(format!("{}/api/v1/plan", srv.url()))
            .config()
            .http_status_as_error(false)
            .build()
            .header("authorization", format!("Bearer {}", op.token().unwrap()))
            .send(plan.to_toml())
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(put(&p), 200);
    assert_eq!(put(&other), 409);
    assert_eq!(op.plan().unwrap().plan, p);
}

#[test]
fn a_round_with_one_submitter_is_never_published_by_default() {
    let key = Arc::new(SecretKey::generate(ParamSet::Standard64));
    let srv = start(&key, plan(quorum(2, &[], 1)));
    let a = join(&srv, &key, "a");
    let b = join(&srv, &key, "b");
    upload(&a, &key, 1).unwrap();
    upload(&b, &key, 1).unwrap();
    wait_for("round 1 to close", Duration::from_secs(5), || {
        srv.status().round == 2
    });
    // Round 2: only a submits. Past the deadline the round stays open.
    upload(&a, &key, 2).unwrap();
    std::thread::sleep(Duration::from_millis(1600));
    let st = srv.status();
    assert_eq!(st.round, 2);
    assert_eq!(st.missing, vec!["b".to_string()]);
    let e = srv.close_round(2).unwrap_err().to_string();
    assert!(e.contains("single contributor"), "{e}");
    assert_eq!(srv.round_info(2).unwrap().state, RoundState::Open);
    upload(&b, &key, 2).unwrap();
    wait_for("round 2 to close", Duration::from_secs(5), || {
        srv.status().round == 3
    });
    assert_eq!(srv.round_info(2).unwrap().contributors, 2);
}

#[test]
fn a_dead_client_does_not_hold_the_round_past_its_deadline() {
    let key = Arc::new(SecretKey::generate(ParamSet::Standard64));
    let srv = start(&key, plan(quorum(2, &[], 1)));
    let [a, b, c] = ["a", "b", "c"].map(|id| join(&srv, &key, id));
    for j in [&a, &b, &c] {
        upload(j, &key, 1).unwrap();
    }
    wait_for("round 1", Duration::from_secs(5), || {
        srv.status().round == 2
    });
    // c is gone: round 2 waits for it until the deadline, then closes with
    // the two that submitted, and says who counted.
    upload(&a, &key, 2).unwrap();
    upload(&b, &key, 2).unwrap();
    let info = a.api.round(2, None).unwrap();
    assert_eq!(info.missing, vec!["c".to_string()]);
    assert!(info.deadline_unix.is_some());
    assert!(session::waiting_words(&info, Default::default()).contains("waiting for c"));
    let t = Instant::now();
    wait_for("the deadline", Duration::from_secs(5), || {
        srv.status().round == 3
    });
    assert!(t.elapsed() < Duration::from_secs(3));
    let closed = srv.round_info(2).unwrap();
    assert_eq!(closed.submitted, vec!["a".to_string(), "b".to_string()]);
    assert_eq!(closed.contributors, 2);
    // The next round no longer waits for c; c rejoins by submitting.
    assert_eq!(srv.status().roster, vec!["a".to_string(), "b".to_string()]);
    upload(&c, &key, 3).unwrap();
    assert!(srv.status().roster.contains(&"c".to_string()));
}

#[test]
fn standardization_waits_for_the_whole_named_roster() {
    let key = Arc::new(SecretKey::generate(ParamSet::Standard64));
    let srv = start(&key, plan(quorum(2, &["a", "b", "c"], 1)));
    let a = join(&srv, &key, "a");
    let b = join(&srv, &key, "b");
    // An id that is not on the roster cannot join.
    let e = match connect(srv.url(), &key).join("mallory", "M", None) {
        Err(session::SessionError::Client(e)) => e,
        Err(e) => panic!("unexpected {e}"),
        Ok(_) => panic!("joined without being on the roster"),
    };
    assert_eq!(status_of(&e).0, 403);
    assert!(e.to_string().contains("not on the plan's roster"), "{e}");
    upload(&a, &key, 1).unwrap();
    upload(&b, &key, 1).unwrap();
    std::thread::sleep(Duration::from_millis(1600));
    let st = srv.status();
    assert_eq!(st.round, 1, "standardization has no deadline");
    assert_eq!(st.missing, vec!["c".to_string()]);
    assert_eq!(st.deadline_unix, None);
    let c = join(&srv, &key, "c");
    upload(&c, &key, 1).unwrap();
    wait_for("round 1", Duration::from_secs(5), || {
        srv.status().round == 2
    });
    assert_eq!(srv.round_info(1).unwrap().contributors, 3);
}

/// A CSV like `src` whose line `line` (1-based) has label `label`.
fn with_label(src: &Path, dst: &Path, line: usize, label: &str) {
    let text = std::fs::read_to_string(src).unwrap();
    let out: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i + 1 == line {
                let (_, rest) = l.split_once(',').unwrap();
                format!("{label},{rest}")
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(dst, out.join("\n") + "\n").unwrap();
}

#[test]
fn bad_sites_fail_before_sending_and_the_others_finish() {
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(SecretKey::generate(ParamSet::Standard64));
    let srv = start(&key, plan(quorum(2, &[], 30)));
    assert!(
        std::fs::read_to_string(sample("clients/client_3.csv"))
            .unwrap()
            .starts_with("diagnosis,")
    );
    // A label value outside the plan's classes, on line 7.
    let unknown = dir.path().join("unknown_class.csv");
    with_label(&sample("clients/client_3.csv"), &unknown, 7, "2");
    let e = connect(srv.url(), &key)
        .load_site(&unknown)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("unknown_class.csv:7") && e.contains("\"2\"") && e.contains("diagnosis"),
        "{e}"
    );
    // A text cell in a numeric column: located too.
    let text_cell = dir.path().join("text_cell.csv");
    let body = std::fs::read_to_string(sample("clients/client_3.csv"))
        .unwrap()
        .replacen("\n1,", "\n1,n/a-", 1);
    std::fs::write(&text_cell, body).unwrap();
    let e = connect(srv.url(), &key)
        .load_site(&text_cell)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("text_cell.csv:") && e.contains("not a finite number"),
        "{e}"
    );
    assert_eq!(srv.status().registered, 0, "nothing was sent");

    // The two good sites run the plan to the end.
    let handles: Vec<_> = ["client_1.csv", "client_2.csv"]
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let c = connect(srv.url(), &key);
            let data = c.load_site(&sample(&format!("clients/{f}"))).unwrap();
            let j = c.join(&format!("site-{i}"), "site", None).unwrap();
            std::thread::spawn(move || {
                j.run(&data.dataset, vec![], &mut |_| {}, &AtomicBool::new(false))
            })
        })
        .collect();
    for h in handles {
        let run = h.join().unwrap().unwrap();
        assert_eq!(run.outcome.rounds.len(), 3);
        assert!(run.outcome.rounds.iter().all(|r| r.contributors == 2));
    }
}

#[test]
fn simulate_with_reordered_client_columns_gives_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("b.csv");
    reordered(&sample("clients/client_2.csv"), &b);
    let files = |second: PathBuf| SimulationConfig {
        data: SimData::Files {
            clients: vec![sample("clients/client_1.csv"), second],
            test: sample("test.csv"),
        },
        csv: Default::default(),
        rounds: 5,
        train: fedhe::model::TrainConfig {
            epochs: 2,
            ..Default::default()
        },
        architecture: Default::default(),
        dp: None,
        masks: true,
        plain: false,
        params: ParamSet::Standard64,
        round_timeout: Duration::from_secs(60),
        evaluation: None,
    };
    let go = |cfg: &SimulationConfig| {
        simulate(cfg, &mut |_| {}, Arc::new(AtomicBool::new(false))).unwrap()
    };
    let plain_order = go(&files(sample("clients/client_2.csv")));
    let other_order = go(&files(b));
    assert_eq!(plain_order.records.len(), 5);
    for (x, y) in plain_order.records.iter().zip(&other_order.records) {
        assert_eq!(x.params, y.params, "round {}", x.round);
    }
    assert_eq!(plain_order.test, other_order.test);
}

#[test]
fn plan_init_ignores_text_and_id_columns_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("sites.csv");
    std::fs::write(
        &csv,
        "patient_id,age,ward,bmi,outcome\n\
         11,64,North,31.2,yes\n\
         12,51,South,24.8,no\n\
         13,64,North,27.5,no\n\
         14,70,East,29.9,yes\n",
    )
    .unwrap();
    let out = dir.path().join("plan.toml");
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_fedhe"))
            .args(["plan", "init", "--label", "outcome"])
            .arg("--data")
            .arg(&csv)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&[]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        text.contains("column \"ward\" categorical: text with 3 categories (East, North, South)"),
        "{text}"
    );
    // Ages 51, 64, 64, 70: two values on one row each, a sample of a wider
    // range (the next site has other ages), so a number.
    assert!(!text.contains("column \"age\" categorical"), "{text}");
    assert!(
        text.contains("column \"patient_id\" ignored: it holds a distinct integer"),
        "{text}"
    );
    assert!(text.contains("positive class \"yes\""), "{text}");
    let plan = Plan::load(&out).unwrap();
    assert_eq!(plan.columns.numeric, vec!["age", "bmi"]);
    let cats: Vec<(&str, Vec<&str>)> = plan
        .columns
        .categorical
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                c.categories.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(cats, vec![("ward", vec!["East", "North", "South"])]);
    assert_eq!(plan.columns.ignored, vec!["patient_id"]);
    assert!(text.contains(&plan.fingerprint().to_string()));
    // Never over an existing plan without --force.
    let o = run(&["--rounds", "9"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    assert_eq!(Plan::load(&out).unwrap(), plan);
    assert!(run(&["--rounds", "9", "--force"]).status.success());
    assert_eq!(Plan::load(&out).unwrap().training.rounds, 9);
    // A plan whose quorum would publish a single update is refused, naming the field.
    let o = run(&["--min-clients", "1", "--force"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("quorum.min_clients"), "{err}");
    // `plan check` maps a site's file by name and says what does not fit.
    let site = dir.path().join("site.csv");
    std::fs::write(
        &site,
        "bmi,outcome,age,ward\n22.0,no,51,North\n30.1,maybe,64,South\n",
    )
    .unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_fedhe"))
        .args(["plan", "check"])
        .arg(&out)
        .arg("--data")
        .arg(&site)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("site.csv:3") && err.contains("\"maybe\""),
        "{err}"
    );
}

#[test]
fn a_plan_guards_round_lengths_late_plans_and_future_proofs() {
    let key = Arc::new(SecretKey::generate(ParamSet::Standard64));
    let p = plan(quorum(2, &[], 30));
    let srv = start(&key, p.clone());
    let a = join(&srv, &key, "a");
    let b = join(&srv, &key, "b");
    // A first update of the wrong length cannot fix round 1's length (and
    // block every honest site): the plan says what each round sums.
    let short = crypto::encrypt_weighted(&key, &[0.5; 31], 1.0)
        .unwrap()
        .bound_to(1, 0)
        .to_bytes();
    let e = a.api.upload(1, &short).unwrap_err();
    assert_eq!(status_of(&e).0, 422);
    assert!(
        e.to_string()
            .contains("round 1 of the plan sums vectors of"),
        "{e}"
    );
    upload(&a, &key, 1).unwrap();
    upload(&b, &key, 1).unwrap();
    wait_for("round 1", Duration::from_secs(5), || {
        srv.status().round == 2
    });
    // A registration issued far in the future is refused (it would lock its
    // id out of every later registration).
    let session = AggregatorClient::new(srv.url()).health().unwrap().session;
    let aud = fedhe::crypto::Audience {
        session: &session,
        plan: Some(&p.fingerprint().to_string()),
    };
    let future = RegisterRequest::signed_at(
        &key,
        &aud,
        "c",
        "C",
        None,
        &fedhe::privacy::masks::Identity::generate().unwrap(),
        fedhe::protocol::now_ms() + 3_600_000,
    );
    let e = AggregatorClient::new(srv.url())
        .register(&future)
        .unwrap_err();
    assert_eq!(status_of(&e).0, 422);
    assert!(
        e.to_string().contains("ahead of the aggregator's clock"),
        "{e}"
    );

    // A plan cannot be attached to a session that already summed rounds
    // without one: its rounds would pass for the plan's.
    let plain = EmbeddedServer::start(ServerConfig {
        public_key: Some(key.public()),
        max_len: Some(plan(quorum(2, &[], 60)).max_update_len()),
        allow_single_contributor: true,
        ..ServerConfig::default()
    })
    .unwrap();
    let mut c = AggregatorClient::new(plain.url());
    c.register(&crate::common::registration(
        &key,
        plain.url(),
        None,
        "x",
        "X",
        None,
    ))
    .unwrap();
    c.upload(
        1,
        &crypto::encrypt_weighted(&key, &[0.5; 31], 1.0)
            .unwrap()
            .to_bytes(),
    )
    .unwrap();
    let e = plain.load_plan(p).unwrap_err().to_string();
    assert!(e.contains("without a plan"), "{e}");
}

#[test]
fn an_update_replayed_into_another_round_is_refused() {
    let key = Arc::new(SecretKey::generate(ParamSet::Standard64));
    let srv = start(&key, plan(quorum(2, &["a", "b"], 60)));
    let (a, b) = (join(&srv, &key, "a"), join(&srv, &key, "b"));
    let len = a.plan.statistics_values() * fedhe::client::STAT_LIMBS + key.layout().tag_slots();
    let round1 = crypto::encrypt_weighted(&key, &vec![0.5; len], 1.0)
        .unwrap()
        .bound_to(1, 0)
        .to_bytes();
    a.api.upload(1, &round1).unwrap();
    upload(&b, &key, 1).unwrap();
    wait_for("round 2", Duration::from_secs(10), || {
        srv.status().round == 2
    });
    // a's round-1 ciphertext, sent again as its round-2 update.
    let e = a.api.upload(2, &round1).unwrap_err();
    assert_eq!(status_of(&e), (409, "wrong_round".into()), "{e}");
    assert!(e.to_string().contains("made for round 1"), "{e}");
    // An update that names no round is refused under a plan.
    let unbound = crypto::encrypt_weighted(&key, &vec![0.5; a.plan.param_count() + 1], 1.0)
        .unwrap()
        .to_bytes();
    let e = a.api.upload(2, &unbound).unwrap_err();
    assert!(e.to_string().contains("names no round"), "{e}");
    assert!(srv.status().submitted.is_empty(), "nothing counted");
    upload(&a, &key, 2).unwrap();
}
