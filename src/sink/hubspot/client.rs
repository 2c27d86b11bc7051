//! The HubSpot API client of one sink: the bearer token (a private app's
//! token or a service key; a file is read again after a 401), every call
//! through the sink's request budget, error bodies classified by
//! [`super::error`] (a ten-second-window 429 pauses the whole sink), the
//! date-versioned CRM paths, files. Never logs a token.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::config::HubSpotSinkSettings;
use super::error::{classify, said};
use crate::config::Secret;
use crate::crm::budget::Budget;
use crate::failure::{Failure, parse_retry_after};
use crate::oauth::{Fetched, FileToken, OAuthError, TokenCache, TokenSource};

/// The date-versioned API of the CRM object and property paths.
pub const API_VERSION: &str = "2026-03";
/// Answers above this are refused unread.
const MAX_ANSWER: usize = 8 * 1024 * 1024;
/// A static token is trusted this long before it is handed out again.
const STATIC_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// The token: a file read again after a 401, or the value from the config.
pub enum Source {
    File(FileToken),
    Static {
        name: String,
        token: std::sync::Mutex<Secret>,
    },
}

impl TokenSource for Source {
    type Error = OAuthError;

    fn name(&self) -> &str {
        match self {
            Source::File(file) => file.name(),
            Source::Static { name, .. } => name,
        }
    }

    async fn fetch(&self) -> Result<Fetched, OAuthError> {
        match self {
            Source::File(file) => file.fetch().await,
            Source::Static { token, .. } => Ok(Fetched {
                value: token.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                lifetime: STATIC_LIFETIME,
            }),
        }
    }
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    unique_property: String,
    tokens: TokenCache<Source>,
    budget: Budget,
    dispositions: tokio::sync::OnceCell<Vec<(String, String)>>,
}

/// A request body.
pub enum Body {
    None,
    Json(Value),
    Multipart { boundary: String, bytes: Vec<u8> },
}

