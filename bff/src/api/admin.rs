//! Admin (role `admin`): the live dashboard, outbox replay, the dead-letter topic, user
//! deactivation and the audit log. Every action (replay, redrive, deactivate,
//! reactivate) is audited, however it ends.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use platform::telemetry::error_chain;
use platform::wire::{
    DeadLetterDetail, DeadLetterFilter, DeadLetterList, RedriveReport, RedriveRequest, StatusChange,
};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::auth::{authenticate_admin, BearerAuth};
use super::errors::ApiError;
use super::models::{Dashboard, ReplayRequest, ReplayResult};
use super::Tag;
use crate::audit::{self, AuditPage, Outcome};
use crate::state::AppState;
use crate::upstream::Answer;
use reqwest::StatusCode;

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
        let answer = self.state.upstream.replay(&body.0).await;
        let answer = self
            .audited(
                admin.sub,
                "outbox.replay",
                &body.0,
                answer,
                |result| json!({ "count": result.count, "dry_run": result.dry_run }),
            )
            .await?;
        match answer {
            Answer::Ok(result) => Ok(Json(result)),
            Answer::Refused(_, error) => Err(ApiError::BadRequest(Json(error))),
        }
    }

    /// Dead letters on the DLQ topic (oldest first), each with why it failed and when
    /// it was redriven, if it was.
    #[oai(path = "/api/v1/protected/admin/dlq", method = "get")]
    async fn dead_letters(
        &self,
        auth: BearerAuth,
        /// Only those dead-lettered at or after this time (RFC 3339).
        since: Query<Option<DateTime<Utc>>>,
        /// Only this event type.
        event_type: Query<Option<String>>,
        /// At most this many (1 to 1000, default 100).
        limit: Query<Option<usize>>,
    ) -> Result<Json<DeadLetterList>, ApiError> {
        authenticate_admin(&self.state, &auth).await?;
        let filter = DeadLetterFilter {
            since: since.0,
            event_type: event_type.0,
        };
        let list = self.state.upstream.dead_letters(&filter, limit.0).await?;
        Ok(Json(list))
    }

    /// One dead letter with its headers and value.
    #[oai(path = "/api/v1/protected/admin/dlq/:id", method = "get")]
    async fn dead_letter(
        &self,
        auth: BearerAuth,
        /// `PARTITION-OFFSET`, as the list gives it.
        id: Path<String>,
    ) -> Result<DeadLetterShown, ApiError> {
        authenticate_admin(&self.state, &auth).await?;
        Ok(match self.state.upstream.dead_letter(&id.0).await? {
            Answer::Ok(detail) => DeadLetterShown::Ok(Json(detail)),
            Answer::Refused(StatusCode::NOT_FOUND, error) => DeadLetterShown::NotFound(Json(error)),
            Answer::Refused(_, error) => DeadLetterShown::Invalid(Json(error)),
        })
    }

    /// Sends dead letters back to `user-events` once their cause is fixed: `all`, some
    /// `ids`, or those matching `since` / `event_type`. Each dead letter is redriven once;
    /// later redrives list it under `already_redriven`. `dry_run` only says what would go.
    /// A redriven event the consumer applied before is a counted duplicate.
    #[oai(path = "/api/v1/protected/admin/dlq/redrive", method = "post")]
    async fn redrive(
        &self,
        auth: BearerAuth,
        body: Json<RedriveRequest>,
    ) -> Result<Redriven, ApiError> {
        let admin = authenticate_admin(&self.state, &auth).await?;
        let answer = self.state.upstream.redrive(&body.0).await;
        let answer = self
            .audited(admin.sub, "dlq.redrive", &body.0, answer, |report| {
                json!({
                    "dry_run": report.dry_run,
                    "redriven": report.redriven.iter().map(|l| &l.id).collect::<Vec<_>>(),
                    "already_redriven": report.already_redriven,
                    "failed": report.failed.iter().map(|f| &f.id).collect::<Vec<_>>(),
                })
            })
            .await?;
        Ok(match answer {
            Answer::Ok(report) => Redriven::Ok(Json(report)),
            Answer::Refused(_, error) => Redriven::Invalid(Json(error)),
        })
    }

    /// Deactivates a user: they cannot log in (403) or refresh, and their sessions stop
    /// within the revocation window (5 s). Deactivating an inactive user changes nothing
    /// (`changed: false`). An admin cannot deactivate themselves. Audited.
    #[oai(path = "/api/v1/protected/admin/users/:id/deactivate", method = "post")]
    async fn deactivate(&self, auth: BearerAuth, id: Path<Uuid>) -> Result<StatusAnswer, ApiError> {
        let admin = authenticate_admin(&self.state, &auth).await?;
        if admin.sub == id.0 {
            let refusal = platform::error::ErrorBody::new(
                "Validation failed",
                "You cannot deactivate your own account.",
            );
            let parameters = json!({ "user_id": id.0 });
            let detail = json!({ "message": refusal.message });
            audit::record(
                &self.state.pool,
                admin.sub,
                "user.deactivate",
                &parameters,
                Outcome::Refused,
                Some(&detail),
            )
            .await;
            return Ok(StatusAnswer::Invalid(Json(refusal)));
        }
        self.set_active(admin.sub, id.0, false).await
    }

    /// Reactivates a user (nothing changes when already active). Audited.
    #[oai(path = "/api/v1/protected/admin/users/:id/reactivate", method = "post")]
    async fn reactivate(&self, auth: BearerAuth, id: Path<Uuid>) -> Result<StatusAnswer, ApiError> {
        let admin = authenticate_admin(&self.state, &auth).await?;
        self.set_active(admin.sub, id.0, true).await
    }

    /// The audit log of admin actions, newest first: who, what, parameters, when and how
    /// it ended. Page with `before` (the `next_before` of the previous page).
    #[oai(path = "/api/v1/protected/admin/audit", method = "get")]
    async fn audit(
        &self,
        auth: BearerAuth,
        /// At most this many (1 to 500, default 100).
        limit: Query<Option<i64>>,
        /// Only records older than this id.
        before: Query<Option<i64>>,
        /// Only this action (`outbox.replay`, `dlq.redrive`, `user.deactivate`,
        /// `user.reactivate`, `user.set_role`).
        action: Query<Option<String>>,
    ) -> Result<Json<AuditPage>, ApiError> {
        authenticate_admin(&self.state, &auth).await?;
        let page = audit::page(
            &self.state.pool,
            limit.0.unwrap_or(100),
            before.0,
            action.0.as_deref(),
        )
        .await?;
        Ok(Json(page))
    }
}

