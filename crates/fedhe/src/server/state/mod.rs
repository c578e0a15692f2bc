//! The aggregator's state machine, independent of HTTP.
//!
//! **Every change is all or nothing.** A mutating method checks the request
//! against the state, computes the change as a value (the next
//! [`OpenRound`](round::OpenRound), a registration, a mask attempt's
//! [`Advance`](masks::Advance), a [`Closing`](round::Closing)), writes it in
//! one store transaction ([`Store::write`]) and only after that commit puts
//! it into memory. A request that fails leaves memory and database as they
//! were; a process killed at any point restarts ([`reload`]) from the state
//! before the change or after it. One deliberate exception: an update is
//! added into the running sum in place (the sum is as large as the model,
//! and cloning it per update would double the memory); if its transaction
//! fails, the sum is read back from the store (`restore_sum`), and if even
//! that fails, the aggregator refuses every update and close until a
//! restart reloads it. A second one: a mask key announced after the roster
//! was fixed is refused (409 `roster_fixed`) but the site is recorded, in
//! its own commit, as expected from the next round (`keys::came_late`).
//!
//! Files: the values and their transitions — `round` (the open round:
//! submit, close, due, missing; the quorum rules), `masks` (a masked
//! round's attempt: advance, keys) — and the shell that checks, commits and
//! applies them: `auth` (tokens, callers), `session` (key, max_len, plan),
//! `registry` (registration: verify, decide, apply), `upload` (an update and
//! the close it completes), `keys` (mask key announcements, the attempt
//! moving on), `secagg` (double masking: shares, signatures, reveals, the
//! unmask close, key reports), `reload` (memory from the store at start).
//! This file: the aggregator, its queries, the operator's close and the
//! deadline tick.
//! `faults` (tests) fails each write in turn of the changes it covers:
//! loading the session and the plan; registering (new, again, late);
//! submitting (plain and masked, with and without the close it completes);
//! the operator's close; the announcement that fixes a roster; an
//! attempt's restart; double masking's shares, signatures, reveals, unmask
//! close, stuck round and key report; the operator's identity reset; the
//! session id's creation on a folder's first open.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::crypto::{Accumulator, ParamSet, PublicKeyFile};
use crate::protocol::{Completion, RoundInfo, RoundState, StatusResponse};

use super::error::ServerError;
use super::store::{Store, StoreError, Tx};

mod auth;
mod keys;
mod leave;
mod masks;
mod registry;
mod reload;
mod round;
mod secagg;
mod session;
mod upload;

#[cfg(test)]
mod durability;
#[cfg(test)]
mod faults;
#[cfg(test)]
mod leaving;

pub use auth::{Caller, new_token};
pub use secagg::SecAggBody;

use auth::Auth;
use masks::MaskRound;
use registry::ClientRec;
use round::{ClosedRound, Closing, OpenRound, Rules};
use session::Session;

