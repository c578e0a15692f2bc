//! State that cannot vanish silently: the state folder watched under the
//! running aggregator, the database cross-checked against the sum file at
//! start, and a consistent copy for backups.
//!
//! **Watched.** At open the store notes the (device, inode) of the folder,
//! its lock file and its database. Before every write it looks again
//! (three `stat`s): a folder removed (`rm -rf`) or replaced, a lock file or
//! database deleted or swapped, and the aggregator refuses that change and
//! every later one (`state_lost`, 503) and says so once in its log. SQLite
//! would otherwise go on writing into unlinked files, and the next start
//! would come up empty. Where the folder is gone, it is re-created holding
//! this process's lock, so that a second `fedhe serve` on the same path
//! says "in use by another aggregator (pid …)" instead of starting.
//!
//! **Cross-checked.** The database names the running sum's generation in
//! `meta.open_sum`; the sum file's slots name theirs. A database that knows
//! no session beside a sum file that holds sums, or a sum file two or more
//! generations ahead of the database (one ahead is a write whose
//! transaction never committed), or an open round whose counted updates
//! live in a sum file that is gone: each is a start refused with what is
//! missing, never an empty start.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::store::{DB_FILE, LOCK_FILE, StoreError, lock_folder};
use super::sumfile::{SUM_FILE, SumFile, peek};

/// A file's identity: (device, inode) on Unix.
type FileId = (u64, u64);

fn file_id(path: &Path) -> std::io::Result<FileId> {
    let meta = std::fs::metadata(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Ok((meta.dev(), meta.ino()))
    }
    #[cfg(not(unix))]
    {
        // No inode elsewhere: a removed file is still noticed.
        let _ = meta;
        Ok((0, 0))
    }
}

/// The state folder's files as the store opened them.
pub struct Watch {
    dir: PathBuf,
    files: Vec<(PathBuf, FileId)>,
    /// Why changes stopped, once they did.
    lost: Option<String>,
    /// The lock of a folder re-created after it vanished.
    held: Option<std::fs::File>,
}

impl Watch {
    pub fn new(dir: &Path) -> Result<Watch, StoreError> {
        let mut files = Vec::new();
        for path in [dir.to_path_buf(), dir.join(LOCK_FILE), dir.join(DB_FILE)] {
            let id = file_id(&path).map_err(|e| StoreError::Io {
                path: path.clone(),
                message: format!("cannot read its metadata: {e}"),
            })?;
            files.push((path, id));
        }
        Ok(Watch {
            dir: dir.to_path_buf(),
            files,
            lost: None,
            held: None,
        })
    }

    /// `Ok` while every watched file is the one opened.
    pub fn check(&mut self) -> Result<(), StoreError> {
        if let Some(why) = &self.lost {
            return Err(StoreError::Vanished(why.clone()));
        }
        let changed = self
            .files
            .iter()
            .find_map(|(path, id)| match file_id(path) {
                Ok(now) if now == *id => None,
                Ok(_) => Some(format!("{} was replaced", path.display())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Some(format!("{} no longer exists", path.display()))
                }
                Err(e) => Some(format!("{} cannot be read: {e}", path.display())),
            });
        let Some(what) = changed else {
            return Ok(());
        };
        let why = format!(
            "the state folder {} was removed or replaced under this aggregator ({what}); it \
             accepts no more changes. Stop it, put the folder back (or a `fedhe serve --backup` \
             copy) and start it again",
            self.dir.display()
        );
        tracing::error!(state_dir = %self.dir.display(), "{why}");
        self.hold_folder();
        self.lost = Some(why.clone());
        Err(StoreError::Vanished(why))
    }

    /// Re-creates a vanished folder with this process's lock in it (best
    /// effort: logged if it fails).
    fn hold_folder(&mut self) {
        if self.dir.exists() {
            return;
        }
        let held = std::fs::create_dir_all(&self.dir)
            .map_err(|e| StoreError::Io {
                path: self.dir.clone(),
                message: e.to_string(),
            })
            .and_then(|()| lock_folder(&self.dir));
        match held {
            Ok(f) => self.held = Some(f),
            Err(e) => tracing::warn!("could not hold the vanished state folder's lock: {e}"),
        }
    }
}

