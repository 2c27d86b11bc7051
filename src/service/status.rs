//! The one-line `STATUS=` that `systemctl status zcc-relay` shows: the socket's
//! state, the sinks that are failing and the records waiting for delivery, e.g.
//! `connected; 0 pending`, `reconnecting in 4s; 12 pending`,
//! `connected; sinks failing: crm; 120 pending`.
//!
//! Owns the wording ([`line`], pure) and the task that sends it when it
//! changes: at once on every connection state change and failing/recovered
//! transition, and when the pending count changed, looked at every [`REFRESH`].

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::notify::Notifier;
use crate::clock;
use crate::journal::Journal;
use crate::source::ConnectionState;

/// How often the pending count is looked at again.
pub const REFRESH: Duration = Duration::from_secs(10);

/// The status line. `pending` is `None` when the journal could not say.
pub fn line(
    state: &ConnectionState,
    failing: &BTreeSet<String>,
    pending: Option<u64>,
    now_ms: u64,
) -> String {
    let mut parts = vec![match state {
        ConnectionState::Connecting | ConnectionState::AwaitingBuildConnection => {
            "connecting to Zoom".to_owned()
        }
        ConnectionState::Live { .. } => "connected".to_owned(),
        ConnectionState::BackingOff { retry_at_ms, .. } => {
            let seconds = retry_at_ms.saturating_sub(now_ms).div_ceil(1000);
            format!("reconnecting in {seconds}s")
        }
        ConnectionState::Standby => "socket closed (standby)".to_owned(),
        ConnectionState::Stopped => "stopped".to_owned(),
    }];
    if !failing.is_empty() {
        let names: Vec<&str> = failing.iter().map(String::as_str).collect();
        parts.push(format!("sinks failing: {}", names.join(", ")));
    }
    if let Some(pending) = pending {
        parts.push(format!("{pending} pending"));
    }
    parts.join("; ")
}

/// `line` under `[standby]`: the role, the holder and the lease's age
/// first, e.g. `leader (lease 42s); connected; 0 pending` or
/// `standby (leader relay-b:812, lease 42s); socket closed (standby); 3 pending`.
pub fn with_role(line: String, role: &crate::lease::RoleRecord) -> String {
    let age = role
        .lease_age_seconds
        .map_or_else(String::new, |age| format!("lease {age}s"));
    let role_text = match (role.role.as_str(), &role.holder) {
        ("leader", _) => format!("leader ({age})"),
        (_, Some(holder)) => format!("standby (leader {holder}, {age})"),
        (_, None) => "standby (no leader)".to_owned(),
    };
    format!("{role_text}; {line}")
}

/// Records waiting for any sink (a record waiting for two sinks counts twice)
/// or for their media (once).
pub async fn pending(journal: &Journal) -> Option<u64> {
    let counts = async {
        let sinks: u64 = journal.stats().await?.iter().map(|s| s.pending).sum();
        Ok::<_, crate::journal::JournalError>(sinks + journal.media_stats().await?.pending)
    };
    match counts.await {
        Ok(pending) => Some(pending),
        Err(e) => {
            tracing::debug!(error = %e, "no pending count for the status line");
            None
        }
    }
}

