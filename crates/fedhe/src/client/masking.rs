//! The client's side of pairwise masking: announce a signed key for the
//! round's attempt, wait until the attempt's roster is fixed, check every
//! partner's identity (its registration proof, with the federation key) and
//! announced key (its identity's signature), and derive the masks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::crypto::{Masks, PublicKeyFile};
use crate::privacy::masks::{
    Identity, KeyAnnouncement, MaskContext, masks_apply, verify_announcement,
};
use crate::protocol::{
    AnnounceRequest, ClientInfo, KeySet, MaskPhase, hex, parse_hex, parse_hex_array,
};

use super::api::{AggregatorClient, ClientError};
use super::run::{LoopError, WaitNotifier};

/// Who this client is in masked rounds.
#[derive(Debug, Clone)]
pub struct Masking {
    /// This client's id.
    pub id: String,
    pub identity: Identity,
    /// Hex fingerprint of the plan (bound into every mask key and seed).
    pub plan: String,
    /// Fewest members a round may have (the plan's quorum): a smaller
    /// roster from the aggregator is refused.
    pub min_members: usize,
    /// The plan's named roster (empty: anyone with the key): a roster with
    /// anyone else is refused.
    pub named: Vec<String>,
}

/// Identity keys of the other clients, each checked against its
/// registration proof (cached by registration issue time).
#[derive(Debug, Default)]
pub(crate) struct Identities {
    verified: HashMap<String, (u64, [u8; 32])>,
    /// Identities verified since the last [`take_new`](Self::take_new).
    new: Vec<(String, [u8; 32])>,
}

impl Identities {
    /// Partners whose identity was verified (first seen, or changed) since
    /// the last call, for people to compare out of band.
    pub(crate) fn take_new(&mut self) -> Vec<(String, [u8; 32])> {
        std::mem::take(&mut self.new)
    }

    /// The verified identity of each of `ids`, fetching the client list
    /// again when one is unknown (or when `refresh`: a partner may have
    /// registered again with a new identity). Only `ids` are checked.
    fn of(
        &mut self,
        api: &AggregatorClient,
        public: &PublicKeyFile,
        ids: &[&str],
        refresh: bool,
    ) -> Result<Vec<[u8; 32]>, LoopError> {
        if refresh || ids.iter().any(|id| !self.verified.contains_key(*id)) {
            for c in api.clients()? {
                if !ids.contains(&c.id.as_str()) {
                    continue;
                }
                if let Some(key) = verify_identity(public, &c)?
                    && self.verified.get(&c.id).map(|(_, k)| k) != Some(&key)
                {
                    self.verified.insert(c.id.clone(), (c.issued_ms, key));
                    self.new.push((c.id.clone(), key));
                }
            }
        }
        ids.iter()
            .map(|id| {
                self.verified.get(*id).map(|(_, k)| *k).ok_or_else(|| {
                    LoopError::Other(format!(
                        "client `{id}` has no identity key bound to its registration; cannot \
                         mask with it"
                    ))
                })
            })
            .collect()
    }
}

/// A relayed client's identity key, if its registration proof binds it
/// (checked with the federation key's membership key, which the aggregator
/// cannot sign with). An identity whose proof does not verify is an error:
/// the relay was tampered with.
pub fn verify_identity(
    public: &PublicKeyFile,
    c: &ClientInfo,
) -> Result<Option<[u8; 32]>, LoopError> {
    let Some(identity) = &c.identity else {
        return Ok(None);
    };
    let key: [u8; 32] = parse_hex_array(identity)
        .ok_or_else(|| bad_relay(&c.id, "identity is not 32 bytes of hex"))?;
    let proof = c
        .proof
        .as_deref()
        .and_then(parse_hex)
        .ok_or_else(|| bad_relay(&c.id, "identity without a proof"))?;
    public
        .verify_registration_for(&c.id, &c.name, c.issued_ms, Some(&key), &proof)
        .map_err(|_| {
            bad_relay(
                &c.id,
                "its registration proof does not bind this identity key (not signed with the \
                 federation key)",
            )
        })?;
    Ok(Some(key))
}

fn bad_relay(id: &str, what: &str) -> LoopError {
    LoopError::Other(format!(
        "the aggregator relayed an identity for `{id}` that fails the check: {what}; refusing to \
         mask with it"
    ))
}

/// How an attempt's key phase ended for this client.
pub(crate) enum KeyPhase {
    /// The roster is fixed with this client in it: mask with these.
    Ready { masks: Masks },
    /// The round closed, moved to another attempt, or fixed its roster
    /// without this client: look again.
    Moved,
}

