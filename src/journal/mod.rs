//! The durable store between Zoom and the sinks (redb; layout in `tables`).
//!
//! Every write goes through one writer thread that commits in groups: whatever
//! arrives while a commit is syncing goes into the next one, and a caller hears
//! back only after the commit that holds its write returned (redb's
//! `Durability::Immediate`: the data is on disk). Reads run on their own
//! snapshot transactions and never wait for the writer.
//!
//! This module decides nothing about delivery policy (that is `deliver/`) and
//! knows nothing of Zoom beyond the natural key it is given.

mod lock;
mod tables;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTableMetadata};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::record::NewRecord;
use crate::sink::route::EventFilter;

pub use lock::LOCK_FILE;
use tables::OutboxEntry;
use writer::{Op, Writer};

/// File name of the database inside the journal directory.
pub const DB_FILE: &str = "journal.redb";

/// How many requests may wait for the writer before producers feel backpressure.
const QUEUE_DEPTH: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal directory {} is in use by another zcc-relay process (pid {holder}); only one process may own a journal and its Zoom subscription", dir.display())]
    Locked { dir: PathBuf, holder: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("journal storage error: {0}")]
    Storage(#[from] redb::Error),
    #[error("journal commit failed: {0}")]
    CommitFailed(String),
    #[error("the journal is closed")]
    Closed,
}

impl JournalError {
    fn io(path: &Path, source: std::io::Error) -> JournalError {
        JournalError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

macro_rules! storage_from {
    ($($t:ty),*) => {$(
        impl From<$t> for JournalError {
            fn from(e: $t) -> Self { JournalError::Storage(e.into()) }
        }
    )*};
}
storage_from!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// A sink as the journal sees it: a name and which events it wants.
#[derive(Debug, Clone)]
pub struct SinkRoute {
    pub name: String,
    pub filter: EventFilter,
}

/// What happened to an appended record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Durably stored under `seq` with this revision, queued for `sinks` sinks.
    Stored {
        seq: u64,
        revision: u32,
        sinks: usize,
    },
    /// The natural key (and, for notes, the content) was seen before.
    Duplicate,
}

/// A record waiting in a sink's outbox.
#[derive(Debug, Clone)]
pub struct Pending {
    pub seq: u64,
    pub attempts: u32,
    pub not_before_ms: u64,
    /// The forwarded record, exactly as sinks receive it.
    pub bytes: Arc<[u8]>,
}

/// Why a record left a sink's outbox without being delivered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeadLetter {
    pub reason: String,
    pub status: Option<u16>,
    pub attempts: u32,
    pub at: String,
}

/// Per-sink counts for status displays and the demo summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkCounts {
    pub pending: u64,
    pub dead: u64,
}

/// Shared handle to an open journal; clone freely.
#[derive(Clone)]
pub struct Journal {
    shared: Arc<Shared>,
}

