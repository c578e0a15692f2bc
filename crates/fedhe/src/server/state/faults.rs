//! Fault injection: every request that changes the aggregator's state
//! commits once or not at all. Each case runs one request on a copy of a
//! prepared state folder: once without a fault (its writes counted; the
//! state reloaded from the folder equals the live state after it, as after
//! a process killed right after the commit), then once per write k with
//! write k failing (a process killed between writes k-1 and k, the commit
//! counting as the last write). After a failure the live state and the
//! state reloaded from the folder both equal the state before.
//!
//! Run them with `cargo test --release -p fedhe -- state::faults`.

use std::collections::BTreeMap;
use std::path::Path;

use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

use crate::crypto::{Audience, ParamSet, SecretKey, encrypt_weighted};
use crate::data::LabelMapping;
use crate::plan::Plan;
use crate::privacy::masks::{Identity, MaskContext};
use crate::privacy::secagg::{SecAggRound, sign_survivors};
use crate::privacy::shamir;
use crate::protocol::{
    AnnounceRequest, MaskPhase, RegisterRequest, RevealUpload, SharesUpload, SurvivorSignature,
    WireBundle, WireShare, hex, now_ms,
};

use super::super::error::ServerError;
use super::super::store::Store;
use super::{Aggregator, Policy, now_unix};

pub(super) const LEN: usize = 6;

type Op<'a> = dyn Fn(&mut Aggregator) -> Result<(), ServerError> + 'a;

impl Aggregator {
    /// Everything the aggregator knows, as text to compare.
    fn snapshot(&self) -> String {
        let digest = |b: &[u8]| hex(&Sha256::digest(b));
        let Some(session) = &self.session else {
            // Without a session nothing but the (empty) tables is durable.
            return format!("no session; clients {:?}", self.clients);
        };
        let sums: Vec<_> = self
            .closed
            .keys()
            .map(|r| {
                self.sum(*r)
                    .map(|(b, n)| (digest(&b), n))
                    .map_err(|e| e.to_string())
            })
            .collect();
        format!(
            "session {:?}\nclients {:?}\ntokens {:?}\nopen {:?}\nrunning sum {:?}\nclosed \
             {:?}\npublished {sums:?}",
            session.info(),
            self.clients,
            self.auth.sorted(),
            self.open,
            self.acc.as_ref().map(|a| digest(&a.to_bytes())),
            self.closed,
        ) + &format!("\ncomplete {:?}", self.complete)
    }
}

/// How the aggregator under test is opened.
pub(super) struct Fixture {
    pub(super) key: SecretKey,
    /// Open with the session's key (else the folder's, if any).
    pub(super) key_at_open: bool,
    pub(super) max_len: Option<usize>,
    pub(super) plan: Option<Plan>,
    pub(super) auto: bool,
    /// The aggregator session id of every folder (seeded before opening).
    pub(super) session: String,
}

impl Fixture {
    pub(super) fn new(key: SecretKey) -> Fixture {
        Fixture {
            key,
            key_at_open: true,
            max_len: Some(LEN),
            plan: None,
            auto: false,
            session: "faults-session".into(),
        }
    }

    pub(super) fn open(&self, dir: &Path) -> Aggregator {
        let policy = Policy {
            min_clients: None,
            auto_aggregate: self.auto,
            manual_close: false,
            max_len_limit: 1 << 20,
            max_registered: 100,
            allow_single_contributor: false,
        };
        let key = self.key_at_open.then(|| self.key.public());
        let mut store = Store::open(dir).unwrap();
        if store.get_meta(super::SESSION_ID_KEY).unwrap().is_none() {
            store
                .write(|tx| tx.put_meta(super::SESSION_ID_KEY, self.session.as_bytes()))
                .unwrap();
        }
        let mut agg = Aggregator::open(store, policy, "operator", key, self.max_len).unwrap();
        if let Some(plan) = &self.plan {
            agg.load_plan(plan.clone()).unwrap();
        }
        agg
    }

