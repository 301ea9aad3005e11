//! The JSON bodies of the public API (and the internal ones the BFF reads).

use poem_openapi::Object;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use platform::error::ErrorBody;

/// A user, as the user service describes it (never with a password).
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub phone: Option<String>,
    pub first_name: String,
    pub last_name: String,
    /// `user` or `admin`.
    pub role: String,
    pub is_active: bool,
    /// RFC 3339.
    pub created_at: String,
}

#[derive(Debug, Clone, Object, Serialize, Deserialize)]
#[oai(example)]
pub struct Registration {
    pub email: String,
    pub password: String,
    pub first_name: String,
    pub last_name: String,
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

impl poem_openapi::types::Example for Registration {
    fn example() -> Self {
        Self {
            email: "ada@example.com".into(),
            password: "correct horse battery staple".into(),
            first_name: "Ada".into(),
            last_name: "Lovelace".into(),
            phone: Some("+15551234567".into()),
        }
    }
}

#[derive(Debug, Clone, Object, Serialize, Deserialize)]
#[oai(example)]
pub struct Credentials {
    pub email: String,
    pub password: String,
}

impl poem_openapi::types::Example for Credentials {
    fn example() -> Self {
        Self {
            email: "ada@example.com".into(),
            password: "correct horse battery staple".into(),
        }
    }
}

/// The user service's answer to a credential check.
#[derive(Debug, Clone, Deserialize)]
pub struct Verification {
    pub valid: bool,
    pub user_id: Option<Uuid>,
    pub role: Option<String>,
    pub is_active: Option<bool>,
}

/// A token pair.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct TokenPair {
    /// PASETO v4.public access token; send it as `Authorization: Bearer ...`.
    pub access_token: String,
    /// PASETO v4.public refresh token; good for one refresh.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

#[derive(Debug, Clone, Object, Serialize, Deserialize)]
#[oai(example)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

impl poem_openapi::types::Example for RefreshRequest {
    fn example() -> Self {
        Self {
            refresh_token: "v4.public.eyJ...".into(),
        }
    }
}

/// Optional logout body: the refresh token may be sent too (it is revoked either way).
#[derive(Debug, Clone, Object, Serialize, Deserialize, Default)]
pub struct LogoutRequest {
    #[oai(skip_serializing_if_is_none)]
    pub refresh_token: Option<String>,
}

/// The user service's live figures.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct UserStats {
    pub users_total: i64,
    pub registered_today: i64,
    pub registered_last_24h: i64,
    pub outbox_backlog: i64,
    pub oldest_unpublished_age_s: Option<f64>,
    pub last_published_at: Option<String>,
}

#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct WelcomeNotifications {
    pub pending: i64,
    pub total: i64,
}

#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct DayCount {
    /// `YYYY-MM-DD`.
    pub day: String,
    pub count: i64,
}

/// The event consumer's live figures.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct EventStats {
    pub processed_total: i64,
    pub duplicates_total: i64,
    pub dead_lettered_total: i64,
    pub unknown_type_total: i64,
    pub last_processed_at: Option<String>,
    pub welcome_notifications: WelcomeNotifications,
    /// The last 7 days, oldest first.
    pub registrations_per_day: Vec<DayCount>,
}

/// The admin dashboard: each source's figures, or its name under `missing`.
#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct Dashboard {
    /// From the user service; absent when it did not answer.
    #[oai(skip_serializing_if_is_none)]
    pub users: Option<UserStats>,
    /// From the event consumer; absent when it did not answer.
    #[oai(skip_serializing_if_is_none)]
    pub events: Option<EventStats>,
    /// The sources that did not answer: `user-service`, `event-consumer`.
    pub missing: Vec<String>,
}

#[derive(Debug, Clone, Object, Serialize, Deserialize, Default)]
#[oai(example)]
pub struct ReplayRequest {
    /// RFC 3339: only rows published at or after.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// RFC 3339: only rows published before.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregate_id: Option<String>,
    /// Replay every published row (needed when no other filter is given).
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub all: Option<bool>,
    /// Count only; change nothing.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
}

impl poem_openapi::types::Example for ReplayRequest {
    fn example() -> Self {
        Self {
            since: Some("2025-01-01T00:00:00Z".into()),
            event_type: Some("UserRegistered".into()),
            dry_run: Some(true),
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, Object, Serialize, Deserialize)]
pub struct ReplayResult {
    /// Rows re-queued (or that would be, on a dry run).
    pub count: i64,
    pub dry_run: bool,
}
