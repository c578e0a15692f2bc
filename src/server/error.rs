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
    /// 409: a client with this id already exists.
    #[error("{0}")]
    DuplicateClient(String),
    /// 409: any other state conflict (e.g. another key already loaded).
    #[error("{0}")]
    Conflict(String),
    /// 413: body above the session's limit.
    #[error("body of {got} bytes exceeds the limit of {limit} bytes")]
    TooLarge { got: String, limit: usize },
    /// 422: well-formed ciphertext for another key, parameters or model size.
    #[error("{0}")]
    Unprocessable(String),
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
            | ServerError::DuplicateClient(_)
            | ServerError::Conflict(_) => StatusCode::CONFLICT,
            ServerError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ServerError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
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
            ServerError::DuplicateClient(_) => "duplicate_client",
            ServerError::Conflict(_) => "conflict",
            ServerError::TooLarge { .. } => "too_large",
            ServerError::Unprocessable(_) => "unprocessable",
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
    fn into_response(self) -> Response {
        (self.status(), Json(self.body())).into_response()
    }
}
