//! The relay's loop: stand by until the lease is free, then lead: page after page, woken
//! by LISTEN or the fallback poll, purging old rows and retrying parked ones now and
//! then, until shutdown or until the lease is lost. While a page's Kafka transaction
//! runs, the next page is read and the last one recorded.

use std::future::Future;
use std::time::{Duration, Instant};

use futures::future::{FutureExt, Shared};

use super::transaction::{self, Transacted};
use super::{acknowledged, fetch, record, settle, Error, Page, Plan, Relay, Source};
use crate::leader::STANDBY_RETRY;
use crate::listen::Wakeups;
use crate::retention;
use platform::telemetry::error_chain;

type Stop = Shared<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>>;

/// How long a transaction in flight may run on after shutdown was asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often an idle leader writes down that it has seen everything (its windows with
/// rows are written down as they finish).
const IDLE_RECORD: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Woken {
    Stop,
    Notified,
    Timer,
}

impl Relay {
    /// Runs until `shutdown` resolves: standby until the lease is ours, then leader until
    /// shutdown or until the lease is lost (then standby again). Gives the lease up before
    /// returning.
    pub async fn run(mut self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let stop: Stop =
            (Box::pin(shutdown) as std::pin::Pin<Box<dyn Future<Output = ()> + Send>>).shared();
        self.status.set_leader(false);
        loop {
            tokio::select! {
                () = stop.clone() => break,
                () = self.acquire() => {}
            }
            if self.lead(stop.clone()).await {
                break;
            }
            tracing::warn!("leadership lost; back to standby");
        }
        self.step_down(true).await;
        tracing::info!("relay stopped");
    }

    async fn acquire(&mut self) {
        loop {
            match self.try_lead().await {
                Ok(true) => return,
                Ok(false) => tracing::debug!("another relay leads; standing by"),
                Err(error) => {
                    tracing::warn!(error = %error_chain(&error), "cannot reach the database for leadership")
                }
            }
            tokio::time::sleep(STANDBY_RETRY).await;
        }
    }

    /// Publishes while leader. Returns true when stopped by shutdown, false when the
    /// leadership was lost.
    async fn lead(&mut self, stop: Stop) -> bool {
        let Some(lease) = self.lead.as_ref().map(|lead| lead.lease.clone()) else {
            return false;
        };
        let _renewal = lease.keep_renewed(self.db.clone());
        let wakeups = Wakeups::spawn(self.db.clone());
        // Retention runs beside publishing (its own pool connection, short statements),
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
        let mut replays = true;
        let mut prefetched: Option<Page> = None;
        let mut recording: Option<tokio::task::JoinHandle<super::Result<()>>> = None;
        let mut recorded_idle = Instant::now();
        let timeout = Duration::from_millis(self.settings.message_timeout_ms + 5_000);
        loop {
            if stop.clone().now_or_never().is_some() {
                return self.finish(recording).await;
            }
            if !lease.holds() {
                tracing::warn!(
                    epoch = lease.epoch,
                    "the leadership lease ran out (another relay may lead now); stepping down"
                );
                self.step_down(false).await;
                return false;
            }
            let wait = match self.ensure_producer().await {
                Err(Error::NotLeader) => return false,
                Err(error) => Some(errors.next_delay()).inspect(|delay| {
                    tracing::warn!(error = %error_chain(&error), ?delay, "the producer is not ready; retrying");
                }),
                Ok(()) => None,
            };
            if let Some(wait) = wait {
                if self.pause(&stop, &wakeups, wait).await {
                    return self.finish(recording).await;
                }
                continue;
            }
            let page = match prefetched.take() {
                Some(page) => Ok(page),
                None => match self.plan(replays).await {
                    Ok(plan) => {
                        replays = false;
                        fetch(&self.pool, plan, self.config.batch_size).await
                    }
                    Err(error) => Err(error),
                },
            };
            let page = match page {
                Ok(page) => page,
                Err(error) => {
                    let delay = errors.next_delay();
                    tracing::warn!(error = %error_chain(&error), ?delay, "reading the outbox failed; retrying");
                    if self.pause(&stop, &wakeups, delay).await {
                        return self.finish(recording).await;
                    }
                    continue;
                }
            };
            if page.rows.is_empty() {
                if let Some(done) = recording.take() {
                    if !self.recorded(done.await).await {
                        return false;
                    }
                }
                match self.idle(page, &mut recorded_idle).await {
                    Ok(more) if more => {
                        replays = true;
                        continue;
                    }
                    Ok(_) => {}
                    Err(Error::Fenced) => return false,
                    Err(error) => {
                        tracing::warn!(error = %error_chain(&error), "recording failed");
                        return false;
                    }
                }
                errors.reset();
                match self.wait(&stop, &wakeups, self.config.poll_interval).await {
                    Woken::Stop => return self.finish(recording).await,
                    // A replay says so in its notification; the poll looks too.
                    Woken::Notified => replays = wakeups.take_replay_request(),
                    Woken::Timer => replays = true,
                }
                continue;
            }

            // The page's transaction, with the next page read and the last one recorded
            // meanwhile.
            let Some(lead) = self.lead.as_ref() else {
                return false;
            };
            let next = Plan::after(&page, &lead.cursor);
            let producer = lead.producer.clone();
            let blocked = match page.source {
                Source::Parked => Default::default(),
                _ => lead.parked.clone(),
            };
            let Some(producer) = producer else { continue };
            let pool = self.pool.clone();
            let limit = self.config.batch_size;
            let work = async {
                tokio::join!(
                    transaction::transact(producer, page, blocked, timeout),
                    async move {
                        match next {
                            Some(plan) => fetch(&pool, plan, limit).await.ok(),
                            None => None,
                        }
                    },
                    async {
                        match recording.take() {
                            Some(done) => Some(done.await),
                            None => None,
                        }
                    },
                )
            };
            let (done, next, recorded) = tokio::select! {
                joined = work => joined,
                () = lease.ended() => {
                    tracing::warn!(epoch = lease.epoch, "the leadership lease ran out during a page (another relay may lead now); stepping down");
                    self.step_down(false).await;
                    return false;
                }
                () = async { stop.clone().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
                    return self.finish(None).await;
                }
            };
            if let Some(done) = recorded {
                if !self.recorded(done).await {
                    return false;
                }
            }
            match done {
                Transacted::Committed(sent) => {
                    errors.reset();
                    let Some(lead) = self.lead.as_mut() else {
                        return false;
                    };
                    let epoch = lead.lease.epoch;
                    let (settled, outcome) = settle(lead, &sent);
                    if matches!(sent.page.source, Source::Replay(_)) && !sent.page.full {
                        replays = true;
                    }
                    if matches!(sent.page.source, Source::Parked) {
                        // The parked set is read again after its rows' retry is recorded.
                        match record(&self.pool, epoch, &settled).await {
                            Ok(()) => {}
                            Err(_) => {
                                self.step_down(false).await;
                                return false;
                            }
                        }
                        if let Err(error) = self.reload_parked().await {
                            tracing::warn!(error = %error_chain(&error), "cannot read the parked rows");
                        }
                        acknowledged(&sent, &outcome, epoch);
                        self.status.add_published(outcome.published as u64);
                    } else {
                        let pool = self.pool.clone();
                        let status = self.status.clone();
                        acknowledged(&sent, &outcome, epoch);
                        recording = Some(tokio::spawn(async move {
                            record(&pool, epoch, &settled).await?;
                            status.add_published(outcome.published as u64);
                            Ok(())
                        }));
                    }
                    prefetched = next;
                }
                Transacted::Failed { error, fatal } => {
                    metrics::counter!(super::M_FAILURES).increment(1);
                    if fatal {
                        if let Some(lead) = self.lead.as_mut() {
                            lead.producer = None;
                        }
                        self.status
                            .ready
                            .store(false, std::sync::atomic::Ordering::SeqCst);
                    }
                    replays = true;
                    let delay = errors.next_delay();
                    tracing::warn!(%error, fatal, ?delay, "Kafka transaction failed; the page is sent again after a pause");
                    if self.pause(&stop, &wakeups, delay).await {
                        return self.finish(recording).await;
                    }
                }
            }
        }
    }

