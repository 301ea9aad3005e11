//! The relay's SQL: the pages it reads (a window of new rows, a replay, the parked rows)
//! and the one statement that records what Kafka acknowledged.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::types::{FromSql, Type};

use crate::bookkeeping::Cursor;

/// One outbox row as the relay publishes it: the payload and headers as their JSON text
/// (the columns PostgreSQL printed when the row was written), never parsed.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub aggregate_id: String,
    pub topic: String,
    pub payload: Vec<u8>,
    pub headers: Vec<u8>,
    pub created_at: DateTime<Utc>,
}

impl OutboxRow {
    fn from_row(row: &tokio_postgres::Row, first: usize) -> Self {
        OutboxRow {
            id: row.get(first),
            aggregate_id: row.get(first + 1),
            topic: row.get(first + 2),
            payload: row.get::<_, Bytes>(first + 3).0,
            headers: row.get::<_, Bytes>(first + 4).0,
            created_at: row.get(first + 5),
        }
    }
}

/// A `text` value as its bytes (no UTF-8 check: they go to Kafka as they are).
struct Bytes(Vec<u8>);

impl<'a> FromSql<'a> for Bytes {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Bytes(raw.to_vec()))
    }

    tokio_postgres::types::accepts!(TEXT);
}

/// The outbox columns the relay reads, as a literal (for `concat!`): the payload and
/// headers as the text printed when the row was written (reading `jsonb` prints it anew
/// each time, three times the cost of the rest of a page).
macro_rules! columns {
    () => {
        "id, aggregate_id, topic, payload_text, headers_text, created_at"
    };
}
const COLUMNS: &str = columns!();

/// [`COLUMNS`] of the outbox row named `alias` in a join.
fn outbox_columns(alias: &str) -> String {
    COLUMNS
        .split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The next rows of a window, in id order: those whose transaction is visible in the
/// window's snapshot (`$1`; a new window takes the statement's own, and returns it) but
/// not in the published one (`$2`), above `$3` (the window's progress). Rows at or below
/// the high water (`$4`) can only be late commits: transactions still open when the
/// published snapshot was taken or begun after it, found through the transaction index
/// ([`crate::bookkeeping::unseen_rows`]), and only looked for while `$6` says some may
/// be left: the first page of a window finds them all unless there are more than a page
/// of them. Rows above the high water are new, found by the primary key.
///
/// Built once, on first use. The relay runs it with generic plans (see
/// [`crate::relay::SESSION`]): planning it afresh for each page would cost more than
/// running it.
static WINDOW_SQL: LazyLock<String> = LazyLock::new(window_sql);

/// The window's late rows: when asked for (`$6`), those between the window's start and the
/// high water (`$3`, `$4`; the id written as `$id`) that the published snapshot did not
/// see and the window's does.
macro_rules! late_rows {
    ($id:literal) => {
        concat!(
            "$6::boolean AND $3::bigint < $4::bigint AND ",
            $id,
            " > $3 AND ",
            $id,
            " <= $4 \
             AND NOT pg_visible_in_snapshot(o.xact_id, s.published) \
             AND pg_visible_in_snapshot(o.xact_id, s.snap)"
        )
    };
}

fn window_sql() -> String {
    // `s` is evaluated once (`OFFSET 0` keeps it a subquery of its own): folded into the
    // row filters, `pg_current_snapshot()` and the text-to-snapshot casts ran for every
    // row looked at. The late rows of transactions begun after the published snapshot are
    // found by the transaction index alone (their ids are written `o.id + 0` there): a
    // generic plan made while the outbox was nearly empty chose the primary key, and then
    // walked every id up to the high water for each new window (1.5 ms a window at
    // 10,000 rows). Those of transactions open in it keep the id range in the index
    // condition (`xact_id = xid AND id in range`), which a transaction of many rows needs.
    format!(
        "SELECT s.snap::text, o.* \
         FROM (SELECT coalesce($1::text::pg_snapshot, pg_current_snapshot()) AS snap, \
                      $2::text::pg_snapshot AS published \
               OFFSET 0) s \
         LEFT JOIN LATERAL ( \
            {late} \
            UNION ALL \
            (SELECT {COLUMNS} FROM users.outbox \
              WHERE id > greatest($3, $4) \
                AND NOT pg_visible_in_snapshot(xact_id, s.published) \
                AND pg_visible_in_snapshot(xact_id, s.snap) \
              ORDER BY id LIMIT $5) \
            ORDER BY id LIMIT $5 \
         ) o ON true",
        late = crate::bookkeeping::unseen_rows!(
            columns!(),
            "s.published",
            "s.snap",
            late_rows!("o.id"),
            late_rows!("o.id + 0"),
            "ORDER BY o.id + 0 LIMIT $5"
        ),
    )
}

/// The window query's text (`$1`-`$6` as [`window_page`] binds them), to look at its plan.
pub fn window_statement() -> &'static str {
    &WINDOW_SQL
}

