//! Encrypt → add → decrypt, key files, rejection rules.

use fedhe::crypto::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::OnceLock;

fn std_key() -> &'static SecretKey {
    static KEY: OnceLock<SecretKey> = OnceLock::new();
    KEY.get_or_init(|| SecretKey::generate(ParamSet::Standard64))
}

fn compact_key() -> &'static SecretKey {
    static KEY: OnceLock<SecretKey> = OnceLock::new();
    KEY.get_or_init(|| SecretKey::generate(ParamSet::Compact32))
}

fn random_values(rng: &mut ChaCha8Rng, len: usize, range: f64) -> Vec<f64> {
    (0..len).map(|_| rng.random_range(-range..=range)).collect()
}

/// Encrypts every client, adds through the wire format, decrypts, and checks
/// the result against the plaintext weighted mean within the documented bound.
fn check_round(key: &SecretKey, clients: &[(Vec<f64>, f64)], len: usize) {
    let public = key.public();
    let mut acc = Accumulator::new(&public, len);
    // the aggregator's path: checked in place, added without copying
    let mut in_place = Accumulator::new(&public, len);
    for (values, weight) in clients {
        let u = encrypt_weighted(key, values, *weight).unwrap();
        assert_eq!(u.len(), len);
        let bytes = u.to_bytes();
        assert!(bytes.len() <= max_update_bytes(key.params(), len));
        acc.add(&EncryptedUpdate::from_bytes(&bytes, len).unwrap())
            .unwrap();
        in_place
            .add_ref(&UpdateRef::parse(&bytes, len).unwrap())
            .unwrap();
    }
    assert_eq!(in_place, acc);
    let bytes = acc.to_bytes();
    assert!(bytes.len() <= max_sum_bytes(key.params(), key.max_clients(), len));
    let acc = Accumulator::from_bytes(&bytes, len).unwrap();
    let mean = decrypt_mean(key, &acc).unwrap();
    let total: f64 = clients.iter().map(|c| c.1).sum();
    assert_eq!(mean.total_weight, total);
    assert_eq!(mean.contributors as usize, clients.len());
    assert_eq!(mean.values.len(), len);
    let bound = mean.error_bound(key.scale_bits());
    assert!(
        bound <= clients.len() as f64 * 2f64.powi(-(key.scale_bits() as i32) - 1) / total + 1e-18
    );
    for i in 0..len {
        let exact: f64 = clients.iter().map(|(v, w)| v[i] * w).sum::<f64>() / total;
        let err = (mean.values[i] - exact).abs();
        assert!(
            err <= bound * (1.0 + 1e-9) + 1e-12,
            "value {i}: got {}, expected {exact}, error {err} > bound {bound}",
            mean.values[i]
        );
    }
}

#[test]
fn roundtrip_lengths_standard64() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for len in [0, 1, 2047, 2048, 2049, 100_000] {
        let clients: Vec<_> = (0..3)
            .map(|c| (random_values(&mut rng, len, 4.0), [17.0, 250.0, 1.0][c]))
            .collect();
        check_round(std_key(), &clients, len);
    }
}

#[test]
fn roundtrip_lengths_compact32() {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for len in [0, 1, 2047, 2048, 2049, 100_000] {
        let clients: Vec<_> = (0..3)
            .map(|c| (random_values(&mut rng, len, 4.0), [17.0, 250.0, 1.0][c]))
            .collect();
        check_round(compact_key(), &clients, len);
    }
}

fn key_for(params: ParamSet, max_clients: u32) -> SecretKey {
    SecretKey::generate_for(params, max_clients, None).unwrap()
}

