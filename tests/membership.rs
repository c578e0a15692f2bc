//! Issue 21 part 2 over real HTTP (embedded aggregator on loopback, real
//! keys): no member can stop or take over another. Low-order mask keys are
//! refused; a token rotates only under the id's registered identity; proofs
//! bind the aggregator's session and the plan, within a clock-skew
//! allowance; members see identities, not proofs; only `/health` is public;
//! a client of a reset aggregator is told so.

use std::sync::Arc;
use std::time::Duration;

use fedhe::client::{AggregatorClient, ClientError, HeExchange};
use fedhe::crypto::{Audience, ParamSet, SecretKey};
use fedhe::plan::{Plan, ProposeOptions, Quorum, Training};
use fedhe::privacy::masks::{Identity, MaskContext};
use fedhe::protocol::{AnnounceRequest, ErrorCode, RegisterRequest, hex, now_ms, parse_hex_array};
use fedhe::server::{EmbeddedServer, ServerConfig};

use crate::common::{connect, join, registration, registration_as, sample, serve_plan};

fn plan(masks: bool) -> Plan {
    let (plan, _) = fedhe::plan::propose(
        &sample("train.csv"),
        &ProposeOptions {
            training: Training {
                rounds: 2,
                ..Training::default()
            },
            quorum: Quorum {
                min_clients: 3,
                roster: Vec::new(),
                round_deadline_secs: 60,
                allow_single_contributor: false,
            },
            privacy: fedhe::plan::Privacy {
                masks,
                ..fedhe::plan::Privacy::default()
            },
            ..ProposeOptions::default()
        },
    )
    .unwrap();
    plan
}

fn status_of(e: &ClientError) -> (u16, String) {
    (
        e.status().unwrap_or(0),
        e.code().map(ToString::to_string).unwrap_or_default(),
    )
}

