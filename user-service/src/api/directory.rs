//! What the event consumer's `reconcile` reads, and the snapshots `--repair` asks for.

use platform::error::{ErrorBody, Failure};
use platform::internal_key::{Caller, InternalKey};
use platform::wire::{DirectoryPage, SnapshotRequest, SnapshotResult};
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use uuid::Uuid;

use super::Tag;
use crate::directory::{self, MAX_PAGE};
use crate::state::AppState;

#[derive(Debug)]
pub struct DirectoryApi {
    pub state: AppState,
}

#[derive(Debug, ApiResponse)]
pub enum SnapshotsWritten {
    /// One `UserSnapshot` per user found, in the outbox.
    #[oai(status = 200)]
    Written(Json<SnapshotResult>),
    /// No id, or more than 1000.
    #[oai(status = 400)]
    Invalid(Json<ErrorBody>),
}

#[OpenApi(prefix_path = "/api/v1/internal", tag = "Tag::Directory")]
impl DirectoryApi {
    /// Every user in id order, `limit` (at most 1000, 1000 by default) at a time after the
    /// id `after`: email, names, phone, role, status and version, as the consumer's read
    /// model should hold them. Erased users are tombstones without personal data.
    #[oai(path = "/users", method = "get")]
    async fn users(
        &self,
        key: InternalKey,
        after: Query<Option<Uuid>>,
        limit: Query<Option<i64>>,
    ) -> Result<Json<DirectoryPage>, Failure> {
        key.permit(&[Caller::EventConsumer, Caller::Ops])?;
        let client = self.state.pool.get().await?;
        let page = directory::page(&client, after.0, limit.0.unwrap_or(MAX_PAGE)).await?;
        Ok(Json(page))
    }

    /// Writes a `UserSnapshot` (the whole current state, at the current version) for each
    /// user: how a read model that went astray, or lost a gap to retention, is repaired.
    #[oai(path = "/users/snapshots", method = "post")]
    async fn snapshots(
        &self,
        key: InternalKey,
        body: Json<SnapshotRequest>,
    ) -> Result<SnapshotsWritten, Failure> {
        key.permit(&[Caller::EventConsumer, Caller::Ops])?;
        let ids = body.0.user_ids;
        if ids.is_empty() || ids.len() > MAX_PAGE as usize {
            return Ok(SnapshotsWritten::Invalid(Json(ErrorBody::new(
                "Bad request",
                "user_ids must hold 1 to 1000 ids.",
            ))));
        }
        let mut client = self.state.pool.get().await?;
        let topic = &self.state.settings.events_topic;
        let result = directory::write_snapshots(&mut client, &ids, topic).await?;
        tracing::info!(
            written = result.written.len(),
            not_found = result.not_found.len(),
            "user snapshots written"
        );
        Ok(SnapshotsWritten::Written(Json(result)))
    }
}