    fn fingerprint(&self) -> String {
        self.plan.as_ref().unwrap().fingerprint().to_string()
    }

    pub(super) fn register(
        &self,
        id: &str,
        identity: Option<&Identity>,
        max_len: Option<usize>,
    ) -> RegisterRequest {
        let fresh;
        let identity = match identity {
            Some(i) => i,
            None => {
                fresh = Identity::generate().unwrap();
                &fresh
            }
        };
        self.register_at(id, identity, max_len, now_ms())
    }

    fn register_at(
        &self,
        id: &str,
        identity: &Identity,
        max_len: Option<usize>,
        at: u64,
    ) -> RegisterRequest {
        let fp = self.plan.as_ref().map(|p| p.fingerprint().to_string());
        let aud = Audience {
            session: &self.session,
            plan: fp.as_deref(),
        };
        RegisterRequest::signed_at(
            &self.key,
            &aud,
            id,
            format!("Site {id}"),
            max_len,
            identity,
            at,
        )
    }

    /// `id` registered again with a newer proof.
    fn register_again(&self, id: &str, identity: &Identity) -> RegisterRequest {
        self.register_at(id, identity, None, now_ms() + 1)
    }

    pub(super) fn announce(&self, identity: &Identity, id: &str) -> AnnounceRequest {
        let fp = self.fingerprint();
        let ctx = MaskContext {
            plan: &fp,
            round: 1,
            attempt: 1,
        };
        let secret = crate::privacy::AttemptSecret::generate().unwrap();
        let k = identity.announce(&ctx, id, &secret);
        AnnounceRequest {
            attempt: 1,
            public: hex(&k.public),
            signature: hex(&k.signature),
        }
    }

    /// An update of `len` values (bound to round 1, attempt 1 with a plan).
    pub(super) fn update(&self, len: usize) -> Vec<u8> {
        let u = encrypt_weighted(&self.key, &vec![0.25; len], 2.0).unwrap();
        match self.plan {
            Some(_) => u.bound_to(1, 1).to_bytes(),
            None => u.to_bytes(),
        }
    }
}

/// Bundles of the right form for the open attempt's fixed roster (the
/// aggregator cannot open them, so it cannot tell these from real ones).
pub(super) fn shares_of(agg: &Aggregator, id: &str) -> SharesUpload {
    let roster = agg.open.mask.roster_vec();
    let len = 32 * roster.len() + 16;
    let byte = id.bytes().next().unwrap_or(0);
    SharesUpload {
        attempt: agg.open.mask.attempt,
        bundles: roster
            .iter()
            .map(|to| WireBundle {
                id: to.clone(),
                bytes: hex(&vec![byte; len]),
            })
            .collect(),
    }
}

/// `id`'s shares (in a double-masked attempt), then its update.
pub(super) fn shares_and_submit(
    agg: &mut Aggregator,
    id: &str,
    bytes: &[u8],
) -> Result<(), ServerError> {
    if agg.open.mask.double() {
        let req = shares_of(agg, id);
        agg.put_shares(id, agg.open.number, req)?;
    }
    submit(agg, id, bytes)
}

pub(super) fn submit(agg: &mut Aggregator, id: &str, bytes: &[u8]) -> Result<(), ServerError> {
    let attempt = agg.plan().map(|_| 1);
    let update = agg.decode_update(bytes)?;
    agg.submit(id, 1, attempt, &update, bytes.len() as u64)
        .map(drop)
}

/// `what` as the op's own check (an error, not a panic: a failed write
/// makes it false).
pub(super) fn expect(ok: bool, what: &str) -> Result<(), ServerError> {
    match ok {
        true => Ok(()),
        false => Err(ServerError::Internal(format!("expected: {what}"))),
    }
}

pub(super) fn copy_dir(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.path().join(e.file_name())).unwrap();
    }
    to
}

