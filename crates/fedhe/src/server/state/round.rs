//! The open round as a value ([`OpenRound`]): who it waits for, what it has
//! counted, when it is due, and the transitions that count an update, join
//! a member or close it. Each transition returns the next value; the
//! aggregator commits it and only then keeps it. The running sum is not
//! part of the value (it is as large as the model): the aggregator keeps
//! it beside it.

use std::collections::BTreeSet;

use crate::plan::Plan;
use crate::privacy::masks::KeyAnnouncement;
use crate::protocol::{Completion, RoundInfo, RoundState};

use super::super::error::ServerError;
use super::Policy;
use super::masks::{Advance, MaskRound};

/// The quorum rules in force: the plan's, else the operator's policy.
#[derive(Clone, Copy)]
pub(super) struct Rules<'a> {
    pub plan: Option<&'a Plan>,
    pub policy: &'a Policy,
    /// Registered clients.
    pub registered: usize,
}

impl Rules<'_> {
    /// Whether the open round goes through mask keys (a plan with masks on).
    pub fn masks_on(&self) -> bool {
        self.plan.is_some_and(|p| p.privacy.masks)
    }

    /// Whether rounds close by themselves: by the plan's quorum once a plan
    /// is loaded (unless the operator closes by hand), else by the
    /// auto-aggregate policy.
    pub fn closes_automatically(&self) -> bool {
        if self.plan.is_some() {
            !self.policy.manual_close
        } else {
            self.policy.auto_aggregate
        }
    }

    /// The plan's last server round (its last training round), if a plan
    /// is loaded: when it closes, the federation is complete.
    pub fn last_round(&self) -> Option<u64> {
        let plan = self.plan?;
        Some(plan.last_round())
    }

    pub fn named_roster(&self) -> Option<BTreeSet<String>> {
        let plan = self.plan?;
        (!plan.quorum.roster.is_empty()).then(|| plan.quorum.roster.iter().cloned().collect())
    }

    pub fn allow_single(&self) -> bool {
        match self.plan {
            Some(p) => p.quorum.allow_single_contributor,
            None => self.policy.allow_single_contributor,
        }
    }

    /// Fewest contributors the open round may close with automatically.
    /// With pairwise masks, never below the plan's own minimum: clients
    /// refuse a roster smaller than the plan says (an operator override
    /// may only raise it).
    pub fn min_contributors(&self) -> usize {
        let floor = if self.allow_single() { 1 } else { 2 };
        let plan_min = self.plan.map(|p| p.quorum.min_clients);
        let base = self.policy.min_clients.or(plan_min).unwrap_or(1);
        let masked_floor = if self.masks_on() {
            plan_min.unwrap_or(1)
        } else {
            1
        };
        base.max(floor).max(masked_floor)
    }
}

/// The open round, without its running sum.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct OpenRound {
    pub number: u64,
    /// When the round opened (Unix seconds).
    pub opened_unix: u64,
    /// Values per update (fixed by the round's first update).
    pub len: Option<usize>,
    pub submitted: Vec<String>,
    pub aggregate_ms: f64,
    pub bytes: u64,
    /// Who the round waits for (with a plan): the named roster, or the
    /// previous round's contributors plus whoever registers or submits.
    pub roster: BTreeSet<String>,
    /// The attempt and mask keys (plans with masks on).
    pub mask: MaskRound,
}

/// A closed round, as kept for its queries.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ClosedRound {
    pub roster: Vec<String>,
    pub len: Option<usize>,
    pub contributors: u32,
    pub submitted: Vec<String>,
    pub aggregate_ms: f64,
    pub bytes_accepted: u64,
}

/// A decided close: the round as it closes, and the round it opens (or,
/// after the plan's last round, the federation's completion and the
/// placeholder of a round that never opens).
#[derive(Debug)]
pub(super) struct Closing {
    pub round: u64,
    pub closed: ClosedRound,
    pub next: OpenRound,
    pub complete: Option<Completion>,
}

impl OpenRound {
    /// What stands in for the open round once the federation is complete:
    /// round `last + 1`, which never opens (every request for it is
    /// refused as the federation being complete).
    pub fn after_last(c: &Completion) -> OpenRound {
        let n = c.last_round + 1;
        OpenRound::fresh(
            n,
            c.completed_unix,
            BTreeSet::new(),
            MaskRound::fresh(n, c.completed_unix),
        )
    }

    pub fn fresh(number: u64, now: u64, roster: BTreeSet<String>, mask: MaskRound) -> OpenRound {
        OpenRound {
            number,
            opened_unix: now,
            len: None,
            submitted: Vec::new(),
            aggregate_ms: 0.0,
            bytes: 0,
            roster,
            mask,
        }
    }

