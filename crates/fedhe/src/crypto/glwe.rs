//! Packed, seeded GLWE encryption and decryption (k = 1, N = 2048, q = 2^64),
//! parallel over GLWE blocks with rayon.
//!
//! A block holds N plaintext coefficients `p` (already shifted by `2^D`). With
//! the binary secret polynomial `s` and the mask `a` regenerated from a seed:
//! `body = a·s + p + e` in `Z_q[X]/(X^N + 1)`, exactly as TFHE-rs's
//! `encrypt_seeded_glwe_ciphertext_list` computes it (and decryptable by
//! `decompress_seeded_glwe_ciphertext_list` + `decrypt_glwe_ciphertext_list`).
//!
//! The product `a·s` is the only costly step. TFHE-rs's generic
//! `polynomial_wrapping_add_mul_assign` (Karatsuba) takes ~0.5 ms per block;
//! here it is computed exactly with TFHE-rs's negacyclic f64 FFT: `a` is split
//! into three signed digits of 22, 21 and 21 bits, each digit times `s` is an
//! integer polynomial with coefficients below 2^21 · 2048 = 2^32 in absolute
//! value, which the FFT reproduces with an error far below 1/2 (the usual bound
//! `||d||₂·||s||₂·O(ε log N)` is about 2^-16), so rounding recovers each digit
//! product exactly; the digit products are then shifted and added mod 2^64.
//! Tests compare against TFHE-rs's exact product on random inputs.

use rayon::prelude::*;
use tfhe::core_crypto::fft_impl::fft64::c64;
use tfhe::core_crypto::fft_impl::fft64::math::fft::Fft;
use tfhe::core_crypto::fft_impl::fft64::math::polynomial::{
    FourierPolynomial, FourierPolynomialOwned,
};
use tfhe::core_crypto::prelude::{ComputationBuffers, Polynomial, PolynomialSize};

use super::params::POLY_SIZE;
use super::prng::AesCtr;

/// Digit widths of the exact FFT product (sum = 64).
const DIGIT_BITS: [u32; 3] = [22, 21, 21];

/// The secret polynomial in the Fourier domain, plus the FFT plan.
pub(crate) struct KeyFourier {
    fft: Fft,
    key: Vec<c64>,
}

impl Drop for KeyFourier {
    // One of the documented unsafe sites: a volatile write is the only way
    // to keep the compiler from dropping a wipe of memory about to be freed.
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // The Fourier transform of the key is key material too: best-effort wipe.
        for c in self.key.iter_mut() {
            // SAFETY: `c` is a valid, aligned, exclusive reference.
            unsafe { std::ptr::write_volatile(c, c64::new(0.0, 0.0)) };
        }
    }
}

/// Per-thread scratch space for [`KeyFourier::mul`].
pub(crate) struct Scratch {
    digits: [Vec<u64>; 3],
    part: Vec<u64>,
    fourier: FourierPolynomialOwned,
    buffers: ComputationBuffers,
}

impl KeyFourier {
    /// `key_bits` holds N coefficients, each 0 or 1.
    pub(crate) fn new(key_bits: &[u64]) -> Self {
        let size = PolynomialSize(POLY_SIZE);
        let fft = Fft::new(size);
        let mut scratch = Self::scratch_for(&fft);
        let view = fft.as_view();
        let mut fourier = FourierPolynomial::new(size);
        // The key goes in as a torus polynomial (s · 2^-64) so that the digits
        // can use the integer conversion and the product comes back as a torus
        // element, i.e. an exact integer mod 2^64 once rounded.
        view.forward_as_torus(
            fourier.as_mut_view(),
            Polynomial::from_container(key_bits),
            scratch.buffers.stack(),
        );
        let key = fourier.data.to_vec();
        Self { fft, key }
    }

