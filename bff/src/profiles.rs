//! The profiles `GET /api/v1/protected/profile` answers, remembered for the revocation
//! window: the route then costs no call to user-service while a client polls it, and no
//! answer is older than a revoked session may live on. A change made through this BFF
//! (profile, password, erasure, an admin's deactivation) replaces or forgets the entry at
//! once; a read that was on its way meanwhile cannot put an older profile back (a
//! forgotten user is not remembered again for the window, and a profile never replaces a
//! newer version). Authorisation never reads from here: a session's role and status come
//! from user-service (cached per session, for the same window).

use std::sync::Arc;
use std::time::Duration;

use platform::wire::User;
use uuid::Uuid;

/// Profiles remembered at most.
const CAPACITY: u64 = 100_000;

#[derive(Debug)]
pub struct ProfileCache {
    entries: moka::sync::Cache<Uuid, Entry>,
}

#[derive(Debug, Clone)]
enum Entry {
    Profile(Arc<User>),
    /// The user changed through this BFF: read from user-service until the window ends.
    Forgotten,
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
        match self.entries.get(&id)? {
            Entry::Profile(user) => Some(user),
            Entry::Forgotten => None,
        }
    }

    /// Remembers a profile read from user-service, unless the user was changed through
    /// this BFF meanwhile or a newer version is remembered.
    pub fn remember(&self, user: &User) {
        self.put(user, true);
    }

    /// Remembers the profile a change through this BFF answered: it is the newest there
    /// is (unless a newer one is remembered already).
    pub fn changed(&self, user: &User) {
        self.put(user, false);
    }

    /// Puts `user` in, unless a newer version is there or (`unless_forgotten`) the user
    /// was forgotten.
    fn put(&self, user: &User, unless_forgotten: bool) {
        self.entries.entry(user.id).and_upsert_with(|current| {
            match current.map(|e| e.into_value()) {
                Some(Entry::Forgotten) if unless_forgotten => Entry::Forgotten,
                Some(Entry::Profile(known)) if known.version > user.version => {
                    Entry::Profile(known)
                }
                _ => Entry::Profile(Arc::new(user.clone())),
            }
        });
    }

    /// The user changed (its profile unknown here): reads ask user-service until the
    /// window ends.
    pub fn forget(&self, id: Uuid) {
        self.entries.insert(id, Entry::Forgotten);
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
        let cache = ProfileCache::new(Duration::from_millis(100));
        cache.remember(&user(1));
        assert_eq!(cache.get(Uuid::nil()).map(|u| u.version), Some(1));
        cache.changed(&user(2));
        assert_eq!(cache.get(Uuid::nil()).map(|u| u.version), Some(2));
        // A read that left before the change cannot put version 1 back.
        cache.remember(&user(1));
        assert_eq!(cache.get(Uuid::nil()).map(|u| u.version), Some(2));
        // Nor one that left before the user was forgotten (erased, say).
        cache.forget(Uuid::nil());
        cache.remember(&user(2));
        assert!(cache.get(Uuid::nil()).is_none());
        std::thread::sleep(Duration::from_millis(150));
        assert!(cache.get(Uuid::nil()).is_none(), "gone after the window");
        cache.remember(&user(3));
        assert_eq!(cache.get(Uuid::nil()).map(|u| u.version), Some(3));
    }
}
