//! The one error body every service answers with: `{"error", "message", "details"?}`,
//! and the mapping of framework errors (bad JSON, oversize body, unknown route...) onto
//! it. 5xx answers never carry internal text; the cause is logged instead.

use poem::http::StatusCode;
use poem::{Endpoint, IntoResponse, Request, Response};
use poem_openapi::Object;
use serde::{Deserialize, Serialize};

use crate::body_limit::MAX_BODY_BYTES;

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
        StatusCode::UNAUTHORIZED => ErrorBody::unauthorized("Missing, invalid or expired token."),
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

/// Middleware: errors that escaped the handlers become the JSON error body; answers that
/// already are JSON (a handler's documented error) pass unchanged.
pub async fn as_json<E: Endpoint>(ep: E, req: Request) -> poem::Result<Response> {
    let error = match ep.call(req).await {
        Ok(response) => return Ok(response.into_response()),
        Err(error) => error,
    };
    let (status, body) = body_for(&error);
    let response = error.into_response();
    let is_json = response
        .content_type()
        .is_some_and(|ct| ct.starts_with("application/json"));
    if is_json && !response.status().is_server_error() {
        return Ok(response);
    }
    Ok(body.response(status))
}
