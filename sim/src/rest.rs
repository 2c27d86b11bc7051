//! `/v2/...`: the simulated ZCC REST listings (docs/zoom.md §4) with Zoom's
//! error shapes, bearer-token check and 429s (§5).
//!
//! Owns the routes, the gate every `/v2` request passes (logged, then a queued
//! fault if any, then the token), the listing envelopes, filtering on the chosen
//! date, newest-first order and slicing into pages. What the items are comes
//! from `item`; the window, `page_size` and token rules from `page`; token
//! validity, queued faults and the request log from `state`. Download and
//! transcript URLs in the items are served by `media`, behind the same gate.

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::RetryAfter;
use super::item;
use super::page::{self, Cursor, Invalid, Query};
use super::server;
use super::state::{Inner, RestFault, Scheme};

const THROTTLED: &str =
    "You have reached the maximum per-second rate limit for this API. Try again later.";
/// Zoom's `code` for parameter validation errors.
const VALIDATION: u32 = 300;
const DAY: Duration = Duration::from_secs(86_400);

pub(super) fn router(inner: Arc<Inner>) -> Router<Arc<Inner>> {
    Router::new()
        .route("/v2/contact_center/recordings", get(recordings))
        .route("/v2/contact_center/engagements", get(engagements))
        .route(
            "/v2/contact_center/engagements/{engagement_id}",
            get(engagement),
        )
        .route(
            "/v2/contact_center/engagements/{engagement_id}/recordings",
            get(engagement_recordings),
        )
        .route("/v2/contact_center/inboxes/messages", get(inbox_messages))
        .merge(super::media::routes())
        // Unknown `/v2` paths pass the gate too, so they are logged and can be
        // throttled like any REST call.
        .route("/v2/{*rest}", any(server::not_found))
        .layer(middleware::from_fn_with_state(inner, gate))
}

/// Logs the request, then answers a queued fault (before the token, as a rate
/// limiter in front of the API would), then a `401` for a missing, unknown or
/// expired bearer token; otherwise the route answers.
async fn gate(State(inner): State<Arc<Inner>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let index = inner.record_rest_request(path, query);
    let mut response = match inner.take_rest_fault() {
        Some(fault) => {
            tracing::debug!(?fault, "zoom simulator: REST fault served");
            fault_response(fault)
        }
        None if !authorized(&inner, request.headers()) => error(
            StatusCode::UNAUTHORIZED,
            124,
            "Invalid access token.".to_owned(),
        ),
        None => next.run(request).await,
    };
    // Zoom's support asks for this header; a constant-format value will do.
    if let Ok(value) = HeaderValue::from_str(&format!("sim-{index}")) {
        response.headers_mut().insert("x-zm-trackingid", value);
    }
    response
}

fn authorized(inner: &Inner, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .is_some_and(|token| inner.token_is_valid(token))
}

fn fault_response(fault: RestFault) -> Response {
    match fault {
        RestFault::Throttle(retry_after) => {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, 429, THROTTLED.to_owned());
            let value = match retry_after {
                RetryAfter::Seconds(seconds) => Some(seconds.to_string()),
                RetryAfter::Date(time) => http_date(time),
                RetryAfter::None => None,
            };
            if let Some(value) = value.and_then(|value| HeaderValue::from_str(&value).ok()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        RestFault::Fail(status) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let message = status.canonical_reason().unwrap_or("Simulated failure");
            error(status, u32::from(status.as_u16()), format!("{message}."))
        }
    }
}

/// `Sun, 06 Nov 1994 08:49:37 GMT`; `None` for a time before 1970.
fn http_date(time: std::time::SystemTime) -> Option<String> {
    let time = jiff::Timestamp::try_from(time).ok()?;
    jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&time)
        .ok()
}

/// Zoom's error body, `{"code": ..., "message": ...}`.
fn error(status: StatusCode, code: u32, message: String) -> Response {
    let body = json!({ "code": code, "message": message });
    (status, Json(body)).into_response()
}

