//! State that cannot vanish silently (issue 21, part 3), on real state
//! folders: a copy of the database alone after a close holds the
//! federation; a database that lost its WAL, or a sum file that is gone,
//! is refused at start naming what is missing; a folder removed under the
//! aggregator stops every change with `state_lost`; a backup restarts.
//!
//! Run them with `cargo test --release -p fedhe -- state::durability`.

use std::path::Path;

use crate::crypto::{ParamSet, SecretKey};
use crate::protocol::ErrorCode;

use super::super::store::{DB_FILE, LOCK_FILE, Store, StoreError};
use super::super::sumfile::SUM_FILE;
use super::faults::{Fixture, LEN, submit};
use super::{Aggregator, Policy};

impl Fixture {
    /// [`open`](Fixture::open), with its failure as text.
    fn try_open(&self, dir: &Path) -> Result<Aggregator, String> {
        let policy = Policy {
            min_clients: None,
            auto_aggregate: self.auto,
            manual_close: false,
            max_len_limit: 1 << 20,
            max_registered: 100,
            allow_single_contributor: false,
        };
        let store = Store::open(dir).map_err(|e| e.to_string())?;
        let key = self.key_at_open.then(|| self.key.public());
        Aggregator::open(store, policy, "operator", key, self.max_len).map_err(|e| e.to_string())
    }
}

/// A folder holding copies of `files` of `from` (and nothing else).
fn copy_only(from: &Path, files: &[&str]) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for f in files {
        std::fs::copy(from.join(f), to.path().join(f)).unwrap();
    }
    to
}

fn two_sites(fx: &Fixture, agg: &mut Aggregator) {
    for id in ["a", "b"] {
        agg.register(fx.register(id, None, None)).unwrap();
    }
}

/// Both sites' updates into `round` of a plan-less session.
fn both_submit(fx: &Fixture, agg: &mut Aggregator, round: u64) {
    for id in ["a", "b"] {
        let bytes = fx.update(LEN);
        let update = agg.decode_update(&bytes).unwrap();
        agg.submit(id, round, None, &update, bytes.len() as u64)
            .unwrap();
    }
}

#[test]
fn a_copy_of_the_database_alone_after_a_close_holds_the_federation() {
    let fx = Fixture::new(SecretKey::generate(ParamSet::Standard64));
    let dir = tempfile::tempdir().unwrap();
    let mut agg = fx.open(dir.path());
    two_sites(&fx, &mut agg);
    both_submit(&fx, &mut agg, 1);
    agg.close(1).unwrap();
    // Taken while the aggregator runs, without the -wal beside it.
    let copy = copy_only(dir.path(), &[DB_FILE]);
    let restored = fx.try_open(copy.path()).unwrap();
    assert_eq!(restored.clients().len(), 2, "the registered sites");
    assert_eq!(restored.open_round(), 2);
    assert_eq!(restored.sum(1).unwrap().1, 2, "round 1's published sum");
}

#[test]
fn a_database_that_lost_its_wal_is_refused_naming_what_is_missing() {
    let fx = Fixture::new(SecretKey::generate(ParamSet::Standard64));
    let dir = tempfile::tempdir().unwrap();
    let mut agg = fx.open(dir.path());
    two_sites(&fx, &mut agg);
    both_submit(&fx, &mut agg, 1);
    // Before any close: everything since the start lives in the WAL.
    let copy = copy_only(dir.path(), &[DB_FILE, SUM_FILE]);
    let e = fx.try_open(copy.path()).err().expect("refused, not empty");
    assert!(e.contains(SUM_FILE) && e.contains("generation 2"), "{e}");
    assert!(e.contains("knows no session") && e.contains("-wal"), "{e}");

    // After a close (checkpointed) the WAL holds round 2's updates only:
    // the sum file is two generations ahead of the database.
    agg.close(1).unwrap();
    both_submit(&fx, &mut agg, 2);
    let copy = copy_only(dir.path(), &[DB_FILE, SUM_FILE]);
    let e = fx
        .try_open(copy.path())
        .err()
        .expect("refused, not round 2 empty");
    assert!(
        e.contains("round 2's running sum at generation 4") && e.contains("generation 2 (round 1)"),
        "{e}"
    );
    // The whole folder (with its WAL) is consistent.
    drop(agg);
    assert_eq!(fx.open(dir.path()).contributors(), 2);
}

