//! Bearer tokens: the operator's, and one per registered client. Tokens are
//! kept only as SHA-256 hashes, in memory and in the store.

use std::collections::HashMap;

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::protocol::hex;

use super::super::error::ServerError;
use super::Aggregator;

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

/// Who a request is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Operator,
    Client(String),
    /// A holder of the federation key without a token yet: a read signed
    /// with the membership key (`x-fedhe-member`), before registering.
    Member,
}

/// The tokens that authenticate callers.
pub(super) struct Auth {
    operator: [u8; 32],
    /// Token hash → client id.
    tokens: HashMap<[u8; 32], String>,
}

impl Auth {
    pub fn new(operator_token: &str) -> Auth {
        Auth {
            operator: token_hash(operator_token),
            tokens: HashMap::new(),
        }
    }

    /// Authenticates a bearer token.
    pub fn caller(&self, token: Option<&str>) -> Result<Caller, ServerError> {
        let token = token.ok_or_else(|| {
            ServerError::Unauthorized("missing `Authorization: Bearer <token>` header".into())
        })?;
        let h = token_hash(token);
        if h == self.operator {
            return Ok(Caller::Operator);
        }
        match self.tokens.get(&h) {
            Some(id) => Ok(Caller::Client(id.clone())),
            None => Err(ServerError::Unauthorized("unknown bearer token".into())),
        }
    }

    /// Replaces every client token (after reading them from the store).
    pub fn set_tokens(&mut self, tokens: HashMap<[u8; 32], String>) {
        self.tokens = tokens;
    }

    /// A new client's token.
    pub fn issue(&mut self, hash: [u8; 32], id: &str) {
        self.tokens.insert(hash, id.to_string());
    }

    /// A client's new token; its old one stops working.
    pub fn rotate(&mut self, id: &str, hash: [u8; 32]) {
        self.tokens.retain(|_, c| c != id);
        self.issue(hash, id);
    }

    /// The token hashes and their clients, sorted (for comparing states).
    #[cfg(test)]
    pub fn sorted(&self) -> Vec<(String, [u8; 32])> {
        let mut v: Vec<_> = self.tokens.iter().map(|(h, id)| (id.clone(), *h)).collect();
        v.sort();
        v
    }
}

impl Aggregator {
    /// Authenticates a bearer token.
    pub fn caller(&self, token: Option<&str>) -> Result<Caller, ServerError> {
        self.auth.caller(token)
    }

    pub fn require_operator(&self, token: Option<&str>) -> Result<(), ServerError> {
        match self.caller(token)? {
            Caller::Operator => Ok(()),
            Caller::Client(_) | Caller::Member => Err(ServerError::Forbidden(
                "this action needs the operator token".into(),
            )),
        }
    }

    /// The caller of a read that needs a member: a bearer token (a client's
    /// or the operator's) or, without one, a membership-signed request
    /// (`member`: the `x-fedhe-member` header, `<issued_ms>:<hex>`) for
    /// `path`, made within the clock-skew allowance.
    pub fn member_read(
        &self,
        token: Option<&str>,
        member: Option<&str>,
        path: &str,
    ) -> Result<Caller, ServerError> {
        let Some(header) = member.filter(|_| token.is_none()) else {
            return self.caller(token).map_err(|e| match (token, e) {
                (None, _) => ServerError::Unauthorized(format!(
                    "{path} needs a member's token (or the operator's), or a request signed with \
                     the federation key (`{}`; FedHE clients send it before they register)",
                    crate::protocol::MEMBER_HEADER
                )),
                (Some(_), e) => e,
            });
        };
        let session = self.session.as_ref().ok_or_else(super::no_session)?;
        let bad = |why: String| {
            ServerError::Unauthorized(format!("`{}`: {why}", crate::protocol::MEMBER_HEADER))
        };
        let (ms, sig) = header
            .split_once(':')
            .and_then(|(ms, sig)| Some((ms.parse::<u64>().ok()?, crate::protocol::parse_hex(sig)?)))
            .ok_or_else(|| bad("expected `<issued_ms>:<hex signature>`".into()))?;
        let now = crate::protocol::now_ms();
        if ms.abs_diff(now) > super::registry::MAX_CLOCK_SKEW_MS {
            return Err(bad(format!(
                "signed {:.1} s {} the aggregator's clock; the allowed clock skew is 5 minutes: \
                 set the site's clock right (NTP)",
                ms.abs_diff(now) as f64 / 1000.0,
                if ms > now { "ahead of" } else { "behind" }
            )));
        }
        session
            .public
            .verify_read(&self.session_id, ms, path, &sig)
            .map_err(|e| bad(e.to_string()))?;
        Ok(Caller::Member)
    }
}
