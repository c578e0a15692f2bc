//! Issue 23: privacy that holds against a lying aggregator. The quorum an
//! aggregator cannot shrink to two, DP randomness no one can replay, and no
//! mask used twice.

mod quorum {
    use fedhe::data::{LabelMapping, Target};
    use fedhe::plan::{Plan, PlanError};

    fn base() -> Plan {
        Plan::for_target(
            &Target::Binary(LabelMapping {
                column: "y".into(),
                positive: "1".into(),
                negative: "0".into(),
            }),
            vec!["a".into(), "b".into()],
            Vec::new(),
        )
    }

    /// A masked plan says 3 when it says nothing; 2 is refused (a located
    /// error naming the field) unless `[privacy]` allows unmasked pairs in
    /// words; and the new setting stays out of the canonical form when off,
    /// so existing fingerprints do not change.
    #[test]
    fn a_masked_plan_below_three_is_refused_unless_it_says_so() {
        let plan = base();
        assert_eq!(plan.quorum.min_clients, 3);
        let text = plan.to_toml();
        assert!(!text.contains("allow_unmasked_pairs"), "{text}");
        assert!(
            !String::from_utf8(plan.canonical())
                .unwrap()
                .contains("allow_unmasked_pairs")
        );

        let two = text.replace("min_clients = 3", "min_clients = 2");
        match Plan::from_toml(&two, "two.toml") {
            Err(PlanError::Invalid {
                file,
                field,
                message,
            }) => {
                assert_eq!(
                    (file.as_str(), field.as_str()),
                    ("two.toml", "quorum.min_clients")
                );
                assert!(message.contains("allow_unmasked_pairs"), "{message}");
            }
            other => panic!("a masked plan of two was not refused: {other:?}"),
        }
        let allowed = format!("{two}\n[privacy]\nallow_unmasked_pairs = true\n");
        let p = Plan::from_toml(&allowed, "pairs.toml").unwrap();
        assert!(p.privacy.allow_unmasked_pairs && p.quorum.min_clients == 2);
        assert_ne!(p.fingerprint(), plan.fingerprint());
        assert_eq!(p.min_round_members(), 1);
        assert_eq!(plan.min_round_members(), 3);
        let unmasked = format!("{two}\n[privacy]\nmasks = false\n");
        Plan::from_toml(&unmasked, "off.toml").unwrap();

        // A plan without `min_clients` gets 3 with masks, 2 without.
        let cut = text.replace("min_clients = 3\n", "");
        assert_eq!(
            Plan::from_toml(&cut, "m.toml").unwrap().quorum.min_clients,
            3
        );
        let off = format!("{cut}\n[privacy]\nmasks = false\n");
        assert_eq!(
            Plan::from_toml(&off, "o.toml").unwrap().quorum.min_clients,
            2
        );
    }

    /// `fedhe simulate` with two clients serves a plan with masks off (a
    /// pair's masks would hide nothing) and says so; with three, masks on.
    #[test]
    fn simulate_with_two_clients_turns_masks_off_and_says_so() {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_fedhe"))
            .args([
                "simulate",
                "--clients",
                "2",
                "--rounds",
                "1",
                "--epochs",
                "1",
            ])
            .arg("--data")
            .arg(crate::common::sample("breast_cancer_wdbc.csv"))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("pairwise masks: off (2 clients: a masked round needs 3 members"),
            "{stdout}"
        );
    }
}

mod dp_randomness {
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    use fedhe::client::{Exchange, LoopError, RoundSum};
    use fedhe::crypto::ParamSet;
    use fedhe::data::split::Partition;
    use fedhe::data::{CsvOptions, TargetSpec};
    use fedhe::federation::{SimData, SimulationConfig, simulate};
    use fedhe::model::Architecture;
    use fedhe::plan::{Plan, ProposeOptions, Training};
    use fedhe::privacy::{DpSettings, SiteSecret};

    /// A federation of one: the sum of a round is this site's vector, so
    /// the global model after a round is the site's own training.
    struct Alone;

