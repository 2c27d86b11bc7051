//! Downloads for every media URL the simulator hands out, Bearer-checked by the
//! `/v2` gate like the rest of its API (docs/zoom.md §7):
//!
//! | URL (under `/v2/contact_center/`) | file | content type |
//! |---|---|---|
//! | `recording/download/{recording_id}?type=voice\|video` | recording | `audio/mpeg` / `video/mp4` |
//! | `recording/transcripts/download/{recording_id}` | transcript | `text/vtt` |
//! | `engagements/transcripts/download/{engagement_id}` | messaging transcript | `application/json` |
//! | `inbox/message/download/{message_id}` | voicemail | `audio/wav` |
//! | `inbox/message/transcripts/download/{message_id}`, `voicemail/transcripts/download/{message_id}` | voicemail transcript | `text/vtt` |
//!
//! Contents are deterministic (a function of kind, id and the configured size),
//! so a test knows every file's sha256 ([`Simulator::media_file`]). An id no
//! emitted event names is `404`, as is one deleted with
//! [`Simulator::delete_media`]. Audio is streamed in chunks, so a 1 GiB file
//! costs the simulator no memory. Faults ([`MediaFault`]) apply to the next
//! downloads in order. With [`Simulator::redirect_media`] on, downloads answer
//! `302` to a second listener on 127.0.0.1 (a stand-in for a storage host with
//! a signed URL) that serves the file without checking anything and records
//! whether a request carried an `Authorization` header.
//!
//! [`Simulator::media_file`]: super::Simulator::media_file
//! [`Simulator::delete_media`]: super::Simulator::delete_media
//! [`Simulator::redirect_media`]: super::Simulator::redirect_media

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use super::state::Inner;

/// Audio chunks streamed per write.
const CHUNK: usize = 64 * 1024;
pub const DEFAULT_RECORDING_BYTES: u64 = 256 * 1024;
pub const DEFAULT_VOICEMAIL_BYTES: u64 = 64 * 1024;

/// The kinds of file the simulator serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    VoiceRecording,
    VideoRecording,
    RecordingTranscript,
    MessagingTranscript,
    Voicemail,
    VoicemailTranscript,
}

impl FileKind {
    fn tag(self) -> &'static str {
        match self {
            FileKind::VoiceRecording => "voice",
            FileKind::VideoRecording => "video",
            FileKind::RecordingTranscript => "recording-transcript",
            FileKind::MessagingTranscript => "messaging-transcript",
            FileKind::Voicemail => "voicemail",
            FileKind::VoicemailTranscript => "voicemail-transcript",
        }
    }

    fn from_tag(tag: &str) -> Option<FileKind> {
        [
            FileKind::VoiceRecording,
            FileKind::VideoRecording,
            FileKind::RecordingTranscript,
            FileKind::MessagingTranscript,
            FileKind::Voicemail,
            FileKind::VoicemailTranscript,
        ]
        .into_iter()
        .find(|k| k.tag() == tag)
    }

    pub fn content_type(self) -> &'static str {
        match self {
            FileKind::VoiceRecording => "audio/mpeg",
            FileKind::VideoRecording => "video/mp4",
            FileKind::RecordingTranscript | FileKind::VoicemailTranscript => "text/vtt",
            FileKind::MessagingTranscript => "application/json",
            FileKind::Voicemail => "audio/wav",
        }
    }

    /// The `payload.object` field holding the id this file is found by.
    fn id_field(self) -> &'static str {
        match self {
            FileKind::VoiceRecording | FileKind::VideoRecording | FileKind::RecordingTranscript => {
                "recording_id"
            }
            FileKind::MessagingTranscript => "engagement_id",
            FileKind::Voicemail | FileKind::VoicemailTranscript => "message_id",
        }
    }

    fn is_audio(self) -> bool {
        matches!(
            self,
            FileKind::VoiceRecording | FileKind::VideoRecording | FileKind::Voicemail
        )
    }
}

/// What one download answers instead of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaFault {
    /// `404` with Zoom's "does not exist" body, as for a deleted recording.
    Deleted,
    /// This status (e.g. `503`) with a Zoom error body.
    Status(u16),
    /// `200` announcing the full length, then the connection breaks halfway.
    Truncated,
}

/// A file as the simulator serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimFile {
    pub content_type: &'static str,
    pub size: u64,
    pub sha256: String,
}

#[derive(Default)]
struct Control {
    recording_bytes: Option<u64>,
    voicemail_bytes: Option<u64>,
    faults: VecDeque<(MediaFault, u32)>,
    deleted: HashSet<String>,
    redirect: bool,
    /// Listing requests (engagement recordings, inbox messages) still to
    /// answer as if the item were not there yet.
    unlisted: u32,
}

/// The simulator's media state; lives in [`Inner`].
#[derive(Default)]
pub(super) struct Files {
    control: Mutex<Control>,
    redirect_addr: OnceLock<SocketAddr>,
    pub downloads: AtomicU64,
    pub redirect_requests: AtomicU64,
    pub redirect_authorized: AtomicU64,
}

