//! A sink kind defined only here, `CountingSink`, plugs in through the registry:
//! its table is validated by the daemon's config rules (common keys, key paths,
//! secrets, keys of another kind), `check` reaches it, it is built and proved
//! ready, a real `SinkWorker` delivers records from a real `Journal` to it,
//! and a reload sorts its keys into live and restart. What this file needed is what
//! ARCHITECTURE.md's "Adding a sink kind" lists.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use zcc_relay::config::{FakeEnvironment, Secret, Secrets, SinkCheck, SinkSettings, parse_sink};
use zcc_relay::deliver::{Envelope, SinkWorker};
use zcc_relay::failure::Failure;
use zcc_relay::journal::{Journal, SinkRoute};
use zcc_relay::record::{RecordHeader, Source};
use zcc_relay::route::EventFilter;
use zcc_relay::service::Health;
use zcc_relay::sink::file::FileSink;
use zcc_relay::sink::{BuildContext, Finding, Kind, Registry, Reload, Running};
use zcc_relay::telemetry::stats::Stats;
use zcc_relay::zoom::event::parse_body;

use crate::support::temp_dir;

zcc_relay::sink_kinds! {
    /// The daemon's file kind plus the test's own.
    enum TestKind;
    enum TestSink;
    Counting => CountingSink,
    File => FileSink,
}

/// The kind's keys as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct CountingSinkConfig {
    label: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct CountingSinkSettings {
    label: String,
    token: Option<Secret>,
}

/// Remembers every record it is handed, with the token in use at the time.
struct CountingSink {
    label: String,
    token: Mutex<Option<Secret>>,
    received: Mutex<Vec<(String, Option<String>)>>,
}

impl CountingSink {
    fn received(&self) -> Vec<(String, Option<String>)> {
        self.received.lock().unwrap().clone()
    }
}

impl Kind for CountingSink {
    const TYPE: &'static str = "counting";
    const DEFAULT_EVENTS: &'static [&'static str] = &["contact_center.engagement_note_added"];
    type Config = CountingSinkConfig;
    type Settings = CountingSinkSettings;

    fn validate(
        config: CountingSinkConfig,
        check: &mut SinkCheck<'_, '_>,
    ) -> Option<CountingSinkSettings> {
        let label = match config.label {
            Some(label) if label.is_empty() => {
                check.error("label", "must not be empty");
                None
            }
            Some(label) => Some(label),
            None => check.missing("label"),
        };
        let token = check.secret("token", config.token, config.token_file);
        Some(CountingSinkSettings {
            label: label?,
            token: token?,
        })
    }

    fn reload(
        running: &CountingSinkSettings,
        loaded: &CountingSinkSettings,
    ) -> Reload<CountingSinkSettings> {
        let CountingSinkSettings { label, token } = loaded;
        let mut reload = Reload::new(running);
        reload.restart("label", &running.label, label);
        reload.live("token", token, |settings| &mut settings.token);
        reload
    }

    async fn build(
        settings: &CountingSinkSettings,
        _: &BuildContext<'_>,
    ) -> anyhow::Result<CountingSink> {
        Ok(CountingSink {
            label: settings.label.clone(),
            token: Mutex::new(settings.token.clone()),
            received: Mutex::new(Vec::new()),
        })
    }

    async fn ready(&self) -> Result<(), Failure> {
        if self.label == "broken" {
            return Err(Failure::setup("the label says so"));
        }
        Ok(())
    }

    /// Proves the token is set; writes nothing.
    async fn check(settings: &CountingSinkSettings, _: &BuildContext<'_>) -> Vec<Finding> {
        match &settings.token {
            Some(_) => vec![Finding::proved(format!(
                "label {} has a token",
                settings.label
            ))],
            None => vec![Finding::problem(
                "no token",
                "set `token` or ZCC_RELAY_SINK_<NAME>_TOKEN",
            )],
        }
    }

    fn apply(&self, settings: &CountingSinkSettings) -> anyhow::Result<()> {
        *self.token.lock().unwrap() = settings.token.clone();
        Ok(())
    }

    async fn deliver(&self, envelope: &Envelope) -> Result<(), Failure> {
        let record: serde_json::Value = serde_json::from_slice(&envelope.bytes)
            .map_err(|e| Failure::permanent(e.to_string()))?;
        let header: RecordHeader = serde_json::from_slice(&envelope.bytes)
            .map_err(|e| Failure::permanent(e.to_string()))?;
        if record["id"].as_str() != Some(&*header.id) || header.webhook_id() != envelope.webhook_id
        {
            return Err(Failure::permanent("the envelope is not this record's"));
        }
        let token = self
            .token
            .lock()
            .unwrap()
            .as_ref()
            .map(|t| t.expose().to_owned());
        self.received
            .lock()
            .unwrap()
            .push((header.webhook_id(), token));
        Ok(())
    }
}

