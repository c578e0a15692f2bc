//! Double masking (issue 23 Part 2), the aggregator's shell: a masked
//! attempt's sealed share bundles, the survivors' signatures of the
//! survivor set, their reveals, the unmask that closes the round, and a
//! member's report of another's unusable mask key. The decisions (which
//! phase comes next, the threshold) are [`MaskRound`](super::masks::MaskRound)'s
//! and the pure checks below; each request commits once (`Store::write`),
//! then memory follows.
//!
//! What the aggregator holds: bundles it cannot open (AES-256-GCM under
//! keys only sender and recipient derive), signatures it checks against
//! the registered identities, and reveals: for each survivor, shares of its
//! self seed; for each (survivor, dropped member), shares of their pair
//! seed. From at least `t` reveals it rebuilds the masks that are left in
//! the survivors' sum and adds them (`Accumulator::add_masks`): the
//! survivors' exact sum remains, nothing of any single update.

use std::collections::{BTreeMap, BTreeSet};

use crate::crypto::Masks;
use crate::privacy::masks::MaskContext;
use crate::privacy::secagg::{Reveal, SecAggRound, unmask, verify_survivors};
use crate::protocol::{
    KeyReport, KeySet, MaskPhase, RevealUpload, SharesFor, SharesUpload, SurvivorSignature,
    WireBundle, hex, parse_hex_array, parse_hex_up_to,
};

use super::super::error::ServerError;
use super::super::store::{MaskTable, StoreError, Tx};
use super::keys::log_advance;
use super::masks::{Advance, MaskRound};
use super::round::OpenRound;
use super::{Aggregator, next_mask_state, now_unix, write_close};

/// Which double-masking body a route reads (its limit follows the roster).
#[derive(Debug, Clone, Copy)]
pub enum SecAggBody {
    /// `PUT /rounds/{r}/shares`.
    Shares,
    /// `PUT /rounds/{r}/reveal`.
    Reveal,
    /// The survivor signature and the key report.
    Small,
}

/// Longest report reason kept.
const MAX_REASON: usize = 1000;

