//! The outbox relay's configuration, loaded once in `main` and passed down.

use crate::relay::{ProducerSettings, RelayConfig};
use platform::config::{ConfigError, Profile, Profiles, ServiceConfig, ServiceSettings};
use serde::{Deserialize, Deserializer};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub port: u16,
    /// Rows read per page.
    pub relay_batch_size: i64,
    /// Fallback poll when no NOTIFY arrives.
    pub relay_poll_interval_ms: u64,
    /// How long published rows are kept for replay (`7d`, `12h`, `0` = keep: `None`).
    #[serde(deserialize_with = "retention")]
    pub outbox_retention: Option<Duration>,
    pub relay_linger_ms: u64,
    pub relay_compression: Compression,
    pub relay_message_timeout_ms: u64,
    /// How long the leadership lease runs without renewal (the longest a standby waits
    /// for a leader that died).
    pub relay_lease_ms: u64,
    /// How often the leader tries the parked rows again.
    pub relay_parked_retry_ms: u64,
    /// How long a Kafka transaction stays open before its commit.
    pub relay_commit_interval_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        let producer = ProducerSettings::new("127.0.0.1:9092");
        let relay = RelayConfig::default();
        Self {
            port: 8082,
            relay_batch_size: relay.batch_size,
            relay_poll_interval_ms: relay.poll_interval.as_millis() as u64,
            outbox_retention: relay.retention,
            relay_linger_ms: producer.linger_ms,
            relay_compression: Compression::Lz4,
            relay_message_timeout_ms: producer.message_timeout_ms,
            relay_lease_ms: relay.lease.as_millis() as u64,
            relay_parked_retry_ms: relay.parked_retry.as_millis() as u64,
            relay_commit_interval_ms: relay.commit_interval.as_millis() as u64,
        }
    }
}

/// The producer's compression (`RELAY_COMPRESSION`), in librdkafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    const ALL: [Compression; 5] = [Self::None, Self::Gzip, Self::Snappy, Self::Lz4, Self::Zstd];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

impl<'de> Deserialize<'de> for Compression {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let text = text.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|c| c.as_str()).collect();
                serde::de::Error::custom(format!(
                    "RELAY_COMPRESSION must be one of {}, not {text:?}",
                    names.join(", ")
                ))
            })
    }
}

/// `OUTBOX_RETENTION`: `7d`, `12h`, ... or `0` (keep forever).
fn retention<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    platform::retention::deserialize(deserializer, "OUTBOX_RETENTION")
}

/// The service's whole configuration (see [`ServiceConfig`]).
pub type Config = ServiceConfig<Settings>;

impl ServiceSettings for Settings {
    const PROFILES: Profiles = platform::profiles!();

    fn prepare(&mut self, _profile: Profile) -> Result<(), ConfigError> {
        if self.relay_batch_size < 1 {
            return Err(ConfigError::Refused(
                "RELAY_BATCH_SIZE must be at least 1".into(),
            ));
        }
        if self.relay_poll_interval_ms == 0 {
            return Err(ConfigError::Refused(
                "RELAY_POLL_INTERVAL_MS must be at least 1".into(),
            ));
        }
        if self.relay_lease_ms < 500 {
            return Err(ConfigError::Refused(
                "RELAY_LEASE_MS must be at least 500 (the lease is renewed every third of it)"
                    .into(),
            ));
        }
        if self.relay_commit_interval_ms == 0 {
            return Err(ConfigError::Refused(
                "RELAY_COMMIT_INTERVAL_MS must be at least 1".into(),
            ));
        }
        if self.relay_parked_retry_ms == 0 {
            return Err(ConfigError::Refused(
                "RELAY_PARKED_RETRY_MS must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

impl Settings {
    /// The engine's settings.
    pub fn relay(&self) -> RelayConfig {
        RelayConfig {
            batch_size: self.relay_batch_size,
            poll_interval: Duration::from_millis(self.relay_poll_interval_ms),
            retention: self.outbox_retention,
            lease: Duration::from_millis(self.relay_lease_ms),
            parked_retry: Duration::from_millis(self.relay_parked_retry_ms),
            commit_interval: Duration::from_millis(self.relay_commit_interval_ms),
            ..RelayConfig::default()
        }
    }

    /// The producer's settings over the connection `kafka`; librdkafka may buffer two
    /// pages.
    pub fn producer(&self, kafka: &platform::kafka::KafkaConfig) -> ProducerSettings {
        ProducerSettings {
            kafka: kafka.clone(),
            linger_ms: self.relay_linger_ms,
            compression: self.relay_compression.as_str().to_owned(),
            message_timeout_ms: self.relay_message_timeout_ms,
            queue_max_messages: (self.relay_batch_size as usize)
                .saturating_mul(2)
                .max(100_000),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use platform::config::pairs as env;

    #[test]
    fn debug_of_the_configuration_shows_no_secret() {
        platform::config::assert_debug_hides_secrets::<Settings>(&[], &[]);
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
            ("RELAY_LEASE_MS", "3000"),
            ("RELAY_PARKED_RETRY_MS", "10000"),
            ("RELAY_COMMIT_INTERVAL_MS", "20"),
            ("KAFKA_BROKERS", "kafka:9092"),
        ]))
        .unwrap();
        let relay = config.settings.relay();
        assert_eq!(relay.batch_size, 250);
        assert_eq!(relay.poll_interval, Duration::from_millis(100));
        assert_eq!(relay.retention, Some(Duration::from_secs(12 * 3600)));
        assert_eq!(relay.lease, Duration::from_secs(3));
        assert_eq!(relay.parked_retry, Duration::from_secs(10));
        assert_eq!(relay.commit_interval, Duration::from_millis(20));
        let producer = config.settings.producer(&config.kafka);
        assert_eq!(producer.kafka.kafka_brokers, "kafka:9092");
        assert_eq!(producer.compression, "zstd");
        assert_eq!((producer.linger_ms, producer.message_timeout_ms), (2, 5000));
    }

    #[test]
    fn defaults_keep_a_week_and_zero_keeps_forever() {
        let config = Config::from_env(env(&[])).unwrap();
        assert_eq!(
            config.settings.relay().retention,
            Some(Duration::from_secs(7 * 86_400))
        );
        assert_eq!(config.settings.relay().batch_size, 10_000);
        assert_eq!(config.settings.relay().lease, Duration::from_secs(5));
        assert_eq!(config.settings.producer(&config.kafka).compression, "lz4");
        let keep = Config::from_env(env(&[("OUTBOX_RETENTION", "0")])).unwrap();
        assert_eq!(keep.settings.relay().retention, None);
    }

    #[test]
    fn nonsense_is_refused() {
        for (key, value) in [
            ("OUTBOX_RETENTION", "a while"),
            ("RELAY_COMPRESSION", "brotli"),
            ("RELAY_BATCH_SIZE", "0"),
            ("RELAY_LEASE_MS", "100"),
            ("RELAY_COMMIT_INTERVAL_MS", "0"),
        ] {
            let error = Config::from_env(env(&[(key, value)])).unwrap_err();
            assert!(error.to_string().contains(key), "{error}");
        }
    }
}
