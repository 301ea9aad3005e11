//! The idempotent inbox: records event ids and applies their effects in the caller's
//! transaction, so an event's effect and the fact that it was applied commit together.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::NaiveDate;
use deadpool_postgres::GenericClient;
use uuid::Uuid;

use crate::directory;
use crate::event::{Inbound, Kind, UserChange, UserRegistered};

/// One decoded event of a batch, with where it came from.
#[derive(Debug, Clone)]
pub struct Delivered<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub event: &'a Inbound,
}

/// What one batch changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Events applied for the first time.
    pub processed: u64,
    /// Deliveries of events already in the inbox (this batch or earlier).
    pub duplicates: u64,
    /// New events of a type without handler, recorded and skipped.
    pub unknown_types: u64,
    /// Poison records of this batch (already in the DLQ).
    pub dead_lettered: u64,
    /// User events at or below their user's version in the read model, skipped.
    pub stale_versions: u64,
    /// User events parked for a gap in their user's versions.
    pub held: u64,
    /// Events of erased users, skipped.
    pub erased_skipped: u64,
}

impl std::ops::Add for Applied {
    type Output = Applied;

    fn add(self, other: Applied) -> Applied {
        Applied {
            processed: self.processed + other.processed,
            duplicates: self.duplicates + other.duplicates,
            unknown_types: self.unknown_types + other.unknown_types,
            dead_lettered: self.dead_lettered + other.dead_lettered,
            stale_versions: self.stale_versions + other.stale_versions,
            held: self.held + other.held,
            erased_skipped: self.erased_skipped + other.erased_skipped,
        }
    }
}

const INSERT_PROCESSED: &str = "
    INSERT INTO consumer.processed_events (event_id, event_type, topic, partition, kafka_offset)
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int4[], $5::int8[])
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id";

const INSERT_WELCOME: &str = "
    INSERT INTO consumer.welcome_notifications (user_id, event_id, email, first_name, last_name)
    SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[])
    ON CONFLICT (user_id) DO NOTHING
    RETURNING user_id";

const UPSERT_DAYS: &str = "
    INSERT INTO consumer.registration_stats (day, count)
    SELECT * FROM unnest($1::date[], $2::int8[])
    ON CONFLICT (day) DO UPDATE SET count = registration_stats.count + EXCLUDED.count";

const BUMP_COUNTERS: &str = "
    UPDATE consumer.counters SET
        processed_total = processed_total + $1,
        duplicates_total = duplicates_total + $2,
        unknown_type_total = unknown_type_total + $3,
        dead_lettered_total = dead_lettered_total + $4,
        stale_versions_total = stale_versions_total + $5,
        held_total = held_total + $6,
        erased_skipped_total = erased_skipped_total + $7,
        last_processed_at = CASE WHEN $1 + $3 > 0 THEN now() ELSE last_processed_at END
    WHERE id";

