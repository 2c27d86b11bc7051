//! The HTTP sink: one POST per record with Standard Webhooks headers and, when a
//! secret is set, an HMAC-SHA256 signature (DESIGN.md §3.3).
//!
//! Owns request building and response classification; retry timing is not its
//! business.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::SinkError;
use crate::config::Secret;
use crate::record::RecordHeader;

/// Longest `Retry-After` we honour; a sink asking for more gets retried sooner
/// rather than parking a record for days on one header.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(6 * 3600);

pub struct HttpSink {
    client: reqwest::Client,
    url: url::Url,
    /// The signing key; replaced on SIGHUP when the secret changed.
    key: std::sync::RwLock<Option<Arc<Vec<u8>>>>,
}

impl HttpSink {
    pub fn new(
        url: url::Url,
        secret: Option<&Secret>,
        timeout: Duration,
        tls: &Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<HttpSink> {
        let key = secret.map(|s| signing_key(s.expose())).transpose()?;
        Ok(HttpSink {
            client: crate::tls::http_client(tls, timeout)?,
            url,
            key: std::sync::RwLock::new(key.map(Arc::new)),
        })
    }

    /// Signs with `secret` (or not at all) from the next request on. A secret
    /// that is not a usable key is refused and the current one kept.
    pub fn set_secret(&self, secret: Option<&Secret>) -> anyhow::Result<()> {
        let key = secret.map(|s| signing_key(s.expose())).transpose()?;
        *self.key.write().unwrap_or_else(|p| p.into_inner()) = key.map(Arc::new);
        Ok(())
    }

    pub async fn deliver(&self, header: &RecordHeader<'_>, bytes: &[u8]) -> Result<(), SinkError> {
        // Percent-encoded where the id cannot be a header as it is (a control
        // character from Zoom would fail every attempt); signed as sent.
        let id = crate::escape::header_value(&header.webhook_id()).into_owned();
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut request = self
            .client
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", timestamp.to_string());
        let key = self.key.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(key) = key {
            request = request.header("webhook-signature", sign(&key, &id, timestamp, bytes));
        }
        let response = match request.body(bytes.to_vec()).send().await {
            Ok(response) => response,
            Err(error) => {
                return Err(SinkError::Retryable {
                    reason: describe(&error),
                    status: None,
                    after: None,
                });
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        match classify(status, retry_after) {
            None => Ok(()),
            Some(error) => Err(error),
        }
    }
}

/// The HMAC key: the base64 part of a `whsec_…` secret, else the raw bytes.
pub fn signing_key(secret: &str) -> anyhow::Result<Vec<u8>> {
    match secret.strip_prefix("whsec_") {
        Some(encoded) => BASE64.decode(encoded).map_err(|_| {
            anyhow::anyhow!("sink secret starts with whsec_ but the rest is not base64")
        }),
        None => Ok(secret.as_bytes().to_vec()),
    }
}

/// `v1,<base64 HMAC-SHA256 over "id.timestamp.body">`.
pub fn sign(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// Maps an HTTP status to "delivered", "try again" or "give up". 2xx is
/// delivered; 408, 429 and 5xx are temporary; every other status (redirects we
/// did not follow, 4xx) means the sink will not take this record as sent.
pub fn classify(status: u16, retry_after: Option<Duration>) -> Option<SinkError> {
    match status {
        200..=299 => None,
        408 | 429 | 500..=599 => Some(SinkError::Retryable {
            reason: format!("HTTP {status}"),
            status: Some(status),
            after: retry_after.map(|d| d.min(MAX_RETRY_AFTER)),
        }),
        _ => Some(SinkError::Permanent {
            reason: format!("HTTP {status}"),
            status: Some(status),
        }),
    }
}

/// `Retry-After` as delta seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let now = jiff::Timestamp::try_from(now).ok()?;
    let wait = date.duration_since(now);
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    // Walk to the root cause ("connection refused", "dns error") without the URL.
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

    fn check(status: u16, expected: &str) {
        let got = match classify(status, None) {
            None => "ok",
            Some(SinkError::Retryable { .. }) => "retry",
            Some(SinkError::Permanent { .. }) => "dead",
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
        let Some(SinkError::Retryable { after, .. }) =
            classify(503, Some(Duration::from_secs(10 * 86400)))
        else {
            panic!("503 is retryable");
        };
        assert_eq!(after, Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn signs_like_standard_webhooks() {
        // Test vector from the Standard Webhooks reference implementations.
        let key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert_eq!(signing_key("plain").unwrap(), b"plain");
        assert!(signing_key("whsec_!!!").is_err());
    }
}
