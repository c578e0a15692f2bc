//! [`HeExchange`]: the encrypted exchange through an aggregator. Encrypt,
//! upload (with pairwise masks: per attempt, after the key phase), wait for
//! the round to close, download the sum and decrypt it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::crypto::{self, Accumulator, CryptoError, SecretKey};
use crate::protocol::{ErrorCode, RoundInfo, RoundState};

use super::api::AggregatorClient;
use super::error::{LoopError, SumError};
use super::exchange::{Exchange, ExchangeCost, NoteNotifier, RoundMean, RoundSum, WaitNotifier};
use super::limbs::limb_bits_for;
use super::masking::{Identities, KeyPhase, Masker, Masking};
use super::wait::{LastSeen, wait_round};

/// The encrypted exchange through an aggregator.
pub struct HeExchange {
    pub api: AggregatorClient,
    pub key: Arc<SecretKey>,
    /// Longest wait for a round to close.
    pub round_timeout: Duration,
    /// Told who the round still waits for.
    pub on_wait: Option<WaitNotifier>,
    /// Pairwise masks (a plan with masks on): who this client is.
    pub masking: Option<Masking>,
    /// Partners' identities, checked once per registration.
    pub(crate) identities: Identities,
    /// Told, in words, which identities this client masks with.
    pub on_note: Option<NoteNotifier>,
    /// This client's id: a round published while it was away says whether
    /// its update is in the sum (the masking's id when unset).
    pub site: Option<String>,
}

/// A closed round's sum as downloaded, before it is decrypted.
struct Closed {
    round: u64,
    sum: Accumulator,
    /// Contributors the aggregator announced with the sum.
    announced: u32,
    contributed: bool,
    counted: Vec<String>,
    cost: ExchangeCost,
    masked: bool,
}

/// A masked contribution across its attempts.
struct MaskedUpload<'a> {
    me: &'a Masking,
    round: u64,
    values: &'a [f64],
    weight: f64,
    cost: ExchangeCost,
    /// Whether the last attempt's update was masked.
    masked: bool,
}

/// What to do after one masked attempt.
#[derive(PartialEq)]
enum AfterAttempt {
    /// Wait for the attempt or the round to move on.
    Wait,
    /// Look at the round again at once.
    Look,
}

impl HeExchange {
    /// An exchange through `api` with `key`, without masks.
    pub fn new(api: AggregatorClient, key: Arc<SecretKey>, round_timeout: Duration) -> Self {
        HeExchange {
            api,
            key,
            round_timeout,
            on_wait: None,
            masking: None,
            identities: Default::default(),
            on_note: None,
            site: None,
        }
    }

    /// One contribution weighted at the encryption (the weight slot carries
    /// `weight`), read as the weighted mean of the round. The client loop
    /// uses [`Exchange::contribute`] (weight 1, the sum).
    pub fn exchange(
        &mut self,
        round: u64,
        values: &[f64],
        weight: f64,
        cancel: &AtomicBool,
    ) -> Result<RoundMean, LoopError> {
        let closed = self.closed(round, values, weight, cancel)?;
        let t = Instant::now();
        let mean = crypto::decrypt_mean(&self.key, &closed.sum)?;
        let holds = mean.contributors;
        let mut cost = closed.cost;
        cost.decrypt_ms += ms(t);
        closed.check(holds)?;
        Ok(RoundMean {
            values: mean.values,
            total_weight: mean.total_weight,
            contributors: holds,
            contributed: closed.contributed,
            counted: closed.counted,
            cost,
            masked: closed.masked,
        })
    }

    /// Contributes (masked or not) and downloads the closed round's sum.
    fn closed(
        &mut self,
        round: u64,
        values: &[f64],
        weight: f64,
        cancel: &AtomicBool,
    ) -> Result<Closed, LoopError> {
        match self.masking.clone() {
            Some(me) => self.masked(&me, round, values, weight, cancel),
            None => self.unmasked(round, values, weight, cancel),
        }
    }

    fn unmasked(
        &self,
        round: u64,
        values: &[f64],
        weight: f64,
        cancel: &AtomicBool,
    ) -> Result<Closed, LoopError> {
        let mut cost = ExchangeCost::default();
        let t = Instant::now();
        let update = crypto::encrypt_weighted(&self.key, values, weight)?.bound_to(round, 0);
        let bytes = update.to_bytes();
        cost.encrypt_ms = ms(t);
        let t = Instant::now();
        let contributed = match self.api.upload(round, &bytes) {
            Ok(_) => true,
            Err(e) => match e.code() {
                // Resumed after a restart: our update of this round is in.
                Some(ErrorCode::DuplicateSubmission) => true,
                // Joined late: the round closed without us; use its result.
                Some(ErrorCode::WrongRound) => false,
                _ => return Err(e.into()),
            },
        };
        if contributed {
            cost.bytes_up = bytes.len() as u64;
        }
        drop(bytes);
        let info = self.wait_moved(round, None, cancel)?;
        cost.wait_ms = ms(t);
        self.download(
            round,
            values.len(),
            cost,
            contributed,
            info.submitted,
            false,
        )
    }

