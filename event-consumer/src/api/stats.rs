use deadpool_postgres::Pool;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi, Tags};

use super::auth::{ErrorBody, InternalKey};
use crate::stats::{self, Stats};
use platform::telemetry::error_chain;

#[derive(Tags)]
pub(crate) enum Tag {
    /// What the consumer has done (for the admin dashboard).
    Stats,
}

#[derive(Debug, ApiResponse)]
pub enum StatsResponse {
    #[oai(status = 200)]
    Ok(Json<Stats>),
    /// Missing or wrong internal key.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// The database did not answer.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
}

#[derive(Debug)]
pub struct StatsApi;

#[OpenApi(tag = "Tag::Stats")]
impl StatsApi {
    /// Processed, duplicate, dead-lettered and unknown-type counts, the welcome
    /// notification queue and registrations per day for the last 7 days.
    #[oai(path = "/stats", method = "get")]
    async fn stats(&self, _key: InternalKey, pool: Data<&Pool>) -> StatsResponse {
        let client = match pool.get().await {
            Ok(client) => client,
            Err(error) => {
                tracing::warn!(error = %error_chain(&error), "stats: database unavailable");
                return StatsResponse::Unavailable(Json(ErrorBody::unavailable()));
            }
        };
        match stats::read(&client).await {
            Ok(stats) => StatsResponse::Ok(Json(stats)),
            Err(error) => {
                tracing::error!(error = %error_chain(&error), "stats: query failed");
                StatsResponse::Internal(Json(ErrorBody::internal()))
            }
        }
    }
}
