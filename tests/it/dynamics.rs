//! The Dynamics 365 sink end to end (DESIGN.md §3.5): the real binary and
//! then the daemon in this process, the simulator's Zoom, a `file://` media
//! store, and the fake Dataverse environment
//! (`zcc_sim::sink::dynamics`) on real loopback sockets.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use redb::ReadableDatabase;
use zcc_relay::crm::phone::{Region, normalise};
use zcc_sim::scenario::{self, ScenarioOptions};
use zcc_sim::sink::dynamics::{Contact, DynamicsFake, Environment};

use crate::harness::Harness;
use crate::support::{
    MediaTable, SinkTable, drained_and_stopped, keyed_engagements, keyed_persisted, note_versions,
    object, pending_in, spawn_run, wait_for,
};

const SINK: &str = "dynamics";
async fn harness_with(fake: &DynamicsFake) -> Harness {
    let mut h = Harness::new().await;
    h.config.media = Some(MediaTable::enabled());
    h.config.sinks = vec![SinkTable::dynamics(SINK, fake)];
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_to_one_phonecall_per_engagement_through_faults_and_kill_9() {
    let fake = DynamicsFake::start(Environment::new()).await.unwrap();
    let h = harness_with(&fake).await;
    let options = ScenarioOptions::for_simulator(&h.sim);
    let script =
        scenario::generate_with(29, 20, SystemTime::now(), Duration::from_secs(1), &options);
    // A contact whose phone is one customer's number written another way.
    let us = Region::parse("US");
    let linked_number = script
        .iter()
        .filter_map(|e| object(&e.body)["consumer_number"].as_str())
        .filter_map(|n| normalise(n, us))
        .find(|n| n.starts_with("+1") && n.len() == 12)
        .expect("a US customer number in the script");
    let digits = &linked_number[2..];
    let contact_id = fake.add_contact(Contact::new("Ada", "Lovelace").telephone1(&format!(
        "({}) {}-{}",
        &digits[..3],
        &digits[3..6],
        &digits[6..]
    )));

    // The real binary takes the first part, throttled, and is killed -9
    // once it has written to the environment.
    let config = h.write_config();
    let mut child = spawn_run(&config, "info", &h.path("first-run.log"));
    h.sim.wait_live().await;
    let first = script.len() / 3;
    fake.throttle_next(3, Duration::from_secs(1));
    for event in &script[..first] {
        assert!(h.sim.emit(event.body.clone()));
    }
    wait_for("the first phonecalls", || fake.phonecalls().len() >= 2).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let (sink_pending, media_pending, dead) = pending_in(&config, SINK).await;
    assert_eq!(dead, 0);
    eprintln!(
        "killed with {} phonecalls written, {sink_pending} records pending, {media_pending} waiting for media",
        fake.phonecalls().len()
    );

    // The daemon in this process takes over: re-sends of the first part,
    // the rest, an expired token, throttling and a 503 burst.
    let daemon = h.start_live().await;
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
    fake.throttle_next(4, Duration::from_secs(2));
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
    assert!(counts.throttled >= 7, "{counts:?}");
    assert!(counts.unauthorized >= 1, "{counts:?}");

    // What the journal folded, to compare against.
    let db = zcc_relay::journal::open_read_only(&h.journal()).unwrap();
    let txn = db.begin_read().unwrap();
    let engagements = keyed_engagements(&script);
    assert!(engagements.len() >= 15, "{} engagements", engagements.len());
    let notes = note_versions(&script);
    let edited = notes
        .values()
        .filter(|v| v.iter().map(|(_, t)| t).collect::<BTreeSet<_>>().len() > 1);
    assert!(edited.count() >= 1, "the script edits a note");

    let (mut linked, mut files, mut edited_checked) = (0, 0, 0);
    for engagement in &engagements {
        let calls = fake.phonecalls_with_key(engagement);
        assert_eq!(calls.len(), 1, "engagement {engagement}: {calls:?}");
        let call = &calls[0];
        let aggregate = zcc_relay::journal::read::interaction(&txn, engagement)
            .unwrap()
            .expect("an aggregate");
        assert_eq!(call["statecode"], 1, "{engagement}: completed");
        let subject = call["subject"].as_str().unwrap_or("");
        if let Some(name) = aggregate.disposition().and_then(|d| d.name) {
            assert!(
                subject.ends_with(&format!(" — {name}")),
                "{engagement}: {subject}"
            );
        }
        let annotations = fake.annotations_on(call["activityid"].as_str().unwrap());
        for ((_, note_id), versions) in notes.iter().filter(|((e, _), _)| e == engagement) {
            let latest = &versions.iter().max().unwrap().1;
            let on: Vec<_> = annotations
                .iter()
                .filter(|a| a.subject == format!("Zoom note {note_id}"))
                .collect();
            assert_eq!(on.len(), 1, "{engagement}: note {note_id} once");
            assert_eq!(
                &on[0].notetext, latest,
                "{engagement}: latest text of {note_id}"
            );
            if versions.iter().any(|(_, t)| t != latest) {
                edited_checked += 1;
            }
            let description = call["description"].as_str().unwrap_or("");
            for (_, text) in versions {
                if text != latest && !latest.contains(text.as_str()) {
                    assert!(
                        !description.contains(text.as_str()),
                        "{engagement}: superseded {text:?}"
                    );
                }
            }
        }
        let number = aggregate.consumer().number.and_then(|n| normalise(&n, us));
        if number.as_deref() == Some(linked_number.as_str()) {
            assert_eq!(
                call["_regardingobjectid_value"].as_str(),
                Some(contact_id.as_str())
            );
            assert_eq!(
                call["parties"][0]["_partyid_value"].as_str(),
                Some(contact_id.as_str())
            );
            linked += 1;
        } else {
            assert!(
                call.get("_regardingobjectid_value").is_none(),
                "{engagement}"
            );
        }
        for entry in aggregate.files() {
            let name = entry.location.rsplit('/').next().unwrap();
            let attached: Vec<_> = annotations
                .iter()
                .filter(|a| a.filename.as_deref() == Some(name))
                .collect();
            assert_eq!(attached.len(), 1, "{engagement}: {name} once");
            let path = url::Url::parse(&entry.location)
                .unwrap()
                .to_file_path()
                .unwrap();
            assert_eq!(
                attached[0].bytes.as_deref(),
                Some(&std::fs::read(path).unwrap()[..])
            );
            files += 1;
        }
    }
    assert!(linked >= 1, "no phonecall linked to the contact");
    assert!(files >= 1, "no file attached");
    assert!(edited_checked >= 1, "no edited note checked");
    assert_eq!(
        fake.phonecalls().len(),
        engagements.len(),
        "no phonecall beyond one per engagement"
    );
    drop(txn);
    h.shutdown().await;
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_alternate_key_keeps_records_pending_names_the_fix_and_converges_once_made() {
    let fake = DynamicsFake::start(Environment::new().key(None))
        .await
        .unwrap();
    let mut h = harness_with(&fake).await;
    // A slow org and one request at a time: the records that come due
    // while a request waits on the budget go together in the next.
    h.config.sinks[0].requests_per_second = Some(2);
    h.config.sinks[0].max_in_flight = Some(1);
    let options = ScenarioOptions::for_simulator(&h.sim);
    let script =
        scenario::generate_with(7, 12, SystemTime::now(), Duration::from_secs(1), &options);
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
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let text = read_log();
    let named: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("sink set-up problem"))
        .collect();
    assert!(
        named.iter().any(
            |l| l.contains("no active alternate key on zcc_engagementid")
                && l.contains("create a Single line of text column zcc_engagementid")
        ),
        "the log names the key and the fix:\n{text}"
    );
    assert!(
        !text.contains(&fake.client_secret()),
        "the secret was logged"
    );
    assert!(fake.phonecalls().is_empty());
    assert_eq!(fake.annotation_count(), 0);

    let engagements = keyed_engagements(&script);
    assert!(engagements.len() >= 10, "{engagements:?}");
    let before = fake.request_counts();
    fake.set_key(Some(zcc_sim::sink::dynamics::AlternateKey::active(
        "zcc_engagementid",
    )));
    // `queue stats` beside the running daemon, until nothing waits.
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
    for engagement in &engagements {
        assert_eq!(
            fake.phonecalls_with_key(engagement).len(),
            1,
            "{engagement}"
        );
    }
    assert_eq!(fake.phonecalls().len(), engagements.len());
    // The backlog went several engagements per `$batch` (one change set
    // each), not one request per engagement.
    let after = fake.request_counts();
    let (batches, change_sets) = (
        after.batch - before.batch,
        after.change_sets - before.change_sets,
    );
    eprintln!("the backlog: {batches} $batch requests for {change_sets} change sets");
    assert!(
        change_sets >= engagements.len() as u64 && batches * 2 <= change_sets,
        "{batches} batches for {change_sets} change sets"
    );
    h.shutdown().await;
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_above_the_orgs_upload_cap_is_linked_not_attached() {
    // The org allows 4,000 base64 characters; the recording has 40,000 bytes.
    let fake = DynamicsFake::start(Environment::new().max_upload(4_000))
        .await
        .unwrap();
    let h = harness_with(&fake).await;
    h.sim.set_media_sizes(40_000, 1_000);
    let daemon = h.start_live().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let body = serde_json::json!({
        "event": "contact_center.recording_completed",
        "event_ts": now,
        "payload": {"account_id": h.sim.config().account_id, "object": {
            "recording_id": "rec-cap-1", "engagement_id": "eng-cap-1", "channel": "voice",
            "recording_type": "automatic",
            "users": [{"user_id": "u1", "user_display_name": "Agent One"}],
        }},
    });
    assert!(h.sim.emit(body));
    daemon.wait_delivered(SINK, 1).await;
    daemon.stop().await.unwrap();
    let call = &fake.phonecalls_with_key("eng-cap-1")[0];
    let annotations = fake.annotations_on(call["activityid"].as_str().unwrap());
    assert!(annotations.is_empty(), "{annotations:?}");
    let description = call["description"].as_str().unwrap();
    let link = description
        .lines()
        .find(|l| l.starts_with("recording-rec-cap-1.mp3: file://"))
        .unwrap_or_else(|| panic!("the recording's link: {description}"));
    let path = url::Url::parse(link.split_once(": ").unwrap().1)
        .unwrap()
        .to_file_path()
        .unwrap();
    assert_eq!(std::fs::metadata(path).unwrap().len(), 40_000);
    h.shutdown().await;
    fake.stop().await;
}

/// The sink remembers a phonecall's notes after writing them; a note
/// deleted in the CRM meanwhile makes the next write read them again and
/// write it anew, never dead-letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_note_deleted_in_the_crm_is_written_again_on_its_next_edit() {
    let fake = DynamicsFake::start(Environment::new()).await.unwrap();
    let h = harness_with(&fake).await;
    let daemon = h.start_live().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let note = |text: &str, modified: &str, at: i64| {
        serde_json::json!({
            "event": "contact_center.engagement_note_added",
            "event_ts": at,
            "payload": {"account_id": h.sim.config().account_id, "object": {
                "engagement_id": "eng-del-1", "channel": "voice", "note_id": "note-1",
                "note": text, "last_modified_time": modified,
            }},
        })
    };
    assert!(h.sim.emit(note("first words", "2026-12-07T10:00:00Z", now)));
    daemon.wait_delivered(SINK, 1).await;
    let call = fake.phonecalls_with_key("eng-del-1")[0].clone();
    let activity = call["activityid"].as_str().unwrap().to_owned();
    let on = fake.annotations_on(&activity);
    assert_eq!(on.len(), 1);
    fake.delete_annotation(&on[0].id);
    assert!(
        h.sim
            .emit(note("second words", "2026-12-07T10:05:00Z", now + 1))
    );
    daemon.wait_delivered(SINK, 2).await;
    let snapshot = daemon.stats.snapshot();
    assert_eq!(snapshot.dead_lettered.get(SINK).copied().unwrap_or(0), 0);
    daemon.stop().await.unwrap();
    let on = fake.annotations_on(&activity);
    assert_eq!(on.len(), 1, "{on:?}");
    assert_eq!(on[0].subject, "Zoom note note-1");
    assert_eq!(on[0].notetext, "second words");
    h.shutdown().await;
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phonecall_deleted_in_the_crm_is_recreated_with_its_notes() {
    let fake = DynamicsFake::start(Environment::new()).await.unwrap();
    let h = harness_with(&fake).await;
    let daemon = h.start_live().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let account = h.sim.config().account_id.clone();
    let note = serde_json::json!({
        "event": "contact_center.engagement_note_added",
        "event_ts": now,
        "payload": {"account_id": account, "object": {
            "engagement_id": "eng-gone-1", "channel": "voice", "note_id": "note-1",
            "note": "kept words", "last_modified_time": "2026-12-07T10:00:00Z",
        }},
    });
    assert!(h.sim.emit(note));
    daemon.wait_delivered(SINK, 1).await;
    let first = fake.phonecalls_with_key("eng-gone-1")[0]["activityid"]
        .as_str()
        .unwrap()
        .to_owned();
    fake.delete_phonecall(&first);
    // A later artefact of the engagement: the journal still holds the old
    // phonecall's note, which is not on the one the upsert makes.
    let disposition = serde_json::json!({
        "event": "contact_center.engagement_disposition_added",
        "event_ts": now + 1,
        "payload": {"account_id": account, "object": {
            "engagement_id": "eng-gone-1", "channel": "voice",
            "disposition_id": "d-1", "disposition_name": "Resolved",
            "last_modified_time": "2026-12-07T10:06:00Z",
        }},
    });
    assert!(h.sim.emit(disposition));
    daemon.wait_delivered(SINK, 2).await;
    assert_eq!(
        daemon
            .stats
            .snapshot()
            .dead_lettered
            .get(SINK)
            .copied()
            .unwrap_or(0),
        0
    );
    daemon.stop().await.unwrap();
    let calls = fake.phonecalls_with_key("eng-gone-1");
    assert_eq!(calls.len(), 1);
    let second = calls[0]["activityid"].as_str().unwrap();
    assert_ne!(second, first);
    let on = fake.annotations_on(second);
    assert_eq!(on.len(), 1, "{on:?}");
    assert_eq!(on[0].notetext, "kept words");
    h.shutdown().await;
    fake.stop().await;
}
