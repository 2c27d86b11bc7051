//! Per-sink delivery: one worker per sink reads that sink's outbox in journal
//! order, keeps up to `max_in_flight` deliveries going, and settles every
//! record in the journal: delivered (ack), refused (dead-letter), or failed for
//! now (durable retry at a stored time).
//!
//! Retries come in two tiers. A temporary failure is first retried in memory
//! with exponential backoff for `retry_fast_window`; after that the record's
//! next attempt time is written to the journal (`retry_schedule`, ±20 %), so it
//! survives restarts and holds no task while it waits. When the schedule is
//! used up (and `retry_forever` is off) the record is dead-lettered with the
//! last error. Records of one engagement are delivered in journal order (see
//! `lane`).
//!
//! Sinks are isolated: each worker has its own cursor, lanes, permits and retry
//! state. Memory is bounded: outbox reads are batched, at most `max_in_flight`
//! records are in flight and at most [`MAX_HELD`] wait behind busy engagements.

mod lane;
mod schedule;

pub use lane::lane_of;

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::clock;
use crate::config::SinkSettings;
use crate::failure::{Class, Failure};
use crate::journal::{DeadLetter, Journal, JournalError, Pending};
use crate::record::{RecordHeader, now_rfc3339};
use crate::service::Health;
use crate::sink::{Registry, Running, SinkKind};
use crate::telemetry::stats::Stats;
use lane::Lanes;

/// Outbox rows read per batch.
const BATCH: usize = 256;
/// Records held in memory behind busy engagements before the worker stops
/// reading ahead.
pub const MAX_HELD: usize = 1024;
/// In-memory retry delays for a temporary failure.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// A backlog whose oldest record is older than this is worth a warning.
const BACKLOG_WARN_AGE: Duration = Duration::from_secs(3600);
const BACKLOG_CHECK_EVERY: Duration = Duration::from_secs(60);

/// Generic over the sink registry only so that a test can bring its own kinds;
/// the daemon's is [`SinkKind`].
pub struct SinkWorker<R: Registry = SinkKind> {
    pub settings: SinkSettings<R>,
    pub sink: Arc<R::Sink>,
    pub journal: Journal,
    pub stats: Stats,
    /// Where the worker's heartbeat registers, for the watchdog. (Its
    /// failing/recovered transitions go to `stats`.)
    pub health: Health,
}

/// Shared by a worker's in-flight deliveries.
struct Context<R: Registry> {
    settings: SinkSettings<R>,
    sink: Arc<R::Sink>,
    journal: Journal,
    stats: Stats,
    health: Mutex<SinkHealth>,
    /// Signalled when a delivery gives its request slot back before its task
    /// ends (after a 2xx, while the ack commits), so the worker can hand the
    /// slot to the next ready record at once.
    slot_freed: tokio::sync::Notify,
}

/// Failing/recovered bookkeeping, so the log says it once per transition.
#[derive(Default)]
struct SinkHealth {
    failing_since: Option<Instant>,
    failures: u64,
    backlog_warned: bool,
}

/// How one delivery task settled its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Settled {
    /// Acked or dead-lettered: the record's lane moves on.
    Done,
    /// Waiting in the durable tier: its lane stays held.
    Scheduled,
    /// Stopped by the drain deadline, or shutdown began while it waited for
    /// an in-memory retry: stays in the outbox as it was.
    Aborted,
}

struct Finished {
    seq: u64,
    lane: Option<String>,
    settled: Settled,
}

