//! `zcc-relay status`: the operator's one-screen view, whether or not the
//! daemon runs. From the journal, the [`Overview`] that `queue stats` shows
//! too (read-only beside a running daemon): each sink's backlog and
//! dead-letter, the last moment the socket was known live, the open gaps, the
//! last sweep, the journal's size, each sink's set-up problem (stored by the
//! daemon until the sink next succeeds, so it shows while the daemon is
//! stopped too). From the metrics endpoint, when
//! `[metrics] listen` is set and the daemon answers: the socket's state, the
//! seconds since its last event and heartbeat reply, reconnects, and which
//! sinks are failing right now.
//!
//! Owns the verdict and its exit code (0 healthy, 2 needs attention, 3 not
//! running); the figures come from `overview` and `telemetry::metrics::parse`
//! (through the series names `metrics` exports), and nothing here writes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use serde::Serialize;

use super::overview::{BACKLOG_COLUMNS, Overview};
use super::table::{Align, Table, age, size};
use super::view::View;
use crate::config::Settings;
use crate::journal;
use crate::telemetry::metrics::{self, Sample, SocketState};

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
    /// The journal's part, in the shape `queue stats --json` prints.
    #[serde(flatten)]
    pub overview: Overview,
    /// From the metrics endpoint; absent when the daemon is not running,
    /// `[metrics] listen` is not set, or the endpoint did not answer
    /// (`live_unavailable` says which).
    pub live: Option<Live>,
    pub live_unavailable: Option<LiveUnavailable>,
    /// `[standby]`: the role as the daemon last wrote it to the journal
    /// (`role`, `holder`, `acquired_ms`, `lease_age_seconds` as of `at_ms`);
    /// absent without `[standby]`.
    pub standby: Option<crate::lease::RoleRecord>,
}

impl Report {
    fn running(&self) -> bool {
        self.overview.mode.daemon_running()
    }

    /// Whether the endpoint says `sink` is failing; `None` without a live part.
    fn failing(&self, sink: &str) -> Option<bool> {
        self.live.as_ref()?.sink_failing.get(sink).copied()
    }
}

/// Why a running daemon's live part is missing.
#[derive(Debug)]
pub enum LiveUnavailable {
    /// Said, and not a problem.
    NoEndpoint,
    /// The endpoint did not answer, with the cause.
    NoAnswer(String),
}

impl std::fmt::Display for LiveUnavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LiveUnavailable::NoEndpoint => {
                f.write_str("metrics.listen is not set, so the live socket state is unknown")
            }
            LiveUnavailable::NoAnswer(cause) => {
                write!(f, "the metrics endpoint did not answer: {cause}")
            }
        }
    }
}

