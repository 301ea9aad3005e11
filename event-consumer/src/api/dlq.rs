use chrono::{DateTime, Utc};
use platform::error::{ErrorBody, Failure};
use platform::internal_key::{Caller, InternalKey};
use platform::wire::DeadLetterList;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::stats::Tag;
use crate::dead_letters::{
    DeadLetterDetail, DeadLetters, Error, Filter, LetterId, RedriveReport, Selection,
};

/// The dead-letter routes; the tool reads the DLQ topic and the redrive records.
#[derive(Debug)]
pub struct DlqApi {
    pub dead_letters: DeadLetters,
}

#[derive(Debug, ApiResponse)]
pub enum Listed {
    #[oai(status = 200)]
    Ok(Json<DeadLetterList>),
}

#[derive(Debug, ApiResponse)]
pub enum Shown {
    #[oai(status = 200)]
    Ok(Json<DeadLetterDetail>),
    /// The id is not `PARTITION-OFFSET`.
    #[oai(status = 422)]
    Invalid(Json<ErrorBody>),
    /// No dead letter sits there (never did, or the topic's retention removed it).
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
}

#[derive(Debug, ApiResponse)]
pub enum Redriven {
    #[oai(status = 200)]
    Ok(Json<RedriveReport>),
    /// Nothing selected (give `all`, `ids`, `since` or `event_type`), or an id that is
    /// malformed or names no dead letter.
    #[oai(status = 422)]
    Invalid(Json<ErrorBody>),
}

/// The DLQ topic or the database is away: 503; anything else: 500.
fn failure(error: Error) -> Failure {
    match error {
        Error::Kafka(_) | Error::Timeout(_) | Error::Pool(_) => Failure::unavailable(&error),
        Error::Database(error) => error.into(),
        Error::NoTopic(_) | Error::Invalid(_) => Failure::internal(&error),
    }
}

fn invalid(message: String) -> Json<ErrorBody> {
    Json(ErrorBody::new("Validation failed", message))
}

#[OpenApi(tag = "Tag::DeadLetters")]
impl DlqApi {
    /// Dead letters on the DLQ topic, oldest first, with when each was redriven (if it
    /// was).
    #[oai(path = "/dlq", method = "get")]
    async fn list(
        &self,
        key: InternalKey,
        /// Only those dead-lettered at or after this time (RFC 3339).
        since: Query<Option<DateTime<Utc>>>,
        /// Only this event type.
        event_type: Query<Option<String>>,
        /// At most this many (1 to 1000, default 100).
        limit: Query<Option<usize>>,
    ) -> Result<Listed, Failure> {
        key.permit(&[Caller::Bff, Caller::Ops])?;
        let filter = Filter {
            since: since.0,
            event_type: event_type.0,
        };
        let dead_letters = self
            .dead_letters
            .list(&filter, limit.0.unwrap_or(100))
            .await
            .map_err(failure)?;
        Ok(Listed::Ok(Json(DeadLetterList { dead_letters })))
    }

    /// One dead letter with its headers and value.
    #[oai(path = "/dlq/:id", method = "get")]
    async fn show(&self, key: InternalKey, id: Path<String>) -> Result<Shown, Failure> {
        key.permit(&[Caller::Bff, Caller::Ops])?;
        let id: LetterId = match id.0.parse() {
            Ok(id) => id,
            Err(error) => return Ok(Shown::Invalid(invalid(error.to_string()))),
        };
        Ok(match self.dead_letters.show(id).await.map_err(failure)? {
            Some(detail) => Shown::Ok(Json(detail)),
            None => Shown::NotFound(Json(ErrorBody::new(
                "Not found",
                format!("There is no dead letter {id}."),
            ))),
        })
    }

    /// Sends the selected dead letters back to the consumed topic: original key, value
    /// and headers, without the failure's headers, with `redrive_count`. A dead letter is
    /// redriven once: later redrives list it under `already_redriven`.
    #[oai(path = "/dlq/redrive", method = "post")]
    async fn redrive(&self, key: InternalKey, body: Json<Selection>) -> Result<Redriven, Failure> {
        key.permit(&[Caller::Bff, Caller::Ops])?;
        match self.dead_letters.redrive(&body.0).await {
            Ok(report) => Ok(Redriven::Ok(Json(report))),
            Err(Error::Invalid(message)) => Ok(Redriven::Invalid(invalid(message))),
            Err(error) => Err(failure(error)),
        }
    }
}
