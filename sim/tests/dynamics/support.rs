//! A thin client for the fake: an Entra token, Web API requests, and the
//! answer as (status, headers, JSON body or text).

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use zcc_sim::sink::dynamics::{DynamicsFake, Environment};

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    /// The Web API error's (code, message).
    pub fn error(&self) -> (String, String) {
        (
            self.body["error"]["code"].as_str().unwrap_or("").to_owned(),
            self.body["error"]["message"]
                .as_str()
                .unwrap_or("")
                .to_owned(),
        )
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

pub struct Session {
    pub fake: DynamicsFake,
    pub http: reqwest::Client,
    pub token: String,
}

pub async fn token_answer(
    fake: &DynamicsFake,
    http: &reqwest::Client,
    form: &[(&str, &str)],
) -> Answer {
    answer(http.post(fake.token_url()).form(form)).await
}

pub async fn token(fake: &DynamicsFake, http: &reqwest::Client) -> String {
    let scope = format!("{}/.default", fake.url());
    let answer = token_answer(
        fake,
        http,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &fake.client_id()),
            ("client_secret", &fake.client_secret()),
            ("scope", &scope),
        ],
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

pub async fn session(env: Environment) -> Session {
    let fake = DynamicsFake::start(env).await.expect("fake starts");
    let http = client();
    let token = token(&fake, &http).await;
    Session { fake, http, token }
}

impl Session {
    pub fn url(&self, path: &str) -> String {
        format!("{}/api/data/v9.2/{path}", self.fake.url())
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self
            .http
            .request(method, self.url(path))
            .bearer_auth(&self.token)
            .header("odata-version", "4.0")
            .header("accept", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        answer(request).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None, &[]).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Answer {
        self.send(Method::PATCH, path, Some(body), &[]).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.send(Method::POST, path, Some(body), &[]).await
    }

    pub async fn batch(&self, content_type: &str, body: String) -> Answer {
        self.batch_with(content_type, body, &[]).await
    }

    pub async fn batch_with(
        &self,
        content_type: &str,
        body: String,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self
            .http
            .post(self.url("$batch"))
            .bearer_auth(&self.token)
            .header("content-type", content_type)
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        answer(request).await
    }
}

pub async fn answer(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("request reaches the fake");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(json!(text))
    };
    Answer {
        status,
        headers,
        body,
        text,
    }
}

/// A plain-HTTP client on the crate's TLS stack (rustls with ring, no roots).
pub fn client() -> reqwest::Client {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .no_proxy()
        .build()
        .expect("client")
}

/// A `$batch` body with one change set of (method, url, body).
pub fn change_set(id: &str, operations: &[(&str, String, Value)]) -> (String, String) {
    change_sets(id, &[operations])
}

/// A `$batch` body with one change set per entry of (method, url, body).
pub fn change_sets(id: &str, sets: &[&[(&str, String, Value)]]) -> (String, String) {
    let mut body = String::new();
    for (n, operations) in sets.iter().enumerate() {
        let cs = if n == 0 {
            format!("changeset_{id}")
        } else {
            format!("changeset_{id}_{n}")
        };
        body.push_str(&format!(
            "--batch_{id}\r\nContent-Type: multipart/mixed; boundary={cs}\r\n\r\n"
        ));
        for (i, (method, url, json)) in operations.iter().enumerate() {
            body.push_str(&format!(
                "--{cs}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: {}\r\n\r\n{method} {url} HTTP/1.1\r\nContent-Type: application/json; type=entry\r\n\r\n{json}\r\n",
                i + 1
            ));
        }
        body.push_str(&format!("--{cs}--\r\n"));
    }
    body.push_str(&format!("--batch_{id}--\r\n"));
    (body, format!("multipart/mixed; boundary=batch_{id}"))
}
