//! What an operator scrapes: every route of every service shows up in the request-duration
//! histogram under its route template, and every metric family a service exposes has its
//! `# HELP` and `# TYPE` lines.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use serde_json::{json, Value};
use tests::eventually;
use tests::stack::{Service, Stack};

const HISTOGRAM: &str = "http_server_request_duration_seconds";

/// Each (route template, method) of the service's OpenAPI document.
async fn operations(stack: &Stack, service: Service) -> anyhow::Result<Vec<(String, String)>> {
    let doc: Value = stack
        .http
        .get(stack.url(service, "/openapi.json"))
        .send()
        .await?
        .json()
        .await?;
    let mut found = Vec::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in item.as_object().into_iter().flatten().map(|(m, _)| m) {
            found.push((path.clone(), method.to_uppercase()));
        }
    }
    anyhow::ensure!(!found.is_empty(), "{service:?} documents no operation");
    Ok(found)
}

/// Calls `template` with every parameter filled in, without credentials: whatever the
/// answer, the request is one the histogram must count.
async fn call(stack: &Stack, service: Service, template: &str, method: &str) -> u16 {
    let path: String = template
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "00000000-0000-0000-0000-000000000000"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/");
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = stack
        .http
        .request(method.clone(), stack.url(service, &path));
    if method != reqwest::Method::GET && method != reqwest::Method::HEAD {
        request = request.json(&json!({}));
    }
    request
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// The labels of each series of `family` (as `name="value"` pairs), from the text format.
fn series(text: &str, family: &str) -> Vec<HashMap<String, String>> {
    let prefix = format!("{family}_count{{");
    text.lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .filter_map(|rest| rest.split_once("} ").map(|(labels, _)| labels))
        .map(|labels| {
            labels
                .split("\",")
                .filter_map(|pair| pair.split_once("=\""))
                .map(|(k, v)| (k.to_owned(), v.trim_end_matches('"').to_owned()))
                .collect()
        })
        .collect()
}

/// The families that have samples but no `# HELP` or no `# TYPE` line.
fn undescribed(text: &str) -> Vec<String> {
    let mut described = BTreeSet::new();
    let mut typed = HashMap::new();
    let mut sampled = BTreeSet::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("#"), Some("HELP"), Some(name)) => {
                described.insert(name.to_owned());
            }
            (Some("#"), Some("TYPE"), Some(name)) => {
                typed.insert(name.to_owned(), words.next().unwrap_or("").to_owned());
            }
            (Some(sample), _, _) if !sample.starts_with('#') => {
                let name = sample.split('{').next().unwrap_or(sample);
                sampled.insert(name.to_owned());
            }
            _ => {}
        }
    }
    sampled
        .into_iter()
        .map(|name| {
            // A histogram's or summary's series carry a suffix on the family's name.
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    let family = name.strip_suffix(suffix)?;
                    typed.contains_key(family).then(|| family.to_owned())
                })
                .unwrap_or(name)
        })
        .filter(|family| !described.contains(family) || !typed.contains_key(family))
        .collect()
}

