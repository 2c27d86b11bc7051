//! The SOSL the relay's customer lookup needs: `FIND {term} IN PHONE FIELDS RETURNING
//! Obj(f1, f2), Obj2(…) [LIMIT n]` over Contact and Lead. Anything else is `MALFORMED_SEARCH`
//! (unknown objects `INVALID_TYPE`, unknown fields `INVALID_FIELD`), in SOQL's message shape.
//!
//! Phone matching (the fake's documented choice): Salesforce stores phones as free text and
//! its search index tokenises them, so "(415) 555-1212" is found by 4155551212 and by
//! +1 415-555-1212 (SOQL and SOSL Reference, "FIND Clause": phone fields are searched on
//! their digits). The fake compares digit strings: equal, or the longer one ends with the
//! shorter one when that has at least 10 digits (a national number with or without its
//! country code). The relay normalises both sides to E.164 itself (docs/contract.md §3.5, once the CRM sinks land), so this
//! only pre-filters, as a real search does.

use std::borrow::Cow;

use serde_json::{Map, Value, json};

use super::schema::{self, FieldDef, FieldType, ObjectKind};
use super::soql::QueryError;

#[derive(Debug, Clone, PartialEq)]
pub struct Search {
    pub term: String,
    pub returning: Vec<(ObjectKind, Vec<String>)>,
    pub limit: Option<usize>,
}

fn malformed(reason: &str) -> QueryError {
    QueryError {
        code: "MALFORMED_SEARCH",
        message: reason.to_owned(),
    }
}

/// Characters SOSL reserves in a search term: "Reserved characters, if specified in a text
/// search, must be escaped (preceded by the backslash \ character) … An error occurs if you
/// do not" (SOQL and SOSL Reference, "FIND {SearchQuery}"). `*` and `?` (wildcards), `"`
/// (phrases) and parentheses (grouping) have their operator meaning unescaped.
const RESERVED: &[char] = &['&', '|', '!', '{', '[', ']', '^', '~', ':', '\'', '+', '-'];

/// The unescaped search term inside the braces and the byte index of its closing brace.
fn search_term(after_brace: &str) -> Result<(String, usize), QueryError> {
    let mut term = String::new();
    let mut chars = after_brace.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, escaped)) => term.push(escaped),
                None => break,
            },
            '}' => return Ok((term, at)),
            c if RESERVED.contains(&c) => {
                return Err(malformed(&format!(
                    "line 1:{} reserved character '{c}' must be escaped with a backslash in a search term",
                    "FIND {".len() + at
                )));
            }
            c => term.push(c),
        }
    }
    Err(malformed(
        "No search term found. The search term must be enclosed in braces.",
    ))
}

fn take_word<'a>(rest: &mut &'a str) -> &'a str {
    let trimmed = rest.trim_start();
    let end = trimmed
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(trimmed.len());
    let (word, tail) = trimmed.split_at(end);
    *rest = tail;
    word
}

pub fn parse(
    text: &str,
    fields_of: &dyn Fn(ObjectKind) -> Vec<FieldDef>,
) -> Result<Search, QueryError> {
    let mut rest = text.trim();
    if !take_word(&mut rest).eq_ignore_ascii_case("FIND") {
        return Err(malformed(
            "line 1:0 no viable alternative at character 'FIND'",
        ));
    }
    rest = rest.trim_start();
    let Some(after_brace) = rest.strip_prefix('{') else {
        return Err(malformed(
            "No search term found. The search term must be enclosed in braces.",
        ));
    };
    let (term, close) = search_term(after_brace)?;
    rest = &after_brace[close + 1..];
    if term.trim().chars().filter(|c| c.is_alphanumeric()).count() < 2 {
        return Err(malformed("search term must be longer than one character"));
    }
    let in_word = take_word(&mut rest);
    let scope = take_word(&mut rest);
    let fields_word = take_word(&mut rest);
    if !in_word.eq_ignore_ascii_case("IN")
        || !scope.eq_ignore_ascii_case("PHONE")
        || !fields_word.eq_ignore_ascii_case("FIELDS")
    {
        return Err(malformed(&format!(
            "unexpected token: {in_word} {scope} {fields_word} (the fake searches IN PHONE FIELDS only)"
        )));
    }
    if !take_word(&mut rest).eq_ignore_ascii_case("RETURNING") {
        return Err(malformed("unexpected token: expecting RETURNING"));
    }
    let mut search = Search {
        term,
        returning: Vec::new(),
        limit: None,
    };
    loop {
        let name = take_word(&mut rest);
        let Some(object) =
            ObjectKind::parse(name).filter(|k| matches!(k, ObjectKind::Contact | ObjectKind::Lead))
        else {
            return Err(QueryError {
                code: "INVALID_TYPE",
                message: format!(
                    "sObject type '{name}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the describe call for the appropriate names."
                ),
            });
        };
        let fields = fields_of(object);
        let mut selected = Vec::new();
        rest = rest.trim_start();
        if let Some(inner) = rest.strip_prefix('(') {
            let Some(close) = inner.find(')') else {
                return Err(malformed("unexpected token: <EOF>"));
            };
            for raw in inner[..close].split(',') {
                let raw = raw.trim();
                let field = schema::find(&fields, raw).ok_or_else(|| QueryError {
                    code: "INVALID_FIELD",
                    message: format!("No such column '{raw}' on entity '{}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name. Please reference your WSDL or the describe call for the appropriate names.", object.name()),
                })?;
                selected.push(field.name.clone());
            }
            rest = &inner[close + 1..];
        } else {
            selected.push("Id".to_owned());
        }
        search.returning.push((object, selected));
        rest = rest.trim_start();
        if let Some(tail) = rest.strip_prefix(',') {
            rest = tail;
            continue;
        }
        break;
    }
    let word = take_word(&mut rest);
    if word.eq_ignore_ascii_case("LIMIT") {
        let number = take_word(&mut rest);
        search.limit = Some(
            number
                .parse()
                .map_err(|_| malformed(&format!("unexpected token: {number}")))?,
        );
    } else if !word.is_empty() {
        return Err(malformed(&format!("unexpected token: {word}")));
    }
    if !rest.trim().is_empty() {
        return Err(malformed(&format!("unexpected token: {}", rest.trim())));
    }
    Ok(search)
}