    fn scratch_for(fft: &Fft) -> Scratch {
        let view = fft.as_view();
        let mut buffers = ComputationBuffers::new();
        let req = view.forward_scratch().or(view.backward_scratch());
        buffers.resize(req.unaligned_bytes_required());
        Scratch {
            digits: std::array::from_fn(|_| vec![0; POLY_SIZE]),
            part: vec![0; POLY_SIZE],
            fourier: FourierPolynomial::new(PolynomialSize(POLY_SIZE)),
            buffers,
        }
    }

    pub(crate) fn scratch(&self) -> Scratch {
        Self::scratch_for(&self.fft)
    }

    /// `out = a · s` in `Z_{2^64}[X]/(X^N + 1)`, exactly.
    pub(crate) fn mul(&self, a: &[u64], out: &mut [u64], sc: &mut Scratch) {
        debug_assert_eq!(a.len(), POLY_SIZE);
        debug_assert_eq!(out.len(), POLY_SIZE);
        // Signed digits: a = Σ d_k 2^(shift_k) mod 2^64, d_k in [-2^(bits-1), 2^(bits-1)).
        // Branch-free so that the loop vectorizes: `(v ^ half) - half` maps
        // v in [half, 2^bits) to v - 2^bits, and such a negative digit borrows
        // one unit from the next digit (mod 2^64 for the top one).
        let [d0, d1, d2] = &mut sc.digits;
        for (((x, o0), o1), o2) in a
            .iter()
            .zip(d0.iter_mut())
            .zip(d1.iter_mut())
            .zip(d2.iter_mut())
        {
            let mut rest = *x;
            let mut digit = |bits: u32| {
                let half = 1u64 << (bits - 1);
                let v = rest & ((1u64 << bits) - 1);
                rest = (rest >> bits) + (v >> (bits - 1));
                (v ^ half).wrapping_sub(half)
            };
            *o0 = digit(DIGIT_BITS[0]);
            *o1 = digit(DIGIT_BITS[1]);
            *o2 = digit(DIGIT_BITS[2]);
        }
        let view = self.fft.as_view();
        out.fill(0);
        let mut shift = 0u32;
        for (k, bits) in DIGIT_BITS.into_iter().enumerate() {
            view.forward_as_integer(
                sc.fourier.as_mut_view(),
                Polynomial::from_container(sc.digits[k].as_slice()),
                sc.buffers.stack(),
            );
            for (f, key) in sc.fourier.data.iter_mut().zip(&self.key) {
                *f *= *key;
            }
            // (the SIMD conversion lives in the "add" variant)
            sc.part.fill(0);
            view.add_backward_in_place_as_torus(
                Polynomial::from_container(sc.part.as_mut_slice()),
                sc.fourier.as_mut_view(),
                sc.buffers.stack(),
            );
            for (o, p) in out.iter_mut().zip(&sc.part) {
                *o = o.wrapping_add(p << shift);
            }
            shift += bits;
        }
    }
}

/// Encrypts `count` plaintext coefficients into one body word each.
/// `encode(first, out)` writes coefficients `first .. first + out.len()`
/// (already shifted by 2^D). `drop_bits` = 0 keeps the 64-bit body; 32 rounds
/// it to its top 32 bits.
pub(crate) fn encrypt_bodies(
    key: &KeyFourier,
    count: usize,
    encode: impl Fn(usize, &mut [u64]) + Sync,
    mask_seed: u128,
    noise_seed: u128,
    drop_bits: u32,
) -> Vec<u64> {
    let mut out = vec![0u64; count];
    let mask_gen = AesCtr::new(mask_seed);
    let noise_gen = AesCtr::new(noise_seed);
    out.par_chunks_mut(POLY_SIZE).enumerate().for_each_init(
        || BlockState::new(key, &mask_gen, &noise_gen),
        |st, (j, dst)| {
            st.mask_gen.mask(j, &mut st.a);
            key.mul(&st.a, &mut st.body, &mut st.scratch);
            st.noise_gen.add_noise(j, &mut st.body);
            let plain = &mut st.plain[..dst.len()];
            encode(j * POLY_SIZE, plain);
            for ((d, p), b) in dst.iter_mut().zip(plain.iter()).zip(&st.body) {
                *d = round_drop(b.wrapping_add(*p), drop_bits);
            }
        },
    );
    out
}

