//! What every handler shares.

use std::sync::Arc;

use deadpool_postgres::Pool;
use platform::error::Failure;

use crate::config::Settings;
use crate::password::{HashError, Hasher};
use crate::throttle::LoginThrottle;

/// The application context, held by each API struct.
#[derive(Debug, Clone)]
pub struct AppState {
    pub pool: Pool,
    pub settings: Arc<Settings>,
    pub hasher: Hasher,
    pub throttle: Arc<LoginThrottle>,
}

impl From<HashError> for Failure {
    fn from(error: HashError) -> Self {
        match error {
            // No hashing capacity left for now: retry later.
            HashError::Busy(_) | HashError::QueueFull => Failure::unavailable(&error),
            other => Failure::internal(&other),
        }
    }
}
