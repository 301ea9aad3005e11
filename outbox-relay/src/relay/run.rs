//! The relay's loop: wait for leadership, then publish batch after batch, woken by LISTEN
//! or the fallback poll, purging old rows now and then, until shutdown or until the
//! leadership session is lost.

use std::future::Future;
use std::time::Duration;

use futures::future::{FutureExt, Shared};
use rdkafka::producer::{Producer, PurgeConfig};

use super::Relay;
use crate::leader::{Leadership, STANDBY_RETRY};
use crate::listen::Wakeups;
use crate::retention;
use platform::telemetry::error_chain;

type Stop = Shared<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>>;

/// How long shutdown waits for librdkafka to deliver what it holds.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a batch in flight may run on after shutdown was asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often a long batch re-checks that this relay still leads.
const LIVENESS_CHECK: Duration = Duration::from_secs(1);

impl Relay {
    /// Runs until `shutdown` resolves: standby until the advisory lock is ours, then leader
    /// until shutdown or until the lock's session is lost (then standby again). Flushes the
    /// producer before returning.
    pub async fn run(mut self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let stop: Stop =
            (Box::pin(shutdown) as std::pin::Pin<Box<dyn Future<Output = ()> + Send>>).shared();
        self.status.set_leader(false);
        loop {
            let leadership = tokio::select! {
                () = stop.clone() => break,
                leadership = self.acquire() => leadership,
            };
            tracing::info!("this relay is now the leader");
            self.status.set_leader(true);
            let stopped = self.lead(&leadership, stop.clone()).await;
            self.status.set_leader(false);
            drop(leadership);
            if stopped {
                break;
            }
            tracing::warn!("leadership lost; back to standby");
        }
        let producer = self.producer.clone();
        let flushed = tokio::task::spawn_blocking(move || producer.flush(FLUSH_TIMEOUT)).await;
        if !matches!(flushed, Ok(Ok(()))) {
            tracing::warn!("producer not fully flushed at shutdown");
        }
        tracing::info!("relay stopped");
    }

    async fn acquire(&self) -> Leadership {
        loop {
            match Leadership::try_acquire(&self.db).await {
                Ok(Some(leadership)) => return leadership,
                Ok(None) => tracing::debug!("another relay leads; standing by"),
                Err(error) => tracing::warn!(%error, "cannot reach the database for leadership"),
            }
            tokio::time::sleep(STANDBY_RETRY).await;
        }
    }

    /// Publishes while leader. Returns true when stopped by shutdown, false when the
    /// leadership session was lost.
    async fn lead(&mut self, leadership: &Leadership, stop: Stop) -> bool {
        let wakeups = Wakeups::spawn(self.db.clone());
        // Retention runs beside publishing (its own pool connection, short transactions),
        // only while this relay leads.
        let _retention = self.config.retention.map(|older_than| {
            let batch = self.config.purge_batch;
            let purge = move |client: deadpool_postgres::Object| async move {
                retention::purge(&client, older_than, batch).await
            };
            platform::task::Background::spawn(platform::retention::purge_every(
                self.pool.clone(),
                self.config.retention_interval,
                "published outbox rows",
                purge,
            ))
        });
        let mut errors =
            platform::backoff::Backoff::new(self.config.backoff_min, self.config.backoff_max);
        loop {
            if stop.clone().now_or_never().is_some() {
                return true;
            }
            if !leadership.is_alive().await {
                return false;
            }
            // A batch waits for its delivery reports, which can take up to
            // `message.timeout.ms` while Kafka is away, so it races the leadership check and
            // shutdown (after a grace period to let a healthy batch finish). Abandoning a
            // batch is safe: its unmarked rows are sent again.
            let ended = tokio::select! {
                outcome = self.relay_once() => Ended::Batch(outcome),
                () = lost(leadership) => Ended::Lost,
                () = async { stop.clone().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => Ended::Stopped,
            };
            let wait = match ended {
                Ended::Lost | Ended::Stopped => {
                    // Nothing queued by a relay that no longer leads may reach Kafka after
                    // the new leader's sends.
                    self.producer
                        .purge(PurgeConfig::default().queue().inflight());
                    return matches!(ended, Ended::Stopped);
                }
                Ended::Batch(Ok(outcome)) => {
                    errors.reset();
                    if outcome.claimed as i64 >= self.config.batch_size {
                        continue;
                    }
                    self.config.poll_interval
                }
                Ended::Batch(Err(error)) => {
                    let delay = errors.next_delay();
                    tracing::warn!(error = %error_chain(&error), ?delay, "relay batch failed; retrying");
                    delay
                }
            };
            tokio::select! {
                () = stop.clone() => return true,
                () = wakeups.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

enum Ended {
    Batch(super::Result<super::BatchOutcome>),
    Lost,
    Stopped,
}

/// Resolves once the leadership session is gone (checked every second).
async fn lost(leadership: &Leadership) {
    loop {
        tokio::time::sleep(LIVENESS_CHECK).await;
        if !leadership.is_alive().await {
            return;
        }
    }
}
