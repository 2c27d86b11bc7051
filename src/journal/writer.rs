//! The journal's single writer: group commit on a dedicated thread.
//!
//! redb allows one write transaction at a time and a commit blocks on fsync, so
//! one task owns all writes (each commit runs on the blocking pool). It takes every request that queued up while the
//! previous commit was syncing, applies them in order in one transaction (a
//! duplicate within a batch sees the earlier write), commits once and only then
//! answers. A failed commit answers every request in the batch with the error;
//! nothing is reported as persisted that was not.
//!
//! Each commit also carries one bounded step of the dedup index's retention
//! sweep ([`KEY_RETENTION_MS`]), so the index holds about a month of keys
//! instead of every key ever seen, and no commit does unbounded work for it.
//! The interaction aggregates (`tables::INTERACTIONS`) are folded in the
//! commit that stores their records and swept the same way, and so are the
//! CRM ids the sinks recorded (`tables::CRM_IDS`).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;

use redb::{Database, ReadableTable, ReadableTableMetadata, WriteTransaction};
use tokio::sync::{mpsc, oneshot, watch};

use super::tables::{self, KeyEntry, OutboxEntry};
use super::{AppendOutcome, CrmIds, DeadLetter, GapState, JournalError, SinkRoute};
use crate::clock;
use crate::interaction::Interaction;
use crate::record::{NewRecord, RecordHeader, View};
use crate::route::EventFilter;
use crate::service::Heartbeat;

/// Upper bound on requests per commit, so one commit's latency stays bounded.
const MAX_BATCH: usize = 4096;

/// How long a natural key stays in the dedup index after it was first seen.
/// Once pruned, a re-sent copy of its event goes out again as new, so this must
/// outlast every way an old event comes back: reconciliation re-reads
/// `reconcile.lookback` (48 h by default; the config warns above 30 days) plus
/// its margins, and Zoom's own redelivery spans minutes. 30 days is a wide
/// margin over the default, and keeps the index to a month of events (about
/// 115 bytes of file per key) instead of every event ever seen.
pub(super) const KEY_RETENTION_MS: u64 = 30 * 24 * 60 * 60 * 1000;
/// Keys the retention sweep looks at in every commit, plus
/// [`SWEEP_KEYS_PER_OP`] for each request in it. The share per request makes
/// the sweep keep pace with any insert rate (each new key is one request, and
/// its acks are more): at a steady rate a pass over the index takes at most a
/// third of the retention, so a key is gone within about 40 days even under a
/// saturating load. A commit's extra work stays proportional to its own size.
pub(super) const SWEEP_KEYS_PER_COMMIT: usize = 1024;
pub(super) const SWEEP_KEYS_PER_OP: usize = 4;
/// Bytes of values a sweep step reads at most, beside its key budget (it
/// always looks at one row). Dedup entries are a few bytes, but an interaction
/// aggregate grows with its engagement's notes; without this a step over a
/// journal of large aggregates read tens of MiB inside one write transaction
/// and the daemon's memory grew with the journal. A step over aggregates of a
/// few KiB still looks at its whole key budget.
pub(super) const SWEEP_BYTES_PER_COMMIT: usize = 256 * 1024;
pub(super) const SWEEP_BYTES_PER_OP: usize = 1024;
/// After a full pass the sweep rests this long, so a quiet daemon does not
/// re-read its whole index every few commits.
pub(super) const SWEEP_REST_MS: u64 = 60 * 60 * 1000;

/// How much one sweep step may look at.
#[derive(Clone, Copy, Debug)]
pub(super) struct Budget {
    pub(super) keys: usize,
    pub(super) bytes: usize,
}

