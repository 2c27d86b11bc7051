//! What media a record carries and where it goes: pure decisions, no I/O.
//!
//! Which file a record asks for was read from Zoom's JSON at ingest
//! (`zoom::view`, into the record's [`View`]); this module only turns that
//! into a plan.
//!
//! docs/contract.md §3.3 "Media": which event types carry which kind, how the
//! download URL is found, the deterministic object key
//! `{yyyy}/{mm}/{dd}/{engagement_id}/{kind}-{id}.{ext}` (date of the event, UTC)
//! and the extension taken from the content type.

use crate::record::View;

/// The event names that pass through the media stage.
pub const MEDIA_EVENTS: [&str; 5] = [
    "contact_center.recording_completed",
    "contact_center.recording_transcript_completed",
    "contact_center.engagement_messaging_transcript_completed",
    "contact_center.inbox_message_received",
    "contact_center.voicemail_transcript_completed",
];

/// The kinds of file (named in the record's view).
pub use crate::record::MediaKind as Kind;

/// How to find the file's download URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locate {
    /// The record carries it.
    Url(String),
    /// `recording_completed` from the socket carries none: look the recording up
    /// in `GET /contact_center/engagements/{engagement_id}/recordings`.
    Recording { recording_id: String },
    /// `inbox_message_received` carries none: look the message up in
    /// `GET /contact_center/inboxes/messages?engagement_id=…`.
    Voicemail { message_id: String },
}

/// One file a record asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub kind: Kind,
    /// The item's own id: recording, engagement (messaging) or message id.
    pub id: String,
    pub engagement_id: String,
    /// `yyyy/mm/dd` of the event, UTC.
    pub day: String,
    /// The record's `event_ts`.
    pub event_ts_ms: u64,
    pub locate: Locate,
}

/// A media item the record asks for but cannot name (a field is missing): it
/// goes into `media_errors`, never retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unusable {
    pub kind: Kind,
    pub error: String,
}

/// The files a forwarded record (its view and `event_ts`) asks for, or why
/// one cannot be fetched.
pub fn plan(view: &View, event_ts: i64) -> Vec<Result<Wanted, Unusable>> {
    let day = day_of(event_ts);
    view.media
        .iter()
        .map(|media| {
            let kind = media.kind;
            let unusable = |error: String| Unusable { kind, error };
            if let Some(error) = &media.unusable {
                return Err(unusable(error.clone()));
            }
            let (Some(id), Some(engagement_id)) = (&media.id, &view.engagement_id) else {
                return Err(unusable("the record names no item or engagement".into()));
            };
            let locate = match (&media.url, kind) {
                (Some(url), _) => Locate::Url(url.clone()),
                (None, Kind::Recording) => Locate::Recording {
                    recording_id: id.clone(),
                },
                (None, Kind::Voicemail) => Locate::Voicemail {
                    message_id: id.clone(),
                },
                (None, _) => return Err(unusable("the record carries no URL".into())),
            };
            Ok(Wanted {
                kind,
                id: id.clone(),
                engagement_id: engagement_id.clone(),
                day: day.clone(),
                event_ts_ms: u64::try_from(event_ts).unwrap_or(0),
                locate,
            })
        })
        .collect()
}

fn day_of(event_ts_ms: i64) -> String {
    jiff::Timestamp::from_millisecond(event_ts_ms)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .strftime("%Y/%m/%d")
        .to_string()
}

/// The object key under the store's prefix. Ids come from Zoom; each byte
/// outside `[A-Za-z0-9_=-]` is escaped as `.XX` (hex), so a key is always one
/// safe path segment each and two ids never share a key (`x.y` is `x.2Ey`,
/// `x_y` stays `x_y`).
pub fn object_key(wanted: &Wanted, content_type: &str) -> String {
    format!(
        "{}/{}/{}-{}.{}",
        wanted.day,
        segment(&wanted.engagement_id),
        wanted.kind.as_str(),
        segment(&wanted.id),
        extension(content_type, wanted.kind)
    )
}

fn segment(id: &str) -> String {
    use std::fmt::Write as _;
    if id.is_empty() {
        // No escape produces a lower-case letter after '.': unique too.
        return ".empty".to_owned();
    }
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'=') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, ".{b:02X}");
        }
    }
    out
}

