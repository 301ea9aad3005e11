//! The PostgreSQL connection every process shares: its settings (`DB_*`, or a
//! `DATABASE_URL`), TLS with libpq's `sslmode` meanings (rustls), the pool, single
//! connections, and start-up errors that say which setting is wrong.
//!
//! A crate of its own so that the `migrate` tool, which the platform's test kit builds
//! on, connects exactly as the services do. Services use it as `platform::db`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres_rustls::MakeRustlsConnect;

mod explain;
mod tls;
mod url;

pub use explain::StartError;
pub use tls::{SslMode, TlsSettings};

/// A connection's background half, as [`DbConfig::connect_raw`] returns it (LISTEN reads
/// notifications from it).
pub type Connection = tokio_postgres::Connection<
    tokio_postgres::Socket,
    <MakeRustlsConnect as MakeTlsConnect<tokio_postgres::Socket>>::Stream,
>;

/// The password every fresh PostgreSQL install and the development profile use.
pub const DEV_DB_PASSWORD: &str = "postgres";

#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "Raw")]
pub struct DbConfig {
    pub db_host: String,
    /// libpq's `hostaddr`: connect to this address, check the certificate against `db_host`.
    pub db_hostaddr: Option<IpAddr>,
    pub db_port: u16,
    pub db_name: String,
    pub db_user: String,
    pub db_password: SecretString,
    /// Connections in the pool.
    pub db_pool_size: usize,
    /// How long a request may wait for a connection (or to connect) before it is refused.
    pub db_timeout_ms: u64,
    pub tls: TlsSettings,
    /// Built from `tls` once (files read at load time, so a bad path fails at start).
    pub connector: Connector,
}

/// The rustls connector built from [`TlsSettings`].
#[derive(Clone)]
pub struct Connector(MakeRustlsConnect);

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MakeRustlsConnect")
    }
}

impl Default for DbConfig {
    fn default() -> Self {
        Self::try_from(Raw::default()).expect("the defaults are valid")
    }
}

/// The settings as written, before the checks and defaults that depend on each other.
#[derive(Deserialize)]
#[serde(default)]
struct Raw {
    /// `ENV`: outside development TLS defaults to verify-full.
    env: Option<String>,
    database_url: Option<SecretString>,
    db_host: String,
    db_hostaddr: Option<String>,
    db_port: u16,
    db_name: String,
    db_user: String,
    db_password: SecretString,
    db_pool_size: usize,
    db_timeout_ms: u64,
    db_sslmode: Option<String>,
    db_sslrootcert: Option<String>,
    db_sslcert: Option<String>,
    db_sslkey: Option<String>,
    /// The explicit opt-in that `DB_SSLMODE=disable` needs outside development.
    db_allow_plaintext: bool,
}

impl Default for Raw {
    fn default() -> Self {
        Self {
            env: None,
            database_url: None,
            db_host: "127.0.0.1".into(),
            db_hostaddr: None,
            db_port: 5432,
            db_name: "event_driven_db".into(),
            db_user: "postgres".into(),
            db_password: SecretString::from(DEV_DB_PASSWORD),
            db_pool_size: 16,
            db_timeout_ms: 3000,
            db_sslmode: None,
            db_sslrootcert: None,
            db_sslcert: None,
            db_sslkey: None,
            db_allow_plaintext: false,
        }
    }
}

fn is_development(env: Option<&str>) -> bool {
    matches!(
        env.map(str::trim),
        None | Some("") | Some("development") | Some("dev")
    )
}

impl TryFrom<Raw> for DbConfig {
    type Error = String;

    fn try_from(mut raw: Raw) -> Result<Self, String> {
        if let Some(database_url) = raw.database_url.take() {
            url::apply(database_url.expose_secret(), &mut raw)?;
        }
        let development = is_development(raw.env.as_deref());
        let mode = match raw.db_sslmode.as_deref().filter(|s| !s.trim().is_empty()) {
            Some(value) => SslMode::parse(value)?,
            None if development => SslMode::Prefer,
            None => SslMode::VerifyFull,
        };
        if mode == SslMode::Disable && !development && !raw.db_allow_plaintext {
            return Err(format!(
                "DB_SSLMODE=disable sends the database password and data in clear text; with \
                 ENV={} it needs DB_ALLOW_PLAINTEXT=true as well (only on a private network), \
                 else use verify-full with DB_SSLROOTCERT",
                raw.env.as_deref().unwrap_or_default()
            ));
        }
        let client_cert = match (raw.db_sslcert, raw.db_sslkey) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
            _ => return Err("DB_SSLCERT and DB_SSLKEY go together: set both or neither".into()),
        };
        let tls = TlsSettings {
            mode,
            root_cert: raw
                .db_sslrootcert
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            client_cert,
        };
        let connector = Connector(MakeRustlsConnect::new(tls.client_config()?));
        let db_hostaddr = raw
            .db_hostaddr
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpAddr>()
                    .map_err(|_| format!("DB_HOSTADDR must be an IP address, not {s:?}"))
            })
            .transpose()?;
        Ok(Self {
            db_host: raw.db_host,
            db_hostaddr,
            db_port: raw.db_port,
            db_name: raw.db_name,
            db_user: raw.db_user,
            db_password: raw.db_password,
            db_pool_size: raw.db_pool_size,
            db_timeout_ms: raw.db_timeout_ms,
            tls,
            connector,
        })
    }
}

