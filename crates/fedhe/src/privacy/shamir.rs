//! Shamir secret sharing over the prime field GF(2^127 − 1), for the
//! double masks' seeds (`privacy::secagg`).
//!
//! A 128-bit secret is shared as two field elements (its low and high 64
//! bits), each the constant term of its own random polynomial of degree
//! `t − 1`; the share at point `x` (a roster position, from 1) is both
//! polynomials' values there. Any `t` shares give the secret back by
//! Lagrange interpolation at 0; fewer than `t` are uniformly distributed
//! whatever the secret (the field is larger than each half), so they tell
//! nothing about it.

use rand::RngCore;

/// The field's prime, the Mersenne prime 2^127 − 1.
pub const P: u128 = (1u128 << 127) - 1;

/// One share of a 128-bit secret: the two halves' polynomial values at the
/// holder's point.
pub type Share = [u128; 2];

/// Failures of reconstruction.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ShamirError {
    #[error("{have} shares, {needed} needed")]
    TooFewShares { have: usize, needed: usize },
    #[error("share point {x} is zero or appears twice")]
    BadPoint { x: u64 },
    #[error("the shares do not come from one sharing of a 128-bit secret")]
    Inconsistent,
}

fn reduce(x: u128) -> u128 {
    let r = (x & P) + (x >> 127);
    if r >= P { r - P } else { r }
}

fn add(a: u128, b: u128) -> u128 {
    reduce(a + b)
}

fn sub(a: u128, b: u128) -> u128 {
    reduce(a + (P - b))
}

fn mul(a: u128, b: u128) -> u128 {
    let (a0, a1) = (a & u128::from(u64::MAX), a >> 64);
    let (b0, b1) = (b & u128::from(u64::MAX), b >> 64);
    // a, b < 2^127: a1, b1 < 2^63, so `mid` cannot overflow.
    let mid = a1 * b0 + a0 * b1;
    let (lo, carry) = (a0 * b0).overflowing_add(mid << 64);
    let hi = a1 * b1 + (mid >> 64) + u128::from(carry);
    // value = hi · 2^128 + lo, and 2^128 ≡ 2 (mod 2^127 − 1).
    add(reduce(lo), reduce(hi << 1))
}

fn pow(mut base: u128, mut e: u128) -> u128 {
    let mut acc = 1;
    while e > 0 {
        if e & 1 == 1 {
            acc = mul(acc, base);
        }
        base = mul(base, base);
        e >>= 1;
    }
    acc
}

fn inv(a: u128) -> u128 {
    pow(a, P - 2)
}

fn random_element(rng: &mut impl RngCore) -> u128 {
    loop {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        let x = u128::from_le_bytes(b) & P;
        if x != P {
            return x;
        }
    }
}

/// Shares `secret` with threshold `t` at `points` (distinct, non-zero):
/// one share per point, in order.
pub fn split(secret: u128, t: usize, points: &[u64], rng: &mut impl RngCore) -> Vec<Share> {
    let halves = [secret & u128::from(u64::MAX), secret >> 64];
    let polys: Vec<Vec<u128>> = halves
        .iter()
        .map(|&h| {
            let mut c = vec![h];
            c.extend((1..t.max(1)).map(|_| random_element(rng)));
            c
        })
        .collect();
    points
        .iter()
        .map(|&x| {
            let x = u128::from(x);
            let eval = |c: &[u128]| c.iter().rev().fold(0, |acc, &k| add(mul(acc, x), k));
            [eval(&polys[0]), eval(&polys[1])]
        })
        .collect()
}

/// The Lagrange weights at 0 of the points `xs` (distinct, non-zero):
/// `secret = Σ λ_i · y_i`. Computed once per set of holders and reused for
/// every secret they reveal.
pub fn lagrange_at_zero(xs: &[u64]) -> Result<Vec<u128>, ShamirError> {
    for (i, &x) in xs.iter().enumerate() {
        if x == 0 || xs[..i].contains(&x) {
            return Err(ShamirError::BadPoint { x });
        }
    }
    Ok(xs
        .iter()
        .enumerate()
        .map(|(i, &xi)| {
            let (mut num, mut den) = (1u128, 1u128);
            for (j, &xj) in xs.iter().enumerate() {
                if i != j {
                    num = mul(num, u128::from(xj));
                    den = mul(den, sub(u128::from(xj), u128::from(xi)));
                }
            }
            mul(num, inv(den))
        })
        .collect())
}

/// The secret from shares at the points whose Lagrange weights are
/// `weights` (same order). Halves that do not fit 64 bits mean the shares
/// were not one sharing (a holder or the sharer lied).
pub fn combine_with(weights: &[u128], shares: &[Share]) -> Result<u128, ShamirError> {
    let mut halves = [0u128; 2];
    for (w, s) in weights.iter().zip(shares) {
        for (h, y) in halves.iter_mut().zip(s) {
            *h = add(*h, mul(*w, reduce(*y)));
        }
    }
    if halves.iter().any(|h| *h > u128::from(u64::MAX)) {
        return Err(ShamirError::Inconsistent);
    }
    Ok(halves[0] | (halves[1] << 64))
}

/// The secret from at least `t` shares `(point, share)` (the first `t` are
/// used).
pub fn combine(t: usize, shares: &[(u64, Share)]) -> Result<u128, ShamirError> {
    if shares.len() < t.max(1) {
        return Err(ShamirError::TooFewShares {
            have: shares.len(),
            needed: t.max(1),
        });
    }
    let used = &shares[..t.max(1)];
    let xs: Vec<u64> = used.iter().map(|(x, _)| *x).collect();
    let ys: Vec<Share> = used.iter().map(|(_, s)| *s).collect();
    combine_with(&lagrange_at_zero(&xs)?, &ys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn field_arithmetic_agrees_with_small_cases_and_inverses() {
        assert_eq!(mul(P - 1, P - 1), 1); // (−1)² = 1
        assert_eq!(mul(1u128 << 126, 2), 1); // 2^127 ≡ 1
        assert_eq!(add(P - 1, 1), 0);
        assert_eq!(sub(0, 1), P - 1);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for _ in 0..200 {
            let a = random_element(&mut rng);
            if a != 0 {
                assert_eq!(mul(a, inv(a)), 1);
            }
            let b = random_element(&mut rng);
            assert_eq!(mul(a, b), mul(b, a));
            assert_eq!(sub(add(a, b), b), a);
        }
    }

    #[test]
    fn any_t_shares_give_the_secret_and_fewer_do_not() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let secret = u128::MAX - 12345;
        let points: Vec<u64> = (1..=9).collect();
        let shares = split(secret, 7, &points, &mut rng);
        let all: Vec<(u64, Share)> = points.iter().copied().zip(shares).collect();
        assert_eq!(combine(7, &all).unwrap(), secret);
        let mut other: Vec<(u64, Share)> = all[2..].to_vec();
        other.reverse();
        assert_eq!(combine(7, &other).unwrap(), secret);
        // Six shares taken as if seven were needed of six: not the secret.
        assert_ne!(combine(6, &all[..6]).ok(), Some(secret));
        assert!(matches!(
            combine(7, &all[..6]),
            Err(ShamirError::TooFewShares { have: 6, needed: 7 })
        ));
        // A tampered share is caught or gives another value, never the secret.
        let mut bad = all.clone();
        bad[0].1[1] = add(bad[0].1[1], 1);
        assert_ne!(combine(7, &bad).ok(), Some(secret));
        assert!(matches!(
            lagrange_at_zero(&[1, 2, 1]),
            Err(ShamirError::BadPoint { x: 1 })
        ));
    }
}
