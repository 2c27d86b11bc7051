//! The only module of the fake that speaks HTTP: `POST /oauth/tokens` (the
//! client-credentials grant, JSON body), the attachments' content URLs, and
//! per API request: injected 503s, then authentication (an OAuth bearer
//! token that has not expired, or Basic `{email}/token:{api_token}` while
//! token access is on), then injected 429s and the account's per-minute
//! limit (with `Retry-After`), then `store`; a lost create answer last.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

use super::store::{Reply, Store, error};

pub struct Shared {
    pub store: Mutex<Store>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(move |method, uri, headers, body| {
        let shared = shared.clone();
        async move { handle(&shared, method, uri, headers, body) }
    })
}

fn reply(reply: Reply) -> Response {
    let mut response = (
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [("content-type", "application/json; charset=utf-8")],
        reply.body.to_string(),
    )
        .into_response();
    for (name, value) in reply.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

fn handle(shared: &Shared, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let mut store = shared.lock();
    store.counts.requests += 1;
    let path = uri.path().to_owned();
    let query: HashMap<String, String> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    if method == Method::POST && path == "/oauth/tokens" {
        return reply(token(&mut store, &body));
    }
    if method == Method::GET && path.starts_with("/attachments/token/") {
        let token = path
            .trim_start_matches("/attachments/token/")
            .trim_end_matches('/');
        let found = store
            .attachments
            .values()
            .find(|a| a.token == token && query.get("name") == Some(&a.file_name))
            .map(|a| (a.content_type.clone(), a.bytes.clone()));
        return match found {
            Some((kind, bytes)) => {
                (StatusCode::OK, [("content-type", kind)], bytes).into_response()
            }
            None => reply(error(404, "RecordNotFound", "Not found")),
        };
    }
    if store.faults.unavailable_next > 0 {
        store.faults.unavailable_next -= 1;
        return reply(
            error(
                503,
                "ServiceUnavailable",
                "Zendesk is temporarily unavailable",
            )
            .header("retry-after", "1"),
        );
    }
    if !authenticated(&store, &headers) {
        store.counts.unauthorized += 1;
        return reply(Reply::new(
            401,
            json!({"error": "Couldn't authenticate you"}),
        ));
    }
    if store.faults.throttle_next > 0 {
        store.faults.throttle_next -= 1;
        store.counts.throttled += 1;
        return reply(throttled(1));
    }
    if let Some(wait) = store.over_request_limit() {
        store.counts.throttled += 1;
        return reply(throttled(wait));
    }
    let lowered: HashMap<String, String> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_ascii_lowercase(), v.to_str().ok()?.to_owned())))
        .collect();
    let limit = store.account.requests_per_minute;
    let answer = store.handle(method.as_str(), &path, &query, &lowered, &body);
    if method == Method::POST
        && path.trim_end_matches(".json") == "/api/v2/tickets"
        && answer.status == 201
        && store.faults.lose_create_answers > 0
    {
        store.faults.lose_create_answers -= 1;
        store.counts.lost_answers += 1;
        let later = store.faults.advance_after_loss;
        store.offset += later;
        return reply(error(504, "GatewayTimeout", "The request timed out"));
    }
    reply(answer.header("x-rate-limit", limit.to_string()))
}

fn throttled(wait: u64) -> Reply {
    error(
        429,
        "APIRateLimitExceeded",
        "Number of allowed API requests per minute exceeded",
    )
    .header("retry-after", wait.to_string())
}

fn authenticated(store: &Store, headers: &HeaderMap) -> bool {
    let value = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if let Some(bearer) = value.strip_prefix("Bearer ") {
        return store
            .tokens
            .get(bearer)
            .is_some_and(|expires| store.now() < *expires);
    }
    if let Some(basic) = value.strip_prefix("Basic ") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(basic.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        let account = &store.account;
        return account.api_tokens_enabled
            && decoded == format!("{}/token:{}", account.email, account.api_token);
    }
    false
}

/// The client-credentials grant: a JSON body with `grant_type`,
/// `client_id`, `client_secret` and `scope`.
fn token(store: &mut Store, body: &[u8]) -> Reply {
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return Reply::new(
            400,
            json!({"error": "invalid_request", "error_description": "The request is missing a required parameter."}),
        );
    };
    let text = |key: &str| body[key].as_str().unwrap_or("").to_owned();
    if text("grant_type") != "client_credentials" {
        return Reply::new(
            400,
            json!({"error": "unsupported_grant_type", "error_description": "The authorization grant type is not supported by the authorization server."}),
        );
    }
    if text("client_id") != store.account.client_id
        || text("client_secret") != store.account.client_secret
    {
        return Reply::new(
            401,
            json!({"error": "invalid_client", "error_description": "Client authentication failed due to unknown client, no client authentication included, or unsupported authentication method."}),
        );
    }
    let scope = text("scope");
    if scope.split_whitespace().next().is_none()
        || !scope
            .split_whitespace()
            .all(|s| matches!(s, "read" | "write") || s.contains(':'))
    {
        return Reply::new(
            400,
            json!({"error": "invalid_scope", "error_description": "The requested scope is invalid, unknown, or malformed."}),
        );
    }
    let access = format!("{:064x}", rand::random::<u128>());
    let lifetime = store.account.token_lifetime;
    let expires = store.now() + lifetime;
    store.tokens.insert(access.clone(), expires);
    store.counts.tokens_issued += 1;
    Reply::new(
        200,
        json!({
            "access_token": access,
            "token_type": "bearer",
            "scope": scope,
            "expires_in": lifetime.max(Duration::from_secs(1)).as_secs(),
        }),
    )
}