fn invalid(Invalid(message): Invalid) -> Response {
    error(StatusCode::BAD_REQUEST, VALIDATION, message)
}

// ---- routes ---------------------------------------------------------------------

async fn recordings(State(inner): State<Arc<Inner>>, uri: Uri) -> Response {
    let query = Query::parse(uri.query().unwrap_or_default());
    let date_field = match query.get("query_date_type") {
        None | Some("recording_start_time") => "recording_start_time",
        Some("recording_end_time") => "recording_end_time",
        Some(other) => {
            return invalid(Invalid(format!(
                "Invalid `query_date_type` {other:?}: expected recording_start_time or \
                 recording_end_time."
            )));
        }
    };
    let api_base = api_base(&inner);
    let items = read_bodies(&inner, |history| item::recordings(history, &api_base));
    let listing = Listing {
        key: "recordings",
        date_field,
        default_span: Some(30 * DAY),
        filters: &["channel", "recording_type", "owner_type"],
        timezone: false,
    };
    respond(list(&inner, &uri, &query, items, &listing))
}

async fn engagements(State(inner): State<Arc<Inner>>, uri: Uri) -> Response {
    let query = Query::parse(uri.query().unwrap_or_default());
    let items = read_bodies(&inner, |history| {
        item::engagements(history)
            .into_iter()
            .filter_map(|(_, ended)| ended)
            .collect()
    });
    // Zoom filters engagements on their start time and defaults to a day.
    let listing = Listing {
        key: "engagements",
        date_field: "start_time",
        default_span: Some(DAY),
        filters: &["direction"],
        timezone: true,
    };
    respond(list(&inner, &uri, &query, items, &listing))
}

/// The engagement once it has ended; `200 {}` while it is still going (Zoom's
/// empty body while data persists, docs/zoom.md §4.4); `404` if no event ever
/// named it.
async fn engagement(
    State(inner): State<Arc<Inner>>,
    Path(engagement_id): Path<String>,
) -> Response {
    let found = read_bodies(&inner, |history| {
        item::engagements(history)
            .into_iter()
            .find(|(id, _)| *id == engagement_id)
    });
    match found {
        Some((_, Some(item))) => (StatusCode::OK, Json(item)).into_response(),
        Some((_, None)) => (StatusCode::OK, Json(json!({}))).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            404,
            format!("Engagement {engagement_id} does not exist."),
        ),
    }
}

/// The engagement's recordings, all of them unless `from`/`to` narrow it.
async fn engagement_recordings(
    State(inner): State<Arc<Inner>>,
    Path(engagement_id): Path<String>,
    uri: Uri,
) -> Response {
    let query = Query::parse(uri.query().unwrap_or_default());
    let api_base = api_base(&inner);
    let mut items = read_bodies(&inner, |history| {
        item::recordings(history, &api_base)
            .into_iter()
            .filter(|item| item["engagement_id"].as_str() == Some(engagement_id.as_str()))
            .collect::<Vec<_>>()
    });
    if inner.media.take_unlisted() {
        items.clear();
    }
    let listing = Listing {
        key: "recordings",
        date_field: "recording_start_time",
        default_span: None,
        filters: &["channel"],
        timezone: false,
    };
    respond(list(&inner, &uri, &query, items, &listing))
}

async fn inbox_messages(State(inner): State<Arc<Inner>>, uri: Uri) -> Response {
    let query = Query::parse(uri.query().unwrap_or_default());
    let api_base = api_base(&inner);
    let mut items = read_bodies(&inner, |history| item::inbox_messages(history, &api_base));
    if inner.media.take_unlisted() {
        items.clear();
    }
    // The list key and the default window are unconfirmed (docs/zoom.md §4.6).
    let listing = Listing {
        key: "messages",
        date_field: "created_at",
        default_span: Some(30 * DAY),
        filters: &[
            "message_type",
            "inbox_id",
            "engagement_id",
            "flow_id",
            "consumer_number",
            "status",
        ],
        timezone: false,
    };
    respond(list(&inner, &uri, &query, items, &listing))
}

