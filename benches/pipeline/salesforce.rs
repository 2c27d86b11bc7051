//! The Salesforce backlog drain (issue 16): the records of N engagements
//! waiting in a journal (notes, dispositions, recordings and transcripts with
//! small stored files) drained into the fake org
//! (`zcc_sim::sink::salesforce`) by the sink worker, twice from scratch:
//! - *ours*: the Salesforce sink as shipped (an engagement's records
//!   coalesced, several engagements' Tasks in one sObject Collections call);
//! - *baseline*: the same sink handed one record at a time, so every
//!   artefact is its own upsert (update-only, then the creating one) and its
//!   own file lookup.
//!
//! The API calls are what the fake counted. The journal is filled directly
//! (records appended, files written and the records enriched as the media
//! stage would), so only the drain is timed.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;
use zcc_relay::config::{Secret, SinkKind, SinkSettings};
use zcc_relay::deliver::{Envelope, SinkWorker};
use zcc_relay::failure::Failure;
use zcc_relay::journal::{AppendOutcome, Journal, SinkRoute};
use zcc_relay::record::{MediaEntry, Source};
use zcc_relay::route::EventFilter;
use zcc_relay::service::Health;
use zcc_relay::sink::salesforce::SalesforceSinkSettings;
use zcc_relay::sink::{BuildContext, Registry, Running};
use zcc_relay::telemetry::stats::Stats;
use zcc_relay::zoom::event::parse_body;
use zcc_sim::scenario::{self, ScenarioOptions};
use zcc_sim::sink::salesforce::{DEFAULT_EXTERNAL_ID_FIELD, Org, RequestCounts, SalesforceFake};

const SINK: &str = "salesforce";
/// The budget a sink has without `requests_per_second`.
pub const DEFAULT_BUDGET: u32 = zcc_relay::crm::budget::DEFAULT_REQUESTS_PER_SECOND;
/// The most `requests_per_second` allows: the drain is then bound by the
/// work, not the budget.
pub const FASTEST: u32 = 1_000;
/// Bytes of each stored file (recordings and transcripts alike).
const FILE_BYTES: usize = 2048;

/// One drain.
pub struct Drain {
    pub engagements: usize,
    /// Records the sink had to get.
    pub artefacts: u64,
    pub files: usize,
    pub counts: RequestCounts,
    pub elapsed: Duration,
}

impl Drain {
    /// Every data-API call (token requests aside).
    pub fn api_calls(&self) -> u64 {
        let c = &self.counts;
        c.upsert
            + c.update
            + c.composite
            + c.content_version
            + c.query
            + c.search
            + c.describe
            + c.other
    }

    /// Calls that wrote Tasks: single upserts, updates by id, collections.
    pub fn task_writes(&self) -> u64 {
        self.counts.upsert + self.counts.update + self.counts.composite
    }

    /// The drain at `requests_per_second` when the budget, not the work,
    /// sets the pace: one call every 1/rps.
    pub fn at_budget(&self, requests_per_second: u32) -> Duration {
        Duration::from_secs_f64(self.api_calls() as f64 / f64::from(requests_per_second))
    }
}

/// The shipped sink, handed one record per call (no coalescing, no
/// collections): the baseline.
struct OneByOne(zcc_relay::sink::Sink);

impl Running<SinkKind> for OneByOne {
    async fn ready(&self) -> Result<(), Failure> {
        self.0.ready().await
    }

    fn apply(&self, settings: &SinkKind) -> anyhow::Result<()> {
        Running::<SinkKind>::apply(&self.0, settings)
    }

    async fn deliver(&self, envelope: &Envelope) -> Result<(), Failure> {
        self.0.deliver(envelope).await
    }
}

