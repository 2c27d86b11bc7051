//! Read-only queries over one snapshot (a redb read transaction). Used by the
//! running daemon through [`Journal`](super::Journal) and by the `queue`
//! commands directly, including against a journal another process is writing.
//!
//! Nothing here writes; a table that does not exist yet reads as empty.

use std::collections::HashSet;
use std::sync::Arc;

use redb::{
    ReadOnlyTable, ReadTransaction, ReadableTable, ReadableTableMetadata, TableDefinition,
    TableError,
};

use super::tables::{self, OutboxEntry};
use super::{DeadLetter, Gap, GapState, JournalError, Pending};

/// Opens a table, `None` when it was never created.
fn open<K: redb::Key + 'static, V: redb::Value + 'static>(
    txn: &ReadTransaction,
    definition: TableDefinition<K, V>,
) -> Result<Option<ReadOnlyTable<K, V>>, JournalError> {
    match txn.open_table(definition) {
        Ok(table) => Ok(Some(table)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn pending(
    records: &ReadOnlyTable<u64, &'static [u8]>,
    seq: u64,
    entry: OutboxEntry,
) -> Result<Option<Pending>, JournalError> {
    // An outbox row always has its record (both change in one commit); a
    // missing one would be a bug, not data to deliver.
    let Some(bytes) = records.get(seq)? else {
        tracing::error!(seq, "outbox entry without a record; skipping");
        return Ok(None);
    };
    let (view, record) = tables::split_record(bytes.value());
    let view = view
        .and_then(|v| serde_json::from_slice(v).ok())
        .unwrap_or_default();
    Ok(Some(Pending {
        seq,
        attempts: entry.attempts,
        step: entry.step,
        not_before_ms: entry.not_before_ms,
        bytes: Arc::from(record),
        view: Arc::new(view),
    }))
}

/// Records in the sink's outbox after `after` that are not waiting in the
/// durable tier, at most `limit`, plus the last seq looked at (the caller's
/// next cursor, also when every row looked at was waiting).
pub fn ready_batch(
    txn: &ReadTransaction,
    sink: &str,
    after: u64,
    limit: usize,
) -> Result<(Vec<Pending>, u64), JournalError> {
    let Some(outbox) = open(txn, tables::outbox(&tables::outbox_name(sink)))? else {
        return Ok((Vec::new(), after));
    };
    let records = txn.open_table(tables::RECORDS)?;
    let mut batch = Vec::new();
    let mut last = after;
    // Look at a bounded number of rows even when most are waiting, so one read
    // never walks a huge backlog.
    for row in outbox
        .range(after.saturating_add(1)..)?
        .take(limit.saturating_mul(4))
    {
        let (seq, entry) = row?;
        last = seq.value();
        let entry = OutboxEntry::from_tuple(entry.value());
        if entry.not_before_ms != 0 {
            continue;
        }
        if let Some(p) = pending(&records, last, entry)? {
            batch.push(p);
        }
        if batch.len() >= limit {
            break;
        }
    }
    Ok((batch, last))
}

/// Records in the sink's durable retry tier due at or before `now_ms`.
pub fn due_batch(
    txn: &ReadTransaction,
    sink: &str,
    now_ms: u64,
    limit: usize,
) -> Result<Vec<Pending>, JournalError> {
    let Some(due) = open(txn, tables::due(&tables::due_name(sink)))? else {
        return Ok(Vec::new());
    };
    let outbox = txn.open_table(tables::outbox(&tables::outbox_name(sink)))?;
    let records = txn.open_table(tables::RECORDS)?;
    let mut batch = Vec::new();
    for row in due.range((0, 0)..=(now_ms, u64::MAX))?.take(limit) {
        let (key, _) = row?;
        let (_, seq) = key.value();
        if let Some(entry) = outbox.get(seq)?
            && let Some(p) = pending(&records, seq, OutboxEntry::from_tuple(entry.value()))?
        {
            batch.push(p);
        }
    }
    Ok(batch)
}

/// Every record in the durable tier, in due order (a restarting worker needs
/// to know which engagements they hold back).
pub fn waiting(
    txn: &ReadTransaction,
    sink: &str,
    after: Option<(u64, u64)>,
    limit: usize,
) -> Result<Vec<(u64, Pending)>, JournalError> {
    let Some(due) = open(txn, tables::due(&tables::due_name(sink)))? else {
        return Ok(Vec::new());
    };
    let outbox = txn.open_table(tables::outbox(&tables::outbox_name(sink)))?;
    let records = txn.open_table(tables::RECORDS)?;
    let start = match after {
        Some((ms, seq)) => std::ops::Bound::Excluded((ms, seq)),
        None => std::ops::Bound::Unbounded,
    };
    let mut out = Vec::new();
    for row in due
        .range::<(u64, u64)>((start, std::ops::Bound::Unbounded))?
        .take(limit)
    {
        let (key, _) = row?;
        let (ms, seq) = key.value();
        if let Some(entry) = outbox.get(seq)?
            && let Some(p) = pending(&records, seq, OutboxEntry::from_tuple(entry.value()))?
        {
            out.push((ms, p));
        }
    }
    Ok(out)
}

/// When the next durable retry of the sink is due, if any.
pub fn next_due(txn: &ReadTransaction, sink: &str) -> Result<Option<u64>, JournalError> {
    next_due_except(txn, sink, &HashSet::new())
}

/// When the next durable retry of the sink is due, leaving out the records in
/// `busy`: a retry being attempted stays in the due index until it settles,
/// and a worker that woke for it would spin until then.
pub fn next_due_except(
    txn: &ReadTransaction,
    sink: &str,
    busy: &HashSet<u64>,
) -> Result<Option<u64>, JournalError> {
    let Some(due) = open(txn, tables::due(&tables::due_name(sink)))? else {
        return Ok(None);
    };
    for row in due.iter()? {
        let (key, _) = row?;
        let (ms, seq) = key.value();
        if !busy.contains(&seq) {
            return Ok(Some(ms));
        }
    }
    Ok(None)
}

/// The operator's numbers for one sink.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SinkStats {
    pub sink: String,
    /// Records the sink still has to get (including those waiting to retry).
    pub pending: u64,
    /// Of those, records waiting in the durable retry tier.
    pub retrying: u64,
    pub dead: u64,
    /// `received_at` of the oldest pending record.
    pub oldest_pending: Option<String>,
}

pub fn sink_stats(txn: &ReadTransaction, sink: &str) -> Result<SinkStats, JournalError> {
    let mut stats = SinkStats {
        sink: sink.to_string(),
        ..SinkStats::default()
    };
    if let Some(outbox) = open(txn, tables::outbox(&tables::outbox_name(sink)))? {
        stats.pending = outbox.len()?;
        if let Some((seq, _)) = outbox.first()? {
            let records = txn.open_table(tables::RECORDS)?;
            if let Some(bytes) = records.get(seq.value())? {
                stats.oldest_pending = received_at(tables::split_record(bytes.value()).1);
            }
        }
    }
    if let Some(due) = open(txn, tables::due(&tables::due_name(sink)))? {
        stats.retrying = due.len()?;
    }
    if let Some(dead) = open(txn, tables::dead(&tables::dead_name(sink)))? {
        stats.dead = dead.len()?;
    }
    Ok(stats)
}

fn received_at(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Received {
        received_at: String,
    }
    serde_json::from_slice::<Received>(bytes)
        .ok()
        .map(|r| r.received_at)
}

/// Sinks that have (or had) an outbox in this journal.
pub fn known_sinks(txn: &ReadTransaction) -> Result<Vec<String>, JournalError> {
    let Some(sinks) = open(txn, tables::SINKS)? else {
        return Ok(Vec::new());
    };
    let mut names = Vec::new();
    for row in sinks.iter()? {
        names.push(row?.0.value().to_string());
    }
    Ok(names)
}

/// Pending records of a sink in journal order.
pub fn list_pending(
    txn: &ReadTransaction,
    sink: &str,
    limit: usize,
) -> Result<Vec<Pending>, JournalError> {
    let Some(outbox) = open(txn, tables::outbox(&tables::outbox_name(sink)))? else {
        return Ok(Vec::new());
    };
    let records = txn.open_table(tables::RECORDS)?;
    let mut out = Vec::new();
    for row in outbox.iter()?.take(limit) {
        let (seq, entry) = row?;
        if let Some(p) = pending(
            &records,
            seq.value(),
            OutboxEntry::from_tuple(entry.value()),
        )? {
            out.push(p);
        }
    }
    Ok(out)
}

/// A dead-lettered record with why it died.
#[derive(Debug, Clone)]
pub struct Dead {
    pub seq: u64,
    pub letter: DeadLetter,
    pub bytes: Arc<[u8]>,
}

pub fn list_dead(
    txn: &ReadTransaction,
    sink: &str,
    limit: usize,
) -> Result<Vec<Dead>, JournalError> {
    let Some(dead) = open(txn, tables::dead(&tables::dead_name(sink)))? else {
        return Ok(Vec::new());
    };
    let records = txn.open_table(tables::RECORDS)?;
    let mut out = Vec::new();
    for row in dead.iter()?.take(limit) {
        let (seq, letter) = row?;
        let seq = seq.value();
        let letter = DeadLetter::decode(letter.value()).unwrap_or(DeadLetter {
            reason: "unreadable dead-letter entry".into(),
            status: None,
            code: None,
            attempts: 0,
            at: jiff::Timestamp::UNIX_EPOCH,
        });
        let bytes = records
            .get(seq)?
            .map(|b| Arc::from(tables::split_record(b.value()).1))
            .unwrap_or_else(|| Arc::from(&b""[..]));
        out.push(Dead { seq, letter, bytes });
    }
    Ok(out)
}

pub fn meta(txn: &ReadTransaction, key: &str) -> Result<Option<Vec<u8>>, JournalError> {
    let Some(table) = open(txn, tables::META)? else {
        return Ok(None);
    };
    Ok(table.get(key)?.map(|v| v.value().to_vec()))
}

/// The engagement's interaction aggregate as of this snapshot (`None`: no
/// record of it was stored in the last 30 days, or the journal predates the
/// table).
pub fn interaction(
    txn: &ReadTransaction,
    engagement_id: &str,
) -> Result<Option<crate::interaction::Interaction>, JournalError> {
    let Some(table) = open(txn, tables::INTERACTIONS)? else {
        return Ok(None);
    };
    Ok(table.get(engagement_id)?.and_then(|v| {
        tables::split_interaction(v.value())
            .and_then(|(_, aggregate)| crate::interaction::Interaction::decode(aggregate))
    }))
}

/// The ids `sink` recorded for the engagement (see [`super::CrmIds`]).
pub fn crm_ids(
    txn: &ReadTransaction,
    sink: &str,
    engagement_id: &str,
) -> Result<Option<super::CrmIds>, JournalError> {
    let Some(table) = open(txn, tables::CRM_IDS)? else {
        return Ok(None);
    };
    let key = super::crm::crm_ids_key(sink, engagement_id);
    Ok(table.get(key.as_str())?.and_then(|v| {
        tables::split_crm_ids(v.value()).and_then(|(_, ids)| super::CrmIds::decode(ids))
    }))
}

/// Rows of CRM ids held, for every sink.
pub fn crm_ids_held(txn: &ReadTransaction) -> Result<u64, JournalError> {
    Ok(open(txn, tables::CRM_IDS)?
        .map(|t| t.len())
        .transpose()?
        .unwrap_or(0))
}

/// The sink's last set-up problem, while it lasts (see
/// [`super::SetupProblem`]); an unreadable entry reads as none.
pub fn setup_problem(
    txn: &ReadTransaction,
    sink: &str,
) -> Result<Option<super::SetupProblem>, JournalError> {
    Ok(meta(txn, &super::setup_problem_key(sink))?
        .and_then(|bytes| super::SetupProblem::decode(&bytes)))
}

/// Interaction aggregates held.
pub fn interactions_held(txn: &ReadTransaction) -> Result<u64, JournalError> {
    Ok(open(txn, tables::INTERACTIONS)?
        .map(|t| t.len())
        .transpose()?
        .unwrap_or(0))
}

pub fn stored_records(txn: &ReadTransaction) -> Result<u64, JournalError> {
    Ok(open(txn, tables::RECORDS)?
        .map(|t| t.len())
        .transpose()?
        .unwrap_or(0))
}

/// The gap ledger, oldest first.
pub fn gaps(txn: &ReadTransaction) -> Result<Vec<Gap>, JournalError> {
    let Some(table) = open(txn, tables::GAPS)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for row in table.iter()? {
        let (key, state) = row?;
        let (start_ms, end_ms) = key.value();
        let state = if state.value() == GapState::Done as u8 {
            GapState::Done
        } else {
            GapState::Pending
        };
        out.push(Gap {
            start_ms,
            end_ms,
            state,
        });
    }
    Ok(out)
}

/// The last moment the socket was known live (ms since the epoch), if it
/// ever was (`zcc-relay status`).
pub fn live_until(txn: &ReadTransaction) -> Result<Option<u64>, JournalError> {
    Ok(meta(txn, tables::LIVE_UNTIL)?
        .and_then(|v| v.try_into().ok())
        .map(u64::from_le_bytes))
}

/// What the journal knows of a natural key, for one version of its content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// Never stored (or pruned after 30 days).
    Unknown,
    /// Stored, but not this version: `revision` is the highest stored.
    Revised { revision: u32 },
    /// This version (or the first-wins item) is stored: a duplicate.
    Known,
}

/// See [`KeyState`].
pub fn key_state(
    txn: &ReadTransaction,
    id: &str,
    version: Option<[u8; 32]>,
) -> Result<KeyState, JournalError> {
    let Some(keys) = open(txn, tables::KEYS)? else {
        return Ok(KeyState::Unknown);
    };
    let known = keys
        .get(id)?
        .and_then(|v| tables::KeyEntry::decode(v.value()));
    Ok(match known {
        None => KeyState::Unknown,
        Some(entry) if entry.knows(version) => KeyState::Known,
        Some(entry) => KeyState::Revised {
            revision: entry.revision,
        },
    })
}

/// Would appending a record with this key and version store something new?
/// (The journal's dedup rule, read-only: a dry run's answer.)
pub fn is_new(
    txn: &ReadTransaction,
    id: &str,
    version: Option<[u8; 32]>,
) -> Result<bool, JournalError> {
    Ok(key_state(txn, id, version)? != KeyState::Known)
}
