//! The phonecall and its annotations rendered from an engagement's
//! aggregate (README "Dynamics 365" has the mapping table), and the
//! alternate-key value that finds it. Pure.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::crm::render::{self, fit};
use crate::interaction::Interaction;

/// `description`'s length limit.
pub const DESCRIPTION_LIMIT: usize = 2_000;
/// `subject`'s length limit.
const SUBJECT_LIMIT: usize = 200;
/// `phonenumber`'s length limit.
const PHONE_LIMIT: usize = 200;
/// An annotation's `notetext` limit.
pub const NOTE_LIMIT: usize = 100_000;
/// The longest engagement id used as the key value itself (the key column
/// is a 100-character text column; the index has room for it).
const KEY_LIMIT: usize = 100;

/// `statecode` Completed, and the `statuscode`s of a completed phonecall.
const COMPLETED: i64 = 1;
const MADE: i64 = 2;
const RECEIVED: i64 = 4;

/// The alternate-key value of an engagement: the id itself when alternate
/// keys accept it (none of `/ < > * % & : \ ? +`, no control characters, at
/// most 100 characters), else the hex SHA-256 of the id.
pub fn key(engagement_id: &str) -> String {
    let safe = !engagement_id.is_empty()
        && engagement_id.len() <= KEY_LIMIT
        && !engagement_id
            .chars()
            .any(|c| "/<>*%&:\\?+".contains(c) || c.is_control());
    if safe {
        engagement_id.to_owned()
    } else {
        hex::encode(Sha256::digest(engagement_id.as_bytes()))
    }
}

/// `phonecalls({column}='{key}')`: the key as an OData string literal
/// (quotes doubled), percent-encoded for a URL path.
pub fn segment(column: &str, key: &str) -> String {
    let literal = key.replace('\'', "''");
    let encoded: String = literal
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'\'' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    format!("phonecalls({column}='{encoded}')")
}

/// The annotation subject that finds a note again: its natural key.
pub fn note_subject(note_id: &str) -> String {
    format!("Zoom note {note_id}")
}

/// The annotation subject of an attached file.
pub fn file_subject(kind: &str, name: &str) -> String {
    format!("Zoom {} {name}", kind.replace('_', " "))
}

fn short(text: &str, limit: usize) -> String {
    if render::text_len(text) <= limit {
        return text.to_owned();
    }
    let mut out = String::new();
    for c in text.chars() {
        if render::text_len(&out) + c.len_utf16() > limit - 1 {
            break;
        }
        out.push(c);
    }
    out.push('…');
    out
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `Zoom inbound voice — Billing — Resolved`: the current disposition ends it.
pub fn subject(aggregate: &Interaction) -> String {
    let channel = aggregate.channel().unwrap_or("engagement");
    let mut subject = format!(
        "Zoom {}{}",
        aggregate
            .direction()
            .map(|d| format!("{d} "))
            .unwrap_or_default(),
        channel
    );
    if let Some(queue) = aggregate.queue().and_then(|q| q.name.as_deref()) {
        subject.push_str(&format!(" — {queue}"));
    }
    let subject = capitalised(&subject);
    match aggregate.disposition().and_then(|d| d.name) {
        // The disposition is what a user scans for: the rest is shortened.
        Some(name) => {
            let tail = format!(" — {}", short(&name, 80));
            let room = SUBJECT_LIMIT - render::text_len(&tail);
            format!("{}{tail}", short(&subject, room))
        }
        None => short(&subject, SUBJECT_LIMIT),
    }
}

/// Every phonecall column the sink writes, completed. `contact` is the
/// matched contact's id; `linked` are files listed by link.
pub fn fields(
    aggregate: &Interaction,
    contact: Option<&str>,
    linked: &[(String, String)],
) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("subject".into(), json!(subject(aggregate)));
    fields.insert("description".into(), json!(description(aggregate, linked)));
    if let Some(number) = aggregate.consumer().number {
        fields.insert("phonenumber".into(), json!(short(&number, PHONE_LIMIT)));
    }
    let outgoing = aggregate.direction() == Some("outbound");
    if aggregate.direction().is_some() {
        fields.insert("directioncode".into(), json!(outgoing));
    }
    if let Some(seconds) = aggregate.duration_seconds() {
        fields.insert("actualdurationminutes".into(), json!(seconds.div_ceil(60)));
    }
    if let Some(start) = aggregate.start_ms().and_then(render::rfc3339) {
        fields.insert("actualstart".into(), json!(start));
    }
    if let Some(end) = aggregate.end_ms().and_then(render::rfc3339) {
        fields.insert("actualend".into(), json!(end));
    }
    if let Some(contact) = contact {
        let bind = format!("/contacts({contact})");
        fields.insert("regardingobjectid_contact@odata.bind".into(), json!(bind));
        // The customer is the caller of an inbound call and the called of an
        // outbound one (participationtypemask 1 = From, 2 = To).
        fields.insert(
            "phonecall_activity_parties".into(),
            json!([{
                "partyid_contact@odata.bind": bind,
                "participationtypemask": if outgoing { 2 } else { 1 },
            }]),
        );
    }
    fields.insert("statecode".into(), json!(COMPLETED));
    fields.insert(
        "statuscode".into(),
        json!(if outgoing { MADE } else { RECEIVED }),
    );
    fields
}

