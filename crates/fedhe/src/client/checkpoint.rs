//! Where a site keeps its server optimizer's state between runs: the state
//! an earlier run saved (to resume from) and how to save it after each
//! training round. The session keeps it in the client state file.

use std::sync::Arc;

use crate::model::ServerState;

/// Saves the server optimizer's state after a training round.
pub type SaveServerState =
    Arc<dyn Fn(&ServerState) -> Result<(), Box<dyn std::error::Error + Send + Sync>> + Send + Sync>;

/// The server optimizer's state across a site's runs (none: in memory only).
#[derive(Clone, Default)]
pub struct ServerCheckpoint {
    /// The state an earlier run of this site saved after its last round.
    pub resume: Option<ServerState>,
    /// Called after every training round, before the next one is built.
    pub save: Option<SaveServerState>,
}

impl std::fmt::Debug for ServerCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCheckpoint")
            .field("resume_round", &self.resume.as_ref().map(|s| s.round))
            .field("saves", &self.save.is_some())
            .finish()
    }
}
