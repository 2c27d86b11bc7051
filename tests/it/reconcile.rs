//! Reconciliation against the simulator's REST API: what the socket missed is
//! delivered, once per natural key, with `source: "reconcile"`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};
use zcc_relay::clock;
use zcc_relay::sim::{HandshakeMode, RetryAfter, SimConfig, Simulator};

use crate::support::*;

/// Keyed events of one engagement at virtual wall time `at_ms`: a recording
/// with its transcript, a note, a disposition, a voicemail with its transcript.
fn engagement(n: u64, at_ms: u64) -> Vec<Value> {
    let iso = |ms: u64| {
        jiff::Timestamp::from_millisecond(ms as i64)
            .unwrap()
            .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string()
    };
    let iso_s = |ms: u64| {
        jiff::Timestamp::from_millisecond(ms as i64)
            .unwrap()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    let e = format!("E{n}");
    let (start, end) = (at_ms - 120_000, at_ms - 60_000);
    let object = |extra: Value| {
        let mut base = json!({"engagement_id": e, "engagement_direction": "inbound", "channel": "voice",
            "date_time_ms": iso(at_ms)});
        base.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        base
    };
    let event = |name: &str, ts: u64, object: Value| json!({"event": format!("contact_center.{name}"), "event_ts": ts, "payload": {"account_id": "sim-account", "object": object}});
    vec![
        event("engagement_started", start, object(json!({}))),
        event("engagement_ended", end, object(json!({}))),
        event(
            "recording_completed",
            end,
            object(json!({"recording_id": format!("R{n}"),
            "recording_start_time_ms": iso(start), "recording_end_time_ms": iso(end), "recording_duration": 60,
            "users": [{"user_id": "U1", "user_display_name": "Ada"}]})),
        ),
        event(
            "recording_transcript_completed",
            end,
            object(json!({"recording_id": format!("R{n}"),
            "recording_start_time_ms": iso(start), "recording_end_time_ms": iso(end),
            "transcript_url": format!("https://api.zoom.us/v2/contact_center/recording/transcripts/download/R{n}?type=voice")})),
        ),
        event(
            "engagement_note_added",
            end,
            object(
                json!({"note_id": format!("N{n}"), "note": "customer called back",
            "last_modified_time": iso_s(end), "user_id": "U1"}),
            ),
        ),
        event(
            "engagement_disposition_added",
            end,
            object(json!({"disposition_id": format!("D{n}"), "disposition_name": "Resolved"})),
        ),
        event(
            "inbox_message_received",
            at_ms,
            object(json!({"message_id": format!("M{n}"), "inbox_id": "I1", "inbox_name": "Main"})),
        ),
        event(
            "voicemail_transcript_completed",
            at_ms,
            object(json!({"message_id": format!("M{n}"), "inbox_id": "I1",
            "transcript_url": format!("https://api.zoom.us/v2/contact_center/voicemail/transcripts/download/M{n}?type=voice")})),
        ),
    ]
}

/// The keyed natural keys of those events (what reconciliation must recover).
fn keyed_ids(n: u64) -> Vec<String> {
    vec![
        format!("recording_completed:R{n}"),
        format!("recording_transcript_completed:R{n}"),
        format!("engagement_note_added:E{n}:N{n}"),
        format!("engagement_disposition_added:E{n}:D{n}"),
        format!("inbox_message_received:M{n}"),
        format!("voicemail_transcript_completed:M{n}"),
    ]
}

/// Delivered records by id: (count, source).
fn delivered(sink: &FakeSink) -> BTreeMap<String, (u32, String)> {
    let mut out: BTreeMap<String, (u32, String)> = BTreeMap::new();
    for request in sink.accepted() {
        let record = request.record();
        let entry = out
            .entry(record["id"].as_str().unwrap().to_string())
            .or_insert((0, String::new()));
        entry.0 += 1;
        entry.1 = record["source"].as_str().unwrap().to_string();
    }
    out
}

fn reconcile_config(sim: &Simulator, dir: &std::path::Path, sink_url: &str) -> String {
    let text = config_text(sim, &dir.join("journal"), &http_sink("crm", sink_url));
    format!("{text}\n[reconcile]\ngap_margin = \"2m\"\ninterval = \"1h\"\nlookback = \"48h\"\n")
}

#[tokio::test(start_paused = true)]
async fn fills_gap_after_disconnect() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let crm = FakeSink::ok().await;
    let dir = temp_dir();
    let daemon = Daemon::start(settings(&reconcile_config(&sim, dir.path(), &crm.url())));
    sim.wait_live().await;
    // The first start sweeps the lookback (nothing there yet); let it finish.
    tokio::time::sleep(Duration::from_secs(10)).await;
    // Live before the outage.
    for body in engagement(1, clock::now_ms()) {
        assert!(sim.emit(body));
    }
    // The outage: Zoom refuses reconnects while three engagements happen.
    sim.set_handshake(HandshakeMode::Refuse);
    sim.drop_connection();
    tokio::time::sleep(Duration::from_secs(5)).await;
    for n in 2..=4 {
        for body in engagement(n, clock::now_ms()) {
            assert!(!sim.emit(body), "the socket is down");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    sim.set_handshake(HandshakeMode::Normal);
    sim.wait_live().await;
    let expected: Vec<String> = (1..=4).flat_map(keyed_ids).collect();
    tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            let got = delivered(&crm);
            if expected.iter().all(|id| got.contains_key(id)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "missing after reconciliation: {:?}",
            expected
                .iter()
                .filter(|id| !delivered(&crm).contains_key(*id))
                .collect::<Vec<_>>()
        )
    });
    daemon.stop().await.unwrap();
    let got = delivered(&crm);
    for n in 2..=4 {
        for id in keyed_ids(n) {
            assert_eq!(got[&id], (1, "reconcile".to_string()), "{id}");
        }
    }
    for id in keyed_ids(1) {
        assert_eq!(
            got[&id],
            (1, "websocket".to_string()),
            "seen live, not again from REST: {id}"
        );
    }
    // Unkeyed socket-only events of the outage are not recoverable.
    assert!(
        !got.keys()
            .any(|id| id.starts_with("engagement_started:") && got[id].1 == "reconcile")
    );
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn fills_gap_after_daemon_was_stopped() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let crm = FakeSink::ok().await;
    let dir = temp_dir();
    let config = reconcile_config(&sim, dir.path(), &crm.url());
    let daemon = Daemon::start(settings(&config));
    sim.wait_live().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    daemon.stop().await.unwrap();
    // While the process is down.
    for n in 1..=3 {
        for body in engagement(n, clock::now_ms()) {
            sim.emit(body);
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    let daemon = Daemon::start(settings(&config));
    sim.wait_live().await;
    let expected: Vec<String> = (1..=3).flat_map(keyed_ids).collect();
    tokio::time::timeout(Duration::from_secs(120), async {
        while !expected.iter().all(|id| delivered(&crm).contains_key(id)) {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await
    .expect("the downtime is reconciled at start");
    daemon.stop().await.unwrap();
    assert!(
        expected
            .iter()
            .all(|id| delivered(&crm)[id] == (1, "reconcile".to_string()))
    );
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn no_duplicates_when_socket_and_rest_overlap() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let crm = FakeSink::ok().await;
    let dir = temp_dir();
    let config = reconcile_config(&sim, dir.path(), &crm.url())
        .replace("interval = \"1h\"", "interval = \"1m\"");
    let daemon = Daemon::start(settings(&config));
    sim.wait_live().await;
    // After the first start's sweep, so the socket is first for these.
    tokio::time::sleep(Duration::from_secs(10)).await;
    for n in 1..=5 {
        for body in engagement(n, clock::now_ms()) {
            assert!(sim.emit(body));
        }
    }
    // Several sweeps over the same window, and a gap overlapping it.
    tokio::time::sleep(Duration::from_secs(200)).await;
    sim.drop_connection();
    sim.wait_live().await;
    tokio::time::sleep(Duration::from_secs(200)).await;
    daemon.stop().await.unwrap();
    let got = delivered(&crm);
    for n in 1..=5 {
        for id in keyed_ids(n) {
            assert_eq!(got[&id], (1, "websocket".to_string()), "{id}");
        }
    }
    assert!(
        sim.rest_requests().len() >= 6,
        "sweeps ran: {}",
        sim.rest_requests().len()
    );
    sim.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn honours_429_retry_after_and_pages_through_large_windows() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let crm = FakeSink::ok().await;
    let dir = temp_dir();
    // Missed before the daemon ever ran: the first start sweeps the lookback.
    let now = clock::now_ms();
    for n in 0..400 {
        for body in engagement(n, now - 3_600_000 + n * 1000) {
            sim.emit(body);
        }
    }
    sim.throttle_next(2, RetryAfter::Seconds(30));
    let started = tokio::time::Instant::now();
    let daemon = Daemon::start(settings(&reconcile_config(&sim, dir.path(), &crm.url())));
    let expected: Vec<String> = (0..400).flat_map(keyed_ids).collect();
    tokio::time::timeout(Duration::from_secs(600), async {
        while delivered(&crm).len() < expected.len() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await
    .expect("everything is recovered");
    assert!(
        started.elapsed() >= Duration::from_secs(60),
        "two 429s with Retry-After: 30 were waited out"
    );
    daemon.stop().await.unwrap();
    let got = delivered(&crm);
    assert!(
        expected
            .iter()
            .all(|id| got.get(id).map(|(n, _)| *n) == Some(1))
    );
    // 400 recordings and 400 voicemails at 300 a page: more than one page each,
    // every page asked with the same query.
    let recordings = sim
        .rest_requests()
        .iter()
        .filter(|r| r.path.ends_with("/contact_center/recordings"))
        .count();
    assert!(
        recordings >= 2 + 2,
        "{recordings} recording requests (2 throttled)"
    );
    sim.shutdown().await;
}
