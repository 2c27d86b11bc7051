//! The Prometheus endpoint (`[metrics] listen`): `GET /metrics` in the
//! OpenMetrics text format, `GET /` a one-line pointer to it.
//!
//! Owns the series names and how each is derived; owns no counter. Hot-path
//! counts live in [`Stats`] (and the token cache); the connection state comes
//! from the source's watch; the journal-derived gauges (pending, retrying,
//! dead, oldest age, file size) are read at scrape time through one read
//! transaction, at most once per [`JOURNAL_CACHE`], so a scrape storm cannot
//! load the journal. Also parses this text back ([`parse`]) for `status`.
//!
//! The listener is the daemon's only inbound socket, so it is bounded: at most
//! [`MAX_CONNECTIONS`] at once (further clients wait in the kernel's accept
//! queue, holding none of our file descriptors), a request's headers must arrive
//! within [`HEADER_READ_TIMEOUT`], which is also how long a kept-alive
//! connection may sit idle, and no connection lives longer than
//! [`CONNECTION_LIFETIME`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::journal::{self, Journal};
use crate::source::ConnectionState;
use crate::telemetry::stats::Stats;
use crate::zoom::auth::TokenCache;

/// How long journal-derived figures are reused between scrapes.
pub const JOURNAL_CACHE: Duration = Duration::from_secs(2);

/// What `GET /metrics` answers with (the OpenMetrics text format, which
/// Prometheus reads natively).
pub const CONTENT_TYPE_OPENMETRICS: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every place a series is read from.
pub struct Sources {
    pub stats: Stats,
    pub state: watch::Receiver<ConnectionState>,
    pub tokens: TokenCache,
    pub journal: Journal,
    pub journal_dir: PathBuf,
    /// `reconcile.interval` when reconciliation is on; `None` leaves the
    /// sweep series out.
    pub reconcile_interval: Option<Duration>,
    /// `[standby]`: the lease's role; `None` leaves the lease series out.
    pub lease: Option<crate::lease::LeaseView>,
}

/// The journal's figures as of one read.
#[derive(Clone, Default)]
struct JournalFigures {
    sinks: Vec<journal::read::SinkStats>,
    /// The media stage's outbox.
    media: journal::read::SinkStats,
    records: u64,
    file_bytes: u64,
    /// Where the last completed reconciliation sweep ended (epoch ms).
    swept_until_ms: Option<u64>,
}

/// The journal's figures, read at most once per [`JOURNAL_CACHE`]; concurrent
/// scrapes wait for one read (single flight).
struct JournalGauges {
    journal: Journal,
    dir: PathBuf,
    cache: Mutex<Option<(Instant, JournalFigures)>>,
}

struct Endpoint {
    sources: Sources,
    /// `clock::now_ms` when the endpoint started: "seconds since the last
    /// event" counts from here until there is one.
    started_ms: u64,
    journal: JournalGauges,
    /// The token count as last read: the token cache holds its lock across a
    /// request to Zoom (single flight), and a scrape must not wait for that.
    token_refreshes: AtomicU64,
}

/// Scrape connections served at once. Far below the file-descriptor limit, so
/// inbound connections can never starve the daemon's own (Zoom, sinks, media).
pub const MAX_CONNECTIONS: usize = 32;
/// A request's headers must be complete within this; a kept-alive connection
/// idle for this long is closed too (a Prometheus scrape takes milliseconds).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest any one connection is served.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// How long a scrape waits for the token cache before using the last count.
const TOKEN_COUNT_WAIT: Duration = Duration::from_millis(50);

/// Binds the endpoint's socket (a startup failure if it cannot) and says where.
/// Port 0 takes any free port: the log line (and [`Stats`], once serving)
/// names the one bound, so tests never race for a port.
pub async fn bind(address: SocketAddr) -> anyhow::Result<TcpListener> {
    use anyhow::Context as _;
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen for metrics on {address} (metrics.listen)"))?;
    let listen = listener.local_addr().unwrap_or(address);
    tracing::info!(%listen, "metrics endpoint listening on /metrics");
    Ok(listener)
}

