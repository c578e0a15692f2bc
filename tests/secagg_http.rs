//! Double masking over real HTTP (issue 23 Part 2, the aggregator's side):
//! a real aggregator on a loopback socket (with a state folder, restarted
//! mid-round), real umbrella keys, identities and announced X25519 keys;
//! the library's double-masking functions play the clients (the client
//! round flow is wired separately).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fedhe::client::secagg::{Shown, unmask_step};
use fedhe::crypto::{
    Accumulator, ParamSet, SecretKey, decrypt_integers, encrypt_weighted, encrypt_weighted_masked,
};
use fedhe::plan::{Plan, ProposeOptions, Training};
use fedhe::privacy::MaskContext;
use fedhe::privacy::secagg::{
    SealedShares, SecAggRound, double_masks, seal_shares, sign_survivors,
};
use fedhe::protocol::{
    AnnounceRequest, ErrorCode, KeyReport, KeySet, MaskPhase, RevealUpload, SharesUpload,
    SurvivorSignature, WireBundle, WireShare, hex, parse_hex_array, parse_hex_up_to,
};
use fedhe::server::{EmbeddedServer, ServerConfig};
use fedhe::session::Joined;

use crate::common::{connect, sample};

/// A masked plan (3 sites at least) whose phases last `deadline` seconds.
fn plan(deadline: u64) -> Plan {
    let mut plan = fedhe::plan::propose(
        &sample("train.csv"),
        &ProposeOptions {
            training: Training {
                rounds: 1,
                ..Training::default()
            },
            ..ProposeOptions::default()
        },
    )
    .unwrap()
    .0;
    plan.privacy.masks = true;
    plan.quorum.min_clients = 3;
    plan.quorum.round_deadline_secs = deadline;
    plan
}

/// The aggregator with its state in `dir`, bound to `bind`.
fn start(key: &SecretKey, plan: &Plan, dir: &Path, bind: &str) -> EmbeddedServer {
    EmbeddedServer::start(ServerConfig {
        bind: bind.parse().unwrap(),
        public_key: Some(key.public()),
        plan: Some(plan.clone()),
        state_dir: Some(dir.to_path_buf()),
        ..ServerConfig::default()
    })
    .unwrap()
}

/// The test's federation: the sites joined, their round-1 values.
struct Fed {
    key: Arc<SecretKey>,
    sites: Vec<Joined>,
    values: Vec<Vec<f64>>,
    len: usize,
}

impl Fed {
    fn new(srv: &EmbeddedServer, key: &Arc<SecretKey>, ids: &[&str]) -> Fed {
        let sites: Vec<Joined> = ids
            .iter()
            .map(|id| connect(srv.url(), key).join(id, id, None).unwrap())
            .collect();
        let plan = &sites[0].plan;
        let len = plan
            .layout()
            .phase(1)
            .and_then(|p| plan.update_len(p, &key.layout()))
            .unwrap_or(64);
        let values = (0..ids.len())
            .map(|i| (0..len).map(|k| (i * 7 + k) as f64 / 8.0 - 1.0).collect())
            .collect();
        Fed {
            key: key.clone(),
            sites,
            values,
            len,
        }
    }

    fn site(&self, id: &str) -> usize {
        self.sites.iter().position(|j| j.id == id).unwrap()
    }

