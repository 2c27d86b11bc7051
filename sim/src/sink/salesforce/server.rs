//! The HTTP face of the fake org: the OAuth token endpoint and the versioned REST API under
//! `/services/data`, with the checks every API request passes in Salesforce's order (scripted
//! faults, version, session, API allocation) and the `Sforce-Limit-Info` header on every
//! API answer. Handlers parse and frame; the rules live in `store`, `record`, `soql`, `sosl`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Map, Value, json};

use super::error::{ApiError, OAuthError, RecordError};
use super::record;
use super::schema::{self, ObjectKind};
use super::store::{Endpoint, Store, Upserted};
use super::{multipart, soql, sosl};

/// Oldest and newest REST API versions the fake serves (v31.0 is the oldest still
/// supported after the API retirement of versions 21.0–30.0, Summer '25; v66.0 = Spring '26).
pub const MIN_VERSION: u32 = 31;
pub const MAX_VERSION: u32 = 66;
/// sObject Collections upsert and the `created` flag on upsert answers start at v46.0
/// (REST API "Upsert Records Using sObject Collections"; "Insert or Update (Upsert) a Record
/// Using an External ID": 200 with `created:false` for an update from v46.0, 204 before).
const COLLECTIONS_SINCE: u32 = 46;
/// Most records an sObject Collections request may carry.
const COLLECTION_MAX: usize = 200;
/// "You can insert or update blob data using a non-multipart message, but you are limited
/// to 50 MB of text data or 37.5 MB of base64–encoded data" (REST API "Insert or Update Blob
/// Data"): 37.5 MB of file data is 50 MB once base64-encoded.
pub const JSON_BLOB_MAX: usize = 37 * 1024 * 1024 + 512 * 1024;
/// ContentVersion multipart uploads: "the maximum file size for uploads is 2 GB for
/// ContentVersion objects" (same page).
pub const MULTIPART_BLOB_MAX: usize = 2 * 1024 * 1024 * 1024;

pub(crate) struct Shared {
    pub store: Mutex<Store>,
    pub base_url: String,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock only happens in a failing test; keep serving.
        self.store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/services/oauth2/token", any(token))
        .fallback(api)
        .with_state(shared)
}

/// Delay and scripted 503 that apply to every request, token requests included.
async fn faults(shared: &Shared) -> Option<Response> {
    let delay = shared.lock().faults.delay;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut store = shared.lock();
    if store.faults.unavailable_next > 0 {
        store.faults.unavailable_next -= 1;
        return Some(ApiError::unavailable().into_response());
    }
    None
}

// ---------------------------------------------------------------- OAuth

/// `POST /services/oauth2/token`, client-credentials flow ("OAuth 2.0 Client Credentials
/// Flow for Server-to-Server Integration"): the credentials in the form body or as HTTP
/// Basic; the answer `{access_token, signature, scope, instance_url, id, token_type,
/// issued_at}` with no refresh token and no `expires_in`.
async fn token(
    State(shared): State<Arc<Shared>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.lock().counts.bump(Endpoint::Token);
    if let Some(refused) = faults(&shared).await {
        return refused;
    }
    if method != Method::POST {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let form: HashMap<String, String> = url_form(&body);
    let (mut client_id, mut client_secret) = (
        form.get("client_id").cloned(),
        form.get("client_secret").cloned(),
    );
    if let Some((id, secret)) = basic_credentials(&headers) {
        client_id.get_or_insert(id);
        client_secret.get_or_insert(secret);
    }
    let refuse = |error, description| OAuthError { error, description }.into_response();
    let grant = form
        .get("grant_type")
        .map(String::as_str)
        .unwrap_or_default();
    let mut store = shared.lock();
    match grant {
        "client_credentials" => {}
        "password" => return refuse("invalid_grant", "authentication failure"),
        "refresh_token" => return refuse("invalid_grant", "expired access/refresh token"),
        "authorization_code" => return refuse("invalid_grant", "invalid authorization code"),
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
            return refuse("invalid_grant", "invalid assertion");
        }
        _ => return refuse("unsupported_grant_type", "grant type not supported"),
    }
    if client_id.as_deref() != Some(store.org.client_id.as_str()) {
        return refuse("invalid_client_id", "client identifier invalid");
    }
    if client_secret.as_deref() != Some(store.org.client_secret.as_str()) {
        return refuse("invalid_client", "invalid client credentials");
    }
    if !store.org.client_credentials_enabled {
        return refuse("invalid_grant", "no client credentials user enabled");
    }
    let access_token = store.issue_token();
    let issued_at = jiff::Timestamp::now().as_millisecond().to_string();
    // Salesforce signs `id + issued_at` with the client secret (HMAC-SHA256); the fake only
    // needs an opaque value that does not reveal the token.
    let signature = {
        use base64::Engine;
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (
            &store.integration_user_id,
            &issued_at,
            &store.org.client_secret,
        )
            .hash(&mut hasher);
        base64::engine::general_purpose::STANDARD.encode(hasher.finish().to_be_bytes())
    };
    axum::Json(json!({
        "access_token": access_token,
        "signature": signature,
        "scope": "api",
        "instance_url": shared.base_url,
        "id": format!("{}/id/{}/{}", shared.base_url, store.org_id, store.integration_user_id),
        "token_type": "Bearer",
        "issued_at": issued_at,
    }))
    .into_response()
}

