//! Sum tags: a linear MAC over the exact integers of an update, so that a
//! site can check, after decrypting, that a sum is the sum of this round's
//! updates from the announced contributors — not a replay, not modified,
//! not short of an update — even against the aggregator itself.
//!
//! Every site holds the tag key `k` (HKDF of the umbrella key's membership
//! seed; the aggregator holds only the public key). For one plan, round and
//! attempt (the [`TagScope`]) `k` gives coefficients `r_i` (AES-128-CTR
//! keyed by HKDF(k, scope), each word mod `p`) and, per site id `j`, a term
//! `s_j` = HKDF(k, scope, j) mod `p`. Site `j` with encoded integers
//! `x_{j,i}` (its value slots, then the weight slot) appends
//!
//! `t_j = Σ_i r_i·x_{j,i} + s_j  (mod p)`
//!
//! as [`TagField::slots`] non-negative limbs of `b` bits, encrypted and
//! masked like every other slot. The limbs of a sum of `n ≤ max_clients`
//! updates never wrap (`b` is at most the key's per-client budget), so the
//! site that decrypts the sum `X` with summed limbs `T` recombines `T`
//! exactly and checks, over the announced contributor set `C`,
//!
//! `T ≡ Σ_i r_i·X_i + Σ_{j∈C} s_j  (mod p)`.
//!
//! The decrypted integers are exact (no wrap-around by the encoding's bound,
//! `|X_i| < 2^(63−D)` ≤ 2^44 < p), so a change `Δ ≠ 0` of any slot is
//! non-zero mod `p`, and a forger who does not know `r` passes with
//! probability `1/p`; `docs/crypto.md` has the argument.
//!
//! The limbs are sized from the key: `b = min(B, 31)` for the per-client
//! budget `B`, as few limbs as give [`MIN_TAG_BITS`] bits, and `p` the
//! largest prime below `2^min(slots·b, 61)`. Every key then has
//! `p ≥ 2^48 − 59` (≤ 2^-41 per round and site, with the client's 99
//! checks) in 2 slots for every Standard64 key up to 1,024 clients and
//! 3 to 6 slots (of 4 bytes) for Compact32.

use rayon::prelude::*;
use zeroize::Zeroizing;

use super::params::{POLY_SIZE, ParamSet};
use super::prng::AesCtr;

/// The most slots a sum tag takes, over every key (Compact32 at 2,048
/// clients: 6 limbs of 8 bits). A tagged update carries
/// [`TagField::slots`] of them after its values (before the weight slot).
pub const MAX_SUM_TAG_SLOTS: usize = 6;

/// The fewest bits of a tag's prime: with the client's 99 checks per round
/// (3 downloads × 33 attempts) `p ≥ 2^48 − 59` keeps a forgery below
/// `99/(p − 99)` < 2^-41.
pub const MIN_TAG_BITS: u32 = 48;

/// Bits per limb at most (two limbs hold `2^61 − 1`).
const MAX_LIMB_BITS: u32 = 31;

/// The slots a sum tag takes with a key of `params` for `max_clients`
/// (what [`Plan::update_len`](crate::plan::Plan::update_len) adds).
pub fn sum_tag_slots(params: ParamSet, max_clients: u32) -> usize {
    TagField::for_key(params, max_clients).slots
}

/// Attempts a site tries when it does not know which attempt closed a
/// round (it resumed, or the round closed without it).
pub const MAX_TAG_ATTEMPTS: u32 = 32;

/// What a tag is bound to: the plan, the round and the attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagScope {
    pub plan: [u8; 16],
    pub round: u64,
    pub attempt: u32,
}

impl TagScope {
    fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(28);
        out.extend_from_slice(&self.plan);
        out.extend_from_slice(&self.round.to_le_bytes());
        out.extend_from_slice(&self.attempt.to_le_bytes());
        out
    }
}

/// The tag key every site derives from the umbrella key.
pub(crate) struct TagKey(pub(crate) Zeroizing<[u8; 32]>);

/// The tag's prime and limb size for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagField {
    /// The prime modulus.
    pub p: u64,
    /// Bits per limb.
    pub limb_bits: u32,
    /// Limbs (slots) of a tag.
    pub slots: usize,
}

/// `(bits, k)`: `2^bits − k` is the largest prime below `2^bits` (checked
/// by a deterministic Miller–Rabin test in the tests below), for every size
/// from [`MIN_TAG_BITS`] to 61 (`2^61 − 1`, a Mersenne prime).
const PRIMES: [(u32, u64); 14] = [
    (48, 59),
    (49, 81),
    (50, 27),
    (51, 129),
    (52, 47),
    (53, 111),
    (54, 33),
    (55, 55),
    (56, 5),
    (57, 13),
    (58, 27),
    (59, 55),
    (60, 93),
    (61, 1),
];

