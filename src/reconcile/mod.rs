//! Reconciliation: the REST API fills the gaps the WebSocket left (Zoom never
//! replays a socket event).
//!
//! Triggers: every window in the journal's gap ledger (widened by
//! `gap_margin` on both sides, because events arrive late), as soon as the
//! socket is back; a sweep over the last `lookback` every `interval` (the
//! whole lookback at the very first start); and `zcc-relay reconcile`. Each
//! listed item becomes a record with the same type, payload shape and natural
//! key as the socket path would give it (`synth`), and is appended to the
//! journal, whose dedup makes items already seen a no-op. A gap is marked done
//! only after the records it found are committed; a crash mid-run repeats it.
//!
//! Items whose data is not ready yet (no transcript URL, an engagement not
//! ended) yield nothing now and are found by a later sweep.

pub mod synth;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock;
use crate::config::ReconcileSettings;
use crate::journal::{AppendOutcome, GapState, Journal, JournalError};
use crate::lease::ledger::{self, Ledger};
use crate::record::{NewRecord, now_rfc3339};
use crate::service::Heartbeat;
use crate::telemetry::stats::Stats;
use crate::zoom::api::{ApiError, Window, ZoomApi, zoom_time};

/// How often the daemon looks at the gap ledger.
const GAP_POLL: Duration = Duration::from_secs(5);
/// How often a gap whose window is not yet wholly in the past is run again.
const GAP_RERUN: Duration = Duration::from_secs(30);
/// After a failed run, how long before trying again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(60);
/// Meta key: the end of the last completed sweep's window (ms, little-endian;
/// `status` reads it too).
pub const SWEPT_UNTIL: &str = "reconcile_swept_until_ms";

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("Zoom REST API")]
    Api(#[from] ApiError),
    #[error("journal")]
    Journal(#[from] JournalError),
}

/// Where found records go.
pub enum Target {
    /// Append them (the daemon, `zcc-relay reconcile`).
    Apply(Journal),
    /// Only say whether each would be new (`--dry-run`).
    DryRun(IsNew),
}

/// The dedup question of a dry run: would this key (and note version) be new?
pub type IsNew = Box<dyn Fn(&str, Option<[u8; 32]>) -> Result<bool, JournalError> + Send + Sync>;

/// What one run found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RunReport {
    pub from: String,
    pub to: String,
    pub requests: u64,
    /// Items found per event type.
    pub found: BTreeMap<String, u64>,
    /// Of those, new to the journal (added, or that would be added in a dry run).
    pub new: BTreeMap<String, u64>,
}

pub struct Reconciler {
    pub api: Arc<ZoomApi>,
    pub settings: ReconcileSettings,
    pub account_id: String,
    pub stats: Stats,
    /// `[standby]`: the pair's note ledger, which numbers a note version
    /// before it is appended (`lease::ledger`).
    pub ledger: Option<Ledger>,
}

impl Reconciler {
    /// Lists everything Zoom has for `window` and hands it to `target`.
    pub async fn reconcile(
        &self,
        window: Window,
        target: &Target,
    ) -> Result<RunReport, ReconcileError> {
        let requests = self.api.requests();
        let mut report = RunReport {
            from: zoom_time(window.from_ms),
            to: zoom_time(window.to_ms),
            ..RunReport::default()
        };
        let received_at = now_rfc3339();
        let origin = synth::Origin {
            account_id: &self.account_id,
            received_at: &received_at,
        };
        for part in window.split() {
            let query = [
                ("query_date_type", "recording_end_time".to_string()),
                ("from", zoom_time(part.from_ms)),
                ("to", zoom_time(part.to_ms)),
            ];
            let mut pages = self
                .api
                .pages("contact_center/recordings", &query, "recordings");
            while let Some(items) = pages.next().await? {
                let records = items
                    .iter()
                    .flat_map(|item| synth::from_recording(item, &origin))
                    .collect();
                self.take(records, target, &mut report).await?;
            }
        }
        // Engagement listings filter on start time: look further back.
        let lookback = self.settings.engagement_lookback.as_millis() as u64;
        let engagements = Window {
            from_ms: window.from_ms.saturating_sub(lookback),
            to_ms: window.to_ms,
        };
        for part in engagements.split() {
            let query = [
                ("from", zoom_time(part.from_ms)),
                ("to", zoom_time(part.to_ms)),
            ];
            let mut pages = self
                .api
                .pages("contact_center/engagements", &query, "engagements");
            while let Some(items) = pages.next().await? {
                let records = items
                    .iter()
                    .flat_map(|item| synth::from_engagement(item, &origin))
                    .collect();
                self.take(records, target, &mut report).await?;
            }
        }
        for part in window.split() {
            let query = [
                ("message_type", "voicemail".to_string()),
                ("from", zoom_time(part.from_ms)),
                ("to", zoom_time(part.to_ms)),
            ];
            let mut pages = self
                .api
                .pages("contact_center/inboxes/messages", &query, "messages");
            while let Some(items) = pages.next().await? {
                let records = items
                    .iter()
                    .flat_map(|item| synth::from_inbox_message(item, &origin))
                    .collect();
                self.take(records, target, &mut report).await?;
            }
        }
        report.requests = self.api.requests() - requests;
        Ok(report)
    }