struct Shared {
    db: Arc<Database>,
    ops: mpsc::Sender<Op>,
    committed: watch::Receiver<u64>,
    dir: PathBuf,
    sinks: Vec<SinkRoute>,
    writer: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    _lock: lock::DirLock,
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir` for these sinks. Fails if
    /// another process owns the directory.
    pub fn open(dir: &Path, sinks: Vec<SinkRoute>) -> Result<Journal, JournalError> {
        std::fs::create_dir_all(dir).map_err(|e| JournalError::io(dir, e))?;
        let lock = lock::DirLock::acquire(dir)?;
        let path = dir.join(DB_FILE);
        let db = Arc::new(Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::Storage(redb::StorageError::Io(io)) => JournalError::io(&path, io),
            other => JournalError::from(other),
        })?);
        let next_seq = writer::prepare(&db, &sinks)?;
        let (ops, rx) = mpsc::channel(QUEUE_DEPTH);
        let (committed_tx, committed) = watch::channel(next_seq.saturating_sub(1));
        let worker = Writer::new(db.clone(), sinks.clone(), next_seq, committed_tx);
        let handle = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || worker.run(rx))
            .map_err(|e| JournalError::io(dir, e))?;
        Ok(Journal {
            shared: Arc::new(Shared {
                db,
                ops,
                committed,
                dir: dir.to_path_buf(),
                sinks,
                writer: std::sync::Mutex::new(Some(handle)),
                _lock: lock,
            }),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    pub fn sinks(&self) -> &[SinkRoute] {
        &self.shared.sinks
    }

    /// Appends and waits until the record is on disk (or known as a duplicate).
    pub async fn append(&self, record: NewRecord) -> Result<AppendOutcome, JournalError> {
        self.submit(record)
            .await?
            .await
            .map_err(|_| JournalError::Closed)?
    }

    /// Queues an append and returns as soon as the writer accepted it; the
    /// receiver resolves when the commit holding it returned. Producers use this
    /// to keep many appends in one group commit.
    pub async fn submit(
        &self,
        record: NewRecord,
    ) -> Result<oneshot::Receiver<Result<AppendOutcome, JournalError>>, JournalError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Append { record, reply }).await?;
        Ok(rx)
    }

    /// The sink has the record: remove it from that sink's outbox (and the record
    /// itself once no sink needs it). Resolves after the commit.
    pub async fn ack(&self, sink: &str, seq: u64) -> Result<(), JournalError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Ack {
            sink: sink.to_string(),
            seq,
            reply,
        })
        .await?;
        rx.await.map_err(|_| JournalError::Closed)?
    }

    /// Moves the record from the sink's outbox to its dead-letter.
    pub async fn dead_letter(
        &self,
        sink: &str,
        seq: u64,
        letter: DeadLetter,
    ) -> Result<(), JournalError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Dead {
            sink: sink.to_string(),
            seq,
            letter,
            reply,
        })
        .await?;
        rx.await.map_err(|_| JournalError::Closed)?
    }

    /// Stores a small named value (durably, in the next group commit).
    pub async fn set_meta(&self, key: &str, value: Vec<u8>) -> Result<(), JournalError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Meta {
            key: key.to_string(),
            value,
            reply,
        })
        .await?;
        rx.await.map_err(|_| JournalError::Closed)?
    }

    pub async fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, JournalError> {
        let key = key.to_string();
        self.read(move |db| {
            let txn = db.begin_read()?;
            let table = txn.open_table(tables::META)?;
            Ok(table.get(key.as_str())?.map(|v| v.value().to_vec()))
        })
        .await
    }

    /// The highest seq whose commit returned; changes wake the delivery workers.
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.shared.committed.clone()
    }

    /// Up to `limit` records in the sink's outbox with a seq above `after`, in
    /// journal order.
    pub async fn read_outbox(
        &self,
        sink: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Pending>, JournalError> {
        let name = tables::outbox_name(sink);
        self.read(move |db| {
            let txn = db.begin_read()?;
            let outbox = match txn.open_table(tables::outbox(&name)) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            let records = txn.open_table(tables::RECORDS)?;
            let mut batch = Vec::new();
            for row in outbox.range(after.saturating_add(1)..)?.take(limit) {
                let (seq, entry) = row?;
                let seq = seq.value();
                let entry = OutboxEntry::from_tuple(entry.value());
                // An outbox row always has its record (both change in one
                // commit); a missing one would be a bug, not data to deliver.
                let Some(bytes) = records.get(seq)? else {
                    tracing::error!(seq, "outbox entry without a record; skipping");
                    continue;
                };
                batch.push(Pending {
                    seq,
                    attempts: entry.attempts,
                    not_before_ms: entry.not_before_ms,
                    bytes: Arc::from(bytes.value()),
                });
            }
            Ok(batch)
        })
        .await
    }

    /// Pending and dead counts for every configured sink.
    pub async fn counts(&self) -> Result<Vec<(String, SinkCounts)>, JournalError> {
        let names: Vec<String> = self.shared.sinks.iter().map(|s| s.name.clone()).collect();
        self.read(move |db| {
            let txn = db.begin_read()?;
            let mut out = Vec::new();
            for name in names {
                let count = |table: String| -> Result<u64, JournalError> {
                    match txn.open_table(tables::outbox(&table)) {
                        Ok(t) => Ok(t.len()?),
                        Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
                        Err(e) => Err(e.into()),
                    }
                };
                let pending = count(tables::outbox_name(&name))?;
                let dead = match txn.open_table(tables::dead(&tables::dead_name(&name))) {
                    Ok(t) => t.len()?,
                    Err(redb::TableError::TableDoesNotExist(_)) => 0,
                    Err(e) => return Err(e.into()),
                };
                out.push((name, SinkCounts { pending, dead }));
            }
            Ok(out)
        })
        .await
    }

    /// Number of records still held (for any sink).
    pub async fn stored_records(&self) -> Result<u64, JournalError> {
        self.read(|db| {
            let txn = db.begin_read()?;
            Ok(txn.open_table(tables::RECORDS)?.len()?)
        })
        .await
    }

    /// Stops the writer after everything already queued is committed, and waits
    /// for it. Later calls on any clone fail with [`JournalError::Closed`].
    pub async fn close(&self) {
        let (reply, rx) = oneshot::channel();
        if self.shared.ops.send(Op::Shutdown { reply }).await.is_ok() {
            let _ = rx.await;
        }
        let handle = self.shared.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }

    async fn send(&self, op: Op) -> Result<(), JournalError> {
        self.shared
            .ops
            .send(op)
            .await
            .map_err(|_| JournalError::Closed)
    }

    async fn read<T, F>(&self, f: F) -> Result<T, JournalError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, JournalError> + Send + 'static,
    {
        let db = self.shared.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|_| JournalError::Closed)?
    }
}

#[cfg(test)]
mod tests;
