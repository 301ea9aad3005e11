//! What the handlers share: the pool, the token keys, the upstream clients, the session
//! liveness and profile caches and the settings.

use std::sync::Arc;

use deadpool_postgres::Pool;
use secrecy::ExposeSecret;

use platform::health::Readiness;

use crate::config::Settings;
use crate::profiles::ProfileCache;
use crate::sessions::LivenessCache;
use crate::tokens::TokenKeys;
use crate::upstream::Upstream;

#[derive(Debug)]
pub struct AppState {
    pub pool: Pool,
    pub keys: Arc<TokenKeys>,
    pub upstream: Upstream,
    pub liveness: LivenessCache,
    /// What `GET /profile` answers, for the same window.
    pub profiles: ProfileCache,
    pub settings: Settings,
    /// Key of the idempotency fingerprints (derived from the token secret).
    pub fingerprint_key: Vec<u8>,
    /// The dependency checks behind `/health/ready`.
    pub readiness: Readiness,
}

impl AppState {
    pub fn new(pool: Pool, keys: Arc<TokenKeys>, upstream: Upstream, settings: Settings) -> Self {
        let fingerprint_key = settings
            .token_secret_key
            .as_ref()
            .map(|k| crate::idempotency::fingerprint(k.expose_secret().as_bytes(), b"idempotency"))
            .unwrap_or_default();
        let readiness = Readiness::new().require_database(pool.clone());
        Self {
            readiness,
            pool,
            keys,
            upstream,
            liveness: LivenessCache::new(settings.revocation_cache()),
            profiles: ProfileCache::new(settings.revocation_cache()),
            settings,
            fingerprint_key,
        }
    }
}
