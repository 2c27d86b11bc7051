//! What the sink writes into Zendesk, rendered from an engagement's
//! aggregate (README "Zendesk" has the mapping table): the ticket's fields,
//! the description (the create's first, private comment), a note's private
//! comment, a file's private comment and the call's voice comment, with the
//! markers that find a comment again after a crash. Pure.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::crm::render::{self, cut, fit};
use crate::interaction::{Interaction, Note};

/// Subject's limit (Zendesk keeps 150 characters in views).
const SUBJECT_LIMIT: usize = 150;
/// A comment's body: Zendesk accepts 65,535 characters.
pub const COMMENT_LIMIT: usize = 65_000;
/// A voice comment's transcription text.
const TRANSCRIPTION_LIMIT: usize = 30_000;
/// `Idempotency-Key` is at most 255 characters.
const KEY_LIMIT: usize = 255;

/// The ticket's `external_id`: `zcc:{engagement_id}`.
pub fn external_id(engagement_id: &str) -> String {
    format!("zcc:{engagement_id}")
}

/// The create's `Idempotency-Key`: the external id, or its hash when longer
/// than Zendesk takes.
pub fn idempotency_key(engagement_id: &str) -> String {
    let key = external_id(engagement_id);
    if key.len() <= KEY_LIMIT {
        key
    } else {
        format!("zcc:sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
    }
}

/// A disposition's tag: `zcc_disposition_` and its name in lower case, every
/// run of other characters one `_`.
pub fn disposition_tag(name: &str) -> String {
    let mut tag = String::from("zcc_disposition_");
    let mut gap = false;
    for c in name.trim().chars() {
        if c.is_alphanumeric() {
            if gap && !tag.ends_with('_') {
                tag.push('_');
            }
            tag.extend(c.to_lowercase());
            gap = false;
        } else {
            gap = true;
        }
    }
    tag
}

fn subject(aggregate: &Interaction) -> String {
    let channel = aggregate.channel().unwrap_or("engagement");
    let mut subject = format!(
        "Zoom {}{channel}",
        aggregate
            .direction()
            .map(|d| format!("{d} "))
            .unwrap_or_default()
    );
    if let Some(queue) = aggregate.queue().and_then(|q| q.name.as_deref()) {
        subject.push_str(&format!(" — {queue}"));
    }
    if let Some(name) = aggregate.consumer().name.or(aggregate.consumer().number) {
        subject.push_str(&format!(" — {name}"));
    }
    if render::text_len(&subject) > SUBJECT_LIMIT {
        subject = subject.chars().take(SUBJECT_LIMIT - 1).collect();
        subject.push('…');
    }
    subject
}

/// The fields every write sets: subject, requester, the disposition's tag
/// (and field). `creating`: the create's whole tag list; otherwise tags
/// are added and removed, so an agent's own tags stay.
pub fn fields(
    aggregate: &Interaction,
    requester: Option<u64>,
    disposition_field: Option<u64>,
    creating: bool,
) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("subject".into(), json!(subject(aggregate)));
    if let Some(requester) = requester {
        fields.insert("requester_id".into(), json!(requester));
    }
    let current = aggregate.disposition().and_then(|d| d.name);
    let mut add = vec!["zcc".to_owned()];
    add.extend(current.as_deref().map(disposition_tag));
    if creating {
        fields.insert("tags".into(), json!(add));
    } else {
        let remove: Vec<String> = aggregate
            .disposition_names()
            .iter()
            .map(|n| disposition_tag(n))
            .filter(|t| !add.contains(t))
            .collect();
        fields.insert("additional_tags".into(), json!(add));
        if !remove.is_empty() {
            fields.insert("remove_tags".into(), json!(remove));
        }
    }
    if let Some(field) = disposition_field {
        fields.insert(
            "custom_fields".into(),
            json!([{ "id": field, "value": current }]),
        );
    }
    fields
}

/// The description: the header lines, as the ticket's first comment.
pub fn description(aggregate: &Interaction) -> String {
    let header = render::header(
        aggregate,
        render::HeaderLines {
            direction: true,
            times: true,
            disposition: true,
        },
    );
    fit(&header, &[], &[], COMMENT_LIMIT)
}

/// The version of a note's text: the first 12 hex digits of its SHA-256.
pub fn note_version(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..6])
}

/// The marker line of a note version's comment.
pub fn note_marker(note_id: &str, version: &str) -> String {
    format!("[zcc note {note_id} {version}]")
}

/// The marker prefix of every comment of a note, whatever its version.
pub fn note_marker_prefix(note_id: &str) -> String {
    format!("[zcc note {note_id} ")
}

/// The body of a note's comment: what the note says, then its marker.
pub fn note_body(note: &Note<'_>) -> String {
    let when = render::rfc3339(note.modified_ms).unwrap_or_default();
    let marker = note_marker(note.note_id, &note_version(note.text));
    let head = format!("Note ({when}):");
    let room =
        COMMENT_LIMIT.saturating_sub(render::text_len(&head) + render::text_len(&marker) + 2);
    format!("{head}\n{}\n{marker}", cut(note.text, room))
}

/// The text of a note comment as written (between the first line and the
/// marker), for redacting a superseded version.
pub fn note_text_of(body: &str) -> Option<&str> {
    let (_, rest) = body.split_once('\n')?;
    let (text, marker) = rest.rsplit_once('\n')?;
    marker.starts_with("[zcc note ").then_some(text)
}

