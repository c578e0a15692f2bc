//! The client's side of pairwise masking: announce a signed key for the
//! round's attempt, wait until the attempt's roster is fixed, check every
//! partner's identity (its registration proof, with the federation key) and
//! announced key (its identity's signature), and derive the masks.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::crypto::{Audience, PublicKeyFile};
use crate::privacy::masks::{
    AttemptSecret, Identity, KeyAnnouncement, MaskContext, masks_apply, verify_announcement,
};
use crate::protocol::{
    AnnounceRequest, ClientInfo, ErrorCode, KeyReport, KeySet, MaskPhase, hex, parse_hex,
    parse_hex_array,
};

use super::api::AggregatorClient;
use super::error::{LoopError, RelayError};
use super::exchange::WaitNotifier;
use super::ledger::MaskLedger;
use super::pins::PartnerPins;

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
    /// Every attempt's random secret, with the hash of what it masked.
    pub ledger: MaskLedger,
    /// Partners' identities pinned by the plan and on first use.
    pub pins: PartnerPins,
}

impl Masking {
    /// This client in `plan`'s masked rounds (`plan_fingerprint` in hex). A
    /// masked plan's round needs three members whatever its quorum says,
    /// unless the plan allows smaller unmasked rounds in words
    /// ([`crate::plan::Plan::min_round_members`]).
    pub fn for_plan(
        id: &str,
        identity: &Identity,
        plan: &crate::plan::Plan,
        plan_fingerprint: &str,
        ledger: MaskLedger,
    ) -> Masking {
        Masking {
            ledger,
            id: id.to_string(),
            identity: identity.clone(),
            plan: plan_fingerprint.to_string(),
            min_members: plan.quorum.min_clients.max(plan.min_round_members()),
            named: plan.quorum.roster.clone(),
            pins: PartnerPins::new(plan.identities.clone(), Default::default(), None),
        }
    }
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
        (public, plan, pins): (&PublicKeyFile, &str, &PartnerPins),
        ids: &[&str],
        refresh: bool,
    ) -> Result<Vec<[u8; 32]>, LoopError> {
        let aud = Audience {
            session: api.session().unwrap_or(""),
            plan: Some(plan),
        };
        if refresh || ids.iter().any(|id| !self.verified.contains_key(*id)) {
            for c in api.clients()? {
                if !ids.contains(&c.id.as_str()) {
                    continue;
                }
                if let Some(key) = verify_identity(public, &aud, &c)?
                    && self.verified.get(&c.id).map(|(_, k)| k) != Some(&key)
                {
                    pins.check(&c.id, &key)?;
                    self.verified.insert(c.id.clone(), (c.issued_ms, key));
                    self.new.push((c.id.clone(), key));
                }
            }
        }
        ids.iter()
            .map(|id| {
                self.verified
                    .get(*id)
                    .map(|(_, k)| *k)
                    .ok_or_else(|| RelayError::NoIdentity { id: id.to_string() }.into())
            })
            .collect()
    }
}

/// A relayed client's identity key, if the federation key's attestation
/// binds it to the client's id in `aud` (checked with the membership key,
/// which the aggregator cannot sign with). An identity whose attestation
/// does not verify is an error: the relay was tampered with.
pub fn verify_identity(
    public: &PublicKeyFile,
    aud: &Audience<'_>,
    c: &ClientInfo,
) -> Result<Option<[u8; 32]>, RelayError> {
    let Some(identity) = &c.identity else {
        return Ok(None);
    };
    let key: [u8; 32] = parse_hex_array(identity)
        .ok_or_else(|| bad_relay(&c.id, "identity is not 32 bytes of hex"))?;
    let attestation = c
        .attestation
        .as_deref()
        .and_then(parse_hex)
        .ok_or_else(|| bad_relay(&c.id, "identity without an attestation"))?;
    public
        .verify_identity(aud, &c.id, &key, &attestation)
        .map_err(|_| {
            bad_relay(
                &c.id,
                "its attestation does not bind this identity key (not signed with the \
                 federation key for this aggregator session and plan)",
            )
        })?;
    Ok(Some(key))
}

fn bad_relay(id: &str, what: &'static str) -> RelayError {
    RelayError::BadIdentity {
        id: id.to_string(),
        what,
    }
}

/// How an attempt's key phase ended for this client.
pub(crate) enum KeyPhase {
    /// The roster is fixed with this client in it: mask with these.
    Ready(Box<Agreed>),
    /// The round closed, moved to another attempt, or fixed its roster
    /// without this client: look again.
    Moved,
    /// A partner's relayed key is unusable: this client reported it
    /// (issue 21) and waits for the attempt to move on without it.
    Reported { member: String, reason: String },
}

