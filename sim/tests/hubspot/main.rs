//! Integration tests of the fake HubSpot portal over real loopback sockets.

use reqwest::Method;
use serde_json::{Value, json};
use zcc_sim::sink::hubspot::{Contact, HubSpotFake, Portal};

struct Answer {
    status: u16,
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

async fn send(fake: &HubSpotFake, method: Method, path: &str, body: Option<Value>) -> Answer {
    let mut request = client()
        .request(method, format!("{}{path}", fake.url()))
        .bearer_auth(fake.token());
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    Answer { status, body }
}

fn upsert_body(key: &str, properties: Value) -> Value {
    json!({"inputs": [{"id": key, "idProperty": "zcc_engagement_id", "properties": properties}]})
}

const UPSERT: &str = "/crm/objects/2026-03/calls/batch/upsert";

#[tokio::test]
async fn batch_upsert_by_a_unique_property_creates_once_then_updates() {
    let fake = HubSpotFake::start(Portal::new()).await.unwrap();
    let first = send(
        &fake,
        Method::POST,
        UPSERT,
        Some(upsert_body(
            "eng-1",
            json!({"hs_timestamp": "2026-12-01T10:00:00Z", "hs_call_title": "a"}),
        )),
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["results"][0]["new"], true);
    let id = first.body["results"][0]["id"].as_str().unwrap().to_owned();
    let second = send(
        &fake,
        Method::POST,
        UPSERT,
        Some(upsert_body(
            "eng-1",
            json!({"hs_call_title": "b", "hs_call_direction": "INBOUND"}),
        )),
    )
    .await;
    assert_eq!(second.status, 200);
    assert_eq!(second.body["results"][0]["new"], false);
    assert_eq!(second.body["results"][0]["id"], json!(id));
    let calls = fake.calls_with("zcc_engagement_id", "eng-1");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["hs_call_title"], "b");
    // Read back by the unique property.
    let read = send(
        &fake,
        Method::GET,
        "/crm/objects/2026-03/calls/eng-1?idProperty=zcc_engagement_id&properties=hs_call_title",
        None,
    )
    .await;
    assert_eq!(read.body["properties"]["hs_call_title"], "b");
    // Refusals: no hs_timestamp on create, a bad enum, an unknown property,
    // an unknown disposition, a duplicate id.
    for (body, needle) in [
        (
            upsert_body("eng-2", json!({"hs_call_title": "x"})),
            "hs_timestamp is required",
        ),
        (
            upsert_body("eng-1", json!({"hs_call_direction": "SIDEWAYS"})),
            "allowed options",
        ),
        (
            upsert_body("eng-1", json!({"nope": "x"})),
            "Property \"nope\" does not exist",
        ),
        (
            upsert_body(
                "eng-1",
                json!({"hs_call_disposition": "00000000-0000-0000-0000-000000000000"}),
            ),
            "hs_call_disposition",
        ),
        (
            upsert_body("eng-1", json!({"hs_attachment_ids": "999"})),
            "hs_attachment_ids",
        ),
        (
            json!({"inputs": [{"id": "a", "idProperty": "zcc_engagement_id", "properties": {}}, {"id": "a", "idProperty": "zcc_engagement_id", "properties": {}}]}),
            "Duplicate IDs",
        ),
    ] {
        let refused = send(&fake, Method::POST, UPSERT, Some(body)).await;
        assert_eq!(refused.status, 400, "{}", refused.body);
        assert_eq!(refused.body["category"], "VALIDATION_ERROR");
        assert!(
            refused.body["message"].as_str().unwrap().contains(needle),
            "{needle}: {}",
            refused.body
        );
    }
    assert_eq!(fake.calls().len(), 1);
    fake.stop().await;
}

#[tokio::test]
async fn a_property_without_unique_values_cannot_be_the_id_property() {
    let fake = HubSpotFake::start(Portal::new().property("zcc_engagement_id", false))
        .await
        .unwrap();
    let refused = send(
        &fake,
        Method::POST,
        UPSERT,
        Some(upsert_body(
            "eng-1",
            json!({"hs_timestamp": "2026-12-01T10:00:00Z"}),
        )),
    )
    .await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.body["message"]
            .as_str()
            .unwrap()
            .contains("zcc_engagement_id is not a unique property")
    );
    let property = send(
        &fake,
        Method::GET,
        "/crm/properties/2026-03/calls/zcc_engagement_id",
        None,
    )
    .await;
    assert_eq!(property.body["hasUniqueValue"], false);
    let missing = send(
        &fake,
        Method::GET,
        "/crm/properties/2026-03/calls/other",
        None,
    )
    .await;
    assert_eq!(missing.status, 404);
    fake.stop().await;
}