/// Serves until `cancel` fires.
pub async fn serve(listener: TcpListener, sources: Sources, cancel: CancellationToken) {
    if let Ok(address) = listener.local_addr() {
        sources.stats.metrics_listening(address);
    }
    let endpoint = Arc::new(Endpoint {
        journal: JournalGauges::new(sources.journal.clone(), sources.journal_dir.clone()),
        sources,
        started_ms: crate::clock::now_ms(),
        token_refreshes: AtomicU64::new(0),
    });
    let router = axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .route("/", axum::routing::get(index))
        .with_state(endpoint);
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        // A slot first, then the accept: past the cap, clients wait in the
        // kernel's queue, not in our descriptor table.
        let permit = tokio::select! {
            _ = cancel.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // EMFILE and the like: wait instead of spinning on the error.
                    tracing::debug!(error = %e, "metrics endpoint cannot accept a connection");
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    }
                }
            },
        };
        connections.spawn(serve_connection(
            stream,
            router.clone(),
            permit,
            cancel.clone(),
        ));
    }
    connections.close();
    // Scrapes in progress get a moment to finish; none holds up the stop.
    let _ = tokio::time::timeout(Duration::from_secs(1), connections.wait()).await;
}

/// One connection, under the endpoint's timeouts; `permit` is its slot.
async fn serve_connection(
    stream: tokio::net::TcpStream,
    router: axum::Router,
    permit: tokio::sync::OwnedSemaphorePermit,
    cancel: CancellationToken,
) {
    let _permit = permit;
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let connection = builder.serve_connection(
        hyper_util::rt::TokioIo::new(stream),
        hyper_util::service::TowerToHyperService::new(router),
    );
    tokio::pin!(connection);
    tokio::select! {
        _ = &mut connection => {}
        _ = tokio::time::sleep(CONNECTION_LIFETIME) => {}
        _ = cancel.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), connection).await;
        }
    }
}

async fn index() -> &'static str {
    "zcc-relay: Prometheus metrics are at /metrics\n"
}

async fn scrape(State(endpoint): State<Arc<Endpoint>>) -> axum::response::Response {
    let figures = endpoint.journal.figures().await;
    let refreshes = endpoint.token_refreshes().await;
    match render(&endpoint, &figures, refreshes) {
        Ok(text) => ([(CONTENT_TYPE, CONTENT_TYPE_OPENMETRICS)], text).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode metrics; answering 500");
            axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

impl Endpoint {
    async fn token_refreshes(&self) -> u64 {
        token_count(&self.sources.tokens, &self.token_refreshes).await
    }
}

/// The token cache's count, or `last` if the cache is busy with a request.
async fn token_count(tokens: &TokenCache, last: &AtomicU64) -> u64 {
    use std::sync::atomic::Ordering::Relaxed;
    match tokio::time::timeout(TOKEN_COUNT_WAIT, tokens.refreshes()).await {
        Ok(count) => {
            last.store(count, Relaxed);
            count
        }
        Err(_) => last.load(Relaxed),
    }
}

impl JournalGauges {
    fn new(journal: Journal, dir: PathBuf) -> JournalGauges {
        JournalGauges {
            journal,
            dir,
            cache: Mutex::new(None),
        }
    }

    async fn figures(&self) -> JournalFigures {
        let mut cache = self.cache.lock().await;
        if let Some((at, figures)) = cache.as_ref()
            && at.elapsed() < JOURNAL_CACHE
        {
            return figures.clone();
        }
        let journal = &self.journal;
        let sinks = match journal.stats().await {
            Ok(sinks) => sinks,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cannot read the journal's outboxes; sink gauges are left out of this scrape");
                Vec::new()
            }
        };
        let media = match journal.media_stats().await {
            Ok(media) => media,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cannot read the media outbox; reporting 0 in this scrape");
                Default::default()
            }
        };
        let records = match journal.stored_records().await {
            Ok(records) => records,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cannot count the journal's records; reporting 0 in this scrape");
                0
            }
        };
        let swept_until_ms = match journal.meta(crate::reconcile::SWEPT_UNTIL).await {
            Ok(value) => value
                .and_then(|v| v.try_into().ok())
                .map(u64::from_le_bytes),
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cannot read when the last sweep ran; counting from the endpoint's start in this scrape");
                None
            }
        };
        let dir = self.dir.clone();
        let file_bytes = tokio::task::spawn_blocking(move || journal::file_size(&dir))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(0);
        let figures = JournalFigures {
            sinks,
            media,
            records,
            file_bytes,
            swept_until_ms,
        };
        *cache = Some((Instant::now(), figures.clone()));
        figures
    }
}

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn counter(value: u64) -> Counter {
    let counter = Counter::default();
    counter.inc_by(value);
    counter
}

