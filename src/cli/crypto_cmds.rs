//! `keygen` and `bench crypto`.

use std::path::PathBuf;

use anyhow::Context;
use fedhe::crypto::{self, ParamSet, SecretKey, bench};

/// Arguments of `fedhe keygen`.
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Folder for secret.key (owner-only) and public.key.
    #[arg(long, default_value = "keys")]
    pub out: PathBuf,
    /// Parameter set: standard64 (8 bytes per value) or compact32 (4 bytes per value, less headroom).
    #[arg(long, default_value = "standard64")]
    pub params: ParamSet,
    /// Most clients one round's sum may hold. Each doubling beyond 64 costs
    /// every client two bits of fixed-point range (taken from the fraction by
    /// default); up to 65536 for standard64, 2048 for compact32.
    #[arg(long, default_value_t = crypto::DEFAULT_MAX_CLIENTS)]
    pub max_clients: u32,
    /// Fixed-point fractional bits (default for 64 clients: 16 for standard64,
    /// 6 for compact32; fewer for more clients, keeping the integer range).
    #[arg(long)]
    pub scale_bits: Option<u8>,
    /// Overwrite existing key files.
    #[arg(long)]
    pub force: bool,
}

/// What `fedhe bench` measures.
#[derive(Debug, clap::Subcommand)]
pub enum BenchWhat {
    /// Encrypt / aggregate / decrypt timings, sizes and errors of the encrypted updates.
    Crypto(BenchCryptoArgs),
}

/// Arguments of `fedhe bench crypto`.
#[derive(Debug, clap::Args)]
pub struct BenchCryptoArgs {
    /// Print JSON instead of Markdown tables.
    #[arg(long)]
    pub json: bool,
    /// Runs per measurement (medians are reported).
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Number of clients per round.
    #[arg(long, default_value_t = 5)]
    pub clients: usize,
    /// Model sizes (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = vec![31usize, 4_096, 100_000, 1_000_000])]
    pub sizes: Vec<usize>,
    /// Parameter sets to measure (comma-separated; default: both).
    #[arg(long, value_delimiter = ',')]
    pub params: Vec<ParamSet>,
}

pub fn keygen(a: KeygenArgs) -> anyhow::Result<()> {
    let key = SecretKey::generate_for(a.params, a.max_clients, a.scale_bits)?;
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let secret_path = a.out.join("secret.key");
    let public_path = a.out.join("public.key");
    if !a.force {
        for p in [&secret_path, &public_path] {
            if p.exists() {
                anyhow::bail!(
                    "{} already exists; pass --force to overwrite it",
                    p.display()
                );
            }
        }
    }
    key.save(&secret_path, a.force)?;
    let public = key.public();
    public.save(&public_path, a.force)?;
    let size = |p: &PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    println!("fingerprint  {}", key.fingerprint());
    let budget = key.params().client_budget_log2(key.max_clients());
    // A site's FedAvg weight is at most 2^9 units of rows
    // (`client::weight_unit`), whatever its row count.
    let range = budget
        .saturating_sub(u32::from(key.scale_bits()))
        .saturating_sub(9);
    println!(
        "parameters   {} (scale 2^{}, up to {} clients per sum; model parameters within ±2^{} = ±{} at any site size)",
        key.params(),
        key.scale_bits(),
        key.max_clients(),
        range,
        1u64 << range
    );
    println!(
        "secret key   {} ({} bytes, owner-only; give it only to the trusted clients)",
        secret_path.display(),
        size(&secret_path)
    );
    println!(
        "public key   {} ({} bytes; for the aggregator)",
        public_path.display(),
        size(&public_path)
    );
    Ok(())
}

pub fn bench(what: BenchWhat) -> anyhow::Result<()> {
    match what {
        BenchWhat::Crypto(a) => bench_crypto(a),
    }
}

fn bench_crypto(a: BenchCryptoArgs) -> anyhow::Result<()> {
    let cfg = bench::BenchConfig {
        sizes: a.sizes,
        clients: a.clients.max(1),
        repeats: a.repeats.max(1),
        params: if a.params.is_empty() {
            ParamSet::ALL.to_vec()
        } else {
            a.params
        },
    };
    let report = bench::run(&cfg, &mut |line| eprintln!("{line}"))?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", bench::markdown(&report));
    }
    Ok(())
}
