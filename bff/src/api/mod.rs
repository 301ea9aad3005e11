//! The public HTTP API, documented with poem-openapi.

pub mod admin;
pub mod auth;
pub mod errors;
pub mod models;
pub mod users;

use poem_openapi::Tags;

#[derive(Tags)]
pub(crate) enum Tag {
    /// Registration and profile.
    Users,
    /// Login, token refresh, logout.
    Auth,
    /// Operator views and actions (role `admin`).
    Admin,
}
