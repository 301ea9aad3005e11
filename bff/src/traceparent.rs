//! W3C trace context: each request keeps the caller's `traceparent` (with a new span id
//! for our hop) or starts a trace; the value is passed on to the internal services.

pub use platform::traceparent::TraceParent;
use poem::http::header::HeaderValue;
use poem::{Endpoint, IntoResponse, Request, Response};

pub async fn apply<E: Endpoint>(ep: E, mut req: Request) -> poem::Result<Response> {
    let incoming = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok());
    let trace = TraceParent::next(incoming);
    let header = HeaderValue::from_str(trace.as_str()).ok();
    req.extensions_mut().insert(trace);
    let mut response = ep.call(req).await?.into_response();
    if let Some(header) = header {
        response.headers_mut().insert("traceparent", header);
    }
    Ok(response)
}
