//! Dataverse's error table (crm-reference.md §4, §6): an answer — status,
//! the `error.code` of its body (`0x80072322`), its message, `Retry-After` —
//! becomes a [`Failure`] of the class that says what happens next. Pure and
//! table-tested.

use std::time::Duration;

use serde_json::Value;

use crate::failure::{Class, Failure, MAX_RETRY_AFTER};

/// "Bad Request - Error in query syntax.": what Dataverse answers for a
/// key segment naming a column that is no active alternate key.
pub const QUERY_SYNTAX: &str = "0x8006088a";
/// Service-protection limits: requests, execution time, concurrency.
const THROTTLE_CODES: &[&str] = &["0x80072322", "0x80072321", "0x80072326"];
/// A missing privilege (`SecLib::AccessCheckEx failed`), a disabled user.
const ACCESS_CODES: &[&str] = &["0x80040220", "0x80042f09", "0x8004140f"];

/// `(code, message)` of a Web API error body `{"error":{"code","message"}}`.
pub fn error_of(body: &Value) -> (Option<String>, String) {
    let error = &body["error"];
    let code = error["code"].as_str().map(str::to_owned);
    let message = error["message"]
        .as_str()
        .map(|m| m.chars().take(500).collect())
        .unwrap_or_default();
    (code, message)
}

/// What a request was, for the fixes it names.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// The alternate-key column, when the URL had a key segment.
    pub key_column: Option<&'a str>,
}

/// `None` for a success; otherwise the failure with its class, status and code.
pub fn classify(
    status: u16,
    code: Option<&str>,
    message: &str,
    retry_after: Option<Duration>,
    context: Context<'_>,
) -> Option<Failure> {
    if (200..300).contains(&status) {
        return None;
    }
    let code_text = code.unwrap_or("");
    let said = if message.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status} {code_text}: {message}")
    };
    let with = |failure: Failure| {
        let failure = failure.with_status(status);
        match code {
            Some(code) => failure.with_code(code),
            None => failure,
        }
    };
    if status == 401 {
        return Some(with(Failure::reauthenticate(said)));
    }
    if status == 429 || status == 408 || status >= 500 || THROTTLE_CODES.contains(&code_text) {
        return Some(with(Failure::new(
            Class::Retry {
                after: retry_after.map(|d| d.min(MAX_RETRY_AFTER)),
            },
            said,
        )));
    }
    if code_text == QUERY_SYNTAX
        && let Some(column) = context.key_column
    {
        return Some(with(Failure::setup(format!(
            "{said} — the phonecall table has no active alternate key on {column}: create a \
             Single line of text column {column} on Phone Call, an alternate key on it alone, \
             and wait until the key's index is Active (or set alternate_key_column)"
        ))));
    }
    if status == 403 || ACCESS_CODES.contains(&code_text) {
        return Some(with(Failure::setup(format!(
            "{said} — give the application user a security role with Create, Read, Write, \
             Append and Append To on Phone Call and Note, and Read on Contact"
        ))));
    }
    Some(with(Failure::permanent(said)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn class(status: u16, code: Option<&str>, keyed: bool) -> &'static str {
        let context = Context {
            key_column: keyed.then_some("zcc_engagementid"),
        };
        match classify(status, code, "m", Some(Duration::from_secs(5)), context).map(|f| f.class) {
            None => "ok",
            Some(Class::Retry { .. }) => "retry",
            Some(Class::Reauthenticate) => "reauth",
            Some(Class::Permanent) => "dead",
            Some(Class::Setup) => "setup",
        }
    }

    #[test]
    fn the_table() {
        for (status, code, keyed, expected) in [
            (200, None, true, "ok"),
            (204, None, true, "ok"),
            (400, Some(QUERY_SYNTAX), true, "setup"),
            (400, Some(QUERY_SYNTAX), false, "dead"),
            (400, Some("0x80040203"), true, "dead"),
            (400, Some("0x80048d19"), true, "dead"),
            (401, None, true, "reauth"),
            (403, Some("0x80040220"), true, "setup"),
            (404, Some("0x80040217"), true, "dead"),
            (412, Some("0x80060882"), true, "dead"),
            (429, Some("0x80072322"), true, "retry"),
            (429, Some("0x80072321"), false, "retry"),
            (500, Some("0x80040216"), true, "retry"),
            (503, None, true, "retry"),
        ] {
            assert_eq!(class(status, code, keyed), expected, "{status} {code:?}");
        }
    }

    #[test]
    fn keeps_the_wait_and_names_the_key() {
        let failure = classify(
            429,
            Some("0x80072322"),
            "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
            Some(Duration::from_secs(7)),
            Context { key_column: None },
        )
        .unwrap();
        assert_eq!(failure.retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(failure.code.as_deref(), Some("0x80072322"));
        let setup = classify(
            400,
            Some(QUERY_SYNTAX),
            "Bad Request - Error in query syntax.",
            None,
            Context {
                key_column: Some("zcc_x"),
            },
        )
        .unwrap();
        assert!(setup.reason.contains("alternate key on zcc_x"));
        assert_eq!(
            error_of(&json!({"error": {"code": "0x1", "message": "no"}})),
            (Some("0x1".into()), "no".into())
        );
    }
}
