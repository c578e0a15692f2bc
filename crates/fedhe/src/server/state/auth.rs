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
            Caller::Client(_) => Err(ServerError::Forbidden(
                "this action needs the operator token".into(),
            )),
        }
    }
}
