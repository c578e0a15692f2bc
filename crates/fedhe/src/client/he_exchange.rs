//! [`HeExchange`]: the encrypted exchange through an aggregator. Encrypt,
//! upload (with pairwise masks: per attempt, after the key phase), wait for
//! the round to close, download the sum and decrypt it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::crypto::PublicKeyFile;
use crate::crypto::sum_tag::MAX_TAG_ATTEMPTS;
use crate::crypto::{self, Accumulator, CryptoError, EncryptedUpdate, Masks, SecretKey, TagScope};
use crate::privacy::secagg::{SecAggRound, double_masks, seal_shares};
use crate::protocol::{ErrorCode, MaskPhase, RoundInfo, RoundState};

use super::api::AggregatorClient;
use super::error::{LoopError, SumError};
use super::exchange::{Exchange, ExchangeCost, NoteNotifier, RoundMean, RoundSum, WaitNotifier};
use super::ledger::LedgerError;
use super::limbs::limb_bits_for;
use super::masking::{Agreed, Identities, KeyPhase, Masker, Masking};
use super::secagg::{Step, shares_upload};
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
    /// The plan every update's sum tag is bound to (from the client's
    /// plan fingerprint): with it, updates carry a tag and every sum is
    /// checked before it is used (see [`crypto::sum_tag`]).
    pub tag_plan: Option<[u8; 16]>,
}

/// Downloads of a sum that fails its check before the site gives up.
pub const SUM_TRIES: u32 = 3;

/// What a sum download needs, kept to download it again.
#[derive(Clone)]
struct SumRequest {
    round: u64,
    /// Values per update, the tag's slots included.
    len: usize,
    contributed: bool,
    /// The attempt this client's update was accepted in, if it knows.
    attempt: Option<u32>,
    masked: bool,
}

/// A closed round's sum as downloaded, before it is decrypted.
struct Closed {
    req: SumRequest,
    sum: Accumulator,
    /// Contributors the aggregator announced with the sum.
    announced: u32,
    counted: Vec<String>,
    cost: ExchangeCost,
}

