//! Prometheus metrics: one recorder per process, rendered by every service's `/metrics`;
//! the RED figures of every HTTP route ([`red`]); and the `# HELP` text of each family
//! ([`describe`]).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, OnceLock, RwLock};
use std::time::Instant;

pub use metrics::Unit;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use poem::http::Method;
use poem::PathPattern;
use poem::{Endpoint, IntoResponse, Request, Response};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Request duration by route template, method and status (OpenTelemetry's
/// `http.server.request.duration`).
pub const HTTP_DURATION: &str = "http_server_request_duration_seconds";
/// Requests being served, by method (`http.server.active_requests`).
pub const HTTP_ACTIVE: &str = "http_server_active_requests";

/// What a family is, for its `# TYPE` and `# HELP` lines.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// The process-wide recorder, installed on first use.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (tests run several apps in one
        // process); the handle still renders what this recorder saw.
        let _ = metrics::set_global_recorder(recorder);
        describe(&[
            (
                HTTP_DURATION,
                Kind::Histogram,
                Some(Unit::Seconds),
                "Duration of HTTP requests, by route template, method and status code.",
            ),
            (
                HTTP_ACTIVE,
                Kind::Gauge,
                None,
                "HTTP requests being served now, by method.",
            ),
        ]);
        handle
    })
}

/// A metric family: its name, kind, unit (if any) and help text.
pub type Family = (&'static str, Kind, Option<Unit>, &'static str);

/// Gives each family its help text (and unit); [`crate::http::MetricsAt::bind`] calls it
/// with the families the service records.
pub fn describe(families: &[Family]) {
    for &(name, kind, unit, help) in families {
        match (kind, unit) {
            (Kind::Counter, Some(unit)) => metrics::describe_counter!(name, unit, help),
            (Kind::Counter, None) => metrics::describe_counter!(name, help),
            (Kind::Gauge, Some(unit)) => metrics::describe_gauge!(name, unit, help),
            (Kind::Gauge, None) => metrics::describe_gauge!(name, help),
            (Kind::Histogram, Some(unit)) => metrics::describe_histogram!(name, unit, help),
            (Kind::Histogram, None) => metrics::describe_histogram!(name, help),
        }
    }
}

/// The Prometheus text exposition of every metric recorded so far.
pub fn render() -> String {
    handle().render()
}

/// A poem endpoint serving [`render`] as `text/plain; version=0.0.4`.
// `#[handler]` turns the function into a public unit struct the lint misreads.
#[allow(unreachable_pub)]
#[poem::handler]
pub fn endpoint() -> poem::Response {
    poem::Response::builder()
        .content_type("text/plain; version=0.0.4")
        .body(render())
}

/// Where the router tells [`red`] which route template served a request.
#[derive(Debug, Clone, Default)]
struct RouteSlot(Arc<OnceLock<Arc<str>>>);

/// Names the route template of the request being served (for the middleware that answers
/// before the router sees the request, such as the rate limiter). The first name given
/// sticks.
pub fn set_route(req: &Request, template: &str) {
    if let Some(slot) = req.data::<RouteSlot>() {
        let _ = slot.0.set(template.into());
    }
}

/// Middleware around the router: passes the template of the route that matched out to
/// [`red`], however the layers between them rebuild the response.
pub async fn matched_route<E: Endpoint>(ep: E, req: Request) -> poem::Result<Response> {
    let slot = req.data::<RouteSlot>().cloned();
    let result = ep.call(req).await.map(IntoResponse::into_response);
    if let Some(slot) = slot {
        let pattern = match &result {
            Ok(response) => response.data::<PathPattern>(),
            // No route matched all of the path (a nest may have matched its prefix).
            Err(error) if error.is::<poem::error::NotFoundError>() => None,
            Err(error) => error.data::<PathPattern>(),
        };
        if let Some(pattern) = pattern {
            let _ = slot.0.set(template(&pattern.0).into());
        }
    }
    result
}

/// Outermost middleware: every request's duration into [`HTTP_DURATION`] with its route
/// template (empty when no route matched), method and final status, and the requests in
/// flight in [`HTTP_ACTIVE`]. When spans are exported, the request is also a server span
/// (`GET /api/v1/users/{id}`), a child of the caller's `traceparent` if it sent one.
pub async fn red<E: Endpoint>(ep: E, mut req: Request) -> poem::Result<Response> {
    let method = method_label(req.method());
    let slot = RouteSlot::default();
    req.set_data(slot.clone());
    let span = server_span(&req, method);
    let active = metrics::gauge!(HTTP_ACTIVE, "http_request_method" => method);
    active.increment(1.0);
    // Decremented however the request ends, a dropped (cancelled) one included.
    struct Leaving(metrics::Gauge);
    impl Drop for Leaving {
        fn drop(&mut self) {
            self.0.decrement(1.0);
        }
    }
    let _leaving = Leaving(active);
    let started = Instant::now();
    let result = match &span {
        Some(span) => {
            use tracing::Instrument as _;
            let call = ep.call(req).instrument(span.clone());
            call.await.map(IntoResponse::into_response)
        }
        None => ep.call(req).await.map(IntoResponse::into_response),
    };
    let status = match &result {
        Ok(response) => response.status(),
        Err(error) => error.status(),
    };
    let route = slot.0.get().map(|r| r.to_string()).unwrap_or_default();
    if let Some(span) = &span {
        let name = if route.is_empty() {
            method.to_owned()
        } else {
            format!("{method} {route}")
        };
        crate::telemetry::rename(span, name);
        span.record("http.route", route.as_str());
        span.record("http.response.status_code", status.as_u16());
        if status.is_server_error() {
            span.record("otel.status_code", "ERROR");
        }
    }
    metrics::histogram!(
        HTTP_DURATION,
        "http_route" => route,
        "http_request_method" => method,
        "http_response_status_code" => status.as_str().to_owned(),
    )
    .record(started.elapsed().as_secs_f64());
    result
}