/// Rounds a 64-bit body to its top `64 - drop_bits` bits.
#[inline]
fn round_drop(x: u64, drop_bits: u32) -> u64 {
    if drop_bits == 0 {
        x
    } else {
        (x.wrapping_add(1u64 << (drop_bits - 1))) >> drop_bits
    }
}

struct BlockState {
    mask_gen: AesCtr,
    noise_gen: AesCtr,
    a: Vec<u64>,
    body: Vec<u64>,
    plain: Vec<u64>,
    scratch: Scratch,
}

impl BlockState {
    fn new(key: &KeyFourier, mask_gen: &AesCtr, noise_gen: &AesCtr) -> Self {
        Self {
            mask_gen: mask_gen.clone(),
            noise_gen: noise_gen.clone(),
            a: vec![0; POLY_SIZE],
            body: vec![0; POLY_SIZE],
            plain: vec![0; POLY_SIZE],
            scratch: key.scratch(),
        }
    }
}

/// Decrypts summed bodies: regenerates and adds every contributor's mask
/// (`seeds`), subtracts `(Σ a)·s` and returns the phases (plaintext + noise,
/// still shifted by 2^D), one per body word.
pub(crate) fn decrypt_phases(
    key: &KeyFourier,
    bodies: &[u64],
    seeds: &[u128],
    drop_bits: u32,
) -> Vec<u64> {
    let gens: Vec<AesCtr> = seeds.iter().map(|s| AesCtr::new(*s)).collect();
    let mut out = vec![0u64; bodies.len()];
    out.par_chunks_mut(POLY_SIZE)
        .zip(bodies.par_chunks(POLY_SIZE))
        .enumerate()
        .for_each_init(
            || {
                (
                    gens.clone(),
                    vec![0u64; POLY_SIZE],
                    vec![0u64; POLY_SIZE],
                    key.scratch(),
                )
            },
            |(gens, a, prod, sc), (j, (dst, src))| {
                a.fill(0);
                for g in gens.iter_mut() {
                    g.add_mask(j, a);
                }
                key.mul(a, prod, sc);
                for ((d, b), p) in dst.iter_mut().zip(src).zip(prod.iter()) {
                    *d = (b << drop_bits).wrapping_sub(*p);
                }
            },
        );
    out
}

