use deadpool_postgres::Pool;
use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};

use super::Tag;

#[derive(Debug, Object)]
pub struct Health {
    /// `ok` or `degraded`.
    pub status: String,
    /// Whether PostgreSQL answered.
    pub database: String,
}

#[derive(ApiResponse)]
pub enum HealthResponse {
    /// Every dependency answers.
    #[oai(status = 200)]
    Ok(Json<Health>),
    /// A dependency is down; the body says which.
    #[oai(status = 503)]
    Degraded(Json<Health>),
}

pub struct HealthApi;

#[OpenApi(tag = "Tag::Operations")]
impl HealthApi {
    /// Reports whether the service and its database answer.
    #[oai(path = "/health", method = "get")]
    async fn health(&self, pool: Data<&Pool>) -> HealthResponse {
        if outbox_relay::platform::db::ping(&pool).await {
            HealthResponse::Ok(Json(Health {
                status: "ok".into(),
                database: "up".into(),
            }))
        } else {
            HealthResponse::Degraded(Json(Health {
                status: "degraded".into(),
                database: "down".into(),
            }))
        }
    }
}
