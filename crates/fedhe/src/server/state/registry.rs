//! Registration: the request is verified (names, the membership proof, its
//! issue time, the plan and its roster), then decided — a new client or a
//! rotated token ([`Registration`]) — then written in one transaction with
//! what it changes in the open round, and only then applied in memory.

use crate::protocol::{
    ClientInfo, RegisterRequest, RegisterResponse, hex, parse_hex, parse_hex_array,
    valid_client_id, valid_client_name,
};

use super::super::error::ServerError;
use super::super::store::{StoreError, StoredClient, StoredIdentity, Tx};
use crate::privacy::masks::verify_rotation;

use super::auth::{new_token, token_hash};
use super::keys::log_advance;
use super::masks::Forgot;
use super::round::OpenRound;
use super::session::Session;
use super::{Aggregator, now_unix};

/// How far a registration's issue time may be ahead of the server's clock.
pub(super) const MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;

/// A registered client, in memory.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct ClientRec {
    pub name: String,
    pub joined_unix: u64,
    pub last_round: Option<u64>,
    /// Issue time of the accepted registration (a rotation needs a later one).
    pub issued_ms: u64,
    /// Identity key and the federation key's attestation of it (relayed
    /// for pairwise masks); `None` after the operator's reset.
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
        let forgot = match reg {
            Registration::Rotate { .. } => next.mask.forget_key(reg.id(), now_unix()),
            Registration::New { .. } => Forgot::Nothing,
        };
        if let Forgot::Restart(step) = &forgot {
            next = next.advanced(step);
        }
        let next = next.join(reg.id(), &self.rules());
        self.commit_registration(&reg, &forgot, &next)?;
        self.after_forget(&forgot);
        let id = self.apply_registration(reg, next)?;
        Ok(RegisterResponse { id, token })
    }

    /// Every check of a registration that depends on nothing it changes;
    /// returns the identity key it binds (with its attestation).
    fn verify_registration(&self, req: &RegisterRequest) -> Result<StoredIdentity, ServerError> {
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
        self.check_plan(req.plan.as_deref(), "this registration")?;
        if req.session != self.session_id {
            return Err(ServerError::Unprocessable(format!(
                "this registration was made for aggregator session `{}`, but this aggregator's \
                 session is `{}` (GET /api/v1/health); FedHE clients bind it",
                req.session, self.session_id
            )));
        }
        check_issue_time(req.issued_ms, crate::protocol::now_ms())?;
        let aud = crate::crypto::Audience {
            session: &self.session_id,
            plan: self.plan().map(|(_, fp)| fp.as_str()),
        };
        let identity = verify_proof(session, &aud, req)?;
        if let Some(named) = self.rules().named_roster()
            && !named.contains(&req.id)
        {
            return Err(ServerError::Forbidden(format!(
                "client id `{}` is not on the plan's roster ({})",
                req.id,
                named.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
        if let Some((plan, _)) = self.plan()
            && let Some(pinned) = plan.identities.get(&req.id)
        {
            let got = crate::privacy::masks::fingerprint(&identity.key);
            if !got.eq_ignore_ascii_case(pinned) {
                return Err(ServerError::Forbidden(format!(
                    "the plan pins `{}`'s identity key to {pinned}; this registration's is {got}",
                    req.id
                )));
            }
        }
        Ok(identity)
    }

    /// A new client, or a rotation of a registered one.
    fn decide_registration(
        &self,
        req: RegisterRequest,
        identity: StoredIdentity,
        token_hash: [u8; 32],
    ) -> Result<Registration, ServerError> {
        let identity = Some(identity);
        if let Some(existing) = self.clients.get(&req.id) {
            // Same id: the client lost its token (restart, new machine).
            // Only its registered identity may rotate it (every member holds
            // the federation key); a later issue time than the last
            // registration keeps a recorded request from being replayed.
            self.check_rotation(&req, existing)?;
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
        forgot: &Forgot,
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
                }
            }
            write_forgot(
                tx,
                forgot,
                (round, attempt, reg.id()),
                mask_state.as_deref(),
            )
        })?;
        Ok(())
    }

    /// In memory, after a commit that restarted the attempt: its sum is gone.
    fn after_forget(&mut self, forgot: &Forgot) {
        if let Forgot::Restart(step) = forgot {
            self.acc = None;
            log_advance(&self.open, step);
        }
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
                attestation: c.identity.as_ref().map(|i| hex(&i.proof)),
                issued_ms: c.issued_ms,
            })
            .collect()
    }
}

/// How far a registration's issue time may be from the aggregator's clock.
const SKEW_WORDS: &str = "5 minutes";

/// Refuses an issue time outside the clock-skew allowance, naming the skew.
fn check_issue_time(issued_ms: u64, now: u64) -> Result<(), ServerError> {
    let skew = |d: u64| format!("{:.1} s", d as f64 / 1000.0);
    if issued_ms > now.saturating_add(MAX_CLOCK_SKEW_MS) {
        // A proof from the future could lock its id out of every later
        // registration.
        return Err(ServerError::Unprocessable(format!(
            "the registration was issued {} ahead of the aggregator's clock (issued_ms {issued_ms}); \
             the allowed clock skew is {SKEW_WORDS}: set the site's clock right (NTP)",
            skew(issued_ms - now)
        )));
    }
    if issued_ms.saturating_add(MAX_CLOCK_SKEW_MS) < now {
        return Err(ServerError::Unprocessable(format!(
            "the registration was issued {} behind the aggregator's clock (issued_ms {issued_ms}); \
             the allowed clock skew is {SKEW_WORDS}: set the site's clock right (NTP), or sign \
             a fresh registration",
            skew(now - issued_ms)
        )));
    }
    Ok(())
}

