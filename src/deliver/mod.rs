//! Per-sink delivery: one worker per sink consumes that sink's outbox
//! through the shared consumer loop (`consumer`), keeps up to
//! `max_in_flight` deliveries going, and settles every record in the journal:
//! delivered (ack), refused (dead-letter), or failed for now (durable retry at
//! a stored time).
//!
//! The sink's [`Failure`] class decides (DESIGN §3.5):
//! - `Retry`: first retried in memory with exponential backoff (no sooner
//!   than the remote's `after`) for `retry_fast_window`; after that the
//!   record's next attempt time is written to the journal (`retry_schedule`,
//!   ±20 %), so it survives restarts and holds no task while it waits. When
//!   the schedule is used up (and `retry_forever` is off) the record is
//!   dead-lettered with the last error, status and code.
//! - `Reauthenticate`: retried once at once (the sink fetched a new token); a
//!   second one in a row is a set-up problem.
//! - `Permanent`: dead-lettered with the reason, status and vendor code.
//! - `Setup`: the record stays pending on the durable schedule, repeating its
//!   last delay whatever `retry_forever` says; it never uses up attempts and is
//!   never dead-lettered. The sink is marked failing and the fix is logged
//!   once per failing period, and kept in the journal
//!   ([`SetupProblem`](crate::journal::SetupProblem)) until the sink's next
//!   success, for `zcc-relay status`.
//!
//! A delivery task that panics has its records retried on the durable
//! schedule like a `Retry` failure, so neither they nor their engagement wait
//! for a restart. Records of one engagement are delivered in journal order;
//! a sink that coalesces ([`Running::coalesce`](crate::sink::Running::coalesce)) gets those due together in
//! one call and settles each one, and one that spreads
//! ([`Running::spread`](crate::sink::Running::spread)) gets several engagements' in one call during a
//! backlog.
//!
//! Sinks are isolated: each worker has its own cursor, lanes, permits and retry
//! state. Memory is bounded: outbox reads are batched, at most `max_in_flight`
//! deliveries are in flight and at most [`MAX_HELD`] records wait behind busy
//! engagements.

pub mod consumer;
mod lane;
pub mod schedule;

pub use consumer::MAX_HELD;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::clock;
use crate::config::SinkSettings;
use crate::failure::{Class, Failure};
use crate::journal::{DeadLetter, Journal, JournalError, Pending, SetupProblem};
use crate::record::{RecordHeader, View};
use crate::service::Health;
use crate::sink::{Registry, Running, SinkKind};
use crate::telemetry::stats::Stats;
use consumer::{Handler, Settled, Slot};

/// Outbox rows read per batch.
const BATCH: usize = 256;
/// In-memory retry delays for a temporary failure.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// A backlog whose oldest record is older than this is worth a warning.
const BACKLOG_WARN_AGE: Duration = Duration::from_secs(3600);
const BACKLOG_CHECK_EVERY: Duration = Duration::from_secs(60);

/// One record as a sink gets it.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub seq: u64,
    /// The forwarded record, exactly as stored: shared, never copied per
    /// attempt.
    pub bytes: Arc<[u8]>,
    /// The idempotency key (`webhook-id`): the natural key for revision 1,
    /// `id~N` for revision N.
    pub webhook_id: String,
    /// The record's engagement (its ordering lane), when it has one.
    pub lane: Option<String>,
    /// What the record is about, without Zoom's JSON.
    pub view: Arc<View>,
}

/// Generic over the sink registry and the running sink only so that a test can
/// bring its own kinds or wrap a sink; the daemon's are [`SinkKind`] and its
/// [`Sink`](crate::sink::Sink).
pub struct SinkWorker<R: Registry = SinkKind, S: Running<R> = <R as Registry>::Sink> {
    pub settings: SinkSettings<R>,
    pub sink: Arc<S>,
    pub journal: Journal,
    pub stats: Stats,
    /// Where the worker's heartbeat registers, for the watchdog. (Its
    /// failing/recovered transitions go to `stats`.)
    pub health: Health,
}

/// Shared by a worker's in-flight deliveries.
struct Context<R: Registry, S> {
    settings: SinkSettings<R>,
    sink: Arc<S>,
    journal: Journal,
    stats: Stats,
    health: Mutex<SinkHealth>,
    /// The set-up problem stored in the journal; held across its write so
    /// that a success and a set-up failure in flight together store in the
    /// order they decided.
    setup_stored: tokio::sync::Mutex<Option<SetupProblem>>,
}

