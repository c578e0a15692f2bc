//! The client workflow, once, for the CLI (`fedhe client`, `fedhe
//! simulate`), the app's Client tab and the demo:
//!
//! 1. [`connect`]: reach the aggregator, wait for its key and plan, check
//!    that our key is the session's, fetch and check the plan;
//! 2. [`Connected::load_site`]: map the site's CSV to the plan by column
//!    name — every mismatch is a located error before anything is sent;
//! 3. [`Connected::join`]: resume with the credentials of an earlier run
//!    (client state file) or register, signed with the key;
//! 4. [`Joined::run`]: standardization and the plan's rounds, with events
//!    and cancel, riding out aggregator outages until the round deadline;
//!    the result is the global [`ModelFile`].
//!
//! [`train_local`] is the plaintext, one-machine counterpart.

mod gbdt;
mod state;

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use gbdt::{GbdtRun, run_gbdt_plan};
pub use state::ClientState;

use crate::client::MaskLedger;
use crate::client::masking::Masking;
use crate::client::pins::PartnerPins;
use crate::client::{
    AggregatorClient, ClientError, ClientEvent, ClientOutcome, Exchange, HeExchange, LoopConfig,
    LoopError, RetryPolicy, ServerCheckpoint, WaitNotifier, run_client_loop,
};
use crate::crypto::SecretKey;
use crate::data::split::stratified_split;
use crate::data::{DataError, Dataset, Encoder, LoadedCsv, MissingPolicy, RawStats};
use crate::model::{
    Architecture, EpochStats, Evaluation, Head, ModelError, ModelFile, Provenance, TargetScaling,
    TrainConfig, TrainSummary,
};
use crate::plan::{Plan, PlanError};
use crate::privacy::{Identity, PrivacyError, SiteSecret};
use crate::protocol::{ErrorCode, RegisterRequest};

/// Receives progress notes in words ("aggregator unreachable, retrying in
/// 8 s", "waiting for the operator to load the plan").
pub type Notifier = Arc<dyn Fn(&str) + Send + Sync>;

/// Extra wait for a round beyond the plan's deadline (the aggregator closes
/// the round at the deadline; this covers its clock and our retries).
const DEADLINE_GRACE: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Loop(#[from] LoopError),
    #[error("{0}")]
    WrongKey(String),
    /// An aggregator address without `http://` or `https://`.
    #[error("aggregator address {0:?} has no scheme: add http:// or https://")]
    NoScheme(String),
    #[error("{0}")]
    NotReady(String),
    /// DP-SGD settings these rows cannot meet.
    #[error("privacy: {0}")]
    Privacy(#[from] PrivacyError),
    /// Local training: one epoch already passes the privacy budget.
    #[error(
        "privacy: one epoch already spends more than ε = {max}; use more noise or a larger budget"
    )]
    EpochOverBudget { max: f64 },
    #[error("client state {file}: {message}")]
    State { file: String, message: String },
    /// A gradient-boosted trees plan run as FedAvg rounds, or the other way
    /// round.
    #[error("the plan's model is gradient-boosted trees: its rounds are the trees' (run_gbdt)")]
    GbdtPlan,
    #[error("the plan's model is not gradient-boosted trees")]
    NotGbdt,
    #[error("cancelled")]
    Cancelled,
}

/// Where the aggregator is and how long to wait for it.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// Aggregator URL, e.g. `http://10.0.0.5:8080`.
    pub server: String,
    /// PEM certificate to trust for HTTPS (self-signed aggregators).
    pub ca_cert_pem: Option<Vec<u8>>,
    /// Longest wait for the aggregator to answer and for its operator to
    /// load the key and the plan.
    pub wait: Duration,
}

/// Connected to an aggregator whose key and plan are ours.
pub struct Connected {
    pub api: AggregatorClient,
    pub key: Arc<SecretKey>,
    pub plan: Plan,
    /// Hex fingerprint of `plan`.
    pub plan_fingerprint: String,
    pub server: String,
    notify: Option<Notifier>,
}

fn retry_notifier(notify: &Notifier) -> crate::client::RetryNotifier {
    let notify = notify.clone();
    Arc::new(move |what: &str, pause: Duration| {
        notify(&format!(
            "aggregator unreachable ({what}), retrying in {:.0} s",
            pause.as_secs_f64().max(1.0)
        ));
    })
}

