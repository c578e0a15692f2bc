//! HTTP routes (axum). Handlers parse, authenticate and bound the request,
//! then hand over to [`Aggregator`]; they never touch the file system.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use http_body_util::BodyExt;
use tokio::sync::{Semaphore, watch};

use crate::crypto::PublicKeyFile;
use crate::protocol::{
    API_PREFIX, ATTEMPT_HEADER, AnnounceRequest, CONTRIBUTORS_HEADER, CloseResponse,
    HealthResponse, KeyReport, KeySet, LeaveRequest, MAX_WAIT_MS, MEMBER_HEADER, PLAN_HEADER,
    PlanResponse, RegisterRequest, RevealUpload, RoundState, SESSION_HEADER, SessionResponse,
    SharesFor, SharesUpload, SurvivorSignature,
};

use super::error::ServerError;
use super::state::{Aggregator, Caller, SecAggBody};

/// Largest JSON control body.
const MAX_JSON_BYTES: usize = 16 * 1024;
/// Largest public key file.
const MAX_KEY_BYTES: usize = 1024 * 1024;
/// Longest request target (414 above, with a JSON body).
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Largest request header block (431 above, with a JSON body).
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// How long a request body may take.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeouts {
    /// Longest pause between two pieces of a body.
    pub idle: Duration,
    /// Longest time for a whole body.
    pub total: Duration,
}

/// State shared by all handlers.
pub struct HttpState {
    agg: Mutex<Aggregator>,
    /// Number of the open round; bumped on every close (long-poll wake-up).
    open_round: watch::Sender<u64>,
    /// Bumped on every change a waiting client may care about (mask keys,
    /// attempts, closes).
    changes: watch::Sender<u64>,
    /// Bounds how many update bodies are buffered at once (memory bound).
    upload_permits: Semaphore,
    /// Clients with an update body in flight: one each, so that one client
    /// cannot take every upload slot.
    uploading: Mutex<HashSet<String>>,
    timeouts: BodyTimeouts,
}

impl HttpState {
    pub fn new(
        agg: Aggregator,
        max_concurrent_uploads: usize,
        timeouts: BodyTimeouts,
    ) -> Arc<HttpState> {
        let (tx, _rx) = watch::channel(agg.open_round());
        Arc::new(HttpState {
            agg: Mutex::new(agg),
            open_round: tx,
            changes: watch::channel(0).0,
            upload_permits: Semaphore::new(max_concurrent_uploads.max(1)),
            uploading: Mutex::new(HashSet::new()),
            timeouts,
        })
    }

    /// Locks the state. A poisoned lock (a panic while holding it) is taken
    /// over: every mutation is all-or-nothing, so the state stays coherent.
    pub fn lock(&self) -> MutexGuard<'_, Aggregator> {
        self.agg.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn notify(&self) {
        let open = self.lock().open_round();
        self.open_round.send_replace(open);
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

type AppState = Arc<HttpState>;

pub fn router(shared: AppState) -> Router {
    let api = Router::new()
        .route("/health", get(health))
        .route("/status", get(status))
        .route("/session", put(load_session))
        .route("/plan", get(get_plan).put(put_plan))
        .route("/clients", post(register).get(list_clients))
        .route("/clients/{id}/reset", post(reset_client))
        .route("/rounds/{round}", get(round_info))
        .route("/rounds/{round}/update", put(upload))
        .route("/rounds/{round}/keys", get(key_set).put(announce))
        .route("/rounds/{round}/shares", get(shares_for).put(put_shares))
        .route("/rounds/{round}/survivors", put(sign_survivors))
        .route("/rounds/{round}/reveal", put(reveal))
        .route("/rounds/{round}/report", post(report_key))
        .route("/rounds/{round}/close", post(close_round))
        .route("/rounds/{round}/leave", post(leave))
        .route("/rounds/{round}/sum", get(download_sum))
        // Every handler reads its body itself, with its own limit, so that
        // every refusal is a JSON answer.
        .layer(DefaultBodyLimit::disable())
        .method_not_allowed_fallback(method_not_allowed);
    Router::new()
        .nest(API_PREFIX, api)
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            log_and_bound,
        ))
        .with_state(shared)
}

async fn not_found() -> ServerError {
    ServerError::NotFound("no such route; the API lives under /api/v1".into())
}

async fn method_not_allowed(method: axum::http::Method) -> ServerError {
    ServerError::MethodNotAllowed(format!(
        "this route does not take {method}; see docs/api.md"
    ))
}