/// Failing/recovered bookkeeping, so the log says it once per transition.
#[derive(Default)]
struct SinkHealth {
    failing_since: Option<Instant>,
    failures: u64,
    /// The set-up problem was logged in this failing period.
    setup_logged: bool,
    backlog_warned: bool,
}

impl<R: Registry, S: Running<R>> SinkWorker<R, S> {
    /// Delivers until `stop` fires, then lets in-flight deliveries finish until
    /// `abort` fires. Undelivered records stay in the outbox.
    pub async fn run(
        self,
        stop: CancellationToken,
        abort: CancellationToken,
    ) -> Result<(), JournalError> {
        let heartbeat = self.health.register(format!("sink {}", self.settings.name));
        // One stored by an earlier run is cleared by this run's first success.
        let setup_stored = self.journal.setup_problem(&self.settings.name).await?;
        if setup_stored.is_some() {
            self.stats.sink_setup_error(&self.settings.name, true);
        }
        let context = Arc::new(Context {
            setup_stored: tokio::sync::Mutex::new(setup_stored),
            settings: self.settings,
            sink: self.sink,
            journal: self.journal.clone(),
            stats: self.stats,
            health: Mutex::new(SinkHealth::default()),
        });
        consumer::run(context, self.journal, heartbeat, stop, abort).await
    }
}

impl<R: Registry, S: Running<R>> Handler for Context<R, S> {
    fn outbox(&self) -> &str {
        &self.settings.name
    }

    fn describe(&self) -> String {
        format!("sink {}", self.settings.name)
    }

    fn max_in_flight(&self) -> usize {
        self.settings.max_in_flight
    }

    fn read_batch(&self) -> usize {
        // A sink that writes several engagements at once sees more of a
        // backlog's engagements per read (memory stays within MAX_HELD).
        if self.sink.spread() > 1 {
            MAX_HELD
        } else {
            BATCH
        }
    }

    fn ordered(&self) -> bool {
        true
    }

    fn batch(&self) -> usize {
        self.sink.coalesce()
    }

    fn spread(&self) -> usize {
        self.sink.spread()
    }

    async fn handle(
        self: Arc<Self>,
        records: Vec<Pending>,
        slot: Slot,
        stop: CancellationToken,
        abort: CancellationToken,
    ) -> Result<Vec<(u64, Settled)>, JournalError> {
        deliver(&self, records, slot, &stop, &abort).await
    }

    async fn panicked(self: Arc<Self>, pending: Pending) -> Result<Settled, JournalError> {
        let failure = Failure::retry("the delivery task failed on this record (internal error)");
        let attempts = pending.attempts + 1;
        let id = header_id(&pending);
        self.durable(&pending, &id, attempts, &failure).await
    }

    async fn check(self: Arc<Self>) -> Result<(), JournalError> {
        self.check_backlog().await
    }

    fn check_every(&self) -> Option<Duration> {
        Some(BACKLOG_CHECK_EVERY)
    }
}

/// The record id for logs (empty when the record is unreadable).
fn header_id(pending: &Pending) -> String {
    serde_json::from_slice::<RecordHeader>(&pending.bytes)
        .map(|h| h.id.into_owned())
        .unwrap_or_default()
}

/// One record of a delivery call, while it is not settled.
struct Attempt {
    pending: Pending,
    envelope: Envelope,
    id: String,
    event: String,
    attempts: u32,
    /// A `Reauthenticate` answer was just retried.
    reauthenticated: bool,
}

/// An accepted record whose ack is queued in the journal.
struct Acked {
    seq: u64,
    event: String,
    age: Option<f64>,
    commit: tokio::sync::oneshot::Receiver<Result<(), JournalError>>,
}

