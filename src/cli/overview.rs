//! The journal overview that `status` and `queue stats` both show, computed
//! once here and serialized in one shape for both `--json` outputs: how the
//! journal was opened, its size and records, the last moment the socket was
//! known live and the open gaps, the last reconciliation sweep, each sink's
//! backlog, dead-letter and set-up problem, and the media stage's backlog.
//!
//! Reads through one read transaction of a [`View`]; knows nothing of the
//! metrics endpoint or the verdict. Of the printing it owns only the backlog
//! columns both commands' tables share.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::table::{Align, age};
use super::view::{Mode, View};
use crate::clock;
use crate::config::Settings;
use crate::journal::{self, GapState, read};

#[derive(Debug, Serialize)]
pub struct Overview {
    /// `mode` (`exclusive`: no daemon runs; `read-only`: beside the daemon
    /// that owns the journal) and `owner_pid`.
    #[serde(flatten)]
    pub mode: Mode,
    pub journal: JournalPart,
    pub reconcile: ReconcilePart,
    /// Every configured sink, then those no longer configured that still hold
    /// records (kept until the sink is configured again).
    pub sinks: Vec<SinkLine>,
    /// The media stage's backlog: records waiting for their files before they
    /// reach the sinks. Absent when media is disabled and nothing waits there.
    pub media: Option<Backlog>,
}

#[derive(Debug, Serialize)]
pub struct JournalPart {
    pub dir: PathBuf,
    pub file_bytes: u64,
    /// Records held for any sink (pending or dead-lettered).
    pub records: u64,
    /// The last moment the WebSocket was known live (RFC 3339), if ever.
    pub last_live_at: Option<String>,
    pub last_live_age_seconds: Option<u64>,
    /// Windows the socket was not live whose reconciliation has not finished.
    pub open_gaps: Vec<GapLine>,
    /// Corrupt journal files moved aside at a start (see `journal::recover`),
    /// kept for inspection until an operator removes them.
    pub quarantined: Vec<PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct GapLine {
    pub from: String,
    pub to: String,
    pub seconds: u64,
}

#[derive(Debug, Serialize)]
pub struct ReconcilePart {
    pub enabled: bool,
    pub interval_seconds: u64,
    /// The end of the last completed sweep's window, about when it started
    /// (RFC 3339); absent if no sweep ever completed.
    pub last_sweep_at: Option<String>,
    pub last_sweep_age_seconds: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct SinkLine {
    pub sink: String,
    /// False for a sink no longer in the configuration that still holds records.
    pub configured: bool,
    #[serde(flatten)]
    pub backlog: Backlog,
    /// The sink's set-up problem while it lasts (every record waits until it
    /// is fixed), as the daemon last stored it: also after it stopped.
    /// `null` when there is none, and for a sink no longer configured.
    pub setup_problem: Option<SetupLine>,
}

/// A set-up problem of a sink: what is wrong and what to fix, and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetupLine {
    pub reason: String,
    /// RFC 3339.
    pub since: String,
    pub since_age_seconds: u64,
}

/// What waits in one outbox and its dead-letter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Backlog {
    /// Records still to be handed on, including those waiting to retry.
    pub pending: u64,
    /// Of those, waiting for a later attempt in the durable retry tier.
    pub retrying: u64,
    pub dead: u64,
    /// `received_at` of the oldest pending record.
    pub oldest_pending: Option<String>,
    pub oldest_pending_age_seconds: Option<u64>,
}

impl Backlog {
    fn of(stats: read::SinkStats, now: jiff::Timestamp) -> Backlog {
        Backlog {
            pending: stats.pending,
            retrying: stats.retrying,
            dead: stats.dead,
            oldest_pending_age_seconds: stats
                .oldest_pending
                .as_deref()
                .and_then(|at| clock::since(now, at))
                .map(|age| age.as_secs()),
            oldest_pending: stats.oldest_pending,
        }
    }

