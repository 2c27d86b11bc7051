//! The Zendesk sink end to end (DESIGN.md §3.5): the real binary and then
//! the daemon in this process, the simulator's Zoom, a `file://` media
//! store, and the fake account (`zcc_sim::sink::zendesk`) on real loopback
//! sockets.

use std::time::{Duration, SystemTime};

use redb::ReadableDatabase;
use zcc_relay::crm::phone::{Region, normalise};
use zcc_sim::scenario::{self, ScenarioOptions};
use zcc_sim::sink::zendesk::{Account, ZendeskFake};

use crate::harness::Harness;
use crate::support::{
    MediaTable, SinkTable, drained_and_stopped, keyed_engagements, keyed_persisted, note_versions,
    object, pending_in, spawn_run, wait_for,
};

const SINK: &str = "zendesk";

async fn harness_with(fake: &ZendeskFake) -> Harness {
    let mut h = Harness::new().await;
    h.config.media = Some(MediaTable::enabled());
    h.config.sinks = vec![SinkTable::zendesk(SINK, fake)];
    h
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_to_one_ticket_per_engagement_through_faults_and_kill_9() {
    let fake = ZendeskFake::start(
        Account::new()
            .ticket_updates_per_minute(6000)
            .requests_per_minute(60_000),
    )
    .await
    .unwrap();
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
    let ada = fake.add_user(
        "Ada Lovelace",
        &format!("({}) {}-{}", &digits[..3], &digits[3..6], &digits[6..]),
    );

    let config = h.write_config();
    let mut child = spawn_run(&config, "info", &h.path("first-run.log"));
    h.sim.wait_live().await;
    let first = script.len() / 3;
    fake.throttle_next(1);
    for event in &script[..first] {
        assert!(h.sim.emit(event.body.clone()));
    }
    wait_for("the first tickets", || fake.ticket_ids().len() >= 2).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let (sink_pending, media_pending, dead) = pending_in(&config, SINK).await;
    assert_eq!(dead, 0);
    eprintln!(
        "killed with {} tickets written, {sink_pending} records pending, {media_pending} waiting for media",
        fake.ticket_ids().len()
    );

    // The daemon in this process: re-sends, the rest, every token expired,
    // a 503 burst and a 429.
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
    fake.throttle_next(1);
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
        counts.throttled >= 2 && counts.unauthorized >= 1 && counts.tokens_issued >= 2,
        "{counts:?}"
    );

    let db = zcc_relay::journal::open_read_only(&h.journal()).unwrap();
    let txn = db.begin_read().unwrap();
    let engagements = keyed_engagements(&script);
    assert!(engagements.len() >= 15, "{} engagements", engagements.len());
    let notes = note_versions(&script);

    let (mut linked, mut created, mut files, mut edited, mut voice, mut tagged) =
        (0, 0, 0, 0, 0, 0);
    for engagement in &engagements {
        let tickets = fake.tickets_with(&format!("zcc:{engagement}"));
        assert_eq!(tickets.len(), 1, "engagement {engagement}: {tickets:?}");
        let ticket = tickets[0];
        let stored = fake.ticket(ticket).unwrap();
        let (requester, tags) = (stored.requester_id, stored.tags);
        let comments = fake.comments(ticket);
        assert!(
            comments
                .iter()
                .all(|c| !c.public || c.kind == "VoiceComment"),
            "{engagement}: a public comment"
        );
        let aggregate = zcc_relay::journal::read::interaction(&txn, engagement)
            .unwrap()
            .expect("an aggregate");
        assert!(tags.contains(&"zcc".to_owned()), "{engagement}: {tags:?}");
        if let Some(name) = aggregate.disposition().and_then(|d| d.name) {
            let disposition_tags: Vec<&String> = tags
                .iter()
                .filter(|t| t.starts_with("zcc_disposition_"))
                .collect();
            assert_eq!(disposition_tags.len(), 1, "{engagement}: {tags:?}");
            let expected = name.to_lowercase();
            let slug: String = expected.chars().filter(|c| c.is_alphanumeric()).collect();
            assert_eq!(
                disposition_tags[0]
                    .trim_start_matches("zcc_disposition_")
                    .replace('_', ""),
                slug,
                "{engagement}: {name}"
            );
            tagged += 1;
        }
        // Each note once, with its latest text; no superseded text anywhere.
        for ((_, note_id), versions) in notes.iter().filter(|((e, _), _)| e == engagement) {
            let latest = &versions.iter().max().unwrap().1;
            let holding: Vec<_> = comments
                .iter()
                .filter(|c| {
                    c.body.contains(&format!("[zcc note {note_id} "))
                        && c.body.contains(latest.as_str())
                })
                .collect();
            assert_eq!(holding.len(), 1, "{engagement}: {latest:?} {comments:#?}");
            if versions.iter().any(|(_, t)| t != latest) {
                edited += 1;
            }
            for (_, text) in versions {
                if text != latest && !latest.contains(text.as_str()) {
                    assert!(
                        comments.iter().all(|c| !c.body.contains(text.as_str())),
                        "{engagement}: superseded {text:?}"
                    );
                }
            }
        }
        // Each file once, attached with its bytes.
        for entry in aggregate.files() {
            let name = entry.location.rsplit('/').next().unwrap();
            let holding: Vec<_> = comments
                .iter()
                .filter(|c| c.body.contains(&format!("[zcc file {name}]")))
                .collect();
            assert_eq!(holding.len(), 1, "{engagement}: {name}");
            let path = url::Url::parse(&entry.location)
                .unwrap()
                .to_file_path()
                .unwrap();
            assert_eq!(
                holding[0].attachments,
                vec![(name.to_owned(), std::fs::read(path).unwrap())],
                "{engagement}: {name}"
            );
            files += 1;
        }
        // The call: one voice comment pointing at the uploaded recording.
        let voices: Vec<_> = comments
            .iter()
            .filter(|c| c.kind == "VoiceComment")
            .collect();
        if aggregate.files().any(|f| f.kind == "recording") {
            assert_eq!(voices.len(), 1, "{engagement}");
            let data = voices[0].data.as_ref().unwrap();
            assert!(
                data["recording_url"]
                    .as_str()
                    .unwrap()
                    .contains("/attachments/token/"),
                "{engagement}: {data}"
            );
            voice += 1;
        } else {
            assert!(voices.is_empty(), "{engagement}");
        }
        // The requester: the user with the number, else one created for it.
        match aggregate.consumer().number.and_then(|n| normalise(&n, us)) {
            Some(number) if number == linked_number => {
                assert_eq!(requester, ada, "{engagement}");
                linked += 1;
            }
            Some(number) => {
                assert_eq!(
                    fake.users_with_phone(&number),
                    vec![requester],
                    "{engagement}"
                );
                created += 1;
            }
            None => assert_eq!(requester, fake.agent_id(), "{engagement}"),
        }
    }
    assert!(linked >= 1, "no ticket linked to the existing user");
    assert!(created >= 1, "no requester created");
    assert!(files >= 1, "no file attached");
    assert!(voice >= 1, "no voice comment");
    assert!(edited >= 1, "no edited note checked");
    assert!(tagged >= 1, "no disposition checked");
    assert_eq!(
        fake.ticket_ids().len(),
        engagements.len(),
        "no ticket beyond one per engagement"
    );
    drop(txn);
    h.shutdown().await;
    fake.stop().await;
}

