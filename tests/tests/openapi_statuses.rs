//! Every status an API can return is in its OpenAPI document. For each HTTP service
//! (BFF, user service, event consumer, relay), read `/openapi.json` and check that every
//! operation with a request body documents 400, 413 and 415 and every secured one 401;
//! then, live, send each JSON-body operation a `text/plain` body (415) and malformed JSON
//! (400), with valid credentials, and check both answers are documented. The routes come
//! from the documents, so a new route is covered without touching this file.

use std::time::Duration;

use outbox_relay::service::startup::App as RelayApp;
use platform::internal_key::DEV_INTERNAL_API_KEY;
use platform::testing::{scratch_topic, send_raw_json, spawn_service};
use serde_json::Value;
use tests::bff_kit::{spawn_stack, KEY};
use tests::{brokers, scratch_db};
use tokio::sync::oneshot;
use uuid::Uuid;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// One service to check: where it answers and what a secured operation needs.
struct Target {
    name: &'static str,
    base: String,
    /// The bearer for operations that declare `security`.
    bearer: String,
}

/// One operation of a document.
struct Operation<'a> {
    method: &'a str,
    path: &'a str,
    spec: &'a Value,
}

impl Operation<'_> {
    fn label(&self) -> String {
        format!("{} {}", self.method.to_uppercase(), self.path)
    }

    fn documents(&self, status: u16) -> bool {
        self.spec["responses"].get(status.to_string()).is_some()
    }

    fn has_body(&self) -> bool {
        self.spec.get("requestBody").is_some()
    }

    fn has_json_body(&self) -> bool {
        self.spec["requestBody"]["content"]
            .as_object()
            .is_some_and(|content| content.keys().any(|ct| ct.starts_with("application/json")))
    }

    fn is_secured(&self) -> bool {
        self.spec
            .get("security")
            .and_then(Value::as_array)
            .is_some_and(|schemes| !schemes.is_empty())
    }

    /// The path with each `{parameter}` filled with a random UUID.
    fn concrete_path(&self) -> String {
        let mut path = String::new();
        let mut rest = self.path;
        while let Some(open) = rest.find('{') {
            let close = rest[open..].find('}').expect("a closed path parameter") + open;
            path.push_str(&rest[..open]);
            path.push_str(&Uuid::new_v4().to_string());
            rest = &rest[close + 1..];
        }
        path.push_str(rest);
        path
    }
}

fn operations(spec: &Value) -> Vec<Operation<'_>> {
    let paths = spec["paths"].as_object().expect("the document has paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS.iter().filter_map(move |method| {
                item.get(*method)
                    .map(|spec| Operation { method, path, spec })
            })
        })
        .collect()
}

async fn spec_of(http: &reqwest::Client, target: &Target) -> Value {
    let response = http
        .get(format!("{}/openapi.json", target.base))
        .send()
        .await
        .expect("GET /openapi.json");
    assert_eq!(response.status(), 200, "{}: /openapi.json", target.name);
    response.json().await.expect("the OpenAPI document is JSON")
}

/// (a): the document's promises. Returns how many operations have a JSON body.
fn check_document(target: &Target, spec: &Value) -> usize {
    let operations = operations(spec);
    assert!(!operations.is_empty(), "{}: no operations", target.name);
    let mut missing = Vec::new();
    for op in &operations {
        let mut required = Vec::new();
        if op.has_body() {
            required.extend([400, 413, 415]);
        }
        if op.is_secured() {
            required.push(401);
        }
        for status in required {
            if !op.documents(status) {
                missing.push(format!("{} does not document {status}", op.label()));
            }
        }
    }
    assert!(missing.is_empty(), "{}: {missing:#?}", target.name);
    operations.iter().filter(|op| op.has_json_body()).count()
}

