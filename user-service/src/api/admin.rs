//! What the BFF's admin endpoints call: dashboard numbers and outbox replay.

use outbox_relay::replay::ReplayError;
use outbox_relay::ReplayFilter;
use platform::error::Found;
use platform::error::{ErrorBody, Failure};
use platform::internal_key::{Caller, InternalKey};
use platform::wire::{ReplayRequest, ReplayResult, StatusChange, UserStats};
use poem_openapi::param::{Header, Path};
use poem_openapi::payload::Json;
use poem_openapi::OpenApi;
use uuid::Uuid;

use super::Tag;
use crate::state::AppState;
use crate::stats;

#[derive(Debug)]
pub struct AdminApi {
    pub state: AppState,
}

#[OpenApi(prefix_path = "/api/v1/admin", tag = "Tag::Admin")]
impl AdminApi {
    /// Users and outbox health for the admin dashboard.
    #[oai(path = "/stats", method = "get")]
    async fn stats(&self, key: InternalKey) -> Result<Json<UserStats>, Failure> {
        key.permit(&[Caller::Bff, Caller::Ops])?;
        let client = self.state.pool.get().await?;
        Ok(Json(stats::load(&client).await?))
    }

    /// Re-queues published outbox rows so the relay publishes them again, in order. A
    /// request without a filter and not `all`, or with `since` after `until`, is a 400.
    #[oai(path = "/outbox/replay", method = "post")]
    async fn replay(
        &self,
        key: InternalKey,
        body: Json<ReplayRequest>,
    ) -> Result<Json<ReplayResult>, Failure> {
        key.permit(&[Caller::Bff, Caller::Ops])?;
        let body = body.0;
        let filter = ReplayFilter {
            since: body.since,
            until: body.until,
            event_type: body.event_type,
            aggregate_id: body.aggregate_id,
            all: body.all.unwrap_or(false),
        };
        let dry_run = body.dry_run.unwrap_or(false);
        let client = self.state.pool.get().await?;
        let pg: &tokio_postgres::Client = &client;
        match outbox_relay::replay(pg, &filter, dry_run).await {
            Ok(count) => {
                if !dry_run {
                    metrics::counter!("outbox_replayed_total").increment(count);
                }
                Ok(Json(ReplayResult {
                    count: i64::try_from(count).unwrap_or(i64::MAX),
                    dry_run,
                }))
            }
            Err(ReplayError::Database(error)) => Err(error.into()),
            Err(refused) => Err(Failure::BadRequest(Json(ErrorBody::new(
                "Bad request",
                refused.to_string(),
            )))),
        }
    }

    /// Deactivates the user: they can no longer log in or refresh, and their sessions stop
    /// within the BFF's revocation window. Writes `UserDeactivated` in the same
    /// transaction; deactivating an inactive user changes nothing (`changed: false`).
    #[oai(path = "/users/:id/deactivate", method = "post")]
    async fn deactivate(
        &self,
        key: InternalKey,
        id: Path<Uuid>,
        /// W3C trace context, stored with the event.
        traceparent: Header<Option<String>>,
    ) -> Result<Found<StatusChange>, Failure> {
        key.permit(&[Caller::Bff, Caller::Ops])?;
        self.set_active(id.0, false, traceparent.0).await
    }

    /// Reactivates the user; writes `UserReactivated` (nothing when already active).
    #[oai(path = "/users/:id/reactivate", method = "post")]
    async fn reactivate(
        &self,
        key: InternalKey,
        id: Path<Uuid>,
        /// W3C trace context, stored with the event.
        traceparent: Header<Option<String>>,
    ) -> Result<Found<StatusChange>, Failure> {
        key.permit(&[Caller::Bff, Caller::Ops])?;
        self.set_active(id.0, true, traceparent.0).await
    }
}

impl AdminApi {
    async fn set_active(
        &self,
        id: Uuid,
        active: bool,
        traceparent: Option<String>,
    ) -> Result<Found<StatusChange>, Failure> {
        let mut client = self.state.pool.get().await?;
        let topic = &self.state.settings.events_topic;
        let change =
            crate::lifecycle::set_active(&mut client, id, active, topic, traceparent).await?;
        if let Some(change) = &change {
            if change.changed {
                tracing::info!(user_id = %id, active, event_id = ?change.event_id, "user status changed");
            }
        }
        Ok(Found::or_not_found(
            change.map(|c| StatusChange {
                user: c.user,
                changed: c.changed,
            }),
            "No user has this id.",
        ))
    }
}
