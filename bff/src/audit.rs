//! The audit log of admin actions: who (a user id, never an email), what, with which
//! parameters, when, and how it ended, in `auth.audit_log` (the BFF's role may add and
//! read records, not change or delete them) and as a log line.

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use poem_openapi::Object;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use platform::telemetry::error_chain;

pub use platform::audit::Outcome;

/// One admin action as recorded.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct AuditRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// The admin's user id; absent for an operator's command line.
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<Uuid>,
    /// `api` (an admin through the BFF) or `cli` (an operator's command, such as
    /// `user-service set-role`).
    pub via: String,
    /// `outbox.replay`, `dlq.redrive`, `user.set_role`...
    pub action: String,
    /// What the admin asked for (the request body).
    pub parameters: Value,
    pub outcome: Outcome,
    /// What came of it: counts, the refusal's message, or the failure.
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
}

/// A page of the audit log, newest first.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct AuditPage {
    pub records: Vec<AuditRecord>,
    /// Pass as `before` for the next (older) page; absent on the last one.
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
}

/// The most records one page holds.
pub const MAX_PAGE: i64 = 500;

/// Records an admin action and logs it. A record that cannot be written is logged as an
/// error with everything it held, so the action is never lost from view; the action itself
/// already happened and is not undone.
pub async fn record(
    pool: &Pool,
    actor: Uuid,
    action: &str,
    parameters: &Value,
    outcome: Outcome,
    detail: Option<&Value>,
) {
    let entry = platform::audit::Entry {
        actor: platform::audit::Actor::Admin(actor),
        action,
        parameters,
        outcome,
        detail,
    };
    let written = async {
        let client = pool.get().await?;
        platform::audit::insert(&**client, &entry).await?;
        Ok::<_, platform::error::DbError>(())
    }
    .await;
    if let Err(error) = written {
        tracing::error!(
            error = %error_chain(&error), %actor, action, parameters = %parameters,
            outcome = outcome.as_str(), "the audit record could not be written"
        );
    }
}

/// Up to `limit` records older than `before` (all when `None`), of `action` if given,
/// newest first.
pub async fn page(
    pool: &Pool,
    limit: i64,
    before: Option<i64>,
    action: Option<&str>,
) -> Result<AuditPage, platform::error::DbError> {
    let limit = limit.clamp(1, MAX_PAGE);
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT id, at, actor, via, action, parameters, outcome, detail FROM auth.audit_log \
             WHERE ($1::bigint IS NULL OR id < $1) AND ($2::text IS NULL OR action = $2) \
             ORDER BY id DESC LIMIT $3",
            &[&before, &action, &(limit + 1)],
        )
        .await?;
    let mut records: Vec<AuditRecord> = rows
        .iter()
        .map(|row| AuditRecord {
            id: row.get("id"),
            at: row.get("at"),
            actor: row.get("actor"),
            via: row.get("via"),
            action: row.get("action"),
            parameters: row.get("parameters"),
            outcome: Outcome::from_db(row.get("outcome")),
            detail: row.get("detail"),
        })
        .collect();
    let more = records.len() as i64 > limit;
    records.truncate(limit as usize);
    let next_before = more.then(|| records.last().map(|r| r.id)).flatten();
    Ok(AuditPage {
        records,
        next_before,
    })
}
