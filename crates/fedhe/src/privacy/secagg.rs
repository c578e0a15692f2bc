//! Double masking (Bonawitz et al., "Practical Secure Aggregation for
//! Privacy-Preserving Machine Learning", CCS 2017): the pieces a masked
//! round needs so that dropouts are recovered from shares instead of by
//! re-uploading the same values under a smaller roster.
//!
//! Per round and attempt, over its fixed roster `R` (sorted ids; site `u`
//! holds point `index + 1`) and threshold `t` ([`threshold`]):
//!
//! 1. **Upload.** Site `u` adds to its encoded update the pairwise masks of
//!    `privacy::masks` *and* a self mask `PRG(b_u)`, where the self seed
//!    `b_u` is derived one-way from the attempt's random secret
//!    ([`self_seed`]): fresh per round and attempt, so revealing it reveals
//!    no other round's. With the update, `u` uploads one sealed bundle per
//!    member ([`seal_shares`]): Shamir shares (threshold `t`, GF(2^127 − 1))
//!    of `b_u` and of each of its round's pair seeds `s_uw`, AES-256-GCM
//!    under a key only `u` and the recipient can derive (X25519 of their
//!    announced keys, HKDF with the roster). The aggregator relays bundles
//!    it cannot open.
//! 2. **Consistency.** The aggregator names the survivors `S` (who
//!    uploaded). Each survivor signs `S` with its identity key
//!    ([`sign_survivors`]); a site unmasks only after it has checked at
//!    least `t` survivors' signatures on the very set it was shown
//!    ([`check_survivors`]). Honest sites sign one set per round, and
//!    `t > 2n/3`, so two different sets cannot both gather `t` signatures
//!    unless more than `n/3` members collude.
//! 3. **Unmask.** Each survivor opens the bundles of the other survivors and
//!    reveals ([`reveal`]), for every survivor `w`, its share of `b_w`, and
//!    for every dropped `y`, its share of `s_wy`: per partner the self-seed
//!    share or the pair-seed shares, never both (the set it reveals for is
//!    kept in the client's ledger, which refuses any other set for the
//!    round). The aggregator reconstructs ([`unmask`]) and adds the missing
//!    mask terms to the sum as a plaintext it knows
//!    (`Accumulator::add_masks`).
//!
//! **Why pair seeds are shared per round, not the pair key per roster.**
//! The paper shares each site's long-lived DH secret and reconstructs it for
//! a dropped site. Sharing a key that lives longer than one round is unsafe
//! here: an aggregator that declares `v` dropped in round `r` learns `v`'s
//! key, hence `v`'s pair masks of every earlier round, whose self masks were
//! revealed because `v` survived them — `v`'s earlier updates in the clear.
//! Each site shares instead its round's pair seeds (derived from the
//! round's key and bound to round and attempt): revealing a dropped site's
//! seeds of round `r` reveals nothing of any other round. It costs `n`
//! shares of 32 bytes per recipient, `32·n²` bytes per upload (131 kB at
//! 64 sites, next to 8 MB of ciphertext for 1M values). SecAgg+'s
//! log-size neighbourhoods are not needed: the key caps a federation at 64
//! sites, where the full graph's masks cost one keystream per partner.

use std::collections::{BTreeMap, HashMap};

use rand::SeedableRng;
use ring::aead;
use sha2::{Digest, Sha256};

use super::masks::{AttemptSecret, Identity, MaskContext, MaskError, hkdf_expand, put, signed_by};
use super::shamir::{self, ShamirError, Share};
use crate::crypto::Masks;

