//! `POST /sobjects/ContentVersion` in JSON (base64) and multipart, linked to a Task by
//! `FirstPublishLocationId`, and found again by SOQL.

use base64::Engine;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::json;
use zcc_sim::sink::salesforce::{JSON_BLOB_MAX, ObjectAccess, Org};

use crate::support::{Session, answer, error, session};

async fn task(s: &Session) -> String {
    let got = s.upsert("eng-1", json!({"Subject": "call"})).await;
    got.body["id"].as_str().unwrap_or_default().to_owned()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn json_upload_stores_the_bytes_and_links_the_task() {
    let s = session(Org::new()).await;
    let task_id = task(&s).await;
    let bytes = b"ID3\x00\x01binary\r\n--not-a-boundary".to_vec();
    let got = s
        .send(
            reqwest::Method::POST,
            &s.url("/sobjects/ContentVersion"),
            Some(json!({
            "Title": "recording-42.mp3", "PathOnClient": "recording-42.mp3",
            "FirstPublishLocationId": task_id, "VersionData": b64(&bytes)})),
        )
        .await;
    assert_eq!(got.status, StatusCode::CREATED, "{}", got.body);
    let id = got.body["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(got.body, json!({"id": id, "success": true, "errors": []}));
    let stored = s.fake.content_versions();
    assert_eq!(stored.len(), 1);
    let version = &stored[0];
    assert!(version.id.starts_with("068") && version.content_document_id.starts_with("069"));
    assert_eq!(
        (
            version.title.as_str(),
            version.path_on_client.as_str(),
            version.upload
        ),
        ("recording-42.mp3", "recording-42.mp3", "json")
    );
    assert_eq!(
        version.first_publish_location_id.as_deref(),
        Some(task_id.as_str())
    );
    assert_eq!(&version.bytes[..], &bytes[..]);
    let links = s.fake.content_document_links();
    assert_eq!(
        (links.len(), links[0].linked_entity_id.as_str()),
        (1, task_id.as_str())
    );

    let found = s
        .query(&format!("SELECT Id, ContentDocumentId, Title, ContentSize FROM ContentVersion WHERE FirstPublishLocationId = '{task_id}' AND PathOnClient = 'recording-42.mp3'"))
        .await;
    assert_eq!(found.body["totalSize"], 1, "{}", found.body);
    assert_eq!(found.body["records"][0]["Id"], json!(id));
    assert_eq!(found.body["records"][0]["ContentSize"], bytes.len());
    assert_eq!(
        found.body["records"][0]["attributes"],
        json!({"type": "ContentVersion", "url": format!("/services/data/v62.0/sobjects/ContentVersion/{id}")})
    );
    let links = s.query(&format!("SELECT Id, ContentDocumentId, LinkedEntityId FROM ContentDocumentLink WHERE LinkedEntityId = '{task_id}'")).await;
    assert_eq!(links.body["totalSize"], 1, "{}", links.body);
    assert_eq!(
        links.body["records"][0]["ContentDocumentId"],
        json!(version.content_document_id)
    );
    let unfiltered = s.query("SELECT Id FROM ContentDocumentLink").await;
    assert!(
        error(&unfiltered)
            .1
            .starts_with("Implementation restriction: ContentDocumentLink requires a filter")
    );
    let document = s
        .query(&format!(
            "SELECT Id, Title, LatestPublishedVersionId FROM ContentDocument WHERE Id = '{}'",
            version.content_document_id
        ))
        .await;
    assert_eq!(
        document.body["records"][0]["LatestPublishedVersionId"],
        json!(id)
    );
    let download = answer(
        s.http
            .get(s.url(&format!("/sobjects/ContentVersion/{id}/VersionData")))
            .bearer_auth(&s.token),
    )
    .await;
    assert_eq!(download.status, StatusCode::OK);
    assert_eq!(s.fake.request_counts().content_version, 2);
}

#[tokio::test]
async fn multipart_upload_takes_entity_content_and_binary_version_data() {
    let s = session(Org::new()).await;
    let task_id = task(&s).await;
    let bytes: Vec<u8> = (0..200_000u32)
        .map(|i| (i % 251) as u8)
        .chain(b"\r\n--boundary--\r\n".iter().copied())
        .collect();
    let entity =
        json!({"PathOnClient": "transcript-7.vtt", "FirstPublishLocationId": task_id}).to_string();
    let form = Form::new()
        .part(
            "entity_content",
            Part::text(entity)
                .mime_str("application/json")
                .expect("mime"),
        )
        .part(
            "VersionData",
            Part::bytes(bytes.clone())
                .file_name("transcript-7.vtt")
                .mime_str("application/octet-stream")
                .expect("mime"),
        );
    let got = answer(
        s.http
            .post(s.url("/sobjects/ContentVersion"))
            .bearer_auth(&s.token)
            .multipart(form),
    )
    .await;
    assert_eq!(got.status, StatusCode::CREATED, "{}", got.body);
    let version = &s.fake.content_versions()[0];
    assert_eq!(version.upload, "multipart");
    assert_eq!(version.bytes.len(), bytes.len());
    assert!(version.bytes[..] == bytes[..]);
    assert_eq!(
        version.title, "transcript-7",
        "Title defaults from PathOnClient"
    );
}

#[tokio::test]
async fn multipart_without_entity_content_is_refused() {
    let s = session(Org::new()).await;
    let form = Form::new().part("VersionData", Part::bytes(vec![1, 2, 3]).file_name("a.bin"));
    let got = answer(
        s.http
            .post(s.url("/sobjects/ContentVersion"))
            .bearer_auth(&s.token)
            .multipart(form),
    )
    .await;
    assert_eq!(
        (got.status, error(&got).0),
        (StatusCode::BAD_REQUEST, "INVALID_MULTIPART_REQUEST".into())
    );
    assert!(s.fake.content_versions().is_empty());
}

#[tokio::test]
async fn bad_links_and_missing_fields_are_refused() {
    let s = session(Org::new()).await;
    let url = s.url("/sobjects/ContentVersion");
    let post = |body| s.send(reqwest::Method::POST, &url, Some(body));
    let got = post(json!({"PathOnClient": "a.mp3", "VersionData": b64(b"x"), "FirstPublishLocationId": "00TFk0000000999"})).await;
    assert_eq!(
        (error(&got).0, error(&got).2),
        (
            "INVALID_CROSS_REFERENCE_KEY".into(),
            json!(["FirstPublishLocationId"])
        )
    );
    let got = post(
        json!({"PathOnClient": "a.mp3", "VersionData": b64(b"x"), "FirstPublishLocationId": "zzz"}),
    )
    .await;
    assert_eq!(error(&got).0, "MALFORMED_ID");
    let got = post(json!({"VersionData": b64(b"x")})).await;
    assert_eq!(
        error(&got),
        (
            "REQUIRED_FIELD_MISSING".into(),
            "Required fields are missing: [PathOnClient]".into(),
            json!(["PathOnClient"])
        )
    );
    let got = post(json!({"PathOnClient": "a.mp3"})).await;
    assert_eq!(error(&got).2, json!(["VersionData"]));
    let got = post(json!({"PathOnClient": "a.mp3", "VersionData": "***not base64***"})).await;
    assert_eq!(error(&got).0, "JSON_PARSER_ERROR");
    assert!(s.fake.content_versions().is_empty());
}

#[tokio::test]
async fn json_uploads_are_capped_at_37_5_mb_of_data() {
    let s = session(Org::new()).await;
    // The body is written by hand: serde_json's escaping of a 50 MB string is slow unoptimised.
    let upload = |size: usize| {
        let body = format!(
            "{{\"PathOnClient\": \"big.wav\", \"VersionData\": \"{}\"}}",
            b64(&vec![7u8; size])
        );
        answer(
            s.http
                .post(s.url("/sobjects/ContentVersion"))
                .bearer_auth(&s.token)
                .header("content-type", "application/json")
                .body(body),
        )
    };
    let got = upload(JSON_BLOB_MAX + 1).await;
    assert_eq!(got.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", got.body);
    assert!(s.fake.content_versions().is_empty());
    let got = upload(JSON_BLOB_MAX).await;
    assert_eq!(got.status, StatusCode::CREATED);
    assert_eq!(s.fake.content_versions()[0].bytes.len(), JSON_BLOB_MAX);
}

#[tokio::test]
async fn without_create_permission_uploads_are_refused() {
    let s = session(Org::new().content_version_access(ObjectAccess::READ_ONLY)).await;
    let got = s
        .send(
            reqwest::Method::POST,
            &s.url("/sobjects/ContentVersion"),
            Some(json!({"PathOnClient": "a.mp3", "VersionData": b64(b"x")})),
        )
        .await;
    assert_eq!(
        (got.status, error(&got).0),
        (
            StatusCode::BAD_REQUEST,
            "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY".into()
        )
    );
}

#[tokio::test]
async fn files_are_found_by_where_they_were_published_or_by_its_absence() {
    let s = session(Org::new()).await;
    let task_id = task(&s).await;
    let url = s.url("/sobjects/ContentVersion");
    let linked = json!({"PathOnClient": "a.mp3", "VersionData": b64(b"a"), "FirstPublishLocationId": &task_id[..15]});
    let unlinked = json!({"PathOnClient": "b.mp3", "VersionData": b64(b"b")});
    assert_eq!(
        s.send(reqwest::Method::POST, &url, Some(linked))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        s.send(reqwest::Method::POST, &url, Some(unlinked))
            .await
            .status,
        StatusCode::CREATED
    );
    let titles = |answer: &crate::support::Answer| -> Vec<String> {
        answer.body["records"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|r| r["Title"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let by_task = s.query(&format!("SELECT Title FROM ContentVersion WHERE FirstPublishLocationId IN ('{task_id}', '00TFk0000000999')")).await;
    assert_eq!(titles(&by_task), ["a"]);
    let nowhere = s
        .query("SELECT Title FROM ContentVersion WHERE FirstPublishLocationId = null")
        .await;
    assert_eq!(titles(&nowhere), ["b"]);
    let by_path = s
        .query("SELECT Title FROM ContentVersion WHERE PathOnClient = 'B.MP3'")
        .await;
    assert_eq!(titles(&by_path), ["b"], "text comparisons ignore case");
}
