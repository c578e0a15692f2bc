//! Wire types shared by the aggregator (`server`) and its clients (`client`).
//!
//! The HTTP API is versioned under [`API_PREFIX`]. Control messages are JSON;
//! ciphertexts (encrypted updates, published sums, the public key file) travel
//! as `application/octet-stream` bodies. Every error answer is a JSON
//! [`ErrorBody`] with a matching HTTP status.
//!
//! ## Rounds
//! The aggregator is a generic, durable "sum of encrypted vectors" service.
//! Rounds are numbered from 1. The first accepted update of a round fixes the
//! round's vector length; later updates of another length are refused (422).
//! The session states `max_len`, the longest vector any round may carry
//! (without the weight slot `crypto` appends); it bounds every allocation and
//! gives the 413 body limit. Closing round `r` publishes its sum and opens
//! round `r + 1`.
//!
//! FedHE clients use the rounds as follows (see [`RoundLayout`]): with a
//! plan that discovers categories, rounds 1 and 2 are the encrypted
//! vocabulary (hashed bucket counts, then the names of the buckets counted
//! often enough); then one statistics round (sums, sums of squares, present
//! and category counts, limb-encoded); then training round `k` (the
//! parameters times the site's FedAvg share, and the share).

use serde::{Deserialize, Serialize};

/// Version segment of every route.
pub const API_PREFIX: &str = "/api/v1";

/// HTTP header carrying the contributor count of a downloaded sum.
pub const CONTRIBUTORS_HEADER: &str = "x-fedhe-contributors";

/// HTTP header carrying the plan fingerprint an update was made for; an
/// aggregator serving a plan refuses an update for another (422).
pub const PLAN_HEADER: &str = "x-fedhe-plan";

/// HTTP header carrying the attempt of the round an update was made (and
/// masked) for; with pairwise masks an update for another attempt is
/// refused (409 `wrong_attempt`).
pub const ATTEMPT_HEADER: &str = "x-fedhe-attempt";

/// Longest long-poll a client may ask for on `GET /rounds/{r}?wait_ms=`.
pub const MAX_WAIT_MS: u64 = 30_000;

pub use crate::plan::{RoundLayout, RoundPhase, STANDARDIZATION_ROUNDS};

/// HTTP header a client sends with the aggregator session id it joined
/// (from `GET /health`); an aggregator whose state folder has another
/// session answers 410 `session_reset`: its state was reset.
pub const SESSION_HEADER: &str = "x-fedhe-session";

/// HTTP header of a member's read before it has a token (`GET /plan`, `GET
/// /status`): `<issued_ms>:<hex signature>`, the signature made with
/// [`SecretKey::sign_read`](crate::crypto::SecretKey::sign_read) over the
/// aggregator's session id, the time and the path.
pub const MEMBER_HEADER: &str = "x-fedhe-member";

/// `GET /api/v1/health`: the one public route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResponse {
    pub ok: bool,
    pub api_version: u32,
    /// The aggregator's session id: random, made once per state folder.
    /// Registration proofs and read signatures bind it, so that they count
    /// at this aggregator only; a new state folder has a new one.
    #[serde(default)]
    pub session: String,
    /// Fingerprint of the session's public key, once loaded (a site checks
    /// it holds the same key before it signs anything).
    #[serde(default)]
    pub key: Option<String>,
}

