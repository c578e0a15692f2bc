//! A site's side of double masking (`privacy::secagg`) in the order the
//! round must take it: the members it can mask with, and the unmask step —
//! check the signed survivor set, record it in the mask ledger, and only
//! then open the bundles and reveal.

use std::collections::BTreeMap;

use crate::privacy::masks::{AttemptSecret, MaskError};
use crate::privacy::secagg::{
    Reveal, SealedShares, SecAggError, SecAggRound, check_survivors, open_shares, reveal,
};

use super::ledger::{LedgerError, MaskLedger};

/// Failures of a site's unmask step.
#[derive(Debug, thiserror::Error)]
pub enum UnmaskError {
    #[error(transparent)]
    SecAgg(#[from] SecAggError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// The members of a fixed roster this site can mask with, and those it
/// cannot: a member whose announced key is malformed or a low-order point
/// is reported and left out, as a dropout (the round goes on without it;
/// the check depends on the key alone, so every honest site and the
/// aggregator leave out the same members).
pub fn usable_members(
    secret: &AttemptSecret,
    keys: &[(String, [u8; 32])],
) -> (Vec<String>, Vec<MaskError>) {
    let (mut good, mut bad) = (Vec::new(), Vec::new());
    for (id, public) in keys {
        match secret.shared(id, public) {
            Ok(_) => good.push(id.clone()),
            Err(e) => bad.push(e),
        }
    }
    good.sort();
    (good, bad)
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
    ledger.reveal_for(&round.ctx, shown.survivors)?;
    let mut held = Vec::new();
    for b in shown
        .bundles
        .iter()
        .filter(|b| b.to == me && shown.survivors.contains(&b.from))
    {
        let sender = keys
            .iter()
            .find(|(id, _)| *id == b.from)
            .ok_or_else(|| SecAggError::NoKey { id: b.from.clone() })?;
        held.push(open_shares(secret, round, me, sender, b)?);
    }
    Ok(reveal(round, me, shown.survivors, &held)?)
}
