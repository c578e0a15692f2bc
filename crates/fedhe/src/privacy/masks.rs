//! Identity keys and the key agreement behind the pairwise masks.
//!
//! Every client has an Ed25519 **identity key**, made when it first
//! registers and kept in its owner-only state file. Its registration proof
//! (signed with the federation key's membership key) binds the identity to
//! the client's id, so the aggregator can relay identities but cannot forge
//! one: it holds only the public key file.
//!
//! For every round and every attempt of a round, each roster member
//! announces an X25519 public key signed with its identity key over the plan
//! fingerprint, round, attempt, its id and the key ([`KeyAnnouncement`]);
//! the aggregator relays the announcements. Each pair derives a 128-bit seed
//! with X25519 and HKDF-SHA256, bound to the plan, round, attempt and both
//! ids ([`pair_seed`]); the seeds key the masks of [`crate::crypto::masking`].
//!
//! The X25519 secret of an attempt ([`AttemptSecret`]) is random (the
//! operating system's generator), never derived from the identity and the
//! plan: a re-run of the same plan masks with fresh keys. The client keeps
//! it owner-only, with a hash of the values it masks, until the round is
//! over (`client::ledger`), so a client restarted in the middle of an
//! attempt announces the same key again and never masks other values under
//! it.

use ring::rand::SecureRandom;
use ring::signature::{self, KeyPair};

use crate::crypto::Masks;

/// Errors of identity keys and key announcements.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MaskError {
    #[error("identity key: {0}")]
    BadIdentity(String),
    #[error(
        "the mask key announced for `{id}` (round {round}, attempt {attempt}) is not signed by \
         `{id}`'s registered identity key; refusing to mask with it"
    )]
    BadSignature {
        id: String,
        round: u64,
        attempt: u32,
    },
    #[error("the mask key announced for `{id}` is not a valid X25519 public key ({detail})")]
    BadKey { id: String, detail: String },
}

/// What a round's masks are bound to: the plan (hex fingerprint), the round
/// and the attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskContext<'a> {
    pub plan: &'a str,
    pub round: u64,
    pub attempt: u32,
}

impl MaskContext<'_> {
    pub(crate) fn write(&self, m: &mut Vec<u8>) {
        put(m, self.plan.as_bytes());
        m.extend_from_slice(&self.round.to_le_bytes());
        m.extend_from_slice(&self.attempt.to_le_bytes());
    }
}

/// Appends `part` with its length, so that no two sequences of parts give
/// the same bytes.
pub(crate) fn put(m: &mut Vec<u8>, part: &[u8]) {
    m.extend_from_slice(&(part.len() as u64).to_le_bytes());
    m.extend_from_slice(part);
}

/// A client's Ed25519 identity key (its 32-byte seed). A secret: it lives in
/// the owner-only client state file, and is wiped on drop.
#[derive(Clone, PartialEq, Eq, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct Identity {
    seed: [u8; 32],
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("public", &crate::hex::hex(&self.public()))
            .finish_non_exhaustive()
    }
}

/// The X25519 secret of one attempt: 32 random bytes (a secret: redacted
/// in `Debug`, wiped on drop).
#[derive(Clone, PartialEq, Eq, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
pub struct AttemptSecret([u8; 32]);

impl std::fmt::Debug for AttemptSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AttemptSecret(…)")
    }
}

impl AttemptSecret {
    /// A fresh secret from the operating system's generator.
    pub fn generate() -> Result<AttemptSecret, MaskError> {
        crate::privacy::os_bytes()
            .map(AttemptSecret)
            .map_err(|_| MaskError::BadIdentity("the system's random generator failed".into()))
    }

    /// The secret stored as 64 hex digits.
    pub fn from_hex(text: &str) -> Option<AttemptSecret> {
        crate::hex::parse_hex_array(text).map(AttemptSecret)
    }

    /// Hex of the secret (for the owner-only mask ledger only).
    pub fn to_hex(&self) -> String {
        crate::hex::hex(&self.0)
    }

