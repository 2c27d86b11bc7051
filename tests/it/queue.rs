//! `zcc-relay queue` through the real binary: reading a stopped and a running
//! daemon's journal, redrive and purge of the dead-letter, and the refusals
//! (running daemon, unknown sink, missing `--yes`, bad config).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use zcc_sim::{SimConfig, Simulator};

use crate::support::*;

/// A keyed event whose natural key is `recording_completed:rec-{n}`, each in its
/// own engagement so none waits behind another.
fn recording(n: u64) -> Value {
    json!({
        "event": "contact_center.recording_completed",
        "event_ts": 1_764_000_000_000u64 + n,
        "payload": {
            "account_id": "acct",
            "object": {"recording_id": format!("rec-{n}"), "engagement_id": format!("eng-{n}")}
        }
    })
}

fn recording_ids(range: std::ops::RangeInclusive<u64>) -> BTreeSet<String> {
    range
        .map(|n| format!("recording_completed:rec-{n}"))
        .collect()
}

/// Runs `zcc-relay queue ARGS --config CONFIG` off the runtime's threads.
async fn queue(config: &Path, args: &[&str]) -> Ran {
    zcc_relay(["queue"])
        .args(args)
        .config(config)
        .output()
        .await
}

/// `queue ARGS --json`, which must succeed and print one JSON document.
async fn queue_json(config: &Path, args: &[&str]) -> Value {
    zcc_relay(["queue"])
        .args(args)
        .args(["--json"])
        .config(config)
        .json()
        .await
}

fn stderr(output: &Ran) -> String {
    output.stderr.clone()
}

fn sink<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["sinks"]
        .as_array()
        .and_then(|sinks| sinks.iter().find(|s| s["sink"] == name))
        .unwrap_or_else(|| panic!("no sink {name} in {report:#}"))
}

