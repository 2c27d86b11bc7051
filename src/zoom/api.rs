//! The ZCC REST client used by reconciliation (docs/zoom.md §4–5).
//!
//! Owns everything about talking to `api_base_url`: the shared bearer token
//! (a 401 refreshes it once), `page_size` + `next_page_token` paging with the
//! same query on every page, explicit UTC offsets in `from`/`to`, windows of at
//! most 30 days, a client-side request budget (Zoom's limit is per account and
//! shared by every app on it), 429 handling (`Retry-After` as seconds or a
//! date), and retries of 5xx and network errors with backoff. It does not know
//! what the items mean; `reconcile/` does.

use std::time::{Duration, SystemTime};

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::auth::{AuthError, TokenCache};
use crate::backoff::Backoff;

/// Longest window one listing request may cover (Zoom: "a month").
pub const MAX_WINDOW: Duration = Duration::from_secs(30 * 86_400);
/// Items per page (Zoom's maximum for these listings is 300).
const PAGE_SIZE: u32 = 300;
/// Attempts for one request on 5xx / network errors before giving up.
const MAX_ATTEMPTS: u32 = 6;
/// Longest wait we accept from a `Retry-After` before failing the run instead.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The largest response body read from a listing (or an error answer): Zoom's
/// pages hold at most 300 items, a few hundred KiB. A larger body is a failed
/// request, never buffered whole.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// The most pages one listing takes for one window (300,000 items): past it, or
/// on a page token seen before, the listing stops (a server that never ends its
/// pagination would spend the account's shared rate limit for ever).
pub const MAX_PAGES: u32 = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{path}: response body larger than {limit} bytes; refused")]
    TooLarge { path: String, limit: usize },
    #[error("Zoom token: {0}")]
    Auth(#[from] AuthError),
    #[error("{path}: HTTP {status}: {message}")]
    Status {
        path: String,
        status: u16,
        message: String,
    },
    #[error("{path}: {message}")]
    Network { path: String, message: String },
    #[error("{path}: response is not the expected JSON: {message}")]
    Body { path: String, message: String },
}

/// A half-open time window `[from, to]` in ms since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from_ms: u64,
    pub to_ms: u64,
}

impl Window {
    /// Splits into consecutive windows of at most [`MAX_WINDOW`].
    pub fn split(self) -> Vec<Window> {
        let step = MAX_WINDOW.as_millis() as u64;
        let mut out = Vec::new();
        let mut from = self.from_ms;
        while from < self.to_ms {
            let to = (from + step).min(self.to_ms);
            out.push(Window {
                from_ms: from,
                to_ms: to,
            });
            from = to;
        }
        out
    }
}

/// `yyyy-MM-ddTHH:mm:ss+00:00`: an explicit offset, because the engagements
/// endpoint treats a trailing `Z` as a literal and applies its own timezone.
pub fn zoom_time(ms: u64) -> String {
    jiff::Timestamp::from_millisecond(ms as i64)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S+00:00").to_string())
        .unwrap_or_default()
}

/// A simple token bucket: at most `per_second` requests per second, bursts of
/// one second's worth.
struct Budget {
    per_second: f64,
    tokens: f64,
    last: Instant,
}

impl Budget {
    async fn take(&mut self) {
        let now = Instant::now();
        self.tokens = (self.tokens + now.duration_since(self.last).as_secs_f64() * self.per_second)
            .min(self.per_second);
        self.last = now;
        if self.tokens < 1.0 {
            let wait = Duration::from_secs_f64((1.0 - self.tokens) / self.per_second);
            tokio::time::sleep(wait).await;
            self.tokens = 1.0;
            self.last = Instant::now();
        }
        self.tokens -= 1.0;
    }
}

pub struct ZoomApi {
    http: reqwest::Client,
    base: url::Url,
    tokens: TokenCache,
    budget: Mutex<Budget>,
    requests: std::sync::atomic::AtomicU64,
}

impl ZoomApi {
    pub fn new(
        http: reqwest::Client,
        base: url::Url,
        tokens: TokenCache,
        max_requests_per_second: u32,
    ) -> ZoomApi {
        let per_second = f64::from(max_requests_per_second.max(1));
        ZoomApi {
            http,
            base,
            tokens,
            budget: Mutex::new(Budget {
                per_second,
                tokens: per_second,
                last: Instant::now(),
            }),
            requests: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Requests sent so far (for run reports and metrics).
    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A paged listing: `path` under the API base, `query` sent unchanged with
    /// every page, items under `key`. Pages are fetched one at a time as the
    /// caller asks, so a large window is never held whole.
    pub fn pages<'a>(&'a self, path: &'a str, query: &[(&str, String)], key: &'a str) -> Pages<'a> {
        let query = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        Pages {
            api: self,
            path,
            query,
            key,
            page_token: None,
            seen_tokens: Default::default(),
            pages: 0,
        }
    }