/// Announces this client's key for `round`, `attempt` and waits for the
/// roster to be fixed; derives the masks.
#[allow(clippy::too_many_arguments)]
pub(crate) fn key_phase(
    api: &AggregatorClient,
    me: &Masking,
    identities: &mut Identities,
    public: &PublicKeyFile,
    round: u64,
    attempt: u32,
    timeout: Duration,
    on_wait: Option<&WaitNotifier>,
    cancel: &AtomicBool,
) -> Result<KeyPhase, LoopError> {
    let ctx = MaskContext {
        plan: &me.plan,
        round,
        attempt,
    };
    let mine = me.identity.announce(&ctx, &me.id);
    let req = AnnounceRequest {
        attempt,
        public: hex(&mine.public),
        signature: hex(&mine.signature),
    };
    match api.announce(round, &req) {
        Ok(_) => {}
        // Closed, another attempt, or a roster fixed without us.
        Err(e)
            if matches!(
                e.code(),
                Some("wrong_round" | "wrong_attempt" | "roster_fixed")
            ) =>
        {
            return Ok(KeyPhase::Moved);
        }
        Err(e) => return Err(e.into()),
    }
    let start = Instant::now();
    let mut last_missing = None;
    let set = loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(LoopError::Cancelled);
        }
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            return Err(LoopError::Client(ClientError::Timeout(format!(
                "the mask keys of round {round} were not complete within {} s",
                timeout.as_secs()
            ))));
        }
        let set = match api.key_set(round, Some(left.min(Duration::from_millis(500)))) {
            Ok(s) => s,
            Err(e) if e.code() == Some("wrong_round") => return Ok(KeyPhase::Moved),
            Err(e) => return Err(e.into()),
        };
        if set.attempt != attempt {
            return Ok(KeyPhase::Moved);
        }
        if set.phase == MaskPhase::Upload {
            break set;
        }
        if let Some(notify) = on_wait
            && last_missing.as_ref() != Some(&set.missing)
        {
            notify(&as_round_info(&set));
            last_missing = Some(set.missing.clone());
        }
    };
    if !set.roster.contains(&me.id) {
        return Ok(KeyPhase::Moved);
    }
    // The aggregator does not decide alone whether this update is masked:
    // a plan with masks masks every round of three or more, among distinct
    // members of the plan's roster.
    let distinct: std::collections::BTreeSet<&String> = set.roster.iter().collect();
    if distinct.len() != set.roster.len() {
        return Err(LoopError::Other(format!(
            "the aggregator fixed round {round} with a repeated member ({}): refusing to upload",
            set.roster.join(", ")
        )));
    }
    if let Some(stranger) = set
        .roster
        .iter()
        .find(|c| !me.named.is_empty() && !me.named.contains(c))
    {
        return Err(LoopError::Other(format!(
            "the aggregator fixed round {round} with `{stranger}`, who is not on the plan's \
             roster: refusing to upload"
        )));
    }
    if set.roster.len() < me.min_members {
        return Err(LoopError::Other(format!(
            "the aggregator fixed round {round} with {} members ({}); the plan's quorum is {}: \
             refusing to upload",
            set.roster.len(),
            set.roster.join(", "),
            me.min_members
        )));
    }
    if set.masked != masks_apply(true, set.roster.len()) {
        return Err(LoopError::Other(format!(
            "the aggregator says round {round} with {} members is {}masked; the plan masks every \
             round of three or more: refusing to upload",
            set.roster.len(),
            if set.masked { "" } else { "not " }
        )));
    }
    if !set.masked {
        return Ok(KeyPhase::Ready {
            masks: Masks::none(),
        });
    }
    Ok(KeyPhase::Ready {
        masks: masks_for(api, me, identities, public, &set, &ctx)?,
    })
}

/// The key phase in the shape of a round's progress (for waiting notices):
/// "submitted" are the members who announced their keys.
fn as_round_info(set: &KeySet) -> crate::protocol::RoundInfo {
    crate::protocol::RoundInfo {
        round: set.round,
        state: crate::protocol::RoundState::Open,
        len: None,
        contributors: 0,
        submitted: set.keys.iter().map(|k| k.id.clone()).collect(),
        aggregate_ms: 0.0,
        bytes_accepted: 0,
        roster: set.roster.clone(),
        missing: set.missing.clone(),
        min_contributors: set.min_contributors,
        deadline_unix: set.deadline_unix,
        attempt: set.attempt,
        mask_phase: Some(MaskPhase::Keys),
        masked: false,
    }
}

/// Checks every partner's announced key against its verified identity and
/// derives the pairwise masks.
fn masks_for(
    api: &AggregatorClient,
    me: &Masking,
    identities: &mut Identities,
    public: &PublicKeyFile,
    set: &KeySet,
    ctx: &MaskContext<'_>,
) -> Result<Masks, LoopError> {
    let partners: Vec<&str> = set
        .roster
        .iter()
        .map(String::as_str)
        .filter(|c| *c != me.id)
        .collect();
    // A partner whose key does not verify may have registered again with a
    // new identity: the identities are fetched again once before giving up.
    agree(api, me, identities, public, set, ctx, &partners, false).or_else(|e| {
        tracing::debug!("fetching the identities again: {e}");
        agree(api, me, identities, public, set, ctx, &partners, true)
    })
}

#[allow(clippy::too_many_arguments)]
fn agree(
    api: &AggregatorClient,
    me: &Masking,
    identities: &mut Identities,
    public: &PublicKeyFile,
    set: &KeySet,
    ctx: &MaskContext<'_>,
    partners: &[&str],
    refresh: bool,
) -> Result<Masks, LoopError> {
    let keys = identities.of(api, public, partners, refresh)?;
    let mut agreed = Vec::with_capacity(partners.len());
    for (id, identity) in partners.iter().zip(&keys) {
        let k = set
            .keys
            .iter()
            .find(|k| k.id == *id)
            .ok_or_else(|| LoopError::Other(format!("no mask key relayed for `{id}`")))?;
        let announcement = KeyAnnouncement {
            public: parse_hex_array(&k.public)
                .ok_or_else(|| bad_relay(id, "mask key is not 32 bytes of hex"))?,
            signature: parse_hex_array(&k.signature)
                .ok_or_else(|| bad_relay(id, "signature is not 64 bytes of hex"))?,
        };
        verify_announcement(identity, ctx, id, &announcement)
            .map_err(|e| LoopError::Other(e.to_string()))?;
        agreed.push((id.to_string(), announcement.public));
    }
    me.identity
        .pair_masks(ctx, &me.id, &agreed)
        .map_err(|e| LoopError::Other(e.to_string()))
}
