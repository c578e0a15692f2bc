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
use crate::privacy::secagg::{Reveal, threshold};
use crate::protocol::{AnnouncedKey, KeyOrigin, KeySet, MaskPhase, SurvivorSignature, hex};

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
    /// Double masking, from the consistency phase on: the members whose
    /// shares and update are in (sorted).
    #[serde(default)]
    pub survivors: Option<Vec<String>>,
    /// Double masking: the survivor set is signed; survivors reveal.
    #[serde(default)]
    pub unmasking: bool,
    /// Why the attempt could not be unmasked (the round stays open).
    #[serde(default)]
    pub stuck: Option<String>,
    /// Members that reported a partner's key in this round (once each),
    /// kept across the round's attempts.
    #[serde(default)]
    pub reporters: BTreeSet<String>,
    /// Members reported in this round: out of its later attempts.
    #[serde(default)]
    pub excluded: BTreeSet<String>,
    /// Double masking: the sealed bundles by sender, then recipient
    /// (stored in `mask_shares`).
    #[serde(skip)]
    pub shares: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// Double masking: the survivors' signatures (`mask_signatures`).
    #[serde(skip)]
    pub signatures: BTreeMap<String, [u8; 64]>,
    /// Double masking: the survivors' reveals (`mask_reveals`).
    #[serde(skip)]
    pub reveals: BTreeMap<String, Reveal>,
    /// The attempt whose keys this one carries over (see [`carry_over`]
    /// (Self::carry_over)); `None`: its keys were announced in it.
    #[serde(default)]
    pub keys_from: Option<KeyOrigin>,
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

