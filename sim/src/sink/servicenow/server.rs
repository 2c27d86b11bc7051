//! The only module of the fake that speaks HTTP: per request, injected 503s,
//! then `/oauth_token.do` (client credentials, form-encoded), then the
//! caller's credentials (an issued bearer token or the integration user's
//! Basic credentials), then injected 429s with ServiceNow's rate-limit
//! headers, then `store`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::json;

use super::store::{Reply, Request, Store, error, now_s};

pub struct Shared {
    pub store: Mutex<Store>,
    pub base: Mutex<String>,
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

fn reply(reply: Reply, extra: &[(&str, String)]) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match reply.bytes {
        Some((content_type, bytes)) => {
            (status, [("content-type", content_type)], bytes).into_response()
        }
        None if reply.status == 204 => status.into_response(),
        None => (
            status,
            [("content-type", "application/json;charset=UTF-8".to_owned())],
            reply.body.to_string(),
        )
            .into_response(),
    };
    for (name, value) in extra {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            axum::http::HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

fn params_of(text: &str) -> HashMap<String, String> {
    url::form_urlencoded::parse(text.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// `POST /oauth_token.do`: the client-credentials grant.
fn token(store: &mut Store, content_type: &str, body: &[u8]) -> Response {
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return reply(
            Reply {
                status: 400,
                body: json!({"error_description": "access_denied", "error": "invalid_request"}),
                bytes: None,
            },
            &[],
        );
    }
    let form = params_of(&String::from_utf8_lossy(body));
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    let denied = |error: &str| {
        reply(
            Reply {
                status: 401,
                body: json!({"error_description": "access_denied", "error": error}),
                bytes: None,
            },
            &[],
        )
    };
    if field("grant_type") != "client_credentials" || !store.instance.client_credentials_enabled {
        return denied("unsupported_grant_type");
    }
    if field("client_id") != store.instance.client_id
        || field("client_secret") != store.instance.client_secret
    {
        return denied("server_error");
    }
    store.counts.tokens += 1;
    let access = format!(
        "{:064x}",
        rand::random::<u128>() ^ (store.counts.tokens as u128)
    );
    let lifetime = store.instance.token_lifetime_s;
    store.tokens.insert(access.clone(), now_s() + lifetime);
    reply(
        Reply {
            status: 200,
            body: json!({
                "access_token": access,
                "scope": "useraccount",
                "token_type": "Bearer",
                "expires_in": lifetime.saturating_sub(1),
            }),
            bytes: None,
        },
        &[],
    )
}

/// The user the request acts as, or `None` (401).
fn user_of(store: &Store, headers: &HeaderMap) -> Option<String> {
    let authorization = headers.get("authorization")?.to_str().ok()?;
    if let Some(bearer) = authorization.strip_prefix("Bearer ") {
        let expiry = store.tokens.get(bearer)?;
        return (*expiry > now_s()).then(|| "oauth.application.user".to_owned());
    }
    let basic = authorization.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(basic)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    (user == store.instance.username && password == store.instance.password)
        .then(|| user.to_owned())
}

fn handle(shared: &Shared, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let base = shared
        .base
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut store = shared.lock();
    store.counts.requests += 1;
    if store.faults.unavailable_next > 0 {
        store.faults.unavailable_next -= 1;
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [("content-type", "text/html")],
            "<html><body>The instance is not available right now.</body></html>",
        )
            .into_response();
    }
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if method == Method::POST && uri.path() == "/oauth_token.do" {
        return token(&mut store, &content_type, &body);
    }
    let Some(user) = user_of(&store, &headers) else {
        store.counts.unauthorized += 1;
        return reply(
            error(
                401,
                "User Not Authenticated",
                Some("Required to provide Auth information"),
            ),
            &[],
        );
    };
    if store.faults.throttle_next > 0 {
        store.faults.throttle_next -= 1;
        store.counts.throttled += 1;
        let reset = now_s() + 1;
        return reply(
            error(
                429,
                "Too Many Requests",
                Some("Rate limit rule 'zcc-relay integration' exceeded"),
            ),
            &[
                ("x-ratelimit-limit", "3600".to_owned()),
                ("x-ratelimit-reset", reset.to_string()),
                (
                    "x-ratelimit-rule",
                    "0123456789abcdef0123456789abcdef".to_owned(),
                ),
                ("retry-after", "1".to_owned()),
            ],
        );
    }
    let params = uri.query().map(params_of).unwrap_or_default();
    let path = percent_decode(uri.path());
    let request = Request {
        method: method.as_str(),
        path: &path,
        params: &params,
        content_type: &content_type,
        body: &body,
        user: &user,
        base: &base,
    };
    reply(store.handle(&request), &[])
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("p={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}