fn url_form(body: &[u8]) -> HashMap<String, String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((
                percent_decode(&key.replace('+', " "))?,
                percent_decode(&value.replace('+', " "))?,
            ))
        })
        .collect()
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((percent_decode(id)?, percent_decode(secret)?))
}

/// Decodes `%XX` escapes; `None` for a broken escape or invalid UTF-8.
pub(crate) fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

// ---------------------------------------------------------------- REST API

/// What a REST path asks for, once the version is known.
enum Resource {
    Versions,
    Root,
    Limits,
    Describe(ObjectKind),
    /// `/sobjects/{Object}/{Id}`: GET any object's record, PATCH a Task.
    Record {
        kind: ObjectKind,
        id: String,
    },
    /// `/sobjects/Task/{field}/{value}`: PATCH upserts, GET retrieves.
    Upsert {
        field: String,
        value: String,
    },
    CollectionUpsert {
        field: String,
    },
    /// `/composite/sobjects`: PATCH updates by record id.
    CollectionUpdate,
    /// `/sobjects`: the org's objects.
    GlobalDescribe,
    /// `/sobjects/{Object}`: GET basic information; POST creates (ContentVersion only).
    Basic(ObjectKind),
    VersionData(String),
    Query,
    Search,
    NotFound,
}

fn endpoint_of(resource: &Resource, method: &Method) -> Endpoint {
    let write = *method == Method::PATCH;
    match resource {
        Resource::Describe(_) => Endpoint::Describe,
        Resource::Upsert { .. } if write => Endpoint::Upsert,
        Resource::Record {
            kind: ObjectKind::Task,
            ..
        } if write => Endpoint::Update,
        Resource::CollectionUpdate => Endpoint::Composite,
        Resource::CollectionUpsert { .. } => Endpoint::Composite,
        Resource::Basic(ObjectKind::ContentVersion) if *method == Method::POST => {
            Endpoint::ContentVersion
        }
        Resource::VersionData(_) => Endpoint::ContentVersion,
        Resource::Basic(_) | Resource::GlobalDescribe if *method == Method::GET => {
            Endpoint::Describe
        }
        Resource::Query => Endpoint::Query,
        Resource::Search => Endpoint::Search,
        _ => Endpoint::Other,
    }
}

/// Parses `vNN.N`; `None` when it is not a version the fake serves.
fn version_number(segment: &str) -> Option<u32> {
    let (major, minor) = segment.strip_prefix('v')?.split_once('.')?;
    let major: u32 = major.parse().ok()?;
    (minor == "0" && (MIN_VERSION..=MAX_VERSION).contains(&major)).then_some(major)
}

fn resolve(segments: &[String]) -> (Option<u32>, Resource) {
    let strs: Vec<&str> = segments.iter().map(String::as_str).collect();
    // segments start after "/services/data"
    let Some((first, rest)) = strs.split_first() else {
        return (None, Resource::Versions);
    };
    let Some(version) = version_number(first) else {
        return (None, Resource::NotFound);
    };
    let object = |name: &str| ObjectKind::parse(name);
    let resource = match rest {
        [] => Resource::Root,
        ["limits"] => Resource::Limits,
        ["query"] => Resource::Query,
        ["search"] => Resource::Search,
        ["sobjects", name, "describe"] => {
            object(name).map_or(Resource::NotFound, Resource::Describe)
        }
        ["sobjects"] => Resource::GlobalDescribe,
        ["sobjects", name] => object(name).map_or(Resource::NotFound, Resource::Basic),
        ["sobjects", name, id, "VersionData"]
            if object(name) == Some(ObjectKind::ContentVersion) =>
        {
            Resource::VersionData(id.to_string())
        }
        ["sobjects", name, field, value] if object(name) == Some(ObjectKind::Task) => {
            Resource::Upsert {
                field: field.to_string(),
                value: value.to_string(),
            }
        }
        ["sobjects", name, id] => {
            object(name).map_or(Resource::NotFound, |kind| Resource::Record {
                kind,
                id: id.to_string(),
            })
        }
        ["composite", "sobjects"] => Resource::CollectionUpdate,
        ["composite", "sobjects", name, field] if object(name) == Some(ObjectKind::Task) => {
            Resource::CollectionUpsert {
                field: field.to_string(),
            }
        }
        _ => Resource::NotFound,
    };
    (Some(version), resource)
}

