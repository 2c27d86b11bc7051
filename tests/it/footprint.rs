//! Memory stays flat however long a sink's backlog grows: the real binary over
//! a journal holding 1,000 and then 100,000 records for a sink that is down.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use zcc_relay::journal::{Journal, SinkRoute};
use zcc_relay::record::Source;
use zcc_relay::route::EventFilter;
use zcc_relay::zoom::event::parse_body;
use zcc_sim::{SimConfig, Simulator};

use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_zcc-relay");
/// The stated bound (README): resident memory with a 100,000-record backlog.
const RSS_BOUND_KIB: u64 = 64 * 1024;
/// How much more a 100× larger backlog may cost.
const RSS_GROWTH_BOUND_KIB: u64 = 16 * 1024;

/// Fills a journal with `n` records spread over 100 engagements, all pending
/// for sink "down".
async fn fill(dir: &Path, n: usize) {
    let routes = vec![SinkRoute {
        name: "down".into(),
        filter: EventFilter::all(),
    }];
    let journal = Journal::open(dir, routes).unwrap();
    let mut pending = Vec::with_capacity(4096);
    for i in 0..n {
        let body = format!(
            r#"{{"event":"contact_center.engagement_note_added","event_ts":{i},"payload":{{"account_id":"acct","object":{{"engagement_id":"E{}","note_id":"N{i}","note":"{}","last_modified_time":"2026-11-26T10:00:00Z","user_id":"agent-17","channel":"voice"}}}}}}"#,
            i % 100,
            "x".repeat(400)
        );
        let record = parse_body(
            &body,
            Source::Websocket,
            "2026-11-26T10:00:00.000Z".into(),
            0,
        )
        .unwrap();
        pending.push(journal.submit(record).await.unwrap());
        if pending.len() == 4096 {
            for rx in pending.drain(..) {
                rx.await.unwrap().unwrap();
            }
        }
    }
    for rx in pending {
        rx.await.unwrap().unwrap();
    }
    journal.close().await;
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Peak RSS of the daemon over its first seconds with this journal.
async fn peak_rss(sim: &Simulator, dir: &Path, dead_url: &str) -> u64 {
    let config = dir.join("config.toml");
    TestConfig::new(sim, &dir.join("journal"))
        .sink(SinkTable::http("down", dead_url))
        .write(&config);
    let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .stderr(log)
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak = 0;
    // A measurement window, not a synchronisation: sample every 100 ms for 4 s
    // while the worker reads ahead into its backlog and retries.
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(rss_kib(pid));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(dir.join("daemon.log")).unwrap()
    );
    let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap();
    assert!(
        log.contains("sink failing"),
        "the daemon should have tried the dead sink:\n{log}"
    );
    peak
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bounded_under_backlog() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);

    let small = temp_dir();
    fill(&small.path().join("journal"), 1_000).await;
    let large = temp_dir();
    fill(&large.path().join("journal"), 100_000).await;

    let small_rss = peak_rss(&sim, small.path(), &dead_url).await;
    let large_rss = peak_rss(&sim, large.path(), &dead_url).await;
    eprintln!("peak RSS: {small_rss} KiB with 1,000 pending, {large_rss} KiB with 100,000 pending");
    assert!(
        large_rss < RSS_BOUND_KIB,
        "{large_rss} KiB with a 100k backlog"
    );
    assert!(
        large_rss < small_rss + RSS_GROWTH_BOUND_KIB,
        "RSS grew with the backlog: {small_rss} KiB -> {large_rss} KiB"
    );
    sim.shutdown().await;
}
