//! Durable ingest, measured beside the physical limit of the same disk in the
//! same run (the first slice of the benchmarks issue).
//!
//! `cargo bench --bench ingest` (about a minute); `-- --quick` for a smoke run.
//! Writes under `$ZCC_BENCH_DIR` (default: the system temp dir) — point it at
//! the file system the journal will live on.
//!
//! Three figures, in this order, repeated and reported as medians:
//! 1. the journal: records appended through `Journal::submit` as fast as they
//!    come, each acknowledged only after its group commit synced;
//! 2. the physical limit: the same bytes appended to a plain file with one
//!    `fdatasync` per batch, batches as large as the journal's commits were;
//! 3. one `fdatasync` per record: what group commit saves.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use zcc_relay::journal::{Journal, SinkRoute};
use zcc_relay::record::{NewRecord, Source};
use zcc_relay::sink::route::EventFilter;

fn record(n: usize) -> NewRecord {
    let payload = format!(
        r#"{{"account_id":"D8cJuqWVQ623CI4Q8yQK0Q","object":{{"recording_id":"rec-{n:012}","engagement_id":"eng-{:08}","channel":"voice","recording_start_time_ms":"2026-11-26T10:00:00.000Z","recording_end_time_ms":"2026-11-26T10:05:00.000Z","recording_duration":300,"cc_queue_id":"q-billing","queue_name":"Billing","flow_id":"f-main","flow_name":"Main line","users":[{{"user_id":"u-17","user_display_name":"Amara Okafor"}}],"consumers":[{{"consumer_id":"c-{n}","consumer_number":"+15550100","consumer_display_name":"Caller"}}]}}}}"#,
        n / 7
    );
    NewRecord {
        id: format!("recording_completed:rec-{n:012}"),
        event: "contact_center.recording_completed".into(),
        event_ts: 1_764_151_200_000 + n as i64,
        source: Source::Websocket,
        received_at: "2026-11-26T10:05:00.123Z".into(),
        payload: RawValue::from_string(payload).expect("valid JSON"),
        version: None,
    }
}

/// Appends `n` records with up to `window` awaiting their commit; returns
/// (elapsed, commits, bytes per record).
async fn journal_run(dir: &std::path::Path, n: usize, window: usize) -> (Duration, u64, usize) {
    let routes = vec![SinkRoute {
        name: "idle".into(),
        filter: EventFilter::all(),
    }];
    let journal = Journal::open(dir, routes).expect("open journal");
    let bytes = record(0).to_json(1).len();
    let commits_before = journal.commits();
    let started = Instant::now();
    type Commit = tokio::sync::oneshot::Receiver<
        Result<zcc_relay::journal::AppendOutcome, zcc_relay::journal::JournalError>,
    >;
    let mut pending: std::collections::VecDeque<Commit> =
        std::collections::VecDeque::with_capacity(window);
    for i in 0..n {
        if pending.len() == window {
            let rx = pending.pop_front().expect("non-empty");
            rx.await.expect("writer alive").expect("commit");
        }
        pending.push_back(journal.submit(record(i)).await.expect("submit"));
    }
    for rx in pending {
        rx.await.expect("writer alive").expect("commit");
    }
    let elapsed = started.elapsed();
    let commits = journal.commits() - commits_before;
    journal.close().await;
    (elapsed, commits, bytes)
}

/// `n` records of `bytes` appended to a plain file, one fdatasync per `batch`.
fn raw_run(path: &std::path::Path, n: usize, bytes: usize, batch: usize) -> Duration {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open");
    let line = vec![b'x'; bytes];
    let started = Instant::now();
    let mut written = 0;
    while written < n {
        let this = batch.min(n - written);
        let mut buffer = Vec::with_capacity(this * bytes);
        for _ in 0..this {
            buffer.extend_from_slice(&line);
        }
        file.write_all(&buffer).expect("write");
        file.sync_data().expect("fdatasync");
        written += this;
    }
    started.elapsed()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (n, rounds, per_sync_n) = if quick {
        (5_000, 1, 200)
    } else {
        (50_000, 5, 2_000)
    };
    let base = std::env::var_os("ZCC_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (mut journal_rates, mut raw_rates, mut per_sync_rates, mut batch_sizes) =
        (vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        let dir = tempfile::tempdir_in(&base).expect("temp dir");
        let (elapsed, commits, bytes) =
            runtime.block_on(journal_run(&dir.path().join("journal"), n, 8192));
        let batch = (n as f64 / commits.max(1) as f64).round().max(1.0) as usize;
        journal_rates.push(n as f64 / elapsed.as_secs_f64());
        batch_sizes.push(batch as f64);
        let raw = raw_run(&dir.path().join(format!("raw-{round}")), n, bytes, batch);
        raw_rates.push(n as f64 / raw.as_secs_f64());
        let single = raw_run(
            &dir.path().join(format!("single-{round}")),
            per_sync_n,
            bytes,
            1,
        );
        per_sync_rates.push(per_sync_n as f64 / single.as_secs_f64());
    }
    let (journal, raw, single) = (
        median(journal_rates),
        median(raw_rates),
        median(per_sync_rates),
    );
    println!(
        "durable ingest, {n} records per round, {rounds} round(s), medians, in {}",
        base.display()
    );
    println!("{:<52} {:>14} {:>10}", "", "records/s", "vs raw");
    println!(
        "{:<52} {:>14.0} {:>10.2}",
        "journal (group commit, ack after sync)",
        journal,
        journal / raw
    );
    println!(
        "{:<52} {:>14.0} {:>10.2}",
        format!(
            "raw append + fdatasync, batches of {}",
            median(batch_sizes) as usize
        ),
        raw,
        1.0
    );
    println!(
        "{:<52} {:>14.0} {:>10.2}",
        "raw append + fdatasync per record",
        single,
        single / raw
    );
}
