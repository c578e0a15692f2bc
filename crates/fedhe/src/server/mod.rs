//! The aggregator: an HTTP service (axum on tokio) that adds encrypted
//! updates as they arrive and publishes each round's sum. It holds only the
//! session's public key file; it never holds or accepts a secret key.
//!
//! Standalone (`fedhe serve`) and embedded (the app, `fedhe simulate`, the
//! tests) use the same [`EmbeddedServer`]: it binds, starts its own runtime
//! on a background thread and returns a handle with the URL, the operator
//! token, in-process queries and a clean shutdown.
//!
//! Routes are documented in `docs/api.md` and in [`crate::protocol`].

mod error;
#[cfg(test)]
mod retry_tests;
mod routes;
mod state;
pub mod store;
mod sumfile;
mod watch;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use error::ServerError;
pub use state::{Caller, Policy, max_update_bytes, new_token};

use crate::crypto::PublicKeyFile;
use crate::protocol::{ClientInfo, CloseResponse, RoundInfo, StatusResponse};

use routes::HttpState;
use state::Aggregator;

/// PEM certificate chain and private key for HTTPS.
#[derive(Clone)]
pub struct TlsPem {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl TlsPem {
    pub fn from_files(cert: &std::path::Path, key: &std::path::Path) -> Result<TlsPem, StartError> {
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| StartError::Tls(format!("{}: {e}", p.display())))
        };
        Ok(TlsPem {
            cert_pem: read(cert)?,
            key_pem: read(key)?,
        })
    }
}

impl std::fmt::Debug for TlsPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsPem { .. }")
    }
}

