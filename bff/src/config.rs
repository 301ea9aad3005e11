//! The BFF's configuration, loaded once in `main` and passed down.

use std::time::Duration;

use ipnet::IpNet;
use platform::config::{
    comma_list, ConfigError, Profile, Profiles, ServiceConfig, ServiceSettings,
};
use platform::internal_key;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::tokens::TokenKeys;

/// The public half of the documented development key (config/development.yaml);
/// production refuses to sign or verify with it.
pub const DEV_TOKEN_PUBLIC_KEY: &str = "k4.public.vyw_7vDQgtqtKopTfpg8eQfVf_uECTd8Uge_N5JyyX0";

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub port: u16,
    /// The one internal key (shorthand for the two below).
    pub internal_api_key: Option<SecretString>,
    /// The key the BFF presents to the user service.
    pub user_service_api_key: Option<SecretString>,
    /// The key the BFF presents to the event consumer.
    pub event_consumer_api_key: Option<SecretString>,
    pub user_service_url: String,
    pub event_consumer_url: String,
    /// Per-request budget for an upstream call; past it the client gets a 503.
    pub upstream_timeout_ms: u64,
    /// `k4.secret.` PASERK that signs new tokens.
    pub token_secret_key: Option<SecretString>,
    /// Comma-separated `k4.public.` PASERKs accepted when verifying (rotation).
    pub token_public_keys: String,
    pub token_issuer: String,
    pub token_audience: String,
    pub access_token_ttl_secs: u64,
    /// Absolute lifetime of a session: rotation never extends it.
    pub refresh_token_ttl_secs: u64,
    /// How long a session's "still valid" answer is cached for access tokens (max 5 s).
    pub revocation_cache_ms: u64,
    /// Comma-separated CIDRs whose `X-Forwarded-For` is believed.
    pub trusted_proxies: String,
    /// Comma-separated origins allowed by CORS; none by default.
    pub cors_origins: String,
    pub rate_limit_register_per_min: u32,
    pub rate_limit_login_per_min: u32,
    pub rate_limit_refresh_per_min: u32,
    pub rate_limit_logout_per_min: u32,
    pub rate_limit_profile_per_min: u32,
    pub rate_limit_admin_per_min: u32,
    /// Most clients remembered per route; beyond it the least recently seen one is forgotten
    /// (its bucket comes back full).
    pub rate_limit_max_clients: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            port: 8080,
            internal_api_key: None,
            user_service_api_key: None,
            event_consumer_api_key: None,
            user_service_url: "http://127.0.0.1:8081".into(),
            event_consumer_url: "http://127.0.0.1:8083".into(),
            upstream_timeout_ms: 4000,
            token_secret_key: None,
            token_public_keys: String::new(),
            token_issuer: "bff".into(),
            token_audience: "outbox-user-platform".into(),
            access_token_ttl_secs: 900,
            refresh_token_ttl_secs: 604_800,
            revocation_cache_ms: 2000,
            trusted_proxies: String::new(),
            cors_origins: String::new(),
            rate_limit_register_per_min: 3,
            rate_limit_login_per_min: 5,
            rate_limit_refresh_per_min: 10,
            rate_limit_logout_per_min: 5,
            rate_limit_profile_per_min: 100,
            rate_limit_admin_per_min: 100,
            rate_limit_max_clients: 100_000,
        }
    }
}

impl Settings {
    pub fn access_ttl(&self) -> Duration {
        Duration::from_secs(self.access_token_ttl_secs)
    }

    pub fn refresh_ttl(&self) -> Duration {
        Duration::from_secs(self.refresh_token_ttl_secs)
    }

    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_timeout_ms)
    }

    pub fn revocation_cache(&self) -> Duration {
        Duration::from_millis(self.revocation_cache_ms.min(5000))
    }

    pub fn cors_origins(&self) -> Vec<String> {
        comma_list(&self.cors_origins)
    }

    pub fn public_keys(&self) -> Vec<String> {
        comma_list(&self.token_public_keys)
    }

    pub fn trusted_proxies(&self) -> Result<Vec<IpNet>, ConfigError> {
        comma_list(&self.trusted_proxies)
            .iter()
            .map(|cidr| {
                cidr.parse::<IpNet>()
                    .or_else(|_| cidr.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        ConfigError::Refused(format!("TRUSTED_PROXIES: {cidr:?} is not a CIDR"))
                    })
            })
            .collect()
    }

    /// The key presented to the user service.
    pub fn user_service_key(&self, profile: Profile) -> Result<SecretString, ConfigError> {
        internal_key::client_key(
            profile,
            "USER_SERVICE_API_KEY",
            self.user_service_api_key.as_ref(),
            self.internal_api_key.as_ref(),
        )
    }

    /// The key presented to the event consumer.
    pub fn event_consumer_key(&self, profile: Profile) -> Result<SecretString, ConfigError> {
        internal_key::client_key(
            profile,
            "EVENT_CONSUMER_API_KEY",
            self.event_consumer_api_key.as_ref(),
            self.internal_api_key.as_ref(),
        )
    }

    /// The signing and verification keys; refuses a missing key.
    pub fn token_keys(&self) -> Result<TokenKeys, ConfigError> {
        let secret = self.token_secret_key.as_ref().ok_or_else(|| {
            ConfigError::Refused(
                "TOKEN_SECRET_KEY is not set: make a pair with `bff keygen` and set \
                 TOKEN_SECRET_KEY and TOKEN_PUBLIC_KEYS (or TOKEN_SECRET_KEY_FILE)"
                    .into(),
            )
        })?;
        TokenKeys::new(
            secret.expose_secret(),
            &self.public_keys(),
            &self.token_issuer,
            &self.token_audience,
        )
        .map_err(|e| ConfigError::Refused(e.to_string()))
    }
}