impl<R: Registry> SinkWorker<R> {
    /// Delivers until `stop` fires, then lets in-flight deliveries finish until
    /// `abort` fires. Undelivered records stay in the outbox.
    pub async fn run(
        self,
        stop: CancellationToken,
        abort: CancellationToken,
    ) -> Result<(), JournalError> {
        let name = self.settings.name.clone();
        let context = Arc::new(Context {
            settings: self.settings,
            sink: self.sink,
            journal: self.journal.clone(),
            stats: self.stats,
            health: Mutex::new(SinkHealth::default()),
            slot_freed: tokio::sync::Notify::new(),
        });
        let mut heartbeat = self.health.register(format!("sink {name}"));
        let journal = &self.journal;
        // Each queued record travels with its lane, parsed once from its bytes.
        let mut lanes: Lanes<(Option<String>, Pending)> = Lanes::default();
        // Records waiting in the durable tier from an earlier run still hold
        // their engagements back.
        let mut after = None;
        loop {
            let batch = journal.read_waiting(&name, after, BATCH).await?;
            let Some((ms, last)) = batch.last().map(|(ms, p)| (*ms, p.seq)) else {
                break;
            };
            after = Some((ms, last));
            for (_, pending) in &batch {
                if let Some(lane) = lane_of(&pending.bytes) {
                    lanes.occupy(&lane);
                }
            }
        }

        let permits = Arc::new(Semaphore::new(context.settings.max_in_flight));
        let mut tasks: JoinSet<Result<Finished, JournalError>> = JoinSet::new();
        let mut in_flight: HashSet<u64> = HashSet::new();
        let mut ready: VecDeque<(Option<String>, Pending)> = VecDeque::new();
        let mut committed = journal.committed();
        let mut cursor = 0u64;
        let mut backlog_check = tokio::time::interval(BACKLOG_CHECK_EVERY);
        let result: Result<(), JournalError> = 'work: loop {
            if ready.is_empty() {
                // Durable retries that came due go first: they are the oldest.
                for pending in journal.read_due(&name, clock::now_ms(), BATCH).await? {
                    if !in_flight.contains(&pending.seq) {
                        ready.push_back((lane_of(&pending.bytes), pending));
                    }
                }
            }
            let mut read_new = false;
            if ready.is_empty() && lanes.waiting() < MAX_HELD {
                // Mark the current commit as seen *before* reading, so a commit
                // that lands after the read wakes us.
                committed.borrow_and_update();
                let (batch, last) = journal.read_outbox(&name, cursor, BATCH).await?;
                read_new = last != cursor;
                cursor = last;
                for pending in batch {
                    let lane = lane_of(&pending.bytes);
                    let key = lane.clone();
                    if let Some(item) = lanes.admit(key.as_deref(), (lane, pending)) {
                        ready.push_back(item);
                    }
                }
            }
            while !ready.is_empty() {
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    break;
                };
                let Some((lane, pending)) = ready.pop_front() else {
                    break;
                };
                in_flight.insert(pending.seq);
                let (context, stop, abort) = (context.clone(), stop.clone(), abort.clone());
                tasks.spawn(async move {
                    deliver(&context, pending, lane, permit, &stop, &abort).await
                });
            }
            if read_new && ready.is_empty() && lanes.waiting() < MAX_HELD {
                continue; // more of the outbox may be ready right away
            }
            // The earliest durable retry not being attempted right now (one in
            // flight stays in the due index until it settles; waking for it
            // would spin until then).
            let next_due = if ready.is_empty() {
                journal.next_due_except(&name, &in_flight).await?
            } else {
                None
            };
            let due_at = next_due.map(clock::instant_at);
            tokio::select! {
                _ = stop.cancelled() => break 'work Ok(()),
                changed = committed.changed(), if ready.is_empty() && lanes.waiting() < MAX_HELD => {
                    if changed.is_err() { break 'work Ok(()) }
                }
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    match done {
                        Ok(Ok(finished)) => {
                            in_flight.remove(&finished.seq);
                            if finished.settled == Settled::Done
                                && let Some(lane) = &finished.lane
                                && let Some(next) = lanes.finish(lane)
                            {
                                ready.push_front(next);
                            }
                        }
                        Ok(Err(e)) => break 'work Err(e),
                        // A panicking delivery is a bug; its record stays in the
                        // outbox for the next start, its lane stays held.
                        Err(e) => tracing::error!(sink = %name, error = %e, "delivery task failed"),
                    }
                }
                _ = context.slot_freed.notified(), if !ready.is_empty() => {}
                _ = tokio::time::sleep_until(due_at.unwrap_or_else(Instant::now)), if due_at.is_some() => {}
                _ = backlog_check.tick() => context.check_backlog().await?,
                _ = heartbeat.tick() => {}
            }
        };
        // Drain: in-flight deliveries run on until they finish or `abort` fires
        // (each one watches it), so this join is bounded by the drain deadline.
        while let Some(done) = tasks.join_next().await {
            if let Ok(Err(e)) = done {
                tracing::error!(sink = %name, error = %e, "journal failed while finishing deliveries");
            }
        }
        result
    }
}