/// The next page of the window `cursor` is in (or of a new one): its snapshot and rows.
pub async fn window_page<C: GenericClient + Sync>(
    client: &C,
    cursor: &Cursor,
    limit: i64,
) -> Result<(String, Vec<OutboxRow>), tokio_postgres::Error> {
    debug_assert!(
        cursor.window.is_some() || cursor.late,
        "a new window looks for late rows"
    );
    let statement = client.prepare_cached(&WINDOW_SQL).await?;
    let (snapshot, after) = match &cursor.window {
        Some((snapshot, after)) => (Some(snapshot.as_str()), *after),
        None => (None, 0),
    };
    let rows = client
        .query(
            &statement,
            &[
                &snapshot,
                &cursor.published,
                &after,
                &cursor.high_water,
                &limit,
                &cursor.late,
            ],
        )
        .await?;
    let snapshot: String = rows
        .first()
        .map(|row| row.get(0))
        .unwrap_or_else(|| cursor.published.clone());
    let rows = rows
        .iter()
        .filter(|row| row.get::<_, Option<i64>>(1).is_some())
        .map(|row| OutboxRow::from_row(row, 1))
        .collect();
    Ok((snapshot, rows))
}

/// A replay under way: its request and its progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Replay {
    pub(crate) id: i64,
    pub(crate) after: i64,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    event_type: Option<String>,
    aggregate_id: Option<String>,
    up_to: i64,
    published: String,
    window: Option<String>,
    window_after: Option<i64>,
}

impl Replay {
    /// The same replay, on from `after`.
    pub(crate) fn from(&self, after: i64) -> Self {
        Self {
            after,
            ..self.clone()
        }
    }
}

const NEXT_REPLAY: &str = "SELECT id, after, since, until, event_type, aggregate_id, up_to, \
        published::text, window_snapshot::text, window_after \
    FROM users.outbox_replays WHERE finished_at IS NULL AND NOT (id = ANY($1)) \
    ORDER BY id LIMIT 1";

/// The oldest unfinished replay but those in `done` (finished, not recorded yet).
pub(crate) async fn next_replay<C: GenericClient + Sync>(
    client: &C,
    done: &[i64],
) -> Result<Option<Replay>, tokio_postgres::Error> {
    let statement = client.prepare_cached(NEXT_REPLAY).await?;
    Ok(client
        .query_opt(&statement, &[&done])
        .await?
        .map(|row| Replay {
            id: row.get(0),
            after: row.get(1),
            since: row.get(2),
            until: row.get(3),
            event_type: row.get(4),
            aggregate_id: row.get(5),
            up_to: row.get(6),
            published: row.get(7),
            window: row.get(8),
            window_after: row.get(9),
        }))
}

/// The next rows of a replay above `$1`: up to its `up_to` (`$2`), matching its filter
/// (`$3`-`$6`), published as of its request (`$7`-`$9`). Its values are parameters, not
/// a join, so that the rows are read in primary-key order.
/// Built once, on first use.
static REPLAY_SQL: LazyLock<String> = LazyLock::new(replay_sql);

fn replay_sql() -> String {
    format!(
        "SELECT {} FROM users.outbox o, \
            (SELECT $7::text::pg_snapshot AS published, $8::text::pg_snapshot AS window_snapshot, \
                    $9::bigint AS window_after) j \
         WHERE o.id > $1 AND o.id <= $2 \
           AND ($3::timestamptz IS NULL OR o.created_at >= $3) \
           AND ($4::timestamptz IS NULL OR o.created_at < $4) \
           AND ($5::text IS NULL OR o.event_type = $5) \
           AND ($6::text IS NULL OR o.aggregate_id = $6) \
           AND {} \
         ORDER BY o.id LIMIT $10",
        outbox_columns("o"),
        crate::bookkeeping::published_by!("o", "j"),
    )
}