impl TagField {
    /// The field for a key of `params` for up to `max_clients`: limbs of
    /// `b = min(B, 31)` bits (`B` the per-client budget, so that a sum of
    /// `max_clients` limbs never wraps), as few as give [`MIN_TAG_BITS`],
    /// and the largest prime below `2^min(slots·b, 61)`.
    pub fn for_key(params: ParamSet, max_clients: u32) -> Self {
        // Keys are refused below 8 bits of budget (`MIN_CLIENT_BUDGET_LOG2`).
        let limb_bits = params
            .client_budget_log2(max_clients)
            .clamp(8, MAX_LIMB_BITS);
        let slots = MIN_TAG_BITS.div_ceil(limb_bits);
        let room = (limb_bits * slots).min(61);
        let (bits, k) = PRIMES
            .iter()
            .rev()
            .find(|(bits, _)| *bits <= room)
            .copied()
            .unwrap_or(PRIMES[0]);
        TagField {
            p: (1u64 << bits) - k,
            limb_bits,
            slots: slots as usize,
        }
    }

    /// `log2 p`, rounded down: the forgery bound per check is `2^-bits`.
    pub fn bits(&self) -> u32 {
        63 - self.p.leading_zeros()
    }

    fn reduce(&self, x: i64) -> u64 {
        // p < 2^62 fits in i64
        x.rem_euclid(self.p as i64) as u64
    }

    fn add(&self, a: u64, b: u64) -> u64 {
        ((u128::from(a) + u128::from(b)) % u128::from(self.p)) as u64
    }

    /// `t` as [`slots`](Self::slots) limbs of `limb_bits`, lowest first.
    pub(crate) fn limbs(&self, t: u64) -> Vec<i64> {
        let mask = (1u64 << self.limb_bits) - 1;
        (0..self.slots)
            .map(|l| ((t >> (self.limb_bits * l as u32)) & mask) as i64)
            .collect()
    }

    /// Summed limbs recombined exactly, mod `p`.
    fn combine(&self, limbs: &[i64]) -> u64 {
        let mut t: i128 = 0;
        for (l, v) in limbs.iter().enumerate() {
            t += i128::from(*v) << (self.limb_bits * l as u32);
        }
        t.rem_euclid(i128::from(self.p)) as u64
    }
}

impl TagKey {
    /// The tag key of a membership seed (every site's, never the aggregator's).
    pub(crate) fn derive(member_seed: &[u8; 32]) -> Self {
        let mut out = Zeroizing::new([0u8; 32]);
        super::hkdf_expand(
            b"FedHE sum tag key v1",
            member_seed,
            b"sum tag",
            &mut out[..],
        );
        TagKey(out)
    }

    fn coefficient_seed(&self, scope: &TagScope) -> u128 {
        let mut out = Zeroizing::new([0u8; 16]);
        super::hkdf_expand(
            b"FedHE sum tag coefficients v1",
            &self.0[..],
            &scope.bytes(),
            &mut out[..],
        );
        u128::from_le_bytes(*out)
    }

    /// `s_j` of site `site` in `scope`.
    fn site_term(&self, field: &TagField, scope: &TagScope, site: &str) -> u64 {
        let mut info = scope.bytes();
        info.extend_from_slice(site.as_bytes());
        let mut out = [0u8; 8];
        super::hkdf_expand(b"FedHE sum tag site v1", &self.0[..], &info, &mut out);
        u64::from_le_bytes(out) % field.p
    }

    /// `Σ_i r_i·x_i mod p` over `ints` (value slots, then the weight slot).
    fn inner(&self, field: &TagField, scope: &TagScope, ints: &[i64]) -> u64 {
        let seed = self.coefficient_seed(scope);
        let p = u128::from(field.p);
        ints.par_chunks(POLY_SIZE)
            .enumerate()
            .with_min_len(8)
            .map(|(block, chunk)| {
                let mut words = [0u64; POLY_SIZE];
                AesCtr::new(seed).mask(block, &mut words);
                let mut acc: u128 = 0;
                for (k, (x, r)) in chunk.iter().zip(&words).enumerate() {
                    // each product < 2^124: reduce every 8 terms
                    acc += u128::from(r % field.p) * u128::from(field.reduce(*x));
                    if k % 8 == 7 {
                        acc %= p;
                    }
                }
                (acc % p) as u64
            })
            .reduce(|| 0, |a, b| field.add(a, b))
    }

