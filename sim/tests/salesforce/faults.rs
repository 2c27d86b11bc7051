//! The scripted faults: 503 bursts, REQUEST_LIMIT_EXCEEDED (switched and past the
//! allocation), slow answers, and the Sforce-Limit-Info header and request counters.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use zcc_sim::sink::salesforce::Org;

use crate::support::session;

#[tokio::test]
async fn the_next_n_requests_answer_503() {
    let s = session(Org::new()).await;
    s.fake.unavailable_for_next(2);
    for _ in 0..2 {
        let got = s.get("/limits").await;
        assert_eq!(got.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(got.body[0]["errorCode"], "SERVER_UNAVAILABLE");
    }
    assert_eq!(s.get("/limits").await.status, StatusCode::OK);
    s.fake.unavailable_for_next(1);
    let token = crate::support::answer(
        s.http
            .post(s.fake.token_url())
            .form(&[("grant_type", "client_credentials")]),
    )
    .await;
    assert_eq!(
        token.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "the token endpoint fails too"
    );
}

#[tokio::test(start_paused = true)]
async fn request_limit_exceeded_lasts_for_its_duration() {
    let s = session(Org::new()).await;
    s.fake.request_limit_exceeded_for(Duration::from_secs(10));
    let got = s.upsert("eng-1", json!({})).await;
    assert_eq!(got.status, StatusCode::FORBIDDEN);
    assert_eq!(
        got.body,
        json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    );
    assert!(got.headers.get("sforce-limit-info").is_some());
    assert!(s.fake.tasks().is_empty());
    tokio::time::advance(Duration::from_secs(9)).await;
    assert_eq!(
        s.upsert("eng-1", json!({})).await.status,
        StatusCode::FORBIDDEN
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    assert_eq!(
        s.upsert("eng-1", json!({})).await.status,
        StatusCode::CREATED
    );
    s.fake.set_request_limit_exceeded(true);
    assert_eq!(s.get("/limits").await.status, StatusCode::FORBIDDEN);
    s.fake.set_request_limit_exceeded(false);
    assert_eq!(s.get("/limits").await.status, StatusCode::OK);
}

#[tokio::test]
async fn usage_counts_up_to_the_allocation_then_refuses() {
    let s = session(Org::new().api_allocation(98, 100)).await;
    let first = s.get("/limits").await;
    assert_eq!(
        first
            .headers
            .get("sforce-limit-info")
            .and_then(|v| v.to_str().ok()),
        Some("api-usage=99/100")
    );
    assert_eq!(
        first.body,
        json!({"DailyApiRequests": {"Max": 100, "Remaining": 1}})
    );
    let second = s.get("/limits").await;
    assert_eq!(
        second
            .headers
            .get("sforce-limit-info")
            .and_then(|v| v.to_str().ok()),
        Some("api-usage=100/100")
    );
    let third = s.get("/limits").await;
    assert_eq!(
        (third.status, third.body[0]["errorCode"].clone()),
        (StatusCode::FORBIDDEN, json!("REQUEST_LIMIT_EXCEEDED"))
    );
    assert_eq!(
        third
            .headers
            .get("sforce-limit-info")
            .and_then(|v| v.to_str().ok()),
        Some("api-usage=100/100")
    );
    s.fake.set_api_usage(0, 100);
    assert_eq!(s.get("/limits").await.status, StatusCode::OK);
    assert_eq!(s.fake.api_usage(), (1, 100));
}

#[tokio::test(start_paused = true)]
async fn slow_answers_take_the_scripted_delay() {
    let s = session(Org::new()).await;
    s.fake.set_delay(Duration::from_secs(3));
    let started = tokio::time::Instant::now();
    assert_eq!(s.get("/limits").await.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_secs(3));
    s.fake.set_delay(Duration::ZERO);
    let started = tokio::time::Instant::now();
    s.get("/limits").await;
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn every_request_is_counted_by_endpoint() {
    let s = session(Org::new()).await;
    s.upsert("a", json!({})).await;
    s.patch(
        "/composite/sobjects/Task/Zoom_Engagement_Id__c",
        json!({"records": []}),
    )
    .await;
    s.get("/sobjects/Task/describe").await;
    s.query("SELECT Id FROM Task").await;
    s.search("FIND {4155551212} IN PHONE FIELDS RETURNING Contact(Id)")
        .await;
    s.fake.unavailable_for_next(1);
    s.upsert("b", json!({})).await;
    let counts = s.fake.request_counts();
    assert_eq!(
        (
            counts.token,
            counts.upsert,
            counts.composite,
            counts.describe,
            counts.query,
            counts.search
        ),
        (1, 2, 1, 1, 1, 1)
    );
    assert_eq!(counts.api_calls(), 6);
    assert_eq!(
        s.fake.api_usage().0,
        5,
        "a refused 503 is not counted against the allocation"
    );
}
