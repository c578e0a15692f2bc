//! The open round's running sum, durable without going through SQLite: a
//! double-buffered file (`running_sum.bin`) in the state folder.
//!
//! Two slots; generation `g` lives in slot `g % 2`. An accepted update
//! writes the new sum as generation `g + 1` into the *other* slot and
//! `fdatasync`s it; only then does SQLite record the submission together
//! with "the open round's sum is generation `g + 1`" in one transaction.
//! A process killed at any point therefore finds either the new generation
//! committed (and intact in its slot) or the old one (whose slot was not
//! touched): every acknowledged update is kept and none is counted twice.
//! Each slot carries a CRC-32 of its header and payload, so a torn write is
//! recognised, not decoded.
//!
//! Measured against the SQLite path (the sum as a blob rewritten in the
//! same transaction), see docs/bench-federation.md.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::store::StoreError;

/// File name inside the state folder.
pub const SUM_FILE: &str = "running_sum.bin";

const MAGIC: &[u8; 4] = b"FHRS";
const VERSION: u32 = 1;
/// magic 4 + version 4 + generation 8 + round 8 + payload length 8 + crc 4.
const HEADER: usize = 36;

/// Where a durable running sum lives.
pub struct SumFile {
    path: PathBuf,
    file: File,
    /// Bytes per slot (header + the largest sum the session allows).
    slot: u64,
    /// Scratch for one slot, reused.
    buf: Vec<u8>,
}

/// A sum read back from its slot.
pub struct StoredSum {
    pub round: u64,
    pub bytes: Vec<u8>,
}

impl SumFile {
    /// Opens (creating if needed) the file in `dir` for sums of at most
    /// `max_payload` bytes.
    pub fn open(dir: &Path, max_payload: usize) -> Result<SumFile, StoreError> {
        let path = dir.join(SUM_FILE);
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io(&path, "open", e))?;
        if !existed {
            // Make the new file's name durable too (power loss, not only a
            // killed process). Folders cannot be opened for syncing on every
            // platform: best effort there.
            #[cfg(unix)]
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io(dir, "sync the folder of", e))?;
        }
        Ok(SumFile {
            path,
            file,
            slot: (HEADER + max_payload) as u64,
            buf: Vec::new(),
        })
    }

    /// Writes `sum` (the serialized accumulator of `round`) as `generation`
    /// into its slot and makes it durable.
    pub fn write(&mut self, generation: u64, round: u64, sum: &[u8]) -> Result<(), StoreError> {
        if (HEADER + sum.len()) as u64 > self.slot {
            return Err(StoreError::Corrupt(format!(
                "a running sum of {} bytes does not fit the slot of {} bytes",
                sum.len(),
                self.slot
            )));
        }
        self.buf.clear();
        self.buf.extend_from_slice(MAGIC);
        self.buf.extend_from_slice(&VERSION.to_le_bytes());
        self.buf.extend_from_slice(&generation.to_le_bytes());
        self.buf.extend_from_slice(&round.to_le_bytes());
        self.buf
            .extend_from_slice(&(sum.len() as u64).to_le_bytes());
        let mut crc = crc32fast::Hasher::new();
        crc.update(&self.buf);
        crc.update(sum);
        self.buf.extend_from_slice(&crc.finalize().to_le_bytes());
        self.buf.extend_from_slice(sum);
        let at = (generation % 2) * self.slot;
        let path = &self.path;
        self.file
            .seek(SeekFrom::Start(at))
            .and_then(|_| self.file.write_all(&self.buf))
            .and_then(|()| self.file.sync_data())
            .map_err(|e| io(path, "write", e))
    }

    /// The newest generation either slot holds, with its round, by the
    /// slots' headers (a slot never written, or not a slot, counts as none).
    pub fn newest(&self) -> Option<(u64, u64)> {
        (0..2u64)
            .filter_map(|slot| peek(&self.file, slot * self.slot))
            .max()
    }

    /// The sum stored as `generation`; an error if its slot holds another
    /// generation or fails its checksum.
    pub fn read(&self, generation: u64) -> Result<StoredSum, StoreError> {
        let at = (generation % 2) * self.slot;
        let path = self.path.clone();
        let mut header = [0u8; HEADER];
        // `&File` reads and seeks: no exclusive access needed to read.
        let mut file = &self.file;
        file.seek(SeekFrom::Start(at))
            .and_then(|_| file.read_exact(&mut header))
            .map_err(|e| io(&path, "read", e))?;
        let word = |from: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&header[from..from + 8]);
            u64::from_le_bytes(b)
        };
        let corrupt = |what: &str| {
            StoreError::Corrupt(format!(
                "{}: generation {generation}: {what}",
                path.display()
            ))
        };
        if &header[..4] != MAGIC || header[4..8] != VERSION.to_le_bytes() {
            return Err(corrupt("not a running-sum slot"));
        }
        if word(8) != generation {
            return Err(corrupt(&format!("the slot holds generation {}", word(8))));
        }
        let round = word(16);
        let len = word(24);
        if HEADER as u64 + len > self.slot {
            return Err(corrupt("length beyond the slot"));
        }
        let mut bytes = vec![0u8; len as usize];
        file.read_exact(&mut bytes)
            .map_err(|e| io(&path, "read", e))?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&header[..32]);
        crc.update(&bytes);
        if header[32..36] != crc.finalize().to_le_bytes() {
            return Err(corrupt("checksum mismatch"));
        }
        Ok(StoredSum { round, bytes })
    }
}

/// (generation, round) of the slot header at `at`, if one is there.
pub(super) fn peek(mut file: &File, at: u64) -> Option<(u64, u64)> {
    let mut header = [0u8; HEADER];
    file.seek(SeekFrom::Start(at)).ok()?;
    file.read_exact(&mut header).ok()?;
    if &header[..4] != MAGIC || header[4..8] != VERSION.to_le_bytes() {
        return None;
    }
    let word = |from: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&header[from..from + 8]);
        u64::from_le_bytes(b)
    };
    Some((word(8), word(16)))
}

fn io(path: &Path, what: &str, e: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        message: format!("cannot {what} the running sum: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_alternate_slots_and_a_torn_slot_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = SumFile::open(dir.path(), 100).unwrap();
        f.write(1, 7, b"first").unwrap();
        f.write(2, 7, b"second, longer").unwrap();
        assert_eq!(f.read(1).unwrap().bytes, b"first");
        let s = f.read(2).unwrap();
        assert_eq!((s.round, s.bytes.as_slice()), (7, &b"second, longer"[..]));
        // Generation 3 overwrites generation 1's slot, not 2's.
        f.write(3, 8, b"third").unwrap();
        assert!(f.read(1).is_err());
        assert_eq!(f.read(2).unwrap().bytes, b"second, longer");
        // A damaged payload byte fails the checksum.
        drop(f);
        let path = dir.path().join(SUM_FILE);
        let mut raw = std::fs::read(&path).unwrap();
        raw[HEADER + 2] ^= 1; // generation 2 lives in slot 0
        std::fs::write(&path, raw).unwrap();
        let mut f = SumFile::open(dir.path(), 100).unwrap();
        let e = f.read(2).err().unwrap().to_string();
        assert!(e.contains("checksum"), "{e}");
        assert_eq!(f.read(3).unwrap().bytes, b"third");
        // Too large for the slot: refused before anything is written.
        assert!(f.write(4, 8, &[0u8; 101]).is_err());
        assert!(f.read(2).is_err(), "the damaged slot stays refused");
    }
}