    /// One round with pairwise masks: per attempt, announce a key, wait for
    /// the roster, mask, upload, wait; an attempt that loses a member is
    /// redone with the same values and fresh masks.
    fn masked(
        &mut self,
        me: &Masking,
        round: u64,
        values: &[f64],
        weight: f64,
        cancel: &AtomicBool,
    ) -> Result<Closed, LoopError> {
        let t = Instant::now();
        let mut up = MaskedUpload {
            me,
            round,
            values,
            weight,
            cost: ExchangeCost::default(),
            masked: false,
        };
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(LoopError::Cancelled);
            }
            let info = self.api.round(round, None)?;
            if info.state == RoundState::Closed {
                up.cost.wait_ms = ms(t);
                let contributed = info.submitted.contains(&me.id);
                let masked = up.masked && contributed;
                return self.download(
                    round,
                    values.len(),
                    up.cost,
                    contributed,
                    info.submitted,
                    masked,
                );
            }
            // Resumed after a restart: our update of this attempt is in.
            let next = if info.submitted.contains(&me.id) {
                AfterAttempt::Wait
            } else {
                self.attempt(&mut up, info.attempt, cancel)?
            };
            if next == AfterAttempt::Wait {
                // Closed, or restarted without a member (then: mask again).
                self.wait_moved(round, Some(info.attempt), cancel)?;
            }
        }
    }

    /// One attempt of a masked upload: the key phase, then the upload.
    fn attempt(
        &mut self,
        up: &mut MaskedUpload<'_>,
        attempt: u32,
        cancel: &AtomicBool,
    ) -> Result<AfterAttempt, LoopError> {
        let public = self.key.public();
        let phase = Masker {
            api: &self.api,
            me: up.me,
            identities: &mut self.identities,
            public: &public,
            timeout: self.round_timeout,
            on_wait: self.on_wait.as_ref(),
        }
        .key_phase(up.round, attempt, cancel)?;
        // Not in this attempt: wait for the round or the attempt to move.
        let KeyPhase::Ready { masks } = phase else {
            return Ok(AfterAttempt::Wait);
        };
        self.note_new_identities();
        let t = Instant::now();
        up.masked = !masks.is_empty();
        if up.masked {
            // Never two vectors under the same masks (a restart included).
            let ctx = crate::privacy::MaskContext {
                plan: &up.me.plan,
                round: up.round,
                attempt,
            };
            up.me.ledger.bind(&ctx, up.values, up.weight)?;
        }
        let update = crypto::encrypt_weighted_masked(&self.key, up.values, up.weight, &masks)?
            .bound_to(up.round, attempt);
        let bytes = update.to_bytes();
        up.cost.encrypt_ms += ms(t);
        match self.api.upload_for(up.round, Some(attempt), &bytes) {
            Ok(_) => {
                up.cost.bytes_up += bytes.len() as u64;
                Ok(AfterAttempt::Wait)
            }
            Err(e) => match e.code() {
                Some(ErrorCode::DuplicateSubmission) => Ok(AfterAttempt::Wait),
                Some(ErrorCode::WrongRound | ErrorCode::WrongAttempt) => Ok(AfterAttempt::Look),
                // Not taken in this attempt (its roster or phase moved on):
                // wait for the attempt or the round to change.
                Some(ErrorCode::Conflict) => Ok(AfterAttempt::Wait),
                _ => Err(e.into()),
            },
        }
    }

    /// Tells `on_note` whose identity keys this client masks with, when
    /// new ones were verified.
    fn note_new_identities(&mut self) {
        let new = self.identities.take_new();
        if let Some(note) = &self.on_note
            && !new.is_empty()
        {
            let list: Vec<String> = new
                .iter()
                .map(|(id, key)| format!("{id} ({})", crate::privacy::masks::fingerprint(key)))
                .collect();
            note(&format!(
                "masking with the identity keys of {}",
                list.join(", ")
            ));
        }
    }

    /// Waits until `round` closes or (with `attempt`) moves to another
    /// attempt, telling `on_wait` who is missing.
    fn wait_moved(
        &self,
        round: u64,
        attempt: Option<u32>,
        cancel: &AtomicBool,
    ) -> Result<RoundInfo, LoopError> {
        let mut seen = LastSeen::new();
        wait_round(
            self.round_timeout,
            Some(cancel),
            || {
                format!(
                    "round {round} did not close within {} s",
                    self.round_timeout.as_secs()
                )
            },
            |wait| {
                let info = self.api.round(round, Some(wait))?;
                if info.state == RoundState::Closed || attempt.is_some_and(|a| a != info.attempt) {
                    return Ok(Some(info));
                }
                if seen.changed((info.submitted.clone(), info.missing.clone()))
                    && let Some(notify) = &self.on_wait
                {
                    notify(&info);
                }
                Ok(None)
            },
        )
    }

    fn download(
        &self,
        round: u64,
        len: usize,
        mut cost: ExchangeCost,
        contributed: bool,
        mut counted: Vec<String>,
        masked: bool,
    ) -> Result<Closed, LoopError> {
        counted.sort();
        let (bytes, announced) = self.api.download_sum(round)?;
        cost.bytes_down = bytes.len() as u64;
        let t = Instant::now();
        let sum = Accumulator::from_bytes(&bytes, len)?;
        drop(bytes);
        cost.decrypt_ms = ms(t);
        Ok(Closed {
            round,
            sum,
            announced,
            contributed,
            counted,
            cost,
            masked,
        })
    }

    /// The decrypted sum of a closed round (the weight slot, the number of
    /// weight-1 contributions, left off).
    fn sum_of(&self, closed: Closed) -> Result<RoundSum, LoopError> {
        let t = Instant::now();
        let mut integers = crypto::decrypt_integers(&self.key, &closed.sum)?;
        let weight = integers.pop().unwrap_or(0);
        if weight <= 0 {
            return Err(CryptoError::ZeroTotalWeight { found: weight }.into());
        }
        let unit = f64::from(closed.sum.scale_bits()).exp2();
        let values = integers.iter().map(|&v| v as f64 / unit).collect();
        let mut cost = closed.cost;
        cost.decrypt_ms += ms(t);
        let holds = closed.sum.contributors();
        closed.check(holds)?;
        Ok(RoundSum {
            values,
            contributors: holds,
            contributed: closed.contributed,
            counted: closed.counted,
            cost,
            masked: closed.masked,
        })
    }
}

