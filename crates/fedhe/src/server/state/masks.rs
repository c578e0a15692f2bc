//! The aggregator's side of pairwise masking: per open round, attempts with
//! a key phase (members announce signed X25519 keys, which are relayed) and
//! an upload phase (the roster is fixed; masks cancel only when every
//! member's update is in the sum). A member missing at the upload phase's
//! deadline starts the next attempt with those who uploaded: this attempt's
//! sum is discarded, nothing secret is revealed. Everything is durable: the
//! attempt in `meta.mask_state`, the keys in `mask_keys`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::privacy::masks::{KeyAnnouncement, MaskContext, masks_apply, verify_announcement};
use crate::protocol::{AnnounceRequest, AnnouncedKey, KeySet, MaskPhase, hex, parse_hex_array};

use super::super::error::ServerError;
use super::super::store::Store;
use super::{Aggregator, now_unix};

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
    #[serde(skip)]
    pub keys: BTreeMap<String, KeyAnnouncement>,
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

    /// The stored attempt of the open `round` (a fresh one if none is stored).
    pub fn load(store: &Store, round: u64, opened: u64) -> Result<MaskRound, ServerError> {
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
        Ok(m)
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, ServerError> {
        serde_json::to_vec(self).map_err(|e| ServerError::Internal(format!("mask state: {e}")))
    }

    fn save(&self, store: &Store) -> Result<(), ServerError> {
        let bytes = serde_json::to_vec(self)
            .map_err(|e| ServerError::Internal(format!("mask state: {e}")))?;
        store.set_meta("mask_state", &bytes)?;
        Ok(())
    }

    pub fn phase(&self) -> MaskPhase {
        if self.frozen.is_some() {
            MaskPhase::Upload
        } else {
            MaskPhase::Keys
        }
    }
}

impl Aggregator {
    /// Whether the open round goes through mask keys (a plan with masks on).
    pub(super) fn masks_on(&self) -> bool {
        self.plan().is_some_and(|(p, _)| p.privacy.masks)
    }

    /// The frozen roster of a masked upload phase, if the open attempt is one.
    pub(super) fn masked_roster(&self) -> Option<&BTreeSet<String>> {
        (self.masks_on() && self.mask.masked)
            .then_some(self.mask.frozen.as_ref())
            .flatten()
    }

    /// When the open attempt's phase ends with whoever acted: every phase of
    /// a masked round has one (a member that never shows up must not hold
    /// the round for ever), except the key phase of a round before training
    /// with a named roster, which waits for every named member.
    pub(super) fn mask_deadline(&self) -> Option<u64> {
        let (plan, _) = self.plan()?;
        if !plan.privacy.masks {
            return None;
        }
        let before_training = self.round <= plan.layout().statistics_round();
        if before_training && self.mask.frozen.is_none() && !plan.quorum.roster.is_empty() {
            return None;
        }
        Some(self.mask.phase_started + plan.quorum.round_deadline_secs)
    }

    fn mask_context(&self) -> Option<(String, u64, u32)> {
        let (_, fp) = self.plan()?;
        Some((fp.clone(), self.round, self.mask.attempt))
    }

    /// Adds a client that shows up to the round's roster; once a masked
    /// round's roster is fixed, to the next round's instead.
    pub(super) fn join_roster(&mut self, client: &str) -> Result<(), ServerError> {
        if self.masks_on() && self.mask.frozen.is_some() {
            if !self
                .mask
                .frozen
                .as_ref()
                .is_some_and(|f| f.contains(client))
                && self.mask.late.insert(client.to_string())
            {
                self.mask.save(&self.store)?;
            }
        } else {
            self.roster.insert(client.to_string());
        }
        Ok(())
    }

    /// A client registered again (perhaps with a new identity): a key it
    /// announced in the open key phase is dropped, so that it can announce
    /// one signed by its new identity. Once the roster is fixed its key
    /// stays (the others mask with it); if it cannot upload, the attempt
    /// restarts at its deadline.
    pub(super) fn forget_mask_key(&mut self, client: &str) -> Result<(), ServerError> {
        if self.mask.frozen.is_none() && self.mask.keys.contains_key(client) {
            self.store
                .delete_mask_key(self.round, self.mask.attempt, client)?;
            self.mask.keys.remove(client);
        }
        Ok(())
    }