fn ids(records: &Value) -> BTreeSet<String> {
    records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

fn write_config(dir: &Path, sim: &Simulator, journal: &Path, sinks: &[SinkTable]) -> PathBuf {
    let mut config = TestConfig::new(sim, journal);
    config.sinks = sinks.to_vec();
    config.write(&dir.join("config.toml"))
}

/// A stopped daemon's journal in which sink `crm` (an endpoint answering 400
/// to everything) dead-lettered `recording(1..=n)`. Returns the config file
/// naming that journal and sink.
async fn dead_lettered_journal(sim: &Simulator, dir: &Path, n: u64) -> PathBuf {
    let journal = dir.join("journal");
    let refusing = FakeSink::always(400).await;
    let daemon = Daemon::start(
        TestConfig::new(sim, &journal)
            .sink(SinkTable::http("crm", &refusing.url()))
            .settings(),
    );
    sim.wait_live().await;
    for i in 1..=n {
        assert!(sim.emit(recording(i)), "the socket should be live");
    }
    daemon.wait_dead_lettered("crm", n).await;
    daemon.stop().await.unwrap();
    write_config(
        dir,
        sim,
        &journal,
        &[SinkTable::http("crm", &refusing.url())],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_round_trip_dead_redrive_delivered() {
    const N: u64 = 6;
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = temp_dir();
    let config = dead_lettered_journal(&sim, dir.path(), N).await;

    let dead = queue_json(&config, &["dead"]).await;
    assert_eq!(dead["mode"], "exclusive");
    let crm = sink(&dead, "crm");
    assert_eq!(crm["dead"], N);
    assert_eq!(ids(&crm["records"]), recording_ids(1..=N));
    for record in crm["records"].as_array().unwrap() {
        assert_eq!(record["reason"], "HTTP 400", "{record}");
        assert_eq!(record["status"], 400, "{record}");
        assert!(
            record["code"].is_null(),
            "no vendor code from HTTP: {record}"
        );
        assert_eq!(record["attempts"], 1, "{record}");
        assert_eq!(record["event"], "contact_center.recording_completed");
    }
    // The same, for a human: the mode line, a header row, the reason.
    let text = queue(&config, &["dead"]).await;
    let text = &text.stdout;
    assert!(
        text.starts_with("(no zcc-relay is running on this journal; opened it directly)\n"),
        "{text}"
    );
    assert!(text.contains(&format!("crm: {N} dead-lettered")), "{text}");
    let widest = "recording_completed:rec-1".len();
    assert!(
        text.contains(&format!("  SEQ  {:<widest$}  EVENT", "ID")),
        "columns are aligned to the widest id:\n{text}"
    );
    assert!(text.contains("HTTP 400"), "{text}");
    assert!(text.contains("  STATUS  CODE  WHEN"), "{text}");

    let redrive = queue(&config, &["redrive", "--sink", "crm", "--all"]).await;
    assert_eq!(redrive.code, Some(0), "{}", stderr(&redrive));
    let stats = queue_json(&config, &["stats"]).await;
    assert_eq!(sink(&stats, "crm")["pending"], N);
    assert_eq!(sink(&stats, "crm")["dead"], 0);
    assert_eq!(stats["journal"]["records"], N);
    assert!(stats["journal"]["file_bytes"].as_u64().unwrap() > 0);
    assert!(sink(&stats, "crm")["oldest_pending_age_seconds"].is_u64());

    // The endpoint is fixed: the next start delivers every redriven record.
    let fixed = FakeSink::ok().await;
    let daemon = Daemon::start(
        TestConfig::new(&sim, &dir.path().join("journal"))
            .sink(SinkTable::http("crm", &fixed.url()))
            .settings(),
    );
    fixed.wait_accepted(N as usize).await;
    daemon.stop().await.unwrap();
    let delivered: BTreeSet<String> = fixed
        .accepted()
        .iter()
        .map(|r| r.webhook_id.clone())
        .collect();
    assert_eq!(delivered, recording_ids(1..=N));

    let stats = queue_json(&config, &["stats"]).await;
    assert_eq!(sink(&stats, "crm")["pending"], 0);
    assert_eq!(sink(&stats, "crm")["dead"], 0);
    assert_eq!(stats["journal"]["records"], 0);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_reads_a_running_daemons_journal() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = temp_dir();
    // The sink's port is closed: everything stays pending.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let config = write_config(
        dir.path(),
        &sim,
        &dir.path().join("journal"),
        &[SinkTable::http("crm", &dead_url)],
    );
    let child = spawn_run(&config, "info", &dir.path().join("daemon.log"));
    let pid = child.id();
    tokio::time::timeout(Duration::from_secs(30), sim.wait_live())
        .await
        .expect("daemon connects");

    // Each read is a new process with a fresh snapshot, so growing counts show
    // the daemon's later commits are seen too.
    let wait_pending = |n: u64| {
        let config = config.clone();
        async move {
            let mut last = Value::Null;
            for _ in 0..300 {
                last = queue_json(&config, &["stats"]).await;
                if sink(&last, "crm")["pending"] == n {
                    return last;
                }
                // Polling another process's commits; the interval is not asserted on.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("pending never reached {n}: {last:#}");
        }
    };
    for n in 1..=5 {
        assert!(sim.emit(recording(n)));
    }
    let stats = wait_pending(5).await;
    assert_eq!(stats["mode"], "read-only");
    assert_eq!(stats["owner_pid"], pid);
    for n in 6..=8 {
        assert!(sim.emit(recording(n)));
    }
    wait_pending(8).await;

    let text = queue(&config, &["stats"]).await;
    assert_eq!(text.code, Some(0), "{}", stderr(&text));
    let text = &text.stdout;
    assert!(
        text.starts_with(&format!(
            "(read-only view: zcc-relay pid {pid} owns this journal)\n"
        )),
        "{text}"
    );
    let list = queue_json(&config, &["list", "--sink", "crm"]).await;
    assert_eq!(list["mode"], "read-only");
    assert_eq!(ids(&sink(&list, "crm")["records"]), recording_ids(1..=8));
    let limited = queue_json(&config, &["list", "--limit", "3"]).await;
    assert_eq!(sink(&limited, "crm")["pending"], 8);
    assert_eq!(ids(&sink(&limited, "crm")["records"]), recording_ids(1..=3));

    let refusal = format!(
        "the journal is in use by zcc-relay pid {pid}; stop it first (systemctl stop zcc-relay), then run this again"
    );
    for args in [
        &["redrive", "--sink", "crm", "--all"][..],
        &["purge", "--sink", "crm", "--dead", "--yes"][..],
    ] {
        let output = queue(&config, args).await;
        assert_eq!(output.code, Some(1), "{args:?}");
        assert!(stderr(&output).contains(&refusal), "{}", stderr(&output));
    }

    // The readers did not get in the daemon's way.
    assert!(sim.emit(recording(9)));
    wait_pending(9).await;
    sigterm(&child);
    let output = wait_output(child).await;
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    assert_eq!(output.status.code(), Some(0), "{log}");

    let stats = queue_json(&config, &["stats"]).await;
    assert_eq!(stats["mode"], "exclusive");
    assert_eq!(stats["owner_pid"], Value::Null);
    assert_eq!(sink(&stats, "crm")["pending"], 9);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_requires_yes() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = temp_dir();
    let config = dead_lettered_journal(&sim, dir.path(), 3).await;

    let refused = queue(&config, &["purge", "--sink", "crm", "--dead"]).await;
    assert_eq!(refused.code, Some(1));
    assert!(
        stderr(&refused).contains("would delete 3 dead-lettered record(s) of sink crm"),
        "{}",
        stderr(&refused)
    );
    assert!(stderr(&refused).contains("--yes"), "{}", stderr(&refused));
    assert_eq!(
        sink(&queue_json(&config, &["stats"]).await, "crm")["dead"],
        3
    );

    let purged = queue_json(&config, &["purge", "--sink", "crm", "--dead", "--yes"]).await;
    assert_eq!(purged["purged"], 3);
    let stats = queue_json(&config, &["stats"]).await;
    assert_eq!(sink(&stats, "crm")["dead"], 0);
    assert_eq!(stats["journal"]["records"], 0, "nothing else needed them");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_by_id_moves_only_that_record() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = temp_dir();
    let config = dead_lettered_journal(&sim, dir.path(), 3).await;

    let moved = queue_json(
        &config,
        &[
            "redrive",
            "--sink",
            "crm",
            "--id",
            "recording_completed:rec-2",
        ],
    )
    .await;
    assert_eq!(moved["moved"], 1);
    let dead = queue_json(&config, &["dead", "--sink", "crm"]).await;
    assert_eq!(
        ids(&sink(&dead, "crm")["records"]),
        BTreeSet::from([
            "recording_completed:rec-1".into(),
            "recording_completed:rec-3".into()
        ])
    );
    let pending = queue_json(&config, &["list", "--sink", "crm"]).await;
    let records = &sink(&pending, "crm")["records"];
    assert_eq!(ids(records), recording_ids(2..=2));
    assert_eq!(
        records[0]["attempts"], 0,
        "a redrive starts attempts afresh"
    );

    // A seq, as listed, works too.
    let seq = sink(&dead, "crm")["records"][0]["seq"].as_u64().unwrap();
    let moved = queue_json(
        &config,
        &["redrive", "--sink", "crm", "--id", &seq.to_string()],
    )
    .await;
    assert_eq!(moved["moved"], 1);

    let missing = queue(
        &config,
        &[
            "redrive",
            "--sink",
            "crm",
            "--id",
            "recording_completed:rec-9",
        ],
    )
    .await;
    assert_eq!(missing.code, Some(1));
    assert!(
        stderr(&missing).contains("\"recording_completed:rec-9\""),
        "the error names the id: {}",
        stderr(&missing)
    );
    let stats = queue_json(&config, &["stats"]).await;
    assert_eq!(sink(&stats, "crm")["pending"], 2);
    assert_eq!(sink(&stats, "crm")["dead"], 1);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_sink_is_an_error_listing_the_configured_ones() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = temp_dir();
    let sinks = [
        SinkTable::http("crm", "http://127.0.0.1:9/hook"),
        SinkTable::file("archive", &dir.path().join("events.jsonl")),
    ];
    let config = write_config(dir.path(), &sim, &dir.path().join("journal"), &sinks);
    for args in [
        &["list", "--sink", "nope"][..],
        &["dead", "--sink", "nope"][..],
        &["redrive", "--sink", "nope", "--all"][..],
        &["purge", "--sink", "nope", "--dead", "--yes"][..],
    ] {
        let output = queue(&config, args).await;
        assert_eq!(output.code, Some(1), "{args:?}");
        assert!(
            stderr(&output).contains("unknown sink \"nope\"; configured sinks: crm, archive"),
            "{args:?}: {}",
            stderr(&output)
        );
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_journal_is_reported_not_created_and_bad_config_exits_78() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = temp_dir();
    let journal = dir.path().join("journal");
    let config = write_config(
        dir.path(),
        &sim,
        &journal,
        &[SinkTable::http("crm", "http://127.0.0.1:9/hook")],
    );
    let output = queue(&config, &["stats"]).await;
    assert_eq!(output.code, Some(1));
    assert!(
        stderr(&output).contains("no journal at"),
        "{}",
        stderr(&output)
    );
    assert!(!journal.exists(), "a read must not create a journal");

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[zoom]\naccount_id = \"\"\n").unwrap();
    for args in [&["stats"][..], &["redrive", "--sink", "crm", "--all"][..]] {
        let output = queue(&bad, args).await;
        assert_eq!(output.code, Some(78), "{args:?}: {}", stderr(&output));
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_journal_is_quarantined_and_reported() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = temp_dir();
    let journal = dir.path().join("journal");
    let config = dir.path().join("config.toml");
    TestConfig::new(&sim, &journal)
        .sink(SinkTable::http("crm", "http://127.0.0.1:9/hook"))
        .write(&config);
    std::fs::create_dir_all(&journal).unwrap();
    let garbage: Vec<u8> = (0..50_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 11) as u8)
        .collect();
    std::fs::write(journal.join(zcc_relay::journal::DB_FILE), &garbage).unwrap();

    // Opening it (here through `queue stats`, the same path as the daemon)
    // moves the bad file aside unchanged, starts a new journal and says so.
    let report = queue_json(&config, &["stats"]).await;
    let quarantined = report["journal"]["quarantined"].as_array().unwrap();
    assert_eq!(quarantined.len(), 1, "{report}");
    let kept = PathBuf::from(quarantined[0].as_str().unwrap());
    assert_eq!(std::fs::read(&kept).unwrap(), garbage);
    assert_eq!(sink(&report, "crm")["pending"], 0);
    let text = queue(&config, &["stats"]).await;
    assert!(
        text.stdout.contains("corrupt journal files moved aside"),
        "{}",
        stderr(&text)
    );
    sim.shutdown().await;
}
