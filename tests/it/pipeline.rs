//! The pipeline end to end: simulator → socket → journal → file and HTTP sinks.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use zcc_relay::record::Source;
use zcc_relay::zoom::event::parse_body;
use zcc_sim::scenario;
use zcc_sim::sink::http::signature;

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
    let crm = FakeSink::ok().await;
    let mut h = Harness::new().await;
    let archive = h.path("out/events.jsonl");
    h.config.sinks = vec![
        SinkTable::http("crm", &crm.url()),
        SinkTable::file("archive", &archive),
    ];
    // The test counts what the socket persisted: the first start's sweep must
    // not list the events before the socket carries them.
    let daemon = h.start_live().await;
    let sim = &h.sim;

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
    let mut webhook_ids = BTreeSet::new();
    for request in &received {
        let timestamp: u64 = request
            .timestamp
            .parse()
            .expect("webhook-timestamp is integer seconds");
        assert_eq!(
            Some(request.signature.clone()),
            signature(SINK_SECRET, &request.webhook_id, timestamp, &request.body)
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
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_delivers_records_left_in_the_journal() {
    // First run: the sink's port is closed, so everything stays queued.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let mut h = Harness::with_sinks([SinkTable::http("crm", &dead_url)]).await;
    let sim = &h.sim;
    let daemon = h.start_live().await;
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
    h.config.sinks = vec![SinkTable::http("crm", &crm.url())];
    let daemon = h.start();
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
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_temporary_sink_failures_until_delivered() {
    let crm = FakeSink::status_sequence([503, 500, 429]).await;
    let h = Harness::with_sinks([SinkTable::http("crm", &crm.url())]).await;
    let sim = &h.sim;
    let daemon = h.start_live().await;
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
    // The failures were served (and their records retried), not skipped:
    // three requests got them, every other one was accepted.
    let statuses = crm.statuses();
    let mut failures: Vec<u16> = statuses.iter().copied().filter(|s| *s != 200).collect();
    failures.sort();
    assert_eq!(failures, [429, 500, 503], "{statuses:?}");
    assert_eq!(statuses.len() as u64, persisted + 3, "{statuses:?}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_socket_drops() {
    let mut h = Harness::new().await;
    let archive = h.path("events.jsonl");
    h.config.sinks.push(SinkTable::file("a", &archive));
    let sim = &h.sim;
    let daemon = h.start();
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
    h.shutdown().await;
}