async fn api(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path();
    let Some(tail) = path.strip_prefix("/services/data") else {
        return ApiError::not_found().into_response();
    };
    let Some(segments) = tail
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect::<Option<Vec<String>>>()
    else {
        return ApiError::not_found().into_response();
    };
    let (version, resource) = resolve(&segments);
    shared
        .lock()
        .counts
        .bump(endpoint_of(&resource, &parts.method));
    if let Some(refused) = faults(&shared).await {
        return refused;
    }
    let Some(version) = version else {
        return match resource {
            Resource::Versions => versions(),
            _ => ApiError::not_found().into_response(),
        };
    };
    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("OAuth "))
        })
        .map(str::trim)
        .map(str::to_owned);
    {
        let store = shared.lock();
        if !bearer
            .as_deref()
            .is_some_and(|token| store.session_valid(token))
        {
            return ApiError::session_invalid().into_response();
        }
    }
    let refused_for_limit = {
        let mut store = shared.lock();
        if store.limit_exceeded() {
            true
        } else {
            store.api_usage += 1;
            false
        }
    };
    let mut response = if refused_for_limit {
        ApiError::request_limit().into_response()
    } else {
        let query = Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
            .map(|q| q.0)
            .unwrap_or_default();
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let vtext = format!("v{version}.0");
        match handle(
            &shared,
            &parts.method,
            version,
            &vtext,
            resource,
            &query,
            &content_type,
            body,
        )
        .await
        {
            Ok(response) => response,
            Err(error) => error.into_response(),
        }
    };
    let limit_info = {
        let store = shared.lock();
        format!("api-usage={}/{}", store.api_usage, store.org.api_limit)
    };
    if let Ok(value) = HeaderValue::from_str(&limit_info) {
        response.headers_mut().insert("Sforce-Limit-Info", value);
    }
    response
}

fn versions() -> Response {
    let list: Vec<Value> = (MIN_VERSION..=MAX_VERSION)
        .map(|major| json!({"label": format!("v{major}.0"), "url": format!("/services/data/v{major}.0"), "version": format!("{major}.0")}))
        .collect();
    axum::Json(Value::Array(list)).into_response()
}

fn require(method: &Method, allowed: &Method) -> Result<(), ApiError> {
    if method == allowed {
        Ok(())
    } else {
        Err(ApiError::method_not_allowed(method.as_str()))
    }
}

