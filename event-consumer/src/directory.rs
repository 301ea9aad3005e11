//! The `consumer.user_directory` read model: each user's row, built only from events and
//! applied in version order. An event whose version is not the next one waits in
//! `consumer.held_events` (its partition goes on) until the missing version arrives or a
//! snapshot covers it; an older or equal version is a duplicate and is skipped; a
//! `UserSnapshot` at or above the row's version sets the whole row; `UserErased` leaves a
//! tombstone without personal data, and every later event of that user is skipped.
//!
//! Set-based like the inbox: per batch, one locking read of the rows and one read of the
//! held events of the batch's users (sent together with the inbox insert), then one
//! upsert, one delete and one insert (sent together with the welcome notifications).

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use platform::wire::UserStatus;
use uuid::Uuid;

use crate::event::{Change, UserChange};

/// A user's row in the read model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    pub role: String,
    pub status: UserStatus,
    pub version: i64,
}

impl Entry {
    /// The user id and the row of a query that selects `user_id, email, first_name,
    /// last_name, phone, role, status, version` from `consumer.user_directory`.
    pub fn from_row(row: &tokio_postgres::Row) -> (Uuid, Self) {
        (
            row.get(0),
            Entry {
                email: row.get(1),
                first_name: row.get(2),
                last_name: row.get(3),
                phone: row.get(4),
                role: row.get(5),
                status: UserStatus::from_db(row.get(6)),
                version: row.get(7),
            },
        )
    }

    fn tombstone(role: String, version: i64) -> Self {
        Entry {
            email: None,
            first_name: None,
            last_name: None,
            phone: None,
            role,
            status: UserStatus::Erased,
            version,
        }
    }
}

/// One event for the read model, new in this batch or held from an earlier one.
#[derive(Debug, Clone)]
pub struct Pending {
    pub event_id: Uuid,
    pub event_type: String,
    pub change: UserChange,
    /// When it was parked, for an event that was held.
    pub held_at: Option<DateTime<Utc>>,
}

/// What the read model did with a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Events whose change is now in a row.
    pub applied: u64,
    /// Events at or below their user's version: skipped as duplicates.
    pub stale: u64,
    /// Events parked for a gap (new in this batch).
    pub held: u64,
    /// Events of an erased user, skipped.
    pub erased_skipped: u64,
    /// Users erased by this batch.
    pub erased: Vec<Uuid>,
    /// Users whose row ends the batch as a tombstone (erased now or before).
    pub tombstones: HashSet<Uuid>,
}

/// How one user's events settle against the row.
#[derive(Debug, Default)]
struct Settled {
    row: Option<Entry>,
    changed: bool,
    /// Events still waiting for the version before them.
    held: Vec<Pending>,
    /// Held events that left the table (applied, stale or skipped).
    released: Vec<i64>,
    outcome: Outcome,
}

