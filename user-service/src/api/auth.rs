//! The internal key the BFF presents, checked in constant time.

use poem::Request;
use poem_openapi::auth::Bearer;
use poem_openapi::SecurityScheme;

use crate::state::AppState;

/// `Authorization: Bearer <INTERNAL_API_KEY>`.
#[derive(Debug, SecurityScheme)]
#[oai(ty = "bearer", checker = "check")]
pub struct InternalKey(());

async fn check(req: &Request, bearer: Bearer) -> Option<()> {
    let state = req.data::<AppState>()?;
    state.keys.caller_of(&bearer.token).map(|_| ())
}