/// 1 to max_clients clients, added one at a time; decrypted after every
/// addition; the next one is refused.
#[test]
fn one_to_max_clients() {
    let bigger = key_for(ParamSet::Standard64, 100);
    for key in [std_key(), compact_key(), &bigger] {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let len = 37;
        let public = key.public();
        let mut acc = Accumulator::new(&public, len);
        let mut clients = Vec::new();
        for n in 1..=key.max_clients() as usize {
            let values = random_values(&mut rng, len, 3.0);
            let weight = rng.random_range(1..=40) as f64;
            acc.add(&encrypt_weighted(key, &values, weight).unwrap())
                .unwrap();
            clients.push((values, weight));
            let mean = decrypt_mean(key, &acc).unwrap();
            let total: f64 = clients.iter().map(|c| c.1).sum();
            let bound = mean_error_bound(key.scale_bits(), n as u32, total);
            for i in 0..len {
                let exact: f64 = clients.iter().map(|(v, w)| v[i] * w).sum::<f64>() / total;
                assert!(
                    (mean.values[i] - exact).abs() <= bound * (1.0 + 1e-9),
                    "n={n} i={i}"
                );
            }
        }
        // one more is refused and leaves the sum unchanged
        let before = acc.to_bytes();
        let extra = encrypt_weighted(key, &vec![0.0; len], 1.0).unwrap();
        let e = acc.add(&extra).unwrap_err();
        let max = key.max_clients();
        assert!(
            matches!(e, CryptoError::TooManyContributors { found, max: m } if found == max as usize + 1 && m == max),
            "{e}"
        );
        assert!(e.to_string().contains("--max-clients"), "{e}");
        assert_eq!(acc.to_bytes(), before);
        // and so is a sum that claims more contributors than its key allows
        let mut bytes = before.clone();
        let pos = 5 + 2; // prefix, params, scale_bits: then max_clients (varint)
        assert_eq!(bytes[pos], max.min(250) as u8, "layout of the sum header");
        if max < 250 {
            bytes[pos] -= 1;
            assert!(matches!(
                Accumulator::from_bytes(&bytes, len),
                Err(CryptoError::TooManyContributors { .. })
            ));
        }
    }
}

/// `max_clients` clients all at the edge of the budget, same signs: no
/// overflow, for the default keys and for the extremes of the layout.
#[test]
fn max_clients_at_the_bound() {
    let extremes = [
        key_for(ParamSet::Standard64, 1),
        key_for(ParamSet::Standard64, 300),
        key_for(
            ParamSet::Compact32,
            ParamSet::Compact32.largest_max_clients(),
        ),
    ];
    for key in [std_key(), compact_key()].into_iter().chain(&extremes) {
        let budget = key.params().client_budget_log2(key.max_clients());
        let weight = 3.0;
        let max_value = ((1u64 << budget) - 1) as f64 / 2f64.powi(key.scale_bits() as i32) / weight;
        let len = 4;
        let values = vec![max_value, -max_value, max_value * 0.5, 0.0];
        let mut acc = Accumulator::new(&key.public(), len);
        for _ in 0..key.max_clients() {
            acc.add(&encrypt_weighted(key, &values, weight).unwrap())
                .unwrap();
        }
        let mean = decrypt_mean(key, &acc).unwrap();
        let bound = mean.error_bound(key.scale_bits());
        for (m, v) in mean.values.iter().zip(&values) {
            assert!(
                (m - v).abs() <= bound * (1.0 + 1e-9) + v.abs() * 1e-15,
                "{m} vs {v}"
            );
        }
    }
}

#[test]
fn overflow_is_an_error_naming_value_and_bound() {
    let key = std_key();
    let bound = 2f64.powi(32 - key.scale_bits() as i32);
    let values = [0.0, 1.0, bound / 10.0 + 1.0];
    match encrypt_weighted(key, &values, 10.0) {
        Err(CryptoError::ValueOutOfRange {
            index, bound: b, ..
        }) => {
            assert_eq!(index, 2);
            assert_eq!(b, bound);
        }
        other => panic!("expected ValueOutOfRange, got {other:?}"),
    }
    let msg = encrypt_weighted(key, &values, 10.0)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("value 2") && msg.contains(&bound.to_string()),
        "{msg}"
    );
    assert!(matches!(
        encrypt_weighted(key, &[f64::NAN], 1.0),
        Err(CryptoError::ValueOutOfRange { index: 0, .. })
    ));
    assert!(matches!(
        encrypt_weighted(key, &[f64::INFINITY], 1.0),
        Err(CryptoError::ValueOutOfRange { .. })
    ));
    for w in [-1.0, 0.5, f64::NAN, 2f64.powi(32)] {
        assert!(
            matches!(
                encrypt_weighted(key, &[1.0], w),
                Err(CryptoError::InvalidWeight { .. })
            ),
            "{w}"
        );
    }
}