#[tokio::test]
async fn every_route_is_in_the_duration_histogram_and_every_family_is_described(
) -> anyhow::Result<()> {
    let stack = Stack::start_all().await?;
    // One registration through the whole system, so the relay and the consumer record
    // their own families too.
    let user = json!({
        "email": format!("red.{}@example.com", uuid::Uuid::new_v4().simple()),
        "password": "a long and unusual passphrase 42",
        "first_name": "Ada",
        "last_name": "Lovelace",
    });
    let answer = stack.bff_post("/api/v1/register", &user).await?;
    anyhow::ensure!(answer.status() == 201, "register: {}", answer.status());
    let applied = eventually(Duration::from_secs(60), || async {
        stack
            .count("SELECT count(*) FROM consumer.welcome_notifications")
            .await
            .is_ok_and(|n| n == 1)
    })
    .await;
    anyhow::ensure!(applied, "the registration was not applied");

    for service in Service::ALL {
        let operations = operations(&stack, service).await?;
        for (template, method) in &operations {
            call(&stack, service, template, method).await;
        }
        let text = stack
            .http
            .get(stack.url(service, "/metrics"))
            .send()
            .await?
            .text()
            .await?;
        let seen: BTreeSet<(String, String)> = series(&text, HISTOGRAM)
            .into_iter()
            .map(|labels| {
                (
                    labels.get("http_route").cloned().unwrap_or_default(),
                    labels
                        .get("http_request_method")
                        .cloned()
                        .unwrap_or_default(),
                )
            })
            .collect();
        for operation in &operations {
            assert!(
                seen.contains(operation),
                "{service:?}: {operation:?} is not in {HISTOGRAM}; seen {seen:?}"
            );
        }
        for labels in series(&text, HISTOGRAM) {
            assert!(
                labels.contains_key("http_response_status_code"),
                "{labels:?}"
            );
        }
        assert!(
            text.contains("# TYPE http_server_active_requests gauge"),
            "{service:?}:\n{text}"
        );
        let missing = undescribed(&text);
        assert!(
            missing.is_empty(),
            "{service:?}: no HELP/TYPE for {missing:?}\n{text}"
        );
    }
    // The event path's own families, by name. The consumer reads uncommitted records, so
    // it may apply the event before the relay has recorded (and counted) its transaction:
    // the relay's families are awaited, not read once.
    const RELAY_FAMILIES: [&str; 3] = [
        "outbox_published_total",
        "outbox_commit_to_ack_seconds",
        "outbox_backlog",
    ];
    let relay_metrics = || async {
        stack
            .http
            .get(stack.url(Service::Relay, "/metrics"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    };
    let counted = eventually(Duration::from_secs(30), || async {
        relay_metrics().await.is_some_and(|relay| {
            RELAY_FAMILIES
                .iter()
                .all(|family| relay.contains(&format!("# HELP {family} ")))
        })
    })
    .await;
    let relay = relay_metrics().await.unwrap_or_default();
    assert!(counted, "{RELAY_FAMILIES:?}:\n{relay}");
    let consumer = stack
        .http
        .get(stack.url(Service::Consumer, "/metrics"))
        .send()
        .await?
        .text()
        .await?;
    for family in ["consumer_processed_total", "consumer_batch_seconds"] {
        assert!(
            consumer.contains(&format!("# HELP {family} ")),
            "{family}:\n{consumer}"
        );
    }
    Ok(())
}

/// Every family the services record, by name.
fn families() -> BTreeSet<&'static str> {
    let mut names: BTreeSet<&'static str> = [
        platform::metrics::HTTP_DURATION,
        platform::metrics::HTTP_ACTIVE,
    ]
    .into_iter()
    .collect();
    for list in [
        bff::METRICS,
        user_service::METRICS,
        outbox_relay::relay::METRICS,
        event_consumer::engine::METRICS,
    ] {
        names.extend(list.iter().map(|(name, ..)| *name));
    }
    names
}

/// The metric names a PromQL expression uses (label names and functions left out).
fn metric_names(expr: &str) -> Vec<String> {
    const PREFIXES: [&str; 8] = [
        "http_server_",
        "outbox_",
        "consumer_",
        "users_",
        "bff_",
        "login_",
        "password_",
        "register_",
    ];
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|token| PREFIXES.iter().any(|p| token.starts_with(p)))
        .map(|token| {
            ["_bucket", "_count", "_sum"]
                .iter()
                .find_map(|suffix| token.strip_suffix(suffix))
                .unwrap_or(token)
                .to_owned()
        })
        .collect()
}