/// A raw request: status and JSON body.
fn raw(method: &str, url: &str, headers: &[(&str, &str)]) -> (u16, serde_json::Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = agent.run(req.body(()).unwrap()).unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().read_to_vec().unwrap();
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

fn session_of(url: &str) -> String {
    AggregatorClient::new(url).health().unwrap().session
}

#[test]
fn low_order_and_non_canonical_mask_keys_are_refused_and_nothing_is_stored() {
    let key = Arc::new(SecretKey::generate(ParamSet::Standard64));
    let srv = serve_plan(&key, plan(true));
    let a = join(&srv, &key, "a");
    let fp = a.plan_fingerprint.clone();
    let ctx = MaskContext {
        plan: &fp,
        round: 1,
        attempt: 1,
    };
    // The three keys of the issue, then the rest of the small-order list
    // (orders 1, 2, 4 and 8, and their non-canonical encodings).
    let bad = [
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
        "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "cdeb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880",
        "4c9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f11d7",
        "d9ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "daffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        "dbffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
        // The top bit set on a valid key is another encoding of it.
        "0900000000000000000000000000000000000000000000000000000000000080",
    ];
    for h in bad {
        let public: [u8; 32] = parse_hex_array(h).unwrap();
        // Signed by a's real identity: only the key itself is wrong.
        let k = a.identity.sign_key(&ctx, "a", public);
        let req = AnnounceRequest {
            attempt: 1,
            public: hex(&k.public),
            signature: hex(&k.signature),
        };
        let e = a.api.announce(1, &req).unwrap_err();
        assert_eq!(status_of(&e), (422, "unprocessable".into()), "{h}: {e}");
        assert!(
            e.to_string().contains("not a valid X25519 public key"),
            "{h}: {e}"
        );
    }
    // Malformed: not 32 bytes.
    let e = a
        .api
        .announce(
            1,
            &AnnounceRequest {
                attempt: 1,
                public: "00".repeat(31),
                signature: "00".repeat(64),
            },
        )
        .unwrap_err();
    assert_eq!(status_of(&e).0, 400, "{e}");
    // Nothing was stored: no key, and a's real key is still accepted.
    assert!(a.api.key_set(1, None).unwrap().keys.is_empty());
    let real = a
        .identity
        .announce(&ctx, "a", &a.ledger.secret(&ctx).unwrap());
    let set = a
        .api
        .announce(
            1,
            &AnnounceRequest {
                attempt: 1,
                public: hex(&real.public),
                signature: hex(&real.signature),
            },
        )
        .unwrap();
    assert_eq!(set.keys.len(), 1);
}

fn plain_server(key: &SecretKey, state_dir: Option<std::path::PathBuf>) -> EmbeddedServer {
    EmbeddedServer::start(ServerConfig {
        public_key: Some(key.public()),
        max_len: Some(8),
        state_dir,
        ..ServerConfig::default()
    })
    .unwrap()
}

#[test]
fn a_member_cannot_take_over_another_and_only_the_operator_resets_an_identity() {
    let key = SecretKey::generate(ParamSet::Standard64);
    let dir = tempfile::tempdir().unwrap();
    let srv = plain_server(&key, Some(dir.path().join("state")));
    let url = srv.url().to_string();
    let alice = Identity::generate().unwrap();
    let mut a = AggregatorClient::new(&url);
    a.register(&registration_as(
        &key, &url, None, "a", "Clinic A", None, &alice,
    ))
    .unwrap();
    // Mallory holds the federation key (every member does), not a's
    // identity: registering as `a` again no longer rotates a's token.
    std::thread::sleep(Duration::from_millis(5));
    let mallory = Identity::generate().unwrap();
    let mut m = AggregatorClient::new(&url);
    let takeover = registration_as(&key, &url, None, "a", "Clinic A", None, &mallory);
    let e = m.register(&takeover).unwrap_err();
    assert_eq!(status_of(&e), (403, "forbidden".into()), "{e}");
    assert!(e.to_string().contains("not signed by it"), "{e}");
    assert!(e.to_string().contains("--reset-identity a"), "{e}");
    // Without a rotation signature at all: the same.
    let mut bare = registration_as(&key, &url, None, "a", "Clinic A", None, &mallory);
    bare.rotation = None;
    assert_eq!(status_of(&m.register(&bare).unwrap_err()).0, 403);
    a.clients().expect("a keeps its token");
    let listed = srv.clients();
    assert_eq!(listed[0].identity, Some(hex(&alice.public())));
    // a itself (its identity, a later proof) rotates its own token.
    std::thread::sleep(Duration::from_millis(5));
    let mut a2 = AggregatorClient::new(&url);
    a2.register(&registration_as(
        &key, &url, None, "a", "Clinic A", None, &alice,
    ))
    .unwrap();
    assert_eq!(status_of(&a.clients().unwrap_err()).0, 401);
    // Only the operator resets an identity; a member cannot.
    let reset = format!("{url}/api/v1/clients/a/reset");
    let bearer = |t: &str| format!("Bearer {t}");
    let (code, body) = raw(
        "POST",
        &reset,
        &[("authorization", &bearer(a2.token().unwrap()))],
    );
    assert_eq!((code, body["error"].as_str()), (403, Some("forbidden")));
    let (code, _) = raw(
        "POST",
        &reset,
        &[("authorization", &bearer(srv.operator_token()))],
    );
    assert_eq!(code, 200);
    // a's token stops working and its identity is forgotten; the id then
    // registers with a new identity (the site that lost its state file).
    assert_eq!(status_of(&a2.clients().unwrap_err()).0, 401);
    assert_eq!(srv.clients()[0].identity, None);
    let fresh = Identity::generate().unwrap();
    std::thread::sleep(Duration::from_millis(5));
    let mut a3 = AggregatorClient::new(&url);
    a3.register(&registration_as(
        &key, &url, None, "a", "Clinic A", None, &fresh,
    ))
    .unwrap();
    assert_eq!(srv.clients()[0].identity, Some(hex(&fresh.public())));
    // `fedhe serve --reset-identity a` does the same at start.
    let token = a3.token().unwrap().to_string();
    srv.shutdown();
    let again = EmbeddedServer::start(ServerConfig {
        public_key: Some(key.public()),
        state_dir: Some(dir.path().join("state")),
        reset_identities: vec!["a".into()],
        ..ServerConfig::default()
    })
    .unwrap();
    let e = AggregatorClient::new(again.url())
        .with_token(token)
        .clients()
        .unwrap_err();
    assert_eq!(status_of(&e).0, 401);
    assert_eq!(again.clients()[0].identity, None);
}

#[test]
fn proofs_bind_the_aggregator_session_and_the_plan_within_a_clock_skew() {
    let key = SecretKey::generate(ParamSet::Standard64);
    let p = plan(false);
    let fp = p.fingerprint().to_string();
    let srv = serve_plan(&key, p);
    let url = srv.url().to_string();
    let session = session_of(&url);
    assert_eq!(session.len(), 32);
    let who = Identity::generate().unwrap();
    let at = |ms: u64| {
        let aud = Audience {
            session: &session,
            plan: Some(&fp),
        };
        RegisterRequest::signed_at(&key, &aud, "a", "A", None, &who, ms)
    };
    let mut c = AggregatorClient::new(&url);
    // issued_ms = 0 (the case) and ten minutes behind: refused,
    // naming the skew.
    for (ms, words) in [(0, "behind"), (now_ms() - 600_000, "behind")] {
        let e = c.register(&at(ms)).unwrap_err();
        assert_eq!(status_of(&e), (422, "unprocessable".into()), "{e}");
        let text = e.to_string();
        assert!(
            text.contains(words) && text.contains("allowed clock skew is 5 minutes"),
            "{text}"
        );
        assert!(!text.contains("newer proof"), "{text}");
    }
    let e = c.register(&at(now_ms() + 600_000)).unwrap_err();
    assert!(e.to_string().contains("600."), "{e}");
    assert!(
        e.to_string().contains("ahead of the aggregator's clock"),
        "{e}"
    );
    // Four minutes of skew (the locked-out site) is allowed.
    c.register(&at(now_ms() - 240_000)).unwrap();
    assert_eq!(srv.status().registered, 1);
    // A proof made for another aggregator session is refused there...
    let other = Audience {
        session: "0123456789abcdef0123456789abcdef",
        plan: Some(&fp),
    };
    let elsewhere = RegisterRequest::signed(&key, &other, "b", "B", None, &who);
    let e = c.register(&elsewhere).unwrap_err();
    assert_eq!(status_of(&e).0, 422, "{e}");
    assert!(e.to_string().contains("aggregator session"), "{e}");
    // ...also when the request claims this session: the proof binds it.
    let mut claimed = elsewhere.clone();
    claimed.session = session.clone();
    assert_eq!(status_of(&c.register(&claimed).unwrap_err()).0, 401);
    // A proof for another plan, claiming this one, is refused too.
    let another = Audience {
        session: &session,
        plan: Some("00112233445566778899aabbccddeeff"),
    };
    let mut wrong_plan = RegisterRequest::signed(&key, &another, "b", "B", None, &who);
    wrong_plan.plan = Some(fp.clone());
    assert_eq!(status_of(&c.register(&wrong_plan).unwrap_err()).0, 401);
    // A second aggregator (another state folder) with the same key and
    // plan has another session: a request recorded at the first is refused.
    let srv2 = serve_plan(&key, plan(false));
    assert_ne!(session_of(srv2.url()), session);
    let recorded = registration(&key, &url, Some(&fp), "c", "C", None);
    let e = AggregatorClient::new(srv2.url())
        .register(&recorded)
        .unwrap_err();
    assert_eq!(status_of(&e).0, 422, "{e}");
    assert_eq!(srv.status().registered, 1);
    assert_eq!(srv2.status().registered, 0);
}

#[test]
fn only_health_is_public_and_members_see_identities_not_proofs() {
    let key = Arc::new(SecretKey::generate(ParamSet::Standard64));
    let srv = serve_plan(&key, plan(false));
    let url = srv.url().to_string();
    let api = format!("{url}/api/v1");
    // Public: /health, with the session id (and nothing else of the state).
    let (code, body) = raw("GET", &format!("{api}/health"), &[]);
    assert_eq!(code, 200);
    assert_eq!(body["session"].as_str(), Some(session_of(&url).as_str()));
    // Without a token: the roster, the deadlines, the plan and the client
    // list are refused.
    for path in ["status", "plan", "clients"] {
        let (code, body) = raw("GET", &format!("{api}/{path}"), &[]);
        assert_eq!(
            (code, body["error"].as_str()),
            (401, Some("unauthorized")),
            "{path}"
        );
    }
    // A member before registering signs its read with the federation key:
    // the plan and the status, not the client list.
    let member = AggregatorClient::new(&url)
        .with_session(session_of(&url))
        .with_member_key(key.clone());
    assert_eq!(
        member.plan().unwrap().fingerprint,
        srv.plan().unwrap().fingerprint().to_string()
    );
    assert_eq!(member.status().unwrap().registered, 0);
    assert_eq!(status_of(&member.clients().unwrap_err()).0, 401);
    // Another key's signature, a stale one, or one for another path: 401.
    let outsider = AggregatorClient::new(&url)
        .with_session(session_of(&url))
        .with_member_key(Arc::new(SecretKey::generate(ParamSet::Standard64)));
    assert_eq!(status_of(&outsider.plan().unwrap_err()).0, 401);
    let session = session_of(&url);
    let stale_ms = now_ms() - 600_000;
    let stale = format!(
        "{stale_ms}:{}",
        hex(&key.sign_read(&session, stale_ms, "/api/v1/plan"))
    );
    let (code, body) = raw("GET", &format!("{api}/plan"), &[("x-fedhe-member", &stale)]);
    assert_eq!(code, 401);
    assert!(
        body["detail"].as_str().unwrap().contains("clock skew"),
        "{body}"
    );
    let ms = now_ms();
    let for_status = format!(
        "{ms}:{}",
        hex(&key.sign_read(&session, ms, "/api/v1/status"))
    );
    let (code, _) = raw(
        "GET",
        &format!("{api}/plan"),
        &[("x-fedhe-member", &for_status)],
    );
    assert_eq!(code, 401);
    // The operator and members with a token read everything; the client
    // list carries identities with their attestations, never proofs.
    let op = AggregatorClient::new(&url).with_token(srv.operator_token());
    op.status().unwrap();
    op.plan().unwrap();
    let a = join(&srv, &key, "a");
    let _b = join(&srv, &key, "b");
    a.api.status().unwrap();
    let bearer = format!("Bearer {}", a.api.token().unwrap());
    let (code, body) = raw(
        "GET",
        &format!("{api}/clients"),
        &[("authorization", &bearer)],
    );
    assert_eq!(code, 200);
    let rows = body.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        assert!(row.get("proof").is_none(), "{row}");
        assert_eq!(row["identity"].as_str().map(str::len), Some(64), "{row}");
        assert_eq!(
            row["attestation"].as_str().map(str::len),
            Some(128),
            "{row}"
        );
    }
    // What a member sees cannot register: the attestation is no proof.
    let b_row = rows.iter().find(|r| r["id"] == "b").unwrap();
    let replay = RegisterRequest {
        id: "b".into(),
        name: "b".into(),
        max_len: None,
        proof: b_row["attestation"].as_str().unwrap().into(),
        issued_ms: now_ms(),
        plan: Some(a.plan_fingerprint.clone()),
        session: session.clone(),
        identity: b_row["identity"].as_str().map(String::from),
        attestation: b_row["attestation"].as_str().map(String::from),
        rotation: None,
    };
    let e = AggregatorClient::new(&url).register(&replay).unwrap_err();
    assert_eq!(status_of(&e).0, 401, "{e}");
}

