//! What every handler shares, and how a failure becomes a response.

use std::sync::Arc;

use deadpool_postgres::{Pool, PoolError};

use crate::config::Settings;
use crate::password::{HashError, Hasher};

#[derive(Debug, Clone)]
pub struct AppState {
    pub pool: Pool,
    pub settings: Arc<Settings>,
    pub hasher: Hasher,
    /// The internal keys accepted, by caller.
    pub keys: platform::internal_key::ServerKeys,
}

/// A failure a handler cannot answer with an expected outcome.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The database (or the hashing capacity) is away for now: 503, retry later.
    #[error("temporarily unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A bug or an unexpected state: one generic 500, the cause logged here.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Failure {
    /// Logs the full cause chain server-side; the client only learns the status.
    pub fn log(&self) {
        let mut chain = String::new();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            chain.push_str(": ");
            chain.push_str(&cause.to_string());
            source = cause.source();
        }
        match self {
            Self::Unavailable(_) => tracing::warn!(error = %format!("{self}{chain}"), "503"),
            Self::Internal(_) => tracing::error!(error = %format!("{self}{chain}"), "500"),
        }
    }
}

/// Errors without a SQLSTATE are transport failures (connection refused, reset, closed);
/// class 08 (connection), 53 (resources) and 57P (shutdown, cannot connect now) are the
/// server saying "not now". Everything else is a bug.
pub fn is_unavailable(error: &tokio_postgres::Error) -> bool {
    match error.code() {
        None => true,
        Some(code) => {
            let code = code.code();
            code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
        }
    }
}

impl From<tokio_postgres::Error> for Failure {
    fn from(error: tokio_postgres::Error) -> Self {
        if is_unavailable(&error) {
            Self::Unavailable(Box::new(error))
        } else {
            Self::Internal(Box::new(error))
        }
    }
}

impl From<PoolError> for Failure {
    fn from(error: PoolError) -> Self {
        match error {
            PoolError::Backend(error) => error.into(),
            // Timeouts, a closed pool, a failed connection hook: the database is away.
            other => Self::Unavailable(Box::new(other)),
        }
    }
}

impl From<HashError> for Failure {
    fn from(error: HashError) -> Self {
        match error {
            HashError::Busy(_) => Self::Unavailable(Box::new(error)),
            other => Self::Internal(Box::new(other)),
        }
    }
}
