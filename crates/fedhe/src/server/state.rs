//! The aggregator's state machine, independent of HTTP. Every mutating method
//! either succeeds completely (memory and database) or leaves both as they
//! were.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::crypto::{Accumulator, CryptoError, ParamSet, PublicKeyFile, UpdateRef};
use crate::plan::Plan;
use crate::protocol::{
    ClientInfo, RegisterRequest, RegisterResponse, RoundInfo, RoundState, SessionInfo,
    StatusResponse, UploadResponse, hex, parse_hex, parse_hex_array, valid_client_id,
    valid_client_name,
};

use super::error::ServerError;
use super::store::{Store, StoredClient, StoredIdentity};

mod masks;

/// Largest encoded update the aggregator accepts for vectors of at most
/// `max_len` values (the 413 limit): the crypto module's own bound.
pub fn max_update_bytes(params: ParamSet, max_len: usize) -> usize {
    crate::crypto::max_update_bytes(params, max_len)
}

pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// SHA-256 of a bearer token: the only form in which tokens are stored.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A fresh 256-bit bearer token, hex.
pub fn new_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex(&b)
}

pub struct Session {
    pub public: PublicKeyFile,
    pub public_bytes: Vec<u8>,
    pub max_len: Option<usize>,
    /// The federation plan and its hex fingerprint, once loaded.
    pub plan: Option<(Plan, String)>,
}

impl Session {
    fn info(&self) -> SessionInfo {
        SessionInfo {
            fingerprint: self.public.fingerprint().to_string(),
            params: format!("{:?}", self.public.params()),
            scale_bits: self.public.scale_bits(),
            max_clients: self.public.max_clients(),
            max_len: self.max_len,
            max_update_bytes: self
                .max_len
                .map(|n| max_update_bytes(self.public.params(), n)),
            plan: self.plan.as_ref().map(|(_, fp)| fp.clone()),
        }
    }
}

/// How far a registration's issue time may be ahead of the server's clock.
const MAX_CLOCK_SKEW_MS: u64 = 5 * 60 * 1000;

/// Tunables that are not persisted.
#[derive(Debug, Clone)]
pub struct Policy {
    pub min_clients: Option<usize>,
    pub auto_aggregate: bool,
    /// With a plan: the operator closes rounds by hand instead of the
    /// plan's quorum (the app's auto-aggregate switch turned off).
    pub manual_close: bool,
    /// Largest `max_len` a session may declare (bounds every allocation).
    pub max_len_limit: usize,
    /// Largest number of registered clients (bounds the client table).
    pub max_registered: usize,
    /// Allow closing a round with one contributor when no plan says (a
    /// plan's `quorum.allow_single_contributor` decides otherwise).
    pub allow_single_contributor: bool,
}

struct ClientRec {
    name: String,
    joined_unix: u64,
    last_round: Option<u64>,
    /// Issue time of the accepted registration (a rotation needs a later one).
    issued_ms: u64,
    /// Identity key and the proof binding it (relayed for pairwise masks).
    identity: Option<StoredIdentity>,
}

struct ClosedRound {
    roster: Vec<String>,
    len: Option<usize>,
    contributors: u32,
    submitted: Vec<String>,
    aggregate_ms: f64,
    bytes_accepted: u64,
}

/// Who a request is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Operator,
    Client(String),
}

pub struct Aggregator {
    store: Store,
    policy: Policy,
    operator_hash: [u8; 32],
    session: Option<Session>,
    clients: BTreeMap<String, ClientRec>,
    tokens: HashMap<[u8; 32], String>,
    round: u64,
    /// Running sum of the open round; `None` until its first update.
    acc: Option<Accumulator>,
    /// Values per update in the open round (fixed by its first update).
    round_len: Option<usize>,
    submitted: Vec<String>,
    open_aggregate_ms: f64,
    open_bytes: u64,
    closed: BTreeMap<u64, ClosedRound>,
    /// The most recently published sum, kept in memory for the downloads
    /// that follow a close.
    last_sum: Option<(u64, std::sync::Arc<Vec<u8>>)>,
    /// Scratch for the serialized running sum (see `submit`).
    sum_buf: Vec<u8>,
    /// Who the open round waits for (with a plan): the named roster, or the
    /// previous round's contributors plus whoever registers or submits.
    roster: BTreeSet<String>,
    /// When the open round opened (Unix seconds).
    opened_unix: u64,
    /// The open round's attempt and mask keys (plans with masks on).
    mask: masks::MaskRound,
}

