//! The Dataverse Web API client of one sink: a bearer token from Entra ID's
//! client credentials grant (scope `{org_url}/.default`), every call through
//! the sink's request budget, the OData headers, error bodies
//! (`{"error":{"code","message"}}`) classified by [`super::error`], a
//! throttle's `Retry-After` pausing the whole sink, and `$batch` change
//! sets. Never logs a token.

use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::batch::{self, Operation};
use super::config::DynamicsSinkSettings;
use super::error::{Context, classify, error_of};
use crate::config::Secret;
use crate::crm::budget::Budget;
use crate::failure::{Failure, parse_retry_after};
use crate::oauth::{ClientCredentials, TokenCache};

/// The Web API version of every path.
pub const API_VERSION: &str = "v9.2";
/// `maxuploadfilesize` when the org does not say (Dataverse's default).
pub const DEFAULT_MAX_UPLOAD: u64 = 5 * 1024 * 1024;
/// Answers above this are refused unread (a batch answer is small).
const MAX_ANSWER: usize = 16 * 1024 * 1024;

pub struct Client {
    http: reqwest::Client,
    /// `{org_url}/api/data/v9.2`.
    api: String,
    tokens: TokenCache<ClientCredentials>,
    budget: Budget,
    max_upload: tokio::sync::OnceCell<u64>,
}

/// A successful answer.
pub struct Reply {
    pub body: Value,
}

/// An annotation already on a phonecall.
#[derive(Debug, Clone, Default)]
pub struct Annotation {
    pub id: String,
    pub subject: String,
    pub notetext: String,
    pub filename: String,
}

