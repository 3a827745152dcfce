//! Retry delays: one exponential backoff for every loop that tries again
//! after a failure (the course actor, the LLM client, the AMQP consumer, the
//! LISTEN connection, the projection runners).
//!
//! A small type of our own rather than a retry crate: the callers need a
//! "next delay" they sleep on themselves (inside actors, `select!`s and
//! stop signals), a reset once they succeed, and jitter as a range of
//! factors (`1.0..=1.25` spreads reconnecting processes, `0.5..=1.0` keeps a
//! rate-limited client below its cap); the LLM client also lets a server's
//! `Retry-After` take the place of the computed delay.

use std::ops::RangeInclusive;
use std::time::Duration;

use rand::Rng;

/// Exponential backoff: `initial`, doubling with each delay up to `max`,
/// each multiplied by a random factor of the jitter range.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    /// Factors a delay is multiplied by at random; `None`: exact delays.
    jitter: Option<RangeInclusive<f64>>,
    next: Duration,
}

impl Backoff {
    /// Delays of `initial`, `2 × initial`, ... up to `max`, without jitter.
    pub(crate) fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            jitter: None,
            next: initial.min(max),
        }
    }

    /// Multiplies each delay by a random factor in `factors` (after the cap),
    /// so that many clients failing together do not retry together.
    pub(crate) fn with_jitter(mut self, factors: RangeInclusive<f64>) -> Self {
        self.jitter = Some(factors);
        self
    }

    /// The delay to wait now; the one after it doubles (up to the cap).
    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        match &self.jitter {
            Some(factors) => base.mul_f64(rand::thread_rng().gen_range(factors.clone())),
            None => base,
        }
    }

    /// Starts again from the initial delay (after a success).
    pub(crate) fn reset(&mut self) {
        self.next = self.initial.min(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn delays_double_up_to_the_cap() {
        let mut b = Backoff::new(100 * MS, 1000 * MS);
        let delays: Vec<_> = (0..7).map(|_| b.next_delay()).collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1000, 1000, 1000].map(|ms| ms * MS)
        );
    }

    #[test]
    fn reset_starts_from_the_initial_delay_again() {
        let mut b = Backoff::new(200 * MS, 10_000 * MS);
        for _ in 0..5 {
            b.next_delay();
        }
        b.reset();
        assert_eq!(b.next_delay(), 200 * MS);
        assert_eq!(b.next_delay(), 400 * MS);
    }

    #[test]
    fn jitter_stays_within_its_factors_of_the_capped_delay() {
        // The LLM client's jitter: 50 to 100 % of the capped delay.
        let mut b = Backoff::new(100 * MS, 1000 * MS).with_jitter(0.5..=1.0);
        for retry in 0..8 {
            let full = (100 * MS * 2u32.pow(retry)).min(1000 * MS);
            let d = b.next_delay();
            assert!(
                d >= full / 2 && d <= full,
                "retry {retry}: {d:?} vs {full:?}"
            );
        }
        // The reconnecting loops' jitter: up to 25 % more.
        let mut b = Backoff::new(200 * MS, 10_000 * MS).with_jitter(1.0..=1.25);
        let mut seen = std::collections::HashSet::new();
        for retry in 0..10 {
            let full = (200 * MS * 2u32.pow(retry)).min(10_000 * MS);
            let d = b.next_delay();
            assert!(
                d >= full && d <= full.mul_f64(1.25),
                "retry {retry}: {d:?} vs {full:?}"
            );
            seen.insert(d);
        }
        assert!(seen.len() > 5, "the delays vary: {seen:?}");
    }

    #[test]
    fn a_huge_number_of_failures_does_not_overflow() {
        let hour = Duration::from_secs(3600);
        let mut b = Backoff::new(Duration::from_secs(1), hour);
        for _ in 0..200 {
            b.next_delay();
        }
        assert_eq!(b.next_delay(), hour);
    }
}