/// File extension for a content type (parameters ignored). Unknown types get
/// `bin`, except that a transcript served as `application/octet-stream` (as
/// Zoom is reported to do) is text: `txt`.
pub fn extension(content_type: &str, kind: Kind) -> &'static str {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "audio/mpeg" | "audio/mp3" => "mp3",
        "audio/mp4" | "audio/x-m4a" | "audio/m4a" => "m4a",
        "audio/wav" | "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => "wav",
        "audio/ogg" => "ogg",
        "video/mp4" => "mp4",
        "video/webm" => "webm",
        "text/vtt" => "vtt",
        "text/plain" => "txt",
        "application/json" => "json",
        "text/html" => "html",
        _ if matches!(
            kind,
            Kind::RecordingTranscript | Kind::MessagingTranscript | Kind::VoicemailTranscript
        ) =>
        {
            "txt"
        }
        _ => "bin",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// The plan of an event with this `payload.object`, viewed as at ingest,
    /// on 2026-11-24T10:00:00Z.
    fn planned(event: &str, object: Value) -> Vec<Result<Wanted, Unusable>> {
        plan(
            &crate::zoom::view::of(event, Some(&object)),
            1_795_514_400_000,
        )
    }

    #[test]
    fn each_media_type_names_its_kind_id_and_locator() {
        let cases = [
            (
                "contact_center.recording_completed",
                json!({"recording_id": "r1", "engagement_id": "e1"}),
                Kind::Recording,
                "r1",
                Locate::Recording {
                    recording_id: "r1".into(),
                },
            ),
            (
                "contact_center.recording_completed",
                json!({"recording_id": "r1", "engagement_id": "e1", "download_url": "https://api.zoom.us/v2/x"}),
                Kind::Recording,
                "r1",
                Locate::Url("https://api.zoom.us/v2/x".into()),
            ),
            (
                "contact_center.recording_transcript_completed",
                json!({"recording_id": "r1", "engagement_id": "e1", "transcript_url": "https://t/1"}),
                Kind::RecordingTranscript,
                "r1",
                Locate::Url("https://t/1".into()),
            ),
            (
                "contact_center.engagement_messaging_transcript_completed",
                json!({"engagement_id": "e1", "transcript_url": "https://t/2"}),
                Kind::MessagingTranscript,
                "e1",
                Locate::Url("https://t/2".into()),
            ),
            (
                "contact_center.inbox_message_received",
                json!({"message_id": "m1", "engagement_id": "e1"}),
                Kind::Voicemail,
                "m1",
                Locate::Voicemail {
                    message_id: "m1".into(),
                },
            ),
            (
                "contact_center.voicemail_transcript_completed",
                json!({"message_id": "m1", "engagement_id": "e1", "transcript_url": "https://t/3"}),
                Kind::VoicemailTranscript,
                "m1",
                Locate::Url("https://t/3".into()),
            ),
        ];
        for (event, object, kind, id, locate) in cases {
            let planned = planned(event, object);
            assert_eq!(
                planned,
                vec![Ok(Wanted {
                    kind,
                    id: id.into(),
                    engagement_id: "e1".into(),
                    day: "2026/11/24".into(),
                    event_ts_ms: 1_795_514_400_000,
                    locate,
                })],
                "{event}"
            );
        }
    }

    #[test]
    fn other_events_carry_nothing_and_missing_fields_are_reported() {
        assert!(planned("contact_center.engagement_note_added", json!({})).is_empty());
        let planned_now = planned(
            "contact_center.recording_transcript_completed",
            json!({"recording_id": "r1", "engagement_id": "e1", "transcript_url": ""}),
        );
        assert_eq!(
            planned_now,
            vec![Err(Unusable {
                kind: Kind::RecordingTranscript,
                error: "the record has no payload.object.transcript_url".into()
            })]
        );
        let planned = planned(
            "contact_center.recording_completed",
            json!({"engagement_id": "e1"}),
        );
        assert!(matches!(&planned[..], [Err(u)] if u.error.contains("recording_id")));
    }

    #[test]
    fn keys_are_deterministic_and_safe() {
        let wanted = Wanted {
            kind: Kind::Recording,
            id: "ab/../c d".into(),
            engagement_id: "e+1==".into(),
            day: "2026/11/24".into(),
            event_ts_ms: 0,
            locate: Locate::Url(String::new()),
        };
        assert_eq!(
            object_key(&wanted, "audio/mpeg; charset=binary"),
            "2026/11/24/e.2B1==/recording-ab.2F.2E.2E.2Fc.20d.mp3"
        );
        // One-to-one: ids that differ never share a key.
        let ids = ["x.y", "x_y", "x.2Ey", "x/y", "", "_", ".empty", "é"];
        let segments: std::collections::BTreeSet<String> =
            ids.iter().map(|id| segment(id)).collect();
        assert_eq!(segments.len(), ids.len(), "{segments:?}");
        assert_eq!(segment("x.y"), "x.2Ey");
        assert_eq!(segment("x_y"), "x_y");
        assert_eq!(extension("video/MP4", Kind::Recording), "mp4");
        assert_eq!(extension("text/vtt", Kind::RecordingTranscript), "vtt");
        assert_eq!(
            extension("application/json", Kind::MessagingTranscript),
            "json"
        );
        assert_eq!(extension("audio/wav", Kind::Voicemail), "wav");
        assert_eq!(
            extension("application/octet-stream", Kind::VoicemailTranscript),
            "txt"
        );
        assert_eq!(
            extension("application/octet-stream", Kind::Recording),
            "bin"
        );
    }
}
