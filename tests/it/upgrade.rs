//! A journal written by the released version (format 0, the fixture in
//! `tests/fixtures/journal-v0/`) opens with today's code, keeps every record,
//! outbox row, dead letter, durable retry, gap and revision, builds the
//! interaction aggregates of the records it holds, and delivers.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use zcc_relay::deliver::SinkWorker;
use zcc_relay::journal::{self, GapState, Journal, MEDIA, SinkRoute, read};
use zcc_relay::route::EventFilter;
use zcc_relay::service::Health;
use zcc_relay::telemetry::stats::Stats;

use crate::support::*;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/journal-v0/journal.redb"
);

fn routes() -> Vec<SinkRoute> {
    vec![
        SinkRoute {
            name: "crm".into(),
            filter: EventFilter::all(),
        },
        SinkRoute {
            name: "archive".into(),
            filter: EventFilter::new(vec!["contact_center.engagement_*".into()]),
        },
    ]
}

/// A copy of the fixture (the checked-in file is never opened for writing).
fn copy() -> tempfile::TempDir {
    let dir = temp_dir();
    std::fs::copy(FIXTURE, dir.path().join(journal::DB_FILE)).unwrap();
    dir
}

fn ids(pending: &[journal::Pending]) -> Vec<u64> {
    pending.iter().map(|p| p.seq).collect()
}

#[tokio::test]
async fn a_journal_of_the_released_format_opens_with_everything_in_it() {
    let dir = copy();
    // A read-only view (a `queue` command beside an old daemon) reads the old
    // layout as it is.
    {
        let db = journal::open_read_only(dir.path()).unwrap();
        let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
        let crm = read::list_pending(&txn, "crm", 100).unwrap();
        assert_eq!(ids(&crm), [1, 3, 4, 5, 7]);
        let dead = read::list_dead(&txn, "crm", 10).unwrap();
        assert_eq!(dead[0].letter.status, Some(422));
        assert_eq!(
            dead[0].letter.at.to_string(),
            "2026-11-26T10:01:00Z",
            "the old text time reads as an instant"
        );
    }

    let journal =
        Journal::open_with_media(dir.path(), routes(), Some(zcc_relay::media::media_events()))
            .unwrap();
    assert_eq!(
        journal.meta("format_version").await.unwrap(),
        Some(2u32.to_le_bytes().to_vec())
    );
    let txn = journal.begin_read().unwrap();

    // Outboxes: `crm` still has what `archive` acked, not its dead letter.
    let crm = read::list_pending(&txn, "crm", 100).unwrap();
    assert_eq!(ids(&crm), [1, 3, 4, 5, 7]);
    let archive = read::list_pending(&txn, "archive", 100).unwrap();
    assert_eq!(ids(&archive), [2, 3, 4, 5]);

    // The records themselves, byte for byte as sinks get them, and their views
    // (computed by the upgrade).
    let first: serde_json::Value = serde_json::from_slice(&crm[0].bytes).unwrap();
    assert!(
        first["id"]
            .as_str()
            .unwrap()
            .starts_with("engagement_started:")
    );
    assert_eq!(first["event"], "contact_center.engagement_started");
    assert_eq!(first["payload"]["object"]["engagement_id"], "eng-1");
    let view = &crm[0].view;
    assert_eq!(view.engagement_id.as_deref(), Some("eng-1"));
    assert_eq!(view.direction.as_deref(), Some("inbound"));
    assert_eq!(view.channel.as_deref(), Some("voice"));
    assert_eq!(
        view.consumer.as_ref().and_then(|c| c.number.as_deref()),
        Some("+155501001")
    );
    assert_eq!(view.agents[0].id.as_deref(), Some("agent-1"));

    // The note's two revisions.
    let note =
        |p: &journal::Pending| serde_json::from_slice::<serde_json::Value>(&p.bytes).unwrap();
    let (v1, v2) = (note(&crm[2]), note(&crm[3]));
    assert_eq!(v1["id"], "engagement_note_added:eng-1:note-1");
    assert_eq!(v2["id"], v1["id"]);
    assert_eq!(
        (v1["revision"].as_u64(), v2["revision"].as_u64()),
        (Some(1), Some(2))
    );
    assert_eq!(v2["payload"]["object"]["note"], "edited text");
    assert_eq!(crm[3].view.note_id.as_deref(), Some("note-1"));
    assert!(
        !journal
            .is_new("engagement_note_added:eng-1:note-1", None)
            .await
            .unwrap()
    );

    // The durable retry, with its counters.
    let due = journal.read_due("crm", u64::MAX, 10).await.unwrap();
    assert_eq!(
        due.iter()
            .map(|p| (p.seq, p.attempts, p.step, p.not_before_ms))
            .collect::<Vec<_>>(),
        [(3, 4, 2, 1_790_000_000_000)]
    );

    // The dead letter, now with a code (none) and a typed instant.
    let dead = journal.dead_letters("crm", 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].seq, 2);
    assert_eq!(dead[0].letter.reason, "HTTP 422");
    assert_eq!(dead[0].letter.status, Some(422));
    assert_eq!(dead[0].letter.code, None);
    assert_eq!(dead[0].letter.attempts, 3);
    assert_eq!(
        dead[0].letter.at,
        "2026-11-26T10:01:00Z".parse::<jiff::Timestamp>().unwrap()
    );
    assert!(
        journal
            .dead_letters("archive", 10)
            .await
            .unwrap()
            .is_empty()
    );

    // The media outbox and its due entry; the view names the file.
    let media = journal.read_due(MEDIA, u64::MAX, 10).await.unwrap();
    assert_eq!(
        media
            .iter()
            .map(|p| (p.seq, p.attempts, p.step))
            .collect::<Vec<_>>(),
        [(6, 1, 1)]
    );
    assert_eq!(media[0].view.media.len(), 1);
    assert_eq!(media[0].view.media[0].id.as_deref(), Some("rec-1"));
    assert_eq!(journal.media_stats().await.unwrap().pending, 1);

    // The gap ledger and the live-until time.
    let gaps = journal.gaps().await.unwrap();
    assert_eq!(gaps.len(), 1);
    assert_eq!(
        (gaps[0].start_ms, gaps[0].end_ms, gaps[0].state),
        (1_794_999_000_000, 1_795_000_000_000, GapState::Pending)
    );
    assert_eq!(read::live_until(&txn).unwrap(), Some(1_795_000_100_000));
    drop(txn);

    // The interaction aggregate, built from the records the file holds: the
    // note's latest text only.
    let eng1 = journal.interaction("eng-1").await.unwrap().expect("eng-1");
    assert_eq!(eng1.direction(), Some("inbound"));
    assert_eq!(eng1.channel(), Some("voice"));
    assert_eq!(eng1.consumer().number.as_deref(), Some("+155501001"));
    assert_eq!(eng1.agents()[0].id.as_deref(), Some("agent-1"));
    let notes = eng1.notes();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!((notes[0].note_id, notes[0].text), ("note-1", "edited text"));
    assert_eq!(notes[0].revision, 2);

    // New records continue after the old seqs.
    let record = zcc_relay::zoom::event::parse_body(
        r#"{"event":"contact_center.engagement_ended","event_ts":1,"payload":{"object":{"engagement_id":"eng-9"}}}"#,
        zcc_relay::record::Source::Websocket,
        zcc_relay::record::now_rfc3339(),
        1,
    )
    .unwrap();
    match journal.append(record).await.unwrap() {
        journal::AppendOutcome::Stored { seq, .. } => assert_eq!(seq, 8),
        other => panic!("{other:?}"),
    }
    assert!(journal.interaction("eng-9").await.unwrap().is_some());
    journal.close().await;
    drop(journal);

    // Opening again changes nothing more.
    let journal =
        Journal::open_with_media(dir.path(), routes(), Some(zcc_relay::media::media_events()))
            .unwrap();
    assert_eq!(journal.read_outbox("crm", 0, 100).await.unwrap().0.len(), 5);
    journal.close().await;
}

