//! `fedhe bench crypto`: encrypt / aggregate / decrypt timings, sizes and errors.
//!
//! Each client's values are uniform in [-2, 2] (seeded, reproducible) and its
//! sample weight cycles through 120, 250, 500, 1000, 2000 rows. Timings are
//! medians over `repeats` runs (encryption: over all clients of all runs).
//! "aggregate" is what the aggregator does per round: check every update in
//! place ([`UpdateRef::parse`]) and add it from its bytes to the accumulator. "expand masks" is the measured
//! alternative design where the aggregator also regenerates every mask into an
//! expanded sum.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::params::ParamSet;
use super::{Accumulator, CryptoError, SecretKey, UpdateRef, decrypt_mean, encrypt_weighted, glwe};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub sizes: Vec<usize>,
    pub clients: usize,
    pub repeats: usize,
    pub params: Vec<ParamSet>,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            sizes: vec![31, 4_096, 100_000, 1_000_000],
            clients: 5,
            repeats: 5,
            params: ParamSet::ALL.to_vec(),
        }
    }
}

/// Key generation figures for one parameter set.
#[derive(Debug, Clone, Serialize)]
pub struct KeygenRow {
    pub params: ParamSet,
    pub keygen_ms: f64,
    pub secret_key_bytes: usize,
    pub public_key_bytes: usize,
}

/// Figures for one parameter set and model size.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    pub params: ParamSet,
    pub values: usize,
    pub clients: usize,
    pub encrypt_ms: f64,
    pub ciphertext_bytes: usize,
    pub ratio_to_f32: f64,
    pub aggregate_ms: f64,
    pub expand_masks_ms: f64,
    pub sum_bytes: usize,
    pub decrypt_ms: f64,
    pub max_abs_error: f64,
    pub error_bound: f64,
}

/// The whole benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub threads: usize,
    /// The first key generated in a process also plans the FFT (TFHE-rs measures
    /// candidate algorithms for ~10 ms); later keys reuse the plan.
    pub first_keygen_ms: f64,
    pub repeats: usize,
    pub keygen: Vec<KeygenRow>,
    pub rows: Vec<BenchRow>,
}

fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn ms(start: Instant) -> f64 {
    start.elapsed().as_secs_f64() * 1e3
}

const WEIGHTS: [f64; 5] = [120.0, 250.0, 500.0, 1000.0, 2000.0];

