//! Lookups: `$filter`/`$select`/`$top`, `WhoAmI`, the organization and the
//! table's keys.

use serde_json::json;
use zcc_sim::sink::dynamics::{AlternateKey, Contact, Environment, KeyStatus};

use crate::support::*;

#[tokio::test]
async fn contacts_filter_by_phone_text() {
    let s = session(
        Environment::new()
            .contact(Contact::new("Ada", "Lovelace").telephone1("(415) 555-1212"))
            .contact(Contact::new("Alan", "Turing").mobilephone("+44 20 7946 1212"))
            .contact(Contact::new("Grace", "Hopper").telephone1("212-555-0000")),
    )
    .await;
    let found = s
        .get("contacts?$select=contactid,telephone1,mobilephone&$filter=contains(telephone1,'1212')%20or%20contains(mobilephone,'1212')&$top=50")
        .await;
    assert_eq!(found.status, 200, "{}", found.text);
    let value = found.body["value"].as_array().unwrap();
    assert_eq!(value.len(), 2);
    assert!(
        value
            .iter()
            .all(|c| c["contactid"].is_string() && c.get("firstname").is_none())
    );
    let top = s.get("contacts?$top=1").await;
    assert_eq!(top.body["value"].as_array().unwrap().len(), 1);
    let eq = s
        .get("contacts?$filter=telephone1%20eq%20'212-555-0000'")
        .await;
    assert_eq!(eq.body["value"][0]["lastname"], "Hopper");
    let unknown = s.get("contacts?$filter=phone%20eq%20'1'").await;
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.error().0, "0x80060888");
    let syntax = s.get("contacts?$filter=telephone1%20like%20'1'").await;
    assert_eq!(
        syntax.error(),
        (
            "0x8006088a".into(),
            "Bad Request - Error in query syntax.".into()
        )
    );
    let select = s.get("contacts?$select=nope").await;
    assert_eq!(select.status, 400);
    // Refused filters count: they reached the table.
    assert_eq!(s.fake.request_counts().contact_queries, 5);
    s.fake.stop().await;
}

#[tokio::test]
async fn who_am_i_organization_and_keys() {
    let s = session(Environment::new().max_upload(1234)).await;
    let me = s.get("WhoAmI").await;
    assert_eq!(me.body["UserId"], json!(s.fake.user_id()));
    let org = s.get("organizations?$select=maxuploadfilesize").await;
    assert_eq!(org.body["value"][0]["maxuploadfilesize"], 1234);
    let keys = s.get("EntityDefinitions(LogicalName='phonecall')/Keys?$select=LogicalName,KeyAttributes,EntityKeyIndexStatus").await;
    assert_eq!(keys.status, 200, "{}", keys.text);
    assert_eq!(
        keys.body["value"][0]["KeyAttributes"],
        json!(["zcc_engagementid"])
    );
    assert_eq!(keys.body["value"][0]["EntityKeyIndexStatus"], "Active");
    s.fake.set_key(Some(AlternateKey {
        name: "k".into(),
        column: "zcc_engagementid".into(),
        status: KeyStatus::Failed,
    }));
    let failed = s
        .get("EntityDefinitions(LogicalName='phonecall')/Keys")
        .await;
    assert_eq!(failed.body["value"][0]["EntityKeyIndexStatus"], "Failed");
    s.fake.set_key(None);
    let none = s
        .get("EntityDefinitions(LogicalName='phonecall')/Keys")
        .await;
    assert_eq!(none.body["value"], json!([]));
    // Annotations by their phonecall.
    s.fake
        .set_key(Some(AlternateKey::active("zcc_engagementid")));
    assert_eq!(
        s.patch("phonecalls(zcc_engagementid='e')", json!({"subject": "s"}))
            .await
            .status,
        204
    );
    let id = s.fake.phonecalls()[0]["activityid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        s.post(
            "annotations",
            json!({"subject": "n", "objectid_phonecall@odata.bind": format!("/phonecalls({id})")})
        )
        .await
        .status,
        204
    );
    let listed = s
        .get(&format!(
            "annotations?$select=annotationid,subject&$filter=_objectid_value%20eq%20{id}"
        ))
        .await;
    assert_eq!(
        listed.body["value"].as_array().unwrap().len(),
        1,
        "{}",
        listed.text
    );
    assert_eq!(listed.body["value"][0]["subject"], "n");
    s.fake.stop().await;
}