fn digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

/// Whether a stored phone matches the searched term (see the module doc).
pub fn phone_matches(stored: &str, term: &str) -> bool {
    let (stored, term) = (digits(stored), digits(term));
    if stored.is_empty() || term.is_empty() {
        return false;
    }
    let (long, short) = if stored.len() >= term.len() {
        (&stored, &term)
    } else {
        (&term, &stored)
    };
    long == short || (short.len() >= 10 && long.ends_with(short.as_str()))
}

pub fn run<'a>(
    search: &Search,
    fields_of: &dyn Fn(ObjectKind) -> Vec<FieldDef>,
    records_of: &dyn Fn(ObjectKind) -> Vec<Cow<'a, Map<String, Value>>>,
    version: &str,
) -> Value {
    let mut found = Vec::new();
    for (object, selected) in &search.returning {
        let phone_fields: Vec<String> = fields_of(*object)
            .into_iter()
            .filter(|f| f.kind == FieldType::Phone)
            .map(|f| f.name)
            .collect();
        for record in records_of(*object) {
            let hit = phone_fields.iter().any(|name| {
                record
                    .get(name)
                    .and_then(Value::as_str)
                    .is_some_and(|phone| phone_matches(phone, &search.term))
            });
            if !hit {
                continue;
            }
            let id = record.get("Id").and_then(Value::as_str).unwrap_or_default();
            let mut row = Map::new();
            row.insert("attributes".into(), json!({"type": object.name(), "url": format!("/services/data/{version}/sobjects/{}/{id}", object.name())}));
            for name in selected {
                row.insert(
                    name.clone(),
                    record.get(name).cloned().unwrap_or(Value::Null),
                );
            }
            found.push(Value::Object(row));
        }
    }
    if let Some(limit) = search.limit {
        found.truncate(limit);
    }
    json!({"searchRecords": found})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_match_on_their_digits_across_formats() {
        assert!(phone_matches("(415) 555-1212", "4155551212"));
        assert!(phone_matches("+1 415-555-1212", "4155551212"));
        assert!(phone_matches("(415) 555-1212", "+14155551212"));
        assert!(!phone_matches("(415) 555-1213", "4155551212"));
        assert!(!phone_matches("555-1212", "4155551212"));
    }

    #[test]
    fn parses_the_lookup_and_refuses_other_scopes() {
        let fields_of = |kind| schema::fields(kind, None);
        let search = parse(
            "FIND {4155551212} IN PHONE FIELDS RETURNING Contact(Id, Phone, MobilePhone), Lead(Id)",
            &fields_of,
        );
        assert_eq!(search.map(|s| s.returning.len()).ok(), Some(2));
        let code = |text: &str| parse(text, &fields_of).err().map(|e| e.code);
        assert_eq!(
            code("FIND {+14155551212} IN PHONE FIELDS RETURNING Contact"),
            Some("MALFORMED_SEARCH")
        );
        assert_eq!(
            code("FIND {415-555-1212} IN PHONE FIELDS RETURNING Contact"),
            Some("MALFORMED_SEARCH")
        );
        let escaped = parse(
            r"FIND {\+1 \(415\) 555\-1212} IN PHONE FIELDS RETURNING Contact",
            &fields_of,
        );
        assert_eq!(
            escaped.map(|s| s.term).ok().as_deref(),
            Some("+1 (415) 555-1212")
        );
        assert_eq!(
            parse(
                "FIND 4155551212 IN PHONE FIELDS RETURNING Contact",
                &fields_of
            )
            .err()
            .map(|e| e.code),
            Some("MALFORMED_SEARCH")
        );
        assert_eq!(
            parse("FIND {x1} IN NAME FIELDS RETURNING Contact", &fields_of)
                .err()
                .map(|e| e.code),
            Some("MALFORMED_SEARCH")
        );
        assert_eq!(
            parse(
                "FIND {4155551212} IN PHONE FIELDS RETURNING Account(Id)",
                &fields_of
            )
            .err()
            .map(|e| e.code),
            Some("INVALID_TYPE")
        );
        assert_eq!(
            parse(
                "FIND {4155551212} IN PHONE FIELDS RETURNING Contact(Nope)",
                &fields_of
            )
            .err()
            .map(|e| e.code),
            Some("INVALID_FIELD")
        );
    }
}