pub(super) enum Op {
    Append {
        record: Box<NewRecord>,
        /// The revision the pair's note ledger assigned (`None`: the journal
        /// numbers it).
        revision: Option<u32>,
        reply: oneshot::Sender<Result<AppendOutcome, JournalError>>,
    },
    Ack {
        sink: String,
        seq: u64,
        reply: oneshot::Sender<Result<(), JournalError>>,
    },
    Dead {
        sink: String,
        seq: u64,
        letter: DeadLetter,
        reply: oneshot::Sender<Result<(), JournalError>>,
    },
    /// Stores a named value; `None` removes it.
    Meta {
        key: String,
        value: Option<Vec<u8>>,
        reply: oneshot::Sender<Result<(), JournalError>>,
    },
    /// Merges ids a sink learned into those stored for the engagement.
    CrmIds {
        sink: String,
        engagement_id: String,
        ids: Box<CrmIds>,
        reply: oneshot::Sender<Result<(), JournalError>>,
    },
    Schedule {
        sink: String,
        seq: u64,
        attempts: u32,
        step: u32,
        not_before_ms: u64,
        reply: oneshot::Sender<Result<(), JournalError>>,
    },
    Redrive {
        sink: String,
        seq: Option<u64>,
        reply: oneshot::Sender<Result<u64, JournalError>>,
    },
    PurgeDead {
        sink: String,
        reply: oneshot::Sender<Result<u64, JournalError>>,
    },
    /// The socket is live at `at_ms`; `reconnected` closes the gap since the
    /// last moment it was known live.
    Live {
        at_ms: u64,
        reconnected: bool,
        reply: Option<oneshot::Sender<Result<(), JournalError>>>,
    },
    GapDone {
        start_ms: u64,
        end_ms: u64,
        reply: oneshot::Sender<Result<(), JournalError>>,
    },
    /// The media stage is done with `seq`: store `body` in its place and move
    /// it into the outbox of every sink that wants its event.
    Enriched {
        seq: u64,
        body: Vec<u8>,
        reply: oneshot::Sender<Result<(), JournalError>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// Creates the tables, records the configured sinks, warns about sinks that
/// still hold records but are no longer configured, and returns the next seq.
/// With the media stage off (`media` is `None`), records still waiting in its
/// outbox from an earlier run go on to the sinks unchanged.
pub(super) fn prepare(
    db: &Database,
    sinks: &[SinkRoute],
    media: Option<&EventFilter>,
) -> Result<u64, JournalError> {
    let txn = db.begin_write()?;
    // In the same transaction as everything else here: a crash during the
    // upgrade leaves the file as it was, in the old format.
    super::upgrade::to_current(&txn)?;
    if media.is_none() {
        let waiting: Vec<u64> =
            match txn.open_table(tables::outbox(&tables::outbox_name(tables::MEDIA))) {
                Ok(t) => t
                    .iter()?
                    .map(|row| row.map(|(k, _)| k.value()))
                    .collect::<Result<_, _>>()?,
                Err(_) => Vec::new(),
            };
        if !waiting.is_empty() {
            tracing::info!(
                records = waiting.len(),
                "media is disabled: records that were waiting for their media go to the sinks without it"
            );
        }
        for seq in waiting {
            take_outbox(&txn, tables::MEDIA, seq)?;
            let value = txn
                .open_table(tables::RECORDS)?
                .get(seq)?
                .map(|v| v.value().to_vec());
            if let Some(value) = value {
                let (view, body) = tables::split_record(&value);
                enriched(&txn, sinks, seq, view, body)?;
            }
        }
    }
    let next_seq = {
        txn.open_table(tables::RECORDS)?;
        txn.open_table(tables::REFS)?;
        txn.open_table(tables::KEYS)?;
        txn.open_table(tables::GAPS)?;
        txn.open_table(tables::INTERACTIONS)?;
        txn.open_table(tables::CRM_IDS)?;
        let mut meta = txn.open_table(tables::META)?;
        let mut known = txn.open_table(tables::SINKS)?;
        let configured: BTreeSet<&str> = sinks.iter().map(|s| s.name.as_str()).collect();
        let mut orphans = Vec::new();
        for row in known.iter()? {
            let (name, _) = row?;
            if !configured.contains(name.value()) {
                orphans.push(name.value().to_string());
            }
        }
        for name in orphans {
            let pending = match txn.open_table(tables::outbox(&tables::outbox_name(&name))) {
                Ok(t) => t.len()?,
                Err(_) => 0,
            };
            // Dead-letters hold their records too; forgetting the sink would
            // hide them from `queue stats` while they stay stored.
            let dead = match txn.open_table(tables::dead(&tables::dead_name(&name))) {
                Ok(t) => t.len()?,
                Err(_) => 0,
            };
            if pending > 0 || dead > 0 {
                tracing::warn!(
                    sink = %name,
                    pending,
                    dead,
                    "sink is no longer configured but still has records in its outbox or dead-letter; they are kept until it is configured again"
                );
            } else {
                known.remove(name.as_str())?;
                // What it learned of its CRM goes with it (a sink configured
                // again under this name looks its ids up again).
                forget_sink(&txn, &mut meta, &name)?;
            }
        }
        for sink in sinks {
            known.insert(sink.name.as_str(), ())?;
            txn.open_table(tables::outbox(&tables::outbox_name(&sink.name)))?;
        }
        let stored = meta
            .get(tables::NEXT_SEQ)?
            .and_then(|v| v.value().try_into().ok())
            .map(u64::from_le_bytes);
        stored.unwrap_or(1)
    };
    txn.commit()?;
    Ok(next_seq)
}

pub(super) struct Writer {
    db: Arc<Database>,
    sinks: Vec<SinkRoute>,
    /// Events that pass through the media stage first; `None`: media is off.
    media: Option<EventFilter>,
    next_seq: u64,
    committed: watch::Sender<u64>,
    /// Successful commits so far (each one sync), for reports and benchmarks.
    commits: Arc<std::sync::atomic::AtomicU64>,
    sweep: Sweep,
    /// The interaction aggregates' retention sweep.
    sweep_interactions: Sweep,
    /// The CRM ids' retention sweep.
    sweep_crm_ids: Sweep,
    /// The aggregates the current commit changed, written once at its end
    /// (several records of one engagement in a batch cost one write).
    folds: BTreeMap<String, Interaction>,
}

/// Where the dedup index's retention sweep stands. Kept in memory only: after
/// a restart a pass starts from the first key, which costs one extra pass.
#[derive(Debug, Clone, Default)]
struct Sweep {
    /// The last key looked at; the next step continues after it. `None`: the
    /// next step starts a pass at the first key.
    after: Option<String>,
    /// No pass starts before this (ms since the epoch).
    rest_until_ms: u64,
    /// Keys looked at and pruned in the current pass (for its log line).
    looked_at: u64,
    pruned: u64,
}

/// What an applied request did, reported once the commit's fate is known.
enum Done {
    Append(AppendOutcome),
    Unit,
    Count(u64),
}

/// Answers a request with the fate of its commit.
fn answer(op: Op, result: Result<Done, JournalError>) {
    fn send<T>(reply: oneshot::Sender<Result<T, JournalError>>, result: Result<T, JournalError>) {
        let _ = reply.send(result);
    }
    match op {
        Op::Append { reply, .. } => send(
            reply,
            result.map(|done| match done {
                Done::Append(outcome) => outcome,
                _ => AppendOutcome::Duplicate,
            }),
        ),
        Op::Redrive { reply, .. } | Op::PurgeDead { reply, .. } => send(
            reply,
            result.map(|done| match done {
                Done::Count(n) => n,
                _ => 0,
            }),
        ),
        Op::Ack { reply, .. }
        | Op::Dead { reply, .. }
        | Op::Meta { reply, .. }
        | Op::CrmIds { reply, .. }
        | Op::Schedule { reply, .. }
        | Op::GapDone { reply, .. }
        | Op::Enriched { reply, .. } => send(reply, result.map(|_| ())),
        Op::Live { reply, .. } => {
            if let Some(reply) = reply {
                send(reply, result.map(|_| ()));
            }
        }
        Op::Shutdown { .. } => {}
    }
}

impl Writer {
    pub(super) fn new(
        db: Arc<Database>,
        sinks: Vec<SinkRoute>,
        media: Option<EventFilter>,
        next_seq: u64,
        committed: watch::Sender<u64>,
        commits: Arc<std::sync::atomic::AtomicU64>,
    ) -> Writer {
        Writer {
            db,
            sinks,
            media,
            next_seq,
            committed,
            commits,
            sweep: Sweep::default(),
            sweep_interactions: Sweep::default(),
            sweep_crm_ids: Sweep::default(),
            folds: BTreeMap::new(),
        }
    }

    /// Receives requests on the async side and runs each commit on the blocking
    /// pool. (Being a blocking-pool task, a commit in progress also keeps a
    /// paused test clock from jumping ahead while the disk syncs.)
    ///
    /// Beats `heartbeat` while it waits for requests, never during a commit:
    /// a commit that does not return stops the watchdog pings.
    pub(super) async fn run(mut self, mut rx: mpsc::Receiver<Op>, mut heartbeat: Heartbeat) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        loop {
            let first = tokio::select! {
                op = rx.recv() => match op {
                    Some(op) => op,
                    None => break,
                },
                _ = heartbeat.tick() => continue,
            };
            batch.push(first);
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            let mut shutdown = None;
            let mut ops: Vec<Op> = batch
                .drain(..)
                .filter_map(|op| match op {
                    Op::Shutdown { reply } => {
                        shutdown = Some(reply);
                        None
                    }
                    other => Some(other),
                })
                .collect();
            if shutdown.is_some() {
                rx.close();
                // Whatever raced in before the close still gets committed.
                ops.extend(std::iter::from_fn(|| rx.try_recv().ok()));
            }
            if !ops.is_empty() {
                self = match tokio::task::spawn_blocking(move || {
                    self.commit(ops);
                    self
                })
                .await
                {
                    Ok(writer) => writer,
                    Err(e) => {
                        // A panic inside redb: the requests of that batch were
                        // answered with errors when their senders dropped.
                        tracing::error!(error = %e, "journal writer crashed; the journal is closed");
                        return;
                    }
                };
            }
            if let Some(reply) = shutdown {
                let _ = reply.send(());
                return;
            }
        }
    }

    fn commit(&mut self, ops: Vec<Op>) {
        let seq_before = self.next_seq;
        let sweep_before = (
            self.sweep.clone(),
            self.sweep_interactions.clone(),
            self.sweep_crm_ids.clone(),
        );
        self.folds.clear();
        let sweep_budget = Budget {
            keys: SWEEP_KEYS_PER_COMMIT + SWEEP_KEYS_PER_OP * ops.len(),
            bytes: SWEEP_BYTES_PER_COMMIT + SWEEP_BYTES_PER_OP * ops.len(),
        };
        // Each request with what it did; answered once the commit's fate is
        // known. A request that fails, and every one after it, stays in
        // `ops`, so every caller hears the real error (never `Closed`).
        let mut done: Vec<(Op, Done)> = Vec::with_capacity(ops.len());
        let mut ops = ops.into_iter();
        let result = (|| -> Result<(), JournalError> {
            let txn = self.db.begin_write()?;
            for op in ops.by_ref() {
                match self.apply(&txn, &op) {
                    Ok(outcome) => done.push((op, outcome)),
                    Err(error) => {
                        done.push((op, Done::Unit));
                        return Err(error);
                    }
                }
            }
            let now_ms = clock::now_ms();
            self.write_folds(&txn, now_ms)?;
            self.sweep_keys(&txn, sweep_budget, now_ms)?;
            self.sweep_interactions(&txn, sweep_budget, now_ms)?;
            self.sweep_crm_ids(&txn, sweep_budget, now_ms)?;
            if self.next_seq != seq_before {
                txn.open_table(tables::META)?
                    .insert(tables::NEXT_SEQ, self.next_seq.to_le_bytes().as_slice())?;
            }
            txn.commit()?;
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.commits
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if self.next_seq != seq_before {
                    self.committed.send_replace(self.next_seq - 1);
                }
                for (op, outcome) in done {
                    answer(op, Ok(outcome));
                }
            }
            Err(error) => {
                // The transaction was dropped (aborted): seqs handed out in it
                // were never written, so they can be handed out again, and
                // the keys it pruned are still there.
                self.next_seq = seq_before;
                (self.sweep, self.sweep_interactions, self.sweep_crm_ids) = sweep_before;
                self.folds.clear();
                tracing::error!(error = %error, "journal commit failed");
                let message = error.to_string();
                for op in done.into_iter().map(|(op, _)| op).chain(ops) {
                    answer(op, Err(JournalError::CommitFailed(message.clone())));
                }
            }
        }
    }

    /// Applies one request inside the batch's transaction.
    fn apply(&mut self, txn: &WriteTransaction, op: &Op) -> Result<Done, JournalError> {
        Ok(match op {
            Op::Append {
                record, revision, ..
            } => Done::Append(self.append(txn, record, *revision)?),
            Op::Ack { sink, seq, .. } => {
                ack(txn, sink, *seq)?;
                Done::Unit
            }
            Op::Dead {
                sink, seq, letter, ..
            } => {
                dead_letter(txn, sink, *seq, letter)?;
                Done::Unit
            }
            Op::Meta { key, value, .. } => {
                let mut meta = txn.open_table(tables::META)?;
                match value {
                    Some(value) => {
                        meta.insert(key.as_str(), value.as_slice())?;
                    }
                    None => {
                        meta.remove(key.as_str())?;
                    }
                }
                Done::Unit
            }
            Op::CrmIds {
                sink,
                engagement_id,
                ids,
                ..
            } => {
                record_crm_ids(txn, sink, engagement_id, ids, clock::now_ms())?;
                Done::Unit
            }
            Op::Schedule {
                sink,
                seq,
                attempts,
                step,
                not_before_ms,
                ..
            } => {
                schedule(
                    txn,
                    sink,
                    *seq,
                    OutboxEntry {
                        attempts: *attempts,
                        step: *step,
                        not_before_ms: *not_before_ms,
                    },
                )?;
                Done::Unit
            }
            Op::Redrive { sink, seq, .. } => Done::Count(redrive(txn, sink, *seq)?),
            Op::PurgeDead { sink, .. } => Done::Count(purge_dead(txn, sink)?),
            Op::Live {
                at_ms, reconnected, ..
            } => {
                live(txn, *at_ms, *reconnected)?;
                Done::Unit
            }
            Op::GapDone {
                start_ms, end_ms, ..
            } => {
                let mut gaps = txn.open_table(tables::GAPS)?;
                if gaps.get((*start_ms, *end_ms))?.is_some() {
                    gaps.insert((*start_ms, *end_ms), GapState::Done as u8)?;
                }
                Done::Unit
            }
            Op::Enriched { seq, body, .. } => {
                if take_outbox(txn, tables::MEDIA, *seq)?.is_some() {
                    let view = stored_view(txn, *seq)?;
                    // The files the media stage stored join the engagement's
                    // aggregate (the rest of the record joined it on append).
                    let files = crate::record::media_entries(body);
                    if !files.is_empty()
                        && let Some(view) = view
                            .as_deref()
                            .and_then(|v| serde_json::from_slice::<View>(v).ok())
                        && let Ok(header) = serde_json::from_slice::<RecordHeader>(body)
                    {
                        self.fold(
                            txn,
                            Interaction::of(&view, header.event_ts, header.revision, &files),
                        )?;
                    }
                    // A new seq: to the sink workers (whose cursors only
                    // move forward) it is a record that just arrived.
                    txn.open_table(tables::RECORDS)?.remove(*seq)?;
                    txn.open_table(tables::REFS)?.remove(*seq)?;
                    let new_seq = self.next_seq;
                    self.next_seq += 1;
                    enriched(txn, &self.sinks, new_seq, view.as_deref(), body)?;
                }
                Done::Unit
            }
            Op::Shutdown { .. } => Done::Unit,
        })
    }

    fn append(
        &mut self,
        txn: &WriteTransaction,
        record: &NewRecord,
        assigned: Option<u32>,
    ) -> Result<AppendOutcome, JournalError> {
        let mut keys = txn.open_table(tables::KEYS)?;
        let known = keys
            .get(record.id.as_str())?
            .and_then(|v| KeyEntry::decode(v.value()));
        // A revision the pair's ledger assigned is the record's as it is: the
        // other relay numbered the same version the same (DESIGN.md §3.7).
        let revision = match &known {
            None => assigned.unwrap_or(1),
            // First-wins types, and notes whose text and time did not change.
            Some(entry) if entry.knows(record.version) => {
                return Ok(AppendOutcome::Duplicate);
            }
            Some(entry) => assigned.unwrap_or(entry.revision + 1),
        };
        let mut versions = known
            .as_ref()
            .map(|k| k.versions.clone())
            .unwrap_or_default();
        if let Some(version) = record.version {
            versions.push(version);
            if versions.len() > tables::MAX_VERSIONS {
                versions.remove(0);
            }
        }
        let entry = KeyEntry {
            // Never backwards: an old version numbered by the ledger below
            // what this journal has seen leaves the next local number alone.
            revision: known
                .as_ref()
                .map_or(revision, |k| k.revision.max(revision)),
            first_seen_ms: known
                .as_ref()
                .map_or_else(clock::now_ms, |k| k.first_seen_ms),
            versions,
        };
        keys.insert(record.id.as_str(), entry.encode().as_slice())?;
        drop(keys);
        // Every new record (or revision) of an engagement joins its
        // aggregate, whether or not a sink wants the record itself.
        self.fold(
            txn,
            Interaction::of(&record.view, record.event_ts, revision, &[]),
        )?;

        let seq = self.next_seq;
        self.next_seq += 1;
        let targets: Vec<&SinkRoute> = self
            .sinks
            .iter()
            .filter(|s| s.filter.matches(&record.event))
            .collect();
        if targets.is_empty() {
            // Nobody wants it: remembered for dedup, nothing to hold.
            return Ok(AppendOutcome::Stored {
                seq,
                revision,
                sinks: 0,
            });
        }
        let view = serde_json::to_vec(&record.view).unwrap_or_default();
        let value = tables::encode_record(&view, &record.to_json(revision));
        txn.open_table(tables::RECORDS)?
            .insert(seq, value.as_slice())?;
        if self
            .media
            .as_ref()
            .is_some_and(|m| m.matches(&record.event))
        {
            // The media stage holds the one reference until it hands the
            // enriched record on to the sinks (`enriched`).
            txn.open_table(tables::REFS)?.insert(seq, 1)?;
            txn.open_table(tables::outbox(&tables::outbox_name(tables::MEDIA)))?
                .insert(seq, OutboxEntry::default().to_tuple())?;
            return Ok(AppendOutcome::Stored {
                seq,
                revision,
                sinks: targets.len(),
            });
        }
        txn.open_table(tables::REFS)?
            .insert(seq, targets.len() as u32)?;
        for sink in &targets {
            let name = tables::outbox_name(&sink.name);
            txn.open_table(tables::outbox(&name))?
                .insert(seq, OutboxEntry::default().to_tuple())?;
        }
        Ok(AppendOutcome::Stored {
            seq,
            revision,
            sinks: targets.len(),
        })
    }

    /// Joins `one` (a record's part) into its engagement's aggregate, read
    /// from the table on the commit's first touch. Written by
    /// [`write_folds`](Writer::write_folds).
    fn fold(
        &mut self,
        txn: &WriteTransaction,
        one: Option<Interaction>,
    ) -> Result<(), JournalError> {
        let Some(one) = one else {
            return Ok(());
        };
        if let Some(known) = self.folds.get_mut(one.engagement_id()) {
            known.merge(&one);
            return Ok(());
        }
        let stored = txn
            .open_table(tables::INTERACTIONS)?
            .get(one.engagement_id())?
            .and_then(|v| {
                tables::split_interaction(v.value()).and_then(|(_, a)| Interaction::decode(a))
            });
        let aggregate = match stored {
            Some(mut stored) => {
                stored.merge(&one);
                stored
            }
            None => one,
        };
        self.folds
            .insert(aggregate.engagement_id().to_owned(), aggregate);
        Ok(())
    }

    /// Stores the aggregates this commit changed, stamped `now_ms`.
    fn write_folds(&mut self, txn: &WriteTransaction, now_ms: u64) -> Result<(), JournalError> {
        if self.folds.is_empty() {
            return Ok(());
        }
        let mut table = txn.open_table(tables::INTERACTIONS)?;
        for (engagement_id, aggregate) in std::mem::take(&mut self.folds) {
            let value = tables::encode_interaction(now_ms, &aggregate.encode());
            table.insert(engagement_id.as_str(), value.as_slice())?;
        }
        Ok(())
    }

    /// One step of the retention sweep: looks at up to `budget` keys after the
    /// cursor, in key order, and removes those first seen more than
    /// [`KEY_RETENTION_MS`] before `now_ms`. Reading a run of neighbouring keys
    /// keeps the pages a step rewrites few, and needs no second index (which
    /// would double the index's size).
    fn sweep_keys(
        &mut self,
        txn: &WriteTransaction,
        budget: Budget,
        now_ms: u64,
    ) -> Result<(), JournalError> {
        let first_seen = |value: &[u8]| KeyEntry::decode(value).map(|entry| entry.first_seen_ms);
        Self::sweep_step(
            txn,
            tables::KEYS,
            &mut self.sweep,
            budget,
            now_ms,
            first_seen,
            "dedup index",
        )
    }

    /// The same for the interaction aggregates: one goes
    /// [`KEY_RETENTION_MS`] after its last update, when the keys of its
    /// records go too.
    fn sweep_interactions(
        &mut self,
        txn: &WriteTransaction,
        budget: Budget,
        now_ms: u64,
    ) -> Result<(), JournalError> {
        let updated = |value: &[u8]| tables::split_interaction(value).map(|(at, _)| at);
        Self::sweep_step(
            txn,
            tables::INTERACTIONS,
            &mut self.sweep_interactions,
            budget,
            now_ms,
            updated,
            "interaction aggregates",
        )
    }

    /// The same for the CRM ids: a row goes [`KEY_RETENTION_MS`] after the
    /// sink last recorded an id in it.
    fn sweep_crm_ids(
        &mut self,
        txn: &WriteTransaction,
        budget: Budget,
        now_ms: u64,
    ) -> Result<(), JournalError> {
        let updated = |value: &[u8]| tables::split_crm_ids(value).map(|(at, _)| at);
        Self::sweep_step(
            txn,
            tables::CRM_IDS,
            &mut self.sweep_crm_ids,
            budget,
            now_ms,
            updated,
            "CRM ids",
        )
    }

    /// One step of a retention sweep over a table keyed by text: looks at the
    /// rows after the sweep's cursor, up to `budget` keys or bytes of values
    /// (whichever comes first, at least one row), and removes those whose time
    /// (`time_of` the value; unreadable: kept) is more than
    /// [`KEY_RETENTION_MS`] before `now_ms`.
    fn sweep_step(
        txn: &WriteTransaction,
        table: redb::TableDefinition<&str, &[u8]>,
        sweep: &mut Sweep,
        budget: Budget,
        now_ms: u64,
        time_of: impl Fn(&[u8]) -> Option<u64>,
        what: &str,
    ) -> Result<(), JournalError> {
        if now_ms < sweep.rest_until_ms {
            return Ok(());
        }
        let mut keys = txn.open_table(table)?;
        let mut expired = Vec::new();
        let mut looked_at = 0;
        let mut bytes = 0;
        let mut last = None;
        {
            let after = match &sweep.after {
                Some(key) => Bound::Excluded(key.as_str()),
                None => Bound::Unbounded,
            };
            for row in keys.range::<&str>((after, Bound::Unbounded))? {
                let (key, value) = row?;
                let value = value.value();
                looked_at += 1;
                bytes += key.value().len() + value.len();
                let age_ms = time_of(value).map_or(0, |at| now_ms.saturating_sub(at));
                if age_ms > KEY_RETENTION_MS {
                    expired.push(key.value().to_string());
                }
                if looked_at == budget.keys || bytes >= budget.bytes {
                    last = Some(key.value().to_string());
                    break;
                }
            }
        }
        for key in &expired {
            keys.remove(key.as_str())?;
        }
        sweep.looked_at += looked_at as u64;
        sweep.pruned += expired.len() as u64;
        if last.is_some() {
            sweep.after = last;
        } else {
            tracing::debug!(
                looked_at = sweep.looked_at,
                pruned = sweep.pruned,
                "{what} retention pass done"
            );
            *sweep = Sweep {
                rest_until_ms: now_ms.saturating_add(SWEEP_REST_MS),
                ..Sweep::default()
            };
        }
        Ok(())
    }
}

/// Merges `learned` into the sink's ids for the engagement, stamped `now_ms`.
fn record_crm_ids(
    txn: &WriteTransaction,
    sink: &str,
    engagement_id: &str,
    learned: &CrmIds,
    now_ms: u64,
) -> Result<(), JournalError> {
    let key = super::crm::crm_ids_key(sink, engagement_id);
    let mut table = txn.open_table(tables::CRM_IDS)?;
    let mut ids = table
        .get(key.as_str())?
        .and_then(|v| tables::split_crm_ids(v.value()).and_then(|(_, ids)| CrmIds::decode(ids)))
        .unwrap_or_default();
    ids.merge(learned.clone());
    let value = tables::encode_crm_ids(now_ms, &ids.encode());
    table.insert(key.as_str(), value.as_slice())?;
    Ok(())
}

/// Drops what a sink that left the configuration kept beside its outbox:
/// its CRM ids and its set-up problem.
fn forget_sink(
    txn: &WriteTransaction,
    meta: &mut redb::Table<&str, &[u8]>,
    sink: &str,
) -> Result<(), JournalError> {
    let (from, to) = super::crm::crm_ids_range(sink);
    let mut ids = txn.open_table(tables::CRM_IDS)?;
    ids.retain_in(from.as_str()..to.as_str(), |_, _| false)?;
    meta.remove(super::setup_problem_key(sink).as_str())?;
    Ok(())
}

/// Stores `body` (with the record's `view`) as record `seq` (the media outbox
/// no longer holds it) and queues it for every sink that wants its event; a
/// record no sink wants any more (the configuration changed meanwhile) is
/// dropped.
fn enriched(
    txn: &WriteTransaction,
    sinks: &[SinkRoute],
    seq: u64,
    view: Option<&[u8]>,
    body: &[u8],
) -> Result<(), JournalError> {
    #[derive(serde::Deserialize)]
    struct Event<'a> {
        #[serde(borrow)]
        event: std::borrow::Cow<'a, str>,
    }
    let event = serde_json::from_slice::<Event>(body)
        .map(|e| e.event.into_owned())
        .unwrap_or_default();
    let targets: Vec<&SinkRoute> = sinks.iter().filter(|s| s.filter.matches(&event)).collect();
    if targets.is_empty() {
        txn.open_table(tables::REFS)?.remove(seq)?;
        txn.open_table(tables::RECORDS)?.remove(seq)?;
        return Ok(());
    }
    let value = tables::encode_record(view.unwrap_or(b"{}"), body);
    txn.open_table(tables::RECORDS)?
        .insert(seq, value.as_slice())?;
    txn.open_table(tables::REFS)?
        .insert(seq, targets.len() as u32)?;
    for sink in &targets {
        txn.open_table(tables::outbox(&tables::outbox_name(&sink.name)))?
            .insert(seq, OutboxEntry::default().to_tuple())?;
    }
    Ok(())
}

