//! The media stage's worker: a handler of the shared outbox consumer loop
//! (`deliver::consumer`) over the journal's media outbox. It fetches and
//! stores each record's files (named by the record's view, see `plan`) and
//! hands the enriched record on to the sinks in one journal commit
//! (`Journal::enriched`).
//!
//! A record leaves the media outbox only in that commit, so a crash anywhere
//! before it means the record is processed again at the next start; the
//! object key is deterministic, so that overwrites the same object. A
//! failure other than a permanent one (`crate::failure::Failure`: network,
//! 5xx, 429, truncated body, not listed yet, a set-up problem)
//! stores the record's next attempt time in the journal (`due/@media`) and
//! frees the worker for other records; when [`RETRY_SCHEDULE`] is used up, or
//! on a permanent failure (404/410: deleted), the record goes on with a
//! `media_errors` entry instead. The event itself is never held back for good.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::download::Downloader;
use super::plan::{self, Kind, Locate, Wanted};
use super::store::MediaStore;
use crate::clock;
use crate::deliver::consumer::{self, Handler, Settled, Slot};
use crate::failure::{Class, Failure};
use crate::journal::{Journal, JournalError, MEDIA, Pending};
use crate::record::MediaEntry;
use crate::record::RecordHeader;
use crate::service::Heartbeat;
use crate::zoom::api::{ApiError, ZoomApi};
use crate::zoom::lookup;

/// Durable retry delays of a record whose media failed for now (±20 %).
/// About two days in all; then the record goes on with `media_errors`.
pub const RETRY_SCHEDULE: [Duration; 8] = [
    Duration::from_secs(10),
    Duration::from_secs(60),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(6 * 3600),
    Duration::from_secs(12 * 3600),
    Duration::from_secs(24 * 3600),
];
/// Records whose media are fetched at once.
pub const MAX_IN_FLIGHT: usize = 4;
const BATCH: usize = 64;

pub struct MediaStage {
    pub journal: Journal,
    pub api: Arc<ZoomApi>,
    pub downloader: Downloader,
    pub store: MediaStore,
    pub retry_schedule: Vec<Duration>,
}

impl MediaStage {
    /// Works until `stop` fires; records being processed then get until
    /// `abort` (the drain deadline) and otherwise stay in the media outbox.
    /// Beats `heartbeat` for the watchdog meanwhile. The loop is the one every
    /// sink worker runs too (`deliver::consumer`).
    pub async fn run(
        self,
        stop: CancellationToken,
        abort: CancellationToken,
        heartbeat: Heartbeat,
    ) -> Result<(), JournalError> {
        let journal = self.journal.clone();
        consumer::run(Arc::new(self), journal, heartbeat, stop, abort).await
    }

    /// Fetches and stores the record's media, then either hands it on
    /// (enriched) or schedules its next attempt.
    async fn process(&self, pending: Pending) -> Result<(), JournalError> {
        let seq = pending.seq;
        let (id, event_ts) = match serde_json::from_slice::<RecordHeader>(&pending.bytes) {
            Ok(header) => (header.id.into_owned(), header.event_ts),
            Err(e) => {
                tracing::error!(seq, error = %e, "stored record is unreadable; forwarding it without media");
                return self.journal.enriched(seq, pending.bytes.to_vec()).await;
            }
        };
        let mut media: Vec<MediaEntry> = Vec::new();
        let mut errors: Vec<Value> = Vec::new();
        let mut retry: Option<(Kind, String)> = None;
        for wanted in plan::plan(&pending.view, event_ts) {
            match wanted {
                Err(unusable) => {
                    errors.push(json!({"kind": unusable.kind.as_str(), "error": unusable.error}))
                }
                Ok(wanted) => match self.fetch(&wanted).await {
                    Ok(stored) => media.push(stored),
                    Err(Failure {
                        class: Class::Permanent,
                        reason,
                        ..
                    }) => {
                        tracing::warn!(record_id = %id, kind = wanted.kind.as_str(), error = %reason, "media cannot be fetched; forwarding the record with media_errors");
                        errors.push(json!({"kind": wanted.kind.as_str(), "error": reason}));
                    }
                    // Temporary, or a set-up problem (credentials, store
                    // permissions): tried again later.
                    Err(failure) => retry = Some((wanted.kind, failure.reason)),
                },
            }
        }
        let attempts = pending.attempts + 1;
        if let Some((kind, reason)) = retry {
            if self
                .retry_later(&pending, &id, kind.as_str(), &reason)
                .await?
            {
                return Ok(());
            }
            let reason = format!("gave up after {attempts} attempts; last error: {reason}");
            tracing::warn!(record_id = %id, kind = kind.as_str(), error = %reason, "media not fetched; forwarding the record with media_errors");
            errors.push(json!({"kind": kind.as_str(), "error": reason}));
        }
        for stored in &media {
            tracing::debug!(record_id = %id, kind = %stored.kind, location = %stored.location, size = stored.size, "media stored");
        }
        let body = with_media(&pending.bytes, &media, &errors);
        self.journal.enriched(seq, body).await
    }

