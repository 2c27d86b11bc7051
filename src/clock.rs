//! Wall-clock milliseconds that advance with tokio's clock.
//!
//! Durable retry times are stored as wall-clock instants (they must survive a
//! restart), but the tests drive schedules with tokio's paused clock. This
//! anchors the wall clock once per process and adds tokio's elapsed time, so
//! both agree in production and paused time moves stored schedules in tests.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

fn anchor() -> &'static (u64, Instant) {
    static ANCHOR: OnceLock<(u64, Instant)> = OnceLock::new();
    ANCHOR.get_or_init(|| {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        (wall, Instant::now())
    })
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    let (wall, at) = anchor();
    wall + Instant::now().saturating_duration_since(*at).as_millis() as u64
}

/// The tokio instant at which the wall clock reads `ms` (now, if that is past).
pub fn instant_at(ms: u64) -> Instant {
    let now = now_ms();
    Instant::now() + std::time::Duration::from_millis(ms.saturating_sub(now))
}