    /// A client announces its mask key for the open round's attempt.
    pub fn announce(
        &mut self,
        client: &str,
        round: u64,
        req: AnnounceRequest,
    ) -> Result<KeySet, ServerError> {
        if !self.masks_on() {
            return Err(ServerError::Conflict(
                "this federation's plan has no pairwise masks (privacy.masks = false)".into(),
            ));
        }
        if round != self.round {
            return Err(if round < self.round {
                ServerError::WrongRound(format!(
                    "round {round} is closed; the open round is {}",
                    self.round
                ))
            } else {
                ServerError::NotFound(format!(
                    "round {round} does not exist; the open round is {}",
                    self.round
                ))
            });
        }
        if req.attempt != self.mask.attempt {
            return Err(ServerError::WrongAttempt(format!(
                "round {round} is at attempt {}, not {}",
                self.mask.attempt, req.attempt
            )));
        }
        let bad = |what: &str| {
            ServerError::Malformed(format!("`{what}` must be hex of the right length"))
        };
        let public = parse_hex_array(&req.public).ok_or_else(|| bad("public"))?;
        let signature = parse_hex_array(&req.signature).ok_or_else(|| bad("signature"))?;
        let announcement = KeyAnnouncement { public, signature };
        if let Some(old) = self.mask.keys.get(client) {
            if *old == announcement {
                return self.key_set(round);
            }
            return Err(ServerError::Conflict(format!(
                "client `{client}` already announced another mask key for round {round}, attempt {}",
                self.mask.attempt
            )));
        }
        if self.mask.frozen.is_some() {
            self.join_roster(client)?;
            return Err(ServerError::RosterFixed(format!(
                "the roster of round {round}, attempt {} is fixed; `{client}` can take part in \
                 the next round (or attempt)",
                self.mask.attempt
            )));
        }
        let identity = self
            .clients
            .get(client)
            .and_then(|c| c.identity.as_ref())
            .map(|i| i.key)
            .ok_or_else(|| {
                ServerError::Forbidden(format!(
                    "client `{client}` registered without an identity key; register again (FedHE \
                     clients do) to take part in masked rounds"
                ))
            })?;
        let (plan, _, attempt) = self
            .mask_context()
            .ok_or_else(|| ServerError::Internal("no plan".into()))?;
        let ctx = MaskContext {
            plan: &plan,
            round,
            attempt,
        };
        verify_announcement(&identity, &ctx, client, &announcement).map_err(|_| {
            ServerError::Unauthorized(format!(
                "this mask key is not signed by the identity key registered for `{client}` \
                 (round {round}, attempt {attempt}); register again if this site's identity \
                 changed"
            ))
        })?;
        self.store
            .put_mask_key(round, attempt, client, &public, &signature)?;
        if self.mask.keys.is_empty() {
            // The key phase's deadline counts from its first announcement,
            // not from when the round opened (round 1 opens when the
            // aggregator starts, long before the sites may come).
            let mut next = self.mask.clone();
            next.phase_started = now_unix();
            next.save(&self.store)?;
            self.mask = next;
        }
        self.mask.keys.insert(client.to_string(), announcement);
        self.roster.insert(client.to_string());
        self.advance_masks()?;
        self.key_set(round)
    }

    /// The open round's attempt, its roster and the keys announced so far.
    pub fn key_set(&self, round: u64) -> Result<KeySet, ServerError> {
        if round != self.round {
            return Err(ServerError::WrongRound(format!(
                "round {round} is not open; the open round is {}",
                self.round
            )));
        }
        let roster: Vec<String> = match &self.mask.frozen {
            Some(f) => f.iter().cloned().collect(),
            None => self.roster.iter().cloned().collect(),
        };
        // A fixed roster has announced in full.
        let missing = match &self.mask.frozen {
            Some(_) => Vec::new(),
            None => self.missing(),
        };
        Ok(KeySet {
            round,
            attempt: self.mask.attempt,
            phase: self.mask.phase(),
            masked: self.mask.masked,
            roster,
            missing,
            keys: self
                .mask
                .keys
                .iter()
                .map(|(id, k)| AnnouncedKey {
                    id: id.clone(),
                    public: hex(&k.public),
                    signature: hex(&k.signature),
                })
                .collect(),
            min_contributors: self.min_contributors(),
            deadline_unix: self.mask_deadline(),
        })
    }

