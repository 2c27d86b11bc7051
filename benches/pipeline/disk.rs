//! Durable ingest through the journal alone, beside the physical limit of the
//! same file system: the same bytes appended to a plain file with one
//! `fdatasync` per batch (batches as large as the journal's commits were), and
//! one `fdatasync` per record (what group commit saves).

use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use zcc_relay::journal::{AppendOutcome, Journal, JournalError, SinkRoute};
use zcc_relay::route::EventFilter;

use crate::events;

pub fn routes() -> Vec<SinkRoute> {
    vec![SinkRoute {
        name: "crm".into(),
        filter: EventFilter::all(),
    }]
}

/// Appends events `from..to` to the journal in `dir` for sink `crm`, with up to
/// `window` awaiting their commit; returns (elapsed, commits).
pub async fn fill(dir: &Path, from: usize, to: usize, window: usize) -> (Duration, u64) {
    let journal = Journal::open(dir, routes()).expect("open journal");
    let records: Vec<_> = (from..to).map(events::record).collect();
    let commits_before = journal.commits();
    let started = Instant::now();
    type Commit = tokio::sync::oneshot::Receiver<Result<AppendOutcome, JournalError>>;
    let mut pending: VecDeque<Commit> = VecDeque::with_capacity(window);
    for record in records {
        if pending.len() == window {
            let rx = pending.pop_front().expect("non-empty");
            rx.await.expect("writer alive").expect("commit");
        }
        pending.push_back(journal.submit(record).await.expect("submit"));
    }
    for rx in pending {
        rx.await.expect("writer alive").expect("commit");
    }
    let elapsed = started.elapsed();
    let commits = journal.commits() - commits_before;
    journal.close().await;
    (elapsed, commits)
}

/// `n` records of `bytes` appended to a plain file, one fdatasync per `batch`;
/// returns the total time and each fdatasync's.
pub fn raw(path: &Path, n: usize, bytes: usize, batch: usize) -> (Duration, Vec<Duration>) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open");
    let line = vec![b'x'; bytes];
    let started = Instant::now();
    let mut syncs = Vec::with_capacity(n / batch + 1);
    let mut written = 0;
    while written < n {
        let this = batch.min(n - written);
        let mut buffer = Vec::with_capacity(this * bytes);
        for _ in 0..this {
            buffer.extend_from_slice(&line);
        }
        file.write_all(&buffer).expect("write");
        let sync = Instant::now();
        file.sync_data().expect("fdatasync");
        syncs.push(sync.elapsed());
        written += this;
    }
    (started.elapsed(), syncs)
}

pub struct DiskFigures {
    pub records: usize,
    pub rounds: usize,
    pub bytes: usize,
    pub journal: f64,
    pub batch: usize,
    pub raw: f64,
    pub per_record: f64,
    /// One fdatasync of one record's bytes, over every round: p50, p99, max.
    pub sync_latency: [Duration; 3],
}

pub async fn run(base: &Path, n: usize, rounds: usize, per_record_n: usize) -> DiskFigures {
    let bytes = events::record(0).to_json(1).len();
    let (mut journal, mut raw_rates, mut single, mut batches) = (vec![], vec![], vec![], vec![]);
    let mut sync_times = Vec::new();
    for round in 0..rounds {
        let dir = tempfile::tempdir_in(base).expect("temp dir");
        let (elapsed, commits) = fill(&dir.path().join("journal"), 0, n, 8192).await;
        let batch = (n as f64 / commits.max(1) as f64).round().max(1.0) as usize;
        journal.push(n as f64 / elapsed.as_secs_f64());
        batches.push(batch as f64);
        let path = dir.path().join(format!("raw-{round}"));
        let (raw_time, _) = tokio::task::spawn_blocking(move || raw(&path, n, bytes, batch))
            .await
            .expect("raw run");
        raw_rates.push(n as f64 / raw_time.as_secs_f64());
        let path = dir.path().join(format!("single-{round}"));
        let (single_time, each) =
            tokio::task::spawn_blocking(move || raw(&path, per_record_n, bytes, 1))
                .await
                .expect("per-record run");
        sync_times.extend(each);
        single.push(per_record_n as f64 / single_time.as_secs_f64());
    }
    DiskFigures {
        records: n,
        rounds,
        bytes,
        journal: crate::median(journal),
        batch: crate::median(batches) as usize,
        raw: crate::median(raw_rates),
        per_record: crate::median(single),
        sync_latency: crate::percentiles(sync_times),
    }
}