#[test]
fn mismatches_are_rejected_and_leave_the_sum_unchanged() {
    let key = std_key();
    let other_key = SecretKey::generate(ParamSet::Standard64);
    let compact = compact_key();
    let len = 10;
    let mut acc = Accumulator::new(&key.public(), len);
    acc.add(&encrypt_weighted(key, &vec![1.0; len], 2.0).unwrap())
        .unwrap();
    let before = acc.to_bytes();

    let wrong_key = encrypt_weighted(&other_key, &vec![1.0; len], 2.0).unwrap();
    assert!(matches!(
        acc.add(&wrong_key),
        Err(CryptoError::FingerprintMismatch { .. })
    ));
    let wrong_len = encrypt_weighted(key, &vec![1.0; len + 1], 2.0).unwrap();
    assert!(matches!(
        acc.add(&wrong_len),
        Err(CryptoError::LenMismatch {
            expected: 10,
            found: 11
        })
    ));
    // a key with the same fingerprint but other parameters cannot exist, so
    // forge the header: same fingerprint, other parameter set
    let mut forged = encrypt_weighted(compact, &vec![1.0; len], 2.0)
        .unwrap()
        .to_bytes();
    let fp = compact.fingerprint().0;
    let pos = forged.windows(16).position(|w| w == fp).unwrap();
    forged[pos..pos + 16].copy_from_slice(&key.fingerprint().0);
    let forged = EncryptedUpdate::from_bytes(&forged, len).unwrap();
    assert!(matches!(
        acc.add(&forged),
        Err(CryptoError::ParamsMismatch { .. })
    ));
    // the same update twice
    let u = encrypt_weighted(key, &vec![1.0; len], 2.0).unwrap();
    acc.add(&u).unwrap();
    let before_dup = acc.to_bytes();
    assert!(matches!(
        acc.add(&u),
        Err(CryptoError::DuplicateUpdate { .. })
    ));
    assert_eq!(acc.to_bytes(), before_dup);
    assert_ne!(before, before_dup);

    // merge rules
    let mut other_acc = Accumulator::new(&other_key.public(), len);
    other_acc.add(&wrong_key).unwrap();
    assert!(matches!(
        acc.merge(&other_acc),
        Err(CryptoError::FingerprintMismatch { .. })
    ));
    let mut short = Accumulator::new(&key.public(), len - 1);
    short
        .add(&encrypt_weighted(key, &vec![1.0; len - 1], 1.0).unwrap())
        .unwrap();
    assert!(matches!(
        acc.merge(&short),
        Err(CryptoError::LenMismatch { .. })
    ));
    assert!(matches!(
        acc.merge(&acc.clone()),
        Err(CryptoError::DuplicateUpdate { .. })
    ));
    assert_eq!(acc.to_bytes(), before_dup);

    // decrypting with another key is refused
    assert!(matches!(
        decrypt_mean(&other_key, &acc),
        Err(CryptoError::FingerprintMismatch { .. })
    ));
}

#[test]
fn tree_aggregation_equals_flat() {
    let key = std_key();
    let public = key.public();
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    let len = 3000;
    let updates: Vec<_> = (0..6)
        .map(|i| encrypt_weighted(key, &random_values(&mut rng, len, 2.0), (i + 1) as f64).unwrap())
        .collect();
    let mut flat = Accumulator::new(&public, len);
    for u in &updates {
        flat.add(u).unwrap();
    }
    let mut left = Accumulator::new(&public, len);
    let mut right = Accumulator::new(&public, len);
    for (i, u) in updates.iter().enumerate() {
        if i % 2 == 0 {
            left.add(u).unwrap()
        } else {
            right.add(u).unwrap()
        }
    }
    left.merge(&right).unwrap();
    assert_eq!(left.contributors(), 6);
    assert_eq!(
        decrypt_mean(key, &left).unwrap(),
        decrypt_mean(key, &flat).unwrap()
    );
}

