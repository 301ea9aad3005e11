//! Leadership: exactly one relay publishes. It holds a lease on the outbox's state row
//! (`users.outbox_relay.lease_until`, renewed every second or so); a standby takes over
//! once the lease has run out, raising the row's epoch. Every write of a leader is made
//! only while the epoch is still its own, and the new leader's producer fences the old
//! one's in Kafka, so a leader that was frozen (SIGSTOP, a long pause) or cut off from the
//! database writes nothing once it wakes up: not to PostgreSQL, not to Kafka.
//!
//! A leader also keeps the lease's end on its own clock, measured from before each
//! renewal was sent, and stops before it, whether or not the database answers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_postgres::GenericClient;

use crate::bookkeeping::Cursor;
use platform::db::DbConfig;
use platform::task::Background;

/// How often a standby tries to take the lease.
pub const STANDBY_RETRY: Duration = Duration::from_millis(500);

/// What a relay gets with the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquired {
    pub epoch: i64,
    pub cursor: Cursor,
    /// The Kafka transactional id every relay of this outbox uses.
    pub transactional_id: String,
}

const ACQUIRE: &str = "
    UPDATE users.outbox_relay SET
        epoch = epoch + 1, leader = $1, lease_until = now() + make_interval(secs => $2)
    WHERE lease_until < now() OR leader = $1
    RETURNING epoch, published::text, window_snapshot::text, window_after, high_water,
              kafka_transactional_id";

const RENEW: &str = "UPDATE users.outbox_relay \
    SET lease_until = now() + make_interval(secs => $2) \
    WHERE epoch = $1 RETURNING epoch";

const RELEASE: &str = "UPDATE users.outbox_relay SET lease_until = '-infinity' WHERE epoch = $1";

/// Tries once to take the lease for `ttl` as `holder`; `None` while another relay's lease
/// runs.
pub async fn try_acquire<C: GenericClient>(
    client: &C,
    holder: &str,
    ttl: Duration,
) -> Result<Option<Acquired>, tokio_postgres::Error> {
    let row = client
        .query_opt(ACQUIRE, &[&holder, &ttl.as_secs_f64()])
        .await?;
    Ok(row.map(|row| {
        let window: Option<String> = row.get(2);
        let after: Option<i64> = row.get(3);
        Acquired {
            epoch: row.get(0),
            cursor: Cursor {
                published: row.get(1),
                window: window.zip(after),
                high_water: row.get(4),
                late: true,
            },
            transactional_id: row.get(5),
        }
    }))
}

/// Renews the lease of `epoch`; `false` when another relay has taken over.
pub async fn renew<C: GenericClient>(
    client: &C,
    epoch: i64,
    ttl: Duration,
) -> Result<bool, tokio_postgres::Error> {
    let row = client
        .query_opt(RENEW, &[&epoch, &ttl.as_secs_f64()])
        .await?;
    Ok(row.is_some())
}

/// Gives the lease up, so a standby takes over at its next try.
pub async fn release<C: GenericClient>(
    client: &C,
    epoch: i64,
) -> Result<(), tokio_postgres::Error> {
    client.execute(RELEASE, &[&epoch]).await.map(|_| ())
}

/// A held lease, as this process sees it: its epoch and when it ends on the local clock.
#[derive(Debug, Clone)]
pub struct Lease {
    pub epoch: i64,
    ttl: Duration,
    base: Instant,
    /// Milliseconds after `base` at which the lease ends.
    ends_ms: Arc<AtomicU64>,
    lost: Arc<AtomicBool>,
    changed: Arc<Notify>,
}

impl Lease {
    /// A lease of `epoch` taken just now (the request left at `asked`).
    pub fn new(epoch: i64, ttl: Duration, asked: Instant) -> Self {
        let lease = Self {
            epoch,
            ttl,
            base: asked,
            ends_ms: Arc::new(AtomicU64::new(0)),
            lost: Arc::default(),
            changed: Arc::default(),
        };
        lease.renewed(asked);
        lease
    }

    /// The renewal asked at `asked` succeeded.
    pub fn renewed(&self, asked: Instant) {
        let ends = asked.saturating_duration_since(self.base) + self.ttl;
        self.ends_ms
            .fetch_max(ends.as_millis() as u64, Ordering::SeqCst);
    }

    /// Another relay took over.
    pub fn lose(&self) {
        self.lost.store(true, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Whether the lease still runs for at least `margin`.
    pub fn holds_for(&self, margin: Duration) -> bool {
        if self.lost.load(Ordering::SeqCst) {
            return false;
        }
        let ends = self.base + Duration::from_millis(self.ends_ms.load(Ordering::SeqCst));
        Instant::now() + margin < ends
    }

    pub fn holds(&self) -> bool {
        self.holds_for(Duration::ZERO)
    }

    /// The lease's length (it is renewed every third of it).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Resolves once the lease is lost or has run out.
    pub async fn ended(&self) {
        loop {
            // Listening before looking, so a loss in between is not missed.
            let changed = self.changed.notified();
            if !self.holds() {
                return;
            }
            let ends = self.base + Duration::from_millis(self.ends_ms.load(Ordering::SeqCst));
            tokio::select! {
                () = changed => {}
                () = tokio::time::sleep_until(ends.into()) => {}
            }
        }
    }

    /// Renews the lease every third of its length on a connection of its own, until the
    /// task is dropped or another relay takes over.
    pub fn keep_renewed(&self, db: DbConfig) -> Background {
        let lease = self.clone();
        Background::spawn(async move {
            let mut client: Option<tokio_postgres::Client> = None;
            loop {
                tokio::time::sleep(lease.ttl / 3).await;
                let asked = Instant::now();
                if client.as_ref().is_none_or(|c| c.is_closed()) {
                    client = db.connect().await.ok();
                }
                let Some(connection) = &client else {
                    tracing::warn!("cannot reach the database to renew the leadership lease");
                    continue;
                };
                match tokio::time::timeout(lease.ttl, renew(connection, lease.epoch, lease.ttl))
                    .await
                {
                    Ok(Ok(true)) => lease.renewed(asked),
                    Ok(Ok(false)) => {
                        tracing::warn!(epoch = lease.epoch, "another relay took the lease");
                        lease.lose();
                        return;
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "renewing the leadership lease failed");
                        client = None;
                    }
                    Err(_) => {
                        tracing::warn!("renewing the leadership lease timed out");
                        client = None;
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_ends_on_the_local_clock_and_when_lost() {
        let lease = Lease::new(3, Duration::from_millis(200), Instant::now());
        assert!(lease.holds());
        assert!(!lease.holds_for(Duration::from_secs(1)));
        lease.renewed(Instant::now());
        assert!(lease.holds());
        lease.lose();
        assert!(!lease.holds());
    }
}