/// How to run an aggregator.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind; port 0 lets the OS choose (embedded default).
    pub bind: SocketAddr,
    /// Folder for the durable state; `None` keeps it in memory only.
    pub state_dir: Option<PathBuf>,
    /// The session's public key; may also be uploaded later (`PUT /session`).
    pub public_key: Option<PublicKeyFile>,
    /// The federation plan (needs `public_key`); may also be uploaded later
    /// (`PUT /plan`). With a plan, rounds follow its quorum.
    pub plan: Option<crate::plan::Plan>,
    /// Without a plan: allow publishing a one-contributor sum.
    pub allow_single_contributor: bool,
    /// Model values per update (features + 1); else stated by the first
    /// client that registers.
    pub max_len: Option<usize>,
    /// With `auto_aggregate`: close a round once this many clients submitted
    /// (default: every registered client).
    pub min_clients: Option<usize>,
    pub auto_aggregate: bool,
    /// With a plan: close rounds by hand, not by the plan's quorum.
    pub manual_close: bool,
    /// Operator bearer token; generated if `None`.
    pub operator_token: Option<String>,
    pub tls: Option<TlsPem>,
    /// Largest `max_len` a session may declare.
    pub max_len_limit: usize,
    /// Largest number of registered clients.
    pub max_registered: usize,
    /// Update bodies buffered at once (memory bound = this x body limit).
    pub max_concurrent_uploads: usize,
    /// Tokio worker threads.
    pub worker_threads: usize,
    /// Longest wait for a request's headers, and for the next request on an
    /// idle keep-alive connection (clients' long polls are requests in
    /// flight, not idle).
    pub header_timeout: Duration,
    /// Longest pause inside a request body (408, connection closed).
    pub body_idle_timeout: Duration,
    /// Longest time for a whole request body.
    pub body_timeout: Duration,
    /// Keep the running sum in the SQLite database (rewritten by every
    /// accepted update) instead of the state folder's sum file: the slower
    /// path, kept for comparison (`fedhe bench federation`).
    pub sum_in_database: bool,
    /// Client ids whose identity (and token) the operator resets at start:
    /// sites that lost their identity key (their state file) register
    /// again with a new one (`fedhe serve --reset-identity ID`).
    pub reset_identities: Vec<String>,
    /// A folder for a consistent copy of the state, written at start and
    /// after every round close (`fedhe serve --backup`).
    pub backup_dir: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            state_dir: None,
            public_key: None,
            plan: None,
            allow_single_contributor: false,
            max_len: None,
            min_clients: None,
            auto_aggregate: false,
            manual_close: false,
            operator_token: None,
            tls: None,
            max_len_limit: 1 << 22,
            max_registered: 10_000,
            max_concurrent_uploads: 4,
            worker_threads: 2,
            header_timeout: Duration::from_secs(30),
            body_idle_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(120),
            sum_in_database: false,
            reset_identities: Vec::new(),
            backup_dir: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "cannot listen on {addr}: {source} (is another aggregator running there? choose another --bind port)"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    State(#[from] store::StoreError),
    #[error("{0}")]
    Session(#[from] ServerError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
}

/// A running aggregator. Dropping it shuts it down.
pub struct EmbeddedServer {
    url: String,
    addr: SocketAddr,
    operator_token: String,
    shared: Arc<HttpState>,
    handle: axum_server::Handle,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

fn rustls_config(tls: &TlsPem) -> Result<Arc<rustls::ServerConfig>, StartError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(&tls.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StartError::Tls(format!("certificate PEM: {e}")))?;
    if certs.is_empty() {
        return Err(StartError::Tls(
            "no certificate in the certificate file".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&tls.key_pem)
        .map_err(|e| StartError::Tls(format!("private key PEM: {e}")))?;
    // ring explicitly: this build has no aws-lc provider.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| StartError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

impl EmbeddedServer {
    /// Binds, opens (and locks) the state, and starts serving on a
    /// background thread. The port is taken first, so that a busy port
    /// leaves no state folder behind.
    pub fn start(config: ServerConfig) -> Result<EmbeddedServer, StartError> {
        let listener = TcpListener::bind(config.bind).map_err(|source| StartError::Bind {
            addr: config.bind,
            source,
        })?;
        let store = match &config.state_dir {
            Some(dir) if config.sum_in_database => store::Store::open_sums_in_database(dir)?,
            Some(dir) => store::Store::open(dir)?,
            None => store::Store::in_memory()?,
        };
        let operator_token = config
            .operator_token
            .clone()
            .unwrap_or_else(state::new_token);
        let policy = Policy {
            min_clients: config.min_clients,
            auto_aggregate: config.auto_aggregate,
            manual_close: config.manual_close,
            max_len_limit: config.max_len_limit,
            max_registered: config.max_registered,
            allow_single_contributor: config.allow_single_contributor,
        };
        let mut agg = Aggregator::open(
            store,
            policy,
            &operator_token,
            config.public_key.clone(),
            config.max_len,
        )?;
        if let Some(plan) = config.plan.clone() {
            agg.load_plan(plan)?;
        }
        for id in &config.reset_identities {
            agg.reset_identity(id)?;
        }
        // The session and plan in the database file itself, not only its WAL.
        agg.checkpoint();
        if let Some(dir) = &config.backup_dir {
            agg.set_backup_dir(dir.clone())?;
        }
        let shared = HttpState::new(
            agg,
            config.max_concurrent_uploads,
            routes::BodyTimeouts {
                idle: config.body_idle_timeout,
                total: config.body_timeout,
            },
        );
        let tls = config.tls.as_ref().map(rustls_config).transpose()?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.bind,
            source,
        })?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{addr}");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_threads.max(1))
            // Few blocking threads: each may get its own malloc arena.
            .max_blocking_threads(config.max_concurrent_uploads.max(2))
            .thread_name("fedhe-aggregator")
            .enable_all()
            .build()
            .map_err(StartError::Runtime)?;
        let handle = axum_server::Handle::new();
        let app = routes::router(shared.clone());
        let h = handle.clone();
        let ticker = shared.clone();
        let header_timeout = config.header_timeout;
        let thread = std::thread::Builder::new()
            .name("fedhe-aggregator".into())
            .spawn(move || {
                runtime.block_on(async move {
                    // Round deadlines: close a round whose deadline passed
                    // with a quorum, even if nobody calls.
                    tokio::spawn(async move {
                        let mut every = tokio::time::interval(Duration::from_millis(250));
                        loop {
                            every.tick().await;
                            routes::tick(&ticker).await;
                        }
                    });
                    let svc = app.into_make_service();
                    let http = |b: &mut hyper_util::server::conn::auto::Builder<_>| {
                        b.http1()
                            .timer(hyper_util::rt::TokioTimer::new())
                            .header_read_timeout(header_timeout);
                    };
                    match tls {
                        Some(cfg) => {
                            let cfg = axum_server::tls_rustls::RustlsConfig::from_config(cfg);
                            let mut server = axum_server::from_tcp_rustls(listener, cfg).handle(h);
                            http(server.http_builder());
                            server.serve(svc).await
                        }
                        None => {
                            let mut server = axum_server::from_tcp(listener).handle(h);
                            http(server.http_builder());
                            server.serve(svc).await
                        }
                    }
                })
            })
            .map_err(StartError::Runtime)?;
        Ok(EmbeddedServer {
            url,
            addr,
            operator_token,
            shared,
            handle,
            thread: Some(thread),
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn operator_token(&self) -> &str {
        &self.operator_token
    }

    /// In-process status (same as `GET /api/v1/status`).
    pub fn status(&self) -> StatusResponse {
        self.shared.lock().status()
    }

    /// This state folder's session id (what `GET /health` says).
    pub fn session_id(&self) -> String {
        self.shared.lock().session_id().to_string()
    }

    pub fn clients(&self) -> Vec<ClientInfo> {
        self.shared.lock().clients()
    }

    pub fn round_info(&self, round: u64) -> Result<RoundInfo, ServerError> {
        self.shared.lock().round_info(round)
    }

    /// Operator action in-process: close `round` and publish its sum.
    pub fn close_round(&self, round: u64) -> Result<CloseResponse, ServerError> {
        let (contributors, next_round) = self.shared.lock().close(round)?;
        self.shared.notify();
        Ok(CloseResponse {
            round,
            contributors,
            next_round,
        })
    }

    /// Operator action in-process: load the session's public key.
    pub fn load_public_key(
        &self,
        key: PublicKeyFile,
        max_len: Option<usize>,
    ) -> Result<crate::protocol::SessionInfo, ServerError> {
        self.shared.lock().load_session(key, max_len)
    }

    /// Turns closing rounds by their quorum on or off.
    pub fn set_auto_aggregate(&self, on: bool) {
        self.shared.lock().set_auto_aggregate(on);
        // A round whose quorum is already complete closes on the next tick.
    }

    /// Operator action in-process: load the federation plan.
    pub fn load_plan(
        &self,
        plan: crate::plan::Plan,
    ) -> Result<crate::protocol::SessionInfo, ServerError> {
        self.shared.lock().load_plan(plan)
    }

    /// The session's public key, if loaded (restored from the state folder
    /// after a restart).
    pub fn public_key(&self) -> Option<PublicKeyFile> {
        self.shared.lock().public_key().cloned()
    }

    /// The plan being served, if any.
    pub fn plan(&self) -> Option<crate::plan::Plan> {
        self.shared.lock().plan().map(|(p, _)| p.clone())
    }

    /// True while the serving thread runs.
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// A consistent copy of the state into `dir` now (the operator's
    /// backup; `fedhe serve --backup` writes one after every close).
    pub fn backup(&self, dir: &std::path::Path) -> Result<(), ServerError> {
        self.shared.lock().backup_now(dir)
    }

    /// Stops accepting, lets in-flight requests finish (up to 2 s),
    /// joins, and checkpoints the state database.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.handle.graceful_shutdown(Some(Duration::from_secs(2)));
        if let Some(t) = self.thread.take() {
            match t.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!("the aggregator stopped with an error: {e}"),
                Err(_) => tracing::error!("the aggregator's thread panicked"),
            }
            self.shared.lock().checkpoint();
        }
    }
}

impl Drop for EmbeddedServer {
    fn drop(&mut self) {
        self.stop();
    }
}
