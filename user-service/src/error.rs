//! The one error body every response uses, `{"error", "message", "details"?}`, and the
//! mapping of framework errors (bad JSON, missing key, oversize body...) onto it.

use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::payload::Json;
use poem_openapi::Object;

#[derive(Debug, Clone, Object)]
pub struct ErrorBody {
    /// A short, stable reason (`Conflict`, `Validation failed`, `Unauthorized`...).
    pub error: String,
    /// Text for a human.
    pub message: String,
    /// Structured detail: the conflicting field, the invalid fields...
    #[oai(skip_serializing_if_is_none)]
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
            "The service is temporarily unavailable. Please retry shortly.",
        )
    }
}

/// Turns an error the framework raised before (or instead of) a handler into the JSON
/// body. Messages are fixed per status: the framework's own text can quote internals.
pub fn from_poem(err: poem::Error) -> Response {
    let status = err.status();
    let body = match status {
        StatusCode::BAD_REQUEST => ErrorBody::new(
            "Bad request",
            "The request could not be parsed: send a valid JSON body of the documented shape.",
        ),
        StatusCode::UNAUTHORIZED => ErrorBody::new(
            "Unauthorized",
            "A valid internal API key is required (Authorization: Bearer <key>).",
        ),
        StatusCode::NOT_FOUND => ErrorBody::new("Not found", "No such resource."),
        StatusCode::METHOD_NOT_ALLOWED => {
            ErrorBody::new("Method not allowed", "This method is not allowed here.")
        }
        StatusCode::PAYLOAD_TOO_LARGE => ErrorBody::new(
            "Payload too large",
            format!(
                "The request body exceeds {} KiB.",
                crate::api::body_limit::MAX_BODY_BYTES / 1024
            ),
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
            tracing::error!(error = %err, "unhandled error");
            ErrorBody::internal()
        }
    };
    (status, Json(body)).into_response()
}
