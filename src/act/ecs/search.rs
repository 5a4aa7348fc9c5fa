//! Retrying the search for this instance's identity, with a log line only on change.

use std::time::Duration;

use crate::backoff::Backoff;

/// Retrying the search for this instance's identity (the ECS agent often starts after
/// diskguard): 1 s doubling to 10 s, and a log line only when what is seen changes.
#[derive(Debug, Clone)]
pub struct Search<T> {
    last: Option<T>,
    backoff: Backoff,
}

impl<T: PartialEq> Search<T> {
    pub fn new() -> Self {
        Search {
            last: None,
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(10)),
        }
    }

    /// Another miss: whether it is worth a log line, and how long to wait.
    pub fn missed(&mut self, seen: T) -> (bool, Duration) {
        let changed = self.last.as_ref() != Some(&seen);
        self.last = Some(seen);
        (changed, self.backoff.failed())
    }
}

impl<T: PartialEq> Default for Search<T> {
    fn default() -> Self {
        Self::new()
    }
}