/// Sum of the masks of `seeds` for every block (the "expanded" form of an
/// encrypted sum). Only used to measure the alternative where the aggregator
/// regenerates masks itself.
pub(crate) fn expand_masks(seeds: &[u128], coefficients: usize) -> Vec<u64> {
    let gens: Vec<AesCtr> = seeds.iter().map(|s| AesCtr::new(*s)).collect();
    let blocks = coefficients.div_ceil(POLY_SIZE);
    let mut out = vec![0u64; blocks * POLY_SIZE];
    out.par_chunks_mut(POLY_SIZE).enumerate().for_each_init(
        || gens.clone(),
        |gens, (j, dst)| {
            for g in gens.iter_mut() {
                g.add_mask(j, dst);
            }
        },
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use tfhe::core_crypto::algorithms::polynomial_algorithms::polynomial_wrapping_add_mul_assign;
    use tfhe::core_crypto::commons::math::random::{CompressionSeed, Seed};
    use tfhe::core_crypto::prelude::*;

    fn random_key(rng: &mut impl Rng) -> Vec<u64> {
        (0..POLY_SIZE).map(|_| rng.random_range(0..2u64)).collect()
    }

    /// The FFT product equals TFHE-rs's exact (Karatsuba) product.
    #[test]
    fn fft_product_is_exact() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for round in 0..20 {
            let bits = if round == 0 {
                vec![1u64; POLY_SIZE]
            } else {
                random_key(&mut rng)
            };
            let kf = KeyFourier::new(&bits);
            let mut sc = kf.scratch();
            let a: Vec<u64> = match round {
                1 => vec![u64::MAX; POLY_SIZE],
                2 => vec![1u64 << 63; POLY_SIZE],
                3 => vec![(1u64 << 21) | (1 << 42) | (1 << 20); POLY_SIZE],
                _ => (0..POLY_SIZE).map(|_| rng.random()).collect(),
            };
            let mut ours = vec![0u64; POLY_SIZE];
            kf.mul(&a, &mut ours, &mut sc);
            let mut exact = Polynomial::new(0u64, PolynomialSize(POLY_SIZE));
            polynomial_wrapping_add_mul_assign(
                &mut exact,
                &Polynomial::from_container(a.as_slice()),
                &Polynomial::from_container(bits.as_slice()),
            );
            assert_eq!(ours.as_slice(), exact.as_ref(), "round {round}");
        }
    }

    /// Our bodies + seed form a TFHE-rs seeded GLWE list that TFHE-rs itself decrypts.
    #[test]
    fn tfhe_rs_decrypts_our_ciphertexts() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let bits = random_key(&mut rng);
        let kf = KeyFourier::new(&bits);
        let blocks = 3;
        let plain: Vec<u64> = (0..blocks * POLY_SIZE)
            .map(|_| (rng.random_range(-1000i64..1000) as u64) << 25)
            .collect();
        let seed: u128 = rng.random();
        let bodies = encrypt_bodies(
            &kf,
            plain.len(),
            |first, out| out.copy_from_slice(&plain[first..first + out.len()]),
            seed,
            rng.random(),
            0,
        );

        let seeded = SeededGlweCiphertextList::from_container(
            bodies.clone(),
            GlweSize(2),
            PolynomialSize(POLY_SIZE),
            CompressionSeed::from(Seed(seed)),
            CiphertextModulus::<u64>::new_native(),
        );
        let mut full = GlweCiphertextList::new(
            0u64,
            GlweSize(2),
            PolynomialSize(POLY_SIZE),
            GlweCiphertextCount(blocks),
            CiphertextModulus::new_native(),
        );
        decompress_seeded_glwe_ciphertext_list::<_, _, _, DefaultRandomGenerator>(
            &mut full, &seeded,
        );
        let key = GlweSecretKey::from_container(bits.clone(), PolynomialSize(POLY_SIZE));
        let mut out = PlaintextList::new(0u64, PlaintextCount(blocks * POLY_SIZE));
        decrypt_glwe_ciphertext_list(&key, &full, &mut out);
        for (i, (p, q)) in out.as_ref().iter().zip(&plain).enumerate() {
            let e = p.wrapping_sub(*q) as i64;
            assert!(e.abs() <= 1 << 17, "coefficient {i}: noise {e}");
        }
        // and our own decryption agrees with TFHE-rs's
        let ours = decrypt_phases(&kf, &bodies, &[seed], 0);
        assert_eq!(ours.as_slice(), out.as_ref());
    }

    /// The mask stream equals TFHE-rs's mask generator for the same seed.
    #[test]
    fn mask_stream_matches_tfhe_rs() {
        use tfhe::core_crypto::commons::math::random::RandomGenerator;
        let seed = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210u128;
        let mut reference = RandomGenerator::<DefaultRandomGenerator>::new(Seed(seed));
        let mut expected = vec![0u64; 2 * POLY_SIZE];
        reference.fill_slice_with_random_uniform(&mut expected);
        let mut ours = vec![0u64; 2 * POLY_SIZE];
        let mut g = AesCtr::new(seed);
        g.mask(0, &mut ours[..POLY_SIZE]);
        g.mask(1, &mut ours[POLY_SIZE..]);
        assert_eq!(ours, expected);
    }

    /// Noise stays within TUniform(17) and is centred.
    #[test]
    fn noise_is_bounded_and_centred() {
        let mut g = AesCtr::new(42);
        let mut sum = 0i64;
        let mut acc = vec![0u64; POLY_SIZE];
        for j in 0..16 {
            acc.fill(0);
            g.add_noise(j, &mut acc);
            for e in &acc {
                let e = *e as i64;
                assert!(e.abs() <= 1 << 17);
                sum += e;
            }
        }
        let mean = sum as f64 / (16.0 * POLY_SIZE as f64);
        assert!(mean.abs() < 2000.0, "mean {mean}");
    }
}