/// Failures of the double-masking steps.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecAggError {
    #[error(transparent)]
    Mask(#[from] MaskError),
    #[error("`{id}` is not in the round's roster")]
    NotAMember { id: String },
    #[error(
        "a double-masked round needs a sorted roster of distinct ids with at least the threshold \
         ({threshold}) members; it has {members}"
    )]
    BadRoster { members: usize, threshold: usize },
    #[error("no announced key for `{id}`")]
    NoKey { id: String },
    #[error(
        "the shares `{from}` sent to `{to}` do not open (tampered with, or not for this round and \
         roster)"
    )]
    BadBundle { from: String, to: String },
    #[error(
        "the survivor set is signed by {valid} survivors, {needed} needed; refusing to unmask \
         (the aggregator may be showing different dropout sets to different sites)"
    )]
    NotConsistent { valid: usize, needed: usize },
    #[error("`{id}` uploaded but is not in the survivor set it was shown; refusing to unmask")]
    LeftOut { id: String },
    #[error(
        "{survivors} survivors, fewer than the threshold {needed}: the round cannot be unmasked"
    )]
    TooFewSurvivors { survivors: usize, needed: usize },
    #[error("the self-mask seed of `{owner}`: {source}")]
    SelfSeed { owner: String, source: ShamirError },
    #[error("the pair seed of `{owner}` with `{dropped}`: {source}")]
    PairSeed {
        owner: String,
        dropped: String,
        source: ShamirError,
    },
}

/// The threshold of a round of `members`: at least the plan's quorum and
/// more than two thirds of the roster (so that two survivor sets cannot
/// both be signed by `t` members unless over a third collude).
pub fn threshold(members: usize, min_clients: usize) -> usize {
    min_clients.max(2 * members / 3 + 1)
}

/// One double-masked round: its context, fixed roster and threshold.
#[derive(Debug, Clone, Copy)]
pub struct SecAggRound<'a> {
    pub ctx: MaskContext<'a>,
    /// The fixed roster, sorted, distinct.
    pub roster: &'a [String],
    pub threshold: usize,
}

impl<'a> SecAggRound<'a> {
    /// The round over `roster` (sorted, distinct) with the threshold of
    /// [`threshold`] for the plan's `min_clients`.
    pub fn new(
        ctx: MaskContext<'a>,
        roster: &'a [String],
        min_clients: usize,
    ) -> Result<Self, SecAggError> {
        let t = threshold(roster.len(), min_clients);
        if roster.windows(2).any(|w| w[0] >= w[1]) || roster.len() < t {
            return Err(SecAggError::BadRoster {
                members: roster.len(),
                threshold: t,
            });
        }
        Ok(SecAggRound {
            ctx,
            roster,
            threshold: t,
        })
    }

    /// `id`'s Shamir point (its roster position, from 1).
    pub fn point(&self, id: &str) -> Result<u64, SecAggError> {
        self.roster
            .binary_search_by(|m| m.as_str().cmp(id))
            .map(|i| i as u64 + 1)
            .map_err(|_| SecAggError::NotAMember { id: id.to_string() })
    }

    /// What every bundle key and survivor signature is bound to: the
    /// context, the roster and the threshold.
    fn digest(&self) -> [u8; 32] {
        let mut m = b"FedHE double masks v1\0".to_vec();
        self.ctx.write(&mut m);
        m.extend_from_slice(&(self.threshold as u64).to_le_bytes());
        m.extend_from_slice(&(self.roster.len() as u64).to_le_bytes());
        for id in self.roster {
            put(&mut m, id.as_bytes());
        }
        Sha256::digest(&m).into()
    }

    fn partners_of<'k>(
        &self,
        keys: &'k [(String, [u8; 32])],
    ) -> Result<Vec<&'k (String, [u8; 32])>, SecAggError> {
        self.roster
            .iter()
            .map(|id| {
                keys.iter()
                    .find(|(k, _)| k == id)
                    .ok_or_else(|| SecAggError::NoKey { id: id.clone() })
            })
            .collect()
    }
}

