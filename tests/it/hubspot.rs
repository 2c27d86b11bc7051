//! The HubSpot sink end to end (DESIGN.md §3.5): the real binary and then
//! the daemon in this process, the simulator's Zoom, a `file://` media
//! store, and the fake portal (`zcc_sim::sink::hubspot`) on real loopback
//! sockets.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use redb::ReadableDatabase;
use zcc_relay::crm::phone::{Region, normalise};
use zcc_sim::scenario::{self, ScenarioOptions};
use zcc_sim::sink::hubspot::{Contact, DEFAULT_DISPOSITIONS, HubSpotFake, Portal};

use crate::harness::Harness;
use crate::support::{
    MediaTable, SinkTable, drained_and_stopped, keyed_engagements, keyed_persisted, note_versions,
    object, pending_in, spawn_run, wait_for,
};

const SINK: &str = "hubspot";
const PROPERTY: &str = "zcc_engagement_id";
const RESOLVED: &str = "5d1f8c2a-0000-4000-8000-00000000a001";
async fn harness_with(fake: &HubSpotFake) -> Harness {
    let mut h = Harness::new().await;
    h.config.media = Some(MediaTable::enabled());
    let token_file = h.path("hubspot-token");
    h.config.sinks = vec![SinkTable::hubspot(SINK, fake, &token_file)];
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_to_one_call_per_engagement_through_faults_and_kill_9() {
    let fake = HubSpotFake::start(Portal::new().disposition("Resolved", RESOLVED))
        .await
        .unwrap();
    let h = harness_with(&fake).await;
    let options = ScenarioOptions::for_simulator(&h.sim);
    let script =
        scenario::generate_with(31, 20, SystemTime::now(), Duration::from_secs(1), &options);
    let us = Region::parse("US");
    let linked_number = script
        .iter()
        .filter_map(|e| object(&e.body)["consumer_number"].as_str())
        .filter_map(|n| normalise(n, us))
        .find(|n| n.starts_with("+1") && n.len() == 12)
        .expect("a US customer number in the script");
    let digits = &linked_number[2..];
    let contact_id = fake.add_contact(Contact::new("Ada", "Lovelace").phone(&format!(
        "({}) {}-{}",
        &digits[..3],
        &digits[3..6],
        &digits[6..]
    )));

    let config = h.write_config();
    let mut child = spawn_run(&config, "info", &h.path("first-run.log"));
    h.sim.wait_live().await;
    let first = script.len() / 3;
    fake.throttle_next(1, "SECONDLY");
    for event in &script[..first] {
        assert!(h.sim.emit(event.body.clone()));
    }
    wait_for("the first calls", || fake.calls().len() >= 2).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let (sink_pending, media_pending, dead) = pending_in(&config, SINK).await;
    assert_eq!(dead, 0);
    eprintln!(
        "killed with {} calls written, {sink_pending} records pending, {media_pending} waiting for media",
        fake.calls().len()
    );

    // The daemon in this process: re-sends, the rest, a rotated token (the
    // file is rewritten; a 401 reads it again), a ten-second-window 429 and
    // a 502 burst.
    // Settings read the way the binary reads them (the token file is real).
    let daemon = crate::support::Daemon::start(zcc_relay::config::load(&config).unwrap().settings);
    h.sim.wait_live().await;
    daemon.wait_first_sweep().await;
    let new_token = fake.rotate_token();
    std::fs::write(h.path("hubspot-token"), format!("{new_token}\n")).unwrap();
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
    fake.throttle_next(1, "TEN_SECONDLY_ROLLING");
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
        counts.throttled >= 2 && counts.unauthorized >= 1,
        "{counts:?}"
    );

    let db = zcc_relay::journal::open_read_only(&h.journal()).unwrap();
    let txn = db.begin_read().unwrap();
    let engagements = keyed_engagements(&script);
    assert!(engagements.len() >= 15, "{} engagements", engagements.len());
    let notes = note_versions(&script);

    let (mut linked, mut files, mut edited, mut mapped, mut in_body) = (0, 0, 0, 0, 0);
    for engagement in &engagements {
        let calls = fake.calls_with(PROPERTY, engagement);
        assert_eq!(calls.len(), 1, "engagement {engagement}: {calls:?}");
        let call = &calls[0];
        let aggregate = zcc_relay::journal::read::interaction(&txn, engagement)
            .unwrap()
            .expect("an aggregate");
        assert_eq!(call["hs_call_status"], "COMPLETED");
        let body = call["hs_call_body"].as_str().unwrap_or("");
        let disposition = call["hs_call_disposition"].as_str().unwrap_or("");
        match aggregate.disposition().and_then(|d| d.name) {
            Some(name) => {
                let guid = if name == "Resolved" {
                    Some(RESOLVED)
                } else {
                    DEFAULT_DISPOSITIONS
                        .iter()
                        .find(|(label, _)| label.eq_ignore_ascii_case(&name))
                        .map(|(_, id)| *id)
                };
                match guid {
                    Some(guid) => {
                        assert_eq!(disposition, guid, "{engagement}: {name}");
                        mapped += 1;
                    }
                    None => {
                        assert_eq!(disposition, "", "{engagement}");
                        assert!(
                            body.contains(&format!("Disposition: {name}")),
                            "{engagement}: {name}"
                        );
                        in_body += 1;
                    }
                }
            }
            None => assert_eq!(disposition, "", "{engagement}"),
        }
        for ((_, _), versions) in notes.iter().filter(|((e, _), _)| e == engagement) {
            let latest = &versions.iter().max().unwrap().1;
            assert!(
                body.contains(latest.as_str()),
                "{engagement}: {latest:?} missing"
            );
            if versions.iter().any(|(_, t)| t != latest) {
                edited += 1;
            }
            for (_, text) in versions {
                if text != latest && !latest.contains(text.as_str()) {
                    assert!(
                        !body.contains(text.as_str()),
                        "{engagement}: superseded {text:?}"
                    );
                }
            }
        }
        let call_id = call["hs_object_id"].as_str().unwrap();
        let number = aggregate.consumer().number.and_then(|n| normalise(&n, us));
        if number.as_deref() == Some(linked_number.as_str()) {
            assert_eq!(fake.associations_of(call_id), vec![contact_id.clone()]);
            linked += 1;
        } else {
            assert!(fake.associations_of(call_id).is_empty(), "{engagement}");
        }
        let ids: Vec<&str> = call["hs_attachment_ids"]
            .as_str()
            .unwrap_or("")
            .split(';')
            .filter(|i| !i.is_empty())
            .collect();
        assert_eq!(
            ids.len(),
            aggregate.files().count(),
            "{engagement}: one id per file"
        );
        for entry in aggregate.files() {
            let name = entry.location.rsplit('/').next().unwrap();
            let held: Vec<(String, Vec<u8>)> = ids.iter().filter_map(|id| fake.file(id)).collect();
            let at = format!("/zcc-relay/{engagement}/{name}");
            let matching: Vec<_> = held.iter().filter(|(path, _)| *path == at).collect();
            assert_eq!(matching.len(), 1, "{engagement}: {name}");
            let path = url::Url::parse(&entry.location)
                .unwrap()
                .to_file_path()
                .unwrap();
            assert_eq!(matching[0].1, std::fs::read(path).unwrap());
            files += 1;
        }
    }
    let paths = fake.file_paths();
    let distinct: BTreeSet<&String> = paths.iter().collect();
    assert_eq!(
        distinct.len(),
        paths.len(),
        "a file uploaded twice: {paths:?}"
    );
    assert!(linked >= 1, "no call associated with the contact");
    assert!(files >= 1, "no file attached");
    assert!(edited >= 1, "no edited note checked");
    assert!(mapped + in_body >= 1, "no disposition checked");
    assert_eq!(
        fake.calls().len(),
        engagements.len(),
        "no call beyond one per engagement"
    );
    drop(txn);
    h.shutdown().await;
    fake.stop().await;
}

