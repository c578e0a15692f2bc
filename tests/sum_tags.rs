//! Verifiable sums (issue 21 part 1): a tampering relay between real
//! clients and a real aggregator over HTTP — a replayed sum, one flipped
//! bit, an update dropped but claimed included — is refused by every site,
//! and none gets a model; through an honest relay the federation runs as
//! before. An update made for another plan under the same key is refused.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use fedhe::client::{LoopError, SumError};
use fedhe::crypto::{
    Accumulator, CryptoError, EncryptedUpdate, Masks, ParamSet, SecretKey, TagScope,
};
use fedhe::plan::{Plan, ProposeOptions, Quorum, Training};
use fedhe::protocol::ErrorCode;
use fedhe::session::SessionError;

use crate::common::{connect, join, sample, serve_plan};

/// What the relay does to the sums it passes on.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tamper {
    Honest,
    /// Round `r`'s sum is answered with round `r − 1`'s.
    Replay(u64),
    /// Byte `len − 20` of round `r`'s sum is XORed with 0x40.
    FlipBit(u64),
    /// Round `r`'s sum is re-added without its first update; the
    /// aggregator's list of contributors still names all of them.
    DropUpdate(u64),
    /// The first two downloads of round `r`'s sum have a bit flipped (a
    /// transient fault: each site has downloads left).
    FlipTwice(u64),
}

#[derive(Default)]
struct Seen {
    /// Honest sum bodies by round.
    sums: HashMap<u64, Vec<u8>>,
    /// Update bodies by round, in arrival order.
    updates: HashMap<u64, Vec<Vec<u8>>>,
    tampered: u32,
}

/// An HTTP/1.1 relay: one upstream connection per request
/// (`Connection: close`), whole bodies, sums changed by `tamper`.
struct Relay {
    url: String,
    seen: Arc<Mutex<Seen>>,
}

pub(crate) struct Message {
    pub(crate) head: Vec<String>,
    pub(crate) body: Vec<u8>,
}

