//! `zcc-relay demo`: the real pipeline against the built-in Zoom simulator, with
//! a file sink, a stand-in CRM (zcc-sim's fake HTTP sink, checking
//! signatures) and a Salesforce org (zcc-sim's fake org, with a few Contacts
//! whose phones are some callers' numbers written another way), so a new
//! user sees in a minute what the daemon does and where its output goes.
//!
//! Everything the daemon runs here is the production code path; only Zoom,
//! the CRM and the org are simulated. The demo owns its directory and starts
//! from a clean one each time.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use tokio::time::Instant;
use zcc_sim::scenario::{self, ScenarioOptions};
use zcc_sim::sink::http::{FakeSink, verify_signatures};
use zcc_sim::sink::salesforce::{Org, Person, SalesforceFake};
use zcc_sim::{HandshakeMode, SimConfig, Simulator};

use crate::config::{
    DaemonSettings, JournalSettings, MediaSettings, MetricsSettings, ReconcileSettings, Secret,
    Settings, SinkKind, SinkSettings, WebsocketSettings, ZoomSettings,
};
use crate::record::Source;
use crate::sink::file::FileSinkSettings;
use crate::sink::http::HttpSinkSettings;
use crate::sink::salesforce::{KEYED_EVENTS, SalesforceSinkSettings};
use crate::telemetry::stats::Stats;