#[allow(clippy::too_many_arguments)]
async fn handle(
    shared: &Shared,
    method: &Method,
    version: u32,
    vtext: &str,
    resource: Resource,
    query: &HashMap<String, String>,
    content_type: &str,
    body: Body,
) -> Result<Response, ApiError> {
    match resource {
        Resource::Versions | Resource::NotFound => Err(ApiError::not_found()),
        Resource::Root => {
            require(method, &Method::GET)?;
            let base = format!("/services/data/{vtext}");
            Ok(axum::Json(json!({
                "sobjects": format!("{base}/sobjects"), "query": format!("{base}/query"),
                "search": format!("{base}/search"), "composite": format!("{base}/composite"),
                "limits": format!("{base}/limits"),
            }))
            .into_response())
        }
        Resource::Limits => {
            require(method, &Method::GET)?;
            let store = shared.lock();
            let (max, used) = (store.org.api_limit, store.api_usage);
            Ok(axum::Json(
                json!({"DailyApiRequests": {"Max": max, "Remaining": max.saturating_sub(used)}}),
            )
            .into_response())
        }
        Resource::Describe(kind) => {
            require(method, &Method::GET)?;
            let store = shared.lock();
            Ok(axum::Json(schema::describe(
                kind,
                &store.fields(kind),
                store.access(kind),
                vtext,
            ))
            .into_response())
        }
        Resource::Query => {
            require(method, &Method::GET)?;
            let Some(text) = query.get("q") else {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "MALFORMED_QUERY",
                    "A query string has to be specified",
                ));
            };
            let store = shared.lock();
            let fields_of = |kind| store.fields(kind);
            let parsed = soql::parse(text, &fields_of)
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.code, e.message))?;
            let fields = store.fields(parsed.object);
            Ok(axum::Json(soql::run(
                &parsed,
                &fields,
                &store.query_candidates(&parsed),
                vtext,
            ))
            .into_response())
        }
        Resource::Search => {
            require(method, &Method::GET)?;
            let Some(text) = query.get("q") else {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "MALFORMED_SEARCH",
                    "A search string has to be specified",
                ));
            };
            let store = shared.lock();
            let fields_of = |kind| store.fields(kind);
            let records_of = |kind| store.records(kind);
            let parsed = sosl::parse(text, &fields_of)
                .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.code, e.message))?;
            Ok(axum::Json(sosl::run(&parsed, &fields_of, &records_of, vtext)).into_response())
        }
        Resource::Upsert { field, value } if *method == Method::GET => {
            retrieve_by_external_id(shared, vtext, &field, &value)
        }
        Resource::Record { kind, id } if *method == Method::GET => {
            retrieve(shared, vtext, kind, &id)
        }
        Resource::Record {
            kind: ObjectKind::Task,
            id,
        } => {
            require(method, &Method::PATCH)?;
            json_content(content_type)?;
            let raw = read_body(body, 64 * 1024 * 1024).await?;
            update_by_id(shared, &id, &raw)
        }
        Resource::Record { .. } => Err(ApiError::method_not_allowed(method.as_str())),
        Resource::CollectionUpdate => {
            require(method, &Method::PATCH)?;
            json_content(content_type)?;
            let raw = read_body(body, 64 * 1024 * 1024).await?;
            collection_update(shared, &raw)
        }
        Resource::Upsert { field, value } => {
            require(method, &Method::PATCH)?;
            json_content(content_type)?;
            let raw = read_body(body, 64 * 1024 * 1024).await?;
            let update_only = query.get("updateOnly").is_some_and(|v| v == "true");
            upsert(shared, version, vtext, &field, &value, &raw, update_only)
        }
        Resource::CollectionUpsert { field } => {
            require(method, &Method::PATCH)?;
            if version < COLLECTIONS_SINCE {
                return Err(ApiError::not_found());
            }
            json_content(content_type)?;
            let raw = read_body(body, 64 * 1024 * 1024).await?;
            collection_upsert(shared, &field, &raw)
        }
        Resource::GlobalDescribe => {
            require(method, &Method::GET)?;
            let store = shared.lock();
            let sobjects: Vec<Value> = ObjectKind::ALL
                .into_iter()
                .map(|kind| schema::summary(kind, store.access(kind), vtext))
                .collect();
            Ok(axum::Json(
                json!({"encoding": "UTF-8", "maxBatchSize": COLLECTION_MAX, "sobjects": sobjects}),
            )
            .into_response())
        }
        Resource::Basic(kind) if *method == Method::GET => {
            let store = shared.lock();
            Ok(axum::Json(json!({"objectDescribe": schema::summary(kind, store.access(kind), vtext), "recentItems": []})).into_response())
        }
        Resource::Basic(ObjectKind::ContentVersion) => {
            require(method, &Method::POST)?;
            create_content_version(shared, content_type, body).await
        }
        Resource::Basic(_) => Err(ApiError::method_not_allowed(method.as_str())),
        Resource::VersionData(id) => {
            require(method, &Method::GET)?;
            let store = shared.lock();
            let id = super::id::canonical(&id).unwrap_or_default();
            let version = store
                .content_versions
                .iter()
                .find(|v| v.id == id)
                .ok_or_else(ApiError::not_found)?;
            Ok((
                [(header::CONTENT_TYPE, "application/octetstream")],
                version.bytes.clone(),
            )
                .into_response())
        }
    }
}

/// JSON endpoints take `application/json` (or no Content-Type). XML, which Salesforce also
/// accepts, is outside the fake; other types are refused as Salesforce refuses them.
fn json_content(content_type: &str) -> Result<(), ApiError> {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence.is_empty() || essence == "application/json" {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            format!("Content-Type header specified in HTTP request is not supported: {essence}"),
        ))
    }
}