pub(crate) fn read_message(r: &mut BufReader<TcpStream>, response: bool) -> Option<Message> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end().to_string();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    let header = |name: &str| {
        head.iter().skip(1).find_map(|h| {
            let (k, v) = h.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let mut body = Vec::new();
    if let Some(n) = header("content-length") {
        body.resize(n.parse().ok()?, 0);
        r.read_exact(&mut body).ok()?;
    } else if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if response {
        r.read_to_end(&mut body).ok()?;
    }
    Some(Message { head, body })
}

pub(crate) fn write_message(w: &mut TcpStream, m: &Message) -> std::io::Result<()> {
    let mut out = Vec::new();
    out.extend_from_slice(m.head[0].as_bytes());
    out.extend_from_slice(b"\r\n");
    for h in &m.head[1..] {
        let name = h
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if ["content-length", "transfer-encoding", "connection"].contains(&name.as_str()) {
            continue;
        }
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {}\r\n", m.body.len()).as_bytes());
    out.extend_from_slice(b"connection: close\r\n\r\n");
    out.extend_from_slice(&m.body);
    w.write_all(&out)?;
    w.flush()
}

/// `/api/v1/rounds/{r}/{what}` of a request line.
pub(crate) fn round_route(request_line: &str) -> Option<(String, u64, String)> {
    let mut parts = request_line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.split('?').next()?;
    let rest = path.strip_prefix("/api/v1/rounds/")?;
    let (r, what) = rest.split_once('/')?;
    Some((method, r.parse().ok()?, what.to_string()))
}

pub(crate) fn set_header(head: &mut Vec<String>, name: &str, value: &str) {
    head.retain(|h| {
        !h.split(':')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case(name)
    });
    head.push(format!("{name}: {value}"));
}

impl Relay {
    fn start(upstream: &str, tamper: Tamper, key: Arc<SecretKey>) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.trim_start_matches("http://").to_string();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let shared = seen.clone();
        std::thread::Builder::new()
            .name("relay".into())
            .spawn(move || {
                for conn in listener.incoming().flatten() {
                    let (upstream, seen, key) = (upstream.clone(), shared.clone(), key.clone());
                    std::thread::Builder::new()
                        .name("relay-conn".into())
                        .spawn(move || relay_one(conn, &upstream, tamper, &seen, &key))
                        .unwrap();
                }
            })
            .unwrap();
        Relay { url, seen }
    }

    fn tampered(&self) -> u32 {
        self.seen.lock().unwrap().tampered
    }
}

fn relay_one(conn: TcpStream, upstream: &str, tamper: Tamper, seen: &Mutex<Seen>, key: &SecretKey) {
    let mut client = BufReader::new(conn);
    let Some(mut req) = read_message(&mut client, false) else {
        return;
    };
    let route = round_route(&req.head[0]);
    if let Some((m, r, what)) = &route
        && m == "PUT"
        && what == "update"
    {
        let mut s = seen.lock().unwrap();
        s.updates.entry(*r).or_default().push(req.body.clone());
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
    if let Some((m, r, what)) = route
        && m == "GET"
        && what == "sum"
        && resp.head[0].contains(" 200 ")
    {
        let mut s = seen.lock().unwrap();
        s.sums.insert(r, resp.body.clone());
        let len = fedhe::protocol::CONTRIBUTORS_HEADER;
        match tamper {
            Tamper::Replay(t) if t == r => {
                resp.body = s.sums[&(r - 1)].clone();
                s.tampered += 1;
            }
            Tamper::FlipTwice(t) if t == r && s.tampered < 2 => {
                let n = resp.body.len();
                resp.body[n - 20] ^= 0x40;
                s.tampered += 1;
            }
            Tamper::FlipBit(t) if t == r => {
                let n = resp.body.len();
                resp.body[n - 20] ^= 0x40;
                s.tampered += 1;
            }
            Tamper::DropUpdate(t) if t == r => {
                let ups = &s.updates[&r];
                let first = EncryptedUpdate::from_bytes(&ups[0], 1 << 20).unwrap();
                let mut sum = Accumulator::new(&key.public(), first.len());
                for u in &ups[1..] {
                    sum.add(&EncryptedUpdate::from_bytes(u, 1 << 20).unwrap())
                        .unwrap();
                }
                resp.body = sum.to_bytes();
                set_header(&mut resp.head, len, &sum.contributors().to_string());
                s.tampered += 1;
            }
            _ => {}
        }
    }
    let _ = write_message(client.get_mut(), &resp);
}

fn plan(masks: bool) -> Plan {
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

fn files() -> Vec<PathBuf> {
    (1..=3)
        .map(|i| sample(&format!("clients/client_{i}.csv")))
        .collect()
}

/// Three sites through `url`: each site's model or error.
fn run_three(
    url: &str,
    key: &Arc<SecretKey>,
) -> Vec<Result<fedhe::model::ModelFile, SessionError>> {
    let handles: Vec<_> = files()
        .into_iter()
        .enumerate()
        .map(|(i, file)| {
            let (key, url) = (key.clone(), url.to_string());
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
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// Every site refused round `round`'s sum after its downloads, typed.
fn assert_all_refused(results: &[Result<fedhe::model::ModelFile, SessionError>], round: u64) {
    for r in results {
        match r {
            Err(SessionError::Loop(LoopError::Sum(SumError::Unverified {
                round: got,
                tries,
                source: CryptoError::SumTagMismatch { .. },
            }))) => {
                assert_eq!((*got, *tries), (round, fedhe::client::SUM_TRIES));
            }
            Err(e) => panic!("refused, but not by the sum check: {e}"),
            Ok(_) => panic!("a site took a tampered sum and finished with a model"),
        }
    }
}

#[test]
fn a_tampering_relay_is_refused_by_every_site_and_an_honest_one_is_not() {
    let key = Arc::new(SecretKey::generate(ParamSet::Standard64));
    // Honest: every site finishes, with the same model.
    let srv = serve_plan(&key, plan(false));
    let relay = Relay::start(srv.url(), Tamper::Honest, key.clone());
    let models: Vec<_> = run_three(&relay.url, &key)
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("{e}")))
        .collect();
    assert!(models.iter().all(|m| m.params == models[0].params));
    assert_eq!(relay.tampered(), 0);
    // … the same model as without the relay.
    let direct = serve_plan(&key, plan(false));
    let without = run_three(direct.url(), &key);
    assert_eq!(without[0].as_ref().unwrap().params, models[0].params);
    // Two bad downloads of round 2: the sites download again and finish
    // with the same model.
    let srv = serve_plan(&key, plan(false));
    let relay = Relay::start(srv.url(), Tamper::FlipTwice(2), key.clone());
    for r in run_three(&relay.url, &key) {
        assert_eq!(r.unwrap_or_else(|e| panic!("{e}")).params, models[0].params);
    }
    assert_eq!(relay.tampered(), 2);
    // Round 3 (training round 2) answered with round 2's sum; round 2 with
    // one bit flipped; round 3 without its first update.
    for tamper in [Tamper::Replay(3), Tamper::FlipBit(2), Tamper::DropUpdate(3)] {
        let srv = serve_plan(&key, plan(false));
        let relay = Relay::start(srv.url(), tamper, key.clone());
        let results = run_three(&relay.url, &key);
        assert!(relay.tampered() >= 3, "{tamper:?}: {}", relay.tampered());
        let round = match tamper {
            Tamper::Replay(r) | Tamper::FlipBit(r) | Tamper::DropUpdate(r) => r,
            Tamper::Honest | Tamper::FlipTwice(_) => 0,
        };
        assert_all_refused(&results, round);
    }
}

#[test]
fn a_masked_sum_with_one_flipped_bit_is_refused() {
    let key = Arc::new(SecretKey::generate(ParamSet::Standard64));
    let srv = serve_plan(&key, plan(true));
    let relay = Relay::start(srv.url(), Tamper::FlipBit(1), key.clone());
    let results = run_three(&relay.url, &key);
    assert_all_refused(&results, 1);
}

#[test]
fn an_update_made_for_another_plan_under_the_same_key_is_refused() {
    let key = Arc::new(SecretKey::generate(ParamSet::Standard64));
    let (ours, theirs) = (plan(false), plan(true));
    assert_ne!(ours.fingerprint(), theirs.fingerprint());
    let srv = serve_plan(&key, ours.clone());
    let a = join(&srv, &key, "a");
    let len = ours
        .update_len(ours.layout().phase(1).unwrap(), &key.layout())
        .unwrap();
    let values = vec![0.5; len - key.layout().tag_slots()];
    let scope = |plan: &Plan| TagScope {
        plan: plan.fingerprint().0,
        round: 1,
        attempt: 0,
    };
    // Made for the other federation, sent with this plan's header.
    let other =
        fedhe::crypto::encrypt_tagged(&key, &values, 1.0, &Masks::none(), &scope(&theirs), "a")
            .unwrap()
            .to_bytes();
    let e = a.api.upload(1, &other).unwrap_err();
    assert_eq!(e.code(), Some(&ErrorCode::Unprocessable), "{e}");
    assert!(e.to_string().contains("made for plan"), "{e}");
    assert!(srv.status().submitted.is_empty(), "nothing counted");
    // The same values for this plan are taken.
    let own = fedhe::crypto::encrypt_tagged(&key, &values, 1.0, &Masks::none(), &scope(&ours), "a")
        .unwrap()
        .to_bytes();
    a.api.upload(1, &own).unwrap();
    assert_eq!(srv.status().submitted, vec!["a"]);
}

/// What a tag costs on the wire (issue 21: ≤ 2 % of the update bytes from
/// the smallest size where it can be met): two 8-byte slots for a
/// Standard64 key of 64 clients (four before), three 4-byte slots for
/// Compact32, and 8 bytes of plan binding in the header (16 before): a
/// 51-byte header. A
/// 32-value update (WDBC's logistic regression) is 331 bytes, 355 before.
#[test]
fn a_tag_costs_two_slots_and_the_plan_binding_eight_bytes() {
    let scope = TagScope {
        plan: [5; 16],
        round: 4,
        attempt: 0,
    };
    for (params, slot_bytes, tag_slots) in
        [(ParamSet::Standard64, 8, 2), (ParamSet::Compact32, 4, 3)]
    {
        let key = SecretKey::generate_for(params, 64, None).unwrap();
        assert_eq!(key.layout().tag_slots(), tag_slots);
        for n in [32, 1025] {
            let values = vec![0.25; n];
            let bare = fedhe::crypto::encrypt_weighted(&key, &values, 3.0)
                .unwrap()
                .bound_to(4, 0)
                .to_bytes()
                .len();
            let bound = fedhe::crypto::encrypt_weighted(&key, &values, 3.0)
                .unwrap()
                .bound_to(4, 0)
                .for_plan(scope.plan)
                .to_bytes()
                .len();
            let tagged =
                fedhe::crypto::encrypt_tagged(&key, &values, 3.0, &Masks::none(), &scope, "a")
                    .unwrap()
                    .to_bytes()
                    .len();
            // The header: prefix 5, key layout 19, length (1 byte below
            // 251 values, else 3), seed 16, round, attempt, plan binding 8
            // (16 before): 51 bytes (59 before) at 32 values.
            assert_eq!(bound, bare);
            let header = if n < 251 { 51 } else { 53 };
            assert_eq!(bare - (n + 1) * slot_bytes, header, "{params:?} {n}");
            assert_eq!(tagged - bound, tag_slots * slot_bytes, "{params:?} {n}");
            if params == ParamSet::Standard64 && n == 32 {
                assert_eq!(tagged, 331);
            }
            // The tag's share: 16 of 331 bytes at 32 values, 16 of 8,283
            // (0.19 %) at 1,025.
            if n == 1025 {
                assert!((tagged - bound) * 100 < tagged / 2, "{params:?}: {tagged}");
            }
        }
    }
}

/// The tag sized from the key holds end to end, through real encryption,
/// summing and decryption, for the narrowest budgets: Compact32 at 2,048
/// clients (six 8-bit limbs), Standard64 at 1,024 (two 24-bit limbs) and at
/// 65,536 (four 12-bit limbs), with values at the key's bound. One changed
/// body word of the sum fails the check.
#[test]
fn tags_sized_from_the_key_verify_through_real_sums() {
    let scope = TagScope {
        plan: [6; 16],
        round: 2,
        attempt: 1,
    };
    for (params, clients, slots) in [
        (ParamSet::Compact32, 2048, 6),
        (ParamSet::Standard64, 1024, 2),
        (ParamSet::Standard64, 1 << 16, 4),
    ] {
        let key = SecretKey::generate_for(params, clients, None).unwrap();
        assert_eq!(key.layout().tag_slots(), slots);
        let bound =
            2f64.powi(params.client_budget_log2(clients) as i32 - i32::from(key.scale_bits()));
        let values: Vec<f64> = (0..40)
            .map(|i| {
                if i % 2 == 0 {
                    bound * 0.99
                } else {
                    -bound * 0.99
                }
            })
            .collect();
        let sites: Vec<String> = (0..5).map(|j| format!("s{j}")).collect();
        let mut sum = Accumulator::new(&key.public(), values.len() + slots);
        for s in &sites {
            let u = fedhe::crypto::encrypt_tagged(&key, &values, 1.0, &Masks::none(), &scope, s)
                .unwrap();
            assert_eq!(u.len(), values.len() + slots);
            sum.add(&u).unwrap();
        }
        let v = fedhe::crypto::decrypt_verified(&key, &sum, &scope, &[0, 1], &sites).unwrap();
        assert_eq!(
            (v.attempt, v.weight, v.values.len()),
            (1, 5, 40),
            "{params:?}"
        );
        // One site short, or one bit of the sum changed: refused.
        let short = fedhe::crypto::decrypt_verified(&key, &sum, &scope, &[1], &sites[..4]);
        assert!(
            matches!(short, Err(CryptoError::SumTagMismatch { .. })),
            "{params:?}"
        );
        // The top byte of the last value word (before the tag and weight).
        let mut bytes = sum.to_bytes();
        let wb = params.word_bytes();
        let top = bytes.len() - (1 + slots) * wb - 1;
        bytes[top] ^= 0x10;
        let flipped = Accumulator::from_bytes(&bytes, 1 << 20).unwrap();
        let r = fedhe::crypto::decrypt_verified(&key, &flipped, &scope, &[1], &sites);
        assert!(
            matches!(r, Err(CryptoError::SumTagMismatch { .. })),
            "{params:?}"
        );
    }
}
