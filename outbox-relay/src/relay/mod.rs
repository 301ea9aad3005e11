//! The relay engine. While it holds the leadership lease it reads the outbox a page at a
//! time (a visibility window of new rows, a replay, or the parked rows) and hands the
//! rows to a Kafka transaction; after Kafka committed the transaction it records how far
//! it got in ONE statement on the outbox's state row. Nothing counts as published before
//! Kafka's commit; a crash between the commit and that statement only sends the rows
//! again (Kafka may hold duplicates, never gaps).
//!
//! Tests and tools drive it step by step ([`Relay::relay_once`], or [`Relay::next_page`] +
//! [`Relay::send`] + [`Relay::record`]), a Kafka transaction per page; the process runs
//! [`Relay::run`], which keeps one transaction open across pages and commits it every
//! `commit_interval` (once Kafka acknowledged its rows, the commit goes on while the next
//! transaction, on the other producer, takes new rows), and adds the standby loop, LISTEN
//! wake-ups, retention, the parked rows' retries, and reads the next page and records the
//! last transaction while rows go out.

pub mod producer;
mod run;
pub mod store;
mod transaction;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;

use crate::bookkeeping::Cursor;
use crate::leader::{self, Lease};
use platform::db::DbConfig;
use platform::kafka::KafkaContext;
use producer::TxProducer;
pub use producer::{create_producer, create_producer_with, Producer, ProducerSettings};
pub use store::OutboxRow;
use store::{Replay, Settled};
use transaction::Ended;

pub(crate) const M_PUBLISHED: &str = "outbox_published_total";
pub(crate) const M_FAILURES: &str = "outbox_publish_failures_total";
pub(crate) const M_IS_LEADER: &str = "outbox_relay_is_leader";
pub(crate) const M_LATENCY: &str = "outbox_commit_to_ack_seconds";
pub(crate) const M_BACKLOG: &str = "outbox_backlog";
pub(crate) const M_OLDEST: &str = "outbox_oldest_unpublished_age_seconds";
pub(crate) const M_DELIVERY: &str = "outbox_kafka_delivery_seconds";
pub(crate) const M_PARKED: &str = "outbox_parked";
pub(crate) const M_TAKEOVERS: &str = "outbox_relay_takeovers_total";

/// The families the relay records (their `# HELP` lines).
pub const METRICS: &[platform::metrics::Family] = {
    use platform::metrics::Kind::{Counter, Gauge, Histogram};
    &[
        (
            M_PUBLISHED,
            Counter,
            None,
            "Outbox rows Kafka acknowledged (new, replayed and released parked rows).",
        ),
        (
            M_FAILURES,
            Counter,
            None,
            "Kafka transactions that failed (retried later) and rows Kafka refused (parked).",
        ),
        (
            M_IS_LEADER,
            Gauge,
            None,
            "1 while this relay holds the leadership lease, else 0.",
        ),
        (
            M_TAKEOVERS,
            Counter,
            None,
            "Times this relay took the leadership lease.",
        ),
        (
            M_LATENCY,
            Histogram,
            Some(platform::metrics::Unit::Seconds),
            "From the outbox row's creation to Kafka's commit of its transaction.",
        ),
        (
            M_DELIVERY,
            Histogram,
            Some(platform::metrics::Unit::Seconds),
            "From handing a page to the producer to the commit of its Kafka transaction.",
        ),
        (
            M_BACKLOG,
            Gauge,
            None,
            "Outbox rows not published yet (parked ones included).",
        ),
        (
            M_OLDEST,
            Gauge,
            Some(platform::metrics::Unit::Seconds),
            "Age of the oldest unpublished outbox row.",
        ),
        (
            M_PARKED,
            Gauge,
            None,
            "Outbox rows Kafka refused, set apart.",
        ),
    ]
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database unavailable")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("database error")]
    Database(#[from] tokio_postgres::Error),
    #[error("Kafka: {0}")]
    Kafka(String),
    #[error("another relay holds the leadership lease")]
    NotLeader,
    #[error("fenced: another relay took the leadership over")]
    Fenced,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the relay works (`RELAY_BATCH_SIZE`, `RELAY_POLL_INTERVAL_MS`, `OUTBOX_RETENTION`,
/// `RELAY_LEASE_MS`, `RELAY_PARKED_RETRY_MS`, `RELAY_COMMIT_INTERVAL_MS`).
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// Rows read per page (and produced per Kafka transaction when driven step by step).
    pub batch_size: i64,
    /// The fallback poll when no notification arrives.
    pub poll_interval: Duration,
    /// Published rows older than this are purged; `None` keeps them.
    pub retention: Option<Duration>,
    /// How often the leader purges.
    pub retention_interval: Duration,
    /// Ids per purge statement (one short transaction each).
    pub purge_batch: i64,
    /// First and largest wait after a failed transaction or database error.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How long a leadership lease runs without renewal: the longest a standby waits for
    /// a leader that died.
    pub lease: Duration,
    /// How often the leader tries the parked rows again.
    pub parked_retry: Duration,
    /// How long the process keeps a Kafka transaction open before committing it (it
    /// commits sooner once it holds `transaction_rows`, or a page of rows or more when it
    /// has caught up with the outbox): consumers reading committed records see a row at
    /// the latest then, those reading uncommitted ones at once.
    pub commit_interval: Duration,
    pub transaction_rows: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch_size: 10_000,
            poll_interval: Duration::from_millis(500),
            retention: Some(Duration::from_secs(7 * 86_400)),
            retention_interval: Duration::from_secs(60),
            purge_batch: 10_000,
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            lease: Duration::from_secs(5),
            parked_retry: Duration::from_secs(60),
            commit_interval: Duration::from_millis(100),
            transaction_rows: 100_000,
        }
    }
}

