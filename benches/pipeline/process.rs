//! The release binary as a separate process (`zcc-relay run`), with the
//! simulator and the sink in this one: footprint, recovery after kill -9,
//! reconnect.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use zcc_sim::{SimConfig, Simulator};

use crate::sink::{Answer, Sink};

const BIN: &str = env!("CARGO_BIN_EXE_zcc-relay");

struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn spawn(dir: &Path, sim: &Simulator, sink_url: &str) -> Daemon {
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            crate::config_text(sim, &dir.join("journal"), sink_url, "info"),
        )
        .expect("write config");
        let log = dir.join(format!(
            "daemon-{}.log",
            Instant::now().elapsed().as_nanos()
        ));
        let out = std::fs::File::create(&log).expect("log file");
        let child = Command::new(BIN)
            .args(["run", "--config"])
            .arg(&config)
            .env_remove("RUST_LOG")
            .env_remove("JOURNAL_STREAM")
            .stdout(out.try_clone().expect("log file"))
            .stderr(out)
            .spawn()
            .expect("spawn zcc-relay");
        Daemon { child, log }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// utime + stime, in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the parenthesised command name; utime and stime are the
        // 14th and 15th of the whole line.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        field(11) + field(12)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn sigterm(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let log = self.log_text();
        let status = tokio::task::spawn_blocking(move || self.child.wait())
            .await
            .expect("wait task")
            .expect("wait");
        assert!(status.success(), "zcc-relay exited with {status}:\n{log}");
    }

    async fn kill9(mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.pid().to_string()])
            .status();
        let _ = tokio::task::spawn_blocking(move || self.child.wait()).await;
    }
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

pub struct Idle {
    pub seconds: f64,
    pub rss_kib: u64,
    pub cpu_percent: f64,
    pub heartbeats: u64,
}

pub struct Reconnect {
    pub drops: usize,
    pub median: Duration,
    pub min: Duration,
    pub max: Duration,
}

/// Idle footprint (socket live, heartbeats only) over `seconds`, then `drops`
/// dropped sockets, each timed until the socket is live again.
pub async fn idle_and_reconnect(base: &Path, seconds: f64, drops: usize) -> (Idle, Reconnect) {
    let sim = Simulator::start(SimConfig::default())
        .await
        .expect("simulator");
    let sink = Sink::start(Answer::Ok).await;
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let daemon = Daemon::spawn(dir.path(), &sim, &sink.url);
    tokio::time::timeout(Duration::from_secs(30), sim.wait_live())
        .await
        .unwrap_or_else(|_| panic!("the daemon did not connect:\n{}", daemon.log_text()));
    // Let start-up work (the first reconciliation sweep) finish first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (ticks0, beats0, t0) = (
        daemon.cpu_ticks(),
        sim.heartbeats_received(),
        Instant::now(),
    );
    let mut rss = 0;
    while t0.elapsed().as_secs_f64() < seconds {
        tokio::time::sleep(Duration::from_millis(500)).await;
        rss = rss.max(daemon.rss_kib());
    }
    let wall = t0.elapsed().as_secs_f64();
    let ticks = daemon.cpu_ticks() - ticks0;
    let idle = Idle {
        seconds: wall,
        rss_kib: rss,
        cpu_percent: ticks as f64 / clock_ticks_per_second() / wall * 100.0,
        heartbeats: sim.heartbeats_received() - beats0,
    };

    let mut times = Vec::with_capacity(drops);
    for drop in 0..drops {
        let dropped = Instant::now();
        sim.drop_connection();
        tokio::time::timeout(Duration::from_secs(30), sim.wait_live())
            .await
            .unwrap_or_else(|_| panic!("no reconnect:\n{}", daemon.log_text()));
        times.push(dropped.elapsed());
        // Traffic resumes: one event through to the sink. A socket that never
        // carried a frame is not proven healthy, so without it the source's
        // backoff would keep growing from drop to drop.
        assert!(sim.emit(crate::events::body(drop)), "socket not live");
        let got = sink
            .wait_unique(drop as u64 + 1, Duration::from_secs(10))
            .await;
        assert_eq!(
            got,
            drop as u64 + 1,
            "event after reconnect {drop} not delivered"
        );
    }
    daemon.sigterm().await;
    sim.shutdown().await;
    times.sort();
    let reconnect = Reconnect {
        drops,
        median: times[times.len() / 2],
        min: times[0],
        max: *times.last().expect("drops"),
    };
    (idle, reconnect)
}

