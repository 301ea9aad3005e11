//! What the BFF's admin endpoints call: dashboard numbers and outbox replay.

use chrono::{DateTime, Utc};
use outbox_relay::replay::ReplayError;
use outbox_relay::ReplayFilter;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::auth::InternalKey;
use super::health::Tag;
use crate::error::ErrorBody;
use crate::state::{AppState, Failure};
use crate::stats;

#[derive(Debug, Object)]
pub struct Stats {
    pub users_total: i64,
    /// Since midnight UTC.
    pub registered_today: i64,
    pub registered_last_24h: i64,
    /// Outbox rows Kafka has not acknowledged yet.
    pub outbox_backlog: i64,
    /// Age in seconds of the oldest unpublished row; null when there is none.
    pub oldest_unpublished_age_s: Option<f64>,
    pub last_published_at: Option<DateTime<Utc>>,
}

#[derive(Debug, ApiResponse)]
pub enum StatsResponse {
    #[oai(status = 200)]
    Ok(Json<Stats>),
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}
failure_responses!(StatsResponse);

#[derive(Debug, Object)]
pub struct ReplayRequest {
    /// Rows created at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Rows created before this time.
    pub until: Option<DateTime<Utc>>,
    pub event_type: Option<String>,
    pub aggregate_id: Option<String>,
    /// Replay every retained row; required when no other filter is given.
    pub all: Option<bool>,
    /// Only count the matching rows.
    pub dry_run: Option<bool>,
}

#[derive(Debug, Object)]
pub struct ReplayResult {
    /// Rows re-queued (or, with `dry_run`, that would be).
    pub count: i64,
    pub dry_run: bool,
}

#[derive(Debug, ApiResponse)]
pub enum ReplayResponse {
    #[oai(status = 200)]
    Ok(Json<ReplayResult>),
    /// No filter and not `all`, or `since` after `until`.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}
failure_responses!(ReplayResponse);

#[derive(Debug)]
pub struct AdminApi;

#[OpenApi(prefix_path = "/api/v1/admin", tag = "Tag::Admin")]
impl AdminApi {
    /// Users and outbox health for the admin dashboard.
    #[oai(path = "/stats", method = "get")]
    async fn stats(&self, _key: InternalKey, state: Data<&AppState>) -> StatsResponse {
        do_stats(&state).await.unwrap_or_else(Into::into)
    }

    /// Re-queues published outbox rows so the relay publishes them again, in order.
    #[oai(path = "/outbox/replay", method = "post")]
    async fn replay(
        &self,
        _key: InternalKey,
        state: Data<&AppState>,
        body: Json<ReplayRequest>,
    ) -> ReplayResponse {
        do_replay(&state, body.0).await.unwrap_or_else(Into::into)
    }
}

async fn do_stats(state: &AppState) -> Result<StatsResponse, Failure> {
    let client = state.pool.get().await?;
    let s = stats::load(&client).await?;
    Ok(StatsResponse::Ok(Json(Stats {
        users_total: s.users_total,
        registered_today: s.registered_today,
        registered_last_24h: s.registered_last_24h,
        outbox_backlog: s.outbox_backlog,
        oldest_unpublished_age_s: s.oldest_unpublished_age_s,
        last_published_at: s.last_published_at,
    })))
}

async fn do_replay(state: &AppState, body: ReplayRequest) -> Result<ReplayResponse, Failure> {
    let filter = ReplayFilter {
        since: body.since,
        until: body.until,
        event_type: body.event_type,
        aggregate_id: body.aggregate_id,
        all: body.all.unwrap_or(false),
    };
    let dry_run = body.dry_run.unwrap_or(false);
    let client = state.pool.get().await?;
    let pg: &tokio_postgres::Client = &client;
    match outbox_relay::replay(pg, &filter, dry_run).await {
        Ok(count) => Ok(ReplayResponse::Ok(Json(ReplayResult {
            count: i64::try_from(count).unwrap_or(i64::MAX),
            dry_run,
        }))),
        Err(ReplayError::Database(error)) => Err(error.into()),
        Err(refused) => Ok(ReplayResponse::BadRequest(Json(ErrorBody::new(
            "Bad request",
            refused.to_string(),
        )))),
    }
}