/// A fixed roster this client takes part in, with what it masks with.
pub(crate) struct Agreed {
    /// The key set as the roster was fixed (or as the client found it
    /// after a restart: its phase may be later than `Upload`).
    pub set: KeySet,
    /// This attempt's secret (from the mask ledger).
    pub secret: AttemptSecret,
    /// Every roster member's verified announced key, this client's own
    /// included, in roster order (empty when the attempt is not masked).
    pub keys: Vec<(String, [u8; 32])>,
}

/// The partners' usable keys, or the first partner whose key is unusable.
type Verified = Result<Vec<(String, [u8; 32])>, Unusable>;

/// A partner whose relayed key this client cannot mask with.
struct Unusable {
    member: String,
    reason: String,
}

/// One client's side of a masked round's key phase: who it is, where it
/// checks its partners, and how long and with whom it waits.
pub(crate) struct Masker<'a> {
    pub api: &'a AggregatorClient,
    pub me: &'a Masking,
    pub identities: &'a mut Identities,
    /// The federation key's public file (checks registration proofs).
    pub public: &'a PublicKeyFile,
    /// Longest wait for the roster to be fixed.
    pub timeout: Duration,
    pub on_wait: Option<&'a WaitNotifier>,
}

impl Masker<'_> {
    /// Announces this client's key for `round`, `attempt`, waits for the
    /// roster to be fixed, checks it and every partner's key.
    pub(crate) fn key_phase(
        &mut self,
        round: u64,
        attempt: u32,
        cancel: &AtomicBool,
    ) -> Result<KeyPhase, LoopError> {
        let ctx = MaskContext {
            plan: &self.me.plan,
            round,
            attempt,
        };
        if let Some(carried) = self.carried(&ctx)? {
            return Ok(carried);
        }
        // The attempt's random secret: this client's, kept in its ledger
        // from before the announcement on.
        let secret = self.me.ledger.secret(&ctx)?;
        let Some(own) = self.announce(&ctx, &secret)? else {
            return Ok(KeyPhase::Moved);
        };
        let Some(set) = self.fixed_roster(round, attempt, cancel)? else {
            return Ok(KeyPhase::Moved);
        };
        if !set.roster.contains(&self.me.id) {
            return Ok(KeyPhase::Moved);
        }
        check_roster(self.me, round, &set)?;
        let keys = if set.masked {
            match self.keys_for(&set, &ctx, &secret)? {
                Ok(keys) => self.with_own(keys, own),
                Err(bad) => return self.report(&set, bad),
            }
        } else {
            Vec::new()
        };
        Ok(KeyPhase::Ready(Box::new(Agreed { set, secret, keys })))
    }

    /// An attempt the aggregator opened with the last round's roster and
    /// keys (every member survived it): no key is announced, no roster
    /// waited for. This client's own key must be the one its ledger holds
    /// for the round the keys come from, and each partner's must carry its
    /// identity's signature for that round; all that is masked is still
    /// derived for `ctx`. `None`: the attempt has a key phase of its own.
    fn carried(&mut self, ctx: &MaskContext<'_>) -> Result<Option<KeyPhase>, LoopError> {
        let set = match self.api.key_set(ctx.round, None) {
            Ok(s) => s,
            Err(e) if e.code() == Some(&ErrorCode::WrongRound) => return Ok(Some(KeyPhase::Moved)),
            Err(e) => return Err(e.into()),
        };
        let Some(from) = set.keys_from.filter(|_| set.attempt == ctx.attempt) else {
            return Ok(None);
        };
        if from.round >= ctx.round {
            return Err(RelayError::CarriedForward {
                round: ctx.round,
                origin: from.round,
            }
            .into());
        }
        if !set.roster.contains(&self.me.id) {
            return Ok(Some(KeyPhase::Moved));
        }
        check_roster(self.me, ctx.round, &set)?;
        let origin = MaskContext {
            plan: ctx.plan,
            round: from.round,
            attempt: from.attempt,
        };
        let own = self.me.ledger.carried(ctx, &origin)?;
        let Some(secret) = own.filter(|s| {
            set.keys
                .iter()
                .any(|k| k.id == self.me.id && parse_hex_array(&k.public) == Some(s.public()))
        }) else {
            // Not this client's key (a new run since): it takes part again
            // once the round restarts without it, with fresh keys.
            tracing::warn!(
                "round {} attempt {}: the carried mask key for `{}` is not one this client \
                 holds; waiting for the attempt to move on",
                ctx.round,
                ctx.attempt,
                self.me.id
            );
            return Ok(Some(KeyPhase::Moved));
        };
        let keys = match self.keys_for(&set, &origin, &secret)? {
            Ok(keys) => self.with_own(keys, secret.public()),
            Err(bad) => return self.report(&set, bad).map(Some),
        };
        Ok(Some(KeyPhase::Ready(Box::new(Agreed {
            set,
            secret,
            keys,
        }))))
    }

    /// The partners' verified keys with this client's own, sorted by id
    /// (the order every member derives its masks in).
    fn with_own(
        &self,
        mut keys: Vec<(String, [u8; 32])>,
        own: [u8; 32],
    ) -> Vec<(String, [u8; 32])> {
        keys.push((self.me.id.clone(), own));
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        keys
    }

    /// Reports a partner's unusable key to the aggregator (which restarts
    /// the attempt without it) instead of quitting.
    fn report(&self, set: &KeySet, bad: Unusable) -> Result<KeyPhase, LoopError> {
        tracing::warn!(
            "round {} attempt {}: the key relayed for `{}` is unusable ({}); reporting it",
            set.round,
            set.attempt,
            bad.member,
            bad.reason
        );
        let req = KeyReport {
            attempt: set.attempt,
            member: bad.member.clone(),
            reason: bad.reason.chars().take(1000).collect(),
        };
        match self.api.report_key(set.round, &req) {
            Ok(_) => {}
            // Refused (already reported, or the attempt moved): wait anyway.
            Err(e) if e.code().is_some() => tracing::debug!("the key report was refused: {e}"),
            Err(e) => return Err(e.into()),
        }
        Ok(KeyPhase::Reported {
            member: bad.member,
            reason: bad.reason,
        })
    }

    /// Announces this client's signed key: its public key, or `None` if the
    /// round closed, moved to another attempt or fixed its roster without us.
    fn announce(
        &self,
        ctx: &MaskContext<'_>,
        secret: &AttemptSecret,
    ) -> Result<Option<[u8; 32]>, LoopError> {
        let mine = self.me.identity.announce(ctx, &self.me.id, secret);
        let req = AnnounceRequest {
            attempt: ctx.attempt,
            public: hex(&mine.public),
            signature: hex(&mine.signature),
        };
        match self.api.announce(ctx.round, &req) {
            Ok(_) => Ok(Some(mine.public)),
            Err(e) => match e.code() {
                Some(ErrorCode::WrongRound | ErrorCode::WrongAttempt | ErrorCode::RosterFixed) => {
                    Ok(None)
                }
                _ => Err(e.into()),
            },
        }
    }

    /// The attempt's key set once its roster is fixed (any phase after the
    /// key phase: a restarted client finds it later); `None` if the round
    /// closed or moved to another attempt first.
    fn fixed_roster(
        &self,
        round: u64,
        attempt: u32,
        cancel: &AtomicBool,
    ) -> Result<Option<KeySet>, LoopError> {
        self.next_phase(round, attempt, MaskPhase::Keys, cancel)
    }

    /// Checks every partner's announced key against its verified identity
    /// and that it makes a shared secret: the partners' keys, or the first
    /// partner whose key is unusable.
    fn keys_for(
        &mut self,
        set: &KeySet,
        ctx: &MaskContext<'_>,
        secret: &AttemptSecret,
    ) -> Result<Verified, LoopError> {
        let partners: Vec<&str> = set
            .roster
            .iter()
            .map(String::as_str)
            .filter(|c| *c != self.me.id)
            .collect();
        // A partner whose key does not verify may have registered again with
        // a new identity: the identities are fetched again once before
        // giving up.
        match self.agree(set, ctx, secret, &partners, false) {
            Ok(Ok(keys)) => Ok(Ok(keys)),
            first => {
                if let Err(e) = &first {
                    tracing::debug!("fetching the identities again: {e}");
                }
                self.agree(set, ctx, secret, &partners, true)
            }
        }
    }

    fn agree(
        &mut self,
        set: &KeySet,
        ctx: &MaskContext<'_>,
        secret: &AttemptSecret,
        partners: &[&str],
        refresh: bool,
    ) -> Result<Verified, LoopError> {
        let identities = self.identities.of(
            self.api,
            (self.public, &self.me.plan, &self.me.pins),
            partners,
            refresh,
        )?;
        let mut agreed = Vec::with_capacity(partners.len());
        for (id, identity) in partners.iter().zip(&identities) {
            match usable_key(set, ctx, secret, id, identity) {
                Ok(public) => agreed.push((id.to_string(), public)),
                Err(reason) => {
                    return Ok(Err(Unusable {
                        member: id.to_string(),
                        reason,
                    }));
                }
            }
        }
        Ok(Ok(agreed))
    }

    /// The verified identity keys of `ids` (this client's own included).
    pub(crate) fn identities_of(
        &mut self,
        ids: &[String],
    ) -> Result<std::collections::BTreeMap<String, [u8; 32]>, LoopError> {
        let others: Vec<&str> = ids
            .iter()
            .map(String::as_str)
            .filter(|c| *c != self.me.id)
            .collect();
        let keys = self.identities.of(
            self.api,
            (self.public, &self.me.plan, &self.me.pins),
            &others,
            false,
        )?;
        let mut out: std::collections::BTreeMap<String, [u8; 32]> =
            others.iter().map(|s| s.to_string()).zip(keys).collect();
        out.insert(self.me.id.clone(), self.me.identity.public());
        Ok(out)
    }
}

