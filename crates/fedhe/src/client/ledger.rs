//! The mask ledger: every attempt's random X25519 secret, kept owner-only
//! with a hash of the values it masks, so that no mask is ever used twice.
//!
//! A client takes an attempt's secret from here before it announces its key
//! (made fresh from the operating system and written, synced, before the
//! announcement leaves), and binds the values before it uploads them. A
//! client restarted in the middle of an attempt announces the same key and
//! may upload the same values again; different values under a context it
//! already used are refused ([`LedgerError::Reuse`]): two vectors under the
//! same masks would give their difference to any key holder. A new run (a
//! registration) starts a new ledger, and with it fresh secrets: a re-run of
//! the same plan never meets the masks of the last one.
//!
//! When the aggregator carries a roster's keys over to the next round
//! (every member survived), the next round's entry holds the same secret
//! ([`MaskLedger::carried`]): every mask, seed and seal is still derived for
//! its own round and attempt, and bound once per entry.
//!
//! File: `client-ID.masks.json` beside the client state file, appended to
//! and synced at every step it records ([`super::ledger_file`]); `None`: in
//! memory only, for a client without a state file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ledger_file::LedgerFile;
use crate::privacy::{AttemptSecret, MaskContext};

/// The largest mask ledger read: a run appends one line of a few hundred
/// bytes per masked step (three or four per round), about 1 kB per round,
/// so tens of thousands of rounds stay below it (and each start compacts
/// the file to one line per round and attempt).
pub const MAX_LEDGER_BYTES: u64 = 1 << 26;

/// Failures of the mask ledger.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("mask ledger {file}: {message}")]
    File { file: String, message: String },
    #[error(
        "round {round} attempt {attempt}: this client already masked other values under this \
         attempt's key (before a restart?); refusing to mask a different vector under the same \
         masks, which would reveal the difference of the two to any key holder"
    )]
    Reuse { round: u64, attempt: u32 },
    #[error("the system's random generator failed")]
    Entropy,
    #[error(
        "round {round} attempt {attempt}: this client already revealed its shares for another \
         survivor set; refusing to reveal for a second one (a site's self-seed shares and its \
         pair-seed shares together would give away its update)"
    )]
    RevealConflict { round: u64, attempt: u32 },
    #[error(
        "round {round}: this client already revealed its double-mask shares in another attempt \
         of this round (not {attempt}); it takes no further part in the round (two unmasked sums \
         of one round over different survivors would give away a site's update)"
    )]
    RevealedRound { round: u64, attempt: u32 },
    #[error(
        "round {round} attempt {attempt}: this client already sealed its shares under another \
         roster, threshold or partner keys; refusing to mask, seal or reveal under a second one \
         (shares of one self seed under two rosters could be pooled); waiting for the attempt \
         to move"
    )]
    RosterConflict { round: u64, attempt: u32 },
    #[error(
        "round {round}: attempt {attempt} is older than attempt {highest} this client already \
         took part in; attempts only go forward"
    )]
    StaleAttempt {
        round: u64,
        attempt: u32,
        highest: u32,
    },
    #[error(
        "round {round} attempt {attempt}: this client already signed another survivor set in \
         this round; refusing to sign a second one"
    )]
    SignConflict { round: u64, attempt: u32 },
}

/// The entries of `ctx`'s round (every attempt), with their attempt.
fn round_entries<'e>(
    entries: &'e BTreeMap<String, Entry>,
    ctx: &MaskContext<'_>,
) -> impl Iterator<Item = (u32, &'e Entry)> {
    let prefix = format!("{}/{}/", ctx.plan, ctx.round);
    entries
        .range(prefix.clone()..)
        .take_while(move |(k, _)| k.starts_with(&prefix))
        .filter_map(move |(k, e)| Some((k.rsplit('/').next()?.parse().ok()?, e)))
}