/// The marker line of a file's comment.
pub fn file_marker(name: &str) -> String {
    format!("[zcc file {name}]")
}

/// A file's comment: attached (`link` `None`) or shown by its link.
pub fn file_body(kind: &str, name: &str, link: Option<&str>) -> String {
    match link {
        None => format!("Zoom {kind}: {name}\n{}", file_marker(name)),
        Some(link) => format!(
            "Zoom {kind}: {name} (not attached: larger than Zendesk takes, or attach_files = false)\n{link}\n{}",
            file_marker(name)
        ),
    }
}

/// The call's voice comment (the Tickets API's `voice_comment`): the
/// customer's number and the queue's side, start, duration, the
/// transcript's text when there is one, the recording's URL.
pub fn voice_comment(
    aggregate: &Interaction,
    recording_url: &str,
    transcript: Option<&str>,
) -> Value {
    let customer = aggregate
        .consumer()
        .number
        .unwrap_or_else(|| "unknown".to_owned());
    let ours = aggregate
        .queue()
        .and_then(|q| q.name.clone())
        .unwrap_or_else(|| "Zoom Contact Center".to_owned());
    let (from, to) = if aggregate.direction() == Some("outbound") {
        (ours, customer)
    } else {
        (customer, ours)
    };
    let started = aggregate
        .start_ms()
        .or(aggregate.earliest_ms())
        .and_then(render::rfc3339);
    let mut voice = json!({
        "from": from,
        "to": to,
        "recording_url": recording_url,
        "started_at": started,
        "call_duration": aggregate.duration_seconds().unwrap_or(0),
    });
    if let Some(text) = transcript {
        voice["transcription_text"] = json!(cut(text.trim_end(), TRANSCRIPTION_LIMIT));
    }
    if let Some(agent) = aggregate.agents().into_iter().find_map(|a| a.name) {
        voice["location"] = json!(format!("Answered by {agent} (Zoom Contact Center)"));
    }
    voice
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Party, View};

    fn aggregate() -> Interaction {
        let view = |note: Option<(&str, &str, &str)>, disposition: Option<&str>| View {
            kind: "engagement_note_added".into(),
            engagement_id: Some("eng-1".into()),
            direction: Some("inbound".into()),
            channel: Some("voice".into()),
            consumer: Some(crate::record::Consumer {
                number: Some("+14155551212".into()),
                name: Some("Ada".into()),
            }),
            start_time: Some("2026-12-01T10:00:00Z".into()),
            end_time: Some("2026-12-01T10:05:00Z".into()),
            note_id: note.map(|n| n.0.into()),
            note: note.map(|n| n.1.into()),
            last_modified: note.map(|n| n.2.into()),
            disposition: disposition.map(|d| Party {
                id: Some(d.into()),
                name: Some(d.into()),
            }),
            ..View::default()
        };
        let mut a = Interaction::of(
            &view(Some(("n1", "first", "2026-12-01T10:06:00Z")), None),
            1,
            1,
            &[],
        )
        .unwrap();
        for other in [
            view(Some(("n1", "edited", "2026-12-01T10:07:00Z")), None),
            view(None, Some("Call back")),
            view(None, Some("Resolved!")),
        ] {
            a.merge(&Interaction::of(&other, 2, 1, &[]).unwrap());
        }
        a
    }

    #[test]
    fn keys_tags_and_markers() {
        assert_eq!(external_id("e-1"), "zcc:e-1");
        assert_eq!(idempotency_key("e-1"), "zcc:e-1");
        let long = "x".repeat(300);
        assert_eq!(idempotency_key(&long).len(), "zcc:sha256:".len() + 64);
        assert_eq!(disposition_tag("Call back "), "zcc_disposition_call_back");
        assert_eq!(disposition_tag("Résolu -- OK"), "zcc_disposition_résolu_ok");
        let note = Note {
            note_id: "n1",
            text: "line one\nline two",
            modified_ms: 0,
            revision: 1,
        };
        let body = note_body(&note);
        assert_eq!(note_text_of(&body), Some("line one\nline two"));
        assert!(body.ends_with(&note_marker("n1", &note_version(note.text))));
        assert!(body.contains(&note_marker_prefix("n1")));
        assert_eq!(note_text_of("Zoom recording: a\n[zcc file a]"), None);
    }

    #[test]
    fn renders_fields_and_the_voice_comment() {
        let a = aggregate();
        let created = fields(&a, Some(7), Some(99), true);
        assert_eq!(created["requester_id"], 7);
        assert_eq!(created["tags"], json!(["zcc", "zcc_disposition_resolved"]));
        assert_eq!(
            created["custom_fields"],
            json!([{"id": 99, "value": "Resolved!"}])
        );
        assert!(
            created["subject"]
                .as_str()
                .unwrap()
                .contains("inbound voice")
        );
        let updated = fields(&a, None, None, false);
        assert_eq!(
            updated["additional_tags"],
            json!(["zcc", "zcc_disposition_resolved"])
        );
        assert_eq!(updated["remove_tags"], json!(["zcc_disposition_call_back"]));
        assert!(updated.get("requester_id").is_none());
        let voice = voice_comment(&a, "https://x/rec.mp3", Some("hello\n"));
        assert_eq!(voice["from"], "+14155551212");
        assert_eq!(voice["call_duration"], 300);
        assert_eq!(voice["started_at"], "2026-12-01T10:00:00Z");
        assert_eq!(voice["transcription_text"], "hello");
        assert!(description(&a).contains("Disposition: Resolved!"));
    }
}
