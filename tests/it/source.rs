//! The WebSocket source against the simulator: reconnects and the gap ledger.

use std::process::{Child, Command};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zcc_relay::journal::{GapState, Journal, SinkRoute};
use zcc_relay::sim::{SimConfig, Simulator};
use zcc_relay::sink::route::EventFilter;

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
    std::fs::write(
        &config,
        config_text(
            &sim,
            &journal_dir,
            &file_sink("a", &dir.path().join("a.jsonl")),
        ),
    )
    .unwrap();

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
    sim.drop_connection();
    let dropped_at = wall_ms();
    wait_handshakes(&sim, 3).await;
    let back_at = wall_ms();
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
    assert_eq!(gaps.len(), 2, "{gaps:?}");
    let (crash, drop) = (gaps[0], gaps[1]);
    assert!(gaps.iter().all(|g| g.state == GapState::Pending));
    // The crash gap starts at the last moment known live (at most about one
    // heartbeat before the kill) and ends when the restarted process was live.
    assert!(
        crash.start_ms <= killed_at && crash.start_ms + 3_000 >= killed_at,
        "{crash:?} vs kill at {killed_at}"
    );
    assert!(
        crash.end_ms >= killed_at && crash.end_ms <= live_again_at + 1_000,
        "{crash:?} vs live at {live_again_at}"
    );
    assert!(
        drop.start_ms <= dropped_at && drop.start_ms + 3_000 >= dropped_at,
        "{drop:?} vs drop at {dropped_at}"
    );
    assert!(
        drop.end_ms >= dropped_at && drop.end_ms <= back_at + 1_000,
        "{drop:?} vs back at {back_at}"
    );
    sim.shutdown().await;
}