fn crypto_422(e: CryptoError) -> ServerError {
    // Fingerprint, parameters, length, contributor budget or a replayed
    // ciphertext: all well-formed updates this sum cannot take.
    ServerError::Unprocessable(format!("update refused: {e}"))
}

impl Aggregator {
    /// Loads (or initializes) the state in `store`. `initial_key` is the
    /// `--public-key` file; it must match a key already in the state folder.
    pub fn open(
        store: Store,
        policy: Policy,
        operator_token: &str,
        initial_key: Option<PublicKeyFile>,
        initial_max_len: Option<usize>,
    ) -> Result<Aggregator, ServerError> {
        let mut agg = Aggregator {
            store,
            policy,
            operator_hash: token_hash(operator_token),
            session: None,
            clients: BTreeMap::new(),
            tokens: HashMap::new(),
            round: 1,
            acc: None,
            round_len: None,
            submitted: Vec::new(),
            open_aggregate_ms: 0.0,
            open_bytes: 0,
            closed: BTreeMap::new(),
            last_sum: None,
            sum_buf: Vec::new(),
            roster: BTreeSet::new(),
            opened_unix: now_unix(),
            mask: masks::MaskRound::fresh(1, now_unix()),
        };
        agg.reload()?;
        if let Some(key) = initial_key {
            agg.load_session(key, initial_max_len)?;
        } else if let Some(n) = initial_max_len
            && agg.session.is_some()
        {
            agg.set_max_len(n)?;
        }
        Ok(agg)
    }

    /// Rebuilds the in-memory view from the database.
    fn reload(&mut self) -> Result<(), ServerError> {
        self.session = None;
        self.acc = None;
        self.round_len = None;
        if let Some(pk_bytes) = self.store.get_meta("public_key")? {
            let public = PublicKeyFile::from_bytes(&pk_bytes)
                .map_err(|e| ServerError::Internal(format!("stored public key unreadable: {e}")))?;
            let max_len = match self.store.get_meta("max_len")? {
                Some(b) => Some(
                    std::str::from_utf8(&b)
                        .ok()
                        .and_then(|s| s.parse::<usize>().ok())
                        .ok_or_else(|| ServerError::Internal("stored max_len unreadable".into()))?,
                ),
                None => None,
            };
            let plan = match self.store.get_meta("plan")? {
                Some(bytes) => {
                    let plan = Plan::from_json(&bytes, "the stored plan").map_err(|e| {
                        ServerError::Internal(format!("stored plan unreadable: {e}"))
                    })?;
                    let fp = plan.fingerprint().to_string();
                    Some((plan, fp))
                }
                None => None,
            };
            self.session = Some(Session {
                public,
                public_bytes: pk_bytes,
                max_len,
                plan,
            });
        }
        self.clients.clear();
        self.tokens.clear();
        let issued = self.store.registrations()?;
        let mut identities = self.store.identities()?;
        for c in self.store.clients()? {
            self.tokens.insert(c.token_hash, c.id.clone());
            let issued_ms = issued.get(&c.id).copied().unwrap_or(0);
            let identity = identities.remove(&c.id);
            self.clients.insert(
                c.id,
                ClientRec {
                    name: c.name,
                    joined_unix: c.joined_unix,
                    last_round: c.last_round,
                    issued_ms,
                    identity,
                },
            );
        }
        self.closed.clear();
        self.round = 1;
        self.open_aggregate_ms = 0.0;
        self.open_bytes = 0;
        for r in self.store.rounds()? {
            if r.open {
                self.round = r.round;
                self.round_len = r.len;
                self.open_aggregate_ms = r.aggregate_ms;
                self.open_bytes = r.bytes_accepted;
                self.opened_unix = r.opened_unix;
            } else {
                let submitted = self.store.submitted(r.round)?;
                self.closed.insert(
                    r.round,
                    ClosedRound {
                        roster: submitted.clone(),
                        len: r.len,
                        contributors: r.contributors,
                        submitted,
                        aggregate_ms: r.aggregate_ms,
                        bytes_accepted: r.bytes_accepted,
                    },
                );
            }
        }
        self.enable_sum_file()?;
        self.submitted = self.store.submitted(self.round)?;
        // The roster is not stored: after a restart the open round waits for
        // the previous round's contributors and its own (round 1: everyone
        // registered); others rejoin by submitting or registering again.
        self.roster = match self.named_roster() {
            Some(named) => named,
            None => {
                let mut r: BTreeSet<String> = match self.closed.get(&(self.round - 1)) {
                    Some(prev) => prev.submitted.iter().cloned().collect(),
                    None => self.clients.keys().cloned().collect(),
                };
                r.extend(self.submitted.iter().cloned());
                r
            }
        };
        self.mask = masks::MaskRound::load(&self.store, self.round, self.opened_unix)?;
        if self.masks_on() {
            match (&self.mask.frozen, &self.mask.expected) {
                (Some(f), _) => self.roster = f.clone(),
                (None, expected) => {
                    if let Some(e) = expected {
                        self.roster = e.clone();
                    }
                    self.roster.extend(self.mask.keys.keys().cloned());
                    self.roster.extend(self.submitted.iter().cloned());
                }
            }
        }
        if let Some(n) = self.session.as_ref().and_then(|s| s.max_len)
            && let Some(bytes) = self.store.sum(self.round)?
        {
            let acc = Accumulator::from_bytes(&bytes, n).map_err(|e| {
                ServerError::Internal(format!("stored running sum unreadable: {e}"))
            })?;
            self.acc = Some(acc);
        }
        self.last_sum = None;
        Ok(())
    }

