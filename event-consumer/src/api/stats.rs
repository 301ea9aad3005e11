use deadpool_postgres::Pool;
use platform::error::Failure;
use platform::internal_key::{Caller, InternalKey};
use poem_openapi::payload::Json;
use poem_openapi::{OpenApi, Tags};

use crate::stats::{self, Stats};

#[derive(Tags)]
pub(crate) enum Tag {
    /// What the consumer has done (for the admin dashboard).
    Stats,
    /// The dead-letter topic: list, show, redrive.
    DeadLetters,
    /// The read model against user-service: drift check and repair.
    Reconcile,
}

/// The consumer's API; its context is the pool of its own tables.
#[derive(Debug)]
pub struct StatsApi {
    pub pool: Pool,
}

#[OpenApi(tag = "Tag::Stats")]
impl StatsApi {
    /// Processed, duplicate, dead-lettered and unknown-type counts, the welcome
    /// notification queue and registrations per day for the last 7 days.
    #[oai(path = "/stats", method = "get")]
    async fn stats(&self, key: InternalKey) -> Result<Json<Stats>, Failure> {
        key.permit(&[Caller::Bff, Caller::Ops])?;
        let client = self.pool.get().await?;
        Ok(Json(stats::read(&client).await?))
    }
}
