//! The one error body every response uses (the platform's), and the mapping of framework
//! errors (bad JSON, missing key, oversize body...) onto it.

pub use platform::error::ErrorBody;
use poem::{IntoResponse, Response};
use poem_openapi::payload::Json;

/// Turns an error the framework raised before (or instead of) a handler into the JSON body.
pub fn from_poem(err: poem::Error) -> Response {
    let (status, body) = platform::error::body_for(&err);
    let body = if status == poem::http::StatusCode::UNAUTHORIZED {
        ErrorBody::unauthorized(
            "A valid internal API key is required (Authorization: Bearer <key>).",
        )
    } else {
        body
    };
    (status, Json(body)).into_response()
}
