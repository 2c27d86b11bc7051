//! Checking a record's JSON against an object's fields, in the order Salesforce does: first
//! deserialization (unknown field → whole-request `INVALID_FIELD`, a value of the wrong JSON
//! type → whole-request `JSON_PARSER_ERROR`), then the per-record rules (field-level
//! create/update permission, required fields, restricted picklists, lengths, lookups), which
//! a collection reports per record. Pure: lookups go through the `references` callback.
//!
//! Wording, from Salesforce's answers as clients record them: "No such column 'X' on sobject
//! of type Task"; "Cannot deserialize instance of int from VALUE_STRING value x or request may
//! be missing a required field at [line:1, column:N]"; "Unable to create/update fields: X.
//! Please check the security settings of this field and verify that it is read/write for your
//! profile or permission set."; "bad value for restricted picklist field: X";
//! "{Label}: data value too large: … (max length=N)"; "{Label}: id value of incorrect type: X".

use serde_json::{Map, Value};

use super::error::{ApiError, RecordError};
use super::schema::{self, FieldDef, FieldType, ObjectKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Create,
    Update,
}

/// Deserialization: every key a field of `kind` (`attributes` aside), every value of the
/// JSON type the field takes. Returns the values under the fields' canonical names.
pub fn parse(
    kind: ObjectKind,
    fields: &[FieldDef],
    input: &Map<String, Value>,
    raw: &str,
) -> Result<Map<String, Value>, ApiError> {
    let mut values = Map::new();
    for (key, value) in input {
        if key == "attributes" {
            continue;
        }
        let Some(field) = schema::find(fields, key) else {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "INVALID_FIELD",
                format!("No such column '{key}' on sobject of type {}", kind.name()),
            ));
        };
        let value = coerce(field.kind, value).map_err(|(token, text)| {
            let (line, column) = locate(raw, key);
            ApiError::json_parser(format!(
                "Cannot deserialize instance of {} from {token} value {text} or request may be missing a required field at [line:{line}, column:{column}]",
                field.kind.parser_name()
            ))
        })?;
        values.insert(field.name.clone(), value);
    }
    Ok(values)
}

/// The value a field of type `kind` takes from `value`, or the JSON token and text the
/// deserializer refuses. Scalars coerce to text fields as Jackson coerces them.
fn coerce(kind: FieldType, value: &Value) -> Result<Value, (&'static str, String)> {
    let refused = |value: &Value| -> (&'static str, String) {
        match value {
            Value::String(s) => ("VALUE_STRING", s.clone()),
            Value::Number(n) if n.is_i64() || n.is_u64() => ("VALUE_NUMBER_INT", n.to_string()),
            Value::Number(n) => ("VALUE_NUMBER_FLOAT", n.to_string()),
            Value::Bool(true) => ("VALUE_TRUE", "true".into()),
            Value::Bool(false) => ("VALUE_FALSE", "false".into()),
            Value::Array(_) => ("START_ARRAY", "[".into()),
            Value::Object(_) => ("START_OBJECT", "{".into()),
            Value::Null => ("VALUE_NULL", "null".into()),
        }
    };
    if value.is_null() {
        return Ok(Value::Null);
    }
    match kind {
        FieldType::Int => match value {
            Value::Number(n) if n.is_i64() => Ok(value.clone()),
            _ => Err(refused(value)),
        },
        FieldType::Boolean => match value {
            Value::Bool(_) => Ok(value.clone()),
            Value::String(s) if s == "true" || s == "false" => Ok(Value::Bool(s == "true")),
            _ => Err(refused(value)),
        },
        FieldType::Date => match value {
            Value::String(s) if is_date(s) => Ok(value.clone()),
            _ => Err(refused(value)),
        },
        // Decoded (and refused if not base64) where it is stored, not twice.
        FieldType::Base64 => match value {
            Value::String(_) => Ok(value.clone()),
            _ => Err(refused(value)),
        },
        _ => match value {
            Value::String(_) => Ok(value.clone()),
            Value::Number(n) => Ok(Value::String(n.to_string())),
            Value::Bool(b) => Ok(Value::String(b.to_string())),
            _ => Err(refused(value)),
        },
    }
}

fn is_date(text: &str) -> bool {
    text.len() == 10 && text.parse::<jiff::civil::Date>().is_ok()
}

pub fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

/// Line and column (1-based) just after the value of `key` in `raw`, as the deserializer
/// reports a bad token; (1, 1) when it cannot be found.
fn locate(raw: &str, key: &str) -> (usize, usize) {
    let needle = format!("\"{key}\"");
    let Some(start) = raw.find(&needle) else {
        return (1, 1);
    };
    let bytes = raw.as_bytes();
    let mut at = start + needle.len();
    while at < bytes.len() && (bytes[at].is_ascii_whitespace() || bytes[at] == b':') {
        at += 1;
    }
    if at < bytes.len() && bytes[at] == b'"' {
        at += 1;
        while at < bytes.len() && bytes[at] != b'"' {
            at += if bytes[at] == b'\\' { 2 } else { 1 };
        }
        at += 1;
    } else {
        while at < bytes.len()
            && !matches!(bytes[at], b',' | b'}' | b']')
            && !bytes[at].is_ascii_whitespace()
        {
            at += 1;
        }
    }
    let at = at.min(raw.len());
    let before = &raw[..raw.floor_char_boundary_compat(at)];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(0, |tail| tail.chars().count())
        + 1;
    (line, column)
}

trait FloorCharBoundary {
    fn floor_char_boundary_compat(&self, index: usize) -> usize;
}