/// An integration user without the right to write is a set-up problem:
/// every record waits (nothing dead-lettered) and the log names the fix;
/// the records converge once the role is fixed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_integration_user_who_may_not_write_keeps_records_pending() {
    let fake = ZendeskFake::start(Account::new().role("end-user"))
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
        read_log().contains("sink set-up problem") && read_log().contains("must be an agent")
    })
    .await;
    assert!(fake.ticket_ids().is_empty());
    assert!(
        !read_log().contains(&fake.client_secret()),
        "the secret was logged"
    );
    let (pending, _, dead) = pending_in(&config, SINK).await;
    assert!(pending > 0, "records wait");
    assert_eq!(dead, 0, "nothing dead-lettered");

    fake.set_role("agent");
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
    for engagement in keyed_engagements(&script) {
        assert_eq!(
            fake.tickets_with(&format!("zcc:{engagement}")).len(),
            1,
            "{engagement}"
        );
    }
    h.shutdown().await;
    fake.stop().await;
}

/// The case through the daemon: the first create happens but its
/// answer is lost, and the account's clock moves past the 2-hour
/// idempotency window before the retry; the retry finds the ticket by
/// `external_id` and makes no second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_retried_after_the_idempotency_window_makes_no_second_ticket() {
    let fake = ZendeskFake::start(Account::new()).await.unwrap();
    let mut h = harness_with(&fake).await;
    h.config.media = None;
    let options = ScenarioOptions::for_simulator(&h.sim);
    let script = scenario::generate_with(5, 1, SystemTime::now(), Duration::from_secs(1), &options);
    let engagements = keyed_engagements(&script);
    assert_eq!(engagements.len(), 1);
    let config = h.write_config();
    fake.lose_next_create_answer_then_advance(
        zcc_sim::sink::zendesk::IDEMPOTENCY_WINDOW + Duration::from_secs(60),
    );
    let daemon = crate::support::Daemon::start(zcc_relay::config::load(&config).unwrap().settings);
    h.sim.wait_live().await;
    daemon.wait_first_sweep().await;
    let first = script
        .iter()
        .position(|e| {
            zcc_relay::crm::engagement::KEYED_EVENTS
                .contains(&e.body["event"].as_str().unwrap_or(""))
        })
        .unwrap();
    assert!(h.sim.emit(script[first].body.clone()));
    wait_for("the lost answer", || {
        fake.request_counts().lost_answers == 1
    })
    .await;
    for event in &script[first + 1..] {
        assert!(h.sim.emit(event.body.clone()));
    }
    let expected = keyed_persisted(&daemon.stats.snapshot());
    let waited = tokio::time::timeout(
        Duration::from_secs(60),
        daemon
            .stats
            .wait_until(|s| s.delivered_to(SINK) >= expected.max(1)),
    )
    .await;
    assert!(waited.is_ok(), "not delivered: {:?}", fake.request_counts());
    daemon.stop().await.unwrap();
    let engagement = engagements.iter().next().unwrap();
    assert_eq!(fake.tickets_with(&format!("zcc:{engagement}")).len(), 1);
    assert_eq!(fake.ticket_ids().len(), 1, "no second ticket");
    let counts = fake.request_counts();
    assert_eq!((counts.creates, counts.lost_answers), (1, 1), "{counts:?}");
    h.shutdown().await;
    fake.stop().await;
}

