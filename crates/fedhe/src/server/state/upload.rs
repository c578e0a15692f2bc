//! Uploads: an update is checked against the open round, added into the
//! running sum, and recorded — with the close it completes, if rounds close
//! by themselves — in one transaction.

use std::time::Instant;

use crate::crypto::{Accumulator, CryptoError, UpdateRef};
use crate::protocol::UploadResponse;

use super::super::error::ServerError;
use super::super::store::Submission;
use super::keys::log_advance;
use super::masks::Advance;
use super::round::{Closing, OpenRound};
use super::{Aggregator, max_update_bytes, no_session, now_unix};

fn crypto_422(e: CryptoError) -> ServerError {
    // Fingerprint, parameters, length, contributor budget or a replayed
    // ciphertext: all well-formed updates this sum cannot take.
    ServerError::Unprocessable(format!("update refused: {e}"))
}

impl Aggregator {
    /// Largest body accepted on the upload route right now.
    pub fn upload_limit(&self) -> Result<usize, ServerError> {
        let s = self.session.as_ref().ok_or_else(no_session)?;
        let n = s.max_len.ok_or_else(|| {
            ServerError::NoSession(
                "the session's max_len is not set yet: register with `max_len` first".into(),
            )
        })?;
        Ok(max_update_bytes(s.public.params(), n))
    }

    /// Cheap checks before the body is read: session, round, duplicate.
    pub fn precheck_upload(
        &self,
        client: &str,
        round: u64,
        attempt: Option<u32>,
    ) -> Result<usize, ServerError> {
        self.check_not_complete()?;
        let limit = self.upload_limit()?;
        self.open.check_open_for(client, round)?;
        self.check_attempt(client, attempt)?;
        Ok(limit)
    }

    /// Checks an upload against the open attempt (before its body is read).
    fn check_attempt(&self, client: &str, attempt: Option<u32>) -> Result<(), ServerError> {
        let rules = self.rules();
        if !rules.masks_on() {
            return Ok(());
        }
        self.open
            .mask
            .check_upload(client, attempt, rules.min_contributors())
    }

