//! `AggregatorClient`: a blocking HTTP client (ureq) for the aggregator API.
//!
//! Connection errors, 5xx answers (the aggregator's request had no effect:
//! a disk full, a state folder gone) and 408/429 are retried with
//! exponential backoff until the retry policy's limit (a federation's: the
//! round deadline); any other 4xx is never retried and becomes
//! [`ClientError::Refused`] with the server's explanation, as does the last
//! 5xx once the limit passed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ureq::http;

use crate::protocol::{
    API_PREFIX, ATTEMPT_HEADER, AnnounceRequest, CONTRIBUTORS_HEADER, ClientInfo, CloseResponse,
    ErrorBody, ErrorCode, HealthResponse, KeyReport, KeySet, LeaveRequest, MAX_WAIT_MS,
    MEMBER_HEADER, PLAN_HEADER, PlanResponse, RegisterRequest, RegisterResponse, RevealUpload,
    RoundInfo, RoundState, SESSION_HEADER, SessionResponse, SharesFor, SharesUpload,
    StatusResponse, SurvivorSignature, UploadResponse,
};

use super::wait::wait_round;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The aggregator answered with an error status.
    #[error("the aggregator refused the request ({status}, {code}): {detail}")]
    Refused {
        status: u16,
        code: ErrorCode,
        detail: String,
    },
    /// No answer after all retries.
    #[error("cannot reach the aggregator at {url} (gave up after {attempts} attempts): {message}")]
    Unreachable {
        url: String,
        attempts: u32,
        message: String,
    },
    /// An answer we cannot understand.
    #[error("unexpected answer from the aggregator: {0}")]
    Protocol(String),
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("cancelled")]
    Cancelled,
    #[error("timed out: {0}")]
    Timeout(String),
}

impl ClientError {
    /// The server's error code, if this is a refusal.
    pub fn code(&self) -> Option<&ErrorCode> {
        match self {
            ClientError::Refused { code, .. } => Some(code),
            _ => None,
        }
    }
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Retries on connection errors: capped exponential backoff with jitter,
/// until `attempts` or `give_up_after` runs out, whichever comes first.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Total attempts (at least 1).
    pub attempts: u32,
    /// Stop retrying once this long has passed since the first attempt.
    pub give_up_after: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            give_up_after: Duration::from_secs(60),
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// Rides out an aggregator outage of up to `outage` (a federation's
    /// round deadline): backoff doubling from 0.5 s to at most 8 s.
    pub fn riding_out(outage: Duration) -> RetryPolicy {
        RetryPolicy {
            attempts: u32::MAX,
            give_up_after: outage,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
        }
    }

    /// The pause before attempt `n + 1` (1-based `n`), jittered by ±25 %
    /// so that many clients do not come back in lockstep, and capped.
    fn backoff(&self, n: u32) -> Duration {
        let base = self
            .initial_backoff
            .saturating_mul(1u32 << n.saturating_sub(1).min(16))
            .min(self.max_backoff);
        let jitter = 0.75 + 0.5 * rand::random::<f64>();
        base.mul_f64(jitter).min(self.max_backoff)
    }
}

/// Called before each retry with what failed and how long until the next
/// attempt ("aggregator unreachable, retrying in 8 s").
pub type RetryNotifier = Arc<dyn Fn(&str, Duration) + Send + Sync>;

/// Blocking client of one aggregator. Cheap to clone (shares counters).
#[derive(Clone)]
pub struct AggregatorClient {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
    retry: RetryPolicy,
    on_retry: Option<RetryNotifier>,
    /// Plan fingerprint sent with every update.
    plan: Option<String>,
    max_download_bytes: u64,
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
    retries: Arc<AtomicU64>,
    /// Set by the user's Stop: ends a retry's backoff (and every later
    /// request) with [`ClientError::Cancelled`].
    cancel: Option<Arc<AtomicBool>>,
    /// The aggregator session this client joined (`x-fedhe-session` on
    /// every request): a reset aggregator answers `session_reset`.
    session: Option<String>,
    /// Before a token: reads of `/plan` and `/status` are signed with this
    /// key's membership key (`x-fedhe-member`).
    member: Option<Arc<crate::crypto::SecretKey>>,
}

