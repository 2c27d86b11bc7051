//! Zoom WebSocket frames: what the server sends (`build_connection`, `heartbeat`,
//! `message`) and the one frame we send (`{"module":"heartbeat"}`).
//!
//! Pure parsing only; the connection state machine lives in `source/`.

use serde::Deserialize;
use serde_json::Value;

/// The heartbeat we send; Zoom wants one at least every 30 s (docs/zoom.md §2.4).
pub const HEARTBEAT: &str = r#"{"module":"heartbeat"}"#;

/// A decoded server frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// First frame after the upgrade: did Zoom accept the token and subscription?
    BuildConnection { success: bool, content: String },
    /// Reply to our heartbeat (`content: "live"`).
    Heartbeat { success: bool, content: String },
    /// An event delivery. `body` is the webhook body as text: the `content` string
    /// exactly as received, or the compact serialization when Zoom sent an object.
    Message { body: String },
    /// A well-formed frame with a module we do not know; kept for logging.
    Unknown { module: String },
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FrameError {
    #[error("frame is not JSON: {0}")]
    NotJson(String),
    #[error("frame has no \"module\" field")]
    NoModule,
    #[error("message frame has no content")]
    NoContent,
    #[error("message content is not a JSON object")]
    ContentNotObject,
}

#[derive(Deserialize)]
struct RawFrame {
    module: Option<String>,
    #[serde(default)]
    success: Option<bool>,
    #[serde(default)]
    content: Option<Value>,
}

impl Frame {
    pub fn parse(text: &str) -> Result<Frame, FrameError> {
        let raw: RawFrame =
            serde_json::from_str(text).map_err(|e| FrameError::NotJson(e.to_string()))?;
        let module = raw.module.ok_or(FrameError::NoModule)?;
        let content_text = |content: Option<Value>| match content {
            Some(Value::String(s)) => s,
            Some(other) => other.to_string(),
            None => String::new(),
        };
        Ok(match module.as_str() {
            "build_connection" => Frame::BuildConnection {
                success: raw.success.unwrap_or(false),
                content: content_text(raw.content),
            },
            "heartbeat" => Frame::Heartbeat {
                success: raw.success.unwrap_or(true),
                content: content_text(raw.content),
            },
            "message" => {
                let body = match raw.content {
                    // Double-encoded (what Zoom sends): keep the string byte for byte,
                    // it is the "raw event body" natural keys hash over.
                    Some(Value::String(s)) => {
                        if !s.trim_start().starts_with('{') {
                            return Err(FrameError::ContentNotObject);
                        }
                        s
                    }
                    // Some clients have seen an object; its compact serialization
                    // (keys sorted, serde_json without preserve_order) is the body.
                    Some(v @ Value::Object(_)) => v.to_string(),
                    Some(_) => return Err(FrameError::ContentNotObject),
                    None => return Err(FrameError::NoContent),
                };
                Frame::Message { body }
            }
            _ => Frame::Unknown { module },
        })
    }

    /// Does this frame say our token is no longer good? The wording has changed
    /// once already ("Invalid Token" → "Token is invalid"), so match loosely.
    pub fn is_token_error(&self) -> bool {
        let content = match self {
            Frame::BuildConnection { content, .. } | Frame::Heartbeat { content, .. } => content,
            _ => return false,
        };
        let lower = content.to_ascii_lowercase();
        lower.contains("token")
            && (lower.contains("invalid") || lower.contains("empty") || lower.contains("expired"))
    }

    /// Does this frame say another consumer took the subscription?
    pub fn is_eviction(&self) -> bool {
        match self {
            Frame::BuildConnection { content, .. } | Frame::Heartbeat { content, .. } => {
                is_eviction_text(content)
            }
            _ => false,
        }
    }
}

/// "Connected in another place": the text Zoom uses when a newer connection for
/// the same subscription took over (docs/zoom.md §2.6).
pub fn is_eviction_text(text: &str) -> bool {
    text.to_ascii_lowercase().contains("another place")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Result<Frame, FrameError>) {
        assert_eq!(Frame::parse(text), expected, "input: {text}");
    }

    #[test]
    fn parses_every_frame_kind() {
        check(
            r#"{"module":"build_connection","success":true,"content":"ok","header":{}}"#,
            Ok(Frame::BuildConnection {
                success: true,
                content: "ok".into(),
            }),
        );
        check(
            r#"{"module":"build_connection","success":false,"content":"token is empty","header":{}}"#,
            Ok(Frame::BuildConnection {
                success: false,
                content: "token is empty".into(),
            }),
        );
        check(
            r#"{"module":"heartbeat","success":true,"content":"live","header":{}}"#,
            Ok(Frame::Heartbeat {
                success: true,
                content: "live".into(),
            }),
        );
        check(
            r#"{"module":"message","success":true,"content":"{\"event\":\"x\",  \"b\":1}","header":{}}"#,
            Ok(Frame::Message {
                body: r#"{"event":"x",  "b":1}"#.into(),
            }),
        );
        check(
            r#"{"module":"message","content":{"z":1,"a":{"c":"é","b":2}}}"#,
            Ok(Frame::Message {
                body: r#"{"a":{"b":2,"c":"é"},"z":1}"#.into(),
            }),
        );
        check(
            r#"{"module":"surprise"}"#,
            Ok(Frame::Unknown {
                module: "surprise".into(),
            }),
        );
    }

    #[test]
    fn rejects_malformed_frames() {
        assert!(matches!(
            Frame::parse("heartbeat"),
            Err(FrameError::NotJson(_))
        ));
        assert!(matches!(Frame::parse("[1,2]"), Err(FrameError::NotJson(_))));
        check(r#"{"success":true}"#, Err(FrameError::NoModule));
        check(r#"{"module":"message"}"#, Err(FrameError::NoContent));
        check(
            r#"{"module":"message","content":"not json"}"#,
            Err(FrameError::ContentNotObject),
        );
        check(
            r#"{"module":"message","content":[1]}"#,
            Err(FrameError::ContentNotObject),
        );
        check(
            r#"{"module":"message","content":42}"#,
            Err(FrameError::ContentNotObject),
        );
    }

    #[test]
    fn recognises_token_errors_and_eviction() {
        let frame = |content: &str| Frame::BuildConnection {
            success: false,
            content: content.into(),
        };
        assert!(frame("Invalid Token").is_token_error());
        assert!(frame("Token is invalid").is_token_error());
        assert!(frame("token is empty").is_token_error());
        assert!(!frame("Connected in another place").is_token_error());
        assert!(frame("Connected in another place").is_eviction());
        assert!(!frame("Invalid Token").is_eviction());
    }
}
