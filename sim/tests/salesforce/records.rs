//! Record-id resources: `GET /sobjects/{Object}/{Id}`, `GET` by external id, `PATCH` a Task by
//! id (204), and `PATCH /composite/sobjects` (update by id).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use zcc_sim::sink::salesforce::{ObjectAccess, Org};

use crate::support::{answer, error, session};

const FIELD: &str = "Zoom_Engagement_Id__c";

#[tokio::test]
async fn a_task_is_updated_by_its_id_with_204() {
    let s = session(Org::new()).await;
    let id = s.upsert("eng-1", json!({"TaskSubtype": "Call"})).await.body["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let got = s
        .patch(
            &format!("/sobjects/Task/{id}"),
            json!({"CallDisposition": "Resolved"}),
        )
        .await;
    assert_eq!(
        (got.status, got.body),
        (StatusCode::NO_CONTENT, Value::Null)
    );
    let got = s
        .patch(
            &format!("/sobjects/Task/{}", &id[..15]),
            json!({"Subject": "15 chars"}),
        )
        .await;
    assert_eq!(got.status, StatusCode::NO_CONTENT);
    assert_eq!(s.fake.tasks()[0]["CallDisposition"], "Resolved");
    assert_eq!(s.fake.tasks()[0]["Subject"], "15 chars");
    let got = s
        .patch(
            &format!("/sobjects/Task/{id}"),
            json!({"TaskSubtype": "Call"}),
        )
        .await;
    assert_eq!(
        (got.status, error(&got).0),
        (
            StatusCode::BAD_REQUEST,
            "INVALID_FIELD_FOR_INSERT_UPDATE".into()
        )
    );
    let got = s
        .patch("/sobjects/Task/00TFk0000000999", json!({"Subject": "x"}))
        .await;
    assert_eq!(got.status, StatusCode::NOT_FOUND);
    assert_eq!(
        error(&got),
        (
            "NOT_FOUND".into(),
            "Provided external ID field does not exist or is not accessible: 00TFk0000000999"
                .into(),
            Value::Null
        )
    );
    s.fake.set_task_access(ObjectAccess {
        create: true,
        edit: false,
    });
    let got = s
        .patch(&format!("/sobjects/Task/{id}"), json!({"Subject": "x"}))
        .await;
    assert_eq!(error(&got).0, "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY");
    assert_eq!(s.fake.request_counts().update, 5);
}

#[tokio::test]
async fn records_are_read_by_id_and_by_external_id() {
    let s = session(Org::new()).await;
    let id = s.upsert("eng-1", json!({"Subject": "call"})).await.body["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let got = s.get(&format!("/sobjects/Task/{id}")).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(
        got.body["attributes"],
        json!({"type": "Task", "url": format!("/services/data/v62.0/sobjects/Task/{id}")})
    );
    assert_eq!(
        (
            got.body["Subject"].clone(),
            got.body[FIELD].clone(),
            got.body["WhoId"].clone()
        ),
        (json!("call"), json!("eng-1"), Value::Null)
    );
    let by_key = s.get(&format!("/sobjects/Task/{FIELD}/eng-1")).await;
    assert_eq!(by_key.body["Id"], json!(id));
    assert_eq!(
        error(&s.get(&format!("/sobjects/Task/{FIELD}/eng-404")).await).0,
        "NOT_FOUND"
    );
    assert_eq!(
        error(&s.get("/sobjects/Task/00TFk0000000999").await).0,
        "NOT_FOUND"
    );
    assert_eq!(
        error(&s.get("/sobjects/Task/nonsense").await).0,
        "MALFORMED_ID"
    );
    assert_eq!(s.fake.request_counts().upsert, 1, "reads are not upserts");
}

#[tokio::test]
async fn collections_update_tasks_by_id() {
    let s = session(Org::new()).await;
    let a = s.upsert("a", json!({})).await.body["id"].clone();
    let b = s.upsert("b", json!({})).await.body["id"].clone();
    let records = json!([
        {"attributes": {"type": "Task"}, "id": a, "Subject": "A"},
        {"attributes": {"type": "Task"}, "id": b, "CallType": "Nope"},
        {"attributes": {"type": "Task"}, "Subject": "no id"},
    ]);
    let got = s
        .patch(
            "/composite/sobjects",
            json!({"allOrNone": false, "records": records}),
        )
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body[0], json!({"id": a, "success": true, "errors": []}));
    assert_eq!(
        got.body[1]["errors"][0]["statusCode"],
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    );
    assert_eq!(got.body[2]["errors"][0]["statusCode"], "MISSING_ARGUMENT");
    assert_eq!(s.fake.tasks()[0]["Subject"], "A");
    let got = s
        .patch(
            "/composite/sobjects",
            json!({"allOrNone": true, "records": [
                {"attributes": {"type": "Task"}, "id": a, "Subject": "rolled back"},
                {"attributes": {"type": "Task"}, "id": b, "Subject": "x".repeat(300)},
            ]}),
        )
        .await;
    assert_eq!(
        got.body[0]["errors"][0]["statusCode"],
        "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    );
    assert_eq!(s.fake.tasks()[0]["Subject"], "A");
}

#[tokio::test]
async fn json_endpoints_refuse_other_content_types() {
    let s = session(Org::new()).await;
    let got = answer(
        s.http
            .request(
                Method::PATCH,
                s.url(&format!("/sobjects/Task/{FIELD}/eng-1")),
            )
            .bearer_auth(&s.token)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("Subject=x"),
    )
    .await;
    assert_eq!(
        (got.status, error(&got).0),
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE".into()
        )
    );
    assert!(s.fake.tasks().is_empty());
}

#[tokio::test]
async fn the_token_signature_does_not_reveal_the_token() {
    let fake = zcc_sim::sink::salesforce::SalesforceFake::start(Org::new())
        .await
        .expect("start");
    let got = answer(crate::support::client().post(fake.token_url()).form(&[
        ("grant_type", "client_credentials"),
        ("client_id", &fake.client_id()),
        ("client_secret", &fake.client_secret()),
    ]))
    .await;
    use base64::Engine;
    let signature = got.body["signature"].as_str().unwrap_or_default();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(signature)
        .unwrap_or_default();
    let token = got.body["access_token"].as_str().unwrap_or_default();
    assert!(!decoded.is_empty() && !String::from_utf8_lossy(&decoded).contains(token));
}
