//! The relay's loop: wait for leadership, then publish batch after batch, woken by LISTEN
//! or the fallback poll, purging old rows now and then, until shutdown or until the
//! leadership session is lost.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::future::{FutureExt, Shared};
use rdkafka::producer::Producer;

use super::Relay;
use crate::leader::{Leadership, STANDBY_RETRY};
use crate::listen::Wakeups;
use crate::retention;

type Stop = Shared<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>>;

/// How long shutdown waits for librdkafka to deliver what it holds.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

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
        let mut next_purge = Instant::now();
        let mut error_delay = self.config.backoff_min;
        loop {
            if stop.clone().now_or_never().is_some() {
                return true;
            }
            if !leadership.is_alive().await {
                return false;
            }
            if Instant::now() >= next_purge {
                self.purge().await;
                next_purge = Instant::now() + self.config.retention_interval;
            }
            // A batch in flight is finished rather than abandoned on shutdown (abandoning is
            // safe but re-sends it).
            let wait = match self.relay_once().await {
                Ok(outcome) => {
                    error_delay = self.config.backoff_min;
                    if outcome.claimed as i64 >= self.config.batch_size {
                        continue;
                    }
                    self.config.poll_interval
                }
                Err(error) => {
                    tracing::warn!(error = %error_chain(&error), ?error_delay, "relay batch failed; retrying");
                    let delay = error_delay;
                    error_delay = (error_delay * 2).min(self.config.backoff_max);
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

    async fn purge(&self) {
        let Some(retention) = self.config.retention else {
            return;
        };
        let client = match self.pool.get().await {
            Ok(client) => client,
            Err(error) => {
                tracing::warn!(%error, "retention skipped: no database connection");
                return;
            }
        };
        if let Err(error) = retention::purge(&client, retention, self.config.purge_batch).await {
            tracing::warn!(%error, "retention purge failed; retrying later");
        }
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
