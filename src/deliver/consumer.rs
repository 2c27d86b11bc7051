//! The one outbox consumer loop, shared by every sink worker and the media
//! stage: read the durable retries that came due, read the outbox after the
//! cursor, hand records to tasks within `max_in_flight`, sleep until the next
//! commit, finished task, freed slot or due retry, and drain on shutdown.
//!
//! What a record's task does is the [`Handler`]'s business (a sink delivers
//! and settles, the media stage fetches and enriches); the loop owns the
//! bookkeeping every consumer needs:
//! - per-engagement lanes ([`Handler::ordered`]): a record whose engagement
//!   has one in flight or waiting in the durable tier is held back, at most
//!   [`MAX_HELD`] of them, in journal order;
//! - batching ([`Handler::batch`]): a task may get several records of one
//!   engagement at once, those held behind its lane (all due now; a record
//!   waiting for a later durable retry is never pulled forward), and settles
//!   each one on its own; with [`Handler::spread`] above 1 it gets the ready
//!   records of several engagements at once (a backlog: whatever is ready
//!   when a slot frees, never waiting for more), each engagement's still in
//!   journal order;
//! - a task that panics never stalls its records or their lane: the handler
//!   settles them ([`Handler::panicked`]) as a failed attempt;
//! - a task's [`Slot`] can be freed before the task ends (a sink frees it as
//!   soon as its acks are queued), which wakes the loop at once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::lane::Lanes;
use crate::clock;
use crate::journal::{Journal, JournalError, Pending};
use crate::service::Heartbeat;

/// Records held in memory behind busy engagements before the loop stops
/// reading ahead.
pub const MAX_HELD: usize = 1024;

/// How a task settled one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Done with (acked, dead-lettered, handed on): its lane moves on.
    Done,
    /// Waiting in the durable tier: its lane stays held until it is done.
    Scheduled,
    /// Stopped by shutdown: stays in the outbox as it was.
    Aborted,
}

/// A task's request slot among the consumer's `max_in_flight`.
pub struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    freed: Arc<Notify>,
}

impl Slot {
    /// Gives the slot back before the task ends, and wakes the loop so the
    /// next ready record gets it at once.
    pub fn free(&mut self) {
        if self.permit.take().is_some() {
            self.freed.notify_one();
        }
    }
}

/// What a consumer does with its records.
pub trait Handler: Send + Sync + 'static {
    /// The journal outbox it consumes (a sink's name, or `journal::MEDIA`).
    fn outbox(&self) -> &str;
    /// How the loop names itself in logs (`sink crm`, `media stage`).
    fn describe(&self) -> String;
    /// Tasks at once.
    fn max_in_flight(&self) -> usize;
    /// Outbox rows read at once.
    fn read_batch(&self) -> usize;
    /// Whether records of one engagement are handled in journal order.
    fn ordered(&self) -> bool;
    /// At most this many records of one engagement in one task (1: one
    /// record per task). Only with [`ordered`](Handler::ordered).
    fn batch(&self) -> usize {
        1
    }
    /// At most this many engagements in one task (1: one engagement per
    /// task). Only with [`ordered`](Handler::ordered).
    fn spread(&self) -> usize {
        1
    }
    /// Handles `records` (one, or several: of at most
    /// [`spread`](Handler::spread) engagements, each one's in journal order)
    /// and says how each one settled. `stop`: shutdown began (a
    /// task waiting to retry ends); `abort`: the drain deadline passed.
    fn handle(
        self: Arc<Self>,
        records: Vec<Pending>,
        slot: Slot,
        stop: CancellationToken,
        abort: CancellationToken,
    ) -> impl Future<Output = Result<Vec<(u64, Settled)>, JournalError>> + Send + 'static;
    /// The task handling a record panicked (a bug): settle it as a failed
    /// attempt, so neither it nor its engagement waits for a restart. Called
    /// once for each record the task held.
    fn panicked(
        self: Arc<Self>,
        pending: Pending,
    ) -> impl Future<Output = Result<Settled, JournalError>> + Send + 'static;
    /// Called every [`check_every`](Handler::check_every) (a sink's backlog
    /// warning).
    fn check(self: Arc<Self>) -> impl Future<Output = Result<(), JournalError>> + Send + 'static {
        std::future::ready(Ok(()))
    }
    fn check_every(&self) -> Option<Duration> {
        None
    }
}

/// The engagement lane of a record.
fn lane(pending: &Pending) -> Option<&str> {
    pending.view.engagement_id.as_deref()
}

