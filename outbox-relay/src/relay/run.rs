//! The relay's loop: stand by until the lease is free, then lead: page after page, woken
//! by LISTEN or the fallback poll, each page handed to the open Kafka transaction while
//! the next is read, the transaction committed every `commit_interval` (its commit going
//! on while the next transaction takes rows) and recorded in the background; purging old
//! rows and retrying parked ones now and then, until shutdown or until the lease is lost.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::{FutureExt, Shared};

use super::store::Settled;
use super::transaction::{self, Ended};
use super::{
    acknowledged, fetch, outcome_of, record, settle, Error, Page, Plan, Relay, Sent, Source,
};
use crate::leader::{Lease, STANDBY_RETRY};
use crate::listen::Wakeups;
use crate::retention;
use platform::telemetry::error_chain;

/// A page being read ahead.
type Reading = tokio::task::JoinHandle<super::Result<Page>>;

type Stop = Shared<std::pin::Pin<Box<dyn Future<Output = ()> + Send>>>;

/// How long the last transaction may take to commit and be recorded at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How many pages are read ahead of the one being handed to Kafka (each read as soon as
/// the last one came, so that a slow read and a slow hand-over need not meet).
const READ_AHEAD: usize = 2;
/// How often an idle leader writes down that it has seen everything (its windows with
/// rows are written down with their transactions).
const IDLE_RECORD: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Woken {
    Stop,
    Notified,
    Timer,
    LeaseEnded,
    /// The commit under way ended.
    Committed,
}

/// The Kafka transaction open now.
struct Open {
    started: Instant,
    /// What its commit settles.
    settled: Settled,
    rows: usize,
    /// Its pages (for the metrics once it is committed).
    pages: Vec<Sent>,
}

/// A Kafka transaction whose rows Kafka has all acknowledged, committing while the next
/// one (on the other producer) takes new rows: those land after its rows on every
/// partition. One at a time: its outcome is taken before the next commit, before
/// anything is recorded outside a transaction, before a replay is read and before the
/// pages start again from an earlier point.
struct Committing {
    ending: tokio::task::JoinHandle<Ended>,
    /// How it ended, once a wait saw it.
    ended: Option<Ended>,
    open: Open,
    epoch: i64,
    /// The cursor as of its end, and the aggregates with parked rows then.
    cursor: super::Cursor,
    parked: HashSet<String>,
}

impl Committing {
    fn done(&self) -> bool {
        self.ended.is_some() || self.ending.is_finished()
    }

    async fn outcome(&mut self) -> Ended {
        match self.ended.take() {
            Some(ended) => ended,
            None => (&mut self.ending).await.unwrap_or_else(ended_in_panic),
        }
    }
}

fn ended_in_panic(error: tokio::task::JoinError) -> Ended {
    Ended::Failed {
        refused: Vec::new(),
        error: Some(format!("the commit's task failed: {error}")),
        fatal: true,
    }
}

/// What taking a commit's outcome came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Committed (and its recording started), or no commit was under way.
    Committed,
    /// It failed: the rows go again from the last commit before it.
    Failed,
    /// The leadership must end.
    NotLeader,
}

/// The leader's state between pages.
struct Publishing {
    errors: platform::backoff::Backoff,
    /// Whether to look for a pending replay before the next page.
    replays: bool,
    /// The next pages, read while the last ones were handed over.
    ahead: VecDeque<Page>,
    /// The read of the page after `ahead`, under way (when it fails, the next page is
    /// planned afresh once `ahead` is handed over).
    reading: Option<Reading>,
    open: Option<Open>,
    /// The last transaction, being committed.
    committing: Option<Committing>,
    /// The last committed transaction's recording, running.
    recording: Option<tokio::task::JoinHandle<super::Result<()>>>,
    recorded_idle: Instant,
    /// Rows Kafka refused at delivery, set apart when they come again (the transaction
    /// they were in was aborted): by id, why.
    set_apart: HashMap<i64, String>,
    /// The cursor as of the last commit: where to start again after an abort.
    committed: Option<super::Cursor>,
    /// The aggregates with parked rows as of the last commit.
    committed_parked: HashSet<String>,
    /// Back off before the next page (the last transaction failed).
    pause: bool,
    /// The leadership must end (a recording failed where the loop could not be told).
    not_leader: bool,
}

