//! The Salesforce sink end to end (DESIGN.md §3.5): the daemon in this
//! process, the simulator's Zoom, a `file://` media store, and the fake org
//! (`zcc_sim::sink::salesforce`) on real loopback sockets.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use redb::ReadableDatabase;
use serde_json::Value;
use zcc_relay::crm::phone::{Region, normalise};
use zcc_sim::scenario::{self, ScenarioOptions};
use zcc_sim::sink::salesforce::{ExternalIdField, Org, Person, SalesforceFake};

use crate::harness::Harness;
use crate::support::{MediaTable, SinkTable, zcc_relay};

const KEYED: &[&str] = &[
    "recording_completed",
    "recording_transcript_completed",
    "engagement_messaging_transcript_completed",
    "engagement_note_added",
    "engagement_disposition_added",
    "inbox_message_received",
    "voicemail_transcript_completed",
];

fn object(body: &Value) -> &Value {
    &body["payload"]["object"]
}

/// Records of the keyed types the daemon persisted so far.
fn keyed_persisted(snapshot: &zcc_relay::telemetry::stats::Snapshot) -> u64 {
    snapshot
        .by_event
        .iter()
        .filter(|(event, _)| {
            KEYED
                .iter()
                .any(|k| event.trim_start_matches("contact_center.") == *k)
        })
        .map(|(_, counts)| counts.persisted)
        .sum()
}