// ---- listing --------------------------------------------------------------------

/// How one listing endpoint differs from the others.
struct Listing {
    /// The envelope's key for the items.
    key: &'static str,
    /// The item field (`...Z` text) the window applies to and the order follows.
    date_field: &'static str,
    /// The window when neither `from` nor `to` is given; `None`: everything.
    default_span: Option<Duration>,
    /// Parameters that select items whose field of the same name equals them.
    filters: &'static [&'static str],
    /// Whether the envelope states its `timezone` (engagements do).
    timezone: bool,
}

/// One page of `items`: those within the window and matching the filters,
/// newest first (items with the same time keep history order), `page_size` of
/// them from where the token says.
fn list(
    inner: &Inner,
    uri: &Uri,
    query: &Query,
    items: Vec<Value>,
    listing: &Listing,
) -> Result<Value, Invalid> {
    let page_size = page::page_size(query)?;
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let window = page::window(query, listing.default_span, now_ms)?;
    let fingerprint = query.fingerprint(uri.path());
    let clock_ms = since_start_ms(inner);
    let offset = page::resume(query.get("next_page_token"), fingerprint, clock_ms)?;

    let mut selected: Vec<(i64, Value)> = items
        .into_iter()
        .filter(|item| {
            listing.filters.iter().all(|field| {
                query
                    .get(field)
                    .is_none_or(|wanted| item[*field].as_str() == Some(wanted))
            })
        })
        .filter_map(|item| {
            let at = item[listing.date_field]
                .as_str()
                .and_then(item::parse_millis);
            let inside = match &window {
                Some(window) => at.is_some_and(|at| window.contains(at)),
                None => true,
            };
            inside.then_some((at.unwrap_or(i64::MIN), item))
        })
        .collect();
    selected.sort_by_key(|(at, _)| Reverse(*at));

    let total = selected.len();
    let page: Vec<Value> = selected
        .into_iter()
        .skip(offset)
        .take(page_size)
        .map(|(_, item)| item)
        .collect();
    let next_offset = offset.saturating_add(page_size);
    let next_page_token = if next_offset < total {
        Cursor {
            offset: next_offset as u64,
            fingerprint,
            issued_ms: clock_ms,
        }
        .encode()
    } else {
        String::new()
    };

    let mut envelope = json!({
        "next_page_token": next_page_token,
        "page_size": page_size,
        "total_records": total,
    });
    if let Some(window) = window {
        envelope["from"] = json!(window.from);
        envelope["to"] = json!(window.to);
    }
    if listing.timezone {
        envelope["timezone"] = json!("UTC");
    }
    envelope[listing.key] = Value::Array(page);
    Ok(envelope)
}

fn respond(listed: Result<Value, Invalid>) -> Response {
    match listed {
        Ok(body) => (StatusCode::OK, Json(body)).into_response(),
        Err(problem) => invalid(problem),
    }
}

/// Runs `read` over the bodies of everything ever emitted, in order.
fn read_bodies<R>(inner: &Inner, read: impl FnOnce(&[&Value]) -> R) -> R {
    inner.read_history(|history| {
        let bodies: Vec<&Value> = history.iter().map(|event| &event.body).collect();
        read(&bodies)
    })
}

/// `http://127.0.0.1:PORT/v2`
fn api_base(inner: &Inner) -> String {
    format!("{}v2", inner.origin(Scheme::Http))
}

/// Tokio time since the simulator started, in ms: a page token's clock.
fn since_start_ms(inner: &Inner) -> u64 {
    let elapsed = Instant::now().saturating_duration_since(inner.started);
    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
}