#[tokio::test(start_paused = true)]
async fn every_record_of_an_old_journal_is_delivered() {
    let dir = copy();
    let crm = FakeSink::ok().await;
    let archive = FakeSink::ok().await;
    // Without the media stage, the record that waited for its media goes to
    // the sinks as it is.
    let journal = Journal::open_with_media(dir.path(), routes(), None).unwrap();
    assert_eq!(journal.redrive("crm", Some(2)).await.unwrap(), 1);
    let stats = Stats::default();
    let (stop, abort) = (CancellationToken::new(), CancellationToken::new());
    let mut tasks = Vec::new();
    for settings in [
        paused_http_sink("crm", &crm.url()),
        paused_http_sink("archive", &archive.url()),
    ] {
        let worker = SinkWorker {
            sink: Arc::new(build_sink(&settings).await),
            settings,
            journal: journal.clone(),
            stats: stats.clone(),
            health: Health::default(),
        };
        tasks.push(tokio::spawn(worker.run(stop.clone(), abort.clone())));
    }
    let waited = tokio::time::timeout(
        Duration::from_secs(6 * 3600),
        stats.wait_until(|s| s.delivered_to("crm") >= 7 && s.delivered_to("archive") >= 4),
    )
    .await;
    assert!(waited.is_ok(), "every old record delivered");
    stop.cancel();
    abort.cancel();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let webhook_ids = |sink: &FakeSink| {
        let mut ids: Vec<String> = sink.requests().into_iter().map(|r| r.webhook_id).collect();
        ids.sort();
        ids
    };
    let crm_ids = webhook_ids(&crm);
    assert_eq!(crm_ids.len(), 7, "{crm_ids:?}");
    for expected in [
        "engagement_note_added:eng-1:note-1",
        "engagement_note_added:eng-1:note-1~2",
        "recording_completed:rec-1",
    ] {
        assert!(
            crm_ids.iter().any(|id| id == expected),
            "{expected}: {crm_ids:?}"
        );
    }
    assert_eq!(webhook_ids(&archive).len(), 4);
    let left = journal.stats().await.unwrap();
    assert!(
        left.iter().all(|s| s.pending == 0 && s.dead == 0),
        "{left:?}"
    );
    assert_eq!(journal.stored_records().await.unwrap(), 0);
    journal.close().await;
}