/// Site `u`'s self-mask seed `b_u` of `ctx`: one-way from the attempt's
/// random secret, so revealing it (as the unmask step does) reveals neither
/// the secret, nor the pair seeds, nor any other round's self seed.
pub fn self_seed(secret: &AttemptSecret, ctx: &MaskContext<'_>) -> u128 {
    let bytes = secret.derive(b"FedHE self seed v1", ctx);
    let mut half = [0u8; 16];
    half.copy_from_slice(&bytes[..16]);
    u128::from_le_bytes(half)
}

/// The masks site `id` adds in a double-masked round: the pairwise masks
/// with every partner of the roster (`keys`: the verified announced keys)
/// and its self mask.
pub fn double_masks(
    secret: &AttemptSecret,
    round: &SecAggRound<'_>,
    id: &str,
    keys: &[(String, [u8; 32])],
) -> Result<Masks, SecAggError> {
    round.point(id)?;
    let partners: Vec<(String, [u8; 32])> = round.partners_of(keys)?.into_iter().cloned().collect();
    let seeds = secret.pair_seeds(&round.ctx, id, &partners)?;
    let mut pairs: Vec<(u128, bool)> = seeds
        .iter()
        .map(|(other, s)| (*s, id < other.as_str()))
        .collect();
    pairs.push((self_seed(secret, &round.ctx), true));
    Ok(Masks::new(pairs))
}

/// Shares one site sent another, sealed for the recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedShares {
    pub from: String,
    pub to: String,
    pub bytes: Vec<u8>,
}

/// What a recipient holds from one sender once opened: its share of the
/// sender's self seed and of each of the sender's pair seeds (by partner).
#[derive(Clone, PartialEq, Eq)]
pub struct HeldShares {
    pub from: String,
    pub self_share: Share,
    pub pair: BTreeMap<String, Share>,
}

impl std::fmt::Debug for HeldShares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldShares")
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

/// The AEAD key of bundles from `from` to `to` in `round`.
fn bundle_key(
    secret: &AttemptSecret,
    round: &SecAggRound<'_>,
    other: &(String, [u8; 32]),
    from: &str,
    to: &str,
) -> Result<(aead::LessSafeKey, Vec<u8>), SecAggError> {
    let shared = secret.shared(&other.0, &other.1)?;
    let mut info = round.digest().to_vec();
    put(&mut info, from.as_bytes());
    put(&mut info, to.as_bytes());
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    hkdf_expand(
        b"FedHE share key v1",
        shared.as_bytes(),
        &info,
        &mut key[..],
    );
    // Provably infallible: AES-256-GCM takes any 32-byte key.
    #[allow(clippy::expect_used)]
    let unbound =
        aead::UnboundKey::new(&aead::AES_256_GCM, &key[..]).expect("a 32-byte AES-256-GCM key");
    // The key is used for one message only (its round, roster and
    // direction; a re-sent bundle is the same bytes): a zero nonce is safe.
    Ok((aead::LessSafeKey::new(unbound), info))
}

/// What a site masks and seals under in `round`: a digest of the context,
/// the roster, the threshold and every member's announced key (`keys`, in
/// roster order). The client ledger records it before the first seal and
/// refuses any other in the attempt.
pub fn roster_keys_digest(
    round: &SecAggRound<'_>,
    keys: &[(String, [u8; 32])],
) -> Result<[u8; 32], SecAggError> {
    let mut m = b"FedHE sealed under v1\0".to_vec();
    m.extend_from_slice(&round.digest());
    for (id, key) in round.partners_of(keys)? {
        put(&mut m, id.as_bytes());
        m.extend_from_slice(key);
    }
    Ok(Sha256::digest(&m).into())
}

