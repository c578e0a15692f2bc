//! The aggregator's error type and its one mapping to HTTP answers.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::protocol::{ErrorBody, ErrorCode};

use super::store::StoreError;

/// Everything a request can fail with. Each variant has one HTTP status and
/// one stable `error` code; `detail` is for humans.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// 400: the request could not be parsed (JSON, path, ciphertext bytes).
    #[error("{0}")]
    Malformed(String),
    /// 401: missing or unknown bearer token.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: a client token on an operator endpoint.
    #[error("{0}")]
    Forbidden(String),
    /// 404: unknown round, client or route.
    #[error("{0}")]
    NotFound(String),
    /// 409: no public key loaded yet.
    #[error("{0}")]
    NoSession(String),
    /// 409: this client already submitted to this round.
    #[error("{0}")]
    DuplicateSubmission(String),
    /// 409: the round is not the open one (closed, or not yet published).
    #[error("{0}")]
    WrongRound(String),
    /// 409: a masked round's roster is fixed; the client is expected next round.
    #[error("{0}")]
    RosterFixed(String),
    /// 409: the update was made (masked) for another attempt of the round.
    #[error("{0}")]
    WrongAttempt(String),
    /// 409: a client with this id already exists.
    #[error("{0}")]
    DuplicateClient(String),
    /// 409: any other state conflict (e.g. another key already loaded).
    #[error("{0}")]
    Conflict(String),
    /// 405: a route that exists, with another method.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 408: the request body stalled or took too long.
    #[error("{0}")]
    Timeout(String),
    /// 413: body above the session's limit.
    #[error("body of {got} bytes exceeds the limit of {limit} bytes")]
    TooLarge { got: String, limit: usize },
    /// 414: request target too long.
    #[error("the request target is {got} bytes long; the limit is {limit}")]
    UriTooLong { got: usize, limit: usize },
    /// 422: well-formed ciphertext for another key, parameters or model size.
    #[error("{0}")]
    Unprocessable(String),
    /// 429: this client already has an upload in flight.
    #[error("{0}")]
    Busy(String),
    /// 431: request headers too large.
    #[error("the request headers are {got} bytes; the limit is {limit}")]
    HeadersTooLarge { got: usize, limit: usize },
    /// 500: the state folder failed; the request had no effect.
    #[error("internal error: {0}")]
    Internal(String),
    /// 410: the plan's last round closed; nothing more is taken.
    #[error("{0}")]
    FederationComplete(String),
    /// 410: the request names another aggregator session (state reset).
    #[error("{0}")]
    SessionReset(String),
    /// 503: the state folder was removed or replaced under the aggregator;
    /// it takes no more changes until the operator restarts it.
    #[error("{0}")]
    StateLost(String),
}

impl ServerError {
    pub fn status(&self) -> StatusCode {
        match self {
            ServerError::Malformed(_) => StatusCode::BAD_REQUEST,
            ServerError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ServerError::Forbidden(_) => StatusCode::FORBIDDEN,
            ServerError::NotFound(_) => StatusCode::NOT_FOUND,
            ServerError::NoSession(_)
            | ServerError::DuplicateSubmission(_)
            | ServerError::WrongRound(_)
            | ServerError::WrongAttempt(_)
            | ServerError::RosterFixed(_)
            | ServerError::DuplicateClient(_)
            | ServerError::Conflict(_) => StatusCode::CONFLICT,
            ServerError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ServerError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            ServerError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ServerError::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            ServerError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ServerError::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
            ServerError::HeadersTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ServerError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ServerError::FederationComplete(_) | ServerError::SessionReset(_) => StatusCode::GONE,
            ServerError::StateLost(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The answer's stable code (one per variant).
    pub fn code(&self) -> ErrorCode {
        match self {
            ServerError::Malformed(_) => ErrorCode::Malformed,
            ServerError::Unauthorized(_) => ErrorCode::Unauthorized,
            ServerError::Forbidden(_) => ErrorCode::Forbidden,
            ServerError::NotFound(_) => ErrorCode::NotFound,
            ServerError::NoSession(_) => ErrorCode::NoSession,
            ServerError::DuplicateSubmission(_) => ErrorCode::DuplicateSubmission,
            ServerError::WrongRound(_) => ErrorCode::WrongRound,
            ServerError::WrongAttempt(_) => ErrorCode::WrongAttempt,
            ServerError::RosterFixed(_) => ErrorCode::RosterFixed,
            ServerError::DuplicateClient(_) => ErrorCode::DuplicateClient,
            ServerError::Conflict(_) => ErrorCode::Conflict,
            ServerError::MethodNotAllowed(_) => ErrorCode::MethodNotAllowed,
            ServerError::Timeout(_) => ErrorCode::Timeout,
            ServerError::TooLarge { .. } => ErrorCode::TooLarge,
            ServerError::UriTooLong { .. } => ErrorCode::UriTooLong,
            ServerError::Unprocessable(_) => ErrorCode::Unprocessable,
            ServerError::Busy(_) => ErrorCode::Busy,
            ServerError::HeadersTooLarge { .. } => ErrorCode::HeadersTooLarge,
            ServerError::Internal(_) => ErrorCode::Internal,
            ServerError::FederationComplete(_) => ErrorCode::FederationComplete,
            ServerError::SessionReset(_) => ErrorCode::SessionReset,
            ServerError::StateLost(_) => ErrorCode::StateLost,
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.code(),
            detail: self.to_string(),
        }
    }
}

impl From<StoreError> for ServerError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Vanished(why) => ServerError::StateLost(why),
            e => ServerError::Internal(e.to_string()),
        }
    }
}

impl IntoResponse for ServerError {
    /// Every refusal is logged once, here, with its cause.
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(
                status = status.as_u16(),
                code = self.code().as_str(),
                "{self}"
            );
        } else {
            tracing::info!(
                status = status.as_u16(),
                code = self.code().as_str(),
                "refused: {self}"
            );
        }
        (status, Json(self.body())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_has_a_known_code_that_reads_back() {
        let s = || String::from("x");
        let all = [
            ServerError::Malformed(s()),
            ServerError::Unauthorized(s()),
            ServerError::Forbidden(s()),
            ServerError::NotFound(s()),
            ServerError::NoSession(s()),
            ServerError::DuplicateSubmission(s()),
            ServerError::WrongRound(s()),
            ServerError::RosterFixed(s()),
            ServerError::WrongAttempt(s()),
            ServerError::DuplicateClient(s()),
            ServerError::Conflict(s()),
            ServerError::MethodNotAllowed(s()),
            ServerError::Timeout(s()),
            ServerError::TooLarge { got: s(), limit: 1 },
            ServerError::UriTooLong { got: 2, limit: 1 },
            ServerError::Unprocessable(s()),
            ServerError::Busy(s()),
            ServerError::HeadersTooLarge { got: 2, limit: 1 },
            ServerError::Internal(s()),
            ServerError::FederationComplete(s()),
            ServerError::SessionReset(s()),
            ServerError::StateLost(s()),
        ];
        assert_eq!(all.len(), ErrorCode::KNOWN.len());
        for e in &all {
            let code = e.code();
            assert!(ErrorCode::KNOWN.contains(&code), "{code}");
            assert_eq!(ErrorCode::parse(code.as_str()), code);
            let json = serde_json::to_value(e.body()).unwrap();
            assert_eq!(json["error"], code.as_str());
        }
    }
}