#[test]
fn a_client_of_a_reset_aggregator_is_told_its_federation_no_longer_exists() {
    let key = Arc::new(SecretKey::generate(ParamSet::Standard64));
    let dir = tempfile::tempdir().unwrap();
    let p = plan(false);
    let start = |state: &str, bind: std::net::SocketAddr| {
        EmbeddedServer::start(ServerConfig {
            bind,
            public_key: Some(key.public()),
            plan: Some(p.clone()),
            state_dir: Some(dir.path().join(state)),
            ..ServerConfig::default()
        })
        .unwrap()
    };
    let srv = start("state", "127.0.0.1:0".parse().unwrap());
    let bind: std::net::SocketAddr = srv.url().trim_start_matches("http://").parse().unwrap();
    let state_file = dir.path().join("a.state.json");
    let joined = connect(srv.url(), &key)
        .join("a", "A", Some(&state_file))
        .unwrap();
    joined.api.round(1, None).unwrap();
    // The state folder is replaced (a restart on an empty folder).
    srv.shutdown();
    let fresh = start("fresh", bind);
    // The running client: not a bare 401.
    let e = joined.api.round(1, None).unwrap_err();
    assert_eq!(e.code(), Some(&ErrorCode::SessionReset), "{e}");
    assert_eq!(e.status(), Some(410));
    assert!(
        e.to_string().contains(
            "the aggregator's state was reset; the federation you joined no longer exists"
        ),
        "{e}"
    );
    // /health still answers it (with the new session): it is public.
    assert_eq!(
        joined.api.health().unwrap().session,
        session_of(fresh.url())
    );
    // A client resumed from its state file: the same, and it does not
    // silently join the new federation.
    let again = connect(fresh.url(), &key).join("a", "A", Some(&state_file));
    let e = again.err().expect("refused");
    assert!(
        e.to_string()
            .contains("the federation you joined no longer exists"),
        "{e}"
    );
    assert_eq!(fresh.status().registered, 0);
}

