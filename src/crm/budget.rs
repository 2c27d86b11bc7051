//! A CRM sink's request budget (DESIGN.md §3.5 `requests_per_second`): every
//! API call of the sink takes a slot first, so a backlog drains at a steady
//! rate the org can bear, and a remote's "not before" (`Retry-After`, a
//! throttle answer) holds every call of the sink until then.
//!
//! One budget per sink, shared by its deliveries; pure timing over tokio's
//! clock, no I/O.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Requests per second when `requests_per_second` is not set.
pub const DEFAULT_REQUESTS_PER_SECOND: u32 = 10;

/// A CRM sink's `requests_per_second` key: [`DEFAULT_REQUESTS_PER_SECOND`]
/// when absent, else 1 to 1000 (reported on `check` otherwise).
pub fn requests_per_second_key(
    check: &mut crate::config::SinkCheck<'_, '_>,
    value: Option<u32>,
) -> Option<u32> {
    match value {
        None => Some(DEFAULT_REQUESTS_PER_SECOND),
        Some(n @ 1..=1000) => Some(n),
        Some(_) => {
            check.error("requests_per_second", "must be between 1 and 1000");
            None
        }
    }
}

/// Evenly spaced slots, `1 / requests_per_second` apart, plus a pause.
#[derive(Debug)]
pub struct Budget {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The earliest the next call may start.
    next: Instant,
}

impl Budget {
    /// `requests_per_second` of 0 is taken as 1.
    pub fn new(requests_per_second: u32) -> Budget {
        Budget {
            interval: Duration::from_secs(1) / requests_per_second.max(1),
            state: Mutex::new(State {
                next: Instant::now(),
            }),
        }
    }

    /// At most `per_minute` calls a minute (a CRM's per-minute limit on one
    /// kind of call, such as Zendesk's ticket updates); 0 is taken as 1.
    pub fn per_minute(per_minute: u32) -> Budget {
        Budget {
            interval: Duration::from_secs(60) / per_minute.max(1),
            state: Mutex::new(State {
                next: Instant::now(),
            }),
        }
    }

    /// Waits for this call's slot.
    pub async fn acquire(&self) {
        let at = {
            let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let now = Instant::now();
            let at = state.next.max(now);
            state.next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at).await;
    }

    /// No call starts before `wait` from now (the remote's `Retry-After`).
    pub fn pause(&self, wait: Duration) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let until = Instant::now() + wait;
        if until > state.next {
            state.next = until;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spaces_calls_and_honours_a_pause() {
        let budget = Budget::new(10);
        let start = Instant::now();
        for _ in 0..5 {
            budget.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::from_millis(400));
        budget.pause(Duration::from_secs(3));
        budget.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_millis(3400));
        // Idle time is not saved up for a burst.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let idle = Instant::now();
        budget.acquire().await;
        budget.acquire().await;
        assert_eq!(idle.elapsed(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_per_minute_budget_spreads_calls_over_the_minute() {
        let budget = Budget::per_minute(100);
        let start = Instant::now();
        for _ in 0..101 {
            budget.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(60));
    }
}