impl Closed {
    /// The sum holds as many contributors as the aggregator announced.
    fn check(&self, holds: u32) -> Result<(), SumError> {
        if holds != self.announced {
            return Err(SumError::Contributors {
                round: self.round,
                announced: self.announced,
                holds,
            });
        }
        Ok(())
    }
}

impl Exchange for HeExchange {
    /// `|value| · 2^scale` must stay below `2^budget − 1/2`
    /// (`crypto::encoding`); this is a hair inside it.
    fn value_bound(&self) -> Option<f64> {
        let k = &self.key;
        let budget = k.params().client_budget_log2(k.max_clients());
        Some((f64::from(budget).exp2() - 1.0) / f64::from(k.scale_bits()).exp2())
    }

    fn limb_bits(&self) -> i32 {
        limb_bits_for(
            self.key.params(),
            self.key.scale_bits(),
            self.key.max_clients(),
        )
    }

    fn contribute(
        &mut self,
        round: u64,
        values: &[f64],
        cancel: &AtomicBool,
    ) -> Result<RoundSum, LoopError> {
        let closed = self.closed(round, values, 1.0, cancel)?;
        self.sum_of(closed)
    }

    fn published(&mut self, round: u64, len: usize) -> Result<Option<RoundSum>, LoopError> {
        let info = self.api.round(round, None)?;
        if info.state != RoundState::Closed {
            return Ok(None);
        }
        // Whether this client's update is in it (it uploaded before a
        // restart): the vocabulary's names depend on it.
        let me = self
            .site
            .as_deref()
            .or(self.masking.as_ref().map(|m| m.id.as_str()));
        let contributed = me.is_some_and(|id| info.submitted.iter().any(|s| s == id));
        let closed = self.download(
            round,
            len,
            ExchangeCost::default(),
            contributed,
            info.submitted,
            false,
        )?;
        self.sum_of(closed).map(Some)
    }

    fn leave(&mut self, round: u64, why: &str) {
        let said = match self.api.leave(round, why) {
            Ok(_) => format!("told the aggregator that this site leaves round {round}"),
            Err(e) => format!("could not tell the aggregator that this site leaves: {e}"),
        };
        if let Some(note) = &self.on_note {
            note(&said);
        }
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}
