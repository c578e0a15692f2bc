//! Randomness: fresh seeds, the seeded mask keystream and the GLWE noise.
//!
//! The mask of a seeded GLWE list in TFHE-rs is the AES-128-CTR keystream of
//! its compression seed (key = the seed read little-endian, counter = the block
//! index, little-endian, starting at 0), read as little-endian u64 words, one
//! GLWE after the other (`decompress_seeded_glwe_ciphertext_list` draws
//! `k * N` words per block with no forking). This module produces that exact
//! stream with TFHE-rs's own AES block cipher (`tfhe-csprng`), eight blocks per
//! call, so any block can be regenerated independently and in parallel. A test
//! checks the result against `decompress_seeded_glwe_ciphertext_list`.

use tfhe::core_crypto::seeders::new_seeder;
use tfhe_csprng::generators::aes_ctr::{AES_CALLS_PER_BATCH, Aes128Key, AesBlockCipher};
use tfhe_csprng::generators::default::DefaultAes128BlockCipher;

use super::params::{NOISE_BOUND_LOG2, POLY_SIZE};
use ring::hkdf;

/// AES blocks of mask keystream per GLWE block (N u64 words of 16 bytes per AES block).
pub(crate) const MASK_AES_BLOCKS_PER_GLWE: u128 = (POLY_SIZE * 8 / 16) as u128;
/// AES blocks of noise keystream per GLWE block (3 bytes per TUniform(17) sample).
const NOISE_AES_BLOCKS_PER_GLWE: u128 = (POLY_SIZE * 3 / 16) as u128;

/// A fresh 128-bit seed: SHA-256 of TFHE-rs's seeder (RDSEED when
/// available) and 16 bytes of the operating system's generator, so that
/// neither source alone decides it. If the operating system's generator
/// fails (it does not on any supported platform), the seeder's alone.
pub(crate) fn fresh_seed() -> u128 {
    use ring::rand::SecureRandom;
    use sha2::Digest;
    use zeroize::Zeroize;
    let mut os = [0u8; 16];
    if ring::rand::SystemRandom::new().fill(&mut os).is_err() {
        tracing::warn!("the operating system's random generator failed; seeding from RDSEED alone");
    }
    let mut h = sha2::Sha256::new();
    h.update(b"FedHE seed v1\0");
    h.update(new_seeder().seed().0.to_le_bytes());
    h.update(os);
    os.zeroize();
    let mut d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    d.zeroize();
    let seed = u128::from_le_bytes(out);
    out.zeroize();
    seed
}

/// AES-128 in counter mode over TFHE-rs's block cipher.
#[derive(Clone)]
pub(crate) struct AesCtr {
    cipher: DefaultAes128BlockCipher,
}

impl AesCtr {
    /// Same key derivation as TFHE-rs for a `SeedKind::Ctr` seed.
    pub(crate) fn new(seed: u128) -> Self {
        Self {
            cipher: DefaultAes128BlockCipher::new(Aes128Key::new(u128::from_le(seed))),
        }
    }

    /// Fills `out` with the keystream starting at AES block `first_block`.
    /// `out.len()` must be a multiple of 128 bytes (callers use whole GLWE blocks).
    fn fill(&mut self, first_block: u128, out: &mut [u8]) {
        debug_assert_eq!(out.len() % (16 * AES_CALLS_PER_BATCH), 0);
        let mut block = first_block;
        for chunk in out.chunks_exact_mut(16 * AES_CALLS_PER_BATCH) {
            let inputs = core::array::from_fn(|i| block.wrapping_add(i as u128).to_le());
            chunk.copy_from_slice(&self.cipher.generate_batch(inputs));
            block = block.wrapping_add(AES_CALLS_PER_BATCH as u128);
        }
    }

    /// Writes the mask of GLWE block `glwe` (N words) into `out`.
    pub(crate) fn mask(&mut self, glwe: usize, out: &mut [u64]) {
        let mut bytes = [0u8; POLY_SIZE * 8];
        self.fill(glwe as u128 * MASK_AES_BLOCKS_PER_GLWE, &mut bytes);
        for (w, b) in out.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut le = [0u8; 8];
            le.copy_from_slice(b);
            *w = u64::from_le_bytes(le);
        }
    }

    /// Adds the mask of GLWE block `glwe` into `acc` (wrapping).
    pub(crate) fn add_mask(&mut self, glwe: usize, acc: &mut [u64]) {
        let mut bytes = [0u8; POLY_SIZE * 8];
        self.fill(glwe as u128 * MASK_AES_BLOCKS_PER_GLWE, &mut bytes);
        for (w, b) in acc.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut le = [0u8; 8];
            le.copy_from_slice(b);
            *w = w.wrapping_add(u64::from_le_bytes(le));
        }
    }

    /// Adds N TUniform(17) noise samples for GLWE block `glwe` into `acc`,
    /// drawn exactly as TFHE-rs draws TUniform: `b + 2` random bits `x`,
    /// `e = (x >> 1) + (x & 1) - 2^b`, so `e` lies in `[-2^b, 2^b]`.
    pub(crate) fn add_noise(&mut self, glwe: usize, acc: &mut [u64]) {
        let mut bytes = [0u8; POLY_SIZE * 3];
        self.fill(glwe as u128 * NOISE_AES_BLOCKS_PER_GLWE, &mut bytes);
        let bits = NOISE_BOUND_LOG2 + 2;
        let mask = (1u64 << bits) - 1;
        for (w, b) in acc.iter_mut().zip(bytes.chunks_exact(3)) {
            let x = (u64::from(b[0]) | u64::from(b[1]) << 8 | u64::from(b[2]) << 16) & mask;
            let e = ((x >> 1) + (x & 1)).wrapping_sub(1 << NOISE_BOUND_LOG2);
            *w = w.wrapping_add(e);
        }
    }
}

/// HKDF-SHA256 (extract with `salt`, expand with `info`) into `out` (at most
/// 255 × 32 bytes; callers ask for 16 or 32).
pub(crate) fn hkdf_expand(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) {
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let infos = [info];
    // Provably infallible: ring fails only for outputs over 255 × 32 bytes.
    #[allow(clippy::expect_used)]
    prk.expand(&infos, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .expect("HKDF-SHA256 output of at most 32 bytes");
}
