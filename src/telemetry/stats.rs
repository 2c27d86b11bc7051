//! In-process counters: events received, persisted and suppressed as
//! duplicates per event type, records delivered per sink and type, frames
//! refused, when the socket last proved alive, reconciliation runs, sinks
//! currently failing, delivery latency, and where the metrics endpoint
//! listens. Cheap to update from any task; read as a consistent snapshot (the
//! demo, the tests, `telemetry::metrics`).
//!
//! Event types are Zoom's to name, so they are counted under [`event_label`]:
//! the known ZCC types by name, anything else as `other`. Memory and the
//! metrics' label set stay bounded whatever names arrive.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::watch;

/// The ZCC event types counted by name (zoom-reference §3): every other name
/// is counted as [`OTHER_EVENT`].
pub const KNOWN_EVENTS: &[&str] = &[
    "contact_center.recording_completed",
    "contact_center.recording_transcript_completed",
    "contact_center.engagement_messaging_transcript_completed",
    "contact_center.engagement_email_transcript_completed",
    "contact_center.engagement_note_added",
    "contact_center.engagement_disposition_added",
    "contact_center.inbox_message_received",
    "contact_center.inbox_message_assigned",
    "contact_center.inbox_message_opened",
    "contact_center.inbox_message_downloaded",
    "contact_center.inbox_message_deleted",
    "contact_center.inbox_message_resolved",
    "contact_center.inbox_message_reopened",
    "contact_center.voicemail_transcript_completed",
    "contact_center.engagement_started",
    "contact_center.engagement_ended",
    "contact_center.engagement_wrap_up_started",
    "contact_center.engagement_wrap_up_ended",
    "contact_center.cx_engagement_end_data_ready",
    "contact_center.legacy_engagement_end_data_ready",
    "contact_center.engagement_user_answered",
    "contact_center.engagement_user_ended",
    "contact_center.engagement_user_hold",
    "contact_center.engagement_user_unhold",
    "contact_center.engagement_user_muted",
    "contact_center.engagement_user_unmuted",
    "contact_center.engagement_user_dtmf_sent",
    "contact_center.engagement_user_sent_message",
    "contact_center.engagement_user_sent_file",
    "contact_center.engagement_consumer_notified",
    "contact_center.engagement_consumer_answered",
    "contact_center.engagement_consumer_ended",
    "contact_center.engagement_consumer_sent_message",
    "contact_center.engagement_consumer_sent_file",
    "contact_center.engagement_transfer_initiated",
    "contact_center.engagement_transfer_queued",
    "contact_center.engagement_transfer_reserved",
    "contact_center.engagement_transfer_accepted",
    "contact_center.engagement_transfer_rejected",
    "contact_center.engagement_transfer_completed",
    "contact_center.engagement_transfer_canceled",
    "contact_center.engagement_transfer_timeout",
    "contact_center.engagement_upgrade_initiated",
    "contact_center.engagement_upgrade_completed",
    "contact_center.engagement_upgrade_expired",
    "contact_center.engagement_monitor_started",
    "contact_center.engagement_monitor_ended",
    "contact_center.engagement_takeover_started",
    "contact_center.engagement_survey_status",
    "contact_center.task_created",
    "contact_center.task_updated",
    "contact_center.task_completed",
    "contact_center.task_canceled",
    "contact_center.task_deleted",
    "contact_center.task_entered_queue",
    "contact_center.task_exited_queue",
    "contact_center.user_login",
    "contact_center.user_logout",
    "contact_center.user_status_changed",
    "contact_center.user_opt_in",
    "contact_center.user_opt_out",
    "contact_center.user_created",
    "contact_center.user_updated",
    "contact_center.user_deleted",
    "contact_center.sms_status",
    "contact_center.message_status",
    "contact_center.outbound_campaign_dialer_status",
    "contact_center.call_control_make_call_executed",
    "contact_center.voice_rtms_started",
    "contact_center.voice_rtms_stopped",
];

/// The label of every event type not in [`KNOWN_EVENTS`].
pub const OTHER_EVENT: &str = "other";

