//! Error answers: the shared [`ApiError`] every authenticated or limited endpoint may
//! give, and the last-resort conversion of any unhandled error into the JSON error body,
//! so no answer carries internal text.

use platform::telemetry::error_chain;
use poem_openapi::payload::Json;
use poem_openapi::ApiResponse;

use super::models::ErrorBody;
use crate::rate_limit::RateLimited;

/// The answers any API endpoint may give besides its own.
#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// Malformed request (bad JSON, missing field).
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing, invalid, expired or revoked token.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// Authenticated, but the role does not allow this.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// Body over 64 KiB.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// Rate limit hit; retry after the given seconds.
    #[oai(status = 429)]
    TooManyRequests(Json<RateLimited>, #[oai(header = "Retry-After")] String),
    /// Unexpected failure (details are in the server log only).
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// An upstream service or the database is down or too slow.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

impl ApiError {
    pub fn unauthorized() -> Self {
        Self::Unauthorized(Json(ErrorBody::new(
            "Unauthorized",
            "Missing, invalid or expired token.",
        )))
    }

    pub fn forbidden() -> Self {
        Self::Forbidden(Json(ErrorBody::new(
            "Forbidden",
            "Your role does not allow this.",
        )))
    }

    pub fn unavailable() -> Self {
        Self::Unavailable(Json(ErrorBody::new(
            "Service unavailable",
            "A backing service is unavailable. Please try again shortly.",
        )))
    }

    pub fn internal() -> Self {
        Self::Internal(Json(ErrorBody::new(
            "Internal server error",
            "Something went wrong on our side.",
        )))
    }

    pub fn bad_request(message: &str) -> Self {
        Self::BadRequest(Json(ErrorBody::new("Bad request", message)))
    }
}

/// Logs an upstream failure with its cause chain and answers 503.
pub fn upstream_failed(error: crate::upstream::Error) -> ApiError {
    tracing::warn!(error = %error_chain(&error), "upstream call failed");
    ApiError::unavailable()
}

/// Logs a database failure with its cause chain and answers 503.
pub fn database_failed(error: impl std::error::Error) -> ApiError {
    tracing::warn!(error = %error_chain(&error), "database call failed");
    ApiError::unavailable()
}

/// Turns errors that escaped the handlers (payload parsing, missing auth header, unknown
/// route) into the JSON error body; 5xx texts are never shown. Errors that already carry
/// a JSON answer (a handler's `Err(ApiError)`) pass unchanged.
pub use platform::error::as_json;
