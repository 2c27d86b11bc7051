//! The only module of the fake that speaks HTTP: per request, injected 503s,
//! then the bearer token, then injected 429s (with their `policyName`),
//! then `store`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

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
    (
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [("content-type", "application/json;charset=utf-8")],
        reply.body.to_string(),
    )
        .into_response()
}

fn handle(shared: &Shared, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let mut store = shared.lock();
    store.counts.requests += 1;
    if store.faults.unavailable_next > 0 {
        store.faults.unavailable_next -= 1;
        return reply(error(502, "BAD_GATEWAY", "Bad Gateway"));
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bearer != store.portal.token {
        store.counts.unauthorized += 1;
        return reply(error(
            401,
            "INVALID_AUTHENTICATION",
            "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
        ));
    }
    if store.faults.throttle_next > 0 {
        store.faults.throttle_next -= 1;
        store.counts.throttled += 1;
        let policy = store.faults.throttle_policy.clone();
        return reply(Reply {
            status: 429,
            body: json!({
                "status": "error",
                "message": format!("You have reached your {} limit.", policy.to_ascii_lowercase()),
                "errorType": "RATE_LIMIT",
                "correlationId": "00000000-0000-4000-8000-000000000429",
                "policyName": policy,
                "groupName": "publicapi:privateapp",
            }),
        });
    }
    let query: HashMap<String, String> = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let path = percent_decode(uri.path());
    reply(store.handle(method.as_str(), &path, &query, &content_type, &body))
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("p={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}