impl Files {
    fn control(&self) -> std::sync::MutexGuard<'_, Control> {
        self.control.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn set_sizes(&self, recording: u64, voicemail: u64) {
        let mut control = self.control();
        control.recording_bytes = Some(recording);
        control.voicemail_bytes = Some(voicemail);
    }

    pub fn queue_fault(&self, fault: MediaFault, n: u32) {
        if n > 0 {
            self.control().faults.push_back((fault, n));
        }
    }

    fn take_fault(&self) -> Option<MediaFault> {
        let mut control = self.control();
        let (fault, left) = control.faults.front_mut()?;
        let fault = *fault;
        *left -= 1;
        if *left == 0 {
            control.faults.pop_front();
        }
        Some(fault)
    }

    pub fn delete(&self, id: &str) {
        self.control().deleted.insert(id.to_owned());
    }

    pub fn set_redirect(&self, on: bool) {
        self.control().redirect = on;
    }

    pub fn hide_from_listings(&self, n: u32) {
        self.control().unlisted = n;
    }

    /// Whether this listing request must leave the item out (and count it).
    pub fn take_unlisted(&self) -> bool {
        let mut control = self.control();
        if control.unlisted > 0 {
            control.unlisted -= 1;
            true
        } else {
            false
        }
    }

    pub fn file(&self, kind: FileKind, id: &str) -> SimFile {
        let size = self.size(kind, id);
        let mut hasher = Sha256::new();
        let mut offset = 0;
        while offset < size {
            let n = (size - offset).min(CHUNK as u64);
            hasher.update(chunk(kind, id, offset, n as usize));
            offset += n;
        }
        SimFile {
            content_type: kind.content_type(),
            size,
            sha256: hex::encode(hasher.finalize()),
        }
    }

    fn size(&self, kind: FileKind, id: &str) -> u64 {
        let control = self.control();
        match kind {
            FileKind::VoiceRecording | FileKind::VideoRecording => {
                control.recording_bytes.unwrap_or(DEFAULT_RECORDING_BYTES)
            }
            FileKind::Voicemail => control.voicemail_bytes.unwrap_or(DEFAULT_VOICEMAIL_BYTES),
            _ => transcript(kind, id).len() as u64,
        }
    }
}

/// Text of a transcript: a short WebVTT or JSON document naming the id.
fn transcript(kind: FileKind, id: &str) -> String {
    match kind {
        FileKind::MessagingTranscript => json!({
            "engagement_id": id,
            "messages": [
                {"sender": "consumer", "text": "Hi, my order has not arrived."},
                {"sender": "agent", "text": "Sorry to hear that, let me check the tracking for you."},
                {"sender": "consumer", "text": "Thanks!"},
            ],
        })
        .to_string(),
        _ => format!(
            "WEBVTT\n\nNOTE {id}\n\n00:00:00.000 --> 00:00:03.500\nAgent: Thank you for calling, how can I help?\n\n\
             00:00:03.500 --> 00:00:07.000\nCustomer: I would like to check on my order.\n"
        ),
    }
}

/// Bytes `offset..offset+len` of a file.
fn chunk(kind: FileKind, id: &str, offset: u64, len: usize) -> Vec<u8> {
    if !kind.is_audio() {
        let text = transcript(kind, id);
        let start = (offset as usize).min(text.len());
        let end = (start + len).min(text.len());
        return text.as_bytes()[start..end].to_vec();
    }
    let seed: [u8; 32] = Sha256::new()
        .chain_update(kind.tag())
        .chain_update(b"/")
        .chain_update(id)
        .finalize()
        .into();
    (offset..offset + len as u64)
        .map(|i| seed[(i % 32) as usize] ^ ((i / 32) as u8).wrapping_mul(31))
        .collect()
}

pub(super) fn routes() -> Router<Arc<Inner>> {
    let route = |kind: FileKind| {
        get(
            move |State(inner): State<Arc<Inner>>, Path(id): Path<String>, uri: axum::http::Uri| async move {
                let kind = match (kind, uri.query().unwrap_or_default().contains("type=video")) {
                    (FileKind::VoiceRecording, true) => FileKind::VideoRecording,
                    (kind, _) => kind,
                };
                download(&inner, kind, id)
            },
        )
    };
    Router::new()
        .route(
            "/v2/contact_center/recording/download/{id}",
            route(FileKind::VoiceRecording),
        )
        .route(
            "/v2/contact_center/recording/transcripts/download/{id}",
            route(FileKind::RecordingTranscript),
        )
        .route(
            "/v2/contact_center/engagements/transcripts/download/{id}",
            route(FileKind::MessagingTranscript),
        )
        .route(
            "/v2/contact_center/inbox/message/download/{id}",
            route(FileKind::Voicemail),
        )
        .route(
            "/v2/contact_center/inbox/message/transcripts/download/{id}",
            route(FileKind::VoicemailTranscript),
        )
        .route(
            "/v2/contact_center/voicemail/transcripts/download/{id}",
            route(FileKind::VoicemailTranscript),
        )
}

