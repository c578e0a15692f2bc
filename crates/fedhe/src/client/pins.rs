//! Partners' identity keys, pinned: by the plan (`[identities]`, for a
//! named roster) and on first use (TOFU) in the client state file's
//! `partners`. A site masks only with a partner whose relayed (and
//! attested) identity is the pinned one, so an aggregator together with one
//! member cannot swap in an identity for another member after the site first
//! saw it: the swap is refused with a message naming the partner.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::privacy::masks::fingerprint;

use super::error::RelayError;

/// The pins of one client (shared by the clones of its `Masking`).
#[derive(Debug, Clone, Default)]
pub struct PartnerPins {
    inner: Arc<Mutex<Pins>>,
}

#[derive(Debug, Default)]
struct Pins {
    /// The plan's pins: id → fingerprint.
    plan: BTreeMap<String, String>,
    /// First seen: id → hex identity key.
    seen: BTreeMap<String, String>,
    /// The client state file the first-seen pins are saved in.
    file: Option<PathBuf>,
}

impl PartnerPins {
    /// Pins from `plan` (id → fingerprint) and first use (`seen`: id → hex
    /// identity key, from the state file `file`, where new ones are saved).
    pub fn new(
        plan: BTreeMap<String, String>,
        seen: BTreeMap<String, String>,
        file: Option<&Path>,
    ) -> PartnerPins {
        PartnerPins {
            inner: Arc::new(Mutex::new(Pins {
                plan,
                seen,
                file: file.map(Path::to_path_buf),
            })),
        }
    }

    /// The first-seen pins (id → hex identity key).
    pub fn seen(&self) -> BTreeMap<String, String> {
        self.lock().seen.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pins> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Checks partner `id`'s verified identity `key` against its pins;
    /// pins it (and saves the pin) when first seen.
    pub fn check(&self, id: &str, key: &[u8; 32]) -> Result<(), RelayError> {
        let mut pins = self.lock();
        let relayed = fingerprint(key);
        if let Some(pinned) = pins.plan.get(id)
            && !pinned.eq_ignore_ascii_case(&relayed)
        {
            return Err(RelayError::NotPinned {
                id: id.to_string(),
                pinned: pinned.clone(),
                relayed,
            });
        }
        let hex = crate::hex::hex(key);
        match pins.seen.get(id) {
            Some(seen) if *seen == hex => Ok(()),
            Some(seen) => Err(RelayError::ChangedIdentity {
                id: id.to_string(),
                first: crate::hex::parse_hex_array(seen)
                    .map_or_else(|| seen.clone(), |k| fingerprint(&k)),
                relayed,
                file: pins.file.as_ref().map_or_else(
                    || "the client state file".into(),
                    |f| f.display().to_string(),
                ),
            }),
            None => {
                pins.seen.insert(id.to_string(), hex);
                if let Some(file) = pins.file.clone() {
                    save_partners(&file, &pins.seen);
                }
                Ok(())
            }
        }
    }
}

/// Writes `partners` into the client state file at `file` (its other
/// fields as they are). A failure only loses the pin for a later run: it is
/// logged, and the pin holds for this run.
fn save_partners(file: &Path, partners: &BTreeMap<String, String>) {
    let saved = (|| -> Result<(), String> {
        let bytes = crate::fsutil::read_capped(
            file,
            crate::fsutil::MAX_STATE_FILE_BYTES,
            "client state file",
        )
        .map_err(|e| e.to_string())?;
        let mut state: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        let obj = state
            .as_object_mut()
            .ok_or_else(|| "not a JSON object".to_string())?;
        obj.insert(
            "partners".into(),
            serde_json::to_value(partners).map_err(|e| e.to_string())?,
        );
        let text = serde_json::to_vec_pretty(&state).map_err(|e| e.to_string())?;
        crate::fsutil::write_atomic(file, &text, true, true).map_err(|e| e.to_string())
    })();
    if let Err(e) = saved {
        tracing::warn!(file = %file.display(), "could not save the partners' pinned identities: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_or_unpinned_identity_is_refused_naming_the_partner() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.state.json");
        std::fs::write(&file, br#"{"format":"x","token":"t"}"#).unwrap();
        let (k1, k2) = ([1u8; 32], [2u8; 32]);
        let pins = PartnerPins::new(BTreeMap::new(), BTreeMap::new(), Some(&file));
        pins.check("b", &k1).unwrap();
        pins.check("b", &k1).unwrap();
        let e = pins.check("b", &k2).unwrap_err().to_string();
        assert!(e.contains("`b`") && e.contains(&fingerprint(&k1)), "{e}");
        // Saved in the state file, its other fields kept.
        let saved: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(saved["token"], "t");
        assert_eq!(saved["partners"]["b"], crate::hex::hex(&k1));
        // A plan's pin refuses another identity even on first use.
        let plan = BTreeMap::from([("c".to_string(), fingerprint(&k1))]);
        let pins = PartnerPins::new(plan, BTreeMap::new(), None);
        let e = pins.check("c", &k2).unwrap_err().to_string();
        assert!(e.contains("`c`") && e.contains("pins"), "{e}");
        pins.check("c", &k1).unwrap();
    }
}
