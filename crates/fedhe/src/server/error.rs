//! The aggregator's error type and its one mapping to HTTP answers.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::protocol::ErrorBody;

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
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ServerError::Malformed(_) => "malformed",
            ServerError::Unauthorized(_) => "unauthorized",
            ServerError::Forbidden(_) => "forbidden",
            ServerError::NotFound(_) => "not_found",
            ServerError::NoSession(_) => "no_session",
            ServerError::DuplicateSubmission(_) => "duplicate_submission",
            ServerError::WrongRound(_) => "wrong_round",
            ServerError::WrongAttempt(_) => "wrong_attempt",
            ServerError::RosterFixed(_) => "roster_fixed",
            ServerError::DuplicateClient(_) => "duplicate_client",
            ServerError::Conflict(_) => "conflict",
            ServerError::MethodNotAllowed(_) => "method_not_allowed",
            ServerError::Timeout(_) => "timeout",
            ServerError::TooLarge { .. } => "too_large",
            ServerError::UriTooLong { .. } => "uri_too_long",
            ServerError::Unprocessable(_) => "unprocessable",
            ServerError::Busy(_) => "busy",
            ServerError::HeadersTooLarge { .. } => "headers_too_large",
            ServerError::Internal(_) => "internal",
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: self.code().to_string(),
            detail: self.to_string(),
        }
    }
}

impl From<StoreError> for ServerError {
    fn from(e: StoreError) -> Self {
        ServerError::Internal(e.to_string())
    }
}

impl IntoResponse for ServerError {
    /// Every refusal is logged once, here, with its cause.
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), code = self.code(), "{self}");
        } else {
            tracing::info!(
                status = status.as_u16(),
                code = self.code(),
                "refused: {self}"
            );
        }
        (status, Json(self.body())).into_response()
    }
}
