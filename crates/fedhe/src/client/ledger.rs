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
//! File: `client-ID.masks.json` beside the client state file (`None`: in
//! memory only, for a client without a state file).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::privacy::{AttemptSecret, MaskContext};

/// The largest mask ledger read: one small entry per round and attempt
/// (a secret, a hash, a survivor set) stays far below, even over thousands
/// of rounds.
pub const MAX_LEDGER_BYTES: u64 = 1 << 26;
const FORMAT: &str = "fedhe-mask-ledger";

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
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    format: String,
    version: u32,
    /// By context: `plan/round/attempt`.
    entries: BTreeMap<String, Entry>,
}

/// A client's mask ledger (shared by the clones of its `Masking`).
#[derive(Clone)]
pub struct MaskLedger {
    path: Option<PathBuf>,
    entries: Arc<Mutex<BTreeMap<String, Entry>>>,
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
            entries: Arc::default(),
        }
    }

    /// A new run's empty ledger at `path`, written at once (it replaces
    /// the last run's: its secrets are never used again).
    pub fn fresh(path: &Path) -> Result<MaskLedger, LedgerError> {
        let ledger = MaskLedger {
            path: Some(path.to_path_buf()),
            entries: Arc::default(),
        };
        ledger.save(&BTreeMap::new())?;
        Ok(ledger)
    }

    /// The ledger at `path` (a resumed run), empty if there is none.
    pub fn open(path: &Path) -> Result<MaskLedger, LedgerError> {
        let err = |message: String| LedgerError::File {
            file: path.display().to_string(),
            message,
        };
        let entries = match crate::fsutil::read_capped(path, MAX_LEDGER_BYTES, "mask ledger") {
            Ok(bytes) => {
                let s: Stored = serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?;
                if s.format != FORMAT || s.version != 1 {
                    return Err(err(format!("format {:?} version {}", s.format, s.version)));
                }
                s.entries
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(err(e.to_string())),
        };
        Ok(MaskLedger {
            path: Some(path.to_path_buf()),
            entries: Arc::new(Mutex::new(entries)),
        })
    }

    fn save(&self, entries: &BTreeMap<String, Entry>) -> Result<(), LedgerError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let err = |message: String| LedgerError::File {
            file: path.display().to_string(),
            message,
        };
        let stored = Stored {
            format: FORMAT.into(),
            version: 1,
            entries: entries.clone(),
        };
        let bytes = serde_json::to_vec(&stored).map_err(|e| err(e.to_string()))?;
        crate::fsutil::write_atomic(path, &bytes, true, true).map_err(|e| err(e.to_string()))
    }

    /// The secret of `ctx`: the one already used, or a fresh one (saved
    /// before it is returned, so before its key is announced).
    pub fn secret(&self, ctx: &MaskContext<'_>) -> Result<AttemptSecret, LedgerError> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(secret) = entries
            .get(&key(ctx))
            .and_then(|e| AttemptSecret::from_hex(&e.secret))
        {
            return Ok(secret);
        }
        let secret = AttemptSecret::generate().map_err(|_| LedgerError::Entropy)?;
        entries.insert(
            key(ctx),
            Entry {
                secret: secret.to_hex(),
                values: None,
                revealed: None,
            },
        );
        self.save(&entries)?;
        Ok(secret)
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
        let d = digest(values, weight);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if revealed_elsewhere(&entries, ctx) {
            return Err(LedgerError::RevealedRound {
                round: ctx.round,
                attempt: ctx.attempt,
            });
        }
        let entry = entries.entry(key(ctx)).or_default();
        match &entry.values {
            Some(bound) if *bound == d => Ok(()),
            Some(_) => Err(LedgerError::Reuse {
                round: ctx.round,
                attempt: ctx.attempt,
            }),
            None => {
                entry.values = Some(d);
                self.save(&entries)
            }
        }
    }
}

impl MaskLedger {
    /// Whether this client revealed its shares in another attempt of
    /// `ctx`'s round: it then takes no further part in the round (it waits
    /// for the round to close and takes the published sum).
    pub fn revealed_in_round(&self, ctx: &MaskContext<'_>) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        revealed_elsewhere(&entries, ctx)
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
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if revealed_elsewhere(&entries, ctx) {
            return Err(LedgerError::RevealedRound {
                round: ctx.round,
                attempt: ctx.attempt,
            });
        }
        let entry = entries.entry(key(ctx)).or_default();
        match &entry.revealed {
            Some(set) if set.as_slice() == survivors => Ok(()),
            Some(_) => Err(LedgerError::RevealConflict {
                round: ctx.round,
                attempt: ctx.attempt,
            }),
            None => {
                entry.revealed = Some(survivors.to_vec());
                self.save(&entries)
            }
        }
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
        // Another attempt: a fresh secret.
        let next = MaskContext { attempt: 2, ..ctx };
        assert_ne!(again.secret(&next).unwrap(), s);
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
}
