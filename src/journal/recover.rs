//! What happens when `journal.redb` cannot be trusted (a torn file, flipped
//! bytes, a disk that lied).
//!
//! Policy: never wedge, never crash-loop. The file is checked on every open
//! (redb's integrity check reads it whole). A file that fails the check, or
//! makes redb panic, is moved aside byte for byte to
//! `journal.redb.corrupt-<unix seconds>` and a new journal is created in its
//! place. Then everything still readable in a scratch copy of the bad file is
//! salvaged into the new one, table by table, row by row, stopping a table at
//! its first unreadable row; references are rebuilt so nothing points at a
//! record that was lost. Each step is logged as an error naming the files, and
//! `queue stats` lists quarantined files until an operator removes them.
//! Records that were lost with the bad pages are not recoverable from the
//! journal; for the seven keyed event types, reconciliation over the REST API
//! is what brings them back.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use redb::{
    Database, ReadableDatabase, ReadableTable, TableDefinition, TableHandle, WriteTransaction,
};

use super::JournalError;
use super::tables;

/// Quarantined journals are named `<this><unix seconds>`.
pub const QUARANTINE_PREFIX: &str = "journal.redb.corrupt-";

/// What was copied out of a corrupt journal.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Salvage {
    pub records: u64,
    pub keys: u64,
    pub outbox_rows: u64,
    /// Outbox or dead-letter rows whose record was unreadable.
    pub orphans: u64,
}

/// Opens the database at `path` with `open`, quarantining and salvaging a
/// corrupt file as described above.
pub(super) fn open_or_recover(
    path: &Path,
    open: impl Fn(&Path) -> Result<Database, redb::DatabaseError>,
) -> Result<Database, JournalError> {
    let failure = match catch_unwind(AssertUnwindSafe(|| open(path))) {
        Ok(Ok(db)) => return Ok(db),
        Ok(Err(e)) if is_corruption(&e) => e.to_string(),
        Ok(Err(e)) => return Err(super::JournalError::database(path, e)),
        Err(_) => "the storage engine panicked while opening it".to_string(),
    };
    let quarantined = quarantine_path(path);
    std::fs::rename(path, &quarantined).map_err(|e| JournalError::io(path, e))?;
    tracing::error!(
        file = %path.display(),
        quarantined = %quarantined.display(),
        error = %failure,
        "journal file is corrupt; it was moved aside unchanged and a new journal is started; salvaging what is readable"
    );
    let db = open(path).map_err(|e| JournalError::database(path, e))?;
    match salvage(&quarantined, &db) {
        Ok(report) => tracing::error!(
            quarantined = %quarantined.display(),
            records = report.records,
            keys = report.keys,
            outbox_rows = report.outbox_rows,
            lost_rows = report.orphans,
            "salvaged the readable part of the corrupt journal"
        ),
        Err(e) => {
            tracing::error!(quarantined = %quarantined.display(), error = %e, "nothing could be salvaged from the corrupt journal")
        }
    }
    Ok(db)
}

fn is_corruption(error: &redb::DatabaseError) -> bool {
    match error {
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(_)) => true,
        // A short file, or one that is not a redb file at all.
        redb::DatabaseError::Storage(redb::StorageError::Io(io)) => {
            matches!(
                io.kind(),
                std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
            )
        }
        _ => false,
    }
}

fn quarantine_path(path: &Path) -> PathBuf {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut candidate = path.with_file_name(format!("{QUARANTINE_PREFIX}{seconds}"));
    let mut n = 1;
    while candidate.exists() {
        candidate = path.with_file_name(format!("{QUARANTINE_PREFIX}{seconds}.{n}"));
        n += 1;
    }
    candidate
}

/// Quarantined journal files in `dir`.
pub fn quarantined(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(QUARANTINE_PREFIX))
        })
        .collect();
    found.sort();
    found
}

