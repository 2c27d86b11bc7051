//! ServiceNow's error table (crm-reference.md §3, §6): an answer — status,
//! the body's `{"error":{"message","detail"},"status":"failure"}`, the
//! throttle headers (`Retry-After`, `X-RateLimit-Reset`) — becomes a
//! [`Failure`] of the class that says what happens next. Pure and
//! table-tested.

use std::time::Duration;

use serde_json::Value;

use crate::failure::{Class, Failure, MAX_RETRY_AFTER};

/// Wait this long after a 429 that names no time: rate-limit counts are
/// committed every 30 s.
const THROTTLE_WAIT: Duration = Duration::from_secs(30);

/// What an error body says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Said {
    pub message: String,
    pub detail: String,
}

pub fn said(body: &Value) -> Said {
    let text = |v: &Value| -> String {
        match v {
            Value::String(s) => s.chars().take(500).collect(),
            Value::Null => String::new(),
            other => other.to_string().chars().take(500).collect(),
        }
    };
    Said {
        message: text(&body["error"]["message"]),
        detail: text(&body["error"]["detail"]),
    }
}

/// The wait a throttle asks for: `Retry-After`, else the window's reset
/// (`X-RateLimit-Reset`, epoch seconds) after `now_s`.
pub fn throttle_wait(
    retry_after: Option<Duration>,
    reset_epoch_s: Option<u64>,
    now_s: u64,
) -> Option<Duration> {
    retry_after
        .or_else(|| reset_epoch_s.map(|reset| Duration::from_secs(reset.saturating_sub(now_s))))
}

/// `None` for a success; otherwise the failure with its class and status.
/// `wait` is what the throttle headers asked for; `table` and the fields
/// name the fixes.
pub fn classify(status: u16, said: &Said, wait: Option<Duration>, table: &str) -> Option<Failure> {
    if (200..300).contains(&status) {
        return None;
    }
    let text = match (said.message.is_empty(), said.detail.is_empty()) {
        (true, _) => format!("HTTP {status}"),
        (false, true) => format!("HTTP {status}: {}", said.message),
        (false, false) => format!("HTTP {status}: {} ({})", said.message, said.detail),
    };
    let failure = |class: Class, reason: String| Failure::new(class, reason).with_status(status);
    if status == 401 {
        return Some(failure(Class::Reauthenticate, text));
    }
    if status == 429 {
        let after = wait.unwrap_or(THROTTLE_WAIT).min(MAX_RETRY_AFTER);
        let after = (!after.is_zero()).then_some(after);
        return Some(failure(Class::Retry { after }, text));
    }
    if status == 408 || status >= 500 {
        let after = wait.map(|d| d.min(MAX_RETRY_AFTER));
        return Some(failure(Class::Retry { after }, text));
    }
    if status == 403 {
        return Some(failure(
            Class::Setup,
            format!(
                "{text} — give the integration user read, create and write on {table} (role \
                 interaction_agent or an ACL), write on sys_journal_field for edited notes, \
                 sys_attachment for files and read on the contact table"
            ),
        ));
    }
    if status == 400 && said.message.starts_with("Invalid table") {
        return Some(failure(
            Class::Setup,
            format!(
                "{text} — install the table's plugin (interaction: com.glide.interaction) or \
                 set table / contact_table to an existing table"
            ),
        ));
    }
    Some(failure(Class::Permanent, text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn class(status: u16, message: &str) -> &'static str {
        let body = json!({"error": {"message": message, "detail": null}, "status": "failure"});
        match classify(status, &said(&body), None, "interaction").map(|f| f.class) {
            None => "ok",
            Some(Class::Retry { .. }) => "retry",
            Some(Class::Reauthenticate) => "reauth",
            Some(Class::Permanent) => "dead",
            Some(Class::Setup) => "setup",
        }
    }

    #[test]
    fn the_table() {
        for (status, message, expected) in [
            (200, "", "ok"),
            (201, "", "ok"),
            (204, "", "ok"),
            (401, "User Not Authenticated", "reauth"),
            (403, "Operation Failed", "setup"),
            (400, "Invalid table interaction", "setup"),
            (
                400,
                "Operation Failed",
                "dead", // a data policy or a mandatory field
            ),
            (404, "No Record found", "dead"),
            (429, "Rate limit exceeded", "retry"),
            (408, "", "retry"),
            (500, "", "retry"),
            (503, "", "retry"),
        ] {
            assert_eq!(class(status, message), expected, "{status} {message}");
        }
    }

    #[test]
    fn a_throttle_waits_for_its_headers() {
        assert_eq!(
            throttle_wait(Some(Duration::from_secs(3)), Some(1_000), 900),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            throttle_wait(None, Some(1_000), 900),
            Some(Duration::from_secs(100))
        );
        assert_eq!(throttle_wait(None, Some(800), 900), Some(Duration::ZERO));
        assert_eq!(throttle_wait(None, None, 900), None);
        let body = json!({"error": {"message": "Too many requests", "detail": "Rate limit rule"}, "status": "failure"});
        let waited = classify(
            429,
            &said(&body),
            Some(Duration::from_secs(100)),
            "interaction",
        )
        .unwrap();
        assert_eq!(waited.retry_after(), Some(Duration::from_secs(100)));
        assert!(waited.reason.contains("Rate limit rule"));
        let default = classify(429, &said(&body), None, "interaction").unwrap();
        assert_eq!(default.retry_after(), Some(THROTTLE_WAIT));
    }
}