impl Client {
    pub fn new(
        name: &str,
        settings: &DynamicsSinkSettings,
        timeout: Duration,
        tls: &std::sync::Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<Client> {
        let http = crate::tls::http_client(tls, timeout)?;
        let token_url = url::Url::parse(&settings.token_url())?;
        let source = ClientCredentials::new(
            name,
            http.clone(),
            token_url,
            settings.client_id.clone(),
            settings.client_secret.clone(),
        )
        .with_scope(settings.scope());
        Ok(Client {
            http,
            api: format!("{}/api/data/{API_VERSION}", settings.org()),
            tokens: TokenCache::new(source),
            budget: Budget::new(settings.requests_per_second),
            max_upload: tokio::sync::OnceCell::new(),
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `{org_url}/api/data/v9.2` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.api, path.trim_start_matches('/'))
    }

    pub fn set_client_secret(&self, secret: Secret) {
        self.tokens.source().set_client_secret(secret);
    }

    /// One token request (or the cached token): proves the credentials.
    pub async fn token_check(&self) -> Result<(), Failure> {
        self.tokens
            .token()
            .await
            .map(|_| ())
            .map_err(|e| e.failure())
    }

    /// One request; 2xx is `Ok`, everything else classified. A 401
    /// invalidates the token; a throttle pauses every call of the sink.
    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        content_type: Option<String>,
        body: Option<String>,
        prefer: Option<&str>,
        context: Context<'_>,
    ) -> Result<(u16, String, bytes::Bytes), Failure> {
        self.budget.acquire().await;
        let token = self.tokens.token().await.map_err(|e| e.failure())?;
        let mut request = self
            .http
            .request(method, url)
            .bearer_auth(token.expose())
            .header("accept", "application/json")
            .header("odata-maxversion", "4.0")
            .header("odata-version", "4.0");
        if let (Some(content_type), Some(body)) = (content_type, body) {
            request = request.header("content-type", content_type).body(body);
        }
        if let Some(prefer) = prefer {
            request = request.header("prefer", prefer);
        }
        let response = request
            .send()
            .await
            .map_err(|e| Failure::retry(describe(&e)))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let retry_after = headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let text = match crate::body::read_capped(response, MAX_ANSWER).await {
            Ok(Some(bytes)) => bytes::Bytes::from(bytes),
            Ok(None) => return Err(Failure::retry(format!("HTTP {status}: answer too large"))),
            Err(e) => return Err(Failure::retry(describe(&e))),
        };
        if (200..300).contains(&status) {
            return Ok((status, content_type, text));
        }
        let body: Value = serde_json::from_slice(&text).unwrap_or(Value::Null);
        let (code, message) = error_of(&body);
        let failure = classify(status, code.as_deref(), &message, retry_after, context)
            .unwrap_or_else(|| Failure::retry(format!("HTTP {status}")));
        if status == 401 {
            self.tokens.invalidate(&token).await;
        }
        if let Some(after) = failure.retry_after() {
            self.budget.pause(after);
        }
        Err(failure)
    }

    /// One JSON call at `path` (below `/api/data/v9.2`, query included).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        context: Context<'_>,
    ) -> Result<Reply, Failure> {
        let (content_type, body) = match body {
            Some(body) => (
                Some("application/json; charset=utf-8".to_owned()),
                Some(body.to_string()),
            ),
            None => (None, None),
        };
        let (_, _, text) = self
            .send(method, &self.url(path), content_type, body, None, context)
            .await?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&text).unwrap_or(Value::Null)
        };
        Ok(Reply { body })
    }

    /// `operations` as one change set of one `$batch`: all applied or none.
    /// The first refused operation's failure is the batch's.
    pub async fn change_set(
        &self,
        operations: &[Operation],
        context: Context<'_>,
    ) -> Result<Vec<batch::Answer>, Failure> {
        self.change_sets(&[operations], context)
            .await?
            .pop()
            .unwrap_or_else(|| Err(Failure::retry("$batch answered no change set")))
    }

    /// Each of `change_sets` as its own change set (all of it applied or
    /// none), in one `$batch` that goes on past a refused one
    /// (`Prefer: odata.continue-on-error`). The batch's own failure (a
    /// throttle, an outage, the token) is every change set's; otherwise
    /// each one's answers, or the failure of its first refused operation.
    pub async fn change_sets(
        &self,
        change_sets: &[&[Operation]],
        context: Context<'_>,
    ) -> Result<Vec<Result<Vec<batch::Answer>, Failure>>, Failure> {
        let id = format!("{:032x}", rand::random::<u128>());
        let (body, content_type) = batch::request_many(change_sets, &id);
        let prefer = (change_sets.len() > 1).then_some("odata.continue-on-error");
        let (_, answer_type, text) = self
            .send(
                reqwest::Method::POST,
                &self.url("$batch"),
                Some(content_type),
                Some(body),
                prefer,
                context,
            )
            .await?;
        let text = String::from_utf8_lossy(&text);
        let parts = batch::answer_parts(&answer_type, &text)
            .map_err(|e| Failure::retry(format!("unreadable $batch answer: {e}")))?;
        let mut parts = parts.into_iter();
        let mut outcomes = Vec::with_capacity(change_sets.len());
        for operations in change_sets {
            let outcome = match parts.next() {
                Some(batch::Part::Applied(answers)) if answers.len() == operations.len() => {
                    match answers.iter().find(|a| !(200..300).contains(&a.status)) {
                        Some(refused) => Err(self.refused(refused, context)),
                        None => Ok(answers),
                    }
                }
                Some(batch::Part::Applied(answers)) => Err(Failure::retry(format!(
                    "$batch answered {} of {} operations",
                    answers.len(),
                    operations.len()
                ))),
                Some(batch::Part::Alone(refused)) => Err(self.refused(&refused, context)),
                None => Err(Failure::retry(
                    "$batch answered fewer change sets than it was sent",
                )),
            };
            outcomes.push(outcome);
        }
        Ok(outcomes)
    }

    /// The failure a refused operation's answer inside a `$batch` means (a
    /// throttle pauses the sink).
    fn refused(&self, refused: &batch::Answer, context: Context<'_>) -> Failure {
        if (200..300).contains(&refused.status) {
            return Failure::retry("$batch answered a change set with one answer");
        }
        let (code, message) = error_of(&refused.body);
        let retry_after = refused
            .header("retry-after")
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let failure = classify(
            refused.status,
            code.as_deref(),
            &message,
            retry_after,
            context,
        )
        .unwrap_or_else(|| Failure::retry(format!("HTTP {}", refused.status)));
        if let Some(after) = failure.retry_after() {
            self.budget.pause(after);
        }
        failure
    }

    /// The phonecall's `activityid` by its alternate key; `None` when there
    /// is none yet.
    pub async fn find_phonecall(&self, column: &str, key: &str) -> Result<Option<String>, Failure> {
        let path = format!(
            "{}?$select=activityid",
            super::phonecall::segment(column, key)
        );
        let context = Context {
            key_column: Some(column),
        };
        match self.call(reqwest::Method::GET, &path, None, context).await {
            Ok(reply) => Ok(reply.body["activityid"].as_str().map(str::to_owned)),
            Err(failure) if failure.status == Some(404) => Ok(None),
            Err(failure) => Err(failure),
        }
    }

    /// Every annotation on the phonecall.
    pub async fn annotations_of(&self, activity_id: &str) -> Result<Vec<Annotation>, Failure> {
        let path = format!(
            "annotations?{}",
            query(&[
                ("$select", "annotationid,subject,notetext,filename"),
                ("$filter", &format!("_objectid_value eq {activity_id}")),
            ])
        );
        let reply = self
            .call(
                reqwest::Method::GET,
                &path,
                None,
                Context { key_column: None },
            )
            .await?;
        let text = |v: &Value, f: &str| v[f].as_str().unwrap_or("").to_owned();
        Ok(reply.body["value"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| Annotation {
                id: text(a, "annotationid"),
                subject: text(a, "subject"),
                notetext: text(a, "notetext"),
                filename: text(a, "filename"),
            })
            .collect())
    }

    /// Contacts whose business or mobile phone holds the number's last four
    /// digits: (contactid, phones). The relay compares in E.164 itself.
    pub async fn contacts_by_phone(
        &self,
        e164: &str,
    ) -> Result<Vec<(String, Vec<String>)>, Failure> {
        let digits: String = e164.chars().filter(char::is_ascii_digit).collect();
        let tail = &digits[digits.len().saturating_sub(4)..];
        let path = format!(
            "contacts?{}",
            query(&[
                ("$select", "contactid,telephone1,mobilephone"),
                (
                    "$filter",
                    &format!("contains(telephone1,'{tail}') or contains(mobilephone,'{tail}')"),
                ),
                ("$top", "50"),
            ])
        );
        let reply = self
            .call(
                reqwest::Method::GET,
                &path,
                None,
                Context { key_column: None },
            )
            .await?;
        Ok(reply.body["value"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                let id = c["contactid"].as_str()?.to_owned();
                let phones = ["telephone1", "mobilephone"]
                    .iter()
                    .filter_map(|f| c[*f].as_str().map(str::to_owned))
                    .collect();
                Some((id, phones))
            })
            .collect())
    }

    /// The org's `maxuploadfilesize` (bytes of base64), read once.
    pub async fn max_upload(&self) -> Result<u64, Failure> {
        self.max_upload
            .get_or_try_init(|| async {
                let reply = self
                    .call(
                        reqwest::Method::GET,
                        "organizations?$select=maxuploadfilesize",
                        None,
                        Context { key_column: None },
                    )
                    .await?;
                Ok(reply.body["value"][0]["maxuploadfilesize"]
                    .as_u64()
                    .unwrap_or(DEFAULT_MAX_UPLOAD))
            })
            .await
            .copied()
    }
}

/// A query string, values percent-encoded (`%20` for a space: OData reads
/// no `+` as a space).
pub fn query(pairs: &[(&str, &str)]) -> String {
    let encode = |text: &str| -> String {
        text.bytes()
            .map(|b| match b {
                b'A'..=b'Z'
                | b'a'..=b'z'
                | b'0'..=b'9'
                | b'-'
                | b'_'
                | b'.'
                | b'~'
                | b'$'
                | b','
                | b'\''
                | b'('
                | b')' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    pairs
        .iter()
        .map(|(name, value)| format!("{}={}", encode(name), encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A transport failure, named as Dataverse's.
fn describe(error: &reqwest::Error) -> String {
    format!("Dataverse {}", crate::failure::describe_request(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_queries() {
        assert_eq!(
            query(&[("$filter", "contains(telephone1,'1212') or x eq 1")]),
            "$filter=contains(telephone1,'1212')%20or%20x%20eq%201"
        );
    }
}
