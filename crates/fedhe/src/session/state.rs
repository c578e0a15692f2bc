//! A client's credentials for one federation, kept between runs in an
//! owner-only file so that a restarted client resumes under its id.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::SessionError;

const FORMAT: &str = "fedhe-client-state";

/// What a client needs to resume: where, who, and its bearer token.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientState {
    pub format: String,
    pub version: u32,
    /// Aggregator URL.
    pub server: String,
    pub id: String,
    pub name: String,
    /// Bearer token (a credential: the file is owner-only).
    pub token: String,
    /// Hex fingerprints of the plan and of the key this token was issued under.
    pub plan: String,
    pub key: String,
    /// The client's Ed25519 identity seed (hex; a secret), bound to its
    /// registration, for pairwise masks. Older state files have none: the
    /// client then registers again with a new identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// This run's DP secret (hex; a secret): every training round's DP-SGD
    /// seed derives from it. Made afresh at every registration (a new run),
    /// kept while the client resumes, written before its first upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The aggregator session id this client joined (`GET /health`): a
    /// resumed client sends it, and an aggregator whose state was reset
    /// says so. Older state files have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Partners' identity keys (id → hex), pinned on first use in this
    /// session: a changed one is refused, naming the partner.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub partners: std::collections::BTreeMap<String, String>,
    /// The server optimizer's state after this run's last training round
    /// (the global model and its moments, as exact bits), so that a
    /// restarted client resumes it exactly. Written after every round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_optimizer: Option<crate::model::ServerState>,
}

impl std::fmt::Debug for ClientState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token and the identity seed are secrets: never in logs.
        f.debug_struct("ClientState")
            .field("server", &self.server)
            .field("id", &self.id)
            .field("plan", &self.plan)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ClientState {
    pub fn new(server: &str, id: &str, name: &str, token: &str, plan: &str, key: &str) -> Self {
        ClientState {
            format: FORMAT.into(),
            version: 1,
            server: server.into(),
            id: id.into(),
            name: name.into(),
            token: token.into(),
            plan: plan.into(),
            key: key.into(),
            identity: None,
            secret: None,
            session: None,
            partners: Default::default(),
            server_optimizer: None,
        }
    }

    /// The state in `path`, `None` if there is no file.
    pub fn load(path: &Path) -> Result<Option<ClientState>, SessionError> {
        let bytes = match crate::fsutil::read_capped(
            path,
            crate::fsutil::MAX_STATE_FILE_BYTES,
            "client state file",
        ) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(SessionError::State {
                    file: path.display().to_string(),
                    message: source.to_string(),
                });
            }
        };
        let state: ClientState =
            serde_json::from_slice(&bytes).map_err(|e| SessionError::State {
                file: path.display().to_string(),
                message: format!("not a FedHE client state file ({e})"),
            })?;
        if state.format != FORMAT || state.version != 1 {
            return Err(SessionError::State {
                file: path.display().to_string(),
                message: format!("format {:?} version {}", state.format, state.version),
            });
        }
        Ok(Some(state))
    }

    /// Keeps `server` as the server optimizer's state in the file at
    /// `path` (owner-only, atomically), the rest of the file as it is.
    pub fn save_server_state(
        path: &Path,
        server: &crate::model::ServerState,
    ) -> Result<(), SessionError> {
        let Some(mut st) = ClientState::load(path)? else {
            return Err(SessionError::State {
                file: path.display().to_string(),
                message: "the state file is gone".into(),
            });
        };
        st.server_optimizer = Some(server.clone());
        st.save(path)
    }

    /// Writes the state owner-only, replacing any older one.
    pub fn save(&self, path: &Path) -> Result<(), SessionError> {
        let err = |message: String| SessionError::State {
            file: path.display().to_string(),
            message,
        };
        let text = serde_json::to_vec_pretty(self).map_err(|e| err(e.to_string()))?;
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        crate::fsutil::write_atomic(path, &text, true, true).map_err(|e| err(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state file that has grown without bound (or is a device) is
    /// refused by its size before it is read.
    #[test]
    fn an_oversized_state_file_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("client-a.state.json");
        // Sparse: no disk is used.
        std::fs::File::create(&state)
            .unwrap()
            .set_len(crate::fsutil::MAX_STATE_FILE_BYTES + 1)
            .unwrap();
        let Err(e) = ClientState::load(&state) else {
            panic!("an oversized state file was read");
        };
        assert!(e.to_string().contains("larger than"), "{e}");
    }
}