/// Every problem of one sink table, as `key: message` lines.
fn problems(text: &str, env: &FakeEnvironment) -> Vec<String> {
    match parse_sink::<TestKind>(text, env, Secrets::Read) {
        Ok(settings) => panic!("validated: {settings:?}"),
        Err(error) => error
            .problems
            .iter()
            .map(|problem| problem.to_string())
            .chain(error.file.iter().map(|file| format!("file: {file}")))
            .collect(),
    }
}

#[test]
fn a_test_kind_is_validated_by_the_daemons_rules() {
    let env = FakeEnvironment::new().with_var("ZCC_RELAY_SINK_AUDIT_TOKEN", "token-1");
    let (settings, warnings) = parse_sink::<TestKind>(
        "name = \"audit\"\ntype = \"counting\"\nlabel = \"a\"\nmax_in_flight = 2",
        &env,
        Secrets::Read,
    )
    .unwrap();
    assert_eq!(warnings, []);
    assert_eq!(settings.max_in_flight, 2);
    assert_eq!(settings.events, CountingSink::DEFAULT_EVENTS);
    let TestKind::Counting(counting) = &settings.kind else {
        panic!("not a counting sink: {settings:?}");
    };
    assert_eq!(counting.label, "a");
    assert_eq!(counting.token.as_ref().map(Secret::expose), Some("token-1"));
    assert!(!format!("{settings:?}").contains("token-1"));

    let env = FakeEnvironment::new();
    assert_eq!(
        problems(
            "name = \"audit\"\ntype = \"counting\"\npath = \"/x\"\ntoken = \"\"\n\
             retry_schedule = []",
            &env
        ),
        [
            "sinks[0].path: not used by type \"counting\"",
            "sinks[0].label: missing; required for type \"counting\"",
            "sinks[0].token: must not be empty",
            "sinks[0].retry_schedule: must list at least one delay",
        ]
    );
    assert_eq!(
        problems("name = \"audit\"\ntype = \"counting\"\nlabel = 5", &env),
        ["sinks[0].label: invalid type: integer `5`, expected a string"]
    );
    assert_eq!(
        problems("name = \"audit\"\ntype = \"http\"", &env),
        ["sinks[0].type: unknown sink type \"http\"; allowed: \"counting\", \"file\""]
    );
    let unknown = problems("name = \"audit\"\ntype = \"counting\"\ncolour = 1", &env);
    assert!(
        unknown.len() == 1 && unknown[0].contains("unknown field `colour`"),
        "{unknown:?}"
    );
}

#[test]
fn a_test_kind_sorts_its_reload() {
    let running = TestKind::Counting(CountingSinkSettings {
        label: "a".into(),
        token: Some(Secret::new("t1".into())),
    });
    let loaded = TestKind::Counting(CountingSinkSettings {
        label: "b".into(),
        token: Some(Secret::new("t2".into())),
    });
    let reload = TestKind::reload(&running, &loaded).unwrap();
    assert_eq!(reload.live, ["token"]);
    assert_eq!(reload.restart, ["label"]);
    assert_eq!(
        reload.applied,
        TestKind::Counting(CountingSinkSettings {
            label: "a".into(),
            token: Some(Secret::new("t2".into())),
        })
    );
    let file = TestKind::File(zcc_relay::sink::file::FileSinkSettings { path: "/x".into() });
    assert_eq!(TestKind::reload(&running, &file), None, "a changed type");
}