impl Client {
    pub fn new(
        name: &str,
        settings: &HubSpotSinkSettings,
        timeout: Duration,
        tls: &std::sync::Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<Client> {
        let http = crate::tls::http_client(tls, timeout)?;
        let source = match &settings.token_file {
            Some(path) => Source::File(FileToken::new(name, path)),
            None => Source::Static {
                name: name.to_owned(),
                token: std::sync::Mutex::new(settings.token.clone()),
            },
        };
        Ok(Client {
            http,
            base: settings.base().to_owned(),
            unique_property: settings.unique_property.clone(),
            tokens: TokenCache::new(source),
            budget: Budget::new(settings.requests_per_second),
            dispositions: tokio::sync::OnceCell::new(),
        })
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub fn set_token(&self, token: Secret) {
        if let Source::Static { token: held, .. } = self.tokens.source() {
            *held.lock().unwrap_or_else(|p| p.into_inner()) = token;
        }
    }

    /// The token can be had (a file that reads).
    pub async fn token_check(&self) -> Result<(), Failure> {
        self.tokens
            .token()
            .await
            .map(|_| ())
            .map_err(|e| e.failure())
    }

    /// One call at `path` (below `api_base_url`, query included); 2xx is the
    /// body, everything else classified.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Body,
    ) -> Result<Value, Failure> {
        self.budget.acquire().await;
        let token = self.tokens.token().await.map_err(|e| e.failure())?;
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token.expose())
            .header("accept", "application/json");
        request = match body {
            Body::None => request,
            Body::Json(value) => request.json(&value),
            Body::Multipart { boundary, bytes } => request
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(bytes),
        };
        let response = request
            .send()
            .await
            .map_err(|e| Failure::retry(describe(&e)))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let bytes = match crate::body::read_capped(response, MAX_ANSWER).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Err(Failure::retry(format!("HTTP {status}: answer too large"))),
            Err(e) => return Err(Failure::retry(describe(&e))),
        };
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        match classify(status, &said(&body), retry_after, &self.unique_property) {
            None => Ok(body),
            Some(failure) => {
                if status == 401 {
                    self.tokens.invalidate(&token).await;
                }
                if let Some(after) = failure.retry_after() {
                    self.budget.pause(after);
                }
                Err(failure)
            }
        }
    }

    /// Upserts the calls of `inputs` (engagement id → properties) in one
    /// `batch/upsert` by the unique property (at most 100); each one's call
    /// id. A refused input refuses the whole batch (HubSpot validates every
    /// input before writing any).
    pub async fn upsert_calls(
        &self,
        inputs: &[(String, serde_json::Map<String, Value>)],
    ) -> Result<std::collections::HashMap<String, String>, Failure> {
        let body = json!({"inputs": inputs
            .iter()
            .map(|(key, properties)| json!({
                "id": key,
                "idProperty": self.unique_property,
                "properties": properties,
            }))
            .collect::<Vec<_>>()});
        let answer = self
            .call(
                reqwest::Method::POST,
                &format!("/crm/objects/{API_VERSION}/calls/batch/upsert"),
                Body::Json(body),
            )
            .await?;
        if let Some(error) = answer["errors"].as_array().and_then(|e| e.first()) {
            let message = error["message"].as_str().unwrap_or("refused");
            return Err(Failure::permanent(format!("batch upsert: {message}")));
        }
        let results = answer["results"].as_array().cloned().unwrap_or_default();
        let mut ids = std::collections::HashMap::new();
        for (n, result) in results.iter().enumerate() {
            let Some(id) = result["id"].as_str() else {
                continue;
            };
            // Each result names its key in the unique property. Without it,
            // only a batch of one says whose call it is (HubSpot does not
            // promise the inputs' order); the others are left unmatched.
            let key = match result["properties"][&self.unique_property].as_str() {
                Some(key) => Some(key.to_owned()),
                None if inputs.len() == 1 && n == 0 => Some(inputs[0].0.clone()),
                None => None,
            };
            if let Some(key) = key {
                ids.insert(key, id.to_owned());
            }
        }
        Ok(ids)
    }

    /// Associates the call with the contact (the default type, 194).
    pub async fn associate(&self, call_id: &str, contact_id: &str) -> Result<(), Failure> {
        self.call(
            reqwest::Method::PUT,
            &format!(
                "/crm/v4/objects/calls/{}/associations/default/contacts/{}",
                encode(call_id),
                encode(contact_id)
            ),
            Body::None,
        )
        .await
        .map(|_| ())
    }

    /// Contacts whose phone or mobile phone holds a token ending in the
    /// number's last four digits: (id, phones). The relay compares in E.164.
    pub async fn contacts_by_phone(
        &self,
        e164: &str,
    ) -> Result<Vec<(String, Vec<String>)>, Failure> {
        let digits: String = e164.chars().filter(char::is_ascii_digit).collect();
        let tail = &digits[digits.len().saturating_sub(4)..];
        let group = |property: &str| json!({"filters": [{"propertyName": property, "operator": "CONTAINS_TOKEN", "value": format!("*{tail}")}]});
        let body = json!({
            "filterGroups": [group("phone"), group("mobilephone")],
            "properties": ["phone", "mobilephone"],
            "limit": 100,
        });
        let answer = self
            .call(
                reqwest::Method::POST,
                &format!("/crm/objects/{API_VERSION}/contacts/search"),
                Body::Json(body),
            )
            .await?;
        Ok(answer["results"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| {
                let id = c["id"].as_str()?.to_owned();
                let phones = ["phone", "mobilephone"]
                    .iter()
                    .filter_map(|p| c["properties"][*p].as_str().map(str::to_owned))
                    .collect();
                Some((id, phones))
            })
            .collect())
    }

    /// The portal's call dispositions (id, label), read once.
    pub async fn dispositions(&self) -> Result<&[(String, String)], Failure> {
        self.dispositions
            .get_or_try_init(|| async {
                let answer = self
                    .call(reqwest::Method::GET, "/calling/v1/dispositions", Body::None)
                    .await?;
                Ok(answer
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|d| d["deleted"].as_bool() != Some(true))
                    .filter_map(|d| {
                        Some((
                            d["id"].as_str()?.to_owned(),
                            d["label"].as_str()?.to_owned(),
                        ))
                    })
                    .collect())
            })
            .await
            .map(Vec::as_slice)
    }

    /// The id of the file already uploaded at `folder/name`, if any.
    pub async fn find_file(&self, folder: &str, name: &str) -> Result<Option<String>, Failure> {
        let path = format!(
            "/files/v3/files/search?path={}",
            encode(&format!("{folder}/{name}"))
        );
        let answer = self.call(reqwest::Method::GET, &path, Body::None).await?;
        Ok(answer["results"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["path"].as_str() == Some(&format!("{folder}/{name}")))
            .and_then(|f| f["id"].as_str().map(str::to_owned)))
    }

    /// Uploads a private file into `folder`; its id.
    pub async fn upload(
        &self,
        folder: &str,
        name: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<String, Failure> {
        let boundary = format!("zcc-relay-{:032x}", rand::random::<u128>());
        let safe_name = name.replace(['"', '\r', '\n'], "");
        let options =
            json!({"access": "PRIVATE", "overwrite": false, "duplicateValidationStrategy": "NONE"});
        let mut body = Vec::with_capacity(bytes.len() + 1024);
        let mut field = |name: &str, value: &str| {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                    .as_bytes(),
            );
        };
        field("folderPath", folder);
        field("fileName", &safe_name);
        field("options", &options.to_string());
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{safe_name}\"\r\nContent-Type: {content_type}\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(&bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let answer = self
            .call(
                reqwest::Method::POST,
                "/files/v3/files",
                Body::Multipart {
                    boundary,
                    bytes: body,
                },
            )
            .await?;
        answer["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| Failure::retry("the file upload answered no id"))
    }
}

/// A path segment or query value, percent-encoded.
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
    format!("HubSpot {}", crate::failure::describe_request(error))
}
