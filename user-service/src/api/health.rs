use poem_openapi::Tags;

#[derive(Tags)]
pub(crate) enum Tag {
    /// Registration, credentials and look-up (called by the BFF).
    Users,
    /// Dashboard numbers and outbox replay (called by the BFF's admin endpoints).
    Admin,
}
