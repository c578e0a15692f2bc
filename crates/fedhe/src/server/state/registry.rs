//! Registration: the request is verified (names, the membership proof, its
//! issue time, the plan and its roster), then decided — a new client or a
//! rotated token ([`Registration`]) — then written in one transaction with
//! what it changes in the open round, and only then applied in memory.

use crate::protocol::{
    ClientInfo, RegisterRequest, RegisterResponse, hex, parse_hex, parse_hex_array,
    valid_client_id, valid_client_name,
};

use super::super::error::ServerError;
use super::super::store::{StoredClient, StoredIdentity};
use super::auth::{new_token, token_hash};
use super::round::OpenRound;
use super::session::Session;
use super::{Aggregator, now_unix};

/// How far a registration's issue time may be ahead of the server's clock.
const MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;

/// A registered client, in memory.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ClientRec {
    pub name: String,
    pub joined_unix: u64,
    pub last_round: Option<u64>,
    /// Issue time of the accepted registration (a rotation needs a later one).
    pub issued_ms: u64,
    /// Identity key and the proof binding it (relayed for pairwise masks).
    pub identity: Option<StoredIdentity>,
}

/// What a verified registration does.
enum Registration {
    /// A new client; `max_len` when its registration fixes the session's.
    New {
        client: StoredClient,
        issued_ms: u64,
        identity: Option<StoredIdentity>,
        max_len: Option<usize>,
    },
    /// A registered client lost its token (restart, new machine): a new
    /// token, name and identity under a later proof.
    Rotate {
        id: String,
        name: String,
        token_hash: [u8; 32],
        issued_ms: u64,
        identity: Option<StoredIdentity>,
    },
}

impl Registration {
    fn id(&self) -> &str {
        match self {
            Registration::New { client, .. } => &client.id,
            Registration::Rotate { id, .. } => id,
        }
    }
}

impl Aggregator {
    pub fn register(&mut self, req: RegisterRequest) -> Result<RegisterResponse, ServerError> {
        self.check_not_complete()?;
        let identity = self.verify_registration(&req)?;
        let token = new_token();
        let reg = self.decide_registration(req, identity, token_hash(&token))?;
        let mut next = self.open.clone();
        let forgot_key =
            matches!(reg, Registration::Rotate { .. }) && next.mask.forget_key(reg.id());
        let next = next.join(reg.id(), &self.rules());
        self.commit_registration(&reg, forgot_key, &next)?;
        let id = self.apply_registration(reg, next)?;
        Ok(RegisterResponse { id, token })
    }

