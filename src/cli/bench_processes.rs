//! `fedhe bench gbdt --processes`: the benchmark's federation as separate
//! processes of this binary, as a consortium runs it: `fedhe serve` with its
//! state folder and one `fedhe client` per site (each with its state file
//! and mask ledger), over loopback HTTP. Timed from the first site's own
//! per-tree lines.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use fedhe::federation::GbdtBenchFiles;
use fedhe::model::gbdt::GbdtSettings;

use super::bench_cmds::GbdtBenchArgs;

/// A child process killed and reaped when dropped: nothing outlives the
/// benchmark, whichever way it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        // Best effort: the process may have exited already.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One site's `tree k/N: R rounds, X ms, A MB up, B MB down, …` line.
#[derive(Debug, Clone, Copy, PartialEq)]
struct TreeLine {
    rounds: u32,
    ms: f64,
    up_mb: f64,
    down_mb: f64,
}

fn parse_tree_line(line: &str) -> Option<TreeLine> {
    let (count, rest) = line.strip_prefix("tree ")?.split_once(": ")?;
    if !count.contains('/') {
        // A wait line ("tree 3, level 2: …").
        return None;
    }
    let mut parts = rest.split(", ");
    let mut next = |suffix: &str| parts.next()?.strip_suffix(suffix).map(str::to_string);
    Some(TreeLine {
        rounds: next(" rounds")?.parse().ok()?,
        ms: next(" ms")?.parse().ok()?,
        up_mb: next(" MB up")?.parse().ok()?,
        down_mb: next(" MB down")?.parse().ok()?,
    })
}