/// A state folder prepared by `setup`.
pub(super) fn prepare(fx: &Fixture, setup: impl FnOnce(&mut Aggregator)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut agg = fx.open(dir.path());
    setup(&mut agg);
    drop(agg);
    dir
}

/// Runs `op` on copies of `base`, without a fault and then failing each of
/// its writes in turn. `reports` says that `op` answers a failed write with
/// an error (the deadline tick logs it instead). Returns the writes.
pub(super) fn all_or_nothing(
    name: &str,
    fx: &Fixture,
    base: &Path,
    op: &Op<'_>,
    reports: bool,
) -> u64 {
    let dir = copy_dir(base);
    let mut agg = fx.open(dir.path());
    let before = agg.snapshot();
    agg.store.fail_at_write(None);
    op(&mut agg).unwrap_or_else(|e| panic!("{name}: {e}"));
    let writes = agg.store.writes();
    let after = agg.snapshot();
    assert_ne!(before, after, "{name} changed nothing");
    drop(agg);
    assert_eq!(
        fx.open(dir.path()).snapshot(),
        after,
        "{name}: reloaded after"
    );
    for k in 0..writes {
        let dir = copy_dir(base);
        let mut agg = fx.open(dir.path());
        assert_eq!(agg.snapshot(), before, "{name}: reloaded base");
        agg.store.fail_at_write(Some(k));
        let result = op(&mut agg);
        assert!(agg.store.writes() > k, "{name}: write {k} never came");
        if reports {
            assert!(
                result.is_err(),
                "{name}: write {k} failed, yet it succeeded"
            );
        }
        assert_eq!(
            agg.snapshot(),
            before,
            "{name}: memory after write {k} failed"
        );
        drop(agg);
        let reloaded = fx.open(dir.path()).snapshot();
        assert_eq!(reloaded, before, "{name}: reloaded after write {k} failed");
    }
    writes
}

#[test]
fn session_plan_and_registration_commit_once() {
    let mut fx = Fixture::new(SecretKey::generate(ParamSet::Standard64));
    // Loading the key into a new folder: key, max_len, round 1.
    fx.key_at_open = false;
    let base = prepare(&fx, |_| {});
    let key = fx.key.public();
    let op = |agg: &mut Aggregator| agg.load_session(key.clone(), Some(LEN)).map(drop);
    assert_eq!(
        all_or_nothing("load_session", &fx, base.path(), &op, true),
        4
    );

    // A plan that fixes max_len: max_len and the plan together.
    fx.key_at_open = true;
    fx.max_len = None;
    let base = prepare(&fx, |_| {});
    let plan = masked_plan();
    let op = |agg: &mut Aggregator| agg.load_plan(plan.clone()).map(drop);
    assert_eq!(all_or_nothing("load_plan", &fx, base.path(), &op, true), 4);

    // A new client whose registration fixes max_len: the client, its
    // proof's issue time, its identity and max_len.
    let req = fx.register("a", None, Some(LEN));
    let op = |agg: &mut Aggregator| agg.register(req.clone()).map(drop);
    assert_eq!(all_or_nothing("register", &fx, base.path(), &op, true), 6);
}

