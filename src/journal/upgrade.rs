//! The journal file's format version ([`tables::FORMAT`] in `meta`) and the
//! upgrade of an older file on open.
//!
//! Format 0 (no version in `meta`; the first release) stored a record's JSON
//! alone and a dead letter's time as text. Format 1 stores each record with
//! its Zoom-neutral view ([`crate::record::View`]) and a dead letter with a
//! vendor code and `at_ms`. The owner upgrades a format-0 file in the same
//! write transaction that prepares the journal (`writer::prepare`), so a crash
//! during the upgrade leaves the old file as it was, and the next start does
//! it again. Readers accept both layouts anyway (a read-only `queue` beside a
//! daemon of the previous release). A file newer than this build is refused.
//!
//! Format 2 adds the `interactions` table (the aggregate per engagement). An
//! older file gets it built from the records it still holds (those some sink
//! or the media stage has not finished with, and dead letters): earlier
//! records of those engagements were delivered and removed, so their part is
//! missing until the engagement's next record; from then on every record
//! joins it.
//!
//! The views of format-0 records are computed with `zoom::view::of_record`,
//! the same pure function the socket path uses: the one place outside
//! `zoom/` and `reconcile::synth` that hands Zoom's JSON to Zoom's reader.

use redb::{ReadableTable, WriteTransaction};

use super::tables;
use super::{DeadLetter, JournalError};

/// Rows rewritten per step, so the upgrade never holds a large journal in
/// memory at once.
const CHUNK: usize = 1024;

/// The file's format version (0 when it has none).
pub(super) fn version(txn: &WriteTransaction) -> Result<u32, JournalError> {
    let meta = txn.open_table(tables::META)?;
    let value = meta.get(tables::FORMAT)?;
    Ok(value
        .and_then(|v| v.value().try_into().ok())
        .map(u32::from_le_bytes)
        .unwrap_or(0))
}

/// Brings the file to [`tables::FORMAT_VERSION`] inside `txn`.
pub(super) fn to_current(txn: &WriteTransaction) -> Result<(), JournalError> {
    let found = version(txn)?;
    if found > tables::FORMAT_VERSION {
        return Err(JournalError::NewerFormat {
            found,
            supported: tables::FORMAT_VERSION,
        });
    }
    if found == tables::FORMAT_VERSION {
        return Ok(());
    }
    let (records, letters) = if found < 1 {
        (records(txn)?, dead_letters(txn)?)
    } else {
        (0, 0)
    };
    let interactions = interactions(txn, crate::clock::now_ms())?;
    if records > 0 || letters > 0 || interactions > 0 {
        tracing::info!(
            from = found,
            to = tables::FORMAT_VERSION,
            records,
            dead_letters = letters,
            interactions,
            "journal format upgraded"
        );
    }
    txn.open_table(tables::META)?.insert(
        tables::FORMAT,
        tables::FORMAT_VERSION.to_le_bytes().as_slice(),
    )?;
    Ok(())
}

/// Stores every format-0 record with its view. Returns how many changed.
fn records(txn: &WriteTransaction) -> Result<u64, JournalError> {
    let mut table = txn.open_table(tables::RECORDS)?;
    let mut after = 0u64;
    let mut changed = 0;
    loop {
        let chunk: Vec<(u64, Vec<u8>)> = table
            .range(after.saturating_add(1)..)?
            .take(CHUNK)
            .map(|row| row.map(|(k, v)| (k.value(), v.value().to_vec())))
            .collect::<Result<_, _>>()?;
        let Some(last) = chunk.last().map(|(seq, _)| *seq) else {
            return Ok(changed);
        };
        for (seq, value) in chunk {
            if let (None, body) = tables::split_record(&value) {
                let view = crate::zoom::view::of_record(body);
                let view = serde_json::to_vec(&view).unwrap_or_default();
                table.insert(seq, tables::encode_record(&view, body).as_slice())?;
                changed += 1;
            }
        }
        after = last;
    }
}

/// Builds the interaction aggregates from the records still held (format 1
/// layout by now), stamped `now_ms`. Returns how many engagements it found.
fn interactions(txn: &WriteTransaction, now_ms: u64) -> Result<u64, JournalError> {
    use crate::interaction::{Fact, Interaction, fold};
    use crate::record::{RecordHeader, View, media_entries};

    let records = txn.open_table(tables::RECORDS)?;
    let mut aggregates = txn.open_table(tables::INTERACTIONS)?;
    let mut after = 0u64;
    let mut engagements = std::collections::BTreeSet::new();
    loop {
        let chunk: Vec<(u64, Vec<u8>)> = records
            .range(after.saturating_add(1)..)?
            .take(CHUNK)
            .map(|row| row.map(|(k, v)| (k.value(), v.value().to_vec())))
            .collect::<Result<_, _>>()?;
        let Some(last) = chunk.last().map(|(seq, _)| *seq) else {
            return Ok(engagements.len() as u64);
        };
        let parts: Vec<(View, i64, u32, Vec<crate::record::MediaEntry>)> = chunk
            .iter()
            .filter_map(|(_, value)| {
                let (view, body) = tables::split_record(value);
                let view: View = serde_json::from_slice(view?).ok()?;
                let header: RecordHeader = serde_json::from_slice(body).ok()?;
                Some((view, header.event_ts, header.revision, media_entries(body)))
            })
            .collect();
        let folded = fold(parts.iter().map(|(view, event_ts, revision, files)| Fact {
            view,
            event_ts: *event_ts,
            revision: *revision,
            files,
        }));
        for (engagement_id, mut aggregate) in folded {
            let stored = aggregates.get(engagement_id.as_str())?.and_then(|v| {
                tables::split_interaction(v.value()).and_then(|(_, a)| Interaction::decode(a))
            });
            if let Some(stored) = stored {
                aggregate.merge(&stored);
            }
            let value = tables::encode_interaction(now_ms, &aggregate.encode());
            aggregates.insert(engagement_id.as_str(), value.as_slice())?;
            engagements.insert(engagement_id);
        }
        after = last;
    }
}

/// Rewrites every sink's dead letters in the current layout. Returns how
/// many there were.
fn dead_letters(txn: &WriteTransaction) -> Result<u64, JournalError> {
    let sinks: Vec<String> = txn
        .open_table(tables::SINKS)?
        .iter()?
        .map(|row| row.map(|(k, _)| k.value().to_string()))
        .collect::<Result<_, _>>()?;
    let mut count = 0;
    for sink in sinks {
        let mut table = txn.open_table(tables::dead(&tables::dead_name(&sink)))?;
        let rows: Vec<(u64, Vec<u8>)> = table
            .iter()?
            .map(|row| row.map(|(k, v)| (k.value(), v.value().to_vec())))
            .collect::<Result<_, _>>()?;
        for (seq, bytes) in rows {
            if let Some(letter) = DeadLetter::decode(&bytes) {
                table.insert(seq, letter.encode().as_slice())?;
            }
            count += 1;
        }
    }
    Ok(count)
}
