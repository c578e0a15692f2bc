//! The aggregator's side of pairwise masking: per open round, attempts with
//! a key phase (members announce signed X25519 keys, which are relayed) and
//! an upload phase (the roster is fixed; masks cancel only when every
//! member's update is in the sum). A member missing at the upload phase's
//! deadline starts the next attempt with those who uploaded: this attempt's
//! sum is discarded, nothing secret is revealed.
//!
//! [`MaskRound`] is a value: its methods check requests against it or return
//! the next value; the aggregator writes that in one transaction (the
//! attempt in `meta.mask_state`, the keys in `mask_keys`) and then keeps it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::plan::Plan;
use crate::privacy::masks::{KeyAnnouncement, masks_apply};
use crate::protocol::{AnnouncedKey, KeySet, MaskPhase, hex};

use super::super::error::ServerError;

/// The open round's attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct MaskRound {
    pub round: u64,
    pub attempt: u32,
    /// The fixed roster of the upload phase; `None` in the key phase.
    pub frozen: Option<BTreeSet<String>>,
    pub masked: bool,
    /// After a restart: the members the key phase waits for (those who
    /// uploaded in the attempt before); `None`: the round's usual roster.
    #[serde(default)]
    pub expected: Option<BTreeSet<String>>,
    /// Clients that came (registered, or announced a key) after the roster
    /// was fixed: the next round expects them.
    #[serde(default)]
    pub late: BTreeSet<String>,
    /// When the current phase began (Unix seconds): its deadline counts from here.
    pub phase_started: u64,
    /// The attempt's announced keys (stored in `mask_keys`, not with the rest).
    #[serde(skip)]
    pub keys: BTreeMap<String, KeyAnnouncement>,
}

/// What the attempt waits for when it moves on ([`MaskRound::advance`]).
pub(super) struct Quorum<'a> {
    /// The round's roster: in the key phase, who is expected to announce.
    pub roster: &'a BTreeSet<String>,
    pub submitted: &'a [String],
    /// Fewest members an attempt may go on with.
    pub min: usize,
    /// Most contributors per sum (the key's limit).
    pub cap: usize,
}

/// How the attempt moves on.
#[derive(Debug)]
pub(super) enum Advance {
    /// The key phase is over: this attempt's roster is fixed, uploads open.
    Freeze(MaskRound),
    /// The upload phase failed at its deadline: the next attempt, which
    /// waits for its `expected` members; `dropped` left the roster.
    Restart {
        next: MaskRound,
        dropped: Vec<String>,
    },
}

impl MaskRound {
    pub fn fresh(round: u64, now: u64) -> MaskRound {
        MaskRound {
            round,
            attempt: 1,
            frozen: None,
            masked: false,
            expected: None,
            late: BTreeSet::new(),
            phase_started: now,
            keys: BTreeMap::new(),
        }
    }

    /// The stored form (`meta.mask_state`; keys are stored apart).
    pub fn to_bytes(&self) -> Result<Vec<u8>, ServerError> {
        serde_json::to_vec(self).map_err(|e| ServerError::Internal(format!("mask state: {e}")))
    }

    /// `next`'s stored form if it differs from this one's: what a
    /// transition must write.
    pub fn change_to(&self, next: &MaskRound) -> Result<Option<Vec<u8>>, ServerError> {
        let bytes = next.to_bytes()?;
        Ok((bytes != self.to_bytes()?).then_some(bytes))
    }

    pub fn phase(&self) -> MaskPhase {
        if self.frozen.is_some() {
            MaskPhase::Upload
        } else {
            MaskPhase::Keys
        }
    }

    /// When the open attempt's phase ends with whoever acted: every phase of
    /// a masked round has one (a member that never shows up must not hold
    /// the round for ever), except the key phase of a round before training
    /// with a named roster, which waits for every named member.
    pub fn deadline(&self, plan: &Plan) -> Option<u64> {
        if !plan.privacy.masks {
            return None;
        }
        let before_training = self.round <= plan.layout().statistics_round();
        if before_training && self.frozen.is_none() && !plan.quorum.roster.is_empty() {
            return None;
        }
        Some(self.phase_started + plan.quorum.round_deadline_secs)
    }

    /// A client that shows up once the roster is fixed: the next round
    /// expects it (this attempt is unchanged if it is already a member).
    pub fn late_join(&mut self, client: &str) {
        if !self.frozen.as_ref().is_some_and(|f| f.contains(client)) {
            self.late.insert(client.to_string());
        }
    }

    /// A client registered again (perhaps with a new identity): a key it
    /// announced in the open key phase is dropped, so that it can announce
    /// one signed by its new identity. Once the roster is fixed its key
    /// stays (the others mask with it); if it cannot upload, the attempt
    /// restarts at its deadline. Returns whether a key was dropped.
    pub fn forget_key(&mut self, client: &str) -> bool {
        self.frozen.is_none() && self.keys.remove(client).is_some()
    }

    /// Adds an announced key. The key phase's deadline counts from its
    /// first announcement, not from when the round opened (round 1 opens
    /// when the aggregator starts, long before the sites may come).
    pub fn add_key(&mut self, client: &str, key: KeyAnnouncement, now: u64) {
        if self.keys.is_empty() {
            self.phase_started = now;
        }
        self.keys.insert(client.to_string(), key);
    }

