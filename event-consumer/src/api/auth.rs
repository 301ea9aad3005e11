//! The internal key the BFF presents, checked in constant time.

use poem::Request;
use poem_openapi::auth::Bearer;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, SecurityScheme};

use platform::internal_key::ServerKeys;

/// `Authorization: Bearer <INTERNAL_API_KEY>`.
#[derive(Debug, SecurityScheme)]
#[oai(ty = "bearer", checker = "check")]
pub struct InternalKey(());

async fn check(request: &Request, bearer: Bearer) -> Option<()> {
    let keys = request.data::<ServerKeys>()?;
    keys.caller_of(&bearer.token).map(|_| ())
}

pub use platform::error::ErrorBody;

/// A missing or wrong key, as the contract's JSON body (poem-openapi's own is plain text).
#[derive(Debug, ApiResponse)]
pub enum Unauthorized {
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
}

pub async fn unauthorized(_: poem_openapi::error::AuthorizationError) -> Unauthorized {
    Unauthorized::Unauthorized(Json(ErrorBody::unauthorized(
        "A valid internal API key is required.",
    )))
}
