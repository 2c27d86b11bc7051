//! Which events a sink (or the media stage) wants: the `events` globs of docs/contract.md §3.2.
//!
//! Pure. `*` matches any run of characters (dots included), `?` exactly one;
//! everything else matches itself. No patterns means every event.

#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    patterns: Vec<String>,
}

impl EventFilter {
    pub fn new(patterns: Vec<String>) -> EventFilter {
        EventFilter { patterns }
    }

    pub fn all() -> EventFilter {
        EventFilter::default()
    }

    pub fn matches(&self, event: &str) -> bool {
        self.patterns.is_empty()
            || self
                .patterns
                .iter()
                .any(|p| glob_match(p.as_bytes(), event.as_bytes()))
    }
}

/// Iterative glob match with single-star backtracking: linear in practice,
/// never exponential, whatever the pattern.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(patterns: &[&str], event: &str, expected: bool) {
        let filter = EventFilter::new(patterns.iter().map(|s| s.to_string()).collect());
        assert_eq!(filter.matches(event), expected, "{patterns:?} vs {event}");
    }

    #[test]
    fn globs_match_full_event_names() {
        check(&[], "anything", true);
        check(
            &["contact_center.*"],
            "contact_center.recording_completed",
            true,
        );
        check(&["contact_center.*"], "phone.callee_answered", false);
        check(
            &["*recording*"],
            "contact_center.recording_transcript_completed",
            true,
        );
        check(
            &["contact_center.recording_completed"],
            "contact_center.recording_completed",
            true,
        );
        check(
            &["contact_center.recording_completed"],
            "contact_center.recording_completed_x",
            false,
        );
        check(
            &["contact_center.engagement_note_adde?"],
            "contact_center.engagement_note_added",
            true,
        );
        check(
            &["contact_center.engagement_note_adde?"],
            "contact_center.engagement_note_adde",
            false,
        );
        check(&["*.*.*"], "a.b", false);
        check(&["*.*.*"], "a.b.c.d", true);
        check(&["a*b*c"], "aXbYbZc", true);
        check(
            &["x", "*voicemail*"],
            "contact_center.voicemail_transcript_completed",
            true,
        );
        check(&["*"], "", true);
        check(&["?"], "", false);
    }
}
