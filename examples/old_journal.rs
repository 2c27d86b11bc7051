//! Writes the old-journal fixture (`tests/fixtures/journal-v0/journal.redb`)
//! with the journal API of the released layout (format version 0). Run once:
//! `cargo run --example old_journal -- tests/fixtures/journal-v0`.
//! `tests/it/upgrade.rs` opens a copy with today's code.

use zcc_relay::journal::{DeadLetter, Journal, MEDIA, SinkRoute};
use zcc_relay::record::Source;
use zcc_relay::sink::route::EventFilter;
use zcc_relay::zoom::event::parse_body;

const RECEIVED: &str = "2026-11-26T10:00:00.000Z";
const RECEIVED_MS: i64 = 1_795_000_000_000;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let dir = std::env::args().nth(1).expect("usage: old_journal DIR");
    let dir = std::path::Path::new(&dir);
    let routes = vec![
        SinkRoute {
            name: "crm".into(),
            filter: EventFilter::all(),
        },
        SinkRoute {
            name: "archive".into(),
            filter: EventFilter::new(vec!["contact_center.engagement_*".into()]),
        },
    ];
    let journal = Journal::open_with_media(dir, routes, Some(zcc_relay::media::media_events()))
        .expect("open");
    let append = |body: String| {
        let journal = journal.clone();
        async move {
            let record = parse_body(&body, Source::Websocket, RECEIVED.into(), RECEIVED_MS)
                .expect("parse");
            journal.append(record).await.expect("append")
        }
    };
    let started = |n: u32| {
        format!(
            r#"{{"event":"contact_center.engagement_started","event_ts":{ts},"payload":{{"account_id":"acc","object":{{"engagement_id":"eng-{n}","direction":"inbound","channel":"voice","start_time":"2026-11-26T09:59:00Z","queue_id":"q1","queue_name":"Support","flow_id":"f1","flow_name":"Main","consumers":[{{"consumer_number":"+15550100{n}","consumer_display_name":"Caller {n}"}}],"agents":[{{"user_id":"agent-{n}","display_name":"Agent {n}"}}]}}}}}}"#,
            ts = RECEIVED_MS - 60_000 + i64::from(n),
        )
    };
    let note = |text: &str, modified: &str| {
        format!(
            r#"{{"event":"contact_center.engagement_note_added","event_ts":{RECEIVED_MS},"payload":{{"account_id":"acc","object":{{"engagement_id":"eng-1","note_id":"note-1","note":"{text}","last_modified_time":"{modified}"}}}}}}"#
        )
    };
    // seq 1..=3: in both sinks' outboxes.
    for n in 1..=3 {
        append(started(n)).await;
    }
    // seq 4, 5: one note, two revisions (both sinks).
    append(note("first text", "2026-11-26T10:00:00Z")).await;
    append(note("edited text", "2026-11-26T10:05:00Z")).await;
    // seq 6: a recording, waiting in the media outbox with a durable retry.
    append(format!(
        r#"{{"event":"contact_center.recording_completed","event_ts":{RECEIVED_MS},"payload":{{"account_id":"acc","object":{{"engagement_id":"eng-2","recording_id":"rec-1","channel":"voice"}}}}}}"#
    ))
    .await;
    // seq 7: a record only `crm` wants.
    append(format!(
        r#"{{"event":"contact_center.agent_status_changed","event_ts":{RECEIVED_MS},"payload":{{"account_id":"acc","object":{{"user_id":"agent-1","status_name":"Ready"}}}}}}"#
    ))
    .await;

    // seq 1 acked by `archive` only: `crm` still has it.
    journal.ack("archive", 1).await.expect("ack");
    // seq 2 dead-lettered for `crm` (with a status).
    journal
        .dead_letter(
            "crm",
            2,
            DeadLetter {
                reason: "HTTP 422".into(),
                status: Some(422),
                attempts: 3,
                at: "2026-11-26T10:01:00.000Z".into(),
            },
        )
        .await
        .expect("dead-letter");
    // seq 3 waits for `crm` in the durable retry tier (due in the past, so it
    // is deliverable at once).
    journal
        .schedule("crm", 3, 4, 2, 1_790_000_000_000)
        .await
        .expect("schedule");
    // seq 6 waits in the media stage's durable tier.
    journal
        .schedule(MEDIA, 6, 1, 1, 1_790_000_000_000)
        .await
        .expect("schedule media");
    // A socket gap (and the live-until meta).
    journal.went_live(1_794_999_000_000).await.expect("live");
    journal.went_live(1_795_000_000_000).await.expect("live");
    journal.still_live(1_795_000_100_000).await.expect("live");
    journal.close().await;
}
