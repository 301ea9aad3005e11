//! The outbox relay's configuration, loaded once in `main` and passed down.

use std::path::Path;

use crate::platform::config::{ConfigError, Layered, Profile, Profiles};
use crate::platform::db::DbConfig;
use crate::platform::http::Common;
use serde::Deserialize;

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
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            port: 8082,
            kafka_brokers: "127.0.0.1:9092".into(),
        }
    }
}

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
        Ok(())
    }
}
