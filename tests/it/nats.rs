//! The nats sink against a real `nats-server` (Debian's package; `.ci/run`
//! installs it), one server per test on a free loopback port with its own
//! store (`zcc_sim::sink::nats::NatsServer`, killed on drop). Every test reads
//! the stream back with `async-nats` and counts: a kill -9 of the daemon
//! mid-delivery, a server restart mid-publish, a stream that does not exist
//! yet, a record over the stream's `max_msg_size`, a subject another stream
//! captures, a token with a stream the sink creates, bad credentials.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use zcc_sim::sink::nats::{NatsOptions, NatsServer};
use zcc_sim::{SimConfig, Simulator};

use crate::support::*;

const STREAM: &str = "ZCC";

/// Recording `n` of engagement `E{n % 23}`: keyed, in one of 23 lanes.
fn event(n: u64) -> serde_json::Value {
    serde_json::json!({
        "event": "contact_center.recording_completed",
        "event_ts": 1_764_000_000_000u64 + n,
        "payload": {"account_id": "acct.1", "object": {
            "recording_id": format!("R{n}"), "engagement_id": format!("E{}", n % 23),
            "recording_duration": n % 600, "channel": "voice"
        }}
    })
}

async fn connect(server: &NatsServer) -> jetstream::Context {
    let client = async_nats::connect(server.url()).await.unwrap();
    jetstream::new(client)
}

/// The stream the operator would create: `zcc.>`, file storage, 2 h window.
async fn add_stream(js: &jetstream::Context, max_msg_size: Option<i32>) {
    js.create_stream(stream::Config {
        name: STREAM.to_owned(),
        subjects: vec!["zcc.>".to_owned()],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(7200),
        max_message_size: max_msg_size.unwrap_or(-1),
        ..Default::default()
    })
    .await
    .unwrap();
}

/// How many messages the stream holds (0 when it does not exist).
async fn count(js: &jetstream::Context) -> u64 {
    match js.get_stream(STREAM).await {
        Ok(stream) => stream.cached_info().state.messages,
        Err(_) => 0,
    }
}

