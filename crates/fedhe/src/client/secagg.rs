//! A site's side of double masking (`privacy::secagg`) in the order the
//! round must take it: open the bundles, check the signed survivor set,
//! record it in the mask ledger, and only then reveal.

use std::collections::BTreeMap;

use crate::privacy::masks::AttemptSecret;
use crate::privacy::secagg::{
    HeldShares, Reveal, SealedShares, SecAggError, SecAggRound, check_survivors, open_shares,
    reveal,
};

use crate::protocol::{ErrorCode, KeySet, MaskPhase, RoundInfo, RoundState, WireShare};

use super::error::LoopError;
use super::ledger::{LedgerError, MaskLedger};
use super::masking::Masker;
use super::wait::{LastSeen, wait_round};

/// Failures of a site's unmask step.
#[derive(Debug, thiserror::Error)]
pub enum UnmaskError {
    #[error(transparent)]
    SecAgg(#[from] SecAggError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// What the unmask step is given by the aggregator.
pub struct Shown<'a> {
    /// The survivor set (sorted ids).
    pub survivors: &'a [String],
    /// The survivors' signatures of it.
    pub signatures: &'a [(String, [u8; 64])],
    /// The bundles addressed to this site.
    pub bundles: &'a [SealedShares],
}

/// Site `me`'s unmask step: checks the signed survivor set against the
/// verified `identities`, records it in the ledger (a second set for the
/// round is refused before anything is revealed), opens the survivors'
/// bundles with their announced `keys`, and reveals.
pub fn unmask_step(
    ledger: &MaskLedger,
    secret: &AttemptSecret,
    round: &SecAggRound<'_>,
    me: &str,
    identities: &BTreeMap<String, [u8; 32]>,
    keys: &[(String, [u8; 32])],
    shown: &Shown<'_>,
) -> Result<Reveal, UnmaskError> {
    check_survivors(round, me, identities, shown.survivors, shown.signatures)?;
    ledger.seal_under(
        &round.ctx,
        &crate::privacy::secagg::roster_keys_digest(round, keys)?,
    )?;
    // Opened before the reveal is recorded (opening reveals nothing): a
    // garbage bundle leaves this site unrevealed.
    let held = open_bundles(secret, round, me, keys, shown.survivors, shown.bundles)?;
    ledger.reveal_for(&round.ctx, shown.survivors)?;
    Ok(reveal(round, me, shown.survivors, &held)?)
}

/// Opens the survivors' bundles addressed to `me`; the first that does
/// not open (or whose sender has no key) fails, naming its sender.
pub fn open_bundles(
    secret: &AttemptSecret,
    round: &SecAggRound<'_>,
    me: &str,
    keys: &[(String, [u8; 32])],
    survivors: &[String],
    bundles: &[SealedShares],
) -> Result<Vec<HeldShares>, SecAggError> {
    bundles
        .iter()
        .filter(|b| b.to == me && survivors.contains(&b.from))
        .map(|b| {
            let sender = keys
                .iter()
                .find(|(id, _)| *id == b.from)
                .ok_or_else(|| SecAggError::NoKey { id: b.from.clone() })?;
            open_shares(secret, round, me, sender, b)
        })
        .collect()
}

/// The sealed bundles of this site for the wire (each named by its
/// recipient).
pub(crate) fn shares_upload(
    attempt: u32,
    bundles: &[SealedShares],
) -> crate::protocol::SharesUpload {
    crate::protocol::SharesUpload {
        attempt,
        bundles: bundles
            .iter()
            .map(|b| crate::protocol::WireBundle {
                id: b.to.clone(),
                bytes: crate::hex::hex(&b.bytes),
            })
            .collect(),
    }
}

/// One share on the wire: hex of its two field elements, 16 little-endian
/// bytes each (as sealed in the bundles).
pub fn share_hex(share: &crate::privacy::shamir::Share) -> String {
    let mut b = [0u8; 32];
    b[..16].copy_from_slice(&share[0].to_le_bytes());
    b[16..].copy_from_slice(&share[1].to_le_bytes());
    crate::hex::hex(&b)
}

/// A reveal for the wire.
pub(crate) fn reveal_upload(attempt: u32, r: &Reveal) -> crate::protocol::RevealUpload {
    let own = r.self_shares.iter().map(|(owner, s)| WireShare {
        owner: owner.clone(),
        dropped: None,
        share: share_hex(s),
    });
    let pairs = r.pair_shares.iter().map(|((owner, dropped), s)| WireShare {
        owner: owner.clone(),
        dropped: Some(dropped.clone()),
        share: share_hex(s),
    });
    crate::protocol::RevealUpload {
        attempt,
        shares: own.chain(pairs).collect(),
    }
}

/// How this site's part in an attempt's consistency or unmask step ended.
pub(crate) enum Step {
    /// Done (signed, or revealed), or nothing to do.
    Done,
    /// Refused by this site's checks, in words: it reveals nothing and
    /// waits for the attempt to move on.
    Refused(String),
}

impl Masker<'_> {
    /// Waits until the attempt leaves `from` (the key set in its next
    /// phase), or `None` once the round closed or moved to another attempt.
    pub(crate) fn next_phase(
        &self,
        round: u64,
        attempt: u32,
        from: MaskPhase,
        cancel: &std::sync::atomic::AtomicBool,
    ) -> Result<Option<KeySet>, LoopError> {
        let mut seen = LastSeen::new();
        // The first look does not wait: the aggregator's long poll waits
        // for the next change, and the awaited one may have come already.
        let mut first = true;
        wait_round(
            self.timeout,
            Some(cancel),
            || match from {
                MaskPhase::Keys => format!(
                    "the mask keys of round {round} were not complete within {} s",
                    self.timeout.as_secs()
                ),
                _ => format!(
                    "round {round} attempt {attempt} stayed in its {from:?} phase for {} s",
                    self.timeout.as_secs()
                ),
            },
            |wait| {
                let wait = (!std::mem::take(&mut first)).then_some(wait);
                let set = match self.api.key_set(round, wait) {
                    Ok(s) => s,
                    Err(e) if e.code() == Some(&ErrorCode::WrongRound) => return Ok(Some(None)),
                    Err(e) => return Err(LoopError::from(e)),
                };
                if set.attempt != attempt {
                    return Ok(Some(None));
                }
                if set.phase != from {
                    return Ok(Some(Some(set)));
                }
                if let Some(notify) = self.on_wait
                    && seen.changed((set.missing.clone(), set.survivors.clone()))
                {
                    notify(&phase_info(&set));
                }
                Ok(None)
            },
        )
    }

