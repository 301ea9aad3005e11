//! W3C trace context: each request keeps the caller's `traceparent` (with a new span id
//! for our hop) or starts a trace; it is the request's current context, which the calls
//! to the internal services carry on.

pub use platform::traceparent::TraceParent;
use poem::http::header::HeaderValue;
use poem::{Endpoint, IntoResponse, Request, Response};

pub async fn apply<E: Endpoint>(ep: E, req: Request) -> poem::Result<Response> {
    let incoming = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok());
    // With spans exported, the request's context is its server span (already a child of
    // the caller's); otherwise a new hop of the caller's trace, or a new trace.
    let trace = TraceParent::current().unwrap_or_else(|| TraceParent::next(incoming));
    let header = HeaderValue::from_str(trace.as_str()).ok();
    let mut response = trace.scope(ep.call(req)).await?.into_response();
    if let Some(header) = header {
        response.headers_mut().insert("traceparent", header);
    }
    Ok(response)
}