/// Reaches the aggregator, waits until its operator has loaded the key and
/// the plan (up to `opts.wait`), checks that `key` is the session's key and
/// fetches the plan.
pub fn connect(
    opts: &ConnectOptions,
    key: Arc<SecretKey>,
    notify: Option<Notifier>,
    cancel: &AtomicBool,
) -> Result<Connected, SessionError> {
    connect_with(opts, key, notify, cancel, None)
}

/// [`connect`] whose retries and backoff pauses also end at `cancel` (a
/// Stop is noticed within 50 ms); the connected client keeps the flag.
pub fn connect_cancellable(
    opts: &ConnectOptions,
    key: Arc<SecretKey>,
    notify: Option<Notifier>,
    cancel: Arc<AtomicBool>,
) -> Result<Connected, SessionError> {
    connect_with(opts, key, notify, &cancel.clone(), Some(cancel))
}

fn connect_with(
    opts: &ConnectOptions,
    key: Arc<SecretKey>,
    notify: Option<Notifier>,
    cancel: &AtomicBool,
    cancel_flag: Option<Arc<AtomicBool>>,
) -> Result<Connected, SessionError> {
    if !(opts.server.starts_with("http://") || opts.server.starts_with("https://")) {
        return Err(SessionError::NoScheme(opts.server.clone()));
    }
    let mut api = match &opts.ca_cert_pem {
        Some(pem) => AggregatorClient::with_root_cert_pem(&opts.server, pem)?,
        None => AggregatorClient::new(&opts.server),
    }
    .with_retry(RetryPolicy::riding_out(opts.wait));
    if let Some(n) = &notify {
        api = api.on_retry(retry_notifier(n));
    }
    if let Some(c) = cancel_flag {
        api = api.with_cancel(c);
    }
    let fp = key.fingerprint().to_string();
    let start = Instant::now();
    let mut said = false;
    loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(SessionError::Cancelled);
        }
        // The session id binds every signature; the key's fingerprint is
        // checked before this key signs anything for the aggregator.
        let health = match api.health() {
            Err(ClientError::Cancelled) => return Err(SessionError::Cancelled),
            r => r?,
        };
        if let Some(k) = &health.key
            && *k != fp
        {
            return Err(SessionError::WrongKey(format!(
                "the aggregator's session uses key {k}, but this key is {fp}: wrong key file?"
            )));
        }
        api = api
            .with_session(health.session)
            .with_member_key(key.clone());
        let status = match api.status() {
            Err(ClientError::Cancelled) => return Err(SessionError::Cancelled),
            r => r?,
        };
        let waiting_for = match &status.session {
            Some(s) if s.fingerprint != fp => {
                return Err(SessionError::WrongKey(format!(
                    "the aggregator's session uses key {}, but this key is {fp}: wrong key file?",
                    s.fingerprint
                )));
            }
            Some(s) if s.plan.is_some() => break,
            Some(_) => "the federation plan",
            None => "the session's public key",
        };
        if start.elapsed() >= opts.wait {
            return Err(SessionError::NotReady(format!(
                "the aggregator at {} still has no {waiting_for} after {} s: its operator must \
                 load it (fedhe serve --public-key … --plan …)",
                opts.server,
                opts.wait.as_secs()
            )));
        }
        if !said && let Some(n) = &notify {
            n(&format!(
                "waiting for the aggregator's operator to load {waiting_for} (up to {} s)",
                opts.wait.as_secs()
            ));
            said = true;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let served = api.plan()?;
    let plan = served.plan;
    plan.validate("the aggregator's plan")?;
    let plan_fingerprint = plan.fingerprint().to_string();
    if plan_fingerprint != served.fingerprint {
        return Err(ClientError::Protocol(format!(
            "the aggregator says its plan is {}, but the plan it sent is {plan_fingerprint}",
            served.fingerprint
        ))
        .into());
    }
    // From now on, ride out outages until a round's deadline.
    let outage = Duration::from_secs(plan.quorum.round_deadline_secs) + DEADLINE_GRACE;
    let api = api
        .with_retry(RetryPolicy::riding_out(outage))
        .for_plan(plan_fingerprint.clone());
    Ok(Connected {
        api,
        key,
        plan,
        plan_fingerprint,
        server: opts.server.clone(),
        notify,
    })
}

