//! The public backend-for-frontend: registration and login in front of the user service,
//! PASETO v4.public sessions with refresh rotation, per-client rate limits, admin views,
//! OpenAPI with Swagger UI. It holds no domain logic and never touches Kafka.

pub mod api;
pub mod audit;
pub mod client_ip;
pub mod config;
pub mod idempotency;
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