/// The name an event type is counted under: itself when known, else `other`.
pub fn event_label(event: &str) -> &'static str {
    KNOWN_EVENTS
        .iter()
        .find(|known| **known == event)
        .copied()
        .unwrap_or(OTHER_EVENT)
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypeCounts {
    pub received: u64,
    pub persisted: u64,
    pub duplicates: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub by_event: BTreeMap<String, TypeCounts>,
    /// (sink, event) → delivered.
    pub delivered: BTreeMap<(String, String), u64>,
    pub dead_lettered: BTreeMap<String, u64>,
    /// event → records that only reconciliation found.
    pub reconciled: BTreeMap<String, u64>,
    pub bad_frames: u64,
    pub connects: u64,
    /// "Connected in another place": another connection took the subscription.
    pub evictions: u64,
    /// Changes of the active/standby role (`[standby]`).
    pub role_changes: u64,
    /// `[standby]`: note versions numbered without the pair's ledger.
    pub ledger_fallbacks: u64,
    /// When the last event body was read from the socket (`clock::now_ms`).
    pub last_event_ms: Option<u64>,
    /// When Zoom last answered a heartbeat (`clock::now_ms`).
    pub last_heartbeat_reply_ms: Option<u64>,
    /// Reconciliation runs that finished, and those Zoom's API failed.
    pub reconcile_runs: u64,
    pub reconcile_failures: u64,
    /// Sinks whose last attempt failed temporarily and that have not
    /// delivered since (a copy of [`Stats::failing_sinks`] at snapshot time).
    pub failing_sinks: BTreeSet<String>,
    /// Sinks whose last failure was a set-up problem (credentials, a missing
    /// field or permission: what `zcc-relay check` proves) and that have not
    /// delivered since.
    pub setup_error_sinks: BTreeSet<String>,
    /// Where the metrics endpoint serves, once it does (`listen = "…:0"`
    /// binds any free port).
    pub metrics_listen: Option<SocketAddr>,
}

impl Snapshot {
    pub fn delivered_to(&self, sink: &str) -> u64 {
        self.delivered
            .iter()
            .filter(|((s, _), _)| s == sink)
            .map(|(_, n)| n)
            .sum()
    }
}

/// Labels of the per-sink delivery latency histogram: `[("sink", name)]`.
pub type SinkLabels = Vec<(String, String)>;
pub type LatencyFamily = Family<SinkLabels, Histogram, fn() -> Histogram>;

/// Upper bounds (seconds) of the delivery latency buckets: from a healthy
/// sink's tens of milliseconds to a record that waited out a day-long outage.
const LATENCY_BUCKETS: [f64; 16] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 7200.0,
    86400.0,
];

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

#[derive(Clone)]
pub struct Stats {
    inner: Arc<Mutex<Snapshot>>,
    /// Bumped on every update, so waiters wake on change instead of polling.
    changes: Arc<watch::Sender<u64>>,
    /// Atomic buckets, shared with the metrics endpoint as they are.
    latency: LatencyFamily,
    /// The sinks failing now: the one record of it, read by the metrics
    /// endpoint (through snapshots) and the service's STATUS line (watching it).
    failing: Arc<watch::Sender<BTreeSet<String>>>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            inner: Arc::default(),
            changes: Arc::new(watch::channel(0).0),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            failing: Arc::new(watch::channel(BTreeSet::new()).0),
        }
    }
}