    /// One GET with the shared token, the budget and the retry rules.
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, ApiError> {
        let mut url = self.base.clone();
        {
            let mut segments = url.path_segments_mut().map_err(|_| ApiError::Network {
                path: path.into(),
                message: "api_base_url cannot have a path appended".into(),
            })?;
            segments.pop_if_empty();
            segments.extend(path.trim_start_matches('/').split('/'));
        }
        url.query_pairs_mut()
            .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let mut rng = StdRng::from_os_rng();
        let mut refreshed = false;
        let mut attempts = 0;
        loop {
            attempts += 1;
            self.budget.lock().await.take().await;
            let token = self.tokens.token().await?;
            self.requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let sent = self
                .http
                .get(url.clone())
                .bearer_auth(token.expose())
                .send()
                .await;
            let response = match sent {
                Ok(response) => response,
                Err(e) if attempts < MAX_ATTEMPTS => {
                    let delay = backoff.next(&mut rng);
                    tracing::debug!(path, error = %super::auth::without_url(e), ?delay, "Zoom API request failed; retrying");
                    tokio::time::sleep(delay).await;
                    continue;
                }
                Err(e) => {
                    return Err(ApiError::Network {
                        path: path.into(),
                        message: super::auth::without_url(e),
                    });
                }
            };
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            if (200..300).contains(&status) {
                let body = match crate::body::read_capped(response, MAX_BODY_BYTES).await {
                    Ok(Some(body)) => body,
                    Ok(None) => {
                        return Err(ApiError::TooLarge {
                            path: path.into(),
                            limit: MAX_BODY_BYTES,
                        });
                    }
                    Err(e) => {
                        return Err(ApiError::Network {
                            path: path.into(),
                            message: super::auth::without_url(e),
                        });
                    }
                };
                if body.trim_ascii().is_empty() {
                    return Ok(Value::Object(Default::default()));
                }
                return serde_json::from_slice(&body).map_err(|e| ApiError::Body {
                    path: path.into(),
                    message: e.to_string(),
                });
            }
            let message: String = crate::body::error_text(response)
                .await
                .chars()
                .take(300)
                .collect();
            match status {
                401 if !refreshed => {
                    // Once: a token another caller already replaced is left alone.
                    self.tokens.invalidate(&token).await;
                    refreshed = true;
                }
                429 => {
                    let wait = retry_after
                        .as_deref()
                        .and_then(|v| crate::failure::parse_retry_after(v, SystemTime::now()))
                        .unwrap_or_else(|| backoff.next(&mut rng));
                    if wait > MAX_RETRY_AFTER {
                        return Err(ApiError::Status {
                            path: path.into(),
                            status,
                            message,
                        });
                    }
                    tracing::warn!(path, retry_in = %humantime::format_duration(Duration::from_secs(wait.as_secs().max(1))), "Zoom API rate limit reached; waiting");
                    tokio::time::sleep(wait).await;
                }
                500..=599 if attempts < MAX_ATTEMPTS => {
                    let delay = backoff.next(&mut rng);
                    tracing::debug!(path, status, ?delay, "Zoom API error; retrying");
                    tokio::time::sleep(delay).await;
                }
                _ => {
                    return Err(ApiError::Status {
                        path: path.into(),
                        status,
                        message,
                    });
                }
            }
        }
    }
}

/// See [`ZoomApi::pages`].
pub struct Pages<'a> {
    api: &'a ZoomApi,
    path: &'a str,
    query: Vec<(String, String)>,
    key: &'a str,
    /// `None` before the first page, `Some("")` after the last.
    page_token: Option<String>,
    /// Every token this listing was handed, and the pages fetched.
    seen_tokens: std::collections::HashSet<String>,
    pages: u32,
}

impl Pages<'_> {
    /// The next page's items, or `None` after the last page.
    pub async fn next(&mut self) -> Result<Option<Vec<Value>>, ApiError> {
        if self.page_token.as_deref() == Some("") {
            return Ok(None);
        }
        let mut params: Vec<(&str, String)> = self
            .query
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        params.push(("page_size", PAGE_SIZE.to_string()));
        if let Some(token) = self.page_token.as_ref().filter(|t| !t.is_empty()) {
            params.push(("next_page_token", token.clone()));
        }
        let mut body = self.api.get(self.path, &params).await?;
        let items = match body.get_mut(self.key).map(Value::take) {
            Some(Value::Array(items)) => items,
            Some(Value::Null) | None => Vec::new(),
            Some(_) => {
                return Err(ApiError::Body {
                    path: self.path.into(),
                    message: format!("\"{}\" is not a list", self.key),
                });
            }
        };
        // Tokens expire after 15 minutes: the caller fetches the next page right
        // after handling this one; a token is never kept across a pause.
        let next = body
            .get("next_page_token")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        self.pages += 1;
        let endless = if next.is_empty() {
            None
        } else if self.seen_tokens.contains(&next) {
            Some("Zoom repeated a next_page_token")
        } else if self.pages >= MAX_PAGES {
            Some("the listing passed the page bound (1,000 pages) for one window")
        } else {
            None
        };
        if let Some(why) = endless {
            // This listing stops here; the caller's other listings go on.
            tracing::error!(
                listing = self.path,
                pages = self.pages,
                error = why,
                "Zoom listing never ends; stopped it (the rest of this window's listing is skipped)"
            );
            self.page_token = Some(String::new());
        } else {
            self.seen_tokens.insert(next.clone());
            self.page_token = Some(next);
        }
        Ok(Some(items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_split_at_thirty_days_without_gaps() {
        let day = 86_400_000;
        let window = Window {
            from_ms: 0,
            to_ms: 75 * day,
        };
        let parts = window.split();
        assert_eq!(parts.len(), 3);
        assert_eq!(
            parts[0],
            Window {
                from_ms: 0,
                to_ms: 30 * day
            }
        );
        assert_eq!(
            parts[2],
            Window {
                from_ms: 60 * day,
                to_ms: 75 * day
            }
        );
        assert!(parts.windows(2).all(|w| w[0].to_ms == w[1].from_ms));
        assert_eq!(
            Window {
                from_ms: 5,
                to_ms: 5
            }
            .split(),
            vec![]
        );
    }

    #[test]
    fn times_carry_an_explicit_utc_offset() {
        assert_eq!(zoom_time(1_764_151_200_000), "2025-11-26T10:00:00+00:00");
    }
}
