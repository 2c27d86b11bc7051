//! The CRM error table (DESIGN.md §3.5 "Errors are sorted three ways",
//! crm-reference.md §6): one answer of a CRM's API — status, the vendor's
//! error code, its message, `Retry-After` — becomes a [`Failure`] of the
//! class that says what happens next. Pure; each CRM's client parses its own
//! error body and hands the pieces here.

use std::time::Duration;

use crate::failure::{Class, Failure, MAX_RETRY_AFTER};

/// One API answer, as far as classifying it goes.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub status: u16,
    /// The vendor's error code (`REQUEST_LIMIT_EXCEEDED`), when the body had one.
    pub code: Option<&'a str>,
    /// The vendor's message (never holds a secret: CRMs echo field names).
    pub message: &'a str,
    pub retry_after: Option<Duration>,
}

/// Codes that mean the integration user may not do this: a set-up problem.
const ACCESS_CODES: &[&str] = &[
    "INSUFFICIENT_ACCESS",
    "INSUFFICIENT_ACCESS_OR_READONLY",
    "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY",
    "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY",
    "API_DISABLED_FOR_ORG",
    "API_CURRENTLY_DISABLED",
];

/// Codes of a temporary condition on the CRM's side.
const TEMPORARY_CODES: &[&str] = &["SERVER_UNAVAILABLE", "UNABLE_TO_LOCK_ROW"];

/// `None` for a success; otherwise the failure with its class, status and
/// code. `object` names what was written (`Task`), for the fixes.
pub fn classify(answer: Answer<'_>, object: &str) -> Option<Failure> {
    let Answer {
        status,
        code,
        message,
        retry_after,
    } = answer;
    if (200..300).contains(&status) {
        return None;
    }
    let code_text = code.unwrap_or("");
    let said = if message.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status} {code_text}: {message}")
    };
    let class = if code_text == "REQUEST_LIMIT_EXCEEDED" {
        // The org's 24-hour API allocation is used up: nothing this record
        // did. It waits on the durable schedule for as long as it lasts and
        // never dead-letters, which is what the set-up class does.
        return Some(
            Failure::setup(format!(
                "{said} — the org's API request limit is reached; records wait until \
                 Salesforce frees capacity (raise the org's allocation or lower requests_per_second)"
            ))
            .with_status(status)
            .with_code(code_text),
        );
    } else if status == 401 {
        Class::Reauthenticate
    } else if status == 408
        || status == 429
        || status >= 500
        || TEMPORARY_CODES.contains(&code_text)
    {
        Class::Retry {
            after: retry_after.map(|d| d.min(MAX_RETRY_AFTER)),
        }
    } else if status == 404 && message.contains("external ID field") {
        return Some(
            Failure::setup(format!(
                "{said} — create the External ID field on {object} (Text, External ID, Unique) \
                 or set external_id_field to an existing one, and give the integration user \
                 read and edit access to it"
            ))
            .with_status(status)
            .with_code(code_text),
        );
    } else if ACCESS_CODES.contains(&code_text) || status == 403 {
        return Some(
            Failure::setup(format!(
                "{said} — give the integration user create, read and edit on {object} \
                 (and ContentVersion for files) in its permission set"
            ))
            .with_status(status)
            .with_code(code_text),
        );
    } else {
        Class::Permanent
    };
    let mut failure = Failure::new(class, said).with_status(status);
    if let Some(code) = code {
        failure = failure.with_code(code);
    }
    Some(failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(status: u16, code: Option<&str>, message: &str) -> &'static str {
        let answer = Answer {
            status,
            code,
            message,
            retry_after: Some(Duration::from_secs(5)),
        };
        match classify(answer, "Task").map(|f| f.class) {
            None => "ok",
            Some(Class::Retry { .. }) => "retry",
            Some(Class::Reauthenticate) => "reauth",
            Some(Class::Permanent) => "dead",
            Some(Class::Setup) => "setup",
        }
    }

    #[test]
    fn the_table() {
        let missing_field =
            "Provided external ID field does not exist or is not accessible: Zoom_Engagement_Id__c";
        for (status, code, message, expected) in [
            (200, None, "", "ok"),
            (201, None, "", "ok"),
            (204, None, "", "ok"),
            (300, None, "several Tasks", "dead"),
            (400, Some("INVALID_FIELD"), "No such column", "dead"),
            (400, Some("STRING_TOO_LONG"), "too long", "dead"),
            (
                400,
                Some("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"),
                "bad",
                "dead",
            ),
            (
                400,
                Some("CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY"),
                "entity type cannot be inserted: Task",
                "setup",
            ),
            (400, Some("INSUFFICIENT_ACCESS_OR_READONLY"), "no", "setup"),
            (
                401,
                Some("INVALID_SESSION_ID"),
                "Session expired or invalid",
                "reauth",
            ),
            (
                403,
                Some("REQUEST_LIMIT_EXCEEDED"),
                "TotalRequests Limit exceeded.",
                "setup",
            ),
            (403, Some("INSUFFICIENT_ACCESS"), "no", "setup"),
            (404, Some("NOT_FOUND"), missing_field, "setup"),
            (
                404,
                Some("NOT_FOUND"),
                "The requested resource does not exist",
                "dead",
            ),
            (408, None, "", "retry"),
            (429, None, "", "retry"),
            (500, Some("UNKNOWN_EXCEPTION"), "boom", "retry"),
            (503, Some("SERVER_UNAVAILABLE"), "later", "retry"),
            (400, Some("UNABLE_TO_LOCK_ROW"), "locked", "retry"),
        ] {
            assert_eq!(class(status, code, message), expected, "{status} {code:?}");
        }
    }

    #[test]
    fn keeps_the_code_status_and_wait() {
        let failure = classify(
            Answer {
                status: 503,
                code: Some("SERVER_UNAVAILABLE"),
                message: "later",
                retry_after: Some(Duration::from_secs(7)),
            },
            "Task",
        )
        .unwrap();
        assert_eq!(failure.retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(failure.status, Some(503));
        assert_eq!(failure.code.as_deref(), Some("SERVER_UNAVAILABLE"));
        let setup = classify(
            Answer {
                status: 404,
                code: Some("NOT_FOUND"),
                message: "Provided external ID field does not exist or is not accessible: X__c",
                retry_after: None,
            },
            "Task",
        )
        .unwrap();
        assert!(setup.reason.contains("X__c") && setup.reason.contains("External ID"));
    }
}