/// Delivers records (one, or several of one or more engagements): in-memory retries
/// within the fast window (a record already in the durable tier gets one
/// attempt per step), then the durable tier or the dead-letter.
///
/// `slot` is the call's place among the sink's `max_in_flight` requests.
/// Once every record is accepted or settled it is given back as soon as the
/// acks are queued in the journal, not when their commit returns: the sink
/// gets its next request while the commit syncs. The records' lane (their
/// engagement) stays held until the commit returned, and acks commit in the
/// order they were queued, so a crash before the commit re-sends these
/// records and every later one of their engagement, in their order.
async fn deliver<R: Registry, S: Running<R>>(
    context: &Context<R, S>,
    records: Vec<Pending>,
    mut slot: Slot,
    stop: &CancellationToken,
    abort: &CancellationToken,
) -> Result<Vec<(u64, Settled)>, JournalError> {
    let name = context.settings.name.as_str();
    let mut settled = Vec::with_capacity(records.len());
    let mut open = Vec::with_capacity(records.len());
    for pending in records {
        let header: RecordHeader = match serde_json::from_slice(&pending.bytes) {
            Ok(header) => header,
            Err(e) => {
                tracing::error!(sink = %name, seq = pending.seq, error = %e, "dead-lettering unreadable record");
                let letter = DeadLetter::now(
                    format!("stored record is unreadable: {e}"),
                    None,
                    None,
                    pending.attempts,
                );
                context
                    .journal
                    .dead_letter(name, pending.seq, letter)
                    .await?;
                settled.push((pending.seq, Settled::Done));
                continue;
            }
        };
        let envelope = Envelope {
            seq: pending.seq,
            bytes: pending.bytes.clone(),
            webhook_id: header.webhook_id(),
            lane: pending.view.engagement_id.clone(),
            view: pending.view.clone(),
        };
        open.push(Attempt {
            id: header.id.to_string(),
            event: header.event.to_string(),
            attempts: pending.attempts,
            reauthenticated: false,
            envelope,
            pending,
        });
    }
    let started = Instant::now();
    let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
    let mut rng = StdRng::from_os_rng();
    let mut acked: Vec<Acked> = Vec::new();
    // A set-up failure among this call's records: a success of another
    // record of the same call (a batch of several engagements) does not
    // mean the sink recovered.
    let mut setup_seen = false;
    while !open.is_empty() {
        let envelopes: Vec<Envelope> = open.iter().map(|a| a.envelope.clone()).collect();
        let outcomes = tokio::select! {
            _ = abort.cancelled() => {
                settled.extend(open.iter().map(|a| (a.pending.seq, Settled::Aborted)));
                break;
            }
            outcomes = context.sink.deliver_batch(&envelopes) => outcomes,
        };
        drop(envelopes);
        let mut again = Vec::new();
        let mut failed: Vec<(Attempt, Failure)> = Vec::new();
        let mut outcomes = outcomes.into_iter();
        for mut attempt in open.drain(..) {
            let outcome = outcomes
                .next()
                .unwrap_or_else(|| Err(Failure::retry("the sink gave no answer for this record")));
            let failure = match outcome {
                Ok(()) => {
                    // Latency is to the sink's confirmation, not to the ack's
                    // commit.
                    let age = serde_json::from_slice::<RecordHeader>(&attempt.pending.bytes)
                        .ok()
                        .and_then(|h| h.age_seconds());
                    let commit = context
                        .journal
                        .submit_ack(name, attempt.pending.seq)
                        .await?;
                    // Only the event name is kept while the commit syncs.
                    acked.push(Acked {
                        seq: attempt.pending.seq,
                        event: attempt.event,
                        age,
                        commit,
                    });
                    continue;
                }
                Err(failure) => failure,
            };
            match failure.class {
                Class::Permanent => {
                    attempt.attempts += 1;
                    tracing::warn!(sink = %name, event = %attempt.event, record_id = %attempt.id, error = %failure.reason, code = failure.code.as_deref().unwrap_or(""), attempts = attempt.attempts, "sink refused record; moved to dead-letter");
                    let letter = DeadLetter::now(
                        failure.reason,
                        failure.status,
                        failure.code,
                        attempt.attempts,
                    );
                    context
                        .journal
                        .dead_letter(name, attempt.pending.seq, letter)
                        .await?;
                    context.stats.dead_lettered(name);
                    settled.push((attempt.pending.seq, Settled::Done));
                }
                Class::Reauthenticate if !attempt.reauthenticated => {
                    attempt.attempts += 1;
                    attempt.reauthenticated = true;
                    tracing::debug!(sink = %name, record_id = %attempt.id, error = %failure.reason, "credentials refused; retrying at once with new ones");
                    again.push(attempt);
                }
                Class::Reauthenticate => {
                    // Refused twice in a row: the credentials are wrong.
                    let failure = Failure {
                        class: Class::Setup,
                        reason: format!("the credentials were refused twice: {}", failure.reason),
                        ..failure
                    };
                    failed.push((attempt, failure));
                }
                Class::Setup => failed.push((attempt, failure)),
                Class::Retry { .. } => {
                    attempt.attempts += 1;
                    attempt.reauthenticated = false;
                    failed.push((attempt, failure));
                }
            }
        }
        if !again.is_empty() {
            open = again;
            open.extend(failed.into_iter().map(|(a, _)| a));
            continue;
        }
        let Some((_, first)) = failed.first() else {
            break;
        };
        let setup = failed
            .iter()
            .find(|(_, f)| f.class == Class::Setup)
            .map(|(_, f)| f.reason.clone());
        let after = failed.iter().filter_map(|(_, f)| f.retry_after()).max();
        let reason = first.reason.clone();
        context.failing(&reason, setup.as_deref());
        if let Some(fix) = &setup {
            setup_seen = true;
            context.store_setup(Some(fix)).await?;
        }
        let setup = setup.is_some();
        let delay = after.unwrap_or_else(|| backoff.next(&mut rng));
        let in_fast_window = !setup
            && failed.iter().all(|(a, _)| a.pending.step == 0)
            && started.elapsed() + delay <= context.settings.retry_fast_window;
        if in_fast_window {
            for (attempt, _) in &failed {
                tracing::debug!(sink = %name, event = %attempt.event, record_id = %attempt.id, error = %reason, attempts = attempt.attempts, ?delay, "delivery failed; retrying");
            }
            open = failed.into_iter().map(|(a, _)| a).collect();
            // A record waiting to retry is not in flight: shutdown does not
            // wait for it (it stays in the outbox for the next start).
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = abort.cancelled() => {}
                _ = tokio::time::sleep(delay) => continue,
            }
            settled.extend(open.iter().map(|a| (a.pending.seq, Settled::Aborted)));
            break;
        }
        for (attempt, failure) in failed {
            let how = context
                .durable(&attempt.pending, &attempt.id, attempt.attempts, &failure)
                .await?;
            settled.push((attempt.pending.seq, how));
        }
        break;
    }
    slot.free();
    for ack in acked {
        ack.commit.await.map_err(|_| JournalError::Closed)??;
        context.stats.delivered(name, &ack.event);
        if let Some(seconds) = ack.age {
            context.stats.delivery_latency(name, seconds);
        }
        if !setup_seen {
            context.recovered().await?;
        }
        settled.push((ack.seq, Settled::Done));
    }
    Ok(settled)
}