    /// Schedules the record's next attempt on the retry schedule; `false`
    /// when the schedule is used up (the caller forwards it instead).
    async fn retry_later(
        &self,
        pending: &Pending,
        id: &str,
        kind: &str,
        reason: &str,
    ) -> Result<bool, JournalError> {
        let Some(delay) = jittered(&self.retry_schedule, pending.step) else {
            return Ok(false);
        };
        let attempts = pending.attempts + 1;
        let due = clock::now_ms() + delay.as_millis() as u64;
        tracing::info!(record_id = %id, kind, error = %reason, attempts, retry_in = %humantime::format_duration(Duration::from_secs(delay.as_secs().max(1))), "media not fetched yet; retrying later");
        self.journal
            .schedule(MEDIA, pending.seq, attempts, pending.step + 1, due)
            .await?;
        Ok(true)
    }

    /// Settles a record whose task panicked: retried on the schedule like a
    /// retryable failure, then forwarded with `media_errors`, so a bug never
    /// holds the event back for good (nor until the next start).
    async fn failed_task(&self, pending: Pending) -> Result<(), JournalError> {
        let header = serde_json::from_slice::<RecordHeader>(&pending.bytes).ok();
        let id = header
            .as_ref()
            .map(|h| h.id.to_string())
            .unwrap_or_default();
        let event_ts = header.map_or(0, |h| h.event_ts);
        let kinds: Vec<&'static str> = plan::plan(&pending.view, event_ts)
            .iter()
            .map(|wanted| match wanted {
                Ok(wanted) => wanted.kind.as_str(),
                Err(unusable) => unusable.kind.as_str(),
            })
            .collect();
        let kind = kinds.first().copied().unwrap_or("unknown");
        let reason = "the media stage failed on this record (internal error)";
        if self.retry_later(&pending, &id, kind, reason).await? {
            return Ok(());
        }
        let attempts = pending.attempts + 1;
        tracing::warn!(record_id = %id, kind, attempts, "media not fetched; forwarding the record with media_errors");
        let errors: Vec<Value> = kinds
            .iter()
            .map(|kind| json!({"kind": kind, "error": format!("gave up after {attempts} attempts; last error: {reason}")}))
            .collect();
        let body = with_media(&pending.bytes, &[], &errors);
        self.journal.enriched(pending.seq, body).await
    }

    async fn fetch(&self, wanted: &Wanted) -> Result<MediaEntry, Failure> {
        let url = match &wanted.locate {
            Locate::Url(url) => url.clone(),
            Locate::Recording { recording_id } => self.find_recording(wanted, recording_id).await?,
            Locate::Voicemail { message_id } => self.find_voicemail(wanted, message_id).await?,
        };
        let response = self.downloader.open(&url).await?;
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_else(|| "application/octet-stream".to_owned());
        let expected = response.content_length();
        let key = plan::object_key(wanted, &content_type);
        let body = response
            .bytes_stream()
            .map(|chunk| chunk.map_err(crate::zoom::auth::without_url));
        self.store
            .put(wanted.kind.as_str(), &key, &content_type, expected, body)
            .await
    }

    /// `recording_completed` carries no URL: Zoom's listing names it.
    async fn find_recording(&self, wanted: &Wanted, recording_id: &str) -> Result<String, Failure> {
        lookup::recording_url(&self.api, &wanted.engagement_id, recording_id)
            .await
            .map_err(api_failure)?
            .ok_or_else(|| {
                Failure::retry(format!(
                    "recording {recording_id} is not listed for engagement {} yet",
                    wanted.engagement_id
                ))
            })
    }