#[test]
fn submit_and_close_commit_once() {
    let mut fx = Fixture::new(SecretKey::generate(ParamSet::Standard64));
    let (ua, ub) = (fx.update(LEN), fx.update(LEN));
    fn registered(fx: &Fixture, agg: &mut Aggregator) {
        for id in ["a", "b"] {
            agg.register(fx.register(id, None, None)).unwrap();
        }
    }
    // An update: the sum file's slot, then the submission, the round, the
    // sum's generation and the client's last round.
    let base = prepare(&fx, |agg| registered(&fx, agg));
    let op = |agg: &mut Aggregator| submit(agg, "a", &ua);
    assert_eq!(all_or_nothing("submit", &fx, base.path(), &op, true), 6);

    // The operator's close: next round's mask state, the close, round 2.
    let base = prepare(&fx, |agg| {
        registered(&fx, agg);
        submit(agg, "a", &ua).unwrap();
        submit(agg, "b", &ub).unwrap();
    });
    let op = |agg: &mut Aggregator| agg.close(1).map(drop);
    assert_eq!(all_or_nothing("close", &fx, base.path(), &op, true), 4);

    // The last update of a round that closes by itself: both in one.
    fx.auto = true;
    let base = prepare(&fx, |agg| {
        registered(&fx, agg);
        submit(agg, "a", &ua).unwrap();
    });
    let op = |agg: &mut Aggregator| {
        submit(agg, "b", &ub)?;
        expect(agg.open_round() == 2, "the round closed")
    };
    assert_eq!(
        all_or_nothing("submit + close", &fx, base.path(), &op, true),
        9
    );
}

#[test]
fn a_sum_that_cannot_be_read_back_stops_updates_until_a_restart() {
    let fx = Fixture::new(SecretKey::generate(ParamSet::Standard64));
    let (ua, ub) = (fx.update(LEN), fx.update(LEN));
    let base = prepare(&fx, |agg| {
        for id in ["a", "b"] {
            agg.register(fx.register(id, None, None)).unwrap();
        }
        submit(agg, "a", &ua).unwrap();
    });
    let dir = copy_dir(base.path());
    let mut agg = fx.open(dir.path());
    let before = agg.snapshot();
    // b's update is added in place, its commit fails, and reading the sum
    // back fails too: the live sum may hold b, the store does not.
    agg.store.fail_at_write(Some(2));
    agg.store.fail_sum_reads(true);
    let failed = submit(&mut agg, "b", &ub).unwrap_err();
    assert!(failed.to_string().contains("failed on purpose"), "{failed}");
    agg.store.fail_sum_reads(false);
    for refused in [
        submit(&mut agg, "b", &ub).unwrap_err(),
        agg.close(1).map(drop).unwrap_err(),
    ] {
        assert!(
            refused.to_string().contains("restart the aggregator"),
            "{refused}"
        );
    }
    drop(agg);
    // A restart reads the sum the store holds, without b, and takes b again.
    let mut agg = fx.open(dir.path());
    assert_eq!(agg.snapshot(), before);
    submit(&mut agg, "b", &ub).unwrap();
    assert_eq!(agg.close(1).unwrap().0, 2);
}

/// A plan with pairwise masks among at least three sites.
pub(super) fn masked_plan() -> Plan {
    let label = LabelMapping {
        column: "y".into(),
        positive: "1".into(),
        negative: "0".into(),
    };
    let mut plan = Plan::binary(label, vec!["x1".into(), "x2".into()], Vec::new());
    plan.quorum.min_clients = 3;
    plan.privacy.masks = true;
    plan
}

/// Four sites of a masked federation, a, b, c registered (d is not).
struct Masked {
    fx: Fixture,
    ids: [&'static str; 4],
    who: Vec<Identity>,
    /// Each site's round-1 update.
    ups: Vec<Vec<u8>>,
}

impl Masked {
    fn new() -> Masked {
        let mut fx = Fixture::new(SecretKey::generate(ParamSet::Standard64));
        fx.max_len = None;
        fx.plan = Some(masked_plan());
        let dir = tempfile::tempdir().unwrap();
        let len = fx.open(dir.path()).plan_len(1).unwrap();
        let ids = ["a", "b", "c", "d"];
        let who = ids.iter().map(|_| Identity::generate().unwrap()).collect();
        let ups = ids.iter().map(|_| fx.update(len)).collect();
        Masked { fx, ids, who, ups }
    }

    /// A state folder where a, b, c registered, the first `announced`
    /// announced their keys and the first `uploaded` uploaded.
    fn prepare(&self, announced: usize, uploaded: usize) -> tempfile::TempDir {
        self.prepare_n(3, announced, uploaded, |_| {})
    }