/// A record as `GET /sobjects/{Object}/{Id}` answers it: `attributes` first, every field.
fn record_json(
    kind: ObjectKind,
    record: &Map<String, Value>,
    fields: &[schema::FieldDef],
    vtext: &str,
) -> Value {
    let id = record.get("Id").and_then(Value::as_str).unwrap_or_default();
    let url = format!("/services/data/{vtext}/sobjects/{}/{id}", kind.name());
    let mut out = Map::new();
    out.insert(
        "attributes".into(),
        json!({"type": kind.name(), "url": url}),
    );
    for field in fields {
        let value = if field.kind == schema::FieldType::Base64 {
            json!(format!("{url}/{}", field.name))
        } else {
            record.get(&field.name).cloned().unwrap_or(Value::Null)
        };
        out.insert(field.name.clone(), value);
    }
    Value::Object(out)
}

/// `GET /sobjects/{Object}/{Id}` ("Get Field Values from a Standard Object Record").
fn retrieve(
    shared: &Shared,
    vtext: &str,
    kind: ObjectKind,
    id: &str,
) -> Result<Response, ApiError> {
    let store = shared.lock();
    let Some(id) = super::id::canonical(id) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "MALFORMED_ID",
            format!("malformed id {id}"),
        ));
    };
    let records = store.records(kind);
    let record = records
        .iter()
        .find(|r| r.get("Id").and_then(Value::as_str) == Some(id.as_str()))
        .ok_or_else(ApiError::not_found)?;
    Ok(axum::Json(record_json(kind, record, &store.fields(kind), vtext)).into_response())
}

/// `GET /sobjects/Task/{field}/{value}`: the record, 300 with the candidates, or 404.
fn retrieve_by_external_id(
    shared: &Shared,
    vtext: &str,
    field: &str,
    value: &str,
) -> Result<Response, ApiError> {
    let store = shared.lock();
    let key = store.upsert_key(field)?;
    let hits: Vec<&Map<String, Value>> = store
        .tasks_with(&key, value)
        .into_iter()
        .map(|i| &store.tasks[i])
        .collect();
    match hits.as_slice() {
        [] => Err(ApiError::not_found()),
        [task] => Ok(axum::Json(record_json(
            ObjectKind::Task,
            task,
            &store.fields(ObjectKind::Task),
            vtext,
        ))
        .into_response()),
        several => {
            let urls: Vec<String> = several
                .iter()
                .filter_map(|t| t.get("Id").and_then(Value::as_str))
                .map(|id| format!("/services/data/{vtext}/sobjects/Task/{id}"))
                .collect();
            Ok((StatusCode::MULTIPLE_CHOICES, axum::Json(json!(urls))).into_response())
        }
    }
}

/// `PATCH /sobjects/Task/{Id}`: 204 on success in every version ("Update a Record"). An id
/// that names no Task answers as Salesforce does when the path's last segment is not a
/// record of the object: 404 "Provided external ID field does not exist or is not accessible".
fn update_by_id(shared: &Shared, id: &str, raw: &[u8]) -> Result<Response, ApiError> {
    let mut store = shared.lock();
    let (text, input) = json_object(raw)?;
    let fields = store.fields(ObjectKind::Task);
    let values = record::parse(ObjectKind::Task, &fields, &input, &text)?;
    match store.update_task(id, values).map_err(record_refusal)? {
        Some(_) => Ok(StatusCode::NO_CONTENT.into_response()),
        None => Err(ApiError::external_id_field_missing(id)),
    }
}

/// Object-permission refusals carry no `fields`; field-level ones do.
fn record_refusal(error: RecordError) -> ApiError {
    if error.code == "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY" {
        ApiError::new(StatusCode::BAD_REQUEST, error.code, error.message)
    } else {
        ApiError::from_record(error)
    }
}

