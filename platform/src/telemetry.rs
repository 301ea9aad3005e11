//! One tracing subscriber per process: log lines (JSON or human-readable) and, when an
//! OTLP endpoint is set, spans exported over OTLP.
//!
//! OpenTelemetry is configured by the standard variables, read by the SDK itself:
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; without one,
//! nothing is exported and no span is kept), `OTEL_EXPORTER_OTLP_PROTOCOL`
//! (`http/protobuf`, the default, or `grpc`), `OTEL_SERVICE_NAME` (default: the service's
//! name), `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`
//! (default parent-based always-on) and `OTEL_BSP_*` for the batch processor. Spans are
//! queued and sent in the background: a collector that is slow or away drops spans, never
//! blocks or fails a request.

use std::sync::OnceLock;

use opentelemetry::trace::{SpanContext, TraceContextExt as _, TracerProvider as _};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::Deserialize;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    #[default]
    Pretty,
}

/// The tracer provider, when spans are exported (flushed by [`shutdown`]).
static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();

/// Whether spans are exported: an OTLP endpoint is set and the exporter was built.
pub fn exporting() -> bool {
    PROVIDER.get().is_some()
}

fn endpoint_set() -> bool {
    [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|v| !v.trim().is_empty()))
}

/// The tracer provider for `service`, exporting to the configured OTLP endpoint.
fn provider(service: &'static str) -> Result<SdkTracerProvider, String> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .build()
        .map_err(|e| e.to_string())?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(service);
    }
    let grpc = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .is_ok_and(|p| p.trim().eq_ignore_ascii_case("grpc"));
    let builder = SdkTracerProvider::builder().with_resource(resource.build());
    let builder = if grpc {
        // tonic needs the tokio runtime: the batch processor runs on it.
        use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
        let processor =
            BatchSpanProcessor::builder(exporter, opentelemetry_sdk::runtime::Tokio).build();
        builder.with_span_processor(processor)
    } else {
        // The blocking HTTP client runs on the batch processor's own thread.
        builder.with_batch_exporter(exporter)
    };
    Ok(builder.build())
}

/// Log targets that print data, not code paths, below `info`: tokio-postgres logs every
/// statement's parameters at debug (emails, names, phone numbers, password hashes). They
/// stay at `info` whatever `LOG_LEVEL` says, so no level ever logs personal data.
const CAPPED: &[&str] = &["tokio_postgres::query=info"];

/// The log filter of a `LOG_LEVEL` directive (`info`, `debug`, `info,bff=debug`...), with
/// [`CAPPED`] added last so that it wins over the same targets in `level`.
fn log_filter(level: &str) -> EnvFilter {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    CAPPED.iter().fold(filter, |filter, directive| {
        filter.add_directive(directive.parse().expect("a valid directive"))
    })
}

/// Installs the global subscriber. `level` is an `EnvFilter` directive for the log
/// (`info`, `debug`, `info,bff=debug`...); exported spans are those at `info` and above,
/// whatever the log's level. A second call in one process is a no-op.
pub fn init(service: &'static str, level: &str, format: LogFormat) {
    let filter = log_filter(level);
    let log = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_target(true)
            .with_filter(filter)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .compact()
            .with_target(true)
            .with_filter(filter)
            .boxed(),
    };
    let mut problem = None;
    let otel = if endpoint_set() && PROVIDER.get().is_none() {
        match provider(service) {
            Ok(provider) => {
                let tracer = provider.tracer(service);
                let _ = PROVIDER.set(provider);
                opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
                Some(
                    tracing_opentelemetry::layer()
                        .with_tracer(tracer)
                        .with_filter(LevelFilter::INFO),
                )
            }
            Err(error) => {
                problem = Some(error);
                None
            }
        }
    } else {
        None
    };
    let installed = tracing_subscriber::registry()
        .with(log)
        .with(otel)
        .try_init();
    if installed.is_ok() {
        tracing::info!(service, otlp = exporting(), "telemetry initialised");
    }
    if let Some(error) = problem {
        tracing::error!(%error, "OTLP export is off: the exporter could not be built");
    }
}

