//! Wall-clock milliseconds that advance with tokio's clock, and the one way a
//! time is written out (RFC 3339, UTC, milliseconds).
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

/// `at` as RFC 3339 in UTC with milliseconds (`2026-11-24T10:00:00.123Z`): the
/// format of a record's `received_at`, of the `*_time_ms` fields reconciliation
/// writes, and of every time the operator commands print.
pub fn rfc3339_ms(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Milliseconds since the Unix epoch as a timestamp; `None` past jiff's range
/// (years beyond 9999).
pub fn timestamp(ms: u64) -> Option<jiff::Timestamp> {
    jiff::Timestamp::from_millisecond(i64::try_from(ms).ok()?).ok()
}

/// How long before `now` an RFC 3339 time was (zero if it is later); `None`
/// if it does not parse.
pub fn since(now: jiff::Timestamp, at: &str) -> Option<std::time::Duration> {
    let at: jiff::Timestamp = at.parse().ok()?;
    Some(std::time::Duration::try_from(now.duration_since(at)).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_in_utc_with_milliseconds() {
        let check = |ms: u64, expected: Option<&str>| {
            assert_eq!(timestamp(ms).map(rfc3339_ms).as_deref(), expected, "{ms}");
        };
        check(1_732_440_000_123, Some("2024-11-24T09:20:00.123Z"));
        check(0, Some("1970-01-01T00:00:00.000Z"));
        check(1_732_440_000_000, Some("2024-11-24T09:20:00.000Z"));
        check(u64::MAX, None);
    }

    #[test]
    fn ages_count_from_the_time_and_never_go_negative() {
        let now: jiff::Timestamp = "2026-11-24T10:03:12.500Z".parse().unwrap();
        assert_eq!(
            since(now, "2026-11-24T10:00:00.123Z"),
            Some(std::time::Duration::from_millis(192_377))
        );
        assert_eq!(
            since(now, "2026-11-24T11:00:00.000Z"),
            Some(std::time::Duration::ZERO)
        );
        assert_eq!(since(now, "yesterday"), None);
    }
}
