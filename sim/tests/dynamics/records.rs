//! Phonecall upsert by alternate key, the closed-activity rule, column
//! checks, and annotations.

use serde_json::json;
use zcc_sim::sink::dynamics::{AlternateKey, Contact, Environment, KeyStatus};

use crate::support::*;

const KEY: &str = "phonecalls(zcc_engagementid='eng-1')";

#[tokio::test]
async fn upsert_by_alternate_key_creates_once_then_updates() {
    let s = session(Environment::new()).await;
    let created = s
        .patch(KEY, json!({"subject": "first", "directioncode": false}))
        .await;
    assert_eq!(created.status, 204, "{}", created.text);
    let entity = created.header("odata-entityid").unwrap();
    assert!(entity.starts_with(&s.url("phonecalls(")));
    let updated = s.patch(KEY, json!({"subject": "second"})).await;
    assert_eq!(updated.status, 204);
    assert_eq!(updated.header("odata-entityid").unwrap(), entity);
    let calls = s.fake.phonecalls_with_key("eng-1");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["subject"], "second");
    assert_eq!(calls[0]["directioncode"], false);

    let read = s.get(&format!("{KEY}?$select=activityid,subject")).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body["subject"], "second");
    assert!(read.body.get("directioncode").is_none());
    let missing = s
        .get("phonecalls(zcc_engagementid='nope')?$select=activityid")
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(
        missing.error(),
        (
            "0x80040217".into(),
            "A record with the specified key values does not exist in phonecall entity".into()
        )
    );

    // If-Match: * only updates; If-None-Match: * only creates.
    let update_only = s
        .send(
            reqwest::Method::PATCH,
            "phonecalls(zcc_engagementid='eng-2')",
            Some(json!({"subject": "x"})),
            &[("if-match", "*")],
        )
        .await;
    assert_eq!(update_only.status, 404);
    let create_only = s
        .send(
            reqwest::Method::PATCH,
            KEY,
            Some(json!({"subject": "x"})),
            &[("if-none-match", "*")],
        )
        .await;
    assert_eq!(create_only.status, 412);
    assert_eq!(s.fake.phonecalls().len(), 1);
    s.fake.stop().await;
}

#[tokio::test]
async fn a_key_without_an_active_alternate_key_is_a_query_syntax_error() {
    let s = session(Environment::new().key(None)).await;
    let refused = s.patch(KEY, json!({"subject": "x"})).await;
    assert_eq!(refused.status, 400);
    assert_eq!(
        refused.error(),
        (
            "0x8006088a".into(),
            "Bad Request - Error in query syntax.".into()
        )
    );
    s.fake.set_key(Some(AlternateKey {
        name: "k".into(),
        column: "zcc_engagementid".into(),
        status: KeyStatus::Pending,
    }));
    assert_eq!(
        s.patch(KEY, json!({"subject": "x"})).await.error().0,
        "0x8006088a"
    );
    s.fake
        .set_key(Some(AlternateKey::active("zcc_engagementid")));
    assert_eq!(
        s.patch("phonecalls(other_column='x')", json!({}))
            .await
            .error()
            .0,
        "0x8006088a"
    );
    let forbidden = s
        .patch("phonecalls(zcc_engagementid='a%3Ab')", json!({}))
        .await;
    assert_eq!(forbidden.status, 400, "{}", forbidden.text);
    assert_eq!(s.patch(KEY, json!({"subject": "x"})).await.status, 204);
    s.fake.stop().await;
}

#[tokio::test]
async fn a_completed_phonecall_is_read_only_until_reopened() {
    let s = session(Environment::new()).await;
    assert_eq!(
        s.patch(
            KEY,
            json!({"subject": "a", "statecode": 1, "statuscode": 4})
        )
        .await
        .status,
        204
    );
    let refused = s.patch(KEY, json!({"subject": "b"})).await;
    assert_eq!(refused.status, 400);
    assert_eq!(s.fake.phonecalls_with_key("eng-1")[0]["subject"], "a");
    assert_eq!(
        s.patch(KEY, json!({"statecode": 0, "statuscode": 1}))
            .await
            .status,
        204
    );
    assert_eq!(
        s.patch(
            KEY,
            json!({"subject": "b", "statecode": 1, "statuscode": 2})
        )
        .await
        .status,
        204
    );
    let call = &s.fake.phonecalls_with_key("eng-1")[0];
    assert_eq!(
        (
            call["subject"].as_str(),
            call["statecode"].as_i64(),
            call["statuscode"].as_i64()
        ),
        (Some("b"), Some(1), Some(2))
    );
    // A status that does not belong to the state.
    let mismatch = s
        .patch(
            "phonecalls(zcc_engagementid='eng-3')",
            json!({"statecode": 1, "statuscode": 1}),
        )
        .await;
    assert_eq!(mismatch.status, 400);
    assert!(
        mismatch
            .error()
            .1
            .contains("is not a valid status code for state code PhoneCallState.Completed")
    );
    s.fake.stop().await;
}

