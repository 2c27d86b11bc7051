//! Zendesk's error table (crm-reference.md §2, §6): an answer — status, the
//! body's `error` and `description` (with `details` for `RecordInvalid`),
//! `Retry-After` — becomes a [`Failure`] of the class that says what happens
//! next. Pure and table-tested.

use std::time::Duration;

use serde_json::Value;

use crate::failure::{Class, Failure, MAX_RETRY_AFTER};

/// A 429 without `Retry-After` waits this long (the limits are per minute).
const MINUTE_WINDOW: Duration = Duration::from_secs(60);

/// What an error body says: `error` (a code, or a sentence for a 401),
/// `description`, and the first of `details`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Said {
    pub error: Option<String>,
    pub message: String,
}

pub fn said(body: &Value) -> Said {
    let error = match &body["error"] {
        Value::String(code) => Some(code.clone()),
        // OAuth and some older endpoints nest it: {"error": {"title", "message"}}.
        Value::Object(inner) => inner
            .get("title")
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    };
    let mut message = body["description"]
        .as_str()
        .or_else(|| body["error"]["message"].as_str())
        .or_else(|| body["error_description"].as_str())
        .unwrap_or("")
        .to_owned();
    if let Some(details) = body["details"].as_object() {
        let first: Vec<String> = details
            .iter()
            .flat_map(|(field, problems)| {
                problems
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(move |p| p["description"].as_str().map(|d| format!("{field}: {d}")))
            })
            .take(3)
            .collect();
        if !first.is_empty() {
            message = format!("{message} ({})", first.join("; "));
        }
    }
    Said {
        error,
        message: message.chars().take(500).collect(),
    }
}

/// `None` for a success; otherwise the failure with its class, status and
/// the body's `error` as its code.
pub fn classify(status: u16, said: &Said, retry_after: Option<Duration>) -> Option<Failure> {
    if (200..300).contains(&status) {
        return None;
    }
    let code = said.error.as_deref().unwrap_or("");
    let text = match (code.is_empty(), said.message.is_empty()) {
        (true, true) => format!("HTTP {status}"),
        (false, true) => format!("HTTP {status} {code}"),
        (true, false) => format!("HTTP {status}: {}", said.message),
        (false, false) => format!("HTTP {status} {code}: {}", said.message),
    };
    let with = |failure: Failure| {
        let failure = failure.with_status(status);
        // A 401's `error` is a sentence, not a code.
        match said.error.as_deref() {
            Some(code) if !code.contains(' ') => failure.with_code(code),
            _ => failure,
        }
    };
    if status == 401 {
        return Some(with(Failure::reauthenticate(text)));
    }
    if status == 429 || status == 409 || status == 408 || status >= 500 {
        let after = match (status, retry_after) {
            (_, Some(after)) => Some(after.min(MAX_RETRY_AFTER)),
            (429, None) => Some(MINUTE_WINDOW),
            _ => None,
        };
        return Some(with(Failure::new(Class::Retry { after }, text)));
    }
    if status == 403 {
        return Some(with(Failure::setup(format!(
            "{text} — the integration user must be an agent (or admin) who may create and \
             edit tickets and end-users, and the OAuth client must allow the scopes \
             \"read write\""
        ))));
    }
    Some(with(Failure::permanent(text)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn class(status: u16, body: Value) -> &'static str {
        match classify(status, &said(&body), None).map(|f| f.class) {
            None => "ok",
            Some(Class::Retry { .. }) => "retry",
            Some(Class::Reauthenticate) => "reauth",
            Some(Class::Permanent) => "dead",
            Some(Class::Setup) => "setup",
        }
    }

    #[test]
    fn the_table() {
        for (status, body, expected) in [
            (200, json!({}), "ok"),
            (201, json!({}), "ok"),
            (401, json!({"error": "Couldn't authenticate you"}), "reauth"),
            (
                403,
                json!({"error": "Forbidden", "description": "You do not have access to this page."}),
                "setup",
            ),
            (
                429,
                json!({"error": "APIRateLimitExceeded", "description": "Number of allowed API requests per minute exceeded"}),
                "retry",
            ),
            (409, json!({"error": "Conflict"}), "retry"),
            (500, json!({}), "retry"),
            (503, json!({}), "retry"),
            (
                422,
                json!({"error": "RecordInvalid", "description": "Record validation errors",
                       "details": {"base": [{"description": "Subject: cannot be blank", "error": "BlankValue"}]}}),
                "dead",
            ),
            (
                400,
                json!({"error": "IdempotentRequestError", "description": "Request parameters do not match the original request for this Idempotency-Key"}),
                "dead",
            ),
            (
                404,
                json!({"error": "RecordNotFound", "description": "Not found"}),
                "dead",
            ),
            (413, json!({}), "dead"),
        ] {
            assert_eq!(class(status, body.clone()), expected, "{status} {body}");
        }
    }

    #[test]
    fn keeps_the_code_the_details_and_the_wait() {
        let failure = classify(
            422,
            &said(&json!({"error": "RecordInvalid", "description": "Record validation errors",
                          "details": {"requester": [{"description": "Requester: Phone is invalid"}]}})),
            None,
        )
        .unwrap();
        assert_eq!(failure.code.as_deref(), Some("RecordInvalid"));
        assert!(
            failure
                .reason
                .contains("requester: Requester: Phone is invalid")
        );
        let throttled = classify(429, &said(&json!({})), Some(Duration::from_secs(7))).unwrap();
        assert_eq!(throttled.retry_after(), Some(Duration::from_secs(7)));
        let unsaid = classify(429, &said(&Value::Null), None).unwrap();
        assert_eq!(unsaid.retry_after(), Some(MINUTE_WINDOW));
        let sentence = classify(
            401,
            &said(&json!({"error": "Couldn't authenticate you"})),
            None,
        );
        assert_eq!(sentence.unwrap().code, None);
    }
}
