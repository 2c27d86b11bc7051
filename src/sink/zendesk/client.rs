//! The Zendesk API client of one sink: authentication (an OAuth client's
//! client-credentials token from `{url}/oauth/tokens`, or Basic
//! `{email}/token:{api_token}`), every call through the sink's request
//! budget and every ticket update through the per-minute update budget,
//! error bodies classified by [`super::error`], and the calls the sink
//! makes: tickets by `external_id`, the create with `Idempotency-Key`,
//! updates (one comment each), comments and their redaction, uploads,
//! users. Never logs a token.

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde_json::{Value, json};

use super::config::{OAUTH_SCOPE, ZendeskAuth, ZendeskSinkSettings};
use super::error::{classify, said};
use crate::config::Secret;
use crate::crm::budget::Budget;
use crate::failure::{Failure, parse_retry_after};
use crate::oauth::{ClientAuth, ClientCredentials, TokenCache};

/// Answers above this are refused unread.
const MAX_ANSWER: usize = 8 * 1024 * 1024;
/// Comment pages followed at most (100 comments each).
const MAX_COMMENT_PAGES: usize = 50;
/// An OAuth answer without `expires_in` is trusted this long.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 60);

enum Auth {
    OAuth(TokenCache<ClientCredentials>),
    ApiToken {
        email: String,
        token: std::sync::Mutex<Secret>,
    },
}

/// A request body.
pub enum Body {
    None,
    Json(Value),
    Bytes {
        content_type: String,
        bytes: Vec<u8>,
    },
}

/// A successful answer: its body and `x-idempotency-lookup`.
pub struct Answer {
    pub body: Value,
    pub lookup: Option<String>,
}

/// What `create_ticket` learned.
pub enum Created {
    /// The ticket's id; `replayed` when Zendesk answered an earlier
    /// request's ticket (`x-idempotency-lookup: hit`).
    Ticket { id: u64, replayed: bool },
    /// `IdempotentRequestError`: the key made a ticket before, from another
    /// body (an earlier rendering of the engagement).
    KeyUsed(Failure),
}

/// A comment as the sink reads it back.
#[derive(Debug, Clone)]
pub struct Comment {
    pub id: u64,
    pub kind: String,
    pub body: String,
    /// (file name, content URL) of each attachment.
    pub attachments: Vec<(String, String)>,
}

/// An upload's token and its attachment's content URL.
pub struct Upload {
    pub token: String,
    pub content_url: String,
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    auth: Auth,
    budget: Budget,
    updates: Budget,
}

