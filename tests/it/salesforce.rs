//! The Salesforce sink end to end (DESIGN.md §3.5): the daemon in this
//! process, the simulator's Zoom, a `file://` media store, and the fake org
//! (`zcc_sim::sink::salesforce`) on real loopback sockets.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use redb::ReadableDatabase;
use serde_json::Value;
use zcc_relay::crm::phone::{Region, normalise};
use zcc_sim::scenario::{self, ScenarioOptions};
use zcc_sim::sink::salesforce::{ExternalIdField, Org, Person, SalesforceFake};

use crate::harness::Harness;
use crate::support::{
    MediaTable, SinkTable, keyed_engagements, keyed_persisted, note_versions, object, zcc_relay,
};

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

/// The salesforce sink's pending records and dead letters in the journal
/// (no daemon running).
fn journal_counts(h: &Harness) -> (u64, u64) {
    let db = zcc_relay::journal::open_read_only(&h.journal()).unwrap();
    let txn = db.begin_read().unwrap();
    let stats = zcc_relay::journal::read::sink_stats(&txn, "salesforce").unwrap();
    (stats.pending, stats.dead)
}

/// Twenty engagements with re-sends and edited notes, through a 503 burst, a
/// session invalidation and ten seconds of REQUEST_LIMIT_EXCEEDED (the
/// backlog it leaves drains with sObject Collections), and one kill -9 of the
/// real binary while it drains: the org ends with the full picture, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_to_one_task_per_engagement_through_faults() {
    let fake = SalesforceFake::start(Org::new()).await.unwrap();
    let h = harness_with(&fake).await;
    let options = ScenarioOptions::for_simulator(&h.sim);
    let script =
        scenario::generate_with(23, 20, SystemTime::now(), Duration::from_secs(1), &options);
    let resent = script.len()
        - script
            .iter()
            .map(|e| e.body.to_string())
            .collect::<BTreeSet<_>>()
            .len();
    assert!(resent > 0, "the script re-sends events");
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

    // 1. In this process: the events arrive through the faults; the limit
    // leaves a backlog.
    let daemon = h.start_live().await;
    let half = script.len() / 2;
    fake.unavailable_for_next(4);
    for event in &script[..half] {
        assert!(h.sim.emit(event.body.clone()));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    fake.invalidate_sessions();
    let limit = std::time::Instant::now();
    fake.request_limit_exceeded_for(Duration::from_secs(10));
    for event in &script[half..] {
        assert!(h.sim.emit(event.body.clone()));
    }
    daemon.wait_handled(script.len() as u64).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    daemon.stop().await.unwrap();
    let (backlog, dead) = journal_counts(&h);
    assert_eq!(dead, 0);
    assert!(backlog > 0, "the limit left a backlog");

    // 2. The real binary drains it once the limit is over, and is killed
    // with SIGKILL while it writes.
    let config = h.write_config();
    let log = h.path("binary.log");
    let before = fake.request_counts();
    let mut child = crate::support::spawn_run(&config, "warn", &log);
    let written =
        |c: &zcc_sim::sink::salesforce::RequestCounts| c.composite + c.upsert + c.content_version;
    let writing = tokio::time::timeout(Duration::from_secs(60), async {
        while written(&fake.request_counts()) < written(&before) + 3 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        writing.is_ok(),
        "the binary wrote nothing: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(
        limit.elapsed() >= Duration::from_secs(10),
        "the limit lasted ten seconds"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    // 3. Restarted over the same journal (which repairs it; read-only it
    // cannot be opened before), stopped once to count what is left, then
    // run until that is delivered.
    let handshakes = h.sim.handshakes_completed();
    let daemon = h.start();
    tokio::time::timeout(Duration::from_secs(20), async {
        while h.sim.handshakes_completed() <= handshakes {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the restarted daemon connects");
    daemon.stop().await.unwrap();
    let (left, dead) = journal_counts(&h);
    assert_eq!(dead, 0);
    let daemon = h.start();
    let waited = tokio::time::timeout(
        Duration::from_secs(90),
        daemon
            .stats
            .wait_until(|s| s.delivered_to("salesforce") >= left),
    )
    .await;
    let snapshot = daemon.stats.snapshot();
    assert!(
        waited.is_ok(),
        "delivered {} of {left}",
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
    assert_eq!(journal_counts(&h), (0, 0), "nothing pending, nothing dead");
    let counts = fake.request_counts();
    assert!(
        counts.composite > 0,
        "the backlog used collections: {counts:?}"
    );

    // What the journal folded, to compare against.
    let db = zcc_relay::journal::open_read_only(&h.journal()).unwrap();
    let txn = db.begin_read().unwrap();
    let engagements = keyed_engagements(&script);
    assert!(engagements.len() >= 15, "{} engagements", engagements.len());

    // The latest text of each note, and every text it had.
    let notes = note_versions(&script);

    assert!(
        notes
            .values()
            .any(|v| v.iter().map(|(_, t)| t).collect::<BTreeSet<_>>().len() > 1),
        "the script edits a note"
    );
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

/// One note of `engagement` on `channel`, as the sink gets it.
fn note_envelope(
    seq: u64,
    engagement: &str,
    channel: &str,
    text: &str,
) -> zcc_relay::deliver::Envelope {
    let view = zcc_relay::record::View {
        kind: "engagement_note_added".into(),
        engagement_id: Some(engagement.into()),
        direction: Some("inbound".into()),
        channel: Some(channel.into()),
        note_id: Some(format!("n-{engagement}")),
        note: Some(text.into()),
        last_modified: Some("2026-12-01T10:06:00Z".into()),
        ..zcc_relay::record::View::default()
    };
    zcc_relay::deliver::Envelope {
        seq,
        bytes: std::sync::Arc::from(&b"{}"[..]),
        webhook_id: format!("w{seq}"),
        lane: Some(engagement.into()),
        view: std::sync::Arc::new(view),
    }
}

/// Several engagements in one call: the existing Task is updated by id
/// without `TaskSubtype`, the new ones are created with it, in two sObject
/// Collections calls; the next batch updates all of them by id, without a
/// lookup. A record without an engagement is settled as delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_batch_creates_with_the_subtype_and_updates_without_it() {
    use zcc_relay::sink::Running;
    let fake = SalesforceFake::start(Org::new()).await.unwrap();
    let field = zcc_sim::sink::salesforce::DEFAULT_EXTERNAL_ID_FIELD;
    let mut existing = serde_json::Map::new();
    existing.insert(field.into(), "eng-b".into());
    existing.insert("TaskSubtype".into(), "Task".into());
    existing.insert("Subject".into(), "made elsewhere".into());
    let existing_id = fake.insert_task(existing);
    let dir = tempfile::tempdir().unwrap();
    let journal = zcc_relay::journal::Journal::open(&dir.path().join("journal"), vec![]).unwrap();
    let table = SinkTable::salesforce(
        "salesforce",
        &fake.url(),
        &fake.client_id(),
        &fake.client_secret(),
    );
    let mut h = Harness::new().await;
    h.config.sinks = vec![table];
    let settings = h.config.settings().sinks.remove(0);
    let tls = zcc_relay::tls::client_config().unwrap();
    let health = zcc_relay::service::Health::default();
    let context = zcc_relay::sink::BuildContext {
        name: "salesforce",
        timeout: settings.timeout,
        tls: &tls,
        health: &health,
        journal: Some(&journal),
    };
    let sink = zcc_relay::sink::Registry::build(&settings.kind, &context)
        .await
        .unwrap();
    let mut without = note_envelope(4, "eng-x", "voice", "none");
    std::sync::Arc::make_mut(&mut without.view).engagement_id = None;
    without.lane = None;
    let batch = vec![
        note_envelope(1, "eng-a", "voice", "first a"),
        note_envelope(2, "eng-b", "voice", "first b"),
        note_envelope(3, "eng-c", "messaging", "first c"),
        without,
    ];
    let outcomes = sink.deliver_batch(&batch).await;
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    let counts = fake.request_counts();
    assert_eq!(
        (counts.composite, counts.upsert, counts.query),
        (2, 0, 1),
        "{counts:?}"
    );
    let task = |id: &str| fake.tasks_with_external_id(id)[0].clone();
    assert_eq!(task("eng-a")["TaskSubtype"], "Call");
    assert_eq!(task("eng-c")["TaskSubtype"], "Task");
    let b = task("eng-b");
    assert_eq!(b["Id"], existing_id.as_str());
    assert_eq!(b["TaskSubtype"], "Task", "never sent to an existing Task");
    assert_eq!(b["Subject"], "Zoom inbound voice");
    assert!(b["Description"].as_str().unwrap().contains("first b"));
    assert_eq!(fake.tasks().len(), 3);

    let again = vec![
        note_envelope(5, "eng-a", "voice", "second a"),
        note_envelope(6, "eng-b", "voice", "second b"),
        note_envelope(7, "eng-c", "messaging", "second c"),
    ];
    let outcomes = sink.deliver_batch(&again).await;
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    let counts = fake.request_counts();
    assert_eq!(
        (counts.composite, counts.upsert, counts.query),
        (3, 0, 1),
        "{counts:?}"
    );
    assert!(
        task("eng-c")["Description"]
            .as_str()
            .unwrap()
            .contains("second c")
    );
    assert_eq!(fake.tasks().len(), 3);
    journal.close().await;
    h.shutdown().await;
    fake.stop().await;
}