    /// An empty page: a window with nothing new (the next one starts from its snapshot,
    /// written down now and then), a finished replay (written down), or no parked row
    /// left to try. True when there may be more to do at once.
    async fn idle(&mut self, page: Page, recorded_idle: &mut Instant) -> super::Result<bool> {
        match &page.source {
            Source::Window(snapshot) => {
                let Some(lead) = self.lead.as_mut() else {
                    return Err(Error::NotLeader);
                };
                if lead.cursor.window.is_some() {
                    // The window ended on a page boundary: record it, and a new window
                    // may hold rows already.
                    self.finish_empty(page).await?;
                    return Ok(true);
                }
                let moved = lead.cursor.published != *snapshot;
                lead.cursor.published = snapshot.clone();
                lead.cursor.late = true;
                if moved && recorded_idle.elapsed() >= IDLE_RECORD {
                    *recorded_idle = Instant::now();
                    self.finish_empty(page).await?;
                }
                Ok(false)
            }
            Source::Replay(_) => {
                self.finish_empty(page).await?;
                Ok(true)
            }
            Source::Parked => Ok(true),
        }
    }

    async fn reload_parked(&mut self) -> super::Result<()> {
        let client = self.pool.get().await?;
        let parked = super::store::parked_aggregates(&client).await?;
        if let Some(lead) = self.lead.as_mut() {
            lead.parked = parked.into_iter().collect();
        }
        Ok(())
    }

    /// The outcome of a page's recording; false when leadership must end (fenced, or the
    /// database's cursor is behind this relay's).
    async fn recorded(&mut self, done: Result<super::Result<()>, tokio::task::JoinError>) -> bool {
        match done {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                tracing::warn!(error = %error_chain(&error), "recording a page failed; starting again from the database's cursor");
                self.step_down(false).await;
                false
            }
            Err(error) => {
                tracing::warn!(%error, "the recording task failed");
                self.step_down(false).await;
                false
            }
        }
    }

    /// Waits `wait`, or until a notification comes; true when shutdown came first.
    async fn pause(&self, stop: &Stop, wakeups: &Wakeups, wait: Duration) -> bool {
        self.wait(stop, wakeups, wait).await == Woken::Stop
    }

    async fn wait(&self, stop: &Stop, wakeups: &Wakeups, wait: Duration) -> Woken {
        tokio::select! {
            () = stop.clone() => Woken::Stop,
            () = wakeups.notified() => Woken::Notified,
            () = tokio::time::sleep(wait) => Woken::Timer,
        }
    }

    /// Shutdown while leading: the last recording is awaited, the lease given up.
    async fn finish(
        &mut self,
        recording: Option<tokio::task::JoinHandle<super::Result<()>>>,
    ) -> bool {
        if let Some(done) = recording {
            if let Ok(Err(error)) = done.await {
                tracing::warn!(error = %error_chain(&error), "the last page was not recorded; it is sent again by the next leader");
            }
        }
        self.step_down(true).await;
        true
    }
}