/// (b): every JSON-body operation refuses a `text/plain` body with 415 and malformed JSON
/// with 400, each with the JSON error body, and documents what it answered.
async fn check_live(http: &reqwest::Client, target: &Target, spec: &Value) {
    for op in operations(spec).iter().filter(|op| op.has_json_body()) {
        let method: reqwest::Method = op.method.to_uppercase().parse().expect("an HTTP method");
        let url = format!("{}{}", target.base, op.concrete_path());
        let request = || {
            let request = http.request(reqwest::Method::clone(&method), &url);
            match op.is_secured() {
                true => request.bearer_auth(&target.bearer),
                false => request,
            }
        };
        let label = format!("{}: {}", target.name, op.label());

        let plain = request()
            .header("content-type", "text/plain")
            .body(r#"{"email": "a@example.com"}"#)
            .send()
            .await
            .expect("request");
        let (status, body) = answer(plain, &label).await;
        assert_eq!(status, 415, "{label} with text/plain: {body}");
        assert_eq!(body["error"], "Unsupported media type", "{label}: {body}");
        assert!(
            op.documents(status),
            "{label} answered an undocumented {status}"
        );

        let malformed = send_raw_json(request(), "{not json").await;
        let (status, body) = answer(malformed, &label).await;
        assert_eq!(status, 400, "{label} with malformed JSON: {body}");
        assert!(body["error"].is_string(), "{label}: {body}");
        assert!(body["message"].is_string(), "{label}: {body}");
        assert!(
            op.documents(status),
            "{label} answered an undocumented {status}"
        );
    }
}

/// The status and the JSON error body of a refusal (which must be labelled JSON).
async fn answer(response: reqwest::Response, label: &str) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|ct| ct.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{label}: a {status} labelled {content_type:?}"
    );
    (status, response.json().await.expect("a JSON body"))
}

/// The environment of a service on a scratch database and a free port, with `extra`.
async fn scratch_env(extra: Vec<(&str, String)>) -> Vec<(String, String)> {
    let mut env = scratch_db().await.to_env();
    let common = [
        ("PORT", "0".to_owned()),
        ("LOG_LEVEL", "warn".to_owned()),
        ("KAFKA_BROKERS", brokers()),
    ];
    env.extend(
        common
            .into_iter()
            .chain(extra)
            .map(|(k, v)| (k.to_owned(), v)),
    );
    env
}

async fn spawn_consumer() -> (String, oneshot::Sender<()>) {
    let env = scratch_env(vec![
        ("CONSUMER_TOPIC", scratch_topic(1).await),
        ("CONSUMER_DLQ_TOPIC", scratch_topic(1).await),
        (
            "CONSUMER_GROUP",
            format!("test-{}", Uuid::new_v4().simple()),
        ),
    ])
    .await;
    spawn_service::<event_consumer::startup::App>(env).await
}

async fn spawn_relay() -> (String, oneshot::Sender<()>) {
    spawn_service::<RelayApp>(scratch_env(Vec::new()).await).await
}

#[tokio::test]
async fn every_status_an_api_returns_is_in_its_openapi_document() {
    let mut stack = spawn_stack(&[
        ("RATE_LIMIT_REGISTER_PER_MIN", "100"),
        ("RATE_LIMIT_LOGIN_PER_MIN", "100"),
        ("RATE_LIMIT_REFRESH_PER_MIN", "100"),
        ("RATE_LIMIT_LOGOUT_PER_MIN", "100"),
    ])
    .await;
    // An admin's access token opens every protected BFF route.
    let email = format!("openapi-{}@example.com", Uuid::new_v4().simple());
    stack.register(&email).await;
    stack.make_admin(&email).await;
    let (access, _) = stack.login(&email).await;
    let (consumer, stop) = spawn_consumer().await;
    stack.keep(stop);
    let (relay, stop) = spawn_relay().await;
    stack.keep(stop);

    let targets = [
        // (target, whether it must have JSON-body operations)
        (
            Target {
                name: "bff",
                base: stack.base.clone(),
                bearer: access,
            },
            true,
        ),
        (
            Target {
                name: "user-service",
                base: stack.user_service.clone(),
                bearer: KEY.to_owned(),
            },
            true,
        ),
        (
            Target {
                name: "event-consumer",
                base: consumer,
                // The development key: the consumer runs without INTERNAL_API_KEY here.
                bearer: DEV_INTERNAL_API_KEY.to_owned(),
            },
            false,
        ),
        (
            Target {
                name: "outbox-relay",
                base: relay,
                bearer: String::new(),
            },
            false,
        ),
    ];
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    for (target, has_bodies) in &targets {
        let spec = spec_of(&http, target).await;
        let with_json_body = check_document(target, &spec);
        if *has_bodies {
            assert!(
                with_json_body > 0,
                "{}: no operation with a JSON body found; is the document read right?",
                target.name
            );
        }
        check_live(&http, target, &spec).await;
    }
}
