//! The BFF's configuration, loaded once in `main` and passed down.

use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use platform::config::{
    comma_separated, ConfigError, Profile, Profiles, ServiceConfig, ServiceSettings,
};
use platform::internal_key;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

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
    #[serde(deserialize_with = "comma_separated")]
    pub token_public_keys: Vec<String>,
    pub token_issuer: String,
    pub token_audience: String,
    pub access_token_ttl_secs: u64,
    /// Absolute lifetime of a session: rotation never extends it.
    pub refresh_token_ttl_secs: u64,
    /// How long a session's "still valid" answer is cached for access tokens (max 5 s).
    pub revocation_cache_ms: u64,
    /// Comma-separated CIDRs (or addresses) whose `X-Forwarded-For` is believed.
    #[serde(deserialize_with = "cidrs")]
    pub trusted_proxies: Vec<IpNet>,
    /// Comma-separated origins allowed by CORS; none by default.
    #[serde(deserialize_with = "origins")]
    pub cors_origins: Vec<String>,
    pub rate_limit_register_per_min: u32,
    pub rate_limit_login_per_min: u32,
    pub rate_limit_refresh_per_min: u32,
    pub rate_limit_logout_per_min: u32,
    pub rate_limit_profile_per_min: u32,
    pub rate_limit_admin_per_min: u32,
    /// Most clients remembered per route; beyond it the least recently seen one is forgotten
    /// (its bucket comes back full).
    pub rate_limit_max_clients: usize,
    /// How often ended sessions and expired idempotency keys are purged.
    pub auth_purge_interval_ms: u64,
    /// Built once as the configuration loads (see [`Settings::token_keys`]).
    #[serde(skip)]
    pub(crate) token_keys: Option<Arc<TokenKeys>>,
    /// The keys presented upstream, resolved once as the configuration loads.
    #[serde(skip)]
    pub(crate) upstream_keys: Option<(SecretString, SecretString)>,
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
            token_public_keys: Vec::new(),
            token_issuer: "bff".into(),
            token_audience: "outbox-user-platform".into(),
            access_token_ttl_secs: 900,
            refresh_token_ttl_secs: 604_800,
            revocation_cache_ms: 2000,
            trusted_proxies: Vec::new(),
            cors_origins: Vec::new(),
            rate_limit_register_per_min: 3,
            rate_limit_login_per_min: 5,
            rate_limit_refresh_per_min: 10,
            rate_limit_logout_per_min: 5,
            rate_limit_profile_per_min: 100,
            rate_limit_admin_per_min: 100,
            rate_limit_max_clients: 100_000,
            auth_purge_interval_ms: 60_000,
            token_keys: None,
            upstream_keys: None,
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

    pub fn auth_purge_interval(&self) -> Duration {
        Duration::from_millis(self.auth_purge_interval_ms.max(1))
    }

    pub fn upstream_timeout(&self) -> Duration {
        Duration::from_millis(self.upstream_timeout_ms)
    }

    pub fn revocation_cache(&self) -> Duration {
        Duration::from_millis(self.revocation_cache_ms.min(5000))
    }

    /// The signing and verification keys (built when the configuration loaded).
    pub fn token_keys(&self) -> Arc<TokenKeys> {
        self.token_keys
            .clone()
            .expect("token keys are built when the configuration loads")
    }

    /// The keys presented to the user service and to the event consumer.
    pub fn upstream_keys(&self) -> (SecretString, SecretString) {
        self.upstream_keys
            .clone()
            .expect("upstream keys are resolved when the configuration loads")
    }

    fn build_token_keys(&self) -> Result<TokenKeys, ConfigError> {
        let secret = self.token_secret_key.as_ref().ok_or_else(|| {
            ConfigError::Refused(
                "TOKEN_SECRET_KEY is not set: make a pair with `bff keygen` and set \
                 TOKEN_SECRET_KEY and TOKEN_PUBLIC_KEYS (or TOKEN_SECRET_KEY_FILE)"
                    .into(),
            )
        })?;
        TokenKeys::new(
            secret.expose_secret(),
            &self.token_public_keys,
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

    fn prepare(&mut self, profile: Profile) -> Result<(), ConfigError> {
        let user_service = internal_key::client_key(
            profile,
            "USER_SERVICE_API_KEY",
            self.user_service_api_key.as_ref(),
            self.internal_api_key.as_ref(),
        )?;
        let event_consumer = internal_key::client_key(
            profile,
            "EVENT_CONSUMER_API_KEY",
            self.event_consumer_api_key.as_ref(),
            self.internal_api_key.as_ref(),
        )?;
        let keys = self.build_token_keys()?;
        if !profile.is_development() {
            let dev = crate::tokens::public_kid(DEV_TOKEN_PUBLIC_KEY)
                .map_err(|e| ConfigError::Refused(e.to_string()))?;
            let uses_dev = keys.signing_kid() == dev
                || self
                    .token_public_keys
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
        self.token_keys = Some(Arc::new(keys));
        self.upstream_keys = Some((user_service, event_consumer));
        Ok(())
    }
}

/// `TRUSTED_PROXIES`: CIDRs, or single addresses.
fn cidrs<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<IpNet>, D::Error> {
    comma_separated(deserializer)?
        .iter()
        .map(|cidr| {
            cidr.parse::<IpNet>()
                .or_else(|_| cidr.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    serde::de::Error::custom(format!("TRUSTED_PROXIES: {cidr:?} is not a CIDR"))
                })
        })
        .collect()
}

/// `CORS_ORIGINS`: each a real `scheme://host[:port]`; `null` (what sandboxed frames and
/// `file:` pages send, so anyone can produce it) and `*` are refused.
fn origins<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    let origins = comma_separated(deserializer)?;
    for origin in &origins {
        let refused =
            |why: &str| serde::de::Error::custom(format!("CORS_ORIGINS: {origin:?} {why}"));
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
    Ok(origins)
}

#[cfg(test)]
mod tests {
    use super::*;

    use platform::config::pairs as env;

    #[test]
    fn debug_of_the_configuration_shows_no_secret() {
        let (secret, public, _) = crate::tokens::generate_paserk().unwrap();
        let keys = [
            ("TOKEN_SECRET_KEY", &*secret),
            ("TOKEN_PUBLIC_KEYS", &*public),
        ];
        platform::config::assert_debug_hides_secrets::<Settings>(&keys, &[&secret]);
        let config = Config::from_env(env(&keys)).unwrap();
        let shown = platform::config::secrets_shown(&config.settings.token_keys(), &[&secret]);
        assert!(shown.is_empty(), "the token keys' Debug shows {shown:?}");
    }

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
        assert_eq!(
            config.settings.token_public_keys,
            vec![DEV_TOKEN_PUBLIC_KEY]
        );
        assert!(config.settings.token_keys.is_some());
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
        assert_eq!(config.settings.trusted_proxies.len(), 2);
        assert!(Config::from_env(env(&[("TRUSTED_PROXIES", "nonsense")])).is_err());
    }
}