/// Largest encoded update the aggregator accepts for vectors of at most
/// `max_len` values (the 413 limit): the crypto module's own bound.
pub fn max_update_bytes(params: ParamSet, max_len: usize) -> usize {
    crate::crypto::max_update_bytes(params, max_len)
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Tunables that are not persisted.
#[derive(Debug, Clone)]
pub struct Policy {
    pub min_clients: Option<usize>,
    pub auto_aggregate: bool,
    /// With a plan: the operator closes rounds by hand instead of the
    /// plan's quorum (the app's auto-aggregate switch turned off).
    pub manual_close: bool,
    /// Largest `max_len` a session may declare (bounds every allocation).
    pub max_len_limit: usize,
    /// Largest number of registered clients (bounds the client table).
    pub max_registered: usize,
    /// Allow closing a round with one contributor when no plan says (a
    /// plan's `quorum.allow_single_contributor` decides otherwise).
    pub allow_single_contributor: bool,
}

pub struct Aggregator {
    store: Store,
    policy: Policy,
    auth: Auth,
    session: Option<Session>,
    clients: BTreeMap<String, ClientRec>,
    /// The open round, without its running sum: small, so that transitions
    /// compute the next one as a copy.
    open: OpenRound,
    /// Running sum of the open round; `None` until its first update.
    acc: Option<Accumulator>,
    closed: BTreeMap<u64, ClosedRound>,
    /// The most recently published sum, kept in memory for the downloads
    /// that follow a close.
    last_sum: Option<(u64, Arc<Vec<u8>>)>,
    /// Scratch for the serialized running sum (see `submit`).
    sum_buf: Vec<u8>,
    /// The running sum could not be read back after a failed write: it may
    /// hold an update the store never counted, so nothing adds to it or
    /// publishes it until a restart reloads it from the state folder.
    sum_lost: bool,
    /// Set once the plan's last round closed (durable: the store's
    /// `complete`, written in that close's transaction). `open` is then a
    /// placeholder that never opens.
    complete: Option<Completion>,
    /// This state folder's session id (random, made once, stored):
    /// registration proofs and members' read signatures bind it, and a
    /// client that joined another one is told the state was reset.
    session_id: String,
    /// `fedhe serve --backup DIR`: a consistent copy after every close.
    backup: Option<std::path::PathBuf>,
}

impl Aggregator {
    /// Loads (or initializes) the state in `store`. `initial_key` is the
    /// `--public-key` file; it must match a key already in the state folder.
    pub fn open(
        store: Store,
        policy: Policy,
        operator_token: &str,
        initial_key: Option<PublicKeyFile>,
        initial_max_len: Option<usize>,
    ) -> Result<Aggregator, ServerError> {
        let now = now_unix();
        let open = OpenRound::fresh(1, now, Default::default(), MaskRound::fresh(1, now));
        let mut agg = Aggregator {
            store,
            policy,
            auth: Auth::new(operator_token),
            session: None,
            clients: BTreeMap::new(),
            open,
            acc: None,
            sum_lost: false,
            closed: BTreeMap::new(),
            last_sum: None,
            sum_buf: Vec::new(),
            complete: None,
            session_id: String::new(),
            backup: None,
        };
        agg.reload()?;
        agg.session_id = agg.stored_session_id()?;
        if let Some(key) = initial_key {
            agg.load_session(key, initial_max_len)?;
        } else if let Some(n) = initial_max_len
            && agg.session.is_some()
        {
            agg.set_max_len(n)?;
        }
        Ok(agg)
    }

    /// This state folder's session id, made (and committed) on first open.
    fn stored_session_id(&mut self) -> Result<String, ServerError> {
        if let Some(bytes) = self.store.get_meta(SESSION_ID_KEY)? {
            return String::from_utf8(bytes)
                .map_err(|_| ServerError::Internal("stored session id unreadable".into()));
        }
        let id = new_token()[..32].to_string();
        self.store
            .write(|tx| tx.put_meta(SESSION_ID_KEY, id.as_bytes()))?;
        Ok(id)
    }

    /// This state folder's session id (`GET /health`).
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// Refuses a request made in another session than this state folder's
    /// (the `x-fedhe-session` header of a client that joined before a reset).
    pub fn check_session_id(&self, claimed: Option<&str>) -> Result<(), ServerError> {
        match claimed {
            Some(c) if c != self.session_id => Err(ServerError::SessionReset(format!(
                "the aggregator's state was reset; the federation you joined no longer exists \
                 (you joined aggregator session `{c}`; this aggregator's state folder is session \
                 `{}`, with {} registered clients). Ask the operator; to join the new \
                 federation, remove this site's client state file and run the client again",
                self.session_id,
                self.clients.len()
            ))),
            _ => Ok(()),
        }
    }

    /// The quorum rules in force.
    fn rules(&self) -> Rules<'_> {
        Rules {
            plan: self.plan().map(|(p, _)| p),
            policy: &self.policy,
            registered: self.clients.len(),
        }
    }

    /// The vector length the plan implies for `round`: the vocabulary's
    /// bucket counts, the statistics, the model's parameters and a share.
    /// `None` where it depends on categories the sites discover (the first
    /// update of the round fixes it then).
    fn plan_len(&self, round: u64) -> Option<usize> {
        let (plan, _) = self.plan()?;
        let key = self.public_key()?.layout();
        plan.update_len(plan.layout().phase(round)?, &key)
    }

    /// The session's public key, once loaded.
    pub fn public_key(&self) -> Option<&PublicKeyFile> {
        self.session.as_ref().map(|s| &s.public)
    }

    pub fn open_round(&self) -> u64 {
        self.open.number
    }

    fn contributors(&self) -> u32 {
        self.acc.as_ref().map_or(0, Accumulator::contributors)
    }

    pub fn status(&self) -> StatusResponse {
        if let Some(c) = &self.complete {
            return self.complete_status(c);
        }
        let rules = self.rules();
        StatusResponse {
            api_version: 1,
            session: self.session.as_ref().map(Session::info),
            round: self.open.number,
            round_state: RoundState::Open,
            submitted: self.open.submitted.clone(),
            registered: self.clients.len(),
            min_clients: self.policy.min_clients,
            auto_aggregate: rules.closes_automatically(),
            last_closed: self.closed.keys().next_back().copied(),
            roster: self.open.roster.iter().cloned().collect(),
            missing: self.open.missing(&rules),
            deadline_unix: self.open.deadline(&rules),
            attempt: self.open.mask.attempt,
            mask_phase: rules.masks_on().then(|| self.open.mask.phase()),
            masked: rules.masks_on() && self.open.mask.masked,
            complete: None,
        }
    }

    /// The status of a complete federation: its last round, closed;
    /// nobody awaited, no deadline.
    fn complete_status(&self, c: &Completion) -> StatusResponse {
        let last = self.closed.get(&c.last_round);
        StatusResponse {
            api_version: 1,
            session: self.session.as_ref().map(Session::info),
            round: c.last_round,
            round_state: RoundState::Closed,
            submitted: last.map(|r| r.submitted.clone()).unwrap_or_default(),
            registered: self.clients.len(),
            min_clients: self.policy.min_clients,
            auto_aggregate: self.rules().closes_automatically(),
            last_closed: Some(c.last_round),
            roster: Vec::new(),
            missing: Vec::new(),
            deadline_unix: None,
            attempt: 0,
            mask_phase: None,
            masked: false,
            complete: Some(c.clone()),
        }
    }

    /// Refuses anything that would join or change a complete federation.
    pub fn check_not_complete(&self) -> Result<(), ServerError> {
        match &self.complete {
            None => Ok(()),
            Some(c) => Err(complete_error(c)),
        }
    }

    pub fn round_info(&self, round: u64) -> Result<RoundInfo, ServerError> {
        if let Some(c) = &self.complete
            && round > c.last_round
        {
            return Err(complete_error(c));
        }
        if round == self.open.number {
            return Ok(self.open.info(&self.rules(), self.contributors()));
        }
        match self.closed.get(&round) {
            Some(c) => Ok(c.info(round)),
            None => Err(unknown_round(round, self.open.number)),
        }
    }

    /// Closes the open round `round` and publishes its sum.
    pub fn close(&mut self, round: u64) -> Result<(u32, u64), ServerError> {
        self.check_not_complete()?;
        if round != self.open.number {
            if self.closed.contains_key(&round) {
                return Err(ServerError::WrongRound(format!(
                    "round {round} is already closed"
                )));
            }
            return Err(unknown_round(round, self.open.number));
        }
        self.check_sum()?;
        let contributors = self.contributors();
        let now = now_unix();
        let closing = self.open.close(&self.rules(), contributors, now)?;
        let published = self
            .acc
            .as_ref()
            .map(Accumulator::to_bytes)
            .unwrap_or_default();
        let next_state = next_mask_state(&closing)?;
        self.store
            .write(|tx| write_close(tx, &closing, now, &published, next_state.as_deref()))?;
        self.apply_close(closing, published);
        Ok((contributors, self.open.number))
    }

    /// In memory, after its commit: the round closed with `published` (and
    /// the federation completed, after the plan's last round).
    fn apply_close(&mut self, c: Closing, published: Vec<u8>) {
        let round = c.round;
        let contributors = c.closed.contributors;
        self.closed.insert(round, c.closed);
        self.open = c.next;
        self.acc = None;
        self.last_sum = Some((round, Arc::new(published)));
        self.after_close(round);
        if let Some(done) = c.complete {
            tracing::info!(
                round,
                contributors,
                "round {round} closed; federation complete: {}",
                done.describe()
            );
            self.complete = Some(done);
            return;
        }
        let carried = match self.open.mask.keys_from {
            Some(k) => format!(
                " (uploads open: same roster, mask keys of round {} attempt {})",
                k.round, k.attempt
            ),
            None => String::new(),
        };
        tracing::info!(
            round,
            contributors,
            counted = ?self.closed.get(&round).map(|c| &c.submitted),
            "round {round} closed; round {} open{carried}",
            self.open.number
        );
    }

    /// The published sum of a closed round, with its contributor count.
    pub fn sum(&self, round: u64) -> Result<(Arc<Vec<u8>>, u32), ServerError> {
        if round == self.open.number {
            return Err(ServerError::WrongRound(format!(
                "round {round} is still open; its sum is published when it closes"
            )));
        }
        let c = self
            .closed
            .get(&round)
            .ok_or_else(|| unknown_round(round, self.open.number))?;
        if let Some((r, bytes)) = &self.last_sum
            && *r == round
        {
            return Ok((bytes.clone(), c.contributors));
        }
        let bytes = self
            .store
            .sum(round)?
            .ok_or_else(|| ServerError::Internal(format!("sum of round {round} missing")))?;
        Ok((Arc::new(bytes), c.contributors))
    }

    /// Closes the open round if its deadline passed with a quorum, and moves
    /// a masked round's attempt on (called periodically). Returns true if
    /// anything changed.
    pub fn tick(&mut self) -> Result<bool, ServerError> {
        self.tick_at(now_unix())
    }

    /// [`tick`](Self::tick) as if the clock said `now`.
    fn tick_at(&mut self, now: u64) -> Result<bool, ServerError> {
        // A vanished state folder is noticed (and logged, once) even while
        // no request comes; nothing moves on after it.
        if self.complete.is_some() || self.store.check_folder().is_err() {
            return Ok(false);
        }
        // A failed mask step must not keep rounds from closing: logged, and
        // tried again on the next tick.
        let moved = self.advance_masks(now).unwrap_or_else(|e| {
            tracing::error!(
                round = self.open.number,
                "moving the masked attempt on failed: {e}"
            );
            false
        });
        let rules = self.rules();
        let full = self
            .acc
            .as_ref()
            .is_some_and(|a| a.contributors() >= a.max_clients());
        if rules.closes_automatically()
            && !self.open.submitted.is_empty()
            && self.open.due(&rules, full, now)
        {
            self.close(self.open.number)?;
            return Ok(true);
        }
        Ok(moved)
    }
}