    fn ctx(&self, attempt: u32) -> MaskContext<'_> {
        MaskContext {
            plan: &self.sites[0].plan_fingerprint,
            round: 1,
            attempt,
        }
    }

    /// `id` announces its key for round 1's `attempt`.
    fn announce(&self, id: &str, attempt: u32) -> Result<KeySet, fedhe::client::ClientError> {
        let j = &self.sites[self.site(id)];
        let ctx = self.ctx(attempt);
        let k = j
            .identity
            .announce(&ctx, id, &j.ledger.secret(&ctx).unwrap());
        j.api.announce(
            1,
            &AnnounceRequest {
                attempt,
                public: hex(&k.public),
                signature: hex(&k.signature),
            },
        )
    }

    fn key_set(&self) -> KeySet {
        self.sites[0].api.key_set(1, None).unwrap()
    }

    /// Waits (long polls) until round 1's key set is in `phase`.
    fn wait_phase(&self, phase: MaskPhase) -> KeySet {
        let t = Instant::now();
        loop {
            let set = self.sites[0]
                .api
                .key_set(1, Some(Duration::from_millis(500)))
                .unwrap();
            if set.phase == phase {
                return set;
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "no {phase:?}: {set:?}"
            );
        }
    }

    fn keys(set: &KeySet) -> Vec<(String, [u8; 32])> {
        set.keys
            .iter()
            .map(|k| (k.id.clone(), parse_hex_array(&k.public).unwrap()))
            .collect()
    }

    fn identities(&self) -> BTreeMap<String, [u8; 32]> {
        self.sites
            .iter()
            .map(|j| (j.id.clone(), j.identity.public()))
            .collect()
    }

    /// `id`'s sealed bundles for the fixed roster of `set`.
    fn bundles(&self, set: &KeySet, id: &str) -> Vec<SealedShares> {
        let j = &self.sites[self.site(id)];
        let ctx = self.ctx(set.attempt);
        let round = SecAggRound::new(ctx, &set.roster, 3).unwrap();
        let secret = j.ledger.secret(&ctx).unwrap();
        seal_shares(&secret, &round, id, &Self::keys(set)).unwrap()
    }

    fn shares_upload(set: &KeySet, bundles: &[SealedShares]) -> SharesUpload {
        SharesUpload {
            attempt: set.attempt,
            bundles: bundles
                .iter()
                .map(|b| WireBundle {
                    id: b.to.clone(),
                    bytes: hex(&b.bytes),
                })
                .collect(),
        }
    }

    /// `id`'s double-masked update for the attempt of `set`.
    fn update(&self, set: &KeySet, id: &str) -> Vec<u8> {
        let i = self.site(id);
        let j = &self.sites[i];
        let ctx = self.ctx(set.attempt);
        let round = SecAggRound::new(ctx, &set.roster, 3).unwrap();
        let secret = j.ledger.secret(&ctx).unwrap();
        j.ledger.bind(&ctx, &self.values[i], 1.0).unwrap();
        let masks = double_masks(&secret, &round, id, &Self::keys(set)).unwrap();
        encrypt_weighted_masked(&self.key, &self.values[i], 1.0, &masks)
            .unwrap()
            .bound_to(1, set.attempt)
            .to_bytes()
    }

    /// `id` sends its shares, then its update.
    fn upload(&self, set: &KeySet, id: &str) {
        let j = &self.sites[self.site(id)];
        let req = Self::shares_upload(set, &self.bundles(set, id));
        j.api.put_shares(1, &req).unwrap();
        j.api
            .upload_for(1, Some(set.attempt), &self.update(set, id))
            .unwrap();
    }

    /// `id` signs the survivor set it is shown.
    fn sign(&self, set: &KeySet, id: &str) {
        let j = &self.sites[self.site(id)];
        let round = SecAggRound::new(self.ctx(set.attempt), &set.roster, 3).unwrap();
        let sig = sign_survivors(&j.identity, &round, id, &set.survivors);
        j.api
            .sign_survivors(
                1,
                &SurvivorSignature {
                    attempt: set.attempt,
                    id: String::new(),
                    signature: hex(&sig),
                },
            )
            .unwrap();
    }

    /// `id`'s unmask step over HTTP: its bundles, the client's checks, the
    /// reveal.
    fn reveal(&self, set: &KeySet, id: &str) -> KeySet {
        let j = &self.sites[self.site(id)];
        let ctx = self.ctx(set.attempt);
        let round = SecAggRound::new(ctx, &set.roster, 3).unwrap();
        let held = j.api.shares_for(1).unwrap();
        let bundles: Vec<SealedShares> = held
            .bundles
            .iter()
            .map(|b| SealedShares {
                from: b.id.clone(),
                to: id.to_string(),
                bytes: parse_hex_up_to(&b.bytes, 1 << 16).unwrap(),
            })
            .collect();
        let signatures: Vec<(String, [u8; 64])> = set
            .signatures
            .iter()
            .map(|s| (s.id.clone(), parse_hex_array(&s.signature).unwrap()))
            .collect();
        let shown = Shown {
            survivors: &set.survivors,
            signatures: &signatures,
            bundles: &bundles,
        };
        let secret = j.ledger.secret(&ctx).unwrap();
        let keys = Self::keys(set);
        let r = unmask_step(
            &j.ledger,
            &secret,
            &round,
            id,
            &self.identities(),
            &keys,
            &shown,
        )
        .unwrap();
        j.api.reveal(1, &wire_reveal(set.attempt, &r)).unwrap()
    }

    /// The exact sum of `ids`' values, unmasked.
    fn plain_sum(&self, ids: &[&str]) -> Vec<i64> {
        let mut acc = Accumulator::new(&self.key.public(), self.len);
        for id in ids {
            let v = &self.values[self.site(id)];
            acc.add(&encrypt_weighted(&self.key, v, 1.0).unwrap())
                .unwrap();
        }
        decrypt_integers(&self.key, &acc).unwrap()
    }

    /// Round 1's published sum, decrypted.
    fn published(&self) -> (Vec<i64>, u32) {
        let (bytes, n) = self.sites[0].api.download_sum(1).unwrap();
        let acc = Accumulator::from_bytes(&bytes, self.len).unwrap();
        (decrypt_integers(&self.key, &acc).unwrap(), n)
    }
}

