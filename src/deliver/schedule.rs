//! The durable retry schedule: after the in-memory tier, how long until the
//! next attempt, or whether to give up. Pure apart from the jitter draw.

use std::time::Duration;

use rand::Rng;

/// ±20 %: spreads a burst of records that failed together.
const JITTER: f64 = 0.2;

/// The delay before durable step `step` (0-based), or `None` when the schedule
/// is used up and the record should be dead-lettered. With `forever`, the last
/// delay repeats.
pub fn durable_delay(
    schedule: &[Duration],
    step: u32,
    forever: bool,
    rng: &mut impl Rng,
) -> Option<Duration> {
    let base = match schedule.get(step as usize) {
        Some(delay) => *delay,
        None if forever => *schedule.last()?,
        None => return None,
    };
    Some(base.mul_f64(rng.random_range(1.0 - JITTER..=1.0 + JITTER)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn follows_the_schedule_with_jitter_then_gives_up_or_repeats() {
        let schedule = [
            Duration::from_secs(5),
            Duration::from_secs(300),
            Duration::from_secs(1800),
        ];
        let mut rng = StdRng::seed_from_u64(9);
        for (step, base) in schedule.iter().enumerate() {
            for _ in 0..50 {
                let delay = durable_delay(&schedule, step as u32, false, &mut rng).unwrap();
                assert!(
                    delay >= base.mul_f64(0.8) && delay <= base.mul_f64(1.2),
                    "{delay:?} vs {base:?}"
                );
            }
        }
        assert_eq!(durable_delay(&schedule, 3, false, &mut rng), None);
        let forever = durable_delay(&schedule, 30, true, &mut rng).unwrap();
        assert!(forever >= Duration::from_secs(1440) && forever <= Duration::from_secs(2160));
        assert_eq!(durable_delay(&[], 0, true, &mut rng), None);
    }
}
