//! The one Server-to-Server OAuth token owner (docs/zoom.md §1).
//!
//! Every Zoom caller (the socket, the REST client and media downloads) asks
//! this cache: the daemon's shared [`crate::oauth::TokenCache`] (refresh ahead
//! of expiry, single flight, invalidate after a 401) over Zoom's
//! `account_credentials` grant, which this module owns. It never logs or
//! prints a token.

use std::time::Duration;

use serde::Deserialize;

use crate::config::Secret;
use crate::oauth::{Fetched, TokenSource};

pub use crate::oauth::Token;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Zoom refused the credentials (401/400 from the token endpoint): an operator
    /// problem, retrying fast will not help.
    #[error("Zoom rejected the app credentials (HTTP {status}): {reason}")]
    Rejected { status: u16, reason: String },
    /// Network trouble, 429 or 5xx: worth retrying with backoff.
    #[error("token request failed: {0}")]
    Unavailable(String),
}

impl AuthError {
    pub fn is_credentials_problem(&self) -> bool {
        matches!(self, AuthError::Rejected { .. })
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

#[derive(Debug, Clone)]
pub struct Credentials {
    pub oauth_url: url::Url,
    pub account_id: String,
    pub client_id: String,
    pub client_secret: Secret,
}

impl Credentials {
    pub fn from_settings(zoom: &crate::config::ZoomSettings) -> Credentials {
        Credentials {
            oauth_url: zoom.oauth_url.clone(),
            account_id: zoom.account_id.clone(),
            client_id: zoom.client_id.clone(),
            client_secret: zoom.client_secret.clone(),
        }
    }
}

/// Zoom's Server-to-Server grant (`account_credentials`) as a [`TokenSource`].
pub struct AccountCredentials {
    http: reqwest::Client,
    /// Replaced on SIGHUP when the client secret changed.
    credentials: std::sync::Mutex<Credentials>,
}

impl TokenSource for AccountCredentials {
    type Error = AuthError;

    fn name(&self) -> &str {
        "Zoom"
    }

    async fn fetch(&self) -> Result<Fetched, AuthError> {
        let credentials = self
            .credentials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let response = self
            .http
            .post(credentials.oauth_url.clone())
            .basic_auth(
                &credentials.client_id,
                Some(credentials.client_secret.expose()),
            )
            .form(&[
                ("grant_type", "account_credentials"),
                ("account_id", &credentials.account_id),
            ])
            .send()
            .await
            .map_err(|e| AuthError::Unavailable(without_url(e)))?;
        let status = response.status();
        if status.is_success() {
            let bytes = crate::body::read_capped(response, MAX_TOKEN_RESPONSE_BYTES)
                .await
                .map_err(|e| {
                    AuthError::Unavailable(format!("bad token response: {}", without_url(e)))
                })?
                .ok_or_else(|| AuthError::Unavailable("token response too large".into()))?;
            let body: TokenResponse = serde_json::from_slice(&bytes)
                .map_err(|e| AuthError::Unavailable(format!("bad token response: {e}")))?;
            if body.access_token.is_empty() {
                return Err(AuthError::Unavailable(
                    "token response had an empty access_token".into(),
                ));
            }
            return Ok(Fetched {
                value: Secret::new(body.access_token),
                lifetime: Duration::from_secs(body.expires_in.max(1)),
            });
        }
        let text = crate::body::error_text(response).await;
        let reason: String = text.chars().take(200).collect();
        if status.as_u16() == 429 || status.is_server_error() {
            Err(AuthError::Unavailable(format!("HTTP {status}: {reason}")))
        } else {
            Err(AuthError::Rejected {
                status: status.as_u16(),
                reason,
            })
        }
    }
}

/// The Zoom token owner: the shared [`crate::oauth::TokenCache`] over Zoom's
/// account credentials. Shared handle; clone freely.
#[derive(Clone)]
pub struct TokenCache {
    cache: crate::oauth::TokenCache<AccountCredentials>,
}

impl TokenCache {
    pub fn new(http: reqwest::Client, credentials: Credentials) -> TokenCache {
        TokenCache {
            cache: crate::oauth::TokenCache::new(AccountCredentials {
                http,
                credentials: std::sync::Mutex::new(credentials),
            }),
        }
    }

    /// A token good for at least the refresh margin; concurrent callers share
    /// one request.
    pub async fn token(&self) -> Result<Token, AuthError> {
        self.cache.token().await
    }

    /// Drops `used` if it is still the current token (a 401 or a token-error
    /// frame said it is bad); one refresh however many callers saw it fail.
    pub async fn invalidate(&self, used: &Token) {
        self.cache.invalidate(used).await
    }

    /// Uses `secret` from the next token request on; the current token, if
    /// any, stays until it is due for refresh or rejected.
    pub fn set_client_secret(&self, secret: Secret) {
        let mut credentials = self
            .cache
            .source()
            .credentials
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        credentials.client_secret = secret;
    }

    /// How many tokens this process has obtained.
    pub async fn refreshes(&self) -> u64 {
        self.cache.refreshes().await
    }
}

/// A token answer is a few hundred bytes.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// reqwest errors print their URL; ours carry no secrets, but strip it anyway so
/// a future query-string credential can never leak through an error message.
pub fn without_url(error: reqwest::Error) -> String {
    error.without_url().to_string()
}