/// Records the batch in the inbox and applies the effects of the events that are new.
/// Statements are set-based (a handful per batch, whatever its size) and go out in three
/// round trips, each sending its statements before awaiting their answers (PostgreSQL
/// runs them in the order sent): the inbox insert with the read model's reads (of every
/// user in the batch: which events are new is not known yet); the read model's writes
/// with the welcome notifications; the day counts and the counters row. The caller
/// commits.
pub async fn apply(
    client: &impl GenericClient,
    batch: &[Delivered<'_>],
    dead_lettered: u64,
) -> Result<Applied, tokio_postgres::Error> {
    let mut seen = HashSet::with_capacity(batch.len());
    let unique: Vec<&Delivered<'_>> = batch.iter().filter(|d| seen.insert(d.event.id)).collect();
    let mut applied = Applied {
        duplicates: (batch.len() - unique.len()) as u64,
        dead_lettered,
        ..Applied::default()
    };
    // Prepared first (cached per connection), so that each round trip's statements go
    // out in the order written below.
    let (read_model, (processed, welcome, days, counters)) = futures::try_join!(
        directory::Statements::prepare(client),
        futures::future::try_join4(
            client.prepare_cached(INSERT_PROCESSED),
            client.prepare_cached(INSERT_WELCOME),
            client.prepare_cached(UPSERT_DAYS),
            client.prepare_cached(BUMP_COUNTERS),
        ),
    )?;

    let changes: Vec<Option<UserChange>> =
        unique.iter().map(|d| d.event.kind.user_change()).collect();
    let users: Vec<Uuid> = changes
        .iter()
        .flatten()
        .map(|change| change.user_id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let inserted = async {
        if unique.is_empty() {
            return Ok(HashSet::new());
        }
        let ids: Vec<Uuid> = unique.iter().map(|d| d.event.id).collect();
        let types: Vec<&str> = unique.iter().map(|d| d.event.event_type.as_str()).collect();
        let topics: Vec<&str> = unique.iter().map(|d| d.topic).collect();
        let partitions: Vec<i32> = unique.iter().map(|d| d.partition).collect();
        let offsets: Vec<i64> = unique.iter().map(|d| d.offset).collect();
        let rows = client
            .query(&processed, &[&ids, &types, &topics, &partitions, &offsets])
            .await?;
        Ok(rows
            .iter()
            .map(|row| row.get::<_, Uuid>(0))
            .collect::<HashSet<Uuid>>())
    };
    let (new_ids, current) =
        in_order(inserted, directory::read(client, &read_model, &users)).await?;
    applied.duplicates += (unique.len() - new_ids.len()) as u64;

    let mut registrations = Vec::new();
    let mut user_events = Vec::new();
    for (delivered, change) in unique.iter().zip(changes) {
        let event = delivered.event;
        if !new_ids.contains(&event.id) {
            continue;
        }
        match &event.kind {
            Kind::Unknown => applied.unknown_types += 1,
            Kind::Scrubbed { .. } => {
                applied.processed += 1;
                applied.erased_skipped += 1;
            }
            kind => {
                applied.processed += 1;
                if let Kind::UserRegistered(data) = kind {
                    registrations.push((event.id, data));
                }
                if let Some(change) = change {
                    user_events.push(directory::Pending {
                        event_id: event.id,
                        event_type: event.event_type.clone(),
                        change,
                        held_at: None,
                    });
                }
            }
        }
    }
    let planned = directory::plan(current, user_events);
    let outcome = &planned.outcome;
    applied.stale_versions += outcome.stale;
    applied.held += outcome.held;
    applied.erased_skipped += outcome.erased_skipped;
    // No welcome for a user who is gone (erased in this batch or before it).
    registrations.retain(|(_, data)| !outcome.tombstones.contains(&data.user_id));
    let (_, per_day) = in_order(
        planned.write(client, &read_model),
        welcome_new(client, &welcome, &registrations),
    )
    .await?;
    // The day rows (sorted), then the counters row, last: every transaction locks the
    // rows all of them share in this one order, so two cannot deadlock on them.
    let day_list: Vec<NaiveDate> = per_day.keys().copied().collect();
    let day_counts: Vec<i64> = per_day.values().copied().collect();
    let counted = async {
        if per_day.is_empty() {
            return Ok(0);
        }
        client.execute(&days, &[&day_list, &day_counts]).await
    };
    let counts = [
        applied.processed,
        applied.duplicates,
        applied.unknown_types,
        applied.dead_lettered,
        applied.stale_versions,
        applied.held,
        applied.erased_skipped,
    ]
    .map(|n| n as i64);
    let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = counts
        .iter()
        .map(|n| n as &(dyn tokio_postgres::types::ToSql + Sync))
        .collect();
    in_order(counted, client.execute(&counters, &params)).await?;
    Ok(applied)
}

/// Runs `first` and `second` side by side: both statements go out before either answer is
/// awaited (the connection pipelines them, and PostgreSQL runs them in that order). The
/// first one's error wins, as the second only reports the transaction it aborted.
pub(crate) async fn in_order<A, B, E>(
    first: impl std::future::Future<Output = Result<A, E>>,
    second: impl std::future::Future<Output = Result<B, E>>,
) -> Result<(A, B), E> {
    let (first, second) = futures::join!(first, second);
    Ok((first?, second?))
}

/// The effect of `UserRegistered`: one welcome notification per user, and the user counted
/// once on the day of registration (a second event for the same user changes neither).
/// Inserts the notifications with `insert` (INSERT_WELCOME); the users new to it per day
/// of registration, for the day counts (sorted: every transaction locks the day rows in
/// this order).
async fn welcome_new(
    client: &impl GenericClient,
    insert: &tokio_postgres::Statement,
    registrations: &[(Uuid, &UserRegistered)],
) -> Result<BTreeMap<NaiveDate, i64>, tokio_postgres::Error> {
    let mut users = HashSet::new();
    let registrations: Vec<_> = registrations
        .iter()
        .filter(|(_, data)| users.insert(data.user_id))
        .collect();
    let mut per_day: BTreeMap<NaiveDate, i64> = BTreeMap::new();
    if registrations.is_empty() {
        return Ok(per_day);
    }
    let user_ids: Vec<Uuid> = registrations.iter().map(|(_, d)| d.user_id).collect();
    let event_ids: Vec<Uuid> = registrations.iter().map(|(id, _)| *id).collect();
    let emails: Vec<&str> = registrations
        .iter()
        .map(|(_, d)| d.email.as_str())
        .collect();
    let first: Vec<&str> = registrations
        .iter()
        .map(|(_, d)| d.first_name.as_str())
        .collect();
    let last: Vec<&str> = registrations
        .iter()
        .map(|(_, d)| d.last_name.as_str())
        .collect();
    let inserted: HashSet<Uuid> = client
        .query(insert, &[&user_ids, &event_ids, &emails, &first, &last])
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let day_of: HashMap<Uuid, NaiveDate> = registrations
        .iter()
        .map(|(_, d)| (d.user_id, d.registered_at.date_naive()))
        .collect();
    for user in &inserted {
        if let Some(day) = day_of.get(user) {
            *per_day.entry(*day).or_default() += 1;
        }
    }
    Ok(per_day)
}
