//! `$batch` change sets: all applied, or none with the failed request's answer.

use serde_json::json;
use zcc_sim::sink::dynamics::Environment;

use crate::support::*;

#[tokio::test]
async fn a_change_set_reopens_writes_and_completes_in_one_transaction() {
    let s = session(Environment::new()).await;
    let key = s.url("phonecalls(zcc_engagementid='eng-9')");
    let (body, kind) = change_set(
        "a1",
        &[
            (
                "PATCH",
                key.clone(),
                json!({"statecode": 0, "statuscode": 1}),
            ),
            (
                "POST",
                s.url("annotations"),
                json!({"subject": "Zoom note n1", "notetext": "hi", "objectid_phonecall@odata.bind": "/phonecalls(zcc_engagementid='eng-9')"}),
            ),
            (
                "POST",
                "annotations".to_owned(),
                json!({"subject": "Zoom note n2", "notetext": "yo", "objectid_phonecall@odata.bind": "$1"}),
            ),
            (
                "PATCH",
                key.clone(),
                json!({"subject": "done", "statecode": 1, "statuscode": 4}),
            ),
        ],
    );
    let answered = s.batch(&kind, body).await;
    assert_eq!(answered.status, 200, "{}", answered.text);
    let content_type = answered.header("content-type").unwrap();
    assert!(content_type.starts_with("multipart/mixed; boundary=batchresponse_"));
    assert_eq!(
        answered.text.matches("HTTP/1.1 204 No Content").count(),
        4,
        "{}",
        answered.text
    );
    let call = &s.fake.phonecalls_with_key("eng-9")[0];
    assert_eq!(call["statecode"], 1);
    let id = call["activityid"].as_str().unwrap();
    assert_eq!(s.fake.annotations_on(id).len(), 2);

    // The second run: the first step reopens, a bad step rolls all back.
    let (body, kind) = change_set(
        "a2",
        &[
            (
                "PATCH",
                key.clone(),
                json!({"statecode": 0, "statuscode": 1}),
            ),
            (
                "POST",
                s.url("annotations"),
                json!({"subject": "Zoom note n3", "objectid_phonecall@odata.bind": "/phonecalls(zcc_engagementid='eng-9')"}),
            ),
            (
                "PATCH",
                key.clone(),
                json!({"subject": "x".repeat(201), "statecode": 1, "statuscode": 4}),
            ),
        ],
    );
    let answered = s.batch(&kind, body).await;
    assert_eq!(answered.status, 200);
    assert_eq!(
        answered.text.matches("HTTP/1.1 ").count(),
        1,
        "{}",
        answered.text
    );
    assert!(
        answered.text.contains("HTTP/1.1 400 Bad Request") && answered.text.contains("0x80044331")
    );
    let call = &s.fake.phonecalls_with_key("eng-9")[0];
    assert_eq!(
        (call["subject"].as_str(), call["statecode"].as_i64()),
        (Some("done"), Some(1))
    );
    assert_eq!(s.fake.annotations_on(id).len(), 2, "rolled back");
    s.fake.stop().await;
}

#[tokio::test]
async fn a_refused_change_set_ends_the_batch_unless_told_to_continue() {
    let s = session(Environment::new()).await;
    let write = |key: &str, subject: String| -> Vec<(&'static str, String, serde_json::Value)> {
        vec![(
            "PATCH",
            s.url(&format!("phonecalls(zcc_engagementid='{key}')")),
            json!({"subject": subject}),
        )]
    };
    let (a, bad, c) = (
        write("e-a", "a".into()),
        write("e-b", "x".repeat(201)),
        write("e-c", "c".into()),
    );
    // By default the first failure ends it: the third is not run.
    let (body, kind) = change_sets("s1", &[&a, &bad, &c]);
    let answered = s.batch(&kind, body).await;
    assert_eq!(answered.status, 200, "{}", answered.text);
    assert_eq!(
        answered.text.matches("HTTP/1.1 ").count(),
        2,
        "{}",
        answered.text
    );
    assert!(answered.text.contains("HTTP/1.1 400 Bad Request"));
    assert_eq!(s.fake.phonecalls_with_key("e-a").len(), 1);
    assert!(s.fake.phonecalls_with_key("e-b").is_empty());
    assert!(s.fake.phonecalls_with_key("e-c").is_empty(), "not run");
    // With continue-on-error, every change set is run and answered.
    let (body, kind) = change_sets("s2", &[&bad, &c]);
    let answered = s
        .batch_with(&kind, body, &[("Prefer", "odata.continue-on-error")])
        .await;
    assert_eq!(
        answered.text.matches("HTTP/1.1 ").count(),
        2,
        "{}",
        answered.text
    );
    assert!(answered.text.contains("HTTP/1.1 400 Bad Request"));
    assert!(answered.text.contains("HTTP/1.1 204 No Content"));
    assert!(s.fake.phonecalls_with_key("e-b").is_empty());
    assert_eq!(s.fake.phonecalls_with_key("e-c").len(), 1);
    s.fake.stop().await;
}

#[tokio::test]
async fn a_malformed_batch_is_refused() {
    let s = session(Environment::new()).await;
    let refused = s.batch("application/json", "{}".into()).await;
    assert_eq!(refused.status, 400);
    let unterminated = s
        .batch(
            "multipart/mixed; boundary=batch_x",
            "--batch_x\r\nContent-Type: application/http\r\n\r\nGET WhoAmI HTTP/1.1\r\n\r\n".into(),
        )
        .await;
    assert_eq!(unterminated.status, 400);
    assert!(s.fake.phonecalls().is_empty());
    s.fake.stop().await;
}
