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
    fields.insert("Description".into(), json!(description(aggregate, linked)));
    fields
}

/// Header lines, the notes (latest text each, oldest first; the newest kept
/// when cut) and the links of files not attached.
pub fn description(aggregate: &Interaction, linked: &[(String, String)]) -> String {
    let mut header = vec![format!(
        "Zoom Contact Center engagement {}",
        aggregate.engagement_id()
    )];
    let mut line = |label: &str, value: Option<String>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            header.push(format!("{label}: {value}"));
        }
    };
    line(
        "Channel",
        aggregate
            .channel()
            .map(|c| match aggregate.channel_source() {
                Some(source) => format!("{c} ({source})"),
                None => c.to_owned(),
            }),
    );
    line("Direction", aggregate.direction().map(str::to_owned));
    line("Queue", aggregate.queue().and_then(|q| q.name.clone()));
    line("Flow", aggregate.flow().and_then(|f| f.name.clone()));
    let consumer = aggregate.consumer();
    line(
        "Customer",
        match (consumer.name, consumer.number) {
            (Some(name), Some(number)) => Some(format!("{name} ({number})")),
            (name, number) => name.or(number),
        },
    );
    let agents: Vec<String> = aggregate
        .agents()
        .into_iter()
        .filter_map(|a| a.name.or(a.id))
        .collect();
    line("Agents", Some(agents.join(", ")));
    line("Start", aggregate.start_ms().and_then(render::rfc3339));
    line("End", aggregate.end_ms().and_then(render::rfc3339));
    line("Disposition", aggregate.disposition().and_then(|d| d.name));
    let names = aggregate.disposition_names();
    if names.len() > 1 {
        line("Dispositions given", Some(names.join(", ")));
    }
    let notes: Vec<String> = aggregate
        .notes()
        .iter()
        .map(|note| {
            let when = render::rfc3339(note.modified_ms).unwrap_or_default();
            format!("\nNote ({when}):\n{}", note.text)
        })
        .collect();
    let footer: Vec<String> = if linked.is_empty() {
        Vec::new()
    } else {
        std::iter::once("\nFiles:".to_owned())
            .chain(linked.iter().map(|(name, link)| format!("{name}: {link}")))
            .collect()
    };
    fit(&header, &notes, &footer, DESCRIPTION_LIMIT)
}