    impl Exchange for Alone {
        fn contribute(
            &mut self,
            _round: u64,
            values: &[f64],
            _cancel: &AtomicBool,
        ) -> Result<RoundSum, LoopError> {
            Ok(RoundSum {
                values: values.to_vec(),
                contributors: 1,
                contributed: true,
                counted: Vec::new(),
                cost: Default::default(),
                masked: false,
            })
        }
    }

    fn dp(noise: f64) -> DpSettings {
        DpSettings {
            clip: 1.0,
            noise_multiplier: Some(noise),
            target_epsilon: None,
            max_epsilon: None,
            delta: None,
        }
    }

    /// What anyone can read from `GET /plan` and the client list: the plan
    /// (its seed) and the site's id. Before issue 23 a site's DP training
    /// was a function of these and its rows; now it is not, while the site
    /// itself (its secret in its state file) retrains bit for bit.
    #[test]
    fn a_dp_run_recomputed_from_the_plan_and_the_site_id_does_not_match() {
        let (mut plan, _) = fedhe::plan::propose(
            &crate::common::sample("train.csv"),
            &ProposeOptions {
                training: Training {
                    rounds: 2,
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
        plan.privacy.dp = Some(dp(1.0));
        let fp = plan.fingerprint().to_string();
        let data = fedhe::data::load_csv(&crate::common::sample("train.csv"), &plan.csv_options())
            .unwrap()
            .dataset;
        let run = |plan: &Plan, secret: Option<&SiteSecret>| {
            let r = super::run_site(&mut Alone, plan, &fp, "site-a", secret, &data);
            r.outcome.model.params().to_vec()
        };
        let secret = SiteSecret::generate().unwrap();
        let site = run(&plan, Some(&secret));
        // The site restarted: the same secret retrains the same values.
        assert_eq!(run(&plan, Some(&secret)), site);
        // The replay from public inputs: no match, and no two replays agree.
        let replay = run(&plan, None);
        assert_ne!(replay, site);
        assert_ne!(run(&plan, None), replay);
        assert_ne!(run(&plan, Some(&SiteSecret::generate().unwrap())), site);
        // Without DP the public seed decides everything (nothing to hide).
        plan.privacy.dp = None;
        assert_eq!(run(&plan, None), run(&plan, None));
    }

    /// `fedhe simulate` twice from identical inputs with DP-SGD (the
    /// issue's reproduction: bit-identical models before): different
    /// models now.
    #[test]
    fn two_dp_federations_from_identical_inputs_give_different_models() {
        let cfg = SimulationConfig {
            data: SimData::Split {
                data: crate::common::sample("breast_cancer_wdbc.csv"),
                clients: 3,
                partition: Partition::Iid,
                test_fraction: 0.2,
                seed: 7,
            },
            csv: CsvOptions {
                label: Some("diagnosis".into()),
                target: TargetSpec::Binary,
                ..CsvOptions::default()
            },
            rounds: 2,
            train: Training::default().local(),
            architecture: Architecture::Linear,
            dp: Some(dp(1.0)),
            masks: true,
            plain: false,
            params: ParamSet::Standard64,
            round_timeout: Duration::from_secs(60),
            evaluation: None,
        };
        let run = || {
            simulate(&cfg, &mut |_| {}, Arc::new(AtomicBool::new(false)))
                .unwrap()
                .model
                .params()
                .to_vec()
        };
        let (a, b) = (run(), run());
        assert_eq!(a.len(), b.len());
        assert_ne!(a, b, "two DP federations gave the same model");
    }
}

mod mask_reuse {
    use std::path::Path;
    use std::sync::Arc;

    use fedhe::client::LedgerError;
    use fedhe::crypto::{ParamSet, SecretKey};
    use fedhe::plan::{Plan, ProposeOptions, Training};
    use fedhe::privacy::MaskContext;
    use fedhe::protocol::{AnnounceRequest, hex};
    use fedhe::server::EmbeddedServer;
    use fedhe::session::Joined;

    use crate::common::{connect, sample, serve_plan};

    fn plan() -> Plan {
        fedhe::plan::propose(
            &sample("train.csv"),
            &ProposeOptions {
                training: Training {
                    rounds: 1,
                    ..Training::default()
                },
                ..ProposeOptions::default()
            },
        )
        .unwrap()
        .0
    }

    /// `id` joined at `srv` with its state file in `dir` (its identity kept
    /// across runs, as a real site's is).
    fn join(srv: &EmbeddedServer, key: &Arc<SecretKey>, dir: &Path, id: &str) -> Joined {
        let state = dir.join(format!("client-{id}.state.json"));
        connect(srv.url(), key).join(id, id, Some(&state)).unwrap()
    }

    /// `j` announces round 1's key the way its masker does: the attempt's
    /// secret from its ledger. Returns the announced public key.
    fn announce(j: &Joined) -> [u8; 32] {
        let ctx = MaskContext {
            plan: &j.plan_fingerprint,
            round: 1,
            attempt: 1,
        };
        let k = j
            .identity
            .announce(&ctx, &j.id, &j.ledger.secret(&ctx).unwrap());
        j.api
            .announce(
                1,
                &AnnounceRequest {
                    attempt: 1,
                    public: hex(&k.public),
                    signature: hex(&k.signature),
                },
            )
            .unwrap();
        k.public
    }

    /// The same plan file run twice (a fresh aggregator each time), the
    /// same sites with the same identities: the first round's mask keys
    /// differ (before issue 23 they were HKDF(identity, plan ‖ round ‖
    /// attempt ‖ id): equal, so a key holder got u₁ − u₂ from the two runs).
    #[test]
    fn a_re_run_of_the_same_plan_uses_different_masks() {
        let key = Arc::new(SecretKey::generate(ParamSet::Standard64));
        let dir = tempfile::tempdir().unwrap();
        let mut runs = Vec::new();
        for _ in 0..2 {
            let srv = serve_plan(&key, plan());
            let sites: Vec<Joined> = ["a", "b", "c"]
                .iter()
                .map(|id| join(&srv, &key, dir.path(), id))
                .collect();
            let keys: Vec<[u8; 32]> = sites.iter().map(announce).collect();
            let identities: Vec<[u8; 32]> = sites.iter().map(|j| j.identity.public()).collect();
            runs.push((sites[0].plan_fingerprint.clone(), identities, keys));
        }
        let ((fp1, id1, k1), (fp2, id2, k2)) = (&runs[0], &runs[1]);
        assert_eq!(fp1, fp2, "the same plan");
        assert_eq!(id1, id2, "the same identities");
        for (a, b) in k1.iter().zip(k2) {
            assert_ne!(a, b, "a mask key of the first run came back in the second");
        }
    }

    /// A site restarted mid-round (killed after it masked, then resumed
    /// from its state file) announces the same key and may upload the same
    /// values again, but never masks other values under that context.
    #[test]
    fn a_restarted_client_never_masks_different_values_under_a_used_context() {
        let key = Arc::new(SecretKey::generate(ParamSet::Standard64));
        let dir = tempfile::tempdir().unwrap();
        let srv = serve_plan(&key, plan());
        let a = join(&srv, &key, dir.path(), "a");
        let first = announce(&a);
        let fp = a.plan_fingerprint.clone();
        let ctx = MaskContext {
            plan: &fp,
            round: 1,
            attempt: 1,
        };
        let names = [104.0, 105.0, 0.0];
        a.ledger.bind(&ctx, &names, 1.0).unwrap();
        drop(a);
        // Restarted: it resumes its run (same token, same ledger).
        let again = join(&srv, &key, dir.path(), "a");
        assert!(again.resumed);
        let secret = again.ledger.secret(&ctx).unwrap();
        assert_eq!(
            again.identity.announce(&ctx, "a", &secret).public,
            first,
            "the same attempt key after the restart"
        );
        again.ledger.bind(&ctx, &names, 1.0).unwrap();
        let zeros = [0.0, 0.0, 0.0];
        assert!(matches!(
            again.ledger.bind(&ctx, &zeros, 1.0),
            Err(LedgerError::Reuse {
                round: 1,
                attempt: 1
            })
        ));
    }
}

mod vocabulary_restart {
    use std::sync::atomic::AtomicBool;

    use fedhe::client::{Exchange, LoopError, RoundSum};

    /// A federation of one that records every vector it is given; with
    /// `published`, round 1 is taken as already closed with this site's
    /// counts in it (a site restarted after round 1 closed, as the
    /// aggregator reports it: its id among the contributors).
    struct Recorder {
        published: Option<RoundSum>,
        sent: Vec<(u64, Vec<f64>)>,
    }

    impl Exchange for Recorder {
        fn contribute(
            &mut self,
            round: u64,
            values: &[f64],
            _cancel: &AtomicBool,
        ) -> Result<RoundSum, LoopError> {
            self.sent.push((round, values.to_vec()));
            Ok(RoundSum {
                values: values.to_vec(),
                contributors: 1,
                contributed: true,
                counted: Vec::new(),
                cost: Default::default(),
                masked: false,
            })
        }

        fn published(&mut self, round: u64, _len: usize) -> Result<Option<RoundSum>, LoopError> {
            Ok(if round == 1 {
                self.published.clone()
            } else {
                None
            })
        }
    }

    /// A site restarted between the vocabulary's two rounds names exactly
    /// as before (it used to send zeros, under masks it may have used for
    /// its names already).
    #[test]
    fn a_site_restarted_after_the_counts_round_names_as_before() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("age,city,cost\n");
        for i in 0..16 {
            let city = ["Oslo", "Bergen"][i % 2];
            let age = 20.5 + ((i * 7) % 50) as f64;
            text.push_str(&format!("{age},{city},{}\n", 100.0 + 2.0 * age));
        }
        let file = dir.path().join("a.csv");
        std::fs::write(&file, text).unwrap();
        let (mut plan, _) = fedhe::plan::propose(
            &file,
            &fedhe::plan::ProposeOptions {
                label: Some("cost".into()),
                task: Some(fedhe::data::TaskKind::Regression),
                vocabulary: Some(fedhe::plan::Vocabulary {
                    min_count: 2,
                    buckets: 64,
                }),
                ..fedhe::plan::ProposeOptions::default()
            },
        )
        .unwrap();
        plan.training.rounds = 1;
        plan.training.validation_share = 0.0;
        assert!(plan.layout().vocabulary);
        let data = fedhe::data::load_csv(&file, &plan.csv_options())
            .unwrap()
            .dataset;
        let fp = plan.fingerprint().to_string();
        let run = |ex: &mut Recorder| {
            super::run_site(ex, &plan, &fp, "a", None, &data);
        };
        let mut first = Recorder {
            published: None,
            sent: Vec::new(),
        };
        run(&mut first);
        let (r1, counts) = first.sent[0].clone();
        let (r2, names) = first.sent[1].clone();
        assert_eq!((r1, r2), (1, 2));
        assert!(names.iter().any(|&b| b > 0.0), "the site names its values");
        let mut restarted = Recorder {
            published: Some(RoundSum {
                values: counts,
                contributors: 1,
                contributed: true,
                counted: vec!["a".into()],
                cost: Default::default(),
                masked: false,
            }),
            sent: Vec::new(),
        };
        run(&mut restarted);
        assert_eq!(
            restarted.sent[0],
            (2, names),
            "the same names after the restart"
        );
    }
}

/// One site `id` runs `plan`'s rounds over `ex` (no progress, no cancel).
fn run_site(
    ex: &mut dyn fedhe::client::Exchange,
    plan: &fedhe::plan::Plan,
    fp: &str,
    id: &str,
    secret: Option<&fedhe::privacy::SiteSecret>,
    data: &fedhe::data::Dataset,
) -> fedhe::session::FederatedRun {
    fedhe::session::run_plan(
        ex,
        plan,
        fp,
        fedhe::session::site_seed(plan.training.sgd.seed, id),
        secret,
        data,
        fedhe::session::RunRecord {
            kind: fedhe::model::FEDERATED,
            data_files: Vec::new(),
            server: None,
            site: id.into(),
        },
        &mut |_| {},
        &std::sync::atomic::AtomicBool::new(false),
    )
    .unwrap()
}