impl AdminApi {
    async fn set_active(
        &self,
        actor: Uuid,
        id: Uuid,
        active: bool,
    ) -> Result<StatusAnswer, ApiError> {
        let action = if active {
            "user.reactivate"
        } else {
            "user.deactivate"
        };
        // No such user is a refusal like the others, audited as one.
        let answer = self
            .state
            .upstream
            .set_active(id, active)
            .await
            .map(|change| {
                change.map_or_else(
                    || {
                        let body =
                            platform::error::ErrorBody::new("Not found", "No user has this id.");
                        Answer::Refused(StatusCode::NOT_FOUND, body)
                    },
                    Answer::Ok,
                )
            });
        self.state.profiles.forget(id);
        let parameters = json!({ "user_id": id });
        let answer = self
            .audited(
                actor,
                action,
                &parameters,
                answer,
                |change: &StatusChange| json!({ "changed": change.changed }),
            )
            .await?;
        Ok(match answer {
            Answer::Ok(change) => StatusAnswer::Ok(Json(change)),
            Answer::Refused(_, error) => StatusAnswer::NotFound(Json(error)),
        })
    }

    /// Records `action` by `actor` with `parameters` and how `answer` ended (`summary` of
    /// a success), then hands the answer back.
    async fn audited<T>(
        &self,
        actor: Uuid,
        action: &str,
        parameters: &impl Serialize,
        answer: Result<Answer<T>, crate::upstream::Error>,
        summary: impl FnOnce(&T) -> Value,
    ) -> Result<Answer<T>, ApiError> {
        let parameters = serde_json::to_value(parameters).unwrap_or(Value::Null);
        let (outcome, detail) = match &answer {
            Ok(Answer::Ok(result)) => (Outcome::Ok, summary(result)),
            Ok(Answer::Refused(status, error)) => (
                Outcome::Refused,
                json!({ "status": status.as_u16(), "message": error.message }),
            ),
            Err(error) => (Outcome::Failed, json!({ "error": error.to_string() })),
        };
        audit::record(
            &self.state.pool,
            actor,
            action,
            &parameters,
            outcome,
            Some(&detail),
        )
        .await;
        Ok(answer?)
    }
}

#[derive(Debug, ApiResponse)]
pub enum StatusAnswer {
    /// The user after the change, and whether anything changed.
    #[oai(status = 200)]
    Ok(Json<StatusChange>),
    /// No user has this id.
    #[oai(status = 404)]
    NotFound(Json<platform::error::ErrorBody>),
    /// An admin's own account.
    #[oai(status = 422)]
    Invalid(Json<platform::error::ErrorBody>),
}

#[derive(Debug, ApiResponse)]
pub enum DeadLetterShown {
    #[oai(status = 200)]
    Ok(Json<DeadLetterDetail>),
    /// No dead letter sits there (never did, or the topic's retention removed it).
    #[oai(status = 404)]
    NotFound(Json<platform::error::ErrorBody>),
    /// The id is not `PARTITION-OFFSET`.
    #[oai(status = 422)]
    Invalid(Json<platform::error::ErrorBody>),
}

#[derive(Debug, ApiResponse)]
pub enum Redriven {
    #[oai(status = 200)]
    Ok(Json<RedriveReport>),
    /// Nothing selected, or an id that is malformed or names no dead letter.
    #[oai(status = 422)]
    Invalid(Json<platform::error::ErrorBody>),
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
