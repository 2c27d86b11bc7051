//! Delivery policy with a real journal, real sink workers and a fake HTTP sink
//! on 127.0.0.1. Schedules run on tokio's paused clock.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use zcc_relay::config::{SinkKind, SinkSettings};
use zcc_relay::deliver::{Envelope, SinkWorker};
use zcc_relay::failure::Failure;
use zcc_relay::journal::{Journal, JournalError, SinkRoute};
use zcc_relay::record::Source;
use zcc_relay::route::EventFilter;
use zcc_relay::service::Health;
use zcc_relay::sink::http::HttpSinkSettings;
use zcc_relay::sink::{Running, Sink};
use zcc_relay::telemetry::stats::Stats;
use zcc_relay::zoom::event::parse_body;

use crate::support::*;

/// A limit for waits in paused-clock tests: hours of virtual time, instant in real time.
const HOURS: Duration = Duration::from_secs(6 * 3600);

fn sink(name: &str, url: &str) -> SinkSettings {
    paused_http_sink(name, url)
}

fn open(dir: &std::path::Path, sinks: &[&SinkSettings]) -> Journal {
    let routes = sinks
        .iter()
        .map(|s| SinkRoute {
            name: s.name.clone(),
            filter: EventFilter::all(),
        })
        .collect();
    Journal::open(dir, routes).unwrap()
}

/// A note event of `engagement`, distinct per `n`.
fn note(engagement: &str, n: usize) -> String {
    format!(
        r#"{{"event":"contact_center.engagement_note_added","event_ts":{n},"payload":{{"account_id":"a","object":{{"engagement_id":"{engagement}","note_id":"n{n}","note":"note {n}","last_modified_time":"2026-11-26T10:00:00Z"}}}}}}"#
    )
}

async fn append(journal: &Journal, body: &str) -> String {
    let record = parse_body(
        body,
        Source::Websocket,
        "2026-11-26T10:00:00.000Z".into(),
        0,
    )
    .unwrap();
    let id = record.id.clone();
    journal.append(record).await.unwrap();
    id
}

struct Worker {
    stop: CancellationToken,
    abort: CancellationToken,
    task: JoinHandle<Result<(), JournalError>>,
    stats: Stats,
}

async fn start(journal: &Journal, settings: &SinkSettings) -> Worker {
    let worker = SinkWorker {
        settings: settings.clone(),
        sink: Arc::new(build_sink(settings).await),
        journal: journal.clone(),
        stats: Stats::default(),
        health: Health::default(),
    };
    let (stop, abort) = (CancellationToken::new(), CancellationToken::new());
    let stats = worker.stats.clone();
    let task = tokio::spawn(worker.run(stop.clone(), abort.clone()));
    Worker {
        stop,
        abort,
        task,
        stats,
    }
}

impl Worker {
    async fn shutdown(self) {
        self.stop.cancel();
        self.abort.cancel();
        self.task.await.unwrap().unwrap();
    }

    /// Waits until `n` records were delivered *and acked in the journal* (the
    /// fake sink counts a record before the worker hears the answer).
    async fn wait_delivered(&self, sink: &str, n: u64) {
        let waited =
            tokio::time::timeout(HOURS, self.stats.wait_until(|s| s.delivered_to(sink) >= n)).await;
        assert!(waited.is_ok(), "expected {n} delivered to {sink}");
    }

    async fn wait_dead(&self, sink: &str, n: u64) {
        let waited = tokio::time::timeout(
            Duration::from_secs(3600),
            self.stats
                .wait_until(|s| s.dead_lettered.get(sink).copied().unwrap_or(0) >= n),
        )
        .await;
        assert!(waited.is_ok(), "expected {n} dead-lettered");
    }
}

fn id_of(request: &Received) -> String {
    request.record()["id"].as_str().unwrap().to_string()
}