/// The default client state file for `id`: beside the key file, as
/// owner-only as the key.
pub fn default_state_file(key_file: &Path, id: &str) -> std::path::PathBuf {
    key_file.with_file_name(format!("client-{id}.state.json"))
}

/// A client id derived from a display name (`Clinic B` → `clinic-b`).
pub fn id_from_name(name: &str) -> String {
    let id: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if id.trim_matches('-').is_empty() {
        "client".into()
    } else {
        id
    }
}

impl Connected {
    /// Reads the site's CSV by the plan's column names.
    pub fn load_site(&self, path: &Path) -> Result<LoadedCsv, SessionError> {
        self.load_site_delimited(path, None)
    }

    /// [`load_site`](Self::load_site) with a field separator (`None`: comma,
    /// or what the header shows).
    pub fn load_site_delimited(
        &self,
        path: &Path,
        delimiter: Option<u8>,
    ) -> Result<LoadedCsv, SessionError> {
        let opts = crate::data::CsvOptions {
            delimiter,
            ..self.plan.csv_options()
        };
        let loaded = crate::data::load_csv(path, &opts)?;
        let k = &self.key;
        let limb_bits = crate::client::limb_bits_for(k.params(), k.scale_bits(), k.max_clients());
        check_site(&self.plan, &loaded.dataset, limb_bits)?;
        Ok(loaded)
    }

