//! The only module of the fake that speaks HTTP: Entra ID's token endpoint
//! (`/{tenant}/oauth2/v2.0/token`) and the Web API below `/api/data/v9.2/`,
//! with the per-request checks — injected faults, then the bearer token —
//! before `store` answers.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::store::{Reply, Store, THROTTLED};

pub struct Shared {
    pub store: Mutex<Store>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The largest request body taken: an annotation's `documentbody` may be
/// up to 128 MB of base64 (an org's highest `maxuploadfilesize`), and a
/// `$batch` carries several requests; axum's default (2 MB) is far below
/// what Dataverse takes.
const BODY_LIMIT: usize = 256 * 1024 * 1024;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .fallback(move |method, uri, headers, body| {
            let shared = shared.clone();
            async move { handle(&shared, method, uri, headers, body) }
        })
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
}

fn reply(reply: Reply) -> Response {
    let mut response = (
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        reply.body.unwrap_or_default(),
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert("OData-Version", "4.0".parse().expect("a header value"));
    for (name, value) in reply.headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_bytes()),
            value.parse(),
        ) {
            headers.insert(name, value);
        }
    }
    response
}

fn handle(shared: &Shared, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path();
    if let Some(tenant) = path
        .strip_prefix('/')
        .and_then(|p| p.strip_suffix("/oauth2/v2.0/token"))
    {
        return token(shared, &method, tenant, &headers, &body);
    }
    let Some(rest) = path.strip_prefix("/api/data/v9.2/") else {
        return reply(Reply::error(
            404,
            "0x80060888",
            &format!("Resource not found for the segment '{path}'."),
        ));
    };
    let target = match uri.query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_owned(),
    };
    let mut store = shared.lock();
    store.counts.requests += 1;
    if store.faults.unavailable_next > 0 {
        store.faults.unavailable_next -= 1;
        return reply(Reply::error(
            503,
            "0x80040216",
            "The service is temporarily unavailable.",
        ));
    }
    // Service protection is evaluated before authentication's cost is spent.
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let valid = store
        .tokens
        .get(bearer)
        .is_some_and(|expiry| Instant::now() < *expiry);
    if !valid {
        store.counts.unauthorized += 1;
        let challenge = format!(
            "Bearer authorization_uri=https://login.microsoftonline.com/{}/oauth2/authorize, resource_id={}",
            store.env.tenant_id, store.base_url
        );
        return reply(Reply {
            status: 401,
            headers: vec![("WWW-Authenticate".into(), challenge)],
            body: None,
        });
    }
    if store.faults.throttle_next > 0 {
        store.faults.throttle_next -= 1;
        store.counts.throttled += 1;
        let mut refused = Reply::error(
            429,
            THROTTLED,
            "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
        );
        refused.headers.push((
            "Retry-After".into(),
            store.faults.throttle_retry_after.to_string(),
        ));
        return reply(refused);
    }
    let pairs: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(n, v)| Some((n.to_string(), v.to_str().ok()?.to_owned())))
        .collect();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    reply(store.api(method.as_str(), &target, &pairs, &body, &content_type))
}

fn entra_error(status: u16, error: &str, code: u32, description: &str) -> Response {
    let body = json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {description}"),
        "error_codes": [code],
        "timestamp": jiff::Timestamp::now().to_string(),
        "trace_id": super::store::guid(),
        "correlation_id": super::store::guid(),
    });
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        [("content-type", "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// Entra ID's v2.0 token endpoint, client credentials with a shared secret
/// (in the form, or HTTP Basic).
fn token(
    shared: &Shared,
    method: &Method,
    tenant: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let mut store = shared.lock();
    store.counts.token += 1;
    if method != Method::POST {
        return entra_error(
            400,
            "invalid_request",
            900561,
            "The endpoint only accepts POST requests.",
        );
    }
    if tenant != store.env.tenant_id {
        return entra_error(
            400,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        );
    }
    let form: std::collections::HashMap<String, String> = url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut client_id = form.get("client_id").cloned();
    let mut client_secret = form.get("client_secret").cloned();
    if let Some(basic) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    {
        use base64::Engine;
        if let Some((id, secret)) = base64::engine::general_purpose::STANDARD
            .decode(basic)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|t| t.split_once(':').map(|(a, b)| (a.to_owned(), b.to_owned())))
        {
            client_id = Some(id);
            client_secret = Some(secret);
        }
    }
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some(other) => {
            return entra_error(
                400,
                "unsupported_grant_type",
                70003,
                &format!("The app requested an unsupported grant type '{other}'."),
            );
        }
        None => {
            return entra_error(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'grant_type'.",
            );
        }
    }
    let Some(client_id) = client_id else {
        return entra_error(
            400,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'client_id'.",
        );
    };
    if client_id != store.env.client_id {
        return entra_error(
            400,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'."
            ),
        );
    }
    if client_secret.as_deref() != Some(store.env.client_secret.as_str()) {
        return entra_error(
            401,
            "invalid_client",
            7000215,
            &format!(
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
            ),
        );
    }
    let scope = form.get("scope").cloned().unwrap_or_default();
    let Some(resource) = scope.strip_suffix("/.default") else {
        return entra_error(
            400,
            "invalid_scope",
            1002012,
            &format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        );
    };
    if resource.trim_end_matches('/') != store.base_url {
        return entra_error(
            400,
            "invalid_resource",
            500011,
            &format!(
                "The resource principal named {resource} was not found in the tenant named {tenant}. This can happen if the application has not been installed by the administrator of the tenant."
            ),
        );
    }
    let access_token = format!("eyJ0eXAiOiJKV1Qi.fake.{:032x}", rand::random::<u128>());
    let lifetime = store.env.token_lifetime;
    store.tokens.insert(
        access_token.clone(),
        Instant::now() + Duration::from_secs(lifetime),
    );
    let body: Value = json!({
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": access_token,
    });
    (
        StatusCode::OK,
        [("content-type", "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}
