//! `GET /query` (the SOQL subset) and `GET /search` (the phone SOSL lookup).

use reqwest::StatusCode;
use serde_json::{Value, json};
use zcc_sim::sink::salesforce::{Org, Person};

use crate::support::{error, session};

#[tokio::test]
async fn soql_finds_a_task_by_its_external_id() {
    let s = session(Org::new()).await;
    let id = s
        .upsert("eng-7", json!({"Subject": "call", "CallType": "Outbound"}))
        .await
        .body["id"]
        .clone();
    s.upsert("eng-8", json!({})).await;
    let got = s
        .query("SELECT Id, Subject, CallType FROM Task WHERE Zoom_Engagement_Id__c = 'eng-7'")
        .await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(
        got.body,
        json!({"totalSize": 1, "done": true, "records": [{
            "attributes": {"type": "Task", "url": format!("/services/data/v62.0/sobjects/Task/{}", id.as_str().unwrap_or_default())},
            "Id": id, "Subject": "call", "CallType": "Outbound"}]})
    );
    let both = s.query("select id from task where zoom_engagement_id__c in ('eng-7', 'eng-8', 'eng-9') limit 5").await;
    assert_eq!(both.body["totalSize"], 2);
    let one = s
        .query("SELECT Id FROM Task WHERE Zoom_Engagement_Id__c IN ('eng-7', 'eng-8') LIMIT 1")
        .await;
    assert_eq!(one.body["totalSize"], 1);
    let by_id = s
        .query(&format!(
            "SELECT Id FROM Task WHERE Id = '{}'",
            &id.as_str().unwrap_or_default()[..15]
        ))
        .await;
    assert_eq!(by_id.body["totalSize"], 1, "15-character ids match");
    assert_eq!(s.fake.request_counts().query, 4);
}

#[tokio::test]
async fn soql_outside_the_subset_is_refused_with_salesforce_messages() {
    let s = session(Org::new()).await;
    let got = s.query("SELECT Id FRM Task").await;
    assert_eq!(got.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        got.body,
        json!([{"message": "\nSELECT Id FRM Task\n          ^\nERROR at Row:1:Column:11\nunexpected token: FRM", "errorCode": "MALFORMED_QUERY"}])
    );
    let got = s.query("SELECT Id, Colour__c FROM Task").await;
    let (code, message, _) = error(&got);
    assert_eq!(code, "INVALID_FIELD");
    assert!(
        message.contains("No such column 'Colour__c' on entity 'Task'"),
        "{message}"
    );
    assert_eq!(
        error(&s.query("SELECT Id FROM Opportunity").await).0,
        "INVALID_TYPE"
    );
    assert_eq!(
        error(&s.query("SELECT COUNT() FROM Task").await).0,
        "MALFORMED_QUERY"
    );
    let got = crate::support::answer(s.http.get(s.url("/query")).bearer_auth(&s.token)).await;
    assert_eq!(
        error(&got),
        (
            "MALFORMED_QUERY".into(),
            "A query string has to be specified".into(),
            Value::Null
        )
    );
}

#[tokio::test]
async fn sosl_finds_contacts_and_leads_by_phone_in_any_format() {
    let org = Org::new()
        .contact(Person::new("Ada", "Lovelace").phone("(415) 555-1212"))
        .contact(Person::new("Grace", "Hopper").mobile("+1 415-555-3434"))
        .lead(Person::new("Alan", "Turing").phone("415.555.1212"));
    let s = session(org).await;
    let ada = s.fake.contacts()[0]["Id"].clone();
    let got = s.search("FIND {\\+14155551212} IN PHONE FIELDS RETURNING Contact(Id, Phone, MobilePhone), Lead(Id, Phone, MobilePhone)").await;
    assert_eq!(got.status, StatusCode::OK);
    let records = got.body["searchRecords"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(records.len(), 2, "{}", got.body);
    assert_eq!(records[0]["attributes"]["type"], "Contact");
    assert_eq!(records[0]["Id"], ada);
    assert_eq!(records[0]["Phone"], "(415) 555-1212");
    assert_eq!(records[0]["MobilePhone"], Value::Null);
    assert_eq!(records[1]["attributes"]["type"], "Lead");
    let grace = s
        .search("FIND {4155553434} IN PHONE FIELDS RETURNING Contact(Id), Lead(Id)")
        .await;
    assert_eq!(
        grace.body["searchRecords"].as_array().map(Vec::len),
        Some(1)
    );
    let none = s
        .search("FIND {4155559999} IN PHONE FIELDS RETURNING Contact(Id), Lead(Id)")
        .await;
    assert_eq!(none.body, json!({"searchRecords": []}));
    s.fake
        .add_lead(Person::new("Late", "Lead").phone("4155559999"));
    let late = s
        .search("FIND {4155559999} IN PHONE FIELDS RETURNING Contact(Id), Lead(Id)")
        .await;
    assert_eq!(late.body["searchRecords"][0]["attributes"]["type"], "Lead");
    assert_eq!(
        error(
            &s.search("FIND 4155551212 IN PHONE FIELDS RETURNING Contact(Id)")
                .await
        )
        .0,
        "MALFORMED_SEARCH"
    );
    assert_eq!(
        error(
            &s.search("FIND {4155551212} IN PHONE FIELDS RETURNING Contact(Nope)")
                .await
        )
        .0,
        "INVALID_FIELD"
    );
    // Reserved characters must be escaped in a search term (SOSL "FIND {SearchQuery}").
    let unescaped = s
        .search("FIND {+14155551212} IN PHONE FIELDS RETURNING Contact(Id)")
        .await;
    assert_eq!(
        (unescaped.status, error(&unescaped).0),
        (StatusCode::BAD_REQUEST, "MALFORMED_SEARCH".into())
    );
    assert_eq!(s.fake.request_counts().search, 7);
}
