//! The journal's workload on redb and on sled, side by side, in one run.
//!
//! `cargo run --release -- [--records N] [--batch B] [--dir DIR]` from
//! `benches/store-compare/`. Not part of zcc-relay: this crate has its own
//! workspace and lock file, so sled (which carries advisories) never enters
//! the shipped crate's dependency tree.
//!
//! The workload is the journal's (`src/journal/writer.rs`), table for table:
//! every commit appends a batch of records — dedup lookup of the natural key,
//! then insert into `keys`, `records`, `refs` and the sink's outbox — and, in
//! the same commit, acknowledges the previous batch (outbox row, `refs` and
//! `records` removed; the key stays, as the dedup index outlives the record).
//! Each commit is made durable before the next begins: redb with
//! `Durability::Immediate`, sled with `flush()` after its transaction.
//!
//! Reported per store: records/s over the whole churn, syncs per commit and
//! disk bytes at the end. Syncs are counted by running this same binary again,
//! on a smaller churn, under `strace -f -c -e trace=fsync,fdatasync,
//! sync_file_range,msync`, twice (a quarter of that churn, and all of it) so
//! the syncs of creating and closing the store cancel out: the difference in
//! sync calls over the difference in commits (skip with `--no-strace`; skipped
//! when strace is missing).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Store {
    RedbExclusive,
    RedbSingleWriter,
    Sled,
}

impl Store {
    const ALL: [Store; 3] = [Store::RedbExclusive, Store::RedbSingleWriter, Store::Sled];

    fn name(self) -> &'static str {
        match self {
            Store::RedbExclusive => "redb-exclusive",
            Store::RedbSingleWriter => "redb-single-writer",
            Store::Sled => "sled",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Store::RedbExclusive => "redb 4 (ExclusiveWriter)",
            Store::RedbSingleWriter => "redb 4 (SingleWriter, as the journal)",
            Store::Sled => "sled 0.34",
        }
    }

    fn parse(name: &str) -> Option<Store> {
        Store::ALL.into_iter().find(|s| s.name() == name)
    }
}

struct Outcome {
    seconds: f64,
    commits: u64,
    disk_bytes: u64,
}

fn record_bytes(n: u64) -> Vec<u8> {
    format!(
        r#"{{"id":"recording_completed:rec-{n:012}","event":"contact_center.recording_completed","event_ts":{ts},"source":"websocket","received_at":"2026-11-26T10:05:00.123Z","seq":{n},"payload":{{"account_id":"D8cJuqWVQ623CI4Q8yQK0Q","object":{{"recording_id":"rec-{n:012}","engagement_id":"eng-{e:08}","channel":"voice","recording_start_time_ms":"2026-11-26T10:00:00.000Z","recording_end_time_ms":"2026-11-26T10:05:00.000Z","recording_duration":300,"cc_queue_id":"q-billing","queue_name":"Billing","flow_id":"f-main","flow_name":"Main line","users":[{{"user_id":"u-17","user_display_name":"Amara Okafor"}}],"consumers":[{{"consumer_id":"c-{n}","consumer_number":"+15550100","consumer_display_name":"Caller"}}]}}}}}}"#,
        ts = 1_764_151_200_000u64 + n,
        e = n / 7,
    )
    .into_bytes()
}

fn key(n: u64) -> String {
    format!("recording_completed:rec-{n:012}")
}

/// The dedup index's value: seq and first-seen time (the journal's `KeyEntry`
/// holds these and, for notes, version hashes).
fn key_entry(n: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&n.to_be_bytes());
    v[8..].copy_from_slice(&(1_764_151_200_000u64 + n).to_be_bytes());
    v
}

fn outbox_entry() -> [u8; 16] {
    [0u8; 16]
}

fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                // Allocated bytes, not apparent size: what the disk holds.
                use std::os::unix::fs::MetadataExt;
                total += meta.blocks() * 512;
            }
        }
    }
    total
}

mod redb_store {
    use redb::{
        Builder, ConcurrencyMode, Durability, ReadableDatabase as _, ReadableTable as _,
        ReadableTableMetadata as _, TableDefinition,
    };

    const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("records");
    const REFS: TableDefinition<u64, u32> = TableDefinition::new("refs");
    const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");
    const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("outbox/crm");

