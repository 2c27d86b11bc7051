//! Active/standby (docs/contract.md §3.7): two real daemons share one
//! simulated Zoom account through a lease in a real `nats-server` (Debian's
//! 2.9: the lease bucket's `max_age`, no per-key TTL). The simulator counts
//! evictions ("Connected in another place") and the periods with two sockets
//! of the subscription open at once.
//!
//! `ttl` is 3 s here: renewals every 600 ms, a step-down 2 s after the last
//! good renewal was sent.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zcc_relay::clock;
use zcc_sim::sink::nats::NatsServer;
use zcc_sim::{SimConfig, Simulator};

use crate::harness::config::StandbyTable;
use crate::support::*;

const TTL: Duration = Duration::from_secs(3);
const RENEWAL: Duration = Duration::from_millis(600);

/// The events of engagement `n` at wall time `at_ms`: every keyed type
/// (a voice engagement with recording, transcript, note, disposition and a
/// voicemail with its transcript; every other one a messaging engagement
/// with its transcript) and the socket-only lifecycle events.
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
    let e = format!("SB{n}");
    let channel = if n.is_multiple_of(2) {
        "voice"
    } else {
        "messaging"
    };
    let (start, end) = (at_ms - 120_000, at_ms - 60_000);
    let object = |extra: Value| {
        let mut base = json!({"engagement_id": e, "engagement_direction": "inbound",
            "channel": channel, "date_time_ms": iso(at_ms)});
        base.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        base
    };
    let event = |name: &str, ts: u64, object: Value| {
        json!({"event": format!("contact_center.{name}"), "event_ts": ts,
            "payload": {"account_id": "sim-account", "object": object}})
    };
    let mut events = vec![
        event("engagement_started", start, object(json!({}))),
        event("engagement_ended", end, object(json!({}))),
        event(
            "engagement_note_added",
            end,
            object(json!({"note_id": format!("N{n}"), "note": "called back",
                "last_modified_time": iso_s(end), "user_id": "U1"})),
        ),
        event(
            "engagement_disposition_added",
            end,
            object(json!({"disposition_id": format!("D{n}"), "disposition_name": "Resolved"})),
        ),
    ];
    if channel == "voice" {
        events.extend([
            event(
                "recording_completed",
                end,
                object(json!({"recording_id": format!("R{n}"),
                    "recording_start_time_ms": iso(start), "recording_end_time_ms": iso(end),
                    "recording_duration": 60, "users": [{"user_id": "U1", "user_display_name": "Ada"}]})),
            ),
            event(
                "recording_transcript_completed",
                end,
                object(json!({"recording_id": format!("R{n}"),
                    "recording_start_time_ms": iso(start), "recording_end_time_ms": iso(end),
                    "transcript_url": format!("https://api.zoom.us/v2/contact_center/recording/transcripts/download/R{n}?type=voice")})),
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
        ]);
    } else {
        events.push(event(
            "engagement_messaging_transcript_completed",
            end,
            object(json!({"transcript_url": format!("https://api.zoom.us/v2/contact_center/engagements/{e}/messaging/transcript")})),
        ));
    }
    events
}

/// The natural keys of the keyed events among `bodies`, as the daemon computes them.
fn keyed_ids(bodies: &[Value]) -> BTreeSet<String> {
    bodies
        .iter()
        .filter(|body| {
            zcc_relay::crm::engagement::KEYED_EVENTS.contains(&body["event"].as_str().unwrap())
        })
        .map(|body| {
            zcc_relay::zoom::event::parse_body(
                &body.to_string(),
                zcc_relay::record::Source::Websocket,
                "2026-01-01T00:00:00.000Z".into(),
                0,
            )
            .unwrap()
            .id
        })
        .collect()
}

fn delivered_ids(sink: &FakeSink) -> BTreeSet<String> {
    sink.accepted()
        .iter()
        .map(|r| r.record()["id"].as_str().unwrap().to_owned())
        .collect()
}

/// A simulator, a nats-server for the lease, and a scratch directory.
struct Pair {
    sim: Arc<Simulator>,
    nats: NatsServer,
    dir: tempfile::TempDir,
}