impl DbConfig {
    /// From the process environment alone (`DB_*`, `DATABASE_URL`, `ENV`), for tools that
    /// have no profile files (`migrate`).
    pub fn from_env_vars(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, String> {
        let mut raw = Raw::default();
        for (key, value) in vars {
            match key.as_str() {
                "ENV" => raw.env = Some(value),
                "DATABASE_URL" => raw.database_url = Some(value.into()),
                "DB_HOST" => raw.db_host = value,
                "DB_HOSTADDR" => raw.db_hostaddr = Some(value),
                "DB_PORT" => {
                    raw.db_port = value
                        .parse()
                        .map_err(|_| format!("DB_PORT must be a port number, not {value:?}"))?
                }
                "DB_NAME" => raw.db_name = value,
                "DB_USER" => raw.db_user = value,
                "DB_PASSWORD" => raw.db_password = value.into(),
                "DB_SSLMODE" => raw.db_sslmode = Some(value),
                "DB_SSLROOTCERT" => raw.db_sslrootcert = Some(value),
                "DB_SSLCERT" => raw.db_sslcert = Some(value),
                "DB_SSLKEY" => raw.db_sslkey = Some(value),
                "DB_ALLOW_PLAINTEXT" => {
                    raw.db_allow_plaintext = matches!(value.trim(), "true" | "1" | "yes" | "on")
                }
                _ => {}
            }
        }
        Self::try_from(raw)
    }

    /// Whether the password is empty or the development default.
    pub fn has_default_password(&self) -> bool {
        let password = self.db_password.expose_secret();
        password.is_empty() || password == DEV_DB_PASSWORD
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.db_timeout_ms)
    }

    /// The same settings pointing at another database (tests use one each).
    pub fn with_database(&self, name: &str) -> Self {
        Self {
            db_name: name.to_owned(),
            ..self.clone()
        }
    }

    /// These settings as the environment variables a child process reads.
    pub fn to_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("DB_HOST", self.db_host.clone()),
            ("DB_PORT", self.db_port.to_string()),
            ("DB_NAME", self.db_name.clone()),
            ("DB_USER", self.db_user.clone()),
            ("DB_PASSWORD", self.db_password.expose_secret().to_owned()),
            ("DB_SSLMODE", self.tls.mode.name().to_owned()),
        ];
        if let Some(addr) = self.db_hostaddr {
            env.push(("DB_HOSTADDR", addr.to_string()));
        }
        if let Some(root) = &self.tls.root_cert {
            env.push(("DB_SSLROOTCERT", root.display().to_string()));
        }
        if let Some((cert, key)) = &self.tls.client_cert {
            env.push(("DB_SSLCERT", cert.display().to_string()));
            env.push(("DB_SSLKEY", key.display().to_string()));
        }
        env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    pub fn pg_config(&self) -> tokio_postgres::Config {
        let mut pg = tokio_postgres::Config::new();
        pg.host(&self.db_host)
            .port(self.db_port)
            .dbname(&self.db_name)
            .user(&self.db_user)
            .password(self.db_password.expose_secret())
            .ssl_mode(self.tls.mode.wire())
            .connect_timeout(self.timeout())
            .keepalives_idle(Duration::from_secs(30));
        if let Some(addr) = self.db_hostaddr {
            pg.hostaddr(addr);
        }
        pg
    }

    /// The TLS connector for these settings (also used, without TLS, for `disable`).
    pub fn connector(&self) -> MakeRustlsConnect {
        self.connector.0.clone()
    }

    /// A pool that waits at most `db_timeout_ms` for a connection, so a database that is
    /// away turns into a prompt error instead of a hung request. The pool connects lazily:
    /// building it succeeds with the database down, and it recovers by itself.
    pub fn pool(&self) -> Pool {
        self.pool_builder()
            .build()
            .expect("a pool with a runtime and timeouts always builds")
    }

    /// [`DbConfig::pool`] whose every new connection first runs `session` (`SET`
    /// statements for that pool's sessions only).
    pub fn pool_with_session(&self, session: &'static str) -> Pool {
        self.pool_builder()
            .post_create(Hook::async_fn(move |client, _| {
                Box::pin(async move {
                    client
                        .batch_execute(session)
                        .await
                        .map_err(HookError::Backend)
                })
            }))
            .build()
            .expect("a pool with a runtime and timeouts always builds")
    }

    fn pool_builder(&self) -> deadpool_postgres::PoolBuilder {
        let manager = Manager::from_config(
            self.pg_config(),
            self.connector(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let timeout = Some(self.timeout());
        Pool::builder(manager)
            .max_size(self.db_pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(timeout)
            .create_timeout(timeout)
            .recycle_timeout(timeout)
    }

    /// One connection and its background half, which the caller drives.
    pub async fn connect_raw(
        &self,
    ) -> Result<(tokio_postgres::Client, Connection), tokio_postgres::Error> {
        self.pg_config().connect(self.connector()).await
    }

    /// One connection outside any pool (LISTEN, the relay's lease, migrations).
    pub async fn connect(&self) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let (client, connection) = self.connect_raw().await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "database connection closed");
            }
        });
        Ok(client)
    }

    /// Called once at start: a connection refused for TLS or credentials is a setting to
    /// fix, so it is an error naming that setting; a database that is merely away is not
    /// (the service starts unready and connects when it comes).
    ///
    /// With `refuse_superuser` (every profile but development), a `DB_USER` that is a
    /// superuser is refused too: a service logs in as its own role.
    pub async fn check_at_start(&self, refuse_superuser: bool) -> Result<(), StartError> {
        match self.connect().await {
            Ok(client) if refuse_superuser => {
                let superuser: Option<bool> = client
                    .query_opt(
                        "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
                        &[],
                    )
                    .await
                    .ok()
                    .flatten()
                    .map(|row| row.get(0));
                if superuser == Some(true) {
                    return Err(StartError::refused(format!(
                        "DB_USER={} is a superuser: outside development each service logs in \
                         as its own role (user_service, outbox_relay, event_consumer, bff; see \
                         `migrate passwords`)",
                        self.db_user
                    )));
                }
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(error) => match StartError::classify(self, &error) {
                Some(fatal) => Err(fatal),
                None => {
                    tracing::warn!(
                        host = %self.db_host,
                        port = self.db_port,
                        %error,
                        "the database does not answer yet; starting anyway (not ready until it does)"
                    );
                    Ok(())
                }
            },
        }
    }

    /// [`DbConfig::connect`] with a refused connection explained by setting name.
    pub async fn connect_explained(&self) -> Result<tokio_postgres::Client, StartError> {
        self.connect()
            .await
            .map_err(|error| StartError::explain(self, &error))
    }
}

