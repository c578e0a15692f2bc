//! Property tests: decoders never panic on hostile input and never trust
//! length fields.

use fedhe::crypto::*;
use proptest::prelude::*;
use std::sync::OnceLock;

const LIMIT: usize = 10_000;

struct Samples {
    update: Vec<u8>,
    compact_update: Vec<u8>,
    sum: Vec<u8>,
    secret: Vec<u8>,
    public: Vec<u8>,
}

fn samples() -> &'static Samples {
    static S: OnceLock<Samples> = OnceLock::new();
    S.get_or_init(|| {
        let key = SecretKey::generate(ParamSet::Standard64);
        let compact = SecretKey::generate(ParamSet::Compact32);
        let values: Vec<f64> = (0..40).map(|i| i as f64 / 7.0).collect();
        let u = encrypt_weighted(&key, &values, 9.0).unwrap();
        let mut acc = Accumulator::new(&key.public(), values.len());
        acc.add(&u).unwrap();
        acc.add(&encrypt_weighted(&key, &values, 2.0).unwrap())
            .unwrap();
        Samples {
            update: u.to_bytes(),
            compact_update: encrypt_weighted(&compact, &values, 9.0).unwrap().to_bytes(),
            sum: acc.to_bytes(),
            secret: key.to_bytes(),
            public: key.public().to_bytes(),
        }
    })
}

fn decode_all(bytes: &[u8]) -> [bool; 4] {
    [
        EncryptedUpdate::from_bytes(bytes, LIMIT).is_ok(),
        Accumulator::from_bytes(bytes, LIMIT).is_ok(),
        SecretKey::from_bytes(bytes).is_ok(),
        PublicKeyFile::from_bytes(bytes).is_ok(),
    ]
}

/// Writes a LEB-style bincode varint (standard config) for `v`.
fn varint(v: u64) -> Vec<u8> {
    match v {
        0..=250 => vec![v as u8],
        251..=0xFFFF => [vec![251], (v as u16).to_le_bytes().to_vec()].concat(),
        0x1_0000..=0xFFFF_FFFF => [vec![252], (v as u32).to_le_bytes().to_vec()].concat(),
        _ => [vec![253], v.to_le_bytes().to_vec()].concat(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode_all(&bytes);
    }

    #[test]
    fn random_bytes_after_valid_magic_never_panic(
        which in 0usize..5,
        tail in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let s = samples();
        let src = [&s.update, &s.compact_update, &s.sum, &s.secret, &s.public][which];
        let prefix = if which >= 3 { 10 } else { 5 };
        let mut bytes = src[..prefix].to_vec();
        bytes.extend_from_slice(&tail);
        let _ = decode_all(&bytes);
    }

    #[test]
    fn truncations_are_errors(which in 0usize..5, cut in 0usize..100_000) {
        let s = samples();
        let src = [&s.update, &s.compact_update, &s.sum, &s.secret, &s.public][which];
        let cut = cut % src.len();
        prop_assert_eq!(decode_all(&src[..cut]), [false; 4]);
    }

    #[test]
    fn flipped_bytes_never_panic(which in 0usize..5, pos in 0usize..100_000, bit in 0u8..8) {
        let s = samples();
        let mut bytes = [&s.update, &s.compact_update, &s.sum, &s.secret, &s.public][which].clone();
        let pos = pos % bytes.len();
        bytes[pos] ^= 1 << bit;
        let ok = decode_all(&bytes);
        // key files are checksummed: any flipped bit is detected
        if which >= 3 {
            prop_assert_eq!(ok, [false; 4]);
        }
    }

    /// An update header that lies about its length (up to u64::MAX) is refused
    /// before allocating.
    #[test]
    fn lying_length_fields_are_refused(
        len in prop_oneof![0u64..64, any::<u64>()],
        extra in 0usize..64,
    ) {
        let s = samples();
        // header layout (bincode standard): params(1) scale(1) max_clients(1 for 64)
        // fingerprint(16) len(varint) seed(16) round(varint) attempt(varint)
        // plan binding (8 since wire version 5)
        let bytes = &s.update;
        let mut forged = bytes[..5 + 19].to_vec();
        forged.extend(varint(len));
        forged.extend_from_slice(&bytes[5 + 20..5 + 20 + 16]);
        forged.extend([0u8, 0u8]); // unbound: round 0, attempt 0
        forged.extend([0u8; fedhe::crypto::PLAN_BINDING_BYTES]); // and plan
        forged.extend(std::iter::repeat_n(0u8, extra * 8));
        let r = EncryptedUpdate::from_bytes(&forged, LIMIT);
        let honest = len as usize + 1 == extra && (len as usize) <= LIMIT;
        prop_assert_eq!(r.is_ok(), honest);
    }

    /// A sum header claiming a huge seed list is refused without allocating it.
    #[test]
    fn lying_seed_counts_are_refused(count in any::<u64>()) {
        let s = samples();
        let mut forged = s.sum[..5 + 19].to_vec();
        forged.extend(varint(40)); // len
        forged.extend(varint(count)); // number of seeds
        forged.extend(std::iter::repeat_n(7u8, 64));
        prop_assert!(Accumulator::from_bytes(&forged, LIMIT).is_err());
    }
}

fn shared_key() -> &'static SecretKey {
    static K: OnceLock<SecretKey> = OnceLock::new();
    K.get_or_init(|| SecretKey::generate(ParamSet::Standard64))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// encrypt → add → decrypt is the weighted mean within the documented bound,
    /// for any in-range values, weights, lengths and client counts.
    #[test]
    fn weighted_mean_within_bound(
        len in 0usize..3000,
        weights in proptest::collection::vec(1u32..2000, 1..8),
        seed in any::<u64>(),
    ) {
        use rand::{Rng, SeedableRng};
        let key = shared_key();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut acc = Accumulator::new(&key.public(), len);
        let mut clients = Vec::new();
        for w in &weights {
            let w = f64::from(*w);
            let max = 65_000.0 / w;
            let values: Vec<f64> = (0..len).map(|_| rng.random_range(-max..max)).collect();
            acc.add(&encrypt_weighted(key, &values, w).unwrap()).unwrap();
            clients.push((values, w));
        }
        let mean = decrypt_mean(key, &acc).unwrap();
        let total: f64 = clients.iter().map(|c| c.1).sum();
        prop_assert_eq!(mean.total_weight, total);
        let bound = mean.error_bound(key.scale_bits());
        for i in 0..len {
            let exact: f64 = clients.iter().map(|(v, w)| v[i] * w).sum::<f64>() / total;
            prop_assert!((mean.values[i] - exact).abs() <= bound * (1.0 + 1e-9) + exact.abs() * 1e-15);
        }
    }
}