fn gauge(value: f64) -> Gauge<f64, AtomicU64> {
    let gauge = Gauge::<f64, AtomicU64>::default();
    gauge.set(value);
    gauge
}

fn seconds_between(earlier_ms: u64, now_ms: u64) -> f64 {
    now_ms.saturating_sub(earlier_ms) as f64 / 1000.0
}

/// Every series' name starts with this and an underscore.
pub const PREFIX: &str = "zcc_relay";

/// A series that is read back from the text (by `status`): its name as
/// registered here, from which the name in a scrape follows. Registering and
/// reading through the same constant means renaming a series cannot leave a
/// reader asking for the old name.
#[derive(Debug, Clone, Copy)]
pub struct Series {
    /// As registered, without the prefix.
    name: &'static str,
    /// What the encoder appends for the metric's type or unit.
    suffix: &'static str,
}

impl Series {
    const fn gauge(name: &'static str) -> Series {
        Series { name, suffix: "" }
    }

    const fn counter(name: &'static str) -> Series {
        Series {
            name,
            suffix: "_total",
        }
    }

    const fn seconds(name: &'static str) -> Series {
        Series {
            name,
            suffix: "_seconds",
        }
    }

    /// The sample name in a scrape (`zcc_relay_websocket_reconnects_total`).
    pub fn exposed(self) -> String {
        format!("{PREFIX}_{}{}", self.name, self.suffix)
    }
}

pub const WEBSOCKET_STATE: Series = Series::gauge("websocket_state");
pub const WEBSOCKET_RECONNECTS: Series = Series::counter("websocket_reconnects");
pub const WEBSOCKET_LAST_EVENT_AGE: Series = Series::seconds("websocket_last_event_age");
pub const WEBSOCKET_LAST_HEARTBEAT_REPLY_AGE: Series =
    Series::seconds("websocket_last_heartbeat_reply_age");
pub const TOKEN_REFRESHES: Series = Series::counter("token_refreshes");
pub const SINK_FAILING: Series = Series::gauge("sink_failing");
pub const SINK_SETUP_ERROR: Series = Series::gauge("sink_setup_error");
pub const RECONCILE_LAST_SWEEP_AGE: Series = Series::seconds("reconcile_last_sweep_age");
pub const LEASE_LEADER: Series = Series::gauge("lease_leader");
pub const LEASE_AGE: Series = Series::seconds("lease_age");
pub const LEASE_HOLDER: Series = Series::gauge("lease_holder");
pub const LEASE_ROLE_CHANGES: Series = Series::counter("lease_role_changes");
pub const LEASE_LEDGER_FALLBACKS: Series = Series::counter("lease_note_ledger_fallbacks");
pub const WEBSOCKET_EVICTIONS: Series = Series::counter("websocket_evictions");

/// The `state` label of `zcc_relay_websocket_state`: the source's
/// [`ConnectionState`] without its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketState {
    Connecting,
    AwaitingBuildConnection,
    Live,
    BackingOff,
    Standby,
    Stopped,
}

impl SocketState {
    /// In transition order.
    pub const ALL: [SocketState; 6] = [
        SocketState::Connecting,
        SocketState::AwaitingBuildConnection,
        SocketState::Live,
        SocketState::BackingOff,
        SocketState::Standby,
        SocketState::Stopped,
    ];