/// True when the database answers a trivial query within the pool's timeout.
pub async fn ping(pool: &Pool) -> bool {
    match pool.get().await {
        Ok(client) => client.simple_query("SELECT 1").await.is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Result<DbConfig, String> {
        DbConfig::from_env_vars(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
    }

    #[test]
    fn debug_shows_neither_the_password_nor_the_url() {
        let url = "postgresql://app:leak-url-password-0011@db.example:5432/app";
        for config in [
            env(&[("DATABASE_URL", url)]).unwrap(),
            env(&[("DB_PASSWORD", "leak-db-password-0012")]).unwrap(),
        ] {
            let shown = format!("{config:?} {config:#?}");
            assert!(!shown.contains("leak-"), "{shown}");
        }
    }

    #[test]
    fn development_prefers_tls_and_other_profiles_verify_fully() {
        assert_eq!(env(&[]).unwrap().tls.mode, SslMode::Prefer);
        let production = env(&[("ENV", "production"), ("DB_SSLROOTCERT", "system")]);
        // The system store may be empty in a minimal container; either way the mode is
        // verify-full or the error says which setting to give.
        match production {
            Ok(config) => assert_eq!(config.tls.mode, SslMode::VerifyFull),
            Err(error) => assert!(error.contains("DB_SSLROOTCERT"), "{error}"),
        }
    }

    #[test]
    fn plaintext_outside_development_needs_the_explicit_opt_in() {
        let error = env(&[("ENV", "docker"), ("DB_SSLMODE", "disable")]).unwrap_err();
        assert!(error.contains("DB_ALLOW_PLAINTEXT"), "{error}");
        let allowed = env(&[
            ("ENV", "docker"),
            ("DB_SSLMODE", "disable"),
            ("DB_ALLOW_PLAINTEXT", "true"),
        ]);
        assert_eq!(allowed.unwrap().tls.mode, SslMode::Disable);
        assert_eq!(
            env(&[("DB_SSLMODE", "disable")]).unwrap().tls.mode,
            SslMode::Disable
        );
    }

    #[test]
    fn client_certificate_and_key_go_together() {
        let error = env(&[("DB_SSLCERT", "/tmp/client.crt")]).unwrap_err();
        assert!(error.contains("DB_SSLKEY"), "{error}");
    }

    #[test]
    fn a_database_url_replaces_the_parts() {
        let config = env(&[
            ("DB_HOST", "ignored"),
            (
                "DATABASE_URL",
                "postgresql://app%40corp:p%40ss%3Aword@db.example.com:6432/orders?sslmode=require",
            ),
        ])
        .unwrap();
        assert_eq!(config.db_host, "db.example.com");
        assert_eq!(config.db_port, 6432);
        assert_eq!(config.db_name, "orders");
        assert_eq!(config.db_user, "app@corp");
        assert_eq!(config.db_password.expose_secret(), "p@ss:word");
        assert_eq!(config.tls.mode, SslMode::Require);
        let debug = format!("{config:?}");
        assert!(!debug.contains("p@ss:word"), "{debug}");
    }
}
