//! A member leaves the open round (`POST /rounds/{r}/leave`): a site that
//! fails mid-federation (its statistics beyond the bound, its training
//! diverged, its user stopped it) says so, and the others proceed as with a
//! dropout instead of waiting for it until a deadline.
//!
//! What leaving changes, in the open round only (the member stays
//! registered and may come back in a later round, as any dropout):
//! - it is no longer in the round's roster, nor expected in the next round;
//! - in a masked round's key phase its key is dropped, and the roster may
//!   be fixed at once without it;
//! - in a masked upload phase whose fixed roster names it (its mask would
//!   never cancel), the attempt restarts at once without it, as the
//!   deadline would restart it.
//!
//! A member that already submitted to the open round cannot leave it: its
//! update is in the sum.

use std::collections::BTreeSet;

use crate::protocol::RoundInfo;

use super::super::error::ServerError;
use super::super::store::Store;
use super::keys::log_advance;
use super::masks::Advance;
use super::round::OpenRound;
use super::{Aggregator, now_unix};

/// The store's record of the members who left the open round (the roster
/// of a round is not stored; a restart takes them out of it again).
const LEFT_KEY: &str = "left";

#[derive(serde::Serialize, serde::Deserialize)]
struct Left {
    round: u64,
    clients: BTreeSet<String>,
}

/// Who left `round`, as stored (nobody if the record is of another round).
pub(super) fn read_left(store: &Store, round: u64) -> Result<BTreeSet<String>, ServerError> {
    let Some(bytes) = store.get_meta(LEFT_KEY)? else {
        return Ok(BTreeSet::new());
    };
    let left: Left = serde_json::from_slice(&bytes)
        .map_err(|e| ServerError::Internal(format!("stored record of who left: {e}")))?;
    Ok(if left.round == round {
        left.clients
    } else {
        BTreeSet::new()
    })
}

/// Longest reason kept for the log.
const MAX_REASON: usize = 1000;

impl Aggregator {
    /// `client` leaves the open round (`round` is its own, the open one or
    /// an earlier one that closed without it): one transaction (its key dropped,
    /// the attempt fixed or restarted without it), then memory.
    pub fn leave(
        &mut self,
        client: &str,
        round: u64,
        reason: &str,
    ) -> Result<RoundInfo, ServerError> {
        self.check_not_complete()?;
        self.check_leave(client, round)?;
        let now = now_unix();
        let rules = self.rules();
        let mut gone = self.open.clone();
        gone.roster.remove(client);
        gone.mask.late.remove(client);
        if let Some(e) = gone.mask.expected.as_mut() {
            e.remove(client);
        }
        let masks = rules.masks_on();
        let had_key =
            masks && gone.mask.frozen.is_none() && gone.mask.keys.remove(client).is_some();
        let step = match restart_without(&gone, client, now) {
            Some(restart) if masks => Some(restart),
            _ => self.mask_step(&gone, now),
        };
        let next = match &step {
            Some(s) => gone.advanced(s),
            None => gone,
        };
        let attempt = self.open.mask.attempt;
        let left = self.left_with(client)?;
        match &step {
            Some(Advance::Restart { next: mask, .. }) => {
                let bytes = mask.to_bytes()?;
                self.store.write(|tx| {
                    tx.restart_attempt(round, &bytes)?;
                    tx.put_meta(LEFT_KEY, &left)
                })?;
                self.acc = None;
            }
            _ => {
                let state = self.open.mask.change_to(&next.mask)?;
                self.store.write(|tx| {
                    if had_key {
                        tx.delete_mask_key(round, attempt, client)?;
                    }
                    if let Some(bytes) = &state {
                        tx.put_meta("mask_state", bytes)?;
                    }
                    tx.put_meta(LEFT_KEY, &left)
                })?;
            }
        }
        let reason: String = reason.chars().take(MAX_REASON).collect();
        tracing::warn!(
            round,
            attempt,
            client,
            "`{client}` left round {round}: {reason}"
        );
        if let Some(s) = &step {
            log_advance(&self.open, s);
        }
        self.open = next;
        Ok(self.open.info(&self.rules(), self.contributors()))
    }

    /// The stored record of who left the open round, with `client`.
    fn left_with(&self, client: &str) -> Result<Vec<u8>, ServerError> {
        let mut left = read_left(&self.store, self.open.number)?;
        left.insert(client.to_string());
        serde_json::to_vec(&Left {
            round: self.open.number,
            clients: left,
        })
        .map_err(|e| ServerError::Internal(format!("left JSON: {e}")))
    }

    /// Only the open round, and only before this member's update is in it.
    fn check_leave(&self, client: &str, round: u64) -> Result<(), ServerError> {
        let open = self.open.number;
        // A site that failed while its round closed without it leaves the
        // round open now: it is gone from the federation, not from one
        // round (else the next round would wait for it to its deadline).
        if round > open {
            return Err(super::unknown_round(round, open));
        }
        if self.open.submitted.iter().any(|c| c == client) {
            return Err(ServerError::Conflict(format!(
                "`{client}` already submitted to round {round}: its update is in the sum and \
                 stays; leave the next round instead"
            )));
        }
        Ok(())
    }
}

/// A masked upload phase whose fixed roster names `client`: the next
/// attempt, without it (everyone else of the roster expected again).
fn restart_without(open: &OpenRound, client: &str, now: u64) -> Option<Advance> {
    let frozen = open.mask.frozen.as_ref()?;
    // Double masking: once the uploads are over, a survivor cannot leave
    // (its update is in) and a dropped member's leave changes nothing.
    if !open.mask.masked || !frozen.contains(client) || open.mask.survivors.is_some() {
        return None;
    }
    let mut expected: BTreeSet<String> = frozen.iter().filter(|c| *c != client).cloned().collect();
    expected.extend(open.mask.late.iter().cloned());
    let next = open.mask.next_attempt(now, expected);
    Some(Advance::Restart {
        next,
        dropped: vec![client.to_string()],
    })
}