/// `check` against the fake account: a proper set-up is ready and nothing
/// is written; an integration user who is no agent, and a disposition field
/// that does not exist, are each named with their fix.
#[tokio::test]
async fn a_zendesk_sink_is_checked_against_the_account_without_writing() {
    let fake = ZendeskFake::start(Account::new().ticket_field(360_001))
        .await
        .unwrap();
    let mut harness = Harness::new().await;
    harness.config.sinks.push(SinkTable::zendesk("desk", &fake));
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
        "sink desk (zendesk): ready",
        "signed in by OAuth client credentials as a Zendesk admin",
        "tickets can be listed by external_id",
        "a users search by phone",
    ] {
        assert!(ran.stdout.contains(expected), "{expected:?} in {ran:?}");
    }
    assert!(!ran.stdout.contains(&fake.client_secret()), "{ran:?}");
    let counts = fake.request_counts();
    assert_eq!(
        (
            counts.creates,
            counts.updates,
            counts.uploads,
            counts.user_creates
        ),
        (0, 0, 0, 0),
        "check wrote to the account: {counts:?}"
    );

    fake.set_role("end-user");
    let ran = check(&harness).await;
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(
        ran.stdout.contains("the integration user is not an agent"),
        "{ran:?}"
    );
    fake.set_role("agent");
    harness.config.sinks[0].ticket_updates_per_minute = None;
    let mut with_field = std::fs::read_to_string(harness.write_config()).unwrap();
    with_field = with_field.replace(
        "type = \"zendesk\"",
        "type = \"zendesk\"\ndisposition_field_id = 42",
    );
    let path = harness.path("with-field.toml");
    std::fs::write(&path, with_field).unwrap();
    let ran = crate::support::zcc_relay(["check"])
        .config(&path)
        .output()
        .await;
    assert_eq!(ran.code, Some(1), "{ran:?}");
    assert!(
        ran.stdout.contains("cannot read the ticket field 42"),
        "{ran:?}"
    );
    harness.shutdown().await;
    fake.stop().await;
}