/// Consumes the handler's outbox until `stop`, then lets running tasks finish
/// until `abort` (each watches it). Undone records stay in the outbox.
pub async fn run<H: Handler>(
    handler: Arc<H>,
    journal: Journal,
    mut heartbeat: Heartbeat,
    stop: CancellationToken,
    abort: CancellationToken,
) -> Result<(), JournalError> {
    let outbox = handler.outbox().to_string();
    let name = handler.describe();
    let ordered = handler.ordered();
    let read_batch = handler.read_batch();
    let group = if ordered { handler.batch().max(1) } else { 1 };
    let spread = if ordered { handler.spread().max(1) } else { 1 };
    let mut lanes: Lanes<Pending> = Lanes::default();
    if ordered {
        // Records waiting in the durable tier from an earlier run still hold
        // their engagements back.
        let mut after = None;
        loop {
            let batch = journal.read_waiting(&outbox, after, read_batch).await?;
            let Some((ms, last)) = batch.last().map(|(ms, p)| (*ms, p.seq)) else {
                break;
            };
            after = Some((ms, last));
            for (_, pending) in &batch {
                if let Some(lane) = lane(pending) {
                    lanes.occupy(lane);
                }
            }
        }
    }
    let permits = Arc::new(Semaphore::new(handler.max_in_flight().max(1)));
    let freed = Arc::new(Notify::new());
    type Outcome = Result<Vec<(u64, Settled)>, JournalError>;
    let mut tasks: JoinSet<Outcome> = JoinSet::new();
    // The records of each running task, so a task that panics can be settled.
    let mut running: HashMap<tokio::task::Id, Vec<Pending>> = HashMap::new();
    let mut in_flight: HashSet<u64> = HashSet::new();
    let mut lane_of: HashMap<u64, String> = HashMap::new();
    let mut ready: VecDeque<Pending> = VecDeque::new();
    let mut committed = journal.committed();
    let mut cursor = 0u64;
    let mut check = handler.check_every().map(tokio::time::interval);
    let result: Result<(), JournalError> = 'work: loop {
        if ready.is_empty() {
            // Durable retries that came due go first: they are the oldest.
            for pending in journal
                .read_due(&outbox, clock::now_ms(), read_batch)
                .await?
            {
                if !in_flight.contains(&pending.seq) {
                    ready.push_back(pending);
                }
            }
        }
        let mut read_new = false;
        if ready.is_empty() && lanes.waiting() < MAX_HELD {
            // Mark the current commit as seen *before* reading, so a commit
            // that lands after the read wakes us.
            committed.borrow_and_update();
            let (batch, last) = journal.read_outbox(&outbox, cursor, read_batch).await?;
            read_new = last != cursor;
            cursor = last;
            for pending in batch {
                if in_flight.contains(&pending.seq) {
                    continue;
                }
                let key = if ordered {
                    lane(&pending).map(str::to_owned)
                } else {
                    None
                };
                if let Some(pending) = lanes.admit(key.as_deref(), pending) {
                    ready.push_back(pending);
                }
            }
        }
        while !ready.is_empty() {
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                break;
            };
            let mut records = Vec::new();
            // Every ready record heads its own lane (or has none).
            for _ in 0..spread {
                let Some(head) = ready.pop_front() else {
                    break;
                };
                let key = if ordered {
                    lane(&head).map(str::to_owned)
                } else {
                    None
                };
                let first = records.len();
                records.push(head);
                if let Some(key) = &key
                    && group > 1
                {
                    records.extend(lanes.take_queued(key, group - 1));
                }
                for pending in &records[first..] {
                    in_flight.insert(pending.seq);
                    if let Some(key) = &key {
                        lane_of.insert(pending.seq, key.clone());
                    }
                }
            }
            if records.is_empty() {
                break;
            }
            let slot = Slot {
                permit: Some(permit),
                freed: freed.clone(),
            };
            let task = handler
                .clone()
                .handle(records.clone(), slot, stop.clone(), abort.clone());
            let handle = tasks.spawn(task);
            running.insert(handle.id(), records);
        }
        if read_new && ready.is_empty() && lanes.waiting() < MAX_HELD {
            continue; // more of the outbox may be ready right away
        }
        // The earliest durable retry not being attempted right now (one in
        // flight stays in the due index until it settles; waking for it would
        // spin until then).
        let next_due = if ready.is_empty() {
            journal.next_due_except(&outbox, &in_flight).await?
        } else {
            None
        };
        let due_at = next_due.map(clock::instant_at);
        tokio::select! {
            _ = stop.cancelled() => break 'work Ok(()),
            changed = committed.changed(), if ready.is_empty() && lanes.waiting() < MAX_HELD => {
                if changed.is_err() { break 'work Ok(()) }
            }
            Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                let settled = match done {
                    Ok((id, Ok(settled))) => {
                        running.remove(&id);
                        settled
                    }
                    Ok((_, Err(e))) => break 'work Err(e),
                    Err(e) => {
                        let Some(records) = running.remove(&e.id()) else {
                            tracing::error!(consumer = %name, error = %e, "task failed");
                            continue;
                        };
                        let seqs: Vec<u64> = records.iter().map(|p| p.seq).collect();
                        tracing::error!(consumer = %name, ?seqs, error = %e, "task failed (a bug); its records are retried later");
                        let mut settled = Vec::with_capacity(records.len());
                        for pending in records {
                            let seq = pending.seq;
                            match handler.clone().panicked(pending).await {
                                Ok(how) => settled.push((seq, how)),
                                Err(e) => break 'work Err(e),
                            }
                        }
                        settled
                    }
                };
                for (seq, settled) in settled {
                    in_flight.remove(&seq);
                    let key = lane_of.remove(&seq);
                    if settled == Settled::Done
                        && let Some(key) = key
                        && let Some(next) = lanes.finish(&key)
                    {
                        ready.push_front(next);
                    }
                }
            }
            _ = freed.notified(), if !ready.is_empty() => {}
            _ = tokio::time::sleep_until(due_at.unwrap_or_else(Instant::now)), if due_at.is_some() => {}
            _ = tick(&mut check) => handler.clone().check().await?,
            _ = heartbeat.tick() => {}
        }
    };
    // Drain: running tasks go on until they finish or `abort` fires (each one
    // watches it), so this join is bounded by the drain deadline.
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(Err(e)) => {
                tracing::error!(consumer = %name, error = %e, "journal failed while finishing");
            }
            Err(e) if e.is_panic() => {
                tracing::error!(consumer = %name, error = %e, "task failed (a bug) while finishing; its records stay in the outbox");
            }
            _ => {}
        }
    }
    result
}

/// The next tick of an optional interval (never, without one).
async fn tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}
