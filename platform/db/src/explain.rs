//! Why a connection was refused, in terms of the settings that would fix it.

use std::error::Error as _;

use tokio_postgres::error::SqlState;

use super::DbConfig;

/// A connection failure explained by setting name (never the password).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StartError {
    message: String,
    /// A setting to fix (TLS or credentials), as opposed to a database that is away.
    pub fatal: bool,
}

impl StartError {
    /// A setting the service refuses to start with.
    pub(crate) fn refused(message: String) -> Self {
        Self {
            message,
            fatal: true,
        }
    }

    /// `Some` when the failure is one of the settings: TLS or credentials.
    pub(crate) fn classify(config: &DbConfig, error: &tokio_postgres::Error) -> Option<Self> {
        let explained = Self::explain(config, error);
        explained.fatal.then_some(explained)
    }

    pub(crate) fn explain(config: &DbConfig, error: &tokio_postgres::Error) -> Self {
        let at = format!("{}:{}", config.db_host, config.db_port);
        let mode = config.tls.mode.name();
        let roots = config.tls.root_cert.as_ref().map_or_else(
            || "the system store".to_owned(),
            |p| p.display().to_string(),
        );
        let chain = chain(error);
        let fatal = |message: String| Self {
            message,
            fatal: true,
        };
        if let Some(rustls::Error::InvalidCertificate(certificate)) = rustls_error(error) {
            use rustls::CertificateError as C;
            return fatal(match certificate {
                C::UnknownIssuer | C::BadSignature => format!(
                    "DB_SSLROOTCERT: the certificate of the database at {at} is not signed by a \
                     CA in {roots} (DB_SSLMODE={mode}): give the CA that signed the server's \
                     certificate ({chain})"
                ),
                C::NotValidForName | C::NotValidForNameContext { .. } => format!(
                    "DB_HOST: the certificate of the database at {at} is not issued for {:?} \
                     (DB_SSLMODE={mode} checks the host name): connect by a name the \
                     certificate lists ({chain})",
                    config.db_host
                ),
                C::Expired
                | C::ExpiredContext { .. }
                | C::NotValidYet
                | C::NotValidYetContext { .. } => {
                    format!(
                        "the certificate of the database at {at} is outside its validity period \
                         ({chain})"
                    )
                }
                _ => format!(
                    "DB_SSLMODE={mode}: the database at {at} presented a certificate that was \
                     refused ({chain})"
                ),
            });
        }
        if chain.contains("server does not support TLS") {
            return fatal(format!(
                "DB_SSLMODE={mode}: the database at {at} does not offer TLS; enable ssl on the \
                 server, or (only on a private network) DB_SSLMODE=prefer or disable"
            ));
        }
        if chain.contains("no encryption") {
            return fatal(format!(
                "DB_SSLMODE: the database at {at} accepts TLS connections only ({chain}); set \
                 DB_SSLMODE=verify-full and DB_SSLROOTCERT"
            ));
        }
        if rustls_error(error).is_some() || chain.contains("error performing TLS handshake") {
            return fatal(format!(
                "DB_SSLMODE={mode}: the TLS handshake with the database at {at} failed ({chain})"
            ));
        }
        match error.code() {
            Some(code)
                if *code == SqlState::INVALID_PASSWORD
                    || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
            {
                fatal(format!(
                    "DB_USER / DB_PASSWORD: the database at {at} refused user {:?}: {}",
                    config.db_user,
                    error.as_db_error().map_or("", |e| e.message())
                ))
            }
            Some(code) if *code == SqlState::INVALID_CATALOG_NAME => fatal(format!(
                "DB_NAME: the database at {at} has no database {:?}",
                config.db_name
            )),
            _ => Self {
                message: format!("cannot reach the database at {at}: {chain}"),
                fatal: false,
            },
        }
    }
}

/// The rustls error behind a failed handshake, if that is what failed (tokio-rustls hands
/// it over inside an `io::Error`, whose `source` skips it).
fn rustls_error(error: &tokio_postgres::Error) -> Option<&rustls::Error> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = error.source();
    while let Some(cause) = source {
        if let Some(found) = cause.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(found) = cause
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(found);
        }
        source = cause.source();
    }
    None
}

/// The error and its causes on one line.
fn chain(error: &tokio_postgres::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
