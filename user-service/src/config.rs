//! The user service's configuration, loaded once in `main` and passed down.

use outbox_relay::platform::config::{
    require_production_internal_key, ConfigError, Profile, Profiles, ServiceConfig, ServiceSettings,
};
use outbox_relay::platform::internal_key;
use secrecy::SecretString;
use serde::Deserialize;

const PROFILES: Profiles = Profiles {
    development: include_str!("../config/development.yaml"),
    docker: include_str!("../config/docker.yaml"),
    production: include_str!("../config/production.yaml"),
};

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub port: u16,
    /// The key the BFF presents (`Authorization: Bearer ...`).
    pub internal_api_key: SecretString,
    /// scrypt cost as log2(N); OWASP's 17 by default, lower for tests and development.
    pub scrypt_log_n: u8,
    /// The topic `UserRegistered` events are written for.
    pub events_topic: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            port: 8081,
            internal_api_key: SecretString::from(internal_key::DEV_INTERNAL_API_KEY),
            scrypt_log_n: 17,
            events_topic: "user-events".into(),
        }
    }
}

/// The service's whole configuration (see [`ServiceConfig`]).
pub type Config = ServiceConfig<Settings>;

impl ServiceSettings for Settings {
    const PROFILES: Profiles = PROFILES;

    fn check(&self, profile: Profile) -> Result<(), ConfigError> {
        require_production_internal_key(profile, &self.internal_api_key)?;
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
