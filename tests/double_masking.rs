//! Double masking in a running federation (issue 23 Part 2; issue 21's bad
//! partner key): real keys, a real aggregator on a loopback socket, real
//! `HeExchange` clients on threads, and relays between them that play a
//! lying aggregator.
//!
//! - A site killed after its upload, before it signs: the round is
//!   unmasked from the others' shares; the sum is exact.
//! - A site killed in the consistency phase and restarted finishes.
//! - A relayed bad key for one partner: the client reports it and the
//!   round goes on without that member.
//! - The dropout attack (issue 23 Part 2) through the real client: a site
//!   declared dropped after it uploaded never has its self share revealed
//!   by an honest site, and is never uploaded again in the round.

use std::collections::HashMap;
use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fedhe::client::HeExchange;
use fedhe::client::masking::Masking;
use fedhe::crypto::{Accumulator, ParamSet, SecretKey, decrypt_mean, encrypt_weighted};
use fedhe::plan::{Plan, ProposeOptions, Quorum, Training};
use fedhe::protocol::{KeySet, MaskPhase, RevealUpload, SharesFor, SharesUpload, WireBundle};
use fedhe::session::Joined;
use rand::{Rng, SeedableRng};

use crate::common::{connect, sample, serve_plan};
use crate::sum_tags::{Message, read_message, round_route, set_header, write_message};

const IDS: [&str; 4] = ["a", "b", "c", "d"];

/// Masks on, a quorum of 3, the roster a, b, c, d named, `deadline`
/// seconds per phase.
fn plan(deadline: u64) -> Plan {
    let (mut plan, _) = fedhe::plan::propose(
        &sample("train.csv"),
        &ProposeOptions {
            training: Training {
                rounds: 2,
                ..Training::default()
            },
            quorum: Quorum {
                min_clients: 3,
                roster: Vec::new(),
                round_deadline_secs: deadline,
                allow_single_contributor: false,
            },
            ..ProposeOptions::default()
        },
    )
    .unwrap();
    assert!(plan.privacy.masks);
    plan.quorum.roster = IDS.map(String::from).to_vec();
    plan
}

/// `j`'s encrypted exchange with double masks (a round timeout of `secs`).
fn masked(j: &Joined, secs: u64) -> HeExchange {
    let mut ex = HeExchange::new(j.api.clone(), j.key.clone(), Duration::from_secs(secs));
    ex.masking = Some(Masking {
        id: j.id.clone(),
        identity: j.identity.clone(),
        plan: j.plan_fingerprint.clone(),
        min_members: 3,
        named: Vec::new(),
        ledger: j.ledger.clone(),
        pins: j.pins.clone(),
    });
    ex
}

/// `masked`, with one try per request: a site whose relay went dead
/// (killed) fails at once.
fn once(j: &Joined) -> HeExchange {
    let mut ex = masked(j, 60);
    ex.api = ex.api.clone().with_retry(fedhe::client::RetryPolicy {
        attempts: 1,
        ..fedhe::client::RetryPolicy::default()
    });
    ex
}

/// Four sites joined through their own relays (`play` by site).
fn relayed(
    srv: &fedhe::server::EmbeddedServer,
    key: &Arc<SecretKey>,
    seen: &Arc<Mutex<Seen>>,
    play: impl Fn(&str) -> Play,
) -> Vec<Joined> {
    IDS.iter()
        .map(|id| join_at(&relay(srv.url(), id, play(id), seen.clone()), key, id))
        .collect()
}

/// The statistics round's values of four sites (random, small).
fn values(plan: &Plan) -> Vec<(Vec<f64>, f64)> {
    let len = plan.statistics_values() * fedhe::client::STAT_LIMBS;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(23);
    (0..IDS.len())
        .map(|_| {
            let v = (0..len).map(|_| rng.random_range(-2.0..2.0)).collect();
            (v, f64::from(rng.random_range(1..50u32)))
        })
        .collect()
}

/// The weighted mean of `ups` encrypted without masks, decrypted here.
fn plain_mean(key: &SecretKey, ups: &[&(Vec<f64>, f64)]) -> fedhe::crypto::WeightedMean {
    let mut plain = Accumulator::new(&key.public(), ups[0].0.len());
    for (v, w) in ups {
        plain.add(&encrypt_weighted(key, v, *w).unwrap()).unwrap();
    }
    decrypt_mean(key, &plain).unwrap()
}

