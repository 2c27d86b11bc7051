//! The error bodies Salesforce's REST API answers with, and nothing else.
//!
//! Every REST error is an array of `{"message", "errorCode"}` objects, with `fields` where
//! the error concerns fields ("Status Codes and Error Responses",
//! developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm). sObject
//! Collections report per record `{"statusCode", "message", "fields"}` inside
//! `{"id", "success", "errors", "created"}` (UpsertResult/SaveResult, SOAP API Developer Guide,
//! "UpsertResult"). The OAuth token endpoint has its own `{"error", "error_description"}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One refusal concerning one record: its code, message and the fields it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub code: &'static str,
    pub message: String,
    pub fields: Vec<String>,
}

impl RecordError {
    pub fn new(code: &'static str, message: impl Into<String>, fields: &[&str]) -> Self {
        Self {
            code,
            message: message.into(),
            fields: fields.iter().map(|f| f.to_string()).collect(),
        }
    }

    /// The per-record form used by sObject Collections.
    pub fn collection_json(&self) -> Value {
        json!({"statusCode": self.code, "message": self.message, "fields": self.fields})
    }
}

/// A whole-request refusal: an HTTP status and the error array.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub errors: Vec<(String, &'static str, Option<Vec<String>>)>,
}

impl ApiError {
    /// One error without a `fields` member.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            errors: vec![(message.into(), code, None)],
        }
    }

    /// A record-level refusal answered as a 400 with `fields`.
    pub fn from_record(error: RecordError) -> Self {
        Self::from_record_with_status(StatusCode::BAD_REQUEST, error)
    }

    pub fn from_record_with_status(status: StatusCode, error: RecordError) -> Self {
        Self {
            status,
            errors: vec![(error.message, error.code, Some(error.fields))],
        }
    }

    pub fn body(&self) -> Value {
        Value::Array(
            self.errors
                .iter()
                .map(|(message, code, fields)| {
                    let mut item = json!({"message": message, "errorCode": code});
                    if let (Some(fields), Some(object)) = (fields, item.as_object_mut()) {
                        object.insert("fields".into(), json!(fields));
                    }
                    item
                })
                .collect(),
        )
    }

    // The common refusals, with Salesforce's wording.

    pub fn session_invalid() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "INVALID_SESSION_ID",
            "Session expired or invalid",
        )
    }

    pub fn request_limit() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
        )
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested resource does not exist",
        )
    }

    /// A 503. Salesforce documents the status ("the server is unavailable to handle the
    /// request, typically for maintenance or overload", errorcodes.htm) but no body; the
    /// fake answers the REST error shape with `SERVER_UNAVAILABLE`, the code Salesforce's
    /// StatusCode enumeration has for it.
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVER_UNAVAILABLE",
            "Server is temporarily unavailable to handle this request. Please try again later.",
        )
    }

    pub fn json_parser(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "JSON_PARSER_ERROR", message)
    }

    pub fn external_id_field_missing(field: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("Provided external ID field does not exist or is not accessible: {field}"),
        )
    }

    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            format!("HTTP Method '{method}' not allowed. Allowed are GET,PATCH,POST,HEAD,DELETE"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        // Salesforce's 401 carries `WWW-Authenticate: Token` (RFC 9110 requires the header).
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Token"),
            );
        }
        response
    }
}

/// A refusal of the OAuth token endpoint (`{"error","error_description"}`, status 400 as
/// Salesforce answers for every token-request error: "OAuth 2.0 Client Credentials Flow for
/// Server-to-Server Integration", help.salesforce.com xcloud.remoteaccess_oauth_client_credentials_flow.htm).
#[derive(Debug, Clone)]
pub struct OAuthError {
    pub error: &'static str,
    pub description: &'static str,
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": self.error, "error_description": self.description})),
        )
            .into_response()
    }
}
