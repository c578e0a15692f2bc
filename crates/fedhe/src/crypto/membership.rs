//! What the membership key signs. Every holder of the federation's secret
//! key signs with its Ed25519 membership key (see [`keys`](super::keys));
//! the aggregator and every member check with the public half. Each kind of
//! statement has its own domain, so that none can stand in for another:
//!
//! - a **registration proof** ([`SecretKey::sign_registration_for`]): this
//!   client may register as `id` / `name` with this identity key, at this
//!   aggregator (its session id) for this plan, issued at `issued_ms`. Only
//!   the aggregator sees it;
//! - an **identity attestation** ([`SecretKey::attest_identity`]): `id`'s
//!   identity key in this session and plan. The aggregator relays it to the
//!   members (`GET /clients`) so that each checks a partner's identity
//!   without being able to register with what it sees;
//! - a **read signature** ([`SecretKey::sign_read`]): a member without a
//!   token yet (before registering) reads `/plan` or `/status`.
//!
//! Every message starts with its domain and the key's fingerprint; every
//! variable-length part carries its length.

use super::keys::{PublicKeyFile, SecretKey};
use super::{CryptoError, Fingerprint};

/// Where a signed statement counts: the aggregator's session id (random per
/// state folder) and the plan's hex fingerprint (`None` without a plan).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Audience<'a> {
    pub session: &'a str,
    pub plan: Option<&'a str>,
}

impl Audience<'_> {
    fn write(&self, m: &mut Vec<u8>) {
        put(m, self.session.as_bytes());
        match self.plan {
            Some(p) => {
                m.push(1);
                put(m, p.as_bytes());
            }
            None => m.push(0),
        }
    }
}

fn put(m: &mut Vec<u8>, part: &[u8]) {
    m.extend_from_slice(&(part.len() as u64).to_le_bytes());
    m.extend_from_slice(part);
}

fn start(domain: &[u8], fingerprint: Fingerprint, aud: &Audience<'_>) -> Vec<u8> {
    let mut m = domain.to_vec();
    m.extend_from_slice(&fingerprint.0);
    aud.write(&mut m);
    m
}

/// A registration: who, when, which identity, where.
fn registration_message(
    fingerprint: Fingerprint,
    aud: &Audience<'_>,
    id: &str,
    name: &str,
    issued_ms: u64,
    identity: &[u8; 32],
) -> Vec<u8> {
    let mut m = start(b"FedHE register v4\0", fingerprint, aud);
    put(&mut m, id.as_bytes());
    put(&mut m, name.as_bytes());
    m.extend_from_slice(&issued_ms.to_le_bytes());
    m.extend_from_slice(identity);
    m
}

fn identity_message(
    fingerprint: Fingerprint,
    aud: &Audience<'_>,
    id: &str,
    identity: &[u8; 32],
) -> Vec<u8> {
    let mut m = start(b"FedHE identity v1\0", fingerprint, aud);
    put(&mut m, id.as_bytes());
    m.extend_from_slice(identity);
    m
}

fn read_message(fingerprint: Fingerprint, session: &str, issued_ms: u64, path: &str) -> Vec<u8> {
    let aud = Audience {
        session,
        plan: None,
    };
    let mut m = start(b"FedHE read v1\0", fingerprint, &aud);
    m.extend_from_slice(&issued_ms.to_le_bytes());
    put(&mut m, path.as_bytes());
    m
}

impl SecretKey {
    /// Proof for the aggregator that the client registering as `id` /
    /// `name` with `identity` holds this key, for `aud`, issued at
    /// `issued_ms` (ms since the Unix epoch; the aggregator accepts it only
    /// within its clock-skew allowance, and for an id it knows only if later
    /// than the id's last registration).
    pub fn sign_registration_for(
        &self,
        aud: &Audience<'_>,
        id: &str,
        name: &str,
        issued_ms: u64,
        identity: &[u8; 32],
    ) -> [u8; 64] {
        self.member_sign(&registration_message(
            self.fingerprint(),
            aud,
            id,
            name,
            issued_ms,
            identity,
        ))
    }

    /// The attestation that `identity` is `id`'s identity key in `aud`.
    pub fn attest_identity(&self, aud: &Audience<'_>, id: &str, identity: &[u8; 32]) -> [u8; 64] {
        self.member_sign(&identity_message(self.fingerprint(), aud, id, identity))
    }

    /// A member's read of `path` (e.g. `/api/v1/plan`) at aggregator session
    /// `session`, made at `issued_ms`.
    pub fn sign_read(&self, session: &str, issued_ms: u64, path: &str) -> [u8; 64] {
        self.member_sign(&read_message(self.fingerprint(), session, issued_ms, path))
    }
}

impl PublicKeyFile {
    /// Checks a proof made with [`SecretKey::sign_registration_for`].
    pub fn verify_registration_for(
        &self,
        aud: &Audience<'_>,
        id: &str,
        name: &str,
        issued_ms: u64,
        identity: &[u8; 32],
        proof: &[u8],
    ) -> Result<(), CryptoError> {
        let m = registration_message(self.fingerprint(), aud, id, name, issued_ms, identity);
        self.member_verify(&m, proof)
    }

    /// Checks an attestation made with [`SecretKey::attest_identity`].
    pub fn verify_identity(
        &self,
        aud: &Audience<'_>,
        id: &str,
        identity: &[u8; 32],
        attestation: &[u8],
    ) -> Result<(), CryptoError> {
        self.member_verify(
            &identity_message(self.fingerprint(), aud, id, identity),
            attestation,
        )
    }

    /// Checks a read signature made with [`SecretKey::sign_read`].
    pub fn verify_read(
        &self,
        session: &str,
        issued_ms: u64,
        path: &str,
        signature: &[u8],
    ) -> Result<(), CryptoError> {
        self.member_verify(
            &read_message(self.fingerprint(), session, issued_ms, path),
            signature,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::ParamSet;

    #[test]
    fn statements_bind_their_audience_and_stand_in_for_nothing_else() {
        let key = SecretKey::generate(ParamSet::Standard64);
        let public = key.public();
        let id_key = [7u8; 32];
        let aud = Audience {
            session: "s1",
            plan: Some("ab"),
        };
        let proof = key.sign_registration_for(&aud, "a", "A", 1000, &id_key);
        public
            .verify_registration_for(&aud, "a", "A", 1000, &id_key, &proof)
            .unwrap();
        // Another aggregator session, another plan, no plan: refused.
        for other in [
            Audience {
                session: "s2",
                plan: Some("ab"),
            },
            Audience {
                session: "s1",
                plan: Some("cd"),
            },
            Audience {
                session: "s1",
                plan: None,
            },
        ] {
            assert!(
                public
                    .verify_registration_for(&other, "a", "A", 1000, &id_key, &proof)
                    .is_err()
            );
        }
        // The attestation members see is no registration proof, and back.
        let att = key.attest_identity(&aud, "a", &id_key);
        public.verify_identity(&aud, "a", &id_key, &att).unwrap();
        assert!(
            public
                .verify_registration_for(&aud, "a", "A", 1000, &id_key, &att)
                .is_err()
        );
        assert!(public.verify_identity(&aud, "a", &id_key, &proof).is_err());
        let read = key.sign_read("s1", 5, "/api/v1/plan");
        public.verify_read("s1", 5, "/api/v1/plan", &read).unwrap();
        assert!(
            public
                .verify_read("s1", 5, "/api/v1/status", &read)
                .is_err()
        );
        assert!(public.verify_read("s2", 5, "/api/v1/plan", &read).is_err());
    }
}
