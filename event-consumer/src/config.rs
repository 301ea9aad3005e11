//! The event consumer's configuration, loaded once in `main` and passed down.

use platform::config::{ConfigError, Profile, Profiles, ServiceConfig, ServiceSettings};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub port: u16,
    /// Consumer group (`CONSUMER_GROUP`).
    pub consumer_group: String,
    /// Topic consumed (`CONSUMER_TOPIC`).
    pub consumer_topic: String,
    /// Where poison records go (`CONSUMER_DLQ_TOPIC`).
    pub consumer_dlq_topic: String,
    /// Records applied per database transaction at most (`CONSUMER_BATCH_SIZE`).
    pub consumer_batch_size: usize,
    /// Kafka session timeout (`CONSUMER_SESSION_TIMEOUT_MS`): how soon a crashed member's
    /// partitions move to another one.
    pub consumer_session_timeout_ms: u64,
    /// First and last delay between retries of a batch that failed transiently.
    pub consumer_retry_min_ms: u64,
    pub consumer_retry_max_ms: u64,
    /// How often librdkafka reports statistics, which refresh `consumer_lag`.
    pub consumer_stats_interval_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            port: 8083,
            consumer_group: "user-event-consumer".into(),
            consumer_topic: "user-events".into(),
            consumer_dlq_topic: "user-events.dlq".into(),
            consumer_batch_size: 500,
            consumer_session_timeout_ms: 45_000,
            consumer_retry_min_ms: 100,
            consumer_retry_max_ms: 5_000,
            consumer_stats_interval_ms: 5_000,
        }
    }
}

/// The service's whole configuration (see [`ServiceConfig`]).
pub type Config = ServiceConfig<Settings>;

impl ServiceSettings for Settings {
    const PROFILES: Profiles = platform::profiles!();
    const SERVES_INTERNAL_API: bool = true;

    fn prepare(&mut self, _profile: Profile) -> Result<(), ConfigError> {
        if self.consumer_batch_size == 0 {
            return Err(ConfigError::Refused(
                "CONSUMER_BATCH_SIZE must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use platform::config::pairs as env;

    #[test]
    fn defaults_follow_the_contract_and_env_overrides_them() {
        let config = Config::from_env(env(&[])).unwrap();
        let s = &config.settings;
        assert_eq!(s.port, 8083);
        assert_eq!(s.consumer_group, "user-event-consumer");
        assert_eq!(s.consumer_topic, "user-events");
        assert_eq!(s.consumer_dlq_topic, "user-events.dlq");
        assert_eq!(s.consumer_batch_size, 500);

        let config = Config::from_env(env(&[
            ("CONSUMER_BATCH_SIZE", "50"),
            ("CONSUMER_TOPIC", "other"),
        ]))
        .unwrap();
        assert_eq!(config.settings.consumer_batch_size, 50);
        assert_eq!(config.settings.consumer_topic, "other");
    }

    #[test]
    fn production_refuses_the_dev_key_and_an_empty_batch() {
        assert!(Config::from_env(env(&[("ENV", "production")])).is_err());
        let key = ("INTERNAL_API_KEY", "a-long-random-production-key");
        let password = ("DB_PASSWORD", "a-real-database-password");
        assert!(Config::from_env(env(&[("ENV", "production"), key])).is_err());
        assert!(Config::from_env(env(&[("ENV", "production"), key, password])).is_ok());
        assert!(Config::from_env(env(&[("ENV", "docker"), password])).is_err());
        assert!(Config::from_env(env(&[("CONSUMER_BATCH_SIZE", "0")])).is_err());
    }
}
