//! One registration is one trace: the four services export their spans over OTLP to a
//! real receiver (protobuf decoded with the OpenTelemetry definitions), and the spans of
//! the BFF, user-service, the relay and the consumer share the trace id, each with its
//! parent in the trace.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;
use tests::eventually;
use tests::otlp::{grpc_receiver, receiver, ReceivedSpan, Receiver};
use tests::stack::Stack;

#[tokio::test]
async fn one_registration_is_one_trace_across_the_four_services() -> anyhow::Result<()> {
    registration_is_one_trace(receiver().await, "http/protobuf").await
}

#[tokio::test]
async fn the_trace_goes_over_grpc_too() -> anyhow::Result<()> {
    registration_is_one_trace(grpc_receiver().await, "grpc").await
}

async fn registration_is_one_trace(otlp: Receiver, protocol: &str) -> anyhow::Result<()> {
    let mut stack = Stack::new().await?;
    stack.set_env("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.endpoint);
    stack.set_env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol);
    stack.set_env("OTEL_BSP_SCHEDULE_DELAY", "100");
    let stack = stack.started().await?;

    let user = json!({
        "email": format!("trace.{}@example.com", uuid::Uuid::new_v4().simple()),
        "password": "a long and unusual passphrase 42",
        "first_name": "Ada",
        "last_name": "Lovelace",
    });
    let answer = stack.bff_post("/api/v1/register", &user).await?;
    anyhow::ensure!(answer.status() == 201, "register: {}", answer.status());
    let traceparent = answer
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("the BFF answers with the request's traceparent");
    let trace_id = traceparent[3..35].to_owned();

    let services = ["bff", "user-service", "outbox-relay", "event-consumer"];
    let complete = eventually(Duration::from_secs(60), || async {
        let spans = otlp.trace(&trace_id);
        services
            .iter()
            .all(|service| spans.iter().any(|s| s.service == *service))
            && spans.iter().any(|s| s.kind == "SPAN_KIND_CONSUMER")
    })
    .await;
    let spans = otlp.trace(&trace_id);
    let summary: Vec<String> = spans
        .iter()
        .map(|s| {
            let kind = s.kind.trim_start_matches("SPAN_KIND_");
            let (name, span, parent) = (&s.name, &s.span_id, &s.parent_span_id);
            format!(
                "{:<14} {kind:<8} {name:<40} span={span} parent={parent}",
                s.service
            )
        })
        .collect();
    assert!(complete, "the trace has only: {summary:#?}");
    // As the receiver saw it (shown with --nocapture).
    eprintln!("trace {trace_id} over {protocol}:\n{summary:#?}");

    // Every parent is in the trace, and the trace has one root: the BFF's server span.
    let ids: HashSet<&str> = spans.iter().map(|s| s.span_id.as_str()).collect();
    let roots: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.parent_span_id.is_empty())
        .collect();
    assert_eq!(roots.len(), 1, "{summary:#?}");
    assert_eq!(roots[0].service, "bff");
    assert_eq!(roots[0].kind, "SPAN_KIND_SERVER");
    for span in &spans {
        assert!(
            span.parent_span_id.is_empty() || ids.contains(span.parent_span_id.as_str()),
            "{} {}: its parent is not in the trace: {summary:#?}",
            span.service,
            span.name
        );
    }
    let find = |service: &str, name: &str| -> &ReceivedSpan {
        spans
            .iter()
            .find(|s| s.service == service && s.name == name)
            .unwrap_or_else(|| panic!("no {service} span {name}: {summary:#?}"))
    };
    let parent_of = |span: &ReceivedSpan| -> &ReceivedSpan {
        spans
            .iter()
            .find(|s| s.span_id == span.parent_span_id)
            .unwrap()
    };
    // The HTTP hops, with their semantic-convention names and attributes.
    let bff = find("bff", "POST /api/v1/register");
    assert_eq!(bff.attribute("http.route"), Some("/api/v1/register"));
    assert_eq!(bff.attribute("http.response.status_code"), Some("201"));
    let users = find("user-service", "POST /api/v1/register");
    assert_eq!(users.kind, "SPAN_KIND_SERVER");
    assert_eq!(parent_of(users).service, "bff");
    let insert = find("user-service", "register: insert user and outbox row");
    assert_eq!(insert.parent_span_id, users.span_id);
    // The relay's publish span continues the context the outbox row stored (the insert
    // transaction's) and links its batch; the consumer's process span continues the
    // record's traceparent and links its batch.
    let publish = spans
        .iter()
        .find(|s| s.service == "outbox-relay" && s.kind == "SPAN_KIND_PRODUCER")
        .expect("a publish span");
    assert_eq!(publish.parent_span_id, insert.span_id, "{summary:#?}");
    assert_eq!(publish.attribute("messaging.system"), Some("kafka"));
    assert_eq!(
        publish.attribute("messaging.destination.name"),
        Some(stack.topic.as_str())
    );
    assert!(publish
        .attribute("messaging.kafka.message.key")
        .is_some_and(|k| !k.is_empty()));
    assert!(publish
        .attribute("cloudevents.event_id")
        .is_some_and(|k| !k.is_empty()));
    assert_eq!(publish.links.len(), 1, "the batch span is linked");
    let process = spans
        .iter()
        .find(|s| s.service == "event-consumer" && s.kind == "SPAN_KIND_CONSUMER")
        .unwrap();
    assert_eq!(process.kind, "SPAN_KIND_CONSUMER");
    assert_eq!(parent_of(process).service, "user-service");
    assert_eq!(process.attribute("messaging.system"), Some("kafka"));
    assert_eq!(
        process.attribute("cloudevents.event_id"),
        publish.attribute("cloudevents.event_id")
    );
    assert_eq!(process.links.len(), 1, "the batch span is linked");
    let batches = otlp.spans();
    assert!(
        batches.iter().any(|s| s.service == "event-consumer"
            && s.span_id == process.links[0]
            && s.links.contains(&process.span_id)),
        "the consumer's batch span links back to the event"
    );
    Ok(())
}

