//! HTTP routes (axum). Handlers parse, authenticate and bound the request,
//! then hand over to [`Aggregator`]; they never touch the file system.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use http_body_util::BodyExt;
use tokio::sync::{Semaphore, watch};

use crate::crypto::PublicKeyFile;
use crate::protocol::{
    API_PREFIX, CONTRIBUTORS_HEADER, CloseResponse, MAX_WAIT_MS, PLAN_HEADER, PlanResponse,
    RegisterRequest, RoundState, SessionResponse,
};

use super::error::ServerError;
use super::state::{Aggregator, Caller};

/// Largest JSON control body.
const MAX_JSON_BYTES: usize = 16 * 1024;
/// Largest public key file.
const MAX_KEY_BYTES: usize = 1024 * 1024;

/// State shared by all handlers.
pub struct Shared {
    agg: Mutex<Aggregator>,
    /// Number of the open round; bumped on every close (long-poll wake-up).
    open_round: watch::Sender<u64>,
    /// Bounds how many update bodies are buffered at once (memory bound).
    upload_permits: Semaphore,
}

impl Shared {
    pub fn new(agg: Aggregator, max_concurrent_uploads: usize) -> Arc<Shared> {
        let (tx, _rx) = watch::channel(agg.open_round());
        Arc::new(Shared {
            agg: Mutex::new(agg),
            open_round: tx,
            upload_permits: Semaphore::new(max_concurrent_uploads.max(1)),
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
    }
}

type AppState = Arc<Shared>;

pub fn router(shared: AppState) -> Router {
    let api = Router::new()
        .route("/health", get(health))
        .route("/status", get(status))
        .route("/session", put(load_session))
        .route("/plan", get(get_plan).put(put_plan))
        .route("/clients", post(register).get(list_clients))
        .route("/rounds/{round}", get(round_info))
        .route("/rounds/{round}/update", put(upload))
        .route("/rounds/{round}/close", post(close_round))
        .route("/rounds/{round}/sum", get(download_sum))
        // Every handler reads its body itself, with its own limit, so that
        // every refusal is a JSON answer.
        .layer(DefaultBodyLimit::disable());
    Router::new()
        .nest(API_PREFIX, api)
        .fallback(not_found)
        .with_state(shared)
}

async fn not_found() -> ServerError {
    ServerError::NotFound("no such route; the API lives under /api/v1".into())
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
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

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "ok": true, "api_version": 1 }))
}

async fn status(State(sh): State<AppState>) -> Response {
    Json(sh.lock().status()).into_response()
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

/// Reads a body of at most `limit` bytes; 413 above.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ServerError> {
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
    while let Some(frame) = body.frame().await {
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
    let body = read_body(&headers, body, MAX_KEY_BYTES).await?;
    let public = PublicKeyFile::from_bytes(&body)
        .map_err(|e| ServerError::Unprocessable(format!("not a FedHE public key file: {e}")))?;
    let session = blocking(&sh, move |agg| agg.load_session(public, max_len)).await?;
    Ok(Json(SessionResponse { session }))
}

/// Closes the open round if its deadline passed with a quorum.
pub async fn tick(sh: &AppState) {
    let sh2 = sh.clone();
    let closed = tokio::task::spawn_blocking(move || sh2.lock().tick())
        .await
        .unwrap_or(Ok(false));
    if let Ok(true) = closed {
        sh.notify();
    }
}

/// The plan is public: sites read it before they register, to map their
/// CSV and refuse a mismatch before anything is sent.
async fn get_plan(State(sh): State<AppState>) -> Result<Json<PlanResponse>, ServerError> {
    let agg = sh.lock();
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
    let body = read_body(&headers, body, crate::plan::MAX_PLAN_BYTES).await?;
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
    let body = read_body(&headers, body, MAX_JSON_BYTES).await?;
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
    agg.caller(bearer(&headers))?;
    Ok(Json(agg.clients()))
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
    let (client, limit, max_len) = {
        let agg = sh.lock();
        let client = match agg.caller(bearer(&headers))? {
            Caller::Client(id) => id,
            Caller::Operator => {
                return Err(ServerError::Forbidden(
                    "the operator token cannot upload updates; use a client token".into(),
                ));
            }
        };
        let limit = agg.precheck_upload(&client, round)?;
        let plan = headers.get(PLAN_HEADER).and_then(|v| v.to_str().ok());
        agg.check_plan(plan, "this update")?;
        let max_len = agg
            .max_len()
            .ok_or_else(|| ServerError::Internal("model length vanished".into()))?;
        (client, limit, max_len)
    };
    if let Some(len) = content_length(&headers)
        && len > limit as u64
    {
        return Err(ServerError::TooLarge {
            got: len.to_string(),
            limit,
        });
    }
    let _permit = sh
        .upload_permits
        .acquire()
        .await
        .map_err(|_| ServerError::Internal("server shutting down".into()))?;
    let bytes = read_body(&headers, body, limit).await?;
    let body_len = bytes.len() as u64;
    let resp = blocking(&sh, move |agg| {
        let update = Aggregator::decode_update(&bytes, max_len)?;
        agg.submit(&client, round, &update, body_len)
    })
    .await?;
    if resp.round_closed {
        sh.notify();
    }
    Ok(Json(resp))
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