#[tokio::test]
async fn columns_are_checked_like_dataverse() {
    let s = session(Environment::new()).await;
    let unknown = s.patch(KEY, json!({"Subject": "x"})).await;
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.error().0, "0x80060888");
    assert!(unknown.error().1.contains(
        "The property 'Subject' does not exist on type 'Microsoft.Dynamics.CRM.phonecall'"
    ));
    let long = s.patch(KEY, json!({"description": "x".repeat(2001)})).await;
    assert_eq!(long.error().0, "0x80044331");
    assert!(long.error().1.contains("maximum allowed length of '2000'"));
    assert_eq!(
        s.patch(KEY, json!({"actualdurationminutes": "five"}))
            .await
            .status,
        400
    );
    assert_eq!(
        s.patch(KEY, json!({"actualstart": "yesterday"}))
            .await
            .status,
        400
    );
    let missing_contact = s
        .patch(KEY, json!({"regardingobjectid_contact@odata.bind": "/contacts(00000000-0000-4000-8000-000000000001)"}))
        .await;
    assert_eq!(missing_contact.status, 404);
    assert_eq!(missing_contact.error().0, "0x80040217");
    assert!(
        s.fake.phonecalls().is_empty(),
        "nothing written by refused requests"
    );

    let contact = s
        .fake
        .add_contact(Contact::new("Ada", "Lovelace").telephone1("+1 415 555 1212"));
    let bind = format!("/contacts({contact})");
    let linked = s
        .patch(
            KEY,
            json!({
                "subject": "linked",
                "actualstart": "2026-12-01T10:00:00Z",
                "regardingobjectid_contact@odata.bind": bind,
                "phonecall_activity_parties": [{"partyid_contact@odata.bind": bind, "participationtypemask": 1}],
            }),
        )
        .await;
    assert_eq!(linked.status, 204, "{}", linked.text);
    let call = &s.fake.phonecalls_with_key("eng-1")[0];
    assert_eq!(call["_regardingobjectid_value"], json!(contact));
    assert_eq!(call["parties"][0]["_partyid_value"], json!(contact));
    assert_eq!(call["parties"][0]["participationtypemask"], 1);
    s.fake.stop().await;
}

#[tokio::test]
async fn annotations_attach_to_a_phonecall_within_the_upload_cap() {
    let s = session(Environment::new().max_upload(8)).await;
    assert_eq!(s.patch(KEY, json!({"subject": "a"})).await.status, 204);
    let id = s.fake.phonecalls_with_key("eng-1")[0]["activityid"]
        .as_str()
        .unwrap()
        .to_owned();
    let note = s
        .post("annotations", json!({"subject": "Zoom note n1", "notetext": "hello", "objectid_phonecall@odata.bind": format!("/{KEY}")}))
        .await;
    assert_eq!(note.status, 204, "{}", note.text);
    let file = s
        .post("annotations", json!({"subject": "f", "filename": "a.txt", "mimetype": "text/plain", "documentbody": "YWJj", "objectid_phonecall@odata.bind": format!("/phonecalls({id})")}))
        .await;
    assert_eq!(file.status, 204);
    let too_big = s
        .post("annotations", json!({"filename": "b.txt", "documentbody": "YWJjZGVmZ2hp", "objectid_phonecall@odata.bind": format!("/phonecalls({id})")}))
        .await;
    assert_eq!(too_big.status, 400);
    assert_eq!(too_big.error().0, "0x80043e09");
    let nowhere = s
        .post("annotations", json!({"subject": "x", "objectid_phonecall@odata.bind": "/phonecalls(zcc_engagementid='none')"}))
        .await;
    assert_eq!(nowhere.status, 404);
    let on = s.fake.annotations_on(&id);
    assert_eq!(on.len(), 2);
    let note = on.iter().find(|a| a.subject == "Zoom note n1").unwrap();
    assert_eq!(note.notetext, "hello");
    let file = on.iter().find(|a| a.subject == "f").unwrap();
    assert_eq!(file.bytes.as_deref(), Some(&b"abc"[..]));
    assert_eq!(file.filename.as_deref(), Some("a.txt"));
    // Edited in place.
    let note_id = &note.id;
    assert_eq!(
        s.patch(
            &format!("annotations({note_id})"),
            json!({"notetext": "edited"})
        )
        .await
        .status,
        204
    );
    assert_eq!(
        s.fake
            .annotations_on(&id)
            .iter()
            .filter(|a| a.notetext == "edited")
            .count(),
        1
    );
    assert_eq!(
        s.patch(
            "annotations(00000000-0000-4000-8000-000000000009)",
            json!({"notetext": "x"})
        )
        .await
        .status,
        404
    );
    s.fake.stop().await;
}