    /// [`prepare`](Self::prepare) with the first `registered` registered,
    /// and `then` after the uploads.
    fn prepare_n(
        &self,
        registered: usize,
        announced: usize,
        uploaded: usize,
        then: impl FnOnce(&mut Aggregator),
    ) -> tempfile::TempDir {
        prepare(&self.fx, |agg| {
            for (id, w) in self.ids.iter().zip(&self.who).take(registered) {
                agg.register(self.fx.register(id, Some(w), None)).unwrap();
            }
            for (id, w) in self.ids.iter().zip(&self.who).take(announced) {
                agg.announce(id, 1, self.fx.announce(w, id)).unwrap();
            }
            for (id, bytes) in self.ids.iter().zip(&self.ups).take(uploaded) {
                shares_and_submit(agg, id, bytes).unwrap();
            }
            then(agg);
        })
    }

    /// `id`'s signature of the survivor set it is shown.
    fn signature(&self, agg: &Aggregator, id: &str) -> SurvivorSignature {
        let i = self.ids.iter().position(|x| *x == id).unwrap();
        let fp = self.fx.fingerprint();
        let roster = agg.open.mask.roster_vec();
        let survivors = agg.open.mask.survivors.clone().unwrap();
        let ctx = MaskContext {
            plan: &fp,
            round: 1,
            attempt: agg.open.mask.attempt,
        };
        let round = SecAggRound::new(ctx, &roster, 3).unwrap();
        SurvivorSignature {
            attempt: agg.open.mask.attempt,
            id: String::new(),
            signature: hex(&sign_survivors(&self.who[i], &round, id, &survivors)),
        }
    }
}

/// Consistent reveals of the open unmask phase, by survivor: Shamir shares
/// of made-up seeds (the aggregator checks the reveals' form and rebuilds
/// the seeds; that they do not cancel these test updates' masks is the
/// sites' sum tag's business).
fn reveals(agg: &Aggregator) -> BTreeMap<String, RevealUpload> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let roster = agg.open.mask.roster_vec();
    let survivors = agg.open.mask.survivors.clone().unwrap();
    let t = crate::privacy::secagg::threshold(roster.len(), 3);
    let points: Vec<u64> = (1..=roster.len() as u64).collect();
    let dropped: Vec<&String> = roster.iter().filter(|m| !survivors.contains(m)).collect();
    let mut split = |owner: &str, y: Option<&String>| {
        let shares = shamir::split(rng.random(), t, &points, &mut rng);
        (owner.to_string(), y.cloned(), shares)
    };
    let mut secrets = Vec::new();
    for w in &survivors {
        secrets.push(split(w, None));
        for y in &dropped {
            secrets.push(split(w, Some(y)));
        }
    }
    let word = |s: &[u128; 2]| {
        let mut b = s[0].to_le_bytes().to_vec();
        b.extend_from_slice(&s[1].to_le_bytes());
        hex(&b)
    };
    survivors
        .iter()
        .map(|u| {
            let k = roster.iter().position(|m| m == u).unwrap();
            let shares = secrets
                .iter()
                .map(|(owner, dropped, sh)| WireShare {
                    owner: owner.clone(),
                    dropped: dropped.clone(),
                    share: word(&sh[k]),
                })
                .collect();
            let attempt = agg.open.mask.attempt;
            (u.clone(), RevealUpload { attempt, shares })
        })
        .collect()
}