/// Partner `id`'s relayed key, if it is usable: relayed, well formed,
/// signed by `id`'s verified `identity` for this attempt, and not a
/// low-order point. Otherwise why not, in words.
fn usable_key(
    set: &KeySet,
    ctx: &MaskContext<'_>,
    secret: &AttemptSecret,
    id: &str,
    identity: &[u8; 32],
) -> Result<[u8; 32], String> {
    let k = set
        .keys
        .iter()
        .find(|k| k.id == id)
        .ok_or_else(|| RelayError::NoMaskKey { id: id.to_string() }.to_string())?;
    let announcement = KeyAnnouncement {
        public: parse_hex_array(&k.public)
            .ok_or_else(|| bad_relay(id, "mask key is not 32 bytes of hex").to_string())?,
        signature: parse_hex_array(&k.signature)
            .ok_or_else(|| bad_relay(id, "signature is not 64 bytes of hex").to_string())?,
    };
    verify_announcement(identity, ctx, id, &announcement).map_err(|e| e.to_string())?;
    secret
        .shared(id, &announcement.public)
        .map_err(|e| e.to_string())?;
    Ok(announcement.public)
}

/// The aggregator does not decide alone whether this update is masked: a
/// plan with masks masks every round of three or more, among distinct
/// members of the plan's roster.
fn check_roster(me: &Masking, round: u64, set: &KeySet) -> Result<(), RelayError> {
    let distinct: std::collections::BTreeSet<&String> = set.roster.iter().collect();
    if distinct.len() != set.roster.len() {
        return Err(RelayError::RepeatedMember {
            round,
            roster: set.roster.clone(),
        });
    }
    if let Some(stranger) = set
        .roster
        .iter()
        .find(|c| !me.named.is_empty() && !me.named.contains(c))
    {
        return Err(RelayError::NotOnRoster {
            round,
            id: stranger.clone(),
        });
    }
    if set.roster.len() < me.min_members {
        return Err(RelayError::BelowQuorum {
            round,
            roster: set.roster.clone(),
            quorum: me.min_members,
        });
    }
    if set.masked != masks_apply(true, set.roster.len()) {
        return Err(RelayError::MaskingMismatch {
            round,
            members: set.roster.len(),
            masked: set.masked,
        });
    }
    Ok(())
}

