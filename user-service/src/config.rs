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
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            port: 8081,
            scrypt_log_n: 17,
            events_topic: "user-events".into(),
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