/// The stored view of record `seq` (`None`: no such record, or no view).
fn stored_view(txn: &WriteTransaction, seq: u64) -> Result<Option<Vec<u8>>, JournalError> {
    let records = txn.open_table(tables::RECORDS)?;
    let value = records.get(seq)?;
    Ok(value.and_then(|v| tables::split_record(v.value()).0.map(<[u8]>::to_vec)))
}

/// Takes `seq` out of the sink's outbox (and the due index), returning the
/// entry it had.
fn take_outbox(
    txn: &WriteTransaction,
    sink: &str,
    seq: u64,
) -> Result<Option<OutboxEntry>, JournalError> {
    let name = tables::outbox_name(sink);
    let removed = txn
        .open_table(tables::outbox(&name))?
        .remove(seq)?
        .map(|v| OutboxEntry::from_tuple(v.value()));
    if let Some(entry) = removed
        && entry.not_before_ms != 0
    {
        txn.open_table(tables::due(&tables::due_name(sink)))?
            .remove((entry.not_before_ms, seq))?;
    }
    Ok(removed)
}

/// Removes `seq` from the sink's outbox and drops the record when no sink needs
/// it any more. Acking something not in the outbox is a no-op (a retry after a
/// crash may ack twice).
fn ack(txn: &WriteTransaction, sink: &str, seq: u64) -> Result<(), JournalError> {
    if take_outbox(txn, sink, seq)?.is_some() {
        release(txn, seq)?;
    }
    Ok(())
}

