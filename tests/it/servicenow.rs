//! The ServiceNow sink end to end (DESIGN.md §3.5): the real binary and then
//! the daemon in this process, the simulator's Zoom, a `file://` media
//! store, and the fake instance (`zcc_sim::sink::servicenow`) on real
//! loopback sockets.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use redb::ReadableDatabase;
use serde_json::Value;
use zcc_relay::crm::phone::{Region, normalise};
use zcc_sim::scenario::{self, ScenarioOptions};
use zcc_sim::sink::servicenow::{DEFAULT_CORRELATION_FIELD, Instance, ServiceNowFake};

use crate::harness::Harness;
use crate::support::{
    MediaTable, SinkTable, drained_and_stopped, keyed_engagements, keyed_persisted, note_versions,
    object, pending_in, spawn_run, wait_for,
};

const SINK: &str = "servicenow";
const TABLE: &str = "interaction";

async fn harness_with(fake: &ServiceNowFake) -> Harness {
    let mut h = Harness::new().await;
    h.config.media = Some(MediaTable::enabled());
    h.config.sinks = vec![SinkTable::servicenow(SINK, fake)];
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_to_one_interaction_per_engagement_through_faults_and_kill_9() {
    let fake = ServiceNowFake::start(Instance::new()).await.unwrap();
    let h = harness_with(&fake).await;
    let options = ScenarioOptions::for_simulator(&h.sim);
    let script =
        scenario::generate_with(37, 20, SystemTime::now(), Duration::from_secs(1), &options);
    let us = Region::parse("US");
    let linked_number = script
        .iter()
        .filter_map(|e| object(&e.body)["consumer_number"].as_str())
        .filter_map(|n| normalise(n, us))
        .find(|n| n.starts_with("+1") && n.len() == 12)
        .expect("a US customer number in the script");
    let digits = &linked_number[2..];
    let contact_id = fake.add_contact(
        "Ada Lovelace",
        "",
        &format!("({}) {}-{}", &digits[..3], &digits[3..6], &digits[6..]),
    );
    // Another contact whose number ends in the same four digits only.
    fake.add_contact("Not Ada", &format!("+44 20 7946 {}", &digits[6..]), "");

    let config = h.write_config();
    let mut child = spawn_run(&config, "info", &h.path("first-run.log"));
    h.sim.wait_live().await;
    let first = script.len() / 3;
    fake.throttle_next(1);
    for event in &script[..first] {
        assert!(h.sim.emit(event.body.clone()));
    }
    wait_for("the first interactions", || fake.records(TABLE).len() >= 2).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let (sink_pending, media_pending, dead) = pending_in(&config, SINK).await;
    assert_eq!(dead, 0);
    eprintln!(
        "killed with {} interactions written, {sink_pending} records pending, {media_pending} waiting for media",
        fake.records(TABLE).len()
    );

    // The daemon in this process: re-sends, the rest, expired tokens, a
    // throttle with the rate-limit headers and a 503 burst.
    let daemon = crate::support::Daemon::start(zcc_relay::config::load(&config).unwrap().settings);
    h.sim.wait_live().await;
    daemon.wait_first_sweep().await;
    fake.expire_tokens();
    fake.unavailable_for_next(2);
    let second = 2 * script.len() / 3;
    for event in script[..first]
        .iter()
        .step_by(3)
        .chain(&script[first..second])
    {
        assert!(h.sim.emit(event.body.clone()));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    fake.throttle_next(2);
    fake.expire_tokens();
    for event in &script[second..] {
        assert!(h.sim.emit(event.body.clone()));
    }
    daemon
        .wait_handled((script.len() - first + first.div_ceil(3)) as u64)
        .await;
    let expected = sink_pending + media_pending + keyed_persisted(&daemon.stats.snapshot());
    drained_and_stopped(daemon, &config, SINK, expected).await;
    let counts = fake.request_counts();
    assert!(
        counts.throttled >= 2 && counts.unauthorized >= 1 && counts.tokens >= 2,
        "{counts:?}"
    );

    let db = zcc_relay::journal::open_read_only(&h.journal()).unwrap();
    let txn = db.begin_read().unwrap();
    let engagements = keyed_engagements(&script);
    assert!(engagements.len() >= 15, "{} engagements", engagements.len());
    let notes = note_versions(&script);

    let (mut linked, mut files, mut edited, mut dispositions) = (0, 0, 0, 0);
    for engagement in &engagements {
        let records = fake.records_with(TABLE, DEFAULT_CORRELATION_FIELD, engagement);
        assert_eq!(records.len(), 1, "engagement {engagement}: {records:?}");
        let record = &records[0];
        let sys_id = record["sys_id"].as_str().unwrap();
        let aggregate = zcc_relay::journal::read::interaction(&txn, engagement)
            .unwrap()
            .expect("an aggregate");
        let short = record["short_description"].as_str().unwrap_or("");
        if let Some(name) = aggregate.disposition().and_then(|d| d.name) {
            assert!(
                short.ends_with(&format!(" — {name}")),
                "{engagement}: {short}"
            );
            dispositions += 1;
        }
        let entries = fake.work_notes(TABLE, sys_id);
        let mut wanted = 0;
        for ((_, note_id), versions) in notes.iter().filter(|((e, _), _)| e == engagement) {
            wanted += 1;
            let latest = &versions.iter().max().unwrap().1;
            let marker = format!("[Zoom note {note_id}] ");
            let theirs: Vec<&String> = entries.iter().filter(|e| e.starts_with(&marker)).collect();
            assert_eq!(
                theirs.len(),
                1,
                "{engagement}: note {note_id} once: {entries:?}"
            );
            assert!(
                theirs[0].ends_with(&format!("\n{latest}")),
                "{engagement}: {latest:?} is not the text of {:?}",
                theirs[0]
            );
            if versions.iter().any(|(_, t)| t != latest) {
                edited += 1;
            }
        }
        assert_eq!(
            entries.len(),
            wanted,
            "{engagement}: one entry per note: {entries:?}"
        );
        let number = aggregate.consumer().number.and_then(|n| normalise(&n, us));
        let contact = record.get("contact").and_then(Value::as_str).unwrap_or("");
        if number.as_deref() == Some(linked_number.as_str()) {
            assert_eq!(contact, contact_id, "{engagement}");
            linked += 1;
        } else {
            assert_eq!(contact, "", "{engagement}");
        }
        let held = fake.attachments_of(TABLE, sys_id);
        assert_eq!(
            held.len(),
            aggregate.files().count(),
            "{engagement}: one attachment per file"
        );
        for entry in aggregate.files() {
            let name = entry.location.rsplit('/').next().unwrap();
            let matching: Vec<_> = held.iter().filter(|(n, _, _)| n == name).collect();
            assert_eq!(matching.len(), 1, "{engagement}: {name}");
            let path = url::Url::parse(&entry.location)
                .unwrap()
                .to_file_path()
                .unwrap();
            assert_eq!(matching[0].2, std::fs::read(path).unwrap());
            assert_eq!(matching[0].1, entry.content_type);
            files += 1;
        }
    }
    assert!(linked >= 1, "no interaction linked to the contact");
    assert!(files >= 1, "no file attached");
    assert!(edited >= 1, "no edited note checked");
    assert!(dispositions >= 1, "no disposition checked");
    assert_eq!(
        fake.records(TABLE).len(),
        engagements.len(),
        "no interaction beyond one per engagement"
    );
    drop(txn);
    h.shutdown().await;
    fake.stop().await;
}

/// A set-up problem keeps every record pending and names the fix: the
/// correlation field missing (ServiceNow ignores unknown fields, so only the
/// answer shows it), then no write permission on the table; the records
/// converge once both are fixed, with no second interaction for any.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_correlation_field_or_acl_keeps_records_pending() {
    let fake =
        ServiceNowFake::start(Instance::new().without_field(TABLE, DEFAULT_CORRELATION_FIELD))
            .await
            .unwrap();
    let h = harness_with(&fake).await;
    let options = ScenarioOptions::for_simulator(&h.sim);
    let script = scenario::generate_with(9, 3, SystemTime::now(), Duration::from_secs(1), &options);
    let config = h.write_config();
    let log = h.path("run.log");
    let child = spawn_run(&config, "warn", &log);
    h.sim.wait_live().await;
    for event in &script {
        assert!(h.sim.emit(event.body.clone()));
    }
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for("the set-up problem in the log", || {
        read_log().contains("sink set-up problem")
            && read_log().contains("has no field u_zoom_engagement_id")
    })
    .await;
    assert!(
        read_log().contains("or set correlation_field to an existing one"),
        "the fix is named:\n{}",
        read_log()
    );
    assert!(
        fake.records(TABLE).len() <= 1,
        "at most the one record that showed the field missing: {:?}",
        fake.records(TABLE)
    );
    assert!(
        !read_log().contains(&fake.client_secret()),
        "the secret was logged"
    );
    let (pending, _, dead) = pending_in(&config, SINK).await;
    assert!(pending > 0, "records wait");
    assert_eq!(dead, 0, "nothing dead-lettered");
    crate::support::sigterm(&child);
    assert!(crate::support::wait_output(child).await.status.success());
    // The admin deletes the stray record the instance made without the field.
    for stray in fake.records(TABLE) {
        fake.delete_record(TABLE, stray["sys_id"].as_str().unwrap());
    }

    // The field exists now; the integration user may not write the table.
    fake.add_field(TABLE, DEFAULT_CORRELATION_FIELD);
    fake.deny_writes(TABLE);
    let log = h.path("second-run.log");
    let child = spawn_run(&config, "warn", &log);
    h.sim.wait_live().await;
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for("the ACL problem in the log", || {
        read_log().contains("ACL Exception Insert Failed")
    })
    .await;
    assert!(
        read_log().contains("give the integration user read, create and write on interaction"),
        "{}",
        read_log()
    );
    let (pending, _, dead) = pending_in(&config, SINK).await;
    assert!(pending > 0, "records wait");
    assert_eq!(dead, 0, "nothing dead-lettered");

    fake.allow_writes(TABLE);
    let drained = tokio::time::timeout(Duration::from_secs(60), async {
        while pending_in(&config, SINK).await != (0, 0, 0) {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
    .await;
    assert!(
        drained.is_ok(),
        "still pending: {:?}",
        pending_in(&config, SINK).await
    );
    crate::support::sigterm(&child);
    let output = crate::support::wait_output(child).await;
    assert!(output.status.success(), "{}", read_log());
    let engagements = keyed_engagements(&script);
    for engagement in &engagements {
        assert_eq!(
            fake.records_with(TABLE, DEFAULT_CORRELATION_FIELD, engagement)
                .len(),
            1,
            "{engagement}"
        );
    }
    assert_eq!(fake.records(TABLE).len(), engagements.len());
    h.shutdown().await;
    fake.stop().await;
}

/// `check` against the fake instance: a proper one is ready and nothing is
/// written; a missing correlation field and a wrong secret are each named
/// with their fix; basic auth works too.
#[tokio::test]
async fn a_servicenow_sink_is_checked_against_the_instance_without_writing() {
    let fake = ServiceNowFake::start(Instance::new()).await.unwrap();
    let harness = Harness::with_sinks([SinkTable::servicenow("snow", &fake)]).await;
    let check = |harness: &Harness| {
        let path = harness.write_config();
        async move {
            crate::support::zcc_relay(["check"])
                .config(&path)
                .output()
                .await
        }
    };
    let ran = check(&harness).await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    for expected in [
        "sink snow (servicenow): ready",
        "the table interaction has the field u_zoom_engagement_id",
        "the table interaction is readable",
        "work-note entries (sys_journal_field) are readable",
        "the Attachment API is readable",
        "a contact lookup in customer_contact by phone, mobile_phone",
    ] {
        assert!(ran.stdout.contains(expected), "{expected:?} in {ran:?}");
    }
    assert!(!ran.stdout.contains(&fake.client_secret()), "{ran:?}");
    let counts = fake.request_counts();
    assert_eq!(
        (counts.creates, counts.updates, counts.uploads),
        (0, 0, 0),
        "check wrote to the instance: {counts:?}"
    );
    harness.shutdown().await;

    let fake =
        ServiceNowFake::start(Instance::new().without_field(TABLE, DEFAULT_CORRELATION_FIELD))
            .await
            .unwrap();
    let harness = Harness::with_sinks([SinkTable::servicenow("snow", &fake)]).await;
    let ran = check(&harness).await;
    assert_eq!(ran.code, Some(1), "{ran:?}");
    for expected in [
        "problem  the table interaction has no field u_zoom_engagement_id",
        "fix      create the String field u_zoom_engagement_id on interaction",
    ] {
        assert!(ran.stdout.contains(expected), "{expected:?} in {ran:?}");
    }
    harness.shutdown().await;

    let mut wrong = SinkTable::servicenow("snow", &fake);
    wrong.client_secret = Some("not-the-secret".into());
    let harness = Harness::with_sinks([wrong]).await;
    let ran = check(&harness).await;
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(
        ran.stdout.contains("no token from /oauth_token.do"),
        "{ran:?}"
    );
    assert!(!ran.stdout.contains("not-the-secret"), "{ran:?}");
    harness.shutdown().await;

    // Basic auth as the integration user, the field created meanwhile.
    fake.add_field(TABLE, DEFAULT_CORRELATION_FIELD);
    let mut harness = Harness::new().await;
    let password_file = harness.path("sn-password");
    std::fs::write(&password_file, format!("{}\n", fake.password())).unwrap();
    let mut basic = SinkTable::servicenow("snow", &fake);
    basic.client_id = None;
    basic.client_secret = None;
    basic.password_file = Some(password_file);
    basic.username = Some(fake.username());
    harness.config.sinks.push(basic);
    let ran = check(&harness).await;
    assert_eq!(ran.code, Some(0), "{ran:?}");
    assert!(!ran.stdout.contains(&fake.password()), "{ran:?}");
    harness.shutdown().await;
    fake.stop().await;
}

/// What the journal does not know is looked up before it is created: a
/// record and a note's entry already in the instance (as a crash between the
/// write and its acknowledgement leaves them) are found and brought up to
/// date, never doubled; a record deleted in the instance is created again
/// with every note.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finds_what_a_crash_left_and_recreates_a_deleted_record() {
    let fake = ServiceNowFake::start(Instance::new()).await.unwrap();
    let mut h = Harness::new().await;
    h.config.sinks = vec![SinkTable::servicenow(SINK, &fake)];
    let options = ScenarioOptions::for_simulator(&h.sim);
    let script = scenario::generate_with(5, 4, SystemTime::now(), Duration::from_secs(1), &options);
    let note = script
        .iter()
        .find(|e| e.body["event"] == "contact_center.engagement_note_added")
        .expect("a note in the script")
        .body
        .clone();
    let engagement = object(&note)["engagement_id"].as_str().unwrap().to_owned();
    let note_id = object(&note)["note_id"].as_str().unwrap().to_owned();
    let seeded = fake.insert_record(
        TABLE,
        serde_json::json!({
            DEFAULT_CORRELATION_FIELD: engagement,
            "short_description": "left by a crash",
            "work_notes": format!("[Zoom note {note_id}] 2026-01-01T00:00:00Z\nan older text"),
        }),
    );

    let config = h.write_config();
    let daemon = crate::support::Daemon::start(zcc_relay::config::load(&config).unwrap().settings);
    h.sim.wait_live().await;
    daemon.wait_first_sweep().await;
    for event in &script {
        assert!(h.sim.emit(event.body.clone()));
    }
    daemon.wait_handled(script.len() as u64).await;
    let expected = keyed_persisted(&daemon.stats.snapshot());
    daemon.wait_delivered(SINK, expected).await;
    let records = fake.records_with(TABLE, DEFAULT_CORRELATION_FIELD, &engagement);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(
        records[0]["sys_id"],
        seeded.as_str(),
        "the record was found"
    );
    assert_ne!(records[0]["short_description"], "left by a crash");
    let marker = format!("[Zoom note {note_id}] ");
    let entries = fake.work_notes(TABLE, &seeded);
    let theirs: Vec<&String> = entries.iter().filter(|e| e.starts_with(&marker)).collect();
    assert_eq!(
        theirs.len(),
        1,
        "the entry was found, not added: {entries:?}"
    );
    assert!(!theirs[0].contains("an older text"), "{entries:?}");
    assert!(fake.request_counts().entry_edits >= 1);

    // Deleted in the instance; the next artefact (an edit of the note)
    // finds the record gone and writes it again, every note included.
    fake.delete_record(TABLE, &seeded);
    let mut edited = note.clone();
    edited["payload"]["object"]["note"] =
        Value::String("edited after the record was deleted".into());
    // Later than any time of the script.
    edited["payload"]["object"]["last_modified_time"] =
        Value::String("2030-01-01T00:00:00Z".into());
    assert!(h.sim.emit(edited));
    daemon.wait_delivered(SINK, expected + 1).await;
    let records = fake.records_with(TABLE, DEFAULT_CORRELATION_FIELD, &engagement);
    assert_eq!(records.len(), 1, "{records:?}");
    let again = records[0]["sys_id"].as_str().unwrap();
    assert_ne!(again, seeded);
    let entries = fake.work_notes(TABLE, again);
    let theirs: Vec<&String> = entries.iter().filter(|e| e.starts_with(&marker)).collect();
    assert_eq!(theirs.len(), 1, "{entries:?}");
    assert!(
        theirs[0].ends_with("\nedited after the record was deleted"),
        "{entries:?}"
    );
    let notes_of_engagement: BTreeSet<&str> = script
        .iter()
        .filter(|e| object(&e.body)["engagement_id"] == engagement.as_str())
        .filter_map(|e| object(&e.body)["note_id"].as_str())
        .collect();
    assert_eq!(entries.len(), notes_of_engagement.len(), "{entries:?}");
    assert_eq!(snapshot_dead(&daemon), 0);
    daemon.stop().await.unwrap();
    h.shutdown().await;
    fake.stop().await;
}

fn snapshot_dead(daemon: &crate::support::Daemon) -> u64 {
    daemon
        .stats
        .snapshot()
        .dead_lettered
        .get(SINK)
        .copied()
        .unwrap_or(0)
}
