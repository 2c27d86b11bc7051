//! The Task's fields rendered from an engagement's aggregate (README
//! "Salesforce" has the mapping table). Pure.

use serde_json::{Map, Value, json};

use crate::crm::customer::Customer;
use crate::crm::render::{self, fit};
use crate::interaction::Interaction;

/// `Description`'s length limit.
pub const DESCRIPTION_LIMIT: usize = 32_000;
/// Limit of `Subject`, `CallObject`, `CallDisposition`.
const SHORT_LIMIT: usize = 255;

fn is_call(aggregate: &Interaction) -> bool {
    matches!(aggregate.channel(), Some("voice" | "video"))
}

/// Fields Salesforce accepts only when creating: `TaskSubtype`.
pub fn create_only(aggregate: &Interaction) -> Map<String, Value> {
    let mut fields = Map::new();
    let subtype = if is_call(aggregate) { "Call" } else { "Task" };
    fields.insert("TaskSubtype".into(), json!(subtype));
    fields
}

fn short(text: &str) -> String {
    if render::text_len(text) <= SHORT_LIMIT {
        return text.to_owned();
    }
    let mut out = String::new();
    for c in text.chars() {
        if render::text_len(&out) + c.len_utf16() > SHORT_LIMIT - 1 {
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

/// Every field but the create-only ones; `linked` are files listed by link.
pub fn fields(
    aggregate: &Interaction,
    who: Option<&Customer>,
    transcripts: &[(String, String)],
    linked: &[(String, String)],
) -> Map<String, Value> {
    let mut fields = Map::new();
    let channel = aggregate.channel().unwrap_or("engagement");
    let direction = aggregate.direction();
    let mut subject = format!(
        "Zoom {}{}",
        direction.map(|d| format!("{d} ")).unwrap_or_default(),
        channel
    );
    if let Some(queue) = aggregate.queue().and_then(|q| q.name.as_deref()) {
        subject.push_str(&format!(" — {queue}"));
    }
    fields.insert("Subject".into(), json!(short(&capitalised(&subject))));
    fields.insert("Status".into(), json!("Completed"));
    fields.insert("CallObject".into(), json!(short(aggregate.engagement_id())));
    match direction {
        Some("inbound") => {
            fields.insert("CallType".into(), json!("Inbound"));
        }
        Some("outbound") => {
            fields.insert("CallType".into(), json!("Outbound"));
        }
        _ => {}
    }
    if let Some(name) = aggregate.disposition().and_then(|d| d.name) {
        fields.insert("CallDisposition".into(), json!(short(&name)));
    }
    if let Some(seconds) = aggregate.duration_seconds() {
        fields.insert("CallDurationInSeconds".into(), json!(seconds));
    }
    if let Some(date) = aggregate
        .start_ms()
        .or(aggregate.end_ms())
        .and_then(render::date)
    {
        fields.insert("ActivityDate".into(), json!(date));
    }
    if let Some(customer) = who {
        fields.insert("WhoId".into(), json!(customer.id()));
    }
    fields.insert(
        "Description".into(),
        json!(description(aggregate, transcripts, linked)),
    );
    fields
}

/// Header lines, the notes (latest text each, oldest first; the newest kept
/// when cut), short transcripts' text and the links of files not attached.
pub fn description(
    aggregate: &Interaction,
    transcripts: &[(String, String)],
    linked: &[(String, String)],
) -> String {
    let header = render::header(
        aggregate,
        render::HeaderLines {
            direction: true,
            times: true,
            disposition: true,
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
    fit(&header, &notes, &footer, DESCRIPTION_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Party, View};

    fn aggregate(channel: &str) -> Interaction {
        let view = |note: Option<(&str, &str, &str)>, disposition: Option<&str>| View {
            kind: "engagement_note_added".into(),
            engagement_id: Some("eng-1".into()),
            direction: Some("inbound".into()),
            channel: Some(channel.into()),
            queue: Some(Party {
                id: Some("q1".into()),
                name: Some("Billing".into()),
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
    fn renders_a_call() {
        let a = aggregate("voice");
        let who = Customer::Contact("003000000000001AAA".into());
        let transcripts = [("t.vtt".to_owned(), "WEBVTT\nhello".to_owned())];
        let linked = [("big.mp3".to_owned(), "https://store/big.mp3".to_owned())];
        let fields = fields(&a, Some(&who), &transcripts, &linked);
        assert_eq!(fields["Subject"], "Zoom inbound voice — Billing");
        assert_eq!(fields["CallType"], "Inbound");
        assert_eq!(fields["Status"], "Completed");
        assert_eq!(fields["CallDisposition"], "Resolved");
        assert_eq!(fields["CallDurationInSeconds"], 300);
        assert_eq!(fields["ActivityDate"], "2026-12-01");
        assert_eq!(fields["CallObject"], "eng-1");
        assert_eq!(fields["WhoId"], "003000000000001AAA");
        assert!(!fields.contains_key("TaskSubtype"));
        let description = fields["Description"].as_str().unwrap();
        assert!(description.contains("edited text"));
        assert!(!description.contains("first text"));
        assert!(description.contains("WEBVTT\nhello"));
        assert!(description.contains("big.mp3: https://store/big.mp3"));
        assert_eq!(create_only(&a)["TaskSubtype"], "Call");
        assert_eq!(create_only(&aggregate("messaging"))["TaskSubtype"], "Task");
    }
}
