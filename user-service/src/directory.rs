//! What the event consumer's `reconcile` compares its read model with: every user, a page
//! at a time in id order (erased users as tombstones), and the `UserSnapshot` events that
//! repair a read model which went astray.

use deadpool_postgres::GenericClient;
use outbox_relay::NewEvent;
use platform::wire::{
    DirectoryPage, DirectoryUser, Role, SnapshotResult, SnapshotWritten, UserStatus,
};
use serde_json::json;
use tokio_postgres::Row;
use uuid::Uuid;

use crate::register::{AGGREGATE_TYPE, SOURCE};

pub const SNAPSHOT: &str = "UserSnapshot";
/// The largest page, and the most snapshots asked for at once.
pub const MAX_PAGE: i64 = 1000;

const SELECTED: &str =
    "id, email, first_name, last_name, phone, role, is_active, erased_at, version, updated_at";

fn from_row(row: &Row) -> DirectoryUser {
    let erased: Option<chrono::DateTime<chrono::Utc>> = row.get("erased_at");
    let status = match (erased, row.get::<_, bool>("is_active")) {
        (Some(_), _) => UserStatus::Erased,
        (None, false) => UserStatus::Deactivated,
        (None, true) => UserStatus::Active,
    };
    DirectoryUser {
        id: row.get("id"),
        email: row.get("email"),
        first_name: row.get("first_name"),
        last_name: row.get("last_name"),
        phone: row.get("phone"),
        role: Role::from_db(row.get("role")),
        status,
        version: row.get("version"),
        updated_at: row.get("updated_at"),
    }
}

/// Up to `limit` users with an id after `after`, in id order.
pub async fn page(
    client: &impl GenericClient,
    after: Option<Uuid>,
    limit: i64,
) -> Result<DirectoryPage, tokio_postgres::Error> {
    let limit = limit.clamp(1, MAX_PAGE);
    let statement = client
        .prepare_cached(&format!(
            "SELECT {SELECTED} FROM users.users WHERE id > coalesce($1, '00000000-0000-0000-0000-000000000000'::uuid) \
             ORDER BY id LIMIT $2"
        ))
        .await?;
    let users: Vec<DirectoryUser> = client
        .query(&statement, &[&after, &limit])
        .await?
        .iter()
        .map(from_row)
        .collect();
    let next_after = (users.len() as i64 == limit)
        .then(|| users.last().map(|u| u.id))
        .flatten();
    Ok(DirectoryPage { users, next_after })
}

/// The `UserSnapshot` of a user: the whole current state at its current version.
pub fn snapshot_event(user: &DirectoryUser, topic: &str) -> NewEvent {
    NewEvent {
        aggregate_type: AGGREGATE_TYPE.into(),
        aggregate_id: user.id.to_string(),
        event_type: SNAPSHOT.into(),
        topic: topic.into(),
        source: SOURCE.into(),
        data: json!({
            "user_id": user.id,
            "email": user.email,
            "first_name": user.first_name,
            "last_name": user.last_name,
            "phone": user.phone,
            "role": user.role,
            "status": user.status,
            "version": user.version,
        }),
        traceparent: None,
        user_version: Some(user.version),
    }
}

/// Writes a `UserSnapshot` for each of `ids` (at most [`MAX_PAGE`]) in one transaction,
/// each user's row locked first so no change of it can slip between its state and its
/// place in the outbox. A snapshot does not change the version: it shows the user at it.
#[tracing::instrument(name = "user.snapshots", skip_all, err, fields(users = ids.len()))]
pub async fn write_snapshots(
    client: &mut deadpool_postgres::Client,
    ids: &[Uuid],
    topic: &str,
) -> Result<SnapshotResult, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let users: Vec<DirectoryUser> = tx
        .query(
            &format!(
                "SELECT {SELECTED} FROM users.users WHERE id = ANY($1) ORDER BY id FOR UPDATE"
            ),
            &[&ids],
        )
        .await?
        .iter()
        .map(from_row)
        .collect();
    let mut written = Vec::with_capacity(users.len());
    for user in &users {
        let event_id = outbox_relay::enqueue(&tx, &snapshot_event(user, topic)).await?;
        written.push(SnapshotWritten {
            user_id: user.id,
            version: user.version,
            event_id,
        });
    }
    tx.commit().await?;
    let found: std::collections::HashSet<Uuid> = users.iter().map(|u| u.id).collect();
    let mut not_found: Vec<Uuid> = ids
        .iter()
        .filter(|id| !found.contains(id))
        .copied()
        .collect();
    not_found.sort();
    not_found.dedup();
    Ok(SnapshotResult { written, not_found })
}