pub(crate) async fn replay_page<C: GenericClient + Sync>(
    client: &C,
    replay: &Replay,
    limit: i64,
) -> Result<Vec<OutboxRow>, tokio_postgres::Error> {
    let statement = client.prepare_cached(&REPLAY_SQL).await?;
    let rows = client
        .query(
            &statement,
            &[
                &replay.after,
                &replay.up_to,
                &replay.since,
                &replay.until,
                &replay.event_type,
                &replay.aggregate_id,
                &replay.published,
                &replay.window,
                &replay.window_after,
                &limit,
            ],
        )
        .await?;
    Ok(rows.iter().map(|row| OutboxRow::from_row(row, 0)).collect())
}

/// Built once, on first use.
static PARKED_SQL: LazyLock<String> = LazyLock::new(parked_sql);

fn parked_sql() -> String {
    format!(
        "SELECT {} FROM users.outbox_parked p JOIN users.outbox o ON o.id = p.outbox_id \
         ORDER BY o.id LIMIT $1",
        outbox_columns("o"),
    )
}

/// The parked rows, oldest first.
pub(crate) async fn parked_page<C: GenericClient + Sync>(
    client: &C,
    limit: i64,
) -> Result<Vec<OutboxRow>, tokio_postgres::Error> {
    let statement = client.prepare_cached(&PARKED_SQL).await?;
    let rows = client.query(&statement, &[&limit]).await?;
    Ok(rows.iter().map(|row| OutboxRow::from_row(row, 0)).collect())
}

/// (A parked row retention removed since, if one ever is, blocks nobody.)
const PARKED_AGGREGATES: &str = "SELECT DISTINCT p.aggregate_id FROM users.outbox_parked p \
    JOIN users.outbox o ON o.id = p.outbox_id";