impl Aggregator {
    /// A registration of the registered `existing` client again: signed by
    /// its registered identity (unless the operator reset it), and later
    /// than its last one.
    fn check_rotation(
        &self,
        req: &RegisterRequest,
        existing: &ClientRec,
    ) -> Result<(), ServerError> {
        if let Some(registered) = &existing.identity {
            let aud = crate::crypto::Audience {
                session: &self.session_id,
                plan: self.plan().map(|(_, fp)| fp.as_str()),
            };
            let signed = req
                .rotation
                .as_deref()
                .and_then(parse_hex)
                .is_some_and(|sig| {
                    verify_rotation(&registered.key, &aud, &req.id, req.issued_ms, &sig).is_ok()
                });
            if !signed {
                return Err(ServerError::Forbidden(format!(
                    "client `{}` is registered with identity key {}, and this registration is not \
                     signed by it: the federation key alone cannot take over a member. If `{}` \
                     lost its identity (its client state file), the operator resets it: fedhe \
                     serve --reset-identity {} (or POST /api/v1/clients/{}/reset)",
                    req.id,
                    crate::privacy::masks::fingerprint(&registered.key),
                    req.id,
                    req.id,
                    req.id
                )));
            }
        }
        if req.issued_ms <= existing.issued_ms {
            return Err(ServerError::DuplicateClient(format!(
                "client `{}` is registered; this registration again was issued at {} ms, {:.1} s \
                 before its last one ({} ms): the site's clock went back (or this is a replayed \
                 request); sign a fresh registration once its clock is past the last one",
                req.id,
                req.issued_ms,
                (existing.issued_ms - req.issued_ms) as f64 / 1000.0,
                existing.issued_ms
            )));
        }
        Ok(())
    }

    /// The operator's reset of client `id`: its token stops working and its
    /// identity key is forgotten, so that the id may register again with a
    /// new identity (a site that lost its state file). One transaction.
    pub fn reset_identity(&mut self, id: &str) -> Result<(), ServerError> {
        self.check_not_complete()?;
        let Some(c) = self.clients.get(id) else {
            return Err(ServerError::NotFound(format!(
                "no client `{id}` is registered"
            )));
        };
        let (name, issued_ms) = (c.name.clone(), c.issued_ms);
        let revoked = token_hash(&new_token());
        let mut next = self.open.clone();
        let forgot = next.mask.forget_key(id, now_unix());
        if let Forgot::Restart(step) = &forgot {
            next = next.advanced(step);
        }
        let mask_state = self.open.mask.change_to(&next.mask)?;
        let (round, attempt) = (self.open.number, self.open.mask.attempt);
        self.store.write(|tx| {
            tx.rotate_client(id, &name, &revoked, issued_ms, None)?;
            write_forgot(tx, &forgot, (round, attempt, id), mask_state.as_deref())
        })?;
        self.after_forget(&forgot);
        self.open = next;
        self.auth.rotate(id, revoked);
        if let Some(c) = self.clients.get_mut(id) {
            c.identity = None;
        }
        tracing::warn!(client = %id, "identity reset by the operator: the id may register again");
        Ok(())
    }
}

/// The writes of what a registration or reset did to the open attempt
/// (`attempt` and `client`: the attempt as it was, the member), with the
/// attempt's new stored state.
fn write_forgot(
    tx: &mut Tx<'_>,
    forgot: &Forgot,
    (round, attempt, client): (u64, u32, &str),
    mask_state: Option<&[u8]>,
) -> Result<(), StoreError> {
    match (forgot, mask_state) {
        (Forgot::Key, _) => tx.delete_mask_key(round, attempt, client)?,
        (Forgot::Restart(_), Some(bytes)) => return tx.restart_attempt(round, bytes),
        _ => {}
    }
    match mask_state {
        Some(bytes) => tx.put_meta("mask_state", bytes),
        None => Ok(()),
    }
}

/// Checks the registration's membership proof and the identity key it
/// binds (with the attestation the members will see) against the
/// session's key.
fn verify_proof(
    session: &Session,
    aud: &crate::crypto::Audience<'_>,
    req: &RegisterRequest,
) -> Result<StoredIdentity, ServerError> {
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
    let key = req
        .identity
        .as_deref()
        .ok_or_else(|| {
            ServerError::Malformed(
                "registration needs the client's identity key (`identity`, hex of 32 bytes; \
                 FedHE clients make one)"
                    .into(),
            )
        })
        .and_then(|h| {
            parse_hex_array::<32>(h)
                .ok_or_else(|| ServerError::Malformed("`identity` must be hex of 32 bytes".into()))
        })?;
    session
        .public
        .verify_registration_for(aud, &req.id, &req.name, req.issued_ms, &key, &proof)
        .map_err(|e| ServerError::Unauthorized(e.to_string()))?;
    let attestation = req
        .attestation
        .as_deref()
        .and_then(parse_hex)
        .ok_or_else(|| ServerError::Malformed("`attestation` must be hex (128 digits)".into()))?;
    session
        .public
        .verify_identity(aud, &req.id, &key, &attestation)
        .map_err(|e| ServerError::Unauthorized(format!("the identity attestation: {e}")))?;
    Ok(StoredIdentity {
        key,
        proof: attestation,
    })
}