impl Aggregator {
    /// Writes a consistent copy of the state into `dir` after every round
    /// close (and now).
    pub fn set_backup_dir(&mut self, dir: std::path::PathBuf) -> Result<(), ServerError> {
        self.store.backup(&dir)?;
        self.backup = Some(dir);
        Ok(())
    }

    /// Test-only: fails the next write transaction's first write, once.
    #[cfg(test)]
    pub(crate) fn fail_next_write(&self) {
        self.store.fail_at_write(Some(0));
    }

    /// A consistent copy of the state into `dir`, now.
    pub fn backup_now(&self, dir: &std::path::Path) -> Result<(), ServerError> {
        Ok(self.store.backup(dir)?)
    }

    /// After a close's commit: the WAL checkpointed into the database file
    /// (a copy of `aggregator.sqlite3` alone then holds the federation) and
    /// the backup, if one is kept. Failures are logged: the close stands.
    fn after_close(&self, round: u64) {
        if let Err(e) = self.store.checkpoint() {
            tracing::warn!(round, "checkpointing the state database failed: {e}");
        }
        if let Some(dir) = &self.backup {
            match self.store.backup(dir) {
                Ok(()) => tracing::info!(round, backup = %dir.display(), "state backed up"),
                Err(e) => tracing::error!(round, "backing up the state failed: {e}"),
            }
        }
    }