impl FloorCharBoundary for str {
    fn floor_char_boundary_compat(&self, mut index: usize) -> usize {
        while index > 0 && !self.is_char_boundary(index) {
            index -= 1;
        }
        index
    }
}

/// What a lookup field's id points at: the object's name, or `None` when no such record.
pub type References<'a> = &'a dyn Fn(&str) -> Option<&'static str>;

/// The per-record rules. `values` come from [`parse`]. Text lengths count UTF-16 code units,
/// as the platform's strings do (Apex `String.length()`), so a character outside the Basic
/// Multilingual Plane (an emoji) counts twice.
pub fn check(
    fields: &[FieldDef],
    values: &Map<String, Value>,
    mode: Mode,
    references: References<'_>,
) -> Result<(), RecordError> {
    let not_writable: Vec<&str> = values
        .keys()
        .filter_map(|name| schema::find(fields, name))
        .filter(|field| match mode {
            Mode::Create => !field.createable,
            Mode::Update => !field.updateable,
        })
        .map(|field| field.name.as_str())
        .collect();
    if !not_writable.is_empty() {
        return Err(RecordError::new(
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            format!(
                "Unable to create/update fields: {}. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
                not_writable.join(", ")
            ),
            &not_writable,
        ));
    }
    for (name, value) in values {
        let Some(field) = schema::find(fields, name) else {
            continue;
        };
        let Value::String(text) = value else {
            if value.is_null() && !field.nillable {
                return Err(RecordError::new(
                    "REQUIRED_FIELD_MISSING",
                    format!("Required fields are missing: [{}]", field.name),
                    &[&field.name],
                ));
            }
            continue;
        };
        if let Some((allowed, true)) = field.picklist
            && !allowed.contains(&text.as_str())
        {
            return Err(RecordError::new(
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                format!(
                    "{}: bad value for restricted picklist field: {text}",
                    field.label
                ),
                &[&field.name],
            ));
        }
        if field.length > 0
            && field.kind != FieldType::Reference
            && text.encode_utf16().count() > field.length as usize
        {
            return Err(RecordError::new(
                "STRING_TOO_LONG",
                format!(
                    "{}: data value too large: {text} (max length={})",
                    field.label, field.length
                ),
                &[&field.name],
            ));
        }
        if field.kind == FieldType::Reference {
            check_reference(field, text, references)?;
        }
    }
    Ok(())
}

fn check_reference(
    field: &FieldDef,
    text: &str,
    references: References<'_>,
) -> Result<(), RecordError> {
    let incorrect = || format!("{}: id value of incorrect type: {text}", field.label);
    let Some(id) = super::id::canonical(text) else {
        return Err(RecordError::new(
            "MALFORMED_ID",
            incorrect(),
            &[&field.name],
        ));
    };
    match references(&id) {
        Some(object) if field.reference_to.contains(&object) => Ok(()),
        Some(_) => Err(RecordError::new(
            "FIELD_INTEGRITY_EXCEPTION",
            incorrect(),
            &[&field.name],
        )),
        None => {
            // A well-formed id whose key prefix is of the wrong object is refused as the
            // wrong type; one of the right object that matches no record as a bad reference.
            let prefix_ok = field.reference_to.iter().any(|object| {
                ObjectKind::parse(object).is_some_and(|kind| id.starts_with(kind.key_prefix()))
                    || (*object == "User" && id.starts_with(super::id::prefix::USER))
                    || (*object == "Account" && id.starts_with(super::id::prefix::ACCOUNT))
            });
            if prefix_ok {
                Err(RecordError::new(
                    "INVALID_CROSS_REFERENCE_KEY",
                    "invalid cross reference id",
                    &[&field.name],
                ))
            } else {
                Err(RecordError::new(
                    "FIELD_INTEGRITY_EXCEPTION",
                    incorrect(),
                    &[&field.name],
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::org::ExternalIdField;
    use super::*;
    use serde_json::json;

    fn task_fields() -> Vec<FieldDef> {
        schema::fields(ObjectKind::Task, Some(&ExternalIdField::proper("Ext__c")))
    }

    fn parse_task(body: &str) -> Result<Map<String, Value>, ApiError> {
        let input: Map<String, Value> = serde_json::from_str(body).unwrap_or_default();
        parse(ObjectKind::Task, &task_fields(), &input, body)
    }

    #[test]
    fn int_field_refuses_a_string_with_the_parser_message() {
        let error = parse_task(r#"{"CallDurationInSeconds": "abc"}"#)
            .err()
            .map(|e| e.body());
        assert_eq!(
            error,
            Some(
                json!([{"message": "Cannot deserialize instance of int from VALUE_STRING value abc or request may be missing a required field at [line:1, column:32]",
                         "errorCode": "JSON_PARSER_ERROR"}])
            )
        );
    }

    #[test]
    fn field_names_resolve_ignoring_case() {
        let values = parse_task(r#"{"subject": "Call", "ext__C": "x"}"#).ok();
        assert_eq!(
            values,
            Some(
                json!({"Subject": "Call", "Ext__c": "x"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default()
            )
        );
    }

    #[test]
    fn dates_must_be_calendar_dates() {
        assert!(parse_task(r#"{"ActivityDate": "2026-12-07"}"#).is_ok());
        assert!(parse_task(r#"{"ActivityDate": "2026-13-07"}"#).is_err());
        assert!(parse_task(r#"{"ActivityDate": "2026-12-07T10:00:00Z"}"#).is_err());
    }
}
