//! The one error body every service answers with: `{"error", "message", "details"?}`;
//! [`Failure`], the documented answers any internal endpoint may give besides its own;
//! how a database error becomes a 503 or a 500; and the mapping of framework errors (bad
//! JSON, oversize body, unknown route...) onto the body. 5xx answers never carry internal
//! text; the cause chain is logged instead.

use deadpool_postgres::PoolError;
use poem::http::StatusCode;
use poem::{Endpoint, IntoResponse, Request, Response};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object};
use serde::{Deserialize, Serialize};

use crate::body_limit::MAX_BODY_BYTES;
use crate::telemetry::error_chain;

#[derive(Debug, Clone, PartialEq, Object, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A short, stable reason (`Conflict`, `Validation failed`, `Unauthorized`...).
    pub error: String,
    /// Text for a human.
    pub message: String,
    /// Structured detail: the conflicting field, the invalid fields...
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl ErrorBody {
    pub fn new(error: &str, message: impl Into<String>) -> Self {
        Self {
            error: error.to_owned(),
            message: message.into(),
            details: None,
        }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn internal() -> Self {
        Self::new("Internal server error", "An unexpected error occurred.")
    }

    pub fn unavailable() -> Self {
        Self::new(
            "Service unavailable",
            "A backing service is temporarily unavailable. Please retry shortly.",
        )
    }

    pub fn unauthorized(message: &str) -> Self {
        Self::new("Unauthorized", message)
    }

    /// This body as a response with `status`.
    pub fn response(&self, status: StatusCode) -> Response {
        let body = serde_json::to_string(self).unwrap_or_default();
        Response::builder()
            .status(status)
            .content_type("application/json; charset=utf-8")
            .body(body)
    }
}

/// The JSON body for an error the framework raised before (or instead of) a handler.
/// Messages are fixed per status: the framework's own text can quote internals.
pub fn body_for(error: &poem::Error) -> (StatusCode, ErrorBody) {
    let status = error.status();
    let body = match status {
        StatusCode::BAD_REQUEST => ErrorBody::new(
            "Bad request",
            "The request could not be parsed: send a valid JSON body of the documented shape.",
        ),
        StatusCode::UNAUTHORIZED => ErrorBody::unauthorized(
            "Missing or invalid credentials: send Authorization: Bearer <token or key>.",
        ),
        StatusCode::NOT_FOUND => ErrorBody::new("Not found", "No such resource."),
        StatusCode::METHOD_NOT_ALLOWED => {
            ErrorBody::new("Method not allowed", "This method is not allowed here.")
        }
        StatusCode::PAYLOAD_TOO_LARGE => ErrorBody::new(
            "Payload too large",
            format!("The request body exceeds {} KiB.", MAX_BODY_BYTES / 1024),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorBody::new(
            "Unsupported media type",
            "Send the body as application/json.",
        ),
        StatusCode::SERVICE_UNAVAILABLE => ErrorBody::unavailable(),
        s if s.is_client_error() => ErrorBody::new(
            s.canonical_reason().unwrap_or("Bad request"),
            "The request was rejected.",
        ),
        _ => {
            tracing::error!(error = %error, "unhandled error");
            return (StatusCode::INTERNAL_SERVER_ERROR, ErrorBody::internal());
        }
    };
    (status, body)
}

/// Middleware: errors that escaped the handlers become the JSON error body; a handler's
/// documented error answer (JSON, built from a response) passes unchanged, and so does
/// any other 4xx that already is JSON.
pub async fn as_json<E: Endpoint>(ep: E, req: Request) -> poem::Result<Response> {
    let error = match ep.call(req).await {
        Ok(response) => return Ok(response.into_response()),
        Err(error) => error,
    };
    let (status, body) = body_for(&error);
    let documented = error.is_from_response();
    let response = error.into_response();
    let is_json = response
        .content_type()
        .is_some_and(|ct| ct.starts_with("application/json"));
    if is_json && (documented || !response.status().is_server_error()) {
        return Ok(response);
    }
    Ok(body.response(status))
}

/// A database call that failed: no connection from the pool, or the statement.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("no database connection")]
    Pool(#[from] PoolError),
    #[error("database error")]
    Query(#[from] tokio_postgres::Error),
}

/// Whether a database error means "not now" (retry later, 503) rather than a bug (500).
/// Errors without a SQLSTATE are transport failures (connection refused, reset, closed);
/// class 08 (connection), 53 (resources) and 57P (shutdown, cannot connect now) are the
/// server saying "not now".
pub fn is_unavailable(error: &tokio_postgres::Error) -> bool {
    match error.code() {
        None => true,
        Some(code) => {
            let code = code.code();
            code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
        }
    }
}

/// The same for a pool error: timeouts, a closed pool or a failed connection hook mean
/// the database is away.
pub fn pool_unavailable(error: &PoolError) -> bool {
    match error {
        PoolError::Backend(error) => is_unavailable(error),
        _ => true,
    }
}

/// The answers every internal endpoint may give besides its own: the framework's refusals
/// of a request (documented here, so the OpenAPI document lists every status an endpoint
/// can return; [`as_json`] gives them this body) and the two failures. A failure is built
/// from its cause, which is logged with its whole chain; the client sees a generic body.
#[derive(Debug, ApiResponse)]
pub enum Failure {
    /// The body is not JSON of the documented shape, or a parameter is malformed.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing or wrong internal API key.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// A valid internal key whose caller may not use this route.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// The body exceeds the limit.
    #[oai(status = 413)]
    PayloadTooLarge(Json<ErrorBody>),
    /// The body is not sent as `application/json`.
    #[oai(status = 415)]
    UnsupportedMediaType(Json<ErrorBody>),
    /// Unexpected failure (the cause is in the server log only).
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// A dependency (the database, the hashing queue) is unavailable; retry after the
    /// given seconds.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>, #[oai(header = "Retry-After")] u64),
}

/// The `Retry-After` of a 503, in seconds: dependencies are expected back soon.
pub const RETRY_AFTER_SECS: u64 = 1;

/// The answer of a look-up by id: the thing, or 404.
#[derive(Debug, ApiResponse)]
pub enum Found<T: poem_openapi::types::ToJSON + Send + Sync> {
    #[oai(status = 200)]
    Ok(Json<T>),
    /// Nothing has this id (any more).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
}

impl<T: poem_openapi::types::ToJSON + Send + Sync> Found<T> {
    pub fn or_not_found(thing: Option<T>, message: &str) -> Self {
        match thing {
            Some(thing) => Self::Ok(Json(thing)),
            None => Self::NotFound(Json(ErrorBody::new("Not found", message))),
        }
    }
}

impl Failure {
    /// A dependency is away for now: logs `cause` and answers 503.
    pub fn unavailable(cause: &(dyn std::error::Error + 'static)) -> Self {
        tracing::warn!(error = %error_chain(cause), "503: a dependency is unavailable");
        Self::Unavailable(Json(ErrorBody::unavailable()), RETRY_AFTER_SECS)
    }

    /// A bug or an unexpected state: logs `cause` and answers 500.
    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> Self {
        tracing::error!(error = %error_chain(cause), "500: internal error");
        Self::Internal(Json(ErrorBody::internal()))
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(error: tokio_postgres::Error) -> Self {
        if is_unavailable(&error) {
            Self::unavailable(&error)
        } else {
            Self::internal(&error)
        }
    }
}

impl From<DbError> for Failure {
    fn from(error: DbError) -> Self {
        match error {
            DbError::Pool(error) => error.into(),
            DbError::Query(error) => error.into(),
        }
    }
}

impl From<PoolError> for Failure {
    fn from(error: PoolError) -> Self {
        if pool_unavailable(&error) {
            Self::unavailable(&error)
        } else {
            Self::internal(&error)
        }
    }
}