fn wire_reveal(attempt: u32, r: &fedhe::privacy::secagg::Reveal) -> RevealUpload {
    let share = |s: &[u128; 2]| {
        let mut b = s[0].to_le_bytes().to_vec();
        b.extend_from_slice(&s[1].to_le_bytes());
        hex(&b)
    };
    let mut shares: Vec<WireShare> = r
        .self_shares
        .iter()
        .map(|(owner, s)| WireShare {
            owner: owner.clone(),
            dropped: None,
            share: share(s),
        })
        .collect();
    shares.extend(r.pair_shares.iter().map(|((owner, y), s)| WireShare {
        owner: owner.clone(),
        dropped: Some(y.clone()),
        share: share(s),
    }));
    RevealUpload { attempt, shares }
}

const IDS: [&str; 4] = ["a", "b", "c", "d"];

/// Four members announce; d never uploads. At the upload deadline a, b, c
/// survive; they sign and reveal (the aggregator restarted once in each of
/// the two phases when `restart`); the published sum is bit for bit the
/// survivors' exact sum, with 3 contributors.
fn closes_from_shares(restart: bool) {
    let key = Arc::new(SecretKey::generate(ParamSet::Standard64));
    let dir = tempfile::tempdir().unwrap();
    let plan = plan(8);
    let mut srv = start(&key, &plan, dir.path(), "127.0.0.1:0");
    let bind = srv.addr().to_string();
    let fed = Fed::new(&srv, &key, &IDS);
    for id in IDS {
        fed.announce(id, 1).unwrap();
    }
    let set = fed.key_set();
    assert_eq!(
        (set.phase, set.masked, set.threshold),
        (MaskPhase::Upload, true, 3)
    );
    for id in ["a", "b", "c"] {
        fed.upload(&set, id);
    }
    let set = fed.wait_phase(MaskPhase::Consistency);
    assert_eq!(set.survivors, ["a", "b", "c"]);
    assert!(
        set.signatures.is_empty(),
        "signatures shown before the unmask phase"
    );
    fed.sign(&set, "a");
    let bounce = |srv: EmbeddedServer| {
        if !restart {
            return srv;
        }
        srv.shutdown();
        start(&key, &plan, dir.path(), &bind)
    };
    srv = bounce(srv);
    assert_eq!(
        fed.key_set().phase,
        MaskPhase::Consistency,
        "reloaded phase"
    );
    fed.sign(&set, "b");
    fed.sign(&set, "c");
    let set = fed.key_set();
    assert_eq!(set.phase, MaskPhase::Unmask);
    assert_eq!(set.signatures.len(), 3);
    fed.reveal(&set, "a");
    srv = bounce(srv);
    let again = fed.key_set();
    assert_eq!((again.phase, again.survivors.len()), (MaskPhase::Unmask, 3));
    fed.reveal(&set, "b");
    assert_eq!(
        srv.status().round,
        1,
        "closed before every survivor revealed"
    );
    fed.reveal(&set, "c");
    assert_eq!(srv.status().round, 2, "the last reveal closes the round");
    let (sum, n) = fed.published();
    assert_eq!(n, 3);
    assert_eq!(sum, fed.plain_sum(&["a", "b", "c"]));
    assert_ne!(sum, fed.plain_sum(&IDS), "d is not in the sum");
    assert_eq!(srv.round_info(1).unwrap().submitted, ["a", "b", "c"]);
}