    fn holds_records(&self) -> bool {
        self.pending > 0 || self.dead > 0
    }

    /// The cells under [`BACKLOG_COLUMNS`] for the outbox called `name`.
    pub fn cells(&self, name: &str) -> Vec<String> {
        vec![
            name.to_string(),
            self.pending.to_string(),
            self.retrying.to_string(),
            self.dead.to_string(),
            self.oldest_pending_age_seconds
                .map_or("-".to_string(), |s| age(Duration::from_secs(s))),
        ]
    }
}

/// The columns both commands show for an outbox, in this order.
pub const BACKLOG_COLUMNS: [(&str, Align); 5] = [
    ("SINK", Align::Left),
    ("PENDING", Align::Right),
    ("RETRYING", Align::Right),
    ("DEAD", Align::Right),
    ("OLDEST PENDING", Align::Left),
];

impl Overview {
    /// The overview as of `now`, from one read transaction of `view`.
    pub fn gather(
        view: &View,
        settings: &Settings,
        now: jiff::Timestamp,
    ) -> anyhow::Result<Overview> {
        let txn = view.begin_read()?;
        let now_ms = u64::try_from(now.as_millisecond()).unwrap_or(0);
        let age_seconds = |ms: u64| now_ms.saturating_sub(ms) / 1000;
        let line = |sink: &str, configured: bool| -> anyhow::Result<SinkLine> {
            let setup_problem = match configured {
                true => read::setup_problem(&txn, sink)?.map(|problem| SetupLine {
                    reason: problem.reason,
                    since: written(problem.since_ms),
                    since_age_seconds: age_seconds(problem.since_ms),
                }),
                false => None,
            };
            Ok(SinkLine {
                sink: sink.to_string(),
                configured,
                backlog: Backlog::of(read::sink_stats(&txn, sink)?, now),
                setup_problem,
            })
        };
        let mut sinks = Vec::new();
        for sink in &settings.sinks {
            sinks.push(line(&sink.name, true)?);
        }
        for name in read::known_sinks(&txn)? {
            if settings.sink(&name).is_none() {
                let held = line(&name, false)?;
                if held.backlog.holds_records() {
                    sinks.push(held);
                }
            }
        }
        let media = Backlog::of(read::sink_stats(&txn, journal::MEDIA)?, now);
        let media = (settings.media.enabled || media.pending > 0).then_some(media);

        let live_until = read::live_until(&txn)?;
        let open_gaps = read::gaps(&txn)?
            .into_iter()
            .filter(|gap| gap.state == GapState::Pending)
            .map(|gap| GapLine {
                from: written(gap.start_ms),
                to: written(gap.end_ms),
                seconds: gap.end_ms.saturating_sub(gap.start_ms) / 1000,
            })
            .collect();
        let swept_until = read::meta(&txn, crate::reconcile::SWEPT_UNTIL)?
            .and_then(|v| v.try_into().ok())
            .map(u64::from_le_bytes);
        let dir = &settings.journal.dir;
        Ok(Overview {
            mode: view.mode(),
            journal: JournalPart {
                dir: dir.clone(),
                file_bytes: journal::file_size(dir)?,
                records: read::stored_records(&txn)?,
                last_live_at: live_until.map(written),
                last_live_age_seconds: live_until.map(age_seconds),
                open_gaps,
                quarantined: journal::quarantined(dir),
            },
            reconcile: ReconcilePart {
                enabled: settings.reconcile.enabled,
                interval_seconds: settings.reconcile.interval.as_secs(),
                last_sweep_at: swept_until.map(written),
                last_sweep_age_seconds: swept_until.map(age_seconds),
            },
            sinks,
            media,
        })
    }
}

/// Stored epoch milliseconds as RFC 3339; the number itself if it is out of
/// range (a damaged meta value is still shown, not hidden).
fn written(ms: u64) -> String {
    clock::timestamp(ms).map_or_else(|| ms.to_string(), clock::rfc3339_ms)
}