#[tokio::test(start_paused = true)]
async fn retries_on_temporary_error() {
    let dir = temp_dir();
    let crm = FakeSink::with(|_, attempt| match attempt {
        1 => Reply::status(503),
        2 => Reply::status(500),
        3 => Reply::status(408),
        _ => Reply::status(200),
    })
    .await;
    let settings = sink("crm", &crm.url());
    let journal = open(dir.path(), &[&settings]);
    let id = append(&journal, &note("E1", 1)).await;
    let worker = start(&journal, &settings).await;
    crm.wait_accepted_within(1, HOURS).await;
    worker.wait_delivered("crm", 1).await;
    worker.shutdown().await;
    let requests = crm.requests();
    assert_eq!(
        requests.iter().map(|r| r.status).collect::<Vec<_>>(),
        [503, 500, 408, 200]
    );
    assert!(requests.iter().all(|r| id_of(r) == id));
    // Exponential backoff with full jitter: each wait within [1 s, 1 s × 2^n].
    for (n, pair) in requests.windows(2).enumerate() {
        let wait = pair[1].at - pair[0].at;
        assert!(
            wait >= Duration::from_secs(1) && wait <= Duration::from_secs(1 << n),
            "wait {n}: {wait:?}"
        );
    }
    assert_eq!(journal.stats().await.unwrap()[0].pending, 0);
    journal.close().await;
}

#[tokio::test(start_paused = true)]
async fn honours_retry_after() {
    let dir = temp_dir();
    let crm = FakeSink::with(|_, attempt| match attempt {
        1 => Reply {
            status: 429,
            retry_after: Some("42".into()),
        },
        _ => Reply::status(200),
    })
    .await;
    let settings = sink("crm", &crm.url());
    let journal = open(dir.path(), &[&settings]);
    append(&journal, &note("E1", 1)).await;
    let worker = start(&journal, &settings).await;
    crm.wait_accepted_within(1, HOURS).await;
    worker.wait_delivered("crm", 1).await;
    worker.shutdown().await;
    let requests = crm.requests();
    assert_eq!(requests.len(), 2);
    let wait = requests[1].at - requests[0].at;
    assert!(
        wait >= Duration::from_secs(42) && wait < Duration::from_secs(43),
        "{wait:?}"
    );
    journal.close().await;
}

#[tokio::test(start_paused = true)]
async fn retry_after_beyond_the_fast_window_goes_to_the_durable_tier() {
    let dir = temp_dir();
    let crm = FakeSink::with(|_, attempt| match attempt {
        1 => Reply {
            status: 503,
            retry_after: Some("600".into()),
        },
        _ => Reply::status(200),
    })
    .await;
    let settings = sink("crm", &crm.url());
    let journal = open(dir.path(), &[&settings]);
    append(&journal, &note("E1", 1)).await;
    let worker = start(&journal, &settings).await;
    crm.wait_accepted_within(1, HOURS).await;
    worker.wait_delivered("crm", 1).await;
    worker.shutdown().await;
    let requests = crm.requests();
    let wait = requests[1].at - requests[0].at;
    assert!(
        wait >= Duration::from_secs(600) && wait < Duration::from_secs(601),
        "{wait:?}"
    );
    journal.close().await;
}

#[tokio::test(start_paused = true)]
async fn dead_letters_on_permanent_error() {
    let dir = temp_dir();
    let crm = FakeSink::with(|request, _| {
        let record: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        if record["payload"]["object"]["note_id"] == "n2" {
            Reply::status(422)
        } else {
            Reply::status(200)
        }
    })
    .await;
    let settings = sink("crm", &crm.url());
    let journal = open(dir.path(), &[&settings]);
    for n in 1..=3 {
        append(&journal, &note(&format!("E{n}"), n)).await;
    }
    let worker = start(&journal, &settings).await;
    crm.wait_accepted_within(2, HOURS).await;
    worker.wait_delivered("crm", 2).await;
    worker.wait_dead("crm", 1).await;
    worker.shutdown().await;
    assert_eq!(crm.requests().len(), 3, "a permanent error is not retried");
    let stats = &journal.stats().await.unwrap()[0];
    assert_eq!((stats.pending, stats.dead), (0, 1));
    let dead = journal.dead_letters("crm", 100).await.unwrap();
    journal.close().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].letter.status, Some(422));
    assert_eq!(dead[0].letter.attempts, 1);
    assert!(
        dead[0].letter.reason.contains("422"),
        "{}",
        dead[0].letter.reason
    );
}