#[tokio::test]
async fn a_collector_that_is_away_costs_no_request() -> anyhow::Result<()> {
    let mut stack = Stack::new().await?;
    let away = tests::bff_kit::closed_port_url().await;
    stack.set_env("OTEL_EXPORTER_OTLP_ENDPOINT", &away);
    stack.set_env("OTEL_BSP_SCHEDULE_DELAY", "50");
    let stack = stack.started().await?;
    for n in 0..3 {
        let user = json!({
            "email": format!("away.{n}.{}@example.com", uuid::Uuid::new_v4().simple()),
            "password": "a long and unusual passphrase 42",
            "first_name": "Ada",
            "last_name": "Lovelace",
        });
        let answer = stack.bff_post("/api/v1/register", &user).await?;
        assert_eq!(answer.status(), 201);
        let login = json!({"email": user["email"], "password": user["password"]});
        let answer = stack.bff_post("/api/v1/auth/login", &login).await?;
        assert_eq!(answer.status(), 200);
    }
    // The events still go all the way through.
    let applied = eventually(Duration::from_secs(60), || async {
        stack
            .count("SELECT count(*) FROM consumer.welcome_notifications")
            .await
            .is_ok_and(|n| n == 3)
    })
    .await;
    assert!(applied);
    Ok(())
}

#[tokio::test]
async fn json_log_lines_inside_a_request_carry_its_trace_and_span_ids() -> anyhow::Result<()> {
    use std::io::BufRead as _;
    use std::process::{Command, Stdio};
    let otlp = receiver().await;
    let db = tests::scratch_db().await;
    let port = tests::stack::free_port();
    let key = "json-log-internal-key-0123456789";
    let mut child = Command::new(tests::stack::binary_path("user-service"))
        .env_clear()
        .envs(db.to_env())
        .envs([
            ("ENV", "development"),
            ("PORT", &port.to_string()),
            ("LOG_FORMAT", "json"),
            ("LOG_LEVEL", "info"),
            ("SCRYPT_LOG_N", "10"),
            ("INTERNAL_API_KEY", key),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.endpoint),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().expect("piped");
    let (lines, received) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let url = format!("http://127.0.0.1:{port}/api/v1/register");
    let http = reqwest::Client::new();
    let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let user = json!({
        "email": format!("json.{}@example.com", uuid::Uuid::new_v4().simple()),
        "password": "a long and unusual passphrase 42",
        "first_name": "Jay",
        "last_name": "Son",
    });
    let registered = eventually(Duration::from_secs(30), || async {
        let sent = http
            .post(&url)
            .bearer_auth(key)
            .header("traceparent", incoming)
            .json(&user)
            .send()
            .await;
        matches!(sent, Ok(r) if r.status() == 201)
    })
    .await;
    anyhow::ensure!(registered, "the user service did not register the user");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let line = loop {
        let line = received.recv_timeout(Duration::from_secs(30))?;
        let parsed: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
        if parsed["message"] == "user registered" {
            break parsed;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "no 'user registered' line"
        );
    };
    let _ = child.kill();
    let _ = child.wait();
    // The line is inside the request's server span, a child of the caller's trace.
    assert_eq!(
        line["span"]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736",
        "{line}"
    );
    let span_id = line["span"]["span_id"].as_str().unwrap_or_default();
    assert_eq!(span_id.len(), 16, "{line}");
    assert_ne!(
        span_id, "00f067aa0ba902b7",
        "the service's own span, not the caller's"
    );
    assert!(
        !line.to_string().contains("@example.com"),
        "no email in the log: {line}"
    );
    Ok(())
}