    pub fn of(state: &ConnectionState) -> SocketState {
        match state {
            ConnectionState::Connecting => SocketState::Connecting,
            ConnectionState::AwaitingBuildConnection => SocketState::AwaitingBuildConnection,
            ConnectionState::Live { .. } => SocketState::Live,
            ConnectionState::BackingOff { .. } => SocketState::BackingOff,
            ConnectionState::Standby => SocketState::Standby,
            ConnectionState::Stopped => SocketState::Stopped,
        }
    }

    /// The label value (also its JSON form in `status --json`).
    pub fn name(self) -> &'static str {
        match self {
            SocketState::Connecting => "connecting",
            SocketState::AwaitingBuildConnection => "awaiting_build_connection",
            SocketState::Live => "live",
            SocketState::BackingOff => "backing_off",
            SocketState::Standby => "standby",
            SocketState::Stopped => "stopped",
        }
    }

    /// The state a label value names, if any.
    pub fn from_name(name: &str) -> Option<SocketState> {
        SocketState::ALL
            .into_iter()
            .find(|state| state.name() == name)
    }
}

impl serde::Serialize for SocketState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// One scrape's text. A fresh registry per scrape: every value but the
/// latency histograms is a snapshot, so nothing is kept between scrapes.
/// Seconds from an RFC 3339 `received_at` to `now`; 0 when there is none.
fn age_since(received_at: Option<&str>, now: jiff::Timestamp) -> f64 {
    received_at
        .and_then(|at| at.parse::<jiff::Timestamp>().ok())
        .map_or(0.0, |at| now.duration_since(at).as_secs_f64().max(0.0))
}