    /// The daemon's loop: gaps as they appear, the periodic sweep, until `cancel`.
    /// `heartbeat` beats between runs and during them (a run is made of
    /// requests bounded by their timeouts and of journal appends, whose writer
    /// has its own heartbeat).
    pub async fn run(
        &self,
        journal: Journal,
        cancel: CancellationToken,
        heartbeat: &mut Heartbeat,
    ) -> Result<(), JournalError> {
        let target = Target::Apply(journal.clone());
        let interval = self.settings.interval.as_millis() as u64;
        let lookback = self.settings.lookback.as_millis() as u64;
        let swept_until = journal
            .meta(SWEPT_UNTIL)
            .await?
            .and_then(|v| v.try_into().ok())
            .map(u64::from_le_bytes);
        // First start: the whole lookback at once; later starts: when the last
        // sweep's interval is up (the downtime itself is a gap in the ledger).
        let mut next_sweep = swept_until.map_or(0, |at| at + interval);
        let mut quiet_until = 0;
        let mut last_runs = BTreeMap::new();
        loop {
            let now = clock::now_ms();
            if now >= quiet_until {
                let mut failed = false;
                // A run is dropped at shutdown, mid-request if need be (a 429
                // may ask for hours): what it committed stays, and a window it
                // did not finish is repeated (the gap stays pending, the sweep
                // is not recorded).
                if self.settings.on_reconnect {
                    let gaps =
                        self.reconcile_gaps(&journal, &target, now, lookback, &mut last_runs);
                    let Some(gaps_done) = heartbeat.during(cancel.run_until_cancelled(gaps)).await
                    else {
                        return Ok(());
                    };
                    failed |= !gaps_done?;
                }
                if now >= next_sweep && !failed {
                    let window = Window {
                        from_ms: now.saturating_sub(lookback),
                        to_ms: now,
                    };
                    let sweep = self.logged_run("sweep", window, &target);
                    let Some(swept) = heartbeat.during(cancel.run_until_cancelled(sweep)).await
                    else {
                        return Ok(());
                    };
                    if swept? {
                        journal
                            .set_meta(SWEPT_UNTIL, now.to_le_bytes().to_vec())
                            .await?;
                        next_sweep = now + interval;
                    } else {
                        failed = true;
                    }
                }
                if failed {
                    quiet_until = now + RETRY_AFTER_FAILURE.as_millis() as u64;
                }
            }
            let until_sweep = Duration::from_millis(next_sweep.saturating_sub(clock::now_ms()));
            tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                _ = heartbeat.tick() => {}
                _ = tokio::time::sleep(GAP_POLL.min(until_sweep).max(Duration::from_millis(10))) => {}
            }
        }
    }

    /// Runs every pending gap once, now (a new leader's catch-up before it
    /// opens the socket, docs/contract.md §3.7); false if one failed (it
    /// stays pending). Gaps whose margin is not yet past stay pending for
    /// [`run`](Reconciler::run) to repeat.
    pub async fn catch_up(&self, journal: &Journal) -> Result<bool, JournalError> {
        let target = Target::Apply(journal.clone());
        let lookback = self.settings.lookback.as_millis() as u64;
        self.reconcile_gaps(
            journal,
            &target,
            clock::now_ms(),
            lookback,
            &mut BTreeMap::new(),
        )
        .await
    }

    /// Reconciles every pending gap that is due; false if one failed (it stays
    /// pending). A gap is run as soon as it is recorded and then every
    /// [`GAP_RERUN`] until its window, margin included, lies in the past: items
    /// in it that were not ready (an engagement still going, a transcript not
    /// made yet) are found by a later run. Only then is it marked done.
    async fn reconcile_gaps(
        &self,
        journal: &Journal,
        target: &Target,
        now: u64,
        lookback: u64,
        last_runs: &mut BTreeMap<(u64, u64), u64>,
    ) -> Result<bool, JournalError> {
        let margin = self.settings.gap_margin.as_millis() as u64;
        let rerun = GAP_RERUN.as_millis() as u64;
        for gap in journal.gaps().await? {
            let key = (gap.start_ms, gap.end_ms);
            if gap.state != GapState::Pending
                || last_runs.get(&key).is_some_and(|at| now < at + rerun)
            {
                continue;
            }
            let window = Window {
                from_ms: gap
                    .start_ms
                    .saturating_sub(margin)
                    .max(now.saturating_sub(lookback)),
                to_ms: (gap.end_ms + margin).min(now.max(gap.end_ms)),
            };
            if !self.logged_run("gap", window, target).await? {
                return Ok(false);
            }
            if now >= gap.end_ms + margin {
                // Only now, with the records it found committed.
                journal.gap_done(gap.start_ms, gap.end_ms).await?;
                last_runs.remove(&key);
            } else {
                last_runs.insert(key, now);
            }
        }
        Ok(true)
    }

    /// One run with its log line; false if Zoom's API failed it.
    async fn logged_run(
        &self,
        trigger: &str,
        window: Window,
        target: &Target,
    ) -> Result<bool, JournalError> {
        match self.reconcile(window, target).await {
            Ok(report) => {
                let found: u64 = report.found.values().sum();
                let new: u64 = report.new.values().sum();
                tracing::info!(
                    trigger,
                    from = %report.from,
                    to = %report.to,
                    requests = report.requests,
                    found,
                    new,
                    new_by_type = %summary(&report.new),
                    "reconciled"
                );
                self.stats.reconcile_run(true);
                Ok(true)
            }
            Err(ReconcileError::Journal(e)) => Err(e),
            Err(ReconcileError::Api(e)) => {
                self.stats.reconcile_run(false);
                tracing::warn!(trigger, error = %e, retry_in = "1m", "reconciliation failed; the window stays pending");
                Ok(false)
            }
        }
    }

    /// Appends (or checks) one page's records and counts them.
    async fn take(
        &self,
        records: Vec<NewRecord>,
        target: &Target,
        report: &mut RunReport,
    ) -> Result<(), ReconcileError> {
        let mut pending = Vec::new();
        for record in records {
            *report.found.entry(record.event.clone()).or_default() += 1;
            match target {
                Target::DryRun(is_new) => {
                    if is_new(&record.id, record.version)? {
                        *report.new.entry(record.event.clone()).or_default() += 1;
                    }
                }
                Target::Apply(journal) => {
                    let event = record.event.clone();
                    let rx = ledger::submit(self.ledger.as_ref(), journal, record, None).await?;
                    pending.push((event, rx));
                }
            }
        }
        for (event, rx) in pending {
            if let AppendOutcome::Stored { .. } = rx.await.map_err(|_| JournalError::Closed)?? {
                self.stats.reconciled(&event);
                *report.new.entry(event).or_default() += 1;
            }
        }
        Ok(())
    }
}

fn summary(counts: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = counts
        .iter()
        .map(|(event, n)| format!("{}={n}", event.trim_start_matches("contact_center.")))
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(",")
    }
}