/// Delivers one record: in-memory retries within the fast window (a record
/// already in the durable tier gets one attempt per step), then the durable
/// tier or the dead-letter.
///
/// `permit` is the record's slot among the sink's `max_in_flight` requests.
/// After a 2xx it is given back as soon as the ack is queued in the journal,
/// not when the ack's commit returns: the sink gets its next request while
/// the commit syncs. The record's lane (its engagement) stays held until the
/// commit returned, and acks commit in the order they were queued, so a crash
/// before the commit re-sends this record and every later one of its
/// engagement, in their order.
async fn deliver<R: Registry>(
    context: &Context<R>,
    pending: Pending,
    lane: Option<String>,
    permit: tokio::sync::OwnedSemaphorePermit,
    stop: &CancellationToken,
    abort: &CancellationToken,
) -> Result<Finished, JournalError> {
    let name = context.settings.name.as_str();
    let seq = pending.seq;
    let finished = |settled| Finished {
        seq,
        lane: lane.clone(),
        settled,
    };
    let header: RecordHeader = match serde_json::from_slice(&pending.bytes) {
        Ok(header) => header,
        Err(e) => {
            tracing::error!(sink = %name, seq, error = %e, "dead-lettering unreadable record");
            let letter = letter(
                format!("stored record is unreadable: {e}"),
                None,
                pending.attempts,
            );
            context.journal.dead_letter(name, seq, letter).await?;
            return Ok(finished(Settled::Done));
        }
    };
    let started = Instant::now();
    let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
    let mut rng = StdRng::from_os_rng();
    let mut attempts = pending.attempts;
    loop {
        let outcome = tokio::select! {
            _ = abort.cancelled() => return Ok(finished(Settled::Aborted)),
            outcome = context.sink.deliver(&header, &pending.bytes) => outcome,
        };
        attempts += 1;
        let failure = match outcome {
            Ok(()) => {
                // Latency is to the sink's confirmation, not to the ack's commit.
                let age = header.age_seconds();
                let ack = context.journal.submit_ack(name, seq).await?;
                drop(permit);
                context.slot_freed.notify_one();
                // Only the event name is kept while the commit syncs.
                let event = header.event.to_string();
                drop(pending);
                ack.await.map_err(|_| JournalError::Closed)??;
                context.stats.delivered(name, &event);
                if let Some(seconds) = age {
                    context.stats.delivery_latency(name, seconds);
                }
                context.recovered().await?;
                return Ok(finished(Settled::Done));
            }
            Err(Failure {
                class: Class::Permanent,
                reason,
                status,
                ..
            }) => {
                tracing::warn!(sink = %name, event = %header.event, record_id = %header.id, error = %reason, attempts, "sink refused record; moved to dead-letter");
                context
                    .journal
                    .dead_letter(name, seq, letter(reason, status, attempts))
                    .await?;
                context.stats.dead_lettered(name);
                return Ok(finished(Settled::Done));
            }
            Err(failure) => failure,
        };
        let setup = failure.class == Class::Setup;
        let after = failure.retry_after();
        let Failure { reason, status, .. } = failure;
        context.failing(&reason);
        let delay = after.unwrap_or_else(|| backoff.next(&mut rng));
        let in_fast_window = !setup
            && pending.step == 0
            && started.elapsed() + delay <= context.settings.retry_fast_window;
        if in_fast_window {
            tracing::debug!(sink = %name, event = %header.event, record_id = %header.id, error = %reason, attempts, ?delay, "delivery failed; retrying");
            // A record waiting to retry is not in flight: shutdown does not
            // wait for it (it stays in the outbox for the next start).
            tokio::select! {
                _ = stop.cancelled() => return Ok(finished(Settled::Aborted)),
                _ = abort.cancelled() => return Ok(finished(Settled::Aborted)),
                _ = tokio::time::sleep(delay) => continue,
            }
        }
        let settings = &context.settings;
        match schedule::durable_delay(
            &settings.retry_schedule,
            pending.step,
            // A set-up problem never uses up the schedule (docs/contract.md §3.5).
            settings.retry_forever || setup,
            &mut rng,
        ) {
            Some(durable) => {
                let wait = durable.max(after.unwrap_or_default());
                let due = clock::now_ms() + wait.as_millis() as u64;
                tracing::debug!(sink = %name, event = %header.event, record_id = %header.id, error = %reason, attempts, retry_in = ?wait, "delivery failed; scheduled a durable retry");
                context
                    .journal
                    .schedule(name, seq, attempts, pending.step + 1, due)
                    .await?;
                return Ok(finished(Settled::Scheduled));
            }
            None => {
                let reason = format!(
                    "retry schedule exhausted after {attempts} attempts; last error: {reason}"
                );
                tracing::warn!(sink = %name, event = %header.event, record_id = %header.id, error = %reason, "moved to dead-letter");
                context
                    .journal
                    .dead_letter(name, seq, letter(reason, status, attempts))
                    .await?;
                context.stats.dead_lettered(name);
                return Ok(finished(Settled::Done));
            }
        }
    }
}

fn letter(reason: String, status: Option<u16>, attempts: u32) -> DeadLetter {
    DeadLetter {
        reason,
        status,
        attempts,
        at: now_rfc3339(),
    }
}

impl<R: Registry> Context<R> {
    fn failing(&self, reason: &str) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        health.failures += 1;
        if health.failing_since.is_none() {
            health.failing_since = Some(Instant::now());
            self.stats.sink_failing(&self.settings.name, true);
            tracing::warn!(sink = %self.settings.name, error = %reason, "sink failing; records wait in its outbox and are retried");
        }
    }

    /// After a success: if the sink was failing, log (once) that it recovered,
    /// for how long it failed and how many records were waiting for it.
    async fn recovered(&self) -> Result<(), JournalError> {
        let failed = {
            let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
            let failed = health
                .failing_since
                .take()
                .map(|since| (since, health.failures));
            health.failures = 0;
            failed
        };
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
