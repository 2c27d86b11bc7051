//! Rendering helpers every CRM shares: the text cut rule of DESIGN.md §3.5
//! ("keeps the header lines and the newest notes; what is cut is replaced by
//! one line saying how much was left out") and time formatting. Pure.

/// Length as CRMs count it: UTF-16 code units (Salesforce's platform
/// strings), the stricter reading of "characters".
pub fn text_len(text: &str) -> usize {
    text.encode_utf16().count()
}

/// `header` lines, then as many of `notes` (oldest first) as fit, newest
/// kept, then `footer` lines; when notes are left out, one line says how many
/// and how long. A text still too long (huge header or one huge note) is cut
/// at `limit` with the same kind of line.
pub fn fit(header: &[String], notes: &[String], footer: &[String], limit: usize) -> String {
    let join = |parts: &[&str]| parts.join("\n");
    let head: Vec<&str> = header.iter().map(String::as_str).collect();
    let foot: Vec<&str> = footer.iter().map(String::as_str).collect();
    let all: Vec<&str> = head
        .iter()
        .chain(notes.iter().map(String::as_str).collect::<Vec<_>>().iter())
        .chain(foot.iter())
        .copied()
        .collect();
    let whole = join(&all);
    if text_len(&whole) <= limit {
        return whole;
    }
    // Drop the oldest notes until it fits, with the marker in their place;
    // the newest note is cut rather than dropped.
    for dropped in 1..notes.len() {
        let left_out: usize = notes[..dropped].iter().map(|n| text_len(n)).sum();
        let marker = format!("[{dropped} earlier note(s), {left_out} characters, left out]");
        let mut parts = head.clone();
        parts.push(&marker);
        parts.extend(notes[dropped..].iter().map(String::as_str));
        parts.extend(foot.iter().copied());
        let text = join(&parts);
        if text_len(&text) <= limit {
            return text;
        }
    }
    cut(&whole, limit)
}

/// The first characters of `text` within `limit`, ending with a line saying
/// how much was cut.
pub fn cut(text: &str, limit: usize) -> String {
    let total = text_len(text);
    if total <= limit {
        return text.to_owned();
    }
    let marker_room = 64;
    let keep_units = limit.saturating_sub(marker_room);
    let mut kept = String::new();
    let mut units = 0;
    for c in text.chars() {
        if units + c.len_utf16() > keep_units {
            break;
        }
        units += c.len_utf16();
        kept.push(c);
    }
    format!("{kept}\n[{} characters left out]", total - units)
}

/// Milliseconds since the epoch as an RFC 3339 instant (UTC), or `None`.
pub fn rfc3339(ms: i64) -> Option<String> {
    jiff::Timestamp::from_millisecond(ms)
        .ok()
        .map(|t| t.to_string())
}

/// Milliseconds since the epoch as a UTC date (`2026-12-07`).
pub fn date(ms: i64) -> Option<String> {
    jiff::Timestamp::from_millisecond(ms)
        .ok()
        .and_then(|t| t.to_string().get(..10).map(str::to_owned))
}

/// Which of the optional lines an activity's text header carries: a CRM
/// whose record has its own field for one leaves it out of the text.
#[derive(Debug, Clone, Copy)]
pub struct HeaderLines {
    pub direction: bool,
    /// Start and end.
    pub times: bool,
    /// The current disposition's name ("Dispositions given" is always there
    /// when there were several).
    pub disposition: bool,
}

/// The header of an activity's text, every CRM's alike: the engagement, then
/// one `Label: value` line per fact the aggregate has (channel, direction,
/// queue, flow, customer, agents, start, end, disposition), empty ones left
/// out.
pub fn header(aggregate: &crate::interaction::Interaction, lines: HeaderLines) -> Vec<String> {
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
    if lines.direction {
        line("Direction", aggregate.direction().map(str::to_owned));
    }
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
    if lines.times {
        line("Start", aggregate.start_ms().and_then(rfc3339));
        line("End", aggregate.end_ms().and_then(rfc3339));
    }
    if lines.disposition {
        line("Disposition", aggregate.disposition().and_then(|d| d.name));
    }
    let names = aggregate.disposition_names();
    if names.len() > 1 {
        line("Dispositions given", Some(names.join(", ")));
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(prefix: &str, n: usize, len: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("{prefix}{i}:{}", "x".repeat(len)))
            .collect()
    }

    #[test]
    fn fits_untouched() {
        let text = fit(&["H".into()], &lines("n", 2, 3), &["F".into()], 100);
        assert_eq!(text, "H\nn0:xxx\nn1:xxx\nF");
    }

    #[test]
    fn keeps_header_and_newest_notes() {
        let header = vec!["Header line".to_owned()];
        let notes = lines("note", 10, 100);
        let text = fit(&header, &notes, &[], 500);
        assert!(text_len(&text) <= 500, "{}", text_len(&text));
        assert!(text.starts_with("Header line\n["));
        assert!(text.contains("note9:") && text.contains("note8:"));
        assert!(!text.contains("note0:"));
        assert_eq!(text.matches("left out").count(), 1);
    }

    #[test]
    fn cuts_a_single_huge_note_within_the_limit() {
        let text = fit(&[], &["é".repeat(40_000)], &[], 32_000);
        assert!(text_len(&text) <= 32_000);
        assert!(text.ends_with("characters left out]"));
    }

    #[test]
    fn formats_times() {
        assert_eq!(date(1_765_000_000_000).as_deref(), Some("2025-12-06"));
        assert_eq!(rfc3339(0).as_deref(), Some("1970-01-01T00:00:00Z"));
    }
}
