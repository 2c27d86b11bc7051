//! How a delivery or a media fetch failed, sorted by what should happen next.
//!
//! One vocabulary for every sink kind and the media stage: the remote's answer
//! is classified once, where it is read (a sink, the downloader), into one of
//! four [`Class`]es; `deliver/` and the media stage decide timing and
//! bookkeeping from the class alone. This module owns the type and the plain
//! HTTP status table; vendor-specific tables (an error code in a JSON body, a
//! throttle header) live with the sink that reads them.

use std::time::Duration;

/// What the caller should do about a failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// Temporary (network, 5xx, throttling): try again, no sooner than `after`
    /// when the remote said when.
    Retry { after: Option<Duration> },
    /// The remote refused the credentials: get a new token once and try again
    /// at once. A second refusal in a row is a [`Class::Setup`] problem.
    Reauthenticate,
    /// This record can never be delivered as it is: dead-letter it with the
    /// reason and code.
    Permanent,
    /// The sink's set-up is wrong (missing field or key, missing permission,
    /// bad credentials): every record stays pending and is retried until the
    /// set-up is fixed; never uses up attempts, never dead-letters.
    Setup,
}

/// A classified failure. `reason` is for a human reading the log or the
/// dead-letter (for [`Class::Setup`], it names what to fix); it never holds a
/// secret or a signed URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Failure {
    pub class: Class,
    pub reason: String,
    /// The HTTP status, when there was a response.
    pub status: Option<u16>,
    /// The vendor's own error code (`REQUEST_LIMIT_EXCEEDED`), when it gave one.
    pub code: Option<String>,
}

impl Failure {
    pub fn new(class: Class, reason: impl Into<String>) -> Failure {
        Failure {
            class,
            reason: reason.into(),
            status: None,
            code: None,
        }
    }

    pub fn retry(reason: impl Into<String>) -> Failure {
        Failure::new(Class::Retry { after: None }, reason)
    }

    pub fn permanent(reason: impl Into<String>) -> Failure {
        Failure::new(Class::Permanent, reason)
    }

    pub fn setup(reason: impl Into<String>) -> Failure {
        Failure::new(Class::Setup, reason)
    }

    pub fn reauthenticate(reason: impl Into<String>) -> Failure {
        Failure::new(Class::Reauthenticate, reason)
    }

    pub fn with_status(mut self, status: u16) -> Failure {
        self.status = Some(status);
        self
    }

    pub fn with_code(mut self, code: impl Into<String>) -> Failure {
        self.code = Some(code.into());
        self
    }

    /// The earliest the remote wants to hear from us again (only meaningful for
    /// [`Class::Retry`]; ignored otherwise).
    pub fn retry_after(&self) -> Option<Duration> {
        match self.class {
            Class::Retry { after } => after,
            _ => None,
        }
    }

    pub fn is_retry(&self) -> bool {
        matches!(self.class, Class::Retry { .. })
    }
}

/// Longest wait we accept from a remote's `Retry-After`: one asking for more is
/// retried sooner rather than parking a record for days on one header.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(6 * 3600);

/// The plain HTTP table: 2xx is delivered (`None`); 408, 429 and 5xx are
/// temporary (waiting at least `retry_after`, capped at [`MAX_RETRY_AFTER`]);
/// every other status (redirects not followed, other 4xx) refuses the record.
pub fn classify_status(status: u16, retry_after: Option<Duration>) -> Option<Failure> {
    let reason = format!("HTTP {status}");
    match status {
        200..=299 => None,
        408 | 429 | 500..=599 => Some(
            Failure::new(
                Class::Retry {
                    after: retry_after.map(|d| d.min(MAX_RETRY_AFTER)),
                },
                reason,
            )
            .with_status(status),
        ),
        _ => Some(Failure::permanent(reason).with_status(status)),
    }
}

/// `Retry-After` as delta seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let now = jiff::Timestamp::try_from(now).ok()?;
    let wait = date.duration_since(now);
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

/// What went wrong with a request that got no answer (timed out, refused,
/// DNS…), down to its root cause and without the URL, which may carry a
/// query-string credential. A reason for a retryable [`Failure`].
pub fn describe_request(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(error);
    let mut root = None;
    while let Some(s) = source {
        root = Some(s.to_string());
        source = s.source();
    }
    match root {
        Some(root) => format!("{kind}: {root}"),
        None => kind.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn check(status: u16, expected: &str) {
        let got = match classify_status(status, None).map(|f| f.class) {
            None => "ok",
            Some(Class::Retry { .. }) => "retry",
            Some(Class::Permanent) => "dead",
            Some(Class::Reauthenticate) => "reauth",
            Some(Class::Setup) => "setup",
        };
        assert_eq!(got, expected, "HTTP {status}");
    }

    #[test]
    fn classifies_statuses() {
        for (status, expected) in [
            (200, "ok"),
            (201, "ok"),
            (204, "ok"),
            (301, "dead"),
            (400, "dead"),
            (401, "dead"),
            (404, "dead"),
            (408, "retry"),
            (409, "dead"),
            (413, "dead"),
            (422, "dead"),
            (429, "retry"),
            (500, "retry"),
            (502, "retry"),
            (503, "retry"),
            (599, "retry"),
        ] {
            check(status, expected);
        }
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates_and_is_clamped() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:40:37 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        let failure = classify_status(503, Some(Duration::from_secs(10 * 86400))).unwrap();
        assert_eq!(failure.retry_after(), Some(MAX_RETRY_AFTER));
        assert_eq!(failure.status, Some(503));
    }
}
