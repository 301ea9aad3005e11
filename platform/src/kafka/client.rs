//! The Kafka clients' common ground (feature `kafka`): a librdkafka configuration from
//! [`KafkaConfig`], the client context that routes librdkafka's logs to `tracing` and
//! tells a broker that refuses the client (credentials, TLS) from one that is away, and
//! topic creation.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use super::KafkaConfig;

/// A librdkafka configuration with the brokers and every security property of `kafka`.
pub fn client_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    // A listener that speaks another protocol (a plaintext client at a TLS port) answers
    // nothing at all; give up on such a connection after 10 s, not librdkafka's 30.
    config.set("socket.connection.setup.timeout.ms", "10000");
    // Requests go out as soon as they are written (TCP_NODELAY), not held back for the
    // acknowledgement of the one before: a lone event is not delayed behind a fetch or a
    // transaction request on the same connection.
    config.set("socket.nagle.disable", "true");
    // librdkafka's informational lines include the one that tells a plaintext client it
    // reached a TLS listener; they reach `tracing` at debug level.
    config.set_log_level(RDKafkaLogLevel::Info);
    for (name, value) in kafka.properties() {
        config.set(name, value);
    }
    config
}

/// Whether the brokers refuse this client (credentials, TLS, a plaintext client at a TLS
/// listener), as opposed to being away. A refusal needs an operator, so it makes the
/// service unready until a broker accepts the client again.
#[derive(Debug, Default)]
pub struct BrokerAccess {
    refused: Mutex<Option<String>>,
    logged: Mutex<Option<(Instant, &'static str)>>,
}

impl BrokerAccess {
    /// The last refusal, until [`BrokerAccess::accepted`].
    pub fn refused(&self) -> Option<String> {
        self.refused.lock().ok().and_then(|r| r.clone())
    }

    /// A request to the brokers succeeded.
    pub fn accepted(&self) {
        if let Ok(mut refused) = self.refused.lock() {
            if refused.take().is_some() {
                tracing::info!("the Kafka brokers accept this client again");
            }
        }
    }

    /// Looks at an error librdkafka reports; true when it is a refusal.
    pub fn observe(&self, error: &KafkaError, reason: &str) -> bool {
        let code = match error {
            KafkaError::Global(code) => Some(*code),
            _ => error.rdkafka_error_code(),
        };
        self.note(refusal(code, reason), reason)
    }

    /// Looks at a line librdkafka logs (a connection that a TLS listener drops is only
    /// logged); true when it tells of a refusal.
    pub fn observe_log(&self, fac: &str, message: &str) -> bool {
        fac == "FAIL" && self.note(refusal(None, message), message)
    }

    fn note(&self, cause: Option<&'static str>, reason: &str) -> bool {
        let Some(cause) = cause else {
            return false;
        };
        let now = Instant::now();
        // librdkafka reports one failed attempt through both its log and its error
        // callback, and then retries with its reconnect backoff (up to 10 s): log a cause
        // once per attempt, not once per report.
        let repeated = self.logged.lock().ok().is_some_and(|mut last| {
            let repeated = last.as_ref().is_some_and(|(at, was)| {
                *was == cause && now.duration_since(*at) < REPORTS_OF_ONE_ATTEMPT
            });
            if !repeated {
                *last = Some((now, cause));
            }
            repeated
        });
        if !repeated {
            tracing::error!(
                cause,
                reason,
                "the Kafka brokers refuse this client; check the KAFKA_* security settings"
            );
        }
        if let Ok(mut refused) = self.refused.lock() {
            *refused = Some(format!("{cause}: {reason}"));
        }
        true
    }
}

/// How close together librdkafka's reports of one failed attempt arrive (its shortest
/// reconnect backoff is 100 ms; the reports of one attempt come within a millisecond).
const REPORTS_OF_ONE_ATTEMPT: Duration = Duration::from_millis(50);

fn refusal(code: Option<rdkafka::types::RDKafkaErrorCode>, reason: &str) -> Option<&'static str> {
    use rdkafka::types::RDKafkaErrorCode as C;
    match code {
        Some(C::Authentication | C::SaslAuthenticationFailed) => {
            Some("authentication failed (KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD / KAFKA_SASL_MECHANISM)")
        }
        Some(C::SSL) => Some("TLS failed (KAFKA_SSL_CA_LOCATION, the broker's certificate, KAFKA_SECURITY_PROTOCOL)"),
        _ if reason.contains("SASL authentication error") => {
            Some("authentication failed (KAFKA_SASL_USERNAME / KAFKA_SASL_PASSWORD / KAFKA_SASL_MECHANISM)")
        }
        _ if reason.contains("security.protocol") || reason.contains("APIVERSION_QUERY") => {
            Some("the broker does not speak this client's protocol: KAFKA_SECURITY_PROTOCOL may not match the listener (plaintext to a TLS listener?)")
        }
        _ => None,
    }
}

/// The client context of the platform's Kafka clients: librdkafka's errors go through
/// [`BrokerAccess`] (and the log), its log lines to `tracing`.
#[derive(Debug, Clone, Default)]
pub struct KafkaContext {
    pub access: Arc<BrokerAccess>,
}

impl ClientContext for KafkaContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if !self.access.observe_log(fac, log_message) {
            log_librdkafka(level, fac, log_message);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if !self.access.observe(&error, reason) {
            tracing::warn!(%error, reason, "librdkafka");
        }
    }
}

impl ConsumerContext for KafkaContext {}

/// librdkafka's own log lines, at the matching `tracing` level.
pub fn log_librdkafka(level: RDKafkaLogLevel, fac: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!(fac, "librdkafka: {message}"),
        RDKafkaLogLevel::Warning => tracing::warn!(fac, "librdkafka: {message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::debug!(fac, "librdkafka: {message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(fac, "librdkafka: {message}"),
    }
}

/// Creates `name` with `partitions` partitions on the brokers `kafka` connects to, if it
/// does not exist yet.
pub async fn create_topic_with(
    kafka: &KafkaConfig,
    name: &str,
    partitions: i32,
) -> Result<(), rdkafka::error::KafkaError> {
    let admin: AdminClient<DefaultClientContext> = client_config(kafka).create()?;
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics([&topic], &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(rdkafka::error::KafkaError::AdminOp(code)).inspect_err(|_| {
                    tracing::error!(%topic, ?code, "cannot create topic");
                })
            }
        }
    }
    Ok(())
}