/// Longest slice of a backoff between two looks at the cancel flag.
const CANCEL_CHECK: Duration = Duration::from_millis(50);

impl std::fmt::Debug for AggregatorClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregatorClient")
            .field("base", &self.base)
            .field("has_token", &self.token.is_some())
            .finish()
    }
}

fn config_builder() -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope> {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_global(Some(Duration::from_millis(MAX_WAIT_MS + 60_000)))
        .user_agent(concat!("fedhe/", env!("CARGO_PKG_VERSION")))
}

fn is_transport_error(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Io(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::HostNotFound
            | ureq::Error::Timeout(_)
    )
}

impl AggregatorClient {
    /// A client of the aggregator at `url` (e.g. `http://10.0.0.5:8080`).
    /// HTTPS URLs are verified against the WebPKI roots.
    pub fn new(url: &str) -> AggregatorClient {
        Self::with_agent(url, ureq::Agent::new_with_config(config_builder().build()))
    }

    /// HTTPS with a specific (e.g. self-signed) certificate as the only root.
    pub fn with_root_cert_pem(url: &str, cert_pem: &[u8]) -> Result<AggregatorClient, ClientError> {
        let cert = ureq::tls::Certificate::from_pem(cert_pem)
            .map_err(|e| ClientError::Tls(format!("certificate PEM: {e}")))?;
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::new_with_certs(&[cert]))
            .build();
        let agent = ureq::Agent::new_with_config(config_builder().tls_config(tls).build());
        Ok(Self::with_agent(url, agent))
    }

    fn with_agent(url: &str, agent: ureq::Agent) -> AggregatorClient {
        AggregatorClient {
            agent,
            base: url.trim_end_matches('/').to_string(),
            token: None,
            retry: RetryPolicy::default(),
            on_retry: None,
            plan: None,
            max_download_bytes: 1 << 30,
            sent: Arc::new(AtomicU64::new(0)),
            received: Arc::new(AtomicU64::new(0)),
            retries: Arc::new(AtomicU64::new(0)),
            cancel: None,
            session: None,
            member: None,
        }
    }

    /// Sends aggregator session `id` (from [`health`](Self::health)) with
    /// every request from now on: an aggregator whose state was reset
    /// answers 410 `session_reset` instead of a bare 401.
    pub fn with_session(mut self, id: impl Into<String>) -> Self {
        self.session = Some(id.into());
        self
    }

    /// The aggregator session this client joined, once known.
    pub fn session(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// Signs reads without a token (the plan and status before registering)
    /// with `key`'s membership key; needs [`with_session`](Self::with_session).
    pub fn with_member_key(mut self, key: Arc<crate::crypto::SecretKey>) -> Self {
        self.member = Some(key);
        self
    }

    /// Ends retries, backoffs and further requests with
    /// [`ClientError::Cancelled`] once `cancel` is set (noticed within
    /// 50 ms while backing off; a request in flight runs to its answer or
    /// its timeout).
    pub fn with_cancel(mut self, cancel: Arc<AtomicBool>) -> Self {
        self.cancel = Some(cancel);
        self
    }

    fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    }

    /// Uses `token` (a client token or the operator token) from now on.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Reports every retry (for "aggregator unreachable, retrying in …").
    pub fn on_retry(mut self, notify: RetryNotifier) -> Self {
        self.on_retry = Some(notify);
        self
    }

    /// Sends plan `fingerprint` with every update from now on.
    pub fn for_plan(mut self, fingerprint: impl Into<String>) -> Self {
        self.plan = Some(fingerprint.into());
        self
    }

    /// The plan fingerprint sent with every update (hex), if set.
    pub fn plan_fingerprint(&self) -> Option<&str> {
        self.plan.as_deref()
    }

    /// Bounds the size of a downloaded sum (default 1 GiB).
    pub fn with_max_download_bytes(mut self, n: u64) -> Self {
        self.max_download_bytes = n;
        self
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Body bytes sent so far (requests of this client and its clones).
    pub fn bytes_sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Body bytes received so far.
    pub fn bytes_received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    fn request(
        &self,
        method: http::Method,
        path: &str,
        body: Option<(&[u8], &str)>,
    ) -> Result<http::Response<ureq::Body>, ClientError> {
        self.request_with(method, path, body, None)
    }

    /// [`request`](Self::request) with one more header.
    fn request_with(
        &self,
        method: http::Method,
        path: &str,
        body: Option<(&[u8], &str)>,
        header: Option<(&str, &str)>,
    ) -> Result<http::Response<ureq::Body>, ClientError> {
        let url = format!("{}{API_PREFIX}{path}", self.base);
        let attempts = self.retry.attempts.max(1);
        let started = Instant::now();
        let mut last = String::new();
        let mut attempt = 0u32;
        let may_retry =
            |attempt: u32| attempt < attempts && started.elapsed() < self.retry.give_up_after;
        while attempt < attempts {
            if self.cancelled() {
                return Err(ClientError::Cancelled);
            }
            attempt += 1;
            let mut b = http::Request::builder().method(method.clone()).uri(&url);
            if let Some(t) = &self.token {
                b = b.header("authorization", format!("Bearer {t}"));
            } else if let (Some(key), Some(session)) = (&self.member, &self.session)
                && method == http::Method::GET
            {
                let at = crate::protocol::now_ms();
                let sig = key.sign_read(session, at, &format!("{API_PREFIX}{path}"));
                b = b.header(
                    MEMBER_HEADER,
                    format!("{at}:{}", crate::protocol::hex(&sig)),
                );
            }
            if let Some(s) = &self.session {
                b = b.header(SESSION_HEADER, s.as_str());
            }
            if let Some(p) = &self.plan {
                b = b.header(PLAN_HEADER, p.as_str());
            }
            if let Some((name, value)) = header {
                b = b.header(name, value);
            }
            let result = match body {
                Some((bytes, ctype)) => b
                    .header("content-type", ctype)
                    .body(bytes)
                    .map_err(|e| ClientError::Protocol(format!("building request: {e}")))
                    .map(|req| self.agent.run(req))?,
                None => b
                    .body(())
                    .map_err(|e| ClientError::Protocol(format!("building request: {e}")))
                    .map(|req| self.agent.run(req))?,
            };
            match result {
                Ok(resp) => {
                    if let Some((bytes, _)) = body {
                        self.sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    }
                    if resp.status().is_success() {
                        return Ok(resp);
                    }
                    let status = resp.status().as_u16();
                    let refused = refusal(resp);
                    // 408 (a body that took too long), 429 (busy) and a
                    // 5xx (the request had no effect: a disk full, a state
                    // folder gone) say "try again": ride them out like a
                    // lost connection, until the policy's limit.
                    let again = matches!(status, 408 | 429) || status >= 500;
                    if again && may_retry(attempt) {
                        last = refused.to_string();
                        self.pause_before_retry(&last, attempt, started);
                        continue;
                    }
                    return Err(refused);
                }
                Err(e) if is_transport_error(&e) && may_retry(attempt) => {
                    last = e.to_string();
                    self.pause_before_retry(&last, attempt, started);
                }
                Err(e) => {
                    last = e.to_string();
                    if !is_transport_error(&e) {
                        return Err(ClientError::Protocol(last));
                    }
                    break;
                }
            }
        }
        Err(ClientError::Unreachable {
            url,
            attempts: attempt,
            message: last,
        })
    }

    /// Counts a retry, says so, and waits the backoff (never past the
    /// retry policy's limit).
    fn pause_before_retry(&self, what: &str, attempt: u32, started: Instant) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        let pause = self
            .retry
            .backoff(attempt)
            .min(self.retry.give_up_after.saturating_sub(started.elapsed()));
        if let Some(notify) = &self.on_retry {
            notify(what, pause);
        }
        // In slices, so that a Stop ends the wait (the loop then returns
        // `Cancelled` before the next attempt).
        let until = Instant::now() + pause;
        while !self.cancelled() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(CANCEL_CHECK));
        }
    }

    fn json<T: serde::de::DeserializeOwned>(
        &self,
        resp: http::Response<ureq::Body>,
    ) -> Result<T, ClientError> {
        let mut body = resp.into_body();
        let bytes = body
            .with_config()
            .limit(16 * 1024 * 1024)
            .read_to_vec()
            .map_err(|e| ClientError::Protocol(format!("reading answer: {e}")))?;
        self.received
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Protocol(format!("answer JSON: {e}")))
    }

    /// Liveness, and the aggregator's session id.
    pub fn health(&self) -> Result<HealthResponse, ClientError> {
        let r = self.request(http::Method::GET, "/health", None)?;
        self.json(r)
    }

    /// The federation plan the aggregator serves (a member's token, or a
    /// signed read: see [`with_member_key`](Self::with_member_key)).
    pub fn plan(&self) -> Result<PlanResponse, ClientError> {
        let r = self.request(http::Method::GET, "/plan", None)?;
        self.json(r)
    }

    pub fn status(&self) -> Result<StatusResponse, ClientError> {
        let r = self.request(http::Method::GET, "/status", None)?;
        self.json(r)
    }

    /// Registers and keeps the returned token for later calls.
    pub fn register(&mut self, req: &RegisterRequest) -> Result<RegisterResponse, ClientError> {
        let body = serde_json::to_vec(req).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let r = self.request(
            http::Method::POST,
            "/clients",
            Some((&body, "application/json")),
        )?;
        let resp: RegisterResponse = self.json(r)?;
        self.token = Some(resp.token.clone());
        Ok(resp)
    }

    pub fn clients(&self) -> Result<Vec<ClientInfo>, ClientError> {
        let r = self.request(http::Method::GET, "/clients", None)?;
        self.json(r)
    }

    /// Round info; with `wait`, long-polls until the round closes (or the wait ends).
    pub fn round(&self, round: u64, wait: Option<Duration>) -> Result<RoundInfo, ClientError> {
        let path = match wait {
            Some(w) => format!(
                "/rounds/{round}?wait_ms={}",
                w.as_millis().min(MAX_WAIT_MS.into())
            ),
            None => format!("/rounds/{round}"),
        };
        let r = self.request(http::Method::GET, &path, None)?;
        self.json(r)
    }

    /// Blocks until `round` is closed, `cancel` is set or `timeout` passes.
    pub fn wait_closed(
        &self,
        round: u64,
        cancel: Option<&AtomicBool>,
        timeout: Duration,
    ) -> Result<RoundInfo, ClientError> {
        wait_round(
            timeout,
            cancel,
            || format!("round {round} did not close within {timeout:?}"),
            |wait| {
                let info = self.round(round, Some(wait))?;
                Ok((info.state == RoundState::Closed).then_some(info))
            },
        )
    }

    /// Uploads an encoded `EncryptedUpdate` for `round`.
    ///
    /// If a connection error hid the answer of an accepted upload, the retry
    /// meets `duplicate_submission`; the upload is then reported as accepted.
    pub fn upload(&self, round: u64, update: &[u8]) -> Result<UploadResponse, ClientError> {
        self.upload_for(round, None, update)
    }

    /// [`upload`](Self::upload) naming the round's attempt the update was
    /// made (and masked) for.
    pub fn upload_for(
        &self,
        round: u64,
        attempt: Option<u32>,
        update: &[u8],
    ) -> Result<UploadResponse, ClientError> {
        let path = format!("/rounds/{round}/update");
        let retries_before = self.retries.load(Ordering::Relaxed);
        let attempt = attempt.map(|a| a.to_string());
        match self.request_with(
            http::Method::PUT,
            &path,
            Some((update, "application/octet-stream")),
            attempt.as_deref().map(|a| (ATTEMPT_HEADER, a)),
        ) {
            Ok(r) => self.json(r),
            Err(e)
                if e.code() == Some(&ErrorCode::DuplicateSubmission)
                    && self.retries.load(Ordering::Relaxed) > retries_before =>
            {
                let info = self.round(round, None)?;
                Ok(UploadResponse {
                    round,
                    contributors: info.contributors,
                    round_closed: info.state == RoundState::Closed,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Announces this client's signed mask key for `round`'s attempt.
    pub fn announce(&self, round: u64, req: &AnnounceRequest) -> Result<KeySet, ClientError> {
        let body = serde_json::to_vec(req)
            .map_err(|e| ClientError::Protocol(format!("mask key JSON: {e}")))?;
        let r = self.request(
            http::Method::PUT,
            &format!("/rounds/{round}/keys"),
            Some((&body, "application/json")),
        )?;
        self.json(r)
    }

    /// Sends a JSON `body` with `method` to `path` and reads the JSON
    /// answer (`what` names the body in an encoding error).
    fn send_json<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        method: http::Method,
        path: &str,
        body: &B,
        what: &str,
    ) -> Result<T, ClientError> {
        let body = serde_json::to_vec(body)
            .map_err(|e| ClientError::Protocol(format!("{what} JSON: {e}")))?;
        let r = self.request(method, path, Some((&body, "application/json")))?;
        self.json(r)
    }

    /// Double masking, upload phase: this client's sealed share bundles
    /// for `round`'s attempt (before its update).
    pub fn put_shares(&self, round: u64, req: &SharesUpload) -> Result<KeySet, ClientError> {
        let path = format!("/rounds/{round}/shares");
        self.send_json(http::Method::PUT, &path, req, "shares")
    }

    /// Double masking, unmask phase: the bundles addressed to this client.
    pub fn shares_for(&self, round: u64) -> Result<SharesFor, ClientError> {
        let r = self.request(http::Method::GET, &format!("/rounds/{round}/shares"), None)?;
        self.json(r)
    }

    /// Double masking, consistency phase: this survivor's signature of the
    /// survivor set it was shown.
    pub fn sign_survivors(
        &self,
        round: u64,
        req: &SurvivorSignature,
    ) -> Result<KeySet, ClientError> {
        let path = format!("/rounds/{round}/survivors");
        self.send_json(http::Method::PUT, &path, req, "survivor signature")
    }

    /// Double masking, unmask phase: this survivor's revealed shares.
    pub fn reveal(&self, round: u64, req: &RevealUpload) -> Result<KeySet, ClientError> {
        let path = format!("/rounds/{round}/reveal");
        self.send_json(http::Method::PUT, &path, req, "reveal")
    }

    /// Reports a partner's unusable mask key: the aggregator restarts the
    /// attempt without it.
    pub fn report_key(&self, round: u64, req: &KeyReport) -> Result<KeySet, ClientError> {
        let path = format!("/rounds/{round}/report");
        self.send_json(http::Method::POST, &path, req, "key report")
    }

    /// The open round's attempt and relayed mask keys; with `wait`, the
    /// aggregator answers at the next change (or after `wait`).
    pub fn key_set(&self, round: u64, wait: Option<Duration>) -> Result<KeySet, ClientError> {
        let path = match wait {
            Some(w) => format!(
                "/rounds/{round}/keys?wait_ms={}",
                w.as_millis().min(MAX_WAIT_MS.into())
            ),
            None => format!("/rounds/{round}/keys"),
        };
        let r = self.request(http::Method::GET, &path, None)?;
        self.json(r)
    }

    /// Leaves the open `round` (this site cannot go on, for `reason`): the
    /// others proceed as with a dropout. No retries: a site that leaves is
    /// already failing, and the deadline covers an aggregator it cannot
    /// reach. Sent even once the user's Stop is set (that Stop is why).
    pub fn leave(&self, round: u64, reason: &str) -> Result<RoundInfo, ClientError> {
        let body = serde_json::to_vec(&LeaveRequest {
            reason: reason.to_string(),
        })
        .map_err(|e| ClientError::Protocol(format!("leave JSON: {e}")))?;
        let mut once = self.clone().with_retry(RetryPolicy {
            attempts: 1,
            ..self.retry
        });
        once.cancel = None;
        let r = once.request(
            http::Method::POST,
            &format!("/rounds/{round}/leave"),
            Some((&body, "application/json")),
        )?;
        self.json(r)
    }

    /// Downloads the published sum of `round`: (encoded `Accumulator`, contributors).
    pub fn download_sum(&self, round: u64) -> Result<(Vec<u8>, u32), ClientError> {
        let r = self.request(http::Method::GET, &format!("/rounds/{round}/sum"), None)?;
        let contributors = r
            .headers()
            .get(CONTRIBUTORS_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| ClientError::Protocol("sum without contributor count".into()))?;
        let bytes = r
            .into_body()
            .with_config()
            .limit(self.max_download_bytes)
            .read_to_vec()
            .map_err(|e| ClientError::Protocol(format!("reading the sum: {e}")))?;
        self.received
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok((bytes, contributors))
    }

    /// Operator: close `round` and publish its sum.
    pub fn close_round(&self, round: u64) -> Result<CloseResponse, ClientError> {
        let r = self.request(http::Method::POST, &format!("/rounds/{round}/close"), None)?;
        self.json(r)
    }

    /// Operator: load the session's public key file (and model length).
    pub fn load_public_key(
        &self,
        public_key_file: &[u8],
        max_len: Option<usize>,
    ) -> Result<SessionResponse, ClientError> {
        let path = match max_len {
            Some(n) => format!("/session?max_len={n}"),
            None => "/session".to_string(),
        };
        let r = self.request(
            http::Method::PUT,
            &path,
            Some((public_key_file, "application/octet-stream")),
        )?;
        self.json(r)
    }
}

fn refusal(resp: http::Response<ureq::Body>) -> ClientError {
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let parsed = body
        .with_config()
        .limit(64 * 1024)
        .read_to_vec()
        .ok()
        .and_then(|b| serde_json::from_slice::<ErrorBody>(&b).ok());
    match parsed {
        Some(e) => ClientError::Refused {
            status,
            code: e.error,
            detail: e.detail,
        },
        // Not an answer of a FedHE aggregator (a proxy's, say).
        None => ClientError::Refused {
            status,
            code: ErrorCode::Unknown("unknown".into()),
            detail: format!("HTTP {status} without a FedHE error body"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_with_jitter() {
        let p = RetryPolicy::riding_out(Duration::from_secs(600));
        for (n, base) in [
            (1, 0.5),
            (2, 1.0),
            (3, 2.0),
            (4, 4.0),
            (5, 8.0),
            (9, 8.0),
            (40, 8.0),
        ] {
            for _ in 0..20 {
                let b = p.backoff(n).as_secs_f64();
                assert!(
                    (0.75 * base..=f64::min(1.25 * base, 8.0)).contains(&b),
                    "attempt {n}: {b} s"
                );
            }
        }
    }

    #[test]
    fn an_outage_is_ridden_out_until_the_limit_and_reported() {
        // Nothing listens on this port (bound, then closed).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(1);
        let said = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s2 = said.clone();
        let api = AggregatorClient::new(&format!("http://127.0.0.1:{port}"))
            .with_retry(RetryPolicy {
                attempts: u32::MAX,
                give_up_after: Duration::from_millis(600),
                initial_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(100),
            })
            .on_retry(Arc::new(move |what: &str, pause: Duration| {
                if let Ok(mut v) = s2.lock() {
                    v.push(format!("{what} / {pause:?}"));
                }
            }));
        let t = Instant::now();
        let e = api.status().unwrap_err();
        assert!(matches!(e, ClientError::Unreachable { .. }), "{e}");
        assert!(
            t.elapsed() >= Duration::from_millis(550),
            "{:?}",
            t.elapsed()
        );
        assert!(t.elapsed() < Duration::from_secs(5));
        assert!(said.lock().map(|v| v.len() >= 3).unwrap_or(false));
    }

    #[test]
    fn a_cancel_ends_the_backoff_at_once() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(1);
        let cancel = Arc::new(AtomicBool::new(false));
        let c2 = cancel.clone();
        // Riding out a ten-minute outage with 8 s pauses, stopped at the
        // first pause.
        let api = AggregatorClient::new(&format!("http://127.0.0.1:{port}"))
            .with_retry(RetryPolicy::riding_out(Duration::from_secs(600)))
            .with_cancel(cancel.clone())
            .on_retry(Arc::new(move |_: &str, _: Duration| {
                c2.store(true, Ordering::Relaxed);
            }));
        let t = Instant::now();
        let e = api.status().unwrap_err();
        assert!(matches!(e, ClientError::Cancelled), "{e}");
        assert!(
            t.elapsed() < Duration::from_millis(300),
            "{:?}",
            t.elapsed()
        );
    }
}