/// The CRM stand-in's signing secret (Standard Webhooks `whsec_` form).
const CRM_SECRET: &str = "whsec_ZGVtby1zaWduaW5nLXNlY3JldC1ub3QtZm9yLXByb2R1Y3Rpb24=";

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where the demo keeps its journal and output (emptied first).
    #[arg(long, default_value = "./zcc-relay-demo")]
    pub dir: PathBuf,
    /// Engagements (calls, video calls, chats) to simulate; each yields several events.
    #[arg(long, default_value_t = 80)]
    pub engagements: usize,
    /// Seed for the simulated contact center (same seed, same events).
    #[arg(long, default_value_t = 2026)]
    pub seed: u64,
    /// How long the playback takes in wall-clock time; the scripted hours of
    /// contact-center activity are compressed to fit.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    prepare_dir(&args.dir)?;
    let dir = std::fs::canonicalize(&args.dir)?;
    let sim = Simulator::start(SimConfig::default())
        .await
        .context("cannot start the Zoom simulator")?;
    // A stand-in CRM: verifies the Standard Webhooks signature of every
    // request; its outage switch answers 503 for a while.
    let crm = FakeSink::serve(verify_signatures(CRM_SECRET))
        .await
        .context("cannot start the stand-in CRM")?;
    let crm_url: url::Url = crm.url().parse()?;
    let archive = dir.join("events.jsonl");
    // The script compresses half an hour of a contact center into seconds, so
    // its timestamps are set in the recent past (Zoom's REST listings, like
    // reconciliation, only look backwards) and gaps are widened to cover it.
    let span = scenario::generate(
        args.seed,
        args.engagements,
        SystemTime::now(),
        Duration::from_secs(3),
    )
    .last()
    .map(|e| e.offset)
    .unwrap_or_default();
    let script_start = SystemTime::now() - span - Duration::from_secs(60);
    let script = scenario::generate_with(
        args.seed,
        args.engagements,
        script_start,
        Duration::from_secs(3),
        &ScenarioOptions::for_simulator(&sim),
    );
    let org = SalesforceFake::start(demo_org(&script))
        .await
        .context("cannot start the fake Salesforce org")?;
    let mut settings = demo_settings(&sim, &dir, &archive, &crm_url, &org)?;
    let media_store = settings.media.store.clone();
    settings.reconcile.gap_margin = span + Duration::from_secs(300);

    println!(
        "zcc-relay demo: the whole pipeline against a built-in Zoom simulator (no account needed)\n"
    );
    println!(
        "  Zoom simulator     {}  (S2S OAuth + WebSocket event subscription)",
        sim.websocket_url()
    );
    println!(
        "  journal            {}  (redb, fsync'd group commits)",
        settings.journal.dir.display()
    );
    println!(
        "  sink \"archive\"     {}  (JSONL, one record per line)",
        archive.display()
    );
    println!(
        "  media              {}  (recordings, transcripts, voicemails)",
        media_store
    );
    println!(
        "  sink \"crm\"         {}  (stand-in CRM that verifies webhook signatures)",
        crm_url
    );
    println!(
        "  sink \"salesforce\"  {}  (a fake Salesforce org: one Task per engagement, files attached)\n",
        org.url()
    );

    let stats = Stats::default();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = tokio::spawn(crate::app::run(settings, stats.clone(), async {
        let _ = stopped.await;
    }));
    tokio::time::timeout(Duration::from_secs(15), sim.wait_live())
        .await
        .context("the daemon did not connect to the simulator within 15 s")?;

    let speedup = (span.as_secs_f64() / args.duration.as_secs_f64().max(0.1)).max(1.0);
    println!(
        "Streaming {} engagements: {} events over {} of contact-center time, played {:.0}x faster.",
        args.engagements,
        script.len(),
        humantime::format_duration(Duration::from_secs(span.as_secs())),
        speedup
    );
    println!("Zoom resends some events and agents edit notes: watch duplicates being suppressed.");
    println!(
        "A third of the way in, the CRM goes down for a moment: its records wait in the journal and catch up."
    );
    println!(
        "Two thirds in, Zoom drops the socket and refuses to reconnect for a while: what happens then never\n\
         arrives on the socket, and reconciliation fetches the recoverable part from Zoom's REST API.\n"
    );

    let mut sent: BTreeMap<String, u64> = BTreeMap::new();
    for event in &script {
        *sent.entry(event_name(&event.body)).or_default() += 1;
    }
    let total = script.len();
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    {
        let (crm_down, crm_up) = (total / 3, total / 2);
        let (socket_down, socket_up) = (total * 3 / 5, total * 7 / 10);
        let (zoom, crm) = (&sim, &crm);
        let playback = scenario::play(&sim, script.clone(), speedup, move |index, _| {
            if index == crm_down {
                crm.set_down(true);
            } else if index == crm_up {
                crm.set_down(false);
            } else if index == socket_down {
                zoom.set_handshake(HandshakeMode::Refuse);
                zoom.drop_connection();
            } else if index == socket_up {
                zoom.set_handshake(HandshakeMode::Normal);
            }
        });
        tokio::pin!(playback);
        loop {
            tokio::select! {
                _ = &mut playback => break,
                _ = ticker.tick() => progress(started, &sim, &stats, total),
            }
        }
    }
    // Wait until the sinks have every record (Salesforce: every one of the
    // keyed types): the live ones, and what reconciliation recovers once the
    // socket is back.
    let expected = Expected::from_history(&sim.history());
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let snapshot = stats.snapshot();
        let records: u64 = snapshot.by_event.values().map(|c| c.persisted).sum::<u64>()
            + snapshot.reconciled.values().sum::<u64>();
        let keyed: u64 = KEYED_EVENTS
            .iter()
            .map(|event| {
                snapshot.by_event.get(*event).map_or(0, |c| c.persisted)
                    + snapshot.reconciled.get(*event).copied().unwrap_or(0)
            })
            .sum();
        let complete = expected.missing_from(&archive).is_empty()
            && ["archive", "crm"]
                .iter()
                .all(|s| snapshot.delivered_to(s) >= records)
            && snapshot.delivered_to("salesforce") >= keyed;
        if complete || Instant::now() > deadline {
            break;
        }
        tokio::select! {
            _ = ticker.tick() => progress(started, &sim, &stats, total),
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    progress(started, &sim, &stats, total);
    let _ = stop.send(());
    daemon.await.context("daemon task failed")??;

    let snapshot = stats.snapshot();
    summary(&sent, &expected, &snapshot);
    let check = verify_archive(&archive, &expected)?;
    println!();
    if check.problems.is_empty() {
        let recovered: u64 = snapshot.reconciled.values().sum();
        println!(
            "OK  every event reached the archive and the CRM exactly once per natural key ({} records, {} note revisions, {recovered} recovered by reconciliation)",
            check.lines, check.revisions
        );
        println!(
            "--  {} socket-only events (engagement started/ended, status changes, ...) happened during the outage: Zoom never\n    replays them and lists them nowhere, so no relay can recover them; the seven keyed types were all recovered",
            expected.lost
        );
    } else {
        for problem in &check.problems {
            println!("!!  {problem}");
        }
    }
    let media = media_report(&archive)?;
    match &media.example {
        Some(example) if media.problems.is_empty() => println!(
            "OK  {} recordings, transcripts and voicemails ({}) copied into {} and named in each record's \"media\";\n    e.g. {example}",
            media.stored,
            bytes(media.bytes),
            media_store.as_str(),
        ),
        _ => println!("!!  no media was stored in {}", media_store.as_str()),
    }
    for problem in &media.problems {
        println!("!!  {problem}");
    }
    let answered = |status: u16| crm.statuses().iter().filter(|s| **s == status).count();
    println!(
        "OK  the CRM verified {} webhook signatures ({} bad); during its outage it answered 503 {} times, and every record was retried until delivered",
        answered(200),
        answered(401),
        answered(503),
    );
    let salesforce = salesforce_report(&org, &sim.history(), &expected, &archive)?;
    for line in &salesforce.lines {
        println!("{line}");
    }
    println!("\nLook at the output:");
    println!(
        "  head -n 2 {} | python3 -m json.tool --json-lines",
        archive.display()
    );
    println!("  ls {}", dir.display());
    println!("Point it at your Zoom account: README.md, section \"Configuration\".");
    sim.shutdown().await;
    org.stop().await;
    if check.problems.is_empty()
        && media.problems.is_empty()
        && media.stored > 0
        && salesforce.problems == 0
    {
        Ok(())
    } else {
        anyhow::bail!(
            "the demo found undelivered or duplicated records, missing media, or a Salesforce org \
             that is not one Task per engagement with its files"
        )
    }
}