    /// Authenticates a bearer token.
    pub fn caller(&self, token: Option<&str>) -> Result<Caller, ServerError> {
        let token = token.ok_or_else(|| {
            ServerError::Unauthorized("missing `Authorization: Bearer <token>` header".into())
        })?;
        let h = token_hash(token);
        if h == self.operator_hash {
            return Ok(Caller::Operator);
        }
        match self.tokens.get(&h) {
            Some(id) => Ok(Caller::Client(id.clone())),
            None => Err(ServerError::Unauthorized("unknown bearer token".into())),
        }
    }

    pub fn require_operator(&self, token: Option<&str>) -> Result<(), ServerError> {
        match self.caller(token)? {
            Caller::Operator => Ok(()),
            Caller::Client(_) => Err(ServerError::Forbidden(
                "this action needs the operator token".into(),
            )),
        }
    }

    /// Loads the session's public key (idempotent for the same key).
    pub fn load_session(
        &mut self,
        public: PublicKeyFile,
        max_len: Option<usize>,
    ) -> Result<SessionInfo, ServerError> {
        if let Some(n) = max_len {
            self.check_max_len(n)?;
        }
        if let Some(s) = &self.session {
            if s.public != public {
                return Err(ServerError::Conflict(format!(
                    "the session already uses key {} ({:?}); start a new state folder for another key",
                    s.public.fingerprint(),
                    s.public.params()
                )));
            }
            if let Some(n) = max_len {
                self.set_max_len(n)?;
            }
            return self.session_info_or_internal();
        }
        let bytes = public.to_bytes();
        self.store.save_session(&bytes, max_len, now_unix())?;
        self.session = Some(Session {
            public,
            public_bytes: bytes,
            max_len,
            plan: None,
        });
        self.opened_unix = now_unix();
        self.enable_sum_file()?;
        self.session_info_or_internal()
    }

    /// Loads the federation plan (needs the session's key). The same plan
    /// again is fine; another one only before anyone registered.
    pub fn load_plan(&mut self, plan: Plan) -> Result<SessionInfo, ServerError> {
        plan.validate("the plan")
            .map_err(|e| ServerError::Unprocessable(e.to_string()))?;
        let fp = plan.fingerprint().to_string();
        let Some(s) = &self.session else {
            return Err(ServerError::NoSession(
                "load the session's public key before the plan".into(),
            ));
        };
        if let Some((_, old)) = &s.plan {
            if *old == fp {
                return self.session_info_or_internal();
            }
            if !self.clients.is_empty() || self.round > 1 || !self.submitted.is_empty() {
                return Err(ServerError::Conflict(format!(
                    "the federation already runs plan {old} with {} registered clients; start a \
                     new state folder for plan {fp}",
                    self.clients.len()
                )));
            }
        } else if self.round > 1 || !self.submitted.is_empty() {
            // Its rounds would be taken for the plan's own rounds.
            return Err(ServerError::Conflict(format!(
                "this session has already summed updates without a plan (open round {}); start a \
                 new state folder for plan {fp}",
                self.round
            )));
        }
        let needed = plan.max_update_len();
        match s.max_len {
            Some(m) if m < needed => {
                return Err(ServerError::Conflict(format!(
                    "the plan's {} features and model need updates of {needed} values; the session allows {m}",
                    plan.features()
                )));
            }
            Some(_) => {}
            None => self.set_max_len(needed)?,
        }
        self.store.set_meta("plan", &plan.canonical())?;
        tracing::info!(plan = %fp, "plan loaded");
        if let Some(s) = self.session.as_mut() {
            s.plan = Some((plan, fp));
        }
        if let Some(named) = self.named_roster() {
            self.roster = named;
        }
        self.session_info_or_internal()
    }

