//! Admin: the live dashboard and outbox replay (role `admin`).

use std::sync::Arc;

use platform::telemetry::error_chain;
use poem_openapi::payload::Json;
use poem_openapi::OpenApi;

use super::auth::{authenticate_admin, BearerAuth};
use super::errors::ApiError;
use super::models::{Dashboard, ReplayRequest, ReplayResult};
use super::Tag;
use crate::state::AppState;
use crate::upstream::Answer;

#[derive(Debug)]
pub struct AdminApi {
    pub state: Arc<AppState>,
}

#[OpenApi(tag = "Tag::Admin")]
impl AdminApi {
    /// Live figures: users and registrations (user service), outbox backlog, processed
    /// events, duplicates and dead letters (event consumer): the figures of every source
    /// that answered; `missing` names the others.
    #[oai(path = "/api/v1/protected/admin/dashboard", method = "get")]
    async fn dashboard(&self, auth: BearerAuth) -> Result<Json<Dashboard>, ApiError> {
        authenticate_admin(&self.state, &auth).await?;
        let upstream = &self.state.upstream;
        let (users, events) = tokio::join!(upstream.user_stats(), upstream.event_stats());
        let mut missing = Vec::new();
        let users = answered("user-service", users, &mut missing);
        let events = answered("event-consumer", events, &mut missing);
        Ok(Json(Dashboard {
            users,
            events,
            missing,
        }))
    }

    /// Re-queue published outbox rows matching the filters (at least one filter, or
    /// `all`), to rebuild a lost or replaced topic. `dry_run` only counts. Answers how
    /// many published rows were re-queued (or would be, on a dry run).
    #[oai(path = "/api/v1/protected/admin/outbox/replay", method = "post")]
    async fn replay(
        &self,
        auth: BearerAuth,
        body: Json<ReplayRequest>,
    ) -> Result<Json<ReplayResult>, ApiError> {
        let admin = authenticate_admin(&self.state, &auth).await?;
        let answer = self.state.upstream.replay(&body.0).await?;
        match answer {
            Answer::Ok(result) => {
                tracing::info!(admin = %admin.sub, count = result.count, dry_run = result.dry_run, "outbox replay");
                Ok(Json(result))
            }
            Answer::Refused(_, error) => Err(ApiError::BadRequest(Json(error))),
        }
    }
}

/// A source's figures, or its name added to `missing`.
fn answered<T>(
    source: &str,
    result: Result<T, crate::upstream::Error>,
    missing: &mut Vec<String>,
) -> Option<T> {
    result
        .inspect_err(|error| {
            tracing::warn!(error = %error_chain(error), source, "dashboard source missing");
            missing.push(source.to_owned());
        })
        .ok()
}
