//! The audit log of admin actions (`auth.audit_log`): one way to write a record, for the
//! BFF's admin routes (`via` = `api`, the admin's user id as actor) and for the operators'
//! commands (`via` = `cli`, no actor): `set-role`, `dlq redrive`, `replay`. Records name
//! users by id only; each writer's database role may add records, none may change or
//! delete them.

use poem_openapi::Enum;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::GenericClient;
use uuid::Uuid;

/// How an admin action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize, Deserialize)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Done.
    Ok,
    /// Refused as asked (bad parameters, nothing selected, no such user).
    Refused,
    /// It could not be done (a service was away or failed).
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Refused => "refused",
            Self::Failed => "failed",
        }
    }

    pub fn from_db(text: &str) -> Self {
        match text {
            "ok" => Self::Ok,
            "refused" => Self::Refused,
            _ => Self::Failed,
        }
    }
}

/// Who did it: an admin through the BFF, or an operator's command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    Admin(Uuid),
    Cli,
}

/// One audit record.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub actor: Actor,
    pub action: &'a str,
    pub parameters: &'a Value,
    pub outcome: Outcome,
    pub detail: Option<&'a Value>,
}

/// Writes `entry` on `client` (in the caller's transaction, if it is one) and logs it.
pub async fn insert<C: GenericClient + Sync>(
    client: &C,
    entry: &Entry<'_>,
) -> Result<(), tokio_postgres::Error> {
    let (actor, via) = match entry.actor {
        Actor::Admin(id) => (Some(id), "api"),
        Actor::Cli => (None, "cli"),
    };
    tracing::info!(
        actor = ?actor, via, action = entry.action, parameters = %entry.parameters,
        outcome = entry.outcome.as_str(), detail = %entry.detail.unwrap_or(&serde_json::Value::Null),
        "admin action"
    );
    client
        .execute(
            "INSERT INTO auth.audit_log (actor, via, action, parameters, outcome, detail) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &actor,
                &via,
                &entry.action,
                entry.parameters,
                &entry.outcome.as_str(),
                &entry.detail,
            ],
        )
        .await?;
    Ok(())
}