/// Site `id`'s sealed bundles of `round`, one per roster member (itself
/// included), from its attempt secret and the members' verified keys. The
/// shares' randomness is derived from the secret, so a site restarted mid
/// round seals the same bytes again.
pub fn seal_shares(
    secret: &AttemptSecret,
    round: &SecAggRound<'_>,
    id: &str,
    keys: &[(String, [u8; 32])],
) -> Result<Vec<SealedShares>, SecAggError> {
    round.point(id)?;
    let members = round.partners_of(keys)?;
    let partners: Vec<(String, [u8; 32])> = members.iter().map(|k| (*k).clone()).collect();
    let seeds = secret.pair_seeds(&round.ctx, id, &partners)?;
    // The coins depend on the roster, the threshold and every member's
    // key as well as the secret: no polynomial is ever reused across two
    // rosters (and no AES-GCM key seals two different plaintexts).
    let base = secret.derive(b"FedHE share coins v1", &round.ctx);
    let mut coins = zeroize::Zeroizing::new([0u8; 32]);
    hkdf_expand(
        b"FedHE share coins v2",
        &base[..],
        &roster_keys_digest(round, keys)?,
        &mut coins[..],
    );
    let mut rng = rand_chacha::ChaCha20Rng::from_seed(*coins);
    let points: Vec<u64> = (1..=round.roster.len() as u64).collect();
    let t = round.threshold;
    let own = shamir::split(self_seed(secret, &round.ctx), t, &points, &mut rng);
    let pairs: Vec<Vec<Share>> = seeds
        .iter()
        .map(|(_, s)| shamir::split(*s, t, &points, &mut rng))
        .collect();
    members
        .iter()
        .enumerate()
        .map(|(k, member)| {
            let mut plain = zeroize::Zeroizing::new(Vec::with_capacity(32 * round.roster.len()));
            for share in std::iter::once(&own[k]).chain(pairs.iter().map(|p| &p[k])) {
                plain.extend_from_slice(&share[0].to_le_bytes());
                plain.extend_from_slice(&share[1].to_le_bytes());
            }
            let (key, aad) = bundle_key(secret, round, member, id, &member.0)?;
            let mut bytes = plain.to_vec();
            key.seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key([0; 12]),
                aead::Aad::from(&aad),
                &mut bytes,
            )
            .map_err(|_| SecAggError::BadBundle {
                from: id.to_string(),
                to: member.0.clone(),
            })?;
            Ok(SealedShares {
                from: id.to_string(),
                to: member.0.clone(),
                bytes,
            })
        })
        .collect()
}

/// Opens a bundle sent to `me` (with `sender`: the sender's id and verified
/// announced key). A bundle that does not open, or is for another member,
/// round or roster, is refused.
pub fn open_shares(
    secret: &AttemptSecret,
    round: &SecAggRound<'_>,
    me: &str,
    sender: &(String, [u8; 32]),
    sealed: &SealedShares,
) -> Result<HeldShares, SecAggError> {
    let bad = || SecAggError::BadBundle {
        from: sealed.from.clone(),
        to: sealed.to.clone(),
    };
    if sealed.to != me || sealed.from != sender.0 {
        return Err(bad());
    }
    round.point(me)?;
    round.point(&sealed.from)?;
    let (key, aad) = bundle_key(secret, round, sender, &sealed.from, me)?;
    let mut bytes = zeroize::Zeroizing::new(sealed.bytes.clone());
    let plain = key
        .open_in_place(
            aead::Nonce::assume_unique_for_key([0; 12]),
            aead::Aad::from(&aad),
            &mut bytes,
        )
        .map_err(|_| bad())?;
    if plain.len() != 32 * round.roster.len() {
        return Err(bad());
    }
    let word = |c: &[u8]| {
        let mut b = [0u8; 16];
        b.copy_from_slice(c);
        u128::from_le_bytes(b)
    };
    let mut shares = plain
        .chunks_exact(32)
        .map(|c| [word(&c[..16]), word(&c[16..])]);
    let self_share = shares.next().ok_or_else(bad)?;
    let pair = round
        .roster
        .iter()
        .filter(|m| **m != sealed.from)
        .cloned()
        .zip(shares)
        .collect();
    Ok(HeldShares {
        from: sealed.from.clone(),
        self_share,
        pair,
    })
}

