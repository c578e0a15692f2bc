//! Server optimizers and FedProx (issue 20 part 2): every site applies the
//! server optimizer to the decrypted mean, so all sites hold bit-identical
//! global models, including across a site's restart (its state file keeps
//! the server optimizer's state); FedProx pulls local training towards the
//! global model; the plan names them.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use fedhe::client::ClientEvent;
use fedhe::crypto::{ParamSet, SecretKey};
use fedhe::model::{
    Architecture, Head, ServerOptimizer, ServerOptimizerKind, ServerState, TrainConfig, build,
    train,
};
use fedhe::plan::{Plan, ProposeOptions, Training};
use fedhe::session::ClientState;

use crate::common::{connect, sample, serve_plan};

/// A plan for the sample clients: 4 rounds of 1 epoch, three sites named
/// on the roster (every round waits for all three), the server optimizer
/// `kind`.
fn plan(kind: ServerOptimizerKind) -> Plan {
    let (mut plan, _) = fedhe::plan::propose(
        &sample("clients/client_1.csv"),
        &ProposeOptions {
            training: Training {
                rounds: 4,
                sgd: fedhe::model::LocalSgd {
                    epochs: 1,
                    ..Training::default().sgd
                },
                validation_share: 0.0,
            },
            ..ProposeOptions::default()
        },
    )
    .unwrap();
    plan.training.sgd.optimizer.server = ServerOptimizer {
        // Not the defaults, so that the plan must say it.
        lr: 0.2,
        ..ServerOptimizer::of(kind)
    };
    plan.quorum.roster = vec!["a".into(), "b".into(), "c".into()];
    plan.quorum.min_clients = 3;
    plan
}

/// Site `id` over HTTP with its state file in `dir`; with `stop_in`, it is
/// stopped (its process state dropped) in the middle of that round's local
/// training. Returns the global model's parameters, or `None` when stopped.
fn site(
    url: &str,
    key: &Arc<SecretKey>,
    dir: &Path,
    id: &str,
    file: &str,
    stop_in: Option<u64>,
) -> Option<Vec<f64>> {
    let c = connect(url, key);
    let data = c.load_site(&sample(file)).unwrap();
    let state = dir.join(format!("client-{id}.state.json"));
    let joined = c.join(id, id, Some(&state)).unwrap();
    let cancel = AtomicBool::new(false);
    let mut on_event = |e: &ClientEvent| {
        if let ClientEvent::Epoch(p) = e
            && Some(p.round) == stop_in
        {
            cancel.store(true, Ordering::Relaxed);
        }
    };
    match joined.run(&data.dataset, vec![], &mut on_event, &cancel) {
        Ok(run) => Some(run.model.params.clone()),
        Err(fedhe::session::SessionError::Cancelled) => None,
        Err(e) => panic!("{id}: {e}"),
    }
}

/// One federation of three sites with server optimizer `kind`; site `a`
/// is stopped in round 3's training and restarted from its state file.
/// Returns the three final models and `a`'s saved server state.
fn federation(kind: ServerOptimizerKind) -> (Vec<Vec<f64>>, ServerState, bool) {
    let key = Arc::new(SecretKey::generate(ParamSet::Standard64));
    let dir = tempfile::tempdir().unwrap();
    let srv = serve_plan(&key, plan(kind));
    let others: Vec<_> = [("b", "clients/client_2.csv"), ("c", "clients/client_3.csv")]
        .into_iter()
        .map(|(id, file)| {
            let (url, key, dir) = (srv.url().to_string(), key.clone(), dir.path().to_owned());
            std::thread::spawn(move || site(&url, &key, &dir, id, file, None).unwrap())
        })
        .collect();
    let a_file = "clients/client_1.csv";
    assert!(site(srv.url(), &key, dir.path(), "a", a_file, Some(3)).is_none());
    let state_file = dir.path().join("client-a.state.json");
    let saved = ClientState::load(&state_file).unwrap().unwrap();
    let at_stop = saved.server_optimizer.expect("the state after round 2");
    assert_eq!(at_stop.round, 2, "saved after the last round it took");
    // Restarted: it resumes from its state file and trains on.
    let a = site(srv.url(), &key, dir.path(), "a", a_file, None).unwrap();
    let mut models = vec![a];
    models.extend(others.into_iter().map(|h| h.join().unwrap()));
    let end = ClientState::load(&state_file).unwrap().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&state_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the state file stays owner-only");
    }
    let moments = !at_stop.m.is_empty();
    (models, end.server_optimizer.unwrap(), moments)
}