/// Applies `events` (in any order) to the rows `row` of one user, with the events already
/// held for that user.
fn settle(row: Option<Entry>, mut events: Vec<Pending>) -> Settled {
    // At one version a snapshot (or an erasure) goes first: it covers what waits there.
    events.sort_by_key(|p| {
        let covers = matches!(p.change.change, Change::Snapshot { .. } | Change::Erased);
        (p.change.version, !covers, p.held_at.is_none())
    });
    let mut settled = Settled {
        row,
        ..Settled::default()
    };
    let mut waiting: Vec<Pending> = Vec::new();
    let mut seen = HashSet::new();
    for pending in events {
        let version = pending.change.version;
        let was_held = pending.held_at.is_some();
        let current = settled.row.as_ref().map(|r| (r.version, r.status));
        let release = |settled: &mut Settled| {
            if was_held {
                settled.released.push(version);
            }
        };
        if !seen.insert(version) {
            // A second event at the same version: the first one (held, or earlier in
            // the batch) stands.
            settled.outcome.stale += 1;
            release(&mut settled);
            continue;
        }
        if current.is_some_and(|(_, status)| status == UserStatus::Erased) {
            settled.outcome.erased_skipped += 1;
            release(&mut settled);
            continue;
        }
        let next = current.map_or(1, |(v, _)| v + 1);
        let applies = match &pending.change.change {
            // Erasure is final: it applies over any gap.
            Change::Erased => current.is_none_or(|(v, _)| version > v),
            Change::Snapshot { .. } => current.is_none_or(|(v, _)| version >= v),
            _ if version == next => true,
            _ if current.is_some_and(|(v, _)| version <= v) => false,
            _ => {
                waiting.push(pending);
                continue;
            }
        };
        if !applies {
            settled.outcome.stale += 1;
            release(&mut settled);
            continue;
        }
        settled.row = Some(apply(settled.row.take(), &pending.change));
        settled.changed = true;
        settled.outcome.applied += 1;
        if matches!(pending.change.change, Change::Erased) {
            settled.outcome.erased.push(pending.change.user_id);
        }
        release(&mut settled);
    }
    // A snapshot or an erasure may have jumped past what waits; the rest keeps waiting.
    let final_version = settled.row.as_ref().map(|r| (r.version, r.status));
    for pending in waiting {
        let covered = final_version
            .is_some_and(|(v, status)| pending.change.version <= v || status == UserStatus::Erased);
        if covered {
            if final_version.is_some_and(|(_, s)| s == UserStatus::Erased) {
                settled.outcome.erased_skipped += 1;
            } else {
                settled.outcome.stale += 1;
            }
            if pending.held_at.is_some() {
                settled.released.push(pending.change.version);
            }
        } else {
            if pending.held_at.is_none() {
                settled.outcome.held += 1;
            }
            settled.held.push(pending);
        }
    }
    settled
}

/// The row after `change` (which applies: the version checks are [`settle`]'s).
fn apply(row: Option<Entry>, change: &UserChange) -> Entry {
    let version = change.version;
    match (&change.change, row) {
        (
            Change::Registered {
                email,
                first_name,
                last_name,
                phone,
                role,
            },
            _,
        ) => Entry {
            email: Some(email.clone()),
            first_name: Some(first_name.clone()),
            last_name: Some(last_name.clone()),
            phone: phone.clone(),
            role: role.clone(),
            status: UserStatus::Active,
            version,
        },
        (
            Change::Snapshot {
                email,
                first_name,
                last_name,
                phone,
                role,
                status,
            },
            _,
        ) => {
            if *status == UserStatus::Erased {
                return Entry::tombstone(role.clone(), version);
            }
            Entry {
                email: email.clone(),
                first_name: first_name.clone(),
                last_name: last_name.clone(),
                phone: phone.clone(),
                role: role.clone(),
                status: *status,
                version,
            }
        }
        (Change::Erased, row) => {
            let role = row.map_or_else(|| "user".to_owned(), |r| r.role);
            Entry::tombstone(role, version)
        }
        // Only a registration, a snapshot or an erasure can start a row; `settle` holds
        // anything else until one has.
        (_, None) => unreachable!("a change applied to a user without a row"),
        (change, Some(mut row)) => {
            match change {
                Change::Profile {
                    first_name,
                    last_name,
                    sets_phone,
                    phone,
                } => {
                    if let Some(first) = first_name {
                        row.first_name = Some(first.clone());
                    }
                    if let Some(last) = last_name {
                        row.last_name = Some(last.clone());
                    }
                    if *sets_phone {
                        row.phone = phone.clone();
                    }
                }
                Change::Role { role } => row.role = role.clone(),
                Change::Status { active } => {
                    row.status = if *active {
                        UserStatus::Active
                    } else {
                        UserStatus::Deactivated
                    }
                }
                Change::Password
                | Change::Registered { .. }
                | Change::Snapshot { .. }
                | Change::Erased => {}
            }
            row.version = version;
            row
        }
    }
}

const ROWS: &str = "
    SELECT user_id, email, first_name, last_name, phone, role, status, version
    FROM consumer.user_directory WHERE user_id = ANY($1) ORDER BY user_id FOR UPDATE";

