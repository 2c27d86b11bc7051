//! Calls per artefact when a CRM sink drains a backlog (issue 17): 1,000
//! engagements of simulated traffic (recordings, transcripts, notes with
//! edits and re-sends, dispositions, messaging) are ingested, their files
//! stored, and everything waits while the CRM's set-up is broken (Dynamics:
//! no alternate key; HubSpot: the property is not unique). Then the set-up
//! is fixed and the backlog drains: the fake counts every API request from
//! that moment until the last artefact is acknowledged.
//!
//! `cargo bench --bench crm` (`-- --quick`: 100 engagements). The daemon
//! runs in this process (`app::run`) against the simulator and the fakes of
//! `zcc_sim::sink`, all on loopback; `requests_per_second = 1000` so the
//! budget does not set the pace.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use zcc_relay::telemetry::stats::Stats;
use zcc_sim::scenario::{self, ScenarioOptions};
use zcc_sim::sink::dynamics::{self, DynamicsFake};
use zcc_sim::sink::hubspot::{self, HubSpotFake};
use zcc_sim::{SimConfig, Simulator};

const KEYED: &[&str] = &[
    "recording_completed",
    "recording_transcript_completed",
    "engagement_messaging_transcript_completed",
    "engagement_note_added",
    "engagement_disposition_added",
    "inbox_message_received",
    "voicemail_transcript_completed",
];

fn config(sim: &Simulator, dir: &std::path::Path, sink: &str) -> String {
    let c = sim.config();
    format!(
        r#"
[zoom]
account_id = "{account}"
client_id = "{client}"
client_secret = "{secret}"
subscription_id = "{subscription}"
oauth_url = "{oauth}"
api_base_url = "{api}"
websocket_url = "{ws}"

[daemon]
log_level = "error"

[journal]
dir = "{journal}"

[media]
enabled = true

[metrics]
listen = "127.0.0.1:0"

{sink}
retry_fast_window = "1s"
retry_schedule = ["1s"]
requests_per_second = 1000
"#,
        account = c.account_id,
        client = c.client_id,
        secret = c.client_secret,
        subscription = c.subscription_id,
        oauth = sim.oauth_url(),
        api = sim.api_base_url(),
        ws = sim.websocket_url(),
        journal = dir.join("journal").display(),
    )
}

