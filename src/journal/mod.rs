//! The durable store between Zoom and the sinks (redb; layout in `tables`).
//!
//! Every write goes through one writer task that commits in groups: whatever
//! arrives while a commit is syncing goes into the next one, and a caller hears
//! back only after the commit that holds its write returned (redb's
//! `Durability::Immediate`: the data is on disk). Reads run on their own
//! snapshot transactions and never wait for the writer.
//!
//! The database is opened in redb's single-writer mode: this process writes,
//! and other processes (the `queue` commands) may open it read-only with
//! [`open_read_only`] and follow its commits while it runs.
//!
//! Each record with an `engagement_id` also joins its engagement's
//! interaction aggregate (`crate::interaction`, table `interactions`) in the
//! commit that stores it; [`Journal::interaction`] reads it. Beside them the
//! journal keeps what the CRM sinks learn ([`CrmIds`]: the ids a sink created
//! per engagement, through [`Journal::crm_ids`] and
//! [`Journal::record_crm_ids`]) and each sink's last set-up problem
//! ([`SetupProblem`]), both as stored values whose use is elsewhere.
//!
//! This module decides nothing about delivery policy (that is `deliver/`) and
//! knows nothing of Zoom beyond the natural key and the view it is given (the
//! upgrade of a format-0 file borrows `zoom::view` to view old records; see
//! `upgrade`).

mod crm;
mod lock;
pub mod read;
mod recover;
mod tables;
mod upgrade;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{
    Builder, ConcurrencyMode, Database, ReadOnlyDatabase, ReadTransaction, ReadableDatabase,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::record::NewRecord;
use crate::route::EventFilter;

pub use crm::{CrmIds, NoteIds, SetupProblem, setup_problem_key, text_digest};
pub use lock::LOCK_FILE;
pub use recover::{QUARANTINE_PREFIX, quarantined};
pub use tables::MEDIA;
use writer::{Op, Writer};

/// File name of the database inside the journal directory.
pub const DB_FILE: &str = "journal.redb";

/// redb's page cache. Its default (1 GiB) would let a large backlog show up as
/// resident memory; the journal's access pattern (append at the end, read the
/// outbox heads) needs little of it.
const CACHE_BYTES: usize = 8 * 1024 * 1024;
/// redb's default (`ExclusiveWriter`) locks the whole file, so nothing could
/// even read the journal while the daemon runs. `SingleWriter` lets read-only
/// handles of other processes share the file and see each commit; it costs a
/// 2-phase commit (a second sync) per group commit. Writer and readers must
/// use the same mode.
const CONCURRENCY: ConcurrencyMode = ConcurrencyMode::SingleWriter;

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
    #[error(
        "the journal file has format version {found}, newer than this build reads ({supported}); run the newer zcc-relay, or start with an empty journal directory"
    )]
    NewerFormat { found: u32, supported: u32 },
}

