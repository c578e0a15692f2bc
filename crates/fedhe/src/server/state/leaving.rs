//! A member that leaves (issue 21: "a site that fails mid-federation is
//! treated as a dropout, not a deadlock"): the statistics round, which waits
//! for everyone, closes without it; a masked key phase is fixed without it;
//! a masked upload phase that names it restarts at once without it. Each
//! leave commits once or not at all, and survives a restart.
//!
//! Run them with `cargo test --release -p fedhe -- state::leaving`.

use crate::crypto::{ParamSet, SecretKey, encrypt_weighted};
use crate::privacy::masks::Identity;
use crate::protocol::ErrorCode;

use super::faults::{
    Fixture, all_or_nothing, copy_dir, expect, masked_plan, prepare, shares_and_submit,
};
use super::{Aggregator, now_unix};

const IDS: [&str; 4] = ["a", "b", "c", "d"];

/// A federation of `IDS` (registered); `masks` on or off, at least three
/// contributors.
struct Four {
    fx: Fixture,
    who: Vec<Identity>,
    ups: Vec<Vec<u8>>,
}

impl Four {
    fn new(masks: bool) -> Four {
        let mut fx = Fixture::new(SecretKey::generate(ParamSet::Standard64));
        fx.max_len = None;
        let mut plan = masked_plan();
        plan.privacy.masks = masks;
        fx.plan = Some(plan);
        let dir = tempfile::tempdir().unwrap();
        let len = fx.open(dir.path()).plan_len(1).unwrap();
        let who = IDS.iter().map(|_| Identity::generate().unwrap()).collect();
        let ups = IDS
            .iter()
            .map(|_| {
                encrypt_weighted(&fx.key, &vec![0.25; len], 2.0)
                    .unwrap()
                    .bound_to(1, 1)
                    .to_bytes()
            })
            .collect();
        Four { fx, who, ups }
    }

    /// All four registered, the first `announced` announced (masks on),
    /// the first `uploaded` uploaded to round 1.
    fn prepare(&self, announced: usize, uploaded: usize) -> tempfile::TempDir {
        prepare(&self.fx, |agg| {
            for (id, w) in IDS.iter().zip(&self.who) {
                agg.register(self.fx.register(id, Some(w), None)).unwrap();
            }
            for (id, w) in IDS.iter().zip(&self.who).take(announced) {
                agg.announce(id, 1, self.fx.announce(w, id)).unwrap();
            }
            for (id, bytes) in IDS.iter().zip(&self.ups).take(uploaded) {
                shares_and_submit(agg, id, bytes).unwrap();
            }
        })
    }
}

fn leave(agg: &mut Aggregator, id: &str) -> Result<(), super::ServerError> {
    agg.leave(
        id,
        1,
        "the statistics of column x reach 1e40, beyond the bound",
    )
    .map(drop)
}

#[test]
fn the_statistics_round_closes_without_a_site_that_left() {
    let f = Four::new(false);
    let base = f.prepare(0, 3);
    // Before: round 1 (the statistics) waits for d, with no deadline.
    let dir = copy_dir(base.path());
    let mut agg = f.fx.open(dir.path());
    assert!(!agg.tick_at(now_unix() + 100_000).unwrap());
    assert_eq!(agg.open_round(), 1);
    assert_eq!(agg.status().missing, vec!["d".to_string()]);
    // d leaves: nobody is missing, and the next tick closes the round.
    leave(&mut agg, "d").unwrap();
    assert!(agg.status().missing.is_empty());
    assert!(agg.tick_at(now_unix()).unwrap());
    assert_eq!(agg.open_round(), 2);
    assert!(
        !agg.status().roster.contains(&"d".to_string()),
        "nor expected next round"
    );
    // The leave commits once, and a restart keeps d out of the roster.
    let op = |agg: &mut Aggregator| {
        leave(agg, "d")?;
        expect(agg.status().missing.is_empty(), "nobody missing")
    };
    assert_eq!(all_or_nothing("leave", &f.fx, base.path(), &op, true), 2);
}

#[test]
fn a_masked_key_phase_is_fixed_without_a_site_that_left() {
    let f = Four::new(true);
    let base = f.prepare(3, 0);
    let op = |agg: &mut Aggregator| {
        leave(agg, "d")?;
        let frozen = agg.open.mask.frozen.clone().unwrap_or_default();
        expect(
            frozen.into_iter().collect::<Vec<_>>() == ["a", "b", "c"],
            "the roster is fixed with a, b, c",
        )
    };
    // The fixed roster and the record of who left.
    assert_eq!(
        all_or_nothing("leave keys", &f.fx, base.path(), &op, true),
        3
    );
    // A site whose key is in leaves: its key is dropped too.
    let base = f.prepare(2, 0);
    let op = |agg: &mut Aggregator| {
        leave(agg, "b")?;
        expect(
            !agg.open.mask.keys.contains_key("b") && agg.open.mask.frozen.is_none(),
            "b's key dropped, still collecting",
        )
    };
    assert_eq!(
        all_or_nothing("leave with key", &f.fx, base.path(), &op, true),
        3
    );
}

#[test]
fn a_masked_upload_phase_restarts_at_once_without_a_site_that_left() {
    let f = Four::new(true);
    let base = f.prepare(4, 3);
    let op = |agg: &mut Aggregator| {
        leave(agg, "d")?;
        let expected = agg.open.mask.expected.clone().unwrap_or_default();
        expect(
            agg.open.mask.attempt == 2
                && expected.into_iter().collect::<Vec<_>>() == ["a", "b", "c"]
                && agg.open.submitted.is_empty()
                && agg.acc.is_none(),
            "attempt 2 expects a, b, c",
        )
    };
    // The restart (4 writes) and the record of who left.
    assert_eq!(
        all_or_nothing("leave upload", &f.fx, base.path(), &op, true),
        6
    );
    // A site already counted cannot leave the round its update is in.
    let dir = copy_dir(base.path());
    let mut agg = f.fx.open(dir.path());
    let e = leave(&mut agg, "a").unwrap_err();
    assert_eq!(e.code(), ErrorCode::Conflict);
    assert!(e.to_string().contains("already submitted"), "{e}");
    let e = agg.leave("d", 2, "x").unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotFound);
}