async fn wait_count(js: &jetstream::Context, n: u64, within: Duration) {
    let waited = tokio::time::timeout(within, async {
        while count(js).await < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "the stream holds {} of {n}",
        count(js).await
    );
}

/// One message as read back, in stream order.
#[derive(Debug)]
struct Stored {
    subject: String,
    msg_id: String,
    event: String,
    engagement: Option<String>,
    record: serde_json::Value,
}

async fn read_all(js: &jetstream::Context) -> Vec<Stored> {
    let stream = js.get_stream(STREAM).await.unwrap();
    let state = &stream.cached_info().state;
    let mut stored = Vec::new();
    for sequence in state.first_sequence..=state.last_sequence {
        let message = stream.get_raw_message(sequence).await.unwrap();
        let header = |name: &str| {
            message
                .headers
                .get(name)
                .map(|value| value.as_str().to_owned())
        };
        stored.push(Stored {
            subject: message.subject.to_string(),
            msg_id: header("Nats-Msg-Id").expect("Nats-Msg-Id"),
            event: header("Zcc-Event").expect("Zcc-Event"),
            engagement: header("Zcc-Engagement-Id"),
            record: serde_json::from_slice(&message.payload).expect("the body is the record"),
        });
    }
    stored
}

/// The record number `n` of `recording_completed:R{n}`.
fn number(stored: &Stored) -> u64 {
    let id = stored.record["id"].as_str().unwrap();
    id.strip_prefix("recording_completed:R")
        .unwrap()
        .parse()
        .unwrap()
}

/// Every message is one of ours, with the headers and subject of §3.6; each
/// (id, revision) is there exactly once; each engagement's records are in the
/// order they were emitted.
fn assert_exactly_once_in_order(stored: &[Stored], expected: u64) {
    let mut seen = BTreeSet::new();
    let mut last_by_engagement: BTreeMap<String, u64> = BTreeMap::new();
    for message in stored {
        let n = number(message);
        let id = message.record["id"].as_str().unwrap();
        assert_eq!(message.record["revision"], 1);
        assert!(seen.insert(n), "{id} is in the stream twice");
        assert_eq!(message.msg_id, id, "Nats-Msg-Id is the webhook-id");
        assert_eq!(message.event, "contact_center.recording_completed");
        let engagement = format!("E{}", n % 23);
        assert_eq!(message.engagement.as_deref(), Some(engagement.as_str()));
        // The account id's '.' is sanitised: the subject keeps its 5 tokens.
        assert_eq!(
            message.subject,
            format!("zcc.acct_1.eng.{engagement}.recording_completed")
        );
        if let Some(previous) = last_by_engagement.insert(engagement.clone(), n) {
            assert!(
                previous < n,
                "engagement {engagement}: R{n} stored after R{previous}"
            );
        }
    }
    assert_eq!(seen.len() as u64, expected, "records in the stream");
    assert_eq!(seen, (0..expected).collect::<BTreeSet<_>>());
}

async fn wait_for_handshake(sim: &Simulator, above: u64) {
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while sim.handshakes_completed() <= above {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "the daemon did not connect to the simulator"
    );
}

/// Waits until the daemon's log says `n` distinct records were persisted.
async fn wait_persisted(log: &Path, n: usize) {
    let waited = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let ids: BTreeSet<String> = persisted_ids(&text).into_iter().collect();
            if ids.len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "the daemon did not persist {n} records:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

fn write_config(sim: &Simulator, dir: &Path, sink: SinkTable) -> std::path::PathBuf {
    let mut config = TestConfig::new(sim, &dir.join("journal")).sink(sink);
    // Events the socket delivered are the subject here, not reconciliation.
    config.reconcile_mut().enabled = Some(false);
    config.write(&dir.join("config.toml"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_is_in_the_stream_once_in_order_across_a_kill_9() {
    let dir = temp_dir();
    let server = NatsServer::start(&dir.path().join("nats")).unwrap();
    let js = connect(&server).await;
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let mut sink = SinkTable::nats("bus", &server.url(), STREAM);
    sink.max_in_flight = Some(2);
    let config = write_config(&sim, dir.path(), sink);

    // First run: the stream does not exist yet, so the first 250 records
    // pile up pending, then flow once it is created; kill -9 mid-way.
    let log = dir.path().join("run-1.log");
    let mut child = spawn_run(&config, "warn,zcc_relay=debug", &log);
    wait_for_handshake(&sim, 0).await;
    for n in 0..250 {
        sim.emit(event(n));
    }
    wait_persisted(&log, 250).await;
    assert_eq!(count(&js).await, 0);
    add_stream(&js, None).await;
    let at_kill = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let n = count(&js).await;
            if n >= 40 {
                return n;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
    .expect("delivery started after the stream was created");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        at_kill < 250,
        "the kill came after every record was delivered ({at_kill})"
    );

    // Second run: the rest of the first 250 and 250 more.
    let log = dir.path().join("run-2.log");
    let handshakes = sim.handshakes_completed();
    let child = spawn_run(&config, "warn,zcc_relay=debug", &log);
    wait_for_handshake(&sim, handshakes).await;
    for n in 250..500 {
        sim.emit(event(n));
    }
    wait_count(&js, 500, Duration::from_secs(60)).await;
    sigterm(&child);
    let output = wait_output(child).await;
    assert!(
        output.status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let stored = read_all(&js).await;
    assert_eq!(stored.len(), 500, "no duplicate stored");
    assert_exactly_once_in_order(&stored, 500);
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_while_publishing_loses_nothing() {
    let dir = temp_dir();
    let mut server = NatsServer::start(&dir.path().join("nats")).unwrap();
    let mut harness = Harness::with_sinks([SinkTable {
        // The daemon creates the stream itself here.
        create_stream: Some(true),
        ..SinkTable::nats("bus", &server.url(), STREAM)
    }])
    .await;
    harness.config.reconcile_mut().enabled = Some(false);
    let daemon = harness.start();
    harness.sim.wait_live().await;
    for n in 0..150 {
        harness.sim.emit(event(n));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // SIGTERM while records are still being published, events keep coming
    // while it is down, then up again on the same port and store.
    tokio::task::block_in_place(|| server.stop());
    for n in 150..300 {
        harness.sim.emit(event(n));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::task::block_in_place(|| server.restart()).unwrap();
    let js = connect(&server).await;
    wait_count(&js, 300, Duration::from_secs(60)).await;
    daemon.wait_delivered("bus", 300).await;
    let stored = read_all(&js).await;
    assert_eq!(stored.len(), 300, "no duplicate stored");
    assert_exactly_once_in_order(&stored, 300);
    daemon.stop().await.unwrap();
    harness.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_stream_keeps_records_pending_and_names_the_stream() {
    let dir = temp_dir();
    let server = NatsServer::start(&dir.path().join("nats")).unwrap();
    let js = connect(&server).await;
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let config = write_config(
        &sim,
        dir.path(),
        SinkTable::nats("bus", &server.url(), STREAM),
    );
    let log = dir.path().join("run.log");
    let child = spawn_run(&config, "info,zcc_relay=debug", &log);
    wait_for_handshake(&sim, 0).await;
    for n in 0..20 {
        sim.emit(event(n));
    }
    wait_persisted(&log, 20).await;
    // The set-up problem is logged, naming the stream, and nothing is lost.
    let named = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("stream ZCC does not exist") {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the log names the missing stream");
    assert!(!named.contains("dead-letter"), "{named}");
    assert!(
        !named.contains("not encrypted"),
        "loopback is not warned about:\n{named}"
    );
    let stats = zcc_relay(["queue", "stats", "--json"])
        .config(&config)
        .json()
        .await;
    assert_eq!(stats["sinks"][0]["pending"], 20, "{stats}");

    // `check` says the same, and what fixes it.
    let checked = zcc_relay(["check"]).config(&config).output().await;
    assert_ne!(checked.code, Some(0), "{checked:?}");
    assert!(
        checked.stdout.contains("stream ZCC does not exist")
            && checked.stdout.contains("nats stream add ZCC"),
        "{checked:?}"
    );

    // Created by hand: everything arrives, no restart.
    add_stream(&js, None).await;
    wait_count(&js, 20, Duration::from_secs(30)).await;
    sigterm(&child);
    let output = wait_output(child).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(output.status.success(), "{text}");
    assert_exactly_once_in_order(&read_all(&js).await, 20);
    let checked = zcc_relay(["check"]).config(&config).output().await;
    assert_eq!(checked.code, Some(0), "{checked:?}");
    assert!(
        checked.stdout.contains(
            "subjects like zcc.account.eng.engagement.recording_completed land in stream ZCC"
        ),
        "{checked:?}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_over_max_msg_size_is_dead_lettered_with_the_reason() {
    let dir = temp_dir();
    let server = NatsServer::start(&dir.path().join("nats")).unwrap();
    let js = connect(&server).await;
    add_stream(&js, Some(2048)).await;
    let mut harness = Harness::with_sinks([SinkTable::nats("bus", &server.url(), STREAM)]).await;
    harness.config.reconcile_mut().enabled = Some(false);
    let daemon = harness.start();
    harness.sim.wait_live().await;
    let mut big = event(1);
    big["payload"]["object"]["padding"] = serde_json::Value::String("x".repeat(4096));
    harness.sim.emit(event(0));
    harness.sim.emit(big);
    harness.sim.emit(event(2));
    daemon.wait_dead_lettered("bus", 1).await;
    daemon.wait_delivered("bus", 2).await;
    daemon.stop().await.unwrap();
    // Two engagements: no order between them.
    let numbers: BTreeSet<u64> = read_all(&js).await.iter().map(number).collect();
    assert_eq!(numbers, BTreeSet::from([0, 2]));
    let dead = zcc_relay(["queue", "dead", "--sink", "bus", "--json"])
        .config(&harness.write_config())
        .json()
        .await;
    let text = dead.to_string();
    assert!(text.contains("recording_completed:R1"), "{text}");
    assert!(text.contains("max_msg_size"), "{text}");
    harness.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_are_a_clear_error_and_never_logged() {
    const PASSWORD: &str = "right-password-5f1c2e";
    const WRONG: &str = "wrong-password-9a7b3d";
    const SEED: &str = "SUAGARBAGEGARBAGEGARBAGEGARBAGE7Q";
    let dir = temp_dir();
    let server = NatsServer::start_with(
        &dir.path().join("nats"),
        NatsOptions {
            user_password: Some(("relay".to_owned(), PASSWORD.to_owned())),
            ..NatsOptions::default()
        },
    )
    .unwrap();
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let no_secret = |text: &str| {
        for secret in [PASSWORD, WRONG, SEED] {
            assert!(!text.contains(secret), "a secret was printed:\n{text}");
        }
    };

    // A credentials file that is not one: refused at start-up and by check.
    let creds = secrets.join("bus.creds");
    std::fs::write(
        &creds,
        format!("-----BEGIN USER NKEY SEED-----\n{SEED}\n------END USER NKEY SEED------\n"),
    )
    .unwrap();
    let run_dir = dir.path().join("creds");
    std::fs::create_dir(&run_dir).unwrap();
    let config = write_config(
        &sim,
        &run_dir,
        SinkTable {
            credentials_file: Some(creds),
            ..SinkTable::nats("bus", &server.url(), STREAM)
        },
    );
    let checked = zcc_relay(["check"]).config(&config).output().await;
    no_secret(&format!("{}{}", checked.stdout, checked.stderr));
    assert_ne!(checked.code, Some(0), "{checked:?}");
    assert!(
        checked
            .stdout
            .contains("credentials_file is not a NATS credentials file"),
        "{checked:?}"
    );
    let log = run_dir.join("run.log");
    let child = spawn_run(&config, "debug", &log);
    let output = wait_output(child).await;
    let text = std::fs::read_to_string(&log).unwrap();
    no_secret(&text);
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains("credentials_file is not a NATS credentials file"),
        "{text}"
    );

    // A wrong password: check says the server refused it.
    let password = secrets.join("bus-password");
    std::fs::write(&password, WRONG).unwrap();
    let run_dir = dir.path().join("password");
    std::fs::create_dir(&run_dir).unwrap();
    let config = write_config(
        &sim,
        &run_dir,
        SinkTable {
            user: Some("relay".to_owned()),
            password_file: Some(password.clone()),
            ..SinkTable::nats("bus", &server.url(), STREAM)
        },
    );
    let checked = zcc_relay(["check"]).config(&config).output().await;
    no_secret(&format!("{}{}", checked.stdout, checked.stderr));
    assert_ne!(checked.code, Some(0), "{checked:?}");
    assert!(
        checked.stdout.contains("refused the credentials"),
        "{checked:?}"
    );
    // The daemon runs, its records wait, and the log says why, secret-free.
    let log = run_dir.join("run.log");
    let handshakes = sim.handshakes_completed();
    let child = spawn_run(&config, "debug", &log);
    wait_for_handshake(&sim, handshakes).await;
    sim.emit(event(0));
    let refused = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("refused the credentials") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    sigterm(&child);
    let output = wait_output(child).await;
    let text = std::fs::read_to_string(&log).unwrap();
    no_secret(&text);
    assert!(refused.is_ok(), "{text}");
    assert!(output.status.success(), "{text}");

    // The right password: check proves the connection.
    std::fs::write(&password, PASSWORD).unwrap();
    let checked = zcc_relay(["check"]).config(&config).output().await;
    no_secret(&format!("{}{}", checked.stdout, checked.stderr));
    assert!(
        checked.stdout.contains("connected to nats-server"),
        "{checked:?}"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_file_authenticates_and_the_sink_creates_its_stream() {
    const TOKEN: &str = "relay-token-3e8a61";
    let dir = temp_dir();
    let server = NatsServer::start_with(
        &dir.path().join("nats"),
        NatsOptions {
            token: Some(TOKEN.to_owned()),
            ..NatsOptions::default()
        },
    )
    .unwrap();
    let token = dir.path().join("nats-token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let mut harness = Harness::with_sinks([SinkTable {
        token_file: Some(token),
        create_stream: Some(true),
        ..SinkTable::nats("bus", &server.url(), STREAM)
    }])
    .await;
    harness.config.reconcile_mut().enabled = Some(false);
    // The token is read from its file, as the daemon does.
    let settings = zcc_relay::config::parse(
        &harness.config.to_toml(),
        &zcc_relay::config::SystemEnvironment,
    )
    .unwrap()
    .settings;
    let daemon = Daemon::start(settings);
    harness.sim.wait_live().await;
    for n in 0..3 {
        harness.sim.emit(event(n));
    }
    daemon.wait_delivered("bus", 3).await;
    daemon.stop().await.unwrap();
    let client = async_nats::ConnectOptions::with_token(TOKEN.to_owned())
        .connect(server.url())
        .await
        .unwrap();
    let js = jetstream::new(client);
    let info = js.get_stream(STREAM).await.unwrap().cached_info().clone();
    assert_eq!(info.config.subjects, ["zcc.>"]);
    assert_eq!(info.config.storage, stream::StorageType::File);
    assert_eq!(info.config.duplicate_window, Duration::from_secs(7200));
    assert_exactly_once_in_order(&read_all(&js).await, 3);
    harness.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subject_another_stream_captures_fails_loudly_and_lands_nowhere() {
    let dir = temp_dir();
    let server = NatsServer::start(&dir.path().join("nats")).unwrap();
    let js = connect(&server).await;
    js.create_stream(stream::Config {
        name: "OTHER".to_owned(),
        subjects: vec!["zcc.>".to_owned()],
        ..Default::default()
    })
    .await
    .unwrap();
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let config = write_config(
        &sim,
        dir.path(),
        SinkTable::nats("bus", &server.url(), STREAM),
    );
    let log = dir.path().join("run.log");
    let child = spawn_run(&config, "info", &log);
    wait_for_handshake(&sim, 0).await;
    sim.emit(event(0));
    let logged = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("is captured by another stream than ZCC") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    sigterm(&child);
    let output = wait_output(child).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(logged.is_ok(), "{text}");
    assert!(output.status.success(), "{text}");
    let other = js.get_stream("OTHER").await.unwrap();
    assert_eq!(other.cached_info().state.messages, 0, "it landed in OTHER");
    let stats = zcc_relay(["queue", "stats", "--json"])
        .config(&config)
        .json()
        .await;
    assert_eq!(stats["sinks"][0]["pending"], 1, "{stats}");
    sim.shutdown().await;
}
