//! `fedhe simulate --model gbdt`: a gradient-boosted trees federation
//! in-process, with a line per tree.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use fedhe::client::{ClientEvent, TreeRecord};
use fedhe::federation::{GbdtSimulation, SimEvent, SimulationConfig, simulate_gbdt};
use fedhe::model::gbdt::GbdtSettings;

/// "tree 3/100: 6 rounds, 81 ms, 4.1 MB up, 4.1 MB down".
fn tree_line(r: &TreeRecord) -> String {
    let what = if r.iteration == 0 {
        "bins".to_string()
    } else {
        format!("tree {}/{}", r.iteration, r.iterations)
    };
    let mut s = format!(
        "{what}: {} round{}, {:.0} ms",
        r.rounds,
        if r.rounds == 1 { "" } else { "s" },
        r.ms
    );
    if r.cost.bytes_up > 0 {
        s.push_str(&format!(
            ", {:.1} MB up, {:.1} MB down",
            r.cost.bytes_up as f64 / 1e6,
            r.cost.bytes_down as f64 / 1e6
        ));
    }
    if r.masked {
        s.push_str(", masked");
    }
    if let Some(note) = r.closed_note() {
        s.push_str("; ");
        s.push_str(&note);
    }
    s
}

fn run_one(cfg: &SimulationConfig, settings: GbdtSettings) -> anyhow::Result<GbdtSimulation> {
    println!(
        "{} run: {} trees of depth {}, {} bins",
        if cfg.plain { "plaintext" } else { "encrypted" },
        settings.trees,
        settings.depth,
        settings.bins
    );
    let res = simulate_gbdt(
        cfg,
        settings,
        &mut |e| {
            if let SimEvent::Client {
                index: 0,
                event: ClientEvent::Tree(r),
            } = e
            {
                println!("{}", tree_line(r));
            }
        },
        Arc::new(AtomicBool::new(false)),
    )?;
    let t = res.totals();
    println!(
        "test ({} rows, gradient-boosted trees): {}",
        res.test.rows(),
        res.test.summary()
    );
    if let Some(f) = &res.federated {
        print_federated(f, &res.model);
    }
    let mut ms: Vec<f64> = res
        .trees
        .iter()
        .filter(|r| r.iteration > 0)
        .map(|r| r.ms)
        .collect();
    ms.sort_by(f64::total_cmp);
    println!(
        "{} trees in {} rounds (after the statistics round and the bins round), {:.0} ms per \
         tree (mean; median {:.0} ms), {:.1} MB up per tree per site; the same trees at every \
         site: {}",
        t.iterations,
        t.rounds,
        t.ms / t.iterations.max(1) as f64,
        ms.get(ms.len() / 2).copied().unwrap_or(0.0),
        t.bytes_up as f64 / t.iterations.max(1) as f64 / 1e6,
        if res.same_at_every_site { "yes" } else { "NO" }
    );
    println!("total {:.0} ms", res.total_ms);
    Ok(res)
}

/// Runs the trees' simulation (and with `compare`, the plaintext one
/// after it); writes the encrypted run's model to `model_out`.
pub fn simulate(
    cfg: &SimulationConfig,
    settings: GbdtSettings,
    compare: bool,
    model_out: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    let first = run_one(cfg, settings)?;
    if let Some(path) = model_out {
        first.model.save(path)?;
        println!("global model written to {}", path.display());
    }
    if compare {
        let plain = run_one(
            &SimulationConfig {
                plain: true,
                ..cfg.clone()
            },
            settings,
        )?;
        let same = first.model.ensemble == plain.model.ensemble;
        println!(
            "encrypted and plaintext trees: {} (test {}: encrypted {:.4}, plaintext {:.4})",
            if same { "identical" } else { "DIFFERENT" },
            first.test.score_name(),
            first.test.score(),
            plain.test.score()
        );
    }
    Ok(())
}

/// The evaluation round's pooled figures: the trees on every site's
/// held-out rows, and the federated test line with `fedhe predict`'s table.
fn print_federated(f: &fedhe::model::FederatedFigures, model: &fedhe::model::ModelFile) {
    if let Some(v) = f.validation_of(f.last_round) {
        println!(
            "federated validation (the trees, {} held-out rows): {}",
            v.rows(),
            v.summary()
        );
    }
    if let Some(t) = &f.test {
        println!("{}", fedhe::client::federated_test_line(f.best_round, t));
        print!("{}", super::data_cmds::evaluation_table(t, model));
    }
}

/// `fedhe client` on a gradient-boosted trees plan: the trees' rounds,
/// with a line per tree, then (with `[evaluation]`) the evaluation round on
/// this site's held-out rows and `test` rows; the model written to
/// `model_out`.
pub fn client(
    joined: &fedhe::session::Joined,
    data: &fedhe::data::Dataset,
    (file, model_out): (&std::path::Path, Option<&std::path::Path>),
    test: Option<&fedhe::data::Dataset>,
    cancel: &AtomicBool,
) -> anyhow::Result<()> {
    let run = joined.run_gbdt_tested(
        data,
        test,
        vec![file.display().to_string()],
        &mut |e| match e {
            // Trees are not standardized: the round gives their bins' statistics.
            ClientEvent::Standardized { global_rows, .. } => {
                println!("column statistics: {global_rows} rows across the federation");
            }
            ClientEvent::Tree(r) => println!("{}", tree_line(r)),
            _ => {}
        },
        cancel,
    )?;
    if let Some(v) = &run.validation {
        println!("the trees on this site's held-out rows: {}", v.summary());
    }
    if let Some(f) = &run.outcome.federated {
        print_federated(f, &run.model);
    }
    let t = fedhe::client::TreeTotals::of(&run.outcome.trees);
    let closed = run
        .outcome
        .trees
        .iter()
        .filter(|r| r.closed_at.is_some())
        .count();
    println!(
        "done: {} trees of {} iterations in {} rounds, {:.0} ms per tree{}",
        run.model.ensemble.as_ref().map_or(0, |e| e.trees.len()),
        t.iterations,
        t.rounds,
        t.ms / t.iterations.max(1) as f64,
        if closed > 0 {
            format!(" ({closed} closed early: the sites summed changed mid-tree)")
        } else {
            String::new()
        }
    );
    if let Some(c) = joined.api.status().ok().and_then(|s| s.complete) {
        println!("federation complete: {}", c.describe());
    }
    if let Some(path) = model_out {
        run.model.save(path)?;
        println!("global model written to {}", path.display());
    }
    Ok(())
}