#[tokio::test(start_paused = true)]
async fn a_test_kind_receives_records_through_the_real_worker() {
    let dir = temp_dir();
    let env = FakeEnvironment::new().with_var("ZCC_RELAY_SINK_AUDIT_TOKEN", "token-1");
    let (settings, _): (SinkSettings<TestKind>, _) = parse_sink(
        "name = \"audit\"\ntype = \"counting\"\nlabel = \"a\"",
        &env,
        Secrets::Read,
    )
    .unwrap();

    let tls = zcc_relay::tls::client_config().unwrap();
    let health = Health::default();
    let context = BuildContext {
        name: &settings.name,
        timeout: settings.timeout,
        tls: &tls,
        health: &health,
        journal: None,
    };
    assert_eq!(
        settings.kind.check(&context).await,
        [Finding::proved("label a has a token")],
        "check goes through the registry to the kind"
    );
    let sink = Arc::new(settings.kind.build(&context).await.unwrap());
    sink.ready().await.unwrap();

    let journal = Journal::open(
        &dir.path().join("journal"),
        vec![SinkRoute {
            name: settings.name.clone(),
            filter: EventFilter::new(settings.events.clone()),
        }],
    )
    .unwrap();
    let mut ids = Vec::new();
    for body in [
        note("E1", "n1"),
        r#"{"event":"contact_center.engagement_disposition_added","event_ts":2,"payload":{"account_id":"a","object":{"engagement_id":"E1","disposition_id":"d1"}}}"#.to_owned(),
        note("E2", "n2"),
    ] {
        let record = parse_body(&body, Source::Websocket, "2026-11-26T10:00:00.000Z".into(), 0)
            .unwrap();
        ids.push(record.id.clone());
        journal.append(record).await.unwrap();
    }

    let stats = Stats::default();
    let worker = SinkWorker {
        settings: settings.clone(),
        sink: sink.clone(),
        journal: journal.clone(),
        stats: stats.clone(),
        health: health.clone(),
    };
    let (stop, abort) = (CancellationToken::new(), CancellationToken::new());
    let task = tokio::spawn(worker.run(stop.clone(), abort.clone()));
    let waited = tokio::time::timeout(
        Duration::from_secs(60),
        stats.wait_until(|s| s.delivered_to("audit") >= 2),
    )
    .await;
    assert!(waited.is_ok(), "the counting sink was not delivered to");

    // A reload's live key reaches the running sink through the registry.
    let reloaded = TestKind::Counting(CountingSinkSettings {
        label: "a".into(),
        token: Some(Secret::new("token-2".into())),
    });
    sink.apply(&reloaded).unwrap();
    journal
        .append(
            parse_body(
                &note("E3", "n3"),
                Source::Websocket,
                "2026-11-26T10:00:01.000Z".into(),
                0,
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let waited = tokio::time::timeout(
        Duration::from_secs(60),
        stats.wait_until(|s| s.delivered_to("audit") >= 3),
    )
    .await;
    assert!(waited.is_ok(), "the third record was not delivered");
    stop.cancel();
    abort.cancel();
    task.await.unwrap().unwrap();

    let TestSink::Counting(counting) = sink.as_ref() else {
        panic!("not a counting sink");
    };
    let token = |t: &str| Some(t.to_owned());
    assert_eq!(
        counting.received(),
        [
            (ids[0].clone(), token("token-1")),
            (ids[2].clone(), token("token-1")),
            ("engagement_note_added:E3:n3".to_owned(), token("token-2")),
        ],
        "the notes, in journal order, and not the disposition (the kind's default events)"
    );
    assert_eq!(journal.stats().await.unwrap()[0].pending, 0);
    journal.close().await;
}

fn note(engagement: &str, note: &str) -> String {
    format!(
        r#"{{"event":"contact_center.engagement_note_added","event_ts":1,"payload":{{"account_id":"a","object":{{"engagement_id":"{engagement}","note_id":"{note}","note":"text","last_modified_time":"2026-11-26T10:00:00Z"}}}}}}"#
    )
}
