//! Integration tests of the fake ServiceNow instance over real loopback
//! sockets: what a client of the documented API sees.

use reqwest::Method;
use serde_json::{Value, json};
use zcc_sim::sink::servicenow::{DEFAULT_CORRELATION_FIELD, Instance, ServiceNowFake};

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

fn client() -> reqwest::Client {
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

async fn token(fake: &ServiceNowFake) -> String {
    let response = client()
        .post(format!("{}/oauth_token.do", fake.url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &fake.client_id()),
            ("client_secret", &fake.client_secret()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_u64().unwrap() > 0);
    body["access_token"].as_str().unwrap().to_owned()
}

async fn send(fake: &ServiceNowFake, method: Method, path: &str, body: Option<Value>) -> Answer {
    let mut request = client()
        .request(method, format!("{}{path}", fake.url()))
        .basic_auth(fake.username(), Some(fake.password()))
        .header("accept", "application/json");
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

#[tokio::test]
async fn a_record_is_created_found_by_its_field_and_patched() {
    let fake = ServiceNowFake::start(Instance::new()).await.unwrap();
    let created = send(
        &fake,
        Method::POST,
        "/api/now/table/interaction",
        Some(
            json!({DEFAULT_CORRELATION_FIELD: "eng-1", "short_description": "a", "u_unknown": "x"}),
        ),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.body["result"]["sys_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        created.body["result"].get("u_unknown").is_none(),
        "unknown fields are ignored"
    );
    let found = send(
        &fake,
        Method::GET,
        &format!("/api/now/table/interaction?sysparm_query={DEFAULT_CORRELATION_FIELD}%3Deng-1&sysparm_fields=sys_id,{DEFAULT_CORRELATION_FIELD},u_nothing&sysparm_limit=2"),
        None,
    )
    .await;
    assert_eq!(found.body["result"].as_array().unwrap().len(), 1);
    assert_eq!(found.body["result"][0]["sys_id"], id.as_str());
    assert!(found.body["result"][0].get("u_nothing").is_none());
    let patched = send(
        &fake,
        Method::PATCH,
        &format!("/api/now/table/interaction/{id}"),
        Some(json!({"short_description": "b", "contact": "c1"})),
    )
    .await;
    assert_eq!(patched.status, 200);
    assert_eq!(patched.body["result"]["short_description"], "b");
    assert_eq!(
        patched.body["result"]["contact"]["value"], "c1",
        "a reference shows its link"
    );
    let missing = send(
        &fake,
        Method::PATCH,
        "/api/now/table/interaction/nope",
        Some(json!({})),
    )
    .await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["error"]["message"], "No Record found");
    assert_eq!(missing.body["status"], "failure");
    fake.stop().await;
}

#[tokio::test]
async fn a_condition_on_an_unknown_field_is_dropped_and_an_unknown_table_refused() {
    let fake = ServiceNowFake::start(
        Instance::new().without_field("interaction", DEFAULT_CORRELATION_FIELD),
    )
    .await
    .unwrap();
    for n in 0..2 {
        let created = send(
            &fake,
            Method::POST,
            "/api/now/table/interaction",
            Some(json!({DEFAULT_CORRELATION_FIELD: format!("eng-{n}")})),
        )
        .await;
        assert!(
            created.body["result"]
                .get(DEFAULT_CORRELATION_FIELD)
                .is_none()
        );
    }
    let listed = send(
        &fake,
        Method::GET,
        &format!("/api/now/table/interaction?sysparm_query={DEFAULT_CORRELATION_FIELD}%3Deng-9"),
        None,
    )
    .await;
    assert_eq!(
        listed.body["result"].as_array().unwrap().len(),
        2,
        "the condition was dropped"
    );
    let bad = send(&fake, Method::GET, "/api/now/table/u_nothing", None).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["error"]["message"], "Invalid table u_nothing");
    fake.stop().await;
}

#[tokio::test]
async fn work_notes_append_entries_that_read_back_and_edit_in_place() {
    let fake = ServiceNowFake::start(Instance::new()).await.unwrap();
    let created = send(
        &fake,
        Method::POST,
        "/api/now/table/interaction",
        Some(json!({"work_notes": "first"})),
    )
    .await;
    let id = created.body["result"]["sys_id"]
        .as_str()
        .unwrap()
        .to_owned();
    send(
        &fake,
        Method::PATCH,
        &format!("/api/now/table/interaction/{id}"),
        Some(json!({"work_notes": "second"})),
    )
    .await;
    let read = send(
        &fake,
        Method::GET,
        &format!("/api/now/table/interaction/{id}?sysparm_fields=work_notes"),
        None,
    )
    .await;
    let journal = read.body["result"]["work_notes"].as_str().unwrap();
    assert!(
        journal.find("second").unwrap() < journal.find("first").unwrap(),
        "newest first: {journal}"
    );
    assert!(journal.contains("(Work notes)"));
    let entries = send(
        &fake,
        Method::GET,
        &format!("/api/now/table/sys_journal_field?sysparm_query=element_id%3D{id}%5Eelement%3Dwork_notes%5EORDERBYsys_created_on&sysparm_fields=sys_id,value"),
        None,
    )
    .await;
    let list = entries.body["result"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    let entry = list[0]["sys_id"].as_str().unwrap();
    let edited = send(
        &fake,
        Method::PATCH,
        &format!("/api/now/table/sys_journal_field/{entry}"),
        Some(json!({"value": "first, edited"})),
    )
    .await;
    assert_eq!(edited.status, 200);
    assert_eq!(
        fake.work_notes("interaction", &id),
        ["first, edited", "second"]
    );
    fake.deny_writes("sys_journal_field");
    let denied = send(
        &fake,
        Method::PATCH,
        &format!("/api/now/table/sys_journal_field/{entry}"),
        Some(json!({"value": "again"})),
    )
    .await;
    assert_eq!(denied.status, 403);
    assert_eq!(denied.body["error"]["message"], "Operation Failed");
    fake.stop().await;
}

#[tokio::test]
async fn attachments_upload_raw_bytes_and_list_by_record() {
    let fake = ServiceNowFake::start(Instance::new()).await.unwrap();
    let created = send(
        &fake,
        Method::POST,
        "/api/now/table/interaction",
        Some(json!({})),
    )
    .await;
    let id = created.body["result"]["sys_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let upload = |content_type: Option<&'static str>, name: &'static str| {
        let (url, id) = (fake.url(), id.clone());
        let (user, password) = (fake.username(), fake.password());
        async move {
            let mut request = client()
                .post(format!(
                    "{url}/api/now/attachment/file?table_name=interaction&table_sys_id={id}&file_name={name}"
                ))
                .basic_auth(user, Some(password))
                .body(b"ID3 bytes".to_vec());
            if let Some(content_type) = content_type {
                request = request.header("content-type", content_type);
            }
            let response = request.send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    let (status, body) = upload(Some("audio/mpeg"), "recording-1.mp3").await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["result"]["file_name"], "recording-1.mp3");
    assert_eq!(body["result"]["size_bytes"], "9");
    let (status, _) = upload(None, "x.mp3").await;
    assert_eq!(status, 400, "a Content-Type is required");
    let listed = send(
        &fake,
        Method::GET,
        &format!(
            "/api/now/attachment?sysparm_query=table_name%3Dinteraction%5Etable_sys_id%3D{id}"
        ),
        None,
    )
    .await;
    assert_eq!(listed.body["result"].as_array().unwrap().len(), 1);
    assert_eq!(fake.attachments_of("interaction", &id)[0].2, b"ID3 bytes");
    fake.stop().await;
}

#[tokio::test]
async fn tokens_expire_throttles_carry_rate_limit_headers_and_bad_credentials_are_refused() {
    let fake = ServiceNowFake::start(Instance::new()).await.unwrap();
    let bearer = token(&fake).await;
    let get = |token: String| {
        let url = fake.url();
        async move {
            client()
                .get(format!("{url}/api/now/table/interaction?sysparm_limit=1"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(get(bearer.clone()).await.status().as_u16(), 200);
    fake.throttle_next(1);
    let throttled = get(bearer.clone()).await;
    assert_eq!(throttled.status().as_u16(), 429);
    for header in [
        "x-ratelimit-limit",
        "x-ratelimit-reset",
        "x-ratelimit-rule",
        "retry-after",
    ] {
        assert!(throttled.headers().contains_key(header), "{header}");
    }
    fake.expire_tokens();
    let expired = get(bearer).await;
    assert_eq!(expired.status().as_u16(), 401);
    let body: Value = expired.json().await.unwrap();
    assert_eq!(body["error"]["message"], "User Not Authenticated");
    let refused = client()
        .post(format!("{}/oauth_token.do", fake.url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &fake.client_id()),
            ("client_secret", "wrong"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let answer = send(&fake, Method::GET, "/api/now/table/interaction", None).await;
    assert_eq!(answer.status, 200, "basic auth as the integration user");
    assert!(answer.headers.get("content-type").is_some());
    fake.unavailable_for_next(1);
    assert_eq!(
        send(&fake, Method::GET, "/api/now/table/interaction", None)
            .await
            .status,
        503
    );
    fake.stop().await;
}