#[test]
fn two_encryptions_of_the_same_vector_differ() {
    let key = std_key();
    let values = vec![0.25; 100];
    let a = encrypt_weighted(key, &values, 5.0).unwrap().to_bytes();
    let b = encrypt_weighted(key, &values, 5.0).unwrap().to_bytes();
    assert_eq!(a.len(), b.len());
    assert_ne!(a, b);
    // the bodies differ almost everywhere, not just in the seed
    let header = a.len() - 101 * 8;
    let same = a[header..]
        .chunks(8)
        .zip(b[header..].chunks(8))
        .filter(|(x, y)| x == y)
        .count();
    assert!(same <= 1, "{same} identical body words");
}

#[test]
fn ciphertext_sizes() {
    let len = 100_000;
    let s = encrypt_weighted(std_key(), &vec![0.0; len], 1.0)
        .unwrap()
        .to_bytes()
        .len();
    let c = encrypt_weighted(compact_key(), &vec![0.0; len], 1.0)
        .unwrap()
        .to_bytes()
        .len();
    assert!(s as f64 <= 2.001 * 4.0 * len as f64, "{s}");
    assert!(c as f64 <= 1.001 * 4.0 * len as f64, "{c}");
    assert!(s <= max_update_bytes(ParamSet::Standard64, len));
    assert!(c <= max_update_bytes(ParamSet::Compact32, len));
}

#[test]
fn zero_total_weight_and_empty_sum() {
    let key = std_key();
    let mut acc = Accumulator::new(&key.public(), 2);
    assert!(matches!(
        decrypt_mean(key, &acc),
        Err(CryptoError::EmptySum)
    ));
    acc.add(&encrypt_weighted(key, &[1.0, 2.0], 0.0).unwrap())
        .unwrap();
    assert!(matches!(
        decrypt_mean(key, &acc),
        Err(CryptoError::ZeroTotalWeight { found: 0 })
    ));
}

// ---- key files ----

#[test]
fn key_files_roundtrip_and_permissions() {
    let dir = tempfile::tempdir().unwrap();
    let sk = SecretKey::generate(ParamSet::Standard64);
    let sp = dir.path().join("secret.key");
    let pp = dir.path().join("public.key");
    sk.save(&sp, false).unwrap();
    sk.public().save(&pp, false).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&sp).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let loaded = SecretKey::load(&sp).unwrap();
    assert_eq!(loaded.fingerprint(), sk.fingerprint());
    assert_eq!(loaded.public(), sk.public());
    assert_eq!(PublicKeyFile::load(&pp).unwrap(), sk.public());
    // a loaded key decrypts what the original encrypted
    let mut acc = Accumulator::new(&sk.public(), 3);
    acc.add(&encrypt_weighted(&sk, &[1.0, 2.0, 3.0], 4.0).unwrap())
        .unwrap();
    let m = decrypt_mean(&loaded, &acc).unwrap();
    assert!((m.values[2] - 3.0).abs() < 1e-4);

    // never overwritten without force
    let other = SecretKey::generate(ParamSet::Standard64);
    assert!(matches!(
        other.save(&sp, false),
        Err(CryptoError::WouldOverwrite { .. })
    ));
    assert_eq!(
        SecretKey::load(&sp).unwrap().fingerprint(),
        sk.fingerprint()
    );
    other.save(&sp, true).unwrap();
    assert_eq!(
        SecretKey::load(&sp).unwrap().fingerprint(),
        other.fingerprint()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&sp).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

