//! The bearer-token owner any HTTP client in the daemon can have: a
//! [`TokenCache`] over a [`TokenSource`].
//!
//! The cache refreshes ahead of expiry, single-flight (one request in flight
//! however many callers wait), and lets a caller that saw a 401 invalidate
//! exactly the token it used, so a refresh happens once, not once per caller.
//! A source only fetches: Zoom's account credentials (`zoom::auth`), the
//! OAuth 2.0 client-credentials grant most CRMs use ([`ClientCredentials`]),
//! a static token kept in a file and re-read after a 401 ([`FileToken`]).
//! Tokens are [`Secret`]s: nothing here logs or prints one.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::Secret;
use crate::failure::Failure;

/// Never refresh earlier than this before expiry, never later than 5 minutes.
const MIN_REFRESH_AHEAD: Duration = Duration::from_secs(1);
const MAX_REFRESH_AHEAD: Duration = Duration::from_secs(300);
/// A token answer is a few hundred bytes; a larger one is a failed request.
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

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

/// What a source hands the cache: the token and how long it lives. `Debug`
/// shows `***` for the token.
#[derive(Debug)]
pub struct Fetched {
    pub value: Secret,
    pub lifetime: Duration,
}

/// Where tokens come from. Only fetches: caching, refresh timing and
/// invalidation are the [`TokenCache`]'s.
pub trait TokenSource: Send + Sync + 'static {
    type Error: Send;
    /// Names the token in log lines ("Zoom", a sink's name).
    fn name(&self) -> &str;
    /// One token request.
    fn fetch(&self) -> impl Future<Output = Result<Fetched, Self::Error>> + Send;
}