/// A port nothing listens on.
fn dead_url() -> String {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", closed.local_addr().expect("addr"));
    drop(closed);
    url
}

/// Peak RSS over `window` of the binary over a journal holding `n` records
/// pending for a sink that refuses connections.
pub async fn backlog_rss(base: &Path, n: usize, window: Duration) -> u64 {
    let sim = Simulator::start(SimConfig::default())
        .await
        .expect("simulator");
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    crate::disk::fill(&dir.path().join("journal"), 0, n, 4096).await;
    let daemon = Daemon::spawn(dir.path(), &sim, &dead_url());
    let started = Instant::now();
    let mut peak = 0;
    while started.elapsed() < window {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(daemon.rss_kib());
    }
    // The figure only counts if the worker really was retrying; a slow start
    // gets a little longer to show it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !daemon.log_text().contains("sink failing") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = daemon.log_text();
    assert!(
        log.contains("sink failing"),
        "the daemon should have tried the dead sink:\n{log}"
    );
    // Measured; a clean stop would wait out the drain timeout of the
    // deliveries retrying against the dead sink.
    daemon.kill9().await;
    sim.shutdown().await;
    peak
}

pub struct Recovery {
    pub cold: bool,
    pub pending: usize,
    pub journal_mib: f64,
    pub first_delivery: Duration,
    pub drain_rate: f64,
    pub all_delivered: bool,
}

/// `n` records pending for a dead sink; the daemon runs over them and is
/// killed with SIGKILL; it is started again with the sink back: time from
/// spawn to the first delivery, and the rate at which the backlog drains.
///
/// With `cold`, the kernel's page cache is dropped before the restart (needs
/// root), as after a power cut rather than a killed process: the journal is
/// then read from the disk by the integrity check on open.
pub async fn recovery(base: &Path, n: usize, cold: bool) -> Recovery {
    let sim = Simulator::start(SimConfig::default())
        .await
        .expect("simulator");
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let journal = dir.path().join("journal");
    crate::disk::fill(&journal, 0, n, 4096).await;
    let daemon = Daemon::spawn(dir.path(), &sim, &dead_url());
    tokio::time::timeout(Duration::from_secs(30), sim.wait_live())
        .await
        .unwrap_or_else(|_| panic!("the daemon did not connect:\n{}", daemon.log_text()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    daemon.kill9().await;
    let journal_mib =
        zcc_relay::journal::file_size(&journal).expect("journal size") as f64 / (1024.0 * 1024.0);

    if cold {
        let _ = Command::new("sync").status();
        if let Err(e) = std::fs::write("/proc/sys/vm/drop_caches", "3") {
            panic!("--cold-cache: cannot drop the page cache (needs root): {e}");
        }
    }
    let sink = Sink::start(Answer::Ok).await;
    let started = Instant::now();
    let daemon = Daemon::spawn(dir.path(), &sim, &sink.url);
    let got = sink.wait_unique(n as u64, Duration::from_secs(30)).await;
    let seen = sink.deliveries();
    let log = daemon.log_text();
    daemon.sigterm().await;
    sim.shutdown().await;
    let (first, last) = match (seen.first, seen.last) {
        (Some(first), Some(last)) => (first, last),
        _ => panic!("nothing delivered after the restart:\n{log}"),
    };
    Recovery {
        cold,
        pending: n,
        journal_mib,
        first_delivery: first - started,
        drain_rate: got as f64 / (last - first).as_secs_f64().max(1e-9),
        all_delivered: got == n as u64,
    }
}
