//! A thin client for the fake: a token, JSON requests, and the answer as (status, headers,
//! JSON body).

use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use zcc_sim::sink::salesforce::{Org, SalesforceFake};

pub const V: &str = "v62.0";

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

pub struct Session {
    pub fake: SalesforceFake,
    pub http: reqwest::Client,
    pub token: String,
}

pub async fn token(fake: &SalesforceFake, http: &reqwest::Client) -> String {
    let answer = http
        .post(fake.token_url())
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &fake.client_id()),
            ("client_secret", &fake.client_secret()),
        ])
        .send()
        .await
        .expect("token request");
    let body: Value = answer.json().await.expect("token body");
    body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

pub async fn session(org: Org) -> Session {
    let fake = SalesforceFake::start(org).await.expect("fake starts");
    let http = client();
    let token = token(&fake, &http).await;
    Session { fake, http, token }
}

impl Session {
    pub fn url(&self, path: &str) -> String {
        format!("{}/services/data/{V}{path}", self.fake.url())
    }

    pub async fn send(&self, method: Method, url: &str, body: Option<Value>) -> Answer {
        let mut request = self.http.request(method, url).bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        answer(request).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, &self.url(path), None).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> Answer {
        self.send(Method::PATCH, &self.url(path), Some(body)).await
    }

    pub async fn raw_patch(&self, path: &str, body: &str) -> Answer {
        let request = self
            .http
            .patch(self.url(path))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body.to_owned());
        answer(request).await
    }

    pub async fn upsert(&self, key: &str, body: Value) -> Answer {
        self.patch(&format!("/sobjects/Task/Zoom_Engagement_Id__c/{key}"), body)
            .await
    }

    pub async fn query(&self, soql: &str) -> Answer {
        let request = self
            .http
            .get(self.url("/query"))
            .query(&[("q", soql)])
            .bearer_auth(&self.token);
        answer(request).await
    }

    pub async fn search(&self, sosl: &str) -> Answer {
        let request = self
            .http
            .get(self.url("/search"))
            .query(&[("q", sosl)])
            .bearer_auth(&self.token);
        answer(request).await
    }
}

pub async fn answer(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.expect("request reaches the fake");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(json!(String::from_utf8_lossy(&bytes)))
    };
    Answer {
        status,
        headers,
        body,
    }
}

/// The single error of a REST error array: (errorCode, message, fields).
pub fn error(answer: &Answer) -> (String, String, Value) {
    let item = &answer.body[0];
    assert_eq!(
        answer.body.as_array().map(Vec::len),
        Some(1),
        "one error: {}",
        answer.body
    );
    (
        item["errorCode"].as_str().unwrap_or_default().to_owned(),
        item["message"].as_str().unwrap_or_default().to_owned(),
        item.get("fields").cloned().unwrap_or(Value::Null),
    )
}

/// A plain-HTTP client on the crate's TLS stack (rustls with ring, no roots:
/// nothing here is TLS).
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