/// `POST /api/v1/clients`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterRequest {
    /// Stable client id: 1–64 characters from `[A-Za-z0-9_.-]`.
    pub id: String,
    /// Display name: 1–128 printable characters.
    pub name: String,
    /// Longest vector (values, without the weight slot) this client will
    /// upload in any round. The first statement fixes the session's `max_len`
    /// if the operator did not; a larger number afterwards is refused (409).
    #[serde(default)]
    pub max_len: Option<usize>,
    /// Proof that the client holds the federation's secret key: hex of
    /// [`SecretKey::sign_registration_for`](crate::crypto::SecretKey::sign_registration_for)
    /// over `id`, `name`, `issued_ms`, `identity`, the aggregator's
    /// `session` and the `plan`. Checked against the session's public key
    /// file; never shown to anyone else.
    #[serde(default)]
    pub proof: String,
    /// When the proof was made (ms since the Unix epoch; signed). It must be
    /// within the aggregator's clock-skew allowance of its clock, and, for
    /// an id that exists, later than the id's last registration, so that a
    /// recorded request cannot be replayed.
    #[serde(default)]
    pub issued_ms: u64,
    /// Fingerprint of the plan this client joins (hex); an aggregator serving
    /// another plan refuses the registration (422).
    #[serde(default)]
    pub plan: Option<String>,
    /// The aggregator session id the proof binds (`GET /health`).
    #[serde(default)]
    pub session: String,
    /// The client's Ed25519 identity key (hex, 32 bytes), bound by `proof`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The federation key's attestation of `identity` for this id, session
    /// and plan (hex, 64 bytes): what the members see (`GET /clients`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<String>,
    /// Registering an id that exists again (a lost token) needs this: a
    /// signature by the id's registered identity key (hex, 64 bytes) over
    /// the session, plan, id and `issued_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<String>,
}

impl RegisterRequest {
    /// A registration as `id` / `name` with `identity`, for `aud`, issued
    /// now: the proof, the attestation the members see, and the rotation
    /// signature that registering the id again needs.
    pub fn signed(
        key: &crate::crypto::SecretKey,
        aud: &crate::crypto::Audience<'_>,
        id: impl Into<String>,
        name: impl Into<String>,
        max_len: Option<usize>,
        identity: &crate::privacy::masks::Identity,
    ) -> Self {
        Self::signed_at(key, aud, id, name, max_len, identity, now_ms())
    }

    /// [`signed`](Self::signed) issued at `issued_ms`.
    pub fn signed_at(
        key: &crate::crypto::SecretKey,
        aud: &crate::crypto::Audience<'_>,
        id: impl Into<String>,
        name: impl Into<String>,
        max_len: Option<usize>,
        identity: &crate::privacy::masks::Identity,
        issued_ms: u64,
    ) -> Self {
        let (id, name) = (id.into(), name.into());
        let public = identity.public();
        let proof = hex(&key.sign_registration_for(aud, &id, &name, issued_ms, &public));
        let attestation = hex(&key.attest_identity(aud, &id, &public));
        let rotation = hex(&identity.sign_rotation(aud, &id, issued_ms));
        Self {
            id,
            name,
            max_len,
            proof,
            issued_ms,
            plan: aud.plan.map(str::to_string),
            session: aud.session.to_string(),
            identity: Some(hex(&public)),
            attestation: Some(attestation),
            rotation: Some(rotation),
        }
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub use crate::hex::{hex, parse_hex, parse_hex_array, parse_hex_up_to};

/// Answer to a registration: the bearer token is shown exactly once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterResponse {
    pub id: String,
    pub token: String,
}

/// One row of `GET /api/v1/clients`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    pub id: String,
    pub name: String,
    /// Registration time, seconds since the Unix epoch.
    pub joined_unix: u64,
    /// Last round this client submitted an update for.
    pub last_round: Option<u64>,
    /// Identity key (hex) with the federation key's attestation of it for
    /// this id, session and plan: every client checks the attestation
    /// before it masks with this client, so the aggregator cannot substitute
    /// an identity. Registration proofs are not shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<String>,
    #[serde(default)]
    pub issued_ms: u64,
}

/// Where a round with pairwise masks is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskPhase {
    /// The attempt's members announce their mask keys.
    Keys,
    /// The attempt's roster is fixed; its members upload their sealed
    /// shares (`PUT /rounds/{r}/shares`), then their masked updates.
    Upload,
    /// Double masking: the uploads are in (or the upload phase's deadline
    /// passed with at least the threshold); the aggregator shows the
    /// survivor set (`KeySet::survivors`) and each survivor signs it
    /// (`PUT /rounds/{r}/survivors`).
    Consistency,
    /// Double masking: the survivor set is signed (`KeySet::signatures`);
    /// each survivor checks the signatures, fetches the bundles addressed
    /// to it (`GET /rounds/{r}/shares`) and reveals
    /// (`PUT /rounds/{r}/reveal`); the aggregator removes the masks and
    /// closes the round.
    Unmask,
}

