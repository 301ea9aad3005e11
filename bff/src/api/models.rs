//! The JSON bodies of the public API (and the internal ones the BFF reads).

use poem_openapi::Object;
use serde::{Deserialize, Serialize};

pub use platform::error::ErrorBody;
pub use platform::wire::{
    Credentials, DayCount, EventStats, RegisterResponse, Registration, ReplayRequest, ReplayResult,
    Role, User, UserStats, Verification, WelcomeNotifications,
};

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
