//! Memory from the store: what the aggregator knows when it starts (and
//! what a process killed at any point restarts from).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::crypto::{Accumulator, PublicKeyFile};
use crate::plan::Plan;
use crate::privacy::masks::KeyAnnouncement;
use crate::protocol::Completion;

use super::super::error::ServerError;
use super::super::store::{Store, StoredRound};
use super::Aggregator;
use super::masks::MaskRound;
use super::registry::ClientRec;
use super::round::{ClosedRound, OpenRound, Rules};
use super::session::Session;

type Tokens = HashMap<[u8; 32], String>;

impl Aggregator {
    /// Rebuilds the in-memory view from the store.
    pub(super) fn reload(&mut self) -> Result<(), ServerError> {
        self.session = read_session(&self.store)?;
        // Before the running sum is read: it may live in the sum file.
        self.enable_sum_file()?;
        let (clients, tokens) = read_clients(&self.store)?;
        self.clients = clients;
        self.auth.set_tokens(tokens);
        let (open, closed) = read_rounds(&self.store)?;
        self.closed = closed;
        let rules = Rules {
            plan: self
                .session
                .as_ref()
                .and_then(|s| s.plan.as_ref())
                .map(|p| &p.0),
            policy: &self.policy,
            registered: self.clients.len(),
        };
        let open = read_open(&self.store, open, self.open.opened_unix)?;
        let mut roster = restart_roster(&open, &rules, &self.closed, &self.clients);
        // Members who left the open round stay out of it.
        let left = super::leave::read_left(&self.store, open.number)?;
        roster.retain(|c| !left.contains(c));
        self.open = OpenRound { roster, ..open };
        let max_len = self.session.as_ref().and_then(|s| s.max_len);
        self.acc = read_sum(&self.store, max_len, self.open.number)?;
        self.last_sum = None;
        self.complete = read_complete(&self.store)?;
        if let Some(c) = &self.complete {
            // The plan's last round closed: no round is open after it.
            self.open = OpenRound::after_last(c);
            self.acc = None;
        }
        Ok(())
    }

    /// Puts the open round's running sum back as stored: after a failed
    /// transaction the in-memory sum holds an update that was not counted.
    pub(super) fn restore_sum(&mut self) -> Result<(), ServerError> {
        let max_len = self.session.as_ref().and_then(|s| s.max_len);
        self.acc = read_sum(&self.store, max_len, self.open.number)?;
        Ok(())
    }
}

/// The federation's completion, if its last round closed.
fn read_complete(store: &Store) -> Result<Option<Completion>, ServerError> {
    let Some(bytes) = store.get_meta(super::COMPLETE_KEY)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| ServerError::Internal(format!("stored completion unreadable: {e}")))
}

fn read_session(store: &Store) -> Result<Option<Session>, ServerError> {
    let Some(pk_bytes) = store.get_meta("public_key")? else {
        return Ok(None);
    };
    let public = PublicKeyFile::from_bytes(&pk_bytes)
        .map_err(|e| ServerError::Internal(format!("stored public key unreadable: {e}")))?;
    let max_len = match store.get_meta("max_len")? {
        Some(b) => Some(
            std::str::from_utf8(&b)
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
                .ok_or_else(|| ServerError::Internal("stored max_len unreadable".into()))?,
        ),
        None => None,
    };
    let plan = match store.get_meta("plan")? {
        Some(bytes) => {
            let plan = Plan::from_json(&bytes, "the stored plan")
                .map_err(|e| ServerError::Internal(format!("stored plan unreadable: {e}")))?;
            let fp = plan.fingerprint().to_string();
            Some((plan, fp))
        }
        None => None,
    };
    Ok(Some(Session {
        public,
        public_bytes: pk_bytes,
        max_len,
        plan,
    }))
}

fn read_clients(store: &Store) -> Result<(BTreeMap<String, ClientRec>, Tokens), ServerError> {
    let issued = store.registrations()?;
    let mut identities = store.identities()?;
    let mut clients = BTreeMap::new();
    let mut tokens = HashMap::new();
    for c in store.clients()? {
        tokens.insert(c.token_hash, c.id.clone());
        let rec = ClientRec {
            name: c.name,
            joined_unix: c.joined_unix,
            last_round: c.last_round,
            issued_ms: issued.get(&c.id).copied().unwrap_or(0),
            identity: identities.remove(&c.id),
        };
        clients.insert(c.id, rec);
    }
    Ok((clients, tokens))
}