/// One sealed bundle of Shamir shares (`privacy::secagg::SealedShares`),
/// for the wire: hex of the AES-256-GCM bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireBundle {
    /// The sender (in `GET /rounds/{r}/shares`) or the recipient (in
    /// `PUT /rounds/{r}/shares`).
    pub id: String,
    /// Hex, `32 · roster + 16` bytes.
    pub bytes: String,
}

/// `PUT /api/v1/rounds/{r}/shares` (double masking, upload phase, before
/// the update): one sealed bundle per member of the attempt's fixed roster
/// (this client's own included), each addressed by `WireBundle::id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharesUpload {
    pub attempt: u32,
    pub bundles: Vec<WireBundle>,
}

/// `GET /api/v1/rounds/{r}/shares` (unmask phase): the bundles addressed to
/// the asking member, each named by its sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharesFor {
    pub round: u64,
    pub attempt: u32,
    pub bundles: Vec<WireBundle>,
}

/// `PUT /api/v1/rounds/{r}/survivors` (consistency phase): a survivor's
/// identity-key signature of the survivor set it was shown
/// (`privacy::secagg::sign_survivors`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SurvivorSignature {
    pub attempt: u32,
    /// The signer (filled in by the aggregator in `KeySet::signatures`;
    /// ignored in the request, where the token names the signer).
    #[serde(default)]
    pub id: String,
    /// Hex, 64 bytes.
    pub signature: String,
}

/// One revealed Shamir share (`privacy::shamir::Share`: two 127-bit field
/// elements), hex of their 32 little-endian bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireShare {
    /// Whose seed: the survivor whose self seed, or who shares the pair
    /// seed with `dropped`.
    pub owner: String,
    /// Set for a pair-seed share: the dropped member of the pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<String>,
    /// Hex, 32 bytes.
    pub share: String,
}

/// `PUT /api/v1/rounds/{r}/reveal` (unmask phase): a survivor's reveal
/// (`privacy::secagg::Reveal`): its share of each survivor's self seed and
/// of each (survivor, dropped) pair seed, never both for one partner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevealUpload {
    pub attempt: u32,
    pub shares: Vec<WireShare>,
}

/// `POST /api/v1/rounds/{r}/report`: a member found another member's
/// relayed mask key unusable (malformed, low-order, or its signature does
/// not verify against the partner's identity). The aggregator restarts the
/// attempt without the reported member (before any update of the attempt
/// is unmasked: nothing is revealed), instead of the reporter quitting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyReport {
    pub attempt: u32,
    /// The member whose key is unusable.
    pub member: String,
    /// Why, in words (at most 1,000 characters).
    pub reason: String,
}

/// `PUT /api/v1/rounds/{r}/keys`: a client's X25519 key for one attempt,
/// signed with its identity key (see `privacy::masks`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnounceRequest {
    pub attempt: u32,
    /// Hex, 32 bytes.
    pub public: String,
    /// Hex, 64 bytes.
    pub signature: String,
}

/// `POST /api/v1/rounds/{r}/leave`: a member that cannot go on (its data
/// failed a bound mid-federation, its user stopped it) leaves the open
/// round, so that the others proceed as with a dropout instead of waiting
/// for it until a deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaveRequest {
    /// Why, in words (logged by the aggregator; at most 1,000 characters).
    pub reason: String,
}

/// One relayed mask key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnnouncedKey {
    pub id: String,
    pub public: String,
    pub signature: String,
}

