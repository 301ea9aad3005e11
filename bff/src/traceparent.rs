//! W3C trace context: each request keeps the caller's `traceparent` (with a new span id
//! for our hop) or starts a trace; the value is passed on to the internal services.

use poem::http::header::HeaderValue;
use poem::{Endpoint, IntoResponse, Request, Response};
use rand::Rng;

/// The `traceparent` to send upstream for this request.
#[derive(Debug, Clone)]
pub struct TraceParent(pub String);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// The trace id and flags of a valid version-00 header.
fn parse(value: &str) -> Option<(&str, &str)> {
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let valid = version == "00"
        && parts.next().is_none()
        && is_hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && is_hex(parent, 16)
        && parent.bytes().any(|b| b != b'0')
        && is_hex(flags, 2);
    valid.then_some((trace, flags))
}

/// Continues `incoming` if valid, else starts a sampled trace.
pub fn next(incoming: Option<&str>) -> TraceParent {
    let mut rng = rand::thread_rng();
    let span: [u8; 8] = rng.gen::<[u8; 8]>();
    let span = if span == [0; 8] { [1; 8] } else { span };
    match incoming.and_then(parse) {
        Some((trace, flags)) => TraceParent(format!("00-{trace}-{}-{flags}", hex(&span))),
        None => {
            let trace: [u8; 16] = rng.gen();
            let trace = if trace == [0; 16] { [1; 16] } else { trace };
            TraceParent(format!("00-{}-{}-01", hex(&trace), hex(&span)))
        }
    }
}

pub async fn apply<E: Endpoint>(ep: E, mut req: Request) -> poem::Result<Response> {
    let incoming = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok());
    let trace = next(incoming);
    let header = HeaderValue::from_str(&trace.0).ok();
    req.extensions_mut().insert(trace);
    let mut response = ep.call(req).await?.into_response();
    if let Some(header) = header {
        response.headers_mut().insert("traceparent", header);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_trace_is_continued_and_garbage_replaced() {
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let next_hop = next(Some(incoming)).0;
        assert!(next_hop.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(next_hop.ends_with("-01"));
        assert_ne!(next_hop, incoming);

        let fresh = next(Some("garbage")).0;
        assert!(parse(&fresh).is_some());
        assert!(!fresh.contains("4bf92f35"));
    }
}