/// Refuses oversized targets and headers with a JSON body, and logs one line
/// per request: method, route, status, client, bytes and time.
async fn log_and_bound(State(sh): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let uri_len = req.uri().to_string().len();
    let path: String = req.uri().path().chars().take(120).collect();
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    let who = match bearer(req.headers()).map(|t| sh.lock().caller(Some(t))) {
        Some(Ok(Caller::Client(id))) => id,
        Some(Ok(Caller::Operator)) => "operator".to_string(),
        Some(Ok(Caller::Member)) => "member".to_string(),
        Some(Err(_)) => "unknown-token".to_string(),
        None => "-".to_string(),
    };
    // A client that joined another session than this state folder's: its
    // federation is gone (before any other answer, a bare 401 included).
    // `/health` answers anyway: it is how a client learns the session.
    let claimed = req
        .headers()
        .get(SESSION_HEADER)
        .filter(|_| !req.uri().path().ends_with("/health"))
        .map(|v| v.to_str().unwrap_or("?").to_string());
    let reset = sh.lock().check_session_id(claimed.as_deref()).err();
    let bytes_in = content_length(req.headers()).unwrap_or(0);
    let resp = if let Some(e) = reset {
        e.into_response()
    } else if uri_len > MAX_URI_BYTES {
        ServerError::UriTooLong {
            got: uri_len,
            limit: MAX_URI_BYTES,
        }
        .into_response()
    } else if header_bytes > MAX_HEADER_BYTES {
        ServerError::HeadersTooLarge {
            got: header_bytes,
            limit: MAX_HEADER_BYTES,
        }
        .into_response()
    } else {
        next.run(req).await
    };
    tracing::info!(
        target: "fedhe::request",
        method = %method,
        path = %path,
        status = resp.status().as_u16(),
        client = %who,
        bytes = bytes_in,
        ms = (started.elapsed().as_secs_f64() * 1e3 * 1e3).round() / 1e3,
        "request"
    );
    resp
}

/// The token of `Authorization: Bearer <token>`; the scheme is
/// case-insensitive (RFC 9110 §11.1).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn parse_round(s: &str) -> Result<u64, ServerError> {
    s.parse::<u64>()
        .map_err(|_| ServerError::Malformed(format!("`{s}` is not a round number")))
}

async fn blocking<T, F>(shared: &AppState, f: F) -> Result<T, ServerError>
where
    T: Send + 'static,
    F: FnOnce(&mut Aggregator) -> Result<T, ServerError> + Send + 'static,
{
    let sh = shared.clone();
    tokio::task::spawn_blocking(move || f(&mut sh.lock()))
        .await
        .map_err(|e| ServerError::Internal(format!("worker failed: {e}")))?
}

/// The one public route: liveness and the session id that registration
/// proofs and members' read signatures bind (not a secret).
async fn health(State(sh): State<AppState>) -> Json<HealthResponse> {
    let agg = sh.lock();
    Json(HealthResponse {
        ok: true,
        api_version: 1,
        session: agg.session_id().to_string(),
        key: agg.public_key().map(|k| k.fingerprint().to_string()),
    })
}

/// The `x-fedhe-member` header, if any.
fn member_header(headers: &HeaderMap) -> Option<&str> {
    headers.get(MEMBER_HEADER).and_then(|v| v.to_str().ok())
}