impl Publishing {
    /// The next page read ahead: one already read, or the one being read (none when
    /// nothing was read ahead, or the read failed: the caller plans it afresh).
    async fn next_read(&mut self) -> Option<Page> {
        if let Some(page) = self.ahead.pop_front() {
            return Some(page);
        }
        let reading = self.reading.take()?;
        reading.await.ok()?.ok()
    }

    /// Forgets what was read ahead (the cursor went back, or a replay goes first).
    fn drop_ahead(&mut self) {
        self.ahead.clear();
        if let Some(reading) = self.reading.take() {
            reading.abort();
        }
    }
}

/// Reads the page of `plan` in a task of its own.
fn read_ahead(pool: deadpool_postgres::Pool, plan: Plan, limit: i64) -> Reading {
    tokio::spawn(async move { fetch(&pool, plan, limit).await })
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
        let mut pub_ = Publishing {
            errors: platform::backoff::Backoff::new(
                self.config.backoff_min,
                self.config.backoff_max,
            ),
            replays: true,
            ahead: VecDeque::new(),
            reading: None,
            open: None,
            committing: None,
            recording: None,
            recorded_idle: Instant::now(),
            set_apart: HashMap::new(),
            committed: self.lead.as_ref().map(|l| l.cursor.clone()),
            committed_parked: self
                .lead
                .as_ref()
                .map(|l| l.parked.clone())
                .unwrap_or_default(),
            pause: false,
            not_leader: false,
        };
        let stopped = self.publish(&stop, &lease, &wakeups, &mut pub_).await;
        self.wind_up(&mut pub_, stopped).await;
        stopped
    }

    /// The leader's loop; true when stopped by shutdown, false when the leadership ended.
    async fn publish(
        &mut self,
        stop: &Stop,
        lease: &Lease,
        wakeups: &Wakeups,
        p: &mut Publishing,
    ) -> bool {
        let timeout = self.kafka_timeout();
        loop {
            if stop.clone().now_or_never().is_some() {
                return true;
            }
            if !lease.holds() {
                tracing::warn!(
                    epoch = lease.epoch,
                    "the leadership lease ran out (another relay may lead now); stepping down"
                );
                return false;
            }
            if p.not_leader {
                return false;
            }
            if p.committing.as_ref().is_some_and(Committing::done)
                && self.commit_outcome(p).await == Outcome::NotLeader
            {
                return false;
            }
            if p.recording.as_ref().is_some_and(|done| done.is_finished())
                && !self.recorded(p.recording.take()).await
            {
                return false;
            }
            // A new producer fences every other of this outbox: only with time left.
            if !lease.holds_for(self.config.lease / 5) {
                // Renewals are failing: wait for one, or for the lease's end.
                if self
                    .wait(stop, wakeups, lease, Duration::from_millis(50))
                    .await
                    == Woken::Stop
                {
                    return true;
                }
                continue;
            }
            match self.ensure_producer().await {
                Ok(()) => {}
                Err(Error::NotLeader) => return false,
                Err(error) => {
                    let delay = p.errors.next_delay();
                    tracing::warn!(error = %error_chain(&error), ?delay, "the producer is not ready; retrying");
                    if self.wait(stop, wakeups, lease, delay).await == Woken::Stop {
                        return true;
                    }
                    continue;
                }
            }
            // The open transaction's commit, when due.
            let due = p.open.as_ref().is_some_and(|open| {
                open.started.elapsed() >= self.config.commit_interval
                    || open.rows >= self.config.transaction_rows
            });
            if due && !self.commit(p, timeout).await {
                return false;
            }
            // A replay asked for goes before new rows, even under a backlog; it is read
            // from what was recorded, so the last recording goes first.
            if wakeups.take_replay_request() {
                p.replays = true;
            }
            if p.replays {
                if p.ahead
                    .iter()
                    .any(|page| matches!(page.source, Source::Window(_)))
                    || p.reading.is_some()
                {
                    p.drop_ahead();
                }
                if self.commit_outcome(p).await == Outcome::NotLeader {
                    return false;
                }
                if p.recording.is_some() && !self.recorded(p.recording.take()).await {
                    return false;
                }
            }
            if std::mem::take(&mut p.pause) {
                let delay = p.errors.next_delay();
                if self.wait(stop, wakeups, lease, delay).await == Woken::Stop {
                    return true;
                }
                continue;
            }
            let page = match p.next_read().await {
                Some(page) => Ok(page),
                None => match self
                    .plan(
                        p.replays,
                        p.open
                            .as_ref()
                            .map_or(&[][..], |open| &open.settled.replays),
                    )
                    .await
                {
                    Ok(plan) => {
                        p.replays = false;
                        fetch(&self.pool, plan, self.config.batch_size).await
                    }
                    Err(error) => Err(error),
                },
            };
            let page = match page {
                Ok(page) => page,
                Err(error) => {
                    let delay = p.errors.next_delay();
                    tracing::warn!(error = %error_chain(&error), ?delay, "reading the outbox failed; retrying");
                    if self.wait(stop, wakeups, lease, delay).await == Woken::Stop {
                        return true;
                    }
                    continue;
                }
            };
            if page.rows.is_empty() {
                match self.idle(page, p).await {
                    Ok(true) => {
                        p.replays = true;
                        continue;
                    }
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(error = %error_chain(&error), "recording failed");
                        return false;
                    }
                }
                p.errors.reset();
                match self.until_more(stop, wakeups, lease, p, timeout).await {
                    Some(stopped) => return stopped,
                    None => continue,
                }
            }
            // A window page that is not full ended its window: every row committed before
            // its snapshot was in it, and a row committed since sends a notification that
            // arrives after its commit. So the next window is read on that wake-up (or the
            // poll), not at once: at a steady rate that read found nothing nearly always,
            // and doubled the relay's queries.
            let window_ended = matches!(page.source, Source::Window(_)) && !page.full;
            if !self.hand_over(p, page).await {
                let delay = p.errors.next_delay();
                if self.wait(stop, wakeups, lease, delay).await == Woken::Stop {
                    return true;
                }
                continue;
            }
            if window_ended && p.ahead.is_empty() && p.reading.is_none() && !p.replays {
                match self.until_more(stop, wakeups, lease, p, timeout).await {
                    Some(stopped) => return stopped,
                    None => continue,
                }
            }
        }
    }

    /// Waits for what comes after the end of a window (or an empty one): a notification,
    /// the poll, or the open transaction's commit; a transaction holding a page or more
    /// (a backlog just drained) is committed at once. `Some` when the loop must end (true:
    /// stopped by shutdown; false: leadership lost).
    async fn until_more(
        &mut self,
        stop: &Stop,
        wakeups: &Wakeups,
        lease: &Lease,
        p: &mut Publishing,
        timeout: Duration,
    ) -> Option<bool> {
        // Caught up after a backlog: its last rows are committed now rather than when the
        // interval is up (a transaction holding less than a page, as at a steady rate,
        // waits for the interval: committing after every few rows would hold up the next
        // ones).
        if p.open
            .as_ref()
            .is_some_and(|open| open.rows >= self.config.batch_size as usize)
        {
            return (!self.commit(p, timeout).await).then_some(false);
        }
        // Idle: until a notification, the poll, or the open transaction's commit.
        let wait = match &p.open {
            Some(open) => self
                .config
                .commit_interval
                .saturating_sub(open.started.elapsed()),
            None => self.config.poll_interval,
        };
        // The commit under way ending wakes it too: its outcome is taken (and recorded) at
        // once rather than at the next page.
        let woken = match p.committing.as_mut() {
            Some(committing) if committing.ended.is_none() => tokio::select! {
                ended = &mut committing.ending => {
                    committing.ended = Some(ended.unwrap_or_else(ended_in_panic));
                    Woken::Committed
                }
                woken = self.wait(stop, wakeups, lease, wait) => woken,
            },
            _ => self.wait(stop, wakeups, lease, wait).await,
        };
        match woken {
            Woken::Stop => return Some(true),
            // A replay says so in its notification; the poll looks too.
            Woken::Notified => p.replays = wakeups.take_replay_request(),
            Woken::Timer => p.replays |= p.open.is_none(),
            Woken::LeaseEnded | Woken::Committed => {}
        }
        None
    }

    /// Hands `page` to the open transaction (opening one if needed) while the next page is
    /// read. False when the transaction broke (it is aborted; the rows go again).
    async fn hand_over(&mut self, p: &mut Publishing, mut page: Page) -> bool {
        let Some(lead) = self.lead.as_ref() else {
            return false;
        };
        let Some(producer) = lead.producer() else {
            return false;
        };
        if p.open.is_none() {
            if let Err(error) = transaction::begin(&producer) {
                let fatal = transaction::is_fatal(&error);
                tracing::warn!(%error, fatal, "cannot begin a Kafka transaction");
                self.failed(error.to_string(), fatal);
                return false;
            }
            p.open = Some(Open {
                started: Instant::now(),
                settled: Settled::default(),
                rows: 0,
                pages: Vec::new(),
            });
        }
        // What to read after this page, unless pages after it are read or being read
        // (the last of those knows what comes next).
        let mut after = page.next.take();
        let blocked = match page.source {
            Source::Parked => HashSet::new(),
            _ => lead.parked.clone(),
        };
        let handing = transaction::hand_over(producer.clone(), page, blocked, p.set_apart.clone());
        tokio::pin!(handing);
        // While the page goes to librdkafka, the next ones are read, each as soon as the
        // last came, up to READ_AHEAD.
        let (handed, blocked_after) = loop {
            if p.reading.is_none() && p.ahead.len() < READ_AHEAD {
                let plan = match p.ahead.back_mut() {
                    Some(last) => last.next.take(),
                    None => after.take(),
                };
                if let Some(plan) = plan {
                    p.reading = Some(read_ahead(self.pool.clone(), plan, self.config.batch_size));
                }
            }
            tokio::select! {
                biased;
                handed = &mut handing => break handed,
                read = async { p.reading.as_mut().expect("guarded").await }, if p.reading.is_some() => {
                    p.reading = None;
                    if let Ok(Ok(page)) = read {
                        p.ahead.push_back(page);
                    }
                }
            }
        };
        if let Some(error) = handed.broken {
            tracing::warn!(%error, "a send broke the Kafka transaction; it is aborted and its rows go again");
            let before = p.set_apart.len();
            self.abandon(p, &producer).await;
            if p.set_apart.len() > before {
                // A refused row broke it: again at once, without that row.
                return true;
            }
            self.failed(error.to_string(), transaction::is_fatal(&error));
            return false;
        }
        let Some(lead) = self.lead.as_mut() else {
            return false;
        };
        if !matches!(handed.page.source, Source::Parked) {
            lead.parked.extend(blocked_after);
        }
        let sent = Sent {
            page: handed.page,
            parked: handed.parked,
        };
        let (settled, outcome) = settle(lead, &sent);
        if let Some(open) = p.open.as_mut() {
            open.rows += outcome.claimed;
            open.settled.merge(settled);
            open.pages.push(sent);
        }
        true
    }

    /// Ends the open transaction: once Kafka acknowledged all its rows, its commit goes on
    /// in the background while the next pages go to the other producer; once committed it
    /// is recorded (in the background too). A failure aborts it and starts again from
    /// what was last committed. False when the leadership must end.
    async fn commit(&mut self, p: &mut Publishing, timeout: Duration) -> bool {
        if p.open.is_none() {
            return true;
        }
        // Commits go one at a time, in order.
        match self.commit_outcome(p).await {
            Outcome::Committed => {}
            Outcome::Failed => return true,
            Outcome::NotLeader => return false,
        }
        let Some(lead) = self.lead.as_ref() else {
            return false;
        };
        let (Some(producer), epoch) = (lead.producer(), lead.lease.epoch) else {
            return false;
        };
        // Nothing more is committed to Kafka past a recording that failed (a leader fenced,
        // or the database's cursor moved): the leadership ends first.
        if !self.recorded(p.recording.take()).await {
            self.abandon(p, &producer).await;
            return false;
        }
        let Some(open) = p.open.take() else {
            return true;
        };
        let started = Instant::now();
        if let Some(Ended::Failed {
            refused,
            error,
            fatal,
        }) = transaction::delivered(producer.clone(), timeout).await
        {
            self.transaction_failed(p, refused, error, fatal);
            return true;
        }
        let Some(lead) = self.lead.as_mut() else {
            return false;
        };
        // The next transaction goes to the other producer, whose last commit is done.
        lead.committed();
        p.committing = Some(Committing {
            ending: tokio::spawn(transaction::commit(producer, timeout, started)),
            ended: None,
            open,
            epoch,
            cursor: lead.cursor.clone(),
            parked: lead.parked.clone(),
        });
        true
    }

    /// Takes the outcome of the commit under way, waiting for it (nothing to do when none
    /// is). Committed: it is recorded in the background. Failed: the transaction opened
    /// since is aborted too (its rows came after the failed one's) and the rows go again
    /// from the last commit.
    async fn commit_outcome(&mut self, p: &mut Publishing) -> Outcome {
        let Some(mut committing) = p.committing.take() else {
            return Outcome::Committed;
        };
        match committing.outcome().await {
            Ended::Committed => {
                if self.committed(p, committing).await {
                    Outcome::Committed
                } else {
                    Outcome::NotLeader
                }
            }
            Ended::Failed {
                refused,
                error,
                fatal,
            } => {
                if p.open.is_some() {
                    if let Some(producer) = self.lead.as_ref().and_then(|l| l.producer()) {
                        self.abort_open(p, &producer).await;
                    }
                }
                self.transaction_failed(p, refused, error, fatal);
                Outcome::Failed
            }
        }
    }

    /// A transaction Kafka committed: counted, and recorded in the background (at once
    /// when it retried parked rows, which are read again afterwards). False when the
    /// leadership must end.
    async fn committed(&mut self, p: &mut Publishing, committing: Committing) -> bool {
        let Committing {
            open,
            epoch,
            cursor,
            parked,
            ..
        } = committing;
        p.errors.reset();
        for sent in &open.pages {
            let outcome = outcome_of(sent);
            acknowledged(sent, &outcome, epoch);
        }
        for (id, _, _) in &open.settled.parked {
            p.set_apart.remove(id);
        }
        p.committed = Some(cursor);
        p.committed_parked = parked;
        let parked_retried = open
            .pages
            .iter()
            .any(|sent| matches!(sent.page.source, Source::Parked));
        if open
            .pages
            .iter()
            .any(|sent| matches!(sent.page.source, Source::Replay(_)) && !sent.page.full)
        {
            p.replays = true;
        }
        // Recordings go in order.
        if !self.recorded(p.recording.take()).await {
            return false;
        }
        let pool = self.pool.clone();
        let status = self.status.clone();
        let published = (open.settled.published + open.settled.replayed) as u64;
        let settled = open.settled;
        let recording = tokio::spawn(async move {
            record(&pool, epoch, &settled).await?;
            status.add_published(published);
            Ok(())
        });
        if parked_retried {
            // The parked set is read again once the retry is recorded.
            if !self.recorded(Some(recording)).await {
                return false;
            }
            if let Err(error) = self.reload_parked().await {
                tracing::warn!(error = %error_chain(&error), "cannot read the parked rows");
            }
        } else {
            p.recording = Some(recording);
        }
        true
    }

    /// A transaction that failed (aborted, or left for the coordinator to abort): rows
    /// Kafka refused for themselves are set apart and go again at once without them; a
    /// broker that is away is waited for.
    fn transaction_failed(
        &mut self,
        p: &mut Publishing,
        refused: Vec<(i64, String)>,
        error: Option<String>,
        fatal: bool,
    ) {
        for (id, why) in &refused {
            p.set_apart.insert(*id, why.clone());
        }
        tracing::warn!(
            error = error.as_deref().unwrap_or("rows refused"),
            refused = refused.len(),
            fatal,
            "Kafka transaction failed; its rows are sent again"
        );
        self.restart_from_committed(p);
        p.pause = refused.is_empty();
        self.failed(error.unwrap_or_default(), fatal);
    }

    /// Aborts the open transaction; rows Kafka refused in it are set apart, and the next
    /// pages start again from the last commit. A failed abort retires the producer.
    async fn abandon(&mut self, p: &mut Publishing, producer: &Arc<super::producer::TxProducer>) {
        self.abort_open(p, producer).await;
        // The commit under way decides where the pages start again (a failed one has
        // gone back already).
        match self.commit_outcome(p).await {
            Outcome::Committed => self.restart_from_committed(p),
            Outcome::Failed => {}
            Outcome::NotLeader => {
                p.not_leader = true;
                self.restart_from_committed(p);
            }
        }
    }

    /// Aborts the open transaction, setting apart the rows Kafka refused in it; a failed
    /// abort retires the producer.
    async fn abort_open(
        &mut self,
        p: &mut Publishing,
        producer: &Arc<super::producer::TxProducer>,
    ) {
        p.open = None;
        if let Ended::Failed {
            refused,
            error,
            fatal,
        } = transaction::abort(producer.clone(), self.kafka_timeout()).await
        {
            for (id, why) in refused {
                p.set_apart.insert(id, why);
            }
            if fatal {
                self.failed(error.unwrap_or_default(), true);
            }
        }
    }

    fn restart_from_committed(&mut self, p: &mut Publishing) {
        p.open = None;
        p.drop_ahead();
        // Replays are read again from what was recorded.
        p.replays = true;
        if let (Some(lead), Some(committed)) = (self.lead.as_mut(), p.committed.clone()) {
            lead.cursor = committed;
            // Aggregates blocked by refusals in the abandoned transaction: the refused rows
            // are set apart by id and block their aggregates again when they come.
            lead.parked = p.committed_parked.clone();
        }
    }

    /// Leaving the lead: on shutdown the open transaction is committed and recorded (or,
    /// when it cannot be, left to abort); when the leadership ended it is abandoned.
    async fn wind_up(&mut self, p: &mut Publishing, stopped: bool) {
        p.drop_ahead();
        if stopped && p.open.is_some() && self.lead.as_ref().is_some_and(|l| l.lease.holds()) {
            let timeout = Duration::from_millis(self.settings.message_timeout_ms.min(5_000));
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.commit(p, timeout)).await;
        }
        if p.committing.is_some() {
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, self.commit_outcome(p)).await;
        }
        if let Some(done) = p.recording.take() {
            if let Ok(Ok(Err(error))) = tokio::time::timeout(SHUTDOWN_GRACE, done).await {
                tracing::warn!(error = %error_chain(&error), "the last transaction was not recorded; it is sent again by the next leader");
            }
        }
        if let (Some(_), Some(producer)) =
            (p.open.take(), self.lead.as_ref().and_then(|l| l.producer()))
        {
            transaction::abort(producer, Duration::from_secs(1)).await;
        }
        self.step_down(stopped).await;
    }

    /// An empty page: a window with nothing new (the next one starts from its snapshot),
    /// a finished replay, or no parked row left to try. Settled with the open transaction
    /// when there is one (it must not be recorded before the rows sent before it), else
    /// written down now (an idle window only now and then). True when there may be more
    /// to do at once.
    async fn idle(&mut self, page: Page, p: &mut Publishing) -> super::Result<bool> {
        if p.open.is_none() {
            // Nothing is written down past a transaction whose commit is under way.
            match self.commit_outcome(p).await {
                Outcome::Committed => {}
                // Back to the last commit: this page is of no use.
                Outcome::Failed => return Ok(true),
                Outcome::NotLeader => return Err(Error::NotLeader),
            }
        }
        let lead = self.lead.as_mut().ok_or(Error::NotLeader)?;
        let more = match &page.source {
            Source::Window(snapshot) => {
                let continued = lead.cursor.window.is_some();
                if !continued && lead.cursor.published == *snapshot {
                    return Ok(false);
                }
                continued
            }
            Source::Replay(_) => true,
            Source::Parked => return Ok(true),
        };
        let sent = Sent {
            page,
            parked: Vec::new(),
        };
        let (settled, _) = settle(lead, &sent);
        let epoch = lead.lease.epoch;
        match p.open.as_mut() {
            Some(open) => open.settled.merge(settled),
            None => {
                p.committed = Some(lead.cursor.clone());
                if more || p.recorded_idle.elapsed() >= IDLE_RECORD {
                    p.recorded_idle = Instant::now();
                    if !self.recorded(p.recording.take()).await {
                        return Err(Error::NotLeader);
                    }
                    record(&self.pool, epoch, &settled).await?;
                }
            }
        }
        Ok(more)
    }

    async fn reload_parked(&mut self) -> super::Result<()> {
        let client = self.pool.get().await?;
        let parked = super::store::parked_aggregates(&client).await?;
        if let Some(lead) = self.lead.as_mut() {
            lead.parked = parked.into_iter().collect();
        }
        Ok(())
    }

    /// Waits for a recording; false when leadership must end (fenced, or the database's
    /// cursor is behind this relay's).
    async fn recorded(&mut self, done: Option<tokio::task::JoinHandle<super::Result<()>>>) -> bool {
        let Some(done) = done else { return true };
        match done.await {
            Ok(Ok(())) => true,
            Ok(Err(error)) => {
                tracing::warn!(error = %error_chain(&error), "recording a transaction failed; starting again from the database's cursor");
                false
            }
            Err(error) => {
                tracing::warn!(%error, "the recording task failed");
                false
            }
        }
    }

    /// Waits `wait`, or until a notification comes or the lease ends.
    async fn wait(&self, stop: &Stop, wakeups: &Wakeups, lease: &Lease, wait: Duration) -> Woken {
        tokio::select! {
            () = stop.clone() => Woken::Stop,
            () = lease.ended() => Woken::LeaseEnded,
            () = wakeups.notified() => Woken::Notified,
            () = tokio::time::sleep(wait) => Woken::Timer,
        }
    }
}
