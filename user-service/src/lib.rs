//! The user service: users and the outbox write path.
//!
//! The write path is reusable without HTTP: [`validation::validate`], then
//! [`password::Hasher::hash`], then [`register::register`] (which calls
//! [`users::insert`] and `outbox_relay::enqueue` in one transaction).

pub mod api;
pub mod config;
pub mod directory;
pub mod erasure;
pub mod lifecycle;
pub mod password;
pub mod password_change;
pub mod profile;
pub mod register;
pub mod startup;
pub mod state;
pub mod stats;
pub mod throttle;
pub mod users;
pub mod validation;

pub use register::{register, RegisterError, Registered};

/// The families the user service records (their `# HELP` lines).
pub const METRICS: &[platform::metrics::Family] = {
    use platform::metrics::Kind::{Counter, Histogram};
    &[
        ("users_registered_total", Counter, None, "Users registered."),
        (
            "register_conflicts_total",
            Counter,
            None,
            "Registrations refused for a taken email or phone, by field.",
        ),
        (
            "login_throttled_total",
            Counter,
            None,
            "Credential checks refused by the per-account throttle.",
        ),
        (
            "outbox_replayed_total",
            Counter,
            None,
            "Published outbox rows re-queued by replays through the admin API.",
        ),
        (
            "password_hash_seconds",
            Histogram,
            Some(platform::metrics::Unit::Seconds),
            "Time to hash or verify one password (scrypt).",
        ),
    ]
};