/// What a member's new registration (or reset) did to the open attempt
/// ([`MaskRound::forget_key`]).
#[derive(Debug)]
pub(super) enum Forgot {
    Nothing,
    /// Its key of the open key phase was dropped.
    Key,
    /// The attempt carried another round's keys: it restarts with a key
    /// phase.
    Restart(Box<Advance>),
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
    /// Double masking: the attempt moves to its consistency or unmask
    /// phase.
    Phase(MaskRound),
    /// Double masking: the reveals are in; the aggregator unmasks the sum
    /// and closes the round.
    Unmask,
    /// Double masking: the unmask phase passed its deadline with fewer
    /// reveals than the threshold; the round stays open, marked.
    Stuck(MaskRound),
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
            survivors: None,
            unmasking: false,
            stuck: None,
            reporters: BTreeSet::new(),
            excluded: BTreeSet::new(),
            shares: BTreeMap::new(),
            signatures: BTreeMap::new(),
            reveals: BTreeMap::new(),
            keys_from: None,
        }
    }

    /// The next round's first attempt with this attempt's roster and keys,
    /// if it may skip its key phase: this attempt was double-masked, every
    /// member of its roster survived it (and revealed), no key was reported in the round,
    /// and the next round's roster is the same. One key agreement then
    /// serves a roster's rounds (the trees' ~600): nothing secret is
    /// shared across rounds, since every pair seed, self seed, share coin
    /// and bundle key is derived for its own round and attempt
    /// (`privacy::secagg`), and a dropout still restarts with fresh keys.
    pub fn carry_over(&self, now: u64, next_roster: &BTreeSet<String>) -> Option<MaskRound> {
        let frozen = self.frozen.as_ref()?;
        // Every member uploaded, signed and revealed: none is gone.
        let everyone = self.survivors.as_ref()?.len() == frozen.len()
            && frozen.iter().all(|c| self.reveals.contains_key(c));
        let keyed = frozen.iter().all(|c| self.keys.contains_key(c));
        if !self.masked || !everyone || !keyed || frozen != next_roster || !self.excluded.is_empty()
        {
            return None;
        }
        let mut next = MaskRound::fresh(self.round + 1, now);
        next.frozen = Some(frozen.clone());
        next.masked = true;
        next.keys = frozen
            .iter()
            .filter_map(|c| Some((c.clone(), self.keys.get(c)?.clone())))
            .collect();
        next.keys_from = Some(self.keys_from.unwrap_or(KeyOrigin {
            round: self.round,
            attempt: self.attempt,
        }));
        Some(next)
    }

    /// The round's next attempt, waiting for `expected` (those reported in
    /// the round left out); who reported, and who was reported, carry over.
    pub fn next_attempt(&self, now: u64, mut expected: BTreeSet<String>) -> MaskRound {
        expected.retain(|c| !self.excluded.contains(c));
        let mut next = MaskRound::fresh(self.round, now);
        next.attempt = self.attempt + 1;
        next.expected = Some(expected);
        next.reporters = self.reporters.clone();
        next.excluded = self.excluded.clone();
        next
    }

    /// Whether the attempt is double-masked: masked, its roster fixed.
    pub fn double(&self) -> bool {
        self.masked && self.frozen.is_some()
    }

    /// The fixed roster, sorted (empty in the key phase).
    pub fn roster_vec(&self) -> Vec<String> {
        self.frozen
            .as_ref()
            .map(|f| f.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The threshold of the attempt's Shamir sharing (0 unless double-masked).
    pub fn threshold(&self, plan: &Plan) -> usize {
        match &self.frozen {
            Some(f) if self.masked => threshold(f.len(), plan.quorum.min_clients),
            _ => 0,
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
        match (&self.frozen, &self.survivors) {
            (None, _) => MaskPhase::Keys,
            (Some(_), None) => MaskPhase::Upload,
            (Some(_), Some(_)) if self.unmasking => MaskPhase::Unmask,
            (Some(_), Some(_)) => MaskPhase::Consistency,
        }
    }

    /// When the open attempt's phase ends with whoever acted: every phase of
    /// a masked round has one (a member that never shows up must not hold
    /// the round for ever), except the key phase of a round before training
    /// with a named roster, which waits for every named member, and a
    /// carried-over upload phase before its first shares.
    pub fn deadline(&self, plan: &Plan) -> Option<u64> {
        if !plan.privacy.masks {
            return None;
        }
        let before_training = self.round <= plan.layout().statistics_round();
        if before_training && self.frozen.is_none() && !plan.quorum.roster.is_empty() {
            return None;
        }
        // A carried-over attempt's upload phase starts with its first
        // shares (`Aggregator::put_shares`): none in, no clock.
        if self.keys_from.is_some() && self.survivors.is_none() && self.shares.is_empty() {
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

    /// A client registered again (perhaps with a new identity), or was
    /// reset: a key it announced in the open key phase is dropped, so that
    /// it can announce one signed by its new identity. Once the roster is
    /// fixed its key stays (the others mask with it); if it cannot upload,
    /// the attempt restarts at its deadline. An attempt whose keys were
    /// carried over from an earlier round restarts at once instead (before
    /// its survivors are named): every member then checks its partners'
    /// current identities in a key phase of its own, and refuses a changed
    /// one, naming it, before anything is uploaded.
    pub fn forget_key(&mut self, client: &str, now: u64) -> Forgot {
        match &self.frozen {
            None if self.keys.remove(client).is_some() => Forgot::Key,
            Some(frozen)
                if self.keys_from.is_some()
                    && self.survivors.is_none()
                    && frozen.contains(client) =>
            {
                let next = self.next_attempt(now, frozen.clone());
                *self = next.clone();
                Forgot::Restart(Box::new(Advance::Restart {
                    next,
                    dropped: Vec::new(),
                }))
            }
            _ => Forgot::Nothing,
        }
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
            Some(frozen) if self.masked => self.advance_double(now, due, plan, frozen, q),
            Some(frozen) if due => self.restart(now, plan, frozen, q),
            Some(_) => None,
        }
    }

    /// A double-masked attempt moves on: Upload -> Consistency when every
    /// member uploaded (or at the deadline, with at least the threshold),
    /// Consistency -> Unmask when every survivor signed (or at the
    /// deadline, with at least the threshold), and the unmask when every
    /// survivor revealed (or at the deadline, with at least the
    /// threshold). Too few at a deadline: a restart before the unmask
    /// phase; in it, the round stays open, stuck (nothing is revealed
    /// twice).
    fn advance_double(
        &self,
        now: u64,
        due: bool,
        plan: &Plan,
        frozen: &BTreeSet<String>,
        q: &Quorum<'_>,
    ) -> Option<Advance> {
        if self.stuck.is_some() {
            return None;
        }
        let t = self.threshold(plan).max(q.min);
        let Some(survivors) = &self.survivors else {
            let uploaded: Vec<String> = frozen
                .iter()
                .filter(|c| q.submitted.contains(c))
                .cloned()
                .collect();
            if uploaded.len() == frozen.len() || (due && uploaded.len() >= t) {
                let mut next = self.clone();
                next.survivors = Some(uploaded);
                next.phase_started = now;
                return Some(Advance::Phase(next));
            }
            return due.then(|| self.restart_with(now, plan, frozen, uploaded, q.min));
        };
        if !self.unmasking {
            let signed: Vec<String> = survivors
                .iter()
                .filter(|c| self.signatures.contains_key(*c))
                .cloned()
                .collect();
            if signed.len() == survivors.len() || (due && signed.len() >= t) {
                let mut next = self.clone();
                next.unmasking = true;
                next.phase_started = now;
                return Some(Advance::Phase(next));
            }
            return due.then(|| self.restart_with(now, plan, frozen, signed, q.min));
        }
        let revealed = survivors
            .iter()
            .filter(|c| self.reveals.contains_key(*c))
            .count();
        if revealed == survivors.len() || (due && revealed >= t) {
            return Some(Advance::Unmask);
        }
        due.then(|| {
            let mut next = self.clone();
            next.stuck = Some(format!(
                "{revealed} of {} survivors revealed by the unmask phase's deadline, {t} needed",
                survivors.len()
            ));
            Advance::Stuck(next)
        })
    }

    fn freeze(&self, now: u64, due: bool, q: &Quorum<'_>) -> Option<MaskRound> {
        // At most the key's limit of contributors per sum: the others take
        // part in the next round.
        let announced: BTreeSet<String> = self
            .keys
            .keys()
            .filter(|c| !self.excluded.contains(*c))
            .take(q.cap)
            .cloned()
            .collect();
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
        // An unmasked round closes at its deadline with the quorum
        // (`OpenRound::due`).
        let uploaded: Vec<String> = q.submitted.to_vec();
        if uploaded.len() >= q.min {
            return None;
        }
        Some(self.restart_with(now, plan, frozen, uploaded, q.min))
    }

    /// The next attempt after this one failed at a deadline with only
    /// `acted` (who uploaded, or signed) having done their part.
    fn restart_with(
        &self,
        now: u64,
        plan: &Plan,
        frozen: &BTreeSet<String>,
        acted: Vec<String>,
        min: usize,
    ) -> Advance {
        let acted: BTreeSet<String> = acted.into_iter().collect();
        let before_training = self.round <= plan.layout().statistics_round();
        let named = !plan.quorum.roster.is_empty();
        // The next attempt waits for those who acted — or for everyone
        // again when they are too few for a quorum, or when a round before
        // training has a named roster (it waits for every named member) —
        // and for whoever came late.
        let mut expected = if acted.len() >= min && !(before_training && named) {
            acted
        } else {
            frozen.clone()
        };
        expected.extend(self.late.iter().cloned());
        let next = self.next_attempt(now, expected);
        let kept = next.expected.clone().unwrap_or_default();
        let dropped = frozen.difference(&kept).cloned().collect();
        Advance::Restart { next, dropped }
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
        self.check_double_upload(client)
    }

    /// A double-masked attempt takes updates in its upload phase only, and
    /// only from a member whose shares are stored.
    fn check_double_upload(&self, client: &str) -> Result<(), ServerError> {
        if !self.masked {
            return Ok(());
        }
        if self.survivors.is_some() {
            return Err(ServerError::Conflict(format!(
                "the uploads of round {} attempt {} are closed (phase {:?}); `{client}` is not \
                 among its survivors",
                self.round,
                self.attempt,
                self.phase()
            )));
        }
        if !self.shares.contains_key(client) {
            return Err(ServerError::Conflict(format!(
                "round {} attempt {} is double-masked: send your shares first (PUT \
                 /rounds/{}/shares), then the update",
                self.round, self.attempt, self.round
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
        threshold: usize,
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
            threshold,
            survivors: self.survivors.clone().unwrap_or_default(),
            signatures: self.shown_signatures(),
            keys_from: self.keys_from,
        }
    }

    /// The survivors' signatures, shown from the unmask phase on.
    fn shown_signatures(&self) -> Vec<SurvivorSignature> {
        if !self.unmasking {
            return Vec::new();
        }
        self.signatures
            .iter()
            .map(|(id, s)| SurvivorSignature {
                attempt: self.attempt,
                id: id.clone(),
                signature: hex(s),
            })
            .collect()
    }
}