/// Sends the spans still queued (at most a few seconds) before the process ends.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get() {
        if let Err(error) = provider.shutdown() {
            tracing::warn!(%error, "flushing the last spans failed");
        }
    }
}

/// The W3C `traceparent` of `span`'s OpenTelemetry context, when spans are exported.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    if !exporting() {
        return None;
    }
    let context = span.context();
    let span_ref = context.span();
    let sc = span_ref.span_context();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

/// The remote span context a W3C `traceparent` names, if it is a valid one.
pub fn remote_context(traceparent: &str) -> Option<SpanContext> {
    use opentelemetry::trace::{SpanId, TraceFlags, TraceId, TraceState};
    let lower_hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let mut parts = traceparent.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let well_formed = version == "00"
        && parts.next().is_none()
        && lower_hex(trace, 32)
        && lower_hex(span, 16)
        && lower_hex(flags, 2);
    if !well_formed {
        return None;
    }
    let context = SpanContext::new(
        TraceId::from_hex(trace).ok()?,
        SpanId::from_hex(span).ok()?,
        TraceFlags::new(u8::from_str_radix(flags, 16).ok()?),
        true,
        TraceState::default(),
    );
    // All-zero ids are invalid.
    context.is_valid().then_some(context)
}

/// Makes `span` a child of the remote context `traceparent` names (a caller's header, an
/// outbox row, a Kafka record), when spans are exported and it is valid.
pub fn continue_from(span: &tracing::Span, traceparent: Option<&str>) {
    if !exporting() {
        return;
    }
    if let Some(remote) = traceparent.and_then(remote_context) {
        let _ = span.set_parent(Context::new().with_remote_span_context(remote));
    }
}

/// Links `span` to the context `traceparent` names (a batch to the events it carries, an
/// event to the batch that carried it).
pub fn link(span: &tracing::Span, traceparent: Option<&str>) {
    if !exporting() {
        return;
    }
    if let Some(remote) = traceparent.and_then(remote_context) {
        span.add_link(remote);
    }
}

/// Names `span` as exported (`otel.name` is read only until the span has started).
pub fn rename(span: &tracing::Span, name: String) {
    if exporting() {
        span.context().span().update_name(name);
    }
}

/// Records `span`'s trace and span ids as its `trace_id` / `span_id` fields, so JSON log
/// lines inside it carry them.
pub fn record_ids(span: &tracing::Span) {
    if let Some(traceparent) = traceparent_of(span) {
        span.record("trace_id", &traceparent[3..35]);
        span.record("span_id", &traceparent[36..52]);
    }
}

/// `error: cause: cause...`: an error with its whole source chain, for the log (clients
/// never see it).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_log_level_lets_tokio_postgres_print_statement_parameters() {
        use tracing::Level;
        use tracing_subscriber::layer::SubscriberExt as _;
        for level in [
            "debug",
            "trace",
            "tokio_postgres=trace",
            "info,tokio_postgres::query=debug",
        ] {
            let subscriber = tracing_subscriber::registry().with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::sink)
                    .with_filter(log_filter(level)),
            );
            tracing::subscriber::with_default(subscriber, || {
                assert!(
                    !tracing::enabled!(target: "tokio_postgres::query", Level::DEBUG),
                    "{level}"
                );
                assert!(tracing::enabled!(target: "tokio_postgres::query", Level::INFO));
            });
        }
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::sink)
                .with_filter(log_filter("debug")),
        );
        tracing::subscriber::with_default(subscriber, || {
            assert!(tracing::enabled!(target: "bff::upstream", Level::DEBUG));
        });
    }

    #[test]
    fn a_traceparent_names_its_remote_context() {
        let sc = remote_context("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
        assert_eq!(
            sc.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(sc.span_id().to_string(), "b7ad6b7169203331");
        assert!(sc.is_sampled() && sc.is_remote());
        for bad in [
            "",
            "00-abc",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
        ] {
            assert!(remote_context(bad).is_none(), "{bad}");
        }
    }
}
