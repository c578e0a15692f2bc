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
