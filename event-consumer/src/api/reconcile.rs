use deadpool_postgres::Pool;
use platform::error::{ErrorBody, Failure};
use platform::internal_key::{Caller, InternalKey};
use platform::wire::{ReconcileReport, ReconcileRequest};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::stats::Tag;
use crate::reconcile::{self, Error, Options, Source};

#[derive(Debug)]
pub struct ReconcileApi {
    pub pool: Pool,
    pub source: Option<Source>,
    pub options: Options,
}

#[derive(Debug, ApiResponse)]
pub enum Reconciled {
    /// The run: its summary and the users that differ or are behind (by field name,
    /// never by value). With `repair`, the summary is the check after the repair and
    /// `before` the first one.
    #[oai(status = 200)]
    Report(Json<ReconcileReport>),
    /// user-service is not configured, or cannot be reached.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}

#[OpenApi(tag = "Tag::Reconcile")]
impl ReconcileApi {
    /// Compares the `user_directory` read model with user-service's users field by field
    /// (email, names, phone, role, status, version). `repair` asks user-service for a
    /// `UserSnapshot` of each differing user, waits for them to be applied, and checks
    /// again. The same as `event-consumer reconcile [--repair]`.
    #[oai(path = "/reconcile", method = "post")]
    async fn reconcile(
        &self,
        key: InternalKey,
        body: Json<ReconcileRequest>,
    ) -> Result<Reconciled, Failure> {
        key.permit(&[Caller::Bff, Caller::Ops])?;
        let unavailable = |message: String| {
            Ok(Reconciled::Unavailable(Json(ErrorBody::new(
                "Service unavailable",
                message,
            ))))
        };
        let Some(source) = &self.source else {
            return unavailable(Error::NotConfigured.to_string());
        };
        match reconcile::run(&self.pool, source, self.options, body.0.repair).await {
            Ok(report) => Ok(Reconciled::Report(Json(report))),
            Err(Error::Pool(error)) => Err(error.into()),
            Err(Error::Database(error)) => Err(error.into()),
            Err(error) => unavailable(platform::telemetry::error_chain(&error)),
        }
    }
}
