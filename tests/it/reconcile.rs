//! Reconciliation against the simulator's REST API: what the socket missed is
//! delivered, once per natural key, with `source: "reconcile"`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use zcc_relay::clock;
use zcc_relay::journal::{self, Gap, GapState, Journal, SinkRoute};
use zcc_relay::route::EventFilter;
use zcc_sim::{HandshakeMode, RetryAfter, Simulator};

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

/// A simulator and a daemon config with one HTTP sink `crm` posting to
/// `crm`, sweeping the last 48 hours every hour, gaps widened by 2 minutes.
async fn reconcile_harness(crm: &FakeSink) -> Harness {
    let mut h = Harness::with_sinks([SinkTable::http("crm", &crm.url())]).await;
    h.config.reconcile = Some(ReconcileTable {
        gap_margin: Some("2m".into()),
        interval: Some("1h".into()),
        lookback: Some("48h".into()),
        ..ReconcileTable::default()
    });
    h
}

#[tokio::test(start_paused = true)]
async fn fills_gap_after_disconnect() {
    let crm = FakeSink::ok().await;
    let h = reconcile_harness(&crm).await;
    let sim = &h.sim;
    // The first start sweeps the lookback (nothing there yet); let it finish.
    let daemon = h.start_live().await;
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
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn fills_gap_after_daemon_was_stopped() {
    let crm = FakeSink::ok().await;
    let h = reconcile_harness(&crm).await;
    let sim = &h.sim;
    let daemon = h.start_live().await;
    daemon.stop().await.unwrap();
    // While the process is down.
    for n in 1..=3 {
        for body in engagement(n, clock::now_ms()) {
            sim.emit(body);
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
    let daemon = h.start();
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
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn no_duplicates_when_socket_and_rest_overlap() {
    let crm = FakeSink::ok().await;
    let mut h = reconcile_harness(&crm).await;
    h.config.reconcile_mut().interval = Some("1m".into());
    let sim = &h.sim;
    // After the first start's sweep, so the socket is first for these.
    let daemon = h.start_live().await;
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
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn honours_429_retry_after() {
    let crm = FakeSink::ok().await;
    let h = reconcile_harness(&crm).await;
    let sim = &h.sim;
    // Missed before the daemon ever ran: the first start sweeps the lookback.
    let now = clock::now_ms();
    for n in 0..400 {
        for body in engagement(n, now - 3_600_000 + n * 1000) {
            sim.emit(body);
        }
    }
    sim.throttle_next(2, RetryAfter::Seconds(30));
    let started = tokio::time::Instant::now();
    let daemon = h.start();
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
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn pages_through_large_windows() {
    let crm = FakeSink::ok().await;
    let h = reconcile_harness(&crm).await;
    let sim = &h.sim;
    // 1,200 recordings nobody saw on the socket, in the last two hours.
    let now = clock::now_ms();
    for n in 0..1_200u64 {
        let end = now - 7_200_000 + n * 5_000;
        sim.emit_without_socket(json!({"event": "contact_center.recording_completed", "event_ts": end,
            "payload": {"account_id": "sim-account", "object": {"recording_id": format!("big-{n}"), "engagement_id": format!("E{n}"),
                "recording_start_time_ms": jiff::Timestamp::from_millisecond((end - 60_000) as i64).unwrap().strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
                "recording_end_time_ms": jiff::Timestamp::from_millisecond(end as i64).unwrap().strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()}}}));
    }
    let daemon = h.start();
    tokio::time::timeout(Duration::from_secs(600), async {
        while crm.accepted().len() < 1_200 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await
    .expect("all 1,200 recovered");
    daemon.stop().await.unwrap();
    let got = delivered(&crm);
    assert_eq!(got.len(), 1_200);
    assert!(
        (0..1_200)
            .all(|n| got[&format!("recording_completed:big-{n}")] == (1, "reconcile".to_string()))
    );
    // Pages of 300: the first request and three more with a page token, each
    // repeating the same query.
    let pages: Vec<String> = sim
        .rest_requests()
        .iter()
        .filter(|r| r.path.ends_with("/contact_center/recordings"))
        .map(|r| r.query.clone())
        .collect();
    assert!(pages.len() >= 4, "{pages:?}");
    let without_token = |q: &str| {
        q.split('&')
            .filter(|p| !p.starts_with("next_page_token="))
            .collect::<Vec<_>>()
            .join("&")
    };
    let first_sweep: Vec<&String> = pages.iter().take(4).collect();
    assert!(
        first_sweep
            .iter()
            .all(|q| without_token(q) == without_token(first_sweep[0])),
        "{first_sweep:?}"
    );
    assert_eq!(
        first_sweep
            .iter()
            .filter(|q| q.contains("next_page_token="))
            .count(),
        3,
        "{first_sweep:?}"
    );
    h.shutdown().await;
}

const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;

/// `yyyy-MM-ddTHH:mm:ssZ`, as an operator types `--from` and `--to`.
fn rfc3339(ms: u64) -> String {
    jiff::Timestamp::from_millisecond(ms as i64)
        .unwrap()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// `n` of each of the six keyed event types one `engagement` stands for: a
/// run's `found` or `new` counts.
fn each_type(n: u64) -> Value {
    json!({
        "contact_center.recording_completed": n,
        "contact_center.recording_transcript_completed": n,
        "contact_center.engagement_note_added": n,
        "contact_center.engagement_disposition_added": n,
        "contact_center.inbox_message_received": n,
        "contact_center.voicemail_transcript_completed": n,
    })
}

/// `reconcile_harness` with its config written for the real binary, with a
/// lookback of one hour (a daemon's own sweep then finds none of the older
/// items these tests plant) and `max_requests_per_second`.
async fn reconcile_cli_harness(
    crm: &FakeSink,
    max_requests_per_second: Option<u32>,
) -> (Harness, PathBuf) {
    let mut h = reconcile_harness(crm).await;
    let reconcile = h.config.reconcile_mut();
    reconcile.lookback = Some("1h".into());
    reconcile.max_requests_per_second = max_requests_per_second;
    let config = h.write_config();
    (h, config)
}

/// Runs `zcc-relay reconcile --config CONFIG ARGS` off the runtime's threads.
async fn reconcile_cli(config: &Path, args: &[&str]) -> Ran {
    zcc_relay(["reconcile"])
        .config(config)
        .args(args)
        .output()
        .await
}

/// `reconcile ARGS --json`, which must succeed and print one JSON document.
async fn reconcile_json(config: &Path, args: &[&str]) -> Value {
    zcc_relay(["reconcile"])
        .config(config)
        .args(args)
        .args(["--json"])
        .json()
        .await
}

/// `queue stats --json` through the real binary.
async fn queue_stats(config: &Path) -> Value {
    zcc_relay(["queue", "stats", "--json"])
        .config(config)
        .json()
        .await
}

/// Records held by the journal and pending for sink `crm`, per `queue stats`.
async fn held_and_pending(config: &Path) -> (u64, u64) {
    let stats = queue_stats(config).await;
    let crm = stats["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["sink"] == "crm")
        .unwrap_or_else(|| panic!("no sink crm in {stats:#}"))
        .clone();
    (
        stats["journal"]["records"].as_u64().unwrap(),
        crm["pending"].as_u64().unwrap(),
    )
}

/// The distinct `from`..`to` windows (ms) the listing at `path` was asked for,
/// oldest first.
fn listed_windows(sim: &Simulator, path: &str) -> Vec<(i64, i64)> {
    let windows: BTreeSet<(i64, i64)> = sim
        .rest_requests()
        .iter()
        .filter(|r| r.path == path)
        .map(|r| {
            let query: BTreeMap<String, String> = url::form_urlencoded::parse(r.query.as_bytes())
                .into_owned()
                .collect();
            let at = |key: &str| {
                query[key]
                    .parse::<jiff::Timestamp>()
                    .unwrap_or_else(|e| panic!("{key} in {:?}: {e}", r.query))
                    .as_millisecond()
            };
            (at("from"), at("to"))
        })
        .collect();
    windows.into_iter().collect()
}

/// Waits (tokio time) until every one of `ids` was delivered.
async fn wait_delivered_ids(sink: &FakeSink, ids: &[String], limit: Duration) {
    let waited = tokio::time::timeout(limit, async {
        while !ids.iter().all(|id| delivered(sink).contains_key(id)) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    if waited.is_err() {
        let got = delivered(sink);
        let missing: Vec<&String> = ids.iter().filter(|id| !got.contains_key(*id)).collect();
        panic!("not delivered: {missing:?}");
    }
}

/// Polls `condition` (real time: another process is at work) for up to 30 s.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for {what}");
}

/// The gap ledger of a journal no process owns.
async fn ledger(dir: &Path) -> Vec<Gap> {
    let journal = Journal::open(
        dir,
        vec![SinkRoute {
            name: "crm".into(),
            filter: EventFilter::all(),
        }],
    )
    .unwrap();
    let gaps = journal.gaps().await.unwrap();
    journal.close().await;
    gaps
}

/// `engagement` with the recording ending at `at_ms` as well, so that all of
/// its items fall in a window of a few seconds.
fn engagement_at(n: u64, at_ms: u64) -> Vec<Value> {
    let end = jiff::Timestamp::from_millisecond(at_ms as i64)
        .unwrap()
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string();
    let mut bodies = engagement(n, at_ms);
    for body in &mut bodies {
        if let Some(time) = body["payload"]["object"].get_mut("recording_end_time_ms") {
            *time = json!(end);
        }
    }
    bodies
}

/// The real daemon, killed if a failing test leaves it running.
struct Running(Option<std::process::Child>);

impl Running {
    fn spawn(config: &Path, log: &Path) -> Running {
        Running(Some(spawn_run(config, "info", log)))
    }

    fn id(&self) -> u32 {
        self.0.as_ref().unwrap().id()
    }

    fn kill_9(&mut self) {
        let mut child = self.0.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, then its exit status.
    async fn stop(mut self) -> Option<i32> {
        let child = self.0.take().unwrap();
        sigterm(&child);
        wait_output(child).await.status.code()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splits_windows_longer_than_30_days() {
    const N: u64 = 15;
    let crm = FakeSink::ok().await;
    let (h, config) = reconcile_cli_harness(&crm, Some(10)).await;
    let sim = &h.sim;
    let to_ms = clock::now_ms() / 1000 * 1000;
    let from_ms = to_ms - 75 * DAY_MS;
    // From 8 hours to 70 days back, so each 30-day part holds some, and none
    // is within reach of the daemon's own sweep (lookback and engagement
    // lookback) started afterwards.
    for n in 0..N {
        for body in engagement(n, to_ms - 8 * HOUR_MS - n * 5 * DAY_MS) {
            sim.emit_without_socket(body);
        }
    }
    let (from, to) = (rfc3339(from_ms), rfc3339(to_ms));
    let report = reconcile_json(&config, &["--from", &from, "--to", &to]).await;
    assert_eq!(report["mode"], "exclusive");
    assert_eq!(report["report"]["found"], each_type(N), "{report:#}");
    assert_eq!(report["report"]["new"], each_type(N), "{report:#}");

    // Zoom (the simulator) answers 400 to more than 31 days: each listing was
    // asked in parts of at most 30 days that together cover the window.
    for path in [
        "/v2/contact_center/recordings",
        "/v2/contact_center/engagements",
        "/v2/contact_center/inboxes/messages",
    ] {
        let windows = listed_windows(sim, path);
        assert!(windows.len() >= 3, "{path}: {windows:?}");
        for (from, to) in &windows {
            assert!(
                to - from <= 30 * DAY_MS as i64,
                "{path}: {} .. {}",
                rfc3339(*from as u64),
                rfc3339(*to as u64)
            );
        }
        assert!(windows[0].0 <= from_ms as i64, "{path}: {windows:?}");
        assert!(
            windows.last().unwrap().1 >= to_ms as i64,
            "{path}: {windows:?}"
        );
        assert!(
            windows.windows(2).all(|w| w[1].0 <= w[0].1),
            "{path} has holes: {windows:?}"
        );
    }

    // The next daemon start delivers what the command added, once each.
    let expected: BTreeSet<String> = (0..N).flat_map(keyed_ids).collect();
    let daemon = h.start();
    crm.wait_accepted(expected.len()).await;
    daemon.stop().await.unwrap();
    let got = delivered(&crm);
    assert_eq!(got.keys().cloned().collect::<BTreeSet<_>>(), expected);
    for (id, delivery) in &got {
        assert_eq!(delivery, &(1, "reconcile".to_string()), "{id}");
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_cli_dry_run_reports_and_changes_nothing() {
    let crm = FakeSink::ok().await;
    let (h, config) = reconcile_cli_harness(&crm, None).await;
    let (sim, dir) = (&h.sim, &h.dir);
    let now = clock::now_ms() / 1000 * 1000;
    let (from, to) = (rfc3339(now - 3 * DAY_MS), rfc3339(now));
    let window = ["--from", from.as_str(), "--to", to.as_str()];
    let dry_window = [&window[..], &["--dry-run"]].concat();
    // 12 to 48 hours back: older than anything a daemon's own sweep looks at.
    let plant = |range: std::ops::RangeInclusive<u64>| {
        for n in range {
            for body in engagement(n, now - 6 * HOUR_MS * (n + 1)) {
                sim.emit_without_socket(body);
            }
        }
    };

    // The journal already has two engagements' records; Zoom lists five.
    plant(1..=2);
    let seeded = reconcile_json(&config, &window).await;
    assert_eq!(seeded["report"]["new"], each_type(2), "{seeded:#}");
    plant(3..=5);
    let before = held_and_pending(&config).await;
    assert_eq!(before, (12, 12));
    let dry = reconcile_json(&config, &dry_window).await;
    assert_eq!(dry["mode"], "exclusive");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["report"]["found"], each_type(5), "{dry:#}");
    assert_eq!(dry["report"]["new"], each_type(3), "{dry:#}");
    assert_eq!(
        held_and_pending(&config).await,
        before,
        "a dry run changes nothing"
    );
    // What it said would be added is what a real run adds.
    let applied = reconcile_json(&config, &window).await;
    assert_eq!(applied["dry_run"], false);
    assert_eq!(applied["report"]["new"], dry["report"]["new"]);
    assert_eq!(held_and_pending(&config).await, (30, 30));

    // Beside a running daemon: a dry run reads its journal, a real run is refused.
    let daemon = Running::spawn(&config, &dir.path().join("daemon.log"));
    let pid = daemon.id();
    tokio::time::timeout(Duration::from_secs(30), sim.wait_live())
        .await
        .expect("daemon connects");
    plant(6..=7);
    let dry = reconcile_json(&config, &dry_window).await;
    assert_eq!(dry["mode"], "read-only");
    assert_eq!(dry["report"]["found"], each_type(7), "{dry:#}");
    assert_eq!(dry["report"]["new"], each_type(2), "{dry:#}");
    let refused = reconcile_cli(&config, &window).await;
    let stderr = &refused.stderr;
    assert_eq!(refused.code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("the journal is in use by zcc-relay pid {pid}")),
        "{stderr}"
    );
    assert!(stderr.contains("--dry-run"), "{stderr}");
    // The daemon delivers what the real runs added and nothing the dry runs saw.
    let added: Vec<String> = (1..=5).flat_map(keyed_ids).collect();
    wait_delivered_ids(&crm, &added, Duration::from_secs(30)).await;
    let status = daemon.stop().await;
    let log = std::fs::read_to_string(dir.path().join("daemon.log")).unwrap();
    assert_eq!(status, Some(0), "{log}");
    let got = delivered(&crm);
    assert_eq!(
        got.keys().cloned().collect::<BTreeSet<_>>(),
        added.into_iter().collect()
    );

    // A window the command cannot use is refused before anything is asked.
    let asked = sim.rest_requests().len();
    for (args, message) in [
        (
            ["--from", "yesterday", "--to", to.as_str()],
            "--from \"yesterday\" is not an RFC 3339 time",
        ),
        (
            ["--from", to.as_str(), "--to", from.as_str()],
            "--from must be before --to",
        ),
    ] {
        let output = reconcile_cli(&config, &args).await;
        let stderr = &output.stderr;
        assert_eq!(output.code, Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
    }
    assert_eq!(sim.rest_requests().len(), asked);
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn retries_items_not_ready_yet() {
    let crm = FakeSink::ok().await;
    let mut h = reconcile_harness(&crm).await;
    h.config.reconcile_mut().interval = Some("1m".into());
    let sim = &h.sim;
    let daemon = h.start_live().await;
    // Zoom lists a recording before its transcript exists, and an engagement
    // (with its note and disposition) only once it has ended.
    let not_yet = [
        "contact_center.recording_transcript_completed",
        "contact_center.engagement_ended",
    ];
    let (now, later): (Vec<Value>, Vec<Value>) = engagement_at(1, clock::now_ms())
        .into_iter()
        .partition(|body| !not_yet.contains(&body["event"].as_str().unwrap()));
    for body in now {
        sim.emit_without_socket(body);
    }
    let ready = [
        "recording_completed:R1".to_string(),
        "inbox_message_received:M1".into(),
        "voicemail_transcript_completed:M1".into(),
    ];
    wait_delivered_ids(&crm, &ready, Duration::from_secs(120)).await;
    // Two more sweeps see the same and still nothing more.
    let sweeps = |sim: &Simulator| {
        sim.rest_requests()
            .iter()
            .filter(|r| r.path.ends_with("/contact_center/recordings"))
            .count()
    };
    let swept = sweeps(sim);
    tokio::time::sleep(Duration::from_secs(150)).await;
    assert!(sweeps(sim) >= swept + 2, "sweeps ran");
    let got = delivered(&crm);
    for id in [
        "recording_transcript_completed:R1",
        "engagement_note_added:E1:N1",
        "engagement_disposition_added:E1:D1",
    ] {
        assert!(!got.contains_key(id), "{id} is not ready yet");
    }

    for body in later {
        sim.emit_without_socket(body);
    }
    wait_delivered_ids(&crm, &keyed_ids(1), Duration::from_secs(120)).await;
    // Later sweeps list all of it again: still once each.
    tokio::time::sleep(Duration::from_secs(150)).await;
    daemon.stop().await.unwrap();
    let got = delivered(&crm);
    assert_eq!(
        got.keys().cloned().collect::<BTreeSet<_>>(),
        keyed_ids(1).into_iter().collect()
    );
    for (id, delivery) in &got {
        assert_eq!(delivery, &(1, "reconcile".to_string()), "{id}");
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_during_reconcile_repeats_window() {
    let crm = FakeSink::ok().await;
    // A margin of a second: the gap is over (and can be marked done) by the
    // time it is reconciled. One request a second: time to stall the gap run
    // between its listings.
    let (mut h, _) = reconcile_cli_harness(&crm, Some(1)).await;
    h.config.reconcile_mut().gap_margin = Some("1s".into());
    let config = h.write_config();
    let (sim, dir, journal_dir) = (&h.sim, &h.dir, h.journal());
    let mut first = Running::spawn(&config, &dir.path().join("first.log"));
    tokio::time::timeout(Duration::from_secs(30), sim.wait_live())
        .await
        .expect("daemon connects");
    // The first start's sweep (three listings) is over before the outage, and
    // a heartbeat says the daemon has recorded itself live.
    wait_until("the first sweep", || sim.rest_requests().len() >= 3).await;
    let heartbeats = sim.heartbeats_received();
    wait_until("a heartbeat", || sim.heartbeats_received() > heartbeats).await;

    // The outage: Zoom refuses reconnects while three engagements happen.
    sim.set_handshake(HandshakeMode::Refuse);
    sim.drop_connection();
    let outage_at = clock::now_ms();
    for n in 1..=3 {
        for body in engagement_at(n, clock::now_ms()) {
            assert!(!sim.emit(body), "the socket is down");
        }
    }
    let asked = sim.rest_requests().len();
    sim.set_handshake(HandshakeMode::Normal);
    // The gap run lists recordings (and commits what it finds), then Zoom
    // makes it wait a minute; it is killed during that wait.
    wait_until("the gap run", || {
        sim.rest_requests()[asked..]
            .iter()
            .any(|r| r.path.ends_with("/contact_center/recordings"))
    })
    .await;
    sim.throttle_next(1, RetryAfter::Seconds(60));
    let throttled = sim.rest_requests().len();
    wait_until("the throttled request", || {
        sim.rest_requests().len() > throttled
    })
    .await;
    let recordings: Vec<String> = (1..=3)
        .flat_map(|n| {
            [
                format!("recording_completed:R{n}"),
                format!("recording_transcript_completed:R{n}"),
            ]
        })
        .collect();
    wait_delivered_ids(&crm, &recordings, Duration::from_secs(30)).await;
    // Acked too, so nothing is sent twice for a reason other than the crash.
    let mut pending = u64::MAX;
    for _ in 0..300 {
        pending = held_and_pending(&config).await.1;
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(pending, 0, "the recordings were acked");
    first.kill_9();
    let outage = |gaps: &[Gap]| -> Gap {
        *gaps
            .iter()
            .find(|g| g.start_ms <= outage_at && outage_at <= g.end_ms)
            .unwrap_or_else(|| panic!("no gap holds {outage_at}: {gaps:?}"))
    };
    let gaps = ledger(&journal_dir).await;
    assert_eq!(outage(&gaps).state, GapState::Pending, "killed mid-run");

    // Restarted with Zoom healthy: the whole window again, each record once.
    let second = Running::spawn(&config, &dir.path().join("second.log"));
    let expected: Vec<String> = (1..=3).flat_map(keyed_ids).collect();
    wait_delivered_ids(&crm, &expected, Duration::from_secs(30)).await;
    // Marked done after its records were committed: wait for it, read-only.
    wait_until("the gap marked done", || {
        journal::open_read_only(&journal_dir)
            .and_then(|db| {
                let txn = redb::ReadableDatabase::begin_read(&db)?;
                journal::read::gaps(&txn)
            })
            .is_ok_and(|gaps| outage(&gaps).state == GapState::Done)
    })
    .await;
    let status = second.stop().await;
    let log = std::fs::read_to_string(dir.path().join("second.log")).unwrap();
    assert_eq!(status, Some(0), "{log}");
    let gaps = ledger(&journal_dir).await;
    assert_eq!(outage(&gaps).state, GapState::Done, "{gaps:?}");
    let got = delivered(&crm);
    assert_eq!(
        got.keys().cloned().collect::<BTreeSet<_>>(),
        expected.iter().cloned().collect()
    );
    for (id, delivery) in &got {
        assert_eq!(delivery, &(1, "reconcile".to_string()), "{id}");
    }
    h.shutdown().await;
}

#[tokio::test(start_paused = true)]
async fn shutdown_does_not_wait_out_a_rate_limit() {
    let crm = FakeSink::ok().await;
    let h = reconcile_harness(&crm).await;
    let sim = &h.sim;
    // The first start's sweep is told to come back in an hour.
    sim.throttle_next(1, RetryAfter::Seconds(3600));
    let daemon = h.start();
    sim.wait_live().await;
    while sim.rest_requests().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopping = tokio::time::Instant::now();
    daemon.stop().await.unwrap();
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "stopping took {:?}",
        stopping.elapsed()
    );
    assert_eq!(sim.rest_requests().len(), 1, "nothing asked after the stop");
    h.shutdown().await;
}
