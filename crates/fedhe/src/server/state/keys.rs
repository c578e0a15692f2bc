//! Mask keys: a client's announcement, the key set it reads, and the
//! attempt moving on. The decisions are [`MaskRound`](super::masks::MaskRound)'s;
//! this is the shell that commits them (once per request) and keeps them.

use crate::privacy::masks::{KeyAnnouncement, MaskContext, verify_announcement};
use crate::protocol::{AnnounceRequest, KeySet, parse_hex_array};

use super::super::error::ServerError;
use super::masks::{Advance, Quorum};
use super::round::OpenRound;
use super::{Aggregator, now_unix};

impl Aggregator {
    /// How `open`'s attempt moves on at `now`, if it does (masks on).
    pub(super) fn mask_step(&self, open: &OpenRound, now: u64) -> Option<Advance> {
        let rules = self.rules();
        if !rules.masks_on() {
            return None;
        }
        let cap = self
            .session
            .as_ref()
            .map_or(usize::MAX, |s| s.public.max_clients() as usize);
        let quorum = Quorum {
            roster: &open.roster,
            submitted: &open.submitted,
            min: rules.min_contributors(),
            cap,
        };
        open.mask.advance(now, rules.plan?, &quorum)
    }

    /// Moves the open attempt on (one transaction). Returns whether it moved.
    pub(super) fn advance_masks(&mut self, now: u64) -> Result<bool, ServerError> {
        let Some(step) = self.mask_step(&self.open, now) else {
            return Ok(false);
        };
        let round = self.open.number;
        match &step {
            Advance::Unmask => {
                self.unmask_close(self.open.clone(), now, &|_| Ok(()))?;
                return Ok(true);
            }
            Advance::Freeze(next) | Advance::Phase(next) | Advance::Stuck(next) => {
                let bytes = next.to_bytes()?;
                self.store.write(|tx| tx.put_meta("mask_state", &bytes))?;
            }
            Advance::Restart { next, .. } => {
                let bytes = next.to_bytes()?;
                self.store.write(|tx| tx.restart_attempt(round, &bytes))?;
                self.acc = None;
            }
        }
        log_advance(&self.open, &step);
        self.open = self.open.advanced(&step);
        Ok(true)
    }

    /// A client announces its mask key for the open round's attempt: the
    /// key and the attempt it may complete, one transaction.
    pub fn announce(
        &mut self,
        client: &str,
        round: u64,
        req: AnnounceRequest,
    ) -> Result<KeySet, ServerError> {
        let key = self.check_announcement(round, &req)?;
        if let Some(old) = self.open.mask.keys.get(client) {
            if *old == key {
                return self.key_set(round);
            }
            return Err(ServerError::Conflict(format!(
                "client `{client}` already announced another mask key for round {round}, attempt {}",
                self.open.mask.attempt
            )));
        }
        if self.open.mask.frozen.is_some() {
            return Err(self.came_late(client));
        }
        if self.open.mask.excluded.contains(client) {
            return Err(ServerError::RosterFixed(format!(
                "`{client}`'s mask key was reported unusable in round {round}; it takes part \
                 again from the next round"
            )));
        }
        self.verify_key(client, &key)?;
        let now = now_unix();
        let announced = self.open.announce(client, key.clone(), now);
        let step = self.mask_step(&announced, now);
        let next = match &step {
            Some(step) => announced.advanced(step),
            None => announced.clone(),
        };
        let mask_state = self.open.mask.change_to(&next.mask)?;
        let attempt = self.open.mask.attempt;
        self.store.write(|tx| {
            tx.put_mask_key(round, attempt, client, &key.public, &key.signature)?;
            match &mask_state {
                Some(bytes) => tx.put_meta("mask_state", bytes),
                None => Ok(()),
            }
        })?;
        if let Some(step) = &step {
            log_advance(&announced, step);
        }
        self.open = next;
        self.key_set(round)
    }

    /// The round, attempt and form of an announcement; the key it announces.
    fn check_announcement(
        &self,
        round: u64,
        req: &AnnounceRequest,
    ) -> Result<KeyAnnouncement, ServerError> {
        if !self.rules().masks_on() {
            return Err(ServerError::Conflict(
                "this federation's plan has no pairwise masks (privacy.masks = false)".into(),
            ));
        }
        let open = self.open.number;
        if round != open {
            return Err(if round < open {
                ServerError::WrongRound(format!(
                    "round {round} is closed; the open round is {open}"
                ))
            } else {
                ServerError::NotFound(format!(
                    "round {round} does not exist; the open round is {open}"
                ))
            });
        }
        if req.attempt != self.open.mask.attempt {
            return Err(ServerError::WrongAttempt(format!(
                "round {round} is at attempt {}, not {}",
                self.open.mask.attempt, req.attempt
            )));
        }
        let bad = |what: &str| {
            ServerError::Malformed(format!("`{what}` must be hex of the right length"))
        };
        let public = parse_hex_array(&req.public).ok_or_else(|| bad("public"))?;
        let signature = parse_hex_array(&req.signature).ok_or_else(|| bad("signature"))?;
        check_mask_key(&public)?;
        Ok(KeyAnnouncement { public, signature })
    }