/// The aggregates that have parked rows: their new rows wait behind them.
pub(crate) async fn parked_aggregates<C: GenericClient + Sync>(
    client: &C,
) -> Result<Vec<String>, tokio_postgres::Error> {
    let statement = client.prepare_cached(PARKED_AGGREGATES).await?;
    let rows = client.query(&statement, &[]).await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// What one Kafka transaction settled, to be recorded.
#[derive(Debug, Clone, Default)]
pub(crate) struct Settled {
    /// The cursor after the transaction (when it held window pages).
    pub(crate) cursor: Option<Cursor>,
    /// Replays' progress: (replay, last id sent, rows sent, finished).
    pub(crate) replays: Vec<(i64, i64, i64, bool)>,
    /// Rows set apart: (id, aggregate, why), each id once.
    pub(crate) parked: Vec<(i64, String, String)>,
    /// Parked rows now published.
    pub(crate) released: Vec<i64>,
    /// Rows Kafka acknowledged: new ones, replayed ones.
    pub(crate) published: i64,
    pub(crate) replayed: i64,
}

impl Settled {
    /// What `self` and then `later` settled, as one.
    pub(crate) fn merge(&mut self, later: Settled) {
        if later.cursor.is_some() {
            self.cursor = later.cursor;
        }
        for (id, after, sent, done) in later.replays {
            match self.replays.iter_mut().find(|(r, ..)| *r == id) {
                Some(replay) => *replay = (id, after, replay.2 + sent, done),
                None => self.replays.push((id, after, sent, done)),
            }
        }
        for parked in later.parked {
            // The same row set apart twice in one transaction (two replays of it): once.
            match self.parked.iter_mut().find(|(id, ..)| *id == parked.0) {
                Some(earlier) => *earlier = parked,
                None => self.parked.push(parked),
            }
        }
        self.released.extend(later.released);
        self.published += later.published;
        self.replayed += later.replayed;
    }
}

/// Records a settled transaction in ONE statement (one transaction, one round trip),
/// only while `$1` is still the leadership's epoch: the state row is updated first, and
/// every other change is made only if it was. Committed asynchronously: a bookkeeping
/// write lost in a crash of PostgreSQL only makes the relay send those rows again.
const RECORD: &str = "
    WITH state AS (
        UPDATE users.outbox_relay SET
            published = coalesce($2::text::pg_snapshot, published),
            window_snapshot = CASE WHEN $2::text IS NULL THEN window_snapshot
                                   ELSE $3::text::pg_snapshot END,
            window_after = CASE WHEN $2::text IS NULL THEN window_after ELSE $4 END,
            high_water = greatest(high_water, coalesce($5::bigint, 0)),
            published_total = published_total + $6,
            replayed_total = replayed_total + $7,
            published_at = CASE WHEN $6 + $7 > 0 THEN now() ELSE published_at END
        WHERE epoch = $1
        RETURNING epoch
    ), parked AS (
        INSERT INTO users.outbox_parked (outbox_id, aggregate_id, error)
        SELECT * FROM unnest($8::bigint[], $9::text[], $10::text[])
        WHERE EXISTS (SELECT 1 FROM state)
        ON CONFLICT (outbox_id) DO UPDATE SET
            attempts = users.outbox_parked.attempts + 1,
            error = EXCLUDED.error,
            tried_at = now()
    ), released AS (
        DELETE FROM users.outbox_parked
        WHERE outbox_id = ANY($11) AND EXISTS (SELECT 1 FROM state)
    ), replay AS (
        UPDATE users.outbox_replays r SET
            after = greatest(r.after, u.after),
            sent = r.sent + u.sent,
            finished_at = coalesce(r.finished_at, CASE WHEN u.done THEN now() END)
        FROM unnest($12::bigint[], $13::bigint[], $14::bigint[], $15::boolean[])
            AS u(id, after, sent, done)
        WHERE r.id = u.id AND EXISTS (SELECT 1 FROM state)
    )
    SELECT (SELECT count(*) FROM state), set_config('synchronous_commit', 'off', true)";

/// Records `settled` if `epoch` still leads; `false` when another relay took over (this
/// one is fenced and wrote nothing).
pub(crate) async fn record<C: GenericClient + Sync>(
    client: &C,
    epoch: i64,
    settled: &Settled,
) -> Result<bool, tokio_postgres::Error> {
    let statement = client.prepare_cached(RECORD).await?;
    let (published, window, after, high_water) = match &settled.cursor {
        Some(cursor) => (
            Some(cursor.published.as_str()),
            cursor.window.as_ref().map(|(s, _)| s.as_str()),
            cursor.window.as_ref().map(|(_, a)| *a),
            Some(cursor.high_water),
        ),
        None => (None, None, None, None),
    };
    let ids: Vec<i64> = settled.parked.iter().map(|(id, _, _)| *id).collect();
    let aggregates: Vec<&str> = settled.parked.iter().map(|(_, a, _)| a.as_str()).collect();
    let errors: Vec<&str> = settled.parked.iter().map(|(_, _, e)| e.as_str()).collect();
    let replays: Vec<i64> = settled.replays.iter().map(|r| r.0).collect();
    let replay_after: Vec<i64> = settled.replays.iter().map(|r| r.1).collect();
    let replay_sent: Vec<i64> = settled.replays.iter().map(|r| r.2).collect();
    let finished: Vec<bool> = settled.replays.iter().map(|r| r.3).collect();
    let row = client
        .query_one(
            &statement,
            &[
                &epoch,
                &published,
                &window,
                &after,
                &high_water,
                &settled.published,
                &settled.replayed,
                &ids,
                &aggregates,
                &errors,
                &settled.released,
                &replays,
                &replay_after,
                &replay_sent,
                &finished,
            ],
        )
        .await?;
    Ok(row.get::<_, i64>(0) == 1)
}

/// Records, for the leadership `epoch`, that the rows up to `cursor` are published,
/// outside any Kafka transaction. For the benchmark only, which measures the database's
/// own limit with it (reading pages and recording them, with no broker in between): a
/// relay never records what Kafka did not commit.
pub async fn record_cursor<C: GenericClient + Sync>(
    client: &C,
    epoch: i64,
    cursor: &Cursor,
    rows: i64,
) -> Result<bool, tokio_postgres::Error> {
    let settled = Settled {
        cursor: Some(cursor.clone()),
        published: rows,
        ..Settled::default()
    };
    record(client, epoch, &settled).await
}
