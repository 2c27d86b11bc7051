//! The real binary: `validate`, `run` with its single-owner lock, SIGTERM,
//! what reaches the logs, and `demo` with its summary.

use std::time::{Duration, SystemTime};

use zcc_sim::scenario;
use zcc_sim::{SimConfig, Simulator};

use crate::support::*;

#[tokio::test]
async fn validate_lists_every_problem_and_exits_78() {
    let dir = temp_dir();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        r#"
[zoom]
account_id = ""
client_id = "c"
client_secret = "s"
subscription_id = "sub"
websocket_url = "ws.zoom.us/ws"

[websocket]
heartbeat_interval = "30s"
idle_timeout = "10s"
reconnect_min = "0s"

[[sinks]]
name = "crm"
type = "http"
url = "crm/zoom"

[[sinks]]
name = "crm"
type = "file"
path = "/tmp/x.jsonl"
"#,
    )
    .unwrap();
    let output = zcc_relay(["validate"]).config(&path).output().await;
    assert_eq!(output.code, Some(78));
    let stderr = &output.stderr;
    for key in [
        "zoom.account_id",
        "zoom.websocket_url",
        "websocket.idle_timeout",
        "websocket.reconnect_min",
        "sinks[0].url",
        "sinks[1].name",
    ] {
        assert!(stderr.contains(key), "{key} missing from:\n{stderr}");
    }
    assert!(
        !stderr.contains("\"s\""),
        "the secret must not be echoed:\n{stderr}"
    );

    let good = dir.path().join("good.toml");
    std::fs::write(&good, include_str!("../../config.toml.example")).unwrap();
    // The example reads its secret from a file that does not exist here.
    let output = zcc_relay(["validate"])
        .config(&good)
        .env("CREDENTIALS_DIRECTORY", dir.path())
        .output()
        .await;
    assert_eq!(output.code, Some(78));

    let output = zcc_relay(["validate"])
        .config(&dir.path().join("missing.toml"))
        .output()
        .await;
    assert_eq!(output.code, Some(78));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_process_on_the_same_journal_is_refused() {
    let mut h = Harness::new().await;
    let archive = h.path("events.jsonl");
    h.config.sinks.push(SinkTable::file("a", &archive));
    let config = h.write_config();
    let (sim, dir) = (&h.sim, &h.dir);
    let first = spawn_run(&config, "info", &dir.path().join("first.log"));
    tokio::time::timeout(Duration::from_secs(30), sim.wait_live())
        .await
        .expect("first daemon connects");

    let second = zcc_relay(["run"]).config(&config).output().await;
    assert_eq!(second.code, Some(1));
    let stderr = &second.stderr;
    assert!(
        stderr.contains("in use by another zcc-relay process"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("pid {}", first.id())), "{stderr}");
    assert_eq!(
        sim.handshakes_completed(),
        1,
        "the refused process must not touch the subscription"
    );

    sigterm(&first);
    let output = wait_output(first).await;
    let log = std::fs::read_to_string(dir.path().join("first.log")).unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "SIGTERM is a clean stop:\n{log}"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_secrets_never_reach_the_logs() {
    // Two-second tokens: the daemon replaces each one a second before it
    // expires, so several tokens pass through one short run.
    let sim = Simulator::start(SimConfig {
        token_ttl: Duration::from_secs(2),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let crm = FakeSink::status_sequence([500, 503]).await;
    let dir = temp_dir();
    let config = dir.path().join("config.toml");
    TestConfig::new(&sim, &dir.path().join("journal"))
        .sink(SinkTable {
            // One request at a time: the 500 and the 503 hit the same record
            // in order, so "failing" and "recovered" each happen exactly once.
            max_in_flight: Some(1),
            ..SinkTable::http("crm", &crm.url())
        })
        .write(&config);
    let log_path = dir.path().join("daemon.log");
    let child = spawn_run(&config, "trace", &log_path);
    tokio::time::timeout(Duration::from_secs(30), sim.wait_live())
        .await
        .expect("daemon connects");
    let script = scenario::generate(5, 3, SystemTime::now(), Duration::from_secs(1));
    for event in &script {
        sim.emit(event.body.clone());
    }
    // A dropped socket and a refused frame put error paths into the log too.
    sim.send_raw_text("not json at all".into());
    sim.drop_connection();
    tokio::time::timeout(Duration::from_secs(30), sim.wait_live())
        .await
        .expect("daemon reconnects");
    crm.wait_accepted(1).await;
    tokio::time::timeout(Duration::from_secs(30), async {
        // Polling an external process's effect; the interval is not asserted on.
        while sim.tokens_issued() < 3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the daemon refreshes its token before expiry");
    sigterm(&child);
    let output = wait_output(child).await;
    assert_eq!(output.status.code(), Some(0));
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("connected to Zoom WebSocket"),
        "expected a real log to inspect:\n{log}"
    );
    assert!(log.contains("refused a WebSocket frame"), "{log}");
    // The sink answered 500 and 503 first: one line when it starts failing,
    // one when it recovers (with what waited), none per retry.
    assert_eq!(log.matches("sink failing").count(), 1, "{log}");
    assert!(
        log.contains("sink recovered") && log.contains("waiting="),
        "{log}"
    );
    let tokens = sim.issued_tokens();
    assert!(tokens.len() >= 3);
    for token in tokens {
        let leak = log.lines().find(|line| line.contains(&token));
        assert!(leak.is_none(), "an access token reached the log: {leak:?}");
    }
    assert!(
        !log.contains(&sim.config().client_secret),
        "the client secret reached the log"
    );
    let sink_secret = SINK_SECRET.trim_start_matches("whsec_");
    assert!(
        !log.contains(sink_secret),
        "the sink secret reached the log"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_summarises_every_sink_and_the_salesforce_org() {
    let dir = temp_dir();
    let demo = dir.path().join("demo");
    let ran = zcc_relay(["demo", "--engagements", "12", "--duration", "2s", "--dir"])
        .args([&demo])
        .output()
        .await;
    let out = &ran.stdout;
    assert_eq!(ran.code, Some(0), "{out}\n{}", ran.stderr);
    assert!(!out.lines().any(|l| l.starts_with("!!")), "{out}");
    // The table has the org's column, and the org got every keyed record.
    let header = out
        .lines()
        .find(|l| l.starts_with("event "))
        .unwrap_or_else(|| panic!("no summary table:\n{out}"));
    assert!(header.trim_end().ends_with("salesforce"), "{header}");
    let total: Vec<u64> = out
        .lines()
        .find(|l| l.starts_with("total "))
        .unwrap_or_else(|| panic!("no total:\n{out}"))
        .split_whitespace()
        .skip(1)
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(total[7] > 0 && total[7] < total[5], "{total:?}");
    let tasks: u64 = out
        .split("OK  Salesforce: one Task per engagement (")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no Task line:\n{out}"));
    assert!((1..=12).contains(&tasks), "{tasks} Tasks");
    assert!(
        out.contains("attached to them\n    as ContentVersions, each once"),
        "{out}"
    );
    let linked = out
        .lines()
        .find(|l| l.contains("are linked (WhoId): "))
        .unwrap_or_else(|| panic!("no linked Contacts:\n{out}"));
    assert!(
        linked.starts_with("OK ")
            && linked.contains("Ada Lovelace (")
            && !linked.contains("Katherine Johnson"),
        "{linked}"
    );
    let calls = out
        .lines()
        .find(|l| l.contains(" Salesforce API calls ("))
        .unwrap_or_else(|| panic!("no API calls:\n{out}"));
    let n_calls: u64 = calls
        .trim_start_matches("--  ")
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(n_calls >= tasks, "{calls}");
}