#[test]
fn the_grafana_dashboard_and_the_scrape_config_name_real_families_and_targets() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dashboard = root.join("docker/observability/grafana/dashboards/outbox-platform.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(dashboard).unwrap())
        .expect("the dashboard is JSON");
    let known = families();
    let mut used = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            for name in metric_names(expr) {
                assert!(
                    known.contains(name.as_str()),
                    "{name} (in {expr}) is no family"
                );
                used.insert(name);
            }
        }
    }
    // The dashboard shows the RED figures and the event path.
    for family in [
        "http_server_request_duration_seconds",
        "outbox_backlog",
        "outbox_commit_to_ack_seconds",
        "consumer_lag",
        "consumer_dead_lettered_total",
    ] {
        assert!(
            used.contains(family),
            "the dashboard does not show {family}"
        );
    }
    // Prometheus scrapes each compose service on its METRICS_ADDR port.
    let scrape = std::fs::read_to_string(root.join("docker/observability/prometheus.yml")).unwrap();
    let compose = std::fs::read_to_string(root.join("docker/docker-compose.yml")).unwrap();
    assert!(
        compose.contains("METRICS_ADDR: ${METRICS_ADDR:-0.0.0.0:9464}"),
        "compose moved METRICS_ADDR"
    );
    for service in ["bff", "user-service", "outbox-relay", "event-consumer"] {
        assert!(
            scrape.contains(&format!("\"{service}:9464\"")),
            "{service} is not scraped"
        );
        assert!(
            compose.contains(&format!("\n  {service}:\n")),
            "compose has no {service}"
        );
    }
}

/// `/health/live` and `/health/ready` of `port`: their statuses and the ready body.
async fn probes(http: &reqwest::Client, port: u16) -> (u16, u16, Value) {
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let live = http.get(url("/health/live")).send().await;
    let ready = http.get(url("/health/ready")).send().await;
    let live = live.map(|r| r.status().as_u16()).unwrap_or(0);
    match ready {
        Ok(r) => {
            let status = r.status().as_u16();
            (live, status, r.json().await.unwrap_or_default())
        }
        Err(_) => (live, 0, Value::Null),
    }
}

#[tokio::test]
async fn with_the_database_or_the_broker_away_services_are_live_but_not_ready() -> anyhow::Result<()>
{
    use platform::testing::TcpProxy;
    use std::net::ToSocketAddrs;
    let mut stack = Stack::new().await?;
    // Every service reaches PostgreSQL through a proxy the test can cut.
    let database = format!("{}:{}", stack.db.db_host, stack.db.db_port)
        .to_socket_addrs()?
        .next()
        .unwrap();
    let proxy = TcpProxy::start(database).await?;
    stack.set_env("DB_HOST", "127.0.0.1");
    stack.set_env("DB_PORT", &proxy.port().to_string());
    let mut stack = stack.started().await?;
    let http = &stack.http.clone();
    for service in Service::ALL {
        let (live, ready, body) = probes(http, stack.port(service)).await;
        assert_eq!((live, ready), (200, 200), "{service:?}: {body}");
        assert_eq!(body["database"], "up", "{service:?}: {body}");
    }

    proxy.cut();
    for service in Service::ALL {
        let port = stack.port(service);
        let unready = eventually(Duration::from_secs(30), || async {
            let (live, ready, body) = probes(http, port).await;
            live == 200 && ready == 503 && body["database"] == "down"
        })
        .await;
        let (live, ready, body) = probes(http, port).await;
        assert!(unready, "{service:?}: live {live}, ready {ready}: {body}");
    }
    proxy.restore();
    for service in Service::ALL {
        let port = stack.port(service);
        let back = eventually(Duration::from_secs(30), || async {
            probes(http, port).await.1 == 200
        })
        .await;
        assert!(back, "{service:?} did not turn ready again");
    }

    // The relay and the consumer with no broker where they look for one.
    let nowhere = tests::bff_kit::closed_port_url()
        .await
        .trim_start_matches("http://")
        .to_owned();
    for service in [Service::Relay, Service::Consumer] {
        let port = stack.start_extra(service, &[("KAFKA_BROKERS", nowhere.clone())])?;
        let unready = eventually(Duration::from_secs(30), || async {
            let (live, ready, body) = probes(http, port).await;
            live == 200 && ready == 503 && body["broker"] == "down" && body["database"] == "up"
        })
        .await;
        let (live, ready, body) = probes(http, port).await;
        assert!(unready, "{service:?}: live {live}, ready {ready}: {body}");
    }
    Ok(())
}
