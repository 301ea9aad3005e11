//! Per-aggregate backoff after a failed delivery: the failed aggregate waits (capped
//! exponential) while other aggregates keep flowing. In memory only: a new leader simply
//! starts by retrying everything.

use std::collections::HashMap;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub(crate) struct Backoff {
    policy: platform::backoff::Backoff,
    failing: HashMap<String, (u32, Instant)>,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Self {
        Self {
            policy: platform::backoff::Backoff::new(min, max),
            failing: HashMap::new(),
        }
    }

    /// The delay after the `failures`-th consecutive failure.
    pub(crate) fn delay(&self, failures: u32) -> Duration {
        self.policy.delay(failures)
    }

    pub(crate) fn failed(&mut self, aggregate: &str, now: Instant) {
        let failures = self.failing.get(aggregate).map_or(0, |(n, _)| *n) + 1;
        let until = now + self.delay(failures);
        self.failing.insert(aggregate.to_owned(), (failures, until));
    }

    pub(crate) fn succeeded(&mut self, aggregate: &str) {
        self.failing.remove(aggregate);
    }

    /// Aggregates still waiting at `now`: none of their rows may be claimed yet.
    pub(crate) fn blocked(&self, now: Instant) -> Vec<String> {
        self.failing
            .iter()
            .filter(|(_, (_, until))| *until > now)
            .map(|(aggregate, _)| aggregate.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_aggregate_waits_longer_each_time_up_to_the_cap_and_alone() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let t0 = Instant::now();
        backoff.failed("a", t0);
        assert_eq!(backoff.blocked(t0), vec!["a".to_owned()]);
        assert!(backoff.blocked(t0 + Duration::from_millis(101)).is_empty());
        backoff.failed("a", t0);
        backoff.failed("a", t0);
        assert_eq!(backoff.blocked(t0 + Duration::from_millis(399)).len(), 1);
        assert_eq!(backoff.delay(30), Duration::from_secs(1));
        backoff.succeeded("a");
        assert!(backoff.blocked(t0).is_empty());
    }
}
