//! `PATCH /sobjects/Task/{field}/{value}`: 201, 200 (204 before v46), 300, and each refusal
//! with Salesforce's error body.

use reqwest::{Method, StatusCode};
use serde_json::{Map, Value, json};
use zcc_sim::sink::salesforce::{ExternalIdField, ObjectAccess, Org, Person};

use crate::support::{error, session};

const FIELD: &str = "Zoom_Engagement_Id__c";

#[tokio::test]
async fn creates_with_201_then_updates_with_200_created_false() {
    let s = session(Org::new()).await;
    let created = s.upsert("eng-1", json!({"Subject": "Inbound call", "CallType": "Inbound", "TaskSubtype": "Call", "Status": "Completed"})).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        created.body,
        json!({"id": id, "success": true, "errors": [], "created": true})
    );
    assert!(id.starts_with("00T") && id.len() == 18);
    assert!(
        created
            .headers
            .get("sforce-limit-info")
            .is_some_and(|v| v == "api-usage=1/100000")
    );

    let updated = s.upsert("eng-1", json!({"CallDisposition": "Resolved", "CallDurationInSeconds": 95, "ActivityDate": "2026-12-07"})).await;
    assert_eq!(updated.status, StatusCode::OK);
    assert_eq!(
        updated.body,
        json!({"id": id, "success": true, "errors": [], "created": false})
    );
    assert!(
        updated
            .headers
            .get("sforce-limit-info")
            .is_some_and(|v| v == "api-usage=2/100000")
    );

    let tasks = s.fake.tasks();
    assert_eq!(tasks.len(), 1);
    let task = &tasks[0];
    assert_eq!(task[FIELD], "eng-1");
    assert_eq!(task["TaskSubtype"], "Call");
    assert_eq!(task["CallDisposition"], "Resolved");
    assert_eq!(task["CallDurationInSeconds"], 95);
    assert_eq!(task["Priority"], "Normal", "defaulted on create");
    assert_eq!(task["OwnerId"], json!(s.fake.integration_user_id()));
    assert_eq!(s.fake.request_counts().upsert, 2);
}

#[tokio::test]
async fn versions_before_46_answer_204_on_update() {
    let s = session(Org::new()).await;
    let url = format!(
        "{}/services/data/v45.0/sobjects/Task/{FIELD}/eng-9",
        s.fake.url()
    );
    let created = s
        .send(Method::PATCH, &url, Some(json!({"Subject": "x"})))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert!(created.body.get("created").is_none(), "{}", created.body);
    let updated = s
        .send(Method::PATCH, &url, Some(json!({"Subject": "y"})))
        .await;
    assert_eq!(
        (updated.status, updated.body),
        (StatusCode::NO_CONTENT, Value::Null)
    );
}

#[tokio::test]
async fn several_matches_answer_300_with_their_urls_and_write_nothing() {
    let s = session(Org::new().external_id_field(Some(ExternalIdField::not_unique(FIELD)))).await;
    let mut twin = Map::new();
    twin.insert(FIELD.into(), json!("dup"));
    twin.insert("Subject".into(), json!("before"));
    let first = s.fake.insert_task(twin.clone());
    let second = s.fake.insert_task(twin);
    let got = s.upsert("dup", json!({"Subject": "after"})).await;
    assert_eq!(got.status, StatusCode::MULTIPLE_CHOICES);
    assert_eq!(
        got.body,
        json!([
            format!("/services/data/v62.0/sobjects/Task/{first}"),
            format!("/services/data/v62.0/sobjects/Task/{second}")
        ])
    );
    assert!(s.fake.tasks().iter().all(|t| t["Subject"] == "before"));
}

#[tokio::test]
async fn matching_ignores_case_unless_the_field_is_unique_case_sensitive() {
    let s = session(Org::new()).await;
    assert_eq!(
        s.upsert("ENG-a", json!({})).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        s.upsert("eng-A", json!({})).await.status,
        StatusCode::CREATED,
        "case-sensitive: another record"
    );
    let s = session(Org::new().external_id_field(Some(ExternalIdField {
        case_sensitive: false,
        ..ExternalIdField::proper(FIELD)
    })))
    .await;
    assert_eq!(
        s.upsert("ENG-a", json!({})).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        s.upsert("eng-A", json!({})).await.status,
        StatusCode::OK,
        "case-insensitive: the same record"
    );
}