/// The open round's row, and the closed rounds.
fn read_rounds(
    store: &Store,
) -> Result<(Option<StoredRound>, BTreeMap<u64, ClosedRound>), ServerError> {
    let mut open = None;
    let mut closed = BTreeMap::new();
    for r in store.rounds()? {
        if r.open {
            open = Some(r);
            continue;
        }
        let submitted = store.submitted(r.round)?;
        let round = ClosedRound {
            roster: submitted.clone(),
            len: r.len,
            contributors: r.contributors,
            submitted,
            aggregate_ms: r.aggregate_ms,
            bytes_accepted: r.bytes_accepted,
        };
        closed.insert(r.round, round);
    }
    Ok((open, closed))
}

/// The open round from its row (round 1 before any is stored, opened at
/// `opened`), with its submissions and mask state; its roster is set apart.
fn read_open(
    store: &Store,
    row: Option<StoredRound>,
    opened: u64,
) -> Result<OpenRound, ServerError> {
    let (number, opened) = row
        .as_ref()
        .map_or((1, opened), |r| (r.round, r.opened_unix));
    let mask = read_mask(store, number, opened)?;
    let mut open = OpenRound::fresh(number, opened, BTreeSet::new(), mask);
    if let Some(r) = row {
        open.len = r.len;
        open.aggregate_ms = r.aggregate_ms;
        open.bytes = r.bytes_accepted;
    }
    open.submitted = store.submitted(number)?;
    Ok(open)
}

/// The roster is not stored: after a restart the open round waits for the
/// previous round's contributors and its own (round 1: everyone
/// registered); others rejoin by submitting or registering again. A
/// masked round's attempt says whom it waits for.
fn restart_roster(
    open: &OpenRound,
    rules: &Rules<'_>,
    closed: &BTreeMap<u64, ClosedRound>,
    clients: &BTreeMap<String, ClientRec>,
) -> BTreeSet<String> {
    let mut roster = match rules.named_roster() {
        Some(named) => named,
        None => {
            let mut r: BTreeSet<String> = match closed.get(&(open.number - 1)) {
                Some(prev) => prev.submitted.iter().cloned().collect(),
                None => clients.keys().cloned().collect(),
            };
            r.extend(open.submitted.iter().cloned());
            r
        }
    };
    if !rules.masks_on() {
        return roster;
    }
    if let Some(f) = &open.mask.frozen {
        return f.clone();
    }
    if let Some(e) = &open.mask.expected {
        roster = e.clone();
    }
    roster.extend(open.mask.keys.keys().cloned());
    roster.extend(open.submitted.iter().cloned());
    roster
}

/// The stored attempt of the open `round` (a fresh one if none is stored)
/// with its keys.
fn read_mask(store: &Store, round: u64, opened: u64) -> Result<MaskRound, ServerError> {
    let mut m = match store.get_meta("mask_state")? {
        Some(bytes) => {
            let m: MaskRound = serde_json::from_slice(&bytes)
                .map_err(|e| ServerError::Internal(format!("stored mask state: {e}")))?;
            if m.round == round {
                m
            } else {
                MaskRound::fresh(round, opened)
            }
        }
        None => MaskRound::fresh(round, opened),
    };
    for (id, public, signature) in store.mask_keys(round, m.attempt)? {
        m.keys.insert(id, KeyAnnouncement { public, signature });
    }
    super::secagg::read_items(store, &mut m)?;
    Ok(m)
}

/// The open round's stored running sum (once the session's `max_len` is known).
fn read_sum(
    store: &Store,
    max_len: Option<usize>,
    round: u64,
) -> Result<Option<Accumulator>, ServerError> {
    let Some(n) = max_len else {
        return Ok(None);
    };
    let Some(bytes) = store.sum(round)? else {
        return Ok(None);
    };
    let acc = Accumulator::from_bytes(&bytes, n)
        .map_err(|e| ServerError::Internal(format!("stored running sum unreadable: {e}")))?;
    Ok(Some(acc))
}