    pub fn run(path: &std::path::Path, records: u64, batch: u64, single: bool) -> u64 {
        let mode = if single {
            ConcurrencyMode::SingleWriter
        } else {
            ConcurrencyMode::ExclusiveWriter
        };
        // The journal's settings: 8 MiB cache, its concurrency mode.
        let db = Builder::new()
            .set_concurrency_mode(mode)
            .set_cache_size(8 * 1024 * 1024)
            .create(path)
            .expect("create redb");
        let mut commits = 0;
        let mut next = 0u64;
        let mut acked = 0u64;
        while acked < records {
            let mut txn = db.begin_write().expect("begin");
            txn.set_durability(Durability::Immediate)
                .expect("durability");
            {
                let mut recs = txn.open_table(RECORDS).expect("records");
                let mut refs = txn.open_table(REFS).expect("refs");
                let mut keys = txn.open_table(KEYS).expect("keys");
                let mut outbox = txn.open_table(OUTBOX).expect("outbox");
                // Ack what the previous commit appended.
                for seq in acked..next {
                    outbox.remove(seq).expect("outbox remove");
                    refs.remove(seq).expect("refs remove");
                    recs.remove(seq).expect("records remove");
                }
                acked = next;
                let end = (next + batch).min(records);
                for n in next..end {
                    let k = super::key(n);
                    if keys.get(k.as_str()).expect("lookup").is_some() {
                        continue;
                    }
                    keys.insert(k.as_str(), &super::key_entry(n)[..])
                        .expect("key");
                    recs.insert(n, super::record_bytes(n).as_slice())
                        .expect("record");
                    refs.insert(n, 1).expect("refs");
                    outbox
                        .insert(n, &super::outbox_entry()[..])
                        .expect("outbox");
                }
                next = end;
            }
            txn.commit().expect("commit");
            commits += 1;
        }
        // Every record acknowledged; nothing pending.
        let read = db.begin_read().expect("read");
        assert_eq!(
            read.open_table(RECORDS)
                .expect("records")
                .len()
                .expect("len"),
            0
        );
        commits
    }
}

mod sled_store {
    use sled::Transactional as _;
    use sled::transaction::ConflictableTransactionError;

    pub fn run(dir: &std::path::Path, records: u64, batch: u64) -> u64 {
        // The journal's cache size; sled's default mode flushes on its own
        // timer as well, which only adds syncs, so it is turned off: every
        // commit is made durable by the explicit flush below.
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(8 * 1024 * 1024)
            .flush_every_ms(None)
            .open()
            .expect("open sled");
        let recs = db.open_tree("records").expect("records");
        let refs = db.open_tree("refs").expect("refs");
        let keys = db.open_tree("keys").expect("keys");
        let outbox = db.open_tree("outbox/crm").expect("outbox");
        let mut commits = 0;
        let mut next = 0u64;
        let mut acked = 0u64;
        while acked < records {
            let end = (next + batch).min(records);
            (&recs, &refs, &keys, &outbox)
                .transaction(|(recs, refs, keys, outbox)| {
                    for seq in acked..next {
                        outbox.remove(&seq.to_be_bytes())?;
                        refs.remove(&seq.to_be_bytes())?;
                        recs.remove(&seq.to_be_bytes())?;
                    }
                    for n in next..end {
                        let k = super::key(n);
                        if keys.get(k.as_bytes())?.is_some() {
                            continue;
                        }
                        keys.insert(k.as_bytes(), &super::key_entry(n)[..])?;
                        recs.insert(&n.to_be_bytes(), super::record_bytes(n))?;
                        refs.insert(&n.to_be_bytes(), &1u32.to_be_bytes())?;
                        outbox.insert(&n.to_be_bytes(), &super::outbox_entry()[..])?;
                    }
                    Ok::<(), ConflictableTransactionError<()>>(())
                })
                .expect("sled transaction");
            db.flush().expect("flush");
            acked = next;
            next = end;
            commits += 1;
        }
        assert_eq!(recs.len(), 0);
        commits
    }
}

