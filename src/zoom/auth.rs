//! The one Server-to-Server OAuth token owner (zoom-reference §1).
//!
//! Every Zoom caller (the socket, later the REST client and media downloads)
//! asks this cache. It refreshes ahead of expiry, single-flight (one request in
//! flight however many callers wait), and lets a caller that saw a 401 invalidate
//! exactly the token it used, so a refresh happens once, not once per caller.
//! It never logs or prints a token.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::Secret;

/// Never refresh earlier than this before expiry, never later than 5 minutes.
const MIN_REFRESH_AHEAD: Duration = Duration::from_secs(1);
const MAX_REFRESH_AHEAD: Duration = Duration::from_secs(300);

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

/// A bearer token with its expiry. `Debug` never shows the value.
#[derive(Clone)]
pub struct Token {
    value: Secret,
    pub expires_at: Instant,
    pub lifetime: Duration,
    /// Distinguishes tokens without comparing secrets in logs.
    pub generation: u64,
}

impl Token {
    pub fn expose(&self) -> &str {
        self.value.expose()
    }

    /// When this token should be replaced: 10 % of its lifetime before expiry,
    /// within 1 s ..= 5 min, so hour-long tokens are replaced 5 min early and
    /// short test tokens still get most of their life used.
    pub fn refresh_at(&self) -> Instant {
        let ahead = (self.lifetime / 10).clamp(MIN_REFRESH_AHEAD, MAX_REFRESH_AHEAD);
        self.expires_at
            .checked_sub(ahead)
            .unwrap_or(self.expires_at)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
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

/// Shared handle; clone freely.
#[derive(Clone)]
pub struct TokenCache {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// Replaced on SIGHUP when the client secret changed.
    credentials: std::sync::Mutex<Credentials>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    current: Option<Token>,
    generation: u64,
    refreshes: u64,
}

impl TokenCache {
    pub fn new(http: reqwest::Client, credentials: Credentials) -> TokenCache {
        TokenCache {
            inner: Arc::new(Inner {
                http,
                credentials: std::sync::Mutex::new(credentials),
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// A token good for at least the refresh margin. Concurrent callers share one
    /// request: the mutex is held across it.
    pub async fn token(&self) -> Result<Token, AuthError> {
        let mut state = self.inner.state.lock().await;
        if let Some(token) = &state.current
            && Instant::now() < token.refresh_at()
        {
            return Ok(token.clone());
        }
        let (value, lifetime) = self.request().await?;
        state.generation += 1;
        state.refreshes += 1;
        let token = Token {
            value,
            expires_at: Instant::now() + lifetime,
            lifetime,
            generation: state.generation,
        };
        tracing::debug!(
            generation = token.generation,
            lifetime_s = lifetime.as_secs(),
            "obtained Zoom access token"
        );
        state.current = Some(token.clone());
        Ok(token)
    }

    /// Drops `used` if it is still the current token (a 401 or a token-error
    /// frame said it is bad). A token already replaced by another caller's
    /// refresh is left alone, so N callers seeing one 401 cause one refresh.
    pub async fn invalidate(&self, used: &Token) {
        let mut state = self.inner.state.lock().await;
        if state
            .current
            .as_ref()
            .is_some_and(|t| t.generation == used.generation)
        {
            state.current = None;
        }
    }

    /// Uses `secret` from the next token request on; the current token, if
    /// any, stays until it is due for refresh or rejected.
    pub fn set_client_secret(&self, secret: Secret) {
        let mut credentials = self
            .inner
            .credentials
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        credentials.client_secret = secret;
    }

    /// How many tokens this process has obtained.
    pub async fn refreshes(&self) -> u64 {
        self.inner.state.lock().await.refreshes
    }

    async fn request(&self) -> Result<(Secret, Duration), AuthError> {
        let credentials = self
            .inner
            .credentials
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let response = self
            .inner
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
            let bytes = super::api::read_capped(response, MAX_TOKEN_RESPONSE_BYTES)
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
            return Ok((
                Secret::new(body.access_token),
                Duration::from_secs(body.expires_in.max(1)),
            ));
        }
        let text = super::api::error_text(response).await;
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

/// A token answer is a few hundred bytes.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// reqwest errors print their URL; ours carry no secrets, but strip it anyway so
/// a future query-string credential can never leak through an error message.
pub fn without_url(error: reqwest::Error) -> String {
    error.without_url().to_string()
}