/// `GET /api/v1/rounds/{r}/keys`: the open round's attempt and its keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeySet {
    pub round: u64,
    pub attempt: u32,
    pub phase: MaskPhase,
    /// Whether the attempt's updates are masked (decided when its roster is
    /// fixed: masks need at least three members).
    pub masked: bool,
    /// The members (upload phase: fixed) and who has not announced yet.
    pub roster: Vec<String>,
    pub missing: Vec<String>,
    /// Announced keys (all of the roster's in the upload phase).
    pub keys: Vec<AnnouncedKey>,
    pub min_contributors: usize,
    /// When the phase ends with whoever acted.
    pub deadline_unix: Option<u64>,
    /// Double masking: the threshold `t` of the attempt's Shamir sharing
    /// (`privacy::secagg::threshold`; 0 when the attempt is not masked).
    #[serde(default)]
    pub threshold: usize,
    /// Double masking, from the consistency phase on: the members whose
    /// shares and update are in (sorted).
    #[serde(default)]
    pub survivors: Vec<String>,
    /// Double masking, unmask phase: the survivors' signatures of
    /// `survivors`.
    #[serde(default)]
    pub signatures: Vec<SurvivorSignature>,
    /// Where the keys were announced when the aggregator carried them over
    /// from an earlier round (every member of that roster survived it, and
    /// the roster is the same): the attempt has no key phase, its keys are
    /// signed for `keys_from`, and everything masked is still derived for
    /// this round and attempt. `None`: announced in this attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys_from: Option<KeyOrigin>,
}

/// The round and attempt a carried-over key set was announced in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyOrigin {
    pub round: u64,
    pub attempt: u32,
}

/// State of one round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoundState {
    /// Accepting updates.
    Open,
    /// Closed; its sum is published.
    Closed,
}

/// The session: what the operator loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// Hex key fingerprint.
    pub fingerprint: String,
    /// Parameter set name (e.g. `Standard64`).
    pub params: String,
    /// Fixed-point fractional bits of the key.
    pub scale_bits: u8,
    /// Most contributors one round's sum may hold (the key's limit).
    pub max_clients: u32,
    /// Longest vector per update (values, without the weight slot); `None`
    /// until the operator or the first client states it.
    pub max_len: Option<usize>,
    /// Largest accepted update body in bytes (413 above it).
    pub max_update_bytes: Option<usize>,
    /// Fingerprint of the plan the aggregator serves (`GET /plan`), if any.
    #[serde(default)]
    pub plan: Option<String>,
}

/// `GET /api/v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusResponse {
    pub api_version: u32,
    /// `None` until the operator loads a public key.
    pub session: Option<SessionInfo>,
    /// The open round (rounds start at 1).
    pub round: u64,
    pub round_state: RoundState,
    /// Ids of the clients that submitted to the open round.
    pub submitted: Vec<String>,
    pub registered: usize,
    pub min_clients: Option<usize>,
    pub auto_aggregate: bool,
    /// Highest closed round, if any.
    pub last_closed: Option<u64>,
    /// Who the open round waits for, who of them has not submitted, and
    /// when it closes with whoever did (see [`RoundInfo`]).
    #[serde(default)]
    pub roster: Vec<String>,
    #[serde(default)]
    pub missing: Vec<String>,
    #[serde(default)]
    pub deadline_unix: Option<u64>,
    /// With pairwise masks: the open round's attempt, its phase, and whether
    /// its updates are masked (known once its roster is fixed).
    #[serde(default)]
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_phase: Option<MaskPhase>,
    #[serde(default)]
    pub masked: bool,
    /// Set once the plan's last round closed: the federation is finished,
    /// `round` is that last round (closed) and no further round opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complete: Option<Completion>,
}

/// A finished federation: the plan's last round closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completion {
    /// The plan's training rounds, all closed.
    pub training_rounds: u64,
    /// The server round that closed last (the plan's last).
    pub last_round: u64,
    /// Sites whose updates are in the last round's sum.
    pub sites: u32,
    /// When the last round closed (Unix seconds).
    pub completed_unix: u64,
}