/// The media stage's backlog, from the metrics endpoint.
async fn media_pending(addr: std::net::SocketAddr) -> Option<u64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await.ok()?;
    text.lines()
        .find(|l| l.starts_with("zcc_relay_media_pending_records"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
}

struct Figures {
    engagements: usize,
    artefacts: u64,
    files: u64,
    requests: u64,
    detail: String,
    seconds: f64,
}

async fn run(crm: &str, engagements: usize) -> Figures {
    let sim = Arc::new(
        Simulator::start(SimConfig::default())
            .await
            .expect("simulator"),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let options = ScenarioOptions::for_simulator(&sim);
    let script = scenario::generate_with(
        17,
        engagements,
        SystemTime::now(),
        Duration::from_millis(50),
        &options,
    );
    let dynamics_fake;
    let hubspot_fake;
    let sink = match crm {
        "dynamics" => {
            dynamics_fake = Some(
                DynamicsFake::start(dynamics::Environment::new().key(None))
                    .await
                    .unwrap(),
            );
            hubspot_fake = None;
            let f = dynamics_fake.as_ref().unwrap();
            format!(
                "[[sinks]]\nname = \"crm\"\ntype = \"dynamics\"\norg_url = \"{}\"\nauthority_url = \"{}\"\ntenant_id = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{}\"",
                f.url(),
                f.authority_url(),
                f.tenant_id(),
                f.client_id(),
                f.client_secret()
            )
        }
        _ => {
            dynamics_fake = None;
            hubspot_fake = Some(
                HubSpotFake::start(hubspot::Portal::new().property("zcc_engagement_id", false))
                    .await
                    .unwrap(),
            );
            let f = hubspot_fake.as_ref().unwrap();
            format!(
                "[[sinks]]\nname = \"crm\"\ntype = \"hubspot\"\napi_base_url = \"{}\"\ntoken = \"{}\"",
                f.url(),
                f.token()
            )
        }
    };
    let text = config(&sim, dir.path(), &sink);
    let settings = zcc_relay::config::parse(&text, &zcc_relay::config::FakeEnvironment::new())
        .unwrap_or_else(|e| panic!("benchmark config is invalid:\n{e}"))
        .settings;
    let stats = Stats::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(zcc_relay::app::run(settings, stats.clone(), async {
        let _ = stopped.await;
    }));
    sim.wait_live().await;
    tokio::time::timeout(
        Duration::from_secs(30),
        stats.wait_until(|s| s.reconcile_runs >= 1),
    )
    .await
    .expect("first sweep");
    for event in &script {
        assert!(sim.emit(event.body.clone()));
    }
    let handled = |s: &zcc_relay::telemetry::stats::Snapshot| {
        s.by_event
            .values()
            .map(|c| c.persisted + c.duplicates)
            .sum::<u64>()
    };
    tokio::time::timeout(
        Duration::from_secs(300),
        stats.wait_until(|s| handled(s) >= script.len() as u64),
    )
    .await
    .expect("every event handled");
    let addr = stats.snapshot().metrics_listen.expect("metrics address");
    loop {
        if media_pending(addr).await == Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let snapshot = stats.snapshot();
    let artefacts: u64 = snapshot
        .by_event
        .iter()
        .filter(|(e, _)| {
            KEYED
                .iter()
                .any(|k| e.trim_start_matches("contact_center.") == *k)
        })
        .map(|(_, c)| c.persisted)
        .sum();
    assert_eq!(snapshot.delivered_to("crm"), 0, "the backlog waited");
    // Fix the set-up; count from here.
    let began = Instant::now();
    let (before, files) = match (&dynamics_fake, &hubspot_fake) {
        (Some(f), _) => {
            let before = f.request_counts();
            f.set_key(Some(dynamics::AlternateKey::active("zcc_engagementid")));
            (before.requests + before.token, 0)
        }
        (_, Some(f)) => {
            let before = f.request_counts();
            f.set_property("zcc_engagement_id", true);
            (before.requests, 0)
        }
        _ => unreachable!(),
    };
    let _ = files;
    let dead = |s: &zcc_relay::telemetry::stats::Snapshot| {
        s.dead_lettered.get("crm").copied().unwrap_or(0)
    };
    tokio::time::timeout(
        Duration::from_secs(600),
        stats.wait_until(|s| s.delivered_to("crm") + dead(s) >= artefacts),
    )
    .await
    .expect("the backlog drained");
    assert_eq!(dead(&stats.snapshot()), 0, "nothing dead-lettered");
    let seconds = began.elapsed().as_secs_f64();
    let (requests, detail, files) = match (&dynamics_fake, &hubspot_fake) {
        (Some(f), _) => {
            let c = f.request_counts();
            let files = f
                .phonecalls()
                .iter()
                .map(|p| {
                    f.annotations_on(p["activityid"].as_str().unwrap_or(""))
                        .iter()
                        .filter(|a| a.bytes.is_some())
                        .count() as u64
                })
                .sum();
            (
                c.requests + c.token - before,
                format!(
                    "{} $batch ({} change sets), {} contact queries, {} tokens",
                    c.batch, c.change_sets, c.contact_queries, c.token
                ),
                files,
            )
        }
        (_, Some(f)) => {
            let c = f.request_counts();
            (
                c.requests - before,
                format!(
                    "{} upserts, {} uploads, {} searches, {} associations",
                    c.upserts, c.uploads, c.searches, c.associations
                ),
                f.file_paths().len() as u64,
            )
        }
        _ => unreachable!(),
    };
    let _ = stop.send(());
    let _ = task.await;
    if let Ok(sim) = Arc::try_unwrap(sim) {
        sim.shutdown().await;
    }
    Figures {
        engagements,
        artefacts,
        files,
        requests,
        detail,
        seconds,
    }
}

fn main() {
    // `ZCC_BENCH_LOG=zcc_relay=warn`: the daemon's log on stderr.
    if let Ok(filter) = std::env::var("ZCC_BENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    let quick = std::env::args().any(|a| a == "--quick");
    // `--only dynamics` or `--only hubspot`: one CRM.
    let args: Vec<String> = std::env::args().collect();
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let engagements = if quick { 100 } else { 1_000 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "CRM backlog drain: {engagements} engagements, requests counted from the set-up fix until the last acknowledgement"
    );
    println!(
        "| CRM | artefacts | files attached | API requests | requests per artefact | per engagement | drain time | detail (whole run) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for crm in ["dynamics", "hubspot"] {
        if only.as_deref().is_some_and(|o| o != crm) {
            continue;
        }
        let f = runtime.block_on(run(crm, engagements));
        println!(
            "| {crm} | {} | {} | {} | {:.2} | {:.2} | {:.1} s | {} |",
            f.artefacts,
            f.files,
            f.requests,
            f.requests as f64 / f.artefacts.max(1) as f64,
            f.requests as f64 / f.engagements as f64,
            f.seconds,
            f.detail
        );
    }
}
