//! The Salesforce REST client of one sink: a bearer token from the client
//! credentials flow, every call through the sink's request budget, error
//! bodies (`[{"message","errorCode","fields"}]`) classified by the CRM table,
//! `Sforce-Limit-Info` read on every answer. Never logs a token.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

use super::config::SalesforceSinkSettings;
use crate::config::Secret;
use crate::crm::budget::Budget;
use crate::crm::classify::{Answer, classify};
use crate::failure::{Failure, parse_retry_after};
use crate::oauth::{ClientCredentials, TokenCache};

/// The most of one answer read (a SOQL page of 2,000 rows, a describe of
/// Task, a collection's 200 results are far less); a larger one is a retry.
const MAX_ANSWER: usize = 8 * 1024 * 1024;
/// Warn when less than this share of the 24-hour API allocation is left.
const LOW_CAPACITY_PERCENT: u64 = 10;
/// The largest file sent as base64 JSON (Salesforce: 37.5 MB decoded).
pub const JSON_FILE_LIMIT: u64 = 37_500_000;

pub struct Client {
    name: String,
    http: reqwest::Client,
    /// `{instance_url}/services/data/{api_version}`.
    base: String,
    tokens: TokenCache<ClientCredentials>,
    budget: Budget,
    low_capacity_warned: AtomicBool,
}

/// What a successful call answered.
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

/// A phone search's candidates: (id, phones) per object.
#[derive(Debug, Default)]
pub struct Found {
    pub contacts: Vec<(String, Vec<String>)>,
    pub leads: Vec<(String, Vec<String>)>,
}

/// A request body.
pub enum Body {
    None,
    Json(Value),
    Multipart {
        boundary: String,
        body: reqwest::Body,
    },
}