    /// `inbox_message_received` carries no URL: Zoom's listing names it.
    async fn find_voicemail(&self, wanted: &Wanted, message_id: &str) -> Result<String, Failure> {
        lookup::voicemail_url(
            &self.api,
            &wanted.engagement_id,
            message_id,
            wanted.event_ts_ms,
            clock::now_ms(),
        )
        .await
        .map_err(api_failure)?
        .ok_or_else(|| {
            Failure::retry(format!(
                "voicemail {message_id} is not listed for engagement {} yet",
                wanted.engagement_id
            ))
        })
    }
}

impl Handler for MediaStage {
    fn outbox(&self) -> &str {
        MEDIA
    }

    fn describe(&self) -> String {
        "media stage".into()
    }

    fn max_in_flight(&self) -> usize {
        MAX_IN_FLIGHT
    }

    fn read_batch(&self) -> usize {
        BATCH
    }

    /// Files of one engagement are fetched independently.
    fn ordered(&self) -> bool {
        false
    }

    async fn handle(
        self: Arc<Self>,
        records: Vec<Pending>,
        _slot: Slot,
        _stop: CancellationToken,
        abort: CancellationToken,
    ) -> Result<Vec<(u64, Settled)>, JournalError> {
        let mut settled = Vec::with_capacity(records.len());
        for pending in records {
            let seq = pending.seq;
            let how = tokio::select! {
                _ = abort.cancelled() => Settled::Aborted,
                result = self.process(pending) => { result?; Settled::Done }
            };
            settled.push((seq, how));
        }
        Ok(settled)
    }

    async fn panicked(self: Arc<Self>, pending: Pending) -> Result<Settled, JournalError> {
        // Retried later or handed on with `media_errors`: either way out of
        // the way (the media stage has no lanes).
        self.failed_task(pending).await?;
        Ok(Settled::Done)
    }
}

fn api_failure(error: ApiError) -> Failure {
    match error {
        ApiError::Status {
            status: 404 | 410, ..
        } => Failure::permanent(format!("Zoom API: {error}")),
        other => Failure::retry(format!("Zoom API: {other}")),
    }
}

/// The delay before durable step `step` (±20 %), or `None` when the schedule
/// is used up: the sinks' durable schedule, never repeating.
fn jittered(schedule: &[Duration], step: u32) -> Option<Duration> {
    crate::deliver::schedule::durable_delay(schedule, step, false, &mut rand::rng())
}