/// One relay: the real binary, its log file.
struct Relay {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Pair {
    async fn new() -> Pair {
        let dir = temp_dir();
        let nats = NatsServer::start(&dir.path().join("nats"))
            .unwrap_or_else(|e| panic!("nats-server ({:?}): {e}", zcc_sim::sink::nats::version()));
        let sim = Arc::new(Simulator::start(SimConfig::default()).await.unwrap());
        Pair { sim, nats, dir }
    }

    /// Relay `name`'s config: its own journal, the shared account and lease,
    /// an HTTP sink posting to `sink`.
    fn config(&self, name: &str, sink: &FakeSink) -> PathBuf {
        let mut config = TestConfig::new(&self.sim, &self.dir.path().join(name).join("journal"))
            .sink(SinkTable::http("crm", &sink.url()));
        config.standby = Some(StandbyTable {
            lease_servers: vec![self.nats.url()],
            bucket: None,
            ttl: Some(format!("{}s", TTL.as_secs())),
        });
        config.reconcile = Some(ReconcileTable {
            gap_margin: Some("2m".into()),
            interval: Some("1h".into()),
            lookback: Some("1h".into()),
            max_requests_per_second: Some(50),
            ..ReconcileTable::default()
        });
        config.metrics = Some(MetricsTable::any_port());
        std::fs::create_dir_all(self.dir.path().join(name)).unwrap();
        config.write(&self.dir.path().join(name).join("config.toml"))
    }

    fn spawn(&self, name: &'static str, sink: &FakeSink) -> Relay {
        let config = self.config(name, sink);
        let log = self.dir.path().join(name).join("run.log");
        let child = spawn_run(&config, "info,zcc_relay=debug", &log);
        Relay { name, child, log }
    }

    /// Starts `a` and waits until it leads with a live socket, then `b` and
    /// waits until it is the standby.
    async fn start(&self, sink_a: &FakeSink, sink_b: &FakeSink) -> (Relay, Relay) {
        let a = self.spawn("a", sink_a);
        a.wait_log("took the lease", Duration::from_secs(30)).await;
        tokio::time::timeout(Duration::from_secs(30), self.sim.wait_live())
            .await
            .unwrap_or_else(|_| panic!("a never connected:\n{}", a.text()));
        let b = self.spawn("b", sink_b);
        b.wait_log("another relay holds the lease", Duration::from_secs(30))
            .await;
        (a, b)
    }