/// `j`'s encrypted exchange with pairwise masks, its pins included.
fn masked(j: &fedhe::session::Joined) -> HeExchange {
    let mut ex = HeExchange::new(j.api.clone(), j.key.clone(), Duration::from_secs(30));
    ex.masking = Some(fedhe::client::masking::Masking {
        pins: j.pins.clone(),
        ..fedhe::client::masking::Masking::for_plan(
            &j.id,
            &j.identity,
            &j.plan,
            &j.plan_fingerprint,
            j.ledger.clone(),
        )
    });
    ex
}

/// `j` announces its mask key for `round`'s open attempt, by hand.
fn announce(j: &fedhe::session::Joined, round: u64) {
    let attempt = j.api.key_set(round, None).unwrap().attempt;
    let ctx = MaskContext {
        plan: &j.plan_fingerprint,
        round,
        attempt,
    };
    let k = j
        .identity
        .announce(&ctx, &j.id, &j.ledger.secret(&ctx).unwrap());
    j.api
        .announce(
            round,
            &AnnounceRequest {
                attempt,
                public: hex(&k.public),
                signature: hex(&k.signature),
            },
        )
        .unwrap();
}

fn named_plan() -> Plan {
    let mut p = plan(true);
    p.quorum.roster = ["a", "b", "c"].map(String::from).to_vec();
    p
}