    /// A key announced after the roster was fixed: the client is expected in
    /// the next round (committed), and the announcement is refused.
    fn came_late(&mut self, client: &str) -> ServerError {
        let next = self.open.join(client, &self.rules());
        let saved = self.open.mask.change_to(&next.mask).and_then(|state| {
            if let Some(bytes) = state {
                self.store.write(|tx| tx.put_meta("mask_state", &bytes))?;
            }
            Ok(())
        });
        if let Err(e) = saved {
            return e;
        }
        self.open = next;
        ServerError::RosterFixed(format!(
            "the roster of round {}, attempt {} is fixed; `{client}` can take part in \
             the next round (or attempt)",
            self.open.number, self.open.mask.attempt
        ))
    }

    /// Checks that `client`'s registered identity signed `key`.
    fn verify_key(&self, client: &str, key: &KeyAnnouncement) -> Result<(), ServerError> {
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
        let (_, plan) = self
            .plan()
            .ok_or_else(|| ServerError::Internal("no plan".into()))?;
        let (round, attempt) = (self.open.number, self.open.mask.attempt);
        let ctx = MaskContext {
            plan,
            round,
            attempt,
        };
        verify_announcement(&identity, &ctx, client, key).map_err(|_| {
            ServerError::Unauthorized(format!(
                "this mask key is not signed by the identity key registered for `{client}` \
                 (round {round}, attempt {attempt}); register again if this site's identity \
                 changed"
            ))
        })
    }

    /// The open round's attempt, its roster and the keys announced so far.
    pub fn key_set(&self, round: u64) -> Result<KeySet, ServerError> {
        if round != self.open.number {
            return Err(ServerError::WrongRound(format!(
                "round {round} is not open; the open round is {}",
                self.open.number
            )));
        }
        let rules = self.rules();
        let deadline = rules.plan.and_then(|p| self.open.mask.deadline(p));
        let threshold = rules.plan.map_or(0, |p| self.open.mask.threshold(p));
        Ok(self.open.mask.key_set(
            &self.open.roster,
            self.open.missing(&rules),
            rules.min_contributors(),
            deadline,
            threshold,
        ))
    }
}

/// Refuses an X25519 public key that no honest client announces: a
/// non-canonical encoding (the top bit set, or a coordinate of 2^255 - 19 or
/// more) or a point of small order, with which every partner's shared
/// secret would be a constant the aggregator knows (and every honest
/// partner would refuse to mask, stopping the round).
fn check_mask_key(public: &[u8; 32]) -> Result<(), ServerError> {
    let refuse = |why: &str| {
        Err(ServerError::Unprocessable(format!(
            "this mask key ({}) is not a valid X25519 public key: {why}; nothing was stored",
            crate::protocol::hex(public)
        )))
    };
    if public[31] & 0x80 != 0 {
        return refuse("its top bit is set (a non-canonical encoding)");
    }
    // 2^255 - 19 = ed ff .. ff 7f (little-endian): a coordinate at or above
    // it is another encoding of a smaller one.
    let p_bytes = {
        let mut p = [0xffu8; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        p
    };
    if public.iter().rev().cmp(p_bytes.iter().rev()) != std::cmp::Ordering::Less {
        return refuse("its coordinate is 2^255 - 19 or more (a non-canonical encoding)");
    }
    // A clamped scalar is a multiple of the cofactor 8: it sends exactly
    // the points of order 1, 2, 4 and 8 to the identity (all zeros).
    let probe = x25519_dalek::StaticSecret::from([0x5a; 32]);
    if !probe
        .diffie_hellman(&x25519_dalek::PublicKey::from(*public))
        .was_contributory()
    {
        return refuse("a point of small order (every shared secret with it is known)");
    }
    Ok(())
}

/// Logs an attempt moving on (once its change is decided).
pub(super) fn log_advance(open: &OpenRound, step: &Advance) {
    match step {
        Advance::Freeze(next) => tracing::info!(
            round = open.number,
            attempt = next.attempt,
            masked = next.masked,
            roster = ?next.frozen,
            "mask keys complete: uploads open"
        ),
        Advance::Restart { dropped, .. } => tracing::warn!(
            round = open.number,
            attempt = open.mask.attempt,
            ?dropped,
            "attempt incomplete at its deadline: its sum is discarded and the round restarts"
        ),
        Advance::Phase(next) => tracing::info!(
            round = open.number,
            attempt = next.attempt,
            survivors = ?next.survivors,
            "double masking: the attempt moves to its {:?} phase",
            next.phase()
        ),
        Advance::Unmask => {}
        Advance::Stuck(next) => tracing::error!(
            round = open.number,
            attempt = next.attempt,
            "round {} attempt {} could not be unmasked: {}",
            open.number,
            next.attempt,
            next.stuck.as_deref().unwrap_or("")
        ),
    }
}