fn survivors_message(round: &SecAggRound<'_>, signer: &str, survivors: &[String]) -> Vec<u8> {
    let mut m = b"FedHE survivors v1\0".to_vec();
    m.extend_from_slice(&round.digest());
    put(&mut m, signer.as_bytes());
    m.extend_from_slice(&(survivors.len() as u64).to_le_bytes());
    for s in survivors {
        put(&mut m, s.as_bytes());
    }
    m
}

/// `id`'s signature of the survivor set it was shown (sorted ids).
pub fn sign_survivors(
    identity: &Identity,
    round: &SecAggRound<'_>,
    id: &str,
    survivors: &[String],
) -> [u8; 64] {
    identity.sign(&survivors_message(round, id, survivors))
}

/// Whether `signer`'s identity key `identity` signed `survivors` for
/// `round` (the aggregator's check of one signature as it comes in; a site
/// checks the whole set with [`check_survivors`]).
pub fn verify_survivors(
    round: &SecAggRound<'_>,
    identity: &[u8; 32],
    signer: &str,
    survivors: &[String],
    signature: &[u8; 64],
) -> bool {
    signed_by(
        identity,
        &survivors_message(round, signer, survivors),
        signature,
    )
}

/// The consistency check before `me` unmasks: the survivor set is a sorted
/// subset of the roster, holds `me`, holds at least `t` members, and at
/// least `t` distinct survivors signed this very set with their verified
/// identity keys (`identities`, by id).
pub fn check_survivors(
    round: &SecAggRound<'_>,
    me: &str,
    identities: &BTreeMap<String, [u8; 32]>,
    survivors: &[String],
    signatures: &[(String, [u8; 64])],
) -> Result<(), SecAggError> {
    if survivors.windows(2).any(|w| w[0] >= w[1]) {
        return Err(SecAggError::BadRoster {
            members: survivors.len(),
            threshold: round.threshold,
        });
    }
    for s in survivors {
        round.point(s)?;
    }
    if !survivors.iter().any(|s| s == me) {
        return Err(SecAggError::LeftOut { id: me.to_string() });
    }
    if survivors.len() < round.threshold {
        return Err(SecAggError::TooFewSurvivors {
            survivors: survivors.len(),
            needed: round.threshold,
        });
    }
    let mut valid = std::collections::BTreeSet::new();
    for (signer, signature) in signatures {
        let Some(identity) = identities.get(signer) else {
            continue;
        };
        if survivors.contains(signer)
            && signed_by(
                identity,
                &survivors_message(round, signer, survivors),
                signature,
            )
        {
            valid.insert(signer.as_str());
        }
    }
    if valid.len() < round.threshold {
        return Err(SecAggError::NotConsistent {
            valid: valid.len(),
            needed: round.threshold,
        });
    }
    Ok(())
}

/// What one survivor reveals in the unmask step.
#[derive(Clone, PartialEq, Eq)]
pub struct Reveal {
    pub from: String,
    /// Its share of each survivor's self seed.
    pub self_shares: BTreeMap<String, Share>,
    /// Its share of the pair seed of each (survivor, dropped member).
    pub pair_shares: BTreeMap<(String, String), Share>,
}

impl std::fmt::Debug for Reveal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reveal")
            .field("from", &self.from)
            .field("self_shares", &self.self_shares.len())
            .field("pair_shares", &self.pair_shares.len())
            .finish()
    }
}