    /// Kills `leader` with SIGKILL and waits until `standby` has a live
    /// socket; how long that took from the kill.
    async fn kill_leader(&self, leader: &mut Relay, standby: &Relay) -> Duration {
        let handshakes = self.sim.handshakes_completed();
        let killed = Instant::now();
        leader.child.kill().unwrap();
        leader.child.wait().unwrap();
        let took_over = tokio::time::timeout(Duration::from_secs(30), async {
            while self.sim.handshakes_completed() <= handshakes {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(
            took_over.is_ok(),
            "{} never connected:\n{}",
            standby.name,
            standby.text()
        );
        killed.elapsed()
    }
}

impl Relay {
    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_log(&self, needle: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.text().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "relay {} never logged {needle:?}:\n{}",
                self.name,
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    async fn stop(self) -> String {
        let text_path = self.log.clone();
        sigterm(&self.child);
        let output = wait_output(self.child).await;
        let text = std::fs::read_to_string(text_path).unwrap_or_default();
        assert!(output.status.success(), "relay {} stop:\n{text}", self.name);
        text
    }
}

/// Emits engagement after engagement until stopped; every body emitted.
struct Emitter {
    stop: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    emitted: Arc<Mutex<Vec<Value>>>,
}

impl Emitter {
    fn start(sim: &Arc<Simulator>, first: u64, every: Duration) -> Emitter {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let emitted = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let (sim, stop, emitted) = (sim.clone(), stop.clone(), emitted.clone());
            tokio::spawn(async move {
                let mut n = first;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    for body in engagement(n, clock::now_ms()) {
                        sim.emit(body.clone());
                        emitted.lock().unwrap().push(body);
                    }
                    n += 1;
                    tokio::time::sleep(every).await;
                }
            })
        };
        Emitter {
            stop,
            task,
            emitted,
        }
    }

    async fn finish(self) -> Vec<Value> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.task.await.unwrap();
        self.emitted.lock().unwrap().clone()
    }
}

async fn wait_delivered(
    sink: &FakeSink,
    expected: &BTreeSet<String>,
    within: Duration,
    logs: &[&Path],
) {
    let waited = tokio::time::timeout(within, async {
        while !expected.is_subset(&delivered_ids(sink)) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    if waited.is_err() {
        let got = delivered_ids(sink);
        let missing: Vec<&String> = expected.difference(&got).collect();
        let logs: Vec<String> = logs
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect();
        panic!("not delivered: {missing:?}\n{}", logs.join("\n-----\n"));
    }
}

/// `host:pid` as the relay logged it when it took the lease.
fn holder_in(log: &str) -> String {
    log.lines()
        .find(|line| line.contains("took the lease"))
        .and_then(|line| line.split("holder=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no holder in:\n{log}"))
        .to_owned()
}

/// `standby`'s metrics and `status` name it the standby and `leader` the holder.
async fn shows_the_standby_and_its_leader(standby: &Relay, leader: &Relay) {
    let holder = holder_in(&leader.text());
    let addr = metrics_addr_in(&standby.log).await;
    let (_, _, scrape) = http_get(addr, "/metrics").await;
    let samples = zcc_relay::telemetry::metrics::parse(&scrape);
    let sample = |name: &str| {
        samples
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} in:\n{scrape}"))
    };
    let role = sample("zcc_relay_lease_leader");
    assert_eq!(role.value, 0.0, "{scrape}");
    assert_eq!(
        role.labels["lease"],
        "zcc_relay/sim-account.sim-subscription"
    );
    let shown = sample("zcc_relay_lease_holder");
    assert_eq!(
        (shown.labels["holder"].as_str(), shown.value),
        (holder.as_str(), 1.0)
    );
    let states: Vec<&str> = samples
        .iter()
        .filter(|s| s.name == "zcc_relay_websocket_state" && s.value == 1.0)
        .map(|s| s.labels["state"].as_str())
        .collect();
    assert_eq!(states, ["standby"], "{scrape}");
    // `status` reads the role the daemon recorded in its journal.
    let config = standby.log.with_file_name("config.toml");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ran = zcc_relay(["status", "--json"])
            .config(&config)
            .output()
            .await;
        let report: Value = serde_json::from_str(&ran.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}\n{}", ran.stdout, ran.stderr));
        let recorded = &report["standby"];
        if recorded["holder"] == json!(holder) {
            assert_eq!(recorded["role"], "standby", "{report}");
            assert!(recorded["lease_age_seconds"].is_u64(), "{report}");
            break;
        }
        assert!(Instant::now() < deadline, "{report}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_takes_over_when_the_leader_is_killed() {
    let pair = Pair::new().await;
    let crm = FakeSink::ok().await;
    let (mut a, b) = pair.start(&crm, &crm).await;
    shows_the_standby_and_its_leader(&b, &a).await;
    let emitter = Emitter::start(&pair.sim, 0, Duration::from_millis(100));
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let takeover = pair.kill_leader(&mut a, &b).await;
    eprintln!("standby took over {takeover:?} after the leader was killed (ttl {TTL:?})");
    assert!(
        takeover <= TTL + Duration::from_secs(2),
        "takeover took {takeover:?}:\n{}",
        b.text()
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let emitted = emitter.finish().await;

    // Every keyed event: live at a, live at b, or reconciled by b over the
    // window since the last-live instant a kept in the bucket.
    let expected = keyed_ids(&emitted);
    assert!(expected.len() > 40, "{} keyed events", expected.len());
    wait_delivered(&crm, &expected, Duration::from_secs(60), &[&a.log, &b.log]).await;
    let text = b.text();
    assert!(
        text.contains("took over: reconciling since the last moment"),
        "{text}"
    );
    assert!(
        text.contains("bucket_last_live=20"),
        "the bucket held a's last-live instant:\n{text}"
    );
    // a died with its socket: never two consumers for longer than a renewal.
    let overlaps = pair.sim.overlaps();
    assert!(overlaps.iter().all(|o| *o <= RENEWAL), "{overlaps:?}");
    assert_eq!(pair.sim.evictions(), 0);
    b.stop().await;
}

/// Note `N{n}` of engagement `SB{n}` edited to `text` at `modified_ms`.
fn note_edit(n: u64, at_ms: u64, text: &str, modified_ms: u64) -> Value {
    let mut body = engagement(n, at_ms)
        .into_iter()
        .find(|body| body["event"] == "contact_center.engagement_note_added")
        .unwrap();
    let modified = jiff::Timestamp::from_millisecond(modified_ms as i64)
        .unwrap()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    body["payload"]["object"]["note"] = json!(text);
    body["payload"]["object"]["last_modified_time"] = json!(modified);
    body["event_ts"] = json!(modified_ms);
    body
}

/// What `sinks` received of note `id`: revision → the texts sent under it,
/// and the `webhook-id` of each revision.
fn note_revisions(
    sinks: &[&FakeSink],
    id: &str,
) -> std::collections::BTreeMap<u64, BTreeSet<(String, String)>> {
    let mut revisions = std::collections::BTreeMap::<u64, BTreeSet<(String, String)>>::new();
    for sink in sinks {
        for received in sink.accepted() {
            let record = received.record();
            if record["id"] == id {
                revisions
                    .entry(record["revision"].as_u64().unwrap())
                    .or_default()
                    .insert((
                        record["payload"]["object"]["note"]
                            .as_str()
                            .unwrap()
                            .to_owned(),
                        received.webhook_id.clone(),
                    ));
            }
        }
    }
    revisions
}

async fn wait_note(sink: &FakeSink, id: &str, revision: u64, text: &str, logs: &[&Path]) {
    let waited = tokio::time::timeout(Duration::from_secs(60), async {
        while !note_revisions(&[sink], id)
            .get(&revision)
            .is_some_and(|texts| texts.iter().any(|(t, _)| t == text))
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    if waited.is_err() {
        let logs: Vec<String> = logs
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect();
        panic!(
            "no revision {revision} {text:?} of {id}; got {:?}\n{}",
            note_revisions(&[sink], id),
            logs.join("\n-----\n")
        );
    }
}

/// DESIGN.md §3.7: a note edited before a takeover keeps, at the new leader,
/// the revision the old one gave each text, though Zoom's REST API lists only
/// the latest text and the new leader's journal never saw the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_note_edited_across_a_takeover_keeps_one_text_per_revision() {
    let pair = Pair::new().await;
    let (crm_a, crm_b) = (FakeSink::ok().await, FakeSink::ok().await);
    let (mut a, b) = pair.start(&crm_a, &crm_b).await;
    let at_ms = clock::now_ms();
    for body in engagement(7, at_ms) {
        assert!(pair.sim.emit(body));
    }
    let id = "engagement_note_added:SB7:N7";
    wait_note(&crm_a, id, 1, "called back", &[&a.log]).await;
    assert!(
        pair.sim
            .emit(note_edit(7, at_ms, "called back twice", at_ms))
    );
    wait_note(&crm_a, id, 2, "called back twice", &[&a.log]).await;

    // a dies; b reconciles the engagement from REST, which shows the note's
    // latest text only, and numbers it as a did.
    pair.kill_leader(&mut a, &b).await;
    wait_note(&crm_b, id, 2, "called back twice", &[&b.log]).await;
    // An edit b sees live goes above every revision a gave.
    assert!(pair.sim.emit(note_edit(
        7,
        at_ms,
        "resolved on the third call",
        at_ms + 60_000
    )));
    wait_note(&crm_b, id, 3, "resolved on the third call", &[&b.log]).await;

    let revisions = note_revisions(&[&crm_a, &crm_b], id);
    let texts: Vec<(u64, Vec<&str>)> = revisions
        .iter()
        .map(|(revision, sent)| (*revision, sent.iter().map(|(t, _)| t.as_str()).collect()))
        .collect();
    assert_eq!(
        texts,
        [
            (1, vec!["called back"]),
            (2, vec!["called back twice"]),
            (3, vec!["resolved on the third call"]),
        ],
        "one text per revision across both relays:\n{}",
        b.text()
    );
    // The same fact, the same webhook-id from either relay.
    assert!(revisions.values().all(|sent| {
        sent.iter()
            .map(|(_, webhook_id)| webhook_id)
            .collect::<BTreeSet<_>>()
            .len()
            == 1
    }));
    let b_text = b.stop().await;
    assert!(!b_text.contains("note ledger could not number"), "{b_text}");
}

/// The lease store a relay of the simulated account uses, on `nats`.
async fn lease_store(nats: &NatsServer, bucket: &str) -> Arc<zcc_relay::lease::nats::NatsLease> {
    let settings = zcc_relay::config::StandbySettings {
        connection: zcc_relay::sink::nats::NatsConnection {
            servers: vec![nats.url().parse().unwrap()],
            auth: zcc_relay::sink::nats::NatsAuth::None,
            tls_ca_file: None,
            tls_client: None,
        },
        bucket: bucket.into(),
        ttl: TTL,
    };
    let tls = zcc_relay::tls::client_config().unwrap();
    let key = zcc_relay::lease::key_for("sim-account", "sim-subscription");
    let store = zcc_relay::lease::nats::NatsLease::connect(&settings, key, &tls)
        .await
        .unwrap();
    Arc::new(store)
}

/// `zcc-relay reconcile` on a relay of a pair numbers a note version as the
/// pair's ledger says, not from its own journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconcile_command_numbers_notes_from_the_pairs_ledger() {
    let pair = Pair::new().await;
    let crm = FakeSink::ok().await;
    let config = pair.config("a", &crm);
    let at_ms = clock::now_ms();
    let first = engagement(9, at_ms);
    let edited = note_edit(9, at_ms, "called back twice", at_ms);
    for body in first.iter().chain([&edited]) {
        pair.sim.emit_without_socket(body.clone());
    }
    // The other relay forwarded both texts: numbered 1 and 2 in the ledger.
    let parse = |body: &Value| {
        zcc_relay::zoom::event::parse_body(
            &body.to_string(),
            zcc_relay::record::Source::Websocket,
            "2026-01-01T00:00:00.000Z".into(),
            0,
        )
        .unwrap()
    };
    let note = first
        .iter()
        .find(|body| body["event"] == "contact_center.engagement_note_added")
        .map(parse)
        .unwrap();
    let ledger = zcc_relay::lease::ledger::Ledger::new(
        lease_store(&pair.nats, zcc_relay::config::DEFAULT_LEASE_BUCKET).await,
        TTL,
        zcc_relay::telemetry::stats::Stats::default(),
    );
    assert_eq!(
        ledger.assign(&note.id, note.version.unwrap(), 0).await,
        Ok(1)
    );
    let latest = parse(&edited).version.unwrap();
    assert_eq!(ledger.assign(&note.id, latest, 1).await, Ok(2));

    let rfc3339 = |ms: u64| {
        jiff::Timestamp::from_millisecond(ms as i64)
            .unwrap()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    let ran = zcc_relay([
        "reconcile".to_owned(),
        "--from".to_owned(),
        rfc3339(at_ms - 3_600_000),
        "--to".to_owned(),
        rfc3339(at_ms + 60_000),
    ])
    .config(&config)
    .output()
    .await;
    assert_eq!(ran.code, Some(0), "{}\n{}", ran.stdout, ran.stderr);
    assert!(
        !ran.stderr.contains("note ledger could not number"),
        "{}",
        ran.stderr
    );

    let journal = zcc_relay::journal::Journal::open(
        &pair.dir.path().join("a").join("journal"),
        vec![zcc_relay::journal::SinkRoute {
            name: "crm".into(),
            filter: zcc_relay::route::EventFilter::new(Vec::new()),
        }],
    )
    .unwrap();
    let (pending, _) = journal.read_outbox("crm", 0, 100).await.unwrap();
    let notes: Vec<(u64, String)> = pending
        .iter()
        .map(|p| serde_json::from_slice::<Value>(&p.bytes).unwrap())
        .filter(|record| record["id"] == json!(note.id))
        .map(|record| {
            (
                record["revision"].as_u64().unwrap(),
                record["payload"]["object"]["note"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(notes, [(2, "called back twice".to_owned())]);
    journal.close().await;
}

/// The ledger on a real nats-server 2.9: two relays numbering versions of
/// one note at once (`create` of a new entry and `update` of the last
/// revision each losing races) never give two versions one number, and give
/// a version the same number at both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_numbering_one_note_at_once_in_nats_never_share_a_revision() {
    use zcc_relay::lease::ledger::Ledger;

    let dir = temp_dir();
    let nats = NatsServer::start(&dir.path().join("nats"))
        .unwrap_or_else(|e| panic!("nats-server ({:?}): {e}", zcc_sim::sink::nats::version()));
    let mut stores = Vec::new();
    for _ in 0..2 {
        stores.push(lease_store(&nats, "ledger_race").await);
    }
    let stats = zcc_relay::telemetry::stats::Stats::default();
    // The store's compare-and-swap, as the server answers it: a second
    // create and an update of a revision that is gone both lose.
    {
        use zcc_relay::lease::StoreError;
        use zcc_relay::lease::ledger::NoteStore;
        let (one, other) = (&stores[0], &stores[1]);
        let first = one.write("k", b"1".to_vec(), None).await.unwrap();
        assert_eq!(
            other.write("k", b"2".to_vec(), None).await,
            Err(StoreError::Lost)
        );
        let second = other.write("k", b"2".to_vec(), Some(first)).await.unwrap();
        assert_eq!(
            one.write("k", b"3".to_vec(), Some(first)).await,
            Err(StoreError::Lost)
        );
        assert_eq!(one.read("k").await.unwrap(), Some((b"2".to_vec(), second)));
        assert_eq!(one.read("absent").await.unwrap(), None);
    }
    let relays: Vec<Ledger> = stores
        .into_iter()
        .map(|store| Ledger::new(store, TTL, stats.clone()))
        .collect();
    // Each relay numbers the twelve versions one after another, as its
    // socket and reconciler would; the two run at once, in opposite orders.
    let tasks: Vec<_> = relays
        .iter()
        .enumerate()
        .map(|(at, ledger)| {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                let mut order: Vec<u8> = (0..12).collect();
                if at == 1 {
                    order.reverse();
                }
                let mut numbered = Vec::new();
                for version in order {
                    let assigned = ledger
                        .assign("engagement_note_added:E:N", [version; 32], 0)
                        .await;
                    numbered.push((version, assigned));
                }
                numbered
            })
        })
        .collect();
    let mut numbers = std::collections::BTreeMap::<u8, u32>::new();
    for task in tasks {
        for (version, assigned) in task.await.unwrap() {
            let revision = assigned.unwrap_or_else(|e| panic!("version {version}: {e}"));
            assert_eq!(
                *numbers.entry(version).or_insert(revision),
                revision,
                "version {version} numbered twice"
            );
        }
    }
    let mut revisions: Vec<u32> = numbers.into_values().collect();
    revisions.sort_unstable();
    assert_eq!(revisions, (1..=12).collect::<Vec<u32>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_steps_down_without_reconnecting() {
    let pair = Pair::new().await;
    let crm = FakeSink::ok().await;
    // a's sink refuses until a has stepped down: its journal holds what it read.
    let crm_a = FakeSink::ok().await;
    crm_a.set_down(true);
    let (a, b) = pair.start(&crm_a, &crm).await;
    let mut held = Vec::new();
    for n in 0..5 {
        for body in engagement(1000 + n, clock::now_ms()) {
            assert!(pair.sim.emit(body.clone()));
            held.push(body);
        }
    }
    let n_bodies = held.len();
    let held = keyed_ids(&held);
    // Persisted by a (its debug line is its word).
    let deadline = Instant::now() + Duration::from_secs(20);
    while persisted_ids(&a.text()).len() < n_bodies {
        assert!(Instant::now() < deadline, "{}", a.text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let handshakes = pair.sim.handshakes_completed();
    a.signal("-STOP");
    tokio::time::sleep(TTL + Duration::from_secs(3)).await;
    assert!(
        pair.sim.handshakes_completed() > handshakes,
        "b took over while a was frozen:\n{}",
        b.text()
    );
    let evictions = pair.sim.evictions();
    assert_eq!(evictions, 1, "b's connection evicted a's frozen socket");
    let handshakes = pair.sim.handshakes_completed();
    a.signal("-CONT");
    a.wait_log("stepped down", Duration::from_secs(10)).await;
    // Several ttls later: a never reconnected, the subscription never flapped.
    tokio::time::sleep(TTL * 3).await;
    assert_eq!(pair.sim.handshakes_completed(), handshakes, "{}", a.text());
    assert_eq!(pair.sim.evictions(), evictions, "{}", a.text());
    assert!(pair.sim.is_live());
    let text = a.text();
    assert!(
        !text.contains("ALARM"),
        "losing the lease is no alarm:\n{text}"
    );
    // What a's journal held is still delivered, by a, now the standby.
    crm_a.set_down(false);
    wait_delivered(&crm_a, &held, Duration::from_secs(60), &[&a.log]).await;
    let a_text = a.stop().await;
    assert_eq!(
        a_text.matches("connected to Zoom WebSocket").count(),
        1,
        "a connected once, before the freeze:\n{a_text}"
    );
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_resumes_by_itself_after_the_lease_server_restarts() {
    let mut pair = Pair::new().await;
    let crm = FakeSink::ok().await;
    let (a, b) = pair.start(&crm, &crm).await;

    pair.nats.stop();
    // Longer than 2/3 of ttl: the leader steps down, its socket closes.
    a.wait_log("stepped down", Duration::from_secs(10)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while pair.sim.is_live() {
        assert!(
            Instant::now() < deadline,
            "a's socket stayed open without the lease"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    pair.nats.restart().unwrap();
    let resumed = tokio::time::timeout(Duration::from_secs(30), pair.sim.wait_live()).await;
    assert!(resumed.is_ok(), "a:\n{}\n-----\nb:\n{}", a.text(), b.text());

    // Events flow again, through whichever relay leads now.
    let mut bodies = Vec::new();
    for n in 0..3 {
        for body in engagement(2000 + n, clock::now_ms()) {
            pair.sim.emit(body.clone());
            bodies.push(body);
        }
    }
    wait_delivered(
        &crm,
        &keyed_ids(&bodies),
        Duration::from_secs(60),
        &[&a.log, &b.log],
    )
    .await;
    tokio::time::sleep(TTL * 2).await;
    assert_eq!(pair.sim.evictions(), 0, "never two consumers");
    assert!(pair.sim.overlaps().is_empty(), "{:?}", pair.sim.overlaps());
    let leaders = [&a, &b]
        .iter()
        .filter(|relay| {
            let text = relay.text();
            text.rfind("took the lease") > text.rfind("stepped down")
        })
        .count();
    assert_eq!(leaders, 1, "one leader:\n{}\n-----\n{}", a.text(), b.text());
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eviction_while_holding_the_lease_is_an_alarm_and_retried_at_reconnect_max() {
    let pair = Pair::new().await;
    let crm = FakeSink::ok().await;
    let a = pair.spawn("a", &crm);
    a.wait_log("took the lease", Duration::from_secs(30)).await;
    tokio::time::timeout(Duration::from_secs(30), pair.sim.wait_live())
        .await
        .unwrap();
    let handshakes = pair.sim.handshakes_completed();
    // Another consumer, outside the pair, takes the subscription.
    let evicted = Instant::now();
    pair.sim.evict();
    a.wait_log("ALARM", Duration::from_secs(10)).await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while pair.sim.handshakes_completed() <= handshakes {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("a never reconnected:\n{}", a.text()));
    // `reconnect_max` is 500ms in the test config.
    assert!(
        evicted.elapsed() >= Duration::from_millis(500),
        "{:?}",
        evicted.elapsed()
    );
    let text = a.stop().await;
    assert_eq!(text.matches("ALARM").count(), 1, "{text}");
}