/// `PATCH /composite/sobjects`: up to 200 records updated by their `id`, each with
/// `attributes.type`; SaveResults `{id, success, errors}` in request order; `allOrNone` as
/// for upserts (REST API "Update Records Using sObject Collections"). Only Tasks here.
fn collection_update(shared: &Shared, raw: &[u8]) -> Result<Response, ApiError> {
    let mut store = shared.lock();
    let (text, body) = json_object(raw)?;
    let (all_or_none, records) = collection_body(&body)?;
    let fields = store.fields(ObjectKind::Task);
    let mut parsed = Vec::with_capacity(records.len());
    for record in records {
        let Value::Object(object) = record else {
            return Err(ApiError::json_parser(
                "Cannot deserialize instance of SObject from VALUE_STRING value or request may be missing a required field",
            ));
        };
        let mut fields_only = object.clone();
        let id = fields_only
            .remove("id")
            .or_else(|| fields_only.remove("Id"));
        let values = record::parse(ObjectKind::Task, &fields, &fields_only, &text)?;
        parsed.push((object.get("attributes").cloned(), id, values));
    }
    let snapshot = store.snapshot();
    let mut results: Vec<Result<String, RecordError>> = Vec::with_capacity(parsed.len());
    for (attributes, id, values) in parsed {
        let declared = attributes
            .as_ref()
            .and_then(|a| a.get("type"))
            .and_then(Value::as_str);
        let result = match (declared, id) {
            (Some(kind), Some(Value::String(id))) if kind.eq_ignore_ascii_case("Task") => {
                match store.update_task(&id, values) {
                    Ok(Some(id)) => Ok(id),
                    Ok(None) => Err(RecordError::new(
                        "INVALID_CROSS_REFERENCE_KEY",
                        "invalid cross reference id",
                        &[],
                    )),
                    Err(error) => Err(error),
                }
            }
            (Some(kind), _) if kind.eq_ignore_ascii_case("Task") => Err(RecordError::new(
                "MISSING_ARGUMENT",
                "Id not specified in an update call",
                &[],
            )),
            _ => Err(RecordError::new(
                "INVALID_TYPE",
                "Must send a concrete entity type.",
                &[],
            )),
        };
        results.push(result);
    }
    let failed = results.iter().any(Result::is_err);
    if all_or_none && failed {
        store.restore(snapshot);
    }
    let answers: Vec<Value> = results
        .into_iter()
        .map(|result| match result {
            Ok(id) if !(all_or_none && failed) => json!({"id": id, "success": true, "errors": []}),
            Ok(_) => json!({"success": false, "errors": [rolled_back().collection_json()]}),
            Err(error) => json!({"success": false, "errors": [error.collection_json()]}),
        })
        .collect();
    Ok(axum::Json(Value::Array(answers)).into_response())
}

fn rolled_back() -> RecordError {
    RecordError::new(
        "ALL_OR_NONE_OPERATION_ROLLED_BACK",
        "Record rolled back because not all records were valid and the request was using AllOrNone header",
        &[],
    )
}

/// `allOrNone` and `records` of an sObject Collections body, with the 200-record cap.
fn collection_body(body: &Map<String, Value>) -> Result<(bool, &Vec<Value>), ApiError> {
    let all_or_none = match body.get("allOrNone") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::json_parser(
                "Cannot deserialize instance of boolean from VALUE_STRING value or request may be missing a required field at [line:1, column:1]",
            ));
        }
    };
    let Some(Value::Array(records)) = body.get("records") else {
        return Err(ApiError::json_parser(
            "Cannot deserialize instance of SObject[] or request may be missing a required field: records",
        ));
    };
    if records.len() > COLLECTION_MAX {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "EXCEEDED_ID_LIMIT",
            "record limit reached. cannot submit more than 200 records into this call",
        ));
    }
    Ok((all_or_none, records))
}

async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "REQUEST_ENTITY_TOO_LARGE",
            format!("Exceeded max size limit of {limit} bytes for this request"),
        )
    })
}

/// Parses a JSON object body the way the API's deserializer reports failures.
fn json_object(raw: &[u8]) -> Result<(String, Map<String, Value>), ApiError> {
    let text = String::from_utf8(raw.to_vec())
        .map_err(|_| ApiError::json_parser("Invalid UTF-8 middle byte"))?;
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(object)) => Ok((text, object)),
        Ok(other) => {
            let token = if other.is_array() {
                "START_ARRAY"
            } else {
                "VALUE_STRING"
            };
            Err(ApiError::json_parser(format!(
                "Cannot deserialize instance of SObject from {token} value or request may be missing a required field at [line:1, column:1]"
            )))
        }
        Err(error) => {
            let reason = error.to_string();
            let reason = reason
                .split(" at line ")
                .next()
                .unwrap_or(&reason)
                .to_owned();
            Err(ApiError::json_parser(format!(
                "Unexpected character: {reason} at [line:{}, column:{}]",
                error.line(),
                error.column()
            )))
        }
    }
}