/// Runs the benchmark; `progress` receives one line per finished step.
pub fn run(cfg: &BenchConfig, progress: &mut dyn FnMut(&str)) -> Result<BenchReport, CryptoError> {
    let repeats = cfg.repeats.max(1);
    let t = Instant::now();
    drop(SecretKey::generate(ParamSet::Standard64));
    let first_keygen_ms = ms(t);
    let mut keygen = Vec::new();
    let mut rows = Vec::new();
    for &params in &cfg.params {
        let mut times = Vec::new();
        let mut key = SecretKey::generate(params);
        for _ in 0..repeats {
            let t = Instant::now();
            key = SecretKey::generate(params);
            times.push(ms(t));
        }
        keygen.push(KeygenRow {
            params,
            keygen_ms: median(times),
            secret_key_bytes: key.to_bytes().len(),
            public_key_bytes: key.public().to_bytes().len(),
        });
        let public = key.public();
        for &len in &cfg.sizes {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(len as u64);
            let data: Vec<Vec<f64>> = (0..cfg.clients)
                .map(|_| (0..len).map(|_| rng.random_range(-2.0..=2.0)).collect())
                .collect();
            let weights: Vec<f64> = (0..cfg.clients)
                .map(|c| WEIGHTS[c % WEIGHTS.len()])
                .collect();
            let total: f64 = weights.iter().sum();
            let exact: Vec<f64> = (0..len)
                .map(|i| {
                    data.iter()
                        .zip(&weights)
                        .map(|(d, w)| d[i] * w)
                        .sum::<f64>()
                        / total
                })
                .collect();

            let (mut enc, mut agg, mut exp, mut dec) = (vec![], vec![], vec![], vec![]);
            let mut max_err = 0.0f64;
            let mut bound = 0.0f64;
            let mut ct_bytes = 0;
            let mut sum_bytes = 0;
            for _ in 0..repeats {
                let mut wire = Vec::new();
                for (d, w) in data.iter().zip(&weights) {
                    let t = Instant::now();
                    let u = encrypt_weighted(&key, d, *w)?;
                    enc.push(ms(t));
                    wire.push(u.to_bytes());
                }
                ct_bytes = wire[0].len();

                let t = Instant::now();
                let mut acc = Accumulator::new(&public, len);
                for bytes in &wire {
                    acc.add_ref(&UpdateRef::parse(bytes, len)?)?;
                }
                agg.push(ms(t));
                sum_bytes = acc.to_bytes().len();

                let t = Instant::now();
                let expanded = glwe::expand_masks(acc.seeds(), len + 1);
                exp.push(ms(t));
                drop(expanded);

                let t = Instant::now();
                let mean = decrypt_mean(&key, &acc)?;
                dec.push(ms(t));
                for (m, e) in mean.values.iter().zip(&exact) {
                    max_err = max_err.max((m - e).abs());
                }
                bound = mean.error_bound(key.scale_bits());
            }
            let row = BenchRow {
                params,
                values: len,
                clients: cfg.clients,
                encrypt_ms: median(enc),
                ciphertext_bytes: ct_bytes,
                ratio_to_f32: ct_bytes as f64 / (4.0 * len.max(1) as f64),
                aggregate_ms: median(agg),
                expand_masks_ms: median(exp),
                sum_bytes,
                decrypt_ms: median(dec),
                max_abs_error: max_err,
                error_bound: bound,
            };
            progress(&format!(
                "{} {} values: encrypt {:.2} ms, aggregate {:.2} ms, decrypt {:.2} ms",
                params, len, row.encrypt_ms, row.aggregate_ms, row.decrypt_ms
            ));
            rows.push(row);
        }
    }
    Ok(BenchReport {
        threads: rayon::current_num_threads(),
        first_keygen_ms,
        repeats,
        keygen,
        rows,
    })
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The report as Markdown tables.
pub fn markdown(r: &BenchReport) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "Medians over {} runs, {} rayon threads, {} clients; release build.\n\n",
        r.repeats,
        r.threads,
        r.rows.first().map(|x| x.clients).unwrap_or(0)
    ));
    s.push_str("| params | values | encrypt / client | ciphertext | vs f32 | aggregate (decode + add) | expand masks (alt.) | sum size | decrypt | max error of mean | documented bound |\n");
    s.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for x in &r.rows {
        s.push_str(&format!(
            "| {} | {} | {:.2} ms | {} B | {:.3}x | {:.2} ms | {:.2} ms | {} B | {:.2} ms | {:.2e} | {:.2e} |\n",
            x.params,
            thousands(x.values),
            x.encrypt_ms,
            thousands(x.ciphertext_bytes),
            x.ratio_to_f32,
            x.aggregate_ms,
            x.expand_masks_ms,
            thousands(x.sum_bytes),
            x.decrypt_ms,
            x.max_abs_error,
            x.error_bound
        ));
    }
    s.push_str("\n| params | keygen | secret key file | public key file |\n|---|---:|---:|---:|\n");
    for k in &r.keygen {
        s.push_str(&format!(
            "| {} | {:.2} ms | {} B | {} B |\n",
            k.params, k.keygen_ms, k.secret_key_bytes, k.public_key_bytes
        ));
    }
    s.push_str(&format!(
        "\nThe first key generated in a process also plans the FFT: {:.1} ms.\n",
        r.first_keygen_ms
    ));
    s
}