fn prepare_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        // Only ever remove a directory that looks like ours.
        let ours = dir.join("journal").exists() || dir.join("events.jsonl").exists();
        let empty = std::fs::read_dir(dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !ours && !empty {
            anyhow::bail!(
                "{} exists and is not a demo directory; choose another with --dir",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot clear {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

/// The demo's org: a few Contacts whose phone is a caller's number of the
/// script written the way people type it, and one nobody calls from.
fn demo_org(script: &[scenario::ScriptedEvent]) -> Org {
    // Callers of engagements with a keyed record: those get a Task.
    let mut numbers: Vec<String> = Vec::new();
    for event in script {
        if !KEYED_EVENTS.contains(&event.body["event"].as_str().unwrap_or_default()) {
            continue;
        }
        let object = &event.body["payload"]["object"];
        let number = object["consumer_number"]
            .as_str()
            .or_else(|| object["consumers"][0]["consumer_number"].as_str());
        if let Some(number) = number
            && let Some(digits) = number.strip_prefix("+1")
            && digits.len() == 10
            && digits.chars().all(|c| c.is_ascii_digit())
            && !numbers.iter().any(|n| n == digits)
        {
            numbers.push(digits.to_owned());
        }
    }
    // Every fifth caller, so the linked Tasks are spread over the run.
    let mut callers = numbers.iter().step_by(5);
    let mut org = Org::new();
    let people = [
        ("Ada", "Lovelace", "({}) {}-{}"),
        ("Grace", "Hopper", "{}.{}.{}"),
        ("Alan", "Turing", "1 {} {} {}"),
    ];
    for (first, last, format) in people {
        let Some(digits) = callers.next() else { break };
        let written = format
            .replacen("{}", &digits[..3], 1)
            .replacen("{}", &digits[3..6], 1)
            .replacen("{}", &digits[6..], 1);
        let person = Person::new(first, last);
        org = org.contact(if last == "Hopper" {
            person.mobile(&written)
        } else {
            person.phone(&written)
        });
    }
    org.contact(Person::new("Katherine", "Johnson").phone("(212) 555-0100"))
}

fn demo_settings(
    sim: &Simulator,
    dir: &Path,
    archive: &Path,
    crm_url: &url::Url,
    org: &SalesforceFake,
) -> anyhow::Result<Settings> {
    let config = sim.config();
    let journal_dir = dir.join("journal");
    let mut crm = SinkSettings::new(
        "crm",
        SinkKind::Http(HttpSinkSettings {
            url: crm_url.clone(),
            secret: Some(Secret::new(CRM_SECRET.to_string())),
        }),
    );
    crm.timeout = Duration::from_secs(5);
    let mut org_settings = SalesforceSinkSettings::with_defaults(
        org.url().parse()?,
        &org.client_id(),
        Secret::new(org.client_secret()),
    );
    // The fake org has no daily allocation to protect; at the default 10
    // requests a second the demo would wait for its budget.
    org_settings.requests_per_second = 200;
    let mut salesforce = SinkSettings::new("salesforce", SinkKind::Salesforce(org_settings));
    salesforce.timeout = Duration::from_secs(5);
    Ok(Settings {
        zoom: ZoomSettings {
            account_id: config.account_id.clone(),
            client_id: config.client_id.clone(),
            client_secret: Secret::new(config.client_secret.clone()),
            subscription_id: config.subscription_id.clone(),
            oauth_url: sim.oauth_url(),
            api_base_url: sim.api_base_url(),
            websocket_url: sim.websocket_url(),
        },
        websocket: WebsocketSettings::default(),
        daemon: DaemonSettings::default(),
        media: MediaSettings::default_for(&journal_dir).map_err(|e| anyhow::anyhow!("{e}"))?,
        journal: JournalSettings { dir: journal_dir },
        reconcile: ReconcileSettings::default(),
        metrics: MetricsSettings::default(),
        standby: None,
        sinks: vec![
            SinkSettings::new(
                "archive",
                SinkKind::File(FileSinkSettings {
                    path: archive.to_path_buf(),
                }),
            ),
            crm,
            salesforce,
        ],
    })
}

fn event_name(body: &serde_json::Value) -> String {
    body.get("event")
        .and_then(|e| e.as_str())
        .unwrap_or(crate::zoom::event::UNKNOWN_EVENT)
        .to_string()
}

fn progress(started: Instant, sim: &Simulator, stats: &Stats, total: usize) {
    let snapshot = stats.snapshot();
    let sent = sim.history().len();
    let persisted: u64 = snapshot.by_event.values().map(|c| c.persisted).sum();
    let duplicates: u64 = snapshot.by_event.values().map(|c| c.duplicates).sum();
    println!(
        "  [{:>5.1}s]  sent {sent:>4}/{total}   persisted {persisted:>4}   duplicates {duplicates:>3}   delivered: archive {:>4}  crm {:>4}  salesforce {:>4}",
        started.elapsed().as_secs_f64(),
        snapshot.delivered_to("archive"),
        snapshot.delivered_to("crm"),
        snapshot.delivered_to("salesforce"),
    );
}

/// What the demo expects in the sinks: every event that went out on the live
/// socket, and every keyed event (reconciliation's domain) that did not.
struct Expected {
    ids: BTreeSet<String>,
    /// event → sent while the socket was live.
    live: BTreeMap<String, u64>,
    /// Socket-only events sent during the outage.
    lost: u64,
}

impl Expected {
    fn from_history(history: &[zcc_sim::EmittedEvent]) -> Expected {
        let mut expected = Expected {
            ids: BTreeSet::new(),
            live: BTreeMap::new(),
            lost: 0,
        };
        for emitted in history {
            let Ok(record) = crate::zoom::event::parse_body(
                &emitted.content,
                Source::Websocket,
                String::new(),
                0,
            ) else {
                continue;
            };
            if emitted.live {
                *expected.live.entry(record.event.clone()).or_default() += 1;
                expected.ids.insert(record.id);
            } else if crate::reconcile::synth::TYPES.contains(&record.event.as_str()) {
                expected.ids.insert(record.id);
            } else {
                expected.lost += 1;
            }
        }
        expected
    }

    fn missing_from(&self, archive: &Path) -> Vec<String> {
        let text = std::fs::read_to_string(archive).unwrap_or_default();
        let present: BTreeSet<&str> = text
            .lines()
            .filter_map(|line| line.split("\"id\":\"").nth(1)?.split('"').next())
            .collect();
        self.ids
            .iter()
            .filter(|id| !present.contains(id.as_str()))
            .cloned()
            .collect()
    }
}

fn summary(
    sent: &BTreeMap<String, u64>,
    expected: &Expected,
    snapshot: &crate::telemetry::stats::Snapshot,
) {
    let delivered = |sink: &str, event: &str| {
        snapshot
            .delivered
            .get(&(sink.to_string(), event.to_string()))
            .copied()
            .unwrap_or(0)
    };
    let header = [
        "sent",
        "live",
        "persisted",
        "duplicates",
        "recovered",
        "archive",
        "crm",
        "salesforce",
    ];
    println!(
        "\n{:<58} {:>5} {:>5} {:>9} {:>10} {:>9} {:>8} {:>5} {:>10}",
        "event",
        header[0],
        header[1],
        header[2],
        header[3],
        header[4],
        header[5],
        header[6],
        header[7]
    );
    let mut totals = [0u64; 8];
    for (event, n_sent) in sent {
        let counts = snapshot.by_event.get(event).cloned().unwrap_or_default();
        let row = [
            *n_sent,
            expected.live.get(event).copied().unwrap_or(0),
            counts.persisted,
            counts.duplicates,
            snapshot.reconciled.get(event).copied().unwrap_or(0),
            delivered("archive", event),
            delivered("crm", event),
            delivered("salesforce", event),
        ];
        for (total, value) in totals.iter_mut().zip(row) {
            *total += value;
        }
        println!(
            "{event:<58} {:>5} {:>5} {:>9} {:>10} {:>9} {:>8} {:>5} {:>10}",
            row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7]
        );
    }
    println!(
        "{:<58} {:>5} {:>5} {:>9} {:>10} {:>9} {:>8} {:>5} {:>10}",
        "total",
        totals[0],
        totals[1],
        totals[2],
        totals[3],
        totals[4],
        totals[5],
        totals[6],
        totals[7]
    );
}

/// What the org holds after the run, as the summary's lines (`OK`/`!!`).
struct SalesforceReport {
    lines: Vec<String>,
    problems: usize,
}

/// Reads the fake org back: one Task per engagement that had a keyed record,
/// each stored file attached once to its engagement's Task, the Tasks
/// linked to a Contact (`WhoId`), and the API calls it took.
fn salesforce_report(
    org: &SalesforceFake,
    history: &[zcc_sim::EmittedEvent],
    expected: &Expected,
    archive: &Path,
) -> anyhow::Result<SalesforceReport> {
    let mut engagements = BTreeSet::new();
    for emitted in history {
        if let Ok(record) =
            crate::zoom::event::parse_body(&emitted.content, Source::Websocket, String::new(), 0)
            && KEYED_EVENTS.contains(&record.event.as_str())
            && expected.ids.contains(&record.id)
            && let Some(engagement) = record.view.engagement_id
        {
            engagements.insert(engagement);
        }
    }
    let mut problems = Vec::new();
    let mut task_of = BTreeMap::new();
    for engagement in &engagements {
        let tasks = org.tasks_with_external_id(engagement);
        match tasks.as_slice() {
            [task] => {
                let id = task["Id"].as_str().unwrap_or_default().to_owned();
                task_of.insert(engagement.clone(), id);
            }
            _ => problems.push(format!(
                "engagement {engagement} has {} Tasks, not one",
                tasks.len()
            )),
        }
    }
    let tasks = org.tasks();
    if tasks.len() != engagements.len() {
        problems.push(format!(
            "{} Tasks for {} engagements",
            tasks.len(),
            engagements.len()
        ));
    }
    // Every stored file, on its engagement's Task, once.
    let versions = org.content_versions();
    let mut files = 0;
    let text = std::fs::read_to_string(archive)
        .with_context(|| format!("cannot read {}", archive.display()))?;
    let mut stored = BTreeSet::new();
    for line in text.lines() {
        let record: serde_json::Value = serde_json::from_str(line)?;
        let engagement = record["payload"]["object"]["engagement_id"].as_str();
        for item in record["media"].as_array().into_iter().flatten() {
            let location = item["location"].as_str().unwrap_or_default();
            if let Some(engagement) = engagement {
                stored.insert((engagement.to_owned(), location.to_owned()));
            }
        }
    }
    for (engagement, location) in &stored {
        let name = location.rsplit('/').next().unwrap_or(location);
        let on_task = versions
            .iter()
            .filter(|v| {
                v.path_on_client == name
                    && v.first_publish_location_id.as_ref() == task_of.get(engagement)
            })
            .count();
        match on_task {
            1 => files += 1,
            n => problems.push(format!(
                "{name} is attached {n} times to engagement {engagement}'s Task"
            )),
        }
    }
    if versions.len() != files {
        problems.push(format!(
            "{} ContentVersions for {files} stored files",
            versions.len()
        ));
    }
    // The Contacts the Tasks were linked to.
    let names: BTreeMap<String, String> = org
        .contacts()
        .iter()
        .filter_map(|c| {
            let id = c.get("Id")?.as_str()?.to_owned();
            let first = c.get("FirstName").and_then(|v| v.as_str()).unwrap_or("");
            let last = c.get("LastName").and_then(|v| v.as_str()).unwrap_or("");
            Some((id, format!("{first} {last}").trim().to_owned()))
        })
        .collect();
    let mut linked: BTreeMap<&str, u64> = BTreeMap::new();
    for task in &tasks {
        if let Some(who) = task.get("WhoId").and_then(|v| v.as_str()) {
            let name = names.get(who).map_or(who, String::as_str);
            *linked.entry(name).or_default() += 1;
        }
    }
    let calls = org.request_counts();
    let mut lines = Vec::new();
    if problems.is_empty() {
        lines.push(format!(
            "OK  Salesforce: one Task per engagement ({} Tasks), {files} recordings, transcripts and voicemails attached to them
    as ContentVersions, each once",
            tasks.len()
        ));
    }
    let linked_text = if linked.is_empty() {
        "no Task".to_owned()
    } else {
        linked
            .iter()
            .map(|(name, n)| format!("{name} ({n})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let kind = if linked.len() + 1 == names.len() {
        "OK "
    } else {
        "!! "
    };
    lines.push(format!(
        "{kind} the callers whose number a Contact holds (written another way) are linked (WhoId): {linked_text}; {} Contacts in the org",
        names.len()
    ));
    lines.push(format!(
        "--  {} Salesforce API calls ({:.1} per engagement): {} Task upserts, {} file uploads, {} file lookups,\n    {} phone searches, {} other (token requests: {})",
        calls.api_calls(),
        calls.api_calls() as f64 / engagements.len().max(1) as f64,
        calls.upsert + calls.composite + calls.update,
        calls.content_version,
        calls.query,
        calls.search,
        calls.describe + calls.other,
        calls.token,
    ));
    let count = problems.len() + usize::from(kind == "!! ");
    lines.extend(problems.into_iter().map(|p| format!("!!  {p}")));
    Ok(SalesforceReport {
        lines,
        problems: count,
    })
}

struct MediaReport {
    stored: u64,
    bytes: u64,
    example: Option<String>,
    problems: Vec<String>,
}

/// Reads the `media` entries of the archived records back and checks each
/// stored file (it is a `file://` store) against its recorded size and sha256.
fn media_report(archive: &Path) -> anyhow::Result<MediaReport> {
    use sha2::Digest as _;
    let file = std::fs::File::open(archive)
        .with_context(|| format!("cannot read {}", archive.display()))?;
    let mut report = MediaReport {
        stored: 0,
        bytes: 0,
        example: None,
        problems: Vec::new(),
    };
    for line in std::io::BufReader::new(file).lines() {
        let record: serde_json::Value = serde_json::from_str(&line?)?;
        let id = record["id"].as_str().unwrap_or_default();
        for error in record["media_errors"].as_array().into_iter().flatten() {
            report
                .problems
                .push(format!("{id}: media not stored: {}", error["error"]));
        }
        for item in record["media"].as_array().into_iter().flatten() {
            let location = item["location"].as_str().unwrap_or_default();
            let held = url::Url::parse(location)
                .ok()
                .and_then(|url| url.to_file_path().ok())
                .and_then(|path| std::fs::read(path).ok());
            let Some(held) = held else {
                report
                    .problems
                    .push(format!("{id}: {location} is not readable"));
                continue;
            };
            let sha256 = hex::encode(sha2::Sha256::digest(&held));
            if Some(held.len() as u64) != item["size"].as_u64()
                || item["sha256"].as_str() != Some(sha256.as_str())
            {
                report.problems.push(format!(
                    "{id}: {location} does not match its size or sha256"
                ));
            }
            report.stored += 1;
            report.bytes += held.len() as u64;
            if report.example.is_none() || item["kind"] == "recording" {
                report.example = Some(format!(
                    "{} ({}, {}, sha256 {}…)",
                    location,
                    item["kind"].as_str().unwrap_or_default(),
                    item["content_type"].as_str().unwrap_or_default(),
                    &sha256[..12]
                ));
            }
        }
    }
    Ok(report)
}

fn bytes(n: u64) -> String {
    if n >= 1024 * 1024 {
        format!("{:.1} MiB", n as f64 / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

struct ArchiveCheck {
    lines: usize,
    revisions: usize,
    problems: Vec<String>,
}

/// Reads the file sink back: every expected natural key present, no
/// (id, revision) twice.
fn verify_archive(path: &Path, expected: &Expected) -> anyhow::Result<ArchiveCheck> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut seen = BTreeSet::new();
    let mut ids = BTreeSet::new();
    let mut problems = Vec::new();
    let mut lines = 0;
    let mut revisions = 0;
    for line in std::io::BufReader::new(file).lines() {
        let line = line?;
        lines += 1;
        let record: serde_json::Value =
            serde_json::from_str(&line).context("archive line is not JSON")?;
        let id = record["id"].as_str().unwrap_or_default().to_string();
        let revision = record["revision"].as_u64().unwrap_or(0);
        if revision > 1 {
            revisions += 1;
        }
        if !seen.insert((id.clone(), revision)) {
            problems.push(format!("{id} revision {revision} was delivered twice"));
        }
        ids.insert(id);
    }
    for missing in expected.ids.difference(&ids) {
        problems.push(format!("{missing} never reached the archive"));
    }
    Ok(ArchiveCheck {
        lines,
        revisions,
        problems,
    })
}