#[test]
fn masked_key_phase_commits_once() {
    let m = Masked::new();
    let fx = &m.fx;
    // A registration again that drops the key announced with the old one.
    let base = m.prepare(1, 0);
    let req = fx.register_again("a", &m.who[0]);
    let op = |agg: &mut Aggregator| {
        agg.register(req.clone())?;
        expect(agg.open.mask.keys.is_empty(), "a's key was dropped")
    };
    assert_eq!(
        all_or_nothing("register again", fx, base.path(), &op, true),
        5
    );

    // The last key of the key phase: the key and the fixed roster.
    let base = m.prepare(2, 0);
    let req = fx.announce(&m.who[2], "c");
    let op = |agg: &mut Aggregator| {
        agg.announce("c", 1, req.clone())?;
        expect(agg.open.mask.frozen.is_some(), "the roster is fixed")
    };
    assert_eq!(all_or_nothing("announce", fx, base.path(), &op, true), 3);

    // After the roster is fixed: a new client (expected next round).
    let base = m.prepare(3, 0);
    let req = fx.register("d", Some(&m.who[3]), None);
    let op = |agg: &mut Aggregator| agg.register(req.clone()).map(drop);
    assert_eq!(
        all_or_nothing("register late", fx, base.path(), &op, true),
        5
    );
}

#[test]
fn masked_uploads_and_restarts_commit_once() {
    let m = Masked::new();
    let fx = &m.fx;
    // A masked update, and the last one, which closes the round.
    // Double masking: the shares (one row per bundle), then the update.
    let base = m.prepare(3, 0);
    let op = |agg: &mut Aggregator| {
        let req = shares_of(agg, "a");
        agg.put_shares("a", 1, req).map(drop)
    };
    assert_eq!(all_or_nothing("shares", fx, base.path(), &op, true), 4);
    let base = m.prepare_n(3, 3, 0, |agg| {
        let req = shares_of(agg, "a");
        agg.put_shares("a", 1, req).unwrap();
    });
    let op = |agg: &mut Aggregator| submit(agg, "a", &m.ups[0]);
    assert_eq!(
        all_or_nothing("masked submit", fx, base.path(), &op, true),
        6
    );
    // The last update moves the attempt to its consistency phase.
    let base = m.prepare_n(3, 3, 2, |agg| {
        let req = shares_of(agg, "c");
        agg.put_shares("c", 1, req).unwrap();
    });
    let op = |agg: &mut Aggregator| {
        submit(agg, "c", &m.ups[2])?;
        expect(
            agg.open.mask.phase() == MaskPhase::Consistency,
            "the survivors sign",
        )
    };
    let writes = all_or_nothing("masked submit + consistency", fx, base.path(), &op, true);
    assert_eq!(writes, 7);

    // The deadline passes without c's update: the attempt restarts.
    let op = |agg: &mut Aggregator| {
        agg.tick_at(now_unix() + 100_000)?;
        expect(agg.open.mask.attempt == 2, "the attempt restarted")
    };
    assert_eq!(all_or_nothing("restart", fx, base.path(), &op, false), 5);
}

