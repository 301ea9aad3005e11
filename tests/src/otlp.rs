//! Real OTLP trace receivers for tests, decoding with the OpenTelemetry proto definitions:
//! OTLP/HTTP (`POST /v1/traces`, an `ExportTraceServiceRequest` in protobuf; a malformed
//! body is refused with 400, as a collector would) and OTLP/gRPC (the `TraceService`
//! served by tonic). The spans are kept for the test to look at.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use poem::http::StatusCode;
use poem::web::Data;
use poem::{handler, post, EndpointExt, Response, Route};
use prost::Message as _;
use tokio::sync::oneshot;

/// One span as the receiver got it.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// The resource's `service.name`.
    pub service: String,
    pub name: String,
    /// Hex, as in a `traceparent`.
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// `SPAN_KIND_SERVER`, `SPAN_KIND_PRODUCER`...
    pub kind: String,
    pub attributes: HashMap<String, String>,
    /// The span ids this span links to.
    pub links: Vec<String>,
}

impl ReceivedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

type Spans = Arc<Mutex<Vec<ReceivedSpan>>>;

/// The receiver: where to send spans, and what arrived.
#[derive(Debug)]
pub struct Receiver {
    pub endpoint: String,
    spans: Spans,
    _stop: oneshot::Sender<()>,
}

impl Receiver {
    /// Everything received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans.lock().unwrap().clone()
    }

    /// The spans of one trace.
    pub fn trace(&self, trace_id: &str) -> Vec<ReceivedSpan> {
        self.spans()
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: &Option<opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        Some(AnyValue::IntValue(i)) => i.to_string(),
        Some(AnyValue::BoolValue(b)) => b.to_string(),
        Some(AnyValue::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attributes(list: &[KeyValue]) -> HashMap<String, String> {
    list.iter()
        .map(|kv| (kv.key.clone(), text(&kv.value)))
        .collect()
}

#[handler]
async fn traces(body: poem::Body, spans: Data<&Spans>) -> Response {
    let Ok(bytes) = body.into_bytes().await else {
        return Response::builder().status(StatusCode::BAD_REQUEST).finish();
    };
    let Ok(request) = ExportTraceServiceRequest::decode(bytes.as_ref()) else {
        return Response::builder().status(StatusCode::BAD_REQUEST).finish();
    };
    spans.lock().unwrap().extend(collect(request));
    Response::builder()
        .status(StatusCode::OK)
        .content_type("application/x-protobuf")
        .body(ExportTraceServiceResponse::default().encode_to_vec())
}

/// The spans of one export request.
fn collect(request: ExportTraceServiceRequest) -> Vec<ReceivedSpan> {
    let mut received = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| attributes(&r.attributes))
            .unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                received.push(ReceivedSpan {
                    service: service.clone(),
                    kind: opentelemetry_proto::tonic::trace::v1::span::SpanKind::try_from(
                        span.kind,
                    )
                    .map(|k| k.as_str_name().to_owned())
                    .unwrap_or_default(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: attributes(&span.attributes),
                    links: span.links.iter().map(|l| hex(&l.span_id)).collect(),
                });
            }
        }
    }
    received
}

/// The OTLP/gRPC trace service.
struct Grpc(Spans);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().extend(collect(request.into_inner()));
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Starts an OTLP/gRPC receiver on a free port (its endpoint is `http://127.0.0.1:PORT`).
pub async fn grpc_receiver() -> Receiver {
    let spans: Spans = Arc::default();
    let incoming = tonic::transport::server::TcpIncoming::bind(([127, 0, 0, 1], 0).into())
        .expect("a free port");
    let port = incoming.local_addr().expect("bound").port();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(Grpc(spans.clone())))
        .serve_with_incoming_shutdown(incoming, async {
            let _ = stopped.await;
        });
    tokio::spawn(server);
    Receiver {
        endpoint: format!("http://127.0.0.1:{port}"),
        spans,
        _stop: stop,
    }
}

/// Starts a receiver on a free port.
pub async fn receiver() -> Receiver {
    let spans: Spans = Arc::default();
    let app = Route::new()
        .at("/v1/traces", post(traces))
        .data(spans.clone());
    let (base, stop) = crate::bff_kit::spawn_fake(app).await;
    Receiver {
        endpoint: base,
        spans,
        _stop: stop,
    }
}