    /// Closing rounds automatically on or off, with or without a plan.
    pub fn set_auto_aggregate(&mut self, on: bool) {
        self.policy.auto_aggregate = on;
        self.policy.manual_close = !on;
    }

    /// Whether rounds close by themselves: by the plan's quorum once a plan
    /// is loaded (unless the operator closes by hand), else by the
    /// auto-aggregate policy.
    fn closes_automatically(&self) -> bool {
        if self.plan().is_some() {
            !self.policy.manual_close
        } else {
            self.policy.auto_aggregate
        }
    }

    /// The plan being served, with its hex fingerprint.
    pub fn plan(&self) -> Option<&(Plan, String)> {
        self.session.as_ref().and_then(|s| s.plan.as_ref())
    }

    fn named_roster(&self) -> Option<BTreeSet<String>> {
        let (plan, _) = self.plan()?;
        (!plan.quorum.roster.is_empty()).then(|| plan.quorum.roster.iter().cloned().collect())
    }

    /// Refuses a request made for another plan than the one served.
    pub fn check_plan(&self, claimed: Option<&str>, what: &str) -> Result<(), ServerError> {
        let Some((_, fp)) = self.plan() else {
            return Ok(());
        };
        match claimed {
            Some(c) if c == fp => Ok(()),
            Some(c) => Err(ServerError::Unprocessable(format!(
                "{what} was made for plan {c}, but this aggregator serves plan {fp}; fetch the \
                 plan again (GET /api/v1/plan)"
            ))),
            None => Err(ServerError::Unprocessable(format!(
                "{what} names no plan, but this aggregator serves plan {fp} (FedHE clients send \
                 it; GET /api/v1/plan)"
            ))),
        }
    }

    /// The vector length the plan implies for `round`: the vocabulary's
    /// bucket counts, the statistics, the model's parameters and a share.
    /// `None` where it depends on categories the sites discover (the first
    /// update of the round fixes it then).
    fn plan_len(&self, round: u64) -> Option<usize> {
        let (plan, _) = self.plan()?;
        plan.update_len(plan.layout().phase(round)?)
    }

    fn allow_single(&self) -> bool {
        match self.plan() {
            Some((p, _)) => p.quorum.allow_single_contributor,
            None => self.policy.allow_single_contributor,
        }
    }

    /// Fewest contributors the open round may close with automatically.
    /// With pairwise masks, never below the plan's own minimum: clients
    /// refuse a roster smaller than the plan says (an operator override
    /// may only raise it).
    pub fn min_contributors(&self) -> usize {
        let floor = if self.allow_single() { 1 } else { 2 };
        let plan_min = self.plan().map(|(p, _)| p.quorum.min_clients);
        let base = self.policy.min_clients.or(plan_min).unwrap_or(1);
        let masked_floor = if self.masks_on() {
            plan_min.unwrap_or(1)
        } else {
            1
        };
        base.max(floor).max(masked_floor)
    }

    /// When the open round closes with whoever submitted; `None` without a
    /// plan and for the vocabulary and statistics rounds, which wait for
    /// everyone.
    /// With pairwise masks the deadline counts per phase of the attempt.
    pub fn deadline_unix(&self) -> Option<u64> {
        let (plan, _) = self.plan()?;
        if plan.privacy.masks {
            return self.mask_deadline();
        }
        (self.round > plan.layout().statistics_round())
            .then(|| self.opened_unix + plan.quorum.round_deadline_secs)
    }

    /// Roster members the open round waits for: those without an update,
    /// or (in a masked round's key phase) without an announced key.
    fn missing(&self) -> Vec<String> {
        let keys_phase = self.masks_on() && self.mask.frozen.is_none();
        self.roster
            .iter()
            .filter(|c| {
                if keys_phase {
                    !self.mask.keys.contains_key(*c)
                } else {
                    !self.submitted.contains(c)
                }
            })
            .cloned()
            .collect()
    }

    /// Closes the open round if its deadline passed with a quorum, and moves
    /// a masked round's attempt on (called periodically). Returns true if
    /// anything changed.
    pub fn tick(&mut self) -> Result<bool, ServerError> {
        // A failed mask step must not keep rounds from closing: logged, and
        // tried again on the next tick.
        let moved = self.advance_masks().unwrap_or_else(|e| {
            tracing::error!(
                round = self.round,
                "moving the masked attempt on failed: {e}"
            );
            false
        });
        if self.closes_automatically() && !self.submitted.is_empty() && self.auto_close_due() {
            self.close(self.round)?;
            return Ok(true);
        }
        Ok(moved)
    }