/// Refuses `ctx` when its round already has an entry of a later attempt.
fn check_forward(
    entries: &BTreeMap<String, Entry>,
    ctx: &MaskContext<'_>,
) -> Result<(), LedgerError> {
    match round_entries(entries, ctx).map(|(a, _)| a).max() {
        Some(highest) if highest > ctx.attempt => Err(LedgerError::StaleAttempt {
            round: ctx.round,
            attempt: ctx.attempt,
            highest,
        }),
        _ => Ok(()),
    }
}

/// Whether another attempt of `ctx`'s round already revealed its shares.
fn revealed_elsewhere(entries: &BTreeMap<String, Entry>, ctx: &MaskContext<'_>) -> bool {
    let prefix = format!("{}/{}/", ctx.plan, ctx.round);
    let own = key(ctx);
    entries
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .any(|(k, e)| *k != own && e.revealed.is_some())
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Entry {
    /// The attempt's X25519 secret (hex).
    secret: String,
    /// SHA-256 of the values masked under it (hex), once bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    values: Option<String>,
    /// The survivor set this client revealed its double-mask shares for
    /// (sorted ids), once it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revealed: Option<Vec<String>>,
    /// The digest of the roster, threshold and partner keys this client
    /// masked and sealed under (hex), recorded before the first seal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed: Option<String>,
    /// The survivor set this client signed in this attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    signed: Option<Vec<String>>,
}

#[derive(Default)]
struct Inner {
    /// By context: `plan/round/attempt`.
    entries: BTreeMap<String, Entry>,
    /// `None`: in memory only.
    file: Option<LedgerFile>,
}

/// A client's mask ledger (shared by the clones of its `Masking`).
#[derive(Clone)]
pub struct MaskLedger {
    path: Option<PathBuf>,
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for MaskLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Its secrets never reach a log.
        f.debug_struct("MaskLedger")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// The ledger file beside a client's state file.
pub fn ledger_path(state_file: &Path) -> PathBuf {
    let name = state_file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".state.json").unwrap_or(&name);
    state_file.with_file_name(format!("{stem}.masks.json"))
}

fn key(ctx: &MaskContext<'_>) -> String {
    format!("{}/{}/{}", ctx.plan, ctx.round, ctx.attempt)
}

/// SHA-256 of a vector and its weight, bit for bit.
fn digest(values: &[f64], weight: f64) -> String {
    let mut h = Sha256::new();
    h.update(b"FedHE masked values v1\0");
    h.update((values.len() as u64).to_le_bytes());
    for v in values {
        h.update(v.to_bits().to_le_bytes());
    }
    h.update(weight.to_bits().to_le_bytes());
    crate::hex::hex(&h.finalize())
}

impl MaskLedger {
    /// A ledger in memory only.
    pub fn in_memory() -> MaskLedger {
        MaskLedger {
            path: None,
            inner: Arc::default(),
        }
    }

    /// A new run's empty ledger at `path`, written at once (it replaces
    /// the last run's: its secrets are never used again).
    pub fn fresh(path: &Path) -> Result<MaskLedger, LedgerError> {
        MaskLedger::written(path, BTreeMap::new())
    }

    /// The ledger at `path` (a resumed run), empty if there is none;
    /// compacted on the way (one line per entry).
    pub fn open(path: &Path) -> Result<MaskLedger, LedgerError> {
        let entries = match crate::fsutil::read_capped(path, MAX_LEDGER_BYTES, "mask ledger") {
            Ok(bytes) => {
                super::ledger_file::parse(&bytes).map_err(|message| file_error(path, message))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(file_error(path, e.to_string())),
        };
        MaskLedger::written(path, entries)
    }

    /// A ledger of `entries`, written compacted at `path` and appended to
    /// from there on.
    fn written(path: &Path, entries: BTreeMap<String, Entry>) -> Result<MaskLedger, LedgerError> {
        let file =
            LedgerFile::create(path, &entries).map_err(|message| file_error(path, message))?;
        Ok(MaskLedger {
            path: Some(path.to_path_buf()),
            inner: Arc::new(Mutex::new(Inner {
                entries,
                file: Some(file),
            })),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves whole entries behind (each
        // change is one insert, after its write): the data stays usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `entry` `key`'s new state: appended to the file (synced)
    /// first, and only then in memory, so a failed write changes nothing
    /// (a repeated call then writes again instead of finding the change
    /// in memory only).
    fn record(&self, inner: &mut Inner, key: String, entry: Entry) -> Result<(), LedgerError> {
        if let Some(file) = inner.file.as_mut() {
            file.append(&key, &entry)
                .map_err(|message| file_error(file.path(), message))?;
        }
        inner.entries.insert(key, entry);
        Ok(())
    }

    /// The secret of `ctx`: the one already used, or a fresh one (saved
    /// before it is returned, so before its key is announced).
    pub fn secret(&self, ctx: &MaskContext<'_>) -> Result<AttemptSecret, LedgerError> {
        let mut inner = self.lock();
        check_forward(&inner.entries, ctx)?;
        let k = key(ctx);
        if let Some(secret) = inner
            .entries
            .get(&k)
            .and_then(|e| AttemptSecret::from_hex(&e.secret))
        {
            return Ok(secret);
        }
        let secret = AttemptSecret::generate().map_err(|_| LedgerError::Entropy)?;
        let entry = Entry {
            secret: secret.to_hex(),
            ..Entry::default()
        };
        self.record(&mut inner, k, entry)?;
        Ok(secret)
    }

    /// The secret of `ctx` when the aggregator carried `origin`'s keys over
    /// to it: `origin`'s secret, recorded for `ctx` too. `None` when this
    /// client holds no secret of `origin` (a new run), or already holds
    /// another one for `ctx`: it cannot take part with the carried keys.
    ///
    /// Not written on its own: nothing is announced under it, and a client
    /// restarted before its next step ([`MaskLedger::seal_under`], which
    /// writes the whole entry) takes the same secret from `origin` again.
    pub fn carried(
        &self,
        ctx: &MaskContext<'_>,
        origin: &MaskContext<'_>,
    ) -> Result<Option<AttemptSecret>, LedgerError> {
        let mut inner = self.lock();
        check_forward(&inner.entries, ctx)?;
        let Some(from) = inner.entries.get(&key(origin)).map(|e| e.secret.clone()) else {
            return Ok(None);
        };
        if let Some(own) = inner.entries.get(&key(ctx)) {
            return Ok((own.secret == from)
                .then(|| AttemptSecret::from_hex(&from))
                .flatten());
        }
        let Some(secret) = AttemptSecret::from_hex(&from) else {
            return Ok(None);
        };
        inner.entries.insert(
            key(ctx),
            Entry {
                secret: from,
                ..Entry::default()
            },
        );
        Ok(Some(secret))
    }

    /// Binds `values` (and `weight`) to `ctx`'s masks before they are
    /// uploaded: the first binding is saved; the same values again pass;
    /// other values are refused.
    pub fn bind(
        &self,
        ctx: &MaskContext<'_>,
        values: &[f64],
        weight: f64,
    ) -> Result<(), LedgerError> {
        self.use_masks(ctx, None, Some(digest(values, weight)))
    }
}

impl MaskLedger {
    /// Whether this client revealed its shares in another attempt of
    /// `ctx`'s round: it then takes no further part in the round (it waits
    /// for the round to close and takes the published sum).
    pub fn revealed_in_round(&self, ctx: &MaskContext<'_>) -> bool {
        revealed_elsewhere(&self.lock().entries, ctx)
    }

    /// Records, before anything is revealed, the survivor set `ctx`'s
    /// shares are revealed for (`privacy::secagg::reveal`): the first set
    /// is saved; the same set again passes (a restart); any other set is
    /// refused, so that no partner's self-seed share and pair-seed shares
    /// both leave this client in one round.
    pub fn reveal_for(
        &self,
        ctx: &MaskContext<'_>,
        survivors: &[String],
    ) -> Result<(), LedgerError> {
        let mut inner = self.lock();
        check_forward(&inner.entries, ctx)?;
        if revealed_elsewhere(&inner.entries, ctx) {
            return Err(LedgerError::RevealedRound {
                round: ctx.round,
                attempt: ctx.attempt,
            });
        }
        let k = key(ctx);
        let mut entry = current(&inner.entries, &k);
        match &entry.revealed {
            Some(set) if set.as_slice() == survivors => Ok(()),
            Some(_) => Err(LedgerError::RevealConflict {
                round: ctx.round,
                attempt: ctx.attempt,
            }),
            None => {
                entry.revealed = Some(survivors.to_vec());
                self.record(&mut inner, k, entry)
            }
        }
    }
}

impl MaskLedger {
    /// Records, before the first mask or seal of `ctx` leaves, the digest
    /// of the roster, threshold and partner keys it is made under
    /// (`privacy::secagg::roster_keys_digest`): the first is saved; the
    /// same again passes (a restart); any other is refused, so that no self
    /// seed is shared out under two rosters.
    pub fn seal_under(&self, ctx: &MaskContext<'_>, digest: &[u8; 32]) -> Result<(), LedgerError> {
        self.use_masks(ctx, Some(crate::hex::hex(digest)), None)
    }

    /// [`MaskLedger::seal_under`] and [`MaskLedger::bind`] in one write:
    /// for an attempt whose shares and update are about to leave together
    /// (the later `bind` of the same values then writes nothing).
    pub fn seal_and_bind(
        &self,
        ctx: &MaskContext<'_>,
        under: &[u8; 32],
        values: &[f64],
        weight: f64,
    ) -> Result<(), LedgerError> {
        self.use_masks(
            ctx,
            Some(crate::hex::hex(under)),
            Some(digest(values, weight)),
        )
    }

    /// Checks, then records (one write, if anything is new), the roster
    /// digest `sealed` and the values digest `values` of `ctx`: a second
    /// digest of either kind is refused, and values once the round was
    /// revealed in another attempt.
    fn use_masks(
        &self,
        ctx: &MaskContext<'_>,
        sealed: Option<String>,
        values: Option<String>,
    ) -> Result<(), LedgerError> {
        let (round, attempt) = (ctx.round, ctx.attempt);
        let mut inner = self.lock();
        check_forward(&inner.entries, ctx)?;
        if values.is_some() && revealed_elsewhere(&inner.entries, ctx) {
            return Err(LedgerError::RevealedRound { round, attempt });
        }
        let k = key(ctx);
        let mut entry = current(&inner.entries, &k);
        // Every check before any change: a refusal leaves the entry as it was.
        let new = |held: &Option<String>, want: &Option<String>, conflict: LedgerError| match (
            held, want,
        ) {
            (_, None) => Ok(false),
            (None, Some(_)) => Ok(true),
            (Some(h), Some(w)) if h == w => Ok(false),
            (Some(_), Some(_)) => Err(conflict),
        };
        let new_seal = new(
            &entry.sealed,
            &sealed,
            LedgerError::RosterConflict { round, attempt },
        )?;
        let new_values = new(
            &entry.values,
            &values,
            LedgerError::Reuse { round, attempt },
        )?;
        if new_seal {
            entry.sealed = sealed;
        }
        if new_values {
            entry.values = values;
        }
        if new_seal || new_values {
            self.record(&mut inner, k, entry)?;
        }
        Ok(())
    }

    /// Records, before the signature leaves, the survivor set signed in
    /// `ctx`: the same set again passes; a different set anywhere in the
    /// round is refused (an honest site signs one set per round).
    pub fn sign_for(&self, ctx: &MaskContext<'_>, survivors: &[String]) -> Result<(), LedgerError> {
        let mut inner = self.lock();
        check_forward(&inner.entries, ctx)?;
        if round_entries(&inner.entries, ctx)
            .any(|(_, e)| e.signed.as_ref().is_some_and(|s| s.as_slice() != survivors))
        {
            return Err(LedgerError::SignConflict {
                round: ctx.round,
                attempt: ctx.attempt,
            });
        }
        let k = key(ctx);
        let mut entry = current(&inner.entries, &k);
        if entry.signed.is_some() {
            return Ok(());
        }
        entry.signed = Some(survivors.to_vec());
        self.record(&mut inner, k, entry)
    }
}

/// `key`'s entry, or an empty one for a context this client has not
/// recorded anything for yet.
fn current(entries: &BTreeMap<String, Entry>, key: &str) -> Entry {
    entries.get(key).cloned().unwrap_or_default()
}

fn file_error(path: &Path, message: String) -> LedgerError {
    LedgerError::File {
        file: path.display().to_string(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ledger that has grown without bound (or is a device) is refused
    /// by its size before it is read.
    #[test]
    fn an_oversized_ledger_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = ledger_path(&dir.path().join("client-a.state.json"));
        // Sparse: no disk is used.
        std::fs::File::create(&ledger)
            .unwrap()
            .set_len(MAX_LEDGER_BYTES + 1)
            .unwrap();
        let Err(e) = MaskLedger::open(&ledger) else {
            panic!("an oversized ledger was read");
        };
        assert!(e.to_string().contains("larger than"), "{e}");
    }

    /// Each recorded step appends one short line (the file is never
    /// rewritten during a run); sealing and binding together is one line,
    /// the same binding after it none; a refused step changes nothing; a
    /// carried secret is written with the entry's next step.
    #[test]
    fn a_step_appends_one_line_and_a_refusal_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = ledger_path(&dir.path().join("client-a.state.json"));
        let lines = || std::fs::read_to_string(&path).unwrap().lines().count();
        let ledger = MaskLedger::fresh(&path).unwrap();
        assert_eq!(lines(), 1);
        let origin = ledger.secret(&ctx(1)).unwrap();
        assert_eq!(lines(), 2);
        let (d1, d2) = ([1; 32], [2; 32]);
        ledger.seal_and_bind(&ctx(1), &d1, &[1.0], 1.0).unwrap();
        ledger.bind(&ctx(1), &[1.0], 1.0).unwrap();
        ledger.seal_under(&ctx(1), &d1).unwrap();
        assert_eq!(lines(), 3);
        assert!(matches!(
            ledger.seal_and_bind(&ctx(1), &d2, &[2.0], 1.0),
            Err(LedgerError::RosterConflict { .. })
        ));
        // The refused call bound nothing: the first values still hold.
        assert!(matches!(
            ledger.seal_and_bind(&ctx(1), &d1, &[2.0], 1.0),
            Err(LedgerError::Reuse { .. })
        ));
        ledger.bind(&ctx(1), &[1.0], 1.0).unwrap();
        ledger.sign_for(&ctx(1), &ids(&["a", "b"])).unwrap();
        ledger.reveal_for(&ctx(1), &ids(&["a", "b"])).unwrap();
        assert_eq!(lines(), 5);
        let next = MaskContext { round: 6, ..ctx(1) };
        assert_eq!(
            ledger.carried(&next, &ctx(1)).unwrap().as_ref(),
            Some(&origin)
        );
        assert_eq!(lines(), 5);
        ledger.seal_and_bind(&next, &d1, &[3.0], 1.0).unwrap();
        assert_eq!(lines(), 6);
        let longest = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(str::len)
            .max();
        assert!(longest < Some(400), "{longest:?}");
        // Reopened (and compacted: one line per entry): the same state.
        let again = MaskLedger::open(&path).unwrap();
        assert_eq!(lines(), 3);
        assert_eq!(again.secret(&next).unwrap(), origin);
        assert!(matches!(
            again.bind(&next, &[4.0], 1.0),
            Err(LedgerError::Reuse { round: 6, .. })
        ));
        assert!(again.revealed_in_round(&MaskContext {
            attempt: 2,
            ..ctx(1)
        }));
    }

    /// Carried keys: the next round's entry takes the origin's secret (and
    /// keeps it across a restart); its values are bound on their own; no
    /// origin secret, or another secret already there, gives none.
    #[test]
    fn a_carried_round_takes_its_origin_s_secret_and_binds_its_own_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = ledger_path(&dir.path().join("client-a.state.json"));
        let at = |round, attempt| MaskContext {
            plan: "ab",
            round,
            attempt,
        };
        let ledger = MaskLedger::fresh(&path).unwrap();
        let origin = ledger.secret(&at(2, 1)).unwrap();
        ledger.bind(&at(2, 1), &[1.0], 1.0).unwrap();
        let carried = ledger.carried(&at(3, 1), &at(2, 1)).unwrap();
        assert_eq!(carried.as_ref(), Some(&origin));
        // Other values than round 2's: round 3 binds its own.
        ledger.bind(&at(3, 1), &[5.0], 1.0).unwrap();
        let again = MaskLedger::open(&path).unwrap();
        assert_eq!(again.carried(&at(3, 1), &at(2, 1)).unwrap(), Some(origin));
        assert!(matches!(
            again.bind(&at(3, 1), &[6.0], 1.0),
            Err(LedgerError::Reuse { round: 3, .. })
        ));
        // Never announced in round 1: nothing to carry.
        assert_eq!(again.carried(&at(4, 1), &at(1, 1)).unwrap(), None);
        // Round 5 already has a secret of its own: not replaced.
        again.secret(&at(5, 1)).unwrap();
        assert_eq!(again.carried(&at(5, 1), &at(2, 1)).unwrap(), None);
    }

    #[test]
    fn a_context_keeps_its_secret_and_refuses_other_values_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = ledger_path(&dir.path().join("client-a.state.json"));
        assert!(path.ends_with("client-a.masks.json"));
        let ctx = MaskContext {
            plan: "ab",
            round: 3,
            attempt: 1,
        };
        let ledger = MaskLedger::fresh(&path).unwrap();
        let s = ledger.secret(&ctx).unwrap();
        ledger.bind(&ctx, &[1.0, 2.0], 1.0).unwrap();
        // Restarted: the same secret, the same values pass, others do not.
        let again = MaskLedger::open(&path).unwrap();
        assert_eq!(again.secret(&ctx).unwrap(), s);
        again.bind(&ctx, &[1.0, 2.0], 1.0).unwrap();
        assert!(matches!(
            again.bind(&ctx, &[0.0, 0.0], 1.0),
            Err(LedgerError::Reuse {
                round: 3,
                attempt: 1
            })
        ));
        // Reveals: one survivor set per context, kept across a restart.
        let set = |ids: &[&str]| ids.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        again.reveal_for(&ctx, &set(&["a", "b", "c"])).unwrap();
        let after = MaskLedger::open(&path).unwrap();
        after.reveal_for(&ctx, &set(&["a", "b", "c"])).unwrap();
        assert!(matches!(
            after.reveal_for(&ctx, &set(&["a", "b"])),
            Err(LedgerError::RevealConflict {
                round: 3,
                attempt: 1
            })
        ));
        // Another attempt: a fresh secret.
        let next = MaskContext { attempt: 2, ..ctx };
        assert_ne!(after.secret(&next).unwrap(), s);
        // Once revealed in attempt 1, attempt 2 of the round neither masks
        // nor reveals (round 4 is another round).
        let attempt2 = MaskContext { attempt: 2, ..ctx };
        assert!(matches!(
            after.bind(&attempt2, &[1.0, 2.0], 1.0),
            Err(LedgerError::RevealedRound { round: 3, .. })
        ));
        assert!(matches!(
            after.reveal_for(&attempt2, &set(&["a", "b", "c"])),
            Err(LedgerError::RevealedRound { round: 3, .. })
        ));
        let round4 = MaskContext { round: 4, ..ctx };
        after.bind(&round4, &[1.0, 2.0], 1.0).unwrap();
        // A new run: fresh secrets for the same context.
        let run2 = MaskLedger::fresh(&path).unwrap();
        assert_ne!(run2.secret(&ctx).unwrap(), s);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the ledger is owner-only");
        }
    }

    fn ctx(attempt: u32) -> MaskContext<'static> {
        MaskContext {
            plan: "ab",
            round: 5,
            attempt,
        }
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// The digest a client seals under for `roster` (real keys: each
    /// member's announced X25519 key).
    fn sealed_under(ctx: MaskContext<'static>, roster: &[String]) -> [u8; 32] {
        let keys: Vec<(String, [u8; 32])> = roster
            .iter()
            .map(|id| {
                let secret = AttemptSecret::generate().unwrap();
                let identity = crate::privacy::Identity::generate().unwrap();
                (id.clone(), identity.announce(&ctx, id, &secret).public)
            })
            .collect();
        let round = crate::privacy::secagg::SecAggRound::new(ctx, roster, 2).unwrap();
        crate::privacy::secagg::roster_keys_digest(&round, &keys).unwrap()
    }

    /// Review finding 1: the same attempt shown with another roster (or
    /// other partner keys) is refused before anything is sealed, across a
    /// restart; the first roster still passes.
    #[test]
    fn an_attempt_shown_with_another_roster_is_refused_before_sealing() {
        let dir = tempfile::tempdir().unwrap();
        let path = ledger_path(&dir.path().join("client-a.state.json"));
        let ledger = MaskLedger::fresh(&path).unwrap();
        ledger.secret(&ctx(1)).unwrap();
        let first = sealed_under(ctx(1), &ids(&["a", "b", "c"]));
        let other = sealed_under(ctx(1), &ids(&["a", "b", "d"]));
        let rekeyed = sealed_under(ctx(1), &ids(&["a", "b", "c"]));
        ledger.seal_under(&ctx(1), &first).unwrap();
        let again = MaskLedger::open(&path).unwrap();
        again.seal_under(&ctx(1), &first).unwrap();
        for d in [other, rekeyed] {
            assert!(matches!(
                again.seal_under(&ctx(1), &d),
                Err(LedgerError::RosterConflict {
                    round: 5,
                    attempt: 1
                })
            ));
        }
        // The next attempt may have its own roster.
        again
            .seal_under(&ctx(2), &sealed_under(ctx(2), &ids(&["a", "b", "d"])))
            .unwrap();
    }

    /// Review finding 2: once a round has an entry of attempt 2, attempt 1
    /// gets no secret, binding, seal, reveal or signature.
    #[test]
    fn a_lower_attempt_after_a_higher_one_is_refused() {
        let ledger = MaskLedger::in_memory();
        ledger.secret(&ctx(1)).unwrap();
        ledger.secret(&ctx(2)).unwrap();
        let stale = |r: Result<(), LedgerError>| {
            assert!(
                matches!(
                    r,
                    Err(LedgerError::StaleAttempt {
                        round: 5,
                        attempt: 1,
                        highest: 2
                    })
                ),
                "{r:?}"
            )
        };
        stale(ledger.secret(&ctx(1)).map(drop));
        stale(ledger.bind(&ctx(1), &[1.0], 1.0));
        stale(ledger.seal_under(&ctx(1), &[7; 32]));
        stale(ledger.reveal_for(&ctx(1), &ids(&["a", "b", "c"])));
        stale(ledger.sign_for(&ctx(1), &ids(&["a", "b", "c"])));
        // Attempt 2 and another round are unaffected.
        ledger.bind(&ctx(2), &[1.0], 1.0).unwrap();
        let round6 = MaskContext { round: 6, ..ctx(1) };
        ledger.secret(&round6).unwrap();
    }

    /// Review finding 3: one signed survivor set per round, kept across a
    /// restart (the same set again passes).
    #[test]
    fn a_second_survivor_set_in_a_round_is_not_signed() {
        let dir = tempfile::tempdir().unwrap();
        let path = ledger_path(&dir.path().join("client-a.state.json"));
        let ledger = MaskLedger::fresh(&path).unwrap();
        ledger.sign_for(&ctx(1), &ids(&["a", "b", "c"])).unwrap();
        let again = MaskLedger::open(&path).unwrap();
        again.sign_for(&ctx(1), &ids(&["a", "b", "c"])).unwrap();
        for c in [ctx(1), ctx(2)] {
            assert!(matches!(
                again.sign_for(&c, &ids(&["a", "b"])),
                Err(LedgerError::SignConflict { round: 5, .. })
            ));
        }
    }
}