impl Completion {
    /// "20 of 20 rounds, 3 sites".
    pub fn describe(&self) -> String {
        format!(
            "{0} of {0} rounds, {1} site{2}",
            self.training_rounds,
            self.sites,
            if self.sites == 1 { "" } else { "s" }
        )
    }
}

/// `GET /api/v1/rounds/{r}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoundInfo {
    pub round: u64,
    pub state: RoundState,
    /// Values per update in this round (fixed by its first update).
    pub len: Option<usize>,
    pub contributors: u32,
    pub submitted: Vec<String>,
    /// Time the server spent adding updates into this round's sum.
    pub aggregate_ms: f64,
    /// Ciphertext bytes accepted for this round.
    pub bytes_accepted: u64,
    /// Clients the round waits for (open round: so far; closed: at close).
    #[serde(default)]
    pub roster: Vec<String>,
    /// Roster members that have not submitted (open round).
    #[serde(default)]
    pub missing: Vec<String>,
    /// Fewest contributors the round may close with.
    #[serde(default)]
    pub min_contributors: usize,
    /// When the open round closes with whoever submitted (if at least
    /// `min_contributors` did); `None`: it waits for the whole roster.
    #[serde(default)]
    pub deadline_unix: Option<u64>,
    /// Attempt of the open round (1 unless a masked attempt lost a member).
    #[serde(default)]
    pub attempt: u32,
    /// With pairwise masks: the open attempt's phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask_phase: Option<MaskPhase>,
    /// The open attempt's updates are masked (its roster is fixed with three
    /// or more): it closes only with every member's update, and restarts
    /// without the missing ones at its deadline.
    #[serde(default)]
    pub masked: bool,
}

/// `GET /api/v1/plan`: the federation plan the aggregator serves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanResponse {
    /// Hex fingerprint of the plan's canonical form.
    pub fingerprint: String,
    pub plan: crate::plan::Plan,
}

/// Answer to an accepted upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadResponse {
    pub round: u64,
    /// Contributors in the running sum after this update.
    pub contributors: u32,
    /// True if this upload completed the round (auto-aggregate).
    pub round_closed: bool,
}

/// Answer to `POST /api/v1/rounds/{r}/close`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloseResponse {
    pub round: u64,
    pub contributors: u32,
    /// The round now open.
    pub next_round: u64,
}

/// Answer to `PUT /api/v1/session`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionResponse {
    pub session: SessionInfo,
}

/// Every non-2xx answer carries this body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable machine-readable code (e.g. `duplicate_submission`).
    pub error: ErrorCode,
    /// Human-readable explanation.
    pub detail: String,
}

pub use crate::ids::{valid_client_id, valid_client_name};

/// The stable code of an error answer ([`ErrorBody::error`]): one per kind
/// of refusal, so that a client reacts to a kind, never to a message. On the
/// wire it is the snake_case string of [`as_str`](Self::as_str); a code this
/// version does not know (a newer aggregator) reads as
/// [`Unknown`](Self::Unknown), which is data, not a failure to parse.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum ErrorCode {
    /// 400: the request could not be parsed.
    Malformed,
    /// 401: missing or unknown bearer token.
    Unauthorized,
    /// 403: a client token on an operator endpoint, or a client the plan
    /// does not name.
    Forbidden,
    /// 404: unknown round, client or route.
    NotFound,
    /// 409: no public key loaded yet.
    NoSession,
    /// 409: this client already submitted to this round.
    DuplicateSubmission,
    /// 409: the round is not the open one.
    WrongRound,
    /// 409: the update was made for another attempt of the round.
    WrongAttempt,
    /// 409: a masked round's roster is fixed without this client.
    RosterFixed,
    /// 409: a client with this id already exists.
    DuplicateClient,
    /// 409: any other state conflict.
    Conflict,
    /// 405: a route that exists, with another method.
    MethodNotAllowed,
    /// 408: the request body stalled or took too long.
    Timeout,
    /// 413: body above the session's limit.
    TooLarge,
    /// 414: request target too long.
    UriTooLong,
    /// 422: well-formed, but for another key, plan or model size.
    Unprocessable,
    /// 429: this client already has an upload in flight.
    Busy,
    /// 431: request headers too large.
    HeadersTooLarge,
    /// 500: the aggregator's state folder failed.
    Internal,
    /// 410: the federation is complete (its plan's last round closed): it
    /// takes no registration, key or update any more.
    FederationComplete,
    /// 410: the aggregator's state was reset (another session id than the
    /// one the client joined): the federation it joined no longer exists.
    SessionReset,
    /// 503: the aggregator's state folder was removed or replaced under it;
    /// it takes no more changes until its operator restarts it.
    StateLost,
    /// A code this version does not know (or `unknown`: an error answer
    /// without a FedHE body).
    Unknown(String),
}

