//! The media stage's worker: reads the journal's media outbox, fetches and
//! stores each record's files, and hands the enriched record on to the sinks
//! in one journal commit (`Journal::enriched`).
//!
//! A record leaves the media outbox only in that commit, so a crash anywhere
//! before it means the record is processed again at the next start; the
//! object key is deterministic, so that overwrites the same object. A
//! retryable failure (network, 5xx, 429, truncated body, not listed yet)
//! stores the record's next attempt time in the journal (`due/@media`) and
//! frees the worker for other records; when [`RETRY_SCHEDULE`] is used up, or
//! on a permanent failure (404/410: deleted), the record goes on with a
//! `media_errors` entry instead. The event itself is never held back for good.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::download::{Downloader, Failure};
use super::plan::{self, Kind, Locate, Wanted};
use super::store::{MediaStore, Stored};
use crate::clock;
use crate::journal::{Journal, JournalError, MEDIA, Pending};
use crate::service::Heartbeat;
use crate::zoom::api::{ApiError, ZoomApi};

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
    /// Runs until `stop` (then finishes what is in flight, or gives it up when
    /// `abort` fires), beating `heartbeat` for the watchdog meanwhile.
    pub async fn run(
        self,
        stop: CancellationToken,
        abort: CancellationToken,
        mut heartbeat: Heartbeat,
    ) -> Result<(), JournalError> {
        let stage = Arc::new(self);
        let journal = stage.journal.clone();
        let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let mut tasks: JoinSet<(u64, Result<(), JournalError>)> = JoinSet::new();
        let mut in_flight: HashSet<u64> = HashSet::new();
        // The record each task works on, so a task that panics can be
        // settled (retried later) instead of staying in flight for good.
        let mut running: HashMap<tokio::task::Id, Pending> = HashMap::new();
        let mut ready: std::collections::VecDeque<Pending> = Default::default();
        let mut committed = journal.committed();
        let mut cursor = 0u64;
        let result = 'work: loop {
            if ready.is_empty() {
                for pending in journal.read_due(MEDIA, clock::now_ms(), BATCH).await? {
                    if !in_flight.contains(&pending.seq) {
                        ready.push_back(pending);
                    }
                }
            }
            let mut read_new = false;
            if ready.is_empty() {
                committed.borrow_and_update();
                let (batch, last) = journal.read_outbox(MEDIA, cursor, BATCH).await?;
                read_new = last != cursor;
                cursor = last;
                ready.extend(batch.into_iter().filter(|p| !in_flight.contains(&p.seq)));
            }
            while !ready.is_empty() {
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    break;
                };
                let Some(pending) = ready.pop_front() else {
                    break;
                };
                in_flight.insert(pending.seq);
                let (stage, abort) = (stage.clone(), abort.clone());
                let task_pending = pending.clone();
                let handle = tasks.spawn(async move {
                    let _permit = permit;
                    let seq = task_pending.seq;
                    let result = tokio::select! {
                        _ = abort.cancelled() => Ok(()),
                        result = stage.process(task_pending) => result,
                    };
                    (seq, result)
                });
                running.insert(handle.id(), pending);
            }
            if read_new && ready.is_empty() && permits.available_permits() > 0 {
                continue;
            }
            // The earliest durable retry not already being worked on: one in
            // flight stays in the due index until it is settled, and waking
            // for it would spin until then.
            let next_due = if ready.is_empty() {
                journal.next_due_except(MEDIA, &in_flight).await?
            } else {
                None
            };
            let due_at = next_due.map(clock::instant_at);
            tokio::select! {
                _ = stop.cancelled() => break 'work Ok(()),
                changed = committed.changed(), if ready.is_empty() => {
                    if changed.is_err() { break 'work Ok(()) }
                }
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    match done {
                        Ok((id, (seq, Ok(())))) => {
                            running.remove(&id);
                            in_flight.remove(&seq);
                        }
                        Ok((_, (_, Err(e)))) => break 'work Err(e),
                        Err(e) => {
                            let Some(pending) = running.remove(&e.id()) else {
                                tracing::error!(error = %e, "media task failed");
                                continue;
                            };
                            let seq = pending.seq;
                            tracing::error!(seq, error = %e, "media task failed (a bug); its record is retried later");
                            if let Err(e) = stage.failed_task(pending).await {
                                break 'work Err(e);
                            }
                            in_flight.remove(&seq);
                        }
                    }
                }
                _ = tokio::time::sleep_until(due_at.unwrap_or_else(Instant::now)), if due_at.is_some() => {}
                _ = heartbeat.tick() => {}
            }
        };
        while let Some(done) = tasks.join_next().await {
            if let Ok((_, Err(e))) = done {
                tracing::error!(error = %e, "journal failed while finishing media");
            }
        }
        result
    }

    /// Fetches and stores the record's media, then either hands it on
    /// (enriched) or schedules its next attempt.
    async fn process(&self, pending: Pending) -> Result<(), JournalError> {
        let seq = pending.seq;
        let record: Value = match serde_json::from_slice(&pending.bytes) {
            Ok(record) => record,
            Err(e) => {
                tracing::error!(seq, error = %e, "stored record is unreadable; forwarding it without media");
                return self.journal.enriched(seq, pending.bytes.to_vec()).await;
            }
        };
        let id = record["id"].as_str().unwrap_or_default().to_owned();
        let mut media: Vec<Stored> = Vec::new();
        let mut errors: Vec<Value> = Vec::new();
        let mut retry: Option<(Kind, String)> = None;
        for wanted in plan::plan(&record) {
            match wanted {
                Err(unusable) => {
                    errors.push(json!({"kind": unusable.kind.as_str(), "error": unusable.error}))
                }
                Ok(wanted) => match self.fetch(&wanted).await {
                    Ok(stored) => media.push(stored),
                    Err(Failure::Permanent(reason)) => {
                        tracing::warn!(record_id = %id, kind = wanted.kind.as_str(), error = %reason, "media cannot be fetched; forwarding the record with media_errors");
                        errors.push(json!({"kind": wanted.kind.as_str(), "error": reason}));
                    }
                    Err(Failure::Retryable(reason)) => retry = Some((wanted.kind, reason)),
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
            tracing::debug!(record_id = %id, kind = stored.kind, location = %stored.location, size = stored.size, "media stored");
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
        let record: Value = serde_json::from_slice(&pending.bytes).unwrap_or(Value::Null);
        let id = record["id"].as_str().unwrap_or_default().to_owned();
        let kinds: Vec<&'static str> = plan::plan(&record)
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

    async fn fetch(&self, wanted: &Wanted) -> Result<Stored, Failure> {
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

    /// `recording_completed` carries no URL: the engagement's recordings list it.
    async fn find_recording(&self, wanted: &Wanted, recording_id: &str) -> Result<String, Failure> {
        let path = format!(
            "/contact_center/engagements/{}/recordings",
            wanted.engagement_id
        );
        let mut pages = self.api.pages(&path, &[], "recordings");
        while let Some(items) = pages.next().await.map_err(api_failure)? {
            if let Some(url) = items
                .iter()
                .find(|item| item["recording_id"].as_str() == Some(recording_id))
                .and_then(|item| item["download_url"].as_str())
                .filter(|url| !url.is_empty())
            {
                return Ok(url.to_owned());
            }
        }
        Err(Failure::Retryable(format!(
            "recording {recording_id} is not listed for engagement {} yet",
            wanted.engagement_id
        )))
    }

    /// `inbox_message_received` carries no URL: the inbox messages list it.
    async fn find_voicemail(&self, wanted: &Wanted, message_id: &str) -> Result<String, Failure> {
        // The listing filters on `created_at` within at most a month.
        let day = 86_400_000u64;
        let from = wanted.event_ts_ms.saturating_sub(day);
        let to = (from + 29 * day).min(clock::now_ms() + day);
        let query = [
            ("engagement_id", wanted.engagement_id.clone()),
            ("from", crate::zoom::api::zoom_time(from)),
            ("to", crate::zoom::api::zoom_time(to)),
        ];
        let mut pages = self
            .api
            .pages("/contact_center/inboxes/messages", &query, "messages");
        while let Some(items) = pages.next().await.map_err(api_failure)? {
            if let Some(url) = items
                .iter()
                .find(|item| item["message_id"].as_str() == Some(message_id))
                .and_then(|item| item["download_url"].as_str())
                .filter(|url| !url.is_empty())
            {
                return Ok(url.to_owned());
            }
        }
        Err(Failure::Retryable(format!(
            "voicemail {message_id} is not listed for engagement {} yet",
            wanted.engagement_id
        )))
    }
}

fn api_failure(error: ApiError) -> Failure {
    match error {
        ApiError::Status {
            status: 404 | 410, ..
        } => Failure::Permanent(format!("Zoom API: {error}")),
        other => Failure::Retryable(format!("Zoom API: {other}")),
    }
}

fn jittered(schedule: &[Duration], step: u32) -> Option<Duration> {
    let base = schedule.get(step as usize)?;
    Some(base.mul_f64(rand::rng().random_range(0.8..=1.2)))
}

/// The record with `media` (and `media_errors` when any) added as its last
/// keys; every other byte of it stays as stored (the payload stays verbatim).
pub fn with_media(record: &[u8], media: &[Stored], errors: &[Value]) -> Vec<u8> {
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
        let stored = Stored {
            kind: "recording",
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
                filter: crate::sink::route::EventFilter::new(Vec::new()),
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