fn run_one(store: Store, dir: &Path, records: u64, batch: u64) -> Outcome {
    let started = Instant::now();
    let commits = match store {
        Store::RedbExclusive => redb_store::run(&dir.join("journal.redb"), records, batch, false),
        Store::RedbSingleWriter => redb_store::run(&dir.join("journal.redb"), records, batch, true),
        Store::Sled => sled_store::run(&dir.join("sled"), records, batch),
    };
    let seconds = started.elapsed().as_secs_f64();
    Outcome {
        seconds,
        commits,
        disk_bytes: dir_bytes(dir),
    }
}

/// Runs `store` in a child process under strace; returns (sync calls, commits).
fn count_syncs(store: Store, base: &Path, records: u64, batch: u64) -> Option<(u64, u64)> {
    let dir = tempfile::tempdir_in(base).expect("temp dir");
    let summary = dir.path().join("strace.txt");
    let exe = std::env::current_exe().expect("own path");
    let output = Command::new("strace")
        .args([
            "-f",
            "-c",
            "-e",
            "trace=fsync,fdatasync,sync_file_range,msync",
            "-o",
        ])
        .arg(&summary)
        .arg(exe)
        .args(["--child", store.name()])
        .arg(dir.path())
        .arg(records.to_string())
        .arg(batch.to_string())
        .output()
        .ok()?;
    if !output.status.success() {
        eprintln!(
            "strace run of {} failed: {}",
            store.name(),
            String::from_utf8_lossy(&output.stderr)
        );
        return None;
    }
    let commits: u64 = String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("commits "))
        .and_then(|v| v.trim().parse().ok())?;
    // strace -c: "% time  seconds  usecs/call  calls  errors syscall"; sum the
    // calls column of every syscall row.
    let text = std::fs::read_to_string(&summary).ok()?;
    let syncs = text
        .lines()
        .filter(|l| {
            let name = l.split_whitespace().last().unwrap_or("");
            ["fsync", "fdatasync", "sync_file_range", "msync"].contains(&name)
        })
        .filter_map(|l| l.split_whitespace().nth(3)?.parse::<u64>().ok())
        .sum();
    Some((syncs, commits))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        let store = Store::parse(&args[2]).expect("store name");
        let dir = PathBuf::from(&args[3]);
        let records = args[4].parse().expect("records");
        let batch = args[5].parse().expect("batch");
        let outcome = run_one(store, &dir, records, batch);
        println!("commits {}", outcome.commits);
        return;
    }
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let records: u64 = value("--records").map_or(1_000_000, |v| v.parse().expect("--records"));
    let batch: u64 = value("--batch").map_or(1_000, |v| v.parse().expect("--batch"));
    let base = value("--dir").map_or_else(std::env::temp_dir, PathBuf::from);
    let strace = !args.iter().any(|a| a == "--no-strace")
        && Command::new("strace").arg("-V").output().is_ok();
    let strace_records = (records / 10).clamp(batch * 4, 100_000);
    let strace_small = strace_records / 4;

    println!(
        "journal workload: {records} records churned (append + dedup lookup, ack and remove in the next commit), {batch} per commit, in {}",
        base.display()
    );
    println!(
        "{:<40} {:>12} {:>10} {:>16} {:>14}",
        "store", "records/s", "commits", "syncs/commit", "disk MiB"
    );
    for store in Store::ALL {
        let dir = tempfile::tempdir_in(&base).expect("temp dir");
        let outcome = run_one(store, dir.path(), records, batch);
        let syncs = if strace {
            // Two runs, and the difference between them: the syncs of opening,
            // creating and closing the store cancel out.
            let small = count_syncs(store, &base, strace_small, batch);
            let large = count_syncs(store, &base, strace_records, batch);
            match (small, large) {
                (Some((s1, c1)), Some((s2, c2))) if c2 > c1 => {
                    format!("{:.2}", (s2 as f64 - s1 as f64) / (c2 - c1) as f64)
                }
                _ => "n/a".into(),
            }
        } else {
            "not counted".into()
        };
        println!(
            "{:<40} {:>12.0} {:>10} {:>16} {:>14.1}",
            store.label(),
            records as f64 / outcome.seconds,
            outcome.commits,
            syncs,
            outcome.disk_bytes as f64 / (1024.0 * 1024.0)
        );
    }
    if strace {
        println!(
            "syncs/commit: fsync+fdatasync+sync_file_range+msync calls counted by strace -f -c in separate runs of {strace_small} and {strace_records} records; the difference in calls over the difference in commits"
        );
    }
}