    /// The X25519 public key of this secret (what its announcement carries).
    pub fn public(&self) -> [u8; 32] {
        x25519_dalek::PublicKey::from(&self.x25519()).to_bytes()
    }

    fn x25519(&self) -> x25519_dalek::StaticSecret {
        // StaticSecret (and every SharedSecret) wipes itself on drop.
        let bytes = zeroize::Zeroizing::new(self.0);
        x25519_dalek::StaticSecret::from(*bytes)
    }

    /// The masks client `id` adds in `ctx` with this secret, from its
    /// partners' verified announced keys (`(id, X25519 public key)`; its own
    /// entry is skipped).
    pub fn pair_masks(
        &self,
        ctx: &MaskContext<'_>,
        id: &str,
        partners: &[(String, [u8; 32])],
    ) -> Result<Masks, MaskError> {
        let seeds = self.pair_seeds(ctx, id, partners)?;
        Ok(Masks::new(
            seeds
                .iter()
                .map(|(other, seed)| (*seed, id < other.as_str())),
        ))
    }

    /// The pair seed client `id` shares with each partner in `ctx` (its own
    /// entry skipped), in the partners' order.
    pub fn pair_seeds(
        &self,
        ctx: &MaskContext<'_>,
        id: &str,
        partners: &[(String, [u8; 32])],
    ) -> Result<Vec<(String, u128)>, MaskError> {
        let mut seeds = Vec::with_capacity(partners.len());
        for (other, public) in partners {
            if other == id {
                continue;
            }
            let shared = self.shared(other, public)?;
            seeds.push((other.clone(), pair_seed(shared.as_bytes(), ctx, id, other)));
        }
        Ok(seeds)
    }

    /// The X25519 shared secret with `other`'s announced key (refused if
    /// the key is a low-order point).
    pub(crate) fn shared(
        &self,
        other: &str,
        public: &[u8; 32],
    ) -> Result<x25519_dalek::SharedSecret, MaskError> {
        let shared = self
            .x25519()
            .diffie_hellman(&x25519_dalek::PublicKey::from(*public));
        if !shared.was_contributory() {
            return Err(MaskError::BadKey {
                id: other.to_string(),
                detail: "a low-order point".into(),
            });
        }
        Ok(shared)
    }

    /// A 32-byte value derived from the secret for `label` in `ctx` (the
    /// double masks' self seed and share randomness, `privacy::secagg`):
    /// one-way, so revealing it reveals nothing of the secret or of any
    /// other label's value.
    pub(crate) fn derive(
        &self,
        label: &[u8],
        ctx: &MaskContext<'_>,
    ) -> zeroize::Zeroizing<[u8; 32]> {
        let mut info = Vec::new();
        ctx.write(&mut info);
        let mut out = zeroize::Zeroizing::new([0u8; 32]);
        hkdf_expand(label, &self.0, &info, &mut out[..]);
        out
    }
}

/// A signed X25519 key for one round and attempt, as relayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAnnouncement {
    pub public: [u8; 32],
    pub signature: [u8; 64],
}

