//! The WebSocket source against the simulator: reconnects and the gap ledger.

use std::collections::BTreeSet;
use std::process::{Child, Command};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zcc_relay::journal::{GapState, Journal, SinkRoute};
use zcc_relay::route::EventFilter;
use zcc_sim::{SimConfig, Simulator};

use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_zcc-relay");

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn spawn(config: &std::path::Path, log: &std::path::Path) -> Child {
    let out = std::fs::File::create(log).unwrap();
    Command::new(BIN)
        .args(["run", "--config"])
        .arg(config)
        .stderr(out)
        .spawn()
        .unwrap()
}

async fn wait_handshakes(sim: &Simulator, n: u64) {
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while sim.handshakes_completed() < n {
            sim.wait_live().await;
            if sim.handshakes_completed() < n {
                // Still the previous connection: wait for it to go.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "expected {n} handshakes, saw {}",
        sim.handshakes_completed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_gap_intervals() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = temp_dir();
    let journal_dir = dir.path().join("journal");
    let config = dir.path().join("config.toml");
    // Reconciliation off: this test reads the ledger as the socket wrote it.
    let mut text =
        TestConfig::new(&sim, &journal_dir).sink(SinkTable::file("a", &dir.path().join("a.jsonl")));
    text.reconcile_mut().enabled = Some(false);
    text.write(&config);

    // Live for a few heartbeats, then kill -9: the process gap.
    let mut first = spawn(&config, &dir.path().join("1.log"));
    wait_handshakes(&sim, 1).await;
    let heartbeats = sim.heartbeats_received();
    tokio::time::timeout(Duration::from_secs(30), async {
        while sim.heartbeats_received() < heartbeats + 3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("heartbeats flow");
    first.kill().unwrap();
    first.wait().unwrap();
    let killed_at = wall_ms();

    // Restart, then a dropped socket inside one process: the socket gap.
    let mut second = spawn(&config, &dir.path().join("2.log"));
    wait_handshakes(&sim, 2).await;
    let live_again_at = wall_ms();
    // A heartbeat from the new process means it has read build_connection and
    // recorded itself live; a drop before that would be part of the crash gap.
    let heartbeats = sim.heartbeats_received();
    tokio::time::timeout(Duration::from_secs(30), async {
        while sim.heartbeats_received() <= heartbeats {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the restarted daemon heartbeats");
    sim.drop_connection();
    let dropped_at = wall_ms();
    wait_handshakes(&sim, 3).await;
    let back_at = wall_ms();
    // The gap is recorded when the daemon has read build_connection; its next
    // heartbeat shows it has.
    let heartbeats = sim.heartbeats_received();
    tokio::time::timeout(Duration::from_secs(30), async {
        while sim.heartbeats_received() <= heartbeats {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the daemon heartbeats after reconnecting");
    let _ = Command::new("kill")
        .args(["-TERM", &second.id().to_string()])
        .status();
    assert!(second.wait().unwrap().success());

    let journal = Journal::open(
        &journal_dir,
        vec![SinkRoute {
            name: "a".into(),
            filter: EventFilter::all(),
        }],
    )
    .unwrap();
    let gaps = journal.gaps().await.unwrap();
    journal.close().await;
    assert_eq!(
        gaps.len(),
        2,
        "{gaps:?}\nsecond run:\n{}",
        std::fs::read_to_string(dir.path().join("2.log")).unwrap_or_default()
    );
    let (crash, drop) = (gaps[0], gaps[1]);
    // The daemon's clock and this test's are read at slightly different moments
    // (and the daemon learns of a frame a little after it was sent).
    const SKEW: u64 = 250;
    assert!(gaps.iter().all(|g| g.state == GapState::Pending));
    // The crash gap starts at the last moment known live (at most about one
    // heartbeat before the kill) and ends when the restarted process was live.
    assert!(
        crash.start_ms <= killed_at + SKEW && crash.start_ms + 3_000 >= killed_at,
        "{crash:?} vs kill at {killed_at}"
    );
    assert!(
        crash.end_ms + SKEW >= killed_at && crash.end_ms <= live_again_at + 1_000,
        "{crash:?} vs live at {live_again_at}"
    );
    assert!(
        drop.start_ms <= dropped_at + SKEW && drop.start_ms + 3_000 >= dropped_at,
        "{drop:?} vs drop at {dropped_at}"
    );
    assert!(
        drop.end_ms + SKEW >= dropped_at && drop.end_ms <= back_at + 1_000,
        "{drop:?} vs back at {back_at}"
    );
    sim.shutdown().await;
}

// ---- Resilience on tokio's paused clock: production timings, virtual time. ----

use zcc_relay::config::{Settings, WebsocketSettings};
use zcc_sim::{ConnectionEventKind, HandshakeMode};

const MIN: Duration = Duration::from_millis(500);
const MAX: Duration = Duration::from_secs(60);

/// Production WebSocket timings (heartbeat 25 s, idle 75 s, backoff 500 ms..60 s):
/// the defaults, with `[websocket]` left empty.
fn production_timed(sim: &Simulator, dir: &std::path::Path) -> Settings {
    let mut config =
        TestConfig::new(sim, &dir.join("journal")).sink(SinkTable::file("a", &dir.join("a.jsonl")));
    config.websocket = WebsocketTable::default();
    config.settings()
}

/// Virtual delays between consecutive connection attempts.
fn attempt_gaps(sim: &Simulator) -> Vec<Duration> {
    let attempts: Vec<tokio::time::Instant> = sim
        .connection_log()
        .iter()
        .filter(|e| e.kind == ConnectionEventKind::Attempt)
        .map(|e| e.at)
        .collect();
    attempts.windows(2).map(|w| w[1] - w[0]).collect()
}

#[tokio::test(start_paused = true)]
async fn reconnects_after_drop() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = temp_dir();
    let daemon = Daemon::start(production_timed(&sim, dir.path()));
    sim.wait_live().await;
    let dropped = tokio::time::Instant::now();
    sim.drop_connection();
    sim.wait_attempts(2).await;
    sim.wait_live().await;
    let took = dropped.elapsed();
    assert!(
        took <= MIN + Duration::from_millis(100),
        "first reconnect waits at most reconnect_min: {took:?}"
    );
    assert_eq!(sim.handshakes_completed(), 2);
    daemon.stop().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn detects_half_open_within_idle_timeout() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = temp_dir();
    let daemon = Daemon::start(production_timed(&sim, dir.path()));
    sim.wait_live().await;
    let silent = tokio::time::Instant::now();
    sim.go_half_open();
    sim.wait_attempts(2).await;
    let detected = silent.elapsed();
    let idle = WebsocketSettings::default().idle_timeout;
    assert!(
        detected >= idle - Duration::from_secs(1)
            && detected <= idle + MIN + Duration::from_secs(1),
        "{detected:?}"
    );
    sim.wait_live().await;
    daemon.stop().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn no_tight_loop_when_server_accepts_then_drops() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    sim.set_handshake(HandshakeMode::AcceptThenDrop);
    let dir = temp_dir();
    let daemon = Daemon::start(production_timed(&sim, dir.path()));
    tokio::time::sleep(Duration::from_secs(600)).await;
    let gaps = attempt_gaps(&sim);
    // Ten virtual minutes. A tight loop would be thousands of attempts; with
    // exponential backoff and full jitter up to a minute it is a few dozen, and
    // the late delays average about half a minute.
    assert!(
        sim.connection_attempts() <= 45,
        "{} attempts in 10 minutes",
        sim.connection_attempts()
    );
    assert!(gaps.iter().all(|g| *g >= MIN), "{gaps:?}");
    let late: Vec<Duration> = gaps.iter().rev().take(10).copied().collect();
    let mean = late.iter().sum::<Duration>() / late.len() as u32;
    assert!(
        mean >= Duration::from_secs(10),
        "backoff should have grown: {gaps:?}"
    );
    sim.set_handshake(HandshakeMode::Normal);
    tokio::time::timeout(MAX + Duration::from_secs(5), sim.wait_live())
        .await
        .expect("connects once the server is healthy");
    daemon.stop().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn refreshes_token_before_expiry() {
    let sim = Simulator::start(SimConfig {
        token_ttl: Duration::from_secs(3600),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let dir = temp_dir();
    let daemon = Daemon::start(production_timed(&sim, dir.path()));
    sim.wait_live().await;
    let started = tokio::time::Instant::now();
    assert_eq!(sim.tokens_issued(), 1);
    sim.wait_attempts(2).await;
    let reconnected_after = started.elapsed();
    // Replaced 5 minutes before the hour, with a fresh token, without backoff.
    assert!(
        reconnected_after >= Duration::from_secs(54 * 60)
            && reconnected_after <= Duration::from_secs(56 * 60),
        "{reconnected_after:?}"
    );
    sim.wait_live().await;
    assert_eq!(sim.tokens_issued(), 2);
    daemon.stop().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn recovers_after_token_rejection() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = temp_dir();
    let daemon = Daemon::start(production_timed(&sim, dir.path()));
    sim.wait_live().await;
    // A token-error frame on a live socket: reconnect with a new token.
    sim.send_token_error();
    sim.wait_attempts(2).await;
    sim.wait_live().await;
    assert_eq!(
        sim.tokens_issued(),
        2,
        "a rejected token is replaced before the next attempt"
    );
    // Handshakes rejected for a while: every attempt brings a fresh token, with backoff.
    sim.reject_tokens(true);
    sim.drop_connection();
    sim.wait_attempts(6).await;
    assert!(sim.tokens_issued() >= 5, "{}", sim.tokens_issued());
    sim.reject_tokens(false);
    tokio::time::timeout(MAX + Duration::from_secs(5), sim.wait_live())
        .await
        .expect("recovers");
    daemon.stop().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn backs_off_on_eviction() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = temp_dir();
    let daemon = Daemon::start(production_timed(&sim, dir.path()));
    sim.wait_live().await;
    let evicted = tokio::time::Instant::now();
    sim.evict();
    sim.wait_attempts(2).await;
    let waited = evicted.elapsed();
    assert!(
        waited >= MAX && waited <= MAX + Duration::from_secs(1),
        "eviction backs off to reconnect_max: {waited:?}"
    );
    sim.wait_live().await;
    daemon.stop().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_is_prompt_while_backing_off() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    sim.set_handshake(HandshakeMode::Refuse);
    let dir = temp_dir();
    let daemon = Daemon::start(production_timed(&sim, dir.path()));
    // Let the backoff grow to its minute-long ceiling.
    tokio::time::sleep(Duration::from_secs(300)).await;
    let asked = tokio::time::Instant::now();
    daemon.stop().await.unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "stop took {:?}",
        asked.elapsed()
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_malformed_frames() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = temp_dir();
    let archive = dir.path().join("a.jsonl");
    let daemon = Daemon::start(
        TestConfig::new(&sim, &dir.path().join("journal"))
            .sink(SinkTable::file("a", &archive))
            .settings(),
    );
    sim.wait_live().await;
    let oversized = format!(
        r#"{{"module":"message","success":true,"content":"{{\"event\":\"x\",\"pad\":\"{}\"}}"}}"#,
        "y".repeat(5 * 1024 * 1024)
    );
    let malformed = [
        "not json at all".to_string(),
        "[1,2,3]".to_string(),
        r#"{"success":true,"content":"no module"}"#.to_string(),
        r#"{"module":"message","success":true,"content":"not an object"}"#.to_string(),
        r#"{"module":"message","success":true,"content":42}"#.to_string(),
        r#"{"module":"message","success":true}"#.to_string(),
        r#"{"module":"message","success":true,"content":"{\"event\": broken"}"#.to_string(),
        r#"{"module":"surprise","success":true,"content":"?"}"#.to_string(),
        oversized,
    ];
    for frame in &malformed {
        assert!(sim.send_raw_text(frame.clone()));
    }
    assert!(sim.send_binary(vec![0, 159, 146, 150]));
    // An event body that parses but lacks the ids its type is keyed on is kept
    // under the fallback key, not refused.
    let idless = serde_json::json!({"event": "contact_center.recording_completed", "event_ts": 5, "payload": {"object": {}}});
    assert!(sim.emit(idless));
    for n in 0..100 {
        let body = serde_json::json!({"event": "contact_center.inbox_message_received", "event_ts": n,
            "payload": {"account_id": "a", "object": {"message_id": format!("M{n}")}}});
        assert!(sim.emit(body));
    }
    daemon.wait_delivered("a", 101).await;
    let snapshot = daemon.stats.snapshot();
    assert_eq!(
        snapshot.bad_frames,
        malformed.len() as u64 + 1,
        "each bad frame is counted once"
    );
    assert_eq!(
        sim.handshakes_completed(),
        1,
        "bad frames never cost the connection"
    );
    daemon.stop().await.unwrap();
    let ids: BTreeSet<String> = read_lines(&archive)
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 101);
    let fallback: Vec<&String> = ids
        .iter()
        .filter(|id| id.starts_with("recording_completed:"))
        .collect();
    assert_eq!(fallback.len(), 1);
    assert_eq!(
        fallback[0].len(),
        "recording_completed:".len() + 32,
        "{}",
        fallback[0]
    );
    assert!((0..100).all(|n| ids.contains(&format!("inbox_message_received:M{n}"))));
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn rejected_credentials_are_retried_slowly_until_fixed() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    sim.reject_credentials(true);
    let dir = temp_dir();
    let daemon = Daemon::start(production_timed(&sim, dir.path()));
    tokio::time::sleep(Duration::from_secs(600)).await;
    assert_eq!(sim.connection_attempts(), 0, "no socket without a token");
    assert_eq!(sim.tokens_issued(), 0);
    // Fixed by the operator: the next retry (at most reconnect_max away) works.
    sim.reject_credentials(false);
    let fixed = tokio::time::Instant::now();
    sim.wait_live().await;
    assert!(
        fixed.elapsed() <= MAX + Duration::from_secs(1),
        "{:?}",
        fixed.elapsed()
    );
    daemon.stop().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn gives_up_on_a_silent_handshake_after_connect_timeout() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    sim.set_handshake(HandshakeMode::Stall);
    let dir = temp_dir();
    let daemon = Daemon::start(production_timed(&sim, dir.path()));
    sim.wait_attempts(1).await;
    let stalled = tokio::time::Instant::now();
    sim.wait_attempts(2).await;
    let waited = stalled.elapsed();
    let limit = WebsocketSettings::default().connect_timeout;
    // connect_timeout, then the first backoff step.
    assert!(
        waited >= limit && waited <= limit + MIN + Duration::from_millis(100),
        "{waited:?}"
    );
    sim.set_handshake(HandshakeMode::Normal);
    tokio::time::timeout(Duration::from_secs(120), sim.wait_live())
        .await
        .expect("connects once Zoom answers");
    daemon.stop().await.unwrap();
    sim.shutdown().await;
}