    /// At shutdown: the WAL checkpointed into the database file (logged if
    /// it fails).
    pub fn checkpoint(&self) {
        if let Err(e) = self.store.checkpoint() {
            tracing::warn!("checkpointing the state database failed: {e}");
        }
    }

    /// Refuses to add to or publish a running sum that may disagree with
    /// the store (see `sum_lost`).
    fn check_sum(&self) -> Result<(), ServerError> {
        if self.sum_lost {
            return Err(ServerError::Internal(
                "the running sum could not be read back after a failed write; restart the \
                 aggregator to reload it from its state folder"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// The mask state of the round a close opens; `None` when it opens none
/// (the plan's last round closed).
fn next_mask_state(c: &Closing) -> Result<Option<Vec<u8>>, ServerError> {
    match c.complete {
        Some(_) => Ok(None),
        None => c.next.mask.to_bytes().map(Some),
    }
}

/// A close's writes (inside its transaction): the round closed and the next
/// opened with `next_state`, or the federation recorded as complete.
fn write_close(
    tx: &mut Tx<'_>,
    c: &Closing,
    now: u64,
    published: &[u8],
    next_state: Option<&[u8]>,
) -> Result<(), StoreError> {
    tx.close_round(c.round, now, published, next_state)?;
    // A carried-over key set is the next attempt's own (a reload reads the
    // open attempt's keys, and a member that leaves drops its own row).
    if c.complete.is_none() && c.next.mask.keys_from.is_some() {
        let (round, attempt) = (c.next.number, c.next.mask.attempt);
        for (id, k) in &c.next.mask.keys {
            tx.put_mask_key(round, attempt, id, &k.public, &k.signature)?;
        }
    }
    if let Some(done) = &c.complete {
        let json = serde_json::to_vec(done)
            .map_err(|e| StoreError::Corrupt(format!("completion JSON: {e}")))?;
        tx.put_meta(COMPLETE_KEY, &json)?;
    }
    Ok(())
}

/// The store's record of this state folder's session id.
const SESSION_ID_KEY: &str = "session_id";

/// The store's record of a complete federation.
const COMPLETE_KEY: &str = "complete";

fn complete_error(c: &Completion) -> ServerError {
    ServerError::FederationComplete(format!(
        "this federation is complete: its plan's {} training rounds closed (the last, round \
         {}, with {} sites); it takes no more sites, keys or updates. The final sum stays \
         published (round {}); for more training, the operator starts a new federation",
        c.training_rounds, c.last_round, c.sites, c.last_round
    ))
}

fn no_session() -> ServerError {
    ServerError::NoSession(
        "no session: the operator has not loaded a public key yet (fedhe serve --public-key, \
         or PUT /api/v1/session)"
            .into(),
    )
}

fn unknown_round(round: u64, open: u64) -> ServerError {
    ServerError::NotFound(format!(
        "round {round} does not exist; the open round is {open}"
    ))
}
