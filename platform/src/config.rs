//! Configuration: compiled-in defaults, then the YAML profile chosen by `ENV`
//! (development | docker | production), then an optional `--config FILE`, then environment
//! variables, which win. Keys are the environment names in lower case (`DB_HOST` ->
//! `db_host`), so one name works in YAML and in the environment.

use std::path::Path;

use serde::de::DeserializeOwned;

use super::db::DbConfig;
use super::http::Common;
use super::internal_key::ServerKeys;
use super::kafka::KafkaConfig;

pub use super::setting::{comma_list, comma_separated, ConfigError, Profile};

/// The [`Profiles`] of the calling crate: its `config/{development,docker,production}.yaml`,
/// compiled in.
#[macro_export]
macro_rules! profiles {
    () => {
        $crate::config::Profiles {
            development: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/config/development.yaml"
            )),
            docker: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/config/docker.yaml")),
            production: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/config/production.yaml"
            )),
        }
    };
}

/// The YAML text of each profile, compiled into the service binary.
#[derive(Debug, Clone, Copy)]
pub struct Profiles {
    pub development: &'static str,
    pub docker: &'static str,
    pub production: &'static str,
}

/// The merged configuration sources; each part of a service's configuration is read
/// from it with [`Layered::get`].
#[derive(Debug, Clone)]
pub struct Layered {
    profile: Profile,
    merged: config::Config,
}

impl Layered {
    /// Loads the layers from the process environment.
    pub fn load(profiles: &Profiles, file: Option<&Path>) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::from_sources(profiles, file, env)
    }

    /// Loads the layers from the given environment (tests pass their own).
    pub fn from_sources(
        profiles: &Profiles,
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut env: std::collections::HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| {
                k.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            })
            .collect();
        read_secret_files(&mut env)?;
        let profile = Profile::from_env_value(env.get("ENV").map(String::as_str))?;
        let profile_yaml = match profile {
            Profile::Development => profiles.development,
            Profile::Docker => profiles.docker,
            Profile::Production => profiles.production,
        };
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            profile_yaml,
            config::FileFormat::Yaml,
        ));
        if let Some(path) = file {
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Yaml));
        }
        let env_source = config::Environment::default().source(Some(env));
        let merged = builder.add_source(env_source).build()?;
        Ok(Self { profile, merged })
    }

    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// Reads one part of the configuration; missing keys take the type's `Default`.
    pub fn get<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        Ok(self.merged.clone().try_deserialize()?)
    }
}

/// A service's own part of the configuration: its keys and defaults (`Deserialize` with
/// `#[serde(default)]`), its compiled-in profiles, and what it refuses to run with.
pub trait ServiceSettings: DeserializeOwned {
    /// Usually `platform::profiles!()`: `config/{development,docker,production}.yaml`.
    const PROFILES: Profiles;
    /// Whether the service serves an internal API, so that its
    /// [`ServiceConfig::internal_keys`] must hold acceptable keys.
    const SERVES_INTERNAL_API: bool = false;

    /// Called once as the configuration loads: refuses values the service must not run
    /// with under `profile`, and builds the values that take several settings (the BFF's
    /// token keys), so nothing is parsed again where it is used. Single settings are
    /// parsed as they deserialize.
    fn prepare(&mut self, profile: Profile) -> Result<(), ConfigError>;
}

/// Everything one service process is configured with, loaded once in `main`.
#[derive(Debug, Clone)]
pub struct ServiceConfig<S> {
    pub profile: Profile,
    pub common: Common,
    pub settings: S,
    pub db: DbConfig,
    /// How the Kafka clients connect (used by the relay and the consumer).
    pub kafka: KafkaConfig,
    /// The internal keys the service accepts, by caller (`INTERNAL_API_KEYS`,
    /// `INTERNAL_API_KEY`); checked when the service serves an internal API.
    pub internal_keys: ServerKeys,
}