impl Client {
    pub fn new(
        name: &str,
        settings: &SalesforceSinkSettings,
        timeout: Duration,
        tls: &std::sync::Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<Client> {
        let http = crate::tls::http_client(tls, timeout)?;
        let instance = settings.instance_url.as_str().trim_end_matches('/');
        let token_url = url::Url::parse(&format!("{instance}/services/oauth2/token"))?;
        let source = ClientCredentials::new(
            name,
            http.clone(),
            token_url,
            settings.client_id.clone(),
            settings.client_secret.clone(),
        );
        Ok(Client {
            name: name.to_owned(),
            http,
            base: format!("{instance}/services/data/{}", settings.api_version),
            tokens: TokenCache::new(source),
            budget: Budget::new(settings.requests_per_second),
            low_capacity_warned: AtomicBool::new(false),
        })
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

    /// One API call at `path` (below `/services/data/vXX.X`). 2xx is `Ok`;
    /// everything else is classified. `object` names what is written, for
    /// the set-up fixes.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Body,
        object: &str,
    ) -> Result<Reply, Failure> {
        self.budget.acquire().await;
        let token = self.tokens.token().await.map_err(|e| e.failure())?;
        let mut url = url::Url::parse(&format!("{}{path}", self.base)).map_err(|e| {
            Failure::setup(format!("instance_url does not make a valid API URL: {e}"))
        })?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let request = self
            .http
            .request(method, url)
            .bearer_auth(token.expose())
            .header("accept", "application/json");
        let request = match body {
            Body::None => request,
            Body::Json(value) => request.json(&value),
            Body::Multipart { boundary, body } => request
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(body),
        };
        let response = request
            .send()
            .await
            .map_err(|e| Failure::retry(describe(&e)))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        if let Some(usage) = headers
            .get("sforce-limit-info")
            .and_then(|v| v.to_str().ok())
        {
            self.note_usage(usage);
        }
        let retry_after = headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let text = match crate::body::read_capped(response, MAX_ANSWER).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                return Err(Failure::retry(format!(
                    "HTTP {status}: the answer is over {} MiB",
                    MAX_ANSWER / (1024 * 1024)
                )));
            }
            Err(e) => return Err(Failure::retry(describe(&e))),
        };
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&text).unwrap_or(Value::Null)
        };
        if (200..300).contains(&status) {
            return Ok(Reply { status, body });
        }
        let (code, message) = first_error(&body, status);
        let failure = classify(
            Answer {
                status,
                code: code.as_deref(),
                message: &message,
                retry_after,
            },
            object,
        )
        .unwrap_or_else(|| Failure::retry(format!("HTTP {status}")));
        if status == 401 {
            self.tokens.invalidate(&token).await;
        }
        if let Some(after) = failure.retry_after() {
            self.budget.pause(after);
        }
        Err(failure)
    }

    /// Warns once (until it recovers) when the org's 24-hour allocation is
    /// nearly used: `api-usage=used/limit`.
    fn note_usage(&self, header: &str) {
        let Some((used, limit)) = header
            .split(',')
            .filter_map(|part| part.trim().strip_prefix("api-usage="))
            .find_map(|usage| {
                let (used, limit) = usage.split_once('/')?;
                Some((used.parse::<u64>().ok()?, limit.parse::<u64>().ok()?))
            })
        else {
            return;
        };
        let low = limit > 0 && limit.saturating_sub(used) * 100 < limit * LOW_CAPACITY_PERCENT;
        if low && !self.low_capacity_warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(sink = %self.name, used, limit, "Salesforce org's daily API allocation is nearly used up; at the limit, records wait");
        } else if !low {
            self.low_capacity_warned.store(false, Ordering::Relaxed);
        }
    }

    /// Updates the engagement's Task, else creates it with the create-only
    /// fields; the Task's id. `exists`: the sink recorded a Task for the
    /// engagement, so the update goes first; otherwise the create does (one
    /// call for a new engagement instead of a refused update and a create).
    pub async fn upsert_task(
        &self,
        field: &str,
        engagement_id: &str,
        fields: Map<String, Value>,
        create_only: Map<String, Value>,
        exists: bool,
    ) -> Result<String, Failure> {
        let path = format!("/sobjects/Task/{field}/{}", urlencoding(engagement_id));
        let reply = if exists {
            let update = self
                .call(
                    reqwest::Method::PATCH,
                    &path,
                    &[("updateOnly", "true")],
                    Body::Json(Value::Object(fields.clone())),
                    "Task",
                )
                .await;
            match update {
                Ok(reply) => reply,
                // Deleted in the org meanwhile: created again.
                Err(failure)
                    if failure.status == Some(404)
                        && failure.class == crate::failure::Class::Permanent =>
                {
                    self.create_task(&path, fields, create_only).await?
                }
                Err(failure) => return Err(failure),
            }
        } else {
            self.create_task(&path, fields, create_only).await?
        };
        match reply.body.get("id").and_then(Value::as_str) {
            Some(id) => Ok(id.to_owned()),
            // 204 (API versions before 46.0): read the id back.
            None => {
                let read = self
                    .call(
                        reqwest::Method::GET,
                        &path,
                        &[("fields", "Id")],
                        Body::None,
                        "Task",
                    )
                    .await?;
                read.body
                    .get("Id")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        Failure::retry(format!("HTTP {}: no Task id in the answer", reply.status))
                    })
            }
        }
    }

    /// A creating upsert with the create-only fields; when the Task exists
    /// (created before the sink recorded it, or by another writer such as a
    /// standby), Salesforce refuses those fields on an update, and the update
    /// goes without them.
    async fn create_task(
        &self,
        path: &str,
        fields: Map<String, Value>,
        create_only: Map<String, Value>,
    ) -> Result<Reply, Failure> {
        let mut all = fields.clone();
        all.extend(create_only);
        let created = self
            .call(
                reqwest::Method::PATCH,
                path,
                &[],
                Body::Json(Value::Object(all)),
                "Task",
            )
            .await;
        match created {
            Err(failure) if failure.code.as_deref() == Some("INVALID_FIELD_FOR_INSERT_UPDATE") => {
                self.call(
                    reqwest::Method::PATCH,
                    path,
                    &[("updateOnly", "true")],
                    Body::Json(Value::Object(fields)),
                    "Task",
                )
                .await
            }
            other => other,
        }
    }

    /// The Tasks whose external id is one of `values`: value → Task ids
    /// (one, unless the field is not Unique). One SOQL query; the caller
    /// keeps the list within [`QUERY_IDS`] and [`QUERY_CHARS`].
    pub async fn existing_tasks(
        &self,
        field: &str,
        values: &[&str],
    ) -> Result<HashMap<String, Vec<String>>, Failure> {
        let soql = format!(
            "SELECT Id, {field} FROM Task WHERE {field} IN ({})",
            quoted_list(values)
        );
        // A page short of the whole answer is safe here: a Task not found is
        // upserted with `TaskSubtype`, which Salesforce refuses for one that
        // exists, and the single-record path takes it over.
        let (records, _) = self.query(&soql, "Task").await?;
        let mut found: HashMap<String, Vec<String>> = HashMap::new();
        for record in records {
            if let (Some(id), Some(value)) = (
                record.get("Id").and_then(Value::as_str),
                record.get(field).and_then(Value::as_str),
            ) {
                found
                    .entry(value.to_owned())
                    .or_default()
                    .push(id.to_owned());
            }
        }
        Ok(found)
    }

    /// The ContentVersions published on these Tasks: (Task id, file name) →
    /// ContentVersion id. One SOQL query; `None` when the answer did not fit
    /// one page (`done: false`): then a file missing from it may still be
    /// there, and the caller looks each file up on its own.
    pub async fn files_on_tasks(
        &self,
        task_ids: &[&str],
    ) -> Result<Option<HashMap<(String, String), String>>, Failure> {
        let soql = format!(
            "SELECT Id, FirstPublishLocationId, PathOnClient FROM ContentVersion WHERE FirstPublishLocationId IN ({})",
            quoted_list(task_ids)
        );
        let (records, complete) = self.query(&soql, "ContentVersion").await?;
        if !complete {
            return Ok(None);
        }
        Ok(Some(
            records
                .iter()
                .filter_map(|record| {
                    Some((
                        (
                            record.get("FirstPublishLocationId")?.as_str()?.to_owned(),
                            record.get("PathOnClient")?.as_str()?.to_owned(),
                        ),
                        record.get("Id")?.as_str()?.to_owned(),
                    ))
                })
                .collect(),
        ))
    }

    /// The records of a SOQL query's first page, and whether that is all of
    /// them (`done`).
    async fn query(&self, soql: &str, object: &str) -> Result<(Vec<Value>, bool), Failure> {
        let reply = self
            .call(
                reqwest::Method::GET,
                "/query",
                &[("q", soql)],
                Body::None,
                object,
            )
            .await?;
        let done = reply
            .body
            .get("done")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let records = reply
            .body
            .get("records")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok((records, done))
    }

    /// Upserts up to [`COLLECTION_MAX`] Tasks by the external-id field in one
    /// sObject Collections call (`allOrNone: false`): each `(value, fields)`
    /// gets its own outcome, in order — the Task's id, or the record's error
    /// classified. A failure of the whole call is the `Err`.
    pub async fn upsert_tasks(
        &self,
        field: &str,
        records: Vec<(String, Map<String, Value>)>,
    ) -> Result<Vec<Result<String, Failure>>, Failure> {
        let n = records.len();
        let records: Vec<Value> = records
            .into_iter()
            .map(|(value, mut fields)| {
                fields.insert("attributes".into(), json!({"type": "Task"}));
                fields.insert(field.to_owned(), Value::String(value));
                Value::Object(fields)
            })
            .collect();
        let reply = self
            .call(
                reqwest::Method::PATCH,
                &format!("/composite/sobjects/Task/{field}"),
                &[],
                Body::Json(json!({"allOrNone": false, "records": records})),
                "Task",
            )
            .await?;
        Ok(record_outcomes(&reply.body, n))
    }

    /// Updates up to [`COLLECTION_MAX`] Tasks by their ids in one sObject
    /// Collections call (`allOrNone: false`); outcomes as for
    /// [`Self::upsert_tasks`]. Never creates a Task.
    pub async fn update_tasks(
        &self,
        records: Vec<(String, Map<String, Value>)>,
    ) -> Result<Vec<Result<String, Failure>>, Failure> {
        let n = records.len();
        let records: Vec<Value> = records
            .into_iter()
            .map(|(id, mut fields)| {
                fields.insert("attributes".into(), json!({"type": "Task"}));
                fields.insert("id".into(), Value::String(id));
                Value::Object(fields)
            })
            .collect();
        let reply = self
            .call(
                reqwest::Method::PATCH,
                "/composite/sobjects",
                &[],
                Body::Json(json!({"allOrNone": false, "records": records})),
                "Task",
            )
            .await?;
        Ok(record_outcomes(&reply.body, n))
    }

    /// The ContentVersion of this name on the Task, if one is attached.
    pub async fn file_on(&self, task_id: &str, name: &str) -> Result<Option<String>, Failure> {
        let soql = format!(
            "SELECT Id FROM ContentVersion WHERE FirstPublishLocationId = '{}' AND PathOnClient = '{}'",
            soql_escape(task_id),
            soql_escape(name)
        );
        let reply = self
            .call(
                reqwest::Method::GET,
                "/query",
                &[("q", &soql)],
                Body::None,
                "ContentVersion",
            )
            .await?;
        Ok(reply
            .body
            .pointer("/records/0/Id")
            .and_then(Value::as_str)
            .map(str::to_owned))
    }

    /// Creates a ContentVersion on the Task: base64 JSON up to
    /// [`JSON_FILE_LIMIT`], multipart above it. Its id.
    pub async fn attach(
        &self,
        task_id: &str,
        name: &str,
        file: super::files::Bytes,
    ) -> Result<String, Failure> {
        let entity = json!({
            "PathOnClient": name,
            "Title": name,
            "FirstPublishLocationId": task_id,
        });
        let body = match file {
            super::files::Bytes::Small(bytes) => {
                let mut entity = entity;
                entity["VersionData"] = Value::String(BASE64.encode(&bytes));
                Body::Json(entity)
            }
            super::files::Bytes::Stream { body, .. } => {
                let boundary = format!("zcc-relay-{}", uuid_like());
                let head = format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"entity_content\"\r\nContent-Type: application/json\r\n\r\n{entity}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"VersionData\"; filename=\"{}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
                    name.replace('"', "")
                );
                let tail = format!("\r\n--{boundary}--\r\n");
                let stream =
                    futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(head))])
                        .chain(body)
                        .chain(futures_util::stream::iter([Ok(bytes::Bytes::from(tail))]));
                Body::Multipart {
                    boundary,
                    body: reqwest::Body::wrap_stream(stream),
                }
            }
        };
        let reply = self
            .call(
                reqwest::Method::POST,
                "/sobjects/ContentVersion",
                &[],
                body,
                "ContentVersion",
            )
            .await?;
        // Without its id the file is still there: the next attempt finds it
        // by name.
        reply
            .body
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                Failure::retry(format!(
                    "HTTP {}: no ContentVersion id in the answer",
                    reply.status
                ))
            })
    }

    /// Contacts and Leads with a phone field holding the number's last ten
    /// digits (the relay compares in E.164 itself).
    pub async fn search_phone(&self, e164: &str) -> Result<Found, Failure> {
        let digits: String = e164.chars().filter(char::is_ascii_digit).collect();
        let term = &digits[digits.len().saturating_sub(10)..];
        let sosl = format!(
            "FIND {{{term}}} IN PHONE FIELDS RETURNING Contact(Id, Phone, MobilePhone), Lead(Id, Phone, MobilePhone)"
        );
        let reply = self
            .call(
                reqwest::Method::GET,
                "/search",
                &[("q", &sosl)],
                Body::None,
                "Contact",
            )
            .await?;
        let mut found = Found::default();
        let records = reply
            .body
            .get("searchRecords")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for record in records {
            let kind = record
                .pointer("/attributes/type")
                .and_then(Value::as_str)
                .unwrap_or("");
            let Some(id) = record.get("Id").and_then(Value::as_str) else {
                continue;
            };
            let phones: Vec<String> = ["Phone", "MobilePhone"]
                .iter()
                .filter_map(|f| record.get(*f).and_then(Value::as_str).map(str::to_owned))
                .collect();
            match kind {
                "Contact" => found.contacts.push((id.to_owned(), phones)),
                "Lead" => found.leads.push((id.to_owned(), phones)),
                _ => {}
            }
        }
        Ok(found)
    }

    /// A GET of a stored file's signed link (stores that are not `file://`).
    pub async fn download(&self, url: &str) -> Result<reqwest::Response, Failure> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| Failure::retry(describe(&e)))?;
        if !response.status().is_success() {
            return Err(Failure::retry(format!(
                "reading a stored file: HTTP {}",
                response.status().as_u16()
            )));
        }
        Ok(response)
    }
}