/// At open: a database that knows no session beside a sum file holding sums
/// lost its committed changes (typically its `-wal` file).
pub fn check_orphan_sum_file(dir: &Path, has_session: bool) -> Result<(), StoreError> {
    let path = dir.join(SUM_FILE);
    let Ok(file) = std::fs::File::open(&path) else {
        return Ok(());
    };
    if has_session || file.metadata().map_or(0, |m| m.len()) == 0 {
        return Ok(());
    }
    let holds = match peek(&file, 0) {
        Some((g, r)) => format!("holds round {r}'s running sum at generation {g}"),
        None => "holds data".into(),
    };
    Err(StoreError::Corrupt(format!(
        "{} {holds}, but {} knows no session and no round: the database lost its committed \
         changes (was it copied or restored without its {DB_FILE}-wal file?). Refusing to start \
         empty: restore the whole folder, or a `fedhe serve --backup` copy",
        path.display(),
        dir.join(DB_FILE).display()
    )))
}

/// Before the sum file is opened (and created if missing): the open round's
/// counted updates (`counted`: round, generation, updates) live in it.
pub fn check_sum_file_present(
    dir: &Path,
    counted: Option<(u64, u64, u32)>,
) -> Result<(), StoreError> {
    let path = dir.join(SUM_FILE);
    match counted {
        Some((round, g, n)) if n > 0 && !path.exists() => Err(StoreError::Corrupt(format!(
            "the database counts {n} update(s) in the running sum of round {round} (generation \
             {g} of {}), but that file is missing: restore it with the rest of the folder",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// The sum file may be one generation ahead of the database (a write whose
/// transaction never committed), never more.
pub fn check_sum_generation(
    file: &SumFile,
    open_sum: Option<(u64, u64)>,
    generation: u64,
) -> Result<(), StoreError> {
    let Some((g, round)) = file.newest() else {
        return Ok(());
    };
    if g < generation.saturating_add(2) {
        return Ok(());
    }
    let knows = match open_sum {
        Some((r, g)) if r > 0 => format!("generation {g} (round {r})"),
        Some((_, g)) => format!("generation {g}"),
        None => "no running sum".into(),
    };
    Err(StoreError::Corrupt(format!(
        "{SUM_FILE} holds round {round}'s running sum at generation {g}, but the database's \
         newest committed one is {knows}: the database lost committed updates (was {DB_FILE} \
         restored without its {DB_FILE}-wal file?). Restore the whole folder, or a `fedhe serve \
         --backup` copy"
    )))
}

/// Writes a consistent copy of the state folder `from` into `to`.
pub fn backup(conn: &Connection, from: Option<&Path>, to: &Path) -> Result<(), StoreError> {
    let io = |path: &Path, e: std::io::Error| StoreError::Io {
        path: path.to_path_buf(),
        message: format!("backup: {e}"),
    };
    std::fs::create_dir_all(to).map_err(|e| io(to, e))?;
    if let Some(from) = from
        && from.canonicalize().ok() == to.canonicalize().ok()
    {
        return Err(StoreError::Io {
            path: to.to_path_buf(),
            message: "the backup folder is the state folder itself; give another".into(),
        });
    }
    let db_tmp = to.join(format!(".{DB_FILE}.partial"));
    // VACUUM INTO refuses an existing file; a partial one is ours.
    let _ = std::fs::remove_file(&db_tmp);
    let target = db_tmp.to_string_lossy().to_string();
    conn.execute("VACUUM INTO ?1", [&target])?;
    let mut done = vec![(db_tmp, to.join(DB_FILE))];
    if let Some(from) = from
        && from.join(SUM_FILE).exists()
    {
        let sum_tmp = to.join(format!(".{SUM_FILE}.partial"));
        std::fs::copy(from.join(SUM_FILE), &sum_tmp).map_err(|e| io(&sum_tmp, e))?;
        done.push((sum_tmp, to.join(SUM_FILE)));
    } else {
        // A stale sum file beside a newer database would fail its check.
        let _ = std::fs::remove_file(to.join(SUM_FILE));
    }
    // A WAL left from an older copy would be replayed over the new file.
    for stale in [format!("{DB_FILE}-wal"), format!("{DB_FILE}-shm")] {
        let _ = std::fs::remove_file(to.join(stale));
    }
    for (tmp, path) in done {
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
    }
    #[cfg(unix)]
    std::fs::File::open(to)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(to, e))?;
    Ok(())
}
