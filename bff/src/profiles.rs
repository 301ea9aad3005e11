//! The profiles `GET /api/v1/protected/profile` answers, remembered for the revocation
//! window: the route then costs no call to user-service while a client polls it, and no
//! answer is older than a revoked session may live on. A change made through this BFF
//! (profile, password, erasure, an admin's deactivation) replaces or forgets the entry at
//! once. Authorisation never reads from here: a session's role and status come from
//! user-service (cached per session, for the same window).

use std::sync::Arc;
use std::time::Duration;

use platform::wire::User;
use uuid::Uuid;

/// Profiles remembered at most.
const CAPACITY: u64 = 100_000;

#[derive(Debug)]
pub struct ProfileCache {
    entries: moka::sync::Cache<Uuid, Arc<User>>,
}

impl ProfileCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(ttl)
                .build(),
        }
    }

    pub fn get(&self, id: Uuid) -> Option<Arc<User>> {
        self.entries.get(&id)
    }

    pub fn remember(&self, user: &User) {
        self.entries.insert(user.id, Arc::new(user.clone()));
    }

    /// The user changed: the next read asks user-service.
    pub fn forget(&self, id: Uuid) {
        self.entries.invalidate(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(version: i64) -> User {
        User {
            id: Uuid::nil(),
            email: "a@example.com".into(),
            phone: None,
            first_name: "Ada".into(),
            last_name: "L".into(),
            role: platform::wire::Role::User,
            is_active: true,
            created_at: chrono::Utc::now(),
            version,
        }
    }

    #[test]
    fn a_profile_is_kept_for_the_window_and_a_change_replaces_or_forgets_it() {
        let cache = ProfileCache::new(Duration::from_millis(50));
        cache.remember(&user(1));
        assert_eq!(cache.get(Uuid::nil()).map(|u| u.version), Some(1));
        cache.remember(&user(2));
        assert_eq!(cache.get(Uuid::nil()).map(|u| u.version), Some(2));
        cache.forget(Uuid::nil());
        assert!(cache.get(Uuid::nil()).is_none());
        cache.remember(&user(3));
        std::thread::sleep(Duration::from_millis(80));
        assert!(cache.get(Uuid::nil()).is_none(), "gone after the window");
    }
}