/// `me`'s reveal for the checked survivor set: for each survivor whose
/// bundle it holds, the share of its self seed and the shares of its pair
/// seeds with the dropped members. A dropped member's self-seed share and a
/// survivor's pair seeds with another survivor are never revealed; bundles
/// from dropped members are ignored.
pub fn reveal(
    round: &SecAggRound<'_>,
    me: &str,
    survivors: &[String],
    held: &[HeldShares],
) -> Result<Reveal, SecAggError> {
    round.point(me)?;
    if !survivors.iter().any(|s| s == me) {
        return Err(SecAggError::LeftOut { id: me.to_string() });
    }
    let dropped: Vec<&String> = round
        .roster
        .iter()
        .filter(|m| !survivors.contains(m))
        .collect();
    let mut out = Reveal {
        from: me.to_string(),
        self_shares: BTreeMap::new(),
        pair_shares: BTreeMap::new(),
    };
    for h in held.iter().filter(|h| survivors.contains(&h.from)) {
        out.self_shares.insert(h.from.clone(), h.self_share);
        for y in &dropped {
            if let Some(share) = h.pair.get(*y) {
                out.pair_shares
                    .insert((h.from.clone(), (*y).clone()), *share);
            }
        }
    }
    Ok(out)
}

/// Lagrange weights by holder set, computed once per set.
#[derive(Default)]
struct Weights(HashMap<Vec<u64>, Vec<u128>>);

impl Weights {
    fn combine(&mut self, t: usize, mut shares: Vec<(u64, Share)>) -> Result<u128, ShamirError> {
        if shares.len() < t {
            return Err(ShamirError::TooFewShares {
                have: shares.len(),
                needed: t,
            });
        }
        shares.sort_by_key(|(x, _)| *x);
        shares.truncate(t);
        let xs: Vec<u64> = shares.iter().map(|(x, _)| *x).collect();
        let ys: Vec<Share> = shares.iter().map(|(_, s)| *s).collect();
        if !self.0.contains_key(&xs) {
            let w = shamir::lagrange_at_zero(&xs)?;
            self.0.insert(xs.clone(), w);
        }
        let w = self.0.get(&xs).ok_or(ShamirError::Inconsistent)?;
        shamir::combine_with(w, &ys)
    }
}

/// The aggregator's unmask step: from at least `t` survivors' reveals,
/// the masks to add to the survivors' sum so that only their updates'
/// sum remains — minus every survivor's self mask, and minus each
/// survivor's pair masks with the dropped members (which no partner's
/// update cancelled). Reveals from non-survivors are ignored.
pub fn unmask(
    round: &SecAggRound<'_>,
    survivors: &[String],
    reveals: &[Reveal],
) -> Result<Masks, SecAggError> {
    let t = round.threshold;
    if survivors.len() < t {
        return Err(SecAggError::TooFewSurvivors {
            survivors: survivors.len(),
            needed: t,
        });
    }
    for s in survivors {
        round.point(s)?;
    }
    let mut by: BTreeMap<u64, &Reveal> = BTreeMap::new();
    for r in reveals.iter().filter(|r| survivors.contains(&r.from)) {
        by.insert(round.point(&r.from)?, r);
    }
    let mut weights = Weights::default();
    let mut pairs = Vec::new();
    for w in survivors {
        let shares = by
            .iter()
            .filter_map(|(x, r)| r.self_shares.get(w).map(|s| (*x, *s)))
            .collect();
        let seed = weights
            .combine(t, shares)
            .map_err(|source| SecAggError::SelfSeed {
                owner: w.clone(),
                source,
            })?;
        pairs.push((seed, false));
        for y in round.roster.iter().filter(|m| !survivors.contains(m)) {
            let key = (w.clone(), y.clone());
            let shares = by
                .iter()
                .filter_map(|(x, r)| r.pair_shares.get(&key).map(|s| (*x, *s)))
                .collect();
            let seed = weights
                .combine(t, shares)
                .map_err(|source| SecAggError::PairSeed {
                    owner: w.clone(),
                    dropped: y.clone(),
                    source,
                })?;
            // `w` added this mask when it sorts first: take it out.
            pairs.push((seed, y < w));
        }
    }
    Ok(Masks::new(pairs))
}
