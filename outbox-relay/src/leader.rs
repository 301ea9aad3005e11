//! Leadership: exactly one relay publishes. It holds a session-level PostgreSQL advisory
//! lock on a dedicated (unpooled) connection; the lock dies with that session, so a
//! leader whose process or connection dies frees it at once and a standby, retrying every
//! second, takes over.

use std::time::Duration;

use tokio_postgres::Client;

use platform::db::DbConfig;

/// The advisory lock key ("outbox-relay" as 64 bits). Advisory locks are per database,
/// so relays of different databases (and test databases) never contend.
pub const LOCK_KEY: i64 = 0x6f75_7462_6f78_7265;

/// How often a standby tries to take the lock.
pub const STANDBY_RETRY: Duration = Duration::from_secs(1);

/// How long a liveness check of the lock session may take before leadership counts as lost.
const ALIVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Held leadership; dropping it closes the session and so releases the lock.
#[derive(Debug)]
pub struct Leadership {
    client: Client,
}

impl Leadership {
    /// Tries once to become leader; `Ok(None)` means another relay holds the lock.
    #[tracing::instrument(level = "debug", skip_all, err)]
    pub async fn try_acquire(db: &DbConfig) -> Result<Option<Self>, tokio_postgres::Error> {
        let client = db.connect().await?;
        let row = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY])
            .await?;
        Ok(row.get::<_, bool>(0).then_some(Self { client }))
    }

    /// Whether the session holding the lock is still there. Checked before every batch:
    /// a leader that lost it must stop publishing, because a standby may already lead.
    pub async fn is_alive(&self) -> bool {
        if self.client.is_closed() {
            return false;
        }
        matches!(
            tokio::time::timeout(ALIVE_TIMEOUT, self.client.simple_query("")).await,
            Ok(Ok(_))
        )
    }
}
