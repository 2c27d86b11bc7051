//! `PATCH /composite/sobjects/Task/{field}`: per-record results in order, allOrNone, the
//! 200-record cap and the request-level refusals.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use zcc_sim::sink::salesforce::Org;

use crate::support::{Session, error, session};

const FIELD: &str = "Zoom_Engagement_Id__c";

fn task(key: &str, extra: Value) -> Value {
    let mut record = json!({"attributes": {"type": "Task"}, FIELD: key});
    if let (Some(record), Value::Object(extra)) = (record.as_object_mut(), extra) {
        record.extend(extra);
    }
    record
}

async fn collection(s: &Session, all_or_none: bool, records: Vec<Value>) -> crate::support::Answer {
    s.patch(
        &format!("/composite/sobjects/Task/{FIELD}"),
        json!({"allOrNone": all_or_none, "records": records}),
    )
    .await
}

#[tokio::test]
async fn results_come_back_per_record_in_request_order() {
    let s = session(Org::new()).await;
    assert_eq!(
        s.upsert("b", json!({"Subject": "old"})).await.status,
        StatusCode::CREATED
    );
    let got = collection(
        &s,
        false,
        vec![
            task("a", json!({"Subject": "A", "TaskSubtype": "Call"})),
            task("b", json!({"Subject": "B"})),
            task("c", json!({"CallType": "Sideways"})),
            task("d", json!({})),
        ],
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    let results = got.body.as_array().cloned().unwrap_or_default();
    assert_eq!(results.len(), 4);
    assert_eq!(
        (results[0]["success"].clone(), results[0]["created"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(
        (results[1]["success"].clone(), results[1]["created"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(results[2]["success"], false);
    assert_eq!(
        results[2]["errors"][0]["statusCode"],
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    );
    assert_eq!(results[2]["errors"][0]["fields"], json!(["CallType"]));
    assert_eq!(results[3]["created"], true);
    let keys: Vec<String> = s
        .fake
        .tasks()
        .iter()
        .map(|t| t[FIELD].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(keys, ["b", "a", "d"]);
    assert_eq!(s.fake.tasks()[0]["Subject"], "B");
    assert_eq!(s.fake.request_counts().composite, 1);
}

#[tokio::test]
async fn all_or_none_rolls_every_write_back_when_one_fails() {
    let s = session(Org::new()).await;
    let got = collection(
        &s,
        true,
        vec![
            task("a", json!({})),
            task("b", json!({"Subject": "x".repeat(256)})),
            task("c", json!({})),
        ],
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    let results = got.body.as_array().cloned().unwrap_or_default();
    assert!(
        results.iter().all(|r| r["success"] == false),
        "{}",
        got.body
    );
    assert_eq!(
        results[0]["errors"][0]["statusCode"],
        "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    );
    assert_eq!(results[1]["errors"][0]["statusCode"], "STRING_TOO_LONG");
    assert_eq!(
        results[2]["errors"][0]["statusCode"],
        "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    );
    assert!(s.fake.tasks().is_empty());
    // The same batch without the bad record goes through.
    let got = collection(&s, true, vec![task("a", json!({})), task("c", json!({}))]).await;
    assert!(
        got.body
            .as_array()
            .is_some_and(|r| r.iter().all(|r| r["success"] == true))
    );
    assert_eq!(s.fake.tasks().len(), 2);
}

#[tokio::test]
async fn more_than_200_records_are_refused_whole() {
    let s = session(Org::new()).await;
    let records: Vec<Value> = (0..201)
        .map(|i| task(&format!("k{i}"), json!({})))
        .collect();
    let got = collection(&s, false, records).await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert_eq!(error(&got).0, "EXCEEDED_ID_LIMIT");
    assert!(s.fake.tasks().is_empty());
    let records: Vec<Value> = (0..200)
        .map(|i| task(&format!("k{i}"), json!({})))
        .collect();
    assert_eq!(collection(&s, false, records).await.status, StatusCode::OK);
    assert_eq!(s.fake.tasks().len(), 200);
}

#[tokio::test]
async fn each_record_needs_its_type_and_key_and_keys_must_not_repeat() {
    let s = session(Org::new()).await;
    let got = collection(
        &s,
        false,
        vec![
            json!({FIELD: "no-type"}),
            json!({"attributes": {"type": "Contact"}, FIELD: "wrong-type"}),
            json!({"attributes": {"type": "Task"}, "Subject": "no key"}),
            task("twice", json!({})),
            task("twice", json!({})),
            task("fine", json!({})),
        ],
    )
    .await;
    let codes: Vec<Value> = got
        .body
        .as_array()
        .map(|r| {
            r.iter()
                .map(|r| r["errors"][0]["statusCode"].clone())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        codes,
        [
            json!("INVALID_TYPE"),
            json!("INVALID_TYPE"),
            json!("REQUIRED_FIELD_MISSING"),
            json!("DUPLICATE_EXTERNAL_ID"),
            json!("DUPLICATE_EXTERNAL_ID"),
            Value::Null
        ]
    );
    assert_eq!(
        got.body[0]["errors"][0]["message"],
        "Must send a concrete entity type."
    );
    assert_eq!(s.fake.tasks_with_external_id("fine").len(), 1);
    assert_eq!(s.fake.tasks().len(), 1);
}

#[tokio::test]
async fn deserialization_errors_and_missing_fields_refuse_the_whole_request() {
    let s = session(Org::new()).await;
    let got = collection(
        &s,
        false,
        vec![task("a", json!({})), task("b", json!({"Nope__c": 1}))],
    )
    .await;
    assert_eq!(
        (got.status, error(&got).0),
        (StatusCode::BAD_REQUEST, "INVALID_FIELD".into())
    );
    let got = collection(
        &s,
        false,
        vec![task("a", json!({"CallDurationInSeconds": "long"}))],
    )
    .await;
    assert_eq!(error(&got).0, "JSON_PARSER_ERROR");
    assert!(s.fake.tasks().is_empty());
    s.fake.set_external_id_field(None);
    let got = collection(&s, false, vec![task("a", json!({}))]).await;
    assert_eq!(
        (got.status, error(&got).0),
        (StatusCode::NOT_FOUND, "NOT_FOUND".into())
    );
}

#[tokio::test]
async fn collections_need_api_version_46() {
    let s = session(Org::new()).await;
    let url = format!(
        "{}/services/data/v45.0/composite/sobjects/Task/{FIELD}",
        s.fake.url()
    );
    let got = s
        .send(
            Method::PATCH,
            &url,
            Some(json!({"records": [task("a", json!({}))]})),
        )
        .await;
    assert_eq!(
        (got.status, error(&got).0),
        (StatusCode::NOT_FOUND, "NOT_FOUND".into())
    );
}

#[tokio::test]
async fn a_create_only_field_is_refused_per_record_on_an_existing_task() {
    let s = session(Org::new()).await;
    assert_eq!(
        s.upsert("old", json!({"Subject": "old"})).await.status,
        StatusCode::CREATED
    );
    let got = collection(
        &s,
        false,
        vec![
            task("old", json!({"Subject": "again", "TaskSubtype": "Call"})),
            task("new", json!({"Subject": "new", "TaskSubtype": "Call"})),
        ],
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body[0]["success"], false);
    assert_eq!(
        got.body[0]["errors"][0]["statusCode"],
        "INVALID_FIELD_FOR_INSERT_UPDATE"
    );
    assert_eq!(got.body[0]["errors"][0]["fields"], json!(["TaskSubtype"]));
    assert!(got.body[0].get("id").is_none());
    assert_eq!(
        (
            got.body[1]["success"].clone(),
            got.body[1]["created"].clone()
        ),
        (json!(true), json!(true))
    );
    // The refused record wrote nothing; the other one carries its subtype.
    assert_eq!(s.fake.tasks_with_external_id("old")[0]["Subject"], "old");
    assert_eq!(
        s.fake.tasks_with_external_id("new")[0]["TaskSubtype"],
        "Call"
    );
}

#[tokio::test]
async fn updates_by_id_never_create_and_answer_per_record() {
    let s = session(Org::new()).await;
    let created = s.upsert("a", json!({"Subject": "a"})).await;
    let id = created.body["id"].as_str().unwrap_or_default().to_owned();
    let got = s
        .patch(
            "/composite/sobjects",
            json!({"allOrNone": false, "records": [
                {"attributes": {"type": "Task"}, "id": id, "Subject": "A"},
                {"attributes": {"type": "Task"}, "id": "00T000000000000AAA", "Subject": "nobody"},
                {"attributes": {"type": "Task"}, "Subject": "no id"},
            ]}),
        )
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(
        (got.body[0]["success"].clone(), got.body[0]["id"].clone()),
        (json!(true), json!(id))
    );
    assert_eq!(
        got.body[1]["errors"][0]["statusCode"],
        "INVALID_CROSS_REFERENCE_KEY"
    );
    assert_eq!(got.body[2]["errors"][0]["statusCode"], "MISSING_ARGUMENT");
    assert_eq!(s.fake.tasks().len(), 1);
    assert_eq!(s.fake.tasks()[0]["Subject"], "A");
    // More than 200 is refused whole.
    let records: Vec<Value> = (0..201)
        .map(|_| json!({"attributes": {"type": "Task"}, "id": id, "Subject": "x"}))
        .collect();
    let got = s
        .patch(
            "/composite/sobjects",
            json!({"allOrNone": false, "records": records}),
        )
        .await;
    assert_eq!(
        (got.status, error(&got).0),
        (StatusCode::BAD_REQUEST, "EXCEEDED_ID_LIMIT".into())
    );
    assert_eq!(s.fake.tasks()[0]["Subject"], "A");
}
