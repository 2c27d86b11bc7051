//! The record's fields and the work-notes entries rendered from an
//! engagement's aggregate (README "ServiceNow" has the mapping table), and
//! how an entry is recognised again. Pure.

use serde_json::{Map, Value, json};

use crate::crm::render::{self, fit};
use crate::interaction::{Interaction, Note};

/// `short_description`'s length (the field's default maximum).
const SHORT_LIMIT: usize = 160;
/// The summary field's length limit (a String field's usual maximum).
pub const SUMMARY_LIMIT: usize = 4000;

/// ServiceNow's `glide_date_time` value (UTC): `2026-12-01 10:00:00`.
pub fn glide_time(ms: i64) -> Option<String> {
    let text = render::rfc3339(ms)?;
    Some(text.get(..19)?.replace('T', " "))
}

/// The interaction `type` of a Zoom channel.
fn kind_of(channel: Option<&str>) -> &'static str {
    match channel.map(str::to_ascii_lowercase).as_deref() {
        Some("voice") | Some("video") | None => "phone",
        Some("email") => "email",
        Some(_) => "chat",
    }
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

/// The record's fields: the key, `short_description` (channel, direction,
/// queue, current disposition), `type`, `direction`, `opened_at` and
/// `closed_at`, `state` closed once the engagement has ended, the contact
/// when one matched, the summary when a field is configured.
pub fn fields(
    aggregate: &Interaction,
    correlation_field: &str,
    contact_field: &str,
    contact: Option<&str>,
    summary_field: Option<&str>,
    linked: &[(String, String)],
) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert(
        correlation_field.to_owned(),
        json!(aggregate.engagement_id()),
    );
    let channel = aggregate.channel().unwrap_or("engagement");
    let mut title = format!(
        "Zoom {}{channel}",
        aggregate
            .direction()
            .map(|d| format!("{d} "))
            .unwrap_or_default()
    );
    if let Some(queue) = aggregate.queue().and_then(|q| q.name.as_deref()) {
        title.push_str(&format!(" — {queue}"));
    }
    if let Some(disposition) = aggregate.disposition().and_then(|d| d.name) {
        title.push_str(&format!(" — {disposition}"));
    }
    fields.insert(
        "short_description".into(),
        json!(short(&title, SHORT_LIMIT)),
    );
    fields.insert("type".into(), json!(kind_of(aggregate.channel())));
    if let Some(direction) = aggregate.direction() {
        fields.insert("direction".into(), json!(direction));
    }
    if let Some(at) = aggregate
        .start_ms()
        .or(aggregate.earliest_ms())
        .and_then(glide_time)
    {
        fields.insert("opened_at".into(), json!(at));
    }
    if let Some(at) = aggregate.end_ms().and_then(glide_time) {
        fields.insert("closed_at".into(), json!(at));
        fields.insert("state".into(), json!("closed_complete"));
    }
    if let Some(contact) = contact {
        fields.insert(contact_field.to_owned(), json!(contact));
    }
    if let Some(field) = summary_field {
        fields.insert(field.to_owned(), json!(summary(aggregate, linked)));
    }
    fields
}

/// Header lines, the note count and the files shown by link, within
/// [`SUMMARY_LIMIT`]. The notes themselves are work-notes entries.
pub fn summary(aggregate: &Interaction, linked: &[(String, String)]) -> String {
    let header = render::header(
        aggregate,
        render::HeaderLines {
            direction: true,
            times: true,
            disposition: true,
        },
    );
    let mut footer = Vec::new();
    let notes = aggregate.notes().len();
    if notes > 0 {
        footer.push(format!("Notes: {notes} (in the work notes)"));
    }
    if !linked.is_empty() {
        footer.push("Files:".to_owned());
        footer.extend(linked.iter().map(|(name, link)| format!("{name}: {link}")));
    }
    fit(&header, &[], &footer, SUMMARY_LIMIT)
}

/// The first line of a note's entry, by which it is found again.
pub fn note_marker(note_id: &str) -> String {
    format!("[Zoom note {note_id}]")
}

/// A note's work-notes entry: its marker and time, then its latest text.
pub fn note_entry(note: &Note<'_>) -> String {
    let when = render::rfc3339(note.modified_ms).unwrap_or_default();
    format!("{} {when}\n{}", note_marker(note.note_id), note.text)
}

/// The key a file shown by link has among the notes (entries of its own).
pub fn link_key(location: &str) -> String {
    format!("file:{location}")
}

/// The first line of a linked file's entry.
pub fn link_marker(name: &str) -> String {
    format!("[Zoom file {name}]")
}

/// A file too large to attach (or not readable back): its entry with the link.
pub fn link_entry(name: &str, link: &str) -> String {
    format!("{}\n{link}", link_marker(name))
}

/// Whether `value` (an entry as read back) is the entry that starts with
/// `marker`: the marker then a space or a line end.
pub fn is_entry_of(value: &str, marker: &str) -> bool {
    value
        .strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\n', '\r']))
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
            view(None, Some("Resolved")),
        ] {
            a.merge(&Interaction::of(&other, 2, 1, &[]).unwrap());
        }
        a
    }

    #[test]
    fn renders_the_record() {
        let a = aggregate();
        let links = [("big.mp4".to_owned(), "s3://b/big.mp4".to_owned())];
        let f = fields(
            &a,
            "u_zoom_engagement_id",
            "contact",
            Some("C1"),
            Some("u_zoom_summary"),
            &links,
        );
        assert_eq!(f["u_zoom_engagement_id"], "eng-1");
        assert_eq!(f["short_description"], "Zoom inbound voice — Resolved");
        assert_eq!(f["type"], "phone");
        assert_eq!(f["direction"], "inbound");
        assert_eq!(f["opened_at"], "2026-12-01 10:00:00");
        assert_eq!(f["closed_at"], "2026-12-01 10:05:00");
        assert_eq!(f["state"], "closed_complete");
        assert_eq!(f["contact"], "C1");
        let summary = f["u_zoom_summary"].as_str().unwrap();
        assert!(
            summary.contains("Customer: Ada (+14155551212)"),
            "{summary}"
        );
        assert!(summary.contains("big.mp4: s3://b/big.mp4"), "{summary}");
        let bare = fields(&a, "k", "contact", None, None, &[]);
        assert!(!bare.contains_key("contact") && !bare.contains_key("u_zoom_summary"));
    }

    #[test]
    fn entries_carry_their_marker_and_latest_text() {
        let a = aggregate();
        let notes = a.notes();
        let entry = note_entry(&notes[0]);
        assert!(
            entry.starts_with("[Zoom note n1] 2026-12-01T10:07:00Z\nedited"),
            "{entry}"
        );
        assert!(is_entry_of(&entry, &note_marker("n1")));
        assert!(!is_entry_of(&entry, &note_marker("n")));
        assert!(is_entry_of(
            &link_entry("a.mp3", "x"),
            &link_marker("a.mp3")
        ));
        assert_eq!(glide_time(0).as_deref(), Some("1970-01-01 00:00:00"));
    }
}
