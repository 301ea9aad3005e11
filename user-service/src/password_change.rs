//! Changing a user's password: the current one checked, the new one held to the
//! registration's rules, and the new hash and a `UserPasswordChanged` event (no secret of
//! any kind in it) in ONE transaction, at the user's next version.

use outbox_relay::NewEvent;
use serde_json::json;
use uuid::Uuid;

use crate::register::{AGGREGATE_TYPE, SOURCE};

pub const PASSWORD_CHANGED: &str = "UserPasswordChanged";

/// What a user's row holds for a password change.
#[derive(Debug, Clone)]
pub struct Account {
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub password_hash: String,
}

/// The account of `id`, if any.
pub async fn account<C: deadpool_postgres::GenericClient + Sync>(
    client: &C,
    id: Uuid,
) -> Result<Option<Account>, tokio_postgres::Error> {
    Ok(client
        .query_opt(
            "SELECT email, first_name, last_name, password_hash FROM users.users \
             WHERE id = $1 AND erased_at IS NULL",
            &[&id],
        )
        .await?
        .map(|row| Account {
            email: row.get(0),
            first_name: row.get(1),
            last_name: row.get(2),
            password_hash: row.get(3),
        }))
}

/// Stores `new_hash` for `id` if its hash is still `old_hash` (no other change won the
/// race since it was checked), with the event; returns the new version, or `None` when
/// the hash changed meanwhile.
#[tracing::instrument(name = "user.change_password", skip_all, err)]
pub async fn store(
    client: &mut deadpool_postgres::Client,
    id: Uuid,
    old_hash: &str,
    new_hash: &str,
    topic: &str,
    traceparent: Option<String>,
) -> Result<Option<i64>, tokio_postgres::Error> {
    let traceparent = platform::traceparent::TraceParent::for_event(traceparent.as_deref());
    let tx = client.transaction().await?;
    let row = tx
        .query_opt(
            "UPDATE users.users SET password_hash = $3, version = version + 1, \
             updated_at = now() WHERE id = $1 AND password_hash = $2 RETURNING version",
            &[&id, &old_hash, &new_hash],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let version: i64 = row.get(0);
    let event = NewEvent {
        aggregate_type: AGGREGATE_TYPE.into(),
        aggregate_id: id.to_string(),
        event_type: PASSWORD_CHANGED.into(),
        topic: topic.into(),
        source: SOURCE.into(),
        data: json!({ "user_id": id, "version": version }),
        traceparent,
        user_version: Some(version),
    };
    outbox_relay::enqueue(&tx, &event).await?;
    tx.commit().await?;
    Ok(Some(version))
}