/// Sends the status line whenever it changes, until `stop` fires. `last` is
/// the line already sent (with READY=1).
pub async fn run(
    notifier: Notifier,
    journal: Journal,
    mut state: watch::Receiver<ConnectionState>,
    mut failing: watch::Receiver<BTreeSet<String>>,
    lease: Option<crate::lease::LeaseView>,
    mut last: String,
    stop: CancellationToken,
) {
    let mut role = lease.as_ref().map(|lease| lease.role.clone());
    let mut role_open = role.is_some();
    let mut refresh = tokio::time::interval(REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut state_open, mut failing_open) = (true, true);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = state.changed(), if state_open => state_open = changed.is_ok(),
            changed = failing.changed(), if failing_open => failing_open = changed.is_ok(),
            changed = async { role.as_mut()?.changed().await.ok() }, if role_open => {
                role_open = changed.is_some();
            }
            _ = refresh.tick() => {}
        }
        let count = pending(&journal).await;
        let now_ms = clock::now_ms();
        let mut now = line(
            &state.borrow_and_update(),
            &failing.borrow_and_update(),
            count,
            now_ms,
        );
        if let Some(lease) = &lease {
            now = with_role(now, &lease.record(now_ms));
        }
        if now != last {
            notifier.status(&now);
            last = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `[standby]`: the role, the holder and the lease's age come first.
    #[test]
    fn the_role_comes_first_under_standby() {
        use crate::lease::{Holding, Role};
        let now_ms = 100_000;
        let leader = Role::Leader {
            acquired_ms: 58_000,
            expires: tokio::time::Instant::now(),
        };
        let standby = Role::Standby {
            holder: Some(Holding {
                holder: "vm-b:812".into(),
                acquired_ms: 58_000,
            }),
        };
        let rows = [
            (
                leader,
                ConnectionState::Live { since_ms: 1 },
                "leader (lease 42s); connected; 0 pending",
            ),
            (
                standby,
                ConnectionState::Standby,
                "standby (leader vm-b:812, lease 42s); socket closed (standby); 3 pending",
            ),
            (
                Role::Standby { holder: None },
                ConnectionState::Standby,
                "standby (no leader); socket closed (standby); 3 pending",
            ),
        ];
        for (role, state, expected) in rows {
            let pending = if role.is_leader() { 0 } else { 3 };
            let plain = line(&state, &BTreeSet::new(), Some(pending), now_ms);
            assert_eq!(with_role(plain, &role.record("vm-a:7", now_ms)), expected);
        }
    }

    fn check(state: ConnectionState, failing: &[&str], pending: Option<u64>, expected: &str) {
        let failing = failing.iter().map(|s| s.to_string()).collect();
        assert_eq!(line(&state, &failing, pending, 10_000), expected);
    }

    /// The pending count includes records waiting for their media (before
    /// they reach any sink outbox) as well as those in the outboxes.
    #[tokio::test]
    async fn pending_counts_the_media_stage_and_the_sinks() {
        use crate::journal::SinkRoute;
        use crate::route::EventFilter;
        let dir = tempfile::tempdir().unwrap();
        let routes = ["a", "b"]
            .map(|name| SinkRoute {
                name: name.into(),
                filter: EventFilter::all(),
            })
            .to_vec();
        let journal =
            Journal::open_with_media(dir.path(), routes, Some(crate::media::media_events()))
                .unwrap();
        let append = |body: &str| {
            let record = crate::zoom::event::parse_body(
                body,
                crate::record::Source::Websocket,
                "2026-11-26T10:00:00.000Z".into(),
                0,
            )
            .unwrap();
            let journal = journal.clone();
            async move { journal.append(record).await.unwrap() }
        };
        append(r#"{"event":"contact_center.recording_completed","event_ts":1,"payload":{"account_id":"x","object":{"recording_id":"R1","engagement_id":"E1"}}}"#).await;
        append(r#"{"event":"contact_center.engagement_started","event_ts":2,"payload":{"account_id":"x","object":{"engagement_id":"E1"}}}"#).await;
        // The recording waits for its media (1); the other record for both sinks (2).
        assert_eq!(pending(&journal).await, Some(3));
        journal.close().await;
    }

    #[test]
    fn says_what_an_operator_needs_in_one_line() {
        check(
            ConnectionState::Live { since_ms: 1 },
            &[],
            Some(0),
            "connected; 0 pending",
        );
        check(
            ConnectionState::Connecting,
            &[],
            Some(3),
            "connecting to Zoom; 3 pending",
        );
        check(
            ConnectionState::AwaitingBuildConnection,
            &[],
            None,
            "connecting to Zoom",
        );
        check(
            ConnectionState::BackingOff {
                reason: "closed by Zoom".into(),
                retry_at_ms: 13_500,
            },
            &[],
            Some(12),
            "reconnecting in 4s; 12 pending",
        );
        check(
            ConnectionState::BackingOff {
                reason: "x".into(),
                retry_at_ms: 9_000,
            },
            &[],
            None,
            "reconnecting in 0s",
        );
        check(
            ConnectionState::Live { since_ms: 1 },
            &["erp", "crm"],
            Some(120),
            "connected; sinks failing: crm, erp; 120 pending",
        );
        check(ConnectionState::Stopped, &[], Some(5), "stopped; 5 pending");
    }
}
