//! Waiting longer after each failure in a row: the one retry schedule that every actor
//! (Docker connect and events, ECS discovery and calls, CloudWatch delivery) uses.

use std::time::Duration;

/// Doubles from `first` up to `max` after each failure; back to `first` after a success.
/// With jitter, each wait is drawn from [half, whole] of the step, so that a fleet of
/// agents that failed together does not retry together (AWS throttles per account).
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    step: Duration,
    jitter: bool,
    failures: u32,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            first,
            max: max.max(first),
            step: first,
            jitter: false,
            failures: 0,
        }
    }

    /// Each wait drawn from [half, whole] of the step.
    pub fn jittered(mut self) -> Self {
        self.jitter = true;
        self
    }

    /// Records a failure; returns how long to wait before the next try.
    pub fn failed(&mut self) -> Duration {
        self.failed_with(fastrand::f64())
    }

    /// As `failed`, with the random draw given (0.0 ≤ draw < 1.0), for tests.
    pub fn failed_with(&mut self, draw: f64) -> Duration {
        let wait = if self.jitter {
            self.step.mul_f64(0.5 + draw.clamp(0.0, 1.0) / 2.0)
        } else {
            self.step
        };
        self.failures = self.failures.saturating_add(1);
        self.step = (self.step * 2).min(self.max);
        wait
    }

    /// Records a success: the next failure waits `first` again.
    pub fn succeeded(&mut self) {
        self.step = self.first;
        self.failures = 0;
    }

    /// Failures in a row since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The wait the next failure would bring, without jitter.
    pub fn next_step(&self) -> Duration {
        self.step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn doubles_to_the_cap_and_resets_on_success() {
        let mut b = Backoff::new(S, 8 * S);
        let waits: Vec<u64> = (0..6).map(|_| b.failed().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 8, 8]);
        assert_eq!(b.failures(), 6);
        b.succeeded();
        assert_eq!(b.failures(), 0);
        assert_eq!(b.failed(), S);
    }

    #[test]
    fn jitter_stays_between_half_and_the_whole_step() {
        let mut b = Backoff::new(4 * S, 60 * S).jittered();
        assert_eq!(b.failed_with(0.0), 2 * S);
        assert!(b.failed_with(0.999_999) > Duration::from_millis(7_990));
        for _ in 0..100 {
            let step = b.next_step();
            let wait = b.failed();
            assert!(
                wait >= step / 2 && wait <= step,
                "{wait:?} outside [{:?}, {step:?}]",
                step / 2
            );
        }
    }

    #[test]
    fn a_cap_below_the_first_wait_is_the_first_wait() {
        let mut b = Backoff::new(2 * S, S);
        assert_eq!(b.failed(), 2 * S);
        assert_eq!(b.failed(), 2 * S);
    }
}
