//! The internal key the BFF presents, checked in constant time.

use poem::Request;
use poem_openapi::auth::Bearer;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, SecurityScheme};

use outbox_relay::platform::internal_key::ServerKeys;

/// `Authorization: Bearer <INTERNAL_API_KEY>`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "check")]
pub struct InternalKey(());

async fn check(request: &Request, bearer: Bearer) -> Option<()> {
    let keys = request.data::<ServerKeys>()?;
    keys.caller_of(&bearer.token).map(|_| ())
}

/// The contract's error body.
#[derive(Debug, Object)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
}

impl ErrorBody {
    pub fn new(error: &str, message: &str) -> Json<Self> {
        Json(Self {
            error: error.into(),
            message: message.into(),
        })
    }
}

/// A missing or wrong key, as the contract's JSON body (poem-openapi's own is plain text).
#[derive(ApiResponse)]
pub enum Unauthorized {
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
}

pub async fn unauthorized(_: poem_openapi::error::AuthorizationError) -> Unauthorized {
    Unauthorized::Unauthorized(ErrorBody::new(
        "Unauthorized",
        "A valid internal API key is required.",
    ))
}