fn render(
    endpoint: &Endpoint,
    figures: &JournalFigures,
    token_refreshes: u64,
) -> Result<String, std::fmt::Error> {
    let stats = endpoint.sources.stats.snapshot();
    let state = endpoint.sources.state.borrow().clone();
    let now_ms = crate::clock::now_ms();
    let mut registry = Registry::with_prefix(PREFIX);

    // The socket.
    let live = matches!(state, ConnectionState::Live { .. });
    registry.register(
        "websocket_connected",
        "1 while the Zoom WebSocket is live (build_connection answered), else 0",
        gauge(if live { 1.0 } else { 0.0 }),
    );
    let states = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let current = SocketState::of(&state);
    for each in SocketState::ALL {
        let value = if each == current { 1.0 } else { 0.0 };
        states
            .get_or_create(&labels(&[("state", each.name())]))
            .set(value);
    }
    registry.register(
        WEBSOCKET_STATE.name,
        "The connection's state: 1 for the current one",
        states,
    );
    registry.register(
        "websocket_connects",
        "Times the WebSocket went live since the daemon started",
        counter(stats.connects),
    );
    registry.register(
        WEBSOCKET_RECONNECTS.name,
        "Times the WebSocket went live again after the first connection",
        counter(stats.connects.saturating_sub(1)),
    );
    registry.register(
        WEBSOCKET_EVICTIONS.name,
        "Times Zoom gave the subscription to another connection (\"Connected in another place\")",
        counter(stats.evictions),
    );
    if let Some(lease) = &endpoint.sources.lease {
        let record = lease.record(now_ms);
        let leader = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        leader
            .get_or_create(&labels(&[("lease", &lease.lease)]))
            .set(if record.role == "leader" { 1.0 } else { 0.0 });
        registry.register(
            LEASE_LEADER.name,
            "[standby]: 1 while this relay holds the lease and may open the Zoom socket, 0 as the standby; lease = <bucket>/<key>, the same for both relays of a pair",
            leader,
        );
        registry.register_with_unit(
            LEASE_AGE.name,
            "[standby]: seconds since the current holder took the lease (0 when nobody holds it)",
            Unit::Seconds,
            gauge(
                record
                    .acquired_ms
                    .map_or(0.0, |at| seconds_between(at, now_ms)),
            ),
        );
        let holder = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        if let Some(name) = &record.holder {
            holder.get_or_create(&labels(&[("holder", name)])).set(1.0);
        }
        registry.register(
            LEASE_HOLDER.name,
            "[standby]: 1 for the relay (host:pid) that holds the lease, as this relay last saw it",
            holder,
        );
        registry.register(
            LEASE_ROLE_CHANGES.name,
            "[standby]: times this relay became leader or standby since it started",
            counter(stats.role_changes),
        );
        registry.register(
            LEASE_LEDGER_FALLBACKS.name,
            "[standby]: note versions this relay numbered itself: the pair's note ledger answered with an error, not within ttl/3, or rested after a timeout, or the relay stepped down while it waited; the other relay may number them otherwise",
            counter(stats.ledger_fallbacks),
        );
    }
    registry.register(
        "websocket_frames_refused",
        "Frames refused as malformed, oversized, binary or of an unknown module",
        counter(stats.bad_frames),
    );
    registry.register_with_unit(
        WEBSOCKET_LAST_EVENT_AGE.name,
        "Seconds since the last event was read from the socket (since start if none yet)",
        Unit::Seconds,
        gauge(seconds_between(
            stats.last_event_ms.unwrap_or(endpoint.started_ms),
            now_ms,
        )),
    );
    registry.register_with_unit(
        WEBSOCKET_LAST_HEARTBEAT_REPLY_AGE.name,
        "Seconds since Zoom last answered a heartbeat (since start if never)",
        Unit::Seconds,
        gauge(seconds_between(
            stats.last_heartbeat_reply_ms.unwrap_or(endpoint.started_ms),
            now_ms,
        )),
    );
    registry.register(
        TOKEN_REFRESHES.name,
        "OAuth access tokens fetched from Zoom",
        counter(token_refreshes),
    );

    // Events by type.
    let received = Family::<Labels, Counter>::default();
    let persisted = Family::<Labels, Counter>::default();
    let duplicates = Family::<Labels, Counter>::default();
    for (event, counts) in &stats.by_event {
        let set = labels(&[("event", event)]);
        received.get_or_create(&set).inc_by(counts.received);
        persisted.get_or_create(&set).inc_by(counts.persisted);
        duplicates.get_or_create(&set).inc_by(counts.duplicates);
    }
    registry.register(
        "events_received",
        "Event bodies read from the WebSocket, by event type",
        received,
    );
    registry.register(
        "events_persisted",
        "Events from the WebSocket committed to the journal as new records, by event type",
        persisted,
    );
    registry.register(
        "events_duplicates",
        "Events from the WebSocket suppressed as duplicates of a known natural key, by event type",
        duplicates,
    );

    // Reconciliation.
    let runs = Family::<Labels, Counter>::default();
    runs.get_or_create(&labels(&[("outcome", "ok")]))
        .inc_by(stats.reconcile_runs - stats.reconcile_failures);
    runs.get_or_create(&labels(&[("outcome", "failed")]))
        .inc_by(stats.reconcile_failures);
    registry.register(
        "reconcile_runs",
        "Reconciliation runs (gaps and sweeps) that ended, by outcome",
        runs,
    );
    let found_only = Family::<Labels, Counter>::default();
    for (event, n) in &stats.reconciled {
        found_only
            .get_or_create(&labels(&[("event", event)]))
            .inc_by(*n);
    }
    registry.register(
        "reconcile_new_records",
        "Records that only reconciliation found (the socket missed them), by event type",
        found_only,
    );
    if let Some(interval) = endpoint.sources.reconcile_interval {
        registry.register_with_unit(
            "reconcile_interval",
            "reconcile.interval: how often a sweep is due",
            Unit::Seconds,
            gauge(interval.as_secs_f64()),
        );
        registry.register_with_unit(
            RECONCILE_LAST_SWEEP_AGE.name,
            "Seconds since the end of the window the last completed sweep covered (since the endpoint started if none yet)",
            Unit::Seconds,
            gauge(seconds_between(
                figures.swept_until_ms.unwrap_or(endpoint.started_ms),
                now_ms,
            )),
        );
    }

    // Sinks: journal figures (cached), then in-process counts.
    let pending = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let retrying = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let dead = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let oldest = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let failing = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let setup_error = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let now = jiff::Timestamp::now();
    for sink in &figures.sinks {
        let set = labels(&[("sink", &sink.sink)]);
        pending.get_or_create(&set).set(sink.pending as f64);
        retrying.get_or_create(&set).set(sink.retrying as f64);
        dead.get_or_create(&set).set(sink.dead as f64);
        oldest
            .get_or_create(&set)
            .set(age_since(sink.oldest_pending.as_deref(), now));
        let is_failing = stats.failing_sinks.contains(&sink.sink);
        failing
            .get_or_create(&set)
            .set(if is_failing { 1.0 } else { 0.0 });
        let in_setup_error = stats.setup_error_sinks.contains(&sink.sink);
        setup_error
            .get_or_create(&set)
            .set(if in_setup_error { 1.0 } else { 0.0 });
    }
    registry.register(
        "sink_pending_records",
        "Records the sink still has to get, retrying ones included",
        pending,
    );
    registry.register(
        "sink_retrying_records",
        "Of the pending records, those waiting in the durable retry tier",
        retrying,
    );
    registry.register(
        "sink_dead_records",
        "Records in the sink's dead-letter (see zcc-relay queue dead)",
        dead,
    );
    registry.register_with_unit(
        "sink_oldest_pending_age",
        "Age of the sink's oldest pending record since it was received (0 when none)",
        Unit::Seconds,
        oldest,
    );
    registry.register(
        SINK_FAILING.name,
        "1 while the sink's last attempt failed temporarily and nothing was delivered since",
        failing,
    );
    registry.register(
        SINK_SETUP_ERROR.name,
        "1 while the sink's last failure was a set-up problem (credentials, a missing field or permission; see zcc-relay check) and nothing was delivered since",
        setup_error,
    );
    let delivered = Family::<Labels, Counter>::default();
    for ((sink, event), n) in &stats.delivered {
        delivered
            .get_or_create(&labels(&[("sink", sink), ("event", event)]))
            .inc_by(*n);
    }
    registry.register(
        "sink_delivered",
        "Records the sink confirmed (2xx, or written and synced), by event type",
        delivered,
    );
    let dead_lettered = Family::<Labels, Counter>::default();
    for (sink, n) in &stats.dead_lettered {
        dead_lettered
            .get_or_create(&labels(&[("sink", sink)]))
            .inc_by(*n);
    }
    registry.register(
        "sink_dead_lettered",
        "Records this run moved to the sink's dead-letter",
        dead_lettered,
    );
    registry.register_with_unit(
        "sink_delivery_latency",
        "Time from a record's received_at (just before it was persisted) to the sink's confirmation",
        Unit::Seconds,
        endpoint.sources.stats.latency().clone(),
    );

    // The media stage (its outbox in the journal).
    let media = &figures.media;
    registry.register(
        "media_pending_records",
        "Records waiting for their recordings, transcripts or voicemails to be stored before they go to the sinks",
        gauge(media.pending as f64),
    );
    registry.register(
        "media_retrying_records",
        "Of those, the ones waiting for a later attempt (file not available yet, Zoom or the store failing)",
        gauge(media.retrying as f64),
    );
    registry.register_with_unit(
        "media_oldest_pending_age",
        "Age of the oldest record waiting for its media since it was received (0 when none)",
        Unit::Seconds,
        gauge(age_since(media.oldest_pending.as_deref(), now)),
    );

    // The journal.
    registry.register_with_unit(
        "journal_file_size",
        "Size of journal.redb",
        Unit::Bytes,
        gauge(figures.file_bytes as f64),
    );
    registry.register(
        "journal_records",
        "Records held in the journal for at least one sink",
        gauge(figures.records as f64),
    );

    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(text)
}

