//! Per-account login throttling, keyed by the normalised email whether or not an account
//! has it (so the answer says nothing about which emails exist).
//!
//! The first `free_failures` failed checks within `window` cost nothing; after that each
//! further attempt must wait a delay that doubles with every failure (1 s, 2 s, 4 s, ...),
//! capped at `max_delay`. An attempt made during the wait is refused before any hashing
//! (it neither counts nor costs CPU). A success resets the count. A client that passed
//! the check for this account recently (the last few client addresses the caller vouched
//! for) is never made to wait, so a flood against an account cannot lock its owner out.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How many good clients are remembered per account.
const GOOD_CLIENTS: usize = 4;
/// Accounts (and unknown emails) tracked at most; the least useful are evicted.
const CAPACITY: u64 = 100_000;
/// An account untouched for this long is forgotten (good clients with it).
const IDLE: Duration = Duration::from_secs(30 * 24 * 3600);

/// The throttling rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub free_failures: u32,
    pub window: Duration,
    pub max_delay: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            free_failures: 5,
            window: Duration::from_secs(15 * 60),
            max_delay: Duration::from_secs(15 * 60),
        }
    }
}

impl Policy {
    /// The wait owed after `failures` failures: none before the free ones are used up,
    /// then 1 s, doubling with each further failure, capped.
    pub fn delay(&self, failures: u32) -> Duration {
        let Some(over) = failures.checked_sub(self.free_failures) else {
            return Duration::ZERO;
        };
        Duration::from_secs(1u64 << over.min(30)).min(self.max_delay)
    }
}

#[derive(Debug, Default)]
struct Record {
    failures: u32,
    last_failure: Option<Instant>,
    good_clients: Vec<String>,
}

#[derive(Debug)]
pub struct LoginThrottle {
    policy: Policy,
    accounts: moka::sync::Cache<String, Arc<Mutex<Record>>>,
}

impl LoginThrottle {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            accounts: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_idle(IDLE)
                .build(),
        }
    }

    /// The key of an email: trimmed and lower-cased, as look-ups match it.
    fn key(email: &str) -> String {
        email.trim().to_lowercase()
    }

    fn record(&self, email: &str) -> Arc<Mutex<Record>> {
        self.accounts.get_with(Self::key(email), Default::default)
    }

    /// `Err(wait)` when an attempt on `email` from `client` must wait `wait` first.
    pub fn check(&self, email: &str, client: Option<&str>, now: Instant) -> Result<(), Duration> {
        let Some(record) = self.accounts.get(&Self::key(email)) else {
            return Ok(());
        };
        let record = record
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if client.is_some_and(|client| record.good_clients.iter().any(|c| c == client)) {
            return Ok(());
        }
        let Some(last) = record.last_failure else {
            return Ok(());
        };
        if now.duration_since(last) >= self.policy.window {
            return Ok(());
        }
        let ready = last + self.policy.delay(record.failures);
        match ready.checked_duration_since(now) {
            Some(wait) if !wait.is_zero() => Err(wait),
            _ => Ok(()),
        }
    }

    /// Records a failed check of `email`.
    pub fn failed(&self, email: &str, now: Instant) {
        let record = self.record(email);
        let mut record = record
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let stale = record
            .last_failure
            .is_some_and(|last| now.duration_since(last) >= self.policy.window);
        record.failures = if stale { 1 } else { record.failures + 1 };
        record.last_failure = Some(now);
    }

    /// Records a successful check of `email` from `client`: the count starts again and the
    /// client is remembered as good.
    pub fn succeeded(&self, email: &str, client: Option<&str>) {
        let record = self.record(email);
        let mut record = record
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        record.failures = 0;
        record.last_failure = None;
        if let Some(client) = client {
            record.good_clients.retain(|c| c != client);
            record.good_clients.push(client.to_owned());
            if record.good_clients.len() > GOOD_CLIENTS {
                record.good_clients.remove(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn fail(throttle: &LoginThrottle, email: &str, times: u32, at: Instant) {
        for _ in 0..times {
            throttle.failed(email, at);
        }
    }

    #[test]
    fn five_failures_are_free_then_the_wait_doubles_up_to_the_cap() {
        let policy = Policy::default();
        assert_eq!(policy.delay(4), Duration::ZERO);
        assert_eq!(policy.delay(5), SECOND);
        assert_eq!(policy.delay(6), 2 * SECOND);
        assert_eq!(policy.delay(7), 4 * SECOND);
        assert_eq!(policy.delay(14), 512 * SECOND);
        assert_eq!(policy.delay(20), 15 * 60 * SECOND);
        assert_eq!(policy.delay(u32::MAX), 15 * 60 * SECOND);

        let throttle = LoginThrottle::new(policy);
        let t0 = Instant::now();
        fail(&throttle, "ada@example.com", 5, t0);
        assert_eq!(throttle.check("ada@example.com", None, t0), Err(SECOND));
        // The wait runs from the last failure, and the key is the normalised email.
        assert_eq!(
            throttle.check(" ADA@Example.com ", None, t0 + SECOND / 2),
            Err(SECOND / 2)
        );
        assert_eq!(throttle.check("ada@example.com", None, t0 + SECOND), Ok(()));
        throttle.failed("ada@example.com", t0 + SECOND);
        assert_eq!(
            throttle.check("ada@example.com", None, t0 + SECOND),
            Err(2 * SECOND)
        );
        // Another account is not affected.
        assert_eq!(throttle.check("bob@example.com", None, t0), Ok(()));
    }

    #[test]
    fn a_success_resets_the_count_and_a_quiet_window_forgets_it() {
        let throttle = LoginThrottle::new(Policy::default());
        let t0 = Instant::now();
        fail(&throttle, "ada@example.com", 9, t0);
        assert!(throttle.check("ada@example.com", None, t0).is_err());
        throttle.succeeded("ada@example.com", None);
        assert_eq!(throttle.check("ada@example.com", None, t0), Ok(()));

        fail(&throttle, "ada@example.com", 9, t0);
        let later = t0 + Policy::default().window;
        assert_eq!(throttle.check("ada@example.com", None, later), Ok(()));
        throttle.failed("ada@example.com", later);
        assert_eq!(
            throttle.check("ada@example.com", None, later),
            Ok(()),
            "the count restarted"
        );
    }

    #[test]
    fn a_recent_good_client_is_never_made_to_wait() {
        let throttle = LoginThrottle::new(Policy::default());
        let t0 = Instant::now();
        throttle.succeeded("ada@example.com", Some("198.51.100.7"));
        fail(&throttle, "ada@example.com", 30, t0);
        assert!(throttle
            .check("ada@example.com", Some("203.0.113.9"), t0)
            .is_err());
        assert!(throttle.check("ada@example.com", None, t0).is_err());
        assert_eq!(
            throttle.check("ada@example.com", Some("198.51.100.7"), t0),
            Ok(())
        );
    }
}