/// A decrypted sum, checked: summed integers (the tag's slots left off)
/// and the summed weight slot.
struct Opened {
    values: Vec<i64>,
    weight: i64,
    holds: u32,
    closed: Closed,
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
    /// The attempt the last accepted update was made for.
    attempt: Option<u32>,
    /// The attempt whose masks the ledger already binds these values to
    /// (`seal_and_bind`): its upload does not hash them again.
    bound: Option<u32>,
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
        let tag_plan = api
            .plan_fingerprint()
            .and_then(crate::hex::parse_hex_array::<16>);
        HeExchange {
            tag_plan,
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
        let opened = self.open_checked(closed)?;
        if opened.weight <= 0 {
            return Err(CryptoError::ZeroTotalWeight {
                found: opened.weight,
            }
            .into());
        }
        let total_weight = opened.weight as f64;
        let denom = total_weight * f64::from(self.key.scale_bits()).exp2();
        let c = opened.closed;
        Ok(RoundMean {
            values: opened.values.iter().map(|&v| v as f64 / denom).collect(),
            total_weight,
            contributors: opened.holds,
            contributed: c.req.contributed,
            counted: c.counted,
            cost: c.cost,
            masked: c.req.masked,
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
        let update = self.encrypt(round, 0, values, weight, &Masks::none())?;
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
        let req = SumRequest {
            round,
            len: self.tagged_len(values.len()),
            contributed,
            attempt: contributed.then_some(0),
            masked: false,
        };
        self.download(req, cost, info.submitted)
    }

    /// The scope and site id of this client's sum tags (none without a
    /// plan fingerprint or a site id: untagged updates).
    fn tag_scope(&self, round: u64, attempt: u32) -> Option<(TagScope, &str)> {
        let plan = self.tag_plan?;
        let site = self.me()?;
        Some((
            TagScope {
                plan,
                round,
                attempt,
            },
            site,
        ))
    }

    /// This client's id, if known.
    fn me(&self) -> Option<&str> {
        self.site
            .as_deref()
            .or(self.masking.as_ref().map(|m| m.id.as_str()))
    }

    /// Values per update for `len` values: with the tag's slots if tagged.
    fn tagged_len(&self, len: usize) -> usize {
        match self.tag_scope(0, 0) {
            Some(_) => len + self.key.layout().tag_slots(),
            None => len,
        }
    }

    /// One update for `round` and `attempt`: tagged when it can be.
    fn encrypt(
        &self,
        round: u64,
        attempt: u32,
        values: &[f64],
        weight: f64,
        masks: &Masks,
    ) -> Result<EncryptedUpdate, CryptoError> {
        match self.tag_scope(round, attempt) {
            Some((scope, site)) => {
                crypto::encrypt_tagged(&self.key, values, weight, masks, &scope, site)
            }
            None => Ok(
                crypto::encrypt_weighted_masked(&self.key, values, weight, masks)?
                    .bound_to(round, attempt),
            ),
        }
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
            attempt: None,
            bound: None,
        };
        loop {
            if cancel.load(Ordering::Relaxed) {
                return Err(LoopError::Cancelled);
            }
            let info = self.api.round(round, None)?;
            if info.state == RoundState::Closed {
                up.cost.wait_ms = ms(t);
                let contributed = info.submitted.contains(&me.id);
                let req = SumRequest {
                    round,
                    len: self.tagged_len(values.len()),
                    contributed,
                    attempt: up.attempt.filter(|_| contributed),
                    masked: up.masked && contributed,
                };
                return self.download(req, up.cost, info.submitted);
            }
            let ctx = crate::privacy::MaskContext {
                plan: &me.plan,
                round,
                attempt: info.attempt,
            };
            let already_in = info.submitted.contains(&me.id);
            let next = if me.ledger.revealed_in_round(&ctx) {
                // Revealed in an earlier attempt of this round: never
                // upload again in it; wait for it to close.
                self.wait_moved(round, None, cancel)?;
                AfterAttempt::Look
            } else if already_in && !info.masked {
                // Resumed after a restart: our update of this attempt is in.
                up.attempt = Some(info.attempt);
                AfterAttempt::Wait
            } else {
                self.attempt(&mut up, info.attempt, already_in, cancel)?
            };
            if next == AfterAttempt::Wait {
                // Closed, or restarted without a member (then: mask again).
                self.wait_moved(round, Some(info.attempt), cancel)?;
            }
        }
    }

    /// The key phase's masker over this exchange's aggregator.
    fn masker<'a>(&'a mut self, me: &'a Masking, public: &'a PublicKeyFile) -> Masker<'a> {
        Masker {
            api: &self.api,
            me,
            identities: &mut self.identities,
            public,
            timeout: self.round_timeout,
            on_wait: self.on_wait.as_ref(),
        }
    }

    /// One attempt of a masked upload: the key phase, then the upload (and,
    /// double-masked, the consistency and unmask steps). `already_in`: the
    /// aggregator holds this client's update of the attempt (a restart).
    fn attempt(
        &mut self,
        up: &mut MaskedUpload<'_>,
        attempt: u32,
        already_in: bool,
        cancel: &AtomicBool,
    ) -> Result<AfterAttempt, LoopError> {
        let public = self.key.public();
        let phase = self
            .masker(up.me, &public)
            .key_phase(up.round, attempt, cancel)?;
        let agreed = match phase {
            KeyPhase::Ready(agreed) => agreed,
            // Not in this attempt: wait for the round or the attempt to move.
            KeyPhase::Moved => return Ok(AfterAttempt::Wait),
            KeyPhase::Reported { member, reason } => {
                self.note(&format!(
                    "round {} attempt {attempt}: the mask key relayed for {member} is unusable                      ({reason}); reported it, waiting for the round to go on without it",
                    up.round
                ));
                return Ok(AfterAttempt::Wait);
            }
        };
        self.note_new_identities();
        if !agreed.set.masked {
            up.masked = false;
            if already_in {
                up.attempt = Some(attempt);
                return Ok(AfterAttempt::Wait);
            }
            return self.upload_attempt(up, attempt, &Masks::none());
        }
        self.double_masked(up, *agreed, already_in, &public, cancel)
    }

    /// A double-masked attempt from the phase the aggregator is in: seal
    /// and put the shares, upload the masked update, sign the survivor set
    /// (if this client is in it) and reveal.
    fn double_masked(
        &mut self,
        up: &mut MaskedUpload<'_>,
        agreed: Agreed,
        already_in: bool,
        public: &PublicKeyFile,
        cancel: &AtomicBool,
    ) -> Result<AfterAttempt, LoopError> {
        let Agreed {
            mut set,
            secret,
            keys,
        } = agreed;
        let attempt = set.attempt;
        let roster = set.roster.clone();
        let ctx = crate::privacy::MaskContext {
            plan: &up.me.plan,
            round: up.round,
            attempt,
        };
        let round = SecAggRound::new(ctx, &roster, up.me.min_members)?;
        // One roster, threshold and key set per attempt, recorded before
        // anything is masked, sealed, signed or revealed: shown another,
        // this client waits for the attempt to move.
        let under = crate::privacy::secagg::roster_keys_digest(&round, &keys)?;
        let uploads = set.phase == MaskPhase::Upload && !already_in;
        // Uploading now: the values are bound in the same write.
        let sealed = if uploads {
            up.me
                .ledger
                .seal_and_bind(&round.ctx, &under, up.values, up.weight)
        } else {
            up.me.ledger.seal_under(&round.ctx, &under)
        };
        match sealed {
            Ok(()) => up.bound = uploads.then_some(attempt),
            Err(e @ (LedgerError::RosterConflict { .. } | LedgerError::StaleAttempt { .. })) => {
                self.note(&format!("round {} attempt {attempt}: {e}", up.round));
                return Ok(AfterAttempt::Wait);
            }
            Err(e) => return Err(e.into()),
        }
        if already_in {
            up.attempt = Some(attempt);
            up.masked = true;
        } else if uploads && self.upload_double(up, &round, &secret, &keys)? == AfterAttempt::Look {
            return Ok(AfterAttempt::Look);
        }
        let me = up.me;
        loop {
            let in_s = set.survivors.contains(&me.id);
            let step = match set.phase {
                MaskPhase::Keys | MaskPhase::Upload => Step::Done,
                // Not among the survivors: it only waits (its self mask
                // is never revealed; the round closes without it).
                MaskPhase::Consistency | MaskPhase::Unmask if !in_s => {
                    return Ok(AfterAttempt::Wait);
                }
                MaskPhase::Consistency => {
                    up.attempt = Some(attempt);
                    up.masked = true;
                    self.masker(me, public).sign(&round, &set, &secret, &keys)?
                }
                MaskPhase::Unmask => {
                    up.attempt = Some(attempt);
                    up.masked = true;
                    let step = self
                        .masker(me, public)
                        .unmask(&round, &set, &secret, &keys)?;
                    if let Step::Refused(why) = &step {
                        self.note(&format!(
                            "round {} attempt {attempt}: not revealing any share: {why}",
                            up.round
                        ));
                    }
                    return Ok(AfterAttempt::Wait);
                }
            };
            if let Step::Refused(why) = step {
                self.note(&format!(
                    "round {} attempt {attempt}: not signing the survivor set: {why}",
                    up.round
                ));
                return Ok(AfterAttempt::Wait);
            }
            let next = self
                .masker(me, public)
                .next_phase(up.round, attempt, set.phase, cancel)?;
            match next {
                Some(s) => set = s,
                None => return Ok(AfterAttempt::Look),
            }
        }
    }

    /// Double masking, upload phase: the sealed shares, then the update
    /// under the pairwise and self masks. `Look`: the attempt moved on.
    fn upload_double(
        &mut self,
        up: &mut MaskedUpload<'_>,
        round: &SecAggRound<'_>,
        secret: &crate::privacy::AttemptSecret,
        keys: &[(String, [u8; 32])],
    ) -> Result<AfterAttempt, LoopError> {
        let t = Instant::now();
        let masks = double_masks(secret, round, &up.me.id, keys)?;
        let bundles = seal_shares(secret, round, &up.me.id, keys)?;
        up.cost.encrypt_ms += ms(t);
        match self
            .api
            .put_shares(up.round, &shares_upload(round.ctx.attempt, &bundles))
        {
            Ok(_) => {}
            Err(e) => match e.code() {
                Some(ErrorCode::WrongRound | ErrorCode::WrongAttempt) => {
                    return Ok(AfterAttempt::Look);
                }
                // The phase moved on (the next look tells what to do).
                Some(ErrorCode::Conflict) => return Ok(AfterAttempt::Wait),
                _ => return Err(e.into()),
            },
        }
        up.cost.bytes_up += bundles.iter().map(|b| b.bytes.len() as u64).sum::<u64>();
        self.upload_attempt(up, round.ctx.attempt, &masks)
    }

    /// Binds, encrypts under `masks` and uploads this client's update of
    /// `attempt`.
    fn upload_attempt(
        &self,
        up: &mut MaskedUpload<'_>,
        attempt: u32,
        masks: &Masks,
    ) -> Result<AfterAttempt, LoopError> {
        let t = Instant::now();
        up.masked = !masks.is_empty();
        if up.masked {
            // Never two vectors under the same masks (a restart included).
            let ctx = crate::privacy::MaskContext {
                plan: &up.me.plan,
                round: up.round,
                attempt,
            };
            if up.bound != Some(attempt) {
                up.me.ledger.bind(&ctx, up.values, up.weight)?;
            }
        }
        let update = self.encrypt(up.round, attempt, up.values, up.weight, masks)?;
        let bytes = update.to_bytes();
        up.cost.encrypt_ms += ms(t);
        match self.api.upload_for(up.round, Some(attempt), &bytes) {
            Ok(_) => {
                up.cost.bytes_up += bytes.len() as u64;
                up.attempt = Some(attempt);
                Ok(AfterAttempt::Wait)
            }
            Err(e) => match e.code() {
                Some(ErrorCode::DuplicateSubmission) => {
                    up.attempt = Some(attempt);
                    Ok(AfterAttempt::Wait)
                }
                Some(ErrorCode::WrongRound | ErrorCode::WrongAttempt) => Ok(AfterAttempt::Look),
                // Not taken in this attempt (its roster or phase moved on):
                // wait for the attempt or the round to change.
                Some(ErrorCode::Conflict) => Ok(AfterAttempt::Wait),
                _ => Err(e.into()),
            },
        }
    }

    /// Tells `on_note`, if set.
    fn note(&self, what: &str) {
        if let Some(note) = &self.on_note {
            note(what);
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
        req: SumRequest,
        mut cost: ExchangeCost,
        mut counted: Vec<String>,
    ) -> Result<Closed, LoopError> {
        counted.sort();
        let (bytes, announced) = self.api.download_sum(req.round)?;
        cost.bytes_down += bytes.len() as u64;
        let t = Instant::now();
        let sum = Accumulator::from_bytes(&bytes, req.len)?;
        drop(bytes);
        cost.decrypt_ms += ms(t);
        Ok(Closed {
            req,
            sum,
            announced,
            counted,
            cost,
        })
    }

    /// Decrypts a closed round's sum and checks it: the contributors the
    /// aggregator announced, this client's own update among them, and (for
    /// tagged updates) the sum tag. A sum that fails its tag is downloaded
    /// again, up to [`SUM_TRIES`] times in all, then refused.
    fn open_checked(&self, mut closed: Closed) -> Result<Opened, LoopError> {
        let mut tries = 1;
        loop {
            match self.open(closed) {
                Err(OpenError::Tag(c, e)) if tries < SUM_TRIES => {
                    std::thread::sleep(Duration::from_millis(200 * u64::from(tries)));
                    tries += 1;
                    let info = self.api.round(c.req.round, None)?;
                    closed = self.download(c.req, c.cost, info.submitted)?;
                    drop(e);
                }
                Err(OpenError::Tag(c, e)) => {
                    return Err(SumError::Unverified {
                        round: c.req.round,
                        tries,
                        source: e,
                    }
                    .into());
                }
                Err(OpenError::Other(e)) => return Err(e),
                Ok(opened) => return Ok(opened),
            }
        }
    }

    /// One decryption and check of a downloaded sum.
    fn open(&self, closed: Closed) -> Result<Opened, OpenError> {
        let t = Instant::now();
        let holds = closed.sum.contributors();
        if holds != closed.announced {
            return Err(OpenError::Other(
                SumError::Contributors {
                    round: closed.req.round,
                    announced: closed.announced,
                    holds,
                }
                .into(),
            ));
        }
        if closed.req.contributed
            && let Some(me) = self.me()
            && !closed.counted.iter().any(|c| c == me)
        {
            return Err(OpenError::Other(
                SumError::OwnUpdateMissing {
                    round: closed.req.round,
                    site: me.to_string(),
                }
                .into(),
            ));
        }
        let (values, weight) = match self.tag_scope(closed.req.round, 0) {
            Some((scope, _)) => {
                let attempts: Vec<u32> = match closed.req.attempt {
                    Some(a) => vec![a],
                    None if self.masking.is_some() => (0..=MAX_TAG_ATTEMPTS).collect(),
                    None => vec![0],
                };
                match crypto::decrypt_verified(
                    &self.key,
                    &closed.sum,
                    &scope,
                    &attempts,
                    &closed.counted,
                ) {
                    Ok(v) => (v.values, v.weight),
                    Err(e @ CryptoError::SumTagMismatch { .. }) => {
                        return Err(OpenError::Tag(Box::new(closed), e));
                    }
                    Err(e) => return Err(OpenError::Other(e.into())),
                }
            }
            None => {
                let mut ints = crypto::decrypt_integers(&self.key, &closed.sum)
                    .map_err(|e| OpenError::Other(e.into()))?;
                let weight = ints.pop().unwrap_or(0);
                (ints, weight)
            }
        };
        let mut closed = closed;
        closed.cost.decrypt_ms += ms(t);
        Ok(Opened {
            values,
            weight,
            holds,
            closed,
        })
    }

    /// The decrypted, checked sum of a closed round (the weight slot, the
    /// number of weight-1 contributions, and the tag left off).
    fn sum_of(&self, closed: Closed) -> Result<RoundSum, LoopError> {
        let opened = self.open_checked(closed)?;
        if opened.weight <= 0 {
            return Err(CryptoError::ZeroTotalWeight {
                found: opened.weight,
            }
            .into());
        }
        let unit = f64::from(opened.closed.sum.scale_bits()).exp2();
        let values = opened.values.iter().map(|&v| v as f64 / unit).collect();
        let c = opened.closed;
        Ok(RoundSum {
            values,
            contributors: opened.holds,
            contributed: c.req.contributed,
            counted: c.counted,
            cost: c.cost,
            masked: c.req.masked,
        })
    }
}

/// Why one opening of a sum failed: its tag (download it again), or
/// anything else (stop).
enum OpenError {
    Tag(Box<Closed>, CryptoError),
    Other(LoopError),
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
        let contributed = self
            .me()
            .is_some_and(|id| info.submitted.iter().any(|s| s == id));
        let req = SumRequest {
            round,
            len: self.tagged_len(len),
            contributed,
            attempt: None,
            masked: false,
        };
        let closed = self.download(req, ExchangeCost::default(), info.submitted)?;
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