/// Fills a journal at `dir` with `n` engagements' records, the stored files
/// under `files`; the engagements, the sink's records and the files.
async fn fill(dir: &Path, files: &Path, n: usize) -> (Journal, usize, u64, usize) {
    let routes = vec![SinkRoute {
        name: SINK.to_owned(),
        filter: EventFilter::new(
            zcc_relay::sink::salesforce::KEYED_EVENTS
                .iter()
                .map(|e| (*e).to_owned())
                .collect(),
        ),
    }];
    let journal =
        Journal::open_with_media(dir, routes, Some(zcc_relay::media::media_events())).unwrap();
    std::fs::create_dir_all(files).unwrap();
    let script = scenario::generate_with(
        16,
        n,
        SystemTime::now() - Duration::from_secs(24 * 3600),
        Duration::from_secs(1),
        &ScenarioOptions::default(),
    );
    let mut engagements = std::collections::BTreeSet::new();
    let mut n_files = 0;
    for (i, event) in script.iter().enumerate() {
        let record = parse_body(
            &event.body.to_string(),
            Source::Websocket,
            "2026-12-07T12:00:00.000Z".to_owned(),
            i as i64,
        )
        .unwrap();
        let wanted = record.view.media.clone();
        if let Some(id) = &record.view.engagement_id
            && zcc_relay::sink::salesforce::KEYED_EVENTS.contains(&record.event.as_str())
        {
            engagements.insert(id.clone());
        }
        let bytes = record.clone();
        let AppendOutcome::Stored { seq, revision, .. } = journal.append(record).await.unwrap()
        else {
            continue;
        };
        if !zcc_relay::media::media_events().matches(&bytes.event) {
            continue;
        }
        // What the media stage would have stored for it.
        let mut media = Vec::new();
        for (k, want) in wanted.iter().filter(|w| w.unusable.is_none()).enumerate() {
            let path = files.join(format!("{seq}-{k}-{}.bin", want.kind.as_str()));
            let text = format!("{} of record {seq}\n", want.kind.as_str());
            let body: Vec<u8> = text.bytes().cycle().take(FILE_BYTES).collect();
            std::fs::write(&path, &body).unwrap();
            media.push(MediaEntry {
                kind: want.kind.as_str().to_owned(),
                location: url::Url::from_file_path(&path).unwrap().to_string(),
                url: None,
                content_type: "application/octet-stream".to_owned(),
                size: body.len() as u64,
                sha256: String::new(),
            });
            n_files += 1;
        }
        let body = zcc_relay::media::worker::with_media(&bytes.to_json(revision), &media, &[]);
        journal.enriched(seq, body).await.unwrap();
    }
    let pending = journal
        .stats()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.sink == SINK)
        .map(|s| s.pending)
        .unwrap_or(0);
    (journal, engagements.len(), pending, n_files)
}