impl<S: ServiceSettings> ServiceConfig<S> {
    /// From the process environment and an optional `--config FILE`.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::from_layers(Layered::load(&S::PROFILES, file)?)
    }

    /// From an explicit environment (tests).
    pub fn from_env(env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        Self::from_layers(Layered::from_sources(&S::PROFILES, None, env)?)
    }

    fn from_layers(layers: Layered) -> Result<Self, ConfigError> {
        let mut config = Self {
            profile: layers.profile(),
            common: layers.get()?,
            settings: layers.get()?,
            db: layers.get()?,
            kafka: layers.get()?,
            internal_keys: layers.get()?,
        };
        if S::SERVES_INTERNAL_API {
            config.internal_keys.check(config.profile)?;
        }
        if !config.profile.is_development() && config.db.has_default_password() {
            return Err(ConfigError::Refused(format!(
                "ENV={} refuses DB_PASSWORD: it is empty or the default `{}`; set DB_PASSWORD \
                 (or DB_PASSWORD_FILE) to the role's real password",
                config.profile.name(),
                super::db::DEV_DB_PASSWORD
            )));
        }
        config.settings.prepare(config.profile)?;
        Ok(config)
    }

    /// Logs, once at start, that a development profile with its public secrets is in use.
    pub fn warn_if_development(&self) {
        if self.profile.is_development() {
            tracing::warn!(
                "ENV=development: development secrets (public keys and passwords from this \
                 repository) may be in use; set ENV=production or ENV=docker with your own secrets \
                 for anything but a local machine"
            );
        }
    }
}

/// The settings that are secrets, and so may also be given as a file (`NAME_FILE`).
pub const SECRETS: [&str; 11] = [
    "DB_PASSWORD",
    "DATABASE_URL",
    "TOKEN_SECRET_KEY",
    "TOKEN_PUBLIC_KEYS",
    "INTERNAL_API_KEY",
    "INTERNAL_API_KEYS",
    "USER_SERVICE_API_KEY",
    "EVENT_CONSUMER_API_KEY",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SSL_KEY_PASSWORD",
    "KAFKA_PROPERTIES",
];

/// The Docker secrets convention: `NAME_FILE` names a file holding the value of the secret
/// `NAME` (its trailing newline dropped). `NAME` itself, when also set, wins.
fn read_secret_files(
    env: &mut std::collections::HashMap<String, String>,
) -> Result<(), ConfigError> {
    let files: Vec<(String, String)> = SECRETS
        .iter()
        .filter(|name| !env.contains_key(**name))
        .filter_map(|name| {
            let path = env.get(&format!("{name}_FILE"))?;
            Some(((*name).to_owned(), path.clone()))
        })
        .collect();
    for (name, path) in files {
        let value = std::fs::read_to_string(&path).map_err(|error| {
            ConfigError::Refused(format!("{name}_FILE: cannot read {path:?}: {error}"))
        })?;
        env.insert(name, value.trim_end_matches(['\r', '\n']).to_owned());
    }
    Ok(())
}

/// An environment as owned pairs, for [`ServiceConfig::from_env`] in tests.
pub fn pairs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Every secret setting a service may take, each with a value a leak is easy to spot by,
/// for the test each configuration type has that its `Debug` shows none of them (see
/// [`secrets_shown`]).
pub const SECRET_SETTINGS: &[(&str, &str)] = &[
    ("DB_PASSWORD", "leak-db-password-0001"),
    ("INTERNAL_API_KEY", "leak-internal-api-key-0002"),
    (
        "INTERNAL_API_KEYS",
        "bff:leak-bff-caller-key-0003,event-consumer:leak-consumer-caller-key-0004,ops:leak-ops-caller-key-0005",
    ),
    ("USER_SERVICE_API_KEY", "leak-user-service-key-0006"),
    ("EVENT_CONSUMER_API_KEY", "leak-event-consumer-key-0007"),
    ("KAFKA_SASL_PASSWORD", "leak-sasl-password-0008"),
    ("KAFKA_SSL_KEY_PASSWORD", "leak-ssl-key-password-0009"),
    (
        "KAFKA_PROPERTIES",
        "sasl.oauthbearer.client.secret=leak-oauth-secret-0010",
    ),
];

/// Loads `ServiceConfig<S>` from every [`SECRET_SETTINGS`] entry plus `env`, and panics
/// naming what leaks if its `Debug` shows one of their values or of `secrets`: the test
/// each service has on its configuration type.
pub fn assert_debug_hides_secrets<S: ServiceSettings + std::fmt::Debug>(
    env: &[(&str, &str)],
    secrets: &[&str],
) {
    let mut all = SECRET_SETTINGS.to_vec();
    all.extend_from_slice(env);
    let config = ServiceConfig::<S>::from_env(pairs(&all)).expect("the configuration loads");
    let shown = secrets_shown(&config, secrets);
    assert!(shown.is_empty(), "Debug shows {shown:?}");
}

