//! Refuses request bodies over the limit with 413, whether the size is announced
//! (`Content-Length`) or only discovered while reading a chunked body.

use poem::http::StatusCode;
use poem::{Body, Endpoint, IntoResponse, Request, Response};

use crate::api::errors::json_error;

/// 64 KiB, the limit every service applies.
pub const MAX_BODY: usize = 64 * 1024;

fn too_large() -> Response {
    json_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "Payload too large",
        "The request body is larger than 64 KiB.",
    )
}

pub async fn apply<E: Endpoint>(ep: E, mut req: Request) -> poem::Result<Response> {
    let announced = req
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match announced {
        Some(len) if len > MAX_BODY as u64 => return Ok(too_large()),
        Some(_) => {}
        None => {
            let body = req.take_body();
            match body.into_bytes_limit(MAX_BODY).await {
                Ok(bytes) => req.set_body(Body::from(bytes)),
                Err(poem::error::ReadBodyError::PayloadTooLarge) => return Ok(too_large()),
                Err(_) => {
                    return Ok(json_error(
                        StatusCode::BAD_REQUEST,
                        "Bad request",
                        "The request body could not be read.",
                    ))
                }
            }
        }
    }
    Ok(ep.call(req).await?.into_response())
}