impl Identity {
    /// A fresh identity from the operating system's random generator.
    pub fn generate() -> Result<Identity, MaskError> {
        let mut seed = [0u8; 32];
        ring::rand::SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| MaskError::BadIdentity("the system's random generator failed".into()))?;
        Ok(Identity { seed })
    }

    /// The identity stored as hex (64 digits) in a client state file.
    pub fn from_hex(text: &str) -> Result<Identity, MaskError> {
        let seed = crate::hex::parse_hex_array(text)
            .ok_or_else(|| MaskError::BadIdentity("not 64 hex digits".into()))?;
        Ok(Identity { seed })
    }

    /// Hex of the secret seed (for the client state file only).
    pub fn to_hex(&self) -> String {
        crate::hex::hex(&self.seed)
    }

    fn pair(&self) -> signature::Ed25519KeyPair {
        // Provably infallible: ring refuses only seeds that are not 32 bytes.
        #[allow(clippy::expect_used)]
        signature::Ed25519KeyPair::from_seed_unchecked(&self.seed)
            .expect("a 32-byte Ed25519 seed is always accepted")
    }

    /// The public identity key (what the registration binds).
    pub fn public(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.pair().public_key().as_ref());
        out
    }

    /// Signs `message` with this identity (the double masks' survivor
    /// sets, `privacy::secagg`).
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut signature = [0u8; 64];
        signature.copy_from_slice(self.pair().sign(message).as_ref());
        signature
    }

    /// Announces the public key of `secret` for `ctx`, signed with this
    /// identity.
    pub fn announce(
        &self,
        ctx: &MaskContext<'_>,
        id: &str,
        secret: &AttemptSecret,
    ) -> KeyAnnouncement {
        let public = secret.public();
        let mut signature = [0u8; 64];
        signature.copy_from_slice(
            self.pair()
                .sign(&announcement_message(ctx, id, &public))
                .as_ref(),
        );
        KeyAnnouncement { public, signature }
    }
}

impl Identity {
    /// Signs `public` as this identity's mask key for `ctx` (what
    /// [`announce`](Self::announce) does for a secret's own key); for
    /// checking that an aggregator refuses a signed but invalid key.
    pub fn sign_key(&self, ctx: &MaskContext<'_>, id: &str, public: [u8; 32]) -> KeyAnnouncement {
        let mut signature = [0u8; 64];
        signature.copy_from_slice(
            self.pair()
                .sign(&announcement_message(ctx, id, &public))
                .as_ref(),
        );
        KeyAnnouncement { public, signature }
    }

    /// Signs a registration again of `id` in `aud` issued at `issued_ms`:
    /// the aggregator rotates an id's token only with a signature by the
    /// identity key it registered (the shared federation key is not enough).
    pub fn sign_rotation(
        &self,
        aud: &crate::crypto::Audience<'_>,
        id: &str,
        issued_ms: u64,
    ) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(
            self.pair()
                .sign(&rotation_message(aud, id, issued_ms))
                .as_ref(),
        );
        out
    }
}

/// Checks a signature made with [`Identity::sign_rotation`] by `identity`.
pub fn verify_rotation(
    identity: &[u8; 32],
    aud: &crate::crypto::Audience<'_>,
    id: &str,
    issued_ms: u64,
    signature: &[u8],
) -> Result<(), MaskError> {
    signature::UnparsedPublicKey::new(&signature::ED25519, identity)
        .verify(&rotation_message(aud, id, issued_ms), signature)
        .map_err(|_| {
            MaskError::BadIdentity(format!(
                "the token rotation of `{id}` is not signed by its registered identity key"
            ))
        })
}

fn rotation_message(aud: &crate::crypto::Audience<'_>, id: &str, issued_ms: u64) -> Vec<u8> {
    let mut m = b"FedHE rotate v1\0".to_vec();
    put(&mut m, aud.session.as_bytes());
    put(&mut m, aud.plan.unwrap_or("").as_bytes());
    put(&mut m, id.as_bytes());
    m.extend_from_slice(&issued_ms.to_le_bytes());
    m
}