/// The record with `media` (and `media_errors` when any) added as its last
/// keys; every other byte of it stays as stored (the payload stays verbatim).
pub fn with_media(record: &[u8], media: &[MediaEntry], errors: &[Value]) -> Vec<u8> {
    let text = String::from_utf8_lossy(record);
    let trimmed = text.trim_end();
    let Some(open) = trimmed.strip_suffix('}') else {
        return record.to_vec();
    };
    let mut body = open.trim_end().to_owned();
    let empty = body.trim_start() == "{";
    if !empty {
        body.push(',');
    }
    body.push_str("\"media\":");
    body.push_str(&serde_json::to_string(media).unwrap_or_else(|_| "[]".into()));
    if !errors.is_empty() {
        body.push_str(",\"media_errors\":");
        body.push_str(&serde_json::to_string(errors).unwrap_or_else(|_| "[]".into()));
    }
    body.push('}');
    body.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_keys_are_appended_and_the_rest_is_kept_byte_for_byte() {
        let record = br#"{"id":"a","payload":{"z":1,"a":[2]}}"#;
        let stored = MediaEntry {
            kind: "recording".into(),
            location: "file:///m/k.mp3".into(),
            url: None,
            content_type: "audio/mpeg".into(),
            size: 3,
            sha256: "ab".into(),
        };
        let body = with_media(record, &[stored], &[]);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"id":"a","payload":{"z":1,"a":[2]},"media":[{"kind":"recording","location":"file:///m/k.mp3","content_type":"audio/mpeg","size":3,"sha256":"ab"}]}"#
        );
        let errors = [json!({"kind": "voicemail", "error": "HTTP 404"})];
        let body = with_media(br#"{"id":"b"}"#, &[], &errors);
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["media"], json!([]));
        assert_eq!(value["media_errors"], json!(errors));
    }

    /// A stage on a fresh journal (one sink `a` taking everything) and an
    /// in-memory store; nothing in these tests reaches Zoom.
    fn stage(dir: &std::path::Path, retry_schedule: Vec<Duration>) -> MediaStage {
        let journal = Journal::open_with_media(
            dir,
            vec![crate::journal::SinkRoute {
                name: "a".into(),
                filter: crate::route::EventFilter::new(Vec::new()),
            }],
            Some(crate::media::media_events()),
        )
        .unwrap();
        let tls = crate::tls::client_config().unwrap();
        let http = crate::tls::http_client(&tls, Duration::from_secs(1)).unwrap();
        let nowhere = url::Url::parse("http://127.0.0.1:9/v2").unwrap();
        let tokens = crate::zoom::auth::TokenCache::new(
            http.clone(),
            crate::zoom::auth::Credentials {
                oauth_url: nowhere.clone(),
                account_id: "acc".into(),
                client_id: "id".into(),
                client_secret: crate::config::Secret::new("secret".into()),
            },
        );
        let settings = crate::config::MediaSettings {
            enabled: true,
            store: url::Url::parse("memory:///").unwrap(),
            link_ttl: Duration::from_secs(60),
            allow_http: false,
            options: Default::default(),
        };
        MediaStage {
            journal: journal.clone(),
            api: Arc::new(ZoomApi::new(http, nowhere.clone(), tokens.clone(), 5)),
            downloader: Downloader::new(
                &tls,
                tokens,
                super::super::ZoomHosts::new(&nowhere, &nowhere),
            )
            .unwrap(),
            store: MediaStore::build(&settings, &tls).unwrap(),
            retry_schedule,
        }
    }

    #[tokio::test]
    async fn a_record_whose_task_panicked_is_retried_then_forwarded_with_media_errors() {
        let dir = tempfile::tempdir().unwrap();
        let stage = stage(dir.path(), vec![Duration::from_millis(1)]);
        let journal = stage.journal.clone();
        let body = json!({
            "event": "contact_center.recording_completed",
            "event_ts": 1_732_440_000_000i64,
            "payload": {"account_id": "acc", "object": {"recording_id": "r1", "engagement_id": "e1"}},
        });
        let record = crate::zoom::event::parse_body(
            &body.to_string(),
            crate::record::Source::Websocket,
            crate::record::now_rfc3339(),
            1_732_440_000_000,
        )
        .unwrap();
        journal.append(record).await.unwrap();
        let first = journal.read_outbox(MEDIA, 0, 10).await.unwrap().0.remove(0);

        // First failure: a durable retry, not stuck and not forwarded.
        stage.failed_task(first.clone()).await.unwrap();
        let due = journal.read_due(MEDIA, u64::MAX, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(
            (due[0].seq, due[0].attempts, due[0].step),
            (first.seq, 1, 1)
        );
        assert!(journal.read_outbox("a", 0, 10).await.unwrap().0.is_empty());

        // The schedule used up: forwarded without media, saying why.
        stage.failed_task(due[0].clone()).await.unwrap();
        assert!(
            journal
                .read_due(MEDIA, u64::MAX, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(
            journal
                .read_outbox(MEDIA, 0, 10)
                .await
                .unwrap()
                .0
                .is_empty()
        );
        let forwarded = journal.read_outbox("a", 0, 10).await.unwrap().0;
        assert_eq!(forwarded.len(), 1);
        let value: Value = serde_json::from_slice(&forwarded[0].bytes).unwrap();
        assert_eq!(value["id"], "recording_completed:r1");
        assert_eq!(value["media"], json!([]));
        assert_eq!(value["media_errors"][0]["kind"], "recording");
        let error = value["media_errors"][0]["error"].as_str().unwrap();
        assert!(error.starts_with("gave up after 2 attempts"), "{error}");
        journal.close().await;
    }

    #[test]
    fn the_schedule_runs_out() {
        let schedule = [Duration::from_secs(10)];
        let first = jittered(&schedule, 0).unwrap();
        assert!(first >= Duration::from_secs(8) && first <= Duration::from_secs(12));
        assert_eq!(jittered(&schedule, 1), None);
    }
}
