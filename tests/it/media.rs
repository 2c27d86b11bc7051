//! The media stage end to end: the simulator's download endpoints, the daemon,
//! and a real object store — a directory (`file://`) or an S3 server running
//! in this process (`s3s` + `s3s-fs`) on 127.0.0.1.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use zcc_relay::journal::{Journal, MEDIA, SinkRoute};
use zcc_sim::s3::{S3Account, S3Server};
use zcc_sim::{FileKind, MediaFault, SimConfig, Simulator};

use crate::support::{self, Daemon, MediaTable, SinkTable, TestConfig};

const BUCKET: &str = "media-bucket";
const ACCESS_KEY: &str = "AKIAZCCRELAYTEST0001";
const SECRET_KEY: &str = "zcc-relay-test-secret-key-0123456789abcdef";

/// An S3 server over a directory, on 127.0.0.1, with one bucket.
async fn start_s3(root: &Path) -> S3Server {
    let account = S3Account {
        bucket: BUCKET.into(),
        access_key: ACCESS_KEY.into(),
        secret_key: SECRET_KEY.into(),
    };
    S3Server::start(root, &account).await.unwrap()
}

fn s3_media(addr: SocketAddr, link_ttl: &str) -> Option<MediaTable> {
    let text = |value: &str| toml::Value::String(value.to_owned());
    Some(MediaTable {
        store: Some(format!("s3://{BUCKET}/zoom")),
        link_ttl: Some(link_ttl.to_owned()),
        options: [
            ("aws_endpoint", text(&format!("http://{addr}"))),
            ("aws_region", text("us-east-1")),
            ("aws_access_key_id", text(ACCESS_KEY)),
            ("aws_secret_access_key", text(SECRET_KEY)),
            ("aws_allow_http", toml::Value::Boolean(true)),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect(),
        ..MediaTable::enabled()
    })
}

/// The TOML of a config whose `[media]` table is `media` (`None`: absent),
/// with one file sink `archive`.
fn config(sim: &Simulator, journal: &Path, archive: &Path, media: Option<MediaTable>) -> String {
    let mut config = TestConfig::new(sim, journal).sink(SinkTable::file("archive", archive));
    config.media = media;
    config.to_toml()
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn event(name: &str, object: Value) -> Value {
    json!({
        "event": format!("contact_center.{name}"),
        "event_ts": now_ms(),
        "payload": {"account_id": SimConfig::default().account_id, "object": object},
    })
}

fn recording_completed(recording: &str, engagement: &str) -> Value {
    event(
        "recording_completed",
        json!({
            "recording_id": recording,
            "engagement_id": engagement,
            "channel": "voice",
            "recording_type": "automatic",
            "users": [{"user_id": "u1", "user_display_name": "Agent One"}],
        }),
    )
}

fn sha256_of(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn day_of(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .unwrap()
        .strftime("%Y/%m/%d")
        .to_string()
}

/// The delivered line of record `id`.
fn line_of(lines: &[Value], id: &str) -> Value {
    lines
        .iter()
        .find(|l| l["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("{id} not delivered: {lines:?}"))
}

async fn live_sim() -> Simulator {
    Simulator::start(SimConfig::default()).await.unwrap()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_holds_the_simulators_bytes_and_signed_links_expire() {
    let dir = support::temp_dir();
    let s3_root = dir.path().join("s3");
    let s3 = start_s3(&s3_root).await;
    let sim = live_sim().await;
    // Bigger than one upload part, so the multipart path runs with 2 parts.
    sim.set_media_sizes(9 * 1024 * 1024 + 17, 1000);
    let archive = dir.path().join("archive.jsonl");
    let text = config(
        &sim,
        &dir.path().join("journal"),
        &archive,
        s3_media(s3.addr(), "5s"),
    );
    let daemon = Daemon::start(support::settings(&text));
    sim.wait_live().await;

    let recording = recording_completed("rec-s3-1", "eng-s3-1");
    let event_ts = recording["event_ts"].as_i64().unwrap();
    assert!(sim.emit(recording));
    daemon.wait_delivered("archive", 1).await;
    let lines = support::read_lines(&archive);
    let record = line_of(&lines, "recording_completed:rec-s3-1");
    let media = record["media"].as_array().expect("media array");
    assert_eq!(media.len(), 1, "{record}");
    let item = &media[0];
    // The signed link lives 5 s from delivery: fetched first, checked below,
    // so hashing 9 MiB (slow in a debug build on a busy machine) is not
    // counted against its lifetime.
    let url = item["url"].as_str().expect("a signed link");
    let tls = zcc_relay::tls::client_config().unwrap();
    let plain = zcc_relay::tls::http_client(&tls, Duration::from_secs(10)).unwrap();
    let fetched = plain.get(url).send().await.unwrap();
    let fetched = (fetched.status(), fetched.bytes().await.unwrap());
    let expected = sim.media_file(FileKind::VoiceRecording, "rec-s3-1");
    let key = format!("zoom/{}/eng-s3-1/recording-rec-s3-1.mp3", day_of(event_ts));
    assert_eq!(item["kind"], "recording");
    assert_eq!(item["location"], format!("s3://{BUCKET}/{key}"));
    assert_eq!(item["content_type"], "audio/mpeg");
    assert_eq!(item["size"], expected.size);
    assert_eq!(item["sha256"], expected.sha256);
    assert!(record.get("media_errors").is_none());
    // What the S3 server holds is the simulator's file.
    let held = std::fs::read(s3_root.join(BUCKET).join(&key)).unwrap();
    assert_eq!(sha256_of(&held), expected.sha256);

    // The signed link works with no other credentials...
    assert!(url.starts_with(&format!("{}/", s3.endpoint())), "{url}");
    assert!(url.contains("X-Amz-Expires=5"), "{url}");
    assert_eq!(fetched.0, 200);
    assert_eq!(sha256_of(&fetched.1), expected.sha256);
    // ... and not after its lifetime (the server checks it by wall clock).
    tokio::time::sleep(Duration::from_millis(5100)).await;
    let expired = plain.get(url).send().await.unwrap();
    assert_eq!(expired.status(), 403, "an expired link must be refused");
    daemon.stop().await.unwrap();

    // Processing the same record again (a new journal: the event is new to
    // it) overwrites the same object instead of adding one.
    let journal2 = dir.path().join("journal2");
    let archive2 = dir.path().join("archive2.jsonl");
    let text = config(&sim, &journal2, &archive2, s3_media(s3.addr(), "1h"));
    let daemon = Daemon::start(support::settings(&text));
    daemon.wait_delivered("archive", 1).await;
    let again = line_of(
        &support::read_lines(&archive2),
        "recording_completed:rec-s3-1",
    );
    assert_eq!(again["media"][0]["location"], item["location"]);
    assert_eq!(again["media"][0]["sha256"], expected.sha256);
    daemon.stop().await.unwrap();
    let objects: Vec<PathBuf> = files_under(&s3_root.join(BUCKET))
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains(".s3s"))
        .collect();
    assert_eq!(objects, vec![s3_root.join(BUCKET).join(&key)], "one object");
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_with_only_enabled_true_stores_every_kind() {
    let dir = support::temp_dir();
    let sim = live_sim().await;
    let journal = dir.path().join("journal");
    let archive = dir.path().join("archive.jsonl");
    let text = config(&sim, &journal, &archive, Some(MediaTable::enabled()));
    let daemon = Daemon::start(support::settings(&text));
    sim.wait_live().await;
    let api = sim.api_base_url().as_str().trim_end_matches('/').to_owned();
    let events = [
        recording_completed("rec-f-1", "eng-f-1"),
        event(
            "recording_transcript_completed",
            json!({"recording_id": "rec-f-1", "engagement_id": "eng-f-1", "channel": "voice",
                   "transcript_url": format!("{api}/contact_center/recording/transcripts/download/rec-f-1?type=voice")}),
        ),
        event(
            "engagement_messaging_transcript_completed",
            json!({"engagement_id": "eng-f-2", "channel": "messaging", "channel_source": "web_chat",
                   "transcript_url": format!("{api}/contact_center/engagements/transcripts/download/eng-f-2")}),
        ),
        event(
            "inbox_message_received",
            json!({"message_id": "msg-f-1", "engagement_id": "eng-f-3", "inbox_id": "in1",
                   "inbox_name": "Support", "channel": "voice"}),
        ),
        event(
            "voicemail_transcript_completed",
            json!({"message_id": "msg-f-1", "engagement_id": "eng-f-3", "inbox_id": "in1",
                   "transcript_url": format!("{api}/contact_center/voicemail/transcripts/download/msg-f-1?type=voice")}),
        ),
        event(
            "engagement_note_added",
            json!({"note_id": "n1", "engagement_id": "eng-f-1", "note": "called back",
                   "last_modified_time": "2026-11-24T10:00:00Z"}),
        ),
    ];
    for body in &events {
        assert!(sim.emit(body.clone()));
    }
    daemon.wait_delivered("archive", events.len() as u64).await;
    let lines = support::read_lines(&archive);
    let media_dir = journal.join("media");
    let cases = [
        (
            "recording_completed:rec-f-1",
            "recording",
            FileKind::VoiceRecording,
            "rec-f-1",
            "eng-f-1",
            "mp3",
        ),
        (
            "recording_transcript_completed:rec-f-1",
            "recording_transcript",
            FileKind::RecordingTranscript,
            "rec-f-1",
            "eng-f-1",
            "vtt",
        ),
        (
            "engagement_messaging_transcript_completed:eng-f-2",
            "messaging_transcript",
            FileKind::MessagingTranscript,
            "eng-f-2",
            "eng-f-2",
            "json",
        ),
        (
            "inbox_message_received:msg-f-1",
            "voicemail",
            FileKind::Voicemail,
            "msg-f-1",
            "eng-f-3",
            "wav",
        ),
        (
            "voicemail_transcript_completed:msg-f-1",
            "voicemail_transcript",
            FileKind::VoicemailTranscript,
            "msg-f-1",
            "eng-f-3",
            "vtt",
        ),
    ];
    for (id, kind, file_kind, item_id, engagement, ext) in cases {
        let record = line_of(&lines, id);
        let expected = sim.media_file(file_kind, item_id);
        let item = &record["media"][0];
        assert_eq!(item["kind"], kind, "{record}");
        assert_eq!(item["content_type"], expected.content_type, "{id}");
        assert_eq!(item["sha256"], expected.sha256, "{id}");
        assert_eq!(item["size"], expected.size, "{id}");
        assert!(item.get("url").is_none(), "a directory cannot sign links");
        let day = day_of(record["event_ts"].as_i64().unwrap());
        let path = media_dir.join(format!("{day}/{engagement}/{kind}-{item_id}.{ext}"));
        let location = url::Url::from_file_path(&path).unwrap();
        assert_eq!(item["location"], location.as_str(), "{id}");
        assert_eq!(sha256_of(&std::fs::read(&path).unwrap()), expected.sha256);
    }
    let note = line_of(&lines, "engagement_note_added:eng-f-1:n1");
    assert!(note.get("media").is_none() && note.get("media_errors").is_none());
    daemon.stop().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_to_another_host_never_gets_the_token() {
    let dir = support::temp_dir();
    let sim = live_sim().await;
    sim.redirect_media(true);
    let journal = dir.path().join("journal");
    let archive = dir.path().join("archive.jsonl");
    let text = config(&sim, &journal, &archive, Some(MediaTable::enabled()));
    let daemon = Daemon::start(support::settings(&text));
    sim.wait_live().await;
    assert!(sim.emit(recording_completed("rec-r-1", "eng-r-1")));
    daemon.wait_delivered("archive", 1).await;
    let record = line_of(
        &support::read_lines(&archive),
        "recording_completed:rec-r-1",
    );
    let expected = sim.media_file(FileKind::VoiceRecording, "rec-r-1");
    assert_eq!(record["media"][0]["sha256"], expected.sha256, "{record}");
    let (requests, with_authorization) = sim.redirect_host_requests();
    assert_eq!(requests, 1, "the download went through the redirect");
    assert_eq!(
        with_authorization, 0,
        "the redirect host saw an Authorization header"
    );
    daemon.stop().await.unwrap();
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_recording_is_forwarded_with_media_errors() {
    let dir = support::temp_dir();
    let sim = live_sim().await;
    sim.delete_media("rec-d-1");
    let journal = dir.path().join("journal");
    let archive = dir.path().join("archive.jsonl");
    let text = config(&sim, &journal, &archive, Some(MediaTable::enabled()));
    let daemon = Daemon::start(support::settings(&text));
    sim.wait_live().await;
    assert!(sim.emit(recording_completed("rec-d-1", "eng-d-1")));
    daemon.wait_delivered("archive", 1).await;
    let record = line_of(
        &support::read_lines(&archive),
        "recording_completed:rec-d-1",
    );
    assert_eq!(record["media"], json!([]), "{record}");
    let errors = record["media_errors"].as_array().expect("media_errors");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["kind"], "recording");
    let error = errors[0]["error"].as_str().unwrap();
    assert!(
        error.contains("404") && error.contains("deleted"),
        "{error}"
    );
    // The payload went on verbatim.
    assert_eq!(record["payload"]["object"]["recording_id"], "rec-d-1");
    daemon.stop().await.unwrap();
    sim.shutdown().await;
}

/// The stage on its own (short retry delays), over a journal with one sink.
struct Stage {
    journal: Journal,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), zcc_relay::journal::JournalError>>,
}

async fn start_stage(sim: &Simulator, dir: &Path, retry: Vec<Duration>) -> Stage {
    let text = config(
        sim,
        &dir.join("journal"),
        &dir.join("a.jsonl"),
        Some(MediaTable::enabled()),
    );
    let settings = support::settings(&text);
    let journal = Journal::open_with_media(
        &settings.journal.dir,
        SinkRoute::for_sinks(&settings.sinks),
        Some(zcc_relay::media::media_events()),
    )
    .unwrap();
    let tls = zcc_relay::tls::client_config().unwrap();
    let http = zcc_relay::tls::http_client(&tls, Duration::from_secs(10)).unwrap();
    let tokens = zcc_relay::zoom::auth::TokenCache::new(
        http.clone(),
        zcc_relay::zoom::auth::Credentials::from_settings(&settings.zoom),
    );
    let api = Arc::new(zcc_relay::zoom::api::ZoomApi::new(
        http,
        settings.zoom.api_base_url.clone(),
        tokens.clone(),
        50,
    ));
    let mut stage = zcc_relay::app::media_stage(&settings, &tls, &tokens, &api, &journal).unwrap();
    stage.retry_schedule = retry;
    let stop = CancellationToken::new();
    let task = tokio::spawn(stage.run(
        stop.clone(),
        CancellationToken::new(),
        zcc_relay::service::Heartbeat::detached(),
    ));
    Stage {
        journal,
        stop,
        task,
    }
}

/// Appends `body` as the daemon would (through the event's natural key).
async fn append(journal: &Journal, body: &Value) {
    let text = serde_json::to_string(body).unwrap();
    let record = zcc_relay::zoom::event::parse_body(
        &text,
        zcc_relay::record::Source::Websocket,
        zcc_relay::record::now_rfc3339(),
        now_ms(),
    )
    .expect("a valid event");
    journal.append(record).await.unwrap();
}

/// Waits until the sink `archive` has `n` records queued, and returns them.
async fn wait_queued(journal: &Journal, n: usize) -> Vec<Value> {
    for _ in 0..600 {
        let (batch, _) = journal.read_outbox("archive", 0, 100).await.unwrap();
        if batch.len() >= n {
            return batch
                .iter()
                .map(|p| serde_json::from_slice(&p.bytes).unwrap())
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{n} records never reached the sink outbox");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_failures_are_retried_durably_then_succeed() {
    let dir = support::temp_dir();
    let sim = live_sim().await;
    let body = recording_completed("rec-t-1", "eng-t-1");
    sim.emit_without_socket(body.clone());
    // Not listed yet, then a 503, then a body cut off halfway: three retries.
    sim.hide_media_from_listings(1);
    sim.media_fault(MediaFault::Status(503), 1);
    sim.media_fault(MediaFault::Truncated, 1);
    let stage = start_stage(&sim, dir.path(), vec![Duration::from_millis(200); 5]).await;
    append(&stage.journal, &body).await;
    let records = wait_queued(&stage.journal, 1).await;
    let expected = sim.media_file(FileKind::VoiceRecording, "rec-t-1");
    assert_eq!(
        records[0]["media"][0]["sha256"], expected.sha256,
        "{}",
        records[0]
    );
    assert!(records[0].get("media_errors").is_none());
    assert_eq!(sim.media_downloads(), 3, "503, truncated, then the file");
    assert!(
        stage
            .journal
            .read_outbox(MEDIA, 0, 10)
            .await
            .unwrap()
            .0
            .is_empty()
    );
    // One object, whatever the failed attempts left behind.
    let objects = files_under(&dir.path().join("journal/media"));
    assert_eq!(objects.len(), 1, "{objects:?}");
    stage.stop.cancel();
    stage.task.await.unwrap().unwrap();
    stage.journal.close().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retryable_failure_that_outlasts_the_schedule_is_forwarded_with_media_errors() {
    let dir = support::temp_dir();
    let sim = live_sim().await;
    let body = recording_completed("rec-t-2", "eng-t-2");
    sim.emit_without_socket(body.clone());
    sim.media_fault(MediaFault::Status(500), 3);
    let stage = start_stage(&sim, dir.path(), vec![Duration::from_millis(100); 2]).await;
    append(&stage.journal, &body).await;
    let records = wait_queued(&stage.journal, 1).await;
    assert_eq!(records[0]["media"], json!([]));
    let error = records[0]["media_errors"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("gave up after 3 attempts") && error.contains("HTTP 500"),
        "{error}"
    );
    stage.stop.cancel();
    stage.task.await.unwrap().unwrap();
    stage.journal.close().await;
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_waiting_for_its_media_survives_a_restart() {
    let dir = support::temp_dir();
    let sim = live_sim().await;
    sim.media_fault(MediaFault::Status(503), 1);
    let journal = dir.path().join("journal");
    let archive = dir.path().join("archive.jsonl");
    let text = config(&sim, &journal, &archive, Some(MediaTable::enabled()));
    let daemon = Daemon::start(support::settings(&text));
    sim.wait_live().await;
    assert!(sim.emit(recording_completed("rec-w-1", "eng-w-1")));
    daemon.wait_handled(1).await;
    for _ in 0..200 {
        if sim.media_downloads() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(sim.media_downloads(), 1, "the first attempt got its 503");
    // Stopped while the record waits for its durable retry: nothing delivered.
    daemon.stop().await.unwrap();
    assert!(support::read_lines(&archive).is_empty());

    // The next start picks it up when it comes due (about 10 s after the 503).
    let daemon = Daemon::start(support::settings(&text));
    daemon.wait_delivered("archive", 1).await;
    let record = line_of(
        &support::read_lines(&archive),
        "recording_completed:rec-w-1",
    );
    let expected = sim.media_file(FileKind::VoiceRecording, "rec-w-1");
    assert_eq!(record["media"][0]["sha256"], expected.sha256, "{record}");
    assert_eq!(sim.media_downloads(), 2);
    daemon.stop().await.unwrap();
    sim.shutdown().await;
}

/// A download host that answers `401` to the first `unauthorized` requests,
/// then `200`, counting requests.
async fn start_picky_host(unauthorized: u64) -> (url::Url, Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    let app = axum::Router::new().route(
        "/v2/file",
        axum::routing::get(move || {
            let counter = counter.clone();
            async move {
                if counter.fetch_add(1, Ordering::SeqCst) < unauthorized {
                    (
                        axum::http::StatusCode::UNAUTHORIZED,
                        "Invalid access token.",
                    )
                } else {
                    (axum::http::StatusCode::OK, "the file")
                }
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url::Url::parse(&format!("http://{addr}/v2")).unwrap(), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_refreshes_the_token_once() {
    use std::sync::atomic::Ordering;
    use zcc_relay::failure::{Class, Failure};
    use zcc_relay::media::{Downloader, ZoomHosts};
    let sim = live_sim().await;
    let dir = support::temp_dir();
    let text = config(&sim, &dir.path().join("j"), &dir.path().join("a"), None);
    let settings = support::settings(&text);
    let tls = zcc_relay::tls::client_config().unwrap();
    for (unauthorized, requests, tokens, ok) in [(1, 2, 2, true), (5, 2, 2, false)] {
        let (base, seen) = start_picky_host(unauthorized).await;
        let http = zcc_relay::tls::http_client(&tls, Duration::from_secs(10)).unwrap();
        let cache = zcc_relay::zoom::auth::TokenCache::new(
            http,
            zcc_relay::zoom::auth::Credentials::from_settings(&settings.zoom),
        );
        let downloader =
            Downloader::new(&tls, cache.clone(), ZoomHosts::new(&base, &sim.oauth_url())).unwrap();
        let opened = downloader.open(&format!("{base}/file")).await;
        assert_eq!(seen.load(Ordering::SeqCst), requests);
        assert_eq!(cache.refreshes().await, tokens, "one refresh after the 401");
        match opened {
            Ok(response) => {
                assert!(ok);
                assert_eq!(response.text().await.unwrap(), "the file");
            }
            Err(Failure {
                class: Class::Retry { .. },
                reason,
                ..
            }) => {
                assert!(!ok);
                assert!(reason.contains("HTTP 401"), "{reason}");
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    sim.shutdown().await;
}

/// A download host whose `/slow` answers `200` with a long announced length,
/// sends one chunk and then nothing more; counts requests.
async fn start_stalling_host() -> (SocketAddr, Arc<std::sync::atomic::AtomicU64>) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    let app = axum::Router::new().route(
        "/slow",
        axum::routing::get(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                let first = futures_util::stream::once(async {
                    Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'x'; 64 * 1024]))
                });
                let body = futures_util::StreamExt::chain(first, futures_util::stream::pending());
                (
                    [
                        (axum::http::header::CONTENT_TYPE, "text/plain"),
                        // Under the transcript size cap (64 MiB), or the cap ends it.
                        (axum::http::header::CONTENT_LENGTH, "33554432"),
                    ],
                    axum::body::Body::from_stream(body),
                )
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_during_a_long_download_ends_by_the_drain_deadline_and_the_record_stays_queued() {
    use std::sync::atomic::Ordering;
    let dir = support::temp_dir();
    let sim = live_sim().await;
    let (host, seen) = start_stalling_host().await;
    let journal = dir.path().join("journal");
    let archive = dir.path().join("archive.jsonl");
    // drain_timeout is 2 s in the test configuration.
    let text = config(&sim, &journal, &archive, Some(MediaTable::enabled()));
    let daemon = Daemon::start(support::settings(&text));
    sim.wait_live().await;
    daemon.wait_first_sweep().await;
    let body = event(
        "engagement_messaging_transcript_completed",
        json!({
            "engagement_id": "eng-s-1",
            "transcript_url": format!("http://{host}/slow"),
        }),
    );
    assert!(sim.emit(body));
    daemon.wait_handled(1).await;
    for _ in 0..400 {
        if seen.load(Ordering::SeqCst) >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(seen.load(Ordering::SeqCst), 1, "the download started");
    // The download now hangs with ~32 MiB to go: stopping gives it the drain
    // deadline, then gives it up.
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(2 + 5), daemon.stop())
        .await
        .expect("stopped within drain_timeout (2 s) + 5 s")
        .unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "stopped after {took:?}, before the drain deadline"
    );
    assert!(support::read_lines(&archive).is_empty());

    // The record waits in the media outbox for the next start, unchanged.
    let settings = support::settings(&text);
    let reopened = Journal::open_with_media(
        &settings.journal.dir,
        SinkRoute::for_sinks(&settings.sinks),
        Some(zcc_relay::media::media_events()),
    )
    .unwrap();
    let (waiting, _) = reopened.read_outbox(MEDIA, 0, 10).await.unwrap();
    assert_eq!(waiting.len(), 1);
    let record: Value = serde_json::from_slice(&waiting[0].bytes).unwrap();
    assert_eq!(
        record["id"],
        "engagement_messaging_transcript_completed:eng-s-1"
    );
    assert!(record.get("media").is_none(), "{record}");
    assert!(
        reopened
            .read_outbox("archive", 0, 10)
            .await
            .unwrap()
            .0
            .is_empty()
    );
    // Nothing half-written is left in the store.
    assert!(files_under(&journal.join("media")).is_empty());
    reopened.close().await;
    sim.shutdown().await;
}

/// `queue` and `reconcile` open a stopped daemon's journal as its owner; with
/// media on they must open it as the daemon does, or records waiting for
/// their media (and reconciled media records) go to the sinks without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_and_reconcile_commands_leave_records_waiting_for_media_alone() {
    let dir = support::temp_dir();
    let sim = live_sim().await;
    let journal_dir = dir.path().join("journal");
    let text = config(
        &sim,
        &journal_dir,
        &dir.path().join("a.jsonl"),
        Some(MediaTable::enabled()),
    );
    let config_path = dir.path().join("config.toml");
    std::fs::write(&config_path, &text).unwrap();
    let settings = support::settings(&text);
    let open = || {
        Journal::open_with_media(
            &settings.journal.dir,
            SinkRoute::for_sinks(&settings.sinks),
            Some(zcc_relay::media::media_events()),
        )
        .unwrap()
    };
    let journal = open();
    append(&journal, &recording_completed("rec-q-1", "eng-q-1")).await;
    journal.close().await;
    drop(journal); // releases the directory lock: the commands open as owners

    let run = |args: Vec<String>| {
        let config_path = config_path.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(support::BIN)
                .args(&args)
                .arg("--config")
                .arg(&config_path)
                .output()
                .unwrap()
        })
    };
    let output = run(vec!["queue".into(), "stats".into()]).await.unwrap();
    assert!(output.status.success(), "{output:?}");
    // A recording Zoom lists, found by reconciliation while no daemon runs.
    let listed = recording_completed("rec-q-2", "eng-q-2");
    sim.emit_without_socket(listed);
    let hour = 3_600_000;
    let rfc3339 = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms)
            .unwrap()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    let output = run(vec![
        "reconcile".into(),
        "--from".into(),
        rfc3339(now_ms() - hour),
        "--to".into(),
        rfc3339(now_ms() + 60_000),
    ])
    .await
    .unwrap();
    assert!(output.status.success(), "{output:?}");

    let journal = open();
    let (waiting, _) = journal.read_outbox(MEDIA, 0, 10).await.unwrap();
    let ids: Vec<String> = waiting
        .iter()
        .map(|p| {
            serde_json::from_slice::<Value>(&p.bytes).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        ids,
        ["recording_completed:rec-q-1", "recording_completed:rec-q-2"],
        "both still wait for their media"
    );
    assert!(
        journal
            .read_outbox("archive", 0, 10)
            .await
            .unwrap()
            .0
            .is_empty()
    );
    journal.close().await;
    sim.shutdown().await;
}