#[tokio::test]
async fn a_field_that_is_not_an_external_id_answers_not_found_until_it_is() {
    let message =
        format!("Provided external ID field does not exist or is not accessible: {FIELD}");
    let s = session(Org::new().external_id_field(None)).await;
    let got = s.upsert("eng-1", json!({"Subject": "x"})).await;
    assert_eq!(
        (got.status, error(&got)),
        (
            StatusCode::NOT_FOUND,
            ("NOT_FOUND".into(), message.clone(), Value::Null)
        )
    );

    s.fake
        .set_external_id_field(Some(ExternalIdField::plain_text(FIELD)));
    let got = s.upsert("eng-1", json!({"Subject": "x"})).await;
    assert_eq!(
        (got.status, error(&got).1),
        (StatusCode::NOT_FOUND, message)
    );
    let got = s.patch("/sobjects/Task/Subject/eng-1", json!({})).await;
    assert_eq!(
        error(&got).1,
        "Provided external ID field does not exist or is not accessible: Subject"
    );

    s.fake
        .set_external_id_field(Some(ExternalIdField::proper(FIELD)));
    assert_eq!(
        s.upsert("eng-1", json!({"Subject": "x"})).await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn unknown_fields_and_body_external_ids_are_refused() {
    let s = session(Org::new()).await;
    let got = s
        .upsert("eng-1", json!({"Subject": "x", "Colour__c": "red"}))
        .await;
    assert_eq!(
        (got.status, error(&got).0, error(&got).1),
        (
            StatusCode::BAD_REQUEST,
            "INVALID_FIELD".into(),
            "No such column 'Colour__c' on sobject of type Task".into()
        )
    );
    let got = s.upsert("eng-1", json!({FIELD: "eng-1"})).await;
    assert_eq!(
        (got.status, error(&got).0),
        (StatusCode::BAD_REQUEST, "INVALID_FIELD".into())
    );
    let got = s
        .upsert(
            "eng-1",
            json!({"CreatedDate": "2026-01-01T00:00:00.000+0000"}),
        )
        .await;
    assert_eq!(error(&got).0, "INVALID_FIELD_FOR_INSERT_UPDATE");
    assert!(s.fake.tasks().is_empty());
}

#[tokio::test]
async fn task_subtype_is_accepted_on_create_and_refused_on_update() {
    let s = session(Org::new()).await;
    assert_eq!(
        s.upsert("eng-1", json!({"TaskSubtype": "Call"}))
            .await
            .status,
        StatusCode::CREATED
    );
    let got = s
        .upsert(
            "eng-1",
            json!({"TaskSubtype": "Call", "Subject": "changed"}),
        )
        .await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        got.body,
        json!([{"message": "Unable to create/update fields: TaskSubtype. Please check the security settings of this field and verify that it is read/write for your profile or permission set.",
                "errorCode": "INVALID_FIELD_FOR_INSERT_UPDATE", "fields": ["TaskSubtype"]}])
    );
    assert_eq!(s.fake.tasks()[0].get("Subject"), None, "nothing written");
}

#[tokio::test]
async fn restricted_picklists_refuse_other_values() {
    let s = session(Org::new()).await;
    for (field, value) in [
        ("CallType", "inbound"),
        ("CallType", "Voice"),
        ("Status", "Done"),
        ("TaskSubtype", "Video"),
    ] {
        let got = s.upsert("eng-1", json!({field: value})).await;
        let (code, message, fields) = error(&got);
        assert_eq!(
            (got.status, code.as_str()),
            (
                StatusCode::BAD_REQUEST,
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
            ),
            "{field}"
        );
        assert!(
            message.ends_with(&format!("bad value for restricted picklist field: {value}")),
            "{message}"
        );
        assert_eq!(fields, json!([field]));
    }
    for value in ["Inbound", "Outbound", "Internal"] {
        assert!(
            s.upsert(&format!("ok-{value}"), json!({"CallType": value}))
                .await
                .status
                .is_success()
        );
    }
    let got = s.upsert("eng-2", json!({"Status": null})).await;
    assert_eq!(error(&got).0, "REQUIRED_FIELD_MISSING");
}

#[tokio::test]
async fn text_lengths_are_enforced() {
    let s = session(Org::new()).await;
    for (field, label, max) in [
        ("Subject", "Subject", 255),
        ("CallObject", "Call Object Identifier", 255),
        ("CallDisposition", "Call Result", 255),
        ("Description", "Comments", 32_000),
    ] {
        let fits = "d".repeat(max);
        assert!(
            s.upsert(&format!("fit-{field}"), json!({field: fits}))
                .await
                .status
                .is_success(),
            "{field} at {max}"
        );
        let long = "d".repeat(max + 1);
        let got = s.upsert("long", json!({field: long})).await;
        let (code, message, fields) = error(&got);
        assert_eq!(code, "STRING_TOO_LONG", "{field}");
        assert_eq!(
            message,
            format!("{label}: data value too large: {long} (max length={max})")
        );
        assert_eq!(fields, json!([field]));
    }
    // UTF-16 code units, not bytes: é is one, an emoji two.
    let emoji = s
        .upsert("emoji", json!({"Subject": "😀".repeat(128)}))
        .await;
    assert_eq!(error(&emoji).0, "STRING_TOO_LONG");
    assert!(
        s.upsert(
            "emoji",
            json!({"Subject": format!("{}x", "😀".repeat(127))})
        )
        .await
        .status
        .is_success()
    );
    assert!(
        s.upsert("utf8", json!({"Subject": "é".repeat(255)}))
            .await
            .status
            .is_success()
    );
}

#[tokio::test]
async fn wrong_json_types_are_parser_errors() {
    let s = session(Org::new()).await;
    for (body, token) in [
        (
            json!({"CallDurationInSeconds": "95"}),
            "VALUE_STRING value 95",
        ),
        (
            json!({"CallDurationInSeconds": 9.5}),
            "VALUE_NUMBER_FLOAT value 9.5",
        ),
        (
            json!({"ActivityDate": "07/12/2026"}),
            "VALUE_STRING value 07/12/2026",
        ),
        (
            json!({"ActivityDate": 20261207}),
            "VALUE_NUMBER_INT value 20261207",
        ),
        (json!({"Subject": ["a"]}), "START_ARRAY value ["),
    ] {
        let got = s.upsert("eng-1", body.clone()).await;
        let (code, message, _) = error(&got);
        assert_eq!(
            (got.status, code.as_str()),
            (StatusCode::BAD_REQUEST, "JSON_PARSER_ERROR"),
            "{body}"
        );
        assert!(
            message.starts_with("Cannot deserialize instance of") && message.contains(token),
            "{message}"
        );
        assert!(
            message.contains("or request may be missing a required field at [line:1, column:"),
            "{message}"
        );
    }
    let got = s
        .raw_patch(&format!("/sobjects/Task/{FIELD}/eng-1"), "{\"Subject\": ")
        .await;
    assert_eq!(
        (got.status, error(&got).0),
        (StatusCode::BAD_REQUEST, "JSON_PARSER_ERROR".into())
    );
    assert!(s.fake.tasks().is_empty());
}

#[tokio::test]
async fn who_id_must_be_an_existing_contact_or_lead() {
    let s = session(
        Org::new()
            .contact(Person::new("Ada", "Lovelace"))
            .lead(Person::new("Alan", "Turing")),
    )
    .await;
    let contact = s.fake.contacts()[0]["Id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let lead = s.fake.leads()[0]["Id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        s.upsert("c", json!({"WhoId": contact})).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        s.upsert("l", json!({"WhoId": &lead[..15]})).await.status,
        StatusCode::CREATED,
        "15-character ids"
    );
    let cases = [
        ("001Fk0000000001".to_owned(), "FIELD_INTEGRITY_EXCEPTION"),
        (s.fake.integration_user_id(), "FIELD_INTEGRITY_EXCEPTION"),
        ("003Fk0000000001AAA".to_owned(), "MALFORMED_ID"),
        ("003Fk0000000999".to_owned(), "INVALID_CROSS_REFERENCE_KEY"),
        ("nope".to_owned(), "MALFORMED_ID"),
    ];
    for (who, code) in cases {
        let got = s.upsert("bad", json!({"WhoId": who})).await;
        let (got_code, _, fields) = error(&got);
        assert_eq!(
            (got.status, got_code.as_str(), fields),
            (StatusCode::BAD_REQUEST, code, json!(["WhoId"])),
            "{who}"
        );
    }
    assert_eq!(s.fake.tasks().len(), 2);
}

#[tokio::test]
async fn update_only_never_creates() {
    let s = session(Org::new()).await;
    let got = s
        .patch(
            &format!("/sobjects/Task/{FIELD}/eng-1?updateOnly=true"),
            json!({"Subject": "x"}),
        )
        .await;
    assert_eq!(
        (got.status, error(&got).0),
        (StatusCode::NOT_FOUND, "NOT_FOUND".into())
    );
    assert!(s.fake.tasks().is_empty());
}

#[tokio::test]
async fn without_task_permissions_writes_are_refused() {
    let s = session(Org::new().task_access(ObjectAccess {
        create: false,
        edit: true,
    }))
    .await;
    let got = s.upsert("eng-1", json!({"Subject": "x"})).await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        got.body,
        json!([{"message": "entity type cannot be inserted: Task", "errorCode": "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY"}])
    );
    s.fake.set_task_access(ObjectAccess::FULL);
    assert_eq!(
        s.upsert("eng-1", json!({"Subject": "x"})).await.status,
        StatusCode::CREATED
    );
    s.fake.set_task_access(ObjectAccess {
        create: true,
        edit: false,
    });
    let got = s.upsert("eng-1", json!({"Subject": "y"})).await;
    assert_eq!(error(&got).1, "entity type cannot be updated: Task");
}

#[tokio::test]
async fn external_id_values_in_the_path_are_percent_decoded() {
    let s = session(Org::new()).await;
    assert_eq!(
        s.upsert("a%20b%3Ac", json!({})).await.status,
        StatusCode::CREATED
    );
    assert_eq!(s.fake.tasks_with_external_id("a b:c").len(), 1);
}
