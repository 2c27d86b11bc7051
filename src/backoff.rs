//! Retry delays: exponential with full jitter between a floor and a cap, for
//! WebSocket reconnects and a sink's in-memory retries.
//!
//! Pure apart from the random draw, which the caller supplies. The delay grows
//! until `reset` is called; the source calls it only once a connection has
//! proved healthy (a heartbeat reply or an event), so a server that accepts and
//! immediately drops cannot drive a tight loop. (backon's jitter adds 0–100 %
//! on top of the exponential delay; the config contract promises delays drawn
//! *between* the bounds, hence this small type.)

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// The ceiling for the next delay: `min × 2^attempt`, capped at `max`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.min.saturating_mul(factor).min(self.max)
    }

    /// A delay drawn uniformly from `[min, ceiling]`, then the ceiling doubles.
    pub fn next(&mut self, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        if ceiling <= self.min {
            return self.min;
        }
        let nanos = rng.random_range(self.min.as_nanos() as u64..=ceiling.as_nanos() as u64);
        Duration::from_nanos(nanos)
    }

    /// The longest delay: for problems a quick retry cannot fix (eviction,
    /// rejected credentials).
    pub fn max(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        self.max
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn grows_exponentially_within_bounds_and_resets() {
        let (min, max) = (Duration::from_millis(500), Duration::from_secs(60));
        let mut backoff = Backoff::new(min, max);
        let mut rng = StdRng::seed_from_u64(1);
        let ceilings: Vec<u64> = (0..10)
            .map(|_| {
                let ceiling = backoff.ceiling();
                let delay = backoff.next(&mut rng);
                assert!(
                    delay >= min && delay <= ceiling,
                    "{delay:?} outside [{min:?}, {ceiling:?}]"
                );
                ceiling.as_millis() as u64
            })
            .collect();
        assert_eq!(
            ceilings,
            [
                500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000
            ]
        );
        backoff.reset();
        assert_eq!(backoff.ceiling(), min);
    }

    #[test]
    fn never_overflows_and_handles_equal_bounds() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
        let mut rng = StdRng::seed_from_u64(2);
        for _ in 0..100 {
            assert_eq!(backoff.next(&mut rng), Duration::from_secs(1));
        }
        let mut backoff = Backoff::new(Duration::from_millis(1), Duration::from_secs(3600));
        for _ in 0..200 {
            assert!(backoff.next(&mut rng) <= Duration::from_secs(3600));
        }
    }

    #[test]
    fn jitter_spreads_delays() {
        let mut rng = StdRng::seed_from_u64(3);
        let delays: std::collections::BTreeSet<Duration> = (0..50)
            .map(|_| {
                let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
                backoff.next(&mut rng);
                backoff.next(&mut rng)
            })
            .collect();
        assert!(
            delays.len() > 40,
            "full jitter should rarely repeat: {}",
            delays.len()
        );
    }
}