#[test]
fn signatures_reveals_and_the_unmask_close_commit_once() {
    let m = Masked::new();
    let fx = &m.fx;
    // A survivor's signature; the last one moves the attempt to unmask.
    let base = m.prepare(3, 3);
    let op = |agg: &mut Aggregator| {
        let req = m.signature(agg, "a");
        agg.sign_survivors("a", 1, req).map(drop)
    };
    assert_eq!(all_or_nothing("signature", fx, base.path(), &op, true), 2);
    let sign = |agg: &mut Aggregator, ids: &[&str]| {
        for id in ids {
            let req = m.signature(agg, id);
            agg.sign_survivors(id, 1, req).unwrap();
        }
    };
    let base = m.prepare_n(3, 3, 3, |agg| sign(agg, &["a", "b"]));
    let op = |agg: &mut Aggregator| {
        let req = m.signature(agg, "c");
        agg.sign_survivors("c", 1, req)?;
        expect(agg.open.mask.phase() == MaskPhase::Unmask, "unmask")
    };
    assert_eq!(
        all_or_nothing("last signature", fx, base.path(), &op, true),
        3
    );

    // A reveal; the last one unmasks and closes the round.
    let base = m.prepare_n(3, 3, 3, |agg| sign(agg, &["a", "b", "c"]));
    let op = |agg: &mut Aggregator| {
        let req = reveals(agg).remove("a").unwrap();
        agg.reveal("a", 1, req).map(drop)
    };
    assert_eq!(all_or_nothing("reveal", fx, base.path(), &op, true), 2);
    let reveal = |agg: &mut Aggregator, ids: &[&str]| {
        let mut all = reveals(agg);
        for id in ids {
            agg.reveal(id, 1, all.remove(*id).unwrap()).unwrap();
        }
    };
    let base = m.prepare_n(3, 3, 3, |agg| {
        sign(agg, &["a", "b", "c"]);
        reveal(agg, &["a", "b"]);
    });
    let op = |agg: &mut Aggregator| {
        let req = reveals(agg).remove("c").unwrap();
        agg.reveal("c", 1, req)?;
        expect(agg.open_round() == 2, "the round closed")?;
        // Every member revealed: round 2 carries the three keys over, as
        // its own rows, in the close's transaction.
        expect(agg.open.mask.keys_from.is_some(), "the keys carried over")
    };
    assert_eq!(
        all_or_nothing("last reveal", fx, base.path(), &op, true),
        5 + 3
    );
    // Too few reveals at the deadline: the round stays open, stuck.
    let op = |agg: &mut Aggregator| {
        agg.tick_at(now_unix() + 100_000)?;
        expect(agg.open.mask.stuck.is_some(), "stuck")
    };
    assert_eq!(all_or_nothing("stuck", fx, base.path(), &op, false), 2);

    // Four members, three reveals at the deadline: the tick unmasks and
    // closes.
    let base = m.prepare_n(4, 4, 4, |agg| {
        sign(agg, &["a", "b", "c", "d"]);
        reveal(agg, &["a", "b", "c"]);
    });
    let op = |agg: &mut Aggregator| {
        agg.tick_at(now_unix() + 100_000)?;
        expect(agg.open_round() == 2, "the round closed")
    };
    assert_eq!(
        all_or_nothing("unmask close", fx, base.path(), &op, false),
        4
    );
}

#[test]
fn a_key_report_restarts_the_attempt_once() {
    let m = Masked::new();
    let fx = &m.fx;
    let base = m.prepare_n(4, 4, 1, |_| {});
    let report = crate::protocol::KeyReport {
        attempt: 1,
        member: "d".into(),
        reason: "a low-order point".into(),
    };
    let op = |agg: &mut Aggregator| {
        agg.report_key("a", 1, report.clone())?;
        expect(
            agg.open.mask.attempt == 2 && agg.open.mask.excluded.contains("d"),
            "attempt 2 without d",
        )
    };
    // The report, and the restart (4 writes).
    assert_eq!(all_or_nothing("report", fx, base.path(), &op, true), 6);
}

/// An update of round `round` (attempt 1) of the plan's length.
fn round_update(fx: &Fixture, agg: &Aggregator, round: u64) -> Vec<u8> {
    let len = agg.plan_len(round).unwrap();
    encrypt_weighted(&fx.key, &vec![0.25; len], 2.0)
        .unwrap()
        .bound_to(round, 1)
        .to_bytes()
}

pub(super) fn submit_to(
    agg: &mut Aggregator,
    id: &str,
    round: u64,
    bytes: &[u8],
) -> Result<(), ServerError> {
    let update = agg.decode_update(bytes)?;
    agg.submit(id, round, Some(1), &update, bytes.len() as u64)
        .map(drop)
}