fn release(txn: &WriteTransaction, seq: u64) -> Result<(), JournalError> {
    let mut refs = txn.open_table(tables::REFS)?;
    let remaining = refs
        .get(seq)?
        .map(|v| v.value())
        .unwrap_or(1)
        .saturating_sub(1);
    if remaining == 0 {
        refs.remove(seq)?;
        txn.open_table(tables::RECORDS)?.remove(seq)?;
    } else {
        refs.insert(seq, remaining)?;
    }
    Ok(())
}

/// Moves a record from the outbox to the dead-letter. The record itself stays
/// (its reference is now held by the dead-letter row) so it can be redriven.
fn dead_letter(
    txn: &WriteTransaction,
    sink: &str,
    seq: u64,
    letter: &DeadLetter,
) -> Result<(), JournalError> {
    if take_outbox(txn, sink, seq)?.is_some() {
        txn.open_table(tables::dead(&tables::dead_name(sink)))?
            .insert(seq, letter.encode().as_slice())?;
    }
    Ok(())
}

/// Records the outcome of a failed attempt: new counters and, when
/// `not_before_ms` is set, a place in the due index. A record no longer in the
/// outbox (acked meanwhile) is left alone.
fn schedule(
    txn: &WriteTransaction,
    sink: &str,
    seq: u64,
    entry: OutboxEntry,
) -> Result<(), JournalError> {
    if take_outbox(txn, sink, seq)?.is_none() {
        return Ok(());
    }
    txn.open_table(tables::outbox(&tables::outbox_name(sink)))?
        .insert(seq, entry.to_tuple())?;
    if entry.not_before_ms != 0 {
        txn.open_table(tables::due(&tables::due_name(sink)))?
            .insert((entry.not_before_ms, seq), ())?;
    }
    Ok(())
}