    /// Once the session's sizes are known, running sums go to the state
    /// folder's sum file.
    fn enable_sum_file(&mut self) -> Result<(), ServerError> {
        if let Some(s) = &self.session
            && let Some(n) = s.max_len
        {
            let k = &s.public;
            let bytes = crate::crypto::max_sum_bytes(k.params(), k.max_clients(), n);
            self.store.use_sum_file(bytes)?;
        }
        Ok(())
    }

    fn session_info_or_internal(&self) -> Result<SessionInfo, ServerError> {
        self.session
            .as_ref()
            .map(Session::info)
            .ok_or_else(|| ServerError::Internal("session vanished".into()))
    }

    fn check_max_len(&self, n: usize) -> Result<(), ServerError> {
        if n == 0 || n > self.policy.max_len_limit {
            return Err(ServerError::Malformed(format!(
                "max_len {n} is outside 1..={}",
                self.policy.max_len_limit
            )));
        }
        Ok(())
    }

    /// Fixes the session's model length (once; the same value again is fine).
    pub fn set_max_len(&mut self, n: usize) -> Result<(), ServerError> {
        self.check_max_len(n)?;
        let Some(s) = &self.session else {
            return Err(no_session());
        };
        match s.max_len {
            Some(m) if m == n => Ok(()),
            Some(m) => Err(ServerError::Conflict(format!(
                "the session's max_len is {m}, not {n}"
            ))),
            None => {
                let pk = s.public_bytes.clone();
                self.store.save_session(&pk, Some(n), now_unix())?;
                if let Some(s) = self.session.as_mut() {
                    s.max_len = Some(n);
                }
                self.enable_sum_file()
            }
        }
    }

    pub fn register(&mut self, req: RegisterRequest) -> Result<RegisterResponse, ServerError> {
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
        let identity = match &req.identity {
            Some(h) => Some(parse_hex_array::<32>(h).ok_or_else(|| {
                ServerError::Malformed("`identity` must be hex of 32 bytes".into())
            })?),
            None => None,
        };
        session
            .public
            .verify_registration_for(&req.id, &req.name, req.issued_ms, identity.as_ref(), &proof)
            .map_err(|e| ServerError::Unauthorized(e.to_string()))?;
        let identity = identity.map(|key| StoredIdentity { key, proof });
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
        if let Some(named) = self.named_roster()
            && !named.contains(&req.id)
        {
            return Err(ServerError::Forbidden(format!(
                "client id `{}` is not on the plan's roster ({})",
                req.id,
                named.into_iter().collect::<Vec<_>>().join(", ")
            )));
        }
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
            let token = new_token();
            let hash = token_hash(&token);
            self.store.rotate_client(
                &req.id,
                &req.name,
                &hash,
                req.issued_ms,
                identity.as_ref(),
            )?;
            self.tokens.retain(|_, id| *id != req.id);
            self.tokens.insert(hash, req.id.clone());
            self.forget_mask_key(&req.id)?;
            if let Some(c) = self.clients.get_mut(&req.id) {
                c.name = req.name;
                c.issued_ms = req.issued_ms;
                c.identity = identity;
            }
            self.join_roster(&req.id)?;
            tracing::info!(client = %req.id, "client registered again: token rotated");
            return Ok(RegisterResponse { id: req.id, token });
        }
        if self.clients.len() >= self.policy.max_registered {
            return Err(ServerError::Conflict(format!(
                "registration is full ({} clients)",
                self.policy.max_registered
            )));
        }
        if let Some(n) = req.max_len {
            self.check_max_len(n)?;
            if let Some(s) = &self.session
                && let Some(m) = s.max_len
                && n > m
            {
                return Err(ServerError::Conflict(format!(
                    "this client needs vectors of {n} values; the session allows {m}"
                )));
            }
        }
        let token = new_token();
        let joined = now_unix();
        let rec = StoredClient {
            id: req.id.clone(),
            name: req.name.clone(),
            token_hash: token_hash(&token),
            joined_unix: joined,
            last_round: None,
        };
        self.store
            .insert_client(&rec, req.issued_ms, identity.as_ref())?;
        self.tokens.insert(rec.token_hash, req.id.clone());
        self.clients.insert(
            req.id.clone(),
            ClientRec {
                name: req.name,
                joined_unix: joined,
                last_round: None,
                issued_ms: req.issued_ms,
                identity,
            },
        );
        self.join_roster(&req.id)?;
        tracing::info!(client = %req.id, name = %rec.name, "client registered");
        if let (Some(n), Some(s)) = (req.max_len, &self.session)
            && s.max_len.is_none()
        {
            self.set_max_len(n)?;
        }
        Ok(RegisterResponse { id: req.id, token })
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