use futures_util::StreamExt;

/// Records in one sObject Collections call (Salesforce's cap).
pub const COLLECTION_MAX: usize = 200;
/// Values in one SOQL `IN (…)` list.
pub const QUERY_IDS: usize = 200;
/// Characters of the values of one SOQL `IN (…)` list: the query travels in
/// the URL, which Salesforce caps at 16,384 bytes.
pub const QUERY_CHARS: usize = 12_000;

/// `'a','b'`, each value escaped.
fn quoted_list(values: &[&str]) -> String {
    values
        .iter()
        .map(|v| format!("'{}'", soql_escape(v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// The per-record results of an sObject Collections call
/// (`[{id, success, errors: [{statusCode, message, fields}], created}]`), in
/// request order. A record's error is classified as the same error of a
/// single-record call (400 and its code) would be.
fn record_outcomes(body: &Value, n: usize) -> Vec<Result<String, Failure>> {
    let results = body.as_array().map(Vec::as_slice).unwrap_or(&[]);
    (0..n)
        .map(|i| {
            let Some(result) = results.get(i) else {
                return Err(Failure::retry(
                    "Salesforce gave no result for this record in its collection answer",
                ));
            };
            if result.get("success").and_then(Value::as_bool) == Some(true) {
                return result
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| Failure::retry("no Task id in the collection answer"));
            }
            let error = result
                .get("errors")
                .and_then(Value::as_array)
                .and_then(|e| e.first())
                .unwrap_or(&Value::Null);
            let code = error.get("statusCode").and_then(Value::as_str);
            let message: String = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("")
                .chars()
                .take(500)
                .collect();
            Err(classify(
                Answer {
                    status: 400,
                    code,
                    message: &message,
                    retry_after: None,
                },
                "Task",
            )
            .unwrap_or_else(|| Failure::retry("a collection record failed")))
        })
        .collect()
}

/// The first error of a Salesforce error body: (errorCode, message).
fn first_error(body: &Value, status: u16) -> (Option<String>, String) {
    let first = body.as_array().and_then(|a| a.first()).unwrap_or(body);
    let code = first
        .get("errorCode")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let message = first
        .get("message")
        .and_then(Value::as_str)
        .map(|m| m.chars().take(500).collect())
        .unwrap_or_else(|| {
            if status == 300 {
                "several Tasks have this external id".to_owned()
            } else {
                String::new()
            }
        });
    (code, message)
}

fn soql_escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\'', "\\'")
}

/// A path segment, percent-encoded.
fn urlencoding(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

fn uuid_like() -> String {
    let n: u128 = rand::random();
    format!("{n:032x}")
}

/// A transport failure, named as Salesforce's.
fn describe(error: &reqwest::Error) -> String {
    format!("Salesforce {}", crate::failure::describe_request(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_error_bodies() {
        let body =
            json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]);
        assert_eq!(
            first_error(&body, 401),
            (
                Some("INVALID_SESSION_ID".into()),
                "Session expired or invalid".into()
            )
        );
        assert_eq!(first_error(&Value::Null, 300).0, None);
        assert_eq!(soql_escape("a'b"), "a\\'b");
        assert_eq!(quoted_list(&["a", "o'k"]), "'a','o\\'k'");
    }

    #[test]
    fn reads_collection_results_per_record() {
        let body = json!([
            {"id": "00T1", "success": true, "errors": [], "created": true},
            {"success": false, "created": false, "errors": [
                {"statusCode": "STRING_TOO_LONG", "message": "Subject: data value too large", "fields": ["Subject"]}
            ]},
            {"success": false, "errors": [{"statusCode": "UNABLE_TO_LOCK_ROW", "message": "busy", "fields": []}]},
            {"success": false, "errors": [{"statusCode": "REQUEST_LIMIT_EXCEEDED", "message": "limit", "fields": []}]},
        ]);
        let outcomes = record_outcomes(&body, 5);
        assert_eq!(outcomes[0], Ok("00T1".to_owned()));
        let refused = outcomes[1].clone().unwrap_err();
        assert_eq!(refused.class, crate::failure::Class::Permanent);
        assert_eq!(refused.code.as_deref(), Some("STRING_TOO_LONG"));
        assert!(outcomes[2].clone().unwrap_err().is_retry());
        assert_eq!(
            outcomes[3].clone().unwrap_err().class,
            crate::failure::Class::Setup
        );
        // A result missing from the answer is retried, never acked.
        assert!(outcomes[4].clone().unwrap_err().is_retry());
        assert_eq!(urlencoding("eng 1/x"), "eng%201%2Fx");
    }
}