#[cfg(test)]
mod timing {
    use super::*;
    #[test]
    #[ignore]
    fn time_pieces() {
        let bits: Vec<u64> = (0..POLY_SIZE as u64).map(|i| (i * 7 + 3) % 5 % 2).collect();
        let kf = KeyFourier::new(&bits);
        let mut sc = kf.scratch();
        let a: Vec<u64> = (0..POLY_SIZE as u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        let mut out = vec![0u64; POLY_SIZE];
        let t = std::time::Instant::now();
        for _ in 0..500 {
            kf.mul(&a, &mut out, &mut sc);
        }
        eprintln!(
            "mul: {:.1} us/block",
            t.elapsed().as_secs_f64() * 1e6 / 500.0
        );
        let t = std::time::Instant::now();
        for _ in 0..50 {
            let mut exact = Polynomial::new(0u64, PolynomialSize(POLY_SIZE));
            tfhe::core_crypto::algorithms::polynomial_algorithms::polynomial_wrapping_add_mul_assign(
                &mut exact,
                &Polynomial::from_container(a.as_slice()),
                &Polynomial::from_container(bits.as_slice()),
            );
        }
        eprintln!(
            "tfhe-rs product: {:.1} us/block",
            t.elapsed().as_secs_f64() * 1e6 / 50.0
        );
        let view = kf.fft.as_view();
        let t = std::time::Instant::now();
        for _ in 0..500 {
            view.forward_as_torus(
                sc.fourier.as_mut_view(),
                Polynomial::from_container(a.as_slice()),
                sc.buffers.stack(),
            );
        }
        eprintln!("fwd: {:.1} us", t.elapsed().as_secs_f64() * 1e6 / 500.0);
        let t = std::time::Instant::now();
        for _ in 0..500 {
            view.backward_as_torus(
                Polynomial::from_container(out.as_mut_slice()),
                sc.fourier.as_view(),
                sc.buffers.stack(),
            );
        }
        eprintln!("inv: {:.1} us", t.elapsed().as_secs_f64() * 1e6 / 500.0);
        let values: Vec<f64> = (0..1_000_000)
            .map(|i| (i % 1000) as f64 / 500.0 - 1.0)
            .collect();
        for _ in 0..3 {
            let t = std::time::Instant::now();
            let p = crate::crypto::ParamSet::Standard64;
            crate::crypto::encoding::check(p, 16, 64, &values, 100.0).unwrap();
            let t1 = t.elapsed().as_secs_f64() * 1e3;
            let t = std::time::Instant::now();
            let enc = |first: usize, out: &mut [u64]| {
                crate::crypto::encoding::encode_into(
                    p.delta_log2(64),
                    16,
                    &values,
                    100.0,
                    first,
                    out,
                )
            };
            let bodies = encrypt_bodies(&kf, values.len() + 1, enc, 1, 2, 0);
            let t2 = t.elapsed().as_secs_f64() * 1e3;
            let t = std::time::Instant::now();
            let ph = decrypt_phases(&kf, &bodies, &[1, 3, 4, 5, 6], 0);
            let t3 = t.elapsed().as_secs_f64() * 1e3;
            eprintln!(
                "1M: encode {t1:.1} ms, encrypt {t2:.1} ms, decrypt5 {t3:.1} ms {}",
                ph.len()
            );
        }
        let mut g = AesCtr::new(1);
        let t = std::time::Instant::now();
        for j in 0..500 {
            g.mask(j, &mut out);
        }
        eprintln!(
            "mask: {:.1} us/block",
            t.elapsed().as_secs_f64() * 1e6 / 500.0
        );
        let t = std::time::Instant::now();
        for j in 0..500 {
            g.add_noise(j, &mut out);
        }
        eprintln!(
            "noise: {:.1} us/block",
            t.elapsed().as_secs_f64() * 1e6 / 500.0
        );
    }
}