    /// Resumes under `id` with the token in `state_file` if it is still
    /// valid for this aggregator, plan and key; registers (or registers
    /// again, which rotates the token) otherwise, and saves the new token.
    pub fn join(
        self,
        id: &str,
        name: &str,
        state_file: Option<&Path>,
    ) -> Result<Joined, SessionError> {
        let key_fp = self.key.fingerprint().to_string();
        let saved = match state_file {
            Some(path) => ClientState::load(path)?,
            None => None,
        };
        // The identity stays with the client across runs (and federations).
        let stored_identity = saved
            .as_ref()
            .and_then(|st| st.identity.as_deref())
            .map(Identity::from_hex)
            .transpose()
            .map_err(|e| SessionError::State {
                file: state_file.map_or_else(String::new, |p| p.display().to_string()),
                message: e.to_string(),
            })?;
        // Partners pinned on first use, in this federation (its session).
        let seen = saved
            .as_ref()
            .filter(|st| st.session.is_some() && st.session.as_deref() == self.api.session())
            .map(|st| st.partners.clone())
            .unwrap_or_default();
        let pins = PartnerPins::new(self.plan.identities.clone(), seen.clone(), state_file);
        if let Some(st) = &saved
            && let Some(identity) = &stored_identity
            && st.server == self.server
            && st.id == id
            && st.plan == self.plan_fingerprint
            && st.key == key_fp
        {
            // With the session it joined: a reset aggregator says so
            // (`session_reset`) rather than a bare 401.
            let mut api = self.api.clone().with_token(st.token.clone());
            if let Some(s) = &st.session {
                api = api.with_session(s.clone());
            }
            match api.round(1, None) {
                Ok(_) => {
                    let run = RunSecrets {
                        dp: resumed_secret(st, state_file)?,
                        ledger: run_ledger(state_file, true)?,
                        pins,
                    };
                    let mut joined = self.joined(api, id, name, identity.clone(), run, true);
                    joined.state_file = state_file.map(Path::to_path_buf);
                    return Ok(joined);
                }
                // The aggregator no longer knows the token: register again.
                Err(e) if e.status() == Some(401) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let identity = match stored_identity {
            Some(i) => i,
            None => Identity::generate().map_err(|e| SessionError::State {
                file: String::new(),
                message: e.to_string(),
            })?,
        };
        let mut api = self.api.clone();
        let session = api.session().unwrap_or_default().to_string();
        let aud = crate::crypto::Audience {
            session: &session,
            plan: Some(&self.plan_fingerprint),
        };
        let sign = || {
            RegisterRequest::signed(
                &self.key,
                &aud,
                id,
                name,
                Some(self.plan.max_update_len()),
                &identity,
            )
        };
        let resp = match api.register(&sign()) {
            // A retry after a lost answer meets our own registration: a
            // fresh proof (a later issue time) rotates the token.
            Err(e) if e.code() == Some(&ErrorCode::DuplicateClient) => {
                std::thread::sleep(Duration::from_millis(2));
                api.register(&sign())?
            }
            r => r?,
        };
        // A registration starts a run: a fresh DP secret and an empty mask
        // ledger (fresh masks), saved before any upload.
        let secret = SiteSecret::generate().map_err(|e| SessionError::State {
            file: String::new(),
            message: e.to_string(),
        })?;
        let ledger = run_ledger(state_file, false)?;
        if let Some(path) = state_file {
            ClientState {
                identity: Some(identity.to_hex()),
                secret: Some(secret.to_hex()),
                session: Some(session.clone()),
                partners: seen,
                ..ClientState::new(
                    &self.server,
                    id,
                    name,
                    &resp.token,
                    &self.plan_fingerprint,
                    &key_fp,
                )
            }
            .save(path)?;
        }
        let run = RunSecrets {
            dp: secret,
            ledger,
            pins,
        };
        let mut joined = self.joined(api, id, name, identity, run, false);
        joined.state_file = state_file.map(Path::to_path_buf);
        Ok(joined)
    }

    fn joined(
        self,
        api: AggregatorClient,
        id: &str,
        name: &str,
        identity: Identity,
        run: RunSecrets,
        resumed: bool,
    ) -> Joined {
        Joined {
            identity,
            secret: run.dp,
            ledger: run.ledger,
            pins: run.pins,
            api,
            key: self.key,
            plan: self.plan,
            plan_fingerprint: self.plan_fingerprint,
            server: self.server,
            id: id.to_string(),
            name: name.to_string(),
            resumed,
            state_file: None,
            notify: self.notify,
        }
    }
}

/// What a run keeps secret: its DP secret and its mask ledger.
struct RunSecrets {
    dp: SiteSecret,
    ledger: MaskLedger,
    pins: PartnerPins,
}

/// The mask ledger of a run: beside the state file (the one kept when
/// `resumed`, a new empty one for a new run), or in memory.
fn run_ledger(state_file: Option<&Path>, resumed: bool) -> Result<MaskLedger, SessionError> {
    let Some(state) = state_file else {
        return Ok(MaskLedger::in_memory());
    };
    let path = crate::client::ledger::ledger_path(state);
    let ledger = if resumed {
        MaskLedger::open(&path)
    } else {
        MaskLedger::fresh(&path)
    };
    ledger.map_err(|e| SessionError::State {
        file: path.display().to_string(),
        message: e.to_string(),
    })
}

/// The DP secret of the run a client resumes: its state file's, or (a file
/// written before there were secrets) a fresh one, saved before any upload.
fn resumed_secret(st: &ClientState, file: Option<&Path>) -> Result<SiteSecret, SessionError> {
    let err = |message: String| SessionError::State {
        file: file.map_or_else(String::new, |p| p.display().to_string()),
        message,
    };
    if let Some(hex) = &st.secret {
        return SiteSecret::from_hex(hex).ok_or_else(|| err("secret is not 64 hex digits".into()));
    }
    let secret = SiteSecret::generate().map_err(|e| err(e.to_string()))?;
    if let Some(path) = file {
        ClientState {
            secret: Some(secret.to_hex()),
            ..st.clone()
        }
        .save(path)?;
    }
    Ok(secret)
}

/// A registered (or resumed) member of a federation.
#[derive(Clone)]
pub struct Joined {
    pub api: AggregatorClient,
    pub key: Arc<SecretKey>,
    pub plan: Plan,
    pub plan_fingerprint: String,
    pub server: String,
    pub id: String,
    pub name: String,
    /// True when an earlier run's token was still valid.
    pub resumed: bool,
    /// This client's identity key (pairwise masks).
    pub identity: Identity,
    /// This run's DP secret (owner-only in the state file): DP-SGD's
    /// batches and noise derive from it, not from anything public.
    pub secret: SiteSecret,
    /// This run's mask ledger (owner-only beside the state file).
    pub ledger: MaskLedger,
    /// Partners' identities pinned by the plan and on first use (saved in
    /// the state file).
    pub pins: PartnerPins,
    /// The client state file, which also keeps the server optimizer's
    /// state after every round.
    pub state_file: Option<std::path::PathBuf>,
    notify: Option<Notifier>,
}

/// The result of a federated run.
#[derive(Debug, Clone)]
pub struct FederatedRun {
    /// The global model, ready for `fedhe predict` and the Predict tab.
    pub model: ModelFile,
    pub outcome: ClientOutcome,
    /// Rows this site trained on (after the validation hold-out).
    pub train_rows: usize,
}

impl Joined {
    /// Where progress notes in words go from now on.
    pub fn set_notifier(&mut self, notify: Option<Notifier>) {
        if let Some(n) = &notify {
            self.api = self.api.clone().on_retry(retry_notifier(n));
        }
        self.notify = notify;
    }

    /// Runs the plan's rounds on `data` (loaded with [`Connected::load_site`]).
    /// Rounds that closed while this client was away are taken as published.
    pub fn run(
        &self,
        data: &Dataset,
        data_files: Vec<String>,
        on_event: &mut dyn FnMut(&ClientEvent),
        cancel: &AtomicBool,
    ) -> Result<FederatedRun, SessionError> {
        self.run_tested(data, None, data_files, on_event, cancel)
    }

    /// [`run`](Self::run), with this site's test rows for the plan's
    /// federated test (`[evaluation] test = true`).
    pub fn run_tested(
        &self,
        data: &Dataset,
        test: Option<&Dataset>,
        data_files: Vec<String>,
        on_event: &mut dyn FnMut(&ClientEvent),
        cancel: &AtomicBool,
    ) -> Result<FederatedRun, SessionError> {
        let mut ex = self.exchange();
        run_plan_with(
            &mut ex,
            &self.plan,
            &self.plan_fingerprint,
            site_seed(self.plan.training.sgd.seed, &self.id),
            Some(&self.secret),
            (data, test),
            RunRecord {
                kind: crate::model::FEDERATED,
                data_files,
                server: Some(self.server.clone()),
                site: self.id.clone(),
            },
            self.checkpoint()?,
            on_event,
            cancel,
        )
    }

    /// The encrypted exchange through the aggregator, masked as the plan
    /// says, with this member's notes.
    fn exchange(&self) -> HeExchange {
        let layout = self.plan.layout();
        let on_wait: Option<WaitNotifier> = self.notify.as_ref().map(|n| {
            let n = n.clone();
            let w: WaitNotifier = Arc::new(move |info: &crate::protocol::RoundInfo| {
                n(&waiting_words(info, layout));
            });
            w
        });
        let mut ex = HeExchange::new(
            self.api.clone(),
            self.key.clone(),
            Duration::from_secs(self.plan.quorum.round_deadline_secs) + DEADLINE_GRACE,
        );
        ex.on_wait = on_wait;
        ex.on_note = self.notify.clone();
        ex.site = Some(self.id.clone());
        ex.masking = self.plan.privacy.masks.then(|| Masking {
            pins: self.pins.clone(),
            ..Masking::for_plan(
                &self.id,
                &self.identity,
                &self.plan,
                &self.plan_fingerprint,
                self.ledger.clone(),
            )
        });
        ex
    }

    /// The server optimizer's state in the client state file: the one a
    /// resumed run saved, and a saver after each round.
    fn checkpoint(&self) -> Result<ServerCheckpoint, SessionError> {
        let Some(path) = self.state_file.clone() else {
            return Ok(ServerCheckpoint::default());
        };
        let resume = if self.resumed {
            ClientState::load(&path)?.and_then(|st| st.server_optimizer)
        } else {
            None
        };
        let save: crate::client::SaveServerState = Arc::new(move |s| {
            ClientState::save_server_state(&path, s).map_err(|e| Box::new(e) as _)
        });
        Ok(ServerCheckpoint {
            resume,
            save: Some(save),
        })
    }
}

/// "training round 2: 2 of 3 submitted, waiting for c (closes with at least
/// 2 at its deadline, in 240 s)".
pub fn waiting_words(
    info: &crate::protocol::RoundInfo,
    layout: crate::plan::RoundLayout,
) -> String {
    let mut phase = layout
        .phase(info.round)
        .map_or_else(|| format!("round {}", info.round), |p| p.describe());
    if info.attempt > 1 {
        phase.push_str(&format!(
            " (attempt {}: a member dropped out, the others mask again)",
            info.attempt
        ));
    }
    let n = info.submitted.len();
    let did = match info.mask_phase {
        Some(crate::protocol::MaskPhase::Keys) => "announced their mask keys",
        Some(crate::protocol::MaskPhase::Consistency) => "signed the survivor set",
        Some(crate::protocol::MaskPhase::Unmask) => "revealed their mask shares",
        _ => "submitted",
    };
    let mut s = format!("{phase}: {n} of {} {did}", info.roster.len().max(n));
    if !info.missing.is_empty() {
        s.push_str(&format!(", waiting for {}", info.missing.join(", ")));
    }
    if n < info.min_contributors && !info.masked {
        s.push_str(&format!(", needs at least {}", info.min_contributors));
    }
    let keys = info.mask_phase == Some(crate::protocol::MaskPhase::Keys);
    match info.deadline_unix {
        Some(d) if d <= crate::protocol::now_ms() / 1000 => s.push_str(&format!(
            " (its deadline has passed: it goes on as soon as at least {} are in)",
            info.min_contributors
        )),
        Some(d) if keys => {
            let now = crate::protocol::now_ms() / 1000;
            s.push_str(&format!(
                " (at its deadline, in {} s, the roster is fixed with whoever announced, if at \
                 least {})",
                d.saturating_sub(now),
                info.min_contributors
            ));
        }
        Some(d) if info.masked => {
            let now = crate::protocol::now_ms() / 1000;
            s.push_str(&format!(
                " (masked: at its deadline, in {} s, the round restarts, without the missing if \
                 enough have uploaded)",
                d.saturating_sub(now)
            ));
        }
        Some(d) => {
            let now = crate::protocol::now_ms() / 1000;
            s.push_str(&format!(
                " (closes with at least {} at its deadline, in {} s)",
                info.min_contributors,
                d.saturating_sub(now)
            ));
        }
        None => s.push_str(" (the statistics round waits for everyone)"),
    }
    s
}

/// A site's local shuffling seed: the plan's seed mixed with its id, so that
/// sites shuffle differently and a restarted site exactly as before.
pub fn site_seed(seed: u64, id: &str) -> u64 {
    use sha2::Digest;
    let d = sha2::Sha256::digest(id.as_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    seed ^ u64::from_le_bytes(b)
}

/// What the model file records about a run.
pub struct RunRecord {
    /// `model::FEDERATED` or `model::SIMULATED`.
    pub kind: &'static str,
    pub data_files: Vec<String>,
    pub server: Option<String>,
    /// Who the site is (its client id), for messages.
    pub site: String,
}

/// The plan's rounds over any exchange (encrypted through an aggregator, or
/// the simulation's plaintext baseline): hold-out, standardization, rounds,
/// and the global model file. `seed` is the site's shuffling seed (public:
/// the plan's seed and the site's id); `dp_secret` keys DP-SGD's batches
/// and noise (`None`: fresh from the operating system).
#[allow(clippy::too_many_arguments)]
pub fn run_plan(
    exchange: &mut dyn Exchange,
    plan: &Plan,
    plan_fingerprint: &str,
    seed: u64,
    dp_secret: Option<&SiteSecret>,
    data: &Dataset,
    record: RunRecord,
    on_event: &mut dyn FnMut(&ClientEvent),
    cancel: &AtomicBool,
) -> Result<FederatedRun, SessionError> {
    run_plan_with(
        exchange,
        plan,
        plan_fingerprint,
        seed,
        dp_secret,
        (data, None),
        record,
        ServerCheckpoint::default(),
        on_event,
        cancel,
    )
}

/// [`run_plan`] with this site's test rows for the plan's federated test,
/// resuming the server optimizer's state from `checkpoint` and saving it
/// there after each training round.
#[allow(clippy::too_many_arguments)]
pub fn run_plan_with(
    exchange: &mut dyn Exchange,
    plan: &Plan,
    plan_fingerprint: &str,
    seed: u64,
    dp_secret: Option<&SiteSecret>,
    (data, test): (&Dataset, Option<&Dataset>),
    record: RunRecord,
    checkpoint: ServerCheckpoint,
    on_event: &mut dyn FnMut(&ClientEvent),
    cancel: &AtomicBool,
) -> Result<FederatedRun, SessionError> {
    if plan.gbdt().is_some() {
        return Err(SessionError::GbdtPlan);
    }
    let t = &plan.training;
    let (train, validation) = held_out(plan, data)?;
    let cfg = loop_config(
        plan,
        plan_fingerprint,
        seed,
        dp_secret,
        test,
        &record.site,
        checkpoint,
    );
    let outcome = run_client_loop(
        exchange,
        &train,
        validation.as_ref(),
        &cfg,
        on_event,
        cancel,
    )
    .map_err(|e| match e {
        LoopError::Cancelled => SessionError::Cancelled,
        e => e.into(),
    })?;
    if outcome.cancelled {
        return Err(SessionError::Cancelled);
    }
    let rows = outcome.global_rows.round() as usize;
    let mut model = ModelFile::new(
        outcome.encoder.clone(),
        outcome.scaler.clone(),
        plan.target(),
        outcome.target_scaling,
        &*outcome.model,
        Provenance::federated(
            record.kind,
            record.data_files,
            rows,
            cfg.train.clone(),
            t.rounds,
            plan_fingerprint.to_string(),
            record.server,
        ),
    );
    model.provenance.privacy = outcome.privacy;
    model.provenance.federated = outcome.federated.clone().map(|mut f| {
        f.best_params = None;
        f
    });
    Ok(FederatedRun {
        model,
        outcome,
        train_rows: train.rows(),
    })
}

/// The rows a site trains on and, with `training.validation_share`, the
/// rows it holds out (stratified, seeded by the plan).
pub(crate) fn held_out(
    plan: &Plan,
    data: &Dataset,
) -> Result<(Dataset, Option<Dataset>), SessionError> {
    let t = &plan.training;
    if t.validation_share > 0.0 {
        let (a, b) = stratified_split(data, t.validation_share, t.sgd.seed)?;
        Ok((a, Some(b)))
    } else {
        Ok((data.clone(), None))
    }
}

/// The client loop's settings for `plan` at `site`.
fn loop_config(
    plan: &Plan,
    plan_fingerprint: &str,
    seed: u64,
    dp_secret: Option<&SiteSecret>,
    test: Option<&Dataset>,
    site: &str,
    checkpoint: ServerCheckpoint,
) -> LoopConfig {
    let t = &plan.training;
    LoopConfig {
        site: site.to_string(),
        rounds: t.rounds,
        train: TrainConfig { seed, ..t.local() },
        architecture: plan.model.architecture(),
        init_seed: t.sgd.seed,
        missing: MissingPolicy {
            categorical: plan.preprocessing.categorical_missing,
            indicators: plan.preprocessing.missing_indicators,
        },
        missing_tokens: plan.preprocessing.missing.clone(),
        layout: plan.layout(),
        discovered: plan.discovered_columns(),
        vocabulary: plan.preprocessing.vocabulary,
        dp: plan.privacy.dp,
        dp_secret: dp_secret.map(|s| (s.clone(), plan_fingerprint.to_string())),
        evaluation: plan.evaluation,
        test: test.cloned(),
        checkpoint,
        gbdt: crate::client::GbdtLoop::of(plan),
    }
}

/// The result of local (plaintext, one-machine) training.
#[derive(Debug, Clone)]
pub struct LocalRun {
    pub model: ModelFile,
    pub summary: TrainSummary,
    /// Metrics on the rows held out (with a validation share > 0).
    pub validation: Option<Evaluation>,
    /// Metrics on the training rows.
    pub training: Evaluation,
}

/// How local training prepares the data: the model, the settings, the
/// rows held out, and how missing cells are filled.
#[derive(Debug, Clone)]
pub struct LocalTraining {
    pub architecture: Architecture,
    pub train: TrainConfig,
    /// Share of the rows held out (stratified by class) to validate.
    pub validation_share: f64,
    pub missing: MissingPolicy,
    /// Cell texts that were read as missing (recorded in the model file).
    pub missing_tokens: Vec<String>,
    /// DP-SGD for the rows.
    pub dp: Option<crate::privacy::DpSettings>,
}

/// Trains on one machine: hold out the validation share of the rows
/// (stratified by class), fit the preprocessing (imputation, categories,
/// standardization, a regression target's scaling) on the rest, run SGD.
/// `on_epoch` may stop early (`Break`), which is reported as
/// [`SessionError::Cancelled`].
pub fn train_local(
    data: &Dataset,
    settings: &LocalTraining,
    data_files: Vec<String>,
    on_epoch: &mut dyn FnMut(&EpochStats) -> ControlFlow<()>,
) -> Result<LocalRun, SessionError> {
    let (architecture, train, validation_share) = (
        &settings.architecture,
        &settings.train,
        settings.validation_share,
    );
    let (fit, val) = if validation_share > 0.0 {
        let (a, b) = stratified_split(data, validation_share, train.seed)?;
        (a, Some(b))
    } else {
        (data.clone(), None)
    };
    let regression = fit.label.kind() == crate::data::TaskKind::Regression;
    let stats = RawStats::of(&fit.columns, &fit.x, regression.then_some(&fit.y));
    let mut encoder = Encoder::new(
        &fit.columns,
        settings.missing,
        settings.missing_tokens.clone(),
    );
    let scaler = encoder.fit(&stats);
    let x = scaler.transformed(&encoder.transform(&fit.x));
    let target_scaling = stats
        .target
        .map(|(sum, sum_sq)| TargetScaling::from_moments(stats.rows, sum, sum_sq));
    let y = match &target_scaling {
        Some(t) => fit.y.mapv(|v| t.scale(v)),
        None => fit.y.clone(),
    };
    let head = Head::for_target(&fit.label);
    let mut model = crate::model::build(architecture, x.ncols(), head, train.seed)?;
    let budget = match &settings.dp {
        Some(d) => Some(d.budget(fit.rows(), train.batch_size, train.epochs as u64)?),
        None => None,
    };
    // With a budget, as many epochs as it allows (local training has no
    // rounds to stop between).
    let epochs = match budget.as_ref().and_then(|b| b.max_epsilon.map(|m| (b, m))) {
        Some((b, max)) => {
            let mut e = train.epochs;
            while e > 0
                && b.epsilon(b.steps_per_epoch * e as u64)
                    .unwrap_or(f64::INFINITY)
                    > max * (1.0 + 1e-9)
            {
                e -= 1;
            }
            if e == 0 {
                return Err(SessionError::EpochOverBudget { max });
            }
            e
        }
        None => train.epochs,
    };
    let train = &TrainConfig {
        dp: budget.as_ref().map(|b| b.dp.clone()),
        epochs,
        ..train.clone()
    };
    let summary = crate::model::train(&mut *model, &x, &y, train, on_epoch)?;
    let privacy = budget.and_then(|b| b.record(summary.dp_steps));
    if summary.cancelled {
        return Err(SessionError::Cancelled);
    }
    let mut file = ModelFile::new(
        encoder,
        scaler,
        fit.label.clone(),
        target_scaling,
        &*model,
        Provenance::centralized(data_files, fit.rows(), train.clone()),
    );
    file.provenance.privacy = privacy;
    let training = file.evaluate(&fit.x, &fit.y.to_vec())?;
    let validation = match &val {
        Some(v) => Some(file.evaluate(&v.x, &v.y.to_vec())?),
        None => None,
    };
    Ok(LocalRun {
        model: file,
        summary,
        validation,
        training,
    })
}

/// What the federation would refuse of a site's rows mid-way, checked
/// before it joins (and by `fedhe plan check`): statistics beyond what the
/// statistics round adds in `limb_bits` limbs (the key's), and a
/// `target_epsilon` this site's training rows cannot reach. The rows are
/// split as [`run_plan`] splits them.
pub fn check_site(plan: &Plan, data: &Dataset, limb_bits: i32) -> Result<(), SessionError> {
    let t = &plan.training;
    let split;
    let train = if t.validation_share > 0.0 {
        split = stratified_split(data, t.validation_share, t.sgd.seed)?;
        &split.0
    } else {
        data
    };
    crate::client::check_statistics(train, limb_bits).map_err(LoopError::from)?;
    if let Some(dp) = &plan.privacy.dp {
        let epochs = t.rounds.saturating_mul(t.sgd.epochs as u64);
        dp.budget(train.rows(), t.sgd.batch_size, epochs)?;
    }
    Ok(())
}
