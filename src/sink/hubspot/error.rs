//! HubSpot's error table (crm-reference.md §5, §6): an answer — status, the
//! body's `category` and `policyName`, its message, `Retry-After` — becomes
//! a [`Failure`] of the class that says what happens next. Pure and
//! table-tested.

use std::time::Duration;

use serde_json::Value;

use crate::failure::{Class, Failure, MAX_RETRY_AFTER};

/// The ten-second window: wait this long when no `Retry-After` says.
const WINDOW: Duration = Duration::from_secs(10);

/// What an error body says: `category`, `policyName`, `message`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Said {
    pub category: Option<String>,
    pub policy: Option<String>,
    pub message: String,
}

pub fn said(body: &Value) -> Said {
    let text = |f: &str| body[f].as_str().map(str::to_owned);
    Said {
        category: text("category").or_else(|| text("errorType")),
        policy: text("policyName"),
        message: text("message")
            .map(|m| m.chars().take(500).collect())
            .unwrap_or_default(),
    }
}

/// `None` for a success; otherwise the failure with its class, status and
/// the category as its code. `unique_property` names the fix of a property
/// problem.
pub fn classify(
    status: u16,
    said: &Said,
    retry_after: Option<Duration>,
    unique_property: &str,
) -> Option<Failure> {
    if (200..300).contains(&status) {
        return None;
    }
    let category = said.category.as_deref().unwrap_or("");
    let text = if said.message.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status} {category}: {}", said.message)
    };
    let with = |failure: Failure| {
        let failure = failure.with_status(status);
        match said.policy.as_deref().or(said.category.as_deref()) {
            Some(code) => failure.with_code(code),
            None => failure,
        }
    };
    if status == 401 {
        return Some(with(Failure::reauthenticate(text)));
    }
    if status == 429 && said.policy.as_deref() == Some("DAILY") {
        // The portal's daily allowance is used up: nothing this record did.
        // It waits on the durable schedule and never dead-letters.
        return Some(with(Failure::setup(format!(
            "{text} — the app's daily API limit is reached; records wait until it resets \
             (raise the limit with HubSpot or lower requests_per_second)"
        ))));
    }
    if status == 429 || status == 423 || status == 408 || status >= 500 {
        let after = match (status, retry_after) {
            (_, Some(after)) => after,
            (429, None) => WINDOW,
            (423, None) => Duration::from_secs(2),
            _ => Duration::ZERO,
        };
        let after = (!after.is_zero()).then(|| after.min(MAX_RETRY_AFTER));
        return Some(with(Failure::new(Class::Retry { after }, text)));
    }
    if category == "MISSING_SCOPES" || status == 403 {
        return Some(with(Failure::setup(format!(
            "{text} — give the private app (or service key) the scopes crm.objects.calls.read \
             and .write, crm.objects.contacts.read, files and crm.schemas.calls.read"
        ))));
    }
    let lower = said.message.to_ascii_lowercase();
    if lower.contains(&unique_property.to_ascii_lowercase())
        && (lower.contains("unique") || lower.contains("does not exist"))
    {
        return Some(with(Failure::setup(format!(
            "{text} — create the calls property {unique_property} (single-line text) with \
             \"Require unique values\" set, or set unique_property to one that has it"
        ))));
    }
    Some(with(Failure::permanent(text)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn class(status: u16, body: Value) -> &'static str {
        match classify(status, &said(&body), None, "zcc_engagement_id").map(|f| f.class) {
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
            (207, json!({}), "ok"),
            (401, json!({"category": "INVALID_AUTHENTICATION"}), "reauth"),
            (
                403,
                json!({"category": "MISSING_SCOPES", "message": "scopes"}),
                "setup",
            ),
            (429, json!({"policyName": "TEN_SECONDLY_ROLLING"}), "retry"),
            (429, json!({"policyName": "SECONDLY"}), "retry"),
            (429, json!({"policyName": "DAILY"}), "setup"),
            (423, json!({}), "retry"),
            (500, json!({}), "retry"),
            (502, json!({}), "retry"),
            (
                400,
                json!({"category": "VALIDATION_ERROR", "message": "Property values were not valid"}),
                "dead",
            ),
            (
                400,
                json!({"category": "VALIDATION_ERROR", "message": "zcc_engagement_id is not a unique property"}),
                "setup",
            ),
            (
                400,
                json!({"category": "VALIDATION_ERROR", "message": "Property zcc_engagement_id does not exist"}),
                "setup",
            ),
            (404, json!({"category": "OBJECT_NOT_FOUND"}), "dead"),
        ] {
            assert_eq!(class(status, body.clone()), expected, "{status} {body}");
        }
    }

    #[test]
    fn the_ten_second_window_waits() {
        let failure = classify(
            429,
            &said(&json!({"policyName": "TEN_SECONDLY_ROLLING", "message": "You have reached your ten_secondly_rolling limit."})),
            None,
            "p",
        )
        .unwrap();
        assert_eq!(failure.retry_after(), Some(WINDOW));
        assert_eq!(failure.code.as_deref(), Some("TEN_SECONDLY_ROLLING"));
    }
}