/// Reproduction: site d is killed after its shares and update are in,
/// before it signs the survivor set. The aggregator cannot wait for d's
/// reveal; it recovers d's self mask from a, b and c's shares and the sum
/// is every uploaded update's, bit for bit (before double masking, a site
/// lost after its upload made the round restart and re-upload the same
/// values under a smaller roster).
#[test]
fn a_site_killed_after_its_upload_is_unmasked_from_shares_and_the_sum_is_exact() {
    let key = Arc::new(SecretKey::generate(ParamSet::Standard64));
    let plan = plan(2);
    let srv = serve_plan(&key, plan.clone());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let sites = relayed(&srv, &key, &seen, |_| Play::Honest);
    // d's relay goes dead once d's update is in.
    seen.lock().unwrap().kill_after.insert("d".into(), "update");
    let ups = values(&plan);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = sites
            .iter()
            .zip(&ups)
            .map(|(j, (v, w))| {
                let mut ex = once(j);
                s.spawn(move || ex.exchange(1, v, *w, &AtomicBool::new(false)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(results[3].is_err(), "d was killed");
    let s = seen.lock().unwrap();
    assert!(!s.signatures.contains_key("d"), "d never signed");
    assert!(!s.reveals.iter().any(|(id, _)| id == "d"));
    let want = plain_mean(&key, &ups.iter().collect::<Vec<_>>());
    for m in &results[..3] {
        let m = m.as_ref().unwrap_or_else(|e| panic!("{e}"));
        assert!(m.masked);
        assert_eq!(m.counted, IDS.to_vec(), "d uploaded: it is a survivor");
        assert_eq!(m.values, want.values, "bit for bit");
        assert_eq!(m.total_weight, want.total_weight);
    }
    // No restart: every site's values went up once.
    for id in IDS {
        assert_eq!(s.updates.get(id).copied(), Some(1), "{id}'s uploads");
    }
    drop(s);
    // d did not survive: round 2 agrees fresh keys (none carried over).
    let next = sites[0].api.key_set(2, None).unwrap();
    assert_eq!((next.phase, next.keys_from), (MaskPhase::Keys, None));
}

/// Issue 24: one key agreement per roster. Every member survived round 1,
/// so round 2 opens with its roster and keys (no key phase, no wait for
/// announcements): no site announces again, and round 2's double-masked
/// sum is still exact, bit for bit.
#[test]
fn a_roster_whose_members_all_survive_keeps_its_mask_keys_for_the_next_round() {
    let key = Arc::new(SecretKey::generate(ParamSet::Standard64));
    let plan = plan(30);
    let srv = serve_plan(&key, plan.clone());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let sites = relayed(&srv, &key, &seen, |_| Play::Honest);
    let stats = values(&plan);
    let len = plan.param_count() + 1;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(24);
    let train: Vec<(Vec<f64>, f64)> = (0..IDS.len())
        .map(|_| {
            let v = (0..len).map(|_| rng.random_range(-1.0..1.0)).collect();
            (v, f64::from(rng.random_range(1..50u32)))
        })
        .collect();
    let run = |round: u64, ups: &[(Vec<f64>, f64)]| -> Vec<fedhe::client::RoundMean> {
        std::thread::scope(|s| {
            let handles: Vec<_> = sites
                .iter()
                .zip(ups)
                .map(|(j, (v, w))| {
                    let mut ex = masked(j, 60);
                    s.spawn(move || ex.exchange(round, v, *w, &AtomicBool::new(false)))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().unwrap_or_else(|e| panic!("{e}")))
                .collect()
        })
    };
    run(1, &stats);
    let carried = sites[0].api.key_set(2, None).unwrap();
    assert_eq!(carried.phase, MaskPhase::Upload, "{carried:?}");
    assert_eq!(
        carried.keys_from,
        Some(fedhe::protocol::KeyOrigin {
            round: 1,
            attempt: 1
        })
    );
    assert_eq!(carried.roster, IDS.to_vec());
    assert_eq!(carried.keys.len(), IDS.len());
    let means = run(2, &train);
    let want = plain_mean(&key, &train.iter().collect::<Vec<_>>());
    for m in &means {
        assert!(m.masked && m.contributed);
        assert_eq!(m.counted, IDS.to_vec());
        assert_eq!(m.values, want.values, "bit for bit");
        assert_eq!(m.total_weight, want.total_weight);
    }
    let s = seen.lock().unwrap();
    let mut announced = s.announces.clone();
    announced.sort();
    assert_eq!(
        announced,
        IDS.iter().map(|id| (id.to_string(), 1)).collect::<Vec<_>>(),
        "one announcement per site, in round 1 only"
    );
    // Each round was unmasked from the self-seed shares: four reveals each.
    assert_eq!(s.reveals.len(), 2 * IDS.len());
}

/// A site killed in the consistency phase (after it signed, or while it
/// waits to reveal) and restarted from its ledger finishes the round with
/// the others, well before the phase's deadline (the others wait for its
/// reveal: it gives the same one again).
#[test]
fn a_site_killed_in_the_consistency_phase_and_restarted_finishes() {
    let key = Arc::new(SecretKey::generate(ParamSet::Standard64));
    let plan = plan(45);
    let srv = serve_plan(&key, plan.clone());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let sites = relayed(&srv, &key, &seen, |_| Play::Honest);
    // d's relay goes dead once d signed the survivor set.
    seen.lock()
        .unwrap()
        .kill_after
        .insert("d".into(), "survivors");
    let ups = values(&plan);
    let start = Instant::now();
    let results: Vec<_> = std::thread::scope(|s| {
        let mut handles: Vec<_> = sites[..3]
            .iter()
            .zip(&ups)
            .map(|(j, (v, w))| {
                let mut ex = masked(j, 60);
                s.spawn(move || ex.exchange(1, v, *w, &AtomicBool::new(false)))
            })
            .collect();
        let d = &sites[3];
        let (v, w) = &ups[3];
        let first = once(d).exchange(1, v, *w, &AtomicBool::new(false));
        assert!(first.is_err(), "d was not killed");
        let phase = srv.round_info(1).unwrap().mask_phase;
        assert!(
            matches!(phase, Some(MaskPhase::Consistency | MaskPhase::Unmask)),
            "{phase:?}"
        );
        // Restarted: a new exchange with d's identity and ledger.
        {
            let mut s = seen.lock().unwrap();
            s.kill_after.clear();
            s.dead.clear();
        }
        let mut ex = masked(d, 60);
        handles.push(s.spawn(move || ex.exchange(1, v, *w, &AtomicBool::new(false))));
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        start.elapsed() < Duration::from_secs(40),
        "the round waited for its deadline: the restarted site did not reveal"
    );
    let want = plain_mean(&key, &ups.iter().collect::<Vec<_>>());
    for m in &results {
        let m = m.as_ref().unwrap_or_else(|e| panic!("{e}"));
        assert!(m.masked && m.contributed);
        assert_eq!(m.counted, IDS.to_vec());
        assert_eq!(m.values, want.values, "bit for bit");
    }
}

/// What a relay does.
#[derive(Clone, Copy, PartialEq)]
enum Play {
    Honest,
    /// Attempt 1's key set shows partner `b`'s key with a broken signature.
    BadKeyOfB,
    /// The lying aggregator (to an honest site): attempt 1's survivor set
    /// without d, the honest sites' signatures of it relayed as if the
    /// aggregator took them, and the shares it holds, so that the site
    /// unmasks for that set.
    HideD,
}

#[derive(Default)]
struct Seen {
    /// Updates by site (round 1).
    updates: HashMap<String, u32>,
    /// Shares uploaded by site (attempt 1).
    shares: HashMap<String, SharesUpload>,
    /// Survivor signatures by site (attempt 1).
    signatures: HashMap<String, fedhe::protocol::SurvivorSignature>,
    /// Reveals by site.
    reveals: Vec<(String, RevealUpload)>,
    /// Key reports by site.
    reports: Vec<(String, fedhe::protocol::KeyReport)>,
    /// Key announcements: site, round.
    announces: Vec<(String, u64)>,
    /// A site's relay goes dead after it passed on this route's answer
    /// (`update`, `survivors`): the site is as good as killed.
    kill_after: HashMap<String, &'static str>,
    dead: std::collections::HashSet<String>,
}

/// One site's relay to the aggregator at `upstream`: its URL.
fn relay(upstream: &str, site: &str, play: Play, seen: Arc<Mutex<Seen>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let upstream = upstream.trim_start_matches("http://").to_string();
    let site = site.to_string();
    std::thread::Builder::new()
        .name(format!("relay-{site}"))
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                let (upstream, seen, site) = (upstream.clone(), seen.clone(), site.clone());
                std::thread::Builder::new()
                    .name("relay-conn".into())
                    .spawn(move || relay_one(conn, &upstream, &site, play, &seen))
                    .unwrap();
            }
        })
        .unwrap();
    url
}

fn relay_one(conn: TcpStream, upstream: &str, site: &str, play: Play, seen: &Mutex<Seen>) {
    let mut client = BufReader::new(conn);
    let Some(mut req) = read_message(&mut client, false) else {
        return;
    };
    if seen.lock().unwrap().dead.contains(site) {
        return;
    }
    let route = round_route(&req.head[0]);
    let (method, what) = match &route {
        Some((m, _, w)) => (m.as_str(), w.as_str()),
        None => ("", ""),
    };
    record(seen, site, method, what, &req.body);
    if let Some((m, r, w)) = &route
        && (m.as_str(), w.as_str()) == ("PUT", "keys")
    {
        seen.lock().unwrap().announces.push((site.to_string(), *r));
    }
    if play == Play::HideD && (method, what) == ("GET", "shares") {
        let _ = write_message(client.get_mut(), &shares_held(seen, site));
        return;
    }
    set_header(&mut req.head, "host", upstream);
    let Ok(mut up) = TcpStream::connect(upstream) else {
        return;
    };
    if write_message(&mut up, &req).is_err() {
        return;
    }
    let Some(mut resp) = read_message(&mut BufReader::new(up), true) else {
        return;
    };
    if (method, what) == ("GET", "keys")
        && resp.head[0].contains(" 200 ")
        && let Ok(mut set) = serde_json::from_slice::<KeySet>(&resp.body)
        && set.attempt == 1
    {
        match play {
            Play::BadKeyOfB => {
                for k in set.keys.iter_mut().filter(|k| k.id == "b") {
                    k.signature = "00".repeat(64);
                }
            }
            Play::HideD => hide_d(&mut set, site, seen),
            Play::Honest => {}
        }
        resp.body = serde_json::to_vec(&set).unwrap();
    }
    let _ = write_message(client.get_mut(), &resp);
    let mut s = seen.lock().unwrap();
    if s.kill_after.get(site) == Some(&what) && resp.head[0].contains(" 200 ") {
        s.dead.insert(site.to_string());
    }
}

/// Keeps what a site sends that the tests look at.
fn record(seen: &Mutex<Seen>, site: &str, method: &str, what: &str, body: &[u8]) {
    let mut s = seen.lock().unwrap();
    match (method, what) {
        ("PUT", "update") => *s.updates.entry(site.to_string()).or_default() += 1,
        ("PUT", "shares") => {
            if let Ok(up) = serde_json::from_slice::<SharesUpload>(body)
                && up.attempt == 1
            {
                s.shares.insert(site.to_string(), up);
            }
        }
        ("PUT", "survivors") => {
            if let Ok(mut sig) = serde_json::from_slice::<fedhe::protocol::SurvivorSignature>(body)
                && sig.attempt == 1
            {
                sig.id = site.to_string();
                s.signatures.insert(site.to_string(), sig);
            }
        }
        ("PUT", "reveal") => {
            if let Ok(r) = serde_json::from_slice(body) {
                s.reveals.push((site.to_string(), r));
            }
        }
        ("POST", "report") => {
            if let Ok(r) = serde_json::from_slice(body) {
                s.reports.push((site.to_string(), r));
            }
        }
        _ => {}
    }
}

/// The lie of [`Play::HideD`]: from the consistency phase on, the survivor
/// set without d; once this site signed it and every honest site did, the
/// unmask phase with their signatures.
fn hide_d(set: &mut KeySet, site: &str, seen: &Mutex<Seen>) {
    if !matches!(set.phase, MaskPhase::Consistency | MaskPhase::Unmask) {
        return;
    }
    set.survivors.retain(|s| s != "d");
    let s = seen.lock().unwrap();
    let honest: Vec<_> = s
        .signatures
        .values()
        .filter(|sig| sig.id != "d")
        .cloned()
        .collect();
    if s.signatures.contains_key(site) && honest.len() >= 3 {
        set.phase = MaskPhase::Unmask;
        set.signatures = honest;
    } else {
        set.phase = MaskPhase::Consistency;
        set.signatures.clear();
    }
}

/// `GET /rounds/1/shares` answered by the lying relay: the bundles every
/// site sent `site`.
fn shares_held(seen: &Mutex<Seen>, site: &str) -> Message {
    let s = seen.lock().unwrap();
    let bundles = s
        .shares
        .iter()
        .filter_map(|(from, up)| {
            up.bundles
                .iter()
                .find(|b| b.id == site)
                .map(|b| WireBundle {
                    id: from.clone(),
                    bytes: b.bytes.clone(),
                })
        })
        .collect();
    let body = serde_json::to_vec(&SharesFor {
        round: 1,
        attempt: 1,
        bundles,
    })
    .unwrap();
    Message {
        head: vec![
            "HTTP/1.1 200 OK".into(),
            "content-type: application/json".into(),
        ],
        body,
    }
}

/// Site `id` joined at `url` (a relay), without a state file.
fn join_at(url: &str, key: &Arc<SecretKey>, id: &str) -> Joined {
    connect(url, key).join(id, id, None).unwrap()
}

/// Issue 21's reproduction: the aggregator relays b's key to a with a
/// signature that does not verify. Before: a's client ended with a relay
/// error and the round waited for a. Now a reports b, the aggregator
/// restarts the attempt without b. Round 1 comes before training and the
/// plan names its roster, so b is left out of that one attempt only (review
/// finding 6: a report must not stall a round that waits for every named
/// member): b comes back in attempt 2 with a fresh key and all four finish
/// with their exact sum.
#[test]
fn a_bad_partner_key_is_reported_and_the_round_goes_on_without_that_member() {
    let key = Arc::new(SecretKey::generate(ParamSet::Standard64));
    let plan = plan(5);
    let srv = serve_plan(&key, plan.clone());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let sites = relayed(&srv, &key, &seen, |id| {
        if id == "a" {
            Play::BadKeyOfB
        } else {
            Play::Honest
        }
    });
    let ups = values(&plan);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = sites
            .iter()
            .zip(&ups)
            .map(|(j, (v, w))| {
                let mut ex = masked(j, 60);
                s.spawn(move || ex.exchange(1, v, *w, &AtomicBool::new(false)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let s = seen.lock().unwrap();
    assert_eq!(s.reports.len(), 1, "one report");
    let (by, report) = &s.reports[0];
    assert_eq!((by.as_str(), report.member.as_str()), ("a", "b"));
    assert!(report.reason.contains("not signed"), "{}", report.reason);
    let want = plain_mean(&key, &[&ups[0], &ups[1], &ups[2], &ups[3]]);
    for (id, r) in IDS.iter().zip(&results) {
        let m = r.as_ref().unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(m.counted, IDS, "{id}");
        assert!(m.masked && m.contributed, "{id}");
        assert_eq!(m.values, want.values, "{id}: bit for bit");
    }
    // a uploaded only once (in attempt 2: it reported b in attempt 1).
    assert_eq!(s.updates.get("a").copied(), Some(1));
    assert!(
        s.updates.get("b").copied().unwrap_or(0) <= 2,
        "b uploaded once per attempt at most"
    );
}

/// The dropout attack of issue 23 Part 2, through the real client: a
/// lying aggregator takes every upload of attempt 1, then shows a, b and c
/// a survivor set without d (who uploaded), with their own signatures of
/// it, to get their reveals. They reveal their shares of d's pair seeds,
/// never of d's self seed: d's upload stays masked by its self mask, and
/// the honest sites, having revealed, take no further part in the round,
/// so d's values are never uploaded again under a smaller roster (before
/// double masking, d was re-masked and re-uploaded in attempt 2 and the
/// difference of the two sums was d's update).
#[test]
fn a_site_declared_dropped_after_its_upload_keeps_its_self_mask() {
    let key = Arc::new(SecretKey::generate(ParamSet::Standard64));
    let plan = plan(4);
    let srv = serve_plan(&key, plan.clone());
    let seen = Arc::new(Mutex::new(Seen::default()));
    let sites = relayed(&srv, &key, &seen, |id| {
        if id == "d" { Play::Honest } else { Play::HideD }
    });
    let ups = values(&plan);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = sites
            .iter()
            .zip(&ups)
            .map(|(j, (v, w))| {
                // The round cannot close: every site gives up after 20 s.
                let mut ex = masked(j, 20);
                s.spawn(move || ex.exchange(1, v, *w, &AtomicBool::new(false)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let s = seen.lock().unwrap();
    // The lie reached the unmask step: every honest site revealed.
    let revealed: std::collections::BTreeSet<&str> =
        s.reveals.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(revealed, ["a", "b", "c"].into());
    for (id, r) in &s.reveals {
        assert_eq!(r.attempt, 1);
        // d's self seed: never; d's pair seeds with the revealer's partners.
        assert!(
            !r.shares
                .iter()
                .any(|w| w.owner == "d" && w.dropped.is_none()),
            "{id} revealed d's self share"
        );
        assert!(r.shares.iter().any(|w| w.dropped.as_deref() == Some("d")));
        assert!(r.shares.iter().all(|w| w.owner != "d"), "{id}");
    }
    // Each site's values went up once in the round.
    for id in IDS {
        assert_eq!(s.updates.get(id).copied(), Some(1), "{id}'s uploads");
    }
    // Nobody got a sum: the round could not be unmasked.
    for (id, r) in IDS.iter().zip(&results) {
        assert!(r.is_err(), "{id} finished a round that cannot close");
    }
    assert_ne!(
        srv.round_info(1).unwrap().state,
        fedhe::protocol::RoundState::Closed
    );
}
