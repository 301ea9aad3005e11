//! The signed-in user's own profile.

use std::sync::Arc;

use platform::error::Found;
use poem::web::Data;
use poem_openapi::OpenApi;

use super::auth::{authenticate, BearerAuth};
use super::errors::ApiError;
use super::models::User;
use super::Tag;
use crate::state::AppState;
use crate::traceparent::TraceParent;

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
    ) -> Result<Found<User>, ApiError> {
        let claims = authenticate(&self.state, &auth).await?;
        let user = self
            .state
            .upstream
            .user(claims.sub, trace.0.as_str())
            .await?;
        Ok(Found::or_not_found(user, "This user no longer exists."))
    }
}