/// The key phase in the shape of a round's progress (for waiting notices):
/// "submitted" are the members who announced their keys.
pub(crate) fn as_round_info(set: &KeySet) -> crate::protocol::RoundInfo {
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
        mask_phase: Some(set.phase),
        masked: set.masked && set.phase != MaskPhase::Keys,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roster_of(n: usize) -> KeySet {
        KeySet {
            round: 4,
            attempt: 1,
            phase: MaskPhase::Upload,
            masked: n >= 3,
            roster: (0..n).map(|i| format!("s{i}")).collect(),
            missing: Vec::new(),
            keys: Vec::new(),
            min_contributors: n,
            deadline_unix: None,
            threshold: 0,
            survivors: Vec::new(),
            signatures: Vec::new(),
            keys_from: None,
        }
    }

    /// A masked plan's client refuses a roster of two even when the quorum
    /// it was handed says 2 (an aggregator cannot shrink a round to a pair
    /// whose masks hide nothing), unless the plan allows unmasked pairs.
    #[test]
    fn a_masked_round_of_two_is_refused_unless_the_plan_allows_pairs() {
        let mut plan = crate::plan::Plan::for_target(
            &crate::data::Target::Regression { column: "y".into() },
            vec!["x".into()],
            Vec::new(),
        );
        plan.quorum.min_clients = 2;
        let identity = Identity::generate().unwrap();
        let me = Masking::for_plan("s0", &identity, &plan, "ab", MaskLedger::in_memory());
        assert_eq!(me.min_members, 3);
        let err = check_roster(&me, 4, &roster_of(2)).unwrap_err();
        assert!(
            matches!(err, RelayError::BelowQuorum { quorum: 3, .. }),
            "{err}"
        );
        check_roster(&me, 4, &roster_of(3)).unwrap();
        plan.privacy.allow_unmasked_pairs = true;
        let me = Masking::for_plan("s0", &identity, &plan, "ab", MaskLedger::in_memory());
        check_roster(&me, 4, &roster_of(2)).unwrap();
    }
}
