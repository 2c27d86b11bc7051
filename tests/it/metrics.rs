//! The Prometheus endpoint: valid exposition text with every promised series
//! after real traffic (simulator → daemon → fake sinks), and the refusal of a
//! non-loopback `metrics.listen` unless explicitly allowed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use zcc_relay::clock;
use zcc_sim::{MediaFault, SimConfig, Simulator};

use crate::support::*;

/// One sample line.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed scrape: families by name with their TYPE, and the samples.
struct Exposition {
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

const METRIC_NAME: fn(char) -> bool = |c| c.is_ascii_alphanumeric() || c == '_' || c == ':';

/// Parses the text strictly: every line is `# HELP`, `# TYPE`, `# UNIT`,
/// `# EOF` or `name{labels} value`; every family has both HELP and TYPE
/// before its samples; every sample belongs to a declared family.
fn parse_exposition(text: &str) -> Exposition {
    let mut helps = BTreeSet::new();
    let mut types = BTreeMap::new();
    let mut samples = Vec::new();
    assert!(text.ends_with("# EOF\n"), "no # EOF at the end:\n{text}");
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("HELP"), Some(name), Some(help)) if !help.is_empty() => {
                    helps.insert(name.to_string());
                }
                (Some("TYPE"), Some(name), Some(kind)) => {
                    assert!(
                        ["counter", "gauge", "histogram"].contains(&kind),
                        "unexpected type: {line}"
                    );
                    types.insert(name.to_string(), kind.to_string());
                }
                (Some("UNIT"), Some(name), Some(unit)) => {
                    assert!(name.ends_with(&format!("_{unit}")), "{line}");
                }
                (Some("EOF"), None, None) => {}
                _ => panic!("malformed comment line: {line:?}"),
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value is not a number: {line:?}"));
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => {
                let inner = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels: {line:?}"));
                let mut labels = BTreeMap::new();
                for pair in inner.split("\",").filter(|p| !p.is_empty()) {
                    let (key, value) = pair
                        .split_once("=\"")
                        .unwrap_or_else(|| panic!("bad label {pair:?} in {line:?}"));
                    assert!(key.chars().all(METRIC_NAME), "label name {key:?}");
                    labels.insert(key.to_string(), value.trim_end_matches('"').to_string());
                }
                (name, labels)
            }
        };
        assert!(
            !name.is_empty() && name.chars().all(METRIC_NAME),
            "bad metric name in {line:?}"
        );
        let family = family_of(name, &types)
            .unwrap_or_else(|| panic!("sample {name} belongs to no declared TYPE"));
        assert!(helps.contains(&family), "family {family} has no HELP");
        samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
        });
    }
    Exposition { types, samples }
}

