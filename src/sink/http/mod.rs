//! The HTTP sink: one POST per record with Standard Webhooks headers and, when a
//! secret is set, an HMAC-SHA256 signature (docs/contract.md §3.3).
//!
//! Owns request building and response classification; retry timing is not its
//! business. Its keys and their validation are in `config`; what
//! `zcc-relay check` proves (DNS, TCP, TLS, no request) is in `check`.

mod check;
mod config;

pub use config::{HttpSinkConfig, HttpSinkSettings};

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::{Secret, SinkCheck};
use crate::deliver::Envelope;
use crate::failure::{Failure, classify_status, parse_retry_after};
use crate::sink::{BuildContext, Finding, Kind, Reload};

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

    pub async fn deliver(&self, envelope: &Envelope) -> Result<(), Failure> {
        // Percent-encoded where the id cannot be a header as it is (a control
        // character from Zoom would fail every attempt); signed as sent.
        let id = crate::escape::header_value(&envelope.webhook_id).into_owned();
        let bytes = &envelope.bytes[..];
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut request = self
            .client
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", id.as_str())
            .header("webhook-timestamp", timestamp.to_string());
        let key = self.key.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(key) = key {
            request = request.header("webhook-signature", sign(&key, &id, timestamp, bytes));
        }
        // The body shares the stored bytes: no copy per attempt.
        let body = bytes::Bytes::from_owner(envelope.bytes.clone());
        let response = match request.body(body).send().await {
            Ok(response) => response,
            Err(error) => {
                return Err(Failure::retry(crate::failure::describe_request(&error)));
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        match classify_status(status, retry_after) {
            None => Ok(()),
            Some(error) => Err(error),
        }
    }
}

impl Kind for HttpSink {
    const TYPE: &'static str = "http";
    const DEFAULT_EVENTS: &'static [&'static str] = &[];
    type Config = HttpSinkConfig;
    type Settings = HttpSinkSettings;

    fn validate(config: HttpSinkConfig, check: &mut SinkCheck<'_, '_>) -> Option<HttpSinkSettings> {
        config.validate(check)
    }

    fn reload(running: &HttpSinkSettings, loaded: &HttpSinkSettings) -> Reload<HttpSinkSettings> {
        running.reload(loaded)
    }

    async fn build(
        settings: &HttpSinkSettings,
        context: &BuildContext<'_>,
    ) -> anyhow::Result<HttpSink> {
        HttpSink::new(
            settings.url.clone(),
            settings.secret.as_ref(),
            context.timeout,
            context.tls,
        )
    }

    /// Nothing to prove before the first request: a receiver that is down is
    /// an ordinary retry.
    async fn ready(&self) -> Result<(), Failure> {
        Ok(())
    }

    /// The receiver's host resolves, takes a connection and (https) completes a
    /// verified TLS handshake; no request is sent (see `check`).
    async fn check(settings: &HttpSinkSettings, context: &BuildContext<'_>) -> Vec<Finding> {
        check::check(&settings.url, context).await
    }

    fn apply(&self, settings: &HttpSinkSettings) -> anyhow::Result<()> {
        self.set_secret(settings.secret.as_ref())
    }

    async fn deliver(&self, envelope: &Envelope) -> Result<(), Failure> {
        HttpSink::deliver(self, envelope).await
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

#[cfg(test)]
mod tests {
    use super::*;

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
