//! Shared test fixtures: a fake HTTP sink with scripted answers, a config
//! builder pointing at a simulator, a running daemon handle, and the real
//! binary run as a child process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use tokio::task::JoinHandle;
use zcc_relay::config::{FakeEnvironment, Settings};
use zcc_relay::telemetry::stats::Stats;
use zcc_sim::Simulator;
pub use zcc_sim::sink::http::{FakeSink, Received, Reply};

pub const SINK_SECRET: &str = "whsec_dGVzdC1zaW5rLXNlY3JldC0xMjM0NTY3ODkw";

/// A config file's text pointing at `sim`, with the given journal directory and
/// `[[sinks]]` tables appended.
pub fn config_text(sim: &Simulator, journal: &Path, sinks: &str) -> String {
    let config = sim.config();
    format!(
        r#"
[zoom]
account_id = "{account}"
client_id = "{client}"
client_secret = "{secret}"
subscription_id = "{subscription}"
oauth_url = "{oauth}"
api_base_url = "{api}"
websocket_url = "{ws}"

[websocket]
heartbeat_interval = "1s"
idle_timeout = "5s"
connect_timeout = "5s"
reconnect_min = "50ms"
reconnect_max = "500ms"

[daemon]
log_level = "info"
drain_timeout = "2s"

[journal]
dir = "{journal}"

[media]
enabled = false

{sinks}
"#,
        account = config.account_id,
        client = config.client_id,
        secret = config.client_secret,
        subscription = config.subscription_id,
        oauth = sim.oauth_url(),
        api = sim.api_base_url(),
        ws = sim.websocket_url(),
        journal = journal.display(),
    )
}

pub fn http_sink(name: &str, url: &str) -> String {
    format!(
        "[[sinks]]\nname = \"{name}\"\ntype = \"http\"\nurl = \"{url}\"\nsecret = \"{SINK_SECRET}\"\ntimeout = \"2s\"\n"
    )
}

pub fn file_sink(name: &str, path: &Path) -> String {
    format!(
        "[[sinks]]\nname = \"{name}\"\ntype = \"file\"\npath = \"{}\"\n",
        path.display()
    )
}

pub fn settings(text: &str) -> Settings {
    match zcc_relay::config::parse(text, &FakeEnvironment::new()) {
        Ok(loaded) => loaded.settings,
        Err(e) => panic!("test config is invalid:\n{e}"),
    }
}

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

/// The real binary, for tests of the command line.
pub const BIN: &str = env!("CARGO_BIN_EXE_zcc-relay");
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

/// A loopback port nobody listens on right now (the daemon binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