/// A set-up problem keeps every record pending and names the fix: the
/// unique property without unique values, then a token without a scope; the
/// records converge once both are fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_property_that_is_not_unique_or_a_missing_scope_keeps_records_pending() {
    let fake = HubSpotFake::start(Portal::new().property(PROPERTY, false))
        .await
        .unwrap();
    let mut h = harness_with(&fake).await;
    // A slow portal and one request at a time: the records that come due
    // while a request waits on the budget go together in the next.
    h.config.sinks[0].requests_per_second = Some(2);
    h.config.sinks[0].max_in_flight = Some(1);
    let options = ScenarioOptions::for_simulator(&h.sim);
    let script =
        scenario::generate_with(9, 12, SystemTime::now(), Duration::from_secs(1), &options);
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
            && read_log().contains("is not a unique property")
    })
    .await;
    assert!(
        read_log().contains("with \\\"Require unique values\\\" set")
            || read_log().contains("with \"Require unique values\" set"),
        "the fix is named:\n{}",
        read_log()
    );
    assert!(fake.calls().is_empty());
    assert!(!read_log().contains(&fake.token()), "the token was logged");

    let (pending, _, dead) = pending_in(&config, SINK).await;
    assert!(pending > 0, "records wait");
    assert_eq!(dead, 0, "nothing dead-lettered");
    crate::support::sigterm(&child);
    assert!(crate::support::wait_output(child).await.status.success());

    // Fixed property, a token without the write scope: a set-up problem of
    // its own, named by the next run.
    fake.set_property(PROPERTY, true);
    fake.set_scopes(&[
        "crm.objects.calls.read",
        "crm.objects.contacts.read",
        "crm.schemas.calls.read",
        "files",
    ]);
    let log = h.path("second-run.log");
    let child = spawn_run(&config, "warn", &log);
    h.sim.wait_live().await;
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for("the missing scope in the log", || {
        read_log().contains("MISSING_SCOPES")
    })
    .await;
    assert!(
        read_log().contains("crm.objects.calls.read and .write"),
        "{}",
        read_log()
    );
    assert!(fake.calls().is_empty());
    let (pending, _, dead) = pending_in(&config, SINK).await;
    assert!(pending > 0, "records wait");
    assert_eq!(dead, 0, "nothing dead-lettered");

    let before = fake.request_counts();
    fake.set_scopes(zcc_sim::sink::hubspot::ALL_SCOPES);
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
            fake.calls_with(PROPERTY, engagement).len(),
            1,
            "{engagement}"
        );
    }
    assert!(engagements.len() >= 10, "{engagements:?}");
    // The backlog went several calls per `batch/upsert`.
    let upserts = fake.request_counts().upserts - before.upserts;
    let pending_engagements = engagements.len() as u64;
    eprintln!("the backlog: {upserts} batch upserts for {pending_engagements} engagements");
    assert!(
        upserts * 2 <= pending_engagements,
        "{upserts} batch upserts for {pending_engagements} engagements"
    );
    h.shutdown().await;
    fake.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_dead_letters_only_the_engagement_hubspot_refuses() {
    // The operator mapped "Escalated" to an outcome the portal does not
    // have: HubSpot refuses every call carrying it, and refuses a whole
    // `batch/upsert` for one such input.
    let fake = HubSpotFake::start(Portal::new().property(PROPERTY, false))
        .await
        .unwrap();
    let mut h = harness_with(&fake).await;
    h.config.sinks[0].requests_per_second = Some(2);
    h.config.sinks[0].max_in_flight = Some(1);
    h.config.sinks[0].disposition_map = Some(
        [(
            "Escalated".to_owned(),
            "00000000-dead-4000-8000-000000000000".to_owned(),
        )]
        .into(),
    );
    let options = ScenarioOptions::for_simulator(&h.sim);
    let script =
        scenario::generate_with(23, 16, SystemTime::now(), Duration::from_secs(1), &options);
    // Settings read the way the binary reads them (the token file is real).
    let config = h.write_config();
    let daemon = crate::support::Daemon::start(zcc_relay::config::load(&config).unwrap().settings);
    h.sim.wait_live().await;
    daemon.wait_first_sweep().await;
    for event in &script {
        assert!(h.sim.emit(event.body.clone()));
    }
    daemon.wait_handled(script.len() as u64).await;
    let expected = keyed_persisted(&daemon.stats.snapshot());
    // A backlog while the property is not unique; then it is.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(fake.calls().is_empty());
    fake.set_property(PROPERTY, true);
    let settled = tokio::time::timeout(
        Duration::from_secs(90),
        daemon.stats.wait_until(|s| {
            s.delivered_to(SINK) + s.dead_lettered.get(SINK).copied().unwrap_or(0) >= expected
        }),
    )
    .await;
    let snapshot = daemon.stats.snapshot();
    let dead = snapshot.dead_lettered.get(SINK).copied().unwrap_or(0);
    assert!(
        settled.is_ok(),
        "delivered {} and dead-lettered {dead} of {expected}",
        snapshot.delivered_to(SINK)
    );
    daemon.stop().await.unwrap();

    fn engagement<'a>(e: &&'a scenario::ScriptedEvent) -> Option<&'a str> {
        object(&e.body)["engagement_id"].as_str()
    }
    let keyed: Vec<&scenario::ScriptedEvent> = script
        .iter()
        .filter(|e| {
            zcc_relay::crm::engagement::KEYED_EVENTS
                .contains(&e.body["event"].as_str().unwrap_or(""))
        })
        .collect();
    let escalated: BTreeSet<&str> = keyed
        .iter()
        .filter(|e| object(&e.body)["disposition_name"] == "Escalated")
        .filter_map(engagement)
        .collect();
    let others: BTreeSet<&str> = keyed
        .iter()
        .filter_map(engagement)
        .filter(|id| !escalated.contains(id))
        .collect();
    assert!(dead > 0, "an engagement ends Escalated in this script");
    assert!(others.len() >= 8, "{others:?}");
    // Every other engagement has its call: none went down with a batch
    // that carried a refused one.
    for id in &others {
        assert_eq!(fake.calls_with(PROPERTY, id).len(), 1, "{id}");
    }
    let records_of_escalated = keyed
        .iter()
        .filter(|e| engagement(e).is_some_and(|id| escalated.contains(id)))
        .count() as u64;
    assert!(
        dead <= records_of_escalated,
        "{dead} dead-lettered, but only {records_of_escalated} records are of Escalated engagements"
    );
    h.shutdown().await;
    fake.stop().await;
}