    pub fn status(&self) -> StatusResponse {
        StatusResponse {
            api_version: 1,
            session: self.session.as_ref().map(Session::info),
            round: self.round,
            round_state: RoundState::Open,
            submitted: self.submitted.clone(),
            registered: self.clients.len(),
            min_clients: self.policy.min_clients,
            auto_aggregate: self.closes_automatically(),
            last_closed: self.closed.keys().next_back().copied(),
            roster: self.roster.iter().cloned().collect(),
            missing: self.missing(),
            deadline_unix: self.deadline_unix(),
            attempt: self.mask.attempt,
            mask_phase: self.masks_on().then(|| self.mask.phase()),
            masked: self.masks_on() && self.mask.masked,
        }
    }

    pub fn open_round(&self) -> u64 {
        self.round
    }

    pub fn round_info(&self, round: u64) -> Result<RoundInfo, ServerError> {
        if round == self.round {
            let contributors = self.acc.as_ref().map_or(0, Accumulator::contributors);
            return Ok(RoundInfo {
                round,
                state: RoundState::Open,
                len: self.round_len,
                contributors,
                submitted: self.submitted.clone(),
                aggregate_ms: self.open_aggregate_ms,
                bytes_accepted: self.open_bytes,
                roster: self.roster.iter().cloned().collect(),
                missing: self.missing(),
                min_contributors: self.min_contributors(),
                deadline_unix: self.deadline_unix(),
                attempt: self.mask.attempt,
                mask_phase: self.masks_on().then(|| self.mask.phase()),
                masked: self.masks_on() && self.mask.masked,
            });
        }
        match self.closed.get(&round) {
            Some(c) => Ok(RoundInfo {
                round,
                state: RoundState::Closed,
                len: c.len,
                contributors: c.contributors,
                submitted: c.submitted.clone(),
                aggregate_ms: c.aggregate_ms,
                bytes_accepted: c.bytes_accepted,
                roster: c.roster.clone(),
                missing: Vec::new(),
                min_contributors: 0,
                deadline_unix: None,
                attempt: 0,
                mask_phase: None,
                masked: false,
            }),
            None => Err(unknown_round(round, self.round)),
        }
    }

    /// Largest body accepted on the upload route right now.
    pub fn upload_limit(&self) -> Result<usize, ServerError> {
        let s = self.session.as_ref().ok_or_else(no_session)?;
        let n = s.max_len.ok_or_else(|| {
            ServerError::NoSession(
                "the session's max_len is not set yet: register with `max_len` first".into(),
            )
        })?;
        Ok(max_update_bytes(s.public.params(), n))
    }

    /// Cheap checks before the body is read: session, round, duplicate.
    pub fn precheck_upload(
        &self,
        client: &str,
        round: u64,
        attempt: Option<u32>,
    ) -> Result<usize, ServerError> {
        let limit = self.upload_limit()?;
        self.check_round_for(client, round)?;
        self.check_attempt(client, attempt)?;
        Ok(limit)
    }

    fn check_round_for(&self, client: &str, round: u64) -> Result<(), ServerError> {
        if round > self.round || round == 0 {
            return Err(unknown_round(round, self.round));
        }
        if round < self.round {
            return Err(ServerError::WrongRound(format!(
                "round {round} is closed; the open round is {}",
                self.round
            )));
        }
        if self.submitted.iter().any(|c| c == client) {
            return Err(ServerError::DuplicateSubmission(format!(
                "client `{client}` already submitted an update for round {round}"
            )));
        }
        Ok(())
    }