    /// Moves the open attempt on: fixes the roster when every expected member
    /// announced (or, at the deadline, whoever did, if enough); starts the
    /// next attempt when a masked upload phase passes its deadline without
    /// every member's update. Returns whether anything changed.
    pub(super) fn advance_masks(&mut self) -> Result<bool, ServerError> {
        if !self.masks_on() {
            return Ok(false);
        }
        let due = self.mask_deadline().is_some_and(|d| now_unix() >= d);
        match &self.mask.frozen {
            None => {
                // At most the key's limit of contributors per sum: the others
                // take part in the next round.
                let cap = self
                    .session
                    .as_ref()
                    .map_or(usize::MAX, |s| s.public.max_clients() as usize);
                let announced: BTreeSet<String> =
                    self.mask.keys.keys().take(cap).cloned().collect();
                let all = self.mask.keys.len() >= cap
                    || self.roster.iter().all(|c| announced.contains(c));
                if announced.len() >= self.min_contributors() && (all || due) {
                    let mut next = self.mask.clone();
                    next.masked = masks_apply(true, announced.len());
                    next.frozen = Some(announced.clone());
                    next.phase_started = now_unix();
                    // Announced beyond the cap: expected in the next round.
                    next.late.extend(self.mask.keys.keys().skip(cap).cloned());
                    next.save(&self.store)?;
                    tracing::info!(
                        round = self.round,
                        attempt = next.attempt,
                        masked = next.masked,
                        roster = ?announced,
                        "mask keys complete: uploads open"
                    );
                    self.mask = next;
                    self.roster = announced;
                    return Ok(true);
                }
                Ok(false)
            }
            Some(frozen) if due => {
                let uploaded: BTreeSet<String> = self.submitted.iter().cloned().collect();
                // A masked round needs every member's update; an unmasked one
                // closes at its deadline with the quorum (`auto_close_due`).
                let stuck = if self.mask.masked {
                    !frozen.iter().all(|c| uploaded.contains(c))
                } else {
                    uploaded.len() < self.min_contributors()
                };
                if !stuck {
                    return Ok(false);
                }
                let (plan, _) = self
                    .plan()
                    .ok_or_else(|| ServerError::Internal("no plan".into()))?;
                let before_training = self.round <= plan.layout().statistics_round();
                let named = !plan.quorum.roster.is_empty();
                // The next attempt waits for those who uploaded — or for
                // everyone again when they are too few for a quorum, or when
                // a round before training has a named roster (it waits for
                // every named member) — and for whoever came late.
                let mut expected =
                    if uploaded.len() >= self.min_contributors() && !(before_training && named) {
                        uploaded
                    } else {
                        frozen.clone()
                    };
                expected.extend(self.mask.late.iter().cloned());
                let dropped: Vec<&String> = frozen.difference(&expected).collect();
                tracing::warn!(
                    round = self.round,
                    attempt = self.mask.attempt,
                    ?dropped,
                    "attempt incomplete at its deadline: its sum is discarded and the round \
                     restarts"
                );
                let mut next = MaskRound::fresh(self.round, now_unix());
                next.attempt = self.mask.attempt + 1;
                next.expected = Some(expected.clone());
                let bytes = next.to_bytes()?;
                self.store.restart_attempt(self.round, &bytes)?;
                self.mask = next;
                self.roster = expected;
                self.acc = None;
                self.round_len = None;
                self.submitted.clear();
                self.open_aggregate_ms = 0.0;
                self.open_bytes = 0;
                Ok(true)
            }
            Some(_) => Ok(false),
        }
    }

    /// Checks an upload against the open attempt (before its body is read).
    pub(super) fn check_attempt(
        &self,
        client: &str,
        attempt: Option<u32>,
    ) -> Result<(), ServerError> {
        if !self.masks_on() {
            return Ok(());
        }
        let current = self.mask.attempt;
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
        let Some(frozen) = &self.mask.frozen else {
            return Err(ServerError::Conflict(format!(
                "round {} attempt {current} still collects mask keys ({} announced, at least {} \
                 needed); upload once its roster is fixed",
                self.round,
                self.mask.keys.len(),
                self.min_contributors()
            )));
        };
        if self.mask.masked && !frozen.contains(client) {
            return Err(ServerError::Conflict(format!(
                "`{client}` is not in the roster of round {} attempt {current} (its masks cancel \
                 only among {})",
                self.round,
                frozen.iter().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(())
    }
}
