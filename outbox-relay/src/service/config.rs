//! The outbox relay's configuration, loaded once in `main` and passed down.

use std::path::Path;

use crate::platform::config::{ConfigError, Layered, Profile, Profiles};
use crate::platform::db::DbConfig;
use crate::platform::http::Common;
use crate::relay::{ProducerSettings, RelayConfig};
use crate::retention::parse_retention;
use serde::Deserialize;
use std::time::Duration;

const PROFILES: Profiles = Profiles {
    development: include_str!("../../config/development.yaml"),
    docker: include_str!("../../config/docker.yaml"),
    production: include_str!("../../config/production.yaml"),
};

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub port: u16,
    pub kafka_brokers: String,
    /// Rows claimed and produced per batch.
    pub relay_batch_size: i64,
    /// Fallback poll when no NOTIFY arrives.
    pub relay_poll_interval_ms: u64,
    /// How long published rows are kept for replay (`7d`, `12h`, `0` = keep).
    pub outbox_retention: String,
    pub relay_linger_ms: u64,
    /// none | gzip | snappy | lz4 | zstd
    pub relay_compression: String,
    pub relay_message_timeout_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        let producer = ProducerSettings::new("127.0.0.1:9092");
        Self {
            port: 8082,
            kafka_brokers: producer.brokers,
            relay_batch_size: 1000,
            relay_poll_interval_ms: 500,
            outbox_retention: "7d".into(),
            relay_linger_ms: producer.linger_ms,
            relay_compression: producer.compression,
            relay_message_timeout_ms: producer.message_timeout_ms,
        }
    }
}

const COMPRESSIONS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

#[derive(Debug, Clone)]
pub struct Config {
    pub profile: Profile,
    pub common: Common,
    pub settings: Settings,
    pub db: DbConfig,
}

impl Config {
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_layers(Layered::load(&PROFILES, file)?)
    }

    /// Loads from an explicit environment (tests).
    pub fn from_env(env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        Self::from_layers(Layered::from_sources(&PROFILES, None, env)?)
    }

    fn from_layers(layers: Layered) -> Result<Self, ConfigError> {
        let config = Self {
            profile: layers.profile(),
            common: layers.get()?,
            settings: layers.get()?,
            db: layers.get()?,
        };
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.settings.kafka_brokers.trim().is_empty() {
            return Err(ConfigError::Refused(
                "KAFKA_BROKERS must name at least one broker".into(),
            ));
        }
        if self.settings.relay_batch_size < 1 {
            return Err(ConfigError::Refused(
                "RELAY_BATCH_SIZE must be at least 1".into(),
            ));
        }
        if self.settings.relay_poll_interval_ms == 0 {
            return Err(ConfigError::Refused(
                "RELAY_POLL_INTERVAL_MS must be at least 1".into(),
            ));
        }
        if !COMPRESSIONS.contains(&self.settings.relay_compression.as_str()) {
            return Err(ConfigError::Refused(format!(
                "RELAY_COMPRESSION must be one of {}",
                COMPRESSIONS.join(", ")
            )));
        }
        parse_retention(&self.settings.outbox_retention)
            .map_err(|e| ConfigError::Refused(format!("OUTBOX_RETENTION: {e}")))?;
        Ok(())
    }

    /// The engine's settings.
    pub fn relay(&self) -> RelayConfig {
        RelayConfig {
            batch_size: self.settings.relay_batch_size,
            poll_interval: Duration::from_millis(self.settings.relay_poll_interval_ms),
            // Checked in `check`.
            retention: parse_retention(&self.settings.outbox_retention).unwrap_or_default(),
            ..RelayConfig::default()
        }
    }

    /// The producer's settings; librdkafka may buffer two batches.
    pub fn producer(&self) -> ProducerSettings {
        ProducerSettings {
            brokers: self.settings.kafka_brokers.clone(),
            linger_ms: self.settings.relay_linger_ms,
            compression: self.settings.relay_compression.clone(),
            message_timeout_ms: self.settings.relay_message_timeout_ms,
            queue_max_messages: (self.settings.relay_batch_size as usize)
                .saturating_mul(2)
                .max(100_000),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn relay_settings_come_from_the_environment() {
        let config = Config::from_env(env(&[
            ("RELAY_BATCH_SIZE", "250"),
            ("RELAY_POLL_INTERVAL_MS", "100"),
            ("OUTBOX_RETENTION", "12h"),
            ("RELAY_COMPRESSION", "zstd"),
            ("RELAY_LINGER_MS", "2"),
            ("RELAY_MESSAGE_TIMEOUT_MS", "5000"),
            ("KAFKA_BROKERS", "kafka:9092"),
        ]))
        .unwrap();
        let relay = config.relay();
        assert_eq!(relay.batch_size, 250);
        assert_eq!(relay.poll_interval, Duration::from_millis(100));
        assert_eq!(relay.retention, Some(Duration::from_secs(12 * 3600)));
        let producer = config.producer();
        assert_eq!(producer.brokers, "kafka:9092");
        assert_eq!(producer.compression, "zstd");
        assert_eq!((producer.linger_ms, producer.message_timeout_ms), (2, 5000));
    }

    #[test]
    fn defaults_keep_a_week_and_zero_keeps_forever() {
        let config = Config::from_env(env(&[])).unwrap();
        assert_eq!(
            config.relay().retention,
            Some(Duration::from_secs(7 * 86_400))
        );
        assert_eq!(config.relay().batch_size, 1000);
        assert_eq!(config.producer().compression, "lz4");
        let keep = Config::from_env(env(&[("OUTBOX_RETENTION", "0")])).unwrap();
        assert_eq!(keep.relay().retention, None);
    }

    #[test]
    fn nonsense_is_refused() {
        for (key, value) in [
            ("OUTBOX_RETENTION", "a while"),
            ("RELAY_COMPRESSION", "brotli"),
            ("RELAY_BATCH_SIZE", "0"),
        ] {
            let error = Config::from_env(env(&[(key, value)])).unwrap_err();
            assert!(error.to_string().contains(key), "{error}");
        }
    }
}