/// The roster, who is missing and the deadlines: members and the operator
/// only (a member before registering signs the request).
async fn status(
    State(sh): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<crate::protocol::StatusResponse>, ServerError> {
    let agg = sh.lock();
    let path = format!("{API_PREFIX}/status");
    match agg.member_read(bearer(&headers), member_header(&headers), &path) {
        Ok(_) => Ok(Json(agg.status())),
        // No key loaded: a signed read cannot be checked yet, and a site
        // waits for the operator; say so in the status itself.
        Err(ServerError::NoSession(_)) if agg.public_key().is_none() => Ok(Json(agg.status())),
        Err(e) => Err(e),
    }
}

/// Value of `name=` in a query string, as a number.
fn query_u64(raw: Option<&str>, name: &str) -> Result<Option<u64>, ServerError> {
    let Some(raw) = raw else { return Ok(None) };
    for pair in raw.split('&') {
        if let Some((k, v)) = pair.split_once('=')
            && k == name
        {
            return v.parse().map(Some).map_err(|_| {
                ServerError::Malformed(format!("query parameter `{name}` must be a number"))
            });
        }
    }
    Ok(None)
}

/// Reads a body of at most `limit` bytes (413 above) within the timeouts
/// (408 when it stalls).
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeouts: BodyTimeouts,
) -> Result<Bytes, ServerError> {
    let deadline = tokio::time::Instant::now() + timeouts.total;
    if let Some(len) = content_length(headers)
        && len > limit as u64
    {
        return Err(ServerError::TooLarge {
            got: len.to_string(),
            limit,
        });
    }
    // One buffer of the declared size (bounded by `limit` above): collecting
    // the chunks first and then flattening them would hold the body twice.
    let declared = content_length(headers).map_or(0, |l| l as usize);
    let mut out = Vec::with_capacity(declared);
    let mut body = body;
    loop {
        let wait = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .min(timeouts.idle);
        let frame = match tokio::time::timeout(wait, body.frame()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(_) => {
                return Err(ServerError::Timeout(format!(
                    "the request body stalled after {} bytes (no data for {} s, or more than {} s in all)",
                    out.len(),
                    timeouts.idle.as_secs_f64(),
                    timeouts.total.as_secs_f64()
                )));
            }
        };
        let frame =
            frame.map_err(|e| ServerError::Malformed(format!("reading the body failed: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(ServerError::TooLarge {
                    got: "more than that".into(),
                    limit,
                });
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(out))
}

async fn load_session(
    State(sh): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Body,
) -> Result<Json<SessionResponse>, ServerError> {
    sh.lock().require_operator(bearer(&headers))?;
    let max_len =
        query_u64(q.as_deref(), "max_len")?.map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    let body = read_body(&headers, body, MAX_KEY_BYTES, sh.timeouts).await?;
    let public = PublicKeyFile::from_bytes(&body)
        .map_err(|e| ServerError::Unprocessable(format!("not a FedHE public key file: {e}")))?;
    let session = blocking(&sh, move |agg| agg.load_session(public, max_len)).await?;
    Ok(Json(SessionResponse { session }))
}

/// Closes the open round if its deadline passed with a quorum.
pub async fn tick(sh: &AppState) {
    let sh2 = sh.clone();
    match tokio::task::spawn_blocking(move || sh2.lock().tick()).await {
        Ok(Ok(true)) => sh.notify(),
        Ok(Ok(false)) => {}
        // Tried again on the next tick.
        Ok(Err(e)) => tracing::error!("closing the round at its deadline failed: {e}"),
        Err(e) => tracing::error!("the deadline ticker failed: {e}"),
    }
}

/// The plan is for members: sites read it before they register (with a
/// membership-signed request), to map their CSV and refuse a mismatch
/// before anything is sent.
async fn get_plan(
    State(sh): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<PlanResponse>, ServerError> {
    let agg = sh.lock();
    let path = format!("{API_PREFIX}/plan");
    agg.member_read(bearer(&headers), member_header(&headers), &path)?;
    let (plan, fp) = agg.plan().ok_or_else(|| {
        ServerError::NotFound(
            "this aggregator serves no plan yet (fedhe serve --plan, or PUT /api/v1/plan)".into(),
        )
    })?;
    Ok(Json(PlanResponse {
        fingerprint: fp.clone(),
        plan: plan.clone(),
    }))
}

/// Operator: load the plan (TOML text, as written by `fedhe plan init`).
async fn put_plan(
    State(sh): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<SessionResponse>, ServerError> {
    sh.lock().require_operator(bearer(&headers))?;
    let body = read_body(&headers, body, crate::plan::MAX_PLAN_BYTES, sh.timeouts).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ServerError::Malformed("the plan must be UTF-8 TOML text".into()))?;
    let plan = crate::plan::Plan::from_toml(text, "the uploaded plan")
        .map_err(|e| ServerError::Unprocessable(e.to_string()))?;
    let session = blocking(&sh, move |agg| agg.load_plan(plan)).await?;
    Ok(Json(SessionResponse { session }))
}

async fn register(
    State(sh): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<crate::protocol::RegisterResponse>, ServerError> {
    let body = read_body(&headers, body, MAX_JSON_BYTES, sh.timeouts).await?;
    let req: RegisterRequest = serde_json::from_slice(&body)
        .map_err(|e| ServerError::Malformed(format!("registration JSON: {e}")))?;
    let resp = blocking(&sh, move |agg| agg.register(req)).await?;
    Ok(Json(resp))
}

async fn list_clients(
    State(sh): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<crate::protocol::ClientInfo>>, ServerError> {
    let agg = sh.lock();
    if agg.caller(bearer(&headers))? == Caller::Member {
        return Err(ServerError::Forbidden(
            "the client list needs a member's token".into(),
        ));
    }
    Ok(Json(agg.clients()))
}

/// Operator: forget client `id`'s identity and token (a site that lost its
/// state file registers again with a new identity).
async fn reset_client(
    State(sh): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ServerError> {
    sh.lock().require_operator(bearer(&headers))?;
    let id2 = id.clone();
    blocking(&sh, move |agg| agg.reset_identity(&id2)).await?;
    sh.notify();
    Ok(Json(serde_json::json!({ "reset": id })))
}

async fn round_info(
    State(sh): State<AppState>,
    headers: HeaderMap,
    Path(round): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<crate::protocol::RoundInfo>, ServerError> {
    let round = parse_round(&round)?;
    let wait = query_u64(q.as_deref(), "wait_ms")?
        .unwrap_or(0)
        .min(MAX_WAIT_MS);
    let info = {
        let agg = sh.lock();
        agg.caller(bearer(&headers))?;
        agg.round_info(round)?
    };
    if info.state == RoundState::Closed || wait == 0 {
        return Ok(Json(info));
    }
    // Long poll: wake up when the open round moves past `round`.
    let mut rx = sh.open_round.subscribe();
    let _ = tokio::time::timeout(
        Duration::from_millis(wait),
        rx.wait_for(|open| *open > round),
    )
    .await;
    Ok(Json(sh.lock().round_info(round)?))
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

async fn upload(
    State(sh): State<AppState>,
    headers: HeaderMap,
    Path(round): Path<String>,
    body: Body,
) -> Result<Json<crate::protocol::UploadResponse>, ServerError> {
    let round = parse_round(&round)?;
    let attempt = match headers.get(ATTEMPT_HEADER) {
        Some(v) => Some(
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
                .ok_or_else(|| {
                    ServerError::Malformed(format!("header {ATTEMPT_HEADER} must be a number"))
                })?,
        ),
        None => None,
    };
    let (client, limit) = {
        let agg = sh.lock();
        let client = match agg.caller(bearer(&headers))? {
            Caller::Client(id) => id,
            Caller::Operator | Caller::Member => {
                return Err(ServerError::Forbidden(
                    "the operator token cannot upload updates; use a client token".into(),
                ));
            }
        };
        let plan = headers.get(PLAN_HEADER).and_then(|v| v.to_str().ok());
        agg.check_plan(plan, "this update")?;
        let limit = agg.precheck_upload(&client, round, attempt)?;
        (client, limit)
    };
    if let Some(len) = content_length(&headers)
        && len > limit as u64
    {
        return Err(ServerError::TooLarge {
            got: len.to_string(),
            limit,
        });
    }
    let _slot = UploadSlot::claim(&sh, &client)?;
    let permit = tokio::time::timeout(sh.timeouts.total, sh.upload_permits.acquire()).await;
    let _permit = match permit {
        Ok(Ok(p)) => p,
        Ok(Err(_)) => return Err(ServerError::Internal("server shutting down".into())),
        Err(_) => {
            return Err(ServerError::Timeout(
                "every upload slot stayed busy; retry later".into(),
            ));
        }
    };
    let bytes = read_body(&headers, body, limit, sh.timeouts).await?;
    let body_len = bytes.len() as u64;
    let resp = blocking(&sh, move |agg| {
        let update = agg.decode_update(&bytes)?;
        agg.submit(&client, round, attempt, &update, body_len)
    })
    .await?;
    // Every upload: a double-masked attempt may have moved to its
    // consistency phase (key-set long polls wake up).
    sh.notify();
    Ok(Json(resp))
}

/// A client announces its signed mask key for the open round's attempt.
async fn announce(
    State(sh): State<AppState>,
    headers: HeaderMap,
    Path(round): Path<String>,
    body: Body,
) -> Result<Json<KeySet>, ServerError> {
    let round = parse_round(&round)?;
    let caller = {
        let agg = sh.lock();
        let caller = agg.caller(bearer(&headers))?;
        // Mask keys are for a round to come: a complete federation has none
        // (the key relay lives in `state::keys`).
        agg.check_not_complete()?;
        caller
    };
    let client = match caller {
        Caller::Client(id) => id,
        Caller::Operator | Caller::Member => {
            return Err(ServerError::Forbidden(
                "the operator has no mask key; use a client token".into(),
            ));
        }
    };
    let body = read_body(&headers, body, MAX_JSON_BYTES, sh.timeouts).await?;
    let req: AnnounceRequest = serde_json::from_slice(&body)
        .map_err(|e| ServerError::Malformed(format!("mask key JSON: {e}")))?;
    let set = blocking(&sh, move |agg| agg.announce(&client, round, req)).await?;
    sh.notify();
    Ok(Json(set))
}

/// A member leaves the open round (a dropout it announces itself).
async fn leave(
    State(sh): State<AppState>,
    headers: HeaderMap,
    Path(round): Path<String>,
    body: Body,
) -> Result<Json<crate::protocol::RoundInfo>, ServerError> {
    let round = parse_round(&round)?;
    let caller = sh.lock().caller(bearer(&headers))?;
    let Caller::Client(client) = caller else {
        return Err(ServerError::Forbidden(
            "the operator is no member; leaving takes a client token".into(),
        ));
    };
    let body = read_body(&headers, body, MAX_JSON_BYTES, sh.timeouts).await?;
    let req: LeaveRequest = serde_json::from_slice(&body)
        .map_err(|e| ServerError::Malformed(format!("leave JSON: {e}")))?;
    let info = blocking(&sh, move |agg| agg.leave(&client, round, &req.reason)).await?;
    sh.notify();
    Ok(Json(info))
}

/// The open round's attempt and its relayed mask keys; `?wait_ms=` waits
/// (up to [`MAX_WAIT_MS`]) for the next change.
async fn key_set(
    State(sh): State<AppState>,
    headers: HeaderMap,
    Path(round): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Json<KeySet>, ServerError> {
    let round = parse_round(&round)?;
    let wait = query_u64(q.as_deref(), "wait_ms")?
        .unwrap_or(0)
        .min(MAX_WAIT_MS);
    let mut rx = sh.changes.subscribe();
    let (set, act_now) = {
        let agg = sh.lock();
        let caller = agg.caller(bearer(&headers))?;
        agg.check_not_complete()?;
        let id = match &caller {
            Caller::Client(id) => Some(id.as_str()),
            Caller::Operator | Caller::Member => None,
        };
        (agg.key_set(round)?, agg.has_turn(id))
    };
    // The caller answers at once when the phase waits for it (its update,
    // signature or reveal); else at the next change.
    if wait == 0 || act_now {
        return Ok(Json(set));
    }
    // `subscribe` above marked the value seen then, before the state was
    // read: a change since wakes the wait at once.
    let _ = tokio::time::timeout(Duration::from_millis(wait), rx.changed()).await;
    Ok(Json(sh.lock().key_set(round)?))
}

/// The calling member's id (the operator and signed member reads are no
/// member of a round).
fn round_member(sh: &HttpState, headers: &HeaderMap, what: &str) -> Result<String, ServerError> {
    match sh.lock().caller(bearer(headers))? {
        Caller::Client(id) => Ok(id),
        Caller::Operator | Caller::Member => Err(ServerError::Forbidden(format!(
            "{what} takes a client token"
        ))),
    }
}

/// A double-masking request's JSON body, bounded for the open attempt's
/// roster.
async fn secagg_body<T: serde::de::DeserializeOwned>(
    sh: &HttpState,
    headers: &HeaderMap,
    body: Body,
    kind: SecAggBody,
    what: &str,
) -> Result<T, ServerError> {
    let limit = sh.lock().secagg_limit(kind);
    let body = read_body(headers, body, limit, sh.timeouts).await?;
    serde_json::from_slice(&body).map_err(|e| ServerError::Malformed(format!("{what} JSON: {e}")))
}

/// Double masking: a member's sealed share bundles (upload phase).
async fn put_shares(
    State(sh): State<AppState>,
    headers: HeaderMap,
    Path(round): Path<String>,
    body: Body,
) -> Result<Json<KeySet>, ServerError> {
    let round = parse_round(&round)?;
    let client = round_member(&sh, &headers, "sending shares")?;
    let req: SharesUpload = secagg_body(&sh, &headers, body, SecAggBody::Shares, "shares").await?;
    let set = blocking(&sh, move |agg| agg.put_shares(&client, round, req)).await?;
    sh.notify();
    Ok(Json(set))
}

/// Double masking: the survivors' bundles addressed to the caller (unmask
/// phase).
async fn shares_for(
    State(sh): State<AppState>,
    headers: HeaderMap,
    Path(round): Path<String>,
) -> Result<Json<SharesFor>, ServerError> {
    let round = parse_round(&round)?;
    let client = round_member(&sh, &headers, "reading shares")?;
    Ok(Json(sh.lock().shares_for(&client, round)?))
}

/// Double masking: a survivor's signature of the survivor set.
async fn sign_survivors(
    State(sh): State<AppState>,
    headers: HeaderMap,
    Path(round): Path<String>,
    body: Body,
) -> Result<Json<KeySet>, ServerError> {
    let round = parse_round(&round)?;
    let client = round_member(&sh, &headers, "signing the survivors")?;
    let req: SurvivorSignature =
        secagg_body(&sh, &headers, body, SecAggBody::Small, "survivor signature").await?;
    let set = blocking(&sh, move |agg| agg.sign_survivors(&client, round, req)).await?;
    sh.notify();
    Ok(Json(set))
}

/// Double masking: a survivor's revealed shares; the last one unmasks and
/// closes the round.
async fn reveal(
    State(sh): State<AppState>,
    headers: HeaderMap,
    Path(round): Path<String>,
    body: Body,
) -> Result<Json<KeySet>, ServerError> {
    let round = parse_round(&round)?;
    let client = round_member(&sh, &headers, "revealing")?;
    let req: RevealUpload = secagg_body(&sh, &headers, body, SecAggBody::Reveal, "reveal").await?;
    let set = blocking(&sh, move |agg| agg.reveal(&client, round, req)).await?;
    sh.notify();
    Ok(Json(set))
}

/// A member reports another's unusable mask key: the attempt restarts
/// without it.
async fn report_key(
    State(sh): State<AppState>,
    headers: HeaderMap,
    Path(round): Path<String>,
    body: Body,
) -> Result<Json<KeySet>, ServerError> {
    let round = parse_round(&round)?;
    let client = round_member(&sh, &headers, "reporting a key")?;
    let req: KeyReport = secagg_body(&sh, &headers, body, SecAggBody::Small, "key report").await?;
    let set = blocking(&sh, move |agg| agg.report_key(&client, round, req)).await?;
    sh.notify();
    Ok(Json(set))
}

async fn close_round(
    State(sh): State<AppState>,
    headers: HeaderMap,
    Path(round): Path<String>,
) -> Result<Json<CloseResponse>, ServerError> {
    let round = parse_round(&round)?;
    sh.lock().require_operator(bearer(&headers))?;
    let (contributors, next_round) = blocking(&sh, move |agg| agg.close(round)).await?;
    sh.notify();
    Ok(Json(CloseResponse {
        round,
        contributors,
        next_round,
    }))
}

/// A client's one upload in flight; released when the handler ends, however
/// it ends (a dropped connection included).
struct UploadSlot<'a> {
    sh: &'a HttpState,
    client: String,
}

impl<'a> UploadSlot<'a> {
    fn claim(sh: &'a HttpState, client: &str) -> Result<Self, ServerError> {
        let mut set = sh.uploading.lock().unwrap_or_else(|p| p.into_inner());
        if !set.insert(client.to_string()) {
            return Err(ServerError::Busy(format!(
                "client `{client}` already has an upload in progress; one at a time"
            )));
        }
        Ok(UploadSlot {
            sh,
            client: client.to_string(),
        })
    }
}

impl Drop for UploadSlot<'_> {
    fn drop(&mut self) {
        let mut set = self.sh.uploading.lock().unwrap_or_else(|p| p.into_inner());
        set.remove(&self.client);
    }
}

/// A published sum shared by every download without copying.
struct SharedBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

async fn download_sum(
    State(sh): State<AppState>,
    headers: HeaderMap,
    Path(round): Path<String>,
) -> Result<Response, ServerError> {
    let round = parse_round(&round)?;
    sh.lock().caller(bearer(&headers))?;
    let (bytes, contributors) = blocking(&sh, move |agg| agg.sum(round)).await?;
    let mut resp = Body::from(Bytes::from_owner(SharedBytes(bytes))).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(CONTRIBUTORS_HEADER, HeaderValue::from(contributors));
    Ok(resp)
}
