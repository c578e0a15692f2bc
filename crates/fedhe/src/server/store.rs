//! Durable aggregator state: one SQLite file (`aggregator.sqlite3`) in the
//! state folder. Nothing else is ever written there, and no path is derived
//! from anything a client sends.
//!
//! **One commit per change.** Every write goes through [`Store::write`]: the
//! closure's writes ([`Tx`]) are one SQLite transaction, committed when it
//! returns `Ok` and rolled back otherwise. A request that changes state
//! therefore commits once or not at all. Reads are methods of [`Store`].
//!
//! **The running sum.** With a state folder the open round's running sum
//! lives in a double-buffered file beside the database ([`super::sumfile`]).
//! [`Tx::record_submission`] writes the new sum as the next generation into
//! the slot the committed generation does not use and syncs it, then records
//! the submission in the same transaction as "the open round's sum is that
//! generation" (`meta.open_sum`). Until the commit the database names the
//! previous generation, whose slot was not touched: a process killed (or a
//! transaction failed) at any point finds either the new sum committed and
//! intact, or the old one. An accepted update is counted fully or not at
//! all, never twice; after a failed transaction the next one writes the
//! same generation into the same slot again. In memory (no state folder)
//! the running sum is a blob in the same transaction. A closed round's
//! published sum is a blob in `rounds`.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, params};

/// File name of the database inside the state folder.
pub const DB_FILE: &str = "aggregator.sqlite3";

/// File name of the lock that keeps a second aggregator out of the folder.
pub const LOCK_FILE: &str = "aggregator.lock";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("state folder {}: {message}", .path.display())]
    Io { path: PathBuf, message: String },
    #[error(
        "state folder {} is in use by another aggregator{}; stop it, or give this one another --state-dir",
        .path.display(),
        .holder.map_or(String::new(), |p| format!(" (pid {p})"))
    )]
    Locked { path: PathBuf, holder: Option<u32> },
    #[error("state database is inconsistent: {0}")]
    Corrupt(String),
    /// The state folder, its lock or its database was removed or replaced
    /// under the running aggregator: it takes no more changes.
    #[error("{0}")]
    Vanished(String),
}

/// A client row.
#[derive(Debug, Clone)]
pub struct StoredClient {
    pub id: String,
    pub name: String,
    pub token_hash: [u8; 32],
    pub joined_unix: u64,
    pub last_round: Option<u64>,
}

/// A client's identity key and the registration proof that binds it (relayed
/// to the other clients, who check it with the federation key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredIdentity {
    pub key: [u8; 32],
    pub proof: Vec<u8>,
}

/// A round row (without its sum).
#[derive(Debug, Clone)]
pub struct StoredRound {
    pub round: u64,
    pub open: bool,
    /// Values per update (fixed by the round's first update).
    pub len: Option<usize>,
    pub contributors: u32,
    pub aggregate_ms: f64,
    pub bytes_accepted: u64,
    /// When the round opened (Unix seconds).
    pub opened_unix: u64,
}