/// Runs the benchmark's federation as processes and prints what the first
/// site measured.
pub fn run(a: &GbdtBenchArgs, settings: GbdtSettings) -> anyhow::Result<()> {
    if a.plain {
        bail!("--processes runs the encrypted federation; --plain is in-process only");
    }
    // Removed when dropped, whichever way the benchmark ends (after the
    // processes, which are declared after it and so dropped first).
    let scratch = tempfile::Builder::new()
        .prefix("fedhe-bench-gbdt-")
        .tempdir()
        .context("creating a temporary folder for the benchmark")?;
    let dir = scratch.path();
    let sites = a.sites.max(1);
    let files = fedhe::federation::write_gbdt_bench_files(
        dir,
        (a.rows, a.features, sites),
        settings,
        a.params,
        !a.no_masks,
    )?;
    let exe = std::env::current_exe().context("finding this program to start its processes")?;
    let start = Instant::now();
    let (server, url) = serve(&exe, dir, &files)?;
    let mut clients = Vec::with_capacity(sites);
    for (k, data) in files.sites.iter().enumerate() {
        clients.push(client(&exe, dir, &files, &url, k + 1, data)?);
    }
    for (k, c) in clients.iter_mut().enumerate() {
        let status = c.0.wait()?;
        if !status.success() {
            bail!(
                "site {} failed ({status}):\n{}",
                k + 1,
                log_tail(dir, k + 1)
            );
        }
    }
    let total_s = start.elapsed().as_secs_f64();
    drop(server);
    let trees: Vec<TreeLine> = std::fs::read_to_string(log_path(dir, 1))?
        .lines()
        .filter_map(parse_tree_line)
        .collect();
    if trees.is_empty() {
        bail!("site 1 printed no tree lines:\n{}", log_tail(dir, 1));
    }
    let models = (1..=sites)
        .map(|k| {
            let path = dir.join(format!("s{k}.json"));
            Ok(fedhe::model::ModelFile::load(&path)?.ensemble)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let same = models.windows(2).all(|w| w[0] == w[1]);
    report(a, &trees, total_s, same)
}

fn log_path(dir: &Path, k: usize) -> PathBuf {
    dir.join(format!("s{k}.log"))
}

/// The last lines of site `k`'s output (for an error).
fn log_tail(dir: &Path, k: usize) -> String {
    let text = std::fs::read_to_string(log_path(dir, k)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..].join("\n")
}

/// `fedhe serve` on an ephemeral loopback port with a state folder; its
/// URL from its first lines.
fn serve(exe: &Path, dir: &Path, files: &GbdtBenchFiles) -> anyhow::Result<(Killed, String)> {
    let log = std::fs::File::create(dir.join("serve.log"))?;
    let mut child = Killed(
        Command::new(exe)
            .args(["serve", "--bind", "127.0.0.1:0", "--public-key"])
            .arg(&files.public_key)
            .arg("--plan")
            .arg(&files.plan)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--operator-token-file")
            .arg(dir.join("operator.token"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("starting fedhe serve")?,
    );
    let out = child
        .0
        .stdout
        .take()
        .ok_or_else(|| anyhow!("fedhe serve has no output"))?;
    let mut lines = BufReader::new(out).lines();
    let url = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("FedHE aggregator listening on ")
                .map(|u| u.trim().to_string())
        })
        .ok_or_else(|| anyhow!("fedhe serve did not start: see its log above"))?;
    // Drained, so that the aggregator never blocks on a full pipe.
    std::thread::Builder::new()
        .name("bench-serve-output".into())
        .spawn(move || lines.for_each(drop))?;
    Ok((child, url))
}

/// Site `k`'s `fedhe client`, its output in `s{k}.log`.
fn client(
    exe: &Path,
    dir: &Path,
    files: &GbdtBenchFiles,
    url: &str,
    k: usize,
    data: &Path,
) -> anyhow::Result<Killed> {
    let log = std::fs::File::create(log_path(dir, k))?;
    let id = format!("s{k}");
    Ok(Killed(
        Command::new(exe)
            .args([
                "client", "--server", url, "--name", &id, "--id", &id, "--key",
            ])
            .arg(&files.secret_key)
            .arg("--data")
            .arg(data)
            .arg("--state")
            .arg(dir.join(format!("{id}.state.json")))
            .arg("--model-out")
            .arg(dir.join(format!("{id}.json")))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting fedhe client {id}"))?,
    ))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn report(a: &GbdtBenchArgs, trees: &[TreeLine], total_s: f64, same: bool) -> anyhow::Result<()> {
    let ms: Vec<f64> = trees.iter().map(|t| t.ms).collect();
    let min = ms.iter().copied().fold(f64::INFINITY, f64::min);
    let max = ms.iter().copied().fold(0.0, f64::max);
    let rounds = median(trees.iter().map(|t| f64::from(t.rounds)).collect());
    let up = median(trees.iter().map(|t| t.up_mb).collect());
    let down = median(trees.iter().map(|t| t.down_mb).collect());
    let tree_ms = median(ms);
    if a.json {
        let v = serde_json::json!({
            "rows": a.rows, "features": a.features, "sites": a.sites.max(1),
            "trees": trees.len(), "depth": a.depth, "bins": a.bins,
            "masked": !a.no_masks, "processes": true,
            "tree_ms_median": tree_ms, "tree_ms_min": min, "tree_ms_max": max,
            "rounds_per_tree": rounds, "mb_up_per_tree": up, "mb_down_per_tree": down,
            "total_s": total_s, "same_at_every_site": same,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let how = if a.no_masks {
        "encrypted"
    } else {
        "encrypted and masked"
    };
    println!(
        "gbdt benchmark: {} rows × {} binary features over {} sites ({how}; fedhe serve and one fedhe client process per site over loopback HTTP, state on disk), {} trees of depth {}, {} bins",
        a.rows,
        a.features,
        a.sites.max(1),
        trees.len(),
        a.depth,
        a.bins
    );
    println!("| measurement (site 1, from its own lines; every site does the same) | value |");
    println!("|---|---:|");
    println!("| time per tree, median (min – max) | {tree_ms:.0} ms ({min:.0} – {max:.0}) |");
    println!("| rounds per tree | {rounds:.0} |");
    println!("| bytes up / down per tree | {up:.1} MB / {down:.1} MB |");
    println!(
        "| whole run (processes started to the last site done: keys, statistics, bins, trees) | {total_s:.1} s |"
    );
    println!(
        "| the same trees at every site | {} |",
        if same { "yes" } else { "NO" }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_lines_are_read_and_wait_lines_are_not() {
        assert_eq!(
            parse_tree_line("tree 3/20: 6 rounds, 121 ms, 0.8 MB up, 0.8 MB down, masked"),
            Some(TreeLine {
                rounds: 6,
                ms: 121.0,
                up_mb: 0.8,
                down_mb: 0.8
            })
        );
        assert_eq!(
            parse_tree_line("tree 3, level 2: 3 of 3 submitted (masked: …)"),
            None
        );
        assert_eq!(parse_tree_line("done: 20 trees"), None);
    }
}