/// Drains a fresh backlog of `n` engagements into a fresh org at
/// `requests_per_second`; `baseline`: one record per call.
pub async fn drain(base: &Path, n: usize, requests_per_second: u32, baseline: bool) -> Drain {
    let scratch = tempfile::tempdir_in(base).unwrap();
    let (journal, engagements, artefacts, files) = fill(
        &scratch.path().join("journal"),
        &scratch.path().join("media"),
        n,
    )
    .await;
    let fake = SalesforceFake::start(Org::new()).await.unwrap();
    let mut settings = SinkSettings::new(
        SINK,
        SinkKind::Salesforce(SalesforceSinkSettings {
            instance_url: fake.url().parse().unwrap(),
            client_id: fake.client_id(),
            client_secret: Secret::new(fake.client_secret()),
            api_version: "v62.0".to_owned(),
            external_id_field: DEFAULT_EXTERNAL_ID_FIELD.to_owned(),
            attach_files: true,
            link_customers: true,
            default_region: "US".to_owned(),
            requests_per_second,
        }),
    );
    settings.timeout = Duration::from_secs(10);
    let tls = zcc_relay::tls::client_config().unwrap();
    let health = Health::default();
    let context = BuildContext {
        name: SINK,
        timeout: settings.timeout,
        tls: &tls,
        health: &health,
        journal: Some(&journal),
    };
    let sink = Registry::build(&settings.kind, &context).await.unwrap();
    let stats = Stats::default();
    let (stop, abort) = (CancellationToken::new(), CancellationToken::new());
    let started = Instant::now();
    let task = if baseline {
        let worker = SinkWorker {
            settings: settings.clone(),
            sink: Arc::new(OneByOne(sink)),
            journal: journal.clone(),
            stats: stats.clone(),
            health: health.clone(),
        };
        tokio::spawn(worker.run(stop.clone(), abort.clone()))
    } else {
        let worker = SinkWorker {
            settings: settings.clone(),
            sink: Arc::new(sink),
            journal: journal.clone(),
            stats: stats.clone(),
            health: health.clone(),
        };
        tokio::spawn(worker.run(stop.clone(), abort.clone()))
    };
    let limit = Duration::from_secs(60)
        + Duration::from_secs(40 * artefacts / u64::from(requests_per_second));
    let drained = tokio::time::timeout(
        limit,
        stats.wait_until(|s| s.delivered_to(SINK) >= artefacts),
    )
    .await;
    let elapsed = started.elapsed();
    assert!(
        drained.is_ok(),
        "drained {} of {artefacts} in {limit:?}",
        stats.snapshot().delivered_to(SINK)
    );
    stop.cancel();
    abort.cancel();
    let _ = task.await;
    let snapshot = stats.snapshot();
    assert_eq!(snapshot.dead_lettered.get(SINK).copied().unwrap_or(0), 0);
    // The org holds what it should: one Task per engagement, every file once.
    assert_eq!(fake.tasks().len(), engagements, "one Task per engagement");
    assert_eq!(fake.content_versions().len(), files, "each file once");
    let mut counts = fake.request_counts();
    counts.token = 0;
    journal.close().await;
    fake.stop().await;
    Drain {
        engagements,
        artefacts,
        files,
        counts,
        elapsed,
    }
}

/// The side-by-side table: ours, the baseline, and what each takes at the
/// default budget.
pub fn report(ours: &Drain, baseline: &Drain, at_default: Option<&Drain>) {
    println!();
    println!(
        "Salesforce backlog: {} engagements, {} records for the sink, {} files of {} bytes",
        ours.engagements, ours.artefacts, ours.files, FILE_BYTES
    );
    println!("{:<56} {:>14} {:>16}", "", "ours", "one per record");
    let row = |what: &str, a: String, b: String| println!("{what:<56} {a:>14} {b:>16}");
    let each = |d: &Drain| {
        (
            d.api_calls(),
            d.api_calls() as f64 / d.artefacts as f64,
            d.task_writes() as f64 / d.engagements as f64,
        )
    };
    let (a, b) = (each(ours), each(baseline));
    row("API calls", a.0.to_string(), b.0.to_string());
    row(
        "API calls per artefact",
        format!("{:.3}", a.1),
        format!("{:.3}", b.1),
    );
    row(
        "Task writes per engagement",
        format!("{:.4}", a.2),
        format!("{:.3}", b.2),
    );
    let c = |d: &Drain| {
        format!(
            "{}u {}c {}q {}f {}s",
            d.counts.upsert + d.counts.update,
            d.counts.composite,
            d.counts.query,
            d.counts.content_version,
            d.counts.search
        )
    };
    row(
        "calls: upsert+update u, collection c, query q, file f, search s",
        c(ours),
        c(baseline),
    );
    let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    row(
        &format!("drain at {FASTEST} req/s (work-bound), measured"),
        secs(ours.elapsed),
        secs(baseline.elapsed),
    );
    row(
        &format!("drain at the default {DEFAULT_BUDGET} req/s: calls / budget"),
        secs(ours.at_budget(DEFAULT_BUDGET)),
        secs(baseline.at_budget(DEFAULT_BUDGET)),
    );
    if let Some(real) = at_default {
        row(
            &format!("drain at the default {DEFAULT_BUDGET} req/s, measured"),
            secs(real.elapsed),
            "-".to_owned(),
        );
    }
}
