//! The `subject` template (DESIGN.md §3.6), pure: parsed once at validation,
//! rendered per record.
//!
//! Placeholders are `{account_id}`, `{event}` (without `contact_center.`) and
//! `{engagement_id}`. A value is sanitised so that it stays inside its token:
//! `.`, `*`, `>`, whitespace and control characters become `_`, and an absent
//! or empty value is `_none`. So whatever Zoom puts in an id, a record lands on
//! a subject of the template's shape, never on a wildcard and never a token
//! deeper. Not one-to-one (`a.b` and `a_b` share a subject): the dedup key is
//! `Nats-Msg-Id`, not the subject.

/// What a placeholder stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    AccountId,
    Event,
    EngagementId,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field(Field),
}

/// A validated subject template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    text: String,
    parts: Vec<Part>,
}

/// The values one record gives the placeholders.
#[derive(Clone, Copy, Debug, Default)]
pub struct Values<'a> {
    pub account_id: Option<&'a str>,
    /// Without `contact_center.`.
    pub event: Option<&'a str>,
    pub engagement_id: Option<&'a str>,
}

/// What an absent or empty value renders as.
pub const NONE: &str = "_none";

impl Template {
    /// Checks the template's shape: tokens separated by single dots, none
    /// empty, no wildcard or whitespace in the literal text, only known
    /// placeholders. The error names the problem.
    pub fn parse(text: &str) -> Result<Template, String> {
        if text.is_empty() {
            return Err("must not be empty".into());
        }
        let mut parts = Vec::new();
        for token in text.split('.') {
            if token.is_empty() {
                return Err(format!(
                    "{text:?} has an empty token (a leading, trailing or doubled '.')"
                ));
            }
            if !parts.is_empty() {
                parts.push(Part::Literal(".".into()));
            }
            let mut rest = token;
            while !rest.is_empty() {
                match rest.find('{') {
                    Some(0) => {
                        let end = rest
                            .find('}')
                            .ok_or_else(|| format!("{text:?} has a '{{' without '}}'"))?;
                        let field = match &rest[1..end] {
                            "account_id" => Field::AccountId,
                            "event" => Field::Event,
                            "engagement_id" => Field::EngagementId,
                            other => {
                                return Err(format!(
                                    "unknown placeholder {{{other}}}; the placeholders are \
                                     {{account_id}}, {{event}} and {{engagement_id}}"
                                ));
                            }
                        };
                        parts.push(Part::Field(field));
                        rest = &rest[end + 1..];
                    }
                    found => {
                        let end = found.unwrap_or(rest.len());
                        let literal = &rest[..end];
                        if literal.contains('}') {
                            return Err(format!("{text:?} has a '}}' without '{{'"));
                        }
                        if literal.chars().any(|c| !is_subject_char(c)) {
                            return Err(format!(
                                "{text:?} holds a wildcard ('*', '>'), whitespace or a control \
                                 character; a record is published to one concrete subject"
                            ));
                        }
                        parts.push(Part::Literal(literal.into()));
                        rest = &rest[end..];
                    }
                }
            }
        }
        Ok(Template {
            text: text.into(),
            parts,
        })
    }

    /// The subject for one record.
    pub fn render(&self, values: &Values<'_>) -> String {
        let mut subject = String::with_capacity(self.text.len() + 48);
        for part in &self.parts {
            match part {
                Part::Literal(text) => subject.push_str(text),
                Part::Field(field) => {
                    let value = match field {
                        Field::AccountId => values.account_id,
                        Field::Event => values.event,
                        Field::EngagementId => values.engagement_id,
                    };
                    push_sanitised(&mut subject, value);
                }
            }
        }
        subject
    }

    /// Whether rendering reads `field` (the account id needs the record's
    /// payload parsed).
    pub fn uses(&self, field: Field) -> bool {
        self.parts.contains(&Part::Field(field))
    }