/// As its sentence: `--json` readers get what the text says.
impl Serialize for LiveUnavailable {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A sweep this much later than `reconcile.interval` means sweeps are failing.
const SWEEP_SLACK: Duration = Duration::from_secs(300);

#[derive(Debug, Serialize)]
pub struct Live {
    pub endpoint: String,
    /// `connecting`, `awaiting_build_connection`, `live`, `backing_off`,
    /// `standby` or `stopped`.
    pub socket_state: Option<SocketState>,
    /// `[standby]`: `leader` or `standby`, now.
    pub role: Option<String>,
    /// `[standby]`: the relay (`host:pid`) holding the lease, as this one sees it.
    pub lease_holder: Option<String>,
    /// `[standby]`: seconds since the holder took the lease.
    pub lease_age_seconds: Option<f64>,
    pub last_event_age_seconds: Option<f64>,
    pub last_heartbeat_reply_age_seconds: Option<f64>,
    pub reconnects: Option<u64>,
    pub token_refreshes: Option<u64>,
    /// Per sink: the last attempt failed and nothing was delivered since.
    pub sink_failing: BTreeMap<String, bool>,
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

fn gather(settings: &Settings, now: jiff::Timestamp) -> anyhow::Result<Report> {
    let (overview, standby) = {
        let view = View::open(settings)?;
        let standby = match settings.standby {
            None => None,
            Some(_) => {
                let txn = view.begin_read()?;
                crate::lease::term::recorded(
                    journal::read::meta(&txn, crate::lease::ROLE_META)
                        .context("cannot read the journal")?,
                )
            }
        };
        (Overview::gather(&view, settings, now)?, standby)
    };
    let (live, live_unavailable) = match (overview.mode.daemon_running(), settings.metrics.listen) {
        (false, _) => (None, None),
        (true, None) => (None, Some(LiveUnavailable::NoEndpoint)),
        (true, Some(address)) => match scrape(address) {
            Ok(samples) => (Some(live_part(address, &samples)), None),
            Err(e) => (None, Some(LiveUnavailable::NoAnswer(format!("{e:#}")))),
        },
    };
    let mut report = Report {
        health: Health::Healthy,
        problems: Vec::new(),
        overview,
        live,
        live_unavailable,
        standby,
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

fn live_part(address: SocketAddr, samples: &[Sample]) -> Live {
    let named = |series: metrics::Series| {
        let name = series.exposed();
        samples.iter().filter(move |s| s.name == name)
    };
    let value = |series| named(series).next().map(|s| s.value);
    let socket_state = named(metrics::WEBSOCKET_STATE)
        .find(|s| s.value == 1.0)
        .and_then(|s| SocketState::from_name(s.labels.get("state")?));
    let sink_failing = named(metrics::SINK_FAILING)
        .filter_map(|s| Some((s.labels.get("sink")?.clone(), s.value == 1.0)))
        .collect();
    let role = value(metrics::LEASE_LEADER)
        .map(|leader| if leader == 1.0 { "leader" } else { "standby" }.to_owned());
    let lease_holder = named(metrics::LEASE_HOLDER)
        .find(|s| s.value == 1.0)
        .and_then(|s| s.labels.get("holder").cloned());
    Live {
        endpoint: endpoint(address),
        socket_state,
        last_event_age_seconds: value(metrics::WEBSOCKET_LAST_EVENT_AGE),
        last_heartbeat_reply_age_seconds: value(metrics::WEBSOCKET_LAST_HEARTBEAT_REPLY_AGE),
        reconnects: value(metrics::WEBSOCKET_RECONNECTS).map(|v| v as u64),
        token_refreshes: value(metrics::TOKEN_REFRESHES).map(|v| v as u64),
        sink_failing,
        role,
        lease_holder,
        lease_age_seconds: value(metrics::LEASE_AGE),
    }
}

/// The verdict and its reasons. Not running wins over everything; any
/// problem makes it `attention`.
fn assess(report: &Report) -> (Health, Vec<String>) {
    let mut problems = Vec::new();
    let running = report.running();
    if !running {
        problems.push("zcc-relay is not running on this journal".to_string());
    }
    if let Some(live) = &report.live
        && let Some(state) = live.socket_state
        && state != SocketState::Live
        // A standby's socket is closed by design.
        && !(state == SocketState::Standby && live.role.as_deref() == Some("standby"))
    {
        problems.push(format!(
            "the Zoom WebSocket is not live (state: {})",
            state.name()
        ));
    }
    if let Some(why @ LiveUnavailable::NoAnswer(_)) = &report.live_unavailable
        && running
    {
        problems.push(why.to_string());
    }
    let reconcile = &report.overview.reconcile;
    if running
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
    for sink in &report.overview.sinks {
        let name = &sink.sink;
        let backlog = &sink.backlog;
        if report.failing(name) == Some(true) {
            problems.push(format!(
                "sink {name} is failing; {} records wait for it",
                backlog.pending
            ));
        }
        if let Some(setup) = &sink.setup_problem {
            problems.push(format!(
                "sink {name} has a set-up problem (since {}); its records wait until it is \
                 fixed: {}",
                setup.since,
                crate::escape::for_display(&setup.reason, 1000)
            ));
        }
        if backlog.retrying > 0 {
            problems.push(format!(
                "sink {name}: {} records wait in the durable retry tier",
                backlog.retrying
            ));
        }
        if backlog.dead > 0 {
            problems.push(format!(
                "sink {name}: {} dead-lettered records (zcc-relay queue dead --sink {name})",
                backlog.dead
            ));
        }
        if !sink.configured {
            problems.push(format!(
                "sink {name} is no longer configured but holds {} pending and {} dead-lettered \
                 records",
                backlog.pending, backlog.dead
            ));
        }
    }
    let quarantined = &report.overview.journal.quarantined;
    if !quarantined.is_empty() {
        problems.push(format!(
            "{} corrupt journal file(s) were moved aside (zcc-relay queue stats lists them)",
            quarantined.len()
        ));
    }
    let health = if !running {
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
    let daemon = match (report.running(), report.overview.mode.owner_pid) {
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
            live.socket_state.map_or("unknown", SocketState::name),
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
    let role = match (&report.live, &report.standby) {
        (
            Some(Live {
                role: Some(role),
                lease_holder,
                lease_age_seconds,
                ..
            }),
            _,
        ) => Some(format!(
            "{role}; lease held by {} for {}",
            lease_holder.as_deref().unwrap_or("nobody"),
            lease_age_seconds.map_or("-".to_string(), |s| age(Duration::from_secs(
                s.max(0.0) as u64
            )))
        )),
        (_, Some(recorded)) => Some(format!(
            "{} (as last recorded); lease held by {}",
            recorded.role,
            recorded.holder.as_deref().unwrap_or("nobody"),
        )),
        _ => None,
    };
    if let Some(role) = role {
        out.push_str(&format!(
            "role:       {}\n",
            crate::escape::for_display(&role, 200)
        ));
    }
    let journal = &report.overview.journal;
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
    let reconcile = &report.overview.reconcile;
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
    if let Some(media) = &report.overview.media {
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
    let mut table = Table::new(&[BACKLOG_COLUMNS.as_slice(), &[("STATE", Align::Left)]].concat());
    for sink in &report.overview.sinks {
        let state = match (sink.configured, report.failing(&sink.sink)) {
            (false, _) => "not configured",
            (true, _) if sink.setup_problem.is_some() => "set-up problem",
            (true, Some(true)) => "failing",
            (true, Some(false)) => "ok",
            (true, None) => "-",
        };
        let mut row = sink.backlog.cells(&sink.sink);
        row.push(state.to_string());
        table.row(row);
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
    use crate::cli::overview::{Backlog, JournalPart, ReconcilePart, SinkLine};
    use crate::cli::view::{Access, Mode};

    /// A sink's line and what the endpoint says of it.
    type Row = (SinkLine, Option<bool>);

    fn sink(name: &str, retrying: u64, dead: u64, failing: Option<bool>) -> Row {
        let line = SinkLine {
            sink: name.to_string(),
            configured: true,
            backlog: Backlog {
                pending: retrying,
                retrying,
                dead,
                oldest_pending: None,
                oldest_pending_age_seconds: None,
            },
            setup_problem: None,
        };
        (line, failing)
    }

    fn report(running: bool, state: Option<&str>, sinks: Vec<Row>) -> Report {
        let sink_failing = sinks
            .iter()
            .filter_map(|(line, failing)| Some((line.sink.clone(), (*failing)?)))
            .collect();
        Report {
            health: Health::Healthy,
            problems: Vec::new(),
            overview: Overview {
                mode: Mode {
                    mode: if running {
                        Access::ReadOnly
                    } else {
                        Access::Exclusive
                    },
                    owner_pid: None,
                },
                journal: JournalPart {
                    dir: PathBuf::from("/j"),
                    file_bytes: 0,
                    records: 0,
                    last_live_at: None,
                    last_live_age_seconds: None,
                    open_gaps: Vec::new(),
                    quarantined: Vec::new(),
                },
                reconcile: ReconcilePart {
                    enabled: true,
                    interval_seconds: 3600,
                    last_sweep_at: None,
                    last_sweep_age_seconds: Some(3600),
                },
                sinks: sinks.into_iter().map(|(line, _)| line).collect(),
                media: None,
            },
            live: state.map(|state| Live {
                endpoint: "http://127.0.0.1:1/metrics".into(),
                socket_state: SocketState::from_name(state),
                last_event_age_seconds: None,
                last_heartbeat_reply_age_seconds: None,
                reconnects: None,
                token_refreshes: None,
                sink_failing,
                role: None,
                lease_holder: None,
                lease_age_seconds: None,
            }),
            live_unavailable: None,
            standby: None,
        }
    }

    /// `[standby]`: a standby's closed socket is how it should be; a
    /// leader's is not.
    #[test]
    fn a_standby_socket_is_closed_by_design() {
        let with_role = |role: &str| {
            let mut report = report(true, Some("standby"), vec![sink("crm", 0, 0, Some(false))]);
            if let Some(live) = report.live.as_mut() {
                live.role = Some(role.to_owned());
            }
            report
        };
        check(with_role("standby"), Health::Healthy, &[]);
        check(
            with_role("leader"),
            Health::Attention,
            &["the Zoom WebSocket is not live (state: standby)"],
        );
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
        unreachable.live_unavailable = Some(LiveUnavailable::NoAnswer("x".into()));
        check(
            unreachable,
            Health::Attention,
            &["the metrics endpoint did not answer: x"],
        );
        let mut unconfigured = report(true, None, vec![sink("crm", 0, 0, None)]);
        unconfigured.live_unavailable = Some(LiveUnavailable::NoEndpoint);
        check(unconfigured, Health::Healthy, &[]);
        let mut late = report(true, Some("live"), vec![]);
        late.overview.reconcile.last_sweep_age_seconds = Some(2 * 3600 + 301);
        check(
            late,
            Health::Attention,
            &[
                "no reconciliation sweep has completed for 2h 5m (reconcile.interval is 1h 0m); \
                 the log says why",
            ],
        );
        let mut gone = sink("old", 0, 3, None);
        gone.0.configured = false;
        check(
            report(true, Some("live"), vec![gone]),
            Health::Attention,
            &[
                "sink old: 3 dead-lettered records (zcc-relay queue dead --sink old)",
                "sink old is no longer configured but holds 0 pending and 3 dead-lettered records",
            ],
        );
        // A set-up problem names its fix, running or not.
        let mut setup = sink("sf", 4, 0, Some(true));
        setup.0.setup_problem = Some(crate::cli::overview::SetupLine {
            reason: "create the External ID field Zoom_Engagement_Id__c".into(),
            since: "2026-12-01T10:00:00.000Z".into(),
            since_age_seconds: 60,
        });
        check(
            report(false, None, vec![setup]),
            Health::NotRunning,
            &[
                "zcc-relay is not running on this journal",
                "sink sf has a set-up problem (since 2026-12-01T10:00:00.000Z); its records wait \
                 until it is fixed: create the External ID field Zoom_Engagement_Id__c",
                "sink sf: 4 records wait in the durable retry tier",
            ],
        );
        let mut on_time = report(true, Some("live"), vec![]);
        on_time.overview.reconcile.last_sweep_age_seconds = Some(2 * 3600 + 300);
        check(on_time, Health::Healthy, &[]);
    }
}