    /// Checks an update body in place: header, parameters and lengths against
    /// the model length bound, without copying its words (cheap enough to
    /// run under the state lock).
    pub fn decode_update<'b>(&self, bytes: &'b [u8]) -> Result<UpdateRef<'b>, ServerError> {
        let s = self.session.as_ref().ok_or_else(no_session)?;
        let max_len = s.max_len.ok_or_else(no_session)?;
        let k = &s.public;
        UpdateRef::parse_for(bytes, max_len, &k.layout()).map_err(|e| match e {
            // Well-formed, but made with another key's parameters.
            CryptoError::ParamsMismatch { .. } => crypto_422(e),
            e => ServerError::Malformed(format!("not a valid encrypted update: {e}")),
        })
    }

    /// Adds an accepted update into the running sum and records it durably,
    /// with the close it completes (auto-aggregate) in the same transaction.
    pub fn submit(
        &mut self,
        client: &str,
        round: u64,
        attempt: Option<u32>,
        update: &UpdateRef<'_>,
        body_len: u64,
    ) -> Result<UploadResponse, ServerError> {
        let len = self.check_update(client, round, attempt, update)?;
        let now = now_unix();
        let (contributors, add_ms, full) = self.add_to_sum(update, len)?;
        let next = self.open.submit(client, len, add_ms, body_len);
        let closing = self.auto_close(&next, contributors, full, now);
        // Double masking: the last member's upload moves the attempt to its
        // consistency phase, in the same transaction.
        let step = match self.mask_step(&next, now) {
            Some(s @ Advance::Phase(_)) => Some(s),
            _ => None,
        };
        let next = match &step {
            Some(s) => next.advanced(s),
            None => next,
        };
        let mask_state = step.as_ref().map(|_| next.mask.to_bytes()).transpose()?;
        let sub = Submission {
            round,
            client_id: client,
            bytes: body_len,
            len,
            contributors,
            add_ms,
            now,
        };
        if let Err(e) = self.commit_submission(&sub, closing.as_ref(), mask_state.as_deref()) {
            if let Err(restore) = self.restore_sum() {
                tracing::error!(
                    round,
                    "the running sum could not be read back after a failed write ({restore}); \
                     refusing updates until a restart"
                );
                self.sum_lost = true;
            }
            return Err(e);
        }
        if let Some(s) = &step {
            log_advance(&self.open, s);
        }
        self.open = next;
        if let Some(c) = self.clients.get_mut(client) {
            c.last_round = Some(round);
        }
        let round_closed = closing.is_some();
        if let Some(c) = closing {
            let published = self.sum_buf.clone();
            self.apply_close(c, published);
        }
        Ok(UploadResponse {
            round,
            contributors,
            round_closed,
        })
    }

    /// Every check of an update against the open round; its length.
    fn check_update(
        &self,
        client: &str,
        round: u64,
        attempt: Option<u32>,
        update: &UpdateRef<'_>,
    ) -> Result<usize, ServerError> {
        self.check_sum()?;
        self.check_not_complete()?;
        self.open.check_open_for(client, round)?;
        self.check_attempt(client, attempt)?;
        self.check_binding(round, update.binding())?;
        self.check_plan_binding(update.plan())?;
        let s = self.session.as_ref().ok_or_else(no_session)?;
        let n = s.max_len.ok_or_else(no_session)?;
        let len = update.len();
        if len > n {
            return Err(ServerError::Unprocessable(format!(
                "update has {len} values; this session allows at most {n}"
            )));
        }
        if let Some(want) = self.plan_len(round)
            && want != len
        {
            return Err(ServerError::Unprocessable(format!(
                "update has {len} values; round {round} of the plan sums vectors of {want} values"
            )));
        }
        if let Some(l) = self.open.len
            && l != len
        {
            return Err(ServerError::Unprocessable(format!(
                "update has {len} values; round {round} sums vectors of {l} values"
            )));
        }
        Ok(len)
    }

    /// Adds `update` into the running sum in place (unchanged if refused)
    /// and serializes the new sum into `sum_buf`. Returns the contributors,
    /// the time to add (ms) and whether the sum is full.
    fn add_to_sum(
        &mut self,
        update: &UpdateRef<'_>,
        len: usize,
    ) -> Result<(u32, f64, bool), ServerError> {
        let s = self.session.as_ref().ok_or_else(no_session)?;
        let t = Instant::now();
        let acc = match self.acc.as_mut() {
            Some(acc) => {
                acc.add_ref(update).map_err(crypto_422)?;
                acc
            }
            None => {
                // First update of the round: it fixes the round's length. A
                // refused update leaves no accumulator behind.
                let mut fresh = Accumulator::new(&s.public, len);
                fresh.add_ref(update).map_err(crypto_422)?;
                self.acc.insert(fresh)
            }
        };
        let add_ms = t.elapsed().as_secs_f64() * 1e3;
        // The serialized sum is rewritten after every update: reuse one buffer.
        acc.write_bytes(&mut self.sum_buf);
        let full = acc.contributors() >= acc.max_clients();
        Ok((acc.contributors(), add_ms, full))
    }

    /// The close `next` is due for, if rounds close by themselves. A close
    /// its checks refuse leaves the update counted; the deadline ticker
    /// tries again.
    fn auto_close(
        &self,
        next: &OpenRound,
        contributors: u32,
        full: bool,
        now: u64,
    ) -> Option<Closing> {
        let rules = self.rules();
        if !rules.closes_automatically() || !next.due(&rules, full, now) {
            return None;
        }
        next.close(&rules, contributors, now)
            .inspect_err(|e| tracing::error!(round = next.number, "closing the round failed: {e}"))
            .ok()
    }

    /// The submission (and the close it completes): one transaction.
    fn commit_submission(
        &mut self,
        sub: &Submission<'_>,
        closing: Option<&Closing>,
        mask_state: Option<&[u8]>,
    ) -> Result<(), ServerError> {
        let next_state = closing.map(super::next_mask_state).transpose()?;
        let sum = &self.sum_buf;
        self.store.write(|tx| {
            tx.record_submission(sub, sum)?;
            if let Some(bytes) = mask_state {
                tx.put_meta("mask_state", bytes)?;
            }
            if let (Some(c), Some(state)) = (closing, &next_state) {
                super::write_close(tx, c, sub.now, sum, state.as_deref())?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Refuses an update whose header names another plan than the one
    /// served (made for another federation under the same key). An update
    /// naming none is left to the sites: a tagged sum binds its plan.
    fn check_plan_binding(&self, plan: crate::crypto::PlanBinding) -> Result<(), ServerError> {
        let Some((_, fp)) = self.plan() else {
            return Ok(());
        };
        if plan.iter().all(|b| *b == 0) {
            return Ok(());
        }
        // The header names the fingerprint's first bytes.
        let named: String = plan.iter().map(|b| format!("{b:02x}")).collect();
        if !fp.starts_with(&named) {
            return Err(ServerError::Unprocessable(format!(
                "this update was made for plan {named}…; this aggregator serves plan {fp}"
            )));
        }
        Ok(())
    }

    /// Refuses an update whose header names another round (or, with masks,
    /// another attempt): a replay. Without a plan an unbound update (round
    /// 0) is accepted; a plan's rounds take bound updates only.
    fn check_binding(&self, round: u64, (r, a): (u64, u32)) -> Result<(), ServerError> {
        if r == 0 && self.plan().is_none() {
            return Ok(());
        }
        if r != round {
            return Err(ServerError::WrongRound(if r == 0 {
                format!(
                    "this update names no round; this federation's updates name the round they \
                     were made for (round {round} is open)"
                )
            } else {
                format!("this update was made for round {r}; it cannot count in round {round}")
            }));
        }
        if self.rules().masks_on() && a != self.open.mask.attempt {
            return Err(ServerError::WrongAttempt(format!(
                "this update was made for attempt {a} of round {round}; the round is at attempt {}",
                self.open.mask.attempt
            )));
        }
        Ok(())
    }
}
