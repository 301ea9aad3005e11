//! Prometheus metrics: one recorder per process, rendered by every service's `/metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

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
        handle
    })
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
