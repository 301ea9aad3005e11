//! Changing a user's profile (names, phone): the change and its `UserProfileUpdated` event
//! in ONE transaction, optimistically concurrent on the user's version (`If-Match`). A
//! change that changes nothing writes no event and keeps the version.

use outbox_relay::NewEvent;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::register::{AGGREGATE_TYPE, SOURCE};
use crate::users::{Taken, User};
use crate::validation::ProfileChange;

pub const PROFILE_UPDATED: &str = "UserProfileUpdated";

use crate::users::COLUMNS;

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("no such user")]
    NotFound,
    /// The caller's version is not the current one.
    #[error("the profile is at version {current}")]
    Stale { current: i64 },
    #[error("the {} is already registered", .0.field())]
    Taken(Taken),
    #[error("database error")]
    Database(#[source] tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for UpdateError {
    fn from(error: tokio_postgres::Error) -> Self {
        match Taken::of(&error) {
            Some(taken) => Self::Taken(taken),
            None => Self::Database(error),
        }
    }
}

/// The profile after an update, and whether it changed.
#[derive(Debug, Clone)]
pub struct Updated {
    pub user: User,
    pub changed: bool,
}

/// The fields `change` sets to a value other than the current one, with their new values.
fn changed_fields(user: &User, change: &ProfileChange) -> Map<String, Value> {
    let mut changed = Map::new();
    if let Some(first) = change
        .first_name
        .as_ref()
        .filter(|f| **f != user.first_name)
    {
        changed.insert("first_name".into(), json!(first));
    }
    if let Some(last) = change.last_name.as_ref().filter(|l| **l != user.last_name) {
        changed.insert("last_name".into(), json!(last));
    }
    if let Some(phone) = change.phone.as_ref().filter(|p| **p != user.phone) {
        changed.insert("phone".into(), json!(phone));
    }
    changed
}

/// Applies `change` to the user `id` if its version is `expected` (any version when
/// `None`).
#[tracing::instrument(
    name = "user.update_profile",
    skip(client, change, topic, traceparent),
    err,
    fields(db.system.name = "postgresql")
)]
pub async fn update(
    client: &mut deadpool_postgres::Client,
    id: Uuid,
    change: &ProfileChange,
    expected: Option<i64>,
    topic: &str,
    traceparent: Option<String>,
) -> Result<Updated, UpdateError> {
    let traceparent = platform::traceparent::TraceParent::for_event(traceparent.as_deref());
    let tx = client.transaction().await?;
    let user = crate::users::lock(&tx, id)
        .await?
        .ok_or(UpdateError::NotFound)?;
    if expected.is_some_and(|version| version != user.version) {
        return Err(UpdateError::Stale {
            current: user.version,
        });
    }
    let changed = changed_fields(&user, change);
    if changed.is_empty() {
        tx.commit().await?;
        return Ok(Updated {
            user,
            changed: false,
        });
    }
    let sets_phone = changed.contains_key("phone");
    let phone = change.phone.clone().flatten();
    let row = tx
        .query_one(
            &format!(
                "UPDATE users.users SET first_name = coalesce($2, first_name), \
                 last_name = coalesce($3, last_name), \
                 phone = CASE WHEN $4 THEN $5 ELSE phone END, \
                 version = version + 1, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[
                &id,
                &change.first_name,
                &change.last_name,
                &sets_phone,
                &phone,
            ],
        )
        .await?;
    let user = crate::users::from_row(&row);
    let event = NewEvent {
        aggregate_type: AGGREGATE_TYPE.into(),
        aggregate_id: id.to_string(),
        event_type: PROFILE_UPDATED.into(),
        topic: topic.into(),
        source: SOURCE.into(),
        data: json!({ "user_id": id, "changed": changed, "version": user.version }),
        traceparent,
        user_version: Some(user.version),
    };
    outbox_relay::enqueue(&tx, &event).await?;
    tx.commit().await?;
    Ok(Updated {
        user,
        changed: true,
    })
}

/// The version an `If-Match` names: `"3"`, `W/"3"` or `3`; `*` matches any (`None`).
/// Anything else names no version (`Some(0)`, which never matches).
pub fn if_match(header: &str) -> Option<i64> {
    let value = header.trim();
    if value == "*" {
        return None;
    }
    let value = value.strip_prefix("W/").unwrap_or(value).trim_matches('"');
    Some(value.parse().unwrap_or(0))
}

/// The ETag of a version: `"3"`.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_names_a_version_or_any() {
        assert_eq!(if_match("\"3\""), Some(3));
        assert_eq!(if_match("W/\"3\""), Some(3));
        assert_eq!(if_match(" 4 "), Some(4));
        assert_eq!(if_match("*"), None);
        assert_eq!(if_match("\"abc\""), Some(0));
        assert_eq!(etag(3), "\"3\"");
    }
}
