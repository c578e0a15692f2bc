//! The session: its public key, its model length (`max_len`) and the
//! federation plan, each loaded in one transaction.

use crate::crypto::PublicKeyFile;
use crate::plan::Plan;
use crate::protocol::SessionInfo;

use super::super::error::ServerError;
use super::{Aggregator, max_update_bytes, no_session, now_unix};

pub struct Session {
    pub public: PublicKeyFile,
    pub public_bytes: Vec<u8>,
    pub max_len: Option<usize>,
    /// The federation plan and its hex fingerprint, once loaded.
    pub plan: Option<(Plan, String)>,
}

impl Session {
    pub(super) fn info(&self) -> SessionInfo {
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

impl Aggregator {
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
        let now = now_unix();
        self.store
            .write(|tx| tx.save_session(&bytes, max_len, now))?;
        self.session = Some(Session {
            public,
            public_bytes: bytes,
            max_len,
            plan: None,
        });
        // Round 1 opens now (as stored); so does its key phase.
        self.open.opened_unix = now;
        self.open.mask.phase_started = now;
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
        if let Some((_, old)) = &s.plan
            && *old == fp
        {
            return self.session_info_or_internal();
        }
        self.check_plan_change(&fp)?;
        let set_len = self.plan_max_len(&plan)?;
        let (pk, canonical, now) = (s.public_bytes.clone(), plan.canonical(), now_unix());
        self.store.write(|tx| {
            if let Some(n) = set_len {
                tx.save_session(&pk, Some(n), now)?;
            }
            tx.put_meta("plan", &canonical)
        })?;
        tracing::info!(plan = %fp, "plan loaded");
        if let Some(s) = self.session.as_mut() {
            s.plan = Some((plan, fp));
        }
        if let Some(named) = self.rules().named_roster() {
            self.open.roster = named;
        }
        if let Some(n) = set_len {
            self.apply_max_len(n)?;
        }
        self.session_info_or_internal()
    }

    /// Refuses another plan than the loaded one once rounds depend on it.
    fn check_plan_change(&self, fp: &str) -> Result<(), ServerError> {
        let old = self.plan().map(|(_, old)| old);
        let started = self.open.number > 1 || !self.open.submitted.is_empty();
        match old {
            Some(old) if !self.clients.is_empty() || started => {
                Err(ServerError::Conflict(format!(
                    "the federation already runs plan {old} with {} registered clients; start a \
                     new state folder for plan {fp}",
                    self.clients.len()
                )))
            }
            // Its rounds would be taken for the plan's own rounds.
            None if started => Err(ServerError::Conflict(format!(
                "this session has already summed updates without a plan (open round {}); start a \
                 new state folder for plan {fp}",
                self.open.number
            ))),
            _ => Ok(()),
        }
    }

    /// The `max_len` a plan sets (`None`: the session's already fits).
    fn plan_max_len(&self, plan: &Plan) -> Result<Option<usize>, ServerError> {
        let needed = plan.max_update_len();
        match self.session.as_ref().and_then(|s| s.max_len) {
            Some(m) if m < needed => Err(ServerError::Conflict(format!(
                "the plan's {} features and model need updates of {needed} values; the session allows {m}",
                plan.features()
            ))),
            Some(_) => Ok(None),
            None => {
                self.check_max_len(needed)?;
                Ok(Some(needed))
            }
        }
    }

    /// Closing rounds automatically on or off, with or without a plan.
    pub fn set_auto_aggregate(&mut self, on: bool) {
        self.policy.auto_aggregate = on;
        self.policy.manual_close = !on;
    }

    /// The plan being served, with its hex fingerprint.
    pub fn plan(&self) -> Option<&(Plan, String)> {
        self.session.as_ref().and_then(|s| s.plan.as_ref())
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

    /// Once the session's sizes are known, running sums go to the state
    /// folder's sum file.
    pub(super) fn enable_sum_file(&mut self) -> Result<(), ServerError> {
        if let Some(s) = &self.session
            && let Some(n) = s.max_len
        {
            let k = &s.public;
            let bytes = crate::crypto::max_sum_bytes(k.params(), k.max_clients(), n);
            self.store.use_sum_file(bytes)?;
        }
        Ok(())
    }

    pub(super) fn session_info_or_internal(&self) -> Result<SessionInfo, ServerError> {
        self.session
            .as_ref()
            .map(Session::info)
            .ok_or_else(|| ServerError::Internal("session vanished".into()))
    }

    pub(super) fn check_max_len(&self, n: usize) -> Result<(), ServerError> {
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
                let (pk, now) = (s.public_bytes.clone(), now_unix());
                self.store.write(|tx| tx.save_session(&pk, Some(n), now))?;
                self.apply_max_len(n)
            }
        }
    }

    /// In memory, after its commit: the session's `max_len` is `n`.
    pub(super) fn apply_max_len(&mut self, n: usize) -> Result<(), ServerError> {
        if let Some(s) = self.session.as_mut() {
            s.max_len = Some(n);
        }
        self.enable_sum_file()
    }
}
