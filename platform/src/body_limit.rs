//! Request bodies are capped before anything parses them, whether the size is announced
//! (`Content-Length`) or only found while reading a chunked body (poem's `SizeLimit`
//! would refuse chunked bodies outright). Too large is a 413 error; each service's error
//! mapping turns it into the JSON error body.

use poem::error::ReadBodyError;
use poem::http::StatusCode;
use poem::{Endpoint, IntoResponse, Request, Response};

/// 64 KiB, the limit every service applies.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub async fn limit<E: Endpoint>(next: E, mut req: Request) -> poem::Result<Response> {
    let declared = req
        .header("content-length")
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(poem::Error::from_status(StatusCode::PAYLOAD_TOO_LARGE));
    }
    match req.take_body().into_bytes_limit(MAX_BODY_BYTES).await {
        Ok(bytes) => req.set_body(bytes),
        Err(ReadBodyError::PayloadTooLarge) => {
            return Err(poem::Error::from_status(StatusCode::PAYLOAD_TOO_LARGE))
        }
        Err(_) => return Err(poem::Error::from_status(StatusCode::BAD_REQUEST)),
    }
    Ok(next.call(req).await?.into_response())
}