    /// The frozen roster of a masked upload phase, if the open attempt is one.
    pub fn masked_roster(&self, rules: &Rules<'_>) -> Option<&BTreeSet<String>> {
        (rules.masks_on() && self.mask.masked)
            .then_some(self.mask.frozen.as_ref())
            .flatten()
    }

    /// When the open round closes with whoever submitted; `None` without a
    /// plan and for the vocabulary and statistics rounds, which wait for
    /// everyone.
    /// With pairwise masks the deadline counts per phase of the attempt.
    pub fn deadline(&self, rules: &Rules<'_>) -> Option<u64> {
        let plan = rules.plan?;
        if plan.privacy.masks {
            return self.mask.deadline(plan);
        }
        (self.number > plan.layout().statistics_round())
            .then(|| self.opened_unix + plan.quorum.round_deadline_secs)
    }

    /// Roster members the open round waits for: those without an update,
    /// or (in a masked round's key phase) without an announced key.
    pub fn missing(&self, rules: &Rules<'_>) -> Vec<String> {
        let keys_phase = rules.masks_on() && self.mask.frozen.is_none();
        if let Some(survivors) = self.mask.survivors.as_ref().filter(|_| rules.masks_on()) {
            // Double masking: the survivors that have not signed (or revealed).
            let done = |c: &String| match self.mask.unmasking {
                false => self.mask.signatures.contains_key(c),
                true => self.mask.reveals.contains_key(c),
            };
            return survivors.iter().filter(|c| !done(c)).cloned().collect();
        }
        self.roster
            .iter()
            .filter(|c| {
                if keys_phase {
                    !self.mask.keys.contains_key(*c)
                } else {
                    !self.submitted.contains(c)
                }
            })
            .cloned()
            .collect()
    }

    /// Refuses an update for another round, or a second one from `client`.
    pub fn check_open_for(&self, client: &str, round: u64) -> Result<(), ServerError> {
        if round > self.number || round == 0 {
            return Err(super::unknown_round(round, self.number));
        }
        if round < self.number {
            return Err(ServerError::WrongRound(format!(
                "round {round} is closed; the open round is {}",
                self.number
            )));
        }
        if self.submitted.iter().any(|c| c == client) {
            return Err(ServerError::DuplicateSubmission(format!(
                "client `{client}` already submitted an update for round {round}"
            )));
        }
        Ok(())
    }

    /// The round with `client`'s update of `len` values (`bytes` on the
    /// wire, `add_ms` to add) counted.
    pub fn submit(&self, client: &str, len: usize, add_ms: f64, bytes: u64) -> OpenRound {
        let mut next = self.clone();
        next.submitted.push(client.to_string());
        next.roster.insert(client.to_string());
        next.len = Some(len);
        next.aggregate_ms += add_ms;
        next.bytes += bytes;
        next
    }

    /// Adds a client that shows up to the round's roster; once a masked
    /// round's roster is fixed, to the next round's instead.
    pub fn join(&self, client: &str, rules: &Rules<'_>) -> OpenRound {
        let mut next = self.clone();
        if rules.masks_on() && self.mask.frozen.is_some() {
            next.mask.late_join(client);
        } else {
            next.roster.insert(client.to_string());
        }
        next
    }

    /// The round with `client`'s mask key announced.
    pub fn announce(&self, client: &str, key: KeyAnnouncement, now: u64) -> OpenRound {
        let mut next = self.clone();
        next.mask.add_key(client, key, now);
        next.roster.insert(client.to_string());
        next
    }

    /// The round after its attempt moved on.
    pub fn advanced(&self, step: &Advance) -> OpenRound {
        let mut next = self.clone();
        match step {
            Advance::Freeze(mask) => {
                next.roster = mask.frozen.clone().unwrap_or_default();
                next.mask = mask.clone();
            }
            Advance::Phase(mask) | Advance::Stuck(mask) => next.mask = mask.clone(),
            Advance::Unmask => {}
            Advance::Restart { next: mask, .. } => {
                next.roster = mask.expected.clone().unwrap_or_default();
                next.mask = mask.clone();
                next.len = None;
                next.submitted.clear();
                next.aggregate_ms = 0.0;
                next.bytes = 0;
            }
        }
        next
    }

    /// Whether the round closes now by its quorum, `full` when its sum
    /// cannot take another update.
    pub fn due(&self, rules: &Rules<'_>, full: bool, now: u64) -> bool {
        let n = self.submitted.len();
        // A double-masked round closes only when its survivors unmask it
        // (`Advance::Unmask`).
        if self.masked_roster(rules).is_some() {
            return false;
        }
        // A full sum cannot take another update: close rather than refuse the next.
        if full {
            return n >= if rules.allow_single() { 1 } else { 2 };
        }
        if let Some(frozen) = self.masked_roster(rules) {
            // Masks cancel only in the sum of every member's update.
            return frozen.iter().all(|c| self.submitted.contains(c));
        }
        if n < rules.min_contributors() {
            return false;
        }
        if rules.plan.is_none() {
            // Without a plan: every registered client, or --min-clients.
            return rules.policy.min_clients.is_some() || n >= rules.registered;
        }
        if self.missing(rules).is_empty() {
            return true;
        }
        self.deadline(rules).is_some_and(|d| now >= d)
    }