async fn harness_with(fake: &SalesforceFake) -> Harness {
    let mut h = Harness::new().await;
    h.config.media = Some(MediaTable::enabled());
    h.config.sinks = vec![SinkTable::salesforce(
        "salesforce",
        &fake.url(),
        &fake.client_id(),
        &fake.client_secret(),
    )];
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_to_one_task_per_engagement_through_faults() {
    let fake = SalesforceFake::start(Org::new()).await.unwrap();
    let h = harness_with(&fake).await;
    let options = ScenarioOptions::for_simulator(&h.sim);
    let script =
        scenario::generate_with(23, 20, SystemTime::now(), Duration::from_secs(1), &options);
    // A Contact whose phone is one customer's number written another way.
    let us = Region::parse("US");
    let linked_number = script
        .iter()
        .filter_map(|e| object(&e.body)["consumer_number"].as_str())
        .filter_map(|n| normalise(n, us))
        .find(|n| n.starts_with("+1") && n.len() == 12)
        .expect("a US customer number in the script");
    let digits = &linked_number[2..];
    let contact_id = fake.add_contact(Person::new("Ada", "Lovelace").phone(&format!(
        "({}) {}-{}",
        &digits[..3],
        &digits[3..6],
        &digits[6..]
    )));

    let daemon = h.start_live().await;
    let half = script.len() / 2;
    fake.unavailable_for_next(4);
    for event in &script[..half] {
        assert!(h.sim.emit(event.body.clone()));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    fake.invalidate_sessions();
    fake.request_limit_exceeded_for(Duration::from_secs(3));
    for event in &script[half..] {
        assert!(h.sim.emit(event.body.clone()));
    }
    daemon.wait_handled(script.len() as u64).await;
    let expected = keyed_persisted(&daemon.stats.snapshot());
    assert!(expected > 0);
    let waited = tokio::time::timeout(
        Duration::from_secs(90),
        daemon
            .stats
            .wait_until(|s| s.delivered_to("salesforce") >= expected),
    )
    .await;
    let snapshot = daemon.stats.snapshot();
    assert!(
        waited.is_ok(),
        "delivered {} of {expected}",
        snapshot.delivered_to("salesforce")
    );
    assert_eq!(
        snapshot
            .dead_lettered
            .get("salesforce")
            .copied()
            .unwrap_or(0),
        0
    );
    daemon.stop().await.unwrap();

    // What the journal folded, to compare against.
    let db = zcc_relay::journal::open_read_only(&h.journal()).unwrap();
    let txn = db.begin_read().unwrap();
    let engagements: BTreeSet<String> = script
        .iter()
        .filter(|e| {
            let event = e.body["event"].as_str().unwrap_or("");
            KEYED.iter().any(|k| event.ends_with(k))
        })
        .filter_map(|e| object(&e.body)["engagement_id"].as_str().map(str::to_owned))
        .collect();
    assert!(engagements.len() >= 15, "{} engagements", engagements.len());

    // The latest text of each note, and every text it had.
    let mut notes: BTreeMap<(String, String), Vec<(String, String)>> = BTreeMap::new();
    for event in &script {
        let o = object(&event.body);
        if let (Some(eng), Some(id), Some(text)) = (
            o["engagement_id"].as_str(),
            o["note_id"].as_str(),
            o["note"].as_str(),
        ) {
            notes.entry((eng.into(), id.into())).or_default().push((
                o["last_modified_time"].as_str().unwrap_or("").to_owned(),
                text.to_owned(),
            ));
        }
    }

    let mut linked = 0;
    let mut files = 0;
    for engagement in &engagements {
        let tasks = fake.tasks_with_external_id(engagement);
        assert_eq!(tasks.len(), 1, "engagement {engagement}: {tasks:?}");
        let task = &Value::Object(tasks[0].clone());
        let aggregate = zcc_relay::journal::read::interaction(&txn, engagement)
            .unwrap()
            .expect("an aggregate");
        assert_eq!(task["Status"], "Completed");
        let subtype = match aggregate.channel() {
            Some("voice" | "video") => "Call",
            _ => "Task",
        };
        assert_eq!(task["TaskSubtype"], subtype, "{engagement}");
        assert_eq!(
            task["CallDisposition"].as_str(),
            aggregate.disposition().and_then(|d| d.name).as_deref(),
            "{engagement}"
        );
        let description = task["Description"].as_str().unwrap_or("");
        for ((eng, _), versions) in notes.iter().filter(|((e, _), _)| e == engagement) {
            let latest = &versions.iter().max().unwrap().1;
            assert!(
                description.contains(latest.as_str()),
                "{eng}: {latest:?} missing"
            );
            for (_, text) in versions {
                if text != latest && !latest.contains(text.as_str()) {
                    assert!(
                        !description.contains(text.as_str()),
                        "{eng}: superseded {text:?}"
                    );
                }
            }
        }
        let number = aggregate.consumer().number.and_then(|n| normalise(&n, us));
        if number.as_deref() == Some(linked_number.as_str()) {
            assert_eq!(task["WhoId"].as_str(), Some(contact_id.as_str()));
            linked += 1;
        }
        let task_id = task["Id"].as_str().unwrap();
        for entry in aggregate.files() {
            let name = entry.location.rsplit('/').next().unwrap();
            let versions: Vec<_> = fake
                .content_versions()
                .into_iter()
                .filter(|v| {
                    v.first_publish_location_id.as_deref() == Some(task_id)
                        && v.path_on_client == name
                })
                .collect();
            assert_eq!(versions.len(), 1, "{engagement}: {name}");
            let path = url::Url::parse(&entry.location)
                .unwrap()
                .to_file_path()
                .unwrap();
            assert_eq!(&versions[0].bytes[..], &std::fs::read(path).unwrap()[..]);
            files += 1;
        }
    }
    assert!(linked >= 1, "no Task linked to the Contact");
    assert!(files >= 1, "no file attached");
    assert_eq!(
        fake.tasks().len(),
        engagements.len(),
        "no Task beyond one per engagement"
    );
    drop(txn);
    h.shutdown().await;
    fake.stop().await;
}

/// What the daemon logs at warn and above, for a test to read. The only
/// global subscriber of this test binary.
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture() -> Logs {
        let logs = Logs::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_env_filter("zcc_relay=warn")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .try_init()
            .expect("no other test installs a global subscriber");
        logs
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// `zcc-relay status` (text, and the salesforce sink's `setup_problem` of
/// `--json`) through the real binary, beside the daemon or after it.
async fn status(h: &Harness) -> (String, Value) {
    let config = h.write_config();
    let text = zcc_relay(["status"]).config(&config).output().await;
    let json = zcc_relay(["status", "--json"])
        .config(&config)
        .output()
        .await;
    let report: Value = serde_json::from_str(&json.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}\n{}", json.stdout, json.stderr));
    let sink = report["sinks"]
        .as_array()
        .and_then(|sinks| sinks.iter().find(|s| s["sink"] == "salesforce"))
        .unwrap_or_else(|| panic!("no salesforce sink: {report:#}"));
    (text.stdout, sink["setup_problem"].clone())
}

/// The status names the missing field and its fix.
fn names_the_field(text: &str, problem: &Value) {
    let reason = problem["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("Zoom_Engagement_Id__c") && reason.contains("External ID"),
        "{problem:#}"
    );
    assert!(problem["since"].as_str().is_some(), "{problem:#}");
    let line = text
        .lines()
        .find(|l| l.contains("sink salesforce has a set-up problem"))
        .unwrap_or_else(|| panic!("no set-up problem in:\n{text}"));
    assert!(
        line.contains("Zoom_Engagement_Id__c") && line.contains("External ID"),
        "{line}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("salesforce") && l.ends_with("set-up problem")),
        "the sink's state:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_external_id_field_waits_and_converges_once_it_exists() {
    let logs = Logs::capture();
    let fake = SalesforceFake::start(Org::new().external_id_field(None))
        .await
        .unwrap();
    let h = harness_with(&fake).await;
    let options = ScenarioOptions::for_simulator(&h.sim);
    let script = scenario::generate_with(5, 3, SystemTime::now(), Duration::from_secs(1), &options);
    let daemon = h.start_live().await;
    for event in &script {
        assert!(h.sim.emit(event.body.clone()));
    }
    daemon.wait_handled(script.len() as u64).await;
    let expected = keyed_persisted(&daemon.stats.snapshot());
    let mut failing = daemon.stats.failing_sinks();
    tokio::time::timeout(
        Duration::from_secs(30),
        failing.wait_for(|set| set.contains("salesforce")),
    )
    .await
    .expect("the sink is marked failing")
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let snapshot = daemon.stats.snapshot();
    assert_eq!(snapshot.delivered_to("salesforce"), 0);
    // `zcc_relay_sink_setup_error{sink="salesforce"}` is 1 (the alert
    // ZccRelaySinkSetupError).
    assert!(
        snapshot.setup_error_sinks.contains("salesforce"),
        "a set-up error, not a temporary failure: {:?}",
        snapshot.setup_error_sinks
    );
    assert_eq!(
        snapshot
            .dead_lettered
            .get("salesforce")
            .copied()
            .unwrap_or(0),
        0
    );
    assert!(fake.tasks().is_empty());
    let text = logs.text();
    let named: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("salesforce") && l.contains("Zoom_Engagement_Id__c"))
        .collect();
    assert!(!named.is_empty(), "the log names the field:\n{text}");
    assert!(
        named.iter().any(|l| l.contains("External ID")),
        "and the fix:\n{text}"
    );
    // `status` names it beside the running daemon, and after it stopped.
    let (text, problem) = status(&h).await;
    names_the_field(&text, &problem);
    daemon.stop().await.unwrap();
    let (text, problem) = status(&h).await;
    assert!(text.contains("NOT RUNNING"), "{text}");
    names_the_field(&text, &problem);
    let daemon = h.start_live().await;

    fake.set_external_id_field(Some(ExternalIdField::proper("Zoom_Engagement_Id__c")));
    tokio::time::timeout(
        Duration::from_secs(60),
        daemon
            .stats
            .wait_until(|s| s.delivered_to("salesforce") >= expected),
    )
    .await
    .expect("converges once the field exists");
    // The problem goes with the sink's first success.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (text, problem) = status(&h).await;
        if problem.is_null() && !text.contains("set-up problem") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still shown: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        daemon.stats.snapshot().setup_error_sinks.is_empty(),
        "delivering clears the set-up error"
    );
    assert_eq!(
        daemon
            .stats
            .snapshot()
            .dead_lettered
            .get("salesforce")
            .copied()
            .unwrap_or(0),
        0
    );
    daemon.stop().await.unwrap();
    let (text, problem) = status(&h).await;
    assert!(
        problem.is_null() && !text.contains("set-up problem"),
        "{text}"
    );
    let engagements: BTreeSet<&str> = script
        .iter()
        .filter_map(|e| object(&e.body)["engagement_id"].as_str())
        .collect();
    for engagement in engagements {
        assert!(fake.tasks_with_external_id(engagement).len() <= 1);
    }
    h.shutdown().await;
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_above_the_json_limit_goes_multipart() {
    let fake = SalesforceFake::start(Org::new()).await.unwrap();
    let h = harness_with(&fake).await;
    // Just above the 37.5 MB of base64 JSON.
    h.sim.set_media_sizes(37_600_000, 1_000);
    let daemon = h.start_live().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let body = serde_json::json!({
        "event": "contact_center.recording_completed",
        "event_ts": now,
        "payload": {"account_id": h.sim.config().account_id, "object": {
            "recording_id": "rec-big-1", "engagement_id": "eng-big-1", "channel": "voice",
            "recording_type": "automatic",
            "users": [{"user_id": "u1", "user_display_name": "Agent One"}],
        }},
    });
    assert!(h.sim.emit(body));
    daemon.wait_delivered("salesforce", 1).await;
    daemon.stop().await.unwrap();
    let task = &fake.tasks_with_external_id("eng-big-1")[0];
    let versions: Vec<_> = fake
        .content_versions()
        .into_iter()
        .filter(|v| {
            v.first_publish_location_id.as_ref() == task["Id"].as_str().map(str::to_owned).as_ref()
        })
        .collect();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].upload, "multipart");
    assert_eq!(versions[0].bytes.len(), 37_600_000);
    h.shutdown().await;
    fake.stop().await;
}

/// A keyed event of engagement `engagement` made by hand.
fn event(h: &Harness, name: &str, engagement: &str, object: Value) -> Value {
    let now = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut object = object;
    object["engagement_id"] = engagement.into();
    object["channel"] = "voice".into();
    object["users"] = serde_json::json!([{"user_id": "u1", "user_display_name": "Agent One"}]);
    serde_json::json!({
        "event": format!("contact_center.{name}"),
        "event_ts": now,
        "payload": {"account_id": h.sim.config().account_id, "object": object},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_neither_looks_up_recorded_files_nor_recreates_the_task() {
    let fake = SalesforceFake::start(Org::new()).await.unwrap();
    let h = harness_with(&fake).await;
    let daemon = h.start_live().await;
    let recording = serde_json::json!({"recording_id": "rec-r1", "recording_type": "automatic"});
    assert!(
        h.sim
            .emit(event(&h, "recording_completed", "eng-r1", recording))
    );
    daemon.wait_delivered("salesforce", 1).await;
    daemon.stop().await.unwrap();
    let first = fake.request_counts();
    // A new engagement: the create goes first (no refused update before it);
    // its file is not recorded yet, so it is looked up once before it is
    // created.
    assert_eq!(
        (first.upsert, first.query, first.content_version),
        (1, 1, 1),
        "{first:?}"
    );
    let task = fake.tasks_with_external_id("eng-r1");
    assert_eq!(task.len(), 1);

    // After a restart, the engagement's next artefact: the journal knows the
    // Task and its file.
    let daemon = h.start_live().await;
    let note = serde_json::json!({
        "note_id": "note-r1", "note": "Customer called back.",
        "last_modified_time": "2026-12-07T10:00:00Z",
    });
    assert!(
        h.sim
            .emit(event(&h, "engagement_note_added", "eng-r1", note))
    );
    daemon.wait_delivered("salesforce", 1).await;
    daemon.stop().await.unwrap();
    let second = fake.request_counts();
    assert_eq!(second.upsert, first.upsert + 1, "one update: {second:?}");
    assert_eq!(second.query, first.query, "no file looked up: {second:?}");
    assert_eq!(second.content_version, first.content_version);
    let task = fake.tasks_with_external_id("eng-r1");
    assert_eq!(task.len(), 1);
    assert!(
        task[0]["Description"]
            .as_str()
            .unwrap_or("")
            .contains("Customer called back.")
    );
    assert_eq!(fake.content_versions().len(), 1);
    h.shutdown().await;
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_the_journal_does_not_know_is_updated_without_its_create_only_fields() {
    let fake = SalesforceFake::start(Org::new()).await.unwrap();
    // Created before this journal knew it (an earlier journal, or a crash
    // between the create and its record).
    let mut fields = serde_json::Map::new();
    fields.insert("Zoom_Engagement_Id__c".into(), "eng-k1".into());
    fields.insert("Subject".into(), "Zoom call".into());
    fields.insert("TaskSubtype".into(), "Call".into());
    fields.insert("Status".into(), "Completed".into());
    let task_id = fake.insert_task(fields);
    let h = harness_with(&fake).await;
    let daemon = h.start_live().await;
    let note = serde_json::json!({
        "note_id": "note-k1", "note": "Asked for a refund.",
        "last_modified_time": "2026-12-07T10:00:00Z",
    });
    assert!(
        h.sim
            .emit(event(&h, "engagement_note_added", "eng-k1", note))
    );
    daemon.wait_delivered("salesforce", 1).await;
    // The creating upsert is refused (TaskSubtype is create-only), the
    // update goes without it.
    let after_first = fake.request_counts();
    assert_eq!(after_first.upsert, 2, "{after_first:?}");
    let tasks = fake.tasks_with_external_id("eng-k1");
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0]["Id"].as_str(), Some(task_id.as_str()));
    assert!(
        tasks[0]["Description"]
            .as_str()
            .unwrap_or("")
            .contains("Asked for a refund.")
    );
    // Now the journal knows it: the next artefact is one update.
    let edited = serde_json::json!({
        "note_id": "note-k1", "note": "Asked for a refund; granted.",
        "last_modified_time": "2026-12-07T10:05:00Z",
    });
    assert!(
        h.sim
            .emit(event(&h, "engagement_note_added", "eng-k1", edited))
    );
    daemon.wait_delivered("salesforce", 2).await;
    daemon.stop().await.unwrap();
    assert_eq!(fake.request_counts().upsert, after_first.upsert + 1);
    let tasks = fake.tasks_with_external_id("eng-k1");
    assert_eq!(tasks.len(), 1);
    assert!(
        tasks[0]["Description"]
            .as_str()
            .unwrap_or("")
            .contains("Asked for a refund; granted.")
    );
    h.shutdown().await;
    fake.stop().await;
}
