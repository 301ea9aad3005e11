//! The user service's configuration, loaded once in `main` and passed down.

use platform::config::{ConfigError, Profile, Profiles, ServiceConfig, ServiceSettings};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub port: u16,
    /// scrypt cost as log2(N); OWASP's 17 by default, lower for tests and development.
    pub scrypt_log_n: u8,
    /// The topic `UserRegistered` events are written for.
    pub events_topic: String,
    /// Password hashes running or waiting at most (`HASH_QUEUE`); beyond it a request is
    /// answered 503 with `Retry-After`. 0: four per core.
    pub hash_queue: usize,
    /// Failed credential checks of one email that cost nothing (`LOGIN_FREE_FAILURES`).
    pub login_free_failures: u32,
    /// The window those failures are counted in, seconds (`LOGIN_WINDOW_SECS`).
    pub login_window_secs: u64,
    /// The longest wait a throttled email is made to keep, seconds (`LOGIN_MAX_DELAY_SECS`).
    pub login_max_delay_secs: u64,
}

impl Settings {
    pub fn login_policy(&self) -> crate::throttle::Policy {
        crate::throttle::Policy {
            free_failures: self.login_free_failures,
            window: std::time::Duration::from_secs(self.login_window_secs),
            max_delay: std::time::Duration::from_secs(self.login_max_delay_secs),
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            port: 8081,
            scrypt_log_n: 17,
            events_topic: "user-events".into(),
            hash_queue: 0,
            login_free_failures: 5,
            login_window_secs: 15 * 60,
            login_max_delay_secs: 15 * 60,
        }
    }
}

/// The service's whole configuration (see [`ServiceConfig`]).
pub type Config = ServiceConfig<Settings>;

impl ServiceSettings for Settings {
    const PROFILES: Profiles = platform::profiles!();
    const SERVES_INTERNAL_API: bool = true;

    fn prepare(&mut self, profile: Profile) -> Result<(), ConfigError> {
        if !(10..=20).contains(&self.scrypt_log_n) {
            return Err(ConfigError::Refused(
                "SCRYPT_LOG_N must be between 10 and 20".into(),
            ));
        }
        if profile.is_production() && self.scrypt_log_n < 17 {
            return Err(ConfigError::Refused(
                "ENV=production needs SCRYPT_LOG_N >= 17 (OWASP)".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_of_the_configuration_shows_no_secret() {
        platform::config::assert_debug_hides_secrets::<Settings>(&[], &[]);
    }
}
