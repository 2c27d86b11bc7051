//! `POST /oauth/token`: Zoom's Server-to-Server OAuth token endpoint
//! (docs/zoom.md §1).
//!
//! Owns request checking (HTTP Basic client credentials, `grant_type` and
//! `account_id` from the query string or a form body, as both appear in the wild)
//! and the response shapes. Token storage and validity, and whether credentials
//! are being rejected as a fault, belong to `state`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use super::state::Inner;

/// Space-separated, as Zoom returns it (RIVET splits on spaces).
const SCOPE: &str = "contact_center:read:admin contact_center_recording:read:admin \
                     contact_center_inbox:read:admin contact_center_report:read:admin \
                     marketplace:read:app";

pub(super) async fn token(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    // Credentials first: Zoom answers 401 before looking at the parameters.
    let authorized = !inner.credentials_rejected()
        && basic_credentials(&headers).is_some_and(|(id, secret)| {
            id == inner.config.client_id && secret == inner.config.client_secret
        });
    if !authorized {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Invalid client_id or client_secret",
        );
    }

    let grant_type = parameter(query.as_deref(), &body, "grant_type");
    let account_id = parameter(query.as_deref(), &body, "account_id");
    match grant_type.as_deref() {
        Some("account_credentials") => {}
        None | Some("") => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Missing grant_type",
            );
        }
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "Unsupported grant type",
            );
        }
    }
    if account_id.as_deref() != Some(inner.config.account_id.as_str()) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Invalid account_id",
        );
    }

    let access_token = inner.issue_token();
    let body = json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": inner.config.token_ttl.as_secs(),
        "scope": SCOPE,
        "api_url": format!("http://{}", inner.addr),
    });
    (StatusCode::OK, Json(body)).into_response()
}

fn error(status: StatusCode, code: &str, reason: &str) -> Response {
    (status, Json(json!({ "reason": reason, "error": code }))).into_response()
}

/// `(client_id, client_secret)` from `Authorization: Basic base64(id:secret)`.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// A parameter from the query string, else from an urlencoded body. The body is
/// parsed whatever its content type, because clients that put the parameters in
/// the query often send no content type at all.
fn parameter(query: Option<&str>, body: &[u8], name: &str) -> Option<String> {
    let from_query = query.and_then(|query| {
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    });
    from_query.or_else(|| {
        url::form_urlencoded::parse(body)
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    })
}