fn upsert(
    shared: &Shared,
    version: u32,
    vtext: &str,
    field: &str,
    value: &str,
    raw: &[u8],
    update_only: bool,
) -> Result<Response, ApiError> {
    let mut store = shared.lock();
    let key = store.upsert_key(field)?;
    let (text, input) = json_object(raw)?;
    let fields = store.fields(ObjectKind::Task);
    let values = record::parse(ObjectKind::Task, &fields, &input, &text)?;
    // "Do not specify Id or an external ID field in the request body or an error is
    // generated" (REST API "sObject Rows by External ID"). The wording below is the fake's.
    if values.contains_key(&key.name) {
        return Err(ApiError::from_record(RecordError::new(
            "INVALID_FIELD",
            format!(
                "The external ID field {} must be given in the URL, not in the request body",
                key.name
            ),
            &[&key.name],
        )));
    }
    if update_only && store.tasks_with(&key, value).is_empty() {
        return Err(ApiError::not_found());
    }
    match store
        .upsert_task(&key, value, values)
        .map_err(record_refusal)?
    {
        Upserted::Created(id) => {
            let body = if version >= COLLECTIONS_SINCE {
                json!({"id": id, "success": true, "errors": [], "created": true})
            } else {
                json!({"id": id, "success": true, "errors": []})
            };
            let location = format!("/services/data/{vtext}/sobjects/Task/{id}");
            Ok((
                StatusCode::CREATED,
                [(header::LOCATION, location)],
                axum::Json(body),
            )
                .into_response())
        }
        Upserted::Updated(id) => {
            if version >= COLLECTIONS_SINCE {
                Ok(
                    axum::Json(json!({"id": id, "success": true, "errors": [], "created": false}))
                        .into_response(),
                )
            } else {
                Ok(StatusCode::NO_CONTENT.into_response())
            }
        }
        Upserted::Ambiguous(ids) => {
            let urls: Vec<String> = ids
                .iter()
                .map(|id| format!("/services/data/{vtext}/sobjects/Task/{id}"))
                .collect();
            Ok((StatusCode::MULTIPLE_CHOICES, axum::Json(json!(urls))).into_response())
        }
    }
}