#[test]
fn a_dropout_before_upload_is_recovered_from_shares() {
    closes_from_shares(false);
}

#[test]
fn an_aggregator_restarted_in_the_consistency_and_unmask_phases_continues() {
    closes_from_shares(true);
}

/// What the aggregator holds of round 1, to compare before and after a
/// refused request.
fn held(srv: &EmbeddedServer) -> String {
    format!("{:?}", (srv.status(), srv.round_info(1).unwrap()))
}

#[test]
fn malformed_conflicting_or_missing_shares_are_refused_and_change_nothing() {
    let key = Arc::new(SecretKey::generate(ParamSet::Standard64));
    let dir = tempfile::tempdir().unwrap();
    let srv = start(&key, &plan(600), dir.path(), "127.0.0.1:0");
    let fed = Fed::new(&srv, &key, &IDS);
    for id in IDS {
        fed.announce(id, 1).unwrap();
    }
    let set = fed.key_set();
    let a = &fed.sites[0].api;
    let before = held(&srv);
    // An update without shares: 409, nothing counted.
    let e = a
        .upload_for(1, Some(1), &fed.update(&set, "a"))
        .unwrap_err();
    assert_eq!(e.status(), Some(409), "{e}");
    assert!(e.to_string().contains("send your shares first"), "{e}");
    assert_eq!(held(&srv), before);
    // Malformed: a short bundle, a bundle missing, a stranger's bundle.
    let good = Fed::shares_upload(&set, &fed.bundles(&set, "a"));
    let mut short = good.clone();
    short.bundles[1].bytes.truncate(64);
    let mut missing = good.clone();
    missing.bundles.pop();
    let mut stranger = good.clone();
    stranger.bundles[0].id = "zed".into();
    for (bad, says) in [
        (short, "the bundle for `b` has 32 bytes; 144 expected"),
        (missing, "none for [\"d\"]"),
        (stranger, "`zed`, who is not in the roster"),
    ] {
        let e = a.put_shares(1, &bad).unwrap_err();
        assert_eq!(e.status(), Some(422), "{e}");
        assert_eq!(e.code(), Some(&ErrorCode::Unprocessable), "{e}");
        assert!(e.to_string().contains(says), "{e}");
    }
    assert_eq!(held(&srv), before);
    // Stored; the same again is fine; other bytes conflict.
    a.put_shares(1, &good).unwrap();
    a.put_shares(1, &good).unwrap();
    let mut other = good.clone();
    other.bundles[2].bytes = "00".repeat(144);
    let e = a.put_shares(1, &other).unwrap_err();
    assert_eq!(e.status(), Some(409), "{e}");
    // Now the update is taken; once everyone uploaded, the consistency
    // phase refuses a signature that does not verify (4xx, nothing stored).
    a.upload_for(1, Some(1), &fed.update(&set, "a")).unwrap();
    for id in ["b", "c", "d"] {
        fed.upload(&set, id);
    }
    let set = fed.key_set();
    assert_eq!(set.phase, MaskPhase::Consistency);
    assert_eq!(set.survivors, IDS);
    let round = SecAggRound::new(fed.ctx(1), &set.roster, 3).unwrap();
    let stranger = fedhe::privacy::Identity::generate().unwrap();
    let forged = SurvivorSignature {
        attempt: 1,
        id: String::new(),
        signature: hex(&sign_survivors(&stranger, &round, "a", &set.survivors)),
    };
    let before = held(&srv);
    let e = a.sign_survivors(1, &forged).unwrap_err();
    assert_eq!(e.status(), Some(422), "{e}");
    assert!(e.to_string().contains("does not verify"), "{e}");
    assert_eq!(held(&srv), before);
    assert!(
        srv.round_info(1)
            .unwrap()
            .missing
            .contains(&"a".to_string())
    );
    // The shares are relayed from the consistency phase on (review
    // finding 4: survivors open their bundles before they sign).
    let given = a.shares_for(1).unwrap();
    assert_eq!(given.attempt, 1);
    assert_eq!(given.bundles.len(), IDS.len());
    fed.sign(&set, "a");
    assert!(
        !srv.round_info(1)
            .unwrap()
            .missing
            .contains(&"a".to_string())
    );
}

