//! What the relay has published, as the database records it: one row,
//! `users.outbox_relay`, instead of a column per outbox row.
//!
//! An outbox row is published when Kafka acknowledged it, which the state says as
//! snapshots: every row whose transaction is visible in `published` (the last finished
//! window), and, while a window is under way, the rows of that window up to
//! `window_after`; parked rows (set apart after Kafka refused them) are not. This module
//! holds that definition once, in SQL, for the relay, replay, retention and the user
//! service's dashboard.

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

/// SQL: whether outbox row `o` counts as published by the state row `r` (any relation with
/// the columns `published`, `window_snapshot` and `window_after`).
macro_rules! published_by {
    ($o:literal, $r:literal) => {
        concat!(
            "((pg_visible_in_snapshot(",
            $o,
            ".xact_id, ",
            $r,
            ".published) \
              OR (",
            $r,
            ".window_snapshot IS NOT NULL AND ",
            $o,
            ".id <= ",
            $r,
            ".window_after \
                  AND pg_visible_in_snapshot(",
            $o,
            ".xact_id, ",
            $r,
            ".window_snapshot))) \
             AND NOT EXISTS (SELECT 1 FROM users.outbox_parked p WHERE p.outbox_id = ",
            $o,
            ".id))"
        )
    };
}
pub(crate) use published_by;

/// SQL: the outbox rows `o` (`$cols` of them) whose transaction may be unseen in snapshot
/// `$snap` but is visible in the later snapshot `$now`, and that meet `$filter`: those of
/// transactions in progress at `$snap` (its xip list) and those of transactions begun
/// after it (up to `$now`'s xmax; these meet `$range_filter`, the same condition written
/// so that it offers the planner no other index). `NOT pg_visible_in_snapshot` in the
/// filters then keeps the rows really unseen. `$tail` ends each of the two selects (an
/// order and a limit).
///
/// Written so that even a generic plan reads only those rows, through the
/// `(xact_id, id)` index, however large the outbox: one lookup per transaction in
/// progress (behind an `OFFSET 0` fence, so a long transaction elsewhere costs one
/// lookup, not a scan) and one index range for the transactions since `$snap`. Ordering
/// a select by `o.id + 0` rather than `o.id` keeps the planner from walking the primary
/// key for the order instead (a range condition on `id` looks selective to a generic
/// plan, and then it reads every row up to the high water).
macro_rules! unseen_rows {
    ($cols:expr, $snap:literal, $now:literal, $filter:expr, $range_filter:expr, $tail:literal) => {
        concat!(
            "(SELECT ",
            $cols,
            " FROM pg_snapshot_xip(",
            $snap,
            ") AS x(xid) CROSS JOIN LATERAL (SELECT * FROM users.outbox o WHERE o.xact_id = x.xid AND ",
            $filter,
            " OFFSET 0) o ",
            $tail,
            ") UNION ALL (SELECT ",
            $cols,
            " FROM users.outbox o WHERE o.xact_id >= pg_snapshot_xmax(",
            $snap,
            ") AND o.xact_id < pg_snapshot_xmax(",
            $now,
            ") AND ",
            $range_filter,
            " ",
            $tail,
            ")"
        )
    };
}
// The relay's window query uses it too (built only with the relay's `kafka` feature).
#[cfg(feature = "kafka")]
pub(crate) use unseen_rows;

/// Not in the published snapshot, nor covered by the current window so far.
macro_rules! not_covered {
    () => {
        "NOT pg_visible_in_snapshot(o.xact_id, r.published) \
         AND NOT (r.window_snapshot IS NOT NULL AND o.id <= r.window_after \
                  AND pg_visible_in_snapshot(o.xact_id, r.window_snapshot))"
    };
}

/// The rows not published yet (committed ones; a transaction still open is not counted)
/// with their creation times: those past the published snapshot that the current window
/// has not covered, and the parked ones.
macro_rules! pending {
    () => {
        concat!(
            "SELECT o.created_at FROM users.outbox_relay r CROSS JOIN LATERAL (",
            unseen_rows!(
                "o.created_at",
                "r.published",
                "pg_current_snapshot()",
                not_covered!(),
                not_covered!(),
                ""
            ),
            ") o
    UNION ALL
    SELECT o.created_at FROM users.outbox_parked p JOIN users.outbox o ON o.id = p.outbox_id"
        )
    };
}