impl JournalError {
    fn io(path: &Path, source: std::io::Error) -> JournalError {
        JournalError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// An I/O failure opening the file names the file.
    fn database(path: &Path, error: redb::DatabaseError) -> JournalError {
        match error {
            redb::DatabaseError::Storage(redb::StorageError::Io(io)) => JournalError::io(path, io),
            other => JournalError::from(other),
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

impl SinkRoute {
    /// The routes of the configured sinks.
    pub fn for_sinks(sinks: &[crate::config::SinkSettings]) -> Vec<SinkRoute> {
        sinks
            .iter()
            .map(|s| SinkRoute {
                name: s.name.clone(),
                filter: EventFilter::new(s.events.clone()),
            })
            .collect()
    }
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
    /// Failed attempts so far.
    pub attempts: u32,
    /// Steps of the durable retry schedule used so far.
    pub step: u32,
    /// When the next attempt is due (ms since the epoch); 0: not scheduled.
    pub not_before_ms: u64,
    /// The forwarded record, exactly as sinks receive it.
    pub bytes: Arc<[u8]>,
    /// Its Zoom-neutral view, as stored with it.
    pub view: Arc<crate::record::View>,
}

/// Why a record left a sink's outbox without being delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub reason: String,
    /// The last HTTP status, when there was a response.
    pub status: Option<u16>,
    /// The vendor's error code (`REQUEST_LIMIT_EXCEEDED`), when it gave one.
    pub code: Option<String>,
    pub attempts: u32,
    /// When it was dead-lettered.
    pub at: jiff::Timestamp,
}

/// A dead letter as stored (JSON). Format 0 wrote `at` as RFC 3339 text and
/// had no `code`; format 1 writes `at_ms`. Both read.
#[derive(Serialize, Deserialize)]
struct StoredLetter {
    reason: String,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    code: Option<String>,
    #[serde(default)]
    attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at: Option<String>,
}

impl DeadLetter {
    /// A dead letter written now.
    pub fn now(reason: String, status: Option<u16>, code: Option<String>, attempts: u32) -> Self {
        DeadLetter {
            reason,
            status,
            code,
            attempts,
            at: jiff::Timestamp::now(),
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let stored = StoredLetter {
            reason: self.reason.clone(),
            status: self.status,
            code: self.code.clone(),
            attempts: self.attempts,
            at_ms: Some(self.at.as_millisecond()),
            at: None,
        };
        serde_json::to_vec(&stored).unwrap_or_default()
    }

    /// Reads either format; `None` if the bytes are not a dead letter.
    pub(crate) fn decode(bytes: &[u8]) -> Option<DeadLetter> {
        let stored: StoredLetter = serde_json::from_slice(bytes).ok()?;
        let at = match (stored.at_ms, stored.at.as_deref()) {
            (Some(ms), _) => jiff::Timestamp::from_millisecond(ms).ok(),
            (None, Some(text)) => text.parse().ok(),
            (None, None) => None,
        }
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        Some(DeadLetter {
            reason: stored.reason,
            status: stored.status,
            code: stored.code,
            attempts: stored.attempts,
            at,
        })
    }
}

/// Where a socket gap stands with reconciliation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum GapState {
    Pending = 0,
    Done = 1,
}

/// A window in which the WebSocket was not live (ms since the epoch): from the
/// last moment it was known live to the moment it was live again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Gap {
    pub start_ms: u64,
    pub end_ms: u64,
    pub state: GapState,
}

/// Opens the journal in `dir` for reading only, beside the process that owns
/// it (or none). Takes no directory lock and never writes; each
/// `begin_read` sees the owner's latest commit. Fails with redb's
/// `DatabaseAlreadyOpen` if the owner holds the file exclusively (a build from
/// before single-writer mode), and `RepairAborted` if the last owner crashed
/// and no owner has recovered the file since.
pub fn open_read_only(dir: &Path) -> Result<ReadOnlyDatabase, JournalError> {
    let path = dir.join(DB_FILE);
    Builder::new()
        .set_concurrency_mode(CONCURRENCY)
        .open_read_only(&path)
        .map_err(|e| JournalError::database(&path, e))
}

/// `create_dir_all`, with the directories it creates private (0700) whatever
/// the umask: the journal holds customer data.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Size of the journal's database file in `dir`, in bytes.
pub fn file_size(dir: &Path) -> Result<u64, JournalError> {
    let path = dir.join(DB_FILE);
    std::fs::metadata(&path)
        .map(|m| m.len())
        .map_err(|e| JournalError::io(&path, e))
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
    sinks: Vec<SinkRoute>,
    writer: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    commits: Arc<std::sync::atomic::AtomicU64>,
    _lock: lock::DirLock,
}

impl Journal {
    /// Opens (creating if needed) the journal in `dir` for these sinks. Fails if
    /// another process owns the directory. Must be called within a tokio
    /// runtime (the writer is a task on it).
    pub fn open(dir: &Path, sinks: Vec<SinkRoute>) -> Result<Journal, JournalError> {
        Journal::open_with_media(dir, sinks, None)
    }

    /// [`open`](Journal::open) with the media stage: records whose event
    /// `media` matches are stored as usual but wait in the media outbox
    /// ([`MEDIA`]) until [`enriched`](Journal::enriched) hands them on to the
    /// sinks. `None`: no media stage (records still waiting in its outbox from
    /// an earlier run go to the sinks unchanged).
    pub fn open_with_media(
        dir: &Path,
        sinks: Vec<SinkRoute>,
        media: Option<EventFilter>,
    ) -> Result<Journal, JournalError> {
        Journal::open_with(dir, sinks, media, crate::service::Heartbeat::detached())
    }

    /// [`Journal::open_with_media`], with the writer task beating `heartbeat`
    /// (the daemon's watchdog checks it).
    pub fn open_with(
        dir: &Path,
        sinks: Vec<SinkRoute>,
        media: Option<EventFilter>,
        heartbeat: crate::service::Heartbeat,
    ) -> Result<Journal, JournalError> {
        create_private_dir(dir).map_err(|e| JournalError::io(dir, e))?;
        let lock = lock::DirLock::acquire(dir)?;
        let path = dir.join(DB_FILE);
        // redb would follow a symlink (even a dangling one) and create the file
        // with the umask's mode: the file is created, or checked, here first.
        lock::open_private(&path, true).map_err(|e| JournalError::io(&path, e))?;
        let db = Arc::new(recover::open_or_recover(&path, |path| {
            lock::open_private(path, true)
                .map_err(|e| redb::DatabaseError::Storage(redb::StorageError::Io(e)))?;
            Builder::new()
                .set_concurrency_mode(CONCURRENCY)
                .set_cache_size(CACHE_BYTES)
                // Reads the whole file once per start, so a torn or altered
                // file is caught here (and quarantined) instead of panicking
                // or failing later in the middle of delivery.
                .set_check_integrity_on_open(true)
                .create(path)
        })?);
        let next_seq = writer::prepare(&db, &sinks, media.as_ref())?;
        let (ops, rx) = mpsc::channel(QUEUE_DEPTH);
        let (committed_tx, committed) = watch::channel(next_seq.saturating_sub(1));
        let commits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let worker = Writer::new(
            db.clone(),
            sinks.clone(),
            media,
            next_seq,
            committed_tx,
            commits.clone(),
        );
        let handle = tokio::spawn(worker.run(rx, heartbeat));
        Ok(Journal {
            shared: Arc::new(Shared {
                db,
                ops,
                committed,
                sinks,
                writer: std::sync::Mutex::new(Some(handle)),
                commits,
                _lock: lock,
            }),
        })
    }

    /// Group commits (each one sync of the journal file) since it was opened.
    pub fn commits(&self) -> u64 {
        self.shared
            .commits
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A snapshot for the [`read`] functions, taken on the calling thread (for
    /// the `queue` commands; the daemon reads through the async methods).
    pub fn begin_read(&self) -> Result<ReadTransaction, JournalError> {
        Ok(self.shared.db.begin_read()?)
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
        self.submit_numbered(record, None).await
    }

    /// Like [`submit`](Self::submit), but a new version is stored as
    /// `revision` (when `Some`) rather than the next number this journal
    /// would give it: the number the pair's note ledger assigned
    /// (`lease::ledger`). A version the journal knows is still a duplicate.
    pub async fn submit_numbered(
        &self,
        record: NewRecord,
        revision: Option<u32>,
    ) -> Result<oneshot::Receiver<Result<AppendOutcome, JournalError>>, JournalError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Append {
            record: Box::new(record),
            revision,
            reply,
        })
        .await?;
        Ok(rx)
    }

    /// The sink has the record: remove it from that sink's outbox (and the record
    /// itself once no sink needs it). Resolves after the commit.
    pub async fn ack(&self, sink: &str, seq: u64) -> Result<(), JournalError> {
        self.submit_ack(sink, seq)
            .await?
            .await
            .map_err(|_| JournalError::Closed)?
    }

    /// Queues an ack and returns as soon as the writer accepted it; the
    /// receiver resolves when the commit holding it returned. The writer
    /// applies requests in the order they were queued, so an ack queued before
    /// another is never committed after it.
    pub async fn submit_ack(
        &self,
        sink: &str,
        seq: u64,
    ) -> Result<oneshot::Receiver<Result<(), JournalError>>, JournalError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Ack {
            sink: sink.to_string(),
            seq,
            reply,
        })
        .await?;
        Ok(rx)
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

    /// The media stage is done with record `seq`: `body` replaces the stored
    /// record, under a new seq (so sink workers see it arrive), and goes to
    /// every sink that wants it, in one commit. A record no longer in the media
    /// outbox is left alone. Resolves after the commit.
    pub async fn enriched(&self, seq: u64, body: Vec<u8>) -> Result<(), JournalError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Enriched { seq, body, reply }).await?;
        rx.await.map_err(|_| JournalError::Closed)?
    }

    /// Stores a small named value (durably, in the next group commit).
    pub async fn set_meta(&self, key: &str, value: Vec<u8>) -> Result<(), JournalError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Meta {
            key: key.to_string(),
            value: Some(value),
            reply,
        })
        .await?;
        rx.await.map_err(|_| JournalError::Closed)?
    }

    /// Removes a named value (durably, in the next group commit).
    pub async fn remove_meta(&self, key: &str) -> Result<(), JournalError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Meta {
            key: key.to_string(),
            value: None,
            reply,
        })
        .await?;
        rx.await.map_err(|_| JournalError::Closed)?
    }

    /// Stores the sink's set-up problem (`Some`) or removes it (`None`);
    /// resolves after the commit.
    pub async fn set_setup_problem(
        &self,
        sink: &str,
        problem: Option<&SetupProblem>,
    ) -> Result<(), JournalError> {
        let key = setup_problem_key(sink);
        match problem {
            Some(problem) => self.set_meta(&key, problem.encode()).await,
            None => self.remove_meta(&key).await,
        }
    }

    /// See [`read::setup_problem`].
    pub async fn setup_problem(&self, sink: &str) -> Result<Option<SetupProblem>, JournalError> {
        let sink = sink.to_string();
        self.read(move |txn| read::setup_problem(txn, &sink)).await
    }

    /// See [`read::crm_ids`].
    pub async fn crm_ids(
        &self,
        sink: &str,
        engagement_id: &str,
    ) -> Result<Option<CrmIds>, JournalError> {
        let (sink, engagement_id) = (sink.to_string(), engagement_id.to_string());
        self.read(move |txn| read::crm_ids(txn, &sink, &engagement_id))
            .await
    }

    /// Merges ids the sink just learned into what is stored for the
    /// engagement ([`CrmIds::merge`]); resolves after the commit.
    pub async fn record_crm_ids(
        &self,
        sink: &str,
        engagement_id: &str,
        ids: CrmIds,
    ) -> Result<(), JournalError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::CrmIds {
            sink: sink.to_string(),
            engagement_id: engagement_id.to_string(),
            ids: Box::new(ids),
            reply,
        })
        .await?;
        rx.await.map_err(|_| JournalError::Closed)?
    }

    pub async fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, JournalError> {
        let key = key.to_string();
        self.read(move |txn| read::meta(txn, &key)).await
    }

    /// Puts a record of the sink's outbox into the durable retry tier: its next
    /// attempt is due at `not_before_ms` (ms since the epoch), after a restart too.
    pub async fn schedule(
        &self,
        sink: &str,
        seq: u64,
        attempts: u32,
        step: u32,
        not_before_ms: u64,
    ) -> Result<(), JournalError> {
        let (reply, rx) = oneshot::channel();
        let sink = sink.to_string();
        self.send(Op::Schedule {
            sink,
            seq,
            attempts,
            step,
            not_before_ms,
            reply,
        })
        .await?;
        rx.await.map_err(|_| JournalError::Closed)?
    }

    /// Moves dead-lettered records of the sink (one, or all when `seq` is None)
    /// back into its outbox for a fresh set of attempts. Returns how many moved.
    pub async fn redrive(&self, sink: &str, seq: Option<u64>) -> Result<u64, JournalError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Redrive {
            sink: sink.to_string(),
            seq,
            reply,
        })
        .await?;
        rx.await.map_err(|_| JournalError::Closed)?
    }

    /// Deletes the sink's dead-letter (and each record no other sink needs).
    pub async fn purge_dead(&self, sink: &str) -> Result<u64, JournalError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::PurgeDead {
            sink: sink.to_string(),
            reply,
        })
        .await?;
        rx.await.map_err(|_| JournalError::Closed)?
    }

    /// The socket went live at `at_ms` after a connect: records the gap since it
    /// was last known live (across restarts and crashes too). Resolves after
    /// the commit.
    pub async fn went_live(&self, at_ms: u64) -> Result<(), JournalError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::Live {
            at_ms,
            reconnected: true,
            reply: Some(reply),
        })
        .await?;
        rx.await.map_err(|_| JournalError::Closed)?
    }

    /// The socket is still live at `at_ms` (a heartbeat reply or an event).
    /// Committed with the next group; nobody waits for it.
    pub async fn still_live(&self, at_ms: u64) -> Result<(), JournalError> {
        self.send(Op::Live {
            at_ms,
            reconnected: false,
            reply: None,
        })
        .await
    }

    /// Marks a gap reconciled.
    pub async fn gap_done(&self, start_ms: u64, end_ms: u64) -> Result<(), JournalError> {
        let (reply, rx) = oneshot::channel();
        self.send(Op::GapDone {
            start_ms,
            end_ms,
            reply,
        })
        .await?;
        rx.await.map_err(|_| JournalError::Closed)?
    }

    /// See [`read::key_state`].
    pub async fn key_state(
        &self,
        id: &str,
        version: Option<[u8; 32]>,
    ) -> Result<read::KeyState, JournalError> {
        let id = id.to_string();
        self.read(move |txn| read::key_state(txn, &id, version))
            .await
    }

    /// See [`read::is_new`].
    pub async fn is_new(&self, id: &str, version: Option<[u8; 32]>) -> Result<bool, JournalError> {
        let id = id.to_string();
        self.read(move |txn| read::is_new(txn, &id, version)).await
    }

    /// The engagement's interaction aggregate as of the last commit (see
    /// [`read::interaction`]): what a CRM sink renders at delivery time.
    pub async fn interaction(
        &self,
        engagement_id: &str,
    ) -> Result<Option<crate::interaction::Interaction>, JournalError> {
        let engagement_id = engagement_id.to_string();
        self.read(move |txn| read::interaction(txn, &engagement_id))
            .await
    }

    /// The last moment the socket was known live, as recorded (see
    /// [`read::live_until`]).
    pub async fn live_until(&self) -> Result<Option<u64>, JournalError> {
        self.read(read::live_until).await
    }

    /// See [`read::gaps`].
    pub async fn gaps(&self) -> Result<Vec<Gap>, JournalError> {
        self.read(read::gaps).await
    }

    /// The highest seq whose commit returned; changes wake the delivery workers.
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.shared.committed.clone()
    }

    /// See [`read::ready_batch`].
    pub async fn read_outbox(
        &self,
        sink: &str,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<Pending>, u64), JournalError> {
        let sink = sink.to_string();
        self.read(move |txn| read::ready_batch(txn, &sink, after, limit))
            .await
    }

    /// See [`read::due_batch`].
    pub async fn read_due(
        &self,
        sink: &str,
        now_ms: u64,
        limit: usize,
    ) -> Result<Vec<Pending>, JournalError> {
        let sink = sink.to_string();
        self.read(move |txn| read::due_batch(txn, &sink, now_ms, limit))
            .await
    }

    /// See [`read::waiting`].
    pub async fn read_waiting(
        &self,
        sink: &str,
        after: Option<(u64, u64)>,
        limit: usize,
    ) -> Result<Vec<(u64, Pending)>, JournalError> {
        let sink = sink.to_string();
        self.read(move |txn| read::waiting(txn, &sink, after, limit))
            .await
    }

    /// See [`read::next_due`].
    pub async fn next_due(&self, sink: &str) -> Result<Option<u64>, JournalError> {
        let sink = sink.to_string();
        self.read(move |txn| read::next_due(txn, &sink)).await
    }

    /// See [`read::next_due_except`].
    pub async fn next_due_except(
        &self,
        sink: &str,
        busy: &std::collections::HashSet<u64>,
    ) -> Result<Option<u64>, JournalError> {
        let (sink, busy) = (sink.to_string(), busy.clone());
        self.read(move |txn| read::next_due_except(txn, &sink, &busy))
            .await
    }

    /// See [`read::list_dead`].
    pub async fn dead_letters(
        &self,
        sink: &str,
        limit: usize,
    ) -> Result<Vec<read::Dead>, JournalError> {
        let sink = sink.to_string();
        self.read(move |txn| read::list_dead(txn, &sink, limit))
            .await
    }

    /// Pending, retrying and dead counts for every configured sink.
    pub async fn stats(&self) -> Result<Vec<read::SinkStats>, JournalError> {
        let names: Vec<String> = self.shared.sinks.iter().map(|s| s.name.clone()).collect();
        self.read(move |txn| {
            names
                .iter()
                .map(|name| read::sink_stats(txn, name))
                .collect()
        })
        .await
    }

    /// The media stage's outbox: records waiting for their files before they
    /// reach the sinks (`retrying`: waiting for a later attempt).
    pub async fn media_stats(&self) -> Result<read::SinkStats, JournalError> {
        self.read(|txn| read::sink_stats(txn, MEDIA)).await
    }

    /// Number of records still held (for any sink).
    pub async fn stored_records(&self) -> Result<u64, JournalError> {
        self.read(read::stored_records).await
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
            let _ = handle.await;
        }
    }

    async fn send(&self, op: Op) -> Result<(), JournalError> {
        self.shared
            .ops
            .send(op)
            .await
            .map_err(|_| JournalError::Closed)
    }

    /// Runs `f` on a fresh snapshot, off the async threads.
    async fn read<T, F>(&self, f: F) -> Result<T, JournalError>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction) -> Result<T, JournalError> + Send + 'static,
    {
        let db = self.shared.db.clone();
        tokio::task::spawn_blocking(move || f(&db.begin_read()?))
            .await
            .map_err(|_| JournalError::Closed)?
    }
}

#[cfg(test)]
mod model;
#[cfg(test)]
mod retention_tests;
#[cfg(test)]
mod tests;