/// The secret values of [`SECRET_SETTINGS`] and `extra` that `value`'s `Debug` output
/// (plain or pretty) contains: empty when nothing leaks.
pub fn secrets_shown(value: &impl std::fmt::Debug, extra: &[&str]) -> Vec<String> {
    let shown = format!("{value:?}\n{value:#?}");
    let values = SECRET_SETTINGS.iter().flat_map(|(_, v)| {
        v.split([',', '='])
            .map(|part| part.rsplit(':').next().unwrap_or(part))
    });
    values
        .chain(extra.iter().copied())
        .filter(|secret| secret.contains("leak-") || extra.contains(secret))
        .filter(|secret| shown.contains(secret))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(default)]
    struct Sample {
        port: u16,
        db_password: String,
        log_level: String,
    }

    impl Default for Sample {
        fn default() -> Self {
            Self {
                port: 1,
                db_password: "compiled".into(),
                log_level: "info".into(),
            }
        }
    }

    const PROFILES: Profiles = Profiles {
        development: "port: 2\n",
        docker: "port: 3\nlog_level: warn\n",
        production: "{}",
    };

    use super::pairs as env;

    #[test]
    fn secrets_shown_finds_each_leaked_value_and_only_those() {
        #[derive(Debug)]
        #[allow(dead_code)]
        struct Leaky(&'static str, String);
        let leaky = Leaky(
            "leak-consumer-caller-key-0004",
            "token k4.secret.abc".into(),
        );
        let shown = secrets_shown(&leaky, &["k4.secret.abc", "never-there"]);
        assert_eq!(shown, ["leak-consumer-caller-key-0004", "k4.secret.abc"]);
        assert!(secrets_shown(&"nothing to see", &[]).is_empty());
    }

    #[test]
    fn layers_apply_in_order_and_env_wins() {
        let dev: Sample = Layered::from_sources(&PROFILES, None, env(&[]))
            .unwrap()
            .get()
            .unwrap();
        assert_eq!((dev.port, dev.log_level.as_str()), (2, "info"));

        let docker = Layered::from_sources(&PROFILES, None, env(&[("ENV", "docker")])).unwrap();
        let docker: Sample = docker.get().unwrap();
        assert_eq!((docker.port, docker.log_level.as_str()), (3, "warn"));

        let over =
            Layered::from_sources(&PROFILES, None, env(&[("ENV", "docker"), ("PORT", "9000")]));
        assert_eq!(over.unwrap().get::<Sample>().unwrap().port, 9000);
    }

    #[test]
    fn numeric_looking_secrets_stay_strings() {
        let layered =
            Layered::from_sources(&PROFILES, None, env(&[("DB_PASSWORD", "8080")])).unwrap();
        assert_eq!(layered.get::<Sample>().unwrap().db_password, "8080");
    }

    #[test]
    fn unknown_profile_is_refused() {
        let err = Layered::from_sources(&PROFILES, None, env(&[("ENV", "staging")])).unwrap_err();
        assert!(err.to_string().contains("staging"));
    }

    #[test]
    fn secrets_may_come_from_files_and_the_variable_wins() {
        let dir = std::env::temp_dir().join(format!("secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("db_password");
        std::fs::write(&file, "from-the-file\n").unwrap();
        let path = file.to_string_lossy().into_owned();
        let layered =
            Layered::from_sources(&PROFILES, None, env(&[("DB_PASSWORD_FILE", &path)])).unwrap();
        assert_eq!(
            layered.get::<Sample>().unwrap().db_password,
            "from-the-file"
        );
        let both = Layered::from_sources(
            &PROFILES,
            None,
            env(&[("DB_PASSWORD_FILE", &path), ("DB_PASSWORD", "explicit")]),
        )
        .unwrap();
        assert_eq!(both.get::<Sample>().unwrap().db_password, "explicit");
        let missing = Layered::from_sources(
            &PROFILES,
            None,
            env(&[("DB_PASSWORD_FILE", "/nonexistent/secret")]),
        )
        .unwrap_err();
        assert!(
            missing.to_string().contains("DB_PASSWORD_FILE"),
            "{missing}"
        );
    }

    #[test]
    fn comma_lists_ignore_blanks() {
        assert_eq!(comma_list(" a, ,b ,"), vec!["a", "b"]);
    }
}
