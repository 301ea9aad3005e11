//! The vocabulary every configuration part shares: the error, the profile, and
//! comma-separated lists. A leaf module, so that the parts (`kafka`, `internal_key`) and
//! the loader (`config`) do not import each other.

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("ENV must be development, docker or production, not {0:?}")]
    UnknownProfile(String),
    #[error(transparent)]
    Invalid(#[from] config::ConfigError),
    #[error("{0}")]
    Refused(String),
}

/// Which deployment this process runs as; production refuses development secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    #[default]
    Development,
    Docker,
    Production,
}

impl Profile {
    pub fn from_env_value(value: Option<&str>) -> Result<Self, ConfigError> {
        match value.map(str::trim) {
            None | Some("") | Some("development") | Some("dev") => Ok(Self::Development),
            Some("docker") => Ok(Self::Docker),
            Some("production") | Some("prod") => Ok(Self::Production),
            Some(other) => Err(ConfigError::UnknownProfile(other.to_owned())),
        }
    }

    pub fn is_production(self) -> bool {
        self == Self::Production
    }

    pub fn is_development(self) -> bool {
        self == Self::Development
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Docker => "docker",
            Self::Production => "production",
        }
    }
}

/// `deserialize_with` for a comma-separated setting (`a, b,,c` is `[a, b, c]`).
pub fn comma_separated<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    let text = String::deserialize(deserializer)?;
    Ok(comma_list(&text))
}

/// Splits a comma-separated setting (`CORS_ORIGINS`, `TOKEN_PUBLIC_KEYS`, ...).
pub fn comma_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}
