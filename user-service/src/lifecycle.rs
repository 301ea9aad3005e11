//! Deactivating and reactivating a user: the status change and its event
//! (`UserDeactivated` / `UserReactivated`) in ONE transaction; and the `UserRoleChanged`
//! event of `set-role`. A change that changes
//! nothing (deactivating an inactive user) writes no event.

use chrono::{SecondsFormat, Utc};
use outbox_relay::NewEvent;
use serde_json::json;
use uuid::Uuid;

use crate::register::{AGGREGATE_TYPE, SOURCE};
use crate::users::User;

pub const DEACTIVATED: &str = "UserDeactivated";
pub const REACTIVATED: &str = "UserReactivated";

use crate::users::COLUMNS;

/// What a status change did.
#[derive(Debug, Clone)]
pub struct StatusChange {
    pub user: User,
    /// False when the user already had that status (and no event was written).
    pub changed: bool,
    pub event_id: Option<Uuid>,
}

/// Sets the user `id` active or not, with its event, in one transaction; `None` when no
/// user has that id.
#[tracing::instrument(
    name = "user.set_active",
    skip(client, topic, traceparent),
    err,
    fields(db.system.name = "postgresql")
)]
pub async fn set_active(
    client: &mut deadpool_postgres::Client,
    id: Uuid,
    active: bool,
    topic: &str,
    traceparent: Option<String>,
) -> Result<Option<StatusChange>, tokio_postgres::Error> {
    let traceparent = platform::traceparent::TraceParent::for_event(traceparent.as_deref());
    let tx = client.transaction().await?;
    let Some(user) = crate::users::lock(&tx, id).await? else {
        return Ok(None);
    };
    if user.is_active == active {
        tx.commit().await?;
        return Ok(Some(StatusChange {
            user,
            changed: false,
            event_id: None,
        }));
    }
    let row = tx
        .query_one(
            &format!(
                "UPDATE users.users SET is_active = $2, version = version + 1, updated_at = now() \
                 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[&id, &active],
        )
        .await?;
    let user = crate::users::from_row(&row);
    let version: i64 = row.get("version");
    let event = NewEvent {
        aggregate_type: AGGREGATE_TYPE.into(),
        aggregate_id: id.to_string(),
        event_type: if active { REACTIVATED } else { DEACTIVATED }.into(),
        topic: topic.into(),
        source: SOURCE.into(),
        data: json!({
            "user_id": id,
            "at": Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
            "version": version,
        }),
        traceparent,
        user_version: Some(version),
    };
    let event_id = outbox_relay::enqueue(&tx, &event).await?;
    tx.commit().await?;
    Ok(Some(StatusChange {
        user,
        changed: true,
        event_id: Some(event_id),
    }))
}

/// The `UserRoleChanged` event of a role change: the user id, the new role and the
/// version.
pub fn role_changed(change: &crate::users::RoleChange, topic: &str) -> NewEvent {
    NewEvent {
        aggregate_type: AGGREGATE_TYPE.into(),
        aggregate_id: change.id.to_string(),
        event_type: "UserRoleChanged".into(),
        topic: topic.into(),
        source: SOURCE.into(),
        data: serde_json::json!({
            "user_id": change.id,
            "role": change.current.as_str(),
            "previous_role": change.previous.as_str(),
            "version": change.version,
        }),
        traceparent: None,
        user_version: Some(change.version),
    }
}