#[test]
fn a_partner_whose_identity_changed_since_first_use_is_refused_by_name() {
    let key = Arc::new(SecretKey::generate(ParamSet::Standard64));
    let p = named_plan();
    let srv = serve_plan(&key, p.clone());
    let dir = tempfile::tempdir().unwrap();
    let file = |id: &str| dir.path().join(format!("{id}.state.json"));
    let sites: Vec<_> = ["a", "b", "c"]
        .iter()
        .map(|id| {
            connect(srv.url(), &key)
                .join(id, id, Some(&file(id)))
                .unwrap()
        })
        .collect();
    // Round 1 (statistics), masked among a, b and c: each pins the others.
    let stat_len = p.statistics_values() * fedhe::client::STAT_LIMBS;
    std::thread::scope(|s| {
        for j in &sites {
            let mut ex = masked(j);
            s.spawn(move || {
                let m = ex
                    .exchange(
                        1,
                        &vec![0.5; stat_len],
                        1.0,
                        &std::sync::atomic::AtomicBool::new(false),
                    )
                    .unwrap();
                assert!(m.masked && m.contributors == 3);
            });
        }
    });
    let saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(file("a")).unwrap()).unwrap();
    assert_eq!(saved["partners"]["b"], hex(&sites[1].identity.public()));
    assert_eq!(saved["partners"]["c"], hex(&sites[2].identity.public()));
    // The aggregator's operator resets b, and a member in league with it
    // registers as b with an identity of its own (the aggregator-plus-one-
    // member attack): the key, the attestation and the signatures all check.
    let (code, _) = raw(
        "POST",
        &format!("{}/api/v1/clients/b/reset", srv.url()),
        &[("authorization", &format!("Bearer {}", srv.operator_token()))],
    );
    assert_eq!(code, 200);
    let fake_b = connect(srv.url(), &key).join("b", "b", None).unwrap();
    assert_ne!(fake_b.identity.public(), sites[1].identity.public());
    // Round 2 had opened with round 1's roster and keys (all survived it);
    // the reset restarted it with a key phase, in which every member
    // checks its partners' identities again.
    let set = sites[0].api.key_set(2, None).unwrap();
    assert_eq!(
        (set.attempt, set.phase, set.keys_from),
        (2, fedhe::protocol::MaskPhase::Keys, None)
    );
    // Round 2: a and c refuse to mask with the new `b`, naming it; nothing
    // of theirs is uploaded.
    let len = p.param_count() + 1;
    let errors: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = [&sites[0], &sites[2]]
            .into_iter()
            .map(|j| {
                let mut ex = masked(j);
                s.spawn(move || {
                    ex.exchange(
                        2,
                        &vec![0.25; len],
                        1.0,
                        &std::sync::atomic::AtomicBool::new(false),
                    )
                    .unwrap_err()
                    .to_string()
                })
            })
            .collect();
        announce(&fake_b, 2);
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for e in &errors {
        assert!(e.contains("partner `b`'s identity key changed"), "{e}");
        assert!(
            e.contains(&fedhe::privacy::masks::fingerprint(
                &sites[1].identity.public()
            )),
            "{e}"
        );
    }
    assert!(srv.round_info(2).unwrap().submitted.is_empty());
}

