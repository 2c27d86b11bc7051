//! Per-sink delivery: one worker per sink reads that sink's outbox in journal
//! order, keeps up to `max_in_flight` deliveries going, retries temporary
//! failures with backoff, and acks or dead-letters each record in the journal.
//!
//! Sinks are isolated: each worker has its own cursor, concurrency and retry
//! state, so a sink that is down holds back nobody else. Memory is bounded: a
//! worker reads the outbox in batches and only as fast as permits free up.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::SinkSettings;
use crate::journal::{DeadLetter, Journal, JournalError, Pending};
use crate::record::{RecordHeader, now_rfc3339};
use crate::sink::{Sink, SinkError};
use crate::telemetry::stats::Stats;

/// Outbox rows read per batch.
const BATCH: usize = 256;
/// In-memory retry delays for a temporary failure.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

pub struct SinkWorker {
    pub settings: SinkSettings,
    pub sink: Arc<Sink>,
    pub journal: Journal,
    pub stats: Stats,
}

/// Shared by a worker's in-flight deliveries.
struct Context {
    name: String,
    sink: Arc<Sink>,
    journal: Journal,
    stats: Stats,
    health: Mutex<Health>,
}

/// Failing/recovered bookkeeping, so the log says it once per transition.
#[derive(Default)]
struct Health {
    failing_since: Option<Instant>,
    failures: u64,
}

impl SinkWorker {
    /// Delivers until `stop` fires, then lets in-flight deliveries finish until
    /// `abort` fires. Undelivered records stay in the outbox.
    pub async fn run(
        self,
        stop: CancellationToken,
        abort: CancellationToken,
    ) -> Result<(), JournalError> {
        let context = Arc::new(Context {
            name: self.settings.name.clone(),
            sink: self.sink,
            journal: self.journal.clone(),
            stats: self.stats,
            health: Mutex::new(Health::default()),
        });
        let permits = Arc::new(Semaphore::new(self.settings.max_in_flight));
        let mut in_flight: JoinSet<Result<(), JournalError>> = JoinSet::new();
        let mut committed = self.journal.committed();
        let mut cursor = 0u64;
        let result = 'pull: loop {
            // Mark the current commit as seen *before* reading, so a commit that
            // lands after the read wakes us.
            committed.borrow_and_update();
            let batch = match self.journal.read_outbox(&context.name, cursor, BATCH).await {
                Ok(batch) => batch,
                Err(e) => break 'pull Err(e),
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = stop.cancelled() => break 'pull Ok(()),
                    changed = committed.changed() => if changed.is_err() { break 'pull Ok(()) },
                    Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                        if let Err(e) = flatten(done) { break 'pull Err(e) }
                    }
                }
                continue;
            }
            for pending in batch {
                let permit = tokio::select! {
                    _ = stop.cancelled() => break 'pull Ok(()),
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break 'pull Ok(()),
                    },
                };
                cursor = pending.seq;
                let context = context.clone();
                let abort = abort.clone();
                in_flight.spawn(async move {
                    let _permit = permit;
                    deliver(&context, pending, &abort).await
                });
                while let Some(done) = in_flight.try_join_next() {
                    if let Err(e) = flatten(done) {
                        break 'pull Err(e);
                    }
                }
            }
        };
        // Drain: in-flight deliveries run on until they finish or `abort` fires
        // (each one watches it), so this join is bounded by the drain deadline.
        while let Some(done) = in_flight.join_next().await {
            if let Err(e) = flatten(done) {
                tracing::error!(sink = %context.name, error = %e, "journal failed while finishing deliveries");
            }
        }
        result
    }
}

fn flatten(
    done: Result<Result<(), JournalError>, tokio::task::JoinError>,
) -> Result<(), JournalError> {
    match done {
        Ok(result) => result,
        // A panicking delivery is a bug; its record stays in the outbox.
        Err(e) => {
            tracing::error!(error = %e, "delivery task failed");
            Ok(())
        }
    }
}

/// Delivers one record, retrying temporary failures in memory until it is
/// delivered, refused for good, or `abort` fires (then it stays in the outbox).
async fn deliver(
    context: &Context,
    pending: Pending,
    abort: &CancellationToken,
) -> Result<(), JournalError> {
    let name = context.name.as_str();
    let header: RecordHeader = match serde_json::from_slice(&pending.bytes) {
        Ok(header) => header,
        Err(e) => {
            let letter = letter(
                format!("stored record is unreadable: {e}"),
                None,
                pending.attempts,
            );
            tracing::error!(sink = %name, seq = pending.seq, error = %e, "dead-lettering unreadable record");
            return context.journal.dead_letter(name, pending.seq, letter).await;
        }
    };
    let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
    let mut rng = StdRng::from_os_rng();
    let mut attempts = pending.attempts;
    loop {
        let outcome = tokio::select! {
            _ = abort.cancelled() => return Ok(()),
            outcome = context.sink.deliver(&header, &pending.bytes) => outcome,
        };
        attempts += 1;
        match outcome {
            Ok(()) => {
                context.journal.ack(name, pending.seq).await?;
                context.stats.delivered(name, &header.event);
                context.recovered();
                return Ok(());
            }
            Err(SinkError::Permanent { reason, status }) => {
                tracing::warn!(sink = %name, record_id = %header.id, error = %reason, attempts, "sink refused record; moved to dead-letter");
                context.stats.dead_lettered(name);
                return context
                    .journal
                    .dead_letter(name, pending.seq, letter(reason, status, attempts))
                    .await;
            }
            Err(SinkError::Retryable { reason, after, .. }) => {
                context.failing(&reason);
                let delay = after.unwrap_or_else(|| backoff.next(&mut rng));
                tracing::debug!(sink = %name, record_id = %header.id, error = %reason, attempts, ?delay, "delivery failed; will retry");
                tokio::select! {
                    _ = abort.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
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

impl Context {
    fn failing(&self, reason: &str) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        health.failures += 1;
        if health.failing_since.is_none() {
            health.failing_since = Some(Instant::now());
            tracing::warn!(sink = %self.name, error = %reason, "sink failing; records wait in its outbox and are retried");
        }
    }

    fn recovered(&self) {
        let mut health = self.health.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(since) = health.failing_since.take() {
            let failed_for =
                humantime::format_duration(Duration::from_secs(since.elapsed().as_secs()));
            tracing::info!(sink = %self.name, failed_attempts = health.failures, failed_for = %failed_for, "sink recovered");
            health.failures = 0;
        }
    }
}