/// `PATCH /composite/sobjects/Task/{field}`: up to 200 records, each with
/// `attributes.type`, results in request order; `allOrNone` rolls every write back when one
/// record fails (REST API "Upsert Records Using sObject Collections"; the rolled-back records
/// carry `ALL_OR_NONE_OPERATION_ROLLED_BACK`).
fn collection_upsert(shared: &Shared, field: &str, raw: &[u8]) -> Result<Response, ApiError> {
    let mut store = shared.lock();
    let (text, body) = json_object(raw)?;
    let (all_or_none, records) = collection_body(&body)?;
    let key = store.upsert_key(field)?;
    let fields = store.fields(ObjectKind::Task);
    // Deserialization errors fail the whole request.
    let mut parsed = Vec::with_capacity(records.len());
    for record in records {
        let Value::Object(object) = record else {
            return Err(ApiError::json_parser(
                "Cannot deserialize instance of SObject from VALUE_STRING value or request may be missing a required field",
            ));
        };
        parsed.push((
            object,
            record::parse(ObjectKind::Task, &fields, object, &text)?,
        ));
    }
    let value_of = |values: &Map<String, Value>| {
        values
            .get(&key.name)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (_, values) in &parsed {
        if let Some(value) = value_of(values) {
            let normalised = if key.case_sensitive {
                value
            } else {
                value.to_lowercase()
            };
            *seen.entry(normalised).or_default() += 1;
        }
    }
    let snapshot = store.snapshot();
    let mut results: Vec<Result<(String, bool), RecordError>> = Vec::with_capacity(parsed.len());
    for (object, mut values) in parsed {
        let result = (|| {
            let declared = object
                .get("attributes")
                .and_then(|a| a.get("type"))
                .and_then(Value::as_str);
            match declared {
                Some(kind) if kind.eq_ignore_ascii_case("Task") => {}
                _ => {
                    return Err(RecordError::new(
                        "INVALID_TYPE",
                        "Must send a concrete entity type.",
                        &[],
                    ));
                }
            }
            let Some(value) = value_of(&values) else {
                return Err(RecordError::new(
                    "REQUIRED_FIELD_MISSING",
                    format!("Required fields are missing: [{}]", key.name),
                    &[&key.name],
                ));
            };
            let normalised = if key.case_sensitive {
                value.clone()
            } else {
                value.to_lowercase()
            };
            if seen.get(&normalised).copied().unwrap_or(0) > 1 {
                return Err(RecordError::new(
                    "DUPLICATE_EXTERNAL_ID",
                    format!("Duplicate external id specified: {value}"),
                    &[&key.name],
                ));
            }
            values.remove(&key.name);
            match store.upsert_task(&key, &value, values)? {
                Upserted::Created(id) => Ok((id, true)),
                Upserted::Updated(id) => Ok((id, false)),
                Upserted::Ambiguous(ids) => Err(RecordError::new(
                    "DUPLICATE_EXTERNAL_ID",
                    format!(
                        "{}: more than one record found for external id field: {ids:?}",
                        key.name
                    ),
                    &[&key.name],
                )),
            }
        })();
        results.push(result);
    }
    let failed = results.iter().any(Result::is_err);
    if all_or_none && failed {
        store.restore(snapshot);
    }
    let rolled_back = rolled_back();
    let answers: Vec<Value> = results
        .into_iter()
        .map(|result| match result {
            Ok((id, created)) if !(all_or_none && failed) => json!({"id": id, "success": true, "errors": [], "created": created}),
            // A failed UpsertResult has no id ("If there was an error, the field is null",
            // omitted from the JSON as in the sObject Collections examples).
            Ok(_) => json!({"success": false, "errors": [rolled_back.collection_json()], "created": false}),
            Err(error) => json!({"success": false, "errors": [error.collection_json()], "created": false}),
        })
        .collect();
    Ok(axum::Json(Value::Array(answers)).into_response())
}

/// `POST /sobjects/ContentVersion`: JSON with base64 `VersionData` (≤ 37.5 MB of data), or
/// `multipart/form-data` with an `entity_content` JSON part and a `VersionData` binary part
/// (≤ 2 GB) (REST API "Insert or Update Blob Data"; the curl form
/// `entity_content='{…};type=application/json'`, `VersionData=@file`).
async fn create_content_version(
    shared: &Shared,
    content_type: &str,
    body: Body,
) -> Result<Response, ApiError> {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let (entity, bytes, upload) = if let Some(boundary) = multipart::boundary(content_type) {
        let raw = read_body(body, MULTIPART_BLOB_MAX + 1024 * 1024).await?;
        let invalid = |message: &str| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_MULTIPART_REQUEST",
                message.to_owned(),
            )
        };
        let parts = multipart::parse(&raw, &boundary)
            .ok_or_else(|| invalid("Multipart message is malformed"))?;
        let entity = parts
            .iter()
            .find(|p| p.name == "entity_content")
            .ok_or_else(|| {
                invalid("Multipart message must include a non-binary part named entity_content")
            })?;
        let binary = parts
            .iter()
            .find(|p| p.name == "VersionData")
            .ok_or_else(|| {
                invalid("Multipart message must include a binary part named VersionData")
            })?;
        if binary.data.len() > MULTIPART_BLOB_MAX {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "REQUEST_ENTITY_TOO_LARGE",
                "Maximum file size exceeded: 2 GB",
            ));
        }
        (entity.data.clone(), Some(binary.data.clone()), "multipart")
    } else if essence == "application/json" || essence.is_empty() {
        let raw = read_body(body, JSON_BLOB_MAX * 4 / 3 + 1024 * 1024).await?;
        (raw, None, "json")
    } else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            format!("Content type '{content_type}' not supported for this resource"),
        ));
    };
    let mut store = shared.lock();
    let (text, input) = json_object(&entity)?;
    let fields = store.fields(ObjectKind::ContentVersion);
    let mut values = record::parse(ObjectKind::ContentVersion, &fields, &input, &text)?;
    let inline = values.remove("VersionData");
    let bytes = match (bytes, inline) {
        (Some(binary), _) => Some(binary),
        (None, Some(Value::String(encoded))) => {
            let decoded = record::decode_base64(&encoded).ok_or_else(|| {
                ApiError::json_parser("Cannot deserialize instance of base64 from VALUE_STRING value or request may be missing a required field: VersionData is not valid base64")
            })?;
            if decoded.len() > JSON_BLOB_MAX {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "REQUEST_ENTITY_TOO_LARGE",
                    "Exceeded max size limit of 37.5 MB of base64-encoded data for a non-multipart request; use a multipart request",
                ));
            }
            Some(Bytes::from(decoded))
        }
        (None, _) => None,
    };
    let id = store
        .create_content_version(values, bytes, upload)
        .map_err(record_refusal)?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"id": id, "success": true, "errors": []})),
    )
        .into_response())
}
