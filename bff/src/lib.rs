//! The public backend-for-frontend: registration and login in front of the user service,
//! PASETO v4.public sessions with refresh rotation, per-client rate limits, admin views,
//! OpenAPI with Swagger UI. It holds no domain logic and never touches Kafka.

pub mod api;
pub mod audit;
pub mod client_ip;
pub mod config;
pub mod idempotency;
pub mod profiles;
pub mod rate_limit;
pub mod retention;
mod same_origin;
pub mod security_headers;
pub mod sessions;
pub mod startup;
pub mod state;
pub mod tokens;
pub mod traceparent;
pub mod upstream;

/// The families the BFF records (their `# HELP` lines).
pub const METRICS: &[platform::metrics::Family] = {
    use platform::metrics::Kind::Counter;
    &[
        (
            "bff_registrations_total",
            Counter,
            None,
            "Registrations accepted.",
        ),
        ("bff_logins_total", Counter, None, "Successful logins."),
        (
            "bff_login_throttled_total",
            Counter,
            None,
            "Logins refused by the account throttle.",
        ),
        (
            "bff_refresh_reuse_total",
            Counter,
            None,
            "Refresh tokens presented twice (the session is revoked).",
        ),
        (
            "bff_rate_limited_total",
            Counter,
            None,
            "Requests answered 429 by the per-route rate limits.",
        ),
    ]
};
