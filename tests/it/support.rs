//! Shared test fixtures: the in-process daemon handle ([`Daemon`]), the real
//! binary run as a long-lived child process, and small readers of what the
//! daemon left behind. The harness (simulator, typed config, one-shot
//! commands) and the fake HTTP sink are re-exported, so a test module needs
//! only `use crate::support::*`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use tokio::task::JoinHandle;
use zcc_relay::config::Settings;
use zcc_relay::telemetry::stats::Stats;
pub use zcc_sim::sink::http::{FakeSink, Received, Reply};

pub use crate::harness::Harness;
pub use crate::harness::command::{BIN, Ran, zcc_relay};
pub use crate::harness::config::{
    MediaTable, MetricsTable, ReconcileTable, SINK_SECRET, SinkTable, TestConfig, WebsocketTable,
    settings,
};

/// The daemon running in this process, stopped by `stop`.
pub struct Daemon {
    pub stats: Stats,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Daemon {
    pub fn start(settings: Settings) -> Daemon {
        let stats = Stats::default();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(zcc_relay::app::run(settings, stats.clone(), async {
            let _ = stopped.await;
        }));
        Daemon {
            stats,
            stop: Some(stop),
            task,
        }
    }

    /// Where its metrics endpoint serves (waits at most 30 s for it to start).
    pub async fn metrics_addr(&self) -> SocketAddr {
        tokio::time::timeout(
            Duration::from_secs(30),
            self.stats.wait_until(|s| s.metrics_listen.is_some()),
        )
        .await
        .expect("the metrics endpoint serves");
        self.stats
            .snapshot()
            .metrics_listen
            .expect("the metrics endpoint's address")
    }

    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.expect("daemon task panicked")
    }

    /// Waits (at most 30 s) until the first start's reconciliation sweep has
    /// run. A test that counts what the socket persisted emits its events only
    /// after this, or the sweep could list some of them first and the socket's
    /// copies would count as duplicates.
    pub async fn wait_first_sweep(&self) {
        tokio::time::timeout(
            Duration::from_secs(30),
            self.stats.wait_until(|s| s.reconcile_runs >= 1),
        )
        .await
        .expect("the first start's sweep ran");
    }

    /// Waits (at most a minute) until `n` events were persisted or recognised as duplicates.
    pub async fn wait_handled(&self, n: u64) {
        let waited = tokio::time::timeout(
            Duration::from_secs(60),
            self.stats.wait_until(|s| {
                s.by_event
                    .values()
                    .map(|c| c.persisted + c.duplicates)
                    .sum::<u64>()
                    >= n
            }),
        )
        .await;
        assert!(
            waited.is_ok(),
            "daemon did not handle {n} events: {:?}",
            self.stats.snapshot().by_event
        );
    }

    pub async fn wait_dead_lettered(&self, sink: &str, n: u64) {
        let count = |s: &zcc_relay::telemetry::stats::Snapshot| {
            s.dead_lettered.get(sink).copied().unwrap_or(0)
        };
        let waited = tokio::time::timeout(
            Duration::from_secs(60),
            self.stats.wait_until(|s| count(s) >= n),
        )
        .await;
        assert!(
            waited.is_ok(),
            "sink {sink} dead-lettered {} of {n}",
            count(&self.stats.snapshot())
        );
    }

    pub async fn wait_delivered(&self, sink: &str, n: u64) {
        let waited = tokio::time::timeout(
            Duration::from_secs(60),
            self.stats.wait_until(|s| s.delivered_to(sink) >= n),
        )
        .await;
        assert!(
            waited.is_ok(),
            "sink {sink} got {} of {n}",
            self.stats.snapshot().delivered_to(sink)
        );
    }
}

pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn read_lines(path: &PathBuf) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("file sink line is JSON"))
        .collect()
}