#[test]
fn the_last_close_completes_the_federation_once() {
    let mut fx = Fixture::new(SecretKey::generate(ParamSet::Standard64));
    fx.max_len = None;
    let mut plan = masked_plan();
    plan.privacy.masks = false;
    plan.quorum.min_clients = 2;
    plan.training.rounds = 1;
    fx.plan = Some(plan);
    // Round 1 (statistics) closed by a's and b's updates; round 2, the
    // plan's last, has a's.
    let mut last = Vec::new();
    let base = prepare(&fx, |agg| {
        for id in ["a", "b"] {
            agg.register(fx.register(id, None, None)).unwrap();
        }
        for id in ["a", "b"] {
            submit_to(agg, id, 1, &round_update(&fx, agg, 1)).unwrap();
        }
        assert_eq!(agg.open_round(), 2);
        submit_to(agg, "a", 2, &round_update(&fx, agg, 2)).unwrap();
        last = round_update(&fx, agg, 2);
    });
    // b's update closes round 2: the submission, the close and the
    // completion in one transaction, and no round 3.
    let op = |agg: &mut Aggregator| {
        submit_to(agg, "b", 2, &last)?;
        let status = agg.status();
        expect(status.complete.is_some(), "the federation is complete")?;
        expect(status.round == 2, "the status names the last round")?;
        expect(agg.store.rounds()?.len() == 2, "no round 3 is stored")
    };
    let writes = all_or_nothing("submit + complete", &fx, base.path(), &op, true);
    assert_eq!(writes, 8);

    // Reopened, the federation is still complete and takes nobody new.
    let dir = copy_dir(base.path());
    let mut agg = fx.open(dir.path());
    op(&mut agg).unwrap();
    drop(agg);
    let mut agg = fx.open(dir.path());
    let c = agg.status().complete.unwrap();
    assert_eq!((c.training_rounds, c.last_round, c.sites), (1, 2, 2));
    assert_eq!(c.describe(), "1 of 1 rounds, 2 sites");
    let late = agg.register(fx.register("c", None, None)).unwrap_err();
    assert_eq!(late.code(), crate::protocol::ErrorCode::FederationComplete);
    assert_eq!(late.status().as_u16(), 410);
    assert!(agg.round_info(3).is_err());
    assert!(!agg.tick_at(now_unix() + 100_000).unwrap());
    assert_eq!(agg.status().round, 2);
}

#[test]
fn the_session_id_is_made_once_in_one_write() {
    let key = SecretKey::generate(ParamSet::Standard64);
    let policy = || Policy {
        min_clients: None,
        auto_aggregate: false,
        manual_close: false,
        max_len_limit: 1 << 20,
        max_registered: 100,
        allow_single_contributor: false,
    };
    let dir = tempfile::tempdir().unwrap();
    // The first open's one write fails: nothing opens, nothing is stored.
    let store = Store::open(dir.path()).unwrap();
    store.fail_at_write(Some(1));
    let failed = Aggregator::open(store, policy(), "op", Some(key.public()), None);
    assert!(failed.is_err());
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.get_meta(super::SESSION_ID_KEY).unwrap(), None);
    // Then it is made, and kept by every later open.
    let agg = Aggregator::open(store, policy(), "op", Some(key.public()), None).unwrap();
    let id = agg.session_id().to_string();
    assert_eq!(id.len(), 32);
    drop(agg);
    let again = Aggregator::open(Store::open(dir.path()).unwrap(), policy(), "op", None, None);
    assert_eq!(again.unwrap().session_id(), id);
    // Another folder, another session.
    let other = tempfile::tempdir().unwrap();
    let agg = Aggregator::open(
        Store::open(other.path()).unwrap(),
        policy(),
        "op",
        None,
        None,
    );
    assert_ne!(agg.unwrap().session_id(), id);
}

#[test]
fn an_identity_reset_commits_once() {
    let m = Masked::new();
    let fx = &m.fx;
    // a announced its key: the reset revokes its token, forgets its
    // identity and drops the key, in one transaction.
    let base = m.prepare(1, 0);
    let op = |agg: &mut Aggregator| {
        agg.reset_identity("a")?;
        expect(agg.open.mask.keys.is_empty(), "a's key was dropped")?;
        expect(agg.clients["a"].identity.is_none(), "a's identity is gone")
    };
    assert_eq!(
        all_or_nothing("reset identity", fx, base.path(), &op, true),
        5
    );
}