/// Shared handle; clone freely.
pub struct TokenCache<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for TokenCache<S> {
    fn clone(&self) -> Self {
        TokenCache {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<S> {
    source: S,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    current: Option<Token>,
    generation: u64,
    refreshes: u64,
}

impl<S: TokenSource> TokenCache<S> {
    pub fn new(source: S) -> TokenCache<S> {
        TokenCache {
            inner: Arc::new(Inner {
                source,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// The source, for what it lets change at run time (a reloaded secret).
    pub fn source(&self) -> &S {
        &self.inner.source
    }

    /// A token good for at least the refresh margin. Concurrent callers share one
    /// request: the mutex is held across it. A failed request is not cached.
    pub async fn token(&self) -> Result<Token, S::Error> {
        let mut state = self.inner.state.lock().await;
        if let Some(token) = &state.current
            && Instant::now() < token.refresh_at()
        {
            return Ok(token.clone());
        }
        let Fetched { value, lifetime } = self.inner.source.fetch().await?;
        state.generation += 1;
        state.refreshes += 1;
        let token = Token {
            value,
            expires_at: Instant::now() + lifetime,
            lifetime,
            generation: state.generation,
        };
        tracing::debug!(
            token = self.inner.source.name(),
            generation = token.generation,
            lifetime_s = lifetime.as_secs(),
            "obtained access token"
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

    /// How many tokens this cache has obtained.
    pub async fn refreshes(&self) -> u64 {
        self.inner.state.lock().await.refreshes
    }
}

/// Why a generic source got no token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// The endpoint refused the credentials (4xx): the set-up is wrong.
    #[error("the token endpoint rejected the credentials (HTTP {status}): {reason}")]
    Rejected { status: u16, reason: String },
    /// Network trouble, 429 or 5xx: worth retrying.
    #[error("token request failed: {0}")]
    Unavailable(String),
    /// A token file that cannot be read or is empty.
    #[error("{0}")]
    Unreadable(String),
}

impl OAuthError {
    /// The delivery failure a sink reports when it got no token.
    pub fn failure(&self) -> Failure {
        match self {
            OAuthError::Rejected { status, .. } => {
                Failure::setup(self.to_string()).with_status(*status)
            }
            OAuthError::Unavailable(_) => Failure::retry(self.to_string()),
            OAuthError::Unreadable(_) => Failure::setup(self.to_string()),
        }
    }
}

/// How a client authenticates to the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// `client_id` and `client_secret` in the form body (Salesforce, Entra ID,
    /// ServiceNow).
    Body,
    /// `client_id` and `client_secret` in a JSON body (Zendesk's `/oauth/tokens`).
    JsonBody,
    /// HTTP Basic with `client_id:client_secret`, a form body.
    Basic,
}

/// The OAuth 2.0 client-credentials grant (RFC 6749 §4.4): Salesforce's
/// `{instance_url}/services/oauth2/token`, Entra ID's
/// `…/{tenant}/oauth2/v2.0/token` with a `scope`, ServiceNow's
/// `/oauth_token.do` (form-encoded), Zendesk's `/oauth/tokens` (JSON).
pub struct ClientCredentials {
    name: String,
    http: reqwest::Client,
    token_url: url::Url,
    client_id: String,
    /// Replaced on SIGHUP when the secret changed.
    client_secret: std::sync::Mutex<Secret>,
    scope: Option<String>,
    auth: ClientAuth,
    /// For endpoints whose answer carries no `expires_in` (Salesforce: the
    /// org's session timeout applies).
    default_lifetime: Duration,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<u64>,
}

impl ClientCredentials {
    pub fn new(
        name: impl Into<String>,
        http: reqwest::Client,
        token_url: url::Url,
        client_id: impl Into<String>,
        client_secret: Secret,
    ) -> ClientCredentials {
        ClientCredentials {
            name: name.into(),
            http,
            token_url,
            client_id: client_id.into(),
            client_secret: std::sync::Mutex::new(client_secret),
            scope: None,
            auth: ClientAuth::Body,
            default_lifetime: Duration::from_secs(15 * 60),
        }
    }

    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    pub fn with_auth(mut self, auth: ClientAuth) -> Self {
        self.auth = auth;
        self
    }

    pub fn with_default_lifetime(mut self, lifetime: Duration) -> Self {
        self.default_lifetime = lifetime;
        self
    }

    /// Uses `secret` from the next token request on.
    pub fn set_client_secret(&self, secret: Secret) {
        *self.client_secret.lock().unwrap_or_else(|p| p.into_inner()) = secret;
    }
}

impl TokenSource for ClientCredentials {
    type Error = OAuthError;

    fn name(&self) -> &str {
        &self.name
    }

    async fn fetch(&self) -> Result<Fetched, OAuthError> {
        let secret = self
            .client_secret
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        let request = self
            .http
            .post(self.token_url.clone())
            .header("accept", "application/json");
        let request = match self.auth {
            ClientAuth::Body | ClientAuth::JsonBody => {
                form.push(("client_id", &self.client_id));
                form.push(("client_secret", secret.expose()));
                if self.auth == ClientAuth::JsonBody {
                    let body: serde_json::Map<String, serde_json::Value> = form
                        .into_iter()
                        .map(|(key, value)| (key.to_owned(), value.into()))
                        .collect();
                    request.json(&body)
                } else {
                    request.form(&form)
                }
            }
            ClientAuth::Basic => request
                .basic_auth(&self.client_id, Some(secret.expose()))
                .form(&form),
        };
        let response = request
            .send()
            .await
            .map_err(|e| OAuthError::Unavailable(e.without_url().to_string()))?;
        let status = response.status();
        if status.is_success() {
            let bytes = crate::body::read_capped(response, MAX_TOKEN_RESPONSE_BYTES)
                .await
                .map_err(|e| {
                    OAuthError::Unavailable(format!("bad token response: {}", e.without_url()))
                })?
                .ok_or_else(|| OAuthError::Unavailable("token response too large".into()))?;
            let body: TokenResponse = serde_json::from_slice(&bytes)
                .map_err(|e| OAuthError::Unavailable(format!("bad token response: {e}")))?;
            if body.access_token.is_empty() {
                return Err(OAuthError::Unavailable(
                    "token response had an empty access_token".into(),
                ));
            }
            let lifetime = body
                .expires_in
                .map_or(self.default_lifetime, |s| Duration::from_secs(s.max(1)));
            return Ok(Fetched {
                value: Secret::new(body.access_token),
                lifetime,
            });
        }
        let text = crate::body::error_text(response).await;
        let reason: String = text.chars().take(200).collect();
        if status.as_u16() == 429 || status.is_server_error() {
            Err(OAuthError::Unavailable(format!("HTTP {status}: {reason}")))
        } else {
            Err(OAuthError::Rejected {
                status: status.as_u16(),
                reason,
            })
        }
    }
}

/// A static bearer token kept in a file (a HubSpot private-app token): read
/// when first needed and again after [`TokenCache::invalidate`], so a token
/// rotated on disk is picked up at the first 401.
pub struct FileToken {
    name: String,
    path: PathBuf,
}

/// How long a file token is trusted before the file is read again anyway.
const FILE_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

impl FileToken {
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> FileToken {
        FileToken {
            name: name.into(),
            path: path.into(),
        }
    }
}

impl TokenSource for FileToken {
    type Error = OAuthError;

    fn name(&self) -> &str {
        &self.name
    }

    async fn fetch(&self) -> Result<Fetched, OAuthError> {
        let path = self.path.display();
        // A regular file of at most 64 KiB, read without waiting (a FIFO or
        // a device is refused), like every secret file.
        let file = self.path.clone();
        let text = tokio::task::spawn_blocking(move || {
            crate::config::read_bounded(&file, crate::config::SECRET_FILE_LIMIT)
        })
        .await
        .map_err(|e| OAuthError::Unreadable(format!("cannot read {path}: {e}")))?
        .map_err(|e| OAuthError::Unreadable(format!("cannot read {path}: {e}")))?;
        let value = text.trim_end();
        if value.is_empty() {
            return Err(OAuthError::Unreadable(format!("{path} is empty")));
        }
        Ok(Fetched {
            value: Secret::new(value.to_owned()),
            lifetime: FILE_TOKEN_LIFETIME,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Counts its fetches; each takes `delay` of (paused) time, and the first
    /// `failures` fail.
    struct Counting {
        fetches: AtomicU64,
        lifetime: Duration,
        delay: Duration,
        failures: u64,
    }

    impl Counting {
        fn new(lifetime: Duration) -> Counting {
            Counting {
                fetches: AtomicU64::new(0),
                lifetime,
                delay: Duration::from_millis(100),
                failures: 0,
            }
        }

        fn fetches(&self) -> u64 {
            self.fetches.load(Ordering::SeqCst)
        }
    }

    impl TokenSource for Counting {
        type Error = String;

        fn name(&self) -> &str {
            "counting"
        }

        async fn fetch(&self) -> Result<Fetched, String> {
            let n = self.fetches.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(self.delay).await;
            if n <= self.failures {
                return Err(format!("failure {n}"));
            }
            Ok(Fetched {
                value: Secret::new(format!("token-{n}")),
                lifetime: self.lifetime,
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn refreshes_ahead_of_expiry_not_before() {
        // 100 s tokens are refreshed 10 s (10 %) before they expire.
        let cache = TokenCache::new(Counting::new(Duration::from_secs(100)));
        let first = cache.token().await.unwrap();
        assert_eq!(first.expose(), "token-1");
        tokio::time::advance(Duration::from_secs(89)).await;
        assert_eq!(cache.token().await.unwrap().expose(), "token-1");
        assert_eq!(cache.source().fetches(), 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        let second = cache.token().await.unwrap();
        assert_eq!(second.expose(), "token-2");
        assert!(second.generation > first.generation);
        assert_eq!(cache.refreshes().await, 2);

        // An hour-long token: 5 minutes ahead at most.
        let cache = TokenCache::new(Counting::new(Duration::from_secs(3600)));
        let token = cache.token().await.unwrap();
        assert_eq!(
            token.expires_at - token.refresh_at(),
            Duration::from_secs(300)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_request() {
        let cache = TokenCache::new(Counting::new(Duration::from_secs(3600)));
        let callers: Vec<_> = (0..20)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.token().await.unwrap() })
            })
            .collect();
        for caller in callers {
            assert_eq!(caller.await.unwrap().expose(), "token-1");
        }
        assert_eq!(cache.source().fetches(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn one_refresh_after_many_callers_invalidate_the_same_token() {
        let cache = TokenCache::new(Counting::new(Duration::from_secs(3600)));
        let used = cache.token().await.unwrap();
        let callers: Vec<_> = (0..10)
            .map(|_| {
                let (cache, used) = (cache.clone(), used.clone());
                tokio::spawn(async move {
                    cache.invalidate(&used).await;
                    cache.token().await.unwrap()
                })
            })
            .collect();
        for caller in callers {
            assert_eq!(caller.await.unwrap().expose(), "token-2");
        }
        assert_eq!(cache.source().fetches(), 2);
        // The stale token no longer invalidates its successor.
        cache.invalidate(&used).await;
        assert_eq!(cache.token().await.unwrap().expose(), "token-2");
        assert_eq!(cache.source().fetches(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_fetch_is_not_cached() {
        let mut source = Counting::new(Duration::from_secs(3600));
        source.failures = 1;
        let cache = TokenCache::new(source);
        assert_eq!(cache.token().await.unwrap_err(), "failure 1");
        assert_eq!(cache.token().await.unwrap().expose(), "token-2");
        assert_eq!(cache.refreshes().await, 1);
    }

    #[tokio::test]
    async fn a_file_token_is_read_again_after_invalidation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "first\n").unwrap();
        let cache = TokenCache::new(FileToken::new("hubspot", &path));
        let first = cache.token().await.unwrap();
        assert_eq!(first.expose(), "first");
        std::fs::write(&path, "second\n").unwrap();
        assert_eq!(cache.token().await.unwrap().expose(), "first");
        cache.invalidate(&first).await;
        assert_eq!(cache.token().await.unwrap().expose(), "second");

        std::fs::write(&path, "\n").unwrap();
        let empty = TokenCache::new(FileToken::new("hubspot", &path));
        let error = empty.token().await.unwrap_err();
        assert_eq!(error.failure().class, crate::failure::Class::Setup);
        assert!(!format!("{:?}", cache.token().await.unwrap()).contains("second"));
    }

    /// A token endpoint on 127.0.0.1 answering `status` and `body`, recording
    /// each request's form and `authorization` header.
    async fn endpoint(
        status: u16,
        body: &'static str,
    ) -> (
        url::Url,
        Arc<std::sync::Mutex<Vec<(String, Option<String>)>>>,
    ) {
        use axum::http::{HeaderMap, StatusCode};
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        let app = axum::Router::new().route(
            "/token",
            axum::routing::post(move |headers: HeaderMap, form: String| {
                let record = record.clone();
                async move {
                    let authorization = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    record.lock().unwrap().push((form, authorization));
                    (
                        StatusCode::from_u16(status).unwrap(),
                        [("content-type", "application/json")],
                        body,
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url.parse().unwrap(), seen)
    }

    fn client_credentials(url: url::Url) -> ClientCredentials {
        ClientCredentials::new(
            "crm",
            crate::tls::http_client(
                &crate::tls::client_config().unwrap(),
                Duration::from_secs(10),
            )
            .unwrap(),
            url,
            "client-1",
            Secret::new("s3cret".into()),
        )
    }

    #[tokio::test]
    async fn client_credentials_grant_in_the_body_with_a_scope() {
        let (url, seen) = endpoint(200, r#"{"access_token":"at-1","expires_in":3599}"#).await;
        let source = client_credentials(url).with_scope("https://org.crm.dynamics.com/.default");
        let fetched = source.fetch().await.unwrap();
        assert_eq!(fetched.value.expose(), "at-1");
        assert_eq!(fetched.lifetime, Duration::from_secs(3599));
        let (form, authorization) = seen.lock().unwrap()[0].clone();
        assert_eq!(
            form,
            "grant_type=client_credentials&scope=https%3A%2F%2Forg.crm.dynamics.com%2F.default\
             &client_id=client-1&client_secret=s3cret"
        );
        assert_eq!(authorization, None);
    }

    #[tokio::test]
    async fn client_credentials_without_expiry_use_the_default_lifetime() {
        // Salesforce answers without `expires_in`.
        let (url, seen) = endpoint(200, r#"{"access_token":"at-1","instance_url":"x"}"#).await;
        let source = client_credentials(url)
            .with_auth(ClientAuth::Basic)
            .with_default_lifetime(Duration::from_secs(600));
        assert_eq!(
            source.fetch().await.unwrap().lifetime,
            Duration::from_secs(600)
        );
        let (form, authorization) = seen.lock().unwrap()[0].clone();
        assert_eq!(form, "grant_type=client_credentials");
        assert_eq!(authorization.as_deref(), Some("Basic Y2xpZW50LTE6czNjcmV0"));
    }

    #[tokio::test]
    async fn client_credentials_in_a_json_body() {
        let (url, seen) = endpoint(200, r#"{"access_token":"at-1","expires_in":60}"#).await;
        let source = client_credentials(url)
            .with_auth(ClientAuth::JsonBody)
            .with_scope("read write");
        assert_eq!(source.fetch().await.unwrap().value.expose(), "at-1");
        let (body, authorization) = seen.lock().unwrap()[0].clone();
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "grant_type": "client_credentials",
                "scope": "read write",
                "client_id": "client-1",
                "client_secret": "s3cret",
            })
        );
        assert_eq!(authorization, None);
    }

    #[tokio::test]
    async fn client_credentials_errors_are_classified() {
        let (url, _) = endpoint(400, r#"{"error":"invalid_client"}"#).await;
        let error = client_credentials(url).fetch().await.unwrap_err();
        assert!(
            matches!(error, OAuthError::Rejected { status: 400, .. }),
            "{error:?}"
        );
        assert_eq!(error.failure().class, crate::failure::Class::Setup);
        assert!(!error.to_string().contains("s3cret"));

        let (url, _) = endpoint(503, "down").await;
        let error = client_credentials(url).fetch().await.unwrap_err();
        assert!(matches!(error, OAuthError::Unavailable(_)), "{error:?}");
        assert!(matches!(
            error.failure().class,
            crate::failure::Class::Retry { .. }
        ));
    }
}