#[test]
fn key_file_errors_say_which() {
    let sk = SecretKey::generate(ParamSet::Compact32);
    let secret = sk.to_bytes();
    let public = sk.public().to_bytes();

    // the public file cannot be used as (or to build) a secret key
    let e = SecretKey::from_bytes(&public).unwrap_err();
    assert!(matches!(
        e,
        CryptoError::WrongKeyKind {
            expected: "secret",
            found: "public"
        }
    ));
    assert!(e.to_string().contains("cannot decrypt"), "{e}");
    let e = PublicKeyFile::from_bytes(&secret).unwrap_err();
    assert!(matches!(
        e,
        CryptoError::WrongKeyKind {
            expected: "public",
            found: "secret"
        }
    ));
    // the public file holds nothing beyond parameters, scale and fingerprint
    assert!(public.len() < 100, "{}", public.len());

    for cut in [0, 5, 12, 20, secret.len() - 1] {
        let e = SecretKey::from_bytes(&secret[..cut]).unwrap_err();
        assert!(
            matches!(
                e,
                CryptoError::TruncatedKeyFile { .. } | CryptoError::NotAKeyFile { .. }
            ),
            "cut {cut}: {e}"
        );
    }
    let e = SecretKey::from_bytes(&secret[..secret.len() - 1]).unwrap_err();
    assert!(e.to_string().contains("truncated"), "{e}");

    let mut flipped = secret.clone();
    flipped[40] ^= 1;
    assert!(matches!(
        SecretKey::from_bytes(&flipped),
        Err(CryptoError::CorruptKeyFile { .. })
    ));

    let mut v3 = public.clone();
    v3[8] = 3;
    let e = PublicKeyFile::from_bytes(&v3).unwrap_err();
    assert!(
        matches!(
            e,
            CryptoError::UnsupportedVersion {
                found: 3,
                expected: 2,
                ..
            }
        ),
        "{e}"
    );
    // keys from before the per-key client limit ask for a new keygen
    let mut v1 = secret.clone();
    v1[8] = 1;
    let e = SecretKey::from_bytes(&v1).unwrap_err();
    assert!(
        matches!(
            e,
            CryptoError::OldKeyFile {
                found: 1,
                expected: 2
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("fedhe keygen"), "{e}");

    let e = PublicKeyFile::from_bytes(b"hello world, not a key").unwrap_err();
    assert!(matches!(e, CryptoError::NotAKeyFile { .. }));

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("public.key");
    std::fs::write(&p, &public).unwrap();
    let e = SecretKey::load(&p).unwrap_err();
    assert!(matches!(e.root(), CryptoError::WrongKeyKind { .. }));
    assert!(e.to_string().contains("public.key"), "{e}");
}

// ---- wire format ----

#[test]
fn wire_rejects_lies_and_limits() {
    let key = std_key();
    let len = 5000;
    let u = encrypt_weighted(key, &vec![0.5; len], 3.0).unwrap();
    let bytes = u.to_bytes();
    assert_eq!(EncryptedUpdate::from_bytes(&bytes, len).unwrap(), u);
    assert!(matches!(
        EncryptedUpdate::from_bytes(&bytes, len - 1),
        Err(CryptoError::TooManyValues { .. })
    ));
    for cut in [0, 3, 5, 20, 40, bytes.len() - 8, bytes.len() - 1] {
        assert!(
            EncryptedUpdate::from_bytes(&bytes[..cut], len).is_err(),
            "cut {cut}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        EncryptedUpdate::from_bytes(&longer, len),
        Err(CryptoError::LengthMismatch { .. })
    ));
    // an update is not a sum and vice versa
    assert!(Accumulator::from_bytes(&bytes, len).is_err());
    let mut acc = Accumulator::new(&key.public(), len);
    acc.add(&u).unwrap();
    assert!(EncryptedUpdate::from_bytes(&acc.to_bytes(), len).is_err());
    // version
    let mut v = bytes.clone();
    v[4] = 9;
    assert!(matches!(
        EncryptedUpdate::from_bytes(&v, len),
        Err(CryptoError::UnsupportedVersion { found: 9, .. })
    ));
}

#[test]
fn max_clients_layout_and_its_limits() {
    use ParamSet::*;
    // each doubling beyond 64 costs two bits per client; the default scale pays them
    assert_eq!(Standard64.client_budget_log2(64), 32);
    assert_eq!(Standard64.client_budget_log2(100), 30);
    assert_eq!(Standard64.client_budget_log2(128), 30);
    assert_eq!(Compact32.client_budget_log2(64), 18);
    assert_eq!(Compact32.client_budget_log2(1024), 10);
    assert_eq!(Standard64.default_scale_bits(64), 16);
    assert_eq!(Standard64.default_scale_bits(100), 14);
    assert_eq!(Standard64.default_scale_bits(2), 16);
    assert_eq!(Compact32.default_scale_bits(64), 6);
    assert_eq!(Compact32.default_scale_bits(128), 4);
    assert_eq!(Standard64.largest_max_clients(), 65_536);
    assert_eq!(Compact32.largest_max_clients(), 2_048);

    let k = key_for(Standard64, 100);
    assert_eq!((k.max_clients(), k.scale_bits()), (100, 14));
    assert_eq!(k.public().max_clients(), 100);
    // the limit survives the key files
    let sk = SecretKey::from_bytes(&k.to_bytes()).unwrap();
    assert_eq!(sk.max_clients(), 100);
    let pk = PublicKeyFile::from_bytes(&k.public().to_bytes()).unwrap();
    assert_eq!(pk.max_clients(), 100);
    // |rows × value| < 2^(30 - 14) = 65,536 as with the default key
    let e = encrypt_weighted(&k, &[0.0, 65_536.0], 1.0).unwrap_err();
    assert!(
        matches!(e, CryptoError::ValueOutOfRange { index: 1, bound, max_clients: 100, .. } if bound == 65_536.0),
        "{e}"
    );
    assert!(e.to_string().contains("sum of 100 updates"), "{e}");

    for (params, n) in [(Standard64, 0), (Standard64, 65_537), (Compact32, 2_049)] {
        let e = SecretKey::generate_for(params, n, None).unwrap_err();
        assert!(
            matches!(e, CryptoError::InvalidMaxClients { max_clients, .. } if max_clients == n),
            "{params} {n}: {e}"
        );
        assert!(e.to_string().contains(&n.to_string()), "{e}");
    }
    let e = SecretKey::generate_for(Standard64, 128, Some(30)).unwrap_err();
    assert!(
        matches!(
            e,
            CryptoError::InvalidScale {
                max: 29,
                max_clients: 128,
                ..
            }
        ),
        "{e}"
    );
    SecretKey::generate_for(Standard64, 128, Some(29)).unwrap();
}

#[test]
fn membership_proofs_bind_key_id_and_name() {
    let key = std_key();
    let public = PublicKeyFile::from_bytes(&key.public().to_bytes()).unwrap();
    let aud = fedhe::crypto::Audience {
        session: "s",
        plan: Some("p"),
    };
    let who = [9u8; 32];
    let sign = |k: &SecretKey, id: &str, name: &str, at: u64| {
        k.sign_registration_for(&aud, id, name, at, &who)
    };
    let verify = |id: &str, name: &str, at: u64, p: &[u8]| {
        public.verify_registration_for(&aud, id, name, at, &who, p)
    };
    let proof = sign(key, "clinic-7", "Clinic 7", 1000);
    assert_eq!(proof.len(), 64);
    verify("clinic-7", "Clinic 7", 1000, &proof).unwrap();
    // a loaded copy of the secret file signs for the same public file
    let copy = SecretKey::from_bytes(&key.to_bytes()).unwrap();
    verify(
        "clinic-7",
        "Clinic 7",
        1000,
        &sign(&copy, "clinic-7", "Clinic 7", 1000),
    )
    .unwrap();
    for (id, name, at, p) in [
        ("clinic-8", "Clinic 7", 1000, &proof[..]),
        ("clinic-7", "Clinic 8", 1000, &proof[..]),
        // length-prefixed fields: moving a character between id and name fails
        ("clinic-7C", "linic 7", 1000, &proof[..]),
        ("clinic-7", "Clinic 7", 1000, &proof[..63]),
        // the issue time is signed: a proof cannot be moved to a later time
        ("clinic-7", "Clinic 7", 1001, &proof[..]),
    ] {
        let e = verify(id, name, at, p).unwrap_err();
        assert!(
            matches!(e, CryptoError::BadMembershipProof),
            "{id} {name}: {e}"
        );
    }
    // an outsider's key cannot sign for this federation
    let outsider = SecretKey::generate(ParamSet::Standard64);
    let e = verify(
        "clinic-7",
        "Clinic 7",
        1000,
        &sign(&outsider, "clinic-7", "Clinic 7", 1000),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("does not hold the federation's secret key"),
        "{e}"
    );
    assert_ne!(outsider.public(), key.public());
}
