//! The ServiceNow REST client of one sink: the sign-in (an OAuth token from
//! `/oauth_token.do` by client credentials, or HTTP Basic as an integration
//! user), every call through the sink's request budget, error bodies
//! classified by [`super::error`] (a 429 pauses the whole sink for its
//! `Retry-After` or `X-RateLimit-Reset`), the Table API (one record per
//! engagement found by its correlation field, work notes and their journal
//! entries in `sys_journal_field`, contacts) and the Attachment API. Never
//! logs a secret.

use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};

use super::config::{Auth, ServiceNowSinkSettings};
use super::error::{classify, said, throttle_wait};
use crate::config::Secret;
use crate::crm::budget::Budget;
use crate::failure::{Failure, parse_retry_after};
use crate::oauth::{ClientCredentials, TokenCache};

/// Answers above this are refused unread.
const MAX_ANSWER: usize = 8 * 1024 * 1024;
/// An access token's lifetime when the answer has no `expires_in` (the
/// instance's default is 1,800 s).
const TOKEN_LIFETIME: Duration = Duration::from_secs(1800);
/// Journal entries of one record read at once.
const ENTRIES_PAGE: usize = 1000;

/// How requests are signed.
enum Signer {
    OAuth(TokenCache<ClientCredentials>),
    Basic {
        username: String,
        password: std::sync::Mutex<Secret>,
    },
}

pub struct Client {
    http: reqwest::Client,
    instance: String,
    table: String,
    correlation_field: String,
    signer: Signer,
    budget: Budget,
    /// Whether a create has shown that the table has the correlation field;
    /// until then creates run one at a time (see [`Client::create_record`]).
    proven: tokio::sync::Mutex<bool>,
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

/// One work-notes entry of a record (`sys_journal_field`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: String,
    pub value: String,
}

/// What `find_record` found.
pub enum Found {
    None,
    One(String),
}

/// `^` starts a new condition in an encoded query; a literal one is doubled.
pub fn query_value(text: &str) -> String {
    text.replace('^', "^^")
}

/// A query parameter value, percent-encoded.
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

