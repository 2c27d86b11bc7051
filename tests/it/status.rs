//! `zcc-relay status` through the real binary, beside a running daemon (with
//! its metrics endpoint) and after it stopped: the text carries the key facts,
//! `--json` parses, and the exit code is the verdict.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use zcc_relay::clock;
use zcc_sim::{HandshakeMode, SimConfig, Simulator};

use crate::support::*;

async fn status(config: &Path, json: bool) -> Ran {
    let json: &[&str] = if json { &["--json"] } else { &[] };
    zcc_relay(["status"])
        .config(config)
        .args(json)
        .output()
        .await
}

async fn status_json(config: &Path) -> (Option<i32>, Value) {
    let output = status(config, true).await;
    let report = serde_json::from_str(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "status --json printed no JSON ({e}):\n{}\n{}",
            output.stdout, output.stderr
        )
    });
    (output.code, report)
}

fn sink<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["sinks"]
        .as_array()
        .and_then(|sinks| sinks.iter().find(|s| s["sink"] == name))
        .unwrap_or_else(|| panic!("no sink {name} in {report:#}"))
}

/// `value` without the fields that change between two runs on the same journal:
/// ages tick, and a command that owns the journal for a moment may grow its file.
fn settled(value: &Value) -> Value {
    match value {
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .filter(|(key, _)| !key.ends_with("_age_seconds") && *key != "file_bytes")
                .map(|(key, value)| (key.clone(), settled(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(settled).collect()),
        other => other.clone(),
    }
}

/// Polls `status --json` until `condition` holds (at most 30 s).
async fn wait_status(config: &Path, condition: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, report) = status_json(config).await;
        if condition(&report) {
            return report;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "status never got there: {report:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `DIR/config.toml` for a daemon on `sim` with `sinks`, its metrics endpoint
/// on any free port when `metrics` is set.
fn write_config(
    sim: &Simulator,
    dir: &Path,
    metrics: bool,
    sinks: &[SinkTable],
) -> (TestConfig, PathBuf) {
    let mut config = TestConfig::new(sim, &dir.join("journal"));
    config.sinks = sinks.to_vec();
    config.metrics = metrics.then(MetricsTable::any_port);
    let path = config.write(&dir.join("config.toml"));
    (config, path)
}

/// Spawns `run` on `config` (logging to `log`) and, once its metrics endpoint
/// has taken a port, rewrites the config file to name that port, as an
/// operator's config does: `status` reads the endpoint's address from it.
async fn spawn_with_metrics(
    mut config: TestConfig,
    path: &Path,
    log: &Path,
) -> (std::process::Child, std::net::SocketAddr) {
    let child = spawn_run(path, "info", log);
    let addr = metrics_addr_in(log).await;
    config.metrics = Some(MetricsTable::at(addr));
    config.write(path);
    (child, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_beside_a_running_daemon_and_after_it_stopped() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let crm = FakeSink::ok().await;
    let refuses = FakeSink::always(400).await;
    let dir = temp_dir();
    let (typed, config) = write_config(
        &sim,
        dir.path(),
        true,
        &[
            SinkTable::http("crm", &crm.url()),
            SinkTable::http("refuses", &refuses.url()),
        ],
    );
    let (daemon, _) = spawn_with_metrics(typed.clone(), &config, &dir.path().join("run.log")).await;
    sim.wait_live().await;
    let now = clock::now_ms();
    for id in ["st-1", "st-2"] {
        assert!(sim.emit(recording_event(id, now)));
    }
    crm.wait_accepted(2).await;
    let report = wait_status(&config, |r| {
        r["sinks"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["sink"] == "refuses" && s["dead"] == 2))
            // The fake counts a record when it answers; the ack commits a moment later.
            && r["sinks"]
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["sink"] == "crm" && s["pending"] == 0))
            && r["live"]["last_heartbeat_reply_age_seconds"].is_number()
            && r["reconcile"]["last_sweep_at"].is_string()
    })
    .await;

    // --json: the whole picture, and the verdict.
    assert_eq!(report["health"], "attention");
    assert_eq!(report["mode"], "read-only", "beside the running daemon");
    assert_eq!(report["owner_pid"], daemon.id());
    assert_eq!(report["live"]["socket_state"], "live");
    assert_eq!(report["live"]["reconnects"], 0);
    assert!(report["live"]["last_event_age_seconds"].as_f64().unwrap() < 30.0);
    assert!(report["journal"]["last_live_at"].is_string());
    assert!(report["journal"]["file_bytes"].as_u64().unwrap() > 0);
    assert_eq!(report["journal"]["open_gaps"], serde_json::json!([]));
    let crm_line = sink(&report, "crm");
    assert_eq!(
        (
            &crm_line["pending"],
            &crm_line["dead"],
            &report["live"]["sink_failing"]["crm"]
        ),
        (&Value::from(0), &Value::from(0), &Value::from(false))
    );
    assert_eq!(
        report["problems"],
        serde_json::json!([
            "sink refuses: 2 dead-lettered records (zcc-relay queue dead --sink refuses)"
        ])
    );

    // The text: the same facts for a person, and exit status 2.
    let output = status(&config, false).await;
    assert_eq!(output.code, Some(2));
    let text = &output.stdout;
    for fact in [
        format!("zcc-relay:  running (pid {})", daemon.id()),
        "socket:     live, last event ".to_string(),
        "0 reconnects".to_string(),
        "last live:  ".to_string(),
        "open gaps:  none".to_string(),
        "ago; every 1h 0m)".to_string(),
        "records held, journal.redb".to_string(),
        "health: needs attention".to_string(),
        "sink refuses: 2 dead-lettered records".to_string(),
    ] {
        assert!(text.contains(&fact), "{fact:?} missing from:\n{text}");
    }
    let refuses_row = text
        .lines()
        .find(|l| l.starts_with("refuses "))
        .unwrap_or_else(|| panic!("no refuses row:\n{text}"));
    assert_eq!(
        refuses_row.split_whitespace().collect::<Vec<_>>(),
        ["refuses", "0", "0", "2", "-", "ok"],
        "{text}"
    );

    // Stopped: the journal alone, said plainly, exit status 3.
    sigterm(&daemon);
    assert_eq!(wait_output(daemon).await.status.code(), Some(0));
    let (code, report) = status_json(&config).await;
    assert_eq!(code, Some(3));
    assert_eq!(report["health"], "not_running");
    assert_eq!(report["mode"], "exclusive", "no daemon holds the journal");
    assert!(report["live"].is_null());
    assert!(report["journal"]["last_live_at"].is_string());
    assert!(report["reconcile"]["last_sweep_at"].is_string());
    assert_eq!(sink(&report, "refuses")["dead"], 2);
    assert_eq!(report["live"]["sink_failing"]["crm"], Value::Null);
    // `queue stats --json` prints the same overview, in the same shape.
    let stats = zcc_relay(["queue", "stats", "--json"])
        .config(&config)
        .json()
        .await;
    let overview = [
        "mode",
        "owner_pid",
        "journal",
        "reconcile",
        "sinks",
        "media",
    ];
    assert_eq!(
        stats
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        BTreeSet::from(overview)
    );
    for part in overview {
        assert_eq!(settled(&stats[part]), settled(&report[part]), "{part}");
    }
    let output = status(&config, false).await;
    assert_eq!(output.code, Some(3));
    let text = &output.stdout;
    for fact in [
        "zcc-relay:  NOT RUNNING",
        "socket:     down (the daemon is not running)",
        "health: not running",
        "zcc-relay is not running on this journal",
        "sink refuses: 2 dead-lettered records",
    ] {
        assert!(text.contains(fact), "{fact:?} missing from:\n{text}");
    }

    // By hand, outside the service, the secret's credential file is not there:
    // `validate` says so, `status` and `queue` read the journal without it.
    let absent = dir.path().join("absent-credential");
    let mut by_hand = typed;
    by_hand.zoom.client_secret = None;
    by_hand.zoom.client_secret_file = Some(absent);
    by_hand.write(&config);
    let validate = zcc_relay(["validate"]).config(&config).output().await;
    assert_eq!(validate.code, Some(78));
    let (code, report) = status_json(&config).await;
    assert_eq!(
        (code, &report["health"]),
        (Some(3), &Value::from("not_running"))
    );
    assert_eq!(sink(&report, "refuses")["dead"], 2);
    let queue = zcc_relay(["queue", "stats"]).config(&config).output().await;
    assert_eq!(queue.code, Some(0), "{}", queue.stderr);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_is_healthy_when_everything_is_delivered() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let crm = FakeSink::ok().await;
    let dir = temp_dir();
    let (typed, config) = write_config(
        &sim,
        dir.path(),
        true,
        &[SinkTable::http("crm", &crm.url())],
    );

    // Before the first start there is no journal: an error, not an empty view.
    let output = status(&config, false).await;
    assert_eq!(output.code, Some(1));
    assert!(
        &output.stderr.contains("no journal at"),
        "{}",
        &output.stderr
    );

    let (daemon, addr) = spawn_with_metrics(typed, &config, &dir.path().join("run.log")).await;
    sim.wait_live().await;
    assert!(sim.emit(recording_event("ok-1", clock::now_ms())));
    crm.wait_accepted(1).await;
    let report = wait_status(&config, |r| r["live"]["socket_state"] == "live").await;
    assert_eq!(report["health"], "healthy", "{report:#}");
    let output = status(&config, false).await;
    assert_eq!(output.code, Some(0));
    let text = &output.stdout;
    assert!(text.contains("health: healthy"), "{text}");
    assert!(
        text.contains(&format!("(from http://{addr}/metrics)")),
        "{text}"
    );
    sigterm(&daemon);
    assert_eq!(wait_output(daemon).await.status.code(), Some(0));

    // Without [metrics] the live part is unknown, said so, and not a problem.
    let (_, config) = write_config(
        &sim,
        dir.path(),
        false,
        &[SinkTable::http("crm", &crm.url())],
    );
    let daemon = spawn_run(&config, "info", &dir.path().join("run2.log"));
    // Only once it owns the journal (its socket is up): a status run before
    // that would hold the journal's lock itself and stop the daemon starting.
    tokio::time::timeout(Duration::from_secs(30), async {
        while sim.handshakes_completed() < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the second daemon connects");
    let report = wait_status(&config, |r| r["mode"] == "read-only").await;
    assert_eq!(report["health"], "healthy", "{report:#}");
    assert!(
        report["live_unavailable"]
            .as_str()
            .unwrap()
            .contains("metrics.listen is not set")
    );
    sigterm(&daemon);
    assert_eq!(wait_output(daemon).await.status.code(), Some(0));
    sim.shutdown().await;
}

/// A socket Zoom will not take back is "needs attention" with its state; once
/// it is back, the outage is an open gap until reconciliation closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_a_down_socket_and_its_gap() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let crm = FakeSink::ok().await;
    let dir = temp_dir();
    let (typed, config) = write_config(
        &sim,
        dir.path(),
        true,
        &[SinkTable::http("crm", &crm.url())],
    );
    let (daemon, _) = spawn_with_metrics(typed, &config, &dir.path().join("run.log")).await;
    sim.wait_live().await;
    wait_status(&config, |r| r["live"]["socket_state"] == "live").await;

    sim.set_handshake(HandshakeMode::Refuse);
    sim.drop_connection();
    let report = wait_status(&config, |r| {
        r["live"]["socket_state"].is_string() && r["live"]["socket_state"] != "live"
    })
    .await;
    assert_eq!(report["health"], "attention");
    let state = report["live"]["socket_state"].as_str().unwrap().to_string();
    assert!(
        ["connecting", "backing_off", "awaiting_build_connection"].contains(&state.as_str()),
        "{state}"
    );
    let output = status(&config, false).await;
    assert_eq!(output.code, Some(2));
    let text = &output.stdout;
    assert!(
        text.contains("the Zoom WebSocket is not live (state: "),
        "{text}"
    );

    sim.set_handshake(HandshakeMode::Normal);
    let report = wait_status(&config, |r| {
        r["live"]["socket_state"] == "live"
            && r["journal"]["open_gaps"].as_array().unwrap().len() == 1
    })
    .await;
    // The gap is reconciled but stays open until its window, widened by
    // gap_margin (15 min), lies in the past; that is not a problem.
    assert_eq!(report["health"], "healthy", "{report:#}");
    let gap = &report["journal"]["open_gaps"][0];
    assert!(
        gap["from"].as_str().unwrap() < gap["to"].as_str().unwrap(),
        "{gap}"
    );
    let output = status(&config, false).await;
    assert_eq!(output.code, Some(0));
    let text = &output.stdout;
    assert!(text.contains("open gaps:  1 ("), "{text}");
    assert!(text.contains("1 reconnects"), "{text}");

    sigterm(&daemon);
    assert_eq!(wait_output(daemon).await.status.code(), Some(0));
    sim.shutdown().await;
}