/// Header lines, every disposition name, the notes (latest text each,
/// oldest first; the newest kept when cut) and the links of files not
/// attached, within 2,000 characters.
pub fn description(aggregate: &Interaction, linked: &[(String, String)]) -> String {
    let header = render::header(
        aggregate,
        render::HeaderLines {
            direction: true,
            times: false,
            disposition: true,
        },
    );
    let notes: Vec<String> = aggregate
        .notes()
        .iter()
        .map(|note| format!("Note: {}", note.text))
        .collect();
    let mut footer = Vec::new();
    if !linked.is_empty() {
        footer.push("Files:".to_owned());
        footer.extend(linked.iter().map(|(name, link)| format!("{name}: {link}")));
    }
    fit(&header, &notes, &footer, DESCRIPTION_LIMIT)
}

/// A note's annotation text, within the column's limit.
pub fn note_text(text: &str) -> String {
    render::cut(text, NOTE_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Party, View};

    fn aggregate(direction: &str) -> Interaction {
        let view = |note: Option<(&str, &str, &str)>, disposition: Option<&str>| View {
            kind: "engagement_note_added".into(),
            engagement_id: Some("eng-1".into()),
            direction: Some(direction.into()),
            channel: Some("voice".into()),
            queue: Some(Party {
                id: Some("q1".into()),
                name: Some("Billing".into()),
            }),
            start_time: Some("2026-12-01T10:00:00Z".into()),
            end_time: Some("2026-12-01T10:05:01Z".into()),
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
            &view(Some(("n1", "first text", "2026-12-01T10:06:00Z")), None),
            1,
            1,
            &[],
        )
        .unwrap();
        for other in [
            view(Some(("n1", "edited text", "2026-12-01T10:07:00Z")), None),
            view(None, Some("Resolved")),
        ] {
            a.merge(&Interaction::of(&other, 2, 1, &[]).unwrap());
        }
        a
    }

    #[test]
    fn keys_avoid_what_alternate_keys_forbid() {
        assert_eq!(key("eng-1_A.b"), "eng-1_A.b");
        for bad in [
            "a:b", "a/b", "a+b", "a%b", "a&b", "a?b", "a\\b", "<a>", "a*", "",
        ] {
            let k = key(bad);
            assert_eq!(k.len(), 64, "{bad:?}");
            assert!(k.chars().all(|c| c.is_ascii_hexdigit()));
        }
        assert_ne!(key("a:b"), key("a:c"));
        assert_eq!(key(&"x".repeat(101)).len(), 64);
        assert_eq!(
            segment("zcc_engagementid", "it's #1"),
            "phonecalls(zcc_engagementid='it''s%20%231')"
        );
    }

    #[test]
    fn renders_a_completed_phonecall() {
        let a = aggregate("inbound");
        let linked = [("big.mp3".to_owned(), "https://store/big.mp3".to_owned())];
        let fields = fields(&a, Some("00000000-0000-0000-0000-00000000000c"), &linked);
        assert_eq!(fields["subject"], "Zoom inbound voice — Billing — Resolved");
        assert_eq!(fields["directioncode"], false);
        assert_eq!(fields["actualdurationminutes"], 6);
        assert_eq!(fields["actualstart"], "2026-12-01T10:00:00Z");
        assert_eq!(fields["statecode"], 1);
        assert_eq!(fields["statuscode"], 4);
        assert_eq!(
            fields["regardingobjectid_contact@odata.bind"],
            "/contacts(00000000-0000-0000-0000-00000000000c)"
        );
        assert_eq!(
            fields["phonecall_activity_parties"][0]["participationtypemask"],
            1
        );
        let description = fields["description"].as_str().unwrap();
        assert!(description.contains("edited text") && !description.contains("first text"));
        assert!(description.contains("big.mp3: https://store/big.mp3"));
        let outbound = super::fields(&aggregate("outbound"), None, &[]);
        assert_eq!(outbound["directioncode"], true);
        assert_eq!(outbound["statuscode"], 2);
        assert!(!outbound.contains_key("phonecall_activity_parties"));
    }

    #[test]
    fn a_long_subject_keeps_its_disposition() {
        let mut view = View {
            kind: "engagement_disposition_added".into(),
            engagement_id: Some("eng-2".into()),
            channel: Some("voice".into()),
            queue: Some(Party {
                id: None,
                name: Some("Q".repeat(400)),
            }),
            disposition: Some(Party {
                id: Some("d".into()),
                name: Some("Resolved".into()),
            }),
            ..View::default()
        };
        view.direction = Some("inbound".into());
        let a = Interaction::of(&view, 1, 1, &[]).unwrap();
        let subject = subject(&a);
        assert!(render::text_len(&subject) <= SUBJECT_LIMIT);
        assert!(subject.ends_with(" — Resolved"), "{subject}");
    }
}