#[test]
fn a_lost_sum_file_is_refused_when_the_open_round_counts_updates_in_it() {
    let fx = Fixture::new(SecretKey::generate(ParamSet::Standard64));
    let dir = tempfile::tempdir().unwrap();
    let mut agg = fx.open(dir.path());
    two_sites(&fx, &mut agg);
    submit(&mut agg, "a", &fx.update(LEN)).unwrap();
    drop(agg);
    std::fs::remove_file(dir.path().join(SUM_FILE)).unwrap();
    let e = fx.try_open(dir.path()).err().expect("refused");
    assert!(
        e.contains("counts 1 update(s)") && e.contains("round 1") && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn a_state_folder_removed_under_the_aggregator_stops_every_change() {
    let fx = Fixture::new(SecretKey::generate(ParamSet::Standard64));
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("state");
    let mut agg = fx.open(&dir);
    agg.register(fx.register("a", None, None)).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let e = agg.register(fx.register("b", None, None)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::StateLost);
    assert_eq!(e.status().as_u16(), 503);
    assert!(e.to_string().contains("removed or replaced"), "{e}");
    assert_eq!(agg.clients().len(), 1, "nothing changed in memory");
    // The folder is back, held by this aggregator: a second cannot start.
    match Store::open(&dir) {
        Err(StoreError::Locked { holder, .. }) => assert_eq!(holder, Some(std::process::id())),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a second aggregator opened the folder"),
    }
    // Later changes stay refused, and the ticker moves nothing on.
    let again = agg.register(fx.register("c", None, None)).unwrap_err();
    assert_eq!(again.code(), ErrorCode::StateLost);
    assert!(!agg.tick_at(super::now_unix() + 100_000).unwrap());
}

#[test]
fn a_replaced_lock_file_stops_every_change() {
    let fx = Fixture::new(SecretKey::generate(ParamSet::Standard64));
    let dir = tempfile::tempdir().unwrap();
    let mut agg = fx.open(dir.path());
    let lock = dir.path().join(LOCK_FILE);
    std::fs::remove_file(&lock).unwrap();
    std::fs::write(&lock, b"1\n").unwrap();
    let e = agg.register(fx.register("a", None, None)).unwrap_err();
    assert_eq!(e.code(), ErrorCode::StateLost);
    assert!(
        e.to_string().contains("aggregator.lock was replaced"),
        "{e}"
    );
}

#[test]
fn a_backup_after_a_close_restarts_and_continues() {
    let fx = Fixture::new(SecretKey::generate(ParamSet::Standard64));
    let dir = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    let mut agg = fx.open(dir.path());
    agg.set_backup_dir(backup.path().to_path_buf()).unwrap();
    two_sites(&fx, &mut agg);
    both_submit(&fx, &mut agg, 1);
    agg.close(1).unwrap();
    // Round 2 goes on in the live folder; the backup is of the close.
    submit_round_2_a(&fx, &mut agg);
    let copy = copy_only(backup.path(), &[DB_FILE]);
    assert!(!backup.path().join(format!("{DB_FILE}-wal")).exists());
    let mut restored = fx.try_open(copy.path()).unwrap();
    assert_eq!(restored.clients().len(), 2);
    assert_eq!(restored.open_round(), 2);
    assert_eq!(restored.contributors(), 0, "as at the close");
    both_submit(&fx, &mut restored, 2);
    assert_eq!(restored.close(2).unwrap(), (2, 3));
    // The backup folder itself opens too (with its sum file).
    drop(agg);
    assert_eq!(fx.try_open(backup.path()).unwrap().open_round(), 2);
    // The state folder is not its own backup.
    let agg = fx.open(dir.path());
    assert!(agg.backup_now(dir.path()).is_err());
}

fn submit_round_2_a(fx: &Fixture, agg: &mut Aggregator) {
    let bytes = fx.update(LEN);
    let update = agg.decode_update(&bytes).unwrap();
    agg.submit("a", 2, None, &update, bytes.len() as u64)
        .unwrap();
}