const HELD: &str = "
    SELECT user_id, version, event_id, event_type, change, held_at
    FROM consumer.held_events WHERE user_id = ANY($1)";

const UPSERT: &str = "
    INSERT INTO consumer.user_directory
        (user_id, email, first_name, last_name, phone, role, status, version)
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::text[], $8::int8[])
    ON CONFLICT (user_id) DO UPDATE SET
        email = EXCLUDED.email, first_name = EXCLUDED.first_name,
        last_name = EXCLUDED.last_name, phone = EXCLUDED.phone, role = EXCLUDED.role,
        status = EXCLUDED.status, version = EXCLUDED.version, updated_at = now()";

const RELEASE: &str = "
    DELETE FROM consumer.held_events h
    USING unnest($1::uuid[], $2::int8[]) AS r(user_id, version)
    WHERE h.user_id = r.user_id AND h.version = r.version";

const HOLD: &str = "
    INSERT INTO consumer.held_events (user_id, version, event_id, event_type, change)
    SELECT * FROM unnest($1::uuid[], $2::int8[], $3::uuid[], $4::text[], $5::jsonb[])
    ON CONFLICT (user_id, version) DO NOTHING";

const FORGET_WELCOME: &str = "DELETE FROM consumer.welcome_notifications WHERE user_id = ANY($1)";

/// The read model's statements, prepared (once per connection: they are cached).
#[derive(Debug)]
pub struct Statements {
    rows: tokio_postgres::Statement,
    held: tokio_postgres::Statement,
    upsert: tokio_postgres::Statement,
    release: tokio_postgres::Statement,
    hold: tokio_postgres::Statement,
    forget: tokio_postgres::Statement,
}

impl Statements {
    pub async fn prepare(client: &impl GenericClient) -> Result<Self, tokio_postgres::Error> {
        let (rows, held, upsert, release, hold, forget) = futures::try_join!(
            client.prepare_cached(ROWS),
            client.prepare_cached(HELD),
            client.prepare_cached(UPSERT),
            client.prepare_cached(RELEASE),
            client.prepare_cached(HOLD),
            client.prepare_cached(FORGET_WELCOME),
        )?;
        Ok(Self {
            rows,
            held,
            upsert,
            release,
            hold,
            forget,
        })
    }
}

/// What the read model holds for some users: their rows (locked until the transaction
/// ends) and their held events.
#[derive(Debug, Default)]
pub struct Current {
    rows: BTreeMap<Uuid, Entry>,
    held: Vec<Pending>,
}

/// Reads `users`' rows (locking them, in user order) and held events: both queries go
/// out before either answer is awaited, one round trip.
pub async fn read(
    client: &impl GenericClient,
    statements: &Statements,
    users: &[Uuid],
) -> Result<Current, tokio_postgres::Error> {
    if users.is_empty() {
        return Ok(Current::default());
    }
    let (rows, held) = crate::inbox::in_order(
        client.query(&statements.rows, &[&users]),
        client.query(&statements.held, &[&users]),
    )
    .await?;
    let rows = rows.iter().map(Entry::from_row).collect();
    let held = held
        .iter()
        .filter_map(|row| {
            // A held change this build cannot read back stays where it is, for a snapshot.
            let change = serde_json::from_value::<Change>(row.get(4)).ok()?;
            Some(Pending {
                event_id: row.get(2),
                event_type: row.get(3),
                change: UserChange {
                    user_id: row.get(0),
                    version: row.get(1),
                    change,
                },
                held_at: Some(row.get(5)),
            })
        })
        .collect();
    Ok(Current { rows, held })
}

/// The read model's changes for a batch, worked out by [`plan`] and not yet written.
#[derive(Debug, Default)]
pub struct Planned {
    pub outcome: Outcome,
    upserts: Vec<(Uuid, Entry)>,
    released: Vec<(Uuid, i64)>,
    holds: Vec<Pending>,
}