    /// Closes the round with its `contributors` at `now`: refused while it
    /// has nothing to publish, a single contributor (unless allowed) or a
    /// masked roster not complete.
    pub fn close(
        &self,
        rules: &Rules<'_>,
        contributors: u32,
        now: u64,
    ) -> Result<Closing, ServerError> {
        self.check_masked_complete(rules)?;
        self.close_unmasked(rules, contributors, now)
    }

    /// [`close`](Self::close) of a round whose sum holds no mask: an
    /// unmasked round, or a double-masked one once its masks were removed.
    pub fn close_unmasked(
        &self,
        rules: &Rules<'_>,
        contributors: u32,
        now: u64,
    ) -> Result<Closing, ServerError> {
        let round = self.number;
        if contributors == 0 {
            return Err(ServerError::Conflict(format!(
                "round {round} has no submissions yet; nothing to publish"
            )));
        }
        if contributors == 1 && !rules.allow_single() {
            return Err(ServerError::Conflict(format!(
                "round {round} has a single contributor: publishing its sum would show that \
                 client's update to every key holder (a plan can allow it: \
                 quorum.allow_single_contributor)"
            )));
        }
        let next_roster: BTreeSet<String> = match rules.named_roster() {
            Some(named) => named,
            // Those who contributed, and those who came too late for this
            // round's fixed roster of masks.
            None => self
                .submitted
                .iter()
                .chain(&self.mask.late)
                .cloned()
                .collect(),
        };
        let closed = ClosedRound {
            roster: self.roster.iter().cloned().collect(),
            len: self.len,
            contributors,
            submitted: self.submitted.clone(),
            aggregate_ms: self.aggregate_ms,
            bytes_accepted: self.bytes,
        };
        if rules.last_round() == Some(round) {
            let complete = Completion {
                training_rounds: rules.plan.map_or(0, Plan::work_rounds),
                last_round: round,
                sites: contributors,
                completed_unix: now,
            };
            return Ok(Closing {
                round,
                closed,
                next: OpenRound::after_last(&complete),
                complete: Some(complete),
            });
        }
        let mask = self.mask.carry_over(now, &next_roster).unwrap_or_else(|| {
            let mut fresh = MaskRound::fresh(round + 1, now);
            fresh.expected = Some(next_roster.clone());
            fresh
        });
        Ok(Closing {
            round,
            closed,
            next: OpenRound::fresh(round + 1, now, next_roster, mask),
            complete: None,
        })
    }

    fn check_masked_complete(&self, rules: &Rules<'_>) -> Result<(), ServerError> {
        if self.masked_roster(rules).is_none() {
            return Ok(());
        }
        Err(ServerError::Conflict(format!(
            "round {} attempt {} is double-masked (phase {:?}): it closes when its survivors \
             have signed the survivor set and revealed their shares, and the aggregator has \
             removed the masks; it cannot be closed by hand",
            self.number,
            self.mask.attempt,
            self.mask.phase()
        )))
    }

    /// `GET /rounds/{r}` of the open round.
    pub fn info(&self, rules: &Rules<'_>, contributors: u32) -> RoundInfo {
        RoundInfo {
            round: self.number,
            state: RoundState::Open,
            len: self.len,
            contributors,
            submitted: self.submitted.clone(),
            aggregate_ms: self.aggregate_ms,
            bytes_accepted: self.bytes,
            roster: self.roster.iter().cloned().collect(),
            missing: self.missing(rules),
            min_contributors: rules.min_contributors(),
            deadline_unix: self.deadline(rules),
            attempt: self.mask.attempt,
            mask_phase: rules.masks_on().then(|| self.mask.phase()),
            masked: rules.masks_on() && self.mask.masked,
        }
    }
}

impl ClosedRound {
    /// `GET /rounds/{r}` of a closed round.
    pub fn info(&self, round: u64) -> RoundInfo {
        RoundInfo {
            round,
            state: RoundState::Closed,
            len: self.len,
            contributors: self.contributors,
            submitted: self.submitted.clone(),
            aggregate_ms: self.aggregate_ms,
            bytes_accepted: self.bytes_accepted,
            roster: self.roster.clone(),
            missing: Vec::new(),
            min_contributors: 0,
            deadline_unix: None,
            attempt: 0,
            mask_phase: None,
            masked: false,
        }
    }
}