    /// The whole tokens before the first placeholder, with their trailing dot
    /// (`zcc.` for `zcc.{account_id}.{event}`); empty when the first token
    /// holds a placeholder.
    pub fn literal_prefix(&self) -> String {
        let mut prefix = String::new();
        let mut token = String::new();
        for part in &self.parts {
            match part {
                Part::Literal(text) if text == "." => {
                    prefix.push_str(&token);
                    prefix.push('.');
                    token.clear();
                }
                Part::Literal(text) => token.push_str(text),
                Part::Field(_) => return prefix,
            }
        }
        // A template without placeholders: the subject itself.
        prefix + &token
    }

    /// The subjects a stream created for this template captures: the
    /// literal prefix and `>` (`zcc.>`), or the subject itself when the
    /// template has no placeholder.
    pub fn stream_subject(&self) -> String {
        if self.parts.iter().any(|part| matches!(part, Part::Field(_))) {
            format!("{}>", self.literal_prefix())
        } else {
            self.text.clone()
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// A character a literal subject token may hold.
fn is_subject_char(c: char) -> bool {
    !(c == '*' || c == '>' || c.is_whitespace() || c.is_control())
}

fn push_sanitised(subject: &mut String, value: Option<&str>) {
    match value {
        Some(value) if !value.is_empty() => subject.extend(value.chars().map(|c| {
            if c == '.' || !is_subject_char(c) {
                '_'
            } else {
                c
            }
        })),
        _ => subject.push_str(NONE),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(template: &str, values: Values<'_>, expected: &str) {
        let template = Template::parse(template).unwrap();
        assert_eq!(template.render(&values), expected);
    }

    #[test]
    fn renders_placeholders_as_single_tokens() {
        let values = Values {
            account_id: Some("acc1"),
            event: Some("recording_completed"),
            engagement_id: Some("eng-1"),
        };
        check(
            "zcc.{account_id}.{event}",
            values,
            "zcc.acc1.recording_completed",
        );
        check(
            "zcc.{account_id}.eng.{engagement_id}.{event}",
            values,
            "zcc.acc1.eng.eng-1.recording_completed",
        );
        check("zcc.e-{engagement_id}-x", values, "zcc.e-eng-1-x");
        check("fixed.subject", values, "fixed.subject");
    }

    #[test]
    fn sanitises_what_would_change_the_shape() {
        for (id, expected) in [
            ("a.b", "zcc.a_b.x"),
            ("*", "zcc._.x"),
            (">", "zcc._.x"),
            ("a b\tc\nd", "zcc.a_b_c_d.x"),
            ("a\u{0}b", "zcc.a_b.x"),
            ("ü-ok", "zcc.ü-ok.x"),
            ("", "zcc._none.x"),
        ] {
            check(
                "zcc.{engagement_id}.x",
                Values {
                    engagement_id: Some(id),
                    ..Values::default()
                },
                expected,
            );
        }
        check("zcc.{engagement_id}.x", Values::default(), "zcc._none.x");
    }

    #[test]
    fn refuses_templates_of_no_fixed_shape() {
        for bad in [
            "",
            "zcc..x",
            ".zcc",
            "zcc.",
            "zcc.*",
            "zcc.>",
            "zcc x",
            "zcc.{nope}",
            "zcc.{event",
            "zcc.event}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn stream_subjects_cover_the_template() {
        for (template, prefix, stream) in [
            ("zcc.{account_id}.{event}", "zcc.", "zcc.>"),
            ("a.b.{event}", "a.b.", "a.b.>"),
            ("a.b-{event}", "a.", "a.>"),
            ("{account_id}.x", "", ">"),
            ("fixed.subject", "fixed.subject", "fixed.subject"),
        ] {
            let template = Template::parse(template).unwrap();
            assert_eq!(template.literal_prefix(), prefix);
            assert_eq!(template.stream_subject(), stream);
        }
        let template = Template::parse("zcc.{engagement_id}").unwrap();
        assert!(template.uses(Field::EngagementId));
        assert!(!template.uses(Field::AccountId));
    }
}