    /// Consistency: opens the bundles addressed to this site (a bundle that
    /// does not open: no signature, so the round restarts before Unmask),
    /// records the set in the ledger (one set per round) and signs it. The
    /// signature is deterministic: a restarted site sends the same one.
    pub(crate) fn sign(
        &self,
        round: &SecAggRound<'_>,
        set: &KeySet,
        secret: &AttemptSecret,
        keys: &[(String, [u8; 32])],
    ) -> Result<Step, LoopError> {
        if let Err(e) = check_shown(round, &set.survivors) {
            return Ok(Step::Refused(e.to_string()));
        }
        let bundles = match self.bundles(round, set)? {
            Ok(b) => b,
            Err(step) => return Ok(step),
        };
        if let Err(e) = open_bundles(secret, round, &self.me.id, keys, &set.survivors, &bundles) {
            return Ok(Step::Refused(e.to_string()));
        }
        match self.me.ledger.sign_for(&round.ctx, &set.survivors) {
            Ok(()) => {}
            Err(e @ (LedgerError::SignConflict { .. } | LedgerError::StaleAttempt { .. })) => {
                return Ok(Step::Refused(e.to_string()));
            }
            Err(e) => return Err(e.into()),
        }
        let signature = crate::privacy::secagg::sign_survivors(
            &self.me.identity,
            round,
            &self.me.id,
            &set.survivors,
        );
        let req = crate::protocol::SurvivorSignature {
            attempt: set.attempt,
            id: self.me.id.clone(),
            signature: crate::hex::hex(&signature),
        };
        match self.api.sign_survivors(set.round, &req) {
            Ok(_) => Ok(Step::Done),
            // The phase moved on meanwhile: the next look tells.
            Err(e) if e.code().is_some() => {
                tracing::debug!("the survivor signature was refused: {e}");
                Ok(Step::Done)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The bundles the aggregator relays to this site in `set`'s attempt,
    /// or the step to take instead (the phase moved on, or they are not
    /// for this attempt or not hex).
    fn bundles(
        &self,
        round: &SecAggRound<'_>,
        set: &KeySet,
    ) -> Result<Result<Vec<SealedShares>, Step>, LoopError> {
        let given = match self.api.shares_for(set.round) {
            Ok(g) => g,
            // The phase or the round moved on meanwhile: the next look tells.
            Err(e) if e.code().is_some() => {
                tracing::debug!("the shares were not given: {e}");
                return Ok(Err(Step::Done));
            }
            Err(e) => return Err(e.into()),
        };
        if given.attempt != set.attempt {
            return Ok(Err(Step::Refused(format!(
                "the shares relayed are for attempt {}, not {}",
                given.attempt, set.attempt
            ))));
        }
        let mut bundles = Vec::with_capacity(given.bundles.len());
        for b in &given.bundles {
            match crate::hex::parse_hex_up_to(&b.bytes, 32 * round.roster.len() + 16) {
                Some(bytes) => bundles.push(SealedShares {
                    from: b.id.clone(),
                    to: self.me.id.clone(),
                    bytes,
                }),
                None => {
                    return Ok(Err(Step::Refused(format!(
                        "the shares relayed from `{}` are not hex",
                        b.id
                    ))));
                }
            }
        }
        Ok(Ok(bundles))
    }

    /// Unmask: checks the signed survivor set against the identities this
    /// site verified, fetches the bundles addressed to it, and reveals
    /// (recorded in the ledger first; the same reveal after a restart).
    pub(crate) fn unmask(
        &mut self,
        round: &SecAggRound<'_>,
        set: &KeySet,
        secret: &AttemptSecret,
        keys: &[(String, [u8; 32])],
    ) -> Result<Step, LoopError> {
        let identities = self.identities_of(&set.survivors)?;
        let mut signatures = Vec::with_capacity(set.signatures.len());
        for s in &set.signatures {
            match crate::hex::parse_hex_array::<64>(&s.signature) {
                Some(sig) => signatures.push((s.id.clone(), sig)),
                None => tracing::debug!("a malformed survivor signature of `{}`", s.id),
            }
        }
        let bundles = match self.bundles(round, set)? {
            Ok(b) => b,
            Err(step) => return Ok(step),
        };
        let shown = Shown {
            survivors: &set.survivors,
            signatures: &signatures,
            bundles: &bundles,
        };
        let r = match unmask_step(
            &self.me.ledger,
            secret,
            round,
            &self.me.id,
            &identities,
            keys,
            &shown,
        ) {
            Ok(r) => r,
            Err(e) => return Ok(Step::Refused(e.to_string())),
        };
        match self.api.reveal(set.round, &reveal_upload(set.attempt, &r)) {
            Ok(_) => Ok(Step::Done),
            Err(e) if e.code().is_some() => {
                tracing::debug!("the reveal was refused: {e}");
                Ok(Step::Done)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// The survivor set shown is a sorted subset of the roster with at least
/// the threshold (checked again, with the signatures, before unmasking).
fn check_shown(round: &SecAggRound<'_>, survivors: &[String]) -> Result<(), SecAggError> {
    if survivors.windows(2).any(|w| w[0] >= w[1]) || survivors.len() < round.threshold {
        return Err(SecAggError::TooFewSurvivors {
            survivors: survivors.len(),
            needed: round.threshold,
        });
    }
    survivors.iter().try_for_each(|s| round.point(s).map(drop))
}

/// A double-masked attempt's progress in the shape of a round's (for
/// waiting notices): in the consistency and unmask phases, "roster" is the
/// survivor set and "submitted" those who signed or revealed.
fn phase_info(set: &KeySet) -> RoundInfo {
    let mut info = super::masking::as_round_info(set);
    if matches!(set.phase, MaskPhase::Consistency | MaskPhase::Unmask) {
        info.roster = set.survivors.clone();
        info.submitted = set
            .survivors
            .iter()
            .filter(|s| !set.missing.contains(s))
            .cloned()
            .collect();
    } else if set.phase == MaskPhase::Upload {
        info.submitted = set
            .roster
            .iter()
            .filter(|s| !set.missing.contains(s))
            .cloned()
            .collect();
    }
    info.state = RoundState::Open;
    info
}