/// Review finding 6: a report that would leave the round fewer expected
/// members than min_clients is refused (409) and nothing is stored: the
/// attempt and its uploads stay, and the reporter may still report later.
#[test]
fn a_report_that_would_break_the_quorum_is_refused() {
    let key = Arc::new(SecretKey::generate(ParamSet::Standard64));
    let dir = tempfile::tempdir().unwrap();
    let mut p = plan(600);
    p.quorum.min_clients = 4;
    let srv = start(&key, &p, dir.path(), "127.0.0.1:0");
    let fed = Fed::new(&srv, &key, &IDS);
    for id in IDS {
        fed.announce(id, 1).unwrap();
    }
    let set = fed.key_set();
    fed.upload(&set, "a");
    let report = KeyReport {
        attempt: 1,
        member: "d".into(),
        reason: "low-order point".into(),
    };
    let a = &fed.sites[0].api;
    let e = a.report_key(1, &report).unwrap_err();
    assert_eq!(e.status(), Some(409), "{e}");
    assert!(e.to_string().contains("fewer than the 4"), "{e}");
    let after = fed.key_set();
    assert_eq!((after.attempt, after.phase), (1, MaskPhase::Upload));
    assert_eq!(srv.round_info(1).unwrap().submitted, ["a"]);
    // Not stored as a report: a's one report of the round is still free
    // (refused again for the same reason, not as a second report).
    let e = a.report_key(1, &report).unwrap_err();
    assert!(e.to_string().contains("fewer than the 4"), "{e}");
}

#[test]
fn a_report_restarts_the_attempt_without_the_reported_member_once_per_member() {
    let key = Arc::new(SecretKey::generate(ParamSet::Standard64));
    let dir = tempfile::tempdir().unwrap();
    let srv = start(&key, &plan(600), dir.path(), "127.0.0.1:0");
    let fed = Fed::new(&srv, &key, &IDS);
    for id in IDS {
        fed.announce(id, 1).unwrap();
    }
    let set = fed.key_set();
    // a uploads, then finds d's key unusable and reports it.
    fed.upload(&set, "a");
    let report = KeyReport {
        attempt: 1,
        member: "d".into(),
        reason: "low-order point".into(),
    };
    let a = &fed.sites[0].api;
    let next = a.report_key(1, &report).unwrap();
    assert_eq!((next.attempt, next.phase), (2, MaskPhase::Keys));
    assert_eq!(next.roster, ["a", "b", "c"], "d left out of the round");
    assert!(
        srv.round_info(1).unwrap().submitted.is_empty(),
        "a's upload discarded"
    );
    // d cannot come back in this round; a cannot report again.
    let e = fed.announce("d", 2).unwrap_err();
    assert_eq!(e.code(), Some(&ErrorCode::RosterFixed), "{e}");
    for id in ["a", "b", "c"] {
        fed.announce(id, 2).unwrap();
    }
    let set = fed.key_set();
    assert_eq!((set.phase, set.roster.len()), (MaskPhase::Upload, 3));
    let again = KeyReport {
        attempt: 2,
        member: "b".into(),
        reason: "again".into(),
    };
    let e = a.report_key(1, &again).unwrap_err();
    assert_eq!(e.status(), Some(409), "{e}");
    assert!(e.to_string().contains("one report per member"), "{e}");
    assert_eq!(fed.key_set().attempt, 2);
    // The round completes with a, b, c.
    for id in ["a", "b", "c"] {
        fed.upload(&set, id);
    }
    let set = fed.key_set();
    for id in ["a", "b", "c"] {
        fed.sign(&set, id);
    }
    let set = fed.key_set();
    for id in ["a", "b", "c"] {
        fed.reveal(&set, id);
    }
    let (sum, n) = fed.published();
    assert_eq!((sum, n), (fed.plain_sum(&["a", "b", "c"]), 3));
}