/// Runs the daemon with its output going to `log` (a file, not a pipe: a
/// chatty trace level would fill a pipe nobody reads yet and stall the child).
pub fn spawn_run(config: &Path, log_level: &str, log: &Path) -> Child {
    let out = std::fs::File::create(log).unwrap();
    Command::new(BIN)
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", log_level)
        .env_remove("JOURNAL_STREAM")
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("spawn zcc-relay")
}

pub fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for the child without blocking the runtime's threads.
pub async fn wait_output(child: Child) -> std::process::Output {
    tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap()
}

/// The record ids a daemon's debug log says were persisted (the daemon's own
/// word, which the crash tests hold it to).
pub fn persisted_ids(log: &str) -> Vec<String> {
    log.lines()
        .filter(|line| line.contains(" persisted "))
        .filter_map(|line| line.split("record_id=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

/// The metrics endpoint's address as the daemon logged it in `log` (its
/// `listen = "127.0.0.1:0"` took any free port), waiting up to 30 s for the
/// line.
pub async fn metrics_addr_in(log: &Path) -> SocketAddr {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let logged = text
            .lines()
            .filter(|line| line.contains("metrics endpoint listening"))
            .find_map(|line| line.split("listen=").nth(1)?.split_whitespace().next());
        if let Some(addr) = logged {
            return addr
                .parse()
                .unwrap_or_else(|e| panic!("{addr:?} in the log: {e}"));
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no metrics address in the log:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET http://{addr}{path}` → (status, content-type, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let tls = zcc_relay::tls::client_config().unwrap();
    let client = zcc_relay::tls::http_client(&tls, Duration::from_secs(10)).unwrap();
    let response = client
        .get(format!("http://{addr}{path}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path} from {addr}: {e}"));
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, content_type, response.text().await.unwrap())
}

/// A `recording_completed` event that ended a minute before `at_ms`, in its
/// own engagement, as Zoom sends it (and lists it over REST).
pub fn recording_event(id: &str, at_ms: u64) -> serde_json::Value {
    let iso = |ms: u64| {
        jiff::Timestamp::from_millisecond(ms as i64)
            .unwrap()
            .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string()
    };
    let (start, end) = (at_ms - 120_000, at_ms - 60_000);
    serde_json::json!({
        "event": "contact_center.recording_completed",
        "event_ts": end,
        "payload": {"account_id": "sim-account", "object": {
            "engagement_id": format!("E-{id}"), "engagement_direction": "inbound",
            "channel": "voice", "recording_id": id,
            "recording_start_time_ms": iso(start), "recording_end_time_ms": iso(end),
            "recording_duration": 60,
            "users": [{"user_id": "U1", "user_display_name": "Ada"}]
        }}
    })
}

/// An HTTP sink to `url`, unsigned, whose request timeout is long enough
/// never to be the next timer a paused clock jumps to.
pub fn paused_http_sink(name: &str, url: &str) -> zcc_relay::config::SinkSettings {
    let mut settings = zcc_relay::config::SinkSettings::new(
        name,
        zcc_relay::config::SinkKind::Http(zcc_relay::sink::http::HttpSinkSettings {
            url: url.parse().unwrap(),
            secret: None,
        }),
    );
    settings.timeout = Duration::from_secs(24 * 3600);
    settings
}

/// The running sink `settings` describe, built outside a daemon (no journal,
/// a heartbeat nobody watches), through the registry `R`.
pub async fn build_sink<R: zcc_relay::sink::Registry>(
    settings: &zcc_relay::config::SinkSettings<R>,
) -> R::Sink {
    let tls = zcc_relay::tls::client_config().unwrap();
    let health = zcc_relay::service::Health::default();
    let context = zcc_relay::sink::BuildContext {
        name: &settings.name,
        timeout: settings.timeout,
        tls: &tls,
        health: &health,
        journal: None,
    };
    zcc_relay::sink::Registry::build(&settings.kind, &context)
        .await
        .unwrap()
}

/// The Zoom object of an event body (`payload.object`).
/// The engagements of the script's keyed events (the ones a CRM sink writes).
pub fn keyed_engagements(
    script: &[zcc_sim::scenario::ScriptedEvent],
) -> std::collections::BTreeSet<String> {
    script
        .iter()
        .filter(|e| {
            let event = e.body["event"].as_str().unwrap_or("");
            zcc_relay::crm::engagement::KEYED_EVENTS.contains(&event)
        })
        .filter_map(|e| object(&e.body)["engagement_id"].as_str().map(str::to_owned))
        .collect()
}

/// Every version the script gave each note: (engagement, note id) →
/// [(last_modified_time, text)], in script order.
pub fn note_versions(
    script: &[zcc_sim::scenario::ScriptedEvent],
) -> std::collections::BTreeMap<(String, String), Vec<(String, String)>> {
    let mut notes = std::collections::BTreeMap::<(String, String), Vec<(String, String)>>::new();
    for event in script {
        let o = object(&event.body);
        if let (Some(eng), Some(id), Some(text)) = (
            o["engagement_id"].as_str(),
            o["note_id"].as_str(),
            o["note"].as_str(),
        ) {
            notes.entry((eng.into(), id.into())).or_default().push((
                o["last_modified_time"].as_str().unwrap_or("").to_owned(),
                text.to_owned(),
            ));
        }
    }
    notes
}

pub fn object(body: &serde_json::Value) -> &serde_json::Value {
    &body["payload"]["object"]
}

/// Records of the seven keyed types (a CRM sink's default events) the
/// daemon persisted so far.
pub fn keyed_persisted(snapshot: &zcc_relay::telemetry::stats::Snapshot) -> u64 {
    snapshot
        .by_event
        .iter()
        .filter(|(event, _)| {
            let event = event.trim_start_matches("contact_center.");
            zcc_relay::crm::engagement::KEYED_EVENTS
                .iter()
                .any(|k| k.trim_start_matches("contact_center.") == event)
        })
        .map(|(_, counts)| counts.persisted)
        .sum()
}

/// Records `sink` and the media stage (which hands them on to the sink)
/// still have to deliver, and the sink's dead letters, per `queue stats`
/// (beside a running daemon, or opening a stopped one's journal, repairing
/// it after a kill -9).
/// Waits (90 s at most) until `daemon` has delivered `expected` records to
/// `sink` with none dead-lettered, stops it, and checks that the journal
/// (`config`'s) holds nothing more for the sink.
pub async fn drained_and_stopped(daemon: Daemon, config: &Path, sink: &str, expected: u64) {
    let waited = tokio::time::timeout(
        Duration::from_secs(90),
        daemon
            .stats
            .wait_until(|s| s.delivered_to(sink) >= expected),
    )
    .await;
    let snapshot = daemon.stats.snapshot();
    assert!(
        waited.is_ok(),
        "delivered {} of {expected}",
        snapshot.delivered_to(sink)
    );
    assert_eq!(snapshot.dead_lettered.get(sink).copied().unwrap_or(0), 0);
    daemon.stop().await.unwrap();
    assert_eq!(
        pending_in(config, sink).await,
        (0, 0, 0),
        "nothing left, nothing dead"
    );
}

pub async fn pending_in(config: &Path, sink: &str) -> (u64, u64, u64) {
    let stats: serde_json::Value = zcc_relay(["queue", "stats", "--json"])
        .config(config)
        .json()
        .await;
    let row = stats["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sink"] == sink)
        .unwrap_or_else(|| panic!("no sink {sink} in {stats:#}"))
        .clone();
    (
        row["pending"].as_u64().unwrap(),
        stats["media"]["pending"].as_u64().unwrap_or(0),
        row["dead"].as_u64().unwrap(),
    )
}

/// Polls `done` every 50 ms for up to 60 s.
pub async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(60), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for {what}");
}