#[tokio::test]
async fn scopes_tokens_and_throttles_answer_like_hubspot() {
    let fake = HubSpotFake::start(Portal::new().scopes(&["crm.objects.calls.read"]))
        .await
        .unwrap();
    let refused = send(
        &fake,
        Method::POST,
        UPSERT,
        Some(upsert_body("e", json!({}))),
    )
    .await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.body["category"], "MISSING_SCOPES");
    assert_eq!(
        refused.body["errors"][0]["context"]["requiredGranularScopes"],
        json!(["crm.objects.calls.write"])
    );
    let old = fake.token();
    fake.rotate_token();
    let stale = client()
        .get(format!("{}/calling/v1/dispositions", fake.url()))
        .bearer_auth(old)
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status().as_u16(), 401);
    let dispositions = send(&fake, Method::GET, "/calling/v1/dispositions", None).await;
    assert_eq!(dispositions.body.as_array().unwrap().len(), 6);
    fake.throttle_next(1, "TEN_SECONDLY_ROLLING");
    let throttled = send(&fake, Method::GET, "/calling/v1/dispositions", None).await;
    assert_eq!(throttled.status, 429);
    assert_eq!(throttled.body["policyName"], "TEN_SECONDLY_ROLLING");
    assert_eq!(throttled.body["errorType"], "RATE_LIMIT");
    assert_eq!(
        send(&fake, Method::GET, "/calling/v1/dispositions", None)
            .await
            .status,
        200
    );
    fake.stop().await;
}

#[tokio::test(start_paused = true)]
async fn contacts_search_by_phone_tokens_after_the_index_lag() {
    let fake = HubSpotFake::start(
        Portal::new().contact(Contact::new("Ada", "Lovelace").phone("(415) 555-1212")),
    )
    .await
    .unwrap();
    fake.set_search_lag(std::time::Duration::from_secs(10));
    let fresh = fake.add_contact(Contact::new("Alan", "Turing").mobilephone("+1 415 555 1212"));
    let body = json!({
        "filterGroups": [
            {"filters": [{"propertyName": "phone", "operator": "CONTAINS_TOKEN", "value": "*1212"}]},
            {"filters": [{"propertyName": "mobilephone", "operator": "CONTAINS_TOKEN", "value": "*1212"}]},
        ],
        "properties": ["phone", "mobilephone"],
        "limit": 100,
    });
    let search = "/crm/objects/2026-03/contacts/search";
    let first = send(&fake, Method::POST, search, Some(body.clone())).await;
    assert_eq!(
        first.body["total"], 1,
        "the fresh contact is not indexed yet: {}",
        first.body
    );
    tokio::time::advance(std::time::Duration::from_secs(11)).await;
    let later = send(&fake, Method::POST, search, Some(body)).await;
    assert_eq!(later.body["total"], 2);
    assert!(
        later.body["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == json!(fresh))
    );
    fake.stop().await;
}

#[tokio::test]
async fn files_upload_search_and_attach_and_calls_associate() {
    let fake = HubSpotFake::start(Portal::new().contact(Contact::new("Ada", "L").phone("1")))
        .await
        .unwrap();
    let boundary = "xyz";
    let mut body = Vec::new();
    for (name, value) in [
        ("folderPath", "/zcc-relay/eng-1"),
        ("fileName", "rec.mp3"),
        ("options", r#"{"access":"PRIVATE"}"#),
    ] {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"rec.mp3\"\r\nContent-Type: audio/mpeg\r\n\r\n").as_bytes());
    body.extend_from_slice(b"ID3bytes");
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let uploaded = client()
        .post(format!("{}/files/v3/files", fake.url()))
        .bearer_auth(fake.token())
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status().as_u16(), 201);
    let file: Value = uploaded.json().await.unwrap();
    assert_eq!(file["path"], "/zcc-relay/eng-1/rec.mp3");
    let id = file["id"].as_str().unwrap().to_owned();
    assert_eq!(fake.file(&id).unwrap().1, b"ID3bytes");
    let found = send(
        &fake,
        Method::GET,
        "/files/v3/files/search?path=%2Fzcc-relay%2Feng-1%2Frec.mp3",
        None,
    )
    .await;
    assert_eq!(found.body["results"][0]["id"], json!(id));
    let created = send(
        &fake,
        Method::POST,
        UPSERT,
        Some(upsert_body(
            "eng-1",
            json!({"hs_timestamp": "1764583200000", "hs_attachment_ids": id}),
        )),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.body);
    let call = created.body["results"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let contact = fake.add_contact(Contact::new("B", "C"));
    for _ in 0..2 {
        let linked = send(
            &fake,
            Method::PUT,
            &format!("/crm/v4/objects/calls/{call}/associations/default/contacts/{contact}"),
            None,
        )
        .await;
        assert_eq!(linked.status, 200, "{}", linked.body);
        assert_eq!(
            linked.body["results"][0]["associationSpec"]["associationTypeId"],
            194
        );
    }
    assert_eq!(fake.associations_of(&call), vec![contact]);
    let nowhere = send(
        &fake,
        Method::PUT,
        &format!("/crm/v4/objects/calls/{call}/associations/default/contacts/999999"),
        None,
    )
    .await;
    assert_eq!(nowhere.status, 404);
    fake.stop().await;
}