impl Client {
    pub fn new(
        name: &str,
        settings: &ServiceNowSinkSettings,
        timeout: Duration,
        tls: &std::sync::Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<Client> {
        let http = crate::tls::http_client(tls, timeout)?;
        let instance = settings.instance().to_owned();
        let signer = match &settings.auth {
            Auth::OAuth {
                client_id,
                client_secret,
            } => Signer::OAuth(TokenCache::new(
                ClientCredentials::new(
                    name,
                    http.clone(),
                    url::Url::parse(&format!("{instance}/oauth_token.do"))?,
                    client_id.clone(),
                    client_secret.clone(),
                )
                .with_default_lifetime(TOKEN_LIFETIME),
            )),
            Auth::Basic { username, password } => Signer::Basic {
                username: username.clone(),
                password: std::sync::Mutex::new(password.clone()),
            },
        };
        Ok(Client {
            http,
            instance,
            table: settings.table.clone(),
            correlation_field: settings.correlation_field.clone(),
            signer,
            budget: Budget::new(settings.requests_per_second),
            proven: tokio::sync::Mutex::new(false),
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Uses the new client secret or password from the next request on.
    pub fn set_auth(&self, auth: &Auth) {
        match (&self.signer, auth) {
            (Signer::OAuth(tokens), Auth::OAuth { client_secret, .. }) => {
                tokens.source().set_client_secret(client_secret.clone());
            }
            (Signer::Basic { password: held, .. }, Auth::Basic { password, .. }) => {
                *held.lock().unwrap_or_else(|p| p.into_inner()) = password.clone();
            }
            _ => {}
        }
    }

    /// OAuth: one token request (or the cached token). Basic: nothing to
    /// prove without a request.
    pub async fn token_check(&self) -> Result<(), Failure> {
        match &self.signer {
            Signer::OAuth(tokens) => tokens.token().await.map(|_| ()).map_err(|e| e.failure()),
            Signer::Basic { .. } => Ok(()),
        }
    }

    /// One call at `path` (below the instance, query included); 2xx is the
    /// body (`Null` when empty), everything else classified.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Body,
    ) -> Result<Value, Failure> {
        self.budget.acquire().await;
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.instance))
            .header("accept", "application/json");
        let mut used_token = None;
        request = match &self.signer {
            Signer::OAuth(tokens) => {
                let token = tokens.token().await.map_err(|e| e.failure())?;
                let request = request.bearer_auth(token.expose());
                used_token = Some(token);
                request
            }
            Signer::Basic { username, password } => {
                let password = password.lock().unwrap_or_else(|p| p.into_inner()).clone();
                request.basic_auth(username, Some(password.expose()))
            }
        };
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
        let now = SystemTime::now();
        let wait = throttle_wait(
            header("retry-after").and_then(|v| parse_retry_after(&v, now)),
            header("x-ratelimit-reset").and_then(|v| v.trim().parse().ok()),
            now.duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        );
        let bytes = match crate::body::read_capped(response, MAX_ANSWER).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Err(Failure::retry(format!("HTTP {status}: answer too large"))),
            Err(e) => return Err(Failure::retry(describe(&e))),
        };
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        match classify(status, &said(&body), wait, &self.table) {
            None => Ok(body),
            Some(failure) => {
                if let (401, Signer::OAuth(tokens), Some(token)) =
                    (status, &self.signer, used_token.as_ref())
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

    fn records(answer: &Value) -> Vec<Map<String, Value>> {
        answer["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_object().cloned())
            .collect()
    }

    /// The set-up problem of a correlation field the table does not have:
    /// ServiceNow ignores an unknown field in a query and in a write, so a
    /// record without the field in its answer is the only sign.
    fn missing_field(&self) -> Failure {
        Failure::setup(format!(
            "the table {} has no field {} (ServiceNow ignores unknown fields) — create it \
             (String, 100 characters, ideally unique) or set correlation_field to an existing \
             one, and give the integration user read and write on it",
            self.table, self.correlation_field
        ))
    }

    /// The engagement's record by its correlation field (the oldest when
    /// several hold the key).
    pub async fn find_record(&self, key: &str) -> Result<Found, Failure> {
        let field = &self.correlation_field;
        let query = format!("{field}={}^ORDERBYsys_created_on", query_value(key));
        let path = format!(
            "/api/now/table/{}?sysparm_query={}&sysparm_fields=sys_id,{field}&sysparm_limit=2&sysparm_exclude_reference_link=true",
            self.table,
            encode(&query)
        );
        let answer = self.call(reqwest::Method::GET, &path, Body::None).await?;
        let records = Self::records(&answer);
        if records.iter().any(|r| !r.contains_key(field)) {
            return Err(self.missing_field());
        }
        Ok(records
            .iter()
            .find(|r| r[field].as_str() == Some(key))
            .and_then(|r| r["sys_id"].as_str())
            .map_or(Found::None, |id| Found::One(id.to_owned())))
    }

    /// Creates the record; its `sys_id`. Until one create has shown that
    /// the table has the correlation field, creates run one at a time and
    /// look again first: a missing field makes at most one record without
    /// it (the instance ignores the unknown field), which every later lookup
    /// then shows, instead of one record per engagement in flight.
    pub async fn create_record(
        &self,
        key: &str,
        fields: Map<String, Value>,
    ) -> Result<String, Failure> {
        let mut proven = self.proven.lock().await;
        if *proven {
            drop(proven);
            return self.post_record(key, fields).await;
        }
        if let Found::One(id) = self.find_record(key).await? {
            return Ok(id);
        }
        let id = self.post_record(key, fields).await?;
        *proven = true;
        Ok(id)
    }

    async fn post_record(&self, key: &str, fields: Map<String, Value>) -> Result<String, Failure> {
        let path = format!(
            "/api/now/table/{}?sysparm_fields=sys_id,{}&sysparm_exclude_reference_link=true",
            self.table, self.correlation_field
        );
        let answer = self
            .call(
                reqwest::Method::POST,
                &path,
                Body::Json(Value::Object(fields)),
            )
            .await?;
        let result = &answer["result"];
        if result[&self.correlation_field].as_str() != Some(key) {
            return Err(self.missing_field());
        }
        result["sys_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Failure::retry("the create answered no sys_id"))
    }

    /// Updates the record's fields (a `work_notes` value adds one entry);
    /// `Ok(false)` when the record is gone.
    pub async fn update_record(
        &self,
        sys_id: &str,
        fields: Map<String, Value>,
    ) -> Result<bool, Failure> {
        let path = format!(
            "/api/now/table/{}/{}?sysparm_fields=sys_id&sysparm_exclude_reference_link=true",
            self.table,
            encode(sys_id)
        );
        match self
            .call(
                reqwest::Method::PATCH,
                &path,
                Body::Json(Value::Object(fields)),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(failure) if failure.status == Some(404) => Ok(false),
            Err(failure) => Err(failure),
        }
    }

    /// The record's work-notes entries.
    pub async fn work_notes(&self, sys_id: &str) -> Result<Vec<Entry>, Failure> {
        let query = format!(
            "name={}^element=work_notes^element_id={}^ORDERBYsys_created_on",
            self.table,
            query_value(sys_id)
        );
        let path = format!(
            "/api/now/table/sys_journal_field?sysparm_query={}&sysparm_fields=sys_id,value&sysparm_limit={ENTRIES_PAGE}",
            encode(&query)
        );
        let answer = self.call(reqwest::Method::GET, &path, Body::None).await?;
        Ok(Self::records(&answer)
            .into_iter()
            .filter_map(|r| {
                Some(Entry {
                    id: r.get("sys_id")?.as_str()?.to_owned(),
                    value: r.get("value")?.as_str().unwrap_or("").to_owned(),
                })
            })
            .collect())
    }

    /// Replaces an entry's text in place; `Ok(false)` when it is gone.
    pub async fn edit_entry(&self, entry_id: &str, text: &str) -> Result<bool, Failure> {
        let path = format!(
            "/api/now/table/sys_journal_field/{}?sysparm_fields=sys_id",
            encode(entry_id)
        );
        match self
            .call(
                reqwest::Method::PATCH,
                &path,
                Body::Json(json!({ "value": text })),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(failure) if failure.status == Some(404) => Ok(false),
            Err(failure) => Err(failure),
        }
    }

    /// The record's attachments: (file name, sys_id).
    pub async fn attachments(&self, sys_id: &str) -> Result<Vec<(String, String)>, Failure> {
        let query = format!(
            "table_name={}^table_sys_id={}",
            self.table,
            query_value(sys_id)
        );
        let path = format!(
            "/api/now/attachment?sysparm_query={}&sysparm_limit={ENTRIES_PAGE}",
            encode(&query)
        );
        let answer = self.call(reqwest::Method::GET, &path, Body::None).await?;
        Ok(Self::records(&answer)
            .into_iter()
            .filter_map(|a| {
                Some((
                    a.get("file_name")?.as_str()?.to_owned(),
                    a.get("sys_id")?.as_str()?.to_owned(),
                ))
            })
            .collect())
    }

    /// Attaches a file to the record; the attachment's sys_id.
    pub async fn attach(
        &self,
        sys_id: &str,
        name: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<String, Failure> {
        let path = format!(
            "/api/now/attachment/file?table_name={}&table_sys_id={}&file_name={}",
            encode(&self.table),
            encode(sys_id),
            encode(name)
        );
        let answer = self
            .call(
                reqwest::Method::POST,
                &path,
                Body::Bytes {
                    content_type: content_type.to_owned(),
                    bytes,
                },
            )
            .await?;
        answer["result"]["sys_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Failure::retry("the attachment upload answered no sys_id"))
    }

    /// Records of `table` whose phone fields end in the number's last four
    /// digits: (sys_id, phones). The relay compares in E.164.
    pub async fn contacts_by_phone(
        &self,
        table: &str,
        phone_fields: &[String],
        e164: &str,
    ) -> Result<Vec<(String, Vec<String>)>, Failure> {
        let digits: String = e164.chars().filter(char::is_ascii_digit).collect();
        let tail = &digits[digits.len().saturating_sub(4)..];
        let query = phone_fields
            .iter()
            .map(|f| format!("{f}ENDSWITH{tail}"))
            .collect::<Vec<_>>()
            .join("^OR");
        let path = format!(
            "/api/now/table/{table}?sysparm_query={}&sysparm_fields=sys_id,{}&sysparm_limit=100",
            encode(&query),
            phone_fields.join(",")
        );
        let answer = self.call(reqwest::Method::GET, &path, Body::None).await?;
        Ok(Self::records(&answer)
            .into_iter()
            .filter_map(|c| {
                let id = c.get("sys_id")?.as_str()?.to_owned();
                let phones = phone_fields
                    .iter()
                    .filter_map(|f| c.get(f).and_then(Value::as_str).map(str::to_owned))
                    .collect();
                Some((id, phones))
            })
            .collect())
    }
}

fn describe(error: &reqwest::Error) -> String {
    format!("ServiceNow {}", crate::failure::describe_request(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_and_encoding() {
        assert_eq!(query_value("a^b"), "a^^b");
        assert_eq!(encode("a=b^c d"), "a%3Db%5Ec%20d");
    }
}