fn family_of(sample: &str, types: &BTreeMap<String, String>) -> Option<String> {
    if types.contains_key(sample) {
        return Some(sample.to_string());
    }
    ["_total", "_created", "_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|suffix| sample.strip_suffix(suffix))
        .find(|family| types.contains_key(*family))
        .map(str::to_string)
}

impl Exposition {
    fn kind(&self, family: &str) -> &str {
        self.types
            .get(family)
            .unwrap_or_else(|| panic!("no family {family}"))
    }

    fn values(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
            .collect()
    }

    /// The one sample with this name and these labels.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.values(name, labels).as_slice() {
            [value] => *value,
            other => panic!("{name}{labels:?}: expected one sample, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_serves_every_series_after_real_traffic() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    // Zoom has a recording the socket will never carry: only the first
    // start's sweep can find it.
    sim.emit_without_socket(recording_event("only-rest", clock::now_ms()));
    let crm = FakeSink::ok().await;
    let refuses = FakeSink::always(400).await;
    let dir = temp_dir();
    let mut config = TestConfig::new(&sim, &dir.path().join("journal"))
        .sink(SinkTable::http("crm", &crm.url()))
        .sink(SinkTable::http("refuses", &refuses.url()));
    config.metrics = Some(MetricsTable::any_port());
    let daemon = Daemon::start(config.settings());
    sim.wait_live().await;
    // The first start's sweep must be over before the live events exist, or
    // it could list them too and the socket's copies become duplicates.
    tokio::time::timeout(
        Duration::from_secs(30),
        daemon.stats.wait_until(|s| s.reconcile_runs >= 1),
    )
    .await
    .expect("the first start's sweep ran");
    let now = clock::now_ms();
    for id in ["live-1", "live-2"] {
        assert!(sim.emit(recording_event(id, now)));
    }
    assert!(sim.emit(recording_event("live-1", now)), "a re-send");
    assert!(sim.send_raw_text("not json".into()));
    daemon.wait_handled(3).await;
    daemon.wait_delivered("crm", 3).await;
    daemon.wait_dead_lettered("refuses", 3).await;
    tokio::time::timeout(
        Duration::from_secs(30),
        daemon
            .stats
            .wait_until(|s| s.last_heartbeat_reply_ms.is_some() && s.bad_frames >= 1),
    )
    .await
    .expect("a heartbeat reply and a refused frame");

    let addr = daemon.metrics_addr().await;
    let (status, content_type, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let scrape = parse_exposition(&body);

    // The socket.
    assert_eq!(scrape.kind("zcc_relay_websocket_connected"), "gauge");
    assert_eq!(scrape.value("zcc_relay_websocket_connected", &[]), 1.0);
    assert_eq!(
        scrape.value("zcc_relay_websocket_state", &[("state", "live")]),
        1.0
    );
    assert_eq!(
        scrape
            .values("zcc_relay_websocket_state", &[])
            .iter()
            .sum::<f64>(),
        1.0,
        "exactly one state is current"
    );
    assert_eq!(scrape.kind("zcc_relay_websocket_reconnects"), "counter");
    assert_eq!(scrape.value("zcc_relay_websocket_connects_total", &[]), 1.0);
    assert_eq!(
        scrape.value("zcc_relay_websocket_reconnects_total", &[]),
        0.0
    );
    assert_eq!(
        scrape.value("zcc_relay_websocket_frames_refused_total", &[]),
        1.0
    );
    let event_age = scrape.value("zcc_relay_websocket_last_event_age_seconds", &[]);
    assert!((0.0..30.0).contains(&event_age), "{event_age}");
    let heartbeat_age = scrape.value("zcc_relay_websocket_last_heartbeat_reply_age_seconds", &[]);
    assert!((0.0..5.0).contains(&heartbeat_age), "{heartbeat_age}");
    assert!(scrape.value("zcc_relay_token_refreshes_total", &[]) >= 1.0);

    // Events by type.
    let recording = [("event", "contact_center.recording_completed")];
    assert_eq!(
        scrape.value("zcc_relay_events_received_total", &recording),
        3.0
    );
    assert_eq!(
        scrape.value("zcc_relay_events_persisted_total", &recording),
        2.0
    );
    assert_eq!(
        scrape.value("zcc_relay_events_duplicates_total", &recording),
        1.0
    );

    // Reconciliation: the sweep ran and found the REST-only recording.
    assert!(scrape.value("zcc_relay_reconcile_runs_total", &[("outcome", "ok")]) >= 1.0);
    assert_eq!(
        scrape.value("zcc_relay_reconcile_runs_total", &[("outcome", "failed")]),
        0.0
    );
    assert_eq!(
        scrape.value("zcc_relay_reconcile_new_records_total", &recording),
        1.0
    );

    // Sinks: the healthy one delivered all three records; the other refused
    // them into its dead-letter.
    let crm_label = [("sink", "crm")];
    let refuses_label = [("sink", "refuses")];
    assert_eq!(
        scrape.value("zcc_relay_sink_pending_records", &crm_label),
        0.0
    );
    assert_eq!(
        scrape.value("zcc_relay_sink_retrying_records", &crm_label),
        0.0
    );
    assert_eq!(scrape.value("zcc_relay_sink_dead_records", &crm_label), 0.0);
    assert_eq!(
        scrape.value("zcc_relay_sink_dead_records", &refuses_label),
        3.0
    );
    assert_eq!(scrape.value("zcc_relay_sink_failing", &crm_label), 0.0);
    assert_eq!(
        scrape.value("zcc_relay_sink_oldest_pending_age_seconds", &crm_label),
        0.0
    );
    assert_eq!(
        scrape.value(
            "zcc_relay_sink_delivered_total",
            &[
                ("sink", "crm"),
                ("event", "contact_center.recording_completed")
            ]
        ),
        3.0
    );
    assert_eq!(
        scrape.value("zcc_relay_sink_dead_lettered_total", &refuses_label),
        3.0
    );
    assert_eq!(
        scrape.kind("zcc_relay_sink_delivery_latency_seconds"),
        "histogram"
    );
    assert_eq!(
        scrape.value("zcc_relay_sink_delivery_latency_seconds_count", &crm_label),
        3.0
    );
    assert_eq!(
        scrape.value(
            "zcc_relay_sink_delivery_latency_seconds_bucket",
            &[("sink", "crm"), ("le", "+Inf")]
        ),
        3.0
    );
    let latency_sum = scrape.value("zcc_relay_sink_delivery_latency_seconds_sum", &crm_label);
    assert!((0.0..90.0).contains(&latency_sum), "{latency_sum}");

    // The journal.
    let size = scrape.value("zcc_relay_journal_file_size_bytes", &[]);
    let on_disk = std::fs::metadata(dir.path().join("journal/journal.redb"))
        .unwrap()
        .len() as f64;
    assert!(
        size > 0.0 && (size - on_disk).abs() <= 1024.0 * 1024.0,
        "{size} vs {on_disk} on disk"
    );
    // Delivered records are gone; dead-lettered ones stay for redrive.
    assert_eq!(scrape.value("zcc_relay_journal_records", &[]), 3.0);

    // `/` points at `/metrics`; anything else is a 404.
    let (status, _, body) = http_get(addr, "/").await;
    assert_eq!(status, 200);
    assert!(body.contains("/metrics"), "{body}");
    assert_eq!(http_get(addr, "/nothing").await.0, 404);

    daemon.stop().await.unwrap();
    // Stopped means stopped: the port is free again.
    std::net::TcpListener::bind(addr).expect("the endpoint released its port");
    sim.shutdown().await;
}

/// Fifty scrapes at once (they share one cached journal read) all get a
/// complete, valid answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrape_storm_gets_complete_answers() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let crm = FakeSink::ok().await;
    let dir = temp_dir();
    let mut config =
        TestConfig::new(&sim, &dir.path().join("journal")).sink(SinkTable::http("crm", &crm.url()));
    config.metrics = Some(MetricsTable::any_port());
    let daemon = Daemon::start(config.settings());
    sim.wait_live().await;
    let addr = daemon.metrics_addr().await;
    let scrapes: Vec<_> = (0..50)
        .map(|_| tokio::spawn(async move { http_get(addr, "/metrics").await }))
        .collect();
    for scrape in scrapes {
        let (status, _, body) = scrape.await.unwrap();
        assert_eq!(status, 200);
        let parsed = parse_exposition(&body);
        assert_eq!(
            parsed.value("zcc_relay_sink_pending_records", &[("sink", "crm")]),
            0.0
        );
    }
    daemon.stop().await.unwrap();
    sim.shutdown().await;
}

async fn validate(config: &std::path::Path) -> Ran {
    zcc_relay(["validate"]).config(config).output().await
}

#[tokio::test]
async fn refuses_a_non_loopback_listen_address_unless_allowed() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = temp_dir();
    let mut base = TestConfig::new(&sim, &dir.path().join("journal"))
        .sink(SinkTable::file("archive", &dir.path().join("events.jsonl")));
    let config = dir.path().join("config.toml");

    base.metrics = Some(MetricsTable::at("0.0.0.0:9464"));
    base.write(&config);
    let output = validate(&config).await;
    assert_eq!(output.code, Some(78));
    let stderr = &output.stderr;
    assert!(
        stderr.contains(
            "metrics.listen: 0.0.0.0:9464 is not a loopback address; the endpoint has no \
             authentication"
        ) && stderr.contains("metrics.allow_non_loopback = true"),
        "{stderr}"
    );
    // `run` refuses the same file before binding anything or opening the journal.
    let log = dir.path().join("run.log");
    let child = spawn_run(&config, "info", &log);
    let output = wait_output(child).await;
    assert_eq!(output.status.code(), Some(78));
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("metrics.listen")
    );
    assert!(!dir.path().join("journal").exists());

    base.metrics = Some(MetricsTable {
        allow_non_loopback: Some(true),
        ..MetricsTable::at("0.0.0.0:9464")
    });
    base.write(&config);
    let output = validate(&config).await;
    assert_eq!(output.code, Some(0), "{}", output.stderr);
    let stdout = &output.stdout;
    assert!(
        stdout.contains("warning: metrics.listen: 0.0.0.0:9464 is not a loopback address"),
        "{stdout}"
    );

    // An IPv6 loopback address is fine without it.
    base.metrics = Some(MetricsTable::at("[::1]:9464"));
    base.write(&config);
    assert_eq!(validate(&config).await.code, Some(0));
    sim.shutdown().await;
}