/// One sample of a scrape: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The samples of a scrape (comments skipped; lines it cannot read are
/// skipped too: `status` shows what it can).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        None => (series, BTreeMap::new()),
        Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}')?)?),
    };
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// `k="v",k2="v2"` with `\"`, `\\` and `\n` escapes in values.
fn parse_labels(mut text: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    while !text.is_empty() {
        let (key, rest) = text.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.trim_start_matches(',').to_string(), value);
        text = &rest[end + 1..];
        text = text.strip_prefix(',').unwrap_or(text);
    }
    Some(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Expected<'a> = Option<(&'a str, &'a [(&'a str, &'a str)], f64)>;

    fn check(line: &str, expected: Expected) {
        let got = parse_line(line);
        let expected = expected.map(|(name, labels, value)| Sample {
            name: name.to_string(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
        });
        assert_eq!(got, expected, "{line}");
    }

    fn route(name: &str) -> crate::journal::SinkRoute {
        crate::journal::SinkRoute {
            name: name.to_string(),
            filter: crate::route::EventFilter::new(Vec::new()),
        }
    }

    fn record(id: &str) -> crate::record::NewRecord {
        crate::record::NewRecord {
            id: id.into(),
            event: "contact_center.x".into(),
            event_ts: 1,
            source: crate::record::Source::Websocket,
            received_at: "2026-01-01T00:00:00.000Z".into(),
            payload: serde_json::value::RawValue::from_string("{}".into()).unwrap(),
            version: None,
            view: Default::default(),
        }
    }

    /// A burst of scrapes reads the journal once; a scrape after the cache
    /// period sees what changed.
    #[tokio::test(start_paused = true)]
    async fn journal_figures_are_read_at_most_once_per_cache_period() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path(), vec![route("crm")]).unwrap();
        let gauges = JournalGauges::new(journal.clone(), dir.path().to_path_buf());
        let pending = |figures: &JournalFigures| figures.sinks[0].pending;
        assert_eq!(pending(&gauges.figures().await), 0);
        journal.append(record("a")).await.unwrap();
        tokio::time::advance(JOURNAL_CACHE / 2).await;
        let cached = gauges.figures().await;
        assert_eq!(
            (pending(&cached), cached.records),
            (0, 0),
            "served from the cache"
        );
        tokio::time::advance(JOURNAL_CACHE / 2).await;
        let fresh = gauges.figures().await;
        assert_eq!((pending(&fresh), fresh.records), (1, 1));
        assert_eq!(
            fresh.file_bytes,
            std::fs::metadata(dir.path().join(journal::DB_FILE))
                .unwrap()
                .len()
        );
        journal.close().await;
    }

    /// A token request hanging on Zoom holds the cache's lock; the scrape
    /// answers with the last count instead of waiting for it.
    #[tokio::test]
    async fn a_hanging_token_request_does_not_hold_up_a_scrape() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = silent.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let (socket, _) = silent.accept().await.unwrap();
            std::future::pending::<()>().await;
            drop(socket);
        });
        let tls = crate::tls::client_config().unwrap();
        let http = crate::tls::http_client(&tls, Duration::from_secs(60)).unwrap();
        let tokens = TokenCache::new(
            http,
            crate::zoom::auth::Credentials {
                oauth_url: format!("http://{address}/oauth/token").parse().unwrap(),
                account_id: "a".into(),
                client_id: "c".into(),
                client_secret: crate::config::Secret::new("s".into()),
            },
        );
        let last = AtomicU64::new(0);
        assert_eq!(token_count(&tokens, &last).await, 0);
        last.store(7, std::sync::atomic::Ordering::Relaxed);
        let requesting = tokio::spawn({
            let tokens = tokens.clone();
            async move { tokens.token().await.map(|_| ()) }
        });
        // Wait until the request holds the lock (its connection is accepted).
        while tokio::time::timeout(Duration::from_millis(1), tokens.refreshes())
            .await
            .is_ok()
        {
            tokio::task::yield_now().await;
        }
        let started = std::time::Instant::now();
        assert_eq!(token_count(&tokens, &last).await, 7);
        assert!(started.elapsed() < Duration::from_secs(1));
        requesting.abort();
        held.abort();
    }

    /// Every series `status` reads back is in a scrape under the name it
    /// asks for (the encoder's `_total` and unit suffixes included).
    #[tokio::test]
    async fn series_read_back_are_in_a_scrape_under_their_exposed_names() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path(), vec![route("crm")]).unwrap();
        let (_state, state) = watch::channel(ConnectionState::Live { since_ms: 0 });
        let tls = crate::tls::client_config().unwrap();
        let http = crate::tls::http_client(&tls, Duration::from_secs(1)).unwrap();
        let tokens = TokenCache::new(
            http,
            crate::zoom::auth::Credentials {
                oauth_url: "http://127.0.0.1:1/oauth/token".parse().unwrap(),
                account_id: "a".into(),
                client_id: "c".into(),
                client_secret: crate::config::Secret::new("s".into()),
            },
        );
        let endpoint = Endpoint {
            journal: JournalGauges::new(journal.clone(), dir.path().to_path_buf()),
            sources: Sources {
                stats: Stats::default(),
                state,
                tokens,
                journal: journal.clone(),
                journal_dir: dir.path().to_path_buf(),
                reconcile_interval: Some(Duration::from_secs(3600)),
                lease: None,
            },
            started_ms: 0,
            token_refreshes: AtomicU64::new(0),
        };
        endpoint.sources.stats.sink_setup_error("crm", true);
        let swept_until = crate::clock::now_ms() - 5_000;
        journal
            .set_meta(
                crate::reconcile::SWEPT_UNTIL,
                swept_until.to_le_bytes().to_vec(),
            )
            .await
            .unwrap();
        let figures = endpoint.journal.figures().await;
        let text = render(&endpoint, &figures, 0).unwrap();
        let samples = parse(&text);
        let value = |name: &str| {
            samples
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.value)
                .unwrap_or_else(|| panic!("{name} is not in a scrape:\n{text}"))
        };
        assert_eq!(value("zcc_relay_sink_setup_error"), 1.0);
        assert_eq!(value("zcc_relay_reconcile_interval_seconds"), 3600.0);
        let sweep_age = value(&RECONCILE_LAST_SWEEP_AGE.exposed());
        assert!((5.0..60.0).contains(&sweep_age), "{sweep_age}");
        for series in [
            WEBSOCKET_STATE,
            WEBSOCKET_RECONNECTS,
            WEBSOCKET_LAST_EVENT_AGE,
            WEBSOCKET_LAST_HEARTBEAT_REPLY_AGE,
            TOKEN_REFRESHES,
            SINK_FAILING,
            SINK_SETUP_ERROR,
            RECONCILE_LAST_SWEEP_AGE,
        ] {
            let name = series.exposed();
            assert!(
                samples.iter().any(|s| s.name == name),
                "{name} is not in a scrape:\n{text}"
            );
        }
        let live: Vec<_> = samples
            .iter()
            .filter(|s| s.name == WEBSOCKET_STATE.exposed() && s.value == 1.0)
            .filter_map(|s| SocketState::from_name(&s.labels["state"]))
            .collect();
        assert_eq!(live, [SocketState::Live]);
        journal.close().await;
    }

    #[test]
    fn parses_sample_lines() {
        check(
            "zcc_relay_websocket_connected 1",
            Some(("zcc_relay_websocket_connected", &[], 1.0)),
        );
        check(
            "zcc_relay_sink_delivered_total{sink=\"crm\",event=\"contact_center.x\"} 12",
            Some((
                "zcc_relay_sink_delivered_total",
                &[("sink", "crm"), ("event", "contact_center.x")],
                12.0,
            )),
        );
        check(
            "a{v=\"q\\\"uo,te\\\\\"} 0.5",
            Some(("a", &[("v", "q\"uo,te\\")], 0.5)),
        );
        check(
            "a_bucket{le=\"+Inf\"} 3",
            Some(("a_bucket", &[("le", "+Inf")], 3.0)),
        );
        check("a{v=\"x\"", None);
        check("a notanumber", None);
        check("nospace", None);
    }
}