/// With every server optimizer, the three sites' global models are bit for
/// bit the same after site `a` was stopped mid-round and resumed, and the
/// state file holds the final global model exactly.
#[test]
fn every_server_optimizer_keeps_all_sites_bit_identical_across_a_restart() {
    let mut finals = Vec::new();
    for kind in ServerOptimizerKind::ALL {
        let (models, state, moments) = federation(kind);
        for (i, m) in models.iter().enumerate() {
            let same = m
                .iter()
                .zip(&models[0])
                .all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{kind}: site {i} differs from site a");
        }
        assert_eq!(state.round, 4, "{kind}");
        assert_eq!(state.global, models[0], "{kind}: the state file's model");
        // FedAvg keeps no moments; the others carried theirs over the restart.
        assert_eq!(moments, kind != ServerOptimizerKind::FedAvg, "{kind}");
        finals.push((kind, models[0].clone()));
    }
    // Each rule moved the model its own way.
    for (i, (ka, a)) in finals.iter().enumerate() {
        for (kb, b) in &finals[i + 1..] {
            assert_ne!(a, b, "{ka} and {kb} gave the same model");
        }
    }
}

/// FedProx's proximal term pulls local training back towards the model it
/// started from: the same run ends nearer to it with μ > 0, and the first
/// step (where `w = w_global`) is unchanged.
#[test]
fn fedprox_keeps_local_training_near_the_global_model() {
    let data = fedhe::data::load_csv(
        &sample("clients/client_1.csv"),
        &fedhe::data::CsvOptions {
            label: Some("diagnosis".into()),
            ..fedhe::data::CsvOptions::default()
        },
    )
    .unwrap()
    .dataset;
    let x = fedhe::data::Standardizer::fit(&data.x).transformed(&data.x);
    let y = data.y.clone();
    let d = x.ncols();
    let start = build(&Architecture::Mlp { hidden: vec![8] }, d, Head::Logistic, 7).unwrap();
    let run = |mu: f64, epochs: usize, batch: usize| {
        let mut cfg = TrainConfig {
            epochs,
            lr: 0.1,
            batch_size: batch,
            l2: 0.0,
            ..TrainConfig::default()
        };
        cfg.optimizer.prox_mu = mu;
        let mut m = start.clone();
        train(&mut *m, &x, &y, &cfg, &mut |_| ControlFlow::Continue(())).unwrap();
        let dist: f64 = m
            .params()
            .iter()
            .zip(start.params())
            .map(|(a, b)| (a - b) * (a - b))
            .sum();
        (m.params().to_vec(), dist.sqrt())
    };
    // One full-batch step: the proximal gradient μ (w − w_global) is 0.
    assert_eq!(run(1.0, 1, 1000).0, run(0.0, 1, 1000).0);
    let (_, free) = run(0.0, 10, 16);
    let (_, prox) = run(1.0, 10, 16);
    assert!(prox > 0.0 && prox < 0.8 * free, "prox {prox} vs {free}");
}

/// The plan names the server optimizer and FedProx; a plan without them
/// is FedAvg without a proximal term (and keeps its fingerprint); bad
/// values are refused naming the key.
#[test]
fn the_plan_names_the_server_optimizer_and_prox_mu() {
    let mut p = plan(ServerOptimizerKind::FedYogi);
    p.training.sgd.optimizer.prox_mu = 0.01;
    let text = p.to_toml();
    for key in [
        "server_optimizer = \"fedyogi\"",
        "server_lr = 0.2",
        "prox_mu = 0.01",
    ] {
        assert!(text.contains(key), "{key} in\n{text}");
    }
    let back = Plan::from_toml(&text, "written").unwrap();
    assert_eq!(back.training, p.training);
    // Without server_lr: the optimizer's default.
    let text = text.replace("server_lr = 0.2\n", "");
    let back = Plan::from_toml(&text, "written").unwrap();
    assert_eq!(back.training.sgd.optimizer.server.lr, 0.1);
    // A plan without the keys: FedAvg at η = 1.
    let mut plain = p.clone();
    plain.training.sgd.optimizer.server = ServerOptimizer::default();
    plain.training.sgd.optimizer.prox_mu = 0.0;
    let written = plain.to_toml();
    assert!(!written.contains("server_") && !written.contains("prox_mu"));
    let bad = text.replace("prox_mu = 0.01", "prox_mu = -1.0");
    let e = Plan::from_toml(&bad, "bad.toml").unwrap_err().to_string();
    assert!(e.contains("training.prox_mu"), "{e}");
    let bad = p.to_toml().replace("server_lr = 0.2", "server_lr = 0.0");
    let e = Plan::from_toml(&bad, "bad.toml").unwrap_err().to_string();
    assert!(e.contains("training.server_optimizer"), "{e}");
    let bad = p.to_toml().replace("\"fedyogi\"", "\"fedsomething\"");
    let e = Plan::from_toml(&bad, "bad.toml").unwrap_err().to_string();
    assert!(e.contains("fedadam"), "{e}");
}
