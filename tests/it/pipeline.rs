//! The pipeline end to end: simulator → socket → journal → file and HTTP sinks.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use zcc_relay::record::Source;
use zcc_relay::sink::http::{sign, signing_key};
use zcc_relay::zoom::event::parse_body;
use zcc_sim::scenario;
use zcc_sim::{SimConfig, Simulator};

use crate::support::*;

/// Natural keys (and note revisions) the daemon should produce for a script.
fn expected_ids(script: &[scenario::ScriptedEvent]) -> BTreeSet<String> {
    script
        .iter()
        .map(|e| {
            parse_body(&e.body.to_string(), Source::Websocket, String::new(), 0)
                .unwrap()
                .id
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_every_event_to_file_and_http_sinks_exactly_once() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let crm = FakeSink::ok().await;
    let dir = temp_dir();
    let archive = dir.path().join("out/events.jsonl");
    let text = config_text(
        &sim,
        &dir.path().join("journal"),
        &format!(
            "{}\n{}",
            http_sink("crm", &crm.url()),
            file_sink("archive", &archive)
        ),
    );
    let daemon = Daemon::start(settings(&text));
    sim.wait_live().await;
    // The test counts what the socket persisted: the first start's sweep must
    // not list the events before the socket carries them.
    daemon.wait_first_sweep().await;

    let mut script = scenario::generate(7, 200, SystemTime::now(), Duration::from_secs(1));
    script.truncate(500);
    assert_eq!(
        script.len(),
        500,
        "the scenario should yield at least 500 events"
    );
    for event in &script {
        assert!(sim.emit(event.body.clone()), "the socket should be live");
    }
    daemon.wait_handled(500).await;
    let snapshot = daemon.stats.snapshot();
    let persisted: u64 = snapshot.by_event.values().map(|c| c.persisted).sum();
    let duplicates: u64 = snapshot.by_event.values().map(|c| c.duplicates).sum();
    assert!(
        duplicates > 0,
        "the scenario re-sends some notes; none were suppressed"
    );
    daemon.wait_delivered("crm", persisted).await;
    daemon.wait_delivered("archive", persisted).await;
    daemon.stop().await.unwrap();

    // The file sink: every natural key, no (id, revision) twice, payload verbatim.
    let lines = read_lines(&archive);
    assert_eq!(lines.len() as u64, persisted);
    let mut seen = BTreeSet::new();
    for line in &lines {
        assert!(
            seen.insert((line["id"].to_string(), line["revision"].as_u64().unwrap())),
            "duplicate {line}"
        );
        assert_eq!(line["source"], "websocket");
    }
    let ids: BTreeSet<String> = lines
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, expected_ids(&script));
    let sent: BTreeMap<String, &serde_json::Value> = script
        .iter()
        .map(|e| {
            (
                parse_body(&e.body.to_string(), Source::Websocket, String::new(), 0)
                    .unwrap()
                    .id,
                &e.body,
            )
        })
        .collect();
    for line in lines.iter().filter(|l| l["revision"] == 1) {
        let body = sent[line["id"].as_str().unwrap()];
        assert_eq!(
            &line["payload"], &body["payload"],
            "payload must be Zoom's, unchanged"
        );
        assert_eq!(line["event_ts"], body["event_ts"]);
    }

    // The HTTP sink: same records, each signed per Standard Webhooks.
    let received = crm.accepted();
    assert_eq!(received.len() as u64, persisted);
    let key = signing_key(SINK_SECRET).unwrap();
    let mut webhook_ids = BTreeSet::new();
    for request in &received {
        let timestamp: u64 = request
            .timestamp
            .parse()
            .expect("webhook-timestamp is integer seconds");
        assert_eq!(
            request.signature,
            sign(&key, &request.webhook_id, timestamp, &request.body)
        );
        assert_eq!(request.content_type, "application/json");
        let record: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        let expected_id = match record["revision"].as_u64().unwrap() {
            1 => record["id"].as_str().unwrap().to_string(),
            n => format!("{}~{n}", record["id"].as_str().unwrap()),
        };
        assert_eq!(request.webhook_id, expected_id);
        assert!(
            webhook_ids.insert(request.webhook_id.clone()),
            "webhook-id {} sent twice",
            request.webhook_id
        );
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_delivers_records_left_in_the_journal() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = temp_dir();
    let journal = dir.path().join("journal");
    // First run: the sink's port is closed, so everything stays queued.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let daemon = Daemon::start(settings(&config_text(
        &sim,
        &journal,
        &http_sink("crm", &dead_url),
    )));
    sim.wait_live().await;
    daemon.wait_first_sweep().await;
    let script = scenario::generate(11, 20, SystemTime::now(), Duration::from_secs(1));
    for event in &script {
        sim.emit(event.body.clone());
    }
    daemon.wait_handled(script.len() as u64).await;
    let persisted: u64 = daemon
        .stats
        .snapshot()
        .by_event
        .values()
        .map(|c| c.persisted)
        .sum();
    assert_eq!(daemon.stats.snapshot().delivered_to("crm"), 0);
    daemon.stop().await.unwrap();

    // Second run: same journal, a working sink, no new events.
    let crm = FakeSink::ok().await;
    let daemon = Daemon::start(settings(&config_text(
        &sim,
        &journal,
        &http_sink("crm", &crm.url()),
    )));
    crm.wait_accepted(persisted as usize).await;
    daemon.stop().await.unwrap();
    let ids: BTreeSet<String> = crm
        .accepted()
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ids, expected_ids(&script));
    assert_eq!(crm.accepted().len() as u64, persisted);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_temporary_sink_failures_until_delivered() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let crm = FakeSink::status_sequence([503, 500, 429]).await;
    let dir = temp_dir();
    let daemon = Daemon::start(settings(&config_text(
        &sim,
        &dir.path().join("j"),
        &http_sink("crm", &crm.url()),
    )));
    sim.wait_live().await;
    daemon.wait_first_sweep().await;
    let script = scenario::generate(3, 2, SystemTime::now(), Duration::from_secs(1));
    for event in &script {
        sim.emit(event.body.clone());
    }
    daemon.wait_handled(script.len() as u64).await;
    let persisted: u64 = daemon
        .stats
        .snapshot()
        .by_event
        .values()
        .map(|c| c.persisted)
        .sum();
    crm.wait_accepted(persisted as usize).await;
    daemon.stop().await.unwrap();
    assert_eq!(crm.accepted().len() as u64, persisted);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_socket_drops() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = temp_dir();
    let archive = dir.path().join("events.jsonl");
    let daemon = Daemon::start(settings(&config_text(
        &sim,
        &dir.path().join("j"),
        &file_sink("a", &archive),
    )));
    sim.wait_live().await;
    let first = serde_json::json!({"event": "contact_center.inbox_message_received", "event_ts": 1, "payload": {"account_id": "a", "object": {"message_id": "M1"}}});
    assert!(sim.emit(first));
    daemon.wait_handled(1).await;
    sim.drop_connection();
    // drop_connection clears "live" at once; it is set again only by a new
    // build_connection success.
    assert!(!sim.is_live());
    tokio::time::timeout(Duration::from_secs(10), sim.wait_live())
        .await
        .expect("the daemon reconnects");
    assert_eq!(sim.handshakes_completed(), 2);
    let second = serde_json::json!({"event": "contact_center.inbox_message_received", "event_ts": 2, "payload": {"account_id": "a", "object": {"message_id": "M2"}}});
    assert!(sim.emit(second));
    daemon.wait_delivered("a", 2).await;
    daemon.stop().await.unwrap();
    let ids: Vec<String> = read_lines(&archive)
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids,
        ["inbox_message_received:M1", "inbox_message_received:M2"]
    );
    sim.shutdown().await;
}