impl Client {
    pub fn new(
        name: &str,
        settings: &ZendeskSinkSettings,
        timeout: Duration,
        tls: &std::sync::Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<Client> {
        let http = crate::tls::http_client(tls, timeout)?;
        let base = settings.base().to_owned();
        let auth = match &settings.auth {
            ZendeskAuth::OAuth {
                client_id,
                client_secret,
            } => {
                let token_url = url::Url::parse(&format!("{base}/oauth/tokens"))?;
                Auth::OAuth(TokenCache::new(
                    ClientCredentials::new(
                        name,
                        http.clone(),
                        token_url,
                        client_id.clone(),
                        client_secret.clone(),
                    )
                    .with_auth(ClientAuth::JsonBody)
                    .with_scope(OAUTH_SCOPE)
                    .with_default_lifetime(DEFAULT_TOKEN_LIFETIME),
                ))
            }
            ZendeskAuth::ApiToken { email, api_token } => Auth::ApiToken {
                email: email.clone(),
                token: std::sync::Mutex::new(api_token.clone()),
            },
        };
        Ok(Client {
            http,
            base,
            auth,
            budget: Budget::new(settings.requests_per_second),
            updates: Budget::per_minute(settings.ticket_updates_per_minute),
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Takes a reloaded client secret or API token.
    pub fn set_secret(&self, auth: &ZendeskAuth) {
        match (&self.auth, auth) {
            (Auth::OAuth(tokens), ZendeskAuth::OAuth { client_secret, .. }) => {
                tokens.source().set_client_secret(client_secret.clone());
            }
            (Auth::ApiToken { token, .. }, ZendeskAuth::ApiToken { api_token, .. }) => {
                *token.lock().unwrap_or_else(|p| p.into_inner()) = api_token.clone();
            }
            _ => {}
        }
    }

    /// A token can be had (OAuth); an API token needs no request.
    pub async fn token_check(&self) -> Result<(), Failure> {
        match &self.auth {
            Auth::OAuth(tokens) => tokens.token().await.map(|_| ()).map_err(|e| e.failure()),
            Auth::ApiToken { .. } => Ok(()),
        }
    }

    /// One call at `path` (below the account URL, query included); 2xx is
    /// the answer, everything else classified.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Body,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, Failure> {
        self.budget.acquire().await;
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("accept", "application/json");
        let mut used = None;
        request = match &self.auth {
            Auth::OAuth(tokens) => {
                let token = tokens.token().await.map_err(|e| e.failure())?;
                let request = request.bearer_auth(token.expose());
                used = Some(token);
                request
            }
            Auth::ApiToken { email, token } => {
                let token = token.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let basic = base64::engine::general_purpose::STANDARD
                    .encode(format!("{email}/token:{}", token.expose()));
                request.header("authorization", format!("Basic {basic}"))
            }
        };
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        request = match body {
            Body::None => request,
            Body::Json(value) => request.json(&value),
            Body::Bytes {
                content_type,
                bytes,
            } => request.header("content-type", content_type).body(bytes),
        };
        let response = request
            .send()
            .await
            .map_err(|e| Failure::retry(describe(&e)))?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let retry_after =
            header("retry-after").and_then(|v| parse_retry_after(&v, SystemTime::now()));
        let lookup = header("x-idempotency-lookup");
        let bytes = match crate::body::read_capped(response, MAX_ANSWER).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Err(Failure::retry(format!("HTTP {status}: answer too large"))),
            Err(e) => return Err(Failure::retry(describe(&e))),
        };
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        match classify(status, &said(&body), retry_after) {
            None => Ok(Answer { body, lookup }),
            Some(failure) => {
                if status == 401
                    && let (Auth::OAuth(tokens), Some(token)) = (&self.auth, &used)
                {
                    tokens.invalidate(token).await;
                }
                if let Some(after) = failure.retry_after() {
                    self.budget.pause(after);
                }
                Err(failure)
            }
        }
    }

    /// The ids of the tickets whose `external_id` is `external_id`, oldest
    /// first.
    pub async fn tickets_by_external_id(&self, external_id: &str) -> Result<Vec<u64>, Failure> {
        let path = format!("/api/v2/tickets?external_id={}", encode(external_id));
        let answer = self
            .call(reqwest::Method::GET, &path, Body::None, None)
            .await?;
        let mut ids: Vec<u64> = answer.body["tickets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["external_id"].as_str() == Some(external_id))
            .filter_map(|t| t["id"].as_u64())
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Creates a ticket with `Idempotency-Key: key`.
    pub async fn create_ticket(&self, key: &str, ticket: Value) -> Result<Created, Failure> {
        self.updates.acquire().await;
        let answer = self
            .call(
                reqwest::Method::POST,
                "/api/v2/tickets",
                Body::Json(json!({ "ticket": ticket })),
                Some(key),
            )
            .await;
        match answer {
            Ok(answer) => {
                let id = answer.body["ticket"]["id"]
                    .as_u64()
                    .ok_or_else(|| Failure::retry("the ticket create answered no id"))?;
                Ok(Created::Ticket {
                    id,
                    replayed: answer.lookup.as_deref() == Some("hit"),
                })
            }
            Err(failure) if failure.code.as_deref() == Some("IdempotentRequestError") => {
                Ok(Created::KeyUsed(failure))
            }
            Err(failure) => Err(failure),
        }
    }

    /// Updates the ticket; the id of the comment it added, if it added one.
    pub async fn update_ticket(&self, id: u64, ticket: Value) -> Result<Option<u64>, Failure> {
        self.updates.acquire().await;
        let answer = self
            .call(
                reqwest::Method::PUT,
                &format!("/api/v2/tickets/{id}"),
                Body::Json(json!({ "ticket": ticket })),
                None,
            )
            .await?;
        Ok(answer.body["audit"]["events"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| matches!(e["type"].as_str(), Some("Comment" | "VoiceComment")))
            .and_then(|e| e["id"].as_u64()))
    }

    /// Every comment of the ticket, oldest first.
    pub async fn comments(&self, id: u64) -> Result<Vec<Comment>, Failure> {
        let mut comments = Vec::new();
        let mut path = format!("/api/v2/tickets/{id}/comments?page[size]=100");
        for _ in 0..MAX_COMMENT_PAGES {
            let answer = self
                .call(reqwest::Method::GET, &path, Body::None, None)
                .await?;
            for c in answer.body["comments"].as_array().into_iter().flatten() {
                let Some(id) = c["id"].as_u64() else { continue };
                comments.push(Comment {
                    id,
                    kind: c["type"].as_str().unwrap_or("Comment").to_owned(),
                    body: c["body"].as_str().unwrap_or("").to_owned(),
                    attachments: c["attachments"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|a| {
                            Some((
                                a["file_name"].as_str()?.to_owned(),
                                a["content_url"].as_str().unwrap_or("").to_owned(),
                            ))
                        })
                        .collect(),
                });
            }
            let more = answer.body["meta"]["has_more"].as_bool() == Some(true);
            match answer.body["links"]["next"].as_str() {
                Some(next) if more => match next.strip_prefix(&self.base) {
                    Some(rest) => path = rest.to_owned(),
                    None => return Err(Failure::retry("a comments page link to another host")),
                },
                _ => return Ok(comments),
            }
        }
        Err(Failure::permanent(format!(
            "the ticket has more than {} comments",
            100 * MAX_COMMENT_PAGES
        )))
    }

    /// Permanently redacts `text` in the comment.
    pub async fn redact(&self, ticket: u64, comment: u64, text: &str) -> Result<(), Failure> {
        self.call(
            reqwest::Method::PUT,
            &format!("/api/v2/tickets/{ticket}/comments/{comment}/redact"),
            Body::Json(json!({ "text": text })),
            None,
        )
        .await
        .map(|_| ())
    }

    /// Uploads a file; its token (for a comment's `uploads`) and content URL.
    pub async fn upload(
        &self,
        name: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<Upload, Failure> {
        let answer = self
            .call(
                reqwest::Method::POST,
                &format!("/api/v2/uploads?filename={}", encode(name)),
                Body::Bytes {
                    content_type: content_type.to_owned(),
                    bytes,
                },
                None,
            )
            .await?;
        let upload = &answer.body["upload"];
        let token = upload["token"]
            .as_str()
            .ok_or_else(|| Failure::retry("the upload answered no token"))?;
        let content_url = upload["attachment"]["content_url"]
            .as_str()
            .or_else(|| upload["attachments"][0]["content_url"].as_str())
            .unwrap_or("");
        Ok(Upload {
            token: token.to_owned(),
            content_url: content_url.to_owned(),
        })
    }

    /// Users found by `query` (name, e-mail or phone) or by `external_id`:
    /// (id, phone).
    pub async fn users(
        &self,
        parameter: &str,
        value: &str,
    ) -> Result<Vec<(u64, Option<String>)>, Failure> {
        let path = format!("/api/v2/users/search?{parameter}={}", encode(value));
        let answer = self
            .call(reqwest::Method::GET, &path, Body::None, None)
            .await?;
        Ok(answer.body["users"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|u| u["active"].as_bool() != Some(false))
            .filter_map(|u| Some((u["id"].as_u64()?, u["phone"].as_str().map(str::to_owned))))
            .collect())
    }

    /// Creates an end-user; its id.
    pub async fn create_user(&self, user: Value) -> Result<u64, Failure> {
        let answer = self
            .call(
                reqwest::Method::POST,
                "/api/v2/users",
                Body::Json(json!({ "user": user })),
                None,
            )
            .await?;
        answer.body["user"]["id"]
            .as_u64()
            .ok_or_else(|| Failure::retry("the user create answered no id"))
    }
}

/// A query value, percent-encoded.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn describe(error: &reqwest::Error) -> String {
    format!("Zendesk {}", crate::failure::describe_request(error))
}
