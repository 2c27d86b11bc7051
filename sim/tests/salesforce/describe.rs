//! `GET /sobjects/{Task,ContentVersion}/describe`, driven by the org's set-up, so a `check`
//! command can tell each set-up problem apart.

use serde_json::{Value, json};
use zcc_sim::sink::salesforce::{ExternalIdField, ObjectAccess, Org};

use crate::support::session;

const FIELD: &str = "Zoom_Engagement_Id__c";

fn field<'a>(describe: &'a Value, name: &str) -> Option<&'a Value> {
    describe["fields"]
        .as_array()?
        .iter()
        .find(|f| f["name"] == name)
}

#[tokio::test]
async fn task_describe_shows_the_fields_a_sink_writes() {
    let s = session(Org::new()).await;
    let got = s.get("/sobjects/Task/describe").await;
    let d = &got.body;
    assert_eq!(
        (
            d["name"].clone(),
            d["createable"].clone(),
            d["updateable"].clone()
        ),
        (json!("Task"), json!(true), json!(true))
    );
    let ext = field(d, FIELD).cloned().unwrap_or_default();
    assert_eq!(
        (
            ext["externalId"].clone(),
            ext["unique"].clone(),
            ext["caseSensitive"].clone(),
            ext["type"].clone(),
            ext["custom"].clone()
        ),
        (
            json!(true),
            json!(true),
            json!(true),
            json!("string"),
            json!(true)
        )
    );
    let call_type = field(d, "CallType").cloned().unwrap_or_default();
    let values: Vec<Value> = call_type["picklistValues"]
        .as_array()
        .map(|v| v.iter().map(|p| p["value"].clone()).collect())
        .unwrap_or_default();
    assert_eq!(
        values,
        [json!("Inbound"), json!("Outbound"), json!("Internal")]
    );
    assert_eq!(call_type["restrictedPicklist"], true);
    let subtype = field(d, "TaskSubtype").cloned().unwrap_or_default();
    assert_eq!(
        (subtype["createable"].clone(), subtype["updateable"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(
        field(d, "Description").map(|f| f["length"].clone()),
        Some(json!(32000))
    );
    assert_eq!(
        field(d, "Subject").map(|f| f["length"].clone()),
        Some(json!(255))
    );
    assert_eq!(
        field(d, "CallDurationInSeconds").map(|f| f["type"].clone()),
        Some(json!("int"))
    );
    assert_eq!(
        field(d, "ActivityDate").map(|f| f["type"].clone()),
        Some(json!("date"))
    );
    assert_eq!(
        field(d, "WhoId").map(|f| f["referenceTo"].clone()),
        Some(json!(["Contact", "Lead"]))
    );
    assert_eq!(s.fake.request_counts().describe, 1);
}

#[tokio::test]
async fn describe_reveals_each_external_id_set_up_problem() {
    let s = session(Org::new().external_id_field(None)).await;
    assert!(field(&s.get("/sobjects/Task/describe").await.body, FIELD).is_none());
    s.fake
        .set_external_id_field(Some(ExternalIdField::plain_text(FIELD)));
    let ext = field(&s.get("/sobjects/Task/describe").await.body, FIELD)
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (ext["externalId"].clone(), ext["unique"].clone()),
        (json!(false), json!(false))
    );
    s.fake
        .set_external_id_field(Some(ExternalIdField::not_unique(FIELD)));
    let ext = field(&s.get("/sobjects/Task/describe").await.body, FIELD)
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (ext["externalId"].clone(), ext["unique"].clone()),
        (json!(true), json!(false))
    );
}

#[tokio::test]
async fn describe_reflects_the_integration_users_permissions() {
    let s = session(
        Org::new()
            .task_access(ObjectAccess {
                create: true,
                edit: false,
            })
            .content_version_access(ObjectAccess::READ_ONLY),
    )
    .await;
    let task = s.get("/sobjects/Task/describe").await.body;
    assert_eq!(
        (task["createable"].clone(), task["updateable"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!(
        field(&task, "Subject").map(|f| f["updateable"].clone()),
        Some(json!(false))
    );
    let version = s.get("/sobjects/ContentVersion/describe").await.body;
    assert_eq!(version["createable"], false);
    assert_eq!(
        field(&version, "VersionData").map(|f| (f["type"].clone(), f["createable"].clone())),
        Some((json!("base64"), json!(false)))
    );
    s.fake.set_content_version_access(ObjectAccess::FULL);
    let version = s.get("/sobjects/ContentVersion/describe").await.body;
    assert_eq!(version["createable"], true);
    assert_eq!(
        field(&version, "FirstPublishLocationId").map(|f| f["createable"].clone()),
        Some(json!(true))
    );
}

#[tokio::test]
async fn the_org_lists_its_objects_and_their_basic_information() {
    let s = session(Org::new().task_access(ObjectAccess::READ_ONLY)).await;
    let global = s.get("/sobjects").await;
    assert_eq!(global.body["maxBatchSize"], 200);
    let task = global.body["sobjects"]
        .as_array()
        .and_then(|all| all.iter().find(|o| o["name"] == "Task").cloned())
        .unwrap_or_default();
    assert_eq!(
        (task["keyPrefix"].clone(), task["createable"].clone()),
        (json!("00T"), json!(false))
    );
    let basic = s.get("/sobjects/ContentVersion").await;
    assert_eq!(basic.body["objectDescribe"]["keyPrefix"], "068");
    assert_eq!(basic.body["recentItems"], json!([]));
    let refused = s.patch("/sobjects/Task", json!({})).await;
    assert_eq!(refused.status, reqwest::StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(s.fake.request_counts().describe, 2);
}