impl Stats {
    fn update(&self, f: impl FnOnce(&mut Snapshot)) {
        // A poisoned lock only means another thread panicked mid-increment;
        // counts are still worth keeping.
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard);
        drop(guard);
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Waits until `condition` holds for a snapshot (checked now and after
    /// every change).
    pub async fn wait_until(&self, mut condition: impl FnMut(&Snapshot) -> bool) {
        let mut changes = self.changes.subscribe();
        loop {
            changes.borrow_and_update();
            if condition(&self.snapshot()) {
                return;
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    pub fn metrics_listening(&self, address: SocketAddr) {
        self.update(|s| s.metrics_listen = Some(address));
    }

    pub fn received(&self, event: &str) {
        let now = crate::clock::now_ms();
        self.update(|s| {
            s.by_event
                .entry(event_label(event).to_string())
                .or_default()
                .received += 1;
            s.last_event_ms = Some(now);
        });
    }

    /// Zoom answered a heartbeat: the socket is alive end to end.
    pub fn heartbeat_reply(&self) {
        let now = crate::clock::now_ms();
        self.update(|s| s.last_heartbeat_reply_ms = Some(now));
    }

    pub fn persisted(&self, event: &str) {
        self.update(|s| {
            s.by_event
                .entry(event_label(event).to_string())
                .or_default()
                .persisted += 1
        });
    }

    pub fn duplicate(&self, event: &str) {
        self.update(|s| {
            s.by_event
                .entry(event_label(event).to_string())
                .or_default()
                .duplicates += 1
        });
    }

    pub fn delivered(&self, sink: &str, event: &str) {
        self.update(|s| {
            *s.delivered
                .entry((sink.to_string(), event_label(event).to_string()))
                .or_default() += 1
        });
    }

    /// Seconds from a record's `received_at` to the sink's 2xx.
    pub fn delivery_latency(&self, sink: &str, seconds: f64) {
        self.latency
            .get_or_create(&vec![("sink".to_string(), sink.to_string())])
            .observe(seconds);
    }

    pub fn latency(&self) -> &LatencyFamily {
        &self.latency
    }

    /// A sink's health changed: failing (a temporary error) or recovered.
    /// Watchers of [`Stats::failing_sinks`] wake only when the set changes.
    pub fn sink_failing(&self, sink: &str, failing: bool) {
        let changed = self.failing.send_if_modified(|set| {
            if failing {
                set.insert(sink.to_string())
            } else {
                set.remove(sink)
            }
        });
        if changed {
            self.changes.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Whether a sink's last failure was a set-up problem (`true`), or it
    /// failed otherwise or delivered since (`false`). Any sink kind: the class
    /// of its [`Failure`](crate::failure::Failure) decides.
    pub fn sink_setup_error(&self, sink: &str, setup: bool) {
        let guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let unchanged = guard.setup_error_sinks.contains(sink) == setup;
        drop(guard);
        if unchanged {
            return;
        }
        self.update(|s| {
            if setup {
                s.setup_error_sinks.insert(sink.to_string());
            } else {
                s.setup_error_sinks.remove(sink);
            }
        });
    }

    /// The sinks failing now, and changes to that set.
    pub fn failing_sinks(&self) -> watch::Receiver<BTreeSet<String>> {
        self.failing.subscribe()
    }

    /// A reconciliation run ended; `ok` is false when Zoom's API failed it.
    pub fn reconcile_run(&self, ok: bool) {
        self.update(|s| {
            s.reconcile_runs += 1;
            if !ok {
                s.reconcile_failures += 1;
            }
        });
    }

    pub fn dead_lettered(&self, sink: &str) {
        self.update(|s| *s.dead_lettered.entry(sink.to_string()).or_default() += 1);
    }

    pub fn reconciled(&self, event: &str) {
        self.update(|s| {
            *s.reconciled
                .entry(event_label(event).to_string())
                .or_default() += 1
        });
    }

    pub fn bad_frame(&self) {
        self.update(|s| s.bad_frames += 1);
    }

    pub fn connected(&self) {
        self.update(|s| s.connects += 1);
    }

    pub fn evicted(&self) {
        self.update(|s| s.evictions += 1);
    }

    pub fn role_changed(&self) {
        self.update(|s| s.role_changes += 1);
    }

    pub fn ledger_fallback(&self) {
        self.update(|s| s.ledger_fallbacks += 1);
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut snapshot = self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone();
        snapshot.failing_sinks = self.failing.borrow().clone();
        snapshot
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn event_labels_are_bounded_to_the_known_types_plus_other() {
        let stats = super::Stats::default();
        for n in 0..10_000 {
            let name = format!("contact_center.made_up_{n}");
            stats.received(&name);
            stats.persisted(&name);
            stats.delivered("crm", &name);
            stats.reconciled(&name);
        }
        stats.received("contact_center.recording_completed");
        let snapshot = stats.snapshot();
        let labels: Vec<&str> = snapshot.by_event.keys().map(String::as_str).collect();
        assert_eq!(labels, ["contact_center.recording_completed", "other"]);
        assert_eq!(snapshot.by_event["other"].received, 10_000);
        assert_eq!(snapshot.delivered.len(), 1);
        assert_eq!(snapshot.reconciled.len(), 1);
    }

    use super::*;

    #[test]
    fn failing_sinks_change_only_on_transitions() {
        let stats = Stats::default();
        let mut failing = stats.failing_sinks();
        stats.sink_failing("crm", true);
        assert!(failing.has_changed().unwrap());
        assert_eq!(
            *failing.borrow_and_update(),
            BTreeSet::from(["crm".to_owned()])
        );
        assert_eq!(
            stats.snapshot().failing_sinks,
            BTreeSet::from(["crm".to_owned()])
        );
        stats.sink_failing("crm", true);
        assert!(!failing.has_changed().unwrap());
        stats.sink_failing("crm", false);
        assert!(failing.has_changed().unwrap());
        assert!(failing.borrow_and_update().is_empty());
        assert!(stats.snapshot().failing_sinks.is_empty());
    }

    #[test]
    fn set_up_errors_are_kept_per_sink_until_cleared() {
        let stats = Stats::default();
        stats.sink_setup_error("salesforce", true);
        stats.sink_setup_error("crm", false);
        assert_eq!(
            stats.snapshot().setup_error_sinks,
            BTreeSet::from(["salesforce".to_owned()])
        );
        // A temporary failure after the set-up one: the last failure decides.
        stats.sink_setup_error("salesforce", false);
        assert!(stats.snapshot().setup_error_sinks.is_empty());
    }
}
