//! Entra ID's client-credentials endpoint and the Web API's bearer check.

use std::time::Duration;

use crate::support::*;
use zcc_sim::sink::dynamics::{DynamicsFake, Environment};

#[tokio::test]
async fn issues_a_token_for_the_environment_scope_and_refuses_what_entra_refuses() {
    let fake = DynamicsFake::start(Environment::new()).await.unwrap();
    let http = client();
    let scope = format!("{}/.default", fake.url());
    let (id, secret) = (fake.client_id(), fake.client_secret());
    let ok = token_answer(
        &fake,
        &http,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", &id),
            ("client_secret", &secret),
            ("scope", &scope),
        ],
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body["token_type"], "Bearer");
    assert_eq!(ok.body["expires_in"], 3599);

    for (form, status, error, code) in [
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", id.as_str()),
                ("client_secret", "wrong"),
                ("scope", scope.as_str()),
            ],
            401,
            "invalid_client",
            "AADSTS7000215",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", "nobody"),
                ("client_secret", secret.as_str()),
                ("scope", scope.as_str()),
            ],
            400,
            "unauthorized_client",
            "AADSTS700016",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", id.as_str()),
                ("client_secret", secret.as_str()),
                ("scope", fake.url().as_str()),
            ],
            400,
            "invalid_scope",
            "AADSTS1002012",
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", id.as_str()),
                ("client_secret", secret.as_str()),
                ("scope", "https://other.crm.dynamics.com/.default"),
            ],
            400,
            "invalid_resource",
            "AADSTS500011",
        ),
        (
            vec![
                ("grant_type", "password"),
                ("client_id", id.as_str()),
                ("client_secret", secret.as_str()),
                ("scope", scope.as_str()),
            ],
            400,
            "unsupported_grant_type",
            "AADSTS70003",
        ),
    ] {
        let refused = token_answer(&fake, &http, &form).await;
        assert_eq!(refused.status, status, "{}", refused.text);
        assert_eq!(refused.body["error"], error);
        assert!(
            refused.body["error_description"]
                .as_str()
                .unwrap()
                .starts_with(code),
            "{}",
            refused.text
        );
    }
    // Another tenant.
    let other = answer(
        http.post(format!("{}/other-tenant/oauth2/v2.0/token", fake.url()))
            .form(&[("grant_type", "client_credentials")]),
    )
    .await;
    assert_eq!(other.status, 400);
    assert!(
        other.body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS90002")
    );
    fake.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_expired_or_revoked_token_is_refused_with_a_bearer_challenge() {
    let s = session(Environment::new()).await;
    assert_eq!(s.get("WhoAmI").await.status, 200);
    s.fake.expire_tokens();
    let refused = s.get("WhoAmI").await;
    assert_eq!(refused.status, 401);
    assert!(
        refused
            .header("www-authenticate")
            .unwrap()
            .starts_with("Bearer authorization_uri=")
    );
    let fresh = Session {
        token: token(&s.fake, &s.http).await,
        ..s
    };
    assert_eq!(fresh.get("WhoAmI").await.status, 200);
    // Tokens also expire by themselves.
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(fresh.get("WhoAmI").await.status, 401);
    let anonymous = answer(fresh.http.get(fresh.url("WhoAmI"))).await;
    assert_eq!(anonymous.status, 401);
    fresh.fake.stop().await;
}