impl<R: Registry, S: Running<R>> Context<R, S> {
    /// After the in-memory tier: the record's next attempt goes to the
    /// durable tier, or (its schedule used up) the record to the dead-letter.
    /// A set-up failure repeats the schedule's last delay for as long as it
    /// lasts and never uses up attempts.
    async fn durable(
        &self,
        pending: &Pending,
        id: &str,
        attempts: u32,
        failure: &Failure,
    ) -> Result<Settled, JournalError> {
        let name = self.settings.name.as_str();
        let setup = failure.class == Class::Setup;
        let mut rng = StdRng::from_os_rng();
        match schedule::durable_delay(
            &self.settings.retry_schedule,
            pending.step,
            self.settings.retry_forever || setup,
            &mut rng,
        ) {
            Some(durable) => {
                let wait = durable.max(failure.retry_after().unwrap_or_default());
                let due = clock::now_ms() + wait.as_millis() as u64;
                // A set-up problem does not count against the record, and
                // keeps its place on the schedule's last step.
                let (attempts, step) = if setup {
                    let last = self.settings.retry_schedule.len().saturating_sub(1) as u32;
                    (
                        pending.attempts,
                        (pending.step + 1).min(last.max(pending.step)),
                    )
                } else {
                    (attempts, pending.step + 1)
                };
                tracing::debug!(sink = %name, record_id = %id, error = %failure.reason, attempts, retry_in = ?wait, "delivery failed; scheduled a durable retry");
                self.journal
                    .schedule(name, pending.seq, attempts, step, due)
                    .await?;
                Ok(Settled::Scheduled)
            }
            None => {
                let reason = format!(
                    "retry schedule exhausted after {attempts} attempts; last error: {}",
                    failure.reason
                );
                tracing::warn!(sink = %name, record_id = %id, error = %reason, "moved to dead-letter");
                let letter =
                    DeadLetter::now(reason, failure.status, failure.code.clone(), attempts);
                self.journal.dead_letter(name, pending.seq, letter).await?;
                self.stats.dead_lettered(name);
                Ok(Settled::Done)
            }
        }
    }