#[tokio::test(start_paused = true)]
async fn durable_retry_survives_restart() {
    let dir = temp_dir();
    let mut settings = sink("crm", "http://127.0.0.1:9/never");
    settings.retry_fast_window = Duration::from_secs(1);
    settings.retry_schedule = vec![Duration::from_secs(3600), Duration::from_secs(3600)];
    // First run: the sink's port is closed; after the fast window the record
    // is scheduled about an hour out.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    settings.kind = SinkKind::Http(HttpSinkSettings {
        url: format!("http://{}/hook", closed.local_addr().unwrap())
            .parse()
            .unwrap(),
        secret: None,
    });
    drop(closed);
    let journal = open(dir.path(), &[&settings]);
    append(&journal, &note("E1", 1)).await;
    let worker = start(&journal, &settings).await;
    let scheduled = tokio::time::timeout(Duration::from_secs(600), async {
        loop {
            if journal.stats().await.unwrap()[0].retrying == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        scheduled.is_ok(),
        "the record should reach the durable tier"
    );
    let scheduled_at = tokio::time::Instant::now();
    worker.shutdown().await;
    journal.close().await;
    drop(journal);

    // Second run: the sink works now, but the record waits for its stored time.
    let crm = FakeSink::ok().await;
    settings.kind = SinkKind::Http(HttpSinkSettings {
        url: crm.url().parse().unwrap(),
        secret: None,
    });
    let journal = open(dir.path(), &[&settings]);
    let worker = start(&journal, &settings).await;
    tokio::time::sleep(Duration::from_secs(40 * 60)).await;
    assert!(crm.requests().is_empty(), "retried before its stored time");
    crm.wait_accepted_within(1, HOURS).await;
    worker.wait_delivered("crm", 1).await;
    let waited = crm.requests()[0].at - scheduled_at;
    // The schedule's hour with ±20 % jitter.
    assert!(
        waited >= Duration::from_secs(48 * 60) && waited <= Duration::from_secs(73 * 60),
        "{waited:?}"
    );
    worker.shutdown().await;
    let stats = &journal.stats().await.unwrap()[0];
    assert_eq!((stats.pending, stats.retrying, stats.dead), (0, 0, 0));
    journal.close().await;
}

#[tokio::test(start_paused = true)]
async fn dead_letters_when_the_schedule_is_exhausted_unless_forever() {
    for forever in [false, true] {
        let dir = temp_dir();
        let crm = FakeSink::with(|_, _| Reply::status(503)).await;
        let mut settings = sink("crm", &crm.url());
        settings.retry_fast_window = Duration::from_secs(1);
        settings.retry_schedule = vec![Duration::from_secs(60), Duration::from_secs(120)];
        settings.retry_forever = forever;
        let journal = open(dir.path(), &[&settings]);
        append(&journal, &note("E1", 1)).await;
        let worker = start(&journal, &settings).await;
        if forever {
            // Hours later it is still pending and still being tried.
            tokio::time::sleep(Duration::from_secs(6 * 3600)).await;
            let stats = &journal.stats().await.unwrap()[0];
            assert_eq!((stats.pending, stats.dead), (1, 0));
            assert!(crm.requests().len() > 100, "{}", crm.requests().len());
        } else {
            worker.wait_dead("crm", 1).await;
            let stats = &journal.stats().await.unwrap()[0];
            assert_eq!((stats.pending, stats.dead), (0, 1));
            // Fast tier (1 s window: one or two attempts) + two durable steps.
            let tries = crm.requests().len();
            assert!((3..=4).contains(&tries), "{tries}");
            let dead = journal.dead_letters("crm", 10).await.unwrap();
            assert!(
                dead[0].letter.reason.contains("retry schedule exhausted"),
                "{}",
                dead[0].letter.reason
            );
            assert_eq!(dead[0].letter.status, Some(503));
        }
        worker.shutdown().await;
        journal.close().await;
    }
}

#[tokio::test(start_paused = true)]
async fn per_engagement_order_preserved() {
    let dir = temp_dir();
    // The first record of E1 fails twice; everything else succeeds at once.
    let crm = FakeSink::with(|request, attempt| {
        let record: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
        if record["payload"]["object"]["note_id"] == "n1" && attempt <= 2 {
            Reply::status(503)
        } else {
            Reply::status(200)
        }
    })
    .await;
    let settings = sink("crm", &crm.url());
    let journal = open(dir.path(), &[&settings]);
    let mut e1 = Vec::new();
    let mut e2 = Vec::new();
    for n in 1..=8 {
        let engagement = if n % 2 == 1 { "E1" } else { "E2" };
        let id = append(&journal, &note(engagement, n)).await;
        if engagement == "E1" {
            e1.push(id)
        } else {
            e2.push(id)
        }
    }
    let worker = start(&journal, &settings).await;
    crm.wait_accepted_within(8, HOURS).await;
    worker.wait_delivered("crm", 8).await;
    worker.shutdown().await;
    let accepted: Vec<String> = crm.accepted().iter().map(id_of).collect();
    let order = |ids: &[String]| {
        ids.iter()
            .map(|id| accepted.iter().position(|a| a == id).unwrap())
            .collect::<Vec<_>>()
    };
    let e1_positions = order(&e1);
    assert!(
        e1_positions.windows(2).all(|w| w[0] < w[1]),
        "E1 out of order: {accepted:?}"
    );
    // E2 was not held back by E1's retries: all of it went before E1's head.
    assert!(
        order(&e2).iter().all(|p| *p < e1_positions[0]),
        "E2 waited for E1: {accepted:?}"
    );
    journal.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_sink_unaffected_by_dead_sink() {
    let dir = temp_dir();
    let crm = FakeSink::ok().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    let healthy = sink("crm", &crm.url());
    let dead = sink("down", &dead_url);
    let journal = open(dir.path(), &[&healthy, &dead]);
    let n = 1000;
    for i in 0..n {
        append(&journal, &note(&format!("E{}", i % 50), i)).await;
    }
    let healthy_worker = start(&journal, &healthy).await;
    let dead_worker = start(&journal, &dead).await;
    let started = tokio::time::Instant::now();
    let all = n as u64;
    let delivered = tokio::time::timeout(
        Duration::from_secs(60),
        healthy_worker
            .stats
            .wait_until(|s| s.delivered_to("crm") >= all),
    )
    .await;
    assert!(
        delivered.is_ok(),
        "healthy sink got {} of {n}",
        healthy_worker.stats.snapshot().delivered_to("crm")
    );
    let took = started.elapsed();
    // Each of the dead sink's first records is still in its fast tier.
    assert!(took < Duration::from_secs(30), "healthy sink took {took:?}");
    let stats = journal.stats().await.unwrap();
    assert_eq!(stats[0].pending, 0);
    assert_eq!(
        stats[1].pending, n as u64,
        "the dead sink keeps every record"
    );
    assert_eq!(stats[1].dead, 0);
    healthy_worker.shutdown().await;
    dead_worker.shutdown().await;
    journal.close().await;
}

/// Holds every request until opened, counting how many it holds at once.
#[derive(Default)]
struct Gate {
    holding: std::sync::atomic::AtomicUsize,
    peak: std::sync::atomic::AtomicUsize,
    open: tokio::sync::Notify,
    opened: std::sync::atomic::AtomicBool,
}

async fn held(
    axum::extract::State(gate): axum::extract::State<Arc<Gate>>,
) -> axum::http::StatusCode {
    use std::sync::atomic::Ordering::SeqCst;
    let now = gate.holding.fetch_add(1, SeqCst) + 1;
    gate.peak.fetch_max(now, SeqCst);
    while !gate.opened.load(SeqCst) {
        let opened = gate.open.notified();
        if gate.opened.load(SeqCst) {
            break;
        }
        opened.await;
    }
    gate.holding.fetch_sub(1, SeqCst);
    axum::http::StatusCode::OK
}

// The worker gives a request slot back as soon as the sink answered (before
// the ack's commit); the sink must still never hold more than max_in_flight.
#[tokio::test(start_paused = true)]
async fn max_in_flight_bounds_the_requests_a_sink_holds() {
    use std::sync::atomic::Ordering::SeqCst;
    let gate = Arc::new(Gate::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(held))
        .with_state(gate.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let dir = temp_dir();
    let mut settings = sink("crm", &url);
    settings.max_in_flight = 3;
    let journal = open(dir.path(), &[&settings]);
    // One engagement each, so per-engagement order holds nothing back.
    for n in 0..20 {
        append(&journal, &note(&format!("E{n}"), n)).await;
    }
    let worker = start(&journal, &settings).await;
    let filled = tokio::time::timeout(HOURS, async {
        while gate.holding.load(SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(filled.is_ok(), "the sink never held 3 requests");
    // Time for a worker that miscounted its slots to send a fourth.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(gate.peak.load(SeqCst), 3);

    gate.opened.store(true, SeqCst);
    gate.open.notify_waiters();
    worker.wait_delivered("crm", 20).await;
    assert_eq!(gate.peak.load(SeqCst), 3, "more than max_in_flight at once");
    let pending = journal.stats().await.unwrap()[0].pending;
    assert_eq!(pending, 0, "every delivered record is acked");
    worker.shutdown().await;
    server.abort();
}

/// A record waiting for an in-memory retry is not in flight: shutdown does not
/// wait for its retry (nor for the drain deadline); it stays in the outbox.
#[tokio::test(start_paused = true)]
async fn shutdown_does_not_wait_for_a_record_between_retries() {
    let dir = temp_dir();
    let crm = FakeSink::always(503).await;
    let settings = sink("crm", &crm.url());
    let journal = open(dir.path(), &[&settings]);
    append(&journal, &note("E1", 1)).await;
    let worker = start(&journal, &settings).await;
    let retried = tokio::time::timeout(HOURS, async {
        while crm.requests().len() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(retried.is_ok(), "the sink saw the first retry");
    // Stop only (no abort): nothing is in flight, so the worker ends at once.
    let asked = tokio::time::Instant::now();
    worker.stop.cancel();
    worker.task.await.unwrap().unwrap();
    assert!(
        asked.elapsed() < Duration::from_millis(100),
        "shutdown waited {:?} for a retry",
        asked.elapsed()
    );
    let requests = crm.requests().len();
    let stats = journal.stats().await.unwrap();
    assert_eq!((stats[0].pending, stats[0].retrying), (1, 0));
    // Nothing more is sent after the stop.
    tokio::time::sleep(Duration::from_secs(120)).await;
    assert_eq!(crm.requests().len(), requests);
    journal.close().await;
}

/// The HTTP sink, except that its first attempt at record `panics_on`
/// panics (a bug in a sink).
struct PanicsOnce {
    inner: Sink,
    panics_on: String,
    panicked: std::sync::atomic::AtomicBool,
}

/// A test's own running sink: nothing to prove at start, nothing to reload.
macro_rules! no_setup {
    () => {
        async fn ready(&self) -> Result<(), Failure> {
            Ok(())
        }

        fn apply(&self, _: &SinkKind) -> anyhow::Result<()> {
            Ok(())
        }
    };
}

impl Running<SinkKind> for PanicsOnce {
    no_setup!();

    async fn deliver(&self, envelope: &Envelope) -> Result<(), zcc_relay::failure::Failure> {
        if envelope.webhook_id == self.panics_on
            && !self
                .panicked
                .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            panic!("a bug in the sink");
        }
        self.inner.deliver(envelope).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_delivery_that_panics_is_retried_and_does_not_stall_its_engagement() {
    let dir = temp_dir();
    let crm = FakeSink::ok().await;
    let settings = sink("crm", &crm.url());
    let journal = open(dir.path(), &[&settings]);
    let first = append(&journal, &note("E1", 1)).await;
    let second = append(&journal, &note("E1", 2)).await;
    let other = append(&journal, &note("E2", 3)).await;
    let sink = PanicsOnce {
        inner: build_sink(&settings).await,
        panics_on: first.clone(),
        panicked: Default::default(),
    };
    let worker = SinkWorker {
        settings: settings.clone(),
        sink: Arc::new(sink),
        journal: journal.clone(),
        stats: Stats::default(),
        health: Health::default(),
    };
    let stats = worker.stats.clone();
    let (stop, abort) = (CancellationToken::new(), CancellationToken::new());
    let task = tokio::spawn(worker.run(stop.clone(), abort.clone()));
    let waited =
        tokio::time::timeout(HOURS, stats.wait_until(|s| s.delivered_to("crm") >= 3)).await;
    assert!(waited.is_ok(), "every record delivered after the panic");
    stop.cancel();
    abort.cancel();
    task.await.unwrap().unwrap();
    let requests = crm.requests();
    let ids: Vec<String> = requests.iter().map(id_of).collect();
    // The panicked record was retried on the durable schedule (its first
    // step, 5 s ± 20 % by default), and its engagement's next record waited
    // for it; the other engagement did not.
    assert_eq!(ids.len(), 3, "{ids:?}");
    let at = |id: &str| ids.iter().position(|x| x == id).unwrap();
    assert!(at(&first) < at(&second), "{ids:?}");
    assert_eq!(at(&other), 0, "{ids:?}");
    let retried = requests[at(&first)].at - requests[at(&other)].at;
    assert!(retried >= Duration::from_secs(4), "{retried:?}");
    assert_eq!(journal.stats().await.unwrap()[0].pending, 0);
    journal.close().await;
}

type Script = dyn Fn(&Envelope, usize) -> Result<(), Failure> + Send + Sync;

/// A sink answered by a script (the envelope and how many calls came
/// before), recording every call's webhook ids.
struct Scripted {
    coalesce: usize,
    spread: usize,
    script: Box<Script>,
    calls: std::sync::Mutex<Vec<Vec<String>>>,
}

impl Scripted {
    fn new(
        coalesce: usize,
        script: impl Fn(&Envelope, usize) -> Result<(), Failure> + Send + Sync + 'static,
    ) -> Arc<Scripted> {
        Scripted::spreading(coalesce, 1, script)
    }

    /// Up to `spread` engagements per call.
    fn spreading(
        coalesce: usize,
        spread: usize,
        script: impl Fn(&Envelope, usize) -> Result<(), Failure> + Send + Sync + 'static,
    ) -> Arc<Scripted> {
        Arc::new(Scripted {
            coalesce,
            spread,
            script: Box::new(script),
            calls: Default::default(),
        })
    }

    fn calls(&self) -> Vec<Vec<String>> {
        self.calls.lock().unwrap().clone()
    }
}

impl Running<SinkKind> for Scripted {
    no_setup!();

    async fn deliver(&self, envelope: &Envelope) -> Result<(), Failure> {
        self.deliver_batch(std::slice::from_ref(envelope))
            .await
            .remove(0)
    }

    async fn deliver_batch(&self, envelopes: &[Envelope]) -> Vec<Result<(), Failure>> {
        let call = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(envelopes.iter().map(|e| e.webhook_id.clone()).collect());
            calls.len() - 1
        };
        envelopes.iter().map(|e| (self.script)(e, call)).collect()
    }

    fn coalesce(&self) -> usize {
        self.coalesce
    }

    fn spread(&self) -> usize {
        self.spread
    }
}

fn start_scripted(journal: &Journal, settings: &SinkSettings, sink: Arc<Scripted>) -> Worker {
    let worker = SinkWorker {
        settings: settings.clone(),
        sink,
        journal: journal.clone(),
        stats: Stats::default(),
        health: Health::default(),
    };
    let (stop, abort) = (CancellationToken::new(), CancellationToken::new());
    let stats = worker.stats.clone();
    let task = tokio::spawn(worker.run(stop.clone(), abort.clone()));
    Worker {
        stop,
        abort,
        task,
        stats,
    }
}

#[tokio::test(start_paused = true)]
async fn a_coalescing_sink_gets_an_engagements_pending_records_together_and_settles_each() {
    let dir = temp_dir();
    let settings = sink("crm", "http://127.0.0.1:9/unused");
    let journal = open(dir.path(), &[&settings]);
    let mut ids = Vec::new();
    for n in 1..=3 {
        ids.push(append(&journal, &note("E1", n)).await);
    }
    let other = append(&journal, &note("E2", 4)).await;
    // The record of E1 in the middle is refused with a vendor code; the rest
    // go through.
    let refused = ids[1].clone();
    let sink = Scripted::new(10, move |envelope, _| {
        if envelope.webhook_id == refused {
            Err(Failure::permanent("FIELD_CUSTOM_VALIDATION_EXCEPTION: no")
                .with_status(400)
                .with_code("FIELD_CUSTOM_VALIDATION_EXCEPTION"))
        } else {
            Ok(())
        }
    });
    let worker = start_scripted(&journal, &settings, sink.clone());
    worker.wait_delivered("crm", 3).await;
    worker.wait_dead("crm", 1).await;
    worker.shutdown().await;
    let calls = sink.calls();
    assert!(
        calls.contains(&ids),
        "E1's records in one call, in order: {calls:?}"
    );
    assert!(calls.contains(&vec![other]), "{calls:?}");
    assert_eq!(calls.len(), 2, "{calls:?}");
    let dead = journal.dead_letters("crm", 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].letter.code.as_deref(),
        Some("FIELD_CUSTOM_VALIDATION_EXCEPTION")
    );
    assert_eq!(dead[0].letter.status, Some(400));
    assert_eq!(journal.stats().await.unwrap()[0].pending, 0);
    journal.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_spreading_sink_gets_several_engagements_in_one_call_each_in_order() {
    let dir = temp_dir();
    let settings = sink("crm", "http://127.0.0.1:9/unused");
    let journal = open(dir.path(), &[&settings]);
    let mut ids = Vec::new();
    for (n, engagement) in ["E1", "E2", "E1", "E3", "E1", "E3"].iter().enumerate() {
        ids.push(append(&journal, &note(engagement, n + 1)).await);
    }
    // E2's record fails once: its retry is a call of its own.
    let flaky = ids[1].clone();
    let sink = Scripted::spreading(10, 2, move |envelope, call| {
        if envelope.webhook_id == flaky && call == 0 {
            Err(Failure::retry("HTTP 503").with_status(503))
        } else {
            Ok(())
        }
    });
    let worker = start_scripted(&journal, &settings, sink.clone());
    worker.wait_delivered("crm", 6).await;
    worker.shutdown().await;
    let calls = sink.calls();
    // E1 and E2 (two engagements) first, E1's in journal order; then E3's.
    let first = vec![
        ids[0].clone(),
        ids[2].clone(),
        ids[4].clone(),
        ids[1].clone(),
    ];
    assert_eq!(calls[0], first, "{calls:?}");
    assert!(
        calls.contains(&vec![ids[3].clone(), ids[5].clone()]),
        "{calls:?}"
    );
    assert!(calls.contains(&vec![ids[1].clone()]), "{calls:?}");
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert_eq!(journal.stats().await.unwrap()[0].pending, 0);
    journal.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_set_up_problem_keeps_records_pending_without_using_up_attempts() {
    let dir = temp_dir();
    let mut settings = sink("crm", "http://127.0.0.1:9/unused");
    settings.retry_schedule = vec![Duration::from_secs(60), Duration::from_secs(120)];
    settings.retry_forever = false;
    let journal = open(dir.path(), &[&settings]);
    let id = append(&journal, &note("E1", 1)).await;
    let sink = Scripted::new(1, |_, _| {
        Err(Failure::setup(
            "the field Zoom_Engagement_Id__c does not exist on Task",
        ))
    });
    let worker = start_scripted(&journal, &settings, sink.clone());
    // Hours later: still pending, never dead-lettered, tried on the last
    // delay of the schedule, attempts not used up.
    tokio::time::sleep(Duration::from_secs(3 * 3600)).await;
    let stats = &journal.stats().await.unwrap()[0];
    assert_eq!((stats.pending, stats.dead), (1, 0));
    let tries = sink.calls().len();
    // 3 h at 2 min (±20 %) after the first minute: about 90.
    assert!((60..=120).contains(&tries), "{tries}");
    let due = journal.read_due("crm", u64::MAX, 10).await.unwrap();
    assert_eq!((due[0].attempts, due[0].step), (0, 1));
    assert!(worker.stats.failing_sinks().borrow().contains("crm"));
    worker.shutdown().await;
    assert!(sink.calls().iter().all(|c| c == &vec![id.clone()]));
    journal.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_set_up_problem_is_kept_in_the_journal_until_the_next_success() {
    use std::sync::atomic::{AtomicU8, Ordering};
    let dir = temp_dir();
    let mut settings = sink("crm", "http://127.0.0.1:9/unused");
    settings.retry_schedule = vec![Duration::from_secs(60)];
    let journal = open(dir.path(), &[&settings]);
    append(&journal, &note("E1", 1)).await;
    // 0: the field is missing; 1: a permission is missing; 2: fixed.
    let state = Arc::new(AtomicU8::new(0));
    let org = state.clone();
    let sink = Scripted::new(1, move |_, _| match org.load(Ordering::SeqCst) {
        0 => Err(Failure::setup("create the field Zoom_Engagement_Id__c")),
        1 => Err(Failure::setup("give the user edit on Task")),
        _ => Ok(()),
    });
    let worker = start_scripted(&journal, &settings, sink.clone());
    tokio::time::sleep(Duration::from_secs(600)).await;
    let first = journal.setup_problem("crm").await.unwrap().expect("stored");
    assert_eq!(first.reason, "create the field Zoom_Engagement_Id__c");
    // Another set-up problem replaces it, keeping when it started.
    state.store(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(600)).await;
    let second = journal.setup_problem("crm").await.unwrap().expect("stored");
    assert_eq!(second.reason, "give the user edit on Task");
    assert_eq!(second.since_ms, first.since_ms);
    worker.shutdown().await;

    // Stored across a stop; the next run's first success removes it.
    assert_eq!(journal.setup_problem("crm").await.unwrap(), Some(second));
    state.store(2, Ordering::SeqCst);
    let worker = start_scripted(&journal, &settings, sink.clone());
    worker.wait_delivered("crm", 1).await;
    let cleared = tokio::time::timeout(HOURS, async {
        while journal.setup_problem("crm").await.unwrap().is_some() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(cleared.is_ok(), "still stored after the success");
    worker.shutdown().await;
    journal.close().await;
}

/// A call carrying several engagements (a spreading sink) where one fails
/// with a set-up problem and another succeeds: the success does not clear the
/// problem (the sink has not recovered), neither in the journal nor in the
/// set-up gauge.
#[tokio::test(start_paused = true)]
async fn a_success_beside_a_set_up_failure_in_one_call_keeps_the_problem() {
    let dir = temp_dir();
    let mut settings = sink("crm", "http://127.0.0.1:9/unused");
    settings.retry_schedule = vec![Duration::from_secs(600)];
    let journal = open(dir.path(), &[&settings]);
    let broken = append(&journal, &note("E1", 1)).await;
    append(&journal, &note("E2", 2)).await;
    let sink = Scripted::spreading(10, 2, move |envelope, _| {
        if envelope.webhook_id == broken {
            Err(Failure::setup("give the user edit on this Task's Contact"))
        } else {
            Ok(())
        }
    });
    let worker = start_scripted(&journal, &settings, sink.clone());
    worker.wait_delivered("crm", 1).await;
    // Well before E1's next try (600 s): what the one call left.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(sink.calls().len(), 1, "{:?}", sink.calls());
    let stored = journal.setup_problem("crm").await.unwrap();
    assert_eq!(
        stored.map(|p| p.reason).as_deref(),
        Some("give the user edit on this Task's Contact")
    );
    assert!(worker.stats.snapshot().setup_error_sinks.contains("crm"));
    assert_eq!(journal.stats().await.unwrap()[0].pending, 1);
    worker.shutdown().await;
    journal.close().await;
}

#[tokio::test(start_paused = true)]
async fn reauthentication_is_tried_once_at_once_then_is_a_set_up_problem() {
    let dir = temp_dir();
    let settings = sink("crm", "http://127.0.0.1:9/unused");
    let journal = open(dir.path(), &[&settings]);
    append(&journal, &note("E1", 1)).await;
    append(&journal, &note("E2", 2)).await;
    let sink = Scripted::new(1, |envelope, _| {
        if envelope.webhook_id.contains("E1") {
            // Refused once, then fine with the new token.
            static ONCE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
            if !ONCE.swap(true, std::sync::atomic::Ordering::SeqCst) {
                return Err(Failure::reauthenticate("HTTP 401").with_status(401));
            }
            Ok(())
        } else {
            Err(Failure::reauthenticate("HTTP 401").with_status(401))
        }
    });
    let worker = start_scripted(&journal, &settings, sink.clone());
    worker.wait_delivered("crm", 1).await;
    // E2: two refusals in a row → a set-up problem: durable, not dead.
    let waited = tokio::time::timeout(HOURS, async {
        while journal
            .read_due("crm", u64::MAX, 10)
            .await
            .unwrap()
            .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(waited.is_ok());
    let calls = sink.calls();
    let e1 = calls.iter().filter(|c| c[0].contains("E1")).count();
    assert_eq!(e1, 2, "retried at once: {calls:?}");
    let e2 = calls.iter().filter(|c| c[0].contains("E2")).count();
    assert_eq!(e2, 2, "once more, then on the durable schedule: {calls:?}");
    assert_eq!(journal.stats().await.unwrap()[0].dead, 0);
    worker.shutdown().await;
    journal.close().await;
}