/// Copies what is readable from a scratch copy of `bad` into `fresh`.
fn salvage(bad: &Path, fresh: &Database) -> Result<Salvage, String> {
    let scratch = bad.with_extension("salvage");
    std::fs::copy(bad, &scratch).map_err(|e| e.to_string())?;
    let result = catch_unwind(AssertUnwindSafe(|| {
        // No integrity check here: it is known to fail; read what we can.
        let source = redb::Builder::new()
            .open(&scratch)
            .map_err(|e| e.to_string())?;
        copy_all(&source, fresh)
    }))
    .unwrap_or_else(|_| Err("the storage engine panicked while reading the corrupt file".into()));
    let _ = std::fs::remove_file(&scratch);
    result
}

fn copy_all(source: &Database, fresh: &Database) -> Result<Salvage, String> {
    let read = source.begin_read().map_err(|e| e.to_string())?;
    let names: Vec<String> = read
        .list_tables()
        .map_err(|e| e.to_string())?
        .map(|t| t.name().to_string())
        .collect();
    let txn = fresh.begin_write().map_err(|e| e.to_string())?;
    let mut report = Salvage {
        records: copy_rows(&read, &txn, tables::RECORDS),
        keys: copy_rows(&read, &txn, tables::KEYS),
        ..Salvage::default()
    };
    copy_rows(&read, &txn, tables::META);
    copy_rows(&read, &txn, tables::SINKS);
    copy_rows(&read, &txn, tables::GAPS);
    copy_rows(&read, &txn, tables::INTERACTIONS);
    for name in &names {
        if name.starts_with("outbox/") {
            report.outbox_rows += copy_rows(&read, &txn, tables::outbox(name));
        } else if name.starts_with("due/") {
            copy_rows(&read, &txn, tables::due(name));
        } else if name.starts_with("dead/") {
            copy_rows(&read, &txn, tables::dead(name));
        }
    }
    report.orphans = rebuild_references(&txn, &names).map_err(|e| e.to_string())?;
    txn.commit().map_err(|e| e.to_string())?;
    Ok(report)
}

/// Copies rows of one table until the first unreadable one; returns how many.
fn copy_rows<K: redb::Key + 'static, V: redb::Value + 'static>(
    read: &redb::ReadTransaction,
    txn: &WriteTransaction,
    definition: TableDefinition<K, V>,
) -> u64 {
    let copied = catch_unwind(AssertUnwindSafe(|| -> u64 {
        let Ok(from) = read.open_table(definition) else {
            return 0;
        };
        let Ok(mut to) = txn.open_table(definition) else {
            return 0;
        };
        let Ok(rows) = from.iter() else { return 0 };
        let mut n = 0;
        for row in rows {
            let Ok((key, value)) = row else { break };
            if to.insert(key.value(), value.value()).is_err() {
                break;
            }
            n += 1;
        }
        n
    }));
    copied.unwrap_or(0)
}