/// The service's whole configuration (see [`ServiceConfig`]).
pub type Config = ServiceConfig<Settings>;

impl ServiceSettings for Settings {
    const PROFILES: Profiles = platform::profiles!();

    fn check(&self, profile: Profile) -> Result<(), ConfigError> {
        self.user_service_key(profile)?;
        self.event_consumer_key(profile)?;
        let keys = self.token_keys()?;
        if !profile.is_development() {
            let dev = crate::tokens::public_kid(DEV_TOKEN_PUBLIC_KEY)
                .map_err(|e| ConfigError::Refused(e.to_string()))?;
            let uses_dev = keys.signing_kid() == dev
                || self
                    .public_keys()
                    .iter()
                    .any(|k| k.trim() == DEV_TOKEN_PUBLIC_KEY);
            if uses_dev {
                return Err(ConfigError::Refused(format!(
                    "ENV={} refuses the development token key (TOKEN_SECRET_KEY / \
                     TOKEN_PUBLIC_KEYS are public in this repository): make your own pair \
                     with `bff keygen`",
                    profile.name()
                )));
            }
        }
        self.trusted_proxies()?;
        self.check_cors_origins()?;
        Ok(())
    }
}

impl Settings {
    /// Each CORS origin is a real `scheme://host[:port]`; `null` (what sandboxed frames and
    /// `file:` pages send, so anyone can produce it) and `*` are refused.
    fn check_cors_origins(&self) -> Result<(), ConfigError> {
        for origin in self.cors_origins() {
            let refused =
                |why: &str| ConfigError::Refused(format!("CORS_ORIGINS: {origin:?} {why}"));
            if origin.eq_ignore_ascii_case("null") || origin == "*" {
                return Err(refused(
                    "would let any page call the API; list your origins, e.g. https://app.example.com",
                ));
            }
            let Some((scheme, rest)) = origin.split_once("://") else {
                return Err(refused("is not an origin (scheme://host[:port])"));
            };
            if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.contains('/') {
                return Err(refused("is not an origin (scheme://host[:port])"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use platform::config::pairs as env;

    #[test]
    fn cors_origins_null_wildcard_and_non_origins_are_refused() {
        for bad in [
            "null",
            "NULL",
            "*",
            "app.example.com",
            "https://app.example.com/path",
            "ftp://x",
        ] {
            let error = Config::from_env(env(&[("CORS_ORIGINS", bad)])).unwrap_err();
            assert!(error.to_string().contains("CORS_ORIGINS"), "{bad}: {error}");
        }
        let ok = Config::from_env(env(&[(
            "CORS_ORIGINS",
            "https://app.example.com, http://localhost:3000",
        )]));
        assert!(ok.is_ok(), "{ok:?}");
    }

    #[test]
    fn development_uses_the_documented_dev_key() {
        let config = Config::from_env(env(&[])).unwrap();
        assert_eq!(config.settings.public_keys(), vec![DEV_TOKEN_PUBLIC_KEY]);
        assert!(config.settings.token_keys().is_ok());
    }

    #[test]
    fn production_refuses_missing_or_dev_keys() {
        let base = [
            ("ENV", "production"),
            ("INTERNAL_API_KEY", "a-long-random-production-key"),
            ("DB_PASSWORD", "a-real-database-password"),
        ];
        assert!(Config::from_env(env(&base)).is_err());

        let dev = Config::from_env(env(&[])).unwrap();
        let dev_secret = dev.settings.token_secret_key.unwrap();
        let mut with_dev = base.to_vec();
        with_dev.push(("TOKEN_SECRET_KEY", dev_secret.expose_secret()));
        assert!(Config::from_env(env(&with_dev)).is_err());

        let (secret, public, _) = crate::tokens::generate_paserk().unwrap();
        let mut good = base.to_vec();
        good.push(("TOKEN_SECRET_KEY", &secret));
        good.push(("TOKEN_PUBLIC_KEYS", &public));
        assert!(Config::from_env(env(&good)).is_ok());
    }

    #[test]
    fn the_docker_profile_carries_no_key_and_refuses_the_development_pair() {
        let base = [
            ("ENV", "docker"),
            ("INTERNAL_API_KEY", "a-long-random-docker-key-0123"),
            ("DB_PASSWORD", "a-real-database-password"),
        ];
        let missing = Config::from_env(env(&base)).unwrap_err().to_string();
        assert!(missing.contains("TOKEN_SECRET_KEY"), "{missing}");
        assert!(missing.contains("bff keygen"), "{missing}");

        let dev = Config::from_env(env(&[])).unwrap();
        let dev_secret = dev.settings.token_secret_key.unwrap();
        let mut with_dev = base.to_vec();
        with_dev.push(("TOKEN_SECRET_KEY", dev_secret.expose_secret()));
        let refused = Config::from_env(env(&with_dev)).unwrap_err().to_string();
        assert!(refused.contains("development token key"), "{refused}");

        let docker_yaml = include_str!("../config/docker.yaml");
        assert!(!docker_yaml.contains("k4.secret"));
    }

    #[test]
    fn trusted_proxies_take_cidrs_and_addresses() {
        let config =
            Config::from_env(env(&[("TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")])).unwrap();
        assert_eq!(config.settings.trusted_proxies().unwrap().len(), 2);
        assert!(Config::from_env(env(&[("TRUSTED_PROXIES", "nonsense")])).is_err());
    }
}