    /// Site `site`'s tag of its encoded integers `ints` (value slots, then
    /// the weight slot), as limbs.
    pub(crate) fn tag(
        &self,
        field: &TagField,
        scope: &TagScope,
        site: &str,
        ints: &[i64],
    ) -> Vec<i64> {
        let t = field.add(
            self.inner(field, scope, ints),
            self.site_term(field, scope, site),
        );
        field.limbs(t)
    }

    /// Whether decrypted sums `ints` (value slots, then the weight slot)
    /// with summed limbs `tag` are the sum of `sites`' updates in `scope`.
    pub(crate) fn verify(
        &self,
        field: &TagField,
        scope: &TagScope,
        sites: &[String],
        ints: &[i64],
        tag: &[i64],
    ) -> bool {
        let mut want = self.inner(field, scope, ints);
        for s in sites {
            want = field.add(want, self.site_term(field, scope, s));
        }
        tag.len() == field.slots && field.combine(tag) == want
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_prime(n: u64) -> bool {
        let mul = |a: u64, b: u64| (u128::from(a) * u128::from(b) % u128::from(n)) as u64;
        let pow = |mut a: u64, mut e: u64| {
            let mut r = 1u64;
            while e > 0 {
                if e & 1 == 1 {
                    r = mul(r, a);
                }
                a = mul(a, a);
                e >>= 1;
            }
            r
        };
        let bases = [2u64, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37];
        if bases.contains(&n) {
            return true;
        }
        if n < 2 || bases.iter().any(|b| n.is_multiple_of(*b)) {
            return false;
        }
        let (mut d, mut s) = (n - 1, 0);
        while d.is_multiple_of(2) {
            d /= 2;
            s += 1;
        }
        bases.iter().all(|&a| {
            let mut x = pow(a, d);
            if x == 1 || x == n - 1 {
                return true;
            }
            for _ in 1..s {
                x = mul(x, x);
                if x == n - 1 {
                    return true;
                }
            }
            false
        })
    }

    #[test]
    fn the_moduli_are_the_largest_primes_below_their_power_of_two() {
        for (bits, k) in PRIMES {
            let p = (1u64 << bits) - k;
            assert!(is_prime(p), "2^{bits} - {k}");
            assert!((p + 1..1u64 << bits).all(|q| !is_prime(q)), "2^{bits}");
        }
        let f = TagField::for_key(ParamSet::Standard64, 64);
        assert_eq!(
            (f.p, f.limb_bits, f.slots, f.bits()),
            ((1 << 61) - 1, 31, 2, 60)
        );
        // 1,024 clients: budget 24, two limbs of 24 bits, 2^48 − 59
        let f = TagField::for_key(ParamSet::Standard64, 1024);
        assert_eq!((f.p, f.limb_bits, f.slots), ((1 << 48) - 59, 24, 2));
        let f = TagField::for_key(ParamSet::Compact32, 64);
        assert_eq!((f.p, f.limb_bits, f.slots), ((1 << 54) - 33, 18, 3));
        // Compact32 for 1,024 clients: five 10-bit limbs, 2^50 − 27
        let f = TagField::for_key(ParamSet::Compact32, 1024);
        assert_eq!((f.p, f.limb_bits, f.slots), ((1 << 50) - 27, 10, 5));
        let f = TagField::for_key(ParamSet::Compact32, 2048);
        assert_eq!((f.p, f.limb_bits, f.slots), ((1 << 48) - 59, 8, 6));
    }

    /// Every key the key generator accepts gets a tag whose forgery bound
    /// per round and site, `99/(p − 99)`, is at most 2^-40, whose limbs fit
    /// the per-client budget (a sum of `max_clients` never wraps), and
    /// whose prime exceeds any change of a decrypted slot (`2^(64 − D)`).
    #[test]
    fn every_key_gets_a_tag_of_at_most_two_to_the_minus_forty() {
        for params in [ParamSet::Standard64, ParamSet::Compact32] {
            let largest = params.largest_max_clients();
            let mut clients: Vec<u32> = (0..=16).map(|c| 1u32 << c).collect();
            clients.extend([3, 5, 100, 1000, 1025, 3000]);
            for n in clients.into_iter().filter(|n| *n <= largest) {
                let f = TagField::for_key(params, n);
                let budget = params.client_budget_log2(n);
                let bound = 99.0 / (f.p as f64 - 99.0);
                assert!(bound <= 2f64.powi(-40), "{params:?} {n}: {bound:e}");
                assert!(f.limb_bits <= budget, "{params:?} {n}");
                assert!(f.slots <= MAX_SUM_TAG_SLOTS, "{params:?} {n}");
                assert!(f.limb_bits * f.slots as u32 >= f.bits(), "{params:?} {n}");
                assert!(64 - params.delta_log2(n) < f.bits(), "{params:?} {n}");
                let t = f.p - 1;
                assert_eq!(f.combine(&f.limbs(t)), t, "{params:?} {n}");
            }
        }
        // The cheapest tags: two slots for every Standard64 key up to
        // 1,024 clients, three for Compact32 up to 128.
        for n in [1, 64, 1024] {
            assert_eq!(sum_tag_slots(ParamSet::Standard64, n), 2);
        }
        assert_eq!(sum_tag_slots(ParamSet::Standard64, 2048), 3);
        assert_eq!(sum_tag_slots(ParamSet::Standard64, 1 << 16), 4);
        assert_eq!(sum_tag_slots(ParamSet::Compact32, 128), 3);
    }

    #[test]
    fn tags_add_up_and_any_change_fails() {
        let key = TagKey::derive(&[7u8; 32]);
        let field = TagField::for_key(ParamSet::Standard64, 64);
        let scope = TagScope {
            plan: [1; 16],
            round: 3,
            attempt: 1,
        };
        let sites: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let ints: Vec<Vec<i64>> = (0..3)
            .map(|j| {
                (0..5000)
                    .map(|i| (i * 7919 + j * 31) % 200_001 - 100_000)
                    .collect()
            })
            .collect();
        let mut sum = vec![0i64; 5000];
        let mut tag = vec![0i64; field.slots];
        for (j, x) in ints.iter().enumerate() {
            let t = key.tag(&field, &scope, &sites[j], x);
            assert_eq!(t.len(), 2);
            assert!(t.iter().all(|l| (0..1 << 31).contains(l)));
            for (s, v) in sum.iter_mut().zip(x) {
                *s += v;
            }
            for (s, v) in tag.iter_mut().zip(t) {
                *s += v;
            }
        }
        assert!(key.verify(&field, &scope, &sites, &sum, &tag));
        // another round, attempt or plan; a site left out; one slot changed
        for other in [
            TagScope { round: 2, ..scope },
            TagScope {
                attempt: 2,
                ..scope
            },
            TagScope {
                plan: [2; 16],
                ..scope
            },
        ] {
            assert!(!key.verify(&field, &other, &sites, &sum, &tag));
        }
        assert!(!key.verify(&field, &scope, &sites[..2], &sum, &tag));
        let mut changed = sum.clone();
        changed[4321] += 1 << 20;
        assert!(!key.verify(&field, &scope, &sites, &changed, &tag));
        let mut tag2 = tag.clone();
        tag2[1] ^= 0x40;
        assert!(!key.verify(&field, &scope, &sites, &sum, &tag2));
        // a change in the high bits; a limb short
        let mut high = sum.clone();
        high[7] += 1 << 38;
        assert!(!key.verify(&field, &scope, &sites, &high, &tag));
        assert!(!key.verify(&field, &scope, &sites, &sum, &tag[..1]));
        // another key
        let other = TagKey::derive(&[8u8; 32]);
        assert!(!other.verify(&field, &scope, &sites, &sum, &tag));
    }

    /// The widest tag (Compact32 at 2,048 clients: six 8-bit limbs) adds
    /// up over 2,048 sites, each limb within the 8-bit budget.
    #[test]
    fn the_widest_tag_adds_up_over_its_client_limit() {
        let key = TagKey::derive(&[9u8; 32]);
        let field = TagField::for_key(ParamSet::Compact32, 2048);
        let scope = TagScope {
            plan: [3; 16],
            round: 1,
            attempt: 0,
        };
        let sites: Vec<String> = (0..2048).map(|j| format!("s{j}")).collect();
        let mut sum = vec![0i64; 9];
        let mut tag = vec![0i64; field.slots];
        for (j, site) in sites.iter().enumerate() {
            let x: Vec<i64> = (0..9).map(|i| ((i * 37 + j) % 255) as i64 - 127).collect();
            let t = key.tag(&field, &scope, site, &x);
            assert!(t.iter().all(|l| (0..1 << 8).contains(l)));
            for (s, v) in sum.iter_mut().zip(&x) {
                *s += v;
            }
            for (s, v) in tag.iter_mut().zip(t) {
                *s += v;
            }
        }
        assert!(key.verify(&field, &scope, &sites, &sum, &tag));
        sum[3] += 1;
        assert!(!key.verify(&field, &scope, &sites, &sum, &tag));
    }
}
