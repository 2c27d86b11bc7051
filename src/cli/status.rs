//! `zcc-relay status`: the operator's one-screen view, whether or not the
//! daemon runs. From the journal (read-only beside a running daemon, through
//! `queue::view`): each sink's backlog and dead-letter, the last moment the
//! socket was known live, the open gaps, the journal's size. From the metrics
//! endpoint, when `[metrics] listen` is set and the daemon answers: the
//! socket's state, the seconds since its last event and heartbeat reply,
//! reconnects, and which sinks are failing right now.
//!
//! Owns the verdict and its exit code (0 healthy, 2 needs attention, 3 not
//! running); the figures come from `journal::read` and
//! `telemetry::metrics::parse`, and nothing here writes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;

use crate::config::Settings;
use crate::journal::{self, GapState, read};
use crate::cli::queue::table::{Align, Table, age, size};
use crate::cli::queue::view::View;
use crate::telemetry::metrics::{self, Sample};

/// Why there is no live part when the daemon has no endpoint: said, and not a
/// problem.
const NO_ENDPOINT: &str = "metrics.listen is not set, so the live socket state is unknown";

/// How long `status` waits for the metrics endpoint.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(long, default_value = crate::config::DEFAULT_PATH)]
    pub config: PathBuf,
    /// One JSON document on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The verdict, in increasing order of precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    Healthy,
    Attention,
    NotRunning,
}