/// Works out what the batch's user events (new ones only: the inbox has deduplicated them
/// by id) do to the read model, from what [`read`] found for (at least) their users.
/// Nothing is written yet; see [`Planned::write`].
pub fn plan(mut current: Current, events: Vec<Pending>) -> Planned {
    let mut per_user: BTreeMap<Uuid, Vec<Pending>> = BTreeMap::new();
    for pending in events {
        per_user
            .entry(pending.change.user_id)
            .or_default()
            .push(pending);
    }
    for held in current.held {
        if let Some(events) = per_user.get_mut(&held.change.user_id) {
            events.push(held);
        }
    }
    let mut planned = Planned::default();
    let outcome = &mut planned.outcome;
    for (user, events) in per_user {
        let settled = settle(current.rows.remove(&user), events);
        outcome.applied += settled.outcome.applied;
        outcome.stale += settled.outcome.stale;
        outcome.held += settled.outcome.held;
        outcome.erased_skipped += settled.outcome.erased_skipped;
        outcome.erased.extend(settled.outcome.erased);
        planned
            .released
            .extend(settled.released.into_iter().map(|v| (user, v)));
        planned
            .holds
            .extend(settled.held.into_iter().filter(|p| p.held_at.is_none()));
        if let Some(row) = settled.row {
            if row.status == UserStatus::Erased {
                outcome.tombstones.insert(user);
            }
            if settled.changed {
                planned.upserts.push((user, row));
            }
        }
    }
    planned
}

