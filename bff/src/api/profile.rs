//! The signed-in user's own profile.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};

use super::auth::{authenticate, BearerAuth};
use super::errors::ApiError;
use super::models::{ErrorBody, User};
use super::Tag;
use crate::state::AppState;
use crate::traceparent::TraceParent;

#[derive(Debug, ApiResponse)]
pub enum ProfileResponse {
    /// The user the token belongs to.
    #[oai(status = 200)]
    Ok(Json<User>),
    /// The user no longer exists.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
}

#[derive(Debug)]
pub struct ProfileApi {
    pub state: Arc<AppState>,
}

#[OpenApi(tag = "Tag::Users")]
impl ProfileApi {
    /// The signed-in user's profile.
    #[oai(path = "/api/v1/protected/profile", method = "get")]
    async fn profile(
        &self,
        auth: BearerAuth,
        trace: Data<&TraceParent>,
    ) -> Result<ProfileResponse, ApiError> {
        let claims = authenticate(&self.state, &auth).await?;
        match self
            .state
            .upstream
            .user(claims.sub, trace.0.as_str())
            .await?
        {
            Some(user) => Ok(ProfileResponse::Ok(Json(user))),
            None => Ok(ProfileResponse::NotFound(Json(ErrorBody::new(
                "Not found",
                "This user no longer exists.",
            )))),
        }
    }
}
