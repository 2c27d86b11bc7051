//! The token endpoint, session checks, versioned paths and the Salesforce 404 body.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use zcc_sim::sink::salesforce::{Org, SalesforceFake};

use crate::support::{self, answer, error, session};

async fn token_answer(fake: &SalesforceFake, form: &[(&str, &str)]) -> support::Answer {
    answer(crate::support::client().post(fake.token_url()).form(form)).await
}

#[tokio::test]
async fn client_credentials_issue_a_bearer_session() {
    let fake = SalesforceFake::start(Org::new()).await.expect("start");
    let (id, secret) = (fake.client_id(), fake.client_secret());
    let got = token_answer(
        &fake,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
        ],
    )
    .await;
    assert_eq!(got.status, StatusCode::OK);
    for key in [
        "access_token",
        "signature",
        "scope",
        "instance_url",
        "id",
        "token_type",
        "issued_at",
    ] {
        assert!(got.body[key].is_string(), "{key} in {}", got.body);
    }
    assert_eq!(got.body["instance_url"], json!(fake.url()));
    assert_eq!(got.body["token_type"], "Bearer");
    assert!(got.body.get("refresh_token").is_none() && got.body.get("expires_in").is_none());
    assert!(
        got.body["issued_at"]
            .as_str()
            .is_some_and(|t| t.len() >= 13 && t.bytes().all(|b| b.is_ascii_digit()))
    );
    assert_eq!(fake.request_counts().token, 1);
}

#[tokio::test]
async fn basic_auth_credentials_are_accepted() {
    let fake = SalesforceFake::start(Org::new()).await.expect("start");
    let got = answer(
        crate::support::client()
            .post(fake.token_url())
            .basic_auth(fake.client_id(), Some(fake.client_secret()))
            .form(&[("grant_type", "client_credentials")]),
    )
    .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
}

#[tokio::test]
async fn token_refusals_use_oauth_error_bodies() {
    let fake = SalesforceFake::start(Org::new()).await.expect("start");
    let id = fake.client_id();
    let secret = fake.client_secret();
    type Form<'a> = Vec<(&'a str, &'a str)>;
    let cases: Vec<(Form<'_>, &str, &str)> = vec![
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", "wrong"),
            ],
            "invalid_client",
            "invalid client credentials",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "nobody"),
                ("client_secret", &secret),
            ],
            "invalid_client_id",
            "client identifier invalid",
        ),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", &id),
                ("client_secret", &secret),
                ("username", "u"),
                ("password", "p"),
            ],
            "invalid_grant",
            "authentication failure",
        ),
        (
            vec![("grant_type", "magic"), ("client_id", &id)],
            "unsupported_grant_type",
            "grant type not supported",
        ),
        (
            vec![("client_id", &id)],
            "unsupported_grant_type",
            "grant type not supported",
        ),
    ];
    for (form, code, description) in cases {
        let got = token_answer(&fake, &form).await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{form:?}");
        assert_eq!(
            got.body,
            json!({"error": code, "error_description": description}),
            "{form:?}"
        );
    }
    fake.set_client_credentials_enabled(false);
    let got = token_answer(
        &fake,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
        ],
    )
    .await;
    assert_eq!(
        got.body,
        json!({"error": "invalid_grant", "error_description": "no client credentials user enabled"})
    );
}

#[tokio::test]
async fn api_refuses_missing_wrong_and_revoked_sessions() {
    let s = session(Org::new()).await;
    let expired =
        json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]);
    let anonymous = answer(s.http.get(s.url("/limits"))).await;
    assert!(anonymous.headers.get("www-authenticate").is_some());
    assert_eq!(
        (anonymous.status, &anonymous.body),
        (StatusCode::UNAUTHORIZED, &expired)
    );
    let wrong = answer(s.http.get(s.url("/limits")).bearer_auth("00Dxx!bogus")).await;
    assert_eq!(
        (wrong.status, &wrong.body),
        (StatusCode::UNAUTHORIZED, &expired)
    );
    assert_eq!(s.get("/limits").await.status, StatusCode::OK);
    s.fake.invalidate_sessions();
    let revoked = s.get("/limits").await;
    assert_eq!(
        (revoked.status, &revoked.body),
        (StatusCode::UNAUTHORIZED, &expired)
    );
    let fresh = support::token(&s.fake, &s.http).await;
    assert_eq!(
        answer(s.http.get(s.url("/limits")).bearer_auth(fresh))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test(start_paused = true)]
async fn sessions_expire_after_the_session_timeout() {
    let org = Org::new().session_timeout(Duration::from_secs(900));
    let s = session(org).await;
    assert_eq!(s.get("/limits").await.status, StatusCode::OK);
    tokio::time::advance(Duration::from_secs(901)).await;
    let got = s.get("/limits").await;
    assert_eq!(error(&got).0, "INVALID_SESSION_ID");
}

#[tokio::test]
async fn unknown_versions_and_resources_answer_not_found() {
    let s = session(Org::new()).await;
    let not_found =
        json!([{"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}]);
    for path in [
        "/services/data/v99.0/limits",
        "/services/data/v30.0/limits",
        "/services/data/latest/limits",
        "/services/data/v62.0/nothing",
        "/services/data/v62.0/sobjects/Widget__c/describe",
    ] {
        let got = answer(
            s.http
                .get(format!("{}{path}", s.fake.url()))
                .bearer_auth(&s.token),
        )
        .await;
        assert_eq!(
            (got.status, &got.body),
            (StatusCode::NOT_FOUND, &not_found),
            "{path}"
        );
    }
    let versions = answer(s.http.get(format!("{}/services/data/", s.fake.url()))).await;
    assert_eq!(versions.status, StatusCode::OK);
    let listed: Vec<&str> = versions
        .body
        .as_array()
        .map(|v| v.iter().filter_map(|e| e["version"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        listed.contains(&"62.0") && listed.contains(&"46.0"),
        "{listed:?}"
    );
    let root = s.get("").await;
    assert_eq!(
        root.body["query"],
        Value::from("/services/data/v62.0/query")
    );
}