/// A port already taken is a startup failure (exit 1) naming the key.
#[tokio::test]
async fn a_taken_port_stops_the_daemon_at_start() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = temp_dir();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = dir.path().join("config.toml");
    let mut text = TestConfig::new(&sim, &dir.path().join("journal"))
        .sink(SinkTable::file("archive", &dir.path().join("events.jsonl")));
    text.metrics = Some(MetricsTable::at(format!("127.0.0.1:{port}")));
    text.write(&config);
    let log = dir.path().join("run.log");
    let output = wait_output(spawn_run(&config, "info", &log)).await;
    assert_eq!(output.status.code(), Some(1));
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains(&format!(
            "cannot listen for metrics on 127.0.0.1:{port} (metrics.listen)"
        )),
        "{log}"
    );
    drop(taken);
    sim.shutdown().await;
}

/// A recording whose file Zoom answers 503 for waits in the media stage for
/// its durable retry: the media gauges show it, and the sink has nothing yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_backlog_is_reported() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    sim.media_fault(MediaFault::Status(503), 1);
    let crm = FakeSink::ok().await;
    let dir = temp_dir();
    let mut config =
        TestConfig::new(&sim, &dir.path().join("journal")).sink(SinkTable::http("crm", &crm.url()));
    config.metrics = Some(MetricsTable::any_port());
    config.media = Some(MediaTable::enabled());
    let daemon = Daemon::start(config.settings());
    sim.wait_live().await;
    daemon.wait_first_sweep().await;
    assert!(sim.emit(recording_event("waits-for-media", clock::now_ms())));
    daemon.wait_handled(1).await;
    // Wait (at most 10 s) until the stage made its first attempt and
    // scheduled the next one (the gauges are cached for 2 s).
    let addr = daemon.metrics_addr().await;
    let mut scrape = None;
    for _ in 0..100 {
        let (status, _, body) = http_get(addr, "/metrics").await;
        assert_eq!(status, 200);
        let parsed = parse_exposition(&body);
        if parsed.value("zcc_relay_media_retrying_records", &[]) == 1.0 {
            scrape = Some(parsed);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let scrape = scrape.expect("the record waits for its media retry");
    assert_eq!(sim.media_downloads(), 1, "one attempt, answered 503");
    assert_eq!(scrape.kind("zcc_relay_media_pending_records"), "gauge");
    assert_eq!(scrape.value("zcc_relay_media_pending_records", &[]), 1.0);
    let age = scrape.value("zcc_relay_media_oldest_pending_age_seconds", &[]);
    assert!(age > 0.0 && age < 60.0, "{age}");
    assert_eq!(
        scrape.value("zcc_relay_sink_pending_records", &[("sink", "crm")]),
        0.0,
        "the record reaches the sink only with its media"
    );
    assert!(crm.accepted().is_empty());
    // `status` shows the same backlog (told where the endpoint took its port).
    config.metrics = Some(MetricsTable::at(addr));
    let config = config.write(&dir.path().join("config.toml"));
    let output = zcc_relay(["status"]).config(&config).output().await;
    let stdout = &output.stdout;
    assert!(
        stdout.contains("media:      1 records waiting for their files (1 retrying later"),
        "{stdout}"
    );
    daemon.stop().await.unwrap();
    sim.shutdown().await;
}
