//! The BFF's one error type: every answer an endpoint may give besides its own, built with
//! `?` from the failures below it. Failures log their cause chain where they are
//! converted; the client sees only the generic body. Errors that escape the handlers
//! (payload parsing, a missing auth header, an unknown route) get the same JSON body from
//! [`as_json`].

use deadpool_postgres::PoolError;
use platform::error::Failure;
use poem_openapi::payload::Json;
use poem_openapi::ApiResponse;

use super::models::ErrorBody;
use crate::rate_limit::RateLimited;

/// The answers any API endpoint may give besides its own.
#[derive(Debug, ApiResponse)]
pub enum ApiError {
    /// Malformed request (bad JSON, missing field, malformed parameter).
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
    /// The body is not sent as `application/json`.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// Rate limit hit; retry after the given seconds.
    #[oai(status = 429)]
    TooManyRequests(Json<RateLimited>, #[oai(header = "Retry-After")] String),
    /// Unexpected failure (details are in the server log only).
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// An upstream service, the database or the password hashing queue is unavailable
    /// or too slow; retry after the given seconds.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
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

    pub fn bad_request(message: &str) -> Self {
        Self::BadRequest(Json(ErrorBody::new("Bad request", message)))
    }

    /// A bug or an unexpected state: logs `cause` and answers 500.
    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> Self {
        Failure::internal(cause).into()
    }
}

impl From<Failure> for ApiError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::BadRequest(body) => Self::BadRequest(body),
            Failure::Unauthorized(body) => Self::Unauthorized(body),
            Failure::Forbidden(body) => Self::Forbidden(body),
            Failure::PayloadTooLarge(body) => Self::PayloadTooLarge(body),
            Failure::UnsupportedMediaType(body) => Self::UnsupportedMediaType(body),
            Failure::Internal(body) => Self::Internal(body),
            Failure::Unavailable(body, retry_after) => Self::Unavailable(body, retry_after),
        }
    }
}

impl From<tokio_postgres::Error> for ApiError {
    fn from(error: tokio_postgres::Error) -> Self {
        Failure::from(error).into()
    }
}

impl From<PoolError> for ApiError {
    fn from(error: PoolError) -> Self {
        Failure::from(error).into()
    }
}

impl From<platform::error::DbError> for ApiError {
    fn from(error: platform::error::DbError) -> Self {
        Failure::from(error).into()
    }
}

/// A token that does not verify: 401, the reason logged at debug level only.
impl From<crate::tokens::TokenError> for ApiError {
    fn from(reason: crate::tokens::TokenError) -> Self {
        tracing::debug!(%reason, "token refused");
        Self::unauthorized()
    }
}

/// An upstream service that is down, too slow or itself unavailable: 503. One that
/// failed unexpectedly (a 500) or answered off the contract: 500, since retrying will not
/// help.
impl From<crate::upstream::Error> for ApiError {
    fn from(error: crate::upstream::Error) -> Self {
        if error.is_unavailable() {
            Failure::unavailable(&error).into()
        } else {
            Failure::internal(&error).into()
        }
    }
}

pub use platform::error::as_json;
