//! The user service's configuration, loaded once in `main` and passed down.

use platform::config::{ConfigError, Profile, Profiles, ServiceConfig, ServiceSettings};
use platform::internal_key::ServerKeys;
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
    /// The one key every internal caller presents (shorthand for `INTERNAL_API_KEYS`).
    pub internal_api_key: Option<SecretString>,
    /// `caller:key` pairs: the key each internal caller presents.
    pub internal_api_keys: Option<SecretString>,
    /// scrypt cost as log2(N); OWASP's 17 by default, lower for tests and development.
    pub scrypt_log_n: u8,
    /// The topic `UserRegistered` events are written for.
    pub events_topic: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            port: 8081,
            internal_api_key: None,
            internal_api_keys: None,
            scrypt_log_n: 17,
            events_topic: "user-events".into(),
        }
    }
}

impl Settings {
    /// The keys this service accepts, by caller.
    pub fn server_keys(&self) -> Result<ServerKeys, ConfigError> {
        ServerKeys::parse(
            self.internal_api_keys.as_ref(),
            self.internal_api_key.as_ref(),
        )
    }
}

/// The service's whole configuration (see [`ServiceConfig`]).
pub type Config = ServiceConfig<Settings>;

impl ServiceSettings for Settings {
    const PROFILES: Profiles = PROFILES;

    fn check(&self, profile: Profile) -> Result<(), ConfigError> {
        self.server_keys()?.check(profile)?;
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
