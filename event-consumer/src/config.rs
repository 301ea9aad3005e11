//! The event consumer's configuration, loaded once in `main` and passed down.

use std::time::Duration;

use platform::config::{ConfigError, Profile, Profiles, ServiceConfig, ServiceSettings};
use secrecy::SecretString;
use serde::{Deserialize, Deserializer};

/// The shortest `INBOX_RETENTION` accepted: below a day it cannot cover any sensible
/// outbox, topic and DLQ retention.
pub const MIN_INBOX_RETENTION: Duration = Duration::from_secs(86_400);

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
    /// How long processed event ids are kept for deduplication (`INBOX_RETENTION`, `30d`;
    /// `0` keeps them forever). It must be at least `OUTBOX_RETENTION` + the topic's
    /// retention + the DLQ topic's retention, so that every replay or redrive still finds
    /// its ids.
    #[serde(deserialize_with = "retention")]
    pub inbox_retention: Option<Duration>,
    /// How often the purge runs (`INBOX_PURGE_INTERVAL_MS`).
    pub inbox_purge_interval_ms: u64,
    /// Where `reconcile` and the gap repair reach user-service.
    pub user_service_url: String,
    /// The key presented to user-service (else `INTERNAL_API_KEY`); without one,
    /// `reconcile` cannot run and overdue gaps are only reported.
    pub user_service_api_key: Option<SecretString>,
    /// The one-key shorthand.
    pub internal_api_key: Option<SecretString>,
    /// A parked event older than this is an overdue gap: reported, and repaired by
    /// asking user-service for the user's snapshot.
    pub consumer_gap_timeout_ms: u64,
    /// How often parked events are looked at.
    pub consumer_gap_check_ms: u64,
    /// A user changed within this long may have events still in flight: `reconcile`
    /// reports it as behind, not as differing.
    pub reconcile_grace_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            port: 8083,
            consumer_group: "user-event-consumer".into(),
            consumer_topic: "user-events".into(),
            consumer_dlq_topic: "user-events.dlq".into(),
            consumer_batch_size: 2000,
            consumer_session_timeout_ms: 45_000,
            consumer_retry_min_ms: 100,
            consumer_retry_max_ms: 5_000,
            consumer_stats_interval_ms: 5_000,
            inbox_retention: Some(Duration::from_secs(30 * 86_400)),
            inbox_purge_interval_ms: 60_000,
            user_service_url: "http://127.0.0.1:8081".into(),
            user_service_api_key: None,
            internal_api_key: None,
            consumer_gap_timeout_ms: 60_000,
            consumer_gap_check_ms: 5_000,
            reconcile_grace_ms: 30_000,
        }
    }
}

/// `INBOX_RETENTION`: `30d`, `6weeks`, ... or `0` (a YAML number) to keep forever.
fn retention<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    platform::retention::deserialize(deserializer, "INBOX_RETENTION")
}

/// The service's whole configuration (see [`ServiceConfig`]).
pub type Config = ServiceConfig<Settings>;

impl Settings {
    /// The key presented to user-service: `USER_SERVICE_API_KEY`, else the shorthand.
    pub fn user_service_key(&self) -> Option<&SecretString> {
        self.user_service_api_key
            .as_ref()
            .or(self.internal_api_key.as_ref())
    }
}

impl ServiceSettings for Settings {
    const PROFILES: Profiles = platform::profiles!();
    const SERVES_INTERNAL_API: bool = true;

    fn prepare(&mut self, _profile: Profile) -> Result<(), ConfigError> {
        if self.consumer_batch_size == 0 {
            return Err(ConfigError::Refused(
                "CONSUMER_BATCH_SIZE must be at least 1".into(),
            ));
        }
        if self
            .inbox_retention
            .is_some_and(|kept| kept < MIN_INBOX_RETENTION)
        {
            return Err(ConfigError::Refused(
                "INBOX_RETENTION must be at least 1d, and at least OUTBOX_RETENTION + the \
                 topic's retention + the DLQ's retention (or 0 to keep forever)"
                    .into(),
            ));
        }
        if self.consumer_gap_timeout_ms == 0 || self.consumer_gap_check_ms == 0 {
            return Err(ConfigError::Refused(
                "CONSUMER_GAP_TIMEOUT_MS and CONSUMER_GAP_CHECK_MS must be at least 1".into(),
            ));
        }
        if self.inbox_purge_interval_ms == 0 {
            return Err(ConfigError::Refused(
                "INBOX_PURGE_INTERVAL_MS must be at least 1".into(),
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
    fn debug_of_the_configuration_shows_no_secret() {
        platform::config::assert_debug_hides_secrets::<Settings>(&[], &[]);
    }

    #[test]
    fn defaults_follow_the_contract_and_env_overrides_them() {
        let config = Config::from_env(env(&[])).unwrap();
        let s = &config.settings;
        assert_eq!(s.port, 8083);
        assert_eq!(s.consumer_group, "user-event-consumer");
        assert_eq!(s.consumer_topic, "user-events");
        assert_eq!(s.consumer_dlq_topic, "user-events.dlq");
        assert_eq!(s.consumer_batch_size, 2000);

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

    #[test]
    fn inbox_retention_defaults_to_30_days_and_refuses_less_than_a_day() {
        let retention = |value: Option<&str>| {
            let pairs: Vec<_> = value.map(|v| ("INBOX_RETENTION", v)).into_iter().collect();
            Config::from_env(env(&pairs)).map(|c| c.settings.inbox_retention)
        };
        let days = |n: u64| Some(Duration::from_secs(n * 86_400));
        assert_eq!(retention(None).unwrap(), days(30));
        assert_eq!(retention(Some("6weeks")).unwrap(), days(42));
        assert_eq!(retention(Some("1d")).unwrap(), days(1));
        assert_eq!(retention(Some("0")).unwrap(), None);
        for refused in ["23h", "90m", "a month"] {
            let error = retention(Some(refused)).unwrap_err().to_string();
            assert!(error.contains("INBOX_RETENTION"), "{refused}: {error}");
        }
    }
}