/// Rows replays still have to send.
macro_rules! replaying {
    () => {
        "SELECT coalesce(sum(greatest(rows - sent, 0)), 0)::bigint \
         FROM users.outbox_replays WHERE finished_at IS NULL"
    };
}

/// SQL: the number of rows the relay still has to send (one `bigint`), as
/// [`Backlog::rows`] counts them.
pub const BACKLOG_ROWS: &str = concat!(
    "WITH pending AS (",
    pending!(),
    ") SELECT (SELECT count(*) FROM pending) + (",
    replaying!(),
    ")"
);

const BACKLOG: &str = concat!(
    "WITH pending AS (",
    pending!(),
    ") SELECT (SELECT count(*) FROM pending) + (",
    replaying!(),
    "), (SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0) FROM pending), \
       (SELECT count(*) FROM users.outbox_parked), \
       (SELECT published_at FROM users.outbox_relay)"
);

/// The outbox's health as the dashboard and the relay's gauges show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Backlog {
    /// Rows the relay still has to send: not published yet (parked ones included), and
    /// what replays have yet to send again.
    pub rows: i64,
    /// Age of the oldest of them in seconds (0 when there is none).
    pub oldest_age_s: f64,
    /// Rows Kafka refused, set apart.
    pub parked: i64,
    /// When the relay last recorded a publication.
    pub last_published_at: Option<DateTime<Utc>>,
}

/// Reads the backlog. One statement, so one snapshot.
pub async fn backlog<C: GenericClient + Sync>(
    client: &C,
) -> Result<Backlog, tokio_postgres::Error> {
    let statement = client.prepare_cached(BACKLOG).await?;
    let row = client.query_one(&statement, &[]).await?;
    Ok(Backlog {
        rows: row.get(0),
        oldest_age_s: row.get(1),
        parked: row.get(2),
        last_published_at: row.get(3),
    })
}

/// The relay's state as a leader takes it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Every row visible in this snapshot is published (or parked).
    pub published: String,
    /// The window under way: its snapshot and the last id of it published.
    pub window: Option<(String, i64)>,
    /// The highest id published.
    pub high_water: i64,
    /// Whether rows of the window at or below the high water (late commits) may be left
    /// to read. Kept in memory only: a new window, or a leader taking a window over,
    /// looks for them.
    pub late: bool,
}

impl Cursor {
    /// The cursor after a page of its window (`snapshot`) holding the rows `ids` (in
    /// order): the window goes on past the page's last row while the page was `full`,
    /// else it is done and the next one starts from its snapshot.
    pub fn after_page(&self, snapshot: &str, ids: &[i64], full: bool) -> Cursor {
        let high_water = ids.iter().copied().fold(self.high_water, i64::max);
        match (full, ids.last()) {
            (true, Some(&last)) => Cursor {
                published: self.published.clone(),
                window: Some((snapshot.to_owned(), last)),
                high_water,
                // A page of nothing but late rows may have left some for the next.
                late: self.late && ids.iter().all(|id| *id <= self.high_water),
            },
            _ => Cursor {
                published: snapshot.to_owned(),
                window: None,
                high_water,
                late: true,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cursor;

    #[test]
    fn a_window_goes_on_after_a_full_page_and_late_rows_are_looked_for_while_they_fill_pages() {
        let start = Cursor {
            published: "10:10:".into(),
            window: None,
            high_water: 100,
            late: true,
        };
        // A full page of late rows (ids at or below the high water): more may follow.
        let late = start.after_page("20:20:", &[50, 60], true);
        assert_eq!(late.window, Some(("20:20:".into(), 60)));
        assert!(late.late);
        assert_eq!(late.published, "10:10:");
        // A full page that reaches new rows: every late row was in it.
        let on = late.after_page("20:20:", &[70, 101], true);
        assert!(!on.late);
        assert_eq!(on.high_water, 101);
        // A page that is not full ends the window.
        let done = on.after_page("20:20:", &[102], false);
        assert_eq!(
            (done.published.as_str(), done.window, done.high_water),
            ("20:20:", None, 102)
        );
        assert!(done.late, "a new window looks again");
    }

    #[test]
    fn the_published_predicate_names_its_relations() {
        let sql = published_by!("o", "r");
        assert!(sql.contains("pg_visible_in_snapshot(o.xact_id, r.published)"));
        assert!(sql.contains("o.id <= r.window_after"));
        assert!(sql.contains("p.outbox_id = o.id"));
    }
}