/// A short fingerprint of an identity key for people to compare out of band:
/// the first 16 bytes of its SHA-256, hex in groups of four.
pub fn fingerprint(identity: &[u8; 32]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(identity);
    let hex = crate::hex::hex(&digest[..16]);
    hex.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// Checks that `announcement` for `id` in `ctx` is signed by `identity`.
pub fn verify_announcement(
    identity: &[u8; 32],
    ctx: &MaskContext<'_>,
    id: &str,
    announcement: &KeyAnnouncement,
) -> Result<(), MaskError> {
    let message = announcement_message(ctx, id, &announcement.public);
    signature::UnparsedPublicKey::new(&signature::ED25519, identity)
        .verify(&message, &announcement.signature)
        .map_err(|_| MaskError::BadSignature {
            id: id.to_string(),
            round: ctx.round,
            attempt: ctx.attempt,
        })
}

/// Whether `signature` is `identity`'s over `message`.
pub(crate) fn signed_by(identity: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    signature::UnparsedPublicKey::new(&signature::ED25519, identity)
        .verify(message, signature)
        .is_ok()
}

fn announcement_message(ctx: &MaskContext<'_>, id: &str, public: &[u8; 32]) -> Vec<u8> {
    let mut m = b"FedHE mask key v1\0".to_vec();
    ctx.write(&mut m);
    put(&mut m, id.as_bytes());
    m.extend_from_slice(public);
    m
}

/// The 128-bit seed of the pair (`a`, `b`) from their X25519 shared secret,
/// bound to the plan, round, attempt and both ids (in sorted order, so both
/// sides derive the same seed).
pub fn pair_seed(shared: &[u8; 32], ctx: &MaskContext<'_>, a: &str, b: &str) -> u128 {
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    let mut info = Vec::new();
    ctx.write(&mut info);
    put(&mut info, lo.as_bytes());
    put(&mut info, hi.as_bytes());
    let mut out = zeroize::Zeroizing::new([0u8; 16]);
    hkdf_expand(b"FedHE pair seed v1", shared, &info, &mut out[..]);
    u128::from_le_bytes(*out)
}

/// HKDF-SHA256, kept in `crypto` (the sum tag uses it too).
pub(crate) use crate::crypto::hkdf_expand;

/// Whether a round with `members` contributors is masked: masks protect a
/// client's update only if at least two others are in the round (with one
/// other, the sum minus its own update is the other's update anyway).
pub fn masks_apply(enabled: bool, members: usize) -> bool {
    enabled && members >= 3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_derive_the_same_seed_and_opposite_signs() {
        let ctx = MaskContext {
            plan: "ab",
            round: 3,
            attempt: 1,
        };
        let (a, b) = (Identity::generate().unwrap(), Identity::generate().unwrap());
        let (xa, xb) = (
            AttemptSecret::generate().unwrap(),
            AttemptSecret::generate().unwrap(),
        );
        let (ka, kb) = (a.announce(&ctx, "a", &xa), b.announce(&ctx, "b", &xb));
        verify_announcement(&a.public(), &ctx, "a", &ka).unwrap();
        // Signed by a, claimed for b: refused.
        assert!(verify_announcement(&b.public(), &ctx, "a", &ka).is_err());
        // Another attempt: the signature does not carry over.
        let other = MaskContext { attempt: 2, ..ctx };
        assert!(verify_announcement(&a.public(), &other, "a", &ka).is_err());
        // The same secret announces the same key; a fresh one another key.
        assert_eq!(a.announce(&ctx, "a", &xa), ka);
        let fresh = AttemptSecret::generate().unwrap();
        assert_ne!(a.announce(&ctx, "a", &fresh).public, ka.public);
        assert_eq!(AttemptSecret::from_hex(&xa.to_hex()), Some(xa.clone()));
        let sa = xa.x25519();
        let sb = xb.x25519();
        let shared_a = sa.diffie_hellman(&x25519_dalek::PublicKey::from(kb.public));
        let shared_b = sb.diffie_hellman(&x25519_dalek::PublicKey::from(ka.public));
        assert_eq!(shared_a.as_bytes(), shared_b.as_bytes());
        assert_eq!(
            pair_seed(shared_a.as_bytes(), &ctx, "a", "b"),
            pair_seed(shared_b.as_bytes(), &ctx, "b", "a")
        );
        assert_ne!(
            pair_seed(shared_a.as_bytes(), &ctx, "a", "b"),
            pair_seed(shared_a.as_bytes(), &other, "a", "b")
        );
        assert_eq!(Identity::from_hex(&a.to_hex()).unwrap(), a);
        assert!(!masks_apply(true, 2) && masks_apply(true, 3) && !masks_apply(false, 5));
    }
}
