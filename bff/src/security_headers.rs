//! Headers every answer carries: no sniffing, no framing, no caching of API answers;
//! `/docs` gets a CSP that lets Swagger UI's inline script and styles run.

use poem::http::header::{HeaderName, HeaderValue};
use poem::{Endpoint, IntoResponse, Request, Response};

const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";
const DOCS_CSP: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
     frame-ancestors 'none'";

fn set(response: &mut Response, name: &'static str, value: &'static str) {
    response.headers_mut().insert(
        HeaderName::from_static(name),
        HeaderValue::from_static(value),
    );
}

/// Wraps an endpoint so its answers carry the security headers.
pub async fn apply<E: Endpoint>(ep: E, req: Request) -> poem::Result<Response> {
    let docs = req.uri().path().starts_with("/docs");
    let api = req.uri().path().starts_with("/api/");
    let mut response = match ep.call(req).await {
        Ok(response) => response.into_response(),
        Err(error) => error.into_response(),
    };
    set(&mut response, "x-content-type-options", "nosniff");
    set(&mut response, "x-frame-options", "DENY");
    set(&mut response, "referrer-policy", "no-referrer");
    set(
        &mut response,
        "content-security-policy",
        if docs { DOCS_CSP } else { API_CSP },
    );
    if api {
        set(&mut response, "cache-control", "no-store");
    }
    Ok(response)
}