pub struct Store {
    conn: Connection,
    /// The state folder (`None` in memory).
    dir: Option<PathBuf>,
    /// The running-sum file, once the session's sizes are known.
    sums: Option<super::sumfile::SumFile>,
    /// Generation of the newest committed running sum in `sums`.
    generation: u64,
    /// Held (locked) for the store's lifetime; the OS releases it when the
    /// process ends, however it ends.
    _lock: Option<std::fs::File>,
    /// The folder, lock and database files as opened (with a state folder).
    watch: Option<super::watch::Watch>,
    #[cfg(test)]
    fault: Fault,
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

impl Store {
    /// Opens (creating if needed) the database in `dir`, after taking the
    /// folder's exclusive lock.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let io = |message: String| StoreError::Io {
            path: dir.to_path_buf(),
            message,
        };
        if dir.exists() && !dir.is_dir() {
            return Err(io(
                "is a file, not a folder: give --state-dir a folder (it is created if missing)"
                    .into(),
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| io(format!("cannot create it: {e}")))?;
        let lock = lock_folder(dir)?;
        let conn = Connection::open(dir.join(DB_FILE))?;
        let mut store = Self::init(conn, Some(lock))?;
        store.dir = Some(dir.to_path_buf());
        store.watch = Some(super::watch::Watch::new(dir)?);
        super::watch::check_orphan_sum_file(dir, store.get_meta("public_key")?.is_some())?;
        Ok(store)
    }

    /// [`open`](Self::open), keeping running sums as blobs in the database
    /// (the slower path, for comparison).
    pub fn open_sums_in_database(dir: &Path) -> Result<Store, StoreError> {
        let mut store = Self::open(dir)?;
        if store.open_sum()?.is_some() {
            return Err(StoreError::Corrupt(
                "this state folder keeps its running sum in running_sum.bin; open it without \
                 --sum-in-database"
                    .into(),
            ));
        }
        store.dir = None;
        Ok(store)
    }

    /// An in-memory database (embedded mode without a state folder).
    pub fn in_memory() -> Result<Store, StoreError> {
        Self::init(Connection::open_in_memory()?, None)
    }

    /// Keeps running sums of at most `max_payload` bytes in the state
    /// folder's sum file (no-op in memory, or when already on).
    pub fn use_sum_file(&mut self, max_payload: usize) -> Result<(), StoreError> {
        if let (Some(dir), None) = (&self.dir, &self.sums) {
            let counted = match self.open_sum()? {
                Some((round, g)) => Some((round, g, self.open_contributors(round)?)),
                None => None,
            };
            super::watch::check_sum_file_present(dir, counted)?;
            let file = super::sumfile::SumFile::open(dir, max_payload)?;
            super::watch::check_sum_generation(&file, self.open_sum()?, self.generation)?;
            self.sums = Some(file);
        }
        Ok(())
    }

    /// Updates counted in `round`'s running sum, if it is the open round.
    fn open_contributors(&self, round: u64) -> Result<u32, StoreError> {
        let n: Option<i64> = self
            .conn
            .query_row(
                "SELECT contributors FROM rounds WHERE round = ?1 AND open = 1",
                [to_i64(round)],
                |r| r.get(0),
            )
            .optional()?;
        Ok(n.map_or(0, |n| u32::try_from(n).unwrap_or(0)))
    }

    /// Copies every committed change from the WAL into the database file
    /// and empties the WAL (`PRAGMA wal_checkpoint(TRUNCATE)`): from here a
    /// copy of `aggregator.sqlite3` alone holds the whole state. Called at
    /// every round close and at shutdown; a no-op in memory.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        if self.watch.is_none() {
            return Ok(());
        }
        let busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy != 0 {
            return Err(StoreError::Corrupt(
                "the WAL checkpoint could not complete (another connection reads the database)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Refuses every change once the state folder, its lock file or its
    /// database was removed or replaced (by inode) under this aggregator;
    /// the first time, says so in the log and re-creates the folder with
    /// this process's lock, so that no second aggregator starts there
    /// unnoticed. Cheap (three `stat`s): run before every write.
    pub fn check_folder(&mut self) -> Result<(), StoreError> {
        match self.watch.as_mut() {
            Some(w) => w.check(),
            None => Ok(()),
        }
    }

    /// A consistent copy of the state into `to` (created if needed): the
    /// database through SQLite's `VACUUM INTO` (a snapshot of the last
    /// commit, whatever the WAL holds) and the running sum's file. Taken
    /// between two transactions, so both name the same generation.
    pub fn backup(&self, to: &Path) -> Result<(), StoreError> {
        super::watch::backup(&self.conn, self.dir.as_deref(), to)
    }

    /// (round, generation) of the newest committed running sum in the file.
    fn open_sum(&self) -> Result<Option<(u64, u64)>, StoreError> {
        let Some(v) = self.get_meta("open_sum")? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&v).to_string();
        let parsed = text
            .split_once(' ')
            .and_then(|(r, g)| Some((r.parse().ok()?, g.parse().ok()?)));
        parsed
            .map(Some)
            .ok_or_else(|| StoreError::Corrupt(format!("open_sum is {text:?}")))
    }

    fn init(conn: Connection, lock: Option<std::fs::File>) -> Result<Store, StoreError> {
        // WAL + FULL: every committed transaction survives a killed process
        // (and a power cut); readers never block the writer.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (
                 key TEXT PRIMARY KEY,
                 value BLOB NOT NULL
             );
             CREATE TABLE IF NOT EXISTS clients (
                 id TEXT PRIMARY KEY,
                 name TEXT NOT NULL,
                 token_hash BLOB NOT NULL UNIQUE,
                 joined INTEGER NOT NULL,
                 last_round INTEGER
             );
             CREATE TABLE IF NOT EXISTS rounds (
                 round INTEGER PRIMARY KEY,
                 open INTEGER NOT NULL,
                 contributors INTEGER NOT NULL,
                 len INTEGER,
                 aggregate_ms REAL NOT NULL DEFAULT 0,
                 bytes_accepted INTEGER NOT NULL DEFAULT 0,
                 opened INTEGER NOT NULL,
                 closed INTEGER,
                 sum BLOB
             );
             CREATE TABLE IF NOT EXISTS registrations (
                 id TEXT PRIMARY KEY,
                 issued_ms INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS identities (
                 id TEXT PRIMARY KEY,
                 identity BLOB NOT NULL,
                 proof BLOB NOT NULL
             );
             CREATE TABLE IF NOT EXISTS mask_keys (
                 round INTEGER NOT NULL,
                 attempt INTEGER NOT NULL,
                 client_id TEXT NOT NULL,
                 public BLOB NOT NULL,
                 signature BLOB NOT NULL,
                 PRIMARY KEY (round, attempt, client_id)
             );
             CREATE TABLE IF NOT EXISTS submissions (
                 round INTEGER NOT NULL,
                 client_id TEXT NOT NULL,
                 at INTEGER NOT NULL,
                 bytes INTEGER NOT NULL,
                 PRIMARY KEY (round, client_id)
             );",
        )?;
        conn.execute_batch(SECAGG_TABLES)?;
        let mut store = Store {
            conn,
            dir: None,
            sums: None,
            generation: 0,
            _lock: lock,
            watch: None,
            #[cfg(test)]
            fault: Fault::default(),
        };
        store.generation = store.open_sum()?.map_or(0, |(_, g)| g);
        Ok(store)
    }

    pub fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?)
    }

    /// Each client's identity key and the registration proof that binds it.
    pub fn identities(
        &self,
    ) -> Result<std::collections::HashMap<String, StoredIdentity>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT id, identity, proof FROM identities")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        let mut out = std::collections::HashMap::new();
        for row in rows {
            let (id, key, proof) = row?;
            let key: [u8; 32] = key
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::Corrupt(format!("identity key of client {id}")))?;
            out.insert(id, StoredIdentity { key, proof });
        }
        Ok(out)
    }

    /// The mask keys of `round`, `attempt`: (client, public key, signature).
    #[allow(clippy::type_complexity)]
    pub fn mask_keys(
        &self,
        round: u64,
        attempt: u32,
    ) -> Result<Vec<(String, [u8; 32], [u8; 64])>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT client_id, public, signature FROM mask_keys
             WHERE round = ?1 AND attempt = ?2 ORDER BY client_id",
        )?;
        let rows = st.query_map(params![to_i64(round), i64::from(attempt)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, public, signature) = row?;
            let bad = || StoreError::Corrupt(format!("mask key of client {id}"));
            let public: [u8; 32] = public.as_slice().try_into().map_err(|_| bad())?;
            let signature: [u8; 64] = signature.as_slice().try_into().map_err(|_| bad())?;
            out.push((id, public, signature));
        }
        Ok(out)
    }

    /// Double masking: the sealed bundles of `round`, `attempt` as
    /// (sender, recipient, bytes).
    pub fn mask_shares(
        &self,
        round: u64,
        attempt: u32,
    ) -> Result<Vec<(String, String, Vec<u8>)>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT sender, recipient, bytes FROM mask_shares
             WHERE round = ?1 AND attempt = ?2 ORDER BY sender, recipient",
        )?;
        let rows = st.query_map(params![to_i64(round), i64::from(attempt)], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Double masking: the rows of `table` (`mask_signatures`: the
    /// signature, `mask_reveals`: the reveal's JSON) of `round`, `attempt`
    /// by client.
    pub fn mask_rows(
        &self,
        table: MaskTable,
        round: u64,
        attempt: u32,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let sql = match table {
            MaskTable::Signatures => {
                "SELECT client_id, signature FROM mask_signatures
                 WHERE round = ?1 AND attempt = ?2 ORDER BY client_id"
            }
            MaskTable::Reveals => {
                "SELECT client_id, body FROM mask_reveals
                 WHERE round = ?1 AND attempt = ?2 ORDER BY client_id"
            }
        };
        let mut st = self.conn.prepare(sql)?;
        let rows = st.query_map(params![to_i64(round), i64::from(attempt)], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Issue time of each client's last registration proof.
    pub fn registrations(&self) -> Result<std::collections::HashMap<String, u64>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT id, issued_ms FROM registrations")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, to_u64(r.get(1)?))))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn clients(&self) -> Result<Vec<StoredClient>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT id, name, token_hash, joined, last_round FROM clients ORDER BY joined, id",
        )?;
        let rows = st.query_map([], |r| {
            let hash: Vec<u8> = r.get(2)?;
            let last: Option<i64> = r.get(4)?;
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                hash,
                r.get::<_, i64>(3)?,
                last,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, name, hash, joined, last) = row?;
            let token_hash: [u8; 32] = hash
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::Corrupt(format!("token hash of client {id}")))?;
            out.push(StoredClient {
                id,
                name,
                token_hash,
                joined_unix: to_u64(joined),
                last_round: last.map(to_u64),
            });
        }
        Ok(out)
    }

    /// All rounds, oldest first.
    pub fn rounds(&self) -> Result<Vec<StoredRound>, StoreError> {
        let mut st = self.conn.prepare(
            "SELECT round, open, contributors, aggregate_ms, bytes_accepted, len, opened
             FROM rounds ORDER BY round",
        )?;
        let rows = st.query_map([], |r| {
            Ok(StoredRound {
                round: to_u64(r.get(0)?),
                open: r.get::<_, i64>(1)? != 0,
                contributors: u32::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                aggregate_ms: r.get(3)?,
                bytes_accepted: to_u64(r.get(4)?),
                len: r
                    .get::<_, Option<i64>>(5)?
                    .map(|v| usize::try_from(v).unwrap_or(0)),
                opened_unix: to_u64(r.get(6)?),
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Client ids that submitted to `round`.
    pub fn submitted(&self, round: u64) -> Result<Vec<String>, StoreError> {
        let mut st = self
            .conn
            .prepare("SELECT client_id FROM submissions WHERE round = ?1 ORDER BY at, client_id")?;
        let rows = st.query_map([to_i64(round)], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// The stored sum of `round` (running sum if open, published if closed).
    pub fn sum(&self, round: u64) -> Result<Option<Vec<u8>>, StoreError> {
        #[cfg(test)]
        if self.fault.fail_sum_reads.get() {
            return Err(StoreError::Io {
                path: PathBuf::from("(fault injection)"),
                message: format!("reading the sum of round {round} failed on purpose"),
            });
        }
        if let Some(f) = self.sums.as_ref()
            && let Some((r, g)) = self.open_sum()?
            && r == round
            && self.conn.query_row(
                "SELECT open FROM rounds WHERE round = ?1",
                [to_i64(round)],
                |row| row.get::<_, i64>(0),
            )? != 0
        {
            let stored = f.read(g)?;
            if stored.round != round {
                return Err(StoreError::Corrupt(format!(
                    "running sum generation {g} belongs to round {}, not {round}",
                    stored.round
                )));
            }
            return Ok(Some(stored.bytes));
        }
        Ok(self
            .conn
            .query_row(
                "SELECT sum FROM rounds WHERE round = ?1",
                [to_i64(round)],
                |r| r.get::<_, Option<Vec<u8>>>(0),
            )
            .optional()?
            .flatten())
    }

    /// Runs `f`'s writes as one transaction: all committed when it returns
    /// `Ok`, none when it (or the commit) fails.
    pub fn write<T>(
        &mut self,
        f: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.check_folder()?;
        let mut tx = Tx {
            tx: self.conn.transaction()?,
            sums: self.sums.as_mut(),
            generation: self.generation,
            written: None,
            #[cfg(test)]
            fault: &self.fault,
        };
        // On an error `tx` is dropped: rusqlite rolls the transaction back.
        let out = f(&mut tx)?;
        tx.step()?;
        let written = tx.written;
        tx.tx.commit()?;
        if let Some(g) = written {
            self.generation = g;
        }
        Ok(out)
    }
}

/// Double masking's tables (issue 23 Part 2): sealed share bundles,
/// survivor signatures, reveals (the request's JSON) and key reports.
const SECAGG_TABLES: &str = "CREATE TABLE IF NOT EXISTS mask_shares (
    round INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    sender TEXT NOT NULL,
    recipient TEXT NOT NULL,
    bytes BLOB NOT NULL,
    PRIMARY KEY (round, attempt, sender, recipient)
);
CREATE TABLE IF NOT EXISTS mask_signatures (
    round INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    client_id TEXT NOT NULL,
    signature BLOB NOT NULL,
    PRIMARY KEY (round, attempt, client_id)
);
CREATE TABLE IF NOT EXISTS mask_reveals (
    round INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    client_id TEXT NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (round, attempt, client_id)
);
CREATE TABLE IF NOT EXISTS mask_reports (
    round INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    reporter TEXT NOT NULL,
    member TEXT NOT NULL,
    reason TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (round, reporter)
);";

/// The double-masking tables with one row per client and attempt.
#[derive(Debug, Clone, Copy)]
pub enum MaskTable {
    /// `mask_signatures`: survivor signatures.
    Signatures,
    /// `mask_reveals`: reveals (the request's JSON).
    Reveals,
}

/// The open round's new running sum, as [`Tx::record_submission`] records it.
pub struct Submission<'a> {
    pub round: u64,
    pub client_id: &'a str,
    /// Body bytes of the update.
    pub bytes: u64,
    /// Values per update.
    pub len: usize,
    /// Updates in the new sum.
    pub contributors: u32,
    pub add_ms: f64,
    pub now: u64,
}

/// The writes of one transaction ([`Store::write`]).
pub struct Tx<'s> {
    tx: rusqlite::Transaction<'s>,
    sums: Option<&'s mut super::sumfile::SumFile>,
    /// Generation of the committed running sum.
    generation: u64,
    /// The generation this transaction wrote; current once it commits.
    written: Option<u64>,
    #[cfg(test)]
    fault: &'s Fault,
}

impl Tx<'_> {
    /// Before every write (a statement, the sum file's slot, the commit):
    /// where the test-only fault injector fails a transaction.
    fn step(&self) -> Result<(), StoreError> {
        #[cfg(test)]
        self.fault.step()?;
        Ok(())
    }

    fn exec(&self, sql: &str, params: impl rusqlite::Params) -> Result<usize, StoreError> {
        self.step()?;
        Ok(self.tx.execute(sql, params)?)
    }

    /// Deletes `round`'s double-masking rows (bundles, signatures,
    /// reveals, every attempt). Part of the write before it (no fault step
    /// of its own): the close's or the restart's statement, in the same
    /// transaction, so the fault-injection write counts stay as they were.
    fn drop_mask_rows(&self, round: u64) -> Result<(), StoreError> {
        for table in ["mask_shares", "mask_signatures", "mask_reveals"] {
            self.tx.execute(
                &format!("DELETE FROM {table} WHERE round = ?1"),
                [to_i64(round)],
            )?;
        }
        Ok(())
    }

    pub fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![key, value],
        )?;
        Ok(())
    }

    /// Stores the session (public key and `max_len`) and opens round 1 if no
    /// round exists yet.
    pub fn save_session(
        &self,
        public_key: &[u8],
        max_len: Option<usize>,
        now: u64,
    ) -> Result<(), StoreError> {
        self.put_meta("public_key", public_key)?;
        if let Some(len) = max_len {
            self.put_meta("max_len", len.to_string().as_bytes())?;
        }
        let rounds: i64 = self
            .tx
            .query_row("SELECT COUNT(*) FROM rounds", [], |r| r.get(0))?;
        if rounds == 0 {
            self.exec(
                "INSERT INTO rounds (round, open, contributors, opened) VALUES (1, 1, 0, ?1)",
                params![to_i64(now)],
            )?;
        }
        Ok(())
    }

    /// Adds a client and the issue time of its registration proof.
    pub fn insert_client(
        &self,
        c: &StoredClient,
        issued_ms: u64,
        identity: Option<&StoredIdentity>,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO clients (id, name, token_hash, joined, last_round)
             VALUES (?1, ?2, ?3, ?4, NULL)",
            params![c.id, c.name, &c.token_hash[..], to_i64(c.joined_unix)],
        )?;
        self.upsert_registration(&c.id, issued_ms)?;
        self.set_identity(&c.id, identity)
    }

    /// A registered client registered again: new token hash and name.
    pub fn rotate_client(
        &self,
        id: &str,
        name: &str,
        token_hash: &[u8; 32],
        issued_ms: u64,
        identity: Option<&StoredIdentity>,
    ) -> Result<(), StoreError> {
        let changed = self.exec(
            "UPDATE clients SET token_hash = ?1, name = ?2 WHERE id = ?3",
            params![&token_hash[..], name, id],
        )?;
        if changed != 1 {
            return Err(StoreError::Corrupt(format!(
                "client {id} is not registered"
            )));
        }
        self.upsert_registration(id, issued_ms)?;
        self.set_identity(id, identity)
    }

    fn upsert_registration(&self, id: &str, issued_ms: u64) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO registrations (id, issued_ms) VALUES (?1, ?2)
             ON CONFLICT(id) DO UPDATE SET issued_ms = excluded.issued_ms",
            params![id, to_i64(issued_ms)],
        )?;
        Ok(())
    }

    fn set_identity(&self, id: &str, identity: Option<&StoredIdentity>) -> Result<(), StoreError> {
        match identity {
            Some(i) => self.exec(
                "INSERT INTO identities (id, identity, proof) VALUES (?1, ?2, ?3)
                 ON CONFLICT(id) DO UPDATE SET identity = excluded.identity, proof = excluded.proof",
                params![id, &i.key[..], i.proof],
            )?,
            None => self.exec("DELETE FROM identities WHERE id = ?1", [id])?,
        };
        Ok(())
    }

    /// Records a client's signed mask key for `round`, `attempt`.
    pub fn put_mask_key(
        &self,
        round: u64,
        attempt: u32,
        client_id: &str,
        public: &[u8; 32],
        signature: &[u8; 64],
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO mask_keys (round, attempt, client_id, public, signature)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                to_i64(round),
                i64::from(attempt),
                client_id,
                &public[..],
                &signature[..]
            ],
        )?;
        Ok(())
    }

    /// Drops a client's mask key of `round`, `attempt`.
    pub fn delete_mask_key(
        &self,
        round: u64,
        attempt: u32,
        client_id: &str,
    ) -> Result<(), StoreError> {
        self.exec(
            "DELETE FROM mask_keys WHERE round = ?1 AND attempt = ?2 AND client_id = ?3",
            params![to_i64(round), i64::from(attempt), client_id],
        )?;
        Ok(())
    }

    /// Double masking: `sender`'s sealed bundle for `recipient`.
    pub fn put_mask_share(
        &self,
        (round, attempt): (u64, u32),
        sender: &str,
        recipient: &str,
        bytes: &[u8],
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO mask_shares (round, attempt, sender, recipient, bytes)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![to_i64(round), i64::from(attempt), sender, recipient, bytes],
        )?;
        Ok(())
    }

    /// Double masking: `client`'s row of `table` (its survivor signature,
    /// or its reveal's JSON).
    pub fn put_mask_row(
        &self,
        table: MaskTable,
        (round, attempt): (u64, u32),
        client: &str,
        value: &[u8],
    ) -> Result<(), StoreError> {
        let sql = match table {
            MaskTable::Signatures => {
                "INSERT INTO mask_signatures (round, attempt, client_id, signature)
                 VALUES (?1, ?2, ?3, ?4)"
            }
            MaskTable::Reveals => {
                "INSERT INTO mask_reveals (round, attempt, client_id, body)
                 VALUES (?1, ?2, ?3, ?4)"
            }
        };
        self.exec(
            sql,
            params![to_i64(round), i64::from(attempt), client, value],
        )?;
        Ok(())
    }

    /// A member's report of another's unusable mask key (one per member
    /// and round).
    pub fn put_mask_report(
        &self,
        (round, attempt): (u64, u32),
        reporter: &str,
        member: &str,
        reason: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT INTO mask_reports (round, attempt, reporter, member, reason, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                to_i64(round),
                i64::from(attempt),
                reporter,
                member,
                reason,
                to_i64(now)
            ],
        )?;
        Ok(())
    }

    /// Starts a new attempt of the open `round`: its submissions and running
    /// sum are discarded and `mask_state` (the attempt's description) is
    /// stored.
    pub fn restart_attempt(&self, round: u64, mask_state: &[u8]) -> Result<(), StoreError> {
        self.exec("DELETE FROM submissions WHERE round = ?1", [to_i64(round)])?;
        // The restarted attempt's bundles, signatures and reveals go too
        // (the new attempt has none yet).
        self.drop_mask_rows(round)?;
        let changed = self.exec(
            "UPDATE rounds SET sum = NULL, contributors = 0, len = NULL, aggregate_ms = 0,
                 bytes_accepted = 0
             WHERE round = ?1 AND open = 1",
            [to_i64(round)],
        )?;
        if changed != 1 {
            return Err(StoreError::Corrupt(format!("round {round} is not open")));
        }
        // The running sum is discarded, its generation kept (round 0 is
        // never open): the start-up check compares the sum file with it.
        if self.sums.is_some() {
            let named = format!("0 {}", self.generation);
            self.put_meta("open_sum", named.as_bytes())?;
        } else {
            self.exec("DELETE FROM meta WHERE key = 'open_sum'", [])?;
        }
        self.put_meta("mask_state", mask_state)
    }

    /// Records an accepted update: submission row, the new running sum, the
    /// client's last round.
    pub fn record_submission(
        &mut self,
        s: &Submission<'_>,
        new_sum: &[u8],
    ) -> Result<(), StoreError> {
        // With a sum file: the new sum goes into the other slot first
        // (synced); the rows below name it. Until the commit, the previous
        // generation stays the durable one.
        let generation = self.generation + 1;
        let in_file = self.sums.is_some();
        if in_file {
            self.step()?;
        }
        if let Some(f) = self.sums.as_mut() {
            f.write(generation, s.round, new_sum)?;
        }
        self.exec(
            "INSERT INTO submissions (round, client_id, at, bytes) VALUES (?1, ?2, ?3, ?4)",
            params![to_i64(s.round), s.client_id, to_i64(s.now), to_i64(s.bytes)],
        )?;
        let blob: Option<&[u8]> = (!in_file).then_some(new_sum);
        let changed = self.exec(
            "UPDATE rounds SET sum = ?1, contributors = ?2,
                 aggregate_ms = aggregate_ms + ?3, bytes_accepted = bytes_accepted + ?4,
                 len = ?6
             WHERE round = ?5 AND open = 1",
            params![
                blob,
                i64::from(s.contributors),
                s.add_ms,
                to_i64(s.bytes),
                to_i64(s.round),
                to_i64(s.len as u64)
            ],
        )?;
        if changed != 1 {
            return Err(StoreError::Corrupt(format!(
                "round {} is not open",
                s.round
            )));
        }
        if in_file {
            let named = format!("{} {generation}", s.round);
            self.put_meta("open_sum", named.as_bytes())?;
            self.written = Some(generation);
        }
        self.exec(
            "UPDATE clients SET last_round = ?1 WHERE id = ?2",
            params![to_i64(s.round), s.client_id],
        )?;
        Ok(())
    }

    /// Closes `round` with its published sum and opens `round + 1`, whose
    /// mask state (its expected roster) is `next_mask_state`; without one
    /// (the plan's last round) no round opens after it.
    pub fn close_round(
        &self,
        round: u64,
        now: u64,
        published: &[u8],
        next_mask_state: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        if let Some(state) = next_mask_state {
            self.put_meta("mask_state", state)?;
        }
        let changed = self.exec(
            "UPDATE rounds SET open = 0, closed = ?1, sum = ?3 WHERE round = ?2 AND open = 1",
            params![to_i64(now), to_i64(round), published],
        )?;
        if changed != 1 {
            return Err(StoreError::Corrupt(format!("round {round} is not open")));
        }
        // A closed round's bundles, signatures and reveals are not needed
        // again: they go with the close, so the store does not grow.
        self.drop_mask_rows(round)?;
        if next_mask_state.is_some() {
            self.exec(
                "INSERT INTO rounds (round, open, contributors, opened) VALUES (?1, 1, 0, ?2)",
                params![to_i64(round + 1), to_i64(now)],
            )?;
        }
        Ok(())
    }
}