impl Planned {
    /// Writes the changes: the rows, the released and the newly held events, and (for users
    /// erased now) their welcome notifications gone. The statements are sent one after the
    /// other without waiting for each answer, and run in that order.
    pub async fn write(
        &self,
        client: &impl GenericClient,
        statements: &Statements,
    ) -> Result<(), tokio_postgres::Error> {
        let Statements {
            upsert,
            release,
            hold,
            forget,
            ..
        } = statements;
        let (upserts, released, holds) = (&self.upserts, &self.released, &self.holds);
        let upserted = async {
            if upserts.is_empty() {
                return Ok(0);
            }
            let ids: Vec<Uuid> = upserts.iter().map(|(id, _)| *id).collect();
            let email: Vec<Option<&str>> =
                upserts.iter().map(|(_, r)| r.email.as_deref()).collect();
            let first: Vec<Option<&str>> = upserts
                .iter()
                .map(|(_, r)| r.first_name.as_deref())
                .collect();
            let last: Vec<Option<&str>> = upserts
                .iter()
                .map(|(_, r)| r.last_name.as_deref())
                .collect();
            let phone: Vec<Option<&str>> =
                upserts.iter().map(|(_, r)| r.phone.as_deref()).collect();
            let role: Vec<&str> = upserts.iter().map(|(_, r)| r.role.as_str()).collect();
            let status: Vec<&str> = upserts.iter().map(|(_, r)| r.status.as_str()).collect();
            let version: Vec<i64> = upserts.iter().map(|(_, r)| r.version).collect();
            client
                .execute(
                    upsert,
                    &[
                        &ids, &email, &first, &last, &phone, &role, &status, &version,
                    ],
                )
                .await
        };
        let released = async {
            if released.is_empty() {
                return Ok(0);
            }
            let ids: Vec<Uuid> = released.iter().map(|(id, _)| *id).collect();
            let versions: Vec<i64> = released.iter().map(|(_, v)| *v).collect();
            client.execute(release, &[&ids, &versions]).await
        };
        let held = async {
            if holds.is_empty() {
                return Ok(0);
            }
            let ids: Vec<Uuid> = holds.iter().map(|p| p.change.user_id).collect();
            let versions: Vec<i64> = holds.iter().map(|p| p.change.version).collect();
            let events: Vec<Uuid> = holds.iter().map(|p| p.event_id).collect();
            let types: Vec<&str> = holds.iter().map(|p| p.event_type.as_str()).collect();
            let changes: Vec<serde_json::Value> = holds
                .iter()
                .map(|p| serde_json::to_value(&p.change.change).unwrap_or_default())
                .collect();
            client
                .execute(hold, &[&ids, &versions, &events, &types, &changes])
                .await
        };
        let erased = &self.outcome.erased;
        let forgotten = async {
            if erased.is_empty() {
                return Ok(0);
            }
            client.execute(forget, &[erased]).await
        };
        let (upserted, released, held, forgotten) =
            futures::join!(upserted, released, held, forgotten);
        // The first statement that failed says why (the later ones only report the
        // aborted transaction).
        upserted?;
        released?;
        held?;
        forgotten?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(version: i64, change: Change) -> Pending {
        Pending {
            event_id: Uuid::now_v7(),
            event_type: "T".into(),
            change: UserChange {
                user_id: Uuid::nil(),
                version,
                change,
            },
            held_at: None,
        }
    }

    fn registered() -> Change {
        Change::Registered {
            email: "a@example.com".into(),
            first_name: "Ada".into(),
            last_name: "L".into(),
            phone: None,
            role: "user".into(),
        }
    }

    fn rename(first: &str) -> Change {
        Change::Profile {
            first_name: Some(first.into()),
            last_name: None,
            sets_phone: false,
            phone: None,
        }
    }

    #[test]
    fn a_gap_waits_and_the_missing_version_releases_it() {
        let first = settle(None, vec![event(1, registered()), event(3, rename("C"))]);
        assert_eq!(first.row.as_ref().unwrap().version, 1);
        assert_eq!(first.held.len(), 1);
        assert_eq!(first.outcome.held, 1);

        let mut held = first.held[0].clone();
        held.held_at = Some(Utc::now());
        let second = settle(first.row, vec![held, event(2, rename("B"))]);
        let row = second.row.unwrap();
        assert_eq!((row.version, row.first_name.as_deref()), (3, Some("C")));
        assert_eq!(second.released, vec![3]);
        assert!(second.held.is_empty());
    }

    #[test]
    fn older_or_equal_versions_are_duplicates_and_a_snapshot_sets_the_row() {
        let start = settle(None, vec![event(1, registered()), event(2, rename("B"))]);
        let again = settle(
            start.row.clone(),
            vec![event(2, rename("X")), event(1, registered())],
        );
        assert_eq!(again.outcome.stale, 2);
        assert!(!again.changed);

        let snapshot = Change::Snapshot {
            email: Some("a@example.com".into()),
            first_name: Some("Fixed".into()),
            last_name: Some("L".into()),
            phone: Some("+15550100".into()),
            role: "admin".into(),
            status: UserStatus::Deactivated,
        };
        let repaired = settle(start.row, vec![event(2, snapshot)]);
        let row = repaired.row.unwrap();
        assert_eq!(row.first_name.as_deref(), Some("Fixed"));
        assert_eq!((row.status, row.version), (UserStatus::Deactivated, 2));
    }

    #[test]
    fn a_snapshot_at_the_version_that_waits_covers_it() {
        let start = settle(None, vec![event(1, registered())]);
        let mut held = event(3, rename("C"));
        held.held_at = Some(Utc::now());
        let snapshot = Change::Snapshot {
            email: Some("a@example.com".into()),
            first_name: Some("C".into()),
            last_name: Some("L".into()),
            phone: None,
            role: "user".into(),
            status: UserStatus::Active,
        };
        let repaired = settle(start.row, vec![held, event(3, snapshot)]);
        let row = repaired.row.unwrap();
        assert_eq!((row.version, row.first_name.as_deref()), (3, Some("C")));
        assert_eq!(repaired.released, vec![3]);
        assert!(repaired.held.is_empty());
        assert_eq!((repaired.outcome.applied, repaired.outcome.stale), (1, 1));
    }

    #[test]
    fn after_erasure_the_row_keeps_no_personal_data_and_later_events_are_skipped() {
        let erased = settle(None, vec![event(1, registered()), event(5, Change::Erased)]);
        let row = erased.row.clone().unwrap();
        assert_eq!(row, Entry::tombstone("user".into(), 5));
        let later = settle(erased.row, vec![event(6, rename("Z"))]);
        assert_eq!(later.outcome.erased_skipped, 1);
        assert!(!later.changed);
    }
}
