//! How every Kafka client of the platform connects: `KAFKA_BROKERS` (a comma-separated
//! list) and librdkafka's own security properties, passed through by name.
//!
//! - `KAFKA_SECURITY_*`, `KAFKA_SASL_*` and `KAFKA_SSL_*` become the librdkafka property
//!   of the same name in lower case with dots: `KAFKA_SECURITY_PROTOCOL=SASL_SSL` is
//!   `security.protocol=SASL_SSL`, `KAFKA_SASL_MECHANISM` is `sasl.mechanism`,
//!   `KAFKA_SSL_CA_LOCATION` is `ssl.ca.location`, and so on. `KAFKA_SASL_PASSWORD` may
//!   also come from a file (`KAFKA_SASL_PASSWORD_FILE`).
//! - `KAFKA_PROPERTIES` takes any other librdkafka property, as `name=value` pairs
//!   separated by `;` or new lines (for example `broker.address.family=v4;client.rack=a`).
//!
//! The relay's producer, the consumer and the dead-letter producer all take these. Values
//! of secret properties never appear in `Debug` output.

use std::collections::BTreeMap;

#[cfg(feature = "kafka")]
mod client;
#[cfg(feature = "kafka")]
pub use client::{client_config, create_topic_with, log_librdkafka, BrokerAccess, KafkaContext};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::setting::ConfigError;

/// The prefixes of the settings passed through as librdkafka properties.
const PASS_THROUGH: [&str; 3] = ["kafka_security_", "kafka_sasl_", "kafka_ssl_"];

const PROTOCOLS: [&str; 4] = ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"];

/// The connection settings, parsed once as the configuration loads into librdkafka
/// properties (`bootstrap.servers` first).
#[derive(Clone, Deserialize)]
#[serde(try_from = "RawKafka")]
pub struct KafkaConfig {
    pub kafka_brokers: String,
    properties: Vec<(String, String)>,
}

/// The settings as they are written.
#[derive(Deserialize)]
#[serde(default)]
struct RawKafka {
    kafka_brokers: String,
    kafka_properties: Option<SecretString>,
    /// Everything else in the configuration; only the pass-through prefixes are kept.
    #[serde(flatten)]
    rest: BTreeMap<String, serde_json::Value>,
}

impl Default for RawKafka {
    fn default() -> Self {
        Self {
            kafka_brokers: "127.0.0.1:9092".into(),
            kafka_properties: None,
            rest: BTreeMap::new(),
        }
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self::plaintext("127.0.0.1:9092")
    }
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: Vec<(&str, &str)> = self
            .properties
            .iter()
            .map(|(name, value)| {
                let shown = if is_secret(name) { "[redacted]" } else { value };
                (name.as_str(), shown)
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("properties", &properties)
            .finish()
    }
}

/// Properties whose values are secrets (passwords, keys, JAAS lines, OAuth secrets).
fn is_secret(name: &str) -> bool {
    ["password", "secret", "jaas", ".pem", "key"]
        .iter()
        .any(|word| name.contains(word) && !name.ends_with(".location"))
}

impl TryFrom<RawKafka> for KafkaConfig {
    type Error = ConfigError;

    fn try_from(raw: RawKafka) -> Result<Self, ConfigError> {
        let mut config = Self::plaintext(raw.kafka_brokers);
        if config.properties[0].1.is_empty() {
            return Err(ConfigError::Refused(
                "KAFKA_BROKERS must name at least one broker (host:port, comma-separated)".into(),
            ));
        }
        for (key, value) in &raw.rest {
            if !PASS_THROUGH.iter().any(|prefix| key.starts_with(prefix)) || key.ends_with("_file")
            {
                continue;
            }
            let value = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => continue,
                other => other.to_string(),
            };
            let name = key["kafka_".len()..].replace('_', ".");
            config.properties.push((name, value));
        }
        if let Some(extra) = &raw.kafka_properties {
            for line in extra.expose_secret().split([';', '\n']) {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                let Some((name, value)) = line.split_once('=') else {
                    return Err(ConfigError::Refused(format!(
                        "KAFKA_PROPERTIES: {:?} is not name=value",
                        line.split('=').next().unwrap_or_default()
                    )));
                };
                config = config.with_property(name.trim(), value.trim());
            }
        }
        let protocol = config
            .properties
            .iter()
            .find(|(n, _)| n == "security.protocol");
        if let Some((_, protocol)) = protocol {
            if !PROTOCOLS.contains(&protocol.to_ascii_lowercase().as_str()) {
                return Err(ConfigError::Refused(format!(
                    "KAFKA_SECURITY_PROTOCOL must be one of PLAINTEXT, SSL, SASL_PLAINTEXT, \
                     SASL_SSL, not {protocol:?}"
                )));
            }
        }
        Ok(config)
    }
}

