//! Erasing a user, in ONE transaction: the row becomes a tombstone without personal data
//! (its id, role, version and `erased_at` stay, so the email can be registered again and
//! the user's old events stay rejected), every earlier outbox row of the user loses its
//! payload's personal data, and `UserErased` (the user id and version only) is enqueued.

use outbox_relay::NewEvent;
use serde_json::json;
use uuid::Uuid;

use crate::register::{AGGREGATE_TYPE, SOURCE};

pub const ERASED: &str = "UserErased";

/// What an erasure did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Erased {
    /// The version of `UserErased`.
    pub version: i64,
    /// Earlier outbox rows of the user whose payloads were scrubbed.
    pub scrubbed: u64,
}

const TOMBSTONE: &str = "UPDATE users.users SET email = NULL, first_name = NULL, \
    last_name = NULL, phone = NULL, password_hash = NULL, erased_at = now(), \
    version = version + 1, updated_at = now() \
    WHERE id = $1 AND erased_at IS NULL AND password_hash = coalesce($2, password_hash) \
    RETURNING version";

/// What a scrubbed payload keeps: the user id and the version, and a mark a consumer
/// recognises (it skips such an event instead of dead-lettering it).
const SCRUB: &str = "UPDATE users.outbox SET payload = jsonb_build_object( \
        'user_id', payload->'user_id', 'version', payload->'version', 'erased', true) \
    WHERE aggregate_type = $2 AND aggregate_id = $1 AND NOT payload ? 'erased'";

/// Erases the user `id` if it is not erased yet and, when `password_hash` is given, its
/// hash is still that one (no password change won a race since the password was checked);
/// `None` otherwise.
#[tracing::instrument(name = "user.erase", skip_all, err, fields(user_id = %id))]
pub async fn erase(
    client: &mut deadpool_postgres::Client,
    id: Uuid,
    password_hash: Option<&str>,
    topic: &str,
    traceparent: Option<String>,
) -> Result<Option<Erased>, tokio_postgres::Error> {
    let traceparent = platform::traceparent::TraceParent::for_event(traceparent.as_deref());
    let tx = client.transaction().await?;
    let Some(row) = tx.query_opt(TOMBSTONE, &[&id, &password_hash]).await? else {
        return Ok(None);
    };
    let version: i64 = row.get(0);
    let scrubbed = tx
        .execute(SCRUB, &[&id.to_string(), &AGGREGATE_TYPE])
        .await?;
    let event = NewEvent {
        aggregate_type: AGGREGATE_TYPE.into(),
        aggregate_id: id.to_string(),
        event_type: ERASED.into(),
        topic: topic.into(),
        source: SOURCE.into(),
        data: json!({ "user_id": id, "version": version }),
        traceparent,
        user_version: Some(version),
    };
    outbox_relay::enqueue(&tx, &event).await?;
    tx.commit().await?;
    Ok(Some(Erased { version, scrubbed }))
}
