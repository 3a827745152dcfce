//! The AMQP wire formats (the README's RabbitMQ section): the request body and the reply.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::domain::{CourseRequest, RawCourseRequest};

/// Largest request body looked at; anything bigger is refused unread
/// (a real request is well under 1 KiB).
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest `request_id` echoed back in an error reply.
const MAX_ECHOED_ID: usize = 200;

/// Status of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplyStatus {
    /// The request is recorded (`CourseRequested`).
    Accepted,
    /// The course is READY.
    Success,
    /// The request was refused, or generation failed.
    Error,
}

/// A reply, in the predecessor's format; fields that do not apply are `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The request's id as sent (a string, even if it is not a valid UUID).
    pub request_id: Option<String>,
    pub status: ReplyStatus,
    pub course_id: Option<Uuid>,
    pub course_title: Option<String>,
    pub total_lessons: Option<u32>,
    pub error: Option<String>,
    /// When the fact replied about was recorded (RFC 3339, UTC), so a reply
    /// sent twice after a crash is identical.
    pub timestamp: String,
}

impl Reply {
    /// A reply with only a status and request id.
    pub(crate) fn new(request_id: Option<String>, status: ReplyStatus, at: DateTime<Utc>) -> Self {
        Self {
            request_id,
            status,
            course_id: None,
            course_title: None,
            total_lessons: None,
            error: None,
            timestamp: at.to_rfc3339_opts(SecondsFormat::Millis, true),
        }
    }

    /// The JSON body.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("replies serialize")
    }
}

/// Why a message was refused, and the request id to answer, if readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub reason: String,
    pub request_id: Option<String>,
}

/// Reads and validates a request body. Never panics, whatever the bytes.
///
/// # Errors
/// A [`Refusal`] naming the first problem: too large, not UTF-8, not JSON
/// (including nesting deeper than serde_json's limit of 128), not an object,
/// a field of the wrong type, or a broken rule of [`CourseRequest::parse`].
pub(crate) fn parse_request(body: &[u8]) -> Result<CourseRequest, Refusal> {
    let refuse = |reason: String, request_id: Option<String>| Refusal { reason, request_id };
    if body.len() > MAX_BODY_BYTES {
        return Err(refuse(
            format!(
                "message body is {} bytes; at most {MAX_BODY_BYTES} are accepted",
                body.len()
            ),
            None,
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(refuse("message body is empty".into(), None));
    }
    let text = std::str::from_utf8(body)
        .map_err(|e| refuse(format!("message body is not UTF-8: {e}"), None))?;
    let value: Value = serde_json::from_str(text)
        .map_err(|e| refuse(format!("message body is not valid JSON: {e}"), None))?;
    let Value::Object(object) = &value else {
        return Err(refuse(
            format!(
                "message body must be a JSON object, got {}",
                json_kind(&value)
            ),
            None,
        ));
    };
    let request_id = match object.get("request_id") {
        Some(Value::String(id)) if !id.trim().is_empty() => {
            Some(id.trim().chars().take(MAX_ECHOED_ID).collect())
        }
        _ => None,
    };
    let raw: RawCourseRequest = serde_json::from_value(value)
        .map_err(|e| refuse(format!("invalid request: {e}"), request_id.clone()))?;
    CourseRequest::parse(raw).map_err(|e| refuse(format!("invalid request: {e}"), request_id))
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &str = "5b0f7c3e-3a4b-4c1d-8e2f-9a0b1c2d3e4f";
    const REQUEST: &str = "0d3c5e7a-1b2c-4d5e-8f90-a1b2c3d4e5f6";

    #[test]
    fn a_valid_request_parses() {
        let body = format!(
            r#"{{"request_id":"{REQUEST}","user_id":"{USER}","topic":"Cells","num_lessons":3}}"#
        );
        let request = parse_request(body.as_bytes()).unwrap();
        assert_eq!(request.num_lessons, 3);
        assert_eq!(request.topic, "Cells");
    }

    #[test]
    fn any_byte_string_is_refused_with_a_reason_not_a_panic() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        let huge = vec![b'a'; MAX_BODY_BYTES + 1];
        let bodies: Vec<&[u8]> = vec![
            b"",
            b"   ",
            &[0xff, 0xfe, 0x00],
            b"{",
            b"[1,2,3]",
            b"null",
            b"\"text\"",
            b"42",
            deep.as_bytes(),
            &huge,
            br#"{"request_id": 5}"#,
            br#"{"num_lessons": "four"}"#,
        ];
        for body in bodies {
            let refusal = parse_request(body).unwrap_err();
            assert!(!refusal.reason.is_empty());
        }
    }

    #[test]
    fn a_refusal_keeps_a_readable_request_id() {
        let body = format!(r#"{{"request_id":"{REQUEST}","topic":"Cells"}}"#);
        let refusal = parse_request(body.as_bytes()).unwrap_err();
        assert_eq!(refusal.request_id.as_deref(), Some(REQUEST));
        assert!(refusal.reason.contains("user_id"), "{}", refusal.reason);

        let body = format!(r#"{{"request_id":"{REQUEST}","user_id":"{USER}","topic":7}}"#);
        let refusal = parse_request(body.as_bytes()).unwrap_err();
        assert_eq!(refusal.request_id.as_deref(), Some(REQUEST));
    }

    #[test]
    fn replies_carry_every_field_even_when_null() {
        let reply = Reply::new(Some("r".into()), ReplyStatus::Accepted, Utc::now());
        let value: Value = serde_json::from_slice(&reply.to_bytes()).unwrap();
        for key in [
            "request_id",
            "status",
            "course_id",
            "course_title",
            "total_lessons",
            "error",
            "timestamp",
        ] {
            assert!(value.get(key).is_some(), "{key}");
        }
        assert_eq!(value["status"], "accepted");
    }
}