#[test]
fn a_plan_can_pin_the_named_roster_s_identity_keys() {
    let key = Arc::new(SecretKey::generate(ParamSet::Standard64));
    let pinned = Identity::generate().unwrap();
    let mut p = named_plan();
    p.identities.insert(
        "a".into(),
        fedhe::privacy::masks::fingerprint(&pinned.public()),
    );
    p.validate("the plan").unwrap();
    let srv = serve_plan(&key, p.clone());
    // `a` with another identity (a fresh site, or one in league with the
    // aggregator) is refused; the pinned identity registers.
    let fp = p.fingerprint().to_string();
    let e = AggregatorClient::new(srv.url())
        .register(&registration(&key, srv.url(), Some(&fp), "a", "a", None))
        .unwrap_err();
    assert_eq!(status_of(&e).0, 403, "{e}");
    assert!(
        e.to_string().contains("the plan pins `a`'s identity key"),
        "{e}"
    );
    AggregatorClient::new(srv.url())
        .register(&registration_as(
            &key,
            srv.url(),
            Some(&fp),
            "a",
            "a",
            None,
            &pinned,
        ))
        .unwrap();
    // Pins only for the named roster's ids, as fingerprints.
    let mut off_roster = p.clone();
    off_roster
        .identities
        .insert("z".into(), "0000:0000:0000:0000:0000:0000:0000:0000".into());
    let e = off_roster.validate("the plan").unwrap_err().to_string();
    assert!(
        e.contains("identities") && e.contains("quorum.roster"),
        "{e}"
    );
    let mut garbled = named_plan();
    garbled
        .identities
        .insert("b".into(), "not-a-fingerprint".into());
    assert!(garbled.validate("the plan").is_err());
    // The TOML form round-trips with the same fingerprint.
    let again = Plan::from_toml(&p.to_toml(), "the plan").unwrap();
    assert_eq!(again.fingerprint(), p.fingerprint());
    assert_eq!(again.identities, p.identities);
}
