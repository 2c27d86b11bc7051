//! The `call` object's properties rendered from an engagement's aggregate
//! (README "HubSpot" has the mapping table), and the disposition GUID. Pure.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::crm::render::{self, fit};
use crate::interaction::Interaction;

/// `hs_call_body`'s length limit.
pub const BODY_LIMIT: usize = 65_536;
/// `hs_call_title`'s length limit (a single-line text property).
const TITLE_LIMIT: usize = 255;

/// HubSpot's six default call outcomes.
pub const DEFAULT_DISPOSITIONS: &[(&str, &str)] = &[
    ("Busy", "9d9162e7-6cf3-4944-bf63-4dff82258764"),
    ("Connected", "f240bbac-87c9-4f6e-bf70-924b57d47db7"),
    ("Left live message", "a4c4c377-d246-4b32-a13b-75a56a4cd0ff"),
    ("Left voicemail", "b2cf5968-551e-4856-9783-52b3da59a7d0"),
    ("No answer", "73a0d17f-1163-4015-bdd5-ec830791da20"),
    ("Wrong number", "17b47fee-58de-441e-a44c-c6300d46f273"),
];

/// The GUID of disposition `name`: `disposition_map` first, else the
/// portal's disposition (the six defaults included) whose label equals it
/// ignoring case; `None` when neither has it.
pub fn disposition_guid(
    name: &str,
    map: &BTreeMap<String, String>,
    portal: &[(String, String)],
) -> Option<String> {
    if let Some(guid) = map.get(name) {
        return Some(guid.clone());
    }
    portal
        .iter()
        .map(|(id, label)| (id.as_str(), label.as_str()))
        .chain(DEFAULT_DISPOSITIONS.iter().map(|(label, id)| (*id, *label)))
        .find(|(_, label)| label.eq_ignore_ascii_case(name.trim()))
        .map(|(id, _)| id.to_owned())
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

/// Every property the sink writes. `disposition` is the current
/// disposition's GUID when it has one; `attachments` the file ids;
/// `transcripts` short transcripts' (name, text); `linked` files shown by link.
pub fn properties(
    aggregate: &Interaction,
    disposition: Option<&str>,
    attachments: &[String],
    transcripts: &[(String, String)],
    linked: &[(String, String)],
) -> Map<String, Value> {
    let mut properties = Map::new();
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
    properties.insert("hs_call_title".into(), json!(short(&title, TITLE_LIMIT)));
    if let Some(at) = aggregate
        .start_ms()
        .or(aggregate.earliest_ms())
        .and_then(render::rfc3339)
    {
        properties.insert("hs_timestamp".into(), json!(at));
    }
    properties.insert("hs_call_status".into(), json!("COMPLETED"));
    let outbound = aggregate.direction() == Some("outbound");
    if aggregate.direction().is_some() {
        properties.insert(
            "hs_call_direction".into(),
            json!(if outbound { "OUTBOUND" } else { "INBOUND" }),
        );
    }
    if let Some(seconds) = aggregate.duration_seconds() {
        properties.insert("hs_call_duration".into(), json!(seconds * 1000));
    }
    if let Some(number) = aggregate.consumer().number {
        let side = if outbound {
            "hs_call_to_number"
        } else {
            "hs_call_from_number"
        };
        properties.insert(side.into(), json!(short(&number, TITLE_LIMIT)));
    }
    // An empty value clears a disposition that no longer applies.
    properties.insert(
        "hs_call_disposition".into(),
        json!(disposition.unwrap_or("")),
    );
    properties.insert("hs_attachment_ids".into(), json!(attachments.join(";")));
    properties.insert(
        "hs_call_body".into(),
        json!(body(aggregate, disposition.is_some(), transcripts, linked)),
    );
    properties
}

/// Header lines (with the disposition names when the field does not hold
/// the current one), the notes (latest text each, oldest first; the newest
/// kept when cut), short transcripts and links, within 65,536 characters.
pub fn body(
    aggregate: &Interaction,
    disposition_mapped: bool,
    transcripts: &[(String, String)],
    linked: &[(String, String)],
) -> String {
    let header = render::header(
        aggregate,
        render::HeaderLines {
            direction: false,
            times: false,
            disposition: !disposition_mapped,
        },
    );
    let notes: Vec<String> = aggregate
        .notes()
        .iter()
        .map(|note| {
            let when = render::rfc3339(note.modified_ms).unwrap_or_default();
            format!("\nNote ({when}):\n{}", note.text)
        })
        .collect();
    let mut footer: Vec<String> = transcripts
        .iter()
        .map(|(name, text)| format!("\nTranscript {name}:\n{}", text.trim_end()))
        .collect();
    if !linked.is_empty() {
        footer.push("\nFiles:".to_owned());
        footer.extend(linked.iter().map(|(name, link)| format!("{name}: {link}")));
    }
    fit(&header, &notes, &footer, BODY_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Party, View};

    fn aggregate(disposition: &str) -> Interaction {
        let view = |note: Option<(&str, &str, &str)>, disposition: Option<&str>| View {
            kind: "engagement_note_added".into(),
            engagement_id: Some("eng-1".into()),
            direction: Some("outbound".into()),
            channel: Some("voice".into()),
            consumer: Some(crate::record::Consumer {
                number: Some("+14155551212".into()),
                name: None,
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
            view(None, Some(disposition)),
        ] {
            a.merge(&Interaction::of(&other, 2, 1, &[]).unwrap());
        }
        a
    }

    #[test]
    fn dispositions_map_then_portal_then_body() {
        let mut map = BTreeMap::new();
        map.insert(
            "Resolved".to_owned(),
            "11111111-2222-3333-4444-555555555555".to_owned(),
        );
        let portal = vec![(
            "aaaaaaaa-0000-0000-0000-000000000001".to_owned(),
            "Callback".to_owned(),
        )];
        assert_eq!(
            disposition_guid("Resolved", &map, &portal).as_deref(),
            Some("11111111-2222-3333-4444-555555555555")
        );
        assert_eq!(
            disposition_guid("callback", &map, &portal).as_deref(),
            Some("aaaaaaaa-0000-0000-0000-000000000001")
        );
        assert_eq!(
            disposition_guid("no ANSWER", &map, &[]).as_deref(),
            Some("73a0d17f-1163-4015-bdd5-ec830791da20")
        );
        assert_eq!(disposition_guid("Escalated", &map, &portal), None);
    }

    #[test]
    fn renders_a_call() {
        let a = aggregate("Escalated");
        let p = properties(&a, None, &["11".into(), "12".into()], &[], &[]);
        assert_eq!(p["hs_call_direction"], "OUTBOUND");
        assert_eq!(p["hs_call_duration"], 300_000);
        assert_eq!(p["hs_timestamp"], "2026-12-01T10:00:00Z");
        assert_eq!(p["hs_call_to_number"], "+14155551212");
        assert_eq!(p["hs_call_status"], "COMPLETED");
        assert_eq!(p["hs_call_disposition"], "");
        assert_eq!(p["hs_attachment_ids"], "11;12");
        let body = p["hs_call_body"].as_str().unwrap();
        assert!(body.contains("Disposition: Escalated"), "{body}");
        assert!(body.contains("edited") && !body.contains("first"));
        let mapped = properties(
            &a,
            Some("73a0d17f-1163-4015-bdd5-ec830791da20"),
            &[],
            &[],
            &[],
        );
        assert_eq!(
            mapped["hs_call_disposition"],
            "73a0d17f-1163-4015-bdd5-ec830791da20"
        );
        assert!(
            !mapped["hs_call_body"]
                .as_str()
                .unwrap()
                .contains("Disposition: ")
        );
    }
}