    /// Moves the attempt on at `now`: fixes the roster when every expected
    /// member announced (or, at the deadline, whoever did, if enough);
    /// starts the next attempt when a masked upload phase passes its
    /// deadline without every member's update. `None`: nothing to do yet.
    pub fn advance(&self, now: u64, plan: &Plan, q: &Quorum<'_>) -> Option<Advance> {
        let due = self.deadline(plan).is_some_and(|d| now >= d);
        match &self.frozen {
            None => self.freeze(now, due, q).map(Advance::Freeze),
            Some(frozen) if due => self.restart(now, plan, frozen, q),
            Some(_) => None,
        }
    }

    fn freeze(&self, now: u64, due: bool, q: &Quorum<'_>) -> Option<MaskRound> {
        // At most the key's limit of contributors per sum: the others take
        // part in the next round.
        let announced: BTreeSet<String> = self.keys.keys().take(q.cap).cloned().collect();
        let all = self.keys.len() >= q.cap || q.roster.iter().all(|c| announced.contains(c));
        if announced.len() < q.min || !(all || due) {
            return None;
        }
        let mut next = self.clone();
        next.masked = masks_apply(true, announced.len());
        next.frozen = Some(announced);
        next.phase_started = now;
        // Announced beyond the cap: expected in the next round.
        next.late.extend(self.keys.keys().skip(q.cap).cloned());
        Some(next)
    }

    fn restart(
        &self,
        now: u64,
        plan: &Plan,
        frozen: &BTreeSet<String>,
        q: &Quorum<'_>,
    ) -> Option<Advance> {
        let uploaded: BTreeSet<String> = q.submitted.iter().cloned().collect();
        // A masked round needs every member's update; an unmasked one
        // closes at its deadline with the quorum (`OpenRound::due`).
        let stuck = if self.masked {
            !frozen.iter().all(|c| uploaded.contains(c))
        } else {
            uploaded.len() < q.min
        };
        if !stuck {
            return None;
        }
        let before_training = self.round <= plan.layout().statistics_round();
        let named = !plan.quorum.roster.is_empty();
        // The next attempt waits for those who uploaded — or for everyone
        // again when they are too few for a quorum, or when a round before
        // training has a named roster (it waits for every named member) —
        // and for whoever came late.
        let mut expected = if uploaded.len() >= q.min && !(before_training && named) {
            uploaded
        } else {
            frozen.clone()
        };
        expected.extend(self.late.iter().cloned());
        let dropped = frozen.difference(&expected).cloned().collect();
        let mut next = MaskRound::fresh(self.round, now);
        next.attempt = self.attempt + 1;
        next.expected = Some(expected);
        Some(Advance::Restart { next, dropped })
    }

    /// Checks an upload against the open attempt (before its body is read).
    pub fn check_upload(
        &self,
        client: &str,
        attempt: Option<u32>,
        min: usize,
    ) -> Result<(), ServerError> {
        let current = self.attempt;
        match attempt {
            Some(a) if a == current => {}
            Some(a) => {
                return Err(ServerError::WrongAttempt(format!(
                    "this update was made for attempt {a} of round {}; the round is at attempt \
                     {current}: announce a key for it and mask again",
                    self.round
                )));
            }
            None => {
                return Err(ServerError::WrongAttempt(format!(
                    "this federation masks its updates: an update names its round's attempt \
                     (header x-fedhe-attempt; round {} is at attempt {current})",
                    self.round
                )));
            }
        }
        let Some(frozen) = &self.frozen else {
            return Err(ServerError::Conflict(format!(
                "round {} attempt {current} still collects mask keys ({} announced, at least {} \
                 needed); upload once its roster is fixed",
                self.round,
                self.keys.len(),
                min
            )));
        };
        if self.masked && !frozen.contains(client) {
            return Err(ServerError::Conflict(format!(
                "`{client}` is not in the roster of round {} attempt {current} (its masks cancel \
                 only among {})",
                self.round,
                frozen.iter().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(())
    }

    /// The attempt as `GET /rounds/{r}/keys` shows it: a fixed roster has
    /// announced in full; in the key phase, `roster` and `missing` are the
    /// round's.
    pub fn key_set(
        &self,
        roster: &BTreeSet<String>,
        missing: Vec<String>,
        min_contributors: usize,
        deadline_unix: Option<u64>,
    ) -> KeySet {
        let (roster, missing) = match &self.frozen {
            Some(f) => (f.iter().cloned().collect(), Vec::new()),
            None => (roster.iter().cloned().collect(), missing),
        };
        KeySet {
            round: self.round,
            attempt: self.attempt,
            phase: self.phase(),
            masked: self.masked,
            roster,
            missing,
            keys: self
                .keys
                .iter()
                .map(|(id, k)| AnnouncedKey {
                    id: id.clone(),
                    public: hex(&k.public),
                    signature: hex(&k.signature),
                })
                .collect(),
            min_contributors,
            deadline_unix,
            threshold: 0,
            survivors: Vec::new(),
            signatures: Vec::new(),
        }
    }
}