impl KafkaConfig {
    /// Plaintext to `brokers`, no other property (development, tests, the compose network).
    pub fn plaintext(brokers: impl Into<String>) -> Self {
        let kafka_brokers = brokers.into();
        let servers = super::setting::comma_list(&kafka_brokers).join(",");
        Self {
            kafka_brokers,
            properties: vec![("bootstrap.servers".to_owned(), servers)],
        }
    }

    /// Adds a librdkafka property (as `KAFKA_PROPERTIES` would).
    pub fn with_property(mut self, name: &str, value: &str) -> Self {
        self.properties.push((name.to_owned(), value.to_owned()));
        self
    }

    /// `bootstrap.servers` and every security and extra property, in librdkafka's names.
    pub fn properties(&self) -> &[(String, String)] {
        &self.properties
    }

    /// These settings as the environment variables a child process reads.
    pub fn to_env(&self) -> Vec<(String, String)> {
        let mut env = vec![("KAFKA_BROKERS".to_owned(), self.kafka_brokers.clone())];
        let mut extra = Vec::new();
        for (name, value) in self.properties.iter().skip(1) {
            extra.push(format!("{name}={value}"));
        }
        if !extra.is_empty() {
            env.push(("KAFKA_PROPERTIES".to_owned(), extra.join("\n")));
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::config::{pairs, Layered, Profiles};

    const NO_PROFILES: Profiles = Profiles {
        development: "{}",
        docker: "{}",
        production: "{}",
    };

    fn load(env: &[(&str, &str)]) -> Result<KafkaConfig, ConfigError> {
        Layered::from_sources(&NO_PROFILES, None, pairs(env))
            .unwrap()
            .get()
    }

    #[test]
    fn security_settings_pass_through_in_librdkafkas_names() {
        let config = load(&[
            ("KAFKA_BROKERS", "b1:9094, b2:9094,b3:9094"),
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512"),
            ("KAFKA_SASL_USERNAME", "relay"),
            ("KAFKA_SASL_PASSWORD", "12345"),
            ("KAFKA_SSL_CA_LOCATION", "/etc/kafka/ca.pem"),
            (
                "KAFKA_PROPERTIES",
                "broker.address.family=v4; client.rack = eu-1",
            ),
            ("KAFKA_HEAP", "-Xmx1g"),
            ("DB_PASSWORD", "not kafka's"),
        ])
        .unwrap();
        let properties = config.properties();
        for expected in [
            ("bootstrap.servers", "b1:9094,b2:9094,b3:9094"),
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "relay"),
            ("sasl.password", "12345"),
            ("ssl.ca.location", "/etc/kafka/ca.pem"),
            ("broker.address.family", "v4"),
            ("client.rack", "eu-1"),
        ] {
            assert!(
                properties
                    .iter()
                    .any(|(n, v)| (n.as_str(), v.as_str()) == expected),
                "{expected:?} missing from {properties:?}"
            );
        }
        assert_eq!(properties.len(), 8, "{properties:?}");
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let config = load(&[
            ("KAFKA_SASL_PASSWORD", "hunter2-sasl"),
            ("KAFKA_SSL_KEY_PASSWORD", "hunter2-key"),
            (
                "KAFKA_PROPERTIES",
                "sasl.oauthbearer.client.secret=hunter2-oauth",
            ),
        ])
        .unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("sasl.password"), "{debug}");
    }

    #[test]
    fn nonsense_is_refused_by_name() {
        let error = load(&[("KAFKA_SECURITY_PROTOCOL", "TLS")]).unwrap_err();
        assert!(
            error.to_string().contains("KAFKA_SECURITY_PROTOCOL"),
            "{error}"
        );
        let error = load(&[("KAFKA_PROPERTIES", "linger.ms")]).unwrap_err();
        assert!(error.to_string().contains("KAFKA_PROPERTIES"), "{error}");
        let error = load(&[("KAFKA_BROKERS", " , ")]).unwrap_err();
        assert!(error.to_string().contains("KAFKA_BROKERS"), "{error}");
    }
}