impl Health {
    /// `status`'s exit code for this verdict.
    pub fn exit_code(self) -> u8 {
        match self {
            Health::Healthy => 0,
            Health::Attention => 2,
            Health::NotRunning => 3,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub health: Health,
    /// Why the verdict is not `healthy`, one sentence each.
    pub problems: Vec<String>,
    pub daemon: Daemon,
    pub journal: JournalPart,
    pub reconcile: ReconcilePart,
    pub sinks: Vec<SinkLine>,
    /// From the metrics endpoint; absent when the daemon is not running,
    /// `[metrics] listen` is not set, or the endpoint did not answer
    /// (`live_unavailable` says which).
    pub live: Option<Live>,
    pub live_unavailable: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Daemon {
    pub running: bool,
    pub pid: Option<u32>,
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
    pub quarantined: Vec<PathBuf>,
    /// The media stage's backlog: records waiting for their files before they
    /// reach the sinks. Absent when media is disabled and nothing waits there.
    pub media: Option<MediaLine>,
}

#[derive(Debug, Serialize)]
pub struct MediaLine {
    pub pending: u64,
    /// Of those, waiting for a later attempt (not available yet, or failing).
    pub retrying: u64,
    pub oldest_pending_age_seconds: Option<u64>,
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

/// A sweep this much later than `reconcile.interval` means sweeps are failing.
const SWEEP_SLACK: Duration = Duration::from_secs(300);

#[derive(Debug, Serialize)]
pub struct GapLine {
    pub from: String,
    pub to: String,
    pub seconds: u64,
}

#[derive(Debug, Serialize)]
pub struct SinkLine {
    pub sink: String,
    /// False for a sink no longer in the configuration that still holds records.
    pub configured: bool,
    pub pending: u64,
    pub retrying: u64,
    pub dead: u64,
    pub oldest_pending: Option<String>,
    pub oldest_pending_age_seconds: Option<u64>,
    /// From the endpoint: the last attempt failed and nothing was delivered since.
    pub failing: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct Live {
    pub endpoint: String,
    /// `connecting`, `awaiting_build_connection`, `live`, `backing_off` or `stopped`.
    pub socket_state: Option<String>,
    pub last_event_age_seconds: Option<f64>,
    pub last_heartbeat_reply_age_seconds: Option<f64>,
    pub reconnects: Option<u64>,
    pub token_refreshes: Option<u64>,
}

/// Builds the report and prints it; the verdict decides the exit code.
pub fn run(args: &StatusArgs, settings: &Settings) -> anyhow::Result<Health> {
    let report = gather(settings, jiff::Timestamp::now())?;
    let text = if args.json {
        let mut text = serde_json::to_string_pretty(&report).context("cannot encode the report")?;
        text.push('\n');
        text
    } else {
        render(&report)
    };
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    // A closed pipe (`status | head`) is not a failure of the status.
    let _ = stdout.write_all(text.as_bytes());
    Ok(report.health)
}

fn rfc3339_ms(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
        .map(|at| at.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

fn seconds_since(now: jiff::Timestamp, at: &str) -> Option<u64> {
    let at: jiff::Timestamp = at.parse().ok()?;
    Some(now.duration_since(at).as_secs().max(0) as u64)
}

fn gather(settings: &Settings, now: jiff::Timestamp) -> anyhow::Result<Report> {
    let view = View::open(settings)?;
    let mode = view.mode();
    let running = mode.mode == "read-only";
    let txn = view.begin_read()?;
    let mut sinks = Vec::new();
    let line = |sink: &str, configured: bool| -> anyhow::Result<SinkLine> {
        let stats = read::sink_stats(&txn, sink)?;
        Ok(SinkLine {
            sink: stats.sink,
            configured,
            pending: stats.pending,
            retrying: stats.retrying,
            dead: stats.dead,
            oldest_pending_age_seconds: stats
                .oldest_pending
                .as_deref()
                .and_then(|at| seconds_since(now, at)),
            oldest_pending: stats.oldest_pending,
            failing: None,
        })
    };
    for sink in &settings.sinks {
        sinks.push(line(&sink.name, true)?);
    }
    for name in read::known_sinks(&txn)? {
        if settings.sink(&name).is_none() {
            let held = line(&name, false)?;
            if held.pending > 0 || held.dead > 0 {
                sinks.push(held);
            }
        }
    }
    let now_ms = now.as_millisecond().max(0) as u64;
    let live_until = read::live_until(&txn)?;
    let open_gaps = read::gaps(&txn)?
        .into_iter()
        .filter(|gap| gap.state == GapState::Pending)
        .map(|gap| GapLine {
            from: rfc3339_ms(gap.start_ms),
            to: rfc3339_ms(gap.end_ms),
            seconds: gap.end_ms.saturating_sub(gap.start_ms) / 1000,
        })
        .collect();
    let swept_until = read::meta(&txn, crate::reconcile::SWEPT_UNTIL)?
        .and_then(|v| v.try_into().ok())
        .map(u64::from_le_bytes);
    let reconcile = ReconcilePart {
        enabled: settings.reconcile.enabled,
        interval_seconds: settings.reconcile.interval.as_secs(),
        last_sweep_at: swept_until.map(rfc3339_ms),
        last_sweep_age_seconds: swept_until.map(|ms| now_ms.saturating_sub(ms) / 1000),
    };
    let media = read::sink_stats(&txn, journal::MEDIA)?;
    let media = (settings.media.enabled || media.pending > 0).then(|| MediaLine {
        pending: media.pending,
        retrying: media.retrying,
        oldest_pending_age_seconds: media
            .oldest_pending
            .as_deref()
            .and_then(|at| seconds_since(now, at)),
    });
    let dir = &settings.journal.dir;
    let journal = JournalPart {
        dir: dir.clone(),
        file_bytes: journal::file_size(dir)?,
        records: read::stored_records(&txn)?,
        last_live_at: live_until.map(rfc3339_ms),
        last_live_age_seconds: live_until.map(|ms| now_ms.saturating_sub(ms) / 1000),
        open_gaps,
        quarantined: journal::quarantined(dir),
        media,
    };
    drop(txn);
    drop(view);

    let (live, live_unavailable) = match (running, settings.metrics.listen) {
        (false, _) => (None, None),
        (true, None) => (None, Some(NO_ENDPOINT.to_string())),
        (true, Some(address)) => match scrape(address) {
            Ok(samples) => (Some(live_part(address, &samples, &mut sinks)), None),
            Err(e) => (
                None,
                Some(format!("the metrics endpoint did not answer: {e:#}")),
            ),
        },
    };
    let mut report = Report {
        health: Health::Healthy,
        problems: Vec::new(),
        daemon: Daemon {
            running,
            pid: mode.owner_pid,
        },
        journal,
        reconcile,
        sinks,
        live,
        live_unavailable,
    };
    let (health, problems) = assess(&report);
    report.health = health;
    report.problems = problems;
    Ok(report)
}

fn endpoint(address: SocketAddr) -> String {
    format!("http://{address}/metrics")
}

/// `GET /metrics` on the daemon's endpoint, on a runtime of its own.
fn scrape(address: SocketAddr) -> anyhow::Result<Vec<Sample>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let tls = crate::tls::client_config().context("cannot set up TLS")?;
    let client =
        crate::tls::http_client(&tls, SCRAPE_TIMEOUT).context("cannot build HTTP client")?;
    let url = endpoint(address);
    let text = runtime.block_on(async {
        // The whole chain of causes ("… tcp connect error: Connection refused").
        let failed = |e: reqwest::Error| anyhow::Error::new(e.without_url()).context(url.clone());
        let response = client.get(&url).send().await.map_err(failed)?;
        let status = response.status();
        anyhow::ensure!(status.is_success(), "{url} answered {status}");
        response.text().await.map_err(failed)
    })?;
    Ok(metrics::parse(&text))
}

fn live_part(address: SocketAddr, samples: &[Sample], sinks: &mut [SinkLine]) -> Live {
    let value = |name: &str| samples.iter().find(|s| s.name == name).map(|s| s.value);
    let socket_state = samples
        .iter()
        .find(|s| s.name == "zcc_relay_websocket_state" && s.value == 1.0)
        .and_then(|s| s.labels.get("state").cloned());
    let failing: BTreeMap<&str, bool> = samples
        .iter()
        .filter(|s| s.name == "zcc_relay_sink_failing")
        .filter_map(|s| Some((s.labels.get("sink")?.as_str(), s.value == 1.0)))
        .collect();
    for sink in sinks.iter_mut() {
        sink.failing = failing.get(sink.sink.as_str()).copied();
    }
    Live {
        endpoint: endpoint(address),
        socket_state,
        last_event_age_seconds: value("zcc_relay_websocket_last_event_age_seconds"),
        last_heartbeat_reply_age_seconds: value(
            "zcc_relay_websocket_last_heartbeat_reply_age_seconds",
        ),
        reconnects: value("zcc_relay_websocket_reconnects_total").map(|v| v as u64),
        token_refreshes: value("zcc_relay_token_refreshes_total").map(|v| v as u64),
    }
}

/// The verdict and its reasons. Not running wins over everything; any
/// problem makes it `attention`.
fn assess(report: &Report) -> (Health, Vec<String>) {
    let mut problems = Vec::new();
    if !report.daemon.running {
        problems.push("zcc-relay is not running on this journal".to_string());
    }
    if let Some(live) = &report.live
        && let Some(state) = &live.socket_state
        && state != "live"
    {
        problems.push(format!("the Zoom WebSocket is not live (state: {state})"));
    }
    if let Some(why) = &report.live_unavailable
        && report.daemon.running
        && why != NO_ENDPOINT
    {
        problems.push(why.clone());
    }
    let reconcile = &report.reconcile;
    if report.daemon.running
        && reconcile.enabled
        && let Some(age_seconds) = reconcile.last_sweep_age_seconds
        && age_seconds > 2 * reconcile.interval_seconds + SWEEP_SLACK.as_secs()
    {
        problems.push(format!(
            "no reconciliation sweep has completed for {} (reconcile.interval is {}); the log \
             says why",
            age(Duration::from_secs(age_seconds)),
            age(Duration::from_secs(reconcile.interval_seconds))
        ));
    }
    for sink in &report.sinks {
        let name = &sink.sink;
        if sink.failing == Some(true) {
            problems.push(format!(
                "sink {name} is failing; {} records wait for it",
                sink.pending
            ));
        }
        if sink.retrying > 0 {
            problems.push(format!(
                "sink {name}: {} records wait in the durable retry tier",
                sink.retrying
            ));
        }
        if sink.dead > 0 {
            problems.push(format!(
                "sink {name}: {} dead-lettered records (zcc-relay queue dead --sink {name})",
                sink.dead
            ));
        }
        if !sink.configured {
            problems.push(format!(
                "sink {name} is no longer configured but holds {} pending and {} dead-lettered \
                 records",
                sink.pending, sink.dead
            ));
        }
    }
    if !report.journal.quarantined.is_empty() {
        problems.push(format!(
            "{} corrupt journal file(s) were moved aside (zcc-relay queue stats lists them)",
            report.journal.quarantined.len()
        ));
    }
    let health = if !report.daemon.running {
        Health::NotRunning
    } else if problems.is_empty() {
        Health::Healthy
    } else {
        Health::Attention
    };
    (health, problems)
}

fn ago(seconds: u64) -> String {
    format!("{} ago", age(Duration::from_secs(seconds)))
}

fn ago_f(seconds: Option<f64>) -> String {
    seconds.map_or("unknown".to_string(), |s| ago(s.max(0.0) as u64))
}

/// The text report.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let daemon = match (report.daemon.running, report.daemon.pid) {
        (true, Some(pid)) => format!("running (pid {pid})"),
        (true, None) => "running (pid unknown)".to_string(),
        (false, _) => "NOT RUNNING (no process holds the journal; this view is from the journal \
                       alone)"
            .to_string(),
    };
    out.push_str(&format!("zcc-relay:  {daemon}\n"));
    let socket = match (&report.live, &report.live_unavailable) {
        (Some(live), _) => format!(
            "{}, last event {}, last heartbeat reply {}, {} reconnects (from {})",
            live.socket_state.as_deref().unwrap_or("unknown"),
            ago_f(live.last_event_age_seconds),
            ago_f(live.last_heartbeat_reply_age_seconds),
            live.reconnects
                .map_or("unknown".to_string(), |n| n.to_string()),
            live.endpoint
        ),
        (None, Some(why)) => format!("unknown: {why}"),
        (None, None) => "down (the daemon is not running)".to_string(),
    };
    out.push_str(&format!("socket:     {socket}\n"));
    let journal = &report.journal;
    let last_live = match (&journal.last_live_at, journal.last_live_age_seconds) {
        (Some(at), Some(seconds)) => format!("{at} ({})", ago(seconds)),
        _ => "never".to_string(),
    };
    out.push_str(&format!("last live:  {last_live}\n"));
    let gaps = match journal.open_gaps.as_slice() {
        [] => "none".to_string(),
        gaps => {
            let total: u64 = gaps.iter().map(|g| g.seconds).sum();
            format!(
                "{} ({} in all, oldest from {}); reconciliation fills them while the daemon runs",
                gaps.len(),
                age(Duration::from_secs(total)),
                gaps[0].from
            )
        }
    };
    out.push_str(&format!("open gaps:  {gaps}\n"));
    let reconcile = &report.reconcile;
    let sweep = match (
        reconcile.enabled,
        &reconcile.last_sweep_at,
        reconcile.last_sweep_age_seconds,
    ) {
        (false, _, _) => "reconciliation is disabled (reconcile.enabled = false)".to_string(),
        (true, Some(at), Some(seconds)) => format!(
            "{at} ({}; every {})",
            ago(seconds),
            age(Duration::from_secs(reconcile.interval_seconds))
        ),
        (true, _, _) => "never (the first start sweeps the whole lookback)".to_string(),
    };
    out.push_str(&format!("last sweep: {sweep}\n"));
    if let Some(media) = &journal.media {
        let line = match (media.pending, media.oldest_pending_age_seconds) {
            (0, _) => "nothing waiting".to_string(),
            (pending, oldest) => format!(
                "{pending} records waiting for their files ({} retrying later, oldest {})",
                media.retrying,
                oldest.map_or("-".to_string(), |s| age(Duration::from_secs(s)))
            ),
        };
        out.push_str(&format!("media:      {line}\n"));
    }
    out.push_str(&format!(
        "journal:    {}: {} records held, {} {}\n\n",
        journal.dir.display(),
        journal.records,
        journal::DB_FILE,
        size(journal.file_bytes)
    ));
    let mut table = Table::new(&[
        ("SINK", Align::Left),
        ("PENDING", Align::Right),
        ("RETRYING", Align::Right),
        ("DEAD", Align::Right),
        ("OLDEST PENDING", Align::Left),
        ("STATE", Align::Left),
    ]);
    for sink in &report.sinks {
        let state = match (sink.configured, sink.failing) {
            (false, _) => "not configured",
            (true, Some(true)) => "failing",
            (true, Some(false)) => "ok",
            (true, None) => "-",
        };
        table.row(vec![
            sink.sink.clone(),
            sink.pending.to_string(),
            sink.retrying.to_string(),
            sink.dead.to_string(),
            sink.oldest_pending_age_seconds
                .map_or("-".to_string(), |s| age(Duration::from_secs(s))),
            state.to_string(),
        ]);
    }
    out.push_str(&table.render(0));
    out.push('\n');
    match report.health {
        Health::Healthy => out.push_str("health: healthy\n"),
        Health::Attention => out.push_str("health: needs attention\n"),
        Health::NotRunning => out.push_str("health: not running\n"),
    }
    for problem in &report.problems {
        out.push_str(&format!("  - {problem}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(name: &str, retrying: u64, dead: u64, failing: Option<bool>) -> SinkLine {
        SinkLine {
            sink: name.to_string(),
            configured: true,
            pending: retrying,
            retrying,
            dead,
            oldest_pending: None,
            oldest_pending_age_seconds: None,
            failing,
        }
    }

    fn report(running: bool, state: Option<&str>, sinks: Vec<SinkLine>) -> Report {
        Report {
            health: Health::Healthy,
            problems: Vec::new(),
            daemon: Daemon { running, pid: None },
            journal: JournalPart {
                dir: PathBuf::from("/j"),
                file_bytes: 0,
                records: 0,
                last_live_at: None,
                last_live_age_seconds: None,
                open_gaps: Vec::new(),
                quarantined: Vec::new(),
                media: None,
            },
            reconcile: ReconcilePart {
                enabled: true,
                interval_seconds: 3600,
                last_sweep_at: None,
                last_sweep_age_seconds: Some(3600),
            },
            sinks,
            live: state.map(|state| Live {
                endpoint: "http://127.0.0.1:1/metrics".into(),
                socket_state: Some(state.to_string()),
                last_event_age_seconds: None,
                last_heartbeat_reply_age_seconds: None,
                reconnects: None,
                token_refreshes: None,
            }),
            live_unavailable: None,
        }
    }

    fn check(report: Report, health: Health, problems: &[&str]) {
        let (got_health, got_problems) = assess(&report);
        assert_eq!(
            (got_health, got_problems),
            (health, problems.iter().map(|p| p.to_string()).collect())
        );
    }

    #[test]
    fn an_endpoint_that_is_not_there_is_named_with_the_cause() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = closed.local_addr().unwrap();
        drop(closed);
        let error = format!("{:#}", scrape(address).unwrap_err());
        assert!(
            error.starts_with(&format!("http://{address}/metrics: ")) && error.contains("refused"),
            "{error}"
        );
    }

    #[test]
    fn verdicts() {
        check(
            report(true, Some("live"), vec![sink("crm", 0, 0, Some(false))]),
            Health::Healthy,
            &[],
        );
        check(
            report(
                true,
                Some("backing_off"),
                vec![sink("crm", 0, 0, Some(false))],
            ),
            Health::Attention,
            &["the Zoom WebSocket is not live (state: backing_off)"],
        );
        check(
            report(true, Some("live"), vec![sink("crm", 2, 1, Some(true))]),
            Health::Attention,
            &[
                "sink crm is failing; 2 records wait for it",
                "sink crm: 2 records wait in the durable retry tier",
                "sink crm: 1 dead-lettered records (zcc-relay queue dead --sink crm)",
            ],
        );
        check(
            report(false, None, vec![sink("crm", 0, 1, None)]),
            Health::NotRunning,
            &[
                "zcc-relay is not running on this journal",
                "sink crm: 1 dead-lettered records (zcc-relay queue dead --sink crm)",
            ],
        );
        let mut unreachable = report(true, None, vec![sink("crm", 0, 0, None)]);
        unreachable.live_unavailable = Some("the metrics endpoint did not answer: x".into());
        check(
            unreachable,
            Health::Attention,
            &["the metrics endpoint did not answer: x"],
        );
        let mut unconfigured = report(true, None, vec![sink("crm", 0, 0, None)]);
        unconfigured.live_unavailable = Some(NO_ENDPOINT.into());
        check(unconfigured, Health::Healthy, &[]);
        let mut late = report(true, Some("live"), vec![]);
        late.reconcile.last_sweep_age_seconds = Some(2 * 3600 + 301);
        check(
            late,
            Health::Attention,
            &[
                "no reconciliation sweep has completed for 2h 5m (reconcile.interval is 1h 0m); \
                 the log says why",
            ],
        );
        let mut gone = sink("old", 0, 3, None);
        gone.configured = false;
        check(
            report(true, Some("live"), vec![gone]),
            Health::Attention,
            &[
                "sink old: 3 dead-lettered records (zcc-relay queue dead --sink old)",
                "sink old is no longer configured but holds 0 pending and 3 dead-lettered records",
            ],
        );
        let mut on_time = report(true, Some("live"), vec![]);
        on_time.reconcile.last_sweep_age_seconds = Some(2 * 3600 + 300);
        check(on_time, Health::Healthy, &[]);
    }
}