    /// `setup`: the set-up problem among the failures, naming its fix.
    fn failing(&self, reason: &str, setup: Option<&str>) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        health.failures += 1;
        // Set by a set-up failure; cleared only by a success (`recovered`):
        // a plain retry in between leaves the problem standing.
        if setup.is_some() {
            self.stats.sink_setup_error(&self.settings.name, true);
        }
        if health.failing_since.is_none() {
            health.failing_since = Some(Instant::now());
            self.stats.sink_failing(&self.settings.name, true);
            tracing::warn!(sink = %self.settings.name, error = %reason, "sink failing; records wait in its outbox and are retried");
        }
        if let Some(fix) = setup
            && !health.setup_logged
        {
            health.setup_logged = true;
            tracing::error!(sink = %self.settings.name, fix = %fix, "sink set-up problem: every record stays pending until it is fixed");
        }
    }

    /// Keeps the journal's set-up problem of the sink in step: `Some` while
    /// the sink fails on one (a new reason replaces the stored one, keeping
    /// its `since`), `None` after a success. A problem seen by an attempt
    /// that a success overtook is not stored: the sink is no longer failing.
    async fn store_setup(&self, fix: Option<&str>) -> Result<(), JournalError> {
        let mut stored = self.setup_stored.lock().await;
        let problem = match fix {
            Some(reason) => {
                let failing = self
                    .health
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .failing_since
                    .is_some();
                if !failing || stored.as_ref().is_some_and(|s| s.reason == reason) {
                    return Ok(());
                }
                Some(SetupProblem {
                    reason: reason.to_owned(),
                    since_ms: stored.as_ref().map_or_else(clock::now_ms, |s| s.since_ms),
                })
            }
            None if stored.is_none() => return Ok(()),
            None => None,
        };
        self.journal
            .set_setup_problem(&self.settings.name, problem.as_ref())
            .await?;
        *stored = problem;
        Ok(())
    }

    /// After a success: if the sink was failing, log (once) that it recovered,
    /// for how long it failed and how many records were waiting for it.
    async fn recovered(&self) -> Result<(), JournalError> {
        // Also clears a set-up error `ready()` reported at start.
        self.stats.sink_setup_error(&self.settings.name, false);
        let failed = {
            let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
            let failed = health
                .failing_since
                .take()
                .map(|since| (since, health.failures));
            health.failures = 0;
            health.setup_logged = false;
            failed
        };
        self.store_setup(None).await?;
        let Some((since, failures)) = failed else {
            return Ok(());
        };
        let name = &self.settings.name;
        self.stats.sink_failing(name, false);
        let waiting = self
            .journal
            .stats()
            .await?
            .into_iter()
            .find(|s| &s.sink == name)
            .map_or(0, |s| s.pending);
        let failed_for = humantime::format_duration(Duration::from_secs(since.elapsed().as_secs()));
        tracing::info!(sink = %name, failed_attempts = failures, failed_for = %failed_for, waiting, "sink recovered; delivering what waited");
        Ok(())
    }

    /// Warns once when the oldest pending record passes [`BACKLOG_WARN_AGE`],
    /// and once more when the backlog is back under it.
    async fn check_backlog(&self) -> Result<(), JournalError> {
        let name = &self.settings.name;
        let stats = self.journal.stats().await?;
        let Some(stats) = stats.into_iter().find(|s| &s.sink == name) else {
            return Ok(());
        };
        let age = stats
            .oldest_pending
            .as_deref()
            .and_then(|at| at.parse::<jiff::Timestamp>().ok())
            .map(|at| {
                Duration::from_millis(
                    clock::now_ms().saturating_sub(at.as_millisecond().max(0) as u64),
                )
            });
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        match age {
            Some(age) if age > BACKLOG_WARN_AGE && !health.backlog_warned => {
                health.backlog_warned = true;
                let oldest = humantime::format_duration(Duration::from_secs(age.as_secs()));
                tracing::warn!(sink = %name, pending = stats.pending, retrying = stats.retrying, oldest = %oldest, "sink backlog is old");
            }
            Some(age) if age <= BACKLOG_WARN_AGE && health.backlog_warned => {
                health.backlog_warned = false;
                tracing::info!(sink = %name, pending = stats.pending, "sink backlog caught up");
            }
            None if health.backlog_warned => health.backlog_warned = false,
            _ => {}
        }
        Ok(())
    }
}