/// Test-only fault injection: counts the writes of every transaction and
/// fails one of them, as a process killed between two writes would (an
/// uncommitted transaction leaves nothing behind, killed or rolled back).
#[cfg(test)]
#[derive(Default)]
struct Fault {
    writes: std::cell::Cell<u64>,
    fail_at: std::cell::Cell<Option<u64>>,
    /// Reading a running sum back fails (a disk gone bad after a write).
    fail_sum_reads: std::cell::Cell<bool>,
}

#[cfg(test)]
impl Fault {
    fn step(&self) -> Result<(), StoreError> {
        let n = self.writes.get();
        self.writes.set(n + 1);
        if self.fail_at.get() == Some(n) {
            self.fail_at.set(None);
            return Err(StoreError::Io {
                path: PathBuf::from("(fault injection)"),
                message: format!("write {n} failed on purpose"),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
impl Store {
    /// Counts writes from zero again and fails write `k` once (`None`: only
    /// counts). The commit of a transaction counts as its last write.
    pub(crate) fn fail_at_write(&self, k: Option<u64>) {
        self.fault.writes.set(0);
        self.fault.fail_at.set(k);
    }

    /// Writes since [`fail_at_write`](Self::fail_at_write).
    pub(crate) fn writes(&self) -> u64 {
        self.fault.writes.get()
    }

    /// Makes [`sum`](Self::sum) fail (or work again).
    pub(crate) fn fail_sum_reads(&self, fail: bool) {
        self.fault.fail_sum_reads.set(fail);
    }
}

/// Takes the folder's exclusive lock and writes our pid into the lock file
/// (for the message another aggregator shows).
pub(super) fn lock_folder(dir: &Path) -> Result<std::fs::File, StoreError> {
    use std::io::{Read, Seek, Write};
    let path = dir.join(LOCK_FILE);
    let io = |e: std::io::Error| StoreError::Io {
        path: dir.to_path_buf(),
        message: format!("lock file {}: {e}", path.display()),
    };
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io)?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            // The holder's pid is only for the message; an unreadable one is left out.
            let holder = f
                .read_to_string(&mut text)
                .ok()
                .and_then(|_| text.trim().parse().ok());
            return Err(StoreError::Locked {
                path: dir.to_path_buf(),
                holder,
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    f.set_len(0).map_err(io)?;
    f.rewind().map_err(io)?;
    writeln!(f, "{}", std::process::id()).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn submission(contributors: u32) -> Submission<'static> {
        Submission {
            round: 1,
            client_id: "a",
            bytes: 10,
            len: 3,
            contributors,
            add_ms: 0.5,
            now: 2,
        }
    }

    /// Review finding 5: a restart drops the restarted attempt's bundles,
    /// signatures and reveals; a close drops the round's (the next
    /// round's stay).
    #[test]
    fn a_restart_and_a_close_drop_the_rounds_share_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.write(|tx| tx.save_session(b"pk", Some(3), 1)).unwrap();
        let fill = |s: &mut Store, round: u64, attempt: u32| {
            s.write(|tx| {
                tx.put_mask_share((round, attempt), "a", "b", &[1; 48])?;
                tx.put_mask_row(MaskTable::Signatures, (round, attempt), "a", &[2; 64])?;
                tx.put_mask_row(MaskTable::Reveals, (round, attempt), "a", b"{}")
            })
            .unwrap();
        };
        let rows = |s: &Store, round: u64, attempt: u32| {
            s.mask_shares(round, attempt).unwrap().len()
                + s.mask_rows(MaskTable::Signatures, round, attempt)
                    .unwrap()
                    .len()
                + s.mask_rows(MaskTable::Reveals, round, attempt)
                    .unwrap()
                    .len()
        };
        fill(&mut s, 1, 1);
        fill(&mut s, 2, 1);
        assert_eq!(rows(&s, 1, 1), 3);
        s.write(|tx| tx.restart_attempt(1, b"{}")).unwrap();
        assert_eq!(rows(&s, 1, 1), 0);
        assert_eq!(rows(&s, 2, 1), 3);
        fill(&mut s, 1, 2);
        s.write(|tx| tx.close_round(1, 3, b"sum1", Some(b"{}")))
            .unwrap();
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(rows(&s, 1, 2), 0);
        assert_eq!(rows(&s, 2, 1), 3);
    }

    #[test]
    fn submission_and_close_are_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.write(|tx| tx.save_session(b"pk", Some(3), 1)).unwrap();
        let client = StoredClient {
            id: "a".into(),
            name: "A".into(),
            token_hash: [1; 32],
            joined_unix: 1,
            last_round: None,
        };
        s.write(|tx| tx.insert_client(&client, 5, None)).unwrap();
        let identity = StoredIdentity {
            key: [7; 32],
            proof: vec![9; 64],
        };
        s.write(|tx| tx.rotate_client("a", "A2", &[2; 32], 6, Some(&identity)))
            .unwrap();
        assert_eq!(s.identities().unwrap().get("a"), Some(&identity));
        assert!(
            s.write(|tx| tx.rotate_client("b", "B", &[3; 32], 6, None))
                .is_err()
        );
        s.write(|tx| tx.record_submission(&submission(1), b"sum1"))
            .unwrap();
        // Duplicate submission: the whole transaction is rolled back.
        assert!(
            s.write(|tx| tx.record_submission(&submission(2), b"sum2"))
                .is_err()
        );
        assert_eq!(s.sum(1).unwrap().as_deref(), Some(&b"sum1"[..]));
        s.write(|tx| tx.close_round(1, 3, b"sum1", Some(b"{}")))
            .unwrap();
        assert!(
            s.write(|tx| tx.close_round(1, 3, b"sum1", Some(b"{}")))
                .is_err()
        );
        assert_eq!(s.sum(2).unwrap(), None);
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        let rounds = s.rounds().unwrap();
        assert_eq!(rounds.len(), 2);
        assert!(!rounds[0].open && rounds[1].open);
        assert_eq!(rounds[0].contributors, 1);
        assert_eq!(rounds[0].len, Some(3));
        assert_eq!(s.submitted(1).unwrap(), vec!["a".to_string()]);
        assert_eq!(s.clients().unwrap()[0].last_round, Some(1));
        assert_eq!(s.clients().unwrap()[0].token_hash, [2; 32]);
        assert_eq!(s.registrations().unwrap().get("a"), Some(&6));
        assert_eq!(s.get_meta("max_len").unwrap().as_deref(), Some(&b"3"[..]));
    }
}