/// Records that the socket is live at `at_ms`. On a reconnect (or the first
/// connection after a start) the window since the last moment it was known
/// live becomes a gap in the ledger.
fn live(txn: &WriteTransaction, at_ms: u64, reconnected: bool) -> Result<(), JournalError> {
    let mut meta = txn.open_table(tables::META)?;
    let previous = meta
        .get(tables::LIVE_UNTIL)?
        .and_then(|v| v.value().try_into().ok())
        .map(u64::from_le_bytes);
    if reconnected
        && let Some(since) = previous
        && since < at_ms
    {
        txn.open_table(tables::GAPS)?
            .insert((since, at_ms), GapState::Pending as u8)?;
    }
    if previous.is_none_or(|p| p < at_ms) {
        meta.insert(tables::LIVE_UNTIL, at_ms.to_le_bytes().as_slice())?;
    }
    Ok(())
}

fn redrive(txn: &WriteTransaction, sink: &str, only: Option<u64>) -> Result<u64, JournalError> {
    let mut dead = txn.open_table(tables::dead(&tables::dead_name(sink)))?;
    let seqs: Vec<u64> = match only {
        Some(seq) => dead.get(seq)?.map(|_| seq).into_iter().collect(),
        None => dead
            .iter()?
            .map(|row| row.map(|(k, _)| k.value()))
            .collect::<Result<_, _>>()?,
    };
    let mut outbox = txn.open_table(tables::outbox(&tables::outbox_name(sink)))?;
    for seq in &seqs {
        dead.remove(*seq)?;
        outbox.insert(*seq, OutboxEntry::default().to_tuple())?;
    }
    Ok(seqs.len() as u64)
}

fn purge_dead(txn: &WriteTransaction, sink: &str) -> Result<u64, JournalError> {
    let seqs: Vec<u64> = {
        let mut dead = txn.open_table(tables::dead(&tables::dead_name(sink)))?;
        let seqs = dead
            .iter()?
            .map(|row| row.map(|(k, _)| k.value()))
            .collect::<Result<Vec<_>, _>>()?;
        dead.retain(|_, _| false)?;
        seqs
    };
    for seq in &seqs {
        release(txn, *seq)?;
    }
    Ok(seqs.len() as u64)
}