/// `attach_files = false`: every stored file is one private comment with
/// its link instead of an upload, and the voice comment points at the
/// recording's link; nothing is uploaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_not_attached_are_linked_once() {
    let fake = ZendeskFake::start(Account::new().ticket_updates_per_minute(6000))
        .await
        .unwrap();
    let h = harness_with(&fake).await;
    let options = ScenarioOptions::for_simulator(&h.sim);
    let script =
        scenario::generate_with(11, 4, SystemTime::now(), Duration::from_secs(1), &options);
    let written = std::fs::read_to_string(h.write_config()).unwrap();
    let config = h.path("links.toml");
    std::fs::write(
        &config,
        written.replace(
            "type = \"zendesk\"",
            "type = \"zendesk\"\nattach_files = false",
        ),
    )
    .unwrap();
    let daemon = crate::support::Daemon::start(zcc_relay::config::load(&config).unwrap().settings);
    h.sim.wait_live().await;
    daemon.wait_first_sweep().await;
    for event in &script {
        assert!(h.sim.emit(event.body.clone()));
    }
    daemon.wait_handled(script.len() as u64).await;
    let expected = keyed_persisted(&daemon.stats.snapshot());
    let waited = tokio::time::timeout(
        Duration::from_secs(60),
        daemon
            .stats
            .wait_until(|s| s.delivered_to(SINK) >= expected),
    )
    .await;
    assert!(waited.is_ok(), "not delivered: {:?}", fake.request_counts());
    daemon.stop().await.unwrap();
    assert_eq!(pending_in(&config, SINK).await, (0, 0, 0));
    let db = zcc_relay::journal::open_read_only(&h.journal()).unwrap();
    let txn = db.begin_read().unwrap();
    let mut linked = 0;
    for engagement in keyed_engagements(&script) {
        let tickets = fake.tickets_with(&format!("zcc:{engagement}"));
        assert_eq!(tickets.len(), 1, "{engagement}");
        let comments = fake.comments(tickets[0]);
        let aggregate = zcc_relay::journal::read::interaction(&txn, &engagement)
            .unwrap()
            .expect("an aggregate");
        for entry in aggregate.files() {
            let name = entry.location.rsplit('/').next().unwrap();
            let holding: Vec<_> = comments
                .iter()
                .filter(|c| c.body.contains(&format!("[zcc file {name}]")))
                .collect();
            assert_eq!(holding.len(), 1, "{engagement}: {name}");
            assert!(holding[0].attachments.is_empty());
            let link = entry.url.clone().unwrap_or_else(|| entry.location.clone());
            assert!(holding[0].body.contains(&link), "{:?}", holding[0].body);
            if entry.kind == "recording" {
                let voice: Vec<_> = comments
                    .iter()
                    .filter(|c| c.kind == "VoiceComment")
                    .collect();
                assert_eq!(voice.len(), 1, "{engagement}");
                assert_eq!(
                    voice[0].data.as_ref().unwrap()["recording_url"],
                    link.as_str()
                );
            }
            linked += 1;
        }
    }
    assert!(linked >= 1, "no file linked");
    assert_eq!(fake.uploads(), 0, "nothing uploaded");
    drop(txn);
    h.shutdown().await;
    fake.stop().await;
}