    /// Every check of a registration that depends on nothing it changes;
    /// returns the identity key it binds.
    fn verify_registration(
        &self,
        req: &RegisterRequest,
    ) -> Result<Option<StoredIdentity>, ServerError> {
        if !valid_client_id(&req.id) {
            return Err(ServerError::Malformed(
                "client id must be 1-64 characters from A-Z a-z 0-9 _ . -".into(),
            ));
        }
        if !valid_client_name(&req.name) {
            return Err(ServerError::Malformed(
                "client name must be 1-128 characters without control characters".into(),
            ));
        }
        let session = self.session.as_ref().ok_or_else(|| {
            ServerError::NoSession(
                "registration opens when the operator loads the session's public key \
                 (fedhe serve --public-key, or PUT /api/v1/session): it is needed to check \
                 the registration proof"
                    .into(),
            )
        })?;
        let identity = verify_proof(session, req)?;
        // A proof from the future could lock its id out of every later
        // registration: allow only a little clock skew.
        let latest = crate::protocol::now_ms().saturating_add(MAX_CLOCK_SKEW_MS);
        if req.issued_ms > latest {
            return Err(ServerError::Malformed(format!(
                "the registration was issued {} s in the future (issued_ms {}); check the \
                 client's clock",
                (req.issued_ms - crate::protocol::now_ms()) / 1000,
                req.issued_ms
            )));
        }
        self.check_plan(req.plan.as_deref(), "this registration")?;
        if let Some(named) = self.rules().named_roster()
            && !named.contains(&req.id)
        {
            return Err(ServerError::Forbidden(format!(
                "client id `{}` is not on the plan's roster ({})",
                req.id,
                named.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(identity)
    }

    /// A new client, or a rotation of a registered one.
    fn decide_registration(
        &self,
        req: RegisterRequest,
        identity: Option<StoredIdentity>,
        token_hash: [u8; 32],
    ) -> Result<Registration, ServerError> {
        if let Some(existing) = self.clients.get(&req.id) {
            // Same id, valid proof: the client lost its token (restart,
            // new machine). A later issue time than the last registration
            // keeps a recorded request from being replayed.
            if req.issued_ms <= existing.issued_ms {
                return Err(ServerError::DuplicateClient(format!(
                    "client `{}` is registered; registering it again needs a newer proof than \
                     its last registration (issued_ms > {})",
                    req.id, existing.issued_ms
                )));
            }
            return Ok(Registration::Rotate {
                id: req.id,
                name: req.name,
                token_hash,
                issued_ms: req.issued_ms,
                identity,
            });
        }
        if self.clients.len() >= self.policy.max_registered {
            return Err(ServerError::Conflict(format!(
                "registration is full ({} clients)",
                self.policy.max_registered
            )));
        }
        let session_len = self.session.as_ref().and_then(|s| s.max_len);
        if let Some(n) = req.max_len {
            self.check_max_len(n)?;
            if let Some(m) = session_len
                && n > m
            {
                return Err(ServerError::Conflict(format!(
                    "this client needs vectors of {n} values; the session allows {m}"
                )));
            }
        }
        Ok(Registration::New {
            client: StoredClient {
                id: req.id,
                name: req.name,
                token_hash,
                joined_unix: now_unix(),
                last_round: None,
            },
            issued_ms: req.issued_ms,
            identity,
            max_len: req.max_len.filter(|_| session_len.is_none()),
        })
    }

    /// The registration, the mask key it drops and the open round's new
    /// mask state: one transaction.
    fn commit_registration(
        &mut self,
        reg: &Registration,
        forgot_key: bool,
        next: &OpenRound,
    ) -> Result<(), ServerError> {
        let mask_state = self.open.mask.change_to(&next.mask)?;
        let (round, attempt) = (self.open.number, self.open.mask.attempt);
        let public = self.session.as_ref().map(|s| s.public_bytes.clone());
        let now = now_unix();
        self.store.write(|tx| {
            match reg {
                Registration::New {
                    client,
                    issued_ms,
                    identity,
                    max_len,
                } => {
                    tx.insert_client(client, *issued_ms, identity.as_ref())?;
                    if let (Some(n), Some(pk)) = (max_len, &public) {
                        tx.save_session(pk, Some(*n), now)?;
                    }
                }
                Registration::Rotate {
                    id,
                    name,
                    token_hash,
                    issued_ms,
                    identity,
                } => {
                    tx.rotate_client(id, name, token_hash, *issued_ms, identity.as_ref())?;
                    if forgot_key {
                        tx.delete_mask_key(round, attempt, id)?;
                    }
                }
            }
            if let Some(bytes) = &mask_state {
                tx.put_meta("mask_state", bytes)?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// In memory, after the commit. Returns the client's id.
    fn apply_registration(
        &mut self,
        reg: Registration,
        next: OpenRound,
    ) -> Result<String, ServerError> {
        self.open = next;
        match reg {
            Registration::New {
                client,
                issued_ms,
                identity,
                max_len,
            } => {
                self.auth.issue(client.token_hash, &client.id);
                tracing::info!(client = %client.id, name = %client.name, "client registered");
                let rec = ClientRec {
                    name: client.name,
                    joined_unix: client.joined_unix,
                    last_round: None,
                    issued_ms,
                    identity,
                };
                self.clients.insert(client.id.clone(), rec);
                if let Some(n) = max_len {
                    self.apply_max_len(n)?;
                }
                Ok(client.id)
            }
            Registration::Rotate {
                id,
                name,
                token_hash,
                issued_ms,
                identity,
            } => {
                self.auth.rotate(&id, token_hash);
                if let Some(c) = self.clients.get_mut(&id) {
                    c.name = name;
                    c.issued_ms = issued_ms;
                    c.identity = identity;
                }
                tracing::info!(client = %id, "client registered again: token rotated");
                Ok(id)
            }
        }
    }

    pub fn clients(&self) -> Vec<ClientInfo> {
        self.clients
            .iter()
            .map(|(id, c)| ClientInfo {
                id: id.clone(),
                name: c.name.clone(),
                joined_unix: c.joined_unix,
                last_round: c.last_round,
                identity: c.identity.as_ref().map(|i| hex(&i.key)),
                proof: c.identity.as_ref().map(|i| hex(&i.proof)),
                issued_ms: c.issued_ms,
            })
            .collect()
    }
}

/// Checks the registration's membership proof (and the identity key it
/// binds) against the session's key.
fn verify_proof(
    session: &Session,
    req: &RegisterRequest,
) -> Result<Option<StoredIdentity>, ServerError> {
    if req.proof.is_empty() {
        return Err(ServerError::Unauthorized(
            "registration needs a proof that the client holds the federation's secret key \
             (`proof`: hex Ed25519 signature with the key's membership key; FedHE clients \
             add it)"
                .into(),
        ));
    }
    let proof = parse_hex(&req.proof)
        .ok_or_else(|| ServerError::Malformed("`proof` must be hex (128 digits)".into()))?;
    let identity =
        match &req.identity {
            Some(h) => Some(parse_hex_array::<32>(h).ok_or_else(|| {
                ServerError::Malformed("`identity` must be hex of 32 bytes".into())
            })?),
            None => None,
        };
    session
        .public
        .verify_registration_for(&req.id, &req.name, req.issued_ms, identity.as_ref(), &proof)
        .map_err(|e| ServerError::Unauthorized(e.to_string()))?;
    Ok(identity.map(|key| StoredIdentity { key, proof }))
}