/// A write added to a mask change's transaction (the item it stores).
type Row<'a> = &'a dyn Fn(&Tx<'_>) -> Result<(), StoreError>;

impl Aggregator {
    /// Largest body of `kind` for the open attempt's roster (before it is
    /// fixed: the key's most contributors).
    pub fn secagg_limit(&self, kind: SecAggBody) -> usize {
        let cap = self
            .session
            .as_ref()
            .map_or(64, |s| s.public.max_clients() as usize);
        let n = self.open.mask.frozen.as_ref().map_or(cap, |f| f.len());
        // An id is at most 64 characters; JSON's names and quotes on top.
        match kind {
            SecAggBody::Shares => n * (2 * (32 * n + 16) + 128) + 1024,
            SecAggBody::Reveal => (n * n + n) * 256 + 1024,
            SecAggBody::Small => 4096,
        }
    }

    /// Whether the open attempt's phase waits for `client` (a key-set long
    /// poll answers at once then): an unmasked upload phase waits for
    /// nobody's key; a double-masked one for its members' updates, its
    /// consistency phase for their signatures, its unmask phase for their
    /// reveals. The key phase waits for the others' keys.
    pub fn has_turn(&self, client: Option<&str>) -> bool {
        let m = &self.open.mask;
        let Some(c) = client else {
            return false;
        };
        let survivor = m
            .survivors
            .as_ref()
            .is_some_and(|s| s.iter().any(|x| x == c));
        match m.phase() {
            MaskPhase::Keys => false,
            MaskPhase::Upload if !m.masked => true,
            MaskPhase::Upload => {
                m.frozen.as_ref().is_some_and(|f| f.contains(c))
                    && !self.open.submitted.iter().any(|x| x == c)
            }
            MaskPhase::Consistency => survivor && !m.signatures.contains_key(c),
            MaskPhase::Unmask => survivor && !m.reveals.contains_key(c) && m.stuck.is_none(),
        }
    }

    /// The open attempt is double-masked, at `round` and `attempt`, in one
    /// of `phases`, and `client` is in its fixed roster.
    fn check_double(
        &self,
        client: &str,
        round: u64,
        attempt: u32,
        phases: &[MaskPhase],
    ) -> Result<(), ServerError> {
        self.check_not_complete()?;
        let open = self.open.number;
        if round != open {
            return Err(match round < open {
                true => ServerError::WrongRound(format!(
                    "round {round} is closed; the open round is {open}"
                )),
                false => super::unknown_round(round, open),
            });
        }
        let m = &self.open.mask;
        if attempt != m.attempt {
            return Err(ServerError::WrongAttempt(format!(
                "round {round} is at attempt {}, not {attempt}",
                m.attempt
            )));
        }
        if !self.rules().masks_on() || !m.double() {
            return Err(ServerError::Conflict(format!(
                "round {round} attempt {attempt} is not double-masked (its roster is not fixed, \
                 or its updates carry no masks)"
            )));
        }
        if !m.frozen.as_ref().is_some_and(|f| f.contains(client)) {
            return Err(ServerError::Forbidden(format!(
                "`{client}` is not in the roster of round {round} attempt {attempt}"
            )));
        }
        if !phases.contains(&m.phase()) {
            return Err(ServerError::Conflict(format!(
                "round {round} attempt {attempt} is in its {:?} phase, not {phases:?}",
                m.phase()
            )));
        }
        Ok(())
    }

    /// `PUT /rounds/{r}/shares`: `client`'s sealed bundles, one per member
    /// of the fixed roster. The same bundles again: no change.
    pub fn put_shares(
        &mut self,
        client: &str,
        round: u64,
        req: SharesUpload,
    ) -> Result<KeySet, ServerError> {
        let any = [MaskPhase::Upload, MaskPhase::Consistency, MaskPhase::Unmask];
        self.check_double(client, round, req.attempt, &any)?;
        let frozen = self.open.mask.frozen.clone().unwrap_or_default();
        let bundles = check_bundles(&req, &frozen)?;
        if let Some(old) = self.open.mask.shares.get(client) {
            if *old == bundles {
                return self.key_set(round);
            }
            return Err(ServerError::Conflict(format!(
                "`{client}` already sent other shares for round {round} attempt {}",
                req.attempt
            )));
        }
        self.check_double(client, round, req.attempt, &[MaskPhase::Upload])?;
        let at = (round, req.attempt);
        // A carried-over attempt's upload phase counts from its first
        // shares, as a key phase does from its first key: the sites train
        // between the rounds.
        let now = super::now_unix();
        let clock = (self.open.mask.keys_from.is_some() && self.open.mask.shares.is_empty())
            .then(|| {
                let mut m = self.open.mask.clone();
                m.phase_started = now;
                m.to_bytes()
            })
            .transpose()?;
        self.store.write(|tx| {
            for (to, bytes) in &bundles {
                tx.put_mask_share(at, client, to, bytes)?;
            }
            match &clock {
                Some(state) => tx.put_meta("mask_state", state),
                None => Ok(()),
            }
        })?;
        if clock.is_some() {
            self.open.mask.phase_started = now;
        }
        self.open.mask.shares.insert(client.to_string(), bundles);
        self.key_set(round)
    }

    /// `GET /rounds/{r}/shares` (unmask phase): the survivors' bundles
    /// addressed to `client`.
    pub fn shares_for(&self, client: &str, round: u64) -> Result<SharesFor, ServerError> {
        let attempt = self.open.mask.attempt;
        // Consistency too: survivors open their bundles before signing.
        self.check_double(
            client,
            round,
            attempt,
            &[MaskPhase::Consistency, MaskPhase::Unmask],
        )?;
        let m = &self.open.mask;
        let survivors = m.survivors.clone().unwrap_or_default();
        let bundles = survivors
            .iter()
            .filter_map(|s| {
                let bytes = m.shares.get(s)?.get(client)?;
                Some(WireBundle {
                    id: s.clone(),
                    bytes: hex(bytes),
                })
            })
            .collect();
        Ok(SharesFor {
            round,
            attempt,
            bundles,
        })
    }

    /// `PUT /rounds/{r}/survivors`: a survivor's signature of the survivor
    /// set, checked against its registered identity key.
    pub fn sign_survivors(
        &mut self,
        client: &str,
        round: u64,
        req: SurvivorSignature,
    ) -> Result<KeySet, ServerError> {
        let later = [MaskPhase::Consistency, MaskPhase::Unmask];
        self.check_double(client, round, req.attempt, &later)?;
        let signature: [u8; 64] = parse_hex_array(&req.signature)
            .ok_or_else(|| ServerError::Malformed("`signature` must be hex of 64 bytes".into()))?;
        let m = &self.open.mask;
        let survivors = m.survivors.clone().unwrap_or_default();
        if !survivors.iter().any(|s| s == client) {
            return Err(ServerError::Forbidden(format!(
                "`{client}` is not among the survivors of round {round} attempt {}",
                req.attempt
            )));
        }
        if let Some(old) = m.signatures.get(client) {
            return match *old == signature {
                true => self.key_set(round),
                false => Err(ServerError::Conflict(format!(
                    "`{client}` already signed the survivor set of round {round}"
                ))),
            };
        }
        self.check_double(client, round, req.attempt, &[MaskPhase::Consistency])?;
        self.verify_survivor_signature(client, &survivors, &signature)?;
        let mut next = self.open.clone();
        next.mask.signatures.insert(client.to_string(), signature);
        let at = (round, req.attempt);
        let row = |tx: &Tx<'_>| tx.put_mask_row(MaskTable::Signatures, at, client, &signature);
        self.commit_mask_change(next, now_unix(), &row)?;
        self.key_set(round)
    }

    /// `client`'s registered identity signed `survivors` for the open attempt.
    fn verify_survivor_signature(
        &self,
        client: &str,
        survivors: &[String],
        signature: &[u8; 64],
    ) -> Result<(), ServerError> {
        let identity = self
            .clients
            .get(client)
            .and_then(|c| c.identity.as_ref())
            .map(|i| i.key)
            .ok_or_else(|| {
                ServerError::Forbidden(format!("`{client}` has no registered identity key"))
            })?;
        let ok = self.with_secagg_round(&self.open, |round| {
            Ok(verify_survivors(
                round, &identity, client, survivors, signature,
            ))
        })?;
        if !ok {
            return Err(ServerError::Unprocessable(format!(
                "this signature of the survivor set ({}) does not verify against the identity \
                 key registered for `{client}`; nothing was stored",
                survivors.join(", ")
            )));
        }
        Ok(())
    }

    /// `PUT /rounds/{r}/reveal`: a survivor's revealed shares. The last one
    /// (every survivor revealed) unmasks and closes the round in the same
    /// transaction.
    pub fn reveal(
        &mut self,
        client: &str,
        round: u64,
        req: RevealUpload,
    ) -> Result<KeySet, ServerError> {
        self.check_double(client, round, req.attempt, &[MaskPhase::Unmask])?;
        let m = &self.open.mask;
        let survivors = m.survivors.clone().unwrap_or_default();
        if !survivors.iter().any(|s| s == client) {
            return Err(ServerError::Forbidden(format!(
                "`{client}` is not among the survivors of round {round} attempt {}",
                req.attempt
            )));
        }
        let parsed = parse_reveal(client, &req, &m.roster_vec(), &survivors)?;
        if let Some(old) = m.reveals.get(client) {
            return match *old == parsed {
                true => self.key_set(round),
                false => Err(ServerError::Conflict(format!(
                    "`{client}` already revealed other shares in round {round}"
                ))),
            };
        }
        let body = serde_json::to_vec(&req)
            .map_err(|e| ServerError::Internal(format!("reveal JSON: {e}")))?;
        let mut next = self.open.clone();
        next.mask.reveals.insert(client.to_string(), parsed);
        let at = (round, req.attempt);
        let row = |tx: &Tx<'_>| tx.put_mask_row(MaskTable::Reveals, at, client, &body);
        self.commit_mask_change(next, now_unix(), &row)?;
        if self.open.number != round {
            // The round closed: its key set is gone; show the next one's.
            return self.key_set(self.open.number);
        }
        self.key_set(round)
    }

    /// `POST /rounds/{r}/report`: `client` found `req.member`'s relayed key
    /// unusable. In the upload phase (nothing revealed), the attempt
    /// restarts at once without the reported member, which takes part
    /// again from the next round. One report per member and round.
    pub fn report_key(
        &mut self,
        client: &str,
        round: u64,
        req: KeyReport,
    ) -> Result<KeySet, ServerError> {
        self.check_double(client, round, req.attempt, &[MaskPhase::Upload])?;
        let m = &self.open.mask;
        let frozen = m.frozen.clone().unwrap_or_default();
        if req.member == client || !frozen.contains(&req.member) {
            return Err(ServerError::Unprocessable(format!(
                "`{}` is not another member of round {round} attempt {}",
                req.member, req.attempt
            )));
        }
        if m.reporters.contains(client) {
            return Err(ServerError::Conflict(format!(
                "`{client}` already reported a member in round {round}: one report per member \
                 and round"
            )));
        }
        let now = now_unix();
        let mut expected: BTreeSet<String> = frozen.union(&m.late).cloned().collect();
        expected.retain(|c| !m.excluded.contains(c));
        expected.remove(&req.member);
        // A report must not stall the federation: without the member, the
        // round must still have its quorum of expected members.
        let min = self.rules().min_contributors();
        if expected.len() < min {
            return Err(ServerError::Conflict(format!(
                "leaving `{}` out of round {round} would leave {} expected members, fewer than \
                 the {min} the round needs; the report is refused",
                req.member,
                expected.len()
            )));
        }
        let mut mask = m.clone();
        mask.reporters.insert(client.to_string());
        // A round before training with a named roster waits for every
        // named member: the reported one is left out of the next attempt
        // only (it may announce a new key in the one after).
        let per_attempt = self
            .plan()
            .is_some_and(|(p, _)| round <= p.layout().statistics_round())
            && self.rules().named_roster().is_some();
        if !per_attempt {
            mask.excluded.insert(req.member.clone());
        }
        let mut next_mask = mask.next_attempt(now, expected);
        next_mask.late = m.late.clone();
        if !per_attempt {
            next_mask.late.insert(req.member.clone());
        }
        let reason: String = req.reason.chars().take(MAX_REASON).collect();
        let bytes = next_mask.to_bytes()?;
        let at = (round, req.attempt);
        self.store.write(|tx| {
            tx.put_mask_report(at, client, &req.member, &reason, now)?;
            tx.restart_attempt(round, &bytes)
        })?;
        tracing::warn!(
            round,
            attempt = req.attempt,
            reporter = client,
            member = %req.member,
            "`{client}` reported the mask key of `{}` in round {round} attempt {}: {reason}; \
             the round restarts without it",
            req.member,
            req.attempt
        );
        let step = Advance::Restart {
            next: next_mask,
            dropped: vec![req.member.clone()],
        };
        self.open = self.open.advanced(&step);
        self.acc = None;
        self.key_set(round)
    }

    /// `f` with the open attempt's double-masking round (context, roster
    /// and threshold).
    fn with_secagg_round<T>(
        &self,
        open: &OpenRound,
        f: impl FnOnce(&SecAggRound<'_>) -> Result<T, ServerError>,
    ) -> Result<T, ServerError> {
        let (plan, fp) = self
            .plan()
            .ok_or_else(|| ServerError::Internal("no plan".into()))?;
        let roster = open.mask.roster_vec();
        let ctx = MaskContext {
            plan: fp,
            round: open.number,
            attempt: open.mask.attempt,
        };
        let round = SecAggRound::new(ctx, &roster, plan.quorum.min_clients)
            .map_err(|e| ServerError::Internal(format!("double-masked round: {e}")))?;
        f(&round)
    }

    /// Commits `next` (the open round with one more stored item, written
    /// by `row`) and whatever step it completes, in one transaction.
    pub(super) fn commit_mask_change(
        &mut self,
        next: OpenRound,
        now: u64,
        row: Row<'_>,
    ) -> Result<(), ServerError> {
        let step = self.mask_step(&next, now);
        if let Some(Advance::Unmask) = step {
            return self.unmask_close(next, now, row);
        }
        let after = match &step {
            Some(s) => next.advanced(s),
            None => next.clone(),
        };
        let round = self.open.number;
        let restart = matches!(step, Some(Advance::Restart { .. }));
        let state = self.open.mask.change_to(&after.mask)?;
        self.store.write(|tx| {
            row(tx)?;
            match (&state, restart) {
                (Some(b), true) => tx.restart_attempt(round, b),
                (Some(b), false) => tx.put_meta("mask_state", b),
                (None, _) => Ok(()),
            }
        })?;
        if restart {
            self.acc = None;
        }
        if let Some(s) = &step {
            log_advance(&next, s);
        }
        self.open = after;
        Ok(())
    }

    /// The unmask: the masks left in the survivors' sum, rebuilt from the
    /// reveals, are added to it, and the round closes with the survivors
    /// (one transaction with `row`). An unmask that fails marks the round
    /// stuck instead (it stays open; nothing more is revealed).
    pub(super) fn unmask_close(
        &mut self,
        next: OpenRound,
        now: u64,
        row: Row<'_>,
    ) -> Result<(), ServerError> {
        self.check_sum()?;
        let masks = match self.unmask_masks(&next) {
            Ok(m) => m,
            Err(e) => return self.mark_stuck(next, row, e.to_string()),
        };
        let acc = self
            .acc
            .as_mut()
            .ok_or_else(|| ServerError::Internal("a double-masked round without a sum".into()))?;
        acc.add_masks(&masks);
        acc.write_bytes(&mut self.sum_buf);
        let contributors = acc.contributors();
        let closed = next
            .close_unmasked(&self.rules(), contributors, now)
            .and_then(|c| Ok((next_mask_state(&c)?, c)));
        let published = self.sum_buf.clone();
        let written = closed.and_then(|(state, closing)| {
            self.store.write(|tx| {
                row(tx)?;
                write_close(tx, &closing, now, &published, state.as_deref())
            })?;
            Ok(closing)
        });
        let closing = match written {
            Ok(c) => c,
            Err(e) => {
                if let Err(restore) = self.restore_sum() {
                    tracing::error!("the running sum could not be read back: {restore}");
                    self.sum_lost = true;
                }
                return Err(e);
            }
        };
        tracing::info!(
            round = next.number,
            attempt = next.mask.attempt,
            survivors = ?next.mask.survivors,
            reveals = next.mask.reveals.len(),
            "round {} attempt {} unmasked",
            next.number,
            next.mask.attempt
        );
        self.apply_close(closing, published);
        Ok(())
    }

    /// The masks to add to `next`'s sum (every survivor's self mask, and
    /// its pair masks with the dropped members).
    fn unmask_masks(&self, next: &OpenRound) -> Result<Masks, ServerError> {
        let survivors = next.mask.survivors.clone().unwrap_or_default();
        let reveals: Vec<Reveal> = next.mask.reveals.values().cloned().collect();
        self.with_secagg_round(next, |round| {
            unmask(round, &survivors, &reveals).map_err(|e| ServerError::Conflict(e.to_string()))
        })
    }

    /// The round cannot be unmasked (inconsistent reveals: a member lied):
    /// it stays open, marked, with `row` stored.
    fn mark_stuck(
        &mut self,
        mut next: OpenRound,
        row: Row<'_>,
        why: String,
    ) -> Result<(), ServerError> {
        let (round, attempt) = (next.number, next.mask.attempt);
        next.mask.stuck = Some(why.clone());
        let bytes = next.mask.to_bytes()?;
        self.store.write(|tx| {
            row(tx)?;
            tx.put_meta("mask_state", &bytes)
        })?;
        tracing::error!(
            round,
            attempt,
            "round {round} attempt {attempt} could not be unmasked: {why}; the round stays open \
             (a member may have sent inconsistent shares); no route moves it on: a new run is needed"
        );
        self.open = next;
        Ok(())
    }
}

/// The bundles of a shares upload, by recipient: exactly one per member of
/// `frozen`, each of `32 · |roster| + 16` bytes.
fn check_bundles(
    req: &SharesUpload,
    frozen: &BTreeSet<String>,
) -> Result<BTreeMap<String, Vec<u8>>, ServerError> {
    let want = 32 * frozen.len() + 16;
    let mut out = BTreeMap::new();
    for b in &req.bundles {
        if !frozen.contains(&b.id) {
            return Err(ServerError::Unprocessable(format!(
                "a bundle is addressed to `{}`, who is not in the roster",
                b.id
            )));
        }
        let bytes = parse_hex_up_to(&b.bytes, want + 1).ok_or_else(|| {
            ServerError::Unprocessable(format!(
                "the bundle for `{}` is not hex of {want} bytes (32 per roster member + 16)",
                b.id
            ))
        })?;
        if bytes.len() != want {
            return Err(ServerError::Unprocessable(format!(
                "the bundle for `{}` has {} bytes; {want} expected (32 per roster member + 16)",
                b.id,
                bytes.len()
            )));
        }
        if out.insert(b.id.clone(), bytes).is_some() {
            return Err(ServerError::Unprocessable(format!(
                "two bundles are addressed to `{}`",
                b.id
            )));
        }
    }
    if out.len() != frozen.len() {
        let missing: Vec<&String> = frozen.iter().filter(|m| !out.contains_key(*m)).collect();
        return Err(ServerError::Unprocessable(format!(
            "one bundle per roster member is needed; none for {missing:?}"
        )));
    }
    Ok(out)
}

/// A reveal from `from`: shares of survivors' self seeds and of
/// (survivor, dropped) pair seeds only, each once, of 32 bytes.
fn parse_reveal(
    from: &str,
    req: &RevealUpload,
    roster: &[String],
    survivors: &[String],
) -> Result<Reveal, ServerError> {
    let bad = |why: String| ServerError::Unprocessable(format!("reveal refused: {why}"));
    let mut out = Reveal {
        from: from.to_string(),
        self_shares: BTreeMap::new(),
        pair_shares: BTreeMap::new(),
    };
    for s in &req.shares {
        if !survivors.contains(&s.owner) {
            return Err(bad(format!("`{}` is not a survivor", s.owner)));
        }
        let bytes: [u8; 32] = parse_hex_array(&s.share)
            .ok_or_else(|| bad(format!("the share of `{}` is not hex of 32 bytes", s.owner)))?;
        let word = |c: &[u8]| {
            let mut b = [0u8; 16];
            b.copy_from_slice(c);
            u128::from_le_bytes(b)
        };
        let share = [word(&bytes[..16]), word(&bytes[16..])];
        let dup = match &s.dropped {
            None => out.self_shares.insert(s.owner.clone(), share).is_some(),
            Some(y) if roster.contains(y) && !survivors.contains(y) => out
                .pair_shares
                .insert((s.owner.clone(), y.clone()), share)
                .is_some(),
            Some(y) => return Err(bad(format!("`{y}` is not a dropped member"))),
        };
        if dup {
            return Err(bad(format!("two shares for `{}`", s.owner)));
        }
    }
    Ok(out)
}

/// Loads a double-masked attempt's stored items into `m`.
pub(super) fn read_items(
    store: &super::super::store::Store,
    m: &mut MaskRound,
) -> Result<(), ServerError> {
    for (from, to, bytes) in store.mask_shares(m.round, m.attempt)? {
        m.shares.entry(from).or_default().insert(to, bytes);
    }
    for (id, sig) in store.mask_rows(MaskTable::Signatures, m.round, m.attempt)? {
        let sig: [u8; 64] = sig
            .as_slice()
            .try_into()
            .map_err(|_| ServerError::Internal(format!("stored signature of `{id}`")))?;
        m.signatures.insert(id, sig);
    }
    let roster = m.roster_vec();
    let survivors = m.survivors.clone().unwrap_or_default();
    for (id, body) in store.mask_rows(MaskTable::Reveals, m.round, m.attempt)? {
        let req: RevealUpload = serde_json::from_slice(&body)
            .map_err(|e| ServerError::Internal(format!("stored reveal of `{id}`: {e}")))?;
        let parsed = parse_reveal(&id, &req, &roster, &survivors)?;
        m.reveals.insert(id, parsed);
    }
    Ok(())
}
