//! Browsers send `Origin` on same-origin POSTs too (Swagger UI at `/docs` does), and the
//! CORS middleware refuses any origin it was not told to allow. A request whose `Origin`
//! is this server's own address is not cross-origin, so the header is dropped before the
//! CORS check; cross-origin requests still need `CORS_ORIGINS`.

use poem::http::header::{HOST, ORIGIN};
use poem::{Endpoint, Request};

pub(crate) async fn allow<E: Endpoint>(next: E, mut req: Request) -> poem::Result<E::Output> {
    if is_same_origin(&req) {
        req.headers_mut().remove(ORIGIN);
    }
    next.call(req).await
}

fn is_same_origin(req: &Request) -> bool {
    let origin = req.headers().get(ORIGIN).and_then(|v| v.to_str().ok());
    let host = req.headers().get(HOST).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (Some(origin), Some(host)) => {
            origin.split_once("://").is_some_and(|(scheme, authority)| {
                matches!(scheme, "http" | "https") && authority.eq_ignore_ascii_case(host)
            })
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(origin: &str, host: &str) -> Request {
        Request::builder()
            .header(ORIGIN, origin)
            .header(HOST, host)
            .finish()
    }

    #[test]
    fn only_the_servers_own_address_is_same_origin() {
        assert!(is_same_origin(&request(
            "http://127.0.0.1:8080",
            "127.0.0.1:8080"
        )));
        assert!(is_same_origin(&request(
            "https://API.example.com",
            "api.example.com"
        )));
        assert!(!is_same_origin(&request(
            "http://evil.example",
            "127.0.0.1:8080"
        )));
        assert!(!is_same_origin(&request(
            "http://127.0.0.1:8081",
            "127.0.0.1:8080"
        )));
        assert!(!is_same_origin(&request("null", "127.0.0.1:8080")));
    }
}
