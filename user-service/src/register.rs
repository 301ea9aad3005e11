//! The outbox write path: a user and its `UserRegistered` event in ONE transaction, so
//! the event exists if and only if the user does.

use chrono::SecondsFormat;
use outbox_relay::NewEvent;
use serde_json::json;
use uuid::Uuid;

use crate::users::{self, Taken, User};
use crate::validation::NewUser;

pub const AGGREGATE_TYPE: &str = "user";
pub const EVENT_TYPE: &str = "UserRegistered";
pub const SOURCE: &str = "/user-service";
/// A new user's version (the column's default): its `UserRegistered` is version 1.
pub const FIRST_VERSION: i64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("the {} is already registered", .0.field())]
    Taken(Taken),
    #[error("database error")]
    Database(#[source] tokio_postgres::Error),
}

impl From<tokio_postgres::Error> for RegisterError {
    fn from(error: tokio_postgres::Error) -> Self {
        match Taken::of(&error) {
            Some(taken) => Self::Taken(taken),
            None => Self::Database(error),
        }
    }
}

/// The `UserRegistered` event of `user`, as design.md fixes its data JSON.
pub fn user_registered(user: &User, topic: &str, traceparent: Option<String>) -> NewEvent {
    NewEvent {
        aggregate_type: AGGREGATE_TYPE.into(),
        aggregate_id: user.id.to_string(),
        event_type: EVENT_TYPE.into(),
        topic: topic.into(),
        source: SOURCE.into(),
        data: json!({
            "user_id": user.id,
            "email": user.email,
            "first_name": user.first_name,
            "last_name": user.last_name,
            "phone": user.phone,
            "role": user.role,
            "registered_at": user.created_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            "version": FIRST_VERSION,
        }),
        traceparent,
        user_version: Some(FIRST_VERSION),
    }
}

/// A registration's result: the user and the id of its event.
#[derive(Debug, Clone)]
pub struct Registered {
    pub user: User,
    pub event_id: Uuid,
}

/// Inserts the user and enqueues its event in one transaction on `client`, and commits.
/// Any failure rolls both back (the transaction is dropped uncommitted).
#[tracing::instrument(
    name = "user.register",
    skip_all,
    err,
    fields(otel.name = "register: insert user and outbox row", db.system.name = "postgresql")
)]
pub async fn register(
    client: &mut deadpool_postgres::Client,
    user: &NewUser,
    password_hash: &str,
    topic: &str,
    traceparent: Option<String>,
) -> Result<Registered, RegisterError> {
    let traceparent = platform::traceparent::TraceParent::for_event(traceparent.as_deref());
    let tx = client.transaction().await?;
    let user = users::insert(&tx, user, password_hash).await?;
    let event_id = outbox_relay::enqueue(&tx, &user_registered(&user, topic, traceparent)).await?;
    tx.commit().await?;
    Ok(Registered { user, event_id })
}
