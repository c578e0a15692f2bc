//! The mask ledger's file: JSON lines, appended and synced.
//!
//! A header line, then one line per change: the changed entry whole, after
//! the change (`{"key":…,"entry":…}`). A change is appended and synced
//! (`fdatasync`) before the step it records leaves the client: one sync per
//! step, and the bytes written per step do not grow with the run (the whole
//! ledger used to be rewritten and renamed at every step, O(rounds) bytes
//! each, which slowed a 100-tree run's last trees by a fifth).
//!
//! Read back, a key's last line wins. A last line without its newline is a
//! crash inside the append: it is dropped, since the step it recorded never
//! left. Opening compacts the file (one line per entry, through a temporary
//! file and a rename), so no new line ever follows a torn one. A version 1
//! ledger (one JSON object, rewritten whole) is read and compacted into
//! this format.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

const FORMAT: &str = "fedhe-mask-ledger";
const VERSION: u32 = 2;

#[derive(Serialize, Deserialize)]
#[serde(bound(deserialize = "E: DeserializeOwned"))]
struct Header<E> {
    format: String,
    version: u32,
    /// Version 1 only: every entry, in the header itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    entries: Option<BTreeMap<String, E>>,
}

#[derive(Serialize)]
struct LineOut<'a, E> {
    key: &'a str,
    entry: &'a E,
}

#[derive(Deserialize)]
struct LineIn<E> {
    key: String,
    entry: E,
}

/// An open ledger file, appended to.
pub(super) struct LedgerFile {
    path: PathBuf,
    /// `None` once an append failed: what follows a partial line could not
    /// be read back, so the ledger takes no more changes until it is
    /// opened again (and compacted).
    file: Option<File>,
}

impl LedgerFile {
    /// Writes `entries` as a compacted ledger at `path` (owner-only,
    /// through a rename, synced) and opens it for appending.
    pub fn create<E: Serialize>(
        path: &Path,
        entries: &BTreeMap<String, E>,
    ) -> Result<LedgerFile, String> {
        let mut bytes = header_line()?;
        for (key, entry) in entries {
            bytes.extend(line(key, entry)?);
        }
        crate::fsutil::write_atomic(path, &bytes, true, true).map_err(|e| e.to_string())?;
        // The rename itself made durable: every later append goes to this
        // file, which a power loss must not swap back for the old one.
        sync_folder(path).map_err(|e| format!("syncing its folder: {e}"))?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| e.to_string())?;
        Ok(LedgerFile {
            path: path.to_path_buf(),
            file: Some(file),
        })
    }

    /// The file's path (for errors).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `entry` as `key`'s latest state and syncs it.
    pub fn append<E: Serialize>(&mut self, key: &str, entry: &E) -> Result<(), String> {
        let Some(file) = self.file.as_mut() else {
            return Err(format!(
                "an earlier write to {} failed; restart the client to reopen it",
                self.path.display()
            ));
        };
        let bytes = line(key, entry)?;
        let written = file.write_all(&bytes).and_then(|()| file.sync_data());
        if let Err(e) = written {
            self.file = None;
            return Err(e.to_string());
        }
        Ok(())
    }
}

/// Syncs the folder holding `path` (its entries: a rename into it).
fn sync_folder(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let folder = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(folder)?.sync_all()?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn header_line() -> Result<Vec<u8>, String> {
    let header: Header<()> = Header {
        format: FORMAT.into(),
        version: VERSION,
        entries: None,
    };
    let mut bytes = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    Ok(bytes)
}

fn line<E: Serialize>(key: &str, entry: &E) -> Result<Vec<u8>, String> {
    let mut bytes = serde_json::to_vec(&LineOut { key, entry }).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The entries of a ledger file's bytes (either version), the last line of
/// a key winning; a torn last line is dropped.
pub(super) fn parse<E: DeserializeOwned>(bytes: &[u8]) -> Result<BTreeMap<String, E>, String> {
    // Only complete lines: what follows the last newline was never synced
    // whole (a version 1 file has no newline at all: it is one object).
    let complete = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(end) => &bytes[..=end],
        None => bytes,
    };
    if complete.is_empty() {
        return Err("empty (no header line)".into());
    }
    let mut lines = complete.split(|&b| b == b'\n').enumerate();
    let Some((_, first)) = lines.next() else {
        return Err("empty (no header line)".into());
    };
    let header: Header<E> =
        serde_json::from_slice(first).map_err(|e| format!("line 1 (its header): {e}"))?;
    if header.format != FORMAT {
        return Err(format!(
            "line 1: format {:?}, not {FORMAT:?}",
            header.format
        ));
    }
    let mut entries = match (header.version, header.entries) {
        (1, Some(entries)) => entries,
        (VERSION, None) => BTreeMap::new(),
        (1 | VERSION, _) => {
            return Err(format!(
                "line 1: a version {} header {} entries",
                header.version,
                if header.version == 1 {
                    "without"
                } else {
                    "with"
                }
            ));
        }
        (v, _) => return Err(format!("line 1: version {v} is not one this build reads")),
    };
    for (i, l) in lines {
        if l.is_empty() {
            continue;
        }
        if header.version == 1 {
            return Err(format!("line {}: a version 1 ledger is one line", i + 1));
        }
        let l: LineIn<E> = serde_json::from_slice(l).map_err(|e| format!("line {}: {e}", i + 1))?;
        entries.insert(l.key, l.entry);
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct E {
        v: u32,
    }

    /// Appends are read back last-wins; a torn tail is dropped and the
    /// reopened file (compacted) takes appends after it; a bad complete
    /// line is an error naming its line; version 1 is read.
    #[test]
    fn appends_read_back_last_wins_and_a_torn_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.masks.json");
        let mut f = LedgerFile::create::<E>(&path, &BTreeMap::new()).unwrap();
        f.append("a", &E { v: 1 }).unwrap();
        f.append("b", &E { v: 2 }).unwrap();
        f.append("a", &E { v: 3 }).unwrap();
        drop(f);
        let mut bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.iter().filter(|&&b| b == b'\n').count(), 4);
        bytes.extend_from_slice(br#"{"key":"c","entry":{"v""#);
        let read: BTreeMap<String, E> = parse(&bytes).unwrap();
        assert_eq!(read.len(), 2);
        assert_eq!(read["a"], E { v: 3 });
        assert_eq!(read["b"], E { v: 2 });
        // Compacted: one line per entry, then appends follow.
        let mut f = LedgerFile::create(&path, &read).unwrap();
        f.append("c", &E { v: 4 }).unwrap();
        let again: BTreeMap<String, E> = parse(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(again.len(), 3);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 4);
        // A complete line that is not an entry: named by its number.
        let mut bad = std::fs::read(&path).unwrap();
        bad.extend_from_slice(b"{\"key\":1}\n");
        let e = parse::<E>(&bad).unwrap_err();
        assert!(e.starts_with("line 5:"), "{e}");
        let v1 = br#"{"format":"fedhe-mask-ledger","version":1,"entries":{"x":{"v":9}}}"#;
        assert_eq!(parse::<E>(v1).unwrap()["x"], E { v: 9 });
        let v3 = br#"{"format":"fedhe-mask-ledger","version":3}"#;
        assert!(parse::<E>(v3).unwrap_err().contains("version 3"));
        assert!(parse::<E>(b"").unwrap_err().starts_with("empty"));
    }
}