    /// Checks an update body in place: header, parameters and lengths against
    /// the model length bound, without copying its words (cheap enough to
    /// run under the state lock).
    pub fn decode_update<'b>(&self, bytes: &'b [u8]) -> Result<UpdateRef<'b>, ServerError> {
        let s = self.session.as_ref().ok_or_else(no_session)?;
        let max_len = s.max_len.ok_or_else(no_session)?;
        let k = &s.public;
        UpdateRef::parse_for(bytes, max_len, &k.layout()).map_err(|e| match e {
            // Well-formed, but made with another key's parameters.
            CryptoError::ParamsMismatch { .. } => crypto_422(e),
            e => ServerError::Malformed(format!("not a valid encrypted update: {e}")),
        })
    }

    /// Adds an accepted update into the running sum and records it durably.
    /// Returns the answer; may close the round (auto-aggregate).
    pub fn submit(
        &mut self,
        client: &str,
        round: u64,
        attempt: Option<u32>,
        update: &UpdateRef<'_>,
        body_len: u64,
    ) -> Result<UploadResponse, ServerError> {
        self.check_round_for(client, round)?;
        self.check_attempt(client, attempt)?;
        self.check_binding(round, update.binding())?;
        let s = self.session.as_ref().ok_or_else(no_session)?;
        let n = s.max_len.ok_or_else(no_session)?;
        let len = update.len();
        if len > n {
            return Err(ServerError::Unprocessable(format!(
                "update has {len} values; this session allows at most {n}"
            )));
        }
        if let Some(want) = self.plan_len(round)
            && want != len
        {
            return Err(ServerError::Unprocessable(format!(
                "update has {len} values; round {round} of the plan sums vectors of {want} values"
            )));
        }
        if let Some(l) = self.round_len
            && l != len
        {
            return Err(ServerError::Unprocessable(format!(
                "update has {len} values; round {round} sums vectors of {l} values"
            )));
        }
        let t = Instant::now();
        let acc = match self.acc.as_mut() {
            Some(acc) => {
                acc.add_ref(update).map_err(crypto_422)?;
                acc
            }
            None => {
                // First update of the round: it fixes the round's length. A
                // refused update leaves no accumulator behind.
                let mut fresh = Accumulator::new(&s.public, len);
                fresh.add_ref(update).map_err(crypto_422)?;
                self.acc.insert(fresh)
            }
        };
        let add_ms = t.elapsed().as_secs_f64() * 1e3;
        let contributors = acc.contributors();
        // The serialized sum is rewritten after every update: reuse one buffer.
        acc.write_bytes(&mut self.sum_buf);
        if let Err(e) = self.store.record_submission(
            round,
            client,
            body_len,
            len,
            &self.sum_buf,
            contributors,
            add_ms,
            now_unix(),
        ) {
            // The database still holds the previous sum: go back to it.
            let err = ServerError::from(e);
            self.reload()?;
            return Err(err);
        }
        self.submitted.push(client.to_string());
        self.roster.insert(client.to_string());
        self.round_len = Some(len);
        self.open_aggregate_ms += add_ms;
        self.open_bytes += body_len;
        if let Some(c) = self.clients.get_mut(client) {
            c.last_round = Some(round);
        }
        let mut round_closed = false;
        if self.closes_automatically() && self.auto_close_due() {
            // The update is counted whatever happens next; a close that fails
            // is retried by the deadline ticker.
            match self.close(round) {
                Ok(_) => round_closed = true,
                Err(e) => tracing::error!(round, "closing the round failed: {e}"),
            }
        }
        Ok(UploadResponse {
            round,
            contributors,
            round_closed,
        })
    }

    /// Refuses an update whose header names another round (or, with masks,
    /// another attempt): a replay. Without a plan an unbound update (round
    /// 0) is accepted; a plan's rounds take bound updates only.
    fn check_binding(&self, round: u64, (r, a): (u64, u32)) -> Result<(), ServerError> {
        if r == 0 && self.plan().is_none() {
            return Ok(());
        }
        if r != round {
            return Err(ServerError::WrongRound(if r == 0 {
                format!(
                    "this update names no round; this federation's updates name the round they \
                     were made for (round {round} is open)"
                )
            } else {
                format!("this update was made for round {r}; it cannot count in round {round}")
            }));
        }
        if self.masks_on() && a != self.mask.attempt {
            return Err(ServerError::WrongAttempt(format!(
                "this update was made for attempt {a} of round {round}; the round is at attempt {}",
                self.mask.attempt
            )));
        }
        Ok(())
    }

    fn auto_close_due(&self) -> bool {
        let n = self.submitted.len();
        // A full sum cannot take another update: close rather than refuse the next.
        let full = self
            .acc
            .as_ref()
            .is_some_and(|a| a.contributors() >= a.max_clients());
        if full {
            return n >= if self.allow_single() { 1 } else { 2 };
        }
        if let Some(frozen) = self.masked_roster() {
            // Masks cancel only in the sum of every member's update.
            return frozen.iter().all(|c| self.submitted.contains(c));
        }
        let min = self.min_contributors();
        if n < min {
            return false;
        }
        if self.plan().is_none() {
            // Without a plan: every registered client, or --min-clients.
            return self.policy.min_clients.is_some() || n >= self.clients.len();
        }
        if self.missing().is_empty() {
            return true;
        }
        self.deadline_unix().is_some_and(|d| now_unix() >= d)
    }

    /// Closes the open round `round` and publishes its sum.
    pub fn close(&mut self, round: u64) -> Result<(u32, u64), ServerError> {
        if round != self.round {
            if self.closed.contains_key(&round) {
                return Err(ServerError::WrongRound(format!(
                    "round {round} is already closed"
                )));
            }
            return Err(unknown_round(round, self.round));
        }
        let acc = match self.acc.as_ref() {
            Some(acc) if acc.contributors() > 0 => acc,
            _ => {
                return Err(ServerError::Conflict(format!(
                    "round {round} has no submissions yet; nothing to publish"
                )));
            }
        };
        if acc.contributors() == 1 && !self.allow_single() {
            return Err(ServerError::Conflict(format!(
                "round {round} has a single contributor: publishing its sum would show that \
                 client's update to every key holder (a plan can allow it: \
                 quorum.allow_single_contributor)"
            )));
        }
        if let Some(frozen) = self.masked_roster() {
            let missing: Vec<&String> = frozen
                .iter()
                .filter(|c| !self.submitted.contains(c))
                .collect();
            if !missing.is_empty() {
                return Err(ServerError::Conflict(format!(
                    "round {round} attempt {} is masked and still misses {missing:?}: its masks \
                     cancel only when every member's update is in the sum (at its deadline the \
                     round restarts, without them if enough others have uploaded)",
                    self.mask.attempt
                )));
            }
        }
        let contributors = acc.contributors();
        let published = acc.to_bytes();
        let next_roster: BTreeSet<String> = match self.named_roster() {
            Some(named) => named,
            // Those who contributed, and those who came too late for this
            // round's fixed roster of masks.
            None => self
                .submitted
                .iter()
                .chain(&self.mask.late)
                .cloned()
                .collect(),
        };
        let mut next_mask = masks::MaskRound::fresh(round + 1, now_unix());
        next_mask.expected = Some(next_roster.clone());
        let mask_state = next_mask.to_bytes()?;
        self.store
            .close_round(round, now_unix(), &published, &mask_state)?;
        self.closed.insert(
            round,
            ClosedRound {
                roster: std::mem::replace(&mut self.roster, next_roster)
                    .into_iter()
                    .collect(),
                len: self.round_len,
                contributors,
                submitted: std::mem::take(&mut self.submitted),
                aggregate_ms: self.open_aggregate_ms,
                bytes_accepted: self.open_bytes,
            },
        );
        self.acc = None;
        self.round_len = None;
        self.round = round + 1;
        self.opened_unix = now_unix();
        self.mask = next_mask;
        self.open_aggregate_ms = 0.0;
        self.open_bytes = 0;
        self.last_sum = Some((round, std::sync::Arc::new(published)));
        tracing::info!(
            round,
            contributors,
            counted = ?self.closed.get(&round).map(|c| &c.submitted),
            "round {round} closed; round {} open",
            self.round
        );
        Ok((contributors, self.round))
    }

    /// The published sum of a closed round, with its contributor count.
    pub fn sum(&self, round: u64) -> Result<(std::sync::Arc<Vec<u8>>, u32), ServerError> {
        if round == self.round {
            return Err(ServerError::WrongRound(format!(
                "round {round} is still open; its sum is published when it closes"
            )));
        }
        let c = self
            .closed
            .get(&round)
            .ok_or_else(|| unknown_round(round, self.round))?;
        if let Some((r, bytes)) = &self.last_sum
            && *r == round
        {
            return Ok((bytes.clone(), c.contributors));
        }
        let bytes = self
            .store
            .sum(round)?
            .ok_or_else(|| ServerError::Internal(format!("sum of round {round} missing")))?;
        Ok((std::sync::Arc::new(bytes), c.contributors))
    }
}

fn no_session() -> ServerError {
    ServerError::NoSession(
        "no session: the operator has not loaded a public key yet (fedhe serve --public-key, \
         or PUT /api/v1/session)"
            .into(),
    )
}

fn unknown_round(round: u64, open: u64) -> ServerError {
    ServerError::NotFound(format!(
        "round {round} does not exist; the open round is {open}"
    ))
}