/// The server span of a request, when spans are exported (none otherwise: no cost).
fn server_span(req: &Request, method: &'static str) -> Option<tracing::Span> {
    if !crate::telemetry::exporting() {
        return None;
    }
    let span = tracing::info_span!(
        "http.server",
        otel.name = method,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = method,
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        url.path = req.uri().path(),
        trace_id = tracing::field::Empty,
        span_id = tracing::field::Empty,
    );
    let incoming = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok());
    crate::telemetry::continue_from(&span, incoming);
    crate::telemetry::record_ids(&span);
    Some(span)
}

/// The method as OpenTelemetry labels it: the known ones by name, any other `_OTHER`, so
/// that clients cannot grow the label set.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

/// The documented template of each route as poem-openapi registers it: it names path
/// parameters `param0`, `param1`... in its router, so `/users/{id}` matches as
/// `/users/{param0}`.
static DOCUMENTED: LazyLock<RwLock<HashMap<String, String>>> = LazyLock::new(Default::default);

/// Learns the route templates of an OpenAPI document (`spec` as JSON), so that the
/// histogram names each route as the document does.
pub fn learn_routes(spec: &str) {
    let Ok(spec) = serde_json::from_str::<serde_json::Value>(spec) else {
        return;
    };
    let Some(paths) = spec["paths"].as_object() else {
        return;
    };
    let mut documented = DOCUMENTED.write().unwrap_or_else(|e| e.into_inner());
    for path in paths.keys() {
        let mut n = 0;
        let routed: Vec<String> = path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') && segment.ends_with('}') {
                    n += 1;
                    format!("{{param{}}}", n - 1)
                } else {
                    segment.to_owned()
                }
            })
            .collect();
        documented.insert(routed.join("/"), path.clone());
    }
}

/// poem's pattern (`/users/:id`, `/docs/*path`) in the OpenAPI form `/users/{id}`, with
/// the parameter names of the OpenAPI document where it has the route.
fn template(pattern: &str) -> String {
    let routed = routed_template(pattern);
    let documented = DOCUMENTED.read().unwrap_or_else(|e| e.into_inner());
    documented.get(&routed).cloned().unwrap_or(routed)
}

fn routed_template(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|segment| match segment.strip_prefix([':', '*']) {
            Some(name) if !name.is_empty() => format!("{{{name}}}"),
            _ => segment.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem::{get, handler, EndpointExt, Route};

    #[test]
    fn route_templates_use_the_openapi_form() {
        assert_eq!(template("/api/v1/users/:id"), "/api/v1/users/{id}");
        assert_eq!(template("/docs/*path"), "/docs/{path}");
        assert_eq!(template("/health/live"), "/health/live");
        assert_eq!(template("/"), "/");
    }

    #[test]
    fn documented_parameter_names_replace_the_routers_own() {
        learn_routes(r#"{"paths": {"/learn-test/{user}/keys/{key}": {}}}"#);
        assert_eq!(
            template("/learn-test/:param0/keys/:param1"),
            "/learn-test/{user}/keys/{key}"
        );
        assert_eq!(template("/learn-test/:param0"), "/learn-test/{param0}");
    }

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let odd = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&odd), "_OTHER");
    }

    #[handler]
    fn hello() -> &'static str {
        "hello"
    }

    #[tokio::test]
    async fn each_request_is_counted_under_its_route_template_and_status() {
        handle();
        let app = Route::new()
            .nest("/red-test", Route::new().at("/items/:item_id", get(hello)))
            .around(matched_route)
            .around(red);
        for uri in ["/red-test/items/1", "/red-test/items/2", "/red-test/none"] {
            let request = Request::builder().uri_str(uri).finish();
            let _ = app.get_response(request).await;
        }
        let text = render();
        let count = |route: &str, status: &str| {
            let prefix = format!("{HTTP_DURATION}_count{{");
            text.lines()
                .filter(|l| l.starts_with(&prefix))
                .filter(|l| l.contains(&format!("http_route=\"{route}\"")))
                .filter(|l| l.contains(&format!("http_response_status_code=\"{status}\"")))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .sum::<u64>()
        };
        assert!(count("/red-test/items/{item_id}", "200") >= 2, "{text}");
        assert!(count("", "404") >= 1, "{text}");
        assert!(text.contains(&format!("# HELP {HTTP_DURATION} ")), "{text}");
        assert!(
            text.contains(&format!("# TYPE {HTTP_ACTIVE} gauge")),
            "{text}"
        );
        let active = text
            .lines()
            .find(|l| l.starts_with(HTTP_ACTIVE) && l.contains("\"GET\""))
            .unwrap();
        assert!(active.ends_with(" 0"), "{active}");
    }
}