impl ErrorCode {
    /// Every code this version sends.
    pub const KNOWN: [ErrorCode; 22] = [
        ErrorCode::Malformed,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::NoSession,
        ErrorCode::DuplicateSubmission,
        ErrorCode::WrongRound,
        ErrorCode::WrongAttempt,
        ErrorCode::RosterFixed,
        ErrorCode::DuplicateClient,
        ErrorCode::Conflict,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Timeout,
        ErrorCode::TooLarge,
        ErrorCode::UriTooLong,
        ErrorCode::Unprocessable,
        ErrorCode::Busy,
        ErrorCode::HeadersTooLarge,
        ErrorCode::Internal,
        ErrorCode::FederationComplete,
        ErrorCode::SessionReset,
        ErrorCode::StateLost,
    ];

    /// The code as the wire spells it.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::NoSession => "no_session",
            ErrorCode::DuplicateSubmission => "duplicate_submission",
            ErrorCode::WrongRound => "wrong_round",
            ErrorCode::WrongAttempt => "wrong_attempt",
            ErrorCode::RosterFixed => "roster_fixed",
            ErrorCode::DuplicateClient => "duplicate_client",
            ErrorCode::Conflict => "conflict",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Timeout => "timeout",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::UriTooLong => "uri_too_long",
            ErrorCode::Unprocessable => "unprocessable",
            ErrorCode::Busy => "busy",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::Internal => "internal",
            ErrorCode::FederationComplete => "federation_complete",
            ErrorCode::SessionReset => "session_reset",
            ErrorCode::StateLost => "state_lost",
            ErrorCode::Unknown(code) => code,
        }
    }

    /// The code the wire spells `code` (never fails: see [`Unknown`](Self::Unknown)).
    pub fn parse(code: &str) -> ErrorCode {
        Self::KNOWN
            .into_iter()
            .find(|c| c.as_str() == code)
            .unwrap_or_else(|| ErrorCode::Unknown(code.to_string()))
    }
}

impl From<String> for ErrorCode {
    fn from(code: String) -> Self {
        ErrorCode::parse(&code)
    }
}

impl From<ErrorCode> for String {
    fn from(code: ErrorCode) -> Self {
        match code {
            ErrorCode::Unknown(code) => code,
            known => known.as_str().to_string(),
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_travel_as_their_strings() {
        for code in ErrorCode::KNOWN {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
        let body: ErrorBody =
            serde_json::from_str(r#"{"error":"wrong_round","detail":"closed"}"#).unwrap();
        assert_eq!(body.error, ErrorCode::WrongRound);
        // A code from a newer aggregator is kept as it came.
        let later: ErrorCode = serde_json::from_str("\"slow_down\"").unwrap();
        assert_eq!(later, ErrorCode::Unknown("slow_down".into()));
        assert_eq!(serde_json::to_string(&later).unwrap(), "\"slow_down\"");
    }

    #[test]
    fn state_json() {
        assert_eq!(
            serde_json::to_string(&RoundState::Open).ok().as_deref(),
            Some("\"open\"")
        );
    }
}