/// What one page did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Rows read.
    pub claimed: usize,
    /// Rows Kafka acknowledged (committed in the page's transaction).
    pub published: usize,
    /// Rows set apart: refused by Kafka, or behind a refused row of their aggregate.
    pub parked: usize,
}

/// Live state other parts of the process (health, tests) look at.
#[derive(Debug, Default)]
pub struct RelayStatus {
    leader: AtomicBool,
    ready: AtomicBool,
    published: AtomicU64,
}

impl RelayStatus {
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }

    /// Whether this relay leads with its producer ready for transactions.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Rows this relay published and recorded since it started.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::SeqCst)
    }

    pub(crate) fn add_published(&self, rows: u64) {
        self.published.fetch_add(rows, Ordering::SeqCst);
    }

    pub(crate) fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::SeqCst);
        if !leader {
            self.ready.store(false, Ordering::SeqCst);
        }
        metrics::gauge!(M_IS_LEADER).set(if leader { 1.0 } else { 0.0 });
    }
}

/// Where a page comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// New rows: the window whose snapshot this is.
    Window(String),
    Replay(Replay),
    Parked,
}

/// Rows read, in the order they are produced.
#[derive(Debug)]
pub struct Page {
    source: Source,
    pub rows: Vec<OutboxRow>,
    /// As many rows as asked for: more may follow.
    full: bool,
    /// The rows' Kafka headers (and, while spans are exported, their trace contexts),
    /// made as the page is read (while the page before it is handed to librdkafka);
    /// taken when a row is sent.
    headers: Vec<Option<transaction::Prepared>>,
    /// What to read after it, if more may follow (taken by whoever reads it).
    next: Option<Plan>,
}

impl Page {
    /// No rows, from nowhere in particular.
    fn empty() -> Self {
        Page::new(Source::Parked, Vec::new(), false, None)
    }

    /// A page read with `plan` (`None`: nothing follows it), its rows' Kafka headers built
    /// and the plan of the page after it made.
    fn new(source: Source, rows: Vec<OutboxRow>, full: bool, plan: Option<&Plan>) -> Self {
        let headers = rows
            .iter()
            .map(|row| Some(transaction::prepare(&row.headers)))
            .collect();
        let mut page = Page {
            source,
            rows,
            full,
            headers,
            next: None,
        };
        page.next = plan.and_then(|plan| plan.after(&page));
        page
    }

    fn ids(&self) -> Vec<i64> {
        self.rows.iter().map(|r| r.id).collect()
    }
}

/// A page Kafka committed (or refused rows of), ready to be recorded.
#[derive(Debug)]
pub struct Sent {
    page: Page,
    /// Rows set apart, with why: (index in the page, reason).
    parked: Vec<(usize, String)>,
}

/// What the leader holds.
struct Lead {
    lease: Lease,
    transactional_id: String,
    /// Two producers, initialised for transactions, that take turns: each transaction
    /// goes to the one that did not carry the last, whose commit Kafka's coordinator may
    /// still be completing (a transaction that adds a partition meanwhile is refused with
    /// `CONCURRENT_TRANSACTIONS`, and librdkafka tries again only 20 ms later). `None`
    /// until it is (or after a failure that left them unusable).
    producers: [Option<Arc<TxProducer>>; 2],
    /// Which of them carries the next transaction.
    turn: usize,
    cursor: Cursor,
    /// Aggregates with parked rows: their new rows wait behind them.
    parked: HashSet<String>,
    parked_tried: Instant,
}