/// After a partial copy: outbox, due and dead-letter rows whose record was
/// lost are dropped (and counted), `refs` is recomputed from what remains, and
/// records nobody references go.
fn rebuild_references(txn: &WriteTransaction, names: &[String]) -> Result<u64, redb::Error> {
    let mut refs: BTreeMap<u64, u32> = BTreeMap::new();
    let mut orphans = 0;
    let records = txn.open_table(tables::RECORDS)?;
    for name in names {
        let seqs: Vec<u64> = if name.starts_with("outbox/") {
            let table = txn.open_table(tables::outbox(name))?;
            table
                .iter()?
                .map(|r| r.map(|(k, _)| k.value()))
                .collect::<Result<_, _>>()?
        } else if name.starts_with("dead/") {
            let table = txn.open_table(tables::dead(name))?;
            table
                .iter()?
                .map(|r| r.map(|(k, _)| k.value()))
                .collect::<Result<_, _>>()?
        } else {
            continue;
        };
        for seq in seqs {
            if records.get(seq)?.is_some() {
                *refs.entry(seq).or_default() += 1;
            } else {
                orphans += 1;
                if name.starts_with("outbox/") {
                    txn.open_table(tables::outbox(name))?.remove(seq)?;
                } else {
                    txn.open_table(tables::dead(name))?.remove(seq)?;
                }
            }
        }
    }
    // Due entries must point at outbox rows that still exist.
    for name in names.iter().filter(|n| n.starts_with("due/")) {
        let outbox_name = format!("outbox/{}", &name["due/".len()..]);
        let outbox = txn.open_table(tables::outbox(&outbox_name))?;
        let mut due = txn.open_table(tables::due(name))?;
        let stale: Vec<(u64, u64)> = due
            .iter()?
            .map(|r| r.map(|(k, _)| k.value()))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .filter(|(_, seq)| !matches!(outbox.get(*seq), Ok(Some(_))))
            .collect();
        for key in stale {
            due.remove(key)?;
        }
    }
    let stored: Vec<u64> = records
        .iter()?
        .map(|r| r.map(|(k, _)| k.value()))
        .collect::<Result<_, _>>()?;
    drop(records);
    let mut records = txn.open_table(tables::RECORDS)?;
    let mut table = txn.open_table(tables::REFS)?;
    table.retain(|_, _| false)?;
    for seq in stored {
        match refs.get(&seq) {
            Some(n) => {
                table.insert(seq, *n)?;
            }
            None => {
                records.remove(seq)?;
            }
        }
    }
    // The next seq must stay above every seq ever used.
    let highest = refs.keys().next_back().copied().unwrap_or(0);
    let mut meta = txn.open_table(tables::META)?;
    let next = meta
        .get(tables::NEXT_SEQ)?
        .and_then(|v| v.value().try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0);
    if next <= highest {
        meta.insert(tables::NEXT_SEQ, (highest + 1).to_le_bytes().as_slice())?;
    }
    Ok(orphans)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::value::RawValue;

    use super::*;
    use crate::journal::{Journal, SinkRoute};
    use crate::record::{NewRecord, Source};
    use crate::route::EventFilter;

    fn routes() -> Vec<SinkRoute> {
        vec![SinkRoute {
            name: "a".into(),
            filter: EventFilter::all(),
        }]
    }

    /// A journal with `n` pending records; returns their bytes by seq.
    async fn filled(dir: &Path, n: usize) -> BTreeMap<u64, Vec<u8>> {
        let journal = Journal::open(dir, routes()).unwrap();
        for i in 0..n {
            let payload = format!(
                r#"{{"object":{{"message_id":"M{i}","pad":"{}"}}}}"#,
                "p".repeat(300)
            );
            journal
                .append(NewRecord {
                    id: format!("inbox_message_received:M{i}"),
                    event: "contact_center.inbox_message_received".into(),
                    event_ts: i as i64,
                    source: Source::Websocket,
                    received_at: "2026-11-26T10:00:00.000Z".into(),
                    payload: RawValue::from_string(payload).unwrap(),
                    version: None,
                    view: Default::default(),
                })
                .await
                .unwrap();
        }
        let (pending, _) = journal.read_outbox("a", 0, n * 2).await.unwrap();
        journal.close().await;
        pending
            .into_iter()
            .map(|p| (p.seq, p.bytes.to_vec()))
            .collect()
    }

    async fn reopen_and_check(
        dir: &Path,
        original: &BTreeMap<u64, Vec<u8>>,
        damaged: &[u8],
    ) -> usize {
        let journal = Journal::open(dir, routes())
            .expect("a corrupt journal must not stop the daemon from starting");
        // The bad file is kept byte for byte.
        let kept = quarantined(dir);
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert_eq!(std::fs::read(&kept[0]).unwrap(), damaged);
        // Whatever was salvaged is exactly what was stored, and the journal works.
        let (salvaged, _) = journal
            .read_outbox("a", 0, original.len() * 2)
            .await
            .unwrap();
        for pending in &salvaged {
            assert_eq!(
                Some(&pending.bytes.to_vec()),
                original.get(&pending.seq),
                "salvaged record {} changed",
                pending.seq
            );
        }
        let stats = &journal.stats().await.unwrap()[0];
        assert_eq!(stats.pending as usize, salvaged.len());
        assert_eq!(
            journal.stored_records().await.unwrap() as usize,
            salvaged.len()
        );
        let next = NewRecord {
            id: "new".into(),
            event: "e".into(),
            event_ts: 0,
            source: Source::Websocket,
            received_at: "t".into(),
            payload: RawValue::from_string("{}".into()).unwrap(),
            version: None,
            view: Default::default(),
        };
        let crate::journal::AppendOutcome::Stored { seq, .. } = journal.append(next).await.unwrap()
        else {
            panic!("a new key is stored")
        };
        assert!(
            !original.contains_key(&seq) || salvaged.iter().all(|p| p.seq != seq),
            "seq {seq} reused while in use"
        );
        journal.close().await;
        salvaged.len()
    }

    #[tokio::test]
    async fn flipped_bytes_are_quarantined_and_the_rest_salvaged() {
        let dir = tempfile::tempdir().unwrap();
        let original = filled(dir.path(), 500).await;
        let path = dir.path().join(crate::journal::DB_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        for b in &mut bytes[middle..middle + 64] {
            *b ^= 0xA5;
        }
        std::fs::write(&path, &bytes).unwrap();
        let salvaged = reopen_and_check(dir.path(), &original, &bytes).await;
        eprintln!("flipped bytes: salvaged {salvaged} of {}", original.len());
    }

    #[tokio::test]
    async fn a_truncated_file_is_quarantined_and_the_rest_salvaged() {
        let dir = tempfile::tempdir().unwrap();
        let original = filled(dir.path(), 500).await;
        let path = dir.path().join(crate::journal::DB_FILE);
        let bytes = std::fs::read(&path).unwrap();
        let torn = &bytes[..bytes.len() / 2 + 123];
        std::fs::write(&path, torn).unwrap();
        let salvaged = reopen_and_check(dir.path(), &original, torn).await;
        eprintln!("truncated: salvaged {salvaged} of {}", original.len());
    }

    #[tokio::test]
    async fn garbage_is_quarantined_and_a_new_journal_starts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(crate::journal::DB_FILE);
        let garbage: Vec<u8> = (0..100_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        std::fs::write(&path, &garbage).unwrap();
        assert_eq!(
            reopen_and_check(dir.path(), &BTreeMap::new(), &garbage).await,
            0
        );
    }

    #[tokio::test]
    async fn salvage_keeps_the_interaction_aggregates() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path(), routes()).unwrap();
        journal
            .append(NewRecord {
                id: "engagement_started:x".into(),
                event: "contact_center.engagement_started".into(),
                event_ts: 1,
                source: Source::Websocket,
                received_at: "2026-11-26T10:00:00.000Z".into(),
                payload: RawValue::from_string("{}".into()).unwrap(),
                version: None,
                view: crate::record::View {
                    engagement_id: Some("E".into()),
                    channel: Some("voice".into()),
                    ..Default::default()
                },
            })
            .await
            .unwrap();
        let expected = journal.interaction("E").await.unwrap();
        assert!(expected.is_some());
        journal.close().await;
        drop(journal);

        let source = Database::open(dir.path().join(crate::journal::DB_FILE)).unwrap();
        let other = tempfile::tempdir().unwrap();
        let fresh = Database::create(other.path().join(crate::journal::DB_FILE)).unwrap();
        copy_all(&source, &fresh).unwrap();
        let read = redb::ReadableDatabase::begin_read(&fresh).unwrap();
        assert_eq!(
            crate::journal::read::interaction(&read, "E").unwrap(),
            expected
        );
    }
}
