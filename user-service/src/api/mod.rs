//! The HTTP API, documented with poem-openapi. Every endpoint but the probes needs the
//! internal key; every error is the platform's JSON error body, and the answers any
//! endpoint may give besides its own are [`platform::error::Failure`].

pub mod admin;
pub mod directory;
pub mod users;

use poem_openapi::Tags;

#[derive(Tags)]
pub(crate) enum Tag {
    /// Registration, credentials and look-up (called by the BFF).
    Users,
    /// Dashboard numbers and outbox replay (called by the BFF's admin endpoints).
    Admin,
    /// The read model's source of truth for `reconcile`, and repair snapshots (called by
    /// the event consumer and operators).
    Directory,
}