impl Lead {
    /// The producer for the next transaction.
    fn producer(&self) -> Option<Arc<TxProducer>> {
        self.producers[self.turn].clone()
    }

    /// A transaction committed: the other producer carries the next.
    fn committed(&mut self) {
        self.turn = 1 - self.turn;
    }
}

pub struct Relay {
    db: DbConfig,
    pool: Pool,
    settings: ProducerSettings,
    kafka: KafkaContext,
    config: RelayConfig,
    status: Arc<RelayStatus>,
    /// Who this relay is, in the state row's `leader`.
    holder: String,
    lead: Option<Lead>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("db", &self.db)
            .field("config", &self.config)
            .field("holder", &self.holder)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// The relay's sessions plan each statement once: it runs the same few statements for
/// every page, written so that their generic plans read through the right index (the
/// window query above all, [`store::window_page`]), and planning one afresh each time
/// would cost more than running it.
pub const SESSION: &str = "SET plan_cache_mode = force_generic_plan";

impl Relay {
    /// A relay over the database `db` (its own small pool; the lease and LISTEN use
    /// dedicated connections) publishing with a producer of `settings`.
    pub fn new(db: DbConfig, settings: ProducerSettings, config: RelayConfig) -> Self {
        let pool = DbConfig {
            db_pool_size: 3,
            ..db.clone()
        }
        .pool_with_session(SESSION);
        let holder = format!(
            "{}/{}/{}",
            hostname(),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Self {
            db,
            pool,
            settings,
            kafka: KafkaContext::default(),
            config,
            status: Arc::default(),
            holder,
            lead: None,
        }
    }

    /// Reports the producer's broker errors and refusals through `kafka` (the process's
    /// readiness watches it).
    pub fn with_kafka_context(mut self, kafka: KafkaContext) -> Self {
        self.kafka = kafka;
        self
    }

    pub fn status(&self) -> Arc<RelayStatus> {
        self.status.clone()
    }

    /// One page: take the lease if nobody holds it, read, produce in one Kafka
    /// transaction, record.
    #[tracing::instrument(level = "debug", skip_all, err)]
    pub async fn relay_once(&mut self) -> Result<BatchOutcome> {
        loop {
            let page = self.next_page().await?;
            if page.rows.is_empty() {
                // A window that ended on a page boundary, a replay finished, or no parked
                // row left: on to the next page. A new window with nothing in it is the end.
                let done = matches!(page.source, Source::Window(_))
                    && self
                        .lead
                        .as_ref()
                        .is_some_and(|l| l.cursor.window.is_none());
                self.finish_empty(page).await?;
                if done {
                    return Ok(BatchOutcome::default());
                }
                continue;
            }
            let sent = self.send(page).await?;
            return self.record(sent).await;
        }
    }

    /// Becomes the leader if nobody else is (renewing the lease of a leader driven step
    /// by step), and readies the producer.
    async fn ensure_leading(&mut self) -> Result<()> {
        if let Some(lead) = &self.lead {
            if lead.lease.holds_for(lead.lease.ttl() / 2) {
                return self.ensure_producer().await;
            }
            let asked = Instant::now();
            let client = self.pool.get().await?;
            if leader::renew(&**client, lead.lease.epoch, lead.lease.ttl()).await? {
                lead.lease.renewed(asked);
                return self.ensure_producer().await;
            }
            self.step_down(false).await;
            return Err(Error::Fenced);
        }
        if !self.try_lead().await? {
            return Err(Error::NotLeader);
        }
        self.ensure_producer().await
    }

    /// Tries once to take the lease; on success reads the cursor and the parked
    /// aggregates.
    async fn try_lead(&mut self) -> Result<bool> {
        let client = self.pool.get().await?;
        let asked = Instant::now();
        let Some(acquired) =
            leader::try_acquire(&**client, &self.holder, self.config.lease).await?
        else {
            return Ok(false);
        };
        let parked = store::parked_aggregates(&client).await?;
        tracing::info!(epoch = acquired.epoch, holder = %self.holder, "this relay is now the leader");
        metrics::counter!(M_TAKEOVERS).increment(1);
        self.lead = Some(Lead {
            lease: Lease::new(acquired.epoch, self.config.lease, asked),
            transactional_id: acquired.transactional_id,
            producers: [None, None],
            turn: 0,
            cursor: acquired.cursor,
            parked: parked.into_iter().collect(),
            parked_tried: Instant::now(),
        });
        self.status.set_leader(true);
        Ok(true)
    }

    /// Creates the two transactional producers and initialises them, which fences every
    /// earlier producer of this outbox (and aborts a transaction one left open).
    async fn ensure_producer(&mut self) -> Result<()> {
        let lead = self.lead.as_mut().ok_or(Error::NotLeader)?;
        let timeout = Duration::from_millis(self.settings.message_timeout_ms.min(30_000));
        let ids = producer::transactional_ids(&lead.transactional_id);
        for (slot, transactional_id) in lead.producers.iter_mut().zip(ids) {
            if slot.is_some() {
                continue;
            }
            let producer = Arc::new(
                producer::create_transactional(
                    &self.settings,
                    &transactional_id,
                    self.kafka.clone(),
                )
                .map_err(|e| Error::Kafka(e.to_string()))?,
            );
            let init = producer.clone();
            tokio::task::spawn_blocking(move || {
                use rdkafka::producer::Producer as _;
                init.init_transactions(timeout)
            })
            .await
            .map_err(|e| Error::Kafka(e.to_string()))?
            .map_err(|e| Error::Kafka(format!("cannot initialise transactions: {e}")))?;
            *slot = Some(producer);
        }
        self.status.ready.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Gives the leadership up: the producer goes (with whatever it held) and, when
    /// `release`, the lease too, so that a standby takes over at once.
    async fn step_down(&mut self, release: bool) {
        let Some(lead) = self.lead.take() else { return };
        self.status.set_leader(false);
        for producer in lead.producers.iter().flatten() {
            use rdkafka::producer::{Producer as _, PurgeConfig};
            producer.purge(PurgeConfig::default().queue().inflight());
        }
        if release {
            if let Ok(client) = self.pool.get().await {
                if let Err(error) = leader::release(&**client, lead.lease.epoch).await {
                    tracing::warn!(%error, "cannot release the leadership lease");
                }
            }
        }
    }

    /// Gives the lease up so that a standby takes over at once (a relay stopping, or a
    /// test done with it).
    pub async fn release(&mut self) {
        self.step_down(true).await;
    }

    /// The next page: parked rows when their retry is due, else the oldest pending replay,
    /// else the window of new rows.
    pub async fn next_page(&mut self) -> Result<Page> {
        self.ensure_leading().await?;
        let plan = self.plan(true, &[]).await?;
        self.fetch(plan).await
    }

    /// What to read next (without asking the database about replays unless `replays`);
    /// `in_flight` is the progress of replays whose pages are in the open transaction
    /// (not recorded yet).
    async fn plan(&mut self, replays: bool, in_flight: &[(i64, i64, i64, bool)]) -> Result<Plan> {
        let lead = self.lead.as_mut().ok_or(Error::NotLeader)?;
        if !lead.parked.is_empty() && lead.parked_tried.elapsed() >= self.config.parked_retry {
            lead.parked_tried = Instant::now();
            return Ok(Plan::Parked);
        }
        if replays {
            let client = self.pool.get().await?;
            let done: Vec<i64> = in_flight
                .iter()
                .filter(|(.., done)| *done)
                .map(|(id, ..)| *id)
                .collect();
            if let Some(replay) = store::next_replay(&client, &done).await? {
                let replay = match in_flight.iter().find(|(id, ..)| *id == replay.id) {
                    Some((_, after, ..)) => replay.from(*after),
                    None => replay,
                };
                return Ok(Plan::Replay(replay));
            }
        }
        Ok(Plan::Window(lead.cursor.clone()))
    }

    async fn fetch(&self, plan: Plan) -> Result<Page> {
        fetch(&self.pool, plan, self.config.batch_size).await
    }

    /// A window with no rows: the next one starts from its snapshot; a replay with no
    /// more rows is finished.
    async fn finish_empty(&mut self, page: Page) -> Result<()> {
        match &page.source {
            Source::Window(_) | Source::Replay(_) => {
                let sent = Sent {
                    page,
                    parked: Vec::new(),
                };
                self.record(sent).await.map(|_| ())
            }
            Source::Parked => Ok(()),
        }
    }

    /// Produces `page` in a Kafka transaction of its own and waits for its commit. Rows
    /// Kafka refuses for themselves (too large, an unknown topic, ...) are set apart with
    /// the later rows of their aggregates, and the rest is committed; when the broker is
    /// away nothing is committed and the error says why.
    pub async fn send(&mut self, page: Page) -> Result<Sent> {
        self.ensure_leading().await?;
        let lead = self.lead.as_ref().ok_or(Error::NotLeader)?;
        if !lead.lease.holds_for(self.config.lease / 5) {
            return Err(Error::NotLeader);
        }
        let producer = lead.producer().ok_or(Error::NotLeader)?;
        let blocked = match page.source {
            Source::Parked => HashSet::new(),
            _ => lead.parked.clone(),
        };
        let timeout = self.kafka_timeout();
        let mut set_apart = HashMap::new();
        let mut page = page;
        loop {
            if let Err(error) = transaction::begin(&producer) {
                return Err(self.failed(error.to_string(), transaction::is_fatal(&error)));
            }
            let (handed, _) =
                transaction::hand_over(producer.clone(), page, blocked.clone(), set_apart.clone())
                    .await;
            page = handed.page;
            if let Some(error) = handed.broken {
                match transaction::abort(producer.clone(), timeout).await {
                    Ended::Failed { refused, .. } if !refused.is_empty() => {
                        // A refused row broke it: again without that row.
                        set_apart.extend(refused);
                        continue;
                    }
                    Ended::Failed { fatal: true, .. } => {
                        return Err(self.failed(error.to_string(), true));
                    }
                    _ => return Err(self.failed(error.to_string(), transaction::is_fatal(&error))),
                }
            }
            match transaction::finish(producer.clone(), timeout).await {
                Ended::Committed => {
                    if let Some(lead) = self.lead.as_mut() {
                        lead.committed();
                    }
                    return Ok(Sent {
                        page,
                        parked: handed.parked,
                    });
                }
                Ended::Failed {
                    refused,
                    error,
                    fatal,
                } if refused.is_empty() => {
                    return Err(self.failed(error.unwrap_or_default(), fatal));
                }
                // Kafka refused rows at delivery: again without them.
                Ended::Failed { refused, .. } => set_apart.extend(refused),
            }
        }
    }

    /// How long a transaction's step may take: a message's timeout, and then some.
    fn kafka_timeout(&self) -> Duration {
        Duration::from_millis(self.settings.message_timeout_ms + 5_000)
    }

    /// A failed transaction: counted, and a producer it left unusable (fenced by a newer
    /// leader, or its state lost) is never used again.
    fn failed(&mut self, error: String, fatal: bool) -> Error {
        metrics::counter!(M_FAILURES).increment(1);
        if fatal {
            if let Some(lead) = self.lead.as_mut() {
                lead.producers = [None, None];
            }
            self.status.ready.store(false, Ordering::SeqCst);
        }
        Error::Kafka(error)
    }

    /// Records what `sent` settled, if this relay still leads (else it writes nothing and
    /// steps down: [`Error::Fenced`]).
    pub async fn record(&mut self, sent: Sent) -> Result<BatchOutcome> {
        let lead = self.lead.as_mut().ok_or(Error::NotLeader)?;
        let epoch = lead.lease.epoch;
        let (settled, outcome) = settle(lead, &sent);
        match record(&self.pool, epoch, &settled).await {
            Ok(()) => {}
            Err(error) => {
                // The cursor in memory is ahead of the database's now: start again from
                // the database's (what was not recorded is sent again).
                self.step_down(false).await;
                return Err(error);
            }
        }
        if matches!(sent.page.source, Source::Parked) {
            let client = self.pool.get().await?;
            let parked = store::parked_aggregates(&client).await?;
            if let Some(lead) = self.lead.as_mut() {
                lead.parked = parked.into_iter().collect();
            }
        }
        acknowledged(&sent, &outcome, epoch);
        self.status.add_published(outcome.published as u64);
        Ok(outcome)
    }
}

/// What a page came to.
fn outcome_of(sent: &Sent) -> BatchOutcome {
    BatchOutcome {
        claimed: sent.page.rows.len(),
        published: sent.page.rows.len() - sent.parked.len(),
        parked: sent.parked.len(),
    }
}

/// Counts what Kafka acknowledged (the metrics; the status counts once it is recorded).
fn acknowledged(sent: &Sent, outcome: &BatchOutcome, epoch: i64) {
    tracing::debug!(
        epoch,
        rows = outcome.published,
        parked = outcome.parked,
        "page published: Kafka committed its transaction"
    );
    metrics::counter!(M_PUBLISHED).increment(outcome.published as u64);
    if outcome.parked > 0 {
        metrics::counter!(M_FAILURES).increment(outcome.parked as u64);
        tracing::warn!(
            parked = outcome.parked,
            reason = %sent.parked.first().map(|(_, r)| r.as_str()).unwrap_or(""),
            "rows set apart: Kafka refused them (later rows of their aggregates wait behind)"
        );
    }
    let now = chrono::Utc::now();
    let latency = metrics::histogram!(M_LATENCY);
    let parked: HashSet<usize> = sent.parked.iter().map(|(i, _)| *i).collect();
    for (i, row) in sent.page.rows.iter().enumerate() {
        if !parked.contains(&i) {
            latency.record(
                (now - row.created_at)
                    .to_std()
                    .unwrap_or_default()
                    .as_secs_f64(),
            );
        }
    }
}

/// What to read.
#[derive(Debug, Clone)]
enum Plan {
    Window(Cursor),
    Replay(Replay),
    Parked,
}

impl Plan {
    /// The plan of the page after `page`, which this plan read, if more may follow it.
    fn after(&self, page: &Page) -> Option<Plan> {
        if !page.full {
            return None;
        }
        let last = page.rows.last()?.id;
        match (self, &page.source) {
            (Plan::Window(cursor), Source::Window(snapshot)) => {
                Some(Plan::Window(cursor.after_page(snapshot, &page.ids(), true)))
            }
            (Plan::Replay(replay), _) => Some(Plan::Replay(replay.from(last))),
            _ => None,
        }
    }
}

/// Records `settled` for the leadership `epoch`; [`Error::Fenced`] when another relay has
/// taken over (nothing was written).
async fn record(pool: &Pool, epoch: i64, settled: &Settled) -> Result<()> {
    let client = pool.get().await?;
    if store::record(&client, epoch, settled).await? {
        Ok(())
    } else {
        tracing::warn!(epoch, "fenced: another relay took over; stepping down");
        Err(Error::Fenced)
    }
}

async fn fetch(pool: &Pool, plan: Plan, limit: i64) -> Result<Page> {
    let client = pool.get().await?;
    let page = match &plan {
        Plan::Window(cursor) => {
            let (snapshot, rows) = store::window_page(&client, cursor, limit).await?;
            let full = rows.len() as i64 >= limit;
            Page::new(Source::Window(snapshot), rows, full, Some(&plan))
        }
        Plan::Replay(replay) => {
            let rows = store::replay_page(&client, replay, limit).await?;
            let full = rows.len() as i64 >= limit;
            Page::new(Source::Replay(replay.clone()), rows, full, Some(&plan))
        }
        Plan::Parked => {
            let rows = store::parked_page(&client, limit).await?;
            Page::new(Source::Parked, rows, false, None)
        }
    };
    Ok(page)
}

/// Moves the leader's cursor and parked set past `sent`, and says what to record.
fn settle(lead: &mut Lead, sent: &Sent) -> (Settled, BatchOutcome) {
    let page = &sent.page;
    let parked_at: HashSet<usize> = sent.parked.iter().map(|(i, _)| *i).collect();
    let acknowledged = page.rows.len() - parked_at.len();
    let mut settled = Settled {
        parked: sent
            .parked
            .iter()
            .map(|(i, why)| {
                let row = &page.rows[*i];
                (row.id, row.aggregate_id.clone(), why.clone())
            })
            .collect(),
        ..Settled::default()
    };
    for (_, aggregate, _) in &settled.parked {
        lead.parked.insert(aggregate.clone());
    }
    let last = page.rows.last().map(|r| r.id);
    match &page.source {
        Source::Window(snapshot) => {
            lead.cursor = lead.cursor.after_page(snapshot, &page.ids(), page.full);
            settled.cursor = Some(lead.cursor.clone());
            settled.published = acknowledged as i64;
        }
        Source::Replay(replay) => {
            settled.replays = vec![(
                replay.id,
                last.unwrap_or(replay.after),
                acknowledged as i64,
                !page.full,
            )];
            settled.replayed = acknowledged as i64;
        }
        Source::Parked => {
            settled.released = page
                .rows
                .iter()
                .enumerate()
                .filter(|(i, _)| !parked_at.contains(i))
                .map(|(_, row)| row.id)
                .collect();
            settled.published = acknowledged as i64;
        }
    }
    let outcome = BatchOutcome {
        claimed: page.rows.len(),
        published: acknowledged,
        parked: parked_at.len(),
    };
    (settled, outcome)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "relay".to_owned())
}