fn zoom_error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "code": code, "message": message })),
    )
        .into_response()
}

/// Whether an emitted event names this file's id.
fn known(inner: &Inner, kind: FileKind, id: &str) -> bool {
    inner.read_history(|history| {
        history
            .iter()
            .any(|e| e.body["payload"]["object"][kind.id_field()].as_str() == Some(id))
    })
}

fn download(inner: &Inner, kind: FileKind, id: String) -> Response {
    let files = &inner.media;
    files.downloads.fetch_add(1, Ordering::Relaxed);
    let deleted = files.control().deleted.contains(&id);
    if deleted || !known(inner, kind, &id) {
        return zoom_error(
            StatusCode::NOT_FOUND,
            3301,
            "This recording does not exist.",
        );
    }
    let fault = files.take_fault();
    match fault {
        Some(MediaFault::Deleted) => {
            return zoom_error(
                StatusCode::NOT_FOUND,
                3301,
                "This recording does not exist.",
            );
        }
        Some(MediaFault::Status(status)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return zoom_error(status, u32::from(status.as_u16()), "Simulated failure.");
        }
        Some(MediaFault::Truncated) | None => {}
    }
    if files.control().redirect
        && let Some(addr) = files.redirect_addr.get()
    {
        let location = format!(
            "http://{addr}/files/{}/{id}?X-Sim-Signature=0123abcd",
            kind.tag()
        );
        let mut response = StatusCode::FOUND.into_response();
        if let Ok(value) = HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
        return response;
    }
    serve(files, kind, id, fault == Some(MediaFault::Truncated))
}

/// The file as a streamed `200`; `truncated` breaks the body off halfway.
fn serve(files: &Files, kind: FileKind, id: String, truncated: bool) -> Response {
    let size = files.size(kind, &id);
    let stop_at = if truncated { size / 2 } else { size };
    let chunks = futures_util::stream::unfold(0u64, move |offset| {
        let id = id.clone();
        async move {
            if offset >= stop_at {
                if truncated && offset < size {
                    let broken = std::io::Error::other("simulated broken connection");
                    return Some((Err(broken), u64::MAX));
                }
                return None;
            }
            let n = (stop_at - offset).min(CHUNK as u64);
            let bytes = Bytes::from(chunk(kind, &id, offset, n as usize));
            Some((Ok(bytes), offset + n))
        }
    });
    let mut response = Response::new(Body::from_stream(chunks));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(kind.content_type()),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    response
}

/// Binds the redirect target (another port on 127.0.0.1) and serves it until
/// the simulator stops.
pub(super) async fn spawn_redirect_host(inner: Arc<Inner>) -> std::io::Result<()> {
    let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
    let _ = inner.media.redirect_addr.set(listener.local_addr()?);
    let cancel = inner.cancel.clone();
    let app = Router::new()
        .route("/files/{tag}/{id}", get(redirected))
        .with_state(inner);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(cancel.cancelled_owned())
            .await;
    });
    Ok(())
}

async fn redirected(
    State(inner): State<Arc<Inner>>,
    Path((tag, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let files = &inner.media;
    files.redirect_requests.fetch_add(1, Ordering::Relaxed);
    if headers.contains_key(header::AUTHORIZATION) {
        files.redirect_authorized.fetch_add(1, Ordering::Relaxed);
    }
    match FileKind::from_tag(&tag) {
        Some(kind) => serve(files, kind, id, false),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_are_deterministic_and_differ_by_id() {
        let files = Files::default();
        files.set_sizes(100_000, 10);
        let a = files.file(FileKind::VoiceRecording, "r1");
        assert_eq!(a, files.file(FileKind::VoiceRecording, "r1"));
        assert_eq!(a.size, 100_000);
        assert_ne!(a.sha256, files.file(FileKind::VoiceRecording, "r2").sha256);
        assert_ne!(a.sha256, files.file(FileKind::VideoRecording, "r1").sha256);
        // Chunked generation equals one piece.
        let whole = chunk(FileKind::Voicemail, "m", 0, 1000);
        let mut parts = chunk(FileKind::Voicemail, "m", 0, 333);
        parts.extend(chunk(FileKind::Voicemail, "m", 333, 667));
        assert_eq!(whole, parts);
        let vtt = files.file(FileKind::RecordingTranscript, "r1");
        assert_eq!(vtt.content_type, "text/vtt");
        assert!(transcript(FileKind::RecordingTranscript, "r1").starts_with("WEBVTT"));
        assert!(
            serde_json::from_str::<serde_json::Value>(&transcript(
                FileKind::MessagingTranscript,
                "e1"
            ))
            .is_ok()
        );
    }
}
