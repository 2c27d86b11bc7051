//! The journal's file stays small however many events pass through it: records
//! go through append → read_outbox → ack for one sink with a steady backlog of
//! ~1,000, while the paused clock moves on so that the dedup index's 30-day
//! retention comes into play. Freed record pages are reused by redb; the
//! index and the interaction aggregates (one per engagement, eight records
//! each) are what would grow without the retention sweep.
//!
//! `ZCC_SPACE_RECORDS` sets how many records go through (default 200,000, a
//! few times the retained index, so the plateau shows; 1,000,000 under
//! `--release` gives the same plateau).

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use redb::{ReadableTableMetadata, TableDefinition};
use serde_json::value::RawValue;
use zcc_relay::journal::{self, Journal, SinkRoute};
use zcc_relay::record::{NewRecord, Party, Source, View};
use zcc_relay::route::EventFilter;

const SINK: &str = "crm";
/// Appends per round; each round then acks as many of the oldest.
const ROUND: u64 = 500;
const BACKLOG: u64 = 1_000;
/// The simulated event rate: this many events arrive in 30 days (~670 a day),
/// so this many keys are within the retention at any time.
const RETAINED_KEYS: u64 = 20_000;
const RETENTION: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// The stated bound. Measured plateau: 6.4 MiB from 40k records on, the same
/// at 200k and at 1M records (~21k keys, 1 MiB of record pages reused over
/// and over); with the interaction aggregates (~2.6k held) 12.8 MiB from 40k
/// records on, flat to 200k (redb grew the file one step). Keeping every record would take N × 704 bytes of data alone
/// (134 MiB for 200k, 671 MiB for 1M); keeping every key (no retention) grew
/// the file to 25.5 MiB at 200k and 153 MiB at 1M.
const FILE_BOUND: u64 = 16 * 1024 * 1024;

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A 22-character id shaped like Zoom's: random, so keys land all over the
/// index as they do in production.
fn zoom_id(seed: u64) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let halves = [mix(seed), mix(seed ^ 0x5555_5555)];
    (0..22)
        .map(|i| ALPHABET[((halves[i / 11] >> ((i % 11) * 6)) & 63) as usize] as char)
        .collect()
}

/// A disposition event (~600–800 bytes as forwarded, a 58-byte key), eight per
/// engagement.
fn record(i: u64) -> NewRecord {
    let engagement = zoom_id(i / 8);
    let disposition = format!("D{i:07}");
    let comment = "x".repeat(150 + (mix(i) % 200) as usize);
    let payload = format!(
        r#"{{"account_id":"Xk3pTq0bR4aZlV9mN2cW1g","object":{{"engagement_id":"{engagement}","disposition_id":"{disposition}","disposition_name":"Resolved","user_id":"agent-17","queue_id":"Q00412","channel":"voice","comment":"{comment}"}}}}"#
    );
    NewRecord {
        id: format!("engagement_disposition_added:{engagement}:{disposition}"),
        event: "contact_center.engagement_disposition_added".into(),
        event_ts: 1_764_150_000_000 + i as i64,
        source: Source::Websocket,
        received_at: "2026-11-26T10:00:00.000Z".into(),
        payload: RawValue::from_string(payload).unwrap(),
        version: None,
        view: View {
            kind: "engagement_disposition_added".into(),
            engagement_id: Some(engagement),
            channel: Some("voice".into()),
            agents: vec![Party {
                id: Some("agent-17".into()),
                name: None,
            }],
            disposition: Some(Party {
                id: Some(disposition),
                name: Some("Resolved".into()),
            }),
            ..View::default()
        },
    }
}

/// Keys in the dedup index (the journal's `keys` table).
fn keys_held(journal: &Journal) -> u64 {
    let keys: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");
    let txn = journal.begin_read().unwrap();
    txn.open_table(keys).unwrap().len().unwrap()
}

/// Interaction aggregates held.
fn interactions_held(journal: &Journal) -> u64 {
    journal::read::interactions_held(&journal.begin_read().unwrap()).unwrap()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn size(dir: &Path) -> u64 {
    journal::file_size(dir).unwrap()
}

#[tokio::test(start_paused = true)]
async fn journal_space_stays_bounded() {
    let records: u64 = std::env::var("ZCC_SPACE_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    assert!(records >= 4 * RETAINED_KEYS && records.is_multiple_of(10 * ROUND));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("journal");
    let routes = vec![SinkRoute {
        name: SINK.into(),
        filter: EventFilter::all(),
    }];
    let journal = Journal::open(&dir, routes).unwrap();
    let per_round = RETENTION * ROUND as u32 / RETAINED_KEYS as u32;
    let started = Instant::now();
    let (mut appended, mut acked, mut cursor) = (0, 0, 0);
    let mut record_bytes = 0;
    let mut sizes = Vec::new();
    while appended < records {
        let mut receivers = Vec::with_capacity(ROUND as usize);
        for i in appended..appended + ROUND {
            let record = record(i);
            record_bytes += record.to_json(1).len() as u64;
            receivers.push(journal.submit(record).await.unwrap());
        }
        for rx in receivers {
            rx.await.unwrap().unwrap();
        }
        appended += ROUND;
        if appended - acked > BACKLOG {
            let (batch, last) = journal
                .read_outbox(SINK, cursor, (appended - acked - BACKLOG) as usize)
                .await
                .unwrap();
            cursor = last;
            acked += batch.len() as u64;
            for result in join_all(batch.iter().map(|p| journal.ack(SINK, p.seq))).await {
                result.unwrap();
            }
        }
        tokio::time::advance(per_round).await;
        if appended.is_multiple_of(records / 10) {
            let (file, keys) = (size(&dir), keys_held(&journal));
            let interactions = interactions_held(&journal);
            eprintln!(
                "{appended:>9} records: file {:6.1} MiB, {keys:>6} keys, {interactions:>5} interactions, {:>4} pending, {:.1?}",
                mib(file),
                appended - acked,
                started.elapsed()
            );
            sizes.push(file);
        }
    }
    let keys = keys_held(&journal);
    let interactions = interactions_held(&journal);
    journal.close().await;

    let average = record_bytes / records;
    eprintln!(
        "{records} records of {average} bytes on average in {:.1?}; {keys} keys held at the end",
        started.elapsed()
    );
    assert!((600..=800).contains(&average), "{average} bytes per record");
    let keep_all = records * average;
    let peak = sizes.iter().copied().max().unwrap_or(0);
    assert!(
        peak <= FILE_BOUND,
        "journal file reached {:.1} MiB (bound {:.0} MiB; every record kept: {:.0} MiB)",
        mib(peak),
        mib(FILE_BOUND),
        mib(keep_all)
    );
    // A plateau, not a slow climb under the bound: no growth over the second half.
    let half = sizes[sizes.len() / 2 - 1];
    assert_eq!(
        sizes.last().copied(),
        Some(half),
        "the file grew after {} records: {sizes:?}",
        records / 2
    );
    // Every key younger than the retention is still there (nothing pruned
    // early); older ones are gone but for the sweep's lag.
    assert!(
        (RETAINED_KEYS..=RETAINED_KEYS * 5 / 4).contains(&keys),
        "{keys} keys held, {RETAINED_KEYS} within the retention"
    );
    // The same for the aggregates: one per engagement of the last 30 days.
    let retained_engagements = RETAINED_KEYS / 8;
    assert!(
        (retained_engagements..=retained_engagements * 5 / 4 + 1).contains(&interactions),
        "{interactions} interactions held, {retained_engagements} engagements within the retention"
    );
}
