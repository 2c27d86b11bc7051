//! kill -9 loops against the real binary: whatever the daemon said it persisted
//! reaches every sink, byte for byte, however often it is killed.
//!
//! `ZCC_CRASH_SEED` replays a run (the seed is printed); `ZCC_CRASH_CYCLES`
//! sets the number of kills (default 100).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::value::RawValue;
use zcc_sim::{SimConfig, Simulator};

use crate::support::*;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// A unique, keyed event per `n`.
fn event(n: u64) -> serde_json::Value {
    serde_json::json!({
        "event": "contact_center.recording_completed",
        "event_ts": 1_764_000_000_000u64 + n,
        "payload": {"account_id": "acct", "object": {
            "recording_id": format!("R{n}"), "engagement_id": format!("E{}", n % 37),
            "recording_duration": n % 600, "channel": "voice", "note": "é ✓ \"quoted\""
        }}
    })
}

async fn wait_for_handshake(sim: &Simulator, above: u64) -> bool {
    tokio::time::timeout(Duration::from_secs(20), async {
        while sim.handshakes_completed() <= above {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_kill_9_loops() {
    let seed = env_u64("ZCC_CRASH_SEED").unwrap_or_else(|| rand::rng().random());
    let cycles = env_u64("ZCC_CRASH_CYCLES").unwrap_or(100);
    eprintln!("crash loop: seed {seed}, {cycles} cycles (replay with ZCC_CRASH_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);

    let sim = Arc::new(Simulator::start(SimConfig::default()).await.unwrap());
    let crm = FakeSink::ok().await;
    let dir = temp_dir();
    let archive = dir.path().join("archive.jsonl");
    let config = dir.path().join("config.toml");
    let mut text = TestConfig::new(&sim, &dir.path().join("journal"))
        .sink(SinkTable::http("crm", &crm.url()))
        .sink(SinkTable::file("archive", &archive));
    // Reconciliation is off here: this loop is about the journal; events sent
    // while no daemon ran are reconciliation's job (tests/it/reconcile.rs).
    text.reconcile_mut().enabled = Some(false);
    text.write(&config);

    // Events stream in the whole time, whether or not a daemon is up.
    let stop = Arc::new(AtomicBool::new(false));
    let emitted = Arc::new(AtomicU64::new(0));
    let emitter = {
        let (sim, stop, emitted) = (sim.clone(), stop.clone(), emitted.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let n = emitted.fetch_add(1, Ordering::Relaxed);
                sim.emit(event(n));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };

    let mut reported: BTreeSet<String> = BTreeSet::new();
    let mut kills_by_phase = [0u32; 4];
    for cycle in 0..cycles {
        let log = dir.path().join(format!("run-{cycle}.log"));
        let handshakes = sim.handshakes_completed();
        let mut child = spawn_run(&config, "warn,zcc_relay=debug", &log);
        let phase = rng.random_range(0..4usize);
        kills_by_phase[phase] += 1;
        match phase {
            // During start-up: journal open, token, connect.
            0 => tokio::time::sleep(Duration::from_millis(rng.random_range(0..40))).await,
            // While events are committed and delivered.
            1 | 2 => {
                wait_for_handshake(&sim, handshakes).await;
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..250))).await;
            }
            // During shutdown: SIGTERM, then SIGKILL while it drains.
            _ => {
                wait_for_handshake(&sim, handshakes).await;
                tokio::time::sleep(Duration::from_millis(rng.random_range(20..200))).await;
                sigterm(&child);
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..15))).await;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        reported.extend(persisted_ids(&std::fs::read_to_string(&log).unwrap()));
    }
    stop.store(true, Ordering::Relaxed);
    emitter.await.unwrap();

    // One last clean run drains everything that was persisted.
    let log = dir.path().join("final.log");
    let child = spawn_run(&config, "warn,zcc_relay=debug", &log);
    let drained = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let got: BTreeSet<String> = crm
                .accepted()
                .iter()
                .map(|r| r.record()["id"].as_str().unwrap().to_string())
                .collect();
            if reported.is_subset(&got) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    sigterm(&child);
    let output = wait_output(child).await;
    reported.extend(persisted_ids(&std::fs::read_to_string(&log).unwrap()));
    assert!(
        output.status.success(),
        "final run: {}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(
        drained.is_ok(),
        "not every persisted record reached the HTTP sink (seed {seed})"
    );

    // Every reported record, at both sinks, with Zoom's payload byte for byte.
    let sent: BTreeMap<String, String> = sim
        .history()
        .iter()
        .map(|e| {
            (
                format!(
                    "recording_completed:{}",
                    e.body["payload"]["object"]["recording_id"]
                        .as_str()
                        .unwrap()
                ),
                e.body["payload"].to_string(),
            )
        })
        .collect();
    #[derive(serde::Deserialize)]
    struct Forwarded<'a> {
        id: String,
        source: String,
        #[serde(borrow)]
        payload: &'a RawValue,
    }
    // Records that reconciliation recovered (events sent while no daemon was
    // up) carry Zoom's REST shape; socket records must carry the event itself.
    let check = |record: &Forwarded| {
        if record.source == "websocket" {
            assert_eq!(
                record.payload.get(),
                sent[&record.id],
                "payload changed for {}",
                record.id
            );
        }
    };
    let mut http_counts: BTreeMap<String, u32> = BTreeMap::new();
    for request in crm.accepted() {
        let record: Forwarded = serde_json::from_slice(&request.body).unwrap();
        check(&record);
        *http_counts.entry(record.id).or_default() += 1;
    }
    let lines = std::fs::read_to_string(&archive).unwrap();
    let mut file_counts: BTreeMap<String, u32> = BTreeMap::new();
    for line in lines.lines() {
        let record: Forwarded = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("torn line in the file sink: {e}: {line}"));
        check(&record);
        *file_counts.entry(record.id).or_default() += 1;
    }
    for id in &reported {
        assert!(
            http_counts.contains_key(id),
            "{id} persisted but never reached the HTTP sink (seed {seed})"
        );
        assert!(
            file_counts.contains_key(id),
            "{id} persisted but never reached the file sink (seed {seed})"
        );
    }
    let duplicates = |counts: &BTreeMap<String, u32>| counts.values().map(|n| n - 1).sum::<u32>();
    eprintln!(
        "crash loop: {} events emitted, {} reported persisted, kills by phase (startup, live, live, shutdown) {kills_by_phase:?}; \
         duplicates after crashes: http {}, file {}",
        emitted.load(Ordering::Relaxed),
        reported.len(),
        duplicates(&http_counts),
        duplicates(&file_counts),
    );
    assert!(
        reported.len() > 100,
        "the loop should have persisted a fair number of events"
    );
}
